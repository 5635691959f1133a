//! Object operations against the real binary: `PutObject`, `GetObject`,
//! `HeadObject`, `DeleteObject`, through the official SDK with its default
//! settings and through raw requests where exact bytes matter (plain
//! `Content-Length` bodies, exact paths, statuses and headers, a
//! connection closed mid-body). With default checksums the SDK sends an
//! in-memory body with a signed SHA-256 and an `x-amz-checksum-crc32`
//! header, and a streaming body (from a file) aws-chunked with a CRC32
//! trailer; tests write both ways (`put` and `put_streamed`).
//!
//! What is covered: round trips and the 404s around them; object sizes on
//! both sides of the inline limit (64 KiB) and of the extent size (1 MiB);
//! single byte ranges, satisfiable or not; keys that paths like to mangle;
//! system and user metadata and their limits; Content-MD5; overwrites that
//! succeed and overwrites that fail; keys spread over every core behind one
//! keep-alive connection, and concurrent writers; restarts after SIGTERM
//! and SIGKILL, also right after uploads cut off mid-body; and a large
//! object streamed in and out with the server's memory bounded.
//!
//! Conditional requests and `response-*` overrides are covered in
//! `s3_get.rs`. Not covered here because the server does not implement it
//! yet (501): listing, multipart, copy, `partNumber`, and
//! `x-amz-checksum-*` verification and responses.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::io::Write as _;
use std::net::Shutdown;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_sdk_s3::Client;
use aws_sdk_s3::config::interceptors::BeforeTransmitInterceptorContextRef;
use aws_sdk_s3::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_s3::error::BoxError;
use aws_sdk_s3::primitives::{ByteStream, DateTime, DateTimeFormat};
use common::{RawResponse, Server, ServerOptions, expect_sdk_error, sdk_failure};
use md5::{Digest as _, Md5};
use ringstore::node::sharding::shard_for;

const KIB: usize = 1024;
const MIB: usize = 1024 * 1024;
/// Largest object stored inline in its commit record.
const INLINE_MAX: usize = 64 * KIB;
/// Size of the extents larger objects are cut into.
const EXTENT: usize = MIB;

// The boundaries these tests aim at are the storage engine's.
const _: () = assert!(INLINE_MAX == ringstore::storage::object::INLINE_BYTES_MAX);
const _: () = assert!(EXTENT == ringstore::storage::object::EXTENT_BYTES_MAX as usize);

/// Object sizes at and around each storage boundary.
const BOUNDARY_SIZES: [usize; 8] = [
    0,
    1,
    INLINE_MAX - 1,
    INLINE_MAX,
    INLINE_MAX + 1,
    EXTENT,
    EXTENT + 1,
    3 * EXTENT + 17,
];

// ---------------------------------------------------------------------------
// Data
// ---------------------------------------------------------------------------

/// Word `index` of the `SplitMix64` sequence started at `seed`. The test
/// data is addressable by position, so any range of a large object can be
/// regenerated without holding the object.
fn pattern_word(seed: u64, index: u64) -> u64 {
    let mut z = seed.wrapping_add(index.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Fill `buffer` with the pattern bytes `offset..offset + buffer.len()`.
fn fill_pattern(seed: u64, offset: u64, buffer: &mut [u8]) {
    let mut position = offset;
    let mut rest = buffer;
    // Bytes up to the next word boundary, then whole words.
    while !position.is_multiple_of(8) && !rest.is_empty() {
        rest[0] = pattern_word(seed, position / 8).to_le_bytes()[(position % 8) as usize];
        rest = &mut rest[1..];
        position += 1;
    }
    let mut words = rest.chunks_exact_mut(8);
    for chunk in &mut words {
        chunk.copy_from_slice(&pattern_word(seed, position / 8).to_le_bytes());
        position += 8;
    }
    let tail = words.into_remainder();
    if !tail.is_empty() {
        let word = pattern_word(seed, position / 8).to_le_bytes();
        tail.copy_from_slice(&word[..tail.len()]);
    }
}

fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut data = vec![0; len];
    fill_pattern(seed, 0, &mut data);
    data
}

/// A length as the SDK's `i64` content lengths.
fn len_i64(len: usize) -> i64 {
    i64::try_from(len).expect("lengths fit i64")
}

fn md5_hex(data: &[u8]) -> String {
    hex::encode(Md5::digest(data))
}

/// The `ETag` of a single-part object: its MD5 in hex, quoted.
fn etag_of(data: &[u8]) -> String {
    format!("\"{}\"", md5_hex(data))
}

fn md5_base64(data: &[u8]) -> String {
    common::base64(&Md5::digest(data))
}

/// Compare without printing megabytes when they differ.
#[track_caller]
fn assert_bytes_eq(got: &[u8], expected: &[u8], what: &str) {
    if got != expected {
        let first = got
            .iter()
            .zip(expected)
            .position(|(a, b)| a != b)
            .unwrap_or(got.len().min(expected.len()));
        panic!(
            "{what}: {} bytes received, {} expected, first difference at byte {first}",
            got.len(),
            expected.len()
        );
    }
}

// ---------------------------------------------------------------------------
// Requests
// ---------------------------------------------------------------------------

/// `/bucket/key` with the key percent-encoded segment by segment, as the
/// SDK sends it (a `/` stays a `/`, so `a/../b` stays `a/../b`).
fn object_path(bucket: &str, key: &str) -> String {
    let segments: Vec<String> = key.split('/').map(common::uri_encode).collect();
    format!("/{bucket}/{}", segments.join("/"))
}

async fn create_bucket(client: &Client, bucket: &str) {
    client
        .create_bucket()
        .bucket(bucket)
        .send()
        .await
        .unwrap_or_else(|error| panic!("CreateBucket {bucket}: {error:?}"));
}

/// `PutObject` through the SDK; returns the `ETag`.
async fn put(client: &Client, bucket: &str, key: &str, data: &[u8]) -> String {
    let output = client
        .put_object()
        .bucket(bucket)
        .key(key)
        .body(ByteStream::from(data.to_vec()))
        .send()
        .await
        .unwrap_or_else(|error| panic!("PutObject {key:?}: {error:?}"));
    output
        .e_tag()
        .expect("PutObject returns an ETag")
        .to_owned()
}

/// `PutObject` through the SDK with a streaming body (from a file), which
/// the SDK sends aws-chunked with a CRC32 trailer (an in-memory body gets
/// its checksum in a header instead); returns the `ETag`.
async fn put_streamed(client: &Client, bucket: &str, key: &str, data: &[u8]) -> String {
    let (body, _file) = streamed(data).await;
    let output = client
        .put_object()
        .bucket(bucket)
        .key(key)
        .body(body)
        .send()
        .await
        .unwrap_or_else(|error| panic!("streamed PutObject {key:?}: {error:?}"));
    output
        .e_tag()
        .expect("PutObject returns an ETag")
        .to_owned()
}

/// A body the SDK streams: `data` in a temporary file, which must live
/// until the request is done (the SDK opens it by path, again on a retry).
async fn streamed(data: &[u8]) -> (ByteStream, tempfile::NamedTempFile) {
    let mut file = tempfile::NamedTempFile::new().expect("temporary file");
    file.write_all(data).expect("write the temporary file");
    let body = ByteStream::read_from()
        .path(file.path())
        .build()
        .await
        .expect("ByteStream from a file");
    (body, file)
}

/// `GetObject` through the SDK: the whole body.
async fn get(client: &Client, bucket: &str, key: &str) -> Vec<u8> {
    let output = client
        .get_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .unwrap_or_else(|error| panic!("GetObject {key:?}: {error:?}"));
    output
        .body
        .collect()
        .await
        .unwrap_or_else(|error| panic!("GetObject {key:?} body: {error:?}"))
        .to_vec()
}

/// `GetObject` of a key that must be missing: `404 NoSuchKey`.
async fn assert_no_such_key(client: &Client, bucket: &str, key: &str) {
    expect_sdk_error(
        client.get_object().bucket(bucket).key(key).send().await,
        404,
        "NoSuchKey",
    );
}

/// A raw PUT with a plain `Content-Length` body (signed SHA-256 payload).
fn raw_put(server: &Server, path: &str, data: &[u8]) -> RawResponse {
    server.send_signed(&server.request("PUT", path).body(data))
}

/// Asserts a `200` GET with exactly these bytes and the matching `ETag` and
/// Content-Length.
#[track_caller]
fn assert_raw_object(response: &RawResponse, data: &[u8], what: &str) {
    assert_eq!(response.status, 200, "{what}: {}", response.text());
    assert_eq!(
        response.header("content-length"),
        Some(data.len().to_string().as_str()),
        "{what}"
    );
    assert_eq!(
        response.header("etag"),
        Some(etag_of(data).as_str()),
        "{what}"
    );
    assert_bytes_eq(&response.body, data, what);
}

/// The first key `prefix-N` that shard `core` of `cores` owns in `bucket`.
fn key_on_core(bucket: &str, prefix: &str, core: usize, cores: usize) -> String {
    (0..100_000)
        .map(|index| format!("{prefix}-{index}"))
        .find(|key| shard_for(bucket, key, cores) == core)
        .expect("some key lands on every core")
}

/// Send the head and the first `sent` body bytes of a signed PUT that
/// declares `data.len()` bytes, then close the sending side, and wait for
/// the server to close the connection: the request is over on the server
/// by then, so a GET afterwards sees its outcome.
fn put_closed_mid_body(server: &Server, path: &str, data: &[u8], sent: usize) {
    assert!(sent < data.len());
    let request = server.sign(&server.request("PUT", path).body(data));
    let cut = request.len() - (data.len() - sent);
    let mut conn = server.connect();
    conn.send(&request[..cut]);
    conn.stream()
        .shutdown(Shutdown::Write)
        .expect("shut down the sending side");
    let answer = conn.read_until_closed(Duration::from_secs(10));
    let Some(answer) = answer else {
        panic!("the server kept a connection open whose body ended early");
    };
    let text = String::from_utf8_lossy(&answer);
    assert!(
        !text.starts_with("HTTP/1.1 2"),
        "a PUT whose body ended early succeeded: {text}"
    );
}

/// Records the headers of every request the SDK sends.
#[derive(Debug, Default, Clone)]
struct SentHeaders(Arc<Mutex<Vec<HashMap<String, String>>>>);

impl Intercept for SentHeaders {
    fn name(&self) -> &'static str {
        "SentHeaders"
    }

    fn read_before_transmit(
        &self,
        context: &BeforeTransmitInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        // A header sent several times is recorded as one, values joined
        // with ", " in order, as HTTP combines them.
        let mut headers: HashMap<String, String> = HashMap::new();
        for (name, value) in context.request().headers() {
            headers
                .entry(name.to_ascii_lowercase())
                .and_modify(|joined| {
                    joined.push_str(", ");
                    joined.push_str(value);
                })
                .or_insert_with(|| value.to_owned());
        }
        self.0.lock().unwrap().push(headers);
        Ok(())
    }
}

