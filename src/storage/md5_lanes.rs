//! MD5 of many streams side by side: the `ETag` of every PUT and part.
//!
//! MD5 is sequential within one stream and costs about 1.8 ms per MiB on one
//! core here, which made it most of a PUT's CPU time. But a busy core has
//! many uploads in flight at once, and with AVX-512 one instruction does the
//! same 32-bit step for 16 streams: the multi-buffer technique of Intel's
//! `isa-l_crypto` and of `MinIO`'s `md5-simd`. [`update_many`] hashes up to 16
//! streams in lanes of one 512-bit register; [`Batcher`] gathers the
//! streams that a core's uploads have ready at one moment and hashes them
//! together.
//!
//! Results are bit-identical to RFC 1321: the tests compare against the
//! `md-5` crate for random lengths, pieces and lane counts. A stream hashed
//! alone, or every stream without AVX-512 (checked at run time), goes
//! through aws-lc's assembly block function (`storage::md5`); the portable
//! compression below pads the last blocks and is the tests' reference.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

/// Streams hashed at once by the vector kernel.
pub const LANES: usize = 16;

const BLOCK: usize = 64;

/// Fewer streams than this go through aws-lc one after the other: the
/// vector kernel costs the same whatever lanes are used (about 295 MiB/s
/// per lane's worth here), and aws-lc does 770 MiB/s for one stream, so
/// the kernel only wins from three streams on.
const VECTOR_LANES_MIN: usize = 3;

/// The sine-derived additive constants of RFC 1321.
const K: [u32; 64] = [
    0xd76a_a478,
    0xe8c7_b756,
    0x2420_70db,
    0xc1bd_ceee,
    0xf57c_0faf,
    0x4787_c62a,
    0xa830_4613,
    0xfd46_9501,
    0x6980_98d8,
    0x8b44_f7af,
    0xffff_5bb1,
    0x895c_d7be,
    0x6b90_1122,
    0xfd98_7193,
    0xa679_438e,
    0x49b4_0821,
    0xf61e_2562,
    0xc040_b340,
    0x265e_5a51,
    0xe9b6_c7aa,
    0xd62f_105d,
    0x0244_1453,
    0xd8a1_e681,
    0xe7d3_fbc8,
    0x21e1_cde6,
    0xc337_07d6,
    0xf4d5_0d87,
    0x455a_14ed,
    0xa9e3_e905,
    0xfcef_a3f8,
    0x676f_02d9,
    0x8d2a_4c8a,
    0xfffa_3942,
    0x8771_f681,
    0x6d9d_6122,
    0xfde5_380c,
    0xa4be_ea44,
    0x4bde_cfa9,
    0xf6bb_4b60,
    0xbebf_bc70,
    0x289b_7ec6,
    0xeaa1_27fa,
    0xd4ef_3085,
    0x0488_1d05,
    0xd9d4_d039,
    0xe6db_99e5,
    0x1fa2_7cf8,
    0xc4ac_5665,
    0xf429_2244,
    0x432a_ff97,
    0xab94_23a7,
    0xfc93_a039,
    0x655b_59c3,
    0x8f0c_cc92,
    0xffef_f47d,
    0x8584_5dd1,
    0x6fa8_7e4f,
    0xfe2c_e6e0,
    0xa301_4314,
    0x4e08_11a1,
    0xf753_7e82,
    0xbd3a_f235,
    0x2ad7_d2bb,
    0xeb86_d391,
];

/// Left-rotation of each step.
const S: [u32; 64] = [
    7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22, 5, 9, 14, 20, 5, 9, 14, 20, 5, 9,
    14, 20, 5, 9, 14, 20, 4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23, 6, 10, 15,
    21, 6, 10, 15, 21, 6, 10, 15, 21, 6, 10, 15, 21,
];

const INITIAL: [u32; 4] = [0x6745_2301, 0xefcd_ab89, 0x98ba_dcfe, 0x1032_5476];

/// The message word step `step` reads.
const fn word_index(step: usize) -> usize {
    match step / 16 {
        0 => step,
        1 => (5 * step + 1) % 16,
        2 => (3 * step + 5) % 16,
        _ => (7 * step) % 16,
    }
}

