//! Record framing: how one record is laid out in a segment, and how it is
//! checked when it is read back.
//!
//! This module owns the bytes of a record's frame (header, payload, padding)
//! and nothing else: it does not know what a payload means (`object` does),
//! where records live (`segment` does), or how they are written. It is pure
//! code so that it can be tested exhaustively (every bit flip, every
//! truncation) and fuzzed without a disk.
//!
//! # Layout (all integers little-endian)
//!
//! ```text
//!  0       4         5      6       8             12       16      24               32
//!  +-------+---------+------+-------+-------------+--------+-------+----------------+---------+---------+
//!  | magic | version | kind | flags | payload_len | crc32c | seq   | durable_offset | payload | padding |
//!  | RSRC  | u8 = 1  | u8   | u16   | u32         | u32    | u64   | u64            | n bytes | zeros   |
//!  +-------+---------+------+-------+-------------+--------+-------+----------------+---------+---------+
//!  record length = 32 + payload_len rounded up to a multiple of 8
//! ```
//!
//! - `magic` is the four bytes `RSRC` ("ringstore record"). It is never all
//!   zeros, so a zeroed (preallocated or never written) region of a segment
//!   cannot be taken for a record.
//! - `version` is the format version of the frame and of the payloads inside
//!   it; this module reads only version [`VERSION`].
//! - `kind` is a [`Kind`]. Values that are not listed there are reserved (the
//!   multipart records will take some of them) and rejected on read.
//! - `flags` must be zero, except [`FLAG_SEAL`] on a `Padding` record.
//! - `payload_len` is at most [`RECORD_PAYLOAD_BYTES_MAX`]; a larger value is
//!   damage, not a request to allocate.
//! - `crc32c` is CRC-32C (Castagnoli) over the 32 header bytes with the
//!   `crc32c` field set to zero, followed by the payload bytes. It does not
//!   cover the padding; the padding must instead be zero, which is checked.
//!   CRC-32C detects every single-bit error and every burst of up to 32 bits,
//!   and it is computed in hardware on x86-64 and aarch64.
//! - `seq` is the shard's record sequence number: every record a shard
//!   writes takes the next one, so a stale or misplaced record shows up as a
//!   gap when a segment is scanned.
//! - `durable_offset` is a promise about the past: when this record was
//!   appended, every byte of its segment before `durable_offset` was already
//!   on stable storage. Recovery uses it to tell a torn tail from damage to
//!   data that had been made durable (see `segment`).
//! - Every record starts at an offset that is a multiple of 8 in its segment,
//!   so that recovery can look for records at every 8-byte boundary.
//!
//! # What we assume of the disk
//!
//! - **No write atomicity beyond one 512-byte sector.** A crash during a
//!   write can leave any subset of the written sectors on disk, so a record
//!   can be torn anywhere. The checksum exists so that a torn record is never
//!   taken for a whole one.
//! - **`fdatasync` makes every write that completed before it durable.**
//!   Nothing is assumed about the order in which unsynced writes reach the
//!   disk.
//! - **A read returns what was written or an error**, except for bit rot and
//!   misdirected writes, which are what the checksum, the sequence number and
//!   the zero padding catch.

use super::crc::Crc32c;

/// The first four bytes of every record.
pub const MAGIC: [u8; 4] = *b"RSRC";

/// The only format version this code reads and writes.
pub const VERSION: u8 = 1;

/// Size of the fixed header in front of every payload.
pub const HEADER_BYTES: u32 = 32;

/// Records start at multiples of this, and their length is a multiple of it.
/// Eight keeps every header field naturally aligned and lets recovery probe
/// for a record at every 8-byte boundary instead of every byte.
pub const RECORD_ALIGNMENT_BYTES: u32 = 8;

/// Largest payload of one record. Data extents are at most 1 MiB
/// (`object::EXTENT_BYTES_MAX`) and the largest commit record today is
/// about 250 KiB (a 5 GiB object's extent list plus every header); the
/// rest is room for multipart completion records, which list up to 10,000
/// parts. A header that claims more than this is damage, and no reader ever
/// allocates more than [`RECORD_BYTES_MAX`] for one record.
pub const RECORD_PAYLOAD_BYTES_MAX: u32 = 4 * 1024 * 1024;

