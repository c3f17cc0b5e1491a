//! The socket calls of the pollers' hot paths: `readv`, `sendmsg` with `MSG_NOSIGNAL`,
//! `accept4(NONBLOCK | CLOEXEC)`, each retrying `EINTR`; socket2 makes all but `readv`.

use std::io::{self, IoSlice, IoSliceMut};
use std::os::fd::AsRawFd;

use socket2::{SockAddr, Socket};

use super::epoll::cvt;

/// A non-blocking, close-on-exec stream socket: how every socket of the crate starts.
pub(crate) fn stream_socket(domain: socket2::Domain) -> io::Result<socket2::Socket> {
    socket2::Socket::new(domain, socket2::Type::STREAM.nonblocking().cloexec(), None)
}

/// The default listen backlog: `/proc/sys/net/core/somaxconn`, read once, capped at 65535
/// (older kernels keep the backlog in 16 bits, as Go's seed notes); `SOMAXCONN` if unreadable.
pub(crate) fn default_backlog() -> i32 {
    static BACKLOG: std::sync::OnceLock<i32> = std::sync::OnceLock::new();
    *BACKLOG.get_or_init(|| {
        std::fs::read_to_string("/proc/sys/net/core/somaxconn")
            .ok()
            .and_then(|s| s.trim().parse::<i64>().ok())
            .filter(|&n| n > 0)
            .map_or(libc::SOMAXCONN, |n| n.min(65535) as i32)
    })
}

// What socket2 (0.6, feature `all`) does for us, and what stays ours:
//
// - `accept4(NONBLOCK | CLOEXEC)` is `Socket::accept4`: one syscall, the flags set atomically
//   (no `accept` + `fcntl`), the peer address in a stack `sockaddr_storage`.
// - `sendmsg(MSG_NOSIGNAL)` is `Socket::send_vectored_with_flags`: one `sendmsg` with a stack
//   `msghdr`, no allocation.
// - `SO_ERROR` is `Socket::take_error` (callers use it directly).
// - `readv` stays ours: socket2's vectored receive is `recvmsg`, which on every call also copies
//   a `msghdr` in from user space and `msg_flags`/`msg_controllen` back out; on the poller's
//   read path, into booked LinkBuffer blocks, plain `readv` is the leaner call for a connected
//   stream socket. Epoll and eventfd (the other files of `sys`) have no socket2 counterpart.

/// Linux caps one readv/sendmsg at `IOV_MAX` (1024) buffers.
pub(crate) const MAX_IOVECS: usize = 1024;

