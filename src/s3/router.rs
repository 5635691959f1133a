//! The S3 router: one request head in, exactly one S3 operation out.
//!
//! # What it owns
//!
//! [`route`] turns `(method, Host, raw path, raw query, headers)` into a
//! [`Route`]: the [`Endpoint`] (one variant per S3 operation, named exactly
//! as the AWS API reference names it, so a search for a name from the AWS
//! docs lands here), the bucket and the key, both percent-decoded exactly
//! once. It also owns the two small parsers that every handler needs the
//! same way: [`parse_copy_source`] for `x-amz-copy-source` and
//! [`query_pairs`] for reading query parameters.
//!
//! # What it does not own
//!
//! Authentication (the `auth/` module signs the path *as sent*, never the
//! decoded key), full bucket-name validation (`CreateBucket` does that; the
//! router only checks that a name has the shape of one), whether an
//! operation is implemented (a handler answers `501 NotImplemented` for a
//! variant it does not support), and every parameter that tunes *how* an
//! operation runs (`prefix`, `max-keys`, `response-*`, ...), which handlers
//! read with [`query_pairs`].
//!
//! # How an operation is chosen
//!
//! As AWS does ([REST API], [virtual hosting]), in four steps:
//!
//! 1. **Bucket.** A `Host` of `<bucket>.<domain>[:port]`, for one of
//!    [`RouterConfig::domains`], is virtual-hosted style: the bucket comes
//!    from the host and the whole path is the key. Any other host (an IP
//!    address, an unknown name, a configured domain itself, no `Host` at
//!    all) is path style: `/<bucket>/<key>`. The longest matching domain
//!    wins, so `b.s3.localhost` with domains `localhost` and `s3.localhost`
//!    is bucket `b`, not `b.s3`. Hosts are case-insensitive (a bucket taken
//!    from one is lowercased, as DNS names carry no case), a port is
//!    ignored.
//! 2. **Target.** No bucket is the service (`GET /` is `ListBuckets`). A
//!    bucket with an empty key (`/bucket` and `/bucket/` alike) is the
//!    bucket. Anything else is an object.
//! 3. **Sub-resource.** At most one query parameter from the AWS
//!    sub-resource list (`?uploads`, `?tagging`, `?versions`, `?delete`,
//!    ...). A sub-resource is valueless: `?uploads`, `?uploads=` and even
//!    `?uploads=x` all mean the same. Two different ones in one request are
//!    rejected rather than one being picked silently.
//! 4. **Method, then selecting parameters and headers.** A table-like
//!    `match` over `(method, target, sub-resource)`, refined by `uploadId`,
//!    `partNumber`, `list-type`, `id`, `annotationName` and the
//!    `x-amz-copy-source` header (which turns `PutObject` into `CopyObject`
//!    and `UploadPart` into `UploadPartCopy`). No row means
//!    `405 MethodNotAllowed`, as S3 answers for `PATCH`, `DELETE /` or
//!    `POST /bucket?acl`. `OPTIONS` on a bucket or object is the CORS
//!    preflight whatever its query, since the query is the one of the
//!    request it asks about.
//!
//! # What a variant carries
//!
//! One rule, applied to every variant: a variant carries the query
//! parameters that say *which thing* it acts on, parsed and validated here
//! so every handler gets them the same way: `upload_id`, `part_number`,
//! `version_id`, the configuration `id` of the analytics, inventory,
//! metrics and intelligent-tiering families, and `annotation_name`. A
//! variant carries nothing else; the key and bucket are in [`Route`].
//!
//! The router reads those parameters (plus `list-type` and `select-type`)
//! and nothing else. Each one must be used by the chosen operation: a
//! leftover one (`DELETE /bucket?versionId=x`, `PUT /key?partNumber=1`
//! without `uploadId`, `GET /key?tagging&uploadId=x`) is
//! `400 InvalidArgument`, never silently ignored, because ignoring it
//! would run a different operation than the client asked for (a
//! `DeleteBucket` instead of deleting a version, a `PutObject` that
//! overwrites the object with one part's bytes). The same holds for a
//! parameter given twice. Unknown parameters (`x-id=GetObject`, which the
//! AWS SDKs add, or the presigned `X-Amz-*` ones) are ignored, as S3 does.
//!
//! # Decoding
//!
//! - **Path**: decoded exactly once, UTF-8 required. A `+` in the path is
//!   a plus: the SDKs send a space as `%20` and a plus as `%2B`, and `SigV4`
//!   signs the path as sent. `//`, `.`, `..`, trailing slashes, `%0A` are
//!   all kept as they are: they are part of the key.
//! - **Query**: `application/x-www-form-urlencoded`, so a `+` is a space
//!   and a plus must be sent as `%2B`. This is what S3 does: it accepts
//!   presigned URLs whose values carry `+` for a space (browsers'
//!   `URLSearchParams` produce them) and checks the signature against the
//!   `%20` canonical form, and it is what `MinIO` and Garage do too. The
//!   `SigV4` spec asks clients to send `%20`, and the SDKs do, so the two
//!   readings only differ for hand-made URLs. Authentication decodes the
//!   query the same way (`auth::sigv4::decode_query_component`), so a
//!   signature binds what the handlers read: turning a signed `%2B` into
//!   `+` breaks the signature instead of changing the parameter (a test
//!   below checks the two decodings agree).
//! - A `%` not followed by two hex digits, or a decoded path or query that
//!   is not UTF-8, is `400 InvalidURI`.
//!
//! [REST API]: https://docs.aws.amazon.com/AmazonS3/latest/API/RESTAPI.html
//! [virtual hosting]: https://docs.aws.amazon.com/AmazonS3/latest/userguide/VirtualHosting.html

use std::borrow::Cow;
use std::fmt;

use http::{HeaderMap, Method, StatusCode};
use percent_encoding::percent_decode_str;

use crate::limits::{BUCKET_NAME_BYTES_MAX, KEY_BYTES_MAX};

/// Highest part number, exactly as AWS S3 (parts are numbered 1 to 10,000).
/// `partNumber` outside `1..=PART_NUMBER_MAX` is `InvalidArgument` with
/// AWS's message.
const PART_NUMBER_MAX: u32 = crate::limits::PART_COUNT_MAX;

/// The header that turns `PutObject` into `CopyObject` and `UploadPart`
/// into `UploadPartCopy`.
const COPY_SOURCE_HEADER: &str = "x-amz-copy-source";

/// What the router needs from the configuration.
#[derive(Debug, Clone, Default)]
pub struct RouterConfig {
    /// Base domains for virtual-hosted style, e.g. `s3.localhost`,
    /// `localhost`. Compared case-insensitively; a leading or trailing `.`
    /// is ignored.
    pub domains: Vec<String>,
}

/// The result of routing one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub endpoint: Endpoint,
    /// Percent-decoded bucket name; `None` only for service-level requests
    /// (`ListBuckets`). Its shape is checked (see [`RouteError::InvalidBucketName`]),
    /// not its full AWS validity.
    pub bucket: Option<String>,
    /// Percent-decoded key, at most [`KEY_BYTES_MAX`] bytes of UTF-8;
    /// `None` for bucket-level and service-level requests (never
    /// `Some("")`).
    pub key: Option<String>,
}

/// The kind of resource a request targets; AWS names it in the
/// `<ResourceType>` element of a `MethodNotAllowed` error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResourceType {
    Service,
    Bucket,
    Object,
}

impl ResourceType {
    /// The value AWS puts in `<ResourceType>`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Service => "SERVICE",
            Self::Bucket => "BUCKET",
            Self::Object => "OBJECT",
        }
    }
}

/// The permission an operation needs, for whoever checks a key's rights on
/// a bucket. Modelled on Garage's `Authorization`; this router only states
/// the class, it does not enforce it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permission {
    /// No credentials at all: the CORS preflight, which browsers send
    /// without them; the bucket's CORS rules decide.
    Anonymous,
    /// Any valid key, no bucket permission: `ListBuckets` (lists what the
    /// key may see) and `CreateBucket` (the bucket does not exist yet).
    Authenticated,
    /// Reads objects or listings: the rights a read-only backup restore
    /// needs, plus `GetBucketLocation` and `GetBucketVersioning`, which
    /// clients probe before reading.
    Read,
    /// Creates, changes or deletes objects, their tags, retention and
    /// uploads. `CopyObject` and `UploadPartCopy` also need `Read` on the
    /// source bucket; their handlers check that.
    Write,
    /// Reads or changes the bucket itself or its configuration, or deletes
    /// the bucket.
    Owner,
}

