//! The power-loss model: from the first `k` changes of a session's log, the
//! disk images a power cut right after them can leave, built with a seeded
//! generator and written out as a real directory tree, so that the real
//! recovery code (memory maps, direct I/O) runs on them.
//!
//! It owns the rules of what survives a power cut, and nothing of what the
//! files mean. The rules are what Linux and ext4 guarantee and no more
//! (redb's crash test keeps "written" and "durable" apart the same way):
//!
//! - **A file's bytes and length are durable once a sync of the file
//!   (`fdatasync`, `fsync`) returns**, for the writes and truncations that
//!   completed before the sync began. Writes that complete while a sync
//!   runs are not covered by it (see [`super::Logged::started`]).
//! - **Anything else written to a file may be lost, in part.** Each change
//!   since the last sync, in order: a write is dropped, lands whole, or is
//!   torn — any subset of its 512-byte sectors (counted from the start of
//!   the file) lands, the others keep what was there; a truncation happens
//!   or not. A file grows only by writes that landed at least in part: to
//!   the write's end, or to the end of its last sector that landed; bytes
//!   in between that nothing wrote read as zeros. A write that reported an
//!   error is an unsynced write like any other; if a later sync covers it,
//!   what it left is fixed then, once (a seeded choice per write).
//! - **A directory entry is durable once a sync of its directory returns**,
//!   for the changes (create, mkdir, rename, remove) that completed before
//!   the sync began. Until then each change survives or not,
//!   independently, applied in order to the durable entries and kept
//!   consistent: a rename or remove of an entry that is not there (its
//!   creation did not survive) does nothing. A directory whose own entry
//!   did not survive takes everything under it with it. A file whose
//!   last entry is gone is gone. Renames across directories are not
//!   modelled (the engine makes none; the model refuses them).
//! - **An operation still running at the cut** (begun before the cut,
//!   recorded after it) may have happened: it is one more change not yet
//!   durable. A sync still running covers nothing.
//!
//! The session's root directory is the image's root: it exists before the
//! session and is not in the log.
//!
//! The images of one cut are drawn by [`Disk::image`] in one of a few
//! moods, so that the likely extremes come up often: every change not yet
//! durable lost; every one kept whole; each one independently dropped,
//! kept whole or torn; every write torn.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::io;
use std::path::{Component, Path, PathBuf};

use super::Logged;
use crate::storage::fs::Event;
use crate::test_support::Rng;

/// The unit a torn write is cut in: the logical sector of the disks we
/// target. A device with 4 KiB sectors tears less finely, so this is the
/// stricter choice.
pub const SECTOR_BYTES: u64 = 512;

type InodeId = usize;
type DirId = usize;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Node {
    File(InodeId),
    Dir(DirId),
}

/// A change to a file's contents not yet durable.
#[derive(Debug, Clone)]
enum FileChange<'a> {
    Write {
        offset: u64,
        data: &'a [u8],
        failed: bool,
        /// Index in the log.
        at: usize,
    },
    Truncate {
        len: u64,
        at: usize,
    },
}

impl FileChange<'_> {
    fn at(&self) -> usize {
        match self {
            FileChange::Write { at, .. } | FileChange::Truncate { at, .. } => *at,
        }
    }
}

#[derive(Debug, Clone, Default)]
struct Inode<'a> {
    /// The durable bytes; their length is the durable length.
    durable: Vec<u8>,
    /// Changes since, in order.
    unsynced: Vec<FileChange<'a>>,
}

/// A change to a directory's entries not yet durable.
#[derive(Debug, Clone)]
enum EntryChange {
    /// A created file or directory.
    Link {
        name: String,
        node: Node,
    },
    /// Replaces `to` if it exists.
    Rename {
        from: String,
        to: String,
        node: Node,
    },
    Unlink {
        name: String,
        node: Node,
    },
}

#[derive(Debug, Clone, Default)]
struct Directory {
    durable: BTreeMap<String, Node>,
    /// What the running program sees.
    live: BTreeMap<String, Node>,
    /// Changes since the last sync, with their index in the log.
    unsynced: Vec<(usize, EntryChange)>,
}

