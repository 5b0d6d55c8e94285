"""The Dagster definitions (pipelines/dagster_definitions.py) materialized against the simulated workspace.

Runs in its own virtualenv with dagster and dagster-dlt (see .ci/orchestration.sh), never in the main run:

    .venv-dagster/bin/python -m pytest tests/orchestration/dagster_check.py
"""

from __future__ import annotations

import importlib.util
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

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
    path = ROOT / "pipelines" / "dagster_definitions.py"
    spec = importlib.util.spec_from_file_location("customerio_dagster_definitions", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


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
    return {tuple(str(v) for v in key) for key in ws.expected_keys(table, **kwargs)}


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
