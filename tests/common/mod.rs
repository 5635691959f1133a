//! Shared fixture of the integration tests: the real `ringstore` binary on a
//! fresh temporary directory, and the clients that talk to it.
//!
//! What it owns:
//! - [`Server`]: starts the binary that cargo built for the tests
//!   (`CARGO_BIN_EXE_ringstore`; nothing is built here) on `127.0.0.1:0`,
//!   with a free admin port, a data directory inside a [`tempfile::TempDir`],
//!   explicit credentials (or none, to test generation), and optional flags
//!   and configuration lines. It waits for the `ringstore listening on`
//!   line, and shows the server's stderr when the start fails. `stop()`
//!   sends SIGTERM and asserts exit code 0; dropping a `Server` kills the
//!   process and removes the directory, so no test leaks either.
//! - [`ServerOptions::start_expecting_failure`]: runs the binary to its exit
//!   for the start-error tests.
//! - An AWS SDK client per server ([`Server::client`]): path style, the
//!   server's region and endpoint, hardcoded credentials, every other
//!   setting (checksums, retries) left at the SDK's default, because S3
//!   clients must work unmodified.
//! - [`RawConn`]: HTTP/1.1 over a plain `TcpStream`, for tests that must
//!   send exact bytes (limits, timeouts, pipelining, malformed requests).
//! - [`RawRequest`]: builds such requests, unsigned, signed with `SigV4` in
//!   the `Authorization` header, or presigned, and the same with `SigV2`
//!   (`AWS AKID:signature`, `?AWSAccessKeyId=…&Expires=…&Signature=…`).
//!   The signers are written here from the AWS documentation, independently
//!   of the server's own, and are checked against AWS's published examples
//!   in `tests/auth.rs`.
//!
//! Every blocking read has a timeout, so a server that hangs fails a test
//! instead of hanging the suite.

#![allow(dead_code)]

use std::fmt::Write as _;
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use hmac::{Hmac, Mac as _};
use sha2::{Digest as _, Sha256};

/// The key pair the fixture configures unless a test asks for none. The
/// secret holds `/` and `+`, as generated AWS secrets do.
pub const ACCESS_KEY_ID: &str = "RSTESTKEY00000000001";
pub const SECRET_ACCESS_KEY: &str = "tEsT/SeCrEt+kEy/0123456789abcdefghijklmn";

/// Longest time a start may take before the test fails.
pub const START_TIMEOUT: Duration = Duration::from_secs(20);
/// Longest time from SIGTERM to exit. The server drains in-flight requests
/// for at most 10 s (`limits::SHUTDOWN_DRAIN_MS`); an idle server must be
/// much faster, which the tests that care check on their own.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(15);
/// Read timeout of raw connections: far above any legitimate answer time.
pub const RAW_READ_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest wait for a line to reach the server's log as this fixture sees
/// it. A test often learns of an event elsewhere first (a metric moved, a
/// response came back); the server may write its log line a moment later,
/// and a fixture thread must then read it from the pipe, and either can
/// lag on a loaded machine. Far above any legitimate delay.
pub const LOG_TIMEOUT: Duration = Duration::from_secs(10);

/// The line the server prints on stdout once every core accepts.
const LISTENING_PREFIX: &str = "ringstore listening on http://";

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Keys {
    pub access_key_id: String,
    pub secret_access_key: String,
}

impl Keys {
    pub fn new(access_key_id: &str, secret_access_key: &str) -> Self {
        Self {
            access_key_id: access_key_id.to_owned(),
            secret_access_key: secret_access_key.to_owned(),
        }
    }

    pub fn fixture() -> Self {
        Self::new(ACCESS_KEY_ID, SECRET_ACCESS_KEY)
    }
}

/// How to start a server. Every field has the fixture's default.
#[derive(Clone, Debug)]
pub struct ServerOptions {
    cores: Option<usize>,
    region: Option<String>,
    /// `None`: no credentials in the environment, so the server generates a
    /// pair on its first start and reuses it later.
    keys: Option<Keys>,
    /// Credentials written into the `--config` file instead of the
    /// environment.
    config_keys: Option<Keys>,
    /// Lines of the TOML file passed with `--config` (no file when empty).
    config_lines: Vec<String>,
    /// `None`: `127.0.0.1:0`.
    listen: Option<SocketAddr>,
    /// `None`: a free port found just before the start.
    admin_listen: Option<SocketAddr>,
    /// `None`: `<tempdir>/data`. A relative path is passed as it is and
    /// resolved by the server against its working directory.
    data_dir: Option<PathBuf>,
    /// Start without `--data-dir`, so the server uses its default
    /// (`./ringstore-data`), as the README's first command does.
    omit_data_dir: bool,
    /// The server's working directory, relative to the test's temporary
    /// directory (created empty); `None`: the test process's own.
    working_dir: Option<PathBuf>,
    /// `RLIMIT_NOFILE` (soft, hard) for the server process.
    open_files_limit: Option<(u64, u64)>,
    extra_args: Vec<String>,
    env: Vec<(String, String)>,
}

impl Default for ServerOptions {
    fn default() -> Self {
        Self {
            cores: None,
            region: None,
            keys: Some(Keys::fixture()),
            config_keys: None,
            config_lines: Vec::new(),
            listen: None,
            admin_listen: None,
            data_dir: None,
            omit_data_dir: false,
            working_dir: None,
            open_files_limit: None,
            extra_args: Vec::new(),
            env: Vec::new(),
        }
    }
}

impl ServerOptions {
    pub fn new() -> Self {
        Self::default()
    }

    #[must_use]
    pub fn cores(mut self, cores: usize) -> Self {
        self.cores = Some(cores);
        self
    }

    #[must_use]
    pub fn region(mut self, region: &str) -> Self {
        self.region = Some(region.to_owned());
        self
    }

    #[must_use]
    pub fn keys(mut self, keys: Keys) -> Self {
        self.keys = Some(keys);
        self
    }

    /// Start without configured credentials (generated on the first start).
    #[must_use]
    pub fn no_keys(mut self) -> Self {
        self.keys = None;
        self
    }

    /// Configure these credentials in the `--config` file (and none in the
    /// environment).
    #[must_use]
    pub fn config_keys(mut self, keys: Keys) -> Self {
        self.keys = None;
        self.config_lines
            .push(format!("access_key_id = {:?}", keys.access_key_id));
        self.config_lines
            .push(format!("secret_access_key = {:?}", keys.secret_access_key));
        self.config_keys = Some(keys);
        self
    }

    /// One line of the `--config` TOML file, e.g. `head_timeout_ms = 500`.
    #[must_use]
    pub fn config(mut self, line: &str) -> Self {
        self.config_lines.push(line.to_owned());
        self
    }

    #[must_use]
    pub fn listen(mut self, addr: SocketAddr) -> Self {
        self.listen = Some(addr);
        self
    }

    #[must_use]
    pub fn admin_listen(mut self, addr: SocketAddr) -> Self {
        self.admin_listen = Some(addr);
        self
    }

    /// Use this data directory instead of `<tempdir>/data`.
    #[must_use]
    pub fn data_dir(mut self, dir: &Path) -> Self {
        self.data_dir = Some(dir.to_owned());
        self
    }

    /// Start without `--data-dir` (the server's default, `./ringstore-data`
    /// in its working directory).
    #[must_use]
    pub fn omit_data_dir(mut self) -> Self {
        self.omit_data_dir = true;
        self
    }

    /// Run the server in `<tempdir>/<dir>`, created empty if missing.
    #[must_use]
    pub fn working_dir(mut self, dir: &str) -> Self {
        self.working_dir = Some(PathBuf::from(dir));
        self
    }

    /// Start the server with this open-files limit (`RLIMIT_NOFILE`).
    #[must_use]
    pub fn open_files_limit(mut self, soft: u64, hard: u64) -> Self {
        self.open_files_limit = Some((soft, hard));
        self
    }

