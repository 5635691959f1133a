//! Multipart uploads in progress on one shard, and how they survive
//! restarts.
//!
//! An upload belongs to the shard that owns its key. Its state is in
//! memory ([`Uploads`]) and in the segments, as the records of
//! `storage::upload`: each change is appended, made durable, and only then
//! applied to the memory state, like a commit to the index. A start
//! rebuilds the state from two sources:
//!
//! - **The snapshot of the checkpoint.** Every index flush takes a
//!   checkpoint (the position before which every record is reflected), and
//!   at the same instant the upload state is encoded; the file
//!   `uploads-<segment>-<offset>` is written and synced before the index
//!   manifest commits that checkpoint. Older snapshot files are deleted
//!   after it. A record is pending from its append until it is applied
//!   (the checkpoint never passes a pending record), so the snapshot
//!   reflects at least every record before its position.
//! - **Replay.** The records from the checkpoint on are applied again, in
//!   order. Applying is idempotent (an upload begun twice is the same
//!   upload; a part stored twice is the same part; a part or an end for an
//!   upload that is not known is ignored), so records the snapshot already
//!   reflects do no harm.
//!
//! # Compaction
//!
//! The parts of an upload in progress are live although no commit names
//! them, and its records must stay in the segments for a full replay. So
//! [`Uploads::holds`] tells compaction which segments to leave: those with
//! the upload's `UploadCreate` record, each part's record and each part's
//! extents. Once the upload is completed, its object's commit (in the
//! index) keeps the extents live the ordinary way; once it is aborted or a
//! part is replaced, their bytes are garbage.
//!
//! # Completion
//!
//! `CompleteMultipartUpload` appends the object's `Commit` record and then
//! the `UploadEnd`, syncs once, then inserts the object into the index and
//! ends the upload together. If a crash keeps the commit but not the end,
//! the upload is still in progress after the start, and a retried
//! completion writes the same object again. The outcome of the last
//! [`limits::COMPLETED_UPLOADS_REMEMBERED`] completions is kept (in the
//! snapshot too), so that a client that retries a completion whose answer
//! it lost gets the same answer, as from AWS.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use super::{Shard, ShardError, UploadGuard};
use crate::limits;
use crate::storage::crc;
use crate::storage::index::{IndexEntry, IndexKey, SegmentPosition};
use crate::storage::location::SegmentId;
use crate::storage::object::{ETag, ObjectBody, ObjectCommit};
use crate::storage::record::Kind;
use crate::storage::segment::{Space, StorageError};
use crate::storage::upload::{UploadCreate, UploadEnd, UploadOutcome, UploadPart};

/// One upload in progress.
#[derive(Debug, Clone)]
pub struct Upload {
    pub create: UploadCreate,
    create_segment: SegmentId,
    /// Stored parts by number, with where each part's record is.
    pub parts: BTreeMap<u16, (UploadPart, SegmentPosition)>,
    /// Parts replaced while a completion ran: that completion may name
    /// their data, so it stays held until the upload ends or the
    /// completion gives up.
    retired: Vec<(UploadPart, SegmentPosition)>,
    /// A completion or abort is under way: other ones wait for it.
    ending: bool,
}

/// A completed upload's outcome, for retries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Completed {
    pub bucket: String,
    pub key: String,
    pub etag: ETag,
}

/// The uploads of one shard (see the module doc).
#[derive(Debug, Default)]
pub struct Uploads {
    by_id: HashMap<String, Upload>,
    /// `(bucket, key, upload id)`: `ListMultipartUploads` order (upload ids
    /// start with their creation time, so one key's uploads sort oldest
    /// first).
    by_key: BTreeSet<(String, String, String)>,
    completed: HashMap<String, Completed>,
    completed_order: VecDeque<String>,
    /// Segments holding records of uploads in progress, with how many.
    segments: BTreeMap<SegmentId, u32>,
    /// Creations appended but not yet durable: they count against the
    /// limit of uploads in progress like uploads in progress.
    creating: usize,
}

/// One upload of a `ListMultipartUploads` answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedUpload {
    pub key: String,
    pub upload_id: String,
    pub initiated_ms: i64,
}

/// What [`Shard::list_uploads`] returns: uploads, or common prefixes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UploadListed {
    Upload(ListedUpload),
    CommonPrefix(String),
}

