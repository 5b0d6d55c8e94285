"""The Airflow DAG (pipelines/airflow_dag.py) run with `dag.test()` against the simulated workspace.

Runs in its own virtualenv with apache-airflow 2.x (see .ci/orchestration.sh), never in the main test run:

    .venv-airflow/bin/python -m pytest tests/orchestration/airflow_check.py
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

import crash  # tests/orchestration/crash.py (pytest puts this folder on sys.path)
import pytest
import requests

from tests.oracle import expected_keys

ROOT = Path(__file__).resolve().parents[2]
API_KEY = "airflow-check-key"

# Airflow reads its configuration when first imported: a throw-away home, SQLite metadata DB, no examples
_HOME = tempfile.mkdtemp(prefix="cio-airflow-")
_DAGS = os.path.join(_HOME, "dags")
os.makedirs(_DAGS, exist_ok=True)
os.environ.update(
    AIRFLOW_HOME=_HOME,
    AIRFLOW__CORE__DAGS_FOLDER=_DAGS,
    AIRFLOW__CORE__LOAD_EXAMPLES="False",
    AIRFLOW__CORE__UNIT_TEST_MODE="False",
    AIRFLOW__LOGGING__LOGGING_LEVEL="WARNING",
    RUNTIME__LOG_LEVEL="WARNING",
)

duckdb = pytest.importorskip("duckdb")
pytest.importorskip("airflow", reason="apache-airflow is not installed (run .ci/orchestration.sh)")


def _load_dag_module() -> ModuleType:
    return crash.load_file("customerio_airflow_dag", ROOT / "pipelines" / "airflow_dag.py")


@pytest.fixture(scope="module")
def airflow_db() -> None:
    airflow = Path(sys.executable).with_name("airflow")
    done = subprocess.run([str(airflow), "db", "migrate"], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]


@pytest.fixture(scope="module")
def server() -> Iterator[Any]:
    from customerio_source.simulator import SimulatorServer, Workspace

    # anchored in the past: advance() moves `now` to the clock, never past it
    workspace = Workspace(scale="tiny", seed=7, anchor=int(time.time()) // 60 * 60 - 600)
    with SimulatorServer(workspace, api_key=API_KEY, rate_limit=None) as srv:
        srv.workspace = workspace
        yield srv


def _keys(con: Any, table: str, columns: str, live_only: bool = False) -> set[tuple[str, ...]]:
    where = " WHERE _cio_deleted_at IS NULL" if live_only else ""
    rows = con.execute(f"SELECT {columns} FROM customerio.{table}{where}").fetchall()
    return {tuple(str(v) for v in row) for row in rows}


def _expected(ws: Any, table: str, **kwargs: Any) -> set[tuple[str, ...]]:
    return {tuple(str(v) for v in key) for key in expected_keys(ws, table, **kwargs)}


def test_hourly_dag_loads_the_workspace(airflow_db: None, server: Any, tmp_path: Path, monkeypatch: Any) -> None:
    import pendulum
    from airflow.utils.state import DagRunState

    ws = server.workspace
    database = tmp_path / "warehouse.duckdb"  # a file named like the dataset makes DuckDB names ambiguous
    monkeypatch.delenv("DESTINATION__DUCKDB__CREDENTIALS", raising=False)
    monkeypatch.setenv("CUSTOMERIO_DUCKDB_PATH", str(database))  # the DAG's default DuckDB file, moved
    # settings through Airflow Variables (AIRFLOW_VAR_*), as a deployment would set them
    monkeypatch.setenv("AIRFLOW_VAR_CUSTOMERIO_BASE_URL", server.base_url)
    monkeypatch.setenv("AIRFLOW_VAR_CUSTOMERIO_APP_API_KEY", API_KEY)

    module = _load_dag_module()
    tables = [
        "campaigns", "campaign_actions", "segments", "segment_memberships", "customers", "customer_attributes",
        "messages", "activities", "campaign_metrics",
    ]
    lookback = timedelta(days=30)
    dag = module.build_dag(
        "customerio_check", destination="duckdb", tables=tables, lookback=lookback,
        source_options={"rate_limit": 0}, default_args={"retries": 0},
    )
    assert [t.task_id for t in dag.tasks] == [
        "customerio.lists", "customerio.people", "customerio.deliveries", "customerio.activities",
        "customerio.metrics",
    ]
    assert dag.schedule_interval == "@hourly" or str(dag.timetable.summary) == "@hourly"

    # a manual run at the top of an hour loads the hour before it: pick the hour of the newest activity
    newest = requests.get(
        f"{server.base_url}/v1/activities", params={"limit": 1}, headers={"Authorization": f"Bearer {API_KEY}"},
        timeout=10,
    ).json()["activities"][0]["timestamp"]
    hour = pendulum.from_timestamp(newest, tz="UTC").start_of("hour").add(hours=1)
    run = dag.test(execution_date=hour)
    states = {ti.task_id: ti.state for ti in run.get_task_instances()}
    assert run.state == DagRunState.SUCCESS, states
    start, end = run.data_interval_start, run.data_interval_end
    assert end - start == timedelta(hours=1) and start <= pendulum.from_timestamp(newest) < end

    with duckdb.connect(str(database), read_only=True) as con:
        for table in ("campaigns", "campaign_actions", "segments", "customers", "customer_attributes"):
            column = "cio_id" if table.startswith("customer") else "id"
            assert _keys(con, table, column) == _expected(ws, table), table
        assert _keys(con, "segment_memberships", "segment_id, cio_id") == _expected(ws, "segment_memberships")
        # deliveries: created in [start - lookback, end)
        since = int((start - lookback).timestamp())
        expected = _expected(ws, "messages", since=since) - _expected(ws, "messages", since=int(end.timestamp()))
        assert _keys(con, "messages", "id") == expected
        # activities: exactly the data interval
        bounds = con.execute("SELECT MIN(timestamp), MAX(timestamp), COUNT(*) FROM customerio.activities").fetchone()
        assert bounds is not None and bounds[2] >= 1
        assert start <= bounds[0] and bounds[1] < end
        assert _keys(con, "activities", "id") <= _expected(ws, "activities")
        assert con.execute("SELECT COUNT(*) FROM customerio.campaign_metrics").fetchone()[0] > 0
        duplicates = con.execute(
            "SELECT COUNT(*) FROM (SELECT id FROM customerio.messages GROUP BY id HAVING COUNT(*) > 1)"
        ).fetchone()[0]
        assert duplicates == 0

    # the next hour, after a change step: full-read groups mark what vanished
    people_before = _expected(ws, "customers")
    ws.advance()
    gone = people_before - _expected(ws, "customers")
    run = dag.test(execution_date=hour.add(hours=1))
    states = {ti.task_id: ti.state for ti in run.get_task_instances()}
    assert run.state == DagRunState.SUCCESS, states
    with duckdb.connect(str(database), read_only=True) as con:
        assert _keys(con, "customers", "cio_id", live_only=True) == _expected(ws, "customers")
        assert _keys(con, "campaigns", "id", live_only=True) == _expected(ws, "campaigns")
        assert gone, "the change step deleted nobody"
        marked = _keys(con, "customers", "cio_id") - _keys(con, "customers", "cio_id", live_only=True)
        assert gone <= marked


RUN_DAG = """
import pendulum
from datetime import timedelta
tables = ["campaigns", "campaign_actions", "segments", "segment_memberships", "customers", "customer_attributes"]
dag = module.build_dag(sys.argv[3], destination="duckdb", tables=tables, lookback=timedelta(days=30),
                       source_options={"rate_limit": 0}, default_args={"retries": 0})
