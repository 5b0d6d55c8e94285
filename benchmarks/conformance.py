"""Run the connector once against the independent spec server and compare what both sides counted.

    python -m benchmarks.conformance --scale small [--tables all] [--rate-limit 10]

The server (``benchmarks.specserver``, built from the OpenAPI file only) runs in a subprocess; the connector
runs in this process into a temporary DuckDB file. A table that fails on the synthetic data is excluded and
the run repeated; the failure is recorded. Results: ``benchmarks/results/<date>-conformance.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
import traceback
import urllib.request
from datetime import date
from pathlib import Path
from typing import Any

os.environ.setdefault("RUNTIME__DLTHUB_TELEMETRY", "false")

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "benchmarks" / "results"
API_KEY = "conformance-key"
MAX_ATTEMPTS = 4


def start_server(scale: str, rate_limit: float, spec: str | None) -> tuple[subprocess.Popen[str], dict[str, str]]:
    """Start the spec server in a subprocess; return it and its URLs."""
    cmd = [
        sys.executable,
        "-m",
        "benchmarks.specserver",
        "--scale",
        scale,
        "--rate-limit",
        str(rate_limit),
        "--api-key",
        API_KEY,
        "--port",
        "0",
    ]
    if spec:
        cmd += ["--spec", spec]
    proc = subprocess.Popen(cmd, cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        raise RuntimeError("specserver exited before printing its URLs")
    return proc, json.loads(line)


def admin(urls: dict[str, str], path: str) -> Any:
    """GET an admin path."""
    with urllib.request.urlopen(urls["admin"] + path, timeout=120) as resp:
        return json.loads(resp.read())


def all_tables() -> list[str]:
    """The connector's `all` table list."""
    from customerio_source import source  # noqa: F401 - registers the metrics tables
    from customerio_source.catalogue import default_tables

    return default_tables()


def run_connector(api_url: str, tables: list[str] | str, rate_limit: float, workdir: str) -> dict[str, Any]:
    """One full sync into DuckDB; client counters and rows per table."""
    import dlt

    from customerio_source import customerio_source, load
    from customerio_source.client import RequestStats

    stats = RequestStats()
    source = customerio_source(
        api_key=API_KEY, base_url=api_url, tables=tables, rate_limit=rate_limit, request_stats=stats
    )
    db = os.path.join(workdir, "w.duckdb")
    pipeline = dlt.pipeline(
        pipeline_name="conformance",
        pipelines_dir=os.path.join(workdir, "pipelines"),
        destination=dlt.destinations.duckdb(db),
        dataset_name="customerio",
    )
    started = time.monotonic()
    error = None
    try:
        load(pipeline, source)
    except Exception as exc:  # noqa: BLE001 - recorded, and the table is excluded on retry
        error = exc
    wall = time.monotonic() - started
    out = {
        "wall_s": round(wall, 2),
        "client_total": stats.total,
        "client_by_table": dict(stats.by_table),
        "client_rate_limited": stats.rate_limited,
        "client_retries": dict(stats.retries),
    }
    if error is not None:
        out["error"] = error
    else:
        out["rows"] = table_rows(db)
    return out


def table_rows(db: str) -> dict[str, int]:
    """Row count of every table in schema `customerio` (dlt's own tables left out)."""
    import duckdb

    con = duckdb.connect(db, read_only=True)
    try:
        names = [
            r[0]
            for r in con.execute(
                "select table_name from information_schema.tables where table_schema = 'customerio' order by 1"
            ).fetchall()
        ]
        return {
            n: con.execute(f'select count(*) from customerio."{n}"').fetchone()[0]
            for n in names
            if not n.startswith("_dlt")
        }
    finally:
        con.close()


def error_line(exc: BaseException) -> str:
    """The innermost exception as one line."""
    inner: BaseException = exc
    while inner.__cause__ or inner.__context__:
        inner = inner.__cause__ or inner.__context__  # type: ignore[assignment]
    return f"{type(inner).__name__}: {str(inner).splitlines()[0] if str(inner) else ''}"[:400]


def failing_table(exc: BaseException, candidates: list[str]) -> str | None:
    """The table named in the error (longest name first, so `campaign_actions` beats `campaigns`)."""
    text = "".join(traceback.format_exception(exc))
    for name in sorted(candidates, key=len, reverse=True):
        if f"'{name}'" in text or f'"{name}"' in text or f" {name} " in text:
            return name
    return None


def attempt_runs(urls: dict[str, str], tables: list[str], rate_limit: float) -> tuple[dict[str, Any], list[dict]]:
    """Run until a sync succeeds, excluding a table after each failure; return the last run and the failures."""
    failures: list[dict[str, Any]] = []
    for _ in range(MAX_ATTEMPTS):
        admin(urls, "/_reset")
        with tempfile.TemporaryDirectory(prefix="cio-conformance-") as workdir:
            run = run_connector(urls["api"], tables, rate_limit, workdir)
        run["server"] = admin(urls, "/_stats")
        run["tables"] = list(tables)
        if "error" not in run:
            run["floor"] = admin(urls, "/_floor")
            return run, failures
        exc = run.pop("error")
        table = failing_table(exc, tables)
        failures.append({"table": table, "error": error_line(exc)})
        print(f"connector failed on {table}: {failures[-1]['error']}", file=sys.stderr)
        if table is None:
            return run, failures
        tables = [t for t in tables if t != table]
    return run, failures


