//! Multipart uploads: `CreateMultipartUpload`, `UploadPart`,
//! `CompleteMultipartUpload`, `AbortMultipartUpload`, `ListParts` and
//! `ListMultipartUploads` (`UploadPartCopy` is in `copy`).
//!
//! An upload lives on the shard that owns its key, like the object it
//! becomes (`storage::shard::uploads` keeps it durable across restarts).
//! A part's body streams into `Data` extents as a `PutObject` body does;
//! completion writes one commit record that names the parts' extents where
//! they are, so no byte is copied. The object's `ETag` is the MD5 of the
//! concatenated binary MD5s of the parts named in the completion, then
//! `-<count>`, as AWS computes it.
//!
//! Checksums: an upload created with `x-amz-checksum-algorithm` (and
//! `x-amz-checksum-type`) gives each part a checksum of that algorithm —
//! the one the part sends (header or trailer, checked like a `PutObject`
//! body's), or computed — and the completed object a checksum made from
//! the parts': `COMPOSITE`, the digest of the part digests, shown with
//! `-<part count>`; or `FULL_OBJECT`, the CRC of the whole object,
//! combined from the part CRCs without reading the data. The checksums a
//! completion lists for its parts must match the stored ones.
//!
//! Upload ids are 32 hex digits: the creation time in microseconds, then
//! random bits. They sort by creation time, which is the order AWS lists
//! one key's uploads in.
//!
//! - <https://docs.aws.amazon.com/AmazonS3/latest/API/API_CreateMultipartUpload.html>
//! - <https://docs.aws.amazon.com/AmazonS3/latest/API/API_CompleteMultipartUpload.html>
//! - <https://docs.aws.amazon.com/AmazonS3/latest/API/API_ListMultipartUploads.html>

use std::fmt::Write as _;
use std::rc::Rc;

use http::{HeaderValue, StatusCode};

use super::checksum::{self, BodyChecksum};
use super::list::url_encode;
use super::put::{
    begin_write, check_content_md5, content_md5, now_ms, object_names, object_template,
    receive_extents,
};
use super::xml::{self, XmlEvent, element, malformed_xml};
use super::{Response, S3Request};
use crate::error::S3Error;
use crate::http::body_reader::BodyReader;
use crate::limits;
use crate::node::worker::Worker;
use crate::s3_error;
use crate::storage::md5::Md5;
use crate::storage::object::{Checksum, ChecksumAlgorithm};
use crate::storage::object::{ETag, EXTENT_COUNT_MAX, Extent, ObjectBody};
use crate::storage::shard::UploadGuard;
use crate::storage::shard::uploads::{
    Completed, CreateUploadError, Upload, UploadError, UploadListed, UploadQuery,
};
use crate::storage::upload::{ChecksumSpec, UploadCreate, UploadEnd, UploadOutcome, UploadPart};

/// `NoSuchUpload`, as AWS words it.
#[must_use]
pub fn no_such_upload(upload_id: &str) -> S3Error {
    s3_error!(
        NoSuchUpload,
        "The specified upload does not exist. The upload ID may be invalid, or the upload may have been aborted or completed."
    )
    .with_extra("UploadId", upload_id)
}

fn check_bucket(worker: &Worker, bucket: &str) -> Result<(), S3Error> {
    if worker.catalog().buckets.contains_key(bucket) {
        Ok(())
    } else {
        Err(super::bucket::no_such_bucket(bucket))
    }
}

/// A new upload id: creation time in microseconds, then 64 random bits.
fn new_upload_id() -> String {
    let micros = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_micros();
    let mut random = [0_u8; 8];
    getrandom::fill(&mut random).expect("the OS random source works");
    format!(
        "{:016x}{}",
        u64::try_from(micros).unwrap_or(u64::MAX),
        hex::encode(random)
    )
}

