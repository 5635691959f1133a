//! A real full disk (DESIGN.md, *Faults*: "full disk is a state, not a
//! failure"), against the real binary on a real, small file system.
//!
//! Goal: prove on an actual ext4 that runs out of blocks what the engine's
//! unit tests prove on a simulated one: once the disk is full, every
//! refused write gets `507 XMinioStorageFull` (never a 500, never a reset
//! connection), every acknowledged object reads back byte for byte,
//! deletes keep working, the server digs itself out as soon as deletes and
//! compaction return space (the same process, no restart), a restart on a
//! still-full disk starts and serves reads and deletes, and `ringstore
//! check` finds the data directory clean at the end.
//!
//! Method: a 96 MiB image file in a temporary directory, formatted with
//! `mkfs.ext4 -m 0`, attached to a loop device and mounted; ringstore runs
//! on it with 8 MiB segments and a 16 MiB reserve (the default reserve of
//! one segment plus 64 MiB per core would not fit this disk), once with one
//! core and once with two, in five steps:
//!
//! 1. Six tasks upload through the SDK (retries off, so that a reset
//!    connection shows instead of being retried away): objects from empty
//!    and inline-small to 4 MiB, and one in eight a two-part multipart
//!    upload, until 48 refusals in a row show that every core refuses.
//!    Every acknowledged object is recorded (key, seed of its bytes,
//!    length); a refused multipart upload is aborted, which must work on
//!    the full disk. The reserve is still free.
//! 2. The full disk from outside: `ringstore_storage_full` is 1 on every
//!    core, `/health/ready` 200, every object reads back, an empty PUT, a
//!    `CreateMultipartUpload`, a `CopyObject` and a PUT that waits for
//!    `100 Continue` are refused with 507, and DELETEs work.
//! 3. SIGTERM (exit 0) and a start on the still-full disk: every object
//!    reads back, DELETEs work, and new data is refused again once the
//!    cores have used what was left in their active segments.
//! 4. Another start on the still-full disk, now with compaction every
//!    100 ms: most objects are deleted, and a bounded poll waits until a
//!    PUT succeeds, in that same process. Then more uploads (all
//!    acknowledged), a listing, and everything live reads back.
//! 5. SIGTERM (exit 0), and `ringstore check` on the data directory: no
//!    damage, no warning, and exactly the live objects and bytes of the
//!    model.
//!
//! Compaction is off in steps 1 to 3 (a check once an hour): it would
//! return the space of what the refusals leave behind (the parts of
//! aborted uploads, the extents of uploads refused midway) at moments the
//! test does not choose, and a disk that has room again cannot show what a
//! full one does.
//!
//! Why `-m 0`: ext4 keeps 5% of its blocks for root by default. ringstore
//! counts free space as an unprivileged process sees it (`statvfs`'
//! available blocks), but runs as root here, so its own writes could go on
//! into those blocks after it has counted them as gone: the disk the
//! server sees and the disk that fills would differ by 5 MiB. Without
//! them, "available" is "free" for everyone, and the test's own `statvfs`
//! numbers mean what the server's do.
//!
//! Mounting needs root and loop devices. Where the test cannot mount, it
//! prints one line saying why and passes, unless
//! `RINGSTORE_REQUIRE_FULL_DISK_TEST=1` is set (`.ci/run` sets it): then it
//! fails, so a CI machine that can mount never skips it silently. Every
//! server process, mount, loop device and directory the test makes is
//! removed by a drop guard, also when it fails.

mod common;

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::io::Write as _;
use std::os::unix::ffi::OsStrExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_sdk_s3::Client;
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use common::{Server, ServerOptions, metric, pattern, run_check};

const MIB: usize = 1024 * 1024;
/// Size of the file system image: a handful of segments per core.
const IMAGE_BYTES: u64 = 96 * MIB as u64;
/// The smallest segment size the server accepts, so that the disk fills in
/// small steps.
const SEGMENT_BYTES: u64 = 8 * MIB as u64;
/// Two segments: room for the tombstones, aborts, compaction copies and
/// index checkpoints of this test.
const RESERVED_SPACE_BYTES: u64 = 16 * MIB as u64;
/// Compaction's interval while the full disk is examined: an hour, so
/// never within the test. Compaction would return the space of what the
/// refusals left behind (the parts of aborted uploads, the extents of
/// uploads refused midway) at moments the test does not choose, and a disk
/// that has room again cannot show what a full one does.
const COMPACTION_OFF_MS: u64 = 3_600_000;
/// Compaction's interval while the server digs itself out.
const COMPACTION_INTERVAL_MS: u64 = 100;
/// What is uploaded once space has returned, all of it acknowledged.
const REFILL_BYTES: u64 = 16 * MIB as u64;
/// Concurrent uploaders.
const WRITERS: usize = 6;
/// Refusals in a row, with no acknowledged write in between, that show that
/// the disk is full for every core (with two cores, a PUT lands on either).
const STEADY_REFUSALS: usize = 48;
/// The first part of a multipart upload: the smallest a part other than the
/// last may be.
const PART_BYTES: usize = 5 * MIB;
/// The largest single PUT.
const PUT_BYTES_MAX: usize = 4 * MIB;
const BUCKET: &str = "full-disk";
/// Longest the load may take to fill the disk.
const FILL_TIMEOUT: Duration = Duration::from_mins(1);
/// Longest from the deletes to the first accepted PUT (compaction runs
/// every 100 ms here; ext4 returns freed blocks within its 5 s journal
/// commit interval).
const RECOVERY_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest any one SDK call may take: far above what these small requests
/// need, so that a hung server fails the test instead of hanging it.
const OPERATION_TIMEOUT: Duration = Duration::from_secs(30);
/// Set to `1` where the test must run (CI runs as root with loop devices).
const REQUIRE_ENV: &str = "RINGSTORE_REQUIRE_FULL_DISK_TEST";

