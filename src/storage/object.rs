//! The payloads of `Commit` and `Tombstone` records: what an object is, as
//! stored.
//!
//! A `PutObject` writes the body as `Data` records (extents) while it
//! arrives, then one `Commit` record that names the object, its metadata,
//! its checksums and where its bytes are; the object exists once that commit
//! is durable. A small object skips the extents: its bytes travel inside the
//! commit ([`ObjectBody::Inline`]), so a small PUT is one record, one write
//! and one fdatasync, and a small GET is one read. A `DeleteObject` writes a
//! `Tombstone`. This module owns the encoding of those two payloads and
//! nothing else: framing and checksums are `record`'s, positions are
//! `location`'s.
//!
//! # Layout (all integers little-endian)
//!
//! `str16` is a `u16` length then that many bytes of UTF-8; `bytes32` is a
//! `u32` length then the bytes.
//!
//! ```text
//! ObjectCommit
//!   u8       layout           = 1
//!   str16    bucket
//!   str16    key
//!   u64      size             object length in bytes
//!   u8       etag kind        1 = MD5 of the body, 2 = multipart
//!   [u8;16]  etag digest
//!   u16      part count       only for multipart
//!   i64      last_modified_ms Unix milliseconds
//!   u8       present          bit i set: optional header i follows, in this order:
//!   str16 ×  headers          Content-Type, Cache-Control, Content-Disposition,
//!                             Content-Encoding, Content-Language, Expires
//!   u16      metadata count   then count × (str16 name, str16 value)
//!   u8       checksum count   then count × (u8 algorithm, u8 length, value)
//!   u8       body kind        1 = inline, 2 = extents
//!   bytes32  inline data      (inline)
//!   u32      extent count     (extents) then count × extent:
//!            u32 segment | u64 offset | u32 record len | u32 data len
//!
//! ObjectTombstone
//!   u8 layout = 1 | str16 bucket | str16 key | i64 deleted_ms
//!
//! Relocation (a version compaction moved forward)
//!   u8       layout           = 1
//!   u64      version seq      the seq of the record that made this version
//!   u32      origin segment   the segment that record was written to
//!   u8       version kind     2 = commit, 3 = tombstone (the record kinds)
//!   …        the version's ObjectCommit or ObjectTombstone payload, to the end
//! ```
//!
//! The layout byte lets a later version add fields without a new record
//! kind. The encoding is canonical: decoding succeeds only on bytes that
//! [`ObjectCommit::encode`] would produce for the decoded value.
//!
//! # Decoding untrusted bytes
//!
//! A payload that passed its record's CRC is almost certainly what we
//! wrote, but decoding is still written for garbage (it is fuzzed): every
//! length is checked against the bytes that remain before anything is
//! sliced or allocated, every limit of `limits` is checked again (pair
//! assertions: the encoder asserts the same limits), and the sizes must add
//! up. It returns an error, never panics.

use crate::limits;
use crate::storage::location::{Location, SegmentId};
use crate::storage::record;

/// Largest object whose bytes are stored inside its commit record.
///
/// 64 KiB: up to here, one record (and so one write, one fdatasync shared
/// with other commits, and one read) is cheaper than a data extent plus a
/// commit, and most objects of metadata-heavy workloads (restic indexes and
/// snapshots, backup catalogs, small web assets) are below it. It is also
/// the connection read buffer size (`limits::CONNECTION_READ_BUFFER_BYTES`),
/// so a small PUT body is in memory once, and it stays a small fraction of
/// the segment writer's 1 MiB buffer, so many small commits still share one
/// flush. Larger objects go to extents, which GETs can stream and ranges
/// can address without reading the whole object.
pub const INLINE_BYTES_MAX: usize = 64 * 1024;

/// Largest payload of one `Data` record. PUT splits a body into extents of
/// at most this size, so the segment writer never holds more than one
/// extent of a request in memory, and a ranged GET reads (and checks) at
/// most this much more than it returns.
pub const EXTENT_BYTES_MAX: u32 = 1024 * 1024;

/// Most extents in one commit: a body of the largest PUT size cut into the
/// smallest-but-last extents PUT is expected to write (64 KiB, one read
/// buffer). At 20 bytes each that is about 1.6 MiB, inside one record.
pub const EXTENT_COUNT_MAX: usize = 81_920;

/// Most checksums one object carries (one per algorithm).
pub const CHECKSUM_COUNT_MAX: usize = 5;

/// Longest value of one of the optional system headers (`Content-Type`...):
/// it arrived in a request head, so it cannot be longer than one.
pub const HEADER_VALUE_BYTES_MAX: usize = limits::REQUEST_HEAD_BYTES_MAX;

