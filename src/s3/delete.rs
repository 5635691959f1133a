//! `DeleteObject` and `DeleteObjects`.
//!
//! AWS answers `204 No Content` whether or not the key existed, so a client
//! retrying a delete sees the same answer. A tombstone is written (and made
//! durable) only when there is a live object to delete.
//!
//! `DeleteObjects` takes up to 1000 keys in one XML body, which must carry
//! the integrity check the API requires (`Content-MD5`, or one of the
//! `x-amz-checksum-*` values the SDKs send instead). Its keys are spread
//! over the shards: each owning core deletes its share, all of a share at
//! once so that their tombstones share fsyncs, and the answer lists every
//! key as deleted (also a key that did not exist, as AWS does) or with its
//! own error.
//!
//! - <https://docs.aws.amazon.com/AmazonS3/latest/API/API_DeleteObject.html>
//! - <https://docs.aws.amazon.com/AmazonS3/latest/API/API_DeleteObjects.html>

use std::rc::Rc;

use http::StatusCode;

use super::put::{check_content_md5, now_ms, object_names};
use super::xml::{self, XmlEvent, element, malformed_xml};
use super::{Response, S3Request};
use crate::error::S3Error;
use crate::http::body_reader::BodyReader;
use crate::limits;
use crate::node::worker::Worker;
use crate::s3_error;
use crate::storage::object::ObjectTombstone;

/// Most keys in one `DeleteObjects` request, exactly as AWS.
pub const DELETE_OBJECTS_KEYS_MAX: usize = 1000;

pub async fn delete_object(
    worker: &Rc<Worker>,
    request: &S3Request<'_>,
) -> Result<Response, S3Error> {
    let (bucket, key) = object_names(worker, request)?;
    if !worker.catalog().buckets.contains_key(bucket) {
        return Err(super::bucket::no_such_bucket(bucket));
    }
    let deleted_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| {
            i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX)
        });
    worker
        .shard()
        .delete(&ObjectTombstone {
            bucket: bucket.to_owned(),
            key: key.to_owned(),
            deleted_ms,
        })
        .await?;
    Ok(Response::new(StatusCode::NO_CONTENT))
}

/// One `<Object>` of a `DeleteObjects` body.
#[derive(Debug, Default)]
pub(crate) struct Requested {
    pub(crate) key: Option<String>,
    pub(crate) version_id: Option<String>,
}

/// The keys and the `Quiet` flag of a `DeleteObjects` body (crate-visible
/// for the `xml_bodies` fuzz target).
pub(crate) fn parse_delete(body: &[u8]) -> Result<(Vec<Requested>, bool), S3Error> {
    let mut objects: Vec<Requested> = Vec::new();
    let mut quiet = false;
    xml::walk(body, "Delete", |event| {
        match event {
            XmlEvent::Open(path) if path == ["Object"] => {
                if objects.len() == DELETE_OBJECTS_KEYS_MAX {
                    return Err(malformed_xml());
                }
                objects.push(Requested::default());
            }
            XmlEvent::Leaf(path, text) if path == ["Quiet"] => {
                quiet = match text.trim() {
                    "true" => true,
                    "false" => false,
                    _ => return Err(malformed_xml()),
                };
            }
            XmlEvent::Leaf(path, text) if path.len() == 2 && path[0] == "Object" => {
                let object = objects.last_mut().expect("opened");
                match path[1].as_str() {
                    "Key" => object.key = Some(text),
                    "VersionId" => object.version_id = Some(text),
                    _ => {}
                }
            }
            _ => {}
        }
        Ok(())
    })?;
    if objects.is_empty() || objects.iter().any(|object| object.key.is_none()) {
        return Err(malformed_xml());
    }
    Ok((objects, quiet))
}

/// The integrity check `DeleteObjects` requires: `Content-MD5`, or an
/// `x-amz-checksum-*` header or trailer; whichever is sent must match.
fn check_integrity(
    headers: &http::HeaderMap,
    trailers: &[(String, String)],
    data: &[u8],
) -> Result<(), S3Error> {
    let checksummed = super::checksum::verify(headers, trailers, data)?;
    if check_content_md5(headers, data)? || checksummed {
        Ok(())
    } else {
        Err(s3_error!(
            InvalidRequest,
            "Missing required header for this request: Content-MD5"
        ))
    }
}

