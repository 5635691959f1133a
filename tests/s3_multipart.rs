//! Multipart uploads against the real binary with the official SDK:
//! `CreateMultipartUpload`, `UploadPart`, `CompleteMultipartUpload`,
//! `AbortMultipartUpload`, `ListParts`, `ListMultipartUploads`, their
//! errors, retries, restarts, and an object of several GiB streamed with
//! the server's memory flat.

#![allow(
    clippy::cast_possible_truncation,
    clippy::cast_possible_wrap,
    clippy::cast_sign_loss,
    clippy::cast_precision_loss,
    reason = "part numbers, sizes and counts in these tests are small"
)]
#![allow(
    clippy::too_many_lines,
    reason = "each test is one scenario, read top to bottom"
)]

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use aws_sdk_s3::Client;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart, EncodingType};
use common::{Server, ServerOptions, expect_sdk_error, pattern};
use md5::{Digest as _, Md5};
use ringstore::node::sharding::shard_for;

const MIB: usize = 1024 * 1024;
/// Smallest part but the last (AWS's 5 MiB).
const PART_MIN: usize = 5 * MIB;

const _: () = assert!(PART_MIN as u64 == ringstore::limits::PART_BYTES_MIN);

fn md5(data: &[u8]) -> [u8; 16] {
    Md5::digest(data).into()
}

/// The `ETag` AWS gives a multipart object made of parts with these bodies.
fn multipart_etag(parts: &[&[u8]]) -> String {
    let mut all = Md5::new();
    for part in parts {
        all.update(md5(part));
    }
    format!("\"{}-{}\"", hex::encode(all.finalize()), parts.len())
}

async fn create_bucket(client: &Client, bucket: &str) {
    client
        .create_bucket()
        .bucket(bucket)
        .send()
        .await
        .unwrap_or_else(|error| panic!("CreateBucket {bucket}: {error:?}"));
}

async fn create(client: &Client, bucket: &str, key: &str) -> String {
    client
        .create_multipart_upload()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .unwrap_or_else(|error| panic!("CreateMultipartUpload {key}: {error:?}"))
        .upload_id()
        .expect("an upload id")
        .to_owned()
}

async fn upload(
    client: &Client,
    bucket: &str,
    key: &str,
    id: &str,
    number: i32,
    data: &[u8],
) -> String {
    client
        .upload_part()
        .bucket(bucket)
        .key(key)
        .upload_id(id)
        .part_number(number)
        .body(ByteStream::from(data.to_vec()))
        .send()
        .await
        .unwrap_or_else(|error| panic!("UploadPart {key} #{number}: {error:?}"))
        .e_tag()
        .expect("UploadPart returns an ETag")
        .to_owned()
}

fn completed(parts: &[(i32, &str)]) -> CompletedMultipartUpload {
    CompletedMultipartUpload::builder()
        .set_parts(Some(
            parts
                .iter()
                .map(|(number, etag)| {
                    CompletedPart::builder()
                        .part_number(*number)
                        .e_tag(*etag)
                        .build()
                })
                .collect(),
        ))
        .build()
}

async fn complete(
    client: &Client,
    bucket: &str,
    key: &str,
    id: &str,
    parts: &[(i32, &str)],
) -> Result<
    aws_sdk_s3::operation::complete_multipart_upload::CompleteMultipartUploadOutput,
    aws_sdk_s3::error::SdkError<
        aws_sdk_s3::operation::complete_multipart_upload::CompleteMultipartUploadError,
        aws_sdk_s3::config::http::HttpResponse,
    >,
> {
    client
        .complete_multipart_upload()
        .bucket(bucket)
        .key(key)
        .upload_id(id)
        .multipart_upload(completed(parts))
        .send()
        .await
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
        .expect("body")
        .to_vec()
}

