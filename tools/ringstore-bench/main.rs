//! `ringstore-bench`: a warp-style load generator for any S3 endpoint.
//!
//! ```text
//! ringstore-bench get --endpoint http://127.0.0.1:9000 --size 4KiB -c 64 --duration 30s --json get.json --plot get.svg
//! ringstore-bench compare a.json b.json
//! ringstore-bench report *.json > table.md
//! ```
//!
//! Each benchmark creates its bucket if missing, uploads the objects a read
//! benchmark needs, measures for the given duration, prints a table and
//! deletes what it wrote (and the bucket, if it created it). Requests are
//! signed with `SigV4` (`UNSIGNED-PAYLOAD`) by its own HTTP/1.1 client, one
//! keep-alive connection per simulated client, on glommio executors (one
//! per `--threads`), so that the generator costs little CPU.

#![allow(
    clippy::cast_precision_loss,
    reason = "statistics: counts and byte totals far below 2^52 become floats"
)]

mod client;
mod report;
mod run;
mod sign;

use std::net::ToSocketAddrs;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::client::Endpoint;
use crate::report::RunResult;
use crate::run::{Benchmark, MIB, Mix, Plan};

#[derive(Debug, Parser)]
#[command(
    name = "ringstore-bench",
    version,
    about = "A warp-style S3 load generator",
    args_override_self = true
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// PUT new objects
    Put(RunArgs),
    /// GET prepared objects at random
    Get(RunArgs),
    /// HEAD prepared objects at random
    Stat(RunArgs),
    /// DELETE prepared objects, one request each, until all are gone or time is up
    Delete(RunArgs),
    /// `ListObjectsV2` pages of --page keys from random points of --objects prepared keys
    List(RunArgs),
    /// Multipart uploads of --parts parts of --part-size each (create, parts, complete)
    Multipart(RunArgs),
    /// GET, HEAD, PUT and DELETE mixed by --mix (warp's 45/30/15/10 by default)
    Mixed(RunArgs),
    /// Two result files side by side, with B/A ratios
    Compare { a: PathBuf, b: PathBuf },
    /// A markdown table of result files, one row per operation
    Report {
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Throughput over time of a result file, as SVG
    Plot { file: PathBuf, svg: PathBuf },
    /// MD5 throughput (the `ETag` hash ringstore uses) on --threads cores at once
    Md5Speed {
        #[arg(long, default_value_t = 1)]
        threads: usize,
        /// Bytes hashed per thread, in 1 MiB pieces
        #[arg(long, default_value = "1GiB", value_parser = parse_size)]
        bytes: u64,
        /// Streams each thread hashes side by side (as the server does for
        /// concurrent uploads on one core); 1 is one upload alone
        #[arg(long, default_value_t = 1)]
        lanes: usize,
        #[arg(long)]
        json: Option<PathBuf>,
    },
    /// Print a presigned GET URL (for wrk and curl)
    Presign {
        #[command(flatten)]
        connection: Connection,
        #[arg(long, default_value = "ringstore-bench")]
        bucket: String,
        #[arg(long)]
        key: String,
        /// Seconds the URL stays valid
        #[arg(long, default_value_t = 3600)]
        expires: u32,
    },
}

#[derive(Debug, Args)]
struct Connection {
    /// The S3 endpoint (http only)
    #[arg(long, env = "S3_ENDPOINT", default_value = "http://127.0.0.1:9000")]
    endpoint: String,
    #[arg(long, env = "AWS_ACCESS_KEY_ID")]
    access_key: String,
    #[arg(long, env = "AWS_SECRET_ACCESS_KEY", hide_env_values = true)]
    secret_key: String,
    #[arg(long, env = "AWS_REGION", default_value = "us-east-1")]
    region: String,
}

