"""The planner's predictions against the requests runs then make (issue 17), at one or more scales.

    python -m benchmarks.plan_accuracy --scales small,large

Per scale: a simulated workspace (rate limit off), ``plan`` (a full run), a full run into a fresh DuckDB file
counting its requests (``RequestStats``), one change step, ``plan`` again (from the pipeline's watermarks),
the incremental run. Writes ``benchmarks/results/<date>-plan-accuracy.{json,md}``: per table and in total the
predicted and made requests and their ratio.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

RESULTS = Path(__file__).resolve().parent / "results"
KEY = "plan-bench-key"


def measure(scale: str, workdir: Path) -> dict[str, Any]:
    import dlt

    from customerio_source import customerio_source, load
    from customerio_source.client import RequestStats
    from customerio_source.planner import plan_run
    from customerio_source.simulator import SimulatorServer, Workspace

    ws = Workspace(scale=scale)
    server = SimulatorServer(ws, api_key=KEY).start()
    out: dict[str, Any] = {"scale": scale}
    try:
        for phase in ("full", "incremental"):
            if phase == "incremental":
                ws.advance()
            started = time.perf_counter()
            warehouse = dlt.destinations.duckdb(str(workdir / f"{scale}.duckdb"))
            plan = plan_run(
                KEY, base_url=server.base_url, rate_limit=0, pipeline_name=f"plan_{scale}", destination=warehouse
            )
            plan_seconds = time.perf_counter() - started
            stats = RequestStats()
            pipeline = dlt.pipeline(pipeline_name=f"plan_{scale}", destination=warehouse, dataset_name="customerio")
            load(pipeline, customerio_source(api_key=KEY, base_url=server.base_url, rate_limit=0, request_stats=stats))
            predicted = {t.table: getattr(t, phase) for t in plan.tables}
            made = {t: n for t, n in stats.by_table.items() if t != "-"}
            out[phase] = {
                "predicted": predicted,
                "made": made,
                "predicted_total": sum(predicted.values()),
                "made_total": stats.total,
                "planning_requests": plan.planning_requests,
                "planning_seconds": round(plan_seconds, 2),
            }
    finally:
        server.stop()
    return out


def markdown(result: dict[str, Any]) -> str:
    lines = [
        f"# Planner accuracy — {result['date']}",
        "",
        f"`{result['command']}` (simulated workspaces, rate limit off; requests counted by the run's `RequestStats`)",
        "",
        "## Totals",
        "",
        "| scale | run | predicted | made | predicted / made | planning requests |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for entry in result["scales"]:
        for phase in ("full", "incremental"):
            p = entry[phase]
            lines.append(
                f"| {entry['scale']} | {phase} | {p['predicted_total']:,} | {p['made_total']:,} | "
                f"{p['predicted_total'] / max(1, p['made_total']):.3f} | {p['planning_requests']} |"
            )
    for entry in result["scales"]:
        lines += [
            "",
            f"## Per table — {entry['scale']}",
            "",
            "| table | full predicted | full made | incr predicted | incr made |",
            "|---|---:|---:|---:|---:|",
        ]
        full, inc = entry["full"], entry["incremental"]
        for table in sorted(set(full["predicted"]) | set(full["made"])):
            lines.append(
                f"| {table} | {full['predicted'].get(table, 0):,} | {full['made'].get(table, 0):,} | "
                f"{inc['predicted'].get(table, 0):,} | {inc['made'].get(table, 0):,} |"
            )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.plan_accuracy", description=__doc__.splitlines()[0])
    ap.add_argument("--scales", default="small,large")
    args = ap.parse_args(argv)
    os.environ.setdefault("RUNTIME__LOG_LEVEL", "ERROR")
    date = dt.date.today().isoformat()
    result: dict[str, Any] = {
        "date": date,
        "command": "python -m benchmarks.plan_accuracy --scales " + args.scales,
        "scales": [],
    }
    with tempfile.TemporaryDirectory(prefix="cio-plan-") as tmp:
        os.environ.setdefault("DLT_DATA_DIR", str(Path(tmp) / "dlt"))
        for scale in [s.strip() for s in args.scales.split(",") if s.strip()]:
            result["scales"].append(measure(scale, Path(tmp)))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{date}-plan-accuracy.json").write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2))
    text = markdown(result)
    (RESULTS / f"{date}-plan-accuracy.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