/// Which uploads to list: see [`Shard::list_uploads`].
#[derive(Debug, Clone)]
pub struct UploadQuery {
    pub bucket: String,
    pub prefix: String,
    pub delimiter: String,
    /// Uploads after this `(key, upload id)`: keys after the key, or with
    /// an id the key's uploads after the id.
    pub key_marker: String,
    pub upload_id_marker: String,
    pub limit: usize,
}

impl Uploads {
    #[must_use]
    pub fn get(&self, upload_id: &str) -> Option<&Upload> {
        self.by_id.get(upload_id)
    }

    #[must_use]
    pub fn completed(&self, upload_id: &str) -> Option<&Completed> {
        self.completed.get(upload_id)
    }

    /// Whether a record of an upload in progress is in `segment`.
    #[must_use]
    pub fn holds(&self, segment: SegmentId) -> bool {
        self.segments.contains_key(&segment)
    }

    /// Whether `bucket` has uploads in progress on this shard.
    #[must_use]
    pub fn bucket_has_uploads(&self, bucket: &str) -> bool {
        self.by_key
            .range((bucket.to_owned(), String::new(), String::new())..)
            .next()
            .is_some_and(|(b, _, _)| b == bucket)
    }

    fn hold(&mut self, segment: SegmentId) {
        *self.segments.entry(segment).or_insert(0) += 1;
    }

    fn release(&mut self, segment: SegmentId) {
        let count = self.segments.get_mut(&segment).expect("held");
        *count -= 1;
        if *count == 0 {
            self.segments.remove(&segment);
        }
    }

    fn release_part(&mut self, part: &UploadPart, record_segment: SegmentId) {
        self.release(record_segment);
        for segment in part.extent_segments() {
            self.release(segment);
        }
    }

    pub fn apply_create(&mut self, create: UploadCreate, segment: SegmentId) {
        if self.by_id.contains_key(&create.upload_id) {
            return;
        }
        self.hold(segment);
        self.by_key.insert((
            create.template.bucket.clone(),
            create.template.key.clone(),
            create.upload_id.clone(),
        ));
        self.by_id.insert(
            create.upload_id.clone(),
            Upload {
                create,
                create_segment: segment,
                parts: BTreeMap::new(),
                retired: Vec::new(),
                ending: false,
            },
        );
    }

    /// Store a part whose record is `at`; `false` when its upload is not in
    /// progress. Of two records of one part number, the later one wins,
    /// whatever order they are applied in (two stores can be made durable
    /// by one sync and applied in either order; replay applies them in
    /// record order).
    pub fn apply_part(&mut self, part: UploadPart, at: SegmentPosition) -> bool {
        let Some(upload) = self.by_id.get_mut(&part.upload_id) else {
            return false;
        };
        if upload
            .parts
            .get(&part.part_number)
            .is_some_and(|(_, known)| *known > at)
        {
            return true;
        }
        let extent_segments: Vec<SegmentId> = part.extent_segments().collect();
        let replaced = upload.parts.insert(part.part_number, (part, at));
        let to_release = match replaced {
            Some(old) if upload.ending => {
                upload.retired.push(old);
                None
            }
            other => other,
        };
        self.hold(at.segment);
        for extent_segment in extent_segments {
            self.hold(extent_segment);
        }
        if let Some((old, old_at)) = to_release {
            self.release_part(&old, old_at.segment);
        }
        true
    }

    /// A completion or abort of `upload_id` is over without ending it.
    fn stop_ending(&mut self, upload_id: &str) {
        let Some(upload) = self.by_id.get_mut(upload_id) else {
            return;
        };
        upload.ending = false;
        let retired = std::mem::take(&mut upload.retired);
        for (part, at) in retired {
            self.release_part(&part, at.segment);
        }
    }

    pub fn apply_end(&mut self, end: &UploadEnd) {
        if let Some(upload) = self.by_id.remove(&end.upload_id) {
            self.by_key.remove(&(
                upload.create.template.bucket.clone(),
                upload.create.template.key.clone(),
                end.upload_id.clone(),
            ));
            self.release(upload.create_segment);
            for (part, at) in upload.parts.values().chain(&upload.retired) {
                self.release_part(part, at.segment);
            }
        }
        if let UploadOutcome::Completed { etag } = end.outcome {
            self.remember(
                end.upload_id.clone(),
                Completed {
                    bucket: end.bucket.clone(),
                    key: end.key.clone(),
                    etag,
                },
            );
        }
    }