#[tokio::test]
async fn a_full_disk_with_one_core_refuses_cleanly_loses_nothing_and_recovers() {
    full_disk_scenario(1).await;
}

#[tokio::test]
async fn a_full_disk_with_two_cores_refuses_cleanly_loses_nothing_and_recovers() {
    full_disk_scenario(2).await;
}

// ---------------------------------------------------------------------------
// The scenario
// ---------------------------------------------------------------------------

async fn full_disk_scenario(cores: usize) {
    let test = format!(
        "full_disk ({cores} core{})",
        if cores == 1 { "" } else { "s" }
    );
    let Some(disk) = loop_disk_or_skip(&test) else {
        return;
    };
    let started = Instant::now();
    let data_dir = disk.mount_point.join("data");
    let mut rig = Rig {
        server: Some(options(cores, &data_dir, COMPACTION_OFF_MS).start()),
        disk,
        cores,
        data_dir,
        report: Vec::new(),
    };
    let mut model = fill(&mut rig).await;
    examine_the_full_disk(&mut rig, &mut model).await;
    restart_on_the_full_disk(&mut rig, &mut model).await;
    dig_out(&mut rig, &mut model).await;
    stop_and_check(&mut rig, &model);
    eprintln!(
        "{test}: {:.1} s; {}",
        started.elapsed().as_secs_f64(),
        rig.report.join("; ")
    );
}

/// Step 1: fill the disk under concurrent load; returns what was
/// acknowledged.
async fn fill(rig: &mut Rig) -> BTreeMap<String, Object> {
    let client = load_client(rig.server());
    client
        .create_bucket()
        .bucket(BUCKET)
        .send()
        .await
        .unwrap_or_else(|error| panic!("CreateBucket: {}", DisplayErrorContext(&error)));
    let free_at_start = free_bytes(&rig.disk.mount_point);
    let load = Load::new(client);
    let fill = load.run(Mode::Fill).await;
    let free_when_full = free_bytes(&rig.disk.mount_point);
    assert!(
        fill.acknowledged > 0 && fill.refused_count() >= STEADY_REFUSALS,
        "the load must both fill the disk and be refused: {fill:?}"
    );
    // The data segments never ate into the reserve; only the records that
    // may use it (tombstones, aborts, checkpoints) can have.
    assert!(
        free_when_full + 2 * MIB as u64 >= RESERVED_SPACE_BYTES,
        "{free_when_full} bytes free on the full disk: the reserve of \
         {RESERVED_SPACE_BYTES} was eaten into"
    );
    assert!(
        free_when_full < SEGMENT_BYTES + RESERVED_SPACE_BYTES,
        "refused with {free_when_full} bytes free, which is room for a segment and the reserve"
    );
    rig.report.push(format!(
        "disk {} MiB, {} MiB free at start, {} MiB when full; fill: {fill}",
        IMAGE_BYTES / MIB as u64,
        free_at_start / MIB as u64,
        free_when_full / MIB as u64,
    ));
    load.acknowledged()
}

/// Step 2: what a full disk looks like from outside, and what still works.
async fn examine_the_full_disk(rig: &mut Rig, model: &mut BTreeMap<String, Object>) {
    let server = rig.server();
    let client = load_client(server);
    assert_gauges(server, rig.cores, 1);
    let ready = server.admin_get("/health/ready");
    assert_eq!(ready.status, 200, "ready on a full disk: {}", ready.text());
    assert_every_object_reads_back(&client, model).await;
    assert_refused(
        "PutObject (empty)",
        client
            .put_object()
            .bucket(BUCKET)
            .key("refused-empty")
            .body(ByteStream::from_static(b""))
            .send()
            .await,
    );
    assert_refused(
        "CreateMultipartUpload",
        client
            .create_multipart_upload()
            .bucket(BUCKET)
            .key("refused-upload")
            .send()
            .await,
    );
    let (copy_source, _) = model.iter().next().expect("something was acknowledged");
    assert_refused(
        "CopyObject",
        client
            .copy_object()
            .bucket(BUCKET)
            .key("refused-copy")
            .copy_source(format!("{BUCKET}/{copy_source}"))
            .send()
            .await,
    );
    // A client that waits for `100 Continue` (the AWS CLI does above 1 MB)
    // gets the refusal instead, and never sends the body.
    let mut conn = server.connect();
    conn.send(
        &server.sign(
            &server
                .request("PUT", &format!("/{BUCKET}/expect-continue"))
                .header("Expect", "100-continue")
                .content_length(MIB)
                .content_sha256(common::UNSIGNED_PAYLOAD),
        ),
    );
    let response = conn.response();
    assert_ne!(response.status, 100, "100 Continue on a full disk");
    response.assert_s3_error(507, "XMinioStorageFull");
    drop(conn);
    delete_some(&client, model, 4).await;
    assert_refused(
        "PutObject (after deletes that free no segment)",
        client
            .put_object()
            .bucket(BUCKET)
            .key("still-refused")
            .body(ByteStream::from(pattern(7, 100_000)))
            .send()
            .await,
    );
}