/// One MD5 computation in progress.
#[derive(Clone)]
pub struct Md5Stream {
    state: [u32; 4],
    /// Bytes of a block not complete yet.
    pending: [u8; BLOCK],
    pending_len: usize,
    length: u64,
}

impl Default for Md5Stream {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for Md5Stream {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Md5Stream")
            .field("length", &self.length)
            .finish_non_exhaustive()
    }
}

impl Md5Stream {
    #[must_use]
    pub fn new() -> Self {
        Self {
            state: INITIAL,
            pending: [0; BLOCK],
            pending_len: 0,
            length: 0,
        }
    }

    /// Absorb `data` (this stream alone).
    pub fn update(&mut self, data: &[u8]) {
        update_many(&mut [(self, data)]);
    }

    /// The 16-byte digest.
    #[must_use]
    pub fn finalize(mut self) -> [u8; 16] {
        let bits = self.length.wrapping_mul(8);
        let mut tail = [0u8; 2 * BLOCK];
        tail[..self.pending_len].copy_from_slice(&self.pending[..self.pending_len]);
        tail[self.pending_len] = 0x80;
        let total = if self.pending_len < 56 {
            BLOCK
        } else {
            2 * BLOCK
        };
        tail[total - 8..total].copy_from_slice(&bits.to_le_bytes());
        compress_scalar(&mut self.state, &tail[..total]);
        let mut digest = [0u8; 16];
        for (chunk, word) in digest.chunks_exact_mut(4).zip(self.state) {
            chunk.copy_from_slice(&word.to_le_bytes());
        }
        digest
    }

    /// Complete the pending block from `data`; returns the bytes used.
    fn top_up(&mut self, data: &[u8]) -> usize {
        if self.pending_len == 0 {
            return 0;
        }
        let take = (BLOCK - self.pending_len).min(data.len());
        self.pending[self.pending_len..self.pending_len + take].copy_from_slice(&data[..take]);
        self.pending_len += take;
        if self.pending_len == BLOCK {
            let block = self.pending;
            compress_scalar(&mut self.state, &block);
            self.pending_len = 0;
        }
        take
    }
}

/// Absorb one slice into each stream. Whole blocks of up to [`LANES`]
/// streams go through the vector kernel together when the CPU has AVX-512.
pub fn update_many(jobs: &mut [(&mut Md5Stream, &[u8])]) {
    // Per job: the run of whole blocks still to compress.
    let mut runs: Vec<(usize, &[u8])> = Vec::with_capacity(jobs.len());
    for (index, (stream, data)) in jobs.iter_mut().enumerate() {
        stream.length = stream.length.wrapping_add(data.len() as u64);
        let used = stream.top_up(data);
        let rest = &data[used..];
        let whole = rest.len() / BLOCK * BLOCK;
        let (blocks, tail) = rest.split_at(whole);
        if !tail.is_empty() {
            // A tail only remains when the pending block was emptied.
            stream.pending[..tail.len()].copy_from_slice(tail);
            stream.pending_len = tail.len();
        }
        if !blocks.is_empty() {
            runs.push((index, blocks));
        }
    }
    let vector = vector_kernel_available();
    while !runs.is_empty() {
        if runs.len() < VECTOR_LANES_MIN || !vector {
            for (index, blocks) in runs.drain(..) {
                super::md5::compress_blocks(&mut jobs[index].0.state, blocks);
            }
            break;
        }
        // Up to 16 streams, as many blocks as the shortest of them has.
        let group = runs.len().min(LANES);
        let count = runs[..group]
            .iter()
            .map(|(_, blocks)| blocks.len() / BLOCK)
            .min()
            .expect("a group is not empty");
        let mut states = [[0u32; 4]; LANES];
        let mut inputs: [&[u8]; LANES] = [runs[0].1; LANES];
        for (lane, (index, blocks)) in runs[..group].iter().enumerate() {
            states[lane] = jobs[*index].0.state;
            inputs[lane] = blocks;
        }
        compress_lanes(&mut states, &inputs, count);
        for (lane, (index, blocks)) in runs[..group].iter_mut().enumerate() {
            jobs[*index].0.state = states[lane];
            *blocks = &blocks[count * BLOCK..];
        }
        runs.retain(|(_, blocks)| !blocks.is_empty());
    }
}

