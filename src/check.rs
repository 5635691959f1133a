//! `ringstore check`: an offline consistency check of a data directory.
//!
//! It reads the segments, the index and the bucket catalog of a *stopped*
//! server and reports whether they pass their own checksums and agree with
//! each other. It owns no file and repairs nothing: what a start does with
//! a torn tail is `storage::shard`'s decision, and the check mirrors it.
//!
//! # What is checked
//!
//! For each shard directory `shard-NN` that the data directory's `format`
//! file names:
//!
//! 1. **Segments.** Every segment is scanned with [`segment::scan`]: every
//!    record's frame and CRC32C, sequence numbers that follow each other,
//!    and a seal at the end of every segment but the last. The last one may
//!    end in a torn tail, reported as a warning: nothing in it was ever
//!    acknowledged, and the next start cuts it off. Across segments,
//!    sequence numbers must keep increasing. Segment numbers may be missing
//!    only before the index checkpoint (compaction deletes those; the
//!    report counts them).
//! 2. **Payloads.** Every `Commit` and `Tombstone` payload must decode
//!    (`storage::object`).
//! 3. **Index.** The index ([`Index::open`]) is compared with the segments
//!    *as of its checkpoint*, because it reflects exactly the records before
//!    it: for every key, it must hold the newest commit (same sequence
//!    number, location, size, `ETag`, modification time) or tombstone among
//!    those records, and every live entry it lists must be such a commit.
//!    Its per-bucket statistics must add up to its entries. The checkpoint
//!    must lie on a record boundary inside the verified records, and every
//!    record before it must be numbered below its `next_seq`. The records
//!    after the checkpoint are what a start replays; they are checked like
//!    every other record.
//! 4. **Live objects**, the newest version of every key over all records
//!    (what a start serves after its replay): the commit record is read
//!    back through [`SegmentReader`], and every extent is read and checked
//!    (frame, CRC32C, kind): a `Data` record of exactly the extent's
//!    length, inside the verified records of an existing segment, before
//!    its commit.
//! 5. **Catalog.** `catalog` must load ([`Catalog::load`]), and every live
//!    object's bucket must be in it.
//!
//! Damage is anything a start would refuse, or anything that makes an
//! acknowledged object unreadable or wrong; the exit status is then 1 (see
//! [`main`]). Warnings are states a start handles on its own (a torn tail,
//! files left by an interrupted index flush, a shard directory a start will
//! create).
//!
//! # Read-only
//!
//! The check locks the data directory's `lock` file (`flock`, as the
//! server does) and refuses to run while a server holds it; holding it
//! also keeps a server from starting mid-check. Segment files are opened
//! read-only. [`Index::open`] deletes the files an interrupted flush or
//! merge left behind, so it runs on a scratch directory of hard links (or
//! copies, across file systems) in the system temporary directory, and the
//! files it deleted there are reported as warnings.
//!
//! Reading segments with `DmaFile` needs the polled-I/O probe to see a
//! non-empty file first (`segment`'s module doc). The check opens each
//! shard's own `dma-probe` marker, which every start writes, with `DmaFile`
//! (the second half of [`segment::open_marker`], without rewriting it).
//! Only a shard without one gets a fresh marker from
//! [`segment::open_marker`], in a temporary directory next to it (so on the
//! same device), removed right after.
//!
//! # Cost
//!
//! One sequential pass over every segment, then one read of each live
//! object's commit record and extents, so live bytes are read twice.
//! Memory holds one small entry per key (its newest version before and
//! after the index checkpoint), not per record or per byte.
//!
//! # Known gaps
//!
//! The index can only be listed bucket by bucket, so a live index entry in
//! a bucket that neither the catalog nor any segment record names goes
//! unnoticed (statistics of such a bucket too).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::storage::fs::DmaSegmentFile;
use glommio::io::DmaFile;

use crate::storage::catalog::Catalog;
use crate::storage::digest::Hasher;
use crate::storage::index::{
    Checkpoint, Etag, Index, IndexEntry, IndexKey, IndexValue, SegmentPosition,
};
use crate::storage::location::{Location, SegmentId};
use crate::storage::object::{
    ETag, Extent, ObjectBody, ObjectCommit, ObjectTombstone, RelocatedVersion, Relocation,
};
use crate::storage::record::{self, Kind, RecordError};
use crate::storage::segment::{
    self, ScanEnd, ScannedRecord, SegmentDir, SegmentReader, SegmentRole, StorageError,
    segment_file_name,
};
use crate::storage::upload::{UploadCreate, UploadEnd, UploadPart};

/// Most findings of each severity kept and printed; the rest are counted.
/// A badly damaged segment can produce one finding per object, and the
/// first hundred say what happened.
pub const FINDINGS_SHOWN_MAX: usize = 100;

/// Index entries listed per page: the S3 listing page size, so one page
/// costs what one `ListObjectsV2` costs.
const INDEX_PAGE_KEYS: usize = 1000;

/// The data directory's files that the server owns (`server::runtime`,
/// where these names and the format version are defined).
const LOCK_FILE: &str = "lock";
const FORMAT_FILE: &str = "format";
const FORMAT_VERSION: u32 = 1;

/// A shard's index directory (`storage::shard`).
const INDEX_DIR: &str = "index";

/// Why the check could not run at all (exit status 2).
#[derive(Debug)]
pub struct CheckError(pub String);

impl fmt::Display for CheckError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for CheckError {}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// A state a start handles on its own.
    Warning,
    /// Something a start refuses, or an acknowledged object that is lost,
    /// unreadable or wrong.
    Damage,
}

/// One problem, with where it is (`shard-00/seg-00000001 offset 4096`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub severity: Severity,
    pub place: String,
    pub what: String,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let severity = match self.severity {
            Severity::Warning => "warning",
            Severity::Damage => "damage",
        };
        write!(f, "{severity}: {}: {}", self.place, self.what)
    }
}

/// Every finding counted, the first [`FINDINGS_SHOWN_MAX`] of each severity
/// kept.
#[derive(Debug, Default)]
pub struct Findings {
    pub shown: Vec<Finding>,
    pub damage_count: u64,
    pub warning_count: u64,
}

impl Findings {
    fn add(&mut self, severity: Severity, place: String, what: String) {
        let count = match severity {
            Severity::Warning => &mut self.warning_count,
            Severity::Damage => &mut self.damage_count,
        };
        *count += 1;
        if *count <= FINDINGS_SHOWN_MAX as u64 {
            self.shown.push(Finding {
                severity,
                place,
                what,
            });
        }
    }

    fn damage(&mut self, place: impl Into<String>, what: impl Into<String>) {
        self.add(Severity::Damage, place.into(), what.into());
    }

    fn warning(&mut self, place: impl Into<String>, what: impl Into<String>) {
        self.add(Severity::Warning, place.into(), what.into());
    }
}

/// What one shard holds, as far as the check could read it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ShardSummary {
    /// `shard-NN`.
    pub name: String,
    pub segment_count: u64,
    pub sealed_segment_count: u64,
    /// Length of all segment files.
    pub segment_bytes: u64,
    pub data_record_count: u64,
    pub commit_record_count: u64,
    pub tombstone_record_count: u64,
    /// Versions compaction moved forward.
    pub relocate_record_count: u64,
    /// Multipart upload records: uploads begun, parts stored, uploads ended.
    pub upload_record_count: u64,
    /// Segment numbers below the checkpoint that no longer exist: what
    /// compaction deleted.
    pub removed_segment_count: u64,
    /// `None` when the index does not open.
    pub checkpoint: Option<Checkpoint>,
    pub run_count: u64,
    /// Live objects the index lists (as of its checkpoint).
    pub index_object_count: u64,
    /// Newest version of each key over all records: what a start serves.
    pub live_object_count: u64,
    pub live_bytes: u64,
}

impl ShardSummary {
    #[must_use]
    pub fn record_count(&self) -> u64 {
        self.data_record_count
            + self.commit_record_count
            + self.tombstone_record_count
            + self.relocate_record_count
            + self.upload_record_count
    }
}

