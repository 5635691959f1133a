//! Which shard owns an object: the ONE place that knows.
//!
//! A backup target is usually one bucket, so sharding whole buckets would
//! leave all cores but one idle; instead the pair (bucket, key) is hashed,
//! and the key space of every bucket is spread over every shard
//! (DESIGN.md, principle 2).
//!
//! The hash is XXH3-64 with a fixed seed over `len(bucket) as u16 LE ||
//! bucket || key`. XXH3 is a published, stable algorithm, so the mapping
//! never changes between builds or versions of the crate; the length prefix
//! keeps ("ab", "c") and ("a", "bc") apart. The shard count is written into
//! the data directory at its creation and checked at every start, because a
//! different count would send every key to a shard that does not have it.

/// Fixed seed of the placement hash. Changing it moves every object: never.
const PLACEMENT_SEED: u64 = 0x7269_6e67_7374_6f72; // "ringstor"

/// The shard that owns `key` in `bucket`, out of `shard_count` shards.
#[must_use]
pub fn shard_for(bucket: &str, key: &str, shard_count: usize) -> usize {
    assert!(shard_count > 0);
    let bucket_len = u16::try_from(bucket.len()).expect("bucket names are at most 63 bytes");
    let mut hasher = xxhash_rust::xxh3::Xxh3::with_seed(PLACEMENT_SEED);
    hasher.update(&bucket_len.to_le_bytes());
    hasher.update(bucket.as_bytes());
    hasher.update(key.as_bytes());
    let hash = hasher.digest();
    // Multiply-shift maps the hash onto 0..shard_count without the bias
    // and the division of `%`.
    let shard = (u128::from(hash) * shard_count as u128) >> 64;
    usize::try_from(shard).expect("shard index fits")
}

/// The shard that owns the bucket catalog and coordinates bucket changes.
pub const CATALOG_SHARD: usize = 0;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_shard_owns_everything() {
        for key in ["", "a", "photos/2026/01.jpg"] {
            assert_eq!(shard_for("bucket", key, 1), 0);
        }
    }

    #[test]
    fn placement_is_stable_across_builds() {
        // Pinned values: if these change, existing data directories break.
        let got: Vec<usize> = ["a", "b", "c", "d", "e", "f", "g", "h"]
            .iter()
            .map(|key| shard_for("bucket", key, 8))
            .collect();
        assert_eq!(got, PINNED_PLACEMENT);
    }

    const PINNED_PLACEMENT: [usize; 8] = [3, 7, 5, 2, 0, 3, 4, 1];

    #[test]
    fn bucket_and_key_are_not_confused() {
        let spread: std::collections::HashSet<usize> = (0..64)
            .map(|i| shard_for(&format!("ab{i}"), "c", 1 << 16))
            .collect();
        assert!(spread.len() > 60);
        assert_ne!(shard_for("ab", "c", 1 << 20), shard_for("a", "bc", 1 << 20));
    }

    #[test]
    fn keys_spread_evenly() {
        let shard_count = 4;
        let mut counts = vec![0_u32; shard_count];
        for i in 0..40_000 {
            counts[shard_for("backups", &format!("data/{i:08}"), shard_count)] += 1;
        }
        for count in counts {
            assert!((9_000..11_000).contains(&count), "{count}");
        }
    }
}