fn vector_kernel_available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512f")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Compress `count` blocks of each lane's input (lanes beyond the caller's
/// streams repeat one of them; their states are ignored).
fn compress_lanes(states: &mut [[u32; 4]; LANES], inputs: &[&[u8]; LANES], count: usize) {
    for input in inputs {
        assert!(input.len() >= count * BLOCK, "every lane has the blocks");
    }
    #[cfg(target_arch = "x86_64")]
    {
        if vector_kernel_available() {
            // SAFETY: AVX-512F was detected just above, and every input
            // holds `count` blocks (asserted).
            unsafe { avx512::compress(states, inputs, count) };
            return;
        }
    }
    for (state, input) in states.iter_mut().zip(inputs) {
        super::md5::compress_blocks(state, &input[..count * BLOCK]);
    }
}

/// The portable compression function over whole blocks, unrolled so that
/// every step's function, constant, word and rotation are fixed.
fn compress_scalar(state: &mut [u32; 4], blocks: &[u8]) {
    macro_rules! step {
        ($f:expr, $a:ident, $b:ident, $c:ident, $d:ident, $words:ident, $i:expr) => {
            $a = $b.wrapping_add(
                $a.wrapping_add($f($b, $c, $d))
                    .wrapping_add(K[$i])
                    .wrapping_add($words[word_index($i)])
                    .rotate_left(S[$i]),
            );
        };
    }
    macro_rules! four {
        ($f:expr, $a:ident, $b:ident, $c:ident, $d:ident, $words:ident, $i:expr) => {
            step!($f, $a, $b, $c, $d, $words, $i);
            step!($f, $d, $a, $b, $c, $words, $i + 1);
            step!($f, $c, $d, $a, $b, $words, $i + 2);
            step!($f, $b, $c, $d, $a, $words, $i + 3);
        };
    }
    let round_f = |b: u32, c: u32, d: u32| (b & c) | (!b & d);
    let round_g = |b: u32, c: u32, d: u32| (b & d) | (c & !d);
    let round_h = |b: u32, c: u32, d: u32| b ^ c ^ d;
    let round_i = |b: u32, c: u32, d: u32| c ^ (b | !d);
    debug_assert!(blocks.len().is_multiple_of(BLOCK));
    for block in blocks.chunks_exact(BLOCK) {
        let mut words = [0u32; 16];
        for (word, bytes) in words.iter_mut().zip(block.chunks_exact(4)) {
            *word = u32::from_le_bytes(bytes.try_into().expect("four bytes"));
        }
        let [mut a, mut b, mut c, mut d] = *state;
        four!(round_f, a, b, c, d, words, 0);
        four!(round_f, a, b, c, d, words, 4);
        four!(round_f, a, b, c, d, words, 8);
        four!(round_f, a, b, c, d, words, 12);
        four!(round_g, a, b, c, d, words, 16);
        four!(round_g, a, b, c, d, words, 20);
        four!(round_g, a, b, c, d, words, 24);
        four!(round_g, a, b, c, d, words, 28);
        four!(round_h, a, b, c, d, words, 32);
        four!(round_h, a, b, c, d, words, 36);
        four!(round_h, a, b, c, d, words, 40);
        four!(round_h, a, b, c, d, words, 44);
        four!(round_i, a, b, c, d, words, 48);
        four!(round_i, a, b, c, d, words, 52);
        four!(round_i, a, b, c, d, words, 56);
        four!(round_i, a, b, c, d, words, 60);
        state[0] = state[0].wrapping_add(a);
        state[1] = state[1].wrapping_add(b);
        state[2] = state[2].wrapping_add(c);
        state[3] = state[3].wrapping_add(d);
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::{
        __m512i, _mm512_add_epi32, _mm512_loadu_si512, _mm512_rolv_epi32, _mm512_set1_epi32,
        _mm512_storeu_si512, _mm512_ternarylogic_epi32,
    };

    use super::{BLOCK, K, LANES, S, word_index};

    /// `count` blocks of 16 lanes. Each block's message words are first
    /// transposed into `words[w][lane]`, so that one load gives word `w` of
    /// every lane.
    ///
    /// # Safety
    /// The CPU must support AVX-512F, and every input must hold `count`
    /// blocks.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn compress(
        states: &mut [[u32; 4]; LANES],
        inputs: &[&[u8]; LANES],
        count: usize,
    ) {
        let mut columns = [[0u32; LANES]; 4];
        for (lane, state) in states.iter().enumerate() {
            for (column, word) in columns.iter_mut().zip(state) {
                column[lane] = *word;
            }
        }
        // SAFETY (all loads and stores below): each array is 64 bytes, one
        // unaligned 512-bit access.
        let load = |column: &[u32; LANES]| unsafe { _mm512_loadu_si512(column.as_ptr().cast()) };
        let mut a = load(&columns[0]);
        let mut b = load(&columns[1]);
        let mut c = load(&columns[2]);
        let mut d = load(&columns[3]);
        let mut words = [[0u32; LANES]; 16];
        for block in 0..count {
            let offset = block * BLOCK;
            for (lane, input) in inputs.iter().enumerate() {
                let bytes = &input[offset..offset + BLOCK];
                for (word, chunk) in bytes.chunks_exact(4).enumerate() {
                    words[word][lane] = u32::from_le_bytes(chunk.try_into().expect("four bytes"));
                }
            }
            let message: [__m512i; 16] = std::array::from_fn(|word| load(&words[word]));
            let (saved_a, saved_b, saved_c, saved_d) = (a, b, c, d);
            for step in 0..64 {
                let mixed = match step / 16 {
                    0 => _mm512_ternarylogic_epi32::<0xca>(b, c, d),
                    1 => _mm512_ternarylogic_epi32::<0xe4>(b, c, d),
                    2 => _mm512_ternarylogic_epi32::<0x96>(b, c, d),
                    _ => _mm512_ternarylogic_epi32::<0x39>(b, c, d),
                };
                #[expect(clippy::cast_possible_wrap, reason = "the constant's bits, as i32")]
                let constant = _mm512_set1_epi32(K[step] as i32);
                let sum = _mm512_add_epi32(
                    _mm512_add_epi32(a, mixed),
                    _mm512_add_epi32(constant, message[word_index(step)]),
                );
                #[expect(clippy::cast_possible_wrap, reason = "shifts are below 32")]
                let rotated = _mm512_rolv_epi32(sum, _mm512_set1_epi32(S[step] as i32));
                a = d;
                d = c;
                c = b;
                b = _mm512_add_epi32(b, rotated);
            }
            a = _mm512_add_epi32(a, saved_a);
            b = _mm512_add_epi32(b, saved_b);
            c = _mm512_add_epi32(c, saved_c);
            d = _mm512_add_epi32(d, saved_d);
        }
        for (column, vector) in columns.iter_mut().zip([a, b, c, d]) {
            // SAFETY: a 64-byte array, one unaligned 512-bit store.
            unsafe { _mm512_storeu_si512(column.as_mut_ptr().cast(), vector) };
        }
        for (lane, state) in states.iter_mut().enumerate() {
            for (word, column) in state.iter_mut().zip(&columns) {
                *word = column[lane];
            }
        }
    }
}

