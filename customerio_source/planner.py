"""`customerio-pipeline plan`: the requests and the time a full and an incremental run will take.

A handful of cheap requests (the workspace-level lists, which every run reads anyway; the workspace's
counts from ``GET /v1/workspaces``; segment sizes from ``…/customer_count``; one page of deliveries per
window; a few pages of activities; the first page of objects and suppressions), then per table the requests
of a full run and of an incremental run, from the same declarations and functions the resources use: page
sizes from the catalogue, the delivery windows of :mod:`customerio_source.deliveries`, the deliveries
estimate and the export plan of :mod:`customerio_source.bulk`.

Estimates, not counts, where the API has no count. A full run's deliveries per 180-day window come from
the density of the window's newest page (``bulk.estimate_deliveries``, what ``--bulk auto`` decides with),
its activities from the density of their newest pages over the API's 30 days.

An incremental run is planned for the state a local pipeline of that name saved (``--pipeline-name``:
cursors, when the previous run started), else for a run ``--since-hours`` after the last, and each part
from its own rows, so a burst of new rows just before planning counts for its own minutes only:

* deliveries: [watermark, now) and the older lookback [watermark - lookback, watermark) are counted in
  sub-windows of a few hours / a day (``start_ts``/``end_ts``), each from its own first page (exact when it
  has no `next`), the cheapest read on to their end within a few pages; the run's first page and its split
  (``deliveries.plan_split``) follow from those rows;
* activities (no time filter, newest first): the log is read on until it reaches the oldest floor an
  incremental run scans down to (the activities cursor; the people-changes and late-engagement scans: the
  previous run's start less ``CLOCK_MARGIN``), within ``ACTIVITY_PAGE_BUDGET`` pages: then every scan's
  pages, the changed people and the engaged deliveries are counted, not estimated;
* late engagement: the run's own plan (``LateEngagement.plan``) fed the sampled delivery ids, reading the
  pipeline's warehouse (``destination``) as the run does; without it, an upper bound.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from . import builders
from .bulk import AUTO_PEOPLE, EXPORT_REQUESTS, delivery_jobs, estimate_deliveries
from .catalogue import CATALOGUE, TableSpec
from .client import CustomerIOClient, RequestStats
from .context import RunContext, records
from .deliveries import SPLIT_MIN_PAGES, delivery_range, parent_windows, plan_split, window_params, windows
from .errors import ConfigError, NotFoundError
from .late_engagement import ACTIVITY_LOG, LateEngagement, activity_log_owner, engagement_delivery
from .people import ATTRIBUTES_BATCH, PEOPLE_PAGE_SIZE
from .people_changes import CLOCK_MARGIN, PROFILE_CHANGE_TYPES
from .small import SUPPRESSION_TYPES, SUPPRESSIONS_PAGE_SIZE

ENGAGED_SAMPLE = 8  # engaged deliveries the planner looks up to see how many are older than the lookback
ACTIVITY_WINDOW = timedelta(days=30)  # "guaranteed to return activity history within the past 30 days"
ACTIVITY_SAMPLE_PAGES = 5  # newest pages of activities read at least, to measure their density
# pages read at most, reading on to the floor of an incremental run's scans (then exact); past it, extrapolated
ACTIVITY_PAGE_BUDGET = 40
# an incremental run's deliveries are counted in sub-windows (incremental_pieces), each from its own pages
DELIVERY_PIECES = 4  # pieces at most in each of the two parts (since the watermark, the older lookback)
SINCE_PIECE = timedelta(hours=6)
LOOKBACK_PIECE = timedelta(days=1)
DELIVERY_READ_BUDGET = 6  # pages read beyond each piece's first, to make the cheapest pieces exact
DEFAULT_RATE_LIMIT = 10.0  # the App API's limit per workspace
DEFAULT_SINCE_HOURS = 24.0  # an incremental run a day after the last, when no local pipeline state says when
# tables whose parent rows list their children (the API's campaign/broadcast `actions`, newsletter `content_ids`)
CHILD_LISTS = {"campaign_actions": "actions", "broadcast_actions": "actions", "newsletter_variants": "content_ids"}


@dataclass
class TablePlan:
    """The requests one table costs in a full and in an incremental run."""

    table: str
    full: int
    incremental: int
    basis: str
    exports_full: int | None = None
    """With exports (`--bulk exports`): the requests of a full run, where the table can be exported."""
    exports: int = 0
    """How many exports that full run creates."""


@dataclass
class Plan:
    tables: list[TablePlan]
    rate_limit: float
    planning_requests: int
    bulk: str
    bulk_choice: dict[str, bool] = field(default_factory=dict)
    """`--bulk auto`: table -> exports chosen (True) or the API path (False)."""
    notes: list[str] = field(default_factory=list)

    def total(self, phase: str) -> int:
        return sum(getattr(t, phase) for t in self.tables)

    def seconds(self, requests: int) -> float | None:
        return requests / self.rate_limit if self.rate_limit > 0 else None


class Sampler:
    """The few requests the plan rests on, each made once."""

    def __init__(self, ctx: RunContext, since_hours: float = DEFAULT_SINCE_HOURS) -> None:
        self.ctx = ctx
        self.since_hours = since_hours
        self._workspace: dict[str, Any] | None = None
        self._pages: Iterator[dict[str, Any]] | None = None  # the activity log, newest first
        self._read = 0  # its pages read
        self._stamps: list[float] = []  # the timestamps sampled, newest first
        self._changing = 0  # sampled activities of profile-changing types
        self._changers: dict[str, float] = {}  # person -> newest profile-changing activity in the sample
        self._engaged: dict[str, float] = {}  # delivery id -> newest engagement activity in the sample
        self._ended = False
        self._old_share: float | None = None
        # the run's one activity-log scan (late_engagement.ActivityLog) is charged to its owner only
        self.log_owner = activity_log_owner(ctx.metrics_periods)
        self._log_floor = math.inf
        self._log_charged = False
        # read on (activities to the scans' floor, deliveries within DELIVERY_READ_BUDGET) only to plan from
        # a previous run's state; a run `since_hours` after the last is extrapolated from the first pages
        self.read_on = True

    def workspace(self) -> dict[str, Any]:
        """This key's workspace from ``GET /v1/workspaces``: its cached counts (`people`, `objects`, ...).
        The API lists every workspace of the account; we assume the first is the key's own."""
        if self._workspace is None:
            rows = self.ctx.list_rows("workspaces")
            self._workspace = rows[0] if rows else {}
        return self._workspace

    def people(self) -> int:
        count = self.workspace().get("people")
        if isinstance(count, int):
            return count
        # no count: the people search, stopping at AUTO_PEOPLE (as `--bulk auto` counts)
        from .bulk import count_people

        return count_people(self.ctx, AUTO_PEOPLE)

    def _read_activities(self, floor: float | None = None) -> None:
        """Read the log newest first: at least ``ACTIVITY_SAMPLE_PAGES`` pages, then on until a row older
        than ``floor`` (unix seconds) is seen, the log ends, or ``ACTIVITY_PAGE_BUDGET`` pages are read."""
        if not self.read_on:
            floor = None
        if self._pages is None:
            spec = CATALOGUE["activities"]
            self._pages = self.ctx.client.pages("GET", spec.path, {"limit": spec.page_size}, table="activities")
        while not self._ended and self._read < ACTIVITY_PAGE_BUDGET:
            reached = min(self._stamps, default=math.inf)
            if self._read >= ACTIVITY_SAMPLE_PAGES and (floor is None or reached < floor):
                return
            payload = next(self._pages, None)
            page = records(payload, CATALOGUE["activities"].envelope) if payload is not None else []
            self._read += 1
            for row in page:
                stamp = row.get("timestamp")
                if not stamp:
                    continue
                self._stamps.append(float(stamp))
                if row.get("type") in PROFILE_CHANGE_TYPES:
                    self._changing += 1
                    person = str((row.get("customer_identifiers") or {}).get("cio_id") or row.get("customer_id"))
                    self._changers[person] = max(self._changers.get(person, 0.0), float(stamp))
                delivery = engagement_delivery(row)
                if delivery:
                    self._engaged[delivery] = max(self._engaged.get(delivery, 0.0), float(stamp))
            if not page or payload is None or not payload.get("next"):
                self._ended = True

    def activities(self) -> tuple[int, float, float]:
        """(rows sampled, seconds they span, share of profile-changing types), from the newest pages of the
        log (:meth:`_read_activities`); when the sample reaches the end, the span is the API's 30 days."""
        self._read_activities()
        stamps = self._stamps
        changing = self._changing / max(1, len(stamps))
        if self._ended or len(stamps) < 2:
            return len(stamps), ACTIVITY_WINDOW.total_seconds(), changing
        # the sample's own span: the workspace's clock need not be ours, nor its newest row now
        return len(stamps) - 1, max(1.0, max(stamps) - min(stamps)), changing

    def activities_in(self, seconds: float) -> float:
        rows, span, _ = self.activities()
        return rows * min(seconds, ACTIVITY_WINDOW.total_seconds()) / span

    def log_scan(self, table: str, floor: float) -> int:
        """Pages of the run's one shared activity-log scan (late engagement, people changes) charged to
        ``table``: all of them to its owner (:func:`late_engagement.activity_log_owner`), to the lowest floor
        its readers planned so far, and none to the other readers."""
        self._log_floor = min(self._log_floor, floor)
        if table != self.log_owner or self._log_charged:
            return 0
        self._log_charged = True
        return self.scan_pages(self._log_floor)

    def floor_of(self, since: datetime | None) -> float:
        """``since`` in unix seconds; without one, ``since_hours`` before the newest sampled activity."""
        if since is not None:
            return since.timestamp()
        self._read_activities()
        return max(self._stamps, default=time.time()) - self.since_hours * 3600

    def activities_since(self, floor: float) -> float:
        """Activities at or after ``floor`` (unix seconds): counted in the sample when it reaches below
        ``floor`` (the sample reads on to it, within ``ACTIVITY_PAGE_BUDGET`` pages), else the counted ones
        plus the density of the sample's older half (:meth:`_tail_density`) over the rest."""
        self._read_activities(floor)
        counted = sum(1 for t in self._stamps if t >= floor)
        if self._ended or not self._stamps or min(self._stamps) < floor:
            return float(counted)
        return counted + self._tail_density() * max(0.0, min(self._stamps) - floor)

    def _tail_density(self) -> float:
        """Activities per second in the older half of the sample: the rows nearest the unread part, so a
        burst at the newest end (many in a second) is not extrapolated past the sample."""
        tail = self._stamps[len(self._stamps) // 2 :]
        return max(0, len(tail) - 1) / max(1.0, tail[0] - tail[-1]) if tail else 0.0

    def scan_pages(self, floor: float) -> int:
        """Pages of a newest-first scan of the log that stops at the first page reaching below ``floor``
        (the activities resource, the people-changes and the late-engagement scans all stop so)."""
        return int(self.activities_since(floor)) // (CATALOGUE["activities"].page_size or 100) + 1

    def changed_people_since(self, floor: float) -> float:
        """People with a profile-changing activity at or after ``floor`` (whose attributes an incremental run
        re-reads): counted in the sample, plus their density (as :meth:`activities_since`) past it."""
        return self._distinct_since(self._changers, floor)

    def engaged_since(self, floor: float) -> float:
        """Deliveries with an engagement activity at or after ``floor``: counted in the sample, plus their
        density (as :meth:`activities_since`) past it."""
        return self._distinct_since(self._engaged, floor)

    def engaged_ids(self, floor: float) -> set[str] | None:
        """The deliveries with an engagement activity at or after ``floor``; None when the sample does not
        reach that far back."""
        self._read_activities(floor)
        if not (self._ended or (self._stamps and min(self._stamps) < floor)):
            return None
        return {delivery for delivery, stamp in self._engaged.items() if stamp >= floor}

    def _distinct_since(self, newest: dict[str, float], floor: float) -> float:
        self._read_activities(floor)
        counted = sum(1 for stamp in newest.values() if stamp >= floor)
        if self._ended or not self._stamps or min(self._stamps) < floor:
            return float(counted)
        per_row = len(newest) / len(self._stamps)  # distinct ones per sampled activity
        return counted + per_row * self._tail_density() * max(0.0, min(self._stamps) - floor)

    def old_share(self, lookback_start: datetime) -> float:
        """The share of engaged deliveries created before ``lookback_start`` (those an incremental run
        re-reads), from ``GET /v1/messages/{id}`` of up to ``ENGAGED_SAMPLE`` of them."""
        if self._old_share is None:
            self.activities()
            newest = sorted(self._engaged, key=self._engaged.__getitem__, reverse=True)[:ENGAGED_SAMPLE]
            old = 0
            for delivery in newest:
                try:
                    message = self.ctx.client.get(f"/v1/messages/{delivery}", table="messages:sample")
                except NotFoundError:
                    continue
                created = (message.get("message") or {}).get("created")
                old += bool(created) and float(created) < lookback_start.timestamp()
            self._old_share = old / len(newest) if newest else 0.0
        return self._old_share

    def first_page(self, method: str, path: str, params: dict[str, Any], body: Any, table: str) -> dict[str, Any]:
        return self.ctx.client.request(method, path, params=params, body=body, table=table)


# -- the one place the deliveries' reading plan is followed ------------------------------------------------
def delivery_windows(
    ctx: RunContext, spec: TableSpec, parent: dict[str, Any] | None = None, start: datetime | None = None
) -> list[tuple[datetime, datetime | None]]:
    """The windows the deliveries resource reads for ``spec`` (one ``parent`` of a per-parent table) from
    ``start`` (None: a first run): :func:`deliveries.delivery_range` then :func:`deliveries.windows`, as
    :func:`deliveries.deliveries_resource` does. When the per-parent range changes there, change it here."""
    lower, upper = delivery_range(ctx, start, ctx.interval.end)
    if parent is not None:
        return parent_windows(parent, lower, upper)
    return list(windows(lower, upper))


def window_requests(rows: float, page_size: int, concurrency: int) -> int:
    """Requests to read one window of ``rows`` deliveries: its pages, plus one partial page per extra piece
    when :func:`deliveries.read_windows` splits it (``plan_split``: pieces of at least SPLIT_MIN_PAGES)."""
    pages = max(1, math.ceil(rows / page_size))
    pieces = min(concurrency, (pages - 1) // SPLIT_MIN_PAGES) if concurrency >= 2 else 0
    return pages + (pieces - 1 if pieces >= 2 else 0)


# -- per table ---------------------------------------------------------------------------------------------
def plan_table(sampler: Sampler, name: str, periods: tuple[str, ...], watermarks: dict[str, datetime]) -> TablePlan:
    ctx = sampler.ctx
    spec = CATALOGUE[name]
    builder = spec.builder
    stats = ctx.client.stats
    if builder is None and not spec.per_parent:
        before = stats.by_table.get(name, 0)
        rows = ctx.list_rows(name)  # a list a run reads in full anyway: its cost is what it took now
        cost = max(1, stats.by_table.get(name, 0) - before) if name != "workspaces" else 1
        return TablePlan(name, cost, cost, f"{len(rows)} rows, {'paged' if spec.paginated else 'one response'}")
    if builder is None and spec.arrow_row:  # segment members: the API counts them
        parents = ctx.list_rows(spec.parent)  # type: ignore[arg-type]
        cost = 0
        for parent in parents:
            count = ctx.client.get(ctx.child_path(_count_spec(spec), parent), table=f"{name}:count").get("count")
            cost += max(1, math.ceil((count or 0) / (spec.page_size or 1000)))
        return TablePlan(name, cost, cost, f"{len(parents)} {spec.parent}, members counted")
    if builder is None:
        parents = ctx.list_rows(spec.parent)  # type: ignore[arg-type]
        cost = sum(_child_pages(spec, parent) for parent in parents)
        return TablePlan(name, cost, cost, f"{len(parents)} {spec.parent}")
    if builder is builders.metrics:
        parents = _parents_of(sampler, spec)
        cost = parents * max(1, len(periods))
        return TablePlan(name, cost, cost, f"{parents} {spec.parent} x {len(periods)} period(s)")
    if builder is builders.deliveries:
        return _deliveries(sampler, spec, watermarks)
    if builder is builders.activities:
        rows, _, _ = sampler.activities()
        full = math.ceil(sampler.activities_in(ACTIVITY_WINDOW.total_seconds()) / (spec.page_size or 100))
        incremental = sampler.scan_pages(sampler.floor_of(watermarks.get(name)))  # the cursor's start
        return TablePlan(
            name,
            max(1, full),
            min(max(1, full), incremental),
            f"~{full * (spec.page_size or 100):,} rows in 30 days (from {rows} sampled)",
        )
    if builder is builders.customers:
        people = sampler.people()
        cost = math.ceil(max(1, people) / PEOPLE_PAGE_SIZE)
        return TablePlan(name, cost, cost, f"{people:,} people")
    if builder is builders.customer_attributes:
        people = sampler.people()
        full = math.ceil(people / ATTRIBUTES_BATCH)
        # the people-changes scan: down to the previous run's start less CLOCK_MARGIN (people_changes)
        since = watermarks.get("customer_attributes:since") or watermarks.get("activities")
        floor = sampler.floor_of(since) - CLOCK_MARGIN
        scan = sampler.log_scan(name, floor)  # shared with the delivery tables' late engagement
        # re-read: people with a profile change since then, and people the warehouse holds no attributes for
        known = _people_in_warehouse() if since is not None else None
        new = max(0, people - known) if known is not None else 0
        changed = math.ceil((sampler.changed_people_since(floor) + new) / ATTRIBUTES_BATCH)
        exports = EXPORT_REQUESTS + 2  # one customers export + the 2 requests that discover attribute names
        return TablePlan(
            name,
            full,
            min(full, scan + changed),
            f"{people:,} people / {ATTRIBUTES_BATCH}",
            exports_full=exports,
            exports=1,
        )
    if builder is builders.per_person:
        people = sampler.people()
        series = len(delivery_windows(ctx, CATALOGUE["messages"])) if name == "customer_messages" else 1
        return TablePlan(name, people * series, people * series, f"{people:,} people x {series}")
    if builder is builders.objects:
        return _objects(sampler, name)
    if builder is builders.suppressions:
        cost = 0
        for kind in SUPPRESSION_TYPES:
            payload = sampler.first_page(
                "GET", f"/v1/esp/suppression/{kind}", {"limit": SUPPRESSIONS_PAGE_SIZE, "offset": 0}, None, name
            )
            cost += 1 if len(payload.get("suppressions") or []) < SUPPRESSIONS_PAGE_SIZE else 2
        return TablePlan(name, cost, cost, "first page per type (at least)")
    return TablePlan(name, 1, 1, "one request")


def _people_in_warehouse() -> int | None:
    """Live rows of the attached pipeline's `customer_attributes` (the people an incremental run does not
    re-read as new, :mod:`known_people`), or None when its warehouse cannot be read from here."""
    import dlt

    try:
        with dlt.current.pipeline().sql_client() as client:
            table = client.make_qualified_table_name("customer_attributes")
            rows = client.execute_sql(f"SELECT COUNT(*) FROM {table} WHERE _cio_deleted_at IS NULL")
        return int(rows[0][0])
    except Exception:  # noqa: BLE001 - no pipeline, no table, or no such column: not counted
        return None


def _count_spec(spec: TableSpec) -> TableSpec:
    from dataclasses import replace

    return replace(spec, path=spec.path.rsplit("/", 1)[0] + "/customer_count")


def _child_pages(spec: TableSpec, parent: dict[str, Any]) -> int:
    if not spec.paginated or not spec.page_size:
        return 1
    listed = parent.get(CHILD_LISTS.get(spec.name, ""))
    return max(1, math.ceil(len(listed) / spec.page_size)) if isinstance(listed, list) else 1


def _parents_of(sampler: Sampler, spec: TableSpec) -> int:
    """Parents of a metrics table; child parents (actions, variants) counted from their parents' rows."""
    parent = CATALOGUE[spec.parent]  # type: ignore[index]
    if not parent.per_parent:
        return len(sampler.ctx.list_rows(parent.name))
    grand = sampler.ctx.list_rows(parent.parent)  # type: ignore[arg-type]
    field_name = CHILD_LISTS.get(parent.name)
    if field_name and all(isinstance(row.get(field_name), list) for row in grand):
        return sum(len(row[field_name]) for row in grand)
    return len(sampler.ctx.list_rows(parent.name))  # one request per parent: read the children


def _since_seconds(watermark: datetime | None, sampler: Sampler) -> float:
    if watermark is None:
        return sampler.since_hours * 3600
    return max(0.0, (datetime.now(timezone.utc) - watermark).total_seconds())


class _Piece:
    """One `created` window [lower, upper) of `GET /v1/messages`, read page by page (newest first)."""

    def __init__(self, ctx: RunContext, lower: datetime, upper: datetime | None, now: float) -> None:
        self.lower = lower.timestamp()
        self.open = upper is None
        self.upper = upper.timestamp() if upper is not None else now
        query = {"limit": CATALOGUE["messages"].page_size or 1000, **window_params(lower, upper)}
        self._pages = ctx.client.pages("GET", "/v1/messages", query, table="messages")
        self.stamps: list[float] = []  # `created` of the rows read in the window
        self.oldest = self.upper
        self.done = False

    def read(self) -> None:
        payload = next(self._pages, None)
        page = records(payload, "messages") if payload is not None else []
        created = [float(row["created"]) for row in page if row.get("created") is not None]
        if self.open and created:  # the server's clock, not ours, bounds an open window
            self.upper = max(self.upper, max(created) + 1)
        self.stamps.extend(t for t in created if self.lower <= t < self.upper)
        self.oldest = min([self.oldest, *created])
        self.done = payload is None or not page or not payload.get("next")

    def estimate(self) -> float:
        """Exact once read to the end; else the rows read plus their density over the rest of the window."""
        return self.rows_between(-math.inf, math.inf)

    def rows_between(self, lower: float, upper: float) -> float:
        """Its rows created in [lower, upper): those read, plus (while open) the density of those read over
        the part of [lower, upper) it has not read."""
        counted = sum(1 for t in self.stamps if lower <= t < upper)
        if self.done or self.oldest <= self.lower:
            return float(counted)
        unread = max(0.0, min(upper, self.oldest) - max(lower, self.lower))
        return counted + len(self.stamps) * unread / max(1.0, self.upper - self.oldest)


def count_deliveries(
    ctx: RunContext, pieces: list[tuple[datetime, datetime | None]], budget: int = DELIVERY_READ_BUDGET
) -> list[_Piece]:
    """Deliveries created in each of ``pieces``: the first page of each (an exact count when it has no
    `next`), then up to ``budget`` more pages, each read on in the piece with the fewest estimated pages
    left (made exact when it ends); a piece still open counts its rows plus their density over the rest.
    Each piece extrapolates only its own density, so a burst in one (new deliveries minutes before
    planning) does not count for the others' span."""
    now = time.time()
    probes = [_Piece(ctx, lower, upper, now) for lower, upper in pieces]
    for probe in probes:
        probe.read()
    for _ in range(budget):
        open_ = [p for p in probes if not p.done]
        if not open_:
            break
        min(open_, key=_Piece.estimate).read()
    return probes


def run_window_requests(probes: list[_Piece], lower: datetime, upper: datetime | None, ctx: RunContext) -> int:
    """Requests the run makes for one window [lower, upper) of deliveries counted in ``probes``: as
    :func:`deliveries.read_windows` reads it, its first page, then its rest read on or split in pieces by
    :func:`deliveries.plan_split` from that page's density (the newest 1000 rows, known from the probes)."""
    page = CATALOGUE["messages"].page_size or 1000
    low, high = lower.timestamp(), upper.timestamp() if upper is not None else math.inf
    rows = sum(p.rows_between(low, high) for p in probes)
    if rows <= page:
        return 1
    first = sorted((t for p in probes for t in p.stamps if low <= t < high), reverse=True)[:page]
    if len(first) < page:  # the probes do not hold the run's first page
        return window_requests(rows, page, ctx.concurrency)
    utc = timezone.utc
    split = plan_split(
        len(first), datetime.fromtimestamp(first[0], utc), datetime.fromtimestamp(first[-1], utc), lower,
        ctx.concurrency, page,
    )
    if not split:
        return math.ceil(rows / page)
    return 1 + sum(
        max(1, math.ceil(sum(p.rows_between(a.timestamp(), b.timestamp()) for p in probes) / page)) for a, b in split
    )


def _split(lower: datetime, upper: datetime, size: timedelta) -> list[tuple[datetime, datetime]]:
    """[lower, upper) in at most DELIVERY_PIECES equal pieces of about ``size``, newest first."""
    if upper <= lower:
        return []
    count = max(1, min(DELIVERY_PIECES, math.ceil((upper - lower) / size)))
    step = (upper - lower) / count
    return [(lower + step * i, lower + step * (i + 1)) for i in reversed(range(count))]


def incremental_pieces(mark: datetime, start: datetime) -> list[tuple[datetime, datetime | None]]:
    """The sub-windows an incremental run's deliveries are counted in: [mark, now) (since the previous
    run's watermark) in pieces of ~SINCE_PIECE, and the older lookback [start, mark) in pieces of
    ~LOOKBACK_PIECE; the newest piece open-ended, as the run's newest window is."""
    now = datetime.now(timezone.utc)
    since = _split(mark, max(now, mark), SINCE_PIECE)
    pieces: list[tuple[datetime, datetime | None]] = [(since[0][0], None), *since[1:]] if since else [(mark, None)]
    return pieces + list(_split(start, mark, LOOKBACK_PIECE))


def _deliveries(sampler: Sampler, spec: TableSpec, marks: dict[str, datetime]) -> TablePlan:
    ctx = sampler.ctx
    page = spec.page_size or 1000
    watermark = marks.get(spec.name)
    if spec.parent is not None:  # per-parent lists (opt-in): every window of every parent, at least a page
        parents = ctx.list_rows(spec.parent)
        cost = sum(len(delivery_windows(ctx, spec, parent)) for parent in parents)
        return TablePlan(spec.name, cost, len(parents), f"{len(parents)} {spec.parent} x windows")
    now = datetime.now(timezone.utc)
    since_run = _since_seconds(watermark, sampler)
    mark = now - timedelta(seconds=since_run)  # the watermark (or `since_hours` ago)
    start = mark - timedelta(days=ctx.messages_lookback_days)  # the cursor's start: watermark less the lag
    late = _late_decision(ctx, spec, marks)
    if late is not None:  # deeper when the run's deep re-read is due
        start = late.start(start)
    probes = count_deliveries(ctx, incremental_pieces(mark, start), DELIVERY_READ_BUDGET if sampler.read_on else 0)
    incremental = sum(run_window_requests(probes, lo, up, ctx) for lo, up in delivery_windows(ctx, spec, start=start))
    full = 0
    rows_total = 0
    for lower, upper in delivery_windows(ctx, spec):
        if watermark is None or (upper is not None and upper <= start):
            rows = estimate_deliveries(ctx, lower, upper)
        else:  # with a previous run: the part since the lookback's start as counted above, the rest apart
            high = upper.timestamp() if upper is not None else math.inf
            counted = sum(p.rows_between(max(lower, start).timestamp(), high) for p in probes)
            rows = int(counted) + (estimate_deliveries(ctx, lower, start) if lower < start else 0)
        rows_total += rows
        full += window_requests(rows, page, ctx.concurrency)
    late_requests = _late_engagement(sampler, spec, marks, start, late)
    exports, requests = _export_requests(ctx, spec)
    basis = (
        f"~{rows_total:,} deliveries; incremental ~{sum(p.estimate() for p in probes):,.0f} since the "
        f"watermark less the lookback, +{late_requests} late-engagement requests"
    )
    return TablePlan(
        spec.name, full, incremental + late_requests, basis, exports_full=requests, exports=exports
    )


def _late_decision(ctx: RunContext, spec: TableSpec, marks: dict[str, datetime]) -> LateEngagement | None:
    """The run's own late-engagement decision (deep re-read due or not) from the table's saved state (a
    copy: nothing is written back); None without saved state."""
    state = {key: marks[f"{spec.name}:{key}"].timestamp() for key in ("late_since", "deep_at")
             if f"{spec.name}:{key}" in marks}
    if "late_since" not in state:
        return None
    return LateEngagement(ctx, spec, state, incremental=True)


def _late_engagement(
    sampler: Sampler, spec: TableSpec, marks: dict[str, datetime], normal_start: datetime, late: LateEngagement | None
) -> int:
    """An incremental run's late-engagement requests (:mod:`late_engagement`): the one activity-log scan
    down to the previous run's start less CLOCK_MARGIN (charged to its owner, `Sampler.log_scan`), plus the
    re-reads of engaged deliveries older than the run's window.

    When the activity sample reaches that floor and the pipeline's state is here, the re-reads are the
    run's own plan (``LateEngagement.plan``: the warehouse's `created` of the engaged deliveries, windows
    merged as the run merges them) fed the sampled ids. Else about one re-read per engaged delivery, the
    share older than the window looked up for a few (an upper bound: the run merges neighbours)."""
    floor = sampler.floor_of(marks.get(f"{spec.name}:late_since") or marks.get(spec.name)) - CLOCK_MARGIN
    cost = 0
    cost += sampler.log_scan(spec.name, floor)
    ids = sampler.engaged_ids(floor)
    if late is not None and ids is not None:
        sampler.ctx.shared(ACTIVITY_LOG, lambda: _SampledLog(ids))
        plan = late.plan(normal_start)
        if not plan.fetch:  # else the warehouse is not readable from here: the estimate below
            return cost + plan.requests
    engaged = sampler.engaged_since(floor)
    if engaged:
        cost += math.ceil(engaged * sampler.old_share(normal_start))
    return cost


class _SampledLog:
    """The activity log as ``LateEngagement.plan`` asks it (``since``), answered from the planner's sample."""

    def __init__(self, ids: set[str]) -> None:
        self.ids = ids

    def since(self, floor: float) -> set[str]:
        return self.ids


def _export_requests(ctx: RunContext, spec: TableSpec) -> tuple[int, int]:
    """A full run through exports: (exports, requests): ~EXPORT_REQUESTS per export (bulk.delivery_jobs),
    broadcasts by the API (one request per window at least)."""
    start, end = delivery_range(ctx, None, ctx.interval.end)
    jobs = delivery_jobs(ctx, spec, start, end, settings=None)  # type: ignore[arg-type] - jobs are not run
    broadcasts = len(ctx.list_rows("broadcasts")) if spec.parent is None else 0
    exports = len(jobs) - broadcasts
    return exports, exports * EXPORT_REQUESTS + broadcasts * len(delivery_windows(ctx, spec))


def _objects(sampler: Sampler, name: str) -> TablePlan:
    ctx = sampler.ctx
    from .objects import _match_all  # the resource's own filter

    types = ctx.list_rows("object_types")
    spec = CATALOGUE[name]
    total = sampler.workspace().get("objects")
    if name != "objects":  # per-object tables (opt-in): one request per object
        count = total if isinstance(total, int) else len(types)
        return TablePlan(name, count, count, "one request per object")
    cost = 0
    for kind in types:
        type_id = str(kind["id"])
        payload = sampler.first_page(
            "POST",
            "/v1/objects",
            {"limit": spec.page_size},
            {"object_type_id": type_id, "filter": _match_all(type_id)},
            name,
        )
        if not payload.get("next"):
            cost += 1
        elif isinstance(total, int) and types:
            cost += max(2, math.ceil(total / len(types) / (spec.page_size or 1000)))
        else:
            cost += 2
    return TablePlan(name, cost, cost, f"{len(types)} object types")


# -- the plan ----------------------------------------------------------------------------------------------
def saved_watermarks(pipeline_name: str | None, destination: Any = None) -> dict[str, datetime]:
    """What a local pipeline of this name saved: per table its cursor (deliveries `created`, activities
    `timestamp`), and under ``<table>:late_since``, ``<table>:deep_at`` (delivery tables) and
    ``customer_attributes:since`` when the previous run started and last re-read deeply. The pipeline is
    attached (with ``destination``, where its warehouse is: the late-engagement plan reads it)."""
    if not pipeline_name:
        return {}
    import dlt

    try:
        pipeline = dlt.attach(pipeline_name=pipeline_name, destination=destination)
    except Exception:  # noqa: BLE001 - no such pipeline here: plan without state
        return {}
    out: dict[str, datetime] = {}
    resources = pipeline.state.get("sources", {}).get("customerio", {}).get("resources", {})
    for table, state in resources.items():
        if not isinstance(state, dict):
            continue
        for cursor in ("created", "timestamp"):  # deliveries, activities
            value = (state.get("incremental") or {}).get(cursor, {}).get("last_value")
            if isinstance(value, datetime):
                out[table] = value
        # when the previous run started (late_engagement, people_changes) and last re-read deeply
        for key in ("late_since", "deep_at", "since"):
            stamp = state.get(key)
            if isinstance(stamp, (int, float)) and not isinstance(stamp, bool):
                out[f"{table}:{key}"] = datetime.fromtimestamp(float(stamp), timezone.utc)
    return out


def make_plan(
    ctx: RunContext,
    selected: dict[str, tuple[str, ...]],
    bulk: str = "api",
    rate_limit: float = DEFAULT_RATE_LIMIT,
    watermarks: dict[str, datetime] | None = None,
    since_hours: float = DEFAULT_SINCE_HOURS,
) -> Plan:
    """The plan of a run of ``selected`` tables (what :func:`source.select_tables` returns)."""
    sampler = Sampler(ctx, since_hours)
    sampler.read_on = bool(watermarks)
    tables = [plan_table(sampler, name, periods, watermarks or {}) for name, periods in selected.items()]
    plan = Plan(tables, rate_limit, ctx.client.stats.total, bulk)
    for entry in tables:
        if entry.exports_full is None:
            continue
        if bulk == "exports":
            plan.bulk_choice[entry.table] = True
        elif bulk == "auto":
            if entry.table == "customer_attributes":
                plan.bulk_choice[entry.table] = sampler.people() >= AUTO_PEOPLE
            else:
                from .bulk import AUTO_MIN_API_REQUESTS

                floor = max(AUTO_MIN_API_REQUESTS, 2 * EXPORT_REQUESTS * entry.exports)  # bulk.exports_pay_off
                plan.bulk_choice[entry.table] = entry.full >= floor
    if not watermarks:
        plan.notes.append(f"incremental: a run {since_hours:g} h after the previous one (no local pipeline state)")
    return plan


def _bulk_cost(plan: Plan, entry: TablePlan) -> int:
    return entry.exports_full if plan.bulk_choice.get(entry.table) and entry.exports_full is not None else entry.full


def render(plan: Plan) -> str:
    """The plan as a table, with totals and the bulk comparison."""

    def when(requests: int) -> str:
        seconds = plan.seconds(requests)
        return "–" if seconds is None else duration(seconds)

    width = max([len(t.table) for t in plan.tables] + [5])
    lines = [
        f"{'table'.ljust(width)}  {'full req':>9}  {'full time':>9}  {'incr req':>9}  {'incr time':>9}  "
        f"{'exports':>8}  basis"
    ]
    for t in plan.tables:
        exports = "–" if t.exports_full is None else str(t.exports_full)
        lines.append(
            f"{t.table.ljust(width)}  {t.full:>9,}  {when(t.full):>9}  {t.incremental:>9,}  "
            f"{when(t.incremental):>9}  {exports:>8}  {t.basis}"
        )
    full, incremental = plan.total("full"), plan.total("incremental")
    lines.append(f"{'total'.ljust(width)}  {full:>9,}  {when(full):>9}  {incremental:>9,}  {when(incremental):>9}")
    rate = f"{plan.rate_limit:g} requests/s" if plan.rate_limit > 0 else "no rate limit (times not computed)"
    lines.append(f"at {rate}; planning took {plan.planning_requests} requests")
    exportable = [t for t in plan.tables if t.exports_full is not None]
    if exportable:
        with_exports = sum(t.exports_full if t.exports_full is not None else t.full for t in plan.tables)
        cheaper = [t.table for t in exportable if (t.exports_full or 0) < t.full]
        lines.append(
            f"bulk exports (--bulk exports): full run {with_exports:,} requests ({when(with_exports)} of requests, "
            f"plus the exports' own processing time); cheaper for: {', '.join(cheaper) or 'no table'}"
        )
        if plan.bulk == "auto":
            chosen = sum(_bulk_cost(plan, t) for t in plan.tables)
            picks = ", ".join(f"{t}: {'exports' if v else 'API'}" for t, v in plan.bulk_choice.items())
            lines.append(f"--bulk auto chooses {picks}: full run {chosen:,} requests ({when(chosen)})")
    lines.extend(plan.notes)
    return "\n".join(lines)


def duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f}s"
    if seconds < 5400:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.1f}h"


