//! The echo servers under test. Each prints `listening on ADDR` once ready and exits cleanly on
//! SIGINT/SIGTERM.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use netpoll::poll::{PollManager, Poller};
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

/// Every server kind, in table order (`netpoll` first: the others' ratios are to it).
/// `netpoll` runs inline handlers, `netpoll-pool` pool handlers, `netpoll-co` coroutine
/// handlers (the library's default); `netpoll-go` is the Go-net face in coroutines,
/// `netpoll-async` the same face in async tasks on the pollers.
pub const ALL: &[&str] = &[
    "netpoll",
    "netpoll-pool",
    "netpoll-co",
    "netpoll-go",
    "netpoll-async",
    "tokio",
    "tokio-mt",
    "std",
    "netpoll-net",
    "go-net",
    "epoll",
];

/// Why server `kind` cannot run on this machine (checked before a main run or `idle`, which
/// skip or refuse it with this note), or `None` if it can. Builds the Go peer if needed.
pub fn unavailable(kind: &str) -> Option<String> {
    match kind {
        "go-net" => go_net_binary().err(),
        _ => None,
    }
}

/// Runs server `kind` on `addr` until a signal.
pub fn serve(kind: &str, addr: SocketAddr, loops: Option<usize>) -> io::Result<()> {
    match kind {
        "netpoll" => serve_netpoll(addr, loops, Handlers::Inline),
        "netpoll-pool" => serve_netpoll(addr, loops, Handlers::Pool),
        // Reserved: the reactor face with `EventLoop::builder().coroutine_handlers()`.
        "netpoll-co" => serve_netpoll(addr, loops, Handlers::Coroutine),
        "netpoll-go" => serve_netpoll_go(addr, loops),
        "netpoll-async" => serve_netpoll_async(addr, loops),
        "tokio" => serve_tokio(addr, false),
        "tokio-mt" => serve_tokio(addr, true),
        "std" => serve_std(addr),
        "netpoll-net" => serve_netpoll_net(addr, loops),
        "go-net" => serve_go_net(addr, loops),
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
/// on the handler pool (named explicitly: the builder's default is becoming coroutines).
/// Where the reactor servers run their handlers.
#[derive(Clone, Copy)]
enum Handlers {
    Inline,
    Pool,
    Coroutine,
}

fn serve_netpoll(addr: SocketAddr, loops: Option<usize>, handlers: Handlers) -> io::Result<()> {
    let mut builder = netpoll::EventLoop::builder().on_request(|_, conn| {
        let mut reader = conn.reader();
        let data = reader.next(reader.len())?;
        drop(reader);
        let mut writer = conn.writer();
        writer.write_direct(data)?;
        writer.flush()
    });
    builder = builder.num_loops(loops.unwrap_or(1));
    builder = match handlers {
        Handlers::Inline => builder.inline_handlers(),
        Handlers::Pool => builder.handler_pool(netpoll::runner::default_pool()),
        Handlers::Coroutine => builder.coroutine_handlers(),
    };
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
        until_signal(accept).await
    })
}

/// Runs `serve` on a tokio runtime until it ends or SIGINT/SIGTERM arrives (then `Ok`).
pub async fn until_signal(
    serve: impl std::future::Future<Output = io::Result<()>>,
) -> io::Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        result = serve => result,
        _ = tokio::signal::ctrl_c() => Ok(()),
        _ = term.recv() => Ok(()),
    }
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

/// A manager of the server's own (if any) and the pollers to serve on.
type OwnPollers = (Option<Arc<PollManager>>, Vec<Arc<Poller>>);

/// `loops` pollers of a manager of its own (kept alive by the first value), or the library's
/// global pollers.
fn pollers(loops: Option<usize>) -> io::Result<OwnPollers> {
    let own = loops
        .map(|n| netpoll::poll::PollManager::new(n).map(Arc::new))
        .transpose()?;
    let pollers = match &own {
        Some(manager) => manager.pollers(),
        None => netpoll::poll::PollManager::global()?.pollers(),
    };
    Ok((own, pollers))
}

