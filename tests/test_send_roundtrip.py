"""Round trip: push people and events from a DuckDB table with the CLI, extract them back with the source
(through runner.load), and find exactly them in the warehouse."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

import duckdb

from .send_fixtures import SITE_ID, TRACK_KEY, extract, make_warehouse, run_push_cli

PEOPLE, EVENTS = 40, 160


def test_push_then_extract_finds_exactly_them(send_server: Any, tmp_path: Any) -> None:
    now = send_server.workspace.now
    warehouse = str(tmp_path / "warehouse.duckdb")
    make_warehouse(warehouse, now, "rt", PEOPLE, EVENTS)
    env = {"CUSTOMERIO_SITE_ID": SITE_ID, "CUSTOMERIO_TRACK_API_KEY": TRACK_KEY}
    common = ["--from", f"duckdb:{warehouse}", "--base-url", send_server.base_url, "--rate-limit", "0"]
    people = run_push_cli([*common, "--table", "people", "--as", "identify"], tmp_path, env)
    assert people.returncode == 0, people.stderr
    assert f"pushed {PEOPLE} rows of main.people as identify" in people.stdout
    events = run_push_cli([*common, "--table", "main.events", "--as", "event", "--key", "event_id"], tmp_path, env)
    assert events.returncode == 0, events.stderr
    for output in (people.stdout + people.stderr, events.stdout + events.stderr):
        assert TRACK_KEY not in output and SITE_ID not in output

    out = extract(send_server, tmp_path, "rt_extract", ["customers", "customer_attributes", "activities"])
    with duckdb.connect(out, read_only=True) as con:
        customers = con.execute("SELECT id, email FROM cio.customers WHERE id LIKE 'rt\\_%' ESCAPE '\\'").fetchall()
        attrs = con.execute(
            "SELECT id, attributes FROM cio.customer_attributes WHERE id LIKE 'rt\\_%' ESCAPE '\\'"
        ).fetchall()
        acts = con.execute(
            "SELECT customer_identifiers__id, name, timestamp, data FROM cio.activities "
            "WHERE type = 'event' AND customer_identifiers__id LIKE 'rt\\_%' ESCAPE '\\'"
        ).fetchall()
    assert sorted(customers) == sorted((f"rt_{i}", f"rt{i}@example.com") for i in range(PEOPLE))
    got = {ident: json.loads(a) if isinstance(a, str) else a for ident, a in attrs}
    for i in range(PEOPLE):
        created = int(datetime(2024, 3, 1 + i, tzinfo=timezone.utc).timestamp()) if i < 29 else None
        record = got[f"rt_{i}"]
        assert record["plan"] == ("pro" if i % 2 == 0 else "free")
        if created is not None:
            assert record["created_at"] == str(created)

    def unix(value: Any) -> int:
        return int(value.timestamp()) if hasattr(value, "timestamp") else int(value)

    found = sorted(
        (ident, name, unix(ts), json.loads(d)["event_id"] if isinstance(d, str) else d["event_id"])
        for ident, name, ts, d in acts
    )
    expected = sorted(
        (f"rt_{i % PEOPLE}", "purchase" if i % 3 == 0 else "login", now - 3600 + i * 7, i) for i in range(EVENTS)
    )
    assert found == expected


def test_pushed_objects_and_relationships_are_extracted(send_server: Any, tmp_path: Any) -> None:
    """Objects and relationships pushed through the destination come back in `objects` and
    `object_relationships` (and a deleted object does not)."""
    from .send_fixtures import push

    ws = send_server.workspace
    generated = ws.sc.objects  # per object type
    people = [{"id": f"rto_{i}", "email": f"rto{i}@example.com"} for i in range(6)]
    companies = [{"object_id": f"rt_co_{k}", "name": f"Company {k}", "seats": 10 * k} for k in range(5)]
    members = [{"object_id": f"rt_co_{k}", "id": f"rto_{i}", "role": "admin" if i == k else "member"}
               for k in range(5) for i in range(6) if (i + k) % 2 == 0]
    push(send_server, tmp_path, {"people": (people, "identify"), "companies": (companies, "object:1"),
                                 "members": (members, "relationship:1")})
    push(send_server, tmp_path, {"closed": ([{"object_id": "rt_co_4"}], "object_delete:1")})
    out = extract(send_server, tmp_path, "rt_objects", ["objects", "object_relationships"])
    with duckdb.connect(out, read_only=True) as con:
        objects = con.execute(
            "SELECT object_type_id, object_id, cio_object_id FROM cio.objects "
            "WHERE object_id LIKE 'rt\\_co\\_%' ESCAPE '\\'"
        ).fetchall()
        per_type = dict(con.execute("SELECT object_type_id, count(*) FROM cio.objects GROUP BY 1").fetchall())
        rels = con.execute(
            "SELECT object_id, cio_id FROM cio.object_relationships WHERE object_id LIKE 'rt\\_co\\_%' ESCAPE '\\'"
        ).fetchall()
    assert sorted((t, o) for t, o, _ in objects) == [("1", f"rt_co_{k}") for k in range(4)]
    assert all(cio for _, _, cio in objects)
    assert per_type["1"] == generated + 4
    assert all(per_type[str(t + 1)] == generated for t in range(1, len(ws.cat.object_types)))
    cio_of = {f"rto_{i}": ws.identifiers(ws.find_person(f"rto_{i}", "id"))["cio_id"] for i in range(6)}
    expected = sorted((m["object_id"], cio_of[m["id"]]) for m in members if m["object_id"] != "rt_co_4")
    assert sorted(rels) == expected
