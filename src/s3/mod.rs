//! The S3 API: one `match` over the routed operation, one file per group.
//!
//! [`router`] turns a request into an [`router::Endpoint`] named exactly as
//! AWS names the operation; [`dispatch`] calls that operation's handler.
//! An operation without a handler answers `501 NotImplemented` as S3 XML:
//! a request is never silently served by another operation.
//!
//! Adding an operation touches `router.rs` (if it is not routed yet), one
//! file here, perhaps `xml.rs`, and its test file.

pub mod acl;
pub mod bucket;
pub mod checksum;
pub mod conditions;
pub mod copy;
pub mod delete;
pub mod get;
pub mod list;
pub mod multipart;
pub mod put;
pub mod router;
pub mod xml;

use std::rc::Rc;

use http::{HeaderMap, HeaderValue, StatusCode};

use crate::error::S3Error;
use crate::http::body_reader::BodyReader;
use crate::http::request::RequestHead;
use crate::node::worker::Worker;
use crate::s3_error;
use router::{Endpoint, Route};

/// Everything a handler knows about its request besides the body.
pub struct S3Request<'a> {
    pub head: &'a RequestHead,
    pub route: &'a Route,
    pub request_id: &'a str,
    pub access_key_id: &'a str,
}

impl S3Request<'_> {
    /// The value of a query parameter, percent-decoded.
    #[must_use]
    pub fn query_param(&self, name: &str) -> Option<String> {
        let query = self.head.query.as_deref()?;
        router::query_pairs(query)
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.into_owned())
    }
}

/// A response: a small body held in memory, or an object's bytes streamed
/// from its shard after the head.
pub struct Response {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
    pub object: Option<get::ObjectStream>,
}

impl Response {
    #[must_use]
    pub fn new(status: StatusCode) -> Response {
        Response {
            status,
            headers: HeaderMap::new(),
            body: Vec::new(),
            object: None,
        }
    }

    /// `200 OK` with an XML document.
    #[must_use]
    pub fn xml(body: String) -> Response {
        let mut response = Response::new(StatusCode::OK);
        response.headers.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/xml"),
        );
        response.body = body.into_bytes();
        response
    }

    #[must_use]
    pub fn with_header(mut self, name: http::HeaderName, value: HeaderValue) -> Response {
        self.headers.insert(name, value);
        self
    }
}

/// A storage failure the client can act on gets its own code; every other
/// one is internal (its cause is logged).
impl From<crate::storage::shard::ShardError> for S3Error {
    fn from(error: crate::storage::shard::ShardError) -> Self {
        use crate::storage::segment::StorageError;
        use crate::storage::shard::ShardError;
        match error {
            ShardError::Storage(StorageError::NoSpace(why)) => {
                let mut error = S3Error::new(
                    crate::error::S3ErrorCode::XMinioStorageFull,
                    "Storage is full: new object data is refused to keep room for deletes \
                     and compaction. Delete objects or free disk space, then try again.",
                );
                error.source = Some(why.into());
                error
            }
            ShardError::Storage(StorageError::PreviousIo) => S3Error::new(
                crate::error::S3ErrorCode::ServiceUnavailable,
                "The storage this key is on failed a write and takes no more writes until \
                 the server restarts; reads still work.",
            ),
            ShardError::Storage(StorageError::Busy(cause)) => {
                let mut error = S3Error::new(
                    crate::error::S3ErrorCode::SlowDown,
                    "Please reduce your request rate.",
                );
                error.source = Some(cause.into());
                error
            }
            other => S3Error::internal(other),
        }
    }
}

impl From<crate::storage::segment::StorageError> for S3Error {
    fn from(error: crate::storage::segment::StorageError) -> Self {
        crate::storage::shard::ShardError::Storage(error).into()
    }
}

/// The answer when another core a request needs is stopping.
pub(crate) fn shutting_down() -> S3Error {
    s3_error!(ServiceUnavailable, "The server is shutting down")
}

/// Read an XML request body (at most `limits::XML_BODY_BYTES_MAX`) into
/// memory, within the core's body budget: the returned permit holds the
/// reservation until the caller drops it, after the document is parsed.
pub(crate) async fn read_xml_body<'w>(
    worker: &'w Worker,
    body: &mut BodyReader<'_>,
) -> Result<(glommio::sync::Permit<'w>, Vec<u8>), S3Error> {
    let limit = crate::limits::XML_BODY_BYTES_MAX;
    let reserved = body.declared_len().map_or(limit, |len| len.min(limit));
    let memory = worker.reserve_body_bytes(reserved).await;
    let data = body.read_to_vec(limit).await?;
    Ok((memory, data))
}

/// Run the handler of `request.route.endpoint`.
pub async fn dispatch(
    worker: &Rc<Worker>,
    request: &S3Request<'_>,
    body: &mut BodyReader<'_>,
) -> Result<Response, S3Error> {
    match &request.route.endpoint {
        Endpoint::ListBuckets => bucket::list_buckets(worker, request),
        Endpoint::CreateBucket => bucket::create_bucket(worker, request, body).await,
        Endpoint::HeadBucket => bucket::head_bucket(worker, request),
        Endpoint::DeleteBucket => bucket::delete_bucket(worker, request).await,
        Endpoint::GetBucketLocation => bucket::get_bucket_location(worker, request),
        Endpoint::ListObjects => list::list_objects(worker, request).await,
        Endpoint::ListObjectsV2 => list::list_objects_v2(worker, request).await,
        Endpoint::CreateMultipartUpload => {
            multipart::create_multipart_upload(worker, request).await
        }
        Endpoint::UploadPart {
            part_number,
            upload_id,
        } => multipart::upload_part(worker, request, body, *part_number, upload_id).await,
        Endpoint::CompleteMultipartUpload { upload_id } => {
            multipart::complete_multipart_upload(worker, request, body, upload_id).await
        }
        Endpoint::AbortMultipartUpload { upload_id } => {
            multipart::abort_multipart_upload(worker, request, upload_id).await
        }
        Endpoint::ListParts { upload_id } => multipart::list_parts(worker, request, upload_id),
        Endpoint::ListMultipartUploads => multipart::list_multipart_uploads(worker, request).await,
        Endpoint::PutObject => put::put_object(worker, request, body).await,
        Endpoint::GetObject {
            part_number,
            version_id: None,
        } => get::get_object(worker, request, false, *part_number).await,
        Endpoint::HeadObject {
            part_number,
            version_id: None,
        } => get::get_object(worker, request, true, *part_number).await,
        Endpoint::CopyObject => copy::copy_object(worker, request).await,
        Endpoint::UploadPartCopy {
            part_number,
            upload_id,
        } => copy::upload_part_copy(worker, request, *part_number, upload_id).await,
        Endpoint::DeleteObjects => delete::delete_objects(worker, request, body).await,
        Endpoint::DeleteObject { version_id: None } => delete::delete_object(worker, request).await,
        other => Err(s3_error!(
            NotImplemented,
            "{} is not implemented by this server",
            other.name()
        )),
    }
}
