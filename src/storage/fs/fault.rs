//! The fault-injecting side of [`super`], in test builds only.
//!
//! A test registers a [`Session`] for a directory; from then on every
//! operation of the storage engine on a path under it goes through the
//! session, on whichever thread it runs (the executor, or glommio's
//! blocking pool for index jobs):
//!
//! - [`Session::fail`] arms a fault: the chosen operations (by kind and
//!   path, after a countdown, a number of times) fail with the chosen OS
//!   error instead of happening. A failed write is still recorded, as a
//!   write whose bytes may or may not have reached the disk.
//! - Every change that happened is recorded as an [`Event`], in order; the
//!   power-loss tests build from that log the disk images a power cut at
//!   any point could leave ([`image`]).
//!
//! # When an operation happened
//!
//! An event is recorded when its operation has returned, so the log is in
//! order of completion. That is not enough for a power cut: an `fdatasync`
//! makes durable the writes that completed *before it was issued*, not the
//! ones that complete while it runs (the segment writer lets appends write
//! on during a sync, and a roll-over's sync may run beside a group
//! commit's), and a write or rename still running when the power goes may
//! have happened in part. So [`check`] returns when the operation began
//! ([`Started`]: how many changes were recorded then), `fs` hands it back
//! to [`record`], and each entry of the log ([`Logged`]) carries it.
//!
//! Operations on paths outside every session are untouched, so the other
//! unit tests running in parallel are not affected.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

pub mod image;

use super::{Event, Op};

/// A fault to inject.
#[derive(Debug, Clone)]
pub struct Fault {
    /// Which operations.
    pub op: Op,
    /// Only paths whose text contains this (`None`: any path).
    pub path_contains: Option<String>,
    /// Let this many matching operations pass first.
    pub skip: u64,
    /// Fail this many matching operations, then stop (`None`: all).
    pub times: Option<u64>,
    /// The OS error (`libc::EIO`, `libc::ENOSPC`...).
    pub errno: i32,
}

impl Fault {
    /// Every `op` from now on fails with `errno`.
    #[must_use]
    pub fn always(op: Op, errno: i32) -> Fault {
        Fault {
            op,
            path_contains: None,
            skip: 0,
            times: None,
            errno,
        }
    }

    /// The `n`th `op` from now (counting from 1) fails with `errno`, once.
    #[must_use]
    pub fn nth(op: Op, n: u64, errno: i32) -> Fault {
        assert!(n >= 1);
        Fault {
            op,
            path_contains: None,
            skip: n - 1,
            times: Some(1),
            errno,
        }
    }

    #[must_use]
    pub fn on_paths_containing(mut self, text: &str) -> Fault {
        self.path_contains = Some(text.to_owned());
        self
    }

    fn matches(&self, op: Op, path: &Path) -> bool {
        self.op == op
            && self
                .path_contains
                .as_deref()
                .is_none_or(|text| path.to_string_lossy().contains(text))
    }
}

/// One recorded change and when its operation began.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Logged {
    pub event: Event,
    /// How many changes were recorded when the operation began: a sync
    /// covers the changes before this position (and maybe more); any other
    /// change may have happened, in part, at any crash point past it.
    pub started: usize,
}

/// When an operation began: how many changes its session had recorded
/// (`None` outside every session, or for a write recorded although its
/// check failed: it began just now).
#[derive(Debug, Default, Clone, Copy)]
pub struct Started(Option<usize>);

#[derive(Default)]
struct State {
    faults: Vec<Fault>,
    log: Vec<Logged>,
    /// Operations that failed because of a fault.
    injected: u64,
}

/// The faults and the record of one directory tree.
pub struct Session {
    root: PathBuf,
    state: Mutex<State>,
}

/// Registered sessions. Few at a time (one per running fault test).
static SESSIONS: Mutex<Vec<Arc<Session>>> = Mutex::new(Vec::new());

fn sessions() -> MutexGuard<'static, Vec<Arc<Session>>> {
    // A test that panicked while holding the lock must not break the
    // others: the list itself is always consistent.
    SESSIONS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Keeps a session registered; dropping it unregisters the session.
pub struct SessionGuard {
    session: Arc<Session>,
}

impl Drop for SessionGuard {
    fn drop(&mut self) {
        sessions().retain(|session| !Arc::ptr_eq(session, &self.session));
    }
}

impl std::ops::Deref for SessionGuard {
    type Target = Session;

    fn deref(&self) -> &Session {
        &self.session
    }
}

/// Start recording (and injecting faults into) every operation under
/// `root`.
#[must_use]
pub fn session(root: &Path) -> SessionGuard {
    let root = std::path::absolute(root).expect("an absolute root");
    let session = Arc::new(Session {
        root,
        state: Mutex::new(State::default()),
    });
    let mut all = sessions();
    assert!(
        all.iter()
            .all(|other| !other.root.starts_with(&session.root)
                && !session.root.starts_with(&other.root)),
        "fault sessions must not overlap"
    );
    all.push(Arc::clone(&session));
    SessionGuard { session }
}

impl Session {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    #[must_use]
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Arm a fault.
    pub fn fail(&self, fault: Fault) {
        self.state().faults.push(fault);
    }

    /// Disarm every fault (the disk works again).
    pub fn heal(&self) {
        self.state().faults.clear();
    }

    /// How many operations failed because of a fault so far.
    #[must_use]
    pub fn injected(&self) -> u64 {
        self.state().injected
    }

