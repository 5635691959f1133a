//! What the power-loss tests expect of a shard after a power cut: for each
//! object, multipart upload and part, the values it may have, from what was
//! acknowledged and what was in flight at the cut; and the state a shard
//! shows, read back through its ordinary reads.
//!
//! Positions are positions in the session's log (`Session::event_count`):
//! an operation *starts* at the count before it does anything, and *ends*
//! at the count when its call returns. A cut after `k` changes sees an
//! operation that ended (acknowledged) at or before `k` whole, and one that
//! started before `k` but was not acknowledged by then (in flight, or
//! failed) maybe. One started at or after `k` did nothing before the cut.

use std::collections::BTreeMap;
use std::rc::Rc;

use crate::storage::index::IndexValue;
use crate::storage::object::ObjectBody;
use crate::storage::shard::Shard;
use crate::storage::shard::listing::{ListQuery, Listed};
use crate::storage::shard::uploads::{UploadListed, UploadQuery};

/// The bucket every test object is in.
pub const BUCKET: &str = "bucket";

/// An object's or a part's bytes; `None` when it does not exist.
pub type Value = Option<Rc<Vec<u8>>>;

#[derive(Debug, Clone)]
struct Step<V> {
    value: V,
    start: usize,
    end: usize,
    /// Acknowledged, or seen after a restart: from `end` on, it is the
    /// value unless a later step changes it.
    definite: bool,
    /// Seen after a restart, not an operation.
    observed: bool,
}

/// The changes of one thing (an object, an upload's existence, a part), in
/// the order they happened. The test never runs two operations on one
/// thing at once, so the steps do not overlap.
#[derive(Debug, Clone)]
pub struct History<V> {
    steps: Vec<Step<V>>,
}

impl<V> Default for History<V> {
    fn default() -> Self {
        History { steps: Vec::new() }
    }
}

impl<V: Clone + PartialEq> History<V> {
    /// An operation that set `value`, from `start` to `end`;
    /// `acknowledged` if its call returned `Ok`.
    pub fn op(&mut self, value: V, start: usize, end: usize, acknowledged: bool) {
        assert!(start <= end);
        if let Some(last) = self.steps.last() {
            assert!(last.end <= start, "operations on one thing overlap");
        }
        self.steps.push(Step {
            value,
            start,
            end,
            definite: acknowledged,
            observed: false,
        });
    }

    /// After a restart at `at`, the shard showed `value`: from then on it is
    /// definite (the start synced what it replayed).
    pub fn observed(&mut self, value: V, at: usize) {
        self.op(value, at, at, true);
        self.steps.last_mut().expect("just pushed").observed = true;
    }

    /// How many operations were acknowledged, and how many failed.
    pub fn operations(&self) -> (usize, usize) {
        let ops = self.steps.iter().filter(|step| !step.observed);
        let acknowledged = ops.clone().filter(|step| step.definite).count();
        (acknowledged, ops.count() - acknowledged)
    }

    /// The values a cut after `k` changes may leave, when the thing started
    /// as `initial`: the last definite value by `k` (or `initial`), and
    /// the value of every later step that started before `k`.
    pub fn possible(&self, initial: &V, k: usize) -> Vec<V> {
        let anchor = self
            .steps
            .iter()
            .rposition(|step| step.definite && step.end <= k);
        let mut values =
            vec![anchor.map_or_else(|| initial.clone(), |at| self.steps[at].value.clone())];
        let after = anchor.map_or(0, |at| at + 1);
        for step in &self.steps[after..] {
            if step.start < k && !values.contains(&step.value) {
                values.push(step.value.clone());
            }
        }
        values
    }
}

/// One multipart upload of the workload.
#[derive(Debug, Clone)]
pub struct UploadModel {
    pub key: String,
    /// The task that owns the key.
    pub task: usize,
    pub exists: History<bool>,
    pub parts: BTreeMap<u16, History<Value>>,
    pub next_part: u16,
    /// The workload will not touch it again (ended, or an end was tried).
    pub done: bool,
}

/// Everything the workload did.
#[derive(Debug, Default)]
pub struct Model {
    pub objects: BTreeMap<String, History<Value>>,
    pub uploads: BTreeMap<String, UploadModel>,
}

/// What a shard shows: every live object of [`BUCKET`] with its bytes, and
/// every upload in progress with its parts' bytes.
#[derive(Debug, Default)]
pub struct Seen {
    pub objects: BTreeMap<String, Vec<u8>>,
    pub uploads: BTreeMap<String, (String, BTreeMap<u16, Vec<u8>>)>,
}

