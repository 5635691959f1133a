//! Compaction: returning the space of deleted and overwritten objects, and
//! of the extents of uploads that never committed, to the file system.
//!
//! # What is live
//!
//! A record is live when the index still needs it:
//!
//! - a `Commit` (or a `Relocate` of a commit) whose version is the index's
//!   newest version of its key, at that very location;
//! - a `Data` record that such a commit names in its extents (the commit may
//!   be in a later segment: extents are written before their commit);
//! - a `Tombstone` (or a `Relocate` of one) that may still shadow an older
//!   version of its key somewhere in the segments (see below).
//!
//! Everything else (superseded versions, extents of failed uploads) is
//! garbage.
//!
//! # Live bytes per segment
//!
//! A pass first walks the index (a slice at a time, yielding between
//! slices) and attributes every live object to segments: its commit record
//! to the commit's segment, its data bytes spread evenly over
//! `first_segment..=commit.segment` (exact for objects within one segment,
//! an estimate for the few that span several). A sealed segment whose live
//! bytes are at most [`COMPACTION_LIVE_PERCENT_MAX`] percent of its file is
//! *sparse*, and is emptied, sparsest first. The walk costs about one pass
//! over the index per pass; a pass runs only when enough has changed since
//! the last one ([`State::due`]).
//!
//! # Emptying a segment
//!
//! Only segments before the index checkpoint are emptied (a pass moves the
//! checkpoint first if it must): a start never replays them, so deleting
//! one cannot take a record away from recovery. Then:
//!
//! 1. **The versions in the segment.** Its records are scanned a slice at a
//!    time. Every live commit is copied forward as a `Relocate` record,
//!    together with its extents that are in this segment (each copied once,
//!    even when several commits name it); live tombstones likewise.
//! 2. **Objects committed later with data here.** The index walk finds the
//!    live objects whose `first_segment..commit.segment` range covers the
//!    segment; their commits are read, and those with extents here are
//!    relocated the same way.
//! 3. **Apply.** Relocations are made durable (one group-commit sync per
//!    batch), then applied to the index only if the index still has the
//!    same version ([`Index::relocate`]): a newer version written while the
//!    copy ran wins, and the copy becomes garbage itself.
//! 4. **Delete.** Once every live record has moved, compaction waits for
//!    the GETs that pinned the segment ([`super::ReadPin`]), closes it and
//!    deletes the file.
//!
//! A relocated version keeps its `seq` (its identity): the index entry
//! changes place, not version, so "the higher `seq` wins" keeps deciding
//! between versions, and a tie goes to the relocation, which is written
//! later.
//!
//! # The ordering rule, and tombstones
//!
//! The segments stay the source of truth: replaying all of them (in order,
//! commits and tombstones by "higher `seq` wins", relocations by "at least
//! as high") gives the index. Two rules keep that true:
//!
//! - **A relocation is appended only while its version is the newest one**:
//!   the check that the index still holds the version and that no newer
//!   commit or tombstone of the key is on its way (`pending_keys`) is made
//!   at the instant the record takes its place in the segment
//!   ([`SegmentWriter::append_if`]). So every record of an older version of
//!   a key lies before the first record of any newer version.
//! - **A tombstone is kept while a segment at or before the one it was first
//!   written to exists** (besides the one being emptied): by the first
//!   rule, that is where any older version of its key can still be. A
//!   tombstone the index no longer knows (a full index merge forgets them)
//!   is kept by the same rule, since "unknown" cannot prove "superseded".
//!   Tombstones are small; the cost of the rule is that they outlive the
//!   data they deleted until the oldest segments are emptied.
//!
//! # Crash points
//!
//! - **While copying**: the copies (`Data` and `Relocate` records after the
//!   checkpoint) are replayed at start; a relocation whose version is still
//!   the newest re-points the index, one that lost to a newer version is
//!   ignored. The old segment is still there, so nothing points nowhere.
//! - **After applying, before the delete**: the segment is still there,
//!   every live record in it now has a copy; the next pass finds nothing
//!   live in it and deletes it.
//! - **After the delete**: index runs written before the relocations may
//!   still point into the deleted segment, but every such entry is
//!   shadowed: by a memtable entry that a start rebuilds by replaying the
//!   relocation records (they are after the checkpoint until a flush
//!   includes them), or by the newer run that flush wrote.
//!
//! # Uploads in progress
//!
//! The extents of an upload that has not committed yet look like garbage,
//! but are not. A PUT holds an [`super::UploadGuard`] from before its
//! first extent until after its commit, naming the segment that was active
//! when it began; a segment at or after the oldest such one is not emptied,
//! and a pass re-checks that just before it deletes. A commit that names
//! an extent of a segment being emptied marks it (`referenced_late`): the
//! emptying may have walked past that key, so the segment stays for the
//! next pass.
//!
//! # Not done here
//!
//! Multipart uploads (parts live across requests and restarts) and
//! same-shard copies will name older extents; they must hold an upload
//! guard, or a pin of their own, for the segments they reference.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ops::ControlFlow;
use std::rc::Rc;
use std::time::Duration;

