"""Traps from the catalogue issue: unknown fields, promoted attributes, deleted people's activities."""

from __future__ import annotations

from .conftest import API_KEY, Loader, norm_keys
from .oracle import expected_keys
from .scripted_server import ScriptedServer

NOW = 1_790_000_000


def _delivery(i: int, **extra):
    return {
        "id": f"d{i}",
        "created": NOW - 1000 + i,
        "metrics": {"sent": NOW - 900 + i},
        "campaign_id": 1,
        "customer_identifiers": {"id": str(i), "email": None, "cio_id": f"c{i}"},
        "type": "email",
        **extra,
    }


def test_unknown_fields_load_as_new_columns(tmp_path):
    """A field the connector has never seen appears mid-run: it becomes a column; nothing crashes."""
    deliveries = [
        _delivery(4, metrics={"sent": NOW, "teleported": NOW + 5}),
        _delivery(3, brand_new_field="x", nested_new={"a": 1}),
        _delivery(2),
        _delivery(1),
    ]

    def handler(method, path, query, body):
        if path == "/v1/messages":  # honours the window and pages two at a time, newest first
            lo, hi = int(query.get("start_ts", 0)), int(query.get("end_ts", 2**40))
            rows = [d for d in deliveries if lo <= d["created"] <= hi]
            offset = int(query.get("start") or 0)
            more = offset + 2 < len(rows)
            return 200, {}, {"messages": rows[offset : offset + 2], "next": str(offset + 2) if more else ""}
        if path == "/v1/campaigns":
            return 200, {}, {"campaigns": [{"id": 1, "created": NOW - 5000, "updated": NOW, "surprise": {"k": "v"}}]}
        return 200, {}, {path.rsplit("/", 1)[-1]: []}

    with ScriptedServer(handler) as server:
        loader = Loader(server.base_url, tmp_path)
        loader.run(["messages", "campaigns"])
    assert loader.count("messages") == 4
    assert loader.query("SELECT brand_new_field FROM {ds}.messages WHERE id = 'd3'") == [("x",)]
    assert loader.has_column("messages", "nested_new__a")
    assert loader.column_type("messages", "metrics__teleported") == "TIMESTAMP WITH TIME ZONE"
    assert loader.query("SELECT surprise__k FROM {ds}.campaigns") == [("v",)]


def test_promoted_attributes_become_typed_columns(loader, tiny_server):
    ws = tiny_server.workspace
    loader.run(["customer_attributes"], attribute_columns=["plan", "created_at:timestamp"])
    assert loader.column_type("customer_attributes", "attr_plan") == "VARCHAR"
    assert loader.column_type("customer_attributes", "attr_created_at") == "TIMESTAMP WITH TIME ZONE"
    rows = loader.query(
        "SELECT cio_id, attr_plan, json_extract_string(attributes, '$.plan') FROM {ds}.customer_attributes"
    )
    assert rows and all(plan == raw for _, plan, raw in rows)
    assert {(r[0],) for r in rows} == norm_keys(expected_keys(ws, "customer_attributes"))


def test_activities_of_deleted_people_on_request(tmp_path):
    from customerio_source.simulator import SimulatorServer, Workspace

    ws = Workspace(scale="tiny", seed=5)
    with SimulatorServer(ws, api_key=API_KEY) as server:
        plain = Loader(server.base_url, tmp_path / "a")
        plain.run(["activities"])
        with_deleted = Loader(server.base_url, tmp_path / "b")
        with_deleted.run(["activities"], activities_include_deleted=True)
    live = norm_keys(expected_keys(ws, "activities"))
    assert plain.keys("activities") == live
    extra = with_deleted.keys("activities") - live
    assert with_deleted.keys("activities") >= live and extra, "deleted people's activities were not loaded"
