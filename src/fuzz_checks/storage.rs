//! Checks of what the storage engine reads back from disk: record frames,
//! the payloads inside them, index runs and the manifest, and the scan that
//! recovery runs over a (possibly damaged) segment.

use std::io;
use std::ops::{ControlFlow, Deref};

use super::Input;
use crate::storage::crc;
use crate::storage::index::fuzz_api;
use crate::storage::location::Location;
use crate::storage::object::{ObjectCommit, ObjectTombstone, Relocation};
use crate::storage::record::{self, FLAG_SEAL, Header, Kind, RecordError};
use crate::storage::segment::{
    ScanEnd, Scanned, ScannedRecord, SegmentFile, SegmentRole, StorageError, scan_until_reading,
};
use crate::storage::shard::uploads::Uploads;
use crate::storage::upload::{UploadCreate, UploadEnd, UploadPart};

/// Target `record`. The first byte picks a mode:
///
/// - 0: `record::decode` over the raw bytes: never panics; an accepted
///   record lies inside the input and re-encodes to exactly its bytes.
/// - 1: a record built from the input (kind, flags, seq, durable offset,
///   payload): it decodes to what was encoded, every proper prefix is
///   `Truncated` (asking for more than the prefix holds), and any one
///   damaged byte (fuzzer-chosen position and XOR mask) is refused.
/// - 2: the payload decoders (commit, tombstone, relocation, and the three
///   multipart records) over the raw bytes: never panic, and the format is
///   canonical, so an accepted payload encodes back to the same bytes (the
///   encoders assert the limits the decoders check: a payload one accepts
///   and the other refuses is a finding).
/// - 3: an upload-state snapshot (the checksum is fixed up, so the decoder
///   is reached): an accepted one re-encodes to a snapshot that decodes
///   and encodes to the same bytes again.
pub fn record(data: &[u8]) {
    let mut input = Input::new(data);
    let mode = input.u8();
    match mode % 4 {
        0 => raw_record(input.rest()),
        1 => built_record(&mut input),
        2 => payloads(input.rest()),
        _ => snapshot(input.rest()),
    }
}

fn raw_record(bytes: &[u8]) {
    match record::decode(bytes) {
        Ok(decoded) => {
            let len = decoded.len as usize;
            assert!(len <= bytes.len());
            assert_eq!(
                decoded.len,
                record::record_len(decoded.payload.len() as u32)
            );
            let mut encoded = Vec::new();
            record::encode_into(&mut encoded, &decoded.header, decoded.payload);
            assert_eq!(
                encoded,
                &bytes[..len],
                "a decoded record re-encodes to its bytes"
            );
        }
        Err(RecordError::Truncated { needed }) => {
            assert!(needed as usize > bytes.len());
            assert!(needed <= record::RECORD_BYTES_MAX);
        }
        Err(RecordError::Corrupted(_)) => {}
    }
}

fn kind_of(byte: u8) -> Kind {
    Kind::from_u8(byte % 8 + 1).expect("1..=8 are kinds")
}

fn built_record(input: &mut Input<'_>) {
    let kind = kind_of(input.u8());
    let flags = if kind == Kind::Padding && input.bool() {
        FLAG_SEAL
    } else {
        0
    };
    let header = Header {
        kind,
        flags,
        seq: input.u64(),
        durable_offset: input.u64(),
    };
    let damage_at = usize::from(input.u16());
    let mask = input.u8();
    let payload = input.rest();
    let mut bytes = Vec::new();
    record::encode_into(&mut bytes, &header, payload);
    let decoded = record::decode(&bytes).expect("an encoded record decodes");
    assert_eq!(decoded.header, header);
    assert_eq!(decoded.payload, payload);
    assert_eq!(decoded.len as usize, bytes.len());
    let probe = |len: usize| match record::decode(&bytes[..len]) {
        Err(RecordError::Truncated { needed }) => {
            assert!(needed as usize > len, "{needed} > {len}");
        }
        other => panic!("a {len}-byte prefix of a record gives {other:?}"),
    };
    for len in (0..bytes.len()).step_by(bytes.len() / 64 + 1) {
        probe(len);
    }
    probe(bytes.len() - 1);
    if mask != 0 {
        let at = damage_at % bytes.len();
        bytes[at] ^= mask;
        assert!(
            record::decode(&bytes).is_err(),
            "a record with byte {at} XOR {mask:#x} is accepted"
        );
    }
}