pub async fn create_multipart_upload(
    worker: &Rc<Worker>,
    request: &S3Request<'_>,
) -> Result<Response, S3Error> {
    let (bucket, key) = object_names(worker, request)?;
    let _write = begin_write(worker, bucket).await?;
    super::acl::check_canned_acl(&request.head.headers)?;
    let template = object_template(bucket, key, &request.head.headers)?;
    let checksum = checksum_spec(&request.head.headers)?;
    let create = UploadCreate {
        upload_id: new_upload_id(),
        initiated_ms: now_ms(),
        checksum,
        template,
    };
    let uploads_max = worker.config.multipart_uploads_per_core_max;
    match worker
        .shard()
        .create_upload(create.clone(), uploads_max)
        .await
    {
        Ok(()) => {}
        Err(CreateUploadError::TooManyUploads) => {
            // Not a rate problem that a retry solves: uploads in progress
            // stay until they are completed or aborted.
            return Err(s3_error!(
                InvalidRequest,
                "This server holds the most multipart uploads in progress it allows ({} per \
                 core); complete or abort some (ListMultipartUploads shows them) before \
                 starting more.",
                uploads_max
            ));
        }
        Err(CreateUploadError::Storage(error)) => return Err(S3Error::from(error)),
    }
    let mut out = String::with_capacity(512);
    out.push_str(xml::XML_DECLARATION);
    out.push_str("<InitiateMultipartUploadResult xmlns=\"");
    out.push_str(xml::S3_NAMESPACE);
    out.push_str("\">");
    element(&mut out, "Bucket", bucket);
    element(&mut out, "Key", key);
    element(&mut out, "UploadId", &create.upload_id);
    out.push_str("</InitiateMultipartUploadResult>");
    let mut response = Response::xml(out);
    if let Some(spec) = checksum {
        response.headers.insert(
            http::HeaderName::from_static("x-amz-checksum-algorithm"),
            HeaderValue::from_static(checksum::name(spec.algorithm)),
        );
        response.headers.insert(
            http::HeaderName::from_static("x-amz-checksum-type"),
            HeaderValue::from_static(checksum::type_name(spec.composite)),
        );
    }
    Ok(response)
}

/// `x-amz-checksum-algorithm` and `x-amz-checksum-type` of a
/// `CreateMultipartUpload`, with AWS's defaults and refusals: `COMPOSITE`
/// unless the algorithm is CRC64NVME (which is `FULL_OBJECT` only); the
/// SHAs cannot be `FULL_OBJECT`.
fn checksum_spec(headers: &http::HeaderMap) -> Result<Option<ChecksumSpec>, S3Error> {
    let text = |name: &str| {
        headers
            .get(name)
            .map(|value| value.to_str().unwrap_or("\u{fffd}").trim().to_owned())
    };
    let algorithm = match text("x-amz-checksum-algorithm") {
        None => None,
        Some(value) => Some(checksum::parse_name(&value).ok_or_else(|| {
            s3_error!(
                InvalidRequest,
                "Checksum algorithm provided is unsupported. Please try again with any of the valid types: [CRC32, CRC32C, CRC64NVME, SHA1, SHA256]"
            )
        })?),
    };
    let composite = match text("x-amz-checksum-type") {
        None => None,
        Some(value) if value.eq_ignore_ascii_case("COMPOSITE") => Some(true),
        Some(value) if value.eq_ignore_ascii_case("FULL_OBJECT") => Some(false),
        Some(_) => {
            return Err(s3_error!(
                InvalidRequest,
                "Value for x-amz-checksum-type header is invalid."
            ));
        }
    };
    let Some(algorithm) = algorithm else {
        return match composite {
            None => Ok(None),
            Some(_) => Err(s3_error!(
                InvalidRequest,
                "The x-amz-checksum-type header can only be used with the x-amz-checksum-algorithm header."
            )),
        };
    };
    let is_crc64 = algorithm == ChecksumAlgorithm::Crc64Nvme;
    let is_sha = matches!(
        algorithm,
        ChecksumAlgorithm::Sha1 | ChecksumAlgorithm::Sha256
    );
    let composite = composite.unwrap_or(!is_crc64);
    if composite && is_crc64 {
        return Err(s3_error!(
            InvalidRequest,
            "The COMPOSITE checksum type cannot be used with the crc64nvme checksum algorithm."
        ));
    }
    if !composite && is_sha {
        return Err(s3_error!(
            InvalidRequest,
            "The FULL_OBJECT checksum type cannot be used with the {} checksum algorithm.",
            checksum::name(algorithm).to_ascii_lowercase()
        ));
    }
    Ok(Some(ChecksumSpec {
        algorithm,
        composite,
    }))
}

