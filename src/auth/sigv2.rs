//! AWS Signature Version 2: `Authorization: AWS AKID:signature` (header
//! authentication) and `?AWSAccessKeyId=…&Expires=…&Signature=…` (query
//! authentication, presigned URLs).
//!
//! AWS deprecated SigV2, but S3 still accepts it, and boto3's
//! `generate_presigned_url` still produces SigV2 URLs by default in
//! `us-east-1`, so every application that presigns with boto3's defaults
//! sends it. The formulas, from AWS's page:
//!
//! ```text
//! Signature     = Base64(HMAC-SHA1(secret access key, StringToSign))
//! StringToSign  = METHOD \n Content-MD5 \n Content-Type \n Date \n
//!                 CanonicalizedAmzHeaders CanonicalizedResource
//!   Date                     header auth: the Date header, or "" when x-amz-date is sent
//!                            query auth:  the Expires parameter (seconds since the epoch)
//!   CanonicalizedAmzHeaders  every x-amz-* header, name lowercased, sorted by name,
//!                            repeated headers joined with ",", values trimmed: "name:value\n"
//!   CanonicalizedResource    ["/" + bucket, when the bucket is in the Host] + the path as sent
//!                            (a bare /bucket as /bucket/)
//!                            + ["?" + the signed sub-resources, sorted by name]
//! ```
//!
//! What differs from SigV4, as AWS defines it:
//! - The body is never signed: a SigV2 request's payload is
//!   `UNSIGNED-PAYLOAD`. A `Content-MD5` is signed, and the handlers check
//!   the body against it. An `x-amz-content-sha256` that is sent is signed
//!   like every `x-amz-*` header, so a declared hash is still verified.
//! - Only sub-resources of the query are signed (see
//!   [`SIGNED_SUB_RESOURCES`]); parameters that tune an operation
//!   (`prefix`, `max-keys`, `list-type`, ...) are not.
//! - A query URL is valid until `Expires`, however far away (no 7-day cap);
//!   header auth allows 15 minutes of clock skew, as SigV4 does.
//!
//! Where the page leaves room, these choices were made:
//! - **Which sub-resources are signed.** AWS's page lists acl, lifecycle,
//!   location, logging, notification, partNumber, policy, requestPayment,
//!   torrent, uploadId, uploads, versionId, versioning, versions, website,
//!   delete and the `response-*` overrides. Clients sign more (botocore adds
//!   cors, tagging, restore, object-lock, select and others), and a
//!   sub-resource that is not signed could be added to a URL to change its
//!   operation (`&retention` turns a presigned PutObject into
//!   PutObjectRetention). So every sub-resource the router routes on is
//!   signed too; a router test keeps the lists in step.
//! - **Sub-resource values** are signed decoded ("when signing, you do not
//!   encode these values"), decoded as the router decodes them (a `+` is a
//!   space), so that what is signed is what the handler reads. An empty
//!   value signs as the bare name (`?acl`).
//! - **Headers in the query.** botocore's presigned URLs carry the
//!   `Content-Type`, `Content-MD5` and `x-amz-*` headers it signed as query
//!   parameters (`content-type=…`, `x-amz-acl=…`), and the client sends
//!   none of them. In query auth such a parameter stands for its header
//!   when the header is not sent.
//! - **A bucket's own resource** is `/bucket/`, also for a path-style
//!   `/bucket`: botocore signs it so, because S3 accepts nothing else.
//! - **`x-amz-date` in header auth.** The page's rule gives an empty Date
//!   line and `x-amz-date` among the `x-amz-*` headers, which is what the
//!   SDKs do; its worked DELETE example instead puts the `x-amz-date` value
//!   on the Date line and leaves it out of the headers. Both sign the same
//!   information, so both are accepted (the rule first).
//!
//! <https://docs.aws.amazon.com/AmazonS3/latest/API/RESTAuthentication.html>

use base64::Engine as _;
use hmac::{Hmac, Mac};
use http::HeaderMap;
use sha1::Sha1;
use subtle::ConstantTimeEq;

use crate::auth::amz_date::AmzDate;
use crate::auth::authorization::invalid_access_key_id;
use crate::auth::credentials::CredentialStore;
use crate::auth::payload::ContentSha256;
use crate::auth::sigv4::decode_query_component;
use crate::auth::{AuthError, Authenticated, PayloadMode, RequestView};
use crate::limits::CLOCK_SKEW_MS_MAX;

/// The scheme of a SigV2 `Authorization` header, with its space.
pub const SCHEME_PREFIX: &str = "AWS ";

/// Query parameters that are signed in the canonicalized resource, sorted.
/// See the module doc for where the list comes from.
pub const SIGNED_SUB_RESOURCES: &[&str] = &[
    "abac",
    "accelerate",
    "acl",
    "analytics",
    "annotation",
    "attributes",
    "cors",
    "defaultObjectAcl",
    "delete",
    "encryption",
    "intelligent-tiering",
    "inventory",
    "legal-hold",
    "lifecycle",
    "location",
    "logging",
    "metadataAnnotationTable",
    "metadataConfiguration",
    "metadataInventoryTable",
    "metadataJournalTable",
    "metadataTable",
    "metrics",
    "notification",
    "object-lock",
    "ownershipControls",
    "partNumber",
    "policy",
    "policyStatus",
    "publicAccessBlock",
    "renameObject",
    "replication",
    "requestPayment",
    "response-cache-control",
    "response-content-disposition",
    "response-content-encoding",
    "response-content-language",
    "response-content-type",
    "response-expires",
    "restore",
    "retention",
    "select",
    "select-type",
    "session",
    "storageClass",
    "tagging",
    "torrent",
    "uploadId",
    "uploads",
    "versionId",
    "versioning",
    "versions",
    "website",
];

/// The length of an HMAC-SHA1 signature.
const SIGNATURE_BYTES: usize = 20;

/// Whether the query carries SigV2 query authentication.
pub(crate) fn has_query_auth(query: &str) -> bool {
    query.split('&').any(|parameter| {
        let name = parameter
            .split_once('=')
            .map_or(parameter, |(name, _)| name);
        matches!(name, "AWSAccessKeyId" | "Signature")
    })
}

/// The string to sign from its parts: `date` is the Date line (a Date or
/// `x-amz-date` value, `Expires` in query auth, or empty),
/// `canonical_amz_headers` is [`canonical_amz_headers`]' output and
/// `canonical_resource` is [`canonical_resource`]'s.
#[must_use]
pub fn string_to_sign(
    method: &str,
    content_md5: &[u8],
    content_type: &[u8],
    date: &[u8],
    canonical_amz_headers: &[u8],
    canonical_resource: &[u8],
) -> Vec<u8> {
    let mut out = Vec::with_capacity(
        method.len()
            + content_md5.len()
            + content_type.len()
            + date.len()
            + canonical_amz_headers.len()
            + canonical_resource.len()
            + 4,
    );
    for line in [method.as_bytes(), content_md5, content_type, date] {
        out.extend_from_slice(line);
        out.push(b'\n');
    }
    out.extend_from_slice(canonical_amz_headers);
    out.extend_from_slice(canonical_resource);
    out
}

