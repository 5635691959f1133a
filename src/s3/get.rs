//! `GetObject` and `HeadObject`.
//!
//! The head of the response comes from the commit record; the bytes are
//! streamed after it by the connection ([`ObjectStream`]), one extent at a
//! time, each read and checked against its CRC before a byte of it is sent:
//! a damaged extent ends the response early (the connection is closed, so
//! the client sees a short body, never wrong bytes).
//!
//! One range per request, as AWS: `bytes=a-b`, `bytes=a-`, `bytes=-n`,
//! answered with `206` and `Content-Range`; a range that starts past the end
//! is `416 InvalidRange`; a Range header that is not a single valid byte
//! range is ignored and the whole object is sent, as RFC 9110 and AWS do.
//!
//! The preconditions (`If-Match`, `If-None-Match`, `If-Modified-Since`,
//! `If-Unmodified-Since`; [`super::conditions`] owns their rules) are
//! evaluated once the object is found and before the range, as RFC 9110
//! §13.2.2 orders them: a missing object is `404 NoSuchKey` whatever they
//! say, a failed `If-Match` or `If-Unmodified-Since` is
//! `412 PreconditionFailed` (an error document naming the header in
//! `<Condition>`, as AWS), and a failed `If-None-Match` or
//! `If-Modified-Since` is `304 Not Modified`: no body, and of the object's
//! headers only `ETag` and `Last-Modified` (what AWS sends) plus
//! `Cache-Control` and `Expires` when the object has them (RFC 9110
//! §15.4.5 requires those of a 304). A 304 is a response, not an error:
//! it carries no error document.
//!
//! The `response-content-type`, `-content-language`, `-expires`,
//! `-cache-control`, `-content-disposition` and `-content-encoding` query
//! parameters replace the stored header of the same name on GET and HEAD
//! (also on a 206, and on a 304 for the two headers it carries). A value
//! is sent as ISO-8859-1, as AWS does: a character beyond U+00FF is
//! `400 InvalidArgument` ("Header value cannot be represented using
//! ISO-8859-1.", with the parameter in `<ArgumentName>` and
//! `<ArgumentValue>`), and so is a control character, which no header
//! value may hold.
//!
//! - <https://docs.aws.amazon.com/AmazonS3/latest/API/API_GetObject.html>
//! - <https://docs.aws.amazon.com/AmazonS3/latest/API/API_HeadObject.html>

use std::rc::Rc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};

use super::conditions::{self, Outcome, Preconditions};
use super::put::object_names;
use super::{Response, S3Request};
use crate::error::S3Error;
use crate::http::io::ConnIo;
use crate::node::worker::Worker;
use crate::s3_error;
use crate::storage::index::IndexValue;
use crate::storage::object::{ObjectBody, ObjectCommit};
use crate::storage::shard::{ReadPin, Shard};

/// The bytes `start..end` of an object, to be streamed after the head.
pub struct ObjectStream {
    pub shard: Rc<Shard>,
    pub commit: ObjectCommit,
    pub start: u64,
    pub end: u64,
    /// Keeps compaction from deleting the object's segments mid-stream.
    pub pin: ReadPin,
}

impl ObjectStream {
    /// Write `head` and then the bytes to `io`, one checked extent at a
    /// time; the head goes out with the first piece (all of a small object),
    /// so a small GET is one write.
    ///
    /// The error says whether the head went out: if it did not, the client
    /// can still be told with an ordinary S3 error.
    pub async fn send(&self, io: &mut ConnIo, mut head: Vec<u8>) -> Result<(), SendError> {
        match &self.commit.body {
            ObjectBody::Inline(data) => {
                head.extend_from_slice(&data[to_usize(self.start)..to_usize(self.end)]);
                io.write_all(&head)
                    .await
                    .map_err(|error| SendError::AfterHead(S3Error::internal(error)))
            }
            ObjectBody::Extents(extents) => {
                let mut head = Some(head);
                let mut extent_start = 0_u64;
                for extent in extents {
                    let extent_end = extent_start + u64::from(extent.data_len);
                    if extent_end > self.start && extent_start < self.end {
                        let from = self.start.max(extent_start) - extent_start;
                        let to = self.end.min(extent_end) - extent_start;
                        let bytes = self
                            .shard
                            .read_extent(extent, to_u32(from), to_u32(to - from))
                            .await
                            .map_err(|error| {
                                let error = S3Error::internal(error);
                                if head.is_some() {
                                    SendError::BeforeHead(error)
                                } else {
                                    SendError::AfterHead(error)
                                }
                            })?;
                        let after_head = |error| SendError::AfterHead(S3Error::internal(error));
                        if let Some(head) = head.take() {
                            io.write_all(&head).await.map_err(after_head)?;
                        }
                        io.write_all(&bytes).await.map_err(after_head)?;
                    }
                    extent_start = extent_end;
                    if extent_start >= self.end {
                        break;
                    }
                }
                Ok(())
            }
        }
    }
}

