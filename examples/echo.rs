//! An echo server on the reactor face.
//!
//! ```sh
//! cargo run --release --example echo -- --addr 127.0.0.1:8080 [--loops N]
//! ```
//! Prints `listening on ADDR` once ready, echoes every byte back, and on SIGINT or SIGTERM stops
//! accepting, lets running handlers finish (5 s at most) and exits.

use std::time::{Duration, Instant};

use netpoll::{EventLoop, Listener};
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

fn main() -> std::io::Result<()> {
    let mut addr = String::from("127.0.0.1:8080");
    let mut loops = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match (arg.as_str(), args.next()) {
            ("--addr", Some(value)) => addr = value,
            ("--loops", Some(value)) => {
                loops = Some(
                    value
                        .parse()
                        .map_err(|_| usage(&format!("bad --loops {value}")))?,
                )
            }
            (other, _) => return Err(usage(&format!("unexpected argument {other}"))),
        }
    }

    let mut builder = EventLoop::builder().on_request(|_, conn| {
        let mut reader = conn.reader();
        let data = reader.next(reader.len())?;
        drop(reader);
        let mut writer = conn.writer();
        writer.write_direct(data)?;
        writer.flush()
    });
    if let Some(loops) = loops {
        builder = builder.num_loops(loops);
    }
    let server = std::sync::Arc::new(builder.build()?);
    let listener = Listener::bind_tcp(addr.as_str())?;
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

fn usage(problem: &str) -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::InvalidInput,
        format!("{problem}\nusage: echo --addr HOST:PORT [--loops N]"),
    )
}