const LAYOUT: u8 = 1;
const ETAG_MD5: u8 = 1;
const ETAG_MULTIPART: u8 = 2;
const BODY_INLINE: u8 = 1;
const BODY_EXTENTS: u8 = 2;
const HEADER_COUNT: usize = 6;
pub(super) const EXTENT_BYTES: usize = 4 + 8 + 4 + 4;

const _: () = assert!(INLINE_BYTES_MAX <= limits::CONNECTION_READ_BUFFER_BYTES);
const _: () = assert!(
    EXTENT_COUNT_MAX as u64
        == limits::OBJECT_BYTES_MAX / limits::CONNECTION_READ_BUFFER_BYTES as u64
);
const _: () = assert!(EXTENT_BYTES_MAX <= record::RECORD_PAYLOAD_BYTES_MAX);
const _: () = assert!(INLINE_BYTES_MAX < EXTENT_BYTES_MAX as usize);
const _: () = assert!(EXTENT_BYTES_MAX as u64 == limits::EXTENT_BYTES_MAX);
// The largest commit, also when relocated, fits in one record: fixed fields, six headers, user
// metadata, checksums and the larger of the two bodies.
const _: () = assert!(
    64 + Relocation::OVERHEAD_BYTES
        + limits::BUCKET_NAME_BYTES_MAX
        + limits::KEY_BYTES_MAX
        + HEADER_COUNT * (2 + HEADER_VALUE_BYTES_MAX)
        + 4 * limits::USER_METADATA_BYTES_MAX
        + CHECKSUM_COUNT_MAX * 34
        + limits::PART_COUNT_MAX as usize * 8
        + EXTENT_COUNT_MAX * EXTENT_BYTES
        <= record::RECORD_PAYLOAD_BYTES_MAX as usize
);

/// The object's `ETag`, kept as the digest it is made of rather than as text.
///
/// A single-request PUT's `ETag` is the MD5 of the body; a multipart object's
/// is the MD5 of the parts' MD5s followed by `-<part count>`, and the MD5 of
/// its whole body is never known. Storing the 16 digest bytes (plus the part
/// count) is smaller than the hex string, cannot hold a malformed `ETag`, and
/// still gives `Content-MD5`-style checks the body MD5 when there is one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ETag {
    Md5([u8; 16]),
    Multipart { digest: [u8; 16], part_count: u16 },
}

impl ETag {
    /// The MD5 of the whole body, when the `ETag` is one.
    #[must_use]
    pub fn md5(&self) -> Option<[u8; 16]> {
        match self {
            ETag::Md5(digest) => Some(*digest),
            ETag::Multipart { .. } => None,
        }
    }

    /// The `ETag` header value, quotes included, as S3 sends it.
    #[must_use]
    pub fn to_header_value(&self) -> String {
        let hex = |digest: &[u8; 16]| -> String {
            use std::fmt::Write as _;
            digest
                .iter()
                .fold(String::with_capacity(32), |mut text, byte| {
                    write!(text, "{byte:02x}").expect("writing to a String cannot fail");
                    text
                })
        };
        match self {
            ETag::Md5(digest) => format!("\"{}\"", hex(digest)),
            ETag::Multipart { digest, part_count } => {
                format!("\"{}-{part_count}\"", hex(digest))
            }
        }
    }
}

/// Checksum algorithms S3 clients can ask for (`x-amz-checksum-*`); the
/// numbers are the on-disk values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum ChecksumAlgorithm {
    Crc32 = 1,
    Crc32c = 2,
    Sha1 = 3,
    Sha256 = 4,
    Crc64Nvme = 5,
}

impl ChecksumAlgorithm {
    #[must_use]
    pub fn from_u8(value: u8) -> Option<ChecksumAlgorithm> {
        match value {
            1 => Some(Self::Crc32),
            2 => Some(Self::Crc32c),
            3 => Some(Self::Sha1),
            4 => Some(Self::Sha256),
            5 => Some(Self::Crc64Nvme),
            _ => None,
        }
    }

    /// Length of the digest in bytes.
    #[must_use]
    pub fn digest_len(self) -> usize {
        match self {
            Self::Crc32 | Self::Crc32c => 4,
            Self::Crc64Nvme => 8,
            Self::Sha1 => 20,
            Self::Sha256 => 32,
        }
    }
}

/// One checksum of the object (decoded from base64).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checksum {
    pub algorithm: ChecksumAlgorithm,
    pub value: Vec<u8>,
    /// `false`: of the whole object's bytes (AWS's `FULL_OBJECT`). `true`:
    /// of a multipart object's part checksums, concatenated (AWS's
    /// `COMPOSITE`, shown with `-<part count>`). Stored as the high bit of
    /// the algorithm byte.
    pub composite: bool,
}

