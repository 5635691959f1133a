//! Running a benchmark: client threads, each one glommio executor with its
//! share of the connections as tasks; the phases (create the bucket,
//! prepare objects, measure, clean up); and what each worker records.

use std::fmt::Write as _;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use base64::Engine as _;
use glommio::{LocalExecutorBuilder, Placement};
use ringstore::storage::md5::Md5;

use crate::client::{Client, Endpoint, Request, Response};
use crate::report::{self, RunResult};
use crate::sign::{encode_path, query_string};

/// The operations a benchmark records, one result row each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Put,
    Get,
    Stat,
    Delete,
    List,
    MultipartCreate,
    MultipartPart,
    MultipartComplete,
}

pub const OPS: [Op; 8] = [
    Op::Put,
    Op::Get,
    Op::Stat,
    Op::Delete,
    Op::List,
    Op::MultipartCreate,
    Op::MultipartPart,
    Op::MultipartComplete,
];

impl Op {
    pub fn name(self) -> &'static str {
        match self {
            Op::Put => "PUT",
            Op::Get => "GET",
            Op::Stat => "STAT",
            Op::Delete => "DELETE",
            Op::List => "LIST",
            Op::MultipartCreate => "MPU-CREATE",
            Op::MultipartPart => "MPU-PART",
            Op::MultipartComplete => "MPU-COMPLETE",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// The benchmarks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Benchmark {
    Put,
    Get,
    Stat,
    Delete,
    List,
    Multipart,
    Mixed,
}

impl Benchmark {
    pub fn name(self) -> &'static str {
        match self {
            Benchmark::Put => "put",
            Benchmark::Get => "get",
            Benchmark::Stat => "stat",
            Benchmark::Delete => "delete",
            Benchmark::List => "list",
            Benchmark::Multipart => "multipart",
            Benchmark::Mixed => "mixed",
        }
    }

    /// Whether the benchmark needs objects uploaded before it starts.
    fn prepares(self) -> bool {
        matches!(
            self,
            Benchmark::Get
                | Benchmark::Stat
                | Benchmark::Delete
                | Benchmark::List
                | Benchmark::Mixed
        )
    }
}

/// Weights of the mixed benchmark, in percent-like units.
#[derive(Debug, Clone, Copy)]
pub struct Mix {
    pub get: u32,
    pub stat: u32,
    pub put: u32,
    pub delete: u32,
}

/// Everything a run needs.
#[derive(Debug, Clone)]
pub struct Plan {
    pub benchmark: Benchmark,
    pub endpoint: Endpoint,
    pub endpoint_url: String,
    pub bucket: String,
    /// Every key of the run starts with `prefix/`.
    pub prefix: String,
    pub concurrency: usize,
    pub threads: usize,
    pub duration: Duration,
    pub size_min: u64,
    pub size_max: u64,
    /// Objects uploaded before read, delete, list and mixed benchmarks.
    pub objects: usize,
    /// max-keys of a LIST page.
    pub page: usize,
    pub part_size: u64,
    pub parts: u32,
    pub mix: Mix,
    pub cleanup: bool,
    pub server_pid: Option<u32>,
    pub seed: u64,
    pub label: Option<String>,
    pub progress: bool,
}

impl Plan {
    fn object_key(&self, index: usize) -> String {
        format!("{}/obj/{index:08}", self.prefix)
    }

    /// The size of prepared object `index`: fixed per index, so readers
    /// know what to expect.
    fn object_size(&self, index: usize) -> u64 {
        let mut rng = Rng::new(self.seed ^ (index as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
        self.draw_size(&mut rng)
    }

    /// A size from the range, log-uniform (as many 4-8 KiB objects as
    /// 4-8 MiB ones), like warp's random sizes.
    fn draw_size(&self, rng: &mut Rng) -> u64 {
        if self.size_min >= self.size_max {
            return self.size_min;
        }
        let low = (self.size_min.max(1) as f64).ln();
        let high = (self.size_max as f64).ln();
        let size = (low + rng.unit() * (high - low)).exp();
        #[expect(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            reason = "a size within the range"
        )]
        let size = size as u64;
        size.clamp(self.size_min, self.size_max)
    }

