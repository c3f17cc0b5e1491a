//! The handler pool, re-exported from the layer below ([`crate::rt`]), where `blocking` uses it
//! too: see [`HandlerPool`].

pub use crate::rt::pool::{default_pool, HandlerPool};
