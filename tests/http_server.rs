//! The HTTP example (`examples/http.rs`) over real loopback sockets: keep-alive, pipelining,
//! HTTP/1.0, `Connection: close`, bodies, `Expect: 100-continue`, the error statuses, the read
//! timeout against a slow client, and SIGTERM.

mod common;

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::channel;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::example::build_example;
use common::LIMIT;

fn example() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| build_example("http")).clone()
}

/// The example on a free port; killed on drop if still running.
struct Server {
    child: Child,
    addr: String,
}

impl Server {
    fn start(args: &[&str]) -> Server {
        let mut child = Command::new(example())
            .args(["--addr", "127.0.0.1:0", "--loops", "2"])
            .args(args)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut first = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut first)
            .unwrap();
        let addr = first
            .trim_end()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("first line: {first:?}"))
            .to_string();
        Server { child, addr }
    }

    fn connect(&self) -> Client {
        let stream = TcpStream::connect(&self.addr).unwrap();
        stream.set_read_timeout(Some(LIMIT)).unwrap();
        stream.set_write_timeout(Some(LIMIT)).unwrap();
        stream.set_nodelay(true).unwrap();
        Client {
            reader: BufReader::new(stream.try_clone().unwrap()),
            stream,
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Client {
    stream: TcpStream,
    reader: BufReader<TcpStream>,
}

#[derive(Debug)]
struct Response {
    version: String,
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Response {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

impl Client {
    fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).unwrap();
    }

    fn line(&mut self) -> String {
        let mut line = String::new();
        self.reader.read_line(&mut line).unwrap();
        assert!(line.ends_with("\r\n"), "line {line:?}");
        line.truncate(line.len() - 2);
        line
    }

    /// Reads one response; a HEAD response has no body whatever its Content-Length.
    fn response_to(&mut self, head: bool) -> Response {
        let status_line = self.line();
        let mut parts = status_line.splitn(3, ' ');
        let version = parts.next().unwrap().to_string();
        let status = parts
            .next()
            .and_then(|s| s.parse().ok())
            .expect(&status_line);
        let mut headers = Vec::new();
        loop {
            let line = self.line();
            if line.is_empty() {
                break;
            }
            let (name, value) = line.split_once(": ").expect(&line);
            headers.push((name.to_string(), value.to_string()));
        }
        let mut response = Response {
            version,
            status,
            headers,
            body: Vec::new(),
        };
        if !head {
            let length: usize = response
                .header("Content-Length")
                .expect("no Content-Length")
                .parse()
                .unwrap();
            response.body = vec![0; length];
            self.reader.read_exact(&mut response.body).unwrap();
        }
        response
    }

    fn response(&mut self) -> Response {
        self.response_to(false)
    }

    /// The server closed: end of stream (or a reset) with nothing more before it.
    fn expect_closed(&mut self) {
        let mut rest = Vec::new();
        match self.reader.read_to_end(&mut rest) {
            Ok(_) => assert!(rest.is_empty(), "more after the reply: {rest:?}"),
            Err(e) => assert_eq!(e.kind(), ErrorKind::ConnectionReset, "{e}"),
        }
    }

    fn get(&mut self, path: &str) -> Response {
        self.send(format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes());
        self.response()
    }
}

const HELLO: &[u8] = b"Hello, World!";

#[test]
fn plaintext_and_json_as_techempower_specifies() {
    let server = Server::start(&[]);
    let mut client = server.connect();
    let plain = client.get("/plaintext");
    assert_eq!((plain.version.as_str(), plain.status), ("HTTP/1.1", 200));
    assert_eq!(plain.body, HELLO);
    assert_eq!(plain.header("Content-Type"), Some("text/plain"));
    assert_eq!(plain.header("Content-Length"), Some("13"));
    assert_eq!(plain.header("Server"), Some("netpoll"));
    let date = plain.header("Date").expect("no Date");
    let when = httpdate::parse_http_date(date).unwrap();
    let skew = std::time::SystemTime::now()
        .duration_since(when)
        .unwrap_or_default();
    assert!(skew < Duration::from_secs(5), "{date}");
    let json = client.get("/json?x=1");
    assert_eq!(json.status, 200);
    assert_eq!(json.body, br#"{"message":"Hello, World!"}"#);
    assert_eq!(json.header("Content-Type"), Some("application/json"));
    // HEAD: the same head, no body.
    client.send(b"HEAD /plaintext HTTP/1.1\r\nHost: t\r\n\r\n");
    let head = client.response_to(true);
    assert_eq!(
        (head.status, head.header("Content-Length")),
        (200, Some("13"))
    );
    assert_eq!(client.get("/plaintext").body, HELLO, "HEAD sent a body");
}

#[test]
fn keep_alive_over_10000_requests() {
    let server = Server::start(&[]);
    let mut client = server.connect();
    for i in 0..10_000 {
        let response = client.get(if i % 2 == 0 { "/plaintext" } else { "/json" });
        assert_eq!(response.status, 200, "request {i}");
        assert_eq!(response.header("Connection"), None, "request {i}");
    }
}

#[test]
fn a_thousand_pipelined_requests_are_answered_in_order() {
    let server = Server::start(&[]);
    let mut client = server.connect();
    let mut batch = Vec::new();
    for i in 0..1000 {
        match i % 3 {
            0 => batch.extend_from_slice(b"GET /plaintext HTTP/1.1\r\nHost: t\r\n\r\n"),
            1 => batch.extend_from_slice(b"GET /json HTTP/1.1\r\nHost: t\r\n\r\n"),
            _ => batch.extend_from_slice(
                format!("POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\n\r\n{i:04}")
                    .as_bytes(),
            ),
        }
    }
    client.send(&batch);
    for i in 0..1000 {
        let response = client.response();
        assert_eq!(response.status, 200, "reply {i}");
        match i % 3 {
            0 => assert_eq!(response.body, HELLO, "reply {i}"),
            1 => assert!(response.body.starts_with(b"{\"message\""), "reply {i}"),
            _ => assert_eq!(response.body, format!("{i:04}").as_bytes(), "reply {i}"),
        }
    }
}

#[test]
fn http_1_0_closes_unless_asked_to_keep_alive() {
    let server = Server::start(&[]);
    let mut client = server.connect();
    client.send(b"GET /plaintext HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    let kept = client.response();
    assert_eq!((kept.version.as_str(), kept.status), ("HTTP/1.0", 200));
    assert_eq!(kept.header("Connection"), Some("keep-alive"));
    client.send(b"GET /json HTTP/1.0\r\n\r\n");
    let last = client.response();
    assert_eq!((last.version.as_str(), last.status), ("HTTP/1.0", 200));
    assert_eq!(last.header("Connection"), Some("close"));
    client.expect_closed();
}

#[test]
fn connection_close_is_honoured_after_the_reply() {
    let server = Server::start(&[]);
    let mut client = server.connect();
    // The request after the closing one is not answered.
    client.send(
        b"GET /plaintext HTTP/1.1\r\nHost: t\r\n\r\nGET /json HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\nGET /plaintext HTTP/1.1\r\nHost: t\r\n\r\n",
    );
    assert_eq!(client.response().body, HELLO);
    let closing = client.response();
    assert_eq!(closing.status, 200);
    assert_eq!(closing.header("Connection"), Some("close"));
    client.expect_closed();
}

#[test]
fn echo_takes_content_length_and_chunked_bodies() {
    let server = Server::start(&[]);
    let mut client = server.connect();
    // Larger than one piece, sent in parts.
    let body: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    client.send(
        format!(
            "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    );
    for part in body.chunks(30_000) {
        client.send(part);
    }
    let echoed = client.response();
    assert_eq!(echoed.status, 200);
    assert!(echoed.body == body, "echoed body differs");
    // Chunked, with extensions and trailers, split mid-line.
    client
        .send(b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5;a=b\r\nhel");
    client.send(b"lo\r\n7\r\n, world\r\n0\r\nX-Trailer: 1\r\n");
    client.send(b"\r\n");
    let echoed = client.response();
    assert_eq!(
        (echoed.status, &echoed.body[..]),
        (200, &b"hello, world"[..])
    );
    // A body on a route that ignores it is read and dropped; the connection goes on.
    client.send(b"POST /nowhere HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc");
    assert_eq!(client.response().status, 404);
    assert_eq!(client.get("/plaintext").body, HELLO);
}

#[test]
fn expect_100_continue() {
    let server = Server::start(&["--body-cap", "1000"]);
    let mut client = server.connect();
    client.send(
        b"POST /echo HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n",
    );
    // The interim reply comes before the body was sent.
    assert_eq!(client.line(), "HTTP/1.1 100 Continue");
    assert_eq!(client.line(), "");
    client.send(b"hello");
    let echoed = client.response();
    assert_eq!((echoed.status, &echoed.body[..]), (200, &b"hello"[..]));
    // Over the cap: 413 instead of 100, then close.
    client.send(
        b"POST /echo HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 1001\r\n\r\n",
    );
    let refused = client.response();
    assert_eq!(refused.status, 413);
    assert_eq!(refused.header("Connection"), Some("close"));
    client.expect_closed();
}

/// Sends `request` on a new connection; expects `status` and, if `closes`, the close after it
/// (otherwise a next request on the same connection is served).
fn expect_status(server: &Server, request: &[u8], status: u16, closes: bool) -> Response {
    let mut client = server.connect();
    client.send(request);
    let response = client.response();
    assert_eq!(
        response.status,
        status,
        "{}",
        String::from_utf8_lossy(&request[..request.len().min(80)])
    );
    if closes {
        assert_eq!(response.header("Connection"), Some("close"));
        client.expect_closed();
    } else {
        assert_eq!(client.get("/plaintext").body, HELLO);
    }
    response
}

#[test]
fn error_statuses() {
    let server = Server::start(&["--body-cap", "1000"]);
    expect_status(
        &server,
        b"GET /plaintext HTTP/1.1\r\nHost: t\r\nBad Header\r\n\r\n",
        400,
        true,
    );
    expect_status(&server, b"GET\x01 / HTTP/1.1\r\n", 400, true);
    expect_status(&server, b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", 400, true);
    expect_status(
        &server,
        b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 3x\r\n\r\n",
        400,
        true,
    );
    expect_status(
        &server,
        b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        400,
        true,
    );
    expect_status(
        &server,
        b"GET /nothing HTTP/1.1\r\nHost: t\r\n\r\n",
        404,
        false,
    );
    let not_allowed = expect_status(
        &server,
        b"DELETE /plaintext HTTP/1.1\r\nHost: t\r\n\r\n",
        405,
        false,
    );
    assert_eq!(not_allowed.header("Allow"), Some("GET, HEAD"));
    let not_allowed = expect_status(
        &server,
        b"GET /echo HTTP/1.1\r\nHost: t\r\n\r\n",
        405,
        false,
    );
    assert_eq!(not_allowed.header("Allow"), Some("POST"));
    expect_status(
        &server,
        b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 1001\r\n\r\n",
        413,
        true,
    );
    let mut over = b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    over.extend_from_slice(b"3e9\r\n");
    expect_status(&server, &over, 413, true);
    // Over the cap in sum, not in one chunk.
    let mut over = b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    over.extend_from_slice(b"1f4\r\n");
    over.extend_from_slice(&[b'x'; 500]);
    over.extend_from_slice(b"\r\n1f5\r\n");
    expect_status(&server, &over, 413, true);
    // A head of exactly 64 KiB with no end yet: 431 (nothing more is sent, so nothing is left
    // unread for the close to reset).
    let mut big = b"GET /plaintext HTTP/1.1\r\nHost: t\r\nX-Big: ".to_vec();
    big.resize(64 * 1024, b'a');
    expect_status(&server, &big, 431, true);
    // Just under the limit is served.
    let mut fits = b"GET /plaintext HTTP/1.1\r\nHost: t\r\nX-Big: ".to_vec();
    fits.resize(64 * 1024 - 4, b'a');
    fits.extend_from_slice(b"\r\n\r\n");
    expect_status(&server, &fits, 200, false);
}

/// A client that never finishes its head is closed by the read timeout, while a normal client
/// on the same server stays fast; the same for a body trickled in.
#[test]
fn a_slow_client_is_closed_by_the_read_timeout() {
    let server = Server::start(&["--read-timeout", "0.5"]);
    // A head never finished, and a body far from finished.
    let slow_head: &[u8] = b"GET /plaintext HTTP/1.1\r\nHost: t\r\n";
    let slow_body: &[u8] = b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 1000000\r\n\r\n";
    for start in [slow_head, slow_body] {
        let mut slow = server.connect();
        let mut watcher = BufReader::new(slow.stream.try_clone().unwrap());
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let started = Instant::now();
        let trickler = {
            let stop = stop.clone();
            std::thread::spawn(move || trickle(&mut slow, start, &stop))
        };
        // Meanwhile a normal client's requests are answered at once.
        let mut normal = server.connect();
        for i in 0..20 {
            let sent = Instant::now();
            assert_eq!(normal.get("/plaintext").body, HELLO);
            assert!(
                sent.elapsed() < Duration::from_millis(300),
                "request {i}: {:?}",
                sent.elapsed()
            );
        }
        // The slow one is closed (a body too slow gets 408 first) about when the timeout says.
        let mut rest = Vec::new();
        let _ = watcher.read_to_end(&mut rest);
        let waited = started.elapsed();
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        trickler.join().unwrap();
        let rest = String::from_utf8_lossy(&rest);
        assert!(
            rest.is_empty() || rest.starts_with("HTTP/1.1 408 "),
            "{rest}"
        );
        assert!(
            waited >= Duration::from_millis(450),
            "closed after {waited:?}"
        );
        assert!(waited < Duration::from_secs(3), "closed after {waited:?}");
        // The normal client is still served.
        assert_eq!(normal.get("/json").status, 200);
    }
}

/// Sends `start`, then one more byte every 50 ms (pacing, not synchronisation) until `stop` or
/// the server closes.
fn trickle(client: &mut Client, start: &[u8], stop: &std::sync::atomic::AtomicBool) {
    client.send(start);
    while !stop.load(std::sync::atomic::Ordering::SeqCst) {
        if client.stream.write_all(b"X").is_err() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn sigterm_stops_it_with_exit_status_0() {
    let mut server = Server::start(&[]);
    let mut client = server.connect();
    assert_eq!(client.get("/plaintext").body, HELLO);
    // SAFETY: sending a signal to the child we started.
    assert_eq!(
        unsafe { libc::kill(server.child.id() as libc::pid_t, libc::SIGTERM) },
        0
    );
    let (tx, rx) = channel();
    let mut child = std::mem::replace(&mut server.child, Command::new("true").spawn().unwrap());
    std::thread::spawn(move || tx.send(child.wait()).unwrap());
    let status = rx
        .recv_timeout(LIMIT)
        .expect("the example did not stop after SIGTERM")
        .unwrap();
    assert!(status.success(), "{status}");
    client.expect_closed();
}
