//! Typed messages between cores: the only way cores talk (DESIGN.md,
//! principle 1).
//!
//! Every core is joined to a full mesh of bounded single-producer,
//! single-consumer channels, one per ordered pair of cores (glommio's
//! `channel_mesh`). A channel is bounded by `limits::MESH_CHANNEL_CAPACITY`,
//! so a slow core pushes back on its senders instead of growing a queue.
//! glommio's channels are used rather than crossbeam's because a receiving
//! executor must sleep in `io_uring` and be woken by the sender's eventfd; a
//! crossbeam receive would block the whole core. (crossbeam carries the
//! messages between the executors and the main thread, which is a plain
//! thread: see `runtime`.)
//!
//! On top of the channels, [`Mesh::call`] is a request/reply call: the
//! request carries an id, the receiving core runs the handler as a task of
//! its own and sends a [`Message::Reply`] with the same id back, and the
//! caller's pending entry is completed. A call to the caller's own core runs
//! the handler directly, without a channel.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;

use glommio::channels::channel_mesh::{Receivers, Senders};
use glommio::channels::local_channel::{self, LocalReceiver, LocalSender};

use super::metrics::MetricsSnapshot;
use super::owner::{SourceHead, SourcePiece, SourceRead};
use crate::storage::catalog::Catalog;
use crate::storage::shard::listing::{ListPage, ListQuery};
use crate::storage::shard::uploads::{UploadListed, UploadQuery};

/// What a core asks another core to do.
#[derive(Debug)]
pub enum Request {
    /// Readiness probe: answered with [`Reply::Health`] by a core that
    /// runs.
    Ping,
    /// The sender wants this core's counters.
    Metrics,
    /// To the catalog shard: create a bucket.
    CreateBucket {
        name: String,
        region: String,
        created_ms: i64,
    },
    /// To the catalog shard: delete a bucket.
    DeleteBucket { name: String },
    /// From the catalog shard: a new durable version of the catalog.
    InstallCatalog(Arc<Catalog>),
    /// From the catalog shard, first step of a `DeleteBucket`: unless a
    /// write to the bucket is in progress here, hold new ones back and say
    /// whether this shard holds objects or uploads of it.
    BeginBucketDelete { name: String },
    /// From the catalog shard, last step of a `DeleteBucket` (done or
    /// refused): let the writes held back go on.
    EndBucketDelete { name: String },
    /// This core's next entries of a listing (`storage::shard::listing`).
    ListPage(Box<ListQuery>),
    /// Delete these keys of a bucket (`DeleteObjects`, this core's share).
    DeleteKeys {
        bucket: String,
        keys: Vec<String>,
        deleted_ms: i64,
    },
    /// The live version of a copy source this core owns: its seq, commit
    /// location and commit.
    SourceHead { bucket: String, key: String },
    /// One piece of a copy source's extent, if its live version's commit
    /// is still at `location`.
    SourceRead(Box<SourcePiece>),
    /// This core's uploads of a `ListMultipartUploads` page.
    ListUploads(Box<UploadQuery>),
    /// A connection whose next request is for an object this core owns:
    /// its socket (a `dup` of the accepting core's) and the bytes already
    /// read from it, starting with that request's head (DESIGN.md,
    /// principle 3).
    AdoptConnection {
        fd: std::os::fd::OwnedFd,
        buffered: Vec<u8>,
    },
}

/// The outcome of a bucket change on the catalog shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BucketChange {
    Created,
    AlreadyOwned,
    Deleted,
    NoSuchBucket,
    TooManyBuckets,
    NotEmpty,
    /// A write to the bucket was in progress on some core.
    InUse,
    /// The disk is full: the catalog could not be written (nothing
    /// changed).
    NoSpace,
    /// Writing the catalog failed; the shard refuses changes until restart.
    Failed,
}

/// What one core found when a `DeleteBucket` began.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BucketDeleteCheck {
    /// No objects, no uploads, no write in progress; new writes held back.
    Empty,
    NotEmpty,
    /// A write to the bucket is in progress here.
    InUse,
}

/// A core's answer to a [`Request`].
#[derive(Debug)]
pub enum Reply {
    Done,
    /// This core's answer to [`Request::BeginBucketDelete`].
    BucketDelete(BucketDeleteCheck),
    /// Why this core's storage takes no writes, if it does not (a failed
    /// segment write or fdatasync); `None` when it is healthy.
    Health(Option<String>),
    Bool(bool),
    Metrics(Box<MetricsSnapshot>),
    Bucket(BucketChange),
    ListPage(ListPage),
    Uploads(Vec<UploadListed>),
    SourceHead(SourceHead),
    SourceRead(SourceRead),
    /// One result per key of a `DeleteKeys`, in order.
    Deleted(Vec<Result<(), String>>),
}

/// What travels on a mesh channel.
#[derive(Debug)]
pub enum Message {
    Request { id: u64, request: Request },
    Reply { id: u64, reply: Reply },
}

/// The mesh could not deliver a call: the other core is stopping.
#[derive(Debug)]
pub struct MeshClosed;

/// A boxed, core-local future: handlers may call back into the mesh (the
/// catalog shard installs a change on every core, itself included), so the
/// future type is recursive and must be boxed.
pub type LocalBoxFuture<T> = std::pin::Pin<Box<dyn Future<Output = T>>>;

/// Something that can answer requests on this core.
pub trait Handler: 'static {
    fn handle(self: Rc<Self>, from: usize, request: Request) -> LocalBoxFuture<Reply>;
}

