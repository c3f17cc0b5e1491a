//! An echo server on the reactor face.
//!
//! ```sh
//! cargo run --release --example echo -- --addr 127.0.0.1:8080 [--loops N]
//! cargo run --example echo -- --help
//! ```
//! Prints `listening on ADDR` once ready, echoes every byte back, and on SIGINT or SIGTERM stops
//! accepting, lets running handlers finish (5 s at most) and exits.

use std::num::NonZeroUsize;
use std::time::{Duration, Instant};

use clap::Parser;
use netpoll::{EventLoop, Listener};
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

/// An echo server on netpoll's reactor face; stops gracefully on SIGINT/SIGTERM.
#[derive(Parser)]
#[command(name = "echo")]
struct Args {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, value_name = "HOST:PORT", default_value = "127.0.0.1:8080")]
    addr: String,
    /// Run on N pollers of its own instead of netpoll's shared ones.
    #[arg(long, value_name = "N")]
    loops: Option<NonZeroUsize>,
}

fn main() -> std::io::Result<()> {
    let Args { addr, loops } = Args::parse();

    let mut builder = EventLoop::builder().on_request(|_, conn| {
        let mut reader = conn.reader();
        let data = reader.next(reader.len())?;
        drop(reader);
        let mut writer = conn.writer();
        writer.write_direct(data)?;
        writer.flush()
    });
    if let Some(loops) = loops {
        builder = builder.num_loops(loops.get());
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