impl SentHeaders {
    fn last(&self) -> HashMap<String, String> {
        self.0
            .lock()
            .unwrap()
            .last()
            .cloned()
            .expect("a request was sent")
    }
}

// ---------------------------------------------------------------------------
// Round trips and 404s
// ---------------------------------------------------------------------------

/// Goal: the life of one object as a client sees it, with the exact
/// statuses (the SDK accepts any 2xx) and the `NoSuchKey` document after
/// the delete.
#[tokio::test]
async fn put_get_head_delete_round_trip() {
    let server = Server::start();
    let client = server.client();
    create_bucket(&client, "objects").await;
    let data = b"hello, ringstore\n";

    let etag = put(&client, "objects", "greeting.txt", data).await;
    assert_eq!(etag, etag_of(data));

    let head = client
        .head_object()
        .bucket("objects")
        .key("greeting.txt")
        .send()
        .await
        .expect("HeadObject");
    assert_eq!(head.content_length(), Some(len_i64(data.len())));
    assert_eq!(head.e_tag(), Some(etag.as_str()));
    assert_eq!(head.accept_ranges(), Some("bytes"));
    let modified = head.last_modified().expect("Last-Modified");
    let now = DateTime::from(std::time::SystemTime::now());
    assert!(
        (now.secs() - modified.secs()).abs() < 120,
        "Last-Modified {modified} is not now ({now})"
    );

    let output = client
        .get_object()
        .bucket("objects")
        .key("greeting.txt")
        .send()
        .await
        .expect("GetObject");
    assert_eq!(output.content_length(), Some(len_i64(data.len())));
    assert_eq!(output.e_tag(), Some(etag.as_str()));
    assert_eq!(output.last_modified(), Some(modified));
    let body = output.body.collect().await.expect("body").to_vec();
    assert_eq!(body, data);

    let raw = server.send_signed(&server.request("GET", "/objects/greeting.txt"));
    assert_raw_object(&raw, data, "raw GET");
    assert!(!raw.request_id().is_empty());
    assert!(raw.header("last-modified").is_some());
    let raw_head = server.send_signed(&server.request("HEAD", "/objects/greeting.txt"));
    assert_eq!(raw_head.status, 200);
    assert_eq!(raw_head.header("content-length"), Some("17"));
    assert_eq!(raw_head.header("etag"), Some(etag.as_str()));
    assert!(raw_head.body.is_empty());

    // Stored without a Content-Type (the SDK always sends one): AWS's
    // default type.
    let untyped = raw_put(&server, "/objects/untyped", b"no type");
    assert_eq!(untyped.status, 200, "{}", untyped.text());
    assert_eq!(untyped.header("etag"), Some(etag_of(b"no type").as_str()));
    assert!(!untyped.request_id().is_empty());
    let raw_head = server.send_signed(&server.request("HEAD", "/objects/untyped"));
    assert_eq!(raw_head.header("content-type"), Some("binary/octet-stream"));

    let deleted = server.send_signed(&server.request("DELETE", "/objects/greeting.txt"));
    assert_eq!(deleted.status, 204, "{}", deleted.text());
    assert!(deleted.body.is_empty());
    assert!(!deleted.request_id().is_empty());
    // Deleting again, or deleting a key that never existed: 204 as well.
    let again = server.send_signed(&server.request("DELETE", "/objects/greeting.txt"));
    assert_eq!(again.status, 204, "{}", again.text());
    let never = server.send_signed(&server.request("DELETE", "/objects/never-existed"));
    assert_eq!(never.status, 204, "{}", never.text());
    client
        .delete_object()
        .bucket("objects")
        .key("never-existed-either")
        .send()
        .await
        .expect("DeleteObject of a missing key");

    let text = server
        .send_signed(&server.request("GET", "/objects/greeting.txt"))
        .assert_s3_error(404, "NoSuchKey");
    assert_eq!(
        common::xml_element(&text, "Key").as_deref(),
        Some("greeting.txt")
    );
    assert_eq!(
        common::xml_element(&text, "Resource").as_deref(),
        Some("/objects/greeting.txt")
    );
    assert_no_such_key(&client, "objects", "greeting.txt").await;

    let raw_head = server.send_signed(&server.request("HEAD", "/objects/greeting.txt"));
    assert_eq!(raw_head.status, 404);
    assert!(raw_head.body.is_empty());
    let error = client
        .head_object()
        .bucket("objects")
        .key("greeting.txt")
        .send()
        .await
        .expect_err("HeadObject after delete");
    assert_eq!(sdk_failure(&error).status, 404);
    assert!(error.into_service_error().is_not_found());

    // The key is free again; the same key in another bucket is another
    // object.
    create_bucket(&client, "objects-2").await;
    put(&client, "objects-2", "greeting.txt", b"other bucket").await;
    put(&client, "objects", "greeting.txt", b"second life").await;
    assert_eq!(
        get(&client, "objects-2", "greeting.txt").await,
        b"other bucket"
    );
    assert_eq!(
        get(&client, "objects", "greeting.txt").await,
        b"second life"
    );
}

/// Goal: every object operation in a bucket that does not exist answers
/// `404 NoSuchBucket` (HEAD without a body), and a PUT does not create the
/// bucket.
#[tokio::test]
async fn object_requests_in_a_missing_bucket_are_no_such_bucket() {
    let server = Server::start();
    let client = server.client();
    expect_sdk_error(
        client
            .put_object()
            .bucket("missing-bucket")
            .key("k")
            .body(ByteStream::from_static(b"data"))
            .send()
            .await,
        404,
        "NoSuchBucket",
    );
    expect_sdk_error(
        client
            .get_object()
            .bucket("missing-bucket")
            .key("k")
            .send()
            .await,
        404,
        "NoSuchBucket",
    );
    expect_sdk_error(
        client
            .delete_object()
            .bucket("missing-bucket")
            .key("k")
            .send()
            .await,
        404,
        "NoSuchBucket",
    );

    let text = raw_put(&server, "/missing-bucket/k", b"data").assert_s3_error(404, "NoSuchBucket");
    assert_eq!(
        common::xml_element(&text, "BucketName").as_deref(),
        Some("missing-bucket")
    );
    server
        .send_signed(&server.request("GET", "/missing-bucket/k"))
        .assert_s3_error(404, "NoSuchBucket");
    server
        .send_signed(&server.request("DELETE", "/missing-bucket/k"))
        .assert_s3_error(404, "NoSuchBucket");
    let head = server.send_signed(&server.request("HEAD", "/missing-bucket/k"));
    assert_eq!(head.status, 404);
    assert!(head.body.is_empty());

    let head = server.send_signed(&server.request("HEAD", "/missing-bucket"));
    assert_eq!(head.status, 404, "a PUT must not create the bucket");
}

/// Goal: `DeleteBucket` sees objects on every core. Method: for each core,
/// a bucket whose only object that core owns; `409 BucketNotEmpty` until
/// the object is deleted, then `204`.
#[tokio::test]
async fn delete_bucket_with_objects_is_bucket_not_empty() {
    let server = Server::start();
    let client = server.client();
    let cores = common::online_cores();
    for core in 0..cores {
        let bucket = format!("not-empty-{core}");
        create_bucket(&client, &bucket).await;
        let key = key_on_core(&bucket, "only", core, cores);
        put(&client, &bucket, &key, b"keeps the bucket").await;

        let text = server
            .send_signed(&server.request("DELETE", &format!("/{bucket}")))
            .assert_s3_error(409, "BucketNotEmpty");
        assert_eq!(
            common::xml_element(&text, "BucketName").as_deref(),
            Some(bucket.as_str())
        );
        expect_sdk_error(
            client.delete_bucket().bucket(&bucket).send().await,
            409,
            "BucketNotEmpty",
        );
        assert_eq!(get(&client, &bucket, &key).await, b"keeps the bucket");

        let deleted = server.send_signed(&server.request("DELETE", &object_path(&bucket, &key)));
        assert_eq!(deleted.status, 204);
        let deleted = server.send_signed(&server.request("DELETE", &format!("/{bucket}")));
        assert_eq!(deleted.status, 204, "core {core}: {}", deleted.text());
        let head = server.send_signed(&server.request("HEAD", &format!("/{bucket}")));
        assert_eq!(head.status, 404);
    }
}

// ---------------------------------------------------------------------------
// Sizes and ranges
// ---------------------------------------------------------------------------

