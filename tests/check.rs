//! `ringstore check` against data directories the real server wrote: after a
//! clean stop it passes and its summary counts what was written; a byte
//! flipped inside a data extent is damage, named by segment and offset; a
//! data directory that a running server holds is refused.

mod common;

use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use aws_sdk_s3::primitives::ByteStream;
use common::{ServerOptions, run_check};

/// Objects up to this size are stored inside their commit record
/// (`storage::object::INLINE_BYTES_MAX`); larger ones in `Data` records of
/// at most [`EXTENT_BYTES_MAX`] bytes each.
const INLINE_BYTES_MAX: usize = 64 * 1024;
const EXTENT_BYTES_MAX: usize = 1024 * 1024;

/// Size of a record header: an extent's payload starts this far into its
/// record (`storage::record`).
const RECORD_HEADER_BYTES: u64 = 32;

/// Seeded pseudo-random bytes (xorshift64*), so that an object's bytes
/// occur nowhere else in a segment.
fn object_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            state.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes()[7]
        })
        .collect()
}

async fn put(client: &aws_sdk_s3::Client, bucket: &str, key: &str, bytes: &[u8]) {
    client
        .put_object()
        .bucket(bucket)
        .key(key)
        .body(ByteStream::from(bytes.to_vec()))
        .send()
        .await
        .unwrap_or_else(|error| panic!("PutObject {bucket}/{key}: {error:?}"));
}

async fn delete(client: &aws_sdk_s3::Client, bucket: &str, key: &str) {
    client
        .delete_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .unwrap_or_else(|error| panic!("DeleteObject {bucket}/{key}: {error:?}"));
}

async fn create_bucket(client: &aws_sdk_s3::Client, bucket: &str) {
    client
        .create_bucket()
        .bucket(bucket)
        .send()
        .await
        .unwrap_or_else(|error| panic!("CreateBucket {bucket}: {error:?}"));
}

/// `Data` records a PUT of `size` bytes writes.
fn extent_count(size: usize) -> u64 {
    if size <= INLINE_BYTES_MAX {
        0
    } else {
        size.div_ceil(EXTENT_BYTES_MAX) as u64
    }
}

/// The segment files of every shard in `data_dir`.
fn segment_files(data_dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for shard in std::fs::read_dir(data_dir).expect("list the data directory") {
        let shard = shard.expect("data directory entry").path();
        if !shard
            .file_name()
            .is_some_and(|name| name.to_string_lossy().starts_with("shard-"))
        {
            continue;
        }
        for file in std::fs::read_dir(&shard).expect("list a shard directory") {
            let file = file.expect("shard directory entry").path();
            if file
                .file_name()
                .is_some_and(|name| name.to_string_lossy().starts_with("seg-"))
            {
                files.push(file);
            }
        }
    }
    files.sort();
    files
}