/// Step 3: a restart on the still-full disk. Recovery needs no more than
/// the reserve, reads and deletes work, new data is still refused.
async fn restart_on_the_full_disk(rig: &mut Rig, model: &mut BTreeMap<String, Object>) {
    rig.restart(COMPACTION_OFF_MS);
    let client = load_client(rig.server());
    assert_gauges(rig.server(), rig.cores, 0);
    assert_every_object_reads_back(&client, model).await;
    delete_some(&client, model, 2).await;
    // The cores no longer know that they are full, and take what still
    // fits in their active segments: less than 8 MiB each (the next segment
    // was refused), so at most one of these PUTs each, and the refusal
    // comes by the `cores + 1`th.
    let acknowledged = put_until_refused(&client, model, "after-restart", rig.cores + 1).await;
    assert!(
        gauges(rig.server(), rig.cores, "ringstore_storage_full").contains(&1),
        "no core shows ringstore_storage_full after refusing new data"
    );
    rig.report.push(format!(
        "after the restart {acknowledged} PUTs of 4 MiB acknowledged before the first refusal"
    ));
}

/// Step 4: once more on the still-full disk, now with compaction. Delete
/// most objects, and writes come back in this process, without a restart.
async fn dig_out(rig: &mut Rig, model: &mut BTreeMap<String, Object>) {
    rig.restart(COMPACTION_INTERVAL_MS);
    let client = load_client(rig.server());
    let ready = rig.server().admin_get("/health/ready");
    assert_eq!(ready.status, 200, "ready on a full disk: {}", ready.text());
    // This process refuses new data first. Compaction may meanwhile return
    // the space of aborted uploads' parts (a few segments at most), which
    // only lets some of these PUTs in.
    let acknowledged = put_until_refused(&client, model, "before-deletes", 24).await;
    let deleted = delete_most(&client, model).await;
    let recovered_in = wait_until_a_put_succeeds(&client, model).await;
    let cores = rig.cores;
    common::eventually(Duration::from_secs(10), || {
        gauges(rig.server(), cores, "ringstore_storage_full")
            .iter()
            .all(|value| *value == 0)
            .then_some(())
    })
    .unwrap_or_else(|| {
        panic!(
            "ringstore_storage_full stays up after a PUT succeeded: {:?}",
            gauges(rig.server(), cores, "ringstore_storage_full")
        )
    });
    // Compaction goes on emptying segments; once the disk has room for the
    // next uploads whole, none of them may be refused.
    let room = REFILL_BYTES + (cores as u64 + 1) * SEGMENT_BYTES + RESERVED_SPACE_BYTES;
    let compacted_in = wait_for_free_bytes(&rig.disk.mount_point, room).await;
    let load = Load::new(client.clone());
    let refill = load.run(Mode::Budget(REFILL_BYTES)).await;
    model.extend(load.acknowledged());
    assert_eq!(refill.refused_count(), 0, "{refill:?}");
    assert_every_object_reads_back(&client, model).await;
    assert_listing(&client, model).await;
    rig.report.push(format!(
        "with compaction, {acknowledged} PUTs of 4 MiB acknowledged before the first \
         refusal; {deleted} deleted, a PUT succeeded {:.1} s later, room for the refill \
         {:.1} s later; refill: {refill}",
        recovered_in.as_secs_f64(),
        compacted_in.as_secs_f64(),
    ));
}

/// Step 5: a clean stop, and a clean check that counts what the model
/// holds.
fn stop_and_check(rig: &mut Rig, model: &BTreeMap<String, Object>) {
    rig.server_mut().stop();
    let check = run_check(&rig.server().data_dir(), rig.server().root());
    assert_eq!(check.status.code(), Some(0), "{check}");
    for line in ["warnings: 0\n", "damage: 0\n", "result: ok\n"] {
        assert!(check.stdout.contains(line), "expected {line:?}\n{check}");
    }
    let live_bytes: u64 = model.values().map(|object| object.len as u64).sum();
    for line in [
        format!("live objects: {}\n", model.len()),
        format!("live bytes: {live_bytes}\n"),
    ] {
        assert!(check.stdout.contains(&line), "expected {line:?}\n{check}");
    }
    rig.report
        .push(format!("{} objects live at the check", model.len()));
}

/// What is acknowledged: the object's bytes are `pattern(seed, len)`.
#[derive(Clone, Copy, Debug)]
struct Object {
    seed: u64,
    len: usize,
}

/// The server and the disk under it, dropped in this order: the server is
/// killed (if still running) before the file system is unmounted.
struct Rig {
    server: Option<Server>,
    disk: LoopDisk,
    cores: usize,
    data_dir: PathBuf,
    /// What each phase measured, for the summary line.
    report: Vec<String>,
}

impl Rig {
    /// Stop the server (SIGTERM, exit 0) and start it again on the same
    /// data directory with this compaction interval.
    fn restart(&mut self, compaction_interval_ms: u64) {
        let options = options(self.cores, &self.data_dir, compaction_interval_ms);
        let server = self.server_mut();
        server.stop();
        server
            .start_again(&options)
            .unwrap_or_else(|exited| panic!("no start on the full disk: {exited}"));
    }

