//! What a core does on its own shard when another core asks: its share of
//! a `DeleteObjects`, and the head and the pieces of a copy source it
//! owns. Storage work only; the S3 handlers that ask are in `s3/`.

use std::rc::Rc;

use crate::storage::index::IndexValue;
use crate::storage::location::Location;
use crate::storage::object::{Extent, ObjectCommit, ObjectTombstone};
use crate::storage::shard::{ReadPin, Shard, ShardError};

/// Delete `keys` of `bucket` on `shard`, all at once (their tombstones
/// share fsyncs); one result per key, in order.
pub async fn delete_keys(
    shard: Rc<Shard>,
    bucket: String,
    keys: Vec<String>,
    deleted_ms: i64,
) -> Vec<Result<(), String>> {
    let tasks: Vec<_> = keys
        .into_iter()
        .map(|key| {
            let shard = Rc::clone(&shard);
            let tombstone = ObjectTombstone {
                bucket: bucket.clone(),
                key,
                deleted_ms,
            };
            glommio::spawn_local(async move {
                shard
                    .delete(&tombstone)
                    .await
                    .map(drop)
                    .map_err(|error| error.to_string())
            })
        })
        .collect();
    let mut results = Vec::with_capacity(tasks.len());
    for task in tasks {
        results.push(task.await);
    }
    results
}

/// The live version of `bucket`/`key` on `shard`: its seq, commit location,
/// commit, and a pin on its segments.
pub async fn local_head(
    shard: &Rc<Shard>,
    bucket: &str,
    key: &str,
) -> Result<Option<(u64, Location, ObjectCommit, ReadPin)>, ShardError> {
    let Some((entry, pin)) = shard.lookup_pinned(bucket, key) else {
        return Ok(None);
    };
    let IndexValue::Object {
        commit: location, ..
    } = entry.value
    else {
        unreachable!("lookup returns live objects only");
    };
    let commit = shard.read_commit(location).await?;
    Ok(Some((entry.seq, location, commit, pin)))
}

/// The answer about a copy source: `(seq, commit location, commit)` of its
/// live version, `None` when there is none.
pub type SourceHead = Result<Option<(u64, Location, Box<ObjectCommit>)>, String>;

/// The owner's side of a copy source's head.
pub async fn source_head(shard: &Rc<Shard>, bucket: &str, key: &str) -> SourceHead {
    match local_head(shard, bucket, key).await {
        Ok(found) => {
            Ok(found.map(|(seq, location, commit, _pin)| (seq, location, Box::new(commit))))
        }
        Err(error) => Err(error.to_string()),
    }
}

/// What the owner of a copy source answers about one piece of it.
#[derive(Debug)]
pub enum SourceRead {
    Bytes(Vec<u8>),
    /// The version is still there, at another place: ask again.
    Moved,
    /// The key holds another version now, or nothing.
    Changed,
    Failed(String),
}

/// Which piece of a copy source to read: bytes `from..from + len` of
/// `extent`, of the version whose commit is at `location`.
#[derive(Debug, Clone)]
pub struct SourcePiece {
    pub bucket: String,
    pub key: String,
    pub location: Location,
    pub extent: Extent,
    pub from: u32,
    pub len: u32,
}

/// The owner's side of a copy source's piece: the bytes, if the key's live
/// version still has its commit at `piece.location`.
pub async fn source_read(shard: &Rc<Shard>, piece: &SourcePiece) -> SourceRead {
    let Some((entry, _pin)) = shard.lookup_pinned(&piece.bucket, &piece.key) else {
        return SourceRead::Changed;
    };
    let IndexValue::Object {
        commit: current, ..
    } = entry.value
    else {
        unreachable!("lookup returns live objects only");
    };
    if current != piece.location {
        return SourceRead::Moved;
    }
    match shard
        .read_extent(&piece.extent, piece.from, piece.len)
        .await
    {
        Ok(bytes) => SourceRead::Bytes(bytes.to_vec()),
        Err(error) => SourceRead::Failed(error.to_string()),
    }
}
