//! The load generator (`ringstore-bench`) against the real server: a short
//! run of every benchmark, its JSON result parsed back and checked against
//! what the run must have done, the cleanup checked on the server, and the
//! `compare`, `report`, `plot` and `presign` commands on real results.
//! No speed is asserted here; speed lives in BENCHMARKS.md.

#![allow(
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    reason = "test arithmetic on small counts"
)]

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::Server;
use serde_json::Value;

const BENCH: &str = env!("CARGO_BIN_EXE_ringstore-bench");

fn bench(server: &Server, args: &[&str]) -> Output {
    Command::new(BENCH)
        .args(args)
        .env("S3_ENDPOINT", server.endpoint())
        .env("AWS_ACCESS_KEY_ID", &server.keys.access_key_id)
        .env("AWS_SECRET_ACCESS_KEY", &server.keys.secret_access_key)
        .env("AWS_REGION", server.region())
        .output()
        .expect("ringstore-bench runs")
}

/// Run one benchmark with a JSON result file and return the parsed result.
fn run(server: &Server, dir: &Path, benchmark: &str, extra: &[&str]) -> Value {
    let json = dir.join(format!("{benchmark}.json"));
    let svg = dir.join(format!("{benchmark}.svg"));
    let pid = server.pid().to_string();
    let mut args = vec![
        benchmark,
        "--concurrent",
        "4",
        "--threads",
        "2",
        "--duration",
        "1s",
        "--quiet",
        "--server-pid",
        &pid,
        "--json",
        json.to_str().expect("utf-8 path"),
        "--plot",
        svg.to_str().expect("utf-8 path"),
    ];
    args.extend_from_slice(extra);
    let output = bench(server, &args);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "{benchmark} failed: {}\n{stdout}\n{stderr}",
        output.status
    );
    assert!(
        stdout.contains(&format!("ringstore-bench {benchmark}")),
        "{stdout}"
    );
    let svg_text = std::fs::read_to_string(&svg).expect("plot written");
    assert!(
        svg_text.starts_with("<svg") && svg_text.contains("<polyline"),
        "{svg_text}"
    );
    let result: Value =
        serde_json::from_str(&std::fs::read_to_string(&json).expect("result written"))
            .expect("JSON");
    assert_eq!(result["benchmark"], benchmark);
    assert_eq!(result["concurrency"], 4);
    assert_eq!(result["total"]["errors"], 0, "{result}");
    assert!(
        result["total"]["ops"].as_u64().expect("ops") > 0,
        "{result}"
    );
    let server_usage = &result["server"];
    assert!(
        server_usage["cpu_seconds"]
            .as_f64()
            .expect("server CPU measured")
            > 0.0
    );
    assert!(
        server_usage["rss_max_mib"]
            .as_f64()
            .expect("server RSS measured")
            > 1.0
    );
    result
}

fn op<'a>(result: &'a Value, name: &str) -> &'a Value {
    result["operations"]
        .as_array()
        .expect("operations")
        .iter()
        .find(|row| row["op"] == name)
        .unwrap_or_else(|| panic!("no {name} row in {result}"))
}

fn count(value: &Value) -> u64 {
    value.as_u64().expect("a count")
}

/// Nothing the benchmark wrote is left: the bucket it created is gone.
fn assert_cleaned(server: &Server) {
    let head = server.send_signed(&server.request("HEAD", "/ringstore-bench"));
    assert_eq!(head.status, 404, "the benchmark bucket was left behind");
}

