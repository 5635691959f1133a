//! `Shard`: the object storage one core owns — its segments, its index.
//!
//! # Layout
//!
//! ```text
//! <data-dir>/shard-NN/dma-probe       non-empty marker, opened first (DESIGN.md platform notes)
//! <data-dir>/shard-NN/seg-00000001..  append-only segments (segment.rs)
//! <data-dir>/shard-NN/index/          runs and MANIFEST (index/)
//! ```
//!
//! # Writes: two phases, durable before acknowledged
//!
//! An object's bytes are appended as `Data` records while the body arrives
//! ([`Shard::append_data`]); nothing points at them yet. [`Shard::commit`]
//! appends the `Commit` record, waits for the group-commit flush that makes
//! it durable, and only then inserts it into the index: a reader never sees
//! an object that a crash could take back, and a failed upload leaves only
//! unreferenced `Data` records (reclaimed by compaction) and the previous
//! version of the object untouched. Small objects skip the `Data` records:
//! their bytes are inline in the commit record.
//!
//! # Index checkpoints
//!
//! The index is flushed to a run when its memtable is large, with a
//! checkpoint: a segment position before which every commit and tombstone
//! is in the index. Records whose flush has not finished are "pending"
//! (appended, not yet inserted), so the checkpoint is the earliest pending
//! record, or the end of the appended records when none is pending. The
//! file work runs on glommio's blocking thread pool, off the core.
//!
//! # Recovery
//!
//! [`Shard::open`] maps the index (cost independent of the number of
//! objects), then replays every segment record from the checkpoint on:
//! commits and tombstones are inserted (an entry with an older or equal
//! sequence number than the index has is ignored, so replaying what a run
//! already holds is harmless), and relocations (`Relocate` records that
//! compaction wrote) point their version at its new place unless the index
//! knows a newer one. The last segment may end in a torn write, which is
//! cut off (segment.rs explains how a torn tail is told from damage);
//! damage anywhere else stops the start with an error.
//!
//! # Space
//!
//! Overwritten and deleted objects, and the extents of uploads that never
//! committed, are garbage; `compaction` moves what is live out of sparse
//! sealed segments and deletes them. GETs pin the segments they read
//! ([`ReadPin`]) for as long as they stream.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::rc::Rc;

mod compaction;
pub mod listing;
#[cfg(test)]
mod recovery_tests;
mod scrub;
#[cfg(test)]
pub(crate) mod testing;
pub mod uploads;

pub use compaction::{COMPACTION_LIVE_PERCENT_MAX, CompactionStats};
pub use scrub::ScrubStats;

use super::index::{
    Checkpoint, Etag, Index, IndexEntry, IndexError, IndexKey, IndexValue, SegmentPosition,
};
use super::location::{Location, SegmentId};
use super::object::{
    ETag, ObjectBody, ObjectCommit, ObjectTombstone, RelocatedVersion, Relocation,
};
use super::record::Kind;
use super::segment::{
    self, DmaSegmentDir, ScanEnd, SegmentDir as _, SegmentReader, SegmentRole, SegmentWriter,
    Space, StorageError, WriterOptions,
};

/// Everything a shard can fail with at start or while serving.
#[derive(Debug)]
pub enum ShardError {
    Storage(StorageError),
    Index(IndexError),
    Io(std::io::Error),
    /// A commit or tombstone payload that passed its CRC does not decode:
    /// a bug or damage the checksum missed.
    Decode {
        location: Location,
        what: &'static str,
    },
}

impl std::fmt::Display for ShardError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Storage(error) => write!(f, "{error}"),
            Self::Index(error) => write!(f, "index: {error}"),
            Self::Io(error) => write!(f, "{error}"),
            Self::Decode { location, what } => write!(
                f,
                "record at segment {} offset {} does not decode: {what}",
                location.segment, location.offset
            ),
        }
    }
}

impl std::error::Error for ShardError {}

impl From<StorageError> for ShardError {
    fn from(error: StorageError) -> Self {
        Self::Storage(error)
    }
}

impl From<IndexError> for ShardError {
    fn from(error: IndexError) -> Self {
        Self::Index(error)
    }
}

/// The name of shard `id`'s directory inside the data directory.
#[must_use]
pub fn shard_dir(data_dir: &Path, id: usize) -> PathBuf {
    data_dir.join(format!("shard-{id:02}"))
}

/// Flush the index once a start would replay this many segment bytes, even
/// if the memtable is small: start-up time is bounded by the tail since the
/// checkpoint (DESIGN.md, Recovery), and a few large objects make a long
/// tail with few index entries. 512 MiB reads in about a second on the
/// disks we target.
pub const REPLAY_BYTES_FLUSH: u64 = 512 * 1024 * 1024;

