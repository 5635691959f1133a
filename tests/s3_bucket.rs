//! Bucket operations against the real binary: `ListBuckets`, `CreateBucket`,
//! `HeadBucket`, `DeleteBucket`, `GetBucketLocation`, through the official SDK
//! (which must work unmodified) and through raw requests where the exact
//! status or header matters; path style and virtual-hosted style; across
//! cores and across restarts; and the 501 of operations that are not
//! implemented.

mod common;

use aws_sdk_s3::types::{BucketCannedAcl, BucketLocationConstraint, CreateBucketConfiguration};
use common::{Server, ServerOptions, create_bucket_configuration, expect_sdk_error, sdk_failure};

async fn bucket_names(client: &aws_sdk_s3::Client) -> Vec<String> {
    let output = client.list_buckets().send().await.expect("ListBuckets");
    output
        .buckets()
        .iter()
        .map(|bucket| bucket.name().expect("bucket has a name").to_owned())
        .collect()
}

/// `HeadBucket` through the SDK must fail with 404 (no body, so the SDK's
/// `NotFound`).
async fn assert_head_bucket_404(client: &aws_sdk_s3::Client, bucket: &str) {
    let error = client
        .head_bucket()
        .bucket(bucket)
        .send()
        .await
        .expect_err("HeadBucket of a missing bucket must fail");
    let failure = sdk_failure(&error);
    assert_eq!(failure.status, 404, "{failure:?}");
    assert!(failure.request_id.is_some_and(|id| !id.is_empty()));
    assert!(error.into_service_error().is_not_found());
}

/// Goal: the whole life of a bucket through the SDK, in the order a client
/// sees it, with the answers of us-east-1 (the default region).
async fn bucket_lifecycle(server: &Server) {
    let client = server.client();
    let bucket = "lifecycle-bucket";
    assert!(bucket_names(&client).await.is_empty());

    client
        .create_bucket()
        .bucket(bucket)
        .send()
        .await
        .expect("CreateBucket");
    assert_eq!(bucket_names(&client).await, [bucket]);

    let head = client
        .head_bucket()
        .bucket(bucket)
        .send()
        .await
        .expect("HeadBucket");
    assert_eq!(head.bucket_region(), Some("us-east-1"));

    let location = client
        .get_bucket_location()
        .bucket(bucket)
        .send()
        .await
        .expect("GetBucketLocation");
    // AWS answers us-east-1 with an empty LocationConstraint.
    let constraint = location
        .location_constraint()
        .map(BucketLocationConstraint::as_str);
    assert!(
        matches!(constraint, None | Some("")),
        "us-east-1 is an empty LocationConstraint, got {constraint:?}"
    );

    // In us-east-1 a repeated CreateBucket by the owner succeeds.
    client
        .create_bucket()
        .bucket(bucket)
        .send()
        .await
        .expect("repeated CreateBucket in us-east-1");
    assert_eq!(bucket_names(&client).await, [bucket], "no duplicate entry");

    client
        .delete_bucket()
        .bucket(bucket)
        .send()
        .await
        .expect("DeleteBucket");
    assert_head_bucket_404(&client, bucket).await;
    expect_sdk_error(
        client.delete_bucket().bucket(bucket).send().await,
        404,
        "NoSuchBucket",
    );
    expect_sdk_error(
        client.get_bucket_location().bucket(bucket).send().await,
        404,
        "NoSuchBucket",
    );
    assert!(bucket_names(&client).await.is_empty());

    // The name is free again.
    client
        .create_bucket()
        .bucket(bucket)
        .send()
        .await
        .expect("CreateBucket after delete");
    assert_eq!(bucket_names(&client).await, [bucket]);
}

#[tokio::test]
async fn bucket_lifecycle_on_one_core() {
    let server = ServerOptions::new().cores(1).start();
    bucket_lifecycle(&server).await;
}

#[tokio::test]
async fn bucket_lifecycle_on_every_core() {
    let server = Server::start();
    bucket_lifecycle(&server).await;
}