/// Defines [`Endpoint`] and its name table from one list, so the enum and
/// [`Endpoint::name`] cannot drift apart.
macro_rules! endpoints {
    ($(
        $(#[$attr:meta])*
        $variant:ident $({ $($field:ident : $ty:ty),* $(,)? })?
    ),* $(,)?) => {
        /// One S3 operation, named exactly as in the
        /// [AWS API reference](https://docs.aws.amazon.com/AmazonS3/latest/API/API_Operations_Amazon_Simple_Storage_Service.html).
        ///
        /// Each variant's doc is its request form (`{Key}` is the object
        /// key). What a variant carries is explained in the module doc:
        /// the parameters naming the thing it acts on, nothing else.
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub enum Endpoint {
            $(
                $(#[$attr])*
                $variant $({ $($field: $ty),* })?,
            )*
        }

        impl Endpoint {
            /// The AWS operation name, for metrics and logs.
            #[must_use]
            pub fn name(&self) -> &'static str {
                match self {
                    $( Self::$variant { .. } => stringify!($variant), )*
                }
            }
        }

        /// Every variant's name, so tests can check that the routing
        /// table reaches each one.
        #[cfg(test)]
        const ENDPOINT_NAMES: &[&str] = &[$(stringify!($variant)),*];
    };
}

endpoints! {
    /// `DELETE /{Key}?uploadId=`
    AbortMultipartUpload { upload_id: String },
    /// `POST /{Key}?uploadId=`
    CompleteMultipartUpload { upload_id: String },
    /// `PUT /{Key}` with `x-amz-copy-source` (see [`parse_copy_source`]).
    CopyObject,
    /// `PUT /{Bucket}`
    CreateBucket,
    /// `POST /{Bucket}?metadataConfiguration`
    CreateBucketMetadataConfiguration,
    /// `POST /{Bucket}?metadataTable`
    CreateBucketMetadataTableConfiguration,
    /// `POST /{Key}?uploads`
    CreateMultipartUpload,
    /// `GET /{Bucket}?session` (directory buckets).
    CreateSession,
    /// `DELETE /{Bucket}`
    DeleteBucket,
    /// `DELETE /{Bucket}?analytics&id=`
    DeleteBucketAnalyticsConfiguration { id: String },
    /// `DELETE /{Bucket}?cors`
    DeleteBucketCors,
    /// `DELETE /{Bucket}?encryption`
    DeleteBucketEncryption,
    /// `DELETE /{Bucket}?intelligent-tiering&id=`
    DeleteBucketIntelligentTieringConfiguration { id: String },
    /// `DELETE /{Bucket}?inventory&id=`
    DeleteBucketInventoryConfiguration { id: String },
    /// `DELETE /{Bucket}?lifecycle`
    DeleteBucketLifecycle,
    /// `DELETE /{Bucket}?metadataConfiguration`
    DeleteBucketMetadataConfiguration,
    /// `DELETE /{Bucket}?metadataTable`
    DeleteBucketMetadataTableConfiguration,
    /// `DELETE /{Bucket}?metrics&id=`
    DeleteBucketMetricsConfiguration { id: String },
    /// `DELETE /{Bucket}?ownershipControls`
    DeleteBucketOwnershipControls,
    /// `DELETE /{Bucket}?policy`
    DeleteBucketPolicy,
    /// `DELETE /{Bucket}?replication`
    DeleteBucketReplication,
    /// `DELETE /{Bucket}?tagging`
    DeleteBucketTagging,
    /// `DELETE /{Bucket}?website`
    DeleteBucketWebsite,
    /// `DELETE /{Key}[?versionId=]`
    DeleteObject { version_id: Option<String> },
    /// `DELETE /{Key}?annotation&annotationName=[&versionId=]`
    DeleteObjectAnnotation { annotation_name: String, version_id: Option<String> },
    /// `POST /{Bucket}?delete`
    DeleteObjects,
    /// `DELETE /{Key}?tagging[&versionId=]`
    DeleteObjectTagging { version_id: Option<String> },
    /// `DELETE /{Bucket}?publicAccessBlock`
    DeletePublicAccessBlock,
    /// `GET /{Bucket}?abac`
    GetBucketAbac,
    /// `GET /{Bucket}?accelerate`
    GetBucketAccelerateConfiguration,
    /// `GET /{Bucket}?acl`
    GetBucketAcl,
    /// `GET /{Bucket}?analytics&id=`
    GetBucketAnalyticsConfiguration { id: String },
    /// `GET /{Bucket}?cors`
    GetBucketCors,
    /// `GET /{Bucket}?encryption`
    GetBucketEncryption,
    /// `GET /{Bucket}?intelligent-tiering&id=`
    GetBucketIntelligentTieringConfiguration { id: String },
    /// `GET /{Bucket}?inventory&id=`
    GetBucketInventoryConfiguration { id: String },
    /// `GET /{Bucket}?lifecycle` (also what the deprecated
    /// `GetBucketLifecycle` sends).
    GetBucketLifecycleConfiguration,
    /// `GET /{Bucket}?location`
    GetBucketLocation,
    /// `GET /{Bucket}?logging`
    GetBucketLogging,
    /// `GET /{Bucket}?metadataConfiguration`
    GetBucketMetadataConfiguration,
    /// `GET /{Bucket}?metadataTable`
    GetBucketMetadataTableConfiguration,
    /// `GET /{Bucket}?metrics&id=`
    GetBucketMetricsConfiguration { id: String },
    /// `GET /{Bucket}?notification` (also what the deprecated
    /// `GetBucketNotification` sends).
    GetBucketNotificationConfiguration,
    /// `GET /{Bucket}?ownershipControls`
    GetBucketOwnershipControls,
    /// `GET /{Bucket}?policy`
    GetBucketPolicy,
    /// `GET /{Bucket}?policyStatus`
    GetBucketPolicyStatus,
    /// `GET /{Bucket}?replication`
    GetBucketReplication,
    /// `GET /{Bucket}?requestPayment`
    GetBucketRequestPayment,
    /// `GET /{Bucket}?tagging`
    GetBucketTagging,
    /// `GET /{Bucket}?versioning`
    GetBucketVersioning,
    /// `GET /{Bucket}?website`
    GetBucketWebsite,
    /// `GET /{Key}[?partNumber=][&versionId=]`; the `response-*`
    /// overrides are read by the handler.
    GetObject { part_number: Option<u32>, version_id: Option<String> },
    /// `GET /{Key}?acl[&versionId=]`
    GetObjectAcl { version_id: Option<String> },
    /// `GET /{Key}?annotation&annotationName=[&versionId=]`
    GetObjectAnnotation { annotation_name: String, version_id: Option<String> },
    /// `GET /{Key}?attributes[&versionId=]`
    GetObjectAttributes { version_id: Option<String> },
    /// `GET /{Key}?legal-hold[&versionId=]`
    GetObjectLegalHold { version_id: Option<String> },
    /// `GET /{Bucket}?object-lock`
    GetObjectLockConfiguration,
    /// `GET /{Key}?retention[&versionId=]`
    GetObjectRetention { version_id: Option<String> },
    /// `GET /{Key}?tagging[&versionId=]`
    GetObjectTagging { version_id: Option<String> },
    /// `GET /{Key}?torrent`
    GetObjectTorrent,
    /// `GET /{Bucket}?publicAccessBlock`
    GetPublicAccessBlock,
    /// `HEAD /{Bucket}`
    HeadBucket,
    /// `HEAD /{Key}[?partNumber=][&versionId=]`
    HeadObject { part_number: Option<u32>, version_id: Option<String> },
    /// `GET /{Bucket}?analytics` (no `id`)
    ListBucketAnalyticsConfigurations,
    /// `GET /{Bucket}?intelligent-tiering` (no `id`)
    ListBucketIntelligentTieringConfigurations,
    /// `GET /{Bucket}?inventory` (no `id`)
    ListBucketInventoryConfigurations,
    /// `GET /{Bucket}?metrics` (no `id`)
    ListBucketMetricsConfigurations,
    /// `GET /`
    ListBuckets,
    /// `GET /{Bucket}?uploads`
    ListMultipartUploads,
    /// `GET /{Key}?annotation[&versionId=]` (no `annotationName`)
    ListObjectAnnotations { version_id: Option<String> },
    /// `GET /{Bucket}` (no `list-type`)
    ListObjects,
    /// `GET /{Bucket}?list-type=2`
    ListObjectsV2,
    /// `GET /{Bucket}?versions`
    ListObjectVersions,
    /// `GET /{Key}?uploadId=`
    ListParts { upload_id: String },
    /// `OPTIONS /{Bucket}` or `OPTIONS /{Key}`, with any query: the CORS
    /// preflight, documented by AWS as "OPTIONS object" rather than in the
    /// action list.
    OptionsObject,
    /// `POST /{Bucket}` without `?delete`: a browser form upload.
    PostObject,
    /// `PUT /{Bucket}?abac`
    PutBucketAbac,
    /// `PUT /{Bucket}?accelerate`
    PutBucketAccelerateConfiguration,
    /// `PUT /{Bucket}?acl`
    PutBucketAcl,
    /// `PUT /{Bucket}?analytics&id=`
    PutBucketAnalyticsConfiguration { id: String },
    /// `PUT /{Bucket}?cors`
    PutBucketCors,
    /// `PUT /{Bucket}?encryption`
    PutBucketEncryption,
    /// `PUT /{Bucket}?intelligent-tiering&id=`
    PutBucketIntelligentTieringConfiguration { id: String },
    /// `PUT /{Bucket}?inventory&id=`
    PutBucketInventoryConfiguration { id: String },
    /// `PUT /{Bucket}?lifecycle` (also what the deprecated
    /// `PutBucketLifecycle` sends).
    PutBucketLifecycleConfiguration,
    /// `PUT /{Bucket}?logging`
    PutBucketLogging,
    /// `PUT /{Bucket}?metrics&id=`
    PutBucketMetricsConfiguration { id: String },
    /// `PUT /{Bucket}?notification` (also what the deprecated
    /// `PutBucketNotification` sends).
    PutBucketNotificationConfiguration,
    /// `PUT /{Bucket}?ownershipControls`
    PutBucketOwnershipControls,
    /// `PUT /{Bucket}?policy`
    PutBucketPolicy,
    /// `PUT /{Bucket}?replication`
    PutBucketReplication,
    /// `PUT /{Bucket}?requestPayment`
    PutBucketRequestPayment,
    /// `PUT /{Bucket}?tagging`
    PutBucketTagging,
    /// `PUT /{Bucket}?versioning`
    PutBucketVersioning,
    /// `PUT /{Bucket}?website`
    PutBucketWebsite,
    /// `PUT /{Key}`
    PutObject,
    /// `PUT /{Key}?acl[&versionId=]`
    PutObjectAcl { version_id: Option<String> },
    /// `PUT /{Key}?annotation&annotationName=[&versionId=]`
    PutObjectAnnotation { annotation_name: String, version_id: Option<String> },
    /// `PUT /{Key}?legal-hold[&versionId=]`
    PutObjectLegalHold { version_id: Option<String> },
    /// `PUT /{Bucket}?object-lock`
    PutObjectLockConfiguration,
    /// `PUT /{Key}?retention[&versionId=]`
    PutObjectRetention { version_id: Option<String> },
    /// `PUT /{Key}?tagging[&versionId=]`
    PutObjectTagging { version_id: Option<String> },
    /// `PUT /{Bucket}?publicAccessBlock`
    PutPublicAccessBlock,
    /// `PUT /{Key}?renameObject` (directory buckets).
    RenameObject,
    /// `POST /{Key}?restore[&versionId=]`
    RestoreObject { version_id: Option<String> },
    /// `POST /{Key}?select&select-type=2`
    SelectObjectContent,
    /// `PUT /{Bucket}?metadataAnnotationTable`
    UpdateBucketMetadataAnnotationTableConfiguration,
    /// `PUT /{Bucket}?metadataInventoryTable`
    UpdateBucketMetadataInventoryTableConfiguration,
    /// `PUT /{Bucket}?metadataJournalTable`
    UpdateBucketMetadataJournalTableConfiguration,
    /// `PUT /{Key}?encryption[&versionId=]`
    UpdateObjectEncryption { version_id: Option<String> },
    /// `PUT /{Key}?partNumber=&uploadId=`
    UploadPart { part_number: u32, upload_id: String },
    /// `PUT /{Key}?partNumber=&uploadId=` with `x-amz-copy-source`.
    UploadPartCopy { part_number: u32, upload_id: String },
}

impl Endpoint {
    /// The permission class this operation needs (see [`Permission`]).
    #[must_use]
    pub fn permission(&self) -> Permission {
        match self {
            Self::OptionsObject => Permission::Anonymous,
            Self::ListBuckets | Self::CreateBucket => Permission::Authenticated,
            Self::GetObject { .. }
            | Self::HeadObject { .. }
            | Self::HeadBucket
            | Self::ListObjects
            | Self::ListObjectsV2
            | Self::ListObjectVersions
            | Self::ListMultipartUploads
            | Self::ListParts { .. }
            | Self::GetObjectAttributes { .. }
            | Self::GetObjectAcl { .. }
            | Self::GetObjectTagging { .. }
            | Self::GetObjectRetention { .. }
            | Self::GetObjectLegalHold { .. }
            | Self::GetObjectTorrent
            | Self::GetObjectAnnotation { .. }
            | Self::ListObjectAnnotations { .. }
            | Self::SelectObjectContent
            | Self::GetBucketLocation
            | Self::GetBucketVersioning => Permission::Read,
            Self::PutObject
            | Self::CopyObject
            | Self::PostObject
            | Self::DeleteObject { .. }
            | Self::DeleteObjects
            | Self::CreateMultipartUpload
            | Self::UploadPart { .. }
            | Self::UploadPartCopy { .. }
            | Self::CompleteMultipartUpload { .. }
            | Self::AbortMultipartUpload { .. }
            | Self::PutObjectAcl { .. }
            | Self::PutObjectTagging { .. }
            | Self::DeleteObjectTagging { .. }
            | Self::PutObjectRetention { .. }
            | Self::PutObjectLegalHold { .. }
            | Self::PutObjectAnnotation { .. }
            | Self::DeleteObjectAnnotation { .. }
            | Self::RestoreObject { .. }
            | Self::RenameObject
            | Self::UpdateObjectEncryption { .. }
            | Self::CreateSession => Permission::Write,
            _ => Permission::Owner,
        }
    }
}

/// Why a request could not be routed. Each variant is named after the S3
/// error code it becomes (hence `InvalidURI`, not `InvalidUri`), so the
/// conversion into the client-facing S3 error is [`RouteError::code`],
/// [`RouteError::status`] and [`RouteError::message`].
///
/// | variant             | S3 code             | status |
/// |---------------------|---------------------|--------|
/// | `InvalidURI`        | `InvalidURI`        | 400    |
/// | `InvalidBucketName` | `InvalidBucketName` | 400    |
/// | `KeyTooLongError`   | `KeyTooLongError`   | 400    |
/// | `InvalidArgument`   | `InvalidArgument`   | 400    |
/// | `MethodNotAllowed`  | `MethodNotAllowed`  | 405    |
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteError {
    /// A `%` not followed by two hex digits, a decoded path or query that
    /// is not UTF-8, or a path that does not start with `/`.
    InvalidURI,
    /// The bucket cannot be a bucket name of any kind: empty, longer than
    /// [`BUCKET_NAME_BYTES_MAX`], or with a byte outside `[A-Za-z0-9._-]`.
    /// Upper case and `_` pass on purpose: such a name is answered
    /// `NoSuchBucket` by lookups, as on AWS, and `InvalidBucketName` by
    /// `CreateBucket`, which validates names fully.
    InvalidBucketName { bucket: String },
    /// The decoded key is longer than [`KEY_BYTES_MAX`] bytes.
    KeyTooLongError { key_len: usize },
    /// A parameter the router reads is malformed, repeated, missing, or
    /// not used by the chosen operation. `name` and `value` become AWS's
    /// `<ArgumentName>` and `<ArgumentValue>`.
    InvalidArgument {
        name: &'static str,
        value: String,
        message: String,
    },
    /// No operation for this method on this resource (`PATCH`, `DELETE /`,
    /// `POST /bucket?acl`, ...). `method` and `resource_type` become AWS's
    /// `<Method>` and `<ResourceType>`.
    MethodNotAllowed {
        method: Method,
        resource_type: ResourceType,
    },
}

impl From<RouteError> for crate::error::S3Error {
    fn from(error: RouteError) -> Self {
        crate::error::S3Error::named(error.code(), error.message())
    }
}

impl RouteError {
    /// The S3 error `<Code>`.
    #[must_use]
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidURI => "InvalidURI",
            Self::InvalidBucketName { .. } => "InvalidBucketName",
            Self::KeyTooLongError { .. } => "KeyTooLongError",
            Self::InvalidArgument { .. } => "InvalidArgument",
            Self::MethodNotAllowed { .. } => "MethodNotAllowed",
        }
    }

    /// The HTTP status AWS answers with.
    #[must_use]
    pub fn status(&self) -> StatusCode {
        match self {
            Self::InvalidURI
            | Self::InvalidBucketName { .. }
            | Self::KeyTooLongError { .. }
            | Self::InvalidArgument { .. } => StatusCode::BAD_REQUEST,
            Self::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
        }
    }

    /// The S3 error `<Message>`, AWS's wording where AWS has one.
    #[must_use]
    pub fn message(&self) -> &str {
        match self {
            Self::InvalidURI => "Couldn't parse the specified URI.",
            Self::InvalidBucketName { .. } => "The specified bucket is not valid.",
            Self::KeyTooLongError { .. } => "Your key is too long",
            Self::InvalidArgument { message, .. } => message,
            Self::MethodNotAllowed { .. } => {
                "The specified method is not allowed against this resource."
            }
        }
    }

    fn invalid_argument(name: &'static str, value: &str, message: impl Into<String>) -> Self {
        Self::InvalidArgument {
            name,
            value: value.to_owned(),
            message: message.into(),
        }
    }
}

impl fmt::Display for RouteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code(), self.message())
    }
}

impl std::error::Error for RouteError {}

