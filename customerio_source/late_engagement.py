"""Late engagement: deliveries older than the lookback whose metrics changed since the previous run.

Opens, clicks and conversions keep arriving for weeks after a message is sent, and a delivery has no
`updated` field, so the lookback window (``messages_lookback_days``) alone leaves older deliveries stale.
An incremental run of a delivery table therefore also:

1. scans the activity log (``GET /v1/activities``, newest first, 100 a page) down to the previous run's
   start (less :data:`~customerio_source.people_changes.CLOCK_MARGIN`), once per run for every delivery
   table, collecting the `delivery_id` of engagement activities (:data:`ENGAGEMENT_VERBS`);
2. looks those ids up in the destination's own table (their `created`, and for per-parent tables their
   parent), keeps the ones created before the run's normal window, and
3. re-reads them by the narrowest `created` windows (``start_ts``/``end_ts``): targets are walked in
   `created` order and a neighbour joins a window when the destination's row count says the joined window
   costs fewer requests than reading both apart (:func:`plan_spans`). A window of one second costs one
   request, like ``GET /v1/messages/{id}``, and serves per-parent paths too; when the destination cannot be
   read, each delivery is fetched with ``GET /v1/messages/{id}`` instead.

Every ``messages_deep_reread_days`` (default 7) the run re-reads ``messages_deep_lookback_days`` (default 30)
instead of the lookback: the safety net for what the log does not show (activity types outside
:data:`ENGAGEMENT_VERBS`, a previous run longer ago than the log keeps). A delivery the warehouse does not
hold is never stale: new deliveries are in the normal window.

Spec facts this relies on (``shared/spec/DIGEST.md`` §3.3-3.4, ``journeys-app.json``): activity records carry
`type`, `timestamp` and `delivery_id`; activity types are ``<metric>_<channel>`` (`opened_email`,
`clicked_push`, `converted_in_app`, `bounced_email`, `unsubscribed_email`, ...) plus
`topic_unsubscribed_email`; the log is "guaranteed to return activity history within the past 30 days"; its
order is not documented (assumed newest first, as :mod:`customerio_source.people_changes` assumes);
``GET /v1/messages/{message_id}`` returns ``{"message": {...}}``.

The resource's dlt state holds two timestamps (``late_since``: the previous run's start; ``deep_at``: the
last deep re-read), committed only with the run's load.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import dlt
import numpy as np
import pyarrow as pa

from .arrow_pages import PageDecoder
from .catalogue import CATALOGUE, TableSpec
from .context import DESTINATION_LOCK, RunContext, records
from .errors import NotFoundError
from .people_changes import CLOCK_MARGIN, PROFILE_CHANGE_TYPES

logger = logging.getLogger("customerio_source")

# the metric verbs of activity types whose delivery's metrics change after it was sent
ENGAGEMENT_VERBS = frozenset({"opened", "clicked", "converted", "bounced", "unsubscribed", "spammed"})
ACTIVITY_RETENTION = 30 * 86400  # the log is guaranteed to cover the last 30 days
LOOKUP_CHUNK = 500  # ids per destination query
PAGE_SIZE = 1000  # deliveries per page (the catalogue's maximum for every delivery list)
MAX_SPAN = timedelta(days=180)
# the delivery column that names each sending parent (a delivery record carries all four, null but one)
PARENT_COLUMNS = {
    "campaigns": "campaign_id",
    "broadcasts": "broadcast_id",
    "newsletters": "newsletter_id",
    "transactional_messages": "transactional_message_id",
}


def engagement_delivery(activity: dict[str, Any]) -> str | None:
    """The delivery id of an engagement activity (`opened_email`, `topic_unsubscribed_email`...), else None."""
    delivery = activity.get("delivery_id")
    kind = str(activity.get("type") or "")
    if not delivery or kind.startswith("_"):
        return None
    verb = kind.removeprefix("topic_").split("_", 1)[0]
    return str(delivery) if verb in ENGAGEMENT_VERBS else None


def activity_log_owner(selected: Iterable[str]) -> str:
    """The table a run's one activity-log scan is counted under: `messages`, else the first selected
    delivery table, else `customer_attributes` (its other reader). Fixed by the selection, not by which
    reader asks first, so per-table request counts do not depend on thread timing."""
    from . import builders

    names = list(selected)
    if "messages" in names:
        return "messages"
    for name in CATALOGUE:
        if name in names and CATALOGUE[name].builder is builders.deliveries:
            return name
    return "customer_attributes"


class ActivityLog:
    """One newest-first scan of the activity log shared by the run's readers: the delivery tables' late
    engagement (deliveries with engagement activities) and `customer_attributes` (people with a
    profile-changing activity). A reader that needs to go deeper continues the same scan; its requests are
    counted under :func:`activity_log_owner`."""

    def __init__(self, ctx: RunContext) -> None:
        self.ctx = ctx
        self.table = activity_log_owner(ctx.metrics_periods)
        self._lock = threading.Lock()
        self._pages: Iterator[dict[str, Any]] | None = None
        self._reached: float = math.inf  # the oldest timestamp scanned so far
        self._done = False
        self._found: dict[str, int] = {}  # delivery id -> newest engagement timestamp
        self._changed: dict[str, int] = {}  # cio_id -> newest profile-changing timestamp

    def since(self, floor: float) -> set[str]:
        """Ids of deliveries with an engagement activity at or after ``floor`` (unix seconds)."""
        with self._lock:
            self._scan_to(floor)
            return {delivery for delivery, stamp in self._found.items() if stamp >= floor}

    def people_changed_since(self, floor: float) -> set[str]:
        """cio_ids of people with a profile-changing activity (``PROFILE_CHANGE_TYPES``) at or after ``floor``."""
        with self._lock:
            self._scan_to(floor)
            return {cio for cio, stamp in self._changed.items() if stamp >= floor}

    def _scan_to(self, floor: float) -> None:
        """Read on until a page reaches below ``floor`` (the caller holds the lock)."""
        if self._pages is None:
            query = {"limit": CATALOGUE["activities"].page_size}
            self._pages = self.ctx.client.pages("GET", "/v1/activities", query, table=self.table)
        while not self._done and self._reached >= floor:
            payload = next(self._pages, None)
            page = records(payload, "activities") if payload is not None else []
            if not page:
                self._done = True
                break
            for activity in page:
                stamp = int(activity.get("timestamp") or 0)
                delivery = engagement_delivery(activity)
                if delivery and stamp > self._found.get(delivery, -1):
                    self._found[delivery] = stamp
                if activity.get("type") in PROFILE_CHANGE_TYPES:
                    cio = (activity.get("customer_identifiers") or {}).get("cio_id")
                    if cio and stamp > self._changed.get(str(cio), -1):
                        self._changed[str(cio)] = stamp
            self._reached = min(self._reached, min(int(a.get("timestamp") or 0) for a in page))


ACTIVITY_LOG = "activity_log"
"""The key of the run's one :class:`ActivityLog` in ``RunContext.shared``."""


