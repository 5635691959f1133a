//! Configuration: command-line flags over a TOML file over defaults.
//!
//! Everything is resolved and validated once, at start, into [`Config`];
//! nothing later re-reads the environment or the file. Invalid values fail
//! the start with one sentence (see [`ConfigError`]), never a panic.
//!
//! Precedence for each setting: flag, then (for credentials) the
//! `RINGSTORE_ACCESS_KEY_ID` / `RINGSTORE_SECRET_ACCESS_KEY` environment
//! variables, then the `--config` file, then the default. With no
//! credentials configured anywhere, the first start generates a key pair and
//! stores it in `<data-dir>/credentials.toml` with mode 0600; later starts
//! reuse it (see [`resolve_credentials`]).

use std::io::Write as _;
use std::net::SocketAddr;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

use clap::{Parser, Subcommand};
use serde::Deserialize;

use crate::auth::Credentials;
use crate::limits;

pub const DATA_DIR_DEFAULT: &str = "./ringstore-data";
pub const LISTEN_DEFAULT: &str = "127.0.0.1:9000";
pub const ADMIN_LISTEN_DEFAULT: &str = "127.0.0.1:9001";
pub const REGION_DEFAULT: &str = "us-east-1";
pub const CREDENTIALS_FILE: &str = "credentials.toml";

/// The command line.
#[derive(Debug, Parser)]
#[command(
    name = "ringstore",
    version,
    about = "A thread-per-core, S3-compatible object store"
)]
pub struct Args {
    /// Directory holding all data (created if missing) [default: ./ringstore-data]
    #[arg(long, global = true)]
    pub data_dir: Option<PathBuf>,
    /// Address of the S3 listener [default: 127.0.0.1:9000]; port 0 picks a free port
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// Address of the admin listener (health, metrics; no auth) [default: 127.0.0.1:9001]
    #[arg(long)]
    pub admin_listen: Option<SocketAddr>,
    /// Number of cores (executors) to run [default: every online core]
    #[arg(long)]
    pub cores: Option<usize>,
    /// Region reported to clients and required in signatures [default: us-east-1]
    #[arg(long)]
    pub region: Option<String>,
    /// TOML configuration file with the same settings; flags override it
    #[arg(long)]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve S3 (the default when no command is given)
    Serve,
    /// Check a stopped server's data directory offline
    ///
    /// Verifies every record's checksum, the index against the segments,
    /// every live object's extents and the bucket catalog, and prints a
    /// summary. Exit status 0: no damage (warnings allowed); 1: damage
    /// found; 2: the check could not run (a server holds the directory, or
    /// it is not a data directory).
    Check,
}

/// The TOML file. Every field is optional; unknown fields are an error so
/// that a misspelled setting is not silently ignored.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub data_dir: Option<PathBuf>,
    pub listen: Option<SocketAddr>,
    pub admin_listen: Option<SocketAddr>,
    pub cores: Option<usize>,
    pub region: Option<String>,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    /// Base domains for virtual-hosted-style requests (`bucket.DOMAIN`).
    pub virtual_host_domains: Option<Vec<String>>,
    pub head_timeout_ms: Option<u64>,
    pub idle_timeout_ms: Option<u64>,
    pub body_read_timeout_ms: Option<u64>,
    pub connections_per_core_max: Option<usize>,
    pub body_bytes_in_flight_per_core_max: Option<u64>,
    pub multipart_uploads_per_core_max: Option<usize>,
    pub reserved_space_bytes: Option<u64>,
    /// Size bound of one segment file, fixed per process (not per data
    /// directory: segments of any size are read back).
    pub segment_bytes: Option<u64>,
    pub compaction_interval_ms: Option<u64>,
    pub scrub_bytes_per_second: Option<u64>,
    pub scrub_pause_ms: Option<u64>,
}

/// The resolved configuration the server runs with.
#[derive(Debug, Clone)]
pub struct Config {
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    pub admin_listen: SocketAddr,
    pub cores: usize,
    pub region: String,
    pub credentials: Option<Credentials>,
    pub virtual_host_domains: Vec<String>,
    pub head_timeout_ms: u64,
    pub idle_timeout_ms: u64,
    pub body_read_timeout_ms: u64,
    pub connections_per_core_max: usize,
    /// Request-body bytes each core holds in memory at once
    /// (`limits::BODY_BYTES_IN_FLIGHT_PER_CORE_MAX`).
    pub body_bytes_in_flight_per_core_max: u64,
    /// Multipart uploads in progress per core
    /// (`limits::MULTIPART_UPLOADS_PER_CORE_MAX`).
    pub multipart_uploads_per_core_max: usize,
    /// Free space kept for deletes, compaction and checkpoints: new object
    /// data is refused before the file system's free space falls under it.
    /// Default: per core, one segment plus
    /// `limits::RESERVED_SPACE_EXTRA_PER_CORE_BYTES`.
    pub reserved_space_bytes: u64,
    pub segment_bytes: u64,
    pub compaction_interval_ms: u64,
    /// How fast each core's scrub reads its objects; 0 turns scrubbing off.
    pub scrub_bytes_per_second: u64,
    /// Pause between two scrub passes over a core's objects.
    pub scrub_pause_ms: u64,
}

