//! `GetObject` and `HeadObject` beyond the plain round trip (which
//! `s3_object.rs` covers): the four preconditions and the `response-*`
//! override parameters, against the real binary.
//!
//! What is covered: `If-Match`, `If-None-Match`, `If-Modified-Since` and
//! `If-Unmodified-Since` alone and in the combinations whose precedence
//! AWS documents, on GET and HEAD; the exact statuses (`412` with the S3
//! error document and its `<Condition>`, `304` with no body and the
//! object's `ETag` and `Last-Modified`); entity tags quoted, unquoted, in
//! lists, `*` and weak; HTTP-dates in all three formats, unparseable and
//! in the future; one-second granularity; conditions together with
//! `Range`; a missing object; the SDK's own condition parameters; each
//! `response-*` override on GET, ranged GET and HEAD, and the values AWS
//! refuses.
//!
//! Method: raw signed requests where the exact header bytes or statuses
//! matter (the SDK only sends IMF-fixdates, and turns 304 and 412 into
//! errors), the SDK where a client's view matters. Every expected value is
//! computed from the object as stored (its `ETag`, its `Last-Modified`), never
//! copied from a response.

mod common;

use std::io::{Read as _, Write as _};
use std::time::{Duration, SystemTime};

use aws_sdk_s3::Client;
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::SdkError;
use aws_sdk_s3::primitives::{DateTime, DateTimeFormat};
use common::{RawResponse, Server, expect_sdk_error};
use md5::{Digest as _, Md5};

const BUCKET: &str = "conditions";
const KEY: &str = "object.txt";
const PATH: &str = "/conditions/object.txt";
/// Long enough for ranges, short enough to compare whole.
const DATA: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";

/// The stored system metadata, sent with the PUT.
const CONTENT_TYPE: &str = "text/plain";
const CACHE_CONTROL: &str = "max-age=60";
const EXPIRES: &str = "Thu, 01 Dec 1994 16:00:00 GMT";
const CONTENT_LANGUAGE: &str = "en";
const CONTENT_DISPOSITION: &str = "inline";
const CONTENT_ENCODING: &str = "identity";

/// A server with one object, and what a client knows of that object.
struct Fixture {
    server: Server,
    client: Client,
    /// The `ETag` header value, quotes included.
    etag: String,
    /// `Last-Modified`, as the server sent it (whole seconds).
    modified: SystemTime,
}

impl Fixture {
    async fn start() -> Fixture {
        let server = Server::start();
        let client = server.client();
        client
            .create_bucket()
            .bucket(BUCKET)
            .send()
            .await
            .expect("CreateBucket");
        let put = server.send_signed(
            &server
                .request("PUT", PATH)
                .header("Content-Type", CONTENT_TYPE)
                .header("Cache-Control", CACHE_CONTROL)
                .header("Expires", EXPIRES)
                .header("Content-Language", CONTENT_LANGUAGE)
                .header("Content-Disposition", CONTENT_DISPOSITION)
                .header("Content-Encoding", CONTENT_ENCODING)
                .body(DATA),
        );
        assert_eq!(put.status, 200, "PUT: {}", put.text());
        let etag = format!("\"{}\"", hex::encode(Md5::digest(DATA)));
        assert_eq!(put.header("etag"), Some(etag.as_str()));
        let head = server.send_signed(&server.request("HEAD", PATH));
        assert_eq!(head.status, 200);
        let modified = head
            .header("last-modified")
            .and_then(|value| httpdate::parse_http_date(value).ok())
            .expect("HEAD has a Last-Modified IMF-fixdate");
        Fixture {
            server,
            client,
            etag,
            modified,
        }
    }

    /// The `ETag` without its quotes.
    fn opaque(&self) -> &str {
        self.etag.trim_matches('"')
    }

    /// `Last-Modified` moved by `seconds`.
    fn modified_plus(&self, seconds: i64) -> SystemTime {
        let offset = Duration::from_secs(seconds.unsigned_abs());
        if seconds < 0 {
            self.modified - offset
        } else {
            self.modified + offset
        }
    }

    /// A signed request with these extra headers, on a fresh connection.
    fn send(&self, method: &str, target: &str, headers: &[(&str, &str)]) -> RawResponse {
        self.server.send(&self.request(method, target, headers))
    }