/// The outcome of a check: what was found, shard by shard, and every
/// problem.
#[derive(Debug)]
pub struct Report {
    pub data_dir: PathBuf,
    /// The shard count the `format` file records.
    pub shard_count: usize,
    /// `None` when the catalog does not load.
    pub bucket_count: Option<usize>,
    pub shards: Vec<ShardSummary>,
    pub findings: Findings,
}

impl Report {
    #[must_use]
    pub fn is_damaged(&self) -> bool {
        self.findings.damage_count > 0
    }

    /// Every shard added up (`name` is empty).
    #[must_use]
    pub fn totals(&self) -> ShardSummary {
        let mut totals = ShardSummary::default();
        for shard in &self.shards {
            totals.segment_count += shard.segment_count;
            totals.sealed_segment_count += shard.sealed_segment_count;
            totals.segment_bytes += shard.segment_bytes;
            totals.data_record_count += shard.data_record_count;
            totals.commit_record_count += shard.commit_record_count;
            totals.tombstone_record_count += shard.tombstone_record_count;
            totals.relocate_record_count += shard.relocate_record_count;
            totals.upload_record_count += shard.upload_record_count;
            totals.removed_segment_count += shard.removed_segment_count;
            totals.run_count += shard.run_count;
            totals.index_object_count += shard.index_object_count;
            totals.live_object_count += shard.live_object_count;
            totals.live_bytes += shard.live_bytes;
        }
        totals
    }
}

impl fmt::Display for Report {
    /// One line per shard, then the totals as `name: value` lines (stable,
    /// for scripts and tests), the findings, and the verdict.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "ringstore check of {}", self.data_dir.display())?;
        match self.bucket_count {
            Some(count) => writeln!(f, "catalog: {count} buckets")?,
            None => writeln!(f, "catalog: unreadable")?,
        }
        for shard in &self.shards {
            let index = match shard.checkpoint {
                Some(checkpoint) => format!(
                    "index {} runs, {} objects, checkpoint {} offset {} next seq {}",
                    shard.run_count,
                    shard.index_object_count,
                    segment_file_name(checkpoint.position.segment),
                    checkpoint.position.offset,
                    checkpoint.next_seq
                ),
                None => "index unreadable".to_owned(),
            };
            writeln!(
                f,
                "{}: {} segments ({} sealed, {} bytes, {} removed by compaction); records: {} \
                 data, {} commit, {} tombstone, {} relocate, {} upload; {index}; live: {} objects, \
                 {} bytes",
                shard.name,
                shard.segment_count,
                shard.sealed_segment_count,
                shard.segment_bytes,
                shard.removed_segment_count,
                shard.data_record_count,
                shard.commit_record_count,
                shard.tombstone_record_count,
                shard.relocate_record_count,
                shard.upload_record_count,
                shard.live_object_count,
                shard.live_bytes
            )?;
        }
        let totals = self.totals();
        writeln!(f, "shards: {}", self.shards.len())?;
        writeln!(f, "segments: {}", totals.segment_count)?;
        writeln!(
            f,
            "records: {} (data {}, commit {}, tombstone {}, relocate {}, upload {})",
            totals.record_count(),
            totals.data_record_count,
            totals.commit_record_count,
            totals.tombstone_record_count,
            totals.relocate_record_count,
            totals.upload_record_count
        )?;
        writeln!(f, "live objects: {}", totals.live_object_count)?;
        writeln!(f, "live bytes: {}", totals.live_bytes)?;
        for finding in &self.findings.shown {
            writeln!(f, "{finding}")?;
        }
        let shown = self.findings.shown.len() as u64;
        let total = self.findings.damage_count + self.findings.warning_count;
        if total > shown {
            writeln!(f, "... and {} more findings not shown", total - shown)?;
        }
        writeln!(f, "warnings: {}", self.findings.warning_count)?;
        writeln!(f, "damage: {}", self.findings.damage_count)?;
        let verdict = if self.is_damaged() { "DAMAGED" } else { "ok" };
        writeln!(f, "result: {verdict}")
    }
}

