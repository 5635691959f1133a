//! The seed inputs of every fuzz target, made by code: real requests,
//! bodies and disk images as ringstore and its clients produce them. They
//! are committed under `fuzz/seeds/<target>/` (regenerate with
//! `RINGSTORE_WRITE_FUZZ_SEEDS=1 cargo test --test fuzz_regressions
//! write_seeds -- --ignored`), and `tests/fuzz_regressions.rs` checks that
//! the committed files are still what this code makes.

use crate::storage::index::{IndexEntry, fuzz_api};
use crate::storage::location::Location;
use crate::storage::object::{
    Checksum, ChecksumAlgorithm, ETag, Extent, ObjectBody, ObjectCommit, ObjectTombstone,
    RelocatedVersion, Relocation,
};
use crate::storage::record::{self, FLAG_SEAL, Header, Kind};
use crate::storage::upload::{ChecksumSpec, UploadCreate, UploadEnd, UploadOutcome, UploadPart};

/// One seed: its target, a file name, and the bytes.
pub type Seed = (&'static str, String, Vec<u8>);

/// Every seed of every target.
#[must_use]
pub fn all() -> Vec<Seed> {
    let mut seeds = Vec::new();
    let mut add = |target: &'static str, name: &str, bytes: Vec<u8>| {
        seeds.push((target, name.to_owned(), bytes));
    };
    for (name, head) in HEADS {
        add("http_head", name, head.as_bytes().to_vec());
    }
    for (name, body) in CHUNKED_BODIES {
        // No cut points, then cut at 3 and 9.
        add("chunked", name, [&[0u8][..], body.as_bytes()].concat());
        add(
            "chunked",
            &format!("{name}-cut"),
            [&[2u8, 3, 0, 9, 0][..], body.as_bytes()].concat(),
        );
    }
    add(
        "aws_chunked",
        "unsigned-trailer",
        [
            &[4u8, 1, 10, 0][..],
            b"400\r\n",
            &[b'a'; 1024],
            b"\r\n0\r\nx-amz-checksum-crc32c:sOO8/Q==\r\n\r\n",
        ]
        .concat(),
    );
    add(
        "aws_chunked",
        "signed-raw",
        [
            &[1u8, 0][..],
            b"5;chunk-signature=ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648\r\nhello\r\n0;chunk-signature=0055627c9e194cb4542bae2aa5492e3c1575bbb81b612b7d234b86a503ef5497\r\n\r\n",
        ]
        .concat(),
    );
    // Built signed bodies: mode 2 (no trailer) and 6 (trailer); two chunks.
    add(
        "aws_chunked",
        "signed-built",
        vec![2, 1, 7, 0, 2, 0x10, 0, 0x41, 0x05, 0, 0x61, 0, 0, 0],
    );
    add(
        "aws_chunked",
        "signed-built-trailer",
        vec![
            6, 0, 3, 0x00, 0x02, 0x30, 2, 4, b'a', b'b', b'c', b'd', 3, 1, 2, 3, 0, 0, 0,
        ],
    );
    for (name, body) in XML_BODIES {
        add("xml_bodies", name, [&[0u8][..], body.as_bytes()].concat());
    }
    for (name, key) in [
        ("key-plain", "photos/2026/IMG_0001.jpg"),
        ("key-specials", "a&b<c>\"d'e\r\n\tf é 😀"),
        ("key-spaces", "  leading and trailing  "),
    ] {
        add("xml_bodies", name, [&[1u8][..], key.as_bytes()].concat());
    }
    for (name, head) in SIGNED_HEADS {
        add("sigv4", name, [&[0u8][..], head.as_bytes()].concat());
    }
    for (name, text) in [
        ("date-basic", "20130524T000000Z"),
        ("date-imf", "Fri, 24 May 2013 00:00:00 GMT"),
        ("date-rfc850", "Friday, 24-May-13 00:00:00 GMT"),
        ("date-asctime", "Fri May 24 00:00:00 2013"),
    ] {
        add("sigv4", name, [&[1u8][..], text.as_bytes()].concat());
    }
    add(
        "sigv4",
        "components",
        [
            &[2u8][..],
            b"Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, SignedHeaders=host;x-amz-content-sha256;x-amz-date, Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41",
        ]
        .concat(),
    );
    add(
        "sigv4",
        "canonical",
        [
            &[3u8][..],
            b"/photos/caf%C3%A9/a+b$c!?uploads&prefix=a%2Fb&max-keys=10&X-Amz-Signature=x&%7e=~\nhost: example.com\nx-amz-date:20130524T000000Z",
        ]
        .concat(),
    );
    add(
        "sigv4",
        "content-sha256",
        [&[4u8][..], b"STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER"].concat(),
    );
    for (name, bytes) in records() {
        add(
            "record",
            &format!("raw-{name}"),
            [&[0u8][..], &bytes].concat(),
        );
    }
    add(
        "record",
        "built-commit",
        [
            &[1u8, 1, 0],
            &7u64.to_le_bytes()[..],
            &[0; 8],
            &[5, 0, 0x40],
            b"payload",
        ]
        .concat(),
    );
    for (name, payload) in payloads() {
        add(
            "record",
            &format!("payload-{name}"),
            [&[2u8][..], &payload].concat(),
        );
    }
    add(
        "record",
        "snapshot",
        [&[3u8][..], &snapshot_body()].concat(),
    );
    let entries = run_entries();
    let run = fuzz_api::encode_run(&entries).expect("entries");
    add("index_run", "run", [&[0u8][..], &run[..]].concat());
    add(
        "index_run",
        "archive",
        [
            &[1u8][..],
            &(entries.len() as u16).to_le_bytes(),
            &run[32..],
        ]
        .concat(),
    );
    add(
        "index_run",
        "built",
        vec![
            2, 3, 3, b'b', b'k', b'1', 0, 1, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, 4, 0, 0, 0, 5, 0, 0,
            0, 6, 0, 0, 0, 7, 0, 0, 0, 8, 0, 0, 0, 2, b'b', b'k', 1, 1, b'a', 0, 0, 0,
        ],
    );
    add(
        "index_run",
        "manifest",
        [&[3u8][..], &fuzz_api::example_manifest_body()].concat(),
    );
    add(
        "segment_recovery",
        "segment",
        [&[0u8][..], &segment_image()].concat(),
    );
    add(
        "segment_recovery",
        "built",
        vec![
            1, 2, 5, 0, 4, 1, 20, 0, 3, 1, 2, 30, 0, 5, 0, 0x83, 3, 9, 1, 3, 10, 0, 1, 1, 1, 4, 2,
            100, 0, 0, 0, 0x21, 0, 0, 0, 0,
        ],
    );
    seeds
}

