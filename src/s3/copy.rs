//! `CopyObject` and `UploadPartCopy`.
//!
//! A copy runs on the core that owns the destination key. The source may
//! belong to the same core or to another one:
//!
//! - **Same core, whole object (`CopyObject`).** The new commit names the
//!   source's bytes where they are (its inline bytes, or its extents):
//!   nothing is copied, as S3 does for a copy within a bucket. The source's
//!   segments are pinned from the lookup until the new commit is in the
//!   index, and the commit tells compaction it names them, so compaction
//!   cannot delete them in between.
//! - **Another core, or a range (`UploadPartCopy`).** The bytes stream,
//!   one extent at a time, into new extents of the destination's shard.
//!   From another core they come over the mesh: this core holds the
//!   source's commit and asks the owner for one extent piece at a time,
//!   naming the commit's location; if compaction moved the object meanwhile
//!   (same version, new place), the owner says so and the copy continues
//!   from the new commit; if the object was overwritten or deleted, the
//!   copy fails with `OperationAborted` rather than mix two versions.
//!
//! The `x-amz-copy-source-if-*` conditions are checked against the source
//! before any byte is copied (`conditions::check_copy_source`).
//!
//! - <https://docs.aws.amazon.com/AmazonS3/latest/API/API_CopyObject.html>
//! - <https://docs.aws.amazon.com/AmazonS3/latest/API/API_UploadPartCopy.html>

use std::rc::Rc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::checksum::Hasher;
use super::put::{now_ms, object_names, object_template};
use super::router::parse_copy_source;
use super::xml::{self, element};
use super::{Response, S3Request, shutting_down};
use crate::error::S3Error;
use crate::limits;
use crate::node::owner::{SourcePiece, SourceRead, local_head};
use crate::node::worker::{MeshClosed, Worker};
use crate::s3_error;
use crate::storage::location::Location;
use crate::storage::md5::Md5;
use crate::storage::object::{
    Checksum, ChecksumAlgorithm, ETag, EXTENT_BYTES_MAX, Extent, ObjectBody, ObjectCommit,
};
use crate::storage::segment::Space;
use crate::storage::shard::{ReadPin, Shard};
use crate::storage::upload::UploadPart;

/// Largest source `CopyObject` copies in one request, exactly as AWS
/// (5 GiB); larger objects are copied with `UploadPartCopy`.
pub const COPY_SOURCE_BYTES_MAX: u64 = limits::OBJECT_BYTES_MAX;

/// The source of a copy, found and (on this core) pinned.
pub struct Source {
    core: usize,
    bucket: String,
    key: String,
    /// The version: its index `seq` and where its commit is.
    seq: u64,
    location: Location,
    pub commit: ObjectCommit,
    /// Where each extent of the commit starts in the object.
    extent_starts: Vec<u64>,
    /// For a source on this core.
    local: Option<(Rc<Shard>, ReadPin)>,
}

impl Source {
    /// Find `bucket`/`key` (on whichever core owns it).
    async fn find(worker: &Rc<Worker>, bucket: &str, key: &str) -> Result<Source, S3Error> {
        if !worker.catalog().buckets.contains_key(bucket) {
            return Err(super::bucket::no_such_bucket(bucket));
        }
        let core = worker.owner_of(bucket, key);
        let found = if core == worker.shard_id() {
            let shard = worker.shard();
            local_head(&shard, bucket, key)
                .await?
                .map(|(seq, location, commit, pin)| (seq, location, commit, Some((shard, pin))))
        } else {
            match worker.source_head(core, bucket, key).await {
                Ok(Ok(found)) => {
                    found.map(|(seq, location, commit)| (seq, location, *commit, None))
                }
                Ok(Err(error)) => return Err(S3Error::internal(error)),
                Err(MeshClosed) => return Err(shutting_down()),
            }
        };
        let Some((seq, location, commit, local)) = found else {
            return Err(
                s3_error!(NoSuchKey, "The specified key does not exist.").with_extra("Key", key)
            );
        };
        Ok(Source {
            core,
            bucket: bucket.to_owned(),
            key: key.to_owned(),
            seq,
            location,
            extent_starts: extent_starts(&commit),
            commit,
            local,
        })
    }

