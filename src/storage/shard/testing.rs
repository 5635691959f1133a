//! Helpers of the shard's unit tests: objects of bucket `bucket` written
//! and read back through a [`Shard`], and deterministic contents.
#![allow(
    clippy::cast_possible_truncation,
    reason = "test data and lengths are small by construction"
)]

use std::rc::Rc;

use super::Shard;
use crate::storage::object::{ETag, ObjectBody, ObjectCommit};
use crate::storage::segment::Space;
use crate::test_support::Rng;

pub(crate) fn bytes_of(seed: u64, len: usize) -> Vec<u8> {
    let mut rng = Rng(seed | 1);
    (0..len).map(|_| rng.next() as u8).collect()
}

pub(crate) fn commit(key: &str, body: ObjectBody, size: u64) -> ObjectCommit {
    ObjectCommit {
        bucket: "bucket".to_owned(),
        key: key.to_owned(),
        size,
        etag: ETag::Md5([0; 16]),
        last_modified_ms: 1,
        content_type: None,
        cache_control: None,
        content_disposition: None,
        content_encoding: None,
        content_language: None,
        expires: None,
        user_metadata: Vec::new(),
        checksums: Vec::new(),
        part_sizes: Vec::new(),
        body,
    }
}

/// Write `data` as `key`: inline when small, else in extents of at
/// most 6 KiB (so objects span segments).
pub(crate) async fn put(shard: &Rc<Shard>, key: &str, data: &[u8]) {
    let upload = shard.begin_upload();
    let body = if data.len() <= 2048 {
        ObjectBody::Inline(data.to_vec())
    } else {
        let mut extents = Vec::new();
        for piece in data.chunks(6 * 1024) {
            extents.push(shard.append_data(piece, Space::Data).await.unwrap());
        }
        ObjectBody::Extents(extents)
    };
    shard
        .commit(&commit(key, body, data.len() as u64), Some(&upload))
        .await
        .unwrap();
    drop(upload);
}

pub(crate) async fn read(shard: &Rc<Shard>, key: &str) -> Option<Vec<u8>> {
    let (entry, _pin) = shard.lookup_pinned("bucket", key)?;
    let crate::storage::index::IndexValue::Object { commit: at, .. } = entry.value else {
        unreachable!()
    };
    let commit = shard.read_commit(at).await.unwrap();
    Some(match commit.body {
        ObjectBody::Inline(data) => data,
        ObjectBody::Extents(extents) => {
            let mut data = Vec::new();
            for extent in &extents {
                let piece = shard.read_extent(extent, 0, extent.data_len).await.unwrap();
                data.extend_from_slice(&piece);
            }
            data
        }
    })
}
