"""The models' values against counts worked out by hand (tests/analytics_data.py), on DuckDB and Postgres."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator
from typing import Any

import dlt
import pytest

from customerio_source.analytics.definitions import RATES
from customerio_source.analytics.models import build_models

from .analytics_data import CAMPAIGNS, load_dataset, message, ts

D = dt.date


def make_pipeline(kind: str, tmp_path: Any) -> dlt.Pipeline:
    name = f"cio_an_{uuid.uuid4().hex[:8]}"
    if kind == "duckdb":
        destination = dlt.destinations.duckdb(str(tmp_path / "an.duckdb"))
    else:
        from .test_postgres import postgres_dsn

        destination = dlt.destinations.postgres(postgres_dsn())
    return dlt.pipeline(
        pipeline_name=name, pipelines_dir=str(tmp_path / "pipelines"), destination=destination, dataset_name=name
    )


@pytest.fixture(scope="module", params=["duckdb", pytest.param("postgres", marks=pytest.mark.postgres)])
def loaded(request: Any, tmp_path_factory: Any) -> Iterator[dlt.Pipeline]:
    """The dataset, loaded once per warehouse; every test builds the models it reads."""
    pipeline = make_pipeline(request.param, tmp_path_factory.mktemp(request.param))
    load_dataset(pipeline)
    yield pipeline
    if request.param == "postgres":
        with pipeline.sql_client() as client:
            client.drop_dataset()


def rows(pipeline: dlt.Pipeline, sql: str) -> list[tuple]:
    with pipeline.sql_client() as client:
        out = []
        for row in client.execute_sql(sql.replace("{t}", client.make_qualified_table_name("X"))) or []:
            out.append(tuple(float(v) if hasattr(v, "as_integer_ratio") and not isinstance(v, int) else v for v in row))
        return out


def query(pipeline: dlt.Pipeline, table: str, columns: str, order: str) -> list[tuple]:
    with pipeline.sql_client() as client:
        sql = f"SELECT {columns} FROM {client.make_qualified_table_name(table)} ORDER BY {order}"
        return [tuple(_plain(v) for v in row) for row in client.execute_sql(sql) or []]


def _plain(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return value.date()
    if value is not None and type(value).__name__ == "Decimal":
        return float(value)
    return value


def test_engagement_daily_counts_and_rates(loaded: dlt.Pipeline) -> None:
    plan = build_models(loaded)
    assert plan.models == [
        "engagement_daily",
        "engagement_weekly",
        "campaign_performance",
        "campaign_metrics_reconciliation",
        "activity_daily",
    ]
    got = query(
        loaded,
        "engagement_daily",
        "day, channel, source_type, source_id, source_name, deliveries, attempted, sent, delivered, opened, "
        "clicked, converted, bounced, unsubscribed, failed",
        "day, channel, source_type, source_id",
    )
    assert got == [
        (D(2026, 1, 15), "email", "campaign", 2, "Black Friday", 1, 0, 1, 1, 0, 0, 0, 0, 0, 0),
        # m1, m2, m3 (m7 is deleted)
        (D(2026, 3, 2), "email", "campaign", 1, "Spring Sale", 3, 0, 3, 2, 2, 1, 1, 1, 0, 0),
        (D(2026, 3, 3), "push", "campaign", 2, "Black Friday", 1, 0, 1, 1, 0, 0, 0, 0, 0, 0),
        (D(2026, 3, 8), "email", "broadcast", 10, "March news", 1, 0, 1, 1, 1, 0, 0, 0, 1, 0),
        (D(2026, 3, 9), "email", "campaign", 1, "Spring Sale", 1, 1, 0, 0, 0, 0, 0, 0, 0, 1),
    ]
    rates = query(
        loaded,
        "engagement_daily",
        "delivery_rate, open_rate, click_rate, click_to_open_rate, "
        "conversion_rate, unsubscribe_rate, bounce_rate, human_opened, human_open_rate",
        "day, channel, source_type, source_id",
    )
    assert rates[1][:7] == pytest.approx((2 / 3, 1.0, 0.5, 0.5, 0.5, 0.0, 1 / 3))
    assert rates[1][7:] == (None, None)  # no human opens in this dataset: NULL, not 0
    assert rates[3][5] == pytest.approx(1.0)  # the broadcast's unsubscribe rate
    assert rates[4][0] is None and rates[4][6] is None  # nothing sent: no delivery or bounce rate


def test_timezone_moves_a_delivery_to_the_next_day(loaded: dlt.Pipeline) -> None:
    build_models(loaded, timezone="Asia/Tokyo")
    got = query(loaded, "engagement_daily", "day, sent, opened", "day, channel, source_type, source_id")
    # m2 (23:30 UTC on 03-02) is 08:30 on 03-03 in Tokyo; m4 (push, 09:00 UTC) 18:00 on 03-03
    assert (D(2026, 3, 2), 2, 1) in got
    assert (D(2026, 3, 3), 1, 1) in got


def test_weekly_starts_on_monday(loaded: dlt.Pipeline) -> None:
    build_models(loaded)
    got = query(
        loaded,
        "engagement_weekly",
        "week, channel, source_type, source_id, sent, delivered, opened",
        "week, channel, source_type, source_id",
    )
    assert got == [
        (D(2026, 1, 12), "email", "campaign", 2, 1, 1, 0),
        (D(2026, 3, 2), "email", "broadcast", 10, 1, 1, 1),  # Sunday 03-08 belongs to the week of Monday 03-02
        (D(2026, 3, 2), "email", "campaign", 1, 3, 2, 2),
        (D(2026, 3, 2), "push", "campaign", 2, 1, 1, 0),
        (D(2026, 3, 9), "email", "campaign", 1, 0, 0, 0),
    ]
    open_rate = query(loaded, "engagement_weekly", "open_rate", "week, channel, source_type, source_id")
    assert open_rate[2][0] == pytest.approx(1.0)


def test_campaign_performance_lifetime_and_last_30_days(loaded: dlt.Pipeline) -> None:
    build_models(loaded)
    got = query(
        loaded,
        "campaign_performance",
        "source_type, source_id, source_name, first_day, last_day, "
        "deliveries, sent, delivered, opened, sent_30d, delivered_30d",
        "source_type, source_id",
    )
    assert got == [
        ("broadcast", 10, "March news", D(2026, 3, 8), D(2026, 3, 8), 1, 1, 1, 1, 1, 1),
        ("campaign", 1, "Spring Sale", D(2026, 3, 2), D(2026, 3, 9), 4, 3, 2, 2, 3, 2),
        ("campaign", 2, "Black Friday", D(2026, 1, 15), D(2026, 3, 3), 2, 2, 2, 0, 1, 1),  # 01-15 is > 30 days old
    ]
    rates = query(loaded, "campaign_performance", "open_rate, delivery_rate_30d", "source_type, source_id")
    assert rates[1] == pytest.approx((1.0, 2 / 3))


def test_metrics_reconciliation_lists_differences(loaded: dlt.Pipeline) -> None:
    build_models(loaded)
    got = query(
        loaded,
        "campaign_metrics_reconciliation",
        "source_type, source_id, metric, window_start, window_end, from_messages, from_metrics, difference",
        "metric",
    )
    assert len(got) == 7  # one campaign series x 7 counts (the weeks row is not compared)
    by_metric = {row[2]: row for row in got}
    assert by_metric["sent"] == ("campaign", 1, "sent", D(2026, 3, 2), D(2026, 3, 4), 3, 3, 0)
    assert by_metric["opened"][5:] == (2, 3, 1)
    assert by_metric["clicked"][5:] == (1, 1, 0)


def test_activity_daily_events_and_unique_people(loaded: dlt.Pipeline) -> None:
    build_models(loaded)
    got = query(loaded, "activity_daily", "day, activity_type, name, events, people", "day, activity_type, name")
    assert got == [
        (D(2026, 3, 2), "event", "app_login", 1, 1),
        (D(2026, 3, 2), "event", "email_opened", 3, 2),
        (D(2026, 3, 3), "page", "/pricing", 1, 1),
    ]


def test_rebuild_replaces_the_models(loaded: dlt.Pipeline) -> None:
    build_models(loaded)
    build_models(loaded)
    assert len(query(loaded, "engagement_daily", "day", "day")) == 5


# -- rates over mixed channels (issue 16: "Spring Sale" opened 101.2% of what it delivered) ---------------

MIXED = [
    # campaign 1: three emails and two in-app messages; in-app reports `sent` and `opened`, never `delivered`
    message("e1", ts("2026-03-02", 9), "email", ["sent", "delivered", "opened", "clicked", "converted"], campaign_id=1),
    message("e2", ts("2026-03-02", 9), "email", ["sent", "delivered"], campaign_id=1),
    message("e3", ts("2026-03-02", 9), "email", ["sent", "delivered", "opened", "unsubscribed"], campaign_id=1),
    message("i1", ts("2026-03-02", 10), "in_app", ["sent", "opened", "clicked", "converted"], campaign_id=1),
    message("i2", ts("2026-03-02", 10), "in_app", ["sent", "opened"], campaign_id=1),
    # campaign 2: one email opened, two SMS clicked (SMS reports clicks, never opens)
    message("e5", ts("2026-03-02", 11), "email", ["sent", "delivered", "opened"], campaign_id=2),
    message("t1", ts("2026-03-02", 11), "twilio", ["sent", "delivered", "clicked"], campaign_id=2),
    message("t2", ts("2026-03-02", 11), "twilio", ["sent", "delivered", "clicked"], campaign_id=2),
]


@pytest.fixture(scope="module", params=["duckdb", pytest.param("postgres", marks=pytest.mark.postgres)])
def mixed(request: Any, tmp_path_factory: Any) -> Iterator[dlt.Pipeline]:
    """MIXED and the campaigns' names, loaded and modelled once per warehouse."""
    pipeline = make_pipeline(request.param, tmp_path_factory.mktemp(f"mixed_{request.param}"))

    @dlt.source(name="customerio")
    def mixed_source() -> Any:
        yield dlt.resource(MIXED, name="messages", write_disposition="replace")
        yield dlt.resource(CAMPAIGNS, name="campaigns", write_disposition="replace")

    pipeline.run(mixed_source()).raise_on_failed_jobs()
    build_models(pipeline)
    yield pipeline
    if request.param == "postgres":
        with pipeline.sql_client() as client:
            client.drop_dataset()


