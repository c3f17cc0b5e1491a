//! The connection's state word: every flag the poller, the handler task and user threads race
//! on lives in one `AtomicU32`, so each transition is one atomic read-modify-write and two
//! parties racing on different flags still see each other (tokio's `scheduled_io.rs` layout).
//!
//! | bit | name            | set by                         | cleared by        | meaning |
//! |-----|-----------------|--------------------------------|-------------------|---------|
//! | 0   | `CLOSED`        | `close()` (any thread)         | never             | closed by us or after the peer left; no more I/O |
//! | 1   | `PEER_CLOSED`   | poller on hang-up / EOF        | never             | the peer finished sending; buffered input still readable |
//! | 2   | `PROCESSING`    | whoever schedules the handler  | the handler task  | a handler task is queued or running (at most one) |
//! | 3   | `CONNECTED`     | handler task, before on_connect| never             | `on_connect` has run (or there is none) |
//! | 4   | `DISCONNECTED`  | first to report the hang-up    | never             | `on_disconnect` has been called |
//! | 5   | `CALLBACKS_RUN` | first to finish the close      | never             | close callbacks ran (exactly once) |
//! | 6   | `READ_PAUSED`   | poller, input at its cap       | reader, below cap | input interest is off |
//! | 7   | `WRITE_WAIT`    | flush that hit a full socket   | poller, drained   | output interest is on; the poller sends |
//! | 8   | `CLOSE_IDLE`    | server shutdown                | never             | close as soon as no handler runs |
//! | 9–10 | (free)         |                                |                   | (the dial is the shared `transport` dial; a connection starts connected) |
//! | 11  | `DISCONNECTING` | first to report the hang-up    | its task          | `on_disconnect` is running; close callbacks wait for it |
//! | 12  | `OUTPUT_DEAD`   | poller on `HUP`/`ERR`          | never             | the socket can send no more: flushes fail at once |
//! | 13  | `CLOSE_AFTER_DRAIN` | the library's own close, a handler's error | never | no more input or handler calls; close once the output has drained (or the write timeout fired) |
//! | 14  | `CONNECT_PENDING` | server, at accept            | handler task      | `on_connect` has not returned yet; `on_disconnect` waits for it |
//! | 15  | `DISCONNECT_DEFERRED` | hang-up during `on_connect` | handler task   | run `on_disconnect` as soon as `on_connect` returns |
//! | 16  | `OUTPUT_FULL`   | inline handler at the output cap | poller, below cap | input interest is off and the handler is not called until output drains below the cap |
//!
//! `PEER_CLOSED` means end of *input* only: the peer may still read, so queued output is sent
//! before the library closes (`CLOSE_AFTER_DRAIN`). Only `HUP`/`ERR` (both directions gone, or
//! a reset) end the output side (`OUTPUT_DEAD`).

// loom's atomics under `--cfg loom`, so `loom_tests` below checks this very code.
use crate::loom::{seq_cst_point, AtomicU32, Ordering};

pub(crate) const CLOSED: u32 = 1 << 0;
pub(crate) const PEER_CLOSED: u32 = 1 << 1;
pub(crate) const PROCESSING: u32 = 1 << 2;
pub(crate) const CONNECTED: u32 = 1 << 3;
pub(crate) const DISCONNECTED: u32 = 1 << 4;
pub(crate) const CALLBACKS_RUN: u32 = 1 << 5;
pub(crate) const READ_PAUSED: u32 = 1 << 6;
pub(crate) const WRITE_WAIT: u32 = 1 << 7;
pub(crate) const CLOSE_IDLE: u32 = 1 << 8;
pub(crate) const DISCONNECTING: u32 = 1 << 11;
pub(crate) const OUTPUT_DEAD: u32 = 1 << 12;
pub(crate) const CLOSE_AFTER_DRAIN: u32 = 1 << 13;
pub(crate) const CONNECT_PENDING: u32 = 1 << 14;
pub(crate) const DISCONNECT_DEFERRED: u32 = 1 << 15;
pub(crate) const OUTPUT_FULL: u32 = 1 << 16;

