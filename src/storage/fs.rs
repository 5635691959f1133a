//! Every operation the storage engine performs on the file system, in one
//! place: creating directories, writing files durably, renaming, removing,
//! syncing directories, and the segment files' direct I/O.
//!
//! It owns two things:
//!
//! - **The durability rules**, so that each is written once. A file that
//!   must survive a crash is written under a temporary name, synced,
//!   renamed, and its directory is `fsync`ed ([`write_file_durably`]); a
//!   directory that gains or loses an entry the server relies on is
//!   `fsync`ed, not `fdatasync`ed (a directory's entries are its data, but
//!   whether `fdatasync` covers them is up to the file system, so we do not
//!   rely on it); [`create_dir_all`] syncs the parent of every directory it
//!   creates, so that a data directory made at the first start still exists
//!   after a power cut.
//! - **The seam of the fault tests** (STYLE.md §8.4). Each operation first
//!   asks `hook::check` whether to fail, then reports what it did with
//!   `hook::record`, handing back what the check returned (when the
//!   operation began: a sync covers only what completed before it). In
//!   test builds the hooks belong to [`fault`]: a test can make any
//!   operation under a directory fail with the error of its choice (EIO,
//!   ENOSPC, ...), and record every change to build the disk images a power
//!   cut can leave. In every other build the hooks are empty
//!   `#[inline(always)]` functions whose closures are never called: the
//!   seam is a compile-time choice and costs nothing on the hot path.
//!
//! It does not own what the files contain, nor which files exist (segment,
//! index and catalog modules decide), nor reads of file contents (reads
//! change nothing a crash could lose; `open` is still checked, so that a
//! test can fail it).

use std::io;
use std::path::{Path, PathBuf};

use glommio::io::{DmaBuffer, DmaFile, OpenOptions, ReadResult};

#[cfg(test)]
pub mod fault;

/// What an operation is, for fault injection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    /// Opening an existing file or directory.
    Open,
    /// Creating a file.
    Create,
    /// Creating a directory.
    Mkdir,
    /// Writing to a file.
    Write,
    /// Changing a file's length.
    Truncate,
    /// Reserving space for a file (`fallocate`).
    Allocate,
    /// `fdatasync` or `fsync` of a file.
    SyncFile,
    /// `fsync` of a directory.
    SyncDir,
    Rename,
    Remove,
}

/// A change to the file system, as the fault tests' power-loss model sees
/// it. Files are named by the path they have when the change is made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Mkdir {
        path: PathBuf,
    },
    /// A new, empty file; or an existing one truncated to nothing.
    Create {
        path: PathBuf,
    },
    /// Bytes written at `offset`. `failed`: the write reported an error,
    /// and any part of it may or may not have reached the disk.
    Write {
        path: PathBuf,
        offset: u64,
        data: Vec<u8>,
        failed: bool,
    },
    Truncate {
        path: PathBuf,
        len: u64,
    },
    /// The file's bytes and length are durable.
    SyncFile {
        path: PathBuf,
    },
    Rename {
        from: PathBuf,
        to: PathBuf,
    },
    Remove {
        path: PathBuf,
    },
    /// The directory's entries are durable.
    SyncDir {
        path: PathBuf,
    },
}

#[cfg(test)]
use fault as hook;

/// The hooks of non-test builds: nothing to check, nothing to record.
/// `inline(always)` and the `Result` are the point: the call and its
/// closure vanish, and the signature is the test hooks'.
#[cfg(not(test))]
#[allow(
    clippy::inline_always,
    clippy::unnecessary_wraps,
    reason = "the hooks must compile to nothing and match the test hooks' signatures"
)]
mod hook {
    use std::io;
    use std::path::Path;

    use super::{Event, Op};

    /// When an operation began: nothing to say outside the tests.
    #[derive(Debug, Default, Clone, Copy)]
    pub struct Started;

    /// For a write recorded although its check failed.
    #[inline(always)]
    pub fn began_now() -> Started {
        Started
    }

    #[inline(always)]
    pub fn check(_op: Op, _path: &Path) -> io::Result<Started> {
        Ok(Started)
    }

    #[inline(always)]
    pub fn record(_started: Started, _path: &Path, _event: impl FnOnce() -> Event) {}
}

// ---------------------------------------------------------------------------
// Directories and whole files (blocking: call them at start, or on
// glommio's blocking pool)