use super::{Shard, ShardError, list_segments, object_index_value};
use crate::crash_point::crash_point;
use crate::storage::fs;
use crate::storage::index::{IndexEntry, IndexKey, IndexValue};
use crate::storage::location::{Location, SegmentId};
use crate::storage::object::{
    EXTENT_BYTES_MAX, Extent, INLINE_BYTES_MAX, ObjectBody, ObjectCommit, ObjectTombstone,
    RelocatedVersion, Relocation,
};
use crate::storage::record::{self, Kind};
use crate::storage::segment::{self, SegmentRole, Space, StorageError, segment_file_name};

/// A sealed segment is emptied once its live bytes are at most this
/// percentage of its file. 50: in the worst case (every segment just above
/// it) the disk holds twice the live data, and emptying a segment copies
/// at most as many bytes as it frees.
pub const COMPACTION_LIVE_PERCENT_MAX: u64 = 50;

/// Index entries walked between yields to the other tasks of the core.
const INDEX_SLICE_ENTRIES: usize = 4096;

/// Versions (commits and tombstones) read from a segment per slice, and the
/// payload bytes they may hold (inline objects are up to 64 KiB each).
const SCAN_SLICE_VERSIONS: usize = 1024;
const SCAN_SLICE_BYTES: usize = 8 * 1024 * 1024;

/// Relocated bytes appended before they are synced and applied to the
/// index: large enough that a copy costs few fdatasyncs, small enough that
/// the index learns of moves often.
const APPLY_BATCH_BYTES: u64 = 32 * 1024 * 1024;

/// A pass runs when a segment was sealed since the last one, or when this
/// fraction (1/8) of a segment's worth of objects was overwritten or
/// deleted.
const SUPERSEDED_SEGMENT_FRACTION: u64 = 8;

/// What compaction did since the shard started, for `/metrics`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CompactionStats {
    pub passes: u64,
    pub segments_removed: u64,
    /// File bytes of the segments removed.
    pub bytes_removed: u64,
    /// Bytes appended to move live records forward.
    pub bytes_copied: u64,
    pub versions_moved: u64,
    /// Passes or segments that failed (damage, I/O): logged, retried later.
    pub failures: u64,
}

/// The compaction state of one shard.
pub(super) struct State {
    segment_bytes_max: u64,
    /// Segments being emptied.
    pub(super) retiring: RefCell<BTreeSet<SegmentId>>,
    /// Segments being emptied that a commit made meanwhile names: they
    /// stay, for the next pass.
    referenced_late: RefCell<BTreeSet<SegmentId>>,
    /// Bytes of objects overwritten or deleted since the last pass.
    superseded_bytes: Cell<u64>,
    /// The active segment when the last pass started (`None` before the
    /// first).
    last_pass_segment: Cell<Option<SegmentId>>,
    /// The last pass left a sparse segment behind (busy, or not yet before
    /// the checkpoint): try again at the next tick.
    retry: Cell<bool>,
    running: Cell<bool>,
    /// Segments whose emptying failed on damage: not tried again until the
    /// shard restarts (the damage is logged; `ringstore check` reports it).
    damaged: RefCell<BTreeSet<SegmentId>>,
    stats: Cell<CompactionStats>,
}

impl State {
    pub(super) fn new(segment_bytes_max: u64) -> State {
        State {
            segment_bytes_max,
            retiring: RefCell::new(BTreeSet::new()),
            referenced_late: RefCell::new(BTreeSet::new()),
            superseded_bytes: Cell::new(0),
            last_pass_segment: Cell::new(None),
            retry: Cell::new(false),
            running: Cell::new(false),
            damaged: RefCell::new(BTreeSet::new()),
            stats: Cell::new(CompactionStats::default()),
        }
    }

