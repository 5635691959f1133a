//! Results: the JSON file, the table printed after a run, `compare`, the
//! markdown table of several runs, and the throughput-over-time plot (SVG).

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::run::{MIB, OPS, PhaseOutcome, Plan};

/// One run, as written to the JSON file.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunResult {
    pub tool: String,
    pub version: String,
    pub benchmark: String,
    pub label: Option<String>,
    pub endpoint: String,
    pub bucket: String,
    /// Unix seconds at the end of the run.
    pub finished_unix: u64,
    pub concurrency: usize,
    pub threads: usize,
    pub size_min: u64,
    pub size_max: u64,
    pub objects: usize,
    /// Wall time of the measured phase.
    pub seconds: f64,
    pub operations: Vec<OpResult>,
    pub total: OpResult,
    /// Per whole second of the run, per operation (same order as
    /// `operations`); a last partial second is left out.
    pub timeline: Vec<Series>,
    pub server: Option<ServerUsage>,
    pub client_cpu_seconds: f64,
    pub error_samples: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OpResult {
    pub op: String,
    pub ops: u64,
    pub bytes: u64,
    /// Keys listed (LIST only).
    pub items: u64,
    pub errors: u64,
    pub ops_per_second: f64,
    pub mib_per_second: f64,
    pub items_per_second: f64,
    pub latency_ms: Latency,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Latency {
    pub mean: f64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Series {
    pub op: String,
    pub ops: Vec<u64>,
    pub bytes: Vec<u64>,
}

/// The server process during the measured phase (`--server-pid`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ServerUsage {
    pub pid: u32,
    pub cpu_seconds: f64,
    /// CPU seconds per second of wall time: cores kept busy.
    pub cores_busy: f64,
    pub ops_per_cpu_second: f64,
    pub mib_per_cpu_second: f64,
    pub rss_start_mib: f64,
    pub rss_max_mib: f64,
}

fn latency(mut micros: Vec<u32>) -> Latency {
    if micros.is_empty() {
        return Latency::default();
    }
    micros.sort_unstable();
    let at = |quantile: f64| {
        #[expect(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            reason = "an index into the samples"
        )]
        let index = ((micros.len() as f64 * quantile).ceil() as usize).clamp(1, micros.len()) - 1;
        f64::from(micros[index]) / 1000.0
    };
    let sum: u64 = micros.iter().map(|&value| u64::from(value)).sum();
    Latency {
        mean: sum as f64 / micros.len() as f64 / 1000.0,
        p50: at(0.50),
        p90: at(0.90),
        p99: at(0.99),
        p999: at(0.999),
        max: f64::from(*micros.last().expect("not empty")) / 1000.0,
    }
}

/// Merge the workers' records into the result.
pub fn summarize(plan: &Plan, outcome: &PhaseOutcome) -> RunResult {
    let seconds = outcome.wall.as_secs_f64();
    // Whole seconds only: a last, partial second would read as a drop.
    let length = outcome
        .stats
        .iter()
        .map(|worker| worker.timeline.len())
        .max()
        .unwrap_or(0);
    #[expect(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        reason = "whole seconds of a run"
    )]
    let whole = seconds.floor() as usize;
    let length = if whole >= 1 {
        length.min(whole)
    } else {
        length
    };
    let mut operations = Vec::new();
    let mut timeline = Vec::new();
    let mut all = Vec::new();
    let (mut total_bytes, mut total_items, mut total_errors) = (0, 0, 0);
    for (index, op) in OPS.iter().enumerate() {
        let mut micros = Vec::new();
        let (mut bytes, mut items, mut errors) = (0, 0, 0);
        let mut series = Series {
            op: op.name().to_owned(),
            ops: vec![0; length],
            bytes: vec![0; length],
        };
        for worker in &outcome.stats {
            micros.extend_from_slice(&worker.latencies[index]);
            bytes += worker.bytes[index];
            items += worker.items[index];
            errors += worker.errors[index];
            for (second, slots) in worker.timeline.iter().take(length).enumerate() {
                series.ops[second] += slots[index].ops;
                series.bytes[second] += slots[index].bytes;
            }
        }
        if micros.is_empty() && errors == 0 {
            continue;
        }
        all.extend_from_slice(&micros);
        total_bytes += bytes;
        total_items += items;
        total_errors += errors;
        operations.push(op_result(op.name(), micros, bytes, items, errors, seconds));
        timeline.push(series);
    }
    let total = op_result(
        "TOTAL",
        all,
        total_bytes,
        total_items,
        total_errors,
        seconds,
    );
    let server = server_usage(plan, outcome, &total, seconds);
    RunResult {
        tool: "ringstore-bench".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        benchmark: plan.benchmark.name().into(),
        label: plan.label.clone(),
        endpoint: plan.endpoint_url.clone(),
        bucket: plan.bucket.clone(),
        finished_unix: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.as_secs()),
        concurrency: plan.concurrency,
        threads: plan.threads,
        size_min: plan.size_min,
        size_max: plan.size_max,
        objects: plan.objects,
        seconds,
        operations,
        total,
        timeline,
        server,
        client_cpu_seconds: outcome.client_cpu_seconds,
        error_samples: outcome
            .stats
            .iter()
            .flat_map(|worker| worker.error_samples.iter().cloned())
            .take(20)
            .collect(),
    }
}