    fn bucket_path(&self) -> String {
        format!("/{}", encode_path(&self.bucket))
    }

    fn key_path(&self, key: &str) -> String {
        format!("/{}/{}", encode_path(&self.bucket), encode_path(key))
    }
}

/// splitmix64: fast and good enough to pick keys and sizes.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, bound: usize) -> usize {
        usize::try_from(self.next_u64() % bound.max(1) as u64).expect("below a usize")
    }

    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Counters the progress line reads while workers run.
#[derive(Default)]
pub struct Progress {
    ops: [AtomicU64; OPS.len()],
    bytes: [AtomicU64; OPS.len()],
    errors: [AtomicU64; OPS.len()],
}

impl Progress {
    fn totals(&self) -> (u64, u64, u64) {
        let sum = |counters: &[AtomicU64; OPS.len()]| {
            counters
                .iter()
                .map(|counter| counter.load(Ordering::Relaxed))
                .sum::<u64>()
        };
        (sum(&self.ops), sum(&self.bytes), sum(&self.errors))
    }
}

/// Per second of the run, per operation.
#[derive(Debug, Clone, Copy, Default)]
pub struct Slot {
    pub ops: u64,
    pub bytes: u64,
}

/// What one worker saw.
#[derive(Debug, Default)]
pub struct WorkerStats {
    /// Latency of every successful operation, in microseconds.
    pub latencies: [Vec<u32>; OPS.len()],
    pub bytes: [u64; OPS.len()],
    /// Listed keys (LIST), for keys per second.
    pub items: [u64; OPS.len()],
    pub errors: [u64; OPS.len()],
    pub timeline: Vec<[Slot; OPS.len()]>,
    pub error_samples: Vec<String>,
    /// When its last operation ended, from the start of the phase.
    pub finished: Duration,
}

const ERROR_SAMPLES_MAX: usize = 10;

/// One worker's context: its connection, clock and records.
struct Worker {
    plan: Arc<Plan>,
    id: usize,
    client: Client,
    rng: Rng,
    epoch: Instant,
    deadline: Instant,
    progress: Arc<Progress>,
    stats: WorkerStats,
    payload: Rc<Vec<u8>>,
}

impl Worker {
    fn record(&mut self, op: Op, started: Instant, bytes: u64, result: Result<(), String>) {
        let now = Instant::now();
        let index = op.index();
        match result {
            Ok(()) => {
                let micros =
                    u32::try_from(now.duration_since(started).as_micros()).unwrap_or(u32::MAX);
                self.stats.latencies[index].push(micros);
                self.stats.bytes[index] += bytes;
                let second = usize::try_from(now.duration_since(self.epoch).as_secs()).unwrap_or(0);
                if self.stats.timeline.len() <= second {
                    self.stats
                        .timeline
                        .resize(second + 1, [Slot::default(); OPS.len()]);
                }
                let slot = &mut self.stats.timeline[second][index];
                slot.ops += 1;
                slot.bytes += bytes;
                self.progress.ops[index].fetch_add(1, Ordering::Relaxed);
                self.progress.bytes[index].fetch_add(bytes, Ordering::Relaxed);
            }
            Err(message) => {
                self.stats.errors[index] += 1;
                self.progress.errors[index].fetch_add(1, Ordering::Relaxed);
                if self.stats.error_samples.len() < ERROR_SAMPLES_MAX {
                    self.stats
                        .error_samples
                        .push(format!("{}: {message}", op.name()));
                }
            }
        }
        self.stats.finished = now.duration_since(self.epoch);
    }

    fn running(&self) -> bool {
        Instant::now() < self.deadline
    }

    async fn send(&mut self, request: &Request<'_>) -> Result<Response, String> {
        match self.client.send(request).await {
            Ok(response) if response.is_success() => Ok(response),
            Ok(response) => Err(response.describe_error()),
            Err(error) => Err(format!("connection: {error}")),
        }
    }

