//! The request head: found incrementally, parsed once whole by `httparse`.

use bytes::Bytes;

use super::error::input_error;
use super::{HttpError, Parsed};
use crate::proto::Input;

/// The default limit on a request head, request line and fields together (nginx and hyper use
/// similar sizes); over it the request gets 431.
pub const DEFAULT_HEAD_LIMIT: usize = 64 * 1024;

/// At most this many header fields (hyper's default); more is 431.
const MAX_HEADERS: usize = 100;

/// The request method.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// GET
    Get,
    /// HEAD
    Head,
    /// POST
    Post,
    /// PUT
    Put,
    /// DELETE
    Delete,
    /// OPTIONS
    Options,
    /// PATCH
    Patch,
    /// TRACE
    Trace,
    /// CONNECT
    Connect,
    /// Any other token (see [`RequestHead::method_name`]).
    Other,
}

impl Method {
    fn from_token(token: &str) -> Method {
        match token {
            "GET" => Method::Get,
            "HEAD" => Method::Head,
            "POST" => Method::Post,
            "PUT" => Method::Put,
            "DELETE" => Method::Delete,
            "OPTIONS" => Method::Options,
            "PATCH" => Method::Patch,
            "TRACE" => Method::Trace,
            "CONNECT" => Method::Connect,
            _ => Method::Other,
        }
    }
}

/// The protocol version of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// HTTP/1.0: the connection closes after the reply unless `Connection: keep-alive`.
    Http10,
    /// HTTP/1.1: keep-alive unless `Connection: close`.
    Http11,
}

/// How the request body is framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyKind {
    /// No body (no `Content-Length`, no `Transfer-Encoding`, or `Content-Length: 0`).
    Empty,
    /// `Content-Length` bytes.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
}

/// A parsed request head. Holds the head's bytes (shared with the input when they lie in one
/// block); the fields a server needs for framing and routing are decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHead {
    raw: Bytes,
    method: Method,
    method_name: Bytes,
    target: Bytes,
    version: Version,
    body: BodyKind,
    keep_alive: bool,
    expect_continue: bool,
}

impl RequestHead {
    /// The head's length in the input, the blank line included: what to skip once done.
    pub fn len(&self) -> usize {
        self.raw.len()
    }

    /// Never true: a head holds at least a request line (here for the `len` convention).
    pub fn is_empty(&self) -> bool {
        self.raw.is_empty()
    }

    /// The head as received.
    pub fn raw(&self) -> &Bytes {
        &self.raw
    }

    /// The method.
    pub fn method(&self) -> Method {
        self.method
    }

    /// The method token as sent.
    pub fn method_name(&self) -> &[u8] {
        &self.method_name
    }

    /// The request target as sent (origin form `/path?query`, or absolute form).
    pub fn target(&self) -> &[u8] {
        &self.target
    }

    /// The target's path: without the query, and without scheme and authority when the
    /// target is in absolute form (`http://host/path`).
    pub fn path(&self) -> &[u8] {
        let mut target = &self.target[..];
        for scheme in [&b"http://"[..], b"https://"] {
            if target.len() >= scheme.len() && target[..scheme.len()].eq_ignore_ascii_case(scheme) {
                let rest = &target[scheme.len()..];
                target = match rest.iter().position(|&b| b == b'/') {
                    Some(slash) => &rest[slash..],
                    None => b"/",
                };
                break;
            }
        }
        match target.iter().position(|&b| b == b'?') {
            Some(query) => &target[..query],
            None => target,
        }
    }

    /// The protocol version.
    pub fn version(&self) -> Version {
        self.version
    }

    /// How the body is framed.
    pub fn body(&self) -> BodyKind {
        self.body
    }

    /// Whether the connection stays open after the reply (the version's default, changed by
    /// `Connection: close` or, in HTTP/1.0, `Connection: keep-alive`).
    pub fn keep_alive(&self) -> bool {
        self.keep_alive
    }

    /// `Expect: 100-continue` on an HTTP/1.1 request (HTTP/1.0 clients get no 100).
    pub fn expect_continue(&self) -> bool {
        self.expect_continue
    }
}

/// Finds and parses request heads. Restartable: a call that returns
/// [`Parsed::Incomplete`] remembers how far it looked, so the next call with more input
/// scans only the new bytes. It consumes nothing; after a [`Parsed::Complete`] it is ready
/// for the next head, which starts once the caller skipped [`RequestHead::len`] bytes.
#[derive(Debug, Clone)]
pub struct HeadParser {
    limit: usize,
    /// Bytes already searched for line ends.
    scanned: usize,
    /// Where the line being searched began.
    line_start: usize,
    /// A non-empty line was seen (empty lines before the request line are skipped).
    request_line_seen: bool,
    cr: CrCache,
}

