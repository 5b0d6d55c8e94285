"""Deliveries (`messages` and the per-parent message lists), read by `created` in windows.

Deliveries have no `updated` field, their metric timestamps (opened, clicked, ...) arrive after creation,
and one request covers at most six months. So the source reads half-open windows of `created` of at most
180 days (`start_ts`/`end_ts`), any interval can be backfilled, and an incremental run re-reads a lookback
window (``messages_lookback_days``) before its watermark and merges on `id` so late metrics land.

A first run with no interval starts at the earliest `created` of any campaign, broadcast, newsletter or
transactional message: no delivery can be older than the message that sent it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import dlt
import dlt.common.libs.pyarrow  # noqa: F401 - imported here, once: dlt imports these lazily, and two
import pyarrow as pa

try:  # extract threads importing them at the same moment race ("partially initialized module")
    import dlt.common.libs.pandas  # noqa: F401
except ImportError:  # pragma: no cover - pandas is optional
    pass
from dlt.extract.resource import DltResource

from .arrow_pages import page_to_arrow
from .catalogue import TableSpec
from .context import EPOCH, RunContext, interleave, records
from .errors import NotFoundError
from .transform import convert_nested_timestamps, convert_timestamps, to_datetime

WINDOW = timedelta(days=180)  # the API truncates ranges over six months
OPEN_END_MARGIN = timedelta(days=1)  # an open newest window spans [now + margin - 180 days, server's now]
SENDING_PARENTS = ("campaigns", "broadcasts", "newsletters", "transactional_messages")


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
    oldest: datetime | None = None
    for table in SENDING_PARENTS:
        for row in ctx.list_rows(table):
            value = to_datetime(row.get("created") or row.get("created_at"))
            if isinstance(value, datetime) and (oldest is None or value < oldest):
                oldest = value
    return oldest


def delivery_range(ctx: RunContext, start: datetime | None, end: datetime | None) -> tuple[datetime, datetime | None]:
    """The [start, end) to read: an open start becomes the earliest send time; an open end stays open."""
    if start is None or start <= EPOCH:
        start = earliest_send_time(ctx) or datetime.now(timezone.utc) - WINDOW + OPEN_END_MARGIN
    return start, end


DELIVERY_SCHEMA = {
    "id": "text", "deduplicate_id": "text", "created": "timestamp", "customer_id": "text", "recipient": "text",
    "subject": "text", "failure_message": "text", "forgotten": "bool", "trigger_event_id": "text", "type": "text",
    "campaign_id": "int", "action_id": "int", "parent_action_id": "int", "newsletter_id": "int", "content_id": "int",
    "broadcast_id": "int", "transactional_message_id": "int", "message_template_id": "int",
}
# the 12 metrics of the `metric` filter, the series names the current spec adds, in a fixed order
DELIVERY_METRICS = (
    "attempted", "sent", "delivered", "opened", "clicked", "converted", "bounced", "spammed", "unsubscribed",
    "dropped", "failed", "undeliverable", "human_opened", "human_clicked", "machine_opened", "machine_clicked",
)
DELIVERY_NESTED = {
    "metrics": ("timestamp", DELIVERY_METRICS),
    "customer_identifiers": ("text", ("id", "email", "cio_id")),
}
# Above this many days, a read is split into concurrent windows (a full sync); shorter incremental reads
# stay one window, so they cost no extra partial pages.
SPLIT_ABOVE = timedelta(days=30)


def shape_delivery(row: dict[str, Any]) -> dict[str, Any]:
    """Row-path shaping (per-person deliveries): metric and creation times as datetimes."""
    convert_nested_timestamps(row, "metrics")
    return convert_timestamps(row, ("created",))


def read_windows(
    ctx: RunContext, spec: TableSpec, path: str, start: datetime, end: datetime | None
) -> Iterator[pa.Table]:
    """Every delivery created in [start, end) under ``path``, as Arrow tables, windows read concurrently."""
    parts = list(windows(start, end))
    if len(parts) > 1 or (parts and _span(parts[0]) > SPLIT_ABOVE):
        parts = [piece for part in parts for piece in _split(part, ctx.concurrency)]

    def job(lower: datetime, upper: datetime | None) -> Callable[[], Iterator[pa.Table]]:
        def pages() -> Iterator[pa.Table]:
            query = {"limit": spec.page_size, **window_params(lower, upper)}
            lo, hi = lower.timestamp(), upper.timestamp() if upper is not None else float("inf")
            for payload in ctx.client.pages("GET", path, query, table=spec.name):
                raw = records(payload, spec.envelope)
                page = [row for row in raw if lo <= (row.get("created") or 0) < hi]
                if page:
                    yield page_to_arrow(page, DELIVERY_SCHEMA, DELIVERY_NESTED, required=spec.primary_key)
                if not raw:
                    break

        return pages

    yield from interleave([job(lower, upper) for lower, upper in parts], ctx.concurrency)


def _span(part: tuple[datetime, datetime | None]) -> timedelta:
    lower, upper = part
    return (upper or datetime.now(timezone.utc)) - lower


def _split(part: tuple[datetime, datetime | None], count: int) -> list[tuple[datetime, datetime | None]]:
    """Cut a window into ``count`` consecutive pieces, newest first; an open end stays on the newest."""
    lower, upper = part
    if count <= 1 or _span(part) <= SPLIT_ABOVE:
        return [part]
    step = _span(part) / count
    edges = [lower + step * i for i in range(1, count)]
    bounds: list[datetime | None] = [lower, *edges, upper]
    pieces = [(bounds[i], bounds[i + 1]) for i in range(count)]
    return [(lo, hi) for lo, hi in reversed(pieces)]  # type: ignore[misc]


def deliveries_resource(ctx: RunContext, spec: TableSpec) -> DltResource:
    lookback = ctx.messages_lookback_days * 86400.0

    def rows(
        created: dlt.sources.incremental[datetime] = dlt.sources.incremental(
            "created",
            initial_value=ctx.interval.initial_value,
            end_value=ctx.interval.end,
            lag=lookback,
            range_end="open",
        ),
    ) -> Iterator[pa.Table]:
        start, end = delivery_range(ctx, created.start_value, created.end_value)
        if end is not None and start >= end:
            return
        if spec.parent is None:
            yield from read_windows(ctx, spec, spec.path, start, end)
            return
        for parent in ctx.list_rows(spec.parent):
            try:
                yield from read_windows(ctx, spec, ctx.child_path(spec, parent), start, end)
            except NotFoundError:
                continue  # the parent was deleted during the run

    return dlt.resource(
        rows,
        name=spec.name,
        primary_key=list(spec.primary_key),
        write_disposition="merge",
        parallelized=True,  # no column hints: the Arrow schema types every column
    )
