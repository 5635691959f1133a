//! One client connection: read a head, route, authenticate, run, answer,
//! and again while the connection is kept alive.
//!
//! The order of checks for each request is fixed, and each step can end the
//! request with an S3 error:
//!
//! 1. Read the head within the time limits (idle time before a request
//!    starts; `head_timeout_ms` to complete it once started, and for the
//!    first request of a connection also to start it).
//! 2. Parse it (`request::parse_head`, with the head-size, header-count and
//!    URI limits) and its body framing.
//! 3. Route it to one operation (`s3::router`).
//! 4. Authenticate it (`auth::authenticate`). Only now is
//!    `100 Continue` sent to a client that asked for it: a client whose
//!    request is refused never sends its body (S3-SCOPE.md).
//! 5. Run the handler with a [`BodyReader`] over the body.
//! 6. Write the response head and a small body in one write (so the client
//!    never waits for a delayed ACK between them; `TCP_NODELAY` is set at
//!    accept).
//!
//! If a request ends before its body was read (an error, or a handler that
//! did not need it), a small rest of the body is read and discarded so that
//! the connection can be kept alive; otherwise the connection is closed
//! after the response, with `Connection: close`.

use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime};

use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};

use crate::auth::{self, RequestView};
use crate::error::S3Error;
use crate::http::body_reader::BodyReader;
use crate::http::io::{ConnIo, deadline_in};
use crate::http::request::{BodyFraming, RequestHead, parse_head};
use crate::node::worker::Worker;
use crate::s3::router::RouterConfig;
use crate::s3::{self, S3Request};

/// At most this much of an unread request body is read and thrown away to
/// keep a connection alive; past it, closing is cheaper for both sides.
const DRAIN_BYTES_MAX: u64 = 256 * 1024;

/// How often an idle connection checks whether the server is stopping.
const IDLE_STOP_CHECK: Duration = Duration::from_millis(100);

/// How long a connection that is idle at shutdown waits for bytes already
/// on their way before it is closed: a request in the socket buffer is
/// read at once, so this only needs to cover the scheduling of the read.
const STOP_READ_GRACE_MS: u64 = 10;

/// What the connections of one core share: the core's worker and the
/// router's configuration.
pub struct Context {
    pub worker: Rc<Worker>,
    pub router: RouterConfig,
}

/// Serve one accepted connection until it closes.
pub async fn serve(context: Rc<Context>, mut io: ConnIo) {
    let worker = Rc::clone(&context.worker);
    let router = &context.router;
    let mut first = true;
    loop {
        let (head, head_len) = match read_head(&worker, &mut io, first).await {
            HeadOutcome::Head(head, head_len) => (head, head_len),
            HeadOutcome::Closed => break,
            HeadOutcome::Error(error) => {
                let request_id = worker.next_request_id();
                let _ = write_error(&worker, &mut io, &request_id, &error, false, false).await;
                record(
                    &worker,
                    &mut io,
                    "Unknown",
                    error.code.status(),
                    Instant::now(),
                );
                break;
            }
        };
        first = false;
        if let Some(owner) = owner_elsewhere(&worker, router, &head) {
            // The request's bytes are to be touched by the core that owns
            // them (DESIGN.md, principle 3): the connection moves there,
            // head and all, and that core reads the head again.
            match io.hand_off() {
                Ok((fd, buffered)) => {
                    if !worker.hand_off_connection(owner, fd, buffered).await {
                        tracing::debug!(owner, "hand-off failed: the owner is stopping");
                    }
                }
                Err(error) => tracing::warn!(%error, "cannot hand a connection off"),
            }
            return;
        }
        io.consume(head_len);
        let keep_alive = handle(&worker, router, &mut io, &head).await;
        if !keep_alive || worker.is_stopping() {
            break;
        }
    }
    io.close().await;
}

enum HeadOutcome {
    /// A complete head and its length in the buffer (not yet consumed).
    Head(Box<RequestHead>, usize),
    Closed,
    Error(S3Error),
}

