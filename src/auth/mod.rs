//! Authentication: AWS Signature Version 4 and Version 2, exactly as S3
//! checks them.
//!
//! This module decides who sent a request, or refuses it with the error S3
//! would send. It also decodes the `aws-chunked` body framing, because the
//! chunk signatures in that framing continue the chain the request signature
//! starts. It does not own routing, per-bucket permissions, reading bytes from
//! the network, object checksums (`x-amz-checksum-*`, the trailers are only
//! handed over), or rendering errors as XML (`crate::error` maps [`AuthError`]
//! through [`AuthError::code`] and [`AuthError::status`]).
//!
//! Everything here is pure computation: no I/O, no async and no clock (the
//! caller passes `now`). That keeps every rule testable against AWS's
//! published example vectors, and lets the body decoder be fed bytes split
//! anywhere, which is how the network delivers them.
//!
//! ```text
//! request head ─► authenticate(RequestView, CredentialStore, region, now, SigningKeyCache)
//!   ├─ Authorization: AWS4-HMAC-SHA256 …         authorization.rs (header form, ±15 min skew)
//!   ├─ ?X-Amz-Algorithm=…&X-Amz-Signature=…      presigned.rs (query form, X-Amz-Date + X-Amz-Expires)
//!   ├─ Authorization: AWS AKID:signature         sigv2.rs (HMAC-SHA1; Date or x-amz-date, ±15 min skew)
//!   ├─ ?AWSAccessKeyId=…&Expires=…&Signature=…   sigv2.rs (valid until Expires)
//!   │     └─► Authenticated { access_key_id, payload: Unsigned }  (SigV2 signs no body;
//!   │           a sent x-amz-content-sha256 is signed and still honoured, see sigv2.rs)
//!   ├─ more than one of the forms                InvalidArgument
//!   └─ none                                      AccessDenied (no anonymous access)
//!         │ both SigV4 forms:
//!         │  credential scope AKID/YYYYMMDD/<region>/s3/aws4_request checked
//!         │  host and every x-amz-* header must be signed
//!         │  signing key = HMAC chain over date/region/service     sigv4.rs (cached per core)
//!         │  canonical request → string to sign → signature, compared in constant time
//!         ▼
//! Authenticated { access_key_id, payload }   payload from x-amz-content-sha256 (payload.rs):
//!   ├─ Unsigned                   body used as is
//!   ├─ Sha256(h)                  server hashes the body; mismatch → XAmzContentSHA256Mismatch
//!   ├─ StreamingSigned{seed,..}   AwsChunkedDecoder::new(Signed(seed), trailer)   chunked.rs
//!   └─ StreamingUnsignedTrailer   AwsChunkedDecoder::new(Unsigned, true)
//! ```
//!
//! Three choices differ from generic SigV4 and follow S3:
//! - The canonical URI is the path as the client sent it: S3 encodes object
//!   keys once, and does not normalize `//`, `.` or `..` (they are valid key
//!   bytes). Some clients send characters raw that they percent-encoded when
//!   signing, so a failed check is retried once with the path decoded and
//!   re-encoded by AWS's rules (see [`sigv4::verify_signature`]).
//! - A valueless query parameter (`?uploads`) signs as `uploads=`.
//! - The query is decoded as a form, as S3 and the router read it: a raw
//!   `+` is a space and signs as `%20`, while `%2B` is a plus and signs as
//!   `%2B` ([`sigv4::decode_query_component`]). So a parameter cannot
//!   change meaning in transit without breaking the signature.
//!
//! Specifications:
//! - <https://docs.aws.amazon.com/AmazonS3/latest/API/RESTAuthentication.html> (SigV2)
//! - <https://docs.aws.amazon.com/AmazonS3/latest/API/sig-v4-authenticating-requests.html>
//! - <https://docs.aws.amazon.com/AmazonS3/latest/API/sig-v4-header-based-auth.html>
//! - <https://docs.aws.amazon.com/AmazonS3/latest/API/sigv4-query-string-auth.html>
//! - <https://docs.aws.amazon.com/AmazonS3/latest/API/sigv4-streaming.html>
//! - <https://docs.aws.amazon.com/AmazonS3/latest/API/sigv4-streaming-trailers.html>
//! - <https://docs.aws.amazon.com/IAM/latest/UserGuide/create-signed-request.html>
//! - <https://docs.aws.amazon.com/AmazonS3/latest/API/ErrorResponses.html>

// SigV4, SigV2 and SigV4a are the protocols' names, not identifiers.
#![allow(
    clippy::doc_markdown,
    reason = "protocol names such as SigV4 are prose, not code"
)]

pub mod amz_date;
pub mod authorization;
pub mod chunked;
pub mod credentials;
pub mod payload;
pub mod presigned;
pub mod sigv2;
pub mod sigv4;

