//! The HTTP layer's limits and connection handling, over raw TCP: each
//! limit at exactly the limit and one past it, the head and idle timeouts
//! (configured small so the suite stays fast), the per-core connection cap,
//! malformed requests, keep-alive and pipelining.
//!
//! The limits are those of `src/limits.rs`; they are repeated here on
//! purpose, because a changed limit is a changed contract with clients and
//! should be a visible change in the tests too.

mod common;

use std::time::{Duration, Instant};

use common::{RawRequest, Server, ServerOptions, create_bucket_configuration, parse_response};

const REQUEST_HEAD_BYTES_MAX: usize = 32 * 1024;
const HEADER_COUNT_MAX: usize = 100;
const URI_BYTES_MAX: usize = 12 * 1024;

/// Length of the head of an encoded request (up to and including the blank
/// line).
fn head_len(bytes: &[u8]) -> usize {
    bytes
        .windows(4)
        .position(|window| window == b"\r\n\r\n")
        .expect("a complete head")
        + 4
}

/// A signed `ListBuckets` whose head is exactly `total` bytes, padded with
/// one unsigned header.
fn list_buckets_with_head_len(server: &Server, total: usize) -> Vec<u8> {
    let request = server.request("GET", "/");
    let base = head_len(&server.sign(&request.clone().unsigned_header("X-Pad", "")));
    assert!(base < total);
    let padded = request.unsigned_header("X-Pad", &"p".repeat(total - base));
    let bytes = server.sign(&padded);
    assert_eq!(head_len(&bytes), total);
    bytes
}

/// Goal: a head of exactly 32 KiB is served; one byte more is `400
/// RequestHeaderSectionTooLarge` and the connection is closed.
#[test]
fn request_head_bytes_limit() {
    let server = Server::start();
    let at_limit = list_buckets_with_head_len(&server, REQUEST_HEAD_BYTES_MAX);
    let response = server.send(&at_limit);
    assert_eq!(response.status, 200, "{}", response.text());

    let past_limit = list_buckets_with_head_len(&server, REQUEST_HEAD_BYTES_MAX + 1);
    let mut conn = server.connect();
    let _ = conn.try_send(&past_limit);
    let response = conn.response();
    response.assert_s3_error(400, "RequestHeaderSectionTooLarge");
    assert!(response.closes(), "{:?}", response.headers);
    conn.assert_closed(Duration::from_secs(2));
}

/// Goal: a head that never ends is refused once it passes 32 KiB, without
/// waiting for more bytes or for the head timeout.
#[test]
fn endless_request_head_is_refused_at_the_limit() {
    let server = Server::start();
    let mut conn = server.connect();
    let mut head = format!("GET / HTTP/1.1\r\nHost: {}\r\nX-Endless: ", server.addr).into_bytes();
    head.resize(REQUEST_HEAD_BYTES_MAX + 1, b'e');
    let _ = conn.try_send(&head);
    let started = Instant::now();
    let bytes = conn
        .read_until_closed(Duration::from_secs(3))
        .expect("the server must answer and close");
    assert!(started.elapsed() < Duration::from_secs(2));
    parse_response(&bytes, false).assert_s3_error(400, "RequestHeaderSectionTooLarge");
}

/// A signed `ListBuckets` with exactly `count` header fields.
fn list_buckets_with_header_count(server: &Server, count: usize) -> Vec<u8> {
    let request = server.request("GET", "/");
    // Host, x-amz-date, x-amz-content-sha256 and Authorization.
    let signed_count = 4;
    let padded = (0..count - signed_count).fold(request, |request, index| {
        request.unsigned_header(&format!("X-Filler-{index}"), "f")
    });
    let bytes = server.sign(&padded);
    let head = String::from_utf8_lossy(&bytes[..head_len(&bytes)]).into_owned();
    assert_eq!(
        head.split("\r\n")
            .filter(|line| line.contains(": "))
            .count(),
        count
    );
    bytes
}

