"""The models' SQL for every warehouse, checked offline: BigQuery's parsed and its dialect's spellings asserted,
and each source table read once per build."""

from __future__ import annotations

from collections import Counter

import pytest
import sqlglot
from sqlglot import exp

from customerio_source.analytics.dialects import DIALECTS, dialect_for
from customerio_source.analytics.models import AnalyticsInputError, plan_models

COLUMNS = {
    "messages": {
        "id",
        "created",
        "type",
        "campaign_id",
        "broadcast_id",
        "newsletter_id",
        "transactional_message_id",
        "metrics__sent",
        "metrics__delivered",
        "metrics__opened",
        "metrics__clicked",
        "metrics__converted",
        "metrics__bounced",
        "metrics__unsubscribed",
        "metrics__failed",
        "metrics__attempted",
        "metrics__human_opened",
        "_cio_deleted_at",
    },
    "activities": {"id", "timestamp", "type", "name", "customer_id", "customer_identifiers__cio_id"},
    "campaigns": {"id", "name"},
    "broadcasts": {"id", "name"},
    "newsletters": {"id", "name"},
    "transactional_messages": {"id", "name"},
    "campaign_metrics": {"campaign_id", "period", "period_start", "period_end", "sent", "delivered", "opened"},
    "broadcast_metrics": {"broadcast_id", "period", "period_start", "period_end", "sent", "clicked"},
    "newsletter_metrics": {"newsletter_id", "period", "period_start", "period_end", "sent"},
    "transactional_metrics": {"transactional_id", "period", "period_start", "period_end", "sent"},
}


def bq_qualify(name: str) -> str:
    return f"`my-project`.`customerio`.`{name}`"


def statements(dialect: str, timezone: str = "UTC", columns: dict | None = None) -> list[str]:
    plan = plan_models(
        DIALECTS[dialect],
        bq_qualify if dialect == "bigquery" else (lambda n: f'"ds"."{n}"'),
        columns or COLUMNS,
        timezone,
    )
    return [sql for _, group in plan.statements for sql in group]


@pytest.mark.parametrize("dialect", sorted(DIALECTS))
def test_every_statement_parses_in_its_dialect(dialect: str) -> None:
    sqls = statements(dialect, "Europe/Berlin")
    assert len(sqls) >= 5
    for sql in sqls:
        parsed = sqlglot.parse_one(sql, read=DIALECTS[dialect].sqlglot)  # raises ParseError on bad SQL
        assert parsed is not None


def test_bigquery_spellings() -> None:
    sqls = statements("bigquery", "America/New_York")
    text = "\n".join(sqls)
    daily = sqls[0]
    assert daily.startswith("CREATE OR REPLACE TABLE `my-project`.`customerio`.`engagement_daily` AS SELECT")
    assert "DATE(`created`, 'America/New_York')" in daily
    assert "SAFE_DIVIDE(m.`delivered_of_sent`, m.`sent`)" in daily
    assert "DATE_TRUNC(`day`, ISOWEEK)" in text  # Monday weeks (WEEK alone starts on Sunday)
    assert "DATE_SUB(l.`last_day`, INTERVAL 30 DAY)" in text
    assert "DATE(`timestamp`, 'America/New_York')" in text
    for wrong in ("NULLIF(", "DOUBLE", "CAST(DATE_TRUNC('week'", '"'):
        assert wrong not in text, wrong
    # the week and date functions survive a BigQuery round trip with their meaning
    weekly = sqlglot.parse_one(sqls[1], read="bigquery")
    trunc = next(weekly.find_all(exp.DateTrunc, exp.TimestampTrunc))
    assert "ISOWEEK" in trunc.sql(dialect="bigquery").upper()


def test_duckdb_and_postgres_spellings() -> None:
    duck, pg = "\n".join(statements("duckdb", "Asia/Tokyo")), "\n".join(statements("postgres", "Asia/Tokyo"))
    assert "CAST(timezone('Asia/Tokyo', \"created\") AS DATE)" in duck
    assert "CAST((\"created\" AT TIME ZONE 'Asia/Tokyo') AS DATE)" in pg
    assert 'DROP TABLE IF EXISTS "ds"."engagement_daily"' in pg and "CREATE OR REPLACE" not in pg
    assert 'CAST(m."delivered_of_sent" AS DOUBLE PRECISION) / NULLIF(m."sent", 0)' in pg


@pytest.mark.parametrize("dialect", sorted(DIALECTS))
def test_each_source_table_is_scanned_once(dialect: str) -> None:
    reads: Counter[str] = Counter()

    def counting(name: str) -> str:
        reads[name] += 1
        return f'"ds"."{name}"' if dialect != "bigquery" else f"`p`.`d`.`{name}`"

    plan = plan_models(DIALECTS[dialect], counting, COLUMNS)
    # the qualifier is called once per reference: every source table is referenced once in the whole build
    # (engagement_weekly, campaign_performance and the reconciliation read engagement_daily, not messages)
    for table in (*COLUMNS, "engagement_daily"):
        # engagement_daily: its own CREATE, weekly, performance (twice: rows and the newest day), reconciliation
        expected = 5 if table == "engagement_daily" else 1
        assert reads[table] == expected, table
    assert plan.models == [
        "engagement_daily",
        "engagement_weekly",
        "campaign_performance",
        "campaign_metrics_reconciliation",
        "activity_daily",
    ]


def test_bigquery_with_few_columns_uses_its_types() -> None:
    columns = {"messages": {"id", "created", "metrics__sent"}, "activities": {"id", "timestamp", "type"}}
    sqls = statements("bigquery", columns=columns)
    text = "\n".join(sqls)
    assert "CAST(NULL AS STRING)" in text and "VARCHAR" not in text
    for sql in sqls:
        sqlglot.parse_one(sql, read="bigquery")


def test_missing_columns_become_zero_or_null() -> None:
    columns = {"messages": {"id", "created", "type", "campaign_id", "metrics__sent"}}
    daily = statements("duckdb", columns=columns)[0]
    assert 'COUNT("metrics__sent") AS "sent"' in daily
    assert 'CAST(0 AS BIGINT) AS "opened"' in daily
    assert 'CAST(NULL AS BIGINT) AS "human_opened"' in daily  # "where present"
    assert 'CAST(0 AS BIGINT) AS "opened_of_delivered"' in daily  # a rate's numerator: both metrics or 0
    assert 'CAST(NULL AS BIGINT) AS "human_opened_of_delivered"' in daily
    assert 'CAST(0 AS BIGINT) AS "delivered_of_sent"' in daily
    assert "broadcast_id" not in daily


def test_plan_says_what_is_skipped() -> None:
    plan = plan_models(DIALECTS["duckdb"], lambda n: n, {"activities": COLUMNS["activities"]})
    assert plan.models == ["activity_daily"]
    assert "messages" in plan.skipped["engagement_daily"]


def test_bad_timezone_and_destination() -> None:
    with pytest.raises(AnalyticsInputError, match="unknown time zone 'Mars/Olympus'"):
        plan_models(DIALECTS["duckdb"], lambda n: n, COLUMNS, "Mars/Olympus")
    with pytest.raises(ValueError, match="snowflake"):
        dialect_for("snowflake")
