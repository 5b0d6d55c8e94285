"""The dlt source: one resource per selected table of the catalogue."""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

import dlt
import pendulum
from dlt.sources import DltResource

from . import builders
from .builders import Build
from .bulk import BULK_MODES
from .catalogue import CATALOGUE, METRIC_PERIODS, default_tables
from .client import CustomerIOClient, RequestStats
from .context import Interval, RunContext
from .errors import ConfigError
from .people import parse_attribute_columns
from .resources import child_resource, list_resource
from .runner import mark_reads_all_rows

API_KEY_ENV = "CUSTOMERIO_APP_API_KEY"


@dlt.source(name="customerio", section="customerio", max_table_nesting=1, root_key=True)
def customerio_source(
    api_key: str | None = dlt.secrets.value,
    region: str = "us",
    base_url: str | None = None,
    tables: str | Sequence[str] | None = None,
    interval_start: str | datetime | None = None,
    interval_end: str | datetime | None = None,
    rate_limit: float = 10.0,
    max_attempts: int = 8,
    max_retry_wait: float = 300.0,
    request_timeout: float | None = None,
    concurrency: int = 4,
    messages_lookback_days: float = 3.0,
    activities_include_deleted: bool = False,
    metrics_periods: str | Sequence[str] = ("days",),
    attribute_columns: str | Sequence[str] = (),
    attributes_refresh: str = "changed",
    attributes_full_refresh_days: float = 7.0,
    bulk: str = "api",
    messages_deep_reread_days: float = 7.0,
    messages_deep_lookback_days: float = 30.0,
    request_stats: RequestStats | None = None,
) -> Iterable[DltResource]:
    """Customer.io App API tables.

    Args:
        api_key: App API key (bearer). Falls back to the `CUSTOMERIO_APP_API_KEY` environment variable.
        region: `us` or `eu`.
        base_url: overrides the region's URL (proxies, the simulated workspace).
        tables: `all` (default), or table names; metrics tables take periods: `campaign_metrics:hours+days`.
        interval_start / interval_end: a half-open interval [start, end) of ISO 8601 datetimes. Windowed
            tables read exactly it; lists keep rows whose `updated`/`updated_at` falls in it. With an end,
            incremental state does not move (a backfill).
        rate_limit: requests per second for the whole run (every thread, retries included).
        max_attempts / max_retry_wait: retry bounds for 429, 5xx, timeouts and connection errors.
        request_timeout: seconds to wait for an answer (unset: dlt's `[runtime] request_timeout`, 60 s).
        concurrency: parallel requests inside one table (children, batches), all under `rate_limit`.
        messages_lookback_days: how far before the watermark incremental runs re-read deliveries.
        activities_include_deleted: also load activities of deleted people.
        metrics_periods: default periods for metrics tables (hours, days, weeks, months).
        attribute_columns: person attributes promoted to typed columns, `NAME[:TYPE]`.
        attributes_refresh: `changed` (incremental runs re-read attributes of new people and people with
            profile-changing activities) or `full` (everyone, every run).
        attributes_full_refresh_days: in `changed` mode, re-read everyone at least this often.
        bulk: `api` (paging), `exports` (customer_attributes and deliveries through the exports API), or
            `auto` (exports above a size where they are cheaper; see bulk.py).
        messages_deep_reread_days / messages_deep_lookback_days: delivery tables re-read the last
            `messages_deep_lookback_days` at least every `messages_deep_reread_days` (the safety net behind
            the activity log's late engagement; see late_engagement.py).
        request_stats: counters the run's client fills (requests by table, retries, 429s, the limiter's
            rate), for a caller that shows progress or reports cost; the CLI passes one.
    """
    key = api_key or os.environ.get(API_KEY_ENV)
    interval = parse_interval(interval_start, interval_end)
    periods = _as_list(metrics_periods) or ["days"]
    for period in periods:
        if period not in METRIC_PERIODS:
            raise ConfigError(f"unknown metrics period {period!r}: use {', '.join(METRIC_PERIODS)}")
    if bulk not in BULK_MODES:
        raise ConfigError(f"bulk must be one of {', '.join(BULK_MODES)}, got {bulk!r}")
    if attributes_refresh not in ("changed", "full"):
        raise ConfigError(f"attributes_refresh must be 'changed' or 'full', got {attributes_refresh!r}")
    selected = select_tables(tables, tuple(periods))
    try:
        promoted = _as_list(attribute_columns)
        parse_attribute_columns(promoted)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    client = CustomerIOClient(
        key or "",
        region=region,
        base_url=base_url,
        rate_limit=rate_limit,
        max_attempts=max_attempts,
        max_retry_wait=max_retry_wait,
        timeout=request_timeout,
        stats=request_stats,
    )
    ctx = RunContext(
        client=client,
        interval=interval,
        messages_lookback_days=messages_lookback_days,
        activities_include_deleted=activities_include_deleted,
        metrics_periods=selected,
        attribute_columns=tuple(promoted),
        concurrency=concurrency,
        attributes_refresh=attributes_refresh,
        attributes_full_refresh_days=attributes_full_refresh_days,
        messages_deep_reread_days=messages_deep_reread_days,
        messages_deep_lookback_days=messages_deep_lookback_days,
    )
    resources = list(build_resources(ctx, list(selected), bulk))
    for resource in resources:
        spec = CATALOGUE.get(resource.name)
        if spec and spec.full_reread and not interval.bounded:
            mark_reads_all_rows(resource)
    return resources


