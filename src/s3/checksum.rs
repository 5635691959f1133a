//! The `x-amz-checksum-*` values of request bodies.
//!
//! S3 accepts five checksum algorithms, sent base64-encoded in a header
//! (`x-amz-checksum-crc32: ...`) or, for aws-chunked bodies, in a trailer
//! of the same name that `x-amz-trailer` announces. Since 2025 every AWS SDK
//! sends one with every upload by default. This module:
//!
//! - works out from a request's headers which checksum its body carries
//!   ([`BodyChecksum::from_request`]): a header value, a trailer, or only
//!   `x-amz-sdk-checksum-algorithm` (compute and store that algorithm);
//!   when none, CRC64NVME is computed, as S3 does for uploads without a
//!   checksum, so every object has one;
//! - computes it while the body streams ([`BodyChecksum::update`]) and
//!   checks it at the end, before anything is committed
//!   ([`BodyChecksum::finish`]): a wrong value is `400 BadDigest`, a
//!   malformed one or an unknown algorithm `400 InvalidRequest`;
//! - checks a body already in memory ([`verify`], for the XML bodies of
//!   `DeleteObjects`);
//! - writes stored checksums as response headers ([`insert_headers`]).
//!
//! The CRCs come from `crc-fast` (SIMD), the SHAs from `sha1` and `sha2`.
//! CRCs are encoded big-endian, as S3 does.

use base64::Engine as _;
use http::{HeaderMap, HeaderName, HeaderValue};

use crate::error::S3Error;
use crate::s3_error;
use crate::storage::object::{Checksum, ChecksumAlgorithm};

/// Every algorithm, in the order headers are looked for.
pub const ALL: [ChecksumAlgorithm; 5] = [
    ChecksumAlgorithm::Crc32,
    ChecksumAlgorithm::Crc32c,
    ChecksumAlgorithm::Crc64Nvme,
    ChecksumAlgorithm::Sha1,
    ChecksumAlgorithm::Sha256,
];

/// The header (and trailer) that carries `algorithm`.
#[must_use]
pub fn header_name(algorithm: ChecksumAlgorithm) -> &'static str {
    match algorithm {
        ChecksumAlgorithm::Crc32 => "x-amz-checksum-crc32",
        ChecksumAlgorithm::Crc32c => "x-amz-checksum-crc32c",
        ChecksumAlgorithm::Crc64Nvme => "x-amz-checksum-crc64nvme",
        ChecksumAlgorithm::Sha1 => "x-amz-checksum-sha1",
        ChecksumAlgorithm::Sha256 => "x-amz-checksum-sha256",
    }
}

/// The name AWS uses in `x-amz-sdk-checksum-algorithm` and messages.
#[must_use]
pub fn name(algorithm: ChecksumAlgorithm) -> &'static str {
    match algorithm {
        ChecksumAlgorithm::Crc32 => "CRC32",
        ChecksumAlgorithm::Crc32c => "CRC32C",
        ChecksumAlgorithm::Crc64Nvme => "CRC64NVME",
        ChecksumAlgorithm::Sha1 => "SHA1",
        ChecksumAlgorithm::Sha256 => "SHA256",
    }
}

/// The algorithm named `text` (case-insensitive), as in
/// `x-amz-sdk-checksum-algorithm`.
#[must_use]
pub fn parse_name(text: &str) -> Option<ChecksumAlgorithm> {
    ALL.into_iter()
        .find(|algorithm| name(*algorithm).eq_ignore_ascii_case(text.trim()))
}

pub use crate::storage::digest::{Hasher, digest};

/// Where the value to check comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Expected {
    /// A header: the decoded value.
    Header(Vec<u8>),
    /// A trailer after the body.
    Trailer,
    /// Nothing to check: the value is computed and stored.
    Computed,
}

/// The checksum of one request body: which algorithm, its running
/// computation, and what to check it against.
#[derive(Clone)]
pub struct BodyChecksum {
    algorithm: ChecksumAlgorithm,
    hasher: Hasher,
    expected: Expected,
}

impl BodyChecksum {
    /// What `headers` ask for (see the module doc). A request may carry one
    /// checksum: two different `x-amz-checksum-*` headers, or a header and
    /// a trailer of different algorithms, are `InvalidRequest`.
    pub fn from_request(headers: &HeaderMap) -> Result<BodyChecksum, S3Error> {
        Self::from_request_or(headers, ChecksumAlgorithm::Crc64Nvme)
    }

