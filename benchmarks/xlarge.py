"""Scale benchmark (issue 17): the same full + incremental syncs at `small`, `large` and `xlarge`, limit off.

    python -m benchmarks.xlarge [--scales small,large,xlarge] [--render-deliveries all]
    python -m benchmarks.xlarge --report-only

Each scale runs :func:`benchmarks.run.run_mode` (a fresh simulator process, a full sync into a fresh DuckDB
file in a worker process, one change step, an incremental sync into the same file and dlt state), in one
session so the figures are comparable. The JSON is written after each scale (a long xlarge run leaves the
smaller scales' figures behind if it is stopped); the markdown compares, per table, requests vs floor,
rows/s and time per 1,000 rows at `large` vs `xlarge`, and checks the issue's targets. dlt state written per
run is the bytes of the ``_dlt_pipeline_state`` rows of that run's loads (``benchmarks.worker``).

Tables are extracted concurrently in a sync, so a table's span there also holds the others' work (on two
cores the pipeline process is CPU-bound at `xlarge`). After the scales, each table timed at `large` is
synced alone (a full sync of that table only, its parents read as needed) against one simulator per scale
(``--alone``, the default; ``--no-alone`` skips it; ``--alone-only`` runs just that pass and adds it to the
day's results): the time-per-row target is judged on those spans. A table whose span alone is under
``ALONE_SHORT_S`` is run ``ALONE_RUNS`` times and its median span counts (a few requests' latency on a
shared machine varies by more than the 20% judged).
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

from benchmarks.run import RESULTS, machine, run_mode, run_pipeline, say, simulator, source_state, summarize

MAX_RSS_GROWTH = 1.3  # peak RSS at xlarge vs small
MAX_TIME_PER_ROW_GROWTH = 1.2  # per table, large -> xlarge
MAX_STATE_BYTES = 100_000  # dlt state written per run
FLOOR_FACTOR = 1.2  # incremental requests vs incremental floor
TIMED_MIN_ROWS = 1_000  # tables with fewer rows at `large` finish within a few requests' latency: not timed
PLANNING_RATE = 10.0  # requests/s of the wall-time estimate in the README
ALONE_SHORT_S = 10.0  # a table whose span alone is shorter than this (seconds) ...
ALONE_RUNS = 3  # ... is synced this many times; its median span counts


def output(date: str) -> Path:
    return RESULTS / f"{date}-xlarge.json"


def run_scales(args: argparse.Namespace) -> dict[str, Any]:
    date = dt.date.today().isoformat()
    path = output(date)
    result: dict[str, Any] = orjson.loads(path.read_bytes()) if path.exists() else {}
    result.update(
        {
            "date": date,
            "command": "python -m benchmarks.xlarge " + " ".join(sys.argv[1:]),
            "machine": machine(),
            "source": source_state(),
            "render_deliveries": args.render_deliveries,
        }
    )
    result.setdefault("scales", {})
    with tempfile.TemporaryDirectory(prefix="cio-xlarge-") as tmp:
        for scale in args.scale_list:
            started = time.perf_counter()
            say(f"[{scale}] started {dt.datetime.now(dt.UTC):%H:%M:%S} UTC")
            mode = run_mode(args, scale, "off", Path(tmp))
            mode["bench_seconds"] = round(time.perf_counter() - started, 1)
            result["scales"][scale] = mode
            path.write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS))
            say(f"[{scale}] done in {mode['bench_seconds']} s; {path} written")
        if args.alone:
            result["alone"] = run_alone(args, result, Path(tmp))
            path.write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS))
    return result


def timed_tables(result: dict[str, Any]) -> list[str]:
    """Tables with at least ``TIMED_MIN_ROWS`` rows in the `large` full sync."""
    large = ((result["scales"].get("large") or {}).get("summary") or {}).get("full", {}).get("tables", {})
    return sorted(t for t, entry in large.items() if (entry.get("rows") or 0) >= TIMED_MIN_ROWS)


def run_alone(args: argparse.Namespace, result: dict[str, Any], workroot: Path) -> dict[str, Any]:
    """A full sync of each timed table alone, at `large` and `xlarge` (one simulator per scale): rows,
    requests, the table's span (start to its last row through extraction) and the run's wall time."""
    tables = timed_tables(result)
    alone: dict[str, Any] = {}
    for scale in ("large", "xlarge"):
        if scale not in args.scale_list or not tables:
            continue
        alone[scale] = {}
        with simulator(scale, 0.0, "all", args.render_deliveries) as sim:
            for table in tables:
                runs: list[dict[str, Any]] = []
                while not runs or (len(runs) < ALONE_RUNS and (runs[0]["done_seconds"] or 0) < ALONE_SHORT_S):
                    workdir = workroot / f"alone-{scale}-{table}-{len(runs)}"
                    report = run_pipeline(sim, 0.0, table, workdir)
                    runs.append({
                        "rows": (report.get("rows_by_table") or {}).get(table),
                        "requests": report.get("requests"),
                        "done_seconds": (report.get("table_done_seconds") or {}).get(table),
                        "wall_seconds": report.get("wall_seconds"),
                        **({"error": report["error"]} if "error" in report else {}),
                    })
                    if "error" in report:
                        break
                spans = sorted(r["done_seconds"] for r in runs if r["done_seconds"] is not None)
                alone[scale][table] = {
                    **runs[0],
                    "done_seconds": spans[len(spans) // 2] if spans else None,
                    **({"done_seconds_runs": [r["done_seconds"] for r in runs]} if len(runs) > 1 else {}),
                }
                say(f"[alone {scale}] {table}: {alone[scale][table]}")
    return alone


def run_alone_only(args: argparse.Namespace) -> dict[str, Any]:
    """The alone pass on its own, added to the day's results (which must hold the `large` full sync)."""
    path = output(dt.date.today().isoformat())
    result: dict[str, Any] = orjson.loads(path.read_bytes())
    with tempfile.TemporaryDirectory(prefix="cio-xlarge-alone-") as tmp:
        result["alone"] = run_alone(args, result, Path(tmp))
    result["alone_command"] = "python -m benchmarks.xlarge " + " ".join(sys.argv[1:])
    result["alone_source"] = source_state()
    path.write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS))
    return result