#[test]
fn parts_become_one_object_with_the_aws_etag_and_the_create_metadata() {
    let server = Server::start();
    let client = server.client();
    common::block_on(async {
        create_bucket(&client, "mpu").await;
        let id = client
            .create_multipart_upload()
            .bucket("mpu")
            .key("dir/object.bin")
            .content_type("application/x-test")
            .cache_control("max-age=60")
            .content_disposition("attachment")
            .content_language("fr")
            .metadata("color", "blue")
            .send()
            .await
            .unwrap()
            .upload_id()
            .unwrap()
            .to_owned();
        assert_eq!(id.len(), 32);
        let bodies = [
            pattern(1, PART_MIN),
            pattern(2, PART_MIN + 3),
            pattern(3, 1),
        ];
        let mut etags = Vec::new();
        for (index, body) in bodies.iter().enumerate() {
            let etag = upload(
                &client,
                "mpu",
                "dir/object.bin",
                &id,
                index as i32 + 1,
                body,
            )
            .await;
            assert_eq!(etag, format!("\"{}\"", hex::encode(md5(body))));
            etags.push(etag);
        }
        let parts: Vec<(i32, &str)> = etags
            .iter()
            .enumerate()
            .map(|(index, etag)| (index as i32 + 1, etag.as_str()))
            .collect();
        let output = complete(&client, "mpu", "dir/object.bin", &id, &parts)
            .await
            .unwrap();
        let slices: Vec<&[u8]> = bodies.iter().map(Vec::as_slice).collect();
        let etag = multipart_etag(&slices);
        assert_eq!(output.e_tag(), Some(etag.as_str()));
        assert_eq!(output.bucket(), Some("mpu"));
        assert_eq!(output.key(), Some("dir/object.bin"));
        assert!(
            output
                .location()
                .is_some_and(|l| l.ends_with("/mpu/dir/object.bin"))
        );

        let object = client
            .get_object()
            .bucket("mpu")
            .key("dir/object.bin")
            .send()
            .await
            .unwrap();
        assert_eq!(object.e_tag(), Some(etag.as_str()));
        assert_eq!(object.content_type(), Some("application/x-test"));
        assert_eq!(object.cache_control(), Some("max-age=60"));
        assert_eq!(object.content_disposition(), Some("attachment"));
        assert_eq!(object.content_language(), Some("fr"));
        assert_eq!(
            object
                .metadata()
                .and_then(|m| m.get("color"))
                .map(String::as_str),
            Some("blue")
        );
        let body = object.body.collect().await.unwrap().to_vec();
        assert!(body == bodies.concat(), "the object is the parts in order");
        // A range across the first part boundary.
        let ranged = client
            .get_object()
            .bucket("mpu")
            .key("dir/object.bin")
            .range(format!("bytes={}-{}", PART_MIN - 2, PART_MIN + 1))
            .send()
            .await
            .unwrap();
        let ranged = ranged.body.collect().await.unwrap().to_vec();
        assert_eq!(ranged, bodies.concat()[PART_MIN - 2..PART_MIN + 2]);
        // The upload is gone.
        expect_sdk_error(
            client
                .list_parts()
                .bucket("mpu")
                .key("dir/object.bin")
                .upload_id(&id)
                .send()
                .await,
            404,
            "NoSuchUpload",
        );
        // Listing shows the object with its multipart ETag and size.
        let listed = client.list_objects_v2().bucket("mpu").send().await.unwrap();
        assert_eq!(listed.contents()[0].e_tag(), Some(etag.as_str()));
        assert_eq!(listed.contents()[0].size(), Some((2 * PART_MIN + 4) as i64));
    });
}

#[test]
fn only_the_parts_named_make_the_object_and_a_part_can_be_replaced() {
    let server = Server::start();
    let client = server.client();
    common::block_on(async {
        create_bucket(&client, "pick").await;
        let id = create(&client, "pick", "k").await;
        let first = pattern(10, PART_MIN);
        let replaced = pattern(11, PART_MIN);
        let skipped = pattern(12, PART_MIN);
        let last = pattern(13, 100);
        upload(&client, "pick", "k", &id, 1, &first).await;
        let e1 = upload(&client, "pick", "k", &id, 1, &replaced).await;
        let e2 = upload(&client, "pick", "k", &id, 2, &skipped).await;
        let e7 = upload(&client, "pick", "k", &id, 7, &last).await;
        let _ = e2;
        // Part numbers need not be contiguous; part 2 is left out.
        let output = complete(&client, "pick", "k", &id, &[(1, &e1), (7, &e7)])
            .await
            .unwrap();
        assert_eq!(
            output.e_tag(),
            Some(multipart_etag(&[&replaced, &last]).as_str())
        );
        assert!(get(&client, "pick", "k").await == [replaced, last].concat());
    });
}