/// Goal: every size around the inline limit and the extent size reads back
/// byte for byte with `ETag` = MD5, whichever way it was written: by the
/// SDK from memory (signed payload, CRC32 header) or streamed (aws-chunked
/// with a CRC32 trailer), or raw with a plain `Content-Length` body.
#[tokio::test]
async fn sizes_across_the_inline_and_extent_boundaries() {
    let server = Server::start();
    let client = server.client();
    create_bucket(&client, "sizes").await;
    for (index, size) in BOUNDARY_SIZES.into_iter().enumerate() {
        let data = pattern(index as u64 + 100, size);
        let etag = etag_of(&data);

        let sdk_key = format!("sdk/{size}");
        assert_eq!(put(&client, "sizes", &sdk_key, &data).await, etag, "{size}");
        let streamed_key = format!("streamed/{size}");
        assert_eq!(
            put_streamed(&client, "sizes", &streamed_key, &data).await,
            etag,
            "{size}"
        );
        let raw_key = format!("raw/{size}");
        let response = raw_put(&server, &format!("/sizes/{raw_key}"), &data);
        assert_eq!(response.status, 200, "{size}: {}", response.text());
        assert_eq!(response.header("etag"), Some(etag.as_str()), "{size}");

        for key in [&sdk_key, &streamed_key, &raw_key] {
            let output = client
                .get_object()
                .bucket("sizes")
                .key(key)
                .send()
                .await
                .expect("GetObject");
            assert_eq!(output.content_length(), Some(len_i64(size)), "{key}");
            assert_eq!(output.e_tag(), Some(etag.as_str()), "{key}");
            let body = output.body.collect().await.expect("body").to_vec();
            assert_bytes_eq(&body, &data, key);

            let head = client
                .head_object()
                .bucket("sizes")
                .key(key)
                .send()
                .await
                .expect("HeadObject");
            assert_eq!(head.content_length(), Some(len_i64(size)), "{key}");
            assert_eq!(head.e_tag(), Some(etag.as_str()), "{key}");

            let raw = server.send_signed(&server.request("GET", &format!("/sizes/{key}")));
            assert_raw_object(&raw, &data, key);
            let raw_head = server.send_signed(&server.request("HEAD", &format!("/sizes/{key}")));
            assert_eq!(raw_head.status, 200);
            assert_eq!(
                raw_head.header("content-length"),
                Some(size.to_string().as_str()),
                "{key}"
            );
        }
    }
}

/// The objects the range tests read: `large` (3 extents and 17 bytes),
/// `small` (inline, 1000 bytes) and `empty`.
struct RangeObjects {
    large: Vec<u8>,
    small: Vec<u8>,
}

impl RangeObjects {
    async fn put(client: &Client) -> RangeObjects {
        create_bucket(client, "ranges").await;
        let objects = RangeObjects {
            large: pattern(7, 3 * EXTENT + 17),
            small: pattern(8, 1000),
        };
        put(client, "ranges", "large", &objects.large).await;
        put_streamed(client, "ranges", "small", &objects.small).await;
        put(client, "ranges", "empty", b"").await;
        objects
    }

    fn data(&self, key: &str) -> &[u8] {
        match key {
            "large" => &self.large,
            "small" => &self.small,
            "empty" => &[],
            _ => unreachable!("no object {key}"),
        }
    }
}

/// A GET of `key` with this Range header, signed.
fn ranged_get(server: &Server, method: &str, key: &str, range: &str) -> Vec<u8> {
    server.sign(
        &server
            .request(method, &format!("/ranges/{key}"))
            .header("Range", range),
    )
}

/// Goal: single byte ranges as RFC 9110 and AWS define them: `206` with an
/// exact `Content-Range` and `Content-Length` and the object's `ETag`:
/// first and last byte, ranges across extent boundaries, `a-`, suffixes
/// (also longer than the object), ends past the object; on HEAD too.
/// Method: raw requests on one keep-alive connection, alternating between
/// objects (which may live on different cores), plus the SDK.
#[tokio::test]
async fn satisfiable_byte_ranges_are_206() {
    let server = Server::start();
    let client = server.client();
    let objects = RangeObjects::put(&client).await;
    let size = objects.large.len();
    // (key, Range, first byte, last byte)
    let cases: Vec<(&str, String, usize, usize)> = vec![
        ("large", "bytes=0-0".into(), 0, 0),
        ("small", "bytes=10-19".into(), 10, 19),
        (
            "large",
            format!("bytes={0}-{0}", size - 1),
            size - 1,
            size - 1,
        ),
        ("small", "bytes=-1".into(), 999, 999),
        // Across the first extent boundary.
        (
            "large",
            format!("bytes={}-{}", EXTENT - 10, EXTENT + 9),
            EXTENT - 10,
            EXTENT + 9,
        ),
        ("small", "bytes=999-".into(), 999, 999),
        // The last byte of one extent, a whole extent, the first of the next.
        (
            "large",
            format!("bytes={}-{}", EXTENT - 1, 2 * EXTENT),
            EXTENT - 1,
            2 * EXTENT,
        ),
        ("small", "bytes=-5000".into(), 0, 999),
        ("large", format!("bytes={EXTENT}-"), EXTENT, size - 1),
        ("small", "bytes=500-5000".into(), 500, 999),
        ("large", format!("bytes={}-", size - 5), size - 5, size - 1),
        ("large", "bytes=-100".into(), size - 100, size - 1),
        (
            "large",
            format!("bytes=-{}", EXTENT + 18),
            size - EXTENT - 18,
            size - 1,
        ),
        ("large", format!("bytes=-{}", size + 1000), 0, size - 1),
        ("large", format!("bytes=10-{}", size + 1000), 10, size - 1),
        ("large", format!("bytes=0-{}", size - 1), 0, size - 1),
    ];
    let mut conn = server.connect();
    for (key, range, first, last) in &cases {
        let what = format!("{key} {range}");
        let data = objects.data(key);
        conn.send(&ranged_get(&server, "GET", key, range));
        let response = conn.response();
        assert_eq!(response.status, 206, "{what}: {}", response.text());
        let content_range = format!("bytes {first}-{last}/{}", data.len());
        assert_eq!(
            response.header("content-range"),
            Some(content_range.as_str()),
            "{what}"
        );
        let length = (last - first + 1).to_string();
        assert_eq!(
            response.header("content-length"),
            Some(length.as_str()),
            "{what}"
        );
        assert_eq!(
            response.header("etag"),
            Some(etag_of(data).as_str()),
            "{what}"
        );
        assert_bytes_eq(&response.body, &data[*first..=*last], &what);
        assert!(!response.closes(), "{what}: keep-alive after a 206");

        conn.send(&ranged_get(&server, "HEAD", key, range));
        let head = conn.head_response();
        assert_eq!(head.status, 206, "HEAD {what}");
        assert_eq!(
            head.header("content-range"),
            Some(content_range.as_str()),
            "HEAD {what}"
        );
        assert_eq!(
            head.header("content-length"),
            Some(length.as_str()),
            "HEAD {what}"
        );
    }

    // The SDK's view of a range across an extent boundary.
    let (first, last) = (2 * EXTENT - 3, 2 * EXTENT + 2);
    let output = client
        .get_object()
        .bucket("ranges")
        .key("large")
        .range(format!("bytes={first}-{last}"))
        .send()
        .await
        .expect("ranged GetObject");
    assert_eq!(
        output.content_range(),
        Some(format!("bytes {first}-{last}/{size}").as_str())
    );
    assert_eq!(output.content_length(), Some(6));
    let body = output.body.collect().await.expect("body").to_vec();
    assert_eq!(body, &objects.large[first..=last]);
}

/// Goal: a range that starts at or past the end is `416 InvalidRange` with
/// `Content-Range: bytes */size`, and so is every range of an empty
/// object; the connection stays usable. HEAD answers 416 without a body.
#[tokio::test]
async fn unsatisfiable_byte_ranges_are_416_invalid_range() {
    let server = Server::start();
    let client = server.client();
    let objects = RangeObjects::put(&client).await;
    let size = objects.large.len();
    let cases: Vec<(&str, String)> = vec![
        ("large", format!("bytes={size}-")),
        ("small", "bytes=1000-".into()),
        ("large", format!("bytes={size}-{}", size + 10)),
        ("small", "bytes=40000-50000".into()),
        ("large", format!("bytes={}-{}", size + 100, size + 200)),
        ("empty", "bytes=0-".into()),
        ("empty", "bytes=0-0".into()),
        ("empty", "bytes=-1".into()),
    ];
    let mut conn = server.connect();
    for (key, range) in &cases {
        let what = format!("{key} {range}");
        let content_range = format!("bytes */{}", objects.data(key).len());
        conn.send(&ranged_get(&server, "GET", key, range));
        let response = conn.response();
        response.assert_s3_error(416, "InvalidRange");
        assert_eq!(
            response.header("content-range"),
            Some(content_range.as_str()),
            "{what}"
        );
        assert!(!response.closes(), "{what}: keep-alive after a 416");

        conn.send(&ranged_get(&server, "HEAD", key, range));
        let head = conn.head_response();
        assert_eq!(head.status, 416, "HEAD {what}");
        assert_eq!(
            head.header("content-range"),
            Some(content_range.as_str()),
            "HEAD {what}"
        );
    }
    // The connection still serves whole objects.
    conn.send(&server.sign(&server.request("GET", "/ranges/small")));
    assert_raw_object(&conn.response(), &objects.small, "GET after 416s");

    expect_sdk_error(
        client
            .get_object()
            .bucket("ranges")
            .key("empty")
            .range("bytes=0-")
            .send()
            .await,
        416,
        "InvalidRange",
    );
}

// ---------------------------------------------------------------------------
// Keys
// ---------------------------------------------------------------------------

/// Keys that HTTP stacks like to normalize, decode twice, or cut.
const AWKWARD_KEYS: &[&str] = &[
    ".",
    "..",
    "a/../b",
    "a/./b",
    "../escape",
    "a//b",
    "//",
    "trailing/",
    "with space",
    "a+b",
    "a b",
    "a%2Bb",
    "100%",
    "%41",
    "%2F",
    "line\nbreak",
    "tab\tkey",
    "ключ/日本語/😀",
    "question?mark",
    "hash#key",
    "amp&eq=",
    "tilde~star*",
    "back\\slash",
    "semi;colon,comma",
    "quotes\"'",
    "<xml>&amp;",
];