/// Pause after an index job failed without committing anything (the disk
/// was full, say) before the next one: long enough not to spin on a full
/// disk, short enough that the checkpoint follows soon once space returns.
pub const INDEX_JOB_RETRY_PAUSE: std::time::Duration = std::time::Duration::from_secs(1);

pub struct Shard {
    dir: PathBuf,
    writer: SegmentWriter<DmaSegmentDir>,
    reader: SegmentReader<DmaSegmentDir>,
    index: RefCell<Index>,
    /// Commit, tombstone and relocation records appended but not yet in
    /// the index.
    pending: RefCell<BTreeSet<(SegmentId, u64)>>,
    /// Keys with a commit or tombstone on its way (marked before its
    /// append, cleared once it is in the index): compaction does not move a
    /// version forward while a newer one may already be in the segments.
    pending_keys: RefCell<HashMap<IndexKey, u32>>,
    /// An index flush or merge is running on the blocking pool.
    index_job_running: Cell<bool>,
    /// A job failed without committing anything (a full disk, say): the
    /// next one waits until then, so that writes do not retry it at once.
    index_retry_at: Cell<Option<std::time::Instant>>,
    /// Readers in progress per segment (see [`ReadPin`]).
    pins: Rc<RefCell<BTreeMap<SegmentId, u32>>>,
    /// Uploads in progress, by the segment that was active when they began
    /// (see [`UploadGuard`]).
    uploads: Rc<RefCell<BTreeMap<SegmentId, u32>>>,
    compaction: compaction::State,
    /// Multipart uploads in progress (see `uploads`).
    multipart: RefCell<uploads::Uploads>,
    scrub: scrub::State,
    /// Size bound of this shard's segments (for the replay estimate).
    segment_bytes_max: u64,
    /// Lengths of sealed segments, filled in as they are first seen (see
    /// [`Self::segment_bytes`]).
    sealed_segment_bytes: RefCell<BTreeMap<SegmentId, u64>>,
}

/// Keeps the segments an object's records are in from being deleted by
/// compaction while a GET still reads them. Taken together with the index
/// lookup, so no compaction can delete them in between.
pub struct ReadPin {
    pins: Rc<RefCell<BTreeMap<SegmentId, u32>>>,
    segments: std::ops::RangeInclusive<SegmentId>,
}

/// Marks an upload in progress: its extents, appended from the segment that
/// was active when it began, are live before any commit names them, so
/// compaction must not empty those segments until the upload ends. Held by
/// a PUT from before its first extent until after its commit (or failure).
pub struct UploadGuard {
    uploads: Rc<RefCell<BTreeMap<SegmentId, u32>>>,
    segment: SegmentId,
    /// The writer's epoch when the upload began: if it changes before the
    /// commit, extents the upload appended may have been dropped (a write
    /// found the disk full), and the commit is refused.
    epoch: u64,
}

impl Drop for UploadGuard {
    fn drop(&mut self) {
        let mut uploads = self.uploads.borrow_mut();
        let count = uploads.get_mut(&self.segment).expect("registered");
        *count -= 1;
        if *count == 0 {
            uploads.remove(&self.segment);
        }
    }
}

impl Drop for ReadPin {
    fn drop(&mut self) {
        let mut pins = self.pins.borrow_mut();
        for segment in self.segments.clone() {
            let count = pins.get_mut(&segment).expect("pinned");
            *count -= 1;
            if *count == 0 {
                pins.remove(&segment);
            }
        }
    }
}

impl Shard {
    /// Open (or create) the shard in `dir` and recover it.
    pub async fn open(dir: &Path) -> Result<Shard, ShardError> {
        Self::open_with(dir, WriterOptions::default()).await
    }

