//! Checksums of uploads against the real binary: the SDK with each of the
//! five algorithms (a header for in-memory bodies, an aws-chunked trailer
//! for streamed ones), GET and HEAD with and without checksum mode, ranged
//! GETs; and raw requests for the trailer forms, wrong and malformed
//! values, and Content-MD5 — each checking that nothing was stored.

#![allow(
    clippy::cast_possible_truncation,
    reason = "test bytes, seeds and 32-bit CRCs are truncated on purpose"
)]
#![allow(
    clippy::too_many_lines,
    reason = "each test is one scenario, read top to bottom"
)]

mod common;

use std::io::Write as _;

use aws_sdk_s3::Client;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{ChecksumAlgorithm, ChecksumMode};
use common::{RawResponse, Server, Streaming, aws_chunked_put, base64};
use md5::{Digest as _, Md5};

const ALGORITHMS: [ChecksumAlgorithm; 5] = [
    ChecksumAlgorithm::Crc32,
    ChecksumAlgorithm::Crc32C,
    ChecksumAlgorithm::Crc64Nvme,
    ChecksumAlgorithm::Sha1,
    ChecksumAlgorithm::Sha256,
];

fn data(seed: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|index| (index as u64 * 131 + u64::from(seed) * 7 % 251) as u8)
        .collect()
}

/// The checksum of `data` as S3 sends it, computed here independently of
/// the server: SHA-1 and SHA-256 from their crates, the CRCs bit by bit.
fn expected(algorithm: &ChecksumAlgorithm, data: &[u8]) -> String {
    fn crc_reflected(data: &[u8], poly: u64, width: u32) -> u64 {
        let mask = if width == 64 {
            u64::MAX
        } else {
            (1 << width) - 1
        };
        let mut crc = mask;
        for byte in data {
            crc ^= u64::from(*byte);
            for _ in 0..8 {
                crc = if crc & 1 == 1 {
                    (crc >> 1) ^ poly
                } else {
                    crc >> 1
                };
            }
        }
        !crc & mask
    }
    let bytes = match algorithm {
        ChecksumAlgorithm::Crc32 => (crc_reflected(data, 0xEDB8_8320, 32) as u32)
            .to_be_bytes()
            .to_vec(),
        ChecksumAlgorithm::Crc32C => (crc_reflected(data, 0x82F6_3B78, 32) as u32)
            .to_be_bytes()
            .to_vec(),
        ChecksumAlgorithm::Crc64Nvme => crc_reflected(data, 0x9A6C_9329_AC4B_C9B5, 64)
            .to_be_bytes()
            .to_vec(),
        ChecksumAlgorithm::Sha1 => sha1::Sha1::digest(data).to_vec(),
        ChecksumAlgorithm::Sha256 => sha2::Sha256::digest(data).to_vec(),
        other => panic!("not an S3 checksum algorithm: {other:?}"),
    };
    base64(&bytes)
}

fn header_name(algorithm: &ChecksumAlgorithm) -> String {
    format!("x-amz-checksum-{}", algorithm.as_str().to_ascii_lowercase())
}

/// The checksum a GET or HEAD output carries for `algorithm`.
macro_rules! checksum_of {
    ($output:expr, $algorithm:expr) => {
        match $algorithm {
            ChecksumAlgorithm::Crc32 => $output.checksum_crc32(),
            ChecksumAlgorithm::Crc32C => $output.checksum_crc32_c(),
            ChecksumAlgorithm::Crc64Nvme => $output.checksum_crc64_nvme(),
            ChecksumAlgorithm::Sha1 => $output.checksum_sha1(),
            ChecksumAlgorithm::Sha256 => $output.checksum_sha256(),
            _ => None,
        }
    };
}

async fn create_bucket(client: &Client, bucket: &str) {
    client.create_bucket().bucket(bucket).send().await.unwrap();
}

