//! The manifest: the live runs, the checkpoint and the per-bucket
//! statistics, committed by an atomic rename (format in the module doc of
//! `index`).

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

use super::{
    BucketStats, Checkpoint, IndexError, MANIFEST_BYTES_MAX, RUN_COUNT_MAX, SegmentPosition,
    sync_dir,
};
use crate::limits;
use crate::storage::crc;
use crate::storage::fs;

pub(super) const FILE: &str = "MANIFEST";
pub(super) const TMP_FILE: &str = "MANIFEST.tmp";
const MAGIC: &[u8; 8] = b"RSIDXMAN";
const VERSION: u32 = 1;

/// One live run as the manifest names it; the entry count and archive CRC
/// repeat the run's header, to catch a whole file that is the wrong one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RunRecord {
    pub number: u64,
    pub entry_count: u32,
    pub archive_crc: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Manifest {
    pub checkpoint: Checkpoint,
    /// The number the next run will get. Numbers are never reused, so a
    /// file name always means one content.
    pub next_run_number: u64,
    /// Oldest first.
    pub runs: Vec<RunRecord>,
    /// As of the checkpoint; buckets with no objects are absent.
    pub stats: BTreeMap<String, BucketStats>,
}

impl Manifest {
    pub(super) fn empty() -> Manifest {
        Manifest {
            checkpoint: Checkpoint::START,
            next_run_number: 1,
            runs: Vec::new(),
            stats: BTreeMap::new(),
        }
    }