/// The bit of a stored checksum's algorithm byte that marks it composite.
pub const CHECKSUM_COMPOSITE_BIT: u8 = 0x80;

/// One `Data` record of an object's body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Extent {
    /// The whole record (its `len` includes header and padding).
    pub location: Location,
    /// Object bytes in the record's payload.
    pub data_len: u32,
}

/// Where an object's bytes are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ObjectBody {
    /// In the commit record itself (at most [`INLINE_BYTES_MAX`] bytes).
    Inline(Vec<u8>),
    /// In `Data` records, in object order.
    Extents(Vec<Extent>),
}

/// An object becomes visible: the payload of a `Commit` record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectCommit {
    pub bucket: String,
    pub key: String,
    pub size: u64,
    pub etag: ETag,
    /// Unix milliseconds.
    pub last_modified_ms: i64,
    pub content_type: Option<String>,
    pub cache_control: Option<String>,
    pub content_disposition: Option<String>,
    pub content_encoding: Option<String>,
    pub content_language: Option<String>,
    pub expires: Option<String>,
    /// `x-amz-meta-*` pairs, names without the prefix, in request order.
    pub user_metadata: Vec<(String, String)>,
    pub checksums: Vec<Checksum>,
    /// The size of each part of a multipart object, in order (what
    /// `partNumber` reads address); empty for any other object.
    pub part_sizes: Vec<u64>,
    pub body: ObjectBody,
}

/// An object is deleted: the payload of a `Tombstone` record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectTombstone {
    pub bucket: String,
    pub key: String,
    /// Unix milliseconds.
    pub deleted_ms: i64,
}

/// A version moved forward by compaction: the payload of a `Relocate`
/// record. It is the same version as the record it copies — same `seq`,
/// same object — at a new place, with its extents possibly moved too.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relocation {
    /// The sequence number of the `Commit` or `Tombstone` record that first
    /// wrote this version: the version's identity, which decides what is
    /// newer.
    pub seq: u64,
    /// The segment that first record was written to. Every older version of
    /// the key was written before it (compaction's ordering rule), so a
    /// relocated tombstone is needed only while a segment at or before this
    /// one exists.
    pub origin_segment: SegmentId,
    pub version: RelocatedVersion,
}

#[derive(Debug, Clone, PartialEq, Eq)]
#[allow(
    clippy::large_enum_variant,
    reason = "compaction holds one relocation at a time; boxing would cost an allocation each"
)]
pub enum RelocatedVersion {
    Commit(ObjectCommit),
    Tombstone(ObjectTombstone),
}

impl RelocatedVersion {
    #[must_use]
    pub fn bucket_and_key(&self) -> (&str, &str) {
        match self {
            RelocatedVersion::Commit(commit) => (&commit.bucket, &commit.key),
            RelocatedVersion::Tombstone(tombstone) => (&tombstone.bucket, &tombstone.key),
        }
    }
}

/// Why a payload is not a valid commit or tombstone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeError {
    pub what: &'static str,
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "malformed object record: {}", self.what)
    }
}

impl std::error::Error for DecodeError {}

impl ObjectCommit {
    fn headers(&self) -> [&Option<String>; HEADER_COUNT] {
        [
            &self.content_type,
            &self.cache_control,
            &self.content_disposition,
            &self.content_encoding,
            &self.content_language,
            &self.expires,
        ]
    }

