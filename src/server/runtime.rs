//! Start and stop: one pinned glommio executor per core.
//!
//! Start order, and why:
//! 1. On the main thread, everything that can fail with a clear message:
//!    the data directory (created, locked against a second process, its
//!    shard count checked), the credentials, the bucket catalog, the
//!    locked-memory limit `io_uring` needs, and the listening sockets. The
//!    S3 port is first bound without `SO_REUSEPORT`, so that a port held by
//!    anyone else is reported as in use instead of being silently shared;
//!    then one `SO_REUSEPORT` socket per core is bound to the same address,
//!    and the kernel spreads incoming connections over them.
//! 2. One executor per core, each pinned to its own CPU, joins the mesh,
//!    builds its [`Worker`], reports itself started over a crossbeam channel
//!    (the main thread is a plain thread and may block on it), and serves.
//! 3. When every core has reported, the main thread prints
//!    `ringstore listening on http://ADDR` and waits for SIGINT or SIGTERM.
//!
//! Stop order, in two phases because a request draining on one core may
//! still need another core (a bucket change goes to the catalog shard, which
//! installs it on every core): the main thread raises the stop flag; each
//! core stops accepting, lets its in-flight requests finish (at most
//! `limits::SHUTDOWN_DRAIN_MS`) and reports itself drained, while it keeps
//! answering mesh calls. Once every core has drained (or the drain time is
//! over), the main thread raises the close flag; each core closes its mesh
//! senders and returns; the main thread joins every executor and returns
//! `Ok`, and the process exits 0.

use std::net::SocketAddr;
use std::os::fd::{AsRawFd as _, FromRawFd as _, IntoRawFd as _, OwnedFd, RawFd};
use std::path::Path;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use glommio::channels::channel_mesh::MeshBuilder;
use glommio::{LocalExecutorBuilder, Placement};

use crate::auth::Owner;
use crate::auth::{CredentialStore, Credentials};
use crate::config::{Config, CredentialSource, resolve_credentials};
use crate::limits;
use crate::node::mesh::Mesh;
use crate::node::worker::{SharedSetup, Worker};
use crate::storage::catalog::Catalog;

/// A failure at start, as one sentence for the operator.
#[derive(Debug)]
pub struct StartError(pub String);

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for StartError {}

/// glommio refuses to start below this locked-memory limit (bytes).
const MEMLOCK_BYTES_MIN: u64 = 512 * 1024;

/// Name of the file that records the data directory's format and shard count.
const FORMAT_FILE: &str = "format";
const LOCK_FILE: &str = "lock";
const FORMAT_VERSION: u32 = 1;

/// What an executor tells the main thread.
enum CoreEvent {
    /// The core's shard is recovered and its mesh joined.
    Started,
    /// The core could not start (its shard did not recover); the message
    /// is for the operator.
    Failed(String),
    /// No connection of this core is open any more (or its drain time ran
    /// out); it still answers mesh calls.
    Drained,
    Stopped,
}

/// The two flags the main thread raises to stop the cores.
#[derive(Default)]
struct StopFlags {
    /// Every core has started: accept connections. Until then the kernel
    /// queues them, so no connection is handed to a core whose shard is
    /// still recovering.
    serve: AtomicBool,
    /// Stop accepting and drain connections.
    stop: AtomicBool,
    /// Every core has drained: close the mesh and return.
    close: AtomicBool,
}

