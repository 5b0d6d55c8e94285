"""Deliveries converge under late engagement; per-parent delivery windows start at the parent's creation."""

from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone

from customerio_source.late_engagement import engagement_delivery, gap_counts, plan_spans

from .conftest import API_KEY, Loader

DELIVERY_TABLES = [
    "messages",
    "campaign_messages",
    "broadcast_messages",
    "newsletter_messages",
    "transactional_message_deliveries",
]
DAY = 86_400


def snapshot(loader: Loader, table: str, columns: list[str]) -> list[tuple]:
    listed = ", ".join(f'"{c}"' for c in columns)
    return loader.query(f"SELECT {listed} FROM {{ds}}.{table} ORDER BY id")


def data_columns(loader: Loader, table: str) -> list[str]:
    rows = loader.query(
        f"SELECT column_name FROM information_schema.columns WHERE table_schema = '{loader.dataset}' "
        f"AND table_name = '{table}' ORDER BY column_name"
    )
    return [r[0] for r in rows if not r[0].startswith("_dlt")]


def differences(columns: list[str], got: list[tuple], expected: list[tuple]) -> list[tuple]:
    """(id, column, got, expected) of the first differing values, and the row counts."""
    out: list[tuple] = [("rows", len(got), len(expected))]
    for mine, theirs in zip(got, expected, strict=False):
        for name, a, b in zip(columns, mine, theirs, strict=True):
            if a != b:
                out.append((mine[columns.index("id")], name, a, b))
    return out[:8]


def test_incremental_runs_equal_a_full_reread_after_late_engagement(tmp_path):
    from customerio_source.simulator import SimulatorServer, Workspace

    ws = Workspace(scale="tiny", seed=11)
    with SimulatorServer(ws, api_key=API_KEY) as server:
        incremental = Loader(server.base_url, tmp_path / "incremental")
        incremental.run(DELIVERY_TABLES)
        full_requests = incremental.stats.total
        late: list[int] = []
        for _ in range(2):
            ws.advance()
            late += ws.last_changes["late_engagement"]
            incremental.run(DELIVERY_TABLES)
            state = incremental.pipeline().state["sources"]["customerio"]["resources"]["messages"]
            assert {"late_since", "deep_at"} <= set(state)  # timestamps only: nothing per delivery
        incremental_requests = incremental.stats.total
        # the windows planned from the warehouse were used, not the one-by-one fallback
        assert not server.stats.by_operation.get("GET /v1/messages/{message_id}"), server.stats.by_operation
        full = Loader(server.base_url, tmp_path / "full")
        full.run(DELIVERY_TABLES)

    # late metrics landed on deliveries days, weeks and months old, beyond the 3-day lookback
    ages = sorted((ws.now - ws.d_created[i]) / DAY for i in late)
    assert ages[0] > 3 and any(7 < a < 40 for a in ages) and ages[-1] > 60, ages
    late_ids = {ws.delivery_id(i) for i in late}
    stored = incremental.query("SELECT id, metrics__opened FROM {ds}.messages")
    opened = {row[0] for row in stored if row[1] is not None}
    assert late_ids <= opened, late_ids - opened
    for table in DELIVERY_TABLES:
        columns = data_columns(full, table)
        assert data_columns(incremental, table) == columns, table
        expected = snapshot(full, table, columns)
        # a deleted broadcast's deliveries stay in the warehouse (deliveries are never marked deleted), but
        # its per-parent list is gone from the API: compare the rows the API still serves
        served = {row[columns.index("id")] for row in expected}
        got = [row for row in snapshot(incremental, table, columns) if row[columns.index("id")] in served]
        assert got == expected, (table, differences(columns, got, expected))
    assert incremental_requests < full_requests, (incremental_requests, full_requests)


def test_without_engagement_reads_nothing_more(tmp_path):
    """A run with no engagement since the last one re-reads no old delivery (the log scan only)."""
    from customerio_source.simulator import SimulatorServer, Workspace

    ws = Workspace(scale="tiny", seed=11)
    with SimulatorServer(ws, api_key=API_KEY) as server:
        loader = Loader(server.base_url, tmp_path)
        loader.run(["messages"])
        server.stats.reset()
        loader.run(["messages"])
        operations = dict(server.stats.by_operation)
    assert operations.get("GET /v1/messages") == 1, operations  # the lookback window only
    assert operations.get("GET /v1/activities") == 1, operations  # one page: nothing since the last run


