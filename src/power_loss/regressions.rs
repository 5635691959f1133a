//! The bugs the power-loss test found, each pinned by a small test that
//! builds its exact situation.

use std::collections::BTreeMap;
use std::path::Path;
use std::rc::Rc;

use super::{SHARD_DIR, bytes_of, close, fill_segment, put, write_data_dir_files};
use crate::storage::fs::Op;
use crate::storage::fs::fault::image::Disk;
use crate::storage::fs::fault::{self, Fault};
use crate::storage::index::{Checkpoint, Index, SegmentPosition};
use crate::storage::object::ObjectTombstone;
use crate::storage::segment::WriterOptions;
use crate::storage::shard::{Shard, list_segments};
use crate::test_support::run;

use super::model::{BUCKET, read_object};

const OPTIONS: WriterOptions = WriterOptions {
    segment_bytes_max: 32 * 1024,
    write_buffer_bytes: 8 * 1024,
    reserved_bytes: 0,
};

/// Write the durable image of the session's log so far (every change not
/// yet durable lost) to `at`, open a shard on it and check that it holds
/// exactly `objects`.
async fn check_durable_image(
    log: &[fault::Logged],
    root: &Path,
    at: &Path,
    objects: &BTreeMap<String, Vec<u8>>,
) {
    let mut disk = Disk::new(root, log);
    disk.advance(log.len());
    let image = disk.durable();
    std::fs::create_dir(at).unwrap();
    image.materialize(at).unwrap();
    let shard = Shard::open_with(&at.join(SHARD_DIR), OPTIONS)
        .await
        .unwrap_or_else(|error| {
            panic!(
                "the start after the power cut fails: {error}\nimage:\n{}",
                image.describe()
            )
        });
    let seen = super::model::see(&shard).await.unwrap();
    let keys = |map: &BTreeMap<String, Vec<u8>>| map.keys().cloned().collect::<Vec<_>>();
    assert_eq!(
        keys(&seen.objects),
        keys(objects),
        "the keys after the power cut"
    );
    for (key, data) in objects {
        assert!(
            seen.objects[key] == *data,
            "{key}: other bytes after the power cut"
        );
    }
}

#[test]
fn a_start_syncs_a_sealed_last_segment_before_it_starts_the_next() {
    // Bug: a roll-over wrote its seal, but the seal's fdatasync failed (or
    // the process died before it returned). The next start found the last
    // segment sealed and created the next one (durably) without syncing
    // the sealed one. A power cut then could drop the seal, leaving a torn
    // segment that was no longer the last: every later start refused the
    // shard ("zero bytes where a record should start").
    // Method: fill segment 1, fail the roll-over's fdatasync, restart, and
    // open a shard on the durable image.
    let temp = tempfile::tempdir().unwrap();
    let root = temp.path().join("data");
    std::fs::create_dir(&root).unwrap();
    let image = temp.path().join("image");
    run(move || async move {
        let session = fault::session(&root);
        let dir = root.join(SHARD_DIR);
        let shard = Rc::new(Shard::open_with(&dir, OPTIONS).await.unwrap());
        let objects: BTreeMap<String, Vec<u8>> = fill_segment(&shard, OPTIONS.segment_bytes_max, 0)
            .await
            .into_iter()
            .collect();
        session.fail(Fault::always(Op::SyncFile, libc::EIO).on_paths_containing("seg-"));
        // Its extent does not fit: the append seals segment 1 first, and
        // the seal's fdatasync fails.
        let error = put(&shard, "too-much", &bytes_of(99, 7000), 7000).await;
        assert!(error.is_err());
        assert_eq!(shard.appended_end().0, 1, "no roll-over");
        session.heal();
        close(shard).await;
        let shard = Shard::open_with(&dir, OPTIONS).await.unwrap();
        assert_eq!(list_segments(&dir).unwrap(), [1, 2], "the start sealed 1");
        drop(shard);
        let log = session.log();
        drop(session);
        check_durable_image(&log, &root, &image, &objects).await;
    });
}