pub async fn upload_part(
    worker: &Rc<Worker>,
    request: &S3Request<'_>,
    body: &mut BodyReader<'_>,
    part_number: u32,
    upload_id: &str,
) -> Result<Response, S3Error> {
    let (bucket, key) = object_names(worker, request)?;
    let _write = begin_write(worker, bucket).await?;
    let shard = worker.shard();
    let Some(spec) = shard.upload_checksum(bucket, key, upload_id) else {
        return Err(no_such_upload(upload_id));
    };
    let size = body.declared_len().ok_or_else(|| {
        s3_error!(
            MissingContentLength,
            "You must provide the Content-Length HTTP header."
        )
    })?;
    if size > limits::PART_BYTES_MAX {
        return Err(s3_error!(
            EntityTooLarge,
            "Your proposed upload exceeds the maximum allowed size"
        )
        .with_extra("ProposedSize", size.to_string())
        .with_extra("MaxSizeAllowed", limits::PART_BYTES_MAX.to_string()));
    }
    let content_md5 = content_md5(&request.head.headers)?;
    let mut checksum = part_checksum(&request.head.headers, spec)?;
    let guard = shard.begin_upload();
    let (extents, md5) = receive_extents(worker, &shard, body, size, &mut checksum).await?;
    if let Some(expected) = content_md5
        && expected != md5
    {
        return Err(s3_error!(
            BadDigest,
            "The Content-MD5 you specified did not match what we received."
        ));
    }
    let part_checksum = checksum.finish(body.trailers())?;
    let part = UploadPart {
        upload_id: upload_id.to_owned(),
        part_number: u16::try_from(part_number).expect("the router checks part numbers"),
        size,
        md5,
        last_modified_ms: now_ms(),
        checksum: Some(part_checksum.clone()),
        extents,
    };
    store_part(worker, part, &guard).await?;
    drop(guard);
    let etag = HeaderValue::from_str(&ETag::Md5(md5).to_header_value()).expect("hex is ASCII");
    let mut response = Response::new(StatusCode::OK).with_header(http::header::ETAG, etag);
    response.headers.insert(
        http::HeaderName::from_static(checksum::header_name(part_checksum.algorithm)),
        HeaderValue::from_str(&checksum::display_value(&part_checksum, 0))
            .expect("base64 is ASCII"),
    );
    Ok(response)
}

/// The checksum of a part's body: what the request sends, which must be of
/// the upload's algorithm if it has one; else that algorithm (or CRC64NVME)
/// computed.
pub fn part_checksum(
    headers: &http::HeaderMap,
    spec: Option<ChecksumSpec>,
) -> Result<BodyChecksum, S3Error> {
    let default = spec.map_or(ChecksumAlgorithm::Crc64Nvme, |spec| spec.algorithm);
    let body = BodyChecksum::from_request_or(headers, default)?;
    if let Some(spec) = spec
        && body.algorithm() != spec.algorithm
    {
        return Err(s3_error!(
            InvalidRequest,
            "Checksum Type mismatch occurred, expected checksum Type: {}, actual checksum Type: {}",
            checksum::name(spec.algorithm).to_ascii_lowercase(),
            checksum::name(body.algorithm()).to_ascii_lowercase()
        ));
    }
    Ok(body)
}

/// Store a part on this core's shard; `guard` is the upload guard that was
/// taken before its extents were appended.
pub async fn store_part(
    worker: &Rc<Worker>,
    part: UploadPart,
    guard: &UploadGuard,
) -> Result<(), S3Error> {
    let upload_id = part.upload_id.clone();
    match worker.shard().store_part(part, guard).await {
        Ok(()) => Ok(()),
        Err(UploadError::NoSuchUpload) => Err(no_such_upload(&upload_id)),
        Err(UploadError::Storage(error)) => Err(S3Error::from(error)),
    }
}

/// One `<Part>` of a `CompleteMultipartUpload` body.
#[derive(Debug, Default)]
pub(crate) struct RequestedPart {
    pub(crate) number: Option<u32>,
    pub(crate) etag: Option<String>,
    /// `ChecksumCRC32` and the like, as sent.
    pub(crate) checksums: Vec<(ChecksumAlgorithm, String)>,
}

