//! The payloads of the multipart records: an upload begins, a part is
//! stored, an upload ends.
//!
//! A multipart upload lives in the segments as records of its own, so that
//! it survives restarts exactly like an object: `UploadCreate` when
//! `CreateMultipartUpload` is answered, one `UploadPart` per stored part
//! (after the part's `Data` extents), and `UploadEnd` when the upload is
//! completed or aborted. Completion also writes the object's ordinary
//! `Commit` record, just before the `UploadEnd`, naming the parts' extents
//! where they are: the data is never copied.
//!
//! # Layout (all integers little-endian; `str16` as in `object`)
//!
//! ```text
//! UploadCreate
//!   u8      layout = 1
//!   str16   upload id
//!   i64     initiated_ms
//!   u8      checksum      0 = none, else the algorithm (as in ObjectCommit),
//!                         with 0x80 set for COMPOSITE (else FULL_OBJECT)
//!   …       the object-to-be as an ObjectCommit payload (size 0, no extents,
//!           ETag of zeros): bucket, key, system headers, user metadata
//!
//! UploadPart
//!   u8      layout = 1
//!   str16   upload id
//!   u16     part number (1..=10,000)
//!   u64     size
//!   [u8;16] MD5 of the part (its ETag)
//!   i64     last_modified_ms
//!   u8      checksum algorithm, 0 = none; then its digest
//!   u32     extent count, then count × extent (as in ObjectCommit)
//!
//! UploadEnd
//!   u8      layout = 1
//!   str16   upload id
//!   str16   bucket
//!   str16   key
//!   i64     ended_ms
//!   u8      outcome   1 = completed, 2 = aborted
//!   (completed) [u8;16] ETag digest | u16 part count
//! ```
//!
//! Decoding is written for untrusted bytes, like `object`'s: every length
//! is checked before use and the encoding is canonical.

use super::object::{
    self, CHECKSUM_COMPOSITE_BIT, Checksum, ChecksumAlgorithm, DecodeError, ETag, EXTENT_BYTES,
    EXTENT_COUNT_MAX, Extent, ObjectBody, ObjectCommit, Reader, error, push_name,
};
use crate::limits;

/// Longest upload id this server accepts in a record (it generates 32
/// characters).
pub const UPLOAD_ID_BYTES_MAX: usize = 128;

const LAYOUT: u8 = 1;
const OUTCOME_COMPLETED: u8 = 1;
const OUTCOME_ABORTED: u8 = 2;

/// The checksum an upload was created with (`x-amz-checksum-algorithm`
/// and `x-amz-checksum-type`): every part gets one of `algorithm`, and the
/// object one made of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChecksumSpec {
    pub algorithm: ChecksumAlgorithm,
    /// `COMPOSITE` (a checksum of the parts' checksums), else
    /// `FULL_OBJECT` (the CRC of the whole object, combined from the
    /// parts').
    pub composite: bool,
}

/// `CreateMultipartUpload`: the upload and the object it will make.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadCreate {
    pub upload_id: String,
    pub initiated_ms: i64,
    pub checksum: Option<ChecksumSpec>,
    /// The object's bucket, key, system headers and user metadata; its
    /// size, `ETag`, parts and body are filled in at completion.
    pub template: ObjectCommit,
}

/// `UploadPart` / `UploadPartCopy`: one stored part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadPart {
    pub upload_id: String,
    pub part_number: u16,
    pub size: u64,
    /// The part's `ETag`: the MD5 of its bytes.
    pub md5: [u8; 16],
    pub last_modified_ms: i64,
    /// The part's checksum, of the upload's algorithm.
    pub checksum: Option<Checksum>,
    pub extents: Vec<Extent>,
}

/// How an upload ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UploadOutcome {
    Completed { etag: ETag },
    Aborted,
}

/// `CompleteMultipartUpload` or `AbortMultipartUpload`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadEnd {
    pub upload_id: String,
    pub bucket: String,
    pub key: String,
    pub ended_ms: i64,
    pub outcome: UploadOutcome,
}

