//! Query authentication: presigned URLs.
//!
//! ```text
//! ?X-Amz-Algorithm=AWS4-HMAC-SHA256
//! &X-Amz-Credential=AKID%2FYYYYMMDD%2Fregion%2Fs3%2Faws4_request
//! &X-Amz-Date=YYYYMMDD'T'HHMMSS'Z'&X-Amz-Expires=seconds
//! &X-Amz-SignedHeaders=host[;…]&X-Amz-Signature=hex   [&X-Amz-Security-Token=…]
//! ```
//!
//! A presigned URL is valid from `X-Amz-Date` for `X-Amz-Expires` seconds
//! (1 to 604800, a week: the signing key is derived per day and AWS caps the
//! lifetime there). The 15-minute clock-skew rule does not apply, since a URL
//! is meant to be used later; only a date more than 15 minutes in the
//! future is refused, as AWS refuses it ("Request is not yet valid"), because
//! a clock that far ahead cannot be told apart from a URL minted to start
//! late. The canonical query is every parameter but `X-Amz-Signature`, and
//! the payload hash is `x-amz-content-sha256` when sent (else
//! `UNSIGNED-PAYLOAD`), so presigned uploads may still declare a body hash.
//!
//! <https://docs.aws.amazon.com/AmazonS3/latest/API/sigv4-query-string-auth.html>

use std::borrow::Cow;

use crate::auth::amz_date::AmzDate;
use crate::auth::authorization::invalid_access_key_id;
use crate::auth::credentials::CredentialStore;
use crate::auth::payload::{ContentSha256, presigned_payload_hash};
use crate::auth::sigv4::{self, ALGORITHM, SERVICE, SignedRequest, SigningKeyCache};
use crate::auth::{AuthError, Authenticated, RequestView};
use crate::limits::{CLOCK_SKEW_MS_MAX, PRESIGNED_EXPIRES_SECONDS_MAX};

/// Whether the query carries SigV4 query authentication.
pub(crate) fn has_query_auth(query: &str) -> bool {
    parameter_names(query).any(|name| {
        matches!(
            name,
            "X-Amz-Algorithm" | "X-Amz-Credential" | "X-Amz-Signature"
        )
    })
}

fn parameter_names(query: &str) -> impl Iterator<Item = &str> {
    query.split('&').map(|parameter| {
        parameter
            .split_once('=')
            .map_or(parameter, |(name, _)| name)
    })
}

/// The authentication parameters of a presigned URL, percent-decoded.
/// When a parameter repeats, the first one counts.
#[derive(Debug, Default)]
struct QueryAuth<'a> {
    algorithm: Option<Cow<'a, str>>,
    credential: Option<Cow<'a, str>>,
    date: Option<Cow<'a, str>>,
    expires: Option<Cow<'a, str>>,
    signed_headers: Option<Cow<'a, str>>,
    signature: Option<Cow<'a, str>>,
    content_sha256: Option<Cow<'a, str>>,
}

impl<'a> QueryAuth<'a> {
    fn parse(query: &'a str) -> Result<Self, AuthError> {
        let mut auth = Self::default();
        for parameter in query.split('&') {
            let (name, value) = parameter.split_once('=').unwrap_or((parameter, ""));
            let slot = match name {
                "X-Amz-Algorithm" => &mut auth.algorithm,
                "X-Amz-Credential" => &mut auth.credential,
                "X-Amz-Date" => &mut auth.date,
                "X-Amz-Expires" => &mut auth.expires,
                "X-Amz-SignedHeaders" => &mut auth.signed_headers,
                "X-Amz-Signature" => &mut auth.signature,
                "X-Amz-Content-Sha256" => &mut auth.content_sha256,
                _ => continue,
            };
            if slot.is_none() {
                // Decoded as the canonical query decodes it (a `+` is a
                // space), so that what is checked is what is signed.
                let decoded =
                    String::from_utf8(sigv4::decode_query_component(value)).map_err(|_| {
                        query_error(format!("The {name} parameter is not valid UTF-8."))
                    })?;
                *slot = Some(Cow::Owned(decoded));
            }
        }
        Ok(auth)
    }
}

