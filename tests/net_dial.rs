//! The Go-net face's `Dialer`, checked as behaviours on real loopback sockets: timeouts and
//! deadlines, refused connections, happy eyeballs between `::1` and `127.0.0.1`, cancellation
//! from another thread, the local address, the control hook, Unix paths, socket defaults.
//!
//! A "blackholed" address is a listener with backlog 1 that never accepts, its queue filled
//! first: the kernel then drops further SYNs, so a connect to it hangs until its deadline.
//! Tests that need one (or need `localhost` to resolve to both families) print `SKIPPED` and
//! return when the machine cannot provide it, rather than fail or flake.
//!
//! Some tests let time pass so a deadline can fire; none sleeps to wait for another thread:
//! those waits are channels bounded by `LIMIT`.

mod common;

use std::future::Future;
use std::io::{self, ErrorKind, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs};
use std::pin::pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll, Wake, Waker};
use std::thread;
use std::time::{Duration, Instant};

use common::LIMIT;
use futures::executor::block_on;
use netpoll::net::{
    self, CancelToken, Dialer, KeepAliveConfig, ListenConfig, TcpConn, TcpListener,
};

/// How long a probe connect may take before its target counts as blackholed: a loopback
/// handshake takes microseconds.
const PROBE: Duration = Duration::from_millis(100);

/// Slack allowed past a deadline for a loaded machine to notice it.
const SLACK: Duration = Duration::from_secs(2);

const LOCALHOST_V4: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// A listener with a full queue that never accepts: connects to `addr` hang.
struct Blackhole {
    addr: SocketAddr,
    _listener: TcpListener,
    _queued: Vec<TcpConn>,
}

/// Listens with backlog 1 on `addr` (port 0 for any) and fills its queue with connects until
/// two in a row do not complete within `PROBE` (two, so one slow handshake on a loaded machine
/// is not taken for a full queue). `Err` says why the machine cannot blackhole.
fn blackhole(addr: SocketAddr) -> Result<Blackhole, String> {
    let listener = ListenConfig::new()
        .with_backlog(1)
        .listen_tcp_addr(addr)
        .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    let addr = listener.local_addr();
    let mut queued = Vec::new();
    let mut timeouts = 0;
    for _ in 0..16 {
        match Dialer::new().timeout(PROBE).dial(&addr.to_string()) {
            Ok(conn) => {
                queued.push(conn);
                timeouts = 0;
            }
            Err(e) if net::is_timeout(&e) => {
                timeouts += 1;
                if timeouts == 2 {
                    return Ok(Blackhole {
                        addr,
                        _listener: listener,
                        _queued: queued,
                    });
                }
            }
            Err(e) => return Err(format!("filling the queue of {addr} failed: {e}")),
        }
    }
    Err(format!(
        "the kernel completed {} connects to {addr} (backlog 1, never accepted): SYNs are not dropped",
        queued.len()
    ))
}

fn blackhole_or_skip(addr: SocketAddr, test: &str) -> Option<Blackhole> {
    match blackhole(addr) {
        Ok(hole) => Some(hole),
        Err(reason) => {
            eprintln!("SKIPPED {test}: {reason}");
            None
        }
    }
}

/// One blackholed address on 127.0.0.1 for the whole file (filling a queue takes a few
/// hundred milliseconds); dials to it from several tests at once all hang alike.
fn shared_blackhole(test: &str) -> Option<SocketAddr> {
    static HOLE: OnceLock<Result<Blackhole, String>> = OnceLock::new();
    match HOLE.get_or_init(|| blackhole(SocketAddr::new(LOCALHOST_V4, 0))) {
        Ok(hole) => Some(hole.addr),
        Err(reason) => {
            eprintln!("SKIPPED {test}: {reason}");
            None
        }
    }
}

