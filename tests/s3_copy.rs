//! `CopyObject` and `UploadPartCopy` against the real binary with the SDK:
//! copies within one core (which name the source's bytes) and across
//! cores (which stream them), metadata directives, copy-source conditions,
//! encoded sources, copying onto itself, and byte ranges into parts.

#![allow(
    clippy::cast_possible_truncation,
    clippy::cast_possible_wrap,
    clippy::cast_precision_loss,
    reason = "sizes and part numbers in these tests are small"
)]
#![allow(
    clippy::too_many_lines,
    reason = "each test is one scenario, read top to bottom"
)]

mod common;

use std::time::Duration;

use aws_sdk_s3::Client;
use aws_sdk_s3::primitives::{ByteStream, DateTime};
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart, MetadataDirective};
use common::{Server, ServerOptions, expect_sdk_error, pattern};
use ringstore::node::sharding::shard_for;

const MIB: usize = 1024 * 1024;

/// A key with `prefix` that lands on `core`.
fn key_on(bucket: &str, prefix: &str, core: usize) -> String {
    let cores = common::online_cores();
    (0..10_000)
        .map(|n| format!("{prefix}-{n}"))
        .find(|key| shard_for(bucket, key, cores) == core % cores)
        .expect("a key on every core")
}

/// The copy-source header value for `bucket`/`key`: the key percent-encoded
/// as the SDKs expect callers to do.
fn source(bucket: &str, key: &str) -> String {
    let encoded: String = key
        .bytes()
        .map(|byte| match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                (byte as char).to_string()
            }
            _ => format!("%{byte:02X}"),
        })
        .collect();
    format!("{bucket}/{encoded}")
}

async fn put(client: &Client, bucket: &str, key: &str, data: &[u8]) -> String {
    client
        .put_object()
        .bucket(bucket)
        .key(key)
        .content_type("text/x-source")
        .metadata("origin", "source")
        .body(ByteStream::from(data.to_vec()))
        .send()
        .await
        .unwrap_or_else(|error| panic!("PutObject {key}: {error:?}"))
        .e_tag()
        .unwrap()
        .to_owned()
}

async fn get(client: &Client, bucket: &str, key: &str) -> Vec<u8> {
    client
        .get_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .unwrap_or_else(|error| panic!("GetObject {key}: {error:?}"))
        .body
        .collect()
        .await
        .unwrap()
        .to_vec()
}

fn segment_bytes(server: &Server) -> f64 {
    let text = server.admin_get("/metrics").text();
    (0..common::online_cores())
        .map(|core| {
            common::metric(
                &text,
                &format!("ringstore_segment_bytes{{core=\"{core}\"}}"),
            )
            .unwrap_or(0.0)
        })
        .sum()
}