def test_deep_reread_when_due(tmp_path):
    """A deep re-read is due every `messages_deep_reread_days`: then the run reads `messages_deep_lookback_days`."""
    from customerio_source.simulator import SimulatorServer, Workspace

    ws = Workspace(scale="tiny", seed=11)
    with SimulatorServer(ws, api_key=API_KEY) as server:
        loader = Loader(server.base_url, tmp_path)
        loader.run(["messages"])
        loader.run(["messages"], messages_deep_reread_days=0)
        deep_rows = loader.pipeline().last_trace.last_normalize_info.row_counts.get("messages", 0)
        loader.run(["messages"])
        normal_rows = loader.pipeline().last_trace.last_normalize_info.row_counts.get("messages", 0)
    created = [ws.d_created[i] for i in range(ws.n_deliveries()) if not ws.is_draft(i)]
    last_30 = sum(1 for c in created if c >= ws.now - 30 * DAY - 3600)
    assert deep_rows >= last_30 - 1 and deep_rows > normal_rows, (deep_rows, normal_rows, last_30)


def test_engagement_types():
    assert engagement_delivery({"type": "opened_email", "delivery_id": "d1"}) == "d1"
    assert engagement_delivery({"type": "clicked_push", "delivery_id": "d2"}) == "d2"
    assert engagement_delivery({"type": "converted_in_app", "delivery_id": "d3"}) == "d3"
    assert engagement_delivery({"type": "topic_unsubscribed_email", "delivery_id": "d4"}) == "d4"
    assert engagement_delivery({"type": "bounced_email", "delivery_id": "d5"}) == "d5"
    assert engagement_delivery({"type": "sent_email", "delivery_id": "d6"}) is None
    assert engagement_delivery({"type": "opened_email", "delivery_id": None}) is None
    assert engagement_delivery({"type": "attribute_change"}) is None


def test_plan_spans_joins_neighbours_only_when_it_saves_requests():
    # two targets with 10 rows between them: one window (1 request) instead of two
    assert plan_spans([100, 200], [1, 1], [10, 0]) == [(100, 201)]
    # 5,000 rows between: apart (2 requests) is cheaper than together (6)
    assert plan_spans([100, 200], [1, 1], [5000, 0]) == [(100, 101), (200, 201)]
    # a burst of 3 targets among 1,500 rows: 2 requests, not 3; the third joins nobody (a tie: fewer rows apart)
    assert plan_spans([10, 20, 30], [1, 1, 1], [700, 797, 0]) == [(10, 21), (30, 31)]
    # 3 targets among 1,000 rows: one request together
    assert plan_spans([10, 20, 30], [1, 1, 1], [500, 497, 0]) == [(10, 31)]
    # never wider than 180 days
    far = 200 * DAY
    assert plan_spans([0, far], [1, 1], [0, 0]) == [(0, 1), (far, far + 1)]
    import numpy as np

    at, between = gap_counts([100, 200], iter([np.array([100, 100, 150, 199, 200, 250])]))
    assert (at, between) == ([2, 1], [2, 1])


def test_per_parent_windows_start_at_the_parents_creation(tmp_path):
    """Each newsletter is read from its own `created`: one 180-day window for a recent one, not the history's."""
    from customerio_source.simulator import SimulatorServer, Workspace

    ws = Workspace(scale="tiny", seed=11)
    with SimulatorServer(ws, api_key=API_KEY) as server:
        loader = Loader(server.base_url, tmp_path)
        loader.run(["newsletter_messages"])
        requests = loader.stats.by_table.get("newsletter_messages")
    parents = ws.newsletters()
    senders = [*ws.campaigns(), *ws.broadcasts(), *parents]
    history_start = min(min(p["created"] for p in senders), *(t["created_at"] for t in ws.cat.transactional.values()))
    reference = ws.now + DAY  # the open newest window ends a day after now
    window = 180 * DAY
    expected = sum(math.ceil((reference - max(history_start, p["created"] - 3600)) / window) for p in parents)
    before = len(parents) * math.ceil((reference - history_start) / window)  # every window back to the history
    assert requests == expected < before, (requests, expected, before)


