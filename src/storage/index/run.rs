//! Runs: immutable sorted files of index entries, each an rkyv archive that
//! is memory-mapped and searched in place (format in the module doc of
//! `index`).

use std::io::{self, BufWriter, Write};
use std::ops::Bound;
use std::path::{Path, PathBuf};

use memmap2::Mmap;
use rkyv::rancor::{self, Fallible};
use rkyv::ser::writer::IoWriter;
use rkyv::ser::{Allocator, Writer};
use rkyv::vec::{ArchivedVec, VecResolver};
use rkyv::with::InlineAsBox;
use rkyv::{Archive, Place, Serialize};

use super::manifest::RunRecord;
use super::merge::MergeIter;
use super::{Etag, IndexEntry, IndexError, IndexValue, RUN_ARCHIVE_BYTES_MAX, sync_dir};
use crate::storage::crc::{self, Crc32c};
use crate::storage::fs;
use crate::storage::location::Location;

const MAGIC: &[u8; 8] = b"RSIDXRUN";
const VERSION: u32 = 1;
pub(super) const HEADER_BYTES: usize = 32;
/// The writer's buffer: large enough that the file system sees big writes.
const WRITE_BUFFER_BYTES: usize = 1024 * 1024;

/// One entry as written. The key is borrowed from the memtable or from the
/// input runs, so building a run copies each key once: into the file.
#[derive(Archive, Serialize)]
pub(super) struct RunEntry<'a> {
    #[rkyv(with = InlineAsBox)]
    key: &'a [u8],
    seq: u64,
    value: RunValue,
}

/// `IndexValue` with `Location` and `Etag` flattened into fixed-width
/// fields (those types belong to other modules and carry no rkyv derive).
#[derive(Archive, Serialize, Clone, Copy)]
pub(super) enum RunValue {
    Object {
        segment: u32,
        offset: u64,
        len: u32,
        first_segment: u32,
        size: u64,
        md5: [u8; 16],
        part_count: u32,
        last_modified_ms: i64,
    },
    Tombstone,
}

/// An archived entry as read. The derive gives the archived type the
/// lifetime of `RunEntry`'s borrowed key, but holds no borrow in it.
pub(super) type StoredEntry = ArchivedRunEntry<'static>;

/// The root of a run archive.
pub(super) type ArchivedRun = ArchivedVec<StoredEntry>;

impl<'a> RunEntry<'a> {
    fn new(key: &'a [u8], entry: IndexEntry) -> Self {
        let value = match entry.value {
            IndexValue::Object {
                commit,
                first_segment,
                size,
                etag,
                last_modified_ms,
            } => RunValue::Object {
                segment: commit.segment,
                offset: commit.offset,
                len: commit.len,
                first_segment,
                size,
                md5: etag.md5,
                part_count: etag.part_count,
                last_modified_ms,
            },
            IndexValue::Tombstone => RunValue::Tombstone,
        };
        RunEntry {
            key,
            seq: entry.seq,
            value,
        }
    }
}

impl ArchivedRunEntry<'_> {
    pub(super) fn key(&self) -> &[u8] {
        self.key.get()
    }

    pub(super) fn entry(&self) -> IndexEntry {
        let value = match &self.value {
            ArchivedRunValue::Object {
                segment,
                offset,
                len,
                first_segment,
                size,
                md5,
                part_count,
                last_modified_ms,
            } => IndexValue::Object {
                commit: Location {
                    segment: segment.to_native(),
                    offset: offset.to_native(),
                    len: len.to_native(),
                },
                first_segment: first_segment.to_native(),
                size: size.to_native(),
                etag: Etag {
                    md5: *md5,
                    part_count: part_count.to_native(),
                },
                last_modified_ms: last_modified_ms.to_native(),
            },
            ArchivedRunValue::Tombstone => IndexValue::Tombstone,
        };
        IndexEntry {
            seq: self.seq.to_native(),
            value,
        }
    }
}

// ---------------------------------------------------------------------------
// Writing

/// The archive root: a vector serialized straight from the merge stream,
/// without collecting the entries first.
struct RunArchive<'a> {
    entries: MergeIter<'a>,
    entry_count: usize,
}

impl<'a> Archive for RunArchive<'a> {
    type Archived = ArchivedVec<ArchivedRunEntry<'a>>;
    type Resolver = VecResolver;