    /// Set an environment variable for the server (replacing an earlier
    /// value of the same one).
    #[must_use]
    pub fn env(mut self, name: &str, value: &str) -> Self {
        self.env.retain(|(existing, _)| existing != name);
        self.env.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Remove an environment variable set with [`Self::env`].
    #[must_use]
    pub fn without_env(mut self, name: &str) -> Self {
        self.env.retain(|(existing, _)| existing != name);
        self
    }

    #[must_use]
    pub fn arg(mut self, arg: &str) -> Self {
        self.extra_args.push(arg.to_owned());
        self
    }

    pub fn region_name(&self) -> &str {
        self.region.as_deref().unwrap_or("us-east-1")
    }

    /// Start a server; panics (with the server's stderr) if it does not.
    pub fn start(self) -> Server {
        let mut server = Server::stopped(self);
        let options = server.options.clone();
        if let Err(exited) = server.launch(&options) {
            panic!("ringstore did not start: {exited}");
        }
        server
    }

    /// Run the binary until it exits, for tests of start errors; panics if
    /// it starts serving instead (and stops it).
    pub fn start_expecting_failure(self) -> Exited {
        let mut server = Server::stopped(self);
        let options = server.options.clone();
        match server.launch(&options) {
            Ok(()) => panic!(
                "ringstore started on {} although it should have refused to",
                server.addr
            ),
            Err(exited) => exited,
        }
    }
}

/// A server process that ended during its start.
#[derive(Debug)]
pub struct Exited {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl std::fmt::Display for Exited {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exited with {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.status, self.stdout, self.stderr
        )
    }
}

impl Exited {
    /// Asserts the start-error contract: non-zero exit, exactly one stderr
    /// line starting with `ringstore: `, and no panic or backtrace. Returns
    /// that line.
    pub fn assert_clean_start_error(&self) -> String {
        assert!(
            !self.status.success(),
            "a failed start must exit non-zero: {self}"
        );
        assert!(
            self.status.code().is_some(),
            "a failed start must exit, not die of a signal: {self}"
        );
        let lines: Vec<&str> = self
            .stderr
            .lines()
            .filter(|line| line.starts_with("ringstore: "))
            .collect();
        assert_eq!(
            lines.len(),
            1,
            "expected exactly one `ringstore: ` line on stderr: {self}"
        );
        for marker in ["panicked", "stack backtrace", "RUST_BACKTRACE"] {
            assert!(
                !self.stderr.contains(marker),
                "a start error must not panic ({marker:?} on stderr): {self}"
            );
        }
        lines[0].to_owned()
    }
}

/// The running process and the threads draining its output.
struct Process {
    child: Child,
    readers: Vec<JoinHandle<()>>,
}

/// A running `ringstore` on a temporary directory.
pub struct Server {
    options: ServerOptions,
    root: tempfile::TempDir,
    process: Option<Process>,
    /// The credentials the server accepts (configured or generated).
    pub keys: Keys,
    /// The S3 listener's actual address.
    pub addr: SocketAddr,
    pub admin_addr: SocketAddr,
    /// stdout of the current process up to and including the listening line.
    pub stdout_lines: Vec<String>,
    /// stderr of the current (or last) process, as it arrives.
    stderr: Arc<Mutex<String>>,
    /// Every stdout line of the current (or last) process.
    stdout: Arc<Mutex<Vec<String>>>,
    start_count: usize,
}

impl Server {
    /// A server that has not started yet, on a new temporary directory.
    fn stopped(options: ServerOptions) -> Server {
        let root = tempfile::Builder::new()
            .prefix("ringstore-test-")
            .tempdir()
            .expect("create a temporary directory");
        Server {
            options,
            root,
            process: None,
            keys: Keys::fixture(),
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            admin_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            stdout_lines: Vec::new(),
            stderr: Arc::default(),
            stdout: Arc::default(),
            start_count: 0,
        }
    }

    /// A server with every default of the fixture.
    pub fn start() -> Server {
        ServerOptions::new().start()
    }

    pub fn options(&self) -> &ServerOptions {
        &self.options
    }

    pub fn region(&self) -> &str {
        self.options.region_name()
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn admin_url(&self) -> String {
        format!("http://{}", self.admin_addr)
    }

    /// The temporary directory holding the data directory and the config.
    pub fn root(&self) -> &Path {
        self.root.path()
    }

    pub fn data_dir(&self) -> PathBuf {
        self.data_dir_of(&self.options)
    }

    /// Where the server started with `options` keeps its data, as an
    /// absolute path.
    fn data_dir_of(&self, options: &ServerOptions) -> PathBuf {
        let working_dir = options.working_dir.as_ref().map_or_else(
            || std::env::current_dir().expect("the test's working directory"),
            |dir| self.root.path().join(dir),
        );
        if options.omit_data_dir {
            return working_dir.join("ringstore-data");
        }
        options.data_dir.as_ref().map_or_else(
            || self.root.path().join("data"),
            |dir| working_dir.join(dir),
        )
    }

    pub fn pid(&self) -> u32 {
        self.process.as_ref().expect("server is running").child.id()
    }

    /// stderr of the current (or last) process so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Wait (at most [`LOG_TIMEOUT`]) until the server's stderr contains
    /// `needle`; returns the stderr then. Panics with the whole stderr if
    /// the line never comes. Use this, never [`Server::stderr`] alone, to
    /// check that an event was logged: the log line can arrive after the
    /// event is visible otherwise (issue 12, `tests/scrub.rs`).
    #[track_caller]
    pub fn wait_for_log(&self, needle: &str) -> String {
        eventually(LOG_TIMEOUT, || {
            let stderr = self.stderr();
            stderr.contains(needle).then_some(stderr)
        })
        .unwrap_or_else(|| {
            panic!(
                "{needle:?} was not logged within {LOG_TIMEOUT:?}; stderr:\n{}",
                self.stderr()
            )
        })
    }

    /// Every stdout line of the current (or last) process so far.
    pub fn stdout(&self) -> Vec<String> {
        self.stdout.lock().unwrap().clone()
    }

    pub fn is_running(&self) -> bool {
        self.process.is_some()
    }

    /// Spawn the binary and wait for its listening line.
    fn launch(&mut self, options: &ServerOptions) -> Result<(), Exited> {
        assert!(self.process.is_none(), "the server is already running");
        self.start_count += 1;
        let data_dir = self.data_dir_of(options);
        let listen = options
            .listen
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0)));
        let admin_listen = options.admin_listen.unwrap_or_else(free_local_addr);
        let command = self.command(options, &data_dir, listen, admin_listen);
        let (process, lines) = self.spawn(command);
        // Owned by `self` from here on, so that a panic below still kills
        // the process (in `Drop`).
        self.process = Some(process);