#[test]
fn completion_errors_name_the_problem_and_keep_the_upload() {
    let server = Server::start();
    let client = server.client();
    common::block_on(async {
        create_bucket(&client, "errs").await;
        let id = create(&client, "errs", "k").await;
        let small = pattern(20, MIB);
        let big = pattern(21, PART_MIN);
        let e1 = upload(&client, "errs", "k", &id, 1, &small).await;
        let e2 = upload(&client, "errs", "k", &id, 2, &big).await;
        let big3 = pattern(22, PART_MIN);
        let e3 = upload(&client, "errs", "k", &id, 3, &big3).await;
        // A part below 5 MiB that is not the last.
        expect_sdk_error(
            complete(&client, "errs", "k", &id, &[(1, &e1), (2, &e2)]).await,
            400,
            "EntityTooSmall",
        );
        // Out of order, and a part named twice.
        expect_sdk_error(
            complete(&client, "errs", "k", &id, &[(3, &e3), (2, &e2)]).await,
            400,
            "InvalidPartOrder",
        );
        expect_sdk_error(
            complete(&client, "errs", "k", &id, &[(2, &e2), (2, &e2)]).await,
            400,
            "InvalidPartOrder",
        );
        // A part never uploaded, and a wrong ETag.
        expect_sdk_error(
            complete(&client, "errs", "k", &id, &[(2, &e2), (4, &e3)]).await,
            400,
            "InvalidPart",
        );
        expect_sdk_error(
            complete(&client, "errs", "k", &id, &[(2, &e3), (3, &e2)]).await,
            400,
            "InvalidPart",
        );
        // The ETag without quotes is the same ETag.
        let unquoted = e3.trim_matches('"').to_owned();
        // The upload survived every failed completion.
        let output = complete(&client, "errs", "k", &id, &[(2, &e2), (3, &unquoted)])
            .await
            .unwrap();
        assert_eq!(
            output.e_tag(),
            Some(multipart_etag(&[&big, &big3]).as_str())
        );
        // A retried completion gets the same answer.
        let again = complete(&client, "errs", "k", &id, &[(2, &e2), (3, &e3)])
            .await
            .unwrap();
        assert_eq!(again.e_tag(), output.e_tag());
        // A completion with no parts is malformed.
        let id2 = create(&client, "errs", "k2").await;
        let response = server.send_signed(
            &server
                .request("POST", &format!("/errs/k2?uploadId={id2}"))
                .body(b"<CompleteMultipartUpload></CompleteMultipartUpload>"),
        );
        response.assert_s3_error(400, "MalformedXML");
        let response = server.send_signed(
            &server
                .request("POST", &format!("/errs/k2?uploadId={id2}"))
                .body(b"<CompleteMultipartUpload><Part>"),
        );
        response.assert_s3_error(400, "MalformedXML");
    });
}

#[test]
fn unknown_uploads_are_no_such_upload_everywhere() {
    let server = Server::start();
    let client = server.client();
    common::block_on(async {
        create_bucket(&client, "none").await;
        let bogus = "0000000000000000ffffffffffffffff";
        expect_sdk_error(
            client
                .upload_part()
                .bucket("none")
                .key("k")
                .upload_id(bogus)
                .part_number(1)
                .body(ByteStream::from_static(b"x"))
                .send()
                .await,
            404,
            "NoSuchUpload",
        );
        expect_sdk_error(
            complete(&client, "none", "k", bogus, &[(1, "\"x\"")]).await,
            404,
            "NoSuchUpload",
        );
        expect_sdk_error(
            client
                .abort_multipart_upload()
                .bucket("none")
                .key("k")
                .upload_id(bogus)
                .send()
                .await,
            404,
            "NoSuchUpload",
        );
        expect_sdk_error(
            client
                .list_parts()
                .bucket("none")
                .key("k")
                .upload_id(bogus)
                .send()
                .await,
            404,
            "NoSuchUpload",
        );
        // An upload id is tied to its key.
        let id = create(&client, "none", "a").await;
        expect_sdk_error(
            client
                .list_parts()
                .bucket("none")
                .key("b")
                .upload_id(&id)
                .send()
                .await,
            404,
            "NoSuchUpload",
        );
        // Part numbers outside 1..=10,000.
        for number in [0, 10_001] {
            let response = server.send_signed(
                &server
                    .request("PUT", &format!("/none/a?partNumber={number}&uploadId={id}"))
                    .body(b"x"),
            );
            response.assert_s3_error(400, "InvalidArgument");
        }
        let response = server.send_signed(
            &server
                .request("PUT", &format!("/none/a?partNumber=10000&uploadId={id}"))
                .body(b"x"),
        );
        assert_eq!(response.status, 200, "{}", response.text());
        expect_sdk_error(
            client
                .create_multipart_upload()
                .bucket("missing-bucket")
                .key("k")
                .send()
                .await,
            404,
            "NoSuchBucket",
        );
    });
}

