//! What writing the XML of a full listing page costs, on one core: the
//! `ListBucketResult` of a 1000-entry page (`s3::list::LIST_PAGE_MAX`, what
//! every client that pages through a bucket asks for), through the same
//! functions the `ListObjects` handlers call. Merging the shards' answers
//! and reading the indexes are not included; this is the part that grows
//! with the length of the keys and with `encoding-type=url`.
//!
//! The page is the second page of a photo library under `photos/2024/`
//! with delimiter `/`: 960 keys and 40 common prefixes (albums), key
//! lengths around 40 bytes; one key in eight has spaces and `&` (escaped
//! in XML, percent-encoded under `encoding-type=url`), one in sixteen a
//! non-ASCII letter, and one in ten is a multipart upload.
//!
//! - `list_xml_1000/v2`, `v2_url`: `ListObjectsV2` without and with
//!   `encoding-type=url` (the AWS CLI and most SDKs send it), no owner.
//! - `list_xml_1000/v1`, `v1_url`: `ListObjects` (v1), which always names
//!   the owner of each key.
//!
//! Criterion reports entries per second; the bench prints the size of each
//! document once.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ringstore::s3::list::{
    LIST_PAGE_MAX, Page, Params, encode_token, list_bucket_result_v1, list_bucket_result_v2,
};
use ringstore::s3::xml::Owner;
use ringstore::storage::index::Etag;
use ringstore::storage::shard::listing::Listed;

const PREFIX: &str = "photos/2024/";
/// One common prefix every this many entries.
const ALBUM_EVERY: usize = 25;

/// A page of `LIST_PAGE_MAX` entries in listing order.
fn page() -> Page {
    let mut entries: Vec<Listed> = (0..LIST_PAGE_MAX)
        .map(|index| {
            if index % ALBUM_EVERY == 0 {
                return Listed::CommonPrefix(format!("{PREFIX}album-{index:04}/"));
            }
            let key = match index {
                _ if index % 16 == 1 => format!("{PREFIX}Café {index:04} (édité).heic"),
                _ if index % 8 == 3 => format!("{PREFIX}Summer trip & friends {index:04}.jpg"),
                _ => format!("{PREFIX}IMG_20240612_{index:06}.jpg"),
            };
            let seed = u8::try_from(index % 251).expect("below 251");
            Listed::Object {
                key,
                size: 2_000_000 + 7919 * index as u64,
                etag: Etag {
                    md5: [seed; 16],
                    part_count: if index % 10 == 7 { 3 } else { 0 },
                },
                last_modified_ms: 1_718_000_000_000 + 60_000 * i64::try_from(index).expect("small"),
            }
        })
        .collect();
    entries.sort_by(|a, b| a.position().cmp(b.position()));
    Page {
        entries,
        truncated: true,
    }
}

fn params(url_encoding: bool) -> Params {
    Params {
        bucket: "family-photos".to_owned(),
        prefix: PREFIX.to_owned(),
        delimiter: "/".to_owned(),
        max_keys: LIST_PAGE_MAX,
        url_encoding,
    }
}

fn bench(c: &mut Criterion) {
    let page = page();
    let owner = Owner {
        id: "6f1c0c7e0f5a4b43a1f1e8d2b1c9a0e5".to_owned(),
        display_name: "ringstore".to_owned(),
    };
    // The second page continues after the first one's last entry.
    let token = encode_token(&format!("{PREFIX}0000-first-page-ends-here.jpg"));
    let marker = format!("{PREFIX}0000-first-page-ends-here.jpg");
    let (plain, url) = (params(false), params(true));

    let v2 = |params: &Params| list_bucket_result_v2(params, &page, Some(&token), None, None);
    let v1 = |params: &Params| list_bucket_result_v1(params, &marker, &page, &owner);
    for (name, xml) in [
        ("v2", v2(&plain)),
        ("v2_url", v2(&url)),
        ("v1", v1(&plain)),
        ("v1_url", v1(&url)),
    ] {
        assert_eq!(xml.matches("<Contents>").count(), 960);
        assert_eq!(xml.matches("<CommonPrefixes>").count(), 40);
        println!("list_xml_1000/{name}: {} bytes", xml.len());
    }

    let mut group = c.benchmark_group("list_xml_1000");
    group.throughput(Throughput::Elements(LIST_PAGE_MAX as u64));
    group.bench_function("v2", |b| b.iter(|| v2(black_box(&plain))));
    group.bench_function("v2_url", |b| b.iter(|| v2(black_box(&url))));
    group.bench_function("v1", |b| b.iter(|| v1(black_box(&plain))));
    group.bench_function("v1_url", |b| b.iter(|| v1(black_box(&url))));
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