/// Largest record on disk, header and padding included.
pub const RECORD_BYTES_MAX: u32 = record_len(RECORD_PAYLOAD_BYTES_MAX);

/// Flag of a `Padding` record that ends a sealed segment: nothing follows it
/// in that segment.
pub const FLAG_SEAL: u16 = 1;

const MAGIC_RANGE: std::ops::Range<usize> = 0..4;
const VERSION_AT: usize = 4;
const KIND_AT: usize = 5;
const FLAGS_RANGE: std::ops::Range<usize> = 6..8;
const PAYLOAD_LEN_RANGE: std::ops::Range<usize> = 8..12;
const CRC_RANGE: std::ops::Range<usize> = 12..16;
const SEQ_RANGE: std::ops::Range<usize> = 16..24;
const DURABLE_OFFSET_RANGE: std::ops::Range<usize> = 24..32;

const _: () = assert!(HEADER_BYTES as usize == DURABLE_OFFSET_RANGE.end);
const _: () = assert!(HEADER_BYTES.is_multiple_of(RECORD_ALIGNMENT_BYTES));
const _: () = assert!(RECORD_BYTES_MAX > RECORD_PAYLOAD_BYTES_MAX);

/// What a record holds. The numbers are the on-disk values; zero is never a
/// kind, and unlisted values are reserved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Kind {
    /// One extent of an object's bytes, written while the body arrives.
    Data = 1,
    /// An object becomes visible (`object::ObjectCommit`).
    Commit = 2,
    /// An object is deleted (`object::ObjectTombstone`).
    Tombstone = 3,
    /// Filler with a zero payload; with [`FLAG_SEAL`], the end of a sealed
    /// segment. Scans skip it.
    Padding = 4,
    /// Compaction moved a version (a commit or a tombstone) forward
    /// (`object::Relocation`): the same version, at a new place.
    Relocate = 5,
    /// A multipart upload begins (`upload::UploadCreate`).
    UploadCreate = 6,
    /// A part of a multipart upload is stored (`upload::UploadPart`).
    UploadPart = 7,
    /// A multipart upload is completed or aborted (`upload::UploadEnd`).
    UploadEnd = 8,
    // 9..=15 are reserved for later kinds.
}

impl Kind {
    #[must_use]
    pub fn from_u8(value: u8) -> Option<Kind> {
        match value {
            1 => Some(Kind::Data),
            2 => Some(Kind::Commit),
            3 => Some(Kind::Tombstone),
            4 => Some(Kind::Padding),
            5 => Some(Kind::Relocate),
            6 => Some(Kind::UploadCreate),
            7 => Some(Kind::UploadPart),
            8 => Some(Kind::UploadEnd),
            _ => None,
        }
    }

    fn flags_allowed(self) -> u16 {
        match self {
            Kind::Padding => FLAG_SEAL,
            Kind::Data
            | Kind::Commit
            | Kind::Tombstone
            | Kind::Relocate
            | Kind::UploadCreate
            | Kind::UploadPart
            | Kind::UploadEnd => 0,
        }
    }
}

/// The header fields a writer chooses; the frame adds magic, version,
/// length and checksum.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub kind: Kind,
    pub flags: u16,
    pub seq: u64,
    pub durable_offset: u64,
}

/// One record, checked, borrowed from the bytes it was decoded from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decoded<'a> {
    pub header: Header,
    pub payload: &'a [u8],
    /// The record's whole length on disk (header, payload, padding).
    pub len: u32,
}

/// Why bytes are not a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordError {
    /// The bytes end before the record does: at the end of a log this is
    /// what a torn write looks like. `needed` is how many bytes, from the
    /// record's start, are needed to go further (the header's length while
    /// the header is incomplete, then the whole record's length).
    Truncated { needed: u32 },
    /// The bytes cannot be a record: bad magic, version, kind, flags,
    /// length, checksum or padding.
    Corrupted(&'static str),
}

impl std::fmt::Display for RecordError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Truncated { needed } => write!(f, "record truncated (needs {needed} bytes)"),
            Self::Corrupted(what) => write!(f, "record corrupted: {what}"),
        }
    }
}

