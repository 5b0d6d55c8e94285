"""The App API client: pagination, rate limiter, retries, errors, URL encoding."""

from __future__ import annotations

import pytest

from customerio_source.client import CustomerIOClient, path_value
from customerio_source.errors import (
    ApiError,
    AuthError,
    ConfigError,
    NotFoundError,
    PaginationError,
    RetriesExhausted,
)
from customerio_source.ratelimit import RateLimiter

from .clocks import FakeClock
from .scripted_server import ScriptedServer

KEY = "test-secret-key-123"



def make_client(server: ScriptedServer, **kwargs) -> CustomerIOClient:
    kwargs.setdefault("rate_limit", None)
    kwargs.setdefault("backoff_base", 0.01)
    return CustomerIOClient(KEY, base_url=server.base_url, **kwargs)


def test_pagination_follows_next_until_empty_and_yields_each_page():
    pages = {None: (["a", "b"], "c1"), "c1": (["c"], "c2"), "c2": ([], "")}

    def handler(method, path, query, body):
        items, nxt = pages[query.get("start")]
        return 200, {}, {"items": [{"id": i} for i in items], "next": nxt}

    with ScriptedServer(handler) as server:
        client = make_client(server)
        got = [[r["id"] for r in p["items"]] for p in client.pages("GET", "/v1/things", {"limit": 2})]
    assert got == [["a", "b"], ["c"], []]
    assert [r["query"].get("start") for r in server.requests] == [None, "c1", "c2"]
    assert all(r["query"]["limit"] == "2" for r in server.requests)
    assert all(r["headers"]["Authorization"] == f"Bearer {KEY}" for r in server.requests)


def test_pagination_stops_when_next_absent():
    with ScriptedServer(lambda *a: (200, {}, {"items": [{"id": 1}]})) as server:
        assert len(list(make_client(server).pages("GET", "/v1/x"))) == 1


def test_repeated_cursor_raises_instead_of_looping():
    with ScriptedServer(lambda *a: (200, {}, {"items": [{"id": 1}], "next": "same"})) as server:
        client = make_client(server)
        with pytest.raises(PaginationError, match="twice"):
            for _ in client.pages("GET", "/v1/x"):
                pass
        assert len(server.requests) == 2


def test_429_waits_retry_after_then_succeeds():
    calls = []
    clock = FakeClock()

    def handler(method, path, query, body):
        calls.append(clock.now)
        if len(calls) == 1:
            return (
                429,
                {"Retry-After": "2"},
                {"errors": [{"detail": "rate limited to 10 requests per 1s", "status": "429"}]},
            )
        return 200, {}, {"ok": True}

    with ScriptedServer(handler) as server:
        limiter = RateLimiter(10, clock=clock, sleep=clock.sleep)
        client = make_client(server, limiter=limiter)
        assert client.get("/v1/campaigns") == {"ok": True}
    assert calls == [0.0, 2.0]  # the second attempt waited exactly Retry-After
    assert client.stats.rate_limited == 1


def test_503_then_success_and_post_retried_too(monkeypatch):
    monkeypatch.setattr("customerio_source.client.time.sleep", lambda s: None)
    calls = []

    def handler(method, path, query, body):
        calls.append(body)
        return (503, {}, {"errors": [{"detail": "unavailable"}]}) if len(calls) < 3 else (200, {}, {"customers": []})

    with ScriptedServer(handler) as server:
        assert make_client(server).post("/v1/customers/attributes", {"ids": ["a"]}) == {"customers": []}
    assert calls == [{"ids": ["a"]}] * 3


def test_retries_are_bounded(monkeypatch):
    monkeypatch.setattr("customerio_source.client.time.sleep", lambda s: None)
    with ScriptedServer(lambda *a: (500, {}, {"errors": []})) as server:
        client = make_client(server, max_attempts=3)
        with pytest.raises(RetriesExhausted, match="HTTP 500.*3 attempts"):
            client.get("/v1/campaigns")
        assert len(server.requests) == 3


def test_cut_json_body_is_retried(monkeypatch):
    monkeypatch.setattr("customerio_source.client.time.sleep", lambda s: None)
    calls = []

    def handler(*a):
        calls.append(1)
        return (200, {}, b'{"campaigns": [{"id"') if len(calls) == 1 else (200, {}, {"campaigns": []})

    with ScriptedServer(handler) as server:
        assert make_client(server).get("/v1/campaigns") == {"campaigns": []}


def test_401_names_region_and_base_url_and_hides_key():
    with ScriptedServer(
        lambda *a: (401, {}, {"errors": [{"detail": "Unauthorized request", "status": "401"}]})
    ) as server:
        client = make_client(server)
        with pytest.raises(AuthError) as err:
            client.get("/v1/campaigns")
    message = str(err.value)
    assert "rejected the App API key" in message and server.base_url in message and "--region eu" in message
    assert KEY not in message and KEY not in repr(client)


