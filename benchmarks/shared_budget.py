"""Benchmark (issue 18, point 4): a workspace that grants the connector less than it is configured for.

    python -m benchmarks.shared_budget [--scale small] [--cases 5:10,2:10,1:10,10:50,10:10] [--tables all]
                                       [--no-write]

Customer.io's limit is per workspace, shared by every app using the key, so the budget this connector gets
may be below its ``rate_limit``. Each case ``GRANT:RATE[:TABLES]`` starts the simulated workspace in its own
process (``benchmarks.simserver``) answering 429 (``Retry-After: 1``) above GRANT requests in any rolling
second, and loads TABLES (default ``--tables``) with ``rate_limit=RATE`` into a fresh DuckDB file in another
process, with its own ``DLT_DATA_DIR`` and telemetry off. Per case it reports: completed or not, requests and
429s (the server's counts), the 429 share overall and after adaptation (the second half of the requests, by
send time, from the client's record of every answer), wall time, requests accepted per second (over the
server's arrival span), and the rate the limiter settled at (its time-weighted mean over the second half, its
last and lowest rate, and how often it lowered the rate). It prints a markdown report and writes
``benchmarks/results/<date>-shared-budget.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import orjson

from benchmarks.run import API_KEY, RESULTS, ROOT, machine, simulator, source_state

DEFAULT_CASES = "5:10,2:10,1:10,10:50,10:10"


@dataclass(frozen=True)
class Case:
    grant: float
    rate_limit: float
    tables: str

    @property
    def name(self) -> str:
        return f"grant {self.grant:g}/s, rate_limit {self.rate_limit:g}"


def parse_cases(text: str, tables: str) -> list[Case]:
    """``GRANT:RATE[:TABLES]`` items, comma-separated (TABLES itself separated by ``+``)."""
    cases = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        parts = item.split(":")
        own = parts[2].replace("+", ",") if len(parts) > 2 else tables
        cases.append(Case(float(parts[0]), float(parts[1]), own))
    return cases


# -- the pipeline process ---------------------------------------------------------------------------------
def record_answers(limiter: Any) -> list[tuple[float, int]]:
    """Wrap the limiter's callbacks so every answer is kept as (send time, 200 or 429)."""
    answers: list[tuple[float, int]] = []
    lock = threading.Lock()
    accepted, rate_limited = limiter.accepted, limiter.rate_limited

    def on_accepted(sent_at: float) -> None:
        with lock:
            answers.append((sent_at, 200))
        accepted(sent_at)

    def on_rate_limited(sent_at: float, retry_after: float | None = None) -> None:
        with lock:
            answers.append((sent_at, 429))
        rate_limited(sent_at, retry_after)

    limiter.accepted, limiter.rate_limited = on_accepted, on_rate_limited
    return answers


def root_cause(exc: BaseException) -> BaseException:
    while exc.__cause__ is not None or exc.__context__ is not None:
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
    return exc


def worker(args: argparse.Namespace) -> dict[str, Any]:
    """Load the tables once and report what the client and its limiter saw."""
    import dlt

    from customerio_source import customerio_source, load
    from customerio_source.client import RequestStats

    workdir = Path(args.workdir)
    stats = RequestStats()
    source = customerio_source(api_key=args.api_key, base_url=args.base_url, tables=args.tables,
                               rate_limit=args.rate_limit, request_stats=stats)
    limiter = stats.limiter
    answers = record_answers(limiter)
    pipeline = dlt.pipeline(pipeline_name="customerio_shared_budget", pipelines_dir=str(workdir / "pipelines"),
                            destination=dlt.destinations.duckdb(str(workdir / "warehouse.duckdb")),
                            dataset_name="customerio")
    started = limiter.now()
    error = None
    try:
        load(pipeline, source)
    except Exception as exc:  # the report says how it failed
        error = f"{type(root_cause(exc)).__name__}: {root_cause(exc)}"
    ended = limiter.now()
    return {
        "completed": error is None, "error": error, "wall_seconds": round(ended - started, 3),
        "requests": stats.total, "rate_limited": stats.rate_limited, "retries": dict(stats.retries),
        "configured_rate": stats.configured_rate, "adapted_rate": stats.adapted_rate, "min_rate": stats.min_rate,
        "rate_decreases": stats.rate_decreases,
        "answers": [(round(t - started, 4), status) for t, status in sorted(answers)],
        "rate_history": [(round(max(t - started, 0.0), 4), r) for t, r in limiter.history()],
        "ended": round(ended - started, 4),
    }


