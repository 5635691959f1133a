//! The object index on its hot paths: `Index::get` hits and misses, first
//! with every key in the memtable, then with every key flushed to one
//! memory-mapped run (memtable empty), and a 1000-key `range` page (one
//! `ListObjectsV2` page) from each.
//!
//! 100,000 keys of one bucket, shaped like real ones
//! (`photos/2026/NNN/IMG_NNNNNNNN.jpg`). Lookups cycle through the keys in
//! a seeded random order, so that neither the map nor the run is walked in
//! the order it is laid out. The run lives in `RINGSTORE_BENCH_DIR` (the
//! system temporary directory by default); after the first pass it is in
//! the page cache, which is where a serving shard's runs are too.

use std::hint::black_box;
use std::path::PathBuf;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ringstore::storage::index::{
    Checkpoint, Etag, Index, IndexEntry, IndexKey, IndexValue, SegmentPosition,
};
use ringstore::storage::location::Location;

const KEY_COUNT: u64 = 100_000;
const BUCKET: &str = "bench-bucket";
/// Keys looked up per cycle: enough that the order is not learned.
const PROBE_COUNT: usize = 4096;
/// One S3 listing page.
const PAGE_KEYS: usize = 1000;

fn key(index: u64) -> String {
    format!("photos/2026/{:03}/IMG_{index:08}.jpg", index % 997)
}

fn entry(index: u64) -> IndexEntry {
    IndexEntry {
        seq: index + 1,
        value: IndexValue::Object {
            commit: Location {
                segment: 1,
                offset: index * 4096,
                len: 4096,
            },
            first_segment: 1,
            size: 1_000_000 + index,
            etag: Etag {
                md5: [0x5a; 16],
                part_count: 0,
            },
            last_modified_ms: 1_767_225_600_000,
        },
    }
}

fn bench_dir() -> PathBuf {
    std::env::var_os("RINGSTORE_BENCH_DIR").map_or_else(std::env::temp_dir, PathBuf::from)
}

/// xorshift64*: the same order on every run.
fn shuffled(count: u64, seed: u64) -> Vec<u64> {
    let mut state = seed;
    let mut next = move || {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        state.wrapping_mul(0x2545_f491_4f6c_dd1d)
    };
    (0..PROBE_COUNT).map(|_| next() % count).collect()
}

/// An index in a fresh directory under `root` with every key inserted and,
/// if `flush`, written to one run.
fn build(root: &tempfile::TempDir, name: &str, flush: bool) -> Index {
    let dir = root.path().join(name);
    let (mut index, _) = Index::open(&dir).expect("open the index");
    for number in 0..KEY_COUNT {
        assert!(index.insert(IndexKey::new(BUCKET, &key(number)), entry(number)));
    }
    if flush {
        index
            .flush(Checkpoint {
                position: SegmentPosition {
                    segment: 1,
                    offset: KEY_COUNT * 4096,
                },
                next_seq: KEY_COUNT + 1,
            })
            .expect("flush the memtable");
        assert_eq!(index.run_count(), 1);
        assert_eq!(index.memtable_len(), 0);
    }
    index
}

fn bench(c: &mut Criterion) {
    let root = tempfile::tempdir_in(bench_dir()).expect("a bench directory");
    let hits: Vec<String> = shuffled(KEY_COUNT, 0x1d3c_0001)
        .into_iter()
        .map(key)
        .collect();
    // Absent keys that sort among the present ones.
    let misses: Vec<String> = shuffled(KEY_COUNT, 0x1d3c_0002)
        .into_iter()
        .map(|number| key(number) + ".missing")
        .collect();
    // Listing starts with at least a page of keys after them.
    let mut sorted: Vec<String> = (0..KEY_COUNT).map(key).collect();
    sorted.sort_unstable();
    let starts: Vec<String> = shuffled(KEY_COUNT - PAGE_KEYS as u64, 0x1d3c_0003)
        .into_iter()
        .map(|position| sorted[usize::try_from(position).expect("fits usize")].clone())
        .collect();
    drop(sorted);

    for (source, flush) in [("memtable", false), ("run", true)] {
        let index = build(&root, source, flush);
        let mut group = c.benchmark_group(format!("index_{source}_100k"));
        group.throughput(Throughput::Elements(1));
        let mut next = 0;
        group.bench_function("get_hit", |b| {
            b.iter(|| {
                next = (next + 1) % PROBE_COUNT;
                let found = index.get(BUCKET, black_box(&hits[next]));
                assert!(found.is_some());
                found
            });
        });
        group.bench_function("get_miss", |b| {
            b.iter(|| {
                next = (next + 1) % PROBE_COUNT;
                let found = index.get(BUCKET, black_box(&misses[next]));
                assert!(found.is_none());
                found
            });
        });
        group.throughput(Throughput::Elements(PAGE_KEYS as u64));
        group.bench_function("range_page_1000", |b| {
            b.iter(|| {
                next = (next + 1) % PROBE_COUNT;
                let mut count = 0;
                let mut bytes = 0;
                for (key, entry) in index
                    .range(BUCKET, Some(black_box(&starts[next])), "")
                    .take(PAGE_KEYS)
                {
                    count += 1;
                    bytes += entry.object_size().unwrap_or(0) + key.len() as u64;
                }
                assert_eq!(count, PAGE_KEYS);
                bytes
            });
        });
        group.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