def build_resources(ctx: RunContext, names: list[str], bulk: str = "api") -> Iterable[DltResource]:
    """Resources for the selected tables: regular ones from their declaration, the others by their builder."""
    build = Build(ctx, names, bulk)
    for name in names:
        spec = CATALOGUE[name]
        if spec.builder is None:
            yield child_resource(ctx, spec) if spec.per_parent else list_resource(ctx, spec)
        else:
            yield from spec.builder(build, spec)


def select_tables(tables: str | Sequence[str] | None, periods: tuple[str, ...]) -> dict[str, tuple[str, ...]]:
    """Parse a table selection into {table: metric periods} (periods empty for non-metrics tables).

    `all` means every default table; names may follow it (`all,customer_messages`). Metrics tables take
    periods after a colon, several joined with `+`: `broadcast_metrics:days,campaign_metrics:hours+days`.
    """
    items = _as_list(tables) or ["all"]
    selected: dict[str, tuple[str, ...]] = {}
    for item in items:
        name, _, period_text = item.partition(":")
        names = default_tables() if name == "all" else [name]
        for table in names:
            spec = CATALOGUE.get(table)
            if spec is None:
                valid = ", ".join(sorted(CATALOGUE))
                raise ConfigError(f"unknown table {table!r}; valid tables: all, {valid}")
            if spec.builder is builders.metrics:
                wanted = tuple(p for p in period_text.split("+") if p) if period_text else periods
                for period in wanted:
                    if period not in METRIC_PERIODS:
                        raise ConfigError(
                            f"unknown metrics period {period!r} in {item!r}: use {', '.join(METRIC_PERIODS)}"
                        )
                merged = tuple(dict.fromkeys(selected.get(table, ()) + wanted))
                selected[table] = merged
            else:
                if period_text:
                    raise ConfigError(f"{table!r} is not a metrics table and takes no period ({item!r})")
                selected.setdefault(table, ())
    return selected


def parse_interval(start: str | datetime | None, end: str | datetime | None) -> Interval:
    """Validate and parse the half-open interval [start, end) (ISO 8601, naive means UTC)."""
    parsed = [_parse_datetime(value, flag) for value, flag in ((start, "--interval-start"), (end, "--interval-end"))]
    if parsed[0] and parsed[1] and parsed[1] <= parsed[0]:
        raise ConfigError(
            f"--interval-end ({parsed[1].isoformat()}) must be after --interval-start ({parsed[0].isoformat()})"
        )
    return Interval(parsed[0], parsed[1])


def _parse_datetime(value: str | datetime | None, flag: str) -> datetime | None:
    if value is None or value == "":
        return None
    try:
        parsed: Any = value if isinstance(value, datetime) else pendulum.parse(str(value), tz="UTC")
    except (ValueError, pendulum.parsing.exceptions.ParserError):
        raise ConfigError(f"{flag}: cannot read {value!r} as an ISO 8601 date or datetime") from None
    if not isinstance(parsed, datetime):  # a bare date parses to a Date in some pendulum versions
        try:
            parsed = pendulum.datetime(parsed.year, parsed.month, parsed.day, tz="UTC")
        except AttributeError:
            raise ConfigError(f"{flag}: cannot read {value!r} as an ISO 8601 date or datetime") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=pendulum.UTC)
    return pendulum.instance(parsed).in_timezone("UTC")


def _as_list(value: str | Sequence[str] | None) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return [str(part).strip() for part in value if str(part).strip()]