# -- one case ---------------------------------------------------------------------------------------------
def run_case(case: Case, scale: str, workroot: Path) -> dict[str, Any]:
    workdir = workroot / f"grant{case.grant:g}-rate{case.rate_limit:g}"
    workdir.mkdir(parents=True)
    result = workdir / "result.json"
    env = {**os.environ, "DLT_DATA_DIR": str(workdir / "dlt"), "RUNTIME__DLTHUB_TELEMETRY": "false",
           "RUNTIME__LOG_LEVEL": "ERROR"}
    with simulator(scale, case.grant, case.tables) as sim:
        sim.call("POST", "/_admin/reset")
        command = [sys.executable, "-m", "benchmarks.shared_budget", "--worker", "--base-url", sim.api,
                   "--api-key", API_KEY, "--rate-limit", str(case.rate_limit), "--tables", case.tables,
                   "--workdir", str(workdir), "--result", str(result)]
        load_before = os.getloadavg()[0]
        started = time.perf_counter()
        process = subprocess.run(command, cwd=ROOT, env=env, check=False)
        elapsed = time.perf_counter() - started
        server = sim.call("GET", "/_admin/stats")
    report = orjson.loads(result.read_bytes()) if result.exists() else {"completed": False, "error": "no report"}
    if process.returncode != 0:
        report["completed"] = False
        report["error"] = report.get("error") or f"exit code {process.returncode}"
    report["process_seconds"] = round(elapsed, 3)
    report["loadavg_1m"] = [round(load_before, 2), round(os.getloadavg()[0], 2)]
    report["server"] = {k: server[k] for k in ("requests", "rate_limited", "status_counts", "max_in_window_1s",
                                                "arrival_span_seconds")}
    return {"case": asdict(case), "summary": summarize(case, report), "run": report}