    fn resolve(&self, resolver: Self::Resolver, out: Place<Self::Archived>) {
        ArchivedVec::resolve_from_len(self.entry_count, resolver, out);
    }
}

impl<'a, S> Serialize<S> for RunArchive<'a>
where
    S: Fallible + Allocator + Writer + ?Sized,
    RunEntry<'a>: Serialize<S, Archived = ArchivedRunEntry<'a>>,
{
    fn serialize(&self, serializer: &mut S) -> Result<Self::Resolver, S::Error> {
        let entries = Counted {
            entries: self.entries.clone(),
            remaining: self.entry_count,
        };
        ArchivedVec::serialize_from_iter::<RunEntry<'a>, _, _>(entries, serializer)
    }
}

/// The merge stream as an `ExactSizeIterator` of `RunEntry`, which rkyv
/// needs to lay out the vector: the count comes from a first pass.
#[derive(Clone)]
struct Counted<'a> {
    entries: MergeIter<'a>,
    remaining: usize,
}

impl<'a> Iterator for Counted<'a> {
    type Item = RunEntry<'a>;

    fn next(&mut self) -> Option<RunEntry<'a>> {
        let (key, entry) = self.entries.next()?;
        self.remaining = self
            .remaining
            .checked_sub(1)
            .expect("merge stream longer than counted");
        Some(RunEntry::new(key, entry))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.remaining, Some(self.remaining))
    }
}

impl ExactSizeIterator for Counted<'_> {}

/// Passes bytes through, computing their CRC32C and length, and keeps the
/// first I/O error (rkyv's error type would otherwise swallow its kind).
struct CrcWriter<W> {
    inner: W,
    crc: Crc32c,
    len: u64,
    error: Option<io::Error>,
}