#[test]
fn every_algorithm_round_trips_through_the_sdk_in_headers_and_trailers() {
    let server = Server::start();
    let client = server.client();
    common::block_on(async {
        create_bucket(&client, "sums").await;
        for (index, algorithm) in ALGORITHMS.iter().enumerate() {
            for (form, len) in [("header", 100_000), ("trailer", 1_500_000), ("trailer", 10)] {
                let body = data(index as u8, len);
                let key = format!("{}-{form}-{len}", algorithm.as_str());
                // A body from a file, which the SDK sends aws-chunked with
                // the checksum in a trailer; the file lives until the PUT
                // is done.
                let mut file = tempfile::NamedTempFile::new().unwrap();
                let stream = if form == "header" {
                    ByteStream::from(body.clone())
                } else {
                    file.write_all(&body).unwrap();
                    ByteStream::from_path(file.path()).await.unwrap()
                };
                let put = client
                    .put_object()
                    .bucket("sums")
                    .key(&key)
                    .checksum_algorithm(algorithm.clone())
                    .body(stream)
                    .send()
                    .await
                    .unwrap_or_else(|error| panic!("PutObject {key}: {error:?}"));
                drop(file);
                let want = expected(algorithm, &body);
                assert_eq!(checksum_of!(put, algorithm), Some(want.as_str()), "{key}");

                // GET with checksum mode: the SDK also validates it.
                let got = client
                    .get_object()
                    .bucket("sums")
                    .key(&key)
                    .checksum_mode(ChecksumMode::Enabled)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(checksum_of!(got, algorithm), Some(want.as_str()), "{key}");
                assert_eq!(
                    got.checksum_type()
                        .map(aws_sdk_s3::types::ChecksumType::as_str),
                    Some("FULL_OBJECT")
                );
                assert!(got.body.collect().await.unwrap().to_vec() == body, "{key}");
                let head = client
                    .head_object()
                    .bucket("sums")
                    .key(&key)
                    .checksum_mode(ChecksumMode::Enabled)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(checksum_of!(head, algorithm), Some(want.as_str()), "{key}");
            }
        }
    });
    // Raw GETs show exactly when the header is sent.
    let path = "/sums/CRC32-header-100000";
    let with_mode = |range: Option<&str>| {
        let mut request = server
            .request("GET", path)
            .header("x-amz-checksum-mode", "ENABLED");
        if let Some(range) = range {
            request = request.header("Range", range);
        }
        server.send_signed(&request)
    };
    assert!(with_mode(None).header("x-amz-checksum-crc32").is_some());
    let ranged = with_mode(Some("bytes=0-9"));
    assert_eq!(ranged.status, 206);
    assert_eq!(
        ranged.header("x-amz-checksum-crc32"),
        None,
        "never for a range"
    );
    let plain = server.send_signed(&server.request("GET", path));
    assert_eq!(
        plain.header("x-amz-checksum-crc32"),
        None,
        "only with checksum mode"
    );
    let head = server.send_signed(
        &server
            .request("HEAD", path)
            .header("x-amz-checksum-mode", "ENABLED"),
    );
    assert!(head.header("x-amz-checksum-crc32").is_some());
}

/// An object sent without any checksum gets a CRC64NVME, as S3 gives it.
#[test]
fn an_upload_without_a_checksum_gets_crc64nvme() {
    let server = Server::start();
    assert_eq!(
        server.send_signed(&server.request("PUT", "/plain")).status,
        200
    );
    let body = data(9, 5000);
    let put = server.send_signed(&server.request("PUT", "/plain/k").body(&body));
    assert_eq!(put.status, 200, "{}", put.text());
    let want = expected(&ChecksumAlgorithm::Crc64Nvme, &body);
    assert_eq!(put.header("x-amz-checksum-crc64nvme"), Some(want.as_str()));
    let get = server.send_signed(
        &server
            .request("GET", "/plain/k")
            .header("x-amz-checksum-mode", "ENABLED"),
    );
    assert_eq!(get.header("x-amz-checksum-crc64nvme"), Some(want.as_str()));
    // x-amz-sdk-checksum-algorithm alone: that algorithm is computed.
    let put = server.send_signed(
        &server
            .request("PUT", "/plain/sha")
            .header("x-amz-sdk-checksum-algorithm", "SHA256")
            .body(&body),
    );
    assert_eq!(
        put.header("x-amz-checksum-sha256"),
        Some(expected(&ChecksumAlgorithm::Sha256, &body).as_str())
    );
}

fn assert_missing(server: &Server, path: &str) {
    let head = server.send_signed(&server.request("HEAD", path));
    assert_eq!(
        head.status, 404,
        "{path} was stored although its upload failed"
    );
}