run = dag.test(execution_date=pendulum.parse(sys.argv[2]))
sys.exit(0 if str(run.state) in ("success", "DagRunState.SUCCESS") else 1)
"""


def _run_dag(server: Any, work: Path, hour: Any, die_on: str | None = None) -> subprocess.CompletedProcess:
    """The DAG run for one hour in a child process, loading `work`/warehouse.duckdb (Airflow's home is shared)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CUSTOMERIO_", "DESTINATION__", "DLT_"))}
    env.update(
        AIRFLOW_VAR_CUSTOMERIO_BASE_URL=server.base_url, AIRFLOW_VAR_CUSTOMERIO_APP_API_KEY=API_KEY,
        CUSTOMERIO_DUCKDB_PATH=str(work / "warehouse.duckdb"), DLT_DATA_DIR=str(work / "dlt"),
        RUNTIME__DLTHUB_TELEMETRY="false",
    )
    if die_on:
        env["CIO_DIE_WHEN_JOB_COMPLETES"] = die_on
    script = crash.DIE_WHEN_A_JOB_COMPLETES + crash.load_module_from_argv("customerio_airflow_dag") + RUN_DAG
    path = str(ROOT / "pipelines" / "airflow_dag.py")
    dag_id = f"customerio_crash_{work.name}"  # one DAG per warehouse; each run a new hour (no run is replaced)
    return subprocess.run([sys.executable, "-c", script, path, hour.isoformat(), dag_id], env=env, cwd=work,
                          capture_output=True, text=True, timeout=600)


def test_a_dag_run_killed_during_load_is_made_whole_by_the_next(airflow_db: None, tmp_path: Path) -> None:
    """Killed right after the `customers` job committed (people task): the next DAG run leaves the warehouse
    equal to an uninterrupted run's; deletes of people are then followed in `customer_attributes`. The
    tables are the groups read in full (lists, people), so runs of different hours load the same rows."""
    import pendulum

    from customerio_source.simulator import SimulatorServer, Workspace

    workspace = Workspace(scale="tiny", seed=11, anchor=int(time.time()) // 60 * 60 - 600)
    with SimulatorServer(workspace, api_key=API_KEY, rate_limit=None) as server:
        hour = pendulum.from_timestamp(workspace.now, tz="UTC").start_of("hour")
        clean, killed = tmp_path / "clean", tmp_path / "killed"
        clean.mkdir()
        killed.mkdir()
        done = _run_dag(server, clean, hour)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

        died = _run_dag(server, killed, hour, die_on="customers")
        assert died.returncode == 137, died.stdout[-3000:] + died.stderr[-3000:]
        before = server.stats.requests
        again = _run_dag(server, killed, hour.add(hours=1))
        assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
        assert server.stats.requests > before
        want = crash.snapshot(clean / "warehouse.duckdb")
        crash.assert_same_warehouse(crash.snapshot(killed / "warehouse.duckdb"), want)
        with duckdb.connect(str(killed / "warehouse.duckdb"), read_only=True) as con:
            marked = con.execute("SELECT COUNT(*) FROM customerio.customers WHERE _cio_deleted_at IS NOT NULL")
            assert marked.fetchone()[0] == 0  # nothing falsely marked deleted

        people = _expected(workspace, "customers")
        workspace.advance()
        gone = people - _expected(workspace, "customers")
        assert gone, "the change step deleted nobody"
        after = _run_dag(server, killed, hour.add(hours=2))
        assert after.returncode == 0, after.stdout[-3000:] + after.stderr[-3000:]
        with duckdb.connect(str(killed / "warehouse.duckdb"), read_only=True) as con:
            for table in ("customers", "customer_attributes"):
                rows = con.execute(f"SELECT cio_id FROM customerio.{table} WHERE _cio_deleted_at IS NOT NULL")
                assert {(str(r[0]),) for r in rows.fetchall()} == gone, table
