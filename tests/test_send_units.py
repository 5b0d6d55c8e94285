"""Units of the send direction: operations, limits and local rejections, ULIDs, packing, ordering."""

from __future__ import annotations

import re
import threading
import time

import orjson
import pytest

from customerio_source.errors import ConfigError
from customerio_source.send import limits
from customerio_source.send.operations import Builder, check_columns, parse_operation
from customerio_source.send.push import dependencies, pack, plan, send_all
from customerio_source.send.rows import Rejection, event_ulid, row_key, unix_seconds

ULID = re.compile(r"^[0-9A-HJKMNP-TV-Z]{26}$")


def build(operation: str, row: dict, api: str = "track", key: str | None = None) -> dict:
    item = Builder(parse_operation(operation, key, api), "t", api).build(0, row)
    return orjson.loads(item.body)


def test_identify_item_uses_first_identifier_and_unix_created_at() -> None:
    item = build(
        "identify",
        {
            "id": "u1",
            "email": "a@x.io",
            "cio_id": None,
            "plan": "pro",
            "created_at": "2024-01-02T03:04:05Z",
            "nothing": None,
        },
    )
    assert item == {
        "type": "person",
        "identifiers": {"id": "u1"},
        "action": "identify",
        "attributes": {"email": "a@x.io", "plan": "pro", "created_at": 1704164645},
    }
    assert build("identify", {"email": "b@x.io", "n": 2})["identifiers"] == {"email": "b@x.io"}
    assert build("identify", {"cio_id": "abc", "n": 2})["identifiers"] == {"cio_id": "abc"}


def test_event_item_name_timestamp_data_and_deterministic_ulid() -> None:
    row = {"id": "u1", "name": "signup", "timestamp": 1700000000, "amount": 9.5}
    first, again = build("event", row), build("event", dict(row))
    assert first["name"] == "signup" and first["timestamp"] == 1700000000 and first["attributes"] == {"amount": 9.5}
    assert ULID.match(first["id"]) and first["id"] == again["id"]
    assert build("event", {**row, "amount": 10})["id"] != first["id"]  # another row: another id
    fixed = build("event:purchase", {**row, "event_id": 7}, key="event_id")
    assert fixed["name"] == "purchase" and fixed["attributes"] == {"name": "signup", "amount": 9.5, "event_id": 7}
    assert build("event:purchase", {**row, "event_id": 7, "amount": 1}, key="event_id")["id"] == fixed["id"]
    assert build("event", {**row, "timestamp": "2023-11-14T22:13:20+00:00"})["timestamp"] == 1700000000


def test_ulid_time_part_is_the_event_time() -> None:
    value = event_ulid("scope", "key", 1700000000)
    crockford = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
    number = 0
    for ch in value:
        number = number * 32 + crockford.index(ch)
    assert number >> 80 == 1700000000 * 1000
    assert event_ulid("scope", "key", 1700000000) == value != event_ulid("other", "key", 1700000000)


def test_row_key_from_key_columns_or_whole_row_hash() -> None:
    assert row_key({"a": 1, "b": "x", "c": 3}, ["a", "b"]) == "1|x"
    whole = row_key({"a": 1, "b": "x", "_dlt_id": "r1"}, None)
    assert whole == row_key({"b": "x", "a": 1, "_dlt_id": "r2"}, None) and len(whole) == 32
    assert whole != row_key({"a": 2, "b": "x"}, None)