    fn remember(&mut self, upload_id: String, completed: Completed) {
        if self
            .completed
            .insert(upload_id.clone(), completed)
            .is_none()
        {
            self.completed_order.push_back(upload_id);
        }
        while self.completed_order.len() > limits::COMPLETED_UPLOADS_REMEMBERED {
            let oldest = self.completed_order.pop_front().expect("not empty");
            self.completed.remove(&oldest);
        }
    }

    /// Apply one replayed record of a multipart kind.
    pub fn replay(
        &mut self,
        kind: Kind,
        at: SegmentPosition,
        payload: &[u8],
    ) -> Result<(), &'static str> {
        match kind {
            Kind::UploadCreate => {
                let create = UploadCreate::decode(payload).map_err(|error| error.what)?;
                self.apply_create(create, at.segment);
            }
            Kind::UploadPart => {
                let part = UploadPart::decode(payload).map_err(|error| error.what)?;
                self.apply_part(part, at);
            }
            Kind::UploadEnd => {
                let end = UploadEnd::decode(payload).map_err(|error| error.what)?;
                self.apply_end(&end);
            }
            _ => unreachable!("not a multipart record: {kind:?}"),
        }
        Ok(())
    }

    /// Up to `query.limit` uploads and common prefixes after the markers,
    /// in `(key, upload id)` order.
    #[must_use]
    pub fn list(&self, query: &UploadQuery) -> Vec<UploadListed> {
        let mut out: Vec<UploadListed> = Vec::new();
        let start = (
            query.bucket.clone(),
            query.prefix.clone().max(query.key_marker.clone()),
            String::new(),
        );
        for (bucket, key, upload_id) in self.by_key.range(start..) {
            if out.len() >= query.limit {
                break;
            }
            // The range starts at the prefix or after it, so the keys with
            // the prefix come first, together.
            if *bucket != query.bucket || !key.starts_with(&query.prefix) {
                break;
            }
            let after_marker = if query.key_marker.is_empty() {
                true
            } else if query.upload_id_marker.is_empty() {
                key.as_str() > query.key_marker.as_str()
            } else {
                key.as_str() > query.key_marker.as_str()
                    || (*key == query.key_marker
                        && upload_id.as_str() > query.upload_id_marker.as_str())
            };
            if !after_marker {
                continue;
            }
            if let Some(common) = super::listing::rolled_up(key, &query.prefix, &query.delimiter) {
                if !query.key_marker.is_empty() && common <= query.key_marker.as_str() {
                    continue;
                }
                if out.last() != Some(&UploadListed::CommonPrefix(common.to_owned())) {
                    out.push(UploadListed::CommonPrefix(common.to_owned()));
                }
                continue;
            }
            let upload = &self.by_id[upload_id];
            out.push(UploadListed::Upload(ListedUpload {
                key: key.clone(),
                upload_id: upload_id.clone(),
                initiated_ms: upload.create.initiated_ms,
            }));
        }
        out
    }

    /// The state as a snapshot file's bytes.
    #[must_use]
    pub fn encode_snapshot(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(SNAPSHOT_MAGIC);
        let mut push = |tag: u8, at: SegmentPosition, payload: &[u8]| {
            out.push(tag);
            out.extend_from_slice(&at.segment.to_le_bytes());
            out.extend_from_slice(&at.offset.to_le_bytes());
            out.extend_from_slice(
                &u32::try_from(payload.len())
                    .expect("records are bounded")
                    .to_le_bytes(),
            );
            out.extend_from_slice(payload);
        };
        // Oldest first, so that a decode applies them in a valid order.
        for (_, _, upload_id) in &self.by_key {
            let upload = &self.by_id[upload_id];
            let created = SegmentPosition {
                segment: upload.create_segment,
                offset: 0,
            };
            push(TAG_CREATE, created, &upload.create.encode());
            for (part, at) in upload.parts.values().chain(&upload.retired) {
                push(TAG_PART, *at, &part.encode());
            }
        }
        for upload_id in &self.completed_order {
            let completed = &self.completed[upload_id];
            let end = UploadEnd {
                upload_id: upload_id.clone(),
                bucket: completed.bucket.clone(),
                key: completed.key.clone(),
                ended_ms: 0,
                outcome: UploadOutcome::Completed {
                    etag: completed.etag,
                },
            };
            push(TAG_COMPLETED, SegmentPosition::START, &end.encode());
        }
        let crc = crc::crc32c(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out
    }

    pub fn decode_snapshot(bytes: &[u8]) -> Result<Uploads, &'static str> {
        let (body, crc) = bytes
            .split_last_chunk::<4>()
            .ok_or("snapshot shorter than its checksum")?;
        if crc::crc32c(body) != u32::from_le_bytes(*crc) {
            return Err("snapshot checksum mismatch");
        }
        let mut rest = body
            .strip_prefix(SNAPSHOT_MAGIC.as_slice())
            .ok_or("not an upload snapshot")?;
        let mut uploads = Uploads::default();
        while let Some((&tag, after)) = rest.split_first() {
            let (segment, after) = after.split_first_chunk::<4>().ok_or("truncated entry")?;
            let (offset, after) = after.split_first_chunk::<8>().ok_or("truncated entry")?;
            let (len, after) = after.split_first_chunk::<4>().ok_or("truncated entry")?;
            let len = u32::from_le_bytes(*len) as usize;
            if after.len() < len {
                return Err("truncated entry");
            }
            let (payload, after) = after.split_at(len);
            let at = SegmentPosition {
                segment: SegmentId::from_le_bytes(*segment),
                offset: u64::from_le_bytes(*offset),
            };
            match tag {
                TAG_CREATE => uploads.replay(Kind::UploadCreate, at, payload)?,
                TAG_PART => {
                    let part = UploadPart::decode(payload).map_err(|error| error.what)?;
                    if !uploads.apply_part(part, at) {
                        return Err("a part of an unknown upload");
                    }
                }
                TAG_COMPLETED => uploads.replay(Kind::UploadEnd, at, payload)?,
                _ => return Err("unknown entry"),
            }
            rest = after;
        }
        Ok(uploads)
    }
}

