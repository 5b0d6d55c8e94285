"""One request-rate limiter shared by every request of a run (all threads, retries included).

Customer.io's limit is per workspace and shared by every app using it, so the rate this connector may use
is not known in advance: ``rate`` is a ceiling, and the limiter finds the budget it actually has.

- **Spacing.** Requests go one every ``(period + margin) / rate`` seconds, evenly, across all threads:
  callers queue, the first in line sleeps until the next free slot and takes it, the others wait their turn.
- **Pauses.** :meth:`RateLimiter.pause` (a 429's ``Retry-After``) holds back every caller, including the
  one already sleeping towards its slot: it wakes, sees the pause, and waits for the first slot after it.
- **Order.** Callers are served by (priority, time of their request's first attempt): the retry of a
  request that got a 429 (``acquire(priority=True)``) goes before requests that were not sent yet.
- **Decrease.** :meth:`RateLimiter.rate_limited` reports a 429 with the time its request was sent. A 429
  of a request sent after the last decrease starts a new round: the rate drops to ``decrease`` times the
  rate that request was sent at, or, if lower, to the number of requests the server accepted in the
  ``period`` before it (the budget the server just showed; the period reaches back half a slot further, for
  jitter). 429s of requests sent before the last decrease belong to the round already counted, and a 429
  with no accepted request in the period before it (a blanket refusal, not a budget) only pauses.
- **Increase.** :meth:`RateLimiter.accepted` reports every answered request. After each window of
  ``max(10, 2 * rate)`` of them with no new round, the rate rises: below the rate of the last 429 it closes
  half the gap, near and above it it probes, with a step that starts small and doubles each window without
  a 429; never above the configured ``rate``.
- **Off.** ``rate=None`` (or 0) disables limiting until the first 429 round: limiting then starts from the
  rate of requests observed in the period before it, and may grow without a ceiling.

``rate`` (now), ``decreases``, ``min_rate``, ``throttled`` (429s reported) and :meth:`RateLimiter.history`
tell what happened; ``clock``/``sleep`` are injectable for tests.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections import deque
from collections.abc import Callable

MIN_WINDOW = 10  # successes per increase window, at least
WINDOW_SECONDS = 2.0  # ... and about this many seconds of requests at the current rate
PLATEAU = 0.02  # within this fraction of the last 429's rate, stop closing the gap and probe
PROBE_STEP = 0.01  # the first probe step, as a fraction of the last 429's rate (doubles each window)


class RateLimiter:
    """Space requests evenly across all threads, and adapt the rate to the 429s the server answers."""

    def __init__(
        self,
        rate: float | None = 10.0,
        period: float = 1.0,
        margin: float = 0.04,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        decrease: float = 0.8,
        floor: float = 0.1,
    ) -> None:
        if floor <= 0 or not 0 < decrease < 1:
            raise ValueError("floor must be positive and decrease between 0 and 1")
        self.max_rate = rate if rate and rate > 0 else None
        self.period = period
        self.margin = margin
        self.decrease = decrease
        self.floor = floor
        self._clock = clock
        self._sleep = sleep
        self._cond = threading.Condition(threading.Lock())
        self._queue: list[tuple[int, float, int]] = []
        self._order = itertools.count()
        self._last_grant = float("-inf")
        self._paused_until = float("-inf")
        self._rate = self.max_rate
        self._history: list[tuple[float, float | None]] = [(float("-inf"), self._rate)]
        self._sent: deque[float] = deque()  # grant times within the last few periods
        self._refused: deque[float] = deque()  # send times of 429s within the last few periods
        self._ceiling: float | None = None  # the rate the last round showed too high (what recovery aims at)
        self._decreased_at = float("-inf")
        self._successes = 0
        self._probes = 0
        self.decreases = 0  # rounds of 429s that lowered the rate
        self.throttled = 0  # 429s reported
        self.min_rate: float | None = None  # the lowest rate it went down to (None: never lowered)

    # -- what happened -------------------------------------------------------------------------------
    @property
    def rate(self) -> float | None:
        """The rate in force now (requests per ``period``, before the margin); None when limiting is off."""
        return self._rate

    @property
    def interval(self) -> float:
        """Seconds between two slots at the current rate (0 when limiting is off)."""
        return (self.period + self.margin) / self._rate if self._rate else 0.0

    @property
    def waiting(self) -> int:
        """Callers queued in :meth:`acquire` right now."""
        with self._cond:
            return len(self._queue)

    def now(self) -> float:
        """The limiter's clock (send times passed back to it must come from here)."""
        return self._clock()

    def history(self) -> list[tuple[float, float | None]]:
        """(time, rate) at each change of the rate, oldest first (the first entry holds the initial rate)."""
        with self._cond:
            return list(self._history)

    # -- slots ---------------------------------------------------------------------------------------
    def acquire(self, priority: bool = False, since: float | None = None) -> float:
        """Block until this caller's slot comes; return the seconds waited.

        ``priority`` puts the caller before every caller without it (the retry of a 429'd request);
        ``since`` (the time of the request's first attempt) orders callers of one priority, first come first.
        """
        with self._cond:
            start = self._clock()
            if self._rate is None and not self._queue and self._paused_until <= start:
                return self._grant(start, start)
            key = (0 if priority else 1, start if since is None else since, next(self._order))
            heapq.heappush(self._queue, key)
            try:
                return self._wait_turn(key, start)
            finally:
                if key in self._queue:  # interrupted while waiting
                    self._queue.remove(key)
                    heapq.heapify(self._queue)
                    self._cond.notify_all()

    def _wait_turn(self, key: tuple[int, float, int], start: float) -> float:
        """Wait to be first in line, then sleep to the next free slot; re-check after every sleep."""
        target: float | None = None
        while True:
            if self._queue[0] != key:
                target = None
                self._cond.wait(timeout=1.0)
                continue
            now = self._clock()
            slot = max(now, self._last_grant + self.interval, self._paused_until)
            if slot <= now or (target is not None and slot <= target):
                heapq.heappop(self._queue)
                return self._grant(max(now, slot), start)
            target = slot
            self._cond.release()
            try:
                self._sleep(slot - now)
            finally:
                self._cond.acquire()

    def _grant(self, at: float, start: float) -> float:
        """Give the slot at ``at`` to the caller first in line (the lock is held)."""
        self._last_grant = at
        self._sent.append(at)
        _prune(self._sent, at - self._memory())
        self._cond.notify_all()
        return max(0.0, at - start)

    def pause(self, seconds: float) -> None:
        """Hold every caller back for ``seconds`` (after a 429 with Retry-After)."""
        with self._cond:
            self._paused_until = max(self._paused_until, self._clock() + seconds)
            self._cond.notify_all()

    # -- adapting ------------------------------------------------------------------------------------
    def rate_limited(self, sent_at: float, retry_after: float | None = None) -> None:
        """A request sent at ``sent_at`` got a 429: pause every caller ``retry_after`` s, maybe lower the rate."""
        with self._cond:
            now = self._clock()
            self.throttled += 1
            if retry_after:
                self._paused_until = max(self._paused_until, now + retry_after)
            sent_rate = self._rate_at(sent_at)
            accepted, sent = self._recent(sent_at, sent_rate)
            self._refused.append(sent_at)
            _prune(self._refused, now - self._memory())
            if sent_at > self._decreased_at and accepted > 0:
                self._lower(sent_rate or sent / self.period, accepted / self.period, now)
            self._cond.notify_all()

    def accepted(self, sent_at: float) -> None:
        """A request sent at ``sent_at`` was answered (not 429): count it towards the next increase."""
        with self._cond:
            if self._rate is None or sent_at <= self._decreased_at:
                return
            if self.max_rate is not None and self._rate >= self.max_rate:
                return
            self._successes += 1
            if self._successes >= max(MIN_WINDOW, WINDOW_SECONDS * self._rate / self.period):
                self._successes = 0
                self._set_rate(self._raised(self._rate), self._clock())

    def _recent(self, sent_at: float, rate: float | None) -> tuple[int, int]:
        """(accepted, sent) among the requests sent in the period before ``sent_at``, the 429'd one excluded.

        The period reaches back half a slot further: a request sent just over a period earlier may have
        arrived inside the server's window (jitter), and evenly spaced requests would otherwise count one short.
        """
        since = sent_at - self.period - ((self.period + self.margin) / rate / 2 if rate else 0.0)
        sent = sum(1 for t in self._sent if since < t <= sent_at)
        refused = sum(1 for t in self._refused if since < t <= sent_at)
        return max(0, sent - 1 - refused), max(1, sent)

    def _lower(self, sent_rate: float, accepted_rate: float, now: float) -> None:
        """Start a new round: the rate drops below the one the 429'd request was sent at.

        The server just accepted ``accepted_rate`` and refused more: a rate that spaces that many requests
        over ``period + margin`` is at its edge, so the next probe aims there, not at a far higher rate.
        """
        self._ceiling = min(sent_rate, accepted_rate * (1 + self.margin / self.period))
        self._decreased_at = now
        self._successes = 0
        self._probes = 0
        self.decreases += 1
        new = max(self.floor, min(sent_rate * self.decrease, accepted_rate))
        self._set_rate(new, now)
        self.min_rate = new if self.min_rate is None else min(self.min_rate, new)

    def _raised(self, rate: float) -> float:
        """The rate after a window without a 429: close half the gap to the last 429's rate, then probe."""
        ceiling = self._ceiling or rate
        if rate < ceiling * (1 - PLATEAU):
            new = rate + (ceiling - rate) / 2
        else:
            new = max(rate, ceiling) + ceiling * PROBE_STEP * 2**self._probes
            self._probes += 1
        return min(new, self.max_rate) if self.max_rate is not None else new

    def _memory(self) -> float:
        """How far back send times are kept: a period and a slot at the lowest rate, with room to spare."""
        return 2 * self.period + (self.period + self.margin) / self.floor

    def _set_rate(self, rate: float, now: float) -> None:
        self._rate = rate
        self._history.append((now, rate))
        if len(self._history) > 4096:
            del self._history[1:2048]

    def _rate_at(self, when: float) -> float | None:
        """The rate in force at ``when``."""
        for changed, rate in reversed(self._history):
            if changed <= when:
                return rate
        return self._history[0][1]


def _prune(times: deque[float], before: float) -> None:
    while times and times[0] <= before:
        times.popleft()