impl std::error::Error for RecordError {}

/// The on-disk length of a record carrying `payload_len` bytes.
#[must_use]
pub const fn record_len(payload_len: u32) -> u32 {
    assert!(payload_len <= RECORD_PAYLOAD_BYTES_MAX);
    HEADER_BYTES + payload_len + padding_len(payload_len)
}

/// Zero bytes after a payload of `payload_len` bytes.
#[must_use]
pub const fn padding_len(payload_len: u32) -> u32 {
    (RECORD_ALIGNMENT_BYTES - payload_len % RECORD_ALIGNMENT_BYTES) % RECORD_ALIGNMENT_BYTES
}

/// The header of a record for `payload`, checksum included. A writer that
/// streams a large payload copies this, then the payload, then
/// [`padding_len`] zeros.
#[must_use]
pub fn encode_header(header: &Header, payload: &[u8]) -> [u8; HEADER_BYTES as usize] {
    let payload_len = u32::try_from(payload.len()).expect("payload length fits u32");
    assert!(payload_len <= RECORD_PAYLOAD_BYTES_MAX, "payload too large");
    assert!(
        header.flags & !header.kind.flags_allowed() == 0,
        "flags not allowed for this kind"
    );
    let mut bytes = [0_u8; HEADER_BYTES as usize];
    bytes[MAGIC_RANGE].copy_from_slice(&MAGIC);
    bytes[VERSION_AT] = VERSION;
    bytes[KIND_AT] = header.kind as u8;
    bytes[FLAGS_RANGE].copy_from_slice(&header.flags.to_le_bytes());
    bytes[PAYLOAD_LEN_RANGE].copy_from_slice(&payload_len.to_le_bytes());
    bytes[SEQ_RANGE].copy_from_slice(&header.seq.to_le_bytes());
    bytes[DURABLE_OFFSET_RANGE].copy_from_slice(&header.durable_offset.to_le_bytes());
    let mut crc = Crc32c::new();
    crc.update(&bytes);
    crc.update(payload);
    let crc = crc.finish();
    bytes[CRC_RANGE].copy_from_slice(&crc.to_le_bytes());
    bytes
}

/// Append one whole record to `out`.
pub fn encode_into(out: &mut Vec<u8>, header: &Header, payload: &[u8]) {
    let header_bytes = encode_header(header, payload);
    let padding = padding_len(u32::try_from(payload.len()).expect("checked by encode_header"));
    out.reserve(header_bytes.len() + payload.len() + padding as usize);
    out.extend_from_slice(&header_bytes);
    out.extend_from_slice(payload);
    out.resize(out.len() + padding as usize, 0);
}

/// Write one whole record at the start of `out`, which must be at least
/// [`record_len`] long; returns that length.
pub fn encode_to_slice(out: &mut [u8], header: &Header, payload: &[u8]) -> usize {
    let header_bytes = encode_header(header, payload);
    let len = record_len(u32::try_from(payload.len()).expect("checked by encode_header")) as usize;
    assert!(out.len() >= len, "output slice too short for the record");
    let payload_end = header_bytes.len() + payload.len();
    out[..header_bytes.len()].copy_from_slice(&header_bytes);
    out[header_bytes.len()..payload_end].copy_from_slice(payload);
    out[payload_end..len].fill(0);
    len
}