/// `localhost`'s first (primary) address family and an address of the other one, when it
/// resolves to both and both can be bound.
fn localhost_families(test: &str) -> Option<(IpAddr, IpAddr)> {
    let resolved: Vec<SocketAddr> = match ("localhost", 0).to_socket_addrs() {
        Ok(addrs) => addrs.collect(),
        Err(e) => {
            eprintln!("SKIPPED {test}: localhost does not resolve: {e}");
            return None;
        }
    };
    let families = resolved.first().and_then(|first| {
        let other = resolved.iter().find(|a| a.is_ipv6() != first.is_ipv6())?;
        Some((first.ip(), other.ip()))
    });
    let Some((primary, fallback)) = families else {
        eprintln!(
            "SKIPPED {test}: localhost resolves to {resolved:?}, not to both ::1 and 127.0.0.1"
        );
        return None;
    };
    for ip in [primary, fallback] {
        if let Err(e) = std::net::TcpListener::bind((ip, 0)) {
            eprintln!("SKIPPED {test}: cannot bind {ip}: {e}");
            return None;
        }
    }
    Some((primary, fallback))
}

/// A non-blocking std listener on `ip:port`, to see whether a dial reached it.
fn watcher(ip: IpAddr, port: u16) -> io::Result<std::net::TcpListener> {
    let listener = std::net::TcpListener::bind((ip, port))?;
    listener.set_nonblocking(true)?;
    Ok(listener)
}

fn assert_nothing_connected(listener: &std::net::TcpListener) {
    match listener.accept() {
        Err(e) if e.kind() == ErrorKind::WouldBlock => {}
        Ok((_, peer)) => panic!("{peer} connected although the dial should not have"),
        Err(e) => panic!("accept failed: {e}"),
    }
}

/// A blackhole on `hang_ip` and a plain listener on `ok_ip`, on the same port (retried a few
/// times in case that port is taken on `ok_ip`).
fn blackhole_beside_listener(
    hang_ip: IpAddr,
    ok_ip: IpAddr,
    test: &str,
) -> Option<(Blackhole, std::net::TcpListener)> {
    for _ in 0..8 {
        let hole = blackhole_or_skip(SocketAddr::new(hang_ip, 0), test)?;
        match watcher(ok_ip, hole.addr.port()) {
            Ok(listener) => return Some((hole, listener)),
            Err(e) if e.kind() == ErrorKind::AddrInUse => continue,
            Err(e) => panic!("cannot listen on {ok_ip}: {e}"),
        }
    }
    eprintln!("SKIPPED {test}: no port free on both {hang_ip} and {ok_ip}");
    None
}

/// A port on `ip` that nothing listens on (bound then released).
fn closed_port(ip: IpAddr) -> u16 {
    let probe = std::net::TcpListener::bind((ip, 0)).unwrap();
    probe.local_addr().unwrap().port()
}

/// Runs `dial` on its own thread; its result arrives on the returned receiver.
fn on_thread<T: Send + 'static>(dial: impl FnOnce() -> T + Send + 'static) -> mpsc::Receiver<T> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(dial());
    });
    rx
}

/// A waker that reports each wake on a channel.
struct ChannelWaker(Mutex<mpsc::Sender<()>>);

impl Wake for ChannelWaker {
    fn wake(self: Arc<Self>) {
        let _ = self.0.lock().unwrap().send(());
    }
}

fn channel_waker() -> (Waker, mpsc::Receiver<()>) {
    let (tx, rx) = mpsc::channel();
    (Waker::from(Arc::new(ChannelWaker(Mutex::new(tx)))), rx)
}

/// Dials `tcp` on a helper thread and waits at most `LIMIT`, so a dial that ignores its
/// deadline fails the test instead of hanging it.
trait BoundedDial {
    fn dial(&self, address: &str) -> io::Result<TcpConn>;
}

impl BoundedDial for Dialer {
    fn dial(&self, address: &str) -> io::Result<TcpConn> {
        let (dialer, address) = (self.clone(), address.to_string());
        on_thread(move || dialer.dial_tcp("tcp", &address))
            .recv_timeout(LIMIT)
            .expect("the dial did not return in time")
    }
}

/// A control hook that reports each call on a channel.
fn signalling_hook() -> (
    impl Fn(&socket2::Socket) -> io::Result<()> + Send + Sync + 'static,
    mpsc::Receiver<()>,
) {
    let (tx, rx) = mpsc::channel();
    let tx = Mutex::new(tx);
    (
        move |_: &socket2::Socket| {
            let _ = tx.lock().unwrap().send(());
            Ok(())
        },
        rx,
    )
}

// ---- timeouts and deadlines ------------------------------------------------------------------

