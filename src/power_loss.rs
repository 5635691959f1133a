//! Power loss, tested (DESIGN.md, *Faults*: "every acknowledged write must
//! survive each of them"; STYLE.md §8.4; issue 13).
//!
//! # Goal
//!
//! After a power cut at any point of any workload, and a restart, a shard
//! holds every write it acknowledged, byte for byte, and nothing deleted
//! comes back; nothing appears that was never written; multipart uploads
//! acknowledged as created are still in progress, with their acknowledged
//! parts, until they are completed or aborted; the start itself succeeds.
//!
//! # Method
//!
//! A fault session (`storage::fs::fault`) records every change the shard
//! makes to its data directory, from the very first `mkdir`. A seeded
//! workload runs on one executor: several tasks, each with keys of its own,
//! put small (inline) and multi-extent objects, overwrite and delete them,
//! run multipart uploads (create, parts, complete, abort), leave uploads
//! unfinished; beside them, compaction passes and index checkpoints; between
//! phases, restarts (clean, with a checkpoint, or abrupt), and in about
//! half of the phases an injected I/O error (EIO, ENOSPC) on a segment,
//! index or snapshot operation. Every operation is noted in a
//! [`model::Model`] with the log position where it started and where it
//! returned, and whether it was acknowledged (returned `Ok`). After each restart the state the shard
//! shows is checked against the model and becomes definite.
//!
//! Then, for chosen crash points `k` (every position of the log, or when
//! there are too many, a seeded sample: half of it positions just before
//! and after a sync, half anywhere), the power-loss model (`fault::image`) draws disk images
//! that a cut after the first `k` changes can leave; each is written to a
//! scratch directory, a `Shard` is opened on it (no session: the real
//! recovery code on a real directory), and everything it shows is checked
//! against the model at `k`. Some images also go through the offline
//! checker (`crate::check`), which must find no damage, and take a write
//! after recovery that must read back after one more restart.
//!
//! # Replaying a failure
//!
//! Everything random is seeded and a failure prints the seed, the crash
//! point, the image's seed and the log around the cut. The image of a given
//! log, point and seed is always the same; the workload of a seed is the
//! same sequence of choices, but the interleaving of its tasks follows the
//! timing of real I/O, so its log can differ from run to run (the failing
//! test prints the seed's log position counts; rerun the seed with every
//! crash point to find it again).
//!
//! # Running more
//!
//! - `RINGSTORE_POWER_LOSS_SEEDS=<n>`: run `n` seeds (default 2).
//! - `RINGSTORE_POWER_LOSS_SEED=<seed>`: run this seed only (hex with `0x`).
//! - `RINGSTORE_POWER_LOSS_POINTS=all|<n>`: crash points per seed (default
//!   a budget, see [`Config`]).
//! - `RINGSTORE_POWER_LOSS_IMAGES=<n>`: images per crash point (default 1).
//! - `RINGSTORE_POWER_LOSS_OPS=<n>`: operations per task and phase
//!   (default 30).
//! - `RINGSTORE_POWER_LOSS_IMAGE_DIR=<dir>`: where the images are written
//!   (default `/dev/shm` when it takes direct I/O, else the temporary
//!   directory; see [`images_dir`]).
//!
//! For example, a long run:
//! `RINGSTORE_POWER_LOSS_SEEDS=40 RINGSTORE_POWER_LOSS_POINTS=all
//! cargo test --lib power_loss -- --nocapture`.

mod faults;
mod model;
mod regressions;

use std::cell::{Cell, RefCell};
use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::Path;
use std::rc::Rc;
use std::time::{Duration, Instant};

use crate::storage::fs::fault::image::{Disk, Image};
use crate::storage::fs::fault::{self, Fault, Logged, SessionGuard};
use crate::storage::fs::{Event, Op};
use crate::storage::object::{ETag, ObjectBody, ObjectTombstone};
use crate::storage::segment::{Space, WriterOptions};
use crate::storage::shard::Shard;
use crate::storage::shard::testing::{bytes_of, commit};
use crate::storage::shard::uploads::UploadError;
use crate::storage::upload::{UploadCreate, UploadEnd, UploadOutcome, UploadPart};
use crate::test_support::{Rng, run};
use model::{BUCKET, History, Model, UploadModel};