/// `ringstore check`: run the check, print the report on stdout, and turn
/// the outcome into the exit status: 0 when nothing is damaged (warnings
/// allowed), 1 when damage was found, 2 when the check could not run (the
/// directory is in use, is not a data directory, or cannot be read).
#[must_use]
pub fn main(data_dir: &Path) -> ExitCode {
    match run(data_dir) {
        Ok(report) => {
            print!("{report}");
            if report.is_damaged() {
                eprintln!(
                    "ringstore: the check found {} damaged places in {}",
                    report.findings.damage_count,
                    data_dir.display()
                );
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(error) => {
            eprintln!("ringstore: {error}");
            ExitCode::from(2)
        }
    }
}

/// Check the data directory `data_dir` (see the module doc).
pub fn run(data_dir: &Path) -> Result<Report, CheckError> {
    match std::fs::metadata(data_dir) {
        Ok(metadata) if metadata.is_dir() => {}
        Ok(_) => {
            return Err(CheckError(format!(
                "{} is not a directory",
                data_dir.display()
            )));
        }
        Err(error) => {
            return Err(CheckError(format!(
                "cannot read the data directory {}: {error}",
                data_dir.display()
            )));
        }
    }
    // Held until the check returns.
    let _lock = lock(data_dir)?;
    let mut findings = Findings::default();
    let (shard_count, shard_ids) = shards_to_check(data_dir, &mut findings)?;
    let catalog = match Catalog::load(data_dir) {
        Ok(catalog) => Some(catalog),
        Err(error) => {
            findings.damage("catalog", error.to_string());
            None
        }
    };
    let bucket_count = catalog.as_ref().map(|catalog| catalog.buckets.len());
    let scratch = Scratch::create()
        .map_err(|error| CheckError(format!("cannot create a scratch directory: {error}")))?;

    let data_dir_owned = data_dir.to_owned();
    let scratch_path = scratch.path.clone();
    let executor = glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
        .name("ringstore-check")
        .spawn(move || async move {
            let mut shards = Vec::with_capacity(shard_ids.len());
            for id in shard_ids {
                let dir = crate::storage::shard::shard_dir(&data_dir_owned, id);
                let check = ShardCheck::new(shard_name(id), dir, catalog.as_ref(), &mut findings);
                shards.push(check.run(&data_dir_owned, &scratch_path).await);
            }
            (shards, findings)
        })
        .map_err(|error| {
            CheckError(format!(
                "cannot start an executor: {error} (if io_uring could not be set up, raise the \
                 locked-memory limit with `ulimit -l unlimited`)"
            ))
        })?;
    let (shards, findings) = executor
        .join()
        .map_err(|error| CheckError(format!("the check's executor failed: {error}")))?;
    drop(scratch);
    Ok(Report {
        data_dir: data_dir.to_owned(),
        shard_count,
        bucket_count,
        shards,
        findings,
    })
}

/// The shard count the `format` file records, and the shards present among
/// them; shard directories missing or extra are findings.
fn shards_to_check(
    data_dir: &Path,
    findings: &mut Findings,
) -> Result<(usize, Vec<usize>), CheckError> {
    let present = list_shard_dirs(data_dir).map_err(|error| {
        CheckError(format!(
            "cannot list the data directory {}: {error}",
            data_dir.display()
        ))
    })?;
    let shard_count = match read_format(data_dir)? {
        Some(count) => count,
        None if present.is_empty() => {
            return Err(CheckError(format!(
                "{} is not a ringstore data directory (it has no `{FORMAT_FILE}` file and no \
                 shard directories)",
                data_dir.display()
            )));
        }
        None => {
            let count = present.last().map_or(0, |last| last + 1);
            findings.damage(
                FORMAT_FILE,
                format!(
                    "missing, although shard directories exist: a start would record a new \
                     shard count; checking the {count} shards found"
                ),
            );
            count
        }
    };
    let mut shard_ids = Vec::new();
    for id in 0..shard_count {
        if present.contains(&id) {
            shard_ids.push(id);
        } else {
            findings.warning(
                shard_name(id),
                "missing: a start creates it empty, so it holds no objects",
            );
        }
    }
    for &id in present.range(shard_count..) {
        findings.damage(
            shard_name(id),
            format!(
                "is not one of the {shard_count} shards of this data directory: a start never \
                 opens it, so any object in it is unreachable"
            ),
        );
    }
    Ok((shard_count, shard_ids))
}

/// Take the data directory's lock as the server does, so that the check
/// refuses to run beside a server and no server starts during it. A
/// directory without a lock file has never been served; the check does not
/// create one.
fn lock(data_dir: &Path) -> Result<Option<File>, CheckError> {
    let path = data_dir.join(LOCK_FILE);
    let file = match File::open(&path) {
        Ok(file) => file,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(error) => {
            return Err(CheckError(format!(
                "cannot open {}: {error}",
                path.display()
            )));
        }
    };
    match file.try_lock() {
        Ok(()) => Ok(Some(file)),
        Err(std::fs::TryLockError::WouldBlock) => Err(CheckError(format!(
            "the data directory {} is in use by a running ringstore process (it holds {}); \
             stop the server before checking",
            data_dir.display(),
            path.display()
        ))),
        Err(std::fs::TryLockError::Error(error)) => Err(CheckError(format!(
            "cannot lock {}: {error}",
            path.display()
        ))),
    }
}

/// The shard count the `format` file records; `None` if there is no file.
fn read_format(data_dir: &Path) -> Result<Option<usize>, CheckError> {
    let path = data_dir.join(FORMAT_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(error) => {
            return Err(CheckError(format!(
                "cannot read {}: {error}",
                path.display()
            )));
        }
    };
    let mut lines = text.lines();
    let version = lines
        .next()
        .and_then(|line| line.strip_prefix("ringstore-format "))
        .and_then(|version| version.parse::<u32>().ok());
    let shards = lines
        .next()
        .and_then(|line| line.strip_prefix("shards "))
        .and_then(|count| count.parse::<usize>().ok());
    match (version, shards, lines.next()) {
        (Some(FORMAT_VERSION), Some(shards), None) if shards > 0 => Ok(Some(shards)),
        (Some(version), Some(_), None) if version != FORMAT_VERSION => Err(CheckError(format!(
            "{} records format version {version}; this build checks version {FORMAT_VERSION}",
            path.display()
        ))),
        _ => Err(CheckError(format!(
            "{} is not a ringstore format file: {text:?}",
            path.display()
        ))),
    }
}

/// The shard numbers of the `shard-NN` directories present.
fn list_shard_dirs(data_dir: &Path) -> io::Result<BTreeSet<usize>> {
    let mut ids = BTreeSet::new();
    for entry in std::fs::read_dir(data_dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(number) = name.strip_prefix("shard-")
            && number.len() >= 2
            && number.bytes().all(|byte| byte.is_ascii_digit())
            && let Ok(id) = number.parse::<usize>()
            && entry.file_type()?.is_dir()
        {
            ids.insert(id);
        }
    }
    Ok(ids)
}

fn shard_name(id: usize) -> String {
    format!("shard-{id:02}")
}

/// A temporary directory, removed when dropped.
struct Scratch {
    path: PathBuf,
}

impl Scratch {
    fn create() -> io::Result<Scratch> {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.as_nanos());
        let path =
            std::env::temp_dir().join(format!("ringstore-check-{}-{nanos}", std::process::id()));
        std::fs::create_dir(&path)?;
        Ok(Scratch { path })
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// Hard-link (or, across file systems, copy) every regular file of
/// `source` into `target`; returns their names, sorted.
fn link_files(source: &Path, target: &Path) -> io::Result<Vec<String>> {
    std::fs::create_dir_all(target)?;
    let mut names = Vec::new();
    for entry in std::fs::read_dir(source)? {
        let entry = entry?;
        if !entry.file_type()?.is_file() {
            continue;
        }
        let name = entry.file_name();
        let to = target.join(&name);
        if std::fs::hard_link(entry.path(), &to).is_err() {
            std::fs::copy(entry.path(), &to)?;
        }
        names.push(name.to_string_lossy().into_owned());
    }
    names.sort();
    Ok(names)
}

/// A shard's segments, opened read-only: the reader never writes, and a
/// check must not need write access.
#[derive(Debug, Clone)]
struct ReadOnlyDir {
    path: PathBuf,
}

impl SegmentDir for ReadOnlyDir {
    type File = DmaSegmentFile;

    async fn create(&self, segment: SegmentId, _allocate: u64) -> io::Result<DmaSegmentFile> {
        Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "the check never creates segments ({})",
                segment_file_name(segment)
            ),
        ))
    }

    async fn open(&self, segment: SegmentId) -> io::Result<DmaSegmentFile> {
        DmaSegmentFile::open_read_only(&self.path.join(segment_file_name(segment))).await
    }

    fn free_bytes(&self) -> io::Result<Option<u64>> {
        Ok(None)
    }
}

/// Why the bytes at `offset` are not a record, if they are not.
async fn record_damage(file: &DmaSegmentFile, offset: u64) -> Option<String> {
    let header_len = record::HEADER_BYTES as usize;
    let head = file.read_at(offset, header_len).await.ok()?;
    let needed = match record::decode(&head) {
        Ok(_) => return None,
        Err(RecordError::Truncated { needed }) if head.len() == header_len => needed,
        Err(error) => return Some(error.to_string()),
    };
    let bytes = file.read_at(offset, needed as usize).await.ok()?;
    record::decode(&bytes).err().map(|error| error.to_string())
}

/// The commit at `location`: a `Commit` record, or the `Relocate` record of
/// a commit.
async fn read_commit(
    reader: &SegmentReader<ReadOnlyDir>,
    location: Location,
) -> Result<Result<ObjectCommit, crate::storage::object::DecodeError>, StorageError> {
    let (kind, payload) = reader
        .read_of(location, &[Kind::Commit, Kind::Relocate])
        .await?;
    if kind == Kind::Commit {
        return Ok(ObjectCommit::decode(&payload));
    }
    Ok(
        Relocation::decode(&payload).and_then(|relocation| match relocation.version {
            RelocatedVersion::Commit(commit) => Ok(commit),
            RelocatedVersion::Tombstone(_) => Err(crate::storage::object::DecodeError {
                what: "a relocated tombstone, not a commit",
            }),
        }),
    )
}

/// The key and (for a commit) object a relocation holds.
fn relocated_version(relocation: &Relocation) -> (IndexKey, Option<ObjectSummary>) {
    let (bucket, key) = relocation.version.bucket_and_key();
    let object = match &relocation.version {
        RelocatedVersion::Commit(commit) => Some(ObjectSummary {
            size: commit.size,
            etag: index_etag(commit.etag),
            last_modified_ms: commit.last_modified_ms,
        }),
        RelocatedVersion::Tombstone(_) => None,
    };
    (IndexKey::new(bucket, key), object)
}

/// The part of a commit the index mirrors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ObjectSummary {
    size: u64,
    etag: Etag,
    last_modified_ms: i64,
}

/// One commit (`object` is `Some`) or tombstone record of a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Version {
    seq: u64,
    location: Location,
    object: Option<ObjectSummary>,
}

/// The newest version of one key among the records before the index
/// checkpoint, and among those at or after it.
#[derive(Debug, Clone, Copy, Default)]
struct KeyState {
    before: Option<Version>,
    after: Option<Version>,
}

impl KeyState {
    /// What a start serves after replaying the records after the
    /// checkpoint.
    fn newest(&self) -> Option<Version> {
        self.after.or(self.before)
    }
}

/// The index's form of an `ETag`.
fn index_etag(etag: ETag) -> Etag {
    match etag {
        ETag::Md5(md5) => Etag { md5, part_count: 0 },
        ETag::Multipart { digest, part_count } => Etag {
            md5: digest,
            part_count: u32::from(part_count),
        },
    }
}