/// Goal: every awkward key is its own object, read back through the SDK
/// and raw paths; `a+b` and `a b` are different objects (`+` in a path is
/// a plus, not a space); a leading `/` is part of the key; keys of 1024
/// bytes are accepted and 1025 bytes are `400 KeyTooLongError`.
#[tokio::test]
async fn awkward_keys() {
    let server = Server::start();
    let client = server.client();
    create_bucket(&client, "keys").await;
    let body_of = |key: &str| format!("the object named {key:?}").into_bytes();

    for key in AWKWARD_KEYS {
        put(&client, "keys", key, &body_of(key)).await;
    }
    for key in AWKWARD_KEYS {
        assert_eq!(get(&client, "keys", key).await, body_of(key), "{key:?}");
        let head = client
            .head_object()
            .bucket("keys")
            .key(*key)
            .send()
            .await
            .unwrap_or_else(|error| panic!("HeadObject {key:?}: {error:?}"));
        assert_eq!(head.e_tag(), Some(etag_of(&body_of(key)).as_str()));
        let raw = server.send_signed(&server.request("GET", &object_path("keys", key)));
        assert_raw_object(&raw, &body_of(key), &format!("raw GET {key:?}"));
    }

    // `+` is a plus in a path; a space is `%20`; `%2B` is a plus too.
    let plus = server.send_signed(&server.request("GET", "/keys/a+b"));
    assert_raw_object(&plus, &body_of("a+b"), "/keys/a+b");
    let plus = server.send_signed(&server.request("GET", "/keys/a%2Bb"));
    assert_raw_object(&plus, &body_of("a+b"), "/keys/a%2Bb");
    let space = server.send_signed(&server.request("GET", "/keys/a%20b"));
    assert_raw_object(&space, &body_of("a b"), "/keys/a%20b");
    // Decoded once only: `%252F` is the key `%2F`, not `/`.
    let once = server.send_signed(&server.request("GET", "/keys/%252F"));
    assert_raw_object(&once, &body_of("%2F"), "/keys/%252F");

    // A leading slash: the path `/keys//x` names the key `/x`.
    let response = raw_put(&server, "/keys//x", b"slash x");
    assert_eq!(response.status, 200, "{}", response.text());
    let response = raw_put(&server, "/keys/x", b"plain x");
    assert_eq!(response.status, 200, "{}", response.text());
    let slash = server.send_signed(&server.request("GET", "/keys//x"));
    assert_raw_object(&slash, b"slash x", "/keys//x");
    let encoded = server.send_signed(&server.request("GET", "/keys/%2Fx"));
    assert_raw_object(&encoded, b"slash x", "/keys/%2Fx");
    let plain = server.send_signed(&server.request("GET", "/keys/x"));
    assert_raw_object(&plain, b"plain x", "/keys/x");
    assert_eq!(get(&client, "keys", "/x").await, b"slash x");
    // Dot segments sent as they are name keys with dots in them.
    let response = raw_put(&server, "/keys/p/../q", b"dots");
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(get(&client, "keys", "p/../q").await, b"dots");
    assert_no_such_key(&client, "keys", "q").await;

    // Deleting one of a look-alike pair leaves the other.
    client
        .delete_object()
        .bucket("keys")
        .key("a+b")
        .send()
        .await
        .expect("DeleteObject a+b");
    assert_no_such_key(&client, "keys", "a+b").await;
    assert_eq!(get(&client, "keys", "a b").await, body_of("a b"));
    assert_eq!(get(&client, "keys", "a%2Bb").await, body_of("a%2Bb"));

    // Key length: 1024 bytes of UTF-8, whatever the characters.
    let longest_ascii = "k".repeat(1024);
    let longest_utf8 = "é".repeat(512);
    for key in [&longest_ascii, &longest_utf8] {
        assert_eq!(key.len(), 1024);
        put(&client, "keys", key, b"long").await;
        assert_eq!(get(&client, "keys", key).await, b"long");
    }
    let too_long_ascii = "k".repeat(1025);
    let too_long_utf8 = format!("{longest_utf8}k");
    for key in [&too_long_ascii, &too_long_utf8] {
        assert_eq!(key.len(), 1025);
        expect_sdk_error(
            client
                .put_object()
                .bucket("keys")
                .key(key)
                .body(ByteStream::from_static(b"too long"))
                .send()
                .await,
            400,
            "KeyTooLongError",
        );
        raw_put(&server, &object_path("keys", key), b"too long")
            .assert_s3_error(400, "KeyTooLongError");
    }
}

// ---------------------------------------------------------------------------
// Metadata and Content-MD5
// ---------------------------------------------------------------------------

/// Goal: system metadata and user metadata come back on GET and HEAD as
/// they were sent; `aws-chunked`, which the SDK adds to Content-Encoding
/// to describe its framing, is not part of the stored encoding.
#[tokio::test]
async fn system_and_user_metadata_round_trip() {
    let server = Server::start();
    let sent = SentHeaders::default();
    let client = Client::from_conf(server.client_config().interceptor(sent.clone()).build());
    create_bucket(&client, "metadata").await;
    let data = b"\x1f\x8b pretend this is gzip";
    let expires = DateTime::from_secs(1_893_456_000); // 2030-01-01T00:00:00Z
    let expires_text = expires.fmt(DateTimeFormat::HttpDate).expect("HTTP date");
    assert_eq!(expires_text, "Tue, 01 Jan 2030 00:00:00 GMT");

    let (body, _file) = streamed(data).await;
    client
        .put_object()
        .bucket("metadata")
        .key("described")
        .content_type("text/plain; charset=utf-8")
        .cache_control("max-age=3600, must-revalidate")
        .content_disposition("attachment; filename=\"report 2026.txt\"")
        .content_encoding("gzip")
        .content_language("de-CH")
        .expires(expires)
        .metadata("color", "blue")
        .metadata("multi-word-name", "Hello, World")
        .metadata("digits", "0123456789")
        .body(body)
        .send()
        .await
        .expect("PutObject with metadata");
    let request = sent.last();
    let sent_encoding = request.get("content-encoding").cloned().unwrap_or_default();
    assert!(
        sent_encoding.contains("aws-chunked") && sent_encoding.contains("gzip"),
        "the test expects the SDK to send aws-chunked with gzip, it sent {request:?}"
    );

    let expected_metadata: HashMap<String, String> = [
        ("color", "blue"),
        ("multi-word-name", "Hello, World"),
        ("digits", "0123456789"),
    ]
    .into_iter()
    .map(|(name, value)| (name.to_owned(), value.to_owned()))
    .collect();

    let output = client
        .get_object()
        .bucket("metadata")
        .key("described")
        .send()
        .await
        .expect("GetObject");
    assert_eq!(output.content_type(), Some("text/plain; charset=utf-8"));
    assert_eq!(
        output.cache_control(),
        Some("max-age=3600, must-revalidate")
    );
    assert_eq!(
        output.content_disposition(),
        Some("attachment; filename=\"report 2026.txt\"")
    );
    assert_eq!(output.content_encoding(), Some("gzip"));
    assert_eq!(output.content_language(), Some("de-CH"));
    assert_eq!(output.expires_string(), Some(expires_text.as_str()));
    assert_eq!(output.metadata(), Some(&expected_metadata));
    assert_eq!(output.content_length(), Some(len_i64(data.len())));
    let body = output.body.collect().await.expect("body").to_vec();
    assert_eq!(body, data);

    let head = client
        .head_object()
        .bucket("metadata")
        .key("described")
        .send()
        .await
        .expect("HeadObject");
    assert_eq!(head.content_type(), Some("text/plain; charset=utf-8"));
    assert_eq!(head.cache_control(), Some("max-age=3600, must-revalidate"));
    assert_eq!(
        head.content_disposition(),
        Some("attachment; filename=\"report 2026.txt\"")
    );
    assert_eq!(head.content_encoding(), Some("gzip"));
    assert_eq!(head.content_language(), Some("de-CH"));
    assert_eq!(head.expires_string(), Some(expires_text.as_str()));
    assert_eq!(head.metadata(), Some(&expected_metadata));

    // The exact header, and one header per metadata entry.
    for method in ["GET", "HEAD"] {
        let raw = server.send_signed(&server.request(method, "/metadata/described"));
        assert_eq!(raw.status, 200);
        assert_eq!(raw.header("content-encoding"), Some("gzip"), "{method}");
        assert_eq!(raw.header("x-amz-meta-color"), Some("blue"), "{method}");
        let count = raw
            .headers
            .iter()
            .filter(|(name, _)| name.eq_ignore_ascii_case("content-encoding"))
            .count();
        assert_eq!(count, 1, "{method}: {:?}", raw.headers);
    }
}

