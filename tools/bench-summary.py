#!/usr/bin/env python3
"""Summarize one tools/bench-run output directory as markdown.

Reads the machine limits (fio-*.json, iperf3.json, md5-*.json) and the
ringstore-bench results (ringstore-N/*.json, s3s-fs/*.json,
ringstore-1/*.json) and prints: the machine, its limits, every issue-6
target with its measured ratio, the efficiency per server CPU-second with
1 and N cores, and the full result tables.

    python3 tools/bench-summary.py target/bench-results/<run> > summary.md
"""

import glob
import json
import os
import platform
import subprocess
import sys

MIB = 1024 * 1024


def load(path):
    try:
        with open(path) as handle:
            return json.load(handle)
    except (OSError, ValueError):
        return None


def results(directory):
    found = {}
    for path in sorted(glob.glob(os.path.join(directory, "*.json"))):
        result = load(path)
        if result and result.get("tool") == "ringstore-bench":
            found[os.path.splitext(os.path.basename(path))[0]] = result
    return found


def row(result, op):
    for candidate in result["operations"]:
        if candidate["op"] == op:
            return candidate
    return None


def fio_bandwidth(out, name, direction):
    data = load(os.path.join(out, f"fio-{name}.json"))
    if not data:
        return None
    return data["jobs"][0][direction]["bw_bytes"] / MIB


def fio_iops(out, name):
    data = load(os.path.join(out, f"fio-{name}.json"))
    if not data:
        return None
    return data["jobs"][0]["write"]["iops"]


def machine_text():
    lines = []
    try:
        cpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        model = next((l.split(":", 1)[1].strip() for l in cpu.splitlines() if l.startswith("Model name")), "?")
    except OSError:
        model = "?"
    lines.append(f"- CPU: {model}, {os.cpu_count()} cores online")
    try:
        with open("/proc/meminfo") as handle:
            total = int(handle.readline().split()[1]) / 1024 / 1024
        lines.append(f"- memory: {total:.0f} GiB")
    except OSError:
        pass
    lines.append(f"- kernel: {platform.release()}")
    return "\n".join(lines)


def fmt(value, digits=0):
    if value is None:
        return "-"
    return f"{value:,.{digits}f}"


def verdict(ratio, goal, higher_is_better=True):
    if ratio is None:
        return "not measured"
    met = ratio >= goal if higher_is_better else ratio <= goal
    return "**met**" if met else "not met"


