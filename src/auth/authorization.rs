//! Header authentication: `Authorization: AWS4-HMAC-SHA256 Credential=…,
//! SignedHeaders=…, Signature=…`.
//!
//! The checks run in this order, each with the error S3 gives:
//! 1. the header parses (`AuthorizationHeaderMalformed`, or `NotImplemented`
//!    for SigV4a, `InvalidArgument` for unknown schemes; SigV2 headers are
//!    `sigv2.rs`'s);
//! 2. `x-amz-content-sha256` is present and valid (S3 requires it for SigV4:
//!    `InvalidRequest` when missing, `InvalidArgument` when unknown);
//! 3. the request time comes from `x-amz-date`, or from `Date` when
//!    `x-amz-date` is absent (`AccessDenied` when neither parses);
//! 4. the credential scope's date is the request's date;
//! 5. the request time is within 15 minutes of the server clock
//!    (`RequestTimeTooSkewed`): a captured request cannot be replayed later;
//! 6. the access key exists (`InvalidAccessKeyId`);
//! 7. `host` and every `x-amz-*` header are signed (`AccessDenied`);
//! 8. the signature matches (`SignatureDoesNotMatch`).
//!
//! <https://docs.aws.amazon.com/AmazonS3/latest/API/sigv4-auth-using-authorization-header.html>

use http::HeaderMap;

use crate::auth::amz_date::AmzDate;
use crate::auth::credentials::CredentialStore;
use crate::auth::payload::ContentSha256;
use crate::auth::sigv4::{
    self, ALGORITHM, CredentialScope, SERVICE, SignedRequest, SigningKeyCache,
};
use crate::auth::{AuthError, Authenticated, RequestView};
use crate::limits::CLOCK_SKEW_MS_MAX;

const MALFORMED_PREFIX: &str = "The authorization header is malformed; ";

/// The three components of a SigV4 `Authorization` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuthorizationHeader<'a> {
    pub credential: CredentialScope<'a>,
    /// The `a;b;c` list, exactly as sent: it is signed verbatim.
    pub signed_headers: &'a str,
    /// The hex signature, decoded only when it is compared, so that every
    /// other fault is reported first, as S3 does.
    pub signature: &'a str,
}

impl<'a> AuthorizationHeader<'a> {
    /// Parses the header value after the algorithm name. Components may come
    /// in any order, with or without spaces after the commas, as the
    /// different SDKs write them.
    ///
    /// # Errors
    /// `AuthorizationHeaderMalformed` with S3's wording.
    pub fn parse_components(components: &'a str, region: &str) -> Result<Self, AuthError> {
        let mut credential = None;
        let mut signed_headers = None;
        let mut signature = None;
        for component in components
            .split(',')
            .map(str::trim)
            .filter(|component| !component.is_empty())
        {
            let Some((name, value)) = component.split_once('=') else {
                return Err(malformed_component(component));
            };
            let slot = match name.trim() {
                "Credential" => &mut credential,
                "SignedHeaders" => &mut signed_headers,
                "Signature" => &mut signature,
                _ => return Err(malformed_component(component)),
            };
            if slot.replace(value.trim()).is_some() {
                return Err(malformed_component(component));
            }
        }
        let (Some(credential), Some(signed_headers), Some(signature)) =
            (credential, signed_headers, signature)
        else {
            return Err(malformed(
                "the authorization header requires three components: Credential, SignedHeaders, and Signature.",
            ));
        };
        let credential = sigv4::parse_credential_scope(credential, region)
            .map_err(|fault| malformed(&fault.describe(region)))?;
        if signed_headers.is_empty() {
            return Err(malformed_component("SignedHeaders="));
        }
        Ok(Self {
            credential,
            signed_headers,
            signature,
        })
    }
}

