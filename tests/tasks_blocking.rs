//! A blocking wait inside an async task (`block_on`, a blocking `join`, a blocking Go-net call)
//! would park the task's poller thread — the thread that must wake it — so it panics with a
//! clear message instead, and the panic reaches the task's handle; and a panicking `Drop` at
//! poller close still completes the handle. (Each test hung or failed before its fix.) All are
//! bounded by LIMIT; a poller is private to its test, so a hang would not stop the others.

mod common;

use std::sync::{mpsc, Arc};
use std::time::Duration;

use common::LIMIT;
use netpoll::net;
use netpoll::poll::{PollManager, Poller};
use netpoll::task;
use netpoll::time;

/// Joins on a helper thread; `None` if the task did not finish within LIMIT.
fn join_within<T: Send + 'static>(
    handle: task::JoinHandle<T>,
) -> Option<Result<T, task::JoinError>> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(handle.join());
    });
    rx.recv_timeout(LIMIT).ok()
}

fn private_poller() -> Arc<Poller> {
    // Leaked on purpose: a test that fails leaves this poller parked forever.
    let m = Box::leak(Box::new(Arc::new(PollManager::new(1).unwrap())));
    m.pick()
}

/// `block_on` inside a task parks the poller thread; the `Sleep` it polls arms its timer on
/// that same poller (`current_poller()` is the task's), so the timer never fires: the task, and
/// every other task, coroutine and connection of the poller, hang forever, silently. Tokio
/// panics here ("Cannot start a runtime from within a runtime"); so should netpoll.
#[test]
fn block_on_inside_a_task_does_not_hang_its_poller_forever() {
    let poller = private_poller();
    let handle = task::spawn_on(&poller, async {
        task::block_on(time::sleep(Duration::from_millis(20)));
    })
    .unwrap();
    // Ok (it worked) or a panic (refused with a message): both fine; a hang is not.
    assert!(
        join_within(handle).is_some(),
        "block_on inside a task hung its poller"
    );
}

/// `JoinHandle::join()` from a task (documented for threads and coroutines) parks the poller
/// thread; the joined task is queued on that very poller: a silent deadlock.
#[test]
fn a_blocking_join_inside_a_task_does_not_hang_its_poller_forever() {
    let poller = private_poller();
    let handle = task::spawn_on(&poller, async {
        let inner = netpoll::spawn(async { 5 });
        inner.join().ok()
    })
    .unwrap();
    assert!(
        join_within(handle).is_some(),
        "JoinHandle::join inside a task hung its poller"
    );
}

/// A blocking Go-net read inside a task: the connection was dialed in the task, so it is
/// registered on the task's poller (`current_poller()` now covers tasks); the read parks the
/// poller thread, and the readiness that would unpark it is dispatched by that same thread.
/// The peer's bytes arrive and the read never returns: a silent deadlock of the whole poller.
/// (On loopback the blocking dial already hangs this way: its connect is in progress and it
/// waits for writability on the parked poller.)
#[test]
fn a_blocking_read_inside_a_task_does_not_hang_its_poller_forever() {
    let poller = private_poller();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (started_tx, started_rx) = mpsc::channel();
    let handle = task::spawn_on(&poller, async move {
        let mut conn = net::Dialer::new().dial_tcp("tcp", addr)?;
        let _ = started_tx.send(());
        let mut buf = [0u8; 8];
        std::io::Read::read(&mut conn, &mut buf)
    })
    .unwrap();
    let (mut peer, _) = listener.accept().unwrap();
    match started_rx.recv_timeout(LIMIT) {
        Ok(()) => std::io::Write::write_all(&mut peer, b"hello").unwrap(),
        // The task ended in (or before) its dial: refused, which is fine.
        Err(mpsc::RecvTimeoutError::Disconnected) => {}
        // Today: the loopback connect is in progress and the dial waits for writability on
        // the parked poller.
        Err(mpsc::RecvTimeoutError::Timeout) => {
            panic!("the blocking dial inside a task hung its poller")
        }
    }
    // Ok(5) (it worked) or an error/panic (refused with a message): fine; a hang is not.
    assert!(
        join_within(handle).is_some(),
        "a blocking read inside a task hung its poller although the bytes arrived"
    );
}

/// A task dropped unfinished by its poller's close, whose future's Drop panics: the panic
/// unwinds out of `TaskFuture::drop` before `join.complete(Cancelled)`, so the handle never
/// hears of it and `join()` blocks forever.
#[test]
fn a_panicking_drop_at_close_still_completes_the_join_handle() {
    struct PanicOnDrop;
    impl Drop for PanicOnDrop {
        fn drop(&mut self) {
            panic!("drop panics");
        }
    }
    let poller = Poller::new().unwrap();
    let (started_tx, started_rx) = mpsc::channel();
    let handle = task::spawn_on(&poller, async move {
        let _guard = PanicOnDrop;
        let _ = started_tx.send(());
        std::future::pending::<()>().await
    })
    .unwrap();
    started_rx.recv_timeout(LIMIT).unwrap();
    poller.close();
    let result = join_within(handle).expect("join() hung: the handle never got a result");
    assert!(result.unwrap_err().is_cancelled());
}
