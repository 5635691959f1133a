//! The admin listener: health and metrics, without authentication.
//!
//! It runs on core 0 and answers three GET paths, one response per
//! connection:
//! - `/health/live`: 200 while the process serves at all.
//! - `/health/ready`: 200 only when every shard answers a ping over the mesh
//!   within `READY_TIMEOUT`, else 503.
//! - `/metrics`: every shard's counters, gathered over the mesh and rendered
//!   in the Prometheus text format.
//!
//! Bind it to a loopback or management address: it is not authenticated.
//! At most `limits::ADMIN_CONNECTIONS_MAX` connections are served at once;
//! past that a new one is closed without an answer.

use std::rc::Rc;
use std::time::Duration;

use glommio::net::TcpListener;
use http::{HeaderMap, HeaderValue, StatusCode};

use super::mesh::{Reply, Request};
use super::metrics::render_prometheus;
use super::worker::Worker;
use crate::http::io::{ConnIo, deadline_in};
use crate::http::request::parse_head;
use crate::limits;

const READY_TIMEOUT: Duration = Duration::from_secs(2);
const ADMIN_HEAD_TIMEOUT_MS: u64 = 5_000;

pub async fn serve(worker: Rc<Worker>, listener: TcpListener) {
    let open = Rc::new(std::cell::Cell::new(0_usize));
    loop {
        match listener.accept().await {
            Ok(stream) => {
                if open.get() >= limits::ADMIN_CONNECTIONS_MAX {
                    // Probes and scrapers retry; a flood of them must not
                    // take descriptors or memory from the S3 listener.
                    tracing::debug!("admin connection refused: too many open");
                    drop(stream);
                    continue;
                }
                let _ = stream.set_nodelay(true);
                open.set(open.get() + 1);
                let open = open.clone();
                let worker = worker.clone();
                glommio::spawn_local(async move {
                    answer(worker, ConnIo::new(stream)).await;
                    open.set(open.get() - 1);
                })
                .detach();
            }
            Err(error) => {
                tracing::warn!(%error, "admin accept failed");
                glommio::timer::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

async fn answer(worker: Rc<Worker>, mut io: ConnIo) {
    let deadline = deadline_in(ADMIN_HEAD_TIMEOUT_MS);
    let head = loop {
        match parse_head(io.buffered()) {
            Ok(Some((head, _))) => break Some(head),
            Ok(None) => {}
            Err(_) => break None,
        }
        match io.fill(deadline).await {
            Ok(0) | Err(_) => {
                io.close().await;
                return;
            }
            Ok(_) => {}
        }
    };
    let (status, content_type, body) = match head {
        None => (
            StatusCode::BAD_REQUEST,
            "text/plain",
            "bad request\n".to_owned(),
        ),
        Some(head) if head.method != http::Method::GET => (
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "GET only\n".to_owned(),
        ),
        Some(head) => match head.path.as_str() {
            "/health/live" => (StatusCode::OK, "text/plain", "live\n".to_owned()),
            "/health/ready" => {
                if ready(&worker).await {
                    (StatusCode::OK, "text/plain", "ready\n".to_owned())
                } else {
                    (
                        StatusCode::SERVICE_UNAVAILABLE,
                        "text/plain",
                        "not ready\n".to_owned(),
                    )
                }
            }
            "/metrics" => (
                StatusCode::OK,
                "text/plain; version=0.0.4",
                metrics(&worker).await,
            ),
            _ => (
                StatusCode::NOT_FOUND,
                "text/plain",
                "not found\n".to_owned(),
            ),
        },
    };
    let mut headers = HeaderMap::new();
    headers.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static(content_type),
    );
    headers.insert(http::header::CONTENT_LENGTH, HeaderValue::from(body.len()));
    headers.insert(http::header::CONNECTION, HeaderValue::from_static("close"));
    let mut out = Vec::with_capacity(256 + body.len());
    crate::http::response::encode_response(&mut out, status, &headers, body.as_bytes());
    let _ = io.write_all(&out).await;
    io.close().await;
}

/// Ready when every shard answers a ping in time and none is stopping.
async fn ready(worker: &Rc<Worker>) -> bool {
    if worker.is_stopping() {
        return false;
    }
    let replies = glommio::timer::timeout(READY_TIMEOUT, async {
        Ok(worker.mesh.call_all(worker, || Request::Ping).await)
    })
    .await;
    match replies {
        Ok(replies) => replies.iter().all(|reply| matches!(reply, Ok(Reply::Done))),
        Err(_) => false,
    }
}

async fn metrics(worker: &Rc<Worker>) -> String {
    let replies = worker.mesh.call_all(worker, || Request::Metrics).await;
    let snapshots: Vec<_> = replies
        .into_iter()
        .map(|reply| match reply {
            Ok(Reply::Metrics(snapshot)) => *snapshot,
            _ => super::metrics::MetricsSnapshot::default(),
        })
        .collect();
    render_prometheus(&snapshots)
}
