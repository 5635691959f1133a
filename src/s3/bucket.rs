//! Bucket operations: `ListBuckets`, `CreateBucket`, `HeadBucket`, `DeleteBucket`,
//! `GetBucketLocation`.
//!
//! Reads are answered from this core's copy of the catalog; changes go to
//! the catalog shard over the mesh, which makes them durable and installs
//! them on every core before answering (see `node::worker`).
//!
//! - <https://docs.aws.amazon.com/AmazonS3/latest/API/API_ListBuckets.html>
//! - <https://docs.aws.amazon.com/AmazonS3/latest/API/API_CreateBucket.html>
//! - <https://docs.aws.amazon.com/AmazonS3/latest/API/API_HeadBucket.html>
//! - <https://docs.aws.amazon.com/AmazonS3/latest/API/API_DeleteBucket.html>
//! - <https://docs.aws.amazon.com/AmazonS3/latest/API/API_GetBucketLocation.html>
//! - Naming rules: <https://docs.aws.amazon.com/AmazonS3/latest/userguide/bucketnamingrules.html>

use std::rc::Rc;

use http::{HeaderValue, StatusCode};

use super::xml::{self, ListedBucket};
use super::{Response, S3Request};
use crate::error::S3Error;
use crate::http::body_reader::BodyReader;
use crate::limits;
use crate::node::mesh::BucketChange;
use crate::node::worker::Worker;
use crate::s3_error;
use crate::storage::segment::StorageError;

/// Most buckets one `ListBuckets` page returns, as AWS.
const LIST_BUCKETS_PAGE_MAX: usize = 10_000;