/// The parts of a `CompleteMultipartUpload` body (crate-visible for the
/// `xml_bodies` fuzz target).
pub(crate) fn parse_complete(body: &[u8]) -> Result<Vec<RequestedPart>, S3Error> {
    let mut parts: Vec<RequestedPart> = Vec::new();
    xml::walk(body, "CompleteMultipartUpload", |event| {
        match event {
            XmlEvent::Open(path) if path == ["Part"] => parts.push(RequestedPart::default()),
            XmlEvent::Leaf(path, text) if path.len() == 2 && path[0] == "Part" => {
                let part = parts.last_mut().expect("opened");
                match path[1].as_str() {
                    "PartNumber" => {
                        part.number = Some(text.trim().parse().map_err(|_| malformed_xml())?);
                    }
                    "ETag" => part.etag = Some(text),
                    other => {
                        if let Some(algorithm) = checksum::ALL
                            .into_iter()
                            .find(|algorithm| checksum::element_name(*algorithm) == other)
                        {
                            part.checksums.push((algorithm, text.trim().to_owned()));
                        }
                    }
                }
            }
            _ => {}
        }
        Ok(())
    })?;
    if parts.is_empty()
        || parts
            .iter()
            .any(|part| part.number.is_none() || part.etag.is_none())
    {
        return Err(malformed_xml());
    }
    Ok(parts)
}

/// An `ETag` as clients send it back, quotes or not.
fn bare_etag(etag: &str) -> &str {
    let etag = etag.trim();
    etag.strip_prefix('"')
        .and_then(|inner| inner.strip_suffix('"'))
        .unwrap_or(etag)
}

pub async fn complete_multipart_upload(
    worker: &Rc<Worker>,
    request: &S3Request<'_>,
    body: &mut BodyReader<'_>,
    upload_id: &str,
) -> Result<Response, S3Error> {
    let (bucket, key) = object_names(worker, request)?;
    let _write = begin_write(worker, bucket).await?;
    let shard = worker.shard();
    let (_memory, body) = super::read_xml_body(worker, body).await?;
    // An `x-amz-checksum-*` header here is the object's, not the body's.
    check_content_md5(&request.head.headers, &body)?;
    let requested = parse_complete(&body)?;
    let completed_before = |shard: &crate::storage::shard::Shard| {
        shard
            .uploads()
            .completed(upload_id)
            .filter(|done| done.bucket == bucket && done.key == key)
            .cloned()
    };
    let guard = if shard.has_upload(bucket, key, upload_id) {
        shard.begin_ending(upload_id).await
    } else {
        None
    };
    let Some(guard) = guard else {
        // Completed already (a client retrying a completion whose answer
        // it lost gets the same answer), or unknown.
        return match completed_before(&shard) {
            Some(done) => Ok(complete_result(request, &done, None)),
            None => Err(no_such_upload(upload_id)),
        };
    };
    let Some(upload) = shard.upload(bucket, key, upload_id) else {
        return Err(no_such_upload(upload_id));
    };

    let Assembled {
        etag,
        part_sizes,
        extents,
        checksums: part_checksums,
    } = assemble(&upload, &requested, upload_id)?;
    let size = part_sizes.iter().sum();
    let object_checksum = object_checksum(
        upload.create.checksum,
        &part_checksums,
        &part_sizes,
        &request.head.headers,
    )?;
    let mut commit = upload.create.template.clone();
    commit.size = size;
    commit.etag = etag;
    commit.last_modified_ms = now_ms();
    commit.checksums = object_checksum.iter().cloned().collect();
    commit.part_sizes = part_sizes;
    commit.body = ObjectBody::Extents(extents);
    let end = UploadEnd {
        upload_id: upload_id.to_owned(),
        bucket: bucket.to_owned(),
        key: key.to_owned(),
        ended_ms: commit.last_modified_ms,
        outcome: UploadOutcome::Completed { etag },
    };
    shard.end_upload(guard, Some(&commit), &end).await?;
    Ok(complete_result(
        request,
        &Completed {
            bucket: bucket.to_owned(),
            key: key.to_owned(),
            etag,
        },
        object_checksum
            .as_ref()
            .map(|sum| (sum, commit.part_sizes.len())),
    ))
}

/// The checksum of the object a completion makes, from its parts' (see the
/// module doc); a whole-object value the completion request sends in an
/// `x-amz-checksum-*` header must match it.
fn object_checksum(
    spec: Option<ChecksumSpec>,
    parts: &[Option<Checksum>],
    sizes: &[u64],
    headers: &http::HeaderMap,
) -> Result<Option<Checksum>, S3Error> {
    let Some(spec) = spec else {
        return Ok(None);
    };
    let mut with_sizes = Vec::with_capacity(parts.len());
    for (part, size) in parts.iter().zip(sizes) {
        match part {
            Some(part) if part.algorithm == spec.algorithm => {
                with_sizes.push((part.value.as_slice(), *size));
            }
            _ => {
                return Err(s3_error!(
                    InvalidRequest,
                    "A part of this upload has no {} checksum.",
                    checksum::name(spec.algorithm)
                ));
            }
        }
    }
    let combined = checksum::combine(spec.algorithm, spec.composite, &with_sizes);
    if let Some(sent) = headers.get(checksum::header_name(spec.algorithm)) {
        let sent = sent.to_str().unwrap_or_default().trim();
        let ours = checksum::display_value(&combined, parts.len());
        let without_count = ours.split('-').next().unwrap_or_default();
        if sent != ours && sent != without_count {
            return Err(s3_error!(
                BadDigest,
                "The {} you specified did not match the calculated checksum.",
                checksum::name(spec.algorithm)
            ));
        }
    }
    Ok(Some(combined))
}