impl UploadCreate {
    #[must_use]
    pub fn encode(&self) -> Vec<u8> {
        assert_eq!(self.template.size, 0, "the template has no body yet");
        assert_eq!(self.template.body, ObjectBody::Extents(Vec::new()));
        let template = self.template.encode();
        let mut out = Vec::with_capacity(16 + self.upload_id.len() + template.len());
        out.push(LAYOUT);
        push_name(&mut out, &self.upload_id, UPLOAD_ID_BYTES_MAX);
        out.extend_from_slice(&self.initiated_ms.to_le_bytes());
        out.push(self.checksum.map_or(0, |spec| {
            spec.algorithm as u8
                | if spec.composite {
                    CHECKSUM_COMPOSITE_BIT
                } else {
                    0
                }
        }));
        out.extend_from_slice(&template);
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<UploadCreate, DecodeError> {
        let mut reader = Reader { bytes };
        layout(&mut reader)?;
        let upload_id = reader.name(UPLOAD_ID_BYTES_MAX, "upload id too long")?;
        let initiated_ms = reader.i64()?;
        let checksum = match reader.u8()? {
            0 => None,
            byte => Some(ChecksumSpec {
                algorithm: ChecksumAlgorithm::from_u8(byte & !CHECKSUM_COMPOSITE_BIT)
                    .ok_or(error("unknown checksum algorithm"))?,
                composite: byte & CHECKSUM_COMPOSITE_BIT != 0,
            }),
        };
        let template = ObjectCommit::decode(reader.bytes)?;
        if template.size != 0
            || template.body != ObjectBody::Extents(Vec::new())
            || !template.part_sizes.is_empty()
        {
            return Err(error("an upload's template has a body"));
        }
        Ok(UploadCreate {
            upload_id,
            initiated_ms,
            checksum,
            template,
        })
    }
}

impl UploadPart {
    #[must_use]
    pub fn encode(&self) -> Vec<u8> {
        assert!((1..=limits::PART_COUNT_MAX).contains(&u32::from(self.part_number)));
        assert!(self.extents.len() <= EXTENT_COUNT_MAX);
        assert_eq!(
            self.extents
                .iter()
                .map(|e| u64::from(e.data_len))
                .sum::<u64>(),
            self.size
        );
        let mut out =
            Vec::with_capacity(48 + self.upload_id.len() + self.extents.len() * EXTENT_BYTES);
        out.push(LAYOUT);
        push_name(&mut out, &self.upload_id, UPLOAD_ID_BYTES_MAX);
        out.extend_from_slice(&self.part_number.to_le_bytes());
        out.extend_from_slice(&self.size.to_le_bytes());
        out.extend_from_slice(&self.md5);
        out.extend_from_slice(&self.last_modified_ms.to_le_bytes());
        match &self.checksum {
            None => out.push(0),
            Some(checksum) => {
                assert!(!checksum.composite, "a part's checksum is of its bytes");
                assert_eq!(checksum.value.len(), checksum.algorithm.digest_len());
                out.push(checksum.algorithm as u8);
                out.extend_from_slice(&checksum.value);
            }
        }
        let count = u32::try_from(self.extents.len()).expect("at most EXTENT_COUNT_MAX");
        out.extend_from_slice(&count.to_le_bytes());
        for extent in &self.extents {
            assert!(object::extent_is_valid(extent));
            out.extend_from_slice(&extent.location.segment.to_le_bytes());
            out.extend_from_slice(&extent.location.offset.to_le_bytes());
            out.extend_from_slice(&extent.location.len.to_le_bytes());
            out.extend_from_slice(&extent.data_len.to_le_bytes());
        }
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<UploadPart, DecodeError> {
        let mut reader = Reader { bytes };
        layout(&mut reader)?;
        let upload_id = reader.name(UPLOAD_ID_BYTES_MAX, "upload id too long")?;
        let part_number = reader.u16()?;
        if !(1..=limits::PART_COUNT_MAX).contains(&u32::from(part_number)) {
            return Err(error("part number out of range"));
        }
        let size = reader.u64()?;
        if size > limits::PART_BYTES_MAX {
            return Err(error("part too large"));
        }
        let md5 = reader.array()?;
        let last_modified_ms = reader.i64()?;
        let checksum = match reader.u8()? {
            0 => None,
            byte => {
                let algorithm =
                    ChecksumAlgorithm::from_u8(byte).ok_or(error("unknown checksum algorithm"))?;
                Some(Checksum {
                    algorithm,
                    value: reader.take(algorithm.digest_len())?.to_vec(),
                    composite: false,
                })
            }
        };
        // The extents have the layout of a commit's body.
        let mut body = Vec::with_capacity(1 + reader.bytes.len());
        body.push(2);
        body.extend_from_slice(reader.bytes);
        let mut body_reader = Reader { bytes: &body };
        let ObjectBody::Extents(extents) = object::decode_body(&mut body_reader, size)? else {
            unreachable!("body kind 2 is extents");
        };
        body_reader.finish()?;
        Ok(UploadPart {
            upload_id,
            part_number,
            size,
            md5,
            last_modified_ms,
            checksum,
            extents,
        })
    }

    /// Segments the part's records are in, besides its own record's.
    pub fn extent_segments(&self) -> impl Iterator<Item = super::location::SegmentId> + '_ {
        self.extents.iter().map(|extent| extent.location.segment)
    }
}

impl UploadEnd {
    #[must_use]
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64 + self.upload_id.len() + self.key.len());
        out.push(LAYOUT);
        push_name(&mut out, &self.upload_id, UPLOAD_ID_BYTES_MAX);
        push_name(&mut out, &self.bucket, limits::BUCKET_NAME_BYTES_MAX);
        push_name(&mut out, &self.key, limits::KEY_BYTES_MAX);
        out.extend_from_slice(&self.ended_ms.to_le_bytes());
        match self.outcome {
            UploadOutcome::Completed {
                etag: ETag::Multipart { digest, part_count },
            } => {
                out.push(OUTCOME_COMPLETED);
                out.extend_from_slice(&digest);
                out.extend_from_slice(&part_count.to_le_bytes());
            }
            UploadOutcome::Completed { etag: ETag::Md5(_) } => {
                unreachable!("a completed upload has a multipart ETag")
            }
            UploadOutcome::Aborted => out.push(OUTCOME_ABORTED),
        }
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<UploadEnd, DecodeError> {
        let mut reader = Reader { bytes };
        layout(&mut reader)?;
        let upload_id = reader.name(UPLOAD_ID_BYTES_MAX, "upload id too long")?;
        let bucket = reader.name(limits::BUCKET_NAME_BYTES_MAX, "bucket name too long")?;
        let key = reader.name(limits::KEY_BYTES_MAX, "key too long")?;
        let ended_ms = reader.i64()?;
        let outcome = match reader.u8()? {
            OUTCOME_COMPLETED => {
                let digest = reader.array()?;
                let part_count = reader.u16()?;
                if part_count == 0 || u32::from(part_count) > limits::PART_COUNT_MAX {
                    return Err(error("part count out of range"));
                }
                UploadOutcome::Completed {
                    etag: ETag::Multipart { digest, part_count },
                }
            }
            OUTCOME_ABORTED => UploadOutcome::Aborted,
            _ => return Err(error("unknown upload outcome")),
        };
        reader.finish()?;
        Ok(UploadEnd {
            upload_id,
            bucket,
            key,
            ended_ms,
            outcome,
        })
    }
}