def summarize(case: Case, report: dict[str, Any]) -> dict[str, Any]:
    server = report["server"]
    requests, refused = server["requests"], server["rate_limited"]
    answers = report.get("answers", [])
    second_half = answers[len(answers) // 2:]
    half_start = second_half[0][0] if second_half else 0.0
    span = server["arrival_span_seconds"]
    return {
        "grant": case.grant, "rate_limit": case.rate_limit, "tables": case.tables,
        "completed": bool(report.get("completed")), "error": report.get("error"),
        "requests": requests, "rate_limited": refused, "share_429": share(refused, requests),
        "requests_after_adaptation": len(second_half),
        "rate_limited_after_adaptation": sum(1 for _, s in second_half if s == 429),
        "share_429_after_adaptation": share(sum(1 for _, s in second_half if s == 429), len(second_half)),
        "wall_seconds": report.get("wall_seconds"),
        "accepted_per_second": round((requests - refused) / span, 2) if span else None,
        "settled_rate": mean_rate(report.get("rate_history", []), half_start, report.get("ended", 0.0)),
        "final_rate": rounded(report.get("adapted_rate") or report.get("configured_rate")),
        "min_rate": rounded(report.get("min_rate")), "rate_decreases": report.get("rate_decreases"),
        "client_requests": report.get("requests"), "client_rate_limited": report.get("rate_limited"),
    }


def share(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def rounded(value: float | None) -> float | None:
    return round(value, 2) if value is not None else None


def mean_rate(history: list[tuple[float, float | None]], start: float, end: float) -> float | None:
    """The limiter's time-weighted mean rate between ``start`` and ``end`` (None: limiting was off)."""
    if end <= start or not history:
        return None
    total = 0.0
    for i, (changed, rate) in enumerate(history):
        until = history[i + 1][0] if i + 1 < len(history) else end
        lo, hi = max(changed, start), min(until, end)
        if hi > lo:
            if rate is None:
                return None
            total += rate * (hi - lo)
    return round(total / (end - start), 2)


# -- report -----------------------------------------------------------------------------------------------
def pct(value: float | None) -> str:
    return "–" if value is None else f"{value:.1%}"


def num(value: Any, digits: int = 2) -> str:
    return "–" if value is None else f"{value:,.{digits}f}" if isinstance(value, float) else f"{value:,}"


def markdown(result: dict[str, Any]) -> str:
    m = result["machine"]
    lines = [
        f"# Shared budget — {result['scale']} — {result['date']}",
        "",
        f"`{result['command']}`",
        "",
        f"Machine: {m['nproc']} CPUs ({m['cpu']}), {m['memory_gb']} GB; Python {m['python']}, dlt {m['dlt']}, "
        f"DuckDB {m['duckdb']}. Simulator and pipeline in separate processes; one full sync per case, each into "
        "a fresh DuckDB file and DLT_DATA_DIR.",
        "",
        f"Source: commit {result['source']['commit']} (code digest {result['source'].get('digest', '?')})"
        + (f" + working-tree changes in {', '.join(result['source']['changed_source_files'])}"
           if result["source"]["changed_source_files"] else ""),
        "",
        f"The simulated workspace at `{result['scale']}` answers 429 (`Retry-After: 1`) above the granted number of "
        "requests in any rolling second (refused requests do not count); the connector runs with the given "
        "`rate_limit` (10 is its default) and its default concurrency.",
        "",
        "| server grants /s | rate_limit | tables | completed | requests | 429s | 429 share | 429 share after "
        "adaptation | wall s | accepted /s | settled rate | last rate | min rate | decreases |",
        "|---:|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for case in result["cases"]:
        s = case["summary"]
        done = "yes" if s["completed"] else f"**no**: {s['error']}"
        lines.append(
            f"| {s['grant']:g} | {s['rate_limit']:g} | {s['tables']} | {done} | {num(s['requests'])} | "
            f"{num(s['rate_limited'])} | {pct(s['share_429'])} | {pct(s['share_429_after_adaptation'])} "
            f"({s['rate_limited_after_adaptation']}/{s['requests_after_adaptation']}) | {num(s['wall_seconds'], 1)} | "
            f"{num(s['accepted_per_second'])} | {num(s['settled_rate'])} | {num(s['final_rate'])} | "
            f"{num(s['min_rate'])} | {s['rate_decreases']} |"
        )
    lines += [
        "",
        "- requests, 429s: the server's counts (the client's agree: see the JSON).",
        "- after adaptation: the second half of the run's requests by send time (the client's record of every "
        "answer).",
        "- accepted /s: requests the server accepted, over the span from its first to its last arrival.",
        "- settled rate: the limiter's time-weighted mean rate over that second half, in `rate_limit` units "
        "(requests are spaced (1 s + 40 ms margin) / rate apart, so the sustained rate is rate / 1.04); last "
        "rate: its rate when the run ended; min rate: the lowest it went; decreases: rounds of 429s that "
        "lowered it.",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.shared_budget", description=__doc__.splitlines()[0])
    ap.add_argument("--scale", default="small")
    ap.add_argument("--cases", default=DEFAULT_CASES, help="GRANT:RATE[:T1+T2], comma-separated")
    ap.add_argument("--tables", default="all")
    ap.add_argument("--no-write", action="store_true")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--base-url")
    ap.add_argument("--api-key")
    ap.add_argument("--rate-limit", type=float)
    ap.add_argument("--workdir")
    ap.add_argument("--result")
    args = ap.parse_args(argv)
    if args.worker:
        try:
            report = worker(args)
        except Exception:
            report = {"completed": False, "error": traceback.format_exc()}
        Path(args.result).write_bytes(orjson.dumps(report))
        return 0 if report.get("completed") else 1
    cases = parse_cases(args.cases, args.tables)
    results = []
    with tempfile.TemporaryDirectory(prefix="cio-shared-budget-") as tmp:
        for case in cases:
            print(f"[{case.name}] {case.tables} at {args.scale} ...", file=sys.stderr, flush=True)
            results.append(run_case(case, args.scale, Path(tmp)))
            s = results[-1]["summary"]
            print(f"  completed {s['completed']}, {s['requests']} requests, {s['rate_limited']} x 429, "
                  f"{s['wall_seconds']} s, settled at {s['settled_rate']}", file=sys.stderr, flush=True)
    date = dt.date.today().isoformat()
    command = " ".join(["python -m benchmarks.shared_budget", *(argv if argv is not None else sys.argv[1:])])
    result = {"date": date, "scale": args.scale, "command": command, "machine": machine(),
              "source": source_state(), "cases": results}
    text = markdown(result)
    print(text)
    if not args.no_write:
        RESULTS.mkdir(parents=True, exist_ok=True)
        (RESULTS / f"{date}-shared-budget.json").write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2))
        (RESULTS / f"{date}-shared-budget.md").write_text(text)
    return 0 if all(r["summary"]["completed"] for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