/// Run the server until SIGINT or SIGTERM.
pub fn run(config: &Config) -> Result<(), StartError> {
    check_memlock()?;
    let connections_per_core_max = connection_limit(config)?;
    let _lock = prepare_data_dir(config)?;
    let (credentials, source) = resolve_credentials(config).map_err(|error| StartError(error.0))?;
    announce_credentials(config, &credentials, &source);
    let catalog = Catalog::load(&config.data_dir).map_err(|error| {
        StartError(format!(
            "cannot load the bucket catalog in {}: {error}",
            config.data_dir.display()
        ))
    })?;
    let (listen_addr, s3_fds) = bind_s3_listeners(config.listen, config.cores)?;
    let admin_fd = bind_admin_listener(config.admin_listen)?;
    let admin_addr = local_addr(admin_fd.as_raw_fd()).unwrap_or(config.admin_listen);

    block_stop_signals();
    let mut random = [0_u8; 4];
    getrandom::fill(&mut random)
        .map_err(|error| StartError(format!("no random source: {error}")))?;
    let setup = Arc::new(SharedSetup {
        config: Arc::new(config.clone()),
        owner: Owner::of(&credentials),
        credentials: Arc::new(std::iter::once(credentials).collect::<CredentialStore>()),
        catalog: Arc::new(catalog),
        request_id_prefix: u32::from_le_bytes(random),
        connections_per_core_max,
    });
    let stop = Arc::new(StopFlags::default());
    let (events_sender, events) = crossbeam_channel::bounded(config.cores * 2);
    let mesh = MeshBuilder::full(config.cores, limits::MESH_CHANNEL_CAPACITY);
    let cpus = allowed_cpus();
    let mut admin_fd = Some(admin_fd);
    let mut handles = Vec::with_capacity(config.cores);
    for (core, fd) in s3_fds.into_iter().enumerate() {
        let placement = if cpus.len() >= config.cores {
            Placement::Fixed(cpus[core])
        } else {
            Placement::Unbound
        };
        let setup = setup.clone();
        let stop = stop.clone();
        let events_sender = events_sender.clone();
        let mesh = mesh.clone();
        let admin_fd = admin_fd.take().map(std::os::fd::IntoRawFd::into_raw_fd);
        let listener_fd = fd.into_raw_fd();
        let handle = LocalExecutorBuilder::new(placement)
            .name(&format!("ringstore-{core}"))
            .spawn(move || async move {
                serve_core(&setup, mesh, listener_fd, admin_fd, &stop, &events_sender).await;
            })
            .map_err(|error| {
                StartError(format!(
                    "cannot start the executor for core {core}: {error}{}",
                    memlock_hint()
                ))
            })?;
        handles.push(handle);
    }
    drop(events_sender);

    let mut started = 0;
    while started < config.cores {
        // No time limit: recovery replays the segment tail since the last
        // index checkpoint, which the flush policy bounds; a panicking core
        // aborts the process (see main.rs), so nothing waits here forever.
        match events.recv() {
            Ok(CoreEvent::Started) => started += 1,
            Ok(CoreEvent::Failed(message)) => return Err(StartError(message)),
            Ok(CoreEvent::Stopped | CoreEvent::Drained) | Err(_) => {
                return Err(StartError(format!(
                    "a core stopped during start-up{}",
                    memlock_hint()
                )));
            }
        }
    }
    stop.serve.store(true, Ordering::Release);
    tracing::info!(cores = config.cores, %admin_addr, "ringstore started");
    println!("ringstore listening on http://{listen_addr}");
    let _ = std::io::Write::flush(&mut std::io::stdout());

    let signal = wait_for_stop_signal(&events);
    tracing::info!(signal, "stopping");
    stop.stop.store(true, Ordering::Release);
    let deadline = Instant::now() + Duration::from_millis(limits::SHUTDOWN_DRAIN_MS + 1_000);
    let mut drained = 0;
    while drained < config.cores {
        let wait = deadline.saturating_duration_since(Instant::now());
        match events.recv_timeout(wait) {
            Ok(CoreEvent::Drained) => drained += 1,
            Ok(CoreEvent::Started | CoreEvent::Stopped | CoreEvent::Failed(_)) => {}
            Err(_) => break,
        }
    }
    stop.close.store(true, Ordering::Release);
    for handle in handles {
        if handle.join().is_err() {
            return Err(StartError("a core failed while stopping".into()));
        }
    }
    tracing::info!("stopped");
    Ok(())
}