#[test]
fn dial_to_a_blackholed_address_times_out_at_the_timeout() {
    let Some(hole) = shared_blackhole("dial timeout") else {
        return;
    };
    let timeout = Duration::from_millis(300);
    let started = Instant::now();
    let err = Dialer::new()
        .timeout(timeout)
        .dial(&hole.to_string())
        .unwrap_err();
    let took = started.elapsed();
    assert!(net::is_timeout(&err), "{err}");
    assert!(!net::is_canceled(&err) && !net::is_closed(&err), "{err}");
    assert!(
        err.to_string().contains(&format!("dial tcp {hole}")),
        "{err}"
    );
    assert!(took >= timeout, "gave up early: {took:?}");
    assert!(took < timeout + SLACK, "gave up late: {took:?}");
}

#[test]
fn an_absolute_deadline_earlier_than_the_timeout_bounds_the_dial() {
    let Some(hole) = shared_blackhole("dial deadline") else {
        return;
    };
    let started = Instant::now();
    let deadline = started + Duration::from_millis(300);
    let err = Dialer::new()
        .timeout(LIMIT)
        .deadline(deadline)
        .dial(&hole.to_string())
        .unwrap_err();
    assert!(net::is_timeout(&err), "{err}");
    let now = Instant::now();
    assert!(now >= deadline, "gave up {:?} early", deadline - now);
    assert!(now < deadline + SLACK, "gave up {:?} late", now - deadline);
}

#[test]
fn async_dial_to_a_blackholed_address_times_out_at_the_timeout() {
    let Some(hole) = shared_blackhole("async dial timeout") else {
        return;
    };
    let timeout = Duration::from_millis(300);
    let started = Instant::now();
    let dialer = Dialer::new().timeout(timeout);
    let err = on_thread(move || block_on(dialer.dial_tcp_async("tcp", &hole.to_string())))
        .recv_timeout(LIMIT)
        .expect("the async dial did not return")
        .unwrap_err();
    let took = started.elapsed();
    assert!(net::is_timeout(&err), "{err}");
    assert!(took >= timeout, "gave up early: {took:?}");
    assert!(took < timeout + SLACK, "gave up late: {took:?}");
}

#[test]
fn dial_with_a_past_deadline_fails_at_once_without_connecting() {
    let listener = watcher(LOCALHOST_V4, 0).unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = calls.clone();
    let started = Instant::now();
    let err = Dialer::new()
        .deadline(Instant::now())
        .control(move |_| {
            counted.fetch_add(1, Ordering::SeqCst);
            Ok(())
        })
        .dial(&addr)
        .unwrap_err();
    assert!(net::is_timeout(&err), "{err}");
    assert!(started.elapsed() < SLACK, "took {:?}", started.elapsed());
    assert_eq!(calls.load(Ordering::SeqCst), 0, "a socket was made");
    assert_nothing_connected(&listener);
}

#[test]
fn connection_refused_is_reported_promptly() {
    let addr = SocketAddr::new(LOCALHOST_V4, closed_port(LOCALHOST_V4));
    let started = Instant::now();
    let err = Dialer::new()
        .timeout(LIMIT)
        .dial(&addr.to_string())
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ConnectionRefused, "{err}");
    assert!(!net::is_timeout(&err));
    assert!(err.to_string().contains(&addr.to_string()), "{err}");
    assert!(started.elapsed() < SLACK, "took {:?}", started.elapsed());
}

// ---- happy eyeballs --------------------------------------------------------------------------

#[test]
fn happy_eyeballs_connects_to_the_family_that_listens() {
    let test = "happy eyeballs picks the working family";
    let Some((primary, fallback)) = localhost_families(test) else {
        return;
    };
    // Only the fallback family listens: the primary is refused, and the fallback starts at
    // once instead of after the (long) fallback delay.
    let listener = watcher(fallback, 0).unwrap();
    let port = listener.local_addr().unwrap().port();
    let started = Instant::now();
    let conn = Dialer::new()
        .timeout(LIMIT)
        .fallback_delay(Some(LIMIT))
        .dial(&format!("localhost:{port}"))
        .unwrap();
    assert_eq!(conn.peer_addr(), SocketAddr::new(fallback, port));
    assert!(
        started.elapsed() < SLACK,
        "the fallback waited for its delay after the primary failed: {:?}",
        started.elapsed()
    );

    // Only the primary family listens: it wins.
    let listener = watcher(primary, 0).unwrap();
    let port = listener.local_addr().unwrap().port();
    let conn = Dialer::new()
        .timeout(LIMIT)
        .dial(&format!("localhost:{port}"))
        .unwrap();
    assert_eq!(conn.peer_addr(), SocketAddr::new(primary, port));
}

