"""One pipeline run in its own process, so its time and peak memory are the pipeline's alone.

``python -m benchmarks.worker --base-url URL --api-key K --rate-limit R --tables T --workdir DIR --result F``
loads the workspace into ``DIR/warehouse.duckdb`` (dlt state in ``DIR/pipelines``, so a second call with
the same directory is an incremental run) through :func:`customerio_source.load`, then writes a JSON report
to ``F``: wall time of the run, dlt's step times, requests per table (the client's counters), rows per table
(normalized this run), when each table's last page went through extraction, the load jobs per table (from
dlt's trace), and the process's peak RSS. With ``--profile FILE`` the run is profiled with cProfile.

``--destination postgres`` loads into Postgres instead (dlt's ``DESTINATION__POSTGRES__CREDENTIALS`` from
the environment), into ``--dataset-name`` (default ``customerio``). When the run fails, the report still has
the error line, the steps dlt finished and what it had extracted and loaded by then.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import logging
import os
import resource
import sys
import threading
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson

os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "system")  # as customerio_source.main sets it for the CLI
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


def cpu_seconds() -> float:
    """User + system CPU time of this process so far (all its threads; DuckDB's included)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def destination_of(args: argparse.Namespace, workdir: Path) -> Any:
    import dlt

    if args.destination == "postgres":
        return dlt.destinations.postgres()  # credentials: DESTINATION__POSTGRES__CREDENTIALS
    return dlt.destinations.duckdb(str(workdir / "warehouse.duckdb"))


class TraceLog:
    """Every dlt trace of the run: ``customerio_source.load`` may call ``pipeline.load()`` again after
    ``pipeline.run()`` (a retry), and ``pipeline.last_trace`` keeps only the last call's trace."""

    def __init__(self, pipeline: Any) -> None:
        self.pipeline = pipeline
        self.traces: list[Any] = []
        for name in ("run", "load"):
            setattr(pipeline, name, self._wrap(getattr(pipeline, name)))

    def _wrap(self, method: Callable[..., Any]) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            try:
                return method(*args, **kwargs)
            finally:
                self.note(self.pipeline.last_trace)

        return call

    def note(self, trace: Any) -> None:
        if trace is not None and all(trace is not t for t in self.traces):
            self.traces.append(trace)

    def all(self) -> list[Any]:
        self.note(self.pipeline.last_trace)
        return self.traces

    def steps(self) -> list[Any]:
        """The steps of every trace in order (a ``run`` trace's steps; a nested ``load`` is one of them)."""
        out: list[Any] = []
        for trace in self.all():
            for step in trace.steps:
                if all(step is not s for s in out) and step.step != "run":
                    out.append(step)
        return out


def load_jobs(steps: list[Any]) -> dict[str, Any]:
    """Per table, the load jobs of dlt's load steps (``LoadMetrics.job_metrics`` of the traces): how many
    job runs, their summed run time, the span from the first start to the last finish, the slowest run, the
    states, in which load steps they ran; plus the messages of failed jobs and every job run (``runs``).
    Followup jobs (the merge SQL) count under their table. A load step run again on the same package
    (``pipeline.load()`` after a failed job) reports the jobs the first one finished too: a job run is
    counted once, by (load id, job id, start time), under the load step that ran it first."""
    from dlt.common.pipeline import LoadInfo

    infos = [step.step_info for step in steps if step.step == "load" and isinstance(step.step_info, LoadInfo)]
    job_runs: dict[tuple[str, str, float], dict[str, Any]] = {}
    for attempt, info in enumerate(infos, 1):
        for load_id, metrics in info.metrics.items():
            for step_metrics in metrics:
                for job in step_metrics.get("job_metrics", {}).values():
                    start = job.started_at.timestamp()
                    finish = job.finished_at.timestamp() if job.finished_at else None
                    key = (load_id, job.job_id, start)
                    known = job_runs.get(key)
                    if known is not None:  # the same run, seen again by a later load step: its last state
                        known.update(state=job.state, finished=finish)
                        continue
                    job_runs[key] = {"table": job.table_name, "job_id": job.job_id, "load_step": attempt,
                                     "state": job.state, "started": start, "finished": finish}
    runs = sorted(job_runs.values(), key=lambda r: r["started"])
    load_started = runs[0]["started"] if runs else None
    tables: dict[str, dict[str, Any]] = {}
    for run in runs:
        entry = tables.setdefault(run["table"], {"jobs": 0, "job_seconds": 0.0, "first_start": run["started"],
                                                 "last_finish": None, "slowest_job_seconds": 0.0,
                                                 "states": Counter(), "formats": Counter(), "load_steps": set()})
        entry["jobs"] += 1
        entry["states"][run["state"]] += 1
        entry["formats"][run["job_id"].removesuffix(".gz").rsplit(".", 1)[-1]] += 1
        entry["load_steps"].add(run["load_step"])
        if run["finished"] is not None:
            seconds = run["finished"] - run["started"]
            entry["job_seconds"] += seconds
            entry["slowest_job_seconds"] = max(entry["slowest_job_seconds"], seconds)
            entry["last_finish"] = max(entry["last_finish"] or run["finished"], run["finished"])
    out: dict[str, Any] = {}
    for table, entry in sorted(tables.items()):
        first, last = entry.pop("first_start"), entry.pop("last_finish")
        entry["span_seconds"] = round(last - first, 3) if last is not None else None
        entry["done_after_load_start_seconds"] = (round(last - load_started, 3)
                                                  if last is not None and load_started is not None else None)
        entry["job_seconds"] = round(entry["job_seconds"], 3)
        entry["slowest_job_seconds"] = round(entry["slowest_job_seconds"], 3)
        entry["states"], entry["formats"] = dict(entry["states"]), dict(entry["formats"])
        entry["load_steps"] = sorted(entry["load_steps"])
        out[table] = entry
    for run in runs:
        run["seconds"] = round(run["finished"] - run["started"], 3) if run["finished"] is not None else None
        run["started"] = round(run["started"] - (load_started or 0.0), 3)  # from the first job's start
        run.pop("finished")
    failed = [{"table": job.job_file_info.table_name, "load_step": attempt,
               "message": (job.failed_message or "")[:2000]}
              for attempt, info in enumerate(infos, 1) for package in info.load_packages
              for job in package.jobs.get("failed_jobs", [])]
    report: dict[str, Any] = {"tables": out, "load_steps": len(infos), "runs": runs}
    if failed:
        report["failed_jobs"] = failed
    return report


def state_written(pipeline: Any, traces: TraceLog, since: float) -> dict[str, Any]:
    """The dlt state rows this run wrote to the destination (``_dlt_pipeline_state`` rows whose load id is one
    of this run's: in its traces and, being a Unix timestamp, not before ``since``): how many, their bytes
    (text columns as UTF-8, the three numeric/timestamp columns 8 bytes each), the bytes of the compressed
    ``state`` column alone, and the size of the state as JSON now."""
    from dlt.common.pipeline import LoadInfo

    load_ids = sorted({load_id for trace in traces.all() for step in trace.steps
                       if step.step == "load" and isinstance(step.step_info, LoadInfo)
                       for load_id in step.step_info.loads_ids if float(load_id) >= since})
    out: dict[str, Any] = {"load_ids": load_ids, "rows": 0, "bytes": 0, "state_column_bytes": 0,
                           "state_json_bytes": len(orjson.dumps(pipeline.state, default=str))}
    if not load_ids:
        return out
    with pipeline.sql_client() as client:
        table = client.make_qualified_table_name("_dlt_pipeline_state")
        marks = ", ".join(["%s"] * len(load_ids))
        rows = client.execute_sql(
            f"SELECT version, engine_version, pipeline_name, state, created_at, version_hash, _dlt_load_id, _dlt_id "
            f"FROM {table} WHERE _dlt_load_id IN ({marks})", *load_ids)
    for row in rows or []:
        out["rows"] += 1
        out["bytes"] += 8 * 3 + sum(len(str(v).encode()) for i, v in enumerate(row) if i not in (0, 1, 4) and v)
        out["state_column_bytes"] += len(str(row[3]).encode())
    return out


def report_of(stats: Any, tables: list[str], pipeline: Any, traces: TraceLog, clock: TableClock,
              rss: RssSampler, started: float, load_before: tuple[float, float, float]) -> dict[str, Any]:
    """What the run did, from the client's counters, dlt's traces and the samplers (also after a failure).
    A step dlt ran more than once (a load retried by the connector) is ``load``, then ``load#2``, ..."""
    import customerio_source

    wall = time.perf_counter() - started
    all_steps = traces.steps()
    steps: dict[str, float] = {}
    step_rss: dict[str, float | None] = {}
    failed_steps: dict[str, str] = {}
    normalized: dict[str, int] = {}
    for step in all_steps:
        name, k = step.step, 2
        while name in steps or name in failed_steps:
            name, k = f"{step.step}#{k}", k + 1
        if step.started_at and step.finished_at:
            steps[name] = round((step.finished_at - step.started_at).total_seconds(), 3)
            step_rss[name] = rss.peak_between(step.started_at.timestamp(), step.finished_at.timestamp())
        if step.step_exception:
            failed_steps[name] = str(step.step_exception)[:2000]
        if step.step == "normalize" and getattr(step.step_info, "row_counts", None):
            normalized = dict(step.step_info.row_counts)
    report = {
        "wall_seconds": round(wall, 3),
        "destination": pipeline.destination.destination_name if pipeline.destination else None,
        "dataset_name": pipeline.dataset_name,
        "connector_file": customerio_source.__file__,
        "steps": steps,
        "requests_by_table": dict(stats.by_table),
        "requests": stats.total,
        "rate_limited": stats.rate_limited,
        "retries": dict(stats.retries),
        "rows_by_table": {name: normalized.get(name, 0) for name in tables},
        "rows_all_tables": normalized,
        "items_extracted": dict(clock.rows),
        "table_done_seconds": clock.spans(),
        "load_jobs": load_jobs(all_steps),
        "peak_rss_mb_self": round(peak_rss_mb(), 1),
        "cpu_seconds": round(cpu_seconds(), 2),  # the pipeline process's, load-insensitive unlike wall time
        "peak_rss_mb_by_step": step_rss,
        "loadavg_1m": [round(load_before[0], 2), round(os.getloadavg()[0], 2)],
    }
    if failed_steps:
        report["failed_steps"] = failed_steps  # also a load step the connector ran again (the memory retry)
    try:
        report["state_written"] = state_written(pipeline, traces, time.time() - wall)
    except Exception as exc:  # noqa: BLE001 - a failed run may have no destination tables
        report["state_written"] = {"error": f"{type(exc).__name__}: {exc}"[:500]}
    return report


def run(args: argparse.Namespace) -> dict[str, Any]:
    import dlt

    from customerio_source import customerio_source, load

    load_before = os.getloadavg()
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    from customerio_source.client import RequestStats

    stats = RequestStats()
    source = customerio_source(
        api_key=args.api_key, base_url=args.base_url, tables=args.tables, rate_limit=args.rate_limit,
        request_stats=stats,
    )
    clock = TableClock(started)
    for name, res in source.selected_resources.items():
        res.add_map(clock.counter(name))
    pipeline = dlt.pipeline(
        pipeline_name="customerio_bench",
        pipelines_dir=str(workdir / "pipelines"),
        destination=destination_of(args, workdir),
        dataset_name=args.dataset_name,
    )
    traces = TraceLog(pipeline)
    log_lines = LogLines()
    if args.rss_trace:
        logging.getLogger("customerio_source").addHandler(log_lines)
        logging.getLogger("customerio_source").setLevel(logging.DEBUG)
    profiler = cProfile.Profile() if args.profile else None
    with RssSampler() as rss, rss_trace(args.rss_trace, rss, log_lines):
        try:
            if profiler:
                profiler.enable()
            load(pipeline, source)
            if profiler:
                profiler.disable()
                profiler.dump_stats(args.profile)
        except Exception as exc:
            try:
                partial = report_of(stats, list(source.selected_resources), pipeline, traces, clock, rss, started,
                                    load_before)
            except Exception as inner:  # noqa: BLE001 - the original failure is what matters
                partial = {"report_error": f"{type(inner).__name__}: {inner}"}
            raise RunFailed(exc, partial) from exc
    return report_of(stats, list(source.selected_resources), pipeline, traces, clock, rss, started, load_before)


class LogLines(logging.Handler):
    """Keeps every log record's time and message (for ``--rss-trace``)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[tuple[float, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append((record.created, record.getMessage()[:300]))


@contextlib.contextmanager
def rss_trace(path: str | None, rss: RssSampler, log_lines: LogLines) -> Iterator[None]:
    """Writes the RSS samples and log lines to ``path`` when the run ends (also after a failure)."""
    try:
        yield
    finally:
        if path:
            Path(path).write_bytes(orjson.dumps({"rss": rss.samples, "log": log_lines.lines}))


class RunFailed(Exception):
    """The pipeline failed; ``partial`` is what :func:`report_of` could still tell about the run."""

    def __init__(self, cause: Exception, partial: dict[str, Any]) -> None:
        super().__init__(str(cause))
        self.cause = cause
        self.partial = partial


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.worker")
    ap.add_argument("--base-url", required=True)
    ap.add_argument("--api-key", required=True)
    ap.add_argument("--rate-limit", type=float, default=0.0)
    ap.add_argument("--tables", default="all")
    ap.add_argument("--workdir", required=True)
    ap.add_argument("--result", required=True)
    ap.add_argument("--profile", default=None)
    ap.add_argument("--destination", choices=["duckdb", "postgres"], default="duckdb",
                    help="duckdb: DIR/warehouse.duckdb; postgres: DESTINATION__POSTGRES__CREDENTIALS")
    ap.add_argument("--dataset-name", default="customerio")
    ap.add_argument("--rss-trace", default=None,
                    help="write every RSS sample and the package's log lines (epoch seconds) to this JSON file")
    args = ap.parse_args(argv)
    from customerio_source.runner import bound_process_memory

    bound_process_memory()  # the CLI's process tuning, so the figures are the CLI's
    try:
        report = run(args)
    except Exception as exc:  # noqa: BLE001 - the benchmark reports the failure and goes on
        cause = exc.cause if isinstance(exc, RunFailed) else exc
        report = {"error": f"{type(cause).__name__}: {cause}"[:4000], "traceback": traceback.format_exc()[-8000:],
                  "peak_rss_mb_self": round(peak_rss_mb(), 1)}
        if isinstance(exc, RunFailed):
            report["partial"] = exc.partial
        Path(args.result).write_bytes(orjson.dumps(report, option=orjson.OPT_NON_STR_KEYS))
        raise
    Path(args.result).write_bytes(orjson.dumps(report, option=orjson.OPT_NON_STR_KEYS))
    return 0


if __name__ == "__main__":
    sys.exit(main())
