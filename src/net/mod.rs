//! The Go-net face (in progress): poll descriptors whose read and write slots park a thread or
//! an async task until the poller reports readiness, a deadline passes, or the fd is closed.
//!
//! So far: the slot state machine ([`slot`]), model-checked with loom. The descriptor, deadlines,
//! listeners, connections and the dialer build on it.
// Used by the descriptor that lands next; tested on its own until then.
#![allow(dead_code)]

pub(crate) mod slot;