/// The shard directory inside the session's root (the data directory), so
/// that its creation is in the log.
const SHARD_DIR: &str = "shard-00";

/// How much to run.
#[derive(Debug, Clone)]
struct Config {
    seeds: Vec<u64>,
    /// Crash points per seed; `None`: all.
    points_max: Option<usize>,
    images_per_point: u64,
    ops_per_task: u64,
}

impl Config {
    fn from_env() -> Config {
        let number = |name: &str| {
            std::env::var(name).ok().map(|text| {
                let text = text.trim();
                let parsed = match text.strip_prefix("0x") {
                    Some(hex) => u64::from_str_radix(hex, 16),
                    None => text.parse(),
                };
                parsed.unwrap_or_else(|_| panic!("{name}={text}: not a number"))
            })
        };
        let seeds = if let Some(seed) = number("RINGSTORE_POWER_LOSS_SEED") {
            vec![seed]
        } else {
            let count = number("RINGSTORE_POWER_LOSS_SEEDS").unwrap_or(2);
            (0..count)
                .map(|index| 0x5eed_0000_0000_0001 ^ index.wrapping_mul(0x9e37_79b9_7f4a_7c15))
                .collect()
        };
        let points_max = match std::env::var("RINGSTORE_POWER_LOSS_POINTS").as_deref() {
            Ok("all") => None,
            Ok(_) => number("RINGSTORE_POWER_LOSS_POINTS").map(|n| usize::try_from(n).unwrap()),
            Err(_) => Some(400),
        };
        Config {
            seeds,
            points_max,
            images_per_point: number("RINGSTORE_POWER_LOSS_IMAGES").unwrap_or(1),
            ops_per_task: number("RINGSTORE_POWER_LOSS_OPS").unwrap_or(30),
        }
    }
}

/// What one seed explored.
#[derive(Debug, Default, Clone, Copy)]
struct Explored {
    events: usize,
    points: usize,
    images: usize,
    /// Images that also went through the offline checker and a write after
    /// recovery.
    full_checks: usize,
    acknowledged: usize,
    failed: usize,
    faults_injected: u64,
    workload: Duration,
    checking: Duration,
    /// From the log: segments compaction deleted, runs a merge or a start
    /// deleted, manifests committed, restarts.
    segments_removed: usize,
    runs_removed: usize,
    manifests: usize,
}

impl Explored {
    fn count_log(&mut self, log: &[Logged]) {
        for logged in log {
            match &logged.event {
                Event::Remove { path } => {
                    let name = path.file_name().unwrap_or_default().to_string_lossy();
                    self.segments_removed += usize::from(name.starts_with("seg-"));
                    self.runs_removed += usize::from(name.starts_with("run-"));
                }
                Event::Rename { to, .. } => {
                    self.manifests += usize::from(to.ends_with("MANIFEST"));
                }
                _ => {}
            }
        }
    }
}

/// Put 3000-byte objects `k{first}`, `k{first + 1}`, ... until the active
/// segment has no room for a 7000-byte extent (segments of
/// `segment_bytes_max`), so that the next such extent rolls over; returns
/// them.
async fn fill_segment(
    shard: &Rc<Shard>,
    segment_bytes_max: u64,
    first: u64,
) -> Vec<(String, Vec<u8>)> {
    let mut objects = Vec::new();
    let mut index = first;
    while shard.appended_end().1 + 7100 < segment_bytes_max {
        let data = bytes_of(index, 3000);
        put(shard, &format!("k{index}"), &data, 4096).await.unwrap();
        objects.push((format!("k{index}"), data));
        index += 1;
    }
    objects
}

/// Put `data` as `key` as a PUT does: inline when small, else in extents of
/// `extent_bytes` at most, under an upload guard.
async fn put(
    shard: &Rc<Shard>,
    key: &str,
    data: &[u8],
    extent_bytes: usize,
) -> Result<(), crate::storage::shard::ShardError> {
    let upload = shard.begin_upload();
    let body = if data.len() <= 2048 {
        ObjectBody::Inline(data.to_vec())
    } else {
        let mut extents = Vec::new();
        for piece in data.chunks(extent_bytes) {
            extents.push(shard.append_data(piece, Space::Data).await?);
        }
        ObjectBody::Extents(extents)
    };
    shard
        .commit(&commit(key, body, data.len() as u64), Some(&upload))
        .await
}

