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
//! - <https://docs.aws.amazon.com/AmazonS3/latest/API/API_GetObject.html>
//! - <https://docs.aws.amazon.com/AmazonS3/latest/API/API_HeadObject.html>

use std::rc::Rc;

use http::{HeaderName, HeaderValue, StatusCode};

use super::put::object_names;
use super::{Response, S3Request};
use crate::error::S3Error;
use crate::http::io::ConnIo;
use crate::s3_error;
use crate::server::worker::Worker;
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
) -> Result<Response, S3Error> {
    let (bucket, key) = object_names(worker, request)?;
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
    let commit = shard
        .read_commit(location)
        .await
        .map_err(S3Error::internal)?;
    let size = commit.size;
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
    object_headers(&mut response.headers, &commit)?;
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

/// The headers every GET and HEAD of the object carries.
fn object_headers(headers: &mut http::HeaderMap, commit: &ObjectCommit) -> Result<(), S3Error> {
    let text = |value: &str| HeaderValue::from_str(value).map_err(S3Error::internal);
    headers.insert(http::header::ETAG, text(&commit.etag.to_header_value())?);
    let modified = std::time::UNIX_EPOCH
        + std::time::Duration::from_millis(u64::try_from(commit.last_modified_ms).unwrap_or(0));
    headers.insert(
        http::header::LAST_MODIFIED,
        text(&httpdate::fmt_http_date(modified))?,
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