    async fn put(&mut self, op: Op, key: &str, size: u64) -> Result<(), String> {
        let path = self.plan.key_path(key);
        let payload = self.payload.clone();
        let body = &payload[..usize::try_from(size).expect("payload fits memory")];
        let request = Request {
            method: "PUT",
            path: &path,
            query: "",
            headers: &[],
            body,
            keep_body: false,
        };
        let started = Instant::now();
        let result = self.send(&request).await.map(drop);
        self.record(op, started, size, result.clone());
        result
    }

    async fn get(&mut self, key: &str, size: u64) {
        let path = self.plan.key_path(key);
        let request = Request::plain("GET", &path);
        let started = Instant::now();
        let result = match self.send(&request).await {
            Ok(response) if response.body_len == size => Ok(response.body_len),
            Ok(response) => Err(format!(
                "{key}: {} bytes, expected {size}",
                response.body_len
            )),
            Err(error) => Err(error),
        };
        let bytes = *result.as_ref().unwrap_or(&0);
        self.record(Op::Get, started, bytes, result.map(drop));
    }

    async fn stat(&mut self, key: &str) {
        let path = self.plan.key_path(key);
        let request = Request::plain("HEAD", &path);
        let started = Instant::now();
        let result = self.send(&request).await.map(drop);
        self.record(Op::Stat, started, 0, result);
    }

    async fn delete(&mut self, key: &str) {
        let path = self.plan.key_path(key);
        let request = Request::plain("DELETE", &path);
        let started = Instant::now();
        let result = self.send(&request).await.map(drop);
        self.record(Op::Delete, started, 0, result);
    }

    async fn list_page(&mut self, start_after: Option<&str>) {
        let prefix = format!("{}/obj/", self.plan.prefix);
        let page = self.plan.page.to_string();
        let mut pairs = vec![
            ("list-type", "2"),
            ("prefix", prefix.as_str()),
            ("max-keys", page.as_str()),
        ];
        if let Some(start_after) = start_after {
            pairs.push(("start-after", start_after));
        }
        let query = query_string(&pairs);
        let path = self.plan.bucket_path();
        let request = Request {
            method: "GET",
            path: &path,
            query: &query,
            headers: &[],
            body: &[],
            keep_body: true,
        };
        let started = Instant::now();
        let result = self.send(&request).await;
        let keys = result
            .as_ref()
            .map_or(0, |response| count_occurrences(&response.body, b"<Key>"));
        let bytes = result.as_ref().map_or(0, |response| response.body_len);
        let result = result.and_then(|_| {
            if keys == 0 {
                Err("a page without keys".to_owned())
            } else {
                Ok(())
            }
        });
        if result.is_ok() {
            self.stats.items[Op::List.index()] += keys as u64;
        }
        self.record(Op::List, started, bytes, result);
    }

    /// One multipart upload of `parts` parts; returns whether it completed.
    async fn multipart(&mut self, key: &str) {
        let path = self.plan.key_path(key);
        let query = query_string(&[("uploads", "")]);
        let started = Instant::now();
        let created = self
            .send(&Request {
                method: "POST",
                path: &path,
                query: &query,
                headers: &[],
                body: &[],
                keep_body: true,
            })
            .await
            .and_then(|response| {
                element_text(&response.body, "UploadId").ok_or_else(|| "no UploadId".to_owned())
            });
        let upload_id = match created {
            Ok(id) => {
                self.record(Op::MultipartCreate, started, 0, Ok(()));
                id
            }
            Err(error) => {
                self.record(Op::MultipartCreate, started, 0, Err(error));
                return;
            }
        };
        let mut etags = Vec::new();
        let part_size = self.plan.part_size;
        let payload = self.payload.clone();
        let body = &payload[..usize::try_from(part_size).expect("part fits memory")];
        for number in 1..=self.plan.parts {
            if !self.running() {
                break;
            }
            let number_text = number.to_string();
            let query = query_string(&[("partNumber", &number_text), ("uploadId", &upload_id)]);
            let started = Instant::now();
            let result = self
                .send(&Request {
                    method: "PUT",
                    path: &path,
                    query: &query,
                    headers: &[],
                    body,
                    keep_body: false,
                })
                .await
                .and_then(|response| response.etag.ok_or_else(|| "no ETag".to_owned()));
            match result {
                Ok(etag) => {
                    etags.push(etag);
                    self.record(Op::MultipartPart, started, part_size, Ok(()));
                }
                Err(error) => {
                    self.record(Op::MultipartPart, started, 0, Err(error));
                    break;
                }
            }
        }
        self.finish_upload(&path, &upload_id, &etags).await;
    }