fn server_usage(
    plan: &Plan,
    outcome: &PhaseOutcome,
    total: &OpResult,
    seconds: f64,
) -> Option<ServerUsage> {
    let (pid, before, after) = (
        plan.server_pid?,
        outcome.server_before?,
        outcome.server_after?,
    );
    let cpu = (after.cpu_seconds - before.cpu_seconds).max(1e-9);
    Some(ServerUsage {
        pid,
        cpu_seconds: cpu,
        cores_busy: cpu / seconds,
        ops_per_cpu_second: total.ops as f64 / cpu,
        mib_per_cpu_second: total.bytes as f64 / MIB / cpu,
        rss_start_mib: before.rss_bytes as f64 / MIB,
        rss_max_mib: outcome.server_rss_max as f64 / MIB,
    })
}

fn op_result(
    op: &str,
    micros: Vec<u32>,
    bytes: u64,
    items: u64,
    errors: u64,
    seconds: f64,
) -> OpResult {
    let ops = micros.len() as u64;
    OpResult {
        op: op.to_owned(),
        ops,
        bytes,
        items,
        errors,
        ops_per_second: ops as f64 / seconds,
        mib_per_second: bytes as f64 / MIB / seconds,
        items_per_second: items as f64 / seconds,
        latency_ms: latency(micros),
    }
}

/// A size for people: `4 KiB`, `64 MiB`, `1000 B`.
pub fn human_size(bytes: u64) -> String {
    const UNITS: [(&str, u64); 3] = [("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)];
    for (unit, scale) in UNITS {
        if bytes >= scale && bytes.is_multiple_of(scale) {
            return format!("{} {unit}", bytes / scale);
        }
    }
    for (unit, scale) in UNITS {
        if bytes >= scale {
            return format!("{:.1} {unit}", bytes as f64 / scale as f64);
        }
    }
    format!("{bytes} B")
}

fn size_text(result: &RunResult) -> String {
    if result.size_min == result.size_max {
        human_size(result.size_min)
    } else {
        format!(
            "{}-{}",
            human_size(result.size_min),
            human_size(result.size_max)
        )
    }
}

/// The table printed after a run.
pub fn table(result: &RunResult) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "ringstore-bench {}{}: {} clients, {} objects, {:.1} s, {}",
        result.benchmark,
        result
            .label
            .as_ref()
            .map(|label| format!(" [{label}]"))
            .unwrap_or_default(),
        result.concurrency,
        size_text(result),
        result.seconds,
        result.endpoint
    );
    let _ = writeln!(
        out,
        "{:<13}{:>10}{:>12}{:>10}{:>9}{:>9}{:>9}{:>10}{:>9}{:>8}",
        "op", "ops", "ops/s", "MiB/s", "p50 ms", "p90 ms", "p99 ms", "p99.9 ms", "max ms", "errors"
    );
    let rows = result
        .operations
        .iter()
        .chain((result.operations.len() > 1).then_some(&result.total));
    for row in rows {
        let latency = &row.latency_ms;
        let _ = writeln!(
            out,
            "{:<13}{:>10}{:>12.1}{:>10.2}{:>9.2}{:>9.2}{:>9.2}{:>10.2}{:>9.1}{:>8}",
            row.op,
            row.ops,
            row.ops_per_second,
            row.mib_per_second,
            latency.p50,
            latency.p90,
            latency.p99,
            latency.p999,
            latency.max,
            row.errors
        );
        if row.items > 0 {
            let _ = writeln!(
                out,
                "{:<13}{:>10} keys listed, {:.0} keys/s",
                "", row.items, row.items_per_second
            );
        }
    }
    if let Some(server) = &result.server {
        let _ = writeln!(
            out,
            "server: {:.2} CPU-s ({:.2} cores busy), {:.0} ops and {:.1} MiB per CPU-second, RSS {:.0} MiB at start, {:.0} MiB at most",
            server.cpu_seconds,
            server.cores_busy,
            server.ops_per_cpu_second,
            server.mib_per_cpu_second,
            server.rss_start_mib,
            server.rss_max_mib
        );
    }
    let _ = writeln!(out, "client: {:.2} CPU-s", result.client_cpu_seconds);
    for sample in &result.error_samples {
        let _ = writeln!(out, "error: {sample}");
    }
    out
}

