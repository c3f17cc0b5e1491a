//! examples/resp.rs as a Redis client sees it: every command and error reply, pipelining,
//! a 64 MiB value, expiry, limits, protocol errors that close only their own connection, a
//! declared-huge bulk that holds no memory and is timed out, and SIGTERM.

mod common;

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::example::{build_example, Running};
use common::LIMIT;

fn example() -> &'static PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| build_example("resp"))
}

fn start(extra: &[&str]) -> Running {
    let mut args = vec!["--addr", "127.0.0.1:0", "--loops", "2"];
    args.extend_from_slice(extra);
    Running::start(example(), &args)
}

#[derive(Debug, PartialEq)]
enum Reply {
    Simple(String),
    Error(String),
    Int(i64),
    Bulk(Option<Vec<u8>>),
    Array(Option<Vec<Reply>>),
}

use Reply::*;

fn ok() -> Reply {
    Simple("OK".into())
}

fn bulk(s: &str) -> Reply {
    Bulk(Some(s.as_bytes().to_vec()))
}

fn err(s: &str) -> Reply {
    Error(s.into())
}

struct Client {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Client {
    fn connect(server: &Running) -> Client {
        let stream = TcpStream::connect(&server.addr).unwrap();
        stream.set_read_timeout(Some(LIMIT)).unwrap();
        stream.set_nodelay(true).unwrap();
        Client {
            writer: stream.try_clone().unwrap(),
            reader: BufReader::new(stream),
        }
    }

    fn send(&mut self, args: &[&[u8]]) {
        self.writer.write_all(&encode(args)).unwrap();
    }

    fn call(&mut self, args: &[&str]) -> Reply {
        let args: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
        self.send(&args);
        self.reply()
    }

    fn reply(&mut self) -> Reply {
        let mut line = Vec::new();
        self.reader.read_until(b'\n', &mut line).unwrap();
        assert!(
            line.ends_with(b"\r\n"),
            "bad reply line {:?}",
            String::from_utf8_lossy(&line)
        );
        let text = String::from_utf8_lossy(&line[1..line.len() - 2]).into_owned();
        match line[0] {
            b'+' => Simple(text),
            b'-' => Error(text),
            b':' => Int(text.parse().unwrap()),
            b'$' if text == "-1" => Bulk(None),
            b'$' => {
                let mut data = vec![0u8; text.parse::<usize>().unwrap() + 2];
                self.reader.read_exact(&mut data).unwrap();
                assert_eq!(&data[data.len() - 2..], b"\r\n");
                data.truncate(data.len() - 2);
                Bulk(Some(data))
            }
            b'*' if text == "-1" => Array(None),
            b'*' => Array(Some(
                (0..text.parse::<usize>().unwrap())
                    .map(|_| self.reply())
                    .collect(),
            )),
            other => panic!("unknown reply type {other}"),
        }
    }