/// The Go-net face inside coroutines, as Go code reads: an accept loop that is itself a
/// coroutine and a coroutine per connection (`go handle(conn)`), each a plain blocking
/// `read`/`write_all` loop with a 4 KiB heap buffer. Its blocking calls suspend the coroutine
/// on its poller instead of parking a thread. `loops` pollers of its own when given, else the
/// library's global pollers.
fn serve_netpoll_go(addr: SocketAddr, loops: Option<usize>) -> io::Result<()> {
    let (own, pollers) = pollers(loops)?;
    // One SO_REUSEPORT listener per poller, each made and accepted on by a coroutine of that
    // poller, rather than one listener that an accept coroutine per poller shares: the kernel
    // then spreads new connections over the pollers (by 4-tuple hash), and each poller's
    // accept wakes stay local. A shared listener is registered on one poller only, so the
    // other pollers' accepts would be woken from a foreign thread, and its accepts serialise
    // on the listener's read lock (N-1 accept coroutines queued on it at any time). (A single accept
    // loop could instead hand each connection to the next poller, but a connection accepted
    // inside a coroutine registers on that coroutine's poller: every conn would sit on one.)
    let mut listeners = Vec::with_capacity(pollers.len());
    let mut bind = addr;
    for poller in &pollers {
        let config = netpoll::net::ListenConfig::new().reuse_port(pollers.len() > 1);
        // Listening inside a coroutine registers the listener on that coroutine's poller.
        let listener = netpoll::go_on(poller, move || config.listen_tcp_addr(bind))
            .join()
            .map_err(|_| io::Error::other("netpoll-go: the listening coroutine panicked"))??;
        // Port 0 picked a port: the other listeners share it.
        bind = listener.local_addr();
        listeners.push(Arc::new(listener));
    }
    announce(bind);
    // A signal closes the listeners: each accept loop ends with the closed error.
    let mut signals = Signals::new([SIGINT, SIGTERM])?;
    let stoppers = listeners.clone();
    std::thread::spawn(move || {
        if signals.forever().next().is_some() {
            for listener in &stoppers {
                let _ = listener.close();
            }
        }
    });
    let accepts: Vec<_> = listeners
        .into_iter()
        .zip(&pollers)
        .map(|(listener, poller)| netpoll::go_on(poller, move || accept_loop(&listener)))
        .collect();
    for accept in accepts {
        accept
            .join()
            .map_err(|_| io::Error::other("netpoll-go: an accept coroutine panicked"))??;
    }
    // Connection coroutines still suspended (peers that have not closed) end with the
    // process; `own`'s pollers are closed when it drops here.
    drop(own);
    Ok(())
}

/// The accept loop of `netpoll-go`, run as a coroutine: `incoming()` suspends it until a
/// connection arrives (and rides out EMFILE by backing off on a poller timer).
fn accept_loop(listener: &netpoll::net::TcpListener) -> io::Result<()> {
    // A connection accepted inside a coroutine is registered on that coroutine's poller:
    // its reader runs there too, so the wakes of its reads and writes are local pushes.
    let poller = netpoll::rt::current_poller().expect("accept_loop runs in a coroutine");
    for conn in listener.incoming() {
        let conn = match conn {
            Ok(conn) => conn,
            Err(e) if netpoll::net::is_closed(&e) => return Ok(()),
            Err(e) => return Err(e),
        };
        netpoll::go_on(&poller, move || echo(conn, 4096));
    }
    Ok(())
}

/// The Go-net face in async tasks on the pollers, as tokio code reads: an accept loop per
/// poller that is itself a task (`netpoll::task::spawn_on`) and a task per connection, each a
/// `read`/`write_all` loop over `futures::io` with a 4 KiB heap buffer. The listeners are laid
/// out as `netpoll-go`'s (read its comment): one SO_REUSEPORT listener per poller, made inside
/// a task of that poller so it registers there; a connection accepted inside a task registers
/// on the task's poller, and its echo task is spawned there, so every wake is a local push.
/// `loops` pollers of its own when given, else the library's global pollers.
fn serve_netpoll_async(addr: SocketAddr, loops: Option<usize>) -> io::Result<()> {
    use netpoll::task;
    let (own, pollers) = pollers(loops)?;
    let mut listeners = Vec::with_capacity(pollers.len());
    let mut bind = addr;
    for poller in &pollers {
        let config = netpoll::net::ListenConfig::new().reuse_port(pollers.len() > 1);
        // Listening inside a task registers the listener on that task's poller.
        let listener = task::spawn_on(poller, async move { config.listen_tcp_addr(bind) })?
            .join()
            .map_err(|e| io::Error::other(format!("netpoll-async: the listening task: {e}")))??;
        bind = listener.local_addr();
        listeners.push(Arc::new(listener));
    }
    announce(bind);
    let mut signals = Signals::new([SIGINT, SIGTERM])?;
    let stoppers = listeners.clone();
    std::thread::spawn(move || {
        if signals.forever().next().is_some() {
            for listener in &stoppers {
                let _ = listener.close();
            }
        }
    });
    let accepts = listeners
        .into_iter()
        .zip(&pollers)
        .map(|(listener, poller)| task::spawn_on(poller, accept_loop_async(listener)))
        .collect::<io::Result<Vec<_>>>()?;
    for accept in accepts {
        accept
            .join()
            .map_err(|e| io::Error::other(format!("netpoll-async: an accept task: {e}")))??;
    }
    drop(own);
    Ok(())
}