fn describe_version(version: &Version) -> String {
    let what = match version.object {
        Some(object) => format!(
            "commit (size {}, etag {}, modified {})",
            object.size, object.etag, object.last_modified_ms
        ),
        None => "tombstone".to_owned(),
    };
    format!(
        "the {what} with seq {} at {} offset {}",
        version.seq,
        segment_file_name(version.location.segment),
        version.location.offset
    )
}

/// The check of one shard, phase by phase (see the module doc).
struct ShardCheck<'a> {
    dir: PathBuf,
    catalog: Option<&'a Catalog>,
    findings: &'a mut Findings,
    summary: ShardSummary,
    /// The index's checkpoint; [`Checkpoint::START`] when the index does
    /// not open (every record is then "after" it).
    checkpoint: Checkpoint,
    keys: BTreeMap<IndexKey, KeyState>,
    /// Per segment, the end of the records the scan verified.
    verified_end: HashMap<SegmentId, u64>,
    /// Per segment whose scan stopped at damage, where: the records after
    /// it were not seen, so what points there is not compared.
    damaged_from: HashMap<SegmentId, u64>,
    /// Index entries (and the checkpoint) left uncompared for that reason.
    unverified_count: u64,
    /// A record starts or ends at the checkpoint's position.
    checkpoint_on_boundary: bool,
    /// The last sequence number seen, over all segments so far.
    last_seq: Option<u64>,
    /// The next record visited is the first of its segment.
    segment_start: bool,
}

impl<'a> ShardCheck<'a> {
    fn new(
        name: String,
        dir: PathBuf,
        catalog: Option<&'a Catalog>,
        findings: &'a mut Findings,
    ) -> Self {
        ShardCheck {
            dir,
            catalog,
            findings,
            summary: ShardSummary {
                name,
                ..ShardSummary::default()
            },
            checkpoint: Checkpoint::START,
            keys: BTreeMap::new(),
            verified_end: HashMap::new(),
            damaged_from: HashMap::new(),
            unverified_count: 0,
            checkpoint_on_boundary: false,
            last_seq: None,
            segment_start: true,
        }
    }

    async fn run(mut self, data_dir: &Path, scratch: &Path) -> ShardSummary {
        if let Err(error) = self.probe_device(data_dir).await {
            self.findings.damage(
                self.summary.name.clone(),
                format!("cannot open files with direct I/O: {error}"),
            );
            return self.summary;
        }
        let index = self.open_index(scratch);
        let reader = SegmentReader::new(ReadOnlyDir {
            path: self.dir.clone(),
        });
        let segments = match crate::storage::shard::list_segments(&self.dir) {
            Ok(segments) => segments,
            Err(error) => {
                self.findings.damage(
                    self.summary.name.clone(),
                    format!("cannot list the segments: {error}"),
                );
                return self.summary;
            }
        };
        self.scan_segments(&segments).await;
        if let Some(index) = &index {
            self.check_checkpoint(&segments);
            self.check_index_listing(index, &reader).await;
            self.check_index_keys(index);
        }
        self.check_live_objects(&reader).await;
        if self.unverified_count > 0 {
            self.findings.warning(
                format!("{}/{INDEX_DIR}", self.summary.name),
                format!(
                    "{} index entries or checkpoints point past damage that stopped a scan, so \
                     they were not compared with the segments",
                    self.unverified_count
                ),
            );
        }
        self.summary
    }

    /// Whether `location` lies past damage that stopped its segment's scan.
    fn is_unverified(&self, segment: SegmentId, end: u64) -> bool {
        self.damaged_from
            .get(&segment)
            .is_some_and(|&damaged| end > damaged)
    }

    fn place(&self, segment: SegmentId, offset: u64) -> String {
        format!(
            "{}/{} offset {offset}",
            self.summary.name,
            segment_file_name(segment)
        )
    }

    /// Open a non-empty file with `DmaFile` before any segment (see the
    /// module doc).
    async fn probe_device(&mut self, data_dir: &Path) -> io::Result<()> {
        let marker = self.dir.join(segment::MARKER_FILE);
        if std::fs::metadata(&marker).is_ok_and(|metadata| metadata.is_file() && metadata.len() > 0)
        {
            DmaFile::open(&marker).await?.close().await?;
            return Ok(());
        }
        self.findings.warning(
            format!("{}/{}", self.summary.name, segment::MARKER_FILE),
            "missing or empty: a start writes it again",
        );
        let temporary = data_dir.join(format!(
            "{}.check-probe-{}",
            self.summary.name,
            std::process::id()
        ));
        std::fs::create_dir_all(&temporary)?;
        let result = segment::open_marker(&temporary).await;
        let _ = std::fs::remove_dir_all(&temporary);
        result
    }

    /// Open the index on a scratch copy of its directory; `None` (and
    /// damage) if it does not open.
    fn open_index(&mut self, scratch: &Path) -> Option<Index> {
        let source = self.dir.join(INDEX_DIR);
        let copy = scratch.join(&self.summary.name);
        let place = format!("{}/{INDEX_DIR}", self.summary.name);
        let names = match link_files(&source, &copy) {
            Ok(names) => names,
            Err(error) if error.kind() == io::ErrorKind::NotFound => {
                self.findings.warning(
                    place.clone(),
                    "missing: a start creates an empty index and replays every segment",
                );
                Vec::new()
            }
            Err(error) => {
                self.findings
                    .damage(place, format!("cannot read the index: {error}"));
                return None;
            }
        };
        let (index, checkpoint) = match Index::open(&copy) {
            Ok(opened) => opened,
            Err(error) => {
                self.findings.damage(place, error.to_string());
                return None;
            }
        };
        for name in names {
            if !copy.join(&name).exists() {
                self.findings.warning(
                    format!("{place}/{name}"),
                    "left over from an interrupted index flush or merge; the next start \
                     deletes it",
                );
            }
        }
        self.checkpoint = checkpoint;
        self.summary.checkpoint = Some(checkpoint);
        self.summary.run_count = index.run_count() as u64;
        Some(index)
    }

    /// Phases 1 and 2: scan every segment, decode every payload, and note
    /// the newest version of every key.
    async fn scan_segments(&mut self, segments: &[SegmentId]) {
        let dir = ReadOnlyDir {
            path: self.dir.clone(),
        };
        let mut previous: Option<SegmentId> = None;
        if let Some(&first) = segments.first() {
            // Segments are numbered from 1; compaction deletes the oldest
            // ones too.
            self.summary.removed_segment_count += u64::from(first.saturating_sub(1));
        }
        for (position, &id) in segments.iter().enumerate() {
            if let Some(previous) = previous
                && id != previous + 1
            {
                // Compaction deletes segments before the checkpoint; one
                // missing at or after it held records a start must replay.
                let missing = previous + 1..id;
                let checkpoint_segment = self.checkpoint.position.segment;
                if missing.end > checkpoint_segment {
                    self.findings.damage(
                        format!(
                            "{}/{}",
                            self.summary.name,
                            segment_file_name(missing.start.max(checkpoint_segment))
                        ),
                        format!(
                            "missing: the segments jump from {} to {}, past the index \
                             checkpoint in {}",
                            segment_file_name(previous),
                            segment_file_name(id),
                            segment_file_name(checkpoint_segment)
                        ),
                    );
                }
                self.summary.removed_segment_count += u64::from(id - previous - 1);
            }
            previous = Some(id);
            self.summary.segment_count += 1;
            let role = if position + 1 == segments.len() {
                SegmentRole::Last
            } else {
                SegmentRole::Sealed
            };
            let file = match dir.open(id).await {
                Ok(file) => file,
                Err(error) => {
                    self.findings
                        .damage(self.place(id, 0), format!("cannot open: {error}"));
                    self.verified_end.insert(id, 0);
                    self.damaged_from.insert(id, 0);
                    continue;
                }
            };
            self.summary.segment_bytes += file.file_len().await.unwrap_or(0);
            self.segment_start = true;
            let result = segment::scan(&file, id, 0, role, |record| {
                self.visit(&record);
                Ok(())
            })
            .await;
            let verified_end = match result {
                Ok(end) => {
                    self.last_seq = self.last_seq.max(end.last_seq());
                    match end {
                        ScanEnd::Sealed { .. } => self.summary.sealed_segment_count += 1,
                        ScanEnd::Open { .. } => {}
                        ScanEnd::TornTail { offset, .. } => self.findings.warning(
                            self.place(id, offset),
                            "torn tail: the records from here on were never acknowledged, and \
                             the next start cuts them off",
                        ),
                    }
                    end.offset()
                }
                Err(StorageError::Corrupted {
                    segment,
                    offset,
                    what,
                }) => {
                    // The scan says where; for damage in the last segment
                    // its message says why it is not a torn tail, not what
                    // is wrong with the record.
                    let what = match record_damage(&file, offset).await {
                        Some(reason) if segment == id && !what.contains(&reason) => {
                            format!("{what} ({reason})")
                        }
                        _ => what,
                    };
                    self.findings.damage(self.place(segment, offset), what);
                    self.damaged_from.insert(id, offset);
                    offset
                }
                Err(error) => {
                    self.findings.damage(self.place(id, 0), error.to_string());
                    self.damaged_from.insert(id, 0);
                    0
                }
            };
            let _ = file.close().await;
            self.verified_end.insert(id, verified_end);
        }
    }

