//! `S3Error`: the only error a client ever sees.
//!
//! Every failure that reaches a client is turned into one of these: an
//! [`S3ErrorCode`] (which fixes the `<Code>` string and the HTTP status, each
//! in one table-like `match`), a message, and the resource it concerns. The
//! XML body is rendered in exactly one function, [`S3Error::to_xml`], covered
//! by a golden-string test.
//!
//! Lower layers have their own small error enums (`http::ParseError`,
//! `auth::AuthError`, ...); the `From` conversions into `S3Error` live at the
//! bottom of this file so that the mapping of internal failures to S3 codes
//! can be read in one place. A failure the client cannot act on becomes
//! `InternalError`; its cause is logged by the server, never sent.
//!
//! Reference: <https://docs.aws.amazon.com/AmazonS3/latest/API/ErrorResponses.html>

use std::fmt;

use http::StatusCode;

/// The S3 error codes ringstore sends, named exactly as AWS names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum S3ErrorCode {
    AccessDenied,
    AuthorizationHeaderMalformed,
    AuthorizationQueryParametersError,
    BadDigest,
    BucketAlreadyExists,
    BucketAlreadyOwnedByYou,
    BucketNotEmpty,
    EntityTooLarge,
    EntityTooSmall,
    MetadataTooLarge,
    IncompleteBody,
    InternalError,
    InvalidAccessKeyId,
    InvalidArgument,
    InvalidBucketName,
    InvalidDigest,
    InvalidLocationConstraint,
    InvalidPart,
    InvalidPartOrder,
    InvalidPartNumber,
    InvalidRange,
    InvalidRequest,
    InvalidURI,
    KeyTooLongError,
    MalformedXML,
    MethodNotAllowed,
    MissingContentLength,
    NoSuchBucket,
    NoSuchKey,
    NoSuchUpload,
    NoSuchVersion,
    NotImplemented,
    OperationAborted,
    PreconditionFailed,
    RequestHeaderSectionTooLarge,
    RequestTimeTooSkewed,
    RequestTimeout,
    ServiceUnavailable,
    SignatureDoesNotMatch,
    SlowDown,
    TooManyBuckets,
    UriTooLong,
    XAmzContentSHA256Mismatch,
    /// Not an AWS code: `MinIO`'s, for a full disk, which S3 tools already
    /// know (`507 Insufficient Storage`).
    XMinioStorageFull,
}