/// The object the parts named by a completion make: its `ETag`, part sizes
/// and extents, after AWS's checks of the list.
fn assemble(
    upload: &Upload,
    requested: &[RequestedPart],
    upload_id: &str,
) -> Result<Assembled, S3Error> {
    let mut previous: Option<u32> = None;
    let mut checksums = Vec::with_capacity(requested.len());
    let mut md5s = Md5::new();
    let mut extents = Vec::new();
    let mut part_sizes = Vec::with_capacity(requested.len());
    let last_index = requested.len() - 1;
    for (index, wanted) in requested.iter().enumerate() {
        let number = wanted.number.expect("parsed");
        if previous.is_some_and(|previous| number <= previous) {
            return Err(s3_error!(
                InvalidPartOrder,
                "The list of parts was not in ascending order. Parts must be ordered by part number."
            )
            .with_extra("UploadId", upload_id));
        }
        previous = Some(number);
        let wanted_etag = wanted.etag.as_deref().expect("parsed");
        let stored = u16::try_from(number)
            .ok()
            .and_then(|number| upload.parts.get(&number))
            .map(|(part, _)| part)
            .filter(|part| hex::encode(part.md5) == bare_etag(wanted_etag).to_ascii_lowercase());
        let Some(part) = stored else {
            return Err(s3_error!(
                InvalidPart,
                "One or more of the specified parts could not be found. The part may not have been uploaded, or the specified entity tag may not match the part's entity tag."
            )
            .with_extra("UploadId", upload_id)
            .with_extra("PartNumber", number.to_string())
            .with_extra("ETag", wanted_etag));
        };
        if index != last_index && part.size < limits::PART_BYTES_MIN {
            return Err(s3_error!(
                EntityTooSmall,
                "Your proposed upload is smaller than the minimum allowed object size."
            )
            .with_extra("UploadId", upload_id)
            .with_extra("PartNumber", number.to_string())
            .with_extra("ProposedSize", part.size.to_string())
            .with_extra("MinSizeAllowed", limits::PART_BYTES_MIN.to_string()));
        }
        for (algorithm, sent) in &wanted.checksums {
            let matches = part.checksum.as_ref().is_some_and(|stored| {
                stored.algorithm == *algorithm && checksum::display_value(stored, 0) == *sent
            });
            if !matches {
                return Err(s3_error!(
                    InvalidPart,
                    "One or more of the specified parts could not be found. The part may not have been uploaded, or the specified checksum may not match the part's checksum."
                )
                .with_extra("UploadId", upload_id)
                .with_extra("PartNumber", number.to_string()));
            }
        }
        md5s.update(&part.md5);
        extents.extend_from_slice(&part.extents);
        part_sizes.push(part.size);
        checksums.push(part.checksum.clone());
    }
    let size: u64 = part_sizes.iter().sum();
    if size > limits::MULTIPART_OBJECT_BYTES_MAX || extents.len() > EXTENT_COUNT_MAX {
        return Err(s3_error!(
            EntityTooLarge,
            "Your proposed upload exceeds the maximum allowed size"
        )
        .with_extra("ProposedSize", size.to_string())
        .with_extra(
            "MaxSizeAllowed",
            limits::MULTIPART_OBJECT_BYTES_MAX.to_string(),
        ));
    }
    let etag = ETag::Multipart {
        digest: md5s.finish(),
        part_count: u16::try_from(requested.len())
            .expect("part numbers are distinct and at most 10,000"),
    };
    Ok(Assembled {
        etag,
        part_sizes,
        extents,
        checksums,
    })
}