    /// The payload of this object's `Commit` record. The caller has checked
    /// every limit already; a value past one is a bug, and panics.
    #[must_use]
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(256 + self.key.len() + self.body_len_hint());
        out.push(LAYOUT);
        push_name(&mut out, &self.bucket, limits::BUCKET_NAME_BYTES_MAX);
        push_name(&mut out, &self.key, limits::KEY_BYTES_MAX);
        out.extend_from_slice(&self.size.to_le_bytes());
        match self.etag {
            ETag::Md5(digest) => {
                out.push(ETAG_MD5);
                out.extend_from_slice(&digest);
            }
            ETag::Multipart { digest, part_count } => {
                assert!(part_count > 0, "a multipart object has parts");
                assert_eq!(self.part_sizes.len(), usize::from(part_count));
                assert_eq!(self.part_sizes.iter().sum::<u64>(), self.size);
                out.push(ETAG_MULTIPART);
                out.extend_from_slice(&digest);
                out.extend_from_slice(&part_count.to_le_bytes());
                for part_size in &self.part_sizes {
                    out.extend_from_slice(&part_size.to_le_bytes());
                }
            }
        }
        if matches!(self.etag, ETag::Md5(_)) {
            assert!(
                self.part_sizes.is_empty(),
                "only multipart objects have parts"
            );
        }
        out.extend_from_slice(&self.last_modified_ms.to_le_bytes());
        let headers = self.headers();
        let present = headers
            .iter()
            .enumerate()
            .fold(0_u8, |bits, (index, value)| {
                bits | (u8::from(value.is_some()) << index)
            });
        out.push(present);
        for value in headers.into_iter().flatten() {
            push_name(&mut out, value, HEADER_VALUE_BYTES_MAX);
        }
        assert!(
            user_metadata_len(&self.user_metadata) <= limits::USER_METADATA_BYTES_MAX,
            "user metadata past the limit"
        );
        let count = u16::try_from(self.user_metadata.len()).expect("bounded by the byte limit");
        out.extend_from_slice(&count.to_le_bytes());
        for (name, value) in &self.user_metadata {
            push_name(&mut out, name, limits::USER_METADATA_BYTES_MAX);
            push_name(&mut out, value, limits::USER_METADATA_BYTES_MAX);
        }
        assert!(
            self.checksums.len() <= CHECKSUM_COUNT_MAX,
            "too many checksums"
        );
        out.push(u8::try_from(self.checksums.len()).expect("at most CHECKSUM_COUNT_MAX"));
        for checksum in &self.checksums {
            assert_eq!(checksum.value.len(), checksum.algorithm.digest_len());
            let composite = if checksum.composite {
                CHECKSUM_COMPOSITE_BIT
            } else {
                0
            };
            out.push(checksum.algorithm as u8 | composite);
            out.push(u8::try_from(checksum.value.len()).expect("digests are short"));
            out.extend_from_slice(&checksum.value);
        }
        match &self.body {
            ObjectBody::Inline(data) => {
                assert!(data.len() <= INLINE_BYTES_MAX, "inline body too large");
                assert_eq!(data.len() as u64, self.size, "inline body is the object");
                out.push(BODY_INLINE);
                let len = u32::try_from(data.len()).expect("at most INLINE_BYTES_MAX");
                out.extend_from_slice(&len.to_le_bytes());
                out.extend_from_slice(data);
            }
            ObjectBody::Extents(extents) => {
                assert!(extents.len() <= EXTENT_COUNT_MAX, "too many extents");
                assert_eq!(
                    extents.iter().map(|e| u64::from(e.data_len)).sum::<u64>(),
                    self.size,
                    "extents add up to the object"
                );
                out.push(BODY_EXTENTS);
                let count = u32::try_from(extents.len()).expect("at most EXTENT_COUNT_MAX");
                out.extend_from_slice(&count.to_le_bytes());
                for extent in extents {
                    assert!(extent_is_valid(extent), "extent does not frame its data");
                    out.extend_from_slice(&extent.location.segment.to_le_bytes());
                    out.extend_from_slice(&extent.location.offset.to_le_bytes());
                    out.extend_from_slice(&extent.location.len.to_le_bytes());
                    out.extend_from_slice(&extent.data_len.to_le_bytes());
                }
            }
        }
        assert!(out.len() <= record::RECORD_PAYLOAD_BYTES_MAX as usize);
        out
    }

    fn body_len_hint(&self) -> usize {
        match &self.body {
            ObjectBody::Inline(data) => data.len(),
            ObjectBody::Extents(extents) => extents.len() * EXTENT_BYTES,
        }
    }

    pub fn decode(bytes: &[u8]) -> Result<ObjectCommit, DecodeError> {
        let mut reader = Reader { bytes };
        reader.layout()?;
        let bucket = reader.name(limits::BUCKET_NAME_BYTES_MAX, "bucket name too long")?;
        let key = reader.name(limits::KEY_BYTES_MAX, "key too long")?;
        let size = reader.u64()?;
        let mut part_sizes = Vec::new();
        let etag = match reader.u8()? {
            ETAG_MD5 => ETag::Md5(reader.array()?),
            ETAG_MULTIPART => {
                let digest = reader.array()?;
                let part_count = reader.u16()?;
                if part_count == 0 || u32::from(part_count) > limits::PART_COUNT_MAX {
                    return Err(error("multipart ETag part count out of range"));
                }
                if usize::from(part_count) > reader.bytes.len() / 8 {
                    return Err(error("part count past the payload"));
                }
                part_sizes.reserve(usize::from(part_count));
                let mut total: u64 = 0;
                for _ in 0..part_count {
                    let part_size = reader.u64()?;
                    total = total
                        .checked_add(part_size)
                        .ok_or(error("part sizes overflow"))?;
                    part_sizes.push(part_size);
                }
                if total != size {
                    return Err(error("part sizes do not add up to the object size"));
                }
                ETag::Multipart { digest, part_count }
            }
            _ => return Err(error("unknown ETag kind")),
        };
        let last_modified_ms = reader.i64()?;
        let present = reader.u8()?;
        if present >> HEADER_COUNT != 0 {
            return Err(error("unknown optional header"));
        }
        let mut headers: [Option<String>; HEADER_COUNT] = Default::default();
        for (index, header) in headers.iter_mut().enumerate() {
            if present & (1 << index) != 0 {
                *header = Some(reader.name(HEADER_VALUE_BYTES_MAX, "header value too long")?);
            }
        }
        let metadata_count = usize::from(reader.u16()?);
        // Each entry is at least two length prefixes: check before allocating.
        if metadata_count > reader.bytes.len() / 4 {
            return Err(error("metadata count past the payload"));
        }
        let mut user_metadata = Vec::with_capacity(metadata_count);
        for _ in 0..metadata_count {
            let name = reader.name(limits::USER_METADATA_BYTES_MAX, "metadata too long")?;
            let value = reader.name(limits::USER_METADATA_BYTES_MAX, "metadata too long")?;
            user_metadata.push((name, value));
        }
        if user_metadata_len(&user_metadata) > limits::USER_METADATA_BYTES_MAX {
            return Err(error("user metadata past the limit"));
        }
        let checksums = decode_checksums(&mut reader)?;
        let body = decode_body(&mut reader, size)?;
        reader.finish()?;
        let [
            content_type,
            cache_control,
            content_disposition,
            content_encoding,
            content_language,
            expires,
        ] = headers;
        Ok(ObjectCommit {
            bucket,
            key,
            size,
            etag,
            last_modified_ms,
            content_type,
            cache_control,
            content_disposition,
            content_encoding,
            content_language,
            expires,
            user_metadata,
            checksums,
            part_sizes,
            body,
        })
    }
}

