"""The warehouse models: one SQL definition per model, spelled per warehouse by :mod:`.dialects`.

Each source table is scanned once per build: ``messages`` by ``engagement_daily``, ``activities`` by
``activity_daily``, each ``*_metrics`` table (and each name table) by one query; ``engagement_weekly`` and
``campaign_performance`` read ``engagement_daily``. The SQL adapts to the columns the dataset has (a metric
no delivery ever had is a column dlt never created: it counts 0, or NULL where "where present" applies).
Definitions: :mod:`.definitions`.
"""

from __future__ import annotations

import zoneinfo
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..errors import ConfigError
from .definitions import (
    ACTIVITY_DAILY,
    CAMPAIGN_PERFORMANCE,
    COUNT_NAMES,
    COUNTS,
    ENGAGEMENT_DAILY,
    ENGAGEMENT_WEEKLY,
    LAST_DAYS,
    RATE_COUNT_NAMES,
    RATES,
    RECONCILED,
    RECONCILIATION,
    SOURCE_TYPES,
)
from .dialects import Dialect, Qualifier, dialect_for

DELETED_AT = "_cio_deleted_at"
OPTIONAL_COUNTS = ("human_opened",)
"""Counts that are NULL (not 0) when the dataset has no such metric ("where present")."""
SUMMED = (*COUNT_NAMES, *RATE_COUNT_NAMES)
"""The columns of engagement_daily that the weekly and campaign tables sum: the counts and the rates' numerators."""


class AnalyticsInputError(ConfigError):
    """Bad input for the analytics (never-loaded dataset, unknown time zone): one line, exit code 2."""


@dataclass
class ModelPlan:
    """The statements of one build, in order, and what was skipped (model -> why)."""

    statements: list[tuple[str, list[str]]] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)

    @property
    def models(self) -> list[str]:
        return [name for name, _ in self.statements]


