//! The buffer's promises that a model cannot see: no copies where none are promised, and no
//! memory held once drained.

use std::io::Write;

use bytes::Bytes;
use netpoll::buffer::LinkBuffer;

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
    assert_eq!(*sizes.last().unwrap(), 64 * 1024);
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
