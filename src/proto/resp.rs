//! RESP2, the Redis serialization protocol: a request parser and reply encoders.
//!
//! [`Parser`] takes commands off buffered input as `redis-server` reads them: arrays of bulk
//! strings (`*2\r\n$3\r\nGET\r\n$1\r\nk\r\n`) and inline commands (`GET k\r\n`, split as
//! redis-cli splits, quotes included). It is incremental: it consumes each header line and
//! argument as soon as it is whole and keeps its place between calls, so a command fed one
//! byte at a time costs no more than one fed whole, and a declared length is never allocated
//! up front — a half-received huge bulk holds only what arrived. Arguments are `Bytes` that
//! share the input's blocks where they lie in one.
//!
//! Errors are Redis's own `Protocol error: ...` texts; after one the connection is out of
//! step and should be answered with [`ProtocolError::reply`] and closed.
//!
//! ```
//! use netpoll::buffer::LinkBuffer;
//! use netpoll::proto::resp::{Frame, Parser};
//!
//! let input = LinkBuffer::new();
//! let mut parser = Parser::default();
//! input.writer().write_binary(b"*2\r\n$3\r\nGET\r\n$3\r\nke");
//! input.writer().flush();
//! assert!(matches!(parser.parse(&mut input.reader()), Ok(Frame::Incomplete(_))));
//!
//! input.writer().write_binary(b"y\r\nPING\r\n"); // the rest, then an inline command
//! input.writer().flush();
//! let Ok(Frame::Command(args)) = parser.parse(&mut input.reader()) else { panic!() };
//! assert_eq!(args, [&b"GET"[..], b"key"]);
//! let Ok(Frame::Command(args)) = parser.parse(&mut input.reader()) else { panic!() };
//! assert_eq!(args, [&b"PING"[..]]);
//! ```

use std::fmt;
use std::io;

use bytes::Bytes;

use super::{Input, Output};

/// The longest header line or inline command (`PROTO_INLINE_MAX_SIZE` in Redis).
pub const MAX_LINE: usize = 64 * 1024;

/// What one command may declare.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// The longest bulk string (Redis's `proto-max-bulk-len`, 512 MiB).
    pub max_bulk_len: usize,
    /// The most arguments in one command (1,048,576).
    pub max_args: usize,
    /// The most bytes of arguments in one command, all bulks together (Redis's
    /// `client-query-buffer-limit`, 1 GiB).
    pub max_command_len: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_bulk_len: 512 << 20,
            max_args: 1 << 20,
            max_command_len: 1 << 30,
        }
    }
}

/// What [`Parser::parse`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame {
    /// A whole command: its name and arguments.
    Command(Command),
    /// No whole command yet: nothing more can be parsed until this many bytes are buffered
    /// (what a connection's reader should `fill` to).
    Incomplete(usize),
}

/// A command's name and arguments (at least one), sharing the input's blocks.
#[derive(Clone, Debug, Default)]
pub struct Command {
    /// A command that arrived in one block: taken whole, its arguments spans of it, so that
    /// taking it costs one hand-off however many arguments it has.
    frame: Bytes,
    /// (offset, length) of each argument in `frame`.
    spans: Vec<(usize, usize)>,
    /// The arguments of a command that did not lie in one block (or came inline), each taken
    /// on its own; `frame` is then empty.
    parts: Vec<Bytes>,
}

impl Command {
    /// A command of these arguments.
    pub fn new(args: Vec<Bytes>) -> Command {
        Command {
            parts: args,
            ..Command::default()
        }
    }

    /// The number of arguments, the name included.
    pub fn len(&self) -> usize {
        if self.spans.is_empty() {
            self.parts.len()
        } else {
            self.spans.len()
        }
    }

    /// True for no arguments (a parsed command always has its name).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Argument `i` (0 is the command's name), if there is one.
    pub fn get(&self, i: usize) -> Option<&[u8]> {
        if self.spans.is_empty() {
            return self.parts.get(i).map(|part| &part[..]);
        }
        let &(at, len) = self.spans.get(i)?;
        Some(&self.frame[at..at + len])
    }

    /// Argument `i` as `Bytes` that share the input's block (no copy), if there is one.
    pub fn bytes(&self, i: usize) -> Option<Bytes> {
        if self.spans.is_empty() {
            return self.parts.get(i).cloned();
        }
        let &(at, len) = self.spans.get(i)?;
        Some(self.frame.slice(at..at + len))
    }

