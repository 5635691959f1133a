//! `S3Error`: the only error a client ever sees.
//!
//! Every failure that reaches a client is turned into one of these: an
//! [`S3ErrorCode`] (which fixes the `<Code>` string and the HTTP status, each
//! in one table-like `match`), a message, and the resource it concerns. The
//! XML body is rendered in exactly one function, [`S3Error::to_xml`], covered
//! by a golden-string test.
//!
//! Lower layers have their own small error enums (`http::ParseError`,
//! `auth::AuthError`, ...), each naming the S3 code it stands for; their
//! `From` conversions into `S3Error` sit next to them (this module is the
//! ground floor and imports none of them), and the storage engine's are in
//! `s3`, which decides what a storage failure means to a client. A failure
//! the client cannot act on becomes `InternalError`; its cause is logged by
//! the server, never sent.
//!
//! Reference: <https://docs.aws.amazon.com/AmazonS3/latest/API/ErrorResponses.html>

use std::fmt::{self, Write as _};

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
    /// Every code, for [`Self::from_name`].
    pub const ALL: [S3ErrorCode; 44] = [
        Self::AccessDenied,
        Self::AuthorizationHeaderMalformed,
        Self::AuthorizationQueryParametersError,
        Self::BadDigest,
        Self::BucketAlreadyExists,
        Self::BucketAlreadyOwnedByYou,
        Self::BucketNotEmpty,
        Self::EntityTooLarge,
        Self::EntityTooSmall,
        Self::MetadataTooLarge,
        Self::IncompleteBody,
        Self::InternalError,
        Self::InvalidAccessKeyId,
        Self::InvalidArgument,
        Self::InvalidBucketName,
        Self::InvalidDigest,
        Self::InvalidLocationConstraint,
        Self::InvalidPart,
        Self::InvalidPartOrder,
        Self::InvalidPartNumber,
        Self::InvalidRange,
        Self::InvalidRequest,
        Self::InvalidURI,
        Self::KeyTooLongError,
        Self::MalformedXML,
        Self::MethodNotAllowed,
        Self::MissingContentLength,
        Self::NoSuchBucket,
        Self::NoSuchKey,
        Self::NoSuchUpload,
        Self::NoSuchVersion,
        Self::NotImplemented,
        Self::OperationAborted,
        Self::PreconditionFailed,
        Self::RequestHeaderSectionTooLarge,
        Self::RequestTimeTooSkewed,
        Self::RequestTimeout,
        Self::ServiceUnavailable,
        Self::SignatureDoesNotMatch,
        Self::SlowDown,
        Self::TooManyBuckets,
        Self::UriTooLong,
        Self::XAmzContentSHA256Mismatch,
        Self::XMinioStorageFull,
    ];

    /// The code `name` spells ([`Self::as_str`]), if there is one. Lower
    /// layers name their S3 code as a string so that they stay free of this
    /// crate's types (they are built and tested on their own).
    #[must_use]
    pub fn from_name(name: &str) -> Option<S3ErrorCode> {
        Self::ALL.into_iter().find(|code| code.as_str() == name)
    }

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

    /// An error a lower layer names by its code (see
    /// [`S3ErrorCode::from_name`]). A name this crate does not know is
    /// `InvalidRequest`, S3's generic 400; each layer's tests check that
    /// its names are known.
    #[must_use]
    pub fn named(code: &str, message: impl Into<String>) -> Self {
        Self::new(
            S3ErrorCode::from_name(code).unwrap_or(S3ErrorCode::InvalidRequest),
            message,
        )
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
        escape_into(&mut out, &self.message);
        out.push_str("</Message>");
        for (element, text) in &self.extra {
            out.push('<');
            out.push_str(element);
            out.push('>');
            escape_into(&mut out, text);
            out.push_str("</");
            out.push_str(element);
            out.push('>');
        }
        out.push_str("<Resource>");
        escape_into(&mut out, &self.resource);
        out.push_str("</Resource><RequestId>");
        escape_into(&mut out, request_id);
        out.push_str("</RequestId></Error>");
        out
    }
}

/// Append `text` to `out`, escaped for XML element content and attribute
/// values. Carriage returns and control characters are written as numeric
/// character references so that a parser gives back exactly the same key
/// (a literal CR would be normalized away by any XML parser).
pub fn escape_into(out: &mut String, text: &str) {
    let mut last = 0;
    for (index, byte) in text.bytes().enumerate() {
        let replacement = match byte {
            b'&' => "&amp;",
            b'<' => "&lt;",
            b'>' => "&gt;",
            b'"' => "&quot;",
            b'\'' => "&apos;",
            b'\r' => "&#13;",
            b'\t' | b'\n' => continue,
            0..=0x1f => {
                out.push_str(&text[last..index]);
                let _ = write!(out, "&#{byte};");
                last = index + 1;
                continue;
            }
            _ => continue,
        };
        out.push_str(&text[last..index]);
        out.push_str(replacement);
        last = index + 1;
    }
    out.push_str(&text[last..]);
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
    fn every_code_is_found_by_its_name() {
        for code in S3ErrorCode::ALL {
            assert_eq!(S3ErrorCode::from_name(code.as_str()), Some(code));
        }
        assert_eq!(S3ErrorCode::from_name("NoSuchThing"), None);
        assert_eq!(
            S3Error::named("NoSuchThing", "x").code,
            S3ErrorCode::InvalidRequest
        );
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
