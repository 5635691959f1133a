//! What hashing a PUT body costs per byte, on one core:
//!
//! - `checksum_1MiB/*`, `checksum_64KiB/*`: one call over the whole buffer.
//!   `md5` is the `ETag` ([`ringstore::storage::md5::Md5`], AWS-LC's MD5, as
//!   `s3/put.rs` computes it); the others are
//!   the five `x-amz-checksum-*` algorithms through
//!   [`ringstore::s3::checksum::digest`] (`crc64nvme` is what every PUT
//!   without a checksum header pays).
//! - `checksum_1MiB_streamed/*`: the same 1 MiB fed to a running hasher in
//!   64 KiB pieces, as a body arrives from the socket
//!   ([`ringstore::s3::checksum::Hasher`], and `Md5::update` for the `ETag`).
//!   `md5_md-5` is the `md-5` crate, which the crate used before AWS-LC,
//!   for comparison.
//! - `record_crc_1MiB/*`, `record_crc_256B/*`: the CRC-32C every segment
//!   record carries ([`ringstore::storage::record`]): `encode_header` (what
//!   appending a record computes, over the header and the payload) and
//!   `decode` (what reading one back checks: the same CRC and the frame),
//!   for a 1 MiB data extent and a small commit record.
//!
//! Criterion reports bytes per second; one GiB per second is about
//! 0.98 ms per MiB of body.

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use ringstore::s3::checksum::{self, Hasher};
use ringstore::storage::md5::Md5;
use ringstore::storage::record::{self, Header, Kind};

const KIB: usize = 1024;
const MIB: usize = 1024 * KIB;
/// The piece size of the streamed benchmarks.
const PIECE_LEN: usize = 64 * KIB;

/// A body of `len` bytes that no hash can short-cut (not all zeros).
fn body(len: usize) -> Vec<u8> {
    (0..len)
        .map(|index| u8::try_from(index % 251).expect("below 251"))
        .collect()
}

/// The benchmark name of `algorithm`: its AWS name, lower-cased.
fn id(algorithm: ringstore::storage::object::ChecksumAlgorithm) -> String {
    checksum::name(algorithm).to_ascii_lowercase()
}

fn bench_whole(c: &mut Criterion) {
    for (size_name, len) in [("1MiB", MIB), ("64KiB", 64 * KIB)] {
        let data = body(len);
        let mut group = c.benchmark_group(format!("checksum_{size_name}"));
        group.throughput(Throughput::Bytes(len as u64));
        group.bench_function("md5", |b| b.iter(|| Md5::digest(black_box(&data))));
        for algorithm in checksum::ALL {
            group.bench_function(BenchmarkId::from_parameter(id(algorithm)), |b| {
                b.iter(|| checksum::digest(algorithm, black_box(&data)));
            });
        }
        group.finish();
    }
}

fn bench_streamed(c: &mut Criterion) {
    let data = body(MIB);
    let mut group = c.benchmark_group("checksum_1MiB_streamed");
    group.throughput(Throughput::Bytes(MIB as u64));
    group.bench_function("md5", |b| {
        b.iter(|| {
            let mut md5 = Md5::new();
            for piece in black_box(&data).chunks(PIECE_LEN) {
                md5.update(piece);
            }
            md5.finish()
        });
    });
    group.bench_function("md5_md-5", |b| {
        b.iter(|| {
            use md5::Digest as _;
            let mut reference = md5::Md5::new();
            for piece in black_box(&data).chunks(PIECE_LEN) {
                reference.update(piece);
            }
            reference.finalize()
        });
    });
    for algorithm in checksum::ALL {
        group.bench_function(BenchmarkId::from_parameter(id(algorithm)), |b| {
            b.iter(|| {
                let mut hasher = Hasher::new(algorithm);
                for piece in black_box(&data).chunks(PIECE_LEN) {
                    hasher.update(piece);
                }
                hasher.finish(algorithm)
            });
        });
    }
    group.finish();
}

fn bench_record(c: &mut Criterion) {
    for (size_name, len, kind) in [("1MiB", MIB, Kind::Data), ("256B", 256, Kind::Commit)] {
        let payload = body(len);
        let header = Header {
            kind,
            flags: 0,
            seq: 7,
            durable_offset: 4096,
        };
        let mut encoded = Vec::new();
        record::encode_into(&mut encoded, &header, &payload);
        let mut group = c.benchmark_group(format!("record_crc_{size_name}"));
        group.throughput(Throughput::Bytes(encoded.len() as u64));
        group.bench_function("encode_header", |b| {
            b.iter(|| record::encode_header(black_box(&header), black_box(&payload)));
        });
        group.bench_function("decode", |b| {
            b.iter(|| record::decode(black_box(&encoded)).expect("a whole record"));
        });
        group.finish();
    }
}

criterion_group!(benches, bench_whole, bench_streamed, bench_record);
criterion_main!(benches);