/// Routes one request. `path` and `query` are exactly as they appear in
/// the request target (still percent-encoded; `query` without the `?`),
/// `host` is the `Host` header value.
///
/// # Errors
///
/// A [`RouteError`] whose [`code`](RouteError::code) and
/// [`status`](RouteError::status) are the S3 error to answer.
pub fn route(
    cfg: &RouterConfig,
    method: &Method,
    host: Option<&str>,
    path: &str,
    query: Option<&str>,
    headers: &HeaderMap,
) -> Result<Route, RouteError> {
    let Some(path) = path.strip_prefix('/') else {
        return Err(RouteError::InvalidURI);
    };
    let (bucket, raw_key) = match host.and_then(|host| virtual_host_bucket(cfg, host)) {
        Some(bucket) => (Some(bucket), path),
        None if path.is_empty() => (None, ""),
        None => {
            let (raw_bucket, raw_key) = path.split_once('/').unwrap_or((path, ""));
            (Some(decode_path(raw_bucket)?.into_owned()), raw_key)
        }
    };
    if let Some(bucket) = &bucket {
        check_bucket_shape(bucket)?;
    }
    let key = decode_key(raw_key)?;
    let query = query.unwrap_or("");

    let resource_type = match (&bucket, &key) {
        (None, _) => ResourceType::Service,
        (Some(_), None) => ResourceType::Bucket,
        (Some(_), Some(_)) => ResourceType::Object,
    };
    // A preflight asks about the request that will follow, query included,
    // so only the query's encoding is this request's to check.
    if method == Method::OPTIONS && resource_type != ResourceType::Service {
        for (name, value) in raw_pairs(query) {
            decode_query(name)?;
            decode_query(value)?;
        }
        return Ok(Route {
            endpoint: Endpoint::OptionsObject,
            bucket,
            key,
        });
    }
    let mut params = Params::parse(query)?;
    let copy_source = headers.contains_key(COPY_SOURCE_HEADER);
    let endpoint = select(method, resource_type, &mut params, copy_source)?;
    params.check_all_used(&endpoint)?;
    Ok(Route {
        endpoint,
        bucket,
        key,
    })
}

/// Parses an `x-amz-copy-source` value: `bucket/key` or `/bucket/key`,
/// percent-encoded, optionally followed by `?versionId=...`. Returns the
/// decoded bucket, key and version id.
///
/// The value is path-like, so a `+` is a plus, as in a request path, and
/// that holds after the `?` too: botocore appends the version id without
/// encoding it, and AWS version ids contain `+` and `/`. The first
/// unencoded `?` starts the query, as on AWS: a key containing `?` must be
/// sent as `%3F`, which every SDK does.
///
/// # Errors
///
/// `InvalidArgument` (argument `x-amz-copy-source`) when the bucket or key
/// is missing or malformed, when the query holds anything but one
/// non-empty `versionId`, or when the percent-encoding is malformed;
/// `KeyTooLongError` for a key longer than [`KEY_BYTES_MAX`].
pub fn parse_copy_source(value: &str) -> Result<(String, String, Option<String>), RouteError> {
    let invalid = |message: &str| RouteError::invalid_argument(COPY_SOURCE_HEADER, value, message);
    let (source, query) = match value.split_once('?') {
        Some((source, query)) => (source, Some(query)),
        None => (value, None),
    };
    let source = source.strip_prefix('/').unwrap_or(source);
    let Some((raw_bucket, raw_key)) = source.split_once('/') else {
        return Err(invalid(
            "Copy Source must mention the source bucket and key: sourcebucket/sourcekey",
        ));
    };
    let bucket = decode_path(raw_bucket).map_err(|_| invalid("Invalid copy source encoding"))?;
    if check_bucket_shape(&bucket).is_err() {
        return Err(invalid("Invalid copy source bucket name"));
    }
    let key = match decode_key(raw_key) {
        Ok(Some(key)) => key,
        Ok(None) => return Err(invalid("Invalid copy source object key")),
        Err(RouteError::InvalidURI) => return Err(invalid("Invalid copy source encoding")),
        Err(error) => return Err(error),
    };
    let mut version_id = None;
    for (raw_name, raw_value) in raw_pairs(query.unwrap_or("")) {
        let name = decode_path(raw_name).map_err(|_| invalid("Invalid copy source encoding"))?;
        let version =
            decode_path(raw_value).map_err(|_| invalid("Invalid copy source encoding"))?;
        if name != "versionId" {
            return Err(invalid("Copy Source accepts only the versionId parameter"));
        }
        if version.is_empty() {
            return Err(invalid("Version id cannot be the empty string"));
        }
        if version_id.replace(version.into_owned()).is_some() {
            return Err(invalid("Copy Source has versionId more than once"));
        }
    }
    Ok((bucket.into_owned(), key, version_id))
}

/// The query's parameters, percent-decoded, in order, as
/// `application/x-www-form-urlencoded`: a `+` is a space (see the module
/// doc for why). A parameter without `=` has an empty value; empty
/// segments (`&&`) are skipped.
///
/// Call it on a query that [`route`] accepted: that guarantees every
/// escape is well-formed and every name and value is UTF-8, so nothing is
/// lost. On other input a malformed `%` is kept as it is and invalid UTF-8
/// becomes U+FFFD.
pub fn query_pairs(query: &str) -> impl Iterator<Item = (Cow<'_, str>, Cow<'_, str>)> {
    raw_pairs(query).map(|(name, value)| (decode_query_lossy(name), decode_query_lossy(value)))
}

/// The raw `name=value` pairs of a query, split at the first `=`; a
/// parameter without `=` has an empty value and empty segments are skipped.
fn raw_pairs(query: &str) -> impl Iterator<Item = (&str, &str)> {
    query
        .split('&')
        .filter(|segment| !segment.is_empty())
        .map(|segment| segment.split_once('=').unwrap_or((segment, "")))
}

/// The bucket named by a virtual-hosted `Host`, or `None` for path style.
/// [`route`] takes its bucket from here; the connection also hands it to
/// authentication, because `SigV2` signs it.
#[must_use]
pub fn virtual_host_bucket(cfg: &RouterConfig, host: &str) -> Option<String> {
    // An IPv6 literal is never virtual-hosted; it has colons of its own.
    if host.starts_with('[') {
        return None;
    }
    let host = host.rsplit_once(':').map_or(host, |(name, _port)| name);
    let host = host.strip_suffix('.').unwrap_or(host);
    let domains = || {
        cfg.domains
            .iter()
            .map(|domain| domain.trim_matches('.'))
            .filter(|domain| !domain.is_empty())
    };
    // A configured domain itself is path style, even when it also reads as
    // `<bucket>.<shorter domain>` (`s3.localhost` with `localhost` also
    // configured).
    if domains().any(|domain| host.eq_ignore_ascii_case(domain)) {
        return None;
    }
    domains()
        .filter_map(|domain| {
            let split = host.len().checked_sub(domain.len() + 1)?;
            let (bucket, suffix) = host.split_at_checked(split)?;
            let suffix_domain = suffix.strip_prefix('.')?;
            let matches = suffix_domain.eq_ignore_ascii_case(domain) && !bucket.is_empty();
            matches.then_some((domain.len(), bucket))
        })
        .max_by_key(|(domain_len, _)| *domain_len)
        .map(|(_, bucket)| bucket.to_ascii_lowercase())
}

fn check_bucket_shape(bucket: &str) -> Result<(), RouteError> {
    let shaped = !bucket.is_empty()
        && bucket.len() <= BUCKET_NAME_BYTES_MAX
        && bucket
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'.' | b'-' | b'_'));
    if shaped {
        Ok(())
    } else {
        Err(RouteError::InvalidBucketName {
            bucket: bucket.to_owned(),
        })
    }
}

/// Decodes a raw key; `None` for an empty one (the bucket itself).
fn decode_key(raw_key: &str) -> Result<Option<String>, RouteError> {
    if raw_key.is_empty() {
        return Ok(None);
    }
    let key = decode_path(raw_key)?;
    if key.len() > KEY_BYTES_MAX {
        return Err(RouteError::KeyTooLongError { key_len: key.len() });
    }
    Ok(Some(key.into_owned()))
}

/// Percent-decodes a path component once; `+` stays a plus.
fn decode_path(raw: &str) -> Result<Cow<'_, str>, RouteError> {
    check_escapes(raw)?;
    percent_decode_str(raw)
        .decode_utf8()
        .map_err(|_| RouteError::InvalidURI)
}

/// Percent-decodes a query name or value once; `+` is a space.
fn decode_query(raw: &str) -> Result<Cow<'_, str>, RouteError> {
    check_escapes(raw)?;
    if raw.contains('+') {
        let spaced = raw.replace('+', " ");
        let decoded = percent_decode_str(&spaced)
            .decode_utf8()
            .map_err(|_| RouteError::InvalidURI)?;
        Ok(Cow::Owned(decoded.into_owned()))
    } else {
        percent_decode_str(raw)
            .decode_utf8()
            .map_err(|_| RouteError::InvalidURI)
    }
}

fn decode_query_lossy(raw: &str) -> Cow<'_, str> {
    if raw.contains('+') {
        let spaced = raw.replace('+', " ");
        Cow::Owned(percent_decode_str(&spaced).decode_utf8_lossy().into_owned())
    } else {
        percent_decode_str(raw).decode_utf8_lossy()
    }
}

/// Every `%` must start an escape of two hex digits: `percent_decode`
/// alone would pass a stray `%` through, and a key would then mean
/// something other than what the client signed.
fn check_escapes(raw: &str) -> Result<(), RouteError> {
    let bytes = raw.as_bytes();
    let mut index = 0;
    while let Some(offset) = bytes[index..].iter().position(|&byte| byte == b'%') {
        let escape = index + offset;
        let well_formed = bytes.get(escape + 1).is_some_and(u8::is_ascii_hexdigit)
            && bytes.get(escape + 2).is_some_and(u8::is_ascii_hexdigit);
        if !well_formed {
            return Err(RouteError::InvalidURI);
        }
        index = escape + 3;
    }
    Ok(())
}

/// An AWS sub-resource: a valueless query parameter that selects an
/// operation. The list is the SDK's: every one any S3 operation sends, so
/// none can fall through to a plain object or bucket operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SubResource {
    Abac,
    Accelerate,
    Acl,
    Analytics,
    Annotation,
    Attributes,
    Cors,
    Delete,
    Encryption,
    IntelligentTiering,
    Inventory,
    LegalHold,
    Lifecycle,
    Location,
    Logging,
    MetadataAnnotationTable,
    MetadataConfiguration,
    MetadataInventoryTable,
    MetadataJournalTable,
    MetadataTable,
    Metrics,
    Notification,
    ObjectLock,
    OwnershipControls,
    Policy,
    PolicyStatus,
    PublicAccessBlock,
    RenameObject,
    Replication,
    RequestPayment,
    Restore,
    Retention,
    Select,
    Session,
    Tagging,
    Torrent,
    Uploads,
    Versioning,
    Versions,
    Website,
}

/// Query parameter name of each sub-resource, exactly as S3 spells it.
const SUB_RESOURCES: &[(&str, SubResource)] = &[
    ("abac", SubResource::Abac),
    ("accelerate", SubResource::Accelerate),
    ("acl", SubResource::Acl),
    ("analytics", SubResource::Analytics),
    ("annotation", SubResource::Annotation),
    ("attributes", SubResource::Attributes),
    ("cors", SubResource::Cors),
    ("delete", SubResource::Delete),
    ("encryption", SubResource::Encryption),
    ("intelligent-tiering", SubResource::IntelligentTiering),
    ("inventory", SubResource::Inventory),
    ("legal-hold", SubResource::LegalHold),
    ("lifecycle", SubResource::Lifecycle),
    ("location", SubResource::Location),
    ("logging", SubResource::Logging),
    (
        "metadataAnnotationTable",
        SubResource::MetadataAnnotationTable,
    ),
    ("metadataConfiguration", SubResource::MetadataConfiguration),
    (
        "metadataInventoryTable",
        SubResource::MetadataInventoryTable,
    ),
    ("metadataJournalTable", SubResource::MetadataJournalTable),
    ("metadataTable", SubResource::MetadataTable),
    ("metrics", SubResource::Metrics),
    ("notification", SubResource::Notification),
    ("object-lock", SubResource::ObjectLock),
    ("ownershipControls", SubResource::OwnershipControls),
    ("policy", SubResource::Policy),
    ("policyStatus", SubResource::PolicyStatus),
    ("publicAccessBlock", SubResource::PublicAccessBlock),
    ("renameObject", SubResource::RenameObject),
    ("replication", SubResource::Replication),
    ("requestPayment", SubResource::RequestPayment),
    ("restore", SubResource::Restore),
    ("retention", SubResource::Retention),
    ("select", SubResource::Select),
    ("session", SubResource::Session),
    ("tagging", SubResource::Tagging),
    ("torrent", SubResource::Torrent),
    ("uploads", SubResource::Uploads),
    ("versioning", SubResource::Versioning),
    ("versions", SubResource::Versions),
    ("website", SubResource::Website),
];

impl SubResource {
    fn from_name(name: &str) -> Option<Self> {
        SUB_RESOURCES
            .iter()
            .find(|(spelling, _)| *spelling == name)
            .map(|&(_, sub_resource)| sub_resource)
    }

    fn name(self) -> &'static str {
        SUB_RESOURCES
            .iter()
            .find(|&&(_, sub_resource)| sub_resource == self)
            .map(|&(spelling, _)| spelling)
            .expect("every sub-resource has a spelling")
    }
}

/// The query parameters the router reads. Each is taken (set to `None`)
/// by the operation that uses it; whatever is left afterwards was not
/// used, and is an error (see the module doc).
#[derive(Debug, Default)]
struct Params {
    sub_resource: Option<SubResource>,
    upload_id: Option<String>,
    part_number: Option<String>,
    version_id: Option<String>,
    id: Option<String>,
    annotation_name: Option<String>,
    list_type: Option<String>,
    select_type: Option<String>,
}

