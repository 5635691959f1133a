//! Fuzz target `segment_recovery`: a thin wrapper; the checks and what they assert are
//! in `ringstore::fuzz_checks::segment_recovery` (shared with `tests/fuzz_regressions.rs`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ringstore::fuzz_checks::segment_recovery(data));
