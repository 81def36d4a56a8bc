#!/usr/bin/env python3
"""Statistics and report for bench/run.sh (standard library only).

    report.py record --runs RUNS.jsonl key=value ...
        Parses one load run's output (wrk or h2load), combines it with the measurements the
        shell took (CPU ticks, RSS, noise) and appends one JSON record to RUNS.jsonl.

    report.py render --runs RUNS.jsonl --meta META.txt --out-dir DIR
        Medians over repetitions, ratios weir/nginx and weir/HAProxy; writes DIR/latest.md,
        DIR/latest.csv (one row per run) and DIR/latest.json (meta, runs, summary) and prints
        the Markdown to stdout.
"""

import argparse
import csv
import json
import math
import re
import statistics
import sys
from pathlib import Path

TARGET_ORDER = ["direct", "nginx", "haproxy", "weir"]
TARGET_NAMES = {"direct": "direct (ceiling)", "nginx": "nginx", "haproxy": "HAProxy", "weir": "weir"}
INT_FIELDS = {
    "workers", "rep", "conns", "duration_s", "tool_rc", "alive", "wall_ms", "clk_tck",
    "cpu_ticks", "upstream_ticks", "gen_ticks", "rss_kib", "nprocs", "stop_ms", "killed",
    "log_problems", "busy_before_pct", "noisy_before", "others_pct", "steal_pct",
    "load_core_pct", "noise_max_pct",
}


# ---- record -------------------------------------------------------------------------------------

def parse_wrk(text):
    """The WRK_RESULT line printed by lib/wrk-report.lua."""
    m = re.search(r"^WRK_RESULT (.*)$", text, re.M)
    if not m:
        return None
    v = {k: float(x) for k, x in (kv.split("=") for kv in m.group(1).split())}
    seconds = v["duration_us"] / 1e6
    socket_errors = v["connect"] + v["read"] + v["write"] + v["timeout"]
    return {
        "requests": int(v["requests"]),
        "rps": v["requests"] / seconds if seconds > 0 else 0.0,
        "p50_us": v["p50_us"],
        "p99_us": v["p99_us"],
        "non2xx": int(v["status"]),
        "socket_errors": int(socket_errors),
        "errors": int(v["status"] + socket_errors),
        "negotiated": "",
    }


def percentile(sorted_values, p):
    """Nearest-rank percentile of an already sorted list."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(p / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


def parse_h2load(text, log_path):
    """h2load's summary, with p50/p99 from its per-request --log-file (it prints no percentiles)."""
    fin = re.search(r"finished in ([\d.]+)(m?s), ([\d.]+) req/s", text)
    req = re.search(
        r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, "
        r"(\d+) errored, (\d+) timeout", text)
    codes = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", text)
    proto = re.search(r"Application protocol: (\S+)", text)
    if not (fin and req and codes):
        return None
    done, failed = int(req.group(3)), int(req.group(5))
    non2xx = int(codes.group(2)) + int(codes.group(3)) + int(codes.group(4))
    latencies = []
    try:
        with open(log_path) as f:
            for line in f:
                parts = line.split("\t")
                if len(parts) >= 3:
                    latencies.append(int(parts[2]))
    except OSError:
        pass
    latencies.sort()
    return {
        "requests": done,
        "rps": float(fin.group(3)),
        "p50_us": percentile(latencies, 50),
        "p99_us": percentile(latencies, 99),
        "non2xx": non2xx,
        "socket_errors": failed,
        "errors": non2xx + failed,
        "negotiated": proto.group(1) if proto else "",
    }


def record(args):
    r = {}
    for kv in args.fields:
        key, _, value = kv.partition("=")
        r[key] = int(value) if key in INT_FIELDS and value.lstrip("-").isdigit() else value
    if r.get("status") not in ("na", "failed"):
        r.update(measure(r))
    with open(args.runs, "a") as f:
        f.write(json.dumps(r, sort_keys=True) + "\n")
    print(progress_line(r), file=sys.stderr)