/// What [`assemble`] makes of a completion's parts.
struct Assembled {
    etag: ETag,
    part_sizes: Vec<u64>,
    extents: Vec<Extent>,
    /// Each part's stored checksum, in order.
    checksums: Vec<Option<Checksum>>,
}

fn complete_result(
    request: &S3Request<'_>,
    done: &Completed,
    checksum: Option<(&Checksum, usize)>,
) -> Response {
    let host = request
        .head
        .headers
        .get(http::header::HOST)
        .and_then(|host| host.to_str().ok())
        .unwrap_or("localhost");
    let mut out = String::with_capacity(512);
    out.push_str(xml::XML_DECLARATION);
    out.push_str("<CompleteMultipartUploadResult xmlns=\"");
    out.push_str(xml::S3_NAMESPACE);
    out.push_str("\">");
    let path: String = done
        .key
        .split('/')
        .map(url_encode)
        .collect::<Vec<_>>()
        .join("/");
    element(
        &mut out,
        "Location",
        &format!("http://{host}/{}/{path}", done.bucket),
    );
    element(&mut out, "Bucket", &done.bucket);
    element(&mut out, "Key", &done.key);
    element(&mut out, "ETag", &done.etag.to_header_value());
    if let Some((sum, part_count)) = checksum {
        element(
            &mut out,
            checksum::element_name(sum.algorithm),
            &checksum::display_value(sum, part_count),
        );
        element(&mut out, "ChecksumType", checksum::type_name(sum.composite));
    }
    out.push_str("</CompleteMultipartUploadResult>");
    Response::xml(out)
}

pub async fn abort_multipart_upload(
    worker: &Rc<Worker>,
    request: &S3Request<'_>,
    upload_id: &str,
) -> Result<Response, S3Error> {
    let (bucket, key) = object_names(worker, request)?;
    check_bucket(worker, bucket)?;
    let shard = worker.shard();
    let guard = if shard.has_upload(bucket, key, upload_id) {
        shard.begin_ending(upload_id).await
    } else {
        None
    };
    let Some(guard) = guard else {
        return Err(no_such_upload(upload_id));
    };
    let end = UploadEnd {
        upload_id: upload_id.to_owned(),
        bucket: bucket.to_owned(),
        key: key.to_owned(),
        ended_ms: now_ms(),
        outcome: UploadOutcome::Aborted,
    };
    shard.end_upload(guard, None, &end).await?;
    Ok(Response::new(StatusCode::NO_CONTENT))
}

/// A non-negative integer query parameter, at most `max` (larger values
/// are served as `max`, as AWS does for page sizes).
fn count_param(
    request: &S3Request<'_>,
    name: &str,
    default: usize,
    max: usize,
) -> Result<usize, S3Error> {
    match request.query_param(name) {
        None => Ok(default),
        Some(text) => match text.parse::<i64>() {
            Ok(value) if value >= 0 => {
                Ok(usize::try_from(value).map_or(max, |value| value.min(max)))
            }
            _ => Err(s3_error!(
                InvalidArgument,
                "Provided {name} not an integer or within integer range"
            )
            .with_extra("ArgumentName", name)
            .with_extra("ArgumentValue", &text)),
        },
    }
}

