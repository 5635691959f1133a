//! What peeling the aws-chunked framing off a PUT body costs per byte, on
//! one core. Current AWS SDKs send every streamed upload in this framing, so
//! it sits between the socket and the `ETag` hash on most PUTs.
//!
//! The body is decoded as `http::BodyReader` does it for a Content-Length
//! body: the sans-IO [`AwsChunkedDecoder`] is fed the body in pieces of the
//! connection read buffer (`limits::CONNECTION_READ_BUFFER_BYTES`), and
//! every decoded range is copied out to the handler's buffer. Each
//! iteration starts a new decoder, as each request does. The body is 1 MiB
//! of object bytes in 64 KiB chunks:
//!
//! - `aws_chunked_1MiB/unsigned_trailer`: `STREAMING-UNSIGNED-PAYLOAD-TRAILER`,
//!   what the SDKs send by default: no signatures, and an
//!   `x-amz-checksum-crc32` trailer after the last chunk. The trailer is
//!   parsed here; checking its value against the body is the checksum's
//!   cost, measured in `benches/checksum.rs`.
//! - `aws_chunked_1MiB/signed`: `STREAMING-AWS4-HMAC-SHA256-PAYLOAD`: the
//!   decoder hashes each chunk with SHA-256 and verifies its chained
//!   signature (one HMAC-SHA256) when the chunk's last byte arrives.
//!
//! Criterion reports decoded object bytes per second.

use std::hint::black_box;

use base64::Engine as _;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ringstore::auth::{
    AwsChunkedDecoder, AwsChunkedMode, ChunkSigningContext, ChunkStep, SigningKey,
};
use ringstore::limits::CONNECTION_READ_BUFFER_BYTES;
use ringstore::storage::object::ChecksumAlgorithm;
use sha2::{Digest as _, Sha256};

const KIB: usize = 1024;
const MIB: usize = 1024 * KIB;
/// The aws-chunked chunk size of the benchmarked bodies.
const CHUNK_LEN: usize = 64 * KIB;

/// The request the signed body continues (AWS's streaming example).
const SECRET_ACCESS_KEY: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
const AMZ_DATE: &str = "20130524T000000Z";
const SCOPE: &str = "20130524/us-east-1/s3/aws4_request";
/// The request's own signature, which seeds the chunk signature chain.
const SEED_SIGNATURE: [u8; 32] = [0x4f; 32];

/// `len` object bytes that no hash can short-cut (not all zeros).
fn object(len: usize) -> Vec<u8> {
    (0..len)
        .map(|index| u8::try_from(index % 251).expect("below 251"))
        .collect()
}

fn signing_key() -> SigningKey {
    SigningKey::derive(SECRET_ACCESS_KEY, "20130524", "us-east-1", "s3")
}

/// `data` framed as `STREAMING-UNSIGNED-PAYLOAD-TRAILER`, ending in its
/// CRC32 trailer, as the SDKs send it.
fn unsigned_trailer_body(data: &[u8]) -> Vec<u8> {
    let mut body = Vec::with_capacity(data.len() + 4 * KIB);
    for chunk in data.chunks(CHUNK_LEN) {
        body.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        body.extend_from_slice(chunk);
        body.extend_from_slice(b"\r\n");
    }
    let crc = ringstore::s3::checksum::digest(ChecksumAlgorithm::Crc32, data);
    let crc = base64::engine::general_purpose::STANDARD.encode(crc);
    body.extend_from_slice(format!("0\r\nx-amz-checksum-crc32:{crc}\r\n\r\n").as_bytes());
    body
}

/// `data` framed as `STREAMING-AWS4-HMAC-SHA256-PAYLOAD`, every chunk (and
/// the final empty one) signed in the chain seeded by [`SEED_SIGNATURE`].
fn signed_body(key: &SigningKey, data: &[u8]) -> Vec<u8> {
    let mut body = Vec::with_capacity(data.len() + 4 * KIB);
    let mut previous = SEED_SIGNATURE;
    let mut string_to_sign = Vec::new();
    for chunk in data.chunks(CHUNK_LEN).chain(std::iter::once(&[][..])) {
        let context = ChunkSigningContext::new(key, AMZ_DATE, SCOPE, previous);
        string_to_sign.clear();
        context.push_chunk_string_to_sign(&mut string_to_sign, &Sha256::digest(chunk).into());
        previous = context.sign(&string_to_sign);
        body.extend_from_slice(
            format!(
                "{:x};chunk-signature={}\r\n",
                chunk.len(),
                hex::encode(previous)
            )
            .as_bytes(),
        );
        body.extend_from_slice(chunk);
        body.extend_from_slice(b"\r\n");
    }
    // The last `\r\n` closes the body: no trailers.
    body
}

/// Decodes `body` into `out` as `BodyReader` would; returns the object
/// length.
fn decode(decoder: &mut AwsChunkedDecoder, body: &[u8], out: &mut [u8]) -> usize {
    let mut filled = 0;
    for piece in body.chunks(CONNECTION_READ_BUFFER_BYTES) {
        let mut offset = 0;
        while offset < piece.len() {
            let (consumed, step) = decoder.step(&piece[offset..]).expect("the body decodes");
            if let ChunkStep::Data { start, end } = step {
                let len = end - start;
                out[filled..filled + len].copy_from_slice(&piece[offset + start..offset + end]);
                filled += len;
            }
            offset += consumed;
        }
    }
    decoder.finish().expect("the body is complete");
    filled
}

fn bench(c: &mut Criterion) {
    let data = object(MIB);
    let key = signing_key();
    let unsigned = unsigned_trailer_body(&data);
    let signed = signed_body(&key, &data);
    let unsigned_decoder = || AwsChunkedDecoder::new(AwsChunkedMode::Unsigned, true);
    let signed_context = ChunkSigningContext::new(&key, AMZ_DATE, SCOPE, SEED_SIGNATURE);
    let signed_decoder =
        || AwsChunkedDecoder::new(AwsChunkedMode::Signed(signed_context.clone()), false);
    let mut out = vec![0_u8; MIB];

    // Both bodies decode to the object; the unsigned one's trailer arrives.
    let mut decoder = unsigned_decoder();
    assert_eq!(decode(&mut decoder, &unsigned, &mut out), MIB);
    assert!(out == data);
    assert_eq!(decoder.trailers().len(), 1);
    out.fill(0);
    assert_eq!(decode(&mut signed_decoder(), &signed, &mut out), MIB);
    assert!(out == data);

    let mut group = c.benchmark_group("aws_chunked_1MiB");
    group.throughput(Throughput::Bytes(MIB as u64));
    group.bench_function("unsigned_trailer", |b| {
        b.iter(|| decode(&mut unsigned_decoder(), black_box(&unsigned), &mut out));
    });
    group.bench_function("signed", |b| {
        b.iter(|| decode(&mut signed_decoder(), black_box(&signed), &mut out));
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