pub fn list_buckets(worker: &Rc<Worker>, request: &S3Request<'_>) -> Result<Response, S3Error> {
    let page_max = match request.query_param("max-buckets") {
        None => LIST_BUCKETS_PAGE_MAX,
        Some(text) => match text.parse::<usize>() {
            Ok(value) if (1..=LIST_BUCKETS_PAGE_MAX).contains(&value) => value,
            _ => {
                return Err(s3_error!(
                    InvalidArgument,
                    "Argument max-buckets must be an integer between 1 and {LIST_BUCKETS_PAGE_MAX}"
                ));
            }
        },
    };
    let after = match request.query_param("continuation-token") {
        None => None,
        Some(token) => Some(
            hex::decode(&token)
                .ok()
                .and_then(|bytes| String::from_utf8(bytes).ok())
                .ok_or_else(|| {
                    s3_error!(
                        InvalidArgument,
                        "The continuation token provided is incorrect"
                    )
                })?,
        ),
    };
    let prefix = request.query_param("prefix");
    let region_filter = request.query_param("bucket-region");
    let catalog = worker.catalog();
    let lower = match &after {
        Some(name) => std::ops::Bound::Excluded(name.clone()),
        None => std::ops::Bound::Unbounded,
    };
    let mut listed = Vec::new();
    let mut truncated_after = None;
    for (name, info) in catalog.buckets.range((lower, std::ops::Bound::Unbounded)) {
        if prefix.as_deref().is_some_and(|p| !name.starts_with(p)) {
            continue;
        }
        if region_filter.as_deref().is_some_and(|r| r != info.region) {
            continue;
        }
        if listed.len() == page_max {
            truncated_after = listed.last().map(|b: &ListedBucket<'_>| b.name.to_owned());
            break;
        }
        listed.push(ListedBucket {
            name,
            created_ms: info.created_ms,
            region: &info.region,
        });
    }
    let token = truncated_after.map(hex::encode);
    Ok(Response::xml(xml::list_all_my_buckets_result(
        &worker.owner,
        &listed,
        token.as_deref(),
        prefix.as_deref(),
    )))
}

pub async fn create_bucket(
    worker: &Rc<Worker>,
    request: &S3Request<'_>,
    body: &mut BodyReader<'_>,
) -> Result<Response, S3Error> {
    let name = bucket_name(request)?;
    validate_bucket_name(name)?;
    let headers = &request.head.headers;
    super::acl::check_canned_acl(headers)?;
    if headers
        .get("x-amz-bucket-object-lock-enabled")
        .is_some_and(|value| value.as_bytes().eq_ignore_ascii_case(b"true"))
    {
        return Err(s3_error!(
            NotImplemented,
            "Object lock is not implemented by this server"
        ));
    }
    let (_memory, data) = super::read_xml_body(worker, body).await?;
    super::put::check_content_md5(&request.head.headers, &data)?;
    super::checksum::verify(&request.head.headers, body.trailers(), &data)?;
    let configuration = xml::parse_create_bucket_configuration(&data)?;
    let region = &worker.config.region;
    if let Some(constraint) = configuration.location_constraint.as_deref()
        && !constraint.is_empty()
        && constraint != region
    {
        return Err(s3_error!(
            InvalidLocationConstraint,
            "The {constraint} location constraint is incompatible with the region of this server, {region}"
        )
        .with_extra("LocationConstraint", constraint));
    }
    let change = worker.create_bucket(name, region, now_ms()).await;
    match change {
        BucketChange::Created => Ok(created(name)),
        // us-east-1 answers 200 to a repeated CreateBucket by the owner
        // (legacy behaviour clients rely on); every other region 409.
        BucketChange::AlreadyOwned if region == "us-east-1" => Ok(created(name)),
        BucketChange::AlreadyOwned => Err(s3_error!(
            BucketAlreadyOwnedByYou,
            "Your previous request to create the named bucket succeeded and you already own it."
        )
        .with_extra("BucketName", name)),
        BucketChange::TooManyBuckets => Err(s3_error!(
            TooManyBuckets,
            "You have attempted to create more buckets than allowed"
        )),
        BucketChange::Failed => Err(S3Error::internal("the bucket catalog could not be written")),
        BucketChange::NoSpace => Err(StorageError::NoSpace("the catalog".to_owned()).into()),
        BucketChange::Deleted
        | BucketChange::NoSuchBucket
        | BucketChange::NotEmpty
        | BucketChange::InUse => {
            unreachable!("CreateBucket answered {change:?}")
        }
    }
}

fn created(name: &str) -> Response {
    let location = HeaderValue::from_str(&format!("/{name}")).expect("bucket names are ASCII");
    Response::new(StatusCode::OK).with_header(http::header::LOCATION, location)
}

pub fn head_bucket(worker: &Rc<Worker>, request: &S3Request<'_>) -> Result<Response, S3Error> {
    let name = bucket_name(request)?;
    let catalog = worker.catalog();
    let info = catalog
        .buckets
        .get(name)
        .ok_or_else(|| no_such_bucket(name))?;
    let region = HeaderValue::from_str(&info.region).expect("regions are ASCII");
    Ok(Response::new(StatusCode::OK)
        .with_header(http::HeaderName::from_static("x-amz-bucket-region"), region)
        .with_header(
            http::HeaderName::from_static("x-amz-access-point-alias"),
            HeaderValue::from_static("false"),
        ))
}

pub async fn delete_bucket(
    worker: &Rc<Worker>,
    request: &S3Request<'_>,
) -> Result<Response, S3Error> {
    let name = bucket_name(request)?;
    if !worker.catalog().buckets.contains_key(name) {
        return Err(no_such_bucket(name));
    }
    let change = worker.delete_bucket(name).await;
    match change {
        BucketChange::Deleted => Ok(Response::new(StatusCode::NO_CONTENT)),
        BucketChange::NoSuchBucket => Err(no_such_bucket(name)),
        BucketChange::NotEmpty => Err(s3_error!(
            BucketNotEmpty,
            "The bucket you tried to delete is not empty"
        )
        .with_extra("BucketName", name)),
        BucketChange::InUse => Err(s3_error!(
            OperationAborted,
            "A conflicting conditional operation is currently in progress against this resource. Please try again."
        )),
        BucketChange::Failed => Err(S3Error::internal("the bucket catalog could not be written")),
        BucketChange::NoSpace => Err(StorageError::NoSpace("the catalog".to_owned()).into()),
        _ => unreachable!("DeleteBucket answered {change:?}"),
    }
}

pub fn get_bucket_location(
    worker: &Rc<Worker>,
    request: &S3Request<'_>,
) -> Result<Response, S3Error> {
    let name = bucket_name(request)?;
    let catalog = worker.catalog();
    let info = catalog
        .buckets
        .get(name)
        .ok_or_else(|| no_such_bucket(name))?;
    Ok(Response::xml(xml::location_constraint(&info.region)))
}

fn bucket_name<'a>(request: &'a S3Request<'_>) -> Result<&'a str, S3Error> {
    request
        .route
        .bucket
        .as_deref()
        .ok_or_else(|| s3_error!(InvalidBucketName, "The specified bucket is not valid."))
}

#[must_use]
pub fn no_such_bucket(name: &str) -> S3Error {
    s3_error!(NoSuchBucket, "The specified bucket does not exist").with_extra("BucketName", name)
}

fn now_ms() -> i64 {
    let elapsed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX)
}