/// Decode and check the record at the start of `bytes` (which may go on
/// past it). Never panics, never allocates.
pub fn decode(bytes: &[u8]) -> Result<Decoded<'_>, RecordError> {
    let magic_len = bytes.len().min(MAGIC.len());
    if bytes[..magic_len] != MAGIC[..magic_len] {
        return Err(RecordError::Corrupted("bad magic"));
    }
    if bytes.len() < HEADER_BYTES as usize {
        return Err(RecordError::Truncated {
            needed: HEADER_BYTES,
        });
    }
    if bytes[VERSION_AT] != VERSION {
        return Err(RecordError::Corrupted("unsupported format version"));
    }
    let kind = Kind::from_u8(bytes[KIND_AT]).ok_or(RecordError::Corrupted("unknown kind"))?;
    let flags = u16::from_le_bytes(field(bytes, FLAGS_RANGE));
    if flags & !kind.flags_allowed() != 0 {
        return Err(RecordError::Corrupted("unknown flags"));
    }
    let payload_len = u32::from_le_bytes(field(bytes, PAYLOAD_LEN_RANGE));
    if payload_len > RECORD_PAYLOAD_BYTES_MAX {
        return Err(RecordError::Corrupted("payload length past the limit"));
    }
    let len = record_len(payload_len);
    if bytes.len() < len as usize {
        return Err(RecordError::Truncated { needed: len });
    }
    let payload_end = (HEADER_BYTES + payload_len) as usize;
    let payload = &bytes[HEADER_BYTES as usize..payload_end];
    let mut header_zeroed: [u8; HEADER_BYTES as usize] = field(bytes, 0..HEADER_BYTES as usize);
    header_zeroed[CRC_RANGE].fill(0);
    let mut crc = Crc32c::new();
    crc.update(&header_zeroed);
    crc.update(payload);
    let crc = crc.finish();
    if crc != u32::from_le_bytes(field(bytes, CRC_RANGE)) {
        return Err(RecordError::Corrupted("checksum mismatch"));
    }
    if bytes[payload_end..len as usize]
        .iter()
        .any(|byte| *byte != 0)
    {
        return Err(RecordError::Corrupted("padding is not zero"));
    }
    Ok(Decoded {
        header: Header {
            kind,
            flags,
            seq: u64::from_le_bytes(field(bytes, SEQ_RANGE)),
            durable_offset: u64::from_le_bytes(field(bytes, DURABLE_OFFSET_RANGE)),
        },
        payload,
        len,
    })
}

/// A fixed-size field of a header that is known to be complete.
fn field<const N: usize>(bytes: &[u8], range: std::ops::Range<usize>) -> [u8; N] {
    bytes[range].try_into().expect("range length matches field")
}

#[cfg(test)]
#[allow(
    clippy::cast_possible_truncation,
    reason = "test data and lengths are small by construction"
)]
mod tests {
    use super::*;

    fn header(kind: Kind) -> Header {
        Header {
            kind,
            flags: 0,
            seq: 0x0123_4567_89ab_cdef,
            durable_offset: 4096,
        }
    }

    fn payload(len: usize) -> Vec<u8> {
        (0..len).map(|index| (index * 31 % 251) as u8).collect()
    }

    const LENGTHS: [usize; 7] = [0, 1, 7, 8, 9, 4096 + 3, 1 << 20];

    #[test]
    fn round_trip() {
        for len in LENGTHS {
            for kind in [
                Kind::Data,
                Kind::Commit,
                Kind::Tombstone,
                Kind::Padding,
                Kind::Relocate,
                Kind::UploadCreate,
                Kind::UploadPart,
                Kind::UploadEnd,
            ] {
                let payload = payload(len);
                let mut bytes = Vec::new();
                encode_into(&mut bytes, &header(kind), &payload);
                assert_eq!(bytes.len(), record_len(len as u32) as usize);
                assert_eq!(bytes.len() % RECORD_ALIGNMENT_BYTES as usize, 0);
                let decoded = decode(&bytes).unwrap();
                assert_eq!(decoded.header, header(kind));
                assert_eq!(decoded.payload, &payload[..]);
                assert_eq!(decoded.len as usize, bytes.len());

                let mut slice = vec![0xff; bytes.len() + 5];
                assert_eq!(
                    encode_to_slice(&mut slice, &header(kind), &payload),
                    bytes.len()
                );
                assert_eq!(&slice[..bytes.len()], &bytes[..]);
            }
        }
    }

    #[test]
    fn on_disk_lengths() {
        assert_eq!(record_len(0), 32);
        assert_eq!(record_len(1), 40);
        assert_eq!(record_len(7), 40);
        assert_eq!(record_len(8), 40);
        assert_eq!(record_len(9), 48);
        assert_eq!(RECORD_BYTES_MAX, 32 + 4 * 1024 * 1024);
    }