#[test]
fn a_start_makes_its_manifest_durable_before_it_deletes_what_the_manifest_does_not_name() {
    // Bug: a flush renamed its manifest into place, but the directory
    // fsync that makes the rename durable failed (or the process died
    // before it). The next start trusted that manifest and deleted the
    // upload snapshot of the previous one; the deletion became durable with
    // the next sync of the shard directory, while the new manifest's rename
    // still was not. A power cut then left the previous manifest without
    // its snapshot, and every later start failed ("uploads-...: No such
    // file or directory"). The runs a merge replaces are deleted the same
    // way.
    // Method: checkpoint, fail the next flush's manifest directory sync,
    // restart, roll over to a new segment (which syncs the shard
    // directory), and open a shard on the durable image.
    let temp = tempfile::tempdir().unwrap();
    let root = temp.path().join("data");
    std::fs::create_dir(&root).unwrap();
    let image = temp.path().join("image");
    run(move || async move {
        let session = fault::session(&root);
        let dir = root.join(SHARD_DIR);
        let shard = Rc::new(Shard::open_with(&dir, OPTIONS).await.unwrap());
        let mut objects = BTreeMap::new();
        for index in 0..2 {
            let data = bytes_of(index, 1000);
            put(&shard, &format!("a{index}"), &data, 4096)
                .await
                .unwrap();
            objects.insert(format!("a{index}"), data);
            shard.checkpoint_now().await.unwrap();
        }
        let data = bytes_of(7, 1000);
        put(&shard, "b", &data, 4096).await.unwrap();
        objects.insert("b".to_owned(), data);
        // The run's directory sync is the first, the manifest's the second.
        session.fail(Fault::nth(Op::SyncDir, 2, libc::EIO).on_paths_containing("index"));
        assert!(shard.checkpoint_now().await.is_err());
        session.heal();
        close(shard).await;
        let shard = Rc::new(Shard::open_with(&dir, OPTIONS).await.unwrap());
        let mut index = 0;
        while shard.appended_end().0 == 1 {
            let data = bytes_of(100 + index, 3000);
            put(&shard, &format!("c{index}"), &data, 4096)
                .await
                .unwrap();
            objects.insert(format!("c{index}"), data);
            index += 1;
        }
        close(shard).await;
        let log = session.log();
        drop(session);
        check_durable_image(&log, &root, &image, &objects).await;
    });
}

#[test]
fn the_offline_check_accepts_an_index_that_took_records_after_its_checkpoint() {
    // Bug: an index flush freezes the memtable after its checkpoint's sync
    // returns, so it may take records appended (and synced) after the
    // checkpoint position; the shard does that on purpose (see
    // `durable_checkpoint`), and replaying those records at start changes
    // nothing. `ringstore check` accepted such entries for live objects,
    // but reported a tombstone taken that way as damage ("the index has a
    // tombstone ... whose newest record before the checkpoint is the
    // commit"), and likewise a key whose tombstone the flush took and
    // dropped ("the index has no entry for ...").
    // Method: write a commit and its tombstone, then flush indexes whose
    // checkpoint lies between them but which hold the tombstone (kept: an
    // older run exists; dropped: none does).
    for keep_tombstone in [true, false] {
        let temp = tempfile::tempdir().unwrap();
        let root = temp.path().to_owned();
        write_data_dir_files(&root);
        let dir = root.join(SHARD_DIR);
        run(move || async move {
            let shard = Rc::new(Shard::open_with(&dir, OPTIONS).await.unwrap());
            put(&shard, "other", b"x", 4096).await.unwrap();
            let other = shard.lookup(BUCKET, "other").unwrap();
            let (segment, offset) = shard.appended_end();
            let after_other = Checkpoint {
                position: SegmentPosition { segment, offset },
                next_seq: shard.next_seq(),
            };
            put(&shard, "gone", b"y", 4096).await.unwrap();
            let (segment, offset) = shard.appended_end();
            let between = Checkpoint {
                position: SegmentPosition { segment, offset },
                next_seq: shard.next_seq(),
            };
            let tombstone = ObjectTombstone {
                bucket: BUCKET.to_owned(),
                key: "gone".to_owned(),
                deleted_ms: 2,
            };
            assert!(shard.delete(&tombstone).await.unwrap());
            let deleted = shard.index_entry(BUCKET, "gone").unwrap();
            assert!(deleted.is_tombstone());
            assert_eq!(read_object(&shard, "gone").await.unwrap(), None);
            drop(shard);

            let index_dir = dir.join("index");
            let (mut index, _) = Index::open(&index_dir).unwrap();
            index.insert(crate::storage::index::IndexKey::new(BUCKET, "other"), other);
            if keep_tombstone {
                index.flush(after_other).unwrap();
                crate::storage::shard::uploads::write_snapshot(
                    &dir,
                    after_other.position,
                    &crate::storage::shard::uploads::Uploads::default().encode_snapshot(),
                )
                .unwrap();
            }
            // What the shard's flush holds: the tombstone, which replaced
            // the commit in the memtable, with seq `between.next_seq`.
            assert_eq!(deleted.seq, between.next_seq);
            index.insert(
                crate::storage::index::IndexKey::new(BUCKET, "gone"),
                deleted,
            );
            let next_seq = deleted.seq + 1;
            index
                .flush(Checkpoint {
                    next_seq,
                    ..between
                })
                .unwrap();
            crate::storage::shard::uploads::write_snapshot(
                &dir,
                between.position,
                &crate::storage::shard::uploads::Uploads::default().encode_snapshot(),
            )
            .unwrap();
        });
        let report = crate::check::run(&root).unwrap();
        assert!(
            !report.is_damaged(),
            "keep_tombstone {keep_tombstone}: {report}"
        );
    }
}

