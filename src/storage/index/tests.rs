//! Tests of the object index: a model test against a `BTreeMap`, listing
//! pagination, every crash point, damage detection and the statistics.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use super::manifest::Manifest;
use super::merge::{MergeIter, Source};
use super::*;

// ---------------------------------------------------------------------------
// Helpers

/// splitmix64: small, seedable, good enough to pick operations.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, bound: usize) -> usize {
        usize::try_from(self.next() % bound as u64).expect("below a usize")
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

fn object(seq: u64, size: u64) -> IndexEntry {
    IndexEntry {
        seq,
        value: IndexValue::Object {
            commit: Location {
                segment: 1 + u32::try_from(seq % 7).expect("small"),
                offset: seq * 4096,
                len: 512,
            },
            first_segment: 1 + u32::try_from(seq % 5)
                .expect("small")
                .min(u32::try_from(seq % 7).expect("small")),
            size,
            etag: Etag {
                md5: [u8::try_from(seq % 251).expect("small"); 16],
                part_count: u32::try_from(seq % 3).expect("small"),
            },
            last_modified_ms: i64::try_from(seq).expect("small") * 1000 - 5,
        },
    }
}

fn tombstone(seq: u64) -> IndexEntry {
    IndexEntry {
        seq,
        value: IndexValue::Tombstone,
    }
}

fn checkpoint_at(offset: u64, next_seq: u64) -> Checkpoint {
    Checkpoint {
        position: SegmentPosition { segment: 1, offset },
        next_seq,
    }
}

fn open(dir: &Path) -> (Index, Checkpoint) {
    Index::open(dir).expect("open")
}

fn expect_corrupted(dir: &Path) -> String {
    match Index::open(dir) {
        Err(IndexError::Corrupted(what)) => what,
        Err(other) => panic!("expected Corrupted, got {other}"),
        Ok(_) => panic!("damaged index opened"),
    }
}

fn file_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

fn live_keys(index: &Index, bucket: &str, start_after: Option<&str>, prefix: &str) -> Vec<String> {
    index
        .range(bucket, start_after, prefix)
        .map(|(key, _)| key.to_owned())
        .collect()
}

/// A listing with delimiter `/`: keys, and common prefixes (ending in `/`)
/// each skipped over as soon as it is seen.
fn delimited(index: &Index, bucket: &str, start_after: Option<&str>, prefix: &str) -> Vec<String> {
    let mut listing = index.range(bucket, start_after, prefix);
    let mut items = Vec::new();
    while let Some((key, _)) = listing.next() {
        match key[prefix.len()..].find('/') {
            Some(slash) => {
                let common_prefix = &key[..=prefix.len() + slash];
                listing.skip_prefix(common_prefix);
                items.push(common_prefix.to_owned());
            }
            None => items.push(key.to_owned()),
        }
    }
    items
}

// ---------------------------------------------------------------------------
// Keys and values

#[test]
fn encoded_keys_sort_by_bucket_then_key_bytes() {
    // Goal: inside one bucket, encoded order is UTF-8 binary order, and the
    // keys of two buckets never interleave, even when one bucket name is a
    // prefix of the other. Method: sort encoded keys and compare.
    let keys = ["", "a", "a\u{7f}", "a\u{80}", "ab", "é", "\u{10ffff}", "z"];
    let buckets = ["ab", "abc", "b"];
    let mut encoded: Vec<IndexKey> = buckets
        .iter()
        .flat_map(|bucket| keys.iter().map(move |key| IndexKey::new(bucket, key)))
        .collect();
    encoded.sort();
    for bucket in buckets {
        let positions: Vec<usize> = encoded
            .iter()
            .enumerate()
            .filter(|(_, key)| key.bucket() == bucket)
            .map(|(position, _)| position)
            .collect();
        assert_eq!(positions.len(), keys.len());
        assert_eq!(
            positions.last().unwrap() - positions[0] + 1,
            keys.len(),
            "bucket {bucket} interleaved"
        );
        let in_order: Vec<&str> = positions
            .iter()
            .map(|&position| encoded[position].key())
            .collect();
        let mut expected = keys.to_vec();
        expected.sort_unstable();
        assert_eq!(in_order, expected);
    }
    let key = IndexKey::new("photos", "2024/a.jpg");
    assert_eq!(key.bucket(), "photos");
    assert_eq!(key.key(), "2024/a.jpg");
    assert_eq!(&key.as_bytes()[..7], b"\x06photos");
}

#[test]
fn longest_bucket_and_key_fit() {
    let bucket = "b".repeat(limits::BUCKET_NAME_BYTES_MAX);
    let key = "k".repeat(limits::KEY_BYTES_MAX);
    let encoded = IndexKey::new(&bucket, &key);
    assert_eq!(encoded.as_bytes().len(), ENCODED_KEY_BYTES_MAX);
    assert_eq!(encoded.key(), key);
}

#[test]
#[should_panic(expected = "key of 1025 bytes")]
fn key_over_the_limit_is_a_broken_invariant() {
    let _ = IndexKey::new("b", &"k".repeat(limits::KEY_BYTES_MAX + 1));
}

#[test]
fn etag_shows_as_s3_does() {
    let mut md5 = [0; 16];
    md5[0] = 0xd4;
    md5[15] = 0x7e;
    let simple = Etag { md5, part_count: 0 };
    assert_eq!(simple.to_string(), "d400000000000000000000000000007e");
    let multipart = Etag {
        md5,
        part_count: 12,
    };
    assert_eq!(multipart.to_string(), "d400000000000000000000000000007e-12");
}

// ---------------------------------------------------------------------------
// Model test

const MODEL_BUCKETS: [&str; 4] = [
    "ab",
    "abc",
    "b",
    "bucket-with-a-name-that-is-exactly-sixty-three-bytes-long-xxxxx",
];

/// Keys chosen to sit on the boundaries: the empty key, keys that are
/// prefixes of others, bytes around 0x7f/0x80, multi-byte and maximal
/// code points, a key of the maximal length.
fn model_keys() -> Vec<String> {
    let mut keys: Vec<String> = [
        "",
        "a",
        "a/",
        "a/b",
        "a/b/c",
        "a/bc",
        "a0",
        "ab",
        "abc",
        "a\u{7f}",
        "a\u{80}",
        "a\u{7f}z",
        "a\u{80}z",
        "\u{7f}",
        "\u{80}",
        "\u{1}",
        "a\u{1}",
        "é",
        "e\u{301}",
        "日本",
        "日本語",
        "\u{ffff}",
        "\u{10ffff}",
        " ",
        "a b",
        "z",
        "zz",
    ]
    .iter()
    .map(|key| (*key).to_owned())
    .collect();
    keys.push("k".repeat(limits::KEY_BYTES_MAX));
    keys.push("k".repeat(limits::KEY_BYTES_MAX - 1));
    keys
}