/// Apply one entry change; `false` if it does nothing because what it
/// changes is not there.
fn apply_entry(entries: &mut BTreeMap<String, Node>, change: &EntryChange) -> bool {
    match change {
        EntryChange::Link { name, node } => {
            entries.insert(name.clone(), *node);
            true
        }
        EntryChange::Rename { from, to, node } => {
            if entries.get(from) != Some(node) {
                return false;
            }
            entries.remove(from);
            entries.insert(to.clone(), *node);
            true
        }
        EntryChange::Unlink { name, node } => {
            if entries.get(name) != Some(node) {
                return false;
            }
            entries.remove(name);
            true
        }
    }
}

/// The file system as a log prefix left it: per file its durable bytes and
/// the changes since its last sync, per directory its durable entries and
/// the changes since its last sync. [`Disk::advance`] replays more of the
/// log; [`Disk::image`] draws what a power cut at the current position
/// leaves.
#[derive(Debug, Clone)]
pub struct Disk<'a> {
    root: PathBuf,
    log: &'a [Logged],
    /// `log[..position]` is applied.
    position: usize,
    inodes: Vec<Inode<'a>>,
    /// `dirs[0]` is the root.
    dirs: Vec<Directory>,
}

/// How an image treats the changes that are not durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mood {
    /// Every one is lost: the durable state alone.
    LoseAll,
    /// Every one survives whole.
    KeepAll,
    /// Each one independently: entries kept or not, writes dropped, kept
    /// whole or torn.
    Mixed,
    /// Entries kept or not, every write torn.
    Torn,
}

/// What became of one write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Landed {
    Nothing,
    Whole,
    Torn,
}

