//! Scrub: each core reads its live objects in the background, at a bounded
//! rate, and verifies them.
//!
//! A pass walks the index a slice at a time (yielding between objects) and
//! for every live object reads its commit record and every extent — each
//! record's CRC is checked by the read — and recomputes the object's stored
//! whole-object checksum (`x-amz-checksum-*` or the default CRC64NVME) over
//! its bytes. A `COMPOSITE` multipart checksum cannot be recomputed from
//! the bytes alone; those objects get the CRC checks only.
//!
//! An object found damaged is logged, counted
//! (`ringstore_scrub_damaged_objects_total`) and remembered for as long as
//! that version is the live one: a GET of the whole object and a HEAD then
//! answer `500` before sending anything, rather than start a body that
//! would break off where the damage is. Ranges and parts are still served:
//! every extent is checked against its CRC as it is read, so a response
//! that reaches the damage ends before a wrong byte. `ringstore check`
//! finds the same damage offline.
//!
//! The rate (`scrub_bytes_per_second`) paces reads against the pass's start
//! time; between passes the scrub pauses (`scrub_pause_ms`). Objects
//! written during a pass may be read in that pass or the next.
//!
//! What a pass does not read: records that no live object names (garbage
//! awaiting compaction), which compaction or `ringstore check` reads.

use std::cell::{Cell, RefCell};
use std::collections::HashSet;
use std::rc::Rc;
use std::time::{Duration, Instant};

use super::Shard;
use crate::storage::digest::Hasher;
use crate::storage::index::{IndexKey, IndexValue};
use crate::storage::location::Location;
use crate::storage::object::ObjectBody;

/// Objects one slice of the index walk takes before the index is borrowed
/// again.
const SLICE_OBJECTS: usize = 256;

/// What the scrub has done on one core.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ScrubStats {
    pub passes: u64,
    pub objects_verified: u64,
    pub bytes_verified: u64,
    pub objects_damaged: u64,
}

/// The scrub's state in a shard.
#[derive(Default)]
pub(super) struct State {
    stats: Cell<ScrubStats>,
    /// Live versions found damaged: `(key, seq)`.
    damaged: RefCell<HashSet<(IndexKey, u64)>>,
}

impl State {
    fn update(&self, change: impl FnOnce(&mut ScrubStats)) {
        let mut stats = self.stats.get();
        change(&mut stats);
        self.stats.set(stats);
    }
}

impl Shard {
    /// Scrub this shard's objects at `bytes_per_second` (0: never), pausing
    /// `pause` between passes, while the shard lives.
    pub fn start_scrub(self: &Rc<Self>, bytes_per_second: u64, pause: Duration) {
        if bytes_per_second == 0 {
            return;
        }
        let shard = Rc::downgrade(self);
        glommio::spawn_local(async move {
            loop {
                {
                    let Some(shard) = shard.upgrade() else {
                        return;
                    };
                    shard.scrub_pass(bytes_per_second).await;
                }
                glommio::timer::sleep(pause).await;
            }
        })
        .detach();
    }

    #[must_use]
    pub fn scrub_stats(&self) -> ScrubStats {
        self.scrub.stats.get()
    }

    /// Whether the scrub found this version of `bucket`/`key` damaged.
    #[must_use]
    pub fn is_damaged(&self, bucket: &str, key: &str, seq: u64) -> bool {
        self.scrub
            .damaged
            .borrow()
            .contains(&(IndexKey::new(bucket, key), seq))
    }

    /// One pass over every live object.
    async fn scrub_pass(&self, bytes_per_second: u64) {
        let started = Instant::now();
        let mut read: u64 = 0;
        let mut after: Option<Vec<u8>> = None;
        loop {
            let slice: Vec<(Vec<u8>, u64, IndexValue)> = {
                let index = self.index.borrow();
                index
                    .objects_after(after.as_deref())
                    .take(SLICE_OBJECTS)
                    .map(|(key, entry)| (key.to_vec(), entry.seq, entry.value))
                    .collect()
            };
            let Some((last, _, _)) = slice.last() else {
                break;
            };
            after = Some(last.clone());
            for (key, seq, value) in slice {
                if !matches!(value, IndexValue::Object { .. }) {
                    continue;
                }
                read += self.scrub_object(&IndexKey::from_encoded(&key), seq).await;
                // Pace: never ahead of the rate since the pass began.
                #[allow(
                    clippy::cast_precision_loss,
                    reason = "a pacing delay needs no exact byte count"
                )]
                let due = Duration::from_secs_f64(read as f64 / bytes_per_second as f64);
                if let Some(wait) = due.checked_sub(started.elapsed()) {
                    glommio::timer::sleep(wait).await;
                } else {
                    glommio::yield_if_needed().await;
                }
            }
        }
        // Damage found on versions that are no longer live is forgotten.
        self.scrub.damaged.borrow_mut().retain(|(key, seq)| {
            self.index
                .borrow()
                .get_live(key.bucket(), key.key())
                .is_some_and(|entry| entry.seq == *seq)
        });
        self.scrub.update(|stats| stats.passes += 1);
    }

    /// Verify one object if `seq` is still its live version; returns the
    /// bytes read.
    async fn scrub_object(&self, key: &IndexKey, seq: u64) -> u64 {
        let Some((entry, _pin)) = self.lookup_pinned(key.bucket(), key.key()) else {
            return 0;
        };
        let IndexValue::Object {
            commit: location,
            size,
            ..
        } = entry.value
        else {
            unreachable!("lookup returns live objects only");
        };
        if entry.seq != seq {
            return 0;
        }
        match self.verify_object(location).await {
            Ok(()) => {
                self.scrub.update(|stats| {
                    stats.objects_verified += 1;
                    stats.bytes_verified += size;
                });
                size
            }
            Err(what) => {
                tracing::error!(
                    bucket = key.bucket(),
                    key = key.key(),
                    segment = location.segment,
                    offset = location.offset,
                    what,
                    "scrub found a damaged object"
                );
                if self.scrub.damaged.borrow_mut().insert((key.clone(), seq)) {
                    self.scrub.update(|stats| stats.objects_damaged += 1);
                }
                size
            }
        }
    }

    /// Read the object whose commit is at `location`, every record checked,
    /// and compare its bytes with its stored whole-object checksum.
    async fn verify_object(&self, location: Location) -> Result<(), String> {
        let commit = self
            .read_commit(location)
            .await
            .map_err(|error| error.to_string())?;
        let whole = commit.checksums.iter().find(|checksum| !checksum.composite);
        let mut hasher = whole.map(|checksum| Hasher::new(checksum.algorithm));
        match &commit.body {
            ObjectBody::Inline(data) => {
                if let Some(hasher) = &mut hasher {
                    hasher.update(data);
                }
            }
            ObjectBody::Extents(extents) => {
                for extent in extents {
                    let bytes = self
                        .read_extent(extent, 0, extent.data_len)
                        .await
                        .map_err(|error| error.to_string())?;
                    if let Some(hasher) = &mut hasher {
                        hasher.update(&bytes);
                    }
                }
            }
        }
        if let (Some(whole), Some(hasher)) = (whole, hasher)
            && hasher.finish(whole.algorithm) != whole.value
        {
            return Err(format!(
                "the bytes do not match the stored {:?} checksum",
                whole.algorithm
            ));
        }
        Ok(())
    }
}
