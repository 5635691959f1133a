//! The admin listener: health and metrics, without authentication.
//!
//! It runs on core 0 and answers three GET paths, one response per
//! connection:
//! - `/health/live`: 200 while the process serves at all.
//! - `/health/ready`: 200 only when every shard answers a ping over the mesh
//!   within `READY_TIMEOUT` and still takes writes, else 503, naming each
//!   core that does not and why (a core whose segment write or fdatasync
//!   failed stops taking writes until a restart, and serves reads).
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

use super::metrics::render_prometheus;
use crate::http::io::{ConnIo, deadline_in};
use crate::http::request::parse_head;
use crate::limits;
use crate::node::worker::MeshClosed;
use crate::node::worker::Worker;

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
            "/health/ready" => match ready(&worker).await {
                Ok(()) => (StatusCode::OK, "text/plain", "ready\n".to_owned()),
                Err(why) => (StatusCode::SERVICE_UNAVAILABLE, "text/plain", why),
            },
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

/// Ready when every shard answers a ping in time and takes writes, and
/// none is stopping; otherwise the reasons, one line per core.
async fn ready(worker: &Rc<Worker>) -> Result<(), String> {
    if worker.is_stopping() {
        return Err("not ready: stopping\n".to_owned());
    }
    let replies = glommio::timer::timeout(READY_TIMEOUT, async {
        Ok(worker.health_everywhere().await)
    })
    .await;
    let Ok(replies) = replies else {
        return Err(format!(
            "not ready: a core did not answer within {READY_TIMEOUT:?}\n"
        ));
    };
    readiness(&replies)
}

/// The readiness verdict from every core's answer to a ping: `Err` with
/// one line per core that did not answer or takes no writes.
fn readiness(replies: &[Result<Option<String>, MeshClosed>]) -> Result<(), String> {
    use std::fmt::Write as _;
    let mut why = String::new();
    for (core, reply) in replies.iter().enumerate() {
        match reply {
            Ok(None) => {}
            Ok(Some(failure)) => {
                let _ = writeln!(
                    why,
                    "not ready: core {core} takes no writes after a failed disk write \
                     ({failure}); it still serves reads. Check the disk (kernel log, SMART), \
                     then restart ringstore: it recovers every acknowledged write from the disk."
                );
            }
            Err(MeshClosed) => {
                let _ = writeln!(why, "not ready: core {core} did not answer");
            }
        }
    }
    if why.is_empty() { Ok(()) } else { Err(why) }
}

async fn metrics(worker: &Rc<Worker>) -> String {
    let snapshots: Vec<_> = worker
        .metrics_everywhere()
        .await
        .into_iter()
        .map(Result::unwrap_or_default)
        .collect();
    render_prometheus(&snapshots)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness_names_every_core_that_takes_no_writes() {
        assert_eq!(readiness(&[Ok(None), Ok(None)]), Ok(()));
        let why = readiness(&[
            Ok(None),
            Ok(Some("seg-00000007: Input/output error".to_owned())),
            Err(MeshClosed),
        ])
        .unwrap_err();
        let lines: Vec<&str> = why.lines().collect();
        assert_eq!(lines.len(), 2, "{why}");
        assert!(
            lines[0].starts_with("not ready: core 1 takes no writes"),
            "{why}"
        );
        assert!(
            lines[0].contains("seg-00000007: Input/output error"),
            "{why}"
        );
        assert!(lines[0].contains("restart ringstore"), "{why}");
        assert_eq!(lines[1], "not ready: core 2 did not answer");
    }
}
