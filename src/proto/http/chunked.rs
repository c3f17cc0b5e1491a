//! The chunked transfer coding of request bodies (RFC 9112 §7.1).

use super::body::take_data;
use super::error::input_error;
use super::{BodyBuf, HttpError, Parsed, DEFAULT_HEAD_LIMIT};
use crate::proto::Input;

/// A chunk-size line, extensions included, longer than this is refused (hyper allows 16 KiB of
/// extensions per body; nobody sends long ones).
const SIZE_LINE_LIMIT: usize = 8 * 1024;

/// Decodes a chunked body: sizes (strict hex, at most 16 digits), extensions and trailer fields
/// (accepted and ignored), with the data capped. Consumes framing as it goes; a line not yet
/// whole is left in the input and only its new bytes are searched on the next call.
#[derive(Debug, Clone)]
pub struct ChunkedDecoder {
    state: State,
    /// Bytes of the current line already searched for its end.
    scanned: usize,
    received: u64,
    limit: u64,
    trailer_bytes: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Size,
    Data(u64),
    DataEnd,
    Trailers,
    Done,
}

impl ChunkedDecoder {
    /// A decoder for a body of at most `limit` data bytes.
    pub fn new(limit: u64) -> ChunkedDecoder {
        ChunkedDecoder {
            state: State::Size,
            scanned: 0,
            received: 0,
            limit,
            trailer_bytes: 0,
        }
    }

    /// Moves data from `input` to `body`; `Complete` after the trailer section's blank line.
    pub fn decode(
        &mut self,
        input: &mut impl Input,
        body: &mut BodyBuf,
    ) -> Result<Parsed<()>, HttpError> {
        loop {
            match self.state {
                State::Size => {
                    let Some(line) = self.line(input, SIZE_LINE_LIMIT, SIZE_LINE_TOO_LONG)? else {
                        return Ok(Parsed::Incomplete(self.scanned + 1));
                    };
                    let size = chunk_size(&line)?;
                    input.skip(line.len()).map_err(input_error)?;
                    self.received = self
                        .received
                        .checked_add(size)
                        .filter(|&total| total <= self.limit)
                        .ok_or(HttpError::BodyTooLarge)?;
                    self.state = if size == 0 {
                        State::Trailers
                    } else {
                        State::Data(size)
                    };
                }
                State::Data(mut remaining) => {
                    let progress = take_data(input, &mut remaining, body)?;
                    self.state = if remaining == 0 {
                        State::DataEnd
                    } else {
                        State::Data(remaining)
                    };
                    if let Parsed::Incomplete(need) = progress {
                        return Ok(Parsed::Incomplete(need));
                    }
                }
                State::DataEnd => {
                    // A wrong first byte is refused without waiting for the second.
                    let have = input.len().min(2);
                    if have > 0 && input.peek(have).map_err(input_error)? != b"\r\n"[..have] {
                        return Err(HttpError::BadRequest("chunk data not followed by CRLF"));
                    }
                    if have < 2 {
                        return Ok(Parsed::Incomplete(2));
                    }
                    input.skip(2).map_err(input_error)?;
                    self.state = State::Size;
                }
                State::Trailers => {
                    let room = DEFAULT_HEAD_LIMIT.saturating_sub(self.trailer_bytes);
                    let Some(line) = self.line(input, room, HttpError::HeadTooLarge)? else {
                        return Ok(Parsed::Incomplete(self.scanned + 1));
                    };
                    input.skip(line.len()).map_err(input_error)?;
                    if line[..] == b"\r\n"[..] || line[..] == b"\n"[..] {
                        self.state = State::Done;
                        continue;
                    }
                    self.trailer_bytes += line.len();
                    // A field line is `name: value`; its content is ignored.
                    let name_end = line.iter().position(|&b| b == b':');
                    if !name_end.is_some_and(|end| end > 0 && is_token(&line[..end])) {
                        return Err(HttpError::BadRequest("malformed trailer field"));
                    }
                }
                State::Done => return Ok(Parsed::Complete(())),
            }
        }
    }

    /// The next whole line (LF included) at the start of the input, or `None` while its end
    /// has not arrived. Lines longer than `limit` are `too_long`.
    fn line(
        &mut self,
        input: &mut impl Input,
        limit: usize,
        too_long: HttpError,
    ) -> Result<Option<bytes::Bytes>, HttpError> {
        match input.find(b'\n', self.scanned) {
            Some(lf) if lf < limit => {
                self.scanned = 0;
                input.peek(lf + 1).map(Some).map_err(input_error)
            }
            Some(_) => Err(too_long),
            None if input.len() >= limit => Err(too_long),
            None => {
                self.scanned = input.len();
                Ok(None)
            }
        }
    }
}

const SIZE_LINE_TOO_LONG: HttpError = HttpError::BadRequest("chunk size line too long");

/// The size of a chunk-size line: `httparse` parses it (and skips extensions); it also takes
/// an empty size as 0, so a hex digit must come first.
fn chunk_size(line: &[u8]) -> Result<u64, HttpError> {
    const BAD: HttpError = HttpError::BadRequest("invalid chunk size");
    if !line.first().is_some_and(u8::is_ascii_hexdigit) {
        return Err(BAD);
    }
    match httparse::parse_chunk_size(line) {
        Ok(httparse::Status::Complete((used, size))) if used == line.len() => Ok(size),
        _ => Err(BAD),
    }
}

/// RFC 9110 token characters.
fn is_token(name: &[u8]) -> bool {
    name.iter()
        .all(|&b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}
