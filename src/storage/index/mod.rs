//! The per-shard object index: for every `(bucket, key)` of one shard, the
//! newest commit record (or tombstone) and where it is in the segments.
//!
//! It owns the files of one index directory (`MANIFEST`, `run-NNNNNNNN`) and
//! the in-memory memtable. It does not own the segments, sequence numbers or
//! the replay of the segment tail at start: the shard assigns a `seq` to
//! every record it appends, inserts the record here once it is durable, and
//! after [`Index::open`] replays every record after the returned
//! [`Checkpoint`]. The segments are the source of truth; the index is a
//! checkpoint of them that can always be rebuilt (STYLE.md §7).
//!
//! # Shape
//!
//! A small log-structured merge tree, owned by one core (no locks):
//!
//! - the **memtable**, an ordered map of the newest entries since the last
//!   flush;
//! - while a flush runs on a blocking thread, the **frozen** memtable it is
//!   writing, still read from;
//! - the **runs**, immutable sorted files, oldest first. Each is an rkyv
//!   archive written once, memory-mapped and binary-searched in place: a
//!   lookup touches `O(log n)` archived entries and deserializes nothing
//!   but the one it returns.
//!
//! For one key, a newer source always holds a `seq` at least as high as an
//! older one: [`Index::insert`] ignores a record that is not newer than
//! what the index already knows for its key, [`Index::relocate`] replaces
//! an entry only with the same version at a new place (compaction moved
//! it; same `seq`), a flush turns the memtable into the newest run, and a
//! merge replaces a contiguous window of runs by one run in the same place.
//! A point lookup therefore stops at the first source that knows the key;
//! a range scan and a merge take the highest `seq`, and on a tie the newest
//! source (the relocated place).
//!
//! A listing ([`Index::range`]) is a k-way merge of all sources, each
//! positioned by binary search, producing one key at a time; it never reads
//! past the page the caller takes. [`IndexRange::skip_prefix`] re-seeks the
//! sources past a common prefix, so a listing with a delimiter costs one
//! seek per common prefix rather than a scan of the keys under it.
//!
//! # Keys
//!
//! `(bucket, key)` is stored as one byte string,
//!
//! ```text
//! +----------------+-------------------+----------------------+
//! | bucket_len u8  | bucket (UTF-8)    | key (UTF-8)          |
//! +----------------+-------------------+----------------------+
//! ```
//!
//! so that byte order is: all keys of one bucket together, and inside a
//! bucket the keys in UTF-8 binary order, which is the order S3 lists them
//! in. Buckets sort by (length, name), which nothing depends on: listing is
//! always inside one bucket. A prefix query inside a bucket is a prefix of
//! the encoded bytes, so it is one contiguous range.
//!
//! # Run file `run-NNNNNNNN` (little-endian)
//!
//! ```text
//! offset  size  field
//!      0     8  magic "RSIDXRUN"
//!      8     4  version (1)
//!     12     4  entry count n (u32; rkyv lengths are u32)
//!     16     8  archive length in bytes (u64); file length = 32 + this
//!     24     4  CRC32C of the archive bytes
//!     28     4  CRC32C of bytes 0..28 (this header)
//!     32     …  archive: rkyv 0.8, little-endian, aligned primitives,
//!               32-bit relative pointers, root at the end
//! ```
//!
//! The archive is an `ArchivedVec<ArchivedRunEntry>` of `n` entries sorted
//! by key, one per key (the newest version the run knows), laid out by rkyv
//! as: every key's bytes (in key order, unaligned), zero padding to 16, the
//! entry array, then the 8-byte root (relative pointer i32 to the array,
//! length u32). A relative pointer counts from its own position. Padding is
//! zero, so equal runs are equal bytes. One archived entry is 80 bytes:
//!
//! ```text
//! offset  size  field
//!      0     8  key: relative pointer i32 to its bytes, length u32
//!      8     8  seq u64
//!     16     1  tag: 0 = Object, 1 = Tombstone (3 bytes padding)
//!     20     4  commit segment u32              } Object only; all zero
//!     24     8  commit offset u64               } for a Tombstone
//!     32     4  commit len u32                  }
//!     36     4  first segment u32               }
//!     40     8  size u64                        }
//!     48    16  ETag MD5                        }
//!     64     4  ETag part count u32 (4 padding) }
//!     72     8  last_modified_ms i64            }
//! ```
//!
//! The archive starts 32 bytes into a page-aligned mapping, so its
//! alignment (at most 8) holds in the mapping. The layout is pinned by a
//! golden test: an rkyv upgrade that changed it would fail that test
//! instead of misreading old runs.
//!
//! # Manifest `MANIFEST` (little-endian)
//!
//! ```text
//! magic "RSIDXMAN" (8) | version u32 (1)
//! checkpoint: segment u32 | offset u64 | next_seq u64
//! next_run_number u64
//! run count r u32   | r × { number u64, entry_count u32, archive_crc32c u32 }  (oldest first)
//! bucket count b u32| b × { name_len u8, name, object_count u64, bytes u64 } (sorted, count > 0)
//! CRC32C of every byte before it, u32
//! ```
//!
//! The manifest is the commit point of every change to the set of runs.
//! Each run record repeats the run header's entry count and archive CRC, so
//! a run file that is whole but is not the one the manifest committed (a
//! leftover of an older life of the directory, say) is caught at open.
//!
//! The per-bucket statistics (object count, bytes) are those of the state at
//! the checkpoint, persisted here so that open does not read every entry:
//! the index keeps them exact incrementally on every insert (it looks up the
//! previous version anyway, to apply the newer-`seq`-wins rule), and the
//! replay of the segment tail after open brings them up to date.
//!
//! # What we assume of the disk
//!
//! `rename` within one directory is atomic; `fdatasync` on a file makes its
//! bytes and length durable; `fsync` on the directory makes names created,
//! renamed and removed in it durable. Writes are not assumed atomic: every
//! file is written under a temporary name and renamed only after it is
//! durable, and a file that fails its checks is damage, never "a write in
//! progress".
//!
//! # Flush, merge and the crash points
//!
//! A flush writes `run-N.tmp`, fdatasyncs it, renames it to `run-N`, fsyncs
//! the directory, then writes `MANIFEST.tmp` (new run list, new checkpoint,
//! statistics), fdatasyncs it, renames it to `MANIFEST` and fsyncs the
//! directory. A merge writes its output run the same way, commits a
//! manifest naming it in place of its inputs, and then deletes the inputs.
//! `open` keeps exactly what `MANIFEST` names and deletes every `*.tmp` and
//! every run file it does not name. So a crash
//!
//! - *while a run or the manifest is written* leaves a `.tmp` file: deleted;
//!   the old manifest still rules, the shard replays from the old
//!   checkpoint and the memtable is rebuilt from the segments;
//! - *after a run's rename, before the manifest's* leaves a complete run
//!   that no manifest names: deleted, same outcome;
//! - *after a merge's manifest, before its inputs are deleted* leaves the
//!   inputs as unnamed runs: deleted; the merged run is used;
//! - *at any moment* leaves `MANIFEST` either wholly old or wholly new.
//!
//! A missing manifest is an empty index with the checkpoint at the start of
//! the first segment. A damaged manifest, a damaged run, or a run named by
//! the manifest that is missing is an error: the shard may rebuild the
//! index from the segments, but that is its decision, not something to do
//! silently.
//!
//! # Start-up cost
//!
//! Open reads the manifest (bounded by [`MANIFEST_BYTES_MAX`]) and maps each
//! run: no allocation or deserialization per entry. One pass per run is not
//! `O(1)`: the CRC32C of the archive is checked, because a bad byte must be
//! an error (DESIGN.md principle 5), and then rkyv validates the archive
//! and the keys' order is checked, because a matching checksum only says
//! the bytes are what was written: a writer bug or a format mistake behind
//! a good CRC must be an error too, not an out-of-bounds read (release
//! builds used to trust the CRC alone; see the `index_run` fuzz target).
//! After that the archive is read with `access_unchecked`. The
//! passes are sequential reads of the mapping and leave the index in the
//! page cache, where lookups want it: for a 124 MB run of one million
//! objects, the CRC takes about 8 ms and the whole check about 21 ms
//! (release build, from memory, measured on the 2-core development VM). If they ever dominate start-up,
//! the next step is per-block checksums verified on first touch.
//!
//! # Background work
//!
//! Flush and merge are split in three: `start_*` on the owning core (O(1)
//! besides copying the small per-bucket statistics), `execute` on a blocking
//! thread (all CPU work of building the archive and all file I/O; the job
//! is `Send`), and `finish_*` back on the core (O(number of runs)). One job
//! runs at a time: both write the manifest, so a second job would have to
//! know the first one's outcome. A job that fails before its manifest is
//! renamed into place ([`IndexError::NotCommitted`]: a full disk while
//! writing the run, say) changed nothing a start reads: the index is as
//! before it (a flush's frozen entries go back into the memtable) and the
//! job may run again. A job that fails later (the directory sync after
//! the manifest's rename) leaves the index unsure of what is durable: it
//! stays readable but refuses further jobs ([`IndexError::PreviousIo`])
//! until the shard restarts and recovers (STYLE.md §2, fail-stop).
//!
//! The flush thresholds are a policy, not a hard bound: while a long merge
//! runs, the memtable keeps growing. The shard should slow writers down if
//! [`Index::memtable_len`] runs far past [`MEMTABLE_ENTRY_COUNT_FLUSH`].