impl Params {
    fn parse(query: &str) -> Result<Self, RouteError> {
        let mut params = Self::default();
        for (raw_name, raw_value) in raw_pairs(query) {
            let name = decode_query(raw_name)?;
            // Decoded even when unused, so that `query_pairs` is lossless
            // on every query `route` accepts.
            let value = decode_query(raw_value)?;
            if let Some(sub_resource) = SubResource::from_name(&name) {
                if let Some(previous) = params.sub_resource {
                    return Err(RouteError::invalid_argument(
                        sub_resource.name(),
                        &value,
                        format!(
                            "Conflicting sub-resources: {} and {}",
                            previous.name(),
                            sub_resource.name()
                        ),
                    ));
                }
                params.sub_resource = Some(sub_resource);
                continue;
            }
            let (name, slot) = match &*name {
                "uploadId" => ("uploadId", &mut params.upload_id),
                "partNumber" => ("partNumber", &mut params.part_number),
                "versionId" => ("versionId", &mut params.version_id),
                "id" => ("id", &mut params.id),
                "annotationName" => ("annotationName", &mut params.annotation_name),
                "list-type" => ("list-type", &mut params.list_type),
                "select-type" => ("select-type", &mut params.select_type),
                _ => continue,
            };
            if slot.is_some() {
                return Err(RouteError::invalid_argument(
                    name,
                    &value,
                    format!("{name} is given more than once"),
                ));
            }
            *slot = Some(value.into_owned());
        }
        Ok(params)
    }

    fn upload_id(&mut self) -> String {
        self.upload_id.take().unwrap_or_default()
    }

    fn part_number(&mut self) -> Result<Option<u32>, RouteError> {
        let Some(raw) = self.part_number.take() else {
            return Ok(None);
        };
        // Digits only: `u32::from_str` would also take a leading `+`.
        let digits = !raw.is_empty() && raw.bytes().all(|byte| byte.is_ascii_digit());
        match raw.parse::<u32>() {
            Ok(number) if digits && (1..=PART_NUMBER_MAX).contains(&number) => Ok(Some(number)),
            _ => Err(RouteError::invalid_argument(
                "partNumber",
                &raw,
                "Part number must be an integer between 1 and 10000, inclusive",
            )),
        }
    }

    fn version_id(&mut self) -> Result<Option<String>, RouteError> {
        match self.version_id.take() {
            Some(version_id) if version_id.is_empty() => Err(RouteError::invalid_argument(
                "versionId",
                "",
                "Version id cannot be the empty string",
            )),
            version_id => Ok(version_id),
        }
    }

    fn id(&mut self) -> Result<String, RouteError> {
        match self.id.take() {
            Some(id) if !id.is_empty() => Ok(id),
            _ => Err(RouteError::invalid_argument(
                "id",
                "",
                "The configuration id must be given and not empty",
            )),
        }
    }

    fn annotation_name(&mut self) -> Result<String, RouteError> {
        match self.annotation_name.take() {
            Some(name) if !name.is_empty() => Ok(name),
            _ => Err(RouteError::invalid_argument(
                "annotationName",
                "",
                "The annotation name must be given and not empty",
            )),
        }
    }

    /// `ListObjectsV2` for `list-type=2`, `ListObjects` without it.
    fn list_objects(&mut self) -> Result<Endpoint, RouteError> {
        match self.list_type.take().as_deref() {
            None => Ok(Endpoint::ListObjects),
            Some("2") => Ok(Endpoint::ListObjectsV2),
            Some(other) => Err(RouteError::invalid_argument(
                "list-type",
                other,
                "Invalid List Type specified",
            )),
        }
    }

    fn select_object_content(&mut self) -> Result<Endpoint, RouteError> {
        match self.select_type.take().as_deref() {
            Some("2") => Ok(Endpoint::SelectObjectContent),
            other => Err(RouteError::invalid_argument(
                "select-type",
                other.unwrap_or(""),
                "select-type must be 2",
            )),
        }
    }

    fn check_all_used(&self, endpoint: &Endpoint) -> Result<(), RouteError> {
        let leftovers = [
            ("uploadId", &self.upload_id),
            ("partNumber", &self.part_number),
            ("versionId", &self.version_id),
            ("id", &self.id),
            ("annotationName", &self.annotation_name),
            ("list-type", &self.list_type),
            ("select-type", &self.select_type),
        ];
        match leftovers
            .into_iter()
            .find_map(|(name, value)| Some((name, value.as_deref()?)))
        {
            Some((name, value)) => Err(RouteError::invalid_argument(
                name,
                value,
                format!(
                    "{} does not accept the query parameter {name}",
                    endpoint.name()
                ),
            )),
            None => Ok(()),
        }
    }
}

/// The routing table: `(method, resource type, sub-resource)`, refined by
/// the selecting parameters and the copy-source header. One row per
/// operation, grouped as the module doc describes; a missing row is
/// `MethodNotAllowed`.
#[allow(
    clippy::too_many_lines,
    reason = "one table, read top to bottom; splitting it would hide rows"
)]
fn select(
    method: &Method,
    resource_type: ResourceType,
    params: &mut Params,
    copy_source: bool,
) -> Result<Endpoint, RouteError> {
    use Endpoint as E;
    use ResourceType::{Bucket, Object, Service};
    use SubResource as S;

    let verb = match *method {
        Method::GET => Verb::Get,
        Method::HEAD => Verb::Head,
        Method::PUT => Verb::Put,
        Method::POST => Verb::Post,
        Method::DELETE => Verb::Delete,
        _ => Verb::Other,
    };
    let has_upload_id = params.upload_id.is_some();
    let has_part_number = params.part_number.is_some();
    let has_id = params.id.is_some();
    let has_annotation_name = params.annotation_name.is_some();

    let endpoint = match (verb, resource_type, params.sub_resource) {
        // The service.
        (Verb::Get, Service, None) => E::ListBuckets,

        // A bucket, no sub-resource.
        (Verb::Get, Bucket, None) => params.list_objects()?,
        (Verb::Head, Bucket, None) => E::HeadBucket,
        (Verb::Put, Bucket, None) => E::CreateBucket,
        (Verb::Delete, Bucket, None) => E::DeleteBucket,
        (Verb::Post, Bucket, None) => E::PostObject,

        // An object, no sub-resource.
        (Verb::Get, Object, None) if has_upload_id => E::ListParts {
            upload_id: params.upload_id(),
        },
        (Verb::Get, Object, None) => E::GetObject {
            part_number: params.part_number()?,
            version_id: params.version_id()?,
        },
        (Verb::Head, Object, None) => E::HeadObject {
            part_number: params.part_number()?,
            version_id: params.version_id()?,
        },
        (Verb::Put, Object, None) if has_upload_id && has_part_number => {
            let part_number = params.part_number()?.expect("partNumber is present");
            let upload_id = params.upload_id();
            if copy_source {
                E::UploadPartCopy {
                    part_number,
                    upload_id,
                }
            } else {
                E::UploadPart {
                    part_number,
                    upload_id,
                }
            }
        }
        (Verb::Put, Object, None) if copy_source => E::CopyObject,
        (Verb::Put, Object, None) => E::PutObject,
        (Verb::Post, Object, None) if has_upload_id => E::CompleteMultipartUpload {
            upload_id: params.upload_id(),
        },
        (Verb::Delete, Object, None) if has_upload_id => E::AbortMultipartUpload {
            upload_id: params.upload_id(),
        },
        (Verb::Delete, Object, None) => E::DeleteObject {
            version_id: params.version_id()?,
        },

        // Bucket sub-resources.
        (Verb::Get, Bucket, Some(S::Abac)) => E::GetBucketAbac,
        (Verb::Put, Bucket, Some(S::Abac)) => E::PutBucketAbac,
        (Verb::Get, Bucket, Some(S::Accelerate)) => E::GetBucketAccelerateConfiguration,
        (Verb::Put, Bucket, Some(S::Accelerate)) => E::PutBucketAccelerateConfiguration,
        (Verb::Get, Bucket, Some(S::Acl)) => E::GetBucketAcl,
        (Verb::Put, Bucket, Some(S::Acl)) => E::PutBucketAcl,
        (Verb::Get, Bucket, Some(S::Analytics)) if has_id => {
            E::GetBucketAnalyticsConfiguration { id: params.id()? }
        }
        (Verb::Get, Bucket, Some(S::Analytics)) => E::ListBucketAnalyticsConfigurations,
        (Verb::Put, Bucket, Some(S::Analytics)) => {
            E::PutBucketAnalyticsConfiguration { id: params.id()? }
        }
        (Verb::Delete, Bucket, Some(S::Analytics)) => {
            E::DeleteBucketAnalyticsConfiguration { id: params.id()? }
        }
        (Verb::Get, Bucket, Some(S::Cors)) => E::GetBucketCors,
        (Verb::Put, Bucket, Some(S::Cors)) => E::PutBucketCors,
        (Verb::Delete, Bucket, Some(S::Cors)) => E::DeleteBucketCors,
        (Verb::Post, Bucket, Some(S::Delete)) => E::DeleteObjects,
        (Verb::Get, Bucket, Some(S::Encryption)) => E::GetBucketEncryption,
        (Verb::Put, Bucket, Some(S::Encryption)) => E::PutBucketEncryption,
        (Verb::Delete, Bucket, Some(S::Encryption)) => E::DeleteBucketEncryption,
        (Verb::Get, Bucket, Some(S::IntelligentTiering)) if has_id => {
            E::GetBucketIntelligentTieringConfiguration { id: params.id()? }
        }
        (Verb::Get, Bucket, Some(S::IntelligentTiering)) => {
            E::ListBucketIntelligentTieringConfigurations
        }
        (Verb::Put, Bucket, Some(S::IntelligentTiering)) => {
            E::PutBucketIntelligentTieringConfiguration { id: params.id()? }
        }
        (Verb::Delete, Bucket, Some(S::IntelligentTiering)) => {
            E::DeleteBucketIntelligentTieringConfiguration { id: params.id()? }
        }
        (Verb::Get, Bucket, Some(S::Inventory)) if has_id => {
            E::GetBucketInventoryConfiguration { id: params.id()? }
        }
        (Verb::Get, Bucket, Some(S::Inventory)) => E::ListBucketInventoryConfigurations,
        (Verb::Put, Bucket, Some(S::Inventory)) => {
            E::PutBucketInventoryConfiguration { id: params.id()? }
        }
        (Verb::Delete, Bucket, Some(S::Inventory)) => {
            E::DeleteBucketInventoryConfiguration { id: params.id()? }
        }
        (Verb::Get, Bucket, Some(S::Lifecycle)) => E::GetBucketLifecycleConfiguration,
        (Verb::Put, Bucket, Some(S::Lifecycle)) => E::PutBucketLifecycleConfiguration,
        (Verb::Delete, Bucket, Some(S::Lifecycle)) => E::DeleteBucketLifecycle,
        (Verb::Get, Bucket, Some(S::Location)) => E::GetBucketLocation,
        (Verb::Get, Bucket, Some(S::Logging)) => E::GetBucketLogging,
        (Verb::Put, Bucket, Some(S::Logging)) => E::PutBucketLogging,
        (Verb::Put, Bucket, Some(S::MetadataAnnotationTable)) => {
            E::UpdateBucketMetadataAnnotationTableConfiguration
        }
        (Verb::Get, Bucket, Some(S::MetadataConfiguration)) => E::GetBucketMetadataConfiguration,
        (Verb::Post, Bucket, Some(S::MetadataConfiguration)) => {
            E::CreateBucketMetadataConfiguration
        }
        (Verb::Delete, Bucket, Some(S::MetadataConfiguration)) => {
            E::DeleteBucketMetadataConfiguration
        }
        (Verb::Put, Bucket, Some(S::MetadataInventoryTable)) => {
            E::UpdateBucketMetadataInventoryTableConfiguration
        }
        (Verb::Put, Bucket, Some(S::MetadataJournalTable)) => {
            E::UpdateBucketMetadataJournalTableConfiguration
        }
        (Verb::Get, Bucket, Some(S::MetadataTable)) => E::GetBucketMetadataTableConfiguration,
        (Verb::Post, Bucket, Some(S::MetadataTable)) => E::CreateBucketMetadataTableConfiguration,
        (Verb::Delete, Bucket, Some(S::MetadataTable)) => E::DeleteBucketMetadataTableConfiguration,
        (Verb::Get, Bucket, Some(S::Metrics)) if has_id => {
            E::GetBucketMetricsConfiguration { id: params.id()? }
        }
        (Verb::Get, Bucket, Some(S::Metrics)) => E::ListBucketMetricsConfigurations,
        (Verb::Put, Bucket, Some(S::Metrics)) => {
            E::PutBucketMetricsConfiguration { id: params.id()? }
        }
        (Verb::Delete, Bucket, Some(S::Metrics)) => {
            E::DeleteBucketMetricsConfiguration { id: params.id()? }
        }
        (Verb::Get, Bucket, Some(S::Notification)) => E::GetBucketNotificationConfiguration,
        (Verb::Put, Bucket, Some(S::Notification)) => E::PutBucketNotificationConfiguration,
        (Verb::Get, Bucket, Some(S::ObjectLock)) => E::GetObjectLockConfiguration,
        (Verb::Put, Bucket, Some(S::ObjectLock)) => E::PutObjectLockConfiguration,
        (Verb::Get, Bucket, Some(S::OwnershipControls)) => E::GetBucketOwnershipControls,
        (Verb::Put, Bucket, Some(S::OwnershipControls)) => E::PutBucketOwnershipControls,
        (Verb::Delete, Bucket, Some(S::OwnershipControls)) => E::DeleteBucketOwnershipControls,
        (Verb::Get, Bucket, Some(S::Policy)) => E::GetBucketPolicy,
        (Verb::Put, Bucket, Some(S::Policy)) => E::PutBucketPolicy,
        (Verb::Delete, Bucket, Some(S::Policy)) => E::DeleteBucketPolicy,
        (Verb::Get, Bucket, Some(S::PolicyStatus)) => E::GetBucketPolicyStatus,
        (Verb::Get, Bucket, Some(S::PublicAccessBlock)) => E::GetPublicAccessBlock,
        (Verb::Put, Bucket, Some(S::PublicAccessBlock)) => E::PutPublicAccessBlock,
        (Verb::Delete, Bucket, Some(S::PublicAccessBlock)) => E::DeletePublicAccessBlock,
        (Verb::Get, Bucket, Some(S::Replication)) => E::GetBucketReplication,
        (Verb::Put, Bucket, Some(S::Replication)) => E::PutBucketReplication,
        (Verb::Delete, Bucket, Some(S::Replication)) => E::DeleteBucketReplication,
        (Verb::Get, Bucket, Some(S::RequestPayment)) => E::GetBucketRequestPayment,
        (Verb::Put, Bucket, Some(S::RequestPayment)) => E::PutBucketRequestPayment,
        (Verb::Get, Bucket, Some(S::Session)) => E::CreateSession,
        (Verb::Get, Bucket, Some(S::Tagging)) => E::GetBucketTagging,
        (Verb::Put, Bucket, Some(S::Tagging)) => E::PutBucketTagging,
        (Verb::Delete, Bucket, Some(S::Tagging)) => E::DeleteBucketTagging,
        (Verb::Get, Bucket, Some(S::Uploads)) => E::ListMultipartUploads,
        (Verb::Get, Bucket, Some(S::Versioning)) => E::GetBucketVersioning,
        (Verb::Put, Bucket, Some(S::Versioning)) => E::PutBucketVersioning,
        (Verb::Get, Bucket, Some(S::Versions)) => E::ListObjectVersions,
        (Verb::Get, Bucket, Some(S::Website)) => E::GetBucketWebsite,
        (Verb::Put, Bucket, Some(S::Website)) => E::PutBucketWebsite,
        (Verb::Delete, Bucket, Some(S::Website)) => E::DeleteBucketWebsite,

        // Object sub-resources.
        (Verb::Get, Object, Some(S::Acl)) => E::GetObjectAcl {
            version_id: params.version_id()?,
        },
        (Verb::Put, Object, Some(S::Acl)) => E::PutObjectAcl {
            version_id: params.version_id()?,
        },
        (Verb::Get, Object, Some(S::Annotation)) if has_annotation_name => E::GetObjectAnnotation {
            annotation_name: params.annotation_name()?,
            version_id: params.version_id()?,
        },
        (Verb::Get, Object, Some(S::Annotation)) => E::ListObjectAnnotations {
            version_id: params.version_id()?,
        },
        (Verb::Put, Object, Some(S::Annotation)) => E::PutObjectAnnotation {
            annotation_name: params.annotation_name()?,
            version_id: params.version_id()?,
        },
        (Verb::Delete, Object, Some(S::Annotation)) => E::DeleteObjectAnnotation {
            annotation_name: params.annotation_name()?,
            version_id: params.version_id()?,
        },
        (Verb::Get, Object, Some(S::Attributes)) => E::GetObjectAttributes {
            version_id: params.version_id()?,
        },
        (Verb::Put, Object, Some(S::Encryption)) => E::UpdateObjectEncryption {
            version_id: params.version_id()?,
        },
        (Verb::Get, Object, Some(S::LegalHold)) => E::GetObjectLegalHold {
            version_id: params.version_id()?,
        },
        (Verb::Put, Object, Some(S::LegalHold)) => E::PutObjectLegalHold {
            version_id: params.version_id()?,
        },
        (Verb::Put, Object, Some(S::RenameObject)) => E::RenameObject,
        (Verb::Post, Object, Some(S::Restore)) => E::RestoreObject {
            version_id: params.version_id()?,
        },
        (Verb::Get, Object, Some(S::Retention)) => E::GetObjectRetention {
            version_id: params.version_id()?,
        },
        (Verb::Put, Object, Some(S::Retention)) => E::PutObjectRetention {
            version_id: params.version_id()?,
        },
        (Verb::Post, Object, Some(S::Select)) => params.select_object_content()?,
        (Verb::Get, Object, Some(S::Tagging)) => E::GetObjectTagging {
            version_id: params.version_id()?,
        },
        (Verb::Put, Object, Some(S::Tagging)) => E::PutObjectTagging {
            version_id: params.version_id()?,
        },
        (Verb::Delete, Object, Some(S::Tagging)) => E::DeleteObjectTagging {
            version_id: params.version_id()?,
        },
        (Verb::Get, Object, Some(S::Torrent)) => E::GetObjectTorrent,
        (Verb::Post, Object, Some(S::Uploads)) => E::CreateMultipartUpload,

        _ => {
            return Err(RouteError::MethodNotAllowed {
                method: method.clone(),
                resource_type,
            });
        }
    };
    Ok(endpoint)
}

