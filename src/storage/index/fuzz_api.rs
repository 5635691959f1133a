//! Pure entry points into the run and manifest readers, for the
//! `index_run` fuzz target (`crate::fuzz_checks`): the file formats stay
//! private to `index`, and the target sees only bytes in, verdicts out.

#![allow(
    clippy::cast_possible_truncation,
    reason = "entries are made from fuzzer-chosen numbers, cut to size on purpose"
)]

use std::ops::Bound;

use rkyv::util::AlignedVec;

use super::manifest::{Manifest, RunRecord};
use super::memtable::Memtable;
use super::merge::{MergeIter, Source};
use super::run::{self, ArchiveSummary};
use super::{Etag, IndexEntry, IndexValue};
use crate::storage::crc;
use crate::storage::location::Location;

/// A run file image, in a buffer aligned as a file mapping is (enough for
/// the archive 32 bytes in).
pub(crate) type RunImage = AlignedVec<16>;

/// The image of a run holding `entries` (any order; later duplicates of a
/// key win), as the writer makes it. `None` if `entries` is empty.
pub(crate) fn encode_run(entries: &[(Vec<u8>, IndexEntry)]) -> Option<RunImage> {
    let newest: std::collections::BTreeMap<&[u8], IndexEntry> = entries
        .iter()
        .map(|(key, entry)| (key.as_slice(), *entry))
        .collect();
    let mut memtable = Memtable::default();
    for (key, entry) in newest {
        memtable.replace(key.into(), entry);
    }
    if memtable.is_empty() {
        return None;
    }
    let source = Source::memtable(&memtable, Bound::Unbounded);
    let bytes = run::encode(MergeIter::new(vec![source], Vec::new(), false)).ok()?;
    let mut image = RunImage::new();
    image.extend_from_slice(&bytes);
    Some(image)
}

/// An index entry from fuzzer-chosen numbers.
pub(crate) fn entry(seq: u64, tombstone: bool, numbers: [u64; 4]) -> IndexEntry {
    let value = if tombstone {
        IndexValue::Tombstone
    } else {
        IndexValue::Object {
            commit: Location {
                segment: numbers[0] as u32,
                offset: numbers[1],
                len: (numbers[0] >> 32) as u32,
            },
            first_segment: numbers[2] as u32,
            size: numbers[3],
            etag: Etag {
                md5: (u128::from(numbers[1]) << 64 | u128::from(numbers[2])).to_le_bytes(),
                part_count: (numbers[2] >> 32) as u32,
            },
            last_modified_ms: numbers[3].cast_signed(),
        }
    };
    IndexEntry { seq, value }
}

/// Rewrites the header of `image` (a run image, or just an archive when
/// shorter than a header is not wanted) so that its length and checksums
/// match the archive after it: damage that a checksum would catch is
/// uninteresting, damage behind a valid checksum is the point. Returns the
/// manifest's record of the result.
pub(crate) fn reseal_run(image: &mut RunImage, entry_count: u32) -> RunRecord {
    if image.len() < run::HEADER_BYTES {
        let missing = run::HEADER_BYTES - image.len();
        image.extend_from_slice(&vec![0; missing]);
    }
    let archive = &image[run::HEADER_BYTES..];
    let summary = ArchiveSummary {
        entry_count,
        archive_len: archive.len() as u64,
        archive_crc: crc::crc32c(archive),
    };
    image[..run::HEADER_BYTES].copy_from_slice(&run::encode_header(summary));
    RunRecord {
        number: 1,
        entry_count,
        archive_crc: summary.archive_crc,
    }
}

/// The record a manifest would keep of `image`, read from its header as
/// is (checksums unchecked).
pub(crate) fn record_from_header(image: &[u8]) -> RunRecord {
    let u32_at = |at: usize| {
        image.get(at..at + 4).map_or(0, |bytes| {
            u32::from_le_bytes(bytes.try_into().expect("4 bytes"))
        })
    };
    RunRecord {
        number: 1,
        entry_count: u32_at(12),
        archive_crc: u32_at(24),
    }
}

/// Opens `image` as `Run::open` would (minus the file), and when it is
/// accepted reads every entry, looks each key up by binary search, and
/// positions range scans at each key. Returns the entries, or why the
/// image was refused.
pub(crate) fn read_run(
    image: &RunImage,
    record: &RunRecord,
) -> Result<Vec<(Vec<u8>, IndexEntry)>, String> {
    run::check_image(image, record)?;
    // SAFETY: `check_image` accepted the image, and a `RunImage` is
    // 16-byte aligned, so the archive 32 bytes in is too.
    let entries = unsafe { run::archived_entries(&image[run::HEADER_BYTES..]) };
    assert_eq!(entries.len(), record.entry_count as usize);
    let mut out = Vec::with_capacity(entries.len());
    for (index, stored) in entries.iter().enumerate() {
        let key = stored.key();
        let entry = stored.entry();
        let found = entries.binary_search_by(|probe| probe.key().cmp(key));
        assert_eq!(
            found,
            Ok(index),
            "keys of an accepted run are sorted and unique"
        );
        assert_eq!(run::lower_bound(entries, Bound::Included(key)), index);
        assert_eq!(run::lower_bound(entries, Bound::Excluded(key)), index + 1);
        out.push((key.to_vec(), entry));
    }
    assert_eq!(run::lower_bound(entries, Bound::Unbounded), 0);
    Ok(out)
}

/// Decodes a manifest; an accepted one must encode back to the same bytes
/// (the format is canonical: sorted buckets, no empty ones, no repeats).
pub(crate) fn manifest_round_trip(bytes: &[u8]) -> Result<(), String> {
    let manifest = Manifest::decode(bytes)?;
    assert_eq!(manifest.encode(), bytes, "{manifest:?}");
    Ok(())
}

/// `body` with the CRC32C a manifest ends with appended.
#[must_use]
pub(crate) fn seal_manifest(body: &[u8]) -> Vec<u8> {
    let mut bytes = body.to_vec();
    bytes.extend_from_slice(&crc::crc32c(body).to_le_bytes());
    bytes
}

/// A manifest as the index writes one (two runs, two buckets), without its
/// trailing CRC: a seed for the fuzz target, which appends the CRC.
#[must_use]
pub(crate) fn example_manifest_body() -> Vec<u8> {
    use super::{BucketStats, Checkpoint, SegmentPosition};
    let manifest = Manifest {
        checkpoint: Checkpoint {
            position: SegmentPosition {
                segment: 3,
                offset: 4096,
            },
            next_seq: 1234,
        },
        next_run_number: 9,
        runs: vec![
            RunRecord {
                number: 4,
                entry_count: 100,
                archive_crc: 0x1234_5678,
            },
            RunRecord {
                number: 8,
                entry_count: 2,
                archive_crc: 0x9abc_def0,
            },
        ],
        stats: [
            (
                "backups".to_owned(),
                BucketStats {
                    object_count: 90,
                    bytes: 1 << 30,
                },
            ),
            (
                "photos".to_owned(),
                BucketStats {
                    object_count: 12,
                    bytes: 4096,
                },
            ),
        ]
        .into_iter()
        .collect(),
    };
    let mut bytes = manifest.encode();
    bytes.truncate(bytes.len() - 4);
    bytes
}