    /// The arguments in order, the name first.
    pub fn iter(&self) -> impl Iterator<Item = &[u8]> + '_ {
        (0..self.len()).filter_map(|i| self.get(i))
    }
}

impl PartialEq for Command {
    fn eq(&self, other: &Command) -> bool {
        self.iter().eq(other.iter())
    }
}

impl Eq for Command {}

impl<const N: usize> PartialEq<[&[u8]; N]> for Command {
    fn eq(&self, other: &[&[u8]; N]) -> bool {
        self.iter().eq(other.iter().copied())
    }
}

/// Input that breaks the protocol. The connection cannot be resynchronised: reply with
/// [`reply`](ProtocolError::reply), then close it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProtocolError(String);

impl ProtocolError {
    fn new(detail: impl Into<String>) -> ProtocolError {
        ProtocolError(detail.into())
    }

    /// The error reply Redis sends, e.g. `-ERR Protocol error: invalid bulk length\r\n`.
    pub fn reply(&self, out: &mut impl Output) -> io::Result<()> {
        write_error(out, &format!("ERR {self}"))
    }
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Protocol error: {}", self.0)
    }
}

impl std::error::Error for ProtocolError {}

impl From<ProtocolError> for io::Error {
    fn from(e: ProtocolError) -> io::Error {
        io::Error::new(io::ErrorKind::InvalidData, e)
    }
}

/// Where the parser is inside the current command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Between commands.
    Start,
    /// `left` more bulk strings to come, the next one's `$len` header first.
    Header { left: usize },
    /// A bulk string of `len` bytes (plus CRLF), then `left - 1` more.
    Bulk { len: usize, left: usize },
}

/// An incremental RESP2 request parser: one per connection.
#[derive(Debug)]
pub struct Parser {
    limits: Limits,
    state: State,
    args: Vec<Bytes>,
    /// Bytes of arguments declared so far in this command.
    command_len: usize,
    /// How far the current line has been searched for its end: a line arriving a byte at a
    /// time is scanned once, not once per byte.
    searched: usize,
}

impl Default for Parser {
    fn default() -> Parser {
        Parser::new(Limits::default())
    }
}

impl Parser {
    /// A parser for a new connection.
    pub fn new(limits: Limits) -> Parser {
        Parser {
            limits,
            state: State::Start,
            args: Vec::new(),
            command_len: 0,
            searched: 0,
        }
    }

    /// True between commands: nothing of a next command has been consumed. With nothing
    /// buffered either, a connection has no partial frame (an inline handler then returns
    /// `Ok` rather than `fill`ing for one more byte, which would start the read timeout).
    pub fn is_idle(&self) -> bool {
        self.state == State::Start && self.searched == 0
    }