impl<W: Write> Write for CrcWriter<W> {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        match self.inner.write(bytes) {
            Ok(written) => {
                self.crc.update(&bytes[..written]);
                self.len += written as u64;
                Ok(written)
            }
            Err(error) if error.kind() == io::ErrorKind::Interrupted => Err(error),
            Err(error) => {
                let kind = error.kind();
                self.error.get_or_insert(error);
                Err(io::Error::new(kind, "run write failed"))
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// What the header says about an archive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct ArchiveSummary {
    pub(super) entry_count: u32,
    pub(super) archive_len: u64,
    pub(super) archive_crc: u32,
}

/// Serialize the merge stream as a run archive into `out`.
fn encode_archive<W: Write>(
    entries: MergeIter<'_>,
    out: W,
) -> Result<(W, ArchiveSummary), IndexError> {
    let entry_count = entries.clone().count();
    let entry_count_u32 = u32::try_from(entry_count)
        .map_err(|_| IndexError::TooLarge(format!("a run of {entry_count} entries")))?;
    let root = RunArchive {
        entries,
        entry_count,
    };
    let mut out = CrcWriter {
        inner: out,
        crc: Crc32c::new(),
        len: 0,
        error: None,
    };
    if let Err(error) =
        rkyv::api::high::to_bytes_in::<_, rancor::Error>(&root, IoWriter::new(&mut out))
    {
        return Err(match out.error.take() {
            Some(io_error) => IndexError::Io(io_error),
            None => IndexError::TooLarge(format!("run archive: {error}")),
        });
    }
    if out.len > RUN_ARCHIVE_BYTES_MAX {
        return Err(IndexError::TooLarge(format!(
            "a run archive of {} bytes",
            out.len
        )));
    }
    let summary = ArchiveSummary {
        entry_count: entry_count_u32,
        archive_len: out.len,
        archive_crc: out.crc.finish(),
    };
    Ok((out.inner, summary))
}

pub(super) fn encode_header(summary: ArchiveSummary) -> [u8; HEADER_BYTES] {
    let mut header = [0; HEADER_BYTES];
    header[0..8].copy_from_slice(MAGIC);
    header[8..12].copy_from_slice(&VERSION.to_le_bytes());
    header[12..16].copy_from_slice(&summary.entry_count.to_le_bytes());
    header[16..24].copy_from_slice(&summary.archive_len.to_le_bytes());
    header[24..28].copy_from_slice(&summary.archive_crc.to_le_bytes());
    let header_crc = crc::crc32c(&header[..28]);
    header[28..32].copy_from_slice(&header_crc.to_le_bytes());
    header
}

fn decode_header(header: &[u8; HEADER_BYTES]) -> Result<ArchiveSummary, String> {
    let u32_at = |at: usize| u32::from_le_bytes(header[at..at + 4].try_into().expect("4 bytes"));
    if crc::crc32c(&header[..28]) != u32_at(28) {
        return Err("header checksum mismatch".into());
    }
    if &header[0..8] != MAGIC {
        return Err("bad magic".into());
    }
    let version = u32_at(8);
    if version != VERSION {
        return Err(format!("unsupported version {version}"));
    }
    Ok(ArchiveSummary {
        entry_count: u32_at(12),
        archive_len: u64::from_le_bytes(header[16..24].try_into().expect("8 bytes")),
        archive_crc: u32_at(24),
    })
}

/// The whole file image of a run holding `entries`: the pure part of
/// [`write`], for tests and the `index_run` fuzz target.
pub(super) fn encode(entries: MergeIter<'_>) -> Result<Vec<u8>, IndexError> {
    let (archive, summary) = encode_archive(entries, Vec::new())?;
    let mut bytes = encode_header(summary).to_vec();
    bytes.extend_from_slice(&archive);
    Ok(bytes)
}

pub(super) fn path(dir: &Path, number: u64) -> PathBuf {
    dir.join(format!("run-{number:08}"))
}

fn tmp_path(dir: &Path, number: u64) -> PathBuf {
    dir.join(format!("run-{number:08}.tmp"))
}

/// The run number of a file named as [`path`] names it.
pub(super) fn parse_name(name: &str) -> Option<u64> {
    let number: u64 = name.strip_prefix("run-")?.parse().ok()?;
    (format!("run-{number:08}") == name).then_some(number)
}

/// The run number of a file named as [`tmp_path`] names it.
pub(super) fn parse_tmp_name(name: &str) -> Option<u64> {
    parse_name(name.strip_suffix(".tmp")?)
}

/// Write the merge stream as run `number` in `dir` (tmp, fdatasync, rename,
/// fsync the directory) and map it. `None` if the stream is empty: no run.
pub(super) fn write(
    dir: &Path,
    number: u64,
    entries: MergeIter<'_>,
) -> Result<Option<Run>, IndexError> {
    if entries.clone().next().is_none() {
        return Ok(None);
    }
    let tmp = tmp_path(dir, number);
    let mut file = fs::File::create(&tmp)?;
    let mut out = BufWriter::with_capacity(WRITE_BUFFER_BYTES, &mut file);
    // The header comes last, once the archive's length and CRC are known.
    out.write_all(&[0; HEADER_BYTES])?;
    let (out, summary) = encode_archive(entries, out)?;
    out.into_inner().map_err(io::IntoInnerError::into_error)?;
    file.write_all_at(&encode_header(summary), 0)?;
    file.sync_data()?;
    drop(file);
    fs::rename(&tmp, &path(dir, number))?;
    sync_dir(dir)?;
    // Check after write: read back through the same path open takes.
    let record = RunRecord {
        number,
        entry_count: summary.entry_count,
        archive_crc: summary.archive_crc,
    };
    Run::open(dir, &record).map(Some)
}

// ---------------------------------------------------------------------------
// Reading

/// A mapped, verified run.
pub(super) struct Run {
    number: u64,
    map: Mmap,
    entry_count: u32,
    archive_crc: u32,
}

impl std::fmt::Debug for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Run")
            .field("number", &self.number)
            .field("entry_count", &self.entry_count)
            .finish_non_exhaustive()
    }
}

impl Run {
    /// Map the run `record` names and check it against its header and
    /// against `record` (see the module doc of `index` for the cost).
    pub(super) fn open(dir: &Path, record: &RunRecord) -> Result<Run, IndexError> {
        let path = path(dir, record.number);
        let corrupted = |what: &str| IndexError::Corrupted(format!("{}: {what}", path.display()));
        let file = match fs::open_read(&path) {
            Ok(file) => file,
            Err(error) if error.kind() == io::ErrorKind::NotFound => {
                return Err(corrupted("named by the manifest but missing"));
            }
            Err(error) => return Err(error.into()),
        };
        let file_len = file.metadata()?.len();
        if file_len < HEADER_BYTES as u64 {
            return Err(corrupted("shorter than its header"));
        }
        // SAFETY: run files are written once under a temporary name and are
        // never modified after their rename; they are only deleted, which
        // leaves existing mappings intact. The data directory is locked by
        // the running process, so no other process of ours writes here;
        // another program truncating the file would make accesses fault
        // (SIGBUS), which is outside what we can defend against.
        let map = unsafe { Mmap::map(&file)? };
        drop(file);
        // Mappings are page-aligned, so the archive 32 bytes in meets
        // rkyv's alignment (at most 8 here).
        let summary = check_image(&map, record).map_err(|what| corrupted(&what))?;
        Ok(Run {
            number: record.number,
            map,
            entry_count: summary.entry_count,
            archive_crc: summary.archive_crc,
        })
    }

