//! `DeleteObjects` against the real binary: through the SDK (which sends a
//! CRC32 checksum header as the integrity check) and raw requests for the
//! exact bodies, integrity headers and errors.

mod common;

use std::collections::BTreeSet;

use aws_sdk_s3::Client;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{Delete, ObjectIdentifier};
use base64::Engine as _;
use common::{RawResponse, Server};
use md5::{Digest as _, Md5};
use ringstore::node::sharding::shard_for;

/// Most keys in one request (AWS's 1000).
const KEYS_MAX: usize = 1000;
const _: () = assert!(KEYS_MAX == ringstore::s3::delete::DELETE_OBJECTS_KEYS_MAX);

async fn create_bucket(client: &Client, bucket: &str) {
    client.create_bucket().bucket(bucket).send().await.unwrap();
}

async fn put_keys(client: &Client, bucket: &str, keys: &[String]) {
    let mut tasks = tokio::task::JoinSet::new();
    for chunk in keys.chunks(keys.len().div_ceil(16).max(1)) {
        let (client, bucket, chunk) = (client.clone(), bucket.to_owned(), chunk.to_vec());
        tasks.spawn(async move {
            for key in chunk {
                client
                    .put_object()
                    .bucket(&bucket)
                    .key(&key)
                    .body(ByteStream::from_static(b"x"))
                    .send()
                    .await
                    .unwrap();
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap();
    }
}

async fn listed(client: &Client, bucket: &str) -> BTreeSet<String> {
    let mut keys = BTreeSet::new();
    let mut pages = client
        .list_objects_v2()
        .bucket(bucket)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        keys.extend(
            page.unwrap()
                .contents()
                .iter()
                .map(|o| o.key().unwrap().to_owned()),
        );
    }
    keys
}

fn delete_of(keys: &[String], quiet: bool) -> Delete {
    Delete::builder()
        .set_objects(Some(
            keys.iter()
                .map(|key| ObjectIdentifier::builder().key(key).build().unwrap())
                .collect(),
        ))
        .quiet(quiet)
        .build()
        .unwrap()
}

#[test]
fn a_thousand_keys_over_every_shard_are_deleted_in_one_request() {
    let server = Server::start();
    let client = server.client();
    let keys: Vec<String> = (0..KEYS_MAX).map(|n| format!("dir/{n:04}")).collect();
    let cores = common::online_cores();
    let shards: BTreeSet<usize> = keys.iter().map(|k| shard_for("many", k, cores)).collect();
    assert_eq!(shards.len(), cores);
    common::block_on(async {
        create_bucket(&client, "many").await;
        put_keys(&client, "many", &keys).await;
        put_keys(&client, "many", &["kept".to_owned()]).await;
        // Half the keys exist, half never did: all are reported deleted.
        let mut request: Vec<String> = keys[..KEYS_MAX / 2].to_vec();
        request.extend((0..KEYS_MAX / 2).map(|n| format!("missing/{n}")));
        let output = client
            .delete_objects()
            .bucket("many")
            .delete(delete_of(&request, false))
            .send()
            .await
            .unwrap();
        assert!(output.errors().is_empty(), "{:?}", output.errors());
        let deleted: BTreeSet<&str> = output.deleted().iter().map(|d| d.key().unwrap()).collect();
        assert_eq!(deleted.len(), KEYS_MAX);
        assert!(request.iter().all(|key| deleted.contains(key.as_str())));
        // Quiet: nothing reported for keys deleted.
        let output = client
            .delete_objects()
            .bucket("many")
            .delete(delete_of(&keys[KEYS_MAX / 2..], true))
            .send()
            .await
            .unwrap();
        assert!(output.deleted().is_empty());
        assert!(output.errors().is_empty());
        assert_eq!(
            listed(&client, "many").await,
            BTreeSet::from(["kept".to_owned()])
        );
    });
    // Deleted also after a restart.
    let mut server = server;
    server.restart();
    let client = server.client();
    common::block_on(async {
        assert_eq!(
            listed(&client, "many").await,
            BTreeSet::from(["kept".to_owned()])
        );
    });
}

fn delete_body(keys: &[&str], quiet: bool) -> Vec<u8> {
    let mut body = String::from("<Delete xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">");
    if quiet {
        body.push_str("<Quiet>true</Quiet>");
    }
    for key in keys {
        body.push_str("<Object><Key>");
        body.push_str(key);
        body.push_str("</Key></Object>");
    }
    body.push_str("</Delete>");
    body.into_bytes()
}

fn md5_base64(data: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(Md5::digest(data))
}

fn post_delete(server: &Server, body: &[u8], headers: &[(&str, &str)]) -> RawResponse {
    let mut request = server.request("POST", "/raw?delete").body(body);
    for (name, value) in headers {
        request = request.header(name, value);
    }
    server.send_signed(&request)
}

#[test]
fn the_integrity_check_is_required_and_verified_and_limits_hold() {
    let server = Server::start();
    let client = server.client();
    common::block_on(async {
        create_bucket(&client, "raw").await;
        put_keys(&client, "raw", &["a".to_owned(), "b".to_owned()]).await;
    });
    let body = delete_body(&["a"], false);
    // No Content-MD5 and no checksum.
    post_delete(&server, &body, &[]).assert_s3_error(400, "InvalidRequest");
    // Wrong and malformed Content-MD5.
    let wrong = md5_base64(b"other");
    post_delete(&server, &body, &[("content-md5", &wrong)]).assert_s3_error(400, "BadDigest");
    post_delete(&server, &body, &[("content-md5", "nope")]).assert_s3_error(400, "InvalidDigest");
    // A wrong CRC32 header.
    post_delete(&server, &body, &[("x-amz-checksum-crc32", "AAAAAA==")])
        .assert_s3_error(400, "BadDigest");
    common::block_on(async {
        assert_eq!(listed(&client, "raw").await.len(), 2, "nothing was deleted");
    });
    // A right CRC32 header, computed here.
    let crc = {
        let mut table = [0_u32; 256];
        for (index, entry) in table.iter_mut().enumerate() {
            let mut value = u32::try_from(index).unwrap();
            for _ in 0..8 {
                value = if value & 1 == 1 {
                    (value >> 1) ^ 0xEDB8_8320
                } else {
                    value >> 1
                };
            }
            *entry = value;
        }
        let mut crc = !0_u32;
        for byte in &body {
            crc = table[((crc ^ u32::from(*byte)) & 0xff) as usize] ^ (crc >> 8);
        }
        base64::engine::general_purpose::STANDARD.encode((!crc).to_be_bytes())
    };
    let response = post_delete(&server, &body, &[("x-amz-checksum-crc32", &crc)]);
    assert_eq!(response.status, 200, "{}", response.text());
    assert!(response.text().contains("<Deleted><Key>a</Key></Deleted>"));

    // Malformed bodies, and one key past the limit.
    for body in [
        b"<Delete></Delete>".to_vec(),
        b"<Delete><Object><Key>a</Key>".to_vec(),
        b"not xml".to_vec(),
        b"<Other/>".to_vec(),
    ] {
        let md5 = md5_base64(&body);
        post_delete(&server, &body, &[("content-md5", &md5)]).assert_s3_error(400, "MalformedXML");
    }
    let names: Vec<String> = (0..=KEYS_MAX).map(|n| format!("k{n}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let past = delete_body(&refs, true);
    let md5 = md5_base64(&past);
    post_delete(&server, &past, &[("content-md5", &md5)]).assert_s3_error(400, "MalformedXML");
    let at_limit = delete_body(&refs[..KEYS_MAX], true);
    let md5 = md5_base64(&at_limit);
    let response = post_delete(&server, &at_limit, &[("content-md5", &md5)]);
    assert_eq!(response.status, 200, "{}", response.text());

    // Per-key errors next to successes.
    let long = "x".repeat(1025);
    let body = format!(
        "<Delete><Object><Key>b</Key></Object><Object><Key>{long}</Key></Object>\
         <Object><Key>b</Key><VersionId>3HL4kqtJlcpXroDTDmJ</VersionId></Object></Delete>"
    );
    let md5 = md5_base64(body.as_bytes());
    let response = post_delete(&server, body.as_bytes(), &[("content-md5", &md5)]);
    assert_eq!(response.status, 200, "{}", response.text());
    let text = response.text();
    assert!(text.contains("<Deleted><Key>b</Key></Deleted>"), "{text}");
    assert!(text.contains("<Code>KeyTooLongError</Code>"), "{text}");
    assert!(text.contains("<Code>NoSuchVersion</Code>"), "{text}");
    // A missing bucket.
    let body = delete_body(&["a"], false);
    let md5 = md5_base64(&body);
    let response = server.send_signed(
        &server
            .request("POST", "/no-such-bucket?delete")
            .body(&body)
            .header("content-md5", &md5),
    );
    response.assert_s3_error(404, "NoSuchBucket");
}
