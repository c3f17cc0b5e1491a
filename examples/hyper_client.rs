//! A hyper 1.x HTTP/1.1 client on netpoll (no tokio): dials with `net::Dialer`, hands the
//! connection to hyper's `client::conn::http1`, sends GET requests, prints status and body.
//!
//! ```sh
//! cargo run --features hyper --example hello_hyper &   # listening on 127.0.0.1:8080
//! cargo run --features hyper --example hyper_client -- --addr 127.0.0.1:8080 --path /
//! ```
//! Prints `HTTP/1.1 200 OK` and the body for each request (`--requests N` sends N over the one
//! keep-alive connection); exits 1 if a response is not 2xx.

use std::io;
use std::time::Duration;

use clap::Parser;
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper::rt::Executor as _;
use hyper::Request;
use netpoll::net::Dialer;

/// GET requests with hyper's HTTP/1.1 client over a netpoll connection.
#[derive(Parser)]
#[command(name = "hyper_client")]
struct Args {
    /// The server's address.
    #[arg(long, value_name = "HOST:PORT", default_value = "127.0.0.1:8080")]
    addr: String,
    /// The request's path (and query).
    #[arg(long, default_value = "/")]
    path: String,
    /// How many requests to send over the connection.
    #[arg(long, value_name = "N", default_value_t = 1)]
    requests: usize,
}

type Error = Box<dyn std::error::Error + Send + Sync>;

fn main() {
    let args = Args::parse();
    // The client runs as a task: its connection registers on the task's poller, and the
    // executor spawns hyper's connection task there too, so every wake is a local push.
    let result = netpoll::spawn(run(args))
        .join()
        .map_err(|e| Error::from(io::Error::from(e)))
        .and_then(|r| r);
    match result {
        Ok(true) => {}
        Ok(false) => std::process::exit(1),
        Err(e) => {
            eprintln!("hyper_client: {e}");
            std::process::exit(1);
        }
    }
}

/// Sends the requests; `Ok(false)` if one was not a success.
async fn run(args: Args) -> Result<bool, Error> {
    let conn = Dialer::new()
        .timeout(Duration::from_secs(10))
        .dial_tcp_async("tcp", args.addr.as_str())
        .await?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(conn).await?;
    // The connection's I/O runs in its own task until the sender is dropped.
    netpoll::hyper::Executor.execute(async move {
        if let Err(e) = connection.await {
            eprintln!("hyper_client: connection: {e}");
        }
    });
    let mut all_ok = true;
    for _ in 0..args.requests {
        sender.ready().await?;
        let request = Request::get(args.path.as_str())
            .header(hyper::header::HOST, args.addr.as_str())
            .body(Empty::<Bytes>::new())?;
        let response = sender.send_request(request).await?;
        let status = response.status();
        println!("{:?} {status}", response.version());
        let body = response.into_body().collect().await?.to_bytes();
        println!("{}", String::from_utf8_lossy(&body));
        all_ok &= status.is_success();
    }
    Ok(all_ok)
}