    fn request(&self, method: &str, target: &str, headers: &[(&str, &str)]) -> Vec<u8> {
        let mut request = self.server.request(method, target);
        for (name, value) in headers {
            request = request.header(name, value);
        }
        self.server.sign(&request)
    }

    /// GET and HEAD of the object with these headers: both must have
    /// `status`, and each is checked for what that status must carry.
    #[track_caller]
    fn assert_status(&self, headers: &[(&str, &str)], status: u16, condition: Option<&str>) {
        let what = format!("{headers:?}");
        let get = self.send("GET", PATH, headers);
        let head = self.send("HEAD", PATH, headers);
        assert_eq!(get.status, status, "GET {what}: {}", get.text());
        assert_eq!(head.status, status, "HEAD {what}");
        match status {
            200 => {
                assert_eq!(get.body, DATA, "GET {what}");
                assert_eq!(head.header("content-length"), Some("36"), "HEAD {what}");
            }
            304 => {
                self.assert_not_modified(&get, &what);
                self.assert_not_modified(&head, &what);
            }
            412 => {
                get.assert_s3_error(412, "PreconditionFailed");
                assert_eq!(
                    get.xml_element("Condition").as_deref(),
                    condition,
                    "GET {what}"
                );
                assert!(head.body.is_empty(), "HEAD {what}");
                assert!(!head.request_id().is_empty());
            }
            _ => unreachable!("no status {status} here"),
        }
    }

    /// A 304 as RFC 9110 and AWS send it: no body, the validators, the
    /// caching headers, no content headers.
    #[track_caller]
    fn assert_not_modified(&self, response: &RawResponse, what: &str) {
        assert_eq!(response.status, 304, "{what}");
        assert!(response.body.is_empty(), "{what}");
        assert_eq!(response.header("etag"), Some(self.etag.as_str()), "{what}");
        assert_eq!(
            response.header("last-modified"),
            Some(httpdate::fmt_http_date(self.modified).as_str()),
            "{what}"
        );
        assert_eq!(
            response.header("cache-control"),
            Some(CACHE_CONTROL),
            "{what}"
        );
        assert_eq!(response.header("expires"), Some(EXPIRES), "{what}");
        for absent in [
            "content-length",
            "content-type",
            "content-range",
            "content-encoding",
            "transfer-encoding",
        ] {
            assert_eq!(response.header(absent), None, "{what}: {absent}");
        }
        assert!(!response.request_id().is_empty());
    }
}

/// One of the three HTTP-date formats of RFC 9110 §5.6.7.
type DateFormat = fn(SystemTime) -> String;

/// `Sun, 06 Nov 1994 08:49:37 GMT`.
fn imf_fixdate(time: SystemTime) -> String {
    httpdate::fmt_http_date(time)
}

/// `Sunday, 06-Nov-94 08:49:37 GMT`.
fn rfc850_date(time: SystemTime) -> String {
    let imf = imf_fixdate(time);
    let day = match &imf[..3] {
        "Mon" => "Monday",
        "Tue" => "Tuesday",
        "Wed" => "Wednesday",
        "Thu" => "Thursday",
        "Fri" => "Friday",
        "Sat" => "Saturday",
        "Sun" => "Sunday",
        other => panic!("day name {other:?}"),
    };
    format!(
        "{day}, {}-{}-{} {} GMT",
        &imf[5..7],
        &imf[8..11],
        &imf[14..16],
        &imf[17..25]
    )
}

/// `Sun Nov  6 08:49:37 1994`.
fn asctime_date(time: SystemTime) -> String {
    let imf = imf_fixdate(time);
    let day: u32 = imf[5..7].parse().expect("day of month");
    format!(
        "{} {} {day:>2} {} {}",
        &imf[..3],
        &imf[8..11],
        &imf[17..25],
        &imf[12..16]
    )
}

// ---------------------------------------------------------------------------
// Each condition alone
// ---------------------------------------------------------------------------