impl S3ErrorCode {
    /// The `<Code>` element, exactly as AWS spells it.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::AccessDenied => "AccessDenied",
            Self::AuthorizationHeaderMalformed => "AuthorizationHeaderMalformed",
            Self::AuthorizationQueryParametersError => "AuthorizationQueryParametersError",
            Self::BadDigest => "BadDigest",
            Self::BucketAlreadyExists => "BucketAlreadyExists",
            Self::BucketAlreadyOwnedByYou => "BucketAlreadyOwnedByYou",
            Self::BucketNotEmpty => "BucketNotEmpty",
            Self::EntityTooLarge => "EntityTooLarge",
            Self::EntityTooSmall => "EntityTooSmall",
            Self::MetadataTooLarge => "MetadataTooLarge",
            Self::IncompleteBody => "IncompleteBody",
            Self::InternalError => "InternalError",
            Self::InvalidAccessKeyId => "InvalidAccessKeyId",
            Self::InvalidArgument => "InvalidArgument",
            Self::InvalidBucketName => "InvalidBucketName",
            Self::InvalidDigest => "InvalidDigest",
            Self::InvalidLocationConstraint => "InvalidLocationConstraint",
            Self::InvalidPart => "InvalidPart",
            Self::InvalidPartOrder => "InvalidPartOrder",
            Self::InvalidPartNumber => "InvalidPartNumber",
            Self::InvalidRange => "InvalidRange",
            Self::InvalidRequest => "InvalidRequest",
            Self::InvalidURI => "InvalidURI",
            Self::KeyTooLongError => "KeyTooLongError",
            Self::MalformedXML => "MalformedXML",
            Self::MethodNotAllowed => "MethodNotAllowed",
            Self::MissingContentLength => "MissingContentLength",
            Self::NoSuchBucket => "NoSuchBucket",
            Self::NoSuchKey => "NoSuchKey",
            Self::NoSuchUpload => "NoSuchUpload",
            Self::NoSuchVersion => "NoSuchVersion",
            Self::NotImplemented => "NotImplemented",
            Self::OperationAborted => "OperationAborted",
            Self::PreconditionFailed => "PreconditionFailed",
            Self::RequestHeaderSectionTooLarge => "RequestHeaderSectionTooLarge",
            Self::RequestTimeTooSkewed => "RequestTimeTooSkewed",
            Self::RequestTimeout => "RequestTimeout",
            Self::ServiceUnavailable => "ServiceUnavailable",
            Self::SignatureDoesNotMatch => "SignatureDoesNotMatch",
            Self::SlowDown => "SlowDown",
            Self::TooManyBuckets => "TooManyBuckets",
            Self::UriTooLong => "UriTooLong",
            Self::XAmzContentSHA256Mismatch => "XAmzContentSHA256Mismatch",
            Self::XMinioStorageFull => "XMinioStorageFull",
        }
    }

    /// The HTTP status AWS sends with this code.
    #[must_use]
    pub fn status(self) -> StatusCode {
        match self {
            Self::AuthorizationHeaderMalformed
            | Self::AuthorizationQueryParametersError
            | Self::BadDigest
            | Self::EntityTooLarge
            | Self::EntityTooSmall
            | Self::MetadataTooLarge
            | Self::IncompleteBody
            | Self::InvalidArgument
            | Self::InvalidBucketName
            | Self::InvalidDigest
            | Self::InvalidLocationConstraint
            | Self::InvalidPart
            | Self::InvalidPartOrder
            | Self::InvalidRequest
            | Self::InvalidURI
            | Self::KeyTooLongError
            | Self::MalformedXML
            | Self::RequestHeaderSectionTooLarge
            | Self::RequestTimeout
            | Self::TooManyBuckets
            | Self::XAmzContentSHA256Mismatch => StatusCode::BAD_REQUEST,
            Self::AccessDenied
            | Self::InvalidAccessKeyId
            | Self::RequestTimeTooSkewed
            | Self::SignatureDoesNotMatch => StatusCode::FORBIDDEN,
            Self::NoSuchBucket | Self::NoSuchKey | Self::NoSuchUpload | Self::NoSuchVersion => {
                StatusCode::NOT_FOUND
            }
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::BucketAlreadyExists
            | Self::BucketAlreadyOwnedByYou
            | Self::BucketNotEmpty
            | Self::OperationAborted => StatusCode::CONFLICT,
            Self::MissingContentLength => StatusCode::LENGTH_REQUIRED,
            Self::PreconditionFailed => StatusCode::PRECONDITION_FAILED,
            Self::InvalidRange | Self::InvalidPartNumber => StatusCode::RANGE_NOT_SATISFIABLE,
            Self::UriTooLong => StatusCode::URI_TOO_LONG,
            Self::InternalError => StatusCode::INTERNAL_SERVER_ERROR,
            Self::NotImplemented => StatusCode::NOT_IMPLEMENTED,
            Self::ServiceUnavailable | Self::SlowDown => StatusCode::SERVICE_UNAVAILABLE,
            Self::XMinioStorageFull => StatusCode::INSUFFICIENT_STORAGE,
        }
    }
}

