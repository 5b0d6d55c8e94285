"""A fake monotonic clock for rate-limiter tests: time moves only when something sleeps."""

from __future__ import annotations


class FakeClock:
    """``clock()`` is the time now; ``clock.sleep(s)`` records ``s`` and moves time on by it."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += max(0.0, seconds)