#[test]
fn wrong_or_malformed_checksums_and_digests_store_nothing() {
    let server = Server::start();
    assert_eq!(
        server.send_signed(&server.request("PUT", "/bad")).status,
        200
    );
    let body = data(3, 70_000);
    let put = |path: &str, headers: &[(&str, &str)]| -> RawResponse {
        let mut request = server.request("PUT", path).body(&body);
        for (name, value) in headers {
            request = request.header(name, value);
        }
        server.send_signed(&request)
    };
    for algorithm in &ALGORITHMS {
        let name = header_name(algorithm);
        let wrong = expected(algorithm, b"other bytes");
        let path = format!("/bad/wrong-{name}");
        put(&path, &[(&name, &wrong)]).assert_s3_error(400, "BadDigest");
        assert_missing(&server, &path);
        let path = format!("/bad/malformed-{name}");
        put(&path, &[(&name, "bm90IHJpZ2h0")]).assert_s3_error(400, "InvalidRequest");
        assert_missing(&server, &path);
        let right = expected(algorithm, &body);
        let path = format!("/bad/right-{name}");
        assert_eq!(put(&path, &[(&name, &right)]).status, 200);
    }
    // Two checksums, an unknown algorithm.
    let crc = expected(&ChecksumAlgorithm::Crc32, &body);
    let sha = expected(&ChecksumAlgorithm::Sha1, &body);
    put(
        "/bad/two",
        &[
            ("x-amz-checksum-crc32", &crc),
            ("x-amz-checksum-sha1", &sha),
        ],
    )
    .assert_s3_error(400, "InvalidRequest");
    assert_missing(&server, "/bad/two");
    put("/bad/unknown", &[("x-amz-sdk-checksum-algorithm", "MD5")])
        .assert_s3_error(400, "InvalidRequest");
    assert_missing(&server, "/bad/unknown");
    // Content-MD5: wrong, malformed, right.
    let wrong_md5 = base64(&Md5::digest(b"other"));
    put("/bad/md5", &[("content-md5", &wrong_md5)]).assert_s3_error(400, "BadDigest");
    assert_missing(&server, "/bad/md5");
    put("/bad/md5-malformed", &[("content-md5", "xyz")]).assert_s3_error(400, "InvalidDigest");
    assert_missing(&server, "/bad/md5-malformed");
    let right_md5 = base64(&Md5::digest(&body));
    assert_eq!(
        put("/bad/md5-right", &[("content-md5", &right_md5)]).status,
        200
    );
}

#[test]
fn trailers_in_signed_and_unsigned_chunked_bodies_are_checked() {
    let server = Server::start();
    assert_eq!(
        server.send_signed(&server.request("PUT", "/trail")).status,
        200
    );
    let body = data(5, 200_000);
    for mode in [Streaming::SignedTrailer, Streaming::UnsignedTrailer] {
        for algorithm in &ALGORITHMS {
            let name = header_name(algorithm);
            let right = expected(algorithm, &body);
            let path = format!("/trail/{mode:?}-{name}");
            let request = aws_chunked_put(
                &server,
                mode,
                &path,
                &body,
                65_536,
                Some((&name, &right)),
                false,
            );
            let response = server.send(&request);
            assert_eq!(response.status, 200, "{mode:?} {name}: {}", response.text());
            let get = server.send_signed(
                &server
                    .request("GET", &path)
                    .header("x-amz-checksum-mode", "ENABLED"),
            );
            assert!(
                get.body == body,
                "{mode:?} {name}: the body was stored with its framing"
            );
            assert_eq!(get.header(&name), Some(right.as_str()));

            let wrong = expected(algorithm, b"not the body");
            let path = format!("/trail/{mode:?}-wrong-{name}");
            let request = aws_chunked_put(
                &server,
                mode,
                &path,
                &body,
                65_536,
                Some((&name, &wrong)),
                false,
            );
            server.send(&request).assert_s3_error(400, "BadDigest");
            assert_missing(&server, &path);
        }
    }
}