/// Wait until no background job of the shard runs and nothing else holds
/// it, then drop it: what a process exit leaves (no checkpoint).
async fn close(shard: Rc<Shard>) {
    while shard.index_job_running() || Rc::strong_count(&shard) > 1 {
        glommio::timer::sleep(Duration::from_millis(1)).await;
    }
    drop(shard);
}

/// What the tasks of one phase share.
struct Phase {
    shard: Rc<Shard>,
    session: Rc<SessionGuard>,
    model: Rc<RefCell<Model>>,
    seed: u64,
    number: u64,
    extent_bytes: usize,
    ops_done: Cell<u64>,
    tasks_running: Cell<usize>,
}

impl Phase {
    fn position(&self) -> usize {
        self.session.event_count()
    }
}

const TASKS: usize = 3;
const KEYS_PER_TASK: u64 = 5;

/// One task's operations: on its own keys only, one at a time, so that the
/// model's histories never overlap.
async fn task(phase: Rc<Phase>, task: usize, ops: u64) {
    let mut rng = Rng((phase.seed ^ (phase.number << 48) ^ ((task as u64 + 1) << 40)) | 1);
    for _ in 0..ops {
        let key = format!("t{task}-{}", rng.below(KEYS_PER_TASK));
        match rng.below(20) {
            0..=9 => {
                let len = if rng.below(2) == 0 {
                    usize::try_from(rng.below(2049)).unwrap()
                } else {
                    usize::try_from(2049 + rng.below(24_000)).unwrap()
                };
                let data = bytes_of(rng.next(), len);
                let start = phase.position();
                let result = put(&phase.shard, &key, &data, phase.extent_bytes).await;
                let end = phase.position();
                phase.model.borrow_mut().objects.entry(key).or_default().op(
                    Some(Rc::new(data)),
                    start,
                    end,
                    result.is_ok(),
                );
            }
            10..=12 => {
                let tombstone = ObjectTombstone {
                    bucket: BUCKET.to_owned(),
                    key: key.clone(),
                    deleted_ms: 2,
                };
                let start = phase.position();
                let result = phase.shard.delete(&tombstone).await;
                let end = phase.position();
                // `Ok(false)`: nothing live, no tombstone written, nothing
                // changed.
                if !matches!(result, Ok(false)) {
                    phase.model.borrow_mut().objects.entry(key).or_default().op(
                        None,
                        start,
                        end,
                        result.is_ok(),
                    );
                }
            }
            13..=17 => multipart(&phase, task, &key, &mut rng).await,
            18 => {
                // An upload the client gave up on: extents, no commit.
                let _upload = phase.shard.begin_upload();
                let len = usize::try_from(1 + rng.below(9000)).unwrap();
                let data = bytes_of(rng.next(), len);
                let _ = phase.shard.append_data(&data, Space::Data).await;
            }
            _ => glommio::yield_if_needed().await,
        }
        phase.ops_done.set(phase.ops_done.get() + 1);
    }
}

/// One step of the task's multipart upload: create one, store a part,
/// complete or abort.
async fn multipart(phase: &Phase, task: usize, key: &str, rng: &mut Rng) {
    let open = phase
        .model
        .borrow()
        .uploads
        .iter()
        .find(|(_, upload)| upload.task == task && !upload.done)
        .map(|(id, upload)| (id.clone(), upload.key.clone(), upload.next_part));
    match open {
        None => create_upload(phase, task, key, rng).await,
        Some((id, _, number)) if rng.below(10) < 6 => store_part(phase, &id, number, rng).await,
        Some((id, key, _)) => end_upload(phase, &id, &key, rng.below(2) == 0).await,
    }
}