/// The methods S3 has operations for (`OPTIONS` is handled before the
/// table, because a preflight never depends on the query).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verb {
    Get,
    Head,
    Put,
    Post,
    Delete,
    Other,
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::collections::BTreeSet;

    use http::HeaderValue;

    fn config() -> RouterConfig {
        RouterConfig {
            domains: vec!["localhost".to_owned(), "s3.localhost".to_owned()],
        }
    }

    fn headers(copy_source: bool) -> HeaderMap {
        let mut headers = HeaderMap::new();
        if copy_source {
            let value = HeaderValue::from_static("/source-bucket/source-key");
            headers.insert(COPY_SOURCE_HEADER, value);
        }
        headers
    }

    fn method(name: &str) -> Method {
        Method::from_bytes(name.as_bytes()).expect("valid method token")
    }

    /// Routes `target` (path plus optional `?query`, as sent) with `host`.
    fn route_target(
        method_name: &str,
        host: Option<&str>,
        target: &str,
        copy_source: bool,
    ) -> Result<Route, RouteError> {
        let (path, query) = match target.split_once('?') {
            Some((path, query)) => (path, Some(query)),
            None => (target, None),
        };
        let headers = headers(copy_source);
        route(&config(), &method(method_name), host, path, query, &headers)
    }

    /// Routes a path-style `target` twice: path style (the Host is a
    /// configured domain itself) and virtual-hosted style (the bucket moved
    /// into the Host). Both must give the same route.
    fn route_both_styles(
        method_name: &str,
        target: &str,
        copy_source: bool,
    ) -> Result<Route, RouteError> {
        let path_style = route_target(method_name, Some("s3.localhost:9000"), target, copy_source);
        let rest = target.strip_prefix('/').expect("targets start with /");
        let bucket_len = rest.find(['/', '?']).unwrap_or(rest.len());
        if bucket_len == 0 {
            return path_style; // service level: no bucket to move
        }
        let (bucket, rest) = rest.split_at(bucket_len);
        let rest = rest.strip_prefix('/').unwrap_or(rest);
        let host = format!("{bucket}.s3.localhost:9000");
        let vhost_target = format!("/{rest}");
        let virtual_hosted = route_target(method_name, Some(&host), &vhost_target, copy_source);
        // An error may quote the bucket as the client wrote it, which
        // differs between the styles; its code may not.
        match (&path_style, &virtual_hosted) {
            (Err(path_error), Err(vhost_error)) => {
                assert_eq!(
                    path_error.code(),
                    vhost_error.code(),
                    "{method_name} {target}"
                );
            }
            _ => assert_eq!(
                path_style, virtual_hosted,
                "{method_name} {target}: styles differ"
            ),
        }
        path_style
    }

    fn must_fail(result: Result<Route, RouteError>, what: &str) -> RouteError {
        match result {
            Ok(routed) => panic!("{what} must fail, routed to {routed:?}"),
            Err(error) => error,
        }
    }

    struct Row {
        method: &'static str,
        target: &'static str,
        copy_source: bool,
        endpoint: Endpoint,
        permission: Permission,
    }

    fn row(
        method: &'static str,
        target: &'static str,
        endpoint: Endpoint,
        permission: Permission,
    ) -> Row {
        Row {
            method,
            target,
            copy_source: false,
            endpoint,
            permission,
        }
    }

    fn copy(
        method: &'static str,
        target: &'static str,
        endpoint: Endpoint,
        permission: Permission,
    ) -> Row {
        Row {
            method,
            target,
            copy_source: true,
            endpoint,
            permission,
        }
    }

    fn id(value: &str) -> String {
        value.to_owned()
    }

    /// The request forms of the AWS API reference (the "Request Syntax" of
    /// each action page), path style; `route_both_styles` also runs each
    /// one virtual-hosted. Every `Endpoint` variant must appear here.
    #[rustfmt::skip]
    #[allow(clippy::too_many_lines, reason = "the table of every S3 operation")]
    fn operations() -> Vec<Row> {
        use Endpoint as E;
        use Permission::{Anonymous, Authenticated, Owner, Read, Write};
        const UPLOAD_ID: &str = "VXBsb2FkIElEIGZvciBlbHZpbmcncyBteS1tb3ZpZS5tMnRzIHVwbG9hZA";
        vec![
            // Service and buckets.
            row("GET", "/", E::ListBuckets, Authenticated),
            row("GET", "/?x-id=ListBuckets&max-buckets=10&prefix=a", E::ListBuckets, Authenticated),
            row("PUT", "/examplebucket", E::CreateBucket, Authenticated),
            row("HEAD", "/examplebucket", E::HeadBucket, Read),
            row("DELETE", "/examplebucket", E::DeleteBucket, Owner),
            row("GET", "/examplebucket?location", E::GetBucketLocation, Read),
            // Listings.
            row("GET", "/examplebucket", E::ListObjects, Read),
            row("GET", "/examplebucket/", E::ListObjects, Read),
            row("GET", "/examplebucket?delimiter=/&encoding-type=url&marker=m&max-keys=5&prefix=p", E::ListObjects, Read),
            row("GET", "/examplebucket?list-type=2", E::ListObjectsV2, Read),
            row("GET", "/examplebucket?list-type=2&continuation-token=t&fetch-owner=true&start-after=a&prefix=photos/", E::ListObjectsV2, Read),
            row("GET", "/examplebucket?versions", E::ListObjectVersions, Read),
            row("GET", "/examplebucket?versions&key-marker=k&version-id-marker=v", E::ListObjectVersions, Read),
            // Objects.
            row("PUT", "/examplebucket/my-image.jpg", E::PutObject, Write),
            row("PUT", "/examplebucket/my-image.jpg?x-id=PutObject", E::PutObject, Write),
            copy("PUT", "/examplebucket/my-image.jpg", E::CopyObject, Write),
            row("GET", "/examplebucket/my-image.jpg", E::GetObject { part_number: None, version_id: None }, Read),
            row("GET", "/examplebucket/my-image.jpg?partNumber=3&versionId=3HL4kqtJlcpXroDTDmjVBH40Nrjfkd", E::GetObject { part_number: Some(3), version_id: Some(id("3HL4kqtJlcpXroDTDmjVBH40Nrjfkd")) }, Read),
            row("GET", "/examplebucket/my-image.jpg?response-content-type=text/plain&x-id=GetObject", E::GetObject { part_number: None, version_id: None }, Read),
            row("HEAD", "/examplebucket/my-image.jpg", E::HeadObject { part_number: None, version_id: None }, Read),
            row("HEAD", "/examplebucket/my-image.jpg?partNumber=10000&versionId=null", E::HeadObject { part_number: Some(10_000), version_id: Some(id("null")) }, Read),
            row("DELETE", "/examplebucket/my-image.jpg", E::DeleteObject { version_id: None }, Write),
            row("DELETE", "/examplebucket/my-image.jpg?versionId=UIORUnfnd89493jJFJ", E::DeleteObject { version_id: Some(id("UIORUnfnd89493jJFJ")) }, Write),
            row("POST", "/examplebucket?delete", E::DeleteObjects, Write),
            row("POST", "/examplebucket?delete=", E::DeleteObjects, Write),
            row("GET", "/examplebucket/my-image.jpg?attributes", E::GetObjectAttributes { version_id: None }, Read),
            row("GET", "/examplebucket/my-image.jpg?attributes&versionId=v1", E::GetObjectAttributes { version_id: Some(id("v1")) }, Read),
            row("POST", "/examplebucket", E::PostObject, Write),
            row("POST", "/examplebucket/", E::PostObject, Write),
            // Multipart uploads.
            row("POST", "/examplebucket/example-object?uploads", E::CreateMultipartUpload, Write),
            row("POST", "/examplebucket/example-object?uploads=", E::CreateMultipartUpload, Write),
            row("PUT", "/examplebucket/example-object?partNumber=1&uploadId=VXBsb2FkIElEIGZvciBlbHZpbmcncyBteS1tb3ZpZS5tMnRzIHVwbG9hZA", E::UploadPart { part_number: 1, upload_id: id(UPLOAD_ID) }, Write),
            copy("PUT", "/examplebucket/example-object?uploadId=VXBsb2FkIElEIGZvciBlbHZpbmcncyBteS1tb3ZpZS5tMnRzIHVwbG9hZA&partNumber=2", E::UploadPartCopy { part_number: 2, upload_id: id(UPLOAD_ID) }, Write),
            row("POST", "/examplebucket/example-object?uploadId=VXBsb2FkIElEIGZvciBlbHZpbmcncyBteS1tb3ZpZS5tMnRzIHVwbG9hZA", E::CompleteMultipartUpload { upload_id: id(UPLOAD_ID) }, Write),
            row("DELETE", "/examplebucket/example-object?uploadId=VXBsb2FkIElEIGZvciBlbHZpbmcncyBteS1tb3ZpZS5tMnRzIHVwbG9hZA", E::AbortMultipartUpload { upload_id: id(UPLOAD_ID) }, Write),
            row("GET", "/examplebucket/example-object?uploadId=VXBsb2FkIElEIGZvciBlbHZpbmcncyBteS1tb3ZpZS5tMnRzIHVwbG9hZA&max-parts=2&part-number-marker=1", E::ListParts { upload_id: id(UPLOAD_ID) }, Read),
            row("GET", "/examplebucket?uploads", E::ListMultipartUploads, Read),
            row("GET", "/examplebucket?uploads&max-uploads=3&upload-id-marker=u&key-marker=k", E::ListMultipartUploads, Read),
            // Bucket sub-resources.
            row("GET", "/examplebucket?abac", E::GetBucketAbac, Owner),
            row("PUT", "/examplebucket?abac", E::PutBucketAbac, Owner),
            row("GET", "/examplebucket?accelerate", E::GetBucketAccelerateConfiguration, Owner),
            row("PUT", "/examplebucket?accelerate", E::PutBucketAccelerateConfiguration, Owner),
            row("GET", "/examplebucket?acl", E::GetBucketAcl, Owner),
            row("PUT", "/examplebucket?acl", E::PutBucketAcl, Owner),
            row("GET", "/examplebucket?analytics&id=list1", E::GetBucketAnalyticsConfiguration { id: id("list1") }, Owner),
            row("GET", "/examplebucket?analytics&continuation-token=t", E::ListBucketAnalyticsConfigurations, Owner),
            row("PUT", "/examplebucket?analytics&id=report1", E::PutBucketAnalyticsConfiguration { id: id("report1") }, Owner),
            row("DELETE", "/examplebucket?analytics&id=list1", E::DeleteBucketAnalyticsConfiguration { id: id("list1") }, Owner),
            row("GET", "/examplebucket?cors", E::GetBucketCors, Owner),
            row("PUT", "/examplebucket?cors", E::PutBucketCors, Owner),
            row("DELETE", "/examplebucket?cors", E::DeleteBucketCors, Owner),
            row("GET", "/examplebucket?encryption", E::GetBucketEncryption, Owner),
            row("PUT", "/examplebucket?encryption", E::PutBucketEncryption, Owner),
            row("DELETE", "/examplebucket?encryption", E::DeleteBucketEncryption, Owner),
            row("GET", "/examplebucket?intelligent-tiering&id=ITConfig", E::GetBucketIntelligentTieringConfiguration { id: id("ITConfig") }, Owner),
            row("GET", "/examplebucket?intelligent-tiering", E::ListBucketIntelligentTieringConfigurations, Owner),
            row("PUT", "/examplebucket?intelligent-tiering&id=ITConfig", E::PutBucketIntelligentTieringConfiguration { id: id("ITConfig") }, Owner),
            row("DELETE", "/examplebucket?intelligent-tiering&id=ITConfig", E::DeleteBucketIntelligentTieringConfiguration { id: id("ITConfig") }, Owner),
            row("GET", "/examplebucket?inventory&id=report1", E::GetBucketInventoryConfiguration { id: id("report1") }, Owner),
            row("GET", "/examplebucket?inventory", E::ListBucketInventoryConfigurations, Owner),
            row("PUT", "/examplebucket?inventory&id=report1", E::PutBucketInventoryConfiguration { id: id("report1") }, Owner),
            row("DELETE", "/examplebucket?inventory&id=report1", E::DeleteBucketInventoryConfiguration { id: id("report1") }, Owner),
            row("GET", "/examplebucket?lifecycle", E::GetBucketLifecycleConfiguration, Owner),
            row("PUT", "/examplebucket?lifecycle", E::PutBucketLifecycleConfiguration, Owner),
            row("DELETE", "/examplebucket?lifecycle", E::DeleteBucketLifecycle, Owner),
            row("GET", "/examplebucket?logging", E::GetBucketLogging, Owner),
            row("PUT", "/examplebucket?logging", E::PutBucketLogging, Owner),
            row("GET", "/examplebucket?metadataConfiguration", E::GetBucketMetadataConfiguration, Owner),
            row("POST", "/examplebucket?metadataConfiguration", E::CreateBucketMetadataConfiguration, Owner),
            row("DELETE", "/examplebucket?metadataConfiguration", E::DeleteBucketMetadataConfiguration, Owner),
            row("GET", "/examplebucket?metadataTable", E::GetBucketMetadataTableConfiguration, Owner),
            row("POST", "/examplebucket?metadataTable", E::CreateBucketMetadataTableConfiguration, Owner),
            row("DELETE", "/examplebucket?metadataTable", E::DeleteBucketMetadataTableConfiguration, Owner),
            row("PUT", "/examplebucket?metadataAnnotationTable", E::UpdateBucketMetadataAnnotationTableConfiguration, Owner),
            row("PUT", "/examplebucket?metadataInventoryTable", E::UpdateBucketMetadataInventoryTableConfiguration, Owner),
            row("PUT", "/examplebucket?metadataJournalTable", E::UpdateBucketMetadataJournalTableConfiguration, Owner),
            row("GET", "/examplebucket?metrics&id=Documents", E::GetBucketMetricsConfiguration { id: id("Documents") }, Owner),
            row("GET", "/examplebucket?metrics", E::ListBucketMetricsConfigurations, Owner),
            row("PUT", "/examplebucket?metrics&id=Documents", E::PutBucketMetricsConfiguration { id: id("Documents") }, Owner),
            row("DELETE", "/examplebucket?metrics&id=Documents", E::DeleteBucketMetricsConfiguration { id: id("Documents") }, Owner),
            row("GET", "/examplebucket?notification", E::GetBucketNotificationConfiguration, Owner),
            row("PUT", "/examplebucket?notification", E::PutBucketNotificationConfiguration, Owner),
            row("GET", "/examplebucket?object-lock", E::GetObjectLockConfiguration, Owner),
            row("PUT", "/examplebucket?object-lock", E::PutObjectLockConfiguration, Owner),
            row("GET", "/examplebucket?ownershipControls", E::GetBucketOwnershipControls, Owner),
            row("PUT", "/examplebucket?ownershipControls", E::PutBucketOwnershipControls, Owner),
            row("DELETE", "/examplebucket?ownershipControls", E::DeleteBucketOwnershipControls, Owner),
            row("GET", "/examplebucket?policy", E::GetBucketPolicy, Owner),
            row("PUT", "/examplebucket?policy", E::PutBucketPolicy, Owner),
            row("DELETE", "/examplebucket?policy", E::DeleteBucketPolicy, Owner),
            row("GET", "/examplebucket?policyStatus", E::GetBucketPolicyStatus, Owner),
            row("GET", "/examplebucket?publicAccessBlock", E::GetPublicAccessBlock, Owner),
            row("PUT", "/examplebucket?publicAccessBlock", E::PutPublicAccessBlock, Owner),
            row("DELETE", "/examplebucket?publicAccessBlock", E::DeletePublicAccessBlock, Owner),
            row("GET", "/examplebucket?replication", E::GetBucketReplication, Owner),
            row("PUT", "/examplebucket?replication", E::PutBucketReplication, Owner),
            row("DELETE", "/examplebucket?replication", E::DeleteBucketReplication, Owner),
            row("GET", "/examplebucket?requestPayment", E::GetBucketRequestPayment, Owner),
            row("PUT", "/examplebucket?requestPayment", E::PutBucketRequestPayment, Owner),
            row("GET", "/examplebucket?session", E::CreateSession, Write),
            row("GET", "/examplebucket?tagging", E::GetBucketTagging, Owner),
            row("PUT", "/examplebucket?tagging", E::PutBucketTagging, Owner),
            row("DELETE", "/examplebucket?tagging", E::DeleteBucketTagging, Owner),
            row("GET", "/examplebucket?versioning", E::GetBucketVersioning, Read),
            row("PUT", "/examplebucket?versioning", E::PutBucketVersioning, Owner),
            row("GET", "/examplebucket?website", E::GetBucketWebsite, Owner),
            row("PUT", "/examplebucket?website", E::PutBucketWebsite, Owner),
            row("DELETE", "/examplebucket?website", E::DeleteBucketWebsite, Owner),
            // Object sub-resources.
            row("GET", "/examplebucket/my-image.jpg?acl", E::GetObjectAcl { version_id: None }, Read),
            row("PUT", "/examplebucket/my-image.jpg?acl&versionId=v2", E::PutObjectAcl { version_id: Some(id("v2")) }, Write),
            row("GET", "/examplebucket/doc.pdf?annotation&annotationName=summary", E::GetObjectAnnotation { annotation_name: id("summary"), version_id: None }, Read),
            row("GET", "/examplebucket/doc.pdf?annotation&max-annotation-results=5", E::ListObjectAnnotations { version_id: None }, Read),
            row("PUT", "/examplebucket/doc.pdf?annotation&annotationName=summary&versionId=v3", E::PutObjectAnnotation { annotation_name: id("summary"), version_id: Some(id("v3")) }, Write),
            row("DELETE", "/examplebucket/doc.pdf?annotation&annotationName=summary", E::DeleteObjectAnnotation { annotation_name: id("summary"), version_id: None }, Write),
            row("PUT", "/examplebucket/doc.pdf?encryption", E::UpdateObjectEncryption { version_id: None }, Write),
            row("GET", "/examplebucket/doc.pdf?legal-hold", E::GetObjectLegalHold { version_id: None }, Read),
            row("PUT", "/examplebucket/doc.pdf?legal-hold&versionId=v4", E::PutObjectLegalHold { version_id: Some(id("v4")) }, Write),
            row("PUT", "/examplebucket/new-name.pdf?renameObject", E::RenameObject, Write),
            row("POST", "/examplebucket/archive.zip?restore&versionId=v5", E::RestoreObject { version_id: Some(id("v5")) }, Write),
            row("GET", "/examplebucket/doc.pdf?retention", E::GetObjectRetention { version_id: None }, Read),
            row("PUT", "/examplebucket/doc.pdf?retention", E::PutObjectRetention { version_id: None }, Write),
            row("POST", "/examplebucket/data.csv?select&select-type=2", E::SelectObjectContent, Read),
            row("GET", "/examplebucket/doc.pdf?tagging", E::GetObjectTagging { version_id: None }, Read),
            row("PUT", "/examplebucket/doc.pdf?tagging&versionId=v6", E::PutObjectTagging { version_id: Some(id("v6")) }, Write),
            row("DELETE", "/examplebucket/doc.pdf?tagging", E::DeleteObjectTagging { version_id: None }, Write),
            row("GET", "/examplebucket/quotes/Nelson?torrent", E::GetObjectTorrent, Read),
            // CORS preflight, whatever the query.
            row("OPTIONS", "/examplebucket", E::OptionsObject, Anonymous),
            row("OPTIONS", "/examplebucket/doc.pdf?tagging&uploadId=x&uploadId=y", E::OptionsObject, Anonymous),
        ]
    }

    /// Expected bucket and key of a plain-ASCII path-style target.
    fn expected_location(target: &str) -> (Option<String>, Option<String>) {
        let path = target.split('?').next().expect("split yields one item");
        let rest = &path[1..];
        if rest.is_empty() {
            return (None, None);
        }
        let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
        (
            Some(bucket.to_owned()),
            (!key.is_empty()).then(|| key.to_owned()),
        )
    }

    /// Goal: every AWS request form routes to its operation, with the
    /// right bucket, key and permission class, in both addressing styles.
    #[test]
    fn every_operation_routes_in_both_styles() {
        for row in operations() {
            let what = format!("{} {}", row.method, row.target);
            let routed = route_both_styles(row.method, row.target, row.copy_source)
                .unwrap_or_else(|error| panic!("{what}: {error}"));
            assert_eq!(routed.endpoint, row.endpoint, "{what}");
            assert_eq!(routed.endpoint.permission(), row.permission, "{what}");
            let (bucket, key) = expected_location(row.target);
            assert_eq!(routed.bucket, bucket, "{what}");
            assert_eq!(routed.key, key, "{what}");
        }
    }

    /// Goal: the table above cannot silently miss an operation.
    #[test]
    fn the_table_reaches_every_endpoint() {
        let reached: BTreeSet<&str> = operations().iter().map(|row| row.endpoint.name()).collect();
        let all: BTreeSet<&str> = ENDPOINT_NAMES.iter().copied().collect();
        let missing: Vec<_> = all.difference(&reached).collect();
        assert!(missing.is_empty(), "no row routes to {missing:?}");
        assert_eq!(all.len(), ENDPOINT_NAMES.len(), "duplicate variant name");
    }

    #[test]
    fn name_is_the_aws_operation_name() {
        assert_eq!(Endpoint::ListObjectsV2.name(), "ListObjectsV2");
        let upload_part_copy = Endpoint::UploadPartCopy {
            part_number: 1,
            upload_id: id("u"),
        };
        assert_eq!(upload_part_copy.name(), "UploadPartCopy");
        let get_object = Endpoint::GetObject {
            part_number: None,
            version_id: None,
        };
        assert_eq!(get_object.name(), "GetObject");
    }

    /// Goal: keys survive exactly as the client meant them: decoded once,
    /// nothing normalized. Each path is also run virtual-hosted.
    #[test]
    fn keys_are_decoded_once_and_kept_verbatim() {
        #[rustfmt::skip]
        let cases: &[(&str, &str)] = &[
            ("/b1/a//b", "a//b"),
            ("/b1//leading", "/leading"),
            ("/b1//", "/"),
            ("/b1/.", "."),
            ("/b1/..", ".."),
            ("/b1/../x/./y", "../x/./y"),
            ("/b1/a+b", "a+b"),
            ("/b1/a%2Bb", "a+b"),
            ("/b1/a%20b", "a b"),
            ("/b1/line%0Abreak", "line\nbreak"),
            ("/b1/%E2%82%AC/caf%C3%A9", "€/café"),
            ("/b1/€/日本語", "€/日本語"),
            ("/b1/dir/", "dir/"),
            ("/b1/dir%2Fsub", "dir/sub"),
            ("/b1/%252F", "%2F"),
            ("/b1/%2e%2e", ".."),
            ("/b1/a%3Fb%23c", "a?b#c"),
        ];
        let get = Endpoint::GetObject {
            part_number: None,
            version_id: None,
        };
        for &(path, key) in cases {
            let routed = route_both_styles("GET", path, false)
                .unwrap_or_else(|error| panic!("{path}: {error}"));
            assert_eq!(routed.key.as_deref(), Some(key), "{path}");
            assert_eq!(routed.bucket.as_deref(), Some("b1"), "{path}");
            assert_eq!(routed.endpoint, get, "{path}");
        }
    }

    /// Goal: the key limit holds at exactly the limit and one past it,
    /// counted in decoded UTF-8 bytes, not in encoded path bytes.
    #[test]
    fn key_length_limit() {
        let at_limit = "k".repeat(KEY_BYTES_MAX);
        let routed =
            route_both_styles("PUT", &format!("/b1/{at_limit}"), false).expect("1024 bytes");
        assert_eq!(routed.key.as_deref(), Some(at_limit.as_str()));

        let over = "k".repeat(KEY_BYTES_MAX + 1);
        let error = must_fail(
            route_both_styles("PUT", &format!("/b1/{over}"), false),
            "1025 bytes",
        );
        assert_eq!(
            error,
            RouteError::KeyTooLongError {
                key_len: KEY_BYTES_MAX + 1
            }
        );
        assert_eq!(
            (error.code(), error.status()),
            ("KeyTooLongError", StatusCode::BAD_REQUEST)
        );

        // 341 three-byte characters plus one byte: 1024 bytes, 3070 encoded.
        let euro_at_limit = format!("/b1/{}k", "%E2%82%AC".repeat(341));
        let routed = route_both_styles("GET", &euro_at_limit, false).expect("1024 bytes of UTF-8");
        assert_eq!(routed.key.map(|key| key.len()), Some(KEY_BYTES_MAX));
        let euro_over = format!("/b1/{}kk", "%E2%82%AC".repeat(341));
        let error = must_fail(
            route_both_styles("GET", &euro_over, false),
            "1025 bytes of UTF-8",
        );
        assert_eq!(error.code(), "KeyTooLongError");
    }

    /// Goal: each malformed request is refused with the code and status
    /// AWS uses, in both addressing styles.
    #[test]
    fn errors() {
        const BAD: StatusCode = StatusCode::BAD_REQUEST;
        const NOT_ALLOWED: StatusCode = StatusCode::METHOD_NOT_ALLOWED;
        #[rustfmt::skip]
        let cases: &[(&str, &str, &str, StatusCode)] = &[
            // Bad percent-encoding, in the key, the bucket and the query.
            ("GET", "/b1/a%", "InvalidURI", BAD),
            ("GET", "/b1/a%2", "InvalidURI", BAD),
            ("GET", "/b1/a%zz", "InvalidURI", BAD),
            ("GET", "/b1/a%FF", "InvalidURI", BAD),
            ("GET", "/b1/%C0%AE%C0%AE", "InvalidURI", BAD),
            ("GET", "/b1/k?prefix=%", "InvalidURI", BAD),
            ("GET", "/b1?prefix=%FE", "InvalidURI", BAD),
            ("GET", "/b1?%zz=1", "InvalidURI", BAD),
            // Methods with no operation.
            ("PATCH", "/b1/k", "MethodNotAllowed", NOT_ALLOWED),
            ("PATCH", "/b1", "MethodNotAllowed", NOT_ALLOWED),
            ("BREW", "/b1/k", "MethodNotAllowed", NOT_ALLOWED),
            ("TRACE", "/b1/k", "MethodNotAllowed", NOT_ALLOWED),
            ("CONNECT", "/b1/k", "MethodNotAllowed", NOT_ALLOWED),
            ("POST", "/b1/k", "MethodNotAllowed", NOT_ALLOWED),
            ("POST", "/b1?acl", "MethodNotAllowed", NOT_ALLOWED),
            ("PUT", "/b1?location", "MethodNotAllowed", NOT_ALLOWED),
            ("GET", "/b1/k?location", "MethodNotAllowed", NOT_ALLOWED),
            ("POST", "/b1?uploads", "MethodNotAllowed", NOT_ALLOWED),
            ("GET", "/b1?retention", "MethodNotAllowed", NOT_ALLOWED),
            ("HEAD", "/b1/k?acl", "MethodNotAllowed", NOT_ALLOWED),
            ("POST", "/b1/k?delete", "MethodNotAllowed", NOT_ALLOWED),
            // Parameters that would otherwise be silently ignored.
            ("PUT", "/b1/k?partNumber=1", "InvalidArgument", BAD),
            ("PUT", "/b1/k?uploadId=abc", "InvalidArgument", BAD),
            ("DELETE", "/b1?versionId=v1", "InvalidArgument", BAD),
            ("DELETE", "/b1/?uploadId=u", "InvalidArgument", BAD),
            ("GET", "/b1/k?tagging&uploadId=u", "InvalidArgument", BAD),
            ("GET", "/b1/k?uploadId=u&partNumber=1", "InvalidArgument", BAD),
            ("HEAD", "/b1/k?uploadId=u", "InvalidArgument", BAD),
            ("GET", "/b1/k?torrent&versionId=v", "InvalidArgument", BAD),
            ("PUT", "/b1/k?versionId=v", "InvalidArgument", BAD),
            ("GET", "/b1/k?list-type=2", "InvalidArgument", BAD),
            ("GET", "/b1?versions&list-type=2", "InvalidArgument", BAD),
            ("GET", "/b1?cors&id=x", "InvalidArgument", BAD),
            // Conflicting or repeated parameters.
            ("GET", "/b1?tagging&acl", "InvalidArgument", BAD),
            ("GET", "/b1?acl&acl", "InvalidArgument", BAD),
            ("GET", "/b1/k?versionId=a&versionId=b", "InvalidArgument", BAD),
            ("PUT", "/b1/k?partNumber=1&partNumber=2&uploadId=u", "InvalidArgument", BAD),
            // Malformed selecting values.
            ("PUT", "/b1/k?partNumber=0&uploadId=u", "InvalidArgument", BAD),
            ("PUT", "/b1/k?partNumber=10001&uploadId=u", "InvalidArgument", BAD),
            ("PUT", "/b1/k?partNumber=%2B1&uploadId=u", "InvalidArgument", BAD),
            ("PUT", "/b1/k?partNumber=-1&uploadId=u", "InvalidArgument", BAD),
            ("PUT", "/b1/k?partNumber=one&uploadId=u", "InvalidArgument", BAD),
            ("PUT", "/b1/k?partNumber&uploadId=u", "InvalidArgument", BAD),
            ("PUT", "/b1/k?partNumber=99999999999&uploadId=u", "InvalidArgument", BAD),
            ("GET", "/b1/k?partNumber=0", "InvalidArgument", BAD),
            ("GET", "/b1/k?versionId=", "InvalidArgument", BAD),
            ("DELETE", "/b1/k?versionId", "InvalidArgument", BAD),
            ("GET", "/b1?list-type=1", "InvalidArgument", BAD),
            ("PUT", "/b1?analytics", "InvalidArgument", BAD),
            ("DELETE", "/b1?metrics&id=", "InvalidArgument", BAD),
            ("POST", "/b1/k?select", "InvalidArgument", BAD),
            ("POST", "/b1/k?select&select-type=1", "InvalidArgument", BAD),
            ("PUT", "/b1/k?annotation", "InvalidArgument", BAD),
            // Bucket shapes no bucket can have.
            ("GET", "/b%20d/k", "InvalidBucketName", BAD),
            ("GET", "/a%2Fb/k", "InvalidBucketName", BAD),
            ("GET", "/b:1/k", "InvalidBucketName", BAD),
        ];
        for &(method_name, target, code, status) in cases {
            let error = must_fail(route_both_styles(method_name, target, false), target);
            let what = format!("{method_name} {target}: {error}");
            assert_eq!((error.code(), error.status()), (code, status), "{what}");
        }
    }

    /// Goal: errors that exist in path style only.
    #[test]
    fn path_style_only_errors() {
        #[rustfmt::skip]
        let cases: &[(&str, &str, &str)] = &[
            ("DELETE", "/", "MethodNotAllowed"),
            ("PUT", "/", "MethodNotAllowed"),
            ("POST", "/", "MethodNotAllowed"),
            ("HEAD", "/", "MethodNotAllowed"),
            ("OPTIONS", "/", "MethodNotAllowed"),
            ("PATCH", "/", "MethodNotAllowed"),
            ("GET", "/?uploads", "MethodNotAllowed"),
            ("GET", "/?versionId=v", "InvalidArgument"),
            ("GET", "//k", "InvalidBucketName"),
            ("GET", "/%zz", "InvalidURI"),
        ];
        for &(method_name, target, code) in cases {
            let error = must_fail(route_target(method_name, None, target, false), target);
            assert_eq!(error.code(), code, "{method_name} {target}: {error}");
        }
        let long_bucket = format!("/{}/k", "b".repeat(BUCKET_NAME_BYTES_MAX + 1));
        let error = must_fail(
            route_target("GET", None, &long_bucket, false),
            "64-byte bucket",
        );
        assert_eq!(error.code(), "InvalidBucketName");
        let max_bucket = format!("/{}/k", "b".repeat(BUCKET_NAME_BYTES_MAX));
        assert!(route_target("GET", None, &max_bucket, false).is_ok());

        for target in ["", "*", "b1/k", "http://host/b1/k"] {
            let error = must_fail(route_target("GET", None, target, false), target);
            assert_eq!(error, RouteError::InvalidURI, "{target:?}");
        }
    }

    #[test]
    fn method_not_allowed_names_method_and_resource_type() {
        let error = must_fail(route_target("PATCH", None, "/b1/k", false), "PATCH");
        let expected = RouteError::MethodNotAllowed {
            method: method("PATCH"),
            resource_type: ResourceType::Object,
        };
        assert_eq!(error, expected);
        let error = must_fail(route_target("DELETE", None, "/", false), "DELETE /");
        let expected = RouteError::MethodNotAllowed {
            method: Method::DELETE,
            resource_type: ResourceType::Service,
        };
        assert_eq!(error, expected);
        assert_eq!(ResourceType::Bucket.as_str(), "BUCKET");
    }

    #[test]
    fn invalid_argument_names_the_argument() {
        let error = must_fail(
            route_target("GET", None, "/b1/k?partNumber=0", false),
            "part 0",
        );
        let expected = RouteError::InvalidArgument {
            name: "partNumber",
            value: "0".to_owned(),
            message: "Part number must be an integer between 1 and 10000, inclusive".to_owned(),
        };
        assert_eq!(error, expected);
        let error = must_fail(
            route_target("DELETE", None, "/b1?versionId=v1", false),
            "bucket version",
        );
        let RouteError::InvalidArgument {
            name,
            value,
            message,
        } = &error
        else {
            panic!("{error:?}")
        };
        assert_eq!((*name, value.as_str()), ("versionId", "v1"));
        assert!(message.contains("DeleteBucket"), "{message}");
    }

    /// Host, path, expected bucket, key and endpoint.
    type VirtualHostCase = (
        &'static str,
        &'static str,
        Option<&'static str>,
        Option<&'static str>,
        Endpoint,
    );

    /// Goal: virtual-hosted style is recognized for configured domains
    /// only, case-insensitively, with any port, and the longest domain
    /// wins; everything else is path style.
    #[test]
    fn virtual_hosted_style() {
        const GET: Endpoint = Endpoint::GetObject {
            part_number: None,
            version_id: None,
        };
        const LIST: Endpoint = Endpoint::ListObjects;
        #[rustfmt::skip]
        let cases: &[VirtualHostCase] = &[
            ("bucket.s3.localhost:9000", "/key", Some("bucket"), Some("key"), GET),
            ("bucket.s3.localhost", "/key", Some("bucket"), Some("key"), GET),
            ("my.dotted.bucket.localhost", "/key", Some("my.dotted.bucket"), Some("key"), GET),
            ("my.dotted.bucket.localhost:80", "/", Some("my.dotted.bucket"), None, LIST),
            ("Bucket.S3.LocalHost:9000", "/Key", Some("bucket"), Some("Key"), GET),
            ("bucket.s3.localhost.", "/key", Some("bucket"), Some("key"), GET),
            ("bucket.s3.localhost", "/bucket/key", Some("bucket"), Some("bucket/key"), GET),
            ("bucket.s3.localhost", "//key", Some("bucket"), Some("/key"), GET),
            // Path style: a domain itself, IPs, unknown names, no name.
            ("s3.localhost:9000", "/b1/key", Some("b1"), Some("key"), GET),
            ("S3.LOCALHOST", "/b1/key", Some("b1"), Some("key"), GET),
            ("localhost", "/b1/key", Some("b1"), Some("key"), GET),
            ("127.0.0.1:9000", "/b1/key", Some("b1"), Some("key"), GET),
            ("[::1]:9000", "/b1/key", Some("b1"), Some("key"), GET),
            ("[::1]", "/", None, None, Endpoint::ListBuckets),
            ("bucket.example.com", "/b1/key", Some("b1"), Some("key"), GET),
            ("notlocalhost", "/b1/key", Some("b1"), Some("key"), GET),
            (".localhost", "/b1/key", Some("b1"), Some("key"), GET),
            ("", "/b1/key", Some("b1"), Some("key"), GET),
        ];
        let no_headers = HeaderMap::new();
        for (host, path, bucket, key, endpoint) in cases {
            let routed = route(&config(), &Method::GET, Some(host), path, None, &no_headers)
                .unwrap_or_else(|error| panic!("{host} {path}: {error}"));
            assert_eq!(routed.bucket.as_deref(), *bucket, "{host} {path}");
            assert_eq!(routed.key.as_deref(), *key, "{host} {path}");
            assert_eq!(&routed.endpoint, endpoint, "{host} {path}");
        }
        let routed = route(&config(), &Method::GET, None, "/", None, &no_headers).expect("no Host");
        assert_eq!(routed.endpoint, Endpoint::ListBuckets);

        // Domains are normalized: case and surrounding dots do not matter.
        let cfg = RouterConfig {
            domains: vec![".S3.Example.COM.".to_owned(), String::new()],
        };
        let routed = route(
            &cfg,
            &Method::HEAD,
            Some("b2.s3.example.com"),
            "/",
            None,
            &no_headers,
        )
        .expect("virtual-hosted");
        assert_eq!(routed.endpoint, Endpoint::HeadBucket);
        assert_eq!(routed.bucket.as_deref(), Some("b2"));

        // A virtual-hosted bucket gets the same shape check as a path one.
        let result = route(
            &config(),
            &Method::GET,
            Some("b~x.localhost"),
            "/",
            None,
            &no_headers,
        );
        assert_eq!(must_fail(result, "b~x").code(), "InvalidBucketName");
        let long = format!("{}.localhost", "b".repeat(BUCKET_NAME_BYTES_MAX + 1));
        let result = route(&config(), &Method::GET, Some(&long), "/", None, &no_headers);
        assert_eq!(must_fail(result, "long").code(), "InvalidBucketName");
    }

    /// Goal: the copy-source header decides between the plain and the copy
    /// operation, for a PUT without sub-resource only, whatever its value.
    #[test]
    fn copy_source_header_selects_copy_operations() {
        let routed = route_target("PUT", None, "/b1/k", true).expect("copy");
        assert_eq!(routed.endpoint, Endpoint::CopyObject);
        let routed =
            route_target("PUT", None, "/b1/k?partNumber=7&uploadId=u", true).expect("part");
        let expected = Endpoint::UploadPartCopy {
            part_number: 7,
            upload_id: id("u"),
        };
        assert_eq!(routed.endpoint, expected);
        let routed = route_target("PUT", None, "/b1", true).expect("create bucket");
        assert_eq!(routed.endpoint, Endpoint::CreateBucket);
        let routed = route_target("PUT", None, "/b1/k?tagging", true).expect("tagging");
        assert_eq!(
            routed.endpoint,
            Endpoint::PutObjectTagging { version_id: None }
        );
        let mut empty = HeaderMap::new();
        empty.insert(COPY_SOURCE_HEADER, HeaderValue::from_static(""));
        let routed = route(&config(), &Method::PUT, None, "/b1/k", None, &empty).expect("empty");
        assert_eq!(
            routed.endpoint,
            Endpoint::CopyObject,
            "the handler rejects the value"
        );
    }

    /// Goal: sub-resources are valueless whatever the client sends, and
    /// the parameters the router reads are decoded like any other.
    #[test]
    fn query_forms() {
        let complete = |upload_id: &str| Endpoint::CompleteMultipartUpload {
            upload_id: id(upload_id),
        };
        #[rustfmt::skip]
        let cases: &[(&str, Endpoint)] = &[
            ("/b1/k?uploads", Endpoint::CreateMultipartUpload),
            ("/b1/k?uploads=", Endpoint::CreateMultipartUpload),
            ("/b1/k?uploads=ignored", Endpoint::CreateMultipartUpload),
            ("/b1/k?%75ploads", Endpoint::CreateMultipartUpload),
            ("/b1/k?&&uploads&&", Endpoint::CreateMultipartUpload),
            ("/b1/k?uploadId=a%2Bb%3D%3D", complete("a+b==")),
            ("/b1/k?uploadId=a+b", complete("a b")),
            ("/b1/k?uploadId", complete("")),
        ];
        for (target, endpoint) in cases {
            let routed = route_both_styles("POST", target, false)
                .unwrap_or_else(|error| panic!("{target}: {error}"));
            assert_eq!(&routed.endpoint, endpoint, "{target}");
        }
        let routed =
            route_both_styles("GET", "/b1/k?partNumber=007&versionId=v%2B1", false).expect("GET");
        let expected = Endpoint::GetObject {
            part_number: Some(7),
            version_id: Some(id("v+1")),
        };
        assert_eq!(routed.endpoint, expected);
        let routed = route_both_styles(
            "GET",
            "/b1?list-type=2&prefix=a+b&x-id=ListObjectsV2",
            false,
        )
        .expect("ListObjectsV2");
        assert_eq!(routed.endpoint, Endpoint::ListObjectsV2);
    }

    #[test]
    fn query_pairs_decodes_as_a_form() {
        let query =
            "prefix=a+b%2Bc&delimiter=%2F&uploads&&max-keys=5&empty=&a=b=c&%C3%A9=%E2%82%AC";
        let pairs: Vec<(String, String)> = query_pairs(query)
            .map(|(name, value)| (name.into_owned(), value.into_owned()))
            .collect();
        #[rustfmt::skip]
        let expected = [
            ("prefix", "a b+c"), ("delimiter", "/"), ("uploads", ""), ("max-keys", "5"),
            ("empty", ""), ("a", "b=c"), ("é", "€"),
        ];
        let expected: Vec<(String, String)> = expected
            .iter()
            .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
            .collect();
        assert_eq!(pairs, expected);
        let first = query_pairs("plain=value").next();
        assert!(
            matches!(first, Some((Cow::Borrowed(_), Cow::Borrowed(_)))),
            "no copy"
        );
        assert_eq!(query_pairs("").count(), 0);
        // Input that route() would refuse is decoded lossily; no panic.
        let lossy: Vec<_> = query_pairs("a=%zz&b=%FF&c=%").collect();
        assert_eq!(lossy[0].1, "%zz");
        assert_eq!(lossy[1].1, "\u{FFFD}");
        assert_eq!(lossy[2].1, "%");
    }

    /// Goal: `SigV2` signs every sub-resource the router routes on, so that
    /// none can be added to a `SigV2`-signed request to change its
    /// operation (`auth/` may not import the router, so the lists are kept
    /// in step here).
    #[test]
    fn sigv2_signs_every_sub_resource() {
        for (name, _) in SUB_RESOURCES {
            assert!(
                crate::auth::sigv2::SIGNED_SUB_RESOURCES.contains(name),
                "{name} is routed on but not signed by SigV2"
            );
        }
        for name in ["uploadId", "partNumber", "versionId"] {
            assert!(crate::auth::sigv2::SIGNED_SUB_RESOURCES.contains(&name));
        }
    }

    /// Goal: the query the signature covers is the query the handlers read.
    /// Method: for queries mixing `+`, `%2B`, `%20` and other escapes, the
    /// `SigV4` canonical query must equal the pairs of [`query_pairs`]
    /// re-encoded and sorted, so no parameter can mean one thing to the
    /// signature check and another to a handler.
    #[test]
    fn query_pairs_and_the_signed_query_decode_alike() {
        use crate::auth::sigv4::{canonical_query_string, uri_encode};
        for query in [
            "prefix=a+b",
            "prefix=a%2Bb",
            "prefix=a%2bb+c%20d&delimiter=%2F",
            "k%2B+x=1&k++x=2",
            "response-content-type=text%2Fplain+x&versionId=v%2B1",
            "uploads&uploadId=+",
            "a=b=c&%C3%A9=%E2%82%AC+",
        ] {
            let mut pairs: Vec<(Vec<u8>, Vec<u8>)> = query_pairs(query)
                .map(|(name, value)| {
                    let (mut encoded_name, mut encoded_value) = (Vec::new(), Vec::new());
                    uri_encode(&mut encoded_name, name.as_bytes(), true);
                    uri_encode(&mut encoded_value, value.as_bytes(), true);
                    (encoded_name, encoded_value)
                })
                .collect();
            pairs.sort_unstable();
            let expected: Vec<Vec<u8>> = pairs
                .into_iter()
                .map(|(name, value)| [name, b"=".to_vec(), value].concat())
                .collect();
            assert_eq!(
                String::from_utf8(canonical_query_string(query, false)).unwrap(),
                String::from_utf8(expected.join(&b'&')).unwrap(),
                "{query}"
            );
        }
    }

    /// Goal: every form of `x-amz-copy-source` that clients send parses to
    /// the same (bucket, key, version), decoded once.
    #[test]
    fn copy_source_forms() {
        #[rustfmt::skip]
        let cases: &[(&str, &str, &str, Option<&str>)] = &[
            ("/source-bucket/source-key", "source-bucket", "source-key", None),
            ("source-bucket/source-key", "source-bucket", "source-key", None),
            ("/b1/dir/sub/key.txt", "b1", "dir/sub/key.txt", None),
            ("b1/a%20b%2Bc+d", "b1", "a b+c+d", None),
            ("b1/caf%C3%A9/%E2%82%AC", "b1", "café/€", None),
            ("b1/café", "b1", "café", None),
            ("b1/a%3Fb", "b1", "a?b", None),
            ("b1//double//slash/", "b1", "/double//slash/", None),
            ("b1/..", "b1", "..", None),
            ("b1/line%0Abreak", "b1", "line\nbreak", None),
            ("/b1/key?versionId=3HL4kqtJlcpXroDTDmjVBH40Nrjfkd", "b1", "key", Some("3HL4kqtJlcpXroDTDmjVBH40Nrjfkd")),
            ("b1/key?versionId=a%2Bb", "b1", "key", Some("a+b")),
            ("b1/key?versionId=3/L4kqtJlcpXroDTDmJ+rmSpXd3dIbrHY+MTRCxf3vjVBH40Nr8X8gdRQBpUMLUo", "b1", "key", Some("3/L4kqtJlcpXroDTDmJ+rmSpXd3dIbrHY+MTRCxf3vjVBH40Nr8X8gdRQBpUMLUo")),
            ("b1/key?versionId=null", "b1", "key", Some("null")),
            ("b1/key?", "b1", "key", None),
            ("my.dotted.bucket/key", "my.dotted.bucket", "key", None),
            ("%62%31/key", "b1", "key", None),
        ];
        for &(value, bucket, key, version_id) in cases {
            let parsed =
                parse_copy_source(value).unwrap_or_else(|error| panic!("{value}: {error}"));
            let expected = (
                bucket.to_owned(),
                key.to_owned(),
                version_id.map(str::to_owned),
            );
            assert_eq!(parsed, expected, "{value}");
        }
        let at_limit = format!("b1/{}", "k".repeat(KEY_BYTES_MAX));
        assert!(parse_copy_source(&at_limit).is_ok());
    }

    #[test]
    fn copy_source_errors() {
        #[rustfmt::skip]
        let cases: &[&str] = &[
            "", "/", "b1", "/b1", "b1/", "//b1/key", "b%20x/key", "b1/a%zz", "b1/a%FF",
            "b1/key?versionId=", "b1/key?versionId", "b1/key?versionId=a&versionId=b",
            "b1/key?partNumber=1", "b1/key?versionId=%",
            "arn:aws:s3:us-west-2:123456789012:accesspoint/my-ap/object/key",
        ];
        for &value in cases {
            let error = parse_copy_source(value).expect_err(value);
            let RouteError::InvalidArgument {
                name,
                value: argument,
                ..
            } = &error
            else {
                panic!("{value:?}: {error:?}")
            };
            assert_eq!((*name, argument.as_str()), (COPY_SOURCE_HEADER, value));
            assert_eq!(error.status(), StatusCode::BAD_REQUEST);
        }
        let over = format!("b1/{}", "k".repeat(KEY_BYTES_MAX + 1));
        let expected = RouteError::KeyTooLongError {
            key_len: KEY_BYTES_MAX + 1,
        };
        assert_eq!(parse_copy_source(&over), Err(expected));
    }

    #[test]
    fn error_codes_statuses_and_messages() {
        let not_allowed = RouteError::MethodNotAllowed {
            method: Method::PATCH,
            resource_type: ResourceType::Object,
        };
        let cases = [
            (RouteError::InvalidURI, "InvalidURI", 400),
            (
                RouteError::InvalidBucketName {
                    bucket: "a b".to_owned(),
                },
                "InvalidBucketName",
                400,
            ),
            (
                RouteError::KeyTooLongError { key_len: 1025 },
                "KeyTooLongError",
                400,
            ),
            (
                RouteError::invalid_argument("partNumber", "0", "bad"),
                "InvalidArgument",
                400,
            ),
            (not_allowed, "MethodNotAllowed", 405),
        ];
        for (error, code, status) in cases {
            assert_eq!(error.code(), code);
            assert_eq!(error.status().as_u16(), status);
            assert!(!error.message().is_empty());
            assert_eq!(error.to_string(), format!("{code}: {}", error.message()));
        }
    }

    /// Goal: the sub-resource table and its enum agree both ways.
    #[test]
    fn sub_resource_spellings_round_trip() {
        for &(spelling, sub_resource) in SUB_RESOURCES {
            assert_eq!(SubResource::from_name(spelling), Some(sub_resource));
            assert_eq!(sub_resource.name(), spelling);
        }
        let unique: BTreeSet<_> = SUB_RESOURCES.iter().map(|(spelling, _)| spelling).collect();
        assert_eq!(unique.len(), SUB_RESOURCES.len());
        assert_eq!(
            SubResource::from_name("Tagging"),
            None,
            "sub-resources are case-sensitive"
        );
    }
}
