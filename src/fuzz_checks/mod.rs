//! The checks behind the fuzz targets in `fuzz/`, one function per target.
//!
//! Each target under `fuzz/fuzz_targets/` is a one-line wrapper that hands
//! libFuzzer's input to one function here. The checks live in the library,
//! not in the fuzz crate, for two reasons: `tests/fuzz_regressions.rs` runs
//! every committed seed and reproducer through the very same functions in
//! plain `cargo test` (so CI compiles and exercises the targets' logic
//! without a fuzzer), and being inside the crate they can reach
//! `pub(crate)` parsers without widening the public API.
//!
//! A check returns normally for every input; a panic is a finding. Beyond
//! "no panic", each check asserts properties the code must keep for any
//! bytes (see each function): decoders give the same result however their
//! input is split, encoders and decoders round-trip, limits hold, and
//! recovery's verdicts agree with a simple reference model.
//!
//! Inputs that need structure (split points, a mode, damage to apply) are
//! read from the front of the fuzz input with [`Input`], a deliberately
//! tiny reader: libFuzzer mutates bytes, and any byte string is a valid
//! input (reads past the end give zeros).
//!
//! Not part of the server: nothing here runs in production, and the module
//! is hidden from the docs.

#![allow(
    clippy::cast_possible_truncation,
    clippy::cast_possible_wrap,
    reason = "checks truncate and reinterpret fuzzer-chosen numbers on purpose"
)]
#![allow(
    clippy::doc_markdown,
    reason = "the docs name protocols and AWS operations (SigV4, DeleteObjects) as prose"
)]
#![allow(
    clippy::too_many_lines,
    reason = "a check or a seed table reads best as one list"
)]
#![allow(
    clippy::similar_names,
    reason = "decoded/encoded, date/data pairs are what the checks compare"
)]

mod auth;
mod http;
mod s3;
pub mod seeds;
mod storage;

pub use auth::{aws_chunked, sigv4};
pub use http::{chunked, http_head};
pub use s3::xml_bodies;
pub use storage::{index_run, record, segment_recovery};

/// The check of one target.
pub type Check = fn(&[u8]);

/// Every target: its name (the file name under `fuzz/fuzz_targets/`, and
/// the directory name of its seeds and regressions) and its check.
pub const TARGETS: &[(&str, Check)] = &[
    ("http_head", http_head),
    ("chunked", chunked),
    ("aws_chunked", aws_chunked),
    ("xml_bodies", xml_bodies),
    ("sigv4", sigv4),
    ("record", record),
    ("index_run", index_run),
    ("segment_recovery", segment_recovery),
];

/// A reader of structure from the front of a fuzz input. Reads past the end
/// return zeros (or empty slices), so every input is valid.
#[derive(Debug, Clone)]
pub struct Input<'a> {
    bytes: &'a [u8],
}

impl<'a> Input<'a> {
    #[must_use]
    pub fn new(bytes: &'a [u8]) -> Self {
        Self { bytes }
    }

    pub fn u8(&mut self) -> u8 {
        let (&first, rest) = self.bytes.split_first().unwrap_or((&0, &[]));
        self.bytes = rest;
        first
    }

    pub fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.u8(), self.u8()])
    }

    pub fn u32(&mut self) -> u32 {
        u32::from_le_bytes([self.u8(), self.u8(), self.u8(), self.u8()])
    }

    pub fn u64(&mut self) -> u64 {
        u64::from(self.u32()) | (u64::from(self.u32()) << 32)
    }

    pub fn bool(&mut self) -> bool {
        self.u8() & 1 == 1
    }

    /// Up to `len` bytes.
    pub fn take(&mut self, len: usize) -> &'a [u8] {
        let (head, rest) = self.bytes.split_at(len.min(self.bytes.len()));
        self.bytes = rest;
        head
    }

    /// A length-prefixed (one byte) slice.
    pub fn short_bytes(&mut self) -> &'a [u8] {
        let len = usize::from(self.u8());
        self.take(len)
    }

    /// Everything left.
    pub fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.bytes)
    }

    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }
}

/// Cut points for feeding `len` bytes in pieces: up to `count` offsets read
/// from `input`, each reduced into `0..=len`, sorted.
pub fn split_points(input: &mut Input<'_>, count: usize, len: usize) -> Vec<usize> {
    let mut points: Vec<usize> = (0..count)
        .map(|_| usize::from(input.u16()) % (len + 1))
        .collect();
    points.sort_unstable();
    points
}

/// `bytes` cut at `points` (sorted, each at most `bytes.len()`).
#[must_use]
pub fn pieces<'a>(bytes: &'a [u8], points: &[usize]) -> Vec<&'a [u8]> {
    let mut out = Vec::with_capacity(points.len() + 1);
    let mut start = 0;
    for &point in points {
        out.push(&bytes[start..point]);
        start = point;
    }
    out.push(&bytes[start..]);
    out
}