const MODEL_PREFIXES: [&str; 14] = [
    "", "a", "a/", "a/b", "ab", "a\u{7f}", "a\u{80}", "\u{7f}", "\u{80}", "日", "é", "z", "q", "kk",
];

enum Pending {
    Flush(FlushJob),
    Merge(MergeJob),
}

struct Model {
    dir: tempfile::TempDir,
    index: Option<Index>,
    /// Every record "appended to the segments", in order: a record's
    /// position is its index here, so a checkpoint's offset says where
    /// replay starts.
    log: Vec<(IndexKey, IndexEntry)>,
    /// The newest entry of every key ever written, tombstones included.
    reference: BTreeMap<(String, String), IndexEntry>,
    next_seq: u64,
    pending: Option<Pending>,
}

impl Model {
    fn new() -> Model {
        let dir = tempfile::tempdir().unwrap();
        let (index, checkpoint) = open(dir.path());
        assert_eq!(checkpoint, Checkpoint::START);
        Model {
            dir,
            index: Some(index),
            log: Vec::new(),
            reference: BTreeMap::new(),
            next_seq: 1,
            pending: None,
        }
    }

    fn index(&mut self) -> &mut Index {
        self.index.as_mut().unwrap()
    }

    fn checkpoint(&self) -> Checkpoint {
        checkpoint_at(self.log.len() as u64, self.next_seq)
    }

    fn write(&mut self, bucket: &str, key: &str, entry: IndexEntry) {
        let index_key = IndexKey::new(bucket, key);
        assert!(
            self.index().insert(index_key.clone(), entry),
            "fresh record ignored"
        );
        self.log.push((index_key, entry));
        self.reference
            .insert((bucket.to_owned(), key.to_owned()), entry);
        self.next_seq += 1;
    }

    fn finish_pending(&mut self) {
        match self.pending.take() {
            None => {}
            Some(Pending::Flush(job)) => {
                let outcome = job.execute();
                self.index().finish_flush(outcome).unwrap();
            }
            Some(Pending::Merge(job)) => {
                let outcome = job.execute();
                self.index().finish_merge(outcome).unwrap();
            }
        }
    }

    /// A crash: the index is dropped (a pending job's file work done or
    /// not, as `execute_pending` says), reopened, and the log replayed
    /// from the checkpoint as the shard's recovery would.
    fn crash_and_recover(&mut self, execute_pending: bool) {
        if let Some(pending) = self.pending.take()
            && execute_pending
        {
            match pending {
                Pending::Flush(job) => drop(job.execute().unwrap()),
                Pending::Merge(job) => drop(job.execute().unwrap()),
            }
        }
        self.index = None;
        let (mut index, checkpoint) = open(self.dir.path());
        let replay_from = usize::try_from(checkpoint.position.offset).unwrap();
        assert!(replay_from <= self.log.len());
        assert!(checkpoint.next_seq <= self.next_seq);
        for (key, entry) in &self.log[replay_from..] {
            assert!(index.insert(key.clone(), *entry), "replayed record ignored");
        }
        self.index = Some(index);
    }

    fn check(&mut self, rng: &mut Rng, keys: &[String]) {
        let index = self.index.as_ref().unwrap();
        for bucket in MODEL_BUCKETS {
            let mut expected_stats = BucketStats::default();
            for key in keys {
                let expected = self
                    .reference
                    .get(&(bucket.to_owned(), key.clone()))
                    .copied();
                let actual = index.get(bucket, key);
                match expected {
                    Some(entry) if entry.is_tombstone() => {
                        assert!(
                            actual.is_none() || actual == Some(entry),
                            "{bucket}/{key:?}: {actual:?}"
                        );
                    }
                    _ => assert_eq!(actual, expected, "{bucket}/{key:?}"),
                }
                let expected_live = expected.filter(|entry| !entry.is_tombstone());
                assert_eq!(
                    index.get_live(bucket, key),
                    expected_live,
                    "{bucket}/{key:?}"
                );
                if let Some(size) = expected_live.and_then(|entry| entry.object_size()) {
                    expected_stats.object_count += 1;
                    expected_stats.bytes += size;
                }
            }
            assert_eq!(
                index.bucket_stats(bucket),
                expected_stats,
                "stats of {bucket}"
            );
            assert_eq!(
                index.bucket_is_empty(bucket),
                expected_stats.object_count == 0
            );
        }
        self.check_listing(rng, keys);
    }

    /// One random listing: whole, in random pages, and with a delimiter.
    fn check_listing(&self, rng: &mut Rng, keys: &[String]) {
        let index = self.index.as_ref().unwrap();
        let bucket = *rng.pick(&MODEL_BUCKETS);
        let prefix = *rng.pick(&MODEL_PREFIXES);
        let start_after = match rng.below(4) {
            0 => None,
            1 => Some("\u{10ffff}\u{10ffff}".to_owned()),
            _ => Some(rng.pick(keys).clone()),
        };
        let expected: Vec<(String, IndexEntry)> = self
            .reference
            .iter()
            .filter(|((entry_bucket, key), entry)| {
                entry_bucket == bucket
                    && key.starts_with(prefix)
                    && start_after.as_ref().is_none_or(|after| key > after)
                    && !entry.is_tombstone()
            })
            .map(|((_, key), entry)| (key.clone(), *entry))
            .collect();
        let actual: Vec<(String, IndexEntry)> = index
            .range(bucket, start_after.as_deref(), prefix)
            .map(|(key, entry)| (key.to_owned(), entry))
            .collect();
        assert_eq!(
            actual, expected,
            "range {bucket} after {start_after:?} prefix {prefix:?}"
        );
        let page_len = 1 + rng.below(4);
        let mut paged: Vec<(String, IndexEntry)> = Vec::new();
        let mut after = start_after.clone();
        loop {
            let page: Vec<(String, IndexEntry)> = index
                .range(bucket, after.as_deref(), prefix)
                .take(page_len)
                .map(|(key, entry)| (key.to_owned(), entry))
                .collect();
            let Some((last, _)) = page.last() else { break };
            assert!(
                after.as_ref().is_none_or(|after| page[0].0 > *after),
                "page does not advance"
            );
            after = Some(last.clone());
            paged.extend(page);
        }
        assert_eq!(
            paged, expected,
            "paged range {bucket} after {start_after:?} prefix {prefix:?}"
        );
        // The same listing with delimiter "/", rolled up as S3 does.
        let mut expected_rolled: Vec<String> = Vec::new();
        for (key, _) in &expected {
            let item = match key[prefix.len()..].find('/') {
                Some(slash) => &key[..=prefix.len() + slash],
                None => key.as_str(),
            };
            if expected_rolled.last().is_none_or(|last| last != item) {
                expected_rolled.push(item.to_owned());
            }
        }
        assert_eq!(
            delimited(index, bucket, start_after.as_deref(), prefix),
            expected_rolled,
            "delimited range {bucket} after {start_after:?} prefix {prefix:?}"
        );
    }