/// Read everything `shard` holds, checking each object on the way (its
/// commit, every extent's record and checksum, the size).
pub async fn see(shard: &Shard) -> Result<Seen, String> {
    // The shard's own listing (the workload writes only to `BUCKET`).
    let page = shard.list(&ListQuery {
        bucket: BUCKET.to_owned(),
        prefix: String::new(),
        delimiter: String::new(),
        after: None,
        limit: usize::MAX,
    });
    assert!(!page.more, "one page holds every key");
    let keys: Vec<String> = page
        .entries
        .into_iter()
        .map(|entry| match entry {
            Listed::Object { key, .. } => key,
            Listed::CommonPrefix(prefix) => unreachable!("no delimiter, yet {prefix}"),
        })
        .collect();
    let mut seen = Seen::default();
    for key in keys {
        let Some(data) = read_object(shard, &key).await? else {
            return Err(format!("{key}: listed by the index but not found"));
        };
        seen.objects.insert(key, data);
    }
    let listed = shard.list_uploads(&UploadQuery {
        bucket: BUCKET.to_owned(),
        prefix: String::new(),
        delimiter: String::new(),
        key_marker: String::new(),
        upload_id_marker: String::new(),
        limit: usize::MAX,
    });
    for entry in listed {
        let UploadListed::Upload(listed) = entry else {
            unreachable!("no delimiter, no common prefixes");
        };
        let upload = shard
            .upload(BUCKET, &listed.key, &listed.upload_id)
            .ok_or_else(|| format!("upload {} listed but not found", listed.upload_id))?;
        let mut parts = BTreeMap::new();
        for (&number, (part, _)) in &upload.parts {
            let mut data = Vec::new();
            for extent in &part.extents {
                let bytes = shard
                    .read_extent(extent, 0, extent.data_len)
                    .await
                    .map_err(|error| {
                        format!(
                            "upload {} part {number}: extent at {:?}: {error}",
                            listed.upload_id, extent.location
                        )
                    })?;
                data.extend_from_slice(&bytes);
            }
            if data.len() as u64 != part.size {
                return Err(format!(
                    "upload {} part {number}: {} bytes, recorded as {}",
                    listed.upload_id,
                    data.len(),
                    part.size
                ));
            }
            parts.insert(number, data);
        }
        seen.uploads.insert(listed.upload_id, (listed.key, parts));
    }
    Ok(seen)
}

/// The bytes of `key`, read as a GET does; `None` if it does not exist.
pub async fn read_object(shard: &Shard, key: &str) -> Result<Option<Vec<u8>>, String> {
    let Some((entry, _pin)) = shard.lookup_pinned(BUCKET, key) else {
        return Ok(None);
    };
    let IndexValue::Object {
        commit: at, size, ..
    } = entry.value
    else {
        unreachable!("lookups return live objects");
    };
    let commit = shard
        .read_commit(at)
        .await
        .map_err(|error| format!("{key}: commit at {at:?}: {error}"))?;
    let data = match commit.body {
        ObjectBody::Inline(data) => data,
        ObjectBody::Extents(extents) => {
            let mut data = Vec::new();
            for extent in &extents {
                let bytes = shard
                    .read_extent(extent, 0, extent.data_len)
                    .await
                    .map_err(|error| format!("{key}: extent at {:?}: {error}", extent.location))?;
                data.extend_from_slice(&bytes);
            }
            data
        }
    };
    if data.len() as u64 != size || commit.size != size {
        return Err(format!(
            "{key}: {} bytes read, index says {size}, commit says {}",
            data.len(),
            commit.size
        ));
    }
    Ok(Some(data))
}

fn describe(value: &Value) -> String {
    match value {
        None => "absent".to_owned(),
        Some(data) => describe_bytes(data),
    }
}

fn describe_bytes(data: &[u8]) -> String {
    let head: Vec<String> = data
        .iter()
        .take(8)
        .map(|byte| format!("{byte:02x}"))
        .collect();
    format!("{} bytes [{}..]", data.len(), head.join(""))
}

fn describe_all(values: &[Value]) -> String {
    values.iter().map(describe).collect::<Vec<_>>().join(", ")
}