#[derive(Debug, Args)]
#[command(args_override_self = true)]
struct RunArgs {
    #[command(flatten)]
    connection: Connection,
    /// Bucket to use; created if missing (and then deleted afterwards)
    #[arg(long, default_value = "ringstore-bench")]
    bucket: String,
    /// Concurrent clients (one connection each)
    #[arg(short = 'c', long, default_value_t = 64)]
    concurrent: usize,
    /// Client threads (glommio executors) [default: every online core]
    #[arg(long)]
    threads: Option<usize>,
    /// How long to measure: 30s, 2m, 500ms
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    duration: Duration,
    /// Object size, fixed (4KiB) or a log-uniform range (4KiB-1MiB)
    #[arg(long, default_value = "4KiB", value_parser = parse_size_range)]
    size: (u64, u64),
    /// Objects uploaded before get, stat, delete, list and mixed
    /// [default: 2500; list 10000; delete 20000]
    #[arg(long)]
    objects: Option<usize>,
    /// Keys per LIST page (max-keys)
    #[arg(long, default_value_t = 1000)]
    page: usize,
    /// Part size of the multipart benchmark
    #[arg(long, default_value = "5MiB", value_parser = parse_size)]
    part_size: u64,
    /// Parts per multipart upload
    #[arg(long, default_value_t = 10)]
    parts: u32,
    /// Mixed weights get,stat,put,delete
    #[arg(long, default_value = "45,30,15,10", value_parser = parse_mix)]
    mix: Mix,
    /// Key prefix of this run [default: random]
    #[arg(long)]
    prefix: Option<String>,
    /// Keep the objects (and bucket) afterwards
    #[arg(long)]
    no_cleanup: bool,
    /// Write the result as JSON here
    #[arg(long)]
    json: Option<PathBuf>,
    /// Write the throughput-over-time plot (SVG) here
    #[arg(long)]
    plot: Option<PathBuf>,
    /// A name for this run in tables and plots
    #[arg(long)]
    label: Option<String>,
    /// Measure this server process's CPU time and memory during the run
    #[arg(long)]
    server_pid: Option<u32>,
    /// Seed of key choices, sizes and payloads [default: random]
    #[arg(long)]
    seed: Option<u64>,
    /// No progress line
    #[arg(long, short = 'q')]
    quiet: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match execute(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("ringstore-bench: {message}");
            ExitCode::FAILURE
        }
    }
}

fn execute(command: Command) -> Result<(), String> {
    let (benchmark, args) = match command {
        Command::Put(args) => (Benchmark::Put, args),
        Command::Get(args) => (Benchmark::Get, args),
        Command::Stat(args) => (Benchmark::Stat, args),
        Command::Delete(args) => (Benchmark::Delete, args),
        Command::List(args) => (Benchmark::List, args),
        Command::Multipart(args) => (Benchmark::Multipart, args),
        Command::Mixed(args) => (Benchmark::Mixed, args),
        Command::Compare { a, b } => {
            print!(
                "{}",
                report::compare(
                    &load(&a)?,
                    &load(&b)?,
                    &a.display().to_string(),
                    &b.display().to_string()
                )
            );
            return Ok(());
        }
        Command::Report { files } => {
            let results = files
                .iter()
                .map(|file| {
                    let name = file
                        .file_stem()
                        .map_or_else(String::new, |stem| stem.to_string_lossy().into_owned());
                    load(file).map(|result| (name, result))
                })
                .collect::<Result<Vec<_>, _>>()?;
            print!("{}", report::markdown(&results));
            return Ok(());
        }
        Command::Plot { file, svg } => {
            return std::fs::write(&svg, report::plot_svg(&load(&file)?))
                .map_err(|error| format!("{}: {error}", svg.display()));
        }
        Command::Md5Speed {
            threads,
            bytes,
            lanes,
            json,
        } => return md5_speed_command(threads, bytes, lanes, json.as_deref()),
        Command::Presign {
            connection,
            bucket,
            key,
            expires,
        } => {
            let (scheme_host, endpoint) = endpoint(&connection)?;
            let mut signer = sign::Signer::new(
                &endpoint.access_key_id,
                &endpoint.secret_access_key,
                &endpoint.region,
            );
            let path = format!(
                "/{}/{}",
                sign::encode_path(&bucket),
                sign::encode_path(&key)
            );
            let stamp = sign::Stamp::at(std::time::SystemTime::now());
            println!(
                "{}",
                signer.presign_get(&scheme_host, &endpoint.host, &path, expires, &stamp)
            );
            return Ok(());
        }
    };
    let plan = plan(benchmark, &args)?;
    let result = run::run(plan)?;
    print!("{}", report::table(&result));
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&result).map_err(|error| error.to_string())?;
        std::fs::write(path, text + "\n")
            .map_err(|error| format!("{}: {error}", path.display()))?;
    }
    if let Some(path) = &args.plot {
        std::fs::write(path, report::plot_svg(&result))
            .map_err(|error| format!("{}: {error}", path.display()))?;
    }
    if result.total.errors > 0 {
        return Err(format!("{} operations failed", result.total.errors));
    }
    Ok(())
}