    #[test]
    fn header_bytes_are_pinned() {
        // Goal: the documented layout is the real one. A golden record, byte
        // by byte, so that a field moved by accident fails here.
        let mut bytes = Vec::new();
        let header = Header {
            kind: Kind::Padding,
            flags: FLAG_SEAL,
            seq: 2,
            durable_offset: 3,
        };
        encode_into(&mut bytes, &header, b"x");
        let crc = {
            let mut zeroed = bytes[..32].to_vec();
            zeroed[12..16].fill(0);
            crc32c::crc32c_append(crc32c::crc32c(&zeroed), b"x")
        };
        let mut expected = b"RSRC".to_vec();
        expected.extend_from_slice(&[1, 4, 1, 0, 1, 0, 0, 0]);
        expected.extend_from_slice(&crc.to_le_bytes());
        expected.extend_from_slice(&2_u64.to_le_bytes());
        expected.extend_from_slice(&3_u64.to_le_bytes());
        expected.extend_from_slice(b"x\0\0\0\0\0\0\0");
        assert_eq!(bytes, expected);
    }

    #[test]
    fn record_followed_by_more_bytes_decodes_alone() {
        let mut bytes = Vec::new();
        encode_into(&mut bytes, &header(Kind::Data), b"first");
        let first_len = bytes.len();
        encode_into(&mut bytes, &header(Kind::Commit), b"second");
        let first = decode(&bytes).unwrap();
        assert_eq!(first.payload, b"first");
        assert_eq!(first.len as usize, first_len);
        assert_eq!(decode(&bytes[first_len..]).unwrap().payload, b"second");
    }

    #[test]
    fn every_single_bit_flip_is_rejected() {
        // Goal: no single-bit error in any byte of a record (header, payload
        // or padding) decodes as a record. Method: flip each bit of records
        // with every padding length, alone and followed by another record.
        for len in [0, 1, 7, 8, 9, 100] {
            let mut bytes = Vec::new();
            encode_into(&mut bytes, &header(Kind::Data), &payload(len));
            let record_end = bytes.len();
            for tail in [false, true] {
                if tail {
                    encode_into(&mut bytes, &header(Kind::Commit), &payload(64));
                }
                for index in 0..record_end {
                    for bit in 0..8 {
                        let mut damaged = bytes.clone();
                        damaged[index] ^= 1 << bit;
                        assert!(
                            decode(&damaged).is_err(),
                            "payload {len}: flip of bit {bit} in byte {index} was accepted"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn every_truncation_is_truncated() {
        for len in LENGTHS {
            let mut bytes = Vec::new();
            encode_into(&mut bytes, &header(Kind::Data), &payload(len));
            let step = if len > 4096 { 509 } else { 1 };
            for cut in (0..bytes.len()).step_by(step).chain([bytes.len() - 1]) {
                let needed = if cut < HEADER_BYTES as usize {
                    HEADER_BYTES
                } else {
                    bytes.len() as u32
                };
                assert_eq!(
                    decode(&bytes[..cut]),
                    Err(RecordError::Truncated { needed }),
                    "payload {len} cut at {cut}"
                );
            }
        }
    }

    #[test]
    fn zeroed_bytes_are_not_a_record() {
        assert_eq!(decode(&[0; 64]), Err(RecordError::Corrupted("bad magic")));
    }

    #[test]
    fn impossible_length_is_corrupted_not_truncated() {
        // A damaged length must not make a reader wait for (or allocate)
        // gigabytes: it is reported as damage before any payload is needed.
        let mut bytes = Vec::new();
        encode_into(&mut bytes, &header(Kind::Data), b"abc");
        bytes[8..12].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(
            decode(&bytes),
            Err(RecordError::Corrupted("payload length past the limit"))
        );
    }

    #[test]
    fn reserved_kinds_and_flags_are_rejected() {
        let mut bytes = Vec::new();
        encode_into(&mut bytes, &header(Kind::Data), b"abc");
        for kind in [0_u8, 9, 15, 255] {
            let mut damaged = bytes.clone();
            damaged[KIND_AT] = kind;
            assert_eq!(
                decode(&damaged),
                Err(RecordError::Corrupted("unknown kind"))
            );
        }
        let mut damaged = bytes.clone();
        damaged[FLAGS_RANGE.start] = FLAG_SEAL as u8;
        assert_eq!(
            decode(&damaged),
            Err(RecordError::Corrupted("unknown flags"))
        );
    }
}
