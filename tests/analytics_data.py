"""A small hand-made dataset for the analytics tests, with its counts worked out by hand below."""

from __future__ import annotations

import datetime as dt
from typing import Any

import dlt

UTC = dt.timezone.utc


def ts(day: str, hour: int = 0, minute: int = 0) -> dt.datetime:
    return dt.datetime.fromisoformat(day).replace(hour=hour, minute=minute, tzinfo=UTC)


def message(
    mid: str, created: dt.datetime, channel: str, metrics: list[str], deleted: bool = False, **source: int
) -> dict[str, Any]:
    row = {
        "id": mid,
        "created": created,
        "type": channel,
        "campaign_id": None,
        "broadcast_id": None,
        "newsletter_id": None,
        "transactional_message_id": None,
        "metrics": {name: created + dt.timedelta(minutes=1 + i) for i, name in enumerate(metrics)},
        "customer_identifiers": {"cio_id": f"p-{mid}"},
    }
    row.update(source)
    if deleted:
        row["_cio_deleted_at"] = ts("2026-03-10")
    return row


MESSAGES = [
    # Monday 2026-03-02, campaign 1 (email): 3 live deliveries, one deleted
    message(
        "m1", ts("2026-03-02", 10), "email", ["sent", "delivered", "opened", "clicked", "converted"], campaign_id=1
    ),
    message("m2", ts("2026-03-02", 23, 30), "email", ["sent", "delivered", "opened"], campaign_id=1),  # Tokyo: 03-03
    message("m3", ts("2026-03-02", 12), "email", ["sent", "bounced"], campaign_id=1),
    message("m7", ts("2026-03-02", 13), "email", ["sent", "delivered"], deleted=True, campaign_id=1),
    # Tuesday 03-03, campaign 2 (push)
    message("m4", ts("2026-03-03", 9), "push", ["sent", "delivered"], campaign_id=2),
    # Sunday 03-08 (still the week of Monday 03-02), broadcast 10
    message("m5", ts("2026-03-08", 9), "email", ["sent", "delivered", "opened", "unsubscribed"], broadcast_id=10),
    # Monday 03-09: a failed attempt of campaign 1 (no `sent`)
    message("m6", ts("2026-03-09", 9), "email", ["attempted", "failed"], campaign_id=1),
    # 2026-01-15: campaign 2, older than the last 30 days (newest day 03-09)
    message("m8", ts("2026-01-15", 9), "email", ["sent", "delivered"], campaign_id=2),
]
CAMPAIGNS = [{"id": 1, "name": "Spring Sale"}, {"id": 2, "name": "Black Friday"}]
BROADCASTS = [{"id": 10, "name": "March news"}]
CAMPAIGN_METRICS = [
    # campaign 1, days 03-02 and 03-03: metrics say 3 sent, 2 delivered, 3 opened (messages: 2), 1 clicked
    {
        "campaign_id": 1,
        "period": "days",
        "period_start": ts("2026-03-02"),
        "period_end": ts("2026-03-03"),
        "sent": 3,
        "delivered": 2,
        "opened": 2,
        "clicked": 1,
        "converted": 1,
        "bounced": 1,
        "unsubscribed": 0,
    },
    {
        "campaign_id": 1,
        "period": "days",
        "period_start": ts("2026-03-03"),
        "period_end": ts("2026-03-04"),
        "sent": 0,
        "delivered": 0,
        "opened": 1,
        "clicked": 0,
        "converted": 0,
        "bounced": 0,
        "unsubscribed": 0,
    },
    # a weeks row is not part of the comparison
    {
        "campaign_id": 1,
        "period": "weeks",
        "period_start": ts("2026-03-01"),
        "period_end": ts("2026-03-08"),
        "sent": 99,
        "delivered": 99,
        "opened": 99,
        "clicked": 99,
        "converted": 99,
        "bounced": 99,
        "unsubscribed": 99,
    },
]


def activity(aid: str, when: dt.datetime, kind: str, name: str | None, person: str) -> dict[str, Any]:
    return {
        "id": aid,
        "timestamp": when,
        "type": kind,
        "name": name,
        "customer_id": person,
        "customer_identifiers": {"cio_id": person},
        "data": {"device": "Web"},
    }


ACTIVITIES = [
    activity("a1", ts("2026-03-02", 8), "event", "email_opened", "p1"),
    activity("a2", ts("2026-03-02", 9), "event", "email_opened", "p1"),
    activity("a3", ts("2026-03-02", 10), "event", "email_opened", "p2"),
    activity("a4", ts("2026-03-02", 11), "event", "app_login", "p1"),
    activity("a5", ts("2026-03-03", 12), "page", "/pricing", "p3"),
]


def load_dataset(
    pipeline: dlt.Pipeline,
    tables: tuple[str, ...] = ("messages", "activities", "campaigns", "broadcasts", "campaign_metrics"),
) -> None:
    """Load the tables above (a subset with ``tables``) the way the source names them."""
    data = {
        "messages": MESSAGES,
        "activities": ACTIVITIES,
        "campaigns": CAMPAIGNS,
        "broadcasts": BROADCASTS,
        "campaign_metrics": CAMPAIGN_METRICS,
    }

    @dlt.source(name="customerio")
    def fixture_source() -> Any:
        for name in tables:
            columns = {"data": {"data_type": "json"}} if name == "activities" else None
            yield dlt.resource(data[name], name=name, write_disposition="replace", columns=columns)

    pipeline.run(fixture_source()).raise_on_failed_jobs()
