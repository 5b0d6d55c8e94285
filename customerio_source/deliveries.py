"""Deliveries (`messages` and the per-parent message lists), read by `created` in windows.

Deliveries have no `updated` field, their metric timestamps (opened, clicked, ...) arrive after creation,
and one request covers at most six months. So the source reads half-open windows of `created` of at most
180 days (`start_ts`/`end_ts`), any interval can be backfilled, and an incremental run re-reads a lookback
window (``messages_lookback_days``) before its watermark and merges on `id` so late metrics land.

A first run with no interval starts at the earliest `created` of any campaign, broadcast, newsletter or
transactional message: no delivery can be older than the message that sent it.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import dlt
from dlt.extract.resource import DltResource

from .catalogue import TableSpec
from .context import EPOCH, RunContext, records
from .errors import NotFoundError
from .resources import table_columns
from .transform import convert_nested_timestamps, convert_timestamps, to_datetime

WINDOW = timedelta(days=180)  # the API truncates ranges over six months
SENDING_PARENTS = ("campaigns", "broadcasts", "newsletters", "transactional_messages")


def windows(start: datetime, end: datetime, size: timedelta = WINDOW) -> Iterator[tuple[datetime, datetime]]:
    """Split [start, end) into consecutive half-open windows of at most ``size``, newest first."""
    upper = end
    while upper > start:
        lower = max(start, upper - size)
        yield lower, upper
        upper = lower


def earliest_send_time(ctx: RunContext) -> datetime | None:
    """The oldest `created` among everything that sends deliveries (a safe lower bound for history)."""
    oldest: datetime | None = None
    for table in SENDING_PARENTS:
        for row in ctx.list_rows(table):
            value = to_datetime(row.get("created") or row.get("created_at"))
            if isinstance(value, datetime) and (oldest is None or value < oldest):
                oldest = value
    return oldest


def shape_delivery(row: dict[str, Any]) -> dict[str, Any]:
    convert_nested_timestamps(row, "metrics")
    return convert_timestamps(row, ("created",))


def deliveries_resource(ctx: RunContext, spec: TableSpec) -> DltResource:
    lookback = ctx.messages_lookback_days * 86400.0

    def read_windows(path: str, start: datetime, end: datetime) -> Iterator[list[dict[str, Any]]]:
        for lower, upper in windows(start, end):
            # ask one second wider on the left (start_ts inclusivity is not documented) and keep [lower, upper)
            query = {
                "limit": spec.page_size,
                "start_ts": int(lower.timestamp()) - 1,
                "end_ts": int(upper.timestamp()),
            }
            lo, hi = lower.timestamp(), upper.timestamp()
            for payload in ctx.client.pages("GET", path, query, table=spec.name):
                raw = records(payload, spec.envelope)
                page = [shape_delivery(row) for row in raw if lo <= (row.get("created") or 0) < hi]
                if page:
                    yield page
                if not raw:
                    break

    def rows(
        created: dlt.sources.incremental[datetime] = dlt.sources.incremental(
            "created",
            initial_value=ctx.interval.initial_value,
            end_value=ctx.interval.end,
            lag=lookback,
            range_end="open",
        ),
    ) -> Iterator[list[dict[str, Any]]]:
        end = created.end_value or datetime.now(timezone.utc).replace(microsecond=0) + timedelta(seconds=1)
        start = created.start_value
        if start is None or start <= EPOCH:
            start = earliest_send_time(ctx) or end - WINDOW
        if start >= end:
            return
        if spec.parent is None:
            yield from read_windows(spec.path, start, end)
            return
        for parent in ctx.list_rows(spec.parent):
            try:
                yield from read_windows(ctx.child_path(spec, parent), start, end)
            except NotFoundError:
                continue  # the parent was deleted during the run

    return dlt.resource(
        rows,
        name=spec.name,
        primary_key=list(spec.primary_key),
        write_disposition="merge",
        columns=table_columns(spec),
        parallelized=True,
    )
