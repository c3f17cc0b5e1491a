//! The chunked body decoder on arbitrary input cut at arbitrary points: it never panics, asks
//! only for more than is buffered, keeps to its cap, and decodes the same however the input is
//! cut.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use netpoll::buffer::LinkBuffer;
use netpoll::proto::http::{BodyBuf, ChunkedDecoder, Parsed};

const CAP: u64 = 1 << 16;

#[derive(Arbitrary, Debug)]
struct Case {
    data: Vec<u8>,
    cuts: Vec<u16>,
}

/// The body decoded so far, and how decoding ended (`None`: still incomplete).
fn run<'a>(pieces: impl Iterator<Item = &'a [u8]>) -> (Vec<u8>, Option<String>) {
    let input = LinkBuffer::new();
    let mut decoder = ChunkedDecoder::new(CAP);
    let mut body = BodyBuf::new();
    for piece in pieces {
        let mut writer = input.writer();
        writer.write_binary(piece);
        writer.flush();
        drop(writer);
        let ended = match decoder.decode(&mut input.reader(), &mut body) {
            Ok(Parsed::Complete(())) => Some("complete".to_string()),
            Ok(Parsed::Incomplete(need)) => {
                assert!(need > input.len(), "asked for {need} with {} buffered", input.len());
                None
            }
            Err(e) => Some(format!("{:?}", e.status())),
        };
        assert!(body.len() <= CAP, "{} bytes decoded past the cap", body.len());
        if ended.is_some() {
            return (body.to_vec(), ended);
        }
    }
    (body.to_vec(), None)
}

fuzz_target!(|case: Case| {
    let whole = run(std::iter::once(&case.data[..]));
    let mut cuts: Vec<usize> = case
        .cuts
        .iter()
        .map(|&c| c as usize % (case.data.len() + 1))
        .collect();
    cuts.sort_unstable();
    cuts.dedup();
    let mut pieces = Vec::new();
    let mut at = 0;
    for cut in cuts.into_iter().chain([case.data.len()]) {
        pieces.push(&case.data[at..cut]);
        at = cut;
    }
    let cut = run(pieces.into_iter());
    // Cut input may end with less decoded when it stops early; a verdict must agree.
    if whole.1.is_some() || cut.1.is_some() {
        assert_eq!(whole, cut, "cutting the input changed the decoding");
    } else {
        assert_eq!(whole.0, cut.0, "cutting the input changed the data");
    }
});