/// `fsync` the directory at `path`, making the entries created, renamed
/// and removed in it durable.
pub fn sync_dir(path: &Path) -> io::Result<()> {
    let started = hook::check(Op::SyncDir, path)?;
    std::fs::File::open(path)?.sync_all()?;
    hook::record(started, path, || Event::SyncDir {
        path: path.to_owned(),
    });
    Ok(())
}

/// Create `path` and every missing parent, `fsync`ing the parent of each
/// directory created, so that the whole chain survives a crash once this
/// returns. Existing directories are left as they are.
pub fn create_dir_all(path: &Path) -> io::Result<()> {
    let path = std::path::absolute(path)?;
    let mut missing = Vec::new();
    let mut current = path.as_path();
    while !current.is_dir() {
        missing.push(current.to_owned());
        match current.parent() {
            Some(parent) => current = parent,
            None => break,
        }
    }
    for dir in missing.iter().rev() {
        let started = hook::check(Op::Mkdir, dir)?;
        match std::fs::create_dir(dir) {
            Ok(()) => hook::record(started, dir, || Event::Mkdir { path: dir.clone() }),
            // Made meanwhile by someone else: its entry may not be durable
            // yet, so the parent is synced all the same.
            Err(error) if error.kind() == io::ErrorKind::AlreadyExists && dir.is_dir() => {}
            Err(error) => return Err(error),
        }
        if let Some(parent) = dir.parent() {
            sync_dir(parent)?;
        }
    }
    Ok(())
}

/// Write `bytes` as the file `path`, durably: into `<path>.tmp`, synced,
/// renamed over `path`, and the directory synced. A crash leaves either the
/// old file or the new one, and at worst a stray `.tmp`.
pub fn write_file_durably(path: &Path, bytes: &[u8]) -> io::Result<()> {
    replace_file_durably(path, bytes).map_err(|error| match error {
        ReplaceError::NotReplaced(error) | ReplaceError::Unsure(error) => error,
    })
}

/// How [`replace_file_durably`] failed.
#[derive(Debug)]
pub enum ReplaceError {
    /// Before the rename: `path` is the old file, on disk and for readers.
    /// Trying again later is safe (a full disk, say).
    NotReplaced(io::Error),
    /// The directory sync after the rename failed: readers see the new
    /// file, but whether a crash would keep it is unknown.
    Unsure(io::Error),
}

impl std::fmt::Display for ReplaceError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NotReplaced(error) => write!(f, "{error} (the file was not replaced)"),
            Self::Unsure(error) => write!(f, "{error} (after the rename)"),
        }
    }
}

/// [`write_file_durably`], telling a failure before the rename from one
/// after it.
pub fn replace_file_durably(path: &Path, bytes: &[u8]) -> Result<(), ReplaceError> {
    let tmp = path.with_extension("tmp");
    let write = || -> io::Result<()> {
        let mut file = File::create(&tmp)?;
        io::Write::write_all(&mut file, bytes)?;
        file.sync_all()?;
        drop(file);
        rename(&tmp, path)
    };
    write().map_err(ReplaceError::NotReplaced)?;
    sync_dir(parent_of(path)).map_err(ReplaceError::Unsure)
}

/// Rename `from` to `to` (atomic within one directory); not durable until
/// the directory is synced.
pub fn rename(from: &Path, to: &Path) -> io::Result<()> {
    let started = hook::check(Op::Rename, from)?;
    std::fs::rename(from, to)?;
    hook::record(started, from, || Event::Rename {
        from: from.to_owned(),
        to: to.to_owned(),
    });
    Ok(())
}

/// Remove the file `path`; not durable until its directory is synced.
pub fn remove_file(path: &Path) -> io::Result<()> {
    let started = hook::check(Op::Remove, path)?;
    std::fs::remove_file(path)?;
    hook::record(started, path, || Event::Remove {
        path: path.to_owned(),
    });
    Ok(())
}

/// Remove the file `path` and sync its directory.
pub fn remove_file_durably(path: &Path) -> io::Result<()> {
    remove_file(path)?;
    sync_dir(parent_of(path))
}

/// Open an existing file for reading (to map it, or read it whole).
pub fn open_read(path: &Path) -> io::Result<std::fs::File> {
    hook::check(Op::Open, path)?;
    std::fs::File::open(path)
}

