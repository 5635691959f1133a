//! Checksums of object bytes: the five algorithms S3 defines
//! (`x-amz-checksum-*`), computed incrementally. The S3 layer checks
//! uploads with them (`s3::checksum`); the scrub re-computes stored ones.
//! The CRCs come from `crc-fast` (SIMD), the SHAs from `sha1` and `sha2`;
//! CRCs are encoded big-endian, as S3 does.

use sha2::Digest as _;

use super::object::ChecksumAlgorithm;

/// A running computation of one algorithm.
#[derive(Clone)]
pub enum Hasher {
    Crc(crc_fast::Digest),
    Sha1(sha1::Sha1),
    Sha256(sha2::Sha256),
}

impl Hasher {
    #[must_use]
    pub fn new(algorithm: ChecksumAlgorithm) -> Hasher {
        use crc_fast::CrcAlgorithm;
        match algorithm {
            ChecksumAlgorithm::Crc32 => {
                Hasher::Crc(crc_fast::Digest::new(CrcAlgorithm::Crc32IsoHdlc))
            }
            ChecksumAlgorithm::Crc32c => {
                Hasher::Crc(crc_fast::Digest::new(CrcAlgorithm::Crc32Iscsi))
            }
            ChecksumAlgorithm::Crc64Nvme => {
                Hasher::Crc(crc_fast::Digest::new(CrcAlgorithm::Crc64Nvme))
            }
            ChecksumAlgorithm::Sha1 => Hasher::Sha1(sha1::Sha1::new()),
            ChecksumAlgorithm::Sha256 => Hasher::Sha256(sha2::Sha256::new()),
        }
    }

    pub fn update(&mut self, data: &[u8]) {
        match self {
            Hasher::Crc(digest) => digest.update(data),
            Hasher::Sha1(digest) => digest.update(data),
            Hasher::Sha256(digest) => digest.update(data),
        }
    }

    /// The digest, `len` bytes (`algorithm.digest_len()`).
    #[must_use]
    pub fn finish(self, algorithm: ChecksumAlgorithm) -> Vec<u8> {
        match self {
            Hasher::Crc(digest) => {
                let value = digest.finalize();
                if algorithm.digest_len() == 4 {
                    u32::try_from(value)
                        .expect("a 32-bit CRC")
                        .to_be_bytes()
                        .to_vec()
                } else {
                    value.to_be_bytes().to_vec()
                }
            }
            Hasher::Sha1(digest) => digest.finalize().to_vec(),
            Hasher::Sha256(digest) => digest.finalize().to_vec(),
        }
    }
}

/// The digest of `data` with `algorithm`.
#[must_use]
pub fn digest(algorithm: ChecksumAlgorithm, data: &[u8]) -> Vec<u8> {
    let mut hasher = Hasher::new(algorithm);
    hasher.update(data);
    hasher.finish(algorithm)
}