    #[allow(clippy::too_many_lines)]
    fn step(&mut self, rng: &mut Rng, keys: &[String]) {
        let bucket = *rng.pick(&MODEL_BUCKETS);
        let key = rng.pick(keys).clone();
        match rng.below(100) {
            0..40 => {
                let size = match rng.below(4) {
                    0 => 0,
                    1 => limits::OBJECT_BYTES_MAX,
                    _ => rng.next() % 100_000,
                };
                let entry = object(self.next_seq, size);
                self.write(bucket, &key, entry);
            }
            40..55 => {
                let entry = tombstone(self.next_seq);
                self.write(bucket, &key, entry);
            }
            55..60 => {
                // A stale record (replayed, or reordered) must be ignored.
                // Only against live objects: a tombstone may be forgotten.
                let current = self
                    .reference
                    .get(&(bucket.to_owned(), key.clone()))
                    .copied();
                if let Some(current) = current.filter(|entry| !entry.is_tombstone()) {
                    let seq = current.seq - u64::from(rng.below(2) == 0);
                    let stale = if rng.below(2) == 0 {
                        tombstone(seq)
                    } else {
                        object(seq, 7)
                    };
                    assert!(
                        !self.index().insert(IndexKey::new(bucket, &key), stale),
                        "stale record taken"
                    );
                }
            }
            60..72 => {
                self.finish_pending();
                let checkpoint = self.checkpoint();
                self.index().flush(checkpoint).unwrap();
            }
            72..76 => {
                if self.pending.is_none() {
                    let checkpoint = self.checkpoint();
                    let job = self.index().start_flush(checkpoint).unwrap();
                    self.pending = Some(Pending::Flush(job));
                }
            }
            76..82 => self.finish_pending(),
            82..87 => {
                self.finish_pending();
                self.index().merge(MergeScope::Tiered).unwrap();
            }
            87..89 => {
                self.finish_pending();
                self.index().merge(MergeScope::All).unwrap();
            }
            89..92 => {
                if self.pending.is_none() {
                    let scope = if rng.below(2) == 0 {
                        MergeScope::Tiered
                    } else {
                        MergeScope::All
                    };
                    if let Some(job) = self.index().start_merge(scope).unwrap() {
                        self.pending = Some(Pending::Merge(job));
                    }
                }
            }
            92..94 => {
                let execute_pending = rng.below(2) == 0;
                self.crash_and_recover(execute_pending);
            }
            _ => {
                // A clean restart: flush everything, reopen, nothing to replay.
                self.finish_pending();
                let checkpoint = self.checkpoint();
                self.index().flush(checkpoint).unwrap();
                self.index = None;
                let (index, reopened) = open(self.dir.path());
                assert_eq!(reopened, checkpoint);
                assert_eq!(index.memtable_len(), 0);
                self.index = Some(index);
            }
        }
        if self.index().run_count() > 12 {
            self.finish_pending();
            self.index().merge(MergeScope::Tiered).unwrap();
        }
    }
}

/// Prints the seed of a failing model run, so it can be replayed with
/// `INDEX_MODEL_SEED`.
struct SeedGuard {
    seed: u64,
    step: usize,
}

impl Drop for SeedGuard {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "index model test failed: seed {} at step {} (replay with INDEX_MODEL_SEED={})",
                self.seed, self.step, self.seed
            );
        }
    }
}

fn run_model(seed: u64, steps: usize) {
    let mut guard = SeedGuard { seed, step: 0 };
    let mut rng = Rng(seed);
    let keys = model_keys();
    let mut model = Model::new();
    for step in 0..steps {
        guard.step = step;
        model.step(&mut rng, &keys);
        model.check(&mut rng, &keys);
    }
    model.finish_pending();
    model.crash_and_recover(false);
    model.check(&mut rng, &keys);
}

#[test]
fn model_random_operations_match_a_btreemap() {
    // Goal: every observable answer of the index (get, listing, paging,
    // statistics) equals that of a plain map of newest versions, across
    // flushes (inline and split), merges (tiered and full, inline and
    // split), clean restarts and crashes at any job stage with recovery by
    // replay from the checkpoint. Method: seeded random operations over a
    // few buckets and boundary keys, checking everything after every step.
    let steps = std::env::var("INDEX_MODEL_STEPS").map_or(1500, |steps| steps.parse().unwrap());
    if let Ok(seed) = std::env::var("INDEX_MODEL_SEED") {
        run_model(seed.parse().unwrap(), steps);
        return;
    }
    for seed in 1..=6 {
        run_model(seed, steps);
    }
}

// ---------------------------------------------------------------------------
// Listing