def measure(r):
    """Turns the tool output and the shell's counters into the figures the report shows."""
    out = {}
    try:
        text = Path(r["output"]).read_text(errors="replace")
    except OSError:
        text = ""
    parsed = parse_wrk(text) if r["tool"] == "wrk" else parse_h2load(text, r.get("h2log", ""))
    if parsed is None:
        tail = " | ".join(text.strip().splitlines()[-3:])
        return {"status": "failed", "reason": f"no result from {r['tool']} (exit {r.get('tool_rc')}): {tail}"}
    out.update(parsed)
    cpu_s = r["cpu_ticks"] / r["clk_tck"]
    wall_s = r["wall_ms"] / 1000
    out["cpu_s"] = cpu_s
    out["cpu_us_per_req"] = cpu_s * 1e6 / parsed["requests"] if parsed["requests"] else None
    out["proxy_cpu_pct"] = 100 * cpu_s / wall_s if wall_s > 0 else None
    limit = r.get("noise_max_pct", 20)
    out["noisy"] = int(bool(r.get("noisy_before")) or r.get("others_pct", 0) > limit
                       or r.get("steal_pct", 0) > limit)
    if r["proxy"] == "direct":
        out["cpu_us_per_req"] = out["proxy_cpu_pct"] = None
    status = "ok"
    if not r.get("alive", 1):
        status = "died"
    elif parsed["requests"] == 0:
        status = "failed"
    out["status"] = status
    if r["tool"] == "h2load" and r["proto"] in ("h2", "h2c") and parsed["negotiated"] not in ("h2", "h2c"):
        out["reason"] = f"negotiated {parsed['negotiated'] or 'nothing'}, not h2"
    return out


def progress_line(r):
    head = f"    {r['scenario']:<18} {r['proxy']:<8}"
    if r["status"] in ("na", "failed"):
        return f"{head} {r['status']}: {r.get('reason', '')}"
    bits = [f"{fmt_int(r['rps'])} req/s", f"p99 {fmt_us(r['p99_us'])}", f"errors {r['errors']}"]
    if r.get("cpu_us_per_req") is not None:
        bits += [f"CPU {r['cpu_us_per_req']:.1f} µs/req ({r['proxy_cpu_pct']:.0f}%)",
                 f"RSS {r['rss_kib'] / 1024:.1f} MiB", f"stop {r['stop_ms']} ms"]
    bits.append(f"load core {r['load_core_pct']}%")
    if r.get("noisy"):
        bits.append(f"NOISY (before {r['busy_before_pct']}%; during: others {r['others_pct']}%, "
                    f"steal {r['steal_pct']}%)")
    if r["status"] != "ok":
        bits.append(r["status"].upper())
    return head + " " + ", ".join(bits)


# ---- render -------------------------------------------------------------------------------------

def fmt_int(x):
    return "–" if x is None else f"{x:,.0f}"


def fmt_us(us):
    if us is None:
        return "–"
    if us < 1000:
        return f"{us:.0f} µs"
    if us < 10000:
        return f"{us / 1000:.2f} ms"
    return f"{us / 1000:.1f} ms"


def fmt_ratio(a, b):
    if a is None or b is None or b == 0:
        return "–"
    return f"{a / b:.2f}×"


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def summarize(runs):
    """One row per (workers, scenario, target): medians over the repetitions."""
    groups = {}
    for r in runs:
        groups.setdefault((r["workers"], r["scenario"], r["proxy"]), []).append(r)
    rows = []
    for (workers, scenario, proxy), rs in groups.items():
        row = {"workers": workers, "scenario": scenario, "proxy": proxy, "reps": len(rs)}
        if all(r["status"] == "na" for r in rs):
            row.update(status="na", reason=rs[0].get("reason", "n/a"))
            rows.append(row)
            continue
        ok = [r for r in rs if r["status"] in ("ok", "died") and r.get("requests")]
        rps = [r["rps"] for r in ok]
        row.update(
            status="ok" if len(ok) == len(rs) and all(r["status"] == "ok" for r in rs) else "problem",
            ok_reps=len(ok),
            rps=median(rps),
            rps_range_pct=(100 * (max(rps) - min(rps)) / median(rps)) if len(rps) > 1 and median(rps) else None,
            p50_us=median([r["p50_us"] for r in ok]),
            p99_us=median([r["p99_us"] for r in ok]),
            errors=sum(r.get("errors", 0) for r in ok),
            requests=sum(r.get("requests", 0) for r in ok),
            cpu_us_per_req=median([r.get("cpu_us_per_req") for r in ok]),
            proxy_cpu_pct=median([r.get("proxy_cpu_pct") for r in ok]),
            load_core_pct=median([r.get("load_core_pct") for r in ok]),
            rss_kib=max((r.get("rss_kib", 0) for r in ok), default=0) or None,
            noisy=sum(1 for r in ok if r.get("noisy")),
            died=sum(1 for r in rs if r["status"] == "died"),
            failed=[r.get("reason", "failed") for r in rs if r["status"] == "failed"],
            killed=sum(1 for r in ok if r.get("killed")),
            stop_ms=max((r.get("stop_ms", 0) for r in ok), default=0),
            log_problems=sum(r.get("log_problems", 0) for r in ok),
            notes=sorted({r["reason"] for r in ok if r.get("reason")}),
        )
        if proxy == "direct":
            row["rss_kib"] = None
        rows.append(row)
    scenario_order = {s: i for i, s in enumerate(dict.fromkeys(r["scenario"] for r in runs))}
    rows.sort(key=lambda x: (x["workers"], scenario_order[x["scenario"]], TARGET_ORDER.index(x["proxy"])))
    return rows


