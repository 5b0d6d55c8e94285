"""The Dagster definitions (pipelines/dagster_definitions.py) materialized against the simulated workspace.

Runs in its own virtualenv with dagster and dagster-dlt (see .ci/orchestration.sh), never in the main run:

    .venv-dagster/bin/python -m pytest tests/orchestration/dagster_check.py
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import ModuleType
from typing import Any

import crash  # tests/orchestration/crash.py (pytest puts this folder on sys.path)
import pytest

from tests.oracle import expected_keys

ROOT = Path(__file__).resolve().parents[2]
API_KEY = "dagster-check-key"

_WORK = tempfile.mkdtemp(prefix="cio-dagster-")
os.environ.update(
    DAGSTER_HOME=_WORK,
    DLT_DATA_DIR=os.path.join(_WORK, "dlt"),  # pipelines' local state
    DESTINATION__DUCKDB__CREDENTIALS=os.path.join(_WORK, "warehouse.duckdb"),
    CUSTOMERIO_DESTINATION="duckdb",
    RUNTIME__LOG_LEVEL="WARNING",
)

duckdb = pytest.importorskip("duckdb")
pytest.importorskip("dagster_dlt", reason="dagster-dlt is not installed (run .ci/orchestration.sh)")


def _load_definitions() -> ModuleType:
    return crash.load_file("customerio_dagster_definitions", ROOT / "pipelines" / "dagster_definitions.py")


@pytest.fixture(scope="module")
def server() -> Iterator[Any]:
    from customerio_source.simulator import SimulatorServer, Workspace

    workspace = Workspace(scale="tiny", seed=7, anchor=int(time.time()) // 60 * 60 - 600)
    with SimulatorServer(workspace, api_key=API_KEY, rate_limit=None) as srv:
        srv.workspace = workspace
        yield srv


def _keys(con: Any, table: str, columns: str) -> set[tuple[str, ...]]:
    return {tuple(str(v) for v in row) for row in con.execute(f"SELECT {columns} FROM customerio.{table}").fetchall()}


def _expected(ws: Any, table: str, **kwargs: Any) -> set[tuple[str, ...]]:
    return {tuple(str(v) for v in key) for key in expected_keys(ws, table, **kwargs)}


def test_definitions_load() -> None:
    module = _load_definitions()
    defs = module.defs
    assert defs.resolve_job_def("customerio_events_job") is not None
    assert defs.resolve_job_def("customerio_snapshot_job") is not None
    keys = {key.to_user_string() for key in module.customerio_event_assets.keys}
    assert keys == {"dlt_customerio_messages", "dlt_customerio_activities"}
    assert "dlt_customerio_campaigns" in {key.to_user_string() for key in module.customerio_snapshot_assets.keys}


def test_materialize_one_day_and_the_snapshot(server: Any) -> None:
    from dagster import materialize

    module = _load_definitions()
    ws = server.workspace
    settings = module.CustomerIOSettings(
        api_key=API_KEY, base_url=server.base_url, rate_limit=0.0, deliveries_lookback_hours=24.0
    )
    resources = {"customerio": settings}

    # yesterday (UTC) relative to the workspace's now: a complete day with deliveries and activities
    day = datetime.fromtimestamp(ws.now, timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
    day -= timedelta(days=1)
    result = materialize([module.customerio_event_assets], resources=resources, partition_key=day.strftime("%Y-%m-%d"))
    assert result.success
    materialized = {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}
    assert materialized == {"dlt_customerio_messages", "dlt_customerio_activities"}

    start, end = day, day + timedelta(days=1)
    with duckdb.connect(os.environ["DESTINATION__DUCKDB__CREDENTIALS"], read_only=True) as con:
        # deliveries created in [start - 24 h, end)
        since, until = int((start - timedelta(hours=24)).timestamp()), int(end.timestamp())
        expected = _expected(ws, "messages", since=since) - _expected(ws, "messages", since=until)
        assert _keys(con, "messages", "id") == expected
        # activities with a timestamp inside the partition
        rows = con.execute("SELECT MIN(timestamp), MAX(timestamp), COUNT(*) FROM customerio.activities").fetchone()
        assert rows is not None and rows[2] > 0
        assert start <= rows[0] and rows[1] < end
        assert _keys(con, "activities", "id") <= _expected(ws, "activities")

    result = materialize([module.customerio_snapshot_assets], resources=resources)
    assert result.success
    with duckdb.connect(os.environ["DESTINATION__DUCKDB__CREDENTIALS"], read_only=True) as con:
        for table in ("campaigns", "campaign_actions", "segments", "newsletters"):
            assert _keys(con, table, "id") == _expected(ws, table), table
        assert _keys(con, "customers", "cio_id") == _expected(ws, "customers")
        assert con.execute("SELECT COUNT(*) FROM customerio.campaign_metrics").fetchone()[0] > 0
        # both pipelines load one dataset, each with its own state
        state = con.execute("SELECT DISTINCT pipeline_name FROM customerio._dlt_pipeline_state").fetchall()
        names = {row[0] for row in state}
        assert names == {"customerio_events", "customerio_snapshot"}


MATERIALIZE_SNAPSHOT = """
from dagster import materialize
settings = module.CustomerIOSettings(api_key=sys.argv[3], base_url=sys.argv[2], rate_limit=0.0)
result = materialize([module.customerio_snapshot_assets], resources={"customerio": settings})
sys.exit(0 if result.success else 1)
"""


def _materialize_snapshot(server: Any, work: Path, die_on: str | None = None) -> subprocess.CompletedProcess:
    """The snapshot asset materialized in a child process with its own Dagster home, dlt folder and DuckDB."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CUSTOMERIO_", "DESTINATION__", "DLT_"))}
    env.update(
        DAGSTER_HOME=str(work), DLT_DATA_DIR=str(work / "dlt"), CUSTOMERIO_DESTINATION="duckdb",
        DESTINATION__DUCKDB__CREDENTIALS=str(work / "warehouse.duckdb"), RUNTIME__DLTHUB_TELEMETRY="false",
    )
    if die_on:
        env["CIO_DIE_WHEN_JOB_COMPLETES"] = die_on
    prelude = crash.DIE_WHEN_A_JOB_COMPLETES + crash.load_module_from_argv("customerio_dagster_definitions")
    script = prelude + MATERIALIZE_SNAPSHOT
    path = str(ROOT / "pipelines" / "dagster_definitions.py")
    return subprocess.run([sys.executable, "-c", script, path, server.base_url, API_KEY], env=env, cwd=work,
                          capture_output=True, text=True, timeout=600)


