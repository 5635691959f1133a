//! Recovery refuses to start over damage it cannot repair: a missing
//! segment, or records missing between two segments, are reported, never
//! silently skipped (a start would otherwise serve without the objects
//! they held).

use std::rc::Rc;

use super::testing::{bytes_of, put, read};
use super::{Shard, ShardError, list_segments};
use crate::storage::index::Index;
use crate::storage::segment::{self, StorageError, WriterOptions};
use crate::test_support::run;

const OPTIONS: WriterOptions = WriterOptions {
    segment_bytes_max: 64 * 1024,
    write_buffer_bytes: 16 * 1024,
    reserved_bytes: 0,
};

/// A shard whose start replays at least four segments (those from the
/// index checkpoint's on); returns them.
fn shard_of_several_segments(dir: &std::path::Path) -> Vec<u32> {
    let path = dir.to_owned();
    run(move || async move {
        let shard = Rc::new(Shard::open_with(&path, OPTIONS).await.unwrap());
        for index in 0..40 {
            put(&shard, &format!("key-{index}"), &bytes_of(index, 9_000)).await;
        }
    });
    let (_, checkpoint) = Index::open(&dir.join("index")).unwrap();
    let mut segments = list_segments(dir).unwrap();
    segments.retain(|&segment| segment >= checkpoint.position.segment);
    if segments.len() >= 4 {
        return segments;
    }
    // The index flushed late in the workload: write on, without a flush
    // in between (the memtable was just emptied).
    let path = dir.to_owned();
    run(move || async move {
        let shard = Rc::new(Shard::open_with(&path, OPTIONS).await.unwrap());
        for index in 40..70 {
            put(&shard, &format!("key-{index}"), &bytes_of(index, 9_000)).await;
        }
    });
    let (_, checkpoint) = Index::open(&dir.join("index")).unwrap();
    let mut segments = list_segments(dir).unwrap();
    segments.retain(|&segment| segment >= checkpoint.position.segment);
    assert!(segments.len() >= 4, "{segments:?} from {checkpoint:?}");
    segments
}

fn open_error(dir: &std::path::Path) -> ShardError {
    let dir = dir.to_owned();
    run(move || async move {
        match Shard::open_with(&dir, OPTIONS).await {
            Ok(_) => panic!("the shard opened over a missing segment"),
            Err(error) => error,
        }
    })
}

#[test]
fn a_missing_segment_between_two_others_is_damage() {
    // Regression: recovery replayed whatever segments it found, so a lost
    // file in the middle silently cost every object it held.
    let dir = tempfile::tempdir().unwrap();
    let segments = shard_of_several_segments(dir.path());
    let lost = segments[1];
    std::fs::remove_file(dir.path().join(segment::segment_file_name(lost))).unwrap();
    let error = open_error(dir.path());
    let ShardError::Storage(StorageError::Corrupted { segment, what, .. }) = error else {
        panic!("{error}");
    };
    assert_eq!(segment, lost);
    assert!(what.contains("missing"), "{what}");
}

#[test]
fn a_missing_checkpoint_segment_is_damage() {
    // The index checkpoint names the segment the replay starts in; without
    // it, the replay would begin at the next one and lose the records of
    // that segment after the checkpoint.
    let dir = tempfile::tempdir().unwrap();
    let segments = shard_of_several_segments(dir.path());
    let first = segments[0];
    std::fs::remove_file(dir.path().join(segment::segment_file_name(first))).unwrap();
    let error = open_error(dir.path());
    let ShardError::Storage(StorageError::Corrupted { segment, .. }) = error else {
        panic!("{error}");
    };
    assert_eq!(segment, first);
}

#[test]
fn records_missing_between_segments_are_damage() {
    // A segment replaced by a later one (renamed into its place) keeps the
    // numbering contiguous, but the sequence numbers jump: damage.
    let dir = tempfile::tempdir().unwrap();
    let segments = shard_of_several_segments(dir.path());
    let name = |segment| dir.path().join(segment::segment_file_name(segment));
    std::fs::rename(name(segments[2]), name(segments[1])).unwrap();
    for &later in &segments[3..] {
        std::fs::rename(name(later), name(later - 1)).unwrap();
    }
    let error = open_error(dir.path());
    let ShardError::Storage(StorageError::Corrupted { what, .. }) = error else {
        panic!("{error}");
    };
    assert!(what.contains("sequence number"), "{what}");
}

#[test]
fn an_intact_shard_still_opens_with_every_object() {
    // The checks above must not refuse a healthy shard, before or after a
    // checkpoint.
    let dir = tempfile::tempdir().unwrap();
    shard_of_several_segments(dir.path());
    let path = dir.path().to_owned();
    run(move || async move {
        let shard = Rc::new(Shard::open_with(&path, OPTIONS).await.unwrap());
        for index in 0..40 {
            let key = format!("key-{index}");
            assert_eq!(read(&shard, &key).await, Some(bytes_of(index, 9_000)));
        }
        shard.checkpoint_now().await.unwrap();
        drop(shard);
        let shard = Rc::new(Shard::open_with(&path, OPTIONS).await.unwrap());
        assert_eq!(read(&shard, "key-39").await, Some(bytes_of(39, 9_000)));
    });
}