        let deadline = Instant::now() + START_TIMEOUT;
        let mut seen = Vec::new();
        let listening = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match lines.recv_timeout(left) {
                Ok(line) => {
                    let found = line.strip_prefix(LISTENING_PREFIX).map(|addr| {
                        addr.trim().parse::<SocketAddr>().unwrap_or_else(|error| {
                            panic!("unparsable listening line {line:?}: {error}")
                        })
                    });
                    seen.push(line);
                    if let Some(addr) = found {
                        break addr;
                    }
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    // stdout closed: the process is exiting.
                    let status = self.wait_exit(STOP_TIMEOUT).unwrap_or_else(|| {
                        panic!(
                            "ringstore closed stdout but did not exit\n{}",
                            self.stderr()
                        )
                    });
                    return Err(Exited {
                        status,
                        stdout: seen.join("\n"),
                        stderr: self.stderr(),
                    });
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    panic!(
                        "ringstore printed no listening line within {START_TIMEOUT:?}\n\
                         --- stdout ---\n{}",
                        seen.join("\n")
                    );
                }
            }
        };
        assert_eq!(
            listening.ip(),
            listen.ip(),
            "the listening line must name the address we asked for"
        );
        if listen.port() != 0 {
            assert_eq!(listening.port(), listen.port());
        } else {
            assert_ne!(
                listening.port(),
                0,
                "the listening line must show the real port"
            );
        }
        self.addr = listening;
        self.admin_addr = if admin_listen.port() == 0 {
            self.logged_admin_addr()
        } else {
            admin_listen
        };
        self.stdout_lines = seen;
        self.keys = match (&options.keys, &options.config_keys) {
            (Some(keys), _) | (None, Some(keys)) => keys.clone(),
            (None, None) => read_stored_keys(&data_dir),
        };
        self.options = options.clone();
        Ok(())
    }

    /// The command line and environment of one start.
    fn command(
        &mut self,
        options: &ServerOptions,
        data_dir: &Path,
        listen: SocketAddr,
        admin_listen: SocketAddr,
    ) -> Command {
        let mut command = Command::new(binary());
        if let Some(dir) = &options.working_dir {
            let dir = self.root.path().join(dir);
            std::fs::create_dir_all(&dir).expect("create the server's working directory");
            command.current_dir(dir);
        }
        if !options.omit_data_dir {
            // As given: a relative path stays relative.
            command
                .arg("--data-dir")
                .arg(options.data_dir.as_deref().unwrap_or(data_dir));
        }
        command
            .arg("--listen")
            .arg(listen.to_string())
            .arg("--admin-listen")
            .arg(admin_listen.to_string());
        if let Some(cores) = options.cores {
            command.arg("--cores").arg(cores.to_string());
        }
        if let Some(region) = &options.region {
            command.arg("--region").arg(region);
        }
        if !options.config_lines.is_empty() {
            let path = self
                .root
                .path()
                .join(format!("ringstore-{}.toml", self.start_count));
            std::fs::write(&path, options.config_lines.join("\n") + "\n")
                .expect("write the config file");
            command.arg("--config").arg(path);
        }
        command.args(&options.extra_args);
        command
            .env_remove("RINGSTORE_ACCESS_KEY_ID")
            .env_remove("RINGSTORE_SECRET_ACCESS_KEY")
            .env_remove("RUST_LOG")
            .env_remove("RINGSTORE_CRASH_AT");
        command.envs(options.env.iter().map(|(name, value)| (name, value)));
        if let Some(keys) = &options.keys {
            command
                .env("RINGSTORE_ACCESS_KEY_ID", &keys.access_key_id)
                .env("RINGSTORE_SECRET_ACCESS_KEY", &keys.secret_access_key);
        }
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // If the test process dies without running `Drop` (killed by a CI
        // timeout, say), the kernel kills the server too, so that no server
        // outlives its test. The signal follows the *thread* that spawned
        // the server, so start servers on the test's own thread.
        // SAFETY: prctl is async-signal-safe and touches no memory of ours;
        // this runs in the child between fork and exec.
        let open_files_limit = options.open_files_limit;
        unsafe {
            command.pre_exec(move || {
                let signal = libc::c_ulong::from(libc::SIGKILL.unsigned_abs());
                if libc::prctl(libc::PR_SET_PDEATHSIG, signal) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                if let Some((soft, hard)) = open_files_limit {
                    let limit = libc::rlimit {
                        rlim_cur: soft,
                        rlim_max: hard,
                    };
                    // setrlimit is async-signal-safe.
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &raw const limit) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
        command
    }

    /// Spawn `command` with threads draining its stdout (forwarded line by
    /// line) and stderr (kept in `self.stderr`).
    fn spawn(&mut self, mut command: Command) -> (Process, mpsc::Receiver<String>) {
        let mut child = command.spawn().expect("spawn the ringstore binary");

        let stderr = Arc::new(Mutex::new(String::new()));
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let (lines_sender, lines) = mpsc::channel::<String>();
        let stdout_reader = {
            let pipe = child.stdout.take().expect("stdout is piped");
            let stdout = stdout.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines() {
                    let Ok(line) = line else { break };
                    stdout.lock().unwrap().push(line.clone());
                    let _ = lines_sender.send(line);
                }
            })
        };
        let stderr_reader = {
            let mut pipe = child.stderr.take().expect("stderr is piped");
            let stderr = stderr.clone();
            std::thread::spawn(move || {
                let mut chunk = [0_u8; 4096];
                loop {
                    match pipe.read(&mut chunk) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => stderr
                            .lock()
                            .unwrap()
                            .push_str(&String::from_utf8_lossy(&chunk[..n])),
                    }
                }
            })
        };
        self.stderr = stderr;
        self.stdout = stdout;
        let process = Process {
            child,
            readers: vec![stdout_reader, stderr_reader],
        };
        (process, lines)
    }

    /// The admin address the server logged (`admin_addr=IP:PORT`), for a
    /// start with admin port 0. Colour codes are ignored here; whether the
    /// log is plain text is a test of its own.
    fn logged_admin_addr(&self) -> SocketAddr {
        let found = eventually(LOG_TIMEOUT, || {
            let stderr = strip_ansi(&self.stderr());
            let start = stderr.find("admin_addr=")? + "admin_addr=".len();
            stderr[start..]
                .split(char::is_whitespace)
                .next()?
                .parse::<SocketAddr>()
                .ok()
        });
        found.unwrap_or_else(|| panic!("no admin_addr=IP:PORT on stderr:\n{}", self.stderr()))
    }

    /// Send `signal` to the server process.
    pub fn signal(&self, signal: libc::c_int) {
        let pid = libc::pid_t::try_from(self.pid()).expect("pid fits pid_t");
        // SAFETY: kill() only sends a signal to our own child process.
        let result = unsafe { libc::kill(pid, signal) };
        assert_eq!(result, 0, "kill({pid}, {signal}) failed");
    }

    /// Wait for the process to exit; `None` if it is still running after
    /// `timeout`. The process is reaped and forgotten once it has exited.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let process = self.process.as_mut().expect("server is running");
        let status = wait_with_timeout(&mut process.child, timeout)?;
        let process = self.process.take().expect("server is running");
        for reader in process.readers {
            let _ = reader.join();
        }
        Some(status)
    }

    /// SIGTERM, then assert a clean exit (code 0) within [`STOP_TIMEOUT`].
    /// Returns the process's stderr.
    pub fn stop(&mut self) -> String {
        self.stop_with(libc::SIGTERM)
    }

    /// Like [`Server::stop`] with another signal (SIGINT).
    pub fn stop_with(&mut self, signal: libc::c_int) -> String {
        self.signal(signal);
        let Some(status) = self.wait_exit(STOP_TIMEOUT) else {
            panic!(
                "ringstore did not exit within {STOP_TIMEOUT:?} of signal {signal}\n{}",
                self.stderr()
            );
        };
        let output = self.stderr();
        assert_eq!(
            status.code(),
            Some(0),
            "ringstore must exit 0 on signal {signal}, got {status}\n--- stderr ---\n{output}"
        );
        output
    }

    /// Stop (asserting a clean exit) and start again with the same options
    /// on the same data directory. The S3 port may change.
    pub fn restart(&mut self) {
        self.stop();
        let options = self.options.clone();
        if let Err(exited) = self.launch(&options) {
            panic!("ringstore did not restart: {exited}");
        }
    }

    /// Start a stopped server again with other options on the same
    /// temporary directory; `Err` when the process exits during its start.
    pub fn start_again(&mut self, options: &ServerOptions) -> Result<(), Exited> {
        self.launch(options)
    }

    /// An SDK client with the server's credentials and region.
    pub fn client(&self) -> aws_sdk_s3::Client {
        self.client_with(&self.keys, self.region())
    }

    /// An SDK client with other credentials or another region.
    pub fn client_with(&self, keys: &Keys, region: &str) -> aws_sdk_s3::Client {
        let credentials = aws_sdk_s3::config::Credentials::from_keys(
            &keys.access_key_id,
            &keys.secret_access_key,
            None,
        );
        let config = aws_sdk_s3::Config::builder()
            .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
            .region(aws_sdk_s3::config::Region::new(region.to_owned()))
            .endpoint_url(self.endpoint())
            .credentials_provider(credentials)
            .force_path_style(true)
            .build();
        aws_sdk_s3::Client::from_conf(config)
    }

    /// A raw connection to the S3 listener.
    pub fn connect(&self) -> RawConn {
        RawConn::connect(self.addr)
    }

    /// A request to this server, with `Host: 127.0.0.1:PORT`.
    pub fn request(&self, method: &str, target: &str) -> RawRequest {
        RawRequest::new(method, target).host(&self.addr.to_string())
    }

    /// `request` signed with the server's credentials and region.
    pub fn sign(&self, request: &RawRequest) -> Vec<u8> {
        request.sign(&self.keys, self.region())
    }

    /// One request on a fresh connection; returns the response.
    pub fn send(&self, bytes: &[u8]) -> RawResponse {
        let mut conn = self.connect();
        conn.send(bytes);
        conn.response_for(bytes)
    }

    /// Sign `request` with the server's keys, send it on a fresh connection.
    pub fn send_signed(&self, request: &RawRequest) -> RawResponse {
        self.send(&self.sign(request))
    }

    /// GET `path` from the admin listener.
    pub fn admin_get(&self, path: &str) -> RawResponse {
        let mut conn = RawConn::connect(self.admin_addr);
        conn.send(
            format!(
                "GET {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
                self.admin_addr
            )
            .as_bytes(),
        );
        conn.response()
    }
}

impl Server {
    /// `ringstore_open_connections` of each core, from `/metrics`.
    pub fn open_connections_by_core(&self) -> Vec<u64> {
        let text = self.admin_get("/metrics").text();
        let mut counts = Vec::new();
        loop {
            let series = format!("ringstore_open_connections{{core=\"{}\"}} ", counts.len());
            let Some(value) = text.lines().find_map(|line| line.strip_prefix(&series)) else {
                break;
            };
            counts.push(
                value
                    .trim()
                    .parse::<u64>()
                    .unwrap_or_else(|_| panic!("a gauge of connections: {series}{value}")),
            );
        }
        counts
    }

    /// A raw connection that the kernel handed to `core` (the cores share
    /// the port through `SO_REUSEPORT`, so this tries connections until
    /// one lands there). No other S3 connection may be open meanwhile.
    pub fn connect_on_core(&self, core: usize) -> RawConn {
        for _ in 0..64 {
            let conn = self.connect();
            let counts = eventually(Duration::from_secs(2), || {
                let counts = self.open_connections_by_core();
                (counts.iter().sum::<u64>() == 1).then_some(counts)
            })
            .expect("the new connection shows in the metrics");
            if counts.get(core) == Some(&1) {
                return conn;
            }
            drop(conn);
            eventually(Duration::from_secs(2), || {
                (self.open_connections_by_core().iter().sum::<u64>() == 0).then_some(())
            })
            .expect("a closed connection leaves the metrics");
        }
        panic!("no connection landed on core {core} in 64 tries");
    }
}

/// The value of the metric line that starts with `series` (labels
/// included) followed by a space.
pub fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|line| {
        let value = line.strip_prefix(series)?.strip_prefix(' ')?;
        value.trim().parse().ok()
    })
}

impl Drop for Server {
    fn drop(&mut self) {
        if std::thread::panicking() {
            // The test failed: the server's side of the story helps most.
            eprintln!("--- ringstore stderr ---\n{}", self.stderr());
        }
        if let Some(mut process) = self.process.take() {
            let _ = process.child.kill();
            let _ = process.child.wait();
            for reader in process.readers {
                let _ = reader.join();
            }
        }
    }
}