fn ratio(a: f64, b: f64) -> String {
    if a > 0.0 {
        format!("{:.2}x", b / a)
    } else {
        "-".into()
    }
}

/// Two results side by side: B against A.
pub fn compare(a: &RunResult, b: &RunResult, a_name: &str, b_name: &str) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "A: {a_name} ({} {}, {} clients)",
        a.benchmark,
        size_text(a),
        a.concurrency
    );
    let _ = writeln!(
        out,
        "B: {b_name} ({} {}, {} clients)",
        b.benchmark,
        size_text(b),
        b.concurrency
    );
    let _ = writeln!(
        out,
        "{:<13}{:<12}{:>14}{:>14}{:>9}",
        "op", "metric", "A", "B", "B/A"
    );
    let mut ops: Vec<&str> = a.operations.iter().map(|row| row.op.as_str()).collect();
    for row in &b.operations {
        if !ops.contains(&row.op.as_str()) {
            ops.push(&row.op);
        }
    }
    ops.push("TOTAL");
    let find = |result: &RunResult, op: &str| -> Option<OpResult> {
        if op == "TOTAL" {
            Some(result.total.clone())
        } else {
            result.operations.iter().find(|row| row.op == op).cloned()
        }
    };
    for op in ops {
        let (Some(x), Some(y)) = (find(a, op), find(b, op)) else {
            let _ = writeln!(out, "{op:<13}(only in one result)");
            continue;
        };
        let metrics = [
            ("ops/s", x.ops_per_second, y.ops_per_second),
            ("MiB/s", x.mib_per_second, y.mib_per_second),
            ("p50 ms", x.latency_ms.p50, y.latency_ms.p50),
            ("p99 ms", x.latency_ms.p99, y.latency_ms.p99),
            ("p99.9 ms", x.latency_ms.p999, y.latency_ms.p999),
            ("errors", x.errors as f64, y.errors as f64),
        ];
        for (metric, va, vb) in metrics {
            if metric == "MiB/s" && va == 0.0 && vb == 0.0 {
                continue;
            }
            let _ = writeln!(
                out,
                "{op:<13}{metric:<12}{va:>14.2}{vb:>14.2}{:>9}",
                ratio(va, vb)
            );
        }
    }
    if let (Some(x), Some(y)) = (&a.server, &b.server) {
        let _ = writeln!(
            out,
            "{:<13}{:<12}{:>14.0}{:>14.0}{:>9}",
            "server",
            "ops/CPU-s",
            x.ops_per_cpu_second,
            y.ops_per_cpu_second,
            ratio(x.ops_per_cpu_second, y.ops_per_cpu_second)
        );
        let _ = writeln!(
            out,
            "{:<13}{:<12}{:>14.1}{:>14.1}{:>9}",
            "server",
            "MiB/CPU-s",
            x.mib_per_cpu_second,
            y.mib_per_cpu_second,
            ratio(x.mib_per_cpu_second, y.mib_per_cpu_second)
        );
    }
    out
}