/// The accept loop of `netpoll-async`, run as a task. Running short of descriptors (EMFILE and
/// its kin) backs off on a poller timer, as `incoming()` does for `netpoll-go`.
async fn accept_loop_async(listener: Arc<netpoll::net::TcpListener>) -> io::Result<()> {
    let poller = netpoll::rt::current_poller().expect("accept_loop_async runs in a task");
    let mut backoff = Duration::from_millis(5);
    loop {
        match listener.accept_async().await {
            Ok((conn, _)) => {
                backoff = Duration::from_millis(5);
                // Detached: the task ends with its connection.
                drop(netpoll::task::spawn_on(&poller, echo_async(conn, 4096))?);
            }
            Err(e) if netpoll::net::is_closed(&e) => return Ok(()),
            Err(e) if is_resource_shortage(&e) => {
                netpoll::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
            Err(e) => return Err(e),
        }
    }
}

/// An accept error that means "out of descriptors or memory for now" (its errno is the
/// `OpError`'s cause's).
fn is_resource_shortage(e: &io::Error) -> bool {
    let errno = e
        .get_ref()
        .and_then(|c| c.downcast_ref::<netpoll::net::OpError>())
        .and_then(|op| op.cause().raw_os_error())
        .or(e.raw_os_error());
    matches!(
        errno,
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}

/// Echoes until end of stream or an error, through a heap buffer of `size` bytes, over
/// `futures::io`.
async fn echo_async(mut conn: netpoll::net::TcpConn, size: usize) {
    use futures::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = vec![0u8; size];
    loop {
        match AsyncReadExt::read(&mut conn, &mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if AsyncWriteExt::write_all(&mut conn, &buf[..n])
                    .await
                    .is_err()
                {
                    return;
                }
            }
        }
    }
}

/// Echoes until end of stream or an error, through a heap buffer of `size` bytes.
fn echo(mut stream: impl Read + Write, size: usize) {
    let mut buf = vec![0u8; size];
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
}

/// Go's `net` as a peer: `peers/gonet/main.go` (a goroutine per connection, a 4 KiB buffer),
/// built by [`go_net_binary`], run in place of this process (same PID, so the caller's CPU,
/// memory and SIGTERM reach it) with `GOMAXPROCS` = `loops` (default 1).
fn serve_go_net(addr: SocketAddr, loops: Option<usize>) -> io::Result<()> {
    use std::os::unix::process::CommandExt;
    let binary = go_net_binary().map_err(io::Error::other)?;
    let error = Command::new(&binary)
        .args(["-addr", &addr.to_string()])
        .env("GOMAXPROCS", loops.unwrap_or(1).to_string())
        .exec();
    Err(io::Error::new(
        error.kind(),
        format!("running {}: {error}", binary.display()),
    ))
}

/// The Go peer's source directory (in this crate).
fn go_net_source() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("peers/gonet")
}

/// `go` on the PATH, if any.
fn find_go() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join("go"))
        .find(|go| go.is_file())
}

/// The Go peer's binary, next to this program (its target dir), built with `go build` when
/// missing or older than its source. `Err` says why it cannot run (no `go`, a failed build).
pub fn go_net_binary() -> Result<PathBuf, String> {
    let exe = std::env::current_exe().map_err(|e| format!("go-net: finding this program: {e}"))?;
    let binary = exe.with_file_name("netpoll-bench-gonet");
    let source = go_net_source().join("main.go");
    let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let fresh = match (modified(&binary), modified(&source)) {
        (Some(built), Some(src)) => built >= src,
        (Some(_), None) => true, // the source is not here (a copied binary): use what was built
        (None, _) => false,
    };
    if fresh {
        return Ok(binary);
    }
    let Some(go) = find_go() else {
        return Err(
            "go-net: no `go` on PATH (scripts/install-go installs Debian's golang-go)".into(),
        );
    };
    // Built under a temporary name, then renamed: concurrent builds (parallel tests) never
    // run a half-written binary.
    let partial = exe.with_file_name(format!("netpoll-bench-gonet.{}.tmp", std::process::id()));
    let out = Command::new(&go)
        .arg("build")
        .arg("-o")
        .arg(&partial)
        .arg(".")
        .current_dir(go_net_source())
        // Never fetch another toolchain: go.mod asks for an old one on purpose.
        .env("GOTOOLCHAIN", "local")
        .output()
        .map_err(|e| format!("go-net: running {} build: {e}", go.display()))?;
    if !out.status.success() {
        let _ = std::fs::remove_file(&partial);
        return Err(format!(
            "go-net: go build failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    std::fs::rename(&partial, &binary)
        .map_err(|e| format!("go-net: installing {}: {e}", binary.display()))?;
    Ok(binary)
}
