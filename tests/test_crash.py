"""Crashes and reruns: the CLI killed with SIGKILL during extract and during load, then run again.

The simulator runs in the test process; the CLI runs as a subprocess with its own dlt data dir and DuckDB
file. After the rerun the warehouse must equal an uninterrupted run's, row for row (dlt's bookkeeping
columns aside), with no primary key twice in any table.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import duckdb
import pytest

from customerio_source.catalogue import CATALOGUE
from customerio_source.simulator import SimulatorServer, Workspace

from .conftest import API_KEY, Loader
from .fault_injection import FaultConfig, FaultState
from .oracle import expected_keys
from .orchestration.crash import snapshot

# tables with nested tables (the merge path that can copy rows twice), incremental ones, people, metrics
TABLES = ",".join([
    "campaigns", "campaign_actions", "newsletters", "newsletter_test_groups", "segments", "segment_memberships",
    "customers", "customer_attributes", "messages", "activities", "broadcast_metrics",
])
DATASET = "customerio"
PIPELINE = "customerio"


@pytest.fixture(scope="module")
def server() -> Iterator[SimulatorServer]:
    with SimulatorServer(Workspace(scale="tiny", seed=7), api_key=API_KEY) as srv:
        yield srv


@pytest.fixture(autouse=True)
def no_faults(server: SimulatorServer) -> None:
    server.faults = FaultState(FaultConfig())
    server.stats.reset()


def cli_command(server: SimulatorServer, *extra: str) -> list[str]:
    return [sys.executable, "-m", "customerio_source.cli", "--progress-every", "0", "--base-url", server.base_url,
            "--tables", TABLES, "--rate-limit", "0", "--pipeline-name", PIPELINE, "--dataset-name", DATASET, *extra]


def cli_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CUSTOMERIO_", "SOURCES__", "DESTINATION__"))}
    env.update(
        DLT_DATA_DIR=str(tmp_path / "dlt"),
        DESTINATION__DUCKDB__CREDENTIALS=str(tmp_path / "warehouse.duckdb"),
        CUSTOMERIO_APP_API_KEY=API_KEY,
        RUNTIME__DLTHUB_TELEMETRY="false",
    )
    return env


def run_cli(server: SimulatorServer, tmp_path: Path) -> subprocess.CompletedProcess:
    result = subprocess.run(cli_command(server), cwd=tmp_path, env=cli_env(tmp_path), capture_output=True,
                            text=True, timeout=180)
    assert result.returncode == 0, result.stderr
    return result


def kill_when(server: SimulatorServer, tmp_path: Path, moment: Callable[[], bool], argv: list[str] | None = None,
              timeout: float = 90) -> subprocess.Popen:
    """Start the CLI and SIGKILL it as soon as ``moment()`` is true (it must still be running then)."""
    process = subprocess.Popen(argv or cli_command(server), cwd=tmp_path, env=cli_env(tmp_path),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + timeout
    try:
        while not moment():
            assert process.poll() is None, "the run ended before the kill moment: " + process.communicate()[1]
            assert time.monotonic() < deadline, "the kill moment never came"
            time.sleep(0.002)
        process.send_signal(signal.SIGKILL)
    finally:
        process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL
    return process


def pipeline_dir(tmp_path: Path) -> Path:
    return tmp_path / "dlt" / "pipelines" / PIPELINE


def jobs(tmp_path: Path, folder: str) -> list[Path]:
    return list(pipeline_dir(tmp_path).glob(f"load/normalized/*/{folder}/*"))


def duplicate_keys(db_path: Path) -> dict[str, int]:
    found = {}
    with duckdb.connect(str(db_path), read_only=True) as con:
        present = {r[0] for r in con.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = ?", [DATASET]).fetchall()}
        for table, spec in CATALOGUE.items():
            if table not in present:
                continue
            key = ", ".join(spec.primary_key)
            count = con.execute(f"SELECT COUNT(*) FROM (SELECT {key} FROM {DATASET}.{table} GROUP BY {key} "
                                "HAVING COUNT(*) > 1)").fetchone()[0]
            if count:
                found[table] = count
    return found


@pytest.fixture(scope="module")
def uninterrupted(server: SimulatorServer, tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[tuple]]:
    """The warehouse an uninterrupted CLI run produces (the workspace does not change in this module)."""
    tmp_path = tmp_path_factory.mktemp("uninterrupted")
    run_cli(server, tmp_path)
    assert not duplicate_keys(tmp_path / "warehouse.duckdb")
    data = snapshot(tmp_path / "warehouse.duckdb")
    assert {"campaigns", "newsletters", "newsletters__content_ids", "messages", "activities"} <= set(data)
    return data


def assert_rerun_equals(server: SimulatorServer, tmp_path: Path, uninterrupted: dict[str, list[tuple]]) -> str:
    result = run_cli(server, tmp_path)
    db = tmp_path / "warehouse.duckdb"
    assert duplicate_keys(db) == {}
    got = snapshot(db)
    assert set(got) == set(uninterrupted)
    for table, rows in uninterrupted.items():
        assert got[table] == rows, table
    # packages are folders; a SIGKILL can also leave the temp file of an atomic write there (not a package)
    pending = [p.name for p in pipeline_dir(tmp_path).glob("load/normalized/*") if p.is_dir()]
    assert not pending, f"a package is still pending: {pending}"
    return result.stderr


def test_sigkill_during_extract_then_rerun(server, tmp_path, uninterrupted):
    # slow answers stretch the extract over seconds; kill once a third of the requests are in
    server.faults = FaultState(FaultConfig(latency=0.05, latency_rate=1.0))
    kill_when(server, tmp_path, lambda: server.stats.requests >= 25)
    assert not list(pipeline_dir(tmp_path).glob("load/*/*")), "the kill came after the extract"
    server.faults = FaultState(FaultConfig())
    assert_rerun_equals(server, tmp_path, uninterrupted)


def test_sigkill_during_load_then_rerun(server, tmp_path, uninterrupted):
    """Killed with some jobs of the package loaded and others not: the rerun finishes it, then runs."""
    kill_when(server, tmp_path, lambda: len(jobs(tmp_path, "completed_jobs")) >= 3)
    assert jobs(tmp_path, "new_jobs") or jobs(tmp_path, "started_jobs"), "the kill came after the load"
    requests_before = server.stats.requests
    stderr = assert_rerun_equals(server, tmp_path, uninterrupted)
    assert "finishing 1 load package(s) an interrupted run left behind" in stderr
    assert server.stats.requests > requests_before  # and then this run read the workspace itself


DIE_WHEN_A_NEWSLETTERS_JOB_COMPLETES = """
import os, sys
from dlt.common.storages.load_package import PackageStorage
original = PackageStorage.complete_job
def complete_job(self, load_id, file_name):
    if file_name.startswith("newsletters."):
        os._exit(137)  # the copy into the staging dataset is committed; its job is not marked complete
    return original(self, load_id, file_name)
