//! The SigV4 primitives, as pure functions over bytes.
//!
//! ```text
//! signing key    = HMAC(HMAC(HMAC(HMAC("AWS4" + secret, YYYYMMDD), region), "s3"), "aws4_request")
//! canonical req  = METHOD \n URI \n QUERY \n name:value\n… \n signed;headers \n payload-hash
//! string to sign = "AWS4-HMAC-SHA256" \n YYYYMMDD'T'HHMMSS'Z' \n scope \n hex(SHA256(canonical req))
//! signature      = hex(HMAC(signing key, string to sign))
//! scope          = YYYYMMDD/region/s3/aws4_request
//! ```
//!
//! This file owns those formulas, AWS's URI-encode rules, the credential
//! scope format, and the per-core [`SigningKeyCache`]. It does not know
//! where the inputs come from (header or query form): `authorization.rs` and
//! `presigned.rs` gather them and call [`verify_signature`].
//!
//! Canonical requests are built as bytes, not `String`s, because header
//! values may carry obs-text (non-UTF-8 bytes) and the signature covers them
//! as sent. Signatures are compared in constant time so that response timing
//! reveals nothing about how many leading bytes of a forged signature were
//! right.
//!
//! <https://docs.aws.amazon.com/AmazonS3/latest/API/sig-v4-header-based-auth.html>

use std::fmt;

use hmac::{Hmac, Mac};
use http::HeaderMap;
use percent_encoding::{
    AsciiSet, NON_ALPHANUMERIC, percent_decode, percent_decode_str, percent_encode,
};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::auth::AuthError;

pub(crate) type HmacSha256 = Hmac<Sha256>;

/// The only signing algorithm supported (SigV4 with HMAC-SHA256).
pub const ALGORITHM: &str = "AWS4-HMAC-SHA256";
/// The service name in every S3 credential scope.
pub const SERVICE: &str = "s3";
/// The last element of every credential scope.
pub const SCOPE_TERMINATOR: &str = "aws4_request";
/// The payload hash of a request whose body is not signed.
pub const UNSIGNED_PAYLOAD: &str = "UNSIGNED-PAYLOAD";
/// Hex SHA-256 of the empty string: the payload hash of an empty body, and a
/// fixed line in every chunk string-to-sign.
pub const EMPTY_SHA256_HEX: &str =
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// Most signing keys one [`SigningKeyCache`] keeps. A key is valid for one
/// (access key, day, region, service); a busy core sees a few access keys,
/// two days around midnight, and presigned URLs signed up to 7 days ago.
/// 32 covers that with room to spare while a lookup stays a short linear
/// scan.
pub const SIGNING_KEY_CACHE_ENTRIES_MAX: usize = 32;

/// Characters AWS leaves unencoded: `A-Z a-z 0-9 - _ . ~`. Everything else
/// becomes `%XX` with uppercase hex (a space is `%20`, never `+`).
const URI_ENCODE_SET: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');
/// In a path, `/` separates segments and stays as is.
const URI_ENCODE_PATH_SET: &AsciiSet = &URI_ENCODE_SET.remove(b'/');

/// HMAC-SHA256 of `data` under `key`.
#[must_use]
pub(crate) fn hmac_sha256(key: &[u8], data: &[u8]) -> [u8; 32] {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC accepts keys of any length");
    mac.update(data);
    mac.finalize().into_bytes().into()
}

/// A derived signing key: valid for one access key, one day, one region and
/// one service.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct SigningKey([u8; 32]);

impl SigningKey {
    /// Derives the key with the HMAC chain over date, region, service and
    /// `aws4_request`. Four HMACs: cache the result ([`SigningKeyCache`]).
    #[must_use]
    pub fn derive(secret_access_key: &str, date: &str, region: &str, service: &str) -> Self {
        let mut secret = Vec::with_capacity(4 + secret_access_key.len());
        secret.extend_from_slice(b"AWS4");
        secret.extend_from_slice(secret_access_key.as_bytes());
        let date_key = hmac_sha256(&secret, date.as_bytes());
        secret.fill(0);
        let region_key = hmac_sha256(&date_key, region.as_bytes());
        let service_key = hmac_sha256(&region_key, service.as_bytes());
        Self(hmac_sha256(&service_key, SCOPE_TERMINATOR.as_bytes()))
    }

    /// An HMAC keyed with this key, ready for `update`. Cloning a keyed HMAC
    /// is cheaper than keying a new one, so streaming code keeps one.
    #[must_use]
    pub(crate) fn mac(&self) -> HmacSha256 {
        HmacSha256::new_from_slice(&self.0).expect("HMAC accepts keys of any length")
    }

    /// The binary signature of `string_to_sign`.
    #[must_use]
    pub fn sign(&self, string_to_sign: &[u8]) -> [u8; 32] {
        hmac_sha256(&self.0, string_to_sign)
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SigningKey(<redacted>)")
    }
}

/// Appends `input` URI-encoded by AWS's rules; `/` is kept only when
/// `encode_slash` is false (paths), and encoded in query names and values.
pub fn uri_encode(out: &mut Vec<u8>, input: &[u8], encode_slash: bool) {
    let set = if encode_slash {
        URI_ENCODE_SET
    } else {
        URI_ENCODE_PATH_SET
    };
    for piece in percent_encode(input, set) {
        out.extend_from_slice(piece.as_bytes());
    }
}

