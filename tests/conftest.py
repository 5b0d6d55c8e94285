"""Shared fixtures: the simulated workspace over HTTP and pipelines into temporary DuckDB files."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from typing import Any

import dlt
import duckdb
import pytest

from customerio_source import customerio_source, load
from customerio_source.catalogue import CATALOGUE
from customerio_source.client import RequestStats

from .send_fixtures import send_server  # noqa: F401 - the send tests' simulated workspace

API_KEY = "sim-test-key-5b7e1c"

# dlt reads .dlt/ from the working directory; keep the project's config out of the tests' way
os.environ.setdefault("RUNTIME__LOG_LEVEL", "WARNING")
os.environ.setdefault("RUNTIME__DLTHUB_TELEMETRY", "false")  # tests never reach out to the internet


def served_tiny_workspace(seed: int) -> Iterator[Any]:
    """A tiny workspace served without a rate limit; the server carries it as ``server.workspace``."""
    from customerio_source.simulator import SimulatorServer, Workspace

    workspace = Workspace(scale="tiny", seed=seed)
    with SimulatorServer(workspace, api_key=API_KEY) as server:
        server.workspace = workspace
        yield server


@pytest.fixture(scope="module")
def tiny_server() -> Iterator[Any]:
    """A fresh tiny workspace per test module, served without a rate limit."""
    yield from served_tiny_workspace(7)


class Loader:
    """Runs the source against a server into one DuckDB file, and reads the results back."""

    def __init__(self, base_url: str, tmp_path: Any) -> None:
        self.base_url = base_url
        self.db_path = str(tmp_path / "warehouse.duckdb")
        self.name = f"cio_test_{uuid.uuid4().hex[:8]}"
        self.pipelines_dir = str(tmp_path / "pipelines")
        self.dataset = "customerio"

    def pipeline(self) -> dlt.Pipeline:
        return dlt.pipeline(
            pipeline_name=self.name,
            pipelines_dir=self.pipelines_dir,
            destination=dlt.destinations.duckdb(self.db_path),
            dataset_name=self.dataset,
        )

    def run(self, tables: str | list[str] = "all", **kwargs: Any) -> Any:
        kwargs.setdefault("rate_limit", 0)
        self.stats = kwargs.setdefault("request_stats", RequestStats())
        source = customerio_source(api_key=API_KEY, base_url=self.base_url, tables=tables, **kwargs)
        self.source = source
        return load(self.pipeline(), source)

    def query(self, sql: str) -> list[tuple]:
        with duckdb.connect(self.db_path, read_only=True) as con:
            return con.execute(sql.replace("{ds}", self.dataset)).fetchall()

    def keys(self, table: str, live_only: bool = True) -> set[tuple]:
        key = CATALOGUE[table].primary_key
        where = " WHERE _cio_deleted_at IS NULL" if live_only and self.has_column(table, "_cio_deleted_at") else ""
        rows = self.query(f"SELECT {', '.join(key)} FROM {{ds}}.{table}{where}")
        return {tuple(_norm(v) for v in row) for row in rows}

    def count(self, table: str) -> int:
        return self.query(f"SELECT COUNT(*) FROM {{ds}}.{table}")[0][0]

    def duplicates(self, table: str) -> int:
        key = ", ".join(CATALOGUE[table].primary_key)
        return self.query(
            f"SELECT COUNT(*) FROM (SELECT {key} FROM {{ds}}.{table} GROUP BY {key} HAVING COUNT(*) > 1)"
        )[0][0]

    def has_column(self, table: str, column: str) -> bool:
        return bool(
            self.query(
                f"SELECT 1 FROM information_schema.columns WHERE table_schema = '{self.dataset}' "
                f"AND table_name = '{table}' AND column_name = '{column}'"
            )
        )

    def column_type(self, table: str, column: str) -> str:
        rows = self.query(
            f"SELECT data_type FROM information_schema.columns WHERE table_schema = '{self.dataset}' "
            f"AND table_name = '{table}' AND column_name = '{column}'"
        )
        return rows[0][0] if rows else ""

    def tables(self) -> set[str]:
        return {
            r[0]
            for r in self.query(
                f"SELECT table_name FROM information_schema.tables WHERE table_schema = '{self.dataset}'"
            )
        }


def _norm(value: Any) -> Any:
    """Compare keys by value, whatever their column type (ids may load as text or bigint)."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value) if value is not None else None


def norm_keys(keys: set[tuple]) -> set[tuple]:
    return {tuple(_norm(v) for v in key) for key in keys}


@pytest.fixture
def changing_server() -> Iterator[Any]:
    """A tiny workspace of its own (seed 11) the test may change (``server.workspace.advance()``)."""
    yield from served_tiny_workspace(11)


@pytest.fixture
def loader(tiny_server: Any, tmp_path: Any) -> Loader:
    return Loader(tiny_server.base_url, tmp_path)


def run_cli(args: list[str], tmp_path: Any, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run the CLI in a child process with no Customer.io or dlt source/destination settings inherited."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("CUSTOMERIO_", "SOURCES__", "DESTINATION__"))}
    full_env["DLT_DATA_DIR"] = str(tmp_path / "dlt")
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "customerio_source.cli", "--progress-every", "0", *args],
        cwd=tmp_path,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=120,
    )