/// Authenticates a request by its query parameters.
pub(crate) fn authenticate_presigned(
    request: &RequestView<'_>,
    query: &str,
    store: &CredentialStore,
    region: &str,
    now_ms: i64,
    cache: &mut SigningKeyCache,
) -> Result<Authenticated, AuthError> {
    let auth = QueryAuth::parse(query)?;
    let (
        Some(algorithm),
        Some(credential),
        Some(date),
        Some(expires),
        Some(signed_headers),
        Some(signature),
    ) = (
        auth.algorithm.as_deref(),
        auth.credential.as_deref(),
        auth.date.as_deref(),
        auth.expires.as_deref(),
        auth.signed_headers
            .as_deref()
            .filter(|signed_headers| !signed_headers.is_empty()),
        auth.signature.as_deref(),
    )
    else {
        return Err(query_error(
            "Query-string authentication version 4 requires the X-Amz-Algorithm, X-Amz-Credential, \
             X-Amz-Signature, X-Amz-Date, X-Amz-SignedHeaders, and X-Amz-Expires parameters.",
        ));
    };
    match algorithm {
        ALGORITHM => {}
        "AWS4-ECDSA-P256-SHA256" => {
            return Err(AuthError::NotImplemented(
                "A header you provided implies functionality that is not implemented: \
                 SigV4a (AWS4-ECDSA-P256-SHA256) is not supported."
                    .to_owned(),
            ));
        }
        _ => {
            return Err(query_error(
                "X-Amz-Algorithm only supports \"AWS4-HMAC-SHA256\"",
            ));
        }
    }
    let credential = sigv4::parse_credential_scope(credential, region).map_err(|fault| {
        query_error(format!(
            "Error parsing the X-Amz-Credential parameter; {}",
            fault.describe(region)
        ))
    })?;
    let request_time = AmzDate::parse_iso8601_basic(date).ok_or_else(|| {
        query_error("X-Amz-Date must be in the ISO8601 Long Format \"yyyyMMdd'T'HHmmss'Z'\"")
    })?;
    let request_date = request_time.date_stamp();
    if credential.date != request_date {
        return Err(query_error(format!(
            "Invalid credential date \"{}\". This date is not the same as X-Amz-Date: \"{request_date}\".",
            credential.date
        )));
    }
    let expires_seconds = parse_expires(expires)?;

    check_validity(request_time, expires_seconds, now_ms)?;

    let access_key_id = credential.access_key_id;
    let secret_access_key = store
        .secret_access_key(access_key_id)
        .ok_or_else(invalid_access_key_id)?;
    sigv4::check_headers_signed(request.headers, signed_headers)?;

    let header_hash = request
        .headers
        .get("x-amz-content-sha256")
        .map(http::HeaderValue::as_bytes);
    let payload_hash = presigned_payload_hash(header_hash, auth.content_sha256.as_deref());
    let content = ContentSha256::parse(payload_hash)?;
    let payload_hash =
        std::str::from_utf8(payload_hash).expect("a recognized payload hash is ASCII");

    let key = cache.signing_key(
        access_key_id,
        secret_access_key,
        credential.date,
        region,
        SERVICE,
    );
    let amz_date = request_time.iso8601_basic();
    let scope = sigv4::scope(credential.date, region, SERVICE);
    let canonical_query = sigv4::canonical_query_string(query, true);
    let signed = SignedRequest {
        method: request.method,
        raw_path: request.path,
        canonical_query: &canonical_query,
        headers: request.headers,
        signed_headers,
        payload_hash,
        amz_date: &amz_date,
        scope: &scope,
    };
    let signature = sigv4::parse_signature(signature).ok_or_else(AuthError::signature_mismatch)?;
    sigv4::verify_signature(&signed, &key, &signature)?;

    Ok(Authenticated {
        access_key_id: access_key_id.to_owned(),
        payload: content.into_mode(&key, &amz_date, &scope, signature),
    })
}