/// The path decoded once and re-encoded by AWS's rules: what a client that
/// encoded correctly when signing, but sent some characters raw, signed.
#[must_use]
pub fn reencode_path(raw_path: &str) -> Vec<u8> {
    let decoded: Vec<u8> = percent_decode_str(raw_path).collect();
    let mut out = Vec::with_capacity(decoded.len() + decoded.len() / 2);
    uri_encode(&mut out, &decoded, false);
    out
}

/// Decodes one query name or value as `application/x-www-form-urlencoded`
/// does: a `+` is a space, then every `%XX` escape is decoded once.
///
/// This is how S3 reads a query, and how `s3::router::query_pairs` reads it
/// for the handlers. Signing the bytes of this decoding is what makes a
/// signature bind a parameter's meaning: `prefix=a%2Bb` (a plus) and
/// `prefix=a+b` (a space) are different requests, so they must sign
/// differently (`a%2Bb` and `a%20b`), while `a+b` and `a%20b` mean the same
/// and sign the same. A malformed escape is kept as it is; the router has
/// already refused such a query (`InvalidURI`) before authentication runs.
#[must_use]
pub fn decode_query_component(raw: &str) -> Vec<u8> {
    let bytes = raw.as_bytes();
    if !bytes.contains(&b'+') {
        return percent_decode(bytes).collect();
    }
    let spaced: Vec<u8> = bytes
        .iter()
        .map(|&byte| if byte == b'+' { b' ' } else { byte })
        .collect();
    percent_decode(&spaced).collect()
}

/// The canonical query string of a raw query (without `?`).
///
/// Each name and value is decoded as a form ([`decode_query_component`]:
/// a raw `+` is a space) and re-encoded by AWS's rules, so a client's own
/// escaping choices (`%7e` vs `~`, `%2f` vs `%2F`, `+` vs `%20`) do not
/// matter, while `+` and `%2B` stay apart. A parameter without `=` signs as
/// `name=`. Pairs are sorted by encoded name, then encoded value, as the
/// AWS SDKs do. With `exclude_signature`, `X-Amz-Signature` is left out
/// (presigned URLs cannot sign their own signature).
#[must_use]
pub fn canonical_query_string(raw_query: &str, exclude_signature: bool) -> Vec<u8> {
    let mut pairs: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
    for parameter in raw_query
        .split('&')
        .filter(|parameter| !parameter.is_empty())
    {
        let (raw_name, raw_value) = parameter.split_once('=').unwrap_or((parameter, ""));
        let name = decode_query_component(raw_name);
        if exclude_signature && name == b"X-Amz-Signature" {
            continue;
        }
        let value = decode_query_component(raw_value);
        let mut encoded_name = Vec::with_capacity(name.len());
        uri_encode(&mut encoded_name, &name, true);
        let mut encoded_value = Vec::with_capacity(value.len());
        uri_encode(&mut encoded_value, &value, true);
        pairs.push((encoded_name, encoded_value));
    }
    pairs.sort_unstable();
    let mut out = Vec::with_capacity(raw_query.len() + 16);
    for (index, (name, value)) in pairs.iter().enumerate() {
        if index > 0 {
            out.push(b'&');
        }
        out.extend_from_slice(name);
        out.push(b'=');
        out.extend_from_slice(value);
    }
    out
}

/// Appends the canonical value of a header: every value trimmed, inner runs
/// of spaces collapsed to one, repeated headers joined with `,`.
pub fn push_canonical_header_value<'v>(out: &mut Vec<u8>, values: impl Iterator<Item = &'v [u8]>) {
    for (index, value) in values.enumerate() {
        if index > 0 {
            out.push(b',');
        }
        let mut previous_was_space = false;
        for &byte in value.trim_ascii() {
            let is_space = byte == b' ';
            if !(is_space && previous_was_space) {
                out.push(byte);
            }
            previous_was_space = is_space;
        }
    }
}

/// The canonical request. `canonical_uri` is already encoded (see
/// [`verify_signature`] for which form), `signed_headers` is the
/// `a;b;c` list exactly as the client sent it, and `payload_hash` is the
/// last line as the client declared it.
#[must_use]
pub fn canonical_request(
    method: &str,
    canonical_uri: &[u8],
    canonical_query: &[u8],
    headers: &HeaderMap,
    signed_headers: &str,
    payload_hash: &str,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(256 + canonical_uri.len() + canonical_query.len());
    out.extend_from_slice(method.as_bytes());
    out.push(b'\n');
    out.extend_from_slice(canonical_uri);
    out.push(b'\n');
    out.extend_from_slice(canonical_query);
    out.push(b'\n');
    for name in signed_headers.split(';') {
        out.extend_from_slice(name.as_bytes());
        out.push(b':');
        push_canonical_header_value(
            &mut out,
            headers
                .get_all(name)
                .iter()
                .map(http::HeaderValue::as_bytes),
        );
        out.push(b'\n');
    }
    out.push(b'\n');
    out.extend_from_slice(signed_headers.as_bytes());
    out.push(b'\n');
    out.extend_from_slice(payload_hash.as_bytes());
    out
}

