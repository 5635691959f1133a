//! `Worker`: everything one core owns, and the typed calls to the others.
//!
//! One `Worker` per executor, created on that executor and never shared with
//! another thread: its interior state is `Cell`/`RefCell`, and other cores
//! reach it only through the mesh (see [`mesh`](super::mesh)). Connections
//! accepted by this core hold an `Rc<Worker>`.
//!
//! A handler never builds a mesh message: it calls a method here that says
//! what it wants ("this core's share of a listing", "delete these keys on
//! their owner", "a piece of a copy source"), and the method asks the core
//! concerned, itself included, and returns its typed answer.
//!
//! The bucket catalog: the worker of `CATALOG_SHARD` owns the authoritative
//! copy and is the only one that changes it; a change is made durable first
//! (`Catalog::store`), then installed on every core, and only then
//! acknowledged to the client. So once `CreateBucket` has answered 200, every
//! core knows the bucket, and a request that lands on any other core right
//! after sees it.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;

use super::mesh::{BucketChange, BucketDeleteCheck, Mesh, Reply, Request};
use super::metrics::CoreMetrics;
use super::owner::{SourceHead, SourcePiece, SourceRead};
use super::sharding::CATALOG_SHARD;
use crate::auth::Owner;
use crate::auth::{CredentialStore, SigningKeyCache};
use crate::config::Config;
use crate::http::response::DateCache;
use crate::limits;
use crate::storage::catalog::{BucketInfo, Catalog, CatalogError};
use crate::storage::shard::Shard;
use crate::storage::shard::listing::{ListPage, ListQuery};
use crate::storage::shard::uploads::{UploadListed, UploadQuery};

pub use super::mesh::MeshClosed;

/// What runs a connection that another core handed to this one: the
/// server's connection loop, installed at start
/// ([`Worker::set_connection_handler`]). It gets the socket and the bytes
/// already read from it, and answers past the connection limit itself.
pub type ConnectionHandler = Rc<dyn Fn(glommio::net::TcpStream, Vec<u8>)>;

/// What every core gets from the main thread at start.
pub struct SharedSetup {
    pub config: Arc<Config>,
    pub credentials: Arc<CredentialStore>,
    pub owner: Owner,
    pub catalog: Arc<Catalog>,
    /// A random prefix that makes request ids unique across restarts.
    pub request_id_prefix: u32,
    /// Client connections each core holds at most: the configured limit,
    /// lowered to what the open-files limit allows (`runtime`).
    pub connections_per_core_max: usize,
}

pub struct Worker {
    pub config: Arc<Config>,
    pub credentials: Arc<CredentialStore>,
    pub owner: Owner,
    pub mesh: Rc<Mesh>,
    /// See [`ConnectionHandler`].
    connection_handler: RefCell<Option<ConnectionHandler>>,
    /// This core's object storage; set once recovered, before any
    /// connection is served.
    shard: RefCell<Option<Rc<Shard>>>,
    pub metrics: RefCell<CoreMetrics>,
    pub signing_keys: RefCell<SigningKeyCache>,
    pub dates: RefCell<DateCache>,
    /// This core's copy of the catalog; replaced whole by `InstallCatalog`.
    catalog: RefCell<Arc<Catalog>>,
    /// Serializes catalog changes on the catalog shard.
    catalog_lock: glommio::sync::Semaphore,
    /// Set when writing the catalog failed: this shard then refuses changes
    /// until it restarts and re-reads the catalog (fail-stop, see STYLE.md).
    catalog_failed: Cell<bool>,
    data_dir: PathBuf,
    open_connections: Cell<usize>,
    connections_max: usize,
    /// Writes in progress on this core, per bucket (see [`BucketWrite`]).
    bucket_writes: RefCell<HashMap<String, usize>>,
    /// Buckets whose deletion is being decided: writes to them wait.
    buckets_deleting: RefCell<HashSet<String>>,
    /// This core's budget of request-body bytes held in memory
    /// (`body_bytes_in_flight_per_core_max`).
    body_bytes: glommio::sync::Semaphore,
    request_id_prefix: u32,
    request_count: Cell<u64>,
    stopping: Cell<bool>,
}

