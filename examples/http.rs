//! An HTTP/1.1 server on the reactor face: inline handlers, `netpoll::proto::http` parsers.
//!
//! ```sh
//! cargo run --release --example http -- --addr 127.0.0.1:8080 [--loops N] [--body-cap BYTES]
//! cargo run --example http -- --help
//! ```
//! Routes: `GET /plaintext` and `GET /json` (as TechEmpower specifies; HEAD too), `POST /echo`
//! (the request body back). Keep-alive, pipelining (the replies to one input batch go out in
//! one send), HTTP/1.0, `Connection: close`, Content-Length and chunked request bodies,
//! `Expect: 100-continue`. Malformed requests get 400, heads over 64 KiB 431, bodies over the
//! cap 413 (each then closes); other methods on the routes 405, other paths 404. A head must
//! arrive within the read timeout (a slow client is closed), and so must a body.
//!
//! Prints `listening on ADDR` once ready; on SIGINT or SIGTERM it stops accepting, lets queued
//! replies go out (5 s at most) and exits.

use std::io::{self, ErrorKind};
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Parser;
use netpoll::buffer::LinkBuffer;
use netpoll::proto::http::{
    BodyBuf, BodyDecoder, BodyKind, ConnectionHeader, HeadParser, HttpError, Method, Parsed,
    RequestHead, ResponseHead, StatusCode, Version, CONTINUE,
};
use netpoll::{ConnReader, ConnWriter, Connection, EventLoop, Listener};
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

/// An HTTP/1.1 server on netpoll's reactor face; stops gracefully on SIGINT/SIGTERM.
#[derive(Parser)]
#[command(name = "http")]
struct Args {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, value_name = "HOST:PORT", default_value = "127.0.0.1:8080")]
    addr: String,
    /// Run on N pollers of its own instead of netpoll's shared ones.
    #[arg(long, value_name = "N")]
    loops: Option<NonZeroUsize>,
    /// Largest request body accepted; larger ones get 413.
    #[arg(long, value_name = "BYTES", default_value_t = 1 << 20)]
    body_cap: u64,
    /// A request head, and then its body, must arrive within this many seconds.
    #[arg(long, value_name = "SECS", default_value = "10", value_parser = seconds)]
    read_timeout: Duration,
    /// Close connections idle (no traffic either way) for this many seconds.
    #[arg(long, value_name = "SECS", default_value = "60", value_parser = seconds)]
    idle_timeout: Duration,
}

fn seconds(text: &str) -> Result<Duration, String> {
    let secs: f64 = text.parse().map_err(|e| format!("{e}"))?;
    match Duration::try_from_secs_f64(secs) {
        Ok(duration) if !duration.is_zero() => Ok(duration),
        _ => Err("expected a positive number of seconds".into()),
    }
}

const SERVER: (&str, &[u8]) = ("Server", b"netpoll");
const PLAINTEXT: &[u8] = b"Hello, World!";
const JSON: &[u8] = br#"{"message":"Hello, World!"}"#;

#[derive(Clone, Copy)]
struct Config {
    body_cap: u64,
    read_timeout: Duration,
}

/// What a request asks for.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Route {
    Plaintext,
    Json,
    Echo,
    Status(StatusCode, Option<&'static str>),
}

fn route(head: &RequestHead) -> Route {
    const GET: Option<&str> = Some("GET, HEAD");
    let method = head.method();
    let get = matches!(method, Method::Get | Method::Head);
    match head.path() {
        b"/plaintext" if get => Route::Plaintext,
        b"/json" if get => Route::Json,
        b"/echo" if method == Method::Post => Route::Echo,
        b"/plaintext" | b"/json" => Route::Status(StatusCode::METHOD_NOT_ALLOWED, GET),
        b"/echo" => Route::Status(StatusCode::METHOD_NOT_ALLOWED, Some("POST")),
        _ => Route::Status(StatusCode::NOT_FOUND, None),
    }
}

/// The parts of a head its reply needs, once the head has been taken from the input.
#[derive(Clone, Copy)]
struct Request {
    route: Route,
    version: Version,
    keep_alive: bool,
    head_only: bool,
}

