//! MD5, the `ETag` of every single-request upload and part, computed
//! incrementally as the body arrives.
//!
//! MD5 is the most expensive thing a PUT does per byte (more than half of
//! the server's CPU time on 1 MiB PUTs), and it cannot be skipped: S3
//! clients compare the `ETag` with their own MD5 of the body. So it comes
//! from AWS-LC (`aws-lc-sys`, the C library behind `aws-lc-rs`), whose
//! assembly block function runs about 1.35 times as fast as the `md-5`
//! crate on x86-64 (`benches/checksum.rs`: 0.75 against 0.55 GiB/s per
//! core). Its output is bit for bit the same; the tests below check it
//! against RFC 1321 and against `md-5`.
//!
//! This file is the only FFI boundary for it: [`Md5`] is a safe type, and
//! each `unsafe` call below says why it is sound. The C context
//! (`MD5_CTX`) is plain data with no pointers inside, so the type can be
//! moved, cloned and dropped like any Rust value, and no allocation or
//! cleanup is involved.

use aws_lc_sys::{MD5_CTX, MD5_Final, MD5_Init, MD5_Update};

/// The length of an MD5 digest.
pub const MD5_BYTES: usize = 16;

/// A running MD5 computation.
#[derive(Clone)]
pub struct Md5 {
    /// Always initialized by `MD5_Init` (in [`Md5::new`]), which is what
    /// makes the calls in `update` and `finish` sound.
    context: MD5_CTX,
}

/// Run MD5's compression function over whole 64-byte `blocks`, starting
/// from and updating `state` (the chaining values), with aws-lc's assembly:
/// the one-stream path of `md5_lanes`, which keeps its own padding and
/// lengths. A context holding `state` and no buffered bytes makes
/// `MD5_Update` hand the blocks straight to the block function.
pub fn compress_blocks(state: &mut [u32; 4], blocks: &[u8]) {
    assert!(blocks.len().is_multiple_of(64), "whole blocks only");
    if blocks.is_empty() {
        return;
    }
    let mut context = MD5_CTX {
        h: *state,
        Nl: 0,
        Nh: 0,
        data: [0; 64],
        num: 0,
    };
    // SAFETY: `context` is a valid `MD5_CTX` (chaining values, no buffered
    // bytes), exclusively borrowed; `blocks` is a live slice of
    // `blocks.len()` bytes that `MD5_Update` only reads during the call.
    let status = unsafe { MD5_Update(&raw mut context, blocks.as_ptr().cast(), blocks.len()) };
    assert_eq!(status, 1, "MD5_Update cannot fail");
    *state = context.h;
}

impl Md5 {
    #[must_use]
    pub fn new() -> Md5 {
        let mut context = MD5_CTX {
            h: [0; 4],
            Nl: 0,
            Nh: 0,
            data: [0; 64],
            num: 0,
        };
        // SAFETY: `context` is a valid, exclusively borrowed `MD5_CTX`;
        // `MD5_Init` only writes its initial state into it and keeps no
        // pointer to it.
        let status = unsafe { MD5_Init(&raw mut context) };
        assert_eq!(status, 1, "MD5_Init cannot fail");
        Md5 { context }
    }

    /// Feeds `data`, which may be any length.
    pub fn update(&mut self, data: &[u8]) {
        if data.is_empty() {
            return;
        }
        // SAFETY: the context was initialized by `MD5_Init` (the type's
        // invariant) and is exclusively borrowed; `data` is valid for reads
        // of `data.len()` bytes, which `MD5_Update` only reads during the
        // call and does not keep.
        let status = unsafe { MD5_Update(&raw mut self.context, data.as_ptr().cast(), data.len()) };
        assert_eq!(status, 1, "MD5_Update cannot fail");
    }

