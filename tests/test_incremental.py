"""Incremental runs after the workspace changed: updates, inserts, deletes, late metrics."""

from __future__ import annotations

from typing import Any

from customerio_source.catalogue import CATALOGUE, default_tables

from .conftest import Loader, norm_keys
from .oracle import deleted_keys, expected_keys


def test_incremental_run_converges_to_the_changed_workspace(changing_server: Any, tmp_path):
    ws = changing_server.workspace
    loader = Loader(changing_server.base_url, tmp_path)
    loader.run("all")
    before = {t: loader.keys(t) for t in default_tables() if t in ws.tables()}
    ws.advance()
    changing_server.stats.reset()
    loader.run("all")
    for table in default_tables():
        if table not in ws.tables():
            continue
        expected = norm_keys(expected_keys(ws, table))
        if CATALOGUE[table].full_reread:
            assert loader.keys(table) == expected, table
        else:
            # history tables keep what the API no longer shows (activities past 30 days, deleted people's)
            assert expected <= loader.keys(table) <= expected | before[table], table
        assert loader.duplicates(table) == 0, table
        deleted = norm_keys(deleted_keys(ws, table))
        if deleted and loader.has_column(table, "_cio_deleted_at"):
            marked = loader.query(f"SELECT COUNT(*) FROM {{ds}}.{table} WHERE _cio_deleted_at IS NOT NULL")[0][0]
            assert marked == len(deleted & before[table]), table
    # something actually changed in each family, so the test proves something
    assert ws.last_changes, "the change step did nothing"


def test_late_metrics_land_on_old_deliveries(changing_server: Any, tmp_path):
    ws = changing_server.workspace
    loader = Loader(changing_server.base_url, tmp_path)
    loader.run(["messages"])
    opened_before = loader.query("SELECT COUNT(*) FROM {ds}.messages WHERE metrics__opened IS NOT NULL")[0][0]
    ws.advance()
    loader.run(["messages"])
    opened_after = loader.query("SELECT COUNT(*) FROM {ds}.messages WHERE metrics__opened IS NOT NULL")[0][0]
    late = ws.last_changes.get("late_metrics") or ws.last_changes.get("late_opened") or []
    assert late, sorted(ws.last_changes)
    assert opened_after > opened_before
    assert loader.keys("messages") == norm_keys(expected_keys(ws, "messages"))


def test_interval_loads_exactly_that_window(changing_server: Any, tmp_path):
    ws = changing_server.workspace
    loader = Loader(changing_server.base_url, tmp_path)
    start, end = ws.now - 60 * 86400, ws.now - 30 * 86400
    from datetime import datetime, timezone

    iso = lambda t: datetime.fromtimestamp(t, timezone.utc).isoformat()  # noqa: E731
    loader.run(["messages", "activities"], interval_start=iso(start), interval_end=iso(end))
    rows = loader.query("SELECT MIN(created), MAX(created), COUNT(*) FROM {ds}.messages")[0]
    assert rows[0].timestamp() >= start and rows[1].timestamp() < end
    expected = {
        k for k in expected_keys(ws, "messages") if start <= ws.delivery(ws.find_delivery(k[0]))["created"] < end
    }
    assert loader.keys("messages") == norm_keys(expected)


def test_interval_on_activities_and_lists(changing_server: Any, tmp_path):
    """Activities have no time filter: the interval is applied while paging newest first; lists keep rows
    whose `updated` falls inside it. Both equal an unbounded load filtered to the window."""
    from datetime import datetime, timezone

    ws = changing_server.workspace
    start, end = ws.now - 20 * 86400, ws.now - 10 * 86400
    iso = lambda t: datetime.fromtimestamp(t, timezone.utc).isoformat()  # noqa: E731
    window = Loader(changing_server.base_url, tmp_path / "window")
    window.run(["activities", "campaigns"], interval_start=iso(start), interval_end=iso(end))
    everything = Loader(changing_server.base_url, tmp_path / "all")
    everything.run(["activities", "campaigns"])
    for table, column in (("activities", "timestamp"), ("campaigns", "updated")):
        inside = everything.query(
            f"SELECT id FROM {{ds}}.{table} WHERE {column} >= to_timestamp({start}) AND {column} < to_timestamp({end})"
        )
        loaded = window.keys(table, live_only=False) if table in window.tables() else set()
        assert loaded == {(str(r[0]),) for r in inside}, table
    assert window.count("activities") > 0