/// The binary under test: the one cargo built for these tests, unless
/// `RINGSTORE_TEST_BIN` names another (a release build, say).
pub fn binary() -> PathBuf {
    std::env::var_os("RINGSTORE_TEST_BIN").map_or_else(
        || PathBuf::from(env!("CARGO_BIN_EXE_ringstore")),
        PathBuf::from,
    )
}

/// Poll `child` until it exits or `timeout` passes.
fn wait_with_timeout(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait on ringstore") {
            return Some(status);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A loopback address whose port was free a moment ago (bound, then
/// released). Used for the admin listener, whose bound port the server only
/// logs.
pub fn free_local_addr() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local address")
}

/// `text` without ANSI escape sequences (`ESC [ ... letter`).
pub fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            if chars.next() == Some('[') {
                for c in chars.by_ref() {
                    if c.is_ascii_alphabetic() {
                        break;
                    }
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The key pair in `<data-dir>/credentials.toml`.
pub fn read_stored_keys(data_dir: &Path) -> Keys {
    let path = data_dir.join("credentials.toml");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|error| panic!("cannot read {}: {error}", path.display()));
    let table: toml::Table = toml::from_str(&text)
        .unwrap_or_else(|error| panic!("{} is not TOML: {error}\n{text}", path.display()));
    let field = |name: &str| {
        table
            .get(name)
            .and_then(toml::Value::as_str)
            .unwrap_or_else(|| panic!("{} has no string {name}:\n{text}", path.display()))
            .to_owned()
    };
    Keys::new(&field("access_key_id"), &field("secret_access_key"))
}

/// The number of cores the server uses by default.
pub fn online_cores() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZero::get)
}

// ---------------------------------------------------------------------------
// SDK error helpers
// ---------------------------------------------------------------------------

/// What an S3 error looked like through the SDK.
#[derive(Debug)]
pub struct SdkFailure {
    pub status: u16,
    /// `<Code>`, or the SDK's stand-in for bodiless responses (`NotFound`
    /// for a HEAD 404).
    pub code: Option<String>,
    pub request_id: Option<String>,
    pub body: String,
}

/// The HTTP status, S3 code and request id of a failed SDK call; panics if
/// the call failed without a response (a connection or build error).
pub fn sdk_failure<E>(error: &SdkError<E, HttpResponse>) -> SdkFailure
where
    E: ProvideErrorMetadata + std::fmt::Debug,
{
    let Some(response) = error.raw_response() else {
        panic!("the request got no HTTP response: {error:?}");
    };
    SdkFailure {
        status: response.status().as_u16(),
        code: error.code().map(str::to_owned),
        request_id: response
            .headers()
            .get("x-amz-request-id")
            .map(str::to_owned),
        body: response
            .body()
            .bytes()
            .map(|bytes| String::from_utf8_lossy(bytes).into_owned())
            .unwrap_or_default(),
    }
}

/// Unwrap the error of an SDK call that must fail, with status and code.
#[track_caller]
pub fn expect_sdk_error<T, E>(
    result: Result<T, SdkError<E, HttpResponse>>,
    status: u16,
    code: &str,
) -> SdkFailure
where
    T: std::fmt::Debug,
    E: ProvideErrorMetadata + std::fmt::Debug,
{
    let error = match result {
        Ok(output) => panic!("expected {status} {code}, the call succeeded: {output:?}"),
        Err(error) => error,
    };
    let failure = sdk_failure(&error);
    assert_eq!(
        (failure.status, failure.code.as_deref()),
        (status, Some(code)),
        "unexpected error: {failure:?}"
    );
    let request_id = failure.request_id.as_deref().unwrap_or("");
    assert!(
        !request_id.is_empty(),
        "every response needs x-amz-request-id: {failure:?}"
    );
    failure
}

// ---------------------------------------------------------------------------
// Raw HTTP
// ---------------------------------------------------------------------------

/// A parsed HTTP response.
#[derive(Debug, Clone)]
pub struct RawResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl RawResponse {
    /// The first header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(field, _)| field.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The text of the first `<name>...</name>` element of the body.
    pub fn xml_element(&self, name: &str) -> Option<String> {
        xml_element(&self.text(), name)
    }

    pub fn request_id(&self) -> &str {
        self.header("x-amz-request-id")
            .unwrap_or_else(|| panic!("response without x-amz-request-id: {self:?}"))
    }

    /// Asserts an S3 error document with this status and code, whose
    /// `<RequestId>` is the `x-amz-request-id` header. Returns the body.
    #[track_caller]
    pub fn assert_s3_error(&self, status: u16, code: &str) -> String {
        let text = self.text();
        assert_eq!(
            (self.status, self.xml_element("Code").as_deref()),
            (status, Some(code)),
            "unexpected response: {} {:?}\n{text}",
            self.status,
            self.headers
        );
        let request_id = self.request_id().to_owned();
        assert!(!request_id.is_empty(), "empty x-amz-request-id");
        assert!(
            self.header("content-type")
                .is_some_and(|value| value.contains("xml")),
            "an S3 error is XML: {:?}",
            self.headers
        );
        assert!(text.contains("<Error>"), "no <Error> element: {text}");
        assert!(
            text.trim_end().ends_with("</Error>"),
            "<Error> is not the document: {text}"
        );
        assert!(
            self.xml_element("Message").is_some(),
            "no <Message>: {text}"
        );
        assert!(
            text.contains("<Resource>") || text.contains("<Resource/>"),
            "no <Resource>: {text}"
        );
        assert_eq!(
            self.xml_element("RequestId").as_deref(),
            Some(request_id.as_str()),
            "<RequestId> must match x-amz-request-id: {text}"
        );
        text
    }

    /// Whether the server announced that it closes the connection.
    pub fn closes(&self) -> bool {
        self.header("connection")
            .is_some_and(|value| value.eq_ignore_ascii_case("close"))
    }
}

pub fn xml_element(text: &str, name: &str) -> Option<String> {
    let open = format!("<{name}>");
    let close = format!("</{name}>");
    let start = text.find(&open)? + open.len();
    let end = start + text[start..].find(&close)?;
    Some(text[start..end].to_owned())
}

/// Every `<name>...</name>` element text, in order.
pub fn xml_elements(text: &str, name: &str) -> Vec<String> {
    let open = format!("<{name}>");
    let close = format!("</{name}>");
    let mut found = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find(&open) {
        let after = &rest[start + open.len()..];
        let Some(end) = after.find(&close) else { break };
        found.push(after[..end].to_owned());
        rest = &after[end + close.len()..];
    }
    found
}

/// One client connection speaking HTTP/1.1 byte by byte.
pub struct RawConn {
    /// `None` for a parser over bytes that were already received.
    stream: Option<TcpStream>,
    /// Bytes read but not yet consumed (the start of the next response).
    buf: Vec<u8>,
}

/// How a connection ended when a test waited for it to close.
#[derive(Debug, PartialEq, Eq)]
pub enum Closed {
    /// The server closed (FIN or RST).
    Closed,
    /// Nothing happened within the wait: the connection is still open.
    StillOpen,
}

impl RawConn {
    pub fn connect(addr: SocketAddr) -> RawConn {
        let stream = TcpStream::connect_timeout(&addr, RAW_READ_TIMEOUT)
            .unwrap_or_else(|error| panic!("connect to {addr}: {error}"));
        stream.set_nodelay(true).expect("set TCP_NODELAY");
        stream
            .set_read_timeout(Some(RAW_READ_TIMEOUT))
            .expect("set read timeout");
        stream
            .set_write_timeout(Some(RAW_READ_TIMEOUT))
            .expect("set write timeout");
        RawConn {
            stream: Some(stream),
            buf: Vec::new(),
        }
    }

    pub fn stream(&mut self) -> &mut TcpStream {
        self.stream.as_mut().expect("a connected RawConn")
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.stream().write_all(bytes).expect("send to ringstore");
    }