#[test]
fn copies_within_and_across_cores_keep_bytes_etag_and_metadata() {
    let server = Server::start();
    let client = server.client();
    common::block_on(async {
        client.create_bucket().bucket("src").send().await.unwrap();
        client.create_bucket().bucket("dst").send().await.unwrap();
        for (size, seed) in [(0, 1), (100, 2), (64 * 1024 + 1, 3), (3 * MIB + 5, 4)] {
            let data = pattern(seed, size);
            let from = key_on("src", &format!("from-{size}"), 0);
            let etag = put(&client, "src", &from, &data).await;
            for core in 0..2 {
                let to = key_on("dst", &format!("to-{size}"), core);
                let output = client
                    .copy_object()
                    .bucket("dst")
                    .key(&to)
                    .copy_source(source("src", &from))
                    .send()
                    .await
                    .unwrap_or_else(|error| panic!("CopyObject {size}: {error:?}"));
                let result = output.copy_object_result().unwrap();
                assert_eq!(result.e_tag(), Some(etag.as_str()));
                assert!(result.last_modified().is_some());
                let object = client
                    .get_object()
                    .bucket("dst")
                    .key(&to)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(object.e_tag(), Some(etag.as_str()));
                assert_eq!(object.content_type(), Some("text/x-source"));
                assert_eq!(
                    object
                        .metadata()
                        .and_then(|m| m.get("origin"))
                        .map(String::as_str),
                    Some("source")
                );
                let body = object.body.collect().await.unwrap().to_vec();
                assert!(body == data, "copy of {size} bytes to core {core}");
            }
        }
        // REPLACE takes the request's metadata.
        let from = key_on("src", "replace", 1);
        put(&client, "src", &from, b"replace me").await;
        client
            .copy_object()
            .bucket("dst")
            .key("replaced")
            .copy_source(source("src", &from))
            .metadata_directive(MetadataDirective::Replace)
            .content_type("text/x-new")
            .metadata("origin", "copy")
            .send()
            .await
            .unwrap();
        let object = client
            .head_object()
            .bucket("dst")
            .key("replaced")
            .send()
            .await
            .unwrap();
        assert_eq!(object.content_type(), Some("text/x-new"));
        assert_eq!(
            object
                .metadata()
                .and_then(|m| m.get("origin"))
                .map(String::as_str),
            Some("copy")
        );
        let response = server.send_signed(
            &server
                .request("PUT", "/dst/bad-directive")
                .header("x-amz-copy-source", &format!("/src/{from}"))
                .header("x-amz-metadata-directive", "MOVE"),
        );
        response.assert_s3_error(400, "InvalidArgument");
    });
}

#[test]
fn copying_onto_itself_needs_replace_and_sources_are_decoded_once() {
    let server = Server::start();
    let client = server.client();
    common::block_on(async {
        client.create_bucket().bucket("self").send().await.unwrap();
        let key = "dir/a key+plus/ü?x";
        put(&client, "self", key, b"itself").await;
        expect_sdk_error(
            client
                .copy_object()
                .bucket("self")
                .key(key)
                .copy_source(source("self", key))
                .send()
                .await,
            400,
            "InvalidRequest",
        );
        client
            .copy_object()
            .bucket("self")
            .key(key)
            .copy_source(source("self", key))
            .metadata_directive(MetadataDirective::Replace)
            .content_type("text/x-changed")
            .send()
            .await
            .unwrap();
        let head = client
            .head_object()
            .bucket("self")
            .key(key)
            .send()
            .await
            .unwrap();
        assert_eq!(head.content_type(), Some("text/x-changed"));
        assert_eq!(get(&client, "self", key).await, b"itself");
        // The leading slash is optional, and a literal "%2B" in a key must
        // be sent encoded itself.
        client
            .copy_object()
            .bucket("self")
            .key("copy")
            .copy_source(format!("/{}", source("self", key)))
            .send()
            .await
            .unwrap();
        assert_eq!(get(&client, "self", "copy").await, b"itself");
        put(&client, "self", "lit%2Bral", b"literal").await;
        client
            .copy_object()
            .bucket("self")
            .key("copy2")
            .copy_source(source("self", "lit%2Bral"))
            .send()
            .await
            .unwrap();
        assert_eq!(get(&client, "self", "copy2").await, b"literal");
        // Missing sources.
        expect_sdk_error(
            client
                .copy_object()
                .bucket("self")
                .key("x")
                .copy_source("self/missing")
                .send()
                .await,
            404,
            "NoSuchKey",
        );
        expect_sdk_error(
            client
                .copy_object()
                .bucket("self")
                .key("x")
                .copy_source("no-such-bucket/k")
                .send()
                .await,
            404,
            "NoSuchBucket",
        );
    });
}

