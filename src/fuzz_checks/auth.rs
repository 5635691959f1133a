//! Checks of `auth/`: the SigV4 parsers and canonical forms, and the
//! aws-chunked body decoder.

use std::time::{Duration, UNIX_EPOCH};

use http::HeaderValue;
use sha2::{Digest, Sha256};

use super::{Input, pieces};
use crate::auth::amz_date::AmzDate;
use crate::auth::authorization::AuthorizationHeader;
use crate::auth::chunked::{AwsChunkedDecoder, AwsChunkedMode, ChunkSigningContext, ChunkStep};
use crate::auth::payload::ContentSha256;
use crate::auth::sigv4::{self, SignedRequest, SigningKey, SigningKeyCache};
use crate::auth::{self as sigv4_auth, AuthError, CredentialStore, Credentials, RequestView};
use crate::http::request::parse_head;
use crate::limits::{TRAILER_BYTES_MAX, TRAILER_COUNT_MAX};

const ACCESS_KEY_ID: &str = "AKIAIOSFODNN7EXAMPLE";
const SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
const REGION: &str = "us-east-1";
const AMZ_DATE: &str = "20130524T000000Z";
const DATE: &str = "20130524";

/// Target `sigv4`. The first byte picks what the rest is:
///
/// - 0: a request head, authenticated as sent (header or presigned form)
///   against a store holding one key, at a clock near the head's own date.
///   Then, if it carries a SigV4 `Authorization` header, the same head
///   re-signed with the canonical-request builder: `authenticate` must then
///   not answer `SignatureDoesNotMatch` (what the builder signs, the
///   checker accepts), and the payload mode it returns is checked.
/// - 1: a date, in both forms: an accepted `x-amz-date` writes back as
///   itself, an accepted HTTP-date re-parses as the same instant.
/// - 2: `Authorization` components and a credential scope: no panic, and
///   accepted parts are substrings of the input.
/// - 3: a path and a query: the canonical query string and re-encoded path
///   hold only unreserved characters and `%XX` escapes (plus `=`, `&` and
///   `/` where those separate), and canonicalizing is idempotent.
/// - anything else: an `x-amz-content-sha256` value.
pub fn sigv4(data: &[u8]) {
    let mut input = Input::new(data);
    let mode = input.u8();
    let rest = input.rest();
    match mode {
        0 => authenticate_head(rest),
        1 => dates(rest),
        2 => {
            if let Ok(text) = std::str::from_utf8(rest) {
                authorization_components(text);
            }
        }
        3 => canonical_forms(rest),
        _ => {
            let _ = ContentSha256::parse(rest);
        }
    }
}

fn store() -> CredentialStore {
    let mut store = CredentialStore::new();
    store.insert(Credentials {
        access_key_id: ACCESS_KEY_ID.to_owned(),
        secret_access_key: SECRET.to_owned(),
    });
    store
}

