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

use std::sync::atomic::{AtomicU32, Ordering};

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
        self.0.load(Ordering::SeqCst)
    }

    pub(crate) fn has(&self, bits: u32) -> bool {
        self.load() & bits != 0
    }

    /// Sets `bits`; returns the previous word.
    pub(crate) fn set(&self, bits: u32) -> u32 {
        self.0.fetch_or(bits, Ordering::SeqCst)
    }

    /// Clears `bits`; returns the previous word.
    pub(crate) fn clear(&self, bits: u32) -> u32 {
        self.0.fetch_and(!bits, Ordering::SeqCst)
    }

    /// Sets `bit` if it was clear; true if this call set it (the caller won the race).
    pub(crate) fn acquire(&self, bit: u32) -> bool {
        self.set(bit) & bit == 0
    }

    /// Sets `CALLBACKS_RUN` if the connection is closed and neither a handler nor
    /// `on_disconnect` runs; true if this call did (it then runs the close callbacks).
    pub(crate) fn try_finish(&self) -> bool {
        self.0
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |s| {
                let ready =
                    s & CLOSED != 0 && s & (PROCESSING | DISCONNECTING | CALLBACKS_RUN) == 0;
                ready.then_some(s | CALLBACKS_RUN)
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
        match self
            .0
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |s| Some(f(s)))
        {
            Ok(previous) | Err(previous) => previous,
        }
    }

    /// Sets `PROCESSING` unless it is set or the connection is closed (or closing once its
    /// output drained); true if it did.
    pub(crate) fn try_start_processing(&self) -> bool {
        self.0
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |s| {
                (s & (PROCESSING | CLOSED | CLOSE_AFTER_DRAIN) == 0).then_some(s | PROCESSING)
            })
            .is_ok()
    }
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