/// Goal: an object the SDK streams without an encoding of its own (the
/// SDK sends `Content-Encoding: aws-chunked` alone) is stored with no
/// Content-Encoding and no user metadata; a plain request's encoding and
/// metadata are stored as sent (metadata names in lower case).
#[tokio::test]
async fn content_encoding_of_only_aws_chunked_is_not_stored() {
    let server = Server::start();
    let sent = SentHeaders::default();
    let client = Client::from_conf(server.client_config().interceptor(sent.clone()).build());
    create_bucket(&client, "metadata").await;
    put_streamed(&client, "metadata", "plain", b"no encoding").await;
    let request = sent.last();
    assert_eq!(
        request.get("content-encoding").map(String::as_str),
        Some("aws-chunked"),
        "{request:?}"
    );
    let raw = server.send_signed(&server.request("GET", "/metadata/plain"));
    assert_eq!(raw.status, 200);
    assert_eq!(raw.body, b"no encoding");
    assert_eq!(raw.header("content-encoding"), None, "{:?}", raw.headers);
    assert_eq!(
        raw.header("content-type"),
        Some(
            request
                .get("content-type")
                .map_or("binary/octet-stream", String::as_str)
        )
    );
    let head = client
        .head_object()
        .bucket("metadata")
        .key("plain")
        .send()
        .await
        .expect("HeadObject");
    assert_eq!(head.content_encoding(), None);
    assert!(head.metadata().is_none_or(HashMap::is_empty));

    // A plain body with an encoding: stored as sent.
    let response = server.send_signed(
        &server
            .request("PUT", "/metadata/raw-encoded")
            .header("Content-Encoding", "br")
            .header("Content-Type", "application/x-tar")
            .header("x-amz-meta-Mixed-Case", "value")
            .body(b"raw body"),
    );
    assert_eq!(response.status, 200, "{}", response.text());
    let raw = server.send_signed(&server.request("HEAD", "/metadata/raw-encoded"));
    assert_eq!(raw.header("content-encoding"), Some("br"));
    assert_eq!(raw.header("content-type"), Some("application/x-tar"));
    assert_eq!(raw.header("x-amz-meta-mixed-case"), Some("value"));
}

/// A raw PUT of `data` in aws-chunked framing as the SDKs send it
/// (`STREAMING-UNSIGNED-PAYLOAD-TRAILER`, 16 KiB chunks, a CRC32C trailer),
/// with these `Content-Encoding` field lines. They are sent unsigned: a
/// field repeated on several lines cannot be signed line by line, and
/// only `x-amz-*` headers must be signed.
fn aws_chunked_put(server: &Server, path: &str, data: &[u8], encodings: &[&str]) -> Vec<u8> {
    let mut request = server
        .request("PUT", path)
        .content_sha256("STREAMING-UNSIGNED-PAYLOAD-TRAILER")
        .header("x-amz-decoded-content-length", &data.len().to_string())
        .header("x-amz-trailer", "x-amz-checksum-crc32c");
    for encoding in encodings {
        request = request.unsigned_header("Content-Encoding", encoding);
    }
    let mut body = Vec::new();
    for chunk in data.chunks(16 * KIB) {
        body.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        body.extend_from_slice(chunk);
        body.extend_from_slice(b"\r\n");
    }
    let crc = common::base64(&crc32c::crc32c(data).to_be_bytes());
    body.extend_from_slice(format!("0\r\nx-amz-checksum-crc32c:{crc}\r\n\r\n").as_bytes());
    server.sign(&request.body(&body))
}