/// One markdown table over many results, a row per operation.
pub fn markdown(results: &[(String, RunResult)]) -> String {
    let mut out = String::from(
        "| run | op | size | clients | ops/s | MiB/s | p50 ms | p99 ms | p99.9 ms | errors | server cores busy | ops / server CPU-s | MiB / server CPU-s | server RSS max MiB |\n\
         |---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for (name, result) in results {
        for row in &result.operations {
            let server = result.server.as_ref();
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {:.0} | {:.1} | {:.2} | {:.2} | {:.2} | {} | {} | {} | {} | {} |",
                result.label.clone().unwrap_or_else(|| name.clone()),
                row.op,
                size_text(result),
                result.concurrency,
                row.ops_per_second,
                row.mib_per_second,
                row.latency_ms.p50,
                row.latency_ms.p99,
                row.latency_ms.p999,
                row.errors,
                server.map_or("-".into(), |s| format!("{:.2}", s.cores_busy)),
                server.map_or("-".into(), |s| format!(
                    "{:.0}",
                    row.ops as f64 / s.cpu_seconds
                )),
                server.map_or("-".into(), |s| format!(
                    "{:.1}",
                    row.bytes as f64 / MIB / s.cpu_seconds
                )),
                server.map_or("-".into(), |s| format!("{:.0}", s.rss_max_mib)),
            );
        }
    }
    out
}

const COLORS: [&str; 8] = [
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf",
];

const WIDTH: f64 = 900.0;
const HEIGHT: f64 = 420.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 140.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 50.0;
const PLOT_WIDTH: f64 = WIDTH - LEFT - RIGHT;
const PLOT_HEIGHT: f64 = HEIGHT - TOP - BOTTOM;

fn x_at(second: f64, seconds: usize) -> f64 {
    LEFT + second / (seconds - 1) as f64 * PLOT_WIDTH
}

fn y_at(value: f64, top: f64) -> f64 {
    TOP + PLOT_HEIGHT - value / top * PLOT_HEIGHT
}

/// Grid, tick labels, axis titles and the frame.
fn draw_axes(svg: &mut String, top: f64, seconds: usize, unit: &str) {
    let (plot_width, plot_height) = (PLOT_WIDTH, PLOT_HEIGHT);
    let x = |second: f64| x_at(second, seconds);
    let y = |value: f64| y_at(value, top);
    for step in 0..=5 {
        let value = top * f64::from(step) / 5.0;
        let at = y(value);
        let _ = writeln!(
            *svg,
            r##"<line x1="{LEFT}" y1="{at:.1}" x2="{:.1}" y2="{at:.1}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
            LEFT + plot_width,
            LEFT - 6.0,
            at + 4.0,
            format_tick(value)
        );
    }
    let tick_every = (seconds / 10).max(1);
    for second in (0..seconds).step_by(tick_every) {
        let at = x(second as f64);
        let _ = writeln!(
            *svg,
            r#"<text x="{at:.1}" y="{:.1}" text-anchor="middle">{second}</text>"#,
            TOP + plot_height + 18.0
        );
    }
    let _ = writeln!(
        *svg,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">seconds</text>"#,
        LEFT + plot_width / 2.0,
        HEIGHT - 10.0
    );
    let _ = writeln!(
        *svg,
        r#"<text x="16" y="{:.1}" transform="rotate(-90 16 {:.1})" text-anchor="middle">{unit}</text>"#,
        TOP + plot_height / 2.0,
        TOP + plot_height / 2.0
    );
    let _ = writeln!(
        *svg,
        r#"<rect x="{LEFT}" y="{TOP}" width="{plot_width}" height="{plot_height}" fill="none" stroke="black"/>"#
    );
}