#[derive(Debug)]
pub struct ConfigError(pub String);

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    /// Resolve flags, environment and file into a validated configuration.
    pub fn resolve(args: &Args) -> Result<Config, ConfigError> {
        let file = match &args.config {
            Some(path) => load_file(path)?,
            None => FileConfig::default(),
        };
        let env_key = std::env::var("RINGSTORE_ACCESS_KEY_ID").ok();
        let env_secret = std::env::var("RINGSTORE_SECRET_ACCESS_KEY").ok();
        let credentials = match (
            env_key.or(file.access_key_id),
            env_secret.or(file.secret_access_key),
        ) {
            (Some(access_key_id), Some(secret_access_key)) => Some(Credentials {
                access_key_id,
                secret_access_key,
            }),
            (None, None) => None,
            _ => {
                return Err(ConfigError(
                    "an access key id was configured without a secret access key, or the other \
                     way round; set both (RINGSTORE_ACCESS_KEY_ID and \
                     RINGSTORE_SECRET_ACCESS_KEY) or neither"
                        .into(),
                ));
            }
        };
        let online = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
        let data_dir = args
            .data_dir
            .clone()
            .or(file.data_dir)
            .unwrap_or_else(|| PathBuf::from(DATA_DIR_DEFAULT));
        let cores = args.cores.or(file.cores).unwrap_or(online);
        let segment_bytes = file
            .segment_bytes
            .unwrap_or(crate::storage::segment::SEGMENT_BYTES_MAX);
        let config = Config {
            data_dir: absolute_data_dir(&data_dir)?,
            listen: args
                .listen
                .or(file.listen)
                .unwrap_or_else(|| LISTEN_DEFAULT.parse().expect("default address parses")),
            admin_listen: args.admin_listen.or(file.admin_listen).unwrap_or_else(|| {
                ADMIN_LISTEN_DEFAULT
                    .parse()
                    .expect("default address parses")
            }),
            cores,
            region: args
                .region
                .clone()
                .or(file.region)
                .unwrap_or_else(|| REGION_DEFAULT.to_owned()),
            credentials,
            virtual_host_domains: file
                .virtual_host_domains
                .unwrap_or_else(|| vec!["localhost".to_owned()]),
            head_timeout_ms: file
                .head_timeout_ms
                .unwrap_or(limits::HEAD_TIMEOUT_MS_DEFAULT),
            idle_timeout_ms: file
                .idle_timeout_ms
                .unwrap_or(limits::IDLE_TIMEOUT_MS_DEFAULT),
            body_read_timeout_ms: file
                .body_read_timeout_ms
                .unwrap_or(limits::BODY_READ_TIMEOUT_MS_DEFAULT),
            connections_per_core_max: file
                .connections_per_core_max
                .unwrap_or(limits::CONNECTIONS_PER_CORE_MAX_DEFAULT),
            body_bytes_in_flight_per_core_max: file
                .body_bytes_in_flight_per_core_max
                .unwrap_or(limits::BODY_BYTES_IN_FLIGHT_PER_CORE_MAX),
            multipart_uploads_per_core_max: file
                .multipart_uploads_per_core_max
                .unwrap_or(limits::MULTIPART_UPLOADS_PER_CORE_MAX),
            segment_bytes,
            reserved_space_bytes: file.reserved_space_bytes.unwrap_or_else(|| {
                (cores as u64)
                    .saturating_mul(segment_bytes + limits::RESERVED_SPACE_EXTRA_PER_CORE_BYTES)
            }),
            compaction_interval_ms: file
                .compaction_interval_ms
                .unwrap_or(limits::COMPACTION_INTERVAL_MS_DEFAULT),
            scrub_bytes_per_second: file
                .scrub_bytes_per_second
                .unwrap_or(limits::SCRUB_BYTES_PER_SECOND_DEFAULT),
            scrub_pause_ms: file
                .scrub_pause_ms
                .unwrap_or(limits::SCRUB_PAUSE_MS_DEFAULT),
        };
        config.validate(online)?;
        Ok(config)
    }

    fn validate(&self, online: usize) -> Result<(), ConfigError> {
        if self.cores == 0 {
            return Err(ConfigError("--cores must be at least 1".into()));
        }
        if self.cores > online {
            return Err(ConfigError(format!(
                "--cores {} is more than the {online} online cores of this machine",
                self.cores
            )));
        }
        if self.region.is_empty()
            || !self
                .region
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return Err(ConfigError(format!(
                "region {:?} is not a valid region name (letters, digits and '-')",
                self.region
            )));
        }
        if let Some(credentials) = &self.credentials {
            if credentials.access_key_id.is_empty()
                || credentials.access_key_id.contains(['/', ' ', ','])
            {
                return Err(ConfigError(
                    "the access key id must be non-empty and contain no '/', ',' or spaces".into(),
                ));
            }
            if credentials.secret_access_key.is_empty() {
                return Err(ConfigError(
                    "the secret access key must not be empty".into(),
                ));
            }
        }
        let segment_min = limits::SEGMENT_BYTES_MIN;
        let segment_max = crate::storage::segment::SEGMENT_BYTES_MAX;
        if self.segment_bytes < segment_min
            || self.segment_bytes > segment_max
            || !self
                .segment_bytes
                .is_multiple_of(crate::storage::segment::BLOCK_BYTES)
        {
            return Err(ConfigError(format!(
                "segment_bytes must be a multiple of 4096 from {segment_min} to {segment_max}"
            )));
        }
        for (name, value) in [
            ("head_timeout_ms", self.head_timeout_ms),
            ("idle_timeout_ms", self.idle_timeout_ms),
            ("body_read_timeout_ms", self.body_read_timeout_ms),
            ("compaction_interval_ms", self.compaction_interval_ms),
            ("scrub_pause_ms", self.scrub_pause_ms),
        ] {
            if value == 0 {
                return Err(ConfigError(format!("{name} must be at least 1")));
            }
        }
        if self.connections_per_core_max == 0 {
            return Err(ConfigError(
                "connections_per_core_max must be at least 1".into(),
            ));
        }
        // One upload streams through two extent buffers, and one XML body
        // is read whole: the budget must hold either.
        let body_min = limits::XML_BODY_BYTES_MAX.max(2 * limits::EXTENT_BYTES_MAX);
        if self.body_bytes_in_flight_per_core_max < body_min {
            return Err(ConfigError(format!(
                "body_bytes_in_flight_per_core_max must be at least {body_min}"
            )));
        }
        if self.listen == self.admin_listen && self.listen.port() != 0 {
            return Err(ConfigError(format!(
                "the S3 listener and the admin listener both use {}",
                self.listen
            )));
        }
        Ok(())
    }
}