    /// Send, but tolerate a server that already closed (for requests the
    /// server may refuse before it has read them all).
    pub fn try_send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream().write_all(bytes)
    }

    /// Read one response to a request that was not a HEAD.
    #[track_caller]
    pub fn response(&mut self) -> RawResponse {
        self.try_response(false)
            .unwrap_or_else(|error| panic!("reading a response failed: {error}"))
    }

    /// Read one response to a HEAD request (no body, whatever the
    /// Content-Length says).
    #[track_caller]
    pub fn head_response(&mut self) -> RawResponse {
        self.try_response(true)
            .unwrap_or_else(|error| panic!("reading a response failed: {error}"))
    }

    /// Read the response to `request` (a HEAD if it starts with `HEAD `).
    #[track_caller]
    pub fn response_for(&mut self, request: &[u8]) -> RawResponse {
        if request.starts_with(b"HEAD ") {
            self.head_response()
        } else {
            self.response()
        }
    }

    /// Read one response (an interim 1xx is returned as it is).
    pub fn try_response(&mut self, to_head: bool) -> std::io::Result<RawResponse> {
        let head_end = loop {
            if let Some(position) = find(&self.buf, b"\r\n\r\n") {
                break position + 4;
            }
            if !self.fill()? {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    format!(
                        "connection closed before a complete response head; got {:?}",
                        String::from_utf8_lossy(&self.buf)
                    ),
                ));
            }
        };
        let head = String::from_utf8_lossy(&self.buf[..head_end]).into_owned();
        self.buf.drain(..head_end);
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap_or_default();
        let mut parts = status_line.splitn(3, ' ');
        let version = parts.next().unwrap_or_default();
        assert!(
            version == "HTTP/1.1" || version == "HTTP/1.0",
            "bad status line {status_line:?}"
        );
        let status: u16 = parts
            .next()
            .and_then(|code| code.parse().ok())
            .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
        let headers: Vec<(String, String)> = lines
            .filter(|line| !line.is_empty())
            .map(|line| {
                let (name, value) = line
                    .split_once(':')
                    .unwrap_or_else(|| panic!("bad header line {line:?}"));
                (name.trim().to_owned(), value.trim().to_owned())
            })
            .collect();
        let mut response = RawResponse {
            status,
            headers,
            body: Vec::new(),
        };
        if (100..200).contains(&status) || status == 204 || status == 304 || to_head {
            return Ok(response);
        }
        if response
            .header("transfer-encoding")
            .is_some_and(|value| value.to_ascii_lowercase().contains("chunked"))
        {
            response.body = self.read_chunked()?;
            return Ok(response);
        }
        if let Some(length) = response.header("content-length") {
            let length: usize = length
                .parse()
                .unwrap_or_else(|_| panic!("bad Content-Length {length:?}"));
            while self.buf.len() < length {
                if !self.fill()? {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        "connection closed inside a response body",
                    ));
                }
            }
            response.body = self.buf.drain(..length).collect();
        } else {
            // No framing: the body runs to the end of the connection.
            while self.fill()? {}
            response.body = std::mem::take(&mut self.buf);
        }
        Ok(response)
    }

    fn read_chunked(&mut self) -> std::io::Result<Vec<u8>> {
        let mut body = Vec::new();
        loop {
            let line_end = loop {
                if let Some(position) = find(&self.buf, b"\r\n") {
                    break position;
                }
                if !self.fill()? {
                    return Err(std::io::ErrorKind::UnexpectedEof.into());
                }
            };
            let line = String::from_utf8_lossy(&self.buf[..line_end]).into_owned();
            self.buf.drain(..line_end + 2);
            let size_text = line.split(';').next().unwrap_or_default().trim();
            let size = usize::from_str_radix(size_text, 16)
                .unwrap_or_else(|_| panic!("bad chunk size line {line:?}"));
            if size == 0 {
                // Trailers up to the empty line.
                loop {
                    let end = loop {
                        if let Some(position) = find(&self.buf, b"\r\n") {
                            break position;
                        }
                        if !self.fill()? {
                            return Err(std::io::ErrorKind::UnexpectedEof.into());
                        }
                    };
                    self.buf.drain(..end + 2);
                    if end == 0 {
                        return Ok(body);
                    }
                }
            }
            while self.buf.len() < size + 2 {
                if !self.fill()? {
                    return Err(std::io::ErrorKind::UnexpectedEof.into());
                }
            }
            body.extend(self.buf.drain(..size));
            self.buf.drain(..2);
        }
    }

    /// Read more bytes; `false` at end of stream.
    fn fill(&mut self) -> std::io::Result<bool> {
        let Some(stream) = self.stream.as_mut() else {
            return Ok(false);
        };
        let mut chunk = [0_u8; 16 * 1024];
        let n = stream.read(&mut chunk)?;
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(n > 0)
    }

    /// Read until the server closes the connection or `within` passes.
    /// Returns every byte that arrived before the close, or `None` when the
    /// connection is still open at the deadline (bytes that arrived stay
    /// buffered for [`RawConn::response`]).
    pub fn read_until_closed(&mut self, within: Duration) -> Option<Vec<u8>> {
        let deadline = Instant::now() + within;
        let mut chunk = [0_u8; 4096];
        let outcome = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break None;
            }
            self.stream()
                .set_read_timeout(Some(left))
                .expect("set read timeout");
            match self.stream().read(&mut chunk) {
                Ok(0) => break Some(std::mem::take(&mut self.buf)),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(error)
                    if matches!(
                        error.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    break None;
                }
                Err(error)
                    if matches!(
                        error.kind(),
                        std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::ConnectionAborted
                    ) =>
                {
                    break Some(std::mem::take(&mut self.buf));
                }
                Err(error) if error.kind() == std::io::ErrorKind::Interrupted => {}
                Err(error) => panic!("reading from the connection failed: {error}"),
            }
        };
        self.stream()
            .set_read_timeout(Some(RAW_READ_TIMEOUT))
            .expect("set read timeout");
        outcome
    }

    /// Wait up to `within` for the server to close the connection. Any byte
    /// that arrives instead is a test failure (it would be an unexpected
    /// response).
    #[track_caller]
    pub fn wait_closed(&mut self, within: Duration) -> Closed {
        assert!(
            self.buf.is_empty(),
            "unread bytes before the close: {:?}",
            String::from_utf8_lossy(&self.buf)
        );
        let outcome = self.read_until_closed(within);
        assert!(
            self.buf.is_empty(),
            "expected the connection to close, got bytes: {:?}",
            String::from_utf8_lossy(&self.buf)
        );
        match outcome {
            None => Closed::StillOpen,
            Some(bytes) if bytes.is_empty() => Closed::Closed,
            Some(bytes) => panic!(
                "expected the connection to close, got bytes: {:?}",
                String::from_utf8_lossy(&bytes)
            ),
        }
    }

    /// Asserts the server closes the connection within `within`.
    #[track_caller]
    pub fn assert_closed(&mut self, within: Duration) {
        assert_eq!(
            self.wait_closed(within),
            Closed::Closed,
            "the server must close the connection within {within:?}"
        );
    }
}

/// Parse one complete response out of `bytes` (what arrived before a close).
pub fn parse_response(bytes: &[u8], to_head: bool) -> RawResponse {
    let mut parser = RawConn {
        stream: None,
        buf: bytes.to_vec(),
    };
    parser.try_response(to_head).unwrap_or_else(|error| {
        panic!("cannot parse {:?}: {error}", String::from_utf8_lossy(bytes))
    })
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

// ---------------------------------------------------------------------------
// SigV4, written from the AWS documentation
// ---------------------------------------------------------------------------

pub const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
pub const UNSIGNED_PAYLOAD: &str = "UNSIGNED-PAYLOAD";
pub const STREAMING_PAYLOAD: &str = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD";

pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

fn hmac_sha256(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

/// `(YYYYMMDDTHHMMSSZ, YYYYMMDD)` of a UTC time.
pub fn amz_date(time: SystemTime) -> (String, String) {
    let seconds = time
        .duration_since(UNIX_EPOCH)
        .expect("time after 1970")
        .as_secs();
    let days = i64::try_from(seconds / 86_400).expect("days fit i64");
    let second_of_day = seconds % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let date = format!("{year:04}{month:02}{day:02}");
    let stamp = format!(
        "{date}T{:02}{:02}{:02}Z",
        second_of_day / 3600,
        second_of_day / 60 % 60,
        second_of_day % 60
    );
    (stamp, date)
}

pub fn signing_key(secret: &str, date: &str, region: &str) -> Vec<u8> {
    let k_date = hmac_sha256(format!("AWS4{secret}").as_bytes(), date.as_bytes());
    let k_region = hmac_sha256(&k_date, region.as_bytes());
    let k_service = hmac_sha256(&k_region, b"s3");
    hmac_sha256(&k_service, b"aws4_request")
}

/// The canonical query string of an already percent-encoded query: pairs
/// sorted by name then value, a valueless parameter as `name=`.
pub fn canonical_query(query: &str) -> String {
    let mut pairs: Vec<(&str, &str)> = query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| pair.split_once('=').unwrap_or((pair, "")))
        .collect();
    pairs.sort_unstable();
    pairs
        .iter()
        .map(|(name, value)| format!("{name}={value}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// Percent-encode as `SigV4` asks (unreserved characters kept).
pub fn uri_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 3);
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(byte));
        } else {
            let _ = write!(out, "%{byte:02X}");
        }
    }
    out
}

/// The pieces of one `SigV4` computation, for tests that check them.
#[derive(Debug, Clone)]
pub struct Signing {
    pub canonical_request: String,
    pub string_to_sign: String,
    pub signature: String,
    pub signed_headers: String,
    pub scope: String,
}