impl<'a> Disk<'a> {
    /// The empty root `root` (absolute, as the session's), before the
    /// first change of `log`.
    #[must_use]
    pub fn new(root: &Path, log: &'a [Logged]) -> Disk<'a> {
        Disk {
            root: root.to_owned(),
            log,
            position: 0,
            inodes: Vec::new(),
            dirs: vec![Directory::default()],
        }
    }

    /// How many changes of the log are applied.
    #[must_use]
    pub fn position(&self) -> usize {
        self.position
    }

    /// Apply the log up to (not including) `position`.
    pub fn advance(&mut self, position: usize) {
        assert!(position <= self.log.len(), "past the end of the log");
        assert!(position >= self.position, "a disk does not go back");
        while self.position < position {
            let index = self.position;
            if let Err(what) = self.apply(index, false) {
                panic!(
                    "the log does not replay at change {index} ({:?}): {what}",
                    self.log[index].event
                );
            }
            self.position += 1;
        }
    }

    /// One image a power cut right after the applied changes can leave,
    /// drawn with `rng`.
    #[must_use]
    pub fn image(&self, rng: &mut Rng) -> Image {
        let mood = match rng.below(4) {
            0 => Mood::LoseAll,
            1 => Mood::KeepAll,
            2 => Mood::Mixed,
            _ => Mood::Torn,
        };
        // Operations begun before the cut and recorded after it may have
        // happened: apply them as changes not yet durable (syncs among
        // them cover nothing).
        let running: Vec<usize> = (self.position..self.log.len())
            .filter(|&index| {
                self.log[index].started < self.position
                    && !matches!(
                        self.log[index].event,
                        Event::SyncFile { .. } | Event::SyncDir { .. }
                    )
            })
            .collect();
        let mut builder = ImageBuilder {
            mood,
            rng,
            image: Image::default(),
            files: HashMap::new(),
        };
        if running.is_empty() {
            builder.directory(self, 0, Path::new(""));
        } else {
            let mut disk = self.clone();
            for index in running {
                // Everything it depends on completed before it began, so
                // before the cut: it applies.
                if let Err(what) = disk.apply(index, true) {
                    panic!(
                        "change {index} ({:?}), running at the cut, does not apply: {what}",
                        self.log[index].event
                    );
                }
            }
            builder.directory(&disk, 0, Path::new(""));
        }
        builder.image
    }

    /// The image in which every change survives whole: what the running
    /// program saw (a failed write counted as landed), without the
    /// operations still running.
    #[must_use]
    pub fn everything(&self) -> Image {
        self.image_in(Mood::KeepAll)
    }

    /// The image in which every change not yet durable is lost: the
    /// durable state alone, without the operations still running.
    #[must_use]
    pub fn durable(&self) -> Image {
        self.image_in(Mood::LoseAll)
    }

    fn image_in(&self, mood: Mood) -> Image {
        let mut rng = Rng(1);
        let mut builder = ImageBuilder {
            mood,
            rng: &mut rng,
            image: Image::default(),
            files: HashMap::new(),
        };
        builder.directory(self, 0, Path::new(""));
        builder.image
    }

    /// Apply `log[index]`. `running`: the operation is still running at
    /// the cut (it is not a sync).
    fn apply(&mut self, index: usize, running: bool) -> Result<(), String> {
        let log: &'a [Logged] = self.log;
        let logged = &log[index];
        match &logged.event {
            Event::Mkdir { path } => {
                let (parent, name) = self.parent_and_name(path)?;
                if self.dirs[parent].live.contains_key(&name) {
                    return Err(format!("{} exists", path.display()));
                }
                let id = self.dirs.len();
                self.dirs.push(Directory::default());
                self.link(parent, name, Node::Dir(id), index);
            }
            Event::Create { path } => match self.resolve(path)? {
                Some(Node::File(inode)) => self.inodes[inode]
                    .unsynced
                    .push(FileChange::Truncate { len: 0, at: index }),
                Some(Node::Dir(_)) => return Err(format!("{} is a directory", path.display())),
                None => {
                    let (parent, name) = self.parent_and_name(path)?;
                    let id = self.inodes.len();
                    self.inodes.push(Inode::default());
                    self.link(parent, name, Node::File(id), index);
                }
            },
            Event::Write {
                path,
                offset,
                data,
                failed,
            } => {
                let inode = self.file(path)?;
                self.inodes[inode].unsynced.push(FileChange::Write {
                    offset: *offset,
                    data,
                    failed: *failed,
                    at: index,
                });
            }
            Event::Truncate { path, len } => {
                let inode = self.file(path)?;
                self.inodes[inode].unsynced.push(FileChange::Truncate {
                    len: *len,
                    at: index,
                });
            }
            Event::SyncFile { path } => {
                assert!(!running, "a running sync is not applied");
                let inode = self.file(path)?;
                self.sync_file(inode, logged.started);
            }
            Event::Rename { from, to } => {
                let (parent, from_name) = self.parent_and_name(from)?;
                let (to_parent, to_name) = self.parent_and_name(to)?;
                if parent != to_parent {
                    return Err(format!(
                        "a rename across directories ({} to {}) is not modelled",
                        from.display(),
                        to.display()
                    ));
                }
                let directory = &mut self.dirs[parent];
                let Some(node) = directory.live.remove(&from_name) else {
                    return Err(format!("{} does not exist", from.display()));
                };
                directory.live.insert(to_name.clone(), node);
                directory.unsynced.push((
                    index,
                    EntryChange::Rename {
                        from: from_name,
                        to: to_name,
                        node,
                    },
                ));
            }
            Event::Remove { path } => {
                let (parent, name) = self.parent_and_name(path)?;
                let directory = &mut self.dirs[parent];
                let Some(node) = directory.live.remove(&name) else {
                    return Err(format!("{} does not exist", path.display()));
                };
                directory
                    .unsynced
                    .push((index, EntryChange::Unlink { name, node }));
            }
            Event::SyncDir { path } => {
                assert!(!running, "a running sync is not applied");
                match self.resolve(path)? {
                    Some(Node::Dir(dir)) => self.sync_dir(dir, logged.started),
                    _ => return Err(format!("{} is not a directory", path.display())),
                }
            }
        }
        Ok(())
    }

    fn link(&mut self, parent: DirId, name: String, node: Node, index: usize) {
        let directory = &mut self.dirs[parent];
        directory.live.insert(name.clone(), node);
        directory
            .unsynced
            .push((index, EntryChange::Link { name, node }));
    }

    /// Make durable the changes of `inode` recorded before `started`.
    fn sync_file(&mut self, inode: InodeId, started: usize) {
        let inode = &mut self.inodes[inode];
        let covered = inode
            .unsynced
            .iter()
            .take_while(|change| change.at() < started)
            .count();
        for change in inode.unsynced.drain(..covered) {
            match change {
                FileChange::Write {
                    offset,
                    data,
                    failed: false,
                    ..
                } => write_sectors(&mut inode.durable, offset, data, |_| true, true),
                FileChange::Write {
                    offset,
                    data,
                    failed: true,
                    at,
                } => {
                    // What a failed write left is unknown, but a sync
                    // fixes it: one seeded choice, the same in every
                    // image after this sync.
                    let mut rng =
                        Rng(0x9e37_79b9_7f4a_7c15 ^ (at as u64).wrapping_mul(0xff51_afd7));
                    let landed = match rng.below(3) {
                        0 => Landed::Nothing,
                        1 => Landed::Whole,
                        _ => Landed::Torn,
                    };
                    apply_write(&mut inode.durable, offset, data, landed, &mut rng);
                }
                FileChange::Truncate { len, .. } => inode.durable.resize(to_usize(len), 0),
            }
        }
    }

    /// Make durable the entry changes of `dir` recorded before `started`.
    fn sync_dir(&mut self, dir: DirId, started: usize) {
        let directory = &mut self.dirs[dir];
        let covered = directory
            .unsynced
            .iter()
            .take_while(|(at, _)| *at < started)
            .count();
        for (at, change) in directory.unsynced.drain(..covered) {
            assert!(
                apply_entry(&mut directory.durable, &change),
                "change {at} ({change:?}) applies to the durable entries in order"
            );
        }
    }

    fn relative<'p>(&self, path: &'p Path) -> Result<&'p Path, String> {
        path.strip_prefix(&self.root)
            .map_err(|_| format!("{} is outside {}", path.display(), self.root.display()))
    }

    /// The live node at `path`, `None` if it does not exist.
    fn resolve(&self, path: &Path) -> Result<Option<Node>, String> {
        let relative = self.relative(path)?;
        let mut node = Node::Dir(0);
        for component in relative.components() {
            let Component::Normal(name) = component else {
                return Err(format!("{} is not a plain path", path.display()));
            };
            let Node::Dir(dir) = node else {
                return Ok(None);
            };
            match self.dirs[dir]
                .live
                .get(&name.to_string_lossy().into_owned())
            {
                Some(next) => node = *next,
                None => return Ok(None),
            }
        }
        Ok(Some(node))
    }

    fn file(&self, path: &Path) -> Result<InodeId, String> {
        match self.resolve(path)? {
            Some(Node::File(inode)) => Ok(inode),
            _ => Err(format!("{} is not a file", path.display())),
        }
    }

    fn parent_and_name(&self, path: &Path) -> Result<(DirId, String), String> {
        let name = path
            .file_name()
            .ok_or_else(|| format!("{} has no name", path.display()))?
            .to_string_lossy()
            .into_owned();
        let parent = path.parent().unwrap_or(Path::new("/"));
        match self.resolve(parent)? {
            Some(Node::Dir(dir)) => Ok((dir, name)),
            _ => Err(format!("{} is not a directory", parent.display())),
        }
    }
}

