//! One desktop: its [`Display`] and the processes this server started for it (none, some or
//! all of Xvfb, the window manager and x11vnc), started in that order and stopped in reverse.

use std::net::{Ipv4Addr, SocketAddr};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Instant;

use super::process::Process;
use super::{DesktopError, Display, launch, probe, screenshot};
use crate::config::DesktopConfig;

/// A desktop in use, owning whichever of its processes we started.
pub(crate) struct Instance {
    display: Display,
    xvfb: Option<Process>,
    wm: Option<Process>,
    vnc: Option<Process>,
}

impl Instance {
    /// A new desktop of our own: Xvfb on a free display, window manager, x11vnc on a free port.
    pub(crate) fn start_own(config: &DesktopConfig) -> Result<Instance, DesktopError> {
        let started = Instant::now();
        let (xvfb, num) = launch::xvfb(None, config.width, config.height)?;
        let instance = Instance::around_xvfb(xvfb, num, config, 0)?;
        instance.log_started(started);
        Ok(instance)
    }

    /// The shared desktop: `DISPLAY_NUM` as it is if it is up (with the VNC server at
    /// `VNC_HOST:VNC_PORT` if one answers there), else one we start.
    pub(crate) fn start_shared(config: &DesktopConfig) -> Result<Instance, DesktopError> {
        let started = Instant::now();
        if let Some(num) = config.display_num
            && let Some((width, height)) = probe::x_root_size(num)
        {
            return Instance::adopt(num, width, height, config);
        }
        let (xvfb, num) = launch::xvfb(config.display_num, config.width, config.height)?;
        let instance = Instance::around_xvfb(xvfb, num, config, config.vnc_port)?;
        instance.log_started(started);
        Ok(instance)
    }

    pub(crate) fn display(&self) -> &Display {
        &self.display
    }

    /// Whether the X server and VNC server we started are still running.
    pub(crate) fn is_alive(&self) -> bool {
        [&self.xvfb, &self.vnc]
            .into_iter()
            .flatten()
            .all(Process::is_running)
    }

    /// `(program, pid)` of each process we started for this desktop.
    pub(crate) fn processes(&self) -> Vec<(&'static str, u32)> {
        [&self.xvfb, &self.wm, &self.vnc]
            .into_iter()
            .flatten()
            .map(|p| (p.program(), p.pid()))
            .collect()
    }

    /// Stops what we started (x11vnc, window manager, Xvfb); idempotent.
    pub(crate) fn stop(&mut self) {
        let owned = self.processes();
        if owned.is_empty() {
            return;
        }
        let stopped = Instant::now();
        stop(&mut self.vnc);
        stop(&mut self.wm);
        if let Some(mut xvfb) = self.xvfb.take() {
            screenshot::forget(self.display.display_num);
            let pid = xvfb.pid();
            if !xvfb.stop() {
                remove_x_leftovers(self.display.display_num, pid);
            }
        }
        log::info!(
            "desktop {} stopped in {} ms ({})",
            self.display.name(),
            stopped.elapsed().as_millis(),
            describe(&owned)
        );
    }

    /// Window manager and x11vnc for a display whose Xvfb we just started.
    fn around_xvfb(
        xvfb: Process,
        num: u32,
        config: &DesktopConfig,
        vnc_port: u16,
    ) -> Result<Instance, DesktopError> {
        let mut instance = Instance {
            display: display(num, config.width, config.height, loopback(0)),
            xvfb: Some(xvfb),
            wm: launch::window_manager(num),
            vnc: None,
        };
        // On error, dropping `instance` stops Xvfb and the window manager.
        let (vnc, port) = launch::x11vnc(num, vnc_port)?;
        instance.vnc = Some(vnc);
        instance.display.vnc_addr = loopback(port);
        Ok(instance)
    }

    /// Someone else's display: use it, and its VNC server if one answers, else start x11vnc.
    fn adopt(
        num: u32,
        width: u32,
        height: u32,
        config: &DesktopConfig,
    ) -> Result<Instance, DesktopError> {
        let existing = (config.vnc_port != 0)
            .then(|| probe::tcp_accepting(&config.vnc_host, config.vnc_port))
            .flatten();
        let (vnc, vnc_addr) = match existing {
            Some(addr) => (None, addr),
            None => {
                let (vnc, port) = launch::x11vnc(num, config.vnc_port)?;
                (Some(vnc), loopback(port))
            }
        };
        let instance = Instance {
            display: display(num, width, height, vnc_addr),
            xvfb: None,
            wm: None,
            vnc,
        };
        log::info!(
            "desktop :{num} ({width}x{height}) is already running; using it with VNC at {vnc_addr}{}",
            if instance.vnc.is_some() {
                " (x11vnc started by us)"
            } else {
                ""
            }
        );
        Ok(instance)
    }

    fn log_started(&self, started: Instant) {
        log::info!(
            "desktop {} ({}x{}) started in {} ms, VNC at {} ({})",
            self.display.name(),
            self.display.width,
            self.display.height,
            started.elapsed().as_millis(),
            self.display.vnc_addr,
            describe(&self.processes())
        );
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        self.stop();
    }
}

fn stop(process: &mut Option<Process>) {
    if let Some(mut process) = process.take() {
        process.stop();
    }
}

fn display(num: u32, width: u32, height: u32, vnc_addr: SocketAddr) -> Display {
    Display {
        display_num: num,
        width,
        height,
        vnc_addr,
    }
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, port))
}

fn describe(processes: &[(&'static str, u32)]) -> String {
    let parts: Vec<String> = processes
        .iter()
        .map(|(name, pid)| format!("{name} pid {pid}"))
        .collect();
    parts.join(", ")
}

/// An Xvfb that needed SIGKILL (`pid`) leaves its lock file and socket behind. Remove the lock
/// only if it is that Xvfb's, and the socket only if nothing answers on it: another server may
/// have taken the number in the meantime.
fn remove_x_leftovers(num: u32, pid: u32) {
    let lock = PathBuf::from(format!("/tmp/.X{num}-lock"));
    let lock_is_ours =
        std::fs::read_to_string(&lock).is_ok_and(|text| text.trim() == pid.to_string());
    if lock_is_ours {
        remove(&lock);
    }
    let socket = probe::x_socket(num);
    if UnixStream::connect(&socket).is_err() {
        remove(&socket);
    }
}

fn remove(path: &Path) {
    match std::fs::remove_file(path) {
        Ok(()) => log::info!("removed stale {}", path.display()),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
        Err(err) => log::warn!("could not remove stale {}: {err}", path.display()),
    }
}