fn payloads(bytes: &[u8]) {
    if let Ok(commit) = ObjectCommit::decode(bytes) {
        assert_eq!(commit.encode(), bytes, "{commit:?}");
    }
    if let Ok(tombstone) = ObjectTombstone::decode(bytes) {
        assert_eq!(tombstone.encode(), bytes, "{tombstone:?}");
    }
    if let Ok(relocation) = Relocation::decode(bytes) {
        assert_eq!(relocation.encode(), bytes, "{relocation:?}");
        let _ = relocation.version.bucket_and_key();
    }
    if let Ok(create) = UploadCreate::decode(bytes) {
        assert_eq!(create.encode(), bytes, "{create:?}");
    }
    if let Ok(part) = UploadPart::decode(bytes) {
        assert_eq!(part.encode(), bytes, "{part:?}");
        let _ = part.extent_segments().count();
    }
    if let Ok(end) = UploadEnd::decode(bytes) {
        assert_eq!(end.encode(), bytes, "{end:?}");
    }
}

fn snapshot(body: &[u8]) {
    let mut bytes = body.to_vec();
    bytes.extend_from_slice(&crc::crc32c(body).to_le_bytes());
    let Ok(uploads) = Uploads::decode_snapshot(&bytes) else {
        return;
    };
    let encoded = uploads.encode_snapshot();
    let again = Uploads::decode_snapshot(&encoded)
        .unwrap_or_else(|error| panic!("a re-encoded snapshot is refused: {error}"));
    assert_eq!(
        again.encode_snapshot(),
        encoded,
        "snapshot encoding is stable"
    );
}

/// Target `index_run`. The first byte picks a mode:
///
/// - 0: a run file image as is, checked against the record its own header
///   claims: refused or read without panic.
/// - 1: a run archive behind a header fixed up to match it (length and
///   both checksums, so the checks reach the archive itself): the bytes
///   past the checksums are what a bug, a bad disk behind a lucky CRC or
///   an rkyv change would produce, and must be refused cleanly or read
///   consistently (sorted unique keys, in-bounds everything).
/// - 2: a real run built from fuzzer-chosen entries: it reads back exactly;
///   then one byte is damaged and the header resealed as in mode 1.
/// - 3: a manifest (its CRC fixed up): refused, or accepted and canonical.
pub fn index_run(data: &[u8]) {
    let mut input = Input::new(data);
    let mode = input.u8();
    match mode % 4 {
        0 => {
            let mut image = fuzz_api::RunImage::new();
            image.extend_from_slice(input.rest());
            let record = fuzz_api::record_from_header(&image);
            let _ = fuzz_api::read_run(&image, &record);
        }
        1 => {
            let entry_count = u32::from(input.u16());
            let mut image = fuzz_api::RunImage::new();
            image.extend_from_slice(&[0; 32]);
            image.extend_from_slice(input.rest());
            let record = fuzz_api::reseal_run(&mut image, entry_count);
            let _ = fuzz_api::read_run(&image, &record);
        }
        2 => built_run(&mut input),
        _ => {
            let _ = fuzz_api::manifest_round_trip(&fuzz_api::seal_manifest(input.rest()));
        }
    }
}

fn built_run(input: &mut Input<'_>) {
    let count = usize::from(input.u8() % 32);
    let mut entries = Vec::with_capacity(count);
    for seq in 0..count as u64 {
        let key = input.short_bytes().to_vec();
        let tombstone = input.bool();
        let numbers = [input.u64(), input.u64(), input.u64(), input.u64()];
        entries.push((key, fuzz_api::entry(seq + 1, tombstone, numbers)));
    }
    let Some(mut image) = fuzz_api::encode_run(&entries) else {
        assert!(entries.is_empty());
        return;
    };
    // BTreeMap: sorted by key, and the last entry of a key wins.
    let expected: Vec<_> = entries
        .iter()
        .cloned()
        .collect::<std::collections::BTreeMap<_, _>>()
        .into_iter()
        .collect();
    let record = fuzz_api::record_from_header(&image);
    let read = fuzz_api::read_run(&image, &record).expect("a run as written opens");
    assert_eq!(read, expected);
    let damage_at = usize::from(input.u16());
    let mask = input.u8();
    if mask != 0 {
        let at = 32 + damage_at % (image.len() - 32);
        image[at] ^= mask;
        let record = fuzz_api::reseal_run(&mut image, record.entry_count);
        let _ = fuzz_api::read_run(&image, &record);
    }
}

/// A segment file in memory: the scan's view of a disk image.
struct ImageFile(Vec<u8>);