impl ObjectTombstone {
    /// The payload of this deletion's `Tombstone` record.
    #[must_use]
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(16 + self.bucket.len() + self.key.len());
        out.push(LAYOUT);
        push_name(&mut out, &self.bucket, limits::BUCKET_NAME_BYTES_MAX);
        push_name(&mut out, &self.key, limits::KEY_BYTES_MAX);
        out.extend_from_slice(&self.deleted_ms.to_le_bytes());
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<ObjectTombstone, DecodeError> {
        let mut reader = Reader { bytes };
        reader.layout()?;
        let bucket = reader.name(limits::BUCKET_NAME_BYTES_MAX, "bucket name too long")?;
        let key = reader.name(limits::KEY_BYTES_MAX, "key too long")?;
        let deleted_ms = reader.i64()?;
        reader.finish()?;
        Ok(ObjectTombstone {
            bucket,
            key,
            deleted_ms,
        })
    }
}

impl Relocation {
    /// Bytes a relocation adds in front of the version's own payload.
    pub const OVERHEAD_BYTES: usize = 1 + 8 + 4 + 1;

    /// The payload of this relocation's `Relocate` record.
    #[must_use]
    pub fn encode(&self) -> Vec<u8> {
        let (kind, version) = match &self.version {
            RelocatedVersion::Commit(commit) => (record::Kind::Commit, commit.encode()),
            RelocatedVersion::Tombstone(tombstone) => (record::Kind::Tombstone, tombstone.encode()),
        };
        let mut out = Vec::with_capacity(Self::OVERHEAD_BYTES + version.len());
        out.push(LAYOUT);
        out.extend_from_slice(&self.seq.to_le_bytes());
        out.extend_from_slice(&self.origin_segment.to_le_bytes());
        out.push(kind as u8);
        out.extend_from_slice(&version);
        assert!(out.len() <= record::RECORD_PAYLOAD_BYTES_MAX as usize);
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<Relocation, DecodeError> {
        let mut reader = Reader { bytes };
        reader.layout()?;
        let seq = reader.u64()?;
        let origin_segment = reader.u32()?;
        let version = match record::Kind::from_u8(reader.u8()?) {
            Some(record::Kind::Commit) => {
                RelocatedVersion::Commit(ObjectCommit::decode(reader.bytes)?)
            }
            Some(record::Kind::Tombstone) => {
                RelocatedVersion::Tombstone(ObjectTombstone::decode(reader.bytes)?)
            }
            _ => return Err(error("unknown relocated version kind")),
        };
        Ok(Relocation {
            seq,
            origin_segment,
            version,
        })
    }
}

/// The checksums of a commit.
fn decode_checksums(reader: &mut Reader<'_>) -> Result<Vec<Checksum>, DecodeError> {
    let checksum_count = usize::from(reader.u8()?);
    if checksum_count > CHECKSUM_COUNT_MAX {
        return Err(error("too many checksums"));
    }
    let mut checksums = Vec::with_capacity(checksum_count);
    for _ in 0..checksum_count {
        let byte = reader.u8()?;
        let algorithm = ChecksumAlgorithm::from_u8(byte & !CHECKSUM_COMPOSITE_BIT)
            .ok_or(error("unknown checksum algorithm"))?;
        let len = usize::from(reader.u8()?);
        if len != algorithm.digest_len() {
            return Err(error("checksum length does not match its algorithm"));
        }
        let value = reader.take(len)?.to_vec();
        checksums.push(Checksum {
            algorithm,
            value,
            composite: byte & CHECKSUM_COMPOSITE_BIT != 0,
        });
    }
    Ok(checksums)
}

/// The body of a commit, which must hold exactly `size` bytes.
pub(super) fn decode_body(reader: &mut Reader<'_>, size: u64) -> Result<ObjectBody, DecodeError> {
    let body = match reader.u8()? {
        BODY_INLINE => {
            let len = reader.u32()? as usize;
            if len > INLINE_BYTES_MAX {
                return Err(error("inline body too large"));
            }
            let data = reader.take(len)?.to_vec();
            if data.len() as u64 != size {
                return Err(error("inline body length is not the object size"));
            }
            ObjectBody::Inline(data)
        }
        BODY_EXTENTS => {
            let count = reader.u32()? as usize;
            if count > EXTENT_COUNT_MAX {
                return Err(error("too many extents"));
            }
            if count > reader.bytes.len() / EXTENT_BYTES {
                return Err(error("extent count past the payload"));
            }
            let mut extents = Vec::with_capacity(count);
            let mut total: u64 = 0;
            for _ in 0..count {
                let extent = Extent {
                    location: Location {
                        segment: reader.u32()?,
                        offset: reader.u64()?,
                        len: reader.u32()?,
                    },
                    data_len: reader.u32()?,
                };
                if !extent_is_valid(&extent) {
                    return Err(error("extent does not frame its data"));
                }
                total += u64::from(extent.data_len);
                extents.push(extent);
            }
            if total != size {
                return Err(error("extents do not add up to the object size"));
            }
            ObjectBody::Extents(extents)
        }
        _ => return Err(error("unknown body kind")),
    };
    Ok(body)
}

/// An extent frames exactly its data: a `Data` record of `data_len` bytes
/// has exactly `location.len` bytes on disk, at an aligned offset.
pub(super) fn extent_is_valid(extent: &Extent) -> bool {
    extent.data_len <= EXTENT_BYTES_MAX
        && extent.location.len == record::record_len(extent.data_len)
        && extent
            .location
            .offset
            .is_multiple_of(u64::from(record::RECORD_ALIGNMENT_BYTES))
}

/// Bytes of user metadata as AWS counts them: names plus values.
fn user_metadata_len(metadata: &[(String, String)]) -> usize {
    metadata
        .iter()
        .map(|(name, value)| name.len() + value.len())
        .sum()
}

pub(super) fn push_name(out: &mut Vec<u8>, text: &str, max: usize) {
    assert!(text.len() <= max, "string past its limit");
    let len = u16::try_from(text.len()).expect("limits fit u16");
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(text.as_bytes());
}

pub(super) fn error(what: &'static str) -> DecodeError {
    DecodeError { what }
}

pub(super) struct Reader<'a> {
    pub(super) bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(super) fn take(&mut self, len: usize) -> Result<&'a [u8], DecodeError> {
        if self.bytes.len() < len {
            return Err(error("field past the end of the payload"));
        }
        let (head, rest) = self.bytes.split_at(len);
        self.bytes = rest;
        Ok(head)
    }
    pub(super) fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        Ok(self.take(N)?.try_into().expect("take returned N bytes"))
    }
    pub(super) fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.array::<1>()?[0])
    }
    pub(super) fn u16(&mut self) -> Result<u16, DecodeError> {
        Ok(u16::from_le_bytes(self.array()?))
    }
    pub(super) fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_le_bytes(self.array()?))
    }
    pub(super) fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_le_bytes(self.array()?))
    }
    pub(super) fn i64(&mut self) -> Result<i64, DecodeError> {
        Ok(i64::from_le_bytes(self.array()?))
    }
    pub(super) fn layout(&mut self) -> Result<(), DecodeError> {
        if self.u8()? == LAYOUT {
            Ok(())
        } else {
            Err(error("unknown payload layout"))
        }
    }
    /// A `str16` of at most `max` bytes.
    pub(super) fn name(
        &mut self,
        max: usize,
        too_long: &'static str,
    ) -> Result<String, DecodeError> {
        let len = usize::from(self.u16()?);
        if len > max {
            return Err(error(too_long));
        }
        let bytes = self.take(len)?;
        std::str::from_utf8(bytes)
            .map(str::to_owned)
            .map_err(|_| error("string is not UTF-8"))
    }
    pub(super) fn finish(&self) -> Result<(), DecodeError> {
        if self.bytes.is_empty() {
            Ok(())
        } else {
            Err(error("trailing bytes"))
        }
    }
}