PackageStorage.complete_job = complete_job
from customerio_source.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_crash_between_a_committed_copy_and_its_bookkeeping(server, tmp_path, uninterrupted):
    """A precise, repeatable kill point: the copy of `newsletters` into staging is committed (and other jobs
    are in flight), the process dies before recording it. dlt re-runs the started jobs on resume; the rerun
    must still equal the uninterrupted run, each row once."""
    argv = [sys.executable, "-c", DIE_WHEN_A_NEWSLETTERS_JOB_COMPLETES, *cli_command(server)[3:]]
    process = subprocess.run(argv, cwd=tmp_path, env=cli_env(tmp_path), capture_output=True, text=True, timeout=180)
    assert process.returncode == 137, process.stderr
    assert any(p.name.startswith("newsletters.") for p in jobs(tmp_path, "started_jobs"))
    assert_rerun_equals(server, tmp_path, uninterrupted)


def test_leftover_package_does_not_mark_other_tables_deleted(server, tmp_path):
    """A run of one table left its package unloaded; the next run (two tables) must not treat that package
    as its own: before the fix it loaded only the leftover, read nothing, and marked every segment deleted."""
    from customerio_source import customerio_source

    ws = server.workspace
    loader = Loader(server.base_url, tmp_path)
    loader.run(["campaigns", "segments"])
    pipeline = loader.pipeline()
    pipeline.extract(customerio_source(api_key=API_KEY, base_url=server.base_url, tables=["campaigns"],
                                       rate_limit=0))
    pipeline.normalize()  # ...and the process died before the load
    assert loader.pipeline().has_pending_data
    server.stats.reset()
    loader.run(["campaigns", "segments"])
    assert server.stats.by_operation.get("GET /v1/segments") == 1  # this run read the workspace
    marked = loader.query("SELECT COUNT(*) FROM {ds}.segments WHERE _cio_deleted_at IS NOT NULL")[0][0]
    assert marked == 0
    assert loader.keys("segments") == {(str(k[0]),) for k in expected_keys(ws, "segments")}
    assert not loader.pipeline().has_pending_data


def test_rows_a_resumed_job_copied_twice_are_removed(server, tmp_path):
    """What a SIGKILL between a committed staging copy and its bookkeeping leaves after dlt resumes the
    package (seen in test_sigkill_during_load_then_rerun before the fix): every row of a table with nested
    tables twice, same `_dlt_id`. `remove_repeated_rows` keeps one of each, and only those."""
    from customerio_source.runner import remove_repeated_rows

    loader = Loader(server.base_url, tmp_path)
    loader.run(["campaigns", "segments"])
    pipeline = loader.pipeline()
    with pipeline.sql_client() as client:
        client.execute_sql("INSERT INTO campaigns SELECT * FROM campaigns")
        client.execute_sql("INSERT INTO segments SELECT * FROM segments WHERE id = (SELECT MIN(id) FROM segments)")
    assert loader.duplicates("campaigns") == len(expected_keys(server.workspace, "campaigns"))
    removed = remove_repeated_rows(pipeline)
    assert removed == {"campaigns": len(expected_keys(server.workspace, "campaigns")), "segments": 1}
    assert loader.duplicates("campaigns") == loader.duplicates("segments") == 0
    assert loader.keys("campaigns") == {(str(k[0]),) for k in expected_keys(server.workspace, "campaigns")}
    assert remove_repeated_rows(pipeline) == {}