/// Request heads, as clients send them (some with a body after them).
const HEADS: &[(&str, &str)] = &[
    (
        "get",
        "GET /bucket/photos/a.jpg HTTP/1.1\r\nHost: localhost:9000\r\nUser-Agent: aws-cli/2.15\r\nRange: bytes=0-9\r\nIf-None-Match: \"abc\"\r\n\r\n",
    ),
    (
        "put-content-length",
        "PUT /bucket/key HTTP/1.1\r\nHost: bucket.s3.localhost\r\nContent-Length: 5\r\nContent-Type: text/plain\r\nx-amz-meta-a: b\r\n\r\nhello",
    ),
    (
        "put-chunked",
        "PUT /bucket/key HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n5\r\nhello\r\n0\r\nx-amz-checksum-crc32c: abc=\r\n\r\n",
    ),
    (
        "http10-keep-alive",
        "HEAD /bucket/key HTTP/1.0\r\nHost: localhost\r\nConnection: keep-alive\r\n\r\n",
    ),
    (
        "absolute-form",
        "GET http://bucket.localhost:9000/key?versionId=1 HTTP/1.1\r\nHost: ignored\r\nConnection: close\r\n\r\n",
    ),
    (
        "delete-objects",
        "POST /bucket?delete HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\nContent-MD5: 1B2M2Y8AsgTpgAmY7PhCfg==\r\n\r\n",
    ),
    (
        "copy",
        "PUT /bucket/copy?partNumber=2&uploadId=abc HTTP/1.1\r\nHost: localhost\r\nx-amz-copy-source: /src/key%20one?versionId=v1\r\nx-amz-copy-source-range: bytes=0-99\r\n\r\n",
    ),
    (
        "list",
        "GET /bucket?list-type=2&prefix=a%2F&delimiter=%2F&max-keys=100 HTTP/1.1\r\nHost: localhost\r\n\r\n",
    ),
    (
        "pipelined",
        "\r\nGET / HTTP/1.1\r\nHost: localhost\r\n\r\nGET /b HTTP/1.1\r\nHost: localhost\r\n\r\n",
    ),
];

/// Chunked bodies, each followed by the start of a next request.
const CHUNKED_BODIES: &[(&str, &str)] = &[
    ("simple", "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\nGET"),
    ("extensions", "5;name=value;x\r\nhello\r\n0 ;last\r\n\r\n"),
    (
        "trailers",
        "a\r\n0123456789\r\n0\r\nx-amz-checksum-crc32c: sOO8/Q==\r\nExpires: never\r\n\r\n",
    ),
    ("upper-hex", "1A\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\n\r\n"),
];

