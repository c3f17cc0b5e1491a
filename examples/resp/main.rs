//! A Redis-compatible key-value server (RESP2) on the reactor face.
//!
//! ```sh
//! cargo run --release --example resp -- --addr 127.0.0.1:6379 [--loops N]
//! redis-cli -p 6379 set greeting hello && redis-cli -p 6379 get greeting
//! redis-benchmark -p 6379 -t ping,set,get,incr,mset -P 16 -q
//! ```
//! Prints `listening on ADDR` once ready; on SIGINT or SIGTERM stops accepting, lets running
//! handlers finish (5 s at most) and exits. Strings only: PING, ECHO, SET (EX/PX/EXAT/PXAT,
//! NX/XX, GET, KEEPTTL), GET, GETSET, DEL, EXISTS, INCR, INCRBY, DECR, DECRBY, MGET, MSET,
//! EXPIRE, PEXPIRE, TTL, PTTL, DBSIZE, FLUSHALL, SELECT 0, QUIT, and what redis-cli and
//! redis-benchmark ask on connecting (COMMAND, CLIENT, CONFIG GET, INFO).
//!
//! Handlers run inline on the pollers. Each input batch is parsed command by command
//! (`netpoll::proto::resp::Parser`, which keeps its place between batches) and all its replies
//! go out in one send. Values are `Bytes` that share the input block they arrived in when
//! they are long enough to be worth it (see `store::SHARE_MIN`).

mod commands;
mod store;

use std::io::{self, ErrorKind};
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Parser as _;
use netpoll::proto::resp::{Frame, Limits, Parser};
use netpoll::{Connection, EventLoop, Listener};
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use commands::{Client, Config, Next};
use store::Store;

/// A Redis-compatible key-value server on netpoll's reactor face.
#[derive(clap::Parser)]
#[command(name = "resp")]
struct Args {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, value_name = "HOST:PORT", default_value = "127.0.0.1:6379")]
    addr: String,
    /// Run on N pollers of its own instead of netpoll's shared ones.
    #[arg(long, value_name = "N")]
    loops: Option<NonZeroUsize>,
    /// Close connections idle for this many seconds (Redis's `timeout`; 0: never).
    #[arg(long, value_name = "SECS", default_value = "0")]
    timeout: u64,
    /// Close a connection whose command stays incomplete this long (0: never).
    #[arg(long, value_name = "MS", default_value = "0")]
    read_timeout_ms: u64,
    /// The longest bulk string accepted (Redis's `proto-max-bulk-len`).
    #[arg(long, value_name = "BYTES", default_value_t = Limits::default().max_bulk_len)]
    max_bulk_len: usize,
    /// The most arguments in one command.
    #[arg(long, value_name = "N", default_value_t = Limits::default().max_args)]
    max_args: usize,
}

/// One connection's place in its input and its client state.
struct Session {
    parser: Parser,
    client: Client,
}

fn main() -> io::Result<()> {
    let args = Args::parse();
    let limits = Limits {
        max_bulk_len: args.max_bulk_len,
        max_args: args.max_args,
        ..Limits::default()
    };
    let config = Arc::new(Config {
        timeout_secs: args.timeout,
        max_bulk_len: args.max_bulk_len,
    });
    let store = Arc::new(Store::new());
    let next_id = AtomicU64::new(1);

    let handler_store = store.clone();
    let mut builder = EventLoop::builder()
        .inline_handlers()
        .on_prepare(move |_| {
            Mutex::new(Session {
                parser: Parser::new(limits),
                client: Client {
                    id: next_id.fetch_add(1, Ordering::Relaxed),
                    name: None,
                },
            })
        })
        .on_request(move |session, conn| serve(&handler_store, &config, session, conn));
    if args.timeout > 0 {
        builder = builder.idle_timeout(Duration::from_secs(args.timeout));
    }
    if args.read_timeout_ms > 0 {
        builder = builder.read_timeout(Duration::from_millis(args.read_timeout_ms));
    }
    if let Some(loops) = args.loops {
        builder = builder.num_loops(loops.get());
    }
    let server = Arc::new(builder.build()?);
    let listener = Listener::bind_tcp(args.addr.as_str())?;
    println!("listening on {}", listener.local_addr());

    let expiring = store.clone();
    std::thread::spawn(move || loop {
        std::thread::sleep(store::EXPIRE_PERIOD); // a period, not a synchronisation
        expiring.expire_due();
    });
    let mut signals = Signals::new([SIGINT, SIGTERM])?;
    let stopper = server.clone();
    std::thread::spawn(move || {
        if signals.forever().next().is_some() {
            let _ = stopper.shutdown(Instant::now() + Duration::from_secs(5));
        }
    });
    server.serve(listener)
}

/// Runs every whole command that has arrived, replies in one send, and returns: `WouldBlock`
/// (from `fill` or `ready`) to be called again when more input or room comes, an error to
/// close the connection once its replies went out.
fn serve(
    store: &Store,
    config: &Config,
    session: &Mutex<Session>,
    conn: &Connection,
) -> io::Result<()> {
    let mut session = session.lock().unwrap_or_else(|e| e.into_inner());
    let Session { parser, client } = &mut *session;
    let mut reader = conn.reader();
    let mut writer = conn.writer();
    let outcome = loop {
        // At the output cap (a client that pipelines without reading): stop between
        // commands, not inside a reply.
        if let Err(e) = writer.ready() {
            break Err(e);
        }
        match parser.parse(&mut reader) {
            Ok(Frame::Command(args)) => {
                match commands::execute(store, config, client, &args, &mut writer) {
                    Ok(Next::Continue) => {}
                    Ok(Next::Close) => {
                        break Err(io::Error::new(ErrorKind::ConnectionAborted, "QUIT"))
                    }
                    Err(e) => break Err(e),
                }
            }
            // Everything answered and nothing of a next command here: not a partial frame.
            Ok(Frame::Incomplete(_)) if parser.is_idle() && reader.is_empty() => break Ok(()),
            Ok(Frame::Incomplete(need)) => {
                // Replies so far go out before any wait (inline: `fill` never waits).
                writer.flush()?;
                if let Err(e) = reader.fill(need) {
                    break Err(e);
                }
            }
            Err(protocol) => {
                log::debug!("{}: {protocol}", conn.peer_addr());
                protocol.reply(&mut writer)?;
                break Err(protocol.into());
            }
        }
    };
    writer.flush()?;
    outcome
}
