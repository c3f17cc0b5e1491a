//! Request bodies: the decoder for either framing, and the buffer the data goes to.

use bytes::{Bytes, BytesMut};

use super::error::input_error;
use super::{BodyKind, ChunkedDecoder, HttpError, Parsed};
use crate::proto::Input;

/// Data is taken from the input in pieces of at least this much (or what is left of the body
/// or chunk): a body trickled in byte by byte still makes few pieces.
pub(crate) const MIN_PIECE: u64 = 16 * 1024;

/// Pieces shorter than this are copied into one tail instead of kept as their own `Bytes`, so
/// a body of tiny chunks costs its bytes, not a `Bytes` per chunk.
const SMALL_PIECE: usize = 512;

/// Decodes one request body, taking its framing and data from the input as they arrive.
#[derive(Debug, Clone)]
pub enum BodyDecoder {
    /// `Content-Length`: this many bytes left.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked(ChunkedDecoder),
}

impl BodyDecoder {
    /// The decoder for `kind`, with bodies capped at `limit` bytes. A `Content-Length` over
    /// the limit is refused at once ([`HttpError::BodyTooLarge`]): a server answers 413
    /// without reading the body (instead of a 100 Continue).
    pub fn new(kind: BodyKind, limit: u64) -> Result<BodyDecoder, HttpError> {
        match kind {
            BodyKind::Empty => Ok(BodyDecoder::Length(0)),
            BodyKind::Length(length) if length > limit => Err(HttpError::BodyTooLarge),
            BodyKind::Length(length) => Ok(BodyDecoder::Length(length)),
            BodyKind::Chunked => Ok(BodyDecoder::Chunked(ChunkedDecoder::new(limit))),
        }
    }

    /// Moves body data from `input` to `body`; `Complete` once the body (and, when chunked,
    /// its trailer section) has been taken.
    pub fn decode(
        &mut self,
        input: &mut impl Input,
        body: &mut BodyBuf,
    ) -> Result<Parsed<()>, HttpError> {
        match self {
            BodyDecoder::Length(remaining) => {
                while *remaining > 0 {
                    if let Parsed::Incomplete(need) = take_data(input, remaining, body)? {
                        return Ok(Parsed::Incomplete(need));
                    }
                }
                Ok(Parsed::Complete(()))
            }
            BodyDecoder::Chunked(chunked) => chunked.decode(input, body),
        }
    }
}

/// Takes up to `remaining` bytes into `body`, at least `MIN_PIECE` (or all that remain) at
/// once. `Complete` when some were taken.
pub(crate) fn take_data(
    input: &mut impl Input,
    remaining: &mut u64,
    body: &mut BodyBuf,
) -> Result<Parsed<()>, HttpError> {
    let at_least = usize::try_from((*remaining).min(MIN_PIECE)).unwrap_or(usize::MAX);
    let available = input.len();
    if available < at_least {
        return Ok(Parsed::Incomplete(at_least));
    }
    let take = usize::try_from(*remaining).map_or(available, |r| r.min(available));
    body.push(input.next(take).map_err(input_error)?);
    *remaining -= take as u64;
    Ok(Parsed::Complete(()))
}

/// A request body as received: pieces shared with the input buffer where they lay in one
/// block, small ones copied together. A discarding one only counts.
#[derive(Debug, Default, Clone)]
pub struct BodyBuf {
    pieces: Vec<Bytes>,
    tail: BytesMut,
    len: u64,
    discard: bool,
}

impl BodyBuf {
    /// An empty body that keeps what it is given.
    pub fn new() -> BodyBuf {
        BodyBuf::default()
    }

    /// An empty body that only counts what it is given (a body the server ignores).
    pub fn discarding() -> BodyBuf {
        BodyBuf {
            discard: true,
            ..BodyBuf::default()
        }
    }

    /// Adds a piece.
    pub fn push(&mut self, piece: Bytes) {
        self.len += piece.len() as u64;
        if self.discard || piece.is_empty() {
            return;
        }
        if piece.len() < SMALL_PIECE {
            self.tail.extend_from_slice(&piece);
            return;
        }
        self.end_tail();
        self.pieces.push(piece);
    }

    /// Bytes received (kept or not).
    pub fn len(&self) -> u64 {
        self.len
    }

    /// True when nothing was received.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The kept pieces, in order.
    pub fn into_pieces(mut self) -> Vec<Bytes> {
        self.end_tail();
        self.pieces
    }

    /// A copy of the kept bytes.
    pub fn to_vec(&self) -> Vec<u8> {
        let mut all = Vec::new();
        for piece in &self.pieces {
            all.extend_from_slice(piece);
        }
        all.extend_from_slice(&self.tail);
        all
    }

    fn end_tail(&mut self) {
        if !self.tail.is_empty() {
            self.pieces.push(self.tail.split().freeze());
        }
    }
}