#[doc(hidden)]
pub(crate) mod fuzz_api;
mod manifest;
mod memtable;
mod merge;
mod run;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::fmt;
use std::ops::{Bound, Range};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::crash_point::crash_point;
use crate::limits;
use crate::storage::fs;
use crate::storage::location::{Location, SegmentId};

use manifest::Manifest;
use memtable::Memtable;
use merge::{MergeIter, Source};
use run::Run;

/// Flush the memtable once it holds this many entries. A flush of 64 Ki
/// entries writes about 8 MiB of run (80 bytes per entry plus the keys) in
/// well under a second, and keeps the segment tail replayed at start short.
pub const MEMTABLE_ENTRY_COUNT_FLUSH: usize = 64 * 1024;

/// Flush the memtable once its entries take about this much memory (keys
/// plus entries plus map overhead, estimated). With keys near the 1 KiB
/// maximum this triggers before the entry count does.
pub const MEMTABLE_BYTES_FLUSH: usize = 32 * 1024 * 1024;

/// Merge once there are more runs than this: every point lookup that misses
/// the memtable binary-searches each run, and every listing merges them.
pub const RUN_COUNT_MERGE: usize = 4;

/// The most runs a manifest may name. Past it, a flush fails with
/// [`IndexError::TooLarge`] until merges catch up; with the policy above a
/// shard never comes close, and the bound keeps a damaged manifest from
/// asking for an absurd number of mappings.
pub const RUN_COUNT_MAX: usize = 64;

