//! The buffer's promises that a model cannot see: no copies where none are promised, and no
//! memory held once drained.

use std::io::Write;

use bytes::Bytes;
use netpoll::buffer::{pool, LinkBuffer};

#[test]
fn next_within_one_block_points_into_that_block() {
    let data = Bytes::from(vec![7u8; 1000]);
    let start = data.as_ptr();
    let buf = LinkBuffer::new();
    let mut writer = buf.writer();
    writer.write_direct(data);
    writer.flush();
    drop(writer);
    let mut reader = buf.reader();
    let first = reader.next(100).unwrap();
    let second = reader.next(900).unwrap();
    assert_eq!(first.as_ptr(), start);
    assert_eq!(second.as_ptr(), start.wrapping_add(100));
}

#[test]
fn booked_reads_are_handed_out_in_place() {
    let buf = LinkBuffer::new();
    let mut writer = buf.writer();
    let mut booked = writer.book(512, 1);
    let at = booked[0].as_ptr();
    (&mut booked[0][..5]).write_all(b"hello").unwrap();
    writer.book_ack(5);
    drop(writer);
    let got = buf.reader().next(5).unwrap();
    assert_eq!(&got[..], b"hello");
    assert_eq!(
        got.as_ptr(),
        at,
        "readv's bytes must not be copied on the way out"
    );
}

#[test]
fn next_across_blocks_copies_once_into_one_contiguous_bytes() {
    let buf = LinkBuffer::new();
    let mut writer = buf.writer();
    writer.write_direct(Bytes::from_static(b"abc"));
    writer.write_direct(Bytes::from_static(b"def"));
    writer.flush();
    drop(writer);
    assert_eq!(&buf.reader().next(6).unwrap()[..], b"abcdef");
}

#[test]
fn slice_and_append_copy_nothing() {
    let data = Bytes::from(vec![1u8; 4096]);
    let start = data.as_ptr();
    let buf = LinkBuffer::from_bytes(data);
    let slice = buf.reader().slice(1000).unwrap();
    assert_eq!(buf.len(), 3096);
    assert_eq!(slice.reader().peek(1).unwrap().as_ptr(), start);

    let out = LinkBuffer::new();
    let mut writer = out.writer();
    writer.write_binary(b"head:");
    writer.append(slice);
    writer.flush();
    drop(writer);
    let mut reader = out.reader();
    assert_eq!(&reader.next(5).unwrap()[..], b"head:");
    assert_eq!(
        reader.next(1000).unwrap().as_ptr(),
        start,
        "append copied the blocks"
    );
}

#[test]
fn a_new_buffer_allocates_nothing_and_a_drained_one_holds_nothing() {
    let buf = LinkBuffer::new();
    assert_eq!(buf.block_count(), 0);

    // Input side: a poller read, then the reader takes everything.
    let mut writer = buf.writer();
    let mut booked = writer.book(writer.next_book_size(), 2);
    (&mut booked[0][..3]).write_all(b"abc").unwrap();
    writer.book_ack(3); // fewer than booked: the socket is drained
    drop(writer);
    let mut reader = buf.reader();
    let _ = reader.next(3).unwrap();
    reader.release();
    drop(reader);
    assert_eq!(buf.block_count(), 0, "an idle input buffer holds a block");

    // Output side: writes, flush, the sender sends it all.
    let mut writer = buf.writer();
    writer.write_string("response");
    writer.flush();
    drop(writer);
    let mut reader = buf.reader();
    reader.skip(8).unwrap();
    reader.release();
    drop(reader);
    assert_eq!(buf.block_count(), 0, "an idle output buffer holds a block");
}

#[test]
fn book_size_doubles_after_full_reads_up_to_the_maximum() {
    let buf = LinkBuffer::new();
    let mut writer = buf.writer();
    let mut sizes = vec![writer.next_book_size()];
    for _ in 0..10 {
        let size = writer.next_book_size();
        let booked = writer.book(size, 1);
        let room: usize = booked.iter().map(|s| s.len()).sum();
        writer.book_ack(room); // the read filled everything booked
        sizes.push(writer.next_book_size());
    }
    assert_eq!(sizes[0], 512);
    assert_eq!(sizes[1], 1024);
    assert_eq!(sizes[4], 8 * 1024);
    assert_eq!(*sizes.last().unwrap(), netpoll::buffer::MAX_BOOK_SIZE);
}

#[test]
fn invalid_requests_are_errors_not_panics() {
    let buf = LinkBuffer::new();
    let mut reader = buf.reader();
    assert_eq!(
        reader.next(1).unwrap_err().kind(),
        std::io::ErrorKind::UnexpectedEof
    );
    assert!(reader.until(b'\n').is_err());
    assert!(reader.read_byte().is_err());
    drop(reader);
    let mut writer = buf.writer();
    writer.write_string("é");
    assert!(writer.malloc_ack(3).is_err());
    writer.flush();
    drop(writer);
    let mut reader = buf.reader();
    assert_eq!(
        reader.read_string(1).unwrap_err().kind(),
        std::io::ErrorKind::InvalidData
    );
    assert_eq!(reader.read_string(2).unwrap(), "é");
}

#[test]
fn a_callers_buffer_never_enters_the_pool() {
    // A caller's `Bytes` may own uninitialised capacity past its length; if its block reached
    // the pool, a later `book` would lend that memory to `readv` as initialised bytes. 16 KiB
    // is a class no other test in this file uses, so its free count is ours to watch.
    const CLASS_16K: usize = 5;
    let mut vec = Vec::with_capacity(16 * 1024);
    vec.extend_from_slice(&[9u8; 10]);
    let buf = LinkBuffer::from_bytes(Bytes::from(vec));
    let before = pool::free_blocks()[CLASS_16K];
    let mut reader = buf.reader();
    reader.skip(10).unwrap();
    reader.release();
    assert_eq!(pool::free_blocks()[CLASS_16K], before);
}

#[test]
fn released_blocks_are_reused() {
    let buf = LinkBuffer::new();
    let mut seen = Vec::new();
    for _ in 0..8 {
        let mut writer = buf.writer();
        let mut booked = writer.book(2048, 1);
        seen.push(booked[0].as_ptr() as usize);
        (&mut booked[0][..100]).write_all(&[5; 100]).unwrap();
        writer.book_ack(100);
        drop(writer);
        let mut reader = buf.reader();
        drop(reader.next(100).unwrap());
        reader.release();
    }
    seen.sort_unstable();
    seen.dedup();
    // Other tests share the pool, so allow some churn; a buffer allocating per read would show
    // eight distinct blocks.
    assert!(seen.len() < 8, "no block was reused: {seen:?}");
}

#[test]
fn append_takes_unflushed_bytes_too_and_malloc_ack_trims_across_chunks() {
    let other = LinkBuffer::new();
    let mut writer = other.writer();
    writer.write_string("flushed|");
    writer.flush();
    writer.write_string("pending");
    drop(writer);

    let buf = LinkBuffer::new();
    let mut writer = buf.writer();
    writer.write_string("a");
    writer.write_direct(Bytes::from_static(b"bcd"));
    writer.malloc(4).copy_from_slice(b"efgh");
    writer.malloc_ack(6).unwrap(); // keeps "abcdef"
    assert_eq!(writer.malloc_len(), 6);
    writer.append(other);
    writer.flush();
    drop(writer);
    assert_eq!(
        buf.reader().read_string(21).unwrap(),
        "abcdefflushed|pending"
    );
}
