"""The shared rate limiter finds the budget it actually has (issue 18, point 4).

Fake-clock unit tests of the decrease, the increase, pauses and the retry's place in line; the client's
429 handling against a scripted server; and loads against the simulator granting less than the connector
is configured for, where the load completes and, once adapted, few requests are refused.
"""

from __future__ import annotations

import random
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import pytest

from customerio_source.client import CustomerIOClient
from customerio_source.errors import RetriesExhausted
from customerio_source.ratelimit import RateLimiter

from .clocks import FakeClock
from .conftest import API_KEY, Loader, norm_keys
from .oracle import expected_keys
from .scripted_server import ScriptedServer

LOAD_TABLES = "campaigns,campaign_actions,campaign_action_metrics,campaign_metrics,broadcasts,segments"
MORE_TABLES = f"{LOAD_TABLES},campaign_journey_metrics,broadcast_actions,broadcast_action_metrics,newsletters,\
newsletter_variants,newsletter_variant_metrics"  # about 50 requests at tiny scale



class SteppedClock:
    """A clock only the test moves; ``sleep`` blocks until the test has moved it far enough."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleepers = 0
        self.sleeps: list[float] = []  # the time each sleep ends at
        self._cond = threading.Condition()

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        with self._cond:
            until = self.now + seconds
            self.sleeps.append(until)
            self.sleepers += 1
            while self.now < until - 1e-9:
                self._cond.wait(timeout=5)
            self.sleepers -= 1

    def move_to(self, when: float) -> None:
        with self._cond:
            self.now = when
            self._cond.notify_all()


class WindowServer:
    """Accepts at most ``n`` requests in any rolling ``period`` (refused ones do not count), like the simulator."""

    def __init__(self, n: int, period: float = 1.0) -> None:
        self.n = n
        self.period = period
        self._times: deque[float] = deque()

    def allow(self, arrival: float) -> bool:
        while self._times and arrival - self._times[0] >= self.period:
            self._times.popleft()
        if len(self._times) >= self.n:
            return False
        self._times.append(arrival)
        return True


def drive(
    limiter: RateLimiter, clock: FakeClock, server: WindowServer, accepted: int, seed: int = 1
) -> list[tuple[float, bool]]:
    """One caller sends until ``accepted`` requests got through; arrivals jitter by up to 30 ms."""
    rng = random.Random(seed)
    log: list[tuple[float, bool]] = []
    retry = False
    while sum(ok for _, ok in log) < accepted:
        limiter.acquire(priority=retry)
        sent = clock()
        ok = server.allow(sent + rng.uniform(0.0, 0.03))
        clock.now += 0.01  # the answer takes 10 ms
        if ok:
            limiter.accepted(sent)
        else:
            limiter.rate_limited(sent, 1.0)
        retry = not ok
        log.append((sent, ok))
    return log


def until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.002)


def in_thread(target: Callable[[], Any]) -> threading.Thread:
    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread


# -- decrease ------------------------------------------------------------------------------------------------
def test_a_429_lowers_the_rate_to_the_budget_the_server_showed():
    clock = FakeClock()
    limiter = RateLimiter(10, clock=clock, sleep=clock.sleep)
    log = drive(limiter, clock, WindowServer(5), accepted=6)
    assert [ok for _, ok in log].count(False) == 1
    assert limiter.decreases == 1
    assert limiter.rate == pytest.approx(5.0)  # 5 accepted in the second before the 429
    assert limiter.min_rate == pytest.approx(5.0)
    assert limiter.interval == pytest.approx(1.04 / 5)


def test_multiplicative_decrease_when_the_server_accepted_most():
    clock = FakeClock()
    limiter = RateLimiter(10, clock=clock, sleep=clock.sleep)
    for _ in range(12):
        limiter.acquire()
        limiter.accepted(clock())
    sent = clock()
    limiter.rate_limited(sent, 1.0)
    assert limiter.rate == pytest.approx(8.0)  # 0.8 x the rate the request went at (it accepted 10 of 11)
    assert limiter.history()[-1] == (sent, pytest.approx(8.0))


def test_429s_of_one_round_lower_the_rate_once():
    clock = FakeClock()
    limiter = RateLimiter(10, clock=clock, sleep=clock.sleep)
    sends = []
    for _ in range(12):
        limiter.acquire()
        sends.append(clock())
    for t in sends[:8]:
        limiter.accepted(t)
    clock.now += 0.01
    limiter.rate_limited(sends[8], 1.0)  # the first 429 of the round: 8 of 9 accepted, 0.8 x 10
    for t in sends[9:]:
        limiter.rate_limited(t, 1.0)  # sent before the rate dropped: the same round
    assert limiter.decreases == 1 and limiter.throttled == 4 and limiter.rate == pytest.approx(8.0)
    limiter.acquire(priority=True)
    assert clock() == pytest.approx(sends[-1] + 0.01 + 1.0)  # after the pause
    succeed(limiter, clock, 8, first=clock())
    limiter.acquire()
    limiter.rate_limited(clock(), 1.0)  # sent after the decrease: a new round
    assert limiter.decreases == 2 and limiter.rate == pytest.approx(8.0 * 0.8)
    assert limiter.min_rate == pytest.approx(8.0 * 0.8)


def test_a_blanket_refusal_only_pauses():
    """The first request after a pause refused too: no budget was shown, lowering the rate would not help."""
    clock = FakeClock()
    limiter = RateLimiter(10, clock=clock, sleep=clock.sleep)
    limiter.acquire()
    limiter.rate_limited(clock(), 2.0)
    assert limiter.decreases == 0 and limiter.rate == 10
    limiter.acquire(priority=True)
    assert clock() == pytest.approx(2.0)


def test_limiting_off_starts_from_the_observed_rate_on_a_429():
    clock = FakeClock()
    limiter = RateLimiter(None, clock=clock, sleep=clock.sleep)
    assert limiter.rate is None and limiter.interval == 0
    for _ in range(20):  # 20 requests/s, all accepted
        limiter.acquire()
        limiter.accepted(clock())
        clock.now += 0.05
    limiter.acquire()
    limiter.rate_limited(clock(), 1.0)
    assert limiter.rate == pytest.approx(16.0)  # 0.8 x the 20 requests sent in the second before
    assert limiter.max_rate is None and limiter.interval == pytest.approx(1.04 / 16)


def test_the_rate_never_drops_below_the_floor():
    clock = FakeClock()
    limiter = RateLimiter(10, clock=clock, sleep=clock.sleep, floor=0.5)
    for _ in range(30):
        limiter.acquire()
        limiter.accepted(clock())
        limiter.acquire()
        limiter.rate_limited(clock(), 0.1)
    assert limiter.rate == pytest.approx(0.5) and limiter.min_rate == pytest.approx(0.5)


# -- increase ------------------------------------------------------------------------------------------------
def lowered(rate: float = 10.0) -> tuple[RateLimiter, FakeClock]:
    """A limiter that just lowered its rate from ``rate`` to 0.8 x: the server accepted a period's worth, then
    refused one."""
    clock = FakeClock()
    limiter = RateLimiter(rate, clock=clock, sleep=clock.sleep)
    for _ in range(int(rate) + 1):
        limiter.acquire()
        limiter.accepted(clock())
    limiter.acquire()
    limiter.rate_limited(clock(), 0.5)
    assert limiter.rate == pytest.approx(0.8 * rate)
    return limiter, clock


def succeed(limiter: RateLimiter, clock: FakeClock, n: int, first: float | None = None) -> None:
    """``n`` more requests answered (``first``: the one already sent at that time counts too)."""
    if first is not None:
        limiter.accepted(first)
    for _ in range(n):
        limiter.acquire()
        limiter.accepted(clock())


def test_the_rate_rises_per_window_of_successes():
    limiter, clock = lowered()
    succeed(limiter, clock, 15)
    assert limiter.rate == pytest.approx(8.0)  # a window is max(10, 2 x rate) = 16 successes
    succeed(limiter, clock, 1)
    assert limiter.rate == pytest.approx(9.0)  # half the gap to the 429's rate


def rates_while_succeeding(limiter: RateLimiter, clock: FakeClock, until: Callable[[float], bool]) -> list[float]:
    """The rate after each increase, one success at a time, until ``until(rate)``."""
    rates = [limiter.rate]
    for _ in range(100_000):
        succeed(limiter, clock, 1)
        if limiter.rate != rates[-1]:
            rates.append(limiter.rate)
        if until(limiter.rate):
            return rates
    raise AssertionError(rates)


def test_recovery_approaches_the_last_ceiling_fast_then_probes_slowly():
    limiter, clock = lowered(rate=40.0)  # the 429's rate about 40 (39.5: 38 accepted), now 32
    rates = rates_while_succeeding(limiter, clock, lambda rate: rate >= 40.0)
    steps = [b - a for a, b in zip(rates, rates[1:], strict=False)]
    assert 3.5 <= steps[0] <= 4.0  # closing half the gap per window
    assert steps[1] == pytest.approx(steps[0] / 2) and steps[2] == pytest.approx(steps[0] / 4)
    assert len(steps) == 6 and steps[-2] < 0.03 * 40  # then a small step above the last ceiling
    succeed(limiter, clock, 500)
    assert limiter.rate == 40.0  # never above the configured rate


def test_above_the_last_ceiling_growth_doubles_per_window():
    clock = FakeClock()
    limiter = RateLimiter(None, clock=clock, sleep=clock.sleep)
    for _ in range(10):
        limiter.acquire()
        limiter.accepted(clock())
        clock.now += 0.1
    limiter.acquire()
    limiter.rate_limited(clock(), 0.1)  # 10 accepted in the second before: the 429's rate is about 10
    rates = rates_while_succeeding(limiter, clock, lambda rate: rate > 100)  # no configured ceiling
    steps = [b - a for a, b in zip(rates, rates[1:], strict=False)]
    tail = steps[-4:]
    assert all(b == pytest.approx(2 * a) for a, b in zip(tail, tail[1:], strict=False)), steps


def test_successes_of_requests_sent_before_the_decrease_do_not_count():
    limiter, clock = lowered()
    for _ in range(100):
        limiter.accepted(0.0)
    assert limiter.rate == pytest.approx(8.0)


# -- pause and order -----------------------------------------------------------------------------------------
def test_a_slot_reserved_before_a_pause_does_not_fire_inside_it():
    clock = SteppedClock()
    limiter = RateLimiter(10, margin=0.0, clock=clock, sleep=clock.sleep)
    limiter.acquire()  # slot 0.0; the next free one is 0.1
    fired: list[float] = []
    thread = in_thread(lambda: (limiter.acquire(), fired.append(clock())))
    until(lambda: clock.sleepers == 1)  # it sleeps towards its slot at 0.1
    clock.move_to(0.05)
    limiter.pause(1.0)
    clock.move_to(0.1)
    until(lambda: len(clock.sleeps) == 2)  # woke at its old slot, saw the pause, sleeps again
    assert clock.sleeps == [pytest.approx(0.1), pytest.approx(1.05)] and fired == []
    clock.move_to(1.05)
    thread.join(timeout=5)
    assert fired == [pytest.approx(1.05)]


def test_the_retry_of_a_429_goes_before_requests_not_sent_yet():
    clock = SteppedClock()
    limiter = RateLimiter(10, margin=0.0, clock=clock, sleep=clock.sleep)
    limiter.acquire()  # request A is sent at 0.0
    order: list[tuple[str, float]] = []

    def send(name: str, **kwargs: Any) -> Callable[[], None]:
        return lambda: (limiter.acquire(**kwargs), order.append((name, clock())))

    waiting = [in_thread(send("B"))]
    until(lambda: clock.sleepers == 1)
    waiting.append(in_thread(send("C")))
    until(lambda: limiter.waiting == 2)
    clock.move_to(0.05)
    limiter.rate_limited(0.0, 1.0)  # A got a 429: every caller pauses until 1.05
    waiting.append(in_thread(send("A", priority=True, since=0.0)))
    until(lambda: limiter.waiting == 3 and clock.sleepers == 2)
    clock.move_to(0.1)  # B's old slot: B wakes, is not first any more, and waits
    until(lambda: clock.sleepers == 1)
    clock.move_to(0.5)
    time.sleep(0.05)
    assert order == []  # nothing fires inside the pause
    for when, sent in ((1.05, 1), (1.15, 2), (1.25, 3)):
        clock.move_to(when)
        until(lambda sent=sent: len(order) == sent)
    for thread in waiting:
        thread.join(timeout=5)
    assert order == [("A", pytest.approx(1.05)), ("B", pytest.approx(1.15)), ("C", pytest.approx(1.25))]


def test_callers_of_one_priority_go_by_first_attempt():
    clock = SteppedClock()
    limiter = RateLimiter(10, margin=0.0, clock=clock, sleep=clock.sleep)
    limiter.acquire()
    order: list[str] = []
    threads = [in_thread(lambda: (limiter.acquire(), order.append("fresh")))]
    until(lambda: clock.sleepers == 1)
    threads.append(in_thread(lambda: (limiter.acquire(since=-5.0), order.append("older"))))
    until(lambda: limiter.waiting == 2)
    for when in (0.1, 0.2, 0.3):
        clock.move_to(when)
        time.sleep(0.03)
    for thread in threads:
        thread.join(timeout=5)
    assert order == ["older", "fresh"]


# -- steady state against a rolling-window server (fake time) ------------------------------------------------
@pytest.mark.parametrize("grant, configured", [(5, 10.0), (2, 10.0), (1, 10.0), (10, 50.0), (10, 10.0)])
def test_adapts_to_the_budget_with_few_429s(grant, configured):
    clock = FakeClock()
    limiter = RateLimiter(configured, clock=clock, sleep=clock.sleep)
    log = drive(limiter, clock, WindowServer(grant), accepted=max(300, 120 * grant))
    settled = [ok for t, ok in log if t >= log[-1][0] / 4]  # after the first quarter of the run
    share = settled.count(False) / len(settled)
    assert share <= 0.04, (share, limiter.history()[-10:])
    span = log[-1][0] - log[len(log) // 4][0]
    assert sum(settled) / span >= 0.8 * grant / 1.04, limiter.history()[-10:]  # most of the budget
    assert limiter.rate <= configured


# -- the client ----------------------------------------------------------------------------------------------
def test_429_retries_do_not_use_up_max_attempts():
    clock = FakeClock()
    calls = []

    def handler(*a: Any) -> tuple[int, dict[str, str], Any]:
        calls.append(clock())
        return (429, {"Retry-After": "1"}, {"errors": []}) if len(calls) <= 6 else (200, {}, {"ok": True})

    with ScriptedServer(handler) as server:
        limiter = RateLimiter(None, clock=clock, sleep=clock.sleep)
        client = CustomerIOClient(API_KEY, base_url=server.base_url, max_attempts=2, limiter=limiter)
        assert client.get("/v1/campaigns") == {"ok": True}
    assert calls == pytest.approx([0, 1, 2, 3, 4, 5, 6])
    assert client.stats.rate_limited == 6 and client.stats.adapted_rate is None


def test_429s_are_bounded_by_max_retry_wait():
    clock = FakeClock()
    with ScriptedServer(lambda *a: (429, {"Retry-After": "2"}, {"errors": []})) as server:
        limiter = RateLimiter(None, clock=clock, sleep=clock.sleep)
        client = CustomerIOClient(API_KEY, base_url=server.base_url, max_retry_wait=9, limiter=limiter)
        with pytest.raises(RetriesExhausted) as failure:
            client.get("/v1/campaigns")
    assert str(failure.value) == "GET /v1/campaigns kept failing (HTTP 429) after 5 attempts and 8s of waiting"
    assert len(server.requests) == 5


def test_the_client_reports_what_the_limiter_did():
    clock = FakeClock()
    budget = WindowServer(3)

    def handler(*a: Any) -> tuple[int, dict[str, str], Any]:
        ok = budget.allow(clock())
        return (200, {}, {"ok": True}) if ok else (429, {"Retry-After": "1"}, {"errors": []})

    with ScriptedServer(handler) as server:
        limiter = RateLimiter(10, clock=clock, sleep=clock.sleep)
        client = CustomerIOClient(API_KEY, base_url=server.base_url, limiter=limiter)
        for _ in range(40):
            client.get("/v1/campaigns")
    stats = client.stats
    assert stats.configured_rate == 10 and stats.rate_decreases >= 1
    assert stats.adapted_rate == pytest.approx(limiter.rate) and 2.5 <= stats.adapted_rate <= 3.2
    assert 2.0 <= stats.min_rate <= stats.adapted_rate
    assert stats.rate_limited <= 4


# -- loads against the simulator granting less than the connector asks for ----------------------------------
def load_against(tmp_path: Any, grant: float, tables: str, rate_limit: float | None = None) -> dict[str, Any]:
    """Load ``tables`` from a tiny workspace whose server grants ``grant`` requests/s; check every row came."""
    from customerio_source.client import RequestStats
    from customerio_source.simulator import SimulatorServer, Workspace

    ws = Workspace(scale="tiny", seed=3)
    log: list[tuple[float, int]] = []
    with SimulatorServer(ws, api_key=API_KEY, rate_limit=grant) as server:
        record = server.stats.record_status

        def timed(status: int) -> None:
            log.append((time.monotonic(), status))
            record(status)

        server.stats.record_status = timed  # type: ignore[method-assign]
        loader = Loader(server.base_url, tmp_path)
        stats = RequestStats()
        kwargs: dict[str, Any] = {"request_stats": stats}
        if rate_limit is not None:
            kwargs["rate_limit"] = rate_limit
        loader.run(tables, **kwargs)
    for table in tables.split(","):
        if table in ws.tables():
            assert loader.keys(table) == norm_keys(expected_keys(ws, table)), table
    refused = [t for t, status in log if status == 429]
    assert {s for _, s in log if s >= 400} <= {429}, log
    # after adaptation: what the server saw from 2 s after the first 429 on
    settled = [s for t, s in log if refused and t > refused[0] + 2.0]
    return {
        "stats": stats,
        "requests": len(log),
        "refused": len(refused),
        "settled": len(settled),
        "settled_refused": settled.count(429),
    }


@pytest.mark.parametrize(
    "grant, tables",
    [
        (5, MORE_TABLES),
        (2, LOAD_TABLES),
        (1, "campaigns,campaign_actions,campaign_action_metrics"),
    ],
    ids=["grant-5", "grant-2", "grant-1"],
)
def test_default_client_completes_against_a_smaller_budget(tmp_path, grant, tables):
    result = load_against(tmp_path, grant, tables, rate_limit=10.0)  # the default, as a user runs it
    stats = result["stats"]
    assert stats.rate_decreases >= 1 and stats.adapted_rate is not None
    assert stats.adapted_rate <= grant * 1.1, stats.adapted_rate
    assert result["settled"] >= 8, result
    assert result["settled_refused"] <= max(1, result["settled"] // 20), result


def test_a_high_configured_rate_adapts_to_the_server(tmp_path):
    result = load_against(tmp_path, 10, MORE_TABLES, rate_limit=50.0)
    stats = result["stats"]
    assert stats.configured_rate == 50 and 8 <= stats.adapted_rate <= 11, stats.adapted_rate
    assert result["settled_refused"] <= max(1, result["settled"] // 20), result