/// AWS's naming rules for new general-purpose buckets.
pub fn validate_bucket_name(name: &str) -> Result<(), S3Error> {
    let invalid = |why: &str| {
        s3_error!(
            InvalidBucketName,
            "The specified bucket is not valid: {why}"
        )
        .with_extra("BucketName", name)
    };
    let bytes = name.as_bytes();
    if !(limits::BUCKET_NAME_BYTES_MIN..=limits::BUCKET_NAME_BYTES_MAX).contains(&bytes.len()) {
        return Err(invalid("names are 3 to 63 characters long"));
    }
    if !bytes
        .iter()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'.' || *b == b'-')
    {
        return Err(invalid(
            "names use only lower-case letters, digits, dots and hyphens",
        ));
    }
    let alphanumeric = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    if !alphanumeric(bytes[0]) || !alphanumeric(bytes[bytes.len() - 1]) {
        return Err(invalid("names begin and end with a letter or digit"));
    }
    if name.contains("..") {
        return Err(invalid("names have no two adjacent dots"));
    }
    if name.parse::<std::net::Ipv4Addr>().is_ok() {
        return Err(invalid("names are not IP addresses"));
    }
    for prefix in ["xn--", "sthree-", "amzn-s3-demo-"] {
        if name.starts_with(prefix) {
            return Err(invalid("the name starts with a reserved prefix"));
        }
    }
    for suffix in ["-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3"] {
        if name.ends_with(suffix) {
            return Err(invalid("the name ends with a reserved suffix"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_names_follow_aws_rules() {
        for good in [
            "abc",
            "my-bucket",
            "my.bucket.name",
            "1bucket",
            "bucket1",
            &"a".repeat(63),
            "192.168.5.4x",
        ] {
            assert!(validate_bucket_name(good).is_ok(), "{good}");
        }
        for bad in [
            "ab",
            &"a".repeat(64),
            "My-Bucket",
            "my_bucket",
            "-bucket",
            "bucket-",
            ".bucket",
            "bucket.",
            "my..bucket",
            "192.168.5.4",
            "xn--bucket",
            "sthree-bucket",
            "amzn-s3-demo-bucket",
            "bucket-s3alias",
            "bucket--ol-s3",
            "bucket.mrap",
            "bucket--x-s3",
            "bucket--table-s3",
            "buck et",
            "bücket",
        ] {
            let error = validate_bucket_name(bad).unwrap_err();
            assert_eq!(
                error.code,
                crate::error::S3ErrorCode::InvalidBucketName,
                "{bad}"
            );
        }
    }
}
