"""One request-rate limiter shared by every request of a run (all threads, retries included)."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable


class RateLimiter:
    """Allow at most ``rate`` requests in any rolling window of ``period + margin`` seconds.

    Customer.io counts requests per workspace in (about) one-second windows; the small margin keeps the
    client just under the limit despite network jitter, so 429s stay rare while the sustained rate stays
    close to ``rate`` per second. ``rate=None`` (or 0) disables limiting. ``clock``/``sleep`` are injectable
    for tests.
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
        self.window = period + margin
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._sent: deque[float] = deque()
        self._paused_until = 0.0
        # requests per window: a fractional rate (e.g. 9.5/s) becomes 19 per 2 s
        if self.rate is not None:
            scale = 1.0
            while abs(self.rate * scale - round(self.rate * scale)) > 1e-9 and scale < 100:
                scale += 1.0
            self._capacity = max(1, int(round(self.rate * scale)))
            self.window = period * scale + margin

    def pause(self, seconds: float) -> None:
        """Hold every thread back for ``seconds`` (after a 429 with Retry-After)."""
        with self._lock:
            self._paused_until = max(self._paused_until, self._clock() + seconds)

    def acquire(self) -> float:
        """Block until a request may be sent; return the seconds waited."""
        waited = 0.0
        while True:
            with self._lock:
                now = self._clock()
                wait = self._paused_until - now
                if wait <= 0 and self.rate is not None:
                    while self._sent and now - self._sent[0] >= self.window:
                        self._sent.popleft()
                    if len(self._sent) >= self._capacity:
                        wait = self._sent[0] + self.window - now
                if wait <= 0:
                    if self.rate is not None:
                        self._sent.append(now)
                    return waited
            self._sleep(wait)
            waited += wait
