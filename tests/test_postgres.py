"""Postgres destination, end to end through the CLI: the simulated workspace (tiny) into a real Postgres.

Needs `DESTINATION__POSTGRES__CREDENTIALS` (`source .ci/postgres.sh` starts Postgres 15 and exports it).
Without a reachable server the tests skip, except under CI (`CI=true`), where they fail.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from customerio_source.catalogue import CATALOGUE
from customerio_source.cli import main as cli_main
from customerio_source.source import API_KEY_ENV

from .conftest import norm_keys
from .oracle import deleted_keys, expected_keys

pytestmark = [pytest.mark.postgres]

psycopg2 = pytest.importorskip("psycopg2", reason="psycopg2 is not installed (pip install -e '.[dev]')")

CREDENTIALS_ENV = "DESTINATION__POSTGRES__CREDENTIALS"
API_KEY = "pg-test-key-3f9a"
TABLES = [
    "campaigns", "campaign_actions", "broadcasts", "newsletters", "segments", "segment_memberships",
    "messages", "activities", "customers", "customer_attributes", "campaign_metrics",
]
KEYED_TABLES = [t for t in TABLES if not t.endswith("_metrics")]


def _unavailable(reason: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"Postgres is required under CI but {reason}. `source .ci/postgres.sh` starts it.", pytrace=False)
    pytest.skip(f"Postgres not available: {reason} (run `source .ci/postgres.sh` to start it)")


@pytest.fixture(scope="module")
def pg_dsn() -> str:
    return postgres_dsn()


def postgres_dsn() -> str:
    """The test Postgres's DSN, once it answers; else a skip (a failure under CI) saying how to start it."""
    dsn = os.environ.get(CREDENTIALS_ENV)
    if not dsn:
        _unavailable(f"{CREDENTIALS_ENV} is not set")
    try:
        psycopg2.connect(dsn, connect_timeout=5).close()
    except psycopg2.OperationalError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        _unavailable(f"cannot connect with {CREDENTIALS_ENV} ({first})")
    return dsn  # type: ignore[return-value]