@pytest.mark.parametrize(
    ("operation", "row", "reason"),
    [
        ("identify", {"plan": "pro"}, "missing_identifier"),
        ("identify", {"id": "x" * 151}, "identifier_too_long"),
        ("identify", {"id": "u", "a" * 151: 1}, "attribute_name_too_long"),
        ("identify", {"id": "u", "bio": "é" * 501}, "attribute_value_too_long"),
        ("identify", {"id": "u", **{f"a{i}": i for i in range(301)}}, "too_many_attributes"),
        ("event", {"id": "u", "name": "n" * 101}, "event_name_too_long"),
        ("event", {"id": "u", "name": ""}, "missing_name"),
        ("event", {"id": "u", "name": "x", "timestamp": "yesterday"}, "invalid_timestamp"),
        ("event:x", {"id": "u", **{f"k{i}": "v" * 900 for i in range(120)}}, "event_data_too_large"),
        ("event:x", {"id": "u", **{f"k{i}": "v" * 900 for i in range(40)}}, "item_too_large"),
        ("device", {"id": "u", "device_id": "t", "platform": "windows"}, "invalid_platform"),
        ("object:1", {"object_id": None, "name": "acme"}, "missing_identifier"),
        ("anonymous_event:x", {"anonymous_id": None}, "missing_identifier"),
    ],
)
def test_rows_over_the_limits_are_rejected_with_a_reason(operation: str, row: dict, reason: str) -> None:
    with pytest.raises(Rejection) as caught:
        build(operation, row)
    assert caught.value.reason == reason
    for value in row.values():  # the message never repeats a row value
        if isinstance(value, str) and len(value) > 3:
            assert value not in caught.value.message


def test_limits_at_the_edge_are_accepted() -> None:
    build("identify", {"id": "x" * 150, "a" * 150: "é" * 500, **{f"a{i}": i for i in range(298)}})
    build("event", {"id": "u", "name": "n" * 100})


def test_plan_keeps_rejected_rows_out_of_the_items() -> None:
    builder = Builder(parse_operation("identify", "id"), "people")
    items, rejected = plan([{"id": "a"}, {"plan": "x"}, {"id": "c"}], builder, "123.4")
    assert [i.row for i in items] == [0, 2]
    assert [(r.source_table, r.row_key, r.operation, r.reason, r.field, r.load_id) for r in rejected] == [
        ("people", "", "identify", "missing_identifier", "id", "123.4")
    ]