use std::fmt;
use std::time::SystemTime;

pub use amz_date::AmzDate;
pub use chunked::{AwsChunkedDecoder, AwsChunkedMode, ChunkSigningContext, ChunkStep};
pub use credentials::{CredentialStore, Credentials, Owner};
pub use payload::{PayloadMode, check_content_sha256};
pub use sigv4::{SigningKey, SigningKeyCache};

/// The parts of a request that authentication reads, borrowed from the
/// parsed request head.
#[derive(Debug, Clone, Copy)]
pub struct RequestView<'a> {
    /// The method token, e.g. `GET`.
    pub method: &'a str,
    /// The path exactly as it appeared in the request line (still
    /// percent-encoded), without the query.
    pub path: &'a str,
    /// The raw query, without the `?`; `None` when the target has no `?`.
    pub query: Option<&'a str>,
    /// All request headers.
    pub headers: &'a http::HeaderMap,
    /// The bucket named by the `Host` header when the request is
    /// virtual-hosted style (the router decides which hosts are), else
    /// `None`. SigV2 signs `/bucket` before the path even when the bucket
    /// is only in the host; SigV4 does not use it.
    pub virtual_host_bucket: Option<&'a str>,
}

/// Who sent an authenticated request, and how its body must be read.
#[derive(Debug, Clone)]
pub struct Authenticated {
    /// The access key the request was signed with.
    pub access_key_id: String,
    /// What the body is and what must be checked while reading it.
    pub payload: PayloadMode,
}

/// Authenticates one request head, in either SigV4 form.
///
/// `region` is the region this server answers for; `now` is the server
/// clock. `cache` belongs to the calling core, so derived signing keys are
/// reused without locks.
///
/// # Errors
/// The [`AuthError`] S3 would answer with: anonymous requests and expired
/// presigned URLs are `AccessDenied`, unknown keys `InvalidAccessKeyId`,
/// wrong signatures `SignatureDoesNotMatch`, and so on.
pub fn authenticate(
    request: &RequestView<'_>,
    store: &CredentialStore,
    region: &str,
    now: SystemTime,
    cache: &mut SigningKeyCache,
) -> Result<Authenticated, AuthError> {
    let now_ms = amz_date::unix_ms(now);
    let query = request.query.unwrap_or("");
    let query_v4 = presigned::has_query_auth(query);
    let query_v2 = sigv2::has_query_auth(query);
    let authorization = request.headers.get(http::header::AUTHORIZATION);

    match (authorization, query_v4, query_v2) {
        (Some(_), true, _) | (Some(_), _, true) | (None, true, true) => {
            Err(AuthError::InvalidArgument(
                "Only one auth mechanism allowed; only the X-Amz-Algorithm query parameter, \
                 Signature query string parameter or the Authorization header should be specified"
                    .to_owned(),
            ))
        }
        (Some(value), false, false) => {
            let Ok(value) = value.to_str() else {
                return Err(AuthError::AuthorizationHeaderMalformed(
                    "The authorization header is malformed; it is not valid ASCII.".to_owned(),
                ));
            };
            if value.starts_with(sigv2::SCHEME_PREFIX) {
                sigv2::authenticate_header(request, value, store, now_ms)
            } else {
                authorization::authenticate_header(request, value, store, region, now_ms, cache)
            }
        }
        (None, true, false) => {
            presigned::authenticate_presigned(request, query, store, region, now_ms, cache)
        }
        (None, false, true) => sigv2::authenticate_query(request, query, store, now_ms),
        // The server has no public buckets: every request must be signed.
        (None, false, false) => Err(AuthError::AccessDenied("Access Denied".to_owned())),
    }
}

impl From<AuthError> for crate::error::S3Error {
    fn from(error: AuthError) -> Self {
        crate::error::S3Error::named(error.code(), error.message())
    }
}

/// A refused request. Each variant is one S3 error code (same name), and
/// carries the human-readable `<Message>`, worded as AWS words it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthError {
    /// 403: anonymous request, expired or not yet valid presigned URL,
    /// unsigned `host` or `x-amz-*` headers, no usable date.
    AccessDenied(String),
    /// 403: the access key id is not in the credential store.
    InvalidAccessKeyId(String),
    /// 403: a request, chunk or trailer signature is wrong.
    SignatureDoesNotMatch(String),
    /// 400: the `Authorization` header cannot be parsed or names the wrong
    /// region, service or date.
    AuthorizationHeaderMalformed(String),
    /// 400: the presigned-URL query parameters cannot be parsed or are out
    /// of range.
    AuthorizationQueryParametersError(String),
    /// 403: header auth more than 15 minutes from the server clock.
    RequestTimeTooSkewed(String),
    /// 400: the body does not hash to `x-amz-content-sha256`.
    XAmzContentSHA256Mismatch(String),
    /// 400: the aws-chunked body is truncated or malformed.
    IncompleteBody(String),
    /// 400: a header or parameter has a value S3 does not accept.
    InvalidArgument(String),
    /// 400: the request misses something S3 requires, or exceeds a limit.
    InvalidRequest(String),
    /// 501: a valid but unsupported form (SigV4a / ECDSA).
    NotImplemented(String),
}