#[test]
fn pages_of_1000_concatenate_to_the_whole_listing() {
    // Goal: listing with start_after and prefix over memtable and three
    // runs, in pages of 1000, yields exactly the full listing, with
    // overwritten versions once and deleted keys not at all. Method: 10,000
    // keys interleaved over four sources, some overwritten or deleted in
    // newer sources.
    let dir = tempfile::tempdir().unwrap();
    let (mut index, _) = open(dir.path());
    let key_of = |number: usize| match number % 3 {
        0 => format!("photos/2024/img-{number:05}.jpg"),
        1 => format!("photos/2025/img-{number:05}.jpg"),
        _ => format!("docs/{number:05}.txt"),
    };
    let mut expected: BTreeMap<String, IndexEntry> = BTreeMap::new();
    let mut seq = 1;
    for source in 0..4 {
        for number in (0..10_000).filter(|number| number % 4 == source) {
            let entry = object(seq, number as u64);
            index.insert(IndexKey::new("bucket", &key_of(number)), entry);
            expected.insert(key_of(number), entry);
            seq += 1;
        }
        // Newer versions and deletions of keys in older sources.
        if source > 0 {
            for number in (0..10_000).filter(|number| number % 4 == source - 1 && number % 10 == 0)
            {
                let entry = if number % 20 == 0 {
                    tombstone(seq)
                } else {
                    object(seq, 1)
                };
                index.insert(IndexKey::new("bucket", &key_of(number)), entry);
                if entry.is_tombstone() {
                    expected.remove(&key_of(number));
                } else {
                    expected.insert(key_of(number), entry);
                }
                seq += 1;
            }
        }
        if source < 3 {
            index.flush(checkpoint_at(seq, seq)).unwrap();
        }
        // Another bucket around it, which must never show up.
        index.insert(IndexKey::new("bucke", &key_of(source)), object(seq, 1));
        index.insert(
            IndexKey::new("bucket2", &key_of(source)),
            object(seq + 1, 1),
        );
        seq += 2;
    }
    assert_eq!(index.run_count(), 3);
    assert!(index.memtable_len() > 0);
    for prefix in ["", "photos/", "photos/2024/img-0", "docs/0999", "nothing"] {
        let whole: Vec<(String, IndexEntry)> = index
            .range("bucket", None, prefix)
            .map(|(key, entry)| (key.to_owned(), entry))
            .collect();
        let wanted: Vec<(String, IndexEntry)> = expected
            .iter()
            .filter(|(key, _)| key.starts_with(prefix))
            .map(|(key, entry)| (key.clone(), *entry))
            .collect();
        assert_eq!(whole, wanted, "prefix {prefix:?}");
        let mut paged = Vec::new();
        let mut start_after: Option<String> = None;
        loop {
            let page: Vec<(String, IndexEntry)> = index
                .range("bucket", start_after.as_deref(), prefix)
                .take(1000)
                .map(|(key, entry)| (key.to_owned(), entry))
                .collect();
            assert!(page.len() <= 1000);
            let Some((last, _)) = page.last() else { break };
            assert!(
                start_after.as_ref().is_none_or(|after| page[0].0 > *after),
                "page does not advance"
            );
            start_after = Some(last.clone());
            paged.extend(page);
        }
        assert_eq!(paged, wanted, "paged, prefix {prefix:?}");
    }
    assert_eq!(
        delimited(&index, "bucket", None, ""),
        vec!["docs/", "photos/"]
    );
    assert_eq!(
        delimited(&index, "bucket", None, "photos/"),
        vec!["photos/2024/", "photos/2025/"]
    );
    assert_eq!(
        delimited(&index, "bucket", Some("photos/2024/z"), "photos/"),
        vec!["photos/2025/"]
    );
    // start_after before the prefix range starts at the prefix; after it,
    // nothing.
    assert_eq!(
        live_keys(&index, "bucket", Some("a"), "docs/0000"),
        vec!["docs/00002.txt", "docs/00005.txt", "docs/00008.txt"]
    );
    assert!(live_keys(&index, "bucket", Some("e"), "docs/").is_empty());
    assert_eq!(
        live_keys(&index, "bucket", Some("docs/00002.txt"), "docs/0000"),
        vec!["docs/00005.txt", "docs/00008.txt"]
    );
}

#[test]
fn skip_prefix_lands_exactly_on_the_next_key() {
    // Goal: skipping a common prefix repositions every source at the first
    // key after it, whether that key and the skipped ones sit in the
    // memtable or in a run. Method: every placement of six keys, each
    // either flushed to the one run or left in the memtable.
    let keys = ["a/", "a/b", "a/\u{10ffff}", "a0", "a00", "b"];
    for placement in 0..1u32 << keys.len() {
        let dir = tempfile::tempdir().unwrap();
        let (mut index, _) = open(dir.path());
        let in_run = |position: usize| placement & (1 << position) != 0;
        for (position, key) in keys.iter().enumerate() {
            if in_run(position) {
                let seq = position as u64 + 1;
                index.insert(IndexKey::new("b", key), object(seq, 1));
            }
        }
        index.flush(checkpoint_at(10, 10)).unwrap();
        for (position, key) in keys.iter().enumerate() {
            if !in_run(position) {
                let seq = position as u64 + 10;
                index.insert(IndexKey::new("b", key), object(seq, 1));
            }
        }
        assert_eq!(
            delimited(&index, "b", None, ""),
            vec!["a/", "a0", "a00", "b"],
            "placement {placement:06b}"
        );
        assert_eq!(
            delimited(&index, "b", None, "a"),
            vec!["a/", "a0", "a00"],
            "placement {placement:06b}"
        );
    }
}

#[test]
fn flush_and_merge_run_while_reads_and_writes_go_on() {
    // Goal: while a flush or merge job is out (on a blocking thread in the
    // shard), reads see the frozen memtable and inputs, and inserts land
    // in the new memtable. Method: interleave by hand.
    let dir = tempfile::tempdir().unwrap();
    let (mut index, _) = open(dir.path());
    index.insert(IndexKey::new("b", "one"), object(1, 10));
    let job = index.start_flush(checkpoint_at(1, 2)).unwrap();
    assert!(!index.needs_flush());
    assert_eq!(index.get("b", "one"), Some(object(1, 10)));
    index.insert(IndexKey::new("b", "two"), object(2, 20));
    index.insert(IndexKey::new("b", "one"), tombstone(3));
    assert_eq!(live_keys(&index, "b", None, ""), vec!["two"]);
    // The job is Send: it can go to a blocking thread.
    let outcome = std::thread::spawn(move || job.execute()).join().unwrap();
    index.finish_flush(outcome).unwrap();
    assert_eq!(index.run_count(), 1);
    assert_eq!(index.get("b", "one"), Some(tombstone(3)));
    assert_eq!(
        index.bucket_stats("b"),
        BucketStats {
            object_count: 1,
            bytes: 20
        }
    );
    index.flush(checkpoint_at(3, 4)).unwrap();
    let job = index.start_merge(MergeScope::All).unwrap().unwrap();
    index.insert(IndexKey::new("b", "three"), object(4, 30));
    assert_eq!(live_keys(&index, "b", None, ""), vec!["three", "two"]);
    let outcome = std::thread::spawn(move || job.execute()).join().unwrap();
    index.finish_merge(outcome).unwrap();
    assert_eq!(index.run_count(), 1);
    // The full merge dropped the tombstone.
    assert_eq!(index.get("b", "one"), None);
    assert_eq!(live_keys(&index, "b", None, ""), vec!["three", "two"]);
    assert_eq!(file_names(dir.path()), vec!["MANIFEST", "run-00000003"]);
}

