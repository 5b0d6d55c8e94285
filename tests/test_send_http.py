"""The send side's HTTP behaviour: 207 rejections, 401/400 stops, rate limits and Retry-After, replays."""

from __future__ import annotations

import time
from typing import Any

import duckdb
import pytest

from customerio_source.errors import ApiError, AuthError
from customerio_source.send.destination import push_batch
from customerio_source.send.rejections import load_rejections, read_spool, spool_files
from customerio_source.send.transport import Settings

from .scripted_server import ScriptedServer
from .send_fixtures import SITE_ID, TRACK_KEY, customer, push


def test_207_names_rejected_items_and_the_rest_is_applied(send_server: Any, tmp_path: Any) -> None:
    rows = [{"object_id": f"o{i}", "name": f"n{i}"} for i in range(5)]
    people = [{"id": "ok1", "plan": "a"}, {"id": "ok2", "plan": "b"}]
    push(send_server, tmp_path, {"people": (people, "identify"), "companies": (rows, "object:99", "object_id")})
    records = list(read_spool(spool_files(str(tmp_path / "spool"))))
    assert sorted(r["row_key"] for r in records) == [f"o{i}" for i in range(5)]
    assert {(r["source_table"], r["operation"], r["reason"], r["field"]) for r in records} == {
        ("companies", "object:99", "not_found", "identifiers.object_type_id")
    }
    assert send_server.send.stats.status_counts.get(207) == 1
    assert customer(send_server, "ok1")["attributes"]["plan"] == "a"


def test_rejections_land_in_a_warehouse_table_without_secrets(send_server: Any, tmp_path: Any) -> None:
    rows = [{"id": "fine", "plan": "x"}, {"plan": "no id"}, {"id": "y" * 200}]
    push(send_server, tmp_path, {"people": (rows, "identify")})
    db = str(tmp_path / "w.duckdb")
    import dlt

    reasons = load_rejections(
        str(tmp_path / "spool"), dlt.destinations.duckdb(db), "main", "rej", str(tmp_path / "pipelines")
    )
    assert dict(reasons) == {"missing_identifier": 1, "identifier_too_long": 1}
    with duckdb.connect(db, read_only=True) as con:
        got = con.execute(
            "SELECT source_table, operation, reason, field FROM main.customerio_rejections ORDER BY reason"
        ).fetchall()
        text = str(con.execute("SELECT * FROM main.customerio_rejections").fetchall())
    assert got == [
        ("people", "identify", "identifier_too_long", "id"),
        ("people", "identify", "missing_identifier", "id"),
    ]
    assert TRACK_KEY not in text and SITE_ID not in text
    assert spool_files(str(tmp_path / "spool")) == []


def _settings(base_url: str, **kwargs: Any) -> Settings:
    return Settings(
        api="track", base_url=base_url, site_id=SITE_ID, api_key=TRACK_KEY, rate_limit=None, max_attempts=3, **kwargs
    )


def test_401_stops_at_once_with_one_line_and_no_secret(tmp_path: Any) -> None:
    server = ScriptedServer(lambda m, p, q, b: (401, {}, {"meta": {"errors": ["Unauthorized request"]}}))
    server.__enter__()
    try:
        with pytest.raises(AuthError) as caught:
            push_batch(
                [{"id": "a"}],
                {"name": "people"},
                _settings(server.base_url),
                {"people": "identify"},
                rejections_dir=str(tmp_path),
            )
    finally:
        server.__exit__()
    message = str(caught.value)
    assert "401" in message and "\n" not in message and TRACK_KEY not in message and SITE_ID not in message
    assert len(server.requests) == 1  # never retried


def test_400_stops_at_once(tmp_path: Any) -> None:
    server = ScriptedServer(lambda m, p, q, b: (400, {}, {"meta": {"errors": ["batch is malformed"]}}))
    server.__enter__()
    try:
        with pytest.raises(ApiError) as caught:
            push_batch(
                [{"id": "a"}],
                {"name": "people"},
                _settings(server.base_url),
                {"people": "identify"},
                rejections_dir=str(tmp_path),
            )
    finally:
        server.__exit__()
    assert "malformed (400): batch is malformed" in str(caught.value)
    assert len(server.requests) == 1


def test_200_with_errors_counts_as_rejections(tmp_path: Any) -> None:
    answer = {"errors": [{"batch_index": 1, "reason": "invalid", "field": "attributes.x", "message": "bad"}]}
    server = ScriptedServer(lambda m, p, q, b: (200, {}, answer))
    server.__enter__()
    try:
        push_batch(
            [{"id": "a"}, {"id": "b"}, {"id": "c"}],
            {"name": "people"},
            _settings(server.base_url),
            {"people": "identify"},
            key="id",
            rejections_dir=str(tmp_path),
        )
    finally:
        server.__exit__()
    assert [(r["row_key"], r["reason"], r["field"]) for r in read_spool(spool_files(str(tmp_path)))] == [
        ("b", "invalid", "attributes.x")
    ]


def test_429_honours_retry_after_and_5xx_is_retried(tmp_path: Any) -> None:
    replies = iter([(429, {"Retry-After": "1"}, {}), (503, {}, {}), (200, {}, {})])
    server = ScriptedServer(lambda m, p, q, b: next(replies))
    server.__enter__()
    started = time.monotonic()
    try:
        push_batch(
            [{"id": "a"}],
            {"name": "people"},
            _settings(server.base_url),
            {"people": "identify"},
            rejections_dir=str(tmp_path),
        )
    finally:
        server.__exit__()
    assert len(server.requests) == 3
    assert time.monotonic() - started >= 1.0
    assert all(r["headers"]["Authorization"].startswith("Basic ") for r in server.requests)


def test_simulated_track_rate_limit_is_held_by_the_limiter(send_server: Any, tmp_path: Any) -> None:
    from customerio_source.simulator.send_api import configure

    state = configure(send_server, site_id=SITE_ID, track_api_key=TRACK_KEY, track_rate_limit=20)
    rows = [{"id": f"r{i}", "pad": "x" * 950} for i in range(8000)]  # ~16 requests
    started = time.monotonic()
    push(send_server, tmp_path, {"people": (rows, "identify")}, rate_limit=10, workers=4)
    assert state.stats.rate_limited == 0
    assert state.stats.requests >= 16
    assert time.monotonic() - started >= (state.stats.requests - 1) / 10 * 0.9


def test_replayed_events_are_applied_once(send_server: Any, tmp_path: Any) -> None:
    now = send_server.workspace.now
    events = [{"id": "rep", "event_id": i, "name": "tick", "timestamp": now - 100 + i} for i in range(50)]
    for _ in range(3):
        push(send_server, tmp_path, {"events": (events, "event", "event_id")})
    from .send_fixtures import app_get

    acts = app_get(send_server, "/v1/customers/rep/activities", limit=100)["activities"]
    assert len(acts) == 50 and send_server.send.duplicates == 100