#[cfg(test)]
#[allow(
    clippy::cast_possible_truncation,
    reason = "test data and lengths are small by construction"
)]
mod tests {
    use super::*;

    fn extent(segment: u32, offset: u64, data_len: u32) -> Extent {
        Extent {
            location: Location {
                segment,
                offset,
                len: record::record_len(data_len),
            },
            data_len,
        }
    }

    fn full_commit() -> ObjectCommit {
        ObjectCommit {
            bucket: "backups-2026".to_owned(),
            key: "photos/2026/été/IMG_0001.jpg".to_owned(),
            size: 2 * u64::from(EXTENT_BYTES_MAX) + 5,
            etag: ETag::Multipart {
                digest: [0xab; 16],
                part_count: 3,
            },
            last_modified_ms: 1_767_225_600_123,
            content_type: Some("image/jpeg".to_owned()),
            cache_control: Some("max-age=3600".to_owned()),
            content_disposition: Some("attachment; filename=\"a.jpg\"".to_owned()),
            content_encoding: Some("identity".to_owned()),
            content_language: Some("fr".to_owned()),
            expires: Some("Thu, 01 Jan 2027 00:00:00 GMT".to_owned()),
            user_metadata: vec![
                ("camera".to_owned(), "x100".to_owned()),
                ("empty".to_owned(), String::new()),
            ],
            checksums: vec![
                Checksum {
                    algorithm: ChecksumAlgorithm::Crc32c,
                    value: vec![1, 2, 3, 4],
                    composite: true,
                },
                Checksum {
                    algorithm: ChecksumAlgorithm::Sha256,
                    value: vec![7; 32],
                    composite: false,
                },
            ],
            part_sizes: vec![u64::from(EXTENT_BYTES_MAX), u64::from(EXTENT_BYTES_MAX), 5],
            body: ObjectBody::Extents(vec![
                extent(1, 0, EXTENT_BYTES_MAX),
                extent(
                    1,
                    u64::from(record::record_len(EXTENT_BYTES_MAX)),
                    EXTENT_BYTES_MAX,
                ),
                extent(2, 4096, 5),
            ]),
        }
    }

