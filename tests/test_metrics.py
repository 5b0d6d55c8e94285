"""Metrics tables: period boundaries (UTC for v2, US Eastern for period/steps) checked against deliveries."""

from __future__ import annotations

import pytest

from .conftest import API_KEY, Loader

CHECKS = [
    # table, parent id column in metrics, parent id column in messages, extra equality columns
    ("campaign_metrics", "campaign_id", "campaign_id", ()),
    ("broadcast_metrics", "broadcast_id", "broadcast_id", ()),
    ("newsletter_metrics", "newsletter_id", "newsletter_id", ()),
    ("campaign_action_metrics", "action_id", "action_id", ()),
]


@pytest.fixture(scope="module")
def metrics_loader(tmp_path_factory):
    from customerio_source.simulator import SimulatorServer, Workspace

    workspace = Workspace(scale="tiny", seed=21)
    with SimulatorServer(workspace, api_key=API_KEY) as server:
        loader = Loader(server.base_url, tmp_path_factory.mktemp("metrics"))
        loader.run(["messages"] + [f"{t}:days+weeks+months" for t, *_ in CHECKS] + ["campaign_metrics:hours"])
        yield loader


@pytest.mark.parametrize("table, metric_key, message_key, _", CHECKS)
def test_metric_buckets_count_the_deliveries_inside_them(metrics_loader, table, metric_key, message_key, _):
    """Each bucket's `delivered` equals the deliveries whose delivered time falls in [period_start, period_end)."""
    mismatches = metrics_loader.query(
        f"""
        SELECT m.{metric_key}, m.period, m.period_start, m.delivered, COUNT(d.id) AS counted
        FROM {{ds}}.{table} m
        LEFT JOIN {{ds}}.messages d
          ON d.{message_key} = m.{metric_key}
         AND d.metrics__delivered >= m.period_start AND d.metrics__delivered < m.period_end
        GROUP BY ALL
        HAVING COALESCE(m.delivered, 0) <> COUNT(d.id)
        """
    )
    total = metrics_loader.query(f"SELECT COUNT(*), SUM(delivered) FROM {{ds}}.{table}")[0]
    assert total[0] > 0 and total[1] > 0, f"{table} loaded no activity to check"
    assert mismatches == [], mismatches[:5]


def test_eastern_buckets_start_at_local_midnight(metrics_loader):
    rows = metrics_loader.query(
        "SELECT DISTINCT period, period_start, period_end FROM {ds}.broadcast_metrics ORDER BY period, period_start"
    )
    assert rows
    for period, start, end in rows:
        local_start = start.astimezone(__import__("zoneinfo").ZoneInfo("America/New_York"))
        assert (local_start.hour, local_start.minute) == (0, 0), (period, start)
        if period == "weeks":
            assert local_start.weekday() == 6  # Sunday
        assert end > start


def test_v2_metrics_are_utc_buckets_and_hours_are_hours(metrics_loader):
    rows = metrics_loader.query(
        "SELECT period, period_start, period_end FROM {ds}.campaign_metrics WHERE period IN ('hours', 'days')"
    )
    assert {r[0] for r in rows} == {"hours", "days"}
    for period, start, end in rows:
        assert start.astimezone(__import__("datetime").timezone.utc).minute == 0
        assert (end - start).total_seconds() == (3600 if period == "hours" else 86400)
        if period == "days":
            assert start.astimezone(__import__("datetime").timezone.utc).hour == 0


def test_metrics_rerun_merges_history(metrics_loader):
    before = metrics_loader.count("broadcast_metrics")
    metrics_loader.run(["broadcast_metrics:days+weeks"])
    assert metrics_loader.count("broadcast_metrics") == before
    assert metrics_loader.duplicates("broadcast_metrics") == 0


def test_rendered_metric_index_counts_exactly_what_a_scan_of_the_deliveries_counts():
    """The benchmark server renders every parent's metric timestamps (``render_metrics``) so a request
    costs bisections, not a walk over the parent's deliveries; its series must equal the scan's, for v1
    (Eastern days, weeks) and v2 (UTC hours, days) buckets, before and after a change step, and a stale
    index (the workspace changed since) must not be used."""
    from customerio_source.simulator import Workspace
    from customerio_source.simulator import metrics as mx

    ws = Workspace(scale="tiny", seed=11)

    def all_bounds() -> list[list[int]]:
        return [
            mx.steps_buckets(ws.now, "days", 45),
            mx.steps_buckets(ws.now, "weeks", 12),
            mx.range_buckets(ws.now - 3 * 86400, ws.now, "hours", mx.dt.timezone.utc),
            mx.range_buckets(ws.now - 200 * 86400, ws.now, "days", mx.dt.timezone.utc),
        ]

    keys = list(ws._by_key)
    for _step in range(2):
        scanned = {
            (key, b): mx.parent_series(ws, key, bounds, mx.SERIES_C)
            for key in keys for b, bounds in enumerate(all_bounds())
        }
        assert ws.metric_index(keys[0]) is None  # not rendered (or stale): the scan above
        assert ws.render_metrics() == len(ws._by_key)
        for (key, b), expected in scanned.items():
            assert mx.parent_series(ws, key, all_bounds()[b], mx.SERIES_C) == expected, (key, b)
        assert sum(sum(s["delivered"]) for s in scanned.values()) > 0  # counts something
        ws.advance()  # new deliveries, late metrics: the index is stale now
        keys = list(ws._by_key)