/// Largest archive in one run. rkyv's default 32-bit relative pointers
/// reach at most 2 GiB from an entry to its key bytes, so an archive must
/// stay below that; at about 130 bytes per entry with 50-byte keys it is
/// around 15 million objects per shard (enabling rkyv's
/// `pointer_width_64` feature would lift it at the cost of 8 more bytes per
/// entry).
pub const RUN_ARCHIVE_BYTES_MAX: u64 = 0x7FFF_FFFF;

/// Largest manifest. It holds at most [`RUN_COUNT_MAX`] run records and one
/// statistics record per bucket (at most 80 bytes each).
pub const MANIFEST_BYTES_MAX: u64 = 1024 * 1024;

/// Longest encoded key: length byte, bucket name, key.
pub const ENCODED_KEY_BYTES_MAX: usize = 1 + limits::BUCKET_NAME_BYTES_MAX + limits::KEY_BYTES_MAX;

const _: () = assert!(limits::BUCKET_NAME_BYTES_MAX <= u8::MAX as usize);
const _: () = assert!(RUN_COUNT_MERGE < RUN_COUNT_MAX);
const _: () = assert!(
    (64 + RUN_COUNT_MAX * 16 + limits::BUCKET_COUNT_MAX * (1 + limits::BUCKET_NAME_BYTES_MAX + 16))
        as u64
        <= MANIFEST_BYTES_MAX
);

// ---------------------------------------------------------------------------
// Values

/// `(bucket, key)`, encoded so that byte order is listing order (see the
/// module doc).
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct IndexKey {
    bytes: Box<[u8]>,
}

impl IndexKey {
    /// The bucket name and key must be within their S3 limits; the S3 layer
    /// checks them before anything reaches a shard, so a longer one here is
    /// a broken invariant.
    #[must_use]
    pub fn new(bucket: &str, key: &str) -> IndexKey {
        let mut buffer = [0; ENCODED_KEY_BYTES_MAX];
        IndexKey {
            bytes: encode_key_into(&mut buffer, bucket, key).into(),
        }
    }

    /// A key from its encoded form, as [`Index::objects_after`] returns it.
    #[must_use]
    pub fn from_encoded(bytes: &[u8]) -> IndexKey {
        split_key(bytes);
        IndexKey {
            bytes: bytes.into(),
        }
    }

    #[must_use]
    pub fn bucket(&self) -> &str {
        split_key(&self.bytes).0
    }

    #[must_use]
    pub fn key(&self) -> &str {
        split_key(&self.bytes).1
    }

    /// The encoded form.
    #[must_use]
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }
}

impl fmt::Debug for IndexKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}/{:?}", self.bucket(), self.key())
    }
}

/// An S3 `ETag` in compact form: the MD5 of the object for a simple upload,
/// or for a multipart upload the MD5 of the parts' MD5s and the part count,
/// shown as `md5hex` or `md5hex-N` (without the quotes of the header).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Etag {
    pub md5: [u8; 16],
    /// 0 for a simple upload; the number of parts for a multipart upload.
    pub part_count: u32,
}

impl fmt::Display for Etag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for byte in self.md5 {
            write!(f, "{byte:02x}")?;
        }
        if self.part_count > 0 {
            write!(f, "-{}", self.part_count)?;
        }
        Ok(())
    }
}

/// What the index knows about one key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IndexValue {
    /// The object as of its commit record.
    Object {
        /// The commit record in the segments.
        commit: Location,
        /// The lowest segment that may hold one of the object's data
        /// extents (the commit's own segment when it has none); compaction
        /// reads the commits of the objects whose range
        /// `first_segment..=commit.segment` covers the segment it empties.
        /// 0 means unknown: any segment up to the commit's.
        first_segment: SegmentId,
        /// The object's length in bytes.
        size: u64,
        etag: Etag,
        /// Unix milliseconds.
        last_modified_ms: i64,
    },
    /// The object was deleted by the record with this entry's `seq`.
    Tombstone,
}

/// One version of one key. The entry with the higher `seq` wins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexEntry {
    /// The sequence number of the segment record this entry reflects,
    /// unique within the shard.
    pub seq: u64,
    pub value: IndexValue,
}

impl IndexEntry {
    #[must_use]
    pub fn is_tombstone(&self) -> bool {
        matches!(self.value, IndexValue::Tombstone)
    }

    /// The object's size, or `None` for a tombstone.
    #[must_use]
    pub fn object_size(&self) -> Option<u64> {
        match self.value {
            IndexValue::Object { size, .. } => Some(size),
            IndexValue::Tombstone => None,
        }
    }
}

/// A byte position in a shard's segments: where a record starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SegmentPosition {
    pub segment: SegmentId,
    pub offset: u64,
}

impl SegmentPosition {
    /// Before every record: segment files are numbered from 1.
    pub const START: SegmentPosition = SegmentPosition {
        segment: 1,
        offset: 0,
    };
}

/// What the runs reflect: every record before `position`, and every
/// sequence number below `next_seq`. The shard replays the records at and
/// after `position` and continues numbering at `next_seq` or past the
/// highest sequence number it replays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checkpoint {
    pub position: SegmentPosition,
    pub next_seq: u64,
}

impl Checkpoint {
    /// The checkpoint of an empty index. Sequence numbers start at 1.
    pub const START: Checkpoint = Checkpoint {
        position: SegmentPosition::START,
        next_seq: 1,
    };
}

