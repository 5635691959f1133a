//! Every request is checked against what was signed, and every per-core
//! limit holds whichever core accepted the connection.
//!
//! Each test here pins a hole that a review of the HTTP, auth and server
//! layers found (issue "A newcomer's first start works, and no request gets
//! past a check it should fail"): a request routed by a host it did not
//! sign, a request smuggled after the end of a signed body, connections
//! piled onto one core by hand-offs, and memory held by request bodies,
//! uploads in progress and admin connections without bound.

mod common;

use std::time::Duration;

use common::{RawConn, RawRequest, Server, ServerOptions, metric};
use ringstore::node::sharding::shard_for;

/// Goal: a presigned URL (or a captured header-signed request) made for
/// one bucket cannot be aimed at another bucket by an absolute-form
/// request-target. Method: two buckets hold `cat.jpg` with different
/// bytes; a GET and a PUT presigned for `photos.localhost` are sent with
/// the target `http://private.localhost:PORT/cat.jpg?...` and the signed
/// `Host: photos.localhost:PORT`. Before the fix the router followed the
/// target and served (or overwrote) `private`'s object.
#[tokio::test]
async fn absolute_form_target_cannot_send_a_presigned_url_to_another_bucket() {
    let server = Server::start();
    let client = server.client();
    for (bucket, body) in [("photos", "a photo"), ("private", "a secret")] {
        client.create_bucket().bucket(bucket).send().await.unwrap();
        client
            .put_object()
            .bucket(bucket)
            .key("cat.jpg")
            .body(body.as_bytes().to_vec().into())
            .send()
            .await
            .unwrap();
    }
    let port = server.addr.port();
    let signed_host = format!("photos.localhost:{port}");
    let get = RawRequest::new("GET", "/cat.jpg").host(&signed_host);
    let get_target = get.presigned_target(&server.keys, server.region(), 300);

    // The honest request works, in origin-form and in absolute-form.
    for target in [
        get_target.clone(),
        format!("http://{signed_host}{get_target}"),
    ] {
        let response =
            server.send(format!("GET {target} HTTP/1.1\r\nHost: {signed_host}\r\n\r\n").as_bytes());
        assert_eq!(response.status, 200, "{target}: {}", response.text());
        assert_eq!(response.body, b"a photo");
    }

    let redirected = format!(
        "GET http://private.localhost:{port}{get_target} HTTP/1.1\r\nHost: {signed_host}\r\n\r\n"
    );
    let response = server.send(redirected.as_bytes());
    response.assert_s3_error(400, "InvalidRequest");
    assert!(!response.text().contains("a secret"));

    let put = RawRequest::new("PUT", "/cat.jpg").host(&signed_host);
    let put_target = put.presigned_target(&server.keys, server.region(), 300);
    let overwrite = format!(
        "PUT http://private.localhost:{port}{put_target} HTTP/1.1\r\nHost: {signed_host}\r\n\
         Content-Length: 11\r\n\r\noverwritten"
    );
    server
        .send(overwrite.as_bytes())
        .assert_s3_error(400, "InvalidRequest");
    let kept = client
        .get_object()
        .bucket("private")
        .key("cat.jpg")
        .send()
        .await
        .unwrap()
        .body
        .collect()
        .await
        .unwrap()
        .into_bytes();
    assert_eq!(&kept[..], b"a secret");
}

/// The CRC-32C of `data` as an `x-amz-checksum-crc32c` value.
fn crc32c_base64(data: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(crc32c::crc32c(data).to_be_bytes())
}

/// An unsigned-payload aws-chunked body for `data` in one chunk, with a
/// CRC-32C trailer, ended by its final empty line.
fn aws_chunked_body(data: &[u8]) -> Vec<u8> {
    let mut body = format!("{:x}\r\n", data.len()).into_bytes();
    body.extend_from_slice(data);
    body.extend_from_slice(
        format!(
            "\r\n0\r\nx-amz-checksum-crc32c:{}\r\n\r\n",
            crc32c_base64(data)
        )
        .as_bytes(),
    );
    body
}

