//! ringstore: a single-node, S3-compatible object store for bare-metal Linux.
//!
//! # The request path
//!
//! ```text
//! client ──TCP──▶ core N: server::listener (SO_REUSEPORT, one per core)
//!                   └─ http::conn      read + parse head (http::request)
//!                       ├─ s3::router  (method, host, path, query) → Endpoint
//!                       ├─ auth        SigV4: header, presigned, chunked
//!                       ├─ http::body_reader  Content-Length / chunked /
//!                       │                     aws-chunked, verified
//!                       └─ s3::dispatch → s3::bucket, ...
//!                            └─ server::mesh ──▶ the owning core
//!                               (bucket changes: the catalog shard, 0)
//! ```
//!
//! # The on-disk state
//!
//! ```text
//! <data-dir>/format            format version and shard count (checked at start)
//! <data-dir>/lock              flock'ed by the running process
//! <data-dir>/credentials.toml  generated key pair, mode 0600 (if none configured)
//! <data-dir>/catalog           bucket catalog (storage::catalog)
//! ```
//!
//! Every hard limit is in [`limits`]; the only error a client sees is
//! [`error::S3Error`].

pub mod auth;
pub mod config;
pub mod error;
pub mod http;
pub mod limits;
pub mod s3;
pub mod server;
pub mod storage;