/// Live objects and their bytes in one bucket, in this shard.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BucketStats {
    pub object_count: u64,
    pub bytes: u64,
}

/// Which runs a merge takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MergeScope {
    /// The newest runs, widened to older ones while the next older run is
    /// no bigger than the window so far (size-tiered): merges stay small,
    /// and a big old run is rewritten only once newer data has grown to its
    /// size, so each entry is rewritten about log2(index / flush) times.
    Tiered,
    /// Every run: the only merge that can drop tombstones for certain.
    All,
}

#[derive(Debug)]
pub enum IndexError {
    Io(std::io::Error),
    /// A file is damaged or is not the one the manifest committed.
    Corrupted(String),
    /// A limit of the format would be passed.
    TooLarge(String),
    /// An earlier flush or merge failed; the shard must restart and recover
    /// before the index writes again.
    PreviousIo,
    /// A flush or merge failed before its manifest was committed (disk
    /// full, say): nothing a start reads has changed, the index is as it
    /// was before the job, and the job may run again later.
    NotCommitted(Box<IndexError>),
}

impl fmt::Display for IndexError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Io(error) => write!(f, "object index I/O error: {error}"),
            Self::Corrupted(what) => write!(f, "object index is damaged: {what}"),
            Self::TooLarge(what) => write!(f, "object index limit reached: {what}"),
            Self::PreviousIo => write!(f, "object index stopped after an earlier I/O error"),
            Self::NotCommitted(error) => write!(f, "{error} (nothing committed; retried later)"),
        }
    }
}

impl std::error::Error for IndexError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Io(error) => Some(error),
            Self::NotCommitted(error) => Some(error),
            _ => None,
        }
    }
}

impl From<std::io::Error> for IndexError {
    fn from(error: std::io::Error) -> Self {
        Self::Io(error)
    }
}

// ---------------------------------------------------------------------------
// The index

/// The index of one shard. See the module doc.
pub struct Index {
    dir: PathBuf,
    memtable: Memtable,
    /// The memtable a flush job is writing; read after `memtable`.
    frozen: Option<Arc<Memtable>>,
    /// Oldest first.
    runs: Vec<Arc<Run>>,
    /// What `MANIFEST` says now.
    committed: Manifest,
    /// Exact live statistics, including the memtable; buckets with no
    /// objects are absent.
    stats: BTreeMap<String, BucketStats>,
    job: Job,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Job {
    Idle,
    Flush,
    /// The window of `runs` being merged, and their run numbers (to check
    /// that nothing changed them meanwhile).
    Merge {
        window: Range<usize>,
        numbers: Vec<u64>,
    },
    Failed,
}

impl Index {
    /// Open the index in `dir` (created if missing), deleting files left by
    /// an interrupted flush or merge (see the module doc), and return the
    /// checkpoint from which the shard must replay its segments.
    pub fn open(dir: &Path) -> Result<(Index, Checkpoint), IndexError> {
        fs::create_dir_all(dir)?;
        let committed = Manifest::load(dir)?.unwrap_or_else(Manifest::empty);
        // The manifest read may not be durable yet: a flush or merge that
        // renamed it into place may have stopped before its directory sync
        // (which failed, or the process died). Make it durable before
        // deleting what it does not name, and before the shard deletes the
        // other upload snapshots: a power cut must not bring back the
        // previous manifest without the runs and snapshot it names.
        sync_dir(dir)?;
        remove_strays(dir, &committed)?;
        let mut runs = Vec::with_capacity(committed.runs.len());
        for record in &committed.runs {
            runs.push(Arc::new(Run::open(dir, record)?));
        }
        let checkpoint = committed.checkpoint;
        let index = Index {
            dir: dir.to_owned(),
            memtable: Memtable::default(),
            frozen: None,
            runs,
            stats: committed.stats.clone(),
            committed,
            job: Job::Idle,
        };
        Ok((index, checkpoint))
    }

    /// Record a new version of `key`. A version whose `seq` is not higher
    /// than the one the index already has for the key is ignored (a replayed
    /// or reordered record), and `false` is returned.
    ///
    /// What the index already has includes only what it still knows: a
    /// tombstone dropped by a full merge is forgotten, so records from before
    /// the checkpoint must never be inserted again.
    pub fn insert(&mut self, key: IndexKey, entry: IndexEntry) -> bool {
        let previous = self.get_encoded(key.as_bytes());
        if previous.is_some_and(|previous| previous.seq >= entry.seq) {
            return false;
        }
        let removed = previous.and_then(|previous| previous.object_size());
        self.account(key.bucket(), removed, entry.object_size());
        self.memtable.insert(key.bytes, entry);
        true
    }

    /// Record that compaction moved the version the index has for `key` to
    /// a new place: applied only if the index's newest version of the key is
    /// still `entry.seq` (a newer version written meanwhile wins, and a
    /// forgotten tombstone must not let the old version back). Returns
    /// whether it was applied.
    pub fn relocate(&mut self, key: IndexKey, entry: IndexEntry) -> bool {
        let previous = self.get_encoded(key.as_bytes());
        if previous.is_none_or(|previous| previous.seq != entry.seq) {
            return false;
        }
        self.replace(key, previous, entry);
        true
    }