/// Reads into several buffers with one `readv`. `Ok(0)` means end of stream (or empty `bufs`).
pub(crate) fn readv(socket: &Socket, bufs: &mut [IoSliceMut<'_>]) -> io::Result<usize> {
    let fd = socket.as_raw_fd();
    let count = bufs.len().min(MAX_IOVECS) as libc::c_int;
    loop {
        // SAFETY: IoSliceMut is ABI-compatible with iovec on unix, and every slice is valid,
        // writable memory borrowed for the duration of the call; `count` <= `bufs.len()`.
        let n = unsafe { libc::readv(fd, bufs.as_mut_ptr().cast::<libc::iovec>(), count) };
        match cvt(n) {
            Ok(n) => return Ok(n as usize),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Sends several buffers (at most [`MAX_IOVECS`]) with one `sendmsg`. `MSG_NOSIGNAL` turns a
/// write to a closed peer into `EPIPE` instead of a process-killing `SIGPIPE`.
pub(crate) fn sendmsg(socket: &Socket, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
    let bufs = &bufs[..bufs.len().min(MAX_IOVECS)];
    loop {
        match socket.send_vectored_with_flags(bufs, libc::MSG_NOSIGNAL) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            result => return result,
        }
    }
}

/// The socket's send queue (`SIOCOUTQ`, which is `TIOCOUTQ`): for TCP, bytes not yet
/// acknowledged by the peer (sent or not); for a Unix stream socket, the allocated size of the
/// buffers the peer has not finished reading (more than their payload, and it drops only when
/// the peer has read a whole buffer).
pub(crate) fn unsent_bytes(socket: &Socket) -> io::Result<usize> {
    let mut queued: libc::c_int = 0;
    // SAFETY: TIOCOUTQ (= SIOCOUTQ) writes one int through the pointer, which points at a live c_int.
    let rc = unsafe { libc::ioctl(socket.as_raw_fd(), libc::TIOCOUTQ, &mut queued) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(queued.max(0) as usize)
}

/// Accepts one connection as a non-blocking, close-on-exec socket. `EINTR` is retried; every
/// other error (including `EAGAIN`, `ECONNABORTED`, `EMFILE`) is the caller's to judge.
pub(crate) fn accept4(listener: &Socket) -> io::Result<(Socket, SockAddr)> {
    loop {
        match listener.accept4(libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            result => return result,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::unix::net::UnixStream;

    fn pair() -> (Socket, Socket) {
        let (a, b) = UnixStream::pair().unwrap();
        (Socket::from(a), Socket::from(b))
    }

    #[test]
    fn sendmsg_to_closed_peer_is_epipe_not_sigpipe() {
        let (a, b) = pair();
        drop(b);
        let err = sendmsg(&a, &[IoSlice::new(b"hello")]).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EPIPE));
    }

    #[test]
    fn readv_and_sendmsg_scatter_and_gather() {
        let (a, b) = pair();
        let sent = sendmsg(&a, &[IoSlice::new(b"hel"), IoSlice::new(b"lo!")]).unwrap();
        assert_eq!(sent, 6);
        let (mut x, mut y) = ([0u8; 2], [0u8; 8]);
        let got = readv(&b, &mut [IoSliceMut::new(&mut x), IoSliceMut::new(&mut y)]).unwrap();
        assert_eq!(got, 6);
        assert_eq!(&x, b"he");
        assert_eq!(&y[..4], b"llo!");
    }

    #[test]
    fn readv_on_empty_nonblocking_socket_would_block_and_eof_reads_zero() {
        let (mut a, b) = pair();
        b.set_nonblocking(true).unwrap();
        let mut buf = [0u8; 4];
        let err = readv(&b, &mut [IoSliceMut::new(&mut buf)]).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::WouldBlock);
        a.write_all(b"x").unwrap();
        drop(a);
        assert_eq!(readv(&b, &mut [IoSliceMut::new(&mut buf)]).unwrap(), 1);
        assert_eq!(readv(&b, &mut [IoSliceMut::new(&mut buf)]).unwrap(), 0);
    }

    #[test]
    fn accept4_returns_nonblocking_cloexec_socket() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let listener = Socket::from(listener);
        let (fd, peer) = accept4(&listener).unwrap();
        let err = accept4(&listener).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::WouldBlock);
        assert_eq!(peer.as_socket(), Some(client.local_addr().unwrap()));
        // SAFETY: fcntl F_GETFL/F_GETFD on an fd we own.
        let (fl, fdfl) = unsafe {
            (
                libc::fcntl(fd.as_raw_fd(), libc::F_GETFL),
                libc::fcntl(fd.as_raw_fd(), libc::F_GETFD),
            )
        };
        assert_ne!(fl & libc::O_NONBLOCK, 0);
        assert_ne!(fdfl & libc::FD_CLOEXEC, 0);
    }

    #[test]
    fn sendmsg_sends_at_most_iov_max_buffers() {
        let (a, b) = pair();
        b.set_nonblocking(true).unwrap();
        let byte = [7u8];
        let bufs = vec![IoSlice::new(&byte); MAX_IOVECS + 100];
        // More than IOV_MAX buffers would be EMSGSIZE; the call sends the first 1024.
        assert_eq!(sendmsg(&a, &bufs).unwrap(), MAX_IOVECS);
        assert!(a.take_error().unwrap().is_none());
    }
}
