"""Metrics tables: one row per (parent ids, period, period_start) with one column per series.

Two API families:

* campaign and campaign-action metrics (and journey metrics) take an explicit window: ``version=2``,
  ``res``, ``start``/``end`` (unix) and ``tz=UTC``; series entry *i* is the i-th bucket from the floor of
  ``start`` in UTC.
* broadcast, broadcast-action, newsletter, newsletter-variant and transactional metrics (and every link
  metrics endpoint) only take ``period`` + ``steps``: the series end with the current bucket, and buckets
  start in US Eastern time (days at 00:00, weeks on Sunday, months on the 1st). We compute each bucket's
  true start in ``America/New_York`` (DST-aware; the spec says "EST") and store it in UTC.

Rows merge on their key, so history accumulates beyond the API's window.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import pendulum
from dlt.sources import DltResource

from .catalogue import TableSpec
from .context import RunContext, records, skip_missing
from .resources import merge_resource
from .transform import to_datetime

EASTERN = "America/New_York"
MAX_STEPS = {"hours": 24, "days": 45, "weeks": 12, "months": 121}  # the spec's maxima for `steps`
V2_MAX_SPAN = timedelta(days=3650)  # `end` at most 10 years after `start`
V2_RES = {"hours": "hours", "days": "days", "weeks": "weeks", "months": "months"}


def bucket_floor(moment: pendulum.DateTime, period: str) -> pendulum.DateTime:
    """Start of the bucket holding ``moment`` in its own timezone (weeks start on Sunday)."""
    if period == "hours":
        return moment.start_of("hour")
    if period == "days":
        return moment.start_of("day")
    if period == "weeks":
        day = moment.start_of("day")
        return day.subtract(days=(day.weekday() + 1) % 7)  # Monday=0 ... Sunday=6
    if period == "months":
        return moment.start_of("month")
    raise ValueError(period)


def shift(moment: pendulum.DateTime, period: str, count: int) -> pendulum.DateTime:
    """Move by whole periods on the local calendar (a day stays a calendar day across DST)."""
    if period == "hours":
        return moment.add(hours=count)  # hours are absolute
    return moment.add(**{period: count})


def trailing_buckets(
    count: int, period: str, now: datetime | None = None, tz: str = EASTERN
) -> list[tuple[datetime, datetime]]:
    """[start, end) of the ``count`` buckets ending with the current one, oldest first, in UTC."""
    current = bucket_floor(pendulum.instance(now or datetime.now(timezone.utc)).in_timezone(tz), period)
    out = []
    for i in range(count - 1, -1, -1):
        start = shift(current, period, -i)
        out.append((start.in_timezone("UTC"), shift(start, period, 1).in_timezone("UTC")))
    return out


def leading_buckets(count: int, period: str, start: datetime, tz: str = "UTC") -> list[tuple[datetime, datetime]]:
    """[start, end) of ``count`` buckets from the bucket holding ``start``, oldest first, in UTC."""
    first = bucket_floor(pendulum.instance(start).in_timezone(tz), period)
    return [
        (shift(first, period, i).in_timezone("UTC"), shift(first, period, i + 1).in_timezone("UTC"))
        for i in range(count)
    ]


def series_rows(
    series: dict[str, list[Any]], buckets: list[tuple[datetime, datetime]], period: str, keys: dict[str, Any]
) -> list[dict[str, Any]]:
    """Turn {metric: [v0, v1, ...]} into one row per bucket with one column per metric."""
    rows = []
    for index, (start, end) in enumerate(buckets):
        row = dict(keys)
        row.update(period=period, period_start=start, period_end=end)
        for name, values in series.items():
            if isinstance(values, list) and index < len(values):
                row[name] = values[index]
        rows.append(row)
    return rows


def parse_echoed_time(value: Any) -> datetime | None:
    """Metrics v2 echo `start` as "2025-01-01 00:00:00 +0000 UTC" (or ISO 8601)."""
    if not isinstance(value, str):
        return None
    text = value.replace(" UTC", "").strip()
    for fmt in ("%Y-%m-%d %H:%M:%S %z", "%Y-%m-%dT%H:%M:%S%z"):
        try:
            return datetime.strptime(text, fmt).astimezone(timezone.utc)
        except ValueError:
            continue
    try:
        return pendulum.parse(text).in_timezone("UTC")  # type: ignore[union-attr]
    except Exception:  # noqa: BLE001 - an unreadable echo falls back to our own window
        return None


def metrics_resource(ctx: RunContext, spec: TableSpec, periods: tuple[str, ...]) -> DltResource:
    """One metrics table for the requested periods (one request per parent and period)."""
    family = spec.metrics_family

    def window(period: str, parent: dict[str, Any]) -> tuple[datetime, datetime]:
        """The explicit v2 window: the interval, else the same span as the period/steps endpoints; never
        before the parent existed, and at most 10 years long (the API's limit on `end - start`)."""
        now = datetime.now(timezone.utc)
        end = ctx.interval.end or now
        start = ctx.interval.start or trailing_buckets(MAX_STEPS[period], period, now, tz="UTC")[0][0]
        created = to_datetime(parent.get("created") or parent.get("created_at"))
        if isinstance(created, datetime) and created > start and not ctx.interval.start:
            start = bucket_floor(pendulum.instance(created), period)
        return max(start, end - V2_MAX_SPAN), end

    def read(job: tuple[dict[str, Any], str]) -> list[dict[str, Any]]:
        parent, period = job
        path = ctx.child_path(spec, parent)
        keys = {column: parent.get(src) for column, src in spec.parent_columns.items()}
        if family in ("v2", "journey"):
            start, end = window(period, parent)
            query: dict[str, Any] = {"start": int(start.timestamp()), "end": int(end.timestamp())}
            if family == "v2":
                query.update(version=2, res=V2_RES[period], tz="UTC")
                payload = ctx.client.get(path, query, table=spec.name)
                series = (payload.get("metric") or {}).get("series") or {}
                first = parse_echoed_time(payload.get("start")) or start
            else:
                query["resolution"] = V2_RES[period]
                payload = ctx.client.get(path, query, table=spec.name)
                series = payload.get("journey_metric") or {}
                first = start
            length = max((len(v) for v in series.values() if isinstance(v, list)), default=0)
            buckets = leading_buckets(length, period, first)
            return _in_interval(ctx, series_rows(series, buckets, period, keys))
        query = {"period": period, "steps": MAX_STEPS[period]}
        payload = ctx.client.get(path, query, table=spec.name)
        if family == "steps":
            series = (payload.get("metric") or {}).get("series") or {}
            length = max((len(v) for v in series.values() if isinstance(v, list)), default=0)
            return _in_interval(ctx, series_rows(series, trailing_buckets(length, period), period, keys))
        rows: list[dict[str, Any]] = []
        for item in records(payload, "links"):
            link = item.get("link") or {}
            series = (item.get("metric") or {}).get("series") or {}
            length = max((len(v) for v in series.values() if isinstance(v, list)), default=0)
            link_keys = {**keys, "link_id": link.get("id"), "href": link.get("href")}
            rows.extend(series_rows(series, trailing_buckets(length, period), period, link_keys))
        return _in_interval(ctx, rows)

    def describe(job: tuple[dict[str, Any], str]) -> str:
        return f"{spec.parent} {job[0].get('id')!r} (for {spec.name})"

    def rows() -> Iterator[list[dict[str, Any]]]:
        jobs = [(parent, period) for parent in ctx.list_rows(spec.parent) for period in periods]  # type: ignore[arg-type]
        for page in ctx.map_unordered(skip_missing(read, describe), jobs):
            if page:
                yield page

    columns = {
        "period_start": {"data_type": "timestamp", "nullable": False},
        "period_end": {"data_type": "timestamp", "nullable": True},
        "period": {"data_type": "text", "nullable": False},
    }
    return merge_resource(rows, spec, columns)


def _in_interval(ctx: RunContext, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    if not ctx.interval.bounded:
        return rows
    return [row for row in rows if ctx.interval.contains(row["period_start"])]

