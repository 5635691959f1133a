//! HTTP/1.1, by hand, on httparse and the `http` crate's types.
//!
//! The layer is split like hyper's `proto/h1`: pure, sans-I/O pieces that
//! are tested byte by byte (`request`: heads; `body`: Content-Length and
//! chunked decoders; `response`: head encoding and the cached Date), and the
//! async pieces that drive them on a glommio socket (`io`: the socket and
//! its one fixed read buffer; `body_reader`: decoded, verified request
//! bodies; `conn`: the per-connection request loop).

pub mod body;
pub mod body_reader;
pub mod conn;
pub mod io;
pub mod request;
pub mod response;