/// `name:value\n` for each `(name, values)`, sorted by name; names are
/// lowercased, and each value is trimmed before the values of one name are
/// joined with `,`. Header values cannot hold line breaks (the HTTP layer
/// refuses obs-fold), so there is nothing to unfold.
#[must_use]
pub fn canonical_amz_headers<'a>(
    headers: impl IntoIterator<Item = (&'a str, &'a [u8])>,
) -> Vec<u8> {
    let mut entries: Vec<(String, &[u8])> = headers
        .into_iter()
        .map(|(name, value)| (name.to_ascii_lowercase(), value.trim_ascii()))
        .collect();
    // Stable: the values of one name keep their order.
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    let mut out = Vec::new();
    let mut previous: Option<&str> = None;
    for (name, value) in &entries {
        if previous == Some(name.as_str()) {
            out.push(b',');
        } else {
            if previous.is_some() {
                out.push(b'\n');
            }
            out.extend_from_slice(name.as_bytes());
            out.push(b':');
        }
        out.extend_from_slice(value);
        previous = Some(name);
    }
    if previous.is_some() {
        out.push(b'\n');
    }
    out
}

/// The canonicalized resource: `/bucket` when the bucket is in the host,
/// the path exactly as sent (still percent-encoded; `/` when empty, and
/// `/bucket` becomes `/bucket/`), then the signed sub-resources of the
/// query, decoded, sorted by name.
#[must_use]
pub fn canonical_resource(
    virtual_host_bucket: Option<&str>,
    raw_path: &str,
    raw_query: &str,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw_path.len() + 64);
    if let Some(bucket) = virtual_host_bucket {
        out.push(b'/');
        out.extend_from_slice(bucket.as_bytes());
    }
    out.extend_from_slice(if raw_path.is_empty() { "/" } else { raw_path }.as_bytes());
    // A path-style request for a bucket itself signs `/bucket/`, as the
    // virtual-hosted form of the same request does: botocore signs that
    // for `PUT /bucket` because, its comment says, S3 accepts nothing else.
    let is_bare_bucket = virtual_host_bucket.is_none()
        && raw_path
            .strip_prefix('/')
            .is_some_and(|bucket| !bucket.is_empty() && !bucket.contains('/'));
    if is_bare_bucket {
        out.push(b'/');
    }
    let mut signed: Vec<(Vec<u8>, Vec<u8>)> = raw_query
        .split('&')
        .filter(|parameter| !parameter.is_empty())
        .filter_map(|parameter| {
            let (raw_name, raw_value) = parameter.split_once('=').unwrap_or((parameter, ""));
            let name = decode_query_component(raw_name);
            let is_signed = SIGNED_SUB_RESOURCES
                .binary_search_by(|candidate| candidate.as_bytes().cmp(&name))
                .is_ok();
            is_signed.then(|| (name, decode_query_component(raw_value)))
        })
        .collect();
    // Stable: a repeated name keeps its order (the router refuses it later).
    signed.sort_by(|a, b| a.0.cmp(&b.0));
    for (index, (name, value)) in signed.iter().enumerate() {
        out.push(if index == 0 { b'?' } else { b'&' });
        out.extend_from_slice(name);
        if !value.is_empty() {
            out.push(b'=');
            out.extend_from_slice(value);
        }
    }
    out
}

/// The binary signature: HMAC-SHA1 of the string to sign under the secret.
#[must_use]
pub fn signature(secret_access_key: &str, string_to_sign: &[u8]) -> [u8; SIGNATURE_BYTES] {
    let mut mac = Hmac::<Sha1>::new_from_slice(secret_access_key.as_bytes())
        .expect("HMAC accepts keys of any length");
    mac.update(string_to_sign);
    mac.finalize().into_bytes().into()
}

/// The signature as it is sent: standard base64 with padding.
#[must_use]
pub fn encode_signature(signature: &[u8; SIGNATURE_BYTES]) -> String {
    base64::engine::general_purpose::STANDARD.encode(signature)
}

/// Whether the base64 `provided` signature is `expected`, in time
/// independent of the content. Anything that does not decode to 20 bytes
/// does not match.
fn signature_matches(provided: &str, expected: &[u8; SIGNATURE_BYTES]) -> bool {
    let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(provided.trim()) else {
        return false;
    };
    decoded.len() == SIGNATURE_BYTES && bool::from(decoded.as_slice().ct_eq(expected))
}

/// Authenticates `Authorization: AWS AKID:signature`.
pub(crate) fn authenticate_header(
    request: &RequestView<'_>,
    authorization: &str,
    store: &CredentialStore,
    now_ms: i64,
) -> Result<Authenticated, AuthError> {
    let credentials = authorization
        .strip_prefix(SCHEME_PREFIX)
        .expect("the caller dispatches on the SigV2 scheme");
    let Some((access_key_id, provided)) = credentials
        .trim()
        .split_once(':')
        .filter(|(access_key_id, provided)| !access_key_id.is_empty() && !provided.is_empty())
    else {
        return Err(AuthError::InvalidArgument(
            "AWS authorization header is invalid.  Expected AwsAccessKeyId:signature".to_owned(),
        ));
    };

    // The request time: x-amz-date wins over Date. Then the Date line is
    // empty by the page's rule (x-amz-date is among the x-amz-* headers).
    let amz_date = request.headers.get("x-amz-date");
    let date = request.headers.get(http::header::DATE);
    let request_time = match (amz_date, date) {
        (Some(value), _) | (None, Some(value)) => value.to_str().ok().and_then(parse_date),
        (None, None) => None,
    }
    .ok_or_else(|| {
        AuthError::AccessDenied(
            "AWS authentication requires a valid Date or x-amz-date header".to_owned(),
        )
    })?;
    if now_ms.abs_diff(request_time.unix_ms()) > CLOCK_SKEW_MS_MAX {
        return Err(AuthError::RequestTimeTooSkewed(
            "The difference between the request time and the current time is too large.".to_owned(),
        ));
    }

    let secret_access_key = store
        .secret_access_key(access_key_id)
        .ok_or_else(invalid_access_key_id)?;
    let payload = payload_mode(request.headers)?;

    let resource = canonical_resource(
        request.virtual_host_bucket,
        request.path,
        request.query.unwrap_or(""),
    );
    let content_md5 = header_bytes(request.headers, "content-md5");
    let content_type = header_bytes(request.headers, "content-type");
    let date_line = match amz_date {
        Some(_) => &b""[..],
        None => date.map_or(&b""[..], |value| value.as_bytes().trim_ascii()),
    };
    let sign = |date_line: &[u8], amz_lines: &[u8]| {
        signature(
            secret_access_key,
            &string_to_sign(
                request.method,
                content_md5,
                content_type,
                date_line,
                amz_lines,
                &resource,
            ),
        )
    };
    let amz_lines = canonical_amz_headers(amz_headers(request.headers));
    let mut matches = signature_matches(provided, &sign(date_line, &amz_lines));
    if !matches && let Some(amz_date) = amz_date {
        // AWS's worked example: the x-amz-date value on the Date line.
        let others = canonical_amz_headers(
            amz_headers(request.headers).filter(|(name, _)| *name != "x-amz-date"),
        );
        matches = signature_matches(provided, &sign(amz_date.as_bytes().trim_ascii(), &others));
    }
    if !matches {
        return Err(AuthError::signature_mismatch());
    }
    Ok(Authenticated {
        access_key_id: access_key_id.to_owned(),
        payload,
    })
}