const SNAPSHOT_MAGIC: &[u8; 8] = b"RSUPLD02";
const TAG_CREATE: u8 = 1;
const TAG_PART: u8 = 2;
const TAG_COMPLETED: u8 = 3;
const SNAPSHOT_PREFIX: &str = "uploads-";

/// The snapshot file of the checkpoint at `position`.
#[must_use]
pub fn snapshot_path(dir: &Path, position: SegmentPosition) -> PathBuf {
    dir.join(format!(
        "{SNAPSHOT_PREFIX}{:08}-{:016}",
        position.segment, position.offset
    ))
}

/// Write a snapshot durably: a temporary file, synced, renamed, and the
/// directory synced. Runs on a blocking thread.
pub fn write_snapshot(dir: &Path, position: SegmentPosition, bytes: &[u8]) -> std::io::Result<()> {
    crate::storage::fs::write_file_durably(&snapshot_path(dir, position), bytes)
}

/// Delete every snapshot but the one of `keep`.
pub fn remove_other_snapshots(dir: &Path, keep: SegmentPosition) -> std::io::Result<()> {
    let keep = snapshot_path(dir, keep);
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let is_snapshot = path
            .file_name()
            .and_then(|name| name.to_str())
            .is_some_and(|name| name.starts_with(SNAPSHOT_PREFIX));
        if is_snapshot && path != keep {
            crate::storage::fs::remove_file(&path)?;
        }
    }
    Ok(())
}

/// The upload state as of the checkpoint at `position`: empty for an
/// empty shard; otherwise its snapshot must exist.
pub fn load_snapshot(dir: &Path, position: SegmentPosition) -> Result<Uploads, ShardError> {
    let path = snapshot_path(dir, position);
    match crate::storage::fs::read(&path) {
        Ok(bytes) => Uploads::decode_snapshot(&bytes).map_err(|what| {
            ShardError::Io(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{}: {what}", path.display()),
            ))
        }),
        Err(error)
            if error.kind() == std::io::ErrorKind::NotFound
                && position == SegmentPosition::START =>
        {
            Ok(Uploads::default())
        }
        Err(error) => Err(ShardError::Io(std::io::Error::new(
            error.kind(),
            format!("{}: {error}", path.display()),
        ))),
    }
}

/// Why a multipart operation did not happen.
#[derive(Debug)]
pub enum UploadError {
    /// No such upload in progress (for this bucket and key).
    NoSuchUpload,
    Storage(ShardError),
}

/// Why [`Shard::create_upload`] failed.
#[derive(Debug)]
pub enum CreateUploadError {
    /// This shard already holds as many uploads in progress as it allows
    /// (`multipart_uploads_per_core_max`).
    TooManyUploads,
    Storage(ShardError),
}