impl Model {
    /// How many operations were acknowledged, and how many failed, over
    /// every object, upload and part.
    pub fn operations(&self) -> (usize, usize) {
        let mut total = (0, 0);
        let mut add = |(acknowledged, failed): (usize, usize)| {
            total.0 += acknowledged;
            total.1 += failed;
        };
        self.objects
            .values()
            .for_each(|history| add(history.operations()));
        for upload in self.uploads.values() {
            add(upload.exists.operations());
            upload
                .parts
                .values()
                .for_each(|history| add(history.operations()));
        }
        total
    }

    /// Whether `seen` is a state a cut after `k` changes may leave; the
    /// first disagreement otherwise.
    pub fn check(&self, seen: &Seen, k: usize) -> Result<(), String> {
        for (key, data) in &seen.objects {
            let Some(history) = self.objects.get(key) else {
                return Err(format!(
                    "{key}: never written, yet {}",
                    describe_bytes(data)
                ));
            };
            let possible = history.possible(&None, k);
            if !possible.iter().flatten().any(|value| **value == *data) {
                return Err(format!(
                    "{key}: {} where only these may be: {}",
                    describe_bytes(data),
                    describe_all(&possible)
                ));
            }
        }
        for (key, history) in &self.objects {
            let possible = history.possible(&None, k);
            if !seen.objects.contains_key(key) && !possible.contains(&None) {
                return Err(format!(
                    "{key}: absent where only these may be: {}",
                    describe_all(&possible)
                ));
            }
        }
        for (id, (key, parts)) in &seen.uploads {
            let Some(upload) = self.uploads.get(id) else {
                return Err(format!("upload {id}: never created, yet in progress"));
            };
            if *key != upload.key {
                return Err(format!(
                    "upload {id}: of key {key}, created for {}",
                    upload.key
                ));
            }
            if !upload.exists.possible(&false, k).contains(&true) {
                return Err(format!(
                    "upload {id}: in progress, but ended or never created"
                ));
            }
            for (number, data) in parts {
                let Some(history) = upload.parts.get(number) else {
                    return Err(format!("upload {id}: part {number} never stored"));
                };
                let possible = history.possible(&None, k);
                if !possible.iter().flatten().any(|value| **value == *data) {
                    return Err(format!(
                        "upload {id} part {number}: {} where only these may be: {}",
                        describe_bytes(data),
                        describe_all(&possible)
                    ));
                }
            }
            for (number, history) in &upload.parts {
                let possible = history.possible(&None, k);
                if !parts.contains_key(number) && !possible.contains(&None) {
                    return Err(format!(
                        "upload {id} part {number}: lost; it is {}",
                        describe_all(&possible)
                    ));
                }
            }
        }
        for (id, upload) in &self.uploads {
            if !seen.uploads.contains_key(id) && !upload.exists.possible(&false, k).contains(&false)
            {
                return Err(format!("upload {id}: acknowledged as created, but lost"));
            }
        }
        Ok(())
    }

    /// A restart at `at` showed `seen` (already checked): it is definite
    /// from now on, and uploads that are gone are done with.
    pub fn observed(&mut self, seen: &Seen, at: usize) {
        for (key, history) in &mut self.objects {
            let value = seen.objects.get(key).map(|data| Rc::new(data.clone()));
            history.observed(value, at);
        }
        for (id, upload) in &mut self.uploads {
            let Some((_, parts)) = seen.uploads.get(id) else {
                upload.exists.observed(false, at);
                upload.done = true;
                continue;
            };
            upload.exists.observed(true, at);
            for (number, history) in &mut upload.parts {
                let value = parts.get(number).map(|data| Rc::new(data.clone()));
                history.observed(value, at);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_history_allows_the_last_definite_value_and_what_was_in_flight() {
        let mut history = History::default();
        history.op(1, 10, 20, true);
        history.op(2, 30, 40, false);
        history.op(3, 50, 60, true);
        assert_eq!(history.possible(&0, 5), [0]);
        assert_eq!(
            history.possible(&0, 10),
            [0],
            "started at 10: nothing before"
        );
        assert_eq!(history.possible(&0, 11), [0, 1]);
        assert_eq!(history.possible(&0, 20), [1]);
        assert_eq!(history.possible(&0, 31), [1, 2]);
        assert_eq!(
            history.possible(&0, 45),
            [1, 2],
            "a failed write may be there"
        );
        assert_eq!(history.possible(&0, 55), [1, 2, 3]);
        assert_eq!(history.possible(&0, 60), [3]);
        history.observed(2, 70);
        assert_eq!(history.possible(&0, 65), [3]);
        assert_eq!(history.possible(&0, 70), [2]);
    }
}
