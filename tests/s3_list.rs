//! `ListObjects` (v1) and `ListObjectsV2` against the real binary, through
//! the official SDK and through raw requests where the exact XML matters.
//!
//! The expected listings come from a model written here independently of
//! the server: the sorted set of keys, rolled up by prefix and delimiter.
//! Every listing is compared page by page with it: entries in UTF-8 byte
//! order, each page after the one before, the pages together exactly the
//! model, whatever the page size.

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;

use aws_sdk_s3::Client;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::EncodingType;
use common::{Server, ServerOptions, expect_sdk_error};
use ringstore::node::sharding::shard_for;

/// One entry of a listing: `K:key` or `P:common prefix`.
type Entry = String;

/// The whole listing of `keys` under `prefix` rolled up at `delimiter`,
/// in order: the model the server is compared with.
fn model(keys: &BTreeSet<String>, prefix: &str, delimiter: &str) -> Vec<Entry> {
    let mut entries: Vec<Entry> = Vec::new();
    for key in keys.iter().filter(|key| key.starts_with(prefix)) {
        let rest = &key[prefix.len()..];
        match rest.find(delimiter).filter(|_| !delimiter.is_empty()) {
            Some(at) => {
                let common = format!("P:{}", &key[..prefix.len() + at + delimiter.len()]);
                if entries.last() != Some(&common) {
                    entries.push(common);
                }
            }
            None => entries.push(format!("K:{key}")),
        }
    }
    entries
}

fn position(entry: &str) -> &str {
    &entry[2..]
}

async fn create_bucket(client: &Client, bucket: &str) {
    client
        .create_bucket()
        .bucket(bucket)
        .send()
        .await
        .unwrap_or_else(|error| panic!("CreateBucket {bucket}: {error:?}"));
}

/// Put every key (its own name as the body), 32 at a time.
async fn put_all(client: &Client, bucket: &str, keys: impl IntoIterator<Item = String>) {
    let permits = Arc::new(tokio::sync::Semaphore::new(32));
    let mut tasks = tokio::task::JoinSet::new();
    for key in keys {
        let client = client.clone();
        let bucket = bucket.to_owned();
        let permit = permits.clone().acquire_owned().await.unwrap();
        tasks.spawn(async move {
            client
                .put_object()
                .bucket(&bucket)
                .key(&key)
                .body(ByteStream::from(key.clone().into_bytes()))
                .send()
                .await
                .unwrap_or_else(|error| panic!("PutObject {key:?}: {error:?}"));
            drop(permit);
        });
    }
    while let Some(outcome) = tasks.join_next().await {
        outcome.expect("put task");
    }
}

/// One v2 page as entries in order (objects and prefixes merged), checked
/// for order within the page.
fn v2_entries(output: &aws_sdk_s3::operation::list_objects_v2::ListObjectsV2Output) -> Vec<Entry> {
    let mut entries: Vec<Entry> = output
        .contents()
        .iter()
        .map(|object| format!("K:{}", object.key().unwrap()))
        .chain(
            output
                .common_prefixes()
                .iter()
                .map(|prefix| format!("P:{}", prefix.prefix().unwrap())),
        )
        .collect();
    entries.sort_by(|a, b| position(a).cmp(position(b)));
    entries
}

/// Page through `ListObjectsV2` and return every entry, checking the page
/// invariants on the way.
async fn list_v2(
    client: &Client,
    bucket: &str,
    prefix: &str,
    delimiter: &str,
    max_keys: i32,
) -> Vec<Entry> {
    let mut all: Vec<Entry> = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let mut request = client
            .list_objects_v2()
            .bucket(bucket)
            .prefix(prefix)
            .max_keys(max_keys);
        if !delimiter.is_empty() {
            request = request.delimiter(delimiter);
        }
        if let Some(token) = &token {
            request = request.continuation_token(token);
        }
        let output = request
            .send()
            .await
            .unwrap_or_else(|error| panic!("ListObjectsV2: {error:?}"));
        let entries = v2_entries(&output);
        assert!(entries.len() <= usize::try_from(max_keys.min(1000)).unwrap());
        assert_eq!(
            output.key_count(),
            Some(i32::try_from(entries.len()).unwrap())
        );
        if let (Some(last), Some(first)) = (all.last(), entries.first()) {
            assert!(
                position(last) < position(first),
                "page starts at {first} after {last}"
            );
        }
        all.extend(entries);
        let truncated = output
            .is_truncated()
            .expect("IsTruncated is always present");
        if !truncated {
            assert!(output.next_continuation_token().is_none());
            return all;
        }
        assert_eq!(
            output.key_count(),
            Some(max_keys.min(1000)),
            "only the last page is short"
        );
        token = Some(
            output
                .next_continuation_token()
                .expect("a truncated page has a NextContinuationToken")
                .to_owned(),
        );
    }
}