def flags(row):
    f = []
    if row.get("noisy"):
        f.append(f"noisy ({row['noisy']}/{row['ok_reps']})")
    if row.get("died"):
        f.append(f"**died** ({row['died']}×)")
    if row.get("failed"):
        f.append("**failed**: " + "; ".join(row["failed"]))
    if row.get("killed"):
        f.append(f"needed SIGKILL to stop ({row['killed']}×)")
    if row.get("log_problems"):
        f.append(f"{row['log_problems']} warn/error log lines")
    f += row.get("notes", [])
    return ", ".join(f)


def results_table(rows):
    lines = [
        "| scenario | target | req/s | range | p50 | p99 | errors | CPU/req | proxy CPU | load core | peak RSS | flags |",
        "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|",
    ]
    for row in rows:
        name = TARGET_NAMES[row["proxy"]]
        if row["status"] == "na":
            lines.append(f"| {row['scenario']} | {name} | n/a | | | | | | | | | {row['reason']} |")
            continue
        rng = "–" if row.get("rps_range_pct") is None else f"{row['rps_range_pct']:.1f}%"
        cpu = "–" if row.get("cpu_us_per_req") is None else f"{row['cpu_us_per_req']:.1f} µs"
        pct = "–" if row.get("proxy_cpu_pct") is None else f"{row['proxy_cpu_pct']:.0f}%"
        load = "–" if row.get("load_core_pct") is None else f"{row['load_core_pct']:.0f}%"
        rss = "–" if not row.get("rss_kib") else f"{row['rss_kib'] / 1024:.1f} MiB"
        lines.append(
            f"| {row['scenario']} | {name} | {fmt_int(row.get('rps'))} | {rng} | {fmt_us(row.get('p50_us'))} "
            f"| {fmt_us(row.get('p99_us'))} | {fmt_int(row.get('errors'))} | {cpu} | {pct} | {load} | {rss} | {flags(row)} |")
    return lines