/// Goal: the exact statuses and headers of each bucket operation, which the
/// SDK hides (it accepts any 2xx).
#[test]
fn bucket_operations_answer_exact_statuses_and_headers() {
    let server = Server::start();
    let created = server.send_signed(&server.request("PUT", "/raw-bucket"));
    assert_eq!(created.status, 200, "{}", created.text());
    assert_eq!(created.header("location"), Some("/raw-bucket"));
    assert!(!created.request_id().is_empty());

    let head = server.send_signed(&server.request("HEAD", "/raw-bucket"));
    assert_eq!(head.status, 200);
    assert_eq!(head.header("x-amz-bucket-region"), Some("us-east-1"));

    let location = server.send_signed(&server.request("GET", "/raw-bucket?location"));
    assert_eq!(location.status, 200, "{}", location.text());
    assert!(
        location.text().contains("<LocationConstraint"),
        "{}",
        location.text()
    );

    let list = server.send_signed(&server.request("GET", "/"));
    assert_eq!(list.status, 200);
    assert!(
        list.header("content-type")
            .is_some_and(|value| value.contains("xml"))
    );
    assert_eq!(
        common::xml_elements(&list.text(), "Name"),
        ["raw-bucket"],
        "{}",
        list.text()
    );
    assert!(list.text().contains("<Owner>"), "{}", list.text());

    let deleted = server.send_signed(&server.request("DELETE", "/raw-bucket"));
    assert_eq!(deleted.status, 204, "{}", deleted.text());
    assert!(deleted.body.is_empty());

    let head = server.send_signed(&server.request("HEAD", "/raw-bucket"));
    assert_eq!(head.status, 404);
    assert!(head.body.is_empty(), "a HEAD response has no body");
    let text = server
        .send_signed(&server.request("DELETE", "/raw-bucket"))
        .assert_s3_error(404, "NoSuchBucket");
    assert_eq!(
        common::xml_element(&text, "Resource").as_deref(),
        Some("/raw-bucket")
    );
    assert_eq!(
        common::xml_element(&text, "BucketName").as_deref(),
        Some("raw-bucket")
    );
    server
        .send_signed(&server.request("GET", "/raw-bucket?location"))
        .assert_s3_error(404, "NoSuchBucket");
}

/// Goal: names AWS refuses are refused with `400 InvalidBucketName`, and
/// none of them is created.
#[test]
fn invalid_bucket_names_are_refused() {
    let server = Server::start();
    let too_long = "a".repeat(64);
    let invalid = [
        "ab",
        too_long.as_str(),
        "UpperCase",
        "under_score",
        "-leading-hyphen",
        "trailing-hyphen-",
        ".leading-dot",
        "two..dots",
        "192.168.5.4",
        "xn--reserved-prefix",
        "sthree-reserved",
        "reserved-suffix-s3alias",
        "reserved-suffix--ol-s3",
    ];
    for name in invalid {
        let response = server.send_signed(&server.request("PUT", &format!("/{name}")));
        response.assert_s3_error(400, "InvalidBucketName");
    }
    // The limits themselves are valid.
    let longest = "b".repeat(63);
    for name in ["abc", longest.as_str(), "dots.and-hyphens.9"] {
        let response = server.send_signed(&server.request("PUT", &format!("/{name}")));
        assert_eq!(response.status, 200, "{name}: {}", response.text());
    }
    let list = server.send_signed(&server.request("GET", "/"));
    let mut names = common::xml_elements(&list.text(), "Name");
    names.sort();
    let mut expected = vec![
        "abc".to_owned(),
        longest.clone(),
        "dots.and-hyphens.9".to_owned(),
    ];
    expected.sort();
    assert_eq!(names, expected);
}

#[tokio::test]
async fn sdk_invalid_bucket_name_is_refused() {
    let server = Server::start();
    let client = server.client();
    expect_sdk_error(
        client.create_bucket().bucket("not_valid").send().await,
        400,
        "InvalidBucketName",
    );
    assert!(bucket_names(&client).await.is_empty());
}

/// Goal: a server in another region creates buckets there when the
/// configuration names its region, refuses any other `LocationConstraint`,
/// and answers a repeated create with 409 `BucketAlreadyOwnedByYou` (only
/// us-east-1 keeps the legacy 200).
#[tokio::test]
async fn create_bucket_configuration_in_the_server_region() {
    let server = ServerOptions::new().region("eu-west-1").start();
    let client = server.client();
    let here = CreateBucketConfiguration::builder()
        .location_constraint(BucketLocationConstraint::EuWest1)
        .build();
    client
        .create_bucket()
        .bucket("eu-bucket")
        .create_bucket_configuration(here.clone())
        .send()
        .await
        .expect("CreateBucket in the server's region");

    let head = client
        .head_bucket()
        .bucket("eu-bucket")
        .send()
        .await
        .expect("HeadBucket");
    assert_eq!(head.bucket_region(), Some("eu-west-1"));
    let location = client
        .get_bucket_location()
        .bucket("eu-bucket")
        .send()
        .await
        .expect("GetBucketLocation");
    assert_eq!(
        location.location_constraint(),
        Some(&BucketLocationConstraint::EuWest1)
    );

    expect_sdk_error(
        client
            .create_bucket()
            .bucket("eu-bucket")
            .create_bucket_configuration(here)
            .send()
            .await,
        409,
        "BucketAlreadyOwnedByYou",
    );

    let elsewhere = CreateBucketConfiguration::builder()
        .location_constraint(BucketLocationConstraint::UsWest2)
        .build();
    expect_sdk_error(
        client
            .create_bucket()
            .bucket("west-bucket")
            .create_bucket_configuration(elsewhere)
            .send()
            .await,
        400,
        "InvalidLocationConstraint",
    );
    assert_eq!(bucket_names(&client).await, ["eu-bucket"]);
}

