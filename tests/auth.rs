//! Authentication against the real binary: `SigV4` in the header and in
//! presigned URLs, each refusal with the status and code AWS S3 uses, the
//! payload hash forms, and `Expect: 100-continue`.
//!
//! Requests that must be exact (a time in the past, a tampered signature, a
//! head without its body) are built with the test signer of
//! `common::RawRequest`; the first test pins that signer to AWS's published
//! examples, so a failure elsewhere points at the server, not the signer.

mod common;

use std::fmt::Write as _;
use std::time::{Duration, SystemTime};

use aws_sdk_s3::presigning::PresigningConfig;
use common::{
    EMPTY_SHA256, Keys, RawRequest, Server, Streaming, UNSIGNED_PAYLOAD, chunk_signature,
    create_bucket_configuration, expect_sdk_error, sdk_failure, sha256_hex,
};

/// 2013-05-24T00:00:00Z, the time of AWS's `SigV4` examples for S3.
fn aws_example_time() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_hours(380_376)
}

fn aws_example_keys() -> Keys {
    Keys::new(
        "AKIAIOSFODNN7EXAMPLE",
        "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    )
}

/// Goal: the test signer is right, so that the tests below judge the
/// server. Method: AWS's worked examples from "Authenticating Requests:
/// Using the Authorization Header", "...Using Query Parameters" and
/// "Signature Calculations for the Authorization Header: Transferring
/// Payload in Multiple Chunks".
#[test]
fn test_signer_matches_aws_examples() {
    let keys = aws_example_keys();
    assert_eq!(
        common::amz_date(aws_example_time()),
        ("20130524T000000Z".to_owned(), "20130524".to_owned())
    );

    let request = RawRequest::new("GET", "/test.txt")
        .host("examplebucket.s3.amazonaws.com")
        .header("Range", "bytes=0-9")
        .time(aws_example_time());
    let (signature, _) = request.signature(&keys, "us-east-1");
    assert_eq!(
        signature.canonical_request,
        "GET\n/test.txt\n\nhost:examplebucket.s3.amazonaws.com\nrange:bytes=0-9\n\
         x-amz-content-sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\n\
         x-amz-date:20130524T000000Z\n\nhost;range;x-amz-content-sha256;x-amz-date\n\
         e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
    assert_eq!(
        signature.string_to_sign,
        "AWS4-HMAC-SHA256\n20130524T000000Z\n20130524/us-east-1/s3/aws4_request\n\
         7344ae5b7ee6c3e7e6b0fe0640412a37625d1fbfff95c48bbb2dc43964946972"
    );
    assert_eq!(
        signature.signature,
        "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
    );

    let presigned = RawRequest::new("GET", "/test.txt")
        .host("examplebucket.s3.amazonaws.com")
        .time(aws_example_time())
        .presigned_target(&keys, "us-east-1", 86_400);
    assert_eq!(
        presigned,
        "/test.txt?X-Amz-Algorithm=AWS4-HMAC-SHA256\
         &X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request\
         &X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&X-Amz-SignedHeaders=host\
         &X-Amz-Signature=aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404"
    );

    // "Transferring Payload in Multiple Chunks": 64 KiB + 1 KiB of 'a',
    // then the final empty chunk; and the same body with a trailer
    // ("...Including Trailing Headers").
    let data = vec![b'a'; 65_536 + 1024];
    let chunks = [&data[..65_536], &data[65_536..], &[][..]];
    let chain = |seed: &str| {
        let mut previous = seed.to_owned();
        chunks
            .iter()
            .map(|chunk| {
                previous =
                    chunk_signature(&keys, "us-east-1", aws_example_time(), &previous, chunk);
                previous.clone()
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(
        chain("4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9"),
        [
            "ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648",
            "0055627c9e194cb4542bae2aa5492e3c1575bbb81b612b7d234b86a503ef5497",
            "b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ceb9323e279d449df9",
        ]
    );
    let trailer_chain = chain("106e2a8a18243abcf37539882f36619c00e2dfc72633413f02d3b74544bfeb8e");
    assert_eq!(
        trailer_chain,
        [
            "b474d8862b1487a5145d686f57f013e54db672cee1c953b3010fb58501ef5aa2",
            "1c1344b170168f8e65b41376b44b20fe354e373826ccbbe2c1d40a8cae51e5c7",
            "2ca2aba2005185cf7159c6277faf83795951dd77a3a99e6e65d5c9f85863f992",
        ]
    );
    let crc = common::base64(&crc32c::crc32c(&data).to_be_bytes());
    assert_eq!(crc, "sOO8/Q==");
    assert_eq!(
        common::trailer_signature(
            &keys,
            "us-east-1",
            aws_example_time(),
            &trailer_chain[2],
            &format!("x-amz-checksum-crc32c:{crc}\n"),
        ),
        "d81f82fc3505edab99d459891051a732e8730629a2e4a59689829ca17fe2e435"
    );
    for (input, encoded) in [(&b"M"[..], "TQ=="), (b"Ma", "TWE="), (b"Man", "TWFu")] {
        assert_eq!(common::base64(input), encoded);
    }
}

#[test]
fn header_signature_is_accepted() {
    let server = Server::start();
    let response = server.send_signed(&server.request("GET", "/"));
    assert_eq!(response.status, 200, "{}", response.text());
    assert!(
        response.text().contains("<ListAllMyBucketsResult"),
        "{}",
        response.text()
    );
    assert!(!response.request_id().is_empty());
}

#[tokio::test]
async fn wrong_secret_is_signature_does_not_match() {
    let server = Server::start();
    let keys = Keys::new(common::ACCESS_KEY_ID, "not-the-secret");
    let client = server.client_with(&keys, server.region());
    expect_sdk_error(
        client.list_buckets().send().await,
        403,
        "SignatureDoesNotMatch",
    );
    // Also for an operation with a body, and nothing must be created.
    expect_sdk_error(
        client.create_bucket().bucket("never-created").send().await,
        403,
        "SignatureDoesNotMatch",
    );
    let names = server.client().list_buckets().send().await.expect("list");
    assert!(names.buckets().is_empty(), "{names:?}");

    let raw = server.send(&server.request("GET", "/").sign(&keys, server.region()));
    raw.assert_s3_error(403, "SignatureDoesNotMatch");
}

#[tokio::test]
async fn unknown_access_key_is_invalid_access_key_id() {
    let server = Server::start();
    let keys = Keys::new("RSUNKNOWNKEY00000000", common::SECRET_ACCESS_KEY);
    let client = server.client_with(&keys, server.region());
    expect_sdk_error(
        client.list_buckets().send().await,
        403,
        "InvalidAccessKeyId",
    );
    let raw = server.send(&server.request("GET", "/").sign(&keys, server.region()));
    raw.assert_s3_error(403, "InvalidAccessKeyId");
}

#[test]
fn anonymous_request_is_access_denied() {
    let server = Server::start();
    server
        .send(&server.request("GET", "/").unsigned())
        .assert_s3_error(403, "AccessDenied");
    server
        .send(&server.request("PUT", "/anonymous-bucket").unsigned())
        .assert_s3_error(403, "AccessDenied");
    // HEAD: the status alone, no body, but still a request id.
    let head = server.send(&server.request("HEAD", "/anonymous-bucket").unsigned());
    assert_eq!(head.status, 403);
    assert!(head.body.is_empty());
    assert!(!head.request_id().is_empty());
    // Nothing was created.
    let list = server.send_signed(&server.request("GET", "/"));
    assert!(!list.text().contains("anonymous-bucket"), "{}", list.text());
}

/// Goal: a client whose region is not the server's gets AWS's answer,
/// `400 AuthorizationHeaderMalformed` (the credential scope names the wrong
/// region), not a generic signature mismatch.
#[tokio::test]
async fn wrong_region_in_the_credential_scope_is_authorization_header_malformed() {
    let server = Server::start();
    let client = server.client_with(&server.keys, "eu-central-1");
    expect_sdk_error(
        client.list_buckets().send().await,
        400,
        "AuthorizationHeaderMalformed",
    );
}

/// Goal: the error names the region the server expects, as AWS does, in a
/// `<Region>` element. Regression: s3cmd signs with its default region "US"
/// first and reads this element to sign again; without it, every s3cmd
/// command failed.
#[test]
fn wrong_region_error_names_the_expected_region() {
    let server = Server::start();
    let request = server.request("GET", "/");
    let response = server.send(&request.sign(&server.keys, "US"));
    assert_eq!(response.status, 400, "{}", response.text());
    let text = response.text();
    assert!(
        text.contains("<Code>AuthorizationHeaderMalformed</Code>"),
        "{text}"
    );
    assert!(text.contains("<Region>us-east-1</Region>"), "{text}");
}

#[test]
fn presigned_url_is_accepted() {
    let server = Server::start();
    let created = server.send_signed(&server.request("PUT", "/presigned-bucket"));
    assert_eq!(created.status, 200, "{}", created.text());

    let list = server.send(
        &server
            .request("GET", "/")
            .presign(&server.keys, server.region(), 60),
    );
    assert_eq!(list.status, 200, "{}", list.text());
    assert!(
        list.text().contains("<Name>presigned-bucket</Name>"),
        "{}",
        list.text()
    );

    let head = server.send(&server.request("HEAD", "/presigned-bucket").presign(
        &server.keys,
        server.region(),
        60,
    ));
    assert_eq!(head.status, 200);
    assert_eq!(head.header("x-amz-bucket-region"), Some("us-east-1"));
}

/// Goal: a presigned URL is refused once `X-Amz-Date + X-Amz-Expires` has
/// passed, with AWS's `403 AccessDenied`. Method: sign with a time in the
/// past instead of waiting.
#[test]
fn expired_presigned_url_is_access_denied() {
    let server = Server::start();
    let two_minutes_ago = SystemTime::now() - Duration::from_mins(2);
    let request = server.request("GET", "/").time(two_minutes_ago);
    server
        .send(&request.presign(&server.keys, server.region(), 60))
        .assert_s3_error(403, "AccessDenied");
    // The same URL with a validity that has not ended yet works.
    let still_valid = server.send(&request.presign(&server.keys, server.region(), 600));
    assert_eq!(still_valid.status, 200, "{}", still_valid.text());
}

/// Goal: the 15-minute skew rule is for header auth only. A presigned URL
/// signed 20 minutes ago and valid for an hour is still good.
#[test]
fn presigned_url_is_not_subject_to_clock_skew() {
    let server = Server::start();
    let request = server
        .request("GET", "/")
        .time(SystemTime::now() - Duration::from_mins(20));
    let response = server.send(&request.presign(&server.keys, server.region(), 3600));
    assert_eq!(response.status, 200, "{}", response.text());
}

#[test]
fn presigned_expiry_over_seven_days_is_refused() {
    let server = Server::start();
    let request = server.request("GET", "/");
    server
        .send(&request.presign(&server.keys, server.region(), 604_801))
        .assert_s3_error(400, "AuthorizationQueryParametersError");
    let at_limit = server.send(&request.presign(&server.keys, server.region(), 604_800));
    assert_eq!(at_limit.status, 200, "{}", at_limit.text());
}

#[test]
fn tampered_presigned_url_is_signature_does_not_match() {
    let server = Server::start();
    for name in ["first-bucket", "other-bucket"] {
        let created = server.send_signed(&server.request("PUT", &format!("/{name}")));
        assert_eq!(created.status, 200, "{}", created.text());
    }
    let target =
        server
            .request("HEAD", "/first-bucket")
            .presigned_target(&server.keys, server.region(), 60);
    let tampered = target.replacen("/first-bucket", "/other-bucket", 1);
    let response = server
        .send(format!("HEAD {tampered} HTTP/1.1\r\nHost: {}\r\n\r\n", server.addr).as_bytes());
    assert_eq!(response.status, 403);
    // A longer expiry than the one signed.
    let longer = target.replacen("X-Amz-Expires=60", "X-Amz-Expires=600", 1);
    server
        .send(format!("GET {longer} HTTP/1.1\r\nHost: {}\r\n\r\n", server.addr).as_bytes())
        .assert_s3_error(403, "SignatureDoesNotMatch");
}

/// Goal: URLs presigned by the official SDK are accepted, and refused once
/// expired. Method: the SDK presigns `GetObject` (it cannot presign bucket
/// operations); `start_time` in the past makes an expired URL without
/// waiting. A valid URL passes authentication and reaches the operation:
/// 501 `NotImplemented` while objects are not implemented, 404 `NoSuchKey`
/// once they are; either way, never a 403.
#[tokio::test]
async fn sdk_presigned_urls() {
    let server = Server::start();
    let client = server.client();
    client
        .create_bucket()
        .bucket("sdk-presigned")
        .send()
        .await
        .expect("create bucket");

    let send_presigned = |presigned: aws_sdk_s3::presigning::PresignedRequest| {
        let uri = presigned.uri();
        let target = uri
            .strip_prefix(&server.endpoint())
            .unwrap_or_else(|| panic!("presigned URI {uri} is not on {}", server.endpoint()));
        let mut request = format!(
            "{} {target} HTTP/1.1\r\nHost: {}\r\n",
            presigned.method(),
            server.addr
        );
        for (name, value) in presigned.headers() {
            if !name.eq_ignore_ascii_case("host") {
                let _ = write!(request, "{name}: {value}\r\n");
            }
        }
        request.push_str("\r\n");
        server.send(request.as_bytes())
    };

    let valid = client
        .get_object()
        .bucket("sdk-presigned")
        .key("missing-key")
        .presigned(PresigningConfig::expires_in(Duration::from_mins(5)).unwrap())
        .await
        .expect("presign");
    let response = send_presigned(valid);
    match response.status {
        501 => response.assert_s3_error(501, "NotImplemented"),
        _ => response.assert_s3_error(404, "NoSuchKey"),
    };

    let expired = client
        .get_object()
        .bucket("sdk-presigned")
        .key("missing-key")
        .presigned(
            PresigningConfig::builder()
                .start_time(SystemTime::now() - Duration::from_hours(1))
                .expires_in(Duration::from_mins(1))
                .build()
                .unwrap(),
        )
        .await
        .expect("presign");
    send_presigned(expired).assert_s3_error(403, "AccessDenied");
}

/// Goal: header auth allows 15 minutes of clock difference either way, as
/// AWS, and refuses more with `403 RequestTimeTooSkewed`.
#[test]
fn clock_skew_over_fifteen_minutes_is_refused() {
    let server = Server::start();
    let now = SystemTime::now();
    let twenty_minutes = Duration::from_mins(20);
    let ten_minutes = Duration::from_mins(10);
    for time in [now - twenty_minutes, now + twenty_minutes] {
        server
            .send(&server.sign(&server.request("GET", "/").time(time)))
            .assert_s3_error(403, "RequestTimeTooSkewed");
    }
    for time in [now - ten_minutes, now + ten_minutes] {
        let response = server.send(&server.sign(&server.request("GET", "/").time(time)));
        assert_eq!(response.status, 200, "{}", response.text());
    }
}

/// Goal: `Expect: 100-continue` gets `100 Continue` only after the head is
/// authenticated; a refused request gets its final error at once, so the
/// client never uploads a body that would be thrown away. Method: send only
/// the head of a `CreateBucket` with a body, and read the first response.
#[test]
fn expect_continue_with_bad_signature_gets_the_final_error_without_100() {
    let server = Server::start();
    let body = create_bucket_configuration(None);
    let request = server
        .request("PUT", "/continue-bucket")
        .header("Expect", "100-continue")
        .content_length(body.len())
        .content_sha256(&sha256_hex(body.as_bytes()));

    let wrong = Keys::new(common::ACCESS_KEY_ID, "not-the-secret");
    let mut conn = server.connect();
    let started = std::time::Instant::now();
    conn.send(&request.sign(&wrong, server.region()));
    let response = conn.response();
    assert_ne!(
        response.status, 100,
        "100 Continue sent before authentication"
    );
    response.assert_s3_error(403, "SignatureDoesNotMatch");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "the refusal must not wait for the body: {:?}",
        started.elapsed()
    );

    let mut anonymous = server.connect();
    anonymous.send(&request.unsigned());
    anonymous.response().assert_s3_error(403, "AccessDenied");

    // The same head correctly signed: 100 first, then the final answer.
    let mut conn = server.connect();
    conn.send(&server.sign(&request));
    let interim = conn.response();
    assert_eq!(interim.status, 100, "{interim:?}");
    conn.send(body.as_bytes());
    let done = conn.response();
    assert_eq!(done.status, 200, "{}", done.text());
    let head = server.send_signed(&server.request("HEAD", "/continue-bucket"));
    assert_eq!(head.status, 200);
}

/// Goal: an empty PUT that asks for 100-continue gets `100 Continue` before
/// its final answer, and the connection serves the next request: the AWS
/// CLI (botocore before 1.43.77) asks for it on empty files and, answered
/// without it, misreads the next response on the connection and stalls.
#[test]
fn expect_continue_on_an_empty_body_gets_100_too() {
    let server = Server::start();
    let created = server.send_signed(&server.request("PUT", "/empty-continue"));
    assert_eq!(created.status, 200, "{}", created.text());
    let request = server
        .request("PUT", "/empty-continue/empty")
        .header("Expect", "100-continue")
        .content_length(0);
    let mut conn = server.connect();
    conn.send(&server.sign(&request));
    let interim = conn.response();
    assert_eq!(interim.status, 100, "{interim:?}");
    let done = conn.response();
    assert_eq!(done.status, 200, "{}", done.text());
    // The same connection goes on.
    conn.send(&server.sign(&server.request("HEAD", "/empty-continue/empty")));
    let head = conn.head_response();
    assert_eq!(head.status, 200);
    assert_eq!(head.header("content-length"), Some("0"));
}

/// Goal: a body whose SHA-256 is not the signed `x-amz-content-sha256` is
/// refused with `400 XAmzContentSHA256Mismatch`, and has no effect.
#[test]
fn content_sha256_mismatch_is_refused() {
    let server = Server::start();
    let body = create_bucket_configuration(None);
    let request = server
        .request("PUT", "/mismatch-bucket")
        .body(body.as_bytes())
        .content_sha256(&sha256_hex(b"some other body"));
    server
        .send(&server.sign(&request))
        .assert_s3_error(400, "XAmzContentSHA256Mismatch");
    let head = server.send_signed(&server.request("HEAD", "/mismatch-bucket"));
    assert_eq!(
        head.status, 404,
        "a refused CreateBucket must not create the bucket"
    );

    // The empty-body hash with a non-empty body is a mismatch too.
    let request = server
        .request("PUT", "/mismatch-bucket")
        .body(body.as_bytes())
        .content_sha256(EMPTY_SHA256);
    server
        .send(&server.sign(&request))
        .assert_s3_error(400, "XAmzContentSHA256Mismatch");
}

#[test]
fn unsigned_payload_and_hex_sha256_bodies_are_accepted() {
    let server = Server::start();
    let body = create_bucket_configuration(Some("us-east-1"));
    let unsigned = server
        .request("PUT", "/unsigned-payload")
        .body(body.as_bytes())
        .content_sha256(UNSIGNED_PAYLOAD);
    let response = server.send(&server.sign(&unsigned));
    assert_eq!(response.status, 200, "{}", response.text());
    let hashed = server
        .request("PUT", "/hashed-payload")
        .body(body.as_bytes());
    let response = server.send(&server.sign(&hashed));
    assert_eq!(response.status, 200, "{}", response.text());
    for name in ["unsigned-payload", "hashed-payload"] {
        let head = server.send_signed(&server.request("HEAD", &format!("/{name}")));
        assert_eq!(head.status, 200, "{name}");
    }
}

/// A `PUT path` whose body is `data` in aws-chunked framing (see
/// [`common::aws_chunked_put`]) with an `x-amz-checksum-crc32c` trailer in
/// the trailer forms.
fn streaming_request(
    server: &Server,
    mode: Streaming,
    path: &str,
    data: &[u8],
    chunk_len: usize,
    corrupt: bool,
) -> Vec<u8> {
    let crc = common::base64(&crc32c::crc32c(data).to_be_bytes());
    let trailer = (mode != Streaming::Signed).then_some(("x-amz-checksum-crc32c", crc.as_str()));
    common::aws_chunked_put(server, mode, path, data, chunk_len, trailer, corrupt)
}

/// Goal: every aws-chunked form is decoded, and in the signed forms every
/// chunk signature and the trailer signature are checked. Method:
/// `CreateBucket` is the one implemented operation with a body; its
/// `CreateBucketConfiguration` is sent in 3 chunks.
#[test]
fn streaming_bodies_are_decoded_and_verified() {
    let server = Server::start();
    let body = create_bucket_configuration(Some("us-east-1"));
    for (index, mode) in [
        Streaming::Signed,
        Streaming::SignedTrailer,
        Streaming::UnsignedTrailer,
    ]
    .into_iter()
    .enumerate()
    {
        let path = format!("/streaming-{index}");
        let good = streaming_request(&server, mode, &path, body.as_bytes(), 64, false);
        let response = server.send(&good);
        assert_eq!(response.status, 200, "{mode:?}: {}", response.text());
        let head = server.send_signed(&server.request("HEAD", &path));
        assert_eq!(head.status, 200, "{mode:?}");

        if mode == Streaming::UnsignedTrailer {
            continue;
        }
        let path = format!("/streaming-bad-{index}");
        let bad = streaming_request(&server, mode, &path, body.as_bytes(), 64, true);
        server
            .send(&bad)
            .assert_s3_error(403, "SignatureDoesNotMatch");
        let head = server.send_signed(&server.request("HEAD", &path));
        assert_eq!(
            head.status, 404,
            "{mode:?}: a body with a bad signature must have no effect"
        );
    }
}

#[tokio::test]
async fn sdk_error_carries_the_request_id_of_the_response() {
    let server = Server::start();
    let keys = Keys::new("RSUNKNOWNKEY00000000", common::SECRET_ACCESS_KEY);
    let client = server.client_with(&keys, server.region());
    let error = client.list_buckets().send().await.expect_err("unknown key");
    let failure = sdk_failure(&error);
    let body_id = common::xml_element(&failure.body, "RequestId");
    assert_eq!(body_id, failure.request_id, "{failure:?}");
}

/// Goal: every `x-amz-*` header must be signed, as S3 requires, so that a
/// header added to a signed request or a presigned URL (say `x-amz-acl`)
/// cannot change what it does. Unsigned, it is `403 AccessDenied`.
#[test]
fn unsigned_amz_headers_are_access_denied() {
    let server = Server::start();
    let request = server
        .request("PUT", "/unsigned-header")
        .unsigned_header("x-amz-acl", "private");
    server
        .send(&server.sign(&request))
        .assert_s3_error(403, "AccessDenied");
    server
        .send(&request.presign(&server.keys, server.region(), 60))
        .assert_s3_error(403, "AccessDenied");
    // Signed, the same header is fine.
    let signed = server
        .request("PUT", "/unsigned-header")
        .header("x-amz-acl", "private");
    let response = server.send(&server.sign(&signed));
    assert_eq!(response.status, 200, "{}", response.text());
}

/// Replaces the first `from` in a raw request (its request line) by `to`.
fn tamper(request: &[u8], from: &str, to: &str) -> Vec<u8> {
    let text = String::from_utf8(request.to_vec()).expect("a test request is UTF-8");
    assert!(text.contains(from), "{from:?} is not in {text:?}");
    text.replacen(from, to, 1).into_bytes()
}

/// Goal (issue 12): a `+` and a `%2B` in the query mean different things
/// (a space and a plus, as S3 reads a query), so a signed `%2B` turned into
/// `+` in transit must fail its signature instead of changing the request.
/// Regression: both were signed as `%2B` while the router read `+` as a
/// space, so `prefix=a%2Bb` sent as `prefix=a+b` listed the keys under
/// `a b` with a valid signature. Method: two keys, `a+b` and `a b`; list
/// each prefix signed in the header and presigned, then swap the encoding.
#[test]
fn plus_and_percent_2b_in_a_signed_query_cannot_be_swapped() {
    let server = Server::start();
    let created = server.send_signed(&server.request("PUT", "/plus-query"));
    assert_eq!(created.status, 200, "{}", created.text());
    for path in ["/plus-query/a%2Bb", "/plus-query/a%20b"] {
        let put = server.send_signed(&server.request("PUT", path).body(b"x"));
        assert_eq!(put.status, 200, "{path}: {}", put.text());
    }
    let list = |response: &common::RawResponse| {
        assert_eq!(response.status, 200, "{}", response.text());
        common::xml_elements(&response.text(), "Key")
    };

    let plus = server.request("GET", "/plus-query?prefix=a%2Bb");
    let signed = server.sign(&plus);
    assert_eq!(list(&server.send(&signed)), ["a+b"]);
    server
        .send(&tamper(&signed, "prefix=a%2Bb", "prefix=a+b"))
        .assert_s3_error(403, "SignatureDoesNotMatch");
    let presigned = plus.presign(&server.keys, server.region(), 60);
    assert_eq!(list(&server.send(&presigned)), ["a+b"]);
    server
        .send(&tamper(&presigned, "prefix=a%2Bb", "prefix=a+b"))
        .assert_s3_error(403, "SignatureDoesNotMatch");

    // A `+` for `%20` keeps the meaning, and S3 accepts it.
    let space = server.request("GET", "/plus-query?prefix=a%20b");
    let signed = server.sign(&space);
    assert_eq!(list(&server.send(&signed)), ["a b"]);
    assert_eq!(
        list(&server.send(&tamper(&signed, "prefix=a%20b", "prefix=a+b"))),
        ["a b"]
    );
    server
        .send(&tamper(&signed, "prefix=a%20b", "prefix=a%2Bb"))
        .assert_s3_error(403, "SignatureDoesNotMatch");
}