async fn create_upload(phase: &Phase, task: usize, key: &str, rng: &mut Rng) {
    let id = format!(
        "u{:x}-{}-{task}-{}",
        phase.seed,
        phase.number,
        rng.next() % 1_000_000
    );
    let create = UploadCreate {
        upload_id: id.clone(),
        initiated_ms: 3,
        checksum: None,
        template: commit(key, ObjectBody::Extents(Vec::new()), 0),
    };
    let start = phase.position();
    let result = phase.shard.create_upload(create, 1000).await;
    let end = phase.position();
    let mut exists = History::default();
    exists.op(true, start, end, result.is_ok());
    phase.model.borrow_mut().uploads.insert(
        id,
        UploadModel {
            key: key.to_owned(),
            task,
            exists,
            parts: std::collections::BTreeMap::new(),
            next_part: 1,
            done: result.is_err(),
        },
    );
}

async fn store_part(phase: &Phase, id: &str, number: u16, rng: &mut Rng) {
    let len = usize::try_from(1 + rng.below(14_000)).unwrap();
    let data = bytes_of(rng.next(), len);
    let start = phase.position();
    let result = async {
        let upload = phase.shard.begin_upload();
        let mut extents = Vec::new();
        for piece in data.chunks(phase.extent_bytes) {
            extents.push(phase.shard.append_data(piece, Space::Data).await?);
        }
        phase
            .shard
            .store_part(
                UploadPart {
                    upload_id: id.to_owned(),
                    part_number: number,
                    size: data.len() as u64,
                    md5: [0; 16],
                    last_modified_ms: 4,
                    checksum: None,
                    extents,
                },
                &upload,
            )
            .await
    }
    .await;
    let end = phase.position();
    let mut model = phase.model.borrow_mut();
    let upload = model.uploads.get_mut(id).expect("noted");
    upload.next_part += 1;
    upload
        .parts
        .entry(number)
        .or_default()
        .op(Some(Rc::new(data)), start, end, result.is_ok());
    if matches!(result, Err(UploadError::NoSuchUpload)) {
        // Not in the shard's memory: its creation failed, or a restart
        // lost it. Leave it to the model.
        upload.done = true;
    }
}

/// Complete the upload with every part the shard holds (`complete`, and
/// it has parts), or abort it.
async fn end_upload(phase: &Phase, id: &str, key: &str, complete: bool) {
    let start = phase.position();
    let Some(guard) = phase.shard.begin_ending(id).await else {
        phase
            .model
            .borrow_mut()
            .uploads
            .get_mut(id)
            .expect("noted")
            .done = true;
        return;
    };
    let held = phase.shard.upload(BUCKET, key, id).expect("in progress");
    let mut value = Vec::new();
    let mut extents = Vec::new();
    let mut part_sizes = Vec::new();
    for (number, (part, _)) in &held.parts {
        let model = phase.model.borrow();
        // The shard holds a part once it is acknowledged: the last value.
        let data = model.uploads[id].parts[number]
            .possible(&None, usize::MAX)
            .pop()
            .flatten()
            .expect("a held part has bytes");
        value.extend_from_slice(&data);
        extents.extend(part.extents.iter().copied());
        part_sizes.push(part.size);
    }
    let complete = complete && !held.parts.is_empty();
    let etag = ETag::Multipart {
        digest: [5; 16],
        part_count: u16::try_from(part_sizes.len()).unwrap(),
    };
    let end_record = UploadEnd {
        upload_id: id.to_owned(),
        bucket: BUCKET.to_owned(),
        key: key.to_owned(),
        ended_ms: 6,
        outcome: if complete {
            UploadOutcome::Completed { etag }
        } else {
            UploadOutcome::Aborted
        },
    };
    let object = complete.then(|| {
        let mut object = commit(key, ObjectBody::Extents(extents), value.len() as u64);
        object.etag = etag;
        object.part_sizes = part_sizes;
        object
    });
    let result = phase
        .shard
        .end_upload(guard, object.as_ref(), &end_record)
        .await;
    let end = phase.position();
    let mut model = phase.model.borrow_mut();
    let upload = model.uploads.get_mut(id).expect("noted");
    upload.exists.op(false, start, end, result.is_ok());
    upload.done = true;
    if complete {
        model.objects.entry(key.to_owned()).or_default().op(
            Some(Rc::new(value)),
            start,
            end,
            result.is_ok(),
        );
    }
}

