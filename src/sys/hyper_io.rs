//! hyper's read buffer filled straight from the socket (the `hyper` feature).
//!
//! hyper hands its readers a [`ReadBufCursor`] over possibly uninitialised memory, reachable only
//! through `unsafe` methods, so the adapter lives here with the crate's other FFI `unsafe`: one
//! `read(2)` into the cursor's unfilled part, then the cursor advanced by what the kernel wrote.
//! The alternative, a stack buffer and `put_slice`, costs a copy and caps each read at that
//! buffer's size, while hyper grows its own buffer for large bodies (docs/ARCHITECTURE.md).

use std::io;
use std::os::fd::AsRawFd;

use hyper::rt::ReadBufCursor;
use socket2::Socket;

use super::epoll::cvt;

/// One `read(2)` of `socket` into the unfilled part of `cursor`, retrying `EINTR`; the cursor
/// advances by the bytes read, which are returned. `Ok(0)` is end of stream (or a full cursor).
pub(crate) fn read_cursor(socket: &Socket, cursor: &mut ReadBufCursor<'_>) -> io::Result<usize> {
    let fd = socket.as_raw_fd();
    // SAFETY: `as_mut` only requires that we never de-initialise bytes; the kernel only writes
    // into the slice (or nothing), and we write nothing else through it.
    let unfilled = unsafe { cursor.as_mut() };
    if unfilled.is_empty() {
        return Ok(0);
    }
    let (ptr, len) = (unfilled.as_mut_ptr().cast::<libc::c_void>(), unfilled.len());
    let n = loop {
        // SAFETY: `ptr` is valid for writes of `len` bytes (the cursor's unfilled slice, borrowed
        // mutably for this call); read(2) writes at most `len` bytes there and never reads them,
        // so uninitialised memory is fine.
        match cvt(unsafe { libc::read(fd, ptr, len) }) {
            Ok(n) => break n as usize,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    };
    // SAFETY: read(2) returned `n` <= `len`: it initialised the first `n` unfilled bytes.
    unsafe { cursor.advance(n) };
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::mem::MaybeUninit;
    use std::os::unix::net::UnixStream;

    #[test]
    fn reads_into_uninit_memory_and_advances() {
        let (mut a, b) = UnixStream::pair().unwrap();
        let b = Socket::from(b);
        b.set_nonblocking(true).unwrap();
        let mut raw = [MaybeUninit::<u8>::uninit(); 8];
        let mut buf = hyper::rt::ReadBuf::uninit(&mut raw);
        let err = read_cursor(&b, &mut buf.unfilled()).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::WouldBlock);
        a.write_all(b"hello").unwrap();
        assert_eq!(read_cursor(&b, &mut buf.unfilled()).unwrap(), 5);
        a.write_all(b"world").unwrap();
        // Only the 3 bytes left in the buffer are read; the rest stays queued.
        assert_eq!(read_cursor(&b, &mut buf.unfilled()).unwrap(), 3);
        assert_eq!(buf.filled(), b"hellowor");
        assert_eq!(read_cursor(&b, &mut buf.unfilled()).unwrap(), 0);
        drop(a);
        let mut raw = [MaybeUninit::<u8>::uninit(); 8];
        let mut buf = hyper::rt::ReadBuf::uninit(&mut raw);
        assert_eq!(read_cursor(&b, &mut buf.unfilled()).unwrap(), 2);
        assert_eq!(read_cursor(&b, &mut buf.unfilled()).unwrap(), 0);
        assert_eq!(buf.filled(), b"ld");
    }
}
