"""Deliveries (`messages` and the per-parent message lists), read by `created` in windows.

Deliveries have no `updated` field, their metric timestamps (opened, clicked, ...) arrive after creation,
and one request covers at most six months. So the source reads half-open windows of `created` of at most
180 days (`start_ts`/`end_ts`), any interval can be backfilled, and an incremental run re-reads a lookback
window (``messages_lookback_days``) before its watermark and merges on `id` so late metrics land.

A first run with no interval starts at the earliest `created` of any campaign, broadcast, newsletter or
transactional message: no delivery can be older than the message that sent it. For the same reason the
per-parent tables (`campaign_messages`, ...) read each parent's windows from that parent's own `created`
(:func:`parent_windows`), not from the history start.

Deliveries older than the lookback whose metrics changed since the previous run (late opens, clicks,
conversions) are found in the activity log and re-read (:mod:`customerio_source.late_engagement`).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import dlt
import pyarrow as pa
import pyarrow.compute as pc
from dlt.sources import DltResource

from .arrow_pages import TIMESTAMP, PageDecoder, batched_tables
from .catalogue import TableSpec
from .context import EPOCH, RunContext, Spawn, interleave
from .errors import NotFoundError
from .late_engagement import LateEngagement, resource_state
from .resources import merge_resource
from .transform import arrow_load_id_column, to_datetime

# dlt imports its Arrow and pandas helpers lazily, and two extract threads importing one at the same moment
# race ("partially initialized module"): imported here, once, for their side effect only; where a dlt
# version moves them, nothing is lost but this guard
for _helper in ("dlt.common.libs.pyarrow", "dlt.common.libs.pandas"):
    try:
        importlib.import_module(_helper)
    except ImportError:  # pragma: no cover - pandas is optional; a module moved in another dlt version
        pass

WINDOW = timedelta(days=180)  # the API truncates ranges over six months
OPEN_END_MARGIN = timedelta(days=1)  # an open newest window spans [now + margin - 180 days, server's now]
SENDING_PARENTS = ("campaigns", "broadcasts", "newsletters", "transactional_messages")
# Assumption (the spec is silent): no delivery is created before the message that sends it; a parent's
# windows start this much before its `created` all the same, for clocks that disagree by seconds.
PARENT_MARGIN = timedelta(hours=1)


def windows(
    start: datetime, end: datetime | None, size: timedelta = WINDOW, now: datetime | None = None
) -> Iterator[tuple[datetime, datetime | None]]:
    """Split [start, end) into consecutive half-open windows of at most ``size``, newest first.

    With ``end=None`` the newest window is open-ended (upper bound None): the server's clock, not ours,
    decides what "now" is, so deliveries stamped a little ahead of the local clock are not missed.
    """
    upper: datetime | None = end
    reference = end or (now or datetime.now(timezone.utc)) + OPEN_END_MARGIN
    while reference > start:
        lower = max(start, reference - size)
        yield lower, upper
        upper = reference = lower


def window_params(lower: datetime, upper: datetime | None) -> dict[str, int]:
    """`start_ts`/`end_ts` for a window, one second wider on the left (inclusivity is not documented);
    callers keep rows with lower <= created < upper. An open window sends no `end_ts`."""
    params = {"start_ts": int(lower.timestamp()) - 1}
    if upper is not None:
        params["end_ts"] = int(upper.timestamp())
    return params


def earliest_send_time(ctx: RunContext) -> datetime | None:
    """The oldest `created` among everything that sends deliveries (a safe lower bound for history)."""
    created = [parent_created(row) for table in SENDING_PARENTS for row in ctx.list_rows(table)]
    return min((value for value in created if value is not None), default=None)


def parent_created(parent: dict[str, Any]) -> datetime | None:
    """When a campaign, broadcast, newsletter (`created`) or transactional message (`created_at`) was made."""
    value = to_datetime(parent.get("created") or parent.get("created_at"))
    return value if isinstance(value, datetime) else None


def parent_windows(
    parent: dict[str, Any], start: datetime, end: datetime | None, now: datetime | None = None
) -> list[tuple[datetime, datetime | None]]:
    """The `created` windows a per-parent delivery table reads for one parent, newest first.

    [start, end) narrowed to begin at the parent's creation (less :data:`PARENT_MARGIN`), then cut into
    windows of at most 180 days (:func:`windows`); [] when the parent was created after ``end``. One request
    per window at least, more when a window holds over 1000 deliveries: the request planner calls this to
    predict a run's requests (``now`` fixes the open newest window's reference, as in :func:`windows`).
    """
    created = parent_created(parent)
    if created is not None:
        start = max(start, created - PARENT_MARGIN)
    if end is not None and start >= end:
        return []
    return list(windows(start, end, now=now))


def delivery_range(ctx: RunContext, start: datetime | None, end: datetime | None) -> tuple[datetime, datetime | None]:
    """The [start, end) to read: an open start becomes the earliest send time; an open end stays open."""
    if start is None or start <= EPOCH:
        start = earliest_send_time(ctx) or datetime.now(timezone.utc) - WINDOW + OPEN_END_MARGIN
    return start, end


DELIVERY_SCHEMA = {
    "id": "text",
    "deduplicate_id": "text",
    "created": "timestamp",
    "customer_id": "text",
    "recipient": "text",
    "subject": "text",
    "failure_message": "text",
    "forgotten": "bool",
    "trigger_event_id": "text",
    "type": "text",
    "campaign_id": "int",
    "action_id": "int",
    "parent_action_id": "int",
    "newsletter_id": "int",
    "content_id": "int",
    "broadcast_id": "int",
    "transactional_message_id": "int",
    "message_template_id": "int",
}
# the 12 metrics of the `metric` filter, the series names the current spec adds, in a fixed order
DELIVERY_METRICS = (
    "attempted",
    "sent",
    "delivered",
    "opened",
    "clicked",
    "converted",
    "bounced",
    "spammed",
    "unsubscribed",
    "dropped",
    "failed",
    "undeliverable",
    "human_opened",
    "human_clicked",
    "machine_opened",
    "machine_clicked",
)
DELIVERY_NESTED = {
    "metrics": ("timestamp", DELIVERY_METRICS),
    "customer_identifiers": ("text", ("id", "email", "cio_id")),
}
# A window is split only when at least this many pages per piece remain after its first page.
SPLIT_MIN_PAGES = 4


def read_windows(
    ctx: RunContext,
    spec: TableSpec,
    path: str,
    start: datetime,
    end: datetime | None,
    spans: list[tuple[datetime, datetime | None]] | None = None,
) -> Iterator[pa.Table]:
    """Every delivery created in [start, end) under ``path``, as Arrow tables.

    Windows of at most 180 days (or the given ``spans``) are read concurrently. A window whose first page
    shows that many pages remain is split: the rest of its range is cut into pieces read in parallel (each
    piece costs at most one partial page more than reading on with one cursor), so small reads stay at the
    request floor and big ones use the whole request budget.
    """
    page_size = spec.page_size or 1000
    decoder = PageDecoder(spec.envelope, DELIVERY_SCHEMA, DELIVERY_NESTED, required=spec.primary_key)

    def job(lower: datetime, upper: datetime | None, may_split: bool, skip: frozenset[str] = frozenset()):
        def pages() -> Iterator[Any]:
            query = {"limit": page_size, **window_params(lower, upper)}
            first = True
            for payload in ctx.client.pages("GET", path, query, table=spec.name, decode=decoder):
                raw = payload.get(spec.envelope)
                if raw is None:
                    return
                page = raw.filter(in_window(raw, lower, upper, skip))
                if page.num_rows:
                    yield page
                if not raw.num_rows:
                    return
                if first and may_split and payload.get("next"):
                    created = raw.column("created")
                    oldest = pc.min(created)
                    pieces = plan_split(raw.num_rows, pc.max(created).as_py(), oldest.as_py(), lower,
                                        ctx.concurrency, page_size)
                    if pieces:
                        seen = frozenset(raw.filter(pc.equal(created, oldest)).column("id").to_pylist())
                        yield Spawn(
                            [job(a, b, False, seen if i == 0 else frozenset()) for i, (a, b) in enumerate(pieces)]
                        )
                        return  # the pieces cover the rest of this window
                first = False

        return pages

    jobs = [job(lower, upper, True) for lower, upper in (spans if spans is not None else windows(start, end))]
    yield from batched_tables(interleave(jobs, ctx.concurrency))


def in_window(page: pa.Table, lower: datetime, upper: datetime | None, skip: frozenset[str]) -> pa.Array:
    """The rows of a page with lower <= created < upper whose id is not in ``skip`` (already read)."""
    created = page.column("created")
    mask = pc.greater_equal(created, pa.scalar(lower, TIMESTAMP))
    if upper is not None:
        mask = pc.and_(mask, pc.less(created, pa.scalar(upper, TIMESTAMP)))
    if skip:
        mask = pc.and_(mask, pc.invert(pc.is_in(page.column("id"), value_set=pa.array(sorted(skip), pa.string()))))
    return pc.fill_null(mask, False)


def plan_split(
    count: int, newest: datetime | None, oldest: datetime | None, lower: datetime, workers: int, page_size: int
) -> list[tuple[datetime, datetime]]:
    """Pieces for the rest of a window after its first (newest) page of ``count`` rows created between
    ``oldest`` and ``newest``, or [] when splitting does not pay.

    The rest is [lower, oldest + 1 s): rows created in the oldest second of the page may continue on the
    next page. Its size is estimated from the page's density (rows per second of `created`).
    """
    if workers < 2 or newest is None or oldest is None:
        return []
    remaining_seconds = (oldest - lower).total_seconds()
    if remaining_seconds <= 0:
        return []
    density = count / max(1.0, (newest - oldest).total_seconds())
    remaining_pages = density * remaining_seconds / page_size
    pieces = min(workers, int(remaining_pages // SPLIT_MIN_PAGES))
    if pieces < 2:
        return []
    upper = oldest.replace(microsecond=0) + timedelta(seconds=1)
    step = (upper - lower) / pieces
    edges = [lower + step * i for i in range(pieces)] + [upper]
    return [(edges[i], edges[i + 1]) for i in range(pieces - 1, -1, -1)]  # newest first


def created_cursor(ctx: RunContext) -> dlt.sources.incremental[datetime]:
    """The deliveries cursor: `created` over the interval, re-reading the lookback before the watermark."""
    return dlt.sources.incremental(
        "created",
        initial_value=ctx.interval.initial_value,
        end_value=ctx.interval.end,
        lag=ctx.messages_lookback_days * 86400.0,
        range_end="open",
    )


def catch_up(
    ctx: RunContext, spec: TableSpec, created: dlt.sources.incremental[datetime]
) -> tuple[datetime, datetime | None, Callable[[], Iterator[pa.Table]]]:
    """The `created` range this run reads, and its late-engagement re-reads (a generator function).

    Call before the resource yields anything: rows re-read for late engagement are older than the cursor's
    start, so dlt's incremental filter is lowered to them through its public `start_value`.
    """
    incremental = created.start_value is not None and created.start_value > EPOCH
    late = LateEngagement(ctx, spec, resource_state(spec.name), incremental)
    start, end = delivery_range(ctx, created.start_value, created.end_value)
    start = late.start(start)
    plan = late.plan(start)
    lowest = min(start, plan.oldest or start)
    if incremental and (plan.fetch or lowest < created.start_value):
        created.start_value = EPOCH if plan.fetch else lowest

    def rereads() -> Iterator[pa.Table]:
        for path, spans in plan.spans.items():
            try:
                yield from read_windows(ctx, spec, path, start, None, spans=spans)
            except NotFoundError:
                continue  # the parent was deleted: its deliveries are no longer listed under it
        if plan.fetch:
            decoder = PageDecoder(spec.envelope, DELIVERY_SCHEMA, DELIVERY_NESTED, required=spec.primary_key)
            yield from batched_tables(late.fetched(plan.fetch, decoder))

    return start, end, rereads


def deliveries_resource(ctx: RunContext, spec: TableSpec) -> DltResource:
    def rows(created: dlt.sources.incremental[datetime] = created_cursor(ctx)) -> Iterator[pa.Table]:
        start, end, rereads = catch_up(ctx, spec, created)
        if end is None or start < end:
            yield from read_pages_of(ctx, spec, start, end)
        yield from rereads()

    # no other column hints: the Arrow schema types every column
    return merge_resource(rows, spec, columns=arrow_load_id_column())


def read_pages_of(ctx: RunContext, spec: TableSpec, start: datetime, end: datetime | None) -> Iterator[pa.Table]:
    """Every delivery of the table created in [start, end): one path, or each parent's from its creation."""
    if spec.parent is None:
        yield from read_windows(ctx, spec, spec.path, start, end)
        return
    for parent in ctx.list_rows(spec.parent):
        spans = parent_windows(parent, start, end)
        if not spans:
            continue
        try:
            yield from read_windows(ctx, spec, ctx.child_path(spec, parent), start, end, spans=spans)
        except NotFoundError:
            continue  # the parent was deleted during the run
