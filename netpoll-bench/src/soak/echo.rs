//! Echo sessions: every byte sent must come back, in order, whatever the fault.

use std::net::SocketAddr;

use super::wire::{self, connect, exchange, expect, expect_eof, reset, Rng, Sending, FAST, SLOW};
use super::{Fault, Stats};

pub fn session(addr: SocketAddr, rng: &mut Rng, fault: Fault, stats: &Stats) -> Result<(), String> {
    match fault {
        Fault::None | Fault::Malformed => {
            let stream = connect(addr)?;
            for _ in 0..rng.range(1, 8) {
                let len = rng.size(256 * 1024);
                let data = rng.bytes(len);
                exchange(&stream, &data, Sending::default(), |s| {
                    expect(s, &data, FAST, "echo")
                })?;
                stats.verified(data.len());
            }
            Ok(())
        }
        Fault::HalfClose => {
            // Everything sent before the FIN comes back, then the server closes too.
            let stream = connect(addr)?;
            let len = rng.size(1 << 20);
            let data = rng.bytes(len);
            let sending = Sending {
                then_shutdown: true,
                ..Sending::default()
            };
            exchange(&stream, &data, sending, |s| {
                expect(s, &data, FAST, "echo after a half-close")?;
                expect_eof(s, "echo after a half-close")
            })?;
            stats.verified(data.len());
            Ok(())
        }
        Fault::SlowReader => {
            let stream = connect(addr)?;
            let len = rng.range(256 * 1024, 2 << 20);
            let data = rng.bytes(len);
            exchange(&stream, &data, Sending::default(), |s| {
                expect(s, &data, SLOW, "echo to a slow reader")
            })?;
            stats.verified(data.len());
            Ok(())
        }
        Fault::SlowWriter => {
            let stream = connect(addr)?;
            let len = rng.range(1, 64);
            let data = rng.bytes(len);
            let sending = Sending {
                slowly: true,
                ..Sending::default()
            };
            exchange(&stream, &data, sending, |s| {
                expect(s, &data, FAST, "echo from a slow writer")
            })?;
            stats.verified(data.len());
            Ok(())
        }
        Fault::Reset => {
            // A large echo, reset once a random part of it came back (checked).
            let stream = connect(addr)?;
            let len = rng.range(64 * 1024, 4 << 20);
            let data = rng.bytes(len);
            let keep = rng.range(0, len - 1);
            exchange(&stream, &data, Sending::default(), |s| {
                expect(s, &data[..keep], FAST, "echo before a reset")
            })?;
            stats.verified(keep);
            reset(stream);
            Ok(())
        }
        Fault::Churn => churn(addr, rng, b"x"),
    }
}

/// Connections that end at once: closed, reset, or reset after a few bytes.
pub fn churn(addr: SocketAddr, rng: &mut Rng, partial: &[u8]) -> Result<(), String> {
    for _ in 0..rng.range(1, 10) {
        let stream = connect(addr)?;
        match rng.range(0, 2) {
            0 => drop(stream),
            1 => reset(stream),
            _ => {
                wire::send_all(&stream, partial, Sending::default())?;
                reset(stream);
            }
        }
    }
    Ok(())
}
