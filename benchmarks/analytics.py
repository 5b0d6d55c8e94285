"""Analytics (issue 16): models plus report on the `large` simulated workspace loaded into DuckDB.

    python -m benchmarks.analytics [--repeat 3] [--workdir DIR] [--no-write]

Set-up (timed, not a target): the `large` workspace (``customerio_source/simulator/scales.py``) is served
in this process and the tables the models read (messages, activities, campaigns, broadcasts,
newsletters, transactional messages and their metrics) are loaded with ``customerio_source.load`` into a
fresh DuckDB file. Then, ``--repeat`` times, a child process (``--worker``) runs what
``customerio-pipeline models`` and ``customerio-pipeline report`` run (the models, anomalies and forecasts,
then the HTML report), timing each phase; its peak RSS comes from ``wait4`` on that process alone.
Targets: models plus report <= 30 s, peak RSS <= 500 MB (medians of the runs). Results:
``benchmarks/results/<date>-analytics.{json,md}``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
TABLES = (
    "campaigns,broadcasts,newsletters,transactional_messages,messages,activities,campaign_metrics,"
    "broadcast_metrics,newsletter_metrics,transactional_metrics"
)
PIPELINE = "cio_bench_analytics"
TARGET_SECONDS, TARGET_RSS_MB = 30.0, 500.0


def median(values: list[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def setup(workdir: Path, scale: str) -> dict[str, Any]:
    """Load the workspace into ``workdir/<PIPELINE>.duckdb``; returns timings and row counts."""
    import dlt

    from customerio_source import customerio_source, load
    from customerio_source.runner import bound_process_memory
    from customerio_source.simulator import SimulatorServer, Workspace

    bound_process_memory()
    started = time.monotonic()
    workspace = Workspace(scale=scale)
    workspace.render_deliveries()
    built = time.monotonic() - started
    with SimulatorServer(workspace, api_key="bench") as server:
        source = customerio_source(api_key="bench", base_url=server.base_url, tables=TABLES, rate_limit=0)
        pipeline = dlt.pipeline(
            pipeline_name=PIPELINE,
            pipelines_dir=str(workdir / "pipelines"),
            destination=dlt.destinations.duckdb(str(workdir / f"{PIPELINE}.duckdb")),
            dataset_name="customerio",
        )
        t = time.monotonic()
        load(pipeline, source)
        loaded = time.monotonic() - t
    rows = {}
    with pipeline.sql_client() as client:
        for table in TABLES.split(","):
            try:
                rows[table] = int(
                    client.execute_sql(f"SELECT COUNT(*) FROM {client.make_qualified_table_name(table)}")[0][0]
                )
            except Exception:  # noqa: BLE001 - a table with no rows was never created
                rows[table] = 0
    return {"workspace_build_s": round(built, 1), "load_s": round(loaded, 1), "rows": rows}


def worker(workdir: Path) -> None:
    """One models + report run (the child process); prints its phase timings as JSON."""
    started = time.monotonic()
    import dlt

    from customerio_source.analytics.build import run_analytics
    from customerio_source.analytics.report import write_report

    pipeline = dlt.pipeline(
        pipeline_name=PIPELINE,
        pipelines_dir=str(workdir / "pipelines"),
        destination=dlt.destinations.duckdb(str(workdir / f"{PIPELINE}.duckdb")),
        dataset_name="customerio",
    )
    imported = time.monotonic()
    result = run_analytics(pipeline)
    built = time.monotonic()
    out = workdir / "report.html"
    write_report(pipeline, str(out))
    done = time.monotonic()
    print(
        json.dumps(
            {
                "import_s": round(imported - started, 2),
                "models_anomalies_forecasts_s": round(built - imported, 2),
                "report_s": round(done - built, 2),
                "total_s": round(done - started, 2),
                "series": len(result.series),
                "anomalies": len(result.anomalies),
                "spikes": sum(1 for a in result.anomalies if a.kind == "spike"),
                "band_95_over_level": band_ratio(result),
                "forecast_rows": sum(len(f.mean) for f in result.forecasts),
                "models": result.plan.models,
                "report_bytes": out.stat().st_size,
                "forecast_model": sorted({f.model for f in result.forecasts}),
            }
        )
    )


def band_ratio(result: Any) -> float | None:
    """Median over the series of (mean 95% interval width) / (mean of the last 28 days): how wide the
    forecast bands are against the series' level."""
    import numpy as np

    levels = {s.name: float(np.mean(s.values[-28:])) for s in result.series}
    ratios = [
        float(np.mean(f.upper_95 - f.lower_95)) / levels[f.series]
        for f in result.forecasts
        if f.kind == "forecast" and levels.get(f.series, 0) > 0
    ]
    return round(float(np.median(ratios)), 2) if ratios else None