    /// Complete the upload if every part is in, abort it otherwise.
    async fn finish_upload(&mut self, path: &str, upload_id: &str, etags: &[String]) {
        let query = query_string(&[("uploadId", upload_id)]);
        if etags.len() < self.plan.parts as usize {
            // Stopped (deadline or error): leave nothing behind.
            let _ = self
                .send(&Request {
                    method: "DELETE",
                    path,
                    query: &query,
                    headers: &[],
                    body: &[],
                    keep_body: false,
                })
                .await;
            return;
        }
        let mut xml = String::from("<CompleteMultipartUpload>");
        for (index, etag) in etags.iter().enumerate() {
            let _ = write!(
                xml,
                "<Part><PartNumber>{}</PartNumber><ETag>{}</ETag></Part>",
                index + 1,
                etag.replace('"', "&quot;")
            );
        }
        xml.push_str("</CompleteMultipartUpload>");
        let started = Instant::now();
        let result = self
            .send(&Request {
                method: "POST",
                path,
                query: &query,
                headers: &[],
                body: xml.as_bytes(),
                keep_body: true,
            })
            .await
            .and_then(|response| {
                // A completion can fail inside a 200 response.
                if element_text(&response.body, "Code").is_some() {
                    Err(String::from_utf8_lossy(&response.body).into_owned())
                } else {
                    Ok(())
                }
            });
        self.record(Op::MultipartComplete, started, 0, result);
    }
}

/// Count non-overlapping occurrences of `needle`.
fn count_occurrences(haystack: &[u8], needle: &[u8]) -> usize {
    haystack
        .windows(needle.len())
        .filter(|window| *window == needle)
        .count()
}

/// The text of the first `<name>` element (no entity decoding: ids and
/// tokens are plain).
fn element_text(body: &[u8], name: &str) -> Option<String> {
    let text = std::str::from_utf8(body).ok()?;
    let open = format!("<{name}>");
    let start = text.find(&open)? + open.len();
    let end = start + text[start..].find(&format!("</{name}>"))?;
    Some(text[start..end].to_owned())
}

/// What one phase runs on each worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Job {
    /// Upload the prepared objects (index ≡ worker mod workers).
    Prepare,
    Measure,
    /// Delete every key under the run's prefix (one worker).
    Cleanup,
}

async fn run_worker(mut worker: Worker, job: Job, workers: usize) -> WorkerStats {
    let plan = worker.plan.clone();
    let id = worker.id;
    match (job, plan.benchmark) {
        (Job::Prepare, _) => {
            for index in (id..plan.objects).step_by(workers) {
                let size = plan.object_size(index);
                let _ = worker.put(Op::Put, &plan.object_key(index), size).await;
            }
        }
        (Job::Cleanup, _) => cleanup(&mut worker).await,
        (Job::Measure, Benchmark::Put) => {
            let mut sequence = 0u64;
            while worker.running() {
                let key = format!("{}/put/{id:04}/{sequence:010}", plan.prefix);
                sequence += 1;
                let size = plan.draw_size(&mut worker.rng);
                let _ = worker.put(Op::Put, &key, size).await;
            }
        }
        (Job::Measure, Benchmark::Get) => {
            while worker.running() {
                let index = worker.rng.below(plan.objects);
                worker
                    .get(&plan.object_key(index), plan.object_size(index))
                    .await;
            }
        }
        (Job::Measure, Benchmark::Stat) => {
            while worker.running() {
                let index = worker.rng.below(plan.objects);
                worker.stat(&plan.object_key(index)).await;
            }
        }
        (Job::Measure, Benchmark::Delete) => {
            for index in (id..plan.objects).step_by(workers) {
                if !worker.running() {
                    break;
                }
                worker.delete(&plan.object_key(index)).await;
            }
        }
        (Job::Measure, Benchmark::List) => {
            while worker.running() {
                let last_start = plan.objects.saturating_sub(plan.page);
                let start = worker.rng.below(last_start + 1);
                let start_after = (start > 0).then(|| plan.object_key(start - 1));
                worker.list_page(start_after.as_deref()).await;
            }
        }
        (Job::Measure, Benchmark::Multipart) => {
            let mut sequence = 0u64;
            while worker.running() {
                let key = format!("{}/mpu/{id:04}/{sequence:010}", plan.prefix);
                sequence += 1;
                worker.multipart(&key).await;
            }
        }
        (Job::Measure, Benchmark::Mixed) => mixed(&mut worker, workers).await,
    }
    worker.stats
}

