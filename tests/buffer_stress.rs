//! One producer and one consumer on a `LinkBuffer` at the same time, 128 MiB through it, every
//! byte checked (miri runs a few KiB).

use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use netpoll::buffer::LinkBuffer;

const TOTAL: usize = if cfg!(miri) { 16 * 1024 } else { 128 << 20 };

fn byte_at(i: usize) -> u8 {
    (i.wrapping_mul(31) ^ (i >> 11)) as u8
}

#[test]
fn producer_and_consumer_threads_agree_on_every_byte() {
    let buf = Arc::new(LinkBuffer::new());
    let deadline = Instant::now() + Duration::from_secs(120);
    let producer = {
        let buf = buf.clone();
        std::thread::spawn(move || {
            let mut written = 0usize;
            let mut round = 0usize;
            while written < TOTAL {
                let n = (1 + (round * 7919) % 20_000).min(TOTAL - written);
                let chunk: Vec<u8> = (written..written + n).map(byte_at).collect();
                let mut writer = buf.writer();
                match round % 3 {
                    // A poller's read into booked blocks.
                    0 => {
                        let mut booked = writer.book(n, 2);
                        let mut src = &chunk[..];
                        for slice in booked.iter_mut() {
                            let take = src.len().min(slice.len());
                            (&mut slice[..take]).write_all(&src[..take]).unwrap();
                            src = &src[take..];
                        }
                        let filled = n - src.len();
                        writer.book_ack(filled);
                        written += filled;
                        round += 1;
                        continue;
                    }
                    1 => writer.write_binary(&chunk),
                    _ => writer.write_direct(Bytes::from(chunk)),
                }
                writer.flush();
                written += n;
                round += 1;
            }
            // A poller reads until a read comes back short (here: the socket is empty).
            let mut writer = buf.writer();
            let _ = writer.book(1, 1);
            writer.book_ack(0);
        })
    };
    let mut read = 0usize;
    let mut checksum_ok = true;
    while read < TOTAL {
        assert!(Instant::now() < deadline, "stalled at {read} of {TOTAL}");
        let mut reader = buf.reader();
        let available = reader.len();
        if available == 0 {
            drop(reader);
            std::thread::yield_now();
            continue;
        }
        let n = available.min(1 + read % 50_000);
        let got = reader.next(n).unwrap();
        reader.release();
        for (k, b) in got.iter().enumerate() {
            checksum_ok &= *b == byte_at(read + k);
        }
        assert!(checksum_ok, "mismatch near byte {read}");
        read += n;
    }
    producer.join().unwrap();
    assert_eq!(buf.len(), 0);
    assert_eq!(buf.block_count(), 0, "a drained buffer still holds blocks");
}
