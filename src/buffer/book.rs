//! Space booked for one `readv`, and how much the next read books.

use std::io::IoSliceMut;
use std::ops::{Deref, DerefMut};

/// What the first read of a connection books: 512 bytes, netpoll's starting `bookSize`.
pub const INITIAL_BOOK_SIZE: usize = 512;

/// The most one read books: 8 KiB, netpoll's `mallocMax`. A read that fills everything it
/// booked doubles the next booking, up to this; a bulk sender thus reaches 8 KiB reads after
/// four full reads, while a request/response peer keeps booking 512 bytes.
pub const MAX_BOOK_SIZE: usize = 8 * 1024;

/// The booking after a read of `read` bytes into `booked`: doubled when the read filled it.
pub(crate) fn next_book_size(booked: usize, read: usize) -> usize {
    if read >= booked && booked < MAX_BOOK_SIZE {
        (booked * 2).min(MAX_BOOK_SIZE)
    } else {
        booked
    }
}

/// Writable space booked for one `readv`, across at most two blocks; dereferences to the
/// `IoSliceMut`s to pass it. Returned by [`Writer::book`](super::Writer::book).
#[derive(Debug)]
pub struct Booked<'s> {
    slices: [IoSliceMut<'s>; 2],
    count: usize,
}

impl<'s> Booked<'s> {
    pub(crate) fn new(first: &'s mut [u8], second: Option<&'s mut [u8]>) -> Booked<'s> {
        match second {
            Some(second) => Booked {
                slices: [IoSliceMut::new(first), IoSliceMut::new(second)],
                count: 2,
            },
            None => Booked {
                slices: [IoSliceMut::new(first), IoSliceMut::new(&mut [])],
                count: 1,
            },
        }
    }

    /// Total bytes booked.
    pub fn capacity(&self) -> usize {
        self.iter().map(|slice| slice.len()).sum()
    }
}

impl<'s> Deref for Booked<'s> {
    type Target = [IoSliceMut<'s>];
    fn deref(&self) -> &Self::Target {
        &self.slices[..self.count]
    }
}

impl DerefMut for Booked<'_> {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.slices[..self.count]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn booking_doubles_after_full_reads_up_to_the_maximum() {
        let mut size = INITIAL_BOOK_SIZE;
        let mut seen = vec![size];
        for _ in 0..6 {
            size = next_book_size(size, size);
            seen.push(size);
        }
        assert_eq!(seen, [512, 1024, 2048, 4096, 8192, 8192, 8192]);
        assert_eq!(
            next_book_size(1024, 1023),
            1024,
            "a short read keeps the size"
        );
    }
}
