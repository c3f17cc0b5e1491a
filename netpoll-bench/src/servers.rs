//! The echo servers under test. Each prints `listening on ADDR` once ready and exits cleanly on
//! SIGINT/SIGTERM.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

/// Every server kind, in table order (`netpoll` first: the others' ratios are to it).
pub const ALL: &[&str] = &[
    "netpoll",
    "netpoll-pool",
    "tokio",
    "tokio-mt",
    "std",
    "netpoll-net",
    "epoll",
];

/// Runs server `kind` on `addr` until a signal.
pub fn serve(kind: &str, addr: SocketAddr, loops: Option<usize>) -> io::Result<()> {
    match kind {
        "netpoll" | "netpoll-pool" => serve_netpoll(addr, loops, kind == "netpoll"),
        "tokio" => serve_tokio(addr, false),
        "tokio-mt" => serve_tokio(addr, true),
        "std" => serve_std(addr),
        "netpoll-net" => serve_netpoll_net(addr, loops),
        "epoll" => {
            let listener = listen(addr)?;
            exit_on_signal()?;
            crate::sys::epoll::serve(listener)
        }
        other => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("unknown server {other:?}; one of {ALL:?}"),
        )),
    }
}

fn listen(addr: SocketAddr) -> io::Result<TcpListener> {
    let listener = TcpListener::bind(addr)?;
    announce(listener.local_addr()?);
    Ok(listener)
}

fn announce(addr: SocketAddr) {
    println!("listening on {addr}");
}

/// For servers without their own shutdown: leave at the first signal.
fn exit_on_signal() -> io::Result<()> {
    let mut signals = Signals::new([SIGINT, SIGTERM])?;
    std::thread::spawn(move || {
        if signals.forever().next().is_some() {
            std::process::exit(0);
        }
    });
    Ok(())
}

/// The reactor face: `inline` runs the (never-blocking) echo handler on the pollers, otherwise
/// on the handler pool.
fn serve_netpoll(addr: SocketAddr, loops: Option<usize>, inline: bool) -> io::Result<()> {
    let mut builder = netpoll::EventLoop::builder().on_request(|_, conn| {
        let mut reader = conn.reader();
        let data = reader.next(reader.len())?;
        drop(reader);
        let mut writer = conn.writer();
        writer.write_direct(data)?;
        writer.flush()
    });
    builder = builder.num_loops(loops.unwrap_or(1));
    if inline {
        builder = builder.inline_handlers();
    }
    let server = std::sync::Arc::new(builder.build()?);
    let listener = netpoll::Listener::bind_tcp(addr)?;
    announce(*listener.local_addr().as_inet().expect("a TCP listener"));
    let mut signals = Signals::new([SIGINT, SIGTERM])?;
    let stopper = server.clone();
    std::thread::spawn(move || {
        if signals.forever().next().is_some() {
            let _ = stopper.shutdown(Instant::now() + Duration::from_secs(2));
        }
    });
    server.serve(listener)
}

/// A task per connection on a current-thread or multi-thread runtime.
fn serve_tokio(addr: SocketAddr, multi_thread: bool) -> io::Result<()> {
    let runtime = if multi_thread {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?
    } else {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
    };
    runtime.block_on(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind(addr).await?;
        announce(listener.local_addr()?);
        let accept = async {
            loop {
                let (mut stream, _) = listener.accept().await?;
                stream.set_nodelay(true)?;
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 64 * 1024];
                    loop {
                        match stream.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => {
                                if stream.write_all(&buf[..n]).await.is_err() {
                                    return;
                                }
                            }
                        }
                    }
                });
            }
            #[allow(unreachable_code)]
            Ok::<(), io::Error>(())
        };
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            result = accept => result,
            _ = tokio::signal::ctrl_c() => Ok(()),
            _ = term.recv() => Ok(()),
        }
    })
}

/// A thread per connection with blocking std sockets.
fn serve_std(addr: SocketAddr) -> io::Result<()> {
    let listener = listen(addr)?;
    exit_on_signal()?;
    for stream in listener.incoming() {
        let mut stream: TcpStream = stream?;
        stream.set_nodelay(true)?;
        std::thread::Builder::new()
            .stack_size(64 * 1024)
            .spawn(move || {
                let mut buf = vec![0u8; 64 * 1024];
                loop {
                    match stream.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => {
                            if stream.write_all(&buf[..n]).is_err() {
                                return;
                            }
                        }
                    }
                }
            })?;
    }
    Ok(())
}

/// The Go-net face: a thread per connection, as `std`, on blocking `netpoll::net::TcpConn`s
/// whose reads and writes that would block park the thread on a netpoll poller (one, unless
/// `loops` says otherwise). Accepted connections already have `TCP_NODELAY`.
fn serve_netpoll_net(addr: SocketAddr, loops: Option<usize>) -> io::Result<()> {
    let mut config = netpoll::net::ListenConfig::new();
    if let Some(loops) = loops {
        config = config.poll_manager(std::sync::Arc::new(netpoll::poll::PollManager::new(loops)?));
    }
    let listener = std::sync::Arc::new(config.listen_tcp_addr(addr)?);
    announce(listener.local_addr());
    // A signal closes the listener: incoming() ends with the closed error.
    let mut signals = Signals::new([SIGINT, SIGTERM])?;
    let stopper = listener.clone();
    std::thread::spawn(move || {
        if signals.forever().next().is_some() {
            let _ = stopper.close();
        }
    });
    // incoming() rides out EMFILE and the like by backing off (as Go's http.Server does); a
    // peer that reset before it was accepted comes back as a connection whose read fails.
    for conn in listener.incoming() {
        let mut conn = match conn {
            Ok(conn) => conn,
            Err(e) if netpoll::net::is_closed(&e) => return Ok(()),
            Err(e) => return Err(e),
        };
        std::thread::Builder::new()
            .stack_size(64 * 1024)
            .spawn(move || {
                let mut buf = vec![0u8; 64 * 1024];
                loop {
                    match conn.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => {
                            if conn.write_all(&buf[..n]).is_err() {
                                return;
                            }
                        }
                    }
                }
            })?;
    }
    Ok(())
}