async fn mixed(worker: &mut Worker, workers: usize) {
    let plan = worker.plan.clone();
    let mut live: Vec<(String, u64)> = (worker.id..plan.objects)
        .step_by(workers)
        .map(|index| (plan.object_key(index), plan.object_size(index)))
        .collect();
    let mix = plan.mix;
    let total = mix.get + mix.stat + mix.put + mix.delete;
    let mut sequence = 0u64;
    while worker.running() {
        let draw =
            u32::try_from(worker.rng.next_u64() % u64::from(total.max(1))).expect("below a u32");
        if live.is_empty() || draw >= mix.get + mix.stat + mix.delete {
            let key = format!("{}/mix/{:04}/{sequence:010}", plan.prefix, worker.id);
            sequence += 1;
            let size = plan.draw_size(&mut worker.rng);
            if worker.put(Op::Put, &key, size).await.is_ok() {
                live.push((key, size));
            }
            continue;
        }
        let pick = worker.rng.below(live.len());
        if draw < mix.get {
            let (key, size) = live[pick].clone();
            worker.get(&key, size).await;
        } else if draw < mix.get + mix.stat {
            let key = live[pick].0.clone();
            worker.stat(&key).await;
        } else {
            let (key, _) = live.swap_remove(pick);
            worker.delete(&key).await;
        }
    }
}

/// List everything under the prefix and delete it in `DeleteObjects`
/// batches of up to 1000 keys.
async fn cleanup(worker: &mut Worker) {
    let prefix = format!("{}/", worker.plan.prefix);
    let path = worker.plan.bucket_path();
    loop {
        let query = query_string(&[
            ("list-type", "2"),
            ("prefix", &prefix),
            ("max-keys", "1000"),
        ]);
        let listed = worker
            .send(&Request {
                method: "GET",
                path: &path,
                query: &query,
                headers: &[],
                body: &[],
                keep_body: true,
            })
            .await;
        let body = match listed {
            Ok(response) => response.body,
            Err(error) => {
                worker
                    .stats
                    .error_samples
                    .push(format!("cleanup list: {error}"));
                return;
            }
        };
        let text = String::from_utf8_lossy(&body);
        let keys: Vec<&str> = text
            .split("<Key>")
            .skip(1)
            .filter_map(|rest| rest.split("</Key>").next())
            .collect();
        if keys.is_empty() {
            return;
        }
        let mut xml = String::from("<Delete><Quiet>true</Quiet>");
        for key in &keys {
            // Keys come back XML-escaped; they go back the same way.
            let _ = write!(xml, "<Object><Key>{key}</Key></Object>");
        }
        xml.push_str("</Delete>");
        let md5 = base64::engine::general_purpose::STANDARD.encode(Md5::digest(xml.as_bytes()));
        let query = query_string(&[("delete", "")]);
        let result = worker
            .send(&Request {
                method: "POST",
                path: &path,
                query: &query,
                headers: &[("content-md5", &md5)],
                body: xml.as_bytes(),
                keep_body: true,
            })
            .await;
        if let Err(error) = result {
            worker
                .stats
                .error_samples
                .push(format!("cleanup delete: {error}"));
            return;
        }
    }
}