/// How long the oldest queued piece may wait for others to join its
/// batch. Uploads do not wait for it: each hands in a full buffer and fills
/// its second one meanwhile (see `s3::put::receive_extents`), which takes
/// longer than this under the loads where batching pays.
pub const BATCH_WAIT: Duration = Duration::from_millis(10);

/// A core's MD5 work queue. Uploads hand in a stream and a buffer
/// ([`Batcher::submit`]) and later get both back hashed; one task per core
/// drains the queue, hashing everything queued in lanes side by side. It
/// drains as soon as every upload in progress on the core has a piece
/// queued (or [`LANES`] of them), when an upload is blocked on its piece
/// ([`Ticket::hurry`]) or submitted it as urgent, or when the oldest piece
/// has waited [`BATCH_WAIT`]. Single-threaded: one per
/// executor.
pub struct Batcher {
    queue: RefCell<Vec<Job>>,
    /// Set by a submit that must not wait (the last piece of a body).
    urgent: Cell<bool>,
    /// Uploads receiving a body on this core ([`Batcher::begin_upload`]).
    active: Cell<usize>,
    /// The draining task waits here for work.
    waiting: Cell<Option<Waker>>,
    /// Counters: batches run and streams hashed (average lanes = ratio).
    batches: Cell<u64>,
    streams: Cell<u64>,
    /// Batches that ran because their oldest piece waited [`BATCH_WAIT`]
    /// out (rather than because the batch was full or hurried).
    waited_out: Cell<u64>,
}