async fn read_head(worker: &Worker, io: &mut ConnIo, first: bool) -> HeadOutcome {
    let config = &worker.config;
    let idle_ms = if first {
        config.head_timeout_ms.min(config.idle_timeout_ms)
    } else {
        config.idle_timeout_ms
    };
    let idle_deadline = deadline_in(idle_ms);
    let mut head_deadline: Option<Instant> = None;
    loop {
        if !io.buffered().is_empty() {
            match parse_head(io.buffered()) {
                Ok(Some((head, len))) => return HeadOutcome::Head(Box::new(head), len),
                Ok(None) => {}
                Err(error) => return HeadOutcome::Error(error.into()),
            }
            head_deadline.get_or_insert_with(|| deadline_in(config.head_timeout_ms));
        }
        let deadline = if let Some(deadline) = head_deadline {
            deadline
        } else {
            if worker.is_stopping() {
                // A request the client sent before the shutdown may already
                // wait in the socket: it is answered. Only a connection
                // with nothing to read is closed.
                match io.fill(deadline_in(STOP_READ_GRACE_MS)).await {
                    Ok(read) if read > 0 => continue,
                    _ => return HeadOutcome::Closed,
                }
            }
            // Wake up now and then to notice a shutdown while idle.
            idle_deadline.min(Instant::now() + IDLE_STOP_CHECK)
        };
        match io.fill(deadline).await {
            Ok(0) => return HeadOutcome::Closed,
            Ok(_) => {}
            Err(error) if error.kind() == std::io::ErrorKind::TimedOut => {
                if head_deadline.is_some() {
                    return HeadOutcome::Error(crate::s3_error!(
                        RequestTimeout,
                        "Your socket connection to the server was not read from or written to \
                         within the timeout period. Idle connections will be closed."
                    ));
                }
                if Instant::now() >= idle_deadline {
                    return HeadOutcome::Closed;
                }
            }
            Err(_) => return HeadOutcome::Closed,
        }
    }
}

/// The one operation this request asks for.
fn route(
    router: &RouterConfig,
    head: &RequestHead,
) -> Result<crate::s3::router::Route, crate::s3::router::RouteError> {
    crate::s3::router::route(
        router,
        &head.method,
        head.host(),
        &head.path,
        head.query.as_deref(),
        &head.headers,
    )
}

/// The core that owns the object this request names, if it is not this
/// one. Requests that name no object (bucket operations) and requests the
/// router refuses are answered here.
fn owner_elsewhere(worker: &Worker, router: &RouterConfig, head: &RequestHead) -> Option<usize> {
    if worker.shard_count() == 1 {
        return None;
    }
    let route = route(router, head).ok()?;
    let owner = worker.owner_of(route.bucket.as_deref()?, route.key.as_deref()?);
    (owner != worker.shard_id()).then_some(owner)
}

/// Run one request to its end; returns whether the connection stays open.
async fn handle(
    worker: &Rc<Worker>,
    router: &RouterConfig,
    io: &mut ConnIo,
    head: &RequestHead,
) -> bool {
    let started = Instant::now();
    let request_id = worker.next_request_id();
    let is_head = head.method == http::Method::HEAD;
    let mut keep_alive = head.keep_alive();
    let mut operation = "Unknown";

    let framing = match head.framing() {
        Ok(framing) => framing,
        Err(error) => {
            let error = S3Error::from(error);
            let status = error.code.status();
            let _ = write_error(worker, io, &request_id, &error, is_head, false).await;
            record(worker, io, operation, status, started);
            return false;
        }
    };
    let has_body = !matches!(framing, BodyFraming::None | BodyFraming::ContentLength(0));

    let outcome = run_request(
        worker,
        router,
        io,
        head,
        framing,
        &request_id,
        &mut operation,
    )
    .await;

    match outcome {
        Ok((response, body_done)) => {
            keep_alive &= body_done;
            let status = response.status;
            if write_response(worker, io, &request_id, response, is_head, keep_alive)
                .await
                .is_err()
            {
                keep_alive = false;
            }
            record(worker, io, operation, status, started);
        }
        Err((mut error, resource)) => {
            if error.resource.is_empty() {
                error.resource = resource;
            }
            // The body was not read to its end, so the next bytes on the
            // connection may be body, not a request head. Even a client
            // that asked for 100-continue and did not get it may send the
            // body after its own wait (curl does after one second), so the
            // connection is closed.
            // A client that asked for 100-continue and got a final answer
            // without it may misread the connection's next response (the
            // botocore bug above), so that connection is closed too.
            if has_body || head.expects_continue() {
                keep_alive = false;
            }
            let status = error.code.status();
            if error.code == crate::error::S3ErrorCode::InternalError {
                tracing::error!(request_id, operation, %error, "internal error");
            } else {
                tracing::debug!(request_id, operation, %error, "request refused");
            }
            if write_error(worker, io, &request_id, &error, is_head, keep_alive)
                .await
                .is_err()
            {
                keep_alive = false;
            }
            record(worker, io, operation, status, started);
        }
    }
    keep_alive
}

