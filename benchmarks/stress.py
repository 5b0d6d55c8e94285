"""Memory stress (issue 18): the default load of the `stress` workspace into DuckDB and Postgres.

    python -m benchmarks.stress --destination duckdb|postgres|both [--label before|after]
                                [--connector-commit COMMIT] [--timeout-minutes 45]
    python -m benchmarks.stress --report-only [--note TEXT]     # rewrite the .md from the .json

The `stress` scale (``customerio_source/simulator/scales.py``) has ~5.2M deliveries and ~4.5M segment
memberships (the biggest segment ~1.16M members) among 1.25M people. ``benchmarks/simserver.py`` serves it
in its own process with the rate limit off (built once, used for every destination of one call); then, per
destination, ``benchmarks/worker.py`` runs ``customerio_source.load`` (tables ``all``) in another process
with a fresh working folder, a fresh ``DLT_DATA_DIR`` and a time limit:

* DuckDB: a fresh file ``<tmp>/duckdb/warehouse.duckdb``;
* Postgres: ``DESTINATION__POSTGRES__CREDENTIALS`` from the environment (``source .ci/postgres.sh``), a
  fresh dataset ``cio_stress_<time>`` that is dropped after the run (``--keep`` keeps it).

Reported per run: completed or the error line, wall time, dlt's extract/normalize/load times, per table
the rows, when its last item went through extraction and its load jobs (count, summed run time, when the
last one finished; from ``pipeline.last_trace``), the rows in the destination afterwards, and peak RSS of
the pipeline process (``wait4``) and per dlt step (the worker's sampler), plus the simulator's RSS.

``--connector-commit C`` runs the pipeline on the connector as it was at commit ``C`` (``git archive`` of
``customerio_source`` into the temp folder, with this working tree's ``benchmarks`` package); the simulator
always runs from the working tree. Results are merged by ``--label`` and destination into
``benchmarks/results/<date>-stress.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

from benchmarks.run import (
    API_KEY,
    RESULTS,
    ROOT,
    SERVER_STOP_SECONDS,
    Simulator,
    fmt,
    machine,
    say,
    simulator,
    source_digest,
    source_state,
)

DEFAULT_TIMEOUT_MINUTES = 45.0
POSTGRES_ENV = "DESTINATION__POSTGRES__CREDENTIALS"


# -- the connector under test ----------------------------------------------------------------------------
def snapshot(commit: str, into: Path) -> tuple[Path, str]:
    """A folder with ``customerio_source`` as of ``commit`` (git archive, read-only) and this tree's
    ``benchmarks`` package, to run the worker from; returns it and the full commit id."""
    full = subprocess.run(["git", "rev-parse", "--verify", f"{commit}^{{commit}}"], cwd=ROOT, check=True,
                          capture_output=True, text=True).stdout.strip()
    archive = subprocess.run(["git", "archive", "--format=tar", full, "customerio_source"], cwd=ROOT, check=True,
                             capture_output=True).stdout
    into.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    shutil.copytree(ROOT / "benchmarks", into / "benchmarks", ignore=shutil.ignore_patterns("results", "__pycache__"))
    return into, full


# -- one pipeline run ------------------------------------------------------------------------------------
def proc_rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def run_worker(sim: Simulator, destination: str, workroot: Path, timeout_s: float, code_dir: Path,
               keep: bool) -> dict[str, Any]:
    """One default load (tables all, limit off) into a fresh destination, in a child process with a time limit."""
    workdir = workroot / destination
    data_dir = workroot / f"dlt-data-{destination}"  # a fresh DLT_DATA_DIR per run
    workdir.mkdir(parents=True)
    data_dir.mkdir(parents=True)
    result = workdir / "result.json"
    log = workdir / "worker.log"
    dataset = "customerio" if destination == "duckdb" else f"cio_stress_{time.strftime('%Y%m%d_%H%M%S')}"
    env = dict(os.environ, DLT_DATA_DIR=str(data_dir))
    if destination == "postgres" and not env.get(POSTGRES_ENV):
        return {"error": f"{POSTGRES_ENV} is not set (source .ci/postgres.sh first)", "destination": destination}
    command = [sys.executable, "-m", "benchmarks.worker", "--base-url", sim.api, "--api-key", API_KEY,
               "--rate-limit", "0", "--tables", "all", "--workdir", str(workdir), "--result", str(result),
               "--destination", destination, "--dataset-name", dataset]
    sim_cpu = sim.call("POST", "/_admin/reset")["cpu_seconds"]
    started = time.perf_counter()
    timeline: list[tuple[float, float]] = []  # (seconds since start, RSS MB) every ~5 s
    with log.open("wb") as log_file:
        process = subprocess.Popen(command, cwd=code_dir, env=env, stdout=log_file, stderr=subprocess.STDOUT,
                                   start_new_session=True)
        timed_out = False
        next_sample = 0.0
        while True:
            pid, status, usage = os.wait4(process.pid, os.WNOHANG)
            if pid:
                break
            elapsed = time.perf_counter() - started
            if elapsed >= next_sample:
                rss = proc_rss_mb(process.pid)
                if rss is not None:
                    timeline.append((round(elapsed, 1), round(rss, 1)))
                next_sample = elapsed + 5.0
            if elapsed > timeout_s:
                timed_out = True
                say(f"  {destination}: time limit {timeout_s / 60:.0f} min reached; stopping the worker")
                for sig in (signal.SIGTERM, signal.SIGKILL):
                    try:
                        os.killpg(process.pid, sig)
                    except ProcessLookupError:
                        break
                    deadline = time.perf_counter() + SERVER_STOP_SECONDS
                    while time.perf_counter() < deadline:
                        pid, status, usage = os.wait4(process.pid, os.WNOHANG)
                        if pid:
                            break
                        time.sleep(0.5)
                    if pid:
                        break
                break
            time.sleep(0.5)
    process.returncode = os.waitstatus_to_exitcode(status) if pid else -9
    elapsed = time.perf_counter() - started
    report: dict[str, Any] = orjson.loads(result.read_bytes()) if result.exists() else {}
    if timed_out:
        report["error"] = f"timed out after {timeout_s / 60:.0f} min (worker stopped)"
    elif process.returncode != 0 and "error" not in report:
        report["error"] = f"exit code {process.returncode}"
    report.update({
        "destination": destination, "dataset_name": dataset, "exit_code": process.returncode,
        "timed_out": timed_out, "process_seconds": round(elapsed, 3),
        "peak_rss_mb": round(usage.ru_maxrss / 1024, 1) if pid else max((r for _, r in timeline), default=None),
        "cpu_seconds": round(usage.ru_utime + usage.ru_stime, 3) if pid else None,
        "rss_timeline_mb": timeline, "log_tail": tail(log),
    })
    server = sim.call("GET", "/_admin/stats")
    server.pop("by_operation", None)
    server["cpu_seconds"] = round(server["cpu_seconds"] - sim_cpu, 3)
    report["server"] = server
    try:
        report["destination_facts"] = destination_facts(destination, workdir, dataset, keep)
    except Exception as exc:  # noqa: BLE001 - a report without them is still a report
        report["destination_facts"] = {"error": f"{type(exc).__name__}: {exc}"}
    return report


def tail(path: Path, lines: int = 40) -> list[str]:
    try:
        return path.read_text(errors="replace").splitlines()[-lines:]
    except OSError:
        return []


def destination_facts(destination: str, workdir: Path, dataset: str, keep: bool) -> dict[str, Any]:
    """Rows per table in the destination after the run and its size; drops a Postgres dataset unless ``keep``."""
    if destination == "duckdb":
        import duckdb

        path = workdir / "warehouse.duckdb"
        if not path.exists():
            return {"file_mb": None, "rows": {}}
        with duckdb.connect(str(path), read_only=True) as con:
            tables = [r[0] for r in con.execute("SELECT table_name FROM information_schema.tables WHERE "
                                                "table_schema = ? ORDER BY 1", [dataset]).fetchall()]
            rows = {t: con.execute(f'SELECT count(*) FROM "{dataset}"."{t}"').fetchone()[0] for t in tables}
        return {"file_mb": round(path.stat().st_size / 2**20, 1), "rows": rows}
    import psycopg2

    con = psycopg2.connect(os.environ[POSTGRES_ENV])
    try:
        con.autocommit = True
        with con.cursor() as cur:
            cur.execute("SELECT table_name FROM information_schema.tables WHERE table_schema = %s ORDER BY 1",
                        [dataset])
            tables = [r[0] for r in cur.fetchall()]
            rows = {}
            for table in tables:
                cur.execute(f'SELECT count(*) FROM "{dataset}"."{table}"')
                rows[table] = cur.fetchone()[0]
            cur.execute("SELECT coalesce(sum(pg_total_relation_size(format('%%I.%%I', table_schema, table_name))), "
                        "0) FROM information_schema.tables WHERE table_schema = %s", [dataset])
            size = int(cur.fetchone()[0])  # numeric -> Decimal
            if not keep:
                for schema in (dataset, f"{dataset}_staging"):
                    cur.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        con.close()
    return {"dataset_mb": round(size / 2**20, 1), "rows": rows, "dropped": not keep}


# -- summaries -------------------------------------------------------------------------------------------
def table_rows(report: dict[str, Any]) -> list[dict[str, Any]]:
    """Per table: rows normalized, extraction done (s from start), load jobs, rows in the destination."""
    body = report if "rows_all_tables" in report else report.get("partial") or {}
    normalized = body.get("rows_all_tables", {})
    done = body.get("table_done_seconds", {})
    jobs = (body.get("load_jobs") or {}).get("tables", {})
    in_destination = (report.get("destination_facts") or {}).get("rows", {})
    names = set(normalized) | set(done) | set(jobs) | {t for t in in_destination if not t.startswith("_dlt")}
    out = []
    for name in sorted(names):
        job = jobs.get(name, {})
        out.append({"table": name, "rows": normalized.get(name), "extract_done_seconds": done.get(name),
                    "load_jobs": job.get("jobs"), "load_job_seconds": job.get("job_seconds"),
                    "load_done_seconds": job.get("done_after_load_start_seconds"),
                    "load_states": job.get("states"), "rows_in_destination": in_destination.get(name)})
    out.sort(key=lambda r: -(r["rows"] or r["rows_in_destination"] or 0))
    return out


def status(report: dict[str, Any]) -> str:
    if "error" not in report:
        return "completed"
    return "FAILED: " + first_line(report["error"])


def first_line(text: str, width: int = 300) -> str:
    """The line of an error that says what failed: dlt wraps the cause in lines of context
    (``Pipeline execution failed at `step=load` ...``, ``<class '...'>``); keeps the step and the cause."""
    lines = [line.strip() for line in str(text).splitlines() if line.strip()]
    step = next((m.group(1) for line in lines if (m := re.search(r"step=(\w+)", line))), None)
    job = next((m.group(1) for line in lines if (m := re.search(r"job_id=`?([\w.]+)", line))), None)
    where = [w for w in (step, f"job {job}" if job else None) if w]
    prefix = f"[{', '.join(where)}] " if where else ""
    for line in lines:
        if "Out of Memory" in line:
            return (prefix + line)[:width]
    cls = None
    for line in lines:
        if "Pipeline execution failed at" in line:
            continue
        match = re.fullmatch(r"<class '([^']+)'>", line)
        if match:
            cls = match.group(1)
            continue
        return (prefix + (f"{cls}: {line}" if cls else line))[:width]
    return (prefix + (cls or (lines[0] if lines else "?")))[:width]


def markdown(result: dict[str, Any]) -> str:
    m = result["machine"]
    lines = [f"# Memory stress (issue 18) — {result['date']}", "",
             f"Machine: {m['nproc']} CPUs ({m['cpu']}), {m['memory_gb']} GB; Python {m['python']}, dlt {m['dlt']}, "
             f"DuckDB {m['duckdb']}. The machine is shared: wall times are noisy.", ""]
    ws = result.get("workspace") or {}
    if ws:
        lines += [f"Workspace `{ws.get('scale')}`: {fmt(ws.get('people'))} people, {fmt(ws.get('deliveries'))} "
                  f"deliveries ({fmt(ws.get('messages_rows'))} non-draft = `messages` rows), "
                  f"{fmt(ws.get('segment_memberships'))} segment memberships in {ws.get('segments')} segments "
                  f"(biggest {fmt(ws.get('biggest_segment'))}), {fmt(ws.get('activities_rows'))} activities in the "
                  "API window.", ""]
    lines += ["## Runs", "",
              "| label | destination | result | wall s | extract s | normalize s | load s | peak RSS MB | "
              "RSS by step MB (extract/normalize/load) | requests | rows (all tables) | simulator build s / RSS MB |",
              "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for label, runs in result["runs"].items():
        for destination, run in runs.items():
            r = run["report"]
            body = r if "steps" in r else r.get("partial") or {}
            steps = body.get("steps", {})
            by_step = body.get("peak_rss_mb_by_step", {})
            sim = run.get("simulator", {})
            loads = [k for k in steps if k == "load" or k.startswith("load#")]  # load#2: a load run again
            lines.append(
                f"| {label} | {destination} | {status(r)} | {fmt(r.get('process_seconds'), 1)} | "
                f"{fmt(steps.get('extract'), 1)} | {fmt(steps.get('normalize'), 1)} | "
                f"{' + '.join(fmt(steps[k], 1) for k in loads) or '–'} | {fmt(r.get('peak_rss_mb'))} | "
                + "/".join(fmt(by_step.get(s)) for s in ("extract", "normalize"))
                + "/" + (" + ".join(fmt(by_step.get(k)) for k in loads) or "–")
                + f" | {fmt(body.get('requests'))} | {fmt(sum((body.get('rows_all_tables') or {}).values()))} | "
                f"{fmt(sim.get('build_seconds'), 1)} / {fmt(sim.get('peak_rss_mb'))} |")
    for label, runs in result["runs"].items():
        for destination, run in runs.items():
            r = run["report"]
            lines += ["", f"### {label} — {destination}", "",
                      f"`{run['command']}`; connector: {run['connector']}.", ""]
            if "error" in r:
                lines += [f"Error: `{first_line(r['error'], 600)}`", ""]
                failed = ((r.get("partial") or {}).get("load_jobs") or {}).get("failed_jobs") or []
                for job in failed[:5]:
                    lines.append(f"- failed load job of `{job['table']}`: `{first_line(job['message'], 400)}`")
                if failed:
                    lines.append("")
            facts = r.get("destination_facts") or {}
            size = facts.get("file_mb", facts.get("dataset_mb"))
            lines += [f"Destination size after the run: {fmt(size)} MB; pipeline CPU {fmt(r.get('cpu_seconds'), 0)} s; "
                      f"simulator CPU {fmt((r.get('server') or {}).get('cpu_seconds'), 0)} s, simulator peak RSS "
                      f"{fmt((r.get('server') or {}).get('peak_rss_mb'))} MB.", "",
                      "| table | rows normalized | extraction done s | load jobs | load job s | load done s "
                      "(from load start) | rows in destination |",
                      "|---|---:|---:|---:|---:|---:|---:|"]
            for t in table_rows(r):
                if not (t["rows"] or t["rows_in_destination"] or t["load_jobs"]):
                    continue
                states = t["load_states"] or {}
                bad = {k: v for k, v in states.items() if k != "completed"}
                jobs = f"{fmt(t['load_jobs'])}{' ' + str(bad) if bad else ''}"
                lines.append(f"| {t['table']} | {fmt(t['rows'])} | {fmt(t['extract_done_seconds'], 1)} | "
                             f"{jobs} | {fmt(t['load_job_seconds'], 1)} | "
                             f"{fmt(t['load_done_seconds'], 1)} | {fmt(t['rows_in_destination'])} |")
    lines += ["", "'extraction done' = seconds from the start of the run until the table's last item went through "
              "extraction; 'load job s' = summed run time of the table's load jobs (followup merge jobs included); "
              "'load done' = when its last load job finished, from the start of the first load job.", ""]
    if result.get("notes"):
        lines += ["## Notes", ""] + [f"- {n}" for n in result["notes"]] + [""]
    return "\n".join(lines)


def workspace_facts(sim: Simulator) -> dict[str, Any]:
    """The workspace's sizes and the rows a complete load has per table (the simulator's request floors)."""
    sizes = sim.call("GET", "/_admin/sizes", timeout=1800)
    floors = sim.call("GET", "/_admin/floor", timeout=1800)["floors"]
    rows = {t: f["rows"] for t, f in floors.items()}
    return {**sizes, "segments": len(sizes["segment_members"]), "messages_rows": rows.get("messages"),
            "activities_rows": rows.get("activities"), "floors": floors}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.stress", description=__doc__.splitlines()[0])
    ap.add_argument("--destination", choices=["duckdb", "postgres", "both"], default="both")
    ap.add_argument("--scale", default="stress")
    ap.add_argument("--label", default="after", help="name of this set of runs in the results (before, after)")
    ap.add_argument("--connector-commit", default=None, help="run the pipeline on customerio_source at COMMIT")
    ap.add_argument("--timeout-minutes", type=float, default=DEFAULT_TIMEOUT_MINUTES, help="per pipeline run")
    ap.add_argument("--render-deliveries", choices=["auto", "all", "none"], default="auto")
    ap.add_argument("--keep", action="store_true", help="keep the Postgres dataset")
    ap.add_argument("--no-write", action="store_true", help="print only; do not write benchmarks/results")
    ap.add_argument("--note", action="append", default=[], help="a note for the report (repeatable)")
    ap.add_argument("--report-only", action="store_true",
                    help="no runs: add --note to the results of today and rewrite their .md")
    args = ap.parse_args(argv)
    destinations = ["duckdb", "postgres"] if args.destination == "both" else [args.destination]
    command = "python -m benchmarks.stress " + " ".join(argv if argv is not None else sys.argv[1:])
    date = dt.date.today().isoformat()
    out_json = RESULTS / f"{date}-{'stress' if args.scale == 'stress' else 'stress-' + args.scale}.json"
    result: dict[str, Any] = (orjson.loads(out_json.read_bytes()) if out_json.exists() and not args.no_write
                              else {"date": date, "runs": {}, "notes": []})
    result["notes"] = list(dict.fromkeys([*result.get("notes", []), *args.note]))
    if args.report_only:
        if not result["runs"]:
            say(f"no results in {out_json}")
            return 1
        write(result, out_json)
        print(markdown(result))
        return 0
    result["machine"] = machine()
    with tempfile.TemporaryDirectory(prefix="cio-stress-") as tmp:
        tmp_path = Path(tmp)
        code_dir, connector = ROOT, f"working tree (digest {source_digest()})"
        if args.connector_commit:
            code_dir, full = snapshot(args.connector_commit, tmp_path / "code")
            connector = f"customerio_source at {full[:10]} (git archive), benchmarks from the working tree"
        source = source_state()
        say(f"[stress] building the `{args.scale}` workspace (simulator process)")
        with simulator(args.scale, 0, "all", args.render_deliveries) as sim:
            say(f"[stress] simulator ready: {sim.ready}")
            facts = workspace_facts(sim)
            result["workspace"] = {**{k: v for k, v in facts.items() if k != "floors"}, "simulator_ready": sim.ready,
                                   "simulator_rss_after_floor_mb": sim.call("GET", "/_admin/stats").get("rss_mb")}
            say(f"[stress] workspace: {result['workspace']}")
            runs = result["runs"].setdefault(args.label, {})
            for destination in destinations:
                say(f"[stress/{args.label}] {destination}: full load, tables all, limit off "
                    f"(time limit {args.timeout_minutes:.0f} min)")
                report = run_worker(sim, destination, tmp_path / args.label, args.timeout_minutes * 60, code_dir,
                                    args.keep)
                say(f"  {destination}: {status(report)}; {fmt(report.get('process_seconds'), 1)} s, peak RSS "
                    f"{fmt(report.get('peak_rss_mb'))} MB")
                runs[destination] = {"command": command, "connector": connector, "source": source,
                                     "simulator": sim.ready, "report": report, "floors": facts["floors"]}
                if not args.no_write:
                    write(result, out_json)
    text = markdown(result)
    print(text)
    if not args.no_write:
        write(result, out_json)
    return 0


def write(result: dict[str, Any], out_json: Path) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    out_json.write_bytes(orjson.dumps(result, default=str, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS))
    out_json.with_suffix(".md").write_text(markdown(result))


if __name__ == "__main__":
    raise SystemExit(main())