/// Everything one core does from start to stop.
async fn serve_core(
    setup: &Arc<SharedSetup>,
    mesh: MeshBuilder<crate::node::mesh::Message, glommio::channels::channel_mesh::Full>,
    listener_fd: RawFd,
    admin_fd: Option<RawFd>,
    stop: &Arc<StopFlags>,
    events: &crossbeam_channel::Sender<CoreEvent>,
) {
    let shard_count = setup.config.cores;
    let (_mesh, worker) =
        Mesh::join(mesh, shard_count, |mesh| Rc::new(Worker::new(setup, mesh))).await;
    let shard_dir = crate::storage::shard::shard_dir(&setup.config.data_dir, worker.shard_id());
    let options = crate::storage::segment::WriterOptions {
        segment_bytes_max: setup.config.segment_bytes,
        reserved_bytes: setup.config.reserved_space_bytes,
        ..crate::storage::segment::WriterOptions::default()
    };
    match crate::storage::shard::Shard::open_with(&shard_dir, options).await {
        Ok(shard) => {
            let shard = Rc::new(shard);
            shard.start_compaction(Duration::from_millis(setup.config.compaction_interval_ms));
            shard.start_scrub(
                setup.config.scrub_bytes_per_second,
                Duration::from_millis(setup.config.scrub_pause_ms),
            );
            worker.set_shard(shard);
        }
        Err(error) => {
            let _ = events.send(CoreEvent::Failed(format!(
                "cannot open the storage of shard {} in {}: {error}",
                worker.shard_id(),
                shard_dir.display()
            )));
            return;
        }
    }
    let context = Rc::new(super::conn::Context {
        worker: worker.clone(),
        router: crate::s3::router::RouterConfig {
            domains: setup.config.virtual_host_domains.clone(),
        },
    });
    // Connections other cores hand over run here like accepted ones, from
    // before this core reports itself started (another core may hand one
    // over as soon as it serves) until it stops. (Weak: the worker holds
    // the handler; `context` lives to the end of this function.)
    let adopting = Rc::downgrade(&context);
    worker.set_connection_handler(Rc::new(move |stream, buffered| {
        if let Some(context) = adopting.upgrade() {
            super::listener::adopt(&context, stream, &buffered);
        }
    }));
    let _ = events.send(CoreEvent::Started);
    while !stop.serve.load(Ordering::Acquire) {
        if stop.stop.load(Ordering::Acquire) {
            return;
        }
        glommio::timer::sleep(Duration::from_millis(2)).await;
    }
    // SAFETY: the fd is a listening TCP socket created by `bind_s3_listeners`
    // and handed to this core alone; ownership moves into the listener.
    let listener = unsafe { glommio::net::TcpListener::from_raw_fd(listener_fd) };
    let accept_task =
        glommio::spawn_local(super::listener::accept_loop(Rc::clone(&context), listener));
    let admin_task = admin_fd.map(|fd| {
        // SAFETY: as above, for the admin listening socket.
        let admin = unsafe { glommio::net::TcpListener::from_raw_fd(fd) };
        glommio::spawn_local(super::admin::serve(worker.clone(), admin))
    });

    while !stop.stop.load(Ordering::Acquire) {
        glommio::timer::sleep(Duration::from_millis(50)).await;
    }
    worker.begin_stop();
    accept_task.cancel().await;
    if let Some(task) = admin_task {
        task.cancel().await;
    }
    let deadline = Instant::now() + Duration::from_millis(limits::SHUTDOWN_DRAIN_MS);
    while worker.open_connections() > 0 && Instant::now() < deadline {
        glommio::timer::sleep(Duration::from_millis(10)).await;
    }
    if worker.open_connections() > 0 {
        tracing::warn!(
            open = worker.open_connections(),
            "shutdown drain time is over; closing the remaining connections"
        );
    }
    // Write the index out so that the next start replays nothing.
    if let Err(error) = worker.shard().checkpoint_now().await {
        tracing::warn!(%error, "could not write the index at shutdown; the next start replays the segments");
    }
    // Peers may still need this core to answer mesh calls for their own
    // draining requests: keep answering until every core has drained.
    let _ = events.send(CoreEvent::Drained);
    while !stop.close.load(Ordering::Acquire) {
        glommio::timer::sleep(Duration::from_millis(5)).await;
    }
    worker.mesh.close();
    let _ = events.send(CoreEvent::Stopped);
}