/// Steps 3 to 5 of the module doc: route, authenticate, run the handler.
/// Returns the response and whether the body was read to its end, or the
/// error with the resource it concerns.
async fn run_request(
    worker: &Rc<Worker>,
    router: &RouterConfig,
    io: &mut ConnIo,
    head: &RequestHead,
    framing: BodyFraming,
    request_id: &str,
    operation: &mut &'static str,
) -> Result<(s3::Response, bool), (S3Error, String)> {
    let route = route(router, head).map_err(|error| (S3Error::from(error), String::new()))?;
    *operation = route.endpoint.name();
    let resource = resource_of(&route);
    let authenticated = {
        let virtual_host_bucket = head
            .host()
            .and_then(|host| crate::s3::router::virtual_host_bucket(router, host));
        let view = RequestView {
            method: head.method.as_str(),
            path: &head.path,
            query: head.query.as_deref(),
            headers: &head.headers,
            virtual_host_bucket: virtual_host_bucket.as_deref(),
        };
        let mut cache = worker.signing_keys.borrow_mut();
        auth::authenticate(
            &view,
            &worker.credentials,
            &worker.config.region,
            SystemTime::now(),
            &mut cache,
        )
        .map_err(|error| {
            let mut error = S3Error::from(error);
            if error.code == crate::error::S3ErrorCode::AuthorizationHeaderMalformed {
                // AWS names the region it expected; clients such as s3cmd
                // read it from here and sign again for that region.
                error = error.with_extra("Region", worker.config.region.clone());
            }
            (error, resource.clone())
        })?
    };
    let decoded_len =
        decoded_content_length(&head.headers).map_err(|error| (error, resource.clone()))?;
    // Also for an empty body: botocore before 1.43.77 (the AWS CLI v1 and
    // v2 of 2025) asks for 100-continue on empty PUTs and, answered
    // without it, reuses a stale status line on the connection's next
    // request and waits out the read timeout (boto/botocore#3755). RFC
    // 9110 allows a 100 whatever the body.
    if head.expects_continue() {
        io.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
            .await
            .map_err(|error| (S3Error::internal(error), resource.clone()))?;
    }
    let mut body = BodyReader::new(
        io,
        framing,
        authenticated.payload,
        decoded_len,
        worker.config.body_read_timeout_ms,
    );
    let request = S3Request {
        head,
        route: &route,
        request_id,
        access_key_id: &authenticated.access_key_id,
    };
    let result = s3::dispatch(worker, &request, &mut body).await;
    let body_done = body.is_finished() || body.drain(DRAIN_BYTES_MAX).await;
    result
        .map(|response| (response, body_done))
        .map_err(|error| (error, resource))
}

fn resource_of(route: &crate::s3::router::Route) -> String {
    match (&route.bucket, &route.key) {
        (Some(bucket), Some(key)) => format!("/{bucket}/{key}"),
        (Some(bucket), None) => format!("/{bucket}"),
        _ => "/".to_owned(),
    }
}

/// `x-amz-decoded-content-length`, the object size of an aws-chunked body.
fn decoded_content_length(headers: &HeaderMap) -> Result<Option<u64>, S3Error> {
    let Some(value) = headers.get("x-amz-decoded-content-length") else {
        return Ok(None);
    };
    value
        .to_str()
        .ok()
        .and_then(|text| text.trim().parse::<u64>().ok())
        .map(Some)
        .ok_or_else(|| {
            crate::s3_error!(
                InvalidArgument,
                "x-amz-decoded-content-length is not a valid length"
            )
        })
}