pub fn list_parts(
    worker: &Rc<Worker>,
    request: &S3Request<'_>,
    upload_id: &str,
) -> Result<Response, S3Error> {
    let (bucket, key) = object_names(worker, request)?;
    check_bucket(worker, bucket)?;
    let max_parts = count_param(
        request,
        "max-parts",
        limits::LIST_PARTS_PAGE_MAX,
        limits::LIST_PARTS_PAGE_MAX,
    )?;
    let marker = count_param(request, "part-number-marker", 0, usize::MAX)?;
    let upload = worker
        .shard()
        .upload(bucket, key, upload_id)
        .ok_or_else(|| no_such_upload(upload_id))?;
    let mut parts = upload
        .parts
        .values()
        .map(|(part, _)| part)
        .filter(|part| usize::from(part.part_number) > marker);
    let page: Vec<&UploadPart> = parts.by_ref().take(max_parts).collect();
    // An empty page cannot say where the next one starts, so it is not
    // truncated (as for `max-keys=0`).
    let truncated = max_parts > 0 && parts.next().is_some();
    let mut out = String::with_capacity(512 + page.len() * 200);
    out.push_str(xml::XML_DECLARATION);
    out.push_str("<ListPartsResult xmlns=\"");
    out.push_str(xml::S3_NAMESPACE);
    out.push_str("\">");
    element(&mut out, "Bucket", bucket);
    element(&mut out, "Key", key);
    element(&mut out, "UploadId", upload_id);
    write_owner(&mut out, "Initiator", &worker.owner);
    write_owner(&mut out, "Owner", &worker.owner);
    out.push_str("<StorageClass>STANDARD</StorageClass>");
    let _ = write!(out, "<PartNumberMarker>{marker}</PartNumberMarker>");
    if let Some(last) = page.last() {
        let _ = write!(
            out,
            "<NextPartNumberMarker>{}</NextPartNumberMarker>",
            last.part_number
        );
    }
    let _ = write!(
        out,
        "<MaxParts>{max_parts}</MaxParts><IsTruncated>{truncated}</IsTruncated>"
    );
    for part in page {
        let _ = write!(out, "<Part><PartNumber>{}</PartNumber>", part.part_number);
        element(
            &mut out,
            "LastModified",
            &xml::timestamp(part.last_modified_ms),
        );
        element(&mut out, "ETag", &ETag::Md5(part.md5).to_header_value());
        if let Some(sum) = &part.checksum {
            element(
                &mut out,
                checksum::element_name(sum.algorithm),
                &checksum::display_value(sum, 0),
            );
        }
        let _ = write!(out, "<Size>{}</Size></Part>", part.size);
    }
    out.push_str("</ListPartsResult>");
    Ok(Response::xml(out))
}

fn write_owner(out: &mut String, name: &str, owner: &xml::Owner) {
    out.push('<');
    out.push_str(name);
    out.push('>');
    element(out, "ID", &owner.id);
    element(out, "DisplayName", &owner.display_name);
    out.push_str("</");
    out.push_str(name);
    out.push('>');
}

pub async fn list_multipart_uploads(
    worker: &Rc<Worker>,
    request: &S3Request<'_>,
) -> Result<Response, S3Error> {
    let bucket = request
        .route
        .bucket
        .clone()
        .ok_or_else(|| s3_error!(InvalidBucketName, "The specified bucket is not valid."))?;
    check_bucket(worker, &bucket)?;
    let max_uploads = count_param(
        request,
        "max-uploads",
        limits::LIST_PARTS_PAGE_MAX,
        limits::LIST_PARTS_PAGE_MAX,
    )?;
    let url_encoding = match request.query_param("encoding-type") {
        None => false,
        Some(value) if value.eq_ignore_ascii_case("url") => true,
        Some(value) => {
            return Err(s3_error!(
                InvalidArgument,
                "Invalid Encoding Method specified in Request"
            )
            .with_extra("ArgumentName", "encoding-type")
            .with_extra("ArgumentValue", &value));
        }
    };
    let prefix = request.query_param("prefix").unwrap_or_default();
    let delimiter = request.query_param("delimiter").unwrap_or_default();
    let key_marker = request.query_param("key-marker").unwrap_or_default();
    // AWS ignores an upload-id-marker without a key-marker.
    let upload_id_marker = if key_marker.is_empty() {
        String::new()
    } else {
        request.query_param("upload-id-marker").unwrap_or_default()
    };
    let query = UploadQuery {
        bucket: bucket.clone(),
        prefix: prefix.clone(),
        delimiter: delimiter.clone(),
        key_marker: key_marker.clone(),
        upload_id_marker: upload_id_marker.clone(),
        limit: max_uploads + 1,
    };
    let mut all: Vec<UploadListed> = worker
        .list_uploads(&query)
        .await
        .map_err(|_| super::shutting_down())?;
    all.sort_by_key(position);
    all.dedup();
    // An empty page cannot say where the next one starts, so it is not
    // truncated (as for `max-keys=0`).
    let truncated = max_uploads > 0 && all.len() > max_uploads;
    all.truncate(max_uploads);

    let page = UploadsPage {
        bucket: &bucket,
        prefix: &prefix,
        delimiter: &delimiter,
        key_marker: &key_marker,
        upload_id_marker: &upload_id_marker,
        max_uploads,
        url_encoding,
        truncated,
        entries: &all,
    };
    Ok(Response::xml(page.render(&worker.owner)))
}

/// Where an entry of a `ListMultipartUploads` answer sorts: `(key, upload
/// id)`, a common prefix with an empty id.
fn position(entry: &UploadListed) -> (String, String) {
    match entry {
        UploadListed::Upload(upload) => (upload.key.clone(), upload.upload_id.clone()),
        UploadListed::CommonPrefix(prefix) => (prefix.clone(), String::new()),
    }
}