#[test]
fn abort_ends_the_upload_and_its_space_is_reclaimed() {
    let server = ServerOptions::new()
        .config("segment_bytes = 8388608")
        .config("compaction_interval_ms = 50")
        .start();
    let client = server.client();
    let segment_bytes = || {
        let text = server.admin_get("/metrics").text();
        (0..common::online_cores())
            .map(|core| {
                common::metric(
                    &text,
                    &format!("ringstore_segment_bytes{{core=\"{core}\"}}"),
                )
                .unwrap_or(0.0)
            })
            .sum::<f64>()
    };
    common::block_on(async {
        create_bucket(&client, "abort").await;
        let id = create(&client, "abort", "k").await;
        for number in 1..=6 {
            upload(
                &client,
                "abort",
                "k",
                &id,
                number,
                &pattern(number as u64, PART_MIN),
            )
            .await;
        }
        let before = segment_bytes();
        assert!(before >= 30.0 * MIB as f64, "{before}");
        client
            .abort_multipart_upload()
            .bucket("abort")
            .key("k")
            .upload_id(&id)
            .send()
            .await
            .unwrap();
        expect_sdk_error(
            client
                .list_parts()
                .bucket("abort")
                .key("k")
                .upload_id(&id)
                .send()
                .await,
            404,
            "NoSuchUpload",
        );
        expect_sdk_error(
            client
                .abort_multipart_upload()
                .bucket("abort")
                .key("k")
                .upload_id(&id)
                .send()
                .await,
            404,
            "NoSuchUpload",
        );
        let uploads = client
            .list_multipart_uploads()
            .bucket("abort")
            .send()
            .await
            .unwrap();
        assert!(uploads.uploads().is_empty());
        // Seal the segments the parts are in, so that compaction empties
        // them.
        for index in 0..3 {
            let key = format!("filler-{index}");
            client
                .put_object()
                .bucket("abort")
                .key(&key)
                .body(ByteStream::from(pattern(99, 9 * MIB)))
                .send()
                .await
                .unwrap();
            client
                .delete_object()
                .bucket("abort")
                .key(&key)
                .send()
                .await
                .unwrap();
        }
    });
    let reclaimed = common::eventually(Duration::from_secs(30), || {
        let now = segment_bytes();
        (now < 24.0 * MIB as f64).then_some(now)
    });
    assert!(
        reclaimed.is_some(),
        "the aborted parts' segments were not reclaimed: {} bytes",
        segment_bytes()
    );
}

#[test]
fn list_parts_pages_with_markers() {
    let server = Server::start();
    let client = server.client();
    common::block_on(async {
        create_bucket(&client, "parts").await;
        let id = create(&client, "parts", "k").await;
        let mut etags = Vec::new();
        for number in 1..=7 {
            etags.push(
                upload(
                    &client,
                    "parts",
                    "k",
                    &id,
                    number * 2,
                    &pattern(number as u64, 10 + number as usize),
                )
                .await,
            );
        }
        let all = client
            .list_parts()
            .bucket("parts")
            .key("k")
            .upload_id(&id)
            .send()
            .await
            .unwrap();
        let numbers: Vec<i32> = all
            .parts()
            .iter()
            .map(|p| p.part_number().unwrap())
            .collect();
        assert_eq!(numbers, [2, 4, 6, 8, 10, 12, 14]);
        assert_eq!(all.is_truncated(), Some(false));
        assert_eq!(all.parts()[0].size(), Some(11));
        assert_eq!(all.parts()[0].e_tag(), Some(etags[0].as_str()));
        assert!(all.parts()[0].last_modified().is_some());
        assert_eq!(all.upload_id(), Some(id.as_str()));
        assert!(all.initiator().is_some() && all.owner().is_some());

        let mut marker: Option<String> = None;
        let mut seen = Vec::new();
        loop {
            let mut request = client
                .list_parts()
                .bucket("parts")
                .key("k")
                .upload_id(&id)
                .max_parts(3);
            if let Some(marker) = &marker {
                request = request.part_number_marker(marker);
            }
            let page = request.send().await.unwrap();
            assert!(page.parts().len() <= 3);
            seen.extend(page.parts().iter().map(|p| p.part_number().unwrap()));
            if !page.is_truncated().unwrap() {
                break;
            }
            marker = page.next_part_number_marker().map(str::to_owned);
            assert_eq!(
                marker.as_deref(),
                Some(seen.last().unwrap().to_string().as_str())
            );
        }
        assert_eq!(seen, numbers);
        let after = client
            .list_parts()
            .bucket("parts")
            .key("k")
            .upload_id(&id)
            .part_number_marker("9")
            .send()
            .await
            .unwrap();
        let numbers: Vec<i32> = after
            .parts()
            .iter()
            .map(|p| p.part_number().unwrap())
            .collect();
        assert_eq!(numbers, [10, 12, 14]);
        let response = server
            .send_signed(&server.request("GET", &format!("/parts/k?uploadId={id}&max-parts=-1")));
        response.assert_s3_error(400, "InvalidArgument");
    });
}

