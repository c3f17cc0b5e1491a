//! `HttpError`: why a request cannot be served, and the status that says so.

use std::fmt;
use std::io;

use super::StatusCode;

/// A request the parsers refuse. Each maps to the response status a server sends before it
/// closes the connection ([`HttpError::status`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpError {
    /// Malformed syntax or framing (400), with what was wrong.
    BadRequest(&'static str),
    /// The head (or the trailer section) is over its limit, or has too many fields (431).
    HeadTooLarge,
    /// The body is over the configured cap (413).
    BodyTooLarge,
    /// A transfer coding other than `chunked` (501).
    UnsupportedEncoding,
}

impl HttpError {
    /// The response status for this error.
    pub fn status(self) -> StatusCode {
        match self {
            HttpError::BadRequest(_) => StatusCode::BAD_REQUEST,
            HttpError::HeadTooLarge => StatusCode::HEADER_FIELDS_TOO_LARGE,
            HttpError::BodyTooLarge => StatusCode::CONTENT_TOO_LARGE,
            HttpError::UnsupportedEncoding => StatusCode::NOT_IMPLEMENTED,
        }
    }
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HttpError::BadRequest(why) => write!(f, "bad request: {why}"),
            HttpError::HeadTooLarge => f.write_str("request head too large"),
            HttpError::BodyTooLarge => f.write_str("request body over the cap"),
            HttpError::UnsupportedEncoding => f.write_str("unsupported transfer coding"),
        }
    }
}

impl std::error::Error for HttpError {}

impl From<HttpError> for io::Error {
    fn from(e: HttpError) -> io::Error {
        io::Error::new(io::ErrorKind::InvalidData, e)
    }
}

/// An `Input` that failed to give what it said it held: not the peer's fault, but the request
/// cannot be read either.
pub(crate) fn input_error(_: io::Error) -> HttpError {
    HttpError::BadRequest("input shorter than its length")
}
