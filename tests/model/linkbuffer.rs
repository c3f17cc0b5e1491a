//! The `LinkBuffer` model shared by tests/buffer_model.rs (proptest) and the `linkbuffer` fuzz
//! target (fuzz/): operations on a buffer and on a `VecDeque<u8>` that must agree.

use std::collections::VecDeque;
use std::io::Write;

use bytes::Bytes;
use netpoll::buffer::LinkBuffer;

/// The longest read or write an operation asks for (fuzzer inputs are clamped to it).
pub const MAX_LEN: usize = 9000;

#[derive(Clone, Debug)]
#[cfg_attr(fuzzing, derive(arbitrary::Arbitrary))]
pub enum Op {
    WriteBinary(Vec<u8>),
    /// A long copy (`len` bytes counting up from `seed`) that crosses write-block boundaries.
    WriteLong {
        len: usize,
        seed: u8,
    },
    WriteDirect(Vec<u8>),
    WriteByte(u8),
    /// malloc `n`, fill with `byte`, then keep `keep` of everything unflushed.
    MallocAck {
        n: usize,
        byte: u8,
        keep: usize,
    },
    Flush,
    /// A poller read: book `size` (in up to `blocks` blocks), "read" `data` into it.
    Book {
        size: usize,
        blocks: usize,
        data: Vec<u8>,
    },
    Next(usize),
    Peek(usize),
    Skip(usize),
    Until(u8),
    ReadByte,
    ReadBinary(usize),
    Slice(usize),
    Release,
}

/// Everything readable from a buffer, via its reader.
fn drain(buf: &LinkBuffer) -> Vec<u8> {
    let mut reader = buf.reader();
    let n = reader.len();
    reader.next(n).unwrap().to_vec()
}

/// Applies `ops` to a buffer and to the model, checking they agree after each.
pub fn run(ops: Vec<Op>) {
    let ops = ops.into_iter().map(Op::clamped);
    let buf = LinkBuffer::new();
    let mut model: VecDeque<u8> = VecDeque::new(); // readable
    let mut unflushed: Vec<u8> = Vec::new();
    for op in ops {
        match op {
            Op::WriteBinary(d) => {
                buf.writer().write_binary(&d);
                unflushed.extend(&d);
            }
            Op::WriteLong { len, seed } => {
                let d: Vec<u8> = (0..len).map(|i| seed.wrapping_add(i as u8)).collect();
                buf.writer().write_binary(&d);
                unflushed.extend(&d);
            }
            Op::WriteDirect(d) => {
                buf.writer().write_direct(Bytes::from(d.clone()));
                unflushed.extend(&d);
            }
            Op::WriteByte(b) => {
                buf.writer().write_byte(b);
                unflushed.push(b);
            }
            Op::MallocAck { n, byte, keep } => {
                let mut writer = buf.writer();
                writer.malloc(n).fill(byte);
                unflushed.extend(std::iter::repeat_n(byte, n));
                let result = writer.malloc_ack(keep);
                if keep <= unflushed.len() {
                    result.unwrap();
                    unflushed.truncate(keep);
                } else {
                    assert!(result.is_err());
                }
                assert_eq!(writer.malloc_len(), unflushed.len());
            }
            Op::Flush => {
                buf.writer().flush();
                model.extend(unflushed.drain(..));
            }
            Op::Book { size, blocks, data } => {
                let mut writer = buf.writer();
                let mut booked = writer.book(size, blocks);
                let room: usize = booked.iter().map(|s| s.len()).sum();
                assert_eq!(room, size.max(1));
                let n = data.len().min(room);
                let mut src = &data[..n];
                for slice in booked.iter_mut() {
                    let take = src.len().min(slice.len());
                    (&mut slice[..take]).write_all(&src[..take]).unwrap();
                    src = &src[take..];
                }
                writer.book_ack(n); // publishes what was written before, too
                model.extend(unflushed.drain(..));
                model.extend(&data[..n]);
            }
            Op::Next(n) | Op::Peek(n) | Op::Skip(n) | Op::ReadBinary(n) | Op::Slice(n)
                if n > model.len() =>
            {
                let mut reader = buf.reader();
                assert!(reader.next(n).is_err());
                assert!(reader.peek(n).is_err());
                assert!(reader.skip(n).is_err());
                assert!(reader.read_binary(n).is_err());
                assert!(reader.slice(n).is_err());
            }
            Op::Next(n) => {
                let got = buf.reader().next(n).unwrap();
                let want: Vec<u8> = model.drain(..n).collect();
                assert_eq!(&got[..], &want[..]);
            }
            Op::Peek(n) => {
                let got = buf.reader().peek(n).unwrap();
                let want: Vec<u8> = model.iter().take(n).copied().collect();
                assert_eq!(&got[..], &want[..]);
            }
            Op::Skip(n) => {
                buf.reader().skip(n).unwrap();
                model.drain(..n);
            }
            Op::ReadBinary(n) => {
                let got = buf.reader().read_binary(n).unwrap();
                let want: Vec<u8> = model.drain(..n).collect();
                assert_eq!(got, want);
            }
            Op::Slice(n) => {
                let slice = buf.reader().slice(n).unwrap();
                assert_eq!(slice.len(), n);
                let want: Vec<u8> = model.drain(..n).collect();
                assert_eq!(drain(&slice), want);
            }
            Op::Until(delim) => {
                let result = buf.reader().until(delim);
                match model.iter().position(|b| *b == delim) {
                    Some(at) => {
                        let want: Vec<u8> = model.drain(..=at).collect();
                        assert_eq!(&result.unwrap()[..], &want[..]);
                    }
                    None => assert!(result.is_err()),
                }
            }
            Op::ReadByte => {
                let result = buf.reader().read_byte();
                match model.pop_front() {
                    Some(b) => assert_eq!(result.unwrap(), b),
                    None => assert!(result.is_err()),
                }
            }
            Op::Release => buf.reader().release(),
        }
        assert_eq!(buf.len(), model.len());
        assert_eq!(buf.writer().malloc_len(), unflushed.len());
    }
    buf.writer().flush();
    model.extend(unflushed.drain(..));
    assert_eq!(drain(&buf), model.iter().copied().collect::<Vec<u8>>());
}

impl Op {
    /// Sizes within what the proptest strategy generates, whatever a fuzzer made.
    fn clamped(self) -> Op {
        let n = |n: usize| n % (MAX_LEN + 1);
        match self {
            Op::WriteLong { len, seed } => Op::WriteLong { len: n(len), seed },
            Op::MallocAck { n: m, byte, keep } => Op::MallocAck {
                n: m % 21,
                byte,
                keep: keep % 61,
            },
            Op::Book { size, blocks, data } => Op::Book {
                size: 1 + size % 700,
                blocks: 1 + blocks % 2,
                data,
            },
            Op::Next(m) => Op::Next(n(m)),
            Op::Peek(m) => Op::Peek(n(m)),
            Op::Skip(m) => Op::Skip(n(m)),
            Op::ReadBinary(m) => Op::ReadBinary(n(m)),
            Op::Slice(m) => Op::Slice(n(m)),
            other => other,
        }
    }
}