fn authenticate_head(data: &[u8]) {
    let Ok(Some((head, _))) = parse_head(data) else {
        return;
    };
    // The clock: the head's own date when it has one, so that the skew
    // check passes and the signature check is reached.
    let date = head
        .headers
        .get("x-amz-date")
        .and_then(|value| value.to_str().ok())
        .and_then(AmzDate::parse_iso8601_basic)
        .or_else(|| {
            head.headers
                .get(http::header::DATE)
                .and_then(|value| value.to_str().ok())
                .and_then(AmzDate::parse_http_date)
        });
    let now = date.unwrap_or_else(|| AmzDate::parse_iso8601_basic(AMZ_DATE).expect("a valid date"));
    let now = u64::try_from(now.unix_seconds()).map_or(UNIX_EPOCH, |seconds| {
        UNIX_EPOCH + Duration::from_secs(seconds)
    });
    let store = store();
    let mut cache = SigningKeyCache::new();
    let method = head.method.as_str();
    let view = RequestView {
        method,
        path: &head.path,
        query: head.query.as_deref(),
        headers: &head.headers,
        virtual_host_bucket: None,
    };
    let _ = sigv4_auth::authenticate(&view, &store, REGION, now, &mut cache);

    // Re-sign a header-authenticated request with the builder's signature.
    let Some(authorization) = head
        .headers
        .get(http::header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
    else {
        return;
    };
    let Some(components) = authorization.strip_prefix("AWS4-HMAC-SHA256 ") else {
        return;
    };
    let Ok(parsed) = AuthorizationHeader::parse_components(components, REGION) else {
        return;
    };
    let (Some(date), Some(payload_hash)) = (
        date,
        head.headers
            .get("x-amz-content-sha256")
            .and_then(|value| value.to_str().ok()),
    ) else {
        return;
    };
    if parsed
        .signed_headers
        .split(';')
        .any(|name| name.eq_ignore_ascii_case("authorization"))
    {
        // The signature would sign itself.
        return;
    }
    let amz_date = date.iso8601_basic();
    let scope = sigv4::scope(parsed.credential.date, REGION, sigv4::SERVICE);
    let canonical_query = sigv4::canonical_query_string(head.query.as_deref().unwrap_or(""), false);
    let key = SigningKey::derive(SECRET, parsed.credential.date, REGION, sigv4::SERVICE);
    let raw_path = if head.path.is_empty() {
        "/"
    } else {
        &head.path
    };
    let signature = SignedRequest {
        method,
        raw_path,
        canonical_query: &canonical_query,
        headers: &head.headers,
        signed_headers: parsed.signed_headers,
        payload_hash,
        amz_date: &amz_date,
        scope: &scope,
    }
    .signature(&key, raw_path.as_bytes());
    let credential = components
        .split(',')
        .map(str::trim)
        .find_map(|component| component.strip_prefix("Credential="))
        .expect("parsed");
    let resigned = format!(
        "AWS4-HMAC-SHA256 Credential={}, SignedHeaders={}, Signature={}",
        credential.trim(),
        parsed.signed_headers,
        hex::encode(signature)
    );
    let Ok(resigned) = HeaderValue::from_str(&resigned) else {
        return;
    };
    let mut headers = head.headers.clone();
    headers.insert(http::header::AUTHORIZATION, resigned);
    let view = RequestView {
        headers: &headers,
        ..view
    };
    match sigv4_auth::authenticate(&view, &store, REGION, now, &mut cache) {
        Ok(authenticated) => {
            assert_eq!(authenticated.access_key_id, ACCESS_KEY_ID);
            let _ = format!("{:?}", authenticated.payload);
        }
        Err(error @ AuthError::SignatureDoesNotMatch(_)) => {
            panic!("a request signed by the canonical-request builder is refused: {error:?}")
        }
        Err(_) => {}
    }
}

fn dates(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Some(date) = AmzDate::parse_iso8601_basic(text) {
        assert_eq!(date.iso8601_basic(), text, "x-amz-date round trip");
        assert_eq!(date.date_stamp(), text[..8]);
        assert_eq!(date.unix_ms(), date.unix_seconds() * 1000);
    }
    if let Some(date) = AmzDate::parse_http_date(text) {
        let basic = date.iso8601_basic();
        assert_eq!(
            AmzDate::parse_iso8601_basic(&basic),
            Some(date),
            "{text:?} as {basic}"
        );
    }
    let _ = crate::s3::conditions::parse_http_date(text, 1_700_000_000_000);
}

fn authorization_components(text: &str) {
    if let Ok(header) = AuthorizationHeader::parse_components(text, REGION) {
        assert!(text.contains(header.signed_headers));
        assert!(text.contains(header.signature));
        assert!(text.contains(header.credential.access_key_id));
        assert!(!header.signed_headers.is_empty());
        assert_eq!(header.credential.region, REGION);
    }
    match sigv4::parse_credential_scope(text, REGION) {
        Ok(scope) => {
            assert!(!scope.access_key_id.is_empty());
            assert_eq!(scope.date.len(), 8);
            assert_eq!(
                text,
                format!(
                    "{}/{}/{REGION}/s3/aws4_request",
                    scope.access_key_id, scope.date
                )
            );
        }
        Err(fault) => {
            let _ = fault.describe(REGION);
        }
    }
    let mut headers = http::HeaderMap::new();
    headers.insert("host", HeaderValue::from_static("example.com"));
    headers.insert("x-amz-date", HeaderValue::from_static(AMZ_DATE));
    let _ = sigv4::check_headers_signed(&headers, text);
}

/// Whether `bytes` is AWS-URI-encoded: unreserved characters and `%XX`
/// escapes with upper-case hex, plus the bytes in `also`.
fn is_uri_encoded(bytes: &[u8], also: &[u8]) -> bool {
    let mut index = 0;
    while index < bytes.len() {
        let byte = bytes[index];
        if byte == b'%' {
            let hex = |at: usize| {
                bytes
                    .get(at)
                    .is_some_and(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(b))
            };
            if !(hex(index + 1) && hex(index + 2)) {
                return false;
            }
            index += 3;
            continue;
        }
        if !(byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) || also.contains(&byte)) {
            return false;
        }
        index += 1;
    }
    true
}

