//! `blocking` when the handler pool refuses its job (the default pool shut down): it runs the
//! closure inline on the calling coroutine instead of panicking, and a dial by name inside a
//! coroutine (its resolution goes through `blocking`) still works. Alone in its binary: it shuts
//! the process-wide pool down.

use std::sync::mpsc;
use std::time::Duration;

use netpoll::net::{self, Dialer};
use netpoll::{go, JoinHandle};

const BOUND: Duration = Duration::from_secs(20);

fn join_within<T: Send + 'static>(handle: JoinHandle<T>) -> std::thread::Result<T> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(handle.join());
    });
    rx.recv_timeout(BOUND)
        .expect("coroutine did not finish in time")
}

#[test]
fn blocking_runs_inline_once_the_handler_pool_is_shut_down() {
    netpoll::rt::default_pool().shutdown();

    let handle = go(|| {
        let poller = netpoll::rt::current_poller().unwrap().id();
        // Inline: on the coroutine's own thread, still inside the coroutine.
        let (value, inside) = netpoll::blocking(|| (40 + 2, netpoll::rt::is_coroutine()));
        (
            value,
            inside,
            poller == netpoll::rt::current_poller().unwrap().id(),
        )
    });
    assert_eq!(join_within(handle).unwrap(), (42, true, true));

    // A panic in the closure still resumes in the caller.
    let handle = go(|| netpoll::blocking(|| -> u32 { panic!("in f (expected by this test)") }));
    let payload = join_within(handle).unwrap_err();
    assert_eq!(
        payload.downcast_ref::<&str>(),
        Some(&"in f (expected by this test)")
    );

    // Name resolution inside a coroutine goes through `blocking`: the dial still works.
    let listener = net::listen_tcp("tcp", "127.0.0.1:0").unwrap();
    let port = listener.local_addr().port();
    let handle = go(move || {
        Dialer::new()
            .timeout(BOUND)
            .dial_tcp("tcp4", ("localhost", port))
            .map(|conn| conn.peer_addr().port())
    });
    assert_eq!(join_within(handle).unwrap().unwrap(), port);
}
