//! Where a record is: the one address type shared by segments and the index.

/// Segment files are numbered from 1 within a shard, in creation order;
/// the number is part of the file name (`seg-00000001`).
pub type SegmentId = u32;

/// The position of one record in a shard's segments.
///
/// `offset` is the byte position of the record's header in its segment;
/// `len` is the record's whole length on disk (header, payload and padding),
/// so `offset + len` is where the next record starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Location {
    pub segment: SegmentId,
    pub offset: u64,
    pub len: u32,
}

impl Location {
    /// The position just past this record.
    #[must_use]
    pub fn end(&self) -> u64 {
        self.offset + u64::from(self.len)
    }
}
