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

impl ConnInner {
    /// Starts a handler task unless one is queued or running (or the connection is closed).
    pub(crate) fn schedule_processing(self: &Arc<Self>) {
        if !self.state.try_start_processing() {
            return;
        }
        match &self.executor {
            Executor::Inline => Arc::clone(self).process(),
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
            }
            let seen = self.handle_input(&conn);

            let previous = self.state.clear(PROCESSING);
            if previous & CLOSED != 0 {
                self.finish_if_done();
                return;
            }
            if previous & (PEER_CLOSED | CLOSE_IDLE) != 0 {
                // No more input will come (or the server is shutting down): done.
                let reason = if previous & PEER_CLOSED != 0 {
                    ErrorKind::UnexpectedEof
                } else {
                    ErrorKind::NotConnected
                };
                self.close_with(reason);
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

    /// Calls `on_request` while it makes progress. Returns the `arrived` count it last saw.
    fn handle_input(self: &Arc<Self>, conn: &Connection) -> u64 {
        let mut seen = self.arrived.load(Ordering::SeqCst);
        loop {
            if self.state.has(CLOSED | CLOSE_IDLE) {
                return seen;
            }
            let Some(on_request) = self.request_handler() else {
                return seen;
            };
            seen = self.arrived.load(Ordering::SeqCst);
            let consumed_before = self.consumed.load(Ordering::SeqCst);
            if seen == consumed_before {
                return seen; // nothing buffered
            }
            match panic::catch_unwind(AssertUnwindSafe(|| on_request.call(conn))) {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    self.close_with(e.kind());
                    return seen;
                }
                Err(_) => {
                    // The panic hook reported it; this connection's state is unknown now.
                    self.close_with(ErrorKind::Other);
                    return seen;
                }
            }
            self.release_read_blocks();
            let progressed = self.consumed.load(Ordering::SeqCst) != consumed_before
                || self.arrived.load(Ordering::SeqCst) != seen;
            if !progressed {
                return seen; // a partial frame: wait for more input
            }
        }
    }
}