fn record(
    worker: &Worker,
    io: &mut ConnIo,
    operation: &'static str,
    status: StatusCode,
    started: Instant,
) {
    let mut metrics = worker.metrics.borrow_mut();
    metrics.record_request(operation, status.as_u16(), started.elapsed());
    metrics.add_bytes_received(io.take_received());
    metrics.add_bytes_sent(io.take_sent());
}

async fn write_error(
    worker: &Worker,
    io: &mut ConnIo,
    request_id: &str,
    error: &S3Error,
    is_head: bool,
    keep_alive: bool,
) -> std::io::Result<()> {
    let mut response = s3::Response::new(error.code.status());
    for (name, value) in &error.headers {
        response.headers.insert(name.clone(), value.clone());
    }
    response.headers.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/xml"),
    );
    response.body = error.to_xml(request_id).into_bytes();
    write_response(worker, io, request_id, response, is_head, keep_alive).await
}

/// Write the head and the in-memory body with one write.
async fn write_response(
    worker: &Worker,
    io: &mut ConnIo,
    request_id: &str,
    mut response: s3::Response,
    is_head: bool,
    keep_alive: bool,
) -> std::io::Result<()> {
    let headers = &mut response.headers;
    if let Ok(value) = HeaderValue::from_str(request_id) {
        headers.insert(HeaderName::from_static("x-amz-request-id"), value.clone());
        headers.insert(HeaderName::from_static("x-amz-id-2"), value);
    }
    headers.insert(http::header::DATE, worker.dates.borrow_mut().header_value());
    headers.insert(http::header::SERVER, HeaderValue::from_static("ringstore"));
    let bodyless_status = response.status.is_informational()
        || response.status == StatusCode::NO_CONTENT
        || response.status == StatusCode::NOT_MODIFIED;
    if !bodyless_status && !headers.contains_key(http::header::CONTENT_LENGTH) {
        headers.insert(
            http::header::CONTENT_LENGTH,
            HeaderValue::from(response.body.len()),
        );
    }
    if !keep_alive {
        headers.insert(http::header::CONNECTION, HeaderValue::from_static("close"));
    }
    let body: &[u8] = if is_head { &[] } else { &response.body };
    let mut out = Vec::with_capacity(256 + body.len());
    crate::http::response::encode_response(&mut out, response.status, &response.headers, body);
    let Some(object) = response.object.take().filter(|_| !is_head) else {
        io.write_all(&out).await?;
        return io.flush().await;
    };
    match object.send(io, out).await {
        Ok(()) => {}
        Err(s3::get::SendError::BeforeHead(error)) => {
            // Nothing is out yet: answer with the error instead. The
            // connection is closed after it, as after any storage failure.
            tracing::error!(request_id, %error, "object could not be read");
            let mut headers = HeaderMap::new();
            headers.insert(
                http::header::CONTENT_TYPE,
                HeaderValue::from_static("application/xml"),
            );
            headers.insert(http::header::CONNECTION, HeaderValue::from_static("close"));
            headers.insert(
                HeaderName::from_static("x-amz-request-id"),
                HeaderValue::from_str(request_id).map_err(std::io::Error::other)?,
            );
            headers.insert(http::header::DATE, worker.dates.borrow_mut().header_value());
            let body = error.to_xml(request_id);
            headers.insert(http::header::CONTENT_LENGTH, HeaderValue::from(body.len()));
            let mut out = Vec::with_capacity(256 + body.len());
            crate::http::response::encode_response(
                &mut out,
                error.code.status(),
                &headers,
                body.as_bytes(),
            );
            io.write_all(&out).await?;
            io.flush().await?;
            return Err(std::io::Error::other("object could not be read"));
        }
        Err(s3::get::SendError::AfterHead(error)) => {
            // The head (and maybe part of the body) is out: the only honest
            // signal left is a short body, so the connection is closed.
            tracing::error!(request_id, %error, "object body could not be sent");
            return Err(std::io::Error::other("object body could not be sent"));
        }
    }
    io.flush().await
}
