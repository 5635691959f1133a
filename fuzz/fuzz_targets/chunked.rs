//! Fuzz target `chunked`: a thin wrapper; the checks and what they assert are
//! in `ringstore::fuzz_checks::chunked` (shared with `tests/fuzz_regressions.rs`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ringstore::fuzz_checks::chunked(data));
