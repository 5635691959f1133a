//! One shard's share of a `ListObjects` page.
//!
//! Keys are spread over every shard by hash, so a listing asks each shard
//! for its next entries after a position and merges the answers (the S3
//! layer does that, `s3::list`). This module answers one shard's part: the
//! live keys of a bucket under a prefix, after a position, in key order,
//! with the keys that a delimiter rolls up replaced by their common prefix.
//!
//! # The position rule
//!
//! A listing is the sorted sequence of its entries: keys and common
//! prefixes, mixed, compared as byte strings. A page continues after the
//! last entry of the one before, whatever kind it was. So a common prefix
//! is returned only if it sorts after the position: with delimiter `/`, a
//! position `photos/2024/a.jpg` (or `photos/` itself) has already passed
//! `photos/`, and the keys under it are skipped, not reported again. This
//! is what makes `NextMarker` (a key or a common prefix) and the `v2`
//! continuation token (the same position, encoded) stable while writers
//! add and delete keys: a page never repeats an entry of an earlier page,
//! and it never skips a key that sorts after the position.
//!
//! # What a page costs
//!
//! Each entry read from the index is returned, except the keys under a
//! common prefix already found, which are skipped with one seek
//! ([`crate::storage::index::IndexRange::skip_prefix`]), and the keys under
//! a common prefix at or before the position, skipped the same way. Older
//! versions and tombstones interleaved with the live keys are read by the
//! index merge and not returned.

use super::Shard;
use crate::storage::index::{Etag, IndexValue};

/// One entry of a listing: a live object, or a common prefix that stands
/// for every key under it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Listed {
    Object {
        key: String,
        size: u64,
        etag: Etag,
        last_modified_ms: i64,
    },
    CommonPrefix(String),
}

impl Listed {
    /// The position of the entry in the listing: its key or its prefix.
    #[must_use]
    pub fn position(&self) -> &str {
        match self {
            Listed::Object { key, .. } => key,
            Listed::CommonPrefix(prefix) => prefix,
        }
    }
}

/// What to list: see [`Shard::list`].
#[derive(Debug, Clone)]
pub struct ListQuery {
    pub bucket: String,
    pub prefix: String,
    /// Empty means no delimiter.
    pub delimiter: String,
    /// Entries sort strictly after this position (`None`: from the start).
    pub after: Option<String>,
    /// Most entries to return.
    pub limit: usize,
}

/// A shard's answer: up to `limit` entries in order, and whether it has
/// more after the last one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListPage {
    pub entries: Vec<Listed>,
    pub more: bool,
}

impl Shard {
    /// The next `query.limit` entries of this shard's share of a listing
    /// (see the module doc for the position rule).
    #[must_use]
    pub fn list(&self, query: &ListQuery) -> ListPage {
        let index = self.index.borrow();
        list_index(&index, query)
    }
}

/// The listing logic over an index; separate from [`Shard`] so that it is
/// testable without one.
pub(crate) fn list_index(index: &crate::storage::index::Index, query: &ListQuery) -> ListPage {
    let mut page = ListPage::default();
    let mut range = index.range(&query.bucket, query.after.as_deref(), &query.prefix);
    while let Some((key, entry)) = range.next() {
        let common_prefix = rolled_up(key, &query.prefix, &query.delimiter);
        if let Some(common_prefix) = common_prefix {
            let common_prefix = common_prefix.to_owned();
            range.skip_prefix(&common_prefix);
            if query
                .after
                .as_deref()
                .is_some_and(|after| common_prefix.as_str() <= after)
            {
                // Reported by an earlier page (the position is the prefix
                // itself or a key under it).
                continue;
            }
            if page.entries.len() == query.limit {
                page.more = true;
                break;
            }
            page.entries.push(Listed::CommonPrefix(common_prefix));
            continue;
        }
        let IndexValue::Object {
            size,
            etag,
            last_modified_ms,
            ..
        } = entry.value
        else {
            unreachable!("a range returns live objects only");
        };
        if page.entries.len() == query.limit {
            page.more = true;
            break;
        }
        page.entries.push(Listed::Object {
            key: key.to_owned(),
            size,
            etag,
            last_modified_ms,
        });
    }
    page
}