    pub async fn open_with(dir: &Path, options: WriterOptions) -> Result<Shard, ShardError> {
        create_dirs_durably(dir).map_err(ShardError::Io)?;
        segment::open_marker(dir).await.map_err(ShardError::Io)?;
        let (mut index, checkpoint) = Index::open(&dir.join("index"))?;
        let mut multipart = uploads::load_snapshot(dir, checkpoint.position)?;
        uploads::remove_other_snapshots(dir, checkpoint.position).map_err(ShardError::Io)?;
        let segment_dir = DmaSegmentDir::new(dir);
        let mut segments = list_segments(dir).map_err(ShardError::Io)?;
        let sealed_segment_bytes = sealed_segment_lengths(dir, &segments)?;
        segments.retain(|&id| id >= checkpoint.position.segment);
        check_segments_follow(&segments, checkpoint.position)?;
        let (next_seq, end) = replay_segments(
            &segment_dir,
            &segments,
            checkpoint,
            &mut index,
            &mut multipart,
        )
        .await?;
        let writer = match end {
            Some((id, ScanEnd::Sealed { .. })) => {
                SegmentWriter::create(segment_dir.clone(), id + 1, next_seq, options).await?
            }
            Some((id, ScanEnd::Open { offset, .. } | ScanEnd::TornTail { offset, .. })) => {
                SegmentWriter::open(segment_dir.clone(), id, offset, next_seq, options).await?
            }
            None => {
                let first = checkpoint.position.segment.max(1);
                SegmentWriter::create(segment_dir.clone(), first, next_seq, options).await?
            }
        };
        Ok(Shard {
            dir: dir.to_owned(),
            writer,
            reader: SegmentReader::new(segment_dir),
            index: RefCell::new(index),
            pending: RefCell::new(BTreeSet::new()),
            pending_keys: RefCell::new(HashMap::new()),
            index_job_running: Cell::new(false),
            index_retry_at: Cell::new(None),
            pins: Rc::new(RefCell::new(BTreeMap::new())),
            uploads: Rc::new(RefCell::new(BTreeMap::new())),
            compaction: compaction::State::new(options.segment_bytes_max),
            segment_bytes_max: options.segment_bytes_max,
            sealed_segment_bytes: RefCell::new(sealed_segment_bytes),
            multipart: RefCell::new(multipart),
            scrub: scrub::State::default(),
        })
    }

    /// The live version of `key`, if any.
    #[must_use]
    pub fn lookup(&self, bucket: &str, key: &str) -> Option<IndexEntry> {
        self.index.borrow().get_live(bucket, key)
    }

    /// The live version of `key`, with its segments pinned until the pin is
    /// dropped: what a GET uses, so that compaction waits for it before it
    /// deletes a segment the object was in.
    #[must_use]
    pub fn lookup_pinned(&self, bucket: &str, key: &str) -> Option<(IndexEntry, ReadPin)> {
        let entry = self.lookup(bucket, key)?;
        let IndexValue::Object {
            commit,
            first_segment,
            ..
        } = entry.value
        else {
            unreachable!("lookup returns live objects only");
        };
        let segments = first_segment.clamp(1, commit.segment)..=commit.segment;
        let mut pins = self.pins.borrow_mut();
        for segment in segments.clone() {
            *pins.entry(segment).or_insert(0) += 1;
        }
        Some((
            entry,
            ReadPin {
                pins: Rc::clone(&self.pins),
                segments,
            },
        ))
    }

    fn pinned(&self, segment: SegmentId) -> bool {
        self.pins.borrow().contains_key(&segment)
    }

    /// Start an upload whose extents [`Self::append_data`] will write (see
    /// [`UploadGuard`]).
    #[must_use]
    pub fn begin_upload(&self) -> UploadGuard {
        let (segment, _) = self.writer.appended_end();
        *self.uploads.borrow_mut().entry(segment).or_insert(0) += 1;
        UploadGuard {
            uploads: Rc::clone(&self.uploads),
            segment,
            epoch: self.writer.epoch(),
        }
    }

    /// Whether a multipart upload in progress has records in `segment`.
    fn multipart_holds(&self, segment: SegmentId) -> bool {
        self.multipart.borrow().holds(segment)
    }

    /// Whether an upload in progress may have extents in `segment`.
    fn upload_may_use(&self, segment: SegmentId) -> bool {
        self.uploads.borrow().range(..=segment).next().is_some()
    }

    #[must_use]
    pub fn bucket_is_empty(&self, bucket: &str) -> bool {
        self.index.borrow().bucket_is_empty(bucket)
            && !self.multipart.borrow().bucket_has_uploads(bucket)
    }

    /// Whether new object data can be stored now: false while the disk is
    /// full (the last segment new data asked for was refused, and the file
    /// system still lacks the room). Handlers ask before reading a body,
    /// so that a client is refused before it sends one.
    #[must_use]
    pub fn has_room_for_data(&self) -> bool {
        self.writer.has_room_for_data()
    }

    /// Why this shard's writer stopped for good, if it has: a segment
    /// write or fdatasync failed, and it takes no writes until a restart.
    #[must_use]
    pub fn write_failure(&self) -> Option<String> {
        self.writer.failure()
    }