fn check_memlock() -> Result<(), StartError> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we pass and nothing else.
    if unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &raw mut limit) } != 0 {
        return Ok(());
    }
    if limit.rlim_cur != libc::RLIM_INFINITY && limit.rlim_cur < MEMLOCK_BYTES_MIN {
        return Err(StartError(format!(
            "the locked-memory limit is {} KiB, but io_uring needs at least {} KiB; \
             raise it with `ulimit -l unlimited` (or LimitMEMLOCK=infinity in a systemd unit)",
            limit.rlim_cur / 1024,
            MEMLOCK_BYTES_MIN / 1024
        )));
    }
    Ok(())
}

/// Raise the soft open-files limit (`RLIMIT_NOFILE`) to the hard limit and
/// derive the per-core connection limit from it: every connection is one
/// descriptor, and each core also needs `limits::FILES_RESERVED_PER_CORE`
/// for its segments and index files, so the configured
/// `connections_per_core_max` is lowered if the descriptors could not hold
/// it. Past the derived limit a connection gets `503 SlowDown` instead of
/// taking a descriptor that a segment or an index flush needs.
fn connection_limit(config: &Config) -> Result<usize, StartError> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we pass and nothing else.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &raw mut limit) } != 0 {
        return Err(StartError(format!(
            "cannot read the open-files limit: {}",
            std::io::Error::last_os_error()
        )));
    }
    let soft_before = limit.rlim_cur;
    if limit.rlim_cur < limit.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: limit.rlim_max,
            rlim_max: limit.rlim_max,
        };
        // SAFETY: setrlimit reads the struct we pass; raising the soft
        // limit up to the hard limit needs no privilege.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raw const raised) } == 0 {
            limit.rlim_cur = limit.rlim_max;
        } else {
            tracing::warn!(
                error = %std::io::Error::last_os_error(),
                "cannot raise the soft open-files limit to the hard limit"
            );
        }
    }
    let (allowed, files) = connections_for_files(limit.rlim_cur, config.cores);
    let connections = allowed.min(config.connections_per_core_max);
    let show = |value: libc::rlim_t| {
        if value == libc::RLIM_INFINITY {
            "unlimited".to_owned()
        } else {
            value.to_string()
        }
    };
    tracing::info!(
        soft_before = %show(soft_before),
        soft = %show(limit.rlim_cur),
        hard = %show(limit.rlim_max),
        connections_per_core = connections,
        "open-files limit"
    );
    if allowed < limits::CONNECTIONS_PER_CORE_MIN {
        return Err(StartError(format!(
            "the open-files limit ({files}) leaves room for only {allowed} connections per \
             core on {} cores (at least {} are needed); raise it with `ulimit -n 65536` (or \
             LimitNOFILE=65536 in a systemd unit)",
            config.cores,
            limits::CONNECTIONS_PER_CORE_MIN
        )));
    }
    if allowed < config.connections_per_core_max {
        tracing::warn!(
            configured = config.connections_per_core_max,
            effective = connections,
            "connections_per_core_max lowered to what the open-files limit allows; \
             raise the limit (ulimit -n) to serve more"
        );
    }
    Ok(connections)
}

/// How many connections per core `files` descriptors leave room for on
/// `cores` cores, once the process's and every core's own files are set
/// aside; and the descriptor count it was computed from.
fn connections_for_files(files: libc::rlim_t, cores: usize) -> (usize, u64) {
    let files: u64 = if files == libc::RLIM_INFINITY {
        u64::MAX
    } else {
        files
    };
    let reserved =
        (limits::FILES_RESERVED_PROCESS + cores * limits::FILES_RESERVED_PER_CORE) as u64;
    let per_core = files.saturating_sub(reserved) / cores as u64;
    (usize::try_from(per_core).unwrap_or(usize::MAX), files)
}