    /// Replay a relocation record: the version is applied unless the index
    /// knows a newer one. Unlike [`Self::relocate`], a key the index does not
    /// know takes it: compaction writes a relocation before any newer
    /// version of its key, so whatever superseded it is replayed after it.
    pub fn replay_relocation(&mut self, key: IndexKey, entry: IndexEntry) -> bool {
        let previous = self.get_encoded(key.as_bytes());
        if previous.is_some_and(|previous| previous.seq > entry.seq) {
            return false;
        }
        self.replace(key, previous, entry);
        true
    }

    fn replace(&mut self, key: IndexKey, previous: Option<IndexEntry>, entry: IndexEntry) {
        let removed = previous.and_then(|previous| previous.object_size());
        self.account(key.bucket(), removed, entry.object_size());
        self.memtable.replace(key.bytes, entry);
    }

    /// Every live object of every bucket after the encoded key
    /// `start_after` (from the first when `None`), in key order: what
    /// compaction walks, a slice at a time, to find the objects with data
    /// in a segment.
    #[must_use]
    pub fn objects_after(&self, start_after: Option<&[u8]>) -> IndexObjects<'_> {
        let start = start_after.map_or(Bound::Unbounded, Bound::Excluded);
        IndexObjects {
            entries: MergeIter::new(self.sources(start), Vec::new(), true),
        }
    }

    /// The newest version of `(bucket, key)`, tombstones included: a
    /// tombstone means "deleted" (it may also be forgotten after a merge, so
    /// `None` means the same).
    #[must_use]
    pub fn get(&self, bucket: &str, key: &str) -> Option<IndexEntry> {
        let mut buffer = [0; ENCODED_KEY_BYTES_MAX];
        self.get_encoded(encode_key_into(&mut buffer, bucket, key))
    }

    /// The newest version of `(bucket, key)` if it is an object.
    #[must_use]
    pub fn get_live(&self, bucket: &str, key: &str) -> Option<IndexEntry> {
        self.get(bucket, key).filter(|entry| !entry.is_tombstone())
    }

