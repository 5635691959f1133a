//! Response-head encoding, and the cached `Date` header value.
//!
//! This module owns the bytes of a response head: the status line with its
//! canonical reason phrase, the header fields, and the blank line. It does
//! not own what goes in them (the S3 handlers pick the status and headers,
//! `error.rs` renders error bodies) nor the socket (`conn.rs` writes the
//! buffer). Like hyper's `proto/h1/role.rs` encoder, it appends to a buffer
//! the caller owns and reuses, so a response costs no allocation once the
//! buffer has grown, and a small response (head and body) goes out in one
//! write.
//!
//! Header names and values come from `http` types, which have already
//! refused CR, LF and other control bytes, so nothing a handler puts in a
//! header can split the response. Names are written as `http` stores them,
//! in lowercase: field names are case-insensitive (RFC 9110 §5.1) and S3
//! clients read them that way.
//!
//! Every response carries a `Date` (RFC 9110 §6.6.1). Formatting a date
//! costs more than the rest of a small response head, and its value only
//! changes once a second, so each core thread keeps the formatted value in
//! a [`DateCache`] and hands out cheap clones of it.

use std::io::Write as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::{HeaderMap, HeaderValue, StatusCode, header};

/// The interim response sent to a client that asked for
/// `Expect: 100-continue`, before it sends the body.
pub const CONTINUE_RESPONSE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// Appends a response head to `out`: the status line, every header field in
/// `headers`, and the blank line that ends the head.
///
/// It adds nothing on its own: the caller supplies `Date` (see
/// [`DateCache`]) and the body framing, for a body streamed after the head.
pub fn encode_head(out: &mut Vec<u8>, status: StatusCode, headers: &HeaderMap) {
    encode_status_and_fields(out, status, headers);
    out.extend_from_slice(b"\r\n");
}