def check_timezone(timezone: str) -> str:
    """``timezone`` if it is an IANA name (``UTC``, ``Europe/Berlin``), else :class:`AnalyticsInputError`."""
    try:
        zoneinfo.ZoneInfo(timezone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
        raise AnalyticsInputError(
            f"unknown time zone {timezone!r} (use an IANA name such as UTC or Europe/Berlin)"
        ) from exc
    return timezone


def plan_models(
    dialect: Dialect, qualify: Qualifier, columns: Mapping[str, set[str]], timezone: str = "UTC"
) -> ModelPlan:
    """The SQL that builds every model the dataset's tables allow; ``columns``: table -> its columns."""
    check_timezone(timezone)
    plan = ModelPlan()
    if "messages" in columns:
        plan.statements.append(
            (
                ENGAGEMENT_DAILY,
                dialect.create_table(
                    qualify(ENGAGEMENT_DAILY), engagement_daily_sql(dialect, qualify, columns, timezone)
                ),
            )
        )
        plan.statements.append(
            (
                ENGAGEMENT_WEEKLY,
                dialect.create_table(qualify(ENGAGEMENT_WEEKLY), engagement_weekly_sql(dialect, qualify)),
            )
        )
        plan.statements.append(
            (
                CAMPAIGN_PERFORMANCE,
                dialect.create_table(qualify(CAMPAIGN_PERFORMANCE), campaign_performance_sql(dialect, qualify)),
            )
        )
        reconciliation = reconciliation_sql(dialect, qualify, columns, timezone)
        if reconciliation:
            plan.statements.append((RECONCILIATION, dialect.create_table(qualify(RECONCILIATION), reconciliation)))
        else:
            plan.skipped[RECONCILIATION] = "no *_metrics table (campaign_metrics, broadcast_metrics, ...) is loaded"
    else:
        why = "the messages table is not loaded (add it to --tables)"
        for name in (ENGAGEMENT_DAILY, ENGAGEMENT_WEEKLY, CAMPAIGN_PERFORMANCE, RECONCILIATION):
            plan.skipped[name] = why
    if "activities" in columns:
        plan.statements.append(
            (
                ACTIVITY_DAILY,
                dialect.create_table(
                    qualify(ACTIVITY_DAILY), activity_daily_sql(dialect, qualify, columns["activities"], timezone)
                ),
            )
        )
    else:
        plan.skipped[ACTIVITY_DAILY] = "the activities table is not loaded (add it to --tables)"
    return plan


def _rates(d: Dialect, table: str = "", suffix: str = "") -> list[str]:
    """Every rate of :data:`RATES` over the counts of ``table`` (an alias; none: unqualified): its numerator
    column (deliveries holding both metrics) over its denominator's count, so never above 1."""
    ref = (lambda c: f"{table}.{d.q(c)}") if table else d.q
    return [
        f"{d.ratio(ref(rate.counted + suffix), ref(rate.denominator + suffix))} AS {d.q(rate.name + suffix)}"
        for rate in RATES
    ]


def _rate_counts(d: Dialect, have: set[str]) -> list[str]:
    """Per rate, the deliveries of ``messages`` holding both its numerator's and its denominator's metric."""
    metric = {count.name: count.metric for count in COUNTS}
    out = []
    for rate in RATES:
        numerator, denominator = (f"metrics__{metric[c]}" for c in (rate.numerator, rate.denominator))
        if numerator in have and denominator in have:
            both = f"{d.q(numerator)} IS NOT NULL AND {d.q(denominator)} IS NOT NULL"
            out.append(f"COUNT(CASE WHEN {both} THEN 1 END) AS {d.q(rate.counted)}")
        else:
            absent = numerator not in have and rate.numerator in OPTIONAL_COUNTS
            out.append(f"{'CAST(NULL AS BIGINT)' if absent else 'CAST(0 AS BIGINT)'} AS {d.q(rate.counted)}")
    return out


def _source_type(d: Dialect, have: set[str]) -> str:
    whens = " ".join(
        f"WHEN {d.q(column)} IS NOT NULL THEN '{kind}'" for kind, column, *_ in SOURCE_TYPES if column in have
    )
    return f"CASE {whens} ELSE 'other' END"


def engagement_daily_sql(d: Dialect, qualify: Qualifier, columns: Mapping[str, set[str]], timezone: str) -> str:
    """Deliveries per day x channel x what sent them: counts and rates."""
    have = columns["messages"]
    source_columns = [column for _, column, *_ in SOURCE_TYPES if column in have]
    source_id = f"COALESCE({', '.join(d.q(c) for c in source_columns)})" if source_columns else "CAST(NULL AS BIGINT)"
    source_type = _source_type(d, have) if source_columns else "'other'"
    counts = []
    for count in COUNTS:
        column = f"metrics__{count.metric}"
        if column in have:
            counts.append(f"COUNT({d.q(column)}) AS {d.q(count.name)}")
        else:
            counts.append(
                f"{'CAST(NULL AS BIGINT)' if count.name in OPTIONAL_COUNTS else 'CAST(0 AS BIGINT)'} "
                f"AS {d.q(count.name)}"
            )
    counts += _rate_counts(d, have)
    where = f" WHERE {d.q(DELETED_AT)} IS NULL" if DELETED_AT in have else ""
    channel = f"{d.q('type')}" if "type" in have else f"CAST(NULL AS {d.text})"
    deliveries = (
        f"SELECT {d.day(d.q('created'), timezone)} AS {d.q('day')}, {channel} AS {d.q('channel')}, "
        f"{source_type} AS {d.q('source_type')}, {source_id} AS {d.q('source_id')}, "
        f"COUNT(*) AS {d.q('deliveries')}, {', '.join(counts)} "
        f"FROM {qualify('messages')}{where} GROUP BY 1, 2, 3, 4"
    )
    names = []
    for kind, _, table, *_ in SOURCE_TYPES:
        if table in columns and {"id", "name"} <= columns[table]:
            names.append(
                f"SELECT '{kind}' AS {d.q('source_type')}, {d.q('id')} AS {d.q('source_id')}, "
                f"MAX({d.q('name')}) AS {d.q('source_name')} FROM {qualify(table)} GROUP BY 1, 2"
            )
    name_column = f"n.{d.q('source_name')}" if names else f"CAST(NULL AS {d.text})"
    join = (
        (
            f" LEFT JOIN ({' UNION ALL '.join(names)}) AS n ON n.{d.q('source_type')} = m.{d.q('source_type')} "
            f"AND n.{d.q('source_id')} = m.{d.q('source_id')}"
        )
        if names
        else ""
    )
    select = [
        f"m.{d.q('day')}",
        f"m.{d.q('channel')}",
        f"m.{d.q('source_type')}",
        f"m.{d.q('source_id')}",
        f"{name_column} AS {d.q('source_name')}",
        f"m.{d.q('deliveries')}",
        *[f"m.{d.q(name)}" for name in SUMMED],
        *_rates(d, "m"),
    ]
    return f"SELECT {', '.join(select)} FROM ({deliveries}) AS m{join}"


def engagement_weekly_sql(d: Dialect, qualify: Qualifier) -> str:
    """engagement_daily summed per ISO week (Monday); rates recomputed from the sums."""
    keys = [d.q(k) for k in ("channel", "source_type", "source_id")]
    sums = [f"SUM({d.q(c)}) AS {d.q(c)}" for c in ("deliveries", *SUMMED)]
    inner = (
        f"SELECT {d.week(d.q('day'))} AS {d.q('week')}, {', '.join(keys)}, MAX({d.q('source_name')}) AS "
        f"{d.q('source_name')}, {', '.join(sums)} FROM {qualify(ENGAGEMENT_DAILY)} GROUP BY 1, 2, 3, 4"
    )
    columns = [
        d.q(c) for c in ("week", "channel", "source_type", "source_id", "source_name", "deliveries", *SUMMED)
    ]
    return f"SELECT {', '.join(columns)}, {', '.join(_rates(d))} FROM ({inner}) AS w"


def campaign_performance_sql(d: Dialect, qualify: Qualifier) -> str:
    """Lifetime and last-30-day counts and rates per campaign, broadcast, newsletter and transactional message."""
    day, last = d.q("day"), d.q("last_day")
    recent = f"{day} > {d.minus_days('l.' + last, LAST_DAYS)}"
    sums = [f"SUM({d.q(c)}) AS {d.q(c)}" for c in ("deliveries", *SUMMED)]
    sums_30 = [
        f"SUM(CASE WHEN {recent} THEN {d.q(c)} ELSE 0 END) AS {d.q(c + '_30d')}" for c in ("deliveries", *SUMMED)
    ]
    inner = (
        f"SELECT {d.q('source_type')}, {d.q('source_id')}, MAX({d.q('source_name')}) AS {d.q('source_name')}, "
        f"MIN({day}) AS {d.q('first_day')}, MAX({day}) AS {last}, {', '.join(sums)}, {', '.join(sums_30)} "
        f"FROM {qualify(ENGAGEMENT_DAILY)} CROSS JOIN (SELECT MAX({day}) AS {last} FROM "
        f"{qualify(ENGAGEMENT_DAILY)}) AS l WHERE {d.q('source_type')} <> 'other' GROUP BY 1, 2"
    )
    columns = [
        d.q(c)
        for c in (
            "source_type",
            "source_id",
            "source_name",
            "first_day",
            "last_day",
            "deliveries",
            *SUMMED,
            "deliveries_30d",
            *[c + "_30d" for c in SUMMED],
        )
    ]
    rates = [*_rates(d), *_rates(d, suffix="_30d")]
    return f"SELECT {', '.join(columns)}, {', '.join(rates)} FROM ({inner}) AS p"


def reconciliation_sql(d: Dialect, qualify: Qualifier, columns: Mapping[str, set[str]], timezone: str) -> str | None:
    """Each ``*_metrics`` series (days) summed over its window vs the deliveries of those days; one row per
    source and count. None when no metrics table is loaded."""
    series = []
    for kind, _, _, table, id_column in SOURCE_TYPES:
        have = columns.get(table)
        if not have or id_column not in have or "period_start" not in have:
            continue
        sums = [f"SUM({d.q(c)}) AS {d.q(c)}" if c in have else f"CAST(0 AS BIGINT) AS {d.q(c)}" for c in RECONCILED]
        period = f" WHERE {d.q('period')} = 'days'" if "period" in have else ""
        end = d.q("period_end") if "period_end" in have else d.q("period_start")
        series.append(
            f"SELECT '{kind}' AS {d.q('source_type')}, {d.q(id_column)} AS {d.q('source_id')}, "
            f"MIN({d.day(d.q('period_start'), timezone)}) AS {d.q('window_start')}, "
            f"MAX({d.day(end, timezone)}) AS {d.q('window_end')}, {', '.join(sums)} "
            f"FROM {qualify(table)}{period} GROUP BY 1, 2"
        )
    if not series:
        return None
    keys = f"e.{d.q('source_type')} = s.{d.q('source_type')} AND e.{d.q('source_id')} = s.{d.q('source_id')}"
    group = [f"s.{d.q(c)}" for c in ("source_type", "source_id", "window_start", "window_end")]
    # one pass: each metrics series joined with the days of engagement_daily inside its window
    joined = (
        f"SELECT {', '.join(group)}, "
        + ", ".join(
            f"MAX(s.{d.q(c)}) AS {d.q('metrics_' + c)}, SUM(e.{d.q(c)}) AS {d.q('messages_' + c)}" for c in RECONCILED
        )
        + f" FROM ({' UNION ALL '.join(series)}) AS s LEFT JOIN {qualify(ENGAGEMENT_DAILY)} AS e ON {keys} "
        f"AND e.{d.q('day')} >= s.{d.q('window_start')} AND e.{d.q('day')} < s.{d.q('window_end')} "
        f"GROUP BY {', '.join(group)}"
    )
    names = " UNION ALL ".join(f"SELECT '{c}' AS {d.q('metric')}" for c in RECONCILED)

    def pick(prefix: str) -> str:
        whens = " ".join(f"WHEN '{c}' THEN j.{d.q(prefix + c)}" for c in RECONCILED)
        return f"COALESCE(CASE k.{d.q('metric')} {whens} END, 0)"

    return (
        f"SELECT j.{d.q('source_type')}, j.{d.q('source_id')}, k.{d.q('metric')}, j.{d.q('window_start')}, "
        f"j.{d.q('window_end')}, {pick('messages_')} AS {d.q('from_messages')}, {pick('metrics_')} AS "
        f"{d.q('from_metrics')}, {pick('metrics_')} - {pick('messages_')} AS {d.q('difference')} "
        f"FROM ({joined}) AS j CROSS JOIN ({names}) AS k"
    )


def activity_daily_sql(d: Dialect, qualify: Qualifier, have: set[str], timezone: str) -> str:
    """Activities per day x type x name: events and distinct people."""
    person_columns = [c for c in ("customer_identifiers__cio_id", "customer_id") if c in have]
    person = f"COALESCE({', '.join(d.q(c) for c in person_columns)})" if person_columns else f"CAST(NULL AS {d.text})"
    name = d.q("name") if "name" in have else f"CAST(NULL AS {d.text})"
    where = f" WHERE {d.q(DELETED_AT)} IS NULL" if DELETED_AT in have else ""
    return (
        f"SELECT {d.day(d.q('timestamp'), timezone)} AS {d.q('day')}, {d.q('type')} AS {d.q('activity_type')}, "
        f"{name} AS {d.q('name')}, COUNT(*) AS {d.q('events')}, COUNT(DISTINCT {person}) AS {d.q('people')} "
        f"FROM {qualify('activities')}{where} GROUP BY 1, 2, 3"
    )


# -- running a build against a dlt pipeline ---------------------------------------------------------


def dataset_columns(client: Any, dialect: Dialect) -> dict[str, set[str]]:
    """Table -> column names of the client's dataset, as the warehouse reports them."""
    dataset = client.dataset_name
    information_schema = ""
    if dialect.name == "bigquery":
        probe = client.make_qualified_table_name("cio_probe")
        information_schema = probe[: probe.rindex(".")] + ".INFORMATION_SCHEMA.COLUMNS"
    rows = client.execute_sql(dialect.columns_query(dialect.literal(dataset), information_schema)) or []
    columns: dict[str, set[str]] = {}
    for table, column in rows:
        columns.setdefault(str(table), set()).add(str(column))
    return columns


def build_models(pipeline: Any, timezone: str = "UTC") -> ModelPlan:
    """Create (or re-create) every model the pipeline's dataset allows; returns what ran and what was skipped.

    Raises :class:`AnalyticsInputError` for a dataset with neither ``messages`` nor ``activities`` rows.
    """
    dialect = dialect_for(pipeline.destination.destination_name)
    with pipeline.sql_client() as client:
        columns = loaded_columns(pipeline, client, dialect)
        if not _has_rows(client, columns):
            raise AnalyticsInputError(never_loaded(pipeline))
        plan = plan_models(dialect, client.make_qualified_table_name, columns, timezone)
        for _, statements in plan.statements:
            for statement in statements:
                client.execute_sql(statement)
    return plan


def loaded_columns(pipeline: Any, client: Any, dialect: Dialect) -> dict[str, set[str]]:
    """:func:`dataset_columns` of the pipeline's dataset; :class:`AnalyticsInputError` saying what to load
    first when there is no dataset at all."""
    try:
        return dataset_columns(client, dialect)
    except Exception as exc:  # noqa: BLE001 - no dataset at all
        raise AnalyticsInputError(never_loaded(pipeline)) from exc


def _has_rows(client: Any, columns: Mapping[str, set[str]]) -> bool:
    for table in ("messages", "activities"):
        if table in columns:
            rows = client.execute_sql(f"SELECT 1 FROM {client.make_qualified_table_name(table)} LIMIT 1")
            if rows:
                return True
    return False


def never_loaded(pipeline: Any) -> str:
    return (
        f"dataset {pipeline.dataset_name!r} has no messages or activities rows: load the workspace first "
        f"(customerio-pipeline --destination {pipeline.destination.destination_name} --dataset-name "
        f"{pipeline.dataset_name} --pipeline-name {pipeline.pipeline_name})"
    )
