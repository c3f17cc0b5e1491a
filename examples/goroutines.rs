//! A tour of the scheduler's entry points: `go`, `go_on`, `Builder`, `JoinHandle::join`,
//! `yield_now`, `sleep`, `blocking`, and the Go-net face inside coroutines.
//!
//! ```sh
//! cargo run --example goroutines
//! ```
//! Runs a small echo server and its clients as coroutines on netpoll's pollers, checks every
//! reply, prints what each step showed, and exits 0 (1 if a check failed).

use std::io::{self, Read, Write};
use std::time::{Duration, Instant};

use netpoll::net::{self, TcpConn};
use netpoll::rt::{self, Builder};

fn main() -> io::Result<()> {
    // `go` spawns on a poller the load-balance policy picks; `join` waits from a plain thread
    // (parking it) or from a coroutine (suspending only that coroutine).
    let answer = netpoll::go(|| 6 * 7).join().expect("no panic");
    println!("go + join: {answer}");

    // A panic stays inside its coroutine and comes out of `join` as an `Err`.
    // (The default panic hook would print it; this tour keeps its output short.)
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let panicked = netpoll::go(|| panic!("caught at the coroutine's boundary")).join();
    std::panic::set_hook(hook);
    println!(
        "a panicking coroutine: join returned Err = {}",
        panicked.is_err()
    );

    // The Go-net face inside coroutines: the accept loop is a coroutine, and so is every
    // connection; each blocking read or write suspends only its coroutine.
    let listener = net::listen_tcp("tcp", "127.0.0.1:0")?;
    let addr = listener.local_addr();
    let server = netpoll::go(move || -> io::Result<()> {
        for _ in 0..4 {
            let (conn, _) = listener.accept()?;
            // A connection accepted in a coroutine is registered on this coroutine's poller:
            // `go_on` keeps its coroutine there too, so its wakes stay on one thread.
            let poller = rt::current_poller().expect("inside a coroutine");
            netpoll::go_on(&poller, move || echo(conn));
        }
        Ok(())
    });

    let started = Instant::now();
    let clients: Vec<_> = (0..4)
        .map(|i| {
            // `Builder` sets per-coroutine options (here a larger stack than the 64 KiB default).
            Builder::new()
                .stack_size(128 * 1024)
                .spawn(move || -> io::Result<bool> {
                    let mut conn = net::dial_tcp("tcp", addr)?;
                    // `sleep` suspends on a poller timer; the poller serves the others.
                    netpoll::sleep(Duration::from_millis(10 * i));
                    let message = format!("hello from client {i}");
                    conn.write_all(message.as_bytes())?;
                    let mut reply = vec![0u8; message.len()];
                    conn.read_exact(&mut reply)?;
                    Ok(reply == message.as_bytes())
                })
        })
        .collect::<io::Result<_>>()?;
    let mut all_ok = true;
    for client in clients {
        let ok = client.join().expect("no panic")?;
        all_ok &= ok;
    }
    server.join().expect("no panic")?;
    println!(
        "4 echo clients and their server as coroutines: replies correct = {all_ok} ({:?})",
        started.elapsed()
    );

    // `yield_now` lets the other runnable coroutines of this poller go first.
    let order = netpoll::go(|| {
        let poller = rt::current_poller().expect("inside a coroutine");
        let other = netpoll::go_on(&poller, || "second");
        rt::yield_now(); // the other coroutine runs to its end here
        let first = if other.is_finished() {
            "second"
        } else {
            "first"
        };
        (first, other.join().expect("no panic"))
    })
    .join()
    .expect("no panic");
    println!(
        "yield_now: after yielding, the other coroutine had run: {}",
        order.0 == order.1
    );

    // `blocking` runs code that would block the poller thread (file I/O, getaddrinfo, a
    // foreign lock) on the handler pool while the coroutine is suspended.
    let read_back = netpoll::go(|| {
        netpoll::blocking(|| std::fs::read_to_string("/proc/self/status").map(|s| s.len()))
    })
    .join()
    .expect("no panic")?;
    println!("blocking: read /proc/self/status off the poller ({read_back} bytes)");

    let ok = answer == 42 && panicked.is_err() && all_ok && order.0 == order.1;
    println!(
        "{}",
        if ok {
            "all checks passed"
        } else {
            "A CHECK FAILED"
        }
    );
    std::process::exit(if ok { 0 } else { 1 });
}

/// A connection's coroutine: a plain blocking read/write loop, as Go code reads.
fn echo(mut conn: TcpConn) -> io::Result<()> {
    let mut buf = vec![0u8; 4096];
    loop {
        let n = conn.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        conn.write_all(&buf[..n])?;
    }
}