/// The common prefix `key` rolls up into: the key up to and including the
/// first `delimiter` after `prefix`, or `None` (no delimiter, or none in
/// the rest of the key).
#[must_use]
pub fn rolled_up<'a>(key: &'a str, prefix: &str, delimiter: &str) -> Option<&'a str> {
    if delimiter.is_empty() {
        return None;
    }
    let rest = key.get(prefix.len()..)?;
    let at = rest.find(delimiter)?;
    Some(&key[..prefix.len() + at + delimiter.len()])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::index::{Index, IndexEntry, IndexKey};
    use crate::storage::location::Location;

    fn object(seq: u64, size: u64) -> IndexEntry {
        IndexEntry {
            seq,
            value: IndexValue::Object {
                commit: Location {
                    segment: 1,
                    offset: seq * 4096,
                    len: 100,
                },
                first_segment: 1,
                size,
                etag: Etag {
                    md5: [7; 16],
                    part_count: 0,
                },
                last_modified_ms: 1000,
            },
        }
    }

    fn index_with(keys: &[&str]) -> (tempfile::TempDir, Index) {
        let dir = tempfile::tempdir().unwrap();
        let (mut index, _) = Index::open(dir.path()).unwrap();
        for (seq, key) in keys.iter().enumerate() {
            index.insert(IndexKey::new("b", key), object(seq as u64 + 1, 1));
        }
        index.insert(IndexKey::new("other", "a/x"), object(100, 1));
        (dir, index)
    }

    fn positions(page: &ListPage) -> Vec<String> {
        page.entries
            .iter()
            .map(|entry| match entry {
                Listed::Object { key, .. } => key.clone(),
                Listed::CommonPrefix(prefix) => format!("P:{prefix}"),
            })
            .collect()
    }

    fn query(prefix: &str, delimiter: &str, after: Option<&str>, limit: usize) -> ListQuery {
        ListQuery {
            bucket: "b".into(),
            prefix: prefix.into(),
            delimiter: delimiter.into(),
            after: after.map(str::to_owned),
            limit,
        }
    }

    const KEYS: &[&str] = &[
        "a/1",
        "a/2",
        "a/b/3",
        "a0",
        "b",
        "c/x/y",
        "c/z",
        "d//e",
        "photos/2024/a.jpg",
        "z",
    ];

    #[test]
    fn without_delimiter_lists_every_key_in_order() {
        let (_dir, index) = index_with(KEYS);
        let page = list_index(&index, &query("", "", None, 1000));
        assert_eq!(positions(&page), KEYS);
        assert!(!page.more);
        let page = list_index(&index, &query("c/", "", None, 1000));
        assert_eq!(positions(&page), ["c/x/y", "c/z"]);
    }

    #[test]
    fn delimiter_rolls_keys_up_into_common_prefixes() {
        let (_dir, index) = index_with(KEYS);
        let page = list_index(&index, &query("", "/", None, 1000));
        assert_eq!(
            positions(&page),
            ["P:a/", "a0", "b", "P:c/", "P:d/", "P:photos/", "z"]
        );
        let page = list_index(&index, &query("a/", "/", None, 1000));
        assert_eq!(positions(&page), ["a/1", "a/2", "P:a/b/"]);
        let page = list_index(&index, &query("d/", "/", None, 1000));
        assert_eq!(positions(&page), ["P:d//"]);
        // A delimiter of several characters, and one no key holds.
        let page = list_index(&index, &query("", "//", None, 1000));
        assert!(positions(&page).contains(&"P:d//".to_owned()));
        let page = list_index(&index, &query("", "#", None, 1000));
        assert_eq!(page.entries.len(), KEYS.len());
    }

    #[test]
    fn pages_continue_after_the_last_entry_of_any_kind() {
        let (_dir, index) = index_with(KEYS);
        let mut after = None;
        let mut all = Vec::new();
        loop {
            let page = list_index(&index, &query("", "/", after.as_deref(), 2));
            all.extend(positions(&page));
            if !page.more {
                break;
            }
            after = Some(page.entries.last().unwrap().position().to_owned());
        }
        assert_eq!(all, ["P:a/", "a0", "b", "P:c/", "P:d/", "P:photos/", "z"]);
        // A position inside a common prefix has passed it.
        let page = list_index(&index, &query("", "/", Some("c/x/y"), 1000));
        assert_eq!(positions(&page), ["P:d/", "P:photos/", "z"]);
    }

    #[test]
    fn limit_zero_and_exact_fit_report_more_correctly() {
        let (_dir, index) = index_with(KEYS);
        let page = list_index(&index, &query("", "", None, 0));
        assert!(page.entries.is_empty());
        assert!(page.more);
        let page = list_index(&index, &query("", "", None, KEYS.len()));
        assert_eq!(page.entries.len(), KEYS.len());
        assert!(!page.more);
        let page = list_index(&index, &query("", "", None, KEYS.len() - 1));
        assert!(page.more);
    }

    #[test]
    fn rolled_up_finds_the_first_delimiter_after_the_prefix() {
        assert_eq!(rolled_up("a/b/c", "", "/"), Some("a/"));
        assert_eq!(rolled_up("a/b/c", "a/", "/"), Some("a/b/"));
        assert_eq!(rolled_up("a/b/c", "a/b/", "/"), None);
        assert_eq!(rolled_up("a/b", "", ""), None);
        assert_eq!(rolled_up("x--y--z", "x", "--"), Some("x--"));
        assert_eq!(rolled_up("é/ü", "", "/"), Some("é/"));
    }
}