/// Page through `ListObjects` (v1) with `NextMarker`.
async fn list_v1(
    client: &Client,
    bucket: &str,
    prefix: &str,
    delimiter: &str,
    max_keys: i32,
) -> Vec<Entry> {
    let mut all: Vec<Entry> = Vec::new();
    let mut marker: Option<String> = None;
    loop {
        let mut request = client
            .list_objects()
            .bucket(bucket)
            .prefix(prefix)
            .max_keys(max_keys);
        if !delimiter.is_empty() {
            request = request.delimiter(delimiter);
        }
        if let Some(marker) = &marker {
            request = request.marker(marker);
        }
        let output = request
            .send()
            .await
            .unwrap_or_else(|error| panic!("ListObjects: {error:?}"));
        assert_eq!(
            output.marker().unwrap_or_default(),
            marker.as_deref().unwrap_or_default()
        );
        let mut entries: Vec<Entry> = output
            .contents()
            .iter()
            .map(|object| {
                assert!(object.owner().is_some(), "v1 lists owners");
                format!("K:{}", object.key().unwrap())
            })
            .chain(
                output
                    .common_prefixes()
                    .iter()
                    .map(|prefix| format!("P:{}", prefix.prefix().unwrap())),
            )
            .collect();
        entries.sort_by(|a, b| position(a).cmp(position(b)));
        all.extend(entries);
        if !output
            .is_truncated()
            .expect("IsTruncated is always present")
        {
            return all;
        }
        let next = output
            .next_marker()
            .expect("a truncated page has a NextMarker")
            .to_owned();
        assert_eq!(next, position(all.last().unwrap()));
        marker = Some(next);
    }
}

/// 10,200 keys in a hierarchy: `dirNN/subM/file-N` and top-level files.
fn hierarchy() -> BTreeSet<String> {
    let mut keys = BTreeSet::new();
    for n in 0..10_000 {
        keys.insert(format!("dir{:02}/sub{}/file-{n:05}", n % 50, n % 4));
    }
    for n in 0..200 {
        keys.insert(format!("top-{n:03}"));
    }
    keys
}

#[test]
fn listing_10000_keys_with_delimiters_and_pagination_matches_the_model() {
    let server = Server::start();
    let client = server.client();
    let keys = hierarchy();
    common::block_on(async {
        create_bucket(&client, "many").await;
        put_all(&client, "many", keys.iter().cloned()).await;
        // Both cores hold part of the listing.
        let cores = common::online_cores();
        if cores > 1 {
            let on_zero = keys.iter().filter(|key| shard_for("many", key, cores) == 0);
            assert!(on_zero.count() > 1000);
        }
        for (prefix, delimiter, max_keys) in [
            ("", "", 1000),
            ("", "", 999),
            ("", "/", 1000),
            ("", "/", 7),
            ("dir07/", "/", 1),
            ("dir07/", "", 100),
            ("dir1", "/", 3),
            ("dir07/sub3/", "/", 50),
            ("", "sub", 11),
            ("top-1", "", 5000),
            ("nothing", "/", 10),
        ] {
            let expected = model(&keys, prefix, delimiter);
            let got = list_v2(&client, "many", prefix, delimiter, max_keys).await;
            assert!(
                got == expected,
                "v2 prefix {prefix:?} delimiter {delimiter:?} max-keys {max_keys}: {} entries, expected {}",
                got.len(),
                expected.len()
            );
            let got = list_v1(&client, "many", prefix, delimiter, max_keys).await;
            assert!(
                got == expected,
                "v1 prefix {prefix:?} delimiter {delimiter:?} max-keys {max_keys}: {} entries, expected {}",
                got.len(),
                expected.len()
            );
        }
        // The SDK's own paginator, with its defaults.
        let mut pages = client
            .list_objects_v2()
            .bucket("many")
            .into_paginator()
            .send();
        let mut listed = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.expect("ListObjectsV2 page");
            listed.extend(page.contents().iter().map(|o| o.key().unwrap().to_owned()));
        }
        assert_eq!(listed, keys.iter().cloned().collect::<Vec<_>>());
    });
}