def activity_log(ctx: RunContext) -> ActivityLog:
    """The run's one shared scan of the activity log (made on first use)."""
    return ctx.shared(ACTIVITY_LOG, lambda: ActivityLog(ctx))


@dataclass(frozen=True)
class Plan:
    """What one delivery table re-reads for late engagement in this run."""

    spans: dict[str, list[tuple[datetime, datetime]]]
    """Path -> `created` windows to read."""
    fetch: list[str]
    """Delivery ids to fetch one by one (the destination could not be read)."""

    @property
    def oldest(self) -> datetime | None:
        starts = [lower for spans in self.spans.values() for lower, _ in spans]
        return min(starts) if starts else None

    @property
    def requests(self) -> int:
        """At least this many requests (one per window, one per fetched delivery)."""
        return sum(len(spans) for spans in self.spans.values()) + len(self.fetch)


def pages(rows: int) -> int:
    return max(1, math.ceil(rows / PAGE_SIZE))


def plan_spans(seconds: list[int], at: list[int], between: list[int]) -> list[tuple[int, int]]:
    """Windows [lower, upper) of unix seconds covering every target second, at few requests.

    ``seconds`` are the targets' distinct `created` seconds, ascending; ``at[i]`` counts the deliveries
    created in second ``seconds[i]``, ``between[i]`` those strictly between ``seconds[i]`` and
    ``seconds[i + 1]``. A target joins the window before it when reading them together costs fewer
    requests (1000 deliveries a page) than reading them apart (on a tie they stay apart: fewer rows to
    load), and the window stays within 180 days.
    """
    if not seconds:
        return []
    out: list[tuple[int, int]] = []
    first, rows = 0, max(1, at[0])
    for i in range(1, len(seconds)):
        own = max(1, at[i])
        joined = rows + between[i - 1] + own
        fits = seconds[i] + 1 - seconds[first] <= MAX_SPAN.total_seconds()
        if fits and pages(joined) < pages(rows) + pages(own):
            rows = joined
            continue
        out.append((seconds[first], seconds[i - 1] + 1))
        first, rows = i, own
    out.append((seconds[first], seconds[-1] + 1))
    return out


