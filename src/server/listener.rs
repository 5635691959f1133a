//! The accept loop of one core.
//!
//! Every core accepts on its own `SO_REUSEPORT` socket for the same address,
//! so the kernel spreads connections over the cores without any user-space
//! hand-off. Each connection gets `TCP_NODELAY` (responses are written whole,
//! so Nagle's algorithm would only add a delayed-ACK wait) and a slot out of
//! `connections_per_core_max`; past the limit the connection receives
//! `503 SlowDown` and is closed, so a flood cannot exhaust file descriptors
//! or memory.

use std::rc::Rc;
use std::time::Duration;

use glommio::net::{TcpListener, TcpStream};

use crate::http::io::ConnIo;
use crate::node::worker::Worker;
use crate::server::conn;
use crate::server::conn::Context;

/// Time allowed to tell a refused client why before closing.
const REFUSAL_WRITE_MS: u64 = 1_000;

pub async fn accept_loop(context: Rc<Context>, listener: TcpListener) {
    loop {
        let stream = match listener.accept().await {
            Ok(stream) => stream,
            Err(error) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!(%error, "accept failed");
                glommio::timer::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        serve_or_refuse(&context, stream, &[]);
    }
}

/// Take a connection handed over by another core: it counts against this
/// core's limit like one it accepted (otherwise heads naming keys of one
/// core could pile connections on it without bound).
pub fn adopt(context: &Rc<Context>, stream: TcpStream, buffered: &[u8]) {
    serve_or_refuse(context, stream, buffered);
}

/// Serve `stream` (whose first `buffered` bytes were already read) if the
/// core has a connection slot free, else refuse it.
fn serve_or_refuse(context: &Rc<Context>, stream: TcpStream, buffered: &[u8]) {
    let worker = &context.worker;
    if worker.try_open_connection() {
        let context = Rc::clone(context);
        let io = ConnIo::with_buffered(stream, buffered);
        glommio::spawn_local(async move {
            let worker = Rc::clone(&context.worker);
            conn::serve(context, io).await;
            worker.close_connection();
        })
        .detach();
    } else {
        glommio::spawn_local(refuse(worker.clone(), stream)).detach();
    }
}

/// Answer `503 SlowDown` without reading the request, and close.
async fn refuse(worker: Rc<Worker>, stream: TcpStream) {
    let request_id = worker.next_request_id();
    let error = crate::s3_error!(SlowDown, "Please reduce your request rate.");
    let body = error.to_xml(&request_id);
    let mut headers = http::HeaderMap::new();
    headers.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/xml"),
    );
    headers.insert(
        http::header::CONNECTION,
        http::HeaderValue::from_static("close"),
    );
    headers.insert(
        http::header::CONTENT_LENGTH,
        http::HeaderValue::from(body.len()),
    );
    if let Ok(value) = http::HeaderValue::from_str(&request_id) {
        headers.insert(http::HeaderName::from_static("x-amz-request-id"), value);
    }
    let mut out = Vec::with_capacity(512);
    crate::http::response::encode_response(
        &mut out,
        error.code.status(),
        &headers,
        body.as_bytes(),
    );
    let mut io = ConnIo::new(stream);
    let _ = glommio::timer::timeout(Duration::from_millis(REFUSAL_WRITE_MS), async {
        io.write_all(&out)
            .await
            .map_err(glommio::GlommioError::from)
    })
    .await;
    io.close().await;
}