/// Authenticates a request by its `Authorization` header (any scheme).
pub(crate) fn authenticate_header(
    request: &RequestView<'_>,
    authorization: &str,
    store: &CredentialStore,
    region: &str,
    now_ms: i64,
    cache: &mut SigningKeyCache,
) -> Result<Authenticated, AuthError> {
    let components = scheme_components(authorization)?;
    let header = AuthorizationHeader::parse_components(components, region)?;

    let Some(content_sha256) = request.headers.get("x-amz-content-sha256") else {
        return Err(AuthError::InvalidRequest(
            "Missing required header for this request: x-amz-content-sha256".to_owned(),
        ));
    };
    let content = ContentSha256::parse(content_sha256.as_bytes())?;
    let payload_hash = content_sha256
        .to_str()
        .expect("a recognized x-amz-content-sha256 is ASCII");

    let request_time = request_time(request.headers)?;
    let request_date = request_time.date_stamp();
    if header.credential.date != request_date {
        return Err(malformed(&format!(
            "Invalid credential date \"{}\". This date is not the same as X-Amz-Date: \"{request_date}\".",
            header.credential.date
        )));
    }
    if now_ms.abs_diff(request_time.unix_ms()) > CLOCK_SKEW_MS_MAX {
        return Err(AuthError::RequestTimeTooSkewed(
            "The difference between the request time and the current time is too large.".to_owned(),
        ));
    }

    let access_key_id = header.credential.access_key_id;
    let secret_access_key = store
        .secret_access_key(access_key_id)
        .ok_or_else(invalid_access_key_id)?;
    sigv4::check_headers_signed(request.headers, header.signed_headers)?;

    let key = cache.signing_key(
        access_key_id,
        secret_access_key,
        header.credential.date,
        region,
        SERVICE,
    );
    let amz_date = request_time.iso8601_basic();
    let scope = sigv4::scope(header.credential.date, region, SERVICE);
    let canonical_query = sigv4::canonical_query_string(request.query.unwrap_or(""), false);
    let signed = SignedRequest {
        method: request.method,
        raw_path: request.path,
        canonical_query: &canonical_query,
        headers: request.headers,
        signed_headers: header.signed_headers,
        payload_hash,
        amz_date: &amz_date,
        scope: &scope,
    };
    let signature =
        sigv4::parse_signature(header.signature).ok_or_else(AuthError::signature_mismatch)?;
    sigv4::verify_signature(&signed, &key, &signature)?;

    Ok(Authenticated {
        access_key_id: access_key_id.to_owned(),
        payload: content.into_mode(&key, &amz_date, &scope, signature),
    })
}

/// Splits off the scheme, refusing every scheme but SigV4 with the error S3
/// gives for it.
fn scheme_components(authorization: &str) -> Result<&str, AuthError> {
    if let Some(rest) = authorization.strip_prefix(ALGORITHM) {
        return match rest.strip_prefix(' ') {
            Some(components) => Ok(components),
            None => Err(AuthError::InvalidArgument(
                "Authorization header is invalid -- one and only one ' ' (space) required"
                    .to_owned(),
            )),
        };
    }
    if authorization.starts_with("AWS4-ECDSA-P256-SHA256") {
        return Err(AuthError::NotImplemented(
            "A header you provided implies functionality that is not implemented: \
             SigV4a (AWS4-ECDSA-P256-SHA256) is not supported."
                .to_owned(),
        ));
    }
    Err(AuthError::InvalidArgument(
        "Unsupported Authorization Type".to_owned(),
    ))
}

/// The signed request time: `x-amz-date` when present, else `Date`.
fn request_time(headers: &HeaderMap) -> Result<AmzDate, AuthError> {
    let parsed = match headers.get("x-amz-date") {
        Some(value) => value.to_str().ok().and_then(AmzDate::parse_iso8601_basic),
        None => headers
            .get(http::header::DATE)
            .and_then(|value| value.to_str().ok())
            .and_then(AmzDate::parse_http_date),
    };
    parsed.ok_or_else(|| {
        AuthError::AccessDenied(
            "AWS authentication requires a valid Date or x-amz-date header".to_owned(),
        )
    })
}

pub(crate) fn invalid_access_key_id() -> AuthError {
    AuthError::InvalidAccessKeyId(
        "The AWS Access Key Id you provided does not exist in our records.".to_owned(),
    )
}

fn malformed(detail: &str) -> AuthError {
    AuthError::AuthorizationHeaderMalformed(format!("{MALFORMED_PREFIX}{detail}"))
}

