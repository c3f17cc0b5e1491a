//! HTTP/1.1 for servers on the reactor face: the request head ([`HeadParser`], on `httparse`),
//! request bodies ([`BodyDecoder`]: `Content-Length` and chunked), the `Date` header value
//! ([`date`]), and response heads ([`ResponseHead`]).
//!
//! The parsers are sans-IO: they read what an [`Input`](crate::proto::Input) holds now and
//! never wait. An incomplete frame is [`Parsed::Incomplete`] with the input length to wait for;
//! calling again with more input resumes where the last call stopped, so a request fed one byte
//! at a time costs O(n) overall. The head parser consumes nothing (the caller skips
//! [`RequestHead::len`] bytes once it is done with the head); the body decoder consumes the
//! framing and the data it hands out.
//!
//! ```
//! use netpoll::buffer::LinkBuffer;
//! use netpoll::proto::http::{BodyBuf, BodyDecoder, HeadParser, Parsed};
//! use netpoll::proto::Input;
//!
//! let input = LinkBuffer::new();
//! let mut writer = input.writer();
//! writer.write_binary(b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n");
//! writer.write_binary(b"5;ext=1\r\nhello\r\n0\r\nTrailer: ignored\r\n\r\n");
//! writer.flush();
//! drop(writer);
//!
//! let mut reader = input.reader();
//! let Parsed::Complete(head) = HeadParser::new().parse(&mut reader)? else { panic!() };
//! assert_eq!(head.path(), b"/echo");
//! reader.skip(head.len())?;
//! let mut decoder = BodyDecoder::new(head.body(), 1 << 20)?;
//! let mut body = BodyBuf::new();
//! assert_eq!(decoder.decode(&mut reader, &mut body)?, Parsed::Complete(()));
//! assert_eq!(body.to_vec(), b"hello");
//! assert!(reader.is_empty());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod body;
mod chunked;
pub mod date;
mod error;
mod head;
mod response;

pub use body::{BodyBuf, BodyDecoder};
pub use chunked::ChunkedDecoder;
pub use error::HttpError;
pub use head::{BodyKind, HeadParser, Method, RequestHead, Version, DEFAULT_HEAD_LIMIT};
pub use response::{ConnectionHeader, ResponseHead, StatusCode, CONTINUE};

/// What a parser made of the input it was given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed<T> {
    /// A whole frame.
    Complete(T),
    /// Not yet: call again once the input holds at least this many bytes (what
    /// [`ConnReader::fill`](crate::ConnReader::fill) takes).
    Incomplete(usize),
}
