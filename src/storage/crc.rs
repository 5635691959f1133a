//! CRC-32C (Castagnoli), the checksum of every structure ringstore writes:
//! segment records (`record`), index runs and the manifest (`index`), the
//! bucket catalog (`catalog`) and the multipart upload state
//! (`shard::uploads`).
//!
//! It comes from `crc-fast`, which also computes the S3 checksums
//! (`digest`): it folds with carry-less multiplication (PCLMULQDQ or
//! VPCLMULQDQ on x86-64, PMULL on aarch64) fused with the CRC32
//! instruction, about twice as fast as the `crc32c` crate on large inputs
//! (`benches/checksum.rs`, `record_crc_*`). The values are the standard
//! CRC-32C (RFC 3720), the same the `crc32c` crate computed when it wrote
//! the existing data directories; the tests pin both.

use crc_fast::{CrcAlgorithm, Digest};

/// The CRC-32C of `data`.
#[must_use]
pub fn crc32c(data: &[u8]) -> u32 {
    crc_fast::crc32_iscsi(data)
}

/// A running CRC-32C, for bytes that come in pieces (a record's header and
/// its payload, an index run as it is serialized).
#[derive(Debug, Clone, Copy)]
pub struct Crc32c(Digest);

impl Crc32c {
    #[must_use]
    pub fn new() -> Crc32c {
        Crc32c(Digest::new(CrcAlgorithm::Crc32Iscsi))
    }

    pub fn update(&mut self, data: &[u8]) {
        self.0.update(data);
    }

    /// The CRC-32C of every byte fed so far.
    #[must_use]
    pub fn finish(&self) -> u32 {
        u32::try_from(self.0.finalize()).expect("a 32-bit CRC")
    }
}

impl Default for Crc32c {
    fn default() -> Self {
        Crc32c::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::Rng;

    #[test]
    fn published_vectors() {
        // The CRC catalogue's check value, and RFC 3720 (iSCSI), appendix
        // B.4: 32 bytes of zeros, of ones, ascending and descending.
        assert_eq!(crc32c(b"123456789"), 0xe306_9283);
        assert_eq!(crc32c(&[0; 32]), 0x8a91_36aa);
        assert_eq!(crc32c(&[0xff; 32]), 0x62a8_ab43);
        let ascending: Vec<u8> = (0..32).collect();
        assert_eq!(crc32c(&ascending), 0x46dd_794e);
        let descending: Vec<u8> = (0..32).rev().collect();
        assert_eq!(crc32c(&descending), 0x113f_db5c);
        assert_eq!(crc32c(b""), 0);
        let mut running = Crc32c::new();
        assert_eq!(running.finish(), 0);
        running.update(b"1234");
        running.update(b"");
        running.update(b"56789");
        assert_eq!(running.finish(), 0xe306_9283);
    }

    #[test]
    fn matches_the_crc32c_crate_for_random_inputs_and_splits() {
        // Goal: the records, runs, manifests, catalogs and upload files
        // that the `crc32c` crate checksummed still verify, bit for bit.
        // Method: random lengths (small ones, where the SIMD paths hand
        // over to scalar code, and large ones), random contents, each also
        // fed in three random pieces. Seeded, so a failure replays.
        let mut rng = Rng(0x6372_6333_3263_0001);
        let mut lengths = vec![0, 1, 7, 8, 15, 16, 31, 32, 63, 64, 255, 256, 4096, 1 << 20];
        lengths.extend((0..300).map(|_| rng.below(600)));
        lengths.extend((0..40).map(|_| rng.below(300_000)));
        for len in lengths {
            let data: Vec<u8> = (0..len).map(|_| rng.next().to_le_bytes()[7]).collect();
            let expected = crc32c::crc32c(&data);
            assert_eq!(crc32c(&data), expected, "length {len}");
            // In three pieces, the middle one possibly empty.
            let first = usize::try_from(rng.below(len + 1)).expect("small");
            let second = first + usize::try_from(rng.below(len + 1 - first as u64)).expect("small");
            let mut running = Crc32c::new();
            running.update(&data[..first]);
            running.update(&data[first..second]);
            running.update(&data[second..]);
            assert_eq!(
                running.finish(),
                expected,
                "length {len} split at {first} and {second}"
            );
        }
    }
}