/// Compaction passes and index checkpoints, now and then, while the tasks
/// run.
async fn maintenance(phase: Rc<Phase>) {
    let mut rng = Rng((phase.seed ^ (phase.number << 48) ^ 0xabcd) | 1);
    loop {
        let next = phase.ops_done.get() + 3 + rng.below(15);
        while phase.ops_done.get() < next {
            if phase.tasks_running.get() == 0 {
                return;
            }
            glommio::timer::sleep(Duration::from_millis(1)).await;
        }
        if rng.below(2) == 0 {
            let _ = phase.shard.compact().await;
        } else {
            let _ = phase.shard.checkpoint_now().await;
        }
    }
}

/// A fault to arm for one phase: the operation, a path filter, the error.
fn random_fault(rng: &mut Rng) -> Fault {
    let choices: [(Op, &str, i32, u64); 12] = [
        (Op::SyncFile, "seg-", libc::EIO, 30),
        (Op::Write, "seg-", libc::EIO, 60),
        (Op::Write, "seg-", libc::ENOSPC, 60),
        (Op::Create, "seg-", libc::ENOSPC, 3),
        (Op::SyncDir, "shard-00", libc::EIO, 5),
        (Op::Write, "run-", libc::EIO, 4),
        (Op::SyncFile, "run-", libc::EIO, 3),
        (Op::Rename, "MANIFEST", libc::EIO, 3),
        (Op::Write, "MANIFEST", libc::ENOSPC, 3),
        (Op::Write, "uploads-", libc::EIO, 3),
        (Op::Remove, "seg-", libc::EIO, 2),
        (Op::SyncDir, "index", libc::EIO, 4),
    ];
    let (op, path, errno, within) = choices[usize::try_from(rng.below(12)).unwrap()];
    Fault::nth(op, 1 + rng.below(within), errno).on_paths_containing(path)
}

/// Run the workload of `seed` in `root` (an empty data directory with a
/// session on it). Returns the model.
async fn workload(
    seed: u64,
    root: &Path,
    session: &Rc<SessionGuard>,
    options: WriterOptions,
    config: &Config,
) -> Model {
    let dir = root.join(SHARD_DIR);
    let model = Rc::new(RefCell::new(Model::default()));
    let mut rng = Rng(seed | 1);
    let phases = 3 + rng.below(2);
    let mut shard = Rc::new(
        Shard::open_with(&dir, options)
            .await
            .expect("a new shard opens"),
    );
    let extent_bytes = usize::try_from(1024 + rng.below(6 * 1024)).unwrap();
    for number in 0..phases {
        if rng.below(2) == 0 {
            session.fail(random_fault(&mut rng));
        }
        let phase = Rc::new(Phase {
            shard: Rc::clone(&shard),
            session: Rc::clone(session),
            model: Rc::clone(&model),
            seed,
            number,
            extent_bytes,
            ops_done: Cell::new(0),
            tasks_running: Cell::new(TASKS),
        });
        let mut tasks = Vec::new();
        for index in 0..TASKS {
            let phase = Rc::clone(&phase);
            let ops = config.ops_per_task;
            tasks.push(glommio::spawn_local(async move {
                task(Rc::clone(&phase), index, ops).await;
                phase.tasks_running.set(phase.tasks_running.get() - 1);
            }));
        }
        let maintenance = glommio::spawn_local(maintenance(Rc::clone(&phase)));
        for task in tasks {
            task.await;
        }
        maintenance.await;
        drop(phase);
        session.heal();
        // A clean stop writes the index out; an abrupt one does not (what
        // a crash with the page cache intact leaves).
        if rng.below(2) == 0 {
            let _ = shard.checkpoint_now().await;
        }
        close(shard).await;
        shard = Rc::new(
            Shard::open_with(&dir, options)
                .await
                .unwrap_or_else(|error| panic!("seed {seed:#x}: restart {number}: {error}")),
        );
        let at = session.event_count();
        let shown = model::see(&shard)
            .await
            .unwrap_or_else(|error| panic!("seed {seed:#x}: after restart {number}: {error}"));
        model
            .borrow()
            .check(&shown, at)
            .unwrap_or_else(|error| panic!("seed {seed:#x}: after restart {number}: {error}"));
        model.borrow_mut().observed(&shown, at);
    }
    close(shard).await;
    Rc::try_unwrap(model).expect("tasks are done").into_inner()
}