    /// As [`Self::from_request`], computing `default` when the request
    /// names no algorithm (a part computes its upload's).
    pub fn from_request_or(
        headers: &HeaderMap,
        default: ChecksumAlgorithm,
    ) -> Result<BodyChecksum, S3Error> {
        let mut found: Option<(ChecksumAlgorithm, Expected)> = None;
        let mut single = |algorithm, expected| {
            if found.as_ref().is_some_and(|(other, _)| *other != algorithm) {
                return Err(s3_error!(
                    InvalidRequest,
                    "Expecting a single x-amz-checksum- header. Multiple checksum Types are not allowed."
                ));
            }
            found = Some((algorithm, expected));
            Ok(())
        };
        for algorithm in ALL {
            let header = header_name(algorithm);
            let mut values = headers.get_all(header).iter();
            if let Some(value) = values.next() {
                if values.next().is_some() {
                    return Err(invalid(header));
                }
                let value = value.to_str().map_err(|_| invalid(header))?;
                single(algorithm, Expected::Header(decode_value(algorithm, value)?))?;
            }
        }
        if let Some(trailer) = headers.get("x-amz-trailer") {
            let trailer = trailer.to_str().unwrap_or_default().trim();
            for name in trailer.split(',').map(str::trim) {
                if let Some(suffix) = name.to_ascii_lowercase().strip_prefix("x-amz-checksum-") {
                    let algorithm = ALL
                        .into_iter()
                        .find(|algorithm| header_name(*algorithm).ends_with(&format!("-{suffix}")))
                        .ok_or_else(|| {
                            s3_error!(
                                InvalidRequest,
                                "The value specified in the x-amz-trailer header is not supported"
                            )
                        })?;
                    single(algorithm, Expected::Trailer)?;
                }
            }
        }
        if let Some(value) = headers.get("x-amz-sdk-checksum-algorithm") {
            let algorithm = value
                .to_str()
                .ok()
                .and_then(parse_name)
                .ok_or_else(|| invalid("x-amz-sdk-checksum-algorithm"))?;
            if found.is_none() {
                found = Some((algorithm, Expected::Computed));
            } else if found.as_ref().is_some_and(|(other, _)| *other != algorithm) {
                return Err(s3_error!(
                    InvalidRequest,
                    "Value for x-amz-sdk-checksum-algorithm header is invalid."
                ));
            }
        }
        let (algorithm, expected) = found.unwrap_or((default, Expected::Computed));
        Ok(BodyChecksum {
            algorithm,
            hasher: Hasher::new(algorithm),
            expected,
        })
    }

    #[must_use]
    pub fn algorithm(&self) -> ChecksumAlgorithm {
        self.algorithm
    }

    pub fn update(&mut self, data: &[u8]) {
        self.hasher.update(data);
    }

    /// The body's checksum, checked against what the request sent (a header
    /// value, or the trailer in `trailers`).
    pub fn finish(self, trailers: &[(String, String)]) -> Result<Checksum, S3Error> {
        let computed = self.hasher.finish(self.algorithm);
        let header = header_name(self.algorithm);
        let sent = match self.expected {
            Expected::Header(value) => Some(value),
            Expected::Trailer => {
                let value = trailers
                    .iter()
                    .find(|(name, _)| name.eq_ignore_ascii_case(header))
                    .map(|(_, value)| value.as_str())
                    .ok_or_else(|| {
                        s3_error!(
                            InvalidRequest,
                            "The x-amz-trailer header announced {header}, which the body did not carry."
                        )
                    })?;
                Some(decode_value(self.algorithm, value)?)
            }
            Expected::Computed => None,
        };
        if sent.is_some_and(|sent| sent != computed) {
            return Err(s3_error!(
                BadDigest,
                "The {} you specified did not match the calculated checksum.",
                name(self.algorithm)
            ));
        }
        Ok(Checksum {
            algorithm: self.algorithm,
            value: computed,
            composite: false,
        })
    }
}

/// A base64 checksum value of `algorithm`, decoded and its length checked.
fn decode_value(algorithm: ChecksumAlgorithm, value: &str) -> Result<Vec<u8>, S3Error> {
    let header = header_name(algorithm);
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(value.trim())
        .map_err(|_| invalid(header))?;
    if decoded.len() == algorithm.digest_len() {
        Ok(decoded)
    } else {
        Err(invalid(header))
    }
}