impl From<ShardError> for UploadError {
    fn from(error: ShardError) -> Self {
        UploadError::Storage(error)
    }
}

impl Shard {
    /// The uploads of this shard, for reading.
    pub fn uploads(&self) -> std::cell::Ref<'_, Uploads> {
        self.multipart.borrow()
    }

    /// The upload `upload_id` of `bucket`/`key`, if it is in progress.
    #[must_use]
    pub fn upload(&self, bucket: &str, key: &str, upload_id: &str) -> Option<Upload> {
        self.multipart
            .borrow()
            .get(upload_id)
            .filter(|upload| {
                upload.create.template.bucket == bucket && upload.create.template.key == key
            })
            .cloned()
    }

    /// Whether the upload `upload_id` of `bucket`/`key` is in progress
    /// (without copying it, as [`Self::upload`] does).
    #[must_use]
    pub fn has_upload(&self, bucket: &str, key: &str, upload_id: &str) -> bool {
        self.multipart
            .borrow()
            .get(upload_id)
            .is_some_and(|upload| {
                upload.create.template.bucket == bucket && upload.create.template.key == key
            })
    }

    /// The checksum the upload `upload_id` of `bucket`/`key` was created
    /// with; `None` when the upload is not in progress.
    #[must_use]
    pub fn upload_checksum(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
    ) -> Option<Option<crate::storage::upload::ChecksumSpec>> {
        self.multipart
            .borrow()
            .get(upload_id)
            .filter(|upload| {
                upload.create.template.bucket == bucket && upload.create.template.key == key
            })
            .map(|upload| upload.create.checksum)
    }

    /// Begin an upload: durable, then known. Refused with
    /// [`CreateUploadError::TooManyUploads`] when the shard holds
    /// `uploads_max` uploads in progress (counting creations not yet
    /// durable).
    pub async fn create_upload(
        &self,
        create: UploadCreate,
        uploads_max: usize,
    ) -> Result<(), CreateUploadError> {
        {
            let mut multipart = self.multipart.borrow_mut();
            if multipart.by_id.len() + multipart.creating >= uploads_max {
                return Err(CreateUploadError::TooManyUploads);
            }
            multipart.creating += 1;
        }
        let appended = self
            .append_pending(Kind::UploadCreate, &create.encode(), None, Space::Data)
            .await;
        let result = match appended {
            Ok((location, _, epoch)) => {
                let result = self.writer.sync(location, epoch).await;
                if result.is_ok() {
                    self.multipart
                        .borrow_mut()
                        .apply_create(create, location.segment);
                }
                self.unmark_pending(location, None);
                result.map_err(ShardError::from)
            }
            Err(error) => Err(error),
        };
        self.multipart.borrow_mut().creating -= 1;
        result.map_err(CreateUploadError::Storage)
    }

    /// Store a part whose extents are appended (by the upload `guard`
    /// holds): durable, then part of its upload. `NoSuchUpload` when the
    /// upload ended meanwhile.
    pub async fn store_part(
        &self,
        part: UploadPart,
        guard: &UploadGuard,
    ) -> Result<(), UploadError> {
        if self.multipart.borrow().get(&part.upload_id).is_none() {
            return Err(UploadError::NoSuchUpload);
        }
        // As for a commit: the part's extents must not have been dropped.
        let appended = self
            .append_pending_if(Kind::UploadPart, &part.encode(), None, Space::Data, || {
                guard.epoch == self.writer.epoch()
            })
            .await?;
        let Some((location, _, epoch)) = appended else {
            return Err(UploadError::Storage(ShardError::Storage(
                StorageError::NoSpace(
                    "the disk filled up while the part was received; its data was dropped"
                        .to_owned(),
                ),
            )));
        };
        let result = self.writer.sync(location, epoch).await;
        let stored = result.is_ok()
            && self.multipart.borrow_mut().apply_part(
                part,
                SegmentPosition {
                    segment: location.segment,
                    offset: location.offset,
                },
            );
        self.unmark_pending(location, None);
        result.map_err(ShardError::from)?;
        if stored {
            Ok(())
        } else {
            Err(UploadError::NoSuchUpload)
        }
    }

    /// Wait until no other completion or abort of `upload_id` runs, then
    /// mark one as running; `None` when the upload is not in progress
    /// (anymore). The mark is cleared by [`Self::end_upload`] or by
    /// dropping the returned guard.
    pub async fn begin_ending(self: &Rc<Self>, upload_id: &str) -> Option<EndingGuard> {
        loop {
            {
                let mut uploads = self.multipart.borrow_mut();
                let upload = uploads.by_id.get_mut(upload_id)?;
                if !upload.ending {
                    upload.ending = true;
                    return Some(EndingGuard {
                        shard: Rc::clone(self),
                        upload_id: upload_id.to_owned(),
                    });
                }
            }
            glommio::timer::sleep(std::time::Duration::from_millis(5)).await;
        }
    }

    /// End an upload: with the object's `commit` (completion), or without
    /// (abort). Both records are synced together; then the object is in
    /// the index and the upload gone, at the same instant.
    pub async fn end_upload(
        self: &Rc<Self>,
        _guard: EndingGuard,
        commit: Option<&ObjectCommit>,
        end: &UploadEnd,
    ) -> Result<(), ShardError> {
        let key = IndexKey::new(&end.bucket, &end.key);
        let mut commit_at = None;
        if let Some(commit) = commit {
            if let ObjectBody::Extents(extents) = &commit.body {
                self.compaction.referenced(extents);
            }
            match self
                .append_pending(Kind::Commit, &commit.encode(), Some(&key), Space::Data)
                .await
            {
                Ok(at) => commit_at = Some(at),
                Err(error) => return Err(error),
            }
        }
        // The end and the commit are synced together: they must be in the
        // same epoch (no record dropped in between).
        let commit_epoch = commit_at.map(|(_, _, epoch)| epoch);
        let appended = self
            .append_pending_if(Kind::UploadEnd, &end.encode(), None, Space::Reserve, || {
                commit_epoch.is_none_or(|epoch| epoch == self.writer.epoch())
            })
            .await;
        let Ok(Some((end_location, _, epoch))) = appended else {
            if let Some((location, _, _)) = commit_at {
                self.unmark_pending(location, Some(&key));
            }
            return Err(appended.err().unwrap_or_else(|| {
                ShardError::Storage(StorageError::NoSpace(
                    "the disk filled up before the completion was durable".to_owned(),
                ))
            }));
        };
        let result = self.writer.sync(end_location, epoch).await;
        if result.is_ok() {
            if let (Some(commit), Some((location, seq, _))) = (commit, commit_at) {
                let value = super::object_index_value(location, commit);
                let previous = self.index.borrow().get_live(&end.bucket, &end.key);
                if self
                    .index
                    .borrow_mut()
                    .insert(key.clone(), IndexEntry { seq, value })
                {
                    self.compaction.superseded(previous.as_ref());
                }
            }
            self.multipart.borrow_mut().apply_end(end);
        }
        if let Some((location, _, _)) = commit_at {
            self.unmark_pending(location, Some(&key));
        }
        self.unmark_pending(end_location, None);
        result?;
        self.maybe_flush_index();
        Ok(())
    }

    /// This shard's uploads of a `ListMultipartUploads` page.
    #[must_use]
    pub fn list_uploads(&self, query: &UploadQuery) -> Vec<UploadListed> {
        self.multipart.borrow().list(query)
    }
}