    /// The live objects of `bucket` whose key starts with `prefix` and comes
    /// after `start_after`, in key order, with their newest versions.
    ///
    /// Lazy: it seeks each source to the start by binary search and merges
    /// them one key at a time, so a page of 1000 keys reads those 1000
    /// entries plus the tombstones and older versions interleaved with them,
    /// whatever the size of the index. With a delimiter, see
    /// [`IndexRange::skip_prefix`].
    #[must_use]
    pub fn range(&self, bucket: &str, start_after: Option<&str>, prefix: &str) -> IndexRange<'_> {
        let bucket_prefix = encode_bucket_prefix(bucket, "");
        let prefix_bytes = encode_bucket_prefix(bucket, prefix);
        let start_after_bytes = start_after.map(|after| encode_bucket_prefix(bucket, after));
        let start = match &start_after_bytes {
            Some(after) if *after >= prefix_bytes => Bound::Excluded(after.as_slice()),
            _ => Bound::Included(prefix_bytes.as_slice()),
        };
        let sources = self.sources(start);
        IndexRange {
            entries: MergeIter::new(sources, prefix_bytes, true),
            bucket_prefix,
        }
    }

    /// The live objects and their bytes in `bucket`, in this shard. Exact at
    /// every moment (see the module doc).
    #[must_use]
    pub fn bucket_stats(&self, bucket: &str) -> BucketStats {
        self.stats.get(bucket).copied().unwrap_or_default()
    }

    /// Whether this shard has no live object in `bucket`.
    #[must_use]
    pub fn bucket_is_empty(&self, bucket: &str) -> bool {
        !self.stats.contains_key(bucket)
    }

    /// Whether the memtable is due to be flushed; `false` while a job runs
    /// or after one failed.
    #[must_use]
    pub fn needs_flush(&self) -> bool {
        self.job == Job::Idle
            && (self.memtable.len() >= MEMTABLE_ENTRY_COUNT_FLUSH
                || self.memtable.bytes() >= MEMTABLE_BYTES_FLUSH)
    }

    /// Whether the runs are due to be merged; `false` while a job runs or
    /// after one failed.
    #[must_use]
    pub fn needs_merge(&self) -> bool {
        self.job == Job::Idle && self.runs.len() > RUN_COUNT_MERGE
    }

    /// The number of runs, oldest and newest included.
    #[must_use]
    pub fn run_count(&self) -> usize {
        self.runs.len()
    }

    /// The highest sequence number in the memtable (0 when empty). A flush
    /// checkpoint's `next_seq` must be above it.
    #[must_use]
    pub fn memtable_seq_max(&self) -> u64 {
        self.memtable.seq_max()
    }

    /// The number of entries in the memtable (tombstones included).
    #[must_use]
    pub fn memtable_len(&self) -> usize {
        self.memtable.len()
    }

    /// The checkpoint `MANIFEST` holds now.
    #[must_use]
    pub fn checkpoint(&self) -> Checkpoint {
        self.committed.checkpoint
    }

    /// Write the memtable as a new run and commit a manifest with
    /// `checkpoint`, all on this thread. The shard uses [`Self::start_flush`]
    /// instead, to keep the file work off its executor.
    pub fn flush(&mut self, checkpoint: Checkpoint) -> Result<(), IndexError> {
        let job = self.start_flush(checkpoint)?;
        let outcome = job.execute();
        self.finish_flush(outcome)
    }

    /// Merge runs as `scope` says, all on this thread. Returns whether there
    /// was anything to merge.
    pub fn merge(&mut self, scope: MergeScope) -> Result<bool, IndexError> {
        let Some(job) = self.start_merge(scope)? else {
            return Ok(false);
        };
        let outcome = job.execute();
        self.finish_merge(outcome)?;
        Ok(true)
    }

    /// Freeze the memtable for a flush with `checkpoint`: every record before
    /// `checkpoint.position` must have been inserted, and none after it.
    /// Reads and inserts go on while the job runs.
    pub fn start_flush(&mut self, checkpoint: Checkpoint) -> Result<FlushJob, IndexError> {
        self.check_idle()?;
        let committed = &self.committed.checkpoint;
        assert!(
            checkpoint.position >= committed.position,
            "checkpoint moves backwards: {checkpoint:?} after {committed:?}"
        );
        assert!(
            checkpoint.next_seq >= committed.next_seq,
            "checkpoint moves backwards: {checkpoint:?} after {committed:?}"
        );
        assert!(
            self.memtable.seq_max() < checkpoint.next_seq,
            "the memtable holds seq {} at or past the checkpoint's next_seq {}",
            self.memtable.seq_max(),
            checkpoint.next_seq
        );
        if !self.memtable.is_empty() && self.runs.len() >= RUN_COUNT_MAX {
            return Err(IndexError::TooLarge(format!(
                "{} runs: merge before flushing again",
                self.runs.len()
            )));
        }
        let entries = Arc::new(std::mem::take(&mut self.memtable));
        self.frozen = Some(Arc::clone(&entries));
        let run_number = self.committed.next_run_number;
        let manifest = Manifest {
            checkpoint,
            next_run_number: run_number + 1,
            runs: self.committed.runs.clone(),
            stats: self.stats.clone(),
        };
        self.job = Job::Flush;
        Ok(FlushJob {
            dir: self.dir.clone(),
            entries,
            run_number,
            drop_tombstones: self.runs.is_empty(),
            manifest,
        })
    }

    /// Install the outcome of a flush job. If nothing was committed
    /// ([`IndexError::NotCommitted`]), the frozen entries go back into the
    /// memtable and a later flush may try again; on any other error the
    /// index stays readable (the frozen memtable stays in it) and refuses
    /// further jobs.
    pub fn finish_flush(
        &mut self,
        outcome: Result<FlushDone, IndexError>,
    ) -> Result<(), IndexError> {
        assert_eq!(self.job, Job::Flush, "no flush job is running");
        let done = match outcome {
            Ok(done) => done,
            Err(error @ IndexError::NotCommitted(_)) => {
                let frozen = self.frozen.take().expect("a flush froze the memtable");
                self.memtable.absorb_older(&frozen);
                self.job = Job::Idle;
                return Err(error);
            }
            Err(error) => {
                self.job = Job::Failed;
                return Err(error);
            }
        };
        if let Some(run) = done.run {
            self.runs.push(run);
        }
        self.committed = done.manifest;
        self.frozen = None;
        self.job = Job::Idle;
        self.assert_runs_match_manifest();
        Ok(())
    }

    /// Choose the runs to merge. `None` if there is nothing to merge.
    pub fn start_merge(&mut self, scope: MergeScope) -> Result<Option<MergeJob>, IndexError> {
        self.check_idle()?;
        let Some(window) = self.merge_window(scope) else {
            return Ok(None);
        };
        let inputs: Vec<Arc<Run>> = self.runs[window.clone()].to_vec();
        let run_number = self.committed.next_run_number;
        let mut manifest = self.committed.clone();
        manifest.next_run_number = run_number + 1;
        self.job = Job::Merge {
            window: window.clone(),
            numbers: inputs.iter().map(|run| run.number()).collect(),
        };
        Ok(Some(MergeJob {
            dir: self.dir.clone(),
            drop_tombstones: window.start == 0,
            window,
            inputs,
            run_number,
            manifest,
        }))
    }

    /// Install the outcome of a merge job. On error the index stays readable
    /// and refuses further jobs.
    pub fn finish_merge(
        &mut self,
        outcome: Result<MergeDone, IndexError>,
    ) -> Result<(), IndexError> {
        let Job::Merge { window, numbers } = std::mem::replace(&mut self.job, Job::Failed) else {
            panic!("no merge job is running");
        };
        let done = match outcome {
            Ok(done) => done,
            Err(error @ IndexError::NotCommitted(_)) => {
                // The runs are as they were; a later merge may try again.
                self.job = Job::Idle;
                return Err(error);
            }
            Err(error) => return Err(error),
        };
        assert_eq!(done.window, window, "merge outcome from another job");
        let current: Vec<u64> = self.runs[window.clone()]
            .iter()
            .map(|run| run.number())
            .collect();
        assert_eq!(current, numbers, "runs changed under a merge");
        self.runs.splice(window, done.run);
        self.committed = done.manifest;
        self.job = Job::Idle;
        self.assert_runs_match_manifest();
        Ok(())
    }

    fn merge_window(&self, scope: MergeScope) -> Option<Range<usize>> {
        let count = self.runs.len();
        match scope {
            MergeScope::All => (count > 0).then_some(0..count),
            MergeScope::Tiered => {
                if count < 2 {
                    return None;
                }
                let mut start = count - 2;
                let mut window_bytes =
                    self.runs[start].archive_bytes() + self.runs[start + 1].archive_bytes();
                while start > 0 && self.runs[start - 1].archive_bytes() <= window_bytes {
                    start -= 1;
                    window_bytes += self.runs[start].archive_bytes();
                }
                Some(start..count)
            }
        }
    }

    fn check_idle(&self) -> Result<(), IndexError> {
        match self.job {
            Job::Idle => Ok(()),
            Job::Failed => Err(IndexError::PreviousIo),
            Job::Flush | Job::Merge { .. } => {
                panic!("one index job at a time: {:?} is running", self.job)
            }
        }
    }

    fn assert_runs_match_manifest(&self) {
        assert_eq!(self.runs.len(), self.committed.runs.len());
        for (run, record) in self.runs.iter().zip(&self.committed.runs) {
            assert_eq!(run.record(), *record);
        }
    }

    fn get_encoded(&self, key: &[u8]) -> Option<IndexEntry> {
        if let Some(entry) = self.memtable.get(key) {
            return Some(entry);
        }
        if let Some(entry) = self.frozen.as_ref().and_then(|frozen| frozen.get(key)) {
            return Some(entry);
        }
        self.runs.iter().rev().find_map(|run| run.get(key))
    }

    /// Every source, newest first, positioned at `start`.
    fn sources(&self, start: Bound<&[u8]>) -> Vec<Source<'_>> {
        let mut sources = Vec::with_capacity(2 + self.runs.len());
        sources.push(Source::memtable(&self.memtable, start));
        if let Some(frozen) = &self.frozen {
            sources.push(Source::memtable(frozen, start));
        }
        for run in self.runs.iter().rev() {
            sources.push(Source::run(run, start));
        }
        sources
    }

    fn account(&mut self, bucket: &str, removed: Option<u64>, added: Option<u64>) {
        if removed.is_none() && added.is_none() {
            return;
        }
        if !self.stats.contains_key(bucket) {
            self.stats.insert(bucket.to_owned(), BucketStats::default());
        }
        let stats = self.stats.get_mut(bucket).expect("inserted above");
        if let Some(size) = removed {
            stats.object_count = stats
                .object_count
                .checked_sub(1)
                .expect("stats count an object they never saw");
            stats.bytes = stats
                .bytes
                .checked_sub(size)
                .expect("stats count bytes they never saw");
        }
        if let Some(size) = added {
            stats.object_count += 1;
            stats.bytes = stats
                .bytes
                .checked_add(size)
                .expect("bucket bytes overflow u64");
        }
        if stats.object_count == 0 {
            assert_eq!(stats.bytes, 0, "bucket {bucket:?} has bytes but no objects");
            self.stats.remove(bucket);
        }
    }
}