impl Worker {
    #[must_use]
    pub fn new(setup: &SharedSetup, mesh: Rc<Mesh>) -> Worker {
        Worker {
            config: setup.config.clone(),
            credentials: setup.credentials.clone(),
            owner: setup.owner.clone(),
            mesh,
            connection_handler: RefCell::new(None),
            shard: RefCell::new(None),
            metrics: RefCell::new(CoreMetrics::default()),
            signing_keys: RefCell::new(SigningKeyCache::default()),
            dates: RefCell::new(DateCache::default()),
            catalog: RefCell::new(setup.catalog.clone()),
            catalog_lock: glommio::sync::Semaphore::new(1),
            catalog_failed: Cell::new(false),
            data_dir: setup.config.data_dir.clone(),
            open_connections: Cell::new(0),
            connections_max: setup.connections_per_core_max,
            bucket_writes: RefCell::new(HashMap::new()),
            buckets_deleting: RefCell::new(HashSet::new()),
            body_bytes: glommio::sync::Semaphore::new(
                setup.config.body_bytes_in_flight_per_core_max,
            ),
            request_id_prefix: setup.request_id_prefix,
            request_count: Cell::new(0),
            stopping: Cell::new(false),
        }
    }

    #[must_use]
    pub fn shard_id(&self) -> usize {
        self.mesh.shard_id()
    }

    /// How many shards (cores) there are.
    #[must_use]
    pub fn shard_count(&self) -> usize {
        self.mesh.shard_count()
    }

    /// The shard that owns `key` of `bucket`.
    #[must_use]
    pub fn owner_of(&self, bucket: &str, key: &str) -> usize {
        super::sharding::shard_for(bucket, key, self.shard_count())
    }

    /// Install what runs the connections other cores hand to this one.
    pub fn set_connection_handler(&self, handler: ConnectionHandler) {
        *self.connection_handler.borrow_mut() = Some(handler);
    }

    pub fn set_shard(&self, shard: Rc<Shard>) {
        *self.shard.borrow_mut() = Some(shard);
    }

    /// This core's object storage.
    #[must_use]
    pub fn shard(&self) -> Rc<Shard> {
        self.shard
            .borrow()
            .clone()
            .expect("cores serve only once their shard is open")
    }

    /// Begin a write into `bucket` (an object, a part, an upload, a copy's
    /// destination): `None` if the bucket does not exist. While the
    /// returned guard lives, `DeleteBucket` is refused with
    /// `OperationAborted`; while a `DeleteBucket` is being decided, this
    /// waits for its outcome. So no write is acknowledged into a bucket
    /// that is deleted meanwhile (it would come back with the bucket's
    /// name if the bucket were created again).
    pub async fn begin_bucket_write(self: &Rc<Self>, bucket: &str) -> Option<BucketWrite> {
        while self.buckets_deleting.borrow().contains(bucket) {
            glommio::timer::sleep(std::time::Duration::from_millis(1)).await;
        }
        if !self.catalog().buckets.contains_key(bucket) {
            return None;
        }
        *self
            .bucket_writes
            .borrow_mut()
            .entry(bucket.to_owned())
            .or_insert(0) += 1;
        Some(BucketWrite {
            worker: Rc::clone(self),
            bucket: bucket.to_owned(),
        })
    }