#[test]
fn happy_eyeballs_falls_back_after_the_delay_when_the_primary_hangs() {
    let test = "happy eyeballs with a hanging primary";
    let Some((primary, fallback)) = localhost_families(test) else {
        return;
    };
    let Some((hole, _listener)) = blackhole_beside_listener(primary, fallback, test) else {
        return;
    };
    let delay = Duration::from_millis(200);
    let started = Instant::now();
    let conn = Dialer::new()
        .timeout(LIMIT)
        .fallback_delay(Some(delay))
        .dial(&format!("localhost:{}", hole.addr.port()))
        .unwrap();
    let took = started.elapsed();
    assert_eq!(
        conn.peer_addr(),
        SocketAddr::new(fallback, hole.addr.port())
    );
    assert!(
        took >= delay,
        "the fallback started before its delay: {took:?}"
    );
    assert!(took < delay + SLACK, "the fallback started late: {took:?}");
}

#[test]
fn without_a_fallback_delay_families_are_tried_one_after_the_other() {
    let test = "serial dial (fallback_delay None)";
    let Some((primary, fallback)) = localhost_families(test) else {
        return;
    };
    // A refused primary: the next address (the other family) is tried and wins.
    let listener = watcher(fallback, 0).unwrap();
    let port = listener.local_addr().unwrap().port();
    let conn = Dialer::new()
        .timeout(LIMIT)
        .fallback_delay(None)
        .dial(&format!("localhost:{port}"))
        .unwrap();
    assert_eq!(conn.peer_addr(), SocketAddr::new(fallback, port));
    drop((conn, listener));

    // A hanging primary: with less than 2 s in all, the first address gets all of it, so the
    // other family is never tried, however long it would have taken.
    let Some((hole, listener)) = blackhole_beside_listener(primary, fallback, test) else {
        return;
    };
    let timeout = Duration::from_millis(600);
    let started = Instant::now();
    let err = Dialer::new()
        .timeout(timeout)
        .fallback_delay(None)
        .dial(&format!("localhost:{}", hole.addr.port()))
        .unwrap_err();
    let took = started.elapsed();
    assert!(net::is_timeout(&err), "{err}");
    assert!(took >= timeout && took < timeout + SLACK, "took {took:?}");
    assert_nothing_connected(&listener);
}

#[test]
fn when_both_families_fail_the_primary_error_is_returned() {
    let test = "both families failing";
    let Some((primary, fallback)) = localhost_families(test) else {
        return;
    };
    // The primary times out, the fallback (started at once) is refused first: the dial reports
    // the primary's timeout, not the fallback's refusal.
    let Some(hole) = blackhole_or_skip(SocketAddr::new(primary, 0), test) else {
        return;
    };
    let port = hole.addr.port();
    if std::net::TcpStream::connect((fallback, port)).is_ok() {
        eprintln!("SKIPPED {test}: something listens on {fallback}:{port}");
        return;
    }
    let err = Dialer::new()
        .timeout(Duration::from_millis(300))
        .fallback_delay(Some(Duration::ZERO))
        .dial(&format!("localhost:{port}"))
        .unwrap_err();
    assert!(net::is_timeout(&err), "not the primary's error: {err}");
}

/// Regression test for a bug at 50e837e, fixed in a13d0e5 (src/net/dial.rs, `dial_parallel`):
/// the winner's side token is cancelled after the race (`primary_side.cancel()` /
/// `CancelToken::cancel(side)`) and that token still watched the winner's poll descriptor, so
/// the *winning connection's* write deadline was set to "now": every write on a connection
/// dialed through happy eyeballs failed with "i/o timeout".
#[test]
fn a_connection_won_by_happy_eyeballs_can_be_written() {
    let test = "writing on a happy-eyeballs connection";
    let Some((_primary, fallback)) = localhost_families(test) else {
        return;
    };
    let listener = net::listen_tcp("tcp", SocketAddr::new(fallback, 0).to_string()).unwrap();
    let port = listener.local_addr().port();
    let conn = Dialer::new()
        .timeout(LIMIT)
        .dial(&format!("localhost:{port}"))
        .unwrap();
    listener.set_deadline(Some(Instant::now() + LIMIT)).unwrap();
    let (server, _) = listener.accept().unwrap();
    server.set_deadline(Some(Instant::now() + LIMIT)).unwrap();
    (&conn)
        .write_all(b"ping")
        .expect("write on a connection won by happy eyeballs failed (the 50e837e bug is back)");
    let mut got = [0u8; 4];
    (&server).read_exact(&mut got).unwrap();
    assert_eq!(&got, b"ping");
}