/// Writes the parts of `data` (to be written at `offset`) whose sector
/// `keep` says landed, growing `content` to the write's end when `whole_len`
/// or else to the end of the last sector that landed.
fn write_sectors(
    content: &mut Vec<u8>,
    offset: u64,
    data: &[u8],
    mut keep: impl FnMut(u64) -> bool,
    whole_len: bool,
) {
    let end = offset + data.len() as u64;
    let mut landed_end = None;
    let mut start = offset;
    while start < end {
        let sector = start / SECTOR_BYTES;
        let stop = ((sector + 1) * SECTOR_BYTES).min(end);
        if keep(sector) {
            if content.len() < to_usize(stop) {
                content.resize(to_usize(stop), 0);
            }
            content[to_usize(start)..to_usize(stop)]
                .copy_from_slice(&data[to_usize(start - offset)..to_usize(stop - offset)]);
            landed_end = Some(stop);
        }
        start = stop;
    }
    if let Some(landed_end) = landed_end {
        let len = if whole_len { end } else { landed_end };
        if content.len() < to_usize(len) {
            content.resize(to_usize(len), 0);
        }
    }
}

fn apply_write(content: &mut Vec<u8>, offset: u64, data: &[u8], landed: Landed, rng: &mut Rng) {
    match landed {
        Landed::Nothing => {}
        Landed::Whole => write_sectors(content, offset, data, |_| true, true),
        Landed::Torn => {
            let whole_len = rng.below(2) == 0;
            write_sectors(content, offset, data, |_| rng.below(2) == 0, whole_len);
        }
    }
}