impl AuthError {
    /// The S3 error code, exactly as AWS spells it in `<Code>`.
    #[must_use]
    pub fn code(&self) -> &'static str {
        match self {
            Self::AccessDenied(_) => "AccessDenied",
            Self::InvalidAccessKeyId(_) => "InvalidAccessKeyId",
            Self::SignatureDoesNotMatch(_) => "SignatureDoesNotMatch",
            Self::AuthorizationHeaderMalformed(_) => "AuthorizationHeaderMalformed",
            Self::AuthorizationQueryParametersError(_) => "AuthorizationQueryParametersError",
            Self::RequestTimeTooSkewed(_) => "RequestTimeTooSkewed",
            Self::XAmzContentSHA256Mismatch(_) => "XAmzContentSHA256Mismatch",
            Self::IncompleteBody(_) => "IncompleteBody",
            Self::InvalidArgument(_) => "InvalidArgument",
            Self::InvalidRequest(_) => "InvalidRequest",
            Self::NotImplemented(_) => "NotImplemented",
        }
    }

    /// The HTTP status AWS sends with [`Self::code`].
    #[must_use]
    pub fn status(&self) -> u16 {
        match self {
            Self::AccessDenied(_)
            | Self::InvalidAccessKeyId(_)
            | Self::SignatureDoesNotMatch(_)
            | Self::RequestTimeTooSkewed(_) => 403,
            Self::AuthorizationHeaderMalformed(_)
            | Self::AuthorizationQueryParametersError(_)
            | Self::XAmzContentSHA256Mismatch(_)
            | Self::IncompleteBody(_)
            | Self::InvalidArgument(_)
            | Self::InvalidRequest(_) => 400,
            Self::NotImplemented(_) => 501,
        }
    }

    /// The human-readable message for `<Message>`.
    #[must_use]
    pub fn message(&self) -> &str {
        match self {
            Self::AccessDenied(message)
            | Self::InvalidAccessKeyId(message)
            | Self::SignatureDoesNotMatch(message)
            | Self::AuthorizationHeaderMalformed(message)
            | Self::AuthorizationQueryParametersError(message)
            | Self::RequestTimeTooSkewed(message)
            | Self::XAmzContentSHA256Mismatch(message)
            | Self::IncompleteBody(message)
            | Self::InvalidArgument(message)
            | Self::InvalidRequest(message)
            | Self::NotImplemented(message) => message,
        }
    }

    /// The one message S3 gives for every signature mismatch: it never says
    /// which part differed, so neither do we.
    pub(crate) fn signature_mismatch() -> Self {
        Self::SignatureDoesNotMatch(
            "The request signature we calculated does not match the signature you provided. \
             Check your key and signing method."
                .to_owned(),
        )
    }

    /// The message S3 gives for any malformed or truncated aws-chunked body.
    pub(crate) fn incomplete_body() -> Self {
        Self::IncompleteBody("The request body terminated unexpectedly".to_owned())
    }
}

impl fmt::Display for AuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code(), self.message())
    }
}

impl std::error::Error for AuthError {}

#[cfg(test)]
mod tests {
    use super::*;
    use http::{HeaderMap, HeaderValue};
    use std::time::{Duration, UNIX_EPOCH};

    fn store() -> CredentialStore {
        let mut store = CredentialStore::new();
        store.insert(Credentials {
            access_key_id: "AKIAIOSFODNN7EXAMPLE".to_owned(),
            secret_access_key: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY".to_owned(),
        });
        store
    }

    /// 20130524T000000Z, the time of every AWS example.
    const EXAMPLE_SECONDS: u64 = 1_369_353_600;