struct Job {
    stream: Md5Stream,
    buffer: Vec<u8>,
    len: usize,
    done: Rc<Done>,
}

#[derive(Default)]
struct Done {
    result: RefCell<Option<(Md5Stream, Vec<u8>)>>,
    waker: Cell<Option<Waker>>,
}

thread_local! {
    static BATCHER: Rc<Batcher> = Batcher::start();
}

/// Counts an upload as in progress until dropped.
pub struct ActiveUpload {
    batcher: Rc<Batcher>,
}

impl Drop for ActiveUpload {
    fn drop(&mut self) {
        self.batcher.active.set(self.batcher.active.get() - 1);
        // One fewer upload to wait for.
        self.batcher.wake_drainer();
    }
}

/// A submitted piece: await it for the stream and the buffer back.
pub struct Ticket {
    done: Rc<Done>,
    /// Set by [`Ticket::hurry`]: the batcher to tell that an upload is
    /// blocked on this piece.
    hurry: Option<Rc<Batcher>>,
}

impl Ticket {
    /// Await the piece as an upload that cannot go on without it (its next
    /// buffer is full): the batch runs as soon as this is waited on, so a
    /// fast upload is never held to one piece per [`BATCH_WAIT`] by slow
    /// uploads on the same core.
    #[must_use]
    pub fn hurry(mut self) -> Ticket {
        self.hurry = Some(Batcher::local());
        self
    }
}

impl Future for Ticket {
    type Output = (Md5Stream, Vec<u8>);

    fn poll(mut self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<Self::Output> {
        if let Some(result) = self.done.result.borrow_mut().take() {
            return Poll::Ready(result);
        }
        self.done.waker.set(Some(context.waker().clone()));
        if let Some(batcher) = self.hurry.take() {
            batcher.urgent.set(true);
            batcher.wake_drainer();
        }
        Poll::Pending
    }
}

impl Batcher {
    fn start() -> Rc<Batcher> {
        let batcher = Rc::new(Batcher {
            queue: RefCell::new(Vec::new()),
            urgent: Cell::new(false),
            active: Cell::new(0),
            waiting: Cell::new(None),
            batches: Cell::new(0),
            streams: Cell::new(0),
            waited_out: Cell::new(0),
        });
        let drainer = Rc::clone(&batcher);
        glommio::spawn_local(async move { drainer.drain().await }).detach();
        batcher
    }

    /// This executor's batcher (started on first use).
    pub fn local() -> Rc<Batcher> {
        BATCHER.with(Rc::clone)
    }

    /// Count an upload as in progress while the guard lives.
    pub fn begin_upload(self: &Rc<Self>) -> ActiveUpload {
        self.active.set(self.active.get() + 1);
        ActiveUpload {
            batcher: Rc::clone(self),
        }
    }

    /// Batches run and streams hashed on this core so far.
    pub fn counts(&self) -> (u64, u64) {
        (self.batches.get(), self.streams.get())
    }

    /// Queue `buffer[..len]` to be hashed into `stream`. `last`: nothing
    /// else of this stream follows soon, so the batch runs now.
    pub fn submit(&self, stream: Md5Stream, buffer: Vec<u8>, len: usize, last: bool) -> Ticket {
        assert!(len <= buffer.len());
        let done = Rc::new(Done::default());
        self.queue.borrow_mut().push(Job {
            stream,
            buffer,
            len,
            done: Rc::clone(&done),
        });
        if last {
            self.urgent.set(true);
        }
        self.wake_drainer();
        Ticket { done, hurry: None }
    }

    /// Hash `buffer[..len]` into `stream` now (with whatever is queued).
    pub async fn update(
        &self,
        stream: Md5Stream,
        buffer: Vec<u8>,
        len: usize,
    ) -> (Md5Stream, Vec<u8>) {
        self.submit(stream, buffer, len, true).await
    }

