//! Durable state: the bucket catalog, and the object storage engine
//! (DESIGN.md, *Storage engine*).
//!
//! - `catalog`: every bucket, one small file rewritten whole on change.
//! - `fs`: every file-system operation, with the durability rules, and the
//!   seam the fault tests inject errors and power cuts through.
//! - `location`: where a record is (segment, offset, length).
//! - `md5`: the MD5 of object bytes (the `ETag`), from AWS-LC behind a safe
//!   type.
//! - `record`: the framing of every record in a segment (checksummed).
//! - `crc`: the CRC-32C that every record and metadata file carries.
//! - `object`: the payloads of commit, tombstone and relocation records.
//! - `segment`: append-only segment files with direct I/O and group commit.
//! - `index`: the per-shard LSM index (memtable + memory-mapped rkyv runs).
//! - `shard`: one core's engine: writes, reads, recovery, and (in
//!   `shard::compaction`) the reclaiming of space.

pub mod catalog;
pub mod crc;
pub mod digest;
pub mod fs;
pub mod index;
pub mod location;
pub mod md5;
pub mod md5_lanes;
pub mod object;
pub mod record;
pub mod segment;
pub mod shard;
pub mod upload;