class PgDataset:
    """One unique dataset (schema) and pipeline, loaded through the CLI and read back with psycopg2."""

    def __init__(self, dsn: str, base_url: str) -> None:
        self.dsn = dsn
        self.base_url = base_url
        suffix = uuid.uuid4().hex[:10]
        self.dataset = f"cio_pg_{suffix}"
        self.pipeline_name = f"cio_pg_{suffix}"

    def load(self, tables: list[str]) -> None:
        argv = [
            "--destination", "postgres",
            "--base-url", self.base_url,
            "--tables", ",".join(tables),
            "--dataset-name", self.dataset,
            "--pipeline-name", self.pipeline_name,
            "--rate-limit", "0",
            "--progress-every", "0",
        ]
        assert cli_main(argv) == 0, f"customerio-pipeline {' '.join(argv)} failed"

    def query(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        with psycopg2.connect(self.dsn) as con, con.cursor() as cur:
            cur.execute(sql.replace("{ds}", f'"{self.dataset}"'), args)
            return cur.fetchall()

    def count(self, table: str) -> int:
        return int(self.query(f"SELECT COUNT(*) FROM {{ds}}.{table}")[0][0])

    def has_column(self, table: str, column: str) -> bool:
        return self.column_type(table, column) != ""

    def column_type(self, table: str, column: str) -> str:
        rows = self.query(
            "SELECT data_type FROM information_schema.columns "
            "WHERE table_schema = %s AND table_name = %s AND column_name = %s",
            self.dataset, table, column,
        )
        return str(rows[0][0]) if rows else ""

    def keys(self, table: str) -> set[tuple[Any, ...]]:
        key = ", ".join(CATALOGUE[table].primary_key)
        where = " WHERE _cio_deleted_at IS NULL" if self.has_column(table, "_cio_deleted_at") else ""
        return norm_keys(set(self.query(f"SELECT {key} FROM {{ds}}.{table}{where}")))

    def duplicates(self, table: str) -> int:
        key = ", ".join(CATALOGUE[table].primary_key)
        sql = f"SELECT COUNT(*) FROM (SELECT {key} FROM {{ds}}.{table} GROUP BY {key} HAVING COUNT(*) > 1) d"
        return int(self.query(sql)[0][0])

    def drop(self) -> None:
        with psycopg2.connect(self.dsn) as con, con.cursor() as cur:
            cur.execute(f'DROP SCHEMA IF EXISTS "{self.dataset}" CASCADE')
            cur.execute(f'DROP SCHEMA IF EXISTS "{self.dataset}_staging" CASCADE')


@pytest.fixture
def workspace_server() -> Iterator[Any]:
    """A fresh tiny workspace per test (tests advance it), served without a rate limit.

    Anchored five minutes in the past: `advance()` moves `now` to max(now + 60 s, the clock), and rows
    stamped after the real clock would be outside any load's [start, now) window.
    """
    from customerio_source.simulator import SimulatorServer, Workspace

    anchor = int(time.time()) // 60 * 60 - 300
    workspace = Workspace(scale="tiny", seed=7, anchor=anchor)
    with SimulatorServer(workspace, api_key=API_KEY, rate_limit=None) as server:
        yield server, workspace


@pytest.fixture
def pg(pg_dsn: str, workspace_server: Any, tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[PgDataset]:
    server, _ = workspace_server
    monkeypatch.setenv(API_KEY_ENV, API_KEY)
    monkeypatch.setenv("DLT_DATA_DIR", str(tmp_path / "dlt"))  # the pipeline's local state stays in tmp_path
    dataset = PgDataset(pg_dsn, server.base_url)
    yield dataset
    dataset.drop()


def test_load_into_postgres_matches_the_workspace(pg: PgDataset, workspace_server: Any) -> None:
    _, ws = workspace_server
    pg.load(TABLES)
    for table in KEYED_TABLES:
        expected = norm_keys(expected_keys(ws, table))
        assert pg.count(table) == len(expected), table
        assert pg.keys(table) == expected, table
        assert pg.duplicates(table) == 0, table
    assert pg.count("campaign_metrics") > 0
    assert pg.duplicates("campaign_metrics") == 0


def test_timestamps_are_timestamptz(pg: PgDataset) -> None:
    pg.load(["campaigns", "messages", "activities", "campaign_metrics"])
    tz = "timestamp with time zone"
    assert pg.column_type("campaigns", "created") == tz
    assert pg.column_type("campaigns", "updated") == tz
    assert pg.column_type("messages", "created") == tz
    assert pg.column_type("messages", "metrics__sent") == tz
    assert pg.column_type("activities", "timestamp") == tz
    assert pg.column_type("campaign_metrics", "period_start") == tz
    assert pg.column_type("campaigns", "id") == "bigint"
    # a delivery's metric timestamps never precede its creation
    assert pg.query("SELECT COUNT(*) FROM {ds}.messages WHERE metrics__sent < created")[0][0] == 0


def test_incremental_run_merges_without_duplicates(pg: PgDataset, workspace_server: Any) -> None:
    _, ws = workspace_server
    pg.load(TABLES)
    before = {table: pg.count(table) for table in KEYED_TABLES}
    ws.advance()  # updates, inserts, deletes, late metrics
    pg.load(TABLES)  # incremental: state restored from the pipeline, deliveries re-read with a lookback
    for table in KEYED_TABLES:
        assert pg.duplicates(table) == 0, table
        expected = norm_keys(expected_keys(ws, table))
        if CATALOGUE[table].full_reread:  # re-read in full: live rows are exactly the workspace's
            assert pg.keys(table) == expected, table
        else:  # history accumulates (a deleted person's deliveries and activities stay)
            assert expected <= pg.keys(table), table
    assert pg.duplicates("campaign_metrics") == 0
    assert pg.count("messages") > before["messages"], "the new deliveries were not merged"
    # people deleted by the change step are kept, marked with _cio_deleted_at
    deleted = norm_keys(deleted_keys(ws, "customers"))
    if deleted:
        marked = norm_keys(set(pg.query("SELECT cio_id FROM {ds}.customers WHERE _cio_deleted_at IS NOT NULL")))
        assert deleted <= marked