/// `YYYYMMDD/region/service/aws4_request`.
#[must_use]
pub fn scope(date: &str, region: &str, service: &str) -> String {
    format!("{date}/{region}/{service}/{SCOPE_TERMINATOR}")
}

/// The string to sign for a request.
#[must_use]
pub fn string_to_sign(amz_date: &str, scope: &str, canonical_request: &[u8]) -> String {
    let hash = hex::encode(Sha256::digest(canonical_request));
    format!("{ALGORITHM}\n{amz_date}\n{scope}\n{hash}")
}

/// Decodes a 64-digit hex signature (either case).
#[must_use]
pub fn parse_signature(hex_signature: &str) -> Option<[u8; 32]> {
    let mut signature = [0u8; 32];
    hex::decode_to_slice(hex_signature, &mut signature).ok()?;
    Some(signature)
}

/// Whether two signatures are equal, in time independent of their content.
#[must_use]
pub fn signatures_equal(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.ct_eq(b).into()
}

/// Everything a request signature covers, gathered by either auth form.
#[derive(Debug, Clone, Copy)]
pub struct SignedRequest<'a> {
    pub method: &'a str,
    /// The path as sent (see [`verify_signature`]).
    pub raw_path: &'a str,
    pub canonical_query: &'a [u8],
    pub headers: &'a HeaderMap,
    pub signed_headers: &'a str,
    pub payload_hash: &'a str,
    /// The signed timestamp, `YYYYMMDD'T'HHMMSS'Z'`.
    pub amz_date: &'a str,
    pub scope: &'a str,
}

impl SignedRequest<'_> {
    /// The signature of this request with the given canonical URI.
    #[must_use]
    pub fn signature(&self, key: &SigningKey, canonical_uri: &[u8]) -> [u8; 32] {
        let canonical_request = canonical_request(
            self.method,
            canonical_uri,
            self.canonical_query,
            self.headers,
            self.signed_headers,
            self.payload_hash,
        );
        key.sign(string_to_sign(self.amz_date, self.scope, &canonical_request).as_bytes())
    }
}

/// Checks `provided` against the signature of `request`.
///
/// S3 signs the path as the client sent it: encoded once, no normalization,
/// `//`, `.` and `..` kept (they are legal key bytes). That is tried first.
/// Some clients percent-encode characters such as `$`, `+` or `!` when they
/// sign but send them raw (or send lowercase escapes), so if the raw path
/// fails, the path is decoded and re-encoded by AWS's rules and tried once
/// more. The second try accepts nothing a correct client could not have
/// signed, since it is the canonical form of the same key.
///
/// # Errors
/// `SignatureDoesNotMatch` when neither form matches.
pub fn verify_signature(
    request: &SignedRequest<'_>,
    key: &SigningKey,
    provided: &[u8; 32],
) -> Result<(), AuthError> {
    let raw_path = if request.raw_path.is_empty() {
        "/"
    } else {
        request.raw_path
    };
    if signatures_equal(&request.signature(key, raw_path.as_bytes()), provided) {
        return Ok(());
    }
    let reencoded = reencode_path(raw_path);
    if reencoded != raw_path.as_bytes()
        && signatures_equal(&request.signature(key, &reencoded), provided)
    {
        return Ok(());
    }
    Err(AuthError::signature_mismatch())
}

/// A parsed credential, `AKID/YYYYMMDD/region/s3/aws4_request`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CredentialScope<'a> {
    pub access_key_id: &'a str,
    pub date: &'a str,
    pub region: &'a str,
}

/// Why a credential was refused. The header and query forms word the same
/// faults with different prefixes, so the fault is kept apart from its
/// message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScopeError<'a> {
    Malformed,
    DateFormat(&'a str),
    Region(&'a str),
    Service(&'a str),
    Terminator(&'a str),
}

impl ScopeError<'_> {
    /// The message S3 gives, after the form's prefix.
    #[must_use]
    pub fn describe(&self, expected_region: &str) -> String {
        match self {
            Self::Malformed => {
                "the Credential is mal-formed; expecting \"<YOUR-AKID>/YYYYMMDD/REGION/SERVICE/aws4_request\".".to_owned()
            }
            Self::DateFormat(date) => format!(
                "incorrect date format \"{date}\". This date in the credential must be in the format \"yyyyMMdd\"."
            ),
            Self::Region(region) => format!("the region '{region}' is wrong; expecting '{expected_region}'"),
            Self::Service(service) => format!("incorrect service \"{service}\". This endpoint belongs to \"{SERVICE}\"."),
            Self::Terminator(terminator) => {
                format!("incorrect terminal \"{terminator}\". This endpoint uses \"{SCOPE_TERMINATOR}\".")
            }
        }
    }
}

/// Parses and checks a credential against this server's region.
///
/// # Errors
/// The first fault found, in the order format, date, region, service,
/// terminator.
pub fn parse_credential_scope<'a>(
    credential: &'a str,
    expected_region: &str,
) -> Result<CredentialScope<'a>, ScopeError<'a>> {
    let mut parts = credential.split('/');
    let (Some(access_key_id), Some(date), Some(region), Some(service), Some(terminator), None) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return Err(ScopeError::Malformed);
    };
    if access_key_id.is_empty() {
        return Err(ScopeError::Malformed);
    }
    if date.len() != 8 || !date.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ScopeError::DateFormat(date));
    }
    if region != expected_region {
        return Err(ScopeError::Region(region));
    }
    if service != SERVICE {
        return Err(ScopeError::Service(service));
    }
    if terminator != SCOPE_TERMINATOR {
        return Err(ScopeError::Terminator(terminator));
    }
    Ok(CredentialScope {
        access_key_id,
        date,
        region,
    })
}