def gap_counts(seconds: list[int], created: Iterator[np.ndarray]) -> tuple[list[int], list[int]]:
    """(at, between) of :func:`plan_spans` from chunks of the stored `created` seconds (any order)."""
    edges = np.asarray(seconds, dtype=np.int64)
    at = np.zeros(len(seconds), dtype=np.int64)
    between = np.zeros(len(seconds), dtype=np.int64)
    for chunk in created:
        position = np.searchsorted(edges, chunk, side="right") - 1
        inside = position >= 0
        position, chunk = position[inside], chunk[inside]
        exact = edges[position] == chunk
        np.add.at(at, position[exact], 1)
        np.add.at(between, position[~exact], 1)
    return at.tolist(), between.tolist()


# -- the destination ---------------------------------------------------------------------------------
def _seconds(value: Any) -> int | None:
    if isinstance(value, datetime):
        return int((value if value.tzinfo else value.replace(tzinfo=timezone.utc)).timestamp())
    if isinstance(value, (int, float)):
        return int(value)
    return None


class StoredDeliveries:
    """The destination's own delivery table: `created` (and parent) of ids, and row counts by second."""

    def __init__(self, table: str, parent_column: str | None) -> None:
        self.table = table
        self.parent_column = parent_column

    def _query(self, sql: str, *args: Any) -> Iterator[tuple[Any, ...]]:
        """Rows of ``sql`` (``%s`` parameters) streamed in chunks; callers read to the end (the lock is held)."""
        pipeline = dlt.current.pipeline()
        with DESTINATION_LOCK, pipeline.sql_client() as client:
            qualified = client.make_qualified_table_name(self.table)
            with client.execute_query(sql.format(table=qualified), *args) as cursor:
                while rows := cursor.fetchmany(10_000):
                    yield from rows

    def lookup(self, ids: list[str]) -> dict[str, tuple[int, Any]]:
        """id -> (created second, parent id or None) of the stored rows among ``ids``."""
        parent = self.parent_column or "NULL"
        found: dict[str, tuple[int, Any]] = {}
        for start in range(0, len(ids), LOOKUP_CHUNK):
            chunk = ids[start : start + LOOKUP_CHUNK]
            sql = f"SELECT id, created, {parent} FROM {{table}} WHERE id IN ({', '.join(['%s'] * len(chunk))})"
            for delivery, created, parent_id in self._query(sql, *chunk):
                second = _seconds(created)
                if second is not None:
                    found[str(delivery)] = (second, parent_id)
        return found

    def created_chunks(self, lower: int, upper: int, parent_id: Any = None) -> Iterator[np.ndarray]:
        """Stored `created` seconds in [lower, upper) (of one parent), in chunks."""
        args: list[Any] = [_utc(lower), _utc(upper)]
        where = "created >= %s AND created < %s"
        if self.parent_column and parent_id is not None:
            where += f" AND {self.parent_column} = %s"
            args.append(int(parent_id))
        chunk: list[int] = []
        for (created,) in self._query(f"SELECT created FROM {{table}} WHERE {where}", *args):
            second = _seconds(created)
            if second is not None:
                chunk.append(second)
            if len(chunk) >= 50_000:
                yield np.asarray(chunk, dtype=np.int64)
                chunk = []
        if chunk:
            yield np.asarray(chunk, dtype=np.int64)