/// Goal: `If-Match` serves the object when a listed tag is the object's
/// under the strong comparison, and is `412` naming `If-Match` otherwise.
#[tokio::test]
async fn if_match_serves_or_fails_with_412() {
    let fixture = Fixture::start().await;
    let etag = fixture.etag.clone();
    let opaque = fixture.opaque().to_owned();
    let upper = etag.to_uppercase();
    let matching = [
        etag.clone(),
        opaque.clone(),
        "*".to_owned(),
        format!("\"0000\", {etag}"),
        format!("\"0000\",{opaque}"),
        format!("\"a,b\" , {etag} ,"),
    ];
    for value in &matching {
        fixture.assert_status(&[("If-Match", value)], 200, None);
    }
    let failing = [
        "\"0000\"".to_owned(),
        "\"0000\", \"1111\"".to_owned(),
        format!("W/{etag}"),
        upper,
        format!("{etag}x"),
        "\"\"".to_owned(),
    ];
    for value in &failing {
        fixture.assert_status(&[("If-Match", value)], 412, Some("If-Match"));
    }
}

/// Goal: `If-None-Match` is `304` when a listed tag is the object's under
/// the weak comparison (so `W/"tag"` matches too) or is `*`, and serves the
/// object otherwise.
#[tokio::test]
async fn if_none_match_is_304_or_serves() {
    let fixture = Fixture::start().await;
    let etag = fixture.etag.clone();
    let opaque = fixture.opaque().to_owned();
    for value in [
        etag.clone(),
        opaque.clone(),
        "*".to_owned(),
        format!("W/{etag}"),
        format!("\"0000\", {etag}"),
        format!("\"0000\", W/\"1111\", {opaque}"),
    ] {
        fixture.assert_status(&[("If-None-Match", &value)], 304, None);
    }
    for value in ["\"0000\"", "\"0000\", W/\"1111\"", "0000"] {
        fixture.assert_status(&[("If-None-Match", value)], 200, None);
    }
}

/// Goal: the two date conditions in each HTTP-date format, at one-second
/// granularity: the object was modified within the second of its
/// `Last-Modified`, so it is not modified since that second, and is
/// modified since the second before.
#[tokio::test]
async fn date_conditions_in_all_three_formats() {
    let fixture = Fixture::start().await;
    let at = fixture.modified;
    let before = fixture.modified_plus(-1);
    let after = fixture.modified_plus(1);
    let formats: [(&str, DateFormat); 3] = [
        ("IMF-fixdate", imf_fixdate),
        ("RFC 850", rfc850_date),
        ("asctime", asctime_date),
    ];
    for (format, date) in formats {
        let (at, before, after) = (date(at), date(before), date(after));
        let what = format!("{format}: {at}");
        assert!(
            httpdate::parse_http_date(&at).ok() == Some(fixture.modified),
            "{what} is not the object's time"
        );
        fixture.assert_status(&[("If-Modified-Since", &at)], 304, None);
        // (Not `after` for If-Modified-Since: the object was written a
        // moment ago, so that second may still be in the future, which is
        // ignored; `invalid_and_future_dates_are_ignored` covers it.)
        fixture.assert_status(&[("If-Modified-Since", &before)], 200, None);
        fixture.assert_status(&[("If-Unmodified-Since", &at)], 200, None);
        fixture.assert_status(&[("If-Unmodified-Since", &after)], 200, None);
        fixture.assert_status(
            &[("If-Unmodified-Since", &before)],
            412,
            Some("If-Unmodified-Since"),
        );
    }
}

/// Goal: a date that is not an HTTP-date is ignored (AWS and RFC 9110), and
/// so is an `If-Modified-Since` in the future, which would otherwise say
/// "not modified" for everything.
#[tokio::test]
async fn invalid_and_future_dates_are_ignored() {
    let fixture = Fixture::start().await;
    let at = imf_fixdate(fixture.modified);
    let before = imf_fixdate(fixture.modified_plus(-1));
    let invalid = [
        "yesterday".to_owned(),
        String::new(),
        "0".to_owned(),
        at.replace("GMT", "UTC"),
        at.to_lowercase(),
        fixture
            .modified
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_secs()
            .to_string(),
        DateTime::from(fixture.modified_plus(-1))
            .fmt(DateTimeFormat::DateTime)
            .unwrap(),
    ];
    for value in &invalid {
        fixture.assert_status(&[("If-Modified-Since", value)], 200, None);
        fixture.assert_status(&[("If-Unmodified-Since", value)], 200, None);
    }
    // Proof that the invalid forms above would have decided something if
    // they were read: the valid IMF-fixdate of the second before fails.
    fixture.assert_status(
        &[("If-Unmodified-Since", &before)],
        412,
        Some("If-Unmodified-Since"),
    );
    let future = imf_fixdate(SystemTime::now() + Duration::from_hours(1));
    fixture.assert_status(&[("If-Modified-Since", &future)], 200, None);
    fixture.assert_status(&[("If-Unmodified-Since", &future)], 200, None);
}

