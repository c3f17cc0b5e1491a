//! The connection's part in a dial: waiting for the connect's single writable edge.

use std::io::{self, ErrorKind, Result};
use std::time::Instant;

use super::state::{CLOSED, DIALING, DIAL_READY};
use super::{closed_error, lock, wait_until, ConnInner};
use crate::addr::Addr;

impl ConnInner {
    /// Waits for the connect's edge (or a close), up to `deadline`.
    pub(crate) fn wait_dial_event(&self, deadline: Option<Instant>) -> Result<()> {
        let mut guard = lock(&self.waiters);
        loop {
            let state = self.state.load();
            if state & DIAL_READY != 0 {
                return Ok(());
            }
            if state & CLOSED != 0 {
                return Err(closed_error());
            }
            guard = match wait_until(&self.write_ready, guard, deadline) {
                Some(guard) => guard,
                None => return Err(io::Error::new(ErrorKind::TimedOut, "i/o timeout")),
            };
        }
    }

    /// A spurious edge: forget it and wait for the next.
    pub(crate) fn clear_dial_event(&self) {
        self.state.clear(DIAL_READY);
    }

    /// Connected: events go to the connection from now on.
    pub(crate) fn set_local_addr(&self, addr: Addr) {
        let _ = self.local_addr.set(addr);
    }

    pub(crate) fn finish_dial(&self) {
        self.state.clear(DIALING | DIAL_READY);
    }
}