/// Bytes of an [`ImageFile`], copied as a real read copies them.
struct Bytes(Vec<u8>);

impl Deref for Bytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.0
    }
}

impl SegmentFile for ImageFile {
    type Buffer = Vec<u8>;
    type Bytes = Bytes;

    fn alloc_buffer(&self, len: usize) -> Vec<u8> {
        vec![0; len]
    }
    async fn write_at(&self, _buffer: Vec<u8>, _offset: u64) -> io::Result<usize> {
        unreachable!("a scan does not write")
    }
    async fn read_at(&self, offset: u64, len: usize) -> io::Result<Bytes> {
        let start = usize::try_from(offset).map_or(self.0.len(), |at| at.min(self.0.len()));
        let end = start.saturating_add(len).min(self.0.len());
        Ok(Bytes(self.0[start..end].to_vec()))
    }
    async fn fdatasync(&self) -> io::Result<()> {
        unreachable!("a scan does not sync")
    }
    async fn truncate(&self, _len: u64) -> io::Result<()> {
        unreachable!("a scan does not truncate")
    }
    async fn allocate(&self, _len: u64) -> io::Result<()> {
        unreachable!("a scan does not allocate")
    }
    async fn file_len(&self) -> io::Result<u64> {
        Ok(self.0.len() as u64)
    }
}

/// One record a scan visited, owned.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Visited {
    location: Location,
    kind: Kind,
    seq: u64,
    payload: Vec<u8>,
}

/// What a scan reported: the records visited, and how it ended (for an
/// error, only where the damage is).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Scan {
    records: Vec<Visited>,
    end: Result<ScanEnd, Option<u64>>,
}

/// Runs the real, chunked, async scan over `image`. Nothing in it needs a
/// glommio reactor (it awaits only the file), so any executor drives it.
fn real_scan(image: &[u8], from_offset: u64, role: SegmentRole, read_bytes: usize) -> Scan {
    let file = ImageFile(image.to_vec());
    let mut records = Vec::new();
    let scanned = futures_lite::future::block_on(scan_until_reading(
        &file,
        7,
        from_offset,
        role,
        read_bytes,
        |record| {
            let ScannedRecord {
                location,
                kind,
                seq,
                payload,
            } = record;
            records.push(Visited {
                location,
                kind,
                seq,
                payload: payload.to_vec(),
            });
            Ok(ControlFlow::Continue(()))
        },
    ));
    let end = scanned.map(|scanned| match scanned {
        Scanned::End(end) => end,
        Scanned::Stopped { .. } => unreachable!("the visitor never stops"),
    });
    let end = end.map_err(|error| match error {
        StorageError::Corrupted {
            segment, offset, ..
        } => {
            assert_eq!(segment, 7);
            Some(offset)
        }
        other => panic!("an in-memory scan fails with {other:?}"),
    });
    Scan { records, end }
}

/// The scan rules of `segment`'s module doc, over a whole image in memory,
/// written as plainly as possible: the reference the real scan must agree
/// with.
fn reference_scan(image: &[u8], from_offset: u64, role: SegmentRole) -> Scan {
    let len = image.len() as u64;
    let mut records = Vec::new();
    let mut offset = from_offset;
    let mut last_seq: Option<u64> = None;
    let at = |offset: u64| &image[offset as usize..];
    let fail = |records: Vec<Visited>, offset: u64| Scan {
        records,
        end: Err(Some(offset)),
    };
    if from_offset > len {
        return fail(records, from_offset);
    }
    loop {
        if offset >= len {
            return match role {
                SegmentRole::Sealed => fail(records, offset),
                SegmentRole::Last => Scan {
                    records,
                    end: Ok(ScanEnd::Open { offset, last_seq }),
                },
            };
        }
        let head_len = (len - offset).min(u64::from(record::HEADER_BYTES)) as usize;
        let zeros = at(offset)[..head_len].iter().all(|byte| *byte == 0);
        let decoded = if zeros {
            None
        } else {
            record::decode(at(offset)).ok()
        };
        if let Some(decoded) = decoded {
            if last_seq.is_some_and(|previous| decoded.header.seq != previous + 1)
                || decoded.header.durable_offset > offset
            {
                return fail(records, offset);
            }
            last_seq = Some(decoded.header.seq);
            let end = offset + u64::from(decoded.len);
            if decoded.header.kind != Kind::Padding {
                records.push(Visited {
                    location: Location {
                        segment: 7,
                        offset,
                        len: decoded.len,
                    },
                    kind: decoded.header.kind,
                    seq: decoded.header.seq,
                    payload: decoded.payload.to_vec(),
                });
            } else if decoded.header.flags & FLAG_SEAL != 0 {
                if let Some(index) = at(end).iter().position(|byte| *byte != 0) {
                    return fail(records, end + index as u64);
                }
                return Scan {
                    records,
                    end: Ok(ScanEnd::Sealed {
                        offset: end,
                        last_seq,
                    }),
                };
            }
            offset = end;
            continue;
        }
        // Damage at `offset`.
        if role == SegmentRole::Sealed {
            return fail(records, offset);
        }
        let mut later = (offset + 8..len).step_by(8);
        let proof = later.any(|candidate| {
            record::decode(at(candidate)).is_ok_and(|decoded| {
                decoded.header.durable_offset > offset
                    && last_seq.is_none_or(|seq| decoded.header.seq > seq)
            })
        });
        if proof {
            return fail(records, offset);
        }
        let end = if at(offset).iter().all(|byte| *byte == 0) {
            ScanEnd::Open { offset, last_seq }
        } else {
            ScanEnd::TornTail { offset, last_seq }
        };
        return Scan {
            records,
            end: Ok(end),
        };
    }
}

