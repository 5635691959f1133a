//! The thread-per-core server: executors, the mesh between them, listeners.
//!
//! `runtime` starts one executor per core; each runs a [`worker::Worker`]
//! that owns that core's state, accepts on its own listener (`listener`),
//! and talks to other cores only through `mesh`. `sharding` is the one
//! place that maps (bucket, key) to a shard. `admin` serves health and
//! metrics (gathered per core by `metrics`).

pub mod admin;
pub mod listener;
pub mod mesh;
pub mod metrics;
pub mod runtime;
pub mod sharding;
pub mod worker;