/// Goal: multipart uploads with each algorithm and each checksum type it
/// allows: per-part checksums returned and checked at completion, the
/// object's checksum made from the parts' as AWS makes it (`COMPOSITE`: the
/// digest of the part digests, `-N`; `FULL_OBJECT`: the CRC of all bytes),
/// and the refused combinations.
#[test]
fn multipart_checksums_are_composite_or_full_object() {
    use aws_sdk_s3::types::{ChecksumType, CompletedMultipartUpload, CompletedPart};
    const PART: usize = 5 * 1024 * 1024;
    let server = Server::start();
    let client = server.client();
    common::block_on(async {
        create_bucket(&client, "mpsum").await;
        let bodies = [data(1, PART), data(2, 1000)];
        let whole: Vec<u8> = bodies.concat();
        for algorithm in &ALGORITHMS {
            let is_crc64 = *algorithm == ChecksumAlgorithm::Crc64Nvme;
            let is_sha = matches!(
                algorithm,
                ChecksumAlgorithm::Sha1 | ChecksumAlgorithm::Sha256
            );
            for kind in [ChecksumType::Composite, ChecksumType::FullObject] {
                let composite = kind == ChecksumType::Composite;
                let key = format!("{}-{}", algorithm.as_str(), kind.as_str());
                let created = client
                    .create_multipart_upload()
                    .bucket("mpsum")
                    .key(&key)
                    .checksum_algorithm(algorithm.clone())
                    .checksum_type(kind.clone())
                    .send()
                    .await;
                if (composite && is_crc64) || (!composite && is_sha) {
                    common::expect_sdk_error(created, 400, "InvalidRequest");
                    continue;
                }
                let created = created.unwrap_or_else(|error| panic!("{key}: {error:?}"));
                assert_eq!(created.checksum_algorithm(), Some(algorithm));
                assert_eq!(created.checksum_type(), Some(&kind));
                let id = created.upload_id().unwrap().to_owned();
                let mut parts = Vec::new();
                let mut part_sums = Vec::new();
                for (number, body) in (1_i32..).zip(&bodies) {
                    let output = client
                        .upload_part()
                        .bucket("mpsum")
                        .key(&key)
                        .upload_id(&id)
                        .part_number(number)
                        .checksum_algorithm(algorithm.clone())
                        .body(ByteStream::from(body.clone()))
                        .send()
                        .await
                        .unwrap_or_else(|error| panic!("{key} part {number}: {error:?}"));
                    let sum = checksum_of!(output, algorithm).map(str::to_owned);
                    assert_eq!(
                        sum.as_deref(),
                        Some(expected(algorithm, body).as_str()),
                        "{key}"
                    );
                    let part = CompletedPart::builder()
                        .part_number(number)
                        .e_tag(output.e_tag().unwrap());
                    let part = match algorithm {
                        ChecksumAlgorithm::Crc32 => part.set_checksum_crc32(sum.clone()),
                        ChecksumAlgorithm::Crc32C => part.set_checksum_crc32_c(sum.clone()),
                        ChecksumAlgorithm::Crc64Nvme => part.set_checksum_crc64_nvme(sum.clone()),
                        ChecksumAlgorithm::Sha1 => part.set_checksum_sha1(sum.clone()),
                        _ => part.set_checksum_sha256(sum.clone()),
                    };
                    parts.push(part.build());
                    part_sums.push(sum.unwrap());
                }
                let want = if composite {
                    use base64::Engine as _;
                    let raw: Vec<u8> = part_sums
                        .iter()
                        .flat_map(|sum| {
                            base64::engine::general_purpose::STANDARD
                                .decode(sum)
                                .unwrap()
                        })
                        .collect();
                    format!("{}-{}", expected(algorithm, &raw), bodies.len())
                } else {
                    expected(algorithm, &whole)
                };
                let done = client
                    .complete_multipart_upload()
                    .bucket("mpsum")
                    .key(&key)
                    .upload_id(&id)
                    .multipart_upload(
                        CompletedMultipartUpload::builder()
                            .set_parts(Some(parts))
                            .build(),
                    )
                    .send()
                    .await
                    .unwrap_or_else(|error| panic!("complete {key}: {error:?}"));
                assert_eq!(checksum_of!(done, algorithm), Some(want.as_str()), "{key}");
                let head = client
                    .head_object()
                    .bucket("mpsum")
                    .key(&key)
                    .checksum_mode(ChecksumMode::Enabled)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(checksum_of!(head, algorithm), Some(want.as_str()), "{key}");
                assert_eq!(head.checksum_type(), Some(&kind), "{key}");
                // GET with checksum mode: the SDK validates FULL_OBJECT values.
                let got = client
                    .get_object()
                    .bucket("mpsum")
                    .key(&key)
                    .checksum_mode(ChecksumMode::Enabled)
                    .send()
                    .await
                    .unwrap();
                assert!(got.body.collect().await.unwrap().to_vec() == whole, "{key}");
            }
        }
        // A part checksum in the completion that is not the stored one.
        let id = client
            .create_multipart_upload()
            .bucket("mpsum")
            .key("wrong")
            .checksum_algorithm(ChecksumAlgorithm::Crc32)
            .send()
            .await
            .unwrap()
            .upload_id()
            .unwrap()
            .to_owned();
        let output = client
            .upload_part()
            .bucket("mpsum")
            .key("wrong")
            .upload_id(&id)
            .part_number(1)
            .body(ByteStream::from(data(3, 10)))
            .send()
            .await
            .unwrap();
        let part = CompletedPart::builder()
            .part_number(1)
            .e_tag(output.e_tag().unwrap())
            .checksum_crc32(expected(&ChecksumAlgorithm::Crc32, b"other"))
            .build();
        common::expect_sdk_error(
            client
                .complete_multipart_upload()
                .bucket("mpsum")
                .key("wrong")
                .upload_id(&id)
                .multipart_upload(CompletedMultipartUpload::builder().parts(part).build())
                .send()
                .await,
            400,
            "InvalidPart",
        );
        // A part of another algorithm than the upload's.
        common::expect_sdk_error(
            client
                .upload_part()
                .bucket("mpsum")
                .key("wrong")
                .upload_id(&id)
                .part_number(2)
                .checksum_algorithm(ChecksumAlgorithm::Sha256)
                .body(ByteStream::from(data(4, 10)))
                .send()
                .await,
            400,
            "InvalidRequest",
        );
    });
    // A type without an algorithm, and an unknown algorithm.
    let response = server.send_signed(
        &server
            .request("POST", "/mpsum/x?uploads")
            .header("x-amz-checksum-type", "COMPOSITE"),
    );
    response.assert_s3_error(400, "InvalidRequest");
    let response = server.send_signed(
        &server
            .request("POST", "/mpsum/x?uploads")
            .header("x-amz-checksum-algorithm", "MD5"),
    );
    response.assert_s3_error(400, "InvalidRequest");
}