def test_a_materialization_killed_during_load_is_finished_by_the_next(tmp_path: Path) -> None:
    """Killed right after the `customers` job committed: the next materialization loads the leftover package,
    then reads the workspace itself; the warehouse equals an uninterrupted one's, and later deletes of people
    are marked in `customers` and followed in `customer_attributes`."""
    from customerio_source.simulator import SimulatorServer, Workspace

    workspace = Workspace(scale="tiny", seed=11, anchor=int(time.time()) // 60 * 60 - 600)
    with SimulatorServer(workspace, api_key=API_KEY, rate_limit=None) as server:
        clean, killed = tmp_path / "clean", tmp_path / "killed"
        clean.mkdir()
        killed.mkdir()
        done = _materialize_snapshot(server, clean)
        assert done.returncode == 0, done.stderr[-3000:]

        died = _materialize_snapshot(server, killed, die_on="customers")
        assert died.returncode == 137, died.stderr[-3000:]
        before = server.stats.requests
        again = _materialize_snapshot(server, killed)
        assert again.returncode == 0, again.stderr[-3000:]
        assert server.stats.requests > before  # it extracted the workspace, not only the leftover package
        want = crash.snapshot(clean / "warehouse.duckdb")
        crash.assert_same_warehouse(crash.snapshot(killed / "warehouse.duckdb"), want)
        with duckdb.connect(str(killed / "warehouse.duckdb"), read_only=True) as con:
            marked = con.execute("SELECT COUNT(*) FROM customerio.customers WHERE _cio_deleted_at IS NOT NULL")
            assert marked.fetchone()[0] == 0  # nothing falsely marked deleted

        people = _expected(workspace, "customers")
        workspace.advance()
        gone = people - _expected(workspace, "customers")
        assert gone, "the change step deleted nobody"
        after = _materialize_snapshot(server, killed)
        assert after.returncode == 0, after.stderr[-3000:]
        with duckdb.connect(str(killed / "warehouse.duckdb"), read_only=True) as con:
            for table in ("customers", "customer_attributes"):
                rows = con.execute(f"SELECT cio_id FROM customerio.{table} WHERE _cio_deleted_at IS NOT NULL")
                assert {(str(r[0]),) for r in rows.fetchall()} == gone, table