// ---------------------------------------------------------------------------
// Precedence
// ---------------------------------------------------------------------------

/// Goal: the order of RFC 9110 §13.2.2 and the two combinations the AWS
/// `GetObject` page spells out: `If-Match` true with `If-Unmodified-Since`
/// false is `200`; `If-None-Match` false with `If-Modified-Since` true is
/// `304`; a `412` wins over a `304`.
#[tokio::test]
async fn precedence_follows_aws() {
    /// (If-Match, If-None-Match, If-Modified-Since, If-Unmodified-Since,
    /// status, `<Condition>`)
    type Row<'a> = (
        Option<&'a str>,
        Option<&'a str>,
        Option<&'a str>,
        Option<&'a str>,
        u16,
        Option<&'a str>,
    );
    let fixture = Fixture::start().await;
    let etag = fixture.etag.as_str();
    let other = "\"0000\"";
    let at = imf_fixdate(fixture.modified);
    let before = imf_fixdate(fixture.modified_plus(-1));
    let (at, before) = (at.as_str(), before.as_str());
    #[rustfmt::skip]
    let rows: [Row<'_>; 12] = [
        (Some(etag), None, None, Some(before), 200, None),
        (Some(other), None, None, Some(at), 412, Some("If-Match")),
        (None, Some(etag), Some(before), None, 304, None),
        (None, Some(other), Some(at), None, 200, None),
        (Some(other), Some(etag), None, None, 412, Some("If-Match")),
        (None, None, Some(at), Some(before), 412, Some("If-Unmodified-Since")),
        (Some(other), None, Some(at), None, 412, Some("If-Match")),
        (Some(etag), Some(etag), None, None, 304, None),
        (Some(etag), Some(other), Some(before), Some(at), 200, None),
        (Some("*"), None, Some(at), Some(before), 304, None),
        (Some(etag), None, Some(at), None, 304, None),
        (None, Some(other), Some(at), Some(before), 412, Some("If-Unmodified-Since")),
    ];
    for (if_match, if_none_match, if_modified_since, if_unmodified_since, status, condition) in rows
    {
        let headers: Vec<(&str, &str)> = [
            ("If-Match", if_match),
            ("If-None-Match", if_none_match),
            ("If-Modified-Since", if_modified_since),
            ("If-Unmodified-Since", if_unmodified_since),
        ]
        .into_iter()
        .filter_map(|(name, value)| Some((name, value?)))
        .collect();
        fixture.assert_status(&headers, status, condition);
    }
}

// ---------------------------------------------------------------------------
// Conditions with Range, a missing object, keep-alive
// ---------------------------------------------------------------------------

/// Goal: conditions are evaluated before `Range` (RFC 9110 §13.2.2): a
/// failed condition is `412` or `304` even for a range that is not
/// satisfiable, and a range is only served when the conditions hold.
#[tokio::test]
async fn conditions_come_before_range() {
    let fixture = Fixture::start().await;
    let etag = fixture.etag.as_str();
    let before = imf_fixdate(fixture.modified_plus(-1));

    for method in ["GET", "HEAD"] {
        let ranged = |range: &str, condition: (&str, &str)| {
            fixture.send(method, PATH, &[("Range", range), condition])
        };
        let served = ranged("bytes=2-5", ("If-Match", etag));
        assert_eq!(served.status, 206, "{method}");
        assert_eq!(served.header("content-range"), Some("bytes 2-5/36"));
        assert_eq!(served.header("content-length"), Some("4"));
        if method == "GET" {
            assert_eq!(served.body, &DATA[2..=5]);
        }
        let served = ranged("bytes=-3", ("If-Modified-Since", &before));
        assert_eq!(served.status, 206, "{method}");
        assert_eq!(served.header("content-range"), Some("bytes 33-35/36"));

        for range in ["bytes=2-5", "bytes=100-200"] {
            let failed = ranged(range, ("If-Match", "\"0000\""));
            assert_eq!(failed.status, 412, "{method} {range}");
            assert_eq!(failed.header("content-range"), None, "{method} {range}");
            let failed = ranged(range, ("If-Unmodified-Since", &before));
            assert_eq!(failed.status, 412, "{method} {range}");
            let not_modified = ranged(range, ("If-None-Match", etag));
            fixture.assert_not_modified(&not_modified, &format!("{method} {range}"));
        }
        let unsatisfiable = ranged("bytes=100-200", ("If-Match", etag));
        assert_eq!(unsatisfiable.status, 416, "{method}");
        assert_eq!(unsatisfiable.header("content-range"), Some("bytes */36"));
    }
    let failed = fixture.send(
        "GET",
        PATH,
        &[("Range", "bytes=100-200"), ("If-Match", "\"0000\"")],
    );
    failed.assert_s3_error(412, "PreconditionFailed");
    assert_eq!(failed.xml_element("Condition").as_deref(), Some("If-Match"));
}

