"""The CLI end to end: the README's demo, the summary, --full-refresh."""

from __future__ import annotations

import duckdb
import pytest

from customerio_source.catalogue import CATALOGUE, default_tables
from customerio_source.cli import demo_pipeline_name, main

from .conftest import API_KEY
from .oracle import expected_count, expected_keys


@pytest.fixture
def cli_env(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DLT_DATA_DIR", str(tmp_path / "dlt"))
    for name in ("CUSTOMERIO_APP_API_KEY", "DESTINATION__DUCKDB__CREDENTIALS"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path


def test_demo_loads_the_simulated_workspace_exactly(cli_env, capsys):
    from customerio_source.simulator import Workspace

    assert main(["--demo", "--scale", "tiny", "--progress-every", "0"]) == 0
    out = capsys.readouterr().out
    # a scale other than the default gets its own pipeline and file: a demo of another scale in the same
    # folder ran incrementally on this one's state before (e.g. `--demo` then `--demo --scale large`)
    database = cli_env / "customerio_demo_tiny.duckdb"
    assert not (cli_env / "customerio_demo.duckdb").exists()
    assert demo_pipeline_name("tutorial") == "customerio_demo_tutorial"  # a --profile's workspace: its own too
    assert f"DuckDB file: {database}" in out and "requests" in out
    ws = Workspace(scale="tiny")  # the demo's workspace: same seed, same data
    with duckdb.connect(str(database), read_only=True) as con:
        for table in default_tables():
            if table not in ws.tables():
                continue
            key = ", ".join(CATALOGUE[table].primary_key)
            count = con.execute(f"SELECT COUNT(DISTINCT ({key})) FROM customerio.{table}").fetchone()[0]
            assert count == expected_count(ws, table), table
            assert f"\n{table} " in out  # the summary lists every table


def test_full_refresh_reloads_from_scratch(cli_env, tiny_server, monkeypatch):
    monkeypatch.setenv("CUSTOMERIO_APP_API_KEY", API_KEY)
    args = [
        "--base-url",
        tiny_server.base_url,
        "--tables",
        "campaigns,messages",
        "--rate-limit",
        "0",
        "--progress-every",
        "0",
    ]
    assert main(args) == 0
    database = cli_env / "customerio_warehouse.duckdb"
    with duckdb.connect(str(database), read_only=True) as con:
        first = con.execute("SELECT COUNT(*) FROM customerio.messages").fetchone()[0]
        con.execute("SELECT COUNT(*) FROM customerio._dlt_loads").fetchone()
    assert main([*args, "--full-refresh"]) == 0
    with duckdb.connect(str(database), read_only=True) as con:
        assert con.execute("SELECT COUNT(*) FROM customerio.messages").fetchone()[0] == first
        assert con.execute("SELECT COUNT(*) - COUNT(DISTINCT id) FROM customerio.messages").fetchone()[0] == 0
        assert con.execute("SELECT COUNT(*) FROM customerio.campaigns").fetchone()[0] == len(
            expected_keys(tiny_server.workspace, "campaigns")
        )
