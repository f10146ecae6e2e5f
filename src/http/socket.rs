//! An owned duplicate of a request's TCP socket.
//!
//! tiny_http hands out its connection only as boxed `Read`/`Write` objects, with no way to set
//! timeouts or shut the socket down from another thread. Streams need both, so we find the
//! connection's file descriptor (the socket whose peer is the request's remote address and
//! whose local port is ours) and duplicate it. The duplicate shares the socket: timeouts and
//! `shutdown` apply to tiny_http's side too; closing the duplicate closes only our descriptor.

use std::net::{SocketAddr, TcpStream};
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

/// Duplicates the connection socket whose peer is `remote` and local port is `local_port`.
///
/// Only that one descriptor is duplicated: the others are inspected in place. (Duplicating and
/// closing every descriptor would release the process's POSIX record locks on those files,
/// which is how SQLite guards its database and WAL index against other processes.)
pub(crate) fn duplicate(remote: SocketAddr, local_port: u16) -> Option<TcpStream> {
    let fd = find(remote, local_port)?;
    let stream = TcpStream::from(dup_fd(fd)?);
    // The number may have been closed and reused between `find` and `dup_fd`: check again.
    is_connection(&stream, remote, local_port).then_some(stream)
}

/// The number of the descriptor holding the connection socket, without duplicating anything.
fn find(remote: SocketAddr, local_port: u16) -> Option<RawFd> {
    let entries = std::fs::read_dir("/proc/self/fd").ok()?;
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<RawFd>().ok())
        .find(|&fd| {
            socket_addr(fd, libc::getsockname).map(|a| a.port()) == Some(local_port)
                && socket_addr(fd, libc::getpeername) == Some(remote)
        })
}

/// Every accepted connection of the server on `local_port` (descriptor, peer), found without
/// duplicating anything. Our own duplicates of a connection are listed too, under its peer.
pub(crate) fn accepted(local_port: u16) -> Vec<(RawFd, SocketAddr)> {
    let Ok(entries) = std::fs::read_dir("/proc/self/fd") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<RawFd>().ok())
        .filter(|&fd| socket_addr(fd, libc::getsockname).map(|a| a.port()) == Some(local_port))
        .filter_map(|fd| Some((fd, socket_addr(fd, libc::getpeername)?)))
        .collect()
}

/// What the owner of connection socket `fd` has done with what arrived on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Received {
    /// Bytes the owner has read.
    pub(crate) read: u64,
    /// Bytes that arrived and wait in the kernel to be read.
    pub(crate) queued: u64,
    /// Time since the last data arrived.
    pub(crate) since_data: Duration,
}

/// How many bytes the owner of connection socket `fd` has read from it and how many wait:
/// received minus still queued (`TCP_INFO` and `FIONREAD`). `None` when either is unavailable.
#[allow(unsafe_code)]
pub(crate) fn received(fd: RawFd) -> Option<Received> {
    // SAFETY: both calls only write into the values we own, bounded by the sizes we pass; a
    // closed or reused number makes them fail or describe another socket, which costs nothing.
    let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&mut info as *mut libc::tcp_info).cast(),
            &mut len,
        )
    };
    if rc != 0 || (len as usize) < std::mem::size_of::<libc::tcp_info>() {
        return None;
    }
    let mut queued: libc::c_int = 0;
    // SAFETY: FIONREAD writes one int.
    if unsafe { libc::ioctl(fd, libc::FIONREAD, &mut queued) } != 0 {
        return None;
    }
    let queued = queued.max(0) as u64;
    Some(Received {
        read: info.tcpi_bytes_received.saturating_sub(queued),
        queued,
        since_data: Duration::from_millis(u64::from(info.tcpi_last_data_recv)),
    })
}

