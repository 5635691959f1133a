//! Compaction against the real binary, through the official SDK: after
//! overwrites and deletes the segment files shrink back towards the live
//! data, every live object still reads back byte for byte (also across a
//! restart), and a GET that streams an object while compaction moves it
//! still returns the right bytes.
//!
//! The server runs with the smallest segments (8 MiB) and a compaction
//! check every 50 ms, so that a few tens of MiB make many sealed segments.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use aws_sdk_s3::Client;
use aws_sdk_s3::primitives::ByteStream;
use common::{Server, ServerOptions, metric};

const MIB: usize = 1024 * 1024;
const SEGMENT_BYTES: u64 = 8 * 1024 * 1024;

fn compacting() -> ServerOptions {
    ServerOptions::new()
        .config(&format!("segment_bytes = {SEGMENT_BYTES}"))
        .config("compaction_interval_ms = 50")
}

/// Bytes that depend on `(key, version)` only.
fn content(key: &str, version: u64, len: usize) -> Vec<u8> {
    let mut state = version.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ key.len() as u64;
    for byte in key.bytes() {
        state = (state ^ u64::from(byte)).wrapping_mul(0x0100_0000_01B3);
    }
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.extend_from_slice(&state.to_le_bytes());
    }
    out.truncate(len);
    out
}

async fn put(client: &Client, key: &str, data: Vec<u8>) {
    client
        .put_object()
        .bucket("compact")
        .key(key)
        .body(ByteStream::from(data))
        .send()
        .await
        .unwrap_or_else(|error| panic!("PUT {key}: {error:?}"));
}

async fn get(client: &Client, key: &str) -> Vec<u8> {
    let output = client
        .get_object()
        .bucket("compact")
        .key(key)
        .send()
        .await
        .unwrap_or_else(|error| panic!("GET {key}: {error:?}"));
    output.body.collect().await.unwrap().into_bytes().to_vec()
}

/// `(segment bytes, segments removed)` over all cores, from `/metrics`.
#[allow(
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    reason = "the series are non-negative integers"
)]
fn storage_metrics(server: &Server) -> (u64, u64) {
    let text = server.admin_get("/metrics").text();
    let sum = |name: &str| {
        (0..common::online_cores())
            .filter_map(|core| metric(&text, &format!("{name}{{core=\"{core}\"}}")))
            .sum::<f64>() as u64
    };
    (
        sum("ringstore_segment_bytes"),
        sum("ringstore_compaction_segments_removed_total"),
    )
}

async fn assert_all(client: &Client, live: &BTreeMap<String, Vec<u8>>) {
    for (key, data) in live {
        let got = get(client, key).await;
        assert!(
            got == *data,
            "{key}: {} bytes back, expected {}",
            got.len(),
            data.len()
        );
    }
}

#[tokio::test]
async fn disk_use_returns_towards_the_live_data_after_overwrites_and_deletes() {
    // Goal: DESIGN.md's "Space": deleted and overwritten data goes back to
    // the file system, and nothing live is lost on the way. Method: 48
    // objects of 1 MiB, overwritten three times, then half deleted; the
    // segment bytes (a gauge in /metrics) must fall to the live bytes plus
    // at most the two segments per core that cannot be compacted yet (the
    // active one and one filling up), and every object must read back,
    // before and after a restart.
    let mut server = compacting().start();
    let client = server.client();
    client
        .create_bucket()
        .bucket("compact")
        .send()
        .await
        .unwrap();
    let mut live = BTreeMap::new();
    let mut written = 0;
    for version in 0..4 {
        for index in 0..48 {
            let key = format!("object-{index:02}");
            let data = content(&key, version, MIB + index * 1000);
            written += data.len();
            put(&client, &key, data.clone()).await;
            live.insert(key, data);
        }
    }
    for index in (0..48).step_by(2) {
        let key = format!("object-{index:02}");
        client
            .delete_object()
            .bucket("compact")
            .key(&key)
            .send()
            .await
            .unwrap();
        live.remove(&key);
    }
    let live_bytes: u64 = live.values().map(|data| data.len() as u64).sum();
    let bound = live_bytes + 2 * SEGMENT_BYTES * common::online_cores() as u64;
    let deadline = Instant::now() + Duration::from_secs(30);
    // Wait for both series: each scrape is a moment's view, and the
    // segment bytes and the removal count of a shard need not move in the
    // same scrape.
    let (mut after, mut removed) = storage_metrics(&server);
    while (after > bound || removed == 0) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        (after, removed) = storage_metrics(&server);
    }
    eprintln!(
        "{written} bytes written; segments hold {after} bytes after compaction ({removed} \
         segments removed); live bytes {live_bytes}"
    );
    assert!(
        after <= bound,
        "segments still hold {after} bytes for {live_bytes} live bytes (bound {bound})"
    );
    assert!(removed > 0);
    assert_all(&client, &live).await;
    server.stop();
    server.start_again(&compacting()).expect("restart");
    let client = server.client();
    assert_all(&client, &live).await;
}

#[tokio::test]
async fn a_get_streamed_while_compaction_moves_the_object_returns_its_bytes() {
    // Goal: a GET in progress pins the segments it reads, so compaction
    // does not delete them under it. Method: a 24 MiB object (three
    // segments) whose segments become sparse when the objects around it
    // are overwritten; a slow reader starts before the overwrites and
    // reads the body in pieces while compaction runs; it must get every
    // byte, and the object must read back whole afterwards.
    let server = compacting().cores(1).start();
    let client = server.client();
    client
        .create_bucket()
        .bucket("compact")
        .send()
        .await
        .unwrap();
    let big = content("big", 1, 24 * MIB);
    for index in 0..8 {
        let key = format!("filler-{index}");
        put(&client, &key, content(&key, 1, 3 * MIB)).await;
    }
    put(&client, "big", big.clone()).await;
    for index in 0..8 {
        let key = format!("after-{index}");
        put(&client, &key, content(&key, 1, 3 * MIB)).await;
    }
    let mut output = client
        .get_object()
        .bucket("compact")
        .key("big")
        .send()
        .await
        .unwrap();
    let mut received = Vec::new();
    let first = output.body.next().await.unwrap().unwrap();
    received.extend_from_slice(&first);
    // Make every segment but the big object's sparse, and the big object's
    // too: delete it while its GET is still streaming.
    for round in 2..4 {
        for prefix in ["filler", "after"] {
            for index in 0..8 {
                let key = format!("{prefix}-{index}");
                put(&client, &key, content(&key, round, 3 * MIB)).await;
            }
        }
    }
    client
        .delete_object()
        .bucket("compact")
        .key("big")
        .send()
        .await
        .unwrap();
    let (_, removed_before) = storage_metrics(&server);
    tokio::time::sleep(Duration::from_millis(500)).await;
    while let Some(piece) = output.body.next().await {
        received.extend_from_slice(&piece.unwrap());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(received == big, "the streamed GET returned wrong bytes");
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut removed = removed_before;
    while removed <= removed_before && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        (_, removed) = storage_metrics(&server);
    }
    eprintln!("segments removed: {removed_before} while the GET streamed, {removed} after it");
    assert!(
        removed > removed_before,
        "the pinned segments were never removed"
    );
}