#[test]
fn a_failed_job_leaves_the_index_readable_and_stops_writes() {
    // Goal: fail-stop (STYLE.md §2): after a failed flush the index serves
    // reads, including the frozen entries, and refuses further jobs.
    let dir = tempfile::tempdir().unwrap();
    let (mut index, _) = open(dir.path());
    index.insert(IndexKey::new("b", "k"), object(1, 5));
    let job = index.start_flush(checkpoint_at(1, 2)).unwrap();
    drop(job);
    let error = index.finish_flush(Err(IndexError::Io(std::io::Error::other("disk gone"))));
    assert!(matches!(error, Err(IndexError::Io(_))));
    assert_eq!(index.get("b", "k"), Some(object(1, 5)));
    assert!(matches!(
        index.start_flush(checkpoint_at(1, 2)),
        Err(IndexError::PreviousIo)
    ));
    assert!(matches!(
        index.start_merge(MergeScope::All),
        Err(IndexError::PreviousIo)
    ));
    assert!(!index.needs_flush());
    assert!(!index.needs_merge());
}

#[test]
fn tiered_merges_take_the_newest_runs_and_keep_their_tombstones() {
    let dir = tempfile::tempdir().unwrap();
    let (mut index, _) = open(dir.path());
    let mut seq = 1;
    // A big oldest run, then small ones.
    for number in 0..200 {
        index.insert(
            IndexKey::new("b", &format!("base-{number:04}")),
            object(seq, 1),
        );
        seq += 1;
    }
    index.flush(checkpoint_at(seq, seq)).unwrap();
    for round in 0..RUN_COUNT_MERGE {
        index.insert(
            IndexKey::new("b", &format!("base-{round:04}")),
            tombstone(seq),
        );
        index.insert(
            IndexKey::new("b", &format!("new-{round}")),
            object(seq + 1, 1),
        );
        seq += 2;
        index.flush(checkpoint_at(seq, seq)).unwrap();
    }
    assert!(index.needs_merge());
    assert!(index.merge(MergeScope::Tiered).unwrap());
    assert_eq!(index.run_count(), 2, "the small runs merged, not the base");
    assert!(!index.needs_merge());
    // The tombstones still shadow the base.
    assert_eq!(index.runs[1].entries().len(), 2 * RUN_COUNT_MERGE);
    assert_eq!(index.get("b", "base-0000"), Some(tombstone(201)));
    assert_eq!(index.bucket_stats("b").object_count, 200);
    assert!(index.merge(MergeScope::All).unwrap());
    assert_eq!(index.runs[0].entries().len(), 200);
    assert_eq!(index.get("b", "base-0000"), None);
}

#[test]
fn needs_flush_follows_the_entry_count() {
    let dir = tempfile::tempdir().unwrap();
    let (mut index, _) = open(dir.path());
    let count = u64::try_from(MEMTABLE_ENTRY_COUNT_FLUSH).unwrap();
    for seq in 1..count {
        index.insert(IndexKey::new("b", &seq.to_string()), tombstone(seq));
    }
    assert!(!index.needs_flush());
    index.insert(IndexKey::new("b", "last"), tombstone(count));
    assert!(index.needs_flush());
    index.flush(checkpoint_at(count, count + 1)).unwrap();
    assert!(!index.needs_flush());
    // Tombstones into an empty index shadow nothing: no run at all.
    assert_eq!(index.run_count(), 0);
    assert_eq!(file_names(dir.path()), vec!["MANIFEST"]);
}

// ---------------------------------------------------------------------------
// Statistics

#[test]
fn stats_stay_exact_under_overwrite_delete_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let (mut index, _) = open(dir.path());
    let stats = |object_count, bytes| BucketStats {
        object_count,
        bytes,
    };
    index.insert(IndexKey::new("b", "x"), object(1, 10));
    index.insert(IndexKey::new("b", "y"), object(2, 20));
    index.insert(IndexKey::new("c", "x"), object(3, 7));
    assert_eq!(index.bucket_stats("b"), stats(2, 30));
    index.insert(IndexKey::new("b", "x"), object(4, 5));
    assert_eq!(index.bucket_stats("b"), stats(2, 25));
    index.insert(IndexKey::new("b", "y"), tombstone(5));
    index.insert(IndexKey::new("b", "never-existed"), tombstone(6));
    assert_eq!(index.bucket_stats("b"), stats(1, 5));
    // Stale and duplicate records change nothing.
    assert!(!index.insert(IndexKey::new("b", "x"), object(4, 999)));
    assert!(!index.insert(IndexKey::new("b", "x"), tombstone(2)));
    assert_eq!(index.bucket_stats("b"), stats(1, 5));
    index.flush(checkpoint_at(6, 7)).unwrap();
    drop(index);
    let (mut index, checkpoint) = open(dir.path());
    assert_eq!(checkpoint, checkpoint_at(6, 7));
    assert_eq!(index.bucket_stats("b"), stats(1, 5));
    assert_eq!(index.bucket_stats("c"), stats(1, 7));
    // Overwrite and delete what now lives only in a run.
    index.insert(IndexKey::new("b", "x"), object(7, 100));
    assert_eq!(index.bucket_stats("b"), stats(1, 100));
    index.insert(IndexKey::new("c", "x"), tombstone(8));
    assert!(index.bucket_is_empty("c"));
    assert_eq!(index.bucket_stats("c"), stats(0, 0));
    // A crash now: the manifest has the stats at its checkpoint and replay
    // brings them up to date.
    drop(index);
    let (mut index, checkpoint) = open(dir.path());
    assert_eq!(index.bucket_stats("b"), stats(1, 5));
    index.insert(IndexKey::new("b", "x"), object(7, 100));
    index.insert(IndexKey::new("c", "x"), tombstone(8));
    assert_eq!(index.bucket_stats("b"), stats(1, 100));
    assert!(index.bucket_is_empty("c"));
    index.flush(checkpoint_at(8, 9)).unwrap();
    assert!(checkpoint.position < index.checkpoint().position);
    index.merge(MergeScope::All).unwrap();
    drop(index);
    let (index, _) = open(dir.path());
    assert_eq!(index.bucket_stats("b"), stats(1, 100));
    assert!(index.bucket_is_empty("c"));
    assert!(index.bucket_is_empty("never-seen"));
}