/// Crash points to explore in a log of `len` changes: all of them, or at
/// most `max`: 0 and `len`, the positions just before and after each sync,
/// and a seeded sample of the rest.
fn crash_points(log: &[Logged], max: Option<usize>, rng: &mut Rng) -> Vec<usize> {
    let len = log.len();
    let Some(max) = max.filter(|max| *max < len + 1) else {
        return (0..=len).collect();
    };
    let mut syncs: Vec<usize> = log
        .iter()
        .enumerate()
        .filter(|(_, logged)| {
            matches!(logged.event, Event::SyncFile { .. } | Event::SyncDir { .. })
        })
        .flat_map(|(index, _)| [index, index + 1])
        .collect();
    syncs.dedup();
    let mut points = BTreeSet::from([0, len]);
    // Half the budget for positions around syncs, the rest anywhere.
    while points.len() < max / 2 && !syncs.is_empty() {
        let at = usize::try_from(rng.below(syncs.len() as u64)).unwrap();
        points.insert(syncs.swap_remove(at));
    }
    while points.len() < max {
        points.insert(usize::try_from(rng.below(len as u64 + 1)).unwrap());
    }
    points.into_iter().collect()
}

/// One change of the log, in a line.
fn describe_change(log: &[Logged], root: &Path, index: usize) -> String {
    let logged = &log[index];
    let strip = |path: &Path| {
        path.strip_prefix(root)
            .unwrap_or(path)
            .display()
            .to_string()
    };
    let what = match &logged.event {
        Event::Mkdir { path } => format!("mkdir {}", strip(path)),
        Event::Create { path } => format!("create {}", strip(path)),
        Event::Write {
            path,
            offset,
            data,
            failed,
        } => format!(
            "write {} at {offset} len {}{}",
            strip(path),
            data.len(),
            if *failed { " (failed)" } else { "" }
        ),
        Event::Truncate { path, len } => format!("truncate {} to {len}", strip(path)),
        Event::SyncFile { path } => format!("sync {}", strip(path)),
        Event::Rename { from, to } => format!("rename {} to {}", strip(from), strip(to)),
        Event::Remove { path } => format!("remove {}", strip(path)),
        Event::SyncDir { path } => format!("syncdir {}/", strip(path)),
    };
    format!("{index:5} (began at {:5}) {what}", logged.started)
}

/// The log around position `k`, for failure messages; the whole log goes
/// to a file in the temporary directory, whose name is returned too.
fn log_around(log: &[Logged], root: &Path, seed: u64, k: usize) -> String {
    let mut text = String::new();
    for index in k.saturating_sub(8)..(k + 4).min(log.len()) {
        let cut = if index == k { "--- cut ---\n" } else { "" };
        writeln!(text, "{cut}  {}", describe_change(log, root, index))
            .expect("writing to a String");
    }
    let path = std::env::temp_dir().join(format!("ringstore-power-loss-{seed:x}.log"));
    let whole: Vec<String> = (0..log.len())
        .map(|index| describe_change(log, root, index))
        .collect();
    if std::fs::write(&path, whole.join("\n")).is_ok() {
        writeln!(text, "  (the whole log is in {})", path.display()).expect("writing to a String");
    }
    text
}

/// Write the files `crate::check` needs beside the shard: the format and a
/// catalog holding the test bucket.
fn write_data_dir_files(root: &Path) {
    use crate::storage::catalog::{BucketInfo, Catalog};
    std::fs::write(root.join("format"), "ringstore-format 1\nshards 1\n").unwrap();
    let catalog = Catalog {
        generation: 1,
        buckets: [(
            BUCKET.to_owned(),
            BucketInfo {
                region: "us-east-1".to_owned(),
                created_ms: 0,
            },
        )]
        .into_iter()
        .collect(),
    };
    std::fs::write(root.join("catalog"), catalog.encode()).unwrap();
}

