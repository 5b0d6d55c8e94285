"""Fault injection configuration and the deterministic per-request decision."""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass, field


@dataclass
class FaultConfig:
    """All faults are off by default. Decisions are deterministic for a seed and request order.

    - ``error_rate``: fraction of requests answered 500/502/503.
    - ``storm_after`` / ``storm_seconds``: after that many requests, answer every request 429 for that long.
    - ``latency`` / ``latency_rate``: sleep ``latency`` seconds before answering that fraction of requests.
    - ``reset_rate``: fraction of requests whose connection is closed without a response.
    - ``truncate_rate``: fraction of JSON responses cut short (the full Content-Length is announced).
    - ``repeat_cursor``: an operation (``"GET /v1/messages"`` or its operationId) whose ``next`` never changes.
    - ``revoke_after``: answer 401 to every request after this many requests.
    - ``operations``: if set, rate-based faults only hit these operations (keys or operationIds).
    """

    seed: int = 0
    error_rate: float = 0.0
    storm_after: int | None = None
    storm_seconds: float = 0.0
    latency: float = 0.0
    latency_rate: float = 0.0
    reset_rate: float = 0.0
    truncate_rate: float = 0.0
    repeat_cursor: str | None = None
    revoke_after: int | None = None
    operations: set[str] | None = None


@dataclass
class FaultDecision:
    """What to do to one request."""

    status: int | None = None  # 5xx or 429 (storm) or 401 (revoked)
    reset: bool = False
    truncate: bool = False
    sleep: float = 0.0


@dataclass
class FaultState:
    """Mutable, thread-safe fault bookkeeping for one server."""

    config: FaultConfig
    count: int = 0
    storm_until: float | None = None
    _rng: random.Random = field(init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.config.seed)

    def decide(self, op_key: str, op_id: str | None) -> FaultDecision:
        """Decide the fault (if any) for the next request, in arrival order."""
        cfg = self.config
        d = FaultDecision()
        with self._lock:
            self.count += 1
            n = self.count
            if cfg.revoke_after is not None and n > cfg.revoke_after:
                d.status = 401
                return d
            if cfg.storm_after is not None and cfg.storm_seconds > 0:
                if self.storm_until is None and n > cfg.storm_after:
                    self.storm_until = time.monotonic() + cfg.storm_seconds
                if self.storm_until is not None and time.monotonic() < self.storm_until:
                    d.status = 429
                    return d
            if cfg.operations is not None and op_key not in cfg.operations and op_id not in cfg.operations:
                return d
            # always draw the same number of values so decisions stay aligned with request order
            r_reset, r_err, r_code, r_lat, r_trunc = (self._rng.random() for _ in range(5))
        if r_reset < cfg.reset_rate:
            d.reset = True
        elif r_err < cfg.error_rate:
            d.status = (500, 502, 503)[int(r_code * 3)]
        elif r_trunc < cfg.truncate_rate:
            d.truncate = True
        if r_lat < cfg.latency_rate:
            d.sleep = cfg.latency
        return d
