"""Bulk mode (exports API): same rows as the API path, tolerant streaming parser, expiring links, failures."""

from __future__ import annotations

import gzip
import io
import json
import os
import uuid
import zlib
from collections.abc import Iterator
from typing import Any

import dlt
import duckdb
import pytest
import requests

from customerio_source import bulk
from customerio_source.catalogue import CATALOGUE
from customerio_source.cli import root_cause
from customerio_source.client import CustomerIOClient
from customerio_source.context import RunContext
from customerio_source.deliveries import deliveries_resource
from customerio_source.errors import ConfigError
from customerio_source.people import SearchEnd, attributes_transformer, customers_resource
from customerio_source.runner import ARROW_PROMOTE_ENV

from .conftest import API_KEY
from .oracle import expected_count, expected_keys
from .scripted_server import ScriptedServer

FAST = bulk.ExportSettings(poll_first=0.05, poll_max=0.2)


def make_ctx(base_url: str, **kwargs: Any) -> RunContext:
    return RunContext(client=CustomerIOClient(API_KEY, base_url=base_url, rate_limit=0, max_attempts=2), **kwargs)


def run(db_path: str, dataset: str, resources: list[Any], tmp_path: Any) -> None:
    pipeline = dlt.pipeline(
        pipeline_name=f"bulk_{uuid.uuid4().hex[:8]}",
        pipelines_dir=str(tmp_path / "pipelines"),
        destination=dlt.destinations.duckdb(db_path),
        dataset_name=dataset,
    )
    before = os.environ.get(ARROW_PROMOTE_ENV)
    os.environ[ARROW_PROMOTE_ENV] = "default"  # as customerio_source.load sets it for a run
    try:
        pipeline.run(resources).raise_on_failed_jobs()
    finally:
        if before is None:
            os.environ.pop(ARROW_PROMOTE_ENV)
        else:
            os.environ[ARROW_PROMOTE_ENV] = before


def query(db_path: str, sql: str) -> list[tuple]:
    with duckdb.connect(db_path, read_only=True) as con:
        return con.execute(sql).fetchall()


# -- the same rows as the API path ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def loaded(tiny_server: Any, tmp_path_factory: Any) -> str:
    """The tiny workspace loaded twice into one DuckDB file: dataset `api` (paging) and `bulk` (exports)."""
    tmp_path = tmp_path_factory.mktemp("bulk")
    db_path = str(tmp_path / "warehouse.duckdb")
    api = make_ctx(tiny_server.base_url)
    end = SearchEnd()
    run(db_path, "api", [deliveries_resource(api, CATALOGUE["messages"]),
                         attributes_transformer(api, customers_resource(api, end), end)], tmp_path)
    tiny_server.stats.reset()
    exports = make_ctx(tiny_server.base_url)
    run(db_path, "bulk", [bulk.bulk_deliveries_resource(exports, CATALOGUE["messages"], FAST),
                          bulk.bulk_customer_attributes_resource(exports, FAST)], tmp_path)
    ops = tiny_server.stats.by_operation
    assert ops.get("POST /v1/exports/deliveries") and ops.get("POST /v1/exports/customers") == 1
    assert not ops.get("GET /v1/messages") and not ops.get("POST /v1/customers/attributes", 0) > 1
    return db_path


def test_deliveries_match_the_api_path(loaded: str, tiny_server: Any) -> None:
    # CSV cannot tell "" from absent: empty texts compare as null; columns the file lacks are not compared
    columns = ("id, created, type, customer_id, NULLIF(recipient, ''), NULLIF(subject, ''), campaign_id, "
               "action_id, broadcast_id, newsletter_id, content_id, transactional_message_id, failure_message, "
               "forgotten, metrics__sent, "
               "metrics__delivered, metrics__opened, metrics__clicked, metrics__bounced, metrics__failed, "
               "customer_identifiers__id, customer_identifiers__email, customer_identifiers__cio_id")
    api = set(query(loaded, f"SELECT {columns} FROM api.messages"))
    exported = set(query(loaded, f"SELECT {columns} FROM bulk.messages"))
    assert {(r[0],) for r in exported} == expected_keys(tiny_server.workspace, "messages")
    assert exported == api
    assert any(r[8] is not None for r in exported)  # broadcasts came through their API fallback
    types = dict(query(loaded, "SELECT column_name, data_type FROM information_schema.columns "
                               "WHERE table_schema = 'bulk' AND table_name = 'messages'"))
    assert types["created"].startswith("TIMESTAMP") and types["metrics__opened"].startswith("TIMESTAMP")