// ---- cancellation ----------------------------------------------------------------------------

#[test]
fn cancel_from_another_thread_ends_a_hanging_dial_promptly() {
    let Some(hole) = shared_blackhole("dial cancel") else {
        return;
    };
    // The hook runs just before `connect`; the cancel lands either before the wait for the
    // handshake (the dial must notice) or during it (it must be woken): both end it promptly.
    let token = CancelToken::new();
    let (hook, connecting) = signalling_hook();
    let dialer = Dialer::new()
        .timeout(LIMIT)
        .cancel_token(token.clone())
        .control(hook);
    let addr = hole.to_string();
    let result = on_thread(move || dialer.dial_tcp("tcp", &addr));
    connecting
        .recv_timeout(LIMIT)
        .expect("the dial never made its socket");
    let canceled_at = Instant::now();
    token.cancel();
    assert!(token.is_canceled());
    let err = result
        .recv_timeout(LIMIT)
        .expect("the cancelled dial did not return")
        .unwrap_err();
    assert!(net::is_canceled(&err), "{err}");
    assert!(!net::is_timeout(&err), "{err}");
    assert!(
        canceled_at.elapsed() < SLACK,
        "took {:?}",
        canceled_at.elapsed()
    );
}

#[test]
fn cancel_from_another_thread_wakes_a_parked_async_dial() {
    let Some(hole) = shared_blackhole("async dial cancel") else {
        return;
    };
    let token = CancelToken::new();
    let dialer = Dialer::new().timeout(LIMIT).cancel_token(token.clone());
    let addr = hole.to_string();
    let (waker, woken) = channel_waker();
    let mut cx = Context::from_waker(&waker);
    let mut dial = pin!(dialer.dial_tcp_async("tcp", &addr));
    // A literal address needs no resolver thread: a pending poll is the connect's wait.
    assert!(
        dial.as_mut().poll(&mut cx).is_pending(),
        "the dial to a blackholed address did not wait"
    );
    let canceled_at = Instant::now();
    thread::spawn(move || token.cancel()).join().unwrap();
    woken
        .recv_timeout(LIMIT)
        .expect("the cancel did not wake the dial");
    let err = match dial.as_mut().poll(&mut cx) {
        Poll::Ready(result) => result.unwrap_err(),
        Poll::Pending => panic!("woken by the cancel but still pending"),
    };
    assert!(net::is_canceled(&err), "{err}");
    assert!(
        canceled_at.elapsed() < SLACK,
        "took {:?}",
        canceled_at.elapsed()
    );
}

#[test]
fn cancel_ends_a_happy_eyeballs_race_promptly() {
    let test = "cancelling a happy-eyeballs race";
    let Some((primary, fallback)) = localhost_families(test) else {
        return;
    };
    // The primary hangs, the fallback (started at once) is refused: the race waits on the
    // primary until the cancel reaches it through the race's own tokens.
    let Some(hole) = blackhole_or_skip(SocketAddr::new(primary, 0), test) else {
        return;
    };
    let port = hole.addr.port();
    if std::net::TcpStream::connect((fallback, port)).is_ok() {
        eprintln!("SKIPPED {test}: something listens on {fallback}:{port}");
        return;
    }
    let token = CancelToken::new();
    let (hook, connecting) = signalling_hook();
    let dialer = Dialer::new()
        .timeout(LIMIT)
        .fallback_delay(Some(Duration::ZERO))
        .cancel_token(token.clone())
        .control(hook);
    let result = on_thread(move || dialer.dial_tcp("tcp", format!("localhost:{port}")));
    for side in ["primary", "fallback"] {
        connecting
            .recv_timeout(LIMIT)
            .unwrap_or_else(|_| panic!("the {side} never made its socket"));
    }
    let canceled_at = Instant::now();
    token.cancel();
    let err = result
        .recv_timeout(LIMIT)
        .expect("the cancelled race did not return")
        .unwrap_err();
    assert!(net::is_canceled(&err), "{err}");
    assert!(
        canceled_at.elapsed() < SLACK,
        "took {:?}",
        canceled_at.elapsed()
    );
}

