//! The poller's side of a connection: read into the input buffer, send the output buffer while
//! a flush waits, and turn the peer's end of input and hang-ups into an orderly close.
//!
//! The registration is persistent (the poller never detaches it on its own): the peer's
//! half-close (`RDHUP`, or a read of 0) only ends the *input*; the socket may still be written,
//! so queued output keeps going out. Only `HUP` or `ERR`, which mean the socket can send no more,
//! end the output side, and then the connection takes itself off the poller (those two are
//! reported whatever the interest, and would be reported again on every wait).

use std::io::{ErrorKind, IoSlice, Result};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::state::*;
use super::{lock, ConnInner, Executor};
use crate::poll::{EventHandler, PollEvent, Ready};
use crate::sys::socket::{readv, sendmsg};

/// At most this many blocks per `sendmsg`.
const MAX_IOV_BLOCKS: usize = 16;

impl EventHandler for ConnInner {
    fn on_ready(&self, ready: Ready) {
        let state = self.state.load();
        if state & CLOSED != 0 {
            return;
        }
        let input_event = Ready::READABLE | Ready::READ_CLOSED | Ready::HANGUP | Ready::ERROR;
        if ready.intersects(input_event) && state & INPUT_OFF == 0 {
            self.read_input();
        }
        if ready.is_writable() && state & WRITE_WAIT != 0 {
            self.send_for_waiting_flush();
        }
        if ready.intersects(Ready::HANGUP | Ready::ERROR) {
            self.hung_up();
        }
    }
}

