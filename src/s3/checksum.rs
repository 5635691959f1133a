//! The `x-amz-checksum-*` values of a request body held in memory.
//!
//! S3 accepts five checksum algorithms, sent base64-encoded in a header
//! (`x-amz-checksum-crc32: ...`) or, for aws-chunked bodies, in a trailer
//! of the same name. This module computes and checks them over a body that
//! is already in memory: the XML bodies of the operations whose API
//! requires an integrity check (`DeleteObjects` takes `Content-MD5` or any
//! of these). The CRCs come from `crc-fast` (SIMD), the SHAs from `sha1`
//! and `sha2`.

use base64::Engine as _;
use http::HeaderMap;
use sha2::Digest as _;

use crate::error::S3Error;
use crate::s3_error;

/// A checksum algorithm S3 defines for `x-amz-checksum-*`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    Crc32,
    Crc32c,
    Crc64Nvme,
    Sha1,
    Sha256,
}

impl Algorithm {
    pub const ALL: [Algorithm; 5] = [
        Algorithm::Crc32,
        Algorithm::Crc32c,
        Algorithm::Crc64Nvme,
        Algorithm::Sha1,
        Algorithm::Sha256,
    ];

    /// The header (and trailer) that carries it.
    #[must_use]
    pub fn header_name(self) -> &'static str {
        match self {
            Algorithm::Crc32 => "x-amz-checksum-crc32",
            Algorithm::Crc32c => "x-amz-checksum-crc32c",
            Algorithm::Crc64Nvme => "x-amz-checksum-crc64nvme",
            Algorithm::Sha1 => "x-amz-checksum-sha1",
            Algorithm::Sha256 => "x-amz-checksum-sha256",
        }
    }

    /// The name AWS uses in messages.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Crc32 => "CRC32",
            Algorithm::Crc32c => "CRC32C",
            Algorithm::Crc64Nvme => "CRC64NVME",
            Algorithm::Sha1 => "SHA1",
            Algorithm::Sha256 => "SHA256",
        }
    }

    /// The digest of `data`, big-endian for the CRCs as S3 encodes them.
    #[must_use]
    pub fn digest(self, data: &[u8]) -> Vec<u8> {
        use crc_fast::CrcAlgorithm;
        let crc32 = |algorithm| {
            let value = u32::try_from(crc_fast::checksum(algorithm, data)).expect("a 32-bit CRC");
            value.to_be_bytes().to_vec()
        };
        match self {
            Algorithm::Crc32 => crc32(CrcAlgorithm::Crc32IsoHdlc),
            Algorithm::Crc32c => crc32(CrcAlgorithm::Crc32Iscsi),
            Algorithm::Crc64Nvme => crc_fast::checksum(CrcAlgorithm::Crc64Nvme, data)
                .to_be_bytes()
                .to_vec(),
            Algorithm::Sha1 => sha1::Sha1::digest(data).to_vec(),
            Algorithm::Sha256 => sha2::Sha256::digest(data).to_vec(),
        }
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
    for algorithm in Algorithm::ALL {
        let name = algorithm.header_name();
        let values = headers
            .get_all(name)
            .iter()
            .map(|value| value.to_str().unwrap_or("\u{fffd}").to_owned())
            .chain(
                trailers
                    .iter()
                    .filter(|(trailer, _)| trailer.eq_ignore_ascii_case(name))
                    .map(|(_, value)| value.clone()),
            );
        for value in values {
            found = true;
            let sent = base64::engine::general_purpose::STANDARD
                .decode(value.trim())
                .map_err(|_| invalid(name))?;
            let computed = algorithm.digest(body);
            if sent.len() != computed.len() {
                return Err(invalid(name));
            }
            if sent != computed {
                return Err(s3_error!(
                    BadDigest,
                    "The {} you specified did not match the calculated checksum.",
                    algorithm.name()
                ));
            }
        }
    }
    Ok(found)
}

fn invalid(name: &str) -> S3Error {
    s3_error!(InvalidRequest, "Value for {name} header is invalid.")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_match_published_check_values() {
        // The "check" values of the CRC catalogue, over "123456789".
        let check = b"123456789";
        assert_eq!(
            Algorithm::Crc32.digest(check),
            0xCBF4_3926_u32.to_be_bytes()
        );
        assert_eq!(
            Algorithm::Crc32c.digest(check),
            0xE306_9283_u32.to_be_bytes()
        );
        assert_eq!(
            Algorithm::Crc64Nvme.digest(check),
            0xAE8B_1486_0A79_9888_u64.to_be_bytes()
        );
        assert_eq!(
            hex::encode(Algorithm::Sha1.digest(b"abc")),
            "a9993e364706816aba3e25717850c26c9cd0d89d"
        );
        assert_eq!(
            hex::encode(Algorithm::Sha256.digest(b"abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn headers_and_trailers_are_verified() {
        let body = b"<Delete/>";
        let good = base64::engine::general_purpose::STANDARD.encode(Algorithm::Crc32.digest(body));
        let mut headers = HeaderMap::new();
        assert!(!verify(&headers, &[], body).unwrap());
        headers.insert("x-amz-checksum-crc32", good.parse().unwrap());
        assert!(verify(&headers, &[], body).unwrap());
        assert_eq!(
            verify(&headers, &[], b"other").unwrap_err().code,
            crate::error::S3ErrorCode::BadDigest
        );
        headers.insert("x-amz-checksum-crc32", "not base64!".parse().unwrap());
        assert_eq!(
            verify(&headers, &[], body).unwrap_err().code,
            crate::error::S3ErrorCode::InvalidRequest
        );
        headers.insert("x-amz-checksum-crc32", "AAAA".parse().unwrap());
        assert_eq!(
            verify(&headers, &[], body).unwrap_err().code,
            crate::error::S3ErrorCode::InvalidRequest
        );
        let sha = base64::engine::general_purpose::STANDARD.encode(Algorithm::Sha256.digest(body));
        let trailers = [("x-amz-checksum-sha256".to_owned(), sha)];
        assert!(verify(&HeaderMap::new(), &trailers, body).unwrap());
    }
}