fn md5_speed_command(
    threads: usize,
    bytes: u64,
    lanes: usize,
    json: Option<&Path>,
) -> Result<(), String> {
    let threads = threads.max(1);
    let lanes = lanes.max(1);
    let mib_per_second = md5_speed(threads, bytes, lanes);
    println!(
        "MD5: {mib_per_second:.0} MiB/s on {threads} threads ({:.0} MiB/s each), {lanes} streams per thread",
        mib_per_second / threads as f64
    );
    if let Some(path) = json {
        let value = serde_json::json!({
            "threads": threads,
            "lanes": lanes,
            "mib_per_second": mib_per_second,
            "mib_per_second_per_thread": mib_per_second / threads as f64,
        });
        std::fs::write(path, value.to_string() + "\n")
            .map_err(|error| format!("{}: {error}", path.display()))?;
    }
    Ok(())
}

/// Hash `bytes` per thread on `threads` threads at once, `lanes` streams
/// side by side per thread, with the MD5 the server computes `ETag`s with;
/// total MiB/s.
fn md5_speed(threads: usize, bytes: u64, lanes: usize) -> f64 {
    use ringstore::storage::md5_lanes::{Md5Stream, update_many};
    let started = std::time::Instant::now();
    let workers: Vec<_> = (0..threads)
        .map(|thread| {
            std::thread::spawn(move || {
                let mut rng = run::Rng::new(thread as u64 + 1);
                let piece: Vec<u8> = (0..1 << 17)
                    .flat_map(|_| rng.next_u64().to_le_bytes())
                    .collect();
                let mut streams: Vec<Md5Stream> = (0..lanes).map(|_| Md5Stream::new()).collect();
                let mut left = bytes;
                while left > 0 {
                    let take = usize::try_from(left.min((piece.len() * lanes) as u64))
                        .expect("at most lanes MiB")
                        / lanes;
                    let mut jobs: Vec<(&mut Md5Stream, &[u8])> = streams
                        .iter_mut()
                        .map(|stream| (stream, &piece[..take.max(1)]))
                        .collect();
                    update_many(&mut jobs);
                    left = left.saturating_sub((take.max(1) * lanes) as u64);
                }
                for stream in streams {
                    std::hint::black_box(stream.finalize());
                }
            })
        })
        .collect();
    for worker in workers {
        worker.join().expect("hashing thread");
    }
    (bytes as f64 * threads as f64) / MIB / started.elapsed().as_secs_f64()
}

fn load(path: &Path) -> Result<RunResult, String> {
    let text =
        std::fs::read_to_string(path).map_err(|error| format!("{}: {error}", path.display()))?;
    serde_json::from_str(&text).map_err(|error| format!("{}: {error}", path.display()))
}

/// `http://host:port` into the address to connect to and the Host header.
fn endpoint(connection: &Connection) -> Result<(String, Endpoint), String> {
    let url = connection.endpoint.trim_end_matches('/');
    let Some(authority) = url.strip_prefix("http://") else {
        return Err(format!(
            "--endpoint {url}: only http:// endpoints are supported"
        ));
    };
    if authority.contains('/') {
        return Err(format!("--endpoint {url}: give scheme, host and port only"));
    }
    let with_port = if authority
        .rsplit_once(':')
        .is_some_and(|(_, port)| port.parse::<u16>().is_ok())
    {
        authority.to_owned()
    } else {
        format!("{authority}:80")
    };
    let addr = with_port
        .to_socket_addrs()
        .map_err(|error| format!("--endpoint {url}: {error}"))?
        .next()
        .ok_or_else(|| format!("--endpoint {url}: no address"))?;
    Ok((
        url.to_owned(),
        Endpoint {
            addr,
            host: authority.to_owned(),
            access_key_id: connection.access_key.clone(),
            secret_access_key: connection.secret_key.clone(),
            region: connection.region.clone(),
        },
    ))
}

