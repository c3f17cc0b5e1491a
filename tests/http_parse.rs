//! `proto::http` parsers on a `LinkBuffer`: heads, Content-Length and chunked bodies, every
//! error path, input split at every byte, the cost of byte-at-a-time input, and garbage.

use std::io;

use bytes::Bytes;
use netpoll::buffer::LinkBuffer;
use netpoll::proto::http::{
    date, BodyBuf, BodyDecoder, BodyKind, ConnectionHeader, HeadParser, HttpError, Method, Parsed,
    RequestHead, ResponseHead, StatusCode, Version,
};
use netpoll::proto::Input;
use proptest::prelude::*;

fn buffer(bytes: &[u8]) -> LinkBuffer {
    let buffer = LinkBuffer::new();
    let mut writer = buffer.writer();
    writer.write_binary(bytes);
    writer.flush();
    drop(writer);
    buffer
}

fn head(bytes: &[u8]) -> Result<Parsed<RequestHead>, HttpError> {
    HeadParser::new().parse(&mut buffer(bytes).reader())
}

fn complete(bytes: &[u8]) -> RequestHead {
    match head(bytes) {
        Ok(Parsed::Complete(head)) => head,
        other => panic!("{:?}: {other:?}", String::from_utf8_lossy(bytes)),
    }
}

fn refused(bytes: &[u8]) -> HttpError {
    match head(bytes) {
        Err(e) => e,
        other => panic!("{:?}: {other:?}", String::from_utf8_lossy(bytes)),
    }
}

fn bad(bytes: &[u8]) {
    let e = refused(bytes);
    assert_eq!(e.status(), StatusCode::BAD_REQUEST, "{e}");
}

#[test]
fn a_get_head_is_parsed_without_consuming_it() {
    let raw = b"GET /plaintext?x=1 HTTP/1.1\r\nHost: a\r\nUser-Agent: t\r\n\r\nNEXT";
    let input = buffer(raw);
    let mut reader = input.reader();
    let Parsed::Complete(head) = HeadParser::new().parse(&mut reader).unwrap() else {
        panic!()
    };
    assert_eq!(head.method(), Method::Get);
    assert_eq!(head.method_name(), b"GET");
    assert_eq!(head.target(), b"/plaintext?x=1");
    assert_eq!(head.path(), b"/plaintext");
    assert_eq!(head.version(), Version::Http11);
    assert_eq!(head.body(), BodyKind::Empty);
    assert!(head.keep_alive());
    assert!(!head.expect_continue());
    assert_eq!(head.len(), raw.len() - 4);
    assert_eq!(reader.len(), raw.len(), "the head parser consumes nothing");
}