#[tokio::test]
async fn create_bucket_configuration_with_another_region_is_refused() {
    let server = Server::start();
    let client = server.client();
    let configuration = CreateBucketConfiguration::builder()
        .location_constraint(BucketLocationConstraint::EuWest1)
        .build();
    expect_sdk_error(
        client
            .create_bucket()
            .bucket("wrong-region")
            .create_bucket_configuration(configuration)
            .send()
            .await,
        400,
        "InvalidLocationConstraint",
    );
    assert_head_bucket_404(&client, "wrong-region").await;

    // An empty configuration (no LocationConstraint) is us-east-1.
    let response = server.send_signed(
        &server
            .request("PUT", "/empty-configuration")
            .body(create_bucket_configuration(None).as_bytes()),
    );
    assert_eq!(response.status, 200, "{}", response.text());
}

#[test]
fn malformed_create_bucket_configuration_is_malformed_xml() {
    let server = Server::start();
    let response = server.send_signed(
        &server
            .request("PUT", "/malformed-xml")
            .body(b"<CreateBucketConfiguration><LocationConstraint>"),
    );
    response.assert_s3_error(400, "MalformedXML");
    let head = server.send_signed(&server.request("HEAD", "/malformed-xml"));
    assert_eq!(head.status, 404);
}

/// Goal: buckets survive a restart (SIGTERM, start on the same data dir).
#[tokio::test]
async fn restart_keeps_buckets() {
    let mut server = Server::start();
    let names = ["keep-one", "keep-three", "keep-two"];
    {
        let client = server.client();
        for name in names {
            client
                .create_bucket()
                .bucket(name)
                .send()
                .await
                .expect("CreateBucket");
        }
        client
            .create_bucket()
            .bucket("deleted-before-restart")
            .send()
            .await
            .expect("CreateBucket");
        client
            .delete_bucket()
            .bucket("deleted-before-restart")
            .send()
            .await
            .expect("DeleteBucket");
    }
    server.restart();
    let client = server.client();
    assert_eq!(bucket_names(&client).await, names);
    for name in names {
        client
            .head_bucket()
            .bucket(name)
            .send()
            .await
            .expect("HeadBucket after restart");
    }
    assert_head_bucket_404(&client, "deleted-before-restart").await;
}

/// Goal: the bucket catalog is one truth for every core. Method: each
/// create, head and list goes over a new connection, so the kernel spreads
/// them over the cores' `SO_REUSEPORT` sockets; every core must see every
/// bucket at once, and `ListBuckets` sorts names as AWS does.
#[test]
fn every_core_sees_every_bucket() {
    let server = Server::start();
    let names = [
        "core-e", "core-b", "core-j", "core-a", "core-h", "core-c", "core-i", "core-d", "core-g",
        "core-f",
    ];
    for name in names {
        let created = server.send_signed(&server.request("PUT", &format!("/{name}")));
        assert_eq!(created.status, 200, "{}", created.text());
        for other in names.iter().take_while(|other| **other != name) {
            let head = server.send_signed(&server.request("HEAD", &format!("/{other}")));
            assert_eq!(head.status, 200, "{other} after creating {name}");
        }
    }
    let mut sorted = names.to_vec();
    sorted.sort_unstable();
    for _ in 0..4 {
        let list = server.send_signed(&server.request("GET", "/"));
        assert_eq!(common::xml_elements(&list.text(), "Name"), sorted);
    }
    for name in names {
        let deleted = server.send_signed(&server.request("DELETE", &format!("/{name}")));
        assert_eq!(deleted.status, 204);
    }
    for _ in 0..4 {
        let list = server.send_signed(&server.request("GET", "/"));
        assert!(
            common::xml_elements(&list.text(), "Name").is_empty(),
            "{}",
            list.text()
        );
    }
}