    /// The digest of every byte fed so far.
    #[must_use]
    pub fn finish(mut self) -> [u8; MD5_BYTES] {
        let mut digest = [0_u8; MD5_BYTES];
        // SAFETY: the context is initialized (the type's invariant) and
        // owned here; `digest` is valid for writes of the 16 bytes
        // `MD5_Final` writes (`MD5_DIGEST_LENGTH`).
        let status = unsafe { MD5_Final(digest.as_mut_ptr(), &raw mut self.context) };
        assert_eq!(status, 1, "MD5_Final cannot fail");
        digest
    }

    /// The MD5 of `data`.
    #[must_use]
    pub fn digest(data: &[u8]) -> [u8; MD5_BYTES] {
        let mut md5 = Md5::new();
        md5.update(data);
        md5.finish()
    }
}

impl Default for Md5 {
    fn default() -> Self {
        Md5::new()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use ::md5::Digest as _;

    use super::*;
    use crate::test_support::Rng;

    /// RFC 1321, appendix A.5: input and digest.
    pub(crate) const RFC_1321_SUITE: [(&str, &str); 7] = [
        ("", "d41d8cd98f00b204e9800998ecf8427e"),
        ("a", "0cc175b9c0f1b6a831c399e269772661"),
        ("abc", "900150983cd24fb0d6963f7d28e17f72"),
        ("message digest", "f96b697d7cb7938d525a2f31aaf161d0"),
        (
            "abcdefghijklmnopqrstuvwxyz",
            "c3fcd3d76192e4007dfb496cca67e13b",
        ),
        (
            "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789",
            "d174ab98d277d9f5a5611c2c9f419d9f",
        ),
        (
            "12345678901234567890123456789012345678901234567890123456789012345678901234567890",
            "57edf4a22be3c955ac49da2e2107b67a",
        ),
    ];

    #[test]
    fn rfc_1321_test_suite() {
        let suite = RFC_1321_SUITE;
        for (input, expected) in suite {
            assert_eq!(
                hex::encode(Md5::digest(input.as_bytes())),
                expected,
                "{input:?}"
            );
            // The same, fed byte by byte.
            let mut md5 = Md5::new();
            for byte in input.as_bytes() {
                md5.update(std::slice::from_ref(byte));
            }
            assert_eq!(
                hex::encode(md5.finish()),
                expected,
                "{input:?} byte by byte"
            );
        }
    }

    #[test]
    fn matches_md_5_for_random_inputs_fed_in_random_pieces() {
        // Goal: bit-identical ETags to the implementation the crate used
        // before (the `md-5` crate), so that stored ETags and clients'
        // own MD5s keep matching. Method: random lengths around the block
        // size and the buffer sizes that matter (64-byte blocks, 64 KiB
        // reads, 1 MiB extents), random contents, cut into random pieces
        // (empty ones included), and a clone taken half-way must finish
        // the same as the original. Seeded, so a failure replays.
        let mut rng = Rng(0x6d64_355f_6574_6167);
        let mut lengths = vec![64, 65, 65_536, 1 << 20, (1 << 20) + 13];
        lengths.extend((0..200).map(|_| rng.below(300)));
        lengths.extend((0..50).map(|_| rng.below(70_000)));
        for len in lengths {
            let data: Vec<u8> = (0..len).map(|_| rng.next().to_le_bytes()[7]).collect();
            let expected: [u8; 16] = ::md5::Md5::digest(&data).into();
            let mut md5 = Md5::new();
            let mut half = None;
            let mut offset = 0;
            while offset < data.len() {
                let piece_len = match rng.below(4) {
                    0 => 0,
                    1 => rng.below(64),
                    2 => rng.below(4096),
                    _ => rng.below(200_000),
                };
                let end = (offset + usize::try_from(piece_len).expect("small")).min(data.len());
                md5.update(&data[offset..end]);
                offset = end;
                if half.is_none() && offset >= data.len() / 2 {
                    half = Some((md5.clone(), offset));
                }
            }
            assert_eq!(md5.finish(), expected, "length {len}");
            if let Some((mut clone, offset)) = half {
                clone.update(&data[offset..]);
                assert_eq!(clone.finish(), expected, "clone, length {len}");
            }
            assert_eq!(Md5::digest(&data), expected, "one call, length {len}");
        }
    }
}