impl fmt::Display for S3ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An error as the client will see it, plus (for the log only) its cause.
#[derive(Debug)]
pub struct S3Error {
    pub code: S3ErrorCode,
    pub message: String,
    /// The bucket or object the request named, as `/bucket/key`; filled in
    /// by the connection before the error is rendered if still empty.
    pub resource: String,
    /// Extra elements AWS adds for some codes (for example `<Region>` or
    /// `<BucketName>`), as (element, text) pairs, escaped at render time.
    pub extra: Vec<(&'static str, String)>,
    /// Response headers AWS sends with this error (for example
    /// `Content-Range` with `InvalidRange`).
    pub headers: Vec<(http::HeaderName, http::HeaderValue)>,
    /// The internal cause, logged and never sent.
    pub source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl S3Error {
    #[must_use]
    pub fn new(code: S3ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            resource: String::new(),
            extra: Vec::new(),
            headers: Vec::new(),
            source: None,
        }
    }

    /// An `InternalError` whose cause is kept for the log.
    #[must_use]
    pub fn internal(source: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        let mut error = Self::new(
            S3ErrorCode::InternalError,
            "We encountered an internal error. Please try again.",
        );
        error.source = Some(source.into());
        error
    }

    #[must_use]
    pub fn with_resource(mut self, resource: impl Into<String>) -> Self {
        self.resource = resource.into();
        self
    }

    #[must_use]
    pub fn with_extra(mut self, element: &'static str, text: impl Into<String>) -> Self {
        self.extra.push((element, text.into()));
        self
    }

    /// The one place the S3 error document is rendered.
    #[must_use]
    pub fn to_xml(&self, request_id: &str) -> String {
        let mut out = String::with_capacity(256);
        out.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>");
        out.push_str(self.code.as_str());
        out.push_str("</Code><Message>");
        crate::s3::xml::escape_into(&mut out, &self.message);
        out.push_str("</Message>");
        for (element, text) in &self.extra {
            out.push('<');
            out.push_str(element);
            out.push('>');
            crate::s3::xml::escape_into(&mut out, text);
            out.push_str("</");
            out.push_str(element);
            out.push('>');
        }
        out.push_str("<Resource>");
        crate::s3::xml::escape_into(&mut out, &self.resource);
        out.push_str("</Resource><RequestId>");
        crate::s3::xml::escape_into(&mut out, request_id);
        out.push_str("</RequestId></Error>");
        out
    }
}

impl fmt::Display for S3Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)?;
        if let Some(source) = &self.source {
            write!(f, " ({source})")?;
        }
        Ok(())
    }
}

impl std::error::Error for S3Error {}

/// Build an [`S3Error`]: `s3_error!(NoSuchBucket, "The specified bucket does not exist")`.
#[macro_export]
macro_rules! s3_error {
    ($code:ident, $($message:tt)+) => {
        $crate::error::S3Error::new($crate::error::S3ErrorCode::$code, format!($($message)+))
    };
}

// ---------------------------------------------------------------------------
// Conversions from the per-layer error enums. Keep them all here.
// ---------------------------------------------------------------------------

