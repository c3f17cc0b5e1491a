//! Response heads: status line, `Date`, the caller's fields, framing and `Connection`.

use std::io;

use super::{date, Version};
use crate::ConnWriter;

/// The interim response to `Expect: 100-continue`.
pub const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// A response status code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatusCode(pub u16);

impl StatusCode {
    /// 200 OK
    pub const OK: StatusCode = StatusCode(200);
    /// 400 Bad Request
    pub const BAD_REQUEST: StatusCode = StatusCode(400);
    /// 404 Not Found
    pub const NOT_FOUND: StatusCode = StatusCode(404);
    /// 405 Method Not Allowed
    pub const METHOD_NOT_ALLOWED: StatusCode = StatusCode(405);
    /// 408 Request Timeout
    pub const REQUEST_TIMEOUT: StatusCode = StatusCode(408);
    /// 413 Content Too Large
    pub const CONTENT_TOO_LARGE: StatusCode = StatusCode(413);
    /// 431 Request Header Fields Too Large
    pub const HEADER_FIELDS_TOO_LARGE: StatusCode = StatusCode(431);
    /// 500 Internal Server Error
    pub const INTERNAL_SERVER_ERROR: StatusCode = StatusCode(500);
    /// 501 Not Implemented
    pub const NOT_IMPLEMENTED: StatusCode = StatusCode(501);

    /// The reason phrase (RFC 9110 §15); empty for codes it does not know.
    pub fn reason(self) -> &'static str {
        match self.0 {
            100 => "Continue",
            200 => "OK",
            204 => "No Content",
            400 => "Bad Request",
            404 => "Not Found",
            405 => "Method Not Allowed",
            408 => "Request Timeout",
            413 => "Content Too Large",
            417 => "Expectation Failed",
            431 => "Request Header Fields Too Large",
            500 => "Internal Server Error",
            501 => "Not Implemented",
            503 => "Service Unavailable",
            _ => "",
        }
    }
}

/// The `Connection` field a response carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectionHeader {
    /// None: the version's default holds.
    Omit,
    /// `Connection: keep-alive` (what an HTTP/1.0 client that asked for it needs).
    KeepAlive,
    /// `Connection: close`: the server closes after this response.
    Close,
}

/// A response head without a body: `HTTP/1.x code reason`, `Date`, the fields given,
/// `Content-Length`, `Connection`.
#[derive(Debug, Clone, Copy)]
pub struct ResponseHead<'a> {
    /// The status line's version: a server answers in the request's (RFC 9110 §6.2).
    pub version: Version,
    /// The status.
    pub status: StatusCode,
    /// Further fields, written as given (`name: value`).
    pub fields: &'a [(&'a str, &'a [u8])],
    /// The body length (sent for HEAD too, as the GET body's length).
    pub content_length: u64,
    /// The `Connection` field.
    pub connection: ConnectionHeader,
}

impl ResponseHead<'_> {
    /// Appends the head, blank line included, to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(match self.version {
            Version::Http10 => b"HTTP/1.0 ",
            Version::Http11 => b"HTTP/1.1 ",
        });
        push_decimal(out, u64::from(self.status.0));
        out.push(b' ');
        out.extend_from_slice(self.status.reason().as_bytes());
        out.extend_from_slice(b"\r\nDate: ");
        out.extend_from_slice(&date::now());
        out.extend_from_slice(b"\r\n");
        for (name, value) in self.fields {
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(value);
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"Content-Length: ");
        push_decimal(out, self.content_length);
        out.extend_from_slice(match self.connection {
            ConnectionHeader::Omit => b"\r\n\r\n" as &[u8],
            ConnectionHeader::KeepAlive => b"\r\nConnection: keep-alive\r\n\r\n",
            ConnectionHeader::Close => b"\r\nConnection: close\r\n\r\n",
        });
    }

    /// Writes the head into `writer` in one write (to be flushed with the batch's replies).
    pub fn write(&self, writer: &mut ConnWriter<'_>) -> io::Result<()> {
        let mut head = Vec::with_capacity(128);
        self.encode(&mut head);
        writer.write_binary(&head)
    }
}

fn push_decimal(out: &mut Vec<u8>, mut value: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (value % 10) as u8;
        value /= 10;
        if value == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
}
