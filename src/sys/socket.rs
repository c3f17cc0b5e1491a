//! Socket I/O syscalls that std and socket2 do not offer in the form the pollers need.

use std::io::{self, IoSlice, IoSliceMut};
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

use socket2::SockAddr;

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

/// The pending socket error (`SO_ERROR`), cleared by reading it.
pub(crate) fn take_error(fd: RawFd) -> io::Result<Option<io::Error>> {
    let mut value: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `value` and `len` are valid for writes and `len` says how big `value` is.
    cvt(unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_ERROR,
            (&mut value as *mut libc::c_int).cast(),
            &mut len,
        )
    })?;
    Ok((value != 0).then(|| io::Error::from_raw_os_error(value)))
}

/// Linux caps one readv/sendmsg at `IOV_MAX` (1024) buffers.
pub(crate) const MAX_IOVECS: usize = 1024;

/// Reads into several buffers with one `readv`. `Ok(0)` means end of stream (or empty `bufs`).
pub(crate) fn readv(fd: RawFd, bufs: &mut [IoSliceMut<'_>]) -> io::Result<usize> {
    let count = bufs.len().min(MAX_IOVECS) as libc::c_int;
    loop {
        // SAFETY: IoSliceMut is ABI-compatible with iovec on unix, and every slice is valid,
        // writable memory borrowed for the duration of the call.
        let n = unsafe { libc::readv(fd, bufs.as_mut_ptr().cast::<libc::iovec>(), count) };
        match cvt(n) {
            Ok(n) => return Ok(n as usize),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Sends several buffers with one `sendmsg`. `MSG_NOSIGNAL` turns a write to a closed peer into
/// `EPIPE` instead of a process-killing `SIGPIPE`.
pub(crate) fn sendmsg(fd: RawFd, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
    // SAFETY: msghdr is plain data; all-zero is a valid "no name, no control data" header.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    // sendmsg does not write through msg_iov; the cast to *mut only satisfies the C signature.
    msg.msg_iov = bufs.as_ptr() as *mut libc::iovec;
    msg.msg_iovlen = bufs.len().min(MAX_IOVECS) as _;
    loop {
        // SAFETY: `msg` points at `bufs`, whose slices (ABI-compatible with iovec) stay borrowed
        // and readable for the duration of the call.
        let n = unsafe { libc::sendmsg(fd, &msg, libc::MSG_NOSIGNAL) };
        match cvt(n) {
            Ok(n) => return Ok(n as usize),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Accepts one connection as a non-blocking, close-on-exec socket. `EINTR` is retried; every
/// other error (including `EAGAIN`, `ECONNABORTED`, `EMFILE`) is the caller's to judge.
pub(crate) fn accept4(listener: RawFd) -> io::Result<(OwnedFd, SockAddr)> {
    loop {
        // SAFETY: try_init hands us zeroed sockaddr_storage and its length; accept4 writes at
        // most that many bytes and updates the length.
        let result = unsafe {
            SockAddr::try_init(|storage, len| {
                cvt(libc::accept4(
                    listener,
                    storage.cast::<libc::sockaddr>(),
                    len,
                    libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                ))
            })
        };
        match result {
            Ok((fd, addr)) => {
                // SAFETY: accept4 returned a new fd that nothing else owns.
                return Ok((unsafe { OwnedFd::from_raw_fd(fd) }, addr));
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::fd::AsRawFd;
    use std::os::unix::net::UnixStream;

    #[test]
    fn sendmsg_to_closed_peer_is_epipe_not_sigpipe() {
        let (a, b) = UnixStream::pair().unwrap();
        drop(b);
        let err = sendmsg(a.as_raw_fd(), &[IoSlice::new(b"hello")]).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EPIPE));
    }

    #[test]
    fn readv_and_sendmsg_scatter_and_gather() {
        let (a, b) = UnixStream::pair().unwrap();
        let sent = sendmsg(a.as_raw_fd(), &[IoSlice::new(b"hel"), IoSlice::new(b"lo!")]).unwrap();
        assert_eq!(sent, 6);
        let (mut x, mut y) = ([0u8; 2], [0u8; 8]);
        let got = readv(
            b.as_raw_fd(),
            &mut [IoSliceMut::new(&mut x), IoSliceMut::new(&mut y)],
        )
        .unwrap();
        assert_eq!(got, 6);
        assert_eq!(&x, b"he");
        assert_eq!(&y[..4], b"llo!");
    }

    #[test]
    fn readv_on_empty_nonblocking_socket_would_block_and_eof_reads_zero() {
        let (mut a, b) = UnixStream::pair().unwrap();
        b.set_nonblocking(true).unwrap();
        let mut buf = [0u8; 4];
        let err = readv(b.as_raw_fd(), &mut [IoSliceMut::new(&mut buf)]).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::WouldBlock);
        a.write_all(b"x").unwrap();
        drop(a);
        assert_eq!(
            readv(b.as_raw_fd(), &mut [IoSliceMut::new(&mut buf)]).unwrap(),
            1
        );
        assert_eq!(
            readv(b.as_raw_fd(), &mut [IoSliceMut::new(&mut buf)]).unwrap(),
            0
        );
    }

    #[test]
    fn accept4_returns_nonblocking_cloexec_socket() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let err = accept4(listener.as_raw_fd()).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::WouldBlock);
        let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (fd, peer) = accept4(listener.as_raw_fd()).unwrap();
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
}