    fn server(&self) -> &Server {
        self.server.as_ref().expect("the server is set up")
    }

    fn server_mut(&mut self) -> &mut Server {
        self.server.as_mut().expect("the server is set up")
    }
}

/// The server's options: `compaction_interval_ms` is [`COMPACTION_OFF_MS`]
/// while the full disk is examined, [`COMPACTION_INTERVAL_MS`] to dig out.
fn options(cores: usize, data_dir: &Path, compaction_interval_ms: u64) -> ServerOptions {
    ServerOptions::new()
        .cores(cores)
        .data_dir(data_dir)
        .config(&format!("segment_bytes = {SEGMENT_BYTES}"))
        .config(&format!("reserved_space_bytes = {RESERVED_SPACE_BYTES}"))
        .config(&format!(
            "compaction_interval_ms = {compaction_interval_ms}"
        ))
        .config("scrub_bytes_per_second = 0")
}

/// An SDK client for the load: the fixture's settings without retries (a
/// reset connection must fail the test, not be retried away; a 507 is not
/// retried anyway) and with a bound on each call.
fn load_client(server: &Server) -> Client {
    let config = server
        .client_config()
        .retry_config(RetryConfig::disabled())
        .timeout_config(
            TimeoutConfig::builder()
                .operation_timeout(OPERATION_TIMEOUT)
                .build(),
        )
        .build();
    Client::from_conf(config)
}

// ---------------------------------------------------------------------------
// The load
// ---------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    /// Until [`STEADY_REFUSALS`] refusals in a row; refusals are expected.
    Fill,
    /// Until this many bytes are acknowledged; a refusal is a failure.
    Budget(u64),
}

/// Uploads from [`WRITERS`] tasks, and what came of them.
struct Load {
    client: Client,
    stop: AtomicBool,
    refusals_in_a_row: AtomicUsize,
    /// Bytes the writers have set out to upload ([`Mode::Budget`]).
    claimed_bytes: AtomicU64,
    acknowledged: Mutex<BTreeMap<String, Object>>,
    tally: Mutex<Tally>,
}

/// Counts of one load run.
#[derive(Clone, Debug, Default)]
struct Tally {
    acknowledged: usize,
    acknowledged_multipart: usize,
    acknowledged_bytes: u64,
    /// Refusals (507 `XMinioStorageFull`) by operation.
    refused: BTreeMap<&'static str, usize>,
    aborted: usize,
    /// Anything else: the test fails with these.
    unexpected: Vec<String>,
}

impl Tally {
    fn refused_count(&self) -> usize {
        self.refused.values().sum()
    }
}

#[allow(clippy::cast_precision_loss, reason = "MiB with one decimal")]
impl std::fmt::Display for Tally {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} acknowledged ({} multipart, {:.1} MiB), {} refused {:?}, {} uploads aborted",
            self.acknowledged,
            self.acknowledged_multipart,
            self.acknowledged_bytes as f64 / MIB as f64,
            self.refused_count(),
            self.refused,
            self.aborted
        )
    }
}

/// How one write ended other than acknowledged.
enum Failure {
    /// `507 XMinioStorageFull` from this operation.
    Refused(&'static str),
    /// Anything else, described.
    Unexpected(String),
}

impl Load {
    fn new(client: Client) -> Arc<Load> {
        Arc::new(Load {
            client,
            stop: AtomicBool::new(false),
            refusals_in_a_row: AtomicUsize::new(0),
            claimed_bytes: AtomicU64::new(0),
            acknowledged: Mutex::new(BTreeMap::new()),
            tally: Mutex::new(Tally::default()),
        })
    }

    /// Run the writers to the end that `mode` sets, and assert that nothing
    /// but refusals went wrong.
    async fn run(self: &Arc<Self>, mode: Mode) -> Tally {
        let run = match mode {
            Mode::Fill => 0,
            Mode::Budget(_) => 1,
        };
        let writers: Vec<_> = (0..WRITERS)
            .map(|writer| tokio::spawn(Arc::clone(self).write(run, writer, mode)))
            .collect();
        let joined = tokio::time::timeout(FILL_TIMEOUT, async {
            for writer in writers {
                writer.await.expect("a writer task panicked");
            }
        })
        .await;
        self.stop.store(true, Ordering::Relaxed);
        let tally = self.tally.lock().unwrap().clone();
        assert!(
            joined.is_ok(),
            "the load did not end within {FILL_TIMEOUT:?} ({mode:?}): {tally}"
        );
        assert!(
            tally.unexpected.is_empty(),
            "{} writes failed other than with 507 XMinioStorageFull (first ones below); {tally}\n{}",
            tally.unexpected.len(),
            tally.unexpected[..tally.unexpected.len().min(5)].join("\n")
        );
        tally
    }

    fn acknowledged(&self) -> BTreeMap<String, Object> {
        self.acknowledged.lock().unwrap().clone()
    }