def test_parent_windows_function():
    from customerio_source.deliveries import parent_windows

    now = datetime(2026, 1, 1, tzinfo=timezone.utc)
    start = now - timedelta(days=400)
    recent = {"created": int((now - timedelta(days=10)).timestamp())}
    spans = parent_windows(recent, start, None, now=now)
    assert len(spans) == 1 and spans[0][1] is None and spans[0][0] == now - timedelta(days=10, hours=1)
    old = {"created_at": int((now - timedelta(days=500)).timestamp())}  # transactional messages: created_at
    assert len(parent_windows(old, start, None, now=now)) == 3
    assert parent_windows(recent, start, now - timedelta(days=20)) == []


def test_without_a_readable_destination_each_engaged_delivery_is_fetched():
    """Outside a pipeline (no destination to ask for `created`), engaged deliveries come from GET /v1/messages/{id}."""
    import time

    from customerio_source.arrow_pages import PageDecoder
    from customerio_source.catalogue import CATALOGUE
    from customerio_source.client import CustomerIOClient
    from customerio_source.context import RunContext
    from customerio_source.deliveries import DELIVERY_NESTED, DELIVERY_SCHEMA
    from customerio_source.late_engagement import LateEngagement
    from customerio_source.simulator import SimulatorServer, Workspace

    ws = Workspace(scale="tiny", seed=11)
    started = time.time()
    ws.advance()
    engaged = {ws.delivery_id(i) for i in ws.last_changes["late_engagement"]}
    with SimulatorServer(ws, api_key=API_KEY) as server:
        ctx = RunContext(client=CustomerIOClient(API_KEY, base_url=server.base_url, rate_limit=0))
        for table in ("messages", "campaign_messages"):
            spec = CATALOGUE[table]
            late = LateEngagement(ctx, spec, {"late_since": started - 60, "deep_at": started}, incremental=True)
            assert not late.deep
            plan = late.plan(datetime.fromtimestamp(ws.now - 3 * DAY, timezone.utc))
            assert not plan.spans and engaged <= set(plan.fetch)
            decoder = PageDecoder(spec.envelope, DELIVERY_SCHEMA, DELIVERY_NESTED, required=spec.primary_key)
            rows = [row for page in late.fetched(plan.fetch, decoder) for row in page.to_pylist()]
            by_id = {row["id"]: row for row in rows}
            for i in ws.last_changes["late_engagement"]:
                record = ws.delivery(i)
                if table == "campaign_messages" and record["campaign_id"] is None:
                    assert record["id"] not in by_id  # another parent's delivery: not this table's
                    continue
                got = {
                    k.removeprefix("metrics__"): v for k, v in by_id[record["id"]].items() if k.startswith("metrics__")
                }
                assert {k: int(v.timestamp()) for k, v in got.items() if v is not None} == record["metrics"]


def test_late_engagement_lands_in_postgres(tmp_path):
    """The warehouse look-ups (ids and `created` bounds as parameters) work on Postgres too."""
    import os

    import dlt
    import pytest

    from customerio_source import customerio_source, load
    from customerio_source.simulator import SimulatorServer, Workspace

    dsn = os.environ.get("DESTINATION__POSTGRES__CREDENTIALS")
    if not dsn:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("Postgres is required under CI (`source .ci/postgres.sh`)")
        pytest.skip("Postgres not available (source .ci/postgres.sh)")
    psycopg2 = pytest.importorskip("psycopg2")
    dataset = f"cio_late_{int(datetime.now().timestamp() * 1000) % 10**9}"
    pipeline = dlt.pipeline(
        pipeline_name=dataset,
        pipelines_dir=str(tmp_path / "pipelines"),
        destination=dlt.destinations.postgres(dsn),
        dataset_name=dataset,
    )
    ws = Workspace(scale="tiny", seed=11)
    try:
        with SimulatorServer(ws, api_key=API_KEY) as server:
            for step in range(2):
                if step:
                    ws.advance()
                source = customerio_source(api_key=API_KEY, base_url=server.base_url, tables="messages", rate_limit=0)
                load(pipeline, source)
            assert not server.stats.by_operation.get("GET /v1/messages/{message_id}")
        with psycopg2.connect(dsn) as con, con.cursor() as cur:
            cur.execute(f"SELECT id, metrics__opened FROM {dataset}.messages")
            opened = {row[0] for row in cur.fetchall() if row[1] is not None}
        assert {ws.delivery_id(i) for i in ws.last_changes["late_engagement"]} <= opened
    finally:
        with psycopg2.connect(dsn) as con, con.cursor() as cur:
            cur.execute(f"DROP SCHEMA IF EXISTS {dataset} CASCADE")