#[test]
#[allow(
    clippy::too_many_lines,
    reason = "one set of uploads, listed every way"
)]
fn list_multipart_uploads_spans_shards_with_prefixes_markers_and_pages() {
    let server = Server::start();
    let client = server.client();
    let keys = ["a/1", "a/2", "b", "c/d/e", "c/x", "plus+ space", "z"];
    common::block_on(async {
        create_bucket(&client, "ups").await;
        let mut uploads: Vec<(String, String)> = Vec::new();
        for key in keys {
            uploads.push((key.to_owned(), create(&client, "ups", key).await));
        }
        // Two uploads of one key: listed oldest first.
        uploads.push(("b".to_owned(), create(&client, "ups", "b").await));
        uploads.sort();
        let cores = common::online_cores();
        let shards: BTreeSet<usize> = keys
            .iter()
            .map(|key| shard_for("ups", key, cores))
            .collect();
        assert_eq!(shards.len(), cores.min(2), "the keys cover the cores");

        let all = client
            .list_multipart_uploads()
            .bucket("ups")
            .send()
            .await
            .unwrap();
        let listed: Vec<(String, String)> = all
            .uploads()
            .iter()
            .map(|u| {
                (
                    u.key().unwrap().to_owned(),
                    u.upload_id().unwrap().to_owned(),
                )
            })
            .collect();
        assert_eq!(listed, uploads);
        assert_eq!(all.is_truncated(), Some(false));
        assert!(all.uploads()[0].initiated().is_some());

        // Pages of two with both markers.
        let mut seen = Vec::new();
        let (mut key_marker, mut id_marker) = (None::<String>, None::<String>);
        loop {
            let mut request = client.list_multipart_uploads().bucket("ups").max_uploads(2);
            if let Some(marker) = &key_marker {
                request = request.key_marker(marker);
            }
            if let Some(marker) = &id_marker {
                request = request.upload_id_marker(marker);
            }
            let page = request.send().await.unwrap();
            seen.extend(page.uploads().iter().map(|u| {
                (
                    u.key().unwrap().to_owned(),
                    u.upload_id().unwrap().to_owned(),
                )
            }));
            if !page.is_truncated().unwrap() {
                break;
            }
            key_marker = page.next_key_marker().map(str::to_owned);
            id_marker = page.next_upload_id_marker().map(str::to_owned);
        }
        assert_eq!(seen, uploads);

        // Prefix and delimiter.
        let page = client
            .list_multipart_uploads()
            .bucket("ups")
            .delimiter("/")
            .send()
            .await
            .unwrap();
        let prefixes: Vec<&str> = page
            .common_prefixes()
            .iter()
            .map(|p| p.prefix().unwrap())
            .collect();
        assert_eq!(prefixes, ["a/", "c/"]);
        let keys_listed: Vec<&str> = page.uploads().iter().map(|u| u.key().unwrap()).collect();
        assert_eq!(keys_listed, ["b", "b", "plus+ space", "z"]);
        let page = client
            .list_multipart_uploads()
            .bucket("ups")
            .prefix("c/")
            .delimiter("/")
            .send()
            .await
            .unwrap();
        let prefixes: Vec<&str> = page
            .common_prefixes()
            .iter()
            .map(|p| p.prefix().unwrap())
            .collect();
        assert_eq!(prefixes, ["c/d/"]);
        assert_eq!(page.uploads().len(), 1);
        // A key marker alone skips that key's uploads.
        let page = client
            .list_multipart_uploads()
            .bucket("ups")
            .key_marker("b")
            .send()
            .await
            .unwrap();
        assert_eq!(page.uploads()[0].key(), Some("c/d/e"));
        // URL encoding.
        let page = client
            .list_multipart_uploads()
            .bucket("ups")
            .prefix("plus")
            .encoding_type(EncodingType::Url)
            .send()
            .await
            .unwrap();
        assert_eq!(page.uploads()[0].key(), Some("plus%2B%20space"));

        // A bucket with uploads in progress is not empty.
        expect_sdk_error(
            client.delete_bucket().bucket("ups").send().await,
            409,
            "BucketNotEmpty",
        );
        for (key, id) in &uploads {
            client
                .abort_multipart_upload()
                .bucket("ups")
                .key(key)
                .upload_id(id)
                .send()
                .await
                .unwrap();
        }
        client.delete_bucket().bucket("ups").send().await.unwrap();
    });
}