#[test]
fn one_core_lists_the_same_as_several() {
    let server = ServerOptions::new().cores(1).start();
    let client = server.client();
    let keys: BTreeSet<String> = (0..300)
        .map(|n| format!("{}/{n:04}", ["a", "b", "c"][n % 3]))
        .collect();
    common::block_on(async {
        create_bucket(&client, "one").await;
        put_all(&client, "one", keys.iter().cloned()).await;
        for (delimiter, max_keys) in [("", 1000), ("", 17), ("/", 1), ("/", 1000)] {
            let expected = model(&keys, "", delimiter);
            assert_eq!(
                list_v2(&client, "one", "", delimiter, max_keys).await,
                expected
            );
            assert_eq!(
                list_v1(&client, "one", "", delimiter, max_keys).await,
                expected
            );
        }
    });
}

#[test]
fn objects_carry_size_etag_last_modified_and_storage_class() {
    let server = Server::start();
    let client = server.client();
    common::block_on(async {
        create_bucket(&client, "meta").await;
        let before = std::time::SystemTime::now();
        let put = client
            .put_object()
            .bucket("meta")
            .key("k")
            .body(ByteStream::from(vec![7_u8; 70_000]))
            .send()
            .await
            .unwrap();
        let output = client
            .list_objects_v2()
            .bucket("meta")
            .send()
            .await
            .unwrap();
        let [object] = output.contents() else {
            panic!("one object: {output:?}");
        };
        assert_eq!(object.key(), Some("k"));
        assert_eq!(object.size(), Some(70_000));
        assert_eq!(object.e_tag(), put.e_tag());
        assert_eq!(
            object
                .storage_class()
                .map(aws_sdk_s3::types::ObjectStorageClass::as_str),
            Some("STANDARD")
        );
        assert!(
            object.owner().is_none(),
            "v2 lists owners only with fetch-owner"
        );
        let modified = std::time::SystemTime::try_from(*object.last_modified().unwrap()).unwrap();
        let slack = std::time::Duration::from_secs(2);
        assert!(modified + slack >= before && modified <= std::time::SystemTime::now() + slack);
        assert_eq!(output.name(), Some("meta"));
        assert_eq!(output.max_keys(), Some(1000));

        let with_owner = client
            .list_objects_v2()
            .bucket("meta")
            .fetch_owner(true)
            .send()
            .await
            .unwrap();
        let listed_owner = with_owner.contents()[0]
            .owner()
            .expect("fetch-owner lists owners");
        assert!(listed_owner.id().is_some_and(|id| !id.is_empty()));
    });
}

#[test]
fn start_after_and_tokens() {
    let server = Server::start();
    let client = server.client();
    let keys: BTreeSet<String> = (0..40).map(|n| format!("k{n:02}")).collect();
    common::block_on(async {
        create_bucket(&client, "after").await;
        put_all(&client, "after", keys.iter().cloned()).await;
        let output = client
            .list_objects_v2()
            .bucket("after")
            .start_after("k09")
            .max_keys(5)
            .send()
            .await
            .unwrap();
        let listed: Vec<&str> = output.contents().iter().map(|o| o.key().unwrap()).collect();
        assert_eq!(listed, ["k10", "k11", "k12", "k13", "k14"]);
        assert_eq!(output.start_after(), Some("k09"));
        // A token wins over start-after, which is still echoed.
        let token = output.next_continuation_token().unwrap().to_owned();
        let output = client
            .list_objects_v2()
            .bucket("after")
            .start_after("k30")
            .continuation_token(&token)
            .max_keys(2)
            .send()
            .await
            .unwrap();
        let listed: Vec<&str> = output.contents().iter().map(|o| o.key().unwrap()).collect();
        assert_eq!(listed, ["k15", "k16"]);
        assert_eq!(output.continuation_token(), Some(token.as_str()));
        assert_eq!(output.start_after(), Some("k30"));
        // A start-after past every key, and a marker that is not a key.
        let output = client
            .list_objects_v2()
            .bucket("after")
            .start_after("l")
            .send()
            .await
            .unwrap();
        assert!(output.contents().is_empty());
        assert_eq!(output.is_truncated(), Some(false));
        let output = client
            .list_objects()
            .bucket("after")
            .marker("k355")
            .send()
            .await
            .unwrap();
        assert_eq!(output.contents().first().and_then(|o| o.key()), Some("k36"));

        expect_sdk_error(
            client
                .list_objects_v2()
                .bucket("after")
                .continuation_token("not-a-token")
                .send()
                .await,
            400,
            "InvalidArgument",
        );
    });
}