/// The data directory as an absolute path, resolved against the working
/// directory once, at start. Everything below works with it: glommio opens
/// directories with `openat(-1, path)`, which fails with `EBADF` for a
/// relative path (the README's first command once failed this way), and a
/// path that does not depend on the working directory also reads better in
/// every message.
fn absolute_data_dir(dir: &Path) -> Result<PathBuf, ConfigError> {
    std::path::absolute(dir).map_err(|error| {
        ConfigError(format!(
            "cannot resolve the data directory {}: {error}",
            dir.display()
        ))
    })
}

fn load_file(path: &Path) -> Result<FileConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|error| {
        ConfigError(format!(
            "cannot read the configuration file {}: {error}",
            path.display()
        ))
    })?;
    toml::from_str(&text).map_err(|error| {
        ConfigError(format!(
            "the configuration file {} is invalid: {}",
            path.display(),
            error.message()
        ))
    })
}

/// Where the credentials came from, so the start-up message can say so.
#[derive(Debug, PartialEq, Eq)]
pub enum CredentialSource {
    Configured,
    Generated,
    Stored,
}

#[derive(Deserialize, serde::Serialize)]
struct StoredCredentials {
    access_key_id: String,
    secret_access_key: String,
}

/// The configured credentials, or the pair stored in the data directory, or
/// a newly generated pair that is stored there (mode 0600) for later starts.
pub fn resolve_credentials(
    config: &Config,
) -> Result<(Credentials, CredentialSource), ConfigError> {
    if let Some(credentials) = &config.credentials {
        return Ok((credentials.clone(), CredentialSource::Configured));
    }
    let path = config.data_dir.join(CREDENTIALS_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let stored: StoredCredentials = toml::from_str(&text).map_err(|error| {
                ConfigError(format!(
                    "the stored credentials in {} are invalid: {}",
                    path.display(),
                    error.message()
                ))
            })?;
            return Ok((
                Credentials {
                    access_key_id: stored.access_key_id,
                    secret_access_key: stored.secret_access_key,
                },
                CredentialSource::Stored,
            ));
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        Err(error) => {
            return Err(ConfigError(format!(
                "cannot read the stored credentials {}: {error}",
                path.display()
            )));
        }
    }
    let credentials = generate_credentials()?;
    let text = toml::to_string(&StoredCredentials {
        access_key_id: credentials.access_key_id.clone(),
        secret_access_key: credentials.secret_access_key.clone(),
    })
    .expect("credentials serialize");
    write_private_file(&path, text.as_bytes()).map_err(|error| {
        ConfigError(format!(
            "cannot store the generated credentials in {}: {error}",
            path.display()
        ))
    })?;
    Ok((credentials, CredentialSource::Generated))
}