#[test]
fn copy_source_conditions_follow_aws() {
    let server = Server::start();
    let client = server.client();
    common::block_on(async {
        client.create_bucket().bucket("cond").send().await.unwrap();
        let etag = put(&client, "cond", "src", b"conditional").await;
        let past = DateTime::from_secs(1_000_000_000);
        let future = DateTime::from_secs(4_000_000_000);
        let copy = || {
            client
                .copy_object()
                .bucket("cond")
                .key("dst")
                .copy_source("cond/src")
        };
        copy().copy_source_if_match(&etag).send().await.unwrap();
        expect_sdk_error(
            copy().copy_source_if_match("\"0000\"").send().await,
            412,
            "PreconditionFailed",
        );
        expect_sdk_error(
            copy().copy_source_if_none_match(&etag).send().await,
            412,
            "PreconditionFailed",
        );
        copy()
            .copy_source_if_none_match("\"0000\"")
            .send()
            .await
            .unwrap();
        expect_sdk_error(
            copy().copy_source_if_unmodified_since(past).send().await,
            412,
            "PreconditionFailed",
        );
        copy()
            .copy_source_if_unmodified_since(future)
            .send()
            .await
            .unwrap();
        copy()
            .copy_source_if_modified_since(past)
            .send()
            .await
            .unwrap();
        // If-Match true wins over If-Unmodified-Since false.
        copy()
            .copy_source_if_match(&etag)
            .copy_source_if_unmodified_since(past)
            .send()
            .await
            .unwrap();
        // If-None-Match false with If-Modified-Since true fails.
        expect_sdk_error(
            copy()
                .copy_source_if_none_match(&etag)
                .copy_source_if_modified_since(past)
                .send()
                .await,
            412,
            "PreconditionFailed",
        );
    });
}

/// A copy within one core names the source's data: the segments do not
/// grow by the object, the copy outlives the source, and compaction and a
/// restart keep both right.
#[test]
fn a_copy_within_one_core_shares_the_data_through_compaction_and_restarts() {
    let mut server = ServerOptions::new()
        .cores(common::online_cores().min(2))
        .config("segment_bytes = 8388608")
        .config("compaction_interval_ms = 50")
        .start();
    let client = server.client();
    let data = pattern(7, 3 * MIB + 3);
    let from = key_on("share", "from", 0);
    let to = key_on("share", "to", 0);
    let garbage = key_on("share", "garbage", 0);
    let first_segment = server.data_dir().join("shard-00").join("seg-00000001");
    common::block_on(async {
        client.create_bucket().bucket("share").send().await.unwrap();
        // The first segment gets the source and more garbage than data, so
        // that compaction empties it and moves the shared extents.
        client
            .put_object()
            .bucket("share")
            .key(&garbage)
            .body(ByteStream::from(pattern(8, 4 * MIB)))
            .send()
            .await
            .unwrap();
        put(&client, "share", &from, &data).await;
        let before = segment_bytes(&server);
        client
            .copy_object()
            .bucket("share")
            .key(&to)
            .copy_source(source("share", &from))
            .send()
            .await
            .unwrap();
        let grown = segment_bytes(&server) - before;
        assert!(grown < MIB as f64, "a local copy wrote {grown} bytes");
        client
            .delete_object()
            .bucket("share")
            .key(&from)
            .send()
            .await
            .unwrap();
        client
            .delete_object()
            .bucket("share")
            .key(&garbage)
            .send()
            .await
            .unwrap();
        assert!(get(&client, "share", &to).await == data);
        // Seal the first segment and a few more.
        for round in 0..3 {
            let key = key_on("share", &format!("churn-{round}"), 0);
            client
                .put_object()
                .bucket("share")
                .key(&key)
                .body(ByteStream::from(pattern(round, 9 * MIB)))
                .send()
                .await
                .unwrap();
            client
                .delete_object()
                .bucket("share")
                .key(&key)
                .send()
                .await
                .unwrap();
        }
    });
    assert!(
        common::eventually(Duration::from_secs(30), || (!first_segment.exists())
            .then_some(()))
        .is_some(),
        "compaction did not empty the segment the shared data was in"
    );
    let text = || server.admin_get("/metrics").text();
    let removed = common::eventually(Duration::from_secs(30), || {
        common::metric(
            &text(),
            "ringstore_compaction_segments_removed_total{core=\"0\"}",
        )
        .filter(|removed| *removed >= 1.0)
    });
    assert!(removed.is_some(), "compaction removed no segment");
    common::block_on(async {
        assert!(get(&client, "share", &to).await == data);
    });
    server.restart();
    let client = server.client();
    common::block_on(async {
        assert!(get(&client, "share", &to).await == data);
        expect_sdk_error(
            client.get_object().bucket("share").key(&from).send().await,
            404,
            "NoSuchKey",
        );
    });
}

