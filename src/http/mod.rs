//! HTTP/1.1, by hand, on httparse and the `http` crate's types.
//!
//! The layer is split like hyper's `proto/h1`: pure, sans-I/O pieces that
//! are tested byte by byte (`request`: heads; `body`: Content-Length and
//! chunked decoders; `response`: head encoding and the cached Date), and the
//! async pieces that drive them on a glommio socket (`io`: the socket and
//! its one fixed read buffer; `body_reader`: decoded, verified request
//! bodies). It knows nothing of S3 operations, cores or shards: the
//! per-connection request loop that uses it is the server's
//! (`server::conn`). It uses `auth` only to verify payloads as they stream.

pub mod body;
pub mod body_reader;
pub mod io;
pub mod request;
pub mod response;