/// Why an object body could not be sent.
#[derive(Debug)]
pub enum SendError {
    /// Nothing was written yet (the first extent failed its check): the
    /// client can get an S3 error instead of the object.
    BeforeHead(S3Error),
    /// The head and maybe part of the body are out: the only honest signal
    /// left is a short body, so the connection must be closed.
    AfterHead(S3Error),
}

fn to_usize(value: u64) -> usize {
    usize::try_from(value).expect("inline objects are small")
}

fn to_u32(value: u64) -> u32 {
    u32::try_from(value).expect("within one extent")
}

pub async fn get_object(
    worker: &Rc<Worker>,
    request: &S3Request<'_>,
    head_only: bool,
    part_number: Option<u32>,
) -> Result<Response, S3Error> {
    let (bucket, key) = object_names(worker, request)?;
    if part_number.is_some() && request.head.headers.contains_key(http::header::RANGE) {
        return Err(s3_error!(
            InvalidRequest,
            "Cannot specify both Range header and partNumber query parameter"
        ));
    }
    let overrides = response_overrides(request)?;
    if !worker.catalog().buckets.contains_key(bucket) {
        return Err(super::bucket::no_such_bucket(bucket));
    }
    let shard = worker.shard();
    let Some((entry, pin)) = shard.lookup_pinned(bucket, key) else {
        return Err(
            s3_error!(NoSuchKey, "The specified key does not exist.").with_extra("Key", key)
        );
    };
    let IndexValue::Object {
        commit: location, ..
    } = entry.value
    else {
        unreachable!("lookup returns live objects only");
    };
    refuse_if_damaged(&shard, request, head_only, part_number, entry.seq)?;
    let commit = shard
        .read_commit(location)
        .await
        .map_err(S3Error::internal)?;
    let mut headers = HeaderMap::new();
    object_headers(&mut headers, &commit)?;
    if wants_whole_object_checksums(request, part_number) {
        super::checksum::insert_headers(&mut headers, &commit.checksums, commit.part_sizes.len());
    }
    for (name, value) in overrides {
        headers.insert(name, value);
    }
    let etag = commit.etag.to_header_value();
    match Preconditions::from_headers(&request.head.headers).evaluate(
        &etag,
        last_modified(&commit),
        SystemTime::now(),
    ) {
        Outcome::Proceed => {}
        Outcome::NotModified(_) => return Ok(not_modified(&headers)),
        Outcome::PreconditionFailed(condition) => {
            return Err(conditions::precondition_failed(condition.header_name()));
        }
    }
    let size = commit.size;
    if let Some(number) = part_number {
        return part_response(headers, shard, commit, pin, number, head_only);
    }
    let range = match request.head.headers.get(http::header::RANGE) {
        Some(value) => parse_range(value.as_bytes(), size).map_err(|error| {
            let mut error = error
                .with_extra(
                    "RangeRequested",
                    String::from_utf8_lossy(value.as_bytes()).into_owned(),
                )
                .with_extra("ActualObjectSize", size.to_string());
            error.headers.push((
                http::header::CONTENT_RANGE,
                HeaderValue::from_str(&format!("bytes */{size}")).expect("ASCII"),
            ));
            error
        })?,
        None => None,
    };
    let (status, start, end) = match range {
        Some((start, end)) => (StatusCode::PARTIAL_CONTENT, start, end),
        None => (StatusCode::OK, 0, size),
    };
    let mut response = Response::new(status);
    response.headers = headers;
    response
        .headers
        .insert(http::header::CONTENT_LENGTH, HeaderValue::from(end - start));
    if range.is_some() {
        response.headers.insert(
            http::header::CONTENT_RANGE,
            HeaderValue::from_str(&format!("bytes {start}-{}/{size}", end - 1)).expect("ASCII"),
        );
    }
    if !head_only && end > start {
        response.object = Some(ObjectStream {
            shard,
            commit,
            start,
            end,
            pin,
        });
    }
    Ok(response)
}