def test_customer_attributes_match_the_api_path(loaded: str, tiny_server: Any) -> None:
    sql = "SELECT cio_id, id, email, attributes FROM {}.customer_attributes"
    api = {r[0]: (r[1], r[2], json.loads(r[3])) for r in query(loaded, sql.format("api"))}
    exported = {r[0]: (r[1], r[2], json.loads(r[3])) for r in query(loaded, sql.format("bulk"))}
    assert {(k,) for k in exported} == expected_keys(tiny_server.workspace, "customer_attributes")
    assert exported == api


# -- parser -----------------------------------------------------------------------------------------------
DELIVERY_CSV = (
    "id,created,type,customer_id,cio_id,email,campaign_id,forgotten,metrics.opened,metrics__clicked,sent_at,"
    "delivered,subject,surprise\r\n"
    'd1,1700000000,email,u1,c1,a@x.test,5,false,1700000100,,2023-11-14T22:13:30Z,1700000050000,"Hi, ""you""\n'
    'two lines",new\r\n'
    "\r\n"
    "d2,2023-11-14T22:13:20+00:00,push,,c2,,7,true,,,,,,\r\n"
)


def test_gzip_csv_parses_to_api_shaped_deliveries() -> None:
    records = list(bulk.iter_records(io.BytesIO(gzip.compress(DELIVERY_CSV.encode()))))
    assert len(records) == 2 and records[0]["subject"] == 'Hi, "you"\ntwo lines'
    first, second = (bulk.delivery_row(r) for r in records)
    assert first["created"] == 1700000000 and first["forgotten"] is False and first["surprise"] == "new"
    assert first["metrics"] == {"opened": 1700000100, "sent": 1700000010, "delivered": 1700000050}
    assert first["customer_identifiers"] == {"cio_id": "c1", "email": "a@x.test", "id": "u1"}
    assert second["created"] == 1700000000 and second["metrics"] == {} and second["forgotten"] is True
    assert second["customer_identifiers"] == {"cio_id": "c2"} and "customer_id" not in second
    table = bulk.page_to_arrow([first, second], bulk.DELIVERY_SCHEMA, bulk.DELIVERY_NESTED, required=("id",))
    assert table.column("metrics__opened").to_pylist()[0].timestamp() == 1700000100
    assert table.column("campaign_id").to_pylist() == [5, 7] and "surprise" in table.column_names


def test_json_lines_plain_or_gzip_with_bom_and_blank_lines() -> None:
    lines = [
        {"id": "d1", "created": 1700000000, "metrics": {"opened": 1700000100}, "customer_identifiers":
         {"id": None, "email": "a@x.test", "cio_id": "c1"}, "campaign_id": 5, "extra": {"k": 1}},
        {"id": "d2", "created": "1700000001", "metrics__sent": "1700000002"},
    ]
    text = "\ufeff\n" + "\n".join(json.dumps(line) for line in lines) + "\n\n"
    for data in (text.encode(), gzip.compress(text.encode())):
        rows = [bulk.delivery_row(r) for r in bulk.iter_records(io.BytesIO(data))]
        assert [r["id"] for r in rows] == ["d1", "d2"]
        assert rows[0]["metrics"] == {"opened": 1700000100} and rows[1]["metrics"] == {"sent": 1700000002}
        assert rows[0]["customer_identifiers"] == {"id": None, "email": "a@x.test", "cio_id": "c1"}


def test_customer_records_flat_or_api_shaped() -> None:
    csv_bytes = gzip.compress(b"id,email,cio_id,plan,attributes.score,unsubscribed\nu1,,c1,pro,7,true\n,,,x,,\n")
    rows = [bulk.customer_row(r, (("score", "bigint"),)) for r in bulk.iter_records(io.BytesIO(csv_bytes))]
    assert rows[1] is None  # no cio_id: skipped
    assert rows[0] == {"cio_id": "c1", "id": "u1", "email": None, "unsubscribed": True, "attr_score": 7,
                       "attributes": {"id": "u1", "cio_id": "c1", "plan": "pro", "score": "7"}}
    shaped = bulk.customer_row({"customer": {"identifiers": {"cio_id": "c2", "id": None, "email": "e@x"},
                                             "attributes": {"plan": "pro", "n": 3}, "unsubscribed": False}})
    assert shaped == {"cio_id": "c2", "id": None, "email": "e@x", "unsubscribed": False,
                      "attributes": {"plan": "pro", "n": "3", "cio_id": "c2", "email": "e@x"}}