    /// One record of the scan.
    fn visit(&mut self, record: &ScannedRecord<'_>) {
        let location = record.location;
        let position = SegmentPosition {
            segment: location.segment,
            offset: location.offset,
        };
        let before = position < self.checkpoint.position;
        if std::mem::take(&mut self.segment_start)
            && let Some(previous) = self.last_seq
            && record.seq <= previous
        {
            self.findings.damage(
                self.place(location.segment, location.offset),
                format!(
                    "the segment's first record has sequence number {}, not above the {previous} \
                     an earlier segment reached",
                    record.seq
                ),
            );
        }
        self.last_seq = Some(record.seq);
        if before && record.seq >= self.checkpoint.next_seq {
            self.findings.damage(
                self.place(location.segment, location.offset),
                format!(
                    "record with sequence number {} is before the index checkpoint, whose next \
                     sequence number is {}",
                    record.seq, self.checkpoint.next_seq
                ),
            );
        }
        if location.segment == self.checkpoint.position.segment
            && (location.offset == self.checkpoint.position.offset
                || location.end() == self.checkpoint.position.offset)
        {
            self.checkpoint_on_boundary = true;
        }
        let version = match record.kind {
            Kind::Data => {
                self.summary.data_record_count += 1;
                return;
            }
            Kind::Padding => return,
            Kind::UploadCreate | Kind::UploadPart | Kind::UploadEnd => {
                self.visit_upload_record(record);
                return;
            }
            Kind::Commit => {
                self.summary.commit_record_count += 1;
                ObjectCommit::decode(record.payload).map(|commit| {
                    let object = ObjectSummary {
                        size: commit.size,
                        etag: index_etag(commit.etag),
                        last_modified_ms: commit.last_modified_ms,
                    };
                    (IndexKey::new(&commit.bucket, &commit.key), Some(object))
                })
            }
            Kind::Tombstone => {
                self.summary.tombstone_record_count += 1;
                ObjectTombstone::decode(record.payload)
                    .map(|tombstone| (IndexKey::new(&tombstone.bucket, &tombstone.key), None))
            }
            Kind::Relocate => {
                self.summary.relocate_record_count += 1;
                Relocation::decode(record.payload).map(|relocation| relocated_version(&relocation))
            }
        };
        // A relocation is the same version as the record it copies: it
        // carries that record's seq and, written later, wins a tie.
        let (seq, relocated) = match record.kind {
            Kind::Relocate => (
                Relocation::decode(record.payload).map_or(0, |relocation| relocation.seq),
                true,
            ),
            _ => (record.seq, false),
        };
        match version {
            Ok((key, object)) => {
                let state = self.keys.entry(key).or_default();
                let slot = if before {
                    &mut state.before
                } else {
                    &mut state.after
                };
                if slot.is_none_or(|newest| newest.seq < seq || (relocated && newest.seq == seq)) {
                    *slot = Some(Version {
                        seq,
                        location,
                        object,
                    });
                }
            }
            Err(error) => self.findings.damage(
                self.place(location.segment, location.offset),
                format!("{:?} record does not decode: {}", record.kind, error.what),
            ),
        }
    }

    /// A multipart record: counted, and it must decode.
    fn visit_upload_record(&mut self, record: &ScannedRecord<'_>) {
        self.summary.upload_record_count += 1;
        let decoded = match record.kind {
            Kind::UploadCreate => UploadCreate::decode(record.payload).map(drop),
            Kind::UploadPart => UploadPart::decode(record.payload).map(drop),
            _ => UploadEnd::decode(record.payload).map(drop),
        };
        if let Err(error) = decoded {
            let location = record.location;
            self.findings.damage(
                self.place(location.segment, location.offset),
                format!("{:?} record does not decode: {}", record.kind, error.what),
            );
        }
    }

    /// The checkpoint lies on a record boundary inside the verified records.
    fn check_checkpoint(&mut self, segments: &[SegmentId]) {
        let position = self.checkpoint.position;
        // The uploads in progress as of the checkpoint must be readable.
        if let Err(error) = crate::storage::shard::uploads::load_snapshot(&self.dir, position) {
            self.findings.damage(
                self.summary.name.clone(),
                format!("the multipart uploads of the index checkpoint: {error}"),
            );
        }
        if segments.is_empty() && position == SegmentPosition::START {
            return;
        }
        let place = format!("{}/{INDEX_DIR}", self.summary.name);
        let Some(&end) = self.verified_end.get(&position.segment) else {
            self.findings.damage(
                place,
                format!(
                    "the checkpoint is in {}, which does not exist",
                    segment_file_name(position.segment)
                ),
            );
            return;
        };
        if self.is_unverified(position.segment, position.offset) {
            self.unverified_count += 1;
        } else if position.offset > end {
            self.findings.damage(
                place,
                format!(
                    "the checkpoint is at offset {} of {}, past the end of its verified \
                     records ({end}): the index claims records the segments do not hold",
                    position.offset,
                    segment_file_name(position.segment)
                ),
            );
        } else if position.offset != 0 && position.offset != end && !self.checkpoint_on_boundary {
            self.findings.damage(
                place,
                format!(
                    "the checkpoint at offset {} of {} is not on a record boundary",
                    position.offset,
                    segment_file_name(position.segment)
                ),
            );
        }
    }

    /// Phase 3, first half: every live entry the index lists, bucket by
    /// bucket, is the newest commit of its key before the checkpoint, and
    /// the per-bucket statistics add up.
    async fn check_index_listing(&mut self, index: &Index, reader: &SegmentReader<ReadOnlyDir>) {
        let mut buckets: BTreeSet<String> = self
            .keys
            .keys()
            .map(|key| key.bucket().to_owned())
            .collect();
        if let Some(catalog) = self.catalog {
            buckets.extend(catalog.buckets.keys().cloned());
        }
        for bucket in buckets {
            let mut object_count = 0_u64;
            let mut bytes = 0_u64;
            let mut start_after: Option<String> = None;
            loop {
                let page: Vec<(String, IndexEntry)> = index
                    .range(&bucket, start_after.as_deref(), "")
                    .take(INDEX_PAGE_KEYS)
                    .map(|(key, entry)| (key.to_owned(), entry))
                    .collect();
                for (key, entry) in &page {
                    if let Some(size) = entry.object_size() {
                        object_count += 1;
                        bytes += size;
                    }
                    self.check_index_entry(reader, &bucket, key, entry).await;
                }
                if page.len() < INDEX_PAGE_KEYS {
                    break;
                }
                start_after = page.last().map(|(key, _)| key.clone());
            }
            self.summary.index_object_count += object_count;
            let stats = index.bucket_stats(&bucket);
            if (stats.object_count, stats.bytes) != (object_count, bytes) {
                self.findings.damage(
                    format!("{}/{INDEX_DIR}", self.summary.name),
                    format!(
                        "the statistics of bucket {bucket:?} say {} objects and {} bytes, but its \
                         entries hold {object_count} objects and {bytes} bytes",
                        stats.object_count, stats.bytes
                    ),
                );
            }
        }
    }