/// `SigV4` over explicit parts. `headers` are the signed headers as
/// (name, value) pairs.
#[allow(clippy::too_many_arguments)]
pub fn sign_parts(
    keys: &Keys,
    region: &str,
    method: &str,
    path: &str,
    query: &str,
    headers: &[(String, String)],
    payload_hash: &str,
    time: SystemTime,
) -> Signing {
    let (stamp, date) = amz_date(time);
    let mut sorted: Vec<(String, String)> = headers
        .iter()
        .map(|(name, value)| {
            let value = value.split_whitespace().collect::<Vec<_>>().join(" ");
            (name.to_ascii_lowercase(), value)
        })
        .collect();
    sorted.sort();
    let canonical_headers = sorted.iter().fold(String::new(), |mut out, (name, value)| {
        let _ = writeln!(out, "{name}:{value}");
        out
    });
    let signed_headers = sorted
        .iter()
        .map(|(name, _)| name.as_str())
        .collect::<Vec<_>>()
        .join(";");
    let canonical_request = format!(
        "{method}\n{path}\n{}\n{canonical_headers}\n{signed_headers}\n{payload_hash}",
        canonical_query(query)
    );
    let scope = format!("{date}/{region}/s3/aws4_request");
    let string_to_sign = format!(
        "AWS4-HMAC-SHA256\n{stamp}\n{scope}\n{}",
        sha256_hex(canonical_request.as_bytes())
    );
    let key = signing_key(&keys.secret_access_key, &date, region);
    let signature = hex::encode(hmac_sha256(&key, string_to_sign.as_bytes()));
    Signing {
        canonical_request,
        string_to_sign,
        signature,
        signed_headers,
        scope,
    }
}

/// Signature of one aws-chunked chunk (`STREAMING-AWS4-HMAC-SHA256-PAYLOAD`).
pub fn chunk_signature(
    keys: &Keys,
    region: &str,
    time: SystemTime,
    previous_signature: &str,
    chunk: &[u8],
) -> String {
    let (stamp, date) = amz_date(time);
    let scope = format!("{date}/{region}/s3/aws4_request");
    let string_to_sign = format!(
        "AWS4-HMAC-SHA256-PAYLOAD\n{stamp}\n{scope}\n{previous_signature}\n{EMPTY_SHA256}\n{}",
        sha256_hex(chunk)
    );
    let key = signing_key(&keys.secret_access_key, &date, region);
    hex::encode(hmac_sha256(&key, string_to_sign.as_bytes()))
}

/// Signature of the trailer section of a signed aws-chunked body
/// (`STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER`); `canonical_trailers` is
/// every trailer as `name:value\n`.
pub fn trailer_signature(
    keys: &Keys,
    region: &str,
    time: SystemTime,
    previous_signature: &str,
    canonical_trailers: &str,
) -> String {
    let (stamp, date) = amz_date(time);
    let scope = format!("{date}/{region}/s3/aws4_request");
    let string_to_sign = format!(
        "AWS4-HMAC-SHA256-TRAILER\n{stamp}\n{scope}\n{previous_signature}\n{}",
        sha256_hex(canonical_trailers.as_bytes())
    );
    let key = signing_key(&keys.secret_access_key, &date, region);
    hex::encode(hmac_sha256(&key, string_to_sign.as_bytes()))
}