// ---------------------------------------------------------------------------
// Crash points

/// An index with two runs (keys `a`, `b`; then `c` and a new `a`) and a
/// memtable entry that was never flushed.
fn two_run_index(dir: &Path) -> Index {
    let (mut index, _) = open(dir);
    index.insert(IndexKey::new("b", "a"), object(1, 1));
    index.insert(IndexKey::new("b", "b"), object(2, 2));
    index.flush(checkpoint_at(2, 3)).unwrap();
    index.insert(IndexKey::new("b", "c"), object(3, 3));
    index.insert(IndexKey::new("b", "a"), object(4, 4));
    index.flush(checkpoint_at(4, 5)).unwrap();
    index.insert(IndexKey::new("b", "d"), object(5, 5));
    index
}

fn read_files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    file_names(dir)
        .into_iter()
        .map(|name| {
            let bytes = std::fs::read(dir.join(&name)).unwrap();
            (name, bytes)
        })
        .collect()
}

fn assert_two_run_content(index: &Index) {
    assert_eq!(live_keys(index, "b", None, ""), vec!["a", "b", "c"]);
    assert_eq!(index.get("b", "a"), Some(object(4, 4)));
    assert_eq!(
        index.bucket_stats("b"),
        BucketStats {
            object_count: 3,
            bytes: 9
        }
    );
}

#[test]
fn crash_while_writing_leaves_tmp_files_that_open_deletes() {
    let dir = tempfile::tempdir().unwrap();
    drop(two_run_index(dir.path()));
    std::fs::write(dir.path().join("run-00000003.tmp"), b"half a run").unwrap();
    std::fs::write(dir.path().join("MANIFEST.tmp"), b"half a manifest").unwrap();
    std::fs::write(dir.path().join("notes.txt"), b"not ours").unwrap();
    let (index, checkpoint) = open(dir.path());
    assert_eq!(checkpoint, checkpoint_at(4, 5));
    assert_two_run_content(&index);
    assert_eq!(
        file_names(dir.path()),
        vec!["MANIFEST", "notes.txt", "run-00000001", "run-00000002"]
    );
}

#[test]
fn crash_in_an_empty_directory_before_the_first_manifest() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("run-00000001.tmp"), b"half a run").unwrap();
    let (index, checkpoint) = open(dir.path());
    assert_eq!(checkpoint, Checkpoint::START);
    assert_eq!(index.run_count(), 0);
    assert!(file_names(dir.path()).is_empty());
}

#[test]
fn crash_after_run_rename_before_manifest_drops_the_run() {
    // Method: run a flush job to completion, then put the old manifest
    // back: the disk then holds exactly what a crash between the run's
    // rename and the manifest's rename leaves.
    let dir = tempfile::tempdir().unwrap();
    let mut index = two_run_index(dir.path());
    let old_manifest = std::fs::read(dir.path().join("MANIFEST")).unwrap();
    index.flush(checkpoint_at(5, 6)).unwrap();
    drop(index);
    assert!(dir.path().join("run-00000003").exists());
    std::fs::write(dir.path().join("MANIFEST"), old_manifest).unwrap();
    let (index, checkpoint) = open(dir.path());
    assert_eq!(
        checkpoint,
        checkpoint_at(4, 5),
        "replay must start before the lost flush"
    );
    assert_two_run_content(&index);
    assert_eq!(
        file_names(dir.path()),
        vec!["MANIFEST", "run-00000001", "run-00000002"]
    );
}

#[test]
fn crash_during_merge_before_its_manifest_keeps_the_inputs() {
    let dir = tempfile::tempdir().unwrap();
    let mut index = two_run_index(dir.path());
    let before = read_files(dir.path());
    index.merge(MergeScope::All).unwrap();
    drop(index);
    // Before the manifest's rename: old manifest, inputs not deleted, the
    // merged run complete.
    for (name, bytes) in &before {
        std::fs::write(dir.path().join(name), bytes).unwrap();
    }
    assert!(dir.path().join("run-00000003").exists());
    let (index, _) = open(dir.path());
    assert_eq!(index.run_count(), 2);
    assert_two_run_content(&index);
    assert_eq!(
        file_names(dir.path()),
        vec!["MANIFEST", "run-00000001", "run-00000002"]
    );
}

#[test]
fn crash_during_merge_after_its_manifest_deletes_the_inputs() {
    let dir = tempfile::tempdir().unwrap();
    let mut index = two_run_index(dir.path());
    let before = read_files(dir.path());
    index.merge(MergeScope::All).unwrap();
    drop(index);
    // After the manifest's rename, before the inputs were deleted.
    for name in ["run-00000001", "run-00000002"] {
        std::fs::write(dir.path().join(name), &before[name]).unwrap();
    }
    let (index, _) = open(dir.path());
    assert_eq!(index.run_count(), 1);
    assert_two_run_content(&index);
    assert_eq!(file_names(dir.path()), vec!["MANIFEST", "run-00000003"]);
}

#[test]
fn the_manifest_is_authoritative_over_the_files_present() {
    // A complete, valid run that the manifest does not name (here: from
    // another index) is deleted, whatever its number.
    let other = tempfile::tempdir().unwrap();
    let mut other_index = two_run_index(other.path());
    other_index.flush(checkpoint_at(5, 6)).unwrap();
    drop(other_index);
    let dir = tempfile::tempdir().unwrap();
    drop(two_run_index(dir.path()));
    for name in ["run-00000003", "run-00000099"] {
        std::fs::copy(other.path().join("run-00000003"), dir.path().join(name)).unwrap();
    }
    let (index, _) = open(dir.path());
    assert_two_run_content(&index);
    assert_eq!(
        file_names(dir.path()),
        vec!["MANIFEST", "run-00000001", "run-00000002"]
    );
}

// ---------------------------------------------------------------------------
// Damage