    /// Reserve `bytes` of this core's budget for request bodies held in
    /// memory, waiting while other requests hold it; the reservation ends
    /// when the permit is dropped. Called before the body is read, so a
    /// client that has to wait is held back by TCP flow control.
    pub async fn reserve_body_bytes(&self, bytes: u64) -> glommio::sync::Permit<'_> {
        let bytes = bytes.clamp(1, self.config.body_bytes_in_flight_per_core_max);
        self.body_bytes
            .acquire_permit(bytes)
            .await
            .expect("the body budget semaphore is never closed")
    }

    /// This core's current copy of the bucket catalog.
    #[must_use]
    pub fn catalog(&self) -> Arc<Catalog> {
        self.catalog.borrow().clone()
    }

    /// A request id unique within this process and, thanks to the random
    /// prefix, across restarts: 8 hex digits of prefix, 2 of core, 10 of
    /// counter, as upper-case hex like AWS's.
    #[must_use]
    pub fn next_request_id(&self) -> String {
        let count = self.request_count.get();
        self.request_count.set(count + 1);
        format!(
            "{:08X}{:02X}{:010X}",
            self.request_id_prefix,
            self.shard_id() & 0xff,
            count & 0xff_ffff_ffff
        )
    }

    /// Try to take a connection slot; `false` when the core is at its limit.
    pub fn try_open_connection(&self) -> bool {
        let open = self.open_connections.get();
        if open >= self.connections_max {
            self.metrics.borrow_mut().connection_refused();
            return false;
        }
        self.open_connections.set(open + 1);
        self.metrics.borrow_mut().connection_opened();
        true
    }

    pub fn close_connection(&self) {
        self.open_connections.set(self.open_connections.get() - 1);
        self.metrics.borrow_mut().connection_closed();
    }

    #[must_use]
    pub fn open_connections(&self) -> usize {
        self.open_connections.get()
    }

    pub fn begin_stop(&self) {
        self.stopping.set(true);
    }

    #[must_use]
    pub fn is_stopping(&self) -> bool {
        self.stopping.get()
    }

    /// Create a bucket: durable in the catalog, and known on every core,
    /// once this returns `Created`.
    pub async fn create_bucket(
        self: &Rc<Self>,
        name: &str,
        region: &str,
        created_ms: i64,
    ) -> BucketChange {
        self.change_bucket(Request::CreateBucket {
            name: name.to_owned(),
            region: region.to_owned(),
            created_ms,
        })
        .await
    }

    /// Delete a bucket if it is empty and no write into it is in progress.
    pub async fn delete_bucket(self: &Rc<Self>, name: &str) -> BucketChange {
        self.change_bucket(Request::DeleteBucket {
            name: name.to_owned(),
        })
        .await
    }

    /// Ask the catalog shard to apply a bucket change.
    async fn change_bucket(self: &Rc<Self>, request: Request) -> BucketChange {
        match self.mesh.call(self, CATALOG_SHARD, request).await {
            Ok(Reply::Bucket(change)) => change,
            Ok(other) => unreachable!("bucket change answered with {other:?}"),
            Err(_) => BucketChange::Failed,
        }
    }

    /// Shard `core`'s next entries of a listing.
    pub async fn list_page(
        self: &Rc<Self>,
        core: usize,
        query: ListQuery,
    ) -> Result<ListPage, MeshClosed> {
        match self
            .mesh
            .call(self, core, Request::ListPage(Box::new(query)))
            .await?
        {
            Reply::ListPage(page) => Ok(page),
            other => unreachable!("ListPage answered {other:?}"),
        }
    }

    /// Every shard's first entries of a listing, in shard order (asked at
    /// once).
    pub async fn list_pages(
        self: &Rc<Self>,
        query: &ListQuery,
    ) -> Vec<Result<ListPage, MeshClosed>> {
        self.mesh
            .call_all(self, || Request::ListPage(Box::new(query.clone())))
            .await
            .into_iter()
            .map(|reply| match reply? {
                Reply::ListPage(page) => Ok(page),
                other => unreachable!("ListPage answered {other:?}"),
            })
            .collect()
    }

    /// The uploads of a `ListMultipartUploads` page, from every shard.
    pub async fn list_uploads(
        self: &Rc<Self>,
        query: &UploadQuery,
    ) -> Result<Vec<UploadListed>, MeshClosed> {
        let mut all = Vec::new();
        for reply in self
            .mesh
            .call_all(self, || Request::ListUploads(Box::new(query.clone())))
            .await
        {
            match reply? {
                Reply::Uploads(entries) => all.extend(entries),
                other => unreachable!("ListUploads answered {other:?}"),
            }
        }
        Ok(all)
    }

    /// Delete `keys` of `bucket` on shard `core`, which owns them; one
    /// result per key, in order.
    pub async fn delete_keys(
        self: &Rc<Self>,
        core: usize,
        bucket: &str,
        keys: Vec<String>,
        deleted_ms: i64,
    ) -> Result<Vec<Result<(), String>>, MeshClosed> {
        let request = Request::DeleteKeys {
            bucket: bucket.to_owned(),
            keys,
            deleted_ms,
        };
        match self.mesh.call(self, core, request).await? {
            Reply::Deleted(results) => Ok(results),
            other => unreachable!("DeleteKeys answered {other:?}"),
        }
    }

    /// The live version of a copy source, from shard `core` that owns it.
    pub async fn source_head(
        self: &Rc<Self>,
        core: usize,
        bucket: &str,
        key: &str,
    ) -> Result<SourceHead, MeshClosed> {
        let request = Request::SourceHead {
            bucket: bucket.to_owned(),
            key: key.to_owned(),
        };
        match self.mesh.call(self, core, request).await? {
            Reply::SourceHead(found) => Ok(found),
            other => unreachable!("SourceHead answered {other:?}"),
        }
    }

    /// A piece of a copy source, from shard `core` that owns it.
    pub async fn source_read(
        self: &Rc<Self>,
        core: usize,
        piece: SourcePiece,
    ) -> Result<SourceRead, MeshClosed> {
        match self
            .mesh
            .call(self, core, Request::SourceRead(Box::new(piece)))
            .await?
        {
            Reply::SourceRead(read) => Ok(read),
            other => unreachable!("SourceRead answered {other:?}"),
        }
    }

    /// Move a connection to shard `core`: its socket (a duplicate) and the
    /// bytes already read from it. `false` if that core is stopping.
    pub async fn hand_off_connection(
        self: &Rc<Self>,
        core: usize,
        fd: std::os::fd::OwnedFd,
        buffered: Vec<u8>,
    ) -> bool {
        self.mesh
            .call(self, core, Request::AdoptConnection { fd, buffered })
            .await
            .is_ok()
    }

    /// Every core's counters.
    pub async fn metrics_everywhere(
        self: &Rc<Self>,
    ) -> Vec<Result<super::metrics::MetricsSnapshot, MeshClosed>> {
        self.mesh
            .call_all(self, || Request::Metrics)
            .await
            .into_iter()
            .map(|reply| match reply? {
                Reply::Metrics(snapshot) => Ok(*snapshot),
                other => unreachable!("Metrics answered {other:?}"),
            })
            .collect()
    }

    /// Every core's health: why its storage takes no writes, if it does
    /// not (`Ok(None)` when it is healthy).
    pub async fn health_everywhere(self: &Rc<Self>) -> Vec<Result<Option<String>, MeshClosed>> {
        self.mesh
            .call_all(self, || Request::Ping)
            .await
            .into_iter()
            .map(|reply| match reply? {
                Reply::Health(failure) => Ok(failure),
                other => unreachable!("Ping answered {other:?}"),
            })
            .collect()
    }

    async fn apply_bucket_change(self: &Rc<Self>, request: Request) -> BucketChange {
        assert_eq!(self.shard_id(), CATALOG_SHARD);
        let _permit = self
            .catalog_lock
            .acquire_permit(1)
            .await
            .expect("the catalog semaphore is never closed");
        if self.catalog_failed.get() {
            return BucketChange::Failed;
        }
        let current = self.catalog();
        let mut next = (*current).clone();
        let request_name = match &request {
            Request::DeleteBucket { name } => Some(name.clone()),
            _ => None,
        };
        let outcome = match request {
            Request::CreateBucket {
                name,
                region,
                created_ms,
            } => {
                if next.buckets.contains_key(&name) {
                    return BucketChange::AlreadyOwned;
                }
                if next.buckets.len() >= limits::BUCKET_COUNT_MAX {
                    return BucketChange::TooManyBuckets;
                }
                next.buckets.insert(name, BucketInfo { region, created_ms });
                BucketChange::Created
            }
            Request::DeleteBucket { name } => {
                if !next.buckets.contains_key(&name) {
                    return BucketChange::NoSuchBucket;
                }
                let verdict = self.begin_bucket_delete(&name).await;
                if verdict != BucketChange::Deleted {
                    self.end_bucket_delete(&name).await;
                    return verdict;
                }
                next.buckets.remove(&name);
                BucketChange::Deleted
            }
            other => unreachable!("not a bucket change: {other:?}"),
        };
        let deleting = match (&outcome, &request_name) {
            (BucketChange::Deleted, Some(name)) => Some(name.clone()),
            _ => None,
        };
        next.generation = current.generation + 1;
        if let Err(error) = next.store(&self.data_dir).await {
            if let Some(name) = &deleting {
                self.end_bucket_delete(name).await;
            }
            return match error {
                // Nothing changed: the change may be asked again.
                CatalogError::NotStored(cause) if crate::storage::fs::is_out_of_space(&cause) => {
                    tracing::warn!(%cause, "the bucket catalog could not be written: the disk is full");
                    BucketChange::NoSpace
                }
                CatalogError::NotStored(cause) => {
                    tracing::error!(%cause, "the bucket catalog could not be written; the change was not made");
                    BucketChange::Failed
                }
                error => {
                    tracing::error!(%error, "writing the bucket catalog failed after its rename; refusing bucket changes until restart");
                    self.catalog_failed.set(true);
                    BucketChange::Failed
                }
            };
        }
        let next = Arc::new(next);
        for reply in self
            .mesh
            .call_all(self, || Request::InstallCatalog(next.clone()))
            .await
        {
            if reply.is_err() {
                // A core that is stopping no longer serves requests, so it
                // cannot answer from an old catalog; the change is durable.
                tracing::debug!("a stopping core missed a catalog update");
            }
        }
        if let Some(name) = &deleting {
            // Every core has the catalog without the bucket: the writes
            // held back find it gone.
            self.end_bucket_delete(name).await;
        }
        outcome
    }

    /// Ask every core to hold new writes to `name` back and say whether it
    /// is empty: `Deleted` if every core is, else why not.
    async fn begin_bucket_delete(self: &Rc<Self>, name: &str) -> BucketChange {
        // The writes go on (or find the bucket gone) once the decision is
        // made and durable.
        let replies = self
            .mesh
            .call_all(self, || Request::BeginBucketDelete {
                name: name.to_owned(),
            })
            .await;
        let (mut failed, mut in_use, mut not_empty) = (false, false, false);
        for reply in replies {
            match reply {
                Ok(Reply::BucketDelete(BucketDeleteCheck::Empty)) => {}
                Ok(Reply::BucketDelete(BucketDeleteCheck::NotEmpty)) => not_empty = true,
                Ok(Reply::BucketDelete(BucketDeleteCheck::InUse)) => in_use = true,
                _ => failed = true,
            }
        }
        if failed {
            BucketChange::Failed
        } else if in_use {
            BucketChange::InUse
        } else if not_empty {
            BucketChange::NotEmpty
        } else {
            BucketChange::Deleted
        }
    }

    /// Let the writes a `DeleteBucket` held back go on, on every core.
    async fn end_bucket_delete(self: &Rc<Self>, name: &str) {
        for reply in self
            .mesh
            .call_all(self, || Request::EndBucketDelete {
                name: name.to_owned(),
            })
            .await
        {
            if reply.is_err() {
                tracing::debug!("a stopping core missed the end of a bucket deletion");
            }
        }
    }
}