/// Refuses a request whose signature leaves out `host` or any `x-amz-*`
/// header it carries, as S3 does: an unsigned `x-amz-acl` or
/// `x-amz-copy-source` added to a presigned URL would otherwise change what
/// the request does. `x-amz-content-sha256` is tolerated unsigned, as S3
/// tolerates it.
///
/// # Errors
/// `AccessDenied`, "There were headers present in the request which were
/// not signed".
pub fn check_headers_signed(headers: &HeaderMap, signed_headers: &str) -> Result<(), AuthError> {
    let is_signed = |name: &str| {
        signed_headers
            .split(';')
            .any(|signed| signed.eq_ignore_ascii_case(name))
    };
    let unsigned_amz = headers.keys().map(http::HeaderName::as_str).any(|name| {
        name.starts_with("x-amz-") && name != "x-amz-content-sha256" && !is_signed(name)
    });
    if !is_signed("host") || unsigned_amz {
        return Err(AuthError::AccessDenied(
            "There were headers present in the request which were not signed".to_owned(),
        ));
    }
    Ok(())
}

/// Derived signing keys, reused across requests on one core.
///
/// Deriving a key costs four HMACs, as much as the rest of a GET's
/// signature check; a key is valid for a whole day, so each (access key,
/// secret, date, region, service) is derived once and then looked up. The
/// cache is a plain struct without locks because each core owns one (the
/// thread-per-core model: no shared mutable state on the data path). It
/// holds at most [`SIGNING_KEY_CACHE_ENTRIES_MAX`] keys and evicts the least
/// recently used. The secret is part of the lookup so that rotating the
/// secret of an access key takes effect at once.
#[derive(Debug, Default)]
pub struct SigningKeyCache {
    entries: Vec<CacheEntry>,
    /// Counts lookups; an entry's `last_used` is the count at its last hit.
    lookup_count: u64,
}

#[derive(Debug)]
struct CacheEntry {
    access_key_id: String,
    secret_access_key: String,
    date: String,
    region: String,
    service: String,
    key: SigningKey,
    last_used: u64,
}

impl CacheEntry {
    fn matches(
        &self,
        access_key_id: &str,
        secret_access_key: &str,
        date: &str,
        region: &str,
        service: &str,
    ) -> bool {
        self.access_key_id == access_key_id
            && self.date == date
            && self.region == region
            && self.service == service
            && self.secret_access_key == secret_access_key
    }
}

impl SigningKeyCache {
    /// An empty cache.
    #[must_use]
    pub fn new() -> Self {
        Self {
            entries: Vec::with_capacity(SIGNING_KEY_CACHE_ENTRIES_MAX),
            lookup_count: 0,
        }
    }

    /// The signing key for these inputs, derived only on a miss.
    ///
    /// # Panics
    /// If the cache outgrew [`SIGNING_KEY_CACHE_ENTRIES_MAX`]: a bug here.
    pub fn signing_key(
        &mut self,
        access_key_id: &str,
        secret_access_key: &str,
        date: &str,
        region: &str,
        service: &str,
    ) -> SigningKey {
        self.lookup_count += 1;
        let now = self.lookup_count;
        if let Some(entry) = self
            .entries
            .iter_mut()
            .find(|entry| entry.matches(access_key_id, secret_access_key, date, region, service))
        {
            entry.last_used = now;
            return entry.key;
        }
        let key = SigningKey::derive(secret_access_key, date, region, service);
        if self.entries.len() < SIGNING_KEY_CACHE_ENTRIES_MAX {
            self.entries.push(CacheEntry {
                access_key_id: access_key_id.to_owned(),
                secret_access_key: secret_access_key.to_owned(),
                date: date.to_owned(),
                region: region.to_owned(),
                service: service.to_owned(),
                key,
                last_used: now,
            });
        } else {
            let oldest_index = (0..self.entries.len())
                .min_by_key(|&index| self.entries[index].last_used)
                .unwrap_or(0);
            let oldest = &mut self.entries[oldest_index];
            // Reuse the entry's buffers: a full cache allocates nothing.
            for (field, value) in [
                (&mut oldest.access_key_id, access_key_id),
                (&mut oldest.secret_access_key, secret_access_key),
                (&mut oldest.date, date),
                (&mut oldest.region, region),
                (&mut oldest.service, service),
            ] {
                field.clear();
                field.push_str(value);
            }
            oldest.key = key;
            oldest.last_used = now;
        }
        assert!(self.entries.len() <= SIGNING_KEY_CACHE_ENTRIES_MAX);
        key
    }