/// Standard base64 with padding (for checksum headers).
pub fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for group in bytes.chunks(3) {
        let b = [
            group[0],
            *group.get(1).unwrap_or(&0),
            *group.get(2).unwrap_or(&0),
        ];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        for (index, shift) in [18, 12, 6, 0].into_iter().enumerate() {
            if index <= group.len() {
                out.push(char::from(ALPHABET[(n >> shift & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// An HTTP request to build byte by byte, then send unsigned, signed or
/// presigned.
#[derive(Debug, Clone)]
pub struct RawRequest {
    pub method: String,
    /// The path as sent (already percent-encoded).
    pub path: String,
    /// The query as sent, without `?` (already percent-encoded).
    pub query: String,
    pub host: String,
    /// Headers sent and signed (every `x-amz-*` must be signed).
    pub signed_headers: Vec<(String, String)>,
    /// Headers sent but not signed.
    pub unsigned_headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Send `Content-Length` (always when the body is not empty).
    pub content_length: Option<usize>,
    pub time: SystemTime,
    /// The `x-amz-content-sha256` value; `None`: the body's SHA-256.
    pub content_sha256: Option<String>,
    /// `SigV4` header auth dates the request with a signed `Date` header
    /// instead of `x-amz-date`.
    pub dated_by_date_header: bool,
    /// The bucket when `host` names it (virtual-hosted style): `SigV2`
    /// signs it in front of the path.
    pub virtual_host_bucket: Option<String>,
}

impl RawRequest {
    /// `target` is the request-target: a path with an optional `?query`.
    pub fn new(method: &str, target: &str) -> RawRequest {
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        RawRequest {
            method: method.to_owned(),
            path: path.to_owned(),
            query: query.to_owned(),
            host: "localhost".to_owned(),
            signed_headers: Vec::new(),
            unsigned_headers: Vec::new(),
            body: Vec::new(),
            content_length: None,
            time: SystemTime::now(),
            content_sha256: None,
            dated_by_date_header: false,
            virtual_host_bucket: None,
        }
    }

    /// Virtual-hosted style: `Host: <bucket>.<domain>` (the request's path
    /// is then the key), for servers whose virtual-host domains include
    /// `domain`.
    #[must_use]
    pub fn virtual_host(mut self, bucket: &str, domain: &str) -> Self {
        self.host = format!("{bucket}.{domain}");
        self.virtual_host_bucket = Some(bucket.to_owned());
        self
    }

    /// Date the `SigV4` header signature with a `Date` header (an
    /// HTTP-date, signed) and send no `x-amz-date`.
    #[must_use]
    pub fn dated_by_date_header(mut self) -> Self {
        self.dated_by_date_header = true;
        self
    }

    #[must_use]
    pub fn host(mut self, host: &str) -> Self {
        host.clone_into(&mut self.host);
        self
    }

    /// A header that is sent and signed.
    #[must_use]
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.signed_headers
            .push((name.to_owned(), value.to_owned()));
        self
    }

    /// A header that is sent but not signed.
    #[must_use]
    pub fn unsigned_header(mut self, name: &str, value: &str) -> Self {
        self.unsigned_headers
            .push((name.to_owned(), value.to_owned()));
        self
    }

    #[must_use]
    pub fn body(mut self, body: &[u8]) -> Self {
        self.body = body.to_vec();
        self
    }

    /// Declare this Content-Length whatever the body is (for requests whose
    /// body is sent later, or never).
    #[must_use]
    pub fn content_length(mut self, length: usize) -> Self {
        self.content_length = Some(length);
        self
    }

    #[must_use]
    pub fn time(mut self, time: SystemTime) -> Self {
        self.time = time;
        self
    }

    #[must_use]
    pub fn content_sha256(mut self, value: &str) -> Self {
        self.content_sha256 = Some(value.to_owned());
        self
    }

    pub fn target(&self) -> String {
        if self.query.is_empty() {
            self.path.clone()
        } else {
            format!("{}?{}", self.path, self.query)
        }
    }

    fn length_header(&self) -> Option<(String, String)> {
        let length = self
            .content_length
            .or((!self.body.is_empty()).then_some(self.body.len()))?;
        Some(("Content-Length".to_owned(), length.to_string()))
    }

    /// Head and body with exactly these headers after `Host`.
    fn encode(&self, target: &str, headers: &[(String, String)]) -> Vec<u8> {
        let mut out = format!(
            "{} {target} HTTP/1.1\r\nHost: {}\r\n",
            self.method, self.host
        );
        for (name, value) in headers {
            let _ = write!(out, "{name}: {value}\r\n");
        }
        out.push_str("\r\n");
        let mut bytes = out.into_bytes();
        bytes.extend_from_slice(&self.body);
        bytes
    }

    /// The request without any authentication.
    pub fn unsigned(&self) -> Vec<u8> {
        let mut headers = self.signed_headers.clone();
        headers.extend(self.unsigned_headers.iter().cloned());
        headers.extend(self.length_header());
        self.encode(&self.target(), &headers)
    }

    /// The signature this request gets in the `Authorization` form.
    pub fn signature(&self, keys: &Keys, region: &str) -> (Signing, Vec<(String, String)>) {
        let payload_hash = self
            .content_sha256
            .clone()
            .unwrap_or_else(|| sha256_hex(&self.body));
        let (stamp, _) = amz_date(self.time);
        let date = if self.dated_by_date_header {
            ("date".to_owned(), httpdate::fmt_http_date(self.time))
        } else {
            ("x-amz-date".to_owned(), stamp)
        };
        let mut signed = vec![
            ("host".to_owned(), self.host.clone()),
            date,
            ("x-amz-content-sha256".to_owned(), payload_hash.clone()),
        ];
        signed.extend(self.signed_headers.iter().cloned());
        let signature = sign_parts(
            keys,
            region,
            &self.method,
            &self.path,
            &self.query,
            &signed,
            &payload_hash,
            self.time,
        );
        (signature, signed)
    }

    /// The request signed in the `Authorization` header.
    pub fn sign(&self, keys: &Keys, region: &str) -> Vec<u8> {
        let (signature, signed) = self.signature(keys, region);
        let authorization = format!(
            "AWS4-HMAC-SHA256 Credential={}/{}, SignedHeaders={}, Signature={}",
            keys.access_key_id, signature.scope, signature.signed_headers, signature.signature
        );
        let mut headers: Vec<(String, String)> = signed.into_iter().skip(1).collect();
        headers.push(("Authorization".to_owned(), authorization));
        headers.extend(self.unsigned_headers.iter().cloned());
        headers.extend(self.length_header());
        self.encode(&self.target(), &headers)
    }

    /// The presigned form: `X-Amz-*` query parameters, payload
    /// `UNSIGNED-PAYLOAD`, valid for `expires_seconds` from `self.time`.
    pub fn presign(&self, keys: &Keys, region: &str, expires_seconds: u64) -> Vec<u8> {
        let target = self.presigned_target(keys, region, expires_seconds);
        let mut headers = self.signed_headers.clone();
        headers.extend(self.unsigned_headers.iter().cloned());
        headers.extend(self.length_header());
        self.encode(&target, &headers)
    }

    /// Only the presigned request-target (path and query).
    pub fn presigned_target(&self, keys: &Keys, region: &str, expires_seconds: u64) -> String {
        let (stamp, date) = amz_date(self.time);
        let scope = format!("{date}/{region}/s3/aws4_request");
        let mut signed = vec![("host".to_owned(), self.host.clone())];
        signed.extend(self.signed_headers.iter().cloned());
        let mut names: Vec<String> = signed
            .iter()
            .map(|(name, _)| name.to_ascii_lowercase())
            .collect();
        names.sort();
        let mut query = format!(
            "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential={}&X-Amz-Date={stamp}\
             &X-Amz-Expires={expires_seconds}&X-Amz-SignedHeaders={}",
            uri_encode(&format!("{}/{scope}", keys.access_key_id)),
            uri_encode(&names.join(";")),
        );
        if !self.query.is_empty() {
            query = format!("{}&{query}", self.query);
        }
        let signature = sign_parts(
            keys,
            region,
            &self.method,
            &self.path,
            &query,
            &signed,
            UNSIGNED_PAYLOAD,
            self.time,
        );
        format!(
            "{}?{query}&X-Amz-Signature={}",
            self.path, signature.signature
        )
    }
}

impl RawRequest {
    /// The `SigV2` canonicalized resource of this request.
    pub fn sigv2_resource(&self) -> String {
        sigv2_canonical_resource(self.virtual_host_bucket.as_deref(), &self.path, &self.query)
    }

    /// The value of one positional header of the `SigV2` string to sign.
    fn sigv2_positional(&self, name: &str) -> String {
        self.signed_headers
            .iter()
            .find(|(field, _)| field.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.trim().to_owned())
            .unwrap_or_default()
    }

    fn sigv2_amz_headers(&self) -> Vec<(String, String)> {
        self.signed_headers
            .iter()
            .filter(|(name, _)| name.to_ascii_lowercase().starts_with("x-amz-"))
            .cloned()
            .collect()
    }

    /// The `SigV2` string to sign with this Date line.
    pub fn sigv2_string_to_sign(&self, date_line: &str) -> String {
        sigv2_string_to_sign(
            &self.method,
            &self.sigv2_positional("content-md5"),
            &self.sigv2_positional("content-type"),
            date_line,
            &self.sigv2_amz_headers(),
            &self.sigv2_resource(),
        )
    }

    /// The request signed with `SigV2` in the `Authorization` header, dated
    /// by a `Date` header at `self.time` (or by an `x-amz-date` header when
    /// the request has one, which then leaves the Date line empty). The
    /// body is not signed.
    pub fn sign_v2(&self, keys: &Keys) -> Vec<u8> {
        let has_amz_date = self
            .signed_headers
            .iter()
            .any(|(name, _)| name.eq_ignore_ascii_case("x-amz-date"));
        let date = httpdate::fmt_http_date(self.time);
        let date_line = if has_amz_date { "" } else { date.as_str() };
        let signature = sigv2_signature(
            &keys.secret_access_key,
            &self.sigv2_string_to_sign(date_line),
        );
        let mut headers = vec![("Date".to_owned(), date.clone())];
        headers.extend(self.signed_headers.iter().cloned());
        headers.push((
            "Authorization".to_owned(),
            format!("AWS {}:{signature}", keys.access_key_id),
        ));
        headers.extend(self.unsigned_headers.iter().cloned());
        headers.extend(self.length_header());
        self.encode(&self.target(), &headers)
    }

    /// The `SigV2` presigned form, valid until `expires` (Unix seconds).
    /// The request's own headers are sent and signed as they are.
    pub fn presign_v2(&self, keys: &Keys, expires: u64) -> Vec<u8> {
        let target = self.presigned_target_v2(keys, expires);
        let mut headers = self.signed_headers.clone();
        headers.extend(self.unsigned_headers.iter().cloned());
        headers.extend(self.length_header());
        self.encode(&target, &headers)
    }

    /// Only the `SigV2` presigned request-target (path and query).
    pub fn presigned_target_v2(&self, keys: &Keys, expires: u64) -> String {
        let signature = sigv2_signature(
            &keys.secret_access_key,
            &self.sigv2_string_to_sign(&expires.to_string()),
        );
        let auth = format!(
            "AWSAccessKeyId={}&Expires={expires}&Signature={}",
            uri_encode(&keys.access_key_id),
            uri_encode(&signature)
        );
        if self.query.is_empty() {
            format!("{}?{auth}", self.path)
        } else {
            format!("{}?{}&{auth}", self.path, self.query)
        }
    }
}

// ---------------------------------------------------------------------------
// SigV2, written from AWS's "Signing and authenticating REST requests"
// ---------------------------------------------------------------------------

/// The sub-resources AWS's page says the canonicalized resource includes,
/// with `delete` and the `response-*` overrides it names too.
pub const SIGV2_SUB_RESOURCES: &[&str] = &[
    "acl",
    "delete",
    "lifecycle",
    "location",
    "logging",
    "notification",
    "partNumber",
    "policy",
    "requestPayment",
    "response-cache-control",
    "response-content-disposition",
    "response-content-encoding",
    "response-content-language",
    "response-content-type",
    "response-expires",
    "torrent",
    "uploadId",
    "uploads",
    "versionId",
    "versioning",
    "versions",
    "website",
];

/// `CanonicalizedResource`: `/bucket` when the bucket is in the host, the
/// path as sent (a bucket's own path with its trailing slash), then the
/// sub-resources, decoded and sorted by name.
pub fn sigv2_canonical_resource(
    virtual_host_bucket: Option<&str>,
    path: &str,
    query: &str,
) -> String {
    let mut resource = match virtual_host_bucket {
        Some(bucket) => format!("/{bucket}{path}"),
        None => path.to_owned(),
    };
    if virtual_host_bucket.is_none() && path.len() > 1 && !path[1..].contains('/') {
        resource.push('/');
    }
    let mut sub_resources: Vec<(String, String)> = query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| pair.split_once('=').unwrap_or((pair, "")))
        .filter(|(name, _)| SIGV2_SUB_RESOURCES.contains(name))
        .map(|(name, value)| (name.to_owned(), percent_decode(value)))
        .collect();
    sub_resources.sort_by(|a, b| a.0.cmp(&b.0));
    for (index, (name, value)) in sub_resources.iter().enumerate() {
        resource.push(if index == 0 { '?' } else { '&' });
        resource.push_str(name);
        if !value.is_empty() {
            resource.push('=');
            resource.push_str(value);
        }
    }
    resource
}

/// Decodes `%XX` escapes and `+` (a space), for values this file encoded.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        match bytes[index] {
            b'%' if index + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[index + 1..index + 3]).expect("ASCII");
                out.push(u8::from_str_radix(hex, 16).expect("a valid escape"));
                index += 3;
            }
            b'+' => {
                out.push(b' ');
                index += 1;
            }
            byte => {
                out.push(byte);
                index += 1;
            }
        }
    }
    String::from_utf8(out).expect("UTF-8")
}

/// `StringToSign = HTTP-Verb \n Content-MD5 \n Content-Type \n Date \n
/// CanonicalizedAmzHeaders CanonicalizedResource`, with the `x-amz-*`
/// headers lowercased, sorted, repeated ones joined with `,`.
pub fn sigv2_string_to_sign(
    method: &str,
    content_md5: &str,
    content_type: &str,
    date: &str,
    amz_headers: &[(String, String)],
    resource: &str,
) -> String {
    let mut merged: Vec<(String, Vec<String>)> = Vec::new();
    for (name, value) in amz_headers {
        let name = name.to_ascii_lowercase();
        match merged.iter_mut().find(|(existing, _)| *existing == name) {
            Some((_, values)) => values.push(value.trim().to_owned()),
            None => merged.push((name, vec![value.trim().to_owned()])),
        }
    }
    merged.sort();
    let canonical_headers = merged
        .iter()
        .fold(String::new(), |mut out, (name, values)| {
            let _ = writeln!(out, "{name}:{}", values.join(","));
            out
        });
    format!("{method}\n{content_md5}\n{content_type}\n{date}\n{canonical_headers}{resource}")
}

/// `Base64(HMAC-SHA1(secret, StringToSign))`.
pub fn sigv2_signature(secret: &str, string_to_sign: &str) -> String {
    let mut mac =
        Hmac::<sha1::Sha1>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(string_to_sign.as_bytes());
    base64(&mac.finalize().into_bytes())
}