/// Uploads in progress survive a clean stop (their state in the index
/// checkpoint's snapshot) and a kill (replayed from the segments), and
/// complete afterwards.
#[test]
fn uploads_in_progress_survive_restarts() {
    let mut server = ServerOptions::new()
        .cores(common::online_cores().min(2))
        .start();
    let bodies = [
        pattern(30, PART_MIN),
        pattern(31, PART_MIN),
        pattern(32, 77),
    ];
    let (id, etags) = common::block_on(async {
        let client = server.client();
        create_bucket(&client, "keep").await;
        let id = create(&client, "keep", "obj").await;
        let e1 = upload(&client, "keep", "obj", &id, 1, &bodies[0]).await;
        (id, vec![e1])
    });
    server.restart();
    let etags = common::block_on(async {
        let client = server.client();
        let parts = client
            .list_parts()
            .bucket("keep")
            .key("obj")
            .upload_id(&id)
            .send()
            .await
            .unwrap();
        assert_eq!(parts.parts().len(), 1);
        let mut etags = etags;
        etags.push(upload(&client, "keep", "obj", &id, 2, &bodies[1]).await);
        // Another upload to complete before the kill.
        let other = create(&client, "keep", "other").await;
        let e = upload(&client, "keep", "other", &other, 1, &bodies[2]).await;
        complete(&client, "keep", "other", &other, &[(1, &e)])
            .await
            .unwrap();
        etags
    });
    server.signal(libc::SIGKILL);
    server.wait_exit(Duration::from_secs(10)).expect("killed");
    let options = server.options().clone();
    server.start_again(&options).expect("restart after SIGKILL");
    common::block_on(async {
        let client = server.client();
        let parts = client
            .list_parts()
            .bucket("keep")
            .key("obj")
            .upload_id(&id)
            .send()
            .await
            .unwrap();
        let numbers: Vec<i32> = parts
            .parts()
            .iter()
            .map(|p| p.part_number().unwrap())
            .collect();
        assert_eq!(numbers, [1, 2]);
        let e3 = upload(&client, "keep", "obj", &id, 3, &bodies[2]).await;
        let output = complete(
            &client,
            "keep",
            "obj",
            &id,
            &[(1, &etags[0]), (2, &etags[1]), (3, &e3)],
        )
        .await
        .unwrap();
        assert_eq!(
            output.e_tag(),
            Some(multipart_etag(&[&bodies[0], &bodies[1], &bodies[2]]).as_str())
        );
        assert!(get(&client, "keep", "obj").await == bodies.concat());
        assert!(get(&client, "keep", "other").await == bodies[2]);
    });
    // Once more after a clean stop: the object, and no upload left.
    server.restart();
    common::block_on(async {
        let client = server.client();
        assert!(get(&client, "keep", "obj").await == bodies.concat());
        let uploads = client
            .list_multipart_uploads()
            .bucket("keep")
            .send()
            .await
            .unwrap();
        assert!(uploads.uploads().is_empty());
    });
    // The records of the uploads are understood by `ringstore check`.
    server.stop_with(libc::SIGTERM);
    let check = std::process::Command::new(common::binary())
        .arg("check")
        .arg("--data-dir")
        .arg(server.data_dir())
        .env_remove("RUST_LOG")
        .output()
        .expect("run ringstore check");
    let report = String::from_utf8_lossy(&check.stdout);
    assert!(
        check.status.success(),
        "{report}\n{}",
        String::from_utf8_lossy(&check.stderr)
    );
    assert!(
        !report.contains("upload 0)"),
        "the upload records are counted: {report}"
    );
}

fn multipart_bytes() -> u64 {
    std::env::var("RINGSTORE_TEST_MULTIPART_MIB")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(2048)
        * MIB as u64
}