/// Check every checksum the request carries for `body`, in headers or
/// trailers (`trailers` from the body reader, after the body). Returns
/// whether there was at least one: a malformed value is `InvalidRequest`,
/// a wrong one `BadDigest`, as AWS answers.
pub fn verify(
    headers: &HeaderMap,
    trailers: &[(String, String)],
    body: &[u8],
) -> Result<bool, S3Error> {
    let mut found = false;
    for algorithm in ALL {
        let header = header_name(algorithm);
        let values = headers
            .get_all(header)
            .iter()
            .map(|value| value.to_str().unwrap_or("\u{fffd}").to_owned())
            .chain(
                trailers
                    .iter()
                    .filter(|(trailer, _)| trailer.eq_ignore_ascii_case(header))
                    .map(|(_, value)| value.clone()),
            );
        for value in values {
            found = true;
            if decode_value(algorithm, &value)? != digest(algorithm, body) {
                return Err(s3_error!(
                    BadDigest,
                    "The {} you specified did not match the calculated checksum.",
                    name(algorithm)
                ));
            }
        }
    }
    Ok(found)
}

/// A stored checksum as S3 shows it: base64, and for a `COMPOSITE` one
/// `-<part count>` after it.
#[must_use]
pub fn display_value(checksum: &Checksum, part_count: usize) -> String {
    let value = base64::engine::general_purpose::STANDARD.encode(&checksum.value);
    if checksum.composite {
        format!("{value}-{part_count}")
    } else {
        value
    }
}

/// `COMPOSITE` or `FULL_OBJECT`.
#[must_use]
pub fn type_name(composite: bool) -> &'static str {
    if composite {
        "COMPOSITE"
    } else {
        "FULL_OBJECT"
    }
}

/// Add `x-amz-checksum-<algorithm>` and `x-amz-checksum-type` for each
/// checksum of an object of `part_count` parts (0: not multipart).
pub fn insert_headers(headers: &mut HeaderMap, checksums: &[Checksum], part_count: usize) {
    for checksum in checksums {
        headers.insert(
            HeaderName::from_static(header_name(checksum.algorithm)),
            HeaderValue::from_str(&display_value(checksum, part_count)).expect("base64 is ASCII"),
        );
        headers.insert(
            HeaderName::from_static("x-amz-checksum-type"),
            HeaderValue::from_static(type_name(checksum.composite)),
        );
    }
}

/// The XML element of `algorithm` in multipart bodies (`ChecksumCRC32`...).
#[must_use]
pub fn element_name(algorithm: ChecksumAlgorithm) -> &'static str {
    match algorithm {
        ChecksumAlgorithm::Crc32 => "ChecksumCRC32",
        ChecksumAlgorithm::Crc32c => "ChecksumCRC32C",
        ChecksumAlgorithm::Crc64Nvme => "ChecksumCRC64NVME",
        ChecksumAlgorithm::Sha1 => "ChecksumSHA1",
        ChecksumAlgorithm::Sha256 => "ChecksumSHA256",
    }
}

/// The checksum of a multipart object from its parts' checksums (in
/// order, with the parts' sizes): `COMPOSITE`, the digest of the
/// concatenated part digests; `FULL_OBJECT`, the CRC of the whole object,
/// combined from the parts' CRCs without reading any data.
#[must_use]
pub fn combine(algorithm: ChecksumAlgorithm, composite: bool, parts: &[(&[u8], u64)]) -> Checksum {
    let value = if composite {
        let mut hasher = Hasher::new(algorithm);
        for (part, _) in parts {
            hasher.update(part);
        }
        hasher.finish(algorithm)
    } else {
        use crc_fast::CrcAlgorithm;
        let crc = match algorithm {
            ChecksumAlgorithm::Crc32 => CrcAlgorithm::Crc32IsoHdlc,
            ChecksumAlgorithm::Crc32c => CrcAlgorithm::Crc32Iscsi,
            ChecksumAlgorithm::Crc64Nvme => CrcAlgorithm::Crc64Nvme,
            ChecksumAlgorithm::Sha1 | ChecksumAlgorithm::Sha256 => {
                unreachable!("FULL_OBJECT is refused for the SHAs at creation")
            }
        };
        let as_u64 = |bytes: &[u8]| {
            let mut padded = [0_u8; 8];
            padded[8 - bytes.len()..].copy_from_slice(bytes);
            u64::from_be_bytes(padded)
        };
        let mut combined = as_u64(&digest(algorithm, b""));
        for (part, len) in parts {
            combined = crc_fast::checksum_combine(crc, combined, as_u64(part), *len);
        }
        let bytes = combined.to_be_bytes();
        bytes[8 - algorithm.digest_len()..].to_vec()
    };
    Checksum {
        algorithm,
        value,
        composite,
    }
}