/// `Content-MD5` is checked on every operation whose body carries it:
/// `CreateBucket` and `CompleteMultipartUpload` here (`PutObject`,
/// `UploadPart` and `DeleteObjects` have their own tests); a mismatch
/// changes nothing.
#[test]
fn content_md5_is_checked_on_every_body() {
    let server = Server::start();
    let config = b"<CreateBucketConfiguration><LocationConstraint>us-east-1</LocationConstraint></CreateBucketConfiguration>";
    let wrong = base64(&Md5::digest(b"other"));
    server
        .send_signed(
            &server
                .request("PUT", "/md5-bucket")
                .body(config)
                .header("content-md5", &wrong),
        )
        .assert_s3_error(400, "BadDigest");
    let head = server.send_signed(&server.request("HEAD", "/md5-bucket"));
    assert_eq!(head.status, 404, "the bucket was created");
    let right = base64(&Md5::digest(config));
    let created = server.send_signed(
        &server
            .request("PUT", "/md5-bucket")
            .body(config)
            .header("content-md5", &right),
    );
    assert_eq!(created.status, 200, "{}", created.text());

    let client = server.client();
    let (id, etag) = common::block_on(async {
        let id = client
            .create_multipart_upload()
            .bucket("md5-bucket")
            .key("k")
            .send()
            .await
            .unwrap()
            .upload_id()
            .unwrap()
            .to_owned();
        let part = client
            .upload_part()
            .bucket("md5-bucket")
            .key("k")
            .upload_id(&id)
            .part_number(1)
            .body(ByteStream::from_static(b"part"))
            .send()
            .await
            .unwrap();
        (id, part.e_tag().unwrap().to_owned())
    });
    let body = format!(
        "<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>{etag}</ETag></Part></CompleteMultipartUpload>"
    );
    let path = format!("/md5-bucket/k?uploadId={id}");
    server
        .send_signed(
            &server
                .request("POST", &path)
                .body(body.as_bytes())
                .header("content-md5", &wrong),
        )
        .assert_s3_error(400, "BadDigest");
    assert_missing(&server, "/md5-bucket/k");
    let right = base64(&Md5::digest(body.as_bytes()));
    let done = server.send_signed(
        &server
            .request("POST", &path)
            .body(body.as_bytes())
            .header("content-md5", &right),
    );
    assert_eq!(done.status, 200, "{}", done.text());
    let head = server.send_signed(&server.request("HEAD", "/md5-bucket/k"));
    assert_eq!(head.status, 200);
}