impl Default for HeadParser {
    fn default() -> HeadParser {
        HeadParser::new()
    }
}

impl HeadParser {
    /// A parser with the [`DEFAULT_HEAD_LIMIT`].
    pub fn new() -> HeadParser {
        HeadParser::with_limit(DEFAULT_HEAD_LIMIT)
    }

    /// A parser for heads of at most `limit` bytes.
    pub fn with_limit(limit: usize) -> HeadParser {
        HeadParser {
            limit,
            scanned: 0,
            line_start: 0,
            request_line_seen: false,
            cr: CrCache::default(),
        }
    }

    /// Forgets a partly scanned head (the input it was scanning is gone).
    pub fn reset(&mut self) {
        *self = HeadParser::with_limit(self.limit);
    }

    /// Looks for a whole head at the start of `input`, taking nothing from it.
    pub fn parse(&mut self, input: &mut impl Input) -> Result<Parsed<RequestHead>, HttpError> {
        if self.scanned > input.len() {
            // Not the input this parser scanned before.
            self.reset();
        }
        loop {
            let Some(lf) = input.find(b'\n', self.scanned) else {
                self.scanned = input.len();
                if self.scanned >= self.limit {
                    return Err(HttpError::HeadTooLarge);
                }
                return Ok(Parsed::Incomplete(self.scanned + 1));
            };
            if lf >= self.limit {
                return Err(HttpError::HeadTooLarge);
            }
            let line_start = self.line_start;
            let empty = match lf - line_start {
                0 => true,
                1 => self.cr.is_cr(input, line_start),
                _ => false,
            };
            self.scanned = lf + 1;
            self.line_start = lf + 1;
            if !empty {
                if !self.request_line_seen {
                    self.request_line_seen = true;
                    // A malformed request line is refused now, not after a whole head.
                    check_request_line(input, lf + 1)?;
                }
                continue;
            }
            if !self.request_line_seen {
                continue; // an empty line before the request line (RFC 9112 §2.2)
            }
            let raw = input.peek(lf + 1).map_err(input_error)?;
            self.reset();
            return parse_head(raw).map(Parsed::Complete);
        }
    }
}

/// Answers "is the byte at x a CR?" for increasing x with O(n) searching overall: it
/// remembers the next CR found (or that none lies before some length).
#[derive(Debug, Clone, Default)]
struct CrCache {
    /// The first CR at or after the last search's start, if any.
    found: Option<usize>,
    /// No CR lies between the last search's start and this.
    clear_until: usize,
}

impl CrCache {
    fn is_cr(&mut self, input: &mut impl Input, at: usize) -> bool {
        match self.found {
            Some(cr) if at <= cr => return at == cr,
            None if at < self.clear_until => return false,
            _ => {}
        }
        self.found = input.find(b'\r', at);
        self.clear_until = input.len();
        self.found == Some(at)
    }
}

fn check_request_line(input: &mut impl Input, end: usize) -> Result<(), HttpError> {
    let line = input.peek(end).map_err(input_error)?;
    let mut headers = [httparse::EMPTY_HEADER; 1];
    match httparse::Request::new(&mut headers).parse(&line) {
        Ok(_) | Err(httparse::Error::TooManyHeaders) => Ok(()),
        Err(e) => Err(parse_error(e)),
    }
}

fn parse_error(e: httparse::Error) -> HttpError {
    match e {
        httparse::Error::TooManyHeaders => HttpError::HeadTooLarge,
        httparse::Error::Version => HttpError::BadRequest("invalid HTTP version"),
        httparse::Error::Token => HttpError::BadRequest("invalid method or target"),
        httparse::Error::HeaderName => HttpError::BadRequest("invalid header name"),
        httparse::Error::HeaderValue => HttpError::BadRequest("invalid header value"),
        httparse::Error::NewLine | httparse::Error::Status => {
            HttpError::BadRequest("invalid line ending")
        }
    }
}

