//! The server around the store: executors, listeners, connections, the
//! admin endpoint.
//!
//! `runtime` starts one executor per core; each builds the core's
//! [`Worker`](crate::node::worker::Worker) (the `node` layer: what one core
//! owns, and the mesh to the others), accepts on its own listener
//! (`listener`), and serves each connection (`conn`: read a head,
//! authenticate, route, hand the connection to the core that owns the key,
//! dispatch to `s3`). `admin` serves health and metrics (rendered by
//! `metrics`).

pub mod admin;
pub mod conn;
pub mod listener;
pub mod metrics;
pub mod runtime;