fn to_usize(value: u64) -> usize {
    usize::try_from(value).expect("file offsets fit usize")
}

struct ImageBuilder<'r> {
    mood: Mood,
    rng: &'r mut Rng,
    image: Image,
    /// Contents drawn per inode, so that one file seen twice is one file.
    files: HashMap<InodeId, Vec<u8>>,
}

impl ImageBuilder<'_> {
    fn keeps(&mut self) -> bool {
        match self.mood {
            Mood::LoseAll => false,
            Mood::KeepAll => true,
            Mood::Mixed | Mood::Torn => self.rng.below(2) == 0,
        }
    }

    fn landed(&mut self) -> Landed {
        match self.mood {
            Mood::LoseAll => Landed::Nothing,
            Mood::KeepAll => Landed::Whole,
            Mood::Mixed => match self.rng.below(3) {
                0 => Landed::Nothing,
                1 => Landed::Whole,
                _ => Landed::Torn,
            },
            Mood::Torn => Landed::Torn,
        }
    }

    fn directory(&mut self, disk: &Disk<'_>, dir: DirId, relative: &Path) {
        let directory = &disk.dirs[dir];
        let mut entries = directory.durable.clone();
        for (_, change) in &directory.unsynced {
            if self.keeps() {
                apply_entry(&mut entries, change);
            }
        }
        if !relative.as_os_str().is_empty() {
            self.image.entries.insert(relative.to_owned(), Content::Dir);
        }
        for (name, node) in entries {
            let path = relative.join(&name);
            match node {
                Node::Dir(child) => self.directory(disk, child, &path),
                Node::File(inode) => {
                    let content = if let Some(content) = self.files.get(&inode) {
                        content.clone()
                    } else {
                        let content = self.file(&disk.inodes[inode]);
                        self.files.insert(inode, content.clone());
                        content
                    };
                    self.image.entries.insert(path, Content::File(content));
                }
            }
        }
    }

    fn file(&mut self, inode: &Inode<'_>) -> Vec<u8> {
        let mut content = inode.durable.clone();
        for change in &inode.unsynced {
            match *change {
                FileChange::Write { offset, data, .. } => {
                    let landed = self.landed();
                    apply_write(&mut content, offset, data, landed, self.rng);
                }
                FileChange::Truncate { len, .. } => {
                    if self.keeps() {
                        content.resize(to_usize(len), 0);
                    }
                }
            }
        }
        content
    }
}

/// What one entry of an image is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Content {
    Dir,
    File(Vec<u8>),
}

/// One post-power-loss state of the session's tree: paths relative to its
/// root (which is not listed), parents before children.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Image {
    pub entries: BTreeMap<PathBuf, Content>,
}

impl Image {
    /// The contents of the file at `relative`, if the image has it.
    #[must_use]
    pub fn file(&self, relative: impl AsRef<Path>) -> Option<&[u8]> {
        match self.entries.get(relative.as_ref()) {
            Some(Content::File(bytes)) => Some(bytes),
            _ => None,
        }
    }

    /// Whether the image has a directory at `relative`.
    #[must_use]
    pub fn has_dir(&self, relative: impl AsRef<Path>) -> bool {
        self.entries.get(relative.as_ref()) == Some(&Content::Dir)
    }

    /// Write the image out under `at`, an existing empty directory.
    pub fn materialize(&self, at: &Path) -> io::Result<()> {
        for (relative, content) in &self.entries {
            let path = at.join(relative);
            match content {
                Content::Dir => std::fs::create_dir(&path)?,
                Content::File(bytes) => std::fs::write(&path, bytes)?,
            }
        }
        Ok(())
    }