/// `X-Amz-Expires`: whole seconds, 1 to [`PRESIGNED_EXPIRES_SECONDS_MAX`].
fn parse_expires(text: &str) -> Result<u64, AuthError> {
    let all_digits =
        |digits: &str| !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit());
    if text.strip_prefix('-').is_some_and(all_digits) {
        return Err(query_error("X-Amz-Expires must be non-negative"));
    }
    if !all_digits(text) {
        return Err(query_error("X-Amz-Expires should be a number"));
    }
    // All digits: the only parse failure is overflow, which is too large too.
    let seconds = text.parse::<u64>().unwrap_or(u64::MAX);
    if seconds > PRESIGNED_EXPIRES_SECONDS_MAX {
        return Err(query_error(
            "X-Amz-Expires must be less than a week (in seconds); that is, the given X-Amz-Expires \
             must be less than 604800 seconds",
        ));
    }
    if seconds == 0 {
        return Err(query_error("X-Amz-Expires must be at least 1 second"));
    }
    Ok(seconds)
}

/// Valid from `X-Amz-Date` (less the clock skew) to `X-Amz-Date` plus
/// `X-Amz-Expires`, both ends included.
fn check_validity(
    request_time: AmzDate,
    expires_seconds: u64,
    now_ms: i64,
) -> Result<(), AuthError> {
    let start_ms = request_time.unix_ms();
    // Both fit easily: |start_ms| < 3e14 and the skew and expiry are small.
    let skew_ms = i64::try_from(CLOCK_SKEW_MS_MAX).expect("the skew limit fits i64");
    let expires_ms =
        i64::try_from(expires_seconds * 1000).expect("X-Amz-Expires is at most a week");
    if now_ms < start_ms - skew_ms {
        return Err(AuthError::AccessDenied(
            "Request is not yet valid".to_owned(),
        ));
    }
    if now_ms > start_ms + expires_ms {
        return Err(AuthError::AccessDenied("Request has expired".to_owned()));
    }
    Ok(())
}