/// Goal: `aws-chunked` describes the request's framing and is never part
/// of the stored Content-Encoding, wherever it appears in the field: alone,
/// first or last in a list, on a field line of its own before or after
/// the object's coding, or absent (the framing is decoded anyway).
/// Method: raw aws-chunked bodies of 100 KiB (so, extents) with each
/// arrangement; GET returns the bytes and the object's own coding only.
#[test]
fn aws_chunked_is_never_a_stored_content_encoding() {
    let server = Server::start();
    let created = server.send_signed(&server.request("PUT", "/chunked"));
    assert_eq!(created.status, 200);
    let data = pattern(40, 100 * KIB);
    let cases: [(&str, &[&str], Option<&str>); 7] = [
        ("alone", &["aws-chunked"], None),
        ("absent", &[], None),
        ("first-in-list", &["aws-chunked,gzip"], Some("gzip")),
        ("last-in-list", &["gzip, aws-chunked"], Some("gzip")),
        ("line-before", &["aws-chunked", "gzip"], Some("gzip")),
        ("line-after", &["gzip", "aws-chunked"], Some("gzip")),
        ("other-coding-only", &["br"], Some("br")),
    ];
    let mut failures = Vec::new();
    for (name, encodings, stored) in cases {
        let path = format!("/chunked/{name}");
        let response = server.send(&aws_chunked_put(&server, &path, &data, encodings));
        assert_eq!(response.status, 200, "{name}: {}", response.text());
        assert_eq!(
            response.header("etag"),
            Some(etag_of(&data).as_str()),
            "{name}"
        );
        let get = server.send_signed(&server.request("GET", &path));
        assert_raw_object(&get, &data, name);
        let got = get.header("content-encoding");
        if got != stored {
            failures.push(format!(
                "{name}: sent Content-Encoding lines {encodings:?}, stored {got:?}, expected {stored:?}"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Goal: a Content-Encoding of several codings is stored and returned
/// exactly as sent, less `aws-chunked`: `deflate, gzip` stays
/// `deflate, gzip`, spaces and all. Regression (issue 12): the kept
/// codings were re-joined with `,` (`deflate,gzip`). Method: a plain PUT,
/// an aws-chunked PUT with `aws-chunked` first in the list, and the SDK
/// (which appends `aws-chunked` to the object's own codings); GET and HEAD
/// return the header as sent.
#[tokio::test]
async fn content_encoding_of_several_codings_is_returned_as_sent() {
    let server = Server::start();
    let client = server.client();
    create_bucket(&client, "codings").await;
    let response = server.send_signed(
        &server
            .request("PUT", "/codings/plain")
            .header("Content-Encoding", "deflate, gzip")
            .body(b"raw body"),
    );
    assert_eq!(response.status, 200, "{}", response.text());
    let data = pattern(41, 100 * KIB);
    let response = server.send(&aws_chunked_put(
        &server,
        "/codings/chunked",
        &data,
        &["aws-chunked, deflate, gzip"],
    ));
    assert_eq!(response.status, 200, "{}", response.text());
    let (body, _file) = streamed(b"sdk body").await;
    client
        .put_object()
        .bucket("codings")
        .key("sdk")
        .content_encoding("deflate, gzip")
        .body(body)
        .send()
        .await
        .expect("PutObject with two codings");
    for key in ["plain", "chunked", "sdk"] {
        for method in ["GET", "HEAD"] {
            let raw = server.send_signed(&server.request(method, &format!("/codings/{key}")));
            assert_eq!(raw.status, 200, "{method} {key}");
            assert_eq!(
                raw.header("content-encoding"),
                Some("deflate, gzip"),
                "{method} {key}"
            );
        }
    }
}

/// Goal: `PutObject` takes `x-amz-acl: bucket-owner-full-control` as it
/// takes `private` (rclone and Hadoop's S3A send it by configuration);
/// any other canned ACL is refused naming the header, and the refused
/// write changes nothing, instead of storing an object that is not what
/// the ACL asked for. Regression (issue 12): every canned ACL was
/// accepted on objects and silently ignored.
#[tokio::test]
async fn put_object_takes_bucket_owner_full_control_and_names_the_header_it_refuses() {
    use aws_sdk_s3::types::ObjectCannedAcl;
    let server = Server::start();
    let client = server.client();
    create_bucket(&client, "acl").await;
    for (key, acl) in [
        ("owner-full", ObjectCannedAcl::BucketOwnerFullControl),
        ("private", ObjectCannedAcl::Private),
    ] {
        client
            .put_object()
            .bucket("acl")
            .key(key)
            .acl(acl.clone())
            .body(ByteStream::from_static(b"kept"))
            .send()
            .await
            .unwrap_or_else(|error| panic!("PutObject with {acl:?}: {error:?}"));
        let raw = server.send_signed(&server.request("GET", &format!("/acl/{key}")));
        assert_eq!((raw.status, raw.body.as_slice()), (200, &b"kept"[..]));
    }
    for value in ["public-read", "public-read-write"] {
        let response = server.send_signed(
            &server
                .request("PUT", "/acl/private")
                .header("x-amz-acl", value)
                .body(b"replaced"),
        );
        common::assert_canned_acl_refused(&response, value);
        let raw = server.send_signed(&server.request("GET", "/acl/private"));
        assert_eq!((raw.status, raw.body.as_slice()), (200, &b"kept"[..]));
    }
}

/// Goal: user metadata of exactly 2 KiB (names without `x-amz-meta-`
/// plus values) is accepted; one byte more is `400 MetadataTooLarge` and
/// changes nothing.
#[tokio::test]
async fn user_metadata_limit_is_2_kib() {
    let server = Server::start();
    let client = server.client();
    create_bucket(&client, "metadata-limit").await;
    // 1 + 1023 + 2 + 1022 = 2048 bytes.
    let a = "x".repeat(1023);
    let bb = "y".repeat(1022);
    client
        .put_object()
        .bucket("metadata-limit")
        .key("at-limit")
        .metadata("a", &a)
        .metadata("bb", &bb)
        .body(ByteStream::from_static(b"at the limit"))
        .send()
        .await
        .expect("2 KiB of user metadata");
    let head = client
        .head_object()
        .bucket("metadata-limit")
        .key("at-limit")
        .send()
        .await
        .expect("HeadObject");
    let metadata = head.metadata().expect("metadata");
    assert_eq!(metadata.get("a"), Some(&a));
    assert_eq!(metadata.get("bb"), Some(&bb));

    let over = "y".repeat(1023);
    for key in ["at-limit", "never-created"] {
        let failure = expect_sdk_error(
            client
                .put_object()
                .bucket("metadata-limit")
                .key(key)
                .metadata("a", &a)
                .metadata("bb", &over)
                .body(ByteStream::from_static(b"over the limit"))
                .send()
                .await,
            400,
            "MetadataTooLarge",
        );
        assert!(failure.body.contains("<Error>"), "{failure:?}");
    }
    assert_eq!(
        get(&client, "metadata-limit", "at-limit").await,
        b"at the limit"
    );
    assert_no_such_key(&client, "metadata-limit", "never-created").await;

    // One entry of 2048 bytes, and of 2049, through a plain request.
    let value = "v".repeat(2047);
    let response = server.send_signed(
        &server
            .request("PUT", "/metadata-limit/one-entry")
            .header("x-amz-meta-k", &value)
            .body(b"one entry"),
    );
    assert_eq!(response.status, 200, "{}", response.text());
    let value = "v".repeat(2048);
    server
        .send_signed(
            &server
                .request("PUT", "/metadata-limit/one-entry-over")
                .header("x-amz-meta-k", &value)
                .body(b"one entry"),
        )
        .assert_s3_error(400, "MetadataTooLarge");
}

/// Goal: a correct `Content-MD5` is accepted; a wrong one is `400
/// BadDigest`, a malformed one `400 InvalidDigest`, and neither replaces
/// the object that was there (inline or in extents). Method: the SDK
/// (aws-chunked body) and raw requests (plain body).
#[tokio::test]
async fn content_md5_is_checked() {
    let server = Server::start();
    let client = server.client();
    create_bucket(&client, "digests").await;
    let v1 = b"version one".to_vec();
    client
        .put_object()
        .bucket("digests")
        .key("object")
        .content_md5(md5_base64(&v1))
        .body(ByteStream::from(v1.clone()))
        .send()
        .await
        .expect("PutObject with a correct Content-MD5");
    assert_eq!(get(&client, "digests", "object").await, v1);

    for replacement in [b"version two".to_vec(), pattern(3, 2 * EXTENT + 5)] {
        expect_sdk_error(
            client
                .put_object()
                .bucket("digests")
                .key("object")
                .content_md5(md5_base64(b"something else"))
                .body(ByteStream::from(replacement.clone()))
                .send()
                .await,
            400,
            "BadDigest",
        );
        assert_eq!(get(&client, "digests", "object").await, v1);
        server
            .send_signed(
                &server
                    .request("PUT", "/digests/object")
                    .header("Content-MD5", &md5_base64(b"something else"))
                    .body(&replacement),
            )
            .assert_s3_error(400, "BadDigest");
        assert_eq!(get(&client, "digests", "object").await, v1);
    }

    let short = common::base64(&Md5::digest(b"x")[..15]);
    for malformed in ["not base64!", "", "AAAA", short.as_str()] {
        expect_sdk_error(
            client
                .put_object()
                .bucket("digests")
                .key("object")
                .content_md5(malformed)
                .body(ByteStream::from_static(b"version three"))
                .send()
                .await,
            400,
            "InvalidDigest",
        );
        server
            .send_signed(
                &server
                    .request("PUT", "/digests/object")
                    .header("Content-MD5", malformed)
                    .body(b"version three"),
            )
            .assert_s3_error(400, "InvalidDigest");
    }
    assert_eq!(get(&client, "digests", "object").await, v1);
    let head = client
        .head_object()
        .bucket("digests")
        .key("object")
        .send()
        .await
        .expect("HeadObject");
    assert_eq!(head.e_tag(), Some(etag_of(&v1).as_str()));

    let v2 = pattern(4, EXTENT + 3);
    let response = server.send_signed(
        &server
            .request("PUT", "/digests/object")
            .header("Content-MD5", &md5_base64(&v2))
            .body(&v2),
    );
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(response.header("etag"), Some(etag_of(&v2).as_str()));
    assert_bytes_eq(&get(&client, "digests", "object").await, &v2, "v2");
}

// ---------------------------------------------------------------------------
// Overwrites
// ---------------------------------------------------------------------------

/// Goal: the newest version of a key wins, whatever the sizes of the old
/// and new versions (inline, extents, empty); an upload that fails (bad
/// digest, or a connection closed mid-body, before or after whole extents
/// were written) leaves the previous version, and a failed upload of a new
/// key leaves no object.
#[tokio::test]
async fn overwrites_keep_the_newest_complete_version() {
    let server = Server::start();
    let client = server.client();
    create_bucket(&client, "overwrite").await;
    let versions = [
        pattern(20, 10),
        pattern(21, 2 * EXTENT + 3),
        Vec::new(),
        pattern(22, INLINE_MAX - 1),
        pattern(23, EXTENT + 1),
        pattern(24, 100),
    ];
    for (index, version) in versions.iter().enumerate() {
        let etag = put(&client, "overwrite", "key", version).await;
        assert_eq!(etag, etag_of(version));
        let what = format!("version {index}");
        assert_bytes_eq(&get(&client, "overwrite", "key").await, version, &what);
        let head = client
            .head_object()
            .bucket("overwrite")
            .key("key")
            .send()
            .await
            .expect("HeadObject");
        assert_eq!(head.e_tag(), Some(etag.as_str()), "{what}");
        assert_eq!(
            head.content_length(),
            Some(len_i64(version.len())),
            "{what}"
        );
    }
    let current = versions.last().expect("a version");

    // Closed mid-body: inline-sized, and after two whole extents.
    let small = pattern(25, 40_000);
    put_closed_mid_body(&server, "/overwrite/key", &small, 20_000);
    assert_bytes_eq(
        &get(&client, "overwrite", "key").await,
        current,
        "after an aborted small PUT",
    );
    let large = pattern(26, 3 * EXTENT);
    put_closed_mid_body(&server, "/overwrite/key", &large, 2 * EXTENT + EXTENT / 2);
    assert_bytes_eq(
        &get(&client, "overwrite", "key").await,
        current,
        "after an aborted large PUT",
    );
    // Closed right after the head.
    put_closed_mid_body(&server, "/overwrite/key", &small, 0);
    assert_bytes_eq(
        &get(&client, "overwrite", "key").await,
        current,
        "after an aborted empty PUT",
    );

    // A new key whose upload fails does not exist.
    put_closed_mid_body(&server, "/overwrite/new-key", &large, EXTENT + 1);
    assert_no_such_key(&client, "overwrite", "new-key").await;

    // Bad digest.
    server
        .send_signed(
            &server
                .request("PUT", "/overwrite/key")
                .header("Content-MD5", &md5_base64(b"other"))
                .body(&large),
        )
        .assert_s3_error(400, "BadDigest");
    assert_bytes_eq(
        &get(&client, "overwrite", "key").await,
        current,
        "after a bad digest",
    );

    // And the key still takes new versions.
    let last = pattern(27, EXTENT + 77);
    put(&client, "overwrite", "key", &last).await;
    assert_bytes_eq(
        &get(&client, "overwrite", "key").await,
        &last,
        "final version",
    );
}

/// Goal: a GET that has started keeps streaming the version it started
/// with, whole, while the key is overwritten and then deleted (segments
/// are append-only, so the old extents stay readable). Method: read the
/// first bytes of a raw GET of a 3-extent object, overwrite and delete the
/// key from other connections, then read the rest.
#[tokio::test]
async fn a_started_get_keeps_its_version_through_overwrite_and_delete() {
    let server = Server::start();
    let client = server.client();
    create_bucket(&client, "streaming").await;
    let old = pattern(30, 3 * EXTENT + 5);
    put(&client, "streaming", "key", &old).await;

    let mut conn = server.connect();
    conn.send(&server.sign(&server.request("GET", "/streaming/key")));
    let mut received = Vec::new();
    let mut chunk = vec![0_u8; 64 * KIB];
    while received.len() < 100 * KIB {
        let n = std::io::Read::read(conn.stream(), &mut chunk).expect("read the GET");
        assert!(n > 0, "the server closed the GET early");
        received.extend_from_slice(&chunk[..n]);
    }

    let new = pattern(31, 2 * EXTENT + 1);
    put(&client, "streaming", "key", &new).await;
    assert_bytes_eq(&get(&client, "streaming", "key").await, &new, "new version");
    client
        .delete_object()
        .bucket("streaming")
        .key("key")
        .send()
        .await
        .expect("DeleteObject");
    assert_no_such_key(&client, "streaming", "key").await;

    let head_len = received
        .windows(4)
        .position(|window| window == b"\r\n\r\n")
        .expect("a response head in the first bytes")
        + 4;
    let head = String::from_utf8_lossy(&received[..head_len]).into_owned();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains(&format!("content-length: {}\r\n", old.len())),
        "{head}"
    );
    while received.len() < head_len + old.len() {
        let n = std::io::Read::read(conn.stream(), &mut chunk).expect("read the GET");
        assert!(n > 0, "the server closed the GET early");
        received.extend_from_slice(&chunk[..n]);
    }
    assert_bytes_eq(
        &received[head_len..],
        &old,
        "the version the GET started with",
    );
}

// ---------------------------------------------------------------------------
// Cores
// ---------------------------------------------------------------------------

fn many_key_names() -> Vec<String> {
    (0..200)
        .map(|index| format!("dir-{}/object-{index:03}", index % 7))
        .collect()
}

fn many_key_data(index: usize) -> Vec<u8> {
    let size = if index.is_multiple_of(40) {
        INLINE_MAX + index
    } else {
        index * 389 % 3000
    };
    pattern(1000 + index as u64, size)
}

/// Goal: keys spread over the cores are all reachable through one
/// keep-alive connection, which the server moves to the owning core per
/// request: through the SDK's pooled client, through one raw connection
/// request by request, and pipelined (several requests for different
/// cores in one write).
async fn many_keys_through_one_connection(server: &Server, cores: usize) {
    let client = server.client();
    create_bucket(&client, "many").await;
    let keys = many_key_names();
    let mut owned = vec![0; cores];
    for key in &keys {
        owned[shard_for("many", key, cores)] += 1;
    }
    assert!(
        owned.iter().all(|count| *count > 0),
        "every core must own some keys: {owned:?}"
    );

    for (index, key) in keys.iter().enumerate() {
        put(&client, "many", key, &many_key_data(index)).await;
    }
    for (index, key) in keys.iter().enumerate() {
        assert_bytes_eq(&get(&client, "many", key).await, &many_key_data(index), key);
    }

    let mut conn = server.connect();
    for (index, key) in keys.iter().enumerate() {
        conn.send(&server.sign(&server.request("GET", &format!("/many/{key}"))));
        let response = conn.response();
        assert_raw_object(&response, &many_key_data(index), key);
        assert!(!response.closes(), "{key}");
    }

    // Pipelined: GETs and HEADs in one write, answered in order.
    let mut batch = Vec::new();
    let mut expected = Vec::new();
    for (index, key) in keys.iter().enumerate().take(24) {
        let method = if index % 3 == 2 { "HEAD" } else { "GET" };
        batch.extend(server.sign(&server.request(method, &format!("/many/{key}"))));
        expected.push((method, index, key));
    }
    conn.send(&batch);
    for (method, index, key) in expected {
        let data = many_key_data(index);
        if method == "HEAD" {
            let response = conn.head_response();
            assert_eq!(response.status, 200, "HEAD {key}");
            assert_eq!(
                response.header("etag"),
                Some(etag_of(&data).as_str()),
                "HEAD {key}"
            );
        } else {
            assert_raw_object(&conn.response(), &data, &format!("pipelined {key}"));
        }
    }

    // Delete every third key; the rest stay.
    for key in keys.iter().step_by(3) {
        let deleted = server.send_signed(&server.request("DELETE", &format!("/many/{key}")));
        assert_eq!(deleted.status, 204);
    }
    for (index, key) in keys.iter().enumerate() {
        conn.send(&server.sign(&server.request("GET", &format!("/many/{key}"))));
        let response = conn.response();
        if index % 3 == 0 {
            response.assert_s3_error(404, "NoSuchKey");
        } else {
            assert_raw_object(&response, &many_key_data(index), key);
        }
    }
}

#[tokio::test]
async fn many_keys_on_every_core() {
    let server = Server::start();
    many_keys_through_one_connection(&server, common::online_cores()).await;
}

#[tokio::test]
async fn many_keys_on_one_core() {
    let server = ServerOptions::new().cores(1).start();
    many_keys_through_one_connection(&server, 1).await;
}

/// Goal: concurrent PUTs from many connections (so, many cores, and
/// group commits shared between requests) all land, and each key holds
/// exactly what its last acknowledged PUT wrote. Method: 8 clients, each
/// writing its own 24 keys twice plus one key all of them share; the
/// shared key must hold one of the versions written to it, whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_puts_from_many_connections() {
    const WRITERS: usize = 8;
    const KEYS: usize = 24;
    let server = Server::start();
    create_bucket(&server.client(), "concurrent").await;
    let data = |writer: usize, index: usize, round: usize| {
        let size = if index.is_multiple_of(8) {
            INLINE_MAX + 1 + index
        } else {
            index * 97
        };
        pattern((writer * 1000 + index * 10 + round) as u64, size)
    };
    let shared = |writer: usize| pattern(9000 + writer as u64, EXTENT + writer);
    let mut writers = tokio::task::JoinSet::new();
    for writer in 0..WRITERS {
        // One client each: separate connection pools.
        let client = server.client();
        writers.spawn(async move {
            for round in 0..2 {
                for index in 0..KEYS {
                    let key = format!("writer-{writer}/key-{index}");
                    put(&client, "concurrent", &key, &data(writer, index, round)).await;
                }
                put(&client, "concurrent", "shared", &shared(writer)).await;
            }
        });
    }
    while let Some(outcome) = writers.join_next().await {
        outcome.expect("writer task");
    }
    let client = server.client();
    for writer in 0..WRITERS {
        for index in 0..KEYS {
            let key = format!("writer-{writer}/key-{index}");
            let expected = data(writer, index, 1);
            assert_bytes_eq(&get(&client, "concurrent", &key).await, &expected, &key);
        }
    }
    let got = get(&client, "concurrent", "shared").await;
    assert!(
        (0..WRITERS).any(|writer| got == shared(writer)),
        "the shared key holds none of the versions written to it ({} bytes)",
        got.len()
    );
}

// ---------------------------------------------------------------------------
// Restarts
// ---------------------------------------------------------------------------

/// What a bucket should hold: key -> bytes, or `None` for a deleted key.
type Model = BTreeMap<String, Option<Vec<u8>>>;

/// Put through the SDK, from memory or streamed (aws-chunked) in turn.
async fn model_put(client: &Client, model: &mut Model, key: &str, data: Vec<u8>) {
    if model.len().is_multiple_of(2) {
        put(client, "durable", key, &data).await;
    } else {
        put_streamed(client, "durable", key, &data).await;
    }
    model.insert(key.to_owned(), Some(data));
}

async fn model_delete(client: &Client, model: &mut Model, key: &str) {
    client
        .delete_object()
        .bucket("durable")
        .key(key)
        .send()
        .await
        .expect("DeleteObject");
    model.insert(key.to_owned(), None);
}

/// Objects of every size and awkward keys, one with metadata, one
/// overwritten, some deleted, one deleted and written again.
async fn fill_model(server: &Server, model: &mut Model) {
    let client = server.client();
    create_bucket(&client, "durable").await;
    for (index, size) in BOUNDARY_SIZES.into_iter().enumerate() {
        let data = pattern(index as u64 + 300, size);
        model_put(&client, model, &format!("size/{size}"), data).await;
    }
    for key in ["..", "a//b", "with space", "a+b", "line\nbreak", "ключ"] {
        model_put(&client, model, key, key.as_bytes().to_vec()).await;
    }
    client
        .put_object()
        .bucket("durable")
        .key("described")
        .content_type("text/csv")
        .metadata("origin", "restart-test")
        .body(ByteStream::from_static(b"a,b\n1,2\n"))
        .send()
        .await
        .expect("PutObject with metadata");
    model.insert("described".to_owned(), Some(b"a,b\n1,2\n".to_vec()));
    model_put(&client, model, "overwritten", pattern(310, EXTENT + 5)).await;
    model_put(&client, model, "overwritten", pattern(311, 77)).await;
    model_put(&client, model, "deleted-small", pattern(312, 10)).await;
    model_delete(&client, model, "deleted-small").await;
    model_put(&client, model, "deleted-large", pattern(313, 2 * EXTENT)).await;
    model_delete(&client, model, "deleted-large").await;
    model_put(&client, model, "reborn", pattern(314, 10)).await;
    model_delete(&client, model, "reborn").await;
    model_put(&client, model, "reborn", pattern(315, INLINE_MAX + 1)).await;
}

/// More changes after a restart: new objects, an overwrite, deletes.
async fn change_model(server: &Server, model: &mut Model, seed: u64) {
    let client = server.client();
    let new_key = format!("written-later-{seed}");
    model_put(&client, model, &new_key, pattern(seed, 3 * EXTENT + 1)).await;
    model_put(&client, model, "size/1", pattern(seed + 1, 2)).await;
    let live: Vec<String> = model
        .iter()
        .filter(|(key, data)| data.is_some() && key.as_str() != "described")
        .map(|(key, _)| key.clone())
        .collect();
    // Two live keys, chosen by the seed.
    for key in live
        .iter()
        .skip(usize::try_from(seed % 5).expect("small"))
        .step_by(7)
        .take(2)
    {
        model_delete(&client, model, key).await;
    }
}

/// Every key of the model reads back as the model says, `described` keeps
/// its metadata, and the bucket knows it is not empty.
async fn assert_model(server: &Server, model: &Model, when: &str) {
    let client = server.client();
    for (key, data) in model {
        let what = format!("{key:?} {when}");
        if let Some(data) = data {
            let output = client
                .get_object()
                .bucket("durable")
                .key(key)
                .send()
                .await
                .unwrap_or_else(|error| panic!("GetObject {what}: {error:?}"));
            assert_eq!(output.e_tag(), Some(etag_of(data).as_str()), "{what}");
            let body = output.body.collect().await.expect("body").to_vec();
            assert_bytes_eq(&body, data, &what);
        } else {
            assert_no_such_key(&client, "durable", key).await;
        }
    }
    let head = client
        .head_object()
        .bucket("durable")
        .key("described")
        .send()
        .await
        .unwrap_or_else(|error| panic!("HeadObject {when}: {error:?}"));
    assert_eq!(head.content_type(), Some("text/csv"), "{when}");
    assert_eq!(
        head.metadata().and_then(|metadata| metadata.get("origin")),
        Some(&"restart-test".to_owned()),
        "{when}"
    );
    expect_sdk_error(
        client.delete_bucket().bucket("durable").send().await,
        409,
        "BucketNotEmpty",
    );
}

/// SIGKILL the server and start it again on the same directory.
fn kill_and_start(server: &mut Server) {
    let options = server.options().clone();
    server.signal(libc::SIGKILL);
    server
        .wait_exit(Duration::from_secs(10))
        .expect("SIGKILL ends the server");
    server
        .start_again(&options)
        .unwrap_or_else(|exited| panic!("no start after SIGKILL: {exited}"));
}

/// Goal: a clean restart (SIGTERM, start) keeps every object byte for
/// byte with its metadata, and deletions stay deleted. Method: a model of
/// the bucket, checked before and after each of two restarts, with more
/// changes in between.
#[tokio::test]
async fn sigterm_restart_keeps_objects_and_deletions() {
    let mut server = Server::start();
    let mut model = Model::new();
    fill_model(&server, &mut model).await;
    assert_model(&server, &model, "before any restart").await;
    server.restart();
    assert_model(&server, &model, "after a restart").await;
    change_model(&server, &mut model, 400).await;
    server.restart();
    assert_model(&server, &model, "after a second restart").await;
}

/// Goal: SIGKILL loses nothing that was acknowledged: every object and
/// every deletion, right after the writes and right after a recovery.
#[tokio::test]
async fn sigkill_keeps_acknowledged_objects_and_deletions() {
    let mut server = Server::start();
    let mut model = Model::new();
    fill_model(&server, &mut model).await;
    kill_and_start(&mut server);
    assert_model(&server, &model, "after SIGKILL").await;
    change_model(&server, &mut model, 500).await;
    kill_and_start(&mut server);
    assert_model(&server, &model, "after a second SIGKILL").await;
    kill_and_start(&mut server);
    assert_model(&server, &model, "after SIGKILL with no writes since").await;
}

/// Goal: uploads cut off mid-body (after whole extents were appended, and
/// before) stay invisible across a restart, the object they would have
/// replaced keeps its previous version, and the server starts and takes
/// writes again. Method: a restart right after the cut-off uploads, so
/// their appended but never synced `Data` records are the newest thing in
/// the segment.
async fn cut_off_uploads_then_restart(kill: bool) {
    let mut server = Server::start();
    let client = server.client();
    create_bucket(&client, "cut-off").await;
    let cores = common::online_cores();
    let mut kept = Vec::new();
    // One existing key and one new key on every core.
    for core in 0..cores {
        let existing = key_on_core("cut-off", "existing", core, cores);
        let data = pattern(600 + core as u64, EXTENT + 3);
        put(&client, "cut-off", &existing, &data).await;
        kept.push((existing, data));
    }
    for (index, (existing, _)) in kept.iter().enumerate() {
        let path = object_path("cut-off", existing);
        put_closed_mid_body(&server, &path, &pattern(610, 3 * EXTENT), 2 * EXTENT + 100);
        put_closed_mid_body(&server, &path, &pattern(611, 40_000), 20_000);
        let new_key = key_on_core("cut-off", "never", index, cores);
        let path = object_path("cut-off", &new_key);
        put_closed_mid_body(&server, &path, &pattern(612, 2 * EXTENT), EXTENT + 10);
    }
    if kill {
        kill_and_start(&mut server);
    } else {
        server.restart();
    }
    let client = server.client();
    for (index, (existing, data)) in kept.iter().enumerate() {
        assert_bytes_eq(&get(&client, "cut-off", existing).await, data, existing);
        let new_key = key_on_core("cut-off", "never", index, cores);
        assert_no_such_key(&client, "cut-off", &new_key).await;
        let replacement = pattern(620, EXTENT + 9);
        put(&client, "cut-off", existing, &replacement).await;
        assert_bytes_eq(
            &get(&client, "cut-off", existing).await,
            &replacement,
            existing,
        );
    }
}

#[tokio::test]
async fn sigterm_restart_after_uploads_cut_off_mid_body() {
    cut_off_uploads_then_restart(false).await;
}

#[tokio::test]
async fn sigkill_restart_after_uploads_cut_off_mid_body() {
    cut_off_uploads_then_restart(true).await;
}

// ---------------------------------------------------------------------------
// Large objects
// ---------------------------------------------------------------------------

/// Size of the large object; `RINGSTORE_TEST_LARGE_MIB` changes it (the
/// memory bound below stays, so keep it above the bound to mean anything).
fn large_object_bytes() -> u64 {
    let mib: u64 = std::env::var("RINGSTORE_TEST_LARGE_MIB")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(256);
    mib * MIB as u64
}

/// Largest resident set the server may reach while it streams the large
/// object in and out: a bound that does not grow with the object.
const LARGE_OBJECT_RSS_MAX: u64 = 200 * MIB as u64;

/// Largest growth of the resident set over the idle server's while it
/// streams the large object: a few extent buffers, not the object.
const LARGE_OBJECT_RSS_GROWTH_MAX: u64 = 64 * MIB as u64;

/// Samples a process's `VmRSS` until stopped; keeps the largest value.
struct RssSampler {
    peak: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl RssSampler {
    fn start(pid: u32) -> RssSampler {
        let peak = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (peak, stop) = (peak.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    if let Some(rss) = common::proc_status_bytes(pid, "VmRSS:") {
                        peak.fetch_max(rss, Ordering::Relaxed);
                    }
                    std::thread::sleep(Duration::from_millis(5));
                }
            })
        };
        RssSampler {
            peak,
            stop,
            thread: Some(thread),
        }
    }

    fn peak(&self) -> u64 {
        self.peak.load(Ordering::Relaxed)
    }

    fn finish(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            thread.join().expect("RSS sampler");
        }
        self.peak()
    }
}