/// Any of these turns input interest off (and makes the poller skip reads).
pub(crate) const INPUT_OFF: u32 = READ_PAUSED | OUTPUT_FULL | PEER_CLOSED | CLOSE_AFTER_DRAIN;

/// The packed flags. Every operation is sequentially consistent: the handler's exit ("clear
/// PROCESSING, then look for new input") and the poller's arrival ("count input, then try to set
/// PROCESSING") form a Dekker pair that weaker orderings would break.
#[derive(Debug, Default)]
pub(crate) struct State(AtomicU32);

impl State {
    pub(crate) fn new(bits: u32) -> State {
        State(AtomicU32::new(bits))
    }

    pub(crate) fn load(&self) -> u32 {
        sc(|| self.0.load(Ordering::SeqCst))
    }

    pub(crate) fn has(&self, bits: u32) -> bool {
        self.load() & bits != 0
    }

    /// Sets `bits`; returns the previous word.
    pub(crate) fn set(&self, bits: u32) -> u32 {
        sc(|| self.0.fetch_or(bits, Ordering::SeqCst))
    }

    /// Clears `bits`; returns the previous word.
    pub(crate) fn clear(&self, bits: u32) -> u32 {
        sc(|| self.0.fetch_and(!bits, Ordering::SeqCst))
    }

    /// Sets `bit` if it was clear; true if this call set it (the caller won the race).
    pub(crate) fn acquire(&self, bit: u32) -> bool {
        self.set(bit) & bit == 0
    }

    /// Sets `CALLBACKS_RUN` if the connection is closed and neither a handler nor
    /// `on_disconnect` runs; true if this call did (it then runs the close callbacks).
    pub(crate) fn try_finish(&self) -> bool {
        sc(|| {
            self.0
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |s| {
                    let ready =
                        s & CLOSED != 0 && s & (PROCESSING | DISCONNECTING | CALLBACKS_RUN) == 0;
                    ready.then_some(s | CALLBACKS_RUN)
                })
        })
        .is_ok()
    }

    /// The peer hung up and `on_disconnect` should run: marks it running (`DISCONNECTING`) and
    /// returns true, or, while `on_connect` has not returned, defers it to the handler task
    /// (`DISCONNECT_DEFERRED`) and returns false.
    pub(crate) fn begin_disconnect(&self) -> bool {
        let previous = self.update(|s| {
            if s & CONNECT_PENDING != 0 {
                s | DISCONNECT_DEFERRED
            } else {
                s | DISCONNECTING
            }
        });
        previous & CONNECT_PENDING == 0
    }

    /// `on_connect` returned: clears `CONNECT_PENDING`; true if a deferred `on_disconnect` must
    /// run now (it is then marked running, in the same step).
    pub(crate) fn end_connect(&self) -> bool {
        let previous = self.update(|s| {
            let s2 = s & !(CONNECT_PENDING | DISCONNECT_DEFERRED);
            if s & DISCONNECT_DEFERRED != 0 {
                s2 | DISCONNECTING
            } else {
                s2
            }
        });
        previous & DISCONNECT_DEFERRED != 0
    }

    /// One atomic step `s -> f(s)`; returns the previous word.
    fn update(&self, f: impl Fn(u32) -> u32) -> u32 {
        match sc(|| {
            self.0
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |s| Some(f(s)))
        }) {
            Ok(previous) | Err(previous) => previous,
        }
    }

    /// Sets `PROCESSING` unless it is set or the connection is closed (or closing once its
    /// output drained); true if it did.
    pub(crate) fn try_start_processing(&self) -> bool {
        sc(|| {
            self.0
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |s| {
                    (s & (PROCESSING | CLOSED | CLOSE_AFTER_DRAIN) == 0).then_some(s | PROCESSING)
                })
        })
        .is_ok()
    }
}