/// Whether the bytes waiting unread on connection socket `fd` hold a complete request head
/// (they end a line with an empty one), looking at most at `limit` bytes without taking them.
#[allow(unsafe_code)]
pub(crate) fn queued_head_complete(fd: RawFd, limit: usize) -> bool {
    let mut buf = vec![0u8; limit.clamp(1, 64 * 1024)];
    // SAFETY: `recv` writes at most `buf.len()` bytes into the buffer we own; MSG_PEEK leaves
    // them queued for the owner and MSG_DONTWAIT never blocks. A closed or reused number makes
    // it fail or peek at another socket, which at worst spares a slow client one scan.
    let n = unsafe {
        libc::recv(
            fd,
            buf.as_mut_ptr().cast(),
            buf.len(),
            libc::MSG_PEEK | libc::MSG_DONTWAIT,
        )
    };
    let Ok(n) = usize::try_from(n) else {
        return false;
    };
    let head = &buf[..n];
    head.windows(4).any(|w| w == b"\r\n\r\n") || head.windows(2).any(|w| w == b"\n\n")
}

/// Sends `response` (if any, without blocking) on the connection socket `fd`, then shuts it
/// down both ways, so its owner's blocked read returns and it closes the connection. Checks
/// first that the number still holds that connection.
#[allow(unsafe_code)]
pub(crate) fn refuse(fd: RawFd, remote: SocketAddr, local_port: u16, response: &[u8]) {
    let local = socket_addr(fd, libc::getsockname).map(|a| a.port());
    if local != Some(local_port) || socket_addr(fd, libc::getpeername) != Some(remote) {
        return;
    }
    if !response.is_empty() {
        // SAFETY: `send` reads `response.len()` bytes of a live slice; never blocks or raises
        // SIGPIPE with these flags; a short or failed send only loses the courtesy reply.
        let flags = libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL;
        let _ = unsafe { libc::send(fd, response.as_ptr().cast(), response.len(), flags) };
    }
    // SAFETY: `shutdown` touches no memory; the number was checked just above to be this
    // connection (and shutting a socket down does not close its descriptor).
    let _ = unsafe { libc::shutdown(fd, libc::SHUT_RDWR) };
}

fn is_connection(stream: &TcpStream, remote: SocketAddr, local_port: u16) -> bool {
    let peer = stream.peer_addr().ok();
    let local = stream.local_addr().ok();
    peer == Some(remote) && local.map(|l| l.port()) == Some(local_port)
}

type NameFn =
    unsafe extern "C" fn(libc::c_int, *mut libc::sockaddr, *mut libc::socklen_t) -> libc::c_int;