    async fn check_index_entry(
        &mut self,
        reader: &SegmentReader<ReadOnlyDir>,
        bucket: &str,
        key: &str,
        entry: &IndexEntry,
    ) {
        let IndexValue::Object {
            commit,
            size,
            etag,
            last_modified_ms,
            ..
        } = entry.value
        else {
            return;
        };
        let indexed = Version {
            seq: entry.seq,
            location: commit,
            object: Some(ObjectSummary {
                size,
                etag,
                last_modified_ms,
            }),
        };
        let state = self
            .keys
            .get(&IndexKey::new(bucket, key))
            .copied()
            .unwrap_or_default();
        let expected = state.before;
        if expected == Some(indexed) {
            // The scan read this very record, checked it and decoded these
            // values from it.
            return;
        }
        if state.after.is_some_and(|after| after.seq >= entry.seq) {
            // A record after the checkpoint decides the key at start: a
            // newer version, the same record (a flush also takes records
            // appended after its checkpoint), or a relocation that points
            // the entry at the version's new place.
            return;
        }
        if self.is_unverified(commit.segment, commit.end()) {
            self.unverified_count += 1;
            return;
        }
        let newest = match expected {
            Some(version) => format!(
                "the newest record of the key before the checkpoint is {}",
                describe_version(&version)
            ),
            None => "no record before the checkpoint names the key".to_owned(),
        };
        let found = match read_commit(reader, commit).await {
            Ok(found) => match found {
                Ok(found) => format!(
                    "a commit of {}/{} (size {}, etag {})",
                    found.bucket,
                    found.key,
                    found.size,
                    index_etag(found.etag)
                ),
                Err(error) => format!("a commit that does not decode ({})", error.what),
            },
            Err(error) => format!("no valid commit ({error})"),
        };
        self.findings.damage(
            format!("{}/{INDEX_DIR}", self.summary.name),
            format!(
                "the entry of {bucket}/{key} is {}, but {newest}; the entry's location holds \
                 {found}",
                describe_version(&indexed)
            ),
        );
    }

    /// Phase 3, second half: every key whose newest record before the
    /// checkpoint is a commit has it in the index, and tombstones agree.
    /// (Live entries that differ were reported by the listing.)
    fn check_index_keys(&mut self, index: &Index) {
        for (key, state) in &self.keys {
            if state
                .after
                .is_some_and(|after| state.before.is_none_or(|before| after.seq > before.seq))
            {
                // A newer record after the checkpoint decides the key at
                // start, and a flush also takes records appended after its
                // checkpoint: a tombstone it took (kept, or dropped because
                // no older run was left) is not damage.
                continue;
            }
            let found = index.get(key.bucket(), key.key());
            let problem = match (state.before, found) {
                (
                    Some(
                        version @ Version {
                            object: Some(_), ..
                        },
                    ),
                    None,
                ) => Some(format!(
                    "the index has no entry for {}/{}, whose newest record before the \
                     checkpoint is {}",
                    key.bucket(),
                    key.key(),
                    describe_version(&version)
                )),
                (Some(version), Some(entry))
                    if entry.is_tombstone()
                        && (version.object.is_some() || version.seq != entry.seq) =>
                {
                    Some(format!(
                        "the index has a tombstone with seq {} for {}/{}, whose newest record \
                         before the checkpoint is {}",
                        entry.seq,
                        key.bucket(),
                        key.key(),
                        describe_version(&version)
                    ))
                }
                // A tombstone no record names is one compaction dropped once
                // no older version of its key was left: deleted either way.
                _ => None,
            };
            if let Some(problem) = problem {
                self.findings
                    .damage(format!("{}/{INDEX_DIR}", self.summary.name), problem);
            }
        }
    }

    /// Phases 4 and 5: read back every live object, commit and extents, and
    /// find its bucket in the catalog.
    async fn check_live_objects(&mut self, reader: &SegmentReader<ReadOnlyDir>) {
        let keys = std::mem::take(&mut self.keys);
        for (key, state) in &keys {
            let Some(version) = state.newest() else {
                continue;
            };
            let Some(object) = version.object else {
                continue;
            };
            self.summary.live_object_count += 1;
            self.summary.live_bytes += object.size;
            let name = format!("{}/{}", key.bucket(), key.key());
            if let Some(catalog) = self.catalog
                && !catalog.buckets.contains_key(key.bucket())
            {
                self.findings.damage(
                    self.place(version.location.segment, version.location.offset),
                    format!(
                        "object {name} is in bucket {:?}, which the catalog does not have",
                        key.bucket()
                    ),
                );
            }
            let commit = match read_commit(reader, version.location).await {
                Ok(commit) => commit,
                Err(error) => {
                    self.findings.damage(
                        self.place(version.location.segment, version.location.offset),
                        format!("the commit of object {name} does not read back: {error}"),
                    );
                    continue;
                }
            };
            let commit = match commit {
                Ok(commit) => commit,
                Err(error) => {
                    self.findings.damage(
                        self.place(version.location.segment, version.location.offset),
                        format!(
                            "the commit of object {name} does not decode: {}",
                            error.what
                        ),
                    );
                    continue;
                }
            };
            if commit.bucket != key.bucket()
                || commit.key != key.key()
                || commit.size != object.size
                || index_etag(commit.etag) != object.etag
            {
                self.findings.damage(
                    self.place(version.location.segment, version.location.offset),
                    format!(
                        "the commit of object {name} reads back as {}/{} with size {}, not \
                         what the scan found there",
                        commit.bucket, commit.key, commit.size
                    ),
                );
                continue;
            }
            // The bytes must also match the object's whole-object checksum.
            let whole = commit.checksums.iter().find(|checksum| !checksum.composite);
            let mut hasher = whole.map(|checksum| Hasher::new(checksum.algorithm));
            let mut complete = true;
            match &commit.body {
                ObjectBody::Inline(data) => {
                    if let Some(hasher) = &mut hasher {
                        hasher.update(data);
                    }
                }
                ObjectBody::Extents(extents) => {
                    for (number, extent) in extents.iter().enumerate() {
                        complete &= self
                            .check_extent(
                                reader,
                                &name,
                                version.location,
                                number,
                                extent,
                                &mut hasher,
                            )
                            .await;
                    }
                }
            }
            if let (Some(whole), Some(hasher), true) = (whole, hasher, complete)
                && hasher.finish(whole.algorithm) != whole.value
            {
                self.findings.damage(
                    self.place(version.location.segment, version.location.offset),
                    format!(
                        "the bytes of object {name} do not match its stored {:?} checksum",
                        whole.algorithm
                    ),
                );
            }
        }
    }

