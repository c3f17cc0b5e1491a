//! The RESP2 parser on a `LinkBuffer`: whole commands, commands split at every byte, pipelines,
//! inline commands, every protocol error Redis reports, the limits, and garbage (proptest).

use bytes::Bytes;
use netpoll::buffer::LinkBuffer;
use netpoll::proto::resp::{Command, Frame, Limits, Parser, ProtocolError};
use proptest::prelude::*;

/// Input fed to a parser in parts, and what it found.
struct Feed {
    input: LinkBuffer,
    parser: Parser,
}

impl Feed {
    fn new(limits: Limits) -> Feed {
        Feed {
            input: LinkBuffer::new(),
            parser: Parser::new(limits),
        }
    }

    fn push(&mut self, data: &[u8]) {
        let mut writer = self.input.writer();
        writer.write_binary(data);
        writer.flush();
    }

    /// Every command parsed from what is buffered, then the need or the error that stopped it.
    fn drain(&mut self) -> (Vec<Vec<Vec<u8>>>, Result<usize, ProtocolError>) {
        let mut commands = Vec::new();
        loop {
            match self.parser.parse(&mut self.input.reader()) {
                Ok(Frame::Command(c)) => commands.push(args(&c)),
                Ok(Frame::Incomplete(need)) => return (commands, Ok(need)),
                Err(e) => return (commands, Err(e)),
            }
        }
    }
}

fn args(c: &Command) -> Vec<Vec<u8>> {
    c.iter().map(<[u8]>::to_vec).collect()
}

fn parse_all(data: &[u8]) -> (Vec<Vec<Vec<u8>>>, Result<usize, ProtocolError>) {
    let mut feed = Feed::new(Limits::default());
    feed.push(data);
    feed.drain()
}

fn cmd(parts: &[&str]) -> Vec<Vec<u8>> {
    parts.iter().map(|p| p.as_bytes().to_vec()).collect()
}

fn error_of(data: &[u8]) -> String {
    match parse_all(data).1 {
        Err(e) => e.to_string(),
        Ok(need) => panic!(
            "no error for {:?} (needs {need})",
            String::from_utf8_lossy(data)
        ),
    }
}

const PIPELINE: &[u8] = b"*3\r\n$3\r\nSET\r\n$3\r\nkey\r\n$5\r\nvalue\r\n\
PING\r\n\
*2\r\n$3\r\nGET\r\n$3\r\nkey\r\n\
*0\r\n\
\r\n\
SET \"a b\" 'c d'\r\n\
*1\r\n$0\r\n\r\n\
*2\r\n$4\r\nECHO\r\n$2\r\n\r\n\r\n";

fn pipeline_commands() -> Vec<Vec<Vec<u8>>> {
    vec![
        cmd(&["SET", "key", "value"]),
        cmd(&["PING"]),
        cmd(&["GET", "key"]),
        cmd(&["SET", "a b", "c d"]),
        cmd(&[""]),
        cmd(&["ECHO", "\r\n"]),
    ]
}

#[test]
fn a_pipeline_of_multibulk_and_inline_commands() {
    let (commands, rest) = parse_all(PIPELINE);
    assert_eq!(commands, pipeline_commands());
    assert_eq!(rest, Ok(1), "everything consumed, one more byte needed");
}

#[test]
fn commands_fed_one_byte_at_a_time() {
    let mut feed = Feed::new(Limits::default());
    let mut commands = Vec::new();
    for byte in PIPELINE {
        feed.push(&[*byte]);
        let (mut found, rest) = feed.drain();
        let need = rest.unwrap();
        assert!(
            need > feed.input.len(),
            "needs {need} with {} buffered",
            feed.input.len()
        );
        commands.append(&mut found);
    }
    assert_eq!(commands, pipeline_commands());
    assert!(feed.input.is_empty());
}

#[test]
fn a_pipeline_split_at_every_boundary() {
    for split in 0..=PIPELINE.len() {
        let mut feed = Feed::new(Limits::default());
        feed.push(&PIPELINE[..split]);
        let (mut commands, first) = feed.drain();
        first.unwrap();
        feed.push(&PIPELINE[split..]);
        let (mut more, _) = feed.drain();
        commands.append(&mut more);
        assert_eq!(commands, pipeline_commands(), "split at {split}");
    }
}