fn invalid(name: &str) -> S3Error {
    s3_error!(InvalidRequest, "Value for {name} header is invalid.")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::S3ErrorCode;

    fn b64(bytes: &[u8]) -> String {
        base64::engine::general_purpose::STANDARD.encode(bytes)
    }

    #[test]
    fn digests_match_published_check_values() {
        // The "check" values of the CRC catalogue, over "123456789".
        let check = b"123456789";
        assert_eq!(
            digest(ChecksumAlgorithm::Crc32, check),
            0xCBF4_3926_u32.to_be_bytes()
        );
        assert_eq!(
            digest(ChecksumAlgorithm::Crc32c, check),
            0xE306_9283_u32.to_be_bytes()
        );
        assert_eq!(
            digest(ChecksumAlgorithm::Crc64Nvme, check),
            0xAE8B_1486_0A79_9888_u64.to_be_bytes()
        );
        assert_eq!(
            hex::encode(digest(ChecksumAlgorithm::Sha1, b"abc")),
            "a9993e364706816aba3e25717850c26c9cd0d89d"
        );
        assert_eq!(
            hex::encode(digest(ChecksumAlgorithm::Sha256, b"abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        // Streaming in pieces gives the same digest.
        for algorithm in ALL {
            let mut hasher = Hasher::new(algorithm);
            hasher.update(b"1234");
            hasher.update(b"56789");
            assert_eq!(
                hasher.finish(algorithm),
                digest(algorithm, check),
                "{algorithm:?}"
            );
        }
    }

    #[test]
    fn multipart_checksums_combine_parts() {
        let parts: [&[u8]; 3] = [b"first part ", b"", b"and the rest"];
        let whole: Vec<u8> = parts.concat();
        for algorithm in [
            ChecksumAlgorithm::Crc32,
            ChecksumAlgorithm::Crc32c,
            ChecksumAlgorithm::Crc64Nvme,
        ] {
            let digests: Vec<Vec<u8>> = parts.iter().map(|part| digest(algorithm, part)).collect();
            let with_lengths: Vec<(&[u8], u64)> = digests
                .iter()
                .zip(parts)
                .map(|(digest, part)| (digest.as_slice(), part.len() as u64))
                .collect();
            let full = combine(algorithm, false, &with_lengths);
            assert_eq!(full.value, digest(algorithm, &whole), "{algorithm:?}");
            assert!(!full.composite);
        }
        for algorithm in ALL {
            let digests: Vec<Vec<u8>> = parts.iter().map(|part| digest(algorithm, part)).collect();
            let with_lengths: Vec<(&[u8], u64)> = digests
                .iter()
                .map(|digest| (digest.as_slice(), 0))
                .collect();
            let composite = combine(algorithm, true, &with_lengths);
            assert_eq!(composite.value, digest(algorithm, &digests.concat()));
            assert!(display_value(&composite, 3).ends_with("-3"));
        }
    }

    #[test]
    fn in_memory_bodies_are_verified() {
        let body = b"<Delete/>";
        let good = b64(&digest(ChecksumAlgorithm::Crc32, body));
        let mut headers = HeaderMap::new();
        assert!(!verify(&headers, &[], body).unwrap());
        headers.insert("x-amz-checksum-crc32", good.parse().unwrap());
        assert!(verify(&headers, &[], body).unwrap());
        assert_eq!(
            verify(&headers, &[], b"other").unwrap_err().code,
            S3ErrorCode::BadDigest
        );
        headers.insert("x-amz-checksum-crc32", "not base64!".parse().unwrap());
        assert_eq!(
            verify(&headers, &[], body).unwrap_err().code,
            S3ErrorCode::InvalidRequest
        );
        headers.insert("x-amz-checksum-crc32", "AAAA".parse().unwrap());
        assert_eq!(
            verify(&headers, &[], body).unwrap_err().code,
            S3ErrorCode::InvalidRequest
        );
        let sha = b64(&digest(ChecksumAlgorithm::Sha256, body));
        let trailers = [("x-amz-checksum-sha256".to_owned(), sha)];
        assert!(verify(&HeaderMap::new(), &trailers, body).unwrap());
    }

    fn streamed(
        headers: &HeaderMap,
        trailers: &[(String, String)],
        body: &[u8],
    ) -> Result<Checksum, S3Error> {
        let mut checksum = BodyChecksum::from_request(headers)?;
        for piece in body.chunks(3) {
            checksum.update(piece);
        }
        checksum.finish(trailers)
    }

    #[test]
    fn body_checksums_come_from_headers_trailers_or_the_algorithm_header() {
        let body = b"streamed body";
        // Nothing sent: CRC64NVME is computed.
        let stored = streamed(&HeaderMap::new(), &[], body).unwrap();
        assert_eq!(stored.algorithm, ChecksumAlgorithm::Crc64Nvme);
        assert_eq!(stored.value, digest(ChecksumAlgorithm::Crc64Nvme, body));
        for algorithm in ALL {
            let value = b64(&digest(algorithm, body));
            // A header.
            let mut headers = HeaderMap::new();
            headers.insert(header_name(algorithm), value.parse().unwrap());
            assert_eq!(streamed(&headers, &[], body).unwrap().algorithm, algorithm);
            assert_eq!(
                streamed(&headers, &[], b"other").unwrap_err().code,
                S3ErrorCode::BadDigest
            );
            // A trailer.
            let mut headers = HeaderMap::new();
            headers.insert("x-amz-trailer", header_name(algorithm).parse().unwrap());
            headers.insert(
                "x-amz-sdk-checksum-algorithm",
                name(algorithm).parse().unwrap(),
            );
            let trailers = [(header_name(algorithm).to_owned(), value.clone())];
            assert_eq!(
                streamed(&headers, &trailers, body).unwrap().value,
                digest(algorithm, body)
            );
            assert_eq!(
                streamed(&headers, &trailers, b"x").unwrap_err().code,
                S3ErrorCode::BadDigest
            );
            assert_eq!(
                streamed(&headers, &[], body).unwrap_err().code,
                S3ErrorCode::InvalidRequest
            );
            // Only the algorithm: computed and stored.
            let mut headers = HeaderMap::new();
            headers.insert(
                "x-amz-sdk-checksum-algorithm",
                name(algorithm).to_lowercase().parse().unwrap(),
            );
            assert_eq!(streamed(&headers, &[], body).unwrap().algorithm, algorithm);
        }
        // Two algorithms, an unknown one, a malformed value.
        let mut headers = HeaderMap::new();
        headers.insert("x-amz-checksum-crc32", b64(&[0; 4]).parse().unwrap());
        headers.insert("x-amz-checksum-sha1", b64(&[0; 20]).parse().unwrap());
        assert_eq!(
            streamed(&headers, &[], body).unwrap_err().code,
            S3ErrorCode::InvalidRequest
        );
        let mut headers = HeaderMap::new();
        headers.insert("x-amz-sdk-checksum-algorithm", "MD5".parse().unwrap());
        assert_eq!(
            streamed(&headers, &[], body).unwrap_err().code,
            S3ErrorCode::InvalidRequest
        );
        let mut headers = HeaderMap::new();
        headers.insert("x-amz-trailer", "x-amz-checksum-md5".parse().unwrap());
        assert_eq!(
            streamed(&headers, &[], body).unwrap_err().code,
            S3ErrorCode::InvalidRequest
        );
        let mut headers = HeaderMap::new();
        headers.insert("x-amz-checksum-crc32c", "AAAAAAAA".parse().unwrap());
        assert_eq!(
            streamed(&headers, &[], body).unwrap_err().code,
            S3ErrorCode::InvalidRequest
        );
        let mut headers = HeaderMap::new();
        headers.insert(
            "x-amz-checksum-crc32",
            b64(&digest(ChecksumAlgorithm::Crc32, body))
                .parse()
                .unwrap(),
        );
        headers.insert("x-amz-sdk-checksum-algorithm", "SHA256".parse().unwrap());
        assert_eq!(
            streamed(&headers, &[], body).unwrap_err().code,
            S3ErrorCode::InvalidRequest
        );
    }
}
