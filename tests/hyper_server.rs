//! hyper 1.x on netpoll (feature `hyper`): a hyper HTTP/1.1 server on netpoll tasks, over real
//! loopback sockets, answering a raw test client on `std::net::TcpStream` (keep-alive, a POST
//! body echoed back, chunked bodies both ways, a malformed request → 400 from hyper,
//! `Connection: close`, the header-read timeout on netpoll's timer); hyper's client over
//! netpoll against it (TCP and Unix sockets); and the two examples run as a user runs them.
#![cfg(feature = "hyper")]

mod common;

use std::convert::Infallible;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::channel;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use common::example::build_example;
use common::{pattern, LIMIT};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Bytes, Frame, Incoming};
use hyper::rt::Executor as _;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use netpoll::net;

type Body = BoxBody<Bytes, hyper::Error>;

/// The test service: `/` says hello, `POST /echo` returns the request body (collected, so the
/// response has a Content-Length), `/chunked` streams a body of unknown length (chunked).
async fn route(req: Request<Incoming>) -> Result<Response<Body>, hyper::Error> {
    let full = |b: Bytes| {
        Full::new(b)
            .map_err(|never: Infallible| match never {})
            .boxed()
    };
    Ok(match (req.method().as_str(), req.uri().path()) {
        ("POST", "/echo") => {
            let body = req.into_body().collect().await?.to_bytes();
            Response::new(full(body))
        }
        ("GET", "/chunked") => {
            let frames = ["hello ", "chunked ", "world"]
                .map(|s| Ok::<_, hyper::Error>(Frame::data(Bytes::from_static(s.as_bytes()))));
            Response::new(StreamBody::new(futures::stream::iter(frames)).boxed())
        }
        _ => Response::new(full(Bytes::from_static(b"Hello, World!"))),
    })
}

/// Serves one connection; `open` counts the connections being served.
async fn serve_conn<I>(io: I, open: Arc<AtomicUsize>, header_timeout: Option<Duration>)
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    open.fetch_add(1, Ordering::SeqCst);
    let mut builder = http1::Builder::new();
    builder.timer(netpoll::hyper::Timer);
    if let Some(timeout) = header_timeout {
        builder.header_read_timeout(timeout);
    }
    let _ = builder.serve_connection(io, service_fn(route)).await;
    open.fetch_sub(1, Ordering::SeqCst);
}

/// A hyper server on netpoll tasks: an accept loop task, a task per connection.
struct Server {
    addr: SocketAddr,
    listener: Arc<net::TcpListener>,
    open: Arc<AtomicUsize>,
    accept: Option<netpoll::task::JoinHandle<io::Result<()>>>,
}

impl Server {
    fn start() -> Server {
        Server::with_header_timeout(None)
    }

    fn with_header_timeout(header_timeout: Option<Duration>) -> Server {
        let listener = Arc::new(net::listen_tcp("tcp", "127.0.0.1:0").unwrap());
        let open = Arc::new(AtomicUsize::new(0));
        let accept = {
            let (listener, open) = (listener.clone(), open.clone());
            netpoll::spawn(async move {
                loop {
                    let conn = match listener.accept_async().await {
                        Ok((conn, _)) => conn,
                        Err(e) if net::is_closed(&e) => return Ok(()),
                        Err(e) => return Err(e),
                    };
                    netpoll::spawn(serve_conn(conn, open.clone(), header_timeout));
                }
            })
        };
        Server {
            addr: listener.local_addr(),
            listener,
            open,
            accept: Some(accept),
        }
    }

    fn connect(&self) -> TcpStream {
        let conn = TcpStream::connect(self.addr).unwrap();
        conn.set_read_timeout(Some(LIMIT)).unwrap();
        conn.set_write_timeout(Some(LIMIT)).unwrap();
        conn
    }