def test_pack_fills_requests_up_to_500_kb_and_no_further() -> None:
    builder = Builder(parse_operation("event:e"), "events")
    rows = [{"id": f"u{i % 50}", "blob": "x" * 900, "n": i} for i in range(3000)]
    items, rejected = plan(rows, builder, "1")
    requests = pack(items, "track")
    assert not rejected
    sizes = [len(r.body()) for r in requests]
    assert all(size <= limits.REQUEST_BYTES for size in sizes)
    total = sum(len(i.body) for i in items)
    assert len(requests) == -(-total // (limits.REQUEST_BYTES - 1000))  # byte floor, rounded up
    assert all(s > limits.REQUEST_BYTES - 1000 for s in sizes[:-1])
    assert [r for req in requests for r in req.rows] == list(range(3000))  # row order kept
    body = orjson.loads(requests[0].body())
    assert len(body["batch"]) == len(requests[0].rows)


def test_segment_rows_become_calls_of_at_most_1000_ids() -> None:
    builder = Builder(parse_operation("segment:7"), "members")
    items, _ = plan([{"id": f"u{i}"} for i in range(2500)] + [{"email": "e@x.io"}], builder, "1")
    requests = pack(items, "track", "7")
    ids = [(r.path, r.params["id_type"], len(orjson.loads(r.body())["ids"])) for r in requests]
    assert ids == [
        ("/api/v1/segments/7/add_customers", "id", 1000),
        ("/api/v1/segments/7/add_customers", "id", 1000),
        ("/api/v1/segments/7/add_customers", "id", 500),
        ("/api/v1/segments/7/add_customers", "email", 1),
    ]


def test_requests_naming_one_person_wait_for_each_other() -> None:
    builder = Builder(parse_operation("identify"), "people")
    rows = [{"id": "a", "v": 1, "pad": "x" * 400}] * 1 + [{"id": f"b{i}", "pad": "x" * 900} for i in range(520)]
    rows += [{"id": "a", "v": 2}]
    items, _ = plan(rows, builder, "1")
    requests = pack(items, "track")
    assert len(requests) == 2
    assert dependencies(requests) == [set(), {0}]
    order: list[int] = []
    lock = threading.Lock()

    def send(request):  # the first request is slow: the second must still wait for it
        if request is requests[0]:
            time.sleep(0.2)
        with lock:
            order.append(requests.index(request))
        return {}

    send_all(requests, send, workers=4)
    assert order == [0, 1]


def test_independent_requests_run_in_parallel() -> None:
    builder = Builder(parse_operation("identify"), "people")
    items, _ = plan([{"id": f"p{i}", "pad": "x" * 900} for i in range(2000)], builder, "1")
    requests = pack(items, "track")
    assert len(requests) >= 4 and not any(dependencies(requests))
    active, peak = [0], [0]
    lock = threading.Lock()

    def send(request):
        with lock:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        time.sleep(0.05)
        with lock:
            active[0] -= 1
        return {}

    send_all(requests, send, workers=4)
    assert peak[0] > 1


def test_unix_seconds_forms() -> None:
    assert unix_seconds(1700000000, "t") == unix_seconds(1700000000123, "t") == 1700000000
    assert unix_seconds("1700000000", "t") == unix_seconds("2023-11-14T22:13:20Z", "t") == 1700000000
    with pytest.raises(Rejection):
        unix_seconds("not a time", "t")


@pytest.mark.parametrize("text", ["", "shout", "object", "segment:abc", "identify:1", "object:x", "segment:"])
def test_bad_operations_fail_with_one_line(text: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_operation(text)
    assert "\n" not in str(caught.value)


def test_segments_need_the_track_api() -> None:
    with pytest.raises(ConfigError, match="use --api track"):
        parse_operation("segment:1", api="cdp")


def test_missing_columns_are_bad_input() -> None:
    with pytest.raises(ConfigError, match="no id / email / cio_id column"):
        check_columns(parse_operation("identify"), ["plan", "name"], "main.people")
    with pytest.raises(ConfigError, match="no name / event column"):
        check_columns(parse_operation("event"), ["id", "ts"], "main.events")
    check_columns(parse_operation("event:x"), ["id", "ts"], "main.events")


def test_cdp_calls() -> None:
    assert build("identify", {"id": "u1", "email": "a@x.io", "created_at": 1700000000}, "cdp") == {
        "type": "identify",
        "userId": "u1",
        "traits": {"email": "a@x.io", "createdAt": "2023-11-14T22:13:20Z"},
    }
    call = build("event", {"id": "u1", "name": "signup", "timestamp": 1700000000, "n": 1}, "cdp")
    assert call["type"] == "track" and call["event"] == "signup" and ULID.match(call["messageId"])
    assert call["timestamp"] == "2023-11-14T22:13:20Z" and call["properties"] == {"n": 1}
    assert build("merge", {"primary_id": "a", "secondary_id": "b"}, "cdp") == {
        "type": "alias",
        "userId": "a",
        "previousId": "b",
    }
    assert build("object:2", {"object_id": "acme", "id": "u1", "name": "Acme"}, "cdp") == {
        "type": "group",
        "userId": "u1",
        "groupId": "acme",
        "traits": {"object_type_id": "2", "name": "Acme"},
    }
    with pytest.raises(Rejection, match="userId"):
        build("identify", {"email": "a@x.io"}, "cdp")


def test_send_credentials_go_with_each_request_never_on_a_session():
    from customerio_source.send.transport import SendClient, Settings

    track = SendClient(Settings(site_id="site", api_key="secret", base_url="http://127.0.0.1:9", rate_limit=None))
    assert track._headers["Authorization"].startswith("Basic ") and "X-Strict-Mode" not in track._headers
    assert "Authorization" not in track._session.headers
    cdp = SendClient(Settings(api="cdp", write_key="wk", base_url="http://127.0.0.1:9", rate_limit=None))
    assert cdp._headers["X-Strict-Mode"] == "1"
    assert "secret" not in repr(track) and "wk" not in repr(cdp)


def test_arrow_rows_turn_timestamps_into_the_unix_seconds_the_builder_sends() -> None:
    from datetime import datetime, timezone

    import pyarrow as pa

    from customerio_source.send.destination import arrow_rows
    from customerio_source.send.operations import Builder, parse_operation

    stamps = [datetime(2024, 5, 1, 12, 30, 15, 999_999, tzinfo=timezone.utc), datetime(1969, 12, 31, 23, 59, 59,
                                                                                       tzinfo=timezone.utc), None]
    batch = pa.RecordBatch.from_pydict(
        {
            "event_id": pa.array(stamps, pa.timestamp("us", tz="UTC")),  # a key column: kept as it is
            "id": ["a", "b", "c"],
            "name": ["x", "y", "z"],
            "timestamp": pa.array(stamps, pa.timestamp("ns", tz="UTC")),
            "seen": pa.array(stamps, pa.timestamp("ms")),
            "_dlt_load_id": ["1", "1", "1"],
        }
    )
    keyed = parse_operation("event", "event_id")
    rows = arrow_rows(batch, keyed)
    assert [r["timestamp"] for r in rows] == [1714566615, -1, None]
    assert [r["seen"] for r in rows] == [1714566615, -1, None]
    assert [r["event_id"] for r in rows] == stamps and "_dlt_load_id" not in rows[0]
    python = [{k: v for k, v in r.items() if not k.startswith("_dlt_")} for r in batch.to_pylist()]
    builder = Builder(keyed, "t")
    for fast, slow in zip(rows, python, strict=True):
        assert builder.build(0, fast).body == builder.build(0, slow).body
    keyless = parse_operation("event")
    assert arrow_rows(batch, keyless) == python  # the whole row is the key: read as it is


def test_a_submitted_request_keeps_one_body_and_no_entities() -> None:
    """Requests waiting to be sent hold their body once (the per-item parts and the entity set go at
    submission): what kept a 1M-row push's memory growing."""
    from customerio_source.send.operations import Builder, parse_operation
    from customerio_source.send.push import Packer, RequestQueue

    builder = Builder(parse_operation("event", "n"), "t")
    packer = Packer("track")
    requests = []
    for n in range(5000):
        requests += packer.add(builder.build(n, {"id": f"u{n % 50}", "n": n, "name": "e", "pad": "x" * 200}))
    requests += packer.flush()
    assert len(requests) >= 3
    bodies = [r.body() for r in requests]
    sent: list[bytes] = []
    queue = RequestQueue(lambda r: sent.append(r.body()) or {}, workers=1)
    for request in requests:
        queue.submit(request)
        assert len(request.parts) == 1 and request.entities == set()
    queue.close()
    assert sent == bodies and all(len(b) <= 500_000 for b in bodies)


def test_file_batches_read_one_row_group_at_a_time_and_resume_mid_file(tmp_path) -> None:
    """A job file is read a row group at a time (``iter_batches`` read ahead over the groups, so the push's
    memory grew with the file), and a resumed job starts at its checkpoint row, skipping whole groups."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from customerio_source.send.destination import file_batches

    path = str(tmp_path / "t.parquet")
    pq.write_table(pa.table({"n": list(range(21))}), path, row_group_size=7)
    reads: list[int] = []

    class Counting(pq.ParquetFile):
        def read_row_group(self, i, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003 - pyarrow's signature
            reads.append(i)
            return super().read_row_group(i, *args, **kwargs)

    with Counting(path) as reader:
        batches = file_batches(reader, 10, 4)
        first_index, first = next(batches)
        assert reads == [1]  # group 0 (rows 0-6) skipped unread; group 2 not read yet
        assert (first_index, first.column("n").to_pylist()) == (10, [10, 11, 12, 13])
        rest = list(batches)
    assert reads == [1, 2]
    assert [(i, b.column("n").to_pylist()) for i, b in rest] == [(14, [14, 15, 16, 17]), (18, [18, 19, 20])]
    with pq.ParquetFile(path) as reader:
        everything = [(i, b.num_rows) for i, b in file_batches(reader, 0, 5)]
    assert everything == [(0, 5), (5, 2), (7, 5), (12, 2), (14, 5), (19, 2)]