/// The whole contents of the file `path`.
pub fn read(path: &Path) -> io::Result<Vec<u8>> {
    hook::check(Op::Open, path)?;
    std::fs::read(path)
}

/// Bytes of the file system holding `path` that an unprivileged writer may
/// still use (`statvfs`: available blocks times the fragment size). The
/// blocks a file system keeps for root are not counted: they are the
/// operator's margin, not ours.
pub fn free_bytes(path: &Path) -> io::Result<u64> {
    use std::os::unix::ffi::OsStrExt as _;
    let path = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: statvfs is plain data that the call fills in.
    let mut stats: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: a valid C string and a pointer to the struct above.
    if unsafe { libc::statvfs(path.as_ptr(), &raw mut stats) } != 0 {
        return Err(io::Error::last_os_error());
    }
    #[allow(
        clippy::useless_conversion,
        reason = "the field types differ between targets"
    )]
    Ok(u64::from(stats.f_bavail).saturating_mul(u64::from(stats.f_frsize)))
}

/// Whether `error` says the file system is full or the quota is used up:
/// a state that passes once space is freed, not damage.
#[must_use]
pub fn is_out_of_space(error: &io::Error) -> bool {
    matches!(error.raw_os_error(), Some(libc::ENOSPC | libc::EDQUOT))
        || matches!(
            error.kind(),
            io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded
        )
}

/// Whether `error` says the process or the system is out of file
/// descriptors or kernel memory for the moment: nothing happened, and
/// trying again later can work.
#[must_use]
pub fn is_resource_shortage(error: &io::Error) -> bool {
    matches!(
        error.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOMEM)
    )
}

/// glommio's error as the `io::Error` it wraps, keeping the OS error code
/// (its own conversion keeps only the kind, and the kind of `EMFILE` says
/// nothing).
fn from_glommio(error: glommio::GlommioError<()>) -> io::Error {
    match error {
        glommio::GlommioError::IoError(error)
        | glommio::GlommioError::EnhancedIoError { source: error, .. } => error,
        other => other.into(),
    }
}