def test_400_carries_the_api_detail():
    with ScriptedServer(
        lambda *a: (400, {}, {"errors": [{"detail": "limit must be <= 1000", "status": "400"}]})
    ) as server:
        with pytest.raises(ApiError, match="limit must be <= 1000"):
            make_client(server).get("/v1/messages", {"limit": 5000})


def test_404_is_not_found():
    with ScriptedServer(lambda *a: (404, {}, {"errors": [{"detail": "not found"}]})) as server:
        with pytest.raises(NotFoundError):
            make_client(server).get("/v1/campaigns/9")


def test_path_values_are_url_encoded():
    assert path_value("a/b@c+d e") == "a%2Fb%40c%2Bd%20e"
    with ScriptedServer(lambda *a: (200, {}, {})) as server:
        make_client(server).get(f"/v1/customers/{path_value('x/y+z@q.com')}/attributes", {"id_type": "email"})
    assert server.requests[0]["raw_path"].startswith("/v1/customers/x%2Fy%2Bz%40q.com/attributes?")
    assert server.requests[0]["query"] == {"id_type": "email"}


def test_missing_key_and_bad_region_fail_early():
    with pytest.raises(ConfigError, match="CUSTOMERIO_APP_API_KEY"):
        CustomerIOClient("")
    with pytest.raises(ConfigError, match="unknown region"):
        CustomerIOClient("k", region="asia")
    assert CustomerIOClient("k", region="eu").base_url == "https://api-eu.customer.io"
    assert CustomerIOClient("k").base_url == "https://api.customer.io"


def test_rate_limiter_spaces_requests_evenly():
    clock = FakeClock()
    limiter = RateLimiter(10, period=1.0, margin=0.0, clock=clock, sleep=clock.sleep)
    times = []
    for _ in range(35):
        limiter.acquire()
        times.append(clock.now)
    # never more than 10 requests in any window of 1 s, and no bursts: one every 100 ms
    for i in range(len(times) - 10):
        assert times[i + 10] - times[i] >= 1.0 - 1e-9
    assert times[1] - times[0] == pytest.approx(0.1)
    assert times[-1] == pytest.approx(3.4)


def test_rate_limiter_default_margin_and_threads():
    import threading

    limiter = RateLimiter(10)
    assert limiter.interval == pytest.approx(0.104)  # 9.6 requests/s sustained
    clock = FakeClock()
    shared = RateLimiter(5, margin=0.0, clock=clock, sleep=lambda s: None)
    slots = []
    lock = threading.Lock()

    def worker():
        for _ in range(10):
            waited = shared.acquire()
            with lock:
                slots.append(round(waited, 6))

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # 40 callers on a clock that never moves get 40 distinct slots 0.2 s apart
    assert sorted(slots) == [round(0.2 * i, 6) for i in range(40)]


def test_rate_limiter_fractional_rate_and_pause():
    clock = FakeClock()
    limiter = RateLimiter(2.5, period=1.0, margin=0.0, clock=clock, sleep=clock.sleep)
    for _ in range(6):
        limiter.acquire()
    assert clock.now == pytest.approx(2.0)  # every 0.4 s
    limiter.pause(3)
    limiter.acquire()
    assert clock.now >= 5.0


def test_rate_limiter_off():
    clock = FakeClock()
    limiter = RateLimiter(None, clock=clock, sleep=clock.sleep)
    for _ in range(100):
        limiter.acquire()
    assert clock.now == 0


def test_the_transport_is_dlts_session_with_the_runtime_timeout(monkeypatch):
    from dlt.sources.helpers.requests import Session

    monkeypatch.setenv("RUNTIME__REQUEST_TIMEOUT", "7")
    assert CustomerIOClient(KEY, rate_limit=0).timeout == 7.0  # dlt's [runtime] request_timeout
    client = CustomerIOClient(KEY, rate_limit=0, timeout=2.5)  # the source's own setting wins
    assert client.timeout == 2.5
    session = client._session
    assert isinstance(session, Session)
    assert session.timeout == 2.5
    assert "Authorization" not in session.headers  # credentials travel per request, never on a shared object


def test_a_slow_answer_times_out_at_the_runtime_timeout(monkeypatch):
    import time

    monkeypatch.setenv("RUNTIME__REQUEST_TIMEOUT", "0.2")
    calls: list[int] = []

    def handler(method, path, query, body):
        calls.append(1)
        if len(calls) == 1:
            time.sleep(1.0)  # longer than the timeout: the client gives up on it and tries again
        return 200, {}, {"ok": len(calls)}

    with ScriptedServer(handler) as server:
        client = CustomerIOClient(KEY, base_url=server.base_url, rate_limit=0, backoff_base=0.01)
        assert client.request("GET", "/v1/x") == {"ok": 2}
    assert client.stats.retries["ReadTimeout"] == 1