#[test]
fn tokens_stay_valid_while_keys_are_added_and_deleted() {
    let server = Server::start();
    let client = server.client();
    let stable: BTreeSet<String> = (0..600).map(|n| format!("s/{n:04}")).collect();
    common::block_on(async {
        create_bucket(&client, "moving").await;
        put_all(&client, "moving", stable.iter().cloned()).await;
        put_all(&client, "moving", (0..300).map(|n| format!("s/{n:04}x"))).await;
        let mut listed: Vec<String> = Vec::new();
        let mut token: Option<String> = None;
        let mut round = 0;
        loop {
            let mut request = client.list_objects_v2().bucket("moving").max_keys(50);
            if let Some(token) = &token {
                request = request.continuation_token(token);
            }
            let output = request.send().await.unwrap();
            listed.extend(
                output
                    .contents()
                    .iter()
                    .map(|o| o.key().unwrap().to_owned()),
            );
            // Between pages: delete some keys that come later, add others
            // before and after the position.
            for n in [round * 20 + 100, round * 20 + 101] {
                let _ = client
                    .delete_object()
                    .bucket("moving")
                    .key(format!("s/{n:04}x"))
                    .send()
                    .await;
            }
            put_all(
                &client,
                "moving",
                [format!("s/{:04}y", round * 30), format!("a/{round}")],
            )
            .await;
            round += 1;
            if !output.is_truncated().unwrap() {
                break;
            }
            token = output.next_continuation_token().map(str::to_owned);
        }
        let unique: BTreeSet<&String> = listed.iter().collect();
        assert_eq!(unique.len(), listed.len(), "no key is listed twice");
        assert!(listed.windows(2).all(|pair| pair[0] < pair[1]), "in order");
        for key in &stable {
            assert!(
                unique.contains(key),
                "{key} was there all along but not listed"
            );
        }
        assert!(
            !listed.iter().any(|key| key.starts_with("a/")),
            "keys before the position are not listed"
        );
    });
}

#[test]
fn max_keys_limits_and_errors() {
    let server = Server::start();
    let client = server.client();
    common::block_on(async {
        create_bucket(&client, "limits").await;
        put_all(&client, "limits", (0..1100).map(|n| format!("{n:05}"))).await;
        // More than 1000 is served as 1000.
        let output = client
            .list_objects_v2()
            .bucket("limits")
            .max_keys(5000)
            .send()
            .await
            .unwrap();
        assert_eq!(output.key_count(), Some(1000));
        assert_eq!(output.max_keys(), Some(1000));
        assert_eq!(output.is_truncated(), Some(true));
        // Exactly as many keys as the page holds: not truncated.
        let output = client
            .list_objects_v2()
            .bucket("limits")
            .start_after("00099")
            .max_keys(1000)
            .send()
            .await
            .unwrap();
        assert_eq!(output.key_count(), Some(1000));
        assert_eq!(output.is_truncated(), Some(false));
        assert!(output.next_continuation_token().is_none());
        // One past it: truncated.
        let output = client
            .list_objects_v2()
            .bucket("limits")
            .start_after("00098")
            .max_keys(1000)
            .send()
            .await
            .unwrap();
        assert_eq!(output.is_truncated(), Some(true));
        assert_eq!(output.contents().last().unwrap().key(), Some("01098"));
    });
    // max-keys=0: an empty page, not truncated.
    let zero = server.send_signed(&server.request("GET", "/limits?list-type=2&max-keys=0"));
    assert_eq!(zero.status, 200, "{}", zero.text());
    assert_eq!(zero.xml_element("KeyCount").as_deref(), Some("0"));
    assert_eq!(zero.xml_element("IsTruncated").as_deref(), Some("false"));
    for query in [
        "max-keys=-1",
        "max-keys=ten",
        "max-keys=99999999999999999999",
    ] {
        for version in ["list-type=2&", ""] {
            let response =
                server.send_signed(&server.request("GET", &format!("/limits?{version}{query}")));
            response.assert_s3_error(400, "InvalidArgument");
        }
    }
    let response = server.send_signed(&server.request("GET", "/limits?encoding-type=base64"));
    response.assert_s3_error(400, "InvalidArgument");
    let response = server.send_signed(&server.request("GET", "/missing-bucket?list-type=2"));
    response.assert_s3_error(404, "NoSuchBucket");
    let response = server.send_signed(&server.request("GET", "/missing-bucket"));
    response.assert_s3_error(404, "NoSuchBucket");
}

