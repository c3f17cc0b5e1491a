//! LinkBuffer operations against the same work on `BytesMut` and `Vec<u8>`.
//!
//! `cargo bench --bench linkbuffer -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;
use std::io::Write;

use bytes::{Buf, BytesMut};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use netpoll::buffer::LinkBuffer;

const FRAME: usize = 64;

fn filled_link(frames: usize) -> LinkBuffer {
    let buf = LinkBuffer::new();
    let mut writer = buf.writer();
    writer.write_binary(&vec![7u8; FRAME * frames]);
    writer.flush();
    drop(writer);
    buf
}

fn next(c: &mut Criterion) {
    let mut group = c.benchmark_group("next_64B_x64");
    group.bench_function("LinkBuffer", |b| {
        b.iter_batched(
            || filled_link(64),
            |buf| {
                let mut reader = buf.reader();
                for _ in 0..64 {
                    black_box(reader.next(FRAME).unwrap());
                }
                reader.release();
            },
            BatchSize::SmallInput,
        )
    });
    group.bench_function("BytesMut::split_to.freeze", |b| {
        b.iter_batched(
            || BytesMut::from(&vec![7u8; FRAME * 64][..]),
            |mut buf| {
                for _ in 0..64 {
                    black_box(buf.split_to(FRAME).freeze());
                }
            },
            BatchSize::SmallInput,
        )
    });
    group.bench_function("Vec::drain", |b| {
        b.iter_batched(
            || vec![7u8; FRAME * 64],
            |mut buf| {
                for _ in 0..64 {
                    black_box(buf.drain(..FRAME).collect::<Vec<u8>>());
                }
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

fn peek(c: &mut Criterion) {
    let mut group = c.benchmark_group("peek_64B");
    let buf = filled_link(64);
    group.bench_function("LinkBuffer", |b| {
        b.iter(|| black_box(buf.reader().peek(FRAME).unwrap()))
    });
    let bytes = BytesMut::from(&vec![7u8; FRAME * 64][..]).freeze();
    group.bench_function("Bytes::slice", |b| {
        b.iter(|| black_box(bytes.slice(..FRAME)))
    });
    group.finish();
}

fn malloc_flush(c: &mut Criterion) {
    let mut group = c.benchmark_group("malloc_64B_flush_send");
    let buf = LinkBuffer::new();
    group.bench_function("LinkBuffer", |b| {
        b.iter(|| {
            let mut writer = buf.writer();
            writer.malloc(FRAME).fill(1);
            writer.flush();
            drop(writer);
            let mut reader = buf.reader();
            reader.skip(FRAME).unwrap(); // what a sender does after sendmsg
            reader.release();
        })
    });
    let mut out = BytesMut::with_capacity(4096);
    group.bench_function("BytesMut", |b| {
        b.iter(|| {
            out.extend_from_slice(&[1u8; FRAME]);
            black_box(&out[..]);
            out.advance(FRAME);
        })
    });
    let mut vec = Vec::with_capacity(4096);
    group.bench_function("Vec", |b| {
        b.iter(|| {
            vec.extend_from_slice(&[1u8; FRAME]);
            black_box(&vec[..]);
            vec.clear();
        })
    });
    group.finish();
}

fn readv_cycle(c: &mut Criterion) {
    // One poller read of 4 KiB into booked space, then the handler takes it all and releases.
    let mut group = c.benchmark_group("readv_4KiB_cycle");
    let payload = vec![3u8; 4096];
    let buf = LinkBuffer::new();
    group.bench_function("LinkBuffer", |b| {
        b.iter(|| {
            let mut writer = buf.writer();
            let mut booked = writer.book(4096, 2);
            let mut src = &payload[..];
            for slice in booked.iter_mut() {
                let (now, later) = src.split_at(slice.len().min(src.len()));
                (&mut slice[..now.len()]).write_all(now).unwrap();
                src = later;
            }
            writer.book_ack(4096);
            drop(writer);
            let mut reader = buf.reader();
            black_box(reader.next(4096).unwrap());
            reader.release();
        })
    });
    let mut bm = BytesMut::with_capacity(8192);
    group.bench_function("BytesMut", |b| {
        b.iter(|| {
            bm.reserve(4096);
            bm.extend_from_slice(&payload);
            black_box(bm.split().freeze());
        })
    });
    group.bench_function("Vec", |b| {
        b.iter(|| {
            let mut v = Vec::with_capacity(4096);
            v.extend_from_slice(&payload);
            black_box(v);
        })
    });
    group.finish();
}

fn two_threads(c: &mut Criterion) {
    // A producer thread writes and flushes 64 B frames while a consumer thread takes them:
    // the producer/consumer hand-off under real concurrency. Per iteration: 10,000 frames.
    const FRAMES: usize = 10_000;
    let mut group = c.benchmark_group("spsc_64B_x10k");
    group.bench_function("LinkBuffer", |b| {
        b.iter_custom(|iters| {
            let start = std::time::Instant::now();
            for _ in 0..iters {
                let buf = std::sync::Arc::new(LinkBuffer::new());
                let producer = {
                    let buf = buf.clone();
                    std::thread::spawn(move || {
                        for _ in 0..FRAMES {
                            let mut writer = buf.writer();
                            writer.write_binary(&[1u8; FRAME]);
                            writer.flush();
                        }
                    })
                };
                let mut taken = 0;
                while taken < FRAMES {
                    let mut reader = buf.reader();
                    let ready = reader.len() / FRAME;
                    for _ in 0..ready {
                        black_box(reader.next(FRAME).unwrap());
                    }
                    reader.release();
                    taken += ready;
                    if ready == 0 {
                        std::hint::spin_loop();
                    }
                }
                producer.join().unwrap();
            }
            start.elapsed()
        })
    });
    group.bench_function("std::sync::mpsc<Vec<u8>>", |b| {
        b.iter_custom(|iters| {
            let start = std::time::Instant::now();
            for _ in 0..iters {
                let (tx, rx) = std::sync::mpsc::channel::<Vec<u8>>();
                let producer = std::thread::spawn(move || {
                    for _ in 0..FRAMES {
                        tx.send(vec![1u8; FRAME]).unwrap();
                    }
                });
                for _ in 0..FRAMES {
                    black_box(rx.recv().unwrap());
                }
                producer.join().unwrap();
            }
            start.elapsed()
        })
    });
    group.finish();
}

criterion_group!(benches, next, peek, malloc_flush, readv_cycle, two_threads);
criterion_main!(benches);