def main():
    out = sys.argv[1]
    dirs = sorted(d for d in os.listdir(out) if d.startswith("ringstore-") and os.path.isdir(os.path.join(out, d)))
    cores = max((int(d.split("-")[1]) for d in dirs), default=None)
    main_runs = results(os.path.join(out, f"ringstore-{cores}")) if cores else {}
    one_core = results(os.path.join(out, "ringstore-1")) if cores and cores != 1 else {}
    peer = results(os.path.join(out, "s3s-fs"))

    seq_write = fio_bandwidth(out, "seq-write", "write")
    seq_read = fio_bandwidth(out, "seq-read", "read")
    sync_iops = fio_iops(out, "write-4k-fdatasync")
    iperf = load(os.path.join(out, "iperf3.json"))
    loopback = iperf["end"]["sum_received"]["bits_per_second"] / 8 / MIB if iperf and "end" in iperf else None
    md5_one = load(os.path.join(out, "md5-1.json"))
    md5_all = load(os.path.join(out, "md5-all.json"))
    md5_lanes = load(os.path.join(out, "md5-all-lanes.json"))

    print("## Machine\n")
    print(machine_text())
    print()
    print("## Limits of this machine\n")
    print("| what | measured |")
    print("|---|---:|")
    print(f"| fio direct sequential write, 1 MiB blocks, io_uring QD16 | {fmt(seq_write)} MiB/s |")
    print(f"| fio direct sequential read, 1 MiB blocks, io_uring QD16 | {fmt(seq_read)} MiB/s |")
    print(f"| fio 4 KiB write + fdatasync, one job | {fmt(sync_iops)} IOPS |")
    print(f"| iperf3 over loopback, one stream | {fmt(loopback)} MiB/s |")
    if md5_one and md5_all:
        print(f"| MD5 (ringstore's implementation), one core | {fmt(md5_one['mib_per_second'])} MiB/s |")
        print(f"| MD5, all {md5_all['threads']} cores at once, one stream each | {fmt(md5_all['mib_per_second'])} MiB/s |")
    if md5_lanes:
        print(
            f"| MD5, all {md5_lanes['threads']} cores, {md5_lanes['lanes']} streams side by side each (AVX-512 lanes) "
            f"| {fmt(md5_lanes['mib_per_second'])} MiB/s |"
        )
    print()

    def ops(runs, name, op):
        result = runs.get(name)
        found = row(result, op) if result else None
        return found

    print("## Targets (issue 6), measured in this run\n")
    print("| target | ringstore | reference | ratio | goal | verdict |")
    print("|---|---:|---:|---:|---:|---|")
    for size, goal, op in (("4KiB", 3.0, "GET"), ("4KiB", 5.0, "PUT")):
        name = f"{op.lower()}-{size}"
        ours, theirs = ops(main_runs, name, op), ops(peer, name, op)
        ratio = ours["ops_per_second"] / theirs["ops_per_second"] if ours and theirs and theirs["ops_per_second"] else None
        label = "GET 4 KiB vs s3s-fs" if op == "GET" else "durable PUT 4 KiB vs s3s-fs (no fsync)"
        print(
            f"| {label} | {fmt(ours and ours['ops_per_second'])} ops/s | {fmt(theirs and theirs['ops_per_second'])} ops/s "
            f"| {fmt(ratio, 2)}x | {goal:.0f}x | {verdict(ratio, goal)} |"
        )
    get_1m = ops(main_runs, "get-1MiB", "GET")
    ratio = get_1m["mib_per_second"] / seq_read if get_1m and seq_read else None
    print(
        f"| GET 1 MiB vs disk direct sequential read | {fmt(get_1m and get_1m['mib_per_second'])} MiB/s | {fmt(seq_read)} MiB/s "
        f"| {fmt(ratio and ratio * 100)}% | 90% | {verdict(ratio, 0.9)} |"
    )
    put_1m = ops(main_runs, "put-1MiB", "PUT")
    # The best MD5 kept is the lane kernel; its all-core rate is the MD5
    # ceiling (the scalar one is shown in the limits table).
    best_md5 = md5_lanes or md5_all
    ceilings = [value for value in (seq_write, best_md5 and best_md5["mib_per_second"]) if value]
    ceiling = min(ceilings) if ceilings else None
    ratio = put_1m["mib_per_second"] / ceiling if put_1m and ceiling else None
    print(
        f"| PUT 1 MiB vs min(disk sequential write, MD5 on all cores) | {fmt(put_1m and put_1m['mib_per_second'])} MiB/s "
        f"| {fmt(ceiling)} MiB/s | {fmt(ratio and ratio * 100)}% | 80% | {verdict(ratio, 0.8)} |"
    )
    for name, op in (("get-4KiB", "GET"), ("put-4KiB", "PUT"), ("stat-4KiB", "STAT"),
                     ("mixed-4KiB", "GET"), ("mixed-4KiB", "STAT"), ("mixed-4KiB", "PUT"), ("mixed-4KiB", "DELETE")):
        found = ops(main_runs, name, op)
        p99 = found["latency_ms"]["p99"] if found else None
        print(
            f"| p99 of {op} 4 KiB ({name}), 64 clients | {fmt(p99, 2)} ms | 5 ms "
            f"| {fmt(p99 and p99 / 5 * 100)}% | ≤ 100% | {verdict(p99, 5.0, higher_is_better=False)} |"
        )
    # Memory flat in object size: what a run of 64 MiB objects adds to the
    # server's memory must not exceed what a run of 1 MiB objects adds by
    # as much as one object (both stream in 1 MiB extents). Growth within
    # each run is compared: the process's RSS carries over from run to run.
    for op in ("PUT", "GET"):
        small = main_runs.get(f"{op.lower()}-1MiB")
        large = main_runs.get(f"{op.lower()}-64MiB")
        if small and large and small.get("server") and large.get("server"):
            def growth(result):
                return result["server"]["rss_max_mib"] - result["server"]["rss_start_mib"]
            extra = growth(large) - growth(small)
            print(
                f"| server RSS growth during a run, {op} of 64 MiB vs 1 MiB objects | +{fmt(growth(large))} MiB "
                f"| +{fmt(growth(small))} MiB | {extra:+.0f} MiB | < +64 MiB (one object) "
                f"| {verdict(extra, 64.0, higher_is_better=False)} |"
            )
    print()

    if one_core:
        print(f"## Efficiency: per second of server CPU time, --cores 1 and --cores {cores}\n")
        print(f"| benchmark | cores | ops/s | MiB/s | server cores busy | ops per CPU-s | MiB per CPU-s | {cores} cores / 1 core, per CPU-s |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|")
        for name in sorted(one_core):
            single = one_core[name]
            multi = main_runs.get(name)
            for label, result in (("1", single), (str(cores), multi)):
                if not result or not result.get("server"):
                    continue
                server = result["server"]
                relative = ""
                if label != "1" and single.get("server"):
                    base = single["server"]["ops_per_cpu_second"]
                    relative = f"{server['ops_per_cpu_second'] / base:.2f}" if base else "-"
                total = result["total"]
                print(
                    f"| {name} | {label} | {fmt(total['ops_per_second'])} | {fmt(total['mib_per_second'], 1)} "
                    f"| {server['cores_busy']:.2f} | {fmt(server['ops_per_cpu_second'])} | {fmt(server['mib_per_cpu_second'], 1)} | {relative} |"
                )
        print()

    for title, runs in ((f"ringstore, --cores {cores}", main_runs), ("s3s-fs 0.14.1", peer), ("ringstore, --cores 1", one_core)):
        if not runs:
            continue
        print(f"## All results: {title}\n")
        print("| run | op | ops/s | MiB/s | p50 ms | p99 ms | p99.9 ms | max ms | errors | server cores busy | server RSS max MiB |")
        print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for name, result in runs.items():
            for found in result["operations"]:
                server = result.get("server") or {}
                latency = found["latency_ms"]
                extra = f" ({fmt(found['items_per_second'])} keys/s)" if found.get("items") else ""
                print(
                    f"| {name} | {found['op']} | {fmt(found['ops_per_second'])}{extra} | {fmt(found['mib_per_second'], 1)} "
                    f"| {latency['p50']:.2f} | {latency['p99']:.2f} | {latency['p999']:.2f} | {latency['max']:.1f} | {found['errors']} "
                    f"| {server.get('cores_busy', 0):.2f} | {fmt(server.get('rss_max_mib'))} |"
                )
        print()


if __name__ == "__main__":
    main()