/// Samples of the server process while a phase runs.
#[derive(Debug, Default, Clone, Copy)]
pub struct ServerSample {
    pub cpu_seconds: f64,
    pub rss_bytes: u64,
}

/// CPU time (user + system) and resident memory of a process.
pub fn sample_process(pid: u32) -> Option<ServerSample> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which may contain spaces.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let ticks = if ticks > 0 { ticks as f64 } else { 100.0 };
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss_kib: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|number| number.parse().ok())
        .unwrap_or(0);
    Some(ServerSample {
        cpu_seconds: (utime + stime) as f64 / ticks,
        rss_bytes: rss_kib * 1024,
    })
}

/// CPU time this process has used.
pub fn own_cpu_seconds() -> f64 {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage writes a full rusage into the pointer on success.
    let usage = unsafe {
        if libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr()) != 0 {
            return 0.0;
        }
        usage.assume_init()
    };
    let seconds = |time: libc::timeval| time.tv_sec as f64 + time.tv_usec as f64 / 1e6;
    seconds(usage.ru_utime) + seconds(usage.ru_stime)
}

/// What a phase produced.
pub struct PhaseOutcome {
    pub stats: Vec<WorkerStats>,
    pub wall: Duration,
    pub server_before: Option<ServerSample>,
    pub server_after: Option<ServerSample>,
    pub server_rss_max: u64,
    pub client_cpu_seconds: f64,
}

/// How the client threads start together: each waits until the epoch is
/// set, then runs its workers until the deadline. `failed` tells them to
/// skip the work (another thread could not start).
#[derive(Default)]
struct Start {
    epoch: std::sync::OnceLock<Instant>,
    failed: AtomicBool,
}