    fn now() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(EXAMPLE_SECONDS)
    }

    fn run(
        path: &str,
        query: Option<&str>,
        headers: &HeaderMap,
    ) -> Result<Authenticated, AuthError> {
        let request = RequestView {
            method: "GET",
            path,
            query,
            headers,
            virtual_host_bucket: None,
        };
        authenticate(
            &request,
            &store(),
            "us-east-1",
            now(),
            &mut SigningKeyCache::new(),
        )
    }

    #[test]
    fn error_codes_and_statuses_match_aws() {
        let table = [
            (AuthError::AccessDenied(String::new()), "AccessDenied", 403),
            (
                AuthError::InvalidAccessKeyId(String::new()),
                "InvalidAccessKeyId",
                403,
            ),
            (
                AuthError::SignatureDoesNotMatch(String::new()),
                "SignatureDoesNotMatch",
                403,
            ),
            (
                AuthError::AuthorizationHeaderMalformed(String::new()),
                "AuthorizationHeaderMalformed",
                400,
            ),
            (
                AuthError::AuthorizationQueryParametersError(String::new()),
                "AuthorizationQueryParametersError",
                400,
            ),
            (
                AuthError::RequestTimeTooSkewed(String::new()),
                "RequestTimeTooSkewed",
                403,
            ),
            (
                AuthError::XAmzContentSHA256Mismatch(String::new()),
                "XAmzContentSHA256Mismatch",
                400,
            ),
            (
                AuthError::IncompleteBody(String::new()),
                "IncompleteBody",
                400,
            ),
            (
                AuthError::InvalidArgument(String::new()),
                "InvalidArgument",
                400,
            ),
            (
                AuthError::InvalidRequest(String::new()),
                "InvalidRequest",
                400,
            ),
            (
                AuthError::NotImplemented(String::new()),
                "NotImplemented",
                501,
            ),
        ];
        for (error, code, status) in table {
            assert_eq!(error.code(), code);
            assert_eq!(error.status(), status);
        }
        let error = AuthError::signature_mismatch();
        assert_eq!(
            error.to_string(),
            format!("SignatureDoesNotMatch: {}", error.message())
        );
    }

    #[test]
    fn anonymous_request_is_refused() {
        let error = run("/bucket/key", None, &HeaderMap::new()).unwrap_err();
        assert_eq!(error, AuthError::AccessDenied("Access Denied".to_owned()));
        // Ordinary query parameters do not make a request signed.
        let error = run("/bucket", Some("list-type=2&prefix=a"), &HeaderMap::new()).unwrap_err();
        assert_eq!(error.code(), "AccessDenied");
    }

    #[test]
    fn header_and_query_auth_together_are_refused() {
        let mut headers = HeaderMap::new();
        headers.insert(
            "authorization",
            HeaderValue::from_static("AWS4-HMAC-SHA256 Credential=x"),
        );
        let error = run("/b/k", Some("X-Amz-Signature=00"), &headers).unwrap_err();
        assert_eq!(error.code(), "InvalidArgument");
    }

    #[test]
    fn sigv4a_is_not_implemented() {
        let mut headers = HeaderMap::new();
        headers.insert(
            "authorization",
            HeaderValue::from_static(
                "AWS4-ECDSA-P256-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/s3/aws4_request",
            ),
        );
        assert_eq!(
            run("/b/k", None, &headers).unwrap_err().code(),
            "NotImplemented"
        );
    }

    /// Goal: SigV2 is dispatched to `sigv2.rs` in both forms (it answered
    /// `501 NotImplemented` before), and mixing it with another form is
    /// refused as S3 refuses two auth mechanisms.
    #[test]
    fn sigv2_is_authenticated_in_both_forms() {
        let mut headers = HeaderMap::new();
        headers.insert(
            "authorization",
            HeaderValue::from_static("AWS AKIAIOSFODNN7EXAMPLE:frJIUN8DYpKDtOLCwo//yllqDzg="),
        );
        headers.insert(
            "date",
            HeaderValue::from_static("Fri, 24 May 2013 00:00:00 GMT"),
        );
        // A well-formed header with a wrong signature reaches the check.
        assert_eq!(
            run("/b/k", None, &headers).unwrap_err(),
            AuthError::signature_mismatch()
        );
        let query = "AWSAccessKeyId=AKIAIOSFODNN7EXAMPLE&Expires=1369353700&Signature=vjbyPxybdZaNmGa%2ByT272YEAiv4%3D";
        assert_eq!(
            run("/b/k", Some(query), &HeaderMap::new()).unwrap_err(),
            AuthError::signature_mismatch()
        );
        assert_eq!(
            run("/b/k", Some(query), &headers).unwrap_err().code(),
            "InvalidArgument"
        );
        let both_queries = format!("{query}&X-Amz-Signature=00");
        assert_eq!(
            run("/b/k", Some(&both_queries), &HeaderMap::new())
                .unwrap_err()
                .code(),
            "InvalidArgument"
        );
    }

    #[test]
    fn unknown_authorization_scheme_is_an_invalid_argument() {
        let mut headers = HeaderMap::new();
        headers.insert("authorization", HeaderValue::from_static("Bearer abc"));
        let error = run("/b/k", None, &headers).unwrap_err();
        assert_eq!(
            error,
            AuthError::InvalidArgument("Unsupported Authorization Type".to_owned())
        );
    }
}