    /// Append one extent of object bytes (at most `object::EXTENT_BYTES_MAX`).
    /// Not durable, not visible: a later [`Self::commit`] makes it both.
    /// `space` is [`Space::Data`] for new object bytes, and
    /// [`Space::Reserve`] for compaction's copies.
    pub async fn append_data(
        &self,
        bytes: &[u8],
        space: Space,
    ) -> Result<super::object::Extent, ShardError> {
        let data_len = u32::try_from(bytes.len()).expect("extents are bounded");
        assert!(data_len <= super::object::EXTENT_BYTES_MAX);
        let location = self.writer.append(Kind::Data, bytes, space).await?;
        Ok(super::object::Extent { location, data_len })
    }

    /// Make `commit` durable, then visible. `upload` is the guard of the
    /// upload that appended the commit's extents in this request (`None`
    /// when the commit names only durable bytes: a copy within the core,
    /// a completed multipart upload).
    pub async fn commit(
        self: &Rc<Self>,
        commit: &ObjectCommit,
        upload: Option<&UploadGuard>,
    ) -> Result<(), ShardError> {
        if let ObjectBody::Extents(extents) = &commit.body {
            // A segment being emptied that this commit names must stay: its
            // emptying may already have walked past this key.
            self.compaction.referenced(extents);
        }
        let key = IndexKey::new(&commit.bucket, &commit.key);
        let payload = commit.encode();
        // The extents must still be there: no record was dropped since the
        // upload began (checked where the commit takes its place).
        let upload_epoch = upload.map(|upload| upload.epoch);
        let appended = self
            .append_pending_if(Kind::Commit, &payload, Some(&key), Space::Data, || {
                upload_epoch.is_none_or(|epoch| epoch == self.writer.epoch())
            })
            .await?;
        let Some((location, seq, epoch)) = appended else {
            return Err(ShardError::Storage(StorageError::NoSpace(
                "the disk filled up while the object was received; its data was dropped".to_owned(),
            )));
        };
        let result = self.writer.sync(location, epoch).await;
        if result.is_ok() {
            let value = object_index_value(location, commit);
            let previous = self.index.borrow().get_live(&commit.bucket, &commit.key);
            if self
                .index
                .borrow_mut()
                .insert(key.clone(), IndexEntry { seq, value })
            {
                self.compaction.superseded(previous.as_ref());
            }
        }
        self.unmark_pending(location, Some(&key));
        result?;
        self.maybe_flush_index();
        Ok(())
    }

    /// Delete `key`: durable tombstone, then gone from the index. Returns
    /// whether there was a live object.
    pub async fn delete(self: &Rc<Self>, tombstone: &ObjectTombstone) -> Result<bool, ShardError> {
        if self.lookup(&tombstone.bucket, &tombstone.key).is_none() {
            return Ok(false);
        }
        let key = IndexKey::new(&tombstone.bucket, &tombstone.key);
        let (location, seq, epoch) = self
            .append_pending(
                Kind::Tombstone,
                &tombstone.encode(),
                Some(&key),
                Space::Reserve,
            )
            .await?;
        let result = self.writer.sync(location, epoch).await;
        if result.is_ok() {
            let previous = self
                .index
                .borrow()
                .get_live(&tombstone.bucket, &tombstone.key);
            if self.index.borrow_mut().insert(
                key.clone(),
                IndexEntry {
                    seq,
                    value: IndexValue::Tombstone,
                },
            ) {
                self.compaction.superseded(previous.as_ref());
            }
        }
        self.unmark_pending(location, Some(&key));
        result?;
        self.maybe_flush_index();
        Ok(true)
    }

    /// Append a record and mark it pending until it is in the index; its
    /// key too, from before the append. Returns the record's location,
    /// sequence number (see [`Self::appended_seq`]) and the writer's epoch
    /// it was appended in (for [`SegmentWriter::sync`]).
    async fn append_pending(
        &self,
        kind: Kind,
        payload: &[u8],
        key: Option<&IndexKey>,
        space: Space,
    ) -> Result<(Location, u64, u64), ShardError> {
        let appended = self
            .append_pending_if(kind, payload, key, space, || true)
            .await?;
        Ok(appended.expect("the condition always holds"))
    }