    /// An object version stopped being the newest one.
    pub(super) fn superseded(&self, previous: Option<&IndexEntry>) {
        if let Some(IndexEntry {
            value: IndexValue::Object { commit, size, .. },
            ..
        }) = previous
        {
            let bytes = size + u64::from(commit.len);
            self.superseded_bytes
                .set(self.superseded_bytes.get().saturating_add(bytes));
        }
    }

    /// A commit names `extents`: note those in segments being emptied.
    pub(super) fn referenced(&self, extents: &[Extent]) {
        let retiring = self.retiring.borrow();
        for extent in extents {
            if retiring.contains(&extent.location.segment) {
                self.referenced_late
                    .borrow_mut()
                    .insert(extent.location.segment);
            }
        }
    }

    fn due(&self, active: SegmentId) -> bool {
        self.retry.get()
            || self.last_pass_segment.get() != Some(active)
            || self.superseded_bytes.get() >= self.segment_bytes_max / SUPERSEDED_SEGMENT_FRACTION
    }

    fn update(&self, change: impl FnOnce(&mut CompactionStats)) {
        let mut stats = self.stats.get();
        change(&mut stats);
        self.stats.set(stats);
    }
}

/// One segment being emptied.
struct Mover {
    segment: SegmentId,
    /// The segments that exist besides it (for the tombstone rule).
    others: Vec<SegmentId>,
    /// Extents already copied: old location to new extent.
    moved: HashMap<Location, Extent>,
    /// Relocations appended and not yet applied to the index.
    batch: Vec<(IndexKey, IndexEntry, Location)>,
    batch_bytes: u64,
    /// Every live record has been copied.
    complete: bool,
    /// The writer's epoch when the emptying began: copies and relocations
    /// appended in it are dropped if a write finds the disk full, and the
    /// emptying then fails (the next pass starts over).
    epoch: u64,
}

/// A commit or tombstone version found in the segment being emptied.
struct FoundVersion {
    location: Location,
    seq: u64,
    origin_segment: SegmentId,
    version: RelocatedVersion,
}

impl Shard {
    /// Run compaction passes every `interval` while the shard lives, each
    /// only when enough changed since the last one. Errors are logged; the
    /// next tick tries again.
    pub fn start_compaction(self: &Rc<Self>, interval: Duration) {
        let shard = Rc::downgrade(self);
        glommio::spawn_local(async move {
            loop {
                glommio::timer::sleep(interval).await;
                let Some(shard) = shard.upgrade() else {
                    return;
                };
                let (active, _) = shard.writer.appended_end();
                if !shard.compaction.due(active) {
                    continue;
                }
                if let Err(error) = shard.compact().await {
                    shard.compaction.update(|stats| stats.failures += 1);
                    // Try again at the next tick: a pass that failed on a
                    // full disk is what frees space once deletes made room.
                    shard.compaction.retry.set(true);
                    tracing::error!(%error, "compaction pass failed; retrying at the next tick");
                }
            }
        })
        .detach();
    }

    /// What compaction did since the shard started.
    #[must_use]
    pub fn compaction_stats(&self) -> CompactionStats {
        self.compaction.stats.get()
    }

    /// Bytes of the shard's segment files now: the sealed ones' lengths
    /// (each read once, when it is first seen sealed) plus the active
    /// one's records. No directory listing per call: `/metrics` asks every
    /// core for it at every scrape.
    #[must_use]
    pub fn segment_bytes(&self) -> u64 {
        let (active, appended) = self.writer.appended_end();
        let mut sealed = self.sealed_segment_bytes.borrow_mut();
        let first_unknown = sealed.keys().next_back().map_or(1, |last| last + 1);
        for segment in first_unknown..active {
            if let Ok(metadata) = std::fs::metadata(self.dir.join(segment_file_name(segment))) {
                sealed.insert(segment, metadata.len());
            }
        }
        sealed.range(..active).map(|(_, bytes)| bytes).sum::<u64>() + appended
    }

    /// The length of sealed `segment`, from the cache (a `stat` if it is
    /// not there yet).
    fn sealed_bytes(&self, segment: SegmentId) -> Result<u64, ShardError> {
        if let Some(&bytes) = self.sealed_segment_bytes.borrow().get(&segment) {
            return Ok(bytes);
        }
        let bytes = std::fs::metadata(self.dir.join(segment_file_name(segment)))
            .map_err(ShardError::Io)?
            .len();
        self.sealed_segment_bytes
            .borrow_mut()
            .insert(segment, bytes);
        Ok(bytes)
    }