/// Goal: an operation that is not implemented answers `501
/// NotImplemented` as S3 XML with a request id, never falling through to
/// another operation. Method: operations that S3-SCOPE.md does not plan
/// (website, replication, notifications), so the test stays true as the
/// server grows.
#[tokio::test]
async fn unimplemented_operations_answer_501() {
    let server = Server::start();
    let client = server.client();
    client
        .create_bucket()
        .bucket("unimplemented")
        .send()
        .await
        .expect("CreateBucket");

    expect_sdk_error(
        client
            .get_bucket_website()
            .bucket("unimplemented")
            .send()
            .await,
        501,
        "NotImplemented",
    );
    expect_sdk_error(
        client
            .get_bucket_replication()
            .bucket("unimplemented")
            .send()
            .await,
        501,
        "NotImplemented",
    );
    expect_sdk_error(
        client
            .get_bucket_notification_configuration()
            .bucket("unimplemented")
            .send()
            .await,
        501,
        "NotImplemented",
    );
    expect_sdk_error(
        client
            .delete_bucket_website()
            .bucket("unimplemented")
            .send()
            .await,
        501,
        "NotImplemented",
    );

    for target in ["/unimplemented?website", "/unimplemented?replication"] {
        let response = server.send_signed(&server.request("GET", target));
        let text = response.assert_s3_error(501, "NotImplemented");
        assert_eq!(
            common::xml_element(&text, "Resource").as_deref(),
            Some("/unimplemented"),
            "{text}"
        );
    }
    // DELETE ?website must not have deleted the bucket.
    let head = server.send_signed(&server.request("HEAD", "/unimplemented"));
    assert_eq!(head.status, 200);
}

/// Goal: virtual-hosted style (`Host: bucket.localhost:PORT`) reaches the
/// same operations as path style. Method: raw requests to 127.0.0.1 with
/// that Host header (signed, as the SDK would), since `*.localhost` need
/// not resolve on the test machine.
#[test]
fn virtual_hosted_style_requests() {
    let server = Server::start();
    let host = format!("vhost-bucket.localhost:{}", server.addr.port());
    let request = |method: &str, target: &str| server.request(method, target).host(&host);

    let created = server.send_signed(&request("PUT", "/"));
    assert_eq!(created.status, 200, "{}", created.text());

    // Path style sees it.
    let list = server.send_signed(&server.request("GET", "/"));
    assert_eq!(common::xml_elements(&list.text(), "Name"), ["vhost-bucket"]);

    let head = server.send_signed(&request("HEAD", "/"));
    assert_eq!(head.status, 200);
    assert_eq!(head.header("x-amz-bucket-region"), Some("us-east-1"));

    let location = server.send_signed(&request("GET", "/?location"));
    assert_eq!(location.status, 200, "{}", location.text());
    assert!(
        location.text().contains("<LocationConstraint"),
        "{}",
        location.text()
    );

    server
        .send_signed(&request("GET", "/?website"))
        .assert_s3_error(501, "NotImplemented");

    // The domain itself is path style.
    let apex = format!("localhost:{}", server.addr.port());
    let head = server.send_signed(&server.request("HEAD", "/vhost-bucket").host(&apex));
    assert_eq!(head.status, 200);

    let missing = format!("missing-bucket.localhost:{}", server.addr.port());
    let head = server.send_signed(&server.request("HEAD", "/").host(&missing));
    assert_eq!(head.status, 404);

    let deleted = server.send_signed(&request("DELETE", "/"));
    assert_eq!(deleted.status, 204, "{}", deleted.text());
    let head = server.send_signed(&request("HEAD", "/"));
    assert_eq!(head.status, 404);
}

#[test]
fn virtual_host_domains_come_from_the_config() {
    let server = ServerOptions::new()
        .config("virtual_host_domains = [\"s3.example.test\"]")
        .start();
    let host = format!("configured.s3.example.test:{}", server.addr.port());
    let created = server.send_signed(&server.request("PUT", "/").host(&host));
    assert_eq!(created.status, 200, "{}", created.text());
    let head = server.send_signed(&server.request("HEAD", "/configured"));
    assert_eq!(head.status, 200);
}