# -- report ----------------------------------------------------------------------------------------------
def fmt(value: Any, digits: int = 0) -> str:
    if value is None:
        return "–"
    if isinstance(value, (int, float)):
        return f"{value:,.{digits}f}"
    return str(value)


def state_of(mode: dict[str, Any], phase: str) -> dict[str, Any]:
    cycles = mode.get("cycles") or [{}]
    return (cycles[0].get(phase) or {}).get("state_written") or {}


def per_ms(entry: dict[str, Any]) -> float | None:
    """Seconds per 1,000 rows of one table: its extraction span ('done s') over its rows."""
    done, rows = entry.get("done_seconds"), entry.get("rows")
    return 1000 * done / rows if done and rows else None


def markdown(result: dict[str, Any]) -> str:
    m = result["machine"]
    scales = result["scales"]
    lines = [
        f"# Scale benchmark — small / large / xlarge — {result['date']}",
        "",
        f"`{result['command']}` (rate limit off, DuckDB; deliveries serialized by the simulator: "
        f"`--render-deliveries {result.get('render_deliveries', 'auto')}`)",
        "",
        f"Machine: {m['nproc']} CPUs ({m['cpu']}), {m['memory_gb']} GB, shared with other jobs; Python {m['python']}, "
        f"dlt {m['dlt']}, DuckDB {m['duckdb']}. One run per scale; simulator and pipeline in separate processes.",
        "",
        f"Source: commit {result['source']['commit']} (code digest {result['source'].get('digest', '?')})"
        + (
            f" + working-tree changes in {', '.join(result['source']['changed_source_files'])}"
            if result["source"]["changed_source_files"]
            else ""
        ),
        "",
    ]
    built = {scale: (mode.get("cycles") or [{}])[0].get("simulator") for scale, mode in scales.items()}
    if any(built.values()):
        lines += [
            "## Generating the workspace (the simulator process)",
            "",
            "| scale | deliveries | workspace built s | RSS after building MB | deliveries serialized | "
            "ready after s | RSS ready MB |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]
        for scale, g in built.items():
            if g:
                lines.append(
                    f"| {scale} | {fmt(g.get('deliveries'))} | {fmt(g.get('workspace_seconds'), 1)} | "
                    f"{fmt(g.get('workspace_rss_mb'))} | {fmt(g.get('rendered_deliveries'))} | "
                    f"{fmt(g.get('build_seconds'), 1)} | {fmt(g.get('rss_mb'))} |"
                )
        lines.append("")
    lines += [
        "## Totals",
        "",
        "| scale | sync | requests | floor | req/floor | wall s | extract s | rows | rows/s | peak RSS MB | "
        "state rows | state bytes written |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for scale, mode in scales.items():
        summary = mode.get("summary") or {}
        for phase in ("full", "incremental"):
            s = summary.get(phase) or {}
            if "requests" not in s:
                lines.append(f"| {scale} | {phase}: error {s.get('error')} |" + " |" * 10)
                continue
            st = state_of(mode, phase)
            lines.append(
                f"| {scale} | {phase} | {fmt(s['requests'])} | {fmt(s['floor'])} | "
                f"{s['requests_over_floor']:.2f} | {s['wall_seconds']:.1f} | {s['extract_seconds']:.1f} | "
                f"{fmt(s['rows'])} | {fmt(s['rows_per_second'])} | {s['peak_rss_mb']:.0f} | "
                f"{fmt(st.get('rows'))} | {fmt(st.get('bytes'))} |"
            )
    large = ((scales.get("large") or {}).get("summary") or {}).get("full", {}).get("tables", {})
    xlarge = ((scales.get("xlarge") or {}).get("summary") or {}).get("full", {}).get("tables", {})
    lx_inc = ((scales.get("xlarge") or {}).get("summary") or {}).get("incremental", {}).get("tables", {})
    if large and xlarge:
        lines += [
            "",
            "## Per table, full sync: large vs xlarge",
            "",
            "| table | rows large | rows xlarge | req / floor large | req / floor xlarge | "
            "incr req / floor xlarge | rows/s large | rows/s xlarge | s per 1,000 rows large | "
            "s per 1,000 rows xlarge | growth |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for table in sorted(set(large) | set(xlarge)):
            a, b, inc = large.get(table, {}), xlarge.get(table, {}), lx_inc.get(table, {})
            pa, pb = per_ms(a), per_ms(b)
            timed = (a.get("rows") or 0) >= TIMED_MIN_ROWS
            growth = f"{pb / pa:.2f}" if pa and pb and timed else "–"
            if timed and pa and pb and pb > MAX_TIME_PER_ROW_GROWTH * pa:
                growth += " ⚠"
            lines.append(
                f"| {table} | {fmt(a.get('rows'))} | {fmt(b.get('rows'))} | {fmt(a.get('requests'))} / "
                f"{fmt(a.get('floor'))} | {fmt(b.get('requests'))} / {fmt(b.get('floor'))} | "
                f"{fmt(inc.get('requests'))} / {fmt(inc.get('floor'))} | {fmt(a.get('rows_per_second'))} | "
                f"{fmt(b.get('rows_per_second'))} | {fmt(pa, 3)} | {fmt(pb, 3)} | {growth} |"
            )
        lines += [
            "",
            f"Rows/s and time per 1,000 rows of a table come from its extraction span ('done s': from the "
            "start of the run until its last row went through extraction; tables are extracted "
            f"concurrently). Growth is not computed for tables under {TIMED_MIN_ROWS:,} rows at `large` (a "
            "few requests' latency); ⚠ = more than 1.2 ×.",
        ]
    alone = result.get("alone") or {}
    if alone.get("large") and alone.get("xlarge"):
        lines += [
            "",
            "## Per table alone, full sync: large vs xlarge",
            "",
            "| table | rows large | rows xlarge | requests large | requests xlarge | s per 1,000 rows large | "
            "s per 1,000 rows xlarge | growth |",
            "|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for table in sorted(alone["large"]):
            a, b = alone["large"][table], alone["xlarge"].get(table, {})
            pa, pb = per_ms(a), per_ms(b)
            growth = f"{pb / pa:.2f}" if pa and pb else "–"
            if pa and pb and pb > MAX_TIME_PER_ROW_GROWTH * pa:
                growth += " ⚠"
            lines.append(
                f"| {table} | {fmt(a.get('rows'))} | {fmt(b.get('rows'))} | {fmt(a.get('requests'))} | "
                f"{fmt(b.get('requests'))} | {fmt(pa, 4)} | {fmt(pb, 4)} | {growth} |"
            )
        lines += [
            "",
            "Each table synced alone (`--tables <table>`, a fresh DuckDB file; its parents are read too and count "
            "in its span), one simulator per scale with deliveries, metric indexes, members and identifiers "
            f"rendered ahead. A table whose first span is under {ALONE_SHORT_S:.0f} s is synced {ALONE_RUNS} times: "
            "its median span counts (runs: " + "; ".join(
                f"{table} {scale} " + " / ".join(fmt(v, 2) for v in alone[scale][table]["done_seconds_runs"]) + " s"
                for scale in ("large", "xlarge") for table in sorted(alone[scale])
                if alone[scale][table].get("done_seconds_runs")
            ) + ").",
        ]
    lines += ["", "## Targets", ""]
    for name, value, passed in targets(result):
        verdict = "PASS" if passed else "n/a" if passed is None else "FAIL"
        lines.append(f"- **{verdict}** {name}: {value}")
    estimate = result.get("planning")
    if estimate:
        lines += ["", "## Wall time at 10 requests/s (from the request counts)", ""] + estimate
    for note in result.get("notes", []):
        lines += ["", note]
    return "\n".join(lines) + "\n"


def targets(result: dict[str, Any]) -> list[tuple[str, str, bool | None]]:
    scales = result["scales"]
    out: list[tuple[str, str, bool | None]] = []

    def summary(scale: str) -> dict[str, Any]:
        return (scales.get(scale) or {}).get("summary") or {}

    def rss(scale: str) -> float | None:
        values = [
            summary(scale)[p]["peak_rss_mb"]
            for p in ("full", "incremental")
            if "peak_rss_mb" in summary(scale).get(p, {})
        ]
        return max(values) if values else None

    small_rss, x_rss = rss("small"), rss("xlarge")
    if small_rss and x_rss:
        out.append(
            (
                f"peak RSS xlarge <= {MAX_RSS_GROWTH} x small",
                f"{x_rss:.0f} MB vs small {small_rss:.0f} MB (x{x_rss / small_rss:.2f})",
                x_rss <= MAX_RSS_GROWTH * small_rss,
            )
        )
    alone = result.get("alone") or {}
    judged_alone = bool(alone.get("large") and alone.get("xlarge"))
    if judged_alone:
        large, xlarge = alone["large"], alone["xlarge"]
    else:
        large = summary("large").get("full", {}).get("tables", {})
        xlarge = summary("xlarge").get("full", {}).get("tables", {})
    if large and xlarge:
        growths = {
            t: per_ms(xlarge[t]) / per_ms(large[t])
            for t in large
            if t in xlarge and (large[t].get("rows") or 0) >= TIMED_MIN_ROWS and per_ms(large[t]) and per_ms(xlarge[t])
        }
        worst = sorted(growths.items(), key=lambda kv: -kv[1])
        bad = [f"{t} x{g:.2f}" for t, g in worst if g > MAX_TIME_PER_ROW_GROWTH]
        out.append(
            (
                f"no table's time per row grows by more than {MAX_TIME_PER_ROW_GROWTH - 1:.0%} large -> xlarge "
                f"({len(growths)} tables with >= {TIMED_MIN_ROWS:,} rows, "
                + ("each synced alone)" if judged_alone else "spans in the concurrent sync)"),
                ", ".join(bad) if bad else f"worst {worst[0][0]} x{worst[0][1]:.2f}" if worst else "–",
                not bad if growths else None,
            )
        )
    for scale in ("large", "xlarge"):
        mode = scales.get(scale)
        if not mode:
            continue
        for phase in ("full", "incremental"):
            st = state_of(mode, phase)
            if "bytes" in st and "error" not in st:
                out.append(
                    (
                        f"dlt state written per run <= {MAX_STATE_BYTES // 1000} KB ({scale}, {phase})",
                        f"{st['bytes']:,} bytes in {st['rows']} row(s) (state column {st['state_column_bytes']:,};"
                        f" state as JSON {st['state_json_bytes']:,})",
                        st["bytes"] <= MAX_STATE_BYTES,
                    )
                )
        inc = summary(scale).get("incremental", {})
        if "requests" in inc:
            out.append(
                (
                    f"incremental requests <= {FLOOR_FACTOR} x incremental floor ({scale})",
                    f"{inc['requests']:.0f} / {inc['floor']:.0f} = {inc['requests_over_floor']:.2f}",
                    inc["requests_over_floor"] <= FLOOR_FACTOR,
                )
            )
    return out


def write(result: dict[str, Any]) -> None:
    text = markdown(result)
    print(text)
    output(result["date"]).write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS))
    output(result["date"]).with_suffix(".md").write_text(text)


def add_full_only(scale: str, report_file: str, floors_file: str, note: str) -> int:
    """Record a full sync whose cycle did not finish (the worker's report and the simulator's floors, taken
    from the run's folder and admin port) as ``scale``'s result; the incremental sync is marked not run."""
    files = sorted(RESULTS.glob("*-xlarge.json"))
    result = orjson.loads(files[-1].read_bytes())
    full = orjson.loads(Path(report_file).read_bytes())
    # what benchmarks.run adds around the worker, from the worker's own report: its getrusage peak (the
    # same process wait4 measures), its wall time; the client's request count for the server's
    full.setdefault("peak_rss_mb", full.get("peak_rss_mb_self"))
    full.setdefault("process_seconds", full["wall_seconds"])
    full.setdefault("cpu_seconds", float("nan"))
    full.setdefault(
        "server",
        {
            "requests": full["requests"],
            "rate_limited": full.get("rate_limited", 0),
            "max_in_window_1s": float("nan"),
            "cpu_seconds": float("nan"),
        },
    )
    floors = orjson.loads(Path(floors_file).read_bytes())["floors"]
    incremental = {"error": note}
    cycle = {"floors": floors, "full": full, "incremental_floors": {}, "incremental": incremental}
    result["scales"][scale] = {
        "limit": "off",
        "rate_limit": 0.0,
        "cycles": [cycle],
        "messages": [],
        "summary": summarize([cycle], []),
        "partial": note,
    }
    result.setdefault("notes", []).append(f"`{scale}`: {note}")
    write(result)
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.xlarge", description=__doc__.splitlines()[0])
    ap.add_argument("--scales", default="small,large,xlarge")
    ap.add_argument(
        "--render-deliveries",
        choices=["auto", "all", "none"],
        default="all",
        help="the simulator serializes every delivery ahead of the requests (as `large` does by default)",
    )
    ap.add_argument("--alone", action=argparse.BooleanOptionalAction, default=True,
                    help="after the scales, sync each timed table alone at large and xlarge (the time-per-row target)")
    ap.add_argument("--alone-only", action="store_true",
                    help="only the alone pass (large, xlarge), added to today's results")
    ap.add_argument("--date", default=None, help="--report-only: the results of this date (default: the latest)")
    ap.add_argument("--report-only", action="store_true", help="rewrite the .md from the latest .json (no runs)")
    ap.add_argument(
        "--full-only",
        nargs=4,
        metavar=("SCALE", "REPORT", "FLOORS", "NOTE"),
        help="record a full sync whose cycle did not finish (worker report, /_admin/floor JSON)",
    )
    args = ap.parse_args(argv)
    if args.full_only:
        return add_full_only(*args.full_only)
    if args.report_only:
        files = sorted(RESULTS.glob(f"{args.date or '*'}-xlarge.json"))
        if not files:
            say("no xlarge results")
            return 1
        write(orjson.loads(files[-1].read_bytes()))
        return 0
    args.scale_list = [s.strip() for s in args.scales.split(",") if s.strip()]
    args.repeat, args.messages_runs, args.tables, args.profile = 1, 0, "all", False
    args.max_limited_minutes = 0.0
    RESULTS.mkdir(parents=True, exist_ok=True)
    write(run_alone_only(args) if args.alone_only else run_scales(args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