/// Goal: the check accepts what the server writes and counts it exactly.
/// Method: objects of every storage shape (empty, inline, exactly the
/// inline limit, one extent, exactly one full extent, several extents) in
/// two buckets, on up to two shards, with an overwrite, deletes and a
/// delete of a missing key (which writes nothing); stop; the check exits 0
/// and its summary matches what was written. A restart afterwards serves
/// the same bytes: the check changed nothing.
#[tokio::test]
async fn after_a_clean_stop_the_check_passes_and_counts_what_was_written() {
    let cores = common::online_cores().min(2);
    let mut server = ServerOptions::new().cores(cores).start();
    let client = server.client();
    for bucket in ["check-a", "check-b"] {
        create_bucket(&client, bucket).await;
    }
    let sizes = [
        0,
        1,
        100,
        4096,
        INLINE_BYTES_MAX,
        INLINE_BYTES_MAX + 1,
        300_000,
        EXTENT_BYTES_MAX,
        EXTENT_BYTES_MAX + 1,
        2 * EXTENT_BYTES_MAX + 3,
    ];
    // Live (bucket, key) -> size, and the records the writes produce.
    let mut live = std::collections::BTreeMap::new();
    let mut commit_count = 0_u64;
    let mut data_count = 0_u64;
    for (index, &size) in sizes.iter().enumerate() {
        let seed = index as u64;
        for (bucket, key) in [
            ("check-a", format!("object-{index}")),
            ("check-b", format!("nested/copy-{index}")),
        ] {
            put(&client, bucket, &key, &object_bytes(seed, size)).await;
            commit_count += 1;
            data_count += extent_count(size);
            live.insert((bucket, key), size);
        }
    }
    let overwrite = 2 * EXTENT_BYTES_MAX - 7;
    put(&client, "check-a", "object-2", &object_bytes(99, overwrite)).await;
    commit_count += 1;
    data_count += extent_count(overwrite);
    live.insert(("check-a", "object-2".to_owned()), overwrite);
    for (bucket, key) in [("check-a", "object-0"), ("check-b", "nested/copy-7")] {
        delete(&client, bucket, key).await;
        live.remove(&(bucket, key.to_owned()));
    }
    let tombstone_count = 2_u64;
    delete(&client, "check-a", "never-written").await;
    server.stop();

    let check = run_check(&server.data_dir(), server.root());
    assert_eq!(check.status.code(), Some(0), "{check}");
    assert_eq!(check.field("shards"), cores as u64, "{check}");
    assert_eq!(check.field("segments"), cores as u64, "{check}");
    assert_eq!(check.field("live objects"), live.len() as u64, "{check}");
    assert_eq!(
        check.field("live bytes"),
        live.values().map(|size| *size as u64).sum::<u64>(),
        "{check}"
    );
    let records = format!(
        "records: {} (data {data_count}, commit {commit_count}, tombstone {tombstone_count}, \
         relocate 0, upload 0)",
        data_count + commit_count + tombstone_count
    );
    assert!(
        check.stdout.contains(&records),
        "expected {records:?}\n{check}"
    );
    assert_eq!(check.field("warnings"), 0, "{check}");
    assert_eq!(check.field("damage"), 0, "{check}");
    assert!(check.stdout.contains("result: ok\n"), "{check}");
    assert!(check.stdout.contains("catalog: 2 buckets\n"), "{check}");

    server
        .start_again(&ServerOptions::new().cores(cores))
        .unwrap_or_else(|exited| panic!("no restart after the check: {exited}"));
    let client = server.client();
    let object = client
        .get_object()
        .bucket("check-a")
        .key("object-2")
        .send()
        .await
        .expect("GetObject after the check");
    let body = object.body.collect().await.expect("read the body");
    assert!(body.into_bytes() == object_bytes(99, overwrite));
    server.stop();
}

/// Goal: damage to acknowledged object bytes is found and named. Method:
/// one shard; a 300 KB object (one `Data` extent) followed by small objects
/// (their records prove that the extent had been made durable, so the
/// damage cannot pass for a torn tail); stop; flip one byte in the middle
/// of the extent's payload, found on disk by its bytes. The check exits 1
/// and names the segment and the offset of the damaged record.
#[tokio::test]
async fn a_flipped_byte_inside_a_data_extent_is_damage_named_by_segment_and_offset() {
    let mut server = ServerOptions::new().cores(1).start();
    let client = server.client();
    create_bucket(&client, "check-damage").await;
    let bytes = object_bytes(7, 300_000);
    put(&client, "check-damage", "large", &bytes).await;
    for index in 0..5 {
        put(&client, "check-damage", &format!("after-{index}"), b"small").await;
    }
    server.stop();

    let data_dir = server.data_dir();
    let needle = &bytes[..64];
    let (path, payload_offset) = segment_files(&data_dir)
        .into_iter()
        .find_map(|path| {
            let image = std::fs::read(&path).expect("read a segment");
            let at = image
                .windows(needle.len())
                .position(|window| window == needle)?;
            Some((path, at as u64))
        })
        .expect("the object's bytes are in a segment");
    let record_offset = payload_offset - RECORD_HEADER_BYTES;
    assert_eq!(record_offset % 8, 0, "records start at multiples of 8");
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .expect("open the segment");
    let flip_at = payload_offset + 150_000;
    let mut byte = [0_u8];
    file.read_exact_at(&mut byte, flip_at)
        .expect("read the byte");
    byte[0] ^= 0x20;
    file.write_all_at(&byte, flip_at).expect("write the byte");
    file.sync_all().expect("sync the segment");

    let check = run_check(&data_dir, server.root());
    assert_eq!(check.status.code(), Some(1), "{check}");
    let segment = path.file_name().unwrap().to_string_lossy().into_owned();
    let place = format!("damage: shard-00/{segment} offset {record_offset}: ");
    assert!(check.stdout.contains(&place), "expected {place:?}\n{check}");
    assert!(
        check
            .stdout
            .contains("(record corrupted: checksum mismatch)"),
        "{check}"
    );
    assert!(check.stdout.contains("result: DAMAGED\n"), "{check}");
    assert!(
        check.stderr.contains("ringstore: the check found"),
        "{check}"
    );
}