    /// One compaction pass: empty every sparse sealed segment. Returns the
    /// number of segments deleted. A pass already running makes this a
    /// no-op.
    pub async fn compact(self: &Rc<Self>) -> Result<usize, ShardError> {
        if self.compaction.running.replace(true) {
            return Ok(0);
        }
        let result = self.compaction_pass().await;
        self.compaction.running.set(false);
        result
    }

    async fn compaction_pass(self: &Rc<Self>) -> Result<usize, ShardError> {
        let (active, _) = self.writer.appended_end();
        let state = &self.compaction;
        state.superseded_bytes.set(0);
        state.last_pass_segment.set(Some(active));
        state.retry.set(false);
        state.update(|stats| stats.passes += 1);

        let live = self.live_bytes_by_segment().await;
        let mut sparse = Vec::new();
        for segment in list_segments(&self.dir).map_err(ShardError::Io)? {
            if segment >= active || state.damaged.borrow().contains(&segment) {
                continue;
            }
            if self.multipart_holds(segment) {
                // Left until the upload ends; no retry until then.
                continue;
            }
            if self.upload_may_use(segment) {
                state.retry.set(true);
                continue;
            }
            let file_bytes = self.sealed_bytes(segment)?;
            let live_bytes = live.get(&segment).copied().unwrap_or(0);
            if live_bytes.saturating_mul(100)
                <= file_bytes.saturating_mul(COMPACTION_LIVE_PERCENT_MAX)
            {
                sparse.push((live_bytes, segment, file_bytes));
            }
        }
        if sparse.is_empty() {
            return Ok(0);
        }
        sparse.sort_unstable();
        let checkpoint_segment = || self.index.borrow().checkpoint().position.segment;
        if sparse
            .iter()
            .any(|&(_, segment, _)| segment >= checkpoint_segment())
        {
            // Move the checkpoint past them: only segments a start never
            // replays may be deleted.
            self.checkpoint_now().await?;
        }
        let mut removed = 0;
        for (_, segment, file_bytes) in sparse {
            if segment >= checkpoint_segment() {
                state.retry.set(true);
                continue;
            }
            state.retiring.borrow_mut().insert(segment);
            let outcome = self.empty_segment(segment).await;
            state.retiring.borrow_mut().remove(&segment);
            match outcome {
                Ok(true) => {
                    removed += 1;
                    state.update(|stats| {
                        stats.segments_removed += 1;
                        stats.bytes_removed += file_bytes;
                    });
                }
                Ok(false) => state.retry.set(true),
                Err(ShardError::Storage(StorageError::Corrupted {
                    segment: at,
                    offset,
                    what,
                })) => {
                    // Damage is never compacted away: the segment stays for
                    // `ringstore check` and an operator to look at.
                    tracing::error!(
                        segment = %segment_file_name(at),
                        offset,
                        %what,
                        "compaction found damage; leaving the segment in place"
                    );
                    state.damaged.borrow_mut().insert(segment);
                    state.update(|stats| stats.failures += 1);
                }
                Err(error) => return Err(error),
            }
        }
        Ok(removed)
    }

    /// Live bytes per segment, as the module doc explains. Walks the index a
    /// slice at a time, yielding in between.
    async fn live_bytes_by_segment(&self) -> BTreeMap<SegmentId, u64> {
        let mut live = BTreeMap::new();
        let mut after: Option<Box<[u8]>> = None;
        loop {
            let finished = {
                let index = self.index.borrow();
                let mut count = 0;
                let mut last = None;
                for (key, entry) in index
                    .objects_after(after.as_deref())
                    .take(INDEX_SLICE_ENTRIES)
                {
                    attribute(&entry, &mut live);
                    last = Some(key);
                    count += 1;
                }
                after = last.map(Box::from);
                count < INDEX_SLICE_ENTRIES
            };
            if finished {
                return live;
            }
            glommio::yield_if_needed().await;
        }
    }