#[test]
fn upload_part_copy_copies_ranges_from_any_core() {
    let server = Server::start();
    let client = server.client();
    common::block_on(async {
        client.create_bucket().bucket("parts").send().await.unwrap();
        let data = pattern(9, 7 * MIB + 11);
        let from = key_on("parts", "src", 1);
        let etag = put(&client, "parts", &from, &data).await;
        let to = key_on("parts", "dst", 0);
        let id = client
            .create_multipart_upload()
            .bucket("parts")
            .key(&to)
            .send()
            .await
            .unwrap()
            .upload_id()
            .unwrap()
            .to_owned();
        let ranges = [(0, 5 * MIB - 1), (5 * MIB, data.len() - 1)];
        let mut parts = Vec::new();
        for (index, (first, last)) in ranges.iter().enumerate() {
            let output = client
                .upload_part_copy()
                .bucket("parts")
                .key(&to)
                .upload_id(&id)
                .part_number(index as i32 + 1)
                .copy_source(source("parts", &from))
                .copy_source_range(format!("bytes={first}-{last}"))
                .copy_source_if_match(&etag)
                .send()
                .await
                .unwrap_or_else(|error| panic!("UploadPartCopy: {error:?}"));
            let part_etag = output
                .copy_part_result()
                .unwrap()
                .e_tag()
                .unwrap()
                .to_owned();
            let expected = format!("\"{}\"", hex::encode(md5_of(&data[*first..=*last])));
            assert_eq!(part_etag, expected);
            parts.push(
                CompletedPart::builder()
                    .part_number(index as i32 + 1)
                    .e_tag(part_etag)
                    .build(),
            );
        }
        // A whole-object part copy, then the ranges win as parts 1 and 2.
        client
            .upload_part_copy()
            .bucket("parts")
            .key(&to)
            .upload_id(&id)
            .part_number(3)
            .copy_source(source("parts", &from))
            .send()
            .await
            .unwrap();
        for (range, code) in [
            ("bytes=0-99999999", "InvalidArgument"),
            ("bytes=5-", "InvalidArgument"),
            ("items=0-1", "InvalidArgument"),
        ] {
            expect_sdk_error(
                client
                    .upload_part_copy()
                    .bucket("parts")
                    .key(&to)
                    .upload_id(&id)
                    .part_number(4)
                    .copy_source(source("parts", &from))
                    .copy_source_range(range)
                    .send()
                    .await,
                400,
                code,
            );
        }
        expect_sdk_error(
            client
                .upload_part_copy()
                .bucket("parts")
                .key(&to)
                .upload_id(&id)
                .part_number(4)
                .copy_source(source("parts", &from))
                .copy_source_if_none_match(&etag)
                .send()
                .await,
            412,
            "PreconditionFailed",
        );
        client
            .complete_multipart_upload()
            .bucket("parts")
            .key(&to)
            .upload_id(&id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build(),
            )
            .send()
            .await
            .unwrap();
        assert!(get(&client, "parts", &to).await == data);
    });
}

fn md5_of(data: &[u8]) -> [u8; 16] {
    use md5::Digest as _;
    md5::Md5::digest(data).into()
}