#[test]
fn header_count_limit() {
    let server = Server::start();
    let response = server.send(&list_buckets_with_header_count(&server, HEADER_COUNT_MAX));
    assert_eq!(response.status, 200, "{}", response.text());

    let mut conn = server.connect();
    let _ = conn.try_send(&list_buckets_with_header_count(
        &server,
        HEADER_COUNT_MAX + 1,
    ));
    let response = conn.response();
    response.assert_s3_error(400, "RequestHeaderSectionTooLarge");
    conn.assert_closed(Duration::from_secs(2));
}

/// A signed `ListBuckets` whose request-target is exactly `len` bytes (an
/// unknown query parameter, which S3 ignores, makes up the length).
fn list_buckets_with_target_len(server: &Server, len: usize) -> Vec<u8> {
    let prefix = "/?pad=";
    let target = format!("{prefix}{}", "u".repeat(len - prefix.len()));
    assert_eq!(target.len(), len);
    server.sign(&server.request("GET", &target))
}

/// Goal: a request-target of exactly 12 KiB is served; one byte more is
/// `400 RequestHeaderSectionTooLarge` (not the 414 of RFC 9110: AWS S3
/// counts the request line into its header section and answers that pair)
/// and the connection is closed.
#[test]
fn uri_length_limit() {
    let server = Server::start();
    let response = server.send(&list_buckets_with_target_len(&server, URI_BYTES_MAX));
    assert_eq!(response.status, 200, "{}", response.text());

    let mut conn = server.connect();
    let _ = conn.try_send(&list_buckets_with_target_len(&server, URI_BYTES_MAX + 1));
    let response = conn.response();
    response.assert_s3_error(400, "RequestHeaderSectionTooLarge");
    assert!(response.closes(), "{:?}", response.headers);
    conn.assert_closed(Duration::from_secs(2));
}

/// Goal: a request line that is still arriving is refused as soon as its
/// target passes 12 KiB, without waiting for the line to end.
#[test]
fn unfinished_long_request_line_is_refused_early() {
    let server = Server::start();
    let mut conn = server.connect();
    let mut line = b"GET /".to_vec();
    line.resize(URI_BYTES_MAX + 100, b'u');
    conn.send(&line);
    let bytes = conn
        .read_until_closed(Duration::from_secs(2))
        .expect("a too-long target must be refused before the line ends");
    parse_response(&bytes, false).assert_s3_error(400, "RequestHeaderSectionTooLarge");
}

fn timeouts_server(head_timeout_ms: u64, idle_timeout_ms: u64) -> Server {
    ServerOptions::new()
        .config(&format!("head_timeout_ms = {head_timeout_ms}"))
        .config(&format!("idle_timeout_ms = {idle_timeout_ms}"))
        .start()
}

/// Checks what a connection received before the server closed it on a
/// timeout: nothing, or one `400 RequestTimeout` error.
fn assert_timeout_close(bytes: &[u8]) {
    if !bytes.is_empty() {
        parse_response(bytes, false).assert_s3_error(400, "RequestTimeout");
    }
}

/// Goal: a head that is started but not finished within `head_timeout_ms`
/// ends the connection (slow-loris protection), not earlier. Method: 500
/// ms timeout, a partial head, then watch when the close comes.
#[test]
fn incomplete_head_is_closed_after_the_head_timeout() {
    let server = timeouts_server(500, 60_000);
    // Measured from before the connection exists, so that the server's
    // clock (which may start at the accept) cannot start before ours: a
    // test thread that is descheduled after the connect would otherwise
    // see a close "too early" on a loaded machine.
    let started = Instant::now();
    let mut conn = server.connect();
    conn.send(format!("GET / HTTP/1.1\r\nHost: {}\r\n", server.addr).as_bytes());
    assert!(
        conn.read_until_closed(Duration::from_millis(300)).is_none(),
        "closed before the head timeout"
    );
    let bytes = conn
        .read_until_closed(Duration::from_secs(3))
        .expect("the head timeout must close the connection");
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(450),
        "closed after {elapsed:?}"
    );
    assert_timeout_close(&bytes);
}

