//! Segment appends through `SegmentWriter` on a real `DmaFile` (`O_DIRECT`,
//! `fdatasync`), the durable half of every PUT:
//!
//! - `append_sync_4KiB`, `append_sync_1MiB`: one task appends a record and
//!   waits for its sync, again and again: a lone client's PUTs, latency
//!   bound, reported in bytes per second.
//! - `group_commit_64_tasks_4KiB`: 64 tasks do the same at once, each in a
//!   loop, as 64 clients each sending small PUTs one after the other to one
//!   core. Group commit should let them share fdatasyncs; criterion's time
//!   is per round of 64 appends.
//! - `group_commit_burst_64_4KiB`: bursts of 64 tasks that append once
//!   each; every burst is awaited before the next one starts (64 PUTs
//!   arriving together, then a pause).
//!
//! After each benchmark the bench prints how many appends shared one
//! fdatasync (counted by a thin wrapper around the `DmaFile`).
//!
//! Each sample writes to a fresh directory under `RINGSTORE_BENCH_DIR` (the
//! system temporary directory by default), on its own executor, and the
//! directory is removed after it, so disk use is bounded by one sample.
//! Direct I/O and fdatasync costs depend on the file system and the device
//! (tmpfs refuses `O_DIRECT` altogether): point the variable at the disk
//! that matters.

use std::cell::Cell;
use std::io;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use glommio::io::{DmaBuffer, ReadResult};
use ringstore::storage::fs::DmaSegmentFile;
use ringstore::storage::location::SegmentId;
use ringstore::storage::record::Kind;
use ringstore::storage::segment::{
    self, DmaSegmentDir, SegmentDir, SegmentFile, SegmentWriter, Space, WriterOptions,
};

const CONCURRENT_TASKS: u64 = 64;

fn bench_dir() -> PathBuf {
    std::env::var_os("RINGSTORE_BENCH_DIR").map_or_else(std::env::temp_dir, PathBuf::from)
}

/// A segment file (`DmaFile`) that counts its fdatasyncs.
struct CountingFile {
    inner: DmaSegmentFile,
    syncs: Rc<Cell<u64>>,
}

impl SegmentFile for CountingFile {
    type Buffer = DmaBuffer;
    type Bytes = ReadResult;

    fn alloc_buffer(&self, len: usize) -> DmaBuffer {
        SegmentFile::alloc_buffer(&self.inner, len)
    }

    async fn write_at(&self, buffer: DmaBuffer, offset: u64) -> io::Result<usize> {
        SegmentFile::write_at(&self.inner, buffer, offset).await
    }

    async fn read_at(&self, offset: u64, len: usize) -> io::Result<ReadResult> {
        SegmentFile::read_at(&self.inner, offset, len).await
    }

    async fn fdatasync(&self) -> io::Result<()> {
        self.syncs.set(self.syncs.get() + 1);
        SegmentFile::fdatasync(&self.inner).await
    }

    async fn truncate(&self, len: u64) -> io::Result<()> {
        SegmentFile::truncate(&self.inner, len).await
    }

    async fn allocate(&self, len: u64) -> io::Result<()> {
        SegmentFile::allocate(&self.inner, len).await
    }

    async fn file_len(&self) -> io::Result<u64> {
        SegmentFile::file_len(&self.inner).await
    }
}

/// [`DmaSegmentDir`] whose files count their fdatasyncs.
#[derive(Clone)]
struct CountingDir {
    inner: DmaSegmentDir,
    syncs: Rc<Cell<u64>>,
}

impl SegmentDir for CountingDir {
    type File = CountingFile;

    async fn create(&self, segment: SegmentId, allocate: u64) -> io::Result<CountingFile> {
        Ok(CountingFile {
            inner: self.inner.create(segment, allocate).await?,
            syncs: Rc::clone(&self.syncs),
        })
    }

    async fn open(&self, segment: SegmentId) -> io::Result<CountingFile> {
        Ok(CountingFile {
            inner: self.inner.open(segment).await?,
            syncs: Rc::clone(&self.syncs),
        })
    }

    fn free_bytes(&self) -> io::Result<Option<u64>> {
        self.inner.free_bytes()
    }
}