fn memlock_hint() -> &'static str {
    " (if io_uring could not be set up, raise the locked-memory limit with `ulimit -l unlimited`)"
}

/// Create the data directory, lock it, and check (or record) its format and
/// shard count. The returned file holds the lock until the process exits.
fn prepare_data_dir(config: &Config) -> Result<std::fs::File, StartError> {
    let dir = &config.data_dir;
    // Durably: the directory must still exist after a power cut, or the
    // first acknowledged writes would vanish with it.
    crate::storage::fs::create_dir_all(dir).map_err(|error| {
        StartError(format!(
            "cannot create the data directory {}: {error}",
            dir.display()
        ))
    })?;
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join(LOCK_FILE))
        .map_err(|error| {
            StartError(format!(
                "the data directory {} is not writable: {error}",
                dir.display()
            ))
        })?;
    // SAFETY: flock on an fd we own; no memory is involved.
    if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        return Err(StartError(format!(
            "the data directory {} is in use by another ringstore process",
            dir.display()
        )));
    }
    check_format(dir, config.cores)?;
    Ok(lock)
}

fn check_format(dir: &Path, cores: usize) -> Result<(), StartError> {
    let path = dir.join(FORMAT_FILE);
    let expected = format!("ringstore-format {FORMAT_VERSION}\nshards {cores}\n");
    match std::fs::read_to_string(&path) {
        Ok(text) if text == expected => Ok(()),
        Ok(text) => {
            let shards = text
                .lines()
                .find_map(|line| line.strip_prefix("shards "))
                .unwrap_or("?");
            Err(StartError(format!(
                "the data directory {} was created with {shards} shards and this start asks \
                 for {cores} cores; start with --cores {shards}",
                dir.display()
            )))
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            crate::storage::fs::write_file_durably(&path, expected.as_bytes()).map_err(|error| {
                StartError(format!(
                    "cannot write {} in the data directory: {error}",
                    path.display()
                ))
            })
        }
        Err(error) => Err(StartError(format!(
            "cannot read {}: {error}",
            path.display()
        ))),
    }
}

fn announce_credentials(config: &Config, credentials: &Credentials, source: &CredentialSource) {
    let path = config.data_dir.join(crate::config::CREDENTIALS_FILE);
    match source {
        CredentialSource::Configured => {
            println!("ringstore: access key id {}", credentials.access_key_id);
        }
        CredentialSource::Generated | CredentialSource::Stored => {
            let how = if *source == CredentialSource::Generated {
                "generated"
            } else {
                "stored"
            };
            println!(
                "ringstore: using {how} credentials from {} (mode 0600)",
                path.display()
            );
            println!("  access key id:     {}", credentials.access_key_id);
            println!("  secret access key: {}", credentials.secret_access_key);
        }
    }
}

/// Bind one `SO_REUSEPORT` listening socket per core to `addr` (see the
/// module doc for why the address is first probed without it).
fn bind_s3_listeners(
    addr: SocketAddr,
    cores: usize,
) -> Result<(SocketAddr, Vec<OwnedFd>), StartError> {
    let in_use = |error: std::io::Error| {
        if error.kind() == std::io::ErrorKind::AddrInUse {
            StartError(format!(
                "cannot listen on {addr}: the address is already in use"
            ))
        } else {
            StartError(format!("cannot listen on {addr}: {error}"))
        }
    };
    let probe = std::net::TcpListener::bind(addr).map_err(in_use)?;
    let actual = probe.local_addr().map_err(in_use)?;
    drop(probe);
    let mut fds = Vec::with_capacity(cores);
    for _ in 0..cores {
        let domain = socket2::Domain::for_address(actual);
        let socket =
            socket2::Socket::new(domain, socket2::Type::STREAM, Some(socket2::Protocol::TCP))
                .map_err(in_use)?;
        socket.set_reuse_address(true).map_err(in_use)?;
        socket.set_reuse_port(true).map_err(in_use)?;
        socket.bind(&actual.into()).map_err(in_use)?;
        socket.listen(1024).map_err(in_use)?;
        fds.push(OwnedFd::from(socket));
    }
    Ok((actual, fds))
}