    /// The tree under `at` as an image (what [`Self::materialize`] would
    /// have written), leaving out the paths `skip` says.
    pub fn read(at: &Path, skip: &impl Fn(&Path) -> bool) -> io::Result<Image> {
        fn walk(
            at: &Path,
            relative: &Path,
            skip: &impl Fn(&Path) -> bool,
            image: &mut Image,
        ) -> io::Result<()> {
            for entry in std::fs::read_dir(at.join(relative))? {
                let entry = entry?;
                let path = relative.join(entry.file_name());
                if skip(&path) {
                    continue;
                }
                if entry.file_type()?.is_dir() {
                    image.entries.insert(path.clone(), Content::Dir);
                    walk(at, &path, skip, image)?;
                } else {
                    let bytes = std::fs::read(at.join(&path))?;
                    image.entries.insert(path, Content::File(bytes));
                }
            }
            Ok(())
        }
        let mut image = Image::default();
        walk(at, Path::new(""), skip, &mut image)?;
        Ok(image)
    }

    /// One line per entry: path and length, for failure messages.
    #[must_use]
    pub fn describe(&self) -> String {
        let mut text = String::new();
        for (relative, content) in &self.entries {
            match content {
                Content::Dir => writeln!(text, "  {}/", relative.display()),
                Content::File(bytes) => {
                    writeln!(text, "  {} ({} bytes)", relative.display(), bytes.len())
                }
            }
            .expect("writing to a String");
        }
        text
    }
}

#[cfg(test)]
mod tests {
    //! The model on small hand-made logs: each rule of the module doc, in
    //! both directions (what may be lost is lost in some image, what is
    //! durable is in every one).

    use std::collections::BTreeSet;

    use super::*;

    const IMAGES: u64 = 400;

    fn root() -> PathBuf {
        PathBuf::from("/model-root")
    }

    fn at(name: &str) -> PathBuf {
        root().join(name)
    }

    /// A log written one operation at a time (each begins after the
    /// previous one is recorded), unless told otherwise.
    #[derive(Default)]
    struct Log(Vec<Logged>);

    impl Log {
        fn push(&mut self, event: Event) -> &mut Log {
            let started = self.0.len();
            self.0.push(Logged { event, started });
            self
        }

        /// The last change's operation began when `started` changes were
        /// recorded.
        fn started(&mut self, started: usize) -> &mut Log {
            self.0.last_mut().unwrap().started = started;
            self
        }

        fn mkdir(&mut self, name: &str) -> &mut Log {
            self.push(Event::Mkdir { path: at(name) })
        }

        fn create(&mut self, name: &str) -> &mut Log {
            self.push(Event::Create { path: at(name) })
        }

        fn write(&mut self, name: &str, offset: u64, data: &[u8]) -> &mut Log {
            self.push(Event::Write {
                path: at(name),
                offset,
                data: data.to_vec(),
                failed: false,
            })
        }

        fn failed_write(&mut self, name: &str, offset: u64, data: &[u8]) -> &mut Log {
            self.push(Event::Write {
                path: at(name),
                offset,
                data: data.to_vec(),
                failed: true,
            })
        }

        fn truncate(&mut self, name: &str, len: u64) -> &mut Log {
            self.push(Event::Truncate {
                path: at(name),
                len,
            })
        }

        fn sync_file(&mut self, name: &str) -> &mut Log {
            self.push(Event::SyncFile { path: at(name) })
        }

        fn sync_dir(&mut self, name: &str) -> &mut Log {
            let path = if name.is_empty() { root() } else { at(name) };
            self.push(Event::SyncDir { path })
        }

        fn rename(&mut self, from: &str, to: &str) -> &mut Log {
            self.push(Event::Rename {
                from: at(from),
                to: at(to),
            })
        }

        fn remove(&mut self, name: &str) -> &mut Log {
            self.push(Event::Remove { path: at(name) })
        }

        fn len(&self) -> usize {
            self.0.len()
        }

        /// What `f` says of the images of a cut after `k` changes, over
        /// many seeds.
        fn outcomes<T: Ord>(&self, k: usize, f: impl Fn(&Image) -> T) -> BTreeSet<T> {
            let mut disk = Disk::new(&root(), &self.0);
            disk.advance(k);
            (0..IMAGES)
                .map(|seed| f(&disk.image(&mut Rng(seed * 0x2545_f491 + 1))))
                .collect()
        }

        /// The contents of `name` in the images of a cut at the end.
        fn files(&self, name: &str) -> BTreeSet<Option<Vec<u8>>> {
            self.outcomes(self.len(), |image| image.file(name).map(<[u8]>::to_vec))
        }
    }