/// A PUT of `data` as an aws-chunked body, without its Content-Length.
fn aws_chunked_put(server: &Server, path: &str, data: &[u8], body: &[u8]) -> RawRequest {
    server
        .request("PUT", path)
        .content_sha256("STREAMING-UNSIGNED-PAYLOAD-TRAILER")
        .header("Content-Encoding", "aws-chunked")
        .header("x-amz-decoded-content-length", &data.len().to_string())
        .header("x-amz-trailer", "x-amz-checksum-crc32c")
        .body(body)
}

/// Sets up a bucket with a `victim` object, for the smuggling tests.
async fn bucket_with_victim(server: &Server) {
    let client = server.client();
    client
        .create_bucket()
        .bucket("smuggle")
        .send()
        .await
        .unwrap();
    client
        .put_object()
        .bucket("smuggle")
        .key("victim")
        .body(b"still here".to_vec().into())
        .send()
        .await
        .unwrap();
}

async fn assert_victim_kept(server: &Server) {
    let head = server
        .client()
        .head_object()
        .bucket("smuggle")
        .key("victim")
        .send()
        .await;
    assert!(head.is_ok(), "the smuggled DELETE ran: {head:?}");
}

/// Goal: bytes inside a request's Content-Length after the end of its
/// aws-chunked encoding are never parsed as the next request. Method: a
/// PUT whose Content-Length covers a complete aws-chunked body followed by
/// a signed DELETE of another object, sent in one write and, once more,
/// with the DELETE's bytes sent only after the aws-chunked end has
/// arrived. The PUT must fail, the connection close, and the DELETE never
/// run. Before the fix, in the second form, the server answered the PUT,
/// kept the connection, and ran the DELETE.
#[tokio::test]
async fn aws_chunked_body_ending_before_content_length_fails_and_closes() {
    let server = Server::start();
    bucket_with_victim(&server).await;
    let smuggled = server.sign(&server.request("DELETE", "/smuggle/victim"));
    let data = b"hello";
    let inner = aws_chunked_body(data);
    let mut body = inner.clone();
    body.extend_from_slice(&smuggled);
    let request = server.sign(&aws_chunked_put(&server, "/smuggle/carrier", data, &body));
    let split = request.len() - smuggled.len();

    for writes in [
        vec![&request[..]],
        vec![&request[..split], &request[split..]],
    ] {
        let mut conn = server.connect();
        conn.send(writes[0]);
        let response = conn.response();
        assert_eq!(response.status, 400, "{}", response.text());
        assert!(response.closes(), "{:?}", response.headers);
        if let Some(rest) = writes.get(1) {
            // The server may already have closed: a failed write is fine.
            let _ = conn.try_send(rest);
        }
        conn.assert_closed(Duration::from_secs(2));
    }
    assert_victim_kept(&server).await;
    let carrier = server
        .client()
        .head_object()
        .bucket("smuggle")
        .key("carrier")
        .send()
        .await;
    assert!(carrier.is_err(), "the failed PUT stored its object");

    // The same body without the extra bytes is served and keeps the
    // connection open.
    let honest = server.sign(&aws_chunked_put(&server, "/smuggle/carrier", data, &inner));
    let mut conn = server.connect();
    conn.send(&honest);
    let response = conn.response();
    assert_eq!(response.status, 200, "{}", response.text());
    assert!(!response.closes());
}