    fn wake_drainer(&self) {
        if let Some(waker) = self.waiting.take() {
            waker.wake();
        }
    }

    /// Whether the queued pieces should be hashed now.
    fn ready(&self) -> bool {
        let queued = self.queue.borrow().len();
        queued > 0 && (self.urgent.get() || queued >= self.active.get().clamp(1, LANES))
    }

    async fn drain(&self) {
        loop {
            WaitForWork { batcher: self }.await;
            let deadline = Instant::now() + BATCH_WAIT;
            while !self.ready() {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    self.waited_out.set(self.waited_out.get() + 1);
                    break;
                }
                futures_lite::future::or(
                    Changed {
                        batcher: self,
                        registered: false,
                    },
                    glommio::timer::sleep(left),
                )
                .await;
            }
            self.urgent.set(false);
            let mut jobs = std::mem::take(&mut *self.queue.borrow_mut());
            {
                let mut work: Vec<(&mut Md5Stream, &[u8])> = jobs
                    .iter_mut()
                    .map(|job| (&mut job.stream, &job.buffer[..job.len]))
                    .collect();
                update_many(&mut work);
            }
            self.batches.set(self.batches.get() + 1);
            self.streams.set(self.streams.get() + jobs.len() as u64);
            for job in jobs {
                *job.done.result.borrow_mut() = Some((job.stream, job.buffer));
                if let Some(waker) = job.done.waker.take() {
                    waker.wake();
                }
            }
        }
    }
}

/// Ready once the queue or the uploads in progress changed (the next wake
/// of the drainer).
struct Changed<'a> {
    batcher: &'a Batcher,
    registered: bool,
}

impl Future for Changed<'_> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<()> {
        if self.registered {
            return Poll::Ready(());
        }
        self.registered = true;
        self.batcher.waiting.set(Some(context.waker().clone()));
        Poll::Pending
    }
}

/// Ready when there is work.
struct WaitForWork<'a> {
    batcher: &'a Batcher,
}

impl Future for WaitForWork<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<()> {
        if self.batcher.queue.borrow().is_empty() {
            self.batcher.waiting.set(Some(context.waker().clone()));
            return Poll::Pending;
        }
        Poll::Ready(())
    }
}

#[cfg(test)]
mod tests {
    use md5::{Digest as _, Md5};

    use super::*;

    fn reference(data: &[u8]) -> [u8; 16] {
        Md5::digest(data).into()
    }