/// Open a shard on `image` (written out in `scratch`, which must not exist
/// yet) and check it against
/// the model at `k`; `full`: also the offline checker, and a write after
/// recovery that survives one more restart.
async fn check_image(
    image: &Image,
    scratch: &Path,
    model: &Model,
    k: usize,
    options: WriterOptions,
    full: bool,
) -> Result<(), String> {
    std::fs::create_dir(scratch).map_err(|error| error.to_string())?;
    image
        .materialize(scratch)
        .map_err(|error| format!("cannot write the image: {error}"))?;
    if full {
        write_data_dir_files(scratch);
        let report = crate::check::run(scratch).map_err(|error| format!("check: {error}"))?;
        if report.is_damaged() {
            return Err(format!("the offline check finds damage:\n{report}"));
        }
    }
    let dir = scratch.join(SHARD_DIR);
    let shard = Rc::new(
        Shard::open_with(&dir, options)
            .await
            .map_err(|error| format!("recovery fails: {error}"))?,
    );
    let seen = model::see(&shard).await?;
    model.check(&seen, k)?;
    if full {
        let data = bytes_of(k as u64, 5000);
        put(&shard, "after-recovery", &data, 4096)
            .await
            .map_err(|error| format!("a write after recovery fails: {error}"))?;
        close(shard).await;
        let shard = Shard::open_with(&dir, options)
            .await
            .map_err(|error| format!("the start after recovery fails: {error}"))?;
        let read = model::read_object(&shard, "after-recovery").await?;
        if read.as_deref() != Some(&data[..]) {
            return Err("the write after recovery is lost".to_owned());
        }
        let mut seen = model::see(&shard).await?;
        seen.objects.remove("after-recovery");
        model.check(&seen, k)?;
    } else {
        close(shard).await;
    }
    Ok(())
}

/// Check the images of the crash points of `log` against `model`.
#[allow(clippy::too_many_arguments, reason = "one call site per test")]
async fn explore(
    seed: u64,
    log: &[Logged],
    root: &Path,
    scratch: &Path,
    model: &Model,
    options: WriterOptions,
    config: &Config,
    explored: &mut Explored,
) {
    let mut rng = Rng((seed ^ 0x00c0_ffee) | 1);
    let points = crash_points(log, config.points_max, &mut rng);
    std::fs::create_dir_all(scratch).unwrap();
    // Each image in a directory of its own, removed by another thread: an
    // image removed before the files the last shard opened in it are closed
    // (glommio closes them in the background) makes those closes free the
    // files' blocks, and the executor's next operations wait behind them.
    let (removals, removed) = std::sync::mpsc::channel::<std::path::PathBuf>();
    let removing = std::thread::spawn(move || {
        for path in removed {
            let _ = std::fs::remove_dir_all(path);
        }
    });
    let mut image_count = 0_u64;
    let mut disk = Disk::new(root, log);
    for &k in &points {
        disk.advance(k);
        for number in 0..config.images_per_point {
            let image_seed = seed ^ ((k as u64) << 20) ^ number ^ 0x1234_5678_9abc_def1;
            let image = disk.image(&mut Rng(image_seed | 1));
            // One image in 16 gets the expensive checks.
            let full = (k as u64 + number).is_multiple_of(16);
            image_count += 1;
            let at = scratch.join(image_count.to_string());
            let result = check_image(&image, &at, model, k, options, full).await;
            if let Err(what) = result {
                panic!(
                    "seed {seed:#x}, crash point {k} of {}, image seed {:#x}: {what}\n\
                     log around the cut:\n{}image:\n{}",
                    log.len(),
                    image_seed | 1,
                    log_around(log, root, seed, k),
                    image.describe()
                );
            }
            if image_count > 1 {
                let previous = scratch.join((image_count - 1).to_string());
                removals.send(previous).expect("the removing thread runs");
            }
            explored.images += 1;
            explored.full_checks += usize::from(full);
        }
        explored.points += 1;
    }
    drop(removals);
    removing.join().expect("the removing thread");
}

