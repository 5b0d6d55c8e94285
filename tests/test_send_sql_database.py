"""Rows read back from a warehouse with dlt's own ``sql_database`` / ``sql_table`` sources (SQLAlchemy:
``duckdb-engine`` for DuckDB) pushed through the destination into the simulator, checked through the App API.
(The Postgres variant is in ``test_send_postgres.py``.)"""

from __future__ import annotations

from typing import Any

import pytest
from dlt.sources.sql_database import sql_database, sql_table

from .send_fixtures import activities, customer, make_warehouse, push_table

PEOPLE, EVENTS = 25, 75


def check_arrived(server: Any, now: int) -> None:
    for i in range(PEOPLE):
        attrs = customer(server, f"sq_{i}")["attributes"]
        assert attrs["email"] == f"sq{i}@example.com"
        assert attrs["plan"] == ("pro" if i % 2 == 0 else "free")
        assert float(attrs["score"]) == i * 1.5
        assert attrs["created_at"] == str(1709251200 + i * 86400)
    got = sorted(
        (a["customer_id"], a["name"], a["timestamp"], int(a["data"]["event_id"]))
        for i in range(PEOPLE)
        for a in activities(server, f"sq_{i}")
        if a["type"] == "event" and a["name"] in ("purchase", "login")
    )
    expected = sorted(
        (f"sq_{i % PEOPLE}", "purchase" if i % 3 == 0 else "login", now - 3600 + i * 7, i) for i in range(EVENTS)
    )
    assert got == expected


@pytest.mark.parametrize("backend", ["sqlalchemy", "pyarrow"])
def test_push_duckdb_tables_read_with_sql_table(send_server: Any, tmp_path: Any, backend: str) -> None:
    now = send_server.workspace.now
    path = str(tmp_path / "warehouse.duckdb")
    make_warehouse(path, now, "sq", PEOPLE, EVENTS)
    credentials = f"duckdb:///{path}"
    people = sql_table(credentials=credentials, table="people", backend=backend)
    events = sql_table(credentials=credentials, table="events", backend=backend)
    push_table(send_server, tmp_path, [(people, "identify", None), (events, "event", "event_id")])
    check_arrived(send_server, now)


def test_push_duckdb_database_read_with_sql_database(send_server: Any, tmp_path: Any) -> None:
    now = send_server.workspace.now
    path = str(tmp_path / "warehouse.duckdb")
    make_warehouse(path, now, "sq", PEOPLE, EVENTS)
    source = sql_database(credentials=f"duckdb:///{path}", table_names=["people", "events"])
    push_table(
        send_server,
        tmp_path,
        [(source.resources["people"], "identify", None), (source.resources["events"], "event", "event_id")],
    )
    check_arrived(send_server, now)