/// One access of the word, with the `SeqCst` total order made visible to loom (nothing
/// outside loom: see [`seq_cst_point`]).
#[inline(always)]
fn sc<T>(access: impl FnOnce() -> T) -> T {
    seq_cst_point();
    let result = access();
    seq_cst_point();
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acquire_wins_once() {
        let state = State::default();
        assert!(state.acquire(DISCONNECTED));
        assert!(!state.acquire(DISCONNECTED));
    }

    #[test]
    fn processing_is_refused_when_closed_or_taken() {
        let state = State::default();
        assert!(state.try_start_processing());
        assert!(!state.try_start_processing());
        state.clear(PROCESSING);
        state.set(CLOSED);
        assert!(!state.try_start_processing());
    }

    #[test]
    fn disconnect_during_on_connect_is_deferred_until_it_returns() {
        let state = State::new(CONNECT_PENDING);
        assert!(!state.begin_disconnect(), "on_connect still running");
        assert!(!state.has(DISCONNECTING));
        assert!(state.end_connect(), "the deferred on_disconnect runs now");
        assert!(state.has(DISCONNECTING));
        assert!(!state.has(CONNECT_PENDING | DISCONNECT_DEFERRED));

        let state = State::default();
        assert!(
            state.begin_disconnect(),
            "no on_connect pending: run at once"
        );
        assert!(!state.end_connect());
    }

    #[test]
    fn finish_waits_for_handler_and_disconnect_and_runs_once() {
        let state = State::new(CLOSED | PROCESSING | DISCONNECTING);
        assert!(!state.try_finish());
        state.clear(PROCESSING);
        assert!(!state.try_finish());
        state.clear(DISCONNECTING);
        assert!(state.try_finish());
        assert!(!state.try_finish());
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    //! The state word under loom: `RUSTFLAGS="--cfg loom" cargo test --release --lib loom_tests`.
    //!
    //! `State` is the real code (its atomic is `crate::loom`'s). A `ConnInner` needs a socket
    //! and a poller, so each model replays, in their order, the lines of `process.rs` (the
    //! handler task), `io.rs` (the poller) and `mod.rs` (close) that touch the word and the byte
    //! counters; what those functions do besides (user code, epoll interest) is a counter the
    //! model asserts on. Keep them in step with the functions they are named after. The byte
    //! counters are `crate::loom::sc`'s: `SeqCst` as the real ones have it.
    use super::*;
    use crate::loom::sc::U64 as AtomicU64;
    use loom::sync::atomic::{AtomicBool, AtomicUsize};
    use loom::sync::Arc;
    use loom::thread;

    #[derive(Default)]
    struct Conn {
        state: State,
        arrived: AtomicU64,
        consumed: AtomicU64,
        /// Handler calls (`on_request`, `on_connect`) running now.
        running: AtomicUsize,
        on_request_calls: AtomicUsize,
        on_disconnect_calls: AtomicUsize,
        close_callback_runs: AtomicUsize,
        on_disconnect_running: AtomicBool,
        on_connect_returned: AtomicBool,
        /// Queued output (one byte is the cap) and the socket.
        output: AtomicUsize,
    }

    const SEQ: std::sync::atomic::Ordering = std::sync::atomic::Ordering::SeqCst;
    const OUTPUT_CAP: usize = 1;

    impl Conn {
        fn with_state(bits: u32) -> Arc<Conn> {
            Arc::new(Conn {
                state: State::new(bits),
                ..Conn::default()
            })
        }

        /// User code that must never overlap another handler call of this connection.
        fn user_call(&self, counter: &AtomicUsize) {
            assert_eq!(
                self.running.fetch_add(1, SEQ),
                0,
                "two handler calls at once"
            );
            counter.fetch_add(1, SEQ);
            self.running.fetch_sub(1, SEQ);
        }

        /// `ConnInner::process`, the `on_request` path: `handle_input` (call while input
        /// makes progress; here each call consumes everything counted), clear `PROCESSING`,
        /// take it back if input arrived after the last look.
        fn process(&self) {
            loop {
                let mut seen;
                loop {
                    seen = self.arrived.load();
                    if seen == self.consumed.load() {
                        break;
                    }
                    self.user_call(&self.on_request_calls);
                    self.consumed.store(seen);
                }
                let previous = self.state.clear(PROCESSING);
                if previous & CLOSED != 0 {
                    self.finish_if_done();
                    return;
                }
                if self.arrived.load() != seen && self.state.try_start_processing() {
                    continue;
                }
                return;
            }
        }

        /// `input_arrived` then `schedule_processing`: count, then try to take `PROCESSING`
        /// (the winner runs the task; here, on this thread).
        fn input_arrived(&self, n: u64) {
            self.arrived.fetch_add(n);
            if self.state.try_start_processing() {
                self.process();
            }
        }

        /// `close_with`: the first close runs `finish_if_done`.
        fn close(&self) {
            if self.state.set(CLOSED) & CLOSED != 0 {
                return;
            }
            self.finish_if_done();
        }

        /// `finish_if_done`: the close callbacks, once, with no handler or on_disconnect running.
        fn finish_if_done(&self) {
            if self.state.try_finish() {
                assert_eq!(
                    self.running.load(SEQ),
                    0,
                    "close callbacks during a handler"
                );
                assert!(!self.on_disconnect_running.load(SEQ));
                self.close_callback_runs.fetch_add(1, SEQ);
            }
        }

        /// `spawn_on_disconnect`'s job (DISCONNECTING is already set).
        fn on_disconnect(&self) {
            assert!(
                self.on_connect_returned.load(SEQ),
                "on_disconnect before on_connect returned"
            );
            self.on_disconnect_running.store(true, SEQ);
            self.on_disconnect_calls.fetch_add(1, SEQ);
            self.on_disconnect_running.store(false, SEQ);
            self.state.clear(DISCONNECTING);
            self.finish_if_done();
        }

        /// `disconnect_hook`: the first to report the hang-up starts on_disconnect, or defers
        /// it to the handler task while on_connect runs.
        fn disconnect_hook(&self) {
            if self.state.acquire(DISCONNECTED) && self.state.begin_disconnect() {
                self.on_disconnect();
            }
        }

        /// `process`, the `on_connect` path: once, then a deferred on_disconnect.
        fn connect(&self) {
            if self.state.acquire(CONNECTED) {
                self.user_call(&AtomicUsize::new(0));
                self.on_connect_returned.store(true, SEQ);
                if self.state.end_connect() {
                    self.on_disconnect();
                }
            }
        }

        /// `ConnInner::output_blocked` with a socket that takes nothing (`send_output` is
        /// `Ok(false)`): only the poller drains the output here.
        fn output_blocked(&self) -> bool {
            if self.output.load(SEQ) < OUTPUT_CAP {
                return false;
            }
            let previous = self.state.set(OUTPUT_FULL);
            if previous & WRITE_WAIT != 0 {
                return true;
            }
            self.state.set(WRITE_WAIT); // send_output: Ok(false)
            if self.output.load(SEQ) < OUTPUT_CAP {
                self.state.clear(OUTPUT_FULL);
                return false;
            }
            self.state.set(WRITE_WAIT);
            true
        }

        /// `process` for an inline handler: blocked on output, it clears `PROCESSING` and
        /// takes it back unless `OUTPUT_FULL` is still set (then the poller calls it again).
        fn process_inline(&self) {
            loop {
                let blocked = self.output_blocked();
                if !blocked {
                    self.user_call(&self.on_request_calls);
                }
                self.state.clear(PROCESSING);
                if blocked {
                    if self.state.has(OUTPUT_FULL) || !self.state.try_start_processing() {
                        return;
                    }
                    continue;
                }
                return;
            }
        }

        /// `send_for_waiting_flush` when the send drains everything, then `output_unblocked`.
        fn poller_drains_output(&self) {
            self.output.store(0, SEQ);
            let previous = self.state.clear(WRITE_WAIT | OUTPUT_FULL);
            if previous & OUTPUT_FULL != 0 && self.state.try_start_processing() {
                self.process_inline();
            }
        }
    }

    /// The PROCESSING hand-off: the poller publishes input (count, then try to take the flag)
    /// twice while the handler task runs (handle, clear the flag, look at the count again).
    /// Input that arrived after the handler's last look found the flag set and was left to it:
    /// every byte is handled, by one handler at a time, and the flag ends clear.
    #[test]
    fn input_arriving_as_the_handler_exits_is_never_left_unhandled() {
        loom::model(|| {
            let conn = Conn::with_state(PROCESSING);
            conn.arrived.store(1);
            let poller = {
                let conn = conn.clone();
                thread::spawn(move || {
                    conn.input_arrived(1);
                    conn.input_arrived(1);
                })
            };
            conn.process();
            poller.join().unwrap();
            assert_eq!(conn.consumed.load(), 3, "input left unhandled");
            assert!(!conn.state.has(PROCESSING));
        });
    }

    /// CLOSED against PROCESSING and DISCONNECTING: a close from another thread while the
    /// handler runs and on_disconnect is finishing. The close callbacks run exactly once, and
    /// only once neither runs (whichever of the three finishes last runs them).
    #[test]
    fn close_callbacks_run_once_after_the_handler_and_on_disconnect() {
        loom::model(|| {
            let conn = Conn::with_state(CONNECTED | PROCESSING | DISCONNECTED | DISCONNECTING);
            conn.arrived.store(1);
            conn.on_connect_returned.store(true, SEQ);
            conn.on_disconnect_running.store(true, SEQ);
            let closer = {
                let conn = conn.clone();
                thread::spawn(move || conn.close())
            };
            let disconnect = {
                let conn = conn.clone();
                thread::spawn(move || {
                    // The end of spawn_on_disconnect's job.
                    conn.on_disconnect_running.store(false, SEQ);
                    conn.state.clear(DISCONNECTING);
                    conn.finish_if_done();
                })
            };
            conn.process();
            closer.join().unwrap();
            disconnect.join().unwrap();
            assert_eq!(conn.close_callback_runs.load(SEQ), 1);
            // A closed connection takes no new handler task.
            assert!(!conn.state.try_start_processing());
        });
    }

    /// `end_connect` against `begin_disconnect`: two hang-up reports (a read of 0 and a
    /// `HUP`) race the handler task's on_connect. on_disconnect runs exactly once, never before
    /// on_connect returned (deferred to the handler task when the hang-up came first).
    #[test]
    fn on_disconnect_runs_once_and_never_during_on_connect() {
        loom::model(|| {
            let conn = Conn::with_state(CONNECT_PENDING | PROCESSING);
            let reporters: Vec<_> = (0..2)
                .map(|_| {
                    let conn = conn.clone();
                    thread::spawn(move || conn.disconnect_hook())
                })
                .collect();
            conn.connect();
            for reporter in reporters {
                reporter.join().unwrap();
            }
            assert_eq!(conn.on_disconnect_calls.load(SEQ), 1);
            assert!(!conn
                .state
                .has(DISCONNECTING | CONNECT_PENDING | DISCONNECT_DEFERRED));
        });
    }

    /// OUTPUT_FULL / WRITE_WAIT between an inline handler stopped at the output cap and the
    /// poller draining the output: whatever the order, the handler is called again once the
    /// output is below the cap (by itself, or by the poller that cleared OUTPUT_FULL), never
    /// two at once, and OUTPUT_FULL does not stay set over an empty output.
    #[test]
    fn drained_output_always_calls_the_blocked_inline_handler_again() {
        loom::model(|| {
            let conn = Conn::with_state(PROCESSING);
            conn.output.store(OUTPUT_CAP, SEQ);
            let poller = {
                let conn = conn.clone();
                thread::spawn(move || {
                    // Writable events come only while output interest (WRITE_WAIT) is on.
                    while !conn.state.has(WRITE_WAIT) {
                        thread::yield_now();
                    }
                    conn.poller_drains_output();
                })
            };
            conn.process_inline();
            poller.join().unwrap();
            assert!(
                conn.on_request_calls.load(SEQ) >= 1,
                "handler never called again"
            );
            assert!(!conn.state.has(OUTPUT_FULL | PROCESSING));
        });
    }
}
