//! Fuzz target `xml_bodies`: a thin wrapper; the checks and what they assert are
//! in `ringstore::fuzz_checks::xml_bodies` (shared with `tests/fuzz_regressions.rs`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ringstore::fuzz_checks::xml_bodies(data));