/// Goal: conditions say nothing about an object that does not exist: a
/// missing key is `404 NoSuchKey` whatever they are (also `If-Match: *`,
/// which only a missing object fails, and `If-None-Match: *`).
#[tokio::test]
async fn missing_object_is_404_whatever_the_conditions() {
    let fixture = Fixture::start().await;
    let old = imf_fixdate(SystemTime::UNIX_EPOCH + Duration::from_hours(24));
    let now = imf_fixdate(SystemTime::now());
    let path = "/conditions/missing.txt";
    for headers in [
        [("If-Match", "*")],
        [("If-Match", fixture.etag.as_str())],
        [("If-None-Match", "*")],
        [("If-Unmodified-Since", old.as_str())],
        [("If-Modified-Since", now.as_str())],
    ] {
        let get = fixture.send("GET", path, &headers);
        get.assert_s3_error(404, "NoSuchKey");
        let head = fixture.send("HEAD", path, &headers);
        assert_eq!(head.status, 404, "HEAD {headers:?}");
        assert!(head.body.is_empty());
    }
}

/// Goal: `304` and `412` keep the connection usable: a 304 has no body and
/// no `Content-Length`, so a client that frames it right reads the next
/// response from the right place.
#[tokio::test]
async fn keep_alive_after_304_and_412() {
    let fixture = Fixture::start().await;
    let etag = fixture.etag.as_str();
    let mut conn = fixture.server.connect();
    for round in 0..2 {
        conn.send(&fixture.request("GET", PATH, &[("If-None-Match", etag)]));
        let response = conn.response();
        fixture.assert_not_modified(&response, &format!("round {round}"));
        assert!(!response.closes());
        conn.send(&fixture.request("HEAD", PATH, &[("If-Match", "\"0000\"")]));
        let response = conn.head_response();
        assert_eq!(response.status, 412);
        assert!(!response.closes());
        conn.send(&fixture.request("GET", PATH, &[("If-Match", "\"0000\"")]));
        let response = conn.response();
        response.assert_s3_error(412, "PreconditionFailed");
        assert!(!response.closes());
        conn.send(&fixture.request("GET", PATH, &[("If-Match", etag)]));
        let response = conn.response();
        assert_eq!(response.status, 200);
        assert_eq!(response.body, DATA);
    }
}

// ---------------------------------------------------------------------------
// Through the SDK
// ---------------------------------------------------------------------------