/// Goal: an object of several GiB made of parts streams in and out intact
/// while the server's memory stays flat. The parts are generated one at a
/// time (the test never holds the object), the download is compared piece
/// by piece, and a thread samples the server's `VmRSS`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_multi_gib_object_streams_with_flat_memory() {
    const PART: usize = 64 * MIB;
    let size = multipart_bytes();
    let part_count = usize::try_from(size).unwrap().div_ceil(PART);
    let server = Server::start();
    let client = server.client();
    create_bucket(&client, "huge").await;
    let idle = server.rss_bytes();
    let peak = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (peak, stop, pid) = (peak.clone(), stop.clone(), server.pid());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                if let Some(rss) = common::proc_status_bytes(pid, "VmRSS:") {
                    peak.fetch_max(rss, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        })
    };
    let part_len = |index: usize| PART.min(usize::try_from(size).unwrap() - index * PART);
    // Every MiB of the object differs: one random MiB, stamped with its
    // part and position (cheap to make twice, for the upload and the check).
    let base = pattern(1000, MIB);
    let part_body = |index: usize| {
        let mut body = Vec::with_capacity(part_len(index));
        let mut mib = 0_u64;
        while body.len() < part_len(index) {
            let start = body.len();
            let take = MIB.min(part_len(index) - start);
            body.extend_from_slice(&base[..take]);
            let stamp = [index as u64, mib];
            for (at, word) in stamp.iter().enumerate() {
                let to = (start + at * 8 + 8).min(start + take);
                let from = (start + at * 8).min(to);
                body[from..to].copy_from_slice(&word.to_le_bytes()[..to - from]);
            }
            mib += 1;
        }
        body
    };
    let id = create(&client, "huge", "big.bin").await;
    let mut etags = Vec::new();
    let mut all_md5s = Md5::new();
    for index in 0..part_count {
        let body = part_body(index);
        all_md5s.update(md5(&body));
        etags.push(upload(&client, "huge", "big.bin", &id, index as i32 + 1, &body).await);
    }
    let parts: Vec<(i32, &str)> = etags
        .iter()
        .enumerate()
        .map(|(i, e)| (i as i32 + 1, e.as_str()))
        .collect();
    let output = complete(&client, "huge", "big.bin", &id, &parts)
        .await
        .unwrap();
    let expected_etag = format!("\"{}-{part_count}\"", hex::encode(all_md5s.finalize()));
    assert_eq!(output.e_tag(), Some(expected_etag.as_str()));

    let object = client
        .get_object()
        .bucket("huge")
        .key("big.bin")
        .send()
        .await
        .unwrap();
    assert_eq!(object.content_length(), Some(i64::try_from(size).unwrap()));
    let mut stream = object.body;
    let mut offset = 0_usize;
    let mut part_index = 0;
    let mut expected = part_body(0);
    let mut in_part = 0;
    while let Some(piece) = stream.try_next().await.unwrap() {
        let mut piece = &piece[..];
        while !piece.is_empty() {
            if in_part == expected.len() {
                part_index += 1;
                expected = part_body(part_index);
                in_part = 0;
            }
            let take = piece.len().min(expected.len() - in_part);
            assert!(
                piece[..take] == expected[in_part..in_part + take],
                "bytes differ at {offset}"
            );
            piece = &piece[take..];
            in_part += take;
            offset += take;
        }
    }
    assert_eq!(offset as u64, size);
    stop.store(true, Ordering::Relaxed);
    sampler.join().unwrap();
    let peak = peak.load(Ordering::Relaxed);
    eprintln!(
        "multipart {} MiB in {part_count} parts: server VmRSS idle {} MiB, peak {} MiB",
        size / MIB as u64,
        idle / MIB as u64,
        peak / MIB as u64
    );
    // A part's body is streamed, one extent buffer at a time: the server
    // never holds a part, let alone the object.
    assert!(
        peak.saturating_sub(idle) < 64 * MIB as u64,
        "the server's RSS grew by {} MiB",
        peak.saturating_sub(idle) / MIB as u64
    );
}

#[test]
#[allow(
    clippy::too_many_lines,
    reason = "every part, read both ways, and the errors"
)]
fn part_number_reads_one_part_of_a_multipart_object() {
    let server = Server::start();
    let client = server.client();
    common::block_on(async {
        create_bucket(&client, "partnum").await;
        let bodies = [
            pattern(40, PART_MIN),
            pattern(41, PART_MIN + 1),
            pattern(42, 9),
        ];
        let id = create(&client, "partnum", "obj").await;
        let mut etags = Vec::new();
        for (index, body) in bodies.iter().enumerate() {
            etags.push(upload(&client, "partnum", "obj", &id, index as i32 + 1, body).await);
        }
        let parts: Vec<(i32, &str)> = etags
            .iter()
            .enumerate()
            .map(|(i, e)| (i as i32 + 1, e.as_str()))
            .collect();
        complete(&client, "partnum", "obj", &id, &parts)
            .await
            .unwrap();
        let total = bodies.iter().map(Vec::len).sum::<usize>();
        let mut start = 0;
        for (index, body) in bodies.iter().enumerate() {
            let number = index as i32 + 1;
            let output = client
                .get_object()
                .bucket("partnum")
                .key("obj")
                .part_number(number)
                .send()
                .await
                .unwrap();
            assert_eq!(output.parts_count(), Some(3));
            assert_eq!(output.content_length(), Some(body.len() as i64));
            let range = format!("bytes {start}-{}/{total}", start + body.len() - 1);
            assert_eq!(output.content_range(), Some(range.as_str()));
            assert!(output.body.collect().await.unwrap().to_vec() == *body);
            let head = client
                .head_object()
                .bucket("partnum")
                .key("obj")
                .part_number(number)
                .send()
                .await
                .unwrap();
            assert_eq!(head.parts_count(), Some(3));
            assert_eq!(head.content_length(), Some(body.len() as i64));
            start += body.len();
        }
        // Without partNumber, no parts count.
        let head = client
            .head_object()
            .bucket("partnum")
            .key("obj")
            .send()
            .await
            .unwrap();
        assert_eq!(head.parts_count(), None);
        assert_eq!(head.content_length(), Some(total as i64));
        expect_sdk_error(
            client
                .get_object()
                .bucket("partnum")
                .key("obj")
                .part_number(4)
                .send()
                .await,
            416,
            "InvalidPartNumber",
        );
        expect_sdk_error(
            client
                .get_object()
                .bucket("partnum")
                .key("obj")
                .part_number(1)
                .range("bytes=0-1")
                .send()
                .await,
            400,
            "InvalidRequest",
        );
        // An object that is not multipart is one part.
        client
            .put_object()
            .bucket("partnum")
            .key("single")
            .body(ByteStream::from_static(b"hello"))
            .send()
            .await
            .unwrap();
        let output = client
            .get_object()
            .bucket("partnum")
            .key("single")
            .part_number(1)
            .send()
            .await
            .unwrap();
        assert_eq!(output.parts_count(), None);
        assert_eq!(output.body.collect().await.unwrap().to_vec(), b"hello");
        expect_sdk_error(
            client
                .get_object()
                .bucket("partnum")
                .key("single")
                .part_number(2)
                .send()
                .await,
            416,
            "InvalidPartNumber",
        );
    });
}