fn query_error(message: impl Into<String>) -> AuthError {
    AuthError::AuthorizationQueryParametersError(message.into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::credentials::Credentials;
    use crate::auth::sigv4::{EMPTY_SHA256_HEX, SigningKey};
    use crate::auth::{PayloadMode, authenticate};
    use http::{HeaderMap, HeaderValue};
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    const AKID: &str = "AKIAIOSFODNN7EXAMPLE";
    const SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
    /// 20130524T000000Z, the time of every AWS example.
    const EXAMPLE_SECONDS: u64 = 1_369_353_600;
    const DAY_SECONDS: u64 = 86_400;

    /// The published example, `GET /test.txt` on `examplebucket`.
    const EXAMPLE_QUERY: &str = "X-Amz-Algorithm=AWS4-HMAC-SHA256\
        &X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request\
        &X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&X-Amz-SignedHeaders=host\
        &X-Amz-Signature=aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404";

    fn at(seconds: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(seconds)
    }

    fn host() -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            "host",
            HeaderValue::from_static("examplebucket.s3.amazonaws.com"),
        );
        headers
    }

    fn run(
        method: &str,
        path: &str,
        query: &str,
        headers: &HeaderMap,
        now: SystemTime,
    ) -> Result<Authenticated, AuthError> {
        let store: CredentialStore = [Credentials {
            access_key_id: AKID.to_owned(),
            secret_access_key: SECRET.to_owned(),
        }]
        .into_iter()
        .collect();
        let request = RequestView {
            method,
            path,
            query: Some(query),
            headers,
            virtual_host_bucket: None,
        };
        authenticate(
            &request,
            &store,
            "us-east-1",
            now,
            &mut SigningKeyCache::new(),
        )
    }

    /// Presigns with our primitives (pinned by the AWS vectors in
    /// `sigv4.rs`), for cases AWS published no example of. `extra` is
    /// appended to the signed query; `headers` are all signed.
    fn presign(
        method: &str,
        path: &str,
        headers: &HeaderMap,
        amz_date: &str,
        expires: &str,
        extra: &str,
    ) -> String {
        let mut names: Vec<&str> = headers.keys().map(http::HeaderName::as_str).collect();
        names.sort_unstable();
        let signed_headers = names.join(";");
        let date = &amz_date[..8];
        let mut query = format!(
            "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential={AKID}%2F{date}%2Fus-east-1%2Fs3%2Faws4_request\
             &X-Amz-Date={amz_date}&X-Amz-Expires={expires}&X-Amz-SignedHeaders={}{extra}",
            signed_headers.replace(';', "%3B")
        );
        let payload_hash = headers
            .get("x-amz-content-sha256")
            .map_or(sigv4::UNSIGNED_PAYLOAD, |value| value.to_str().unwrap());
        let canonical_query = sigv4::canonical_query_string(&query, true);
        let scope = sigv4::scope(date, "us-east-1", "s3");
        let request = SignedRequest {
            method,
            raw_path: path,
            canonical_query: &canonical_query,
            headers,
            signed_headers: &signed_headers,
            payload_hash,
            amz_date,
            scope: &scope,
        };
        let key = SigningKey::derive(SECRET, date, "us-east-1", "s3");
        query.push_str("&X-Amz-Signature=");
        query.push_str(&hex::encode(request.signature(&key, path.as_bytes())));
        query
    }

    #[test]
    fn aws_example_presigned_url_is_accepted() {
        let authenticated = run(
            "GET",
            "/test.txt",
            EXAMPLE_QUERY,
            &host(),
            at(EXAMPLE_SECONDS),
        )
        .unwrap();
        assert_eq!(authenticated.access_key_id, AKID);
        assert!(matches!(authenticated.payload, PayloadMode::Unsigned));
        // Parameter order does not matter; the signature is not signed.
        let mut parameters: Vec<&str> = EXAMPLE_QUERY.split('&').collect();
        parameters.reverse();
        run(
            "GET",
            "/test.txt",
            &parameters.join("&"),
            &host(),
            at(EXAMPLE_SECONDS),
        )
        .unwrap();
    }

    #[test]
    fn aws_example_presigned_url_rejects_tampering() {
        let now = at(EXAMPLE_SECONDS);
        let mismatch = AuthError::signature_mismatch();
        assert_eq!(
            run("GET", "/test.tx", EXAMPLE_QUERY, &host(), now).unwrap_err(),
            mismatch
        );
        assert_eq!(
            run("PUT", "/test.txt", EXAMPLE_QUERY, &host(), now).unwrap_err(),
            mismatch
        );
        let query = format!("{EXAMPLE_QUERY}&response-content-type=text%2Fhtml");
        assert_eq!(
            run("GET", "/test.txt", &query, &host(), now).unwrap_err(),
            mismatch
        );
        let query = EXAMPLE_QUERY.replace("d404", "d405");
        assert_eq!(
            run("GET", "/test.txt", &query, &host(), now).unwrap_err(),
            mismatch
        );
        let mut headers = host();
        headers.insert(
            "host",
            HeaderValue::from_static("otherbucket.s3.amazonaws.com"),
        );
        assert_eq!(
            run("GET", "/test.txt", EXAMPLE_QUERY, &headers, now).unwrap_err(),
            mismatch
        );
    }

    /// Goal: the URL is valid for exactly `X-Amz-Expires` seconds after
    /// `X-Amz-Date`, end included, and refused one second (or one
    /// millisecond) later, with no 15-minute rule inside that window.
    #[test]
    fn expiry_boundary() {
        let end = EXAMPLE_SECONDS + DAY_SECONDS;
        run("GET", "/test.txt", EXAMPLE_QUERY, &host(), at(end - 3600)).unwrap();
        run("GET", "/test.txt", EXAMPLE_QUERY, &host(), at(end)).unwrap();
        for now in [at(end + 1), at(end) + Duration::from_millis(1)] {
            let error = run("GET", "/test.txt", EXAMPLE_QUERY, &host(), now).unwrap_err();
            assert_eq!(
                error,
                AuthError::AccessDenied("Request has expired".to_owned())
            );
            assert_eq!(error.status(), 403);
        }
    }

    #[test]
    fn a_date_beyond_the_skew_in_the_future_is_not_yet_valid() {
        let skew_seconds = CLOCK_SKEW_MS_MAX / 1000;
        run(
            "GET",
            "/test.txt",
            EXAMPLE_QUERY,
            &host(),
            at(EXAMPLE_SECONDS - skew_seconds),
        )
        .unwrap();
        let error = run(
            "GET",
            "/test.txt",
            EXAMPLE_QUERY,
            &host(),
            at(EXAMPLE_SECONDS - skew_seconds - 1),
        )
        .unwrap_err();
        assert_eq!(
            error,
            AuthError::AccessDenied("Request is not yet valid".to_owned())
        );
    }

    #[test]
    fn expires_of_a_week_is_the_maximum() {
        let max = PRESIGNED_EXPIRES_SECONDS_MAX;
        assert_eq!(max, 604_800);
        let query = presign("GET", "/b/k", &host(), "20130524T000000Z", "604800", "");
        run("GET", "/b/k", &query, &host(), at(EXAMPLE_SECONDS + max)).unwrap();
        let error = run(
            "GET",
            "/b/k",
            &query,
            &host(),
            at(EXAMPLE_SECONDS + max + 1),
        )
        .unwrap_err();
        assert_eq!(error.message(), "Request has expired");

        let query = presign("GET", "/b/k", &host(), "20130524T000000Z", "604801", "");
        let error = run("GET", "/b/k", &query, &host(), at(EXAMPLE_SECONDS)).unwrap_err();
        assert_eq!(
            error,
            AuthError::AuthorizationQueryParametersError(
                "X-Amz-Expires must be less than a week (in seconds); that is, the given X-Amz-Expires \
                 must be less than 604800 seconds"
                    .to_owned()
            )
        );
        assert_eq!(error.status(), 400);
    }

    #[test]
    fn bad_expires_values_are_refused() {
        for (expires, message) in [
            ("-1", "X-Amz-Expires must be non-negative"),
            ("abc", "X-Amz-Expires should be a number"),
            ("", "X-Amz-Expires should be a number"),
            ("1.5", "X-Amz-Expires should be a number"),
            ("0", "X-Amz-Expires must be at least 1 second"),
        ] {
            let query =
                EXAMPLE_QUERY.replace("X-Amz-Expires=86400", &format!("X-Amz-Expires={expires}"));
            let error = run("GET", "/test.txt", &query, &host(), at(EXAMPLE_SECONDS)).unwrap_err();
            assert_eq!(
                error,
                AuthError::AuthorizationQueryParametersError(message.to_owned()),
                "{expires:?}"
            );
        }
        assert_eq!(parse_expires("1"), Ok(1));
        assert!(parse_expires("99999999999999999999999").is_err());
    }

    #[test]
    fn malformed_parameters_get_aws_messages() {
        let cases = [
            (
                EXAMPLE_QUERY.replace("&X-Amz-SignedHeaders=host", ""),
                "Query-string authentication version 4 requires the X-Amz-Algorithm, X-Amz-Credential, \
                 X-Amz-Signature, X-Amz-Date, X-Amz-SignedHeaders, and X-Amz-Expires parameters.",
            ),
            (
                EXAMPLE_QUERY.replace("us-east-1", "eu-west-1"),
                "Error parsing the X-Amz-Credential parameter; the region 'eu-west-1' is wrong; expecting 'us-east-1'",
            ),
            (
                EXAMPLE_QUERY.replace("%2Fs3%2F", "%2Fiam%2F"),
                "Error parsing the X-Amz-Credential parameter; incorrect service \"iam\". This endpoint belongs to \"s3\".",
            ),
            (
                EXAMPLE_QUERY.replace("X-Amz-Algorithm=AWS4-HMAC-SHA256", "X-Amz-Algorithm=HMAC"),
                "X-Amz-Algorithm only supports \"AWS4-HMAC-SHA256\"",
            ),
            (
                EXAMPLE_QUERY.replace("X-Amz-Date=20130524T000000Z", "X-Amz-Date=2013-05-24"),
                "X-Amz-Date must be in the ISO8601 Long Format \"yyyyMMdd'T'HHmmss'Z'\"",
            ),
            (
                EXAMPLE_QUERY.replace("X-Amz-Date=20130524T000000Z", "X-Amz-Date=20130525T000000Z"),
                "Invalid credential date \"20130524\". This date is not the same as X-Amz-Date: \"20130525\".",
            ),
        ];
        for (query, message) in cases {
            let error = run("GET", "/test.txt", &query, &host(), at(EXAMPLE_SECONDS)).unwrap_err();
            assert_eq!(
                error,
                AuthError::AuthorizationQueryParametersError(message.to_owned()),
                "{query}"
            );
        }
        let query = EXAMPLE_QUERY.replace(
            "X-Amz-Algorithm=AWS4-HMAC-SHA256",
            "X-Amz-Algorithm=AWS4-ECDSA-P256-SHA256",
        );
        assert_eq!(
            run("GET", "/test.txt", &query, &host(), at(EXAMPLE_SECONDS))
                .unwrap_err()
                .code(),
            "NotImplemented"
        );
    }

    #[test]
    fn unknown_key_and_unsigned_headers_are_refused() {
        let query = EXAMPLE_QUERY.replace(AKID, "AKIAUNKNOWN");
        assert_eq!(
            run("GET", "/test.txt", &query, &host(), at(EXAMPLE_SECONDS)).unwrap_err(),
            invalid_access_key_id()
        );
        let mut headers = host();
        headers.insert("x-amz-acl", HeaderValue::from_static("public-read"));
        let error = run(
            "GET",
            "/test.txt",
            EXAMPLE_QUERY,
            &headers,
            at(EXAMPLE_SECONDS),
        )
        .unwrap_err();
        assert_eq!(
            error.message(),
            "There were headers present in the request which were not signed"
        );
        let query = EXAMPLE_QUERY.replace("X-Amz-SignedHeaders=host", "X-Amz-SignedHeaders=range");
        assert_eq!(
            run("GET", "/test.txt", &query, &host(), at(EXAMPLE_SECONDS))
                .unwrap_err()
                .code(),
            "AccessDenied"
        );
    }

    #[test]
    fn declared_body_hash_and_security_token_are_signed() {
        let mut headers = host();
        headers.insert(
            "x-amz-content-sha256",
            HeaderValue::from_static(EMPTY_SHA256_HEX),
        );
        let query = presign(
            "PUT",
            "/b/k",
            &headers,
            "20130524T000000Z",
            "3600",
            "&X-Amz-Security-Token=token%2Bvalue",
        );
        let authenticated = run("PUT", "/b/k", &query, &headers, at(EXAMPLE_SECONDS)).unwrap();
        assert!(matches!(authenticated.payload, PayloadMode::Sha256(_)));
        let tampered = query.replace("token%2Bvalue", "token%2Bother");
        assert_eq!(
            run("PUT", "/b/k", &tampered, &headers, at(EXAMPLE_SECONDS)).unwrap_err(),
            AuthError::signature_mismatch()
        );
        // The JavaScript SDK declares the payload in the query instead.
        let query = presign(
            "PUT",
            "/b/k",
            &host(),
            "20130524T000000Z",
            "3600",
            "&X-Amz-Content-Sha256=UNSIGNED-PAYLOAD",
        );
        let authenticated = run("PUT", "/b/k", &query, &host(), at(EXAMPLE_SECONDS)).unwrap();
        assert!(matches!(authenticated.payload, PayloadMode::Unsigned));
    }

    /// Goal: in a presigned URL too, a signed `%2B` cannot become a `+`
    /// (a space to the router) without breaking the signature.
    #[test]
    fn plus_and_percent_2b_are_signed_apart() {
        let query = presign(
            "GET",
            "/b/k",
            &host(),
            "20130524T000000Z",
            "3600",
            "&response-content-type=a%2Bb",
        );
        run("GET", "/b/k", &query, &host(), at(EXAMPLE_SECONDS)).unwrap();
        let tampered = query.replace("a%2Bb", "a+b");
        assert_eq!(
            run("GET", "/b/k", &tampered, &host(), at(EXAMPLE_SECONDS)).unwrap_err(),
            AuthError::signature_mismatch()
        );
    }

    #[test]
    fn query_auth_is_detected_by_parameter_name() {
        assert!(has_query_auth(EXAMPLE_QUERY));
        assert!(has_query_auth("X-Amz-Signature"));
        assert!(!has_query_auth("prefix=X-Amz-Signature"));
        assert!(!has_query_auth("x-amz-signature=1"));
    }
}
