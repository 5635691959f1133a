//! Request-head parsing cost: a minimal GET and the head the AWS SDK sends
//! for a `PutObject` (`SigV4`, checksum trailer, user metadata).

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ringstore::http::request::parse_head;

const SMALL_GET: &[u8] = b"GET /bucket/key HTTP/1.1\r\nHost: 127.0.0.1:9000\r\n\r\n";

const SDK_PUT: &[u8] = b"PUT /backups/data/2026/11/24/pack-0001.bin?x-id=PutObject HTTP/1.1\r\n\
host: 127.0.0.1:9000\r\n\
content-type: application/octet-stream\r\n\
content-encoding: aws-chunked\r\n\
transfer-encoding: chunked\r\n\
x-amz-content-sha256: STREAMING-UNSIGNED-PAYLOAD-TRAILER\r\n\
x-amz-decoded-content-length: 1048576\r\n\
x-amz-trailer: x-amz-checksum-crc32\r\n\
x-amz-sdk-checksum-algorithm: CRC32\r\n\
x-amz-meta-origin: backup-host-17\r\n\
x-amz-meta-snapshot: 6c3f0a1e\r\n\
amz-sdk-invocation-id: 7f5c5d3e-44b1-4c55-9b4a-2b1f3c2d9e11\r\n\
amz-sdk-request: attempt=1; max=3\r\n\
user-agent: aws-sdk-rust/1.3.9 os/linux lang/rust/1.95.0\r\n\
x-amz-user-agent: aws-sdk-rust/1.3.9 api/s3/1.157.0 os/linux lang/rust/1.95.0 m/Z,b\r\n\
x-amz-date: 20261124T042500Z\r\n\
authorization: AWS4-HMAC-SHA256 Credential=RSMDBVTDEMRNAN3E4E2G/20261124/us-east-1/s3/aws4_request, SignedHeaders=content-encoding;content-type;host;transfer-encoding;x-amz-content-sha256;x-amz-date;x-amz-decoded-content-length;x-amz-meta-origin;x-amz-meta-snapshot;x-amz-sdk-checksum-algorithm;x-amz-trailer;x-amz-user-agent, Signature=0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0\r\n\
\r\n";

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("http_parse_head");
    for (name, head) in [("small_get", SMALL_GET), ("sdk_put", SDK_PUT)] {
        group.throughput(Throughput::Bytes(head.len() as u64));
        group.bench_function(name, |b| {
            b.iter(|| parse_head(std::hint::black_box(head)).unwrap().unwrap());
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
