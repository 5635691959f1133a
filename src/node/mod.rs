//! The store as a handler sees it: what one core owns, and how it reaches
//! the others.
//!
//! - `worker`: the [`worker::Worker`] of a core: its shard, its copy of the
//!   bucket catalog, its counters and limits, and the typed calls a handler
//!   makes to other cores ("ask the shard that owns (bucket, key)", "ask
//!   every shard"), so that no handler builds a mesh message by hand.
//! - `mesh`: the messages between cores, and the request/reply calls over
//!   glommio's channel mesh.
//! - `owner`: what a core does when another asks it for its share of a
//!   listing, a deletion or a copy source: storage work on its own shard.
//! - `sharding`: the one place that maps (bucket, key) to a shard.
//! - `metrics`: the counters each core keeps.
//!
//! It sits above the storage engine and below the S3 handlers: it knows
//! shards, buckets and keys, never HTTP requests or S3 operations. The one
//! thing a core does for the layer above it (running a connection another
//! core handed over) goes through a handler the server installs at start.

pub mod mesh;
pub mod metrics;
pub mod owner;
pub mod sharding;
pub mod worker;