RATE_COLUMNS = (
    "delivery_rate, open_rate, click_rate, click_to_open_rate, conversion_rate, unsubscribe_rate, bounce_rate"
)


def test_rates_count_only_deliveries_of_their_denominator(mixed: dlt.Pipeline) -> None:
    # the counts still say what they count: every unique open and click, in-app and SMS ones too
    counts = query(
        mixed, "campaign_performance", "source_name, sent, delivered, opened, clicked, converted", "source_id"
    )
    assert counts == [("Spring Sale", 5, 3, 4, 2, 2), ("Black Friday", 3, 3, 1, 2, 0)]
    # was open 4/3, conversion 2/3 (in-app opens over email deliveries) and click-to-open 2/1 (SMS clicks)
    for suffix in ("", "_30d"):
        columns = ", ".join(f"{c.strip()}{suffix}" for c in RATE_COLUMNS.split(","))
        spring, black = query(mixed, "campaign_performance", columns, "source_id")
        # Spring Sale: of 3 delivered emails 2 opened, 1 clicked, 1 converted, 1 unsubscribed; of 4 opened, 2 clicked
        assert spring == pytest.approx((3 / 5, 2 / 3, 1 / 3, 2 / 4, 1 / 3, 1 / 3, 0.0))
        # Black Friday: of 3 delivered 1 opened and 2 clicked; the opened one was not clicked
        assert black == pytest.approx((1.0, 1 / 3, 2 / 3, 0.0, 0.0, 0.0, 0.0))
    numerators = query(
        mixed, "campaign_performance", "opened_of_delivered, clicked_of_opened, converted_of_delivered", "source_id"
    )
    assert numerators == [(2, 2, 1), (1, 0, 0)]