    pub(super) fn number(&self) -> u64 {
        self.number
    }

    pub(super) fn record(&self) -> RunRecord {
        RunRecord {
            number: self.number,
            entry_count: self.entry_count,
            archive_crc: self.archive_crc,
        }
    }

    pub(super) fn archive_bytes(&self) -> u64 {
        (self.map.len() - HEADER_BYTES) as u64
    }

    /// The archived entries, sorted by key, read in place.
    pub(super) fn entries(&self) -> &[StoredEntry] {
        // SAFETY: `open` passed these bytes through `check_image` (CRCs,
        // rkyv validation, alignment); the mapping is read-only and the
        // file is never modified (see `open`).
        unsafe { archived_entries(&self.map[HEADER_BYTES..]) }
    }

    pub(super) fn get(&self, key: &[u8]) -> Option<IndexEntry> {
        let entries = self.entries();
        let index = entries
            .binary_search_by(|entry| entry.key().cmp(key))
            .ok()?;
        Some(entries[index].entry())
    }
}

/// Checks the whole image of a run file (header and archive) against its
/// header and against `record`, the manifest's word for it, and returns
/// its summary. Pure, so that [`Run::open`] and the `index_run` fuzz target
/// share it.
///
/// # Panics
/// If the archive (32 bytes into `image`) is not 16-byte aligned: a caller
/// bug (a file mapping always is).
pub(super) fn check_image(image: &[u8], record: &RunRecord) -> Result<ArchiveSummary, String> {
    let Some((header, archive)) = image.split_first_chunk::<HEADER_BYTES>() else {
        return Err("shorter than its header".into());
    };
    let summary = decode_header(header)?;
    if HEADER_BYTES as u64 + summary.archive_len != image.len() as u64 {
        return Err("length does not match its header".into());
    }
    if crc::crc32c(archive) != summary.archive_crc {
        return Err("archive checksum mismatch".into());
    }
    if summary.entry_count != record.entry_count || summary.archive_crc != record.archive_crc {
        return Err("not the run the manifest committed".into());
    }
    if archive.len() < size_of::<ArchivedRun>() {
        return Err("archive shorter than its root".into());
    }
    assert!(
        archive.as_ptr().addr().is_multiple_of(16),
        "run archive misaligned"
    );
    // The checksums say the bytes are what was written, not that what was
    // written is a valid run (a writer bug, a format change, or damage
    // behind a matching CRC): validate the archive once, so that the
    // unchecked accesses of `archived_entries` stay in bounds, and check
    // the order that lookups rely on. Both are errors, never panics.
    let entries = rkyv::access::<ArchivedRun, rancor::Error>(archive)
        .map_err(|error| format!("rkyv validation: {error}"))?;
    if entries.len() != summary.entry_count as usize {
        return Err("entry count does not match its header".into());
    }
    if !entries.windows(2).all(|pair| pair[0].key() < pair[1].key()) {
        return Err("keys not strictly increasing".into());
    }
    Ok(summary)
}

/// The entries of a run archive, read in place.
///
/// # Safety
/// `archive` must have passed [`check_image`] (as the archive part of the
/// image) and be 16-byte aligned.
pub(super) unsafe fn archived_entries(archive: &[u8]) -> &[StoredEntry] {
    // SAFETY: the caller guarantees that `check_image` accepted the bytes:
    // rkyv validated them as an `ArchivedRun` (every relative pointer stays
    // inside the archive, every enum tag is known) and they are aligned.
    let root = unsafe { rkyv::access_unchecked::<ArchivedRun>(archive) };
    root.as_slice()
}

/// The index of the first of the sorted `entries` at or after `start`.
pub(super) fn lower_bound(entries: &[StoredEntry], start: Bound<&[u8]>) -> usize {
    match start {
        Bound::Included(start) => entries.partition_point(|entry| entry.key() < start),
        Bound::Excluded(start) => entries.partition_point(|entry| entry.key() <= start),
        Bound::Unbounded => 0,
    }
}