/// XML request bodies as the SDKs send them.
const XML_BODIES: &[(&str, &str)] = &[
    (
        "delete",
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Delete xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Object><Key>a.txt</Key></Object><Object><Key>b &amp; c</Key><VersionId>v1</VersionId></Object><Quiet>true</Quiet></Delete>",
    ),
    (
        "complete",
        "<CompleteMultipartUpload xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">\n  <Part>\n    <ETag>\"a54357aff0632cce46d942af68356b38\"</ETag>\n    <PartNumber>1</PartNumber>\n    <ChecksumCRC32C>sOO8/Q==</ChecksumCRC32C>\n  </Part>\n  <Part><PartNumber>2</PartNumber><ETag>0c78aef83f66abc1fa1e8477f296d394</ETag></Part>\n</CompleteMultipartUpload>",
    ),
    (
        "create-bucket",
        "<CreateBucketConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><LocationConstraint>us-east-1</LocationConstraint></CreateBucketConfiguration>",
    ),
    (
        "cdata-comments",
        "<!-- c --><Delete><Object><Key><![CDATA[x<y]]>&#13;&#x41;</Key></Object></Delete><?pi x?>",
    ),
];

/// Signed request heads (AWS's own examples, whose key the target holds).
const SIGNED_HEADS: &[(&str, &str)] = &[
    (
        "header-get",
        "GET /test.txt HTTP/1.1\r\nHost: examplebucket.s3.amazonaws.com\r\nAuthorization: AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request,SignedHeaders=host;range;x-amz-content-sha256;x-amz-date,Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41\r\nRange: bytes=0-9\r\nx-amz-content-sha256: e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\r\nx-amz-date: 20130524T000000Z\r\n\r\n",
    ),
    (
        "header-put-streaming",
        "PUT /examplebucket/chunkObject.txt HTTP/1.1\r\nHost: s3.amazonaws.com\r\nx-amz-date: 20130524T000000Z\r\nx-amz-storage-class: REDUCED_REDUNDANCY\r\nAuthorization: AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request,SignedHeaders=content-encoding;content-length;host;x-amz-content-sha256;x-amz-date;x-amz-decoded-content-length;x-amz-storage-class,Signature=4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9\r\nx-amz-content-sha256: STREAMING-AWS4-HMAC-SHA256-PAYLOAD\r\nContent-Encoding: aws-chunked\r\nx-amz-decoded-content-length: 66560\r\nContent-Length: 66824\r\n\r\n",
    ),
    (
        "presigned",
        "GET /test.txt?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&X-Amz-SignedHeaders=host&X-Amz-Signature=aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404 HTTP/1.1\r\nHost: examplebucket.s3.amazonaws.com\r\n\r\n",
    ),
    (
        "date-header",
        "GET /b/k HTTP/1.1\r\nHost: localhost\r\nDate: Fri, 24 May 2013 00:00:00 GMT\r\nx-amz-content-sha256: UNSIGNED-PAYLOAD\r\nAuthorization: AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, SignedHeaders=date;host, Signature=0000000000000000000000000000000000000000000000000000000000000000\r\n\r\n",
    ),
];

fn commit() -> ObjectCommit {
    ObjectCommit {
        bucket: "backups".to_owned(),
        key: "photos/été/IMG_0001.jpg".to_owned(),
        size: 1_048_581,
        etag: ETag::Multipart {
            digest: [0xab; 16],
            part_count: 2,
        },
        last_modified_ms: 1_767_225_600_123,
        content_type: Some("image/jpeg".to_owned()),
        cache_control: None,
        content_disposition: Some("attachment".to_owned()),
        content_encoding: None,
        content_language: None,
        expires: None,
        user_metadata: vec![("camera".to_owned(), "x100".to_owned())],
        checksums: vec![Checksum {
            algorithm: ChecksumAlgorithm::Crc32c,
            value: vec![1, 2, 3, 4],
            composite: true,
        }],
        part_sizes: vec![1_048_576, 5],
        body: ObjectBody::Extents(vec![
            Extent {
                location: Location {
                    segment: 1,
                    offset: 0,
                    len: record::record_len(1_048_576),
                },
                data_len: 1_048_576,
            },
            Extent {
                location: Location {
                    segment: 2,
                    offset: 4096,
                    len: record::record_len(5),
                },
                data_len: 5,
            },
        ]),
    }
}

fn tombstone() -> ObjectTombstone {
    ObjectTombstone {
        bucket: "backups".to_owned(),
        key: "old".to_owned(),
        deleted_ms: 1_767_225_600_000,
    }
}

fn upload_create() -> UploadCreate {
    let mut template = commit();
    template.size = 0;
    template.etag = ETag::Md5([0; 16]);
    template.part_sizes = Vec::new();
    template.checksums = Vec::new();
    template.body = ObjectBody::Extents(Vec::new());
    UploadCreate {
        upload_id: "0123456789abcdef0123456789abcdef".to_owned(),
        initiated_ms: 1_767_225_600_000,
        checksum: Some(ChecksumSpec {
            algorithm: ChecksumAlgorithm::Crc32c,
            composite: true,
        }),
        template,
    }
}

