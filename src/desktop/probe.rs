//! Is a desktop already there? An X11 handshake on a display's socket, a TCP connect to a VNC
//! address, and a free loopback port: each bounded by a timeout.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::Duration;

use x11rb::connection::Connection;
use x11rb::rust_connection::{PollMode, RustConnection, Stream};
use x11rb::utils::RawFdContainer;

/// How long a probe may take (connect plus the X11 setup exchange).
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// How long an X server may take to reset before a second try.
const RESET_PAUSE: Duration = Duration::from_millis(200);

/// The filesystem socket of X display `num`.
pub(crate) fn x_socket(num: u32) -> PathBuf {
    PathBuf::from(format!("/tmp/.X11-unix/X{num}"))
}

/// The root window size of display `num` if an X server there completes the X11 setup.
/// Retried once: a server resetting (its last client just left) drops new connections.
pub(crate) fn x_root_size(num: u32) -> Option<(u32, u32)> {
    match x_setup(num) {
        Ok(None) => {
            std::thread::sleep(RESET_PAUSE);
            x_setup(num).ok().flatten()
        }
        answered => answered.ok().flatten(),
    }
}

/// `Err` if nothing listens; `Ok(None)` if the server did not complete the setup.
fn x_setup(num: u32) -> io::Result<Option<(u32, u32)>> {
    let stream = UnixStream::connect(x_socket(num))?;
    stream.set_read_timeout(Some(PROBE_TIMEOUT))?;
    stream.set_write_timeout(Some(PROBE_TIMEOUT))?;
    let Ok(conn) = RustConnection::connect_to_stream(TimedStream(stream), 0) else {
        return Ok(None);
    };
    let size = conn
        .setup()
        .roots
        .first()
        .map(|root| (root.width_in_pixels.into(), root.height_in_pixels.into()));
    Ok(size)
}

/// `host:port` resolved to its first address, if something there accepts a TCP connection.
pub(crate) fn tcp_accepting(host: &str, port: u16) -> Option<SocketAddr> {
    let addrs = (host, port).to_socket_addrs().ok()?;
    addrs
        .into_iter()
        .find(|addr| TcpStream::connect_timeout(addr, PROBE_TIMEOUT).is_ok())
}

/// A loopback port nothing listens on right now (the kernel's pick; may be taken again
/// before it is used, so callers retry).
pub(crate) fn free_port() -> io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A blocking Unix stream with timeouts, for x11rb: `poll` is a no-op and a timed-out read or
/// write becomes `TimedOut` (x11rb would retry `WouldBlock` forever).
struct TimedStream(UnixStream);

impl Stream for TimedStream {
    fn poll(&self, _mode: PollMode) -> io::Result<()> {
        Ok(())
    }

    fn read(&self, buf: &mut [u8], _fds: &mut Vec<RawFdContainer>) -> io::Result<usize> {
        (&self.0).read(buf).map_err(timed_out)
    }

    fn write(&self, buf: &[u8], _fds: &mut Vec<RawFdContainer>) -> io::Result<usize> {
        (&self.0).write(buf).map_err(timed_out)
    }
}

fn timed_out(err: io::Error) -> io::Error {
    match err.kind() {
        io::ErrorKind::WouldBlock => io::Error::new(io::ErrorKind::TimedOut, err),
        _ => err,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_display_without_a_server_is_not_up() {
        assert_eq!(x_root_size(u32::MAX - 7), None);
    }

    #[test]
    fn a_listening_port_accepts_and_a_free_one_does_not() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        assert!(tcp_accepting("127.0.0.1", port).is_some());
        drop(listener);
        assert!(tcp_accepting("127.0.0.1", port).is_none());
    }
}