/// Authenticates `?AWSAccessKeyId=…&Expires=…&Signature=…`.
pub(crate) fn authenticate_query(
    request: &RequestView<'_>,
    query: &str,
    store: &CredentialStore,
    now_ms: i64,
) -> Result<Authenticated, AuthError> {
    let mut access_key_id = None;
    let mut expires = None;
    let mut provided = None;
    // Headers that botocore moved into the query (see the module doc).
    let mut query_content_md5 = None;
    let mut query_content_type = None;
    let mut query_amz_headers: Vec<(String, Vec<u8>)> = Vec::new();
    for parameter in query.split('&').filter(|parameter| !parameter.is_empty()) {
        let (raw_name, raw_value) = parameter.split_once('=').unwrap_or((parameter, ""));
        match raw_name {
            "AWSAccessKeyId" => {
                access_key_id.get_or_insert_with(|| decode_query_component(raw_value));
            }
            "Expires" => {
                expires.get_or_insert_with(|| decode_query_component(raw_value));
            }
            "Signature" => {
                // Percent-decoded only: a base64 `+` sent raw stays a `+`
                // (a signature never holds a space), so hand-made URLs
                // that forgot to encode it still verify.
                provided.get_or_insert_with(|| {
                    percent_encoding::percent_decode_str(raw_value).collect::<Vec<u8>>()
                });
            }
            _ => {
                let name =
                    String::from_utf8_lossy(&decode_query_component(raw_name)).to_ascii_lowercase();
                if name == "content-md5" {
                    query_content_md5.get_or_insert_with(|| decode_query_component(raw_value));
                } else if name == "content-type" {
                    query_content_type.get_or_insert_with(|| decode_query_component(raw_value));
                } else if name.starts_with("x-amz-") {
                    query_amz_headers.push((name, decode_query_component(raw_value)));
                }
            }
        }
    }
    let (Some(access_key_id), Some(expires), Some(provided)) = (access_key_id, expires, provided)
    else {
        return Err(AuthError::AccessDenied(
            "Query-string authentication requires the Signature, Expires and AWSAccessKeyId \
             parameters"
                .to_owned(),
        ));
    };
    let expires_seconds = std::str::from_utf8(&expires)
        .ok()
        .filter(|text| !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()))
        .map(|text| text.parse::<i64>().unwrap_or(i64::MAX))
        .ok_or_else(|| {
            AuthError::AccessDenied(format!(
                "Invalid date (should be seconds since epoch): {}",
                String::from_utf8_lossy(&expires)
            ))
        })?;
    // Valid up to and including the second `Expires` names.
    if now_ms / 1000 > expires_seconds {
        return Err(AuthError::AccessDenied("Request has expired".to_owned()));
    }

    let access_key_id = String::from_utf8(access_key_id).map_err(|_| invalid_access_key_id())?;
    let secret_access_key = store
        .secret_access_key(&access_key_id)
        .ok_or_else(invalid_access_key_id)?;
    let payload = payload_mode(request.headers)?;

    let headers = request.headers;
    let content_md5 = match headers.get("content-md5") {
        Some(value) => value.as_bytes().trim_ascii(),
        None => query_content_md5.as_deref().unwrap_or_default(),
    };
    let content_type = match headers.get(http::header::CONTENT_TYPE) {
        Some(value) => value.as_bytes().trim_ascii(),
        None => query_content_type.as_deref().unwrap_or_default(),
    };
    let amz_lines = canonical_amz_headers(
        amz_headers(headers).chain(
            query_amz_headers
                .iter()
                .filter(|(name, _)| !headers.contains_key(name.as_str()))
                .map(|(name, value)| (name.as_str(), value.as_slice())),
        ),
    );
    let resource = canonical_resource(request.virtual_host_bucket, request.path, query);
    let expected = signature(
        secret_access_key,
        &string_to_sign(
            request.method,
            content_md5,
            content_type,
            &expires,
            &amz_lines,
            &resource,
        ),
    );
    let provided = String::from_utf8_lossy(&provided);
    if !signature_matches(&provided, &expected) {
        return Err(AuthError::signature_mismatch());
    }
    Ok(Authenticated {
        access_key_id,
        payload,
    })
}

/// Every `x-amz-*` header as `(name, value)`, in the map's order.
fn amz_headers(headers: &HeaderMap) -> impl Iterator<Item = (&str, &[u8])> {
    headers
        .iter()
        .filter(|(name, _)| name.as_str().starts_with("x-amz-"))
        .map(|(name, value)| (name.as_str(), value.as_bytes()))
}

/// The trimmed value of a positional header, empty when it is not sent.
fn header_bytes<'h>(headers: &'h HeaderMap, name: &str) -> &'h [u8] {
    headers
        .get(name)
        .map_or(&b""[..], |value| value.as_bytes().trim_ascii())
}

/// A SigV2 request time: an HTTP-date, as the page asks, or the ISO 8601
/// basic form that some clients put in `x-amz-date` out of SigV4 habit.
fn parse_date(text: &str) -> Option<AmzDate> {
    AmzDate::parse_http_date(text).or_else(|| AmzDate::parse_iso8601_basic(text.trim()))
}