/// A `CreateBucketConfiguration` document, with or without a
/// `LocationConstraint`.
pub fn create_bucket_configuration(location_constraint: Option<&str>) -> String {
    let constraint = location_constraint
        .map(|region| format!("<LocationConstraint>{region}</LocationConstraint>"))
        .unwrap_or_default();
    format!(
        "<CreateBucketConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">\
         {constraint}</CreateBucketConfiguration>"
    )
}

/// Run an async test body on a fresh multi-threaded runtime. Used by tests
/// that mix blocking raw sockets with SDK calls.
pub fn block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("build a tokio runtime")
        .block_on(future)
}

/// Poll `check` until it returns `Some` or `timeout` passes.
pub fn eventually<T>(timeout: Duration, mut check: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check() {
            return Some(value);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

// ---------------------------------------------------------------------------
// Added for tests/s3_object.rs
// ---------------------------------------------------------------------------

impl Server {
    /// The configuration [`Server::client`] uses, as a builder, for tests
    /// that add to it (an interceptor that records what the SDK sent).
    pub fn client_config(&self) -> aws_sdk_s3::config::Builder {
        let credentials = aws_sdk_s3::config::Credentials::from_keys(
            &self.keys.access_key_id,
            &self.keys.secret_access_key,
            None,
        );
        aws_sdk_s3::Config::builder()
            .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
            .region(aws_sdk_s3::config::Region::new(self.region().to_owned()))
            .endpoint_url(self.endpoint())
            .credentials_provider(credentials)
            .force_path_style(true)
    }

    /// The server process's resident set size now (`VmRSS` of
    /// `/proc/<pid>/status`), in bytes.
    pub fn rss_bytes(&self) -> u64 {
        proc_status_bytes(self.pid(), "VmRSS:")
            .unwrap_or_else(|| panic!("no VmRSS for pid {}", self.pid()))
    }
}

/// A `/proc/<pid>/status` field given in kB (`VmRSS:`, `VmHWM:`), in
/// bytes; `None` once the process is gone.
pub fn proc_status_bytes(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|line| line.starts_with(field))?;
    let kib: u64 = line[field.len()..]
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib * 1024)
}

// ---------------------------------------------------------------------------
// Crashes (tests/crash.rs)
// ---------------------------------------------------------------------------

impl Server {
    /// SIGKILL the server, as a crash would stop it: nothing is drained or
    /// flushed. Returns once the process is reaped; the data directory stays
    /// for [`Server::start_again`].
    pub fn kill(&mut self) {
        self.signal(libc::SIGKILL);
        let Some(status) = self.wait_exit(STOP_TIMEOUT) else {
            panic!("ringstore did not die of SIGKILL within {STOP_TIMEOUT:?}");
        };
        assert!(
            status.code().is_none(),
            "ringstore must die of the signal, it exited with {status}\n{}",
            self.stderr()
        );
    }
}

// ---------------------------------------------------------------------------
// aws-chunked request bodies
// ---------------------------------------------------------------------------

/// The three aws-chunked forms of `x-amz-content-sha256`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Streaming {
    /// `STREAMING-AWS4-HMAC-SHA256-PAYLOAD`
    Signed,
    /// `STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER`
    SignedTrailer,
    /// `STREAMING-UNSIGNED-PAYLOAD-TRAILER`
    UnsignedTrailer,
}

/// A signed `PUT path` whose body is `data` in aws-chunked framing, in
/// chunks of `chunk_len`, with the `trailer` (name, value) in the trailer
/// forms. `corrupt` flips one hex digit of the last data chunk's signature
/// (`Signed`) or of the trailer signature (`SignedTrailer`).
pub fn aws_chunked_put(
    server: &Server,
    mode: Streaming,
    path: &str,
    data: &[u8],
    chunk_len: usize,
    trailer: Option<(&str, &str)>,
    corrupt: bool,
) -> Vec<u8> {
    let content_sha256 = match mode {
        Streaming::Signed => STREAMING_PAYLOAD,
        Streaming::SignedTrailer => "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER",
        Streaming::UnsignedTrailer => "STREAMING-UNSIGNED-PAYLOAD-TRAILER",
    };
    let mut request = server
        .request("PUT", path)
        .content_sha256(content_sha256)
        .header("Content-Encoding", "aws-chunked")
        .header("x-amz-decoded-content-length", &data.len().to_string());
    if let Some((name, _)) = trailer {
        request = request.header("x-amz-trailer", name);
    }
    let flip = |signature: &mut String| {
        let flipped = if signature.starts_with('0') { "1" } else { "0" };
        signature.replace_range(0..1, flipped);
    };
    let (seed, _) = request.signature(&server.keys, server.region());
    let mut previous = seed.signature;
    let mut body = Vec::new();
    let chunks: Vec<&[u8]> = data.chunks(chunk_len).chain([&[][..]]).collect();
    let last_data_chunk = chunks.len() - 2;
    for (index, chunk) in chunks.iter().enumerate() {
        if mode == Streaming::UnsignedTrailer {
            body.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        } else {
            let mut signature = chunk_signature(
                &server.keys,
                server.region(),
                request.time,
                &previous,
                chunk,
            );
            previous.clone_from(&signature);
            if corrupt && mode == Streaming::Signed && index == last_data_chunk {
                flip(&mut signature);
            }
            body.extend_from_slice(
                format!("{:x};chunk-signature={signature}\r\n", chunk.len()).as_bytes(),
            );
        }
        body.extend_from_slice(chunk);
        if !chunk.is_empty() {
            body.extend_from_slice(b"\r\n");
        }
    }
    if mode == Streaming::Signed {
        body.extend_from_slice(b"\r\n");
    } else {
        let trailer = trailer.map_or(String::new(), |(name, value)| format!("{name}:{value}"));
        if !trailer.is_empty() {
            body.extend_from_slice(format!("{trailer}\r\n").as_bytes());
        }
        if mode == Streaming::SignedTrailer {
            let canonical = if trailer.is_empty() {
                String::new()
            } else {
                format!("{trailer}\n")
            };
            let mut signature = trailer_signature(
                &server.keys,
                server.region(),
                request.time,
                &previous,
                &canonical,
            );
            if corrupt {
                flip(&mut signature);
            }
            body.extend_from_slice(format!("x-amz-trailer-signature:{signature}\r\n").as_bytes());
        }
        body.extend_from_slice(b"\r\n");
    }
    server.sign(&request.body(&body))
}

/// `len` pseudo-random bytes from `seed` (xorshift64), the same for the
/// same seed: object bodies that differ everywhere and are cheap to make
/// again for a comparison.
pub fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.extend_from_slice(&state.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Asserts the refusal of a canned ACL this server does not implement:
/// `501 NotImplemented` whose message and `<Header>` name `x-amz-acl`
/// (issue 12; see `s3::acl`).
#[track_caller]
pub fn assert_canned_acl_refused(response: &RawResponse, value: &str) {
    let text = response.assert_s3_error(501, "NotImplemented");
    assert_eq!(
        response.xml_element("Header").as_deref(),
        Some("x-amz-acl"),
        "{text}"
    );
    let message = response.xml_element("Message").unwrap_or_default();
    assert!(
        message.contains("x-amz-acl") && message.contains(value),
        "the refusal names the header and its value: {text}"
    );
}

// ---------------------------------------------------------------------------
// The offline checker
// ---------------------------------------------------------------------------

/// Longest a check of a test's small data directory may take.
pub const CHECK_TIMEOUT: Duration = Duration::from_mins(1);

/// One finished `ringstore check`.
pub struct CheckRun {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl std::fmt::Display for CheckRun {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "check exited with {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.status, self.stdout, self.stderr
        )
    }
}

impl CheckRun {
    /// The number on the summary line `name: N` (or `name: N (...)`).
    pub fn field(&self, name: &str) -> u64 {
        let prefix = format!("{name}: ");
        let line = self
            .stdout
            .lines()
            .find_map(|line| line.strip_prefix(&prefix))
            .unwrap_or_else(|| panic!("no `{prefix}` line:\n{self}"));
        line.split_whitespace()
            .next()
            .and_then(|number| number.parse().ok())
            .unwrap_or_else(|| panic!("`{prefix}` is not followed by a number:\n{self}"))
    }
}

/// Run `ringstore check --data-dir DIR` to its end; its output goes to
/// files in `scratch`, so no pipe can fill up.
pub fn run_check(data_dir: &Path, scratch: &Path) -> CheckRun {
    let stdout_path = scratch.join("check.stdout");
    let stderr_path = scratch.join("check.stderr");
    let mut child = Command::new(binary())
        .arg("check")
        .arg("--data-dir")
        .arg(data_dir)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&stdout_path).expect("create the stdout file"))
        .stderr(std::fs::File::create(&stderr_path).expect("create the stderr file"))
        .spawn()
        .expect("spawn ringstore check");
    let deadline = Instant::now() + CHECK_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait on ringstore check") {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "ringstore check did not finish within {CHECK_TIMEOUT:?}\n{}",
                std::fs::read_to_string(&stderr_path).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    CheckRun {
        status,
        stdout: std::fs::read_to_string(&stdout_path).expect("read the stdout file"),
        stderr: std::fs::read_to_string(&stderr_path).expect("read the stderr file"),
    }
}