/// This core's end of the mesh.
pub struct Mesh {
    shard_id: usize,
    shard_count: usize,
    senders: Option<Senders<Message>>,
    next_id: Cell<u64>,
    pending: RefCell<HashMap<u64, (usize, LocalSender<Reply>)>>,
}

impl Mesh {
    /// Join the mesh (every core must call this, or none gets past it) and
    /// start one receive task per peer.
    pub async fn join<H: Handler>(
        builder: glommio::channels::channel_mesh::MeshBuilder<
            Message,
            glommio::channels::channel_mesh::Full,
        >,
        shard_count: usize,
        handler_for_self: impl FnOnce(Rc<Mesh>) -> Rc<H>,
    ) -> (Rc<Mesh>, Rc<H>) {
        let (senders, receivers) = if shard_count > 1 {
            let (senders, receivers) = builder
                .join()
                .await
                .expect("joining the mesh of a fixed set of executors cannot fail");
            (Some(senders), Some(receivers))
        } else {
            (None, None)
        };
        let shard_id = senders.as_ref().map_or(0, Senders::peer_id);
        let mesh = Rc::new(Mesh {
            shard_id,
            shard_count,
            senders,
            next_id: Cell::new(0),
            pending: RefCell::new(HashMap::new()),
        });
        let handler = handler_for_self(mesh.clone());
        if let Some(receivers) = receivers {
            spawn_receivers(receivers, &mesh, &handler);
        }
        (mesh, handler)
    }

    #[must_use]
    pub fn shard_id(&self) -> usize {
        self.shard_id
    }

    #[must_use]
    pub fn shard_count(&self) -> usize {
        self.shard_count
    }

    /// Send `request` to core `to` and wait for its reply.
    pub async fn call<H: Handler>(
        &self,
        handler: &Rc<H>,
        to: usize,
        request: Request,
    ) -> Result<Reply, MeshClosed> {
        if to == self.shard_id {
            return Ok(handler.clone().handle(to, request).await);
        }
        let receiver = self.send_request(to, request).await?;
        // If the peer stops before replying, its receive task ends and drops
        // the pending entry (`fail_pending`), and recv returns None.
        receiver.recv().await.ok_or(MeshClosed)
    }

    /// Send the same request to every core (including this one) and collect
    /// the replies in core order. The requests are all sent before the first
    /// reply is awaited, so the cores work on them at the same time.
    pub async fn call_all<H: Handler>(
        &self,
        handler: &Rc<H>,
        make: impl Fn() -> Request,
    ) -> Vec<Result<Reply, MeshClosed>> {
        let mut waiting = Vec::with_capacity(self.shard_count);
        for to in 0..self.shard_count {
            if to == self.shard_id {
                waiting.push(None);
            } else {
                waiting.push(Some(self.send_request(to, make()).await));
            }
        }
        let mut replies = Vec::with_capacity(self.shard_count);
        for (to, sent) in waiting.into_iter().enumerate() {
            let reply = match sent {
                None => Ok(handler.clone().handle(to, make()).await),
                Some(Ok(receiver)) => receiver.recv().await.ok_or(MeshClosed),
                Some(Err(closed)) => Err(closed),
            };
            replies.push(reply);
        }
        replies
    }

    async fn send_request(
        &self,
        to: usize,
        request: Request,
    ) -> Result<LocalReceiver<Reply>, MeshClosed> {
        let senders = self.senders.as_ref().ok_or(MeshClosed)?;
        let id = self.next_id.get();
        self.next_id.set(id + 1);
        let (reply_sender, reply_receiver) = local_channel::new_bounded(1);
        self.pending.borrow_mut().insert(id, (to, reply_sender));
        if senders
            .send_to(to, Message::Request { id, request })
            .await
            .is_err()
        {
            self.pending.borrow_mut().remove(&id);
            return Err(MeshClosed);
        }
        Ok(reply_receiver)
    }

    fn complete(&self, id: u64, reply: Reply) {
        if let Some((_, sender)) = self.pending.borrow_mut().remove(&id) {
            let _ = sender.try_send(reply);
        }
    }

    /// Forget every pending call to `peer` once its channel has closed, so
    /// that their callers see [`MeshClosed`] instead of waiting forever.
    fn fail_pending(&self, peer: usize) {
        self.pending.borrow_mut().retain(|_, (to, _)| *to != peer);
    }

    /// Stop sending: peers' receive tasks see the end of their channels.
    pub fn close(&self) {
        if let Some(senders) = &self.senders {
            senders.close();
        }
    }

    async fn reply(&self, to: usize, id: u64, reply: Reply) {
        if let Some(senders) = &self.senders {
            // A peer that is gone no longer waits for the answer.
            let _ = senders.send_to(to, Message::Reply { id, reply }).await;
        }
    }
}

fn spawn_receivers<H: Handler>(
    mut receivers: Receivers<Message>,
    mesh: &Rc<Mesh>,
    handler: &Rc<H>,
) {
    for (peer, stream) in receivers.streams() {
        let mesh = mesh.clone();
        let handler = handler.clone();
        glommio::spawn_local(async move {
            while let Some(message) = stream.recv().await {
                match message {
                    Message::Reply { id, reply } => mesh.complete(id, reply),
                    Message::Request { id, request } => {
                        let mesh = mesh.clone();
                        let handler = handler.clone();
                        glommio::spawn_local(async move {
                            let reply = handler.handle(peer, request).await;
                            mesh.reply(peer, id, reply).await;
                        })
                        .detach();
                    }
                }
            }
            mesh.fail_pending(peer);
        })
        .detach();
    }
}
