//! The bucket catalog: every bucket's name, region and creation time.
//!
//! Buckets are few and change rarely, so the catalog is one small file,
//! `<data-dir>/catalog`, rewritten whole on every change. Shard 0 owns it:
//! it is the only writer, and after each durable change it sends a copy to
//! every other shard, which answer bucket lookups from their copy without
//! crossing cores (see `node::worker`).
//!
//! # File format (little-endian)
//!
//! ```text
//! +--------------+---------+------------+----------------+-------+---------+
//! | magic        | version | generation | bucket count n | n ×   | crc32c  |
//! | "RSCATLG\0"  | u32     | u64        | u32            | entry | u32     |
//! +--------------+---------+------------+----------------+-------+---------+
//! entry = name_len u16 | name (UTF-8) | region_len u16 | region | created_ms i64
//! ```
//!
//! The CRC32C covers every byte before it. `generation` increases by one
//! with every change, so a shard can ignore an out-of-date copy.
//!
//! # Crash safety
//!
//! A change is written to `catalog.tmp`, synced, renamed over
//! `catalog`, and the directory is fsync'ed before the change is
//! acknowledged. A crash before the rename leaves the old catalog (and a
//! stray `catalog.tmp`, overwritten by the next change); a crash after it
//! leaves the new one. Rename is atomic on the file systems we support, so
//! `catalog` is always one whole version; a CRC mismatch therefore means
//! damage, and the start fails rather than serving without buckets.

use std::collections::BTreeMap;
use std::path::Path;

use crate::limits;
use crate::storage::crc;

pub const CATALOG_FILE: &str = "catalog";
const MAGIC: &[u8; 8] = b"RSCATLG\0";
const VERSION: u32 = 1;

/// One bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BucketInfo {
    pub region: String,
    /// Creation time, Unix milliseconds.
    pub created_ms: i64,
}

/// All buckets, ordered by name (`ListBuckets` returns them in this order).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Catalog {
    pub generation: u64,
    pub buckets: BTreeMap<String, BucketInfo>,
}

#[derive(Debug)]
pub enum CatalogError {
    Io(std::io::Error),
    /// A change failed before the new catalog replaced the old one (a full
    /// disk, say): the old catalog rules, and the change may be tried
    /// again.
    NotStored(std::io::Error),
    /// The file is damaged: its checksum or framing does not match.
    Corrupted(String),
}

impl std::fmt::Display for CatalogError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Io(error) => write!(f, "bucket catalog I/O error: {error}"),
            Self::NotStored(error) => write!(f, "bucket catalog not written: {error}"),
            Self::Corrupted(what) => write!(f, "bucket catalog is damaged: {what}"),
        }
    }
}

impl std::error::Error for CatalogError {}

impl From<std::io::Error> for CatalogError {
    fn from(error: std::io::Error) -> Self {
        Self::Io(error)
    }
}