/// Goal: what an SDK user sees with the `if_*` parameters of `GetObject`
/// and `HeadObject`: the object, or a `PreconditionFailed` error.
#[tokio::test]
async fn sdk_conditions_serve_or_fail_with_412() {
    let fixture = Fixture::start().await;
    let client = &fixture.client;
    let etag = fixture.etag.as_str();
    let at = DateTime::from(fixture.modified);
    let before = DateTime::from(fixture.modified_plus(-1));

    let output = client
        .get_object()
        .bucket(BUCKET)
        .key(KEY)
        .if_match(etag)
        .if_none_match("\"0000\"")
        .if_modified_since(before)
        .if_unmodified_since(at)
        .send()
        .await
        .expect("every condition holds");
    assert_eq!(output.e_tag(), Some(etag));
    assert_eq!(output.body.collect().await.unwrap().to_vec(), DATA);
    let head = client
        .head_object()
        .bucket(BUCKET)
        .key(KEY)
        .if_match(etag)
        .if_unmodified_since(before)
        .send()
        .await
        .expect("If-Match replaces If-Unmodified-Since");
    assert_eq!(head.content_length(), Some(36));

    let failure = expect_sdk_error(
        client
            .get_object()
            .bucket(BUCKET)
            .key(KEY)
            .if_match("\"0000\"")
            .send()
            .await,
        412,
        "PreconditionFailed",
    );
    assert!(failure.body.contains("<Condition>If-Match</Condition>"));
    expect_sdk_error(
        client
            .get_object()
            .bucket(BUCKET)
            .key(KEY)
            .if_unmodified_since(before)
            .send()
            .await,
        412,
        "PreconditionFailed",
    );
    let error = client
        .head_object()
        .bucket(BUCKET)
        .key(KEY)
        .if_match("\"0000\"")
        .send()
        .await
        .expect_err("HEAD with a failing If-Match");
    assert_eq!(error.raw_response().map(|r| r.status().as_u16()), Some(412));
}

/// Goal: an SDK user gets a 304 (as an error, which is how the SDK reports
/// it) with the `ETag` and `Last-Modified` to refresh a cached copy with.
#[tokio::test]
async fn sdk_sees_304_with_validators() {
    let fixture = Fixture::start().await;
    let client = &fixture.client;
    let etag = fixture.etag.as_str();
    let at = DateTime::from(fixture.modified);
    let results = [
        (
            "GET If-None-Match",
            not_modified_view(
                client
                    .get_object()
                    .bucket(BUCKET)
                    .key(KEY)
                    .if_none_match(etag)
                    .send()
                    .await,
            ),
        ),
        (
            "GET If-Modified-Since",
            not_modified_view(
                client
                    .get_object()
                    .bucket(BUCKET)
                    .key(KEY)
                    .if_modified_since(at)
                    .send()
                    .await,
            ),
        ),
        (
            "HEAD If-None-Match",
            not_modified_view(
                client
                    .head_object()
                    .bucket(BUCKET)
                    .key(KEY)
                    .if_none_match(etag)
                    .send()
                    .await,
            ),
        ),
    ];
    let last_modified = imf_fixdate(fixture.modified);
    for (what, (status, etag_header, last_modified_header)) in results {
        assert_eq!(status, 304, "{what}");
        assert_eq!(etag_header.as_deref(), Some(etag), "{what}");
        assert_eq!(
            last_modified_header.as_deref(),
            Some(last_modified.as_str()),
            "{what}"
        );
    }
}

/// The status, `ETag` and `Last-Modified` of an SDK call that must fail
/// with an HTTP response (the SDK reports a 304 as an error).
fn not_modified_view<T: std::fmt::Debug, E: std::fmt::Debug>(
    result: Result<T, SdkError<E, HttpResponse>>,
) -> (u16, Option<String>, Option<String>) {
    let error = result.expect_err("a 304 is not a success for the SDK");
    let response = error
        .raw_response()
        .unwrap_or_else(|| panic!("no HTTP response: {error:?}"));
    let header = |name| response.headers().get(name).map(str::to_owned);
    (
        response.status().as_u16(),
        header("etag"),
        header("last-modified"),
    )
}

// ---------------------------------------------------------------------------
// response-* overrides
// ---------------------------------------------------------------------------

