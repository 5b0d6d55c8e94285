"""Pure functions: table selection, intervals, delivery windows, metric buckets, timestamps."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from customerio_source import builders, customerio_source
from customerio_source.catalogue import CATALOGUE, default_tables
from customerio_source.client import RequestStats
from customerio_source.deliveries import WINDOW, windows
from customerio_source.errors import ConfigError
from customerio_source.metrics import leading_buckets, parse_echoed_time, series_rows, trailing_buckets
from customerio_source.source import parse_interval, select_tables
from customerio_source.transform import to_datetime

from .oracle import expected_keys

UTC = timezone.utc

INGESTR_TABLES = {
    "activities",
    "broadcasts",
    "broadcast_actions",
    "broadcast_messages",
    "campaigns",
    "campaign_actions",
    "campaign_messages",
    "collections",
    "customers",
    "customer_attributes",
    "customer_messages",
    "customer_activities",
    "customer_relationships",
    "exports",
    "info_ip_addresses",
    "messages",
    "newsletters",
    "newsletter_test_groups",
    "object_types",
    "objects",
    "reporting_webhooks",
    "segments",
    "sender_identities",
    "subscription_topics",
    "transactional_messages",
    "workspaces",
    "campaign_metrics",
    "campaign_action_metrics",
    "broadcast_metrics",
    "broadcast_action_metrics",
    "newsletter_metrics",
}


def test_catalogue_has_ingestr_tables_and_at_least_45():
    assert INGESTR_TABLES <= set(CATALOGUE)
    assert len(CATALOGUE) >= 45
    # per-person tables cost one request per person: not in `all`
    for name in ("customer_messages", "customer_activities", "customer_relationships"):
        assert name not in default_tables()


def test_per_person_and_per_object_tables_are_declared_whole_in_the_catalogue():
    """Their path, envelope, page size and timestamps come from the catalogue alone (no second table)."""
    per_person = [s for s in CATALOGUE.values() if s.builder is builders.per_person]
    per_object = [s for s in CATALOGUE.values() if s.builder is builders.objects and s.name != "objects"]
    assert {s.name for s in per_person} == {
        "customer_messages", "customer_activities", "customer_relationships", "customer_segments"}
    assert {s.name for s in per_object} == {"object_attributes", "object_relationships"}
    for spec in per_person:
        assert spec.path.startswith("/v1/customers/{customer_id}/") and spec.envelope
    for spec in per_object:
        assert spec.path.startswith("/v1/objects/{object_type_id}/{object_id}/") and spec.envelope
        assert spec.paginated == bool(spec.page_size)


def test_primary_keys_match_the_issue():
    expected = {
        "customers": ("cio_id",),
        "customer_attributes": ("cio_id",),
        "objects": ("object_type_id", "object_id"),
        "customer_relationships": ("cio_id", "object_type_id", "object_id"),
        "info_ip_addresses": ("ip",),
        "segment_memberships": ("segment_id", "cio_id"),
        "snippets": ("name",),
        "esp_suppressions": ("suppression_type", "email"),
        "segment_dependencies": ("segment_id",),
        "campaign_metrics": ("campaign_id", "period", "period_start"),
    }
    for name, key in expected.items():
        assert CATALOGUE[name].primary_key == key, name


def test_select_tables_all_and_metrics_periods():
    selected = select_tables("all", ("days",))
    assert set(selected) == set(default_tables())
    assert selected["campaign_metrics"] == ("days",)
    selected = select_tables("broadcast_metrics:days,campaign_metrics:hours+weeks,campaigns", ("days",))
    assert selected == {"broadcast_metrics": ("days",), "campaign_metrics": ("hours", "weeks"), "campaigns": ()}
    assert select_tables(["all", "customer_messages"], ("days",))["customer_messages"] == ()


@pytest.mark.parametrize(
    "tables, message",
    [
        ("campaignz", "unknown table 'campaignz'; valid tables: all, activities"),
        ("campaign_metrics:minutes", "unknown metrics period 'minutes'"),
        ("campaigns:days", "not a metrics table"),
    ],
)
def test_select_tables_rejects_bad_input(tables, message):
    with pytest.raises(ConfigError, match=message):
        select_tables(tables, ("days",))


def test_parse_interval():
    interval = parse_interval("2026-01-01", "2026-02-01T12:00:00+02:00")
    assert interval.start == datetime(2026, 1, 1, tzinfo=UTC)
    assert interval.end == datetime(2026, 2, 1, 10, tzinfo=UTC)
    assert interval.contains(datetime(2026, 1, 1, tzinfo=UTC))
    assert not interval.contains(datetime(2026, 2, 1, 10, tzinfo=UTC))  # half-open
    with pytest.raises(ConfigError, match="must be after"):
        parse_interval("2026-02-01", "2026-01-01")
    with pytest.raises(ConfigError, match="cannot read 'yesterday-ish'"):
        parse_interval("yesterday-ish", None)
    assert parse_interval(None, "2026-01-01").initial_value.year == 1970  # dlt needs an initial value


def test_windows_cover_the_range_without_gaps_or_overlap():
    start = datetime(2025, 1, 1, tzinfo=UTC)
    end = start + timedelta(days=400)
    parts = list(windows(start, end))
    assert all(upper - lower <= WINDOW for lower, upper in parts)
    assert parts[0][1] == end and parts[-1][0] == start
    for (lower, _), (_, upper) in zip(parts, parts[1:], strict=False):
        assert upper == lower
    assert list(windows(end, end)) == []
    open_ended = list(windows(start, None, now=end))
    assert open_ended[0][1] is None and open_ended[-1][0] == start
    assert all(u is not None and u == l2 for (_, u), (l2, _) in zip(open_ended[1:], open_ended[:-1], strict=True))


def test_trailing_buckets_in_eastern_time_across_dst():
    now = datetime(2026, 11, 3, 12, 0, tzinfo=UTC)  # DST ended on 2026-11-01 in New York
    buckets = trailing_buckets(4, "days", now)
    starts = [b[0] for b in buckets]
    assert starts[-1] == datetime(2026, 11, 3, 5, 0, tzinfo=UTC)  # 00:00 EST
    assert starts[0] == datetime(2026, 10, 31, 4, 0, tzinfo=UTC)  # 00:00 EDT
    assert buckets[1] == (datetime(2026, 11, 1, 4, 0, tzinfo=UTC), datetime(2026, 11, 2, 5, 0, tzinfo=UTC))  # 25 h day
    weeks = trailing_buckets(2, "weeks", now)
    assert weeks[-1][0] == datetime(2026, 11, 1, 4, 0, tzinfo=UTC)  # Sunday 00:00 Eastern
    months = trailing_buckets(2, "months", now)
    assert months[-1][0] == datetime(2026, 11, 1, 4, 0, tzinfo=UTC)
    assert months[0][0] == datetime(2026, 10, 1, 4, 0, tzinfo=UTC)


def test_leading_buckets_utc_and_series_rows():
    start = datetime(2026, 1, 1, 7, 30, tzinfo=UTC)
    buckets = leading_buckets(3, "days", start)
    assert [b[0].day for b in buckets] == [1, 2, 3] and buckets[0][0].hour == 0
    rows = series_rows({"sent": [5, 6, 7], "opened": [1, 2]}, buckets, "days", {"campaign_id": 9})
    assert rows[0] == {
        "campaign_id": 9,
        "period": "days",
        "period_start": buckets[0][0],
        "period_end": buckets[0][1],
        "sent": 5,
        "opened": 1,
    }
    assert "opened" not in rows[2] and rows[2]["sent"] == 7


def test_parse_echoed_time():
    assert parse_echoed_time("2025-01-01 00:00:00 +0000 UTC") == datetime(2025, 1, 1, tzinfo=UTC)
    assert parse_echoed_time("2025-01-01T05:00:00Z") == datetime(2025, 1, 1, 5, tzinfo=UTC)
    assert parse_echoed_time(None) is None


def test_to_datetime():
    assert to_datetime(1700000000) == datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC)
    assert to_datetime("1700000000") == datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC)
    assert to_datetime(None) is None and to_datetime(0) is None and to_datetime("abc") == "abc"


def test_plan_split_only_when_it_pays():
    from customerio_source.deliveries import plan_split

    lower = datetime(2026, 1, 1, tzinfo=UTC)
    base = int(lower.timestamp())
    newest = datetime.fromtimestamp(base + 100 * 86400, UTC)
    # 1000 rows over the newest 1000 s of a 100-day window: ~8600 pages remain -> split in 4
    dense_oldest = newest - timedelta(seconds=999)
    pieces = plan_split(1000, newest, dense_oldest, lower, 4, 1000)
    assert len(pieces) == 4 and pieces[-1][0] == lower
    assert pieces[0][1] == dense_oldest + timedelta(seconds=1)
    assert all(a[0] == b[1] for a, b in zip(pieces, pieces[1:], strict=False))  # contiguous, newest first
    # 1000 rows spread over the whole window: about nothing remains -> keep one cursor
    assert plan_split(1000, newest, newest - timedelta(seconds=999 * 8640), lower, 4, 1000) == []
    assert plan_split(1000, newest, dense_oldest, lower, 1, 1000) == []
    assert plan_split(0, None, None, lower, 4, 1000) == []


def test_interleave_runs_spawned_jobs_and_propagates_errors():
    from customerio_source.context import Spawn, interleave

    def job(n, spawn=False):
        def items():
            yield n
            if spawn:
                yield Spawn([job(n * 10), job(n * 10 + 1)])

        return items

    assert sorted(interleave([job(1, True), job(2)], workers=3)) == [1, 2, 10, 11]
    assert sorted(interleave([job(1, True), job(2)], workers=1)) == [1, 2, 10, 11]

    def broken():
        yield 1
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        list(interleave([broken, job(5)], workers=2))


def test_page_to_arrow_fast_and_careful_paths_agree():
    from customerio_source.arrow_pages import page_to_arrow
    from customerio_source.deliveries import DELIVERY_NESTED, DELIVERY_SCHEMA

    rows = [
        {
            "id": "a",
            "created": 1_700_000_000,
            "campaign_id": 7,
            "metrics": {"sent": 1_700_000_005},
            "customer_identifiers": {"id": "1", "email": None, "cio_id": "c1"},
            "forgotten": False,
        },
        {"id": "b", "created": 1_700_000_001, "campaign_id": None, "metrics": {"opened": 0}, "type": "email"},
    ]
    fast = page_to_arrow(rows, DELIVERY_SCHEMA, DELIVERY_NESTED, required=("id",))
    odd = [dict(rows[0], campaign_id="7"), rows[1]]  # a digit-string id: the careful path
    careful = page_to_arrow(odd, DELIVERY_SCHEMA, DELIVERY_NESTED, required=("id",))
    assert fast.schema == careful.schema
    assert fast.to_pylist() == careful.to_pylist()
    assert fast.column("metrics__sent")[0].as_py() == datetime(2023, 11, 14, 22, 13, 25, tzinfo=UTC)
    assert fast.column("metrics__opened")[1].as_py() is None  # 0 is "never"
    assert not fast.schema.field("id").nullable
    extra = page_to_arrow([dict(rows[0], surprise=1)], DELIVERY_SCHEMA, DELIVERY_NESTED)
    assert extra.column("surprise").to_pylist() == [1]


def test_page_decoder_reads_bodies_like_the_row_path_and_falls_back_on_surprises():
    import orjson

    from customerio_source.arrow_pages import PageDecoder, page_to_arrow
    from customerio_source.deliveries import DELIVERY_NESTED, DELIVERY_SCHEMA

    decode = PageDecoder("messages", DELIVERY_SCHEMA, DELIVERY_NESTED, required=("id",))
    rows = [
        {
            "id": "a",
            "created": 1_700_000_000,
            "campaign_id": 7,
            "metrics": {"sent": 1_700_000_005, "opened": 0},
            "customer_identifiers": {"id": "1", "email": None, "cio_id": "c1"},
            "forgotten": False,
            "subject": "Caf\u00e9 \u2603",
        },
        {"id": "b", "created": 1_700_000_001, "campaign_id": None, "metrics": None, "type": "email"},
    ]
    expected = page_to_arrow(rows, DELIVERY_SCHEMA, DELIVERY_NESTED, required=("id",))
    page = decode(orjson.dumps({"messages": rows, "next": "c2"}))
    assert page["next"] == "c2"
    assert page["messages"].schema == expected.schema
    assert page["messages"].to_pylist() == expected.to_pylist()
    assert page["messages"].column("metrics__opened")[0].as_py() is None  # 0 is "never"
    # pretty-printed bodies parse too
    assert decode(orjson.dumps({"messages": rows}, option=orjson.OPT_INDENT_2))["messages"].num_rows == 2

    # surprises take the careful path and keep their data
    surprising = [
        dict(rows[0], campaign_id="7"),  # a digit-string id
        dict(rows[1], surprise={"k": 1}),  # an unknown nested field
        dict(rows[1], id="c", metrics={"sent": 1_700_000_009, "new_metric": 1_700_000_010}),
    ]
    page = decode(orjson.dumps({"messages": surprising, "next": None, "meta": {"x": 1}}))
    table = page["messages"]
    assert page["next"] is None and page["meta"] == {"x": 1}
    assert table.column("campaign_id").to_pylist() == [7, None, None]
    assert table.column("surprise__k").to_pylist() == [None, 1, None]
    assert table.column("metrics__new_metric")[2].as_py() == datetime(2023, 11, 14, 22, 13, 30, tzinfo=UTC)

    # no rows: an empty table with the known columns; nothing: an empty result
    assert decode(b'{"messages": [], "next": ""}')["messages"].column_names == expected.column_names
    assert decode(b'{"messages": null}')["messages"].num_rows == 0
    assert decode(b"  ") == {}
    with pytest.raises(orjson.JSONDecodeError):  # a cut body: the client retries it
        decode(orjson.dumps({"messages": rows})[:-20])


def test_segment_member_pages_decode_to_arrow_with_their_segment():
    """Membership pages (`identifiers` next to `ids`) decode straight to Arrow; an id sent as a number, an
    absent email or a new identifier take the careful path and keep their data."""
    import orjson

    from customerio_source.arrow_pages import PageDecoder
    from customerio_source.catalogue import CATALOGUE
    from customerio_source.resources import with_parent_columns

    spec = CATALOGUE["segment_memberships"]
    decode = PageDecoder(spec.envelope, spec.arrow_row, required=("cio_id",), page_lists=spec.page_lists)
    members = [{"id": "42", "email": "a@x.io", "cio_id": "c1"}, {"id": None, "email": None, "cio_id": "c2"}]
    page = decode(orjson.dumps({"identifiers": members, "ids": ["42", ""], "next": "30000"}))
    assert page["next"] == "30000" and "ids" not in page
    table = with_parent_columns(page["identifiers"], {"id": 7, "name": "VIPs"}, spec.parent_columns)
    assert table.column_names == ["id", "email", "cio_id", "segment_id"]
    assert table.to_pylist() == [dict(m, segment_id=7) for m in members]
    assert str(table.schema.field("segment_id").type) == "int64"

    surprising = [{"id": 42, "cio_id": "c3"}, {"cio_id": "c4", "phone": "+1"}]
    page = decode(orjson.dumps({"identifiers": surprising, "ids": ["42", ""], "next": ""}))
    assert "ids" not in page and page["next"] == ""
    assert page["identifiers"].to_pylist() == [
        {"id": "42", "email": None, "cio_id": "c3", "phone": None},
        {"id": None, "email": None, "cio_id": "c4", "phone": "+1"},
    ]


def test_batched_tables_joins_pages_of_one_schema_and_keeps_order():
    import pyarrow as pa

    from customerio_source.arrow_pages import batched_tables

    def page(start: int, rows: int, extra: bool = False) -> pa.Table:
        columns = {"id": list(range(start, start + rows))}
        if extra:
            columns["surprise"] = ["x"] * rows
        return pa.table(columns)

    pages = [page(0, 4), page(4, 4), page(8, 4), page(12, 2, extra=True), page(14, 4), page(18, 1)]
    batches = list(batched_tables(pages, min_rows=8))
    assert [b.num_rows for b in batches] == [8, 4, 2, 5]  # full batch, closed by a new schema, twice, the rest
    assert [i for b in batches for i in b.column("id").to_pylist()] == list(range(19))
    assert batches[2].column_names == ["id", "surprise"]
    assert list(batched_tables([], min_rows=8)) == []


def test_split_windows_read_each_delivery_once(tmp_path):
    """A window split after its first page must not read that page again (regression: the newest and oldest
    `created` of the page were swapped, so every piece re-read the first page: 1,998 repeated rows and extra
    requests at `small`)."""
    from collections import Counter

    import dlt

    from customerio_source.simulator import SimulatorServer, Workspace

    # a resource iterated by hand keeps its incremental state in dlt's active pipeline: a fresh one, so a
    # pipeline an earlier test left active (with a `messages` watermark) cannot narrow this read
    dlt.pipeline("split_windows", pipelines_dir=str(tmp_path / "pipelines"))

    workspace = Workspace(scale="small", seed=7)
    expected = {key[0] for key in expected_keys(workspace, "messages")}
    with SimulatorServer(workspace, api_key="split-test-key") as server:
        stats = RequestStats()
        source = customerio_source(
            api_key="split-test-key", base_url=server.base_url, tables="messages", request_stats=stats
        )
        seen: Counter[str] = Counter()
        for table in source.resources["messages"]:
            seen.update(table.column("id").to_pylist())
        requests = stats.by_table["messages"]
    assert len(expected) > 20_000  # big enough that both six-month windows split
    assert set(seen) == expected
    assert max(seen.values()) == 1
    # 1000 per page; each of the 2 windows may end its first page and each of its pieces one page early
    assert requests <= -(-len(expected) // 1000) + 2 * (1 + 4)