impl Catalog {
    #[must_use]
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(32 + self.buckets.len() * 48);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&VERSION.to_le_bytes());
        out.extend_from_slice(&self.generation.to_le_bytes());
        let count = u32::try_from(self.buckets.len()).expect("bucket count is bounded");
        out.extend_from_slice(&count.to_le_bytes());
        for (name, info) in &self.buckets {
            push_str16(&mut out, name);
            push_str16(&mut out, &info.region);
            out.extend_from_slice(&info.created_ms.to_le_bytes());
        }
        let crc = crc::crc32c(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<Catalog, CatalogError> {
        let corrupted = |what: &str| CatalogError::Corrupted(what.to_owned());
        if bytes.len() < MAGIC.len() + 4 + 8 + 4 + 4 {
            return Err(corrupted("file too short"));
        }
        let (body, crc_bytes) = bytes.split_at(bytes.len() - 4);
        let crc = u32::from_le_bytes(crc_bytes.try_into().expect("4 bytes"));
        if crc::crc32c(body) != crc {
            return Err(corrupted("checksum mismatch"));
        }
        let mut reader = Reader { bytes: body };
        if reader.take(MAGIC.len())? != MAGIC {
            return Err(corrupted("bad magic"));
        }
        let version = reader.u32()?;
        if version != VERSION {
            return Err(CatalogError::Corrupted(format!(
                "unsupported version {version}"
            )));
        }
        let generation = reader.u64()?;
        let count = reader.u32()? as usize;
        if count > limits::BUCKET_COUNT_MAX {
            return Err(corrupted("bucket count past the limit"));
        }
        let mut buckets = BTreeMap::new();
        for _ in 0..count {
            let name = reader.str16()?;
            let region = reader.str16()?;
            let created_ms = reader.i64()?;
            if buckets
                .insert(name, BucketInfo { region, created_ms })
                .is_some()
            {
                return Err(corrupted("duplicate bucket"));
            }
        }
        if !reader.bytes.is_empty() {
            return Err(corrupted("trailing bytes"));
        }
        Ok(Catalog {
            generation,
            buckets,
        })
    }

    /// Read the catalog at start; a missing file is an empty catalog.
    pub fn load(data_dir: &Path) -> Result<Catalog, CatalogError> {
        match crate::storage::fs::read(&data_dir.join(CATALOG_FILE)) {
            Ok(bytes) => Catalog::decode(&bytes),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(Catalog::default()),
            Err(error) => Err(CatalogError::Io(error)),
        }
    }

    /// Make this version of the catalog durable (see the module doc for the
    /// order of steps and why), on glommio's blocking pool so that the core
    /// does not stall on the syncs.
    pub async fn store(&self, data_dir: &Path) -> Result<(), CatalogError> {
        let path = data_dir.join(CATALOG_FILE);
        let bytes = self.encode();
        glommio::executor()
            .spawn_blocking(move || crate::storage::fs::replace_file_durably(&path, &bytes))
            .await
            .map_err(|error| match error {
                crate::storage::fs::ReplaceError::NotReplaced(error) => {
                    CatalogError::NotStored(error)
                }
                crate::storage::fs::ReplaceError::Unsure(error) => CatalogError::Io(error),
            })
    }
}

fn push_str16(out: &mut Vec<u8>, text: &str) {
    let len = u16::try_from(text.len()).expect("catalog strings are short");
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(text.as_bytes());
}

struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, len: usize) -> Result<&'a [u8], CatalogError> {
        if self.bytes.len() < len {
            return Err(CatalogError::Corrupted("truncated entry".into()));
        }
        let (head, rest) = self.bytes.split_at(len);
        self.bytes = rest;
        Ok(head)
    }
    fn u32(&mut self) -> Result<u32, CatalogError> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().expect("4")))
    }
    fn u64(&mut self) -> Result<u64, CatalogError> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().expect("8")))
    }
    fn i64(&mut self) -> Result<i64, CatalogError> {
        Ok(i64::from_le_bytes(self.take(8)?.try_into().expect("8")))
    }
    fn str16(&mut self) -> Result<String, CatalogError> {
        let len = u16::from_le_bytes(self.take(2)?.try_into().expect("2"));
        let bytes = self.take(usize::from(len))?;
        String::from_utf8(bytes.to_vec())
            .map_err(|_| CatalogError::Corrupted("name is not UTF-8".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Catalog {
        let mut catalog = Catalog {
            generation: 7,
            ..Catalog::default()
        };
        for (name, created_ms) in [("alpha", 1), ("backups-2026", 1_700_000_000_000)] {
            catalog.buckets.insert(
                name.to_owned(),
                BucketInfo {
                    region: "us-east-1".to_owned(),
                    created_ms,
                },
            );
        }
        catalog
    }

    #[test]
    fn round_trip() {
        let catalog = sample();
        assert_eq!(Catalog::decode(&catalog.encode()).unwrap(), catalog);
        let empty = Catalog::default();
        assert_eq!(Catalog::decode(&empty.encode()).unwrap(), empty);
    }

    #[test]
    fn every_single_bit_flip_is_rejected() {
        let bytes = sample().encode();
        for index in 0..bytes.len() {
            for bit in 0..8 {
                let mut damaged = bytes.clone();
                damaged[index] ^= 1 << bit;
                assert!(
                    Catalog::decode(&damaged).is_err(),
                    "flip of bit {bit} in byte {index} was accepted"
                );
            }
        }
    }

    #[test]
    fn every_truncation_is_rejected() {
        let bytes = sample().encode();
        for len in 0..bytes.len() {
            assert!(Catalog::decode(&bytes[..len]).is_err(), "length {len}");
        }
    }

    #[test]
    fn missing_file_is_an_empty_catalog() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(Catalog::load(dir.path()).unwrap(), Catalog::default());
    }
}
