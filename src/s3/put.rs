//! `PutObject`.
//!
//! The body streams from the connection into the owning shard: objects up
//! to `object::INLINE_BYTES_MAX` become one commit record with the bytes
//! inline; larger ones are cut into `Data` extents of at most
//! `object::EXTENT_BYTES_MAX` as they arrive, so a request holds one extent
//! buffer whatever the object's size. The commit record is written only
//! after the whole body has been read and verified (payload signature,
//! SHA-256, Content-MD5), so a failed upload leaves the previous version of
//! the object in place.
//!
//! Reference: <https://docs.aws.amazon.com/AmazonS3/latest/API/API_PutObject.html>

use std::rc::Rc;

use http::{HeaderMap, HeaderValue, StatusCode};

use super::checksum::BodyChecksum;
use super::{Response, S3Request};
use crate::error::S3Error;
use crate::http::body_reader::BodyReader;
use crate::limits;
use crate::node::worker::BucketWrite;
use crate::node::worker::Worker;
use crate::s3_error;
use crate::storage::md5::Md5;
use crate::storage::md5_lanes::{Batcher, Md5Stream, Ticket};
use crate::storage::object::{
    ETag, EXTENT_BYTES_MAX, Extent, INLINE_BYTES_MAX, ObjectBody, ObjectCommit,
};
use crate::storage::segment::{Space, StorageError};
use crate::storage::shard::Shard;

pub async fn put_object(
    worker: &Rc<Worker>,
    request: &S3Request<'_>,
    body: &mut BodyReader<'_>,
) -> Result<Response, S3Error> {
    let (bucket, key) = object_names(worker, request)?;
    let _write = begin_write(worker, bucket).await?;
    let headers = &request.head.headers;
    super::acl::check_canned_acl(headers)?;
    let size = body.declared_len().ok_or_else(|| {
        s3_error!(
            MissingContentLength,
            "You must provide the Content-Length HTTP header."
        )
    })?;
    if size > limits::OBJECT_BYTES_MAX {
        return Err(s3_error!(
            EntityTooLarge,
            "Your proposed upload exceeds the maximum allowed size"
        )
        .with_extra("ProposedSize", size.to_string())
        .with_extra("MaxSizeAllowed", limits::OBJECT_BYTES_MAX.to_string()));
    }
    let content_md5 = content_md5(headers)?;
    let mut checksum = BodyChecksum::from_request(headers)?;
    let mut commit = object_template(bucket, key, headers)?;
    commit.size = size;

    let shard = worker.shard();
    let mut upload = None;
    let digest: [u8; 16] = if size <= INLINE_BYTES_MAX as u64 {
        let _memory = worker.reserve_body_bytes(size).await;
        let data = read_up_to(body, INLINE_BYTES_MAX).await?;
        let digest = Md5::digest(&data);
        checksum.update(&data);
        let received = data.len() as u64;
        commit.body = ObjectBody::Inline(data);
        if received != size {
            return Err(incomplete_body());
        }
        digest
    } else {
        // Until the commit, compaction must leave the extents' segments.
        upload = Some(shard.begin_upload());
        let (extents, digest) = receive_extents(worker, &shard, body, size, &mut checksum).await?;
        commit.body = ObjectBody::Extents(extents);
        digest
    };
    commit.checksums = vec![checksum.finish(body.trailers())?];
    if let Some(expected) = content_md5
        && expected != digest
    {
        return Err(s3_error!(
            BadDigest,
            "The Content-MD5 you specified did not match what we received."
        ));
    }
    commit.etag = ETag::Md5(digest);
    commit.last_modified_ms = now_ms();
    shard.commit(&commit, upload.as_ref()).await?;
    drop(upload);
    let etag = HeaderValue::from_str(&commit.etag.to_header_value()).expect("hex is ASCII");
    let mut response = Response::new(StatusCode::OK).with_header(http::header::ETAG, etag);
    super::checksum::insert_headers(&mut response.headers, &commit.checksums, 0);
    Ok(response)
}

