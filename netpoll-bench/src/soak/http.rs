//! HTTP/1.1 sessions against examples/http.rs: pipelined GET /plaintext and POST /echo (with
//! Content-Length or chunked bodies), every response's status and body checked.

use std::net::{SocketAddr, TcpStream};

use httparse::Status;

use super::echo::churn;
use super::wire::{
    connect, exchange, expect_eof, reset, send_all, Reading, Rng, Sending, FAST, SLOW,
};
use super::{Fault, Stats};

const PLAINTEXT: &[u8] = b"Hello, World!";
/// Below the example's default body cap (1 MiB).
const MAX_BODY: usize = 768 * 1024;

/// A request and the response body it must get (status 200).
struct Exchange {
    request: Vec<u8>,
    body: Vec<u8>,
}

fn get_plaintext() -> Exchange {
    Exchange {
        request: b"GET /plaintext HTTP/1.1\r\nHost: soak\r\n\r\n".to_vec(),
        body: PLAINTEXT.to_vec(),
    }
}

fn post_echo(rng: &mut Rng, len: usize) -> Exchange {
    let body = rng.bytes(len);
    let mut request = b"POST /echo HTTP/1.1\r\nHost: soak\r\n".to_vec();
    if rng.percent(30) {
        request.extend_from_slice(b"Transfer-Encoding: chunked\r\n\r\n");
        let mut rest = &body[..];
        while !rest.is_empty() {
            let n = rng.size(rest.len());
            request.extend_from_slice(format!("{n:x}\r\n").as_bytes());
            request.extend_from_slice(&rest[..n]);
            request.extend_from_slice(b"\r\n");
            rest = &rest[n..];
        }
        request.extend_from_slice(b"0\r\n\r\n");
    } else {
        request.extend_from_slice(format!("Content-Length: {len}\r\n\r\n").as_bytes());
        request.extend_from_slice(&body);
    }
    Exchange { request, body }
}

fn random_exchange(rng: &mut Rng) -> Exchange {
    if rng.percent(40) {
        get_plaintext()
    } else {
        let len = rng.size(64 * 1024) - 1;
        post_echo(rng, len)
    }
}

/// Responses read off one connection, in order (pipelined ones share reads).
struct Responses<'a> {
    stream: &'a TcpStream,
    reading: Reading,
    buf: Vec<u8>,
}

impl Responses<'_> {
    /// The next response's status and body (Content-Length framed, as the example sends).
    fn next(&mut self) -> Result<(u16, Vec<u8>), String> {
        loop {
            let mut fields = [httparse::EMPTY_HEADER; 16];
            let mut head = httparse::Response::new(&mut fields);
            let parsed = match head.parse(&self.buf) {
                Ok(Status::Complete(n)) => {
                    let length = head
                        .headers
                        .iter()
                        .find(|f| f.name.eq_ignore_ascii_case("content-length"))
                        .and_then(|f| std::str::from_utf8(f.value).ok()?.parse::<usize>().ok());
                    match length {
                        Some(length) => Some((n, head.code.unwrap_or(0), length)),
                        None => return Err("a response without Content-Length".into()),
                    }
                }
                Ok(Status::Partial) => None,
                Err(e) => return Err(format!("a malformed response head: {e}")),
            };
            if let Some((head_len, status, length)) = parsed {
                while self.buf.len() < head_len + length {
                    self.fill()?;
                }
                let body = self.buf[head_len..head_len + length].to_vec();
                self.buf.drain(..head_len + length);
                return Ok((status, body));
            }
            self.fill()?;
        }
    }

    fn fill(&mut self) -> Result<(), String> {
        use std::io::Read;
        let mut chunk = vec![0u8; self.reading.chunk];
        let mut reader = self.stream;
        loop {
            return match reader.read(&mut chunk) {
                Ok(0) => Err(format!(
                    "closed in the middle of a response ({} bytes of it came)",
                    self.buf.len()
                )),
                Ok(n) => {
                    self.buf.extend_from_slice(&chunk[..n]);
                    if let Some(pause) = self.reading.pause {
                        std::thread::sleep(pause);
                    }
                    Ok(())
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => Err(format!("reading a response: {e}")),
            };
        }
    }
}

