//! Waiting for SIGINT/SIGTERM without an async runtime: the handler writes the signal number
//! to a pipe (write(2) is async-signal-safe) and the main thread blocks reading it.
//!
//! Handlers, unlike blocked signal masks, are reset on exec, so the shells the bash tool starts
//! keep the default signal behaviour.

use std::io;
use std::sync::atomic::{AtomicI32, Ordering};

static WRITE_FD: AtomicI32 = AtomicI32::new(-1);

extern "C" fn on_signal(signal: libc::c_int) {
    let fd = WRITE_FD.load(Ordering::Relaxed);
    if fd >= 0 {
        let byte = signal as u8;
        // SAFETY: write(2) on a valid fd with a one-byte buffer is async-signal-safe.
        #[allow(unsafe_code)]
        unsafe {
            libc::write(fd, (&byte as *const u8).cast(), 1);
        }
    }
}

/// Receives SIGINT and SIGTERM once installed.
pub struct ShutdownSignals {
    read_fd: libc::c_int,
}

impl ShutdownSignals {
    /// Installs the handlers. Call once, early in `main`.
    #[allow(unsafe_code)]
    pub fn install() -> io::Result<ShutdownSignals> {
        let mut fds = [0 as libc::c_int; 2];
        // SAFETY: pipe2 writes two fds into the array we own; sigaction gets a zeroed, then
        // filled, struct and a handler that only calls write(2).
        unsafe {
            if libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) != 0 {
                return Err(io::Error::last_os_error());
            }
            WRITE_FD.store(fds[1], Ordering::Relaxed);
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_signal as *const () as usize;
            action.sa_flags = libc::SA_RESTART;
            libc::sigemptyset(&mut action.sa_mask);
            for signal in [libc::SIGINT, libc::SIGTERM] {
                if libc::sigaction(signal, &action, std::ptr::null_mut()) != 0 {
                    return Err(io::Error::last_os_error());
                }
            }
        }
        Ok(ShutdownSignals { read_fd: fds[0] })
    }

    /// Blocks until a signal arrives; returns its name.
    #[allow(unsafe_code)]
    pub fn wait(&self) -> &'static str {
        let mut byte = 0u8;
        loop {
            // SAFETY: reading one byte into a local from the pipe's read end we own.
            let n = unsafe { libc::read(self.read_fd, (&mut byte as *mut u8).cast(), 1) };
            if n == 1 {
                return if i32::from(byte) == libc::SIGINT {
                    "SIGINT"
                } else {
                    "SIGTERM"
                };
            }
            if n < 0 && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return "signal pipe closed";
        }
    }
}