/// What happened to one key.
enum Outcome {
    Deleted,
    Failed { code: &'static str, message: String },
}

pub async fn delete_objects(
    worker: &Rc<Worker>,
    request: &S3Request<'_>,
    body: &mut BodyReader<'_>,
) -> Result<Response, S3Error> {
    let bucket = request
        .route
        .bucket
        .as_deref()
        .ok_or_else(|| s3_error!(InvalidBucketName, "The specified bucket is not valid."))?;
    if !worker.catalog().buckets.contains_key(bucket) {
        return Err(super::bucket::no_such_bucket(bucket));
    }
    let headers = &request.head.headers;
    let (_memory, data) = super::read_xml_body(worker, body).await?;
    check_integrity(headers, body.trailers(), &data)?;
    let (objects, quiet) = parse_delete(&data)?;

    let shard_count = worker.shard_count();
    let mut outcomes: Vec<Option<Outcome>> = (0..objects.len()).map(|_| None).collect();
    let mut by_shard: Vec<Vec<(usize, String)>> = vec![Vec::new(); shard_count];
    for (index, object) in objects.iter().enumerate() {
        let key = object.key.as_deref().expect("parsed");
        if key.is_empty() || key.len() > limits::KEY_BYTES_MAX {
            outcomes[index] = Some(Outcome::Failed {
                code: if key.is_empty() {
                    "InvalidArgument"
                } else {
                    "KeyTooLongError"
                },
                message: if key.is_empty() {
                    "The key must not be empty.".to_owned()
                } else {
                    "Your key is too long".to_owned()
                },
            });
        } else if object
            .version_id
            .as_deref()
            .is_some_and(|version| version != "null")
        {
            outcomes[index] = Some(Outcome::Failed {
                code: "NoSuchVersion",
                message: "The specified version does not exist.".to_owned(),
            });
        } else {
            by_shard[worker.owner_of(bucket, key)].push((index, key.to_owned()));
        }
    }
    let deleted_ms = now_ms();
    // Every owning core deletes its share at the same time.
    let calls: Vec<_> = by_shard
        .into_iter()
        .enumerate()
        .filter(|(_, keys)| !keys.is_empty())
        .map(|(shard, keys)| {
            let (indexes, keys): (Vec<usize>, Vec<String>) = keys.into_iter().unzip();
            let worker = Rc::clone(worker);
            let bucket = bucket.to_owned();
            glommio::spawn_local(async move {
                let reply = worker.delete_keys(shard, &bucket, keys, deleted_ms).await;
                (indexes, reply)
            })
        })
        .collect();
    for call in calls {
        let (indexes, reply) = call.await;
        let results = reply.map_err(|_| super::shutting_down())?;
        for (index, result) in indexes.into_iter().zip(results) {
            outcomes[index] = Some(match result {
                Ok(()) => Outcome::Deleted,
                Err(error) => {
                    tracing::error!(%error, "DeleteObjects could not delete a key");
                    Outcome::Failed {
                        code: "InternalError",
                        message: "We encountered an internal error. Please try again.".to_owned(),
                    }
                }
            });
        }
    }

    Ok(Response::xml(delete_result(&objects, outcomes, quiet)))
}

/// The `DeleteResult` document: every key in request order, as deleted
/// (unless `quiet`) or with its error.
fn delete_result(objects: &[Requested], outcomes: Vec<Option<Outcome>>, quiet: bool) -> String {
    let mut out = String::with_capacity(256 + objects.len() * 64);
    out.push_str(xml::XML_DECLARATION);
    out.push_str("<DeleteResult xmlns=\"");
    out.push_str(xml::S3_NAMESPACE);
    out.push_str("\">");
    for (object, outcome) in objects.iter().zip(outcomes) {
        let key = object.key.as_deref().expect("parsed");
        match outcome.expect("every key has an outcome") {
            Outcome::Deleted if quiet => {}
            Outcome::Deleted => {
                out.push_str("<Deleted>");
                element(&mut out, "Key", key);
                if let Some(version) = &object.version_id {
                    element(&mut out, "VersionId", version);
                }
                out.push_str("</Deleted>");
            }
            Outcome::Failed { code, message } => {
                out.push_str("<Error>");
                element(&mut out, "Key", key);
                if let Some(version) = &object.version_id {
                    element(&mut out, "VersionId", version);
                }
                element(&mut out, "Code", code);
                element(&mut out, "Message", &message);
                out.push_str("</Error>");
            }
        }
    }
    out.push_str("</DeleteResult>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delete_bodies_parse_and_refuse_garbage() {
        let (objects, quiet) = parse_delete(
            br#"<Delete xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Quiet>true</Quiet>
                <Object><Key> spaced </Key></Object><Object><Key>v</Key><VersionId>null</VersionId></Object>
            </Delete>"#,
        )
        .unwrap();
        assert!(quiet);
        assert_eq!(objects.len(), 2);
        assert_eq!(objects[0].key.as_deref(), Some(" spaced "));
        assert_eq!(objects[1].version_id.as_deref(), Some("null"));
        for body in [
            &b"<Delete/>"[..],
            b"<Delete><Object/></Delete>",
            b"<Delete><Quiet>maybe</Quiet><Object><Key>k</Key></Object></Delete>",
            b"<Other><Object><Key>k</Key></Object></Other>",
            b"",
        ] {
            assert!(parse_delete(body).is_err(), "{body:?}");
        }
        let at_limit = format!(
            "<Delete>{}</Delete>",
            "<Object><Key>k</Key></Object>".repeat(DELETE_OBJECTS_KEYS_MAX)
        );
        assert_eq!(
            parse_delete(at_limit.as_bytes()).unwrap().0.len(),
            DELETE_OBJECTS_KEYS_MAX
        );
        let past = format!(
            "<Delete>{}</Delete>",
            "<Object><Key>k</Key></Object>".repeat(DELETE_OBJECTS_KEYS_MAX + 1)
        );
        assert!(parse_delete(past.as_bytes()).is_err());
    }
}
