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