    /// Move every live record out of `segment` and delete it. `Ok(false)`
    /// when something live could not be moved yet (a newer version of its
    /// key was on its way): the segment stays, for the next pass.
    async fn empty_segment(self: &Rc<Self>, segment: SegmentId) -> Result<bool, ShardError> {
        let others = list_segments(&self.dir)
            .map_err(ShardError::Io)?
            .into_iter()
            .filter(|&other| other != segment)
            .collect();
        let mut mover = Mover {
            segment,
            others,
            moved: HashMap::new(),
            batch: Vec::new(),
            batch_bytes: 0,
            complete: true,
            epoch: self.writer.epoch(),
        };

        self.move_versions_in(&mut mover).await?;
        self.move_extents_in(&mut mover).await?;

        // 3. Make the moves durable and known.
        self.apply_relocations(&mut mover).await?;
        let referenced = self
            .compaction
            .referenced_late
            .borrow_mut()
            .remove(&segment);
        if !mover.complete
            || referenced
            || self.upload_may_use(segment)
            || self.multipart_holds(segment)
        {
            return Ok(false);
        }

        // 4. Wait for readers, then delete.
        crash_point("compaction-before-delete");
        while self.pinned(segment) {
            glommio::timer::sleep(Duration::from_millis(10)).await;
        }
        // A reader that pinned the segment may have committed something
        // that names it while we waited (a copy within this core names its
        // source's extents): check again, with no await before the delete.
        let referenced = self
            .compaction
            .referenced_late
            .borrow_mut()
            .remove(&segment);
        if referenced || self.upload_may_use(segment) || self.multipart_holds(segment) {
            return Ok(false);
        }
        self.reader.forget(segment);
        fs::remove_file(&self.dir.join(segment_file_name(segment))).map_err(ShardError::Io)?;
        self.sealed_segment_bytes.borrow_mut().remove(&segment);
        crash_point("compaction-after-delete");
        fs::sync_dir_async(&self.dir)
            .await
            .map_err(ShardError::Io)?;
        tracing::info!(segment = %segment_file_name(segment), "compaction removed a segment");
        Ok(true)
    }

    /// Step 1: the versions written to the segment, a slice at a time.
    async fn move_versions_in(&self, mover: &mut Mover) -> Result<(), ShardError> {
        let segment = mover.segment;
        let file = self.reader.file(segment).await?;
        let mut offset = 0;
        loop {
            let mut found = Vec::new();
            let mut found_bytes = 0;
            let mut decode_error = None;
            let scanned =
                segment::scan_until(&*file, segment, offset, SegmentRole::Sealed, |record| {
                    match found_version(record.location, record.kind, record.seq, record.payload) {
                        Ok(Some(version)) => {
                            found_bytes += record.payload.len();
                            found.push(version);
                        }
                        Ok(None) => {}
                        Err(what) => {
                            decode_error = Some(ShardError::Decode {
                                location: record.location,
                                what,
                            });
                            return Ok(ControlFlow::Break(()));
                        }
                    }
                    if found.len() >= SCAN_SLICE_VERSIONS || found_bytes >= SCAN_SLICE_BYTES {
                        Ok(ControlFlow::Break(()))
                    } else {
                        Ok(ControlFlow::Continue(()))
                    }
                })
                .await?;
            if let Some(error) = decode_error {
                return Err(error);
            }
            for version in found {
                self.move_version(mover, version).await?;
            }
            match scanned {
                segment::Scanned::Stopped { next_offset } => offset = next_offset,
                segment::Scanned::End(_) => return Ok(()),
            }
        }
    }

    /// Step 2: objects committed in later segments with extents in the
    /// segment, found by walking the index a slice at a time.
    async fn move_extents_in(&self, mover: &mut Mover) -> Result<(), ShardError> {
        let segment = mover.segment;
        let mut after: Option<Box<[u8]>> = None;
        loop {
            let (candidates, finished) = {
                let index = self.index.borrow();
                let mut candidates = Vec::new();
                let mut count = 0;
                let mut last = None;
                for (key, entry) in index
                    .objects_after(after.as_deref())
                    .take(INDEX_SLICE_ENTRIES)
                {
                    count += 1;
                    last = Some(key);
                    if let IndexValue::Object {
                        commit,
                        first_segment,
                        ..
                    } = entry.value
                        && commit.segment > segment
                        && first_segment <= segment
                    {
                        candidates.push((IndexKey::from_encoded(key), entry));
                    }
                }
                after = last.map(Box::from);
                (candidates, count < INDEX_SLICE_ENTRIES)
            };
            for (key, entry) in candidates {
                self.move_extents_of(mover, key, entry).await?;
            }
            if finished {
                return Ok(());
            }
            glommio::yield_if_needed().await;
        }
    }