def main(argv: Sequence[str]) -> int:
    from .cli import DESTINATIONS, destination_for, failure_report
    from .source import API_KEY_ENV, select_tables

    parser = argparse.ArgumentParser(prog="customerio-pipeline plan", description=__doc__.splitlines()[0])
    parser.add_argument("--tables", default="all")
    parser.add_argument("--bulk", default="api", choices=("exports", "api", "auto"))
    parser.add_argument("--region", default="us", choices=("us", "eu"))
    parser.add_argument("--base-url", default=None)
    parser.add_argument("--rate-limit", type=float, default=DEFAULT_RATE_LIMIT, help="requests/s (default 10)")
    parser.add_argument("--pipeline-name", default="customerio", help="plan the incremental run from its state")
    parser.add_argument("--destination", default="duckdb", choices=DESTINATIONS, help="the pipeline's (as for a load)")
    parser.add_argument("--dataset-name", default="customerio", help="the pipeline's dataset (as for a load)")
    parser.add_argument(
        "--since-hours",
        type=float,
        default=DEFAULT_SINCE_HOURS,
        help="without local state: hours between runs (default 24)",
    )
    parser.add_argument("--debug", action="store_true")
    args = parser.parse_args(list(argv))
    try:
        plan = plan_run(
            api_key=os.environ.get(API_KEY_ENV, ""),
            tables=args.tables,
            bulk=args.bulk,
            region=args.region,
            base_url=args.base_url,
            rate_limit=args.rate_limit,
            pipeline_name=args.pipeline_name,
            since_hours=args.since_hours,
            selector=select_tables,
            destination=destination_for(args.destination, args.pipeline_name, args.dataset_name),
        )
    except Exception as exc:  # noqa: BLE001 - one line, the load's exit codes
        if args.debug:
            raise
        message, code = failure_report(exc, list(argv))
        print(f"error: {message}", file=sys.stderr)
        return code
    print(render(plan))
    return 0


def plan_run(
    api_key: str,
    tables: str = "all",
    bulk: str = "api",
    region: str = "us",
    base_url: str | None = None,
    rate_limit: float = DEFAULT_RATE_LIMIT,
    pipeline_name: str | None = None,
    since_hours: float = DEFAULT_SINCE_HOURS,
    selector: Any = None,
    stats: RequestStats | None = None,
    destination: Any = None,
) -> Plan:
    """Plan a run against a workspace (the planning requests are not rate-limited below ``rate_limit``).
    ``destination``: the pipeline's (a dlt destination or its name), to read its warehouse where the plan
    uses it (late engagement)."""
    if selector is None:
        from .source import select_tables as selector
    if not api_key:
        raise ConfigError("no API key: set CUSTOMERIO_APP_API_KEY")
    selected = selector(tables, ("days",))
    client = CustomerIOClient(
        api_key, region=region, base_url=base_url, rate_limit=rate_limit, max_attempts=3, stats=stats or RequestStats()
    )
    ctx = RunContext(client=client, metrics_periods=selected)
    return make_plan(ctx, selected, bulk, rate_limit, saved_watermarks(pipeline_name, destination), since_hours)