#[test]
fn a_start_makes_the_segment_it_appends_to_durable_in_its_directory() {
    // Bug: a roll-over created the next segment, but the directory sync
    // that makes its entry durable failed (or the process died before it).
    // The next start found the new, empty segment last and appended to it,
    // syncing the file but never its directory entry: a power cut could
    // take the whole segment away, with the writes acknowledged in it.
    // Method: fill segment 1, fail the directory sync of the roll-over,
    // restart, acknowledge writes in segment 2, and open a shard on the
    // durable image.
    let temp = tempfile::tempdir().unwrap();
    let root = temp.path().join("data");
    std::fs::create_dir(&root).unwrap();
    let image = temp.path().join("image");
    run(move || async move {
        let session = fault::session(&root);
        let dir = root.join(SHARD_DIR);
        let shard = Rc::new(Shard::open_with(&dir, OPTIONS).await.unwrap());
        let mut objects: BTreeMap<String, Vec<u8>> =
            fill_segment(&shard, OPTIONS.segment_bytes_max, 0)
                .await
                .into_iter()
                .collect();
        session.fail(Fault::nth(Op::SyncDir, 1, libc::EIO));
        let error = put(&shard, "too-much", &bytes_of(99, 7000), 7000).await;
        assert!(error.is_err());
        assert_eq!(session.injected(), 1);
        session.heal();
        close(shard).await;
        let shard = Rc::new(Shard::open_with(&dir, OPTIONS).await.unwrap());
        assert_eq!(shard.appended_end(), (2, 0), "appends go to segment 2");
        for index in 200..203 {
            let data = bytes_of(index, 1000);
            put(&shard, &format!("k{index}"), &data, 4096)
                .await
                .unwrap();
            objects.insert(format!("k{index}"), data);
        }
        close(shard).await;
        let log = session.log();
        drop(session);
        check_durable_image(&log, &root, &image, &objects).await;
    });
}

#[test]
fn a_start_makes_the_shard_directory_durable_in_its_parent() {
    // Bug: the first start created the shard directory, but the sync of
    // its parent failed (or the process died before it), so the start
    // failed. The next start found the directory and never synced its
    // parent: a power cut could take the whole shard away, with every
    // write acknowledged in it.
    // Method: fail the first start's directory sync, start again,
    // acknowledge writes, and open a shard on the durable image.
    let temp = tempfile::tempdir().unwrap();
    let root = temp.path().join("data");
    std::fs::create_dir(&root).unwrap();
    let image = temp.path().join("image");
    run(move || async move {
        let session = fault::session(&root);
        let dir = root.join(SHARD_DIR);
        session.fail(Fault::nth(Op::SyncDir, 1, libc::EIO));
        assert!(Shard::open_with(&dir, OPTIONS).await.is_err());
        session.heal();
        let shard = Rc::new(Shard::open_with(&dir, OPTIONS).await.unwrap());
        let mut objects = BTreeMap::new();
        for index in 0..3 {
            let data = bytes_of(index, 1000);
            put(&shard, &format!("k{index}"), &data, 4096)
                .await
                .unwrap();
            objects.insert(format!("k{index}"), data);
        }
        close(shard).await;
        let log = session.log();
        drop(session);
        check_durable_image(&log, &root, &image, &objects).await;
    });
}
