"""Request floors: the fewest requests the App API allows for a workspace's data.

Everything here is computed from the simulated workspace (its row counts, per-parent child counts and
timestamps) and the catalogue's page sizes, never from what the client did, so the benchmark can say how
far the connector is from the best any client could do.

Full floor (a first sync), per table:

* a list: ``ceil(rows / max page size)`` (at least 1; an unpaginated list is 1 request);
* a per-parent endpoint: one request per parent, more when a parent's children overflow a page;
* metrics: one request per parent and period;
* people: ``ceil(people / 1000)`` (search) and ``ceil(people / 100)`` (attributes);
* deliveries: ``ceil(deliveries / 1000)``, and at least one request per six-month window of history;
* activities: ``ceil(visible activities / 100)``.

* per-parent deliveries (`campaign_messages`, ...): per parent, the windows
  :func:`customerio_source.deliveries.parent_windows` reads (from the parent's `created`, not the history
  start), each at least one request, ``ceil(its deliveries / 1000)`` when more.

Incremental floor (after one change step): tables read in full every run (lists, children, metrics,
objects, suppressions, the people search that finds deletes) cost their full floor on the changed
workspace; deliveries cost ``ceil(deliveries created since watermark - lookback / 1000)`` for the one
window (per parent for the per-parent tables); activities ``ceil(activities newer than the watermark /
100)``; attributes only for people who are new or changed (``attribute_change`` activities since the
watermark), 100 per request.

Late engagement (:mod:`customerio_source.late_engagement`) adds to the incremental floor of the delivery
tables: one scan of the activity log since the watermark, ``ceil(activities / 100)`` (once per run, counted
under `messages`, else the first delivery table), and per table the narrowest windows covering the deliveries
created before the lookback that have an engagement activity since the watermark, planned by
:func:`~customerio_source.late_engagement.plan_spans` on the workspace's exact counts.
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from typing import Any

from customerio_source import builders
from customerio_source.catalogue import CATALOGUE
from customerio_source.deliveries import parent_windows
from customerio_source.late_engagement import engagement_delivery, plan_spans
from customerio_source.people import ATTRIBUTES_BATCH, PEOPLE_PAGE_SIZE
from customerio_source.simulator import Workspace
from customerio_source.simulator._util import six_months_before
from customerio_source.simulator.catalog import KIND_BROADCAST, KIND_CAMPAIGN, KIND_NEWSLETTER, KIND_TRANSACTIONAL
from customerio_source.small import SUPPRESSIONS_PAGE_SIZE
from tests.oracle import expected_count

DAY = 86_400
DELIVERIES_PAGE_SIZE = CATALOGUE["messages"].page_size or 1000
# GET /v1/campaigns/{id}/actions has no `limit` in the spec; the simulator (like the real API) pages by 10.
CAMPAIGN_ACTIONS_PAGE_SIZE = 10
ATTRIBUTE_CHANGE_KIND = 6  # index of ("attribute_change", False) in the simulator's activity kinds
# per-parent delivery tables: the simulator's parent key and the kind of source that sends them
PARENT_DELIVERIES = {
    "campaign_messages": ("c", KIND_CAMPAIGN),
    "broadcast_messages": ("b", KIND_BROADCAST),
    "newsletter_messages": ("n", KIND_NEWSLETTER),
    "transactional_message_deliveries": ("t", KIND_TRANSACTIONAL),
}


@dataclass(frozen=True)
class Floor:
    """The fewest requests for one table, with the row count it was derived from and the rule used."""

    table: str
    rows: int | None
    requests: int
    rule: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Watermarks:
    """What a completed sync has seen: the incremental cursors a perfect client would resume from."""

    messages: int
    """Newest `created` of any (non-draft) delivery."""
    activities: int
    """Newest `timestamp` of any activity the API returns (live people, last 30 days)."""
    people: int
    """Number of person indices that existed (people created later are new)."""

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


def pages(rows: int, page_size: int, minimum: int = 1) -> int:
    """Requests to read ``rows`` at ``page_size`` per request (an empty list still costs ``minimum``)."""
    return max(minimum, math.ceil(rows / page_size))


def history_windows(oldest: int, now: int) -> int:
    """Six-month windows needed to cover [oldest, now] (the API truncates a longer range)."""
    count, lower = 1, six_months_before(now)
    while lower > oldest:
        count += 1
        lower = six_months_before(lower)
    return count


def capture_watermarks(ws: Workspace) -> Watermarks:
    """The cursors a sync of the current workspace ends with (call it before ``ws.advance()``)."""
    with ws.lock:
        newest_delivery = 0
        for i in range(len(ws.d_created) - 1, -1, -1):
            if not ws.is_draft(i):
                newest_delivery = ws.d_created[i]
                break
        newest_activity = 0
        for j in range(len(ws.a_ts) - 1, -1, -1):
            if ws.activity_visible(j, False):
                newest_activity = ws.a_ts[j]
                break
        return Watermarks(messages=newest_delivery, activities=newest_activity, people=ws.n_people)


# -- per-table rules ----------------------------------------------------------------------------------
def _children_per_parent(ws: Workspace, table: str) -> list[int] | None:
    """Children count of each parent for the paginated per-parent endpoints (None: one page per parent)."""
    cat = ws.cat
    if table == "campaign_actions":
        return [len(c["actions"]) for c in cat.campaigns.values()]
    if table == "segment_memberships":
        return [len(ws.segment_members(s)) for s in ws.live_segments()]
    return None


def _per_parent_page_size(table: str) -> int | None:
    if table == "campaign_actions":
        return CAMPAIGN_ACTIONS_PAGE_SIZE
    return CATALOGUE[table].page_size


def table_floor(ws: Workspace, table: str, periods: tuple[str, ...] = ("days",)) -> Floor | None:
    """The full-sync floor of one table (None for tables the benchmark has no rule for)."""
    spec = CATALOGUE.get(table)
    if spec is None:
        return None
    if spec.builder is builders.metrics:
        parents = expected_count(ws, spec.parent or "")
        return Floor(table, None, parents * len(periods), f"{parents} {spec.parent} x {len(periods)} period(s)")
    if table == "customers":
        people = expected_count(ws, "customers")
        return Floor(table, people, pages(people, PEOPLE_PAGE_SIZE), f"ceil(people/{PEOPLE_PAGE_SIZE})")
    if table == "customer_attributes":
        people = expected_count(ws, "customer_attributes")
        return Floor(table, people, pages(people, ATTRIBUTES_BATCH), f"ceil(people/{ATTRIBUTES_BATCH})")
    if table == "messages":
        rows = expected_count(ws, "messages")
        oldest = next((ws.d_created[i] for i in range(len(ws.d_created)) if not ws.is_draft(i)), ws.now)
        windows = history_windows(oldest, ws.now)
        requests = max(windows, pages(rows, DELIVERIES_PAGE_SIZE))
        return Floor(table, rows, requests, f"max(ceil(rows/{DELIVERIES_PAGE_SIZE}), {windows} six-month windows)")
    if table == "activities":
        rows = expected_count(ws, "activities")
        size = CATALOGUE["activities"].page_size
        return Floor(table, rows, pages(rows, size), f"ceil(rows/{size})")
    if table == "esp_suppressions":
        counts = [len(rows) for rows in ws.cat.suppressions.values()]
        requests = sum(pages(n, SUPPRESSIONS_PAGE_SIZE) for n in counts)
        return Floor(table, sum(counts), requests, f"ceil(rows/{SUPPRESSIONS_PAGE_SIZE}) per type")
    if table == "objects":
        per_type = ws.sc.objects
        types = len(ws.cat.object_types)
        page = spec.page_size or 1000
        return Floor(table, per_type * types, types * pages(per_type, page), f"ceil(objects/{page}) per type")
    if table in PARENT_DELIVERIES:
        return parent_deliveries_floor(ws, table, None)
    if spec.builder is not None and table != "info_ip_addresses":
        return None  # opt-in per-person/per-object/per-parent delivery tables: no rule
    rows = expected_count(ws, table)
    if spec.per_parent:
        parent = spec.parent or ""
        counts = _children_per_parent(ws, table)
        page_size = _per_parent_page_size(table)
        if counts is not None and page_size:
            return Floor(table, rows, sum(pages(n, page_size) for n in counts),
                         f"ceil(children/{page_size}) per {parent}")
        parents = expected_count(ws, parent)
        return Floor(table, rows, parents, f"1 per {parent}")
    if spec.paginated and spec.page_size:
        return Floor(table, rows, pages(rows, spec.page_size), f"ceil(rows/{spec.page_size})")
    return Floor(table, rows, 1, "1 (unpaginated)")


def full_floors(
    ws: Workspace, tables: Iterable[str], periods: Mapping[str, tuple[str, ...]] | None = None
) -> dict[str, Floor]:
    """Full-sync floor of each table that has a rule (metrics: ``periods[table]``, default days)."""
    with ws.lock:
        out = {}
        for table in tables:
            floor = table_floor(ws, table, _periods(periods, table))
            if floor is not None:
                out[table] = floor
        return out


def incremental_floors(
    ws: Workspace,
    watermarks: Watermarks,
    tables: Iterable[str],
    periods: Mapping[str, tuple[str, ...]] | None = None,
    lookback_days: float = 3.0,
) -> dict[str, Floor]:
    """Floor of an incremental sync of the (changed) workspace, resuming from ``watermarks``."""
    with ws.lock:
        out: dict[str, Floor] = {}
        for table in tables:
            if table == "messages":
                since = watermarks.messages - int(lookback_days * DAY)
                lo = ws.index_range(since, ws.now)[0]
                rows = sum(1 for i in range(lo, len(ws.d_created)) if not ws.is_draft(i))
                out[table] = Floor(table, rows, pages(rows, DELIVERIES_PAGE_SIZE),
                                   f"ceil(created >= watermark - {lookback_days:g}d / {DELIVERIES_PAGE_SIZE})")
            elif table in PARENT_DELIVERIES:
                since = table_watermark(ws, table, watermarks) - int(lookback_days * DAY)
                out[table] = parent_deliveries_floor(ws, table, since)
            elif table == "activities":
                rows = _new_activities(ws, watermarks.activities)
                size = CATALOGUE["activities"].page_size
                out[table] = Floor(table, rows, pages(rows, size), f"ceil(newer than watermark / {size})")
            elif table == "customer_attributes":
                changed = changed_people(ws, watermarks)
                out[table] = Floor(table, len(changed), pages(len(changed), ATTRIBUTES_BATCH, minimum=0),
                                   f"ceil(new or changed people / {ATTRIBUTES_BATCH})")
            else:
                floor = table_floor(ws, table, _periods(periods, table))
                if floor is not None:
                    out[table] = floor
        add_late_engagement(ws, watermarks, out, lookback_days)
        return out


def _periods(periods: Mapping[str, tuple[str, ...]] | None, table: str) -> tuple[str, ...]:
    return (periods or {}).get(table) or ("days",)


def _new_activities(ws: Workspace, watermark: int) -> int:
    count = 0
    for j in range(len(ws.a_ts) - 1, -1, -1):
        if ws.a_ts[j] <= watermark:
            break
        if ws.activity_visible(j, False):
            count += 1
    return count


def changed_people(ws: Workspace, watermarks: Watermarks) -> set[int]:
    """Live people created after the watermark or with an `attribute_change` activity newer than it."""
    changed = {i for i in range(watermarks.people, ws.n_people) if ws.alive(i)}
    for j in range(len(ws.a_ts) - 1, -1, -1):
        if ws.a_ts[j] <= watermarks.activities:
            break
        if ws.a_kind[j] == ATTRIBUTE_CHANGE_KIND and ws.alive(ws.a_person[j]):
            changed.add(ws.a_person[j])
    return changed


def total(floors: dict[str, Floor]) -> int:
    return sum(f.requests for f in floors.values())


# -- deliveries by parent and late engagement ----------------------------------------------------------------
def _utc(second: int) -> datetime:
    return datetime.fromtimestamp(second, timezone.utc)


def _parents(ws: Workspace, table: str) -> list[dict[str, Any]]:
    spec = CATALOGUE[table]
    return {"campaigns": ws.campaigns, "broadcasts": ws.broadcasts, "newsletters": ws.newsletters,
            "transactional_messages": lambda: list(ws.cat.transactional.values())}[spec.parent or ""]()


def history_start(ws: Workspace) -> int:
    """The oldest `created` of anything that sends deliveries (where a first run's history starts)."""
    created = [p["created"] for p in (*ws.campaigns(), *ws.broadcasts(), *ws.newsletters())]
    created += [t["created_at"] for t in ws.cat.transactional.values()]
    return min(created, default=ws.now)


def _parent_created(ws: Workspace, table: str, key: tuple[str, int]) -> list[int]:
    """`created` of the parent's listed (non-draft) deliveries, ascending."""
    return [ws.d_created[i] for i in ws.delivery_indices(key) if not ws.is_draft(i)]


def parent_deliveries_floor(ws: Workspace, table: str, since: int | None) -> Floor:
    """Per parent, each window of :func:`parent_windows` from ``since`` (None: the history start) costs
    ``max(1, ceil(its deliveries / 1000))``."""
    letter, _kind = PARENT_DELIVERIES[table]
    start = _utc(history_start(ws) if since is None else since)
    now = _utc(ws.now)
    rows = requests = 0
    for parent in _parents(ws, table):
        created = _parent_created(ws, table, (letter, parent["id"]))
        for lower, upper in parent_windows(parent, start, None, now=now):
            lo = bisect_left(created, int(lower.timestamp()))
            hi = len(created) if upper is None else bisect_left(created, int(upper.timestamp()))
            rows += hi - lo
            requests += pages(hi - lo, DELIVERIES_PAGE_SIZE)
    where = "the history start" if since is None else "watermark - lookback"
    return Floor(table, rows, requests, f"per parent: windows from max(created, {where}), ceil(rows/1000) each")


def table_watermark(ws: Workspace, table: str, watermarks: Watermarks) -> int:
    """The newest `created` a per-parent delivery table had seen at ``watermarks`` (each table has its own
    cursor; the change step's deliveries are all newer than the `messages` watermark)."""
    letter, _kind = PARENT_DELIVERIES[table]
    newest = 0
    for parent in _parents(ws, table):
        created = _parent_created(ws, table, (letter, parent["id"]))
        seen = bisect_right(created, watermarks.messages)
        if seen:
            newest = max(newest, created[seen - 1])
    return newest or watermarks.messages


def engaged_deliveries(ws: Workspace, watermark: int) -> set[int]:
    """Deliveries with an engagement activity (opened, clicked, converted...) newer than ``watermark``."""
    found: set[int] = set()
    for j in range(len(ws.a_ts) - 1, -1, -1):
        if ws.a_ts[j] <= watermark:
            break
        if ws.a_ref[j] >= 0 and ws.activity_visible(j, False) and engagement_delivery(ws.activity(j)):
            found.add(ws.a_ref[j])
    return found


def late_windows(created: list[int], targets: list[int]) -> int:
    """Requests of :func:`plan_spans` for target seconds among the (ascending) `created` of a table's rows."""
    seconds = sorted(set(targets))
    if not seconds:
        return 0
    at = [bisect_right(created, t) - bisect_left(created, t) for t in seconds]
    between = [bisect_left(created, b) - bisect_right(created, a) for a, b in zip(seconds, seconds[1:], strict=False)]
    between.append(0)
    total = 0
    for lo, hi in plan_spans(seconds, at, between):
        total += pages(bisect_left(created, hi) - bisect_left(created, lo), DELIVERIES_PAGE_SIZE)
    return total


def add_late_engagement(ws: Workspace, watermarks: Watermarks, floors: dict[str, Floor], lookback_days: float) -> None:
    """Add the late-engagement requests to the delivery tables' incremental floors (see the module docstring)."""
    tables = [t for t in ("messages", *PARENT_DELIVERIES) if t in floors]
    if not tables:
        return
    lookback = int(lookback_days * DAY)
    engaged = sorted(engaged_deliveries(ws, watermarks.activities))
    scanned = sum(1 for j in range(len(ws.a_ts) - 1, -1, -1) if ws.a_ts[j] > watermarks.activities)
    scan = pages(scanned + 1, CATALOGUE["activities"].page_size or 100)  # the page that reaches past the watermark
    for number, table in enumerate(tables):
        extra = scan if number == 0 else 0
        mark = watermarks.messages if table == "messages" else table_watermark(ws, table, watermarks)
        stale = [d for d in engaged if ws.d_created[d] < mark - lookback]
        if table == "messages":
            listed = [ws.d_created[i] for i in range(len(ws.d_created)) if not ws.is_draft(i)]
            extra += late_windows(listed, [ws.d_created[d] for d in stale])
        else:
            letter, kind = PARENT_DELIVERIES[table]
            by_parent: dict[int, list[int]] = {}
            for d in stale:
                source = ws.cat.sources[ws.d_src[d]]
                if source[0] == kind and not (kind == KIND_BROADCAST and source[1] in ws.deleted_broadcasts):
                    by_parent.setdefault(source[1], []).append(ws.d_created[d])
            for parent, targets in by_parent.items():
                extra += late_windows(_parent_created(ws, table, (letter, parent)), targets)
        base = floors[table]
        rule = f"{base.rule} + late engagement ({len(stale)} stale deliveries engaged: {extra} requests)"
        floors[table] = Floor(table, base.rows, base.requests + extra, rule)