/// Goal: the head deadline is not pushed back by each new byte. Method: a
/// byte every 100 ms, forever; the connection must close soon after the
/// 500 ms timeout.
#[test]
fn trickled_head_is_closed_after_the_head_timeout() {
    let server = timeouts_server(500, 60_000);
    // From before the connection exists, as above.
    let started = Instant::now();
    let mut conn = server.connect();
    conn.send(format!("GET / HTTP/1.1\r\nHost: {}\r\nX-Slow: ", server.addr).as_bytes());
    while started.elapsed() < Duration::from_secs(3) {
        if conn.try_send(b"s").is_err() {
            break;
        }
        if let Some(bytes) = conn.read_until_closed(Duration::from_millis(100)) {
            assert_timeout_close(&bytes);
            assert!(started.elapsed() >= Duration::from_millis(400));
            return;
        }
    }
    let bytes = conn
        .read_until_closed(Duration::from_millis(500))
        .expect("a trickled head must be cut off by the head timeout");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert_timeout_close(&bytes);
}

/// Goal: a connection that never sends anything is closed after the head
/// timeout (it counts from the accept for the first request).
#[test]
fn silent_connection_is_closed_after_the_head_timeout() {
    let server = timeouts_server(500, 60_000);
    // From before the connection exists, as above.
    let started = Instant::now();
    let mut conn = server.connect();
    let bytes = conn
        .read_until_closed(Duration::from_secs(3))
        .expect("a silent connection must be closed");
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(400),
        "closed after {elapsed:?}"
    );
    assert_timeout_close(&bytes);
}

#[test]
fn head_completed_within_the_head_timeout_is_served() {
    let server = timeouts_server(500, 60_000);
    let request = server.sign(&server.request("GET", "/"));
    let mut conn = server.connect();
    let split = request.len() / 2;
    conn.send(&request[..split]);
    std::thread::sleep(Duration::from_millis(200));
    conn.send(&request[split..]);
    let response = conn.response();
    assert_eq!(response.status, 200, "{}", response.text());
}

/// Goal: an idle keep-alive connection is kept for `idle_timeout_ms`
/// between requests, and closed silently after it.
#[test]
fn idle_keep_alive_connection_is_closed_after_the_idle_timeout() {
    let server = timeouts_server(5_000, 500);
    let mut conn = server.connect();
    conn.send(&server.sign(&server.request("GET", "/")));
    assert_eq!(conn.response().status, 200);

    // Idle for less than the timeout: still usable.
    assert_eq!(
        conn.wait_closed(Duration::from_millis(250)),
        common::Closed::StillOpen
    );
    // The server's idle clock starts once it has sent the next response,
    // which may be well before this thread reads it on a loaded machine:
    // measure from before the request, which is surely earlier.
    let idle_since = Instant::now();
    conn.send(&server.sign(&server.request("GET", "/")));
    assert_eq!(conn.response().status, 200);

    conn.assert_closed(Duration::from_secs(3));
    let idle = idle_since.elapsed();
    assert!(
        idle >= Duration::from_millis(400),
        "closed after {idle:?} idle"
    );
}

/// Goal: past `connections_per_core_max` open connections on a core, a new
/// connection gets `503 SlowDown` and is closed, and a freed slot is
/// usable again. Method: one core, a cap of 2.
#[test]
fn connections_per_core_limit() {
    let server = ServerOptions::new()
        .cores(1)
        .config("connections_per_core_max = 2")
        .start();
    let list = server.sign(&server.request("GET", "/"));
    let mut first = server.connect();
    first.send(&list);
    assert_eq!(first.response().status, 200);
    let mut second = server.connect();
    second.send(&list);
    assert_eq!(second.response().status, 200);

    // Nothing is sent on the third: the refusal must not wait for a request
    // (and a request in flight could turn the close into a reset).
    let mut third = server.connect();
    let response = third.response();
    response.assert_s3_error(503, "SlowDown");
    assert!(response.closes(), "{:?}", response.headers);
    third.assert_closed(Duration::from_secs(2));

    // The two accepted connections still work.
    first.send(&list);
    assert_eq!(first.response().status, 200);

    drop(second);
    let reopened = common::eventually(Duration::from_secs(3), || {
        let mut conn = server.connect();
        let _ = conn.try_send(&list);
        let response = conn.try_response(false).ok()?;
        (response.status == 200).then_some(response)
    });
    assert!(reopened.is_some(), "a closed connection must free its slot");
}