/// One record of a segment image built by [`build_segment`].
struct Built {
    offset: u64,
    len: u64,
    header: Header,
}

/// A segment image as the writer lays it out: records back to back from
/// offset 0 with consecutive `seq`s, each with a `durable_offset` at or
/// before its own offset, optionally ending with a seal padded to a block
/// boundary, then zeros. Payloads are counting patterns, which never hold
/// a record's magic, so the only records in the image are these.
fn build_segment(input: &mut Input<'_>) -> (Vec<u8>, Vec<Built>) {
    let mut image = Vec::new();
    let mut built = Vec::new();
    let mut seq = u64::from(input.u16()) + 1;
    let mut durable = 0;
    let count = input.u8() % 24;
    for _ in 0..count {
        let kind_byte = input.u8();
        let kind = kind_of(kind_byte);
        // Small payloads: the scan reads in small pieces here (see
        // `real_scan`), so records still straddle its reads.
        let payload_len = usize::from(input.u16() % 600);
        let fill = input.u8() & 0x3f;
        let payload: Vec<u8> = (0..payload_len)
            .map(|i| fill.wrapping_add(i as u8))
            .collect();
        let offset = image.len() as u64;
        // The durable offset: some earlier record boundary (or 0).
        if input.bool() {
            durable = offset;
        }
        let header = Header {
            kind: if kind == Kind::Padding {
                Kind::Data
            } else {
                kind
            },
            flags: 0,
            seq,
            durable_offset: durable,
        };
        record::encode_into(&mut image, &header, &payload);
        built.push(Built {
            offset,
            len: image.len() as u64 - offset,
            header,
        });
        seq += 1;
    }
    if input.bool() {
        // The seal: a padding record ending on a 4 KiB boundary.
        let offset = image.len() as u64;
        let header_end = offset + u64::from(record::HEADER_BYTES);
        let payload_len = header_end.next_multiple_of(4096) - header_end;
        let header = Header {
            kind: Kind::Padding,
            flags: FLAG_SEAL,
            seq,
            durable_offset: offset,
        };
        record::encode_into(&mut image, &header, &vec![0; payload_len as usize]);
        built.push(Built {
            offset,
            len: image.len() as u64 - offset,
            header,
        });
    }
    let zeros = usize::from(input.u8()) * 8;
    image.resize(image.len() + zeros, 0);
    (image, built)
}