#[test]
fn every_byte_flip_in_a_run_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    drop(two_run_index(dir.path()));
    let path = dir.path().join("run-00000002");
    let bytes = std::fs::read(&path).unwrap();
    for position in 0..bytes.len() {
        let mut damaged = bytes.clone();
        damaged[position] ^= 0x10;
        std::fs::write(&path, &damaged).unwrap();
        let what = expect_corrupted(dir.path());
        assert!(what.contains("run-00000002"), "{what}");
    }
    std::fs::write(&path, &bytes).unwrap();
    assert_two_run_content(&open(dir.path()).0);
}

#[test]
fn a_truncated_or_extended_run_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    drop(two_run_index(dir.path()));
    let path = dir.path().join("run-00000001");
    let bytes = std::fs::read(&path).unwrap();
    for len in [
        0,
        1,
        run::HEADER_BYTES - 1,
        run::HEADER_BYTES,
        bytes.len() - 1,
    ] {
        std::fs::write(&path, &bytes[..len]).unwrap();
        expect_corrupted(dir.path());
    }
    let mut longer = bytes.clone();
    longer.extend_from_slice(&[0; 8]);
    std::fs::write(&path, &longer).unwrap();
    expect_corrupted(dir.path());
}

#[test]
fn a_missing_or_swapped_run_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    drop(two_run_index(dir.path()));
    let first = std::fs::read(dir.path().join("run-00000001")).unwrap();
    let second = std::fs::read(dir.path().join("run-00000002")).unwrap();
    // A whole, valid run in the wrong place.
    std::fs::write(dir.path().join("run-00000001"), &second).unwrap();
    assert!(expect_corrupted(dir.path()).contains("not the run the manifest committed"));
    std::fs::write(dir.path().join("run-00000001"), &first).unwrap();
    std::fs::remove_file(dir.path().join("run-00000002")).unwrap();
    assert!(expect_corrupted(dir.path()).contains("missing"));
}

#[test]
fn every_bit_flip_and_truncation_of_the_manifest_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    drop(two_run_index(dir.path()));
    let path = dir.path().join("MANIFEST");
    let bytes = std::fs::read(&path).unwrap();
    for position in 0..bytes.len() {
        for bit in 0..8 {
            let mut damaged = bytes.clone();
            damaged[position] ^= 1 << bit;
            assert!(
                Manifest::decode(&damaged).is_err(),
                "bit {bit} of byte {position}"
            );
        }
    }
    for len in 0..bytes.len() {
        assert!(Manifest::decode(&bytes[..len]).is_err(), "length {len}");
    }
    let mut damaged = bytes.clone();
    damaged[20] ^= 1;
    std::fs::write(&path, &damaged).unwrap();
    assert!(expect_corrupted(dir.path()).contains("MANIFEST"));
    // Damage is not "missing": the runs are still there afterwards.
    assert_eq!(
        file_names(dir.path()),
        vec!["MANIFEST", "run-00000001", "run-00000002"]
    );
}

#[test]
fn manifest_round_trips() {
    let mut manifest = Manifest::empty();
    assert_eq!(Manifest::decode(&manifest.encode()), Ok(manifest.clone()));
    manifest.checkpoint = checkpoint_at(123_456, 789);
    manifest.next_run_number = 10;
    manifest.runs = vec![
        manifest::RunRecord {
            number: 7,
            entry_count: 3,
            archive_crc: 0xDEAD_BEEF,
        },
        manifest::RunRecord {
            number: 9,
            entry_count: 1,
            archive_crc: 1,
        },
    ];
    manifest.stats.insert(
        "a".repeat(63),
        BucketStats {
            object_count: 1,
            bytes: u64::MAX,
        },
    );
    manifest.stats.insert(
        "b".into(),
        BucketStats {
            object_count: 5,
            bytes: 0,
        },
    );
    assert_eq!(Manifest::decode(&manifest.encode()), Ok(manifest));
}

// ---------------------------------------------------------------------------
// Format

#[test]
fn run_format_is_pinned() {
    // Goal: the run layout is the one the module doc describes, and it does
    // not change under us with an rkyv upgrade: a change fails here instead
    // of misreading runs already on disk. If the change is intended, bump
    // the run format version and update the bytes below.
    assert_eq!(size_of::<run::StoredEntry>(), 80);
    let mut memtable = memtable::Memtable::default();
    memtable.insert(IndexKey::new("b", "key").bytes, object(1, 42));
    memtable.insert(IndexKey::new("b", "zz").bytes, tombstone(2));
    let source = Source::memtable(&memtable, Bound::Unbounded);
    let bytes = run::encode(MergeIter::new(vec![source], Vec::new(), false)).unwrap();
    let hex: String = bytes.iter().fold(String::new(), |mut hex, byte| {
        write!(hex, "{byte:02x}").unwrap();
        hex
    });
    assert_eq!(hex, GOLDEN_RUN_HEX);
}

/// The run above: header, the two keys and 7 bytes of padding, two
/// 80-byte entries, the 8-byte root.
const GOLDEN_RUN_HEX: &str = concat!(
    "525349445852554e0100000002000000b800000000000000717d6f4ed90f581b",
    "01626b657901627a7a00000000000000f0ffffff050000000100000000000000",
    "0000000002000000001000000000000000020000020000002a00000000000000",
    "010101010101010101010101010101010100000000000000e303000000000000",
    "a5ffffff04000000020000000000000001000000000000000000000000000000",
    "0000000000000000000000000000000000000000000000000000000000000000",
    "0000000000000000000000000000000060ffffff02000000",
);

/// The golden run above, in an aligned buffer, with `damage` applied to its
/// archive and the header rewritten to match (length and both CRCs), so
/// that only the checks past the checksums can catch the damage.
fn golden_run_damaged(damage: impl FnOnce(&mut [u8])) -> Result<(), String> {
    let mut image = fuzz_api::RunImage::new();
    for pair in GOLDEN_RUN_HEX.as_bytes().chunks(2) {
        let digit = |byte: u8| (byte as char).to_digit(16).expect("hex");
        image.push(u8::try_from(digit(pair[0]) * 16 + digit(pair[1])).expect("a byte"));
    }
    damage(&mut image[32..]);
    let record = fuzz_api::reseal_run(&mut image, 2);
    fuzz_api::read_run(&image, &record).map(|_| ())
}

