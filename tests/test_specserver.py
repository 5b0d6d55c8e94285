"""Offline tests of the independent spec server (benchmarks/specserver.py) at scale tiny, in-process."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from benchmarks.specserver import DEFAULT_SPEC, Running, start

KEY = "k-test"

pytestmark = pytest.mark.skipif(not DEFAULT_SPEC.exists(), reason="spec file not present")


@pytest.fixture(scope="module")
def server() -> Iterator[Running]:
    """A tiny workspace with the limit off (the rate test starts its own)."""
    running = start(scale="tiny", api_key=KEY, rate_limit=0)
    yield running
    running.close()


def call(base: str, path: str, key: str | None = KEY, method: str = "GET", body: Any = None) -> tuple[int, Any, dict]:
    """(status, JSON body, headers) for one request."""
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(base + path, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read()), dict(resp.headers)
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read()), dict(err.headers)


def test_401_without_key(server: Running) -> None:
    assert call(server.urls["api"], "/v1/campaigns", key=None)[0] == 401
    assert call(server.urls["api"], "/v1/campaigns", key="wrong")[0] == 401
    assert call(server.urls["api"], "/v1/campaigns")[0] == 200


def test_400_unknown_param_and_limit_above_maximum(server: Running) -> None:
    status, body, _ = call(server.urls["api"], "/v1/messages?bogus=1")
    assert status == 400 and "bogus" in body["errors"][0]["detail"]
    assert call(server.urls["api"], "/v1/messages?limit=1001")[0] == 400  # spec maximum 1000
    assert call(server.urls["api"], "/v1/activities?limit=101")[0] == 400  # spec maximum 100
    assert call(server.urls["api"], "/v1/messages?limit=1000")[0] == 200


def test_per_parent_ids_are_consistent(server: Running) -> None:
    _, body, _ = call(server.urls["api"], "/v1/campaigns")
    for campaign in body["campaigns"]:
        status, actions, _ = call(server.urls["api"], f"/v1/campaigns/{campaign['id']}/actions")
        assert status == 200 and all(a["campaign_id"] == campaign["id"] for a in actions["actions"])
    assert call(server.urls["api"], "/v1/campaigns/987654/actions")[0] == 404


@pytest.mark.parametrize(
    "path,envelope,method",
    [
        ("/v1/messages", "messages", "GET"),
        ("/v1/activities", "activities", "GET"),
        ("/v1/customers", "identifiers", "POST"),
    ],
)
def test_pagination_yields_every_row_once(server: Running, path: str, envelope: str, method: str) -> None:
    body = {"filter": {"and": []}} if method == "POST" else None
    seen: list[str] = []
    start, pages = "", 0
    while True:
        query = f"?limit=37&start={start}" if start else "?limit=37"
        status, payload, _ = call(server.urls["api"], path + query, method=method, body=body)
        assert status == 200
        seen += [row.get("id") or row.get("cio_id") for row in payload[envelope]]
        pages += 1
        start = payload.get("next") or ""
        if not start:
            break
        assert pages < 1000
    assert len(seen) == len(set(seen)) > 37


def test_start_ts_end_ts_filter_created(server: Running) -> None:
    _, everything, _ = call(server.urls["api"], "/v1/messages?limit=1000")
    created = sorted(m["created"] for m in everything["messages"])
    lo, hi = created[len(created) // 4], created[3 * len(created) // 4]
    _, window, _ = call(server.urls["api"], f"/v1/messages?limit=1000&start_ts={lo}&end_ts={hi}")
    assert window["messages"] and all(lo <= m["created"] <= hi for m in window["messages"])


def test_429_with_retry_after_over_the_limit() -> None:
    running = start(scale="tiny", api_key=KEY, rate_limit=5)
    try:
        started = time.monotonic()
        statuses = [call(running.urls["api"], "/v1/workspaces") for _ in range(8)]
        assert time.monotonic() - started < 1.0, "machine too slow for a 1-second window"
        codes = [s for s, *_ in statuses]
        assert codes[:5] == [200] * 5 and 429 in codes[5:]
        status, body, headers = next(s for s in statuses if s[0] == 429)
        assert headers.get("Retry-After") == "1" and body["errors"][0]["status"] == "429"
        stats = call(running.urls["admin"], "/_stats")[1]
        assert stats["total"] == 8 and stats["rate_limited"] == codes.count(429)
    finally:
        running.close()
