//! The HTTP/1.1 head parser on arbitrary input cut at arbitrary points: it never panics, asks
//! only for more than is buffered, consumes nothing, and decides the same however the input is
//! cut.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use netpoll::buffer::LinkBuffer;
use netpoll::proto::http::{HeadParser, Parsed};

#[derive(Arbitrary, Debug)]
struct Case {
    data: Vec<u8>,
    cuts: Vec<u16>,
}

/// What the parser decided: the head's parts, an error status, or "needs more".
#[derive(Debug, PartialEq)]
enum Outcome {
    Head(Vec<u8>, Vec<u8>, String, String, usize),
    Refused(String),
    Incomplete,
}

fn run<'a>(pieces: impl Iterator<Item = &'a [u8]>) -> Outcome {
    let input = LinkBuffer::new();
    let mut parser = HeadParser::with_limit(4096);
    for piece in pieces {
        let mut writer = input.writer();
        writer.write_binary(piece);
        writer.flush();
        drop(writer);
        let before = input.len();
        match parser.parse(&mut input.reader()) {
            Ok(Parsed::Complete(head)) => {
                assert!(head.len() <= input.len(), "a head longer than the input");
                return Outcome::Head(
                    head.method_name().to_vec(),
                    head.target().to_vec(),
                    format!("{:?}", head.version()),
                    format!("{:?}", head.body()),
                    head.len(),
                );
            }
            Ok(Parsed::Incomplete(need)) => {
                assert!(need > input.len(), "asked for {need} with {} buffered", input.len());
            }
            Err(e) => return Outcome::Refused(format!("{:?}", e.status())),
        }
        assert_eq!(input.len(), before, "the head parser consumed input");
    }
    Outcome::Incomplete
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
    assert_eq!(whole, run(pieces.into_iter()), "cutting the input changed the verdict");
});