    pub(super) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64 + self.runs.len() * 16 + self.stats.len() * 48);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&VERSION.to_le_bytes());
        out.extend_from_slice(&self.checkpoint.position.segment.to_le_bytes());
        out.extend_from_slice(&self.checkpoint.position.offset.to_le_bytes());
        out.extend_from_slice(&self.checkpoint.next_seq.to_le_bytes());
        out.extend_from_slice(&self.next_run_number.to_le_bytes());
        assert!(self.runs.len() <= RUN_COUNT_MAX);
        let run_count = u32::try_from(self.runs.len()).expect("bounded by RUN_COUNT_MAX");
        out.extend_from_slice(&run_count.to_le_bytes());
        for run in &self.runs {
            out.extend_from_slice(&run.number.to_le_bytes());
            out.extend_from_slice(&run.entry_count.to_le_bytes());
            out.extend_from_slice(&run.archive_crc.to_le_bytes());
        }
        let bucket_count = u32::try_from(self.stats.len()).expect("buckets are few");
        out.extend_from_slice(&bucket_count.to_le_bytes());
        for (name, stats) in &self.stats {
            assert!(
                stats.object_count > 0,
                "empty bucket {name:?} in the statistics"
            );
            out.push(u8::try_from(name.len()).expect("bucket names are short"));
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(&stats.object_count.to_le_bytes());
            out.extend_from_slice(&stats.bytes.to_le_bytes());
        }
        let crc = crc::crc32c(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        assert!(out.len() as u64 <= MANIFEST_BYTES_MAX);
        out
    }

    pub(super) fn decode(bytes: &[u8]) -> Result<Manifest, String> {
        if bytes.len() < 4 {
            return Err("file too short".into());
        }
        let (body, crc_bytes) = bytes.split_at(bytes.len() - 4);
        if crc::crc32c(body) != u32::from_le_bytes(crc_bytes.try_into().expect("4 bytes")) {
            return Err("checksum mismatch".into());
        }
        let mut reader = Reader { bytes: body };
        if reader.take(MAGIC.len())? != MAGIC {
            return Err("bad magic".into());
        }
        let version = reader.u32()?;
        if version != VERSION {
            return Err(format!("unsupported version {version}"));
        }
        let checkpoint = Checkpoint {
            position: SegmentPosition {
                segment: reader.u32()?,
                offset: reader.u64()?,
            },
            next_seq: reader.u64()?,
        };
        if checkpoint.position < SegmentPosition::START
            || checkpoint.next_seq < Checkpoint::START.next_seq
        {
            return Err("checkpoint before the start".into());
        }
        let next_run_number = reader.u64()?;
        let run_count = reader.u32()? as usize;
        if run_count > RUN_COUNT_MAX {
            return Err(format!("{run_count} runs"));
        }
        let mut runs = Vec::with_capacity(run_count);
        for _ in 0..run_count {
            let run = RunRecord {
                number: reader.u64()?,
                entry_count: reader.u32()?,
                archive_crc: reader.u32()?,
            };
            if run.number >= next_run_number
                || runs
                    .iter()
                    .any(|other: &RunRecord| other.number == run.number)
            {
                return Err(format!("bad run number {}", run.number));
            }
            runs.push(run);
        }
        let bucket_count = reader.u32()? as usize;
        if bucket_count > limits::BUCKET_COUNT_MAX {
            return Err(format!("{bucket_count} buckets"));
        }
        let mut stats = BTreeMap::new();
        for _ in 0..bucket_count {
            let name_len = usize::from(reader.take(1)?[0]);
            if name_len > limits::BUCKET_NAME_BYTES_MAX {
                return Err("bucket name too long".into());
            }
            let name = std::str::from_utf8(reader.take(name_len)?)
                .map_err(|_| "bucket name is not UTF-8".to_owned())?
                .to_owned();
            let bucket = BucketStats {
                object_count: reader.u64()?,
                bytes: reader.u64()?,
            };
            if bucket.object_count == 0 {
                return Err("bucket without objects".into());
            }
            if stats
                .last_key_value()
                .is_some_and(|(last, _): (&String, _)| *last >= name)
            {
                return Err("buckets out of order".into());
            }
            stats.insert(name, bucket);
        }
        if !reader.bytes.is_empty() {
            return Err("trailing bytes".into());
        }
        Ok(Manifest {
            checkpoint,
            next_run_number,
            runs,
            stats,
        })
    }

    /// The manifest in `dir`, or `None` if there is none.
    pub(super) fn load(dir: &Path) -> Result<Option<Manifest>, IndexError> {
        let path = dir.join(FILE);
        let file = match fs::open_read(&path) {
            Ok(file) => file,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(error) => return Err(error.into()),
        };
        let mut bytes = Vec::new();
        file.take(MANIFEST_BYTES_MAX + 1).read_to_end(&mut bytes)?;
        if bytes.len() as u64 > MANIFEST_BYTES_MAX {
            return Err(IndexError::Corrupted(format!(
                "{}: larger than the limit",
                path.display()
            )));
        }
        Manifest::decode(&bytes)
            .map(Some)
            .map_err(|what| IndexError::Corrupted(format!("{}: {what}", path.display())))
    }

    /// Commit this manifest: tmp, fdatasync, rename, fsync the directory.
    /// An error before the rename is [`IndexError::NotCommitted`]: the old
    /// manifest still rules, on disk and in memory.
    pub(super) fn store(&self, dir: &Path) -> Result<(), IndexError> {
        let tmp = dir.join(TMP_FILE);
        let bytes = self.encode();
        // Check before write: what we commit must read back as itself.
        assert_eq!(Manifest::decode(&bytes).as_ref(), Ok(self));
        let write = || -> std::io::Result<()> {
            let mut file = fs::File::create(&tmp)?;
            std::io::Write::write_all(&mut file, &bytes)?;
            file.sync_data()?;
            drop(file);
            fs::rename(&tmp, &dir.join(FILE))
        };
        write().map_err(|error| IndexError::NotCommitted(Box::new(error.into())))?;
        // Renamed: from here on the new manifest may be what a start reads,
        // and a failure leaves the index not knowing which one is durable.
        sync_dir(dir)
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, len: usize) -> Result<&'a [u8], String> {
        if self.bytes.len() < len {
            return Err("truncated".into());
        }
        let (head, rest) = self.bytes.split_at(len);
        self.bytes = rest;
        Ok(head)
    }

    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_le_bytes(
            self.take(4)?.try_into().expect("4 bytes"),
        ))
    }

    fn u64(&mut self) -> Result<u64, String> {
        Ok(u64::from_le_bytes(
            self.take(8)?.try_into().expect("8 bytes"),
        ))
    }
}