/// Regression test for a bug at a13d0e5, fixed in 86b24e1 (src/net/dial.rs,
/// `dial_tcp_async`): unlike `dial_tcp` (and Go's `dialSerial`), the async dial did not look at
/// the token before making a socket: it sent `connect` and only then found the token
/// cancelled, so the server accepted a connection nobody wanted.
#[test]
fn a_token_cancelled_before_an_async_dial_fails_it_without_a_socket() {
    let listener = watcher(LOCALHOST_V4, 0).unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let token = CancelToken::new();
    token.cancel();
    let (hook, connecting) = signalling_hook();
    let dialer = Dialer::new()
        .timeout(LIMIT)
        .cancel_token(token)
        .control(hook);
    let err = on_thread(move || block_on(dialer.dial_tcp_async("tcp", &addr)))
        .recv_timeout(LIMIT)
        .expect("the async dial did not return")
        .unwrap_err();
    assert!(net::is_canceled(&err), "{err}");
    assert!(
        connecting.try_recv().is_err(),
        "the cancelled async dial made a socket and connected (the a13d0e5 bug is back)"
    );
    assert_nothing_connected(&listener);
}

#[test]
fn a_token_cancelled_before_the_dial_fails_it_without_a_socket() {
    let listener = watcher(LOCALHOST_V4, 0).unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let token = CancelToken::new();
    token.cancel();
    let (hook, connecting) = signalling_hook();
    let err = Dialer::new()
        .timeout(LIMIT)
        .cancel_token(token)
        .control(hook)
        .dial(&addr)
        .unwrap_err();
    assert!(net::is_canceled(&err), "{err}");
    assert!(connecting.try_recv().is_err(), "a socket was made");
    assert_nothing_connected(&listener);
}

/// Regression test for a bug at 50e837e, fixed in a13d0e5 (src/net/dial.rs,
/// `CancelToken::watch` / `Dialer::connect`): a connect registered its poll descriptor with the
/// token and never unregistered it, so cancelling the token *after* the dial returned set the
/// established connection's write deadline to "now" and its writes failed with "i/o timeout". Go: "once successfully connected, any expiration of the context
/// will not affect the connection".
#[test]
fn cancelling_the_token_after_the_dial_leaves_the_connection_usable() {
    let listener = net::listen_tcp("tcp", "127.0.0.1:0").unwrap();
    let token = CancelToken::new();
    let conn = Dialer::new()
        .timeout(LIMIT)
        .cancel_token(token.clone())
        .dial(&listener.local_addr().to_string())
        .unwrap();
    listener.set_deadline(Some(Instant::now() + LIMIT)).unwrap();
    let (server, _) = listener.accept().unwrap();
    server.set_deadline(Some(Instant::now() + LIMIT)).unwrap();
    token.cancel();
    (&conn).write_all(b"after").expect(
        "cancelling the dial's token broke the established connection (the 50e837e bug is back)",
    );
    let mut got = [0u8; 5];
    (&server).read_exact(&mut got).unwrap();
    assert_eq!(&got, b"after");
}

// ---- local address, control hook ------------------------------------------------------------

#[test]
fn the_local_address_is_bound_before_connecting() {
    let listener = net::listen_tcp("tcp", "127.0.0.1:0").unwrap();
    listener.set_deadline(Some(Instant::now() + LIMIT)).unwrap();
    let target = listener.local_addr().to_string();

    // Any port on another loopback address: the server sees that address.
    let local_ip: IpAddr = "127.0.0.2".parse().unwrap();
    let conn = Dialer::new()
        .timeout(LIMIT)
        .local_addr(SocketAddr::new(local_ip, 0))
        .dial(&target)
        .unwrap();
    let (_server, peer) = listener.accept().unwrap();
    assert_eq!(conn.local_addr().ip(), local_ip);
    assert_eq!(peer, conn.local_addr());

    // A given port.
    let local = SocketAddr::new(local_ip, closed_port(local_ip));
    let conn = Dialer::new()
        .timeout(LIMIT)
        .local_addr(local)
        .dial(&target)
        .unwrap();
    let (_server, peer) = listener.accept().unwrap();
    assert_eq!(conn.local_addr(), local);
    assert_eq!(peer, local);
}