impl super::mesh::Handler for Worker {
    fn handle(
        self: Rc<Self>,
        _from: usize,
        request: Request,
    ) -> super::mesh::LocalBoxFuture<Reply> {
        Box::pin(async move {
            match request {
                Request::Ping => Reply::Health(self.shard().write_failure()),
                Request::Metrics => {
                    let mut snapshot = self.metrics.borrow().snapshot();
                    let shard = self.shard();
                    snapshot.segment_bytes = shard.segment_bytes();
                    snapshot.writes_stopped = shard.write_failure().is_some();
                    snapshot.storage_full = !shard.has_room_for_data();
                    snapshot.compaction = shard.compaction_stats();
                    snapshot.scrub = shard.scrub_stats();
                    Reply::Metrics(Box::new(snapshot))
                }
                Request::InstallCatalog(catalog) => {
                    let newer = catalog.generation > self.catalog.borrow().generation;
                    if newer {
                        *self.catalog.borrow_mut() = catalog;
                    }
                    Reply::Done
                }
                Request::BeginBucketDelete { name } => {
                    let in_use = self.bucket_writes.borrow().contains_key(&name);
                    Reply::BucketDelete(if in_use {
                        BucketDeleteCheck::InUse
                    } else {
                        self.buckets_deleting.borrow_mut().insert(name.clone());
                        if self.shard().bucket_is_empty(&name) {
                            BucketDeleteCheck::Empty
                        } else {
                            BucketDeleteCheck::NotEmpty
                        }
                    })
                }
                Request::EndBucketDelete { name } => {
                    self.buckets_deleting.borrow_mut().remove(&name);
                    Reply::Done
                }
                Request::ListPage(query) => Reply::ListPage(self.shard().list(&query)),
                Request::DeleteKeys {
                    bucket,
                    keys,
                    deleted_ms,
                } => Reply::Deleted(
                    super::owner::delete_keys(self.shard(), bucket, keys, deleted_ms).await,
                ),
                Request::SourceHead { bucket, key } => {
                    Reply::SourceHead(super::owner::source_head(&self.shard(), &bucket, &key).await)
                }
                Request::SourceRead(piece) => {
                    Reply::SourceRead(super::owner::source_read(&self.shard(), &piece).await)
                }
                Request::ListUploads(query) => Reply::Uploads(self.shard().list_uploads(&query)),
                Request::AdoptConnection { fd, buffered } => {
                    let stream = {
                        use std::os::fd::{FromRawFd as _, IntoRawFd as _};
                        // SAFETY: the fd is a connected TCP socket that the
                        // sending core duplicated for this core alone;
                        // ownership moves into the stream.
                        unsafe { glommio::net::TcpStream::from_raw_fd(fd.into_raw_fd()) }
                    };
                    let handler = self
                        .connection_handler
                        .borrow()
                        .clone()
                        .expect("the server installs a connection handler at start");
                    handler(stream, buffered);
                    Reply::Done
                }
                request @ (Request::CreateBucket { .. } | Request::DeleteBucket { .. }) => {
                    Reply::Bucket(self.apply_bucket_change(request).await)
                }
            }
        })
    }
}

/// A write in progress into a bucket, on this core (see
/// [`Worker::begin_bucket_write`]).
pub struct BucketWrite {
    worker: Rc<Worker>,
    bucket: String,
}

impl Drop for BucketWrite {
    fn drop(&mut self) {
        let mut writes = self.worker.bucket_writes.borrow_mut();
        let count = writes.get_mut(&self.bucket).expect("counted");
        *count -= 1;
        if *count == 0 {
            writes.remove(&self.bucket);
        }
    }
}