/// Marks a completion or abort in progress (see [`Shard::begin_ending`]).
pub struct EndingGuard {
    shard: Rc<Shard>,
    upload_id: String,
}

impl Drop for EndingGuard {
    fn drop(&mut self) {
        self.shard
            .multipart
            .borrow_mut()
            .stop_ending(&self.upload_id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::location::Location;
    use crate::storage::object::Extent;
    use crate::storage::record;

    fn create(id: &str, key: &str) -> UploadCreate {
        UploadCreate {
            upload_id: id.into(),
            initiated_ms: 7,
            checksum: None,
            template: ObjectCommit {
                bucket: "b".into(),
                key: key.into(),
                size: 0,
                etag: ETag::Md5([0; 16]),
                last_modified_ms: 0,
                content_type: Some("text/plain".into()),
                cache_control: None,
                content_disposition: None,
                content_encoding: None,
                content_language: None,
                expires: None,
                user_metadata: Vec::new(),
                checksums: Vec::new(),
                part_sizes: Vec::new(),
                body: ObjectBody::Extents(Vec::new()),
            },
        }
    }

    fn part(id: &str, number: u16, segments: &[SegmentId]) -> UploadPart {
        UploadPart {
            upload_id: id.into(),
            part_number: number,
            size: 10 * segments.len() as u64,
            md5: [u8::try_from(number % 256).unwrap(); 16],
            last_modified_ms: 9,
            checksum: None,
            extents: segments
                .iter()
                .map(|&segment| Extent {
                    location: Location {
                        segment,
                        offset: 4096,
                        len: record::record_len(10),
                    },
                    data_len: 10,
                })
                .collect(),
        }
    }

    fn end(id: &str, key: &str, outcome: UploadOutcome) -> UploadEnd {
        UploadEnd {
            upload_id: id.into(),
            bucket: "b".into(),
            key: key.into(),
            ended_ms: 11,
            outcome,
        }
    }

    fn at(segment: SegmentId, offset: u64) -> SegmentPosition {
        SegmentPosition { segment, offset }
    }

    fn held(uploads: &Uploads) -> Vec<SegmentId> {
        uploads.segments.keys().copied().collect()
    }

    #[test]
    fn segments_are_held_while_an_upload_needs_them() {
        let mut uploads = Uploads::default();
        uploads.apply_create(create("u1", "k"), 1);
        assert!(uploads.apply_part(part("u1", 1, &[2, 3]), at(3, 0)));
        assert_eq!(held(&uploads), [1, 2, 3]);
        // Replacing part 1 releases the old part's segments.
        assert!(uploads.apply_part(part("u1", 1, &[5]), at(5, 0)));
        assert_eq!(held(&uploads), [1, 5]);
        assert!(!uploads.apply_part(part("nope", 1, &[6]), at(6, 0)));
        assert!(uploads.bucket_has_uploads("b"));
        assert!(!uploads.bucket_has_uploads("c"));
        uploads.apply_end(&end("u1", "k", UploadOutcome::Aborted));
        assert!(held(&uploads).is_empty());
        assert!(!uploads.bucket_has_uploads("b"));
        assert!(uploads.completed("u1").is_none());
    }

    #[test]
    fn the_later_record_of_a_part_wins_in_any_order() {
        let mut uploads = Uploads::default();
        uploads.apply_create(create("u", "k"), 1);
        let (earlier, later) = (part("u", 1, &[2]), part("u", 1, &[3]));
        // Applied later first, as two tasks woken by one sync may be.
        assert!(uploads.apply_part(later.clone(), at(3, 4096)));
        assert!(uploads.apply_part(earlier, at(3, 0)));
        assert_eq!(uploads.get("u").unwrap().parts[&1].0, later);
        assert_eq!(held(&uploads), [1, 3]);
    }

    #[test]
    fn parts_replaced_during_a_completion_stay_held_until_it_is_over() {
        let mut uploads = Uploads::default();
        uploads.apply_create(create("u", "k"), 1);
        assert!(uploads.apply_part(part("u", 1, &[2]), at(2, 0)));
        uploads.by_id.get_mut("u").unwrap().ending = true;
        assert!(uploads.apply_part(part("u", 1, &[4]), at(4, 0)));
        assert_eq!(
            held(&uploads),
            [1, 2, 4],
            "the completion may name segment 2"
        );
        // The completion failed: the replaced part is released.
        uploads.stop_ending("u");
        assert_eq!(held(&uploads), [1, 4]);
        // Or it ended the upload: everything is released.
        uploads.by_id.get_mut("u").unwrap().ending = true;
        assert!(uploads.apply_part(part("u", 1, &[5]), at(5, 0)));
        uploads.apply_end(&end("u", "k", UploadOutcome::Aborted));
        assert!(held(&uploads).is_empty());
    }

    #[test]
    fn snapshots_round_trip_and_replay_is_idempotent() {
        let records: Vec<(Kind, SegmentPosition, Vec<u8>)> = vec![
            (Kind::UploadCreate, at(1, 0), create("u1", "k").encode()),
            (Kind::UploadCreate, at(1, 0), create("u2", "j").encode()),
            (Kind::UploadPart, at(2, 0), part("u1", 1, &[2]).encode()),
            (Kind::UploadPart, at(3, 0), part("u2", 3, &[3]).encode()),
            (Kind::UploadPart, at(4, 0), part("u1", 1, &[4]).encode()),
            (
                Kind::UploadEnd,
                at(4, 8192),
                end(
                    "u2",
                    "j",
                    UploadOutcome::Completed {
                        etag: ETag::Multipart {
                            digest: [3; 16],
                            part_count: 1,
                        },
                    },
                )
                .encode(),
            ),
            (Kind::UploadPart, at(5, 0), part("u1", 2, &[5]).encode()),
        ];
        let mut all = Uploads::default();
        for (kind, segment, payload) in &records {
            all.replay(*kind, *segment, payload).unwrap();
        }
        // A snapshot taken after any prefix, then every record from any
        // earlier point replayed, ends in the same state.
        for taken in 0..=records.len() {
            let mut prefix = Uploads::default();
            for (kind, segment, payload) in &records[..taken] {
                prefix.replay(*kind, *segment, payload).unwrap();
            }
            let bytes = prefix.encode_snapshot();
            for from in 0..=taken {
                let mut state = Uploads::decode_snapshot(&bytes).unwrap();
                for (kind, segment, payload) in &records[from..] {
                    state.replay(*kind, *segment, payload).unwrap();
                }
                assert_eq!(
                    state.encode_snapshot(),
                    all.encode_snapshot(),
                    "{taken} {from}"
                );
                assert_eq!(held(&state), held(&all));
            }
        }
        assert_eq!(held(&all), [1, 4, 5]);
        assert_eq!(all.get("u1").unwrap().parts.len(), 2);
        assert_eq!(all.completed("u2").unwrap().key, "j");
        // Damage is refused.
        let mut bytes = all.encode_snapshot();
        let middle = bytes.len() / 2;
        bytes[middle] ^= 1;
        assert!(Uploads::decode_snapshot(&bytes).is_err());
        assert!(Uploads::decode_snapshot(&[]).is_err());
    }

    #[test]
    fn completed_uploads_are_remembered_up_to_the_limit() {
        let mut uploads = Uploads::default();
        let etag = ETag::Multipart {
            digest: [1; 16],
            part_count: 1,
        };
        for index in 0..=limits::COMPLETED_UPLOADS_REMEMBERED {
            uploads.apply_end(&end(
                &format!("u{index}"),
                "k",
                UploadOutcome::Completed { etag },
            ));
        }
        assert!(uploads.completed("u0").is_none());
        assert!(uploads.completed("u1").is_some());
        let last = format!("u{}", limits::COMPLETED_UPLOADS_REMEMBERED);
        assert!(uploads.completed(&last).is_some());
    }

    #[test]
    fn listing_follows_markers_prefixes_and_delimiters() {
        let mut uploads = Uploads::default();
        for (id, key) in [
            ("1", "a/x"),
            ("2", "a/y"),
            ("3", "b"),
            ("4", "b"),
            ("5", "c"),
        ] {
            uploads.apply_create(create(id, key), 1);
        }
        let query =
            |prefix: &str, delimiter: &str, key_marker: &str, id_marker: &str| UploadQuery {
                bucket: "b".into(),
                prefix: prefix.into(),
                delimiter: delimiter.into(),
                key_marker: key_marker.into(),
                upload_id_marker: id_marker.into(),
                limit: 100,
            };
        let names = |listed: Vec<UploadListed>| -> Vec<String> {
            listed
                .into_iter()
                .map(|entry| match entry {
                    UploadListed::Upload(upload) => format!("{}#{}", upload.key, upload.upload_id),
                    UploadListed::CommonPrefix(prefix) => format!("P:{prefix}"),
                })
                .collect()
        };
        assert_eq!(
            names(uploads.list(&query("", "", "", ""))),
            ["a/x#1", "a/y#2", "b#3", "b#4", "c#5"]
        );
        assert_eq!(
            names(uploads.list(&query("", "/", "", ""))),
            ["P:a/", "b#3", "b#4", "c#5"]
        );
        assert_eq!(names(uploads.list(&query("", "", "b", ""))), ["c#5"]);
        assert_eq!(
            names(uploads.list(&query("", "", "b", "3"))),
            ["b#4", "c#5"]
        );
        assert_eq!(
            names(uploads.list(&query("", "/", "a/", ""))),
            ["b#3", "b#4", "c#5"]
        );
        assert_eq!(
            names(uploads.list(&query("a/", "", "", ""))),
            ["a/x#1", "a/y#2"]
        );
        assert_eq!(
            names(uploads.list(&query("", "", "", "3"))),
            ["a/x#1", "a/y#2", "b#3", "b#4", "c#5"]
        );
    }
}