    fn small_commit(data: &[u8]) -> ObjectCommit {
        ObjectCommit {
            bucket: "abc".to_owned(),
            key: "k".to_owned(),
            size: data.len() as u64,
            etag: ETag::Md5([0x11; 16]),
            last_modified_ms: -1,
            content_type: None,
            cache_control: None,
            content_disposition: None,
            content_encoding: None,
            content_language: Some("en".to_owned()),
            expires: None,
            user_metadata: Vec::new(),
            checksums: Vec::new(),
            part_sizes: Vec::new(),
            body: ObjectBody::Inline(data.to_vec()),
        }
    }

    #[test]
    fn commit_round_trip() {
        let full = full_commit();
        assert_eq!(ObjectCommit::decode(&full.encode()).unwrap(), full);
        for len in [0, 1, 100, INLINE_BYTES_MAX] {
            let data: Vec<u8> = (0..len).map(|index| index as u8).collect();
            let commit = small_commit(&data);
            assert_eq!(ObjectCommit::decode(&commit.encode()).unwrap(), commit);
        }
        let longest_key = ObjectCommit {
            key: "k".repeat(limits::KEY_BYTES_MAX),
            bucket: "b".repeat(limits::BUCKET_NAME_BYTES_MAX),
            ..small_commit(b"")
        };
        assert_eq!(
            ObjectCommit::decode(&longest_key.encode()).unwrap(),
            longest_key
        );
    }

    #[test]
    fn tombstone_round_trip() {
        let tombstone = ObjectTombstone {
            bucket: "bucket".to_owned(),
            key: "a/b/c".to_owned(),
            deleted_ms: 1_700_000_000_000,
        };
        assert_eq!(
            ObjectTombstone::decode(&tombstone.encode()).unwrap(),
            tombstone
        );
    }

