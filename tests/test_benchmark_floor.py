"""The benchmark's request-floor arithmetic (benchmarks/floor.py) at tiny scale; no timing."""

from __future__ import annotations

import math

import pytest

from benchmarks.floor import (
    ATTRIBUTES_BATCH,
    CAMPAIGN_ACTIONS_PAGE_SIZE,
    DAY,
    capture_watermarks,
    changed_people,
    full_floors,
    history_windows,
    incremental_floors,
    pages,
    table_floor,
    total,
)
from customerio_source.catalogue import default_tables
from customerio_source.simulator import Workspace
from customerio_source.source import select_tables

from .oracle import expected_count

ANCHOR = 1_767_225_600  # 2026-01-01T00:00:00Z, so the data is the same on every machine


@pytest.fixture()
def ws() -> Workspace:
    return Workspace(scale="tiny", seed=7, anchor=ANCHOR)


def test_pages_rounds_up_and_costs_one_request_for_an_empty_list() -> None:
    assert pages(0, 100) == 1
    assert pages(0, 100, minimum=0) == 0
    assert pages(1, 100) == 1
    assert pages(100, 100) == 1
    assert pages(101, 100) == 2


def test_history_windows_counts_six_month_windows() -> None:
    now = ANCHOR
    assert history_windows(now - 10 * DAY, now) == 1
    assert history_windows(now - 200 * DAY, now) == 2
    assert history_windows(now - 400 * DAY, now) == 3


def test_every_default_table_has_a_rule(ws: Workspace) -> None:
    floors = full_floors(ws, default_tables())
    assert set(floors) == set(default_tables())
    assert all(f.requests >= 1 for f in floors.values())


def test_list_and_people_floors(ws: Workspace) -> None:
    people = expected_count(ws, "customers")
    assert table_floor(ws, "customers").requests == math.ceil(people / 1000)  # type: ignore[union-attr]
    assert table_floor(ws, "customer_attributes").requests == math.ceil(people / 100)  # type: ignore[union-attr]
    assert table_floor(ws, "campaigns").requests == 1  # type: ignore[union-attr]
    newsletters = table_floor(ws, "newsletters")
    assert newsletters is not None and newsletters.requests == math.ceil(expected_count(ws, "newsletters") / 100)
    activities = table_floor(ws, "activities")
    assert activities is not None
    assert activities.rows == expected_count(ws, "activities")
    assert activities.requests == math.ceil(activities.rows / 100)


def test_messages_floor_is_pages_but_at_least_one_per_six_month_window(ws: Workspace) -> None:
    floor = table_floor(ws, "messages")
    assert floor is not None
    assert floor.rows == expected_count(ws, "messages")
    # tiny: ~400 deliveries over ~8 months: one page would do, but the history needs two windows
    assert floor.requests == max(2, math.ceil(floor.rows / 1000))


def test_per_parent_floors_are_one_per_parent_or_more_for_big_children(ws: Workspace) -> None:
    campaigns = expected_count(ws, "campaigns")
    actions = table_floor(ws, "campaign_actions")
    assert actions is not None
    assert actions.requests == sum(
        math.ceil(len(c["actions"]) / CAMPAIGN_ACTIONS_PAGE_SIZE) for c in ws.cat.campaigns.values()
    )
    assert actions.requests == campaigns  # tiny campaigns have fewer than 10 actions each
    memberships = table_floor(ws, "segment_memberships")
    assert memberships is not None and memberships.requests == len(ws.live_segments())
    triggers = table_floor(ws, "broadcast_triggers")
    assert triggers is not None and triggers.requests == expected_count(ws, "broadcasts")


def test_metrics_floors_are_one_per_parent_and_period(ws: Workspace) -> None:
    selected = select_tables("campaign_metrics:days+weeks,broadcast_action_metrics", ("days",))
    floors = full_floors(ws, selected, selected)
    assert floors["campaign_metrics"].requests == 2 * expected_count(ws, "campaigns")
    assert floors["broadcast_action_metrics"].requests == expected_count(ws, "broadcast_actions")


def test_opt_in_per_person_tables_have_no_rule(ws: Workspace) -> None:
    assert table_floor(ws, "customer_messages") is None
    assert table_floor(ws, "not_a_table") is None


def test_incremental_floor_after_a_change_step(ws: Workspace) -> None:
    tables = default_tables()
    watermarks = capture_watermarks(ws)
    assert watermarks.people == ws.n_people
    ws.advance()
    floors = incremental_floors(ws, watermarks, tables, lookback_days=3)
    full_now = full_floors(ws, tables)
    # deliveries: only the lookback window (new deliveries + the 3 days before the watermark)
    since = watermarks.messages - 3 * DAY
    expected = sum(1 for i in range(len(ws.d_created)) if ws.d_created[i] >= since and not ws.is_draft(i))
    assert floors["messages"].rows == expected
    # + late engagement: one activity-log scan, and at most one window per stale engaged delivery
    late = {i for i in ws.last_changes["late_metrics"] + ws.last_changes["late_engagement"] if ws.d_created[i] < since}
    scan = math.ceil((floors["activities"].rows + 1) / 100)
    extra = floors["messages"].requests - max(1, math.ceil(expected / 1000))
    assert late and scan + 1 <= extra <= scan + len(late), (extra, scan, len(late))
    assert f"{len(late)} stale deliveries engaged" in floors["messages"].rule
    # activities: only those newer than the watermark, which the change step added
    new = [j for j in ws.last_changes["new_activities"] if ws.activity_visible(j, False)]
    assert floors["activities"].rows >= len(new) > 0
    # attributes: new or changed people only
    changed = changed_people(ws, watermarks)
    assert {i for i in ws.last_changes["new_people"] if ws.alive(i)} <= changed
    assert floors["customer_attributes"].requests == math.ceil(len(changed) / ATTRIBUTES_BATCH)
    # tables read in full every run cost their full floor on the changed workspace
    for table in ("campaigns", "campaign_actions", "segment_memberships", "customers", "campaign_metrics"):
        assert floors[table] == full_now[table]
    assert total(floors) < total(full_now)


def test_per_parent_delivery_floors_start_at_each_parents_creation(ws: Workspace) -> None:
    """Issue 14: one window per parent created within the last 180 days, not every window of the history."""
    from benchmarks.floor import PARENT_DELIVERIES, history_start

    for table in PARENT_DELIVERIES:
        floor = table_floor(ws, table)
        assert floor is not None and floor.rows == expected_count(ws, table), table
    newsletters = table_floor(ws, "newsletter_messages")
    start = history_start(ws)
    reference = ws.now + DAY
    expected = sum(
        math.ceil((reference - max(start, n["created"] - 3600)) / (180 * DAY)) for n in ws.newsletters()
    )  # tiny: a few hundred deliveries, so one request per window
    assert newsletters.requests == expected < len(ws.newsletters()) * math.ceil((reference - start) / (180 * DAY))
    watermarks = capture_watermarks(ws)
    ws.advance()
    incremental = incremental_floors(ws, watermarks, list(PARENT_DELIVERIES), lookback_days=3)
    # incremental: one window per live parent (each was created before the lookback), plus late engagement
    campaigns = incremental["campaign_messages"]
    assert campaigns.requests >= len(ws.campaigns()) and "late engagement" in campaigns.rule