#[test]
fn run_with_valid_checksums_but_unsorted_keys_is_corrupted() {
    // Regression (found by the `index_run` fuzz target): a run whose
    // checksums match but whose keys are out of order made `open` panic
    // (`assert!` in debug builds) or, in release builds, was accepted, and
    // its binary searches then missed keys. Method: turn the second key of
    // the golden run, `b`/`zz`, into `b`/`aa`, which sorts before `b`/`key`.
    assert_eq!(
        golden_run_damaged(|archive| {
            archive[7..9].copy_from_slice(b"aa");
        }),
        Err("keys not strictly increasing".to_owned())
    );
}

#[test]
fn run_with_valid_checksums_but_a_wild_pointer_is_corrupted() {
    // Regression (seen while writing the `index_run` fuzz target, whose
    // build keeps debug assertions and so ran the validation that release
    // builds skipped): release builds read runs with
    // `rkyv::access_unchecked` once the CRCs matched, so a relative pointer
    // out of the archive behind a matching CRC was an out-of-bounds read. Method: point the first entry's key far outside
    // the archive; validation must refuse the run.
    let error = golden_run_damaged(|archive| {
        archive[16..20].copy_from_slice(&0x7fff_0000_i32.to_le_bytes());
    })
    .unwrap_err();
    assert!(error.starts_with("rkyv validation"), "{error}");
}

// ---------------------------------------------------------------------------
// Relocation

/// `entry` moved to another commit location, same version.
fn moved(entry: IndexEntry, offset: u64) -> IndexEntry {
    let IndexValue::Object {
        commit,
        first_segment,
        size,
        etag,
        last_modified_ms,
    } = entry.value
    else {
        panic!("an object")
    };
    IndexEntry {
        seq: entry.seq,
        value: IndexValue::Object {
            commit: Location { offset, ..commit },
            first_segment,
            size,
            etag,
            last_modified_ms,
        },
    }
}

#[test]
fn relocation_keeps_the_version_and_wins_ties_through_flush_and_merge() {
    // Goal: a relocated version (same seq, new place) replaces the entry in
    // every source order — memtable over run, newer run over older run,
    // and through a merge — while `relocate` refuses a version that is not
    // the index's newest (superseded, or a tombstone forgotten by a full
    // merge) and `replay_relocation` takes a key the index does not know.
    let dir = tempfile::tempdir().unwrap();
    let (mut index, _) = open(dir.path());
    let key = || IndexKey::new("b", "k");
    let original = object(10, 5);
    assert!(index.insert(key(), original));
    index.flush(checkpoint_at(100, 11)).unwrap();
    let first = moved(original, 777);
    assert!(index.relocate(key(), first));
    assert_eq!(index.get("b", "k"), Some(first));
    assert_eq!(index.bucket_stats("b").object_count, 1);
    index.flush(checkpoint_at(200, 11)).unwrap();
    assert_eq!(index.get("b", "k"), Some(first));
    let second = moved(original, 888);
    assert!(index.relocate(key(), second));
    index.flush(checkpoint_at(300, 11)).unwrap();
    index.merge(MergeScope::All).unwrap();
    assert_eq!(index.get("b", "k"), Some(second));
    assert_eq!(index.range("b", None, "").next(), Some(("k", second)));
    assert_eq!(index.bucket_stats("b").bytes, 5);

    // Superseded: a relocation of the old version is refused.
    assert!(index.insert(key(), tombstone(20)));
    assert!(!index.relocate(key(), moved(original, 999)));
    index.flush(checkpoint_at(400, 21)).unwrap();
    index.merge(MergeScope::All).unwrap();
    assert_eq!(
        index.get("b", "k"),
        None,
        "the full merge forgot the tombstone"
    );
    assert!(!index.relocate(key(), moved(original, 999)));
    assert!(index.bucket_is_empty("b"));

    // Replay: an unknown key takes the relocated version; a newer one wins.
    assert!(index.replay_relocation(key(), moved(original, 1000)));
    assert_eq!(index.bucket_stats("b").object_count, 1);
    assert!(index.insert(key(), tombstone(30)));
    assert!(!index.replay_relocation(key(), moved(original, 1001)));
    assert!(index.bucket_is_empty("b"));
}

#[test]
fn a_job_that_commits_nothing_can_run_again() {
    // Goal: a full disk while a run or the manifest's temporary file is
    // written (or an EIO there) costs nothing: the job reports
    // `NotCommitted`, the index keeps serving every entry (the frozen ones
    // back in the memtable, newer inserts winning), and the next flush and
    // merge work and are durable. Method: the fault layer fails the
    // writes of the chosen file, then heals.
    use crate::storage::fs::Op;
    use crate::storage::fs::fault::{Fault, session};
    for (failing, errno) in [
        ("run-", libc::ENOSPC),
        ("MANIFEST", libc::ENOSPC),
        ("run-", libc::EIO),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let faults = session(dir.path());
        let (mut index, _) = open(dir.path());
        index.insert(IndexKey::new("b", "old"), object(1, 5));
        index.insert(IndexKey::new("b", "both"), object(2, 6));
        faults.fail(Fault::always(Op::Write, errno).on_paths_containing(failing));
        let job = index.start_flush(checkpoint_at(1, 3)).unwrap();
        // Inserted while the job runs: newer than the frozen entry.
        index.insert(IndexKey::new("b", "both"), object(3, 7));
        let error = index.finish_flush(job.execute()).unwrap_err();
        assert!(
            matches!(error, IndexError::NotCommitted(_)),
            "{failing}: {error}"
        );
        assert!(faults.injected() > 0);
        assert_eq!(index.get("b", "old"), Some(object(1, 5)));
        assert_eq!(index.get("b", "both"), Some(object(3, 7)));
        assert_eq!(index.run_count(), 0);
        assert!(Index::open(dir.path()).unwrap().0.get("b", "old").is_none());

        faults.heal();
        index.flush(checkpoint_at(2, 4)).unwrap();
        index.insert(IndexKey::new("b", "new"), object(4, 8));
        index.flush(checkpoint_at(3, 5)).unwrap();
        assert!(index.merge(MergeScope::All).unwrap());
        let (reopened, checkpoint) = Index::open(dir.path()).unwrap();
        assert_eq!(checkpoint, checkpoint_at(3, 5), "{failing}");
        assert_eq!(reopened.get("b", "old"), Some(object(1, 5)));
        assert_eq!(reopened.get("b", "both"), Some(object(3, 7)));
        assert_eq!(reopened.get("b", "new"), Some(object(4, 8)));
    }
}
