//! Durable state. For now: the bucket catalog (`catalog`).
//!
//! Object storage (segments, the index, recovery, compaction) is the next
//! step of the design (DESIGN.md, *Storage engine*).

pub mod catalog;