/// Goal: an aws-chunked body sent with `Transfer-Encoding: chunked` ends
/// only with the HTTP framing's own last chunk. Method: the aws-chunked
/// body in one HTTP chunk, then, instead of the final `0\r\n\r\n`, a
/// signed DELETE; and once more with a second HTTP chunk of data after the
/// aws-chunked end. Both PUTs fail, their connections close, and the
/// DELETE never runs. Before the fix the DELETE was served as the next
/// request on the connection.
#[tokio::test]
async fn aws_chunked_body_ending_before_the_http_chunked_end_fails_and_closes() {
    let server = Server::start();
    bucket_with_victim(&server).await;
    let data = b"hello";
    let inner = aws_chunked_body(data);
    let smuggled = server.sign(&server.request("DELETE", "/smuggle/victim"));
    let chunked_head = |request: RawRequest| {
        // Sign without a body, then declare the chunked framing.
        let signed = server.sign(&request);
        let text = String::from_utf8(signed).expect("ASCII head");
        text.replacen("\r\n\r\n", "\r\nTransfer-Encoding: chunked\r\n\r\n", 1)
            .into_bytes()
    };
    let head = chunked_head(aws_chunked_put(&server, "/smuggle/carrier", data, &[]));
    let http_chunk = |bytes: &[u8]| {
        let mut out = format!("{:x}\r\n", bytes.len()).into_bytes();
        out.extend_from_slice(bytes);
        out.extend_from_slice(b"\r\n");
        out
    };

    let mut unterminated = head.clone();
    unterminated.extend_from_slice(&http_chunk(&inner));
    unterminated.extend_from_slice(&smuggled);
    let mut extra_chunk = head.clone();
    extra_chunk.extend_from_slice(&http_chunk(&inner));
    extra_chunk.extend_from_slice(&http_chunk(&smuggled));
    extra_chunk.extend_from_slice(b"0\r\n\r\n");
    for request in [unterminated, extra_chunk] {
        let mut conn = server.connect();
        conn.send(&request);
        let response = conn.response();
        assert!(
            response.status == 400,
            "{} {}",
            response.status,
            response.text()
        );
        assert!(response.closes(), "{:?}", response.headers);
        conn.assert_closed(Duration::from_secs(2));
    }
    assert_victim_kept(&server).await;

    // Properly terminated, the same request is served.
    let mut honest = head;
    honest.extend_from_slice(&http_chunk(&inner));
    honest.extend_from_slice(b"0\r\n\r\n");
    let response = server.send(&honest);
    assert_eq!(response.status, 200, "{}", response.text());
}

/// Goal: a connection handed to the core that owns its key counts against
/// that core's connection limit. Method: 2 cores with a limit of 2
/// connections each; ten connections each send a request for a key core 1
/// owns and stay open. Whichever core accepted them, they all end up on
/// core 1, so exactly two are served and the others get `503 SlowDown`
/// and are closed. Before the fix the owner adopted every handed-off
/// connection, so about half of the ten were served on core 1.
#[tokio::test]
async fn handed_off_connections_count_against_the_owner_limit() {
    let cores = 2;
    let server = ServerOptions::new()
        .cores(cores)
        .config("connections_per_core_max = 2")
        .start();
    let key = (0..1000)
        .map(|index| format!("key-{index}"))
        .find(|key| shard_for("owned", key, cores) == 1)
        .unwrap();
    let get = server.sign(&server.request("GET", &format!("/owned/{key}")));
    let mut kept = Vec::new();
    let mut answered = 0;
    let mut refused = 0;
    for _ in 0..10 {
        let mut conn = server.connect();
        let _ = conn.try_send(&get);
        match conn.try_response(false) {
            // NoSuchBucket: the request reached the owner and was served.
            Ok(response) if response.status == 404 => {
                answered += 1;
                kept.push(conn);
            }
            Ok(response) => {
                response.assert_s3_error(503, "SlowDown");
                assert!(response.closes(), "{:?}", response.headers);
                refused += 1;
            }
            Err(error) => panic!("no answer: {error}"),
        }
    }
    assert_eq!((answered, refused), (2, 8));
    let metrics = server.admin_get("/metrics").text();
    let open = metric(&metrics, "ringstore_open_connections{core=\"1\"}").unwrap();
    assert!(open <= 2.0, "core 1 holds {open} connections");
    // The kept connections still work.
    for conn in &mut kept {
        conn.send(&get);
        assert_eq!(conn.response().status, 404);
    }
}