/// Begin a write of new object data into `bucket` on this core: the
/// bucket must exist (and is not deleted while the guard lives, see
/// `Worker::begin_bucket_write`), and the shard must be able to take new
/// data. Checked before any body byte is read, so that a client that
/// waits for `100 Continue` never sends a body that would be refused.
pub(super) async fn begin_write(worker: &Rc<Worker>, bucket: &str) -> Result<BucketWrite, S3Error> {
    let write = worker
        .begin_bucket_write(bucket)
        .await
        .ok_or_else(|| super::bucket::no_such_bucket(bucket))?;
    let shard = worker.shard();
    if shard.write_failure().is_some() {
        return Err(StorageError::PreviousIo.into());
    }
    if !shard.has_room_for_data() {
        return Err(StorageError::NoSpace("the disk is full".to_owned()).into());
    }
    Ok(write)
}

/// The object-to-be of a `PutObject` or `CreateMultipartUpload`: its names,
/// system headers and user metadata from the request; no body yet.
pub(super) fn object_template(
    bucket: &str,
    key: &str,
    headers: &HeaderMap,
) -> Result<ObjectCommit, S3Error> {
    Ok(ObjectCommit {
        bucket: bucket.to_owned(),
        key: key.to_owned(),
        size: 0,
        etag: ETag::Md5([0; 16]),
        last_modified_ms: 0,
        content_type: header_text(headers, "content-type")?,
        cache_control: header_text(headers, "cache-control")?,
        content_disposition: header_text(headers, "content-disposition")?,
        content_encoding: stored_content_encoding(headers)?,
        content_language: header_text(headers, "content-language")?,
        expires: header_text(headers, "expires")?,
        user_metadata: user_metadata(headers)?,
        checksums: Vec::new(),
        part_sizes: Vec::new(),
        body: ObjectBody::Extents(Vec::new()),
    })
}

/// Stream exactly `size` body bytes into `Data` extents of the shard (the
/// caller holds an upload guard); returns them and the MD5 of the bytes,
/// and feeds the bytes to `checksum`.
///
/// The MD5 goes through the core's batcher (`md5_lanes`), which hashes the
/// pieces that concurrent uploads have queued side by side. Two buffers
/// take turns: while one waits in the batcher's queue, the next piece of
/// the body is received into the other, so the wait costs no time; an
/// upload whose next piece arrives first hurries the batch. The last piece
/// may wait up to `md5_lanes::BATCH_WAIT` for company.
///
/// The two buffers are reserved from the core's body budget first
/// ([`Worker::reserve_body_bytes`]), so uploads beyond the budget wait
/// before they read anything.
pub(super) async fn receive_extents(
    worker: &Worker,
    shard: &Shard,
    body: &mut BodyReader<'_>,
    size: u64,
    checksum: &mut BodyChecksum,
) -> Result<(Vec<Extent>, [u8; 16]), S3Error> {
    let _memory = worker
        .reserve_body_bytes(2 * u64::from(EXTENT_BYTES_MAX).min(size))
        .await;
    let batcher = Batcher::local();
    let _active = batcher.begin_upload();
    let mut stream = Some(Md5Stream::new());
    let mut hashing: Option<Ticket> = None;
    let mut spare: Option<Vec<u8>> = None;
    let mut received = 0_u64;
    let mut extents = Vec::new();
    let mut buffer = ExtentBuffer::take();
    loop {
        let filled = fill(body, &mut buffer).await?;
        if filled == 0 {
            break;
        }
        checksum.update(&buffer[..filled]);
        received += filled as u64;
        if received > size {
            break;
        }
        extents.push(shard.append_data(&buffer[..filled], Space::Data).await?);
        if let Some(ticket) = hashing.take() {
            // The next piece is already here: waiting now would only
            // stall this upload.
            let (hashed, free) = ticket.hurry().await;
            stream = Some(hashed);
            spare = Some(free);
        }
        let next = spare.take().unwrap_or_else(ExtentBuffer::take);
        let full = std::mem::replace(&mut buffer, next);
        let current = stream.take().expect("one piece is hashed at a time");
        hashing = Some(batcher.submit(current, full, filled, false));
    }
    if let Some(ticket) = hashing.take() {
        let (hashed, free) = ticket.await;
        stream = Some(hashed);
        ExtentBuffer::give_back(free);
    }
    ExtentBuffer::give_back(buffer);
    if let Some(free) = spare {
        ExtentBuffer::give_back(free);
    }
    if received != size {
        return Err(incomplete_body());
    }
    Ok((
        extents,
        stream.expect("the last piece is hashed").finalize(),
    ))
}

/// Receive buffers of one extent, kept per core for reuse: a fresh one
/// would be zeroed (a 1 MiB memset) for every upload.
struct ExtentBuffer;

/// Free buffers a core keeps (16 MiB).
const FREE_EXTENT_BUFFERS_MAX: usize = 16;