    /// Waits (bounded) until no connection is being served.
    fn wait_idle(&self) {
        let give_up = Instant::now() + LIMIT;
        while self.open.load(Ordering::SeqCst) != 0 {
            assert!(Instant::now() < give_up, "connections still served");
            std::thread::yield_now();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.listener.close();
        if let Some(accept) = self.accept.take() {
            let done = netpoll::block_on(netpoll::time::timeout(LIMIT, accept));
            if !std::thread::panicking() {
                done.expect("the accept loop did not end")
                    .expect("the accept task failed")
                    .expect("the accept loop failed");
            }
        }
    }
}

/// A response as the raw client read it.
#[derive(Debug)]
struct RawResponse {
    status: u16,
    /// Lower-cased names.
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl RawResponse {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Reads one response: status line, headers, then a Content-Length or chunked body.
fn read_response(reader: &mut BufReader<TcpStream>) -> RawResponse {
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    assert!(line.starts_with("HTTP/1.1 "), "status line {line:?}");
    let status = line[9..12].parse().unwrap();
    let mut headers = Vec::new();
    loop {
        line.clear();
        reader.read_line(&mut line).unwrap();
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        let (name, value) = l.split_once(':').expect(l);
        headers.push((name.to_ascii_lowercase(), value.trim().to_string()));
    }
    let mut response = RawResponse {
        status,
        headers,
        body: Vec::new(),
    };
    if let Some(len) = response.header("content-length") {
        let mut body = vec![0u8; len.parse().unwrap()];
        reader.read_exact(&mut body).unwrap();
        response.body = body;
    } else if response.header("transfer-encoding") == Some("chunked") {
        loop {
            line.clear();
            reader.read_line(&mut line).unwrap();
            let size = usize::from_str_radix(line.trim_end(), 16).expect(&line);
            let mut chunk = vec![0u8; size + 2];
            reader.read_exact(&mut chunk).unwrap();
            assert_eq!(&chunk[size..], b"\r\n");
            if size == 0 {
                break;
            }
            response.body.extend_from_slice(&chunk[..size]);
        }
    }
    response
}

/// True once the server closed the connection (end of stream, or a reset after it closed).
fn closed_by_server(reader: &mut BufReader<TcpStream>) -> bool {
    let mut rest = Vec::new();
    match reader.read_to_end(&mut rest) {
        Ok(_) => rest.is_empty(),
        Err(e) => e.kind() == io::ErrorKind::ConnectionReset,
    }
}

#[test]
fn keep_alive_serves_many_requests_on_one_connection() {
    let server = Server::start();
    let conn = server.connect();
    let mut writer = conn.try_clone().unwrap();
    let mut reader = BufReader::new(conn);
    for i in 0..5 {
        write!(writer, "GET /{i} HTTP/1.1\r\nHost: test\r\n\r\n").unwrap();
        let response = read_response(&mut reader);
        assert_eq!(response.status, 200);
        assert_eq!(response.body, b"Hello, World!");
        assert_eq!(response.header("connection"), None, "kept alive");
    }
    // Pipelined: three requests in one write, three responses in order.
    writer
        .write_all(
            b"GET / HTTP/1.1\r\nHost: t\r\n\r\n\
              POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc\
              GET / HTTP/1.1\r\nHost: t\r\n\r\n",
        )
        .unwrap();
    let bodies: Vec<Vec<u8>> = (0..3).map(|_| read_response(&mut reader).body).collect();
    assert_eq!(bodies, [&b"Hello, World!"[..], b"abc", b"Hello, World!"]);
    assert_eq!(
        server.open.load(Ordering::SeqCst),
        1,
        "one connection throughout"
    );
    drop((reader, writer));
    server.wait_idle();
}

#[test]
fn post_body_is_echoed_with_content_length() {
    let server = Server::start();
    let conn = server.connect();
    let mut writer = conn.try_clone().unwrap();
    let mut reader = BufReader::new(conn);
    writer
        .write_all(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 11\r\n\r\nhello world")
        .unwrap();
    let response = read_response(&mut reader);
    assert_eq!(response.status, 200);
    assert_eq!(response.header("content-length"), Some("11"));
    assert_eq!(response.body, b"hello world");

    // A body much larger than hyper's first read buffer: many reads straight into its buffer
    // as it grows, every byte checked. Written from a thread, as the echo comes back whole.
    let big = pattern(7, 3 << 20);
    let sent = big.clone();
    let send = std::thread::spawn(move || {
        write!(
            writer,
            "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n",
            sent.len()
        )
        .unwrap();
        writer.write_all(&sent).unwrap();
        writer
    });
    let response = read_response(&mut reader);
    let _writer = send.join().unwrap();
    assert_eq!(response.status, 200);
    assert_eq!(response.header("content-length"), Some("3145728"));
    assert!(response.body == big, "the echoed body differs");
}

#[test]
fn chunked_request_and_response_bodies() {
    let server = Server::start();
    let conn = server.connect();
    let mut writer = conn.try_clone().unwrap();
    let mut reader = BufReader::new(conn);
    writer
        .write_all(
            b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n\
              5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
        )
        .unwrap();
    let response = read_response(&mut reader);
    assert_eq!(response.status, 200);
    assert_eq!(response.body, b"hello world");

    writer
        .write_all(b"GET /chunked HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let response = read_response(&mut reader);
    assert_eq!(response.status, 200);
    assert_eq!(response.header("transfer-encoding"), Some("chunked"));
    assert_eq!(response.header("content-length"), None);
    assert_eq!(response.body, b"hello chunked world");
}

#[test]
fn malformed_request_line_gets_400_from_hyper_and_a_close() {
    let server = Server::start();
    let conn = server.connect();
    let mut writer = conn.try_clone().unwrap();
    let mut reader = BufReader::new(conn);
    // '(' is not a token character: the method cannot be parsed.
    writer
        .write_all(b"GE(T / HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let response = read_response(&mut reader);
    assert_eq!(response.status, 400);
    assert!(closed_by_server(&mut reader), "hyper closes after a 400");
    server.wait_idle();
}

#[test]
fn connection_close_is_honoured() {
    let server = Server::start();
    let conn = server.connect();
    let mut writer = conn.try_clone().unwrap();
    let mut reader = BufReader::new(conn);
    writer
        .write_all(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .unwrap();
    let response = read_response(&mut reader);
    assert_eq!(response.status, 200);
    assert_eq!(response.body, b"Hello, World!");
    assert_eq!(response.header("connection"), Some("close"));
    assert!(
        closed_by_server(&mut reader),
        "the server closes after the response"
    );
    server.wait_idle();

    // A client that goes away between requests: its connection task ends too.
    let mut conn = server.connect();
    conn.write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    assert_eq!(read_response(&mut reader).status, 200);
    drop((conn, reader));
    server.wait_idle();
}

/// hyper's header-read timeout runs on the netpoll `Timer`: a client that sends half a
/// request head is cut off after it.
#[test]
fn header_read_timeout_fires_on_the_netpoll_timer() {
    let server = Server::with_header_timeout(Some(Duration::from_millis(200)));
    let conn = server.connect();
    let mut writer = conn.try_clone().unwrap();
    let mut reader = BufReader::new(conn);
    let start = Instant::now();
    writer.write_all(b"GET / HTTP/1.1\r\nHost: t\r\n").unwrap();
    // hyper answers 408 Request Timeout (or just closes), then closes.
    let mut rest = Vec::new();
    let _ = reader.read_to_end(&mut rest);
    let took = start.elapsed();
    assert!(took >= Duration::from_millis(150), "cut off after {took:?}");
    assert!(took < LIMIT, "{took:?}");
    let text = String::from_utf8_lossy(&rest);
    assert!(
        rest.is_empty() || text.starts_with("HTTP/1.1 408"),
        "{text}"
    );
    server.wait_idle();
}

/// What the client example does: hyper's `client::conn::http1` over a `net::Dialer`
/// connection, in a netpoll task, its connection task spawned by the netpoll executor.
async fn client_session<I>(
    io: I,
) -> Result<Vec<(u16, Vec<u8>)>, Box<dyn std::error::Error + Send + Sync>>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(io).await?;
    netpoll::hyper::Executor.execute(async move {
        let _ = connection.await;
    });
    let mut got = Vec::new();
    let requests = [
        Request::get("/").body(Full::new(Bytes::new()))?,
        Request::post("/echo").body(Full::new(Bytes::from(pattern(3, 100_000))))?,
        Request::get("/chunked").body(Full::new(Bytes::new()))?,
    ];
    for request in requests {
        sender.ready().await?;
        let response = sender.send_request(request).await?;
        let status = response.status().as_u16();
        let body = response.into_body().collect().await?.to_bytes().to_vec();
        got.push((status, body));
    }
    Ok(got)
}

fn check_session(got: Vec<(u16, Vec<u8>)>) {
    assert_eq!(got.len(), 3);
    assert_eq!(got[0], (200, b"Hello, World!".to_vec()));
    assert_eq!(got[1].0, 200);
    assert!(got[1].1 == pattern(3, 100_000), "the echoed body differs");
    assert_eq!(got[2], (200, b"hello chunked world".to_vec()));
}

#[test]
fn hyper_client_over_netpoll_talks_to_the_netpoll_server() {
    let server = Server::start();
    let addr = server.addr;
    let session = netpoll::spawn(async move {
        let conn = net::Dialer::new()
            .timeout(LIMIT)
            .dial_tcp_async("tcp", addr)
            .await?;
        client_session(conn).await
    });
    let got = netpoll::block_on(netpoll::time::timeout(LIMIT, session))
        .expect("the client session did not finish")
        .unwrap()
        .unwrap();
    check_session(got);
    server.wait_idle();
}

#[test]
fn hyper_over_unix_sockets_both_ways() {
    let dir = std::env::temp_dir().join(format!("netpoll-hyper-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("http.sock");
    let _ = std::fs::remove_file(&path);
    let listener = Arc::new(net::listen_unix(&path).unwrap());
    let open = Arc::new(AtomicUsize::new(0));
    let server = {
        let (listener, open) = (listener.clone(), open.clone());
        netpoll::spawn(async move {
            let (conn, _) = listener.accept_async().await?;
            serve_conn(conn, open, None).await;
            Ok::<_, io::Error>(())
        })
    };
    let conn = net::dial_unix(&path).unwrap();
    let got = netpoll::block_on(netpoll::time::timeout(
        LIMIT,
        netpoll::spawn(client_session(conn)),
    ))
    .expect("the client session did not finish")
    .unwrap()
    .unwrap();
    check_session(got);
    // The client's sender and connection are gone: the server's connection ends.
    netpoll::block_on(netpoll::time::timeout(LIMIT, server))
        .expect("the server connection did not end")
        .unwrap()
        .unwrap();
    let _ = listener.close();
    let _ = std::fs::remove_dir_all(&dir);
}

fn examples() -> &'static (PathBuf, PathBuf) {
    static BUILT: OnceLock<(PathBuf, PathBuf)> = OnceLock::new();
    BUILT.get_or_init(|| (build_example("hello_hyper"), build_example("hyper_client")))
}

/// `hello_hyper` serves `hyper_client` and a raw client, then exits 0 on SIGTERM.
#[test]
fn the_hyper_examples_serve_each_other_and_stop_on_sigterm() {
    let (server_exe, client_exe) = examples();
    let mut server = Command::new(server_exe)
        .args(["--addr", "127.0.0.1:0", "--loops", "2"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = server.id() as libc::pid_t;
    let mut lines = BufReader::new(server.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    let addr = first
        .strip_prefix("listening on ")
        .expect(&first)
        .to_string();

    let client = Command::new(client_exe)
        .args(["--addr", &addr, "--path", "/x", "--requests", "3"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let client_pid = client.id() as libc::pid_t;
    let (tx, rx) = channel();
    std::thread::spawn(move || tx.send(client.wait_with_output()).unwrap());
    let Ok(output) = rx.recv_timeout(LIMIT) else {
        // SAFETY: killing the children we started, which did not finish in time.
        unsafe {
            libc::kill(client_pid, libc::SIGKILL);
            libc::kill(pid, libc::SIGKILL);
        }
        panic!("hyper_client did not exit");
    };
    let output = output.unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{}\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        stdout.matches("HTTP/1.1 200 OK\nHello, World!\n").count(),
        3,
        "{stdout}"
    );

    // An idle keep-alive connection open at the signal is closed by the graceful shutdown.
    let mut idle = TcpStream::connect(&addr).unwrap();
    idle.set_read_timeout(Some(LIMIT)).unwrap();
    idle.write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let mut reader = BufReader::new(idle.try_clone().unwrap());
    assert_eq!(read_response(&mut reader).status, 200);

    // SAFETY: sending a signal to the child we started.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let (tx, rx) = channel();
    std::thread::spawn(move || tx.send(server.wait()).unwrap());
    let Ok(status) = rx.recv_timeout(LIMIT) else {
        // SAFETY: killing the child we started, which did not stop in time.
        unsafe { libc::kill(pid, libc::SIGKILL) };
        panic!("hello_hyper did not stop after SIGTERM");
    };
    let status = status.unwrap();
    assert!(status.success(), "{status}");
    assert!(closed_by_server(&mut reader));
}

#[test]
fn hello_hyper_help_prints_usage() {
    let output = Command::new(&examples().0).arg("--help").output().unwrap();
    assert!(output.status.success());
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("--addr <HOST:PORT>"), "{stdout}");
    assert!(stdout.contains("--loops <N>"), "{stdout}");
}