/// Throughput over time as an SVG line chart: MiB/s when the run moved
/// bytes, operations per second otherwise, one line per operation.
pub fn plot_svg(result: &RunResult) -> String {
    let by_bytes =
        matches!(result.benchmark.as_str(), "put" | "get" | "multipart") && result.total.bytes > 0;
    let values: Vec<(String, Vec<f64>)> = result
        .timeline
        .iter()
        .filter(|series| !by_bytes || series.bytes.iter().any(|&bytes| bytes > 0))
        .map(|series| {
            let points = if by_bytes {
                series
                    .bytes
                    .iter()
                    .map(|&bytes| bytes as f64 / MIB)
                    .collect()
            } else {
                series.ops.iter().map(|&ops| ops as f64).collect()
            };
            (series.op.clone(), points)
        })
        .collect();
    let seconds = values
        .iter()
        .map(|(_, points)| points.len())
        .max()
        .unwrap_or(0)
        .max(2);
    let peak = values
        .iter()
        .flat_map(|(_, points)| points.iter().copied())
        .fold(0.0_f64, f64::max);
    let top = nice_ceiling(peak);
    let plot_width = PLOT_WIDTH;
    let x = |second: f64| x_at(second, seconds);
    let y = |value: f64| y_at(value, top);
    let unit = if by_bytes { "MiB/s" } else { "ops/s" };
    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(svg, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        svg,
        r#"<text x="{LEFT}" y="22" font-size="15">{} {}, {} clients: {unit}, second by second{}</text>"#,
        xml_escape(&result.benchmark),
        xml_escape(&size_text(result)),
        result.concurrency,
        result
            .label
            .as_ref()
            .map(|label| format!(" ({})", xml_escape(label)))
            .unwrap_or_default()
    );
    draw_axes(&mut svg, top, seconds, unit);
    for (index, (op, points)) in values.iter().enumerate() {
        let color = COLORS[index % COLORS.len()];
        let mut path = String::new();
        for (second, value) in points.iter().enumerate() {
            let _ = write!(path, "{:.1},{:.1} ", x(second as f64), y(*value));
        }
        let _ = writeln!(
            svg,
            r#"<polyline fill="none" stroke="{color}" stroke-width="2" points="{}"/>"#,
            path.trim_end()
        );
        let legend_y = TOP + 10.0 + 18.0 * index as f64;
        let _ = writeln!(
            svg,
            r#"<line x1="{:.1}" y1="{legend_y:.1}" x2="{:.1}" y2="{legend_y:.1}" stroke="{color}" stroke-width="3"/><text x="{:.1}" y="{:.1}">{}</text>"#,
            LEFT + plot_width + 12.0,
            LEFT + plot_width + 32.0,
            LEFT + plot_width + 38.0,
            legend_y + 4.0,
            xml_escape(op)
        );
    }
    svg.push_str("</svg>\n");
    svg
}

/// The smallest 1, 2 or 5 times a power of ten at or above `value`.
fn nice_ceiling(value: f64) -> f64 {
    if value <= 0.0 {
        return 1.0;
    }
    let magnitude = 10f64.powf(value.log10().floor());
    for step in [1.0, 2.0, 5.0, 10.0] {
        if step * magnitude >= value {
            return step * magnitude;
        }
    }
    10.0 * magnitude
}

fn format_tick(value: f64) -> String {
    if value >= 1000.0 || value.fract().abs() < 1e-9 {
        format!("{value:.0}")
    } else {
        format!("{value:.1}")
    }
}

fn xml_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_quantiles_are_nearest_rank() {
        let latency = latency((1..=1000).collect());
        assert!((latency.p50 - 0.5).abs() < 1e-9);
        assert!((latency.p99 - 0.99).abs() < 1e-9);
        assert!((latency.p999 - 0.999).abs() < 1e-9);
        assert!((latency.max - 1.0).abs() < 1e-9);
    }

    #[test]
    fn sizes_and_ticks() {
        assert_eq!(human_size(4096), "4 KiB");
        assert_eq!(human_size(64 << 20), "64 MiB");
        assert_eq!(human_size(1500), "1.5 KiB");
        assert_eq!(human_size(10), "10 B");
        assert!((nice_ceiling(730.0) - 1000.0).abs() < 1e-9);
        assert!((nice_ceiling(130.0) - 200.0).abs() < 1e-9);
        assert!((nice_ceiling(0.0) - 1.0).abs() < 1e-9);
    }
}