    fn set<T: Ord, const N: usize>(items: [T; N]) -> BTreeSet<T> {
        items.into_iter().collect()
    }

    /// A file `f` whose entry is durable, empty.
    fn durable_empty_file() -> Log {
        let mut log = Log::default();
        log.create("f").sync_dir("");
        log
    }

    #[test]
    fn a_write_never_synced_may_vanish_land_whole_or_be_torn() {
        let mut log = durable_empty_file();
        log.write("f", 0, &[7; 1024]);
        let files = log.files("f");
        let whole = vec![7; 1024];
        let mut second_only = vec![0; 512];
        second_only.extend([7; 512]);
        assert!(files.contains(&Some(Vec::new())), "dropped");
        assert!(files.contains(&Some(whole)), "whole");
        assert!(
            files.contains(&Some(vec![7; 512])),
            "torn, to its last sector"
        );
        assert!(
            files.contains(&Some(second_only)),
            "torn, first sector lost"
        );
        assert!(!files.contains(&None), "the entry is durable");
        // Torn at sector boundaries only: nothing else is possible.
        assert_eq!(files.len(), 5, "{files:?}");
    }

    #[test]
    fn a_synced_write_is_in_every_image() {
        let mut log = durable_empty_file();
        log.write("f", 0, &[7; 1024]).sync_file("f");
        assert_eq!(log.files("f"), set([Some(vec![7; 1024])]));
        // A later write that is not synced tears over it, sector by sector.
        log.write("f", 256, &[9; 512]);
        let mut both_sectors = vec![7; 256];
        both_sectors.extend([9; 512]);
        both_sectors.extend([7; 256]);
        let mut first_sector = vec![7; 256];
        first_sector.extend([9; 256]);
        first_sector.extend([7; 512]);
        let mut second_sector = vec![7; 512];
        second_sector.extend([9; 256]);
        second_sector.extend([7; 256]);
        assert_eq!(
            log.files("f"),
            set([
                Some(vec![7; 1024]),
                Some(both_sectors),
                Some(first_sector),
                Some(second_sector)
            ])
        );
    }

    #[test]
    fn a_new_file_needs_its_directory_synced() {
        let mut log = Log::default();
        log.create("f").write("f", 0, b"data").sync_file("f");
        assert_eq!(log.files("f"), set([None, Some(b"data".to_vec())]));
        log.sync_dir("");
        assert_eq!(log.files("f"), set([Some(b"data".to_vec())]));
    }

    #[test]
    fn a_directory_not_synced_in_its_parent_takes_its_files_with_it() {
        let mut log = Log::default();
        log.mkdir("d")
            .create("d/f")
            .sync_dir("d")
            .write("d/f", 0, b"data")
            .sync_file("d/f");
        let outcomes = log.outcomes(log.len(), |image| {
            (image.has_dir("d"), image.file("d/f").map(<[u8]>::to_vec))
        });
        assert_eq!(
            outcomes,
            set([(false, None), (true, Some(b"data".to_vec()))])
        );
        log.sync_dir("");
        assert_eq!(log.files("d/f"), set([Some(b"data".to_vec())]));
    }

    #[test]
    fn a_rename_before_its_directory_sync_may_be_lost() {
        // The engine's way to replace a file: tmp, sync, rename, sync dir.
        let mut log = Log::default();
        log.create("m")
            .write("m", 0, b"old")
            .sync_file("m")
            .sync_dir("")
            .create("m.tmp")
            .write("m.tmp", 0, b"new")
            .sync_file("m.tmp")
            .rename("m.tmp", "m");
        let outcomes = log.outcomes(log.len(), |image| {
            (
                image.file("m").map(<[u8]>::to_vec),
                image.file("m.tmp").map(<[u8]>::to_vec),
            )
        });
        assert_eq!(
            outcomes,
            set([
                // Nothing survived, or the tmp file's entry alone.
                (Some(b"old".to_vec()), None),
                (Some(b"old".to_vec()), Some(b"new".to_vec())),
                // The rename survived (with the creation it needs).
                (Some(b"new".to_vec()), None),
            ])
        );
        log.sync_dir("");
        assert_eq!(log.files("m"), set([Some(b"new".to_vec())]));
        assert_eq!(log.files("m.tmp"), set([None]));
    }