    fn last_modified(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(u64::try_from(self.commit.last_modified_ms).unwrap_or(0))
    }

    /// Bytes `start..start + len` of the source (`len` at most one extent).
    async fn read(
        &mut self,
        worker: &Rc<Worker>,
        start: u64,
        len: u32,
    ) -> Result<Vec<u8>, S3Error> {
        let end = start + u64::from(len);
        let mut out = Vec::with_capacity(len as usize);
        if let ObjectBody::Inline(data) = &self.commit.body {
            let from = usize::try_from(start).expect("inline bodies are small");
            let to = usize::try_from(end).expect("inline bodies are small");
            return Ok(data[from..to].to_vec());
        }
        // The first extent that ends after `start`, found by its offset.
        let mut index = self
            .extent_starts
            .partition_point(|&offset| offset <= start)
            - 1;
        while let Some(&extent_start) = self.extent_starts.get(index)
            && extent_start < end
        {
            let ObjectBody::Extents(extents) = &self.commit.body else {
                unreachable!("checked above");
            };
            let extent = extents[index];
            let extent_end = extent_start + u64::from(extent.data_len);
            if extent_end > start {
                let from =
                    u32::try_from(start.max(extent_start) - extent_start).expect("in extent");
                let to = u32::try_from(end.min(extent_end) - extent_start).expect("in extent");
                let piece = self
                    .read_piece(worker, extent_start, &extent, from, to - from)
                    .await?;
                out.extend_from_slice(&piece);
            }
            index += 1;
        }
        Ok(out)
    }

    /// One piece of one extent. From another core, a moved object is
    /// looked up again and the piece read from its new place.
    async fn read_piece(
        &mut self,
        worker: &Rc<Worker>,
        object_offset: u64,
        extent: &Extent,
        from: u32,
        len: u32,
    ) -> Result<Vec<u8>, S3Error> {
        if let Some((shard, _pin)) = &self.local {
            let bytes = shard
                .read_extent(extent, from, len)
                .await
                .map_err(S3Error::internal)?;
            return Ok(bytes.to_vec());
        }
        let mut extent = *extent;
        for _ in 0..limits::COPY_SOURCE_MOVES_MAX {
            let piece = SourcePiece {
                bucket: self.bucket.clone(),
                key: self.key.clone(),
                location: self.location,
                extent,
                from,
                len,
            };
            let reply = worker.source_read(self.core, piece).await;
            match reply {
                Ok(SourceRead::Bytes(bytes)) => return Ok(bytes),
                Ok(SourceRead::Moved) => {
                    let again = Source::find(worker, &self.bucket.clone(), &self.key.clone()).await;
                    let again = again.map_err(|_| changed())?;
                    if again.seq != self.seq {
                        return Err(changed());
                    }
                    self.location = again.location;
                    self.extent_starts = again.extent_starts;
                    self.commit = again.commit;
                    extent = extent_at(&self.commit, object_offset).ok_or_else(changed)?;
                }
                Ok(SourceRead::Changed) => return Err(changed()),
                Ok(SourceRead::Failed(error)) => {
                    return Err(S3Error::internal(error));
                }
                Err(MeshClosed) => return Err(shutting_down()),
            }
        }
        Err(changed())
    }
}

/// The offset in the object where each extent of `commit` starts.
fn extent_starts(commit: &ObjectCommit) -> Vec<u64> {
    let ObjectBody::Extents(extents) = &commit.body else {
        return Vec::new();
    };
    extents
        .iter()
        .scan(0_u64, |offset, extent| {
            let start = *offset;
            *offset += u64::from(extent.data_len);
            Some(start)
        })
        .collect()
}

