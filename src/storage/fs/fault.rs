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
//!   any point could leave.
//!
//! Operations on paths outside every session are untouched, so the other
//! unit tests running in parallel are not affected.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

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

#[derive(Default)]
struct State {
    faults: Vec<Fault>,
    events: Vec<Event>,
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
        self.state().events.clone()
    }

    /// How many changes were recorded so far: a position in [`Self::events`]
    /// that a test can note when something is acknowledged.
    #[must_use]
    pub fn event_count(&self) -> usize {
        self.state().events.len()
    }

    fn check(&self, op: Op, path: &Path) -> io::Result<()> {
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
        match errno {
            Some(errno) => {
                state.injected += 1;
                Err(io::Error::from_raw_os_error(errno))
            }
            None => Ok(()),
        }
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

/// The hook [`super`] calls before an operation.
pub fn check(op: Op, path: &Path) -> io::Result<()> {
    match find(path) {
        Some(session) => session.check(op, path),
        None => Ok(()),
    }
}

/// The hook [`super`] calls after a change.
pub fn record(path: &Path, event: impl FnOnce() -> Event) {
    if let Some(session) = find(path) {
        let event = event();
        session.state().events.push(event);
    }
}