fn parse_head(raw: Bytes) -> Result<RequestHead, HttpError> {
    let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut fields);
    match request.parse(&raw) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => return Err(HttpError::BadRequest("incomplete head")),
        Err(e) => return Err(parse_error(e)),
    }
    let (Some(method), Some(target), Some(minor)) = (request.method, request.path, request.version)
    else {
        return Err(HttpError::BadRequest("incomplete request line"));
    };
    let version = if minor == 0 {
        Version::Http10
    } else {
        Version::Http11
    };
    let mut framing = Framing::default();
    for field in request.headers.iter() {
        framing.add(field.name, field.value)?;
    }
    let body = framing.body(version)?;
    if version == Version::Http11 && framing.hosts != 1 || framing.hosts > 1 {
        return Err(HttpError::BadRequest("missing or repeated Host"));
    }
    let keep_alive = match version {
        Version::Http11 => !framing.close,
        Version::Http10 => framing.keep_alive && !framing.close,
    };
    Ok(RequestHead {
        method: Method::from_token(method),
        method_name: raw.slice_ref(method.as_bytes()),
        target: raw.slice_ref(target.as_bytes()),
        version,
        body,
        keep_alive,
        expect_continue: framing.expect_continue && version == Version::Http11,
        raw,
    })
}

/// What the fields say about framing and the connection.
#[derive(Debug, Default)]
struct Framing {
    content_length: Option<u64>,
    transfer_encoding: bool,
    /// The last transfer coding seen is `chunked`.
    chunked_last: bool,
    chunked_count: usize,
    other_coding: bool,
    close: bool,
    keep_alive: bool,
    expect_continue: bool,
    hosts: usize,
}

impl Framing {
    fn add(&mut self, name: &str, value: &[u8]) -> Result<(), HttpError> {
        if name.eq_ignore_ascii_case("content-length") {
            // A list of identical values is one value (RFC 9110 §8.6); anything else is 400.
            for item in list_items(value) {
                let length = parse_length(item)?;
                if self.content_length.is_some_and(|known| known != length) {
                    return Err(HttpError::BadRequest("conflicting Content-Length"));
                }
                self.content_length = Some(length);
            }
            if self.content_length.is_none() {
                return Err(HttpError::BadRequest("empty Content-Length"));
            }
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            self.transfer_encoding = true;
            for coding in list_items(value) {
                self.chunked_last = coding.eq_ignore_ascii_case(b"chunked");
                if self.chunked_last {
                    self.chunked_count += 1;
                } else {
                    self.other_coding = true;
                }
            }
        } else if name.eq_ignore_ascii_case("connection") {
            for option in list_items(value) {
                self.close |= option.eq_ignore_ascii_case(b"close");
                self.keep_alive |= option.eq_ignore_ascii_case(b"keep-alive");
            }
        } else if name.eq_ignore_ascii_case("expect") {
            self.expect_continue |= trim(value).eq_ignore_ascii_case(b"100-continue");
        } else if name.eq_ignore_ascii_case("host") {
            self.hosts += 1;
        }
        Ok(())
    }

    fn body(&self, version: Version) -> Result<BodyKind, HttpError> {
        if !self.transfer_encoding {
            return Ok(match self.content_length {
                None | Some(0) => BodyKind::Empty,
                Some(length) => BodyKind::Length(length),
            });
        }
        // RFC 9112 §6.1 and §6.3: both framings, or chunked in HTTP/1.0, is a smuggling
        // attempt or a broken client.
        if self.content_length.is_some() {
            return Err(HttpError::BadRequest(
                "both Content-Length and Transfer-Encoding",
            ));
        }
        if version == Version::Http10 {
            return Err(HttpError::BadRequest("Transfer-Encoding in HTTP/1.0"));
        }
        if !self.chunked_last || self.chunked_count > 1 {
            return Err(HttpError::BadRequest(
                "chunked must be the last coding, once",
            ));
        }
        if self.other_coding {
            return Err(HttpError::UnsupportedEncoding);
        }
        Ok(BodyKind::Chunked)
    }
}

/// The non-empty items of a comma-separated field value, trimmed.
fn list_items(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|&b| b == b',')
        .map(trim)
        .filter(|item| !item.is_empty())
}

fn trim(mut value: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = value {
        value = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = value {
        value = rest;
    }
    value
}

/// Decimal digits only (no sign, no spaces inside), and no overflow.
fn parse_length(digits: &[u8]) -> Result<u64, HttpError> {
    const BAD: HttpError = HttpError::BadRequest("invalid Content-Length");
    if digits.is_empty() {
        return Err(BAD);
    }
    digits.iter().try_fold(0u64, |length, &b| {
        if !b.is_ascii_digit() {
            return Err(BAD);
        }
        length
            .checked_mul(10)
            .and_then(|l| l.checked_add(u64::from(b - b'0')))
            .ok_or(BAD)
    })
}