/// Pages of zero uploads or zero parts are empty and not truncated (a
/// truncated empty page could not say where the next one starts).
#[test]
fn pages_of_zero_are_empty_and_not_truncated() {
    let server = Server::start();
    let client = server.client();
    let id = common::block_on(async {
        create_bucket(&client, "zero").await;
        let id = create(&client, "zero", "k").await;
        upload(&client, "zero", "k", &id, 1, b"part").await;
        id
    });
    let uploads = server.send_signed(&server.request("GET", "/zero?uploads&max-uploads=0"));
    assert_eq!(uploads.status, 200, "{}", uploads.text());
    assert_eq!(uploads.xml_element("IsTruncated").as_deref(), Some("false"));
    assert!(!uploads.text().contains("<Upload>"));
    let parts =
        server.send_signed(&server.request("GET", &format!("/zero/k?uploadId={id}&max-parts=0")));
    assert_eq!(parts.status, 200, "{}", parts.text());
    assert_eq!(parts.xml_element("IsTruncated").as_deref(), Some("false"));
    assert!(!parts.text().contains("<Part>"));
}

/// Goal: `CreateMultipartUpload` keeps the object's Content-Encoding
/// exactly as sent (`deflate, gzip`, not `deflate,gzip`) and takes
/// `x-amz-acl: bucket-owner-full-control` as it takes `private`; another
/// canned ACL is refused naming the header, and no upload is created.
/// Regression (issue 12) for both.
#[tokio::test]
async fn create_multipart_upload_keeps_content_encoding_as_sent_and_takes_bucket_owner_full_control()
 {
    use aws_sdk_s3::types::ObjectCannedAcl;
    let server = Server::start();
    let client = server.client();
    create_bucket(&client, "create").await;
    let id = client
        .create_multipart_upload()
        .bucket("create")
        .key("coded")
        .content_encoding("deflate, gzip")
        .acl(ObjectCannedAcl::BucketOwnerFullControl)
        .send()
        .await
        .expect("CreateMultipartUpload with bucket-owner-full-control")
        .upload_id()
        .expect("an upload id")
        .to_owned();
    let data = pattern(61, 1000);
    let etag = upload(&client, "create", "coded", &id, 1, &data).await;
    complete(&client, "create", "coded", &id, &[(1, &etag)])
        .await
        .expect("CompleteMultipartUpload");
    for method in ["GET", "HEAD"] {
        let raw = server.send_signed(&server.request(method, "/create/coded"));
        assert_eq!(raw.status, 200, "{method}");
        assert_eq!(
            raw.header("content-encoding"),
            Some("deflate, gzip"),
            "{method}"
        );
    }
    let response = server.send_signed(
        &server
            .request("POST", "/create/refused?uploads")
            .header("x-amz-acl", "public-read"),
    );
    common::assert_canned_acl_refused(&response, "public-read");
    let uploads = client
        .list_multipart_uploads()
        .bucket("create")
        .send()
        .await
        .unwrap();
    assert!(uploads.uploads().is_empty(), "{uploads:?}");
}