    /// How many keys are cached.
    #[must_use]
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no key is cached.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    //! AWS's published examples, each checked at the three stages SigV4 has
    //! (canonical request, string to sign, signature) so that a failure
    //! points at the stage that broke. Sources:
    //! <https://docs.aws.amazon.com/AmazonS3/latest/API/sig-v4-header-based-auth.html>,
    //! <https://docs.aws.amazon.com/AmazonS3/latest/API/sigv4-query-string-auth.html>,
    //! <https://docs.aws.amazon.com/AmazonS3/latest/API/sigv4-streaming.html>,
    //! <https://docs.aws.amazon.com/AmazonS3/latest/API/sigv4-streaming-trailers.html>.

    use super::*;
    use http::{HeaderName, HeaderValue};

    pub(crate) const SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
    const AMZ_DATE: &str = "20130524T000000Z";
    const SCOPE: &str = "20130524/us-east-1/s3/aws4_request";

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

    fn key() -> SigningKey {
        SigningKey::derive(SECRET, "20130524", "us-east-1", "s3")
    }

    /// Checks one example at every stage.
    fn check_stages(
        canonical_uri: &str,
        canonical_query: &[u8],
        headers: &HeaderMap,
        signed_headers: &str,
        payload_hash: &str,
        method: &str,
        expected: (&str, &str, &str),
    ) {
        let (expected_canonical_request, expected_hash, expected_signature) = expected;
        let request = canonical_request(
            method,
            canonical_uri.as_bytes(),
            canonical_query,
            headers,
            signed_headers,
            payload_hash,
        );
        assert_eq!(
            std::str::from_utf8(&request).unwrap(),
            expected_canonical_request
        );
        let to_sign = string_to_sign(AMZ_DATE, SCOPE, &request);
        assert_eq!(
            to_sign,
            format!("AWS4-HMAC-SHA256\n{AMZ_DATE}\n{SCOPE}\n{expected_hash}")
        );
        assert_eq!(
            hex::encode(key().sign(to_sign.as_bytes())),
            expected_signature
        );
    }

    #[test]
    fn aws_example_get_object() {
        let headers = headers(&[
            ("host", "examplebucket.s3.amazonaws.com"),
            ("range", "bytes=0-9"),
            ("x-amz-content-sha256", EMPTY_SHA256_HEX),
            ("x-amz-date", AMZ_DATE),
        ]);
        check_stages(
            "/test.txt",
            b"",
            &headers,
            "host;range;x-amz-content-sha256;x-amz-date",
            EMPTY_SHA256_HEX,
            "GET",
            (
                "GET\n/test.txt\n\nhost:examplebucket.s3.amazonaws.com\nrange:bytes=0-9\n\
                 x-amz-content-sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\n\
                 x-amz-date:20130524T000000Z\n\nhost;range;x-amz-content-sha256;x-amz-date\n\
                 e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
                "7344ae5b7ee6c3e7e6b0fe0640412a37625d1fbfff95c48bbb2dc43964946972",
                "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41",
            ),
        );
    }

    #[test]
    fn aws_example_put_object() {
        let payload_hash = hex::encode(Sha256::digest(b"Welcome to Amazon S3."));
        assert_eq!(
            payload_hash,
            "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072"
        );
        let headers = headers(&[
            ("date", "Fri, 24 May 2013 00:00:00 GMT"),
            ("host", "examplebucket.s3.amazonaws.com"),
            ("x-amz-content-sha256", &payload_hash),
            ("x-amz-date", AMZ_DATE),
            ("x-amz-storage-class", "REDUCED_REDUNDANCY"),
        ]);
        // The key is `test$file.text`: `$` is encoded in the canonical URI.
        assert_eq!(reencode_path("/test$file.text"), b"/test%24file.text");
        check_stages(
            "/test%24file.text",
            b"",
            &headers,
            "date;host;x-amz-content-sha256;x-amz-date;x-amz-storage-class",
            &payload_hash,
            "PUT",
            (
                "PUT\n/test%24file.text\n\ndate:Fri, 24 May 2013 00:00:00 GMT\nhost:examplebucket.s3.amazonaws.com\n\
                 x-amz-content-sha256:44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072\n\
                 x-amz-date:20130524T000000Z\nx-amz-storage-class:REDUCED_REDUNDANCY\n\n\
                 date;host;x-amz-content-sha256;x-amz-date;x-amz-storage-class\n\
                 44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072",
                "9e0e90d9c76de8fa5b200d8c849cd5b8dc7a3be3951ddb7f6a76b4158342019d",
                "98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd",
            ),
        );
    }

    #[test]
    fn aws_example_get_bucket_lifecycle() {
        let headers = headers(&[
            ("host", "examplebucket.s3.amazonaws.com"),
            ("x-amz-content-sha256", EMPTY_SHA256_HEX),
            ("x-amz-date", AMZ_DATE),
        ]);
        let query = canonical_query_string("lifecycle", false);
        assert_eq!(query, b"lifecycle=");
        check_stages(
            "/",
            &query,
            &headers,
            "host;x-amz-content-sha256;x-amz-date",
            EMPTY_SHA256_HEX,
            "GET",
            (
                "GET\n/\nlifecycle=\nhost:examplebucket.s3.amazonaws.com\n\
                 x-amz-content-sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\n\
                 x-amz-date:20130524T000000Z\n\nhost;x-amz-content-sha256;x-amz-date\n\
                 e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
                "9766c798316ff2757b517bc739a67f6213b4ab36dd5da2f94eaebf79c77395ca",
                "fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543",
            ),
        );
    }