/// Goal: each `response-*` parameter replaces its header on GET, ranged
/// GET and HEAD, alone and all together, and the stored values come back
/// when none is given.
#[tokio::test]
async fn response_overrides_replace_headers_on_get_and_head() {
    let fixture = Fixture::start().await;
    let client = &fixture.client;
    let expires = DateTime::from_secs(1_700_000_000);
    let expires_text = expires.fmt(DateTimeFormat::HttpDate).unwrap();

    let stored = client
        .get_object()
        .bucket(BUCKET)
        .key(KEY)
        .send()
        .await
        .expect("GetObject");
    assert_eq!(stored.content_type(), Some(CONTENT_TYPE));
    assert_eq!(stored.cache_control(), Some(CACHE_CONTROL));
    assert_eq!(stored.expires_string(), Some(EXPIRES));
    assert_eq!(stored.content_language(), Some(CONTENT_LANGUAGE));
    assert_eq!(stored.content_disposition(), Some(CONTENT_DISPOSITION));
    assert_eq!(stored.content_encoding(), Some(CONTENT_ENCODING));

    let get = client
        .get_object()
        .bucket(BUCKET)
        .key(KEY)
        .response_content_type("application/json; charset=utf-8")
        .response_content_language("fr-CH, de")
        .response_expires(expires)
        .response_cache_control("no-cache, no-store")
        .response_content_disposition("attachment; filename=\"a b+c&d.txt\"")
        .response_content_encoding("x-test")
        .send()
        .await
        .expect("GetObject with every override");
    assert_eq!(get.content_type(), Some("application/json; charset=utf-8"));
    assert_eq!(get.content_language(), Some("fr-CH, de"));
    assert_eq!(get.expires_string(), Some(expires_text.as_str()));
    assert_eq!(get.cache_control(), Some("no-cache, no-store"));
    assert_eq!(
        get.content_disposition(),
        Some("attachment; filename=\"a b+c&d.txt\"")
    );
    assert_eq!(get.content_encoding(), Some("x-test"));
    assert_eq!(get.e_tag(), Some(fixture.etag.as_str()));
    assert_eq!(get.body.collect().await.unwrap().to_vec(), DATA);

    let head = client
        .head_object()
        .bucket(BUCKET)
        .key(KEY)
        .response_content_type("image/png")
        .response_content_language("ja")
        .response_expires(expires)
        .response_cache_control("private")
        .response_content_disposition("attachment")
        .response_content_encoding("gzip")
        .send()
        .await
        .expect("HeadObject with every override");
    assert_eq!(head.content_type(), Some("image/png"));
    assert_eq!(head.content_language(), Some("ja"));
    assert_eq!(head.expires_string(), Some(expires_text.as_str()));
    assert_eq!(head.cache_control(), Some("private"));
    assert_eq!(head.content_disposition(), Some("attachment"));
    assert_eq!(head.content_encoding(), Some("gzip"));
    assert_eq!(head.content_length(), Some(36));

    let ranged = client
        .get_object()
        .bucket(BUCKET)
        .key(KEY)
        .range("bytes=0-3")
        .response_content_type("application/octet-stream")
        .send()
        .await
        .expect("ranged GetObject with an override");
    assert_eq!(ranged.content_type(), Some("application/octet-stream"));
    assert_eq!(ranged.content_range(), Some("bytes 0-3/36"));
    assert_eq!(ranged.cache_control(), Some(CACHE_CONTROL));
    assert_eq!(ranged.body.collect().await.unwrap().to_vec(), &DATA[..4]);
}

/// Goal: one `response-*` parameter at a time changes only its header, on
/// GET and HEAD.
#[tokio::test]
async fn each_response_override_changes_only_its_header() {
    let fixture = Fixture::start().await;
    let parameters = [
        ("response-content-type", "content-type", CONTENT_TYPE),
        (
            "response-content-language",
            "content-language",
            CONTENT_LANGUAGE,
        ),
        ("response-expires", "expires", EXPIRES),
        ("response-cache-control", "cache-control", CACHE_CONTROL),
        (
            "response-content-disposition",
            "content-disposition",
            CONTENT_DISPOSITION,
        ),
        (
            "response-content-encoding",
            "content-encoding",
            CONTENT_ENCODING,
        ),
    ];
    for (parameter, header, _) in parameters {
        let value = format!("new {header}");
        let target = format!("{PATH}?{parameter}={}", common::uri_encode(&value));
        for method in ["GET", "HEAD"] {
            let response = fixture.send(method, &target, &[]);
            assert_eq!(response.status, 200, "{method} {target}");
            for (_, other, stored) in parameters {
                let expected = if other == header {
                    value.as_str()
                } else {
                    stored
                };
                assert_eq!(
                    response.header(other),
                    Some(expected),
                    "{method} {target}: {other}"
                );
            }
            if method == "GET" {
                assert_eq!(response.body, DATA);
            }
        }
    }
}