/// Target `segment_recovery`: `storage::segment::scan` over a segment image,
/// through an in-memory `SegmentFile` driven by a plain `block_on`, in
/// reads of a fuzzer-chosen size (the second byte: 32 bytes to 4 KiB, or
/// the real 1 MiB), so that records straddle reads in small images.
///
/// The first byte picks the image: the raw input, or (odd) a real segment
/// built from the input then damaged (XOR masks at fuzzer-chosen offsets,
/// a zeroed range, a truncation). The scan runs from offset 0 and from a
/// record boundary, in both roles, and must agree with a plain reference
/// implementation of the rules (records visited, end, where the damage
/// is). For a built image it must also visit every record before the first
/// damaged byte exactly as written, never one after it in the `Sealed`
/// role, and end a `Last` segment at the first damaged record or refuse it.
pub fn segment_recovery(data: &[u8]) {
    let mut input = Input::new(data);
    let mode = input.u8();
    // Read size: 32 bytes (a header) up to 4 KiB, or the real 1 MiB.
    let read_bytes = match input.u8() {
        0 => crate::storage::segment::SCAN_READ_BYTES,
        size => usize::from(size) * 16 + 16,
    };
    let (image, built) = if mode & 1 == 0 {
        (input.rest().to_vec(), None)
    } else {
        let (original, built) = build_segment(&mut input);
        let mut image = original.clone();
        for _ in 0..input.u8() % 4 {
            let at = input.u32() as usize;
            let mask = input.u8();
            if !image.is_empty() {
                let at = at % image.len();
                image[at] ^= mask;
            }
        }
        if input.bool() && !image.is_empty() {
            let start = input.u32() as usize % image.len();
            let len = usize::from(input.u16());
            let end = (start + len).min(image.len());
            image[start..end].fill(0);
        }
        if input.bool() {
            let keep = input.u32() as usize % (image.len() + 1);
            image.truncate(keep);
        }
        (image, Some((original, built)))
    };

    for role in [SegmentRole::Sealed, SegmentRole::Last] {
        let real = real_scan(&image, 0, role, read_bytes);
        let reference = reference_scan(&image, 0, role);
        assert_eq!(real, reference, "scan from 0 as {role:?}");
        for visited in &real.records {
            assert!(visited.location.end() <= image.len() as u64);
        }
        // From a checkpoint: the end of some record the scan visited.
        if let Some(visited) = real
            .records
            .get(usize::from(mode >> 1) % (real.records.len() + 1))
        {
            let from = visited.location.end();
            let real = real_scan(&image, from, role, read_bytes);
            let reference = reference_scan(&image, from, role);
            assert_eq!(real, reference, "scan from {from} as {role:?}");
        }
    }

    if let Some((original, built)) = built {
        check_built_verdicts(&image, &original, &built, read_bytes);
    }
}

/// The verdicts on a damaged image of a segment whose records are known.
fn check_built_verdicts(image: &[u8], original: &[u8], built: &[Built], read_bytes: usize) {
    let first_change = original
        .iter()
        .zip(image)
        .position(|(a, b)| a != b)
        .or_else(|| (image.len() < original.len()).then_some(image.len()));
    let records_end = built.last().map_or(0, |last| last.offset + last.len);
    // The first record the damage reaches, and where it starts.
    let damaged_record = first_change.map(|change| {
        built
            .iter()
            .position(|record| change < (record.offset + record.len) as usize)
            .unwrap_or(built.len())
    });
    let intact = damaged_record.unwrap_or(built.len());
    let sealed = built
        .last()
        .is_some_and(|last| last.header.flags & FLAG_SEAL != 0);
    for role in [SegmentRole::Sealed, SegmentRole::Last] {
        let scan = real_scan(image, 0, role, read_bytes);
        // Every record before the damage is visited as written (the seal
        // is not visited), and nothing else before an error.
        let expected: Vec<u64> = built[..intact]
            .iter()
            .filter(|record| record.header.kind != Kind::Padding)
            .map(|record| record.header.seq)
            .collect();
        let visited: Vec<u64> = scan.records.iter().map(|record| record.seq).collect();
        assert!(
            visited.starts_with(&expected),
            "{role:?}: visited {visited:?}, intact {expected:?}"
        );
        for record in &scan.records[..expected.len()] {
            let original_record = &built[built
                .iter()
                .position(|b| b.header.seq == record.seq)
                .expect("a built record")];
            assert_eq!(record.location.offset, original_record.offset);
        }
        // Nothing at or after the damage is visited: the damaged record
        // fails its checks, and payloads never hold a record's magic.
        assert_eq!(
            scan.records.len(),
            expected.len(),
            "{role:?}: a record at or after the damage was visited"
        );
        let damage_offset = if intact < built.len() {
            built[intact].offset
        } else {
            records_end
        };
        match (role, &scan.end) {
            (SegmentRole::Sealed, Ok(end)) => {
                assert!(
                    sealed && intact == built.len(),
                    "a damaged segment passes as sealed"
                );
                assert_eq!(end.offset(), records_end);
            }
            (SegmentRole::Last, Ok(end)) => {
                if first_change.is_none() || (sealed && intact == built.len()) {
                    assert_eq!(end.offset(), records_end, "{end:?}");
                } else {
                    assert_eq!(end.offset(), damage_offset, "{end:?}");
                }
            }
            (_, Err(_)) => {}
        }
    }
}