thread_local! {
    static FREE_EXTENT_BUFFERS: std::cell::RefCell<Vec<Vec<u8>>> = const { std::cell::RefCell::new(Vec::new()) };
}

impl ExtentBuffer {
    fn take() -> Vec<u8> {
        FREE_EXTENT_BUFFERS
            .with_borrow_mut(Vec::pop)
            .unwrap_or_else(|| vec![0_u8; EXTENT_BYTES_MAX as usize])
    }

    fn give_back(buffer: Vec<u8>) {
        if buffer.len() != EXTENT_BYTES_MAX as usize {
            return;
        }
        FREE_EXTENT_BUFFERS.with_borrow_mut(|free| {
            if free.len() < FREE_EXTENT_BUFFERS_MAX {
                free.push(buffer);
            }
        });
    }
}

fn incomplete_body() -> S3Error {
    s3_error!(
        IncompleteBody,
        "You did not provide the number of bytes specified by the Content-Length HTTP header."
    )
}

/// The bucket and key of an object request (the router guarantees both),
/// checked to have reached the core that owns them: the connection layer
/// hands every object request to its owner, and running it anywhere else
/// would read or write another shard's keys.
pub fn object_names<'a>(
    worker: &Worker,
    request: &'a S3Request<'_>,
) -> Result<(&'a str, &'a str), S3Error> {
    match (&request.route.bucket, &request.route.key) {
        (Some(bucket), Some(key)) => {
            assert_eq!(
                worker.owner_of(bucket, key),
                worker.shard_id(),
                "an object request ran on a shard that does not own it"
            );
            Ok((bucket, key))
        }
        _ => Err(s3_error!(InvalidRequest, "The request names no object.")),
    }
}

/// Read the whole body, which is at most `limit` bytes.
async fn read_up_to(body: &mut BodyReader<'_>, limit: usize) -> Result<Vec<u8>, S3Error> {
    let mut data = vec![0_u8; limit.clamp(1, 64 * 1024)];
    let mut len = 0;
    loop {
        if len == data.len() {
            if data.len() >= limit {
                // One byte more than allowed is enough to tell.
                let mut probe = [0_u8; 1];
                if body.read(&mut probe).await? == 0 {
                    break;
                }
                return Err(s3_error!(
                    IncompleteBody,
                    "The request body is longer than its declared length."
                ));
            }
            data.resize((data.len() * 2).min(limit), 0);
        }
        let read = body.read(&mut data[len..]).await?;
        if read == 0 {
            break;
        }
        len += read;
    }
    data.truncate(len);
    Ok(data)
}

/// Fill `buffer` from the body; less than full only at the end.
async fn fill(body: &mut BodyReader<'_>, buffer: &mut [u8]) -> Result<usize, S3Error> {
    let mut filled = 0;
    while filled < buffer.len() {
        let read = body.read(&mut buffer[filled..]).await?;
        if read == 0 {
            break;
        }
        filled += read;
    }
    Ok(filled)
}

/// `Content-MD5`: the base64 of the body's 16-byte MD5.
pub(super) fn content_md5(headers: &HeaderMap) -> Result<Option<[u8; 16]>, S3Error> {
    use base64::Engine as _;
    let Some(value) = headers.get("content-md5") else {
        return Ok(None);
    };
    let invalid = || s3_error!(InvalidDigest, "The Content-MD5 you specified was invalid.");
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(value.as_bytes())
        .map_err(|_| invalid())?;
    let digest: [u8; 16] = decoded.try_into().map_err(|_| invalid())?;
    Ok(Some(digest))
}

/// Check a body held in memory against its `Content-MD5`, if it has one;
/// returns whether it had one.
pub(super) fn check_content_md5(headers: &HeaderMap, data: &[u8]) -> Result<bool, S3Error> {
    let Some(expected) = content_md5(headers)? else {
        return Ok(false);
    };
    let digest: [u8; 16] = Md5::digest(data);
    if digest != expected {
        return Err(s3_error!(
            BadDigest,
            "The Content-MD5 you specified did not match what we received."
        ));
    }
    Ok(true)
}

