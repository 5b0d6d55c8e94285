"""Push from a real Postgres table (CLI), with the rejections written back into the same schema.

Needs ``DESTINATION__POSTGRES__CREDENTIALS`` (``source .ci/postgres.sh``); skipped without a server,
except under CI (``CI=true``), where it fails.
"""

from __future__ import annotations

import os
import uuid
from typing import Any

import pytest

from .send_fixtures import SITE_ID, TRACK_KEY, activities, customer, run_push_cli

pytestmark = [pytest.mark.postgres]
psycopg2 = pytest.importorskip("psycopg2")


@pytest.fixture
def pg_schema() -> Any:
    dsn = os.environ.get("DESTINATION__POSTGRES__CREDENTIALS")
    try:
        if not dsn:
            raise RuntimeError("DESTINATION__POSTGRES__CREDENTIALS is not set")
        psycopg2.connect(dsn, connect_timeout=5).close()
    except Exception as exc:  # noqa: BLE001
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"Postgres is required under CI: {exc}", pytrace=False)
        pytest.skip(f"Postgres not available: {exc}")
    schema = f"push_{uuid.uuid4().hex[:8]}"
    con = psycopg2.connect(dsn)
    con.autocommit = True
    yield dsn, schema, con
    con.cursor().execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    con.close()


def test_push_people_and_events_from_postgres(send_server: Any, pg_schema: Any, tmp_path: Any) -> None:
    dsn, schema, con = pg_schema
    now = send_server.workspace.now
    cur = con.cursor()
    cur.execute(f'CREATE SCHEMA "{schema}"')
    cur.execute(
        f'CREATE TABLE "{schema}".people (id text, email text, plan text, score numeric(6,2), created_at timestamptz)'
    )
    cur.execute(f"""INSERT INTO "{schema}".people SELECT 'pg_' || i, 'pg' || i || '@example.com', 'pro', i * 1.5,
                    timestamptz '2024-02-01 00:00:00+00' + i * interval '1 day' FROM generate_series(1, 30) i""")
    cur.execute(f"INSERT INTO \"{schema}\".people VALUES (NULL, NULL, 'nobody', 0, NULL)")
    cur.execute(f'CREATE TABLE "{schema}".events (event_id int, id text, name text, timestamp timestamptz)')
    cur.execute(f"""INSERT INTO "{schema}".events SELECT i, 'pg_' || (1 + i % 30), 'ordered',
                    to_timestamp({now} - 1000 + i) FROM generate_series(1, 90) i""")
    env = {"CUSTOMERIO_SITE_ID": SITE_ID, "CUSTOMERIO_TRACK_API_KEY": TRACK_KEY}
    common = ["--from", f"postgres:{dsn}", "--base-url", send_server.base_url, "--rate-limit", "0"]
    people = run_push_cli([*common, "--table", f"{schema}.people", "--as", "identify"], tmp_path, env)
    assert people.returncode == 4, people.stderr  # the row with no identifier
    assert "1 rows rejected (missing_identifier 1)" in people.stderr
    password = dsn.split("://", 1)[-1].split("@", 1)[0].partition(":")[2]
    for output in (people.stdout, people.stderr):
        assert TRACK_KEY not in output and SITE_ID not in output and (not password or password not in output)
    events = run_push_cli([*common, "--table", f"{schema}.events", "--as", "event", "--key", "event_id"], tmp_path, env)
    assert events.returncode == 0, events.stderr
    record = customer(send_server, "pg_7")["attributes"]
    assert record["plan"] == "pro" and record["score"] == "10.5" and record["email"] == "pg7@example.com"
    assert record["created_at"] == str(1706745600 + 7 * 86400)
    names = sorted(a["data"]["event_id"] for p in range(1, 31) for a in activities(send_server, f"pg_{p}"))
    assert names == list(range(1, 91))
    cur.execute(f'SELECT source_table, operation, reason FROM "{schema}".customerio_rejections')
    assert cur.fetchall() == [("people", "identify", "missing_identifier")]


def test_push_postgres_table_read_with_sql_table(send_server: Any, pg_schema: Any, tmp_path: Any) -> None:
    """A Postgres table read with dlt's ``sql_table`` (SQLAlchemy, psycopg2) pushed through the destination."""
    from dlt.sources.sql_database import sql_table

    from .send_fixtures import push_table

    dsn, schema, con = pg_schema
    now = send_server.workspace.now
    cur = con.cursor()
    cur.execute(f'CREATE SCHEMA "{schema}"')
    cur.execute(f'CREATE TABLE "{schema}".members (id text primary key, email text, seats int, joined timestamptz)')
    cur.execute(f"""INSERT INTO "{schema}".members SELECT 'sqlpg_' || i, 'sqlpg' || i || '@example.com', i,
                    timestamptz '2024-02-01 00:00:00+00' + i * interval '1 hour' FROM generate_series(1, 20) i""")
    cur.execute(f'CREATE TABLE "{schema}".clicks (click_id int primary key, id text, name text, timestamp timestamptz)')
    cur.execute(f"""INSERT INTO "{schema}".clicks SELECT i, 'sqlpg_' || (1 + i % 20), 'clicked',
                    to_timestamp({now} - 1000 + i) FROM generate_series(1, 60) i""")
    members = sql_table(credentials=dsn, schema=schema, table="members")
    clicks = sql_table(credentials=dsn, schema=schema, table="clicks")
    push_table(send_server, tmp_path, [(members, "identify", None), (clicks, "event", "click_id")])
    for i in range(1, 21):
        attrs = customer(send_server, f"sqlpg_{i}")["attributes"]
        assert attrs["email"] == f"sqlpg{i}@example.com" and attrs["seats"] == str(i)
        assert attrs["joined"] == str(1706745600 + i * 3600)
    got = sorted(
        (a["customer_id"], a["timestamp"], a["data"]["click_id"])
        for p in range(1, 21)
        for a in activities(send_server, f"sqlpg_{p}")
        if a["name"] == "clicked"
    )
    assert got == sorted((f"sqlpg_{1 + i % 20}", now - 1000 + i, i) for i in range(1, 61))