fn canonical_forms(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (path, query) = text.split_once('?').unwrap_or((text, ""));
    let reencoded = sigv4::reencode_path(path);
    assert!(is_uri_encoded(&reencoded, b"/"), "{reencoded:?}");
    let reencoded = String::from_utf8(reencoded).expect("ASCII");
    assert_eq!(
        sigv4::reencode_path(&reencoded),
        reencoded.as_bytes(),
        "idempotent"
    );

    for exclude_signature in [false, true] {
        let canonical = sigv4::canonical_query_string(query, exclude_signature);
        assert!(is_uri_encoded(&canonical, b"=&"), "{canonical:?}");
        let canonical = String::from_utf8(canonical).expect("ASCII");
        assert_eq!(
            sigv4::canonical_query_string(&canonical, exclude_signature),
            canonical.as_bytes(),
            "idempotent"
        );
    }
    let mut encoded = Vec::new();
    sigv4::uri_encode(&mut encoded, data, true);
    assert!(is_uri_encoded(&encoded, b""));

    let mut headers = http::HeaderMap::new();
    for line in text.lines().take(16) {
        if let Some((name, value)) = line.split_once(':')
            && let (Ok(name), Ok(value)) = (
                http::HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_str(value),
            )
        {
            headers.append(name, value);
        }
    }
    let signed_headers: Vec<&str> = headers.keys().map(http::HeaderName::as_str).collect();
    let canonical = sigv4::canonical_request(
        "PUT",
        path.as_bytes(),
        query.as_bytes(),
        &headers,
        &signed_headers.join(";"),
        sigv4::UNSIGNED_PAYLOAD,
    );
    let _ = sigv4::string_to_sign(AMZ_DATE, &sigv4::scope(DATE, REGION, "s3"), &canonical);
}

/// What decoding an aws-chunked body gave.
#[derive(Debug, PartialEq, Eq)]
struct Decoded {
    data: Vec<u8>,
    trailers: Vec<(String, String)>,
    outcome: Result<(), AuthError>,
}

/// Feeds `pieces` in order (after an `End`, the rest too: only stray CR and
/// LF may follow), then `finish` if the body never said `End`. Checks the
/// step contract and the limits on the way.
fn decode_aws_chunked(mut decoder: AwsChunkedDecoder, pieces: &[&[u8]]) -> Decoded {
    let mut data = Vec::new();
    let mut ended = false;
    let outcome = (|| {
        for piece in pieces {
            let mut offset = 0;
            while offset < piece.len() {
                let (consumed, step) = decoder.step(&piece[offset..])?;
                assert!(offset + consumed <= piece.len());
                match step {
                    ChunkStep::Data { start, end } => {
                        assert!(
                            start < end && end == consumed,
                            "{start}..{end} of {consumed}"
                        );
                        data.extend_from_slice(&piece[offset + start..offset + end]);
                    }
                    ChunkStep::NeedMore => assert_eq!(offset + consumed, piece.len()),
                    ChunkStep::End => ended = true,
                }
                assert!(consumed > 0 || matches!(step, ChunkStep::End));
                if consumed == 0 {
                    // `End` with nothing consumed at the end of a piece.
                    break;
                }
                offset += consumed;
            }
        }
        assert_eq!(decoder.decoded_len(), data.len() as u64);
        if !ended {
            decoder.finish()?;
        }
        Ok(())
    })();
    let trailers = decoder.trailers().to_vec();
    assert!(trailers.len() <= TRAILER_COUNT_MAX);
    assert!(
        trailers
            .iter()
            .map(|(name, value)| name.len() + value.len() + 1)
            .sum::<usize>()
            <= TRAILER_BYTES_MAX
    );
    Decoded {
        data,
        trailers,
        outcome,
    }
}