    /// Copy one version found in the segment forward, if it is still
    /// needed.
    async fn move_version(&self, mover: &mut Mover, found: FoundVersion) -> Result<(), ShardError> {
        let (bucket, key) = found.version.bucket_and_key();
        let current = self.index.borrow().get(bucket, key);
        let key = IndexKey::new(bucket, key);
        match found.version {
            RelocatedVersion::Commit(mut commit) => {
                let live = matches!(current, Some(IndexEntry {
                    seq,
                    value: IndexValue::Object { commit: at, .. },
                }) if seq == found.seq && at == found.location);
                if !live {
                    return Ok(());
                }
                self.move_body(mover, &mut commit).await?;
                self.append_relocation(
                    mover,
                    key,
                    current,
                    found.seq,
                    found.origin_segment,
                    RelocatedVersion::Commit(commit),
                )
                .await
            }
            RelocatedVersion::Tombstone(tombstone) => {
                // Superseded by a newer version the index knows: not needed.
                if current.is_some_and(|current| current.seq > found.seq) {
                    return Ok(());
                }
                // No segment that could hold an older version is left.
                if mover
                    .others
                    .iter()
                    .all(|&other| other > found.origin_segment)
                {
                    return Ok(());
                }
                self.append_relocation(
                    mover,
                    key,
                    current,
                    found.seq,
                    found.origin_segment,
                    RelocatedVersion::Tombstone(tombstone),
                )
                .await
            }
        }
    }

    /// Relocate the live object `key` (`entry`, committed after the segment
    /// being emptied) if some of its extents are in that segment.
    async fn move_extents_of(
        &self,
        mover: &mut Mover,
        key: IndexKey,
        entry: IndexEntry,
    ) -> Result<(), ShardError> {
        let IndexValue::Object { commit: at, .. } = entry.value else {
            return Ok(());
        };
        let (mut commit, origin_segment) = self.read_commit_record(at).await?;
        let touches = matches!(&commit.body, ObjectBody::Extents(extents)
            if extents.iter().any(|extent| extent.location.segment == mover.segment));
        if !touches || self.index.borrow().get(key.bucket(), key.key()) != Some(entry) {
            return Ok(());
        }
        self.move_body(mover, &mut commit).await?;
        self.append_relocation(
            mover,
            key,
            Some(entry),
            entry.seq,
            origin_segment,
            RelocatedVersion::Commit(commit),
        )
        .await
    }

    /// Copy the extents of `commit` that are in the segment being emptied,
    /// and point the commit at the copies.
    async fn move_body(
        &self,
        mover: &mut Mover,
        commit: &mut ObjectCommit,
    ) -> Result<(), ShardError> {
        let ObjectBody::Extents(extents) = &mut commit.body else {
            return Ok(());
        };
        for extent in extents.iter_mut() {
            if extent.location.segment != mover.segment {
                continue;
            }
            if let Some(copy) = mover.moved.get(&extent.location) {
                *extent = *copy;
                continue;
            }
            let data = self.reader.read(extent.location, Kind::Data).await?;
            if data.len() != extent.data_len as usize {
                return Err(ShardError::Storage(StorageError::Corrupted {
                    segment: extent.location.segment,
                    offset: extent.location.offset,
                    what: format!(
                        "data record holds {} bytes, its commit says {}",
                        data.len(),
                        extent.data_len
                    ),
                }));
            }
            let copy = self.append_data(&data, Space::Reserve).await?;
            self.compaction.update(|stats| {
                stats.bytes_copied += u64::from(copy.location.len);
            });
            mover.moved.insert(extent.location, copy);
            mover.batch_bytes += u64::from(copy.location.len);
            *extent = copy;
        }
        Ok(())
    }

    /// Append the relocation of a version whose newest state in the index is
    /// `expected`, if that is still so and no newer version of the key is on
    /// its way at the moment the record takes its place (the ordering rule
    /// of the module doc).
    async fn append_relocation(
        &self,
        mover: &mut Mover,
        key: IndexKey,
        expected: Option<IndexEntry>,
        seq: u64,
        origin_segment: SegmentId,
        version: RelocatedVersion,
    ) -> Result<(), ShardError> {
        let is_tombstone = matches!(version, RelocatedVersion::Tombstone(_));
        let relocation = Relocation {
            seq,
            origin_segment,
            version,
        };
        let payload = relocation.encode();
        let unchanged = || {
            self.index.borrow().get(key.bucket(), key.key()) == expected
                && !self.pending_keys.borrow().contains_key(&key)
        };
        let epoch = mover.epoch;
        let appended = self
            .writer
            .append_if(Kind::Relocate, &payload, Space::Reserve, || {
                self.writer.epoch() == epoch && unchanged()
            })
            .await?;
        if self.writer.epoch() != epoch {
            // The copies this emptying made may be gone.
            return Err(ShardError::Storage(StorageError::NoSpace(
                "the disk filled up during compaction; its copies were dropped".to_owned(),
            )));
        }
        let Some(location) = appended else {
            // A newer version replaced a commit: it is garbage now. But a
            // newer version on its way may still fail, and a tombstone the
            // index just forgot is still needed: try again next pass.
            if is_tombstone || self.pending_keys.borrow().contains_key(&key) {
                mover.complete = false;
            }
            return Ok(());
        };
        self.pending
            .borrow_mut()
            .insert((location.segment, location.offset));
        let value = match &relocation.version {
            RelocatedVersion::Commit(commit) => object_index_value(location, commit),
            RelocatedVersion::Tombstone(_) => IndexValue::Tombstone,
        };
        self.compaction.update(|stats| {
            stats.bytes_copied += u64::from(location.len);
            stats.versions_moved += 1;
        });
        mover.batch.push((key, IndexEntry { seq, value }, location));
        mover.batch_bytes += u64::from(location.len);
        if mover.batch_bytes >= APPLY_BATCH_BYTES {
            self.apply_relocations(mover).await?;
        }
        Ok(())
    }

