//! The RESP parser on arbitrary input cut at arbitrary points: it never panics, asks only for
//! more than is buffered, and finds the same commands however the input is cut.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use netpoll::buffer::LinkBuffer;
use netpoll::proto::resp::{Frame, Limits, Parser};

#[derive(Arbitrary, Debug)]
struct Case {
    data: Vec<u8>,
    cuts: Vec<u16>,
}

/// Feeds `pieces` one after the other; returns the commands found and whether it ended in a
/// protocol error.
fn run<'a>(pieces: impl Iterator<Item = &'a [u8]>) -> (Vec<Vec<Vec<u8>>>, bool) {
    let limits = Limits {
        max_bulk_len: 1 << 16,
        max_args: 1 << 10,
        max_command_len: 1 << 20,
    };
    let input = LinkBuffer::new();
    let mut parser = Parser::new(limits);
    let mut commands = Vec::new();
    for piece in pieces {
        let mut writer = input.writer();
        writer.write_binary(piece);
        writer.flush();
        drop(writer);
        loop {
            match parser.parse(&mut input.reader()) {
                Ok(Frame::Command(c)) => {
                    assert!(!c.is_empty(), "a command without a name");
                    commands.push(c.iter().map(<[u8]>::to_vec).collect());
                }
                Ok(Frame::Incomplete(need)) => {
                    assert!(
                        need > input.len(),
                        "asked for {need} with {} buffered",
                        input.len()
                    );
                    break;
                }
                Err(_) => return (commands, true),
            }
        }
    }
    (commands, false)
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
    // The same commands and the same ending, however the bytes arrive.
    assert_eq!(whole, cut, "cutting the input changed what was parsed");
});
