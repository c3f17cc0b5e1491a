//! One descriptor's slot and deadline state machine under arbitrary orders of readiness,
//! polls, abandoned waits, deadlines, clock steps with firing timers, and close; the model and
//! its checks live in the library (`src/transport/desc/event_orders.rs`), where `cargo test`
//! also runs them.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    netpoll::fuzz_seams::slot_deadline(data);
});