impl From<crate::auth::AuthError> for S3Error {
    fn from(error: crate::auth::AuthError) -> Self {
        let code = match error.code() {
            "AccessDenied" => S3ErrorCode::AccessDenied,
            "InvalidAccessKeyId" => S3ErrorCode::InvalidAccessKeyId,
            "SignatureDoesNotMatch" => S3ErrorCode::SignatureDoesNotMatch,
            "AuthorizationHeaderMalformed" => S3ErrorCode::AuthorizationHeaderMalformed,
            "AuthorizationQueryParametersError" => S3ErrorCode::AuthorizationQueryParametersError,
            "RequestTimeTooSkewed" => S3ErrorCode::RequestTimeTooSkewed,
            "XAmzContentSHA256Mismatch" => S3ErrorCode::XAmzContentSHA256Mismatch,
            "IncompleteBody" => S3ErrorCode::IncompleteBody,
            "InvalidArgument" => S3ErrorCode::InvalidArgument,
            "NotImplemented" => S3ErrorCode::NotImplemented,
            _ => S3ErrorCode::InvalidRequest,
        };
        S3Error::new(code, error.message().to_owned())
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
                    S3ErrorCode::XMinioStorageFull,
                    "Storage is full: new object data is refused to keep room for deletes \
                     and compaction. Delete objects or free disk space, then try again.",
                );
                error.source = Some(why.into());
                error
            }
            ShardError::Storage(StorageError::PreviousIo) => S3Error::new(
                S3ErrorCode::ServiceUnavailable,
                "The storage this key is on failed a write and takes no more writes until \
                 the server restarts; reads still work.",
            ),
            ShardError::Storage(StorageError::Busy(cause)) => {
                let mut error =
                    S3Error::new(S3ErrorCode::SlowDown, "Please reduce your request rate.");
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

impl From<crate::http::request::ParseError> for S3Error {
    fn from(error: crate::http::request::ParseError) -> Self {
        let (code, message) = error.s3_error();
        S3Error::new(s3_code_from_str(code), message)
    }
}

impl From<crate::http::body::BodyError> for S3Error {
    fn from(error: crate::http::body::BodyError) -> Self {
        let (code, message) = error.s3_error();
        S3Error::new(s3_code_from_str(code), message)
    }
}

impl From<crate::s3::router::RouteError> for S3Error {
    fn from(error: crate::s3::router::RouteError) -> Self {
        S3Error::new(s3_code_from_str(error.code()), error.message().to_owned())
    }
}

/// Lower layers name their S3 code as a string so that they stay free of
/// this crate's types (they are built and tested on their own); map it back.
/// An unknown name is a programming error caught by the test below.
fn s3_code_from_str(code: &str) -> S3ErrorCode {
    match code {
        "AccessDenied" => S3ErrorCode::AccessDenied,
        "BadDigest" => S3ErrorCode::BadDigest,
        "EntityTooLarge" => S3ErrorCode::EntityTooLarge,
        "IncompleteBody" => S3ErrorCode::IncompleteBody,
        "InvalidArgument" => S3ErrorCode::InvalidArgument,
        "InvalidBucketName" => S3ErrorCode::InvalidBucketName,
        "InvalidURI" => S3ErrorCode::InvalidURI,
        "KeyTooLongError" => S3ErrorCode::KeyTooLongError,
        "MalformedXML" => S3ErrorCode::MalformedXML,
        "MethodNotAllowed" => S3ErrorCode::MethodNotAllowed,
        "MissingContentLength" => S3ErrorCode::MissingContentLength,
        "NotImplemented" => S3ErrorCode::NotImplemented,
        "RequestHeaderSectionTooLarge" => S3ErrorCode::RequestHeaderSectionTooLarge,
        "RequestTimeout" => S3ErrorCode::RequestTimeout,
        "UriTooLong" => S3ErrorCode::UriTooLong,
        // "InvalidRequest", and any code a lower layer names that this
        // table does not know: S3's generic 400.
        _ => S3ErrorCode::InvalidRequest,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_xml_golden() {
        let error = s3_error!(NoSuchBucket, "The specified bucket does not exist")
            .with_resource("/a&b")
            .with_extra("BucketName", "a&b");
        assert_eq!(
            error.to_xml("0000000000000001"),
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>NoSuchBucket</Code>\
             <Message>The specified bucket does not exist</Message>\
             <BucketName>a&amp;b</BucketName><Resource>/a&amp;b</Resource>\
             <RequestId>0000000000000001</RequestId></Error>"
        );
        assert_eq!(error.code.status(), StatusCode::NOT_FOUND);
    }

    #[test]
    fn internal_error_hides_its_cause() {
        let error = S3Error::internal(std::io::Error::other("disk on fire"));
        let xml = error.to_xml("1");
        assert!(!xml.contains("disk on fire"));
        assert!(xml.contains("<Code>InternalError</Code>"));
        assert!(error.to_string().contains("disk on fire"));
    }
}
