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
//! 4. Authenticate it (`auth::authenticate`).
//! 5. Run the handler with a [`BodyReader`] over the body. `100 Continue`
//!    goes to a client that asked for it only when the handler first reads
//!    the body, after its own checks (the bucket exists, the disk has
//!    room): a client whose request is refused never sends its body
//!    (S3-SCOPE.md). An empty body gets it at once (see `run_request`).
//! 6. Write the response head and a small body in one write (so the client
//!    never waits for a delayed ACK between them; `TCP_NODELAY` is set at
//!    accept).
//!
//! If a request ends before its body was read (an error, or a handler that
//! did not need it), a small rest of the body is read and discarded so that
//! the connection can be kept alive; otherwise the connection is closed
//! after the response, with `Connection: close`, in stages (RFC 9112
//! §9.6): the sending side is shut down, and what the client still sends
//! is read and thrown away for a bounded time before the socket is closed.
//! Closing it at once, with unread input, makes the kernel send a reset
//! that can reach the client before it has read the response: a client
//! still writing its body (the AWS SDKs do not wait for `100 Continue`)
//! then sees "broken pipe" instead of the S3 error.

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

/// Longest a connection closed with an unread request body goes on reading
/// and discarding it (see the module doc). 2 s lets a client on a fast
/// link finish a body of tens of MiB and read the answer, and keeps a
/// shutdown's drain short; a slower or larger upload gets the reset after
/// all.
const LINGER_MS: u64 = 2_000;

/// At most this much of an unread request body is discarded while
/// lingering: the largest part of a multipart upload that clients commonly
/// send (the AWS CLI's default is 8 MiB), several times over.
const LINGER_BYTES_MAX: u64 = 64 * 1024 * 1024;

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
        match handle(&context, &mut io, &head).await {
            After::KeepAlive if !worker.is_stopping() => {}
            After::KeepAlive | After::Close => break,
            After::CloseUnread => {
                io.close_lingering(deadline_in(LINGER_MS), LINGER_BYTES_MAX)
                    .await;
                return;
            }
        }
    }
    io.close().await;
}

/// What becomes of the connection after a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum After {
    KeepAlive,
    Close,
    /// Close, while the client may still be sending the request's body.
    CloseUnread,
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

/// Run one request to its end; returns what becomes of the connection.
async fn handle(context: &Context, io: &mut ConnIo, head: &RequestHead) -> After {
    let worker = &context.worker;
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
            return After::Close;
        }
    };
    let has_body = !matches!(framing, BodyFraming::None | BodyFraming::ContentLength(0));

    let (outcome, body_done) =
        run_request(context, io, head, framing, &request_id, &mut operation).await;

    match outcome {
        Ok(response) => {
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
            // The body may not have been read to its end, so the next bytes
            // on the connection may be body, not a request head. Even a client
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
    if keep_alive {
        After::KeepAlive
    } else if has_body && !body_done {
        After::CloseUnread
    } else {
        After::Close
    }
}

/// Steps 3 to 5 of the module doc: route, authenticate, run the handler.
/// Returns the response, or the error with the resource it concerns, and
/// whether the body was read to its end.
async fn run_request(
    context: &Context,
    io: &mut ConnIo,
    head: &RequestHead,
    framing: BodyFraming,
    request_id: &str,
    operation: &mut &'static str,
) -> (Result<s3::Response, (S3Error, String)>, bool) {
    let mut body_done = false;
    let result = run_request_reading(
        context,
        io,
        head,
        framing,
        request_id,
        operation,
        &mut body_done,
    )
    .await;
    (result, body_done)
}

/// [`run_request`], which sets `body_done` once the handler is through.
async fn run_request_reading(
    context: &Context,
    io: &mut ConnIo,
    head: &RequestHead,
    framing: BodyFraming,
    request_id: &str,
    operation: &mut &'static str,
    body_done: &mut bool,
) -> Result<s3::Response, (S3Error, String)> {
    let (worker, router) = (&context.worker, &context.router);
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
    // A body is asked for when the handler first reads it (BodyReader),
    // after its own checks. An empty one at once: botocore before 1.43.77
    // (the AWS CLI v1 and v2 of 2025) asks for 100-continue on empty PUTs
    // and, answered without it, reuses a stale status line on the
    // connection's next request and waits out the read timeout
    // (boto/botocore#3755). RFC 9110 allows a 100 whatever the body.
    let has_body = !matches!(framing, BodyFraming::None | BodyFraming::ContentLength(0));
    if head.expects_continue() && !has_body {
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
    if head.expects_continue() && has_body {
        body.send_continue_on_first_read();
    }
    let request = S3Request {
        head,
        route: &route,
        request_id,
        access_key_id: &authenticated.access_key_id,
    };
    let result = s3::dispatch(worker, &request, &mut body).await;
    *body_done = body.is_finished() || body.drain(DRAIN_BYTES_MAX).await;
    result.map_err(|error| (error, resource))
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
