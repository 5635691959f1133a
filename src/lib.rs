//! ringstore: a single-node, S3-compatible object store for bare-metal Linux.
//!
//! # The layers
//!
//! Each layer imports only the layers below it (`tests/layers.rs` checks
//! it; ARCHITECTURE.md walks a PUT and a GET through them):
//!
//! ```text
//! server    runtime, listeners, the connection loop (conn), admin, metrics text
//! s3        router + one file per operation group, xml
//! node      what one core owns (worker), the mesh, typed calls, sharding
//! config    the resolved configuration
//! http      HTTP/1.1 alone: heads, body framing, body reader, responses
//! auth      SigV4 / SigV2 over a request view, aws-chunked decoding
//! storage   segments, index, shard, compaction, catalog, fs
//! limits, error, crash_point
//! ```
//!
//! # The request path
//!
//! ```text
//! client ──TCP──▶ core N: server::listener (SO_REUSEPORT, one per core)
//!                   └─ server::conn    read + parse head (http::request)
//!                       ├─ s3::router  (method, host, path, query) → Endpoint
//!                       ├─ auth        SigV4/SigV2: header, presigned, chunked
//!                       ├─ http::body_reader  Content-Length / chunked /
//!                       │                     aws-chunked, verified
//!                       └─ s3::dispatch → s3::bucket, put, get, delete
//!                            ├─ storage::shard  (this core's segments + index)
//!                            └─ node::worker typed calls ──▶ other cores
//!                               (node::mesh; bucket changes: the catalog shard, 0)
//! An object request whose key another core owns is not served here: the
//! connection itself moves to the owner (server::conn, hand-off).
//! ```
//!
//! # The on-disk state
//!
//! ```text
//! <data-dir>/format            format version and shard count (checked at start)
//! <data-dir>/lock              flock'ed by the running process
//! <data-dir>/credentials.toml  generated key pair, mode 0600 (if none configured)
//! <data-dir>/catalog           bucket catalog (storage::catalog)
//! <data-dir>/shard-NN/         one core's objects (storage::shard):
//!     seg-NNNNNNNN             append-only segments (storage::segment, record)
//!     index/                   rkyv runs + MANIFEST (storage::index)
//! ```
//!
//! Every hard limit is in [`limits`]; the only error a client sees is
//! [`error::S3Error`].

pub mod auth;
pub mod check;
pub mod config;
pub mod crash_point;
pub mod error;
#[doc(hidden)]
pub mod fuzz_checks;
pub mod http;
pub mod limits;
pub mod node;
#[cfg(test)]
mod power_loss;
pub mod s3;
pub mod server;
pub mod storage;
#[cfg(test)]
mod test_support;