# -- one table's run -----------------------------------------------------------------------------------
class LateEngagement:
    """The late-engagement decision of one delivery table in one run (see the module docstring)."""

    def __init__(self, ctx: RunContext, spec: TableSpec, state: dict[str, Any], incremental: bool) -> None:
        self.ctx = ctx
        self.spec = spec
        self.state = state
        self.now = time.time()
        since = state.get("late_since")
        deep_at = state.get("deep_at")
        self.active = incremental and not ctx.interval.bounded
        self.since: float | None = float(since) if since is not None and self.active else None
        stale_log = self.since is None or self.now - self.since > ACTIVITY_RETENTION - CLOCK_MARGIN
        overdue = deep_at is None or self.now - float(deep_at) > ctx.messages_deep_reread_days * 86400
        self.deep = self.active and (overdue or stale_log)
        if not ctx.interval.bounded:  # committed only with this run's load; a backfill moves nothing
            state["late_since"] = self.now
            if self.deep or not incremental:  # a first run reads everything: as good as a deep re-read
                state["deep_at"] = self.now

    def start(self, start: datetime) -> datetime:
        """The start of the run's normal window: deeper when a deep re-read is due."""
        if not self.deep:
            return start
        deep = datetime.fromtimestamp(self.now, timezone.utc) - timedelta(days=self.ctx.messages_deep_lookback_days)
        return min(start, deep)

    def plan(self, normal_start: datetime) -> Plan:
        """The windows (and deliveries) to re-read: stale deliveries with engagement since the last run."""
        if self.since is None:
            return Plan({}, [])
        ids = sorted(activity_log(self.ctx).since(self.since - CLOCK_MARGIN))
        if not ids:
            return Plan({}, [])
        parent_column = PARENT_COLUMNS.get(self.spec.parent or "")
        stored = StoredDeliveries(self.spec.name, parent_column)
        cutoff = int(normal_start.timestamp())
        try:
            found = stored.lookup(ids)
            targets: dict[Any, list[int]] = {}
            for second, parent_id in found.values():
                if second < cutoff:
                    targets.setdefault(parent_id if parent_column else None, []).append(second)
            spans: dict[str, list[tuple[datetime, datetime]]] = {}
            for parent_id, group in targets.items():
                seconds = sorted(set(group))
                at, between = gap_counts(seconds, stored.created_chunks(seconds[0], seconds[-1] + 1, parent_id))
                path = self.spec.path if parent_column is None else self._path(parent_id)
                spans[path] = [(_utc(lo), _utc(hi)) for lo, hi in plan_spans(seconds, at, between)]
            plan = Plan(spans, [])
        except Exception as exc:  # noqa: BLE001 - no readable table: fetch each delivery instead
            logger.info(
                "%s: late engagement: destination not readable (%s); fetching deliveries one by one",
                self.spec.name,
                type(exc).__name__,
            )
            plan = Plan({}, ids)
        logger.info(
            "%s: late engagement: %d deliveries with engagement since the last run, %d request(s) to "
            "re-read the stale ones",
            self.spec.name,
            len(ids),
            plan.requests,
        )
        return plan

    def _path(self, parent_id: Any) -> str:
        field = next(iter(self.spec.path_fields.values()))
        return self.ctx.child_path(self.spec, {field: parent_id})

    def fetched(self, ids: list[str], decoder: PageDecoder) -> Iterator[pa.Table]:
        """Deliveries fetched one by one (``GET /v1/messages/{id}``), those of this table only."""
        parent_column = PARENT_COLUMNS.get(self.spec.parent or "")
        rows: list[dict[str, Any]] = []
        for delivery in ids:
            try:
                payload = self.ctx.client.get(f"/v1/messages/{delivery}", table=self.spec.name)
            except NotFoundError:
                continue  # forgotten or deleted meanwhile
            row = payload.get("message")
            if isinstance(row, dict) and (parent_column is None or row.get(parent_column) is not None):
                rows.append(row)
            if len(rows) >= PAGE_SIZE:
                yield decoder.table(rows)
                rows = []
        if rows:
            yield decoder.table(rows)


def _utc(second: int) -> datetime:
    return datetime.fromtimestamp(second, timezone.utc)


def resource_state(name: str) -> dict[str, Any]:
    """The delivery resource's dlt state (a throwaway dict outside a pipeline run)."""
    try:
        return dlt.current.resource_state(name)
    except Exception:  # noqa: BLE001 - iterated by hand, not inside a pipeline
        return {}
