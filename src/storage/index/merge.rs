//! The k-way merge of sorted sources (memtables and runs) into one stream
//! of the newest version of each key, used by range scans, flushes and
//! merges alike.
//!
//! There are at most a handful of sources (the memtable, a frozen memtable,
//! and a few runs), so the smallest head is found by a linear scan rather
//! than a heap: fewer branches and no allocation per step.

use std::collections::btree_map;
use std::ops::Bound;

use super::IndexEntry;
use super::memtable::Memtable;
use super::run::{self, Run, StoredEntry};

/// One sorted source, positioned at its next entry.
#[derive(Clone)]
pub(super) enum Source<'a> {
    Memtable {
        memtable: &'a Memtable,
        range: btree_map::Range<'a, Box<[u8]>, IndexEntry>,
    },
    Run {
        entries: &'a [StoredEntry],
        position: usize,
    },
}

impl<'a> Source<'a> {
    /// `memtable` from `start` on.
    pub(super) fn memtable(memtable: &'a Memtable, start: Bound<&[u8]>) -> Self {
        Source::Memtable {
            memtable,
            range: memtable.range_from(start),
        }
    }

    /// `run` from `start` on.
    pub(super) fn run(run: &'a Run, start: Bound<&[u8]>) -> Self {
        let entries = run.entries();
        Source::Run {
            entries,
            position: run::lower_bound(entries, start),
        }
    }

    fn next(&mut self) -> Option<(&'a [u8], IndexEntry)> {
        match self {
            Source::Memtable { range, .. } => range.next().map(|(key, entry)| (&**key, *entry)),
            Source::Run { entries, position } => {
                let entry = entries.get(*position)?;
                *position += 1;
                Some((entry.key(), entry.entry()))
            }
        }
    }

    /// Reposition at the first entry at or after `target`, which is past
    /// the entry last returned.
    fn seek(&mut self, target: &[u8]) {
        match self {
            Source::Memtable { memtable, range } => {
                *range = memtable.range_from(Bound::Included(target));
            }
            Source::Run { entries, position } => {
                *position += run::lower_bound(&entries[*position..], Bound::Included(target));
            }
        }
    }
}

/// The merged stream: each key once, in order, with its highest-`seq`
/// version; it ends at the first key that does not start with `prefix`
/// (the sources are positioned at or after the first key that does).
/// `Clone` so that the run writer can take two passes over it.
#[derive(Clone)]
pub(super) struct MergeIter<'a> {
    sources: Vec<Source<'a>>,
    /// The next entry of each source.
    heads: Vec<Option<(&'a [u8], IndexEntry)>>,
    prefix: Vec<u8>,
    drop_tombstones: bool,
}

impl<'a> MergeIter<'a> {
    pub(super) fn new(
        mut sources: Vec<Source<'a>>,
        prefix: Vec<u8>,
        drop_tombstones: bool,
    ) -> Self {
        let heads = sources.iter_mut().map(Source::next).collect();
        MergeIter {
            sources,
            heads,
            prefix,
            drop_tombstones,
        }
    }
}

impl MergeIter<'_> {
    /// Skip to the first key at or after `target`: each source that is
    /// behind it is repositioned by binary search, not read through.
    pub(super) fn seek(&mut self, target: &[u8]) {
        for (head, source) in self.heads.iter_mut().zip(&mut self.sources) {
            if head.is_some_and(|(key, _)| key < target) {
                source.seek(target);
                *head = source.next();
            }
        }
    }
}

impl<'a> Iterator for MergeIter<'a> {
    type Item = (&'a [u8], IndexEntry);

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let mut best: Option<(&'a [u8], IndexEntry)> = None;
            for (key, entry) in self.heads.iter().flatten() {
                let better = match best {
                    None => true,
                    Some((best_key, best_entry)) => {
                        *key < best_key || (*key == best_key && entry.seq > best_entry.seq)
                    }
                };
                if better {
                    best = Some((key, *entry));
                }
            }
            let (key, entry) = best?;
            if !key.starts_with(&self.prefix) {
                self.heads.iter_mut().for_each(|head| *head = None);
                return None;
            }
            for (head, source) in self.heads.iter_mut().zip(&mut self.sources) {
                if head.is_some_and(|(head_key, _)| head_key == key) {
                    *head = source.next();
                    debug_assert!(
                        head.is_none_or(|(next_key, _)| next_key > key),
                        "source out of order"
                    );
                }
            }
            if self.drop_tombstones && entry.is_tombstone() {
                continue;
            }
            return Some((key, entry));
        }
    }
}
