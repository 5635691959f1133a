//! The memtable: the newest entries since the last flush, in key order.

use std::collections::{BTreeMap, btree_map};
use std::ops::Bound;

use super::IndexEntry;

/// Memory one entry costs besides its key bytes and the entry itself: the
/// boxed key's pointer and length, and its share of the B-tree nodes
/// (about a third of each node is empty on average).
const ENTRY_OVERHEAD_BYTES: usize = 48;

#[derive(Debug, Default)]
pub(super) struct Memtable {
    entries: BTreeMap<Box<[u8]>, IndexEntry>,
    /// Estimated memory held, for the flush policy.
    bytes: usize,
    /// The highest `seq` inserted; 0 when empty.
    seq_max: u64,
}

impl Memtable {
    pub(super) fn len(&self) -> usize {
        self.entries.len()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub(super) fn bytes(&self) -> usize {
        self.bytes
    }

    pub(super) fn seq_max(&self) -> u64 {
        self.seq_max
    }

    pub(super) fn get(&self, key: &[u8]) -> Option<IndexEntry> {
        self.entries.get(key).copied()
    }

    /// Insert or replace the entry of `key`. The caller has checked that
    /// `entry` is newer than any version the index knows.
    pub(super) fn insert(&mut self, key: Box<[u8]>, entry: IndexEntry) {
        self.seq_max = self.seq_max.max(entry.seq);
        let key_len = key.len();
        match self.entries.insert(key, entry) {
            Some(previous) => assert!(
                previous.seq < entry.seq,
                "memtable entry replaced by an older one"
            ),
            None => {
                self.bytes += key_len + size_of::<IndexEntry>() + ENTRY_OVERHEAD_BYTES;
            }
        }
    }

    /// Insert or replace the entry of `key` with a version that may be the
    /// one already there (a relocated version keeps its `seq`).
    pub(super) fn replace(&mut self, key: Box<[u8]>, entry: IndexEntry) {
        self.seq_max = self.seq_max.max(entry.seq);
        let key_len = key.len();
        match self.entries.insert(key, entry) {
            Some(previous) => assert!(
                previous.seq <= entry.seq,
                "memtable entry replaced by an older one"
            ),
            None => {
                self.bytes += key_len + size_of::<IndexEntry>() + ENTRY_OVERHEAD_BYTES;
            }
        }
    }

    /// Take back the entries of `older` (a frozen memtable whose flush
    /// failed) for the keys this one has no newer entry for.
    pub(super) fn absorb_older(&mut self, older: &Memtable) {
        for (key, entry) in &older.entries {
            if !self.entries.contains_key(key) {
                self.replace(key.clone(), *entry);
            }
        }
    }

    /// The entries from `start` on.
    pub(super) fn range_from(
        &self,
        start: Bound<&[u8]>,
    ) -> btree_map::Range<'_, Box<[u8]>, IndexEntry> {
        self.entries.range::<[u8], _>((start, Bound::Unbounded))
    }
}