/// Sends `bytes` on a new connection; asserts the S3 error and the close.
fn assert_refused_and_closed(server: &Server, bytes: &[u8], status: u16, code: &str) {
    let mut conn = server.connect();
    let _ = conn.try_send(bytes);
    let response = conn.response();
    response.assert_s3_error(status, code);
    assert!(response.closes(), "{code}: {:?}", response.headers);
    conn.assert_closed(Duration::from_secs(2));
}

/// Goal: a request the server cannot parse gets an S3 XML error and the
/// connection is closed, since the position of the next request in the
/// stream is unknown.
#[test]
fn malformed_requests_get_400_and_close() {
    let server = Server::start();
    let host = server.addr;
    assert_refused_and_closed(
        &server,
        format!("GET / HTTP/9.9\r\nHost: {host}\r\n\r\n").as_bytes(),
        400,
        "InvalidRequest",
    );
    assert_refused_and_closed(
        &server,
        format!("GET / HTTP/1.1\r\nHost: {host}\r\nBad Header: x\r\n\r\n").as_bytes(),
        400,
        "InvalidRequest",
    );
    assert_refused_and_closed(
        &server,
        format!("GET / HTTP/1.1\r\nHost: {host}\r\nHost: other\r\n\r\n").as_bytes(),
        400,
        "InvalidRequest",
    );
    assert_refused_and_closed(
        &server,
        format!("GET /bucket#fragment HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes(),
        400,
        "InvalidURI",
    );
    // A TLS ClientHello on the plain-HTTP port.
    assert_refused_and_closed(
        &server,
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n",
        400,
        "InvalidRequest",
    );
}

/// Goal: the framings that enable request smuggling are refused, and so
/// is a transfer coding the server does not implement.
#[test]
fn ambiguous_or_unknown_body_framing_is_refused() {
    let server = Server::start();
    let with_both = server
        .request("PUT", "/smuggle-bucket")
        .unsigned_header("Transfer-Encoding", "chunked")
        .unsigned_header("Content-Length", "5");
    assert_refused_and_closed(&server, &server.sign(&with_both), 400, "InvalidRequest");
    let gzip = server
        .request("PUT", "/gzip-bucket")
        .unsigned_header("Transfer-Encoding", "gzip, chunked");
    assert_refused_and_closed(&server, &server.sign(&gzip), 501, "NotImplemented");
    let bad_length = server
        .request("PUT", "/length-bucket")
        .unsigned_header("Content-Length", "five");
    assert_refused_and_closed(&server, &server.sign(&bad_length), 400, "InvalidRequest");
    for name in ["smuggle-bucket", "gzip-bucket", "length-bucket"] {
        let head = server.send_signed(&server.request("HEAD", &format!("/{name}")));
        assert_eq!(head.status, 404, "{name} must not exist");
    }
}

/// Goal: HTTP/1.1 connections stay open across requests until the client
/// says `Connection: close`; HTTP/1.0 closes unless asked to keep alive.
#[test]
fn keep_alive_serves_several_requests_on_one_connection() {
    let server = Server::start();
    let mut conn = server.connect();
    let mut request_ids = Vec::new();
    for _ in 0..3 {
        conn.send(&server.sign(&server.request("GET", "/")));
        let response = conn.response();
        assert_eq!(response.status, 200);
        assert!(!response.closes());
        request_ids.push(response.request_id().to_owned());
    }
    conn.send(&server.sign(&server.request("HEAD", "/no-such-bucket")));
    let response = conn.head_response();
    assert_eq!(response.status, 404);
    request_ids.push(response.request_id().to_owned());

    // An error response keeps the connection too.
    conn.send(&server.sign(&server.request("DELETE", "/no-such-bucket")));
    conn.response().assert_s3_error(404, "NoSuchBucket");

    conn.send(&server.sign(&server.request("GET", "/").header("Connection", "close")));
    let response = conn.response();
    assert_eq!(response.status, 200);
    assert!(response.closes(), "{:?}", response.headers);
    conn.assert_closed(Duration::from_secs(2));

    let mut unique = request_ids.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(
        unique.len(),
        request_ids.len(),
        "request ids must differ: {request_ids:?}"
    );

    // HTTP/1.0 without keep-alive: one request, then close.
    let http10 = http_1_0(&server.sign(&server.request("GET", "/")));
    let mut conn = server.connect();
    conn.send(&http10);
    let response = conn.response();
    assert_eq!(response.status, 200);
    conn.assert_closed(Duration::from_secs(2));
}

fn http_1_0(request: &[u8]) -> Vec<u8> {
    let text = String::from_utf8(request.to_vec()).expect("ASCII request");
    text.replacen(" HTTP/1.1\r\n", " HTTP/1.0\r\n", 1)
        .into_bytes()
}

/// Goal: pipelined requests (several in one write, the next one starting
/// right after a body) are answered in order, each on its own. Method:
/// create, head, list and delete in one write; the answers show the
/// effects in sequence.
#[test]
fn pipelined_requests_are_answered_in_order() {
    let server = Server::start();
    let body = create_bucket_configuration(None);
    let requests = [
        server.sign(&server.request("PUT", "/pipelined").body(body.as_bytes())),
        server.sign(&server.request("HEAD", "/pipelined")),
        server.sign(&server.request("GET", "/")),
        server.sign(&server.request("DELETE", "/pipelined")),
        server.sign(&server.request("HEAD", "/pipelined")),
    ];
    let mut conn = server.connect();
    conn.send(&requests.concat());
    let created = conn.response();
    assert_eq!(created.status, 200, "{}", created.text());
    let head = conn.head_response();
    assert_eq!(head.status, 200);
    let list = conn.response();
    assert_eq!(common::xml_elements(&list.text(), "Name"), ["pipelined"]);
    let deleted = conn.response();
    assert_eq!(deleted.status, 204, "{}", deleted.text());
    let head = conn.head_response();
    assert_eq!(head.status, 404);
    assert_eq!(
        conn.wait_closed(Duration::from_millis(200)),
        common::Closed::StillOpen,
        "no extra bytes, connection kept"
    );
}

/// Goal: a request split anywhere arrives the same (the network decides
/// where segments end). Method: one signed request with a body, sent in
/// two writes split at several offsets with a pause between them.
#[test]
fn request_split_across_writes_is_served() {
    let server = Server::start();
    let body = create_bucket_configuration(None);
    let request = server.sign(&server.request("PUT", "/split-bucket").body(body.as_bytes()));
    let head = head_len(&request);
    for split in [1, 4, head - 3, head - 1, head, head + 1, request.len() - 1] {
        let mut conn = server.connect();
        conn.send(&request[..split]);
        std::thread::sleep(Duration::from_millis(30));
        conn.send(&request[split..]);
        let response = conn.response();
        assert_eq!(
            response.status,
            200,
            "split at {split}: {}",
            response.text()
        );
    }
}

#[test]
fn raw_request_helper_encodes_what_it_signs() {
    // The limit tests rely on head_len and on unsigned headers not changing
    // the signature; check both once.
    let request = RawRequest::new("GET", "/").host("127.0.0.1:1");
    let keys = common::Keys::fixture();
    let plain = request.sign(&keys, "us-east-1");
    let padded = request
        .clone()
        .unsigned_header("X-Pad", "abc")
        .sign(&keys, "us-east-1");
    assert_eq!(head_len(&padded), head_len(&plain) + "X-Pad: abc\r\n".len());
}

/// Goal: a body sent with `Transfer-Encoding: chunked` (no Content-Length)
/// is decoded and its SHA-256 checked like any other. Method: a
/// `CreateBucketConfiguration` in three HTTP chunks, once with the right
/// signed hash and once with a wrong one.
#[test]
fn chunked_transfer_encoding_body_is_decoded() {
    let server = Server::start();
    let body = create_bucket_configuration(Some("us-east-1"));
    let chunked = |data: &[u8]| {
        let mut out = Vec::new();
        for chunk in data.chunks(40) {
            out.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
            out.extend_from_slice(chunk);
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"0\r\n\r\n");
        out
    };
    let request = |path: &str, hash: &str| {
        server
            .request("PUT", path)
            .content_sha256(hash)
            .unsigned_header("Transfer-Encoding", "chunked")
            .body(&chunked(body.as_bytes()))
    };
    let sign_without_length = |request: RawRequest| {
        // `RawRequest` adds Content-Length for a body; a chunked request
        // must not have one.
        let bytes = server.sign(&request);
        let text = String::from_utf8(bytes).expect("ASCII request");
        let length = format!("Content-Length: {}\r\n", request.body.len());
        text.replacen(&length, "", 1).into_bytes()
    };

    let good = sign_without_length(request(
        "/chunked-body",
        &common::sha256_hex(body.as_bytes()),
    ));
    let response = server.send(&good);
    assert_eq!(response.status, 200, "{}", response.text());

    let bad = sign_without_length(request("/chunked-bad", &common::sha256_hex(b"other")));
    server
        .send(&bad)
        .assert_s3_error(400, "XAmzContentSHA256Mismatch");
    let head = server.send_signed(&server.request("HEAD", "/chunked-bad"));
    assert_eq!(head.status, 404);
}

/// Goal: a request refused before its body was read never leaves that body
/// in the stream to be parsed as the next request. Either the server says
/// `Connection: close` and closes, or the next request on the connection
/// is served normally.
#[test]
fn refused_request_with_body_does_not_desync_the_connection() {
    let server = Server::start();
    let body = vec![b'x'; 1000];
    let wrong = common::Keys::new(common::ACCESS_KEY_ID, "not-the-secret");
    let refusals = [
        // Authentication fails.
        server
            .request("PUT", "/desync-auth")
            .body(&body)
            .sign(&wrong, server.region()),
        // The handler refuses before reading the body.
        server.sign(&server.request("PUT", "/Invalid_Name").body(&body)),
        // An operation that does not read bodies.
        server.sign(&server.request("DELETE", "/no-such-bucket").body(&body)),
    ];
    for refused in refusals {
        let mut conn = server.connect();
        conn.send(&refused);
        let response = conn.response();
        assert!(response.status >= 400, "{}", response.text());
        if response.closes() {
            conn.assert_closed(Duration::from_secs(2));
            continue;
        }
        conn.send(&server.sign(&server.request("GET", "/")));
        let next = conn.response();
        assert_eq!(
            next.status,
            200,
            "the connection was kept after a {} but the next request failed: {}",
            response.status,
            next.text()
        );
    }
}

/// Goal: a request refused before its body is read gets its S3 error also
/// when the client writes the whole body before it reads the answer, as
/// the AWS SDKs do (they do not ask for `100 Continue`).
///
/// Regression: the server answered, then closed the socket with megabytes
/// of body unread; the kernel answers data for a closed socket with a
/// reset, and a reset throws away what the client had not read yet, the
/// answer included. Under load about one refused 4 MiB PUT in ten reached
/// the SDK as "broken pipe" instead of its error (found by
/// `tests/full_disk.rs`, where every refusal of a full disk must be a 507).
/// The server now closes in stages (RFC 9112 §9.6).
///
/// Method: a signed 4 MiB PUT into a bucket that does not exist, written
/// whole (the server refuses it before reading the body), then the answer
/// is read: `404 NoSuchBucket`, `Connection: close`, then the end of the
/// stream.
#[test]
fn refused_request_whose_client_sends_the_whole_body_first_gets_its_answer() {
    let server = Server::start();
    let body = vec![b'x'; 4 * 1024 * 1024];
    let request = server
        .request("PUT", "/no-such-bucket/object")
        .content_sha256(common::UNSIGNED_PAYLOAD)
        .body(&body);
    for _ in 0..3 {
        let mut conn = server.connect();
        conn.stream()
            .set_write_timeout(Some(Duration::from_secs(10)))
            .expect("set the write timeout");
        let sent = conn.try_send(&server.sign(&request));
        assert!(sent.is_ok(), "the server stopped taking the body: {sent:?}");
        let response = conn
            .try_response(false)
            .unwrap_or_else(|error| panic!("no answer after the whole body was sent: {error}"));
        response.assert_s3_error(404, "NoSuchBucket");
        assert!(response.closes(), "{:?}", response.headers);
        conn.assert_closed(Duration::from_secs(5));
    }
}

/// Goal: `100 Continue` is sent only once the handler reads the body, so a
/// request its handler refuses first gets the final answer without it and
/// the client never sends a body that would be thrown away.
///
/// Regression: `100 Continue` went out for every authenticated request,
/// before the handler's own checks: a PUT into a missing bucket, or onto a
/// full disk, made the AWS CLI (which asks for 100-continue above 1 MB)
/// upload the whole body only to be refused (found by `tests/full_disk.rs`).
///
/// Method: the head of a 1 MiB PUT with `Expect: 100-continue` into a
/// missing bucket gets `404 NoSuchBucket` first; the same PUT into an
/// existing bucket gets `100 Continue`, then, with the body, `200`.
#[test]
fn expect_continue_waits_for_the_handler_which_may_refuse_first() {
    let server = Server::start();
    let body = vec![b'y'; 1024 * 1024];
    let put = |path: &str| {
        server
            .request("PUT", path)
            .header("Expect", "100-continue")
            .content_length(body.len())
            .content_sha256(common::UNSIGNED_PAYLOAD)
    };
    let mut conn = server.connect();
    conn.send(&server.sign(&put("/no-such-bucket/object")));
    let response = conn.response();
    assert_ne!(
        response.status, 100,
        "100 Continue sent before the handler refused the request"
    );
    response.assert_s3_error(404, "NoSuchBucket");
    assert!(response.closes(), "{:?}", response.headers);

    let created = server.send_signed(&server.request("PUT", "/continue-put"));
    assert_eq!(created.status, 200, "{}", created.text());
    let mut conn = server.connect();
    conn.send(&server.sign(&put("/continue-put/object")));
    let interim = conn.response();
    assert_eq!(interim.status, 100, "{interim:?}");
    conn.send(&body);
    let done = conn.response();
    assert_eq!(done.status, 200, "{}", done.text());
}

/// Goal: after a refused `Expect: 100-continue` request whose body was
/// never sent, a connection the server keeps open serves the next request.
#[test]
fn connection_after_refused_expect_continue_is_usable() {
    let server = Server::start();
    let wrong = common::Keys::new(common::ACCESS_KEY_ID, "not-the-secret");
    let head_only = server
        .request("PUT", "/expect-refused")
        .header("Expect", "100-continue")
        .content_length(500)
        .content_sha256(common::UNSIGNED_PAYLOAD)
        .sign(&wrong, server.region());
    let mut conn = server.connect();
    conn.send(&head_only);
    let response = conn.response();
    response.assert_s3_error(403, "SignatureDoesNotMatch");
    if response.closes() {
        conn.assert_closed(Duration::from_secs(2));
        return;
    }
    conn.send(&server.sign(&server.request("GET", "/")));
    assert_eq!(conn.response().status, 200);
}

/// Goal: request ids are unique across connections and cores, and every
/// response carries a `Date` close to now (the SDKs correct clock skew from
/// it).
#[test]
fn request_ids_are_unique_and_responses_are_dated() {
    let server = Server::start();
    let mut ids = std::collections::HashSet::new();
    for index in 0..40 {
        // Mix successes and errors, on new connections.
        let request = if index % 2 == 0 {
            server.sign(&server.request("GET", "/"))
        } else {
            server.request("GET", "/").unsigned()
        };
        let response = server.send(&request);
        let id = response.request_id().to_owned();
        assert!(ids.insert(id.clone()), "request id {id} repeated");
        let date = response
            .header("date")
            .unwrap_or_else(|| panic!("no Date header: {:?}", response.headers));
        let date = httpdate::parse_http_date(date)
            .unwrap_or_else(|error| panic!("bad Date {date:?}: {error}"));
        let now = std::time::SystemTime::now();
        let skew = now
            .duration_since(date)
            .or_else(|_| date.duration_since(now))
            .expect("comparable times");
        assert!(skew < Duration::from_secs(5), "Date is {skew:?} off");
    }
}