/// Refuse a whole-object GET or a HEAD of a version the scrub found
/// damaged: it is never served as if it were whole. A range or a part may
/// still be read: every extent is checked against its CRC as it is read, so
/// damage ends that response before a wrong byte.
fn refuse_if_damaged(
    shard: &Shard,
    request: &S3Request<'_>,
    head_only: bool,
    part_number: Option<u32>,
    seq: u64,
) -> Result<(), S3Error> {
    let (Some(bucket), Some(key)) = (&request.route.bucket, &request.route.key) else {
        return Ok(());
    };
    let whole_object =
        part_number.is_none() && !request.head.headers.contains_key(http::header::RANGE);
    if (head_only || whole_object) && shard.is_damaged(bucket, key, seq) {
        return Err(S3Error::internal(format!(
            "{bucket}/{key} is damaged (found by the scrub)"
        )));
    }
    Ok(())
}

/// Checksums of the whole object are sent only when asked for
/// (`x-amz-checksum-mode: ENABLED`), and never for a part of it (a range or
/// a part number), as AWS.
fn wants_whole_object_checksums(request: &S3Request<'_>, part_number: Option<u32>) -> bool {
    let headers = &request.head.headers;
    headers
        .get("x-amz-checksum-mode")
        .is_some_and(|mode| mode.as_bytes().eq_ignore_ascii_case(b"ENABLED"))
        && part_number.is_none()
        && !headers.contains_key(http::header::RANGE)
}

/// `partNumber`: one part of a multipart object, as a `206` with its
/// `Content-Range` and the object's part count. An object that is not
/// multipart is one part: number 1 is all of it (and carries no part
/// count), as AWS answers.
fn part_response(
    mut headers: HeaderMap,
    shard: Rc<Shard>,
    commit: ObjectCommit,
    pin: ReadPin,
    number: u32,
    head_only: bool,
) -> Result<Response, S3Error> {
    let size = commit.size;
    let sizes: &[u64] = if commit.part_sizes.is_empty() {
        std::slice::from_ref(&commit.size)
    } else {
        &commit.part_sizes
    };
    let index = usize::try_from(number)
        .unwrap_or(usize::MAX)
        .saturating_sub(1);
    let Some(&part_size) = sizes.get(index) else {
        return Err(s3_error!(
            InvalidPartNumber,
            "The requested partnumber is not satisfiable"
        )
        .with_extra("PartNumberRequested", number.to_string())
        .with_extra("ActualPartCount", sizes.len().to_string()));
    };
    let start: u64 = sizes[..index].iter().sum();
    let end = start + part_size;
    if !commit.part_sizes.is_empty() {
        headers.insert(
            HeaderName::from_static("x-amz-mp-parts-count"),
            HeaderValue::from(commit.part_sizes.len()),
        );
    }
    headers.insert(http::header::CONTENT_LENGTH, HeaderValue::from(part_size));
    if part_size > 0 {
        headers.insert(
            http::header::CONTENT_RANGE,
            HeaderValue::from_str(&format!("bytes {start}-{}/{size}", end - 1)).expect("ASCII"),
        );
    }
    let mut response = Response::new(StatusCode::PARTIAL_CONTENT);
    response.headers = headers;
    if !head_only && part_size > 0 {
        response.object = Some(ObjectStream {
            shard,
            commit,
            start,
            end,
            pin,
        });
    }
    Ok(response)
}

/// The object's modification time, as stored (milliseconds).
fn last_modified(commit: &ObjectCommit) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(u64::try_from(commit.last_modified_ms).unwrap_or(0))
}