/// A key id in AWS's shape (20 upper-case characters) and a 40-character
/// secret, both from the operating system's random source.
fn generate_credentials() -> Result<Credentials, ConfigError> {
    const KEY_ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    const SECRET_ALPHABET: &[u8] =
        b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut random = [0_u8; 58];
    getrandom::fill(&mut random)
        .map_err(|error| ConfigError(format!("no random source for credentials: {error}")))?;
    let mut access_key_id = String::from("RS");
    for &byte in &random[..18] {
        access_key_id.push(char::from(
            KEY_ALPHABET[usize::from(byte) % KEY_ALPHABET.len()],
        ));
    }
    let secret_access_key = random[18..]
        .iter()
        .map(|&byte| char::from(SECRET_ALPHABET[usize::from(byte) % SECRET_ALPHABET.len()]))
        .collect();
    Ok(Credentials {
        access_key_id,
        secret_access_key,
    })
}

/// Write a file readable by its owner only, durably: write to a temporary
/// name, fsync, rename over the target, fsync the directory.
fn write_private_file(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Args {
        Args::parse_from(std::iter::once("ringstore").chain(list.iter().copied()))
    }

    #[test]
    fn defaults_match_the_contract() {
        let config = Config::resolve(&args(&[])).unwrap();
        assert_eq!(
            config.data_dir,
            std::env::current_dir().unwrap().join("ringstore-data")
        );
        assert!(config.data_dir.is_absolute());
        assert_eq!(config.listen.to_string(), "127.0.0.1:9000");
        assert_eq!(config.admin_listen.to_string(), "127.0.0.1:9001");
        assert_eq!(config.region, "us-east-1");
        assert!(config.cores >= 1);
    }

    #[test]
    fn flags_override_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ringstore.toml");
        std::fs::write(
            &path,
            "listen = \"127.0.0.1:7000\"\nregion = \"eu-west-1\"\ncores = 1\n",
        )
        .unwrap();
        let config = Config::resolve(&args(&[
            "--config",
            path.to_str().unwrap(),
            "--region",
            "ap-south-1",
        ]))
        .unwrap();
        assert_eq!(config.listen.to_string(), "127.0.0.1:7000");
        assert_eq!(config.region, "ap-south-1");
        assert_eq!(config.cores, 1);
    }

    #[test]
    fn unknown_file_settings_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ringstore.toml");
        std::fs::write(&path, "lisen = \"127.0.0.1:7000\"\n").unwrap();
        let error = Config::resolve(&args(&["--config", path.to_str().unwrap()])).unwrap_err();
        assert!(error.0.contains("lisen"), "{error}");
    }

    #[test]
    fn zero_cores_is_refused() {
        assert!(Config::resolve(&args(&["--cores", "0"])).is_err());
    }

    #[test]
    fn generated_credentials_are_stored_privately_and_reused() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::resolve(&args(&[])).unwrap();
        config.data_dir = dir.path().to_owned();
        config.credentials = None;
        let (first, source) = resolve_credentials(&config).unwrap();
        assert_eq!(source, CredentialSource::Generated);
        assert_eq!(first.access_key_id.len(), 20);
        assert_eq!(first.secret_access_key.len(), 40);
        let mode = std::fs::metadata(dir.path().join(CREDENTIALS_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let (second, source) = resolve_credentials(&config).unwrap();
        assert_eq!(source, CredentialSource::Stored);
        assert_eq!(first, second);
    }
}