#[test]
fn xml_has_is_truncated_and_next_marker_always() {
    let server = Server::start();
    let client = server.client();
    common::block_on(async {
        create_bucket(&client, "xml").await;
        put_all(
            &client,
            "xml",
            ["a".to_owned(), "b".to_owned(), "c/d".to_owned()],
        )
        .await;
    });
    // v1 without a delimiter still names the next marker when truncated.
    let page = server.send_signed(&server.request("GET", "/xml?max-keys=1"));
    assert_eq!(page.status, 200);
    assert_eq!(page.xml_element("IsTruncated").as_deref(), Some("true"));
    assert_eq!(page.xml_element("NextMarker").as_deref(), Some("a"));
    assert_eq!(page.xml_element("Marker").as_deref(), Some(""));
    let last = server.send_signed(&server.request("GET", "/xml?marker=b&delimiter=%2F"));
    assert_eq!(last.xml_element("IsTruncated").as_deref(), Some("false"));
    assert_eq!(last.xml_element("NextMarker"), None);
    assert_eq!(last.xml_element("Delimiter").as_deref(), Some("/"));
    assert!(
        last.text()
            .contains("<CommonPrefixes><Prefix>c/</Prefix></CommonPrefixes>")
    );
    assert!(!last.text().contains("<Contents>"));
    let v2 =
        server.send_signed(&server.request("GET", "/xml?list-type=2&delimiter=%2F&max-keys=2"));
    assert_eq!(v2.xml_element("IsTruncated").as_deref(), Some("true"));
    assert_eq!(v2.xml_element("KeyCount").as_deref(), Some("2"));
    assert!(v2.xml_element("NextContinuationToken").is_some());
    assert_eq!(
        v2.xml_element("ETag").as_deref(),
        Some(&*format!("&quot;{}&quot;", md5_hex(b"a")))
    );
}

fn md5_hex(data: &[u8]) -> String {
    use md5::Digest as _;
    hex::encode(md5::Md5::digest(data))
}