    fn bytes(seed: u64, len: usize) -> Vec<u8> {
        let mut state = seed | 1;
        (0..len)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state.to_le_bytes()[0]
            })
            .collect()
    }

    #[test]
    fn rfc_1321_test_suite() {
        let cases = crate::storage::md5::tests::RFC_1321_SUITE;
        for (input, expected) in cases {
            let mut stream = Md5Stream::new();
            stream.update(input.as_bytes());
            assert_eq!(hex::encode(stream.finalize()), expected, "{input:?}");
        }
    }

    /// Up to 20 streams of random lengths, fed in random pieces, some
    /// together and some alone, equal the reference digests.
    #[test]
    fn many_streams_in_random_pieces_match_the_reference() {
        let mut seed = 0x5eed_u64;
        let mut next = move |bound: usize| {
            seed = seed
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            usize::try_from(seed >> 33).expect("fits") % bound.max(1)
        };
        for round in 0..40 {
            let count = 1 + next(20);
            let datas: Vec<Vec<u8>> = (0..count)
                .map(|index| {
                    let len = match next(4) {
                        0 => next(200),
                        1 => next(5000),
                        2 => 64 * next(300),
                        _ => 1 << 16,
                    };
                    bytes((round * 100 + index) as u64 + 1, len)
                })
                .collect();
            let mut streams: Vec<Md5Stream> = (0..count).map(|_| Md5Stream::new()).collect();
            let mut offsets = vec![0usize; count];
            while offsets
                .iter()
                .zip(&datas)
                .any(|(offset, data)| *offset < data.len())
            {
                let mut jobs: Vec<(&mut Md5Stream, &[u8])> = Vec::new();
                for ((stream, data), offset) in
                    streams.iter_mut().zip(&datas).zip(offsets.iter_mut())
                {
                    if *offset >= data.len() || next(3) == 0 {
                        continue;
                    }
                    let take = (1 + next(20_000)).min(data.len() - *offset);
                    jobs.push((stream, &data[*offset..*offset + take]));
                    *offset += take;
                }
                update_many(&mut jobs);
            }
            for (stream, data) in streams.into_iter().zip(&datas) {
                assert_eq!(
                    stream.finalize(),
                    reference(data),
                    "round {round}, {} bytes",
                    data.len()
                );
            }
        }
    }

    #[test]
    fn scalar_and_lanes_agree_on_long_inputs() {
        let datas: Vec<Vec<u8>> = (0..16)
            .map(|index| {
                bytes(
                    index + 7,
                    (1 << 20) + 64 * usize::try_from(index).expect("small"),
                )
            })
            .collect();
        let mut streams: Vec<Md5Stream> = (0..16).map(|_| Md5Stream::new()).collect();
        let mut jobs: Vec<(&mut Md5Stream, &[u8])> = streams
            .iter_mut()
            .zip(&datas)
            .map(|(stream, data)| (stream, data.as_slice()))
            .collect();
        update_many(&mut jobs);
        for (stream, data) in streams.into_iter().zip(&datas) {
            let mut alone = [INITIAL[0], INITIAL[1], INITIAL[2], INITIAL[3]];
            compress_scalar(&mut alone, &data[..data.len() / 64 * 64]);
            assert_eq!(stream.state, alone);
            assert_eq!(stream.finalize(), reference(data));
        }
    }

    #[test]
    fn the_batcher_hashes_concurrent_uploads() {
        crate::test_support::run(|| async {
            let batcher = Batcher::local();
            let tasks: Vec<_> = (0..24u64)
                .map(|index| {
                    let batcher = Rc::clone(&batcher);
                    glommio::spawn_local(async move {
                        let data = bytes(
                            index + 1,
                            100_000 + usize::try_from(index).expect("small") * 333,
                        );
                        let mut stream = Md5Stream::new();
                        let mut buffer = vec![0u8; 30_000];
                        for piece in data.chunks(30_000) {
                            buffer[..piece.len()].copy_from_slice(piece);
                            let result = batcher.update(stream, buffer, piece.len()).await;
                            (stream, buffer) = result;
                            glommio::yield_if_needed().await;
                        }
                        (stream.finalize(), reference(&data))
                    })
                })
                .collect();
            for task in tasks {
                let (digest, expected) = task.await;
                assert_eq!(digest, expected);
            }
            let (runs, hashed) = batcher.counts();
            assert_eq!(
                hashed,
                (0..24_u64)
                    .map(|index| (100_000 + index * 333).div_ceil(30_000))
                    .sum::<u64>()
            );
            assert!(
                runs < hashed,
                "uploads were hashed together: {runs} batches, {hashed} streams"
            );
        });
    }

    /// A fast upload next to an idle one (both in progress on the core):
    /// hurrying its pieces, it does not wait [`BATCH_WAIT`] for each.
    #[test]
    fn a_hurried_upload_does_not_wait_for_idle_ones() {
        crate::test_support::run(|| async {
            let batcher = Batcher::local();
            let _idle = batcher.begin_upload();
            let _fast = batcher.begin_upload();
            let data = bytes(3, 20 * 4096);
            let waited_out = batcher.waited_out.get();
            let mut stream = Md5Stream::new();
            let mut buffer = vec![0u8; 4096];
            for piece in data.chunks(4096) {
                buffer.copy_from_slice(piece);
                (stream, buffer) = batcher.submit(stream, buffer, 4096, false).hurry().await;
            }
            assert_eq!(stream.finalize(), reference(&data));
            // Unhurried, each of the 20 pieces would wait BATCH_WAIT out
            // for the idle upload. (Counted, not timed: a loaded machine
            // must not make this fail.)
            assert_eq!(
                batcher.waited_out.get(),
                waited_out,
                "a hurried piece waited for the idle upload"
            );
        });
    }
}
