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

use super::worker::Worker;
use crate::http::conn;
use crate::http::io::ConnIo;

/// Time allowed to tell a refused client why before closing.
const REFUSAL_WRITE_MS: u64 = 1_000;

pub async fn accept_loop(worker: Rc<Worker>, listener: TcpListener) {
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
        if worker.try_open_connection() {
            let worker = worker.clone();
            glommio::spawn_local(async move {
                conn::serve(worker.clone(), ConnIo::new(stream)).await;
                worker.close_connection();
            })
            .detach();
        } else {
            glommio::spawn_local(refuse(worker.clone(), stream)).detach();
        }
    }
}

/// Answer `503 SlowDown` without reading the request, and close.
pub(super) async fn refuse(worker: Rc<Worker>, stream: TcpStream) {
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