    /// Make the appended relocations durable, then apply them to the index
    /// (each only if its version is still the newest).
    async fn apply_relocations(&self, mover: &mut Mover) -> Result<(), ShardError> {
        mover.batch_bytes = 0;
        let Some(&(_, _, last)) = mover.batch.last() else {
            return Ok(());
        };
        crash_point("compaction-before-sync");
        let synced = self.writer.sync(last, mover.epoch).await;
        for (key, entry, location) in mover.batch.drain(..) {
            if synced.is_ok() {
                self.index.borrow_mut().relocate(key, entry);
            }
            self.pending
                .borrow_mut()
                .remove(&(location.segment, location.offset));
        }
        synced?;
        Ok(())
    }
}

/// The version a scanned record holds, if it is a commit or a tombstone
/// (original or relocated).
fn found_version(
    location: Location,
    kind: Kind,
    seq: u64,
    payload: &[u8],
) -> Result<Option<FoundVersion>, &'static str> {
    let found = |seq, origin_segment, version| {
        Some(FoundVersion {
            location,
            seq,
            origin_segment,
            version,
        })
    };
    Ok(match kind {
        Kind::Commit => found(
            seq,
            location.segment,
            RelocatedVersion::Commit(ObjectCommit::decode(payload).map_err(|error| error.what)?),
        ),
        Kind::Tombstone => found(
            seq,
            location.segment,
            RelocatedVersion::Tombstone(
                ObjectTombstone::decode(payload).map_err(|error| error.what)?,
            ),
        ),
        Kind::Relocate => {
            let relocation = Relocation::decode(payload).map_err(|error| error.what)?;
            found(
                relocation.seq,
                relocation.origin_segment,
                relocation.version,
            )
        }
        // Multipart records are not versions: the segments that hold
        // those of uploads in progress are not emptied (see `Shard::uploads`).
        Kind::Data | Kind::Padding | Kind::UploadCreate | Kind::UploadPart | Kind::UploadEnd => {
            None
        }
    })
}

/// Add a live object's bytes to the segments it is in (see the module doc).
fn attribute(entry: &IndexEntry, live: &mut BTreeMap<SegmentId, u64>) {
    let IndexValue::Object {
        commit,
        first_segment,
        size,
        ..
    } = entry.value
    else {
        return;
    };
    *live.entry(commit.segment).or_default() += u64::from(commit.len);
    if size > INLINE_BYTES_MAX as u64 {
        let extents = size.div_ceil(u64::from(EXTENT_BYTES_MAX));
        let frames = u64::from(record::HEADER_BYTES + record::RECORD_ALIGNMENT_BYTES);
        let data = size + extents * frames;
        let first = first_segment.clamp(1, commit.segment);
        let span = u64::from(commit.segment - first) + 1;
        for segment in first..=commit.segment {
            *live.entry(segment).or_default() += data / span;
        }
    }
}

#[cfg(test)]
#[allow(
    clippy::cast_possible_truncation,
    reason = "test data and lengths are small by construction"
)]
mod tests {
    use std::collections::BTreeMap;
    use std::rc::Rc;

    use super::super::testing::{bytes_of, put, read};
    use super::super::{Shard, list_segments};
    use crate::storage::object::ObjectTombstone;
    use crate::storage::segment::{self, Space, WriterOptions};
    use crate::test_support::{Rng, run};