/// Sends the exchanges' requests pipelined and checks each response; returns the body bytes.
fn run(
    stream: &TcpStream,
    exchanges: &[Exchange],
    sending: Sending,
    reading: Reading,
    then_eof: bool,
) -> Result<usize, String> {
    let sent: Vec<u8> = exchanges.iter().flat_map(|e| e.request.clone()).collect();
    exchange(stream, &sent, sending, |s| {
        let mut responses = Responses {
            stream: s,
            reading,
            buf: Vec::new(),
        };
        let mut bytes = 0;
        for (i, ex) in exchanges.iter().enumerate() {
            let (status, body) = responses.next()?;
            if status != 200 {
                return Err(format!(
                    "request {i} of {}: status {status}",
                    exchanges.len()
                ));
            }
            if body != ex.body {
                return Err(format!(
                    "request {i} of {}: a {}-byte body differs from the {} bytes expected",
                    exchanges.len(),
                    body.len(),
                    ex.body.len()
                ));
            }
            bytes += body.len();
        }
        if then_eof {
            if !responses.buf.is_empty() {
                return Err(format!(
                    "{} bytes after the last response",
                    responses.buf.len()
                ));
            }
            expect_eof(s, "HTTP after a half-close")?;
        }
        Ok(bytes)
    })
}

pub fn session(addr: SocketAddr, rng: &mut Rng, fault: Fault, stats: &Stats) -> Result<(), String> {
    match fault {
        Fault::None => {
            let stream = connect(addr)?;
            for _ in 0..rng.range(1, 10) {
                let depth = rng.range(1, 4);
                let exchanges: Vec<Exchange> = (0..depth).map(|_| random_exchange(rng)).collect();
                let bytes = run(&stream, &exchanges, Sending::default(), FAST, false)?;
                stats.verified_ops(depth as u64, bytes);
            }
            Ok(())
        }
        Fault::HalfClose => {
            let stream = connect(addr)?;
            let depth = rng.range(1, 4);
            let exchanges: Vec<Exchange> = (0..depth).map(|_| random_exchange(rng)).collect();
            let sending = Sending {
                then_shutdown: true,
                ..Sending::default()
            };
            let bytes = run(&stream, &exchanges, sending, FAST, true)?;
            stats.verified_ops(depth as u64, bytes);
            Ok(())
        }
        Fault::SlowReader => {
            let stream = connect(addr)?;
            let len = rng.range(256 * 1024, MAX_BODY);
            let exchanges = [post_echo(rng, len)];
            let bytes = run(&stream, &exchanges, Sending::default(), SLOW, false)?;
            stats.verified_ops(1, bytes);
            Ok(())
        }
        Fault::SlowWriter => {
            let stream = connect(addr)?;
            let sending = Sending {
                slowly: true,
                ..Sending::default()
            };
            let bytes = run(&stream, &[get_plaintext()], sending, FAST, false)?;
            stats.verified_ops(1, bytes);
            Ok(())
        }
        Fault::Reset => {
            // A large body cut short by a reset.
            let stream = connect(addr)?;
            let len = rng.range(64 * 1024, MAX_BODY);
            let request = post_echo(rng, len).request;
            let cut = rng.range(1, request.len() - 1);
            send_all(&stream, &request[..cut], Sending::default())?;
            reset(stream);
            Ok(())
        }
        Fault::Malformed => {
            // Not HTTP: a 400, then the server closes.
            let stream = connect(addr)?;
            exchange(&stream, b"NOT HTTP\r\n\r\n", Sending::default(), |s| {
                let mut responses = Responses {
                    stream: s,
                    reading: FAST,
                    buf: Vec::new(),
                };
                let (status, _) = responses.next()?;
                if status != 400 {
                    return Err(format!("a malformed request got {status}, not 400"));
                }
                expect_eof(s, "HTTP after a 400")
            })?;
            stats.verified_ops(1, 0);
            Ok(())
        }
        Fault::Churn => churn(addr, rng, b"GET /plain"),
    }
}