#[test]
fn the_control_hook_sees_the_socket_before_bind_and_connect() {
    let listener = net::listen_tcp("tcp", "127.0.0.1:0").unwrap();
    let (tx, rx) = mpsc::channel();
    let tx = Mutex::new(tx);
    let conn = Dialer::new()
        .timeout(LIMIT)
        .local_addr("127.0.0.1:0".parse().unwrap())
        .control(move |socket| {
            let port = socket.local_addr()?.as_socket().map(|a| a.port());
            let connected = socket.peer_addr().is_ok();
            tx.lock().unwrap().send((port, connected)).unwrap();
            Ok(())
        })
        .dial(&listener.local_addr().to_string())
        .unwrap();
    assert_eq!(
        rx.try_recv().unwrap(),
        (Some(0), false),
        "unbound and unconnected"
    );
    assert!(rx.try_recv().is_err(), "the hook ran more than once");
    assert_ne!(conn.local_addr().port(), 0);
}

#[test]
fn an_error_from_the_control_hook_aborts_the_dial() {
    let listener = watcher(LOCALHOST_V4, 0).unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = calls.clone();
    let err = Dialer::new()
        .timeout(LIMIT)
        .control(move |_| {
            counted.fetch_add(1, Ordering::SeqCst);
            Err(io::Error::new(
                ErrorKind::PermissionDenied,
                "refused by hook",
            ))
        })
        .dial(&addr)
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::PermissionDenied, "{err}");
    assert!(err.to_string().contains("refused by hook"), "{err}");
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_nothing_connected(&listener);

    let path = unix_path("hook");
    let unix = std::os::unix::net::UnixListener::bind(&path).unwrap();
    unix.set_nonblocking(true).unwrap();
    let err = Dialer::new()
        .control(|_| Err(io::Error::other("refused by hook")))
        .dial_unix(&path)
        .unwrap_err();
    assert!(err.to_string().contains("refused by hook"), "{err}");
    let accepted = unix.accept().map(|_| ());
    let _ = std::fs::remove_file(&path);
    assert_eq!(
        accepted.unwrap_err().kind(),
        ErrorKind::WouldBlock,
        "the hook did not abort"
    );
}

// ---- Unix sockets ----------------------------------------------------------------------------

fn unix_path(name: &str) -> std::path::PathBuf {
    let path = std::env::temp_dir().join(format!(
        "netpoll-net-dial-{}-{name}.sock",
        std::process::id()
    ));
    let _ = std::fs::remove_file(&path);
    path
}

#[test]
fn dial_unix_to_a_missing_path_fails_with_not_found() {
    let path = unix_path("missing");
    let err = net::dial_unix(&path).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    assert!(
        err.to_string()
            .contains(&format!("dial unix {}", path.display())),
        "{err}"
    );
}

/// Regression test for a bug at a13d0e5, fixed in 86b24e1 (src/net/dial.rs,
/// `Dialer::dial_unix`): the deadline and the token were only consulted while a connect was in
/// progress, and a Unix connect completes at once, so `dial_unix` connected even with its
/// deadline already past. Go's `dialSerial` (and the TCP path) fails it with "i/o timeout".
#[test]
fn dial_unix_with_a_past_deadline_fails_with_a_timeout() {
    let path = unix_path("past-deadline");
    let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
    listener.set_nonblocking(true).unwrap();
    let result = Dialer::new().deadline(Instant::now()).dial_unix(&path);
    let accepted = listener.accept().map(|_| ());
    let _ = std::fs::remove_file(&path);
    let err = result.expect_err(
        "dial_unix connected although its deadline had passed (the a13d0e5 bug is back)",
    );
    assert!(net::is_timeout(&err), "{err}");
    assert_eq!(accepted.unwrap_err().kind(), ErrorKind::WouldBlock);
}