/// Keys that XML 1.0 cannot carry or that URLs mangle, listed with
/// `encoding-type=url` and decoded back.
#[test]
fn url_encoding_type_round_trips_awkward_keys() {
    let server = Server::start();
    let client = server.client();
    let keys: BTreeSet<String> = [
        "plain",
        "with space",
        "plus+sign",
        "line\nbreak",
        "tab\there",
        "ctrl\u{1}char",
        "percent%41",
        "unicodé/ключ",
        "dir/../dots",
        "a//b",
        "amp&lt;",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect();
    common::block_on(async {
        create_bucket(&client, "awkward").await;
        put_all(&client, "awkward", keys.iter().cloned()).await;
        let output = client
            .list_objects_v2()
            .bucket("awkward")
            .encoding_type(EncodingType::Url)
            .send()
            .await
            .unwrap();
        assert_eq!(output.encoding_type(), Some(&EncodingType::Url));
        let decoded: Vec<String> = output
            .contents()
            .iter()
            .map(|o| {
                let raw = o.key().unwrap();
                assert!(
                    !raw.contains(['\n', ' ', '+', '\u{1}']),
                    "{raw:?} is encoded"
                );
                percent_decode(raw)
            })
            .collect();
        assert_eq!(decoded, keys.iter().cloned().collect::<Vec<_>>());
        // Without encoding, the XML still carries every key exactly,
        // control characters included.
        let plain = client
            .list_objects_v2()
            .bucket("awkward")
            .send()
            .await
            .unwrap();
        let listed: Vec<String> = plain
            .contents()
            .iter()
            .map(|o| o.key().unwrap().to_owned())
            .collect();
        assert_eq!(listed, keys.iter().cloned().collect::<Vec<_>>());
        // Prefix, delimiter and common prefixes are encoded too.
        let output = client
            .list_objects()
            .bucket("awkward")
            .prefix("unicodé")
            .delimiter("/")
            .encoding_type(EncodingType::Url)
            .send()
            .await
            .unwrap();
        // v1 returns its top-level prefix as sent (see the test below).
        assert_eq!(output.prefix(), Some("unicodé"));
        assert_eq!(output.common_prefixes()[0].prefix(), Some("unicod%C3%A9/"));
    });
}

/// Goal: under `encoding-type=url`, v1 encodes the elements AWS encodes
/// (`Key`, `CommonPrefixes`, `Delimiter`, `Marker`, `NextMarker`) and returns
/// its top-level `Prefix` as sent, even a prefix of control characters;
/// v2 encodes its `Prefix` (and `StartAfter`) too. Evidence for AWS's
/// behaviour: botocore asks for `encoding-type=url` on every v1 listing
/// and decodes exactly those five v1 elements, never `Prefix`; ceph's
/// s3-tests `test_bucket_list_prefix_unreadable` expects a prefix of
/// `"\n"` back as sent through it. Regression (issue 12): v1 encoded its
/// `Prefix`. Method: the SDK (which decodes nothing) and the raw XML.
#[test]
fn url_encoding_type_returns_the_v1_prefix_as_sent() {
    let server = Server::start();
    let client = server.client();
    let prefix = "\u{1}\u{2}\n";
    common::block_on(async {
        create_bucket(&client, "unreadable").await;
        put_all(
            &client,
            "unreadable",
            [
                "\u{1}\u{2}\na b/1",
                "\u{1}\u{2}\na+b",
                "\u{1}\u{2}\nz",
                "other",
            ]
            .into_iter()
            .map(str::to_owned),
        )
        .await;
        let page = client
            .list_objects()
            .bucket("unreadable")
            .prefix(prefix)
            .delimiter("/")
            .marker("\u{1}\u{2}\na")
            .max_keys(1)
            .encoding_type(EncodingType::Url)
            .send()
            .await
            .unwrap();
        assert_eq!(page.prefix(), Some(prefix), "the v1 prefix is as sent");
        assert_eq!(page.marker(), Some("%01%02%0Aa"));
        assert_eq!(page.delimiter(), Some("/"));
        assert_eq!(page.common_prefixes().len(), 1);
        assert_eq!(page.common_prefixes()[0].prefix(), Some("%01%02%0Aa%20b/"));
        assert_eq!(page.is_truncated(), Some(true));
        assert_eq!(page.next_marker(), Some("%01%02%0Aa%20b/"));
        let rest = client
            .list_objects()
            .bucket("unreadable")
            .prefix(prefix)
            .delimiter("/")
            .marker("\u{1}\u{2}\na b/")
            .encoding_type(EncodingType::Url)
            .send()
            .await
            .unwrap();
        assert_eq!(rest.prefix(), Some(prefix));
        let keys: Vec<&str> = rest.contents().iter().filter_map(|o| o.key()).collect();
        assert_eq!(keys, ["%01%02%0Aa%2Bb", "%01%02%0Az"]);
        // v2 encodes its prefix and start-after.
        let v2 = client
            .list_objects_v2()
            .bucket("unreadable")
            .prefix(prefix)
            .start_after("\u{1}\u{2}\na+")
            .encoding_type(EncodingType::Url)
            .send()
            .await
            .unwrap();
        assert_eq!(v2.prefix(), Some("%01%02%0A"));
        assert_eq!(v2.start_after(), Some("%01%02%0Aa%2B"));
        let keys: Vec<&str> = v2.contents().iter().filter_map(|o| o.key()).collect();
        assert_eq!(keys, ["%01%02%0Aa%2Bb", "%01%02%0Az"]);
    });
    // The raw XML: the v1 prefix escaped for XML only, next to the encoded
    // marker and delimiter.
    let raw = server.send_signed(&server.request(
        "GET",
        "/unreadable?encoding-type=url&prefix=%01%02%0A&delimiter=%2B&marker=%01%02%0Aa",
    ));
    assert_eq!(raw.status, 200, "{}", raw.text());
    assert!(
        raw.text().contains(
            "<Prefix>&#1;&#2;\n</Prefix><Marker>%01%02%0Aa</Marker><MaxKeys>1000</MaxKeys>\
             <Delimiter>%2B</Delimiter>"
        ),
        "{}",
        raw.text()
    );
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            out.push(u8::from_str_radix(&text[i + 1..i + 3], 16).unwrap());
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).unwrap()
}