    /// [`Self::append_pending`] if `condition` holds when the record takes
    /// its place ([`SegmentWriter::append_if`]); `None` otherwise.
    async fn append_pending_if(
        &self,
        kind: Kind,
        payload: &[u8],
        key: Option<&IndexKey>,
        space: Space,
        condition: impl FnOnce() -> bool,
    ) -> Result<Option<(Location, u64, u64)>, ShardError> {
        if let Some(key) = key {
            *self
                .pending_keys
                .borrow_mut()
                .entry(key.clone())
                .or_insert(0) += 1;
        }
        let appended = self.writer.append_if(kind, payload, space, condition).await;
        let Ok(Some(location)) = appended else {
            if let Some(key) = key {
                self.unmark_pending_key(key);
            }
            return appended.map(|_| None).map_err(ShardError::from);
        };
        let seq = self.appended_seq();
        let epoch = self.writer.epoch();
        self.pending
            .borrow_mut()
            .insert((location.segment, location.offset));
        Ok(Some((location, seq, epoch)))
    }

    /// The sequence number of the record just appended: the writer numbers
    /// records in append order and nothing runs between the append's return
    /// and this call, so it is the number before the writer's next one (a
    /// seal padding record cannot follow it: seals come before).
    fn appended_seq(&self) -> u64 {
        self.writer.next_seq() - 1
    }

    fn unmark_pending(&self, location: Location, key: Option<&IndexKey>) {
        self.pending
            .borrow_mut()
            .remove(&(location.segment, location.offset));
        if let Some(key) = key {
            self.unmark_pending_key(key);
        }
    }

    fn unmark_pending_key(&self, key: &IndexKey) {
        let mut keys = self.pending_keys.borrow_mut();
        let count = keys.get_mut(key).expect("marked");
        *count -= 1;
        if *count == 0 {
            keys.remove(key);
        }
    }

    /// Read the commit an index entry points at: a `Commit` record, or the
    /// `Relocate` record compaction moved it to.
    pub async fn read_commit(&self, location: Location) -> Result<ObjectCommit, ShardError> {
        Ok(self.read_commit_record(location).await?.0)
    }

    /// The commit at `location` and the segment its version was first
    /// written to.
    async fn read_commit_record(
        &self,
        location: Location,
    ) -> Result<(ObjectCommit, SegmentId), ShardError> {
        let decode_error = |what| ShardError::Decode { location, what };
        let (kind, payload) = self
            .reader
            .read_of(location, &[Kind::Commit, Kind::Relocate])
            .await?;
        if kind == Kind::Commit {
            let commit =
                ObjectCommit::decode(&payload).map_err(|error| decode_error(error.what))?;
            return Ok((commit, location.segment));
        }
        let relocation = Relocation::decode(&payload).map_err(|error| decode_error(error.what))?;
        match relocation.version {
            RelocatedVersion::Commit(commit) => Ok((commit, relocation.origin_segment)),
            RelocatedVersion::Tombstone(_) => {
                Err(decode_error("a relocated tombstone, not a commit"))
            }
        }
    }

    /// Bytes `start..start + len` of one extent's data, checked.
    pub async fn read_extent(
        &self,
        extent: &super::object::Extent,
        start: u32,
        len: u32,
    ) -> Result<impl std::ops::Deref<Target = [u8]>, ShardError> {
        assert!(u64::from(start) + u64::from(len) <= u64::from(extent.data_len));
        Ok(self.reader.read_range(extent.location, start, len).await?)
    }

    /// Flush the index memtable to a run when it is large enough (or the
    /// replay tail long enough), and merge runs when there are too many.
    /// The work runs in a task of its own; the file writing on glommio's
    /// blocking pool.
    fn maybe_flush_index(self: &Rc<Self>) {
        if self.index_job_running.get() {
            return;
        }
        if let Some(at) = self.index_retry_at.get() {
            if std::time::Instant::now() < at {
                return;
            }
            self.index_retry_at.set(None);
        }
        let needs_flush =
            self.index.borrow().needs_flush() || self.replay_bytes() >= REPLAY_BYTES_FLUSH;
        let needs_merge = self.index.borrow().needs_merge();
        if !needs_flush && !needs_merge {
            return;
        }
        self.index_job_running.set(true);
        let shard = Rc::clone(self);
        glommio::spawn_local(async move {
            let result = if needs_flush {
                shard.flush_index().await
            } else {
                shard.merge_index().await
            };
            shard.index_job_running.set(false);
            match result {
                // More may be due (a merge after a flush).
                Ok(()) => shard.maybe_flush_index(),
                // Nothing changed: the job runs again after a pause (the
                // segments hold everything meanwhile; a start replays them).
                Err(ShardError::Index(IndexError::NotCommitted(error))) => {
                    tracing::warn!(%error, "index job failed before committing; retrying later");
                    shard
                        .index_retry_at
                        .set(Some(std::time::Instant::now() + INDEX_JOB_RETRY_PAUSE));
                }
                // The index stays readable and refuses further jobs; the
                // segments still hold everything, and the next start
                // replays them from the last good checkpoint.
                Err(error) => tracing::error!(
                    %error,
                    "index job failed; the index takes no more checkpoints until ringstore \
                     restarts (nothing is lost: a start replays the segments)"
                ),
            }
        })
        .detach();
    }