    #[test]
    fn a_removed_file_may_come_back_until_its_directory_is_synced() {
        let mut log = durable_empty_file();
        log.write("f", 0, b"data").sync_file("f").remove("f");
        assert_eq!(log.files("f"), set([None, Some(b"data".to_vec())]));
        log.sync_dir("");
        assert_eq!(log.files("f"), set([None]));
    }

    #[test]
    fn a_truncation_not_synced_may_be_undone() {
        let mut log = durable_empty_file();
        log.write("f", 0, &[5; 600])
            .sync_file("f")
            .truncate("f", 100);
        assert_eq!(
            log.files("f"),
            set([Some(vec![5; 100]), Some(vec![5; 600])])
        );
        log.sync_file("f");
        assert_eq!(log.files("f"), set([Some(vec![5; 100])]));
        // Creating an existing file truncates it; not durable either.
        log.create("f");
        assert_eq!(log.files("f"), set([Some(Vec::new()), Some(vec![5; 100])]));
    }

    #[test]
    fn a_file_grows_only_by_writes_that_landed() {
        let mut log = durable_empty_file();
        log.write("f", 4096, &[3; 1024]);
        for file in log.files("f") {
            let file = file.unwrap();
            assert!(
                file.is_empty() || file.contains(&3),
                "grown with nothing written: {} bytes",
                file.len()
            );
            assert!(file[..4096.min(file.len())].iter().all(|&byte| byte == 0));
        }
    }

    #[test]
    fn a_sync_covers_only_the_writes_completed_before_it_began() {
        // The second write completes while the sync runs (the sync began
        // once the first was recorded): only the first is durable.
        let mut log = durable_empty_file();
        log.write("f", 0, &[1; 512])
            .write("f", 512, &[2; 512])
            .sync_file("f")
            .started(3);
        let files = log.files("f");
        let mut both = vec![1; 512];
        both.extend([2; 512]);
        assert_eq!(files, set([Some(vec![1; 512]), Some(both)]));
    }

    #[test]
    fn an_operation_running_at_the_cut_may_have_happened() {
        // The write began before the cut (after change 2) and was recorded
        // after it.
        let mut log = durable_empty_file();
        log.write("f", 0, &[4; 512]).started(1);
        let files = log.outcomes(2, |image| image.file("f").map(<[u8]>::to_vec));
        assert_eq!(files, set([Some(Vec::new()), Some(vec![4; 512])]));
        // A sync running at the cut covers nothing.
        log.sync_file("f").started(2);
        let files = log.outcomes(3, |image| image.file("f").map(<[u8]>::to_vec));
        assert_eq!(files, set([Some(Vec::new()), Some(vec![4; 512])]));
        // A rename running at the cut.
        let mut log = durable_empty_file();
        log.rename("f", "g").started(1);
        let outcomes = log.outcomes(2, |image| {
            (image.file("f").is_some(), image.file("g").is_some())
        });
        assert_eq!(outcomes, set([(true, false), (false, true)]));
    }

    #[test]
    fn a_failed_write_may_have_landed_and_a_sync_fixes_what_it_left() {
        let mut log = durable_empty_file();
        log.failed_write("f", 0, &[6; 512]);
        assert_eq!(log.files("f"), set([Some(Vec::new()), Some(vec![6; 512])]));
        log.sync_file("f");
        assert_eq!(log.files("f").len(), 1, "fixed by the sync");
    }

    #[test]
    fn an_image_is_written_out_as_a_tree() {
        let mut log = Log::default();
        log.mkdir("d")
            .sync_dir("")
            .create("d/f")
            .sync_dir("d")
            .write("d/f", 0, b"hello")
            .sync_file("d/f");
        let mut disk = Disk::new(&root(), &log.0);
        disk.advance(log.len());
        let image = disk.image(&mut Rng(1));
        let temp = tempfile::tempdir().unwrap();
        image.materialize(temp.path()).unwrap();
        assert_eq!(std::fs::read(temp.path().join("d/f")).unwrap(), b"hello");
        assert!(image.describe().contains("d/f (5 bytes)"));
    }
}