impl Start {
    fn wait(&self) -> Option<Instant> {
        loop {
            if let Some(epoch) = self.epoch.get() {
                return (!self.failed.load(Ordering::SeqCst)).then_some(*epoch);
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

type ClientThread = glommio::ExecutorJoinHandle<Vec<WorkerStats>>;

/// Start the client threads of a phase; they wait for `start`.
fn spawn_clients(
    plan: &Arc<Plan>,
    job: Job,
    workers: usize,
    duration: Duration,
    start: &Arc<Start>,
    progress: &Arc<Progress>,
    running: &Arc<AtomicUsize>,
) -> Result<Vec<ClientThread>, String> {
    let threads = running.load(Ordering::SeqCst);
    let payload_bytes = match job {
        Job::Prepare | Job::Measure => {
            usize::try_from(plan.size_max.max(plan.part_size)).map_err(|_| "size too large")?
        }
        Job::Cleanup => 0,
    };
    let mut handles = Vec::with_capacity(threads);
    for thread in 0..threads {
        // Workers thread, thread + threads, ... run on this thread.
        let ids: Vec<usize> = (thread..workers).step_by(threads).collect();
        let plan = plan.clone();
        let progress = progress.clone();
        let running = running.clone();
        let thread_start = start.clone();
        let handle = LocalExecutorBuilder::new(Placement::Unbound)
            .name(&format!("bench-{thread}"))
            .io_memory(1 << 20)
            .spawn(move || async move {
                let payload = Rc::new(random_payload(payload_bytes, plan.seed ^ thread as u64));
                let mut results = Vec::new();
                if let Some(epoch) = thread_start.wait() {
                    let deadline = epoch + duration;
                    let tasks: Vec<_> = ids
                        .into_iter()
                        .map(|id| {
                            let worker = Worker {
                                plan: plan.clone(),
                                id,
                                client: Client::new(&plan.endpoint),
                                rng: Rng::new(
                                    plan.seed ^ (id as u64 + 1).wrapping_mul(0xA24B_AED4_963E_E407),
                                ),
                                epoch,
                                deadline,
                                progress: progress.clone(),
                                stats: WorkerStats::default(),
                                payload: payload.clone(),
                            };
                            glommio::spawn_local(run_worker(worker, job, workers))
                        })
                        .collect();
                    for task in tasks {
                        results.push(task.await);
                    }
                }
                running.fetch_sub(1, Ordering::SeqCst);
                results
            });
        match handle {
            Ok(handle) => handles.push(handle),
            Err(error) => {
                start.failed.store(true, Ordering::SeqCst);
                let _ = start.epoch.set(Instant::now());
                for handle in handles {
                    let _ = handle.join();
                }
                return Err(format!(
                    "cannot start a client executor: {error} (glommio needs locked memory: raise `ulimit -l`)"
                ));
            }
        }
    }
    Ok(handles)
}

/// Run `job` on `workers` workers spread over the plan's threads, printing
/// a progress line (on stderr) each second.
fn run_phase(
    plan: &Arc<Plan>,
    job: Job,
    workers: usize,
    label: &str,
    duration: Duration,
) -> Result<PhaseOutcome, String> {
    let threads = plan.threads.clamp(1, workers.max(1));
    let progress = Arc::new(Progress::default());
    let running = Arc::new(AtomicUsize::new(threads));
    let start = Arc::new(Start::default());
    let handles = spawn_clients(plan, job, workers, duration, &start, &progress, &running)?;
    let server_before = plan.server_pid.and_then(sample_process);
    let client_before = own_cpu_seconds();
    let epoch = Instant::now();
    start.epoch.set(epoch).expect("set once");
    let mut server_rss_max = watch(plan, label, epoch, &progress, &running);
    server_rss_max = server_rss_max.max(server_before.map_or(0, |sample| sample.rss_bytes));
    let mut stats = Vec::new();
    for handle in handles {
        stats.extend(
            handle
                .join()
                .map_err(|error| format!("client thread failed: {error}"))?,
        );
    }
    let wall = stats
        .iter()
        .map(|worker| worker.finished)
        .max()
        .unwrap_or_default()
        .max(Duration::from_millis(1));
    let server_after = plan.server_pid.and_then(sample_process);
    if let Some(sample) = server_after {
        server_rss_max = server_rss_max.max(sample.rss_bytes);
    }
    Ok(PhaseOutcome {
        stats,
        wall,
        server_before,
        server_after,
        server_rss_max,
        client_cpu_seconds: own_cpu_seconds() - client_before,
    })
}

/// Until the client threads are done: sample the server's memory and print
/// the progress line (every second on a terminal, every 5 s otherwise).
/// Returns the largest server RSS seen.
fn watch(
    plan: &Plan,
    label: &str,
    epoch: Instant,
    progress: &Progress,
    running: &AtomicUsize,
) -> u64 {
    let mut server_rss_max = 0;
    let mut last_print = Instant::now();
    let tty = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let interval = if tty {
        Duration::from_secs(1)
    } else {
        Duration::from_secs(5)
    };
    let mut last_totals = (0, 0, 0);
    while running.load(Ordering::SeqCst) > 0 {
        std::thread::sleep(Duration::from_millis(50));
        if let Some(sample) = plan.server_pid.and_then(sample_process) {
            server_rss_max = server_rss_max.max(sample.rss_bytes);
        }
        if plan.progress && last_print.elapsed() >= interval {
            let totals = progress.totals();
            let seconds = last_print.elapsed().as_secs_f64();
            last_print = Instant::now();
            let line = format!(
                "{label} {:>5.0}s  {:>10.1} ops/s  {:>9.1} MiB/s  {} ops  {} errors",
                epoch.elapsed().as_secs_f64(),
                (totals.0 - last_totals.0) as f64 / seconds,
                (totals.1 - last_totals.1) as f64 / seconds / MIB,
                totals.0,
                totals.2,
            );
            last_totals = totals;
            if tty {
                eprint!("\r\x1b[2K{line}");
            } else {
                eprintln!("{line}");
            }
        }
    }
    if plan.progress && tty {
        eprint!("\r\x1b[2K");
    }
    server_rss_max
}

pub const MIB: f64 = 1024.0 * 1024.0;

fn random_payload(bytes: usize, seed: u64) -> Vec<u8> {
    let mut rng = Rng::new(seed);
    let mut payload = Vec::with_capacity(bytes + 8);
    while payload.len() < bytes {
        payload.extend_from_slice(&rng.next_u64().to_le_bytes());
    }
    payload.truncate(bytes);
    payload
}

/// One request on the bucket itself (`PUT` or `DELETE`), on an executor of
/// its own.
fn bucket_request(plan: &Arc<Plan>, method: &'static str) -> Result<Response, String> {
    let plan = plan.clone();
    LocalExecutorBuilder::new(Placement::Unbound)
        .io_memory(1 << 20)
        .spawn(move || async move {
            let mut client = Client::new(&plan.endpoint);
            let path = plan.bucket_path();
            let request = Request {
                method,
                path: &path,
                query: "",
                headers: &[],
                body: &[],
                keep_body: true,
            };
            client
                .send(&request)
                .await
                .map_err(|error| error.to_string())
        })
        .map_err(|error| error.to_string())?
        .join()
        .map_err(|error| error.to_string())?
}

/// Create the bucket if it is missing; true if this run created it.
fn create_bucket(plan: &Arc<Plan>) -> Result<bool, String> {
    let outcome = bucket_request(plan, "PUT")?;
    if outcome.is_success() {
        return Ok(true);
    }
    if outcome.describe_error().contains("BucketAlreadyOwnedByYou") {
        return Ok(false);
    }
    Err(format!(
        "cannot create bucket {}: {}",
        plan.bucket,
        outcome.describe_error()
    ))
}

fn delete_bucket(plan: &Arc<Plan>) -> Result<(), String> {
    let response = bucket_request(plan, "DELETE")?;
    if response.is_success() {
        Ok(())
    } else {
        Err(format!(
            "cannot delete bucket {}: {}",
            plan.bucket,
            response.describe_error()
        ))
    }
}

/// Run the whole benchmark: bucket, preparation, measurement, cleanup.
pub fn run(plan: Plan) -> Result<RunResult, String> {
    let plan = Arc::new(plan);
    let created = create_bucket(&plan)?;
    let forever = Duration::from_hours(365 * 24);
    if plan.benchmark.prepares() {
        if plan.objects == 0 {
            return Err("this benchmark needs --objects above 0".into());
        }
        let workers = plan.concurrency.min(plan.objects);
        let prepared = run_phase(&plan, Job::Prepare, workers, "prepare", forever)?;
        let errors: u64 = prepared
            .stats
            .iter()
            .map(|worker| worker.errors.iter().sum::<u64>())
            .sum();
        if errors > 0 {
            let sample = prepared
                .stats
                .iter()
                .flat_map(|worker| worker.error_samples.iter())
                .next()
                .cloned()
                .unwrap_or_default();
            finish(&plan, created);
            return Err(format!(
                "preparing {} objects failed {errors} times, e.g. {sample}",
                plan.objects
            ));
        }
    }
    let measured = run_phase(
        &plan,
        Job::Measure,
        plan.concurrency,
        plan.benchmark.name(),
        plan.duration,
    );
    finish(&plan, created);
    let measured = measured?;
    Ok(report::summarize(&plan, &measured))
}

/// Clean up what the run created (unless told not to).
fn finish(plan: &Arc<Plan>, created: bool) {
    if !plan.cleanup {
        return;
    }
    match run_phase(
        plan,
        Job::Cleanup,
        1,
        "cleanup",
        Duration::from_hours(365 * 24),
    ) {
        Ok(outcome) => {
            for sample in outcome
                .stats
                .iter()
                .flat_map(|worker| worker.error_samples.iter())
            {
                eprintln!("cleanup: {sample}");
            }
        }
        Err(error) => eprintln!("cleanup: {error}"),
    }
    if created && let Err(error) = delete_bucket(plan) {
        eprintln!("cleanup: {error}");
    }
}
