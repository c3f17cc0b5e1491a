//! The code a new user writes first, in each style, compiled and run against a loopback echo
//! server. That it compiles as written is the test: no inherent `read`/`write`/`close` on the
//! connections may shadow the trait methods (`conn.read(&mut buf).await` once failed with "is
//! not a future", and the compiler's hint, dropping the `.await`, put a blocking read in async
//! code). Every wait is bounded by a connection deadline or `LIMIT`.

mod common;

use std::io;
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::Instant;

use common::LIMIT;
use netpoll::net::{self, TcpListener};

/// A loopback echo server on the Go-net face: a thread per connection copying input back until
/// end of stream. Closed (and its accept thread ended) on drop.
struct EchoServer {
    listener: Arc<TcpListener>,
    addr: String,
}

impl EchoServer {
    fn start() -> EchoServer {
        let listener = Arc::new(net::listen_tcp("tcp", "127.0.0.1:0").unwrap());
        let addr = listener.local_addr().to_string();
        let accepting = listener.clone();
        thread::spawn(move || {
            for conn in accepting.incoming() {
                let Ok(conn) = conn else { return };
                thread::spawn(move || {
                    conn.set_deadline(Some(Instant::now() + LIMIT)).unwrap();
                    let _ = io::copy(&mut &conn, &mut &conn);
                });
            }
        });
        EchoServer { listener, addr }
    }
}

impl Drop for EchoServer {
    fn drop(&mut self) {
        let _ = self.listener.close();
    }
}

mod blocking {
    use super::*;
    use std::io::{Read, Write};

    #[test]
    fn an_owned_connection_reads_and_writes_with_std_io() -> io::Result<()> {
        let server = EchoServer::start();
        let mut conn = net::dial_tcp("tcp", &server.addr)?;
        conn.set_deadline(Some(Instant::now() + LIMIT))?;

        conn.write_all(b"hello")?;
        let mut buf = [0u8; 5];
        let mut filled = 0;
        while filled < buf.len() {
            let n = conn.read(&mut buf[filled..])?;
            assert_ne!(n, 0, "the echo ended early");
            filled += n;
        }
        assert_eq!(&buf, b"hello");

        conn.close_write()?;
        assert_eq!(
            conn.read(&mut buf)?,
            0,
            "the server closes after our end of stream"
        );
        conn.close_now()
    }

    #[test]
    fn a_shared_connection_reads_on_one_thread_and_writes_on_another() -> io::Result<()> {
        let server = EchoServer::start();
        let conn = net::dial_tcp("tcp", &server.addr)?;
        conn.set_deadline(Some(Instant::now() + LIMIT))?;
        let data: Vec<u8> = (0..256 * 1024).map(|i| (i % 251) as u8).collect();

        let echoed = thread::scope(|s| {
            s.spawn(|| {
                let mut writer = &conn;
                writer.write_all(&data)?;
                conn.close_write()
            });
            let mut echoed = Vec::new();
            let mut buf = [0u8; 4096];
            loop {
                match (&conn).read(&mut buf)? {
                    0 => break,
                    n => echoed.extend_from_slice(&buf[..n]),
                }
            }
            Ok::<_, io::Error>(echoed)
        })?;
        assert!(echoed == data, "{} bytes came back", echoed.len());
        Ok(())
    }

    #[test]
    fn close_now_from_another_thread_unblocks_a_read() -> io::Result<()> {
        let server = EchoServer::start();
        let conn = Arc::new(net::dial_tcp("tcp", &server.addr)?);
        conn.set_deadline(Some(Instant::now() + LIMIT))?;

        let (started_tx, started) = mpsc::channel();
        let (done_tx, done) = mpsc::channel();
        let reader = conn.clone();
        thread::spawn(move || {
            let mut buf = [0u8; 16];
            started_tx.send(()).unwrap();
            // Nothing was written: this read parks until the close.
            let _ = done_tx.send((&*reader).read(&mut buf));
        });
        started.recv_timeout(LIMIT).unwrap();
        conn.close_now()?;

        let err = done.recv_timeout(LIMIT).unwrap().unwrap_err();
        assert!(net::is_closed(&err), "{err}");
        assert!(!net::is_timeout(&err), "{err}");
        assert!(conn.is_closed());
        Ok(())
    }

