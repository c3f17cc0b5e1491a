//! LinkBuffer operation sequences against a `VecDeque<u8>` model (the model of
//! tests/buffer_model.rs, shared): every read returns what the model says, in order.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../../tests/model/linkbuffer.rs"]
mod model;

fuzz_target!(|ops: Vec<model::Op>| {
    model::run(ops);
});