    /// Write the memtable as a run, with a checkpoint that is durable.
    async fn flush_index(&self) -> Result<(), ShardError> {
        let checkpoint = self.durable_checkpoint().await?;
        let job = self.index.borrow_mut().start_flush(checkpoint)?;
        // The uploads as of the same instant, written before the manifest
        // commits the checkpoint (see `uploads`).
        let snapshot = self.multipart.borrow().encode_snapshot();
        let dir = self.dir.clone();
        let outcome = glommio::executor()
            .spawn_blocking(move || {
                // Before the manifest: a failure here commits nothing.
                uploads::write_snapshot(&dir, checkpoint.position, &snapshot)
                    .map_err(|error| IndexError::NotCommitted(Box::new(IndexError::Io(error))))?;
                job.execute()
            })
            .await;
        self.index.borrow_mut().finish_flush(outcome)?;
        if let Err(error) = uploads::remove_other_snapshots(&self.dir, checkpoint.position) {
            // Harmless: the next flush or start removes them.
            tracing::warn!(%error, "cannot remove old upload snapshots");
        }
        Ok(())
    }

    async fn merge_index(&self) -> Result<(), ShardError> {
        let job = self
            .index
            .borrow_mut()
            .start_merge(super::index::MergeScope::Tiered)?;
        if let Some(job) = job {
            let outcome = glommio::executor()
                .spawn_blocking(move || job.execute())
                .await;
            self.index.borrow_mut().finish_merge(outcome)?;
        }
        Ok(())
    }

    /// Roughly how many segment bytes a start would replay now: from the
    /// committed checkpoint to the end of the appended records.
    fn replay_bytes(&self) -> u64 {
        let from = self.index.borrow().checkpoint().position;
        let (segment, offset) = self.writer.appended_end();
        // Segments are at most this large; with the default 256 MiB two
        // segments already reach the flush threshold, with 8 MiB ones
        // sixty-four do (the global maximum here made small segments flush
        // the index every two segments).
        let whole_segments = u64::from(segment.saturating_sub(from.segment));
        (whole_segments * self.segment_bytes_max + offset).saturating_sub(from.offset)
    }

    /// Write the index out up to the current records (at shutdown, so the
    /// next start replays nothing). Waits for a running job first.
    pub async fn checkpoint_now(self: &Rc<Self>) -> Result<(), ShardError> {
        while self.index_job_running.get() {
            glommio::timer::sleep(std::time::Duration::from_millis(5)).await;
        }
        if self.replay_bytes() == 0 && self.index.borrow().memtable_len() == 0 {
            return Ok(());
        }
        self.index_job_running.set(true);
        let result = self.flush_index().await;
        self.index_job_running.set(false);
        result
    }

    /// A checkpoint for an index flush: a record boundary on stable storage
    /// before which every commit and tombstone is in the index. The
    /// appended records are synced first (a failed upload may have left
    /// unsynced data extents at the tail), then the boundary is the earliest
    /// record still pending, or the synced end when none is.
    ///
    /// `next_seq` is the number that followed the synced records, raised
    /// only past records already in the memtable (which are durable). It is
    /// not the writer's current next number: records appended while the
    /// sync ran may still be lost in a crash, and a start would continue
    /// numbering after them, leaving a gap that a full scan reports as
    /// damage.
    async fn durable_checkpoint(&self) -> Result<Checkpoint, ShardError> {
        let (segment, offset, synced_next_seq) = self.writer.sync_appended().await?;
        let synced = SegmentPosition { segment, offset };
        let position = match self.pending.borrow().first() {
            Some(&(segment, offset)) => synced.min(SegmentPosition { segment, offset }),
            None => synced,
        };
        let memtable_next = self.index.borrow().memtable_seq_max() + 1;
        Ok(Checkpoint {
            position,
            next_seq: synced_next_seq.max(memtable_next),
        })
    }
}

/// What the whole-engine tests (`crate::power_loss`) look at inside a
/// shard.
#[cfg(test)]
impl Shard {
    pub(crate) fn appended_end(&self) -> (SegmentId, u64) {
        self.writer.appended_end()
    }

    pub(crate) fn next_seq(&self) -> u64 {
        self.writer.next_seq()
    }

    pub(crate) fn index_entry(&self, bucket: &str, key: &str) -> Option<IndexEntry> {
        self.index.borrow().get(bucket, key)
    }

