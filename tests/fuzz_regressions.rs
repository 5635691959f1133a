//! The fuzz targets' checks, without the fuzzer.
//!
//! Goal: every committed seed and every reproducer of a bug a fuzz target
//! once found still passes its target's check, so CI compiles the targets'
//! logic (`ringstore::fuzz_checks`, which each target in `fuzz/` only
//! wraps) and replays the regressions in plain `cargo test`. Method: run
//! each file of `fuzz/seeds/<target>/` and `fuzz/regressions/<target>/`
//! through the target's check function; a panic fails the test, naming the
//! file. A second test checks that the committed seeds are still the ones
//! `fuzz_checks::seeds` makes, so a format change cannot leave stale seeds.

use std::fs;
use std::path::{Path, PathBuf};

use ringstore::fuzz_checks::{TARGETS, seeds};

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

/// The files of `dir`, sorted; none if it does not exist.
fn files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .map(|entry| entry.expect("directory entry").path())
        .filter(|path| path.is_file())
        .collect();
    files.sort();
    files
}

#[test]
fn seeds_and_regressions_pass_their_checks() {
    let mut count = 0;
    for (target, check) in TARGETS {
        for kind in ["seeds", "regressions"] {
            for file in files(&fuzz_dir().join(kind).join(target)) {
                let data = fs::read(&file).expect("read");
                let outcome = std::panic::catch_unwind(|| check(&data));
                assert!(outcome.is_ok(), "{target}: {} fails", file.display());
                count += 1;
            }
        }
    }
    assert!(count >= TARGETS.len(), "only {count} inputs found");
}

#[test]
fn committed_seeds_are_current() {
    for (target, name, bytes) in seeds::all() {
        let path = fuzz_dir().join("seeds").join(target).join(&name);
        let committed = fs::read(&path)
            .unwrap_or_else(|error| panic!("{}: {error}; regenerate the seeds", path.display()));
        assert!(
            committed == bytes,
            "{} differs from what fuzz_checks::seeds makes; regenerate the seeds \
             (RINGSTORE_WRITE_FUZZ_SEEDS=1 cargo test --test fuzz_regressions write_seeds -- --ignored)",
            path.display()
        );
    }
}

/// Writes `fuzz/seeds/` from `fuzz_checks::seeds` (replacing what is there).
#[test]
#[ignore = "writes files; run by hand when the seeds change"]
fn write_seeds() {
    if std::env::var_os("RINGSTORE_WRITE_FUZZ_SEEDS").is_none() {
        return;
    }
    let root = fuzz_dir().join("seeds");
    for (target, _) in TARGETS {
        let _ = fs::remove_dir_all(root.join(target));
        fs::create_dir_all(root.join(target)).expect("create seed directory");
    }
    for (target, name, bytes) in seeds::all() {
        fs::write(root.join(target).join(name), bytes).expect("write seed");
    }
}
