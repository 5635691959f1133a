//! `DeleteObject`.
//!
//! AWS answers `204 No Content` whether or not the key existed, so a client
//! retrying a delete sees the same answer. A tombstone is written (and made
//! durable) only when there is a live object to delete.
//!
//! Reference: <https://docs.aws.amazon.com/AmazonS3/latest/API/API_DeleteObject.html>

use std::rc::Rc;

use http::StatusCode;

use super::put::object_names;
use super::{Response, S3Request};
use crate::error::S3Error;
use crate::server::worker::Worker;
use crate::storage::object::ObjectTombstone;

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
        .await
        .map_err(S3Error::internal)?;
    Ok(Response::new(StatusCode::NO_CONTENT))
}