    /// One writer: PUTs of varied sizes and, one in eight, a multipart
    /// upload, until the load stops.
    async fn write(self: Arc<Self>, run: usize, writer: usize, mode: Mode) {
        let mut random = Random::new((run * WRITERS + writer) as u64 + 1);
        for number in 0_u64.. {
            if self.stop.load(Ordering::Relaxed) {
                return;
            }
            let multipart = random.below(8) == 0;
            let len = if multipart {
                PART_BYTES + 1 + random.below_usize(2 * MIB)
            } else {
                random.object_len()
            };
            if let Mode::Budget(budget) = mode {
                // Claimed before the upload, so that the writers together
                // never upload more than the budget.
                let claimed = self.claimed_bytes.fetch_add(len as u64, Ordering::Relaxed);
                if claimed + len as u64 > budget {
                    return;
                }
            }
            let key = format!("run-{run}/writer-{writer}/{number:05}");
            let seed = (((run * WRITERS + writer) as u64) << 32) | number;
            let result = if multipart {
                multipart_upload(&self.client, &key, seed, len).await
            } else {
                put(&self.client, &key, seed, len).await
            };
            let mut tally = self.tally.lock().unwrap();
            match result {
                Ok((object, aborted)) => {
                    tally.aborted += aborted;
                    tally.acknowledged += 1;
                    tally.acknowledged_multipart += usize::from(multipart);
                    tally.acknowledged_bytes += object.len as u64;
                    self.acknowledged.lock().unwrap().insert(key, object);
                    self.refusals_in_a_row.store(0, Ordering::Relaxed);
                }
                Err((Failure::Refused(operation), aborted)) => {
                    tally.aborted += aborted;
                    *tally.refused.entry(operation).or_default() += 1;
                    if mode == Mode::Fill {
                        let in_a_row = self.refusals_in_a_row.fetch_add(1, Ordering::Relaxed) + 1;
                        if in_a_row >= STEADY_REFUSALS {
                            self.stop.store(true, Ordering::Relaxed);
                        }
                    } else {
                        tally.unexpected.push(format!(
                            "{key}: {operation} refused although space returned"
                        ));
                        self.stop.store(true, Ordering::Relaxed);
                    }
                }
                Err((Failure::Unexpected(what), _)) => {
                    tally.unexpected.push(format!("{key}: {what}"));
                    self.stop.store(true, Ordering::Relaxed);
                }
            }
        }
    }
}

/// An outcome and the number of uploads it aborted.
type Written = Result<(Object, usize), (Failure, usize)>;

async fn put(client: &Client, key: &str, seed: u64, len: usize) -> Written {
    let result = client
        .put_object()
        .bucket(BUCKET)
        .key(key)
        .body(ByteStream::from(pattern(seed, len)))
        .send()
        .await;
    match result {
        Ok(_) => Ok((Object { seed, len }, 0)),
        Err(error) => Err((classify("PutObject", &error), 0)),
    }
}

/// A two-part upload of `len` bytes (5 MiB and the rest). A refused step
/// aborts the upload, which must work on a full disk.
async fn multipart_upload(client: &Client, key: &str, seed: u64, len: usize) -> Written {
    assert!(len > PART_BYTES && len <= 2 * PART_BYTES);
    let bytes = pattern(seed, len);
    let created = client
        .create_multipart_upload()
        .bucket(BUCKET)
        .key(key)
        .send()
        .await
        .map_err(|error| (classify("CreateMultipartUpload", &error), 0))?;
    let upload_id = created.upload_id().expect("an upload id").to_owned();
    let mut parts = Vec::new();
    for (index, chunk) in bytes.chunks(PART_BYTES).enumerate() {
        let number = i32::try_from(index + 1).expect("two parts");
        let uploaded = client
            .upload_part()
            .bucket(BUCKET)
            .key(key)
            .upload_id(&upload_id)
            .part_number(number)
            .body(ByteStream::from(chunk.to_vec()))
            .send()
            .await;
        match uploaded {
            Ok(output) => parts.push(
                CompletedPart::builder()
                    .part_number(number)
                    .e_tag(output.e_tag().expect("an ETag"))
                    .build(),
            ),
            Err(error) => {
                return Err(abort(client, key, &upload_id, classify("UploadPart", &error)).await);
            }
        }
    }
    let completed = client
        .complete_multipart_upload()
        .bucket(BUCKET)
        .key(key)
        .upload_id(&upload_id)
        .multipart_upload(
            CompletedMultipartUpload::builder()
                .set_parts(Some(parts))
                .build(),
        )
        .send()
        .await;
    match completed {
        Ok(_) => Ok((Object { seed, len }, 0)),
        Err(error) => Err(abort(
            client,
            key,
            &upload_id,
            classify("CompleteMultipartUpload", &error),
        )
        .await),
    }
}

/// Abort an upload after `failure`; the abort must work on a full disk.
async fn abort(client: &Client, key: &str, upload_id: &str, failure: Failure) -> (Failure, usize) {
    let aborted = client
        .abort_multipart_upload()
        .bucket(BUCKET)
        .key(key)
        .upload_id(upload_id)
        .send()
        .await;
    match aborted {
        Ok(_) => (failure, 1),
        Err(error) => (
            Failure::Unexpected(format!(
                "AbortMultipartUpload after a refusal failed: {}",
                describe(&error)
            )),
            0,
        ),
    }
}

/// A refusal of a full disk, or a description of anything else.
fn classify<E>(operation: &'static str, error: &SdkError<E, HttpResponse>) -> Failure
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    if is_storage_full(error) {
        Failure::Refused(operation)
    } else {
        Failure::Unexpected(format!("{operation}: {}", describe(error)))
    }
}

/// `507 XMinioStorageFull` with a request id.
fn is_storage_full<E: ProvideErrorMetadata>(error: &SdkError<E, HttpResponse>) -> bool {
    error.raw_response().is_some_and(|response| {
        response.status().as_u16() == 507
            && error.code() == Some("XMinioStorageFull")
            && response
                .headers()
                .get("x-amz-request-id")
                .is_some_and(|id| !id.is_empty())
    })
}

fn describe<E>(error: &SdkError<E, HttpResponse>) -> String
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    match error.raw_response() {
        Some(response) => format!(
            "{} {:?}: {}",
            response.status().as_u16(),
            error.code(),
            error.message().unwrap_or_default()
        ),
        None => format!(
            "no HTTP response (a reset or closed connection?): {}",
            DisplayErrorContext(error)
        ),
    }
}