fn layout(reader: &mut Reader<'_>) -> Result<(), DecodeError> {
    if reader.u8()? == LAYOUT {
        Ok(())
    } else {
        Err(error("unknown payload layout"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::location::Location;
    use crate::storage::record;

    fn template() -> ObjectCommit {
        ObjectCommit {
            bucket: "bucket".into(),
            key: "a/key".into(),
            size: 0,
            etag: ETag::Md5([0; 16]),
            last_modified_ms: 0,
            content_type: Some("text/plain".into()),
            cache_control: None,
            content_disposition: None,
            content_encoding: None,
            content_language: Some("en".into()),
            expires: None,
            user_metadata: vec![("color".into(), "blue".into())],
            checksums: Vec::new(),
            part_sizes: Vec::new(),
            body: ObjectBody::Extents(Vec::new()),
        }
    }

    fn data_extent(segment: u32, offset: u64, data_len: u32) -> Extent {
        Extent {
            location: Location {
                segment,
                offset,
                len: record::record_len(data_len),
            },
            data_len,
        }
    }

    fn part() -> UploadPart {
        UploadPart {
            upload_id: "0123456789abcdef".into(),
            part_number: 10_000,
            size: 1024 * 1024 + 5,
            md5: [9; 16],
            last_modified_ms: 1_700_000_000_000,
            checksum: Some(Checksum {
                algorithm: ChecksumAlgorithm::Crc32c,
                value: vec![1, 2, 3, 4],
                composite: false,
            }),
            extents: vec![data_extent(3, 4096, 1024 * 1024), data_extent(4, 0, 5)],
        }
    }

    fn ends() -> [UploadEnd; 2] {
        [
            UploadEnd {
                upload_id: "id".into(),
                bucket: "b".into(),
                key: "k".into(),
                ended_ms: 5,
                outcome: UploadOutcome::Completed {
                    etag: ETag::Multipart {
                        digest: [1; 16],
                        part_count: 3,
                    },
                },
            },
            UploadEnd {
                upload_id: "id".into(),
                bucket: "b".into(),
                key: "k".into(),
                ended_ms: 5,
                outcome: UploadOutcome::Aborted,
            },
        ]
    }

    #[test]
    fn payloads_round_trip() {
        let create = UploadCreate {
            upload_id: "abc".into(),
            initiated_ms: 42,
            checksum: None,
            template: template(),
        };
        assert_eq!(UploadCreate::decode(&create.encode()).unwrap(), create);
        for composite in [false, true] {
            let with_checksum = UploadCreate {
                checksum: Some(ChecksumSpec {
                    algorithm: ChecksumAlgorithm::Sha256,
                    composite,
                }),
                ..create.clone()
            };
            assert_eq!(
                UploadCreate::decode(&with_checksum.encode()).unwrap(),
                with_checksum
            );
        }
        assert_eq!(UploadPart::decode(&part().encode()).unwrap(), part());
        let empty = UploadPart {
            size: 0,
            extents: Vec::new(),
            part_number: 1,
            checksum: None,
            ..part()
        };
        assert_eq!(UploadPart::decode(&empty.encode()).unwrap(), empty);
        for end in ends() {
            assert_eq!(UploadEnd::decode(&end.encode()).unwrap(), end);
        }
    }

    #[test]
    fn every_truncation_and_extension_is_rejected() {
        let create = UploadCreate {
            upload_id: "abc".into(),
            initiated_ms: 42,
            checksum: None,
            template: template(),
        };
        let [completed, aborted] = ends();
        let payloads: [(&str, Vec<u8>); 4] = [
            ("create", create.encode()),
            ("part", part().encode()),
            ("completed", completed.encode()),
            ("aborted", aborted.encode()),
        ];
        for (name, bytes) in payloads {
            for cut in 0..bytes.len() {
                let short = &bytes[..cut];
                let accepted = match name {
                    "create" => UploadCreate::decode(short).is_ok(),
                    "part" => UploadPart::decode(short).is_ok(),
                    _ => UploadEnd::decode(short).is_ok(),
                };
                assert!(!accepted, "{name} cut at {cut} decoded");
            }
            let mut long = bytes.clone();
            long.push(0);
            let accepted = match name {
                "create" => UploadCreate::decode(&long).is_ok(),
                "part" => UploadPart::decode(&long).is_ok(),
                _ => UploadEnd::decode(&long).is_ok(),
            };
            assert!(!accepted, "{name} with a trailing byte decoded");
        }
    }

    #[test]
    fn inconsistent_parts_are_rejected() {
        let mut bytes = part().encode();
        // The size field (after layout, id, part number) no longer matches
        // the extents.
        let size_at = 1 + 2 + "0123456789abcdef".len() + 2;
        bytes[size_at] ^= 1;
        assert!(UploadPart::decode(&bytes).is_err());
        let mut bytes = part().encode();
        let number_at = 1 + 2 + "0123456789abcdef".len();
        bytes[number_at..number_at + 2].copy_from_slice(&0_u16.to_le_bytes());
        assert!(UploadPart::decode(&bytes).is_err());
        bytes[number_at..number_at + 2].copy_from_slice(&10_001_u16.to_le_bytes());
        assert!(UploadPart::decode(&bytes).is_err());
    }
}