    pub(crate) fn index_job_running(&self) -> bool {
        self.index_job_running.get()
    }
}

/// The index's compact form of an object's `ETag`.
fn index_etag(etag: ETag) -> Etag {
    match etag {
        ETag::Md5(md5) => Etag { md5, part_count: 0 },
        ETag::Multipart { digest, part_count } => Etag {
            md5: digest,
            part_count: u32::from(part_count),
        },
    }
}

/// The index entry value of the object `commit`, whose record is at
/// `location`.
#[must_use]
pub fn object_index_value(location: Location, commit: &ObjectCommit) -> IndexValue {
    let first_segment = match &commit.body {
        ObjectBody::Extents(extents) => extents
            .iter()
            .map(|extent| extent.location.segment)
            .min()
            .unwrap_or(location.segment)
            .min(location.segment),
        ObjectBody::Inline(_) => location.segment,
    };
    IndexValue::Object {
        commit: location,
        first_segment,
        size: commit.size,
        etag: index_etag(commit.etag),
        last_modified_ms: commit.last_modified_ms,
    }
}

/// Apply one replayed record to the index.
fn replay(
    index: &mut Index,
    multipart: &mut uploads::Uploads,
    location: Location,
    kind: Kind,
    seq: u64,
    payload: &[u8],
) -> Result<(), ShardError> {
    let decode_error = |error: super::object::DecodeError| ShardError::Decode {
        location,
        what: error.what,
    };
    match kind {
        Kind::Commit => {
            let commit = ObjectCommit::decode(payload).map_err(decode_error)?;
            index.insert(
                IndexKey::new(&commit.bucket, &commit.key),
                IndexEntry {
                    seq,
                    value: object_index_value(location, &commit),
                },
            );
        }
        Kind::Relocate => {
            let relocation = Relocation::decode(payload).map_err(decode_error)?;
            let (bucket, key) = relocation.version.bucket_and_key();
            let value = match &relocation.version {
                RelocatedVersion::Commit(commit) => object_index_value(location, commit),
                RelocatedVersion::Tombstone(_) => IndexValue::Tombstone,
            };
            index.replay_relocation(
                IndexKey::new(bucket, key),
                IndexEntry {
                    seq: relocation.seq,
                    value,
                },
            );
        }
        Kind::Tombstone => {
            let tombstone = ObjectTombstone::decode(payload).map_err(decode_error)?;
            index.insert(
                IndexKey::new(&tombstone.bucket, &tombstone.key),
                IndexEntry {
                    seq,
                    value: IndexValue::Tombstone,
                },
            );
        }
        Kind::UploadCreate | Kind::UploadPart | Kind::UploadEnd => {
            let at = SegmentPosition {
                segment: location.segment,
                offset: location.offset,
            };
            multipart
                .replay(kind, at, payload)
                .map_err(|what| ShardError::Decode { location, what })?;
        }
        Kind::Data | Kind::Padding => {}
    }
    Ok(())
}