/// The extent of `commit` that starts at `object_offset`.
fn extent_at(commit: &ObjectCommit, object_offset: u64) -> Option<Extent> {
    let ObjectBody::Extents(extents) = &commit.body else {
        return None;
    };
    let mut start = 0_u64;
    for extent in extents {
        if start == object_offset {
            return Some(*extent);
        }
        start += u64::from(extent.data_len);
    }
    None
}

fn changed() -> S3Error {
    s3_error!(
        OperationAborted,
        "A conflicting conditional operation is currently in progress against this resource. Please try again."
    )
}

/// The source named by `x-amz-copy-source`, found, with its conditions
/// checked.
async fn source_of(worker: &Rc<Worker>, request: &S3Request<'_>) -> Result<Source, S3Error> {
    let headers = &request.head.headers;
    let value = headers
        .get("x-amz-copy-source")
        .and_then(|value| value.to_str().ok())
        .ok_or_else(|| {
            s3_error!(
                InvalidArgument,
                "Copy Source must mention the source bucket and key: sourcebucket/sourcekey"
            )
        })?;
    let (bucket, key, version_id) = parse_copy_source(value)?;
    if version_id
        .as_deref()
        .is_some_and(|version| version != "null")
    {
        return Err(
            s3_error!(NoSuchVersion, "The specified version does not exist.")
                .with_extra("Key", &key)
                .with_extra("VersionId", version_id.as_deref().unwrap_or_default()),
        );
    }
    let source = Source::find(worker, &bucket, &key).await?;
    super::conditions::check_copy_source(
        headers,
        &source.commit.etag.to_header_value(),
        source.last_modified(),
        SystemTime::now(),
    )?;
    Ok(source)
}

/// Stream `start..end` of `source` into extents of this core's shard (the
/// caller holds an upload guard); returns them and their MD5, and feeds the
/// bytes to `hasher`.
async fn copy_bytes(
    worker: &Rc<Worker>,
    source: &mut Source,
    start: u64,
    end: u64,
    hasher: &mut Hasher,
) -> Result<(Vec<Extent>, [u8; 16]), S3Error> {
    let shard = worker.shard();
    let mut md5 = Md5::new();
    let mut extents = Vec::new();
    let mut at = start;
    while at < end {
        let len = u32::try_from((end - at).min(u64::from(EXTENT_BYTES_MAX))).expect("bounded");
        let bytes = source.read(worker, at, len).await?;
        md5.update(&bytes);
        hasher.update(&bytes);
        extents.push(shard.append_data(&bytes, Space::Data).await?);
        at += u64::from(len);
    }
    Ok((extents, md5.finish()))
}