    /// Takes the next whole command off `input`, or says how many bytes it needs first.
    /// Consumes what it has parsed either way (its place is kept for the next call).
    pub fn parse(&mut self, input: &mut impl Input) -> Result<Frame, ProtocolError> {
        loop {
            match self.state {
                State::Start => {
                    let Some(first) = first_byte(input) else {
                        return Ok(Frame::Incomplete(1));
                    };
                    if first != b'*' {
                        let Some(line) = self.line(input, "too big inline request")? else {
                            return Ok(Frame::Incomplete(input.len() + 1));
                        };
                        let args = split_inline(&line)?;
                        if !args.is_empty() {
                            return Ok(Frame::Command(Command::new(args)));
                        }
                        continue; // an empty line: Redis ignores it
                    }
                    let mut spans = Vec::new();
                    if let Some(total) = scan_whole(input.front(), &self.limits, &mut spans) {
                        let frame = input.next(total).map_err(internal)?;
                        return Ok(Frame::Command(Command {
                            frame,
                            spans,
                            parts: Vec::new(),
                        }));
                    }
                    let Some(line) = self.line(input, "too big mbulk count string")? else {
                        return Ok(Frame::Incomplete(input.len() + 1));
                    };
                    let count = crlf_line(&line)
                        .and_then(|l| parse_int(&l[1..]))
                        .filter(|&n| n <= self.limits.max_args as i64)
                        .ok_or_else(|| ProtocolError::new("invalid multibulk length"))?;
                    if count <= 0 {
                        continue; // `*0` and `*-1`: nothing to run
                    }
                    let count = count as usize;
                    // Room for what is likely to come, not for what was declared.
                    self.args = Vec::with_capacity(count.min(1024));
                    self.command_len = 0;
                    self.state = State::Header { left: count };
                }
                State::Header { left } => {
                    let Some(first) = first_byte(input) else {
                        return Ok(Frame::Incomplete(1));
                    };
                    if first != b'$' {
                        return Err(ProtocolError::new(format!(
                            "expected '$', got '{}'",
                            char::from(first).escape_default()
                        )));
                    }
                    let Some(line) = self.line(input, "too big bulk count string")? else {
                        return Ok(Frame::Incomplete(input.len() + 1));
                    };
                    let len = crlf_line(&line)
                        .and_then(|l| parse_int(&l[1..]))
                        .filter(|&n| n >= 0 && n <= self.limits.max_bulk_len as i64)
                        .ok_or_else(|| ProtocolError::new("invalid bulk length"))?
                        as usize;
                    self.command_len += len;
                    if self.command_len > self.limits.max_command_len {
                        return Err(ProtocolError::new("command too large"));
                    }
                    self.state = State::Bulk { len, left };
                }
                State::Bulk { len, left } => {
                    if input.len() < len + 2 {
                        return Ok(Frame::Incomplete(len + 2));
                    }
                    let data = input.next(len).map_err(internal)?;
                    if &input.next(2).map_err(internal)?[..] != b"\r\n" {
                        return Err(ProtocolError::new("expected CRLF after a bulk string"));
                    }
                    self.args.push(data);
                    if left == 1 {
                        self.state = State::Start;
                        return Ok(Frame::Command(Command::new(std::mem::take(&mut self.args))));
                    }
                    self.state = State::Header { left: left - 1 };
                }
            }
        }
    }

    /// Takes a line through its `\n` (the terminator included), or `None` if it has not all
    /// arrived; a line longer than [`MAX_LINE`] is the error `too_long`.
    fn line(
        &mut self,
        input: &mut impl Input,
        too_long: &'static str,
    ) -> Result<Option<Bytes>, ProtocolError> {
        match input.find(b'\n', self.searched) {
            Some(at) if at <= MAX_LINE => {
                self.searched = 0;
                input.next(at + 1).map(Some).map_err(internal)
            }
            Some(_) => Err(ProtocolError::new(too_long)),
            None if input.len() > MAX_LINE => Err(ProtocolError::new(too_long)),
            None => {
                self.searched = input.len();
                Ok(None)
            }
        }
    }
}

/// The fast path: a whole, well-formed multibulk command at the start of `block`. Returns its
/// length and fills `spans`; `None` when it is not all there or anything is off (the
/// incremental path then takes it piece by piece, and reports what is wrong).
fn scan_whole(block: &[u8], limits: &Limits, spans: &mut Vec<(usize, usize)>) -> Option<usize> {
    let (count, mut at) = header(block, 0, b'*')?;
    if count <= 0 || count > limits.max_args as i64 {
        return None;
    }
    let mut total = 0usize;
    for _ in 0..count {
        let (len, data) = header(block, at, b'$')?;
        let len = usize::try_from(len)
            .ok()
            .filter(|&n| n <= limits.max_bulk_len)?;
        total = total
            .checked_add(len)
            .filter(|&n| n <= limits.max_command_len)?;
        let end = data.checked_add(len)?;
        if block.get(end..end + 2)? != b"\r\n" {
            return None;
        }
        spans.push((data, len));
        at = end + 2;
    }
    Some(at)
}

/// `prefix`, an integer and CRLF at `at` in `block`: the integer and where the next part
/// starts.
fn header(block: &[u8], at: usize, prefix: u8) -> Option<(i64, usize)> {
    if *block.get(at)? != prefix {
        return None;
    }
    let rest = block.get(at + 1..)?;
    // A count is at most 20 characters: a longer search would only find trouble.
    let newline = rest.iter().take(24).position(|&b| b == b'\n')?;
    let digits = rest[..newline].strip_suffix(b"\r")?;
    Some((parse_int(digits)?, at + 1 + newline + 1))
}