/// Goal: the check never runs beside a server, which could be writing the
/// files it reads. Method: check while the server runs (refused, exit 2,
/// nothing printed on stdout, the server unaffected), then after its stop
/// (passes).
#[tokio::test]
async fn a_data_directory_held_by_a_running_server_is_refused() {
    let mut server = ServerOptions::new().cores(1).start();
    let client = server.client();
    create_bucket(&client, "check-busy").await;
    put(&client, "check-busy", "key", b"value").await;

    let check = run_check(&server.data_dir(), server.root());
    assert_eq!(check.status.code(), Some(2), "{check}");
    assert!(
        check
            .stderr
            .contains("is in use by a running ringstore process"),
        "{check}"
    );
    assert!(check.stdout.is_empty(), "{check}");
    let object = client
        .get_object()
        .bucket("check-busy")
        .key("key")
        .send()
        .await
        .expect("the server still serves");
    let body = object.body.collect().await.expect("read the body");
    assert_eq!(body.into_bytes().as_ref(), b"value");

    server.stop();
    let check = run_check(&server.data_dir(), server.root());
    assert_eq!(check.status.code(), Some(0), "{check}");
    assert_eq!(check.field("live objects"), 1, "{check}");
}

/// Goal: no false alarms on what a crash leaves. Method: eight clients PUT
/// objects of every shape to one shard, the server is killed (SIGKILL)
/// mid-stream, and the check must exit 0: a torn tail and data extents of
/// uploads that never committed are normal after a crash (at most a
/// warning). After a restart (which recovers) and a clean stop, the check
/// passes with no warning at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_kill_mid_upload_the_check_raises_no_false_alarm() {
    let mut server = ServerOptions::new().cores(1).start();
    let client = server.client();
    create_bucket(&client, "check-crash").await;
    // Writes acknowledged so far: the check below expects live objects,
    // so the kill waits for some (a loaded machine may take longer than
    // the pause to acknowledge the first).
    let acknowledged = Arc::new(AtomicU64::new(0));
    let uploads: Vec<_> = (0..8_u64)
        .map(|worker| {
            let client = client.clone();
            let acknowledged = Arc::clone(&acknowledged);
            tokio::spawn(async move {
                for index in 0..10_000_u64 {
                    let size = [10, 70_000, 300_000, EXTENT_BYTES_MAX + 100][(index % 4) as usize];
                    // Errors once the server is gone are expected.
                    let put = client
                        .put_object()
                        .bucket("check-crash")
                        .key(format!("worker-{worker}/object-{index}"))
                        .body(ByteStream::from(object_bytes(
                            worker * 10_000 + index,
                            size,
                        )))
                        .send()
                        .await;
                    if put.is_ok() {
                        acknowledged.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while acknowledged.load(Ordering::Relaxed) == 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.signal(libc::SIGKILL);
    server
        .wait_exit(Duration::from_secs(10))
        .expect("the server dies of SIGKILL");
    for upload in &uploads {
        upload.abort();
    }

    let check = run_check(&server.data_dir(), server.root());
    assert_eq!(check.status.code(), Some(0), "{check}");
    assert!(check.field("live objects") > 0, "{check}");

    server
        .start_again(&ServerOptions::new().cores(1))
        .unwrap_or_else(|exited| panic!("no restart after the kill: {exited}"));
    server.stop();
    let check = run_check(&server.data_dir(), server.root());
    assert_eq!(check.status.code(), Some(0), "{check}");
    assert_eq!(check.field("warnings"), 0, "{check}");
}