/// Regression test for the same bug with a token cancelled before the dial started.
#[test]
fn dial_unix_with_a_cancelled_token_fails_with_the_cancel_error() {
    let path = unix_path("cancelled");
    let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
    listener.set_nonblocking(true).unwrap();
    let token = CancelToken::new();
    token.cancel();
    let result = Dialer::new().cancel_token(token).dial_unix(&path);
    let accepted = listener.accept().map(|_| ());
    let _ = std::fs::remove_file(&path);
    let err = result.expect_err(
        "dial_unix connected although its token was cancelled (the a13d0e5 bug is back)",
    );
    assert!(net::is_canceled(&err), "{err}");
    assert_eq!(accepted.unwrap_err().kind(), ErrorKind::WouldBlock);
}

#[test]
fn dial_unix_connects_to_a_listening_path() {
    let path = unix_path("echo");
    let listener = net::listen_unix(&path).unwrap();
    let conn = Dialer::new().timeout(LIMIT).dial_unix(&path).unwrap();
    listener.set_deadline(Some(Instant::now() + LIMIT)).unwrap();
    let (server, _) = listener.accept().unwrap();
    server.set_deadline(Some(Instant::now() + LIMIT)).unwrap();
    (&conn).write_all(b"unix").unwrap();
    let mut got = [0u8; 4];
    (&server).read_exact(&mut got).unwrap();
    assert_eq!(&got, b"unix");
    assert_eq!(
        conn.peer_addr().to_string(),
        server.local_addr().to_string()
    );
}

// ---- socket defaults -------------------------------------------------------------------------

#[test]
fn dialed_connections_have_nodelay_and_go_keepalive_by_default() {
    let listener = net::listen_tcp("tcp", "127.0.0.1:0").unwrap();
    let addr = listener.local_addr().to_string();
    let (tx, rx) = mpsc::channel();
    let tx = Mutex::new(tx);
    let conn = Dialer::new()
        .timeout(LIMIT)
        .control(move |s| {
            let seen = (
                s.tcp_keepalive_time()?,
                s.tcp_keepalive_interval()?,
                s.tcp_keepalive_retries()?,
            );
            tx.lock().unwrap().send(seen).unwrap();
            Ok(())
        })
        .dial(&addr)
        .unwrap();
    assert!(conn.nodelay().unwrap());
    assert!(conn.keepalive().unwrap());
    let d = KeepAliveConfig::default();
    assert_eq!(
        (d.idle, d.interval, d.count),
        (Duration::from_secs(15), Duration::from_secs(15), 9)
    );
    assert_eq!(rx.try_recv().unwrap(), (d.idle, d.interval, d.count));

    let conn = Dialer::new()
        .timeout(LIMIT)
        .keepalive(None)
        .dial(&addr)
        .unwrap();
    assert!(!conn.keepalive().unwrap());
    assert!(conn.nodelay().unwrap());

    let custom = KeepAliveConfig {
        idle: Duration::from_secs(30),
        interval: Duration::from_secs(5),
        count: 3,
    };
    let (tx, rx) = mpsc::channel();
    let tx = Mutex::new(tx);
    let conn = Dialer::new()
        .timeout(LIMIT)
        .keepalive(Some(custom))
        .control(move |s| {
            let seen = (
                s.tcp_keepalive_time()?,
                s.tcp_keepalive_interval()?,
                s.tcp_keepalive_retries()?,
            );
            tx.lock().unwrap().send(seen).unwrap();
            Ok(())
        })
        .dial(&addr)
        .unwrap();
    assert!(conn.keepalive().unwrap());
    assert_eq!(
        rx.try_recv().unwrap(),
        (custom.idle, custom.interval, custom.count)
    );
}

#[test]
fn a_zero_timeout_means_no_timeout() {
    // Regression (issue 8): a zero timeout made the deadline "now" and every dial failed at
    // once with "i/o timeout"; in Go zero means no timeout.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let conn = Dialer::new()
        .timeout(Duration::ZERO)
        .dial_tcp("tcp", &addr)
        .unwrap();
    assert_eq!(conn.peer_addr().to_string(), addr);
    let conn = block_on(
        Dialer::new()
            .timeout(Duration::ZERO)
            .dial_tcp_async("tcp", &addr),
    )
    .unwrap();
    assert_eq!(conn.peer_addr().to_string(), addr);
}