def test_in_app_rows_have_no_open_rate(mixed: dlt.Pipeline) -> None:
    got = query(
        mixed, "engagement_daily", f"channel, sent, delivered, opened, {RATE_COLUMNS}", "source_id, channel"
    )
    assert got == [
        ("email", 3, 3, 2, 1.0, pytest.approx(2 / 3), pytest.approx(1 / 3), 0.5, pytest.approx(1 / 3),
         pytest.approx(1 / 3), 0.0),
        ("in_app", 2, 0, 2, 0.0, None, None, 0.5, None, None, 0.0),  # nothing delivered: no rate over delivered
        ("email", 1, 1, 1, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0),
        ("twilio", 2, 2, 0, 1.0, 0.0, 1.0, None, 0.0, 0.0, 0.0),  # no opens: no click-to-open
    ]


def test_no_rate_is_above_one(mixed: dlt.Pipeline) -> None:
    tables = {"engagement_daily": ("",), "engagement_weekly": ("",), "campaign_performance": ("", "_30d")}
    for table, suffixes in tables.items():
        names = [rate.name + s for rate in RATES for s in suffixes if rate.name != "human_open_rate"]
        with mixed.sql_client() as client:
            sql = f"SELECT {', '.join(f'MAX({n})' for n in names)} FROM {client.make_qualified_table_name(table)}"
            (highest,) = client.execute_sql(sql)
        seen = dict(zip(names, highest, strict=True))
        assert all(value is not None and 0 <= value <= 1 for value in highest), (table, seen)