impl Request {
    fn new(head: &RequestHead) -> Request {
        Request {
            route: route(head),
            version: head.version(),
            keep_alive: head.keep_alive(),
            head_only: head.method() == Method::Head,
        }
    }
}

/// A reply, whole: written in one call so the output cap refuses all of it or none.
#[derive(Default)]
struct Reply {
    head: Vec<u8>,
    body: Vec<Bytes>,
    close: bool,
}

impl Reply {
    fn new(request: Request, body: BodyBuf) -> Reply {
        let (status, content_type, body, allow) = match request.route {
            Route::Plaintext => (
                StatusCode::OK,
                Some("text/plain"),
                vec![PLAINTEXT.into()],
                None,
            ),
            Route::Json => (
                StatusCode::OK,
                Some("application/json"),
                vec![JSON.into()],
                None,
            ),
            Route::Echo => (
                StatusCode::OK,
                Some("application/octet-stream"),
                body.into_pieces(),
                None,
            ),
            Route::Status(status, allow) => (status, None, Vec::new(), allow),
        };
        let mut fields = [SERVER; 2];
        let count = match (content_type, allow) {
            (Some(kind), _) => {
                fields[1] = ("Content-Type", kind.as_bytes());
                2
            }
            (None, Some(allow)) => {
                fields[1] = ("Allow", allow.as_bytes());
                2
            }
            (None, None) => 1,
        };
        let connection = match (request.keep_alive, request.version) {
            (false, _) => ConnectionHeader::Close,
            (true, Version::Http10) => ConnectionHeader::KeepAlive,
            (true, Version::Http11) => ConnectionHeader::Omit,
        };
        let mut reply = Reply {
            close: !request.keep_alive,
            ..Reply::default()
        };
        ResponseHead {
            version: request.version,
            status,
            fields: &fields[..count],
            content_length: body.iter().map(|piece| piece.len() as u64).sum(),
            connection,
        }
        .encode(&mut reply.head);
        if !request.head_only {
            reply.body = body;
        }
        reply
    }

    /// An error reply; the connection closes after it.
    fn error(status: StatusCode, version: Version) -> Reply {
        let request = Request {
            route: Route::Status(status, None),
            version,
            keep_alive: false,
            head_only: false,
        };
        Reply::new(request, BodyBuf::new())
    }

    /// Writes the reply; `Err` to close the connection once it went out (`Connection: close`,
    /// HTTP/1.0).
    fn send(&self, writer: &mut ConnWriter<'_>) -> io::Result<()> {
        self.write(writer)?;
        if self.close {
            return Err(closing());
        }
        Ok(())
    }

    /// One write: the head alone is copied, a body is linked in after it without a copy.
    fn write(&self, writer: &mut ConnWriter<'_>) -> io::Result<()> {
        if self.body.is_empty() {
            return writer.write_binary(&self.head);
        }
        let out = LinkBuffer::new();
        let mut linking = out.writer();
        linking.write_binary(&self.head);
        for piece in &self.body {
            linking.write_direct(piece.clone());
        }
        linking.flush();
        drop(linking);
        writer.append(out)
    }
}

enum Phase {
    Head,
    Body {
        request: Request,
        decoder: BodyDecoder,
        body: BodyBuf,
        deadline: Instant,
    },
}

/// A connection's parser state, between calls of its inline handler.
struct State {
    phase: Phase,
    heads: HeadParser,
}

impl State {
    fn new() -> State {
        State {
            phase: Phase::Head,
            heads: HeadParser::new(),
        }
    }

