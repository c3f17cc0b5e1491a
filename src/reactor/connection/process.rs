//! The handler task: `on_connect` once, then `on_request` while input makes progress.
//!
//! At most one task runs per connection (the `PROCESSING` flag). The task calls `on_request`
//! again only when the previous call consumed input or new input arrived meanwhile; a handler
//! that returns leaving a partial frame is not called again until more bytes arrive (CloudWeGo
//! netpoll calls it in a loop while any input is unread, which spins on partial frames).

use std::io::ErrorKind;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::state::*;
use super::{ConnInner, Connection, Executor};

/// A handler task queued or running as a coroutine. If it never runs (the coroutine could not be
/// made) or is unwound midway (its poller shut down), dropping it releases `PROCESSING` and
/// closes the connection, so the close callbacks still run and nothing waits on it forever.
struct HandlerTask(Option<Arc<ConnInner>>);

impl HandlerTask {
    fn run(mut self) {
        if let Some(inner) = self.0.clone() {
            inner.process();
        }
        self.0 = None;
    }
}

impl Drop for HandlerTask {
    fn drop(&mut self) {
        if let Some(inner) = self.0.take() {
            inner.state.clear(PROCESSING);
            inner.close_with(ErrorKind::Other);
        }
    }
}

impl ConnInner {
    /// Starts a handler task unless one is queued or running (or the connection is closed).
    pub(crate) fn schedule_processing(self: &Arc<Self>) {
        if !self.state.try_start_processing() {
            return;
        }
        match &self.executor {
            Executor::Inline if self.runs_inline_here() => Arc::clone(self).process(),
            Executor::Inline => {
                // Not on this connection's poller (the acceptor's, for on_connect): a handler
                // here would block that thread. Run it where it never waits.
                let inner = Arc::clone(self);
                if self.poller.execute(move || inner.process()).is_err() {
                    self.state.clear(PROCESSING);
                    self.close_with(ErrorKind::Other);
                }
            }
            Executor::Coroutine => {
                let task = HandlerTask(Some(Arc::clone(self)));
                let body = Box::new(move || task.run());
                // On failure the body (and the task in it) is dropped unrun: its drop ends the
                // connection, as it does if the coroutine is unwound at poller shutdown.
                let _ = crate::rt::spawn_detached(&self.poller, body);
            }
            Executor::Pool(pool) => {
                let inner = Arc::clone(self);
                if pool.spawn(move || inner.process()).is_err() {
                    // The pool was shut down under us: nothing will serve this connection.
                    self.state.clear(PROCESSING);
                    self.close_with(ErrorKind::Other);
                }
            }
        }
    }

    /// The handler task: `on_connect` once, then `on_request` while input makes progress.
    fn process(self: Arc<Self>) {
        let conn = Connection {
            inner: Arc::clone(&self),
        };
        loop {
            if self.state.acquire(CONNECTED) {
                if let Some(hooks) = self.hooks() {
                    if panic::catch_unwind(AssertUnwindSafe(|| hooks.on_connect(&conn))).is_err() {
                        self.close_with(ErrorKind::Other);
                    }
                }
                // A hang-up reported while on_connect ran left on_disconnect to us.
                if self.state.end_connect() {
                    self.spawn_on_disconnect();
                }
            }
            let (seen, output_blocked) = self.handle_input(&conn);
            if matches!(self.executor, Executor::Inline) {
                self.track_partial_frame();
            }

            let previous = self.state.clear(PROCESSING);
            if previous & CLOSED != 0 {
                self.finish_if_done();
                return;
            }
            if previous & CLOSE_IDLE != 0 {
                // The server is shutting down: close once what is queued has been sent.
                self.close_when_drained(ErrorKind::NotConnected);
                return;
            }
            if output_blocked {
                // An inline handler waits for room: the poller calls it again once output
                // drains below the cap. If that happened after our last look, the poller found
                // PROCESSING still set and left the call to us (clear-then-look on both sides).
                if self.state.has(OUTPUT_FULL) || !self.state.try_start_processing() {
                    return;
                }
                continue;
            }
            if previous & PEER_CLOSED != 0 {
                // No more input will come, and what was left is handled: close once the output
                // has gone out.
                self.close_when_drained(ErrorKind::UnexpectedEof);
                return;
            }
            // Input that arrived after our last look, while we still held PROCESSING, found the
            // flag set and left it to us (see `State`: the counter and the flag are SeqCst).
            if self.arrived.load(Ordering::SeqCst) != seen && self.state.try_start_processing() {
                continue;
            }
            return;
        }
    }

