//! Desktops against real Xvfb, openbox and x11vnc: per-session start and stop, the limit,
//! shutdown, and the shared desktop (started by us, or someone else's used as it is).
//!
//! No fixed display numbers or ports: Xvfb picks free displays, VNC uses free ports.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use computer_use_server::config::Config;
use computer_use_server::desktop::{DesktopError, DesktopManager, DesktopProcess, Display};
use x11rb::connection::Connection;
use x11rb::rust_connection::RustConnection;

fn desktops(vars: &[(&str, &str)]) -> DesktopManager {
    let vars: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let config = Config::from_sources(&[], |name| vars.get(name).cloned()).unwrap();
    DesktopManager::new(&config.desktop)
}

fn per_session(max: &str) -> DesktopManager {
    desktops(&[
        ("DESKTOP_MODE", "per-session"),
        ("WIDTH", "800"),
        ("HEIGHT", "600"),
        ("MAX_DESKTOPS", max),
    ])
}

/// The root window size an X client sees on the display.
fn root_size(display: &Display) -> (u32, u32) {
    let (conn, screen) = RustConnection::connect(Some(&display.name())).unwrap();
    let root = &conn.setup().roots[screen];
    (root.width_in_pixels.into(), root.height_in_pixels.into())
}

/// The 12-byte protocol version a VNC server sends first.
fn rfb_greeting(addr: SocketAddr) -> String {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut greeting = [0u8; 12];
    stream.read_exact(&mut greeting).unwrap();
    String::from_utf8_lossy(&greeting).into_owned()
}

fn assert_speaks_rfb(addr: SocketAddr) {
    let greeting = rfb_greeting(addr);
    assert!(
        greeting.starts_with("RFB 003.00") && greeting.ends_with('\n'),
        "{greeting:?}"
    );
}

fn refuses(addr: SocketAddr) -> bool {
    TcpStream::connect_timeout(&addr, Duration::from_secs(2)).is_err()
}

fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// Waits (bounded) until `pid` has exited: a zombie its parent has not reaped yet, or gone.
fn wait_until_exited(pid: u32) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let state = stat.rsplit_once(')').map(|(_, rest)| rest.trim_start());
        if state.is_none_or(|rest| rest.starts_with('Z')) {
            return;
        }
        assert!(Instant::now() < deadline, "{pid} did not exit");
        thread::sleep(Duration::from_millis(10));
    }
}

/// Identifies the X socket file of a display: inode and change time (inodes are reused).
fn x_socket_identity(display: &Display) -> Option<(u64, i64, i64)> {
    let path = format!("/tmp/.X11-unix/X{}", display.display_num);
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.ino(), meta.ctime(), meta.ctime_nsec()))
}

fn programs(processes: &[DesktopProcess]) -> Vec<&'static str> {
    let mut names: Vec<_> = processes.iter().map(|p| p.program).collect();
    names.sort();
    names
}

/// An Xvfb this test owns (not the manager), killed when dropped.
struct OwnXvfb {
    child: Child,
    display_num: u32,
}

impl OwnXvfb {
    /// Retried if a server started at the same moment took over its socket file (X servers
    /// on `-displayfd` run without lock files).
    fn start() -> OwnXvfb {
        for _ in 0..3 {
            let own = OwnXvfb::try_start();
            let name = format!(":{}", own.display_num);
            if RustConnection::connect(Some(&name)).is_ok() {
                return own;
            }
        }
        panic!("no Xvfb of our own with a socket that answers");
    }

