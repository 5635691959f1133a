//! `SigV4` verification cost per request: the AWS `GetObject` example, with the
//! per-core signing-key cache warm (every request after the first of a day)
//! and cold (key derivation included).

use std::time::{Duration, SystemTime};

use criterion::{Criterion, criterion_group, criterion_main};
use http::{HeaderMap, HeaderValue};
use ringstore::auth::{CredentialStore, Credentials, RequestView, SigningKeyCache, authenticate};

fn example() -> (HeaderMap, CredentialStore, SystemTime) {
    let mut headers = HeaderMap::new();
    for (name, value) in [
        ("host", "examplebucket.s3.amazonaws.com"),
        ("range", "bytes=0-9"),
        (
            "x-amz-content-sha256",
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        ),
        ("x-amz-date", "20130524T000000Z"),
        (
            "authorization",
            "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request,\
             SignedHeaders=host;range;x-amz-content-sha256;x-amz-date,\
             Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41",
        ),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    let store: CredentialStore = std::iter::once(Credentials {
        access_key_id: "AKIAIOSFODNN7EXAMPLE".into(),
        secret_access_key: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY".into(),
    })
    .collect();
    let signed_at = ringstore::auth::AmzDate::parse_iso8601_basic("20130524T000000Z")
        .expect("the example date parses")
        .unix_seconds();
    let now =
        SystemTime::UNIX_EPOCH + Duration::from_secs(u64::try_from(signed_at).expect("after 1970"));
    (headers, store, now)
}

fn bench(c: &mut Criterion) {
    let (headers, store, now) = example();
    let view = RequestView {
        method: "GET",
        path: "/test.txt",
        query: None,
        headers: &headers,
        virtual_host_bucket: None,
    };
    let mut warm = SigningKeyCache::new();
    authenticate(&view, &store, "us-east-1", now, &mut warm).expect("the AWS example verifies");
    c.bench_function("sigv4_verify_header_warm_key", |b| {
        b.iter(|| authenticate(&view, &store, "us-east-1", now, &mut warm).unwrap());
    });
    c.bench_function("sigv4_verify_header_cold_key", |b| {
        b.iter(|| {
            let mut cold = SigningKeyCache::new();
            authenticate(&view, &store, "us-east-1", now, &mut cold).unwrap()
        });
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