/// Write `size` pattern bytes to `path`.
fn write_pattern_file(path: &Path, seed: u64, size: u64) {
    let file = std::fs::File::create(path).expect("create the large file");
    let mut writer = std::io::BufWriter::with_capacity(MIB, file);
    let mut buffer = vec![0_u8; MIB];
    let mut offset = 0;
    while offset < size {
        let len = usize::try_from((size - offset).min(MIB as u64)).expect("fits");
        fill_pattern(seed, offset, &mut buffer[..len]);
        writer
            .write_all(&buffer[..len])
            .expect("write the large file");
        offset += len as u64;
    }
    writer.flush().expect("flush the large file");
}

/// The MD5 of a file in hex: `md5sum` (optimized, where the test build's
/// MD5 is not), or the `md-5` crate where `md5sum` is missing.
fn md5_file_hex(path: &Path) -> String {
    if let Ok(output) = std::process::Command::new("md5sum").arg(path).output()
        && output.status.success()
    {
        let text = String::from_utf8_lossy(&output.stdout);
        let hex = text.split_whitespace().next().unwrap_or_default();
        assert_eq!(hex.len(), 32, "md5sum printed {text:?}");
        return hex.to_owned();
    }
    let mut file = std::fs::File::open(path).expect("open the large file");
    let mut md5 = Md5::new();
    std::io::copy(&mut file, &mut md5).expect("read the large file");
    hex::encode(md5.finalize())
}