/// Where the images go: `RINGSTORE_POWER_LOSS_IMAGE_DIR`, else `/dev/shm`
/// when it takes direct I/O (tmpfs does since Linux 6.6), else the system
/// temporary directory. Recovery reads segments with `O_DIRECT`; on a disk
/// file system every such read of a freshly written image first writes it
/// back to the disk, which is most of an image's cost.
fn images_dir() -> tempfile::TempDir {
    if let Ok(dir) = std::env::var("RINGSTORE_POWER_LOSS_IMAGE_DIR") {
        return tempfile::tempdir_in(dir).expect("RINGSTORE_POWER_LOSS_IMAGE_DIR is usable");
    }
    let shm = Path::new("/dev/shm");
    let takes_direct_io = |dir: &Path| {
        use std::os::unix::fs::OpenOptionsExt as _;
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .custom_flags(libc::O_DIRECT)
            .open(dir.join("direct-io-probe"))
            .is_ok()
    };
    match tempfile::tempdir_in(shm) {
        Ok(dir) if takes_direct_io(dir.path()) => dir,
        _ => tempfile::tempdir().unwrap(),
    }
}

/// Run one seed: the workload, the seam check, then the crash points.
fn run_seed(seed: u64, config: &Config) -> Explored {
    let temp = tempfile::tempdir().unwrap();
    let root = temp.path().join("data");
    std::fs::create_dir(&root).unwrap();
    let images = images_dir();
    let scratch = images.path().join("image");
    let config = config.clone();
    run(move || async move {
        let mut rng = Rng(seed.rotate_left(17) | 1);
        let options = WriterOptions {
            segment_bytes_max: [32 * 1024, 64 * 1024][usize::try_from(rng.below(2)).unwrap()],
            write_buffer_bytes: [8 * 1024, 16 * 1024][usize::try_from(rng.below(2)).unwrap()],
            reserved_bytes: 0,
        };
        let session = Rc::new(fault::session(&root));
        let started = Instant::now();
        let model = workload(seed, &root, &session, options, &config).await;
        let workload_time = started.elapsed();
        let log = session.log();
        let mut explored = Explored {
            events: log.len(),
            faults_injected: session.injected(),
            ..Explored::default()
        };
        (explored.acknowledged, explored.failed) = model.operations();
        explored.count_log(&log);
        drop(session);
        // The seam saw every change: replaying the whole log gives the tree
        // on disk (but for the marker file glommio writes on its own).
        let mut disk = Disk::new(&root, &log);
        disk.advance(log.len());
        let on_disk = Image::read(&root, &|path| path.ends_with("dma-probe")).unwrap();
        assert_eq!(
            disk.everything().describe(),
            on_disk.describe(),
            "seed {seed:#x}: the log does not replay into the data directory"
        );
        assert!(
            disk.everything() == on_disk,
            "seed {seed:#x}: the log does not replay into the data directory's bytes"
        );
        let started = Instant::now();
        explore(
            seed,
            &log,
            &root,
            &scratch,
            &model,
            options,
            &config,
            &mut explored,
        )
        .await;
        explored.workload = workload_time;
        explored.checking = started.elapsed();
        explored
    })
}

#[test]
fn every_acknowledged_write_survives_every_power_cut() {
    // Goal and method: the module doc. The default run (two seeds, 400
    // crash points each) takes about 15 s here; the environment variables
    // in the module doc run more.
    let config = Config::from_env();
    let started = Instant::now();
    let mut total = Explored::default();
    for &seed in &config.seeds {
        let explored = run_seed(seed, &config);
        println!(
            "power loss: seed {seed:#x}: {} operations acknowledged, {} failed, {} changes \
             logged ({} segments compacted away, {} runs merged away, {} manifests), {} crash \
             points, {} images ({} fully checked), {} faults injected; workload {:.1?}, \
             images {:.1?}",
            explored.acknowledged,
            explored.failed,
            explored.events,
            explored.segments_removed,
            explored.runs_removed,
            explored.manifests,
            explored.points,
            explored.images,
            explored.full_checks,
            explored.faults_injected,
            explored.workload,
            explored.checking
        );
        total.events += explored.events;
        total.points += explored.points;
        total.images += explored.images;
        total.full_checks += explored.full_checks;
    }
    println!(
        "power loss: {} seeds, {} crash points, {} images ({} fully checked) in {:.1?}",
        config.seeds.len(),
        total.points,
        total.images,
        total.full_checks,
        started.elapsed()
    );
}