/// Two decodings of the same body agree: exactly when it is accepted;
/// when it is refused, with the same error, and the data returned before
/// the error may differ only in how far it got (the last piece of a forged
/// chunk is withheld, earlier pieces of it were already returned, and the
/// caller discards a refused body: see `auth::chunked`).
fn assert_same(a: &Decoded, b: &Decoded, how: &str) {
    if a.outcome.is_ok() || b.outcome.is_ok() {
        assert_eq!(a, b, "{how}");
        return;
    }
    assert_eq!(a.outcome, b.outcome, "{how}");
    let shorter = a.data.len().min(b.data.len());
    assert_eq!(a.data[..shorter], b.data[..shorter], "{how}");
}

fn signing_context(seed: [u8; 32]) -> ChunkSigningContext {
    let key = SigningKey::derive(SECRET, DATE, REGION, "s3");
    ChunkSigningContext::new(&key, AMZ_DATE, &sigv4::scope(DATE, REGION, "s3"), seed)
}

const SEED: [u8; 32] = [0x4f; 32];

/// A correctly signed aws-chunked body made from `input`: chunks of
/// fuzzer-chosen sizes and bytes, then (when `trailer_expected`) a few
/// trailers and their signature. Returns the body, its data and trailers.
fn signed_body(input: &mut Input<'_>, trailer_expected: bool) -> (Vec<u8>, Decoded) {
    let mut body = Vec::new();
    let mut expected = Vec::new();
    let mut previous = SEED;
    let chunk_count = input.u8() % 5;
    let sign_chunk = |previous: [u8; 32], data: &[u8]| {
        let context = signing_context(previous);
        let mut string_to_sign = Vec::new();
        context.push_chunk_string_to_sign(&mut string_to_sign, &Sha256::digest(data).into());
        context.sign(&string_to_sign)
    };
    for _ in 0..chunk_count {
        let len = usize::from(input.u16() % 700).max(1);
        let fill = input.u8();
        let data: Vec<u8> = (0..len)
            .map(|index| fill.wrapping_add(index as u8))
            .collect();
        let signature = sign_chunk(previous, &data);
        body.extend_from_slice(
            format!("{len:x};chunk-signature={}\r\n", hex::encode(signature)).as_bytes(),
        );
        body.extend_from_slice(&data);
        body.extend_from_slice(b"\r\n");
        expected.extend_from_slice(&data);
        previous = signature;
    }
    let signature = sign_chunk(previous, b"");
    body.extend_from_slice(format!("0;chunk-signature={}\r\n", hex::encode(signature)).as_bytes());
    previous = signature;
    let mut trailers: Vec<(String, String)> = Vec::new();
    if trailer_expected {
        const NAMES: [&str; 4] = [
            "x-amz-checksum-crc32c",
            "x-amz-checksum-sha256",
            "x-amz-meta-a",
            "x-amz-checksum-crc64nvme",
        ];
        for (index, name) in NAMES.iter().enumerate().take(usize::from(input.u8() % 4)) {
            let value: String = input
                .short_bytes()
                .iter()
                .take(64)
                .map(|byte| {
                    char::from(
                        b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/="
                            [usize::from(*byte) % 65],
                    )
                })
                .collect();
            let value = if value.is_empty() {
                index.to_string()
            } else {
                value
            };
            trailers.push(((*name).to_owned(), value));
        }
        let mut sorted = trailers.clone();
        sorted.sort();
        let canonical: Vec<u8> = sorted
            .iter()
            .flat_map(|(name, value)| [name.as_bytes(), b":", value.as_bytes(), b"\n"])
            .flatten()
            .copied()
            .collect();
        let context = signing_context(previous);
        let mut string_to_sign = Vec::new();
        context.push_trailer_string_to_sign(&mut string_to_sign, &Sha256::digest(canonical).into());
        let signature = context.sign(&string_to_sign);
        for (name, value) in &trailers {
            body.extend_from_slice(format!("{name}:{value}\r\n").as_bytes());
        }
        body.extend_from_slice(
            format!("x-amz-trailer-signature:{}\r\n\r\n", hex::encode(signature)).as_bytes(),
        );
    } else {
        body.extend_from_slice(b"\r\n");
    }
    let decoded = Decoded {
        data: expected,
        trailers,
        outcome: Ok(()),
    };
    (body, decoded)
}