#[track_caller]
fn assert_refused<T: Debug, E>(what: &str, result: Result<T, SdkError<E, HttpResponse>>)
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    match result {
        Ok(output) => panic!("{what} on a full disk must be refused, it succeeded: {output:?}"),
        Err(error) => assert!(
            is_storage_full(&error),
            "{what} on a full disk: expected 507 XMinioStorageFull, got {}",
            describe(&error)
        ),
    }
}

/// PUTs of 4 MiB (keys under `prefix`) until one is refused, at most
/// `puts_max`; returns how many were acknowledged (and adds them to the
/// model), or panics if none was refused.
async fn put_until_refused(
    client: &Client,
    model: &mut BTreeMap<String, Object>,
    prefix: &str,
    puts_max: usize,
) -> usize {
    for attempt in 0..puts_max {
        let key = format!("{prefix}/{attempt}");
        let seed = 0xA000 + (model.len() as u64) * 64 + attempt as u64;
        match put(client, &key, seed, PUT_BYTES_MAX).await {
            Ok((object, _)) => {
                model.insert(key, object);
            }
            Err((Failure::Refused(_), _)) => return attempt,
            Err((Failure::Unexpected(what), _)) => panic!("a PUT on a full disk: {what}"),
        }
    }
    panic!("{puts_max} PUTs of 4 MiB on the full disk were all acknowledged");
}

// ---------------------------------------------------------------------------
// Reads, deletes, recovery
// ---------------------------------------------------------------------------

/// GET every object of `model` (four at a time) and compare it byte for
/// byte.
async fn assert_every_object_reads_back(client: &Client, model: &BTreeMap<String, Object>) {
    let objects: Vec<(String, Object)> = model
        .iter()
        .map(|(key, object)| (key.clone(), *object))
        .collect();
    let readers: Vec<_> = objects
        .chunks(objects.len().div_ceil(4).max(1))
        .map(|slice| {
            let client = client.clone();
            let slice = slice.to_vec();
            tokio::spawn(async move {
                for (key, object) in slice {
                    let got = get(&client, &key).await;
                    let expected = pattern(object.seed, object.len);
                    if got != expected {
                        let at = got
                            .iter()
                            .zip(&expected)
                            .position(|(a, b)| a != b)
                            .unwrap_or(got.len().min(expected.len()));
                        panic!(
                            "{key}: {} bytes back where {} were acknowledged, first \
                             difference at byte {at}",
                            got.len(),
                            expected.len()
                        );
                    }
                }
            })
        })
        .collect();
    for reader in readers {
        if let Err(error) = reader.await {
            std::panic::resume_unwind(error.into_panic());
        }
    }
}

async fn get(client: &Client, key: &str) -> Vec<u8> {
    let output = client
        .get_object()
        .bucket(BUCKET)
        .key(key)
        .send()
        .await
        .unwrap_or_else(|error| panic!("GetObject {key}: {}", describe(&error)));
    output
        .body
        .collect()
        .await
        .unwrap_or_else(|error| panic!("GetObject {key}: reading the body: {error}"))
        .into_bytes()
        .to_vec()
}

async fn delete(client: &Client, key: &str) {
    client
        .delete_object()
        .bucket(BUCKET)
        .key(key)
        .send()
        .await
        .unwrap_or_else(|error| panic!("DeleteObject {key}: {}", describe(&error)));
}

/// Delete the `count` smallest objects (which frees no segment: the disk
/// stays full) and check that they are gone.
async fn delete_some(client: &Client, model: &mut BTreeMap<String, Object>, count: usize) {
    let mut by_size: Vec<(usize, String)> = model
        .iter()
        .map(|(key, object)| (object.len, key.clone()))
        .collect();
    by_size.sort_unstable();
    for (_, key) in by_size.into_iter().take(count) {
        delete(client, &key).await;
        model.remove(&key);
        let gone = client.get_object().bucket(BUCKET).key(&key).send().await;
        match gone {
            Ok(_) => panic!("{key} reads back after its DELETE"),
            Err(error) => assert_eq!(
                error.code(),
                Some("NoSuchKey"),
                "GET of deleted {key}: {}",
                describe(&error)
            ),
        }
    }
}

