"""One pipeline run in its own process, so its time and peak memory are the pipeline's alone.

``python -m benchmarks.worker --base-url URL --api-key K --rate-limit R --tables T --workdir DIR --result F``
loads the workspace into ``DIR/warehouse.duckdb`` (dlt state in ``DIR/pipelines``, so a second call with
the same directory is an incremental run) through :func:`customerio_source.load`, then writes a JSON report
to ``F``: wall time of the run, dlt's step times, requests per table (the client's counters), rows per table
(normalized this run), when each table's last page went through extraction, and the process's peak RSS.
With ``--profile FILE`` the run is profiled with cProfile.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import resource
import sys
import threading
import time
import traceback
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

os.environ.setdefault("RUNTIME__DLTHUB_TELEMETRY", "false")
os.environ.setdefault("RUNTIME__LOG_LEVEL", "ERROR")


class TableClock:
    """Counts items per table as dlt extracts them (rows, or whole pages for Arrow resources) and remembers
    when each table's last item went by."""

    def __init__(self, started: float) -> None:
        self.started = started
        self.rows: Counter[str] = Counter()
        self.last: dict[str, float] = {}
        self._lock = threading.Lock()

    def counter(self, table: str) -> Callable[[Any], Any]:
        def count(item: Any) -> Any:
            with self._lock:
                self.rows[table] += 1
                self.last[table] = time.perf_counter()
            return item

        return count

    def spans(self) -> dict[str, float]:
        return {table: round(t - self.started, 3) for table, t in self.last.items()}


class RssSampler:
    """Samples this process's resident set size every ``interval`` seconds (to find the phase that peaks)."""

    def __init__(self, interval: float = 0.1) -> None:
        self.interval = interval
        self.samples: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-rss", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.samples.append((time.time(), current_rss_mb()))

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def peak_between(self, start: float, end: float) -> float | None:
        values = [rss for t, rss in self.samples if start <= t <= end]
        return round(max(values), 1) if values else None


def current_rss_mb() -> float:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def peak_rss_mb() -> float:
    """Peak resident set size of this process (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run(args: argparse.Namespace) -> dict[str, Any]:
    import dlt

    from customerio_source import customerio_source, load
    from customerio_source.runner import client_of

    load_before = os.getloadavg()
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    source = customerio_source(
        api_key=args.api_key, base_url=args.base_url, tables=args.tables, rate_limit=args.rate_limit
    )
    clock = TableClock(started)
    for name, res in source.selected_resources.items():
        res.add_map(clock.counter(name))
    pipeline = dlt.pipeline(
        pipeline_name="customerio_bench",
        pipelines_dir=str(workdir / "pipelines"),
        destination=dlt.destinations.duckdb(str(workdir / "warehouse.duckdb")),
        dataset_name="customerio",
    )
    profiler = cProfile.Profile() if args.profile else None
    with RssSampler() as rss:
        if profiler:
            profiler.enable()
        load(pipeline, source)
        if profiler:
            profiler.disable()
            profiler.dump_stats(args.profile)
    wall = time.perf_counter() - started
    client = client_of(source)
    trace = pipeline.last_trace
    steps: dict[str, float] = {}
    step_rss: dict[str, float | None] = {}
    for step in trace.steps if trace else []:
        if step.started_at and step.finished_at:
            steps[step.step] = round((step.finished_at - step.started_at).total_seconds(), 3)
            step_rss[step.step] = rss.peak_between(step.started_at.timestamp(), step.finished_at.timestamp())
    normalized = dict(trace.last_normalize_info.row_counts) if trace and trace.last_normalize_info else {}
    return {
        "wall_seconds": round(wall, 3),
        "steps": steps,
        "requests_by_table": dict(client.stats.by_table),
        "requests": client.stats.total,
        "rate_limited": client.stats.rate_limited,
        "retries": dict(client.stats.retries),
        "rows_by_table": {name: normalized.get(name, 0) for name in source.selected_resources},
        "rows_all_tables": normalized,
        "items_extracted": dict(clock.rows),
        "table_done_seconds": clock.spans(),
        "peak_rss_mb_self": round(peak_rss_mb(), 1),
        "peak_rss_mb_by_step": step_rss,
        "loadavg_1m": [round(load_before[0], 2), round(os.getloadavg()[0], 2)],
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.worker")
    ap.add_argument("--base-url", required=True)
    ap.add_argument("--api-key", required=True)
    ap.add_argument("--rate-limit", type=float, default=0.0)
    ap.add_argument("--tables", default="all")
    ap.add_argument("--workdir", required=True)
    ap.add_argument("--result", required=True)
    ap.add_argument("--profile", default=None)
    args = ap.parse_args(argv)
    try:
        report = run(args)
    except Exception as exc:  # noqa: BLE001 - the benchmark reports the failure and goes on
        report = {"error": f"{type(exc).__name__}: {exc}"[:4000], "traceback": traceback.format_exc()[-8000:]}
        Path(args.result).write_bytes(orjson.dumps(report))
        raise
    Path(args.result).write_bytes(orjson.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