/// Goal: request bodies beyond a core's budget of body bytes in memory
/// wait for room instead of failing. Method: one core with a budget of
/// 2 MiB (one streaming upload holds two 1 MiB buffers); a first 3 MiB
/// PUT sends its head and part of its body and stalls; a second one
/// sends everything but gets no answer while the first holds the budget;
/// once the first finishes, both succeed and read back.
#[tokio::test]
async fn request_bodies_beyond_the_core_budget_wait_for_room() {
    let server = ServerOptions::new()
        .cores(1)
        .config("body_bytes_in_flight_per_core_max = 2097152")
        .start();
    server
        .client()
        .create_bucket()
        .bucket("budget")
        .send()
        .await
        .unwrap();
    let size = 3 * 1024 * 1024;
    let first_data = common::pattern(1, size);
    let second_data = common::pattern(2, size);
    let put = |key: &str, data: &[u8]| {
        server.sign(
            &server
                .request("PUT", &format!("/budget/{key}"))
                .content_sha256("UNSIGNED-PAYLOAD")
                .body(data),
        )
    };
    let first = put("first", &first_data);
    let second = put("second", &second_data);
    let split = first.len() - size / 2;

    let mut first_conn = server.connect();
    first_conn.send(&first[..split]);
    // Let the first PUT take its share of the budget before the second
    // arrives.
    std::thread::sleep(Duration::from_millis(300));
    let addr = server.addr;
    let second_sender = std::thread::spawn(move || {
        let mut conn = RawConn::connect(addr);
        conn.stream()
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        conn.send(&second);
        conn.response()
    });
    std::thread::sleep(Duration::from_secs(1));
    assert!(
        !second_sender.is_finished(),
        "the second PUT was answered while the first held the budget"
    );
    first_conn.send(&first[split..]);
    assert_eq!(first_conn.response().status, 200);
    let second_response = second_sender.join().unwrap();
    assert_eq!(second_response.status, 200, "{}", second_response.text());
    for (key, data) in [("first", &first_data), ("second", &second_data)] {
        let got = server
            .client()
            .get_object()
            .bucket("budget")
            .key(key)
            .send()
            .await
            .unwrap()
            .body
            .collect()
            .await
            .unwrap()
            .into_bytes();
        assert!(got[..] == data[..], "{key} differs");
    }
}

/// Goal: the number of multipart uploads in progress per core is bounded:
/// at the limit a creation succeeds, one past it is refused with a clear
/// error, and aborting one makes room again (also after a restart, since
/// uploads in progress survive it).
#[tokio::test]
async fn multipart_uploads_in_progress_are_bounded_per_core() {
    let mut server = ServerOptions::new()
        .cores(1)
        .config("multipart_uploads_per_core_max = 3")
        .start();
    let client = server.client();
    client
        .create_bucket()
        .bucket("uploads")
        .send()
        .await
        .unwrap();
    let mut ids = Vec::new();
    for index in 0..3 {
        let created = client
            .create_multipart_upload()
            .bucket("uploads")
            .key(format!("object-{index}"))
            .send()
            .await
            .expect("uploads up to the limit are created");
        ids.push(created.upload_id.unwrap());
    }
    let past = client
        .create_multipart_upload()
        .bucket("uploads")
        .key("one-too-many")
        .send()
        .await;
    let failure = common::sdk_failure(&past.expect_err("one past the limit is refused"));
    assert_eq!(
        (failure.status, failure.code.as_deref()),
        (400, Some("InvalidRequest"))
    );
    assert!(
        failure.body.contains("multipart uploads in progress"),
        "{}",
        failure.body
    );

    server.restart();
    let client = server.client();
    assert!(
        client
            .create_multipart_upload()
            .bucket("uploads")
            .key("one-too-many")
            .send()
            .await
            .is_err(),
        "the uploads in progress still count after a restart"
    );
    client
        .abort_multipart_upload()
        .bucket("uploads")
        .key("object-0")
        .upload_id(&ids[0])
        .send()
        .await
        .unwrap();
    client
        .create_multipart_upload()
        .bucket("uploads")
        .key("one-too-many")
        .send()
        .await
        .expect("an abort makes room");
}