/// Bytes in MiB, for messages only.
#[allow(clippy::cast_precision_loss)]
fn mib(bytes: u64) -> f64 {
    bytes as f64 / MIB as f64
}

/// Goal: an object far larger than any buffer streams in from a file and
/// back out intact, and the server's memory stays under a bound that does
/// not depend on the object's size. Method: a seeded pattern written to a
/// temporary file (never held in memory), uploaded with the SDK from the
/// file, downloaded as a stream and compared piece by piece with the
/// regenerated pattern, while a thread samples the server's `VmRSS`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_object_streams_with_bounded_memory() {
    const SEED: u64 = 0x5EED_0000_0256;
    let size = large_object_bytes();
    let server = Server::start();
    let client = server.client();
    create_bucket(&client, "large").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("large.bin");

    let started = Instant::now();
    write_pattern_file(&path, SEED, size);
    let md5 = md5_file_hex(&path);
    let written = started.elapsed();
    let idle_rss = server.rss_bytes();
    let sampler = RssSampler::start(server.pid());

    let started = Instant::now();
    let body = ByteStream::from_path(&path)
        .await
        .expect("ByteStream from file");
    let output = client
        .put_object()
        .bucket("large")
        .key("large.bin")
        .body(body)
        .send()
        .await
        .expect("PutObject of the large object");
    let put_time = started.elapsed();
    let put_peak = sampler.peak();
    assert_eq!(output.e_tag(), Some(format!("\"{md5}\"").as_str()));
    drop(dir);

    let started = Instant::now();
    let output = client
        .get_object()
        .bucket("large")
        .key("large.bin")
        .send()
        .await
        .expect("GetObject of the large object");
    assert_eq!(
        output.content_length(),
        Some(i64::try_from(size).expect("fits"))
    );
    let mut stream = output.body;
    let mut offset = 0_u64;
    let mut expected = Vec::new();
    while let Some(piece) = stream.try_next().await.expect("GetObject body") {
        expected.resize(piece.len(), 0);
        fill_pattern(SEED, offset, &mut expected);
        assert!(
            piece[..] == expected[..],
            "the large object differs in bytes {offset}..{}",
            offset + piece.len() as u64
        );
        offset += piece.len() as u64;
    }
    assert_eq!(offset, size, "length of the large object's body");
    let get_time = started.elapsed();

    // A range across an extent boundary near the end.
    let first = size - 2 * EXTENT as u64 - 5;
    let last = first + EXTENT as u64 + 9;
    let output = client
        .get_object()
        .bucket("large")
        .key("large.bin")
        .range(format!("bytes={first}-{last}"))
        .send()
        .await
        .expect("ranged GetObject of the large object");
    let body = output.body.collect().await.expect("body").to_vec();
    let mut expected = vec![0; usize::try_from(last - first + 1).expect("fits")];
    fill_pattern(SEED, first, &mut expected);
    assert_bytes_eq(&body, &expected, "range of the large object");

    let peak = sampler.finish();
    let hwm = common::proc_status_bytes(server.pid(), "VmHWM:").unwrap_or(0);
    eprintln!(
        "large object: {:.0} MiB; file written in {written:.1?}, PUT {put_time:.1?}, \
         GET {get_time:.1?}; server VmRSS idle {:.1} MiB, peak during PUT {:.1} MiB, \
         peak overall {:.1} MiB (VmHWM {:.1} MiB), bound {:.0} MiB",
        mib(size),
        mib(idle_rss),
        mib(put_peak),
        mib(peak),
        mib(hwm),
        mib(LARGE_OBJECT_RSS_MAX),
    );
    assert!(
        peak < LARGE_OBJECT_RSS_MAX,
        "the server's RSS reached {:.1} MiB streaming a {:.0} MiB object (bound {:.0} MiB)",
        mib(peak),
        mib(size),
        mib(LARGE_OBJECT_RSS_MAX)
    );
    assert!(
        peak.saturating_sub(idle_rss) < LARGE_OBJECT_RSS_GROWTH_MAX,
        "the server's RSS grew by {:.1} MiB streaming a {:.0} MiB object (bound {:.0} MiB)",
        mib(peak.saturating_sub(idle_rss)),
        mib(size),
        mib(LARGE_OBJECT_RSS_GROWTH_MAX)
    );
}