fn bind_admin_listener(addr: SocketAddr) -> Result<OwnedFd, StartError> {
    let listener = std::net::TcpListener::bind(addr).map_err(|error| {
        if error.kind() == std::io::ErrorKind::AddrInUse {
            StartError(format!(
                "cannot listen on {addr} (admin): the address is already in use"
            ))
        } else {
            StartError(format!("cannot listen on {addr} (admin): {error}"))
        }
    })?;
    Ok(OwnedFd::from(listener))
}

fn local_addr(fd: RawFd) -> Option<SocketAddr> {
    // SAFETY: borrow the fd only for the call; `ManuallyDrop` keeps it open.
    let socket = std::mem::ManuallyDrop::new(unsafe { socket2::Socket::from_raw_fd(fd) });
    socket.local_addr().ok()?.as_socket()
}

/// The CPUs this process may run on, in order.
fn allowed_cpus() -> Vec<usize> {
    // SAFETY: cpu_set_t is plain data; sched_getaffinity fills it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &raw mut set) != 0 {
            return Vec::new();
        }
        (0..libc::CPU_SETSIZE as usize)
            .filter(|&cpu| libc::CPU_ISSET(cpu, &set))
            .collect()
    }
}

fn stop_signal_set() -> libc::sigset_t {
    // SAFETY: sigset_t is plain data, initialized by sigemptyset.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&raw mut set);
        libc::sigaddset(&raw mut set, libc::SIGINT);
        libc::sigaddset(&raw mut set, libc::SIGTERM);
        set
    }
}

/// Block SIGINT and SIGTERM in this thread before any executor thread is
/// spawned, so that every thread inherits the mask and the signals stay
/// pending until the main thread takes them in `wait_for_stop_signal`.
fn block_stop_signals() {
    let set = stop_signal_set();
    // SAFETY: changes this thread's signal mask only.
    unsafe {
        libc::pthread_sigmask(libc::SIG_BLOCK, &raw const set, std::ptr::null_mut());
    }
}

/// Wait for SIGINT or SIGTERM; also return if a core stops by itself (a
/// bug), so the process does not hang half alive.
fn wait_for_stop_signal(events: &crossbeam_channel::Receiver<CoreEvent>) -> &'static str {
    let set = stop_signal_set();
    let timeout = libc::timespec {
        tv_sec: 0,
        tv_nsec: 200_000_000,
    };
    loop {
        // SAFETY: sigtimedwait reads the set and the timeout we pass.
        let signal =
            unsafe { libc::sigtimedwait(&raw const set, std::ptr::null_mut(), &raw const timeout) };
        match signal {
            libc::SIGINT => return "SIGINT",
            libc::SIGTERM => return "SIGTERM",
            _ => {}
        }
        if let Ok(CoreEvent::Stopped) | Err(crossbeam_channel::TryRecvError::Disconnected) =
            events.try_recv()
        {
            tracing::error!("a core stopped by itself; stopping the others");
            return "core stopped";
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_fit_the_open_files_limit() {
        // 2 cores: 64 + 64 (admin) + 2 * 256 = 640 descriptors are set
        // aside, and the rest is split between the cores.
        assert_eq!(connections_for_files(20_000, 2), (9_680, 20_000));
        assert_eq!(connections_for_files(1024, 1), (640, 1024));
        assert_eq!(connections_for_files(640, 2).0, 0);
        assert_eq!(connections_for_files(100, 2).0, 0);
        assert!(connections_for_files(libc::RLIM_INFINITY, 4).0 > 1 << 40);
    }
}