/// Goal: the admin listener serves at most 64 connections at once
/// (`limits::ADMIN_CONNECTIONS_MAX`); one more is closed without an
/// answer, and a slot frees when a connection ends.
#[test]
fn admin_connections_are_bounded() {
    const ADMIN_CONNECTIONS_MAX: usize = 64;
    let server = Server::start();
    // Idle connections: each holds its slot until its head times out (5 s).
    let mut held: Vec<RawConn> = (0..ADMIN_CONNECTIONS_MAX)
        .map(|_| RawConn::connect(server.admin_addr))
        .collect();
    // Accepted in order, so every one of them is counted before this one.
    let mut past = RawConn::connect(server.admin_addr);
    assert!(
        matches!(
            past.wait_closed(Duration::from_secs(2)),
            common::Closed::Closed
        ),
        "the connection past the limit must be closed at once"
    );
    // The held connections are still served.
    let conn = held.last_mut().unwrap();
    conn.send(b"GET /health/live HTTP/1.1\r\nHost: admin\r\n\r\n");
    assert_eq!(conn.response().status, 200);
    held.clear();
    let live = common::eventually(Duration::from_secs(3), || {
        let mut conn = RawConn::connect(server.admin_addr);
        conn.try_send(b"GET /health/live HTTP/1.1\r\nHost: admin\r\n\r\n")
            .ok()?;
        let response = conn.try_response(false).ok()?;
        (response.status == 200).then_some(())
    });
    assert!(live.is_some(), "closed connections free their slots");
}

/// Goal: `DeleteBucket` and a write into the bucket exclude each other, so
/// that no write is acknowledged into a bucket that no longer exists (it
/// reappeared with the bucket's name when the bucket was created again, and
/// `ringstore check` reported damage). Method: a PUT asks for `100
/// Continue`; once the server has answered it (the PUT is in its handler),
/// a `DeleteBucket` must be refused with `409 OperationAborted`; the PUT
/// then completes, its object is there, and the bucket is not empty. Before
/// the fix the deletion succeeded and the PUT was still acknowledged.
#[tokio::test]
async fn delete_bucket_and_a_write_into_it_exclude_each_other() {
    let server = Server::start();
    let client = server.client();
    client
        .create_bucket()
        .bucket("doomed")
        .send()
        .await
        .unwrap();
    let data = common::pattern(7, 3 * 1024 * 1024);
    let put = server.sign(
        &server
            .request("PUT", "/doomed/late")
            .content_sha256("UNSIGNED-PAYLOAD")
            .unsigned_header("Expect", "100-continue")
            .body(&data),
    );
    let head_end = put
        .windows(4)
        .position(|window| window == b"\r\n\r\n")
        .unwrap()
        + 4;
    let mut conn = server.connect();
    conn.send(&put[..head_end]);
    assert_eq!(conn.response().status, 100);

    let deleted = client.delete_bucket().bucket("doomed").send().await;
    let failure = common::sdk_failure(&deleted.expect_err("a write is in progress"));
    assert_eq!(
        (failure.status, failure.code.as_deref()),
        (409, Some("OperationAborted"))
    );

    conn.send(&put[head_end..]);
    assert_eq!(conn.response().status, 200);
    client
        .head_object()
        .bucket("doomed")
        .key("late")
        .send()
        .await
        .expect("the acknowledged object is there");
    let deleted = client.delete_bucket().bucket("doomed").send().await;
    let failure = common::sdk_failure(&deleted.expect_err("the bucket holds the object"));
    assert_eq!(failure.code.as_deref(), Some("BucketNotEmpty"));
    client
        .delete_object()
        .bucket("doomed")
        .key("late")
        .send()
        .await
        .unwrap();
    client
        .delete_bucket()
        .bucket("doomed")
        .send()
        .await
        .unwrap();
    let put = client
        .put_object()
        .bucket("doomed")
        .key("after")
        .body(b"x".to_vec().into())
        .send()
        .await;
    let failure = common::sdk_failure(&put.expect_err("the bucket is gone"));
    assert_eq!(failure.code.as_deref(), Some("NoSuchBucket"));
}