    /// One extent of a live object is a whole, valid `Data` record of its
    /// length, inside the verified records, before its commit. Its bytes go
    /// to `hasher`; returns whether they could be read.
    async fn check_extent(
        &mut self,
        reader: &SegmentReader<ReadOnlyDir>,
        name: &str,
        commit: Location,
        number: usize,
        extent: &Extent,
        hasher: &mut Option<Hasher>,
    ) -> bool {
        let location = extent.location;
        let place = self.place(location.segment, location.offset);
        let what = format!("extent {number} of object {name}");
        if (location.segment, location.offset) >= (commit.segment, commit.offset) {
            self.findings.damage(
                place.clone(),
                format!(
                    "{what} is not before its commit ({} offset {}): a start could replay the \
                     commit without its data",
                    segment_file_name(commit.segment),
                    commit.offset
                ),
            );
        }
        match self.verified_end.get(&location.segment) {
            None => {
                self.findings
                    .damage(place, format!("{what} is in a segment that does not exist"));
                return false;
            }
            // Past damage, the read below is the only check there is.
            Some(&end)
                if location.end() > end
                    && !self.is_unverified(location.segment, location.end()) =>
            {
                self.findings.damage(
                    place,
                    format!(
                        "{what} is past the verified records of its segment (they end at {end})"
                    ),
                );
                return false;
            }
            Some(_) => {}
        }
        match reader.read(location, Kind::Data).await {
            Ok(payload) if payload.len() == extent.data_len as usize => {
                if let Some(hasher) = hasher {
                    hasher.update(&payload);
                }
                true
            }
            Ok(payload) => {
                self.findings.damage(
                    place,
                    format!(
                        "{what} holds {} bytes, its commit says {}",
                        payload.len(),
                        extent.data_len
                    ),
                );
                false
            }
            Err(error) => {
                self.findings.damage(place, format!("{what}: {error}"));
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    //! The check against shards built through the storage engine itself
    //! (`Shard`), with an index flushed from their segments, then damaged
    //! on purpose. The integration tests (`tests/check.rs`) cover the real
    //! server and flipped bytes on disk.

    use std::rc::Rc;

    use md5::Digest as _;

    use super::*;
    use crate::storage::catalog::BucketInfo;
    use crate::storage::object::EXTENT_BYTES_MAX;
    use crate::storage::segment::Space;
    use crate::storage::shard::{Shard, shard_dir};

    use crate::test_support::run as run_on_executor;

    fn commit(bucket: &str, key: &str, data: &[u8], body: ObjectBody) -> ObjectCommit {
        ObjectCommit {
            bucket: bucket.to_owned(),
            key: key.to_owned(),
            size: data.len() as u64,
            etag: ETag::Md5(md5::Md5::digest(data).into()),
            last_modified_ms: 1_767_225_600_000,
            content_type: None,
            cache_control: None,
            content_disposition: None,
            content_encoding: None,
            content_language: None,
            expires: None,
            user_metadata: Vec::new(),
            checksums: Vec::new(),
            part_sizes: Vec::new(),
            body,
        }
    }

    /// Store `data` as `bucket/key` through the shard, inline or in extents
    /// as `PutObject` does.
    async fn put(shard: &Rc<Shard>, bucket: &str, key: &str, data: &[u8]) -> ObjectCommit {
        let body = if data.len() <= crate::storage::object::INLINE_BYTES_MAX {
            ObjectBody::Inline(data.to_vec())
        } else {
            let mut extents = Vec::new();
            for piece in data.chunks(EXTENT_BYTES_MAX as usize) {
                extents.push(shard.append_data(piece, Space::Data).await.unwrap());
            }
            ObjectBody::Extents(extents)
        };
        let commit = commit(bucket, key, data, body);
        shard.commit(&commit, None).await.unwrap();
        commit
    }

    fn data(seed: u8, len: usize) -> Vec<u8> {
        (0..len)
            .map(|index| seed.wrapping_add(u8::try_from(index % 251).expect("below 251")))
            .collect()
    }

    /// A data directory of one shard holding `bucket-a` objects; the
    /// catalog holds `buckets`.
    fn data_dir(buckets: &[&str]) -> tempfile::TempDir {
        let temp = tempfile::tempdir().unwrap();
        std::fs::write(
            temp.path().join(FORMAT_FILE),
            "ringstore-format 1\nshards 1\n",
        )
        .unwrap();
        std::fs::write(temp.path().join(LOCK_FILE), "").unwrap();
        let catalog = Catalog {
            generation: 1,
            buckets: buckets
                .iter()
                .map(|name| {
                    (
                        (*name).to_owned(),
                        BucketInfo {
                            region: "us-east-1".to_owned(),
                            created_ms: 0,
                        },
                    )
                })
                .collect(),
        };
        std::fs::write(temp.path().join("catalog"), catalog.encode()).unwrap();
        temp
    }

    /// Write objects through a real shard: `small` (inline), `large` (three
    /// extents), `gone` (deleted), `twice` (overwritten). Returns the live
    /// bytes.
    fn write_objects(data_dir: &Path) -> u64 {
        let dir = shard_dir(data_dir, 0);
        run_on_executor(move || async move {
            let shard = Rc::new(Shard::open(&dir).await.unwrap());
            let small = put(&shard, "bucket-a", "small", &data(1, 100)).await;
            let large = put(&shard, "bucket-a", "large", &data(2, 2 * 1024 * 1024 + 5)).await;
            put(&shard, "bucket-a", "gone", &data(3, 10)).await;
            put(&shard, "bucket-a", "twice", &data(4, 70_000)).await;
            let twice = put(&shard, "bucket-a", "twice", &data(5, 20)).await;
            shard
                .delete(&ObjectTombstone {
                    bucket: "bucket-a".to_owned(),
                    key: "gone".to_owned(),
                    deleted_ms: 1_767_225_600_001,
                })
                .await
                .unwrap();
            small.size + large.size + twice.size
        })
    }

    /// Rebuild the shard's index from its segments and flush it with a
    /// checkpoint at the end of the records, as the shard's flush would;
    /// then insert `extra` entries (with sequence numbers past every
    /// record) and flush those too.
    fn flush_index(data_dir: &Path, extra: Vec<(IndexKey, IndexEntry)>) {
        let dir = shard_dir(data_dir, 0);
        run_on_executor(move || async move {
            segment::open_marker(&dir).await.unwrap();
            let (mut index, _) = Index::open(&dir.join(INDEX_DIR)).unwrap();
            let segments = crate::storage::shard::list_segments(&dir).unwrap();
            let mut end = SegmentPosition::START;
            let mut next_seq = 1;
            for &id in &segments {
                let file = segment::DmaSegmentDir::new(&dir).open(id).await.unwrap();
                let role = if Some(&id) == segments.last() {
                    SegmentRole::Last
                } else {
                    SegmentRole::Sealed
                };
                let scan_end = segment::scan(&file, id, 0, role, |record| {
                    let (key, value) = match record.kind {
                        Kind::Commit => {
                            let commit = ObjectCommit::decode(record.payload).unwrap();
                            let value =
                                crate::storage::shard::object_index_value(record.location, &commit);
                            (IndexKey::new(&commit.bucket, &commit.key), value)
                        }
                        Kind::Tombstone => {
                            let tombstone = ObjectTombstone::decode(record.payload).unwrap();
                            let key = IndexKey::new(&tombstone.bucket, &tombstone.key);
                            (key, IndexValue::Tombstone)
                        }
                        Kind::Data
                        | Kind::Padding
                        | Kind::Relocate
                        | Kind::UploadCreate
                        | Kind::UploadPart
                        | Kind::UploadEnd => return Ok(()),
                    };
                    index.insert(
                        key,
                        IndexEntry {
                            seq: record.seq,
                            value,
                        },
                    );
                    Ok(())
                })
                .await
                .unwrap();
                end = SegmentPosition {
                    segment: id,
                    offset: scan_end.offset(),
                };
                next_seq = scan_end.last_seq().map_or(next_seq, |seq| seq + 1);
            }
            index
                .flush(Checkpoint {
                    position: end,
                    next_seq,
                })
                .unwrap();
            // As the shard's flush does: the uploads as of the checkpoint.
            crate::storage::shard::uploads::write_snapshot(
                &dir,
                end,
                &crate::storage::shard::uploads::Uploads::default().encode_snapshot(),
            )
            .unwrap();
            if !extra.is_empty() {
                let count = extra.len() as u64;
                for (offset, (key, mut entry)) in (0_u64..).zip(extra) {
                    entry.seq = next_seq + offset;
                    index.insert(key, entry);
                }
                index
                    .flush(Checkpoint {
                        position: end,
                        next_seq: next_seq + count,
                    })
                    .unwrap();
            }
        });
    }

    fn damage(report: &Report) -> Vec<String> {
        report
            .findings
            .shown
            .iter()
            .filter(|finding| finding.severity == Severity::Damage)
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn a_clean_shard_with_a_flushed_index_passes() {
        // Goal: the check accepts what the engine writes, both with the
        // index holding nothing (every record after the checkpoint) and
        // with a flushed run holding everything; its counts are the
        // objects written.
        let temp = data_dir(&["bucket-a"]);
        let live_bytes = write_objects(temp.path());
        for flushed in [false, true] {
            if flushed {
                flush_index(temp.path(), Vec::new());
            }
            let report = run(temp.path()).unwrap();
            assert!(!report.is_damaged(), "{report}");
            assert_eq!(report.findings.warning_count, 0, "{report}");
            let totals = report.totals();
            assert_eq!(totals.live_object_count, 3, "{report}");
            assert_eq!(totals.live_bytes, live_bytes);
            assert_eq!(totals.data_record_count, 3 + 1);
            assert_eq!(totals.commit_record_count, 5);
            assert_eq!(totals.tombstone_record_count, 1);
            assert_eq!(totals.run_count, u64::from(flushed));
            assert_eq!(totals.index_object_count, if flushed { 3 } else { 0 });
            let text = report.to_string();
            assert!(text.contains("live objects: 3\n"), "{text}");
            assert!(text.contains("result: ok\n"), "{text}");
        }
        // Without the uploads of its checkpoint, the shard is damaged.
        let snapshots: Vec<std::path::PathBuf> = std::fs::read_dir(shard_dir(temp.path(), 0))
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .filter(|path| path.to_string_lossy().contains("uploads-"))
            .collect();
        assert_eq!(snapshots.len(), 1);
        let saved = std::fs::read(&snapshots[0]).unwrap();
        std::fs::remove_file(&snapshots[0]).unwrap();
        let report = run(temp.path()).unwrap();
        assert!(
            damage(&report)
                .iter()
                .any(|finding| finding.contains("multipart uploads")),
            "{report}"
        );
        std::fs::write(&snapshots[0], saved).unwrap();
        // The check changed nothing: the index directory holds one run and
        // the manifest, as the flush left it.
        let mut names: Vec<String> = std::fs::read_dir(shard_dir(temp.path(), 0).join(INDEX_DIR))
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["MANIFEST", "run-00000001"]);
    }

    #[test]
    fn an_index_that_disagrees_with_the_segments_is_damage() {
        // Goal: each way the index can disagree with the segments is
        // reported, naming the key. Method: flush entries no record backs
        // (an object that was never written, a wrong size for a live key,
        // a tombstone over a live key).
        let temp = data_dir(&["bucket-a"]);
        write_objects(temp.path());
        let bogus = |size| IndexValue::Object {
            commit: Location {
                segment: 1,
                offset: 0,
                len: 64,
            },
            first_segment: 1,
            size,
            etag: Etag {
                md5: [9; 16],
                part_count: 0,
            },
            last_modified_ms: 0,
        };
        flush_index(
            temp.path(),
            vec![
                (
                    IndexKey::new("bucket-a", "phantom"),
                    IndexEntry {
                        seq: 0,
                        value: bogus(5),
                    },
                ),
                (
                    IndexKey::new("bucket-a", "large"),
                    IndexEntry {
                        seq: 0,
                        value: bogus(7),
                    },
                ),
                (
                    IndexKey::new("bucket-a", "small"),
                    IndexEntry {
                        seq: 0,
                        value: IndexValue::Tombstone,
                    },
                ),
            ],
        );
        let report = run(temp.path()).unwrap();
        let damage = damage(&report);
        let text = damage.join("\n");
        assert!(text.contains("bucket-a/phantom"), "{text}");
        assert!(
            text.contains("no record before the checkpoint names the key"),
            "{text}"
        );
        assert!(text.contains("bucket-a/large"), "{text}");
        assert!(
            text.contains("tombstone") && text.contains("bucket-a/small"),
            "{text}"
        );
        // The live objects are still counted from the segments.
        assert!(report.is_damaged());
        assert_eq!(report.totals().live_object_count, 3, "{report}");
    }

    #[test]
    fn bytes_that_do_not_match_their_stored_checksum_are_damage() {
        // Goal: an object whose records are sound but whose bytes are not
        // the ones its stored whole-object checksum was computed over (a
        // bug, or damage that kept a valid CRC) is damage; a matching one
        // and a composite one are not.
        let temp = data_dir(&["bucket-a"]);
        let dir = shard_dir(temp.path(), 0);
        run_on_executor(move || async move {
            let shard = Rc::new(Shard::open(&dir).await.unwrap());
            for (key, len, stored_over, composite) in [
                ("inline-good", 100, 100, false),
                ("inline-bad", 100, 99, false),
                (
                    "extents-good",
                    2 * 1024 * 1024 + 3,
                    2 * 1024 * 1024 + 3,
                    false,
                ),
                ("extents-bad", 2 * 1024 * 1024 + 3, 5, false),
                ("composite", 100, 1, true),
            ] {
                let bytes = data(3, len);
                let algorithm = crate::storage::object::ChecksumAlgorithm::Crc32c;
                let body = if len <= crate::storage::object::INLINE_BYTES_MAX {
                    ObjectBody::Inline(bytes.clone())
                } else {
                    let mut extents = Vec::new();
                    for piece in bytes.chunks(EXTENT_BYTES_MAX as usize) {
                        extents.push(shard.append_data(piece, Space::Data).await.unwrap());
                    }
                    ObjectBody::Extents(extents)
                };
                let mut commit = commit("bucket-a", key, &bytes, body);
                commit.checksums = vec![crate::storage::object::Checksum {
                    algorithm,
                    value: crate::storage::digest::digest(algorithm, &bytes[..stored_over]),
                    composite,
                }];
                shard.commit(&commit, None).await.unwrap();
            }
        });
        let report = run(temp.path()).unwrap();
        let text = damage(&report).join("\n");
        for key in ["inline-bad", "extents-bad"] {
            assert!(
                text.contains(&format!("object bucket-a/{key} do not match its stored")),
                "{text}"
            );
        }
        assert_eq!(damage(&report).len(), 2, "{text}");
    }

    #[test]
    fn objects_outside_the_catalog_and_bad_extents_are_damage() {
        // Goal: a live object in a bucket the catalog lacks is damage, and
        // so is an extent that points past its segment's records or into a
        // segment that does not exist.
        let temp = data_dir(&["other-bucket"]);
        let dir = shard_dir(temp.path(), 0);
        run_on_executor(move || async move {
            let shard = Rc::new(Shard::open(&dir).await.unwrap());
            let bytes = data(7, 100);
            let extent = |segment, offset| Extent {
                location: Location {
                    segment,
                    offset,
                    len: crate::storage::record::record_len(100),
                },
                data_len: 100,
            };
            for (key, extent) in [
                ("past-the-end", extent(1, 1 << 20)),
                ("no-segment", extent(9, 0)),
            ] {
                let commit = commit("bucket-a", key, &bytes, ObjectBody::Extents(vec![extent]));
                shard.commit(&commit, None).await.unwrap();
            }
        });
        let report = run(temp.path()).unwrap();
        let text = damage(&report).join("\n");
        assert!(text.contains("which the catalog does not have"), "{text}");
        assert!(
            text.contains("extent 0 of object bucket-a/past-the-end is past the verified records"),
            "{text}"
        );
        assert!(
            text.contains(
                "extent 0 of object bucket-a/no-segment is in a segment that does not exist"
            ),
            "{text}"
        );
    }

    #[test]
    fn a_locked_data_directory_is_refused() {
        let temp = data_dir(&[]);
        let lock = File::open(temp.path().join(LOCK_FILE)).unwrap();
        lock.try_lock().unwrap();
        let error = run(temp.path()).unwrap_err();
        assert!(error.0.contains("in use by a running ringstore"), "{error}");
        drop(lock);
        assert!(run(temp.path()).is_ok());
    }

    #[test]
    fn a_directory_without_format_is_not_a_data_directory() {
        let temp = tempfile::tempdir().unwrap();
        let error = run(temp.path()).unwrap_err();
        assert!(
            error.0.contains("not a ringstore data directory"),
            "{error}"
        );
    }
}