/// A system-metadata header as text. A header sent on several lines is
/// one comma-separated list, as HTTP defines (RFC 9110, 5.3).
fn header_text(headers: &HeaderMap, name: &str) -> Result<Option<String>, S3Error> {
    let mut joined: Option<String> = None;
    for value in headers.get_all(name) {
        let text = std::str::from_utf8(value.as_bytes())
            .map_err(|_| s3_error!(InvalidArgument, "The {name} header is not valid UTF-8."))?;
        match &mut joined {
            Some(joined) => {
                joined.push_str(", ");
                joined.push_str(text);
            }
            None => joined = Some(text.to_owned()),
        }
    }
    Ok(joined)
}

/// The Content-Encoding to store: the header exactly as sent (`deflate,
/// gzip` stays `deflate, gzip`), less the `aws-chunked` coding, which
/// describes the request framing and never the stored object (S3-SCOPE.md).
/// Only when `aws-chunked` is listed are the codings split; the others
/// keep their own text and the separators that followed them.
fn stored_content_encoding(headers: &HeaderMap) -> Result<Option<String>, S3Error> {
    let Some(value) = header_text(headers, "content-encoding")? else {
        return Ok(None);
    };
    let is_framing = |coding: &&str| coding.trim().eq_ignore_ascii_case("aws-chunked");
    let stored = if value.split(',').any(|coding| is_framing(&coding)) {
        let kept: Vec<&str> = value
            .split(',')
            .filter(|coding| !is_framing(coding))
            .collect();
        kept.join(",").trim().to_owned()
    } else {
        value
    };
    Ok((!stored.trim().is_empty()).then_some(stored))
}

/// `x-amz-meta-*` headers, names without the prefix, within AWS's 2 KiB.
fn user_metadata(headers: &HeaderMap) -> Result<Vec<(String, String)>, S3Error> {
    let mut metadata = Vec::new();
    let mut bytes = 0;
    for (name, value) in headers {
        let Some(short) = name.as_str().strip_prefix("x-amz-meta-") else {
            continue;
        };
        let value = String::from_utf8(value.as_bytes().to_vec())
            .map_err(|_| s3_error!(InvalidArgument, "User metadata values must be valid UTF-8."))?;
        bytes += short.len() + value.len();
        metadata.push((short.to_owned(), value));
    }
    if bytes > limits::USER_METADATA_BYTES_MAX {
        return Err(s3_error!(
            MetadataTooLarge,
            "Your metadata headers exceed the maximum allowed metadata size."
        )
        .with_extra("Size", bytes.to_string())
        .with_extra(
            "MaxSizeAllowed",
            limits::USER_METADATA_BYTES_MAX.to_string(),
        ));
    }
    Ok(metadata)
}

pub(super) fn now_ms() -> i64 {
    let elapsed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(values: &[&str]) -> Option<String> {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append("content-encoding", HeaderValue::from_str(value).unwrap());
        }
        stored_content_encoding(&headers).unwrap()
    }

    /// Regression (issue 12): the kept codings were re-joined with `,`, so
    /// `deflate, gzip` came back as `deflate,gzip`.
    #[test]
    fn content_encoding_is_kept_as_sent_less_aws_chunked() {
        assert_eq!(stored(&[]), None);
        assert_eq!(stored(&["gzip"]).as_deref(), Some("gzip"));
        assert_eq!(stored(&["deflate, gzip"]).as_deref(), Some("deflate, gzip"));
        assert_eq!(stored(&["deflate,gzip"]).as_deref(), Some("deflate,gzip"));
        assert_eq!(
            stored(&["deflate ,  gzip"]).as_deref(),
            Some("deflate ,  gzip")
        );
        assert_eq!(stored(&["aws-chunked"]), None);
        assert_eq!(stored(&["AWS-Chunked ,"]), None);
        assert_eq!(stored(&[""]), None);
        assert_eq!(
            stored(&["aws-chunked, deflate, gzip"]).as_deref(),
            Some("deflate, gzip")
        );
        assert_eq!(stored(&["aws-chunked,gzip"]).as_deref(), Some("gzip"));
        assert_eq!(
            stored(&["deflate, aws-chunked, gzip"]).as_deref(),
            Some("deflate, gzip")
        );
        assert_eq!(
            stored(&["deflate, gzip, aws-chunked"]).as_deref(),
            Some("deflate, gzip")
        );
        // Several header lines are one list (RFC 9110, 5.3).
        assert_eq!(
            stored(&["aws-chunked", "deflate, gzip"]).as_deref(),
            Some("deflate, gzip")
        );
        assert_eq!(
            stored(&["deflate", "gzip"]).as_deref(),
            Some("deflate, gzip")
        );
    }
}