    #[test]
    fn aws_example_list_objects() {
        let headers = headers(&[
            ("host", "examplebucket.s3.amazonaws.com"),
            ("x-amz-content-sha256", EMPTY_SHA256_HEX),
            ("x-amz-date", AMZ_DATE),
        ]);
        // Sent in another order; sorting restores the canonical one.
        let query = canonical_query_string("prefix=J&max-keys=2", false);
        assert_eq!(query, b"max-keys=2&prefix=J");
        check_stages(
            "/",
            &query,
            &headers,
            "host;x-amz-content-sha256;x-amz-date",
            EMPTY_SHA256_HEX,
            "GET",
            (
                "GET\n/\nmax-keys=2&prefix=J\nhost:examplebucket.s3.amazonaws.com\n\
                 x-amz-content-sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\n\
                 x-amz-date:20130524T000000Z\n\nhost;x-amz-content-sha256;x-amz-date\n\
                 e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
                "df57d21db20da04d7fa30298dd4488ba3a2b47ca3a489c74750e0f1e7df1b9b7",
                "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7",
            ),
        );
    }

    #[test]
    fn aws_example_presigned_url() {
        let headers = headers(&[("host", "examplebucket.s3.amazonaws.com")]);
        let raw_query = "X-Amz-Algorithm=AWS4-HMAC-SHA256\
            &X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request\
            &X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&X-Amz-SignedHeaders=host\
            &X-Amz-Signature=aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404";
        let query = canonical_query_string(raw_query, true);
        check_stages(
            "/test.txt",
            &query,
            &headers,
            "host",
            UNSIGNED_PAYLOAD,
            "GET",
            (
                "GET\n/test.txt\nX-Amz-Algorithm=AWS4-HMAC-SHA256\
                 &X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request\
                 &X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&X-Amz-SignedHeaders=host\n\
                 host:examplebucket.s3.amazonaws.com\n\nhost\nUNSIGNED-PAYLOAD",
                "3bfa292879f6447bbcda7001decf97f4a54dc650c8942174ae0a9121cf58ad04",
                "aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404",
            ),
        );
    }

    #[test]
    fn aws_example_chunked_upload_seed() {
        let headers = headers(&[
            ("content-encoding", "aws-chunked"),
            ("content-length", "66824"),
            ("host", "s3.amazonaws.com"),
            ("x-amz-content-sha256", "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"),
            ("x-amz-date", AMZ_DATE),
            ("x-amz-decoded-content-length", "66560"),
            ("x-amz-storage-class", "REDUCED_REDUNDANCY"),
        ]);
        check_stages(
            "/examplebucket/chunkObject.txt",
            b"",
            &headers,
            "content-encoding;content-length;host;x-amz-content-sha256;x-amz-date;x-amz-decoded-content-length;x-amz-storage-class",
            "STREAMING-AWS4-HMAC-SHA256-PAYLOAD",
            "PUT",
            (
                "PUT\n/examplebucket/chunkObject.txt\n\ncontent-encoding:aws-chunked\ncontent-length:66824\n\
                 host:s3.amazonaws.com\nx-amz-content-sha256:STREAMING-AWS4-HMAC-SHA256-PAYLOAD\n\
                 x-amz-date:20130524T000000Z\nx-amz-decoded-content-length:66560\n\
                 x-amz-storage-class:REDUCED_REDUNDANCY\n\n\
                 content-encoding;content-length;host;x-amz-content-sha256;x-amz-date;x-amz-decoded-content-length;x-amz-storage-class\n\
                 STREAMING-AWS4-HMAC-SHA256-PAYLOAD",
                "cee3fed04b70f867d036f722359b0b1f2f0e5dc0efadbc082b76c4c60e316455",
                "4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9",
            ),
        );
    }

    #[test]
    fn aws_example_chunked_upload_with_trailer_seed() {
        let headers = headers(&[
            ("content-encoding", "aws-chunked"),
            ("host", "s3.amazonaws.com"),
            (
                "x-amz-content-sha256",
                "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER",
            ),
            ("x-amz-date", AMZ_DATE),
            ("x-amz-decoded-content-length", "66560"),
            ("x-amz-storage-class", "REDUCED_REDUNDANCY"),
            ("x-amz-trailer", "x-amz-checksum-crc32c"),
        ]);
        check_stages(
            "/examplebucket/chunkObject.txt",
            b"",
            &headers,
            "content-encoding;host;x-amz-content-sha256;x-amz-date;x-amz-decoded-content-length;x-amz-storage-class;x-amz-trailer",
            "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER",
            "PUT",
            (
                "PUT\n/examplebucket/chunkObject.txt\n\ncontent-encoding:aws-chunked\nhost:s3.amazonaws.com\n\
                 x-amz-content-sha256:STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER\nx-amz-date:20130524T000000Z\n\
                 x-amz-decoded-content-length:66560\nx-amz-storage-class:REDUCED_REDUNDANCY\n\
                 x-amz-trailer:x-amz-checksum-crc32c\n\n\
                 content-encoding;host;x-amz-content-sha256;x-amz-date;x-amz-decoded-content-length;x-amz-storage-class;x-amz-trailer\n\
                 STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER",
                "44d48b8c2f70eae815a0198cc73d7a546a73a93359c070abbaa5e6c7de112559",
                "106e2a8a18243abcf37539882f36619c00e2dfc72633413f02d3b74544bfeb8e",
            ),
        );
    }