/// `getsockname`/`getpeername` of a descriptor number, as an address; `None` for anything
/// that is not an IPv4/IPv6 socket (files, pipes, unix sockets, closed numbers).
///
/// Sound: the call only writes into the `sockaddr_storage` we own, bounded by `len`; a closed
/// or non-socket descriptor makes it fail (EBADF/ENOTSOCK), which we check.
#[allow(unsafe_code)]
fn socket_addr(fd: RawFd, name: NameFn) -> Option<SocketAddr> {
    // SAFETY: see above.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: `storage` is large enough for any socket address; `len` says how large.
    let rc = unsafe {
        name(
            fd,
            (&mut storage as *mut libc::sockaddr_storage).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return None;
    }
    match i32::from(storage.ss_family) {
        libc::AF_INET => {
            // SAFETY: the family says the storage holds a `sockaddr_in`.
            let v4: libc::sockaddr_in =
                unsafe { std::ptr::read((&storage as *const libc::sockaddr_storage).cast()) };
            let ip = std::net::Ipv4Addr::from(u32::from_be(v4.sin_addr.s_addr));
            Some(SocketAddr::from((ip, u16::from_be(v4.sin_port))))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says the storage holds a `sockaddr_in6`.
            let v6: libc::sockaddr_in6 =
                unsafe { std::ptr::read((&storage as *const libc::sockaddr_storage).cast()) };
            let ip = std::net::Ipv6Addr::from(v6.sin6_addr.s6_addr);
            let addr = std::net::SocketAddrV6::new(
                ip,
                u16::from_be(v6.sin6_port),
                v6.sin6_flowinfo,
                v6.sin6_scope_id,
            );
            Some(SocketAddr::V6(addr))
        }
        _ => None,
    }
}

/// `fcntl(F_DUPFD_CLOEXEC)` on the descriptor `find` picked.
///
/// Sound: `fcntl` only reads the number; if it was closed meanwhile it fails with EBADF (we
/// return `None`), and if it was reused the caller's `is_connection` check rejects the
/// duplicate (closing a duplicate of a socket releases nothing else). The new descriptor is
/// ours alone, so wrapping it in `OwnedFd` (closed exactly once, on drop) is correct.
#[allow(unsafe_code)]
fn dup_fd(fd: RawFd) -> Option<OwnedFd> {
    // SAFETY: see above; no memory is touched, and a negative result is checked.
    let new = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 0) };
    if new < 0 {
        return None;
    }
    // SAFETY: `new` is a freshly duplicated descriptor that nothing else owns.
    Some(unsafe { OwnedFd::from_raw_fd(new) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    #[test]
    fn a_queued_head_is_seen_complete_only_once_its_empty_line_arrived_and_stays_queued() {
        use std::io::{Read, Write};
        use std::os::fd::AsRawFd;
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (mut server, _) = listener.accept().unwrap();
        let wait_queued = |n: u64| {
            for _ in 0..200 {
                if received(server.as_raw_fd()).is_some_and(|r| r.queued >= n) {
                    return;
                }
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            panic!("{n} bytes never arrived");
        };
        let start = b"GET /health HTTP/1.1\r\nHost: x\r\n";
        let whole = start.len() as u64 + 2;
        client.write_all(start).unwrap();
        wait_queued(start.len() as u64);
        assert!(!queued_head_complete(server.as_raw_fd(), 8192));
        client.write_all(b"\r\n").unwrap();
        wait_queued(whole);
        assert!(queued_head_complete(server.as_raw_fd(), 8192));
        let state = received(server.as_raw_fd()).unwrap();
        assert_eq!((state.read, state.queued), (0, whole));
        let mut head = vec![0u8; whole as usize];
        server.read_exact(&mut head).unwrap();
        assert!(head.ends_with(b"\r\n\r\n"));
        assert_eq!(received(server.as_raw_fd()).unwrap().read, whole);
    }

    #[test]
    fn finds_the_accepted_socket_by_its_peer() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let client = TcpStream::connect(("127.0.0.1", port)).unwrap();
        let (_accepted, remote) = listener.accept().unwrap();
        let dup = duplicate(remote, port).expect("duplicate");
        assert_eq!(dup.peer_addr().unwrap(), client.local_addr().unwrap());
        assert_eq!(dup.local_addr().unwrap().port(), port);
    }

    #[test]
    fn looking_up_a_socket_keeps_posix_locks_on_other_files() {
        // Closing any duplicate of a locked file drops the process's record locks on it
        // (SQLite relies on them); the lookup must not duplicate other descriptors.
        let path = std::env::temp_dir().join(format!("socket-lock-{}", std::process::id()));
        let file = std::fs::File::create(&path).unwrap();
        let lock = libc::flock {
            l_type: libc::F_WRLCK as i16,
            l_whence: libc::SEEK_SET as i16,
            l_start: 0,
            l_len: 1,
            l_pid: 0,
        };
        assert_eq!(fcntl_lock(&file, libc::F_SETLK, &lock), 0);
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let _client = TcpStream::connect(("127.0.0.1", port)).unwrap();
        let (_accepted, remote) = listener.accept().unwrap();
        assert!(duplicate(remote, port).is_some());
        assert!(lock_held_by_us(&path), "the record lock was released");
        let _ = std::fs::remove_file(path);
    }

    #[allow(unsafe_code)]
    fn fcntl_lock(file: &std::fs::File, cmd: i32, lock: &libc::flock) -> i32 {
        use std::os::fd::AsRawFd;
        // SAFETY: a valid fd and a pointer to a live flock struct.
        unsafe { libc::fcntl(file.as_raw_fd(), cmd, lock as *const libc::flock) }
    }

    /// /proc/locks lists our pid's POSIX lock on the file's inode.
    fn lock_held_by_us(path: &std::path::Path) -> bool {
        use std::os::unix::fs::MetadataExt;
        let inode = std::fs::metadata(path).unwrap().ino();
        let locks = std::fs::read_to_string("/proc/locks").unwrap();
        let pid = std::process::id().to_string();
        locks.lines().any(|l| {
            l.contains("POSIX")
                && l.split_whitespace().any(|w| w == pid)
                && l.contains(&format!(":{inode} "))
        })
    }
}
