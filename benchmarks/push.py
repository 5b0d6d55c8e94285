"""Push benchmark: ``customerio-pipeline push`` from DuckDB into the simulated Track API.

    python -m benchmarks.push [--people 100000] [--events 1000000] [--small-events 100000]
                              [--rate-rows 2000] [--repeat 1] [--out benchmarks/results/<date>-push.json]

1. Limit off (``--rate-limit 0``, simulator without a Track limit): people (identify), then events
   (``event``, key ``event_id``) at ``--small-events`` and ``--events`` rows. Per push: wall time (the CLI
   process, start to exit: extract, normalize, send), rows/s, requests against the byte floor
   (Σ item bytes / 500,000, from the CLI's own count, and the request bodies the simulator received), the
   pusher's CPU seconds and peak RSS (its own ``VmHWM``), and the simulator's CPU seconds over the push.
   ``--repeat N`` pushes each table N times (medians in ``limit_off_medians``; a repeated event push is
   ignored by the simulator as duplicates, after the same validation).
2. Default limit on (100 requests/s) against a simulator that answers 429 above 100 requests in any rolling
   second: ``--rate-rows`` anonymous events (one v1 request each), the rate the simulator saw over the
   sending window and the share of 429s.

The simulator runs in this process (its threads); the pusher is a child process, so its RSS is its own.
Events are validated and de-duplicated but not kept as activities (``record_events=False``) so the
simulator's memory stays small.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from datetime import date
from typing import Any

import duckdb

from customerio_source.send import limits
from customerio_source.simulator import SimulatorServer, Workspace
from customerio_source.simulator.send_api import configure

SITE_ID, TRACK_KEY = "bench-site", "bench-track-key"
PUSHED = re.compile(r"pushed (\d+) rows .* in ([\d.]+)s: (\d+) requests \(([\d,]+) bytes of items\)")


def make_warehouse(path: str, people: int, events: int, small: int, rate_rows: int, now: int) -> None:
    with duckdb.connect(path) as con:
        con.execute(f"""CREATE TABLE people AS SELECT 'user_' || i AS id, 'user' || i || '@example.com' AS email,
            (['free', 'starter', 'pro', 'team'])[1 + i % 4] AS plan, (['US', 'DE', 'BR', 'JP'])[1 + i % 4] AS country,
            i % 100 AS score, TIMESTAMPTZ '2023-01-01 00:00:00+00' + (i % 700) * INTERVAL 1 DAY AS created_at
            FROM range({people}) t(i)""")
        event_sql = """SELECT i AS event_id, 'user_' || (i * 7919 % {people}) AS id,
            (['purchase', 'login', 'viewed_product', 'added_to_cart'])[1 + i % 4] AS name,
            to_timestamp({now} - 86400 + i % 86400) AS timestamp, round((i % 10000) / 100.0, 2) AS amount,
            'sku-' || (i % 5000) AS sku FROM range({n}) t(i)"""
        con.execute(f"CREATE TABLE events AS {event_sql.format(people=people, now=now, n=events)}")
        con.execute(f"CREATE TABLE events_small AS SELECT * FROM events WHERE event_id < {small}")
        con.execute(f"""CREATE TABLE visits AS SELECT i AS visit_id, 'anon-' || i AS anonymous_id, 'visit' AS name
            FROM range({rate_rows}) t(i)""")


def push(
    folder: str,
    base_url: str,
    table: str,
    operation: str,
    key: str | None,
    rate: float,
    workers: int = 4,
    name_suffix: str = "",
) -> dict[str, Any]:
    """One CLI push in a child process: its output figures, wall time and peak RSS."""
    args = [
        sys.executable,
        "-m",
        "benchmarks.push",
        "--child",
        "push",
        "--from",
        f"duckdb:{folder}/w.duckdb",
        "--table",
        table,
        "--as",
        operation,
        "--base-url",
        base_url,
        "--rate-limit",
        str(rate),
        "--workers",
        str(workers),
        "--pipeline-name",
        f"bench_{table}_{int(rate)}{name_suffix}",
    ]
    if key:
        args += ["--key", key]
    env = {
        **os.environ,
        "PYTHONPATH": os.getcwd(),
        "DLT_DATA_DIR": os.path.join(folder, "dlt"),
        "CUSTOMERIO_SITE_ID": SITE_ID,
        "CUSTOMERIO_TRACK_API_KEY": TRACK_KEY,
    }
    started = time.monotonic()
    child = subprocess.Popen(args, cwd=folder, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, err = child.communicate()
    elapsed = time.monotonic() - started
    found = re.findall(r"peak_rss_kb=(\d+)", err)
    rss_kb = int(found[-1]) if found else 0
    cpu = re.findall(r"cpu_seconds=([\d.]+)", err)
    cpu_seconds = float(cpu[-1]) if cpu else 0.0
    if child.returncode not in (0, 4):
        raise SystemExit(f"push of {table} failed ({child.returncode}): {err.strip()[-500:]}")
    match = PUSHED.search(out)
    rows, _, requests, item_bytes = (
        (int(match.group(1)), float(match.group(2)), int(match.group(3)), int(match.group(4).replace(",", "")))
        if match
        else (0, 0, 0, 0)
    )
    return {
        "table": table,
        "operation": operation,
        "rows": rows,
        "wall_seconds": round(elapsed, 2),
        "rows_per_second": round(rows / elapsed),
        "requests": requests,
        "item_bytes": item_bytes,
        "byte_floor": round(item_bytes / limits.REQUEST_BYTES, 2),
        "requests_over_floor": round(requests / max(1e-9, item_bytes / limits.REQUEST_BYTES), 4),
        "peak_rss_mb": round(rss_kb / 1024, 1),
        "exit_code": child.returncode,
        "cpu_seconds": cpu_seconds,
        "rows_per_cpu_second": round(rows / cpu_seconds) if cpu_seconds else None,
    }


def child_main(argv: list[str]) -> int:
    """Run the CLI in this process, then print its peak RSS (KB) as the last line of stderr."""
    import resource

    from customerio_source.main import main as cli_main

    code = cli_main(argv)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print(f"cpu_seconds={usage.ru_utime + usage.ru_stime:.2f}", file=sys.stderr)
    # VmHWM, not ru_maxrss: Linux carries the forking parent's RSS into a child's ru_maxrss across exec
    # (the benchmark process holds the simulator, whose de-duplication memory grows with every push)
    print(f"peak_rss_kb={peak_rss_kb()}", file=sys.stderr)
    return code


def peak_rss_kb() -> int:
    """This process's own peak resident set (``VmHWM``), in KB."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--child"]:
        return child_main(argv[1:])
    parser = argparse.ArgumentParser(prog="python -m benchmarks.push")
    parser.add_argument("--people", type=int, default=100_000)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--small-events", type=int, default=100_000)
    parser.add_argument("--rate-rows", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=1, help="limit-off pushes of each table (medians reported)")
    parser.add_argument("--out", default=f"benchmarks/results/{date.today().isoformat()}-push.json")
    args = parser.parse_args(argv)
    folder = tempfile.mkdtemp(prefix="cio_push_bench_")
    workspace = Workspace(scale="tiny", seed=3)
    results: dict[str, Any] = {"people": args.people, "events": args.events, "machine_cpus": os.cpu_count()}
    with SimulatorServer(workspace, api_key="bench-app") as server:
        state = configure(server, site_id=SITE_ID, track_api_key=TRACK_KEY, record_events=False)
        started = time.monotonic()
        make_warehouse(
            os.path.join(folder, "w.duckdb"), args.people, args.events, args.small_events, args.rate_rows, workspace.now
        )
        results["warehouse_build_seconds"] = round(time.monotonic() - started, 1)
        runs = []
        tables = (("people", "identify", None), ("events_small", "event", "event_id"), ("events", "event", "event_id"))
        for repeat, (table, operation, key) in [(r, spec) for r in range(args.repeat) for spec in tables]:
            before = (state.stats.requests, sum(state.stats.request_bytes))
            cpu_before = process_cpu()
            run = push(folder, server.base_url, table, operation, key, 0, name_suffix=f"_{repeat}")
            run["repeat"] = repeat
            run["simulator_cpu_seconds"] = round(process_cpu() - cpu_before, 2)
            run["server_requests"] = state.stats.requests - before[0]
            run["server_body_bytes"] = sum(state.stats.request_bytes) - before[1]
            run["server_requests_over_body_floor"] = round(
                run["server_requests"] / max(1e-9, run["server_body_bytes"] / limits.REQUEST_BYTES), 4
            )
            runs.append(run)
            print(json.dumps(run), flush=True)
        results["limit_off"] = runs
        results["limit_off_medians"] = medians(runs)
        # the default limit, against a simulator enforcing 100 requests in any rolling second
        state = configure(
            server, site_id=SITE_ID, track_api_key=TRACK_KEY, record_events=False, track_rate_limit=limits.DEFAULT_RATE
        )
        run = push(folder, server.base_url, "visits", "anonymous_event", "visit_id", limits.DEFAULT_RATE, workers=8)
        stamps = state.stats.timestamps
        window = stamps[-1] - stamps[0] if len(stamps) > 1 else 0.0
        run.update(
            server_requests=state.stats.requests,
            rate_limited=state.stats.rate_limited,
            rate_limited_share=round(state.stats.rate_limited / max(1, state.stats.requests), 4),
            sending_window_seconds=round(window, 2),
            observed_rate=round((len(stamps) - 1) / window, 1) if window else None,
            busiest_second=max_in_window(stamps),
        )
        results["limit_on"] = run
        print(json.dumps(run), flush=True)
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as handle:
        json.dump(results, handle, indent=1)
    print(f"wrote {args.out}")
    return 0


def process_cpu() -> float:
    """CPU seconds of this process (the simulator's threads, user + system)."""
    import resource

    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def medians(runs: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Per table, the median of each figure over the repeats."""
    import statistics

    out: dict[str, dict[str, float]] = {}
    for table in dict.fromkeys(r["table"] for r in runs):
        mine = [r for r in runs if r["table"] == table]
        out[table] = {
            k: statistics.median(r[k] for r in mine if r[k] is not None)
            for k in ("rows", "wall_seconds", "rows_per_second", "cpu_seconds", "rows_per_cpu_second",
                      "simulator_cpu_seconds", "peak_rss_mb", "requests", "requests_over_floor")
            if any(r[k] is not None for r in mine)
        }
    return out


def max_in_window(stamps: list[float], window: float = 1.0) -> int:
    best = lo = 0
    for hi, t in enumerate(stamps):
        while t - stamps[lo] >= window:
            lo += 1
        best = max(best, hi - lo + 1)
    return best


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