/// A copy of a multipart object is one part whose `ETag` is the MD5 of its
/// bytes, as on AWS, on the same core and across cores.
#[test]
fn a_copy_of_a_multipart_object_is_a_single_part_object() {
    let server = Server::start();
    let client = server.client();
    common::block_on(async {
        client
            .create_bucket()
            .bucket("mpcopy")
            .send()
            .await
            .unwrap();
        let from = key_on("mpcopy", "from", 0);
        let bodies = [pattern(20, 5 * MIB), pattern(21, 77)];
        let id = client
            .create_multipart_upload()
            .bucket("mpcopy")
            .key(&from)
            .send()
            .await
            .unwrap();
        let id = id.upload_id().unwrap().to_owned();
        let mut parts = Vec::new();
        for (index, body) in bodies.iter().enumerate() {
            let output = client
                .upload_part()
                .bucket("mpcopy")
                .key(&from)
                .upload_id(&id)
                .part_number(index as i32 + 1)
                .body(ByteStream::from(body.clone()))
                .send()
                .await
                .unwrap();
            parts.push(
                CompletedPart::builder()
                    .part_number(index as i32 + 1)
                    .e_tag(output.e_tag().unwrap())
                    .build(),
            );
        }
        client
            .complete_multipart_upload()
            .bucket("mpcopy")
            .key(&from)
            .upload_id(&id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build(),
            )
            .send()
            .await
            .unwrap();
        let whole = bodies.concat();
        let plain = format!("\"{}\"", hex::encode(md5_of(&whole)));
        for core in 0..2 {
            let to = key_on("mpcopy", "to", core);
            let output = client
                .copy_object()
                .bucket("mpcopy")
                .key(&to)
                .copy_source(source("mpcopy", &from))
                .send()
                .await
                .unwrap();
            assert_eq!(
                output.copy_object_result().unwrap().e_tag(),
                Some(plain.as_str())
            );
            let head = client
                .head_object()
                .bucket("mpcopy")
                .key(&to)
                .part_number(1)
                .send()
                .await
                .unwrap();
            assert_eq!(head.parts_count(), None);
            assert_eq!(head.content_length(), Some(whole.len() as i64));
            assert!(get(&client, "mpcopy", &to).await == whole);
        }
    });
}

/// Goal: `CopyObject` with `REPLACE` keeps the new Content-Encoding
/// exactly as sent (`deflate, gzip`), and `CopyObject` takes
/// `x-amz-acl: bucket-owner-full-control` as it takes `private`, with
/// either directive; another canned ACL is refused naming the header and
/// the destination is left as it was. Regression (issue 12) for both.
#[test]
fn copy_object_keeps_content_encoding_as_sent_and_takes_bucket_owner_full_control() {
    use aws_sdk_s3::types::ObjectCannedAcl;
    let server = Server::start();
    let client = server.client();
    common::block_on(async {
        client
            .create_bucket()
            .bucket("codings")
            .send()
            .await
            .unwrap();
        put(&client, "codings", "source", b"source bytes").await;
        client
            .copy_object()
            .bucket("codings")
            .key("replaced")
            .copy_source(source("codings", "source"))
            .metadata_directive(MetadataDirective::Replace)
            .content_encoding("deflate, gzip")
            .acl(ObjectCannedAcl::BucketOwnerFullControl)
            .send()
            .await
            .expect("CopyObject REPLACE with bucket-owner-full-control");
        client
            .copy_object()
            .bucket("codings")
            .key("copied")
            .copy_source(source("codings", "source"))
            .acl(ObjectCannedAcl::BucketOwnerFullControl)
            .send()
            .await
            .expect("CopyObject COPY with bucket-owner-full-control");
        assert_eq!(get(&client, "codings", "copied").await, b"source bytes");
    });
    for method in ["GET", "HEAD"] {
        let raw = server.send_signed(&server.request(method, "/codings/replaced"));
        assert_eq!(raw.status, 200, "{method}");
        assert_eq!(
            raw.header("content-encoding"),
            Some("deflate, gzip"),
            "{method}"
        );
    }
    let response = server.send_signed(
        &server
            .request("PUT", "/codings/copied")
            .header("x-amz-copy-source", "/codings/replaced")
            .header("x-amz-acl", "public-read"),
    );
    common::assert_canned_acl_refused(&response, "public-read");
    let raw = server.send_signed(&server.request("HEAD", "/codings/copied"));
    assert_eq!(
        raw.header("content-encoding"),
        None,
        "the copy was not made"
    );
}