/// The next byte, left in place.
fn first_byte(input: &mut impl Input) -> Option<u8> {
    if input.is_empty() {
        return None;
    }
    input.peek(1).ok()?.first().copied()
}

/// The parser asked for no more than was buffered, so the input cannot fail it; if it does
/// anyway, that is a broken connection, reported as a protocol error rather than a panic.
fn internal(e: io::Error) -> ProtocolError {
    ProtocolError::new(format!("input failed: {e}"))
}

/// A header line without its `\r\n`; `None` when it ends in a bare `\n`.
fn crlf_line(line: &[u8]) -> Option<&[u8]> {
    line.strip_suffix(b"\r\n")
}

/// A decimal integer as Redis's `string2ll` reads it: an optional `-`, digits, no spaces, no
/// `+`, in range.
pub fn parse_int(text: &[u8]) -> Option<i64> {
    let (negative, digits) = match text {
        [b'-', rest @ ..] => (true, rest),
        _ => (false, text),
    };
    if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    // No leading zeros ("007"), as Redis; "-0" is not a number either.
    if digits[0] == b'0' && (digits.len() > 1 || negative) {
        return None;
    }
    let magnitude = digits.iter().try_fold(0u64, |n, d| {
        n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    })?;
    if negative {
        // i64::MIN's magnitude is one more than i64::MAX's.
        0i64.checked_sub_unsigned(magnitude)
    } else {
        i64::try_from(magnitude).ok()
    }
}

/// Splits an inline command as Redis does (`sdssplitargs`): arguments separated by white
/// space; `"..."` with `\n \r \t \b \a \\ \" \xHH` escapes, `'...'` with `\'`; a closing quote
/// must be followed by white space or the end.
fn split_inline(line: &[u8]) -> Result<Vec<Bytes>, ProtocolError> {
    let unbalanced = || ProtocolError::new("unbalanced quotes in request");
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let mut args = Vec::new();
    let mut i = 0;
    loop {
        while i < line.len() && is_space(line[i]) {
            i += 1;
        }
        if i == line.len() {
            return Ok(args);
        }
        let mut arg = Vec::new();
        let mut quote: Option<u8> = None;
        loop {
            let Some(&c) = line.get(i) else {
                if quote.is_some() {
                    return Err(unbalanced());
                }
                break;
            };
            match quote {
                None if is_space(c) => break,
                None if c == b'"' || c == b'\'' => quote = Some(c),
                None => arg.push(c),
                Some(q) if c == q => {
                    // The closing quote ends the argument and must stand alone.
                    if line.get(i + 1).is_some_and(|&next| !is_space(next)) {
                        return Err(unbalanced());
                    }
                    i += 1;
                    break;
                }
                Some(b'"') if c == b'\\' && i + 1 < line.len() => {
                    let hex = |b: u8| (b as char).to_digit(16);
                    match (line[i + 1], line.get(i + 2), line.get(i + 3)) {
                        (b'x', Some(&h), Some(&l)) if hex(h).is_some() && hex(l).is_some() => {
                            arg.push((hex(h).unwrap_or(0) * 16 + hex(l).unwrap_or(0)) as u8);
                            i += 3;
                        }
                        (e, _, _) => {
                            arg.push(match e {
                                b'n' => b'\n',
                                b'r' => b'\r',
                                b't' => b'\t',
                                b'b' => 8,
                                b'a' => 7,
                                other => other,
                            });
                            i += 1;
                        }
                    }
                }
                Some(b'\'') if c == b'\\' && line.get(i + 1) == Some(&b'\'') => {
                    arg.push(b'\'');
                    i += 1;
                }
                Some(_) => arg.push(c),
            }
            i += 1;
        }
        args.push(Bytes::from(arg));
    }
}

fn is_space(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c)
}

/// Values at least this long are linked into the output rather than copied.
const LINK_MIN: usize = 1024;

/// `+text\r\n`.
pub fn write_simple(out: &mut impl Output, text: &str) -> io::Result<()> {
    write_framed(out, b"+", text.as_bytes())
}