def ratios_table(rows):
    by = {(r["scenario"], r["proxy"]): r for r in rows}
    scenarios = list(dict.fromkeys(r["scenario"] for r in rows))
    lines = [
        "| scenario | req/s ÷ nginx | CPU/req ÷ nginx | p99 ÷ nginx | RSS ÷ nginx "
        "| req/s ÷ HAProxy | CPU/req ÷ HAProxy | p99 ÷ HAProxy | RSS ÷ HAProxy |",
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    any_row = False
    for s in scenarios:
        weir = by.get((s, "weir"))
        if weir is None:
            continue
        any_row = True
        if weir["status"] == "na":
            lines.append(f"| {s} | {weir['reason']} | | | | | | | |")
            continue
        cells = []
        for other in ("nginx", "haproxy"):
            o = by.get((s, other))
            if o is None or o["status"] == "na":
                cells += ["–"] * 4
                continue
            cells += [fmt_ratio(weir.get(k), o.get(k)) for k in ("rps", "cpu_us_per_req", "p99_us", "rss_kib")]
        noisy = weir.get("noisy") or any(by.get((s, o), {}).get("noisy") for o in ("nginx", "haproxy"))
        lines.append(f"| {s}{' (noisy)' if noisy else ''} | " + " | ".join(cells) + " |")
    return lines if any_row else []


def read_meta(path):
    meta = {}
    for line in Path(path).read_text().splitlines():
        key, _, value = line.partition("=")
        meta[key] = value
    return meta


def markdown(meta, rows):
    quick = meta.get("quick") == "1"
    title = "weir benchmark" + (" — QUICK smoke run" if quick else "")
    out = [
        f"# {title}",
        "",
        f"- **Date**: {meta['date']}",
        f"- **Machine**: {meta['cpu']}, {meta['ncpu']} cores, {meta['mem']}; kernel {meta['kernel']}",
        f"- **Versions**: {meta['nginx']}; {meta['haproxy']}; {meta['wrk']}; {meta['h2load']}; "
        f"{meta['openssl']}; {meta['weir']} (`{meta['weir_binary'] or '–'}`, built {meta.get('weir_built', '–')}; "
        f"repo HEAD at run time: {meta['repo_rev']})",
        f"- **Run**: {meta['reps']} rep(s) × {meta['duration']} s measured after {meta['warmup']} s warm-up, "
        f"targets alternating ({meta['proxies'].replace(' ', ', ')}); h2load streams/connection: {meta['h2_streams']}",
        f"- **Pinning**: proxy on core {meta['proxy_core']} (one worker/thread; with two: cores "
        f"{meta['proxy_core']},{meta['load_core']}); wrk/h2load and the upstream nginx on core {meta['load_core']}",
        "- **Method**: every proxy is started fresh for each run and stopped after it; req/s, p50, p99 and CPU/req "
        "are medians over the reps, errors summed, peak RSS the largest. CPU/req = the proxy's utime+stime "
        "(all its processes, from /proc/PID/stat) over the measured run ÷ requests completed. Peak RSS = sum of "
        "VmHWM of the proxy's processes (process lifetime: start, warm-up and run). See bench/README.md.",
    ]
    if quick:
        out += ["", "> QUICK smoke run (1 rep, 2 s, 32 connections): shows the harness works and the rough "
                "shape; not a measurement to quote. A full run is `bench/run.sh` with its defaults."]
    for workers in sorted({r["workers"] for r in rows}):
        ws = [r for r in rows if r["workers"] == workers]
        label = f"{workers} worker" + ("s" if workers != 1 else "")
        out += ["", f"## Results ({label})", ""] + results_table(ws)
        ratio = ratios_table(ws)
        if ratio:
            out += ["", f"## weir relative to nginx and HAProxy ({label})", "",
                    "Below 1× is better for weir in every column except req/s, where above 1× is better.", ""]
            out += ratio
    out += [
        "",
        "Columns: **req/s** median over reps; **range** (max−min)/median of req/s over reps; **p50/p99** "
        "latency (wrk: its histogram; h2load: from its per-request log); **errors** non-2xx/3xx responses + "
        "socket errors (wrk) or non-2xx + failed requests (h2load); **CPU/req** proxy CPU time per request; "
        "**proxy CPU** its CPU time ÷ wall time (100% = one core busy); **load core** how busy the "
        "generator+upstream core was (near 100%: the client side, not the proxy, may be the limit); "
        "**peak RSS** sum of VmHWM; **noisy**: other processes or hypervisor steal took more than "
        f"{meta['noise_max_pct']}% of a core before or during the run (a ratio row is marked when "
        "any of its three runs was).",
        "",
    ]
    return "\n".join(out)


def render(args):
    runs = [json.loads(line) for line in Path(args.runs).read_text().splitlines() if line.strip()]
    meta = read_meta(args.meta)
    rows = summarize(runs)
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    md = markdown(meta, rows)
    (out_dir / "latest.md").write_text(md)
    fields = sorted({k for r in runs for k in r if k not in ("output", "h2log")})
    first = ["workers", "rep", "scenario", "proxy", "status", "rps", "p50_us", "p99_us", "errors",
             "cpu_us_per_req", "proxy_cpu_pct", "rss_kib"]
    fields = first + [f for f in fields if f not in first]
    with open(out_dir / "latest.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
        w.writeheader()
        for r in runs:
            w.writerow(r)
    clean_runs = [{k: v for k, v in r.items() if k not in ("output", "h2log")} for r in runs]
    (out_dir / "latest.json").write_text(
        json.dumps({"meta": meta, "summary": rows, "runs": clean_runs}, indent=1, sort_keys=True) + "\n")
    print(md)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    rec = sub.add_parser("record")
    rec.add_argument("--runs", required=True)
    rec.add_argument("fields", nargs="*", help="key=value")
    ren = sub.add_parser("render")
    ren.add_argument("--runs", required=True)
    ren.add_argument("--meta", required=True)
    ren.add_argument("--out-dir", required=True)
    args = p.parse_args()
    {"record": record, "render": render}[args.command](args)


if __name__ == "__main__":
    main()