#[test]
fn connection_expect_and_versions() {
    let h = complete(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: Close\r\n\r\n");
    assert!(!h.keep_alive());
    let h = complete(b"GET / HTTP/1.0\r\n\r\n");
    assert_eq!(h.version(), Version::Http10);
    assert!(!h.keep_alive(), "HTTP/1.0 closes by default");
    let h = complete(b"GET / HTTP/1.0\r\nConnection: foo, Keep-Alive\r\n\r\n");
    assert!(h.keep_alive());
    let h = complete(
        b"POST /echo HTTP/1.1\r\nHost: a\r\nExpect: 100-Continue\r\nContent-Length: 3\r\n\r\n",
    );
    assert!(h.expect_continue());
    assert_eq!(h.body(), BodyKind::Length(3));
    let h = complete(b"POST /echo HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n");
    assert!(!h.expect_continue(), "no 100 Continue for HTTP/1.0");
    // Bare LF line ends, and empty lines before the request line, are tolerated.
    let h = complete(b"\r\n\nGET /json HTTP/1.1\nHost: a\n\n");
    assert_eq!(h.path(), b"/json");
    assert_eq!(h.len(), 31);
    let h = complete(b"GET HTTP://example.com/echo?q HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_eq!(h.path(), b"/echo");
    let h = complete(b"GET http://example.com HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_eq!(h.path(), b"/");
    let h = complete(b"PATCH / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n");
    assert_eq!((h.method(), h.body()), (Method::Patch, BodyKind::Empty));
    let h = complete(b"BREW / HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_eq!(h.method(), Method::Other);
}

#[test]
fn framing_fields() {
    let h = complete(
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\ncontent-length: 5\r\n\r\n",
    );
    assert_eq!(h.body(), BodyKind::Length(5));
    let h = complete(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: CHUNKED\r\n\r\n");
    assert_eq!(h.body(), BodyKind::Chunked);
    let h = complete(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 18446744073709551615\r\n\r\n");
    assert_eq!(h.body(), BodyKind::Length(u64::MAX));
}

#[test]
fn malformed_heads_are_400() {
    bad(b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n");
    bad(b"GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 1\r\n\r\n");
    for length in [
        "abc",
        "-1",
        "+1",
        "1 2",
        "",
        "1,2",
        "0x10",
        "18446744073709551616",
        "99999999999999999999999",
    ] {
        bad(format!("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: {length}\r\n\r\n").as_bytes());
    }
    bad(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n");
    bad(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n");
    bad(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n");
    bad(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n");
    bad(b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n");
    bad(b"GET / HTTP/1.1\r\n\r\n"); // no Host
    bad(b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n");
    bad(b"GET / HTTP/2.0\r\nHost: a\r\n\r\n");
    bad(b"GET / FTP/1.1\r\nHost: a\r\n\r\n");
    bad(b"GET  HTTP/1.1\r\nHost: a\r\n\r\n");
    bad(b"G(T / HTTP/1.1\r\nHost: a\r\n\r\n");
    bad(b"GET / HTTP/1.1\r\nHo st: a\r\n\r\n");
    bad(b"GET / HTTP/1.1\r\nHost: a\r\nX: \x01\r\n\r\n");
    bad(b"GET / HTTP/1.1\rHost: a\r\n\r\n");
    bad(b"hello\r\n\r\n");
    assert_eq!(
        refused(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"),
        HttpError::UnsupportedEncoding
    );
}

#[test]
fn a_bad_request_line_is_refused_before_the_head_ends() {
    bad(b"GE\x01T / HTTP/1.1\r\n");
    bad(b"GET / HTTP/9\r\n");
    // A good request line waits for the rest.
    assert_eq!(
        head(b"GET / HTTP/1.1\r\nHost: a\r\n"),
        Ok(Parsed::Incomplete(26))
    );
}

#[test]
fn oversize_heads_are_431() {
    let mut raw = b"GET / HTTP/1.1\r\nHost: a\r\nX-Big: ".to_vec();
    raw.resize(64 * 1024, b'a');
    // Unterminated at the limit: refused without waiting for the end.
    assert_eq!(refused(&raw), HttpError::HeadTooLarge);
    raw.extend_from_slice(b"\r\n\r\n");
    assert_eq!(refused(&raw), HttpError::HeadTooLarge);
    assert_eq!(
        HttpError::HeadTooLarge.status(),
        StatusCode::HEADER_FIELDS_TOO_LARGE
    );
    // Just under the limit is fine.
    let mut raw = b"GET / HTTP/1.1\r\nHost: a\r\nX-Big: ".to_vec();
    raw.resize(64 * 1024 - 4, b'a');
    raw.extend_from_slice(b"\r\n\r\n");
    assert_eq!(complete(&raw).len(), 64 * 1024);
    // Too many fields.
    let mut raw = b"GET / HTTP/1.1\r\nHost: a\r\n".to_vec();
    for i in 0..200 {
        raw.extend_from_slice(format!("X-{i}: v\r\n").as_bytes());
    }
    raw.extend_from_slice(b"\r\n");
    assert_eq!(refused(&raw), HttpError::HeadTooLarge);
    // A smaller limit of one's own.
    let mut small = HeadParser::with_limit(16);
    let input = buffer(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_eq!(
        small.parse(&mut input.reader()).unwrap_err(),
        HttpError::HeadTooLarge
    );
}

/// Feeds `raw` one byte at a time into one buffer; returns the first non-incomplete result and
/// how many bytes had been fed.
fn feed_head_bytewise(raw: &[u8]) -> (Result<Parsed<RequestHead>, HttpError>, usize) {
    let input = LinkBuffer::new();
    let mut parser = HeadParser::new();
    for (i, &byte) in raw.iter().enumerate() {
        let mut writer = input.writer();
        writer.write_byte(byte);
        writer.flush();
        drop(writer);
        let result = parser.parse(&mut input.reader());
        match result {
            Ok(Parsed::Incomplete(need)) => assert_eq!(need, i + 2, "asks for one more byte"),
            other => return (other, i + 1),
        }
    }
    (Ok(Parsed::Incomplete(raw.len() + 1)), raw.len())
}

#[test]
fn a_head_fed_one_byte_at_a_time() {
    let raw = b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nX-A: b\r\n\r\nhello";
    let (result, fed) = feed_head_bytewise(raw);
    let Ok(Parsed::Complete(head)) = result else {
        panic!("{result:?}")
    };
    assert_eq!(fed, raw.len() - 5, "complete exactly at the blank line");
    assert_eq!(
        (head.path(), head.body()),
        (&b"/echo"[..], BodyKind::Length(5))
    );
    // A bad field is refused once the head is whole.
    let (result, fed) = feed_head_bytewise(b"GET / HTTP/1.1\r\nHost: a\r\nBad Name: x\r\n\r\n");
    assert_eq!(result.unwrap_err().status(), StatusCode::BAD_REQUEST);
    assert_eq!(fed, 40);
}

/// An `Input` over a `Vec` that counts the bytes its callers make it look at.
struct Counting {
    data: Vec<u8>,
    work: usize,
}

impl Input for Counting {
    fn len(&self) -> usize {
        self.data.len()
    }
    fn front(&mut self) -> &[u8] {
        // The head parser looks through `find` and `peek`, never here.
        &[]
    }
    fn find(&mut self, delim: u8, from: usize) -> Option<usize> {
        let found = self.data.get(from..)?.iter().position(|&b| b == delim);
        self.work += found.map_or(self.data.len().saturating_sub(from), |at| at + 1);
        found.map(|at| at + from)
    }
    fn peek(&mut self, n: usize) -> io::Result<Bytes> {
        self.work += n;
        Ok(Bytes::copy_from_slice(&self.data[..n]))
    }
    fn next(&mut self, n: usize) -> io::Result<Bytes> {
        let bytes = self.peek(n)?;
        self.data.drain(..n);
        Ok(bytes)
    }
    fn skip(&mut self, n: usize) -> io::Result<()> {
        self.data.drain(..n);
        Ok(())
    }
}

/// Byte-at-a-time input costs O(n) in all: a parser that rescanned its input on every call
/// would look at ~n²/2 bytes here. Lines of one character are the worst case for finding the
/// blank line (each needs a look at its first byte).
#[test]
fn byte_at_a_time_costs_linear_work() {
    let mut raw = b"GET / HTTP/1.1\r\nHost: a\r\n".to_vec();
    while raw.len() < 30_000 {
        raw.extend_from_slice(b"X-Long-Header: some value here\r\n");
    }
    raw.extend_from_slice(&b"a\n".repeat(5_000));
    raw.extend_from_slice(b"\r\n");
    let mut input = Counting {
        data: Vec::new(),
        work: 0,
    };
    let mut parser = HeadParser::new();
    for &byte in &raw {
        input.data.push(byte);
        if !matches!(parser.parse(&mut input), Ok(Parsed::Incomplete(_))) {
            break;
        }
    }
    assert_eq!(input.data.len(), raw.len(), "stopped early");
    assert!(
        input.work < 4 * raw.len(),
        "{} bytes looked at for a {}-byte head",
        input.work,
        raw.len()
    );

    // The same for a chunked body trickled in.
    let mut body = Vec::new();
    for _ in 0..2_000 {
        body.extend_from_slice(b"a;ext=\"some extension value\"\r\n0123456789\r\n");
    }
    body.extend_from_slice(b"0\r\nTrailer-One: x\r\n\r\n");
    let mut input = Counting {
        data: Vec::new(),
        work: 0,
    };
    let mut decoder = BodyDecoder::new(BodyKind::Chunked, u64::MAX).unwrap();
    let mut kept = BodyBuf::new();
    let mut done = false;
    for &byte in &body {
        input.data.push(byte);
        done = decoder.decode(&mut input, &mut kept).unwrap() == Parsed::Complete(());
    }
    assert!(done);
    assert_eq!(kept.len(), 20_000);
    assert!(
        input.work < 4 * body.len(),
        "{} bytes looked at for a {}-byte body",
        input.work,
        body.len()
    );
}

fn decode_all(
    kind: BodyKind,
    limit: u64,
    bytes: &[u8],
) -> Result<(Parsed<()>, Vec<u8>, usize), HttpError> {
    let input = buffer(bytes);
    let mut reader = input.reader();
    let mut decoder = BodyDecoder::new(kind, limit)?;
    let mut body = BodyBuf::new();
    let result = decoder.decode(&mut reader, &mut body)?;
    Ok((result, body.to_vec(), reader.len()))
}

fn chunked(bytes: &[u8]) -> Result<(Parsed<()>, Vec<u8>, usize), HttpError> {
    decode_all(BodyKind::Chunked, 1 << 20, bytes)
}

#[test]
fn content_length_bodies() {
    assert_eq!(
        decode_all(BodyKind::Length(5), 10, b"helloNEXT"),
        Ok((Parsed::Complete(()), b"hello".to_vec(), 4))
    );
    assert_eq!(
        decode_all(BodyKind::Length(5), 10, b"hel"),
        Ok((Parsed::Incomplete(5), Vec::new(), 3))
    );
    assert_eq!(
        decode_all(BodyKind::Empty, 10, b"GET"),
        Ok((Parsed::Complete(()), Vec::new(), 3))
    );
    assert_eq!(
        BodyDecoder::new(BodyKind::Length(11), 10).unwrap_err(),
        HttpError::BodyTooLarge
    );
    assert_eq!(
        HttpError::BodyTooLarge.status(),
        StatusCode::CONTENT_TOO_LARGE
    );
    // A large body arriving in parts is taken in pieces of at least 16 KiB.
    let input = LinkBuffer::new();
    let mut decoder = BodyDecoder::new(BodyKind::Length(100_000), 1 << 20).unwrap();
    let mut body = BodyBuf::new();
    let mut sent = 0;
    let mut done = false;
    while sent < 100_000 {
        let mut writer = input.writer();
        writer.write_binary(&vec![7u8; 1000]);
        writer.flush();
        drop(writer);
        sent += 1000;
        done = decoder.decode(&mut input.reader(), &mut body).unwrap() == Parsed::Complete(());
        assert_eq!(done, sent == 100_000, "after {sent} bytes");
    }
    assert!(done);
    assert_eq!(body.len(), 100_000);
    let pieces = body.into_pieces();
    assert!(pieces.len() <= 7, "{} pieces", pieces.len());
    assert_eq!(pieces.iter().map(|p| p.len()).sum::<usize>(), 100_000);
}

#[test]
fn chunked_bodies_with_extensions_and_trailers() {
    let body = b"5\r\nhello\r\n6;name=value;quoted=\"a b\"\r\n world\r\nA \t; x\r\n0123456789\r\n0;last\r\nExpires: never\r\nX-Sum: 1\r\n\r\nNEXT";
    assert_eq!(
        chunked(body),
        Ok((Parsed::Complete(()), b"hello world0123456789".to_vec(), 4))
    );
    assert_eq!(
        chunked(b"0\r\n\r\n"),
        Ok((Parsed::Complete(()), Vec::new(), 0))
    );
    assert_eq!(
        chunked(b"0\r\n\n"),
        Ok((Parsed::Complete(()), Vec::new(), 0))
    );
    // Split at every point before its end, the same body comes out.
    for split in 0..body.len() - 4 {
        let input = buffer(&body[..split]);
        let mut decoder = BodyDecoder::new(BodyKind::Chunked, 1 << 20).unwrap();
        let mut kept = BodyBuf::new();
        let first = decoder.decode(&mut input.reader(), &mut kept).unwrap();
        assert!(
            matches!(first, Parsed::Incomplete(_)),
            "split {split}: {first:?}"
        );
        let mut writer = input.writer();
        writer.write_binary(&body[split..]);
        writer.flush();
        drop(writer);
        let second = decoder.decode(&mut input.reader(), &mut kept).unwrap();
        assert_eq!(second, Parsed::Complete(()), "split {split}");
        assert_eq!(kept.to_vec(), b"hello world0123456789", "split {split}");
        assert_eq!(input.len(), 4, "split {split}");
    }
}

#[test]
fn bad_chunk_sizes_are_400() {
    for body in [
        &b"\r\n"[..],
        b";ext\r\n",
        b"g\r\n",
        b"-1\r\n",
        b"+1\r\n",
        b"0x5\r\n",
        b" 5\r\n",
        b"5 6\r\n",
        b"5\n",
        b"5\rX\r\n",
        b"11111111111111111\r\n", // 17 hex digits: over u64
        b"5\r\nhelloXY",
        b"5\r\nhello\n",
        b"0\r\nno colon here\r\n\r\n",
        b"0\r\n: no name\r\n\r\n",
        b"0\r\nbad name: x\r\n\r\n",
    ] {
        let e = chunked(body).unwrap_err();
        assert_eq!(
            e.status(),
            StatusCode::BAD_REQUEST,
            "{:?}: {e}",
            String::from_utf8_lossy(body)
        );
    }
    // 16 digits is the most; a size over the cap is 413 before its data arrives.
    assert_eq!(
        chunked(b"ffffffffffffffff\r\n").unwrap_err(),
        HttpError::BodyTooLarge
    );
    assert_eq!(
        decode_all(BodyKind::Chunked, 10, b"5\r\nhello\r\n6\r\n").unwrap_err(),
        HttpError::BodyTooLarge
    );
    assert!(decode_all(
        BodyKind::Chunked,
        10,
        b"5\r\nhello\r\n5\r\nworld\r\n0\r\n\r\n"
    )
    .is_ok());
    // Overflow of the sum, not only of one size.
    assert_eq!(
        decode_all(
            BodyKind::Chunked,
            u64::MAX,
            b"1\r\na\r\nffffffffffffffff\r\n"
        )
        .unwrap_err(),
        HttpError::BodyTooLarge
    );
    // An endless size line or trailer section.
    let long = [b"5;".to_vec(), vec![b'x'; 9000]].concat();
    assert_eq!(
        chunked(&long).unwrap_err().status(),
        StatusCode::BAD_REQUEST
    );
    let mut trailers = b"0\r\n".to_vec();
    while trailers.len() < 70_000 {
        trailers.extend_from_slice(b"X-Trailer: value\r\n");
    }
    assert_eq!(chunked(&trailers).unwrap_err(), HttpError::HeadTooLarge);
}

#[test]
fn discarded_bodies_are_counted_not_kept() {
    let input = buffer(b"5\r\nhello\r\n0\r\n\r\n");
    let mut decoder = BodyDecoder::new(BodyKind::Chunked, 100).unwrap();
    let mut body = BodyBuf::discarding();
    assert_eq!(
        decoder.decode(&mut input.reader(), &mut body),
        Ok(Parsed::Complete(()))
    );
    assert_eq!((body.len(), body.into_pieces().len()), (5, 0));
}

#[test]
fn dates_are_imf_fixdates() {
    assert_eq!(&date::format(0), b"Thu, 01 Jan 1970 00:00:00 GMT");
    assert_eq!(&date::format(784_111_777), b"Sun, 06 Nov 1994 08:49:37 GMT");
    assert_eq!(&date::format(951_782_400), b"Tue, 29 Feb 2000 00:00:00 GMT");
    assert_eq!(&date::format(u64::MAX), b"Fri, 31 Dec 9999 23:59:59 GMT");
    let now = date::now();
    let parsed = httpdate::parse_http_date(std::str::from_utf8(&now).unwrap()).unwrap();
    let skew = std::time::SystemTime::now()
        .duration_since(parsed)
        .unwrap_or_default();
    assert!(skew < std::time::Duration::from_secs(5), "{skew:?}");
}

#[test]
fn response_heads() {
    let mut out = Vec::new();
    ResponseHead {
        version: Version::Http10,
        status: StatusCode::METHOD_NOT_ALLOWED,
        fields: &[("Server", b"x"), ("Allow", b"GET")],
        content_length: 1234,
        connection: ConnectionHeader::KeepAlive,
    }
    .encode(&mut out);
    let text = String::from_utf8(out).unwrap();
    let (status, rest) = text.split_once("\r\nDate: ").unwrap();
    assert_eq!(status, "HTTP/1.0 405 Method Not Allowed");
    assert_eq!(
        &rest[29..],
        "\r\nServer: x\r\nAllow: GET\r\nContent-Length: 1234\r\nConnection: keep-alive\r\n\r\n"
    );
}

proptest! {
    #[test]
    fn dates_match_httpdate(seconds in 0u64..253_402_300_800) {
        let expected = httpdate::fmt_http_date(std::time::UNIX_EPOCH + std::time::Duration::from_secs(seconds));
        let formatted = date::format(seconds);
        prop_assert_eq!(std::str::from_utf8(&formatted).unwrap(), expected);
    }

    /// Garbage, whole or in two parts, never panics either parser, and a refusal is final.
    #[test]
    fn garbage_never_panics(
        bytes in prop::collection::vec(prop_oneof![
            4 => any::<u8>(),
            2 => Just(b'\n'),
            2 => Just(b'\r'),
            1 => Just(b':'),
            1 => Just(b';'),
        ], 0..600),
        split in 0usize..600,
        prefix in prop_oneof![Just(&b""[..]), Just(&b"GET / HTTP/1.1\r\n"[..]), Just(&b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"[..])],
    ) {
        let all = [prefix, &bytes[..]].concat();
        let split = split.min(all.len());
        let input = buffer(&all[..split]);
        let mut heads = HeadParser::with_limit(300);
        let mut reader = input.reader();
        let _ = heads.parse(&mut reader);
        drop(reader);
        let mut writer = input.writer();
        writer.write_binary(&all[split..]);
        writer.flush();
        drop(writer);
        let mut reader = input.reader();
        if let Ok(Parsed::Complete(head)) = heads.parse(&mut reader) {
            prop_assert!(head.len() <= all.len());
            reader.skip(head.len()).unwrap();
            if let Ok(mut body) = BodyDecoder::new(head.body(), 200) {
                let _ = body.decode(&mut reader, &mut BodyBuf::new());
            }
        }
        let input = buffer(&bytes);
        let mut chunks = BodyDecoder::new(BodyKind::Chunked, 200).unwrap();
        let mut reader = input.reader();
        let before = reader.len();
        let mut kept = BodyBuf::new();
        if chunks.decode(&mut reader, &mut kept).is_ok() {
            prop_assert!(kept.len() as usize <= before);
        }
    }

    /// A valid request split anywhere parses as it does whole.
    #[test]
    fn a_split_request_parses_as_a_whole_one(split in 0usize..200) {
        let raw = b"POST /echo?x HTTP/1.1\r\nHost: example\r\nTransfer-Encoding: chunked\r\nX-Y: z\r\n\r\n3\r\nabc\r\n0\r\n\r\n";
        let split = split.min(raw.len());
        let input = buffer(&raw[..split]);
        let mut heads = HeadParser::new();
        let mut result = heads.parse(&mut input.reader()).unwrap();
        let mut writer = input.writer();
        writer.write_binary(&raw[split..]);
        writer.flush();
        drop(writer);
        if let Parsed::Incomplete(_) = result {
            result = heads.parse(&mut input.reader()).unwrap();
        }
        let Parsed::Complete(head) = result else { panic!("{result:?}") };
        prop_assert_eq!(head.len(), raw.len() - 13);
        prop_assert_eq!(head.body(), BodyKind::Chunked);
    }
}