/// What one sample did.
#[derive(Debug, Default, Clone, Copy)]
struct Sample {
    elapsed: Duration,
    appends: u64,
    syncs: u64,
}

/// How the appending tasks run.
#[derive(Debug, Clone, Copy)]
enum Load {
    /// Every task appends and syncs `rounds` records, one after the other.
    Steady,
    /// `rounds` bursts: every task appends and syncs one record, and the
    /// next burst starts when all of them are durable.
    Bursts,
}

/// `task_count` tasks append and sync `rounds` records of `payload_len`
/// bytes each, as `load` says, on a fresh executor and segment; only the
/// appends are timed.
fn run_sample(payload_len: usize, task_count: u64, rounds: u64, load: Load) -> Sample {
    let base = bench_dir();
    glommio::LocalExecutorBuilder::default()
        .name("segment-append-bench")
        .spawn(move || async move {
            let temp = tempfile::tempdir_in(&base).expect("a bench directory");
            segment::open_marker(temp.path())
                .await
                .expect("write and open the polled-I/O marker");
            let syncs = Rc::new(Cell::new(0));
            let dir = CountingDir {
                inner: DmaSegmentDir::new(temp.path()),
                syncs: Rc::clone(&syncs),
            };
            let writer = Rc::new(
                SegmentWriter::create(dir, 1, 1, WriterOptions::default())
                    .await
                    .expect("create a segment"),
            );
            let payload: Rc<[u8]> = (0..payload_len)
                .map(|index| u8::try_from(index % 251).expect("below 251"))
                .collect();
            let (bursts, rounds_per_task) = match load {
                Load::Steady => (1, rounds),
                Load::Bursts => (rounds, 1),
            };
            let start = Instant::now();
            for _ in 0..bursts {
                let tasks: Vec<_> = (0..task_count)
                    .map(|_| {
                        let writer = Rc::clone(&writer);
                        let payload = Rc::clone(&payload);
                        glommio::spawn_local(async move {
                            for _ in 0..rounds_per_task {
                                let location = writer
                                    .append(Kind::Data, &payload, Space::Data)
                                    .await
                                    .expect("append a record");
                                writer
                                    .sync(location, writer.epoch())
                                    .await
                                    .expect("sync a record");
                            }
                        })
                    })
                    .collect();
                for task in tasks {
                    task.await;
                }
            }
            Sample {
                elapsed: start.elapsed(),
                appends: rounds * task_count,
                syncs: syncs.get(),
            }
        })
        .expect("start an executor (raise `ulimit -l` if io_uring cannot start)")
        .join()
        .expect("the executor thread")
}

/// Appends and fdatasyncs over every sample of one benchmark.
#[derive(Debug, Default)]
struct Totals {
    appends: u64,
    syncs: u64,
}

impl Totals {
    fn add(&mut self, sample: &Sample) {
        self.appends += sample.appends;
        self.syncs += sample.syncs;
    }

    fn report(&self, name: &str) {
        #[allow(clippy::cast_precision_loss, reason = "a ratio of counts for display")]
        let per_sync = self.appends as f64 / self.syncs.max(1) as f64;
        println!(
            "segment_append/{name}: {} appends, {} fdatasyncs: {per_sync:.1} appends per fdatasync",
            self.appends, self.syncs
        );
    }
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("segment_append");
    // Every sample starts an executor and a segment, and fdatasync is slow:
    // fewer, longer samples.
    group.sample_size(20);
    for (name, payload_len) in [("append_sync_4KiB", 4096), ("append_sync_1MiB", 1 << 20)] {
        group.throughput(Throughput::Bytes(payload_len as u64));
        let mut totals = Totals::default();
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let sample = run_sample(payload_len, 1, iters, Load::Steady);
                totals.add(&sample);
                sample.elapsed
            });
        });
        totals.report(name);
    }
    group.throughput(Throughput::Bytes(CONCURRENT_TASKS * 4096));
    for (name, load) in [
        ("group_commit_64_tasks_4KiB", Load::Steady),
        ("group_commit_burst_64_4KiB", Load::Bursts),
    ] {
        let mut totals = Totals::default();
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let sample = run_sample(4096, CONCURRENT_TASKS, iters, load);
                totals.add(&sample);
                sample.elapsed
            });
        });
        totals.report(name);
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
