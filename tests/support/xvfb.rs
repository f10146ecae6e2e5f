//! A bare Xvfb of a test's own (no window manager, no VNC server), on a free display number:
//! `-displayfd` reports the number once the server is ready, so nothing polls. Killed on drop.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use computer_use_server::desktop::{Display, screenshot};

/// How long Xvfb may take to come up.
const START_TIMEOUT: Duration = Duration::from_secs(30);

pub struct Xvfb {
    child: Child,
    pub display: Display,
}

impl Xvfb {
    /// Starts `width`×`height`×24. `-noreset`: without it Xvfb resets when its last client
    /// leaves and drops connections that arrive meanwhile.
    pub fn start(width: u32, height: u32) -> Xvfb {
        let mut child = Command::new("Xvfb")
            .args([
                "-displayfd",
                "1",
                "-nolisten",
                "tcp",
                "-noreset",
                "-screen",
                "0",
            ])
            .arg(format!("{width}x{height}x24"))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("Xvfb is installed (scripts/install-desktop.sh)");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = crossbeam_channel::bounded(1);
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = rx
            .recv_timeout(START_TIMEOUT)
            .expect("Xvfb reports its display");
        let display_num = line.trim().parse().expect("a display number");
        let vnc_addr = "127.0.0.1:0".parse().unwrap();
        Xvfb {
            child,
            display: Display {
                display_num,
                width,
                height,
                vnc_addr,
            },
        }
    }

    /// The display number (`:N`).
    pub fn num(&self) -> u32 {
        self.display.display_num
    }
}

impl Drop for Xvfb {
    fn drop(&mut self) {
        screenshot::forget(self.display.display_num);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
