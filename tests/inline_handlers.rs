//! Inline handlers run on the poller and cannot wait: their `WouldBlock` (from the reader or the
//! writer) means "call me again when it can progress", never a dropped connection.

mod common;

use std::io::{Read, Write};
use std::net::Shutdown;
use std::time::Duration;

use common::{echo, pattern, TestServer};
use netpoll::EventLoop;

/// Line framing written the pool-mode way (`until(b'\n')?`) works inline: a partial line is
/// not an error, the handler is called again when the rest arrives.
#[test]
fn until_framing_waits_for_the_rest_of_a_line_inline() {
    let server = TestServer::start(
        EventLoop::builder()
            .inline_handlers()
            .on_request(|_, conn| {
                let line = conn.reader().until(b'\n')?;
                let mut writer = conn.writer();
                writer.write_binary(b"> ")?;
                writer.write_direct(line)?;
                writer.flush()
            })
            .build()
            .unwrap(),
    );
    let mut client = server.connect();
    let mut expected = Vec::new();
    // Lines split across writes at every kind of boundary, the round trip proving each part
    // arrived before the next is sent.
    for i in 0..50 {
        let line = format!("line number {i} {}\n", "x".repeat(i * 37));
        let (a, b) = line.as_bytes().split_at(line.len() / 2);
        client.write_all(a).unwrap();
        client.flush().unwrap();
        client.write_all(b).unwrap();
        let mut got = vec![0u8; line.len() + 2];
        client.read_exact(&mut got).unwrap();
        assert_eq!(got, [b"> ", line.as_bytes()].concat());
        expected.push(line);
    }
    // Many lines in one write, then a partial one finished after a round trip of a full line.
    let batch: String = expected.concat();
    client.write_all(batch.as_bytes()).unwrap();
    let mut got = vec![0u8; batch.len() + 2 * expected.len()];
    client.read_exact(&mut got).unwrap();
    client.write_all(b"partial").unwrap();
    client.write_all(b" line\n").unwrap();
    let mut got = vec![0u8; 2 + 13];
    client.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"> partial line\n");
}

/// A frame larger than the input cap still arrives for an inline handler that asks for it.
#[test]
fn an_inline_handler_gets_a_frame_larger_than_the_input_cap() {
    const FRAME: usize = 200 * 1024;
    let server = TestServer::start(
        EventLoop::builder()
            .inline_handlers()
            .input_cap(16 * 1024)
            .on_request(|_, conn| {
                let frame = conn.reader().next(FRAME)?;
                let mut writer = conn.writer();
                writer.write_binary(&(frame.len() as u32).to_be_bytes())?;
                writer.flush()
            })
            .build()
            .unwrap(),
    );
    let mut client = server.connect();
    client.write_all(&pattern(1, FRAME)).unwrap();
    let mut len = [0u8; 4];
    client.read_exact(&mut len).unwrap();
    assert_eq!(u32::from_be_bytes(len) as usize, FRAME);
}

/// A client that reads slowly but steadily gets all 64 MiB of an inline echo: past the output
/// cap the poller keeps sending and pauses input (backpressure), it does not reset.
#[test]
fn a_slow_reader_gets_all_of_a_64_mib_inline_echo() {
    const TOTAL: usize = 64 << 20;
    let server = TestServer::start(
        EventLoop::builder()
            .inline_handlers()
            .on_request(echo)
            .build()
            .unwrap(),
    );
    let client = server.connect();
    let mut writer = client.try_clone().unwrap();
    let sending = std::thread::spawn(move || {
        let data = pattern(9, TOTAL);
        writer.write_all(&data).unwrap();
        writer.shutdown(Shutdown::Write).unwrap();
    });
    let expected = pattern(9, TOTAL);
    let mut reader = client;
    let mut buf = vec![0u8; 64 * 1024];
    let mut at = 0;
    loop {
        let n = reader.read(&mut buf).expect("the echo was reset");
        if n == 0 {
            break;
        }
        assert!(
            buf[..n] == expected[at..at + n],
            "bytes changed at offset {at}"
        );
        at += n;
        // Slow but steady: the pacing is the load being tested, not synchronisation.
        std::thread::sleep(Duration::from_micros(500));
    }
    sending.join().unwrap();
    assert_eq!(at, TOTAL, "bytes lost");
}

/// A handler answering pipelined requests in a loop, several writes per reply, against a peer
/// that reads only after sending them all: `ready()` stops it at the output cap between
/// requests, no reply is ever cut, and every reply arrives in order.
#[test]
fn pipelined_replies_stop_at_the_cap_between_requests_never_inside_one() {
    const LINES: usize = 4_000;
    // Replies of 16 KiB and more: 64 MiB in all, past what the kernel's buffers hold.
    let payload = bytes::Bytes::from(vec![b'='; 16 * 1024]);
    let expected_payload = payload.clone();
    let server = TestServer::start(
        EventLoop::builder()
            .inline_handlers()
            .output_cap(16 * 1024)
            .on_request(move |_, conn| {
                let mut reader = conn.reader();
                let mut writer = conn.writer();
                loop {
                    if let Err(e) = writer.ready() {
                        writer.flush()?;
                        return Err(e);
                    }
                    let line = match reader.until(b'\n') {
                        Ok(line) => line,
                        Err(e) => {
                            writer.flush()?;
                            return Err(e);
                        }
                    };
                    writer.write_binary(b"> ")?;
                    writer.write_direct(line)?;
                    writer.write_direct(payload.clone())?;
                    writer.write_binary(b"< ")?;
                }
            })
            .build()
            .unwrap(),
    );
    let client = server.connect();
    let mut sender = client.try_clone().unwrap();
    let sending = std::thread::spawn(move || {
        let mut all = Vec::new();
        for i in 0..LINES {
            all.extend_from_slice(format!("request {i:06} {}\n", "y".repeat(64)).as_bytes());
        }
        sender.write_all(&all).unwrap();
        sender.shutdown(Shutdown::Write).unwrap();
    });
    // All requests are sent before the first reply is read: the server meets a full socket.
    sending.join().unwrap();
    let mut got = Vec::new();
    let mut reader = client;
    reader
        .read_to_end(&mut got)
        .expect("the replies were reset");
    let mut expected = Vec::new();
    for i in 0..LINES {
        expected.extend_from_slice(format!("> request {i:06} {}\n", "y".repeat(64)).as_bytes());
        expected.extend_from_slice(&expected_payload);
        expected.extend_from_slice(b"< ");
    }
    assert_eq!(got.len(), expected.len(), "replies lost or cut");
    assert!(got == expected, "replies cut or out of order");
}