/// `304 Not Modified` for an object whose GET or HEAD would have sent
/// `headers`: no body, and only the headers a cache needs to refresh its
/// copy (see the module doc).
fn not_modified(headers: &HeaderMap) -> Response {
    let mut response = Response::new(StatusCode::NOT_MODIFIED);
    for name in [
        header::ETAG,
        header::LAST_MODIFIED,
        header::CACHE_CONTROL,
        header::EXPIRES,
    ] {
        if let Some(value) = headers.get(&name) {
            response.headers.insert(name, value.clone());
        }
    }
    response
}

/// The `response-*` query parameters and the headers they replace.
const RESPONSE_OVERRIDES: [(&str, HeaderName); 6] = [
    ("response-content-type", header::CONTENT_TYPE),
    ("response-content-language", header::CONTENT_LANGUAGE),
    ("response-expires", header::EXPIRES),
    ("response-cache-control", header::CACHE_CONTROL),
    ("response-content-disposition", header::CONTENT_DISPOSITION),
    ("response-content-encoding", header::CONTENT_ENCODING),
];

/// The headers the request's `response-*` parameters set, checked to be
/// valid header values (see the module doc).
fn response_overrides(request: &S3Request<'_>) -> Result<Vec<(HeaderName, HeaderValue)>, S3Error> {
    let mut overrides = Vec::new();
    for (parameter, name) in RESPONSE_OVERRIDES {
        if let Some(value) = request.query_param(parameter) {
            overrides.push((name, override_value(parameter, &value)?));
        }
    }
    Ok(overrides)
}

/// A `response-*` value as the header bytes AWS sends: ISO-8859-1.
fn override_value(parameter: &'static str, value: &str) -> Result<HeaderValue, S3Error> {
    let invalid = |message: &str| {
        s3_error!(InvalidArgument, "{message}")
            .with_extra("ArgumentName", parameter)
            .with_extra("ArgumentValue", value)
    };
    let latin1: Vec<u8> = value
        .chars()
        .map(|char| u8::try_from(u32::from(char)))
        .collect::<Result<_, _>>()
        .map_err(|_| invalid("Header value cannot be represented using ISO-8859-1."))?;
    HeaderValue::from_bytes(&latin1)
        .map_err(|_| invalid("Header value cannot contain control characters."))
}

/// The headers every GET and HEAD of the object carries.
fn object_headers(headers: &mut http::HeaderMap, commit: &ObjectCommit) -> Result<(), S3Error> {
    let text = |value: &str| HeaderValue::from_str(value).map_err(S3Error::internal);
    headers.insert(http::header::ETAG, text(&commit.etag.to_header_value())?);
    headers.insert(
        http::header::LAST_MODIFIED,
        text(&httpdate::fmt_http_date(last_modified(commit)))?,
    );
    headers.insert(
        http::header::ACCEPT_RANGES,
        HeaderValue::from_static("bytes"),
    );
    headers.insert(
        http::header::CONTENT_TYPE,
        text(
            commit
                .content_type
                .as_deref()
                .unwrap_or("binary/octet-stream"),
        )?,
    );
    for (name, value) in [
        (http::header::CACHE_CONTROL, &commit.cache_control),
        (
            http::header::CONTENT_DISPOSITION,
            &commit.content_disposition,
        ),
        (http::header::CONTENT_ENCODING, &commit.content_encoding),
        (http::header::CONTENT_LANGUAGE, &commit.content_language),
        (http::header::EXPIRES, &commit.expires),
    ] {
        if let Some(value) = value {
            headers.insert(name, text(value)?);
        }
    }
    for (name, value) in &commit.user_metadata {
        let name = HeaderName::from_bytes(format!("x-amz-meta-{name}").as_bytes())
            .map_err(S3Error::internal)?;
        headers.append(name, text(value)?);
    }
    Ok(())
}