    /// Small segments, so that a few hundred KiB of objects make many.
    const OPTIONS: WriterOptions = WriterOptions {
        segment_bytes_max: 64 * 1024,
        write_buffer_bytes: 16 * 1024,
        reserved_bytes: 0,
    };

    fn segment_bytes(dir: &std::path::Path) -> u64 {
        list_segments(dir)
            .unwrap()
            .iter()
            .map(|&id| {
                std::fs::metadata(dir.join(segment::segment_file_name(id)))
                    .unwrap()
                    .len()
            })
            .sum()
    }

    async fn check_all(shard: &Rc<Shard>, model: &BTreeMap<String, Vec<u8>>, keys: u64) {
        for index in 0..keys {
            let key = format!("key-{index}");
            assert_eq!(
                read(shard, &key).await.as_deref(),
                model.get(&key).map(Vec::as_slice),
                "{key}"
            );
        }
    }

    #[test]
    fn compaction_returns_space_and_keeps_every_live_version() {
        // Goal: after overwrites, deletes and failed uploads, compaction
        // deletes sparse segments, every live object still reads back byte
        // for byte (also after a restart, which replays the relocations),
        // deleted objects stay deleted, and disk use falls towards the live
        // data. Method: a seeded random workload against a model, with
        // compaction passes in between and at the end.
        const KEYS: u64 = 40;
        let temp = tempfile::tempdir().unwrap();
        let dir = temp.path().to_owned();
        run(move || async move {
            let shard = Rc::new(Shard::open_with(&dir, OPTIONS).await.unwrap());
            let mut rng = Rng(0xc0ff_ee00_1234_5678);
            let mut model: BTreeMap<String, Vec<u8>> = BTreeMap::new();
            let mut removed = 0;
            for round in 0..6 {
                for step in 0..150_u64 {
                    let key = format!("key-{}", rng.below(KEYS));
                    match rng.below(10) {
                        0..=5 => {
                            let len = if rng.below(2) == 0 {
                                rng.below(2048) as usize
                            } else {
                                2049 + rng.below(20_000) as usize
                            };
                            let data = bytes_of(round * 1000 + step, len);
                            put(&shard, &key, &data).await;
                            model.insert(key, data);
                        }
                        6..=8 => {
                            let tombstone = ObjectTombstone {
                                bucket: "bucket".to_owned(),
                                key: key.clone(),
                                deleted_ms: 2,
                            };
                            let existed = shard.delete(&tombstone).await.unwrap();
                            assert_eq!(existed, model.remove(&key).is_some());
                        }
                        _ => {
                            // An upload that never commits.
                            shard
                                .append_data(&bytes_of(step, 5000), Space::Data)
                                .await
                                .unwrap();
                        }
                    }
                }
                removed += shard.compact().await.unwrap();
                check_all(&shard, &model, KEYS).await;
            }
            // Everything superseded: overwrite every key with a small object.
            for index in 0..KEYS {
                let key = format!("key-{index}");
                let data = bytes_of(index, 100);
                put(&shard, &key, &data).await;
                model.insert(key, data);
            }
            let before = segment_bytes(&dir);
            // Seal the active segment so that what it holds can go too.
            for index in 0..KEYS {
                let key = format!("key-{index}");
                let data = bytes_of(index + 7, 1500);
                put(&shard, &key, &data).await;
                model.insert(key, data);
            }
            for _ in 0..3 {
                removed += shard.compact().await.unwrap();
            }
            let after = segment_bytes(&dir);
            check_all(&shard, &model, KEYS).await;
            assert!(removed > 10, "{removed} segments removed");
            let live: u64 = model.values().map(|data| data.len() as u64).sum();
            assert!(
                after < before,
                "segments hold {after} bytes after compaction, {before} before"
            );
            assert!(
                after <= OPTIONS.segment_bytes_max + 2 * live,
                "segments hold {after} bytes for {live} live bytes"
            );
            let stats = shard.compaction_stats();
            assert!(stats.versions_moved > 0, "{stats:?}");
            drop(shard);

            // A restart replays the relocations after the checkpoint.
            let shard = Rc::new(Shard::open_with(&dir, OPTIONS).await.unwrap());
            check_all(&shard, &model, KEYS).await;
            // And a checkpoint plus restart reads them from the index.
            shard.checkpoint_now().await.unwrap();
            drop(shard);
            let shard = Rc::new(Shard::open_with(&dir, OPTIONS).await.unwrap());
            check_all(&shard, &model, KEYS).await;
        });
    }
}