/// Target `aws_chunked`: `auth::chunked::AwsChunkedDecoder`. The first byte
/// picks the mode (bit 0-1: unsigned, signed over the raw input, or a
/// correctly signed body built from the input; bit 2: trailer expected),
/// the second a count of cut points; then the cut points (two bytes each)
/// and the body (or what the signed body is built from).
///
/// The decoded data, trailers and outcome must not depend on how the body
/// is cut; the step contract and the trailer limits hold; and a correctly
/// signed body decodes to exactly what it was built from. Then (for the
/// built body) the fuzzer may damage it: one byte XORed, which must still
/// give the same answer however cut, and can never be accepted with
/// different data.
pub fn aws_chunked(data: &[u8]) {
    let mut input = Input::new(data);
    let mode = input.u8();
    let trailer_expected = mode & 4 != 0;
    let count = usize::from(input.u8() % 16);
    let raw_points: Vec<u16> = (0..count).map(|_| input.u16()).collect();
    let make = || match mode % 3 {
        0 => AwsChunkedDecoder::new(AwsChunkedMode::Unsigned, trailer_expected),
        _ => AwsChunkedDecoder::new(
            AwsChunkedMode::Signed(signing_context(SEED)),
            trailer_expected,
        ),
    };
    let (body, expected) = if mode % 3 == 2 {
        let (mut body, expected) = signed_body(&mut input, trailer_expected);
        let whole = decode_aws_chunked(make(), &[&body]);
        assert_eq!(whole, expected, "a correctly signed body");
        let damage_at = usize::from(input.u16());
        let mask = input.u8();
        if mask == 0 || body.is_empty() {
            (body, Some(expected))
        } else {
            let at = damage_at % body.len();
            body[at] ^= mask;
            (body, Some(expected))
        }
    } else {
        (input.rest().to_vec(), None)
    };
    let mut points: Vec<usize> = raw_points
        .iter()
        .map(|point| usize::from(*point) % (body.len() + 1))
        .collect();
    points.sort_unstable();
    let whole = decode_aws_chunked(make(), &[&body]);
    let cut = decode_aws_chunked(make(), &pieces(&body, &points));
    assert_same(&whole, &cut, &format!("cut at {points:?}"));
    if body.len() <= 512 {
        let bytes: Vec<&[u8]> = body.chunks(1).collect();
        assert_same(
            &whole,
            &decode_aws_chunked(make(), &bytes),
            "one byte at a time",
        );
    }
    if let Some(expected) = expected
        && mode % 3 == 2
        && whole.outcome.is_ok()
    {
        // Damage that still decodes (a stray CR/LF at the end, say) must
        // not change what the signatures vouch for.
        assert_eq!(whole.data, expected.data, "signed data changed");
        assert_eq!(whole.trailers, expected.trailers, "signed trailers changed");
    }
}