def test_timestamps_in_any_spelling() -> None:
    assert bulk.to_unix("1700000000") == 1700000000 and bulk.to_unix(1700000000123) == 1700000000.123
    assert bulk.to_unix("2023-11-14 22:13:20 +0000 UTC".replace(" UTC", "")) == 1700000000
    assert bulk.to_unix("not a time") is None and bulk.to_unix("") is None and bulk.to_unix(0) is None


class GeneratedGzip(io.RawIOBase):
    """A gzip CSV of ``rows`` deliveries, compressed as it is read (never whole in memory)."""

    def __init__(self, rows: int) -> None:
        self.chunks = self._chunks(rows)
        self.pending = b""
        self.raw_bytes = 0

    def _chunks(self, rows: int) -> Iterator[bytes]:
        compressor = zlib.compressobj(6, zlib.DEFLATED, 31)
        yield compressor.compress(b"id,created,type,cio_id,email,campaign_id,subject,sent,delivered,opened\n")
        for start in range(0, rows, 2000):
            text = "".join(
                f"d{i:08d},{1700000000 + i},email,c{i},p{i}@example.com,{i % 40},Subject line number {i} "
                f"{'x' * 180},{1700000001 + i},{1700000002 + i},{1700000900 + i}\n"
                for i in range(start, min(rows, start + 2000))
            ).encode()
            self.raw_bytes += len(text)
            yield compressor.compress(text)
        yield compressor.flush()

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self.pending:
            try:
                self.pending = next(self.chunks)
            except StopIteration:
                return 0
        n = min(len(buffer), len(self.pending))
        buffer[:n] = self.pending[:n]
        self.pending = self.pending[n:]
        return n


def rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * 4096


def test_a_large_gzip_csv_is_streamed_in_flat_memory() -> None:
    stream = GeneratedGzip(200_000)
    before, peak, rows = rss_bytes(), 0, 0
    records = (bulk.delivery_row(r) for r in bulk.iter_records(stream))
    for page in bulk.pages_of(records, 5000):
        table = bulk.page_to_arrow(page, bulk.DELIVERY_SCHEMA, bulk.DELIVERY_NESTED, required=("id",))
        rows += table.num_rows
        peak = max(peak, rss_bytes())
    assert rows == 200_000 and stream.raw_bytes > 50_000_000
    assert peak - before < 40_000_000, f"RSS grew by {(peak - before) / 1e6:.0f} MB"


# -- exports over HTTP: expiry, failure, the key ----------------------------------------------------------
def test_an_expired_link_is_requested_again(tiny_server: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tiny_server, "export_url_ttl", 0.3)
    real_get = requests.get
    calls: list[str] = []

    def slow_first(url: str, **kwargs: Any) -> requests.Response:
        calls.append(url)
        if len(calls) == 1:
            import time

            time.sleep(0.5)  # the first link expires before it is fetched
        return real_get(url, **kwargs)

    monkeypatch.setattr(bulk.requests, "get", slow_first)
    tiny_server.stats.reset()
    rows = list(bulk.bulk_customer_attributes_resource(make_ctx(tiny_server.base_url), FAST))
    assert len(rows) == expected_count(tiny_server.workspace, "customer_attributes")
    assert len(calls) == 2 and calls[0] != calls[1]
    assert tiny_server.stats.by_operation["GET /v1/exports/{export_id}/download"] == 2
    assert tiny_server.stats.status_counts.get(403) == 1


def test_links_that_keep_expiring_fail_with_one_line(tiny_server: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tiny_server, "export_url_ttl", 0)
    settings = bulk.ExportSettings(poll_first=0.05, download_attempts=2)
    with pytest.raises(bulk.ExportError) as error:
        list(bulk.export_rows(make_ctx(tiny_server.base_url).client, "customers",
                              {"filters": bulk.MATCH_EVERYONE, "attributes": []}, "every person", "t", settings))
    message = str(error.value)
    assert "\n" not in message and "HTTP 403" in message and "2 fresh links" in message and "_files" not in message


def test_a_failed_export_fails_the_run_with_one_clear_line(tmp_path: Any) -> None:
    def handler(method: str, path: str, query: dict[str, str], body: Any) -> tuple[int, dict[str, str], Any]:
        if path == "/v1/customers":
            return 200, {}, {"identifiers": [], "ids": []}
        if path == "/v1/exports/customers":
            return 200, {}, {"export": {"id": 41, "status": "pending", "failed": False}}
        if path == "/v1/exports/41":
            return 200, {}, {"export": {"id": 41, "status": "failed", "failed": True}}
        return 404, {}, {"errors": [{"detail": "no", "status": "404"}]}

    with ScriptedServer(handler) as server:
        resource = bulk.bulk_customer_attributes_resource(make_ctx(server.base_url), FAST)
        with pytest.raises(Exception) as error:
            run(str(tmp_path / "w.duckdb"), "bulk", [resource], tmp_path)
    cause = root_cause(error.value)
    assert isinstance(cause, bulk.ExportError)
    assert str(cause) == "export 41 (every person) failed on Customer.io's side; run again later or use --bulk api"