    fn try_start() -> OwnXvfb {
        let mut child = Command::new("Xvfb")
            .args([
                "-displayfd",
                "1",
                "-screen",
                "0",
                "640x480x24",
                "-nolisten",
                "tcp",
                "-noreset",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let display_num = line.trim().parse().unwrap();
        OwnXvfb { child, display_num }
    }

    fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for OwnXvfb {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn two_sessions_get_two_desktops_up_at_the_configured_size_with_their_own_vnc() {
    let desktops = per_session("4");
    let started = Instant::now();
    let a = desktops.for_session("a").unwrap();
    eprintln!("one per-session desktop started in {:?}", started.elapsed());
    let b = desktops.for_session("b").unwrap();
    assert_ne!(a.display_num, b.display_num);
    assert_ne!(a.vnc_addr, b.vnc_addr);
    for display in [&a, &b] {
        assert_eq!((display.width, display.height), (800, 600));
        assert_eq!(root_size(display), (800, 600));
        assert!(display.vnc_addr.ip().is_loopback());
        assert_speaks_rfb(display.vnc_addr);
    }
    assert_eq!(desktops.running_count(), 2);
    desktops.shutdown();
}

#[test]
fn the_same_session_gets_the_same_desktop_even_from_two_threads_at_once() {
    let desktops = per_session("4");
    let (first, second) = thread::scope(|scope| {
        let one = scope.spawn(|| desktops.for_session("s"));
        let two = scope.spawn(|| desktops.for_session("s"));
        (one.join().unwrap().unwrap(), two.join().unwrap().unwrap())
    });
    assert_eq!(first, second);
    assert_eq!(desktops.for_session("s").unwrap(), first);
    assert_eq!(desktops.running(Some("s")), Some(first));
    assert_eq!(desktops.running_count(), 1);
    desktops.shutdown();
}

#[test]
fn the_limit_refuses_another_session_until_a_release_frees_its_slot() {
    let desktops = per_session("1");
    desktops.for_session("a").unwrap();
    assert_eq!(
        desktops.for_session("b"),
        Err(DesktopError::LimitReached { max: 1 })
    );
    desktops.release("a");
    let b = desktops.for_session("b").unwrap();
    assert_eq!(desktops.running(Some("b")), Some(b));
    desktops.shutdown();
}

#[test]
fn release_stops_xvfb_the_window_manager_and_x11vnc() {
    let desktops = per_session("4");
    let display = desktops.for_session("s").unwrap();
    let processes = desktops.processes(Some("s"));
    assert_eq!(programs(&processes), ["Xvfb", "openbox", "x11vnc"]);
    let socket = x_socket_identity(&display).expect("the X socket exists while it runs");

    let releasing = Instant::now();
    desktops.release("s");
    eprintln!(
        "one per-session desktop stopped in {:?}",
        releasing.elapsed()
    );

    for process in &processes {
        assert!(!alive(process.pid), "{process:?} is still running");
    }
    assert!(refuses(display.vnc_addr));
    // Gone, or a new file of another test's X server that took the number since.
    assert_ne!(x_socket_identity(&display), Some(socket));
    assert_eq!(desktops.running(Some("s")), None);
    assert_eq!(desktops.running_count(), 0);
    desktops.release("s"); // a second release is a no-op
}

#[test]
fn shutdown_stops_every_desktop_and_later_calls_are_refused() {
    let desktops = per_session("4");
    let a = desktops.for_session("a").unwrap();
    desktops.for_session("b").unwrap();
    let mut processes = desktops.processes(Some("a"));
    processes.extend(desktops.processes(Some("b")));
    assert_eq!(processes.len(), 6);

    desktops.shutdown();

    assert!(processes.iter().all(|p| !alive(p.pid)));
    assert!(refuses(a.vnc_addr));
    assert_eq!(desktops.running_count(), 0);
    assert_eq!(desktops.for_session("a"), Err(DesktopError::ShuttingDown));
    assert_eq!(desktops.for_session("c"), Err(DesktopError::ShuttingDown));
}

#[test]
fn a_desktop_whose_x_server_died_is_replaced_on_next_need() {
    let desktops = per_session("4");
    desktops.for_session("s").unwrap();
    let xvfb = desktops.processes(Some("s"))[0].clone();
    assert_eq!(xvfb.program, "Xvfb");
    let killed = Command::new("kill")
        .args(["-KILL", &xvfb.pid.to_string()])
        .status();
    assert!(killed.unwrap().success());
    wait_until_exited(xvfb.pid);

    let display = desktops.for_session("s").unwrap();

    assert_eq!(root_size(&display), (800, 600));
    assert!(
        desktops
            .processes(Some("s"))
            .iter()
            .all(|p| p.pid != xvfb.pid)
    );
    assert_eq!(desktops.running_count(), 1);
    desktops.shutdown();
}

#[test]
fn shared_mode_without_a_display_starts_one_for_everyone_and_stops_it_at_shutdown() {
    let desktops = desktops(&[
        ("DESKTOP_MODE", "shared"),
        ("WIDTH", "1024"),
        ("HEIGHT", "768"),
        ("VNC_PORT", "0"),
    ]);
    let display = desktops.shared().unwrap();
    assert_eq!(desktops.for_session("a").unwrap(), display);
    assert_eq!(desktops.for_session("b").unwrap(), display);
    assert_eq!(root_size(&display), (1024, 768));
    assert_speaks_rfb(display.vnc_addr);
    let processes = desktops.processes(None);
    assert_eq!(programs(&processes), ["Xvfb", "openbox", "x11vnc"]);
    desktops.release("a"); // the shared desktop is not a session's to release
    assert_eq!(desktops.running(Some("a")), Some(display.clone()));

    desktops.shutdown();

    assert!(processes.iter().all(|p| !alive(p.pid)));
    assert!(refuses(display.vnc_addr));
    assert_eq!(desktops.shared(), Err(DesktopError::ShuttingDown));
}

#[test]
fn shared_mode_uses_a_running_display_and_vnc_server_as_they_are_and_leaves_them_running() {
    let mut xvfb = OwnXvfb::start();
    let vnc = TcpListener::bind("127.0.0.1:0").unwrap();
    let vnc_addr = vnc.local_addr().unwrap();
    let desktops = desktops(&[
        ("DESKTOP_MODE", "shared"),
        ("DISPLAY_NUM", &xvfb.display_num.to_string()),
        ("VNC_HOST", "127.0.0.1"),
        ("VNC_PORT", &vnc_addr.port().to_string()),
    ]);

    let display = desktops.for_session("a").unwrap();

    assert_eq!(display.display_num, xvfb.display_num);
    assert_eq!((display.width, display.height), (640, 480));
    assert_eq!(display.vnc_addr, vnc_addr);
    assert!(desktops.processes(None).is_empty());
    desktops.shutdown();
    assert!(xvfb.is_running());
    assert_eq!(root_size(&display), (640, 480));
    assert!(TcpStream::connect(vnc_addr).is_ok());
}

#[test]
fn shared_mode_with_a_running_display_but_no_vnc_server_exports_it_with_x11vnc() {
    let xvfb = OwnXvfb::start();
    let desktops = desktops(&[
        ("DESKTOP_MODE", "shared"),
        ("DISPLAY_NUM", &xvfb.display_num.to_string()),
        ("VNC_PORT", "0"),
    ]);

    let display = desktops.shared().unwrap();

    assert_eq!(display.display_num, xvfb.display_num);
    assert_speaks_rfb(display.vnc_addr);
    let processes = desktops.processes(None);
    assert_eq!(programs(&processes), ["x11vnc"]);
    desktops.shutdown();
    assert!(!alive(processes[0].pid));
    assert_eq!(root_size(&display), (640, 480));
}

#[test]
fn a_started_shared_desktop_takes_a_free_vnc_port_when_the_configured_one_is_taken() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let desktops = desktops(&[
        ("DESKTOP_MODE", "shared"),
        ("VNC_HOST", "127.0.0.1"),
        ("VNC_PORT", &port.to_string()),
    ]);

    let display = desktops.shared().unwrap();

    assert_ne!(display.vnc_addr.port(), port);
    assert_speaks_rfb(display.vnc_addr);
    desktops.shutdown();
}

#[test]
fn warm_up_starts_the_shared_desktop_that_the_first_caller_then_gets() {
    let desktops = desktops(&[("DESKTOP_MODE", "shared"), ("VNC_PORT", "0")]);
    desktops.warm_up();
    let display = desktops.for_session("a").unwrap();
    assert_eq!(desktops.running(None), Some(display));
    assert_eq!(desktops.running_count(), 1);
    desktops.shutdown();
    assert_eq!(desktops.running_count(), 0);
}

#[test]
fn mode_none_gives_disabled_and_starts_nothing() {
    let desktops = desktops(&[("DESKTOP_MODE", "none")]);
    assert_eq!(desktops.for_session("a"), Err(DesktopError::Disabled));
    assert_eq!(desktops.shared(), Err(DesktopError::Disabled));
    assert_eq!(desktops.running(Some("a")), None);
    assert_eq!(desktops.running_count(), 0);
    desktops.shutdown();
}