/// How the body is read. SigV2 signs no body, so it is unsigned, unless
/// the client declared (and, as an `x-amz-*` header, signed) a SHA-256 or
/// an unsigned aws-chunked body. The signed aws-chunked forms chain their
/// chunk signatures from a SigV4 signature, which a SigV2 request has not.
fn payload_mode(headers: &HeaderMap) -> Result<PayloadMode, AuthError> {
    let Some(value) = headers.get("x-amz-content-sha256") else {
        return Ok(PayloadMode::Unsigned);
    };
    match ContentSha256::parse(value.as_bytes())? {
        ContentSha256::Unsigned => Ok(PayloadMode::Unsigned),
        ContentSha256::Sha256(hash) => Ok(PayloadMode::Sha256(hash)),
        ContentSha256::StreamingUnsignedTrailer => Ok(PayloadMode::StreamingUnsignedTrailer),
        ContentSha256::StreamingSigned { .. } => Err(AuthError::InvalidRequest(
            "Signed aws-chunked payloads (STREAMING-AWS4-HMAC-SHA256-PAYLOAD) require \
             AWS4-HMAC-SHA256 request signatures."
                .to_owned(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::credentials::Credentials;
    use crate::auth::sigv4::SigningKeyCache;
    use crate::auth::{AuthError, authenticate};
    use http::{HeaderName, HeaderValue};
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    /// The credentials of every example on AWS's SigV2 page.
    const AKID: &str = "AKIAIOSFODNN7EXAMPLE";
    const SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";

    fn at(unix_seconds: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(unix_seconds)
    }

    fn seconds_of(http_date: &str) -> u64 {
        u64::try_from(AmzDate::parse_http_date(http_date).unwrap().unix_seconds()).unwrap()
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for &(name, value) in pairs {
            map.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        map
    }

    /// One request through the public entry point.
    struct Request<'a> {
        method: &'a str,
        path: &'a str,
        query: Option<&'a str>,
        headers: HeaderMap,
        virtual_host_bucket: Option<&'a str>,
    }

    impl Request<'_> {
        fn run(&self, now: SystemTime) -> Result<Authenticated, AuthError> {
            let store: CredentialStore = [Credentials {
                access_key_id: AKID.to_owned(),
                secret_access_key: SECRET.to_owned(),
            }]
            .into_iter()
            .collect();
            let view = RequestView {
                method: self.method,
                path: self.path,
                query: self.query,
                headers: &self.headers,
                virtual_host_bucket: self.virtual_host_bucket,
            };
            authenticate(&view, &store, "us-east-1", now, &mut SigningKeyCache::new())
        }

        /// Signs with this module's primitives (pinned by the AWS vectors
        /// below) and sets `Authorization`, for cases AWS has no example of.
        fn signed(mut self) -> Self {
            let date_line = if self.headers.contains_key("x-amz-date") {
                &b""[..]
            } else {
                header_bytes(&self.headers, "date")
            };
            let string_to_sign = string_to_sign(
                self.method,
                header_bytes(&self.headers, "content-md5"),
                header_bytes(&self.headers, "content-type"),
                date_line,
                &canonical_amz_headers(amz_headers(&self.headers)),
                &canonical_resource(
                    self.virtual_host_bucket,
                    self.path,
                    self.query.unwrap_or(""),
                ),
            );
            let value = format!(
                "AWS {AKID}:{}",
                encode_signature(&signature(SECRET, &string_to_sign))
            );
            self.headers
                .insert("authorization", HeaderValue::from_str(&value).unwrap());
            self
        }
    }

    /// Checks one worked example of AWS's page: the string to sign, the
    /// signature, and that the whole request authenticates at its date.
    fn check_example(request: &Request<'_>, expected_string_to_sign: &str, expected: &str) {
        let date_line = if request.headers.contains_key("x-amz-date") {
            &b""[..]
        } else {
            header_bytes(&request.headers, "date")
        };
        let string = string_to_sign(
            request.method,
            header_bytes(&request.headers, "content-md5"),
            header_bytes(&request.headers, "content-type"),
            date_line,
            &canonical_amz_headers(amz_headers(&request.headers)),
            &canonical_resource(
                request.virtual_host_bucket,
                request.path,
                request.query.unwrap_or(""),
            ),
        );
        assert_eq!(
            String::from_utf8(string.clone()).unwrap(),
            expected_string_to_sign
        );
        assert_eq!(encode_signature(&signature(SECRET, &string)), expected);
        let now = at(seconds_of(request.headers["date"].to_str().unwrap()));
        let authenticated = request.run(now).unwrap();
        assert_eq!(authenticated.access_key_id, AKID);
        assert!(matches!(authenticated.payload, PayloadMode::Unsigned));
    }

    fn example(
        method: &'static str,
        path: &'static str,
        query: Option<&'static str>,
        virtual_host_bucket: Option<&'static str>,
        pairs: &[(&str, &str)],
        signature: &str,
    ) -> Request<'static> {
        let mut headers = headers(pairs);
        headers.insert(
            "authorization",
            HeaderValue::from_str(&format!("AWS {AKID}:{signature}")).unwrap(),
        );
        Request {
            method,
            path,
            query,
            headers,
            virtual_host_bucket,
        }
    }

    #[test]
    fn aws_example_object_get() {
        let request = example(
            "GET",
            "/photos/puppy.jpg",
            None,
            Some("awsexamplebucket1"),
            &[
                ("host", "awsexamplebucket1.us-west-1.s3.amazonaws.com"),
                ("date", "Tue, 27 Mar 2007 19:36:42 +0000"),
            ],
            "qgk2+6Sv9/oM7G3qLEjTH1a1l1g=",
        );
        check_example(
            &request,
            "GET\n\n\nTue, 27 Mar 2007 19:36:42 +0000\n/awsexamplebucket1/photos/puppy.jpg",
            "qgk2+6Sv9/oM7G3qLEjTH1a1l1g=",
        );
    }

    #[test]
    fn aws_example_object_put() {
        let request = example(
            "PUT",
            "/photos/puppy.jpg",
            None,
            Some("awsexamplebucket1"),
            &[
                ("content-type", "image/jpeg"),
                ("content-length", "94328"),
                ("host", "awsexamplebucket1.s3.us-west-1.amazonaws.com"),
                ("date", "Tue, 27 Mar 2007 21:15:45 +0000"),
            ],
            "iqRzw+ileNPu1fhspnRs8nOjjIA=",
        );
        check_example(
            &request,
            "PUT\n\nimage/jpeg\nTue, 27 Mar 2007 21:15:45 +0000\n/awsexamplebucket1/photos/puppy.jpg",
            "iqRzw+ileNPu1fhspnRs8nOjjIA=",
        );
    }

    /// The query holds no sub-resource, so none of it is signed, and the
    /// resource keeps its trailing slash.
    #[test]
    fn aws_example_list() {
        let request = example(
            "GET",
            "/",
            Some("prefix=photos&max-keys=50&marker=puppy"),
            Some("awsexamplebucket1"),
            &[
                ("user-agent", "Mozilla/5.0"),
                ("host", "awsexamplebucket1.s3.us-west-1.amazonaws.com"),
                ("date", "Tue, 27 Mar 2007 19:42:41 +0000"),
            ],
            "m0WP8eCtspQl5Ahe6L1SozdX9YA=",
        );
        check_example(
            &request,
            "GET\n\n\nTue, 27 Mar 2007 19:42:41 +0000\n/awsexamplebucket1/",
            "m0WP8eCtspQl5Ahe6L1SozdX9YA=",
        );
    }

    #[test]
    fn aws_example_fetch_acl() {
        let request = example(
            "GET",
            "/",
            Some("acl"),
            Some("awsexamplebucket1"),
            &[
                ("host", "awsexamplebucket1.s3.us-west-1.amazonaws.com"),
                ("date", "Tue, 27 Mar 2007 19:44:46 +0000"),
            ],
            "82ZHiFIjc+WbcwFKGUVEQspPn+0=",
        );
        check_example(
            &request,
            "GET\n\n\nTue, 27 Mar 2007 19:44:46 +0000\n/awsexamplebucket1/?acl",
            "82ZHiFIjc+WbcwFKGUVEQspPn+0=",
        );
    }

    /// The page's DELETE example puts the `x-amz-date` value on the Date
    /// line and leaves `x-amz-date` out of the headers, unlike its own rule
    /// (empty Date line, `x-amz-date` among the headers, which is what the
    /// SDKs sign). Both forms are accepted; see the module doc.
    #[test]
    fn aws_example_delete_with_x_amz_date() {
        let pairs = [
            ("user-agent", "dotnet"),
            ("host", "s3.us-west-1.amazonaws.com"),
            ("date", "Tue, 27 Mar 2007 21:20:27 +0000"),
            ("x-amz-date", "Tue, 27 Mar 2007 21:20:26 +0000"),
        ];
        let request = example(
            "DELETE",
            "/awsexamplebucket1/photos/puppy.jpg",
            None,
            None,
            &pairs,
            "XbyTlbQdu9Xw5o8P4iMwPktxQd8=",
        );
        let string = string_to_sign(
            "DELETE",
            b"",
            b"",
            b"Tue, 27 Mar 2007 21:20:26 +0000",
            b"",
            &canonical_resource(None, request.path, ""),
        );
        assert_eq!(
            String::from_utf8(string.clone()).unwrap(),
            "DELETE\n\n\nTue, 27 Mar 2007 21:20:26 +0000\n/awsexamplebucket1/photos/puppy.jpg"
        );
        assert_eq!(
            encode_signature(&signature(SECRET, &string)),
            "XbyTlbQdu9Xw5o8P4iMwPktxQd8="
        );
        let now = at(seconds_of("Tue, 27 Mar 2007 21:20:26 +0000"));
        request.run(now).unwrap();
        // The rule's form of the same request.
        let ruled = Request {
            method: "DELETE",
            path: "/awsexamplebucket1/photos/puppy.jpg",
            query: None,
            headers: headers(&pairs),
            virtual_host_bucket: None,
        }
        .signed();
        let string = string_to_sign(
            "DELETE",
            b"",
            b"",
            b"",
            &canonical_amz_headers(amz_headers(&ruled.headers)),
            b"/awsexamplebucket1/photos/puppy.jpg",
        );
        assert_eq!(
            String::from_utf8(string).unwrap(),
            "DELETE\n\n\n\nx-amz-date:Tue, 27 Mar 2007 21:20:26 +0000\n/awsexamplebucket1/photos/puppy.jpg"
        );
        ruled.run(now).unwrap();
        // The x-amz-date dates the request: the Date header is ignored.
        let skewed = at(seconds_of("Tue, 27 Mar 2007 21:20:26 +0000") + 901);
        assert_eq!(
            ruled.run(skewed).unwrap_err().code(),
            "RequestTimeTooSkewed"
        );
    }

    /// The page's upload example, to a CNAME bucket. Its string to sign is
    /// checked; its published signature (`dKZcB+bz2EPXgSdXZp9ozGeOM4I=`)
    /// does not match that string to sign (nor the one with the bucket's
    /// older name, `static.johnsmith.net`), so the signature checked here is
    /// the one Python's `hmac` module computes for it.
    #[test]
    fn aws_example_upload_with_amz_headers() {
        let request = Request {
            method: "PUT",
            path: "/db-backup.dat.gz",
            query: None,
            headers: headers(&[
                ("user-agent", "curl/7.15.5"),
                ("host", "static.example.com:8080"),
                ("date", "Tue, 27 Mar 2007 21:06:08 +0000"),
                ("x-amz-acl", "public-read"),
                ("content-type", "application/x-download"),
                ("content-md5", "4gJE4saaMU4BqNR0kLY+lw=="),
                ("x-amz-meta-reviewedby", "joe@example.com"),
                ("x-amz-meta-reviewedby", "jane@example.com"),
                ("x-amz-meta-filechecksum", "0x02661779"),
                ("x-amz-meta-checksumalgorithm", "crc32"),
                ("content-disposition", "attachment; filename=database.dat"),
                ("content-encoding", "gzip"),
                ("content-length", "5913339"),
            ]),
            virtual_host_bucket: Some("static.example.com"),
        };
        let string = string_to_sign(
            request.method,
            header_bytes(&request.headers, "content-md5"),
            header_bytes(&request.headers, "content-type"),
            header_bytes(&request.headers, "date"),
            &canonical_amz_headers(amz_headers(&request.headers)),
            &canonical_resource(request.virtual_host_bucket, request.path, ""),
        );
        assert_eq!(
            String::from_utf8(string.clone()).unwrap(),
            "PUT\n4gJE4saaMU4BqNR0kLY+lw==\napplication/x-download\nTue, 27 Mar 2007 21:06:08 +0000\n\
             x-amz-acl:public-read\nx-amz-meta-checksumalgorithm:crc32\n\
             x-amz-meta-filechecksum:0x02661779\n\
             x-amz-meta-reviewedby:joe@example.com,jane@example.com\n\
             /static.example.com/db-backup.dat.gz"
        );
        assert_eq!(
            encode_signature(&signature(SECRET, &string)),
            "jtBQa0Aq+DkULFI8qrpwIjGEx0E="
        );
    }

    #[test]
    fn aws_example_list_all_my_buckets() {
        let request = example(
            "GET",
            "/",
            None,
            None,
            &[
                ("host", "s3.us-west-1.amazonaws.com"),
                ("date", "Wed, 28 Mar 2007 01:29:59 +0000"),
            ],
            "qGdzdERIC03wnaRNKh6OqZehG9s=",
        );
        check_example(
            &request,
            "GET\n\n\nWed, 28 Mar 2007 01:29:59 +0000\n/",
            "qGdzdERIC03wnaRNKh6OqZehG9s=",
        );
    }

    /// The path is signed exactly as sent, escapes' case included.
    #[test]
    fn aws_example_unicode_keys() {
        let request = example(
            "GET",
            "/dictionary/fran%C3%A7ais/pr%c3%a9f%c3%a8re",
            None,
            None,
            &[
                ("host", "s3.us-west-1.amazonaws.com"),
                ("date", "Wed, 28 Mar 2007 01:49:49 +0000"),
            ],
            "DNEZGsoieTZ92F3bUfSPQcbGmlM=",
        );
        check_example(
            &request,
            "GET\n\n\nWed, 28 Mar 2007 01:49:49 +0000\n/dictionary/fran%C3%A7ais/pr%c3%a9f%c3%a8re",
            "DNEZGsoieTZ92F3bUfSPQcbGmlM=",
        );
    }

    /// The page's query-string example. Its signature is that of bucket
    /// `johnsmith`, the name the example had before AWS renamed the bucket
    /// in its text to `awsexamplebucket1` (for which the signature does
    /// not verify), so the original bucket is used.
    #[test]
    fn aws_example_query_string_authentication() {
        let query = "AWSAccessKeyId=AKIAIOSFODNN7EXAMPLE&Signature=NpgCjnDzrM%2BWFzoENXmpNDUsSn8%3D&Expires=1175139620";
        let string = string_to_sign(
            "GET",
            b"",
            b"",
            b"1175139620",
            b"",
            &canonical_resource(Some("johnsmith"), "/photos/puppy.jpg", query),
        );
        assert_eq!(
            String::from_utf8(string.clone()).unwrap(),
            "GET\n\n\n1175139620\n/johnsmith/photos/puppy.jpg"
        );
        assert_eq!(
            encode_signature(&signature(SECRET, &string)),
            "NpgCjnDzrM+WFzoENXmpNDUsSn8="
        );
        let request = Request {
            method: "GET",
            path: "/photos/puppy.jpg",
            query: Some(query),
            headers: headers(&[("host", "johnsmith.s3.us-west-1.amazonaws.com")]),
            virtual_host_bucket: Some("johnsmith"),
        };
        // Valid up to and including the Expires second, with no skew rule.
        for now in [1_175_139_620 - 86_400 * 365, 1_175_139_620] {
            let authenticated = request.run(at(now)).unwrap();
            assert_eq!(authenticated.access_key_id, AKID);
            assert!(matches!(authenticated.payload, PayloadMode::Unsigned));
        }
        assert_eq!(
            request.run(at(1_175_139_621)).unwrap_err(),
            AuthError::AccessDenied("Request has expired".to_owned())
        );
        // Path-style, the same URL has the bucket in its path.
        let path_style = Request {
            path: "/johnsmith/photos/puppy.jpg",
            virtual_host_bucket: None,
            headers: headers(&[("host", "s3.us-west-1.amazonaws.com")]),
            ..request
        };
        path_style.run(at(1_175_139_620)).unwrap();
        // Its signature holds a `+`: sent raw instead of `%2B`, it still
        // verifies (a signature never holds a space).
        let raw_plus = Request {
            query: Some(
                "AWSAccessKeyId=AKIAIOSFODNN7EXAMPLE&Signature=NpgCjnDzrM+WFzoENXmpNDUsSn8%3D&Expires=1175139620",
            ),
            ..path_style
        };
        raw_plus.run(at(1_175_139_620)).unwrap();
    }

    #[test]
    fn signed_sub_resources_are_sorted_and_unique() {
        for pair in SIGNED_SUB_RESOURCES.windows(2) {
            assert!(pair[0] < pair[1], "{pair:?}");
        }
    }

    /// Goal: only sub-resources are signed, decoded as the router decodes
    /// them (a `+` is a space), sorted by name, an empty value as the bare
    /// name.
    #[test]
    fn canonical_resource_signs_sub_resources_decoded_and_sorted() {
        let cases = [
            ("", "/b/k"),
            ("prefix=a&max-keys=2", "/b/k"),
            ("versionId=v%2B1&acl", "/b/k?acl&versionId=v+1"),
            (
                "uploadId=a+b%2Fc&partNumber=2&x-id=UploadPart",
                "/b/k?partNumber=2&uploadId=a b/c",
            ),
            (
                "response-content-disposition=attachment%3B%20filename%3D%22a%20b%2Bc.txt%22&AWSAccessKeyId=A",
                "/b/k?response-content-disposition=attachment; filename=\"a b+c.txt\"",
            ),
            ("uploads=&tagging", "/b/k?tagging&uploads"),
            ("%61cl", "/b/k?acl"),
            ("ACL&Acl=1", "/b/k"),
        ];
        for (query, expected) in cases {
            assert_eq!(
                String::from_utf8(canonical_resource(None, "/b/k", query)).unwrap(),
                expected,
                "{query}"
            );
        }
        assert_eq!(canonical_resource(Some("b"), "", "acl"), b"/b/?acl");
        assert_eq!(canonical_resource(None, "", ""), b"/");
        // A bucket itself signs with a trailing slash in both styles.
        assert_eq!(canonical_resource(None, "/b", "acl"), b"/b/?acl");
        assert_eq!(canonical_resource(None, "/b/", ""), b"/b/");
        assert_eq!(canonical_resource(Some("b"), "/", ""), b"/b/");
    }

    #[test]
    fn canonical_amz_headers_are_lowercased_sorted_joined_and_trimmed() {
        let map = headers(&[
            ("x-amz-meta-b", " two "),
            ("x-amz-meta-a", "one  inner"),
            ("x-amz-meta-b", "three"),
            ("content-type", "text/plain"),
        ]);
        assert_eq!(
            canonical_amz_headers(amz_headers(&map)),
            b"x-amz-meta-a:one  inner\nx-amz-meta-b:two,three\n"
        );
        assert_eq!(
            canonical_amz_headers([("X-Amz-Acl", &b"private"[..])]),
            b"x-amz-acl:private\n"
        );
        assert_eq!(canonical_amz_headers(amz_headers(&HeaderMap::new())), b"");
    }

    fn now_request(method: &'static str, extra: &[(&str, &str)]) -> Request<'static> {
        let mut pairs = vec![("host", "h"), ("date", "Fri, 24 May 2013 00:00:00 GMT")];
        pairs.extend_from_slice(extra);
        Request {
            method,
            path: "/b/k",
            query: None,
            headers: headers(&pairs),
            virtual_host_bucket: None,
        }
    }

    const MAY_24_2013: u64 = 1_369_353_600;

    #[test]
    fn header_auth_allows_15_minutes_of_skew() {
        let request = now_request("GET", &[]).signed();
        for now in [MAY_24_2013 - 900, MAY_24_2013 + 900] {
            request.run(at(now)).unwrap();
        }
        for now in [MAY_24_2013 - 901, MAY_24_2013 + 901] {
            assert_eq!(
                request.run(at(now)).unwrap_err(),
                AuthError::RequestTimeTooSkewed(
                    "The difference between the request time and the current time is too large."
                        .to_owned()
                )
            );
        }
        let mut undated = now_request("GET", &[]);
        undated.headers.remove("date");
        let undated = undated.signed();
        assert_eq!(
            undated.run(at(MAY_24_2013)).unwrap_err(),
            AuthError::AccessDenied(
                "AWS authentication requires a valid Date or x-amz-date header".to_owned()
            )
        );
    }

    #[test]
    fn header_auth_refusals_have_aws_codes() {
        let now = at(MAY_24_2013);
        let mut request = now_request("PUT", &[("content-type", "text/plain")]).signed();
        request.run(now).unwrap();
        // Each signed element, changed after signing.
        for (name, value) in [
            ("content-type", "text/html"),
            ("content-md5", "1B2M2Y8AsgTpgAmY7PhCfg=="),
            ("x-amz-acl", "public-read"),
            ("date", "Fri, 24 May 2013 00:00:01 GMT"),
        ] {
            let mut tampered = Request {
                headers: request.headers.clone(),
                ..now_request("PUT", &[])
            };
            tampered
                .headers
                .insert(name, HeaderValue::from_str(value).unwrap());
            assert_eq!(
                tampered.run(now).unwrap_err(),
                AuthError::signature_mismatch(),
                "{name}"
            );
        }
        let moved = Request {
            method: "DELETE",
            headers: request.headers.clone(),
            ..now_request("PUT", &[])
        };
        assert_eq!(moved.run(now).unwrap_err(), AuthError::signature_mismatch());
        let moved = Request {
            query: Some("acl"),
            headers: request.headers.clone(),
            ..now_request("PUT", &[])
        };
        assert_eq!(moved.run(now).unwrap_err(), AuthError::signature_mismatch());
        // Parameters that are not sub-resources are not signed, as on AWS.
        let unsigned_parameter = Request {
            query: Some("x-id=PutObject"),
            headers: request.headers.clone(),
            ..now_request("PUT", &[])
        };
        unsigned_parameter.run(now).unwrap();

        let authorization = request.headers["authorization"]
            .to_str()
            .unwrap()
            .to_owned();
        for (value, expected) in [
            (
                authorization.replace(AKID, "AKIAUNKNOWN"),
                invalid_access_key_id(),
            ),
            (
                authorization.replace(':', ""),
                AuthError::InvalidArgument(
                    "AWS authorization header is invalid.  Expected AwsAccessKeyId:signature"
                        .to_owned(),
                ),
            ),
            (
                format!("AWS {AKID}:"),
                AuthError::InvalidArgument(
                    "AWS authorization header is invalid.  Expected AwsAccessKeyId:signature"
                        .to_owned(),
                ),
            ),
            (
                format!("AWS {AKID}:not base64!"),
                AuthError::signature_mismatch(),
            ),
            (format!("AWS {AKID}:AAAA"), AuthError::signature_mismatch()),
        ] {
            request
                .headers
                .insert("authorization", HeaderValue::from_str(&value).unwrap());
            let error = request.run(now).unwrap_err();
            assert_eq!(error, expected, "{value}");
            assert_eq!(
                error.status(),
                if error.code() == "InvalidArgument" {
                    400
                } else {
                    403
                }
            );
        }
    }

    /// Goal: a declared body hash is honoured (it is signed like any
    /// x-amz-* header); the signed aws-chunked forms are refused, as their
    /// chunk signatures need a SigV4 seed.
    #[test]
    fn payload_follows_a_declared_content_sha256() {
        let now = at(MAY_24_2013);
        let hash = crate::auth::sigv4::EMPTY_SHA256_HEX;
        let request = now_request("PUT", &[("x-amz-content-sha256", hash)]).signed();
        assert!(matches!(
            request.run(now).unwrap().payload,
            PayloadMode::Sha256(_)
        ));
        let request = now_request("PUT", &[("x-amz-content-sha256", "UNSIGNED-PAYLOAD")]).signed();
        assert!(matches!(
            request.run(now).unwrap().payload,
            PayloadMode::Unsigned
        ));
        let request = now_request(
            "PUT",
            &[("x-amz-content-sha256", "STREAMING-UNSIGNED-PAYLOAD-TRAILER")],
        )
        .signed();
        assert!(matches!(
            request.run(now).unwrap().payload,
            PayloadMode::StreamingUnsignedTrailer
        ));
        let request = now_request(
            "PUT",
            &[("x-amz-content-sha256", "STREAMING-AWS4-HMAC-SHA256-PAYLOAD")],
        )
        .signed();
        assert_eq!(request.run(now).unwrap_err().code(), "InvalidRequest");
        let request = now_request("PUT", &[("x-amz-content-sha256", "nonsense")]).signed();
        assert_eq!(request.run(now).unwrap_err().code(), "InvalidArgument");
    }

    /// The query of a presigned URL: `query` (sub-resources and the
    /// like) followed by the three auth parameters, signed with this
    /// `Content-Type` line.
    fn presign(method: &str, path: &str, query: &str, content_type: &str, expires: &str) -> String {
        let string = string_to_sign(
            method,
            b"",
            content_type.as_bytes(),
            expires.as_bytes(),
            b"",
            &canonical_resource(None, path, query),
        );
        let signature = encode_signature(&signature(SECRET, &string));
        let mut signature_encoded = Vec::new();
        crate::auth::sigv4::uri_encode(&mut signature_encoded, signature.as_bytes(), true);
        let separator = if query.is_empty() { "" } else { "&" };
        format!(
            "{query}{separator}AWSAccessKeyId={AKID}&Expires={expires}&Signature={}",
            String::from_utf8(signature_encoded).unwrap()
        )
    }

    fn query_request<'a>(method: &'a str, query: &'a str) -> Request<'a> {
        Request {
            method,
            path: "/b/k",
            query: Some(query),
            headers: headers(&[("host", "h")]),
            virtual_host_bucket: None,
        }
    }

    #[test]
    fn query_auth_refusals_have_aws_codes() {
        let now = at(MAY_24_2013);
        let query = presign("GET", "/b/k", "versionId=v1", "", "1369357200");
        query_request("GET", &query).run(now).unwrap();
        for (tampered, expected) in [
            (
                query.replace("Expires=1369357200", "Expires=1369357201"),
                AuthError::signature_mismatch(),
            ),
            (
                query.replace("versionId=v1", "versionId=v2"),
                AuthError::signature_mismatch(),
            ),
            (format!("{query}&acl"), AuthError::signature_mismatch()),
            (query.replace(AKID, "AKIAUNKNOWN"), invalid_access_key_id()),
            (
                query.replace("&Expires=1369357200", ""),
                AuthError::AccessDenied(
                    "Query-string authentication requires the Signature, Expires and \
                     AWSAccessKeyId parameters"
                        .to_owned(),
                ),
            ),
            (
                query.replace("Expires=1369357200", "Expires=soon"),
                AuthError::AccessDenied(
                    "Invalid date (should be seconds since epoch): soon".to_owned(),
                ),
            ),
            (
                query.replace("Expires=1369357200", "Expires=1369353599"),
                AuthError::AccessDenied("Request has expired".to_owned()),
            ),
        ] {
            let error = query_request("GET", &tampered).run(now).unwrap_err();
            assert_eq!(error, expected, "{tampered}");
            assert_eq!(error.status(), 403);
        }
        assert_eq!(
            query_request("PUT", &query).run(now).unwrap_err(),
            AuthError::signature_mismatch()
        );
        // Unsigned parameters may be added, as on AWS.
        query_request("GET", &format!("{query}&x-id=GetObject"))
            .run(now)
            .unwrap();
    }

    /// Goal: botocore's SigV2 URLs carry the Content-Type (and x-amz-*
    /// headers) it signed as query parameters, and the client sends no such
    /// header; the parameter then stands for the header. A header that is
    /// sent must match what was signed.
    #[test]
    fn headers_carried_in_the_query_are_signed() {
        let now = at(MAY_24_2013);
        let signed = presign("PUT", "/b/k", "", "text/plain", "1369357200");
        let query = format!("{signed}&content-type=text%2Fplain");
        query_request("PUT", &query).run(now).unwrap();
        let mut with_header = query_request("PUT", &query);
        with_header
            .headers
            .insert("content-type", HeaderValue::from_static("text/plain"));
        with_header.run(now).unwrap();
        with_header
            .headers
            .insert("content-type", HeaderValue::from_static("text/html"));
        assert_eq!(
            with_header.run(now).unwrap_err(),
            AuthError::signature_mismatch()
        );
        // Without the parameter, nothing stands for the signed type.
        assert_eq!(
            query_request("PUT", &signed).run(now).unwrap_err(),
            AuthError::signature_mismatch()
        );

        // x-amz-* parameters are signed among the headers.
        let string = string_to_sign(
            "PUT",
            b"",
            b"",
            b"1369357200",
            b"x-amz-acl:private\nx-amz-meta-a:b\n",
            b"/b/k",
        );
        let signature = encode_signature(&signature(SECRET, &string)).replace('+', "%2B");
        let query = format!(
            "AWSAccessKeyId={AKID}&Signature={}&x-amz-acl=private&X-Amz-Meta-A=b&Expires=1369357200",
            signature.replace('/', "%2F").replace('=', "%3D")
        );
        query_request("PUT", &query).run(now).unwrap();
        assert_eq!(
            query_request(
                "PUT",
                &query.replace("x-amz-acl=private", "x-amz-acl=public-read")
            )
            .run(now)
            .unwrap_err(),
            AuthError::signature_mismatch()
        );
        let mut extra_header = query_request("PUT", &query);
        extra_header
            .headers
            .insert("x-amz-tagging", HeaderValue::from_static("a=b"));
        assert_eq!(
            extra_header.run(now).unwrap_err(),
            AuthError::signature_mismatch()
        );
    }

    /// URLs that boto3 1.43.11 (botocore 1.43.11) presigned with its
    /// defaults, which are SigV2 query URLs in `us-east-1`, with AWS's
    /// example credentials and the clock patched so that `Expires` is
    /// 4102444800 (2100-01-01T00:00:00Z). Generated with:
    ///
    /// ```python
    /// creds = dict(aws_access_key_id="AKIAIOSFODNN7EXAMPLE", region_name="us-east-1",
    ///              aws_secret_access_key="wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY")
    /// path = boto3.client("s3", endpoint_url="http://127.0.0.1:9000",
    ///                     config=Config(s3={"addressing_style": "path"}), **creds)
    /// virt = boto3.client("s3", endpoint_url="http://localhost:9000",
    ///                     config=Config(s3={"addressing_style": "virtual"}), **creds)
    /// with mock.patch("botocore.auth.time.time", return_value=4102444800 - 3600):
    ///     path.generate_presigned_url("get_object",
    ///         Params={"Bucket": "golden", "Key": "photos/a b+c~d.jpg"}, ExpiresIn=3600)
    ///     # ... and the other operations below, in this order: put_object (same key),
    ///     # put_object with ContentType="text/plain", Metadata={"Note": "x y"},
    ///     # get_object with VersionId="v+1/2=" and ResponseContentDisposition,
    ///     # upload_part with UploadId="a+b/c=", PartNumber=3, list_objects_v2 with
    ///     # Prefix="a b", get_object_acl, and virt.get_object of key "v/k".
    /// ```
    const BOTO3_URLS: &[(&str, &str)] = &[
        (
            "GET",
            "http://127.0.0.1:9000/golden/photos/a%20b%2Bc~d.jpg?AWSAccessKeyId=AKIAIOSFODNN7EXAMPLE&Signature=a%2FQH9TSVbhLvaGsDtEm0UmLgw7g%3D&Expires=4102444800",
        ),
        (
            "PUT",
            "http://127.0.0.1:9000/golden/photos/a%20b%2Bc~d.jpg?AWSAccessKeyId=AKIAIOSFODNN7EXAMPLE&Signature=FFSzgK0vtd5RtUALyWjwxUQDbIs%3D&Expires=4102444800",
        ),
        (
            "PUT",
            "http://127.0.0.1:9000/golden/typed?AWSAccessKeyId=AKIAIOSFODNN7EXAMPLE&Signature=5q3qSbRBuclk9z7NoMxxoYG10gM%3D&content-type=text%2Fplain&x-amz-meta-note=x%20y&Expires=4102444800",
        ),
        (
            "GET",
            "http://127.0.0.1:9000/golden/k?versionId=v%2B1%2F2%3D&response-content-disposition=attachment%3B%20filename%3D%22a%20b%2Bc.txt%22&AWSAccessKeyId=AKIAIOSFODNN7EXAMPLE&Signature=1Pxt1%2FyUO2SlrQIXR%2BAj1PCbtsQ%3D&Expires=4102444800",
        ),
        (
            "PUT",
            "http://127.0.0.1:9000/golden/k?uploadId=a%2Bb%2Fc%3D&partNumber=3&AWSAccessKeyId=AKIAIOSFODNN7EXAMPLE&Signature=yHwpFCB6SUjRhvOmvx9Utzt3S7w%3D&Expires=4102444800",
        ),
        (
            "GET",
            "http://127.0.0.1:9000/golden?list-type=2&prefix=a%20b&encoding-type=url&AWSAccessKeyId=AKIAIOSFODNN7EXAMPLE&Signature=yP%2FHrfP6%2B0wBHEr7rr%2B6AAkhxu4%3D&Expires=4102444800",
        ),
        (
            "GET",
            "http://127.0.0.1:9000/golden/k?acl&AWSAccessKeyId=AKIAIOSFODNN7EXAMPLE&Signature=NZDl0V8je7UpTOuqq9IbLhZJ9%2Fw%3D&Expires=4102444800",
        ),
        (
            "GET",
            "http://golden.localhost:9000/v/k?AWSAccessKeyId=AKIAIOSFODNN7EXAMPLE&Signature=mtDWrR3turVYvua6IPnCfOPQsNw%3D&Expires=4102444800",
        ),
    ];

    /// Goal: what boto3 really sends by default verifies, up to and
    /// including its `Expires` second, and only for its method and URL.
    /// Method: the golden URLs above, sent as a client (curl) sends them:
    /// the URL and a `Host` header, nothing else.
    #[test]
    fn boto3_default_presigned_urls_verify() {
        const EXPIRES: u64 = 4_102_444_800;
        for &(method, url) in BOTO3_URLS {
            let rest = url.strip_prefix("http://").unwrap();
            let (host, target) = rest.split_at(rest.find('/').unwrap());
            let (path, query) = target.split_once('?').unwrap();
            let virtual_host_bucket = host.strip_suffix(".localhost:9000");
            let request = Request {
                method,
                path,
                query: Some(query),
                headers: headers(&[("host", host)]),
                virtual_host_bucket,
            };
            for now in [EXPIRES - 3600, EXPIRES] {
                let authenticated = request
                    .run(at(now))
                    .unwrap_or_else(|error| panic!("{url}: {error}"));
                assert!(matches!(authenticated.payload, PayloadMode::Unsigned));
            }
            assert_eq!(
                request.run(at(EXPIRES + 1)).unwrap_err(),
                AuthError::AccessDenied("Request has expired".to_owned()),
                "{url}"
            );
            let other_method = Request {
                method: if method == "GET" { "DELETE" } else { "GET" },
                headers: request.headers.clone(),
                ..request
            };
            assert_eq!(
                other_method.run(at(EXPIRES)).unwrap_err(),
                AuthError::signature_mismatch(),
                "{url}"
            );
            let signature_at = query.find("Signature=").unwrap() + "Signature=".len();
            let mut tampered = query.to_owned();
            let flipped = if &query[signature_at..=signature_at] == "A" {
                "B"
            } else {
                "A"
            };
            tampered.replace_range(signature_at..=signature_at, flipped);
            let tampered = Request {
                query: Some(&tampered),
                headers: request.headers.clone(),
                ..request
            };
            assert_eq!(
                tampered.run(at(EXPIRES)).unwrap_err(),
                AuthError::signature_mismatch(),
                "{url}"
            );
        }
    }
}