fn plan(benchmark: Benchmark, args: &RunArgs) -> Result<Plan, String> {
    let (endpoint_url, endpoint) = endpoint(&args.connection)?;
    if args.concurrent == 0 {
        return Err("--concurrent must be at least 1".into());
    }
    if args.page == 0 || args.page > 1000 {
        return Err("--page must be from 1 to 1000".into());
    }
    if benchmark == Benchmark::Multipart && (args.parts == 0 || args.parts > 10_000) {
        return Err("--parts must be from 1 to 10000".into());
    }
    let seed = args.seed.unwrap_or_else(|| {
        let mut bytes = [0u8; 8];
        getrandom::fill(&mut bytes).expect("the OS gives random bytes");
        u64::from_le_bytes(bytes)
    });
    let threads = args
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, std::num::NonZero::get));
    let objects = args.objects.unwrap_or(match benchmark {
        Benchmark::List => 10_000,
        Benchmark::Delete => 20_000,
        _ => 2500,
    });
    Ok(Plan {
        benchmark,
        endpoint,
        endpoint_url,
        bucket: args.bucket.clone(),
        prefix: args
            .prefix
            .clone()
            .unwrap_or_else(|| format!("bench-{:08x}", seed >> 32)),
        concurrency: args.concurrent,
        threads: threads.max(1),
        duration: args.duration,
        size_min: args.size.0,
        size_max: args.size.1,
        objects,
        page: args.page,
        part_size: args.part_size,
        parts: args.parts,
        mix: args.mix,
        cleanup: !args.no_cleanup,
        server_pid: args.server_pid,
        seed,
        label: args.label.clone(),
        progress: !args.quiet,
    })
}

/// `4KiB`, `1MiB`, `1000`, `10MB`, `1.5GiB`.
fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().map_err(|_| format!("bad size {text:?}"))?;
    let scale: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kib" | "ki" => 1 << 10,
        "mib" | "mi" => 1 << 20,
        "gib" | "gi" => 1 << 30,
        "kb" | "k" => 1000,
        "mb" | "m" => 1_000_000,
        "gb" | "g" => 1_000_000_000,
        _ => {
            return Err(format!(
                "bad size unit in {text:?} (B, KiB, MiB, GiB, KB, MB, GB)"
            ));
        }
    };
    let bytes = number * scale as f64;
    if !(0.0..=(1u64 << 40) as f64).contains(&bytes) {
        return Err(format!("size {text:?} out of range"));
    }
    #[expect(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        reason = "checked range"
    )]
    Ok(bytes as u64)
}

fn parse_size_range(text: &str) -> Result<(u64, u64), String> {
    match text.split_once('-') {
        Some((low, high)) => {
            let (low, high) = (parse_size(low)?, parse_size(high)?);
            if low > high {
                return Err(format!("size range {text:?} runs backwards"));
            }
            Ok((low, high))
        }
        None => parse_size(text).map(|size| (size, size)),
    }
}

/// `30s`, `2m`, `500ms`, `1h`, or plain seconds.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number
        .parse()
        .map_err(|_| format!("bad duration {text:?}"))?;
    let seconds = match unit {
        "" | "s" => number,
        "ms" => number / 1000.0,
        "m" => number * 60.0,
        "h" => number * 3600.0,
        _ => return Err(format!("bad duration unit in {text:?} (ms, s, m, h)")),
    };
    Duration::try_from_secs_f64(seconds).map_err(|error| format!("bad duration {text:?}: {error}"))
}

fn parse_mix(text: &str) -> Result<Mix, String> {
    let weights: Vec<u32> = text
        .split(',')
        .map(|part| part.trim().parse::<u32>())
        .collect::<Result<_, _>>()
        .map_err(|_| format!("bad mix {text:?}: four whole numbers get,stat,put,delete"))?;
    let [get, stat, put, delete] = weights[..] else {
        return Err(format!(
            "bad mix {text:?}: four whole numbers get,stat,put,delete"
        ));
    };
    if get + stat + put + delete == 0 {
        return Err("the mix weights add up to 0".into());
    }
    Ok(Mix {
        get,
        stat,
        put,
        delete,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_sizes_durations_and_mixes() {
        assert_eq!(parse_size("4KiB"), Ok(4096));
        assert_eq!(parse_size("64MiB"), Ok(64 << 20));
        assert_eq!(parse_size("10MB"), Ok(10_000_000));
        assert_eq!(parse_size("1000"), Ok(1000));
        assert!(parse_size("4XB").is_err());
        assert_eq!(parse_size_range("4KiB-1MiB"), Ok((4096, 1 << 20)));
        assert!(parse_size_range("1MiB-4KiB").is_err());
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_mins(2)));
        assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
        assert!(parse_duration("3d").is_err());
        let mix = parse_mix("45,30,15,10").expect("valid");
        assert_eq!((mix.get, mix.stat, mix.put, mix.delete), (45, 30, 15, 10));
        assert!(parse_mix("1,2,3").is_err());
        assert!(parse_mix("0,0,0,0").is_err());
    }
}
