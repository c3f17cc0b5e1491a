//! The poller's side of a connection: read into the input buffer, send the output buffer while
//! a flush waits, and turn hang-ups into an orderly close.

use std::io::{ErrorKind, IoSlice, Result};
use std::os::fd::AsRawFd;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::state::*;
use super::{lock, ConnInner};
use crate::poll::{EventHandler, PollEvent, Ready};
use crate::sys::socket::{readv, sendmsg};

/// At most this many blocks per `sendmsg`.
const MAX_IOV_BLOCKS: usize = 16;

impl EventHandler for ConnInner {
    fn on_ready(&self, ready: Ready) {
        let state = self.state.load();
        if state & DIALING != 0 {
            self.dial_event();
            return;
        }
        if ready.is_readable() && state & (CLOSED | READ_PAUSED) == 0 {
            self.read_input();
        }
        if ready.is_writable() && state & WRITE_WAIT != 0 {
            self.send_for_waiting_flush();
        }
    }

    fn on_hangup(&self, _ready: Ready) {
        if self.state.has(DIALING) {
            self.dial_event();
            return;
        }
        // The poller has detached us. Take what the peer sent before leaving, then wind down.
        while !self.state.has(CLOSED | READ_PAUSED) && self.read_input() > 0 {}
        self.peer_closed();
    }
}

impl ConnInner {
    /// One `readv` into booked input blocks. Returns the bytes read (0 on would-block, EOF or
    /// error, which are handled here).
    fn read_input(&self) -> usize {
        let result = {
            let mut producer = self.input.writer();
            let size = producer.next_book_size();
            let mut booked = producer.book(size, 2);
            let result = readv(self.socket.as_raw_fd(), &mut booked);
            producer.book_ack(*result.as_ref().unwrap_or(&0));
            result
        };
        match result {
            Ok(0) => {
                // End of stream. Level-triggered input would report it forever: detach first.
                if self.registration.is_attached() {
                    let _ = self.poller.control(&self.registration, PollEvent::Detach);
                }
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
                self.self_arc().close_with(e.kind());
                0
            }
        }
    }

    /// Publishes `n` new bytes to readers: wakes a waiting reader that now has enough, or
    /// schedules the handler, and pauses reading at the input cap.
    fn input_arrived(&self, n: usize) {
        self.arrived.fetch_add(n as u64, Ordering::SeqCst);
        let buffered = self.buffered();
        let waiting = self.wait_size.load(Ordering::SeqCst);
        if waiting != 0 {
            if buffered >= waiting {
                let _guard = lock(&self.waiters);
                self.read_ready.notify_all();
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
            match sendmsg(self.socket.as_raw_fd(), &slices[..count]) {
                Ok(n) => {
                    consumer.skip(n)?;
                    consumer.release();
                    self.touch();
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(false),
                Err(e) => return Err(e),
            }
        }
    }

    /// Writable while a flush waits: send, and once drained stop watching output and wake it.
    fn send_for_waiting_flush(&self) {
        match self.send_output() {
            Ok(false) => {}
            Ok(true) => {
                self.state.clear(WRITE_WAIT);
                self.sync_interest();
                let _guard = lock(&self.waiters);
                self.write_ready.notify_all();
            }
            Err(e) => self.self_arc().close_with(e.kind()),
        }
    }

    /// The peer finished (EOF, hang-up or error). Buffered input stays readable; `on_disconnect`
    /// runs once; the handler task handles what is left and then closes.
    pub(crate) fn peer_closed(&self) {
        if self.state.set(PEER_CLOSED) & PEER_CLOSED != 0 {
            return;
        }
        let this = self.self_arc();
        this.wake_all();
        let hooks = self.hooks().filter(|h| h.has_on_disconnect());
        if let Some(hooks) = hooks {
            if self.state.acquire(DISCONNECTED) {
                self.state.set(DISCONNECTING);
                let conn = super::Connection {
                    inner: Arc::clone(&this),
                };
                let task_inner = Arc::clone(&this);
                this.run_user_code(move || {
                    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        hooks.on_disconnect(&conn)
                    }));
                    task_inner.state.clear(DISCONNECTING);
                    task_inner.finish_if_done();
                });
            }
        }
        // The handler task (if one runs, or the one scheduled here) closes once the input left
        // is handled; with no handler, close now.
        if !self.has_request_handler() {
            if !self.state.has(PROCESSING) {
                this.close_with(ErrorKind::UnexpectedEof);
            }
        } else {
            this.schedule_processing();
        }
    }

    /// The dial's single edge: record it and wake the dialer.
    fn dial_event(&self) {
        self.state.set(DIAL_READY);
        let _guard = lock(&self.waiters);
        self.write_ready.notify_all();
    }

    /// A strong handle from `&self` (the poller calls handlers through a borrowed `Arc`).
    pub(crate) fn self_arc(&self) -> Arc<ConnInner> {
        self.this
            .upgrade()
            .expect("a connection's handler is only called while it is alive")
    }
}