/// Delete every object larger than 1 MiB and two of every three others,
/// four DELETEs at a time, so that compaction can empty every sealed
/// segment. Returns how many were deleted.
async fn delete_most(client: &Client, model: &mut BTreeMap<String, Object>) -> usize {
    let doomed: Vec<String> = model
        .iter()
        .enumerate()
        .filter(|(index, (_, object))| object.len > MIB || index % 3 != 0)
        .map(|(_, (key, _))| key.clone())
        .collect();
    let deleters: Vec<_> = doomed
        .chunks(doomed.len().div_ceil(4).max(1))
        .map(|slice| {
            let client = client.clone();
            let slice = slice.to_vec();
            tokio::spawn(async move {
                for key in slice {
                    delete(&client, &key).await;
                }
            })
        })
        .collect();
    for deleter in deleters {
        if let Err(error) = deleter.await {
            std::panic::resume_unwind(error.into_panic());
        }
    }
    for key in &doomed {
        model.remove(key);
    }
    doomed.len()
}

/// PUT a 1 MiB object every 100 ms until one is acknowledged; until then
/// each must be refused with 507. Returns how long it took.
async fn wait_until_a_put_succeeds(
    client: &Client,
    model: &mut BTreeMap<String, Object>,
) -> Duration {
    let started = Instant::now();
    for attempt in 0_u64.. {
        let key = format!("recovery-probe/{attempt:04}");
        let seed = 0xB000 + attempt;
        match put(client, &key, seed, MIB + 1).await {
            Ok((object, _)) => {
                model.insert(key, object);
                return started.elapsed();
            }
            Err((Failure::Refused(_), _)) => {}
            Err((Failure::Unexpected(what), _)) => panic!("while waiting for space: {what}"),
        }
        assert!(
            started.elapsed() < RECOVERY_TIMEOUT,
            "no PUT succeeded within {RECOVERY_TIMEOUT:?} of deleting most objects"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    unreachable!("the loop returns or panics")
}

/// Poll until the file system has `bytes` free (compaction returns the
/// space of deleted objects segment by segment). Returns how long it took.
async fn wait_for_free_bytes(mount_point: &Path, bytes: u64) -> Duration {
    let started = Instant::now();
    loop {
        let free = free_bytes(mount_point);
        if free >= bytes {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < RECOVERY_TIMEOUT,
            "only {free} bytes free {RECOVERY_TIMEOUT:?} after most objects were deleted, \
             expected {bytes}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `ListObjectsV2` over the bucket names exactly the live keys.
async fn assert_listing(client: &Client, model: &BTreeMap<String, Object>) {
    let mut listed = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let page = client
            .list_objects_v2()
            .bucket(BUCKET)
            .set_continuation_token(token.take())
            .send()
            .await
            .unwrap_or_else(|error| panic!("ListObjectsV2: {}", describe(&error)));
        for object in page.contents() {
            listed.push((
                object.key().expect("a key").to_owned(),
                usize::try_from(object.size().expect("a size")).expect("a small size"),
            ));
        }
        match page.next_continuation_token() {
            Some(next) if page.is_truncated() == Some(true) => token = Some(next.to_owned()),
            _ => break,
        }
    }
    let expected: Vec<(String, usize)> = model
        .iter()
        .map(|(key, object)| (key.clone(), object.len))
        .collect();
    assert!(
        listed == expected,
        "the listing ({} keys) differs from the live objects ({} keys)",
        listed.len(),
        expected.len()
    );
}

// ---------------------------------------------------------------------------
// Metrics
// ---------------------------------------------------------------------------

/// The gauge `name` of every core.
#[allow(
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    reason = "the gauges are 0 or 1"
)]
fn gauges(server: &Server, cores: usize, name: &str) -> Vec<u64> {
    let text = server.admin_get("/metrics").text();
    (0..cores)
        .map(|core| {
            let series = format!("{name}{{core=\"{core}\"}}");
            metric(&text, &series).unwrap_or_else(|| panic!("no {series} in /metrics:\n{text}"))
                as u64
        })
        .collect()
}

/// `ringstore_storage_full` is `full` on every core, and no core stopped
/// taking writes (a full disk is not a failed one).
#[track_caller]
fn assert_gauges(server: &Server, cores: usize, full: u64) {
    assert_eq!(
        gauges(server, cores, "ringstore_storage_full"),
        vec![full; cores],
        "ringstore_storage_full"
    );
    assert_eq!(
        gauges(server, cores, "ringstore_writes_stopped"),
        vec![0; cores],
        "ringstore_writes_stopped"
    );
}

// ---------------------------------------------------------------------------
// The loop-mounted file system
// ---------------------------------------------------------------------------

/// An ext4 file system in an image file, attached to a loop device and
/// mounted. `Drop` unmounts it (lazily if it stays busy), detaches the
/// device and removes the directory holding the image and the mount point.
///
/// The device is attached with `losetup` and then mounted, rather than with
/// `mount -o loop`, so that the guard knows the device by name and can
/// detach it whatever happened to the mount.
struct LoopDisk {
    /// Holds `disk.img` and the mount point `mnt`; removed after `drop`
    /// has unmounted and detached.
    _scratch: tempfile::TempDir,
    mount_point: PathBuf,
    device: Option<String>,
    mounted: bool,
}

impl LoopDisk {
    /// Make, attach and mount the file system; `Err` says why it could not
    /// (after undoing what was done).
    fn mount(image_bytes: u64) -> Result<LoopDisk, String> {
        // SAFETY: geteuid has no preconditions and cannot fail.
        if unsafe { libc::geteuid() } != 0 {
            return Err("not running as root (a loop device and a mount need root)".to_owned());
        }
        let scratch = tempfile::Builder::new()
            .prefix("ringstore-full-disk-")
            .tempdir()
            .map_err(|error| format!("cannot create a temporary directory: {error}"))?;
        let mount_point = scratch.path().join("mnt");
        let image = scratch.path().join("disk.img");
        std::fs::create_dir(&mount_point)
            .and_then(|()| std::fs::File::create(&image)?.set_len(image_bytes))
            .map_err(|error| format!("cannot create the image file: {error}"))?;
        let mut disk = LoopDisk {
            _scratch: scratch,
            mount_point,
            device: None,
            mounted: false,
        };
        let image = path_text(&image);
        // Inode tables and the journal written now, so that no background
        // initialisation writes to the disk while the test measures it.
        run(
            "mkfs.ext4",
            &[
                "-q",
                "-F",
                "-m",
                "0",
                "-E",
                "lazy_itable_init=0,lazy_journal_init=0",
                &image,
            ],
        )?;
        let device = run("losetup", &["--find", "--show", &image])?
            .trim()
            .to_owned();
        disk.device = Some(device.clone());
        run(
            "mount",
            &["-t", "ext4", &device, &path_text(&disk.mount_point)],
        )?;
        disk.mounted = true;
        Ok(disk)
    }
}

impl Drop for LoopDisk {
    fn drop(&mut self) {
        let mount_point = path_text(&self.mount_point);
        if self.mounted {
            // A process that has just exited may hold the mount for a moment.
            let unmounted = (0..20).any(|try_index| {
                if try_index > 0 {
                    std::thread::sleep(Duration::from_millis(100));
                }
                run("umount", &[&mount_point]).is_ok()
            });
            if !unmounted && let Err(error) = run("umount", &["--lazy", &mount_point]) {
                eprintln!("full_disk: cannot unmount {mount_point}: {error}");
            }
        }
        if let Some(device) = &self.device
            && let Err(error) = run("losetup", &["--detach", device])
        {
            eprintln!("full_disk: cannot detach {device}: {error}");
        }
    }
}

/// The disk, or `None` after one line on stderr saying why the test is
/// skipped. Panics instead when [`REQUIRE_ENV`] is `1`.
fn loop_disk_or_skip(test: &str) -> Option<LoopDisk> {
    match LoopDisk::mount(IMAGE_BYTES) {
        Ok(disk) => Some(disk),
        Err(why) => {
            assert!(
                std::env::var_os(REQUIRE_ENV).is_none_or(|value| value != "1"),
                "{test}: cannot mount a loop file system ({why}), and {REQUIRE_ENV}=1 \
                 requires this test to run"
            );
            // Through the stderr handle, past the test harness's capture of
            // `eprintln!`, so that a skip shows in every log.
            let _ = writeln!(
                std::io::stderr(),
                "{test}: SKIPPED: cannot mount a loop file system: {why} \
                 (set {REQUIRE_ENV}=1 to fail instead)"
            );
            None
        }
    }
}

/// Run a command to its end; its stdout, or why it failed.
fn run(program: &str, args: &[&str]) -> Result<String, String> {
    let output = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|error| format!("cannot run {program}: {error}"))?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(format!(
            "`{program} {}` failed ({}): {}",
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

fn path_text(path: &Path) -> String {
    path.to_str()
        .unwrap_or_else(|| panic!("a temporary path that is not UTF-8: {}", path.display()))
        .to_owned()
}

/// What a process other than root may still write to the file system at
/// `path` (`statvfs`: available blocks times the fragment size), as the
/// server counts it.
fn free_bytes(path: &Path) -> u64 {
    let path_c = std::ffi::CString::new(path.as_os_str().as_bytes()).expect("no NUL in a path");
    // SAFETY: statvfs is plain data that the call fills in.
    let mut stats: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: a valid C string and a valid out pointer.
    let result = unsafe { libc::statvfs(path_c.as_ptr(), &raw mut stats) };
    assert_eq!(
        result,
        0,
        "statvfs {}: {}",
        path.display(),
        std::io::Error::last_os_error()
    );
    stats.f_bavail * stats.f_frsize
}

// ---------------------------------------------------------------------------
// ringstore check
// ---------------------------------------------------------------------------

// ---------------------------------------------------------------------------
// Sizes
// ---------------------------------------------------------------------------

/// xorshift64: seeded, so a failing run can be replayed.
struct Random(u64);

impl Random {
    fn new(seed: u64) -> Random {
        Random(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, bound: u64) -> u64 {
        self.next() % bound
    }

    fn below_usize(&mut self, bound: usize) -> usize {
        usize::try_from(self.below(bound as u64)).expect("below a usize")
    }

    /// An object size: one in four a boundary of the storage layout (empty,
    /// the inline limit of 64 KiB and one past it, one 1 MiB extent and one
    /// past it, the largest PUT), the rest spread evenly over the powers of
    /// two from 16 bytes to 4 MiB.
    fn object_len(&mut self) -> usize {
        const EDGES: [usize; 7] = [
            0,
            64 * 1024,
            64 * 1024 + 1,
            1024 * 1024,
            1024 * 1024 + 1,
            PUT_BYTES_MAX - 1,
            PUT_BYTES_MAX,
        ];
        if self.below(4) == 0 {
            return EDGES[self.below_usize(EDGES.len())];
        }
        let bits = 4 + self.below(18);
        let len = (1_u64 << bits) + self.below(1_u64 << bits);
        usize::try_from(len).expect("small").min(PUT_BYTES_MAX)
    }
}