fn parent_of(path: &Path) -> &Path {
    path.parent()
        .filter(|parent| !parent.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

/// A file being written with ordinary (buffered) I/O: index runs, the
/// manifest, upload snapshots, the catalog.
pub struct File {
    inner: std::fs::File,
    path: PathBuf,
    /// Where the next sequential write goes.
    position: u64,
}

impl File {
    /// Create `path` for writing, empty (truncated if it exists).
    pub fn create(path: &Path) -> io::Result<File> {
        let started = hook::check(Op::Create, path)?;
        let file = std::fs::File::create(path)?;
        hook::record(started, path, || Event::Create {
            path: path.to_owned(),
        });
        Ok(File {
            inner: file,
            path: path.to_owned(),
            position: 0,
        })
    }

    /// Write all of `bytes` at `offset`.
    pub fn write_all_at(&self, bytes: &[u8], offset: u64) -> io::Result<()> {
        use std::os::unix::fs::FileExt as _;
        let started = hook::check(Op::Write, &self.path)
            .inspect_err(|_| self.record_write(hook::began_now(), bytes, offset, true))?;
        let result = self.inner.write_all_at(bytes, offset);
        self.record_write(started, bytes, offset, result.is_err());
        result
    }

    /// `fdatasync`: the bytes and the length are durable.
    pub fn sync_data(&self) -> io::Result<()> {
        let started = hook::check(Op::SyncFile, &self.path)?;
        self.inner.sync_data()?;
        hook::record(started, &self.path, || Event::SyncFile {
            path: self.path.clone(),
        });
        Ok(())
    }

    /// `fsync`: the bytes, the length and the other metadata are durable.
    pub fn sync_all(&self) -> io::Result<()> {
        let started = hook::check(Op::SyncFile, &self.path)?;
        self.inner.sync_all()?;
        hook::record(started, &self.path, || Event::SyncFile {
            path: self.path.clone(),
        });
        Ok(())
    }

    fn record_write(&self, started: hook::Started, bytes: &[u8], offset: u64, failed: bool) {
        hook::record(started, &self.path, || Event::Write {
            path: self.path.clone(),
            offset,
            data: bytes.to_vec(),
            failed,
        });
    }
}

impl io::Write for File {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.write_all_at(bytes, self.position)?;
        self.position += bytes.len() as u64;
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// Segment files: direct I/O through glommio

/// A segment file opened with `O_DIRECT`.
pub struct DmaSegmentFile {
    file: DmaFile,
    path: PathBuf,
}

impl DmaSegmentFile {
    /// Create `path`, which must not exist.
    pub async fn create_new(path: &Path) -> io::Result<DmaSegmentFile> {
        let started = hook::check(Op::Create, path)?;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .dma_open(path)
            .await
            .map_err(from_glommio)?;
        hook::record(started, path, || Event::Create {
            path: path.to_owned(),
        });
        Ok(DmaSegmentFile {
            file,
            path: path.to_owned(),
        })
    }

    /// Open the existing file `path` for reading and writing.
    pub async fn open(path: &Path) -> io::Result<DmaSegmentFile> {
        hook::check(Op::Open, path)?;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .dma_open(path)
            .await
            .map_err(from_glommio)?;
        Ok(DmaSegmentFile {
            file,
            path: path.to_owned(),
        })
    }

    /// Open the existing file `path` for reading only (the offline check).
    pub async fn open_read_only(path: &Path) -> io::Result<DmaSegmentFile> {
        hook::check(Op::Open, path)?;
        let file = DmaFile::open(path).await.map_err(from_glommio)?;
        Ok(DmaSegmentFile {
            file,
            path: path.to_owned(),
        })
    }

    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The device's direct I/O alignment for this file.
    #[must_use]
    pub fn alignment(&self) -> u64 {
        self.file.alignment()
    }

    #[must_use]
    pub fn alloc_dma_buffer(&self, len: usize) -> DmaBuffer {
        self.file.alloc_dma_buffer(len)
    }

    pub async fn write_at(&self, buffer: DmaBuffer, offset: u64) -> io::Result<usize> {
        let started = match hook::check(Op::Write, &self.path) {
            Ok(started) => started,
            Err(error) => {
                self.record_write(hook::began_now(), buffer.as_ref(), offset, true);
                return Err(error);
            }
        };
        #[cfg(test)]
        let data = buffer.as_ref().to_vec();
        let result = self
            .file
            .write_at(buffer, offset)
            .await
            .map_err(from_glommio);
        #[cfg(test)]
        self.record_write(started, &data, offset, result.is_err());
        #[cfg(not(test))]
        let _ = started;
        result
    }

    pub async fn read_at(&self, offset: u64, len: usize) -> io::Result<ReadResult> {
        self.file.read_at(offset, len).await.map_err(from_glommio)
    }

    pub async fn fdatasync(&self) -> io::Result<()> {
        let started = hook::check(Op::SyncFile, &self.path)?;
        self.file.fdatasync().await.map_err(from_glommio)?;
        hook::record(started, &self.path, || Event::SyncFile {
            path: self.path.clone(),
        });
        Ok(())
    }

    pub async fn truncate(&self, len: u64) -> io::Result<()> {
        let started = hook::check(Op::Truncate, &self.path)?;
        self.file.truncate(len).await.map_err(from_glommio)?;
        hook::record(started, &self.path, || Event::Truncate {
            path: self.path.clone(),
            len,
        });
        Ok(())
    }

    /// Reserve disk blocks for the first `len` bytes without changing the
    /// file's length (`fallocate` with `FALLOC_FL_KEEP_SIZE`), so that
    /// writes into them cannot fail for want of space.
    pub async fn allocate(&self, len: u64) -> io::Result<()> {
        hook::check(Op::Allocate, &self.path)?;
        self.file
            .pre_allocate(len, true)
            .await
            .map_err(from_glommio)
    }

    pub async fn file_len(&self) -> io::Result<u64> {
        self.file.file_size().await.map_err(from_glommio)
    }

    pub async fn close(self) -> io::Result<()> {
        self.file.close().await.map_err(from_glommio)
    }

    fn record_write(&self, started: hook::Started, bytes: &[u8], offset: u64, failed: bool) {
        hook::record(started, &self.path, || Event::Write {
            path: self.path.clone(),
            offset,
            data: bytes.to_vec(),
            failed,
        });
    }
}

/// `fsync` a directory from an executor, on glommio's blocking pool, so that
/// the core does not stall on it.
pub async fn sync_dir_async(path: &Path) -> io::Result<()> {
    let path = path.to_owned();
    glommio::executor()
        .spawn_blocking(move || sync_dir(&path))
        .await
}