#[test]
fn every_benchmark_runs_and_reports() {
    let server = Server::start();
    let dir = tempfile::tempdir().expect("temp dir");

    let put = run(&server, dir.path(), "put", &["--size", "4KiB"]);
    let row = op(&put, "PUT");
    assert_eq!(count(&row["bytes"]), count(&row["ops"]) * 4096);
    let latency = &row["latency_ms"];
    let (p50, p99, max) = (
        latency["p50"].as_f64().expect("p50"),
        latency["p99"].as_f64().expect("p99"),
        latency["max"].as_f64().expect("max"),
    );
    assert!(0.0 < p50 && p50 <= p99 && p99 <= max, "{latency}");
    assert!(!put["timeline"].as_array().expect("timeline").is_empty());
    assert_cleaned(&server);

    // A size range: every GET's size is checked by the tool against the
    // size it uploaded.
    let get = run(
        &server,
        dir.path(),
        "get",
        &["--size", "1KiB-64KiB", "--objects", "50"],
    );
    let row = op(&get, "GET");
    let mean = count(&row["bytes"]) as f64 / count(&row["ops"]) as f64;
    assert!((1024.0..=65536.0).contains(&mean), "{row}");
    assert_cleaned(&server);

    let stat = run(&server, dir.path(), "stat", &["--objects", "20"]);
    assert_eq!(count(&op(&stat, "STAT")["bytes"]), 0);
    assert_cleaned(&server);

    // All prepared objects are deleted, then the run ends before its time.
    let delete = run(
        &server,
        dir.path(),
        "delete",
        &["--objects", "60", "--duration", "30s"],
    );
    assert_eq!(count(&op(&delete, "DELETE")["ops"]), 60);
    assert!(delete["seconds"].as_f64().expect("seconds") < 30.0);
    assert_cleaned(&server);

    // Pages of 25 of 80 keys: every page is full.
    let list = run(
        &server,
        dir.path(),
        "list",
        &["--objects", "80", "--page", "25", "--size", "0"],
    );
    let row = op(&list, "LIST");
    assert_eq!(count(&row["items"]), count(&row["ops"]) * 25, "{row}");
    assert_cleaned(&server);

    let multipart = run(
        &server,
        dir.path(),
        "multipart",
        &["--part-size", "5MiB", "--parts", "2", "--duration", "2s"],
    );
    let parts = op(&multipart, "MPU-PART");
    assert_eq!(
        count(&parts["bytes"]),
        count(&parts["ops"]) * 5 * 1024 * 1024
    );
    assert!(count(&op(&multipart, "MPU-COMPLETE")["ops"]) >= 1);
    // The bucket could only be deleted because no upload was left in
    // progress: unfinished ones were aborted.
    assert_cleaned(&server);

    let mixed = run(
        &server,
        dir.path(),
        "mixed",
        &["--objects", "100", "--duration", "2s"],
    );
    for name in ["GET", "STAT", "PUT", "DELETE"] {
        assert!(count(&op(&mixed, name)["ops"]) > 0, "no {name} in {mixed}");
    }
    let gets = count(&op(&mixed, "GET")["ops"]) as f64;
    let total = count(&mixed["total"]["ops"]) as f64;
    assert!(
        (0.3..0.6).contains(&(gets / total)),
        "GET share {} of {total}",
        gets / total
    );
    assert_cleaned(&server);

    check_commands(&server, dir.path());
}

/// compare, report and plot read the result files back.
fn check_commands(server: &Server, dir: &Path) {
    let (a, b) = (dir.join("get.json"), dir.join("mixed.json"));
    let compared = bench(
        server,
        &[
            "compare",
            a.to_str().expect("utf-8"),
            b.to_str().expect("utf-8"),
        ],
    );
    let text = String::from_utf8_lossy(&compared.stdout);
    assert!(compared.status.success(), "{text}");
    assert!(
        text.contains("GET") && text.contains("ops/s") && text.contains('x'),
        "{text}"
    );
    let files: Vec<String> = ["put", "get", "list"]
        .iter()
        .map(|name| {
            dir.join(format!("{name}.json"))
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    let mut args = vec!["report"];
    args.extend(files.iter().map(String::as_str));
    let report = bench(server, &args);
    let table = String::from_utf8_lossy(&report.stdout);
    assert!(report.status.success(), "{table}");
    assert_eq!(
        table.lines().filter(|line| line.starts_with('|')).count(),
        2 + 3,
        "{table}"
    );
    let svg = dir.join("again.svg");
    let plotted = bench(
        server,
        &[
            "plot",
            a.to_str().expect("utf-8"),
            svg.to_str().expect("utf-8"),
        ],
    );
    assert!(plotted.status.success());
    assert!(std::fs::read_to_string(&svg).expect("svg").contains("GET"));
}

#[test]
fn presigned_urls_work_and_failures_are_reported() {
    let server = Server::start();
    let created = server.send_signed(&server.request("PUT", "/ringstore-bench"));
    assert_eq!(created.status, 200);
    let mut put = server.request("PUT", "/ringstore-bench/some%20key");
    put.body = b"hello".to_vec();
    assert_eq!(server.send_signed(&put).status, 200);
    let presigned = bench(&server, &["presign", "--key", "some key"]);
    assert!(presigned.status.success());
    let url = String::from_utf8_lossy(&presigned.stdout).trim().to_owned();
    let target = url
        .strip_prefix(&server.endpoint())
        .unwrap_or_else(|| panic!("{url} is not on {}", server.endpoint()));
    let raw = format!("GET {target} HTTP/1.1\r\nHost: {}\r\n\r\n", server.addr);
    let response = server.send(raw.as_bytes());
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(response.text(), "hello");

    // Wrong credentials: every operation fails, the tool says so and exits
    // non-zero, and nothing is prepared.
    let output = Command::new(BENCH)
        .args(["get", "--duration", "1s", "--quiet", "--objects", "5"])
        .env("S3_ENDPOINT", server.endpoint())
        .env("AWS_ACCESS_KEY_ID", &server.keys.access_key_id)
        .env("AWS_SECRET_ACCESS_KEY", "not-the-secret")
        .env("AWS_REGION", server.region())
        .output()
        .expect("runs");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("SignatureDoesNotMatch"), "{stderr}");
}