/// Goal: concurrent creates of one name from many connections (so, many
/// cores) have one winner: in a region other than us-east-1 exactly one
/// gets 200 and every other one 409 `BucketAlreadyOwnedByYou`; concurrent
/// creates of distinct names all land.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_creates_have_one_winner() {
    const RACERS: usize = 8;
    let server = ServerOptions::new().region("eu-west-1").start();
    let configuration = CreateBucketConfiguration::builder()
        .location_constraint(BucketLocationConstraint::EuWest1)
        .build();

    let mut racers = tokio::task::JoinSet::new();
    for _ in 0..RACERS {
        // One client each: separate connection pools, so separate cores.
        let client = server.client();
        let configuration = configuration.clone();
        racers.spawn(async move {
            client
                .create_bucket()
                .bucket("contended")
                .create_bucket_configuration(configuration)
                .send()
                .await
        });
    }
    let mut winners = 0;
    while let Some(outcome) = racers.join_next().await {
        match outcome.expect("task") {
            Ok(_) => winners += 1,
            Err(error) => {
                let failure = sdk_failure(&error);
                assert_eq!(
                    (failure.status, failure.code.as_deref()),
                    (409, Some("BucketAlreadyOwnedByYou")),
                    "{failure:?}"
                );
            }
        }
    }
    assert_eq!(winners, 1, "exactly one concurrent CreateBucket may win");

    let mut creators = tokio::task::JoinSet::new();
    for index in 0..RACERS {
        let client = server.client();
        let configuration = configuration.clone();
        creators.spawn(async move {
            client
                .create_bucket()
                .bucket(format!("parallel-{index}"))
                .create_bucket_configuration(configuration)
                .send()
                .await
        });
    }
    while let Some(outcome) = creators.join_next().await {
        outcome
            .expect("task")
            .expect("CreateBucket of a distinct name");
    }
    let names = bucket_names(&server.client()).await;
    let mut expected: Vec<String> = (0..RACERS)
        .map(|index| format!("parallel-{index}"))
        .collect();
    expected.insert(0, "contended".to_owned());
    expected.sort();
    assert_eq!(names, expected);
}

/// Goal: `ListBuckets` pages with `max-buckets` and `continuation-token`
/// and filters with `prefix`, in name order. Method: the SDK's paginator.
#[tokio::test]
async fn list_buckets_pages_and_prefix() {
    let server = Server::start();
    let client = server.client();
    let names = ["page-a", "page-b", "page-c", "page-d", "page-e", "other-x"];
    for name in names {
        client
            .create_bucket()
            .bucket(name)
            .send()
            .await
            .expect("CreateBucket");
    }
    let mut pages = Vec::new();
    let mut paginator = client.list_buckets().max_buckets(2).into_paginator().send();
    while let Some(page) = paginator.next().await {
        let page = page.expect("ListBuckets page");
        pages.push(
            page.buckets()
                .iter()
                .map(|bucket| bucket.name().unwrap_or_default().to_owned())
                .collect::<Vec<_>>(),
        );
        assert!(pages.len() <= 4, "too many pages: {pages:?}");
    }
    assert_eq!(
        pages,
        [
            vec!["other-x", "page-a"],
            vec!["page-b", "page-c"],
            vec!["page-d", "page-e"],
        ]
    );

    let filtered = client
        .list_buckets()
        .prefix("page-")
        .send()
        .await
        .expect("ListBuckets with prefix");
    let filtered: Vec<&str> = filtered
        .buckets()
        .iter()
        .filter_map(|bucket| bucket.name())
        .collect();
    assert_eq!(filtered, ["page-a", "page-b", "page-c", "page-d", "page-e"]);
}

/// Goal: `CreateBucket` takes `x-amz-acl: bucket-owner-full-control`
/// wherever it takes `private`: it is the one canned ACL AWS accepts on
/// buckets with ACLs disabled, and rclone and Hadoop's S3A send it by
/// configuration. Any other canned ACL is refused, and the refusal names
/// the header. Regression (issue 12): `bucket-owner-full-control` was
/// refused with 501.
#[tokio::test]
async fn create_bucket_takes_bucket_owner_full_control_and_names_the_header_it_refuses() {
    let server = Server::start();
    let client = server.client();
    for (bucket, acl) in [
        // Not a bucket ACL in the SDK's model, but what rclone sends on
        // CreateBucket when its `acl` is set and its `bucket_acl` is not.
        (
            "owner-full",
            BucketCannedAcl::from("bucket-owner-full-control"),
        ),
        ("private", BucketCannedAcl::Private),
    ] {
        client
            .create_bucket()
            .bucket(bucket)
            .acl(acl.clone())
            .send()
            .await
            .unwrap_or_else(|error| panic!("CreateBucket with {acl:?}: {error:?}"));
        client.head_bucket().bucket(bucket).send().await.unwrap();
    }
    for value in ["public-read", "authenticated-read"] {
        let response = server.send_signed(
            &server
                .request("PUT", "/refused-acl")
                .header("x-amz-acl", value),
        );
        common::assert_canned_acl_refused(&response, value);
        assert_head_bucket_404(&client, "refused-acl").await;
    }
}