    /// Calls `on_request` while it makes progress. Returns the `arrived` count it last saw, and
    /// whether an inline handler stopped because the output is over its cap.
    fn handle_input(self: &Arc<Self>, conn: &Connection) -> (u64, bool) {
        let inline = matches!(self.executor, Executor::Inline);
        let mut seen = self.arrived.load(Ordering::SeqCst);
        loop {
            if self.state.has(CLOSED | CLOSE_IDLE | CLOSE_AFTER_DRAIN) {
                return (seen, false);
            }
            let Some(on_request) = self.request_handler() else {
                return (seen, false);
            };
            if inline && self.output_blocked() {
                return (seen, true);
            }
            seen = self.arrived.load(Ordering::SeqCst);
            let consumed_before = self.consumed.load(Ordering::SeqCst);
            if seen == consumed_before {
                return (seen, false); // nothing buffered
            }
            if inline {
                // What this call asks for, not what an earlier one did (`until` and the other
                // calls that find their bytes never clear it).
                self.inline_want.store(0, Ordering::SeqCst);
            }
            match panic::catch_unwind(AssertUnwindSafe(|| on_request.call(conn))) {
                Ok(Ok(())) => {}
                // Inline: "call me again when it can progress" (more input, or room).
                Ok(Err(e)) if inline && e.kind() == ErrorKind::WouldBlock => {}
                // The reader's own end-of-input error (a partial frame the peer never finished):
                // not a request to drop the replies still queued; the end-of-input close follows.
                Ok(Err(e))
                    if e.kind() == ErrorKind::UnexpectedEof && self.state.has(PEER_CLOSED) =>
                {
                    return (seen, false);
                }
                Ok(Err(e)) => {
                    // The handler gives up on this connection; what it already queued (an error
                    // reply, say) still goes out first, bounded by the write timeout.
                    log::debug!("netpoll: handler error on {}: {e}", self.peer_addr);
                    self.close_when_drained(e.kind());
                    return (seen, false);
                }
                Err(_) => {
                    // The panic hook reported it; this connection's state is unknown now.
                    self.close_with(ErrorKind::Other);
                    return (seen, false);
                }
            }
            self.release_read_blocks();
            if inline && self.state.has(OUTPUT_FULL) {
                return (seen, true);
            }
            let progressed = self.consumed.load(Ordering::SeqCst) != consumed_before
                || self.arrived.load(Ordering::SeqCst) != seen;
            if !progressed {
                return (seen, false); // a partial frame: wait for more input
            }
        }
    }

    /// Inline mode, before calling the handler or taking more output: true (and `OUTPUT_FULL`
    /// set, input paused) while queued output is at or over the cap. Whoever clears the flag
    /// calls the handler again.
    pub(crate) fn output_blocked(&self) -> bool {
        if self.output.len() < self.output_cap {
            return false;
        }
        let previous = self.state.set(OUTPUT_FULL);
        if previous & WRITE_WAIT != 0 {
            // The poller is sending; it clears OUTPUT_FULL below the cap (it reads the flag
            // after each send, and clears it together with WRITE_WAIT when drained).
            self.sync_interest();
            self.self_arc().watch_unwaited_output();
            return true;
        }
        // Nobody is sending: send now, and leave the rest to the poller.
        match self.send_output() {
            Ok(true) => {}
            Ok(false) => {
                self.state.set(WRITE_WAIT);
                // Left to the poller, and no flush may come to wait for it (a `ready()` that
                // sent the queue back under the cap returns Ok).
                self.self_arc().watch_unwaited_output();
            }
            Err(e) => {
                self.self_arc().close_with(e.kind());
                return true;
            }
        }
        if self.output.len() < self.output_cap {
            self.state.clear(OUTPUT_FULL);
            self.sync_interest();
            return false;
        }
        // OUTPUT_FULL always goes with WRITE_WAIT, so the poller's next writable event sees
        // it and clears it (another thread's flush may have drained the queue meanwhile).
        self.state.set(WRITE_WAIT);
        self.sync_interest();
        self.self_arc().watch_unwaited_output();
        true
    }
}