def test_the_key_never_reaches_the_file_host(tiny_server: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Links point at a recording proxy (another host): no Authorization header, no key anywhere."""

    def proxy(method: str, path: str, query: dict[str, str], body: Any) -> tuple[int, dict[str, str], Any]:
        upstream = requests.get(f"{tiny_server.base_url}{path}", timeout=30)
        return upstream.status_code, {}, upstream.content

    with ScriptedServer(proxy) as file_host:
        real = tiny_server.exports.download_url
        monkeypatch.setattr(tiny_server.exports, "download_url",
                            lambda eid: real(eid).replace(tiny_server.base_url, file_host.base_url))
        ctx = make_ctx(tiny_server.base_url, concurrency=2)
        spec = CATALOGUE["campaign_messages"]
        tables = list(bulk.bulk_deliveries_resource(ctx, spec, FAST))
    assert sum(t.num_rows for t in tables) == len(expected_keys(tiny_server.workspace, "campaign_messages"))
    assert file_host.requests and all(r["path"].startswith("/_files/") for r in file_host.requests)
    for request in file_host.requests:
        assert not any(name.lower() == "authorization" for name in request["headers"])
        assert API_KEY not in json.dumps(request)


# -- choosing the mode ---------------------------------------------------------------------------------------
def test_choose_bulk(tiny_server: Any) -> None:
    ctx = make_ctx(tiny_server.base_url)
    assert bulk.choose_bulk("exports", ctx) and not bulk.choose_bulk("api", ctx, "messages")
    with pytest.raises(ConfigError):
        bulk.choose_bulk("fast", ctx)
    assert not bulk.choose_bulk("auto", ctx)  # 60 people: far below AUTO_PEOPLE
    assert bulk.choose_bulk("auto", ctx, "messages") and not bulk.choose_bulk("auto", ctx, "broadcast_messages")


def test_auto_keeps_small_delivery_reads_on_the_api_path(tiny_server: Any) -> None:
    tiny_server.stats.reset()
    ctx = make_ctx(tiny_server.base_url)
    tables = list(bulk.bulk_deliveries_resource(ctx, CATALOGUE["messages"], FAST, auto=True))
    assert {r for t in tables for r in t.column("id").to_pylist()} == {
        k[0] for k in expected_keys(tiny_server.workspace, "messages")}
    assert not tiny_server.stats.by_operation.get("POST /v1/exports/deliveries")


def test_auto_exports_attributes_decided_when_the_run_extracts(tiny_server: Any, tmp_path: Any, monkeypatch: Any):
    """`--bulk auto` counts people when the run extracts (not when the source is built); at the threshold one
    export replaces the attribute batches, with the same rows as the API path."""
    from customerio_source import customerio_source, load

    monkeypatch.setattr(bulk, "AUTO_PEOPLE", 10)  # the tiny workspace's 60 people are "many"
    tiny_server.stats.reset()
    source = customerio_source(api_key=API_KEY, base_url=tiny_server.base_url, tables="customers,customer_attributes",
                               rate_limit=0, bulk="auto")
    assert tiny_server.stats.requests == 0
    db_path = str(tmp_path / "warehouse.duckdb")
    pipeline = dlt.pipeline("auto_attributes", pipelines_dir=str(tmp_path / "p"),
                            destination=dlt.destinations.duckdb(db_path), dataset_name="auto")
    load(pipeline, source)
    ops = tiny_server.stats.by_operation
    # one attributes call at most: the export's attribute names are discovered from a sample (as in `exports`)
    assert ops.get("POST /v1/exports/customers") == 1 and ops.get("POST /v1/customers/attributes", 0) <= 1
    expected = {str(k[0]) for k in expected_keys(tiny_server.workspace, "customer_attributes")}
    with duckdb.connect(db_path, read_only=True) as con:
        got = {r[0] for r in con.execute("SELECT cio_id FROM auto.customer_attributes").fetchall()}
        dupes = con.execute("SELECT COUNT(*) - COUNT(DISTINCT cio_id) FROM auto.customer_attributes").fetchone()[0]
    assert got == expected and dupes == 0


# -- export layouts not seen before (issue 14) -------------------------------------------------------------
MATCHED = (
    "id, created, type, customer_id, NULLIF(recipient, ''), NULLIF(subject, ''), campaign_id, action_id, "
    "newsletter_id, content_id, transactional_message_id, failure_message, forgotten, metrics__sent, "
    "metrics__delivered, metrics__opened, metrics__clicked, metrics__bounced, metrics__failed, "
    "customer_identifiers__id, customer_identifiers__email, customer_identifiers__cio_id"
)
LAYOUTS = {
    "csv-plain": dict(gzip=False),
    "jsonl-gzip": dict(format="jsonl"),
    "jsonl-plain": dict(format="jsonl", gzip=False),
    "warehouse-csv-gzip-shuffled": dict(names="warehouse", shuffle=True),
    "warehouse-jsonl-plain-shuffled": dict(names="warehouse", format="jsonl", gzip=False, shuffle=True),
}


@pytest.fixture()
def layout(tiny_server: Any) -> Iterator[Any]:
    from customerio_source.simulator.exports import DEFAULT_LAYOUT

    yield tiny_server.exports
    tiny_server.exports.layout = DEFAULT_LAYOUT


@pytest.mark.parametrize("name", sorted(LAYOUTS))
def test_every_export_layout_loads_the_api_paths_rows(name: str, loaded: str, layout: Any, tmp_path: Any) -> None:
    from customerio_source.simulator.exports import ExportLayout

    layout.layout = ExportLayout(**LAYOUTS[name])
    dataset = "bulk_" + name.replace("-", "_")
    resource = bulk.bulk_deliveries_resource(make_ctx(layout.server.base_url), CATALOGUE["campaign_messages"], FAST)
    run(loaded, dataset, [resource], tmp_path)
    exported = set(query(loaded, f"SELECT {MATCHED} FROM {dataset}.campaign_messages"))
    api = {row for row in query(loaded, f"SELECT {MATCHED} FROM api.messages") if row[6] is not None}
    assert exported == api and len(exported) > 10
    columns = {r[0] for r in query(loaded, "SELECT column_name FROM information_schema.columns "
                                           f"WHERE table_schema = '{dataset}' AND table_name = 'campaign_messages'")}
    if name.startswith("warehouse"):  # unknown columns are kept; aliases are not left behind as columns
        assert {"workspace_id", "template_version"} <= columns
        assert not columns & {"delivery_id", "created_at", "internal_customer_id", "delivery_type", "opened_at"}


@pytest.mark.parametrize(("dropped", "missing"), [("id", "'id'"), ("created", "'created'")])
def test_an_unmappable_export_file_stops_the_run_before_anything_loads(
    dropped: str, missing: str, tiny_server: Any, layout: Any, tmp_path: Any
) -> None:
    from customerio_source.simulator.exports import ExportLayout

    layout.layout = ExportLayout(names="warehouse", drop=(dropped,))
    db = str(tmp_path / "w.duckdb")
    resource = bulk.bulk_deliveries_resource(make_ctx(tiny_server.base_url), CATALOGUE["campaign_messages"], FAST)
    with pytest.raises(Exception) as error:
        run(db, "bulk", [resource], tmp_path)
    cause = root_cause(error.value)
    assert isinstance(cause, bulk.ExportLayoutError) and isinstance(cause, ConfigError)  # exit code 2
    line = str(cause)
    assert "\n" not in line and missing in line and ".csv.gz, record 1:" in line, line
    assert line.startswith("export ") and "file export_" in line
    with duckdb.connect(db) as con:  # nothing was loaded
        tables = con.execute("SELECT table_name FROM information_schema.tables WHERE table_schema = 'bulk'").fetchall()
    assert ("campaign_messages",) not in tables


def test_warehouse_schema_aliases_parse() -> None:
    record = {"delivery_id": "d9", "created_at": "2023-11-14T22:13:20Z", "internal_customer_id": "c9",
              "customer_id": "u9", "delivery_type": "email", "opened_at": "1700000100", "workspace_id": "1"}
    bulk.require_delivery_columns(record, "f")
    row = bulk.delivery_row(record)
    assert row["id"] == "d9" and row["created"] == 1700000000 and row["type"] == "email"
    assert row["customer_identifiers"] == {"cio_id": "c9", "id": "u9"} and row["customer_id"] == "u9"
    assert row["metrics"] == {"opened": 1700000100} and row["workspace_id"] == "1"
    with pytest.raises(bulk.ExportLayoutError, match=r"^f: no 'id' column \(looked for id, delivery_id\)"):
        bulk.require_delivery_columns({"created": 1}, "f")
    with pytest.raises(bulk.ExportLayoutError, match="'created' is not a timestamp"):
        bulk.require_delivery_columns({"id": "d", "created": "soon"}, "f")