/// Parse a Range header against an object of `size` bytes: `Ok(None)` to
/// send the whole object, `Ok(Some((start, end)))` with `end` exclusive.
pub fn parse_range(value: &[u8], size: u64) -> Result<Option<(u64, u64)>, S3Error> {
    let unsatisfiable = || s3_error!(InvalidRange, "The requested range is not satisfiable");
    let Ok(text) = std::str::from_utf8(value) else {
        return Ok(None);
    };
    let Some(spec) = text.trim().strip_prefix("bytes=") else {
        return Ok(None);
    };
    if spec.contains(',') {
        return Ok(None);
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return Ok(None);
    };
    let number = |part: &str| -> Option<u64> {
        if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        part.parse().ok()
    };
    match (first.trim(), last.trim()) {
        ("", suffix) => {
            let Some(suffix) = number(suffix) else {
                return Ok(None);
            };
            if suffix == 0 || size == 0 {
                return Err(unsatisfiable());
            }
            Ok(Some((size.saturating_sub(suffix), size)))
        }
        (first, "") => {
            let Some(first) = number(first) else {
                return Ok(None);
            };
            if first >= size {
                return Err(unsatisfiable());
            }
            Ok(Some((first, size)))
        }
        (first, last) => {
            let (Some(first), Some(last)) = (number(first), number(last)) else {
                return Ok(None);
            };
            if last < first {
                return Ok(None);
            }
            if first >= size {
                return Err(unsatisfiable());
            }
            Ok(Some((first, last.min(size - 1) + 1)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn response_overrides_are_sent_as_iso_8859_1() {
        let value = |text| override_value("response-content-disposition", text);
        assert_eq!(value("attachment").unwrap(), "attachment");
        assert_eq!(value("").unwrap(), "");
        assert_eq!(value("a\tb").unwrap(), "a\tb");
        // U+00FC is the single byte 0xFC in ISO-8859-1.
        assert_eq!(
            value("attachment; filename=\"\u{fc}.txt\"")
                .unwrap()
                .as_bytes(),
            b"attachment; filename=\"\xfc.txt\""
        );
        for (text, message) in [
            (
                "\u{2019}",
                "Header value cannot be represented using ISO-8859-1.",
            ),
            (
                "\u{5fae}\u{4fe1}.jpg",
                "Header value cannot be represented using ISO-8859-1.",
            ),
            (
                "a\r\nx-injected: 1",
                "Header value cannot contain control characters.",
            ),
            ("a\0b", "Header value cannot contain control characters."),
            ("a\u{7f}", "Header value cannot contain control characters."),
        ] {
            let error = value(text).unwrap_err();
            assert_eq!(
                error.code,
                crate::error::S3ErrorCode::InvalidArgument,
                "{text:?}"
            );
            assert_eq!(error.message, message, "{text:?}");
            assert_eq!(
                error.extra,
                [
                    ("ArgumentName", "response-content-disposition".to_owned()),
                    ("ArgumentValue", text.to_owned())
                ]
            );
        }
    }

    #[test]
    fn ranges_follow_rfc_9110_and_aws() {
        let ok = |value: &str, size| parse_range(value.as_bytes(), size).unwrap();
        assert_eq!(ok("bytes=0-0", 10), Some((0, 1)));
        assert_eq!(ok("bytes=9-9", 10), Some((9, 10)));
        assert_eq!(ok("bytes=0-99", 10), Some((0, 10)));
        assert_eq!(ok("bytes=5-", 10), Some((5, 10)));
        assert_eq!(ok("bytes=-3", 10), Some((7, 10)));
        assert_eq!(ok("bytes=-30", 10), Some((0, 10)));
        // Not a single valid byte range: the whole object.
        assert_eq!(ok("bytes=5-2", 10), None);
        assert_eq!(ok("bytes=0-1,3-4", 10), None);
        assert_eq!(ok("items=0-1", 10), None);
        assert_eq!(ok("bytes=a-b", 10), None);
        assert_eq!(ok("bytes=-", 10), None);
        for unsatisfiable in ["bytes=10-", "bytes=10-20", "bytes=-0"] {
            let error = parse_range(unsatisfiable.as_bytes(), 10).unwrap_err();
            assert_eq!(
                error.code,
                crate::error::S3ErrorCode::InvalidRange,
                "{unsatisfiable}"
            );
        }
        for unsatisfiable in ["bytes=0-", "bytes=-1", "bytes=0-0"] {
            assert!(
                parse_range(unsatisfiable.as_bytes(), 0).is_err(),
                "{unsatisfiable}"
            );
        }
    }
}