    #[test]
    fn a_unix_pair_reads_and_writes_with_std_io() -> io::Result<()> {
        let (mut a, mut b) = net::UnixConn::pair()?;
        a.set_deadline(Some(Instant::now() + LIMIT))?;
        b.set_deadline(Some(Instant::now() + LIMIT))?;
        a.write_all(b"ping")?;
        let mut buf = [0u8; 4];
        b.read_exact(&mut buf)?;
        assert_eq!(&buf, b"ping");
        Ok(())
    }
}

mod futures_style {
    use super::*;
    use futures::{AsyncReadExt, AsyncWriteExt};

    #[test]
    fn reads_writes_and_close_are_awaited() -> io::Result<()> {
        let server = EchoServer::start();
        futures::executor::block_on(async {
            let mut conn = net::Dialer::new()
                .timeout(LIMIT)
                .dial_tcp_async("tcp", &server.addr)
                .await?;
            conn.set_deadline(Some(Instant::now() + LIMIT))?;

            conn.write_all(b"hello").await?;
            let mut buf = [0u8; 5];
            let mut filled = 0;
            while filled < buf.len() {
                let n = conn.read(&mut buf[filled..]).await?;
                assert_ne!(n, 0, "the echo ended early");
                filled += n;
            }
            assert_eq!(&buf, b"hello");

            // futures' close shuts down the write side: the server sees end of stream.
            conn.close().await?;
            assert_eq!(conn.read(&mut buf).await?, 0);
            assert!(!conn.is_closed(), "close() is not close_now()");
            Ok(())
        })
    }

    #[test]
    fn a_shared_connection_is_read_and_written_by_two_tasks() -> io::Result<()> {
        let server = EchoServer::start();
        let conn = net::dial_tcp("tcp", &server.addr)?;
        conn.set_deadline(Some(Instant::now() + LIMIT))?;
        futures::executor::block_on(async {
            let (mut reader, mut writer) = (&conn, &conn);
            let send = async {
                writer.write_all(b"shared").await?;
                writer.close().await
            };
            let mut echoed = Vec::new();
            let (sent, received) =
                futures::future::join(send, reader.read_to_end(&mut echoed)).await;
            sent?;
            received?;
            assert_eq!(echoed, b"shared");
            Ok(())
        })
    }
}

#[cfg(feature = "tokio")]
mod tokio_style {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn reads_writes_and_shutdown_are_awaited() -> io::Result<()> {
        let server = EchoServer::start();
        let mut conn = net::Dialer::new()
            .timeout(LIMIT)
            .dial_tcp_async("tcp", &server.addr)
            .await?;
        conn.set_deadline(Some(Instant::now() + LIMIT))?;

        conn.write_all(b"hello").await?;
        let mut buf = [0u8; 5];
        let mut filled = 0;
        while filled < buf.len() {
            let n = conn.read(&mut buf[filled..]).await?;
            assert_ne!(n, 0, "the echo ended early");
            filled += n;
        }
        assert_eq!(&buf, b"hello");

        // tokio's shutdown shuts down the write side: the server sees end of stream.
        conn.shutdown().await?;
        assert_eq!(conn.read(&mut buf).await?, 0);
        conn.close_now()
    }

    #[test]
    fn a_current_thread_runtime_drives_a_shared_connection() -> io::Result<()> {
        let server = EchoServer::start();
        let runtime = tokio::runtime::Builder::new_current_thread().build()?;
        let conn = net::dial_tcp("tcp", &server.addr)?;
        conn.set_deadline(Some(Instant::now() + LIMIT))?;
        runtime.block_on(async {
            let (mut reader, mut writer) = (&conn, &conn);
            let send = async {
                writer.write_all(b"tokio").await?;
                writer.shutdown().await
            };
            let mut echoed = Vec::new();
            let (sent, received) = tokio::join!(send, reader.read_to_end(&mut echoed));
            sent?;
            received?;
            assert_eq!(echoed, b"tokio");
            Ok(())
        })
    }
}