/// A listing in progress: see [`Index::range`]. It borrows the index, so
/// the index cannot change while it is alive; a listing that spans requests
/// starts a new one after the last key it returned.
pub struct IndexRange<'a> {
    entries: MergeIter<'a>,
    /// `bucket_len u8 | bucket`: stripped from the keys returned.
    bucket_prefix: Vec<u8>,
}

impl IndexRange<'_> {
    /// Skip every key still ahead that starts with `prefix`, without
    /// reading them: what `ListObjects` with a delimiter does once it has
    /// rolled a key into a common prefix (`photos/2024/` for `/`), so that a
    /// page of common prefixes costs one seek each, not a scan of all the
    /// keys under them.
    pub fn skip_prefix(&mut self, prefix: &str) {
        let mut target = self.bucket_prefix.clone();
        target.extend_from_slice(prefix.as_bytes());
        // The smallest byte string after every string that starts with
        // `target`: increment its last byte. The last byte is a UTF-8 byte
        // (never 0xFF) or the bucket length (at most 63), so it cannot
        // overflow.
        let last = target.last_mut().expect("starts with the length byte");
        *last = last.checked_add(1).expect("UTF-8 never holds 0xFF");
        self.entries.seek(&target);
    }
}

impl<'a> Iterator for IndexRange<'a> {
    type Item = (&'a str, IndexEntry);

    fn next(&mut self) -> Option<Self::Item> {
        let (key, entry) = self.entries.next()?;
        let key = std::str::from_utf8(&key[self.bucket_prefix.len()..]).expect("keys are UTF-8");
        Some((key, entry))
    }
}

/// See [`Index::objects_after`]: encoded keys (see [`IndexKey::from_encoded`])
/// and their newest versions.
pub struct IndexObjects<'a> {
    entries: MergeIter<'a>,
}