def run_worker(workdir: Path) -> dict[str, Any]:
    """One worker run; its peak RSS from ``wait4`` (that process alone)."""
    env = {**os.environ, "DLT_DATA_DIR": str(workdir / "dlt"), "RUNTIME__LOG_LEVEL": "CRITICAL"}
    out_path, err_path = workdir / "worker.out", workdir / "worker.err"
    started = time.monotonic()
    with open(out_path, "w") as out, open(err_path, "w") as err:
        process = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.analytics", "--worker", "--workdir", str(workdir)],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=err,
        )
        _, status, usage = os.wait4(process.pid, 0)
    wall = time.monotonic() - started
    if os.waitstatus_to_exitcode(status):
        lines = err_path.read_text().strip().splitlines()
        raise SystemExit(f"worker failed: {lines[-1] if lines else status}")
    report = json.loads(out_path.read_text().strip().splitlines()[-1])
    report["wall_s"] = round(wall, 2)
    report["peak_rss_mb"] = round(usage.ru_maxrss / 1024, 1)
    return report


def markdown(result: dict[str, Any]) -> str:
    runs = result["runs"]
    lines = [
        f"# Analytics benchmark, {result['date']}: models plus report on the `{result['scale']}` workspace (DuckDB)",
        "",
        f"Machine: {result['machine']}. `python -m benchmarks.analytics --repeat {len(runs)}`.",
        "",
        f"Set-up (not a target): workspace built in {result['setup']['workspace_build_s']} s, loaded in "
        f"{result['setup']['load_s']} s; rows: " + ", ".join(f"{k} {v:,}" for k, v in result["setup"]["rows"].items()),
        "",
        "| run | wall (s) | imports | models + anomalies + forecasts | report | peak RSS (MB) | series | anomalies |"
        " spikes | forecast rows | 95% band / level |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for i, r in enumerate(runs, 1):
        lines.append(
            f"| {i} | {r['wall_s']} | {r['import_s']} | {r['models_anomalies_forecasts_s']} | {r['report_s']} |"
            f" {r['peak_rss_mb']} | {r['series']} | {r['anomalies']} | {r['spikes']} | {r['forecast_rows']} |"
            f" {r['band_95_over_level']} |"
        )
    wall, rss = median([r["wall_s"] for r in runs]), median([r["peak_rss_mb"] for r in runs])
    lines += [
        "",
        f"Median wall time {wall:.1f} s (target <= {TARGET_SECONDS:.0f} s: "
        f"{'PASS' if wall <= TARGET_SECONDS else 'FAIL'}), median peak RSS {rss:.0f} MB (target <= "
        f"{TARGET_RSS_MB:.0f} MB: {'PASS' if rss <= TARGET_RSS_MB else 'FAIL'}). Forecast model: "
        f"{', '.join(runs[0]['forecast_model'])}; models: {', '.join(runs[0]['models'])}; report "
        f"{runs[0]['report_bytes']:,} bytes.",
        "",
        f"Load average before/after: {result['load_before']} / {result['load_after']} (a shared 2-core machine).",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.analytics", description=__doc__.splitlines()[0])
    ap.add_argument("--scale", default="large")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--workdir", default=None, help="reuse a loaded folder (skips the set-up when loaded)")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--setup-only", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args(argv)
    if args.worker:
        worker(Path(args.workdir))
        return 0
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="cio-analytics-"))
    os.environ.setdefault("DLT_DATA_DIR", str(workdir / "dlt"))
    setup_file = workdir / "setup.json"
    if args.setup_only:
        setup_file.write_text(json.dumps(setup(workdir, args.scale)))
        return 0
    if not setup_file.exists():
        # in its own process: a child forked from a process holding the workspace would count that
        # process's memory in its own peak RSS (Linux carries the pre-exec high-water mark over)
        subprocess.run(
            [
                sys.executable,
                "-m",
                "benchmarks.analytics",
                "--setup-only",
                "--scale",
                args.scale,
                "--workdir",
                str(workdir),
            ],
            cwd=ROOT,
            check=True,
        )
    prepared = json.loads(setup_file.read_text())
    print(f"set-up: {prepared}", file=sys.stderr)
    load_before = os.getloadavg()[0]
    runs = []
    for i in range(args.repeat):
        runs.append(run_worker(workdir))
        print(f"run {i + 1}: {runs[-1]}", file=sys.stderr)
    result = {
        "date": dt.date.today().isoformat(),
        "scale": args.scale,
        "setup": prepared,
        "runs": runs,
        "machine": f"{os.cpu_count()} cores",
        "load_before": round(load_before, 2),
        "load_after": round(os.getloadavg()[0], 2),
    }
    text = markdown(result)
    print(text)
    if not args.no_write:
        RESULTS.mkdir(parents=True, exist_ok=True)
        stem = RESULTS / f"{result['date']}-analytics"
        stem.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
        stem.with_suffix(".md").write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