    #[test]
    fn uri_encoding_follows_aws_rules() {
        let mut out = Vec::new();
        uri_encode(&mut out, "a-Z_0.9~ /+*$!%é".as_bytes(), true);
        assert_eq!(out, b"a-Z_0.9~%20%2F%2B%2A%24%21%25%C3%A9");
        out.clear();
        uri_encode(&mut out, b"/a b/c", false);
        assert_eq!(out, b"/a%20b/c");
        // Decoding then encoding normalizes escapes but keeps `//`, `.`, `..`.
        assert_eq!(reencode_path("/b//./../k%7e%2fx+y"), b"/b//./../k~/x%2By");
    }

    #[test]
    fn canonical_query_decodes_sorts_and_reencodes() {
        assert_eq!(canonical_query_string("", false), b"");
        assert_eq!(canonical_query_string("uploads", false), b"uploads=");
        assert_eq!(canonical_query_string("uploads=", false), b"uploads=");
        assert_eq!(
            canonical_query_string("b=2&a=2&a=1&&c", false),
            b"a=1&a=2&b=2&c="
        );
        assert_eq!(
            canonical_query_string("prefix=a%2fb%20c&delimiter=%2F", false),
            b"delimiter=%2F&prefix=a%2Fb%20c"
        );
        assert_eq!(
            canonical_query_string("k=a~b&k2=x%7Ey", false),
            b"k=a~b&k2=x~y"
        );
        assert_eq!(
            canonical_query_string("X-Amz-Signature=ab&x=1", true),
            b"x=1"
        );
        assert_eq!(
            canonical_query_string("X-Amz-Signature=ab&x=1", false),
            b"X-Amz-Signature=ab&x=1"
        );
    }

    /// Goal: `+` and `%2B` in a query canonicalize as S3 (and the router)
    /// read them: a raw `+` is a space and signs as `%20`, `%2B` is a plus
    /// and signs as `%2B`. Regression: both signed as `%2B`, so a request
    /// signed with `prefix=a%2Bb` could be sent as `prefix=a+b`, which the
    /// router reads as `a b`, with its signature still valid.
    #[test]
    fn plus_in_a_query_is_a_space_and_percent_2b_a_plus() {
        assert_eq!(canonical_query_string("prefix=a+b", false), b"prefix=a%20b");
        assert_eq!(
            canonical_query_string("prefix=a%20b", false),
            b"prefix=a%20b"
        );
        assert_eq!(
            canonical_query_string("prefix=a%2Bb", false),
            b"prefix=a%2Bb"
        );
        assert_eq!(
            canonical_query_string("prefix=a%2bb", false),
            b"prefix=a%2Bb"
        );
        // Names are decoded the same way.
        assert_eq!(
            canonical_query_string("a+b=1&a%2Bb=2", false),
            b"a%20b=1&a%2Bb=2"
        );
        assert_eq!(decode_query_component("x+y%2B%20z"), b"x y+ z");
        assert_eq!(decode_query_component("%zz+"), b"%zz ");
    }

    #[test]
    fn canonical_header_values_are_trimmed_collapsed_and_joined() {
        let headers = headers(&[
            ("x-amz-meta-a", "  one   two  "),
            ("x-amz-meta-b", "b1"),
            ("x-amz-meta-b", " b2 "),
        ]);
        let request = canonical_request(
            "GET",
            b"/",
            b"",
            &headers,
            "x-amz-meta-a;x-amz-meta-b;x-amz-meta-c",
            "h",
        );
        assert_eq!(
            std::str::from_utf8(&request).unwrap(),
            "GET\n/\n\nx-amz-meta-a:one two\nx-amz-meta-b:b1,b2\nx-amz-meta-c:\n\nx-amz-meta-a;x-amz-meta-b;x-amz-meta-c\nh"
        );
    }

