"""``customerio-pipeline push``: bad input (one line, documented exit code), --dry-run, --incremental-column,
--demo, rejections next to the table, and no credential in any output."""

from __future__ import annotations

import os
from typing import Any

import duckdb
import pytest

from customerio_source.send.cli import push_main

from .send_fixtures import SITE_ID, TRACK_KEY, WRITE_KEY, customer, run_push_cli

ENV = {"CUSTOMERIO_SITE_ID": SITE_ID, "CUSTOMERIO_TRACK_API_KEY": TRACK_KEY, "CUSTOMERIO_CDP_API_KEY": WRITE_KEY}


@pytest.fixture
def warehouse(tmp_path: Any) -> str:
    path = str(tmp_path / "w.duckdb")
    with duckdb.connect(path) as con:
        con.execute("CREATE TABLE people (id VARCHAR, email VARCHAR, plan VARCHAR, updated_at INTEGER)")
        con.execute(
            "INSERT INTO people VALUES ('c1', 'c1@x.io', 'pro', 1), ('c2', NULL, 'free', 2), "
            "(NULL, NULL, 'orphan', 3), ('" + "l" * 200 + "', NULL, 'long', 4)"
        )
        con.execute("CREATE TABLE empty (id VARCHAR)")
        con.execute("CREATE TABLE no_ids (plan VARCHAR)")
        con.execute("INSERT INTO no_ids VALUES ('x')")
        con.execute("CREATE TABLE events (id VARCHAR, name VARCHAR, timestamp VARCHAR)")
        con.execute("INSERT INTO events VALUES ('c1', 'ok', '2024-01-01T00:00:00Z'), ('c1', 'bad', 'last tuesday')")
    return path


def _run(args: list[str], capsys: Any, monkeypatch: Any, tmp_path: Any, env: dict | None = None) -> tuple[int, str]:
    monkeypatch.setenv("DLT_DATA_DIR", str(tmp_path / "dlt"))
    for name, value in (ENV if env is None else env).items():
        monkeypatch.setenv(name, value)
    code = push_main(args)
    captured = capsys.readouterr()
    return code, captured.out + captured.err