/// Goal: a 304 carries the overridden `Cache-Control` and `Expires`, which a
/// 200 to the same request would have had (RFC 9110 §15.4.5).
#[tokio::test]
async fn not_modified_carries_overridden_caching_headers() {
    let fixture = Fixture::start().await;
    let target = format!(
        "{PATH}?response-cache-control=no-cache&response-content-type=image%2Fpng\
         &response-expires={}",
        common::uri_encode("Wed, 21 Oct 2015 07:28:00 GMT")
    );
    for method in ["GET", "HEAD"] {
        let response = fixture.send(method, &target, &[("If-None-Match", &fixture.etag)]);
        assert_eq!(response.status, 304, "{method}");
        assert_eq!(response.header("cache-control"), Some("no-cache"));
        assert_eq!(
            response.header("expires"),
            Some("Wed, 21 Oct 2015 07:28:00 GMT")
        );
        assert_eq!(response.header("content-type"), None);
        assert_eq!(response.header("etag"), Some(fixture.etag.as_str()));
    }
}

/// Goal: override values are sent as ISO-8859-1, as AWS does: a character
/// beyond U+00FF, or a control character (which would split the response
/// head), is `400 InvalidArgument` naming the parameter and its value; an
/// ISO-8859-1 character goes out as its single byte.
#[tokio::test]
async fn response_override_values_are_checked() {
    let fixture = Fixture::start().await;
    let refused = [
        (
            "response-content-disposition",
            "attachment; filename=\"\u{5fae}\u{4fe1}.jpg\"",
            "Header value cannot be represented using ISO-8859-1.",
        ),
        (
            "response-content-type",
            "text/\u{2019}",
            "Header value cannot be represented using ISO-8859-1.",
        ),
        (
            "response-cache-control",
            "a\r\nx-injected: 1",
            "Header value cannot contain control characters.",
        ),
        (
            "response-expires",
            "a\u{0}b",
            "Header value cannot contain control characters.",
        ),
        (
            "response-content-language",
            "\u{7f}",
            "Header value cannot contain control characters.",
        ),
    ];
    for (parameter, value, message) in refused {
        let target = format!("{PATH}?{parameter}={}", common::uri_encode(value));
        let response = fixture.send("GET", &target, &[]);
        let text = response.assert_s3_error(400, "InvalidArgument");
        assert_eq!(
            response.xml_element("Message").as_deref(),
            Some(message),
            "{text}"
        );
        assert_eq!(
            response.xml_element("ArgumentName").as_deref(),
            Some(parameter),
            "{text}"
        );
        assert!(text.contains("<ArgumentValue>"), "{text}");
        assert_eq!(response.header("x-injected"), None);
        let head = fixture.send("HEAD", &target, &[]);
        assert_eq!(head.status, 400, "HEAD {target}");
        assert!(head.body.is_empty());
    }

    // U+00FC ("ü") is the single byte 0xFC on the wire. Read the raw head,
    // since the test client's parser keeps text only.
    let value = "attachment; filename=\"\u{fc}ber.txt\"";
    let target = format!(
        "{PATH}?response-content-disposition={}",
        common::uri_encode(value)
    );
    let request = fixture.server.sign(
        &fixture
            .server
            .request("HEAD", &target)
            .unsigned_header("Connection", "close"),
    );
    let mut conn = fixture.server.connect();
    conn.stream().write_all(&request).unwrap();
    let mut head = Vec::new();
    conn.stream().read_to_end(&mut head).unwrap();
    assert!(
        head.starts_with(b"HTTP/1.1 200 "),
        "{:?}",
        String::from_utf8_lossy(&head)
    );
    let expected = b"content-disposition: attachment; filename=\"\xfcber.txt\"\r\n";
    assert!(
        head.windows(expected.len())
            .any(|window| window == expected),
        "{:?}",
        String::from_utf8_lossy(&head)
    );
}

/// Goal: an override needs an object: a missing key is still `404`, and
/// an unknown `response-*` parameter is ignored, as S3 ignores unknown
/// parameters.
#[tokio::test]
async fn overrides_and_missing_objects() {
    let fixture = Fixture::start().await;
    let missing = fixture.send(
        "GET",
        "/conditions/missing.txt?response-content-type=text%2Fhtml",
        &[],
    );
    missing.assert_s3_error(404, "NoSuchKey");
    let unknown = fixture.send("GET", &format!("{PATH}?response-content-length=1"), &[]);
    assert_eq!(unknown.status, 200, "{}", unknown.text());
    assert_eq!(unknown.header("content-length"), Some("36"));
    assert_eq!(unknown.body, DATA);
}