impl ConnInner {
    /// One `readv` into booked input blocks. Returns the bytes read (0 on would-block, end of
    /// input or error, which are handled here).
    pub(crate) fn read_input(&self) -> usize {
        let result = {
            let mut producer = self.input.writer();
            let size = producer.next_book_size();
            let mut booked = producer.book(size, 2);
            let result = readv(&self.socket, &mut booked);
            producer.book_ack(*result.as_ref().unwrap_or(&0));
            result
        };
        match result {
            Ok(0) => {
                self.peer_closed();
                0
            }
            Ok(n) => {
                self.touch();
                self.input_arrived(n);
                n
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => 0,
            Err(e) => {
                // A reset is the peer hanging up too: on_disconnect before the close callbacks.
                self.disconnect_hook();
                self.self_arc().close_with(e.kind());
                0
            }
        }
    }

    /// Publishes `n` new bytes to readers: wakes a waiting reader that now has enough, or
    /// schedules the handler, and pauses reading at the input cap.
    ///
    /// The bytes are already in the input buffer (`book_ack`) when `arrived` counts them, so
    /// the buffer always holds at least `arrived - consumed` bytes; readers go by the counters.
    fn input_arrived(&self, n: usize) {
        self.arrived.fetch_add(n as u64, Ordering::SeqCst);
        let buffered = self.buffered();
        let waiting = self.wait_size.load(Ordering::SeqCst);
        if waiting != 0 {
            if buffered >= waiting {
                self.wake_readers();
            }
        } else if self.has_request_handler() {
            // Without a handler (a dialed connection read by its owner) there is nothing to
            // schedule: readers take the bytes when they come.
            self.self_arc().schedule_processing();
        }
        if buffered >= self.effective_input_cap() {
            self.state.set(READ_PAUSED);
            self.sync_interest();
            // A reader may have consumed between our count and the flag: it saw no flag, so
            // resuming is ours to do (the SeqCst counters and flag make one of us see the other).
            if self.buffered() < self.effective_input_cap() {
                self.resume_reading();
            }
        }
    }

    /// `HUP` or `ERR`: nothing more can be sent. Take the connection off the poller (both are
    /// reported whatever the interest), fail waiting flushes, then read what the socket still
    /// holds (bounded by the kernel's receive buffer, so the input cap does not apply: those
    /// bytes would be lost otherwise) and end the input.
    fn hung_up(&self) {
        if self.state.set(OUTPUT_DEAD) & OUTPUT_DEAD != 0 {
            return;
        }
        self.disconnect_hook();
        if self.registration.is_attached() {
            let _ = self.poller.control(&self.registration, PollEvent::Detach);
        }
        self.wake_all();
        while !self.state.has(CLOSED | PEER_CLOSED) && self.read_input() > 0 {}
        let state = self.state.load();
        if state & CLOSED != 0 {
            return;
        }
        if state & (WRITE_WAIT | CLOSE_AFTER_DRAIN | OUTPUT_FULL) != 0 {
            log::debug!(
                "netpoll: peer {} hung up with {} bytes of output unsent",
                self.peer_addr,
                self.output.len()
            );
            self.self_arc().close_with(ErrorKind::BrokenPipe);
            return;
        }
        self.peer_closed();
    }

    /// Sends as much of the output buffer as the socket takes. Returns whether it is empty.
    pub(crate) fn send_output(&self) -> Result<bool> {
        let _sending = lock(&self.send_lock);
        let mut consumer = self.output.reader();
        loop {
            let mut slices = [IoSlice::new(&[]); MAX_IOV_BLOCKS];
            let count = consumer.readable_slices(&mut slices);
            if count == 0 {
                consumer.release();
                return Ok(true);
            }
            match sendmsg(&self.socket, &slices[..count]) {
                Ok(n) => {
                    consumer.skip(n)?;
                    consumer.release();
                    self.touch();
                    // Only senders holding `send_lock` write it: no read-modify-write needed.
                    let sent = self.sent.load(Ordering::Relaxed);
                    self.sent.store(sent + n as u64, Ordering::Relaxed);
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(false),
                Err(e) => {
                    // A send that finds the peer reset is the peer hanging up, as a read that
                    // finds it is: on_disconnect before the close callbacks (the callers close).
                    let peer_gone =
                        matches!(e.kind(), ErrorKind::ConnectionReset | ErrorKind::BrokenPipe);
                    if peer_gone && !self.state.has(CLOSED) {
                        self.disconnect_hook();
                    }
                    return Err(e);
                }
            }
        }
    }

    /// Writable while output is queued: send; below the cap, let a blocked inline handler run
    /// again; once drained, stop watching output, wake the flush, and finish a pending close.
    fn send_for_waiting_flush(&self) {
        match self.send_output() {
            Ok(false) => {
                if self.state.has(OUTPUT_FULL) && self.output.len() < self.output_cap {
                    self.output_unblocked(self.state.clear(OUTPUT_FULL));
                }
            }
            Ok(true) => {
                let previous = self.state.clear(WRITE_WAIT | OUTPUT_FULL);
                // A flush that published between our last send and the clear saw WRITE_WAIT and
                // left its bytes to us: send them too, or keep watching output for them.
                if !self.output.is_empty() {
                    match self.send_output() {
                        Ok(true) => {}
                        Ok(false) => {
                            self.state.set(WRITE_WAIT);
                            if matches!(self.executor, Executor::Inline) {
                                // Output of an inline flush, which does not wait.
                                self.self_arc().watch_unwaited_output();
                            }
                        }
                        Err(e) => return self.self_arc().close_with(e.kind()),
                    }
                }
                self.sync_interest();
                self.wake_writers();
                if previous & CLOSE_AFTER_DRAIN != 0 && !self.state.has(WRITE_WAIT) {
                    let reason = self.drain_reason();
                    self.self_arc().close_with(reason);
                    return;
                }
                self.output_unblocked(previous);
            }
            Err(e) => self.self_arc().close_with(e.kind()),
        }
    }

    /// After `OUTPUT_FULL` was cleared (`previous` is the word before): resume input and call
    /// the inline handler that was waiting for room.
    fn output_unblocked(&self, previous: u32) {
        if previous & OUTPUT_FULL != 0 {
            self.sync_interest();
            self.self_arc().schedule_processing();
        }
    }

    /// The peer finished sending (a read of 0, `RDHUP` read to its end, `HUP` or `ERR`).
    /// Buffered input stays readable and is handled; `on_disconnect` runs once (after
    /// `on_connect` returned); the handler task, once it has handled what is left, closes
    /// after the output drained.
    pub(crate) fn peer_closed(&self) {
        if self.state.set(PEER_CLOSED) & PEER_CLOSED != 0 {
            return;
        }
        self.sync_interest(); // nothing more to read: input interest (and RDHUP) off
        let this = self.self_arc();
        this.wake_all();
        self.disconnect_hook();
        if self.has_request_handler() {
            // The task (running, or started here) closes once the input left is handled.
            this.schedule_processing();
        } else if !self.state.has(PROCESSING) {
            this.close_when_drained(ErrorKind::UnexpectedEof);
        }
    }

    /// The peer hung up (end of input, `HUP`/`ERR`, a reset): start `on_disconnect` once
    /// (deferred while `on_connect` runs). Called before any close, so the close callbacks
    /// wait for it.
    pub(crate) fn disconnect_hook(&self) {
        let hooks = self.hooks().filter(|h| h.has_on_disconnect());
        if hooks.is_some() && self.state.acquire(DISCONNECTED) && self.state.begin_disconnect() {
            self.self_arc().spawn_on_disconnect();
        }
    }

    /// Runs `on_disconnect` apart from the handler task (it may run while a handler does), then
    /// lets the close callbacks run. `DISCONNECTING` is already set.
    pub(crate) fn spawn_on_disconnect(self: &Arc<Self>) {
        let Some(hooks) = self.hooks() else {
            self.state.clear(DISCONNECTING);
            return;
        };
        let conn = super::Connection {
            inner: Arc::clone(self),
        };
        let inner = Arc::clone(self);
        self.run_apart(move || {
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                hooks.on_disconnect(&conn)
            }));
            inner.state.clear(DISCONNECTING);
            inner.finish_if_done();
        });
    }

    /// A strong handle from `&self` (the poller calls handlers through a borrowed `Arc`).
    pub(crate) fn self_arc(&self) -> Arc<ConnInner> {
        self.this
            .upgrade()
            .expect("a connection's handler is only called while it is alive")
    }
}