@pytest.mark.parametrize(
    ("args", "code", "text"),
    [
        (["--table", "people", "--as", "shout"], 2, "unknown operation 'shout'"),
        (["--table", "nope", "--as", "identify"], 2, "no table main.nope"),
        (["--table", "no_ids", "--as", "identify"], 2, "has no id / email / cio_id column"),
        (["--table", "empty", "--as", "identify"], 2, "is empty"),
        (["--table", "people", "--as", "identify", "--region", "eu"], 2, "workspace is in the US region"),
        (["--table", "people", "--as", "identify", "--rate-limit", "5000"], 2, "above the Track API's budget"),
        (["--table", "people", "--as", "segment:1", "--api", "cdp"], 2, "use --api track"),
        (["--table", "people", "--as", "identify", "--incremental-column", "nope"], 2, "not a column"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    send_server: Any,
    warehouse: str,
    tmp_path: Any,
    capsys: Any,
    monkeypatch: Any,
    args: list[str],
    code: int,
    text: str,
) -> None:
    got, output = _run(
        ["--from", f"duckdb:{warehouse}", "--base-url", send_server.base_url, *args], capsys, monkeypatch, tmp_path
    )
    assert got == code, output
    lines = output.strip().splitlines()
    assert len(lines) == 1 and text in lines[0] and "Traceback" not in output
    assert SITE_ID not in output and TRACK_KEY not in output


def test_wrong_credentials_exit_3(
    send_server: Any,
    warehouse: str,
    tmp_path: Any,
    capsys: Any,
    monkeypatch: Any,
) -> None:
    code, output = _run(
        ["--from", f"duckdb:{warehouse}", "--base-url", send_server.base_url, "--table", "people", "--as", "identify"],
        capsys,
        monkeypatch,
        tmp_path,
        {"CUSTOMERIO_SITE_ID": SITE_ID, "CUSTOMERIO_TRACK_API_KEY": "wrong-key-123"},
    )
    assert code == 3 and len(output.strip().splitlines()) == 1 and "rejected the Track API" in output
    assert "wrong-key-123" not in output and SITE_ID not in output
    code, output = _run(
        [
            "--from",
            f"duckdb:{warehouse}",
            "--base-url", send_server.base_url + "/cdp/v1",
            "--api",
            "cdp",
            "--table",
            "people",
            "--as",
            "identify",
        ],
        capsys,
        monkeypatch,
        tmp_path,
        {"CUSTOMERIO_CDP_API_KEY": "wrong-write-key"},
    )
    assert code == 3 and "Data Pipelines write key" in output and "wrong-write-key" not in output


def test_no_credentials_exit_2(warehouse: str, tmp_path: Any, capsys: Any, monkeypatch: Any) -> None:
    for name in ENV:
        monkeypatch.delenv(name, raising=False)
    code, output = _run(
        ["--from", f"duckdb:{warehouse}", "--table", "people", "--as", "identify"], capsys, monkeypatch, tmp_path, {}
    )
    assert code == 2 and "no Track API credentials" in output


def test_rejections_exit_4_and_land_next_to_the_table(
    send_server: Any,
    warehouse: str,
    tmp_path: Any,
    capsys: Any,
    monkeypatch: Any,
) -> None:
    common = ["--from", f"duckdb:{warehouse}", "--base-url", send_server.base_url, "--rate-limit", "0"]
    code, output = _run(
        [*common, "--table", "people", "--as", "identify", "--key", "plan"], capsys, monkeypatch, tmp_path
    )
    assert code == 4, output
    assert "2 rows rejected (" in output and "missing_identifier 1" in output and "identifier_too_long 1" in output
    assert customer(send_server, "c1")["attributes"]["plan"] == "pro"
    code, output = _run([*common, "--table", "events", "--as", "event"], capsys, monkeypatch, tmp_path)
    assert code == 4 and "invalid_timestamp 1" in output, output
    with duckdb.connect(warehouse, read_only=True) as con:
        rows = con.execute(
            "SELECT source_table, row_key, operation, reason, field FROM main.customerio_rejections "
            "ORDER BY source_table, reason"
        ).fetchall()
        everything = str(con.execute("SELECT * FROM main.customerio_rejections").fetchall())
    assert rows[:2] == [
        ("events", rows[0][1], "event", "invalid_timestamp", "timestamp"),
        ("people", "long", "identify", "identifier_too_long", "id"),
    ]
    assert rows[2] == ("people", "orphan", "identify", "missing_identifier", "id")
    assert SITE_ID not in everything and TRACK_KEY not in everything


def test_dry_run_counts_and_sends_nothing(
    send_server: Any,
    warehouse: str,
    tmp_path: Any,
    capsys: Any,
    monkeypatch: Any,
) -> None:
    before = send_server.send.stats.requests
    code, output = _run(
        [
            "--from",
            f"duckdb:{warehouse}",
            "--base-url", send_server.base_url,
            "--table",
            "people",
            "--as",
            "identify",
            "--dry-run",
        ],
        capsys,
        monkeypatch,
        tmp_path,
    )
    assert code == 4 and "dry run: 4 rows of main.people as identify (track API) would take 1 requests" in output
    assert send_server.send.stats.requests == before


def test_incremental_pushes_only_changed_rows(
    send_server: Any,
    warehouse: str,
    tmp_path: Any,
    capsys: Any,
    monkeypatch: Any,
) -> None:
    common = [
        "--from",
        f"duckdb:{warehouse}",
        "--base-url", send_server.base_url,
        "--table",
        "people",
        "--as",
        "identify",
        "--incremental-column",
        "updated_at",
        "--rate-limit",
        "0",
    ]
    code, output = _run(common, capsys, monkeypatch, tmp_path)
    assert code == 4 and "pushed 4 rows" in output
    code, output = _run(common, capsys, monkeypatch, tmp_path)
    assert code == 0 and "nothing to push" in output
    with duckdb.connect(warehouse) as con:
        con.execute("UPDATE people SET plan = 'team', updated_at = 9 WHERE id = 'c2'")
    code, output = _run(common, capsys, monkeypatch, tmp_path)
    assert code == 0 and "pushed 1 rows" in output
    assert customer(send_server, "c2")["attributes"]["plan"] == "team"


def test_demo_pushes_into_the_simulator(tmp_path: Any) -> None:
    result = run_push_cli(["--demo"], tmp_path)
    assert result.returncode == 0, result.stderr
    assert "pushed 100 rows of main.people as identify" in result.stdout


def test_no_credential_in_debug_output_or_any_file(send_server: Any, warehouse: str, tmp_path: Any) -> None:
    result = run_push_cli(
        ["--from", f"duckdb:{warehouse}", "--base-url", send_server.base_url, "--table", "people", "--as",
         "identify", "--debug"],
        tmp_path,
        {**ENV, "RUNTIME__LOG_LEVEL": "DEBUG"},
    )
    assert result.returncode == 4, result.stderr
    for secret in (SITE_ID, TRACK_KEY):
        assert secret not in result.stdout + result.stderr
    leaked = []
    for folder, _, files in os.walk(tmp_path):  # the DuckDB file, pipelines, traces, state, spool
        for name in files:
            path = f"{folder}/{name}"
            with open(path, "rb") as handle:
                data = handle.read()
            if SITE_ID.encode() in data or TRACK_KEY.encode() in data:
                leaked.append(path)
    assert leaked == []