/// Appends a complete response with a body that is already in memory (an
/// XML document, an error, an empty 200) to `out`, so that head and body
/// leave in one write.
///
/// `Content-Length` is written from `body.len()` unless `headers` already
/// has one: the response to a `HEAD` request carries the length of the
/// object and an empty body. Statuses that cannot have a body (1xx, 204,
/// 304) get no `Content-Length` added: RFC 9110 §8.6 forbids it for 1xx and
/// 204, and for 304 it would have to describe the object, not this empty
/// body.
///
/// # Panics
///
/// On framing that would desynchronize the connection, all programming
/// errors in the caller: a body for a status that cannot have one, a
/// `Transfer-Encoding`, or a `Content-Length` that disagrees with a
/// non-empty body.
pub fn encode_response(out: &mut Vec<u8>, status: StatusCode, headers: &HeaderMap, body: &[u8]) {
    assert!(!headers.contains_key(header::TRANSFER_ENCODING));
    if !allows_body(status) {
        assert!(body.is_empty(), "status {status} cannot have a body");
    }
    let declared_len = headers.get(header::CONTENT_LENGTH);
    if let Some(declared_len) = declared_len
        && !body.is_empty()
    {
        let declared_len = declared_len
            .to_str()
            .ok()
            .and_then(|len| len.parse::<u64>().ok());
        assert_eq!(
            declared_len,
            Some(body.len() as u64),
            "Content-Length of {status}"
        );
    }
    encode_status_and_fields(out, status, headers);
    if declared_len.is_none() && allows_body(status) {
        out.extend_from_slice(b"content-length: ");
        write!(out, "{}", body.len()).expect("writing to a Vec cannot fail");
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
}

fn allows_body(status: StatusCode) -> bool {
    !(status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED)
}

/// The status line and the header fields, without the blank line.
fn encode_status_and_fields(out: &mut Vec<u8>, status: StatusCode, headers: &HeaderMap) {
    // A status without a canonical reason gets an empty one; the space
    // before it is still required (RFC 9112 §4).
    let reason = status.canonical_reason().unwrap_or("");
    let fields_len: usize = headers
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + ": \r\n".len())
        .sum();
    out.reserve("HTTP/1.1 200 \r\n".len() + reason.len() + fields_len + "\r\n".len());
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(reason.as_bytes());
    out.extend_from_slice(b"\r\n");
    for (name, value) in headers {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
}

/// A formatted `Date` value (IMF-fixdate, `Sun, 06 Nov 1994 08:49:37 GMT`)
/// that is formatted again only when the second changes.
///
/// Each worker, hence each core thread, owns one: no sharing, no locks,
/// and on the hot path a clock read and a clone of the cached bytes.
#[derive(Debug, Clone)]
pub struct DateCache {
    /// Whole seconds since the Unix epoch of `value`.
    second: u64,
    value: HeaderValue,
}

impl Default for DateCache {
    fn default() -> Self {
        Self::new(SystemTime::now())
    }
}

impl DateCache {
    #[must_use]
    pub fn new(now: SystemTime) -> Self {
        let second = unix_second(now);
        Self {
            second,
            value: format_date(second),
        }
    }

    /// The `Date` value for the current time. The clone shares the cached
    /// bytes rather than copying them.
    pub fn header_value(&mut self) -> HeaderValue {
        self.refresh(SystemTime::now());
        self.value.clone()
    }

    /// Brings the value up to `now`, formatting only if `now` falls in
    /// another second than the cached value (earlier too: clocks step
    /// back).
    pub fn refresh(&mut self, now: SystemTime) {
        let second = unix_second(now);
        if second != self.second {
            self.second = second;
            self.value = format_date(second);
        }
    }

    /// The cached value, as of the last refresh.
    #[must_use]
    pub fn value(&self) -> &HeaderValue {
        &self.value
    }
}

/// Whole seconds since the Unix epoch; a clock set before 1970 counts as
/// 1970 rather than crashing the date formatter.
fn unix_second(now: SystemTime) -> u64 {
    now.duration_since(UNIX_EPOCH)
        .map_or(0, |since_epoch| since_epoch.as_secs())
}

fn format_date(second: u64) -> HeaderValue {
    let date = httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_secs(second));
    HeaderValue::from_str(&date).expect("an IMF-fixdate is visible ASCII")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(fields: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in fields {
            map.append(*name, HeaderValue::from_static(value));
        }
        map
    }

    #[test]
    fn golden_head() {
        let fields = headers(&[
            ("date", "Sun, 06 Nov 1994 08:49:37 GMT"),
            ("etag", "\"9bb58f26192e4ba00f01e2e7b136bbd8\""),
            ("x-amz-request-id", "4442587FB7D0A2F9"),
            ("x-amz-meta-a", "1"),
            ("x-amz-meta-a", "2"),
            ("content-length", "0"),
        ]);
        let mut out = b"previous response".to_vec();
        encode_head(&mut out, StatusCode::OK, &fields);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "previous response\
             HTTP/1.1 200 OK\r\n\
             date: Sun, 06 Nov 1994 08:49:37 GMT\r\n\
             etag: \"9bb58f26192e4ba00f01e2e7b136bbd8\"\r\n\
             x-amz-request-id: 4442587FB7D0A2F9\r\n\
             x-amz-meta-a: 1\r\n\
             x-amz-meta-a: 2\r\n\
             content-length: 0\r\n\
             \r\n"
        );
    }

    #[test]
    fn reason_phrases() {
        let mut out = Vec::new();
        encode_head(&mut out, StatusCode::NOT_FOUND, &HeaderMap::new());
        assert_eq!(out, b"HTTP/1.1 404 Not Found\r\n\r\n");
        out.clear();
        encode_head(
            &mut out,
            StatusCode::RANGE_NOT_SATISFIABLE,
            &HeaderMap::new(),
        );
        assert_eq!(out, b"HTTP/1.1 416 Range Not Satisfiable\r\n\r\n");
        out.clear();
        encode_head(
            &mut out,
            StatusCode::from_u16(599).unwrap(),
            &HeaderMap::new(),
        );
        assert_eq!(out, b"HTTP/1.1 599 \r\n\r\n");
    }

    #[test]
    fn non_utf8_values_are_written_as_bytes() {
        let mut fields = HeaderMap::new();
        fields.insert(
            "x-amz-meta-name",
            HeaderValue::from_bytes(b"caf\xe9").unwrap(),
        );
        let mut out = Vec::new();
        encode_head(&mut out, StatusCode::OK, &fields);
        assert_eq!(out, b"HTTP/1.1 200 OK\r\nx-amz-meta-name: caf\xe9\r\n\r\n");
    }

    #[test]
    fn golden_response_with_body() {
        let fields = headers(&[("content-type", "application/xml")]);
        let body =
            b"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>NoSuchKey</Code></Error>";
        let mut out = Vec::new();
        encode_response(&mut out, StatusCode::NOT_FOUND, &fields, body);
        let mut expected = b"HTTP/1.1 404 Not Found\r\n\
                             content-type: application/xml\r\n\
                             content-length: 76\r\n\
                             \r\n"
            .to_vec();
        expected.extend_from_slice(body);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            String::from_utf8(expected).unwrap()
        );
    }

    #[test]
    fn empty_body_statuses_have_no_content_length() {
        let mut out = Vec::new();
        encode_response(&mut out, StatusCode::OK, &HeaderMap::new(), b"");
        assert_eq!(out, b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n");
        out.clear();
        encode_response(&mut out, StatusCode::NO_CONTENT, &HeaderMap::new(), b"");
        assert_eq!(out, b"HTTP/1.1 204 No Content\r\n\r\n");
        out.clear();
        encode_response(&mut out, StatusCode::NOT_MODIFIED, &HeaderMap::new(), b"");
        assert_eq!(out, b"HTTP/1.1 304 Not Modified\r\n\r\n");
    }

    #[test]
    #[should_panic(expected = "cannot have a body")]
    fn no_content_with_a_body_is_a_bug() {
        encode_response(
            &mut Vec::new(),
            StatusCode::NO_CONTENT,
            &HeaderMap::new(),
            b"x",
        );
    }

    #[test]
    fn given_content_length_is_kept() {
        // The response to a HEAD request: the object's length, no body.
        let fields = headers(&[("content-length", "1048576")]);
        let mut out = Vec::new();
        encode_response(&mut out, StatusCode::OK, &fields, b"");
        assert_eq!(out, b"HTTP/1.1 200 OK\r\ncontent-length: 1048576\r\n\r\n");
        out.clear();
        let fields = headers(&[("content-length", "2")]);
        encode_response(&mut out, StatusCode::OK, &fields, b"ok");
        assert_eq!(out, b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok");
    }

    #[test]
    #[should_panic(expected = "Content-Length of 200 OK")]
    fn content_length_that_disagrees_with_the_body_is_a_bug() {
        let fields = headers(&[("content-length", "1")]);
        encode_response(&mut Vec::new(), StatusCode::OK, &fields, b"xy");
    }

    #[test]
    fn continue_response_is_a_valid_head() {
        let mut out = Vec::new();
        encode_head(&mut out, StatusCode::CONTINUE, &HeaderMap::new());
        assert_eq!(out, CONTINUE_RESPONSE);
    }

    #[test]
    fn encoded_heads_parse_back() {
        // Goal: what we write, a strict HTTP parser reads back unchanged.
        let fields = headers(&[("etag", "\"abc\""), ("accept-ranges", "bytes")]);
        let mut out = Vec::new();
        encode_response(&mut out, StatusCode::PARTIAL_CONTENT, &fields, b"0123");
        let mut parsed_fields = [httparse::EMPTY_HEADER; 8];
        let mut response = httparse::Response::new(&mut parsed_fields);
        let head_len = match response.parse(&out).unwrap() {
            httparse::Status::Complete(head_len) => head_len,
            httparse::Status::Partial => panic!("incomplete head"),
        };
        assert_eq!(response.code, Some(206));
        assert_eq!(response.reason, Some("Partial Content"));
        let parsed: Vec<_> = response
            .headers
            .iter()
            .map(|field| (field.name, field.value))
            .collect();
        assert_eq!(
            parsed,
            [
                ("etag", &b"\"abc\""[..]),
                ("accept-ranges", b"bytes"),
                ("content-length", b"4")
            ]
        );
        assert_eq!(&out[head_len..], b"0123");
    }

    #[test]
    fn date_cache_formats_imf_fixdate() {
        let now = UNIX_EPOCH + Duration::from_secs(784_111_777);
        let cache = DateCache::new(now);
        assert_eq!(cache.value(), "Sun, 06 Nov 1994 08:49:37 GMT");
    }

    #[test]
    fn date_cache_formats_once_per_second() {
        let start = UNIX_EPOCH + Duration::from_secs(784_111_777);
        let mut cache = DateCache::new(start + Duration::from_millis(1));
        let cached = cache.value().clone();
        cache.refresh(start + Duration::from_millis(999));
        // Same second: the very same bytes, not a new formatting of them.
        assert_eq!(
            cache.value().as_bytes().as_ptr(),
            cached.as_bytes().as_ptr()
        );
        cache.refresh(start + Duration::from_secs(1));
        assert_eq!(cache.value(), "Sun, 06 Nov 1994 08:49:38 GMT");
        cache.refresh(start);
        assert_eq!(cache.value(), "Sun, 06 Nov 1994 08:49:37 GMT");
    }

    #[test]
    fn date_cache_survives_a_clock_before_1970() {
        let cache = DateCache::new(UNIX_EPOCH - Duration::from_secs(1));
        assert_eq!(cache.value(), "Thu, 01 Jan 1970 00:00:00 GMT");
    }

    #[test]
    fn header_value_is_now() {
        let mut cache = DateCache::new(UNIX_EPOCH);
        let before = unix_second(SystemTime::now());
        let value = cache.header_value();
        let after = unix_second(SystemTime::now());
        let date = httpdate::parse_http_date(value.to_str().unwrap()).unwrap();
        let second = unix_second(date);
        assert!(before <= second && second <= after, "{value:?}");
    }
}