    /// The changes recorded so far, in order.
    #[must_use]
    pub fn events(&self) -> Vec<Event> {
        self.state()
            .log
            .iter()
            .map(|logged| logged.event.clone())
            .collect()
    }

    /// The changes recorded so far with when their operations began: what
    /// [`image::Disk`] replays.
    #[must_use]
    pub fn log(&self) -> Vec<Logged> {
        self.state().log.clone()
    }

    /// How many changes were recorded so far: a position in [`Self::events`]
    /// that a test can note when something is acknowledged.
    #[must_use]
    pub fn event_count(&self) -> usize {
        self.state().log.len()
    }

    fn check(&self, op: Op, path: &Path) -> io::Result<Started> {
        let mut state = self.state();
        let state = &mut *state;
        let mut errno = None;
        for fault in &mut state.faults {
            if !fault.matches(op, path) || fault.times == Some(0) {
                continue;
            }
            if fault.skip > 0 {
                fault.skip -= 1;
                continue;
            }
            if let Some(times) = &mut fault.times {
                *times -= 1;
            }
            errno = Some(fault.errno);
            break;
        }
        if let Some(errno) = errno {
            state.injected += 1;
            return Err(io::Error::from_raw_os_error(errno));
        }
        Ok(Started(Some(state.log.len())))
    }

    fn record(&self, started: Started, event: Event) {
        let mut state = self.state();
        let started = started.0.unwrap_or(state.log.len());
        state.log.push(Logged { event, started });
    }
}

fn find(path: &Path) -> Option<Arc<Session>> {
    let all = sessions();
    if all.is_empty() {
        return None;
    }
    all.iter()
        .find(|session| path.starts_with(&session.root))
        .cloned()
}

/// What a write that is recorded although its check failed began with.
#[must_use]
pub fn began_now() -> Started {
    Started(None)
}

/// The hook [`super`] calls before an operation: whether to fail it, and
/// if not, when it began.
pub fn check(op: Op, path: &Path) -> io::Result<Started> {
    match find(path) {
        Some(session) => session.check(op, path),
        None => Ok(Started(None)),
    }
}

/// The hook [`super`] calls after a change, with what [`check`] returned.
pub fn record(started: Started, path: &Path, event: impl FnOnce() -> Event) {
    if let Some(session) = find(path) {
        session.record(started, event());
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::image::{Disk, Image};
    use super::*;
    use crate::storage::fs;

    fn names(log: &[Logged], root: &Path) -> Vec<String> {
        log.iter()
            .map(|logged| {
                let (kind, path) = match &logged.event {
                    Event::Mkdir { path } => ("mkdir", path),
                    Event::Create { path } => ("create", path),
                    Event::Write { path, .. } => ("write", path),
                    Event::Truncate { path, .. } => ("truncate", path),
                    Event::SyncFile { path } => ("sync", path),
                    Event::Rename { from, .. } => ("rename", from),
                    Event::Remove { path } => ("remove", path),
                    Event::SyncDir { path } => ("syncdir", path),
                };
                let path = path.strip_prefix(root).unwrap().display().to_string();
                format!("{kind} {path} @{}", logged.started)
            })
            .collect()
    }

    #[test]
    fn a_session_records_every_change_under_its_root_and_when_it_began() {
        // Goal: the seam records what `fs` does, in order, with the
        // position each operation began at; the log replays into the tree
        // that is on disk; faults fail what they name and nothing else.
        let temp = tempfile::tempdir().unwrap();
        let root = temp.path().join("root");
        std::fs::create_dir(&root).unwrap();
        let session = session(&root);
        fs::create_dir_all(&root.join("a/b")).unwrap();
        fs::write_file_durably(&root.join("a/f"), b"first").unwrap();
        fs::write_file_durably(&root.join("a/f"), b"second").unwrap();
        session.fail(Fault::nth(Op::SyncFile, 1, libc::EIO).on_paths_containing("g.tmp"));
        let error = fs::write_file_durably(&root.join("a/g"), b"never").unwrap_err();
        assert_eq!(error.raw_os_error(), Some(libc::EIO));
        assert_eq!(session.injected(), 1);
        fs::remove_file_durably(&root.join("a/g.tmp")).unwrap();
        // Outside the root: not recorded, never failed.
        session.fail(Fault::always(Op::Create, libc::EIO));
        fs::write_file_durably(&temp.path().join("outside"), b"x").unwrap();
        session.heal();

        let log = session.log();
        assert_eq!(
            names(&log, &root),
            [
                "mkdir a @0",
                "syncdir  @1",
                "mkdir a/b @2",
                "syncdir a @3",
                "create a/f.tmp @4",
                "write a/f.tmp @5",
                "sync a/f.tmp @6",
                "rename a/f.tmp @7",
                "syncdir a @8",
                "create a/f.tmp @9",
                "write a/f.tmp @10",
                "sync a/f.tmp @11",
                "rename a/f.tmp @12",
                "syncdir a @13",
                "create a/g.tmp @14",
                "write a/g.tmp @15",
                "remove a/g.tmp @16",
                "syncdir a @17",
            ]
        );
        assert_eq!(session.event_count(), log.len());
        let mut disk = Disk::new(&root, &log);
        disk.advance(log.len());
        let on_disk = Image::read(&root, &|_| false).unwrap();
        assert_eq!(disk.everything(), on_disk);
        assert_eq!(on_disk.file("a/f"), Some(&b"second"[..]));
    }
}