def summarize(run: dict[str, Any], rate_limit: float) -> dict[str, Any]:
    """The headline numbers and checks."""
    server = run["server"]
    other_4xx = {k: v for k, v in server["by_status"].items() if k.startswith("4") and k != "429"}
    total = server["total"]
    share_429 = server["rate_limited"] / total if total else 0.0
    sustained = server["sustained_rate"] or 0.0
    return {
        "server_total": total,
        "client_total": run["client_total"],
        "totals_equal": total == run["client_total"],
        "server_429": server["rate_limited"],
        "client_429": run["client_rate_limited"],
        "share_429": round(share_429, 4),
        "sustained_rate": round(sustained, 2),
        "busiest_second": server["busiest_second"],
        "span_s": round(server["span_s"], 2),
        "other_4xx": other_4xx,
        "checks": {
            "totals_equal": total == run["client_total"],
            "sustained_ge_90pct_of_limit": sustained >= 0.9 * rate_limit,
            "share_429_le_1pct": share_429 <= 0.01,
            "no_other_4xx": not other_4xx,
            "busiest_second_le_limit": server["busiest_second_ok"] <= math.ceil(rate_limit),
        },
    }


def markdown(result: dict[str, Any]) -> str:
    """A short report: totals and per route."""
    s, run = result["summary"], result["run"]
    floor = (run.get("floor") or {}).get("floor", {})
    lines = [
        f"# Conformance vs the independent spec server — {result['date']} ({result['scale']}, "
        f"limit {result['rate_limit']:g}/s)",
        "",
        "Server: `benchmarks/specserver.py`, routes/params/limits/shapes from `journeys-app.json` (+ DIGEST [C] "
        "params); no simulator code.",
        "",
        "| measure | value |",
        "|---|---|",
        f"| requests, server / client | {s['server_total']} / {s['client_total']} "
        f"({'equal' if s['totals_equal'] else 'DIFFERENT'}) |",
        f"| 429s, server / client | {s['server_429']} / {s['client_429']} ({s['share_429']:.2%}) |",
        f"| sustained rate (total / span) | {s['sustained_rate']}/s over {s['span_s']} s |",
        f"| busiest 1-s window | {s['busiest_second']} |",
        f"| other 4xx | {s['other_4xx'] or 0} |",
        f"| request floor (routes computed) | {result['floor_total']} |",
        f"| connector wall time | {run['wall_s']} s |",
        "",
        "Checks: " + ", ".join(f"{k} {'PASS' if v else 'FAIL'}" for k, v in s["checks"].items()),
        "",
    ]
    if result["failures"]:
        lines += ["Tables excluded after failing on the synthetic data:", ""]
        lines += [f"- `{f['table']}`: `{f['error']}`" for f in result["failures"]] + [""]
    lines += ["| route | requests | floor |", "|---|---:|---:|"]
    for route, count in sorted(run["server"]["by_route"].items()):
        lines.append(f"| `{route}` | {count} | {floor.get(route) if floor.get(route) is not None else '—'} |")
    lines += ["", "| table | rows |", "|---|---:|"]
    lines += [f"| {t} | {n} |" for t, n in sorted((run.get("rows") or {}).items())]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    """CLI."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", default="small", choices=["tiny", "small"])
    parser.add_argument("--tables", default="all", help="all, or comma-separated table names")
    parser.add_argument("--exclude", default="", help="comma-separated tables to leave out of `all`")
    parser.add_argument("--rate-limit", type=float, default=10.0)
    parser.add_argument("--spec", default=None)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    tables = all_tables() if args.tables == "all" else args.tables.split(",")
    tables = [t for t in tables if t not in set(args.exclude.split(","))]
    proc, urls = start_server(args.scale, args.rate_limit, args.spec)
    try:
        run, failures = attempt_runs(urls, tables, args.rate_limit)
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        proc.wait(timeout=30)
    floor = (run.get("floor") or {}).get("floor", {})
    result = {
        "date": date.today().isoformat(),
        "scale": args.scale,
        "rate_limit": args.rate_limit,
        "summary": summarize(run, args.rate_limit),
        "failures": failures,
        "floor_total": sum(v for v in floor.values() if v is not None),
        "floor_routes_missing": [k for k, v in floor.items() if v is None],
        "run": run,
    }
    print(json.dumps(result["summary"], indent=2))
    if not args.no_write:
        RESULTS.mkdir(parents=True, exist_ok=True)
        stem = RESULTS / f"{result['date']}-conformance"
        stem.with_suffix(".json").write_text(json.dumps(result, indent=2, default=str) + "\n")
        stem.with_suffix(".md").write_text(markdown(result))
        print(f"wrote {stem}.json and .md")


if __name__ == "__main__":
    main()
