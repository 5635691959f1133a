//! Named crash points, for the crash tests: with the environment variable
//! `RINGSTORE_CRASH_AT=<name>`, the process aborts (no unwinding, no
//! cleanup, like a `kill -9`) the first time it reaches the point called
//! `<name>`. A kill at a random moment rarely lands between two particular
//! steps of a background job; a named point does every time.
//!
//! The points are in compaction and in index flushes and merges, where a
//! crash between two file operations must leave a state that recovery
//! handles. Reaching a point costs one check of a value read once.

use std::sync::OnceLock;

/// The environment variable naming the crash point.
pub const ENV: &str = "RINGSTORE_CRASH_AT";

/// Abort the process if `name` is the crash point this process was started
/// with.
pub fn crash_point(name: &str) {
    static CHOSEN: OnceLock<Option<String>> = OnceLock::new();
    let chosen = CHOSEN.get_or_init(|| std::env::var(ENV).ok().filter(|name| !name.is_empty()));
    if chosen.as_deref() == Some(name) {
        eprintln!("ringstore: crash point {name} reached; aborting ({ENV})");
        std::process::abort();
    }
}
