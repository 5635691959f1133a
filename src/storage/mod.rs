//! Durable state: the bucket catalog, and the object storage engine that is
//! being built (DESIGN.md, *Storage engine*).
//!
//! - `catalog`: every bucket, one small file rewritten whole on change.
//! - `location`: where a record is (segment, offset, length).
//! - `record`: the framing of every record in a segment (checksummed).
//! - `object`: the payloads of commit and tombstone records.
//! - `segment`: append-only segment files with direct I/O and group commit.
//!
//! The segments, records and object payloads are complete and tested on
//! their own; the per-shard engine that ties them to the index and to the
//! S3 object operations is the next step.

pub mod catalog;
pub mod index;
pub mod location;
pub mod object;
pub mod record;
pub mod segment;
pub mod shard;
