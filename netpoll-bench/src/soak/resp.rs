//! RESP sessions against examples/resp.rs: pipelined SET/GET/DEL/ECHO on keys this client owns,
//! every reply compared byte for byte with what a model of those keys says it must be.

use std::collections::HashMap;
use std::net::SocketAddr;

use super::echo::churn;
use super::wire::{
    connect, exchange, expect, expect_eof, read_to_close, reset, skim, Rng, Sending, FAST, SLOW,
};
use super::{Fault, Stats};

/// What this client has stored: its own keys, so no other client changes them.
pub struct Model {
    prefix: String,
    values: HashMap<usize, Vec<u8>>,
}

const KEYS: usize = 32;

impl Model {
    pub fn new(prefix: String) -> Model {
        Model {
            prefix,
            values: HashMap::new(),
        }
    }

    fn key(&self, k: usize) -> Vec<u8> {
        format!("{}:{k}", self.prefix).into_bytes()
    }
}

fn command(parts: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", parts.len()).into_bytes();
    for part in parts {
        out.extend_from_slice(format!("${}\r\n", part.len()).as_bytes());
        out.extend_from_slice(part);
        out.extend_from_slice(b"\r\n");
    }
    out
}

fn bulk(out: &mut Vec<u8>, value: &[u8]) {
    out.extend_from_slice(format!("${}\r\n", value.len()).as_bytes());
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// `n` random commands on the model's keys: (what to send, the replies that must come back,
/// bytes of values among them). The model is updated as the server will be.
fn batch(rng: &mut Rng, model: &mut Model, n: usize) -> (Vec<u8>, Vec<u8>, usize) {
    let (mut sent, mut replies, mut values) = (Vec::new(), Vec::new(), 0);
    for _ in 0..n {
        let k = rng.range(0, KEYS - 1);
        let key = model.key(k);
        match rng.range(0, 9) {
            0..=3 => {
                let len = if rng.percent(10) {
                    rng.range(64 * 1024, 512 * 1024)
                } else {
                    rng.size(16 * 1024) - 1
                };
                let value = rng.bytes(len);
                sent.extend(command(&[b"SET", &key, &value]));
                replies.extend_from_slice(b"+OK\r\n");
                values += value.len();
                model.values.insert(k, value);
            }
            4..=7 => {
                sent.extend(command(&[b"GET", &key]));
                match model.values.get(&k) {
                    Some(value) => {
                        bulk(&mut replies, value);
                        values += value.len();
                    }
                    None => replies.extend_from_slice(b"$-1\r\n"),
                }
            }
            8 => {
                sent.extend(command(&[b"DEL", &key]));
                let had = model.values.remove(&k).is_some();
                replies.extend_from_slice(if had { b":1\r\n" } else { b":0\r\n" });
            }
            _ => {
                let len = rng.size(1024);
                let message = rng.bytes(len);
                sent.extend(command(&[b"ECHO", &message]));
                bulk(&mut replies, &message);
                values += message.len();
            }
        }
    }
    (sent, replies, values)
}

pub fn session(
    addr: SocketAddr,
    rng: &mut Rng,
    model: &mut Model,
    fault: Fault,
    stats: &Stats,
) -> Result<(), String> {
    match fault {
        Fault::None => {
            let stream = connect(addr)?;
            for _ in 0..rng.range(1, 5) {
                let n = rng.range(1, 32);
                let (sent, replies, values) = batch(rng, model, n);
                exchange(&stream, &sent, Sending::default(), |s| {
                    expect(s, &replies, FAST, "RESP replies")
                })?;
                stats.verified_ops(n as u64, values);
            }
            Ok(())
        }
        Fault::HalfClose => {
            // Commands, then a FIN: every reply still comes, then the server closes.
            let stream = connect(addr)?;
            let n = rng.range(1, 32);
            let (sent, replies, values) = batch(rng, model, n);
            let sending = Sending {
                then_shutdown: true,
                ..Sending::default()
            };
            exchange(&stream, &sent, sending, |s| {
                expect(s, &replies, FAST, "RESP replies after a half-close")?;
                expect_eof(s, "RESP after a half-close")
            })?;
            stats.verified_ops(n as u64, values);
            Ok(())
        }
        Fault::SlowReader => {
            let stream = connect(addr)?;
            let n = rng.range(8, 64);
            let (sent, replies, values) = batch(rng, model, n);
            exchange(&stream, &sent, Sending::default(), |s| {
                expect(s, &replies, SLOW, "RESP replies to a slow reader")
            })?;
            stats.verified_ops(n as u64, values);
            Ok(())
        }
        Fault::SlowWriter => {
            let stream = connect(addr)?;
            let (sent, replies, values) = batch(rng, model, 1);
            let sending = Sending {
                slowly: sent.len() <= 256,
                ..Sending::default()
            };
            exchange(&stream, &sent, sending, |s| {
                expect(s, &replies, FAST, "RESP reply to a slow writer")
            })?;
            stats.verified_ops(1, values);
            Ok(())
        }
        Fault::Reset => {
            // Commands on keys nobody checks, a command cut short, some replies read, a reset.
            let stream = connect(addr)?;
            let mut junk = Model::new(format!("{}:junk", model.prefix));
            let n = rng.range(1, 32);
            let (mut sent, replies, _) = batch(rng, &mut junk, n);
            let cut = command(&[b"SET", b"k", &rng.bytes(4096)]);
            let cut_at = rng.range(1, cut.len() - 1);
            sent.extend_from_slice(&cut[..cut_at]);
            let keep = rng.range(0, replies.len());
            exchange(&stream, &sent, Sending::default(), |s| skim(s, keep))?;
            reset(stream);
            Ok(())
        }
        Fault::Malformed => {
            // A valid batch, then a bad bulk length: the replies, Redis's protocol error, a close.
            let stream = connect(addr)?;
            let n = rng.range(0, 8);
            let (mut sent, replies, values) = batch(rng, model, n);
            sent.extend_from_slice(b"*1\r\n$x\r\n");
            exchange(&stream, &sent, Sending::default(), |s| {
                expect(s, &replies, FAST, "RESP replies before a protocol error")?;
                let rest = read_to_close(s, 4096, "RESP protocol error")?;
                if !rest.starts_with(b"-ERR Protocol error") {
                    return Err(format!(
                        "a bad bulk length was answered {:?}, not a protocol error",
                        String::from_utf8_lossy(&rest)
                    ));
                }
                Ok(())
            })?;
            stats.verified_ops(n as u64, values);
            Ok(())
        }
        Fault::Churn => churn(addr, rng, b"*2\r\n$3\r\nGET"),
    }
}