fn upload_part() -> UploadPart {
    UploadPart {
        upload_id: "0123456789abcdef0123456789abcdef".to_owned(),
        part_number: 1,
        size: 5,
        md5: [7; 16],
        last_modified_ms: 1_767_225_600_001,
        checksum: Some(Checksum {
            algorithm: ChecksumAlgorithm::Crc32c,
            value: vec![9, 8, 7, 6],
            composite: false,
        }),
        extents: vec![Extent {
            location: Location {
                segment: 3,
                offset: 8192,
                len: record::record_len(5),
            },
            data_len: 5,
        }],
    }
}

fn upload_end() -> UploadEnd {
    UploadEnd {
        upload_id: "0123456789abcdef0123456789abcdef".to_owned(),
        bucket: "backups".to_owned(),
        key: "photos/été/IMG_0001.jpg".to_owned(),
        ended_ms: 1_767_225_600_002,
        outcome: UploadOutcome::Completed {
            etag: ETag::Multipart {
                digest: [0xab; 16],
                part_count: 1,
            },
        },
    }
}

fn payloads() -> Vec<(&'static str, Vec<u8>)> {
    let mut inline = commit();
    inline.etag = ETag::Md5([1; 16]);
    inline.part_sizes = Vec::new();
    inline.size = 5;
    inline.body = ObjectBody::Inline(b"hello".to_vec());
    vec![
        ("commit", commit().encode()),
        ("commit-inline", inline.encode()),
        ("tombstone", tombstone().encode()),
        (
            "relocation",
            Relocation {
                seq: 42,
                origin_segment: 1,
                version: RelocatedVersion::Commit(inline),
            }
            .encode(),
        ),
        ("upload-create", upload_create().encode()),
        ("upload-part", upload_part().encode()),
        ("upload-end", upload_end().encode()),
    ]
}

fn records() -> Vec<(&'static str, Vec<u8>)> {
    payloads()
        .into_iter()
        .zip([
            Kind::Commit,
            Kind::Commit,
            Kind::Tombstone,
            Kind::Relocate,
            Kind::UploadCreate,
            Kind::UploadPart,
            Kind::UploadEnd,
        ])
        .enumerate()
        .map(|(index, ((name, payload), kind))| {
            let mut bytes = Vec::new();
            let header = Header {
                kind,
                flags: 0,
                seq: 100 + index as u64,
                durable_offset: 4096,
            };
            record::encode_into(&mut bytes, &header, &payload);
            (name, bytes)
        })
        .collect()
}

/// An upload-state snapshot body (without its CRC): one upload, one part.
fn snapshot_body() -> Vec<u8> {
    let mut uploads = crate::storage::shard::uploads::Uploads::default();
    uploads.apply_create(upload_create(), 1);
    let at = crate::storage::index::SegmentPosition {
        segment: 3,
        offset: 8192,
    };
    assert!(uploads.apply_part(upload_part(), at));
    let mut bytes = uploads.encode_snapshot();
    bytes.truncate(bytes.len() - 4);
    bytes
}

fn run_entries() -> Vec<(Vec<u8>, IndexEntry)> {
    [
        ("a.txt", false),
        ("b/c.txt", true),
        ("photos/été.jpg", false),
    ]
    .iter()
    .enumerate()
    .map(|(index, (key, tombstone))| {
        let key = crate::storage::index::IndexKey::new("backups", key);
        let numbers = [index as u64 + 1, 4096 * index as u64, 1, 1000];
        (
            key.as_bytes().to_vec(),
            fuzz_api::entry(index as u64 + 1, *tombstone, numbers),
        )
    })
    .collect()
}

/// A sealed segment image: a data extent, a commit, a tombstone, the seal.
fn segment_image() -> Vec<u8> {
    let mut image = Vec::new();
    let mut seq = 10;
    for (kind, payload) in [
        (Kind::Data, b"0123456789".to_vec()),
        (Kind::Commit, commit().encode()),
        (Kind::Tombstone, tombstone().encode()),
    ] {
        let header = Header {
            kind,
            flags: 0,
            seq,
            durable_offset: 0,
        };
        record::encode_into(&mut image, &header, &payload);
        seq += 1;
    }
    let offset = image.len() as u64;
    let header_end = offset + u64::from(record::HEADER_BYTES);
    let payload_len = (header_end.next_multiple_of(4096) - header_end) as usize;
    let header = Header {
        kind: Kind::Padding,
        flags: FLAG_SEAL,
        seq,
        durable_offset: offset,
    };
    record::encode_into(&mut image, &header, &vec![0; payload_len]);
    image
}