pub async fn copy_object(
    worker: &Rc<Worker>,
    request: &S3Request<'_>,
) -> Result<Response, S3Error> {
    let (bucket, key) = object_names(worker, request)?;
    let _write = super::put::begin_write(worker, bucket).await?;
    let headers = &request.head.headers;
    super::acl::check_canned_acl(headers)?;
    let replace = match headers
        .get("x-amz-metadata-directive")
        .map(|value| value.to_str().unwrap_or_default())
    {
        None => false,
        Some(value) if value.eq_ignore_ascii_case("COPY") => false,
        Some(value) if value.eq_ignore_ascii_case("REPLACE") => true,
        Some(value) => {
            return Err(s3_error!(InvalidArgument, "Unknown metadata directive.")
                .with_extra("ArgumentName", "x-amz-metadata-directive")
                .with_extra("ArgumentValue", value));
        }
    };
    let mut source = source_of(worker, request).await?;
    if source.bucket == bucket && source.key == key && !replace {
        return Err(s3_error!(
            InvalidRequest,
            "This copy request is illegal because it is trying to copy an object to itself without changing the object's metadata, storage class, website redirect location or encryption attributes."
        ));
    }
    if source.commit.size > COPY_SOURCE_BYTES_MAX {
        return Err(s3_error!(
            InvalidRequest,
            "The specified copy source is larger than the maximum allowable size for a copy source: {COPY_SOURCE_BYTES_MAX}"
        ));
    }
    let mut commit = if replace {
        object_template(bucket, key, headers)?
    } else {
        ObjectCommit {
            bucket: bucket.to_owned(),
            key: key.to_owned(),
            ..source.commit.clone()
        }
    };
    commit.size = source.commit.size;
    commit.etag = source.commit.etag;
    commit.checksums.clone_from(&source.commit.checksums);
    commit.part_sizes.clear();
    commit.last_modified_ms = now_ms();
    let shard = worker.shard();
    let mut guard = None;
    let multipart = matches!(source.commit.etag, ETag::Multipart { .. });
    commit.body = match (&source.commit.body, &source.local) {
        (ObjectBody::Inline(data), _) => ObjectBody::Inline(data.clone()),
        // On this core: name the same bytes. A multipart source is copied
        // instead, as below, because its copy is one part with the MD5 of
        // its bytes as its ETag, as on AWS.
        (body, Some(_)) if !multipart => body.clone(),
        (ObjectBody::Extents(_), _) => {
            guard = Some(shard.begin_upload());
            // A whole-object checksum of the source is checked against the
            // bytes copied; a composite one cannot be, and the copy gets a
            // CRC64NVME instead.
            let whole = source
                .commit
                .checksums
                .iter()
                .find(|c| !c.composite)
                .cloned();
            let algorithm = whole
                .as_ref()
                .map_or(ChecksumAlgorithm::Crc64Nvme, |c| c.algorithm);
            let mut hasher = Hasher::new(algorithm);
            let size = source.commit.size;
            let (extents, md5) = copy_bytes(worker, &mut source, 0, size, &mut hasher).await?;
            let value = hasher.finish(algorithm);
            if whole.as_ref().is_some_and(|whole| whole.value != value) {
                return Err(S3Error::internal(format!(
                    "the copy source {}/{} does not match its stored checksum",
                    source.bucket, source.key
                )));
            }
            commit.etag = ETag::Md5(md5);
            commit.checksums = vec![Checksum {
                algorithm,
                value,
                composite: false,
            }];
            ObjectBody::Extents(extents)
        }
    };
    shard.commit(&commit, guard.as_ref()).await?;
    drop(guard);
    drop(source);
    let mut out = String::with_capacity(256);
    out.push_str(xml::XML_DECLARATION);
    out.push_str("<CopyObjectResult xmlns=\"");
    out.push_str(xml::S3_NAMESPACE);
    out.push_str("\">");
    element(&mut out, "ETag", &commit.etag.to_header_value());
    element(
        &mut out,
        "LastModified",
        &xml::timestamp(commit.last_modified_ms),
    );
    out.push_str("</CopyObjectResult>");
    Ok(Response::xml(out))
}

/// `x-amz-copy-source-range: bytes=first-last`, within an object of `size`
/// bytes; `None` when absent (the whole object).
fn copy_range(value: Option<&str>, size: u64) -> Result<Option<(u64, u64)>, S3Error> {
    let Some(value) = value else {
        return Ok(None);
    };
    let malformed = || {
        s3_error!(
            InvalidArgument,
            "The x-amz-copy-source-range value must be of the form bytes=first-last where first and last are the zero-based offsets of the first and last bytes to copy"
        )
        .with_extra("ArgumentName", "x-amz-copy-source-range")
        .with_extra("ArgumentValue", value)
    };
    let (first, last) = value
        .strip_prefix("bytes=")
        .and_then(|range| range.split_once('-'))
        .ok_or_else(malformed)?;
    let digits = |text: &str| !text.is_empty() && text.bytes().all(|byte| byte.is_ascii_digit());
    if !digits(first) || !digits(last) {
        return Err(malformed());
    }
    let first: u64 = first.parse().map_err(|_| malformed())?;
    let last: u64 = last.parse().map_err(|_| malformed())?;
    if first > last || last >= size {
        return Err(s3_error!(
            InvalidArgument,
            "Range specified is not valid for source object of size: {size}"
        )
        .with_extra("ArgumentName", "x-amz-copy-source-range")
        .with_extra("ArgumentValue", value));
    }
    Ok(Some((first, last + 1)))
}