    /// True once the server closed this connection (EOF or reset).
    fn closed(&mut self) -> bool {
        let mut byte = [0u8; 1];
        match self.reader.read(&mut byte) {
            Ok(0) => true,
            Err(e) => e.kind() == ErrorKind::ConnectionReset,
            Ok(_) => false,
        }
    }
}

fn encode(args: &[&[u8]]) -> Vec<u8> {
    let mut frame = format!("*{}\r\n", args.len()).into_bytes();
    for arg in args {
        frame.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        frame.extend_from_slice(arg);
        frame.extend_from_slice(b"\r\n");
    }
    frame
}

#[test]
fn strings_counters_and_keys() {
    let server = start(&[]);
    let mut c = Client::connect(&server);
    assert_eq!(c.call(&["PING"]), Simple("PONG".into()));
    assert_eq!(c.call(&["ping", "hello"]), bulk("hello"));
    assert_eq!(c.call(&["ECHO", "hi there"]), bulk("hi there"));
    assert_eq!(c.call(&["GET", "nothing"]), Bulk(None));
    assert_eq!(c.call(&["SET", "k", "v1"]), ok());
    assert_eq!(c.call(&["GET", "k"]), bulk("v1"));
    assert_eq!(c.call(&["GETSET", "k", "v2"]), bulk("v1"));
    assert_eq!(c.call(&["GETSET", "fresh", "x"]), Bulk(None));
    assert_eq!(c.call(&["SET", "k", "v3", "NX"]), Bulk(None));
    assert_eq!(c.call(&["SET", "new", "n", "NX"]), ok());
    assert_eq!(c.call(&["SET", "absent", "a", "XX"]), Bulk(None));
    assert_eq!(c.call(&["SET", "k", "v3", "XX", "GET"]), bulk("v2"));
    assert_eq!(c.call(&["GET", "k"]), bulk("v3"));
    assert_eq!(c.call(&["EXISTS", "k", "new", "absent", "k"]), Int(3));
    assert_eq!(c.call(&["DEL", "k", "absent", "new"]), Int(2));
    assert_eq!(c.call(&["EXISTS", "k"]), Int(0));

    assert_eq!(c.call(&["INCR", "n"]), Int(1));
    assert_eq!(c.call(&["INCRBY", "n", "41"]), Int(42));
    assert_eq!(c.call(&["DECR", "n"]), Int(41));
    assert_eq!(c.call(&["INCRBY", "n", "-50"]), Int(-9));
    assert_eq!(c.call(&["GET", "n"]), bulk("-9"));
    assert_eq!(c.call(&["SET", "n", "9223372036854775807"]), ok());
    assert_eq!(
        c.call(&["INCR", "n"]),
        err("ERR increment or decrement would overflow")
    );
    assert_eq!(c.call(&["SET", "s", "text"]), ok());
    assert_eq!(
        c.call(&["INCR", "s"]),
        err("ERR value is not an integer or out of range")
    );
    assert_eq!(
        c.call(&["INCRBY", "n", "x"]),
        err("ERR value is not an integer or out of range")
    );

    assert_eq!(c.call(&["MSET", "a", "1", "b", "2"]), ok());
    assert_eq!(
        c.call(&["MGET", "a", "nope", "b"]),
        Array(Some(vec![bulk("1"), Bulk(None), bulk("2")]))
    );
    assert_eq!(c.call(&["DBSIZE"]), Int(5)); // fresh, n, s, a, b
    assert_eq!(c.call(&["FLUSHALL"]), ok());
    assert_eq!(c.call(&["DBSIZE"]), Int(0));
    assert_eq!(c.call(&["SELECT", "0"]), ok());
    assert_eq!(
        c.call(&["SELECT", "1"]),
        err("ERR DB index is out of range")
    );
}

#[test]
fn expiry_and_time_to_live() {
    let server = start(&[]);
    let mut c = Client::connect(&server);
    assert_eq!(c.call(&["SET", "k", "v", "EX", "100"]), ok());
    assert_eq!(c.call(&["TTL", "k"]), Int(100));
    let Int(pttl) = c.call(&["PTTL", "k"]) else {
        panic!()
    };
    assert!((99_000..=100_000).contains(&pttl), "{pttl}");
    assert_eq!(c.call(&["SET", "k", "v2", "KEEPTTL"]), ok());
    assert_eq!(c.call(&["TTL", "k"]), Int(100));
    assert_eq!(c.call(&["SET", "k", "v3"]), ok());
    assert_eq!(c.call(&["TTL", "k"]), Int(-1), "a plain SET clears the TTL");
    assert_eq!(c.call(&["TTL", "missing"]), Int(-2));
    assert_eq!(c.call(&["EXPIRE", "k", "50"]), Int(1));
    assert_eq!(c.call(&["TTL", "k"]), Int(50));
    assert_eq!(c.call(&["EXPIRE", "k", "10", "GT"]), Int(0));
    assert_eq!(c.call(&["EXPIRE", "k", "10", "LT"]), Int(1));
    assert_eq!(c.call(&["EXPIRE", "k", "20", "NX"]), Int(0));
    assert_eq!(c.call(&["EXPIRE", "missing", "20"]), Int(0));
    assert_eq!(c.call(&["INCR", "counter"]), Int(1));
    assert_eq!(c.call(&["PEXPIRE", "counter", "100000"]), Int(1));
    assert_eq!(c.call(&["INCR", "counter"]), Int(2));
    let Int(kept) = c.call(&["PTTL", "counter"]) else {
        panic!()
    };
    assert!(kept > 90_000, "INCR keeps the TTL: {kept}");

    // Short deadlines pass: lazily (GET) and actively (DBSIZE falls without any access).
    assert_eq!(c.call(&["SET", "soon", "v", "PX", "50"]), ok());
    assert_eq!(c.call(&["SET", "later", "v", "PX", "50"]), ok());
    assert_eq!(c.call(&["DBSIZE"]), Int(4));
    let deadline = Instant::now() + LIMIT;
    while c.call(&["DBSIZE"]) != Int(2) {
        assert!(Instant::now() < deadline, "expired keys were never removed");
        std::thread::sleep(Duration::from_millis(20)); // polling the server's own clock
    }
    assert_eq!(c.call(&["GET", "soon"]), Bulk(None));
    assert_eq!(c.call(&["EXPIRE", "k", "0"]), Int(1));
    assert_eq!(
        c.call(&["EXISTS", "k"]),
        Int(0),
        "a deadline in the past deletes"
    );
    assert_eq!(
        c.call(&["SET", "k", "v", "EX", "0"]),
        err("ERR invalid expire time in 'set' command")
    );
    assert_eq!(
        c.call(&["SET", "k", "v", "EX", "x"]),
        err("ERR value is not an integer or out of range")
    );
    assert_eq!(
        c.call(&["SET", "k", "v", "EX", "1", "PX", "1"]),
        err("ERR syntax error")
    );
    assert_eq!(
        c.call(&["SET", "k", "v", "NX", "XX"]),
        err("ERR syntax error")
    );
}

#[test]
fn errors_as_redis_gives_them() {
    let server = start(&[]);
    let mut c = Client::connect(&server);
    assert_eq!(
        c.call(&["NOSUCH", "a", "b"]),
        err("ERR unknown command 'NOSUCH', with args beginning with: 'a' 'b' ")
    );
    assert_eq!(
        c.call(&["GET"]),
        err("ERR wrong number of arguments for 'get' command")
    );
    assert_eq!(
        c.call(&["SET", "k"]),
        err("ERR wrong number of arguments for 'set' command")
    );
    assert_eq!(
        c.call(&["MSET", "a", "1", "b"]),
        err("ERR wrong number of arguments for 'mset' command")
    );
    assert_eq!(
        c.call(&["TTL", "a", "b"]),
        err("ERR wrong number of arguments for 'ttl' command")
    );
    // The connection is still in step after each.
    assert_eq!(c.call(&["PING"]), Simple("PONG".into()));
    // What redis-cli and redis-benchmark ask on connecting.
    assert_eq!(
        c.call(&["CONFIG", "GET", "save"]),
        Array(Some(vec![bulk("save"), bulk("")]))
    );
    assert_eq!(
        c.call(&["CONFIG", "GET", "append*"]),
        Array(Some(vec![bulk("appendonly"), bulk("no")]))
    );
    assert_eq!(c.call(&["CLIENT", "SETNAME", "tester"]), ok());
    assert_eq!(c.call(&["CLIENT", "GETNAME"]), bulk("tester"));
    assert!(matches!(c.call(&["CLIENT", "ID"]), Int(_)));
    assert_eq!(c.call(&["COMMAND", "DOCS"]), Array(Some(vec![])));
    assert!(matches!(c.call(&["COMMAND", "COUNT"]), Int(n) if n > 20));
    // Inline commands, as telnet users type them.
    c.writer
        .write_all(b"SET inline \"a b\"\r\nGET inline\r\n")
        .unwrap();
    assert_eq!(c.reply(), ok());
    assert_eq!(c.reply(), bulk("a b"));
    assert_eq!(c.call(&["QUIT"]), ok());
    assert!(c.closed(), "QUIT closes");
}

/// 1,000 commands in one write: all answered, in order (each batch's replies in one send).
#[test]
fn a_pipeline_of_a_thousand_commands() {
    let server = start(&[]);
    let mut c = Client::connect(&server);
    let mut batch = Vec::new();
    for i in 0..1000 {
        let key = format!("key:{i}");
        batch.extend(encode(&[b"SET", key.as_bytes(), i.to_string().as_bytes()]));
        batch.extend(encode(&[b"INCR", key.as_bytes()]));
    }
    c.writer.write_all(&batch).unwrap();
    for i in 0..1000 {
        assert_eq!(c.reply(), ok());
        assert_eq!(c.reply(), Int(i + 1));
    }
    assert_eq!(c.call(&["DBSIZE"]), Int(1000));
}

/// Commands trickled one byte per write are answered like whole ones.
#[test]
fn a_command_one_byte_at_a_time() {
    let server = start(&[]);
    let mut c = Client::connect(&server);
    for byte in encode(&[b"SET", b"slow", b"value"]) {
        c.writer.write_all(&[byte]).unwrap();
    }
    assert_eq!(c.reply(), ok());
    for byte in b"GET slow\r\n" {
        c.writer.write_all(&[*byte]).unwrap();
    }
    assert_eq!(c.reply(), bulk("value"));
}

#[test]
fn a_64_mib_value_round_trips() {
    let server = start(&[]);
    let mut c = Client::connect(&server);
    let value: Vec<u8> = (0..64u32 << 20).map(|i| (i % 251) as u8).collect();
    let mut writer = c.writer.try_clone().unwrap();
    let frame = encode(&[b"SET", b"big", &value]);
    let sending = std::thread::spawn(move || writer.write_all(&frame).unwrap());
    assert_eq!(c.reply(), ok());
    sending.join().unwrap();
    c.send(&[b"GET", b"big"]);
    assert!(
        c.reply() == Bulk(Some(value)),
        "the value came back changed"
    );
}

/// A malformed frame gets Redis's error and closes that connection only.
#[test]
fn a_protocol_error_closes_only_its_connection() {
    let server = start(&[]);
    let mut bystander = Client::connect(&server);
    assert_eq!(bystander.call(&["SET", "k", "v"]), ok());
    for (garbage, expected) in [
        (
            &b"*1\r\n+PING\r\n"[..],
            "ERR Protocol error: expected '$', got '+'",
        ),
        (b"*x\r\n", "ERR Protocol error: invalid multibulk length"),
        (b"*1\r\n$-3\r\n", "ERR Protocol error: invalid bulk length"),
        (
            b"*1\r\n$600000000\r\n",
            "ERR Protocol error: invalid bulk length",
        ),
        (
            b"SET \"k v\r\n",
            "ERR Protocol error: unbalanced quotes in request",
        ),
    ] {
        let mut c = Client::connect(&server);
        // A command before the garbage in the same write is still answered.
        let mut data = encode(&[b"PING"]);
        data.extend_from_slice(garbage);
        c.writer.write_all(&data).unwrap();
        assert_eq!(c.reply(), Simple("PONG".into()));
        assert_eq!(c.reply(), err(expected));
        assert!(c.closed(), "{expected}: the connection stayed open");
    }
    assert_eq!(bystander.call(&["GET", "k"]), bulk("v"));
}

/// A bulk declared at 512 MiB whose bytes never come holds only what arrived, and the read
/// timeout closes the connection.
#[test]
fn a_declared_huge_bulk_holds_no_memory_and_times_out() {
    let server = start(&["--read-timeout-ms", "500"]);
    let mut c = Client::connect(&server);
    assert_eq!(c.call(&["PING"]), Simple("PONG".into()));
    let before = server.rss_kib();
    let started = Instant::now();
    c.writer
        .write_all(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$536870912\r\n")
        .unwrap();
    c.writer.write_all(&vec![b'x'; 1 << 20]).unwrap();
    assert!(c.closed(), "the incomplete bulk was never timed out");
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(500),
        "closed after {waited:?}"
    );
    let grown = server.rss_kib().saturating_sub(before);
    assert!(
        grown < 64 * 1024,
        "RSS grew by {grown} KiB for 1 MiB received"
    );
    let mut other = Client::connect(&server);
    assert_eq!(other.call(&["PING"]), Simple("PONG".into()));
}

/// The read timeout bounds a command left incomplete, not the quiet between commands.
#[test]
fn the_read_timeout_does_not_close_an_idle_client() {
    let server = start(&["--read-timeout-ms", "300"]);
    let mut c = Client::connect(&server);
    assert_eq!(c.call(&["PING"]), Simple("PONG".into()));
    // Idle for five read timeouts (bounded by the client's own read timeout).
    c.reader
        .get_ref()
        .set_read_timeout(Some(Duration::from_millis(1500)))
        .unwrap();
    let mut byte = [0u8; 1];
    match c.reader.read(&mut byte) {
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
        other => panic!("an idle client was closed or answered: {other:?}"),
    }
    c.reader.get_ref().set_read_timeout(Some(LIMIT)).unwrap();
    assert_eq!(c.call(&["PING"]), Simple("PONG".into()));
}

/// Redis's `timeout`: idle clients are closed.
#[test]
fn idle_clients_are_closed_after_the_timeout() {
    let server = start(&["--timeout", "1"]);
    let mut c = Client::connect(&server);
    assert_eq!(c.call(&["PING"]), Simple("PONG".into()));
    let started = Instant::now();
    assert!(c.closed());
    assert!(started.elapsed() >= Duration::from_millis(900));
}

#[test]
fn sigterm_stops_it_gracefully() {
    let server = start(&[]);
    let mut c = Client::connect(&server);
    assert_eq!(c.call(&["SET", "k", "v"]), ok());
    let status = server.stop(libc::SIGTERM);
    assert!(status.success(), "{status}");
    assert!(c.closed());
}