/// Create the shard directory `dir` and its index directory if missing, and
/// make durable the directory entries a start finds before it relies on
/// them: the shard directory's own entry (the start that made it may have
/// failed before its parent's sync) and the segments in it (a roll-over's
/// directory sync may have failed, or the process died before it). Appends
/// must not go where a power cut can take them away.
fn create_dirs_durably(dir: &Path) -> std::io::Result<()> {
    super::fs::create_dir_all(&dir.join("index"))?;
    let parent = dir
        .parent()
        .filter(|parent| !parent.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    super::fs::sync_dir(parent)?;
    super::fs::sync_dir(dir)
}

/// The lengths of the segments that are sealed for sure (every one but the
/// last), for [`Shard::segment_bytes`].
fn sealed_segment_lengths(
    dir: &Path,
    segments: &[SegmentId],
) -> Result<BTreeMap<SegmentId, u64>, ShardError> {
    let mut lengths = BTreeMap::new();
    for &id in segments.iter().rev().skip(1) {
        let path = dir.join(segment::segment_file_name(id));
        let bytes = std::fs::metadata(&path).map_err(ShardError::Io)?.len();
        lengths.insert(id, bytes);
    }
    Ok(lengths)
}

/// Replay `segments` (those from the checkpoint's on, in order) into the
/// index and the uploads. Returns the sequence number to continue with and
/// how the last segment ends (`None`: there is no segment).
async fn replay_segments(
    segment_dir: &DmaSegmentDir,
    segments: &[SegmentId],
    checkpoint: Checkpoint,
    index: &mut Index,
    multipart: &mut uploads::Uploads,
) -> Result<(u64, Option<(SegmentId, ScanEnd)>), ShardError> {
    let mut next_seq = checkpoint.next_seq;
    let mut end = None;
    // The first record of each segment after the first must follow the
    // last record (the seal) of the one before.
    let mut expected_seq: Option<u64> = None;
    for &id in segments {
        let file = segment_dir.open(id).await.map_err(StorageError::Io)?;
        let from = if id == checkpoint.position.segment {
            checkpoint.position.offset
        } else {
            0
        };
        let role = if Some(&id) == segments.last() {
            SegmentRole::Last
        } else {
            SegmentRole::Sealed
        };
        if role == SegmentRole::Sealed
            && from > 0
            && from == file.file_len().await.map_err(StorageError::Io)?
        {
            // A checkpoint taken while the writer rolled over: just past
            // the seal, before the next segment's first record. Nothing of
            // this segment is left to replay (`ringstore check` verifies
            // its seal).
            end = Some((
                id,
                ScanEnd::Sealed {
                    offset: from,
                    last_seq: None,
                },
            ));
            continue;
        }
        let mut replay_error = None;
        let mut first = true;
        let scan_end = segment::scan(&file, id, from, role, |record| {
            if std::mem::take(&mut first)
                && let Some(expected) = expected_seq
                && record.seq != expected
            {
                return Err(StorageError::Corrupted {
                    segment: id,
                    offset: record.location.offset,
                    what: format!(
                        "the segment's first record has sequence number {} where {expected} \
                         follows the segment before it: records are missing",
                        record.seq
                    ),
                });
            }
            if let Err(error) = replay(
                index,
                multipart,
                record.location,
                record.kind,
                record.seq,
                record.payload,
            ) {
                replay_error = Some(error);
                return Err(StorageError::Corrupted {
                    segment: record.location.segment,
                    offset: record.location.offset,
                    what: "record does not decode".to_owned(),
                });
            }
            Ok(())
        })
        .await;
        if let Some(error) = replay_error {
            return Err(error);
        }
        let scan_end = scan_end?;
        if role == SegmentRole::Last && matches!(scan_end, ScanEnd::Sealed { .. }) {
            // Its writer may have stopped before the seal was durable (its
            // fdatasync failed, or the process died): sync it before the
            // next segment exists, as a roll-over does, or a power cut can
            // leave a torn segment that is no longer the last one, which
            // every start refuses as damage.
            file.fdatasync().await.map_err(StorageError::Io)?;
        }
        if let Some(seq) = scan_end.last_seq() {
            next_seq = next_seq.max(seq + 1);
        }
        expected_seq = scan_end.last_seq().map(|seq| seq + 1);
        if let ScanEnd::TornTail { offset, .. } = scan_end {
            tracing::warn!(segment = id, offset, "cutting off a torn tail");
        }
        end = Some((id, scan_end));
    }
    Ok((next_seq, end))
}

/// The segments a start replays (those from the checkpoint's on) must all
/// be there: the checkpoint's own segment first (unless nothing was ever
/// written), then one after the other without a gap. A missing one is
/// damage, reported, never a silent loss of what it held.
fn check_segments_follow(
    segments: &[SegmentId],
    checkpoint: SegmentPosition,
) -> Result<(), ShardError> {
    let missing = |segment: SegmentId, why: &str| {
        ShardError::Storage(StorageError::Corrupted {
            segment,
            offset: 0,
            what: format!("the segment is missing: {why}"),
        })
    };
    match segments.first() {
        None if checkpoint == SegmentPosition::START => return Ok(()),
        None => {
            return Err(missing(
                checkpoint.segment,
                "the index checkpoint is in it, and no segment from it on exists",
            ));
        }
        Some(&first) if first != checkpoint.segment => {
            return Err(missing(checkpoint.segment, "the index checkpoint is in it"));
        }
        Some(_) => {}
    }
    for pair in segments.windows(2) {
        if pair[1] != pair[0] + 1 {
            return Err(missing(
                pair[0] + 1,
                &format!(
                    "{} and {} exist around it",
                    segment::segment_file_name(pair[0]),
                    segment::segment_file_name(pair[1])
                ),
            ));
        }
    }
    Ok(())
}

/// The segment numbers present in `dir`, ascending.
pub fn list_segments(dir: &Path) -> std::io::Result<Vec<SegmentId>> {
    let mut ids = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let name = entry?.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(number) = name.strip_prefix("seg-")
            && number.len() == 8
            && let Ok(id) = number.parse::<SegmentId>()
        {
            ids.push(id);
        }
    }
    ids.sort_unstable();
    Ok(ids)
}
