"""Benchmark (issue 4): requests vs the API's floor, request rate, throughput and memory.

    python -m benchmarks.run --scale small [--limit on|off|both] [--tables all] [--repeat N]
    python benchmarks/run.py --scale tiny

For each limit mode it starts the simulated workspace in its own process (10 req/s limit on, or off),
runs a full sync into a fresh DuckDB file in another process, applies one change step, runs an incremental
sync, and (limit off) loads `messages` alone ``--messages-runs`` times for end-to-end throughput. It prints a
markdown report with PASS/FAIL per target and writes ``benchmarks/results/<date>-<scale>.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import math
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parent.parent  # subprocesses run `-m benchmarks.*` from here

RESULTS = ROOT / "benchmarks" / "results"
API_KEY = "bench-key-4f1d"
LIMIT_RATE = 10.0
# targets (issue 4)
FLOOR_FACTOR = 1.2
MIN_SUSTAINED_RATE = 9.0
MAX_429_SHARE = 0.01
MIN_MESSAGES_ROWS_PER_S = 25_000
MAX_RSS_GROWTH = 1.3
MAX_RSS_MB = 600
LIMITED_RATE_ESTIMATE = 9.5  # requests/s the client sustains under the 10/s limit (for the time estimate)


# -- machine ---------------------------------------------------------------------------------------------
def machine() -> dict[str, Any]:
    def read(path: str, key: str) -> str:
        try:
            for line in Path(path).read_text().splitlines():
                if line.startswith(key):
                    return line.split(":", 1)[1].strip()
        except OSError:
            pass
        return "?"

    memory_kb = read("/proc/meminfo", "MemTotal").split()[0]
    return {
        "nproc": os.cpu_count(),
        "memory_gb": round(int(memory_kb) / 1024 / 1024, 1) if memory_kb.isdigit() else None,
        "cpu": read("/proc/cpuinfo", "model name"),
        "python": platform.python_version(),
        "dlt": metadata.version("dlt"),
        "duckdb": metadata.version("duckdb"),
        "platform": platform.platform(),
    }


def source_state() -> dict[str, Any]:
    """Which code was measured: the commit and the files changed in the working tree (read-only git)."""

    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=30).stdout
        except (OSError, subprocess.SubprocessError):
            return ""

    changed = [line[3:] for line in git("status", "--porcelain", "--untracked-files=all", "customerio_source")
               .splitlines() if line.strip()]
    return {"commit": git("rev-parse", "--short", "HEAD").strip(), "changed_source_files": changed,
            "digest": source_digest()}


def source_digest() -> str:
    """A short hash of every file of the connector as it is now (the working tree may change between runs)."""
    digest = hashlib.sha256()
    for path in sorted((ROOT / "customerio_source").rglob("*.py")):
        digest.update(str(path.relative_to(ROOT)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


# -- processes -------------------------------------------------------------------------------------------
@dataclass
class Simulator:
    """The simulator process (API + admin ports)."""

    process: subprocess.Popen[bytes]
    api: str
    admin: str
    build_seconds: float
    ready: dict[str, Any] | None = None  # the simulator's ready line (build times, RSS)

    def call(self, method: str, path: str, timeout: float = 600) -> dict[str, Any]:
        request = urllib.request.Request(f"{self.admin}{path}", method=method, data=b"" if method == "POST" else None)
        with urllib.request.urlopen(request, timeout=timeout) as response:  # loopback only
            return orjson.loads(response.read())


@contextmanager
def simulator(scale: str, rate_limit: float, tables: str, render: str = "auto") -> Iterator[Simulator]:
    """``benchmarks.simserver`` in its own process; stopped when the block ends (:func:`stop`)."""
    command = [sys.executable, "-m", "benchmarks.simserver", "--scale", scale, "--rate-limit", str(rate_limit),
               "--api-key", API_KEY, "--tables", tables, "--render-deliveries", render]
    process = subprocess.Popen(command, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        if not line:
            raise RuntimeError(f"the simulator exited before it was ready (exit code {process.wait()})")
        ready = orjson.loads(line)
        yield Simulator(process, ready["api"], ready["admin"], ready["build_seconds"], ready)
    finally:
        stop(process, close_stdin=True)


SERVER_STOP_SECONDS = 30


def stop(process: subprocess.Popen[bytes], close_stdin: bool = False, group: bool = False) -> None:
    """Stop a process a benchmark started: close its stdin (the simulator's signal), then SIGTERM, SIGKILL
    (to its process group with ``group``)."""
    if close_stdin and process.stdin:
        try:
            process.stdin.close()
        except OSError:
            pass
        try:
            process.wait(timeout=SERVER_STOP_SECONDS)
            return
        except subprocess.TimeoutExpired:
            pass
    for sig in (signal.SIGTERM, signal.SIGKILL):
        if process.poll() is not None:
            return
        try:
            os.killpg(process.pid, sig) if group else process.send_signal(sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=SERVER_STOP_SECONDS)
        except subprocess.TimeoutExpired:
            continue


def run_pipeline(
    sim: Simulator, rate_limit: float, tables: str, workdir: Path, profile: Path | None = None
) -> dict[str, Any]:
    """One pipeline run in a child process; peak RSS from wait4 is that process's alone."""
    result = workdir / f"result-{time.monotonic_ns()}.json"
    command = [sys.executable, "-m", "benchmarks.worker", "--base-url", sim.api, "--api-key", API_KEY,
               "--rate-limit", str(rate_limit), "--tables", tables, "--workdir", str(workdir), "--result", str(result)]
    if profile:
        command += ["--profile", str(profile)]
    sim_cpu = sim.call("POST", "/_admin/reset")["cpu_seconds"]
    digest = source_digest()
    started = time.perf_counter()
    process = subprocess.Popen(command, cwd=ROOT)
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    elapsed = time.perf_counter() - started
    report: dict[str, Any] = orjson.loads(result.read_bytes()) if result.exists() else {"error": "no report"}
    if process.returncode != 0 and "error" not in report:
        report["error"] = f"exit code {process.returncode}"
    report["process_seconds"] = round(elapsed, 3)
    report["source_digest"] = digest
    report["peak_rss_mb"] = round(usage.ru_maxrss / 1024, 1)
    report["cpu_seconds"] = round(usage.ru_utime + usage.ru_stime, 3)
    report["server"] = sim.call("GET", "/_admin/stats")
    report["server"]["cpu_seconds"] = round(report["server"]["cpu_seconds"] - sim_cpu, 3)
    return report


# -- one limit mode --------------------------------------------------------------------------------------
def run_mode(args: argparse.Namespace, scale: str, limit: str, workroot: Path) -> dict[str, Any]:
    rate = LIMIT_RATE if limit == "on" else 0.0
    cycles: list[dict[str, Any]] = []
    messages: list[dict[str, Any]] = []
    for cycle in range(args.repeat):
        with simulator(scale, rate, args.tables, args.render_deliveries) as sim:
            floors = sim.call("GET", "/_admin/floor")["floors"]
            full_floor = sum(f["requests"] for f in floors.values())
            if limit == "on" and cycle == 0:
                minutes = 2 * full_floor / LIMITED_RATE_ESTIMATE / 60
                say(f"[{scale}/limit {limit}] full floor {full_floor} requests: ~{minutes:.1f} min at "
                    f"{LIMITED_RATE_ESTIMATE}/s for full + incremental")
                if minutes > args.max_limited_minutes:
                    return {"limit": limit, "rate_limit": rate, "skipped":
                            f"estimated {minutes:.0f} min > --max-limited-minutes {args.max_limited_minutes}"}
            workdir = workroot / f"{scale}-{limit}-{cycle}"
            say(f"[{scale}/limit {limit}] cycle {cycle + 1}/{args.repeat}: full sync (simulator built in "
                f"{sim.build_seconds}s)")
            full = run_pipeline(sim, rate, args.tables, workdir)
            say(f"  full: {brief(full)}")
            advanced = sim.call("POST", "/_admin/advance")
            say(f"[{scale}/limit {limit}] change step applied; incremental sync")
            incremental = run_pipeline(sim, rate, args.tables, workdir)
            say(f"  incremental: {brief(incremental)}")
            cycles.append({"floors": floors, "full": full, "incremental_floors": advanced["incremental"],
                           "watermarks": advanced["watermarks"], "incremental": incremental,
                           "simulator": sim.ready})
            if limit == "off" and args.messages_runs and cycle == 0:
                for run in range(args.messages_runs):
                    profile = RESULTS / f"profile-{scale}-messages.prof" if args.profile and run == 0 else None
                    report = run_pipeline(sim, rate, "messages", workroot / f"{scale}-messages-{run}", profile)
                    messages.append(report)
                    say(f"  messages alone #{run + 1}: {brief(report)}")
    return {"limit": limit, "rate_limit": rate, "cycles": cycles, "messages": messages,
            "summary": summarize(cycles, messages)}


def brief(report: dict[str, Any]) -> str:
    if "error" in report:
        return f"ERROR {report['error']}"  # the full text is in the JSON
    rows = sum(report["rows_by_table"].values())
    return (f"{report['requests']} requests, {report['server']['rate_limited']} x 429, {rows} rows in "
            f"{report['wall_seconds']:.1f}s (extract {report['steps'].get('extract', 0):.1f}s), "
            f"peak RSS {report['peak_rss_mb']:.0f} MB, load average {report.get('loadavg_1m')}")


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# -- summaries -------------------------------------------------------------------------------------------
def median(values: Sequence[float]) -> float:
    return float(statistics.median(values)) if values else math.nan


def phase_summary(reports: list[dict[str, Any]], floors: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians over cycles of one phase (full or incremental), in total and per table."""
    ok = [(r, f) for r, f in zip(reports, floors, strict=True) if "error" not in r]
    if not ok:
        return {"error": str(reports[0].get("error")).splitlines()[0] if reports else "no runs"}
    totals: dict[str, list[float]] = {}
    per_table: dict[str, dict[str, list[float]]] = {}
    for report, floor in ok:
        extract = report["steps"].get("extract") or report["wall_seconds"]
        rows = sum(report["rows_by_table"].values())
        floor_total = sum(f["requests"] for f in floor.values())
        values = {
            "requests": report["requests"], "server_requests": report["server"]["requests"],
            "rate_limited": report["server"]["rate_limited"], "wall_seconds": report["wall_seconds"],
            "process_seconds": report["process_seconds"], "extract_seconds": extract,
            "normalize_seconds": report["steps"].get("normalize", 0.0),
            "load_seconds": report["steps"].get("load", 0.0),
            "rows": rows, "rows_per_second": rows / report["wall_seconds"], "peak_rss_mb": report["peak_rss_mb"],
            "cpu_seconds": report["cpu_seconds"], "simulator_cpu_seconds": report["server"]["cpu_seconds"],
            **{f"peak_rss_mb_{step}": mb for step, mb in report.get("peak_rss_mb_by_step", {}).items() if mb},
            "sustained_rate": report["requests"] / extract, "max_in_1s_window": report["server"]["max_in_window_1s"],
            "floor": floor_total, "requests_over_floor": report["requests"] / floor_total if floor_total else math.nan,
        }
        for key, value in values.items():
            totals.setdefault(key, []).append(value)
        tables = set(report["requests_by_table"]) | set(floor) | set(report["rows_by_table"])
        for table in tables:
            entry = per_table.setdefault(table, {})
            entry.setdefault("requests", []).append(report["requests_by_table"].get(table, 0))
            entry.setdefault("rows", []).append(report["rows_by_table"].get(table, 0))
            if table in floor:
                entry.setdefault("floor", []).append(floor[table]["requests"])
                if floor[table]["rows"] is not None:
                    entry.setdefault("api_rows", []).append(floor[table]["rows"])
            if table in report["table_done_seconds"]:
                entry.setdefault("done_seconds", []).append(report["table_done_seconds"][table])
    summary: dict[str, Any] = {key: round(median(v), 3) for key, v in totals.items()}
    summary["runs"] = len(ok)
    summary["tables"] = {
        table: {key: round(median(v), 3) for key, v in entry.items()} for table, entry in sorted(per_table.items())
    }
    rules = {t: f["rule"] for t, f in ok[0][1].items()}
    for table, entry in summary["tables"].items():
        entry["rule"] = rules.get(table, "")
        done = entry.get("done_seconds")
        entry["rows_per_second"] = round(entry["rows"] / done, 1) if done else None
    return summary


def summarize(cycles: list[dict[str, Any]], messages: list[dict[str, Any]]) -> dict[str, Any]:
    full = phase_summary([c["full"] for c in cycles], [c["floors"] for c in cycles])
    incremental = phase_summary([c["incremental"] for c in cycles], [c["incremental_floors"] for c in cycles])
    out: dict[str, Any] = {"full": full, "incremental": incremental}
    if "requests" in full and "requests" in incremental:
        out["incremental_pct_of_full"] = round(100 * incremental["requests"] / full["requests"], 1)
    good = [m for m in messages if "error" not in m]
    if good:
        rates = [m["rows_by_table"].get("messages", 0) / m["wall_seconds"] for m in good]
        out["messages"] = {
            "runs": len(good), "rows": good[0]["rows_by_table"].get("messages", 0),
            "rows_per_second": round(median(rates), 1), "rows_per_second_all": [round(r, 1) for r in rates],
            "wall_seconds": median([m["wall_seconds"] for m in good]),
            "process_seconds": median([m["process_seconds"] for m in good]),
            "cpu_seconds": median([m["cpu_seconds"] for m in good]),
            "simulator_cpu_seconds": median([m["server"]["cpu_seconds"] for m in good]),
            "loadavg_1m": [m.get("loadavg_1m") for m in good],
            "steps": {k: median([m["steps"].get(k, 0.0) for m in good]) for k in ("extract", "normalize", "load")},
            "requests": median([m["requests"] for m in good]),
            "requests_by_table": good[0]["requests_by_table"],
            "peak_rss_mb": median([m["peak_rss_mb"] for m in good]),
        }
    return out


# -- targets ---------------------------------------------------------------------------------------------
@dataclass
class Target:
    name: str
    value: str
    passed: bool | None  # None: not measured in this run


def targets(scale: str, modes: dict[str, dict[str, Any]], small: dict[str, Any] | None) -> list[Target]:
    out: list[Target] = []
    for limit, mode in sorted(modes.items()):
        summary = mode.get("summary") or {}
        full, incremental = summary.get("full", {}), summary.get("incremental", {})
        if "requests" in full:
            out.append(Target(f"full requests <= {FLOOR_FACTOR} x floor (limit {limit})",
                              f"{full['requests']:.0f} / {full['floor']:.0f} = {full['requests_over_floor']:.2f}",
                              full["requests_over_floor"] <= FLOOR_FACTOR))
        if "requests" in incremental:
            out.append(Target(f"incremental requests <= {FLOOR_FACTOR} x incremental floor (limit {limit})",
                              f"{incremental['requests']:.0f} / {incremental['floor']:.0f} = "
                              f"{incremental['requests_over_floor']:.2f}",
                              incremental["requests_over_floor"] <= FLOOR_FACTOR))
        if limit == "on" and "requests" in full:
            out.append(Target(f"limit on: sustained >= {MIN_SUSTAINED_RATE}/s while extracting (full)",
                              f"{full['sustained_rate']:.2f}/s (busiest 1-s window {full['max_in_1s_window']:.0f})",
                              full["sustained_rate"] >= MIN_SUSTAINED_RATE))
            share = full["rate_limited"] / max(1.0, full["server_requests"])
            out.append(Target(f"limit on: 429s <= {MAX_429_SHARE:.0%} of requests (full)",
                              f"{full['rate_limited']:.0f} / {full['server_requests']:.0f} = {share:.2%}",
                              share <= MAX_429_SHARE))
        if limit == "on" and mode.get("skipped"):
            out.append(Target("limit on: sustained rate and 429s", f"skipped ({mode['skipped']})", None))
        messages = summary.get("messages")
        if limit == "off" and messages:
            out.append(Target(f"limit off: messages >= {MIN_MESSAGES_ROWS_PER_S:,} rows/s end to end",
                              f"{messages['rows_per_second']:,.0f} rows/s ({messages['rows']} rows in "
                              f"{messages['wall_seconds']:.2f}s)",
                              messages["rows_per_second"] >= MIN_MESSAGES_ROWS_PER_S))
    rss = peak_rss(modes)
    if scale == "large" and rss is not None:
        small_rss = peak_rss(small["modes"]) if small else None
        if small_rss:
            out.append(Target(f"peak RSS large <= {MAX_RSS_GROWTH} x small and <= {MAX_RSS_MB} MB",
                              f"{rss:.0f} MB vs small {small_rss:.0f} MB (x{rss / small_rss:.2f})",
                              rss <= MAX_RSS_GROWTH * small_rss and rss <= MAX_RSS_MB))
        else:
            out.append(Target(f"peak RSS large <= {MAX_RSS_MB} MB (no small result to compare)", f"{rss:.0f} MB",
                              rss <= MAX_RSS_MB))
    return out


def peak_rss(modes: dict[str, dict[str, Any]]) -> float | None:
    """Peak RSS of the all-tables syncs (full and incremental), preferring the unlimited mode."""
    for limit in ("off", "on"):
        summary = (modes.get(limit) or {}).get("summary") or {}
        values = [summary[p]["peak_rss_mb"] for p in ("full", "incremental") if "peak_rss_mb" in summary.get(p, {})]
        if values:
            return max(values)
    return None


# -- report ----------------------------------------------------------------------------------------------
def fmt(value: Any, digits: int = 0) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, (int, float)):
        return f"{value:,.{digits}f}"
    return str(value)


def ratio(a: Any, b: Any) -> str:
    return f"{a / b:.2f}" if isinstance(a, (int, float)) and isinstance(b, (int, float)) and b else "–"


def step_peaks(summary: dict[str, Any]) -> str:
    return "/".join(fmt(summary.get(f"peak_rss_mb_{step}")) for step in ("extract", "normalize", "load"))


def over(entry: dict[str, Any]) -> str:
    """A warning mark when a table's requests exceed the target factor of its floor."""
    floor = entry.get("floor")
    return " ⚠" if floor is not None and entry.get("requests", 0) > FLOOR_FACTOR * floor else ""


def markdown(result: dict[str, Any]) -> str:
    m = result["machine"]
    lines = [
        f"# Benchmark — {result['scale']} — {result['date']}",
        "",
        f"`{result['command']}`",
        "",
        f"Machine: {m['nproc']} CPUs ({m['cpu']}), {m['memory_gb']} GB; Python {m['python']}, dlt {m['dlt']}, "
        f"DuckDB {m['duckdb']}. Medians of {result['repeat']} run(s); simulator and pipeline in separate processes.",
        "",
        f"Source: commit {result['source']['commit']} (code digest {result['source'].get('digest', '?')}; "
        "each run's digest is in the JSON)"
        + (f" + working-tree changes in {', '.join(result['source']['changed_source_files'])}"
           if result["source"]["changed_source_files"] else ""),
        "",
        "## Totals",
        "",
        "| limit | sync | requests | floor | req/floor | 429s | wall s | extract s | rows | rows/s | "
        "req/s extracting | busiest 1 s | peak RSS MB (extract/normalize/load) |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for limit, mode in sorted(result["modes"].items()):
        if mode.get("skipped"):
            lines.append(f"| {limit} | skipped: {mode['skipped']} |" + " |" * 11)
            continue
        summary = mode["summary"]
        for phase in ("full", "incremental"):
            s = summary.get(phase, {})
            if "requests" not in s:
                lines.append(f"| {limit} | {phase}: error {s.get('error')} |" + " |" * 11)
                continue
            lines.append(
                f"| {limit} | {phase} | {fmt(s['requests'])} | {fmt(s['floor'])} | {s['requests_over_floor']:.2f} | "
                f"{fmt(s['rate_limited'])} | {s['wall_seconds']:.1f} | {s['extract_seconds']:.1f} | {fmt(s['rows'])} | "
                f"{fmt(s['rows_per_second'])} | {s['sustained_rate']:.2f} | {fmt(s['max_in_1s_window'])} | "
                f"{s['peak_rss_mb']:.0f} ({step_peaks(s)}) |"
            )
        if "incremental_pct_of_full" in summary:
            lines.append(f"| {limit} | incremental / full | {summary['incremental_pct_of_full']}% |" + " |" * 10)
    for limit, mode in sorted(result["modes"].items()):
        messages = (mode.get("summary") or {}).get("messages")
        if messages:
            steps = messages["steps"]
            by_table = ", ".join(f"{k} {v}" for k, v in messages["requests_by_table"].items())
            lines += [
                "",
                f"**`--tables messages` alone (limit {limit})**: {fmt(messages['rows'])} rows in "
                f"{messages['wall_seconds']:.2f} s = **{fmt(messages['rows_per_second'])} rows/s** "
                f"(runs: {', '.join(fmt(r) for r in messages['rows_per_second_all'])}); extract "
                f"{steps['extract']:.2f} s, normalize {steps['normalize']:.2f} s, load {steps['load']:.2f} s; "
                f"{fmt(messages['requests'])} requests ({by_table}); "
                f"process {messages['process_seconds']:.2f} s; peak RSS {messages['peak_rss_mb']:.0f} MB."
                + (f" Pipeline CPU {messages['cpu_seconds']:.2f} s (incl. interpreter start and imports) = "
                   f"{fmt(messages['rows'] / messages['cpu_seconds'])} rows per CPU-second; simulator CPU "
                   f"{messages['simulator_cpu_seconds']:.2f} s; 1-min load average before/after each run: "
                   f"{messages['loadavg_1m']}." if "cpu_seconds" in messages else ""),
            ]
    lines += ["", "## Per table", ""]
    modes = [(limit, mode) for limit, mode in sorted(result["modes"].items()) if not mode.get("skipped")]
    header = "| table | floor rule | API rows |"
    align = "|---|---|---:|"
    for limit, _ in modes:
        header += f" full req ({limit}) | floor | incr req ({limit}) | incr floor | rows full | done s |"
        align += "---:|---:|---:|---:|---:|---:|"
    lines += [header, align]
    tables: set[str] = set()
    for _, mode in modes:
        for phase in ("full", "incremental"):
            tables |= set(mode["summary"].get(phase, {}).get("tables", {}))
    for table in sorted(tables):
        first = next((m["summary"]["full"].get("tables", {}).get(table) for _, m in modes), None) or {}
        row = f"| {table} | {first.get('rule', '')} | {fmt(first.get('api_rows'))} |"
        for _, mode in modes:
            full = mode["summary"].get("full", {}).get("tables", {}).get(table, {})
            incremental = mode["summary"].get("incremental", {}).get("tables", {}).get(table, {})
            row += (f" {fmt(full.get('requests'))}{over(full)} | {fmt(full.get('floor'))} | "
                    f"{fmt(incremental.get('requests'))}{over(incremental)} | {fmt(incremental.get('floor'))} | "
                    f"{fmt(full.get('rows'))} | {fmt(full.get('done_seconds'), 1)} |")
        lines.append(row)
    lines += ["", "⚠ = more than 1.2 × the floor. 'done s' = seconds from the start of the run until the table's "
              "last row was extracted.", "", "## Targets", ""]
    for target in result["targets"]:
        verdict = "PASS" if target["passed"] else "n/a" if target["passed"] is None else "FAIL"
        lines.append(f"- **{verdict}** {target['name']}: {target['value']}")
    return "\n".join(lines) + "\n"


def latest(scale: str) -> dict[str, Any] | None:
    files = sorted(RESULTS.glob(f"*-{scale}.json"))
    return orjson.loads(files[-1].read_bytes()) if files else None


def rewrite_reports(scales: list[str]) -> int:
    for scale in scales:
        result = latest(scale)
        if result is None:
            say(f"no results for {scale}")
            return 1
        small = latest("small") if scale == "large" else None
        result["targets"] = [t.__dict__ for t in targets(scale, result["modes"], small)]
        text = markdown(result)
        print(text)
        (RESULTS / f"{result['date']}-{scale}.json").write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2))
        (RESULTS / f"{result['date']}-{scale}.md").write_text(text)
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.splitlines()[0])
    ap.add_argument("--scale", default="small", help="tiny, small, large, or several joined by commas")
    ap.add_argument("--limit", choices=["on", "off", "both"], default="both")
    ap.add_argument("--tables", default="all")
    ap.add_argument("--repeat", type=int, default=1, help="full + incremental cycles per mode (medians)")
    ap.add_argument("--messages-runs", type=int, default=3, help="`--tables messages` runs with the limit off")
    ap.add_argument("--render-deliveries", choices=["auto", "all", "none"], default="auto",
                    help="the simulator serializes every delivery ahead of the requests (auto: up to 1M)")
    ap.add_argument("--max-limited-minutes", type=float, default=15.0,
                    help="skip the limit-on mode when its estimated duration is longer")
    ap.add_argument("--profile", action="store_true", help="cProfile the first messages-only run")
    ap.add_argument("--no-write", action="store_true", help="print only; do not write benchmarks/results")
    ap.add_argument("--report-only", action="store_true",
                    help="re-evaluate targets and rewrite the .md of the latest results of --scale (no runs)")
    args = ap.parse_args(argv)
    if args.report_only:
        return rewrite_reports([s.strip() for s in args.scale.split(",") if s.strip()])
    limits = ["on", "off"] if args.limit == "both" else [args.limit]
    command = "python -m benchmarks.run " + " ".join(argv if argv is not None else sys.argv[1:])
    RESULTS.mkdir(parents=True, exist_ok=True)
    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="cio-bench-") as tmp:
        for scale in [s.strip() for s in args.scale.split(",") if s.strip()]:
            date = dt.date.today().isoformat()
            previous = latest(scale) if not args.no_write else None
            modes: dict[str, dict[str, Any]] = {}
            if previous and previous.get("date") == date and previous.get("tables") == args.tables:
                modes.update(previous.get("modes", {}))  # keep a mode measured earlier today
            for limit in limits:
                modes[limit] = run_mode(args, scale, limit, Path(tmp))
            small = results.get("small") or (latest("small") if scale == "large" else None)
            result = {"date": date, "scale": scale, "tables": args.tables, "command": command,
                      "repeat": args.repeat, "machine": machine(), "source": source_state(), "modes": modes}
            result["targets"] = [t.__dict__ for t in targets(scale, modes, small)]
            results[scale] = result
            text = markdown(result)
            print(text)
            if not args.no_write:
                (RESULTS / f"{date}-{scale}.json").write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2))
                (RESULTS / f"{date}-{scale}.md").write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