pub async fn upload_part_copy(
    worker: &Rc<Worker>,
    request: &S3Request<'_>,
    part_number: u32,
    upload_id: &str,
) -> Result<Response, S3Error> {
    let (bucket, key) = object_names(worker, request)?;
    let _write = super::put::begin_write(worker, bucket).await?;
    let shard = worker.shard();
    let Some(spec) = shard.upload_checksum(bucket, key, upload_id) else {
        return Err(super::multipart::no_such_upload(upload_id));
    };
    let mut source = source_of(worker, request).await?;
    let range_header = request
        .head
        .headers
        .get("x-amz-copy-source-range")
        .map(|value| value.to_str().unwrap_or("\u{fffd}"));
    let (start, end) =
        copy_range(range_header, source.commit.size)?.unwrap_or((0, source.commit.size));
    if end - start > limits::PART_BYTES_MAX {
        return Err(s3_error!(
            EntityTooLarge,
            "Your proposed upload exceeds the maximum allowed size"
        )
        .with_extra("ProposedSize", (end - start).to_string())
        .with_extra("MaxSizeAllowed", limits::PART_BYTES_MAX.to_string()));
    }
    let guard = shard.begin_upload();
    let algorithm = spec.map_or(ChecksumAlgorithm::Crc64Nvme, |spec| spec.algorithm);
    let mut hasher = Hasher::new(algorithm);
    let (extents, md5) = copy_bytes(worker, &mut source, start, end, &mut hasher).await?;
    drop(source);
    let part_checksum = Checksum {
        algorithm,
        value: hasher.finish(algorithm),
        composite: false,
    };
    let part = UploadPart {
        upload_id: upload_id.to_owned(),
        part_number: u16::try_from(part_number).expect("the router checks part numbers"),
        size: end - start,
        md5,
        last_modified_ms: now_ms(),
        checksum: Some(part_checksum.clone()),
        extents,
    };
    let last_modified_ms = part.last_modified_ms;
    super::multipart::store_part(worker, part, &guard).await?;
    drop(guard);
    let mut out = String::with_capacity(256);
    out.push_str(xml::XML_DECLARATION);
    out.push_str("<CopyPartResult xmlns=\"");
    out.push_str(xml::S3_NAMESPACE);
    out.push_str("\">");
    element(
        &mut out,
        "ETag",
        &crate::storage::object::ETag::Md5(md5).to_header_value(),
    );
    element(&mut out, "LastModified", &xml::timestamp(last_modified_ms));
    element(
        &mut out,
        super::checksum::element_name(algorithm),
        &super::checksum::display_value(&part_checksum, 0),
    );
    out.push_str("</CopyPartResult>");
    Ok(Response::xml(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_ranges_follow_aws() {
        assert_eq!(copy_range(None, 10).unwrap(), None);
        assert_eq!(copy_range(Some("bytes=0-9"), 10).unwrap(), Some((0, 10)));
        assert_eq!(copy_range(Some("bytes=3-3"), 10).unwrap(), Some((3, 4)));
        for bad in [
            "bytes=0-10",
            "bytes=5-4",
            "bytes=-5",
            "bytes=5-",
            "0-5",
            "bytes=a-b",
            "bytes=1-2,3-4",
        ] {
            assert!(copy_range(Some(bad), 10).is_err(), "{bad}");
        }
    }
}