    #[test]
    fn credential_scope_faults_are_told_apart() {
        let scope =
            parse_credential_scope("AKID/20130524/us-east-1/s3/aws4_request", "us-east-1").unwrap();
        assert_eq!(
            scope,
            CredentialScope {
                access_key_id: "AKID",
                date: "20130524",
                region: "us-east-1"
            }
        );
        let cases = [
            ("AKID/20130524/us-east-1/s3", ScopeError::Malformed),
            (
                "AKID/20130524/us-east-1/s3/aws4_request/x",
                ScopeError::Malformed,
            ),
            ("/20130524/us-east-1/s3/aws4_request", ScopeError::Malformed),
            (
                "AKID/2013052/us-east-1/s3/aws4_request",
                ScopeError::DateFormat("2013052"),
            ),
            (
                "AKID/20130524/eu-west-1/s3/aws4_request",
                ScopeError::Region("eu-west-1"),
            ),
            (
                "AKID/20130524/us-east-1/iam/aws4_request",
                ScopeError::Service("iam"),
            ),
            (
                "AKID/20130524/us-east-1/s3/aws4_reques",
                ScopeError::Terminator("aws4_reques"),
            ),
        ];
        for (credential, fault) in cases {
            assert_eq!(
                parse_credential_scope(credential, "us-east-1"),
                Err(fault),
                "{credential}"
            );
        }
        assert_eq!(
            ScopeError::Region("eu-west-1").describe("us-east-1"),
            "the region 'eu-west-1' is wrong; expecting 'us-east-1'"
        );
    }

    #[test]
    fn host_and_amz_headers_must_be_signed() {
        let headers = headers(&[
            ("host", "h"),
            ("x-amz-date", AMZ_DATE),
            ("x-amz-content-sha256", "UNSIGNED-PAYLOAD"),
            ("x-amzn-trace-id", "t"),
            ("content-type", "text/plain"),
        ]);
        assert_eq!(check_headers_signed(&headers, "host;x-amz-date"), Ok(()));
        assert_eq!(
            check_headers_signed(&headers, "x-amz-date")
                .unwrap_err()
                .code(),
            "AccessDenied"
        );
        assert_eq!(
            check_headers_signed(&headers, "host").unwrap_err().code(),
            "AccessDenied"
        );
    }

    #[test]
    fn raw_path_is_signed_first_then_the_reencoded_one() {
        let headers = headers(&[("host", "h")]);
        let key = key();
        let request = |raw_path| SignedRequest {
            method: "GET",
            raw_path,
            canonical_query: b"",
            headers: &headers,
            signed_headers: "host",
            payload_hash: UNSIGNED_PAYLOAD,
            amz_date: AMZ_DATE,
            scope: SCOPE,
        };
        // A client that signs `//a/./b` as sent (S3 does not normalize).
        let signature = request("").signature(&key, b"//a/./b");
        assert_eq!(
            verify_signature(&request("//a/./b"), &key, &signature),
            Ok(())
        );
        assert!(verify_signature(&request("/a/b"), &key, &signature).is_err());
        // A client that signed `%24` and `%2B` but sent `$` and `+`.
        let signature = request("").signature(&key, b"/k%24%2B");
        assert_eq!(verify_signature(&request("/k$+"), &key, &signature), Ok(()));
        // An empty path signs as `/`.
        let signature = request("").signature(&key, b"/");
        assert_eq!(verify_signature(&request(""), &key, &signature), Ok(()));
        // Signed encoded once: a double-encoding signer does not match.
        let signature = request("").signature(&key, b"/a%2520b");
        assert!(verify_signature(&request("/a%20b"), &key, &signature).is_err());
    }

    #[test]
    fn signatures_compare_exactly() {
        let a = [7u8; 32];
        let mut b = a;
        assert!(signatures_equal(&a, &b));
        b[31] ^= 1;
        assert!(!signatures_equal(&a, &b));
        let hex_signature = "F0E8BDB87C964420E857BD35B5D6ED310BD44F0170ABA48DD91039C6036BDB41";
        assert_eq!(
            parse_signature(hex_signature),
            parse_signature(&hex_signature.to_lowercase())
        );
        assert_eq!(parse_signature("f0e8"), None);
        assert_eq!(parse_signature(&"g".repeat(64)), None);
    }

    #[test]
    fn signing_key_cache_derives_once_and_stays_bounded() {
        let mut cache = SigningKeyCache::new();
        let first = cache.signing_key("AKID", SECRET, "20130524", "us-east-1", "s3");
        assert_eq!(first, key());
        assert_eq!(
            cache.signing_key("AKID", SECRET, "20130524", "us-east-1", "s3"),
            first
        );
        assert_eq!(cache.len(), 1);
        // A rotated secret is a different key at once.
        assert_ne!(
            cache.signing_key("AKID", "other", "20130524", "us-east-1", "s3"),
            first
        );
        assert_eq!(cache.len(), 2);
        for day in 0..(SIGNING_KEY_CACHE_ENTRIES_MAX * 2) {
            let date = format!("201306{:02}", day % 30 + 1);
            let expected = SigningKey::derive(SECRET, &date, "us-east-1", "s3");
            assert_eq!(
                cache.signing_key(&format!("K{day}"), SECRET, &date, "us-east-1", "s3"),
                expected
            );
            assert!(cache.len() <= SIGNING_KEY_CACHE_ENTRIES_MAX);
        }
        assert_eq!(cache.len(), SIGNING_KEY_CACHE_ENTRIES_MAX);
        // The most recent entry survived; the first was evicted and is derived again correctly.
        assert_eq!(
            cache.signing_key("AKID", SECRET, "20130524", "us-east-1", "s3"),
            first
        );
        assert_eq!(format!("{first:?}"), "SigningKey(<redacted>)");
    }
}
