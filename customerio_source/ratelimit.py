"""One request-rate limiter shared by every request of a run (all threads, retries included)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class RateLimiter:
    """Space requests evenly: one every ``(period + margin) / rate`` seconds, across all threads.

    Customer.io counts requests per workspace in (about) one-second windows. Bursts of ``rate`` requests
    would sit right at the limit, and any jitter (a busy client, a busy server, the network) would push two
    bursts into one of the server's windows; evenly spaced requests stay under it with room to spare, while
    the sustained rate stays close to ``rate`` (10/s with the default margin gives 9.6/s). Each caller
    reserves the next free slot, so threads never race for the same one. ``rate=None`` (or 0) disables
    limiting. ``clock``/``sleep`` are injectable for tests.
    """

    def __init__(
        self,
        rate: float | None = 10.0,
        period: float = 1.0,
        margin: float = 0.04,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.rate = rate if rate and rate > 0 else None
        self.interval = (period + margin) / self.rate if self.rate else 0.0
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._next_slot = float("-inf")
        self._paused_until = float("-inf")

    def pause(self, seconds: float) -> None:
        """Hold every thread back for ``seconds`` (after a 429 with Retry-After)."""
        with self._lock:
            self._paused_until = max(self._paused_until, self._clock() + seconds)
            self._next_slot = max(self._next_slot, self._paused_until)

    def acquire(self) -> float:
        """Block until this caller's slot comes; return the seconds waited."""
        with self._lock:
            now = self._clock()
            slot = max(now, self._next_slot, self._paused_until)
            if self.rate is not None:
                self._next_slot = slot + self.interval
        wait = slot - now
        if wait > 0:
            self._sleep(wait)
        return max(0.0, wait)