/// A `ListMultipartUploadsResult` to render.
struct UploadsPage<'a> {
    bucket: &'a str,
    prefix: &'a str,
    delimiter: &'a str,
    key_marker: &'a str,
    upload_id_marker: &'a str,
    max_uploads: usize,
    url_encoding: bool,
    truncated: bool,
    entries: &'a [UploadListed],
}

impl UploadsPage<'_> {
    fn render(&self, owner: &xml::Owner) -> String {
        let url_encoding = self.url_encoding;
        let text = |out: &mut String, name: &str, value: &str| {
            if url_encoding {
                element(out, name, &url_encode(value));
            } else {
                element(out, name, value);
            }
        };
        let mut out = String::with_capacity(512 + self.entries.len() * 400);
        out.push_str(xml::XML_DECLARATION);
        out.push_str("<ListMultipartUploadsResult xmlns=\"");
        out.push_str(xml::S3_NAMESPACE);
        out.push_str("\">");
        element(&mut out, "Bucket", self.bucket);
        text(&mut out, "KeyMarker", self.key_marker);
        element(&mut out, "UploadIdMarker", self.upload_id_marker);
        if self.truncated {
            let (next_key, next_id) =
                position(self.entries.last().expect("a truncated page is not empty"));
            text(&mut out, "NextKeyMarker", &next_key);
            element(&mut out, "NextUploadIdMarker", &next_id);
        }
        if !self.delimiter.is_empty() {
            text(&mut out, "Delimiter", self.delimiter);
        }
        text(&mut out, "Prefix", self.prefix);
        let _ = write!(
            out,
            "<MaxUploads>{}</MaxUploads><IsTruncated>{}</IsTruncated>",
            self.max_uploads, self.truncated
        );
        for entry in self.entries {
            if let UploadListed::Upload(upload) = entry {
                out.push_str("<Upload>");
                text(&mut out, "Key", &upload.key);
                element(&mut out, "UploadId", &upload.upload_id);
                write_owner(&mut out, "Initiator", owner);
                write_owner(&mut out, "Owner", owner);
                out.push_str("<StorageClass>STANDARD</StorageClass>");
                element(&mut out, "Initiated", &xml::timestamp(upload.initiated_ms));
                out.push_str("</Upload>");
            }
        }
        for entry in self.entries {
            if let UploadListed::CommonPrefix(prefix) = entry {
                out.push_str("<CommonPrefixes>");
                text(&mut out, "Prefix", prefix);
                out.push_str("</CommonPrefixes>");
            }
        }
        if url_encoding {
            out.push_str("<EncodingType>url</EncodingType>");
        }
        out.push_str("</ListMultipartUploadsResult>");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upload_ids_sort_by_creation_and_are_unique() {
        let first = new_upload_id();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let second = new_upload_id();
        assert_eq!(first.len(), 32);
        assert!(first < second);
        assert!(first.bytes().all(|byte| byte.is_ascii_hexdigit()));
    }

    #[test]
    fn complete_bodies_parse_and_refuse_garbage() {
        let parts = parse_complete(
            br#"<CompleteMultipartUpload xmlns="http://s3.amazonaws.com/doc/2006-03-01/">
                <Part><ETag>"aa"</ETag><PartNumber>1</PartNumber></Part>
                <Part><PartNumber> 2 </PartNumber><ETag>bb</ETag><ChecksumCRC32>x</ChecksumCRC32></Part>
            </CompleteMultipartUpload>"#,
        )
        .unwrap();
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0].number, Some(1));
        assert_eq!(parts[0].etag.as_deref(), Some("\"aa\""));
        assert_eq!(parts[1].number, Some(2));
        for body in [
            &b"<CompleteMultipartUpload/>"[..],
            b"<CompleteMultipartUpload></CompleteMultipartUpload>",
            b"<CompleteMultipartUpload><Part><PartNumber>1</PartNumber></Part></CompleteMultipartUpload>",
            b"<CompleteMultipartUpload><Part><PartNumber>x</PartNumber><ETag>a</ETag></Part></CompleteMultipartUpload>",
            b"<Other/>",
            b"",
        ] {
            assert!(parse_complete(body).is_err(), "{body:?}");
        }
        assert_eq!(bare_etag("\"abc\""), "abc");
        assert_eq!(bare_etag(" abc "), "abc");
    }
}