#[test]
fn a_thousand_pipelined_commands() {
    let mut data = Vec::new();
    for i in 0..1000 {
        let (key, value) = (format!("key:{i}"), "v".repeat(i % 70));
        data.extend_from_slice(
            format!(
                "*3\r\n$3\r\nSET\r\n${}\r\n{key}\r\n${}\r\n{value}\r\n",
                key.len(),
                value.len()
            )
            .as_bytes(),
        );
    }
    let (commands, rest) = parse_all(&data);
    assert_eq!(rest, Ok(1));
    assert_eq!(commands.len(), 1000);
    for (i, c) in commands.iter().enumerate() {
        assert_eq!(c, &cmd(&["SET", &format!("key:{i}"), &"v".repeat(i % 70)]));
    }
}

/// A command that lies in one block is taken whole: its arguments point into that block.
#[test]
fn arguments_share_the_input_block() {
    let block = Bytes::from_static(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$10\r\n0123456789\r\n");
    let input = LinkBuffer::from_bytes(block.clone());
    let Ok(Frame::Command(c)) = Parser::default().parse(&mut input.reader()) else {
        panic!("no command");
    };
    let value = c.bytes(2).unwrap();
    assert_eq!(&value[..], b"0123456789");
    assert_eq!(
        value.as_ptr(),
        block[block.len() - 12..].as_ptr(),
        "the value was copied"
    );
}

/// A value split over blocks still arrives whole, and a 64 MiB one in pieces.
#[test]
fn a_64_mib_value_in_64_kib_pieces() {
    const LEN: usize = 64 << 20;
    let mut feed = Feed::new(Limits::default());
    feed.push(format!("*3\r\n$3\r\nSET\r\n$3\r\nbig\r\n${LEN}\r\n").as_bytes());
    let piece = vec![b'x'; 64 * 1024];
    for _ in 0..LEN / piece.len() {
        let (found, rest) = feed.drain();
        assert!(found.is_empty());
        assert_eq!(rest, Ok(LEN + 2), "asks for the whole bulk at once");
        feed.push(&piece);
    }
    feed.push(b"\r\n");
    let Ok(Frame::Command(c)) = feed.parser.parse(&mut feed.input.reader()) else {
        panic!("no command");
    };
    assert_eq!(c.get(1), Some(&b"big"[..]));
    let value = c.get(2).unwrap();
    assert_eq!(value.len(), LEN);
    assert!(value.iter().all(|&b| b == b'x'));
}

/// A declared length is not allocated: the parser asks for it and holds only what came.
#[test]
fn a_declared_huge_bulk_without_its_bytes() {
    let mut feed = Feed::new(Limits::default());
    feed.push(b"*2\r\n$3\r\nGET\r\n$536870912\r\n");
    assert_eq!(feed.drain(), (vec![], Ok(536_870_914)));
    feed.push(&[b'x'; 1000]);
    assert_eq!(feed.drain(), (vec![], Ok(536_870_914)));
    assert_eq!(feed.input.len(), 1000, "only what arrived is held");
}

#[test]
fn protocol_errors_as_redis_words_them() {
    for (input, expected) in [
        (&b"*abc\r\n"[..], "Protocol error: invalid multibulk length"),
        (b"*1048577\r\n", "Protocol error: invalid multibulk length"),
        (b"*1\n", "Protocol error: invalid multibulk length"),
        (b"*1\r\n+OK\r\n", "Protocol error: expected '$', got '+'"),
        (
            b"*2\r\n$3\r\nGET\r\n:1\r\n",
            "Protocol error: expected '$', got ':'",
        ),
        (b"*1\r\n$-1\r\n", "Protocol error: invalid bulk length"),
        (b"*1\r\n$x\r\n", "Protocol error: invalid bulk length"),
        (
            b"*1\r\n$536870913\r\n",
            "Protocol error: invalid bulk length",
        ),
        (
            b"*1\r\n$3\r\nGETxx",
            "Protocol error: expected CRLF after a bulk string",
        ),
        (
            b"SET \"a\r\n",
            "Protocol error: unbalanced quotes in request",
        ),
        (
            b"SET 'a'b\r\n",
            "Protocol error: unbalanced quotes in request",
        ),
    ] {
        assert_eq!(
            error_of(input),
            expected,
            "{:?}",
            String::from_utf8_lossy(input)
        );
    }
    // Lines without an end, past 64 KiB.
    let long = vec![b'1'; 70 * 1024];
    assert_eq!(
        error_of(&[b"*", &long[..]].concat()),
        "Protocol error: too big mbulk count string"
    );
    assert_eq!(
        error_of(&[b"*1\r\n$", &long[..]].concat()),
        "Protocol error: too big bulk count string"
    );
    assert_eq!(
        error_of(&vec![b'a'; 70 * 1024]),
        "Protocol error: too big inline request"
    );
}

#[test]
fn the_limits_are_configurable() {
    let limits = Limits {
        max_bulk_len: 10,
        max_args: 3,
        max_command_len: 15,
    };
    let parse = |data: &[u8]| {
        let mut feed = Feed::new(limits);
        feed.push(data);
        feed.drain().1.map_err(|e| e.to_string())
    };
    assert_eq!(
        parse(b"*3\r\n$10\r\n0123456789\r\n$1\r\na\r\n$1\r\nb\r\n"),
        Ok(1)
    );
    assert_eq!(
        parse(b"*4\r\n"),
        Err("Protocol error: invalid multibulk length".into())
    );
    assert_eq!(
        parse(b"*1\r\n$11\r\n"),
        Err("Protocol error: invalid bulk length".into())
    );
    assert_eq!(
        parse(b"*2\r\n$10\r\n0123456789\r\n$6\r\n"),
        Err("Protocol error: command too large".into())
    );
}

/// Two connections' parsers never mix: each sees only its own input.
#[test]
fn parsers_keep_their_own_place() {
    let (mut a, mut b) = (Feed::new(Limits::default()), Feed::new(Limits::default()));
    a.push(b"*2\r\n$3\r\nGET\r\n$1");
    b.push(b"*2\r\n$4\r\nECHO\r\n$2\r\nhi");
    assert_eq!(a.drain().0, Vec::<Vec<Vec<u8>>>::new());
    assert_eq!(b.drain().0, Vec::<Vec<Vec<u8>>>::new());
    a.push(b"\r\na\r\n");
    b.push(b"\r\n");
    assert_eq!(a.drain().0, vec![cmd(&["GET", "a"])]);
    assert_eq!(b.drain().0, vec![cmd(&["ECHO", "hi"])]);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Garbage, fed in arbitrary pieces, never panics, and each call either finds a command,
    /// asks for more than is buffered, or stops with a protocol error.
    #[test]
    fn garbage_never_panics(data in proptest::collection::vec(any::<u8>(), 0..2048),
                            cuts in proptest::collection::vec(0usize..2048, 0..8)) {
        let mut feed = Feed::new(Limits { max_bulk_len: 4096, max_args: 64, max_command_len: 1 << 16 });
        let mut cuts = cuts;
        cuts.push(data.len());
        cuts.sort_unstable();
        let mut at = 0;
        for cut in cuts {
            let cut = cut.min(data.len());
            if cut < at { continue; }
            feed.push(&data[at..cut]);
            at = cut;
            match feed.drain().1 {
                Ok(need) => prop_assert!(need > feed.input.len()),
                Err(_) => return Ok(()),
            }
        }
    }

    /// Well-formed commands survive any split into pieces, whatever they contain.
    #[test]
    fn any_command_split_anywhere(args in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..40), 1..6),
                                  split in 0usize..400) {
        let mut frame = format!("*{}\r\n", args.len()).into_bytes();
        for arg in &args {
            frame.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
            frame.extend_from_slice(arg);
            frame.extend_from_slice(b"\r\n");
        }
        let split = split.min(frame.len());
        let mut feed = Feed::new(Limits::default());
        feed.push(&frame[..split]);
        let (mut found, _) = feed.drain();
        feed.push(&frame[split..]);
        found.append(&mut feed.drain().0);
        prop_assert_eq!(found, vec![args]);
    }
}