/// `-message\r\n`; `message` starts with its code (`ERR ...`, `WRONGTYPE ...`). Line breaks
/// in it become spaces, as Redis makes them.
pub fn write_error(out: &mut impl Output, message: &str) -> io::Result<()> {
    if message.contains(['\r', '\n']) {
        return write_framed(out, b"-", message.replace(['\r', '\n'], " ").as_bytes());
    }
    write_framed(out, b"-", message.as_bytes())
}

/// `:n\r\n`.
pub fn write_integer(out: &mut impl Output, n: i64) -> io::Result<()> {
    let mut text = [0u8; 24];
    out.write_binary(prefixed(&mut text, b':', n))
}

/// `$len\r\n` + `data` + `\r\n`; a long value is linked, not copied.
pub fn write_bulk(out: &mut impl Output, data: &Bytes) -> io::Result<()> {
    let mut text = [0u8; 24];
    let header = prefixed(&mut text, b'$', data.len() as i64);
    if data.len() >= LINK_MIN {
        out.write_binary(header)?;
        out.write_direct(data.clone())?;
        return out.write_binary(b"\r\n");
    }
    write_framed(out, header, data)
}

/// `head`, `body`, `\r\n` in one write when short (most replies): one call into the output
/// instead of three.
fn write_framed(out: &mut impl Output, head: &[u8], body: &[u8]) -> io::Result<()> {
    // Small: the whole array is zeroed on every call.
    let mut reply = [0u8; 96];
    let len = head.len() + body.len() + 2;
    if len > reply.len() {
        out.write_binary(head)?;
        out.write_binary(body)?;
        return out.write_binary(b"\r\n");
    }
    reply[..head.len()].copy_from_slice(head);
    reply[head.len()..len - 2].copy_from_slice(body);
    reply[len - 2..len].copy_from_slice(b"\r\n");
    out.write_binary(&reply[..len])
}

/// The null bulk string, `$-1\r\n`.
pub fn write_null(out: &mut impl Output) -> io::Result<()> {
    out.write_binary(b"$-1\r\n")
}

/// An array's header, `*n\r\n`; its `n` elements follow.
pub fn write_array_len(out: &mut impl Output, n: usize) -> io::Result<()> {
    let mut text = [0u8; 24];
    out.write_binary(prefixed(&mut text, b'*', n as i64))
}

/// `prefix`, `n` in decimal, `\r\n`, formatted in `text` without allocating.
fn prefixed(text: &mut [u8; 24], prefix: u8, n: i64) -> &[u8] {
    let mut at = text.len() - 2;
    text[at..].copy_from_slice(b"\r\n");
    let mut magnitude = n.unsigned_abs();
    loop {
        at -= 1;
        text[at] = b'0' + (magnitude % 10) as u8;
        magnitude /= 10;
        if magnitude == 0 {
            break;
        }
    }
    if n < 0 {
        at -= 1;
        text[at] = b'-';
    }
    at -= 1;
    text[at] = prefix;
    &text[at..]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_as_redis_reads_them() {
        assert_eq!(parse_int(b"0"), Some(0));
        assert_eq!(parse_int(b"-1"), Some(-1));
        assert_eq!(parse_int(b"9223372036854775807"), Some(i64::MAX));
        assert_eq!(parse_int(b"-9223372036854775808"), Some(i64::MIN));
        for bad in [
            &b""[..],
            b"-",
            b"+1",
            b" 1",
            b"1 ",
            b"01",
            b"-0",
            b"9223372036854775808",
            b"1a",
        ] {
            assert_eq!(parse_int(bad), None, "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn inline_splitting_follows_redis_cli() {
        let split =
            |s: &[u8]| split_inline(s).map(|v| v.iter().map(|b| b.to_vec()).collect::<Vec<_>>());
        assert_eq!(
            split(b"  SET  k v \r\n").unwrap(),
            [b"SET".to_vec(), b"k".to_vec(), b"v".to_vec()]
        );
        assert_eq!(
            split(b"SET \"a b\\x41\\n\" 'it\\'s'\r\n").unwrap(),
            [b"SET".to_vec(), b"a bA\n".to_vec(), b"it's".to_vec()]
        );
        assert_eq!(split(b"\r\n").unwrap(), Vec::<Vec<u8>>::new());
        assert!(split(b"SET \"open\r\n").is_err());
        assert!(split(b"SET \"a\"b\r\n").is_err());
        assert!(split(b"SET 'a'b\r\n").is_err());
    }
}