    /// Answers every request the input holds. `Err(WouldBlock)` waits for more input, or for
    /// the output to drain below its cap (`ready`, asked before each request is taken, so a
    /// client that pipelines without reading stops being served rather than growing the
    /// queue); other errors close the connection once the queued replies went out.
    fn serve(
        &mut self,
        reader: &mut ConnReader<'_>,
        writer: &mut ConnWriter<'_>,
        config: Config,
    ) -> io::Result<()> {
        loop {
            match &mut self.phase {
                Phase::Head => {
                    if reader.is_empty() {
                        return Ok(()); // between requests: no partial frame, no clock
                    }
                    writer.ready()?;
                    let head = match self.heads.parse(reader) {
                        Ok(Parsed::Complete(head)) => head,
                        Ok(Parsed::Incomplete(need)) => {
                            // WouldBlock, unless more arrived meanwhile.
                            reader.fill(need)?;
                            continue;
                        }
                        Err(e) => return refuse(e, Version::Http11, writer),
                    };
                    let request = Request::new(&head);
                    if head.body() == BodyKind::Empty {
                        reader.skip(head.len())?;
                        Reply::new(request, BodyBuf::new()).send(writer)?;
                        continue;
                    }
                    let decoder = match BodyDecoder::new(head.body(), config.body_cap) {
                        Ok(decoder) => decoder,
                        Err(e) => return refuse(e, head.version(), writer),
                    };
                    reader.skip(head.len())?;
                    if head.expect_continue() && reader.is_empty() {
                        writer.write_binary(CONTINUE)?;
                    }
                    let body = if request.route == Route::Echo {
                        BodyBuf::new()
                    } else {
                        BodyBuf::discarding()
                    };
                    self.phase = Phase::Body {
                        request,
                        decoder,
                        body,
                        deadline: Instant::now() + config.read_timeout,
                    };
                }
                Phase::Body {
                    request,
                    decoder,
                    body,
                    deadline,
                } => {
                    // A body trickled in never waits long enough for the library's partial-
                    // frame timeout, which restarts whenever input is consumed: this bounds it.
                    if Instant::now() > *deadline {
                        let version = request.version;
                        let _ = Reply::error(StatusCode::REQUEST_TIMEOUT, version).write(writer);
                        return Err(io::Error::new(ErrorKind::TimedOut, "request body too slow"));
                    }
                    match decoder.decode(reader, body) {
                        Ok(Parsed::Complete(())) => {}
                        Ok(Parsed::Incomplete(need)) => {
                            reader.fill(need)?;
                            continue;
                        }
                        Err(e) => {
                            let version = request.version;
                            return refuse(e, version, writer);
                        }
                    }
                    let request = *request;
                    let body = std::mem::take(body);
                    self.phase = Phase::Head;
                    Reply::new(request, body).send(writer)?;
                }
            }
        }
    }
}

/// Answers an unservable request with its error status, then closes.
fn refuse(e: HttpError, version: Version, writer: &mut ConnWriter<'_>) -> io::Result<()> {
    let _ = Reply::error(e.status(), version).write(writer);
    Err(e.into())
}

/// The handler's way to close after the reply (`Connection: close`, HTTP/1.0).
fn closing() -> io::Error {
    io::Error::new(ErrorKind::ConnectionAborted, "closing after the reply")
}

fn on_request(state: &Mutex<State>, conn: &Connection, config: Config) -> io::Result<()> {
    let mut state = state
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let mut reader = conn.reader();
    let mut writer = conn.writer();
    let served = state.serve(&mut reader, &mut writer, config);
    // One send for all the replies of this input batch, before waiting for more too.
    writer.flush()?;
    served
}

fn main() -> io::Result<()> {
    let args = Args::parse();
    let config = Config {
        body_cap: args.body_cap,
        read_timeout: args.read_timeout,
    };
    let mut builder = EventLoop::builder()
        .inline_handlers()
        .read_timeout(args.read_timeout)
        .write_timeout(args.idle_timeout)
        .idle_timeout(args.idle_timeout)
        .on_prepare(|_| Mutex::new(State::new()))
        .on_request(move |state, conn| on_request(state, conn, config));
    if let Some(loops) = args.loops {
        builder = builder.num_loops(loops.get());
    }
    let server = Arc::new(builder.build()?);
    let listener = Listener::bind_tcp(args.addr.as_str())?;
    println!("listening on {}", listener.local_addr());

    let mut signals = Signals::new([SIGINT, SIGTERM])?;
    let stopper = server.clone();
    std::thread::spawn(move || {
        if signals.forever().next().is_some() {
            let _ = stopper.shutdown(Instant::now() + Duration::from_secs(5));
        }
    });
    server.serve(listener)
}