impl<'a> Iterator for IndexObjects<'a> {
    type Item = (&'a [u8], IndexEntry);

    fn next(&mut self) -> Option<Self::Item> {
        self.entries.next()
    }
}

/// A flush, to run on a blocking thread: build the run, write it, commit
/// the manifest. See [`Index::start_flush`].
pub struct FlushJob {
    dir: PathBuf,
    entries: Arc<Memtable>,
    run_number: u64,
    /// The index has no runs, so a tombstone shadows nothing.
    drop_tombstones: bool,
    /// The manifest to commit, without the new run.
    manifest: Manifest,
}

impl FlushJob {
    pub fn execute(self) -> Result<FlushDone, IndexError> {
        let mut manifest = self.manifest;
        let source = Source::memtable(&self.entries, Bound::Unbounded);
        let entries = MergeIter::new(vec![source], Vec::new(), self.drop_tombstones);
        let run = run::write(&self.dir, self.run_number, entries).map_err(not_committed)?;
        crash_point("index-flush-before-manifest");
        if let Some(run) = &run {
            manifest.runs.push(run.record());
        }
        manifest.store(&self.dir)?;
        Ok(FlushDone {
            run: run.map(Arc::new),
            manifest,
        })
    }
}

/// A finished flush, for [`Index::finish_flush`].
pub struct FlushDone {
    run: Option<Arc<Run>>,
    manifest: Manifest,
}

/// A merge, to run on a blocking thread: merge the runs, write the result,
/// commit the manifest, delete the inputs. See [`Index::start_merge`].
pub struct MergeJob {
    dir: PathBuf,
    window: Range<usize>,
    /// Oldest first.
    inputs: Vec<Arc<Run>>,
    run_number: u64,
    /// The window includes the oldest run, so a tombstone shadows nothing
    /// outside it.
    drop_tombstones: bool,
    /// The manifest to commit, still naming the inputs.
    manifest: Manifest,
}

impl MergeJob {
    pub fn execute(self) -> Result<MergeDone, IndexError> {
        let sources = self
            .inputs
            .iter()
            .rev()
            .map(|run| Source::run(run, Bound::Unbounded))
            .collect();
        let entries = MergeIter::new(sources, Vec::new(), self.drop_tombstones);
        let run = run::write(&self.dir, self.run_number, entries).map_err(not_committed)?;
        crash_point("index-merge-before-manifest");
        let mut manifest = self.manifest;
        manifest
            .runs
            .splice(self.window.clone(), run.as_ref().map(Run::record));
        manifest.store(&self.dir)?;
        crash_point("index-merge-before-cleanup");
        // The manifest no longer names the inputs. Deleting them is cleanup:
        // if it fails, or the process dies first, open deletes them. The
        // core's mappings of them stay valid after the unlink.
        for input in &self.inputs {
            let _ = fs::remove_file(&run::path(&self.dir, input.number()));
        }
        Ok(MergeDone {
            window: self.window,
            run: run.map(Arc::new),
            manifest,
        })
    }
}

/// A finished merge, for [`Index::finish_merge`].
pub struct MergeDone {
    window: Range<usize>,
    run: Option<Arc<Run>>,
    manifest: Manifest,
}

// ---------------------------------------------------------------------------
// Files and keys

/// A failure of a job before its manifest: nothing committed. (A run file
/// that was written and renamed stays unnamed by any manifest: the next
/// attempt replaces it, and a start deletes it.)
fn not_committed(error: IndexError) -> IndexError {
    match error {
        // Already so; or damage found while checking the run just written,
        // which is not a full disk: stop.
        error @ (IndexError::NotCommitted(_) | IndexError::Corrupted(_)) => error,
        other => IndexError::NotCommitted(Box::new(other)),
    }
}

/// Delete what an interrupted flush or merge left: temporary files and runs
/// the manifest does not name. Files we do not recognise are left alone.
fn remove_strays(dir: &Path, manifest: &Manifest) -> Result<(), IndexError> {
    for dir_entry in std::fs::read_dir(dir)? {
        let dir_entry = dir_entry?;
        let name = dir_entry.file_name();
        let Some(name) = name.to_str() else {
            continue;
        };
        let stray = if name == manifest::TMP_FILE || run::parse_tmp_name(name).is_some() {
            true
        } else if let Some(number) = run::parse_name(name) {
            !manifest.runs.iter().any(|record| record.number == number)
        } else {
            false
        };
        if stray {
            fs::remove_file(&dir_entry.path())?;
        }
    }
    Ok(())
}

/// fsync a directory, making the names created, renamed and removed in it
/// durable.
fn sync_dir(dir: &Path) -> Result<(), IndexError> {
    fs::sync_dir(dir)?;
    Ok(())
}

fn encode_key_into<'b>(
    buffer: &'b mut [u8; ENCODED_KEY_BYTES_MAX],
    bucket: &str,
    key: &str,
) -> &'b [u8] {
    assert!(
        bucket.len() <= limits::BUCKET_NAME_BYTES_MAX,
        "bucket name of {} bytes",
        bucket.len()
    );
    assert!(
        key.len() <= limits::KEY_BYTES_MAX,
        "key of {} bytes",
        key.len()
    );
    let len = 1 + bucket.len() + key.len();
    buffer[0] = u8::try_from(bucket.len()).expect("asserted above");
    buffer[1..=bucket.len()].copy_from_slice(bucket.as_bytes());
    buffer[1 + bucket.len()..len].copy_from_slice(key.as_bytes());
    &buffer[..len]
}

/// The encoded form of every key of `bucket` that starts with `text`. Not
/// bounded by the key limit: a longer prefix simply matches nothing.
fn encode_bucket_prefix(bucket: &str, text: &str) -> Vec<u8> {
    assert!(
        bucket.len() <= limits::BUCKET_NAME_BYTES_MAX,
        "bucket name of {} bytes",
        bucket.len()
    );
    let mut bytes = Vec::with_capacity(1 + bucket.len() + text.len());
    bytes.push(u8::try_from(bucket.len()).expect("asserted above"));
    bytes.extend_from_slice(bucket.as_bytes());
    bytes.extend_from_slice(text.as_bytes());
    bytes
}

/// `(bucket, key)` of an encoded key that came from `IndexKey::new`.
fn split_key(bytes: &[u8]) -> (&str, &str) {
    let bucket_len = usize::from(bytes[0]);
    let bucket = std::str::from_utf8(&bytes[1..=bucket_len]).expect("bucket names are UTF-8");
    let key = std::str::from_utf8(&bytes[1 + bucket_len..]).expect("keys are UTF-8");
    (bucket, key)
}