    #[test]
    fn relocation_round_trip_and_truncations() {
        let tombstone = ObjectTombstone {
            bucket: "bucket".to_owned(),
            key: "gone".to_owned(),
            deleted_ms: 7,
        };
        for version in [
            RelocatedVersion::Commit(full_commit()),
            RelocatedVersion::Commit(small_commit(b"inline")),
            RelocatedVersion::Tombstone(tombstone),
        ] {
            let relocation = Relocation {
                seq: 0x0102_0304_0506_0708,
                origin_segment: 42,
                version,
            };
            let bytes = relocation.encode();
            assert_eq!(Relocation::decode(&bytes).unwrap(), relocation);
            for len in 0..bytes.len() {
                assert!(Relocation::decode(&bytes[..len]).is_err(), "length {len}");
            }
            let mut wrong_kind = bytes.clone();
            wrong_kind[13] = record::Kind::Data as u8;
            assert_eq!(
                Relocation::decode(&wrong_kind),
                Err(error("unknown relocated version kind"))
            );
        }
    }

    #[test]
    fn etag_header_values() {
        assert_eq!(
            ETag::Md5([0xd4; 16]).to_header_value(),
            "\"d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4\""
        );
        let multipart = ETag::Multipart {
            digest: [0x0f; 16],
            part_count: 12,
        };
        assert_eq!(
            multipart.to_header_value(),
            "\"0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f-12\""
        );
        assert_eq!(multipart.md5(), None);
    }

    #[test]
    fn every_truncation_and_extension_is_rejected() {
        for bytes in [full_commit().encode(), small_commit(b"hello").encode()] {
            for len in 0..bytes.len() {
                assert!(ObjectCommit::decode(&bytes[..len]).is_err(), "length {len}");
            }
            let mut longer = bytes.clone();
            longer.push(0);
            assert_eq!(ObjectCommit::decode(&longer), Err(error("trailing bytes")));
        }
    }

    #[test]
    fn inconsistent_sizes_are_rejected() {
        let mut commit = full_commit();
        let ObjectBody::Extents(extents) = &mut commit.body else {
            unreachable!()
        };
        // An extent whose record length does not frame its data length.
        extents[2].location.len += 8;
        let mut bytes = full_commit().encode();
        let at = bytes.len() - 8;
        bytes[at..at + 4].copy_from_slice(&(extents[2].location.len).to_le_bytes());
        assert_eq!(
            ObjectCommit::decode(&bytes),
            Err(error("extent does not frame its data"))
        );
        // The size field disagreeing with the parts, and (for a commit
        // that is not multipart) with the extents.
        let size_at = 1 + 2 + "backups-2026".len() + 2 + full_commit().key.len();
        let mut bytes = full_commit().encode();
        bytes[size_at] ^= 1;
        assert_eq!(
            ObjectCommit::decode(&bytes),
            Err(error("part sizes do not add up to the object size"))
        );
        let single = ObjectCommit {
            etag: ETag::Md5([1; 16]),
            part_sizes: Vec::new(),
            ..full_commit()
        };
        let mut bytes = single.encode();
        bytes[size_at] ^= 1;
        assert_eq!(
            ObjectCommit::decode(&bytes),
            Err(error("extents do not add up to the object size"))
        );
    }

    use crate::test_support::Rng;

    #[test]
    fn garbage_never_panics_and_accepted_bytes_are_canonical() {
        // Goal: decode is total on arbitrary input (it will be fuzzed), and
        // whatever it accepts re-encodes to the same bytes, so encode's
        // assertions hold for every decoded value. Method: seeded random
        // byte strings, and valid encodings with random bytes overwritten
        // or cut.
        let mut rng = Rng(0x5eed_0b1e_c7ed_0001);
        let valid = [
            full_commit().encode(),
            small_commit(b"hello world").encode(),
        ];
        let mut accepted = 0;
        for round in 0..200_000 {
            let bytes: Vec<u8> = if round % 2 == 0 {
                let len = rng.below(200) as usize;
                (0..len).map(|_| rng.next() as u8).collect()
            } else {
                let mut bytes = valid[round % 4 / 2].clone();
                for _ in 0..=rng.below(3) {
                    let at = rng.below(bytes.len() as u64) as usize;
                    bytes[at] = rng.next() as u8;
                }
                if rng.below(4) == 0 {
                    bytes.truncate(rng.below(bytes.len() as u64) as usize);
                }
                bytes
            };
            if let Ok(commit) = ObjectCommit::decode(&bytes) {
                assert_eq!(commit.encode(), bytes, "round {round}");
                accepted += 1;
            }
            if let Ok(tombstone) = ObjectTombstone::decode(&bytes) {
                assert_eq!(tombstone.encode(), bytes, "round {round}");
            }
        }
        // Mutations of text fields keep many payloads valid: the canonical
        // check above really ran.
        assert!(accepted > 100, "only {accepted} accepted");
    }
}