fn malformed_component(component: &str) -> AuthError {
    malformed(&format!(
        "the authorization component \"{component}\" is malformed."
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::chunked::{AwsChunkedDecoder, AwsChunkedMode, ChunkStep};
    use crate::auth::credentials::Credentials;
    use crate::auth::sigv4::{EMPTY_SHA256_HEX, SigningKey};
    use crate::auth::{PayloadMode, authenticate};
    use http::{HeaderName, HeaderValue};
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    const AKID: &str = "AKIAIOSFODNN7EXAMPLE";
    const SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
    /// 20130524T000000Z, the time of every AWS example.
    const EXAMPLE_SECONDS: u64 = 1_369_353_600;

    fn at(seconds: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(seconds)
    }

    fn store() -> CredentialStore {
        [Credentials {
            access_key_id: AKID.to_owned(),
            secret_access_key: SECRET.to_owned(),
        }]
        .into_iter()
        .collect()
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

    fn run(
        method: &str,
        path: &str,
        query: Option<&str>,
        headers: &HeaderMap,
        now: SystemTime,
    ) -> Result<Authenticated, AuthError> {
        let request = RequestView {
            method,
            path,
            query,
            headers,
            virtual_host_bucket: None,
        };
        authenticate(
            &request,
            &store(),
            "us-east-1",
            now,
            &mut SigningKeyCache::new(),
        )
    }

    fn authorization(signed_headers: &str, signature: &str) -> String {
        format!(
            "AWS4-HMAC-SHA256 Credential={AKID}/20130524/us-east-1/s3/aws4_request,SignedHeaders={signed_headers},Signature={signature}"
        )
    }

    /// Signs `headers` (all of them, sorted) with our primitives, which the
    /// AWS vectors in `sigv4.rs` pin down, to build requests AWS published no
    /// example for.
    fn sign(method: &str, path: &str, query: &str, headers: &mut HeaderMap, amz_date: &str) {
        let mut names: Vec<&str> = headers.keys().map(HeaderName::as_str).collect();
        names.sort_unstable();
        let signed_headers = names.join(";");
        let payload_hash = headers["x-amz-content-sha256"].to_str().unwrap().to_owned();
        let date = &amz_date[..8];
        let scope = sigv4::scope(date, "us-east-1", "s3");
        let canonical_query = sigv4::canonical_query_string(query, false);
        let request = SignedRequest {
            method,
            raw_path: path,
            canonical_query: &canonical_query,
            headers,
            signed_headers: &signed_headers,
            payload_hash: &payload_hash,
            amz_date,
            scope: &scope,
        };
        let key = SigningKey::derive(SECRET, date, "us-east-1", "s3");
        let signature = hex::encode(request.signature(&key, path.as_bytes()));
        let value = HeaderValue::from_str(&authorization(&signed_headers, &signature)).unwrap();
        headers.insert(http::header::AUTHORIZATION, value);
    }

    fn get_object_example() -> HeaderMap {
        let mut map = headers(&[
            ("host", "examplebucket.s3.amazonaws.com"),
            ("range", "bytes=0-9"),
            ("x-amz-content-sha256", EMPTY_SHA256_HEX),
            ("x-amz-date", "20130524T000000Z"),
        ]);
        let value = authorization(
            "host;range;x-amz-content-sha256;x-amz-date",
            "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41",
        );
        map.insert(
            http::header::AUTHORIZATION,
            HeaderValue::from_str(&value).unwrap(),
        );
        map
    }

    #[test]
    fn aws_example_get_object_is_accepted() {
        let authenticated = run(
            "GET",
            "/test.txt",
            None,
            &get_object_example(),
            at(EXAMPLE_SECONDS),
        )
        .unwrap();
        assert_eq!(authenticated.access_key_id, AKID);
        let PayloadMode::Sha256(hash) = authenticated.payload else {
            panic!("{:?}", authenticated.payload)
        };
        assert_eq!(hex::encode(hash), EMPTY_SHA256_HEX);
    }

    #[test]
    fn aws_example_put_object_is_accepted_with_the_raw_dollar_sign() {
        let mut map = headers(&[
            ("date", "Fri, 24 May 2013 00:00:00 GMT"),
            ("host", "examplebucket.s3.amazonaws.com"),
            (
                "x-amz-content-sha256",
                "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072",
            ),
            ("x-amz-date", "20130524T000000Z"),
            ("x-amz-storage-class", "REDUCED_REDUNDANCY"),
        ]);
        let value = authorization(
            "date;host;x-amz-content-sha256;x-amz-date;x-amz-storage-class",
            "98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd",
        );
        map.insert(
            http::header::AUTHORIZATION,
            HeaderValue::from_str(&value).unwrap(),
        );
        // The request line of the example is `PUT test$file.text`.
        for path in ["/test$file.text", "/test%24file.text"] {
            let authenticated = run("PUT", path, None, &map, at(EXAMPLE_SECONDS)).unwrap();
            assert!(matches!(authenticated.payload, PayloadMode::Sha256(_)));
        }
    }

    #[test]
    fn aws_examples_with_queries_are_accepted() {
        let base = [
            ("host", "examplebucket.s3.amazonaws.com"),
            ("x-amz-content-sha256", EMPTY_SHA256_HEX),
            ("x-amz-date", "20130524T000000Z"),
        ];
        for (query, signature) in [
            (
                "lifecycle",
                "fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543",
            ),
            (
                "max-keys=2&prefix=J",
                "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7",
            ),
        ] {
            let mut map = headers(&base);
            let value = authorization("host;x-amz-content-sha256;x-amz-date", signature);
            map.insert(
                http::header::AUTHORIZATION,
                HeaderValue::from_str(&value).unwrap(),
            );
            run("GET", "/", Some(query), &map, at(EXAMPLE_SECONDS)).unwrap();
            // The query is signed: another one fails.
            let error = run(
                "GET",
                "/",
                Some("max-keys=3&prefix=J"),
                &map,
                at(EXAMPLE_SECONDS),
            )
            .unwrap_err();
            assert_eq!(error, AuthError::signature_mismatch());
        }
    }

    /// The whole chunked-upload example: the request seeds the decoder, which
    /// then verifies the published chunk signatures.
    #[test]
    fn aws_example_chunked_upload_end_to_end() {
        let mut map = headers(&[
            ("content-encoding", "aws-chunked"),
            ("content-length", "66824"),
            ("host", "s3.amazonaws.com"),
            ("x-amz-content-sha256", "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"),
            ("x-amz-date", "20130524T000000Z"),
            ("x-amz-decoded-content-length", "66560"),
            ("x-amz-storage-class", "REDUCED_REDUNDANCY"),
        ]);
        let value = authorization(
            "content-encoding;content-length;host;x-amz-content-sha256;x-amz-date;x-amz-decoded-content-length;x-amz-storage-class",
            "4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9",
        );
        map.insert(
            http::header::AUTHORIZATION,
            HeaderValue::from_str(&value).unwrap(),
        );
        let authenticated = run(
            "PUT",
            "/examplebucket/chunkObject.txt",
            None,
            &map,
            at(EXAMPLE_SECONDS),
        )
        .unwrap();
        let PayloadMode::StreamingSigned {
            trailer: false,
            seed,
        } = authenticated.payload
        else {
            panic!("{:?}", authenticated.payload)
        };
        let mut body = Vec::new();
        body.extend_from_slice(b"10000;chunk-signature=ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648\r\n");
        body.extend_from_slice(&vec![b'a'; 65536]);
        body.extend_from_slice(b"\r\n400;chunk-signature=0055627c9e194cb4542bae2aa5492e3c1575bbb81b612b7d234b86a503ef5497\r\n");
        body.extend_from_slice(&[b'a'; 1024]);
        body.extend_from_slice(b"\r\n0;chunk-signature=b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ceb9323e279d449df9\r\n\r\n");
        assert_eq!(body.len(), 66824);
        let mut decoder = AwsChunkedDecoder::new(AwsChunkedMode::Signed(seed), false);
        let mut offset = 0;
        loop {
            let (consumed, step) = decoder.step(&body[offset..]).unwrap();
            offset += consumed;
            match step {
                ChunkStep::Data { .. } => {}
                ChunkStep::End => break,
                ChunkStep::NeedMore => panic!("the example body is complete"),
            }
        }
        assert_eq!((offset, decoder.decoded_len()), (body.len(), 66560));
    }

    #[test]
    fn aws_example_chunked_upload_with_trailer_seeds_a_trailer_decoder() {
        let mut map = headers(&[
            ("content-encoding", "aws-chunked"),
            ("host", "s3.amazonaws.com"),
            (
                "x-amz-content-sha256",
                "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER",
            ),
            ("x-amz-date", "20130524T000000Z"),
            ("x-amz-decoded-content-length", "66560"),
            ("x-amz-storage-class", "REDUCED_REDUNDANCY"),
            ("x-amz-trailer", "x-amz-checksum-crc32c"),
        ]);
        let value = authorization(
            "content-encoding;host;x-amz-content-sha256;x-amz-date;x-amz-decoded-content-length;x-amz-storage-class;x-amz-trailer",
            "106e2a8a18243abcf37539882f36619c00e2dfc72633413f02d3b74544bfeb8e",
        );
        map.insert(
            http::header::AUTHORIZATION,
            HeaderValue::from_str(&value).unwrap(),
        );
        let authenticated = run(
            "PUT",
            "/examplebucket/chunkObject.txt",
            None,
            &map,
            at(EXAMPLE_SECONDS),
        )
        .unwrap();
        assert!(matches!(
            authenticated.payload,
            PayloadMode::StreamingSigned { trailer: true, .. }
        ));
    }

    #[test]
    fn component_spacing_order_and_signature_case_are_tolerated() {
        let signature = "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41";
        let credential = format!("Credential={AKID}/20130524/us-east-1/s3/aws4_request");
        let signed_headers = "SignedHeaders=host;range;x-amz-content-sha256;x-amz-date";
        for value in [
            format!("AWS4-HMAC-SHA256 {credential}, {signed_headers}, Signature={signature}"),
            format!(
                "AWS4-HMAC-SHA256 {credential},{signed_headers},Signature={}",
                signature.to_uppercase()
            ),
            format!("AWS4-HMAC-SHA256 Signature={signature},  {credential} ,{signed_headers}"),
        ] {
            let mut map = get_object_example();
            map.insert(
                http::header::AUTHORIZATION,
                HeaderValue::from_str(&value).unwrap(),
            );
            run("GET", "/test.txt", None, &map, at(EXAMPLE_SECONDS))
                .unwrap_or_else(|error| panic!("{value}: {error}"));
        }
    }

    #[test]
    fn malformed_headers_get_aws_messages() {
        let cases = [
            (
                "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/eu-west-1/s3/aws4_request, SignedHeaders=host, Signature=00",
                "The authorization header is malformed; the region 'eu-west-1' is wrong; expecting 'us-east-1'",
            ),
            (
                "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, SignedHeaders=host",
                "The authorization header is malformed; the authorization header requires three components: \
                 Credential, SignedHeaders, and Signature.",
            ),
            (
                "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3, SignedHeaders=host, Signature=00",
                "The authorization header is malformed; the Credential is mal-formed; expecting \
                 \"<YOUR-AKID>/YYYYMMDD/REGION/SERVICE/aws4_request\".",
            ),
            (
                "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/sts/aws4_request, SignedHeaders=host, Signature=00",
                "The authorization header is malformed; incorrect service \"sts\". This endpoint belongs to \"s3\".",
            ),
            (
                "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=00, Foo=1",
                "The authorization header is malformed; the authorization component \"Foo=1\" is malformed.",
            ),
            (
                "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130523/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=00",
                "The authorization header is malformed; Invalid credential date \"20130523\". \
                 This date is not the same as X-Amz-Date: \"20130524\".",
            ),
        ];
        for (value, message) in cases {
            let mut map = get_object_example();
            map.insert(
                http::header::AUTHORIZATION,
                HeaderValue::from_str(value).unwrap(),
            );
            let error = run("GET", "/test.txt", None, &map, at(EXAMPLE_SECONDS)).unwrap_err();
            assert_eq!(
                error,
                AuthError::AuthorizationHeaderMalformed(message.to_owned()),
                "{value}"
            );
            assert_eq!(error.status(), 400);
        }
        let mut map = get_object_example();
        map.insert(
            http::header::AUTHORIZATION,
            HeaderValue::from_static("AWS4-HMAC-SHA256Credential=x"),
        );
        assert_eq!(
            run("GET", "/test.txt", None, &map, at(EXAMPLE_SECONDS))
                .unwrap_err()
                .code(),
            "InvalidArgument"
        );
    }

    #[test]
    fn content_sha256_is_required_and_checked() {
        let mut map = get_object_example();
        map.remove("x-amz-content-sha256");
        assert_eq!(
            run("GET", "/test.txt", None, &map, at(EXAMPLE_SECONDS)).unwrap_err(),
            AuthError::InvalidRequest(
                "Missing required header for this request: x-amz-content-sha256".to_owned()
            )
        );
        map.insert("x-amz-content-sha256", HeaderValue::from_static("SHA256"));
        assert_eq!(
            run("GET", "/test.txt", None, &map, at(EXAMPLE_SECONDS))
                .unwrap_err()
                .code(),
            "InvalidArgument"
        );
        map.insert(
            "x-amz-content-sha256",
            HeaderValue::from_static("STREAMING-AWS4-ECDSA-P256-SHA256-PAYLOAD"),
        );
        assert_eq!(
            run("GET", "/test.txt", None, &map, at(EXAMPLE_SECONDS))
                .unwrap_err()
                .code(),
            "NotImplemented"
        );
    }

    #[test]
    fn unknown_key_and_tampering_are_refused() {
        let mut map = get_object_example();
        let value = map[http::header::AUTHORIZATION]
            .to_str()
            .unwrap()
            .replace(AKID, "AKIAUNKNOWN");
        map.insert(
            http::header::AUTHORIZATION,
            HeaderValue::from_str(&value).unwrap(),
        );
        let error = run("GET", "/test.txt", None, &map, at(EXAMPLE_SECONDS)).unwrap_err();
        assert_eq!(error, invalid_access_key_id());
        assert_eq!(error.status(), 403);

        let mut map = get_object_example();
        map.insert("range", HeaderValue::from_static("bytes=0-10"));
        assert_eq!(
            run("GET", "/test.txt", None, &map, at(EXAMPLE_SECONDS)).unwrap_err(),
            AuthError::signature_mismatch()
        );
        assert_eq!(
            run(
                "GET",
                "/test.tx",
                None,
                &get_object_example(),
                at(EXAMPLE_SECONDS)
            )
            .unwrap_err(),
            AuthError::signature_mismatch()
        );
        assert_eq!(
            run(
                "HEAD",
                "/test.txt",
                None,
                &get_object_example(),
                at(EXAMPLE_SECONDS)
            )
            .unwrap_err(),
            AuthError::signature_mismatch()
        );
    }

    #[test]
    fn unsigned_host_or_amz_headers_are_refused() {
        let mut map = get_object_example();
        map.insert("x-amz-meta-added", HeaderValue::from_static("later"));
        let error = run("GET", "/test.txt", None, &map, at(EXAMPLE_SECONDS)).unwrap_err();
        assert_eq!(error.code(), "AccessDenied");

        let mut map = headers(&[
            ("host", "h"),
            ("x-amz-content-sha256", EMPTY_SHA256_HEX),
            ("x-amz-date", "20130524T000000Z"),
        ]);
        sign("GET", "/b/k", "", &mut map, "20130524T000000Z");
        let value = map[http::header::AUTHORIZATION]
            .to_str()
            .unwrap()
            .replace("host;", "");
        map.insert(
            http::header::AUTHORIZATION,
            HeaderValue::from_str(&value).unwrap(),
        );
        let error = run("GET", "/b/k", None, &map, at(EXAMPLE_SECONDS)).unwrap_err();
        assert_eq!(
            error.message(),
            "There were headers present in the request which were not signed"
        );
    }

    /// Goal: a request dated only by `Date` (no `x-amz-date`) is accepted,
    /// and signed with that time in ISO 8601 basic form, as S3 does.
    #[test]
    fn date_header_dates_a_request_without_x_amz_date() {
        let mut map = headers(&[
            ("date", "Fri, 24 May 2013 00:00:00 GMT"),
            ("host", "examplebucket.s3.amazonaws.com"),
            ("x-amz-content-sha256", EMPTY_SHA256_HEX),
        ]);
        sign("GET", "/test.txt", "", &mut map, "20130524T000000Z");
        run("GET", "/test.txt", None, &map, at(EXAMPLE_SECONDS)).unwrap();
        // The same request an hour later is out of the skew window.
        let error = run("GET", "/test.txt", None, &map, at(EXAMPLE_SECONDS + 3600)).unwrap_err();
        assert_eq!(error.code(), "RequestTimeTooSkewed");
        // Without any date header it cannot be dated at all.
        map.remove(http::header::DATE);
        let error = run("GET", "/test.txt", None, &map, at(EXAMPLE_SECONDS)).unwrap_err();
        assert_eq!(
            error,
            AuthError::AccessDenied(
                "AWS authentication requires a valid Date or x-amz-date header".to_owned()
            )
        );
    }

    #[test]
    fn clock_skew_is_15_minutes_inclusive() {
        let skew_seconds = CLOCK_SKEW_MS_MAX / 1000;
        assert_eq!(skew_seconds, 900);
        let map = get_object_example();
        for now in [
            EXAMPLE_SECONDS - skew_seconds,
            EXAMPLE_SECONDS + skew_seconds,
        ] {
            run("GET", "/test.txt", None, &map, at(now)).unwrap();
        }
        for now in [
            EXAMPLE_SECONDS - skew_seconds - 1,
            EXAMPLE_SECONDS + skew_seconds + 1,
        ] {
            let error = run("GET", "/test.txt", None, &map, at(now)).unwrap_err();
            assert_eq!(
                error,
                AuthError::RequestTimeTooSkewed(
                    "The difference between the request time and the current time is too large."
                        .to_owned()
                )
            );
            assert_eq!(error.status(), 403);
        }
        // One millisecond past the window already counts.
        let now = at(EXAMPLE_SECONDS + skew_seconds) + Duration::from_millis(1);
        assert_eq!(
            run("GET", "/test.txt", None, &map, now).unwrap_err().code(),
            "RequestTimeTooSkewed"
        );
    }

    /// Goal: a `%2B` (plus) in a signed query cannot be turned into `+`
    /// (which the router reads as a space) in transit without breaking the
    /// signature, while `+` for `%20` (the same meaning) still verifies.
    #[test]
    fn plus_and_percent_2b_in_the_query_are_told_apart() {
        let mut map = headers(&[
            ("host", "h"),
            ("x-amz-content-sha256", EMPTY_SHA256_HEX),
            ("x-amz-date", "20130524T000000Z"),
        ]);
        sign("GET", "/b", "prefix=a%2Bb", &mut map, "20130524T000000Z");
        run("GET", "/b", Some("prefix=a%2Bb"), &map, at(EXAMPLE_SECONDS)).unwrap();
        assert_eq!(
            run("GET", "/b", Some("prefix=a+b"), &map, at(EXAMPLE_SECONDS)).unwrap_err(),
            AuthError::signature_mismatch()
        );
        let mut map = headers(&[
            ("host", "h"),
            ("x-amz-content-sha256", EMPTY_SHA256_HEX),
            ("x-amz-date", "20130524T000000Z"),
        ]);
        sign("GET", "/b", "prefix=a%20b", &mut map, "20130524T000000Z");
        for query in ["prefix=a%20b", "prefix=a+b"] {
            run("GET", "/b", Some(query), &map, at(EXAMPLE_SECONDS)).unwrap();
        }
        assert_eq!(
            run("GET", "/b", Some("prefix=a%2Bb"), &map, at(EXAMPLE_SECONDS)).unwrap_err(),
            AuthError::signature_mismatch()
        );
    }

    #[test]
    fn a_valueless_query_parameter_signs_as_name_equals() {
        let mut map = headers(&[
            ("host", "h"),
            ("x-amz-content-sha256", EMPTY_SHA256_HEX),
            ("x-amz-date", "20130524T000000Z"),
        ]);
        sign("POST", "/b/k", "uploads=", &mut map, "20130524T000000Z");
        for query in ["uploads", "uploads="] {
            run("POST", "/b/k", Some(query), &map, at(EXAMPLE_SECONDS)).unwrap();
        }
    }
}
