"""The send APIs of the simulated workspace: Track (``/api/v1``, ``/api/v2``) and Data Pipelines (``/cdp/v1``).

``SimulatorServer`` hands every request whose path starts with one of :data:`PREFIXES` to :func:`dispatch`
(the App API routing is untouched). The send APIs have their own credentials, rate limit and statistics,
set per server with :func:`configure` (defaults: the demo credentials, no rate limit):

    from customerio_source.simulator.send_api import configure
    send = configure(server, site_id="site", track_api_key="key", write_key="wk", track_rate_limit=100)
    send.stats.requests, send.stats.items, send.stats.rate_limited, send.duplicates

Their effects land in the server's :class:`Workspace` (``simulator/pushed.py``) and are read back through the
App API. The Data Pipelines API is served under ``/cdp`` (its root is ``<base_url>/cdp/v1``): the App API
owns ``/v1``. Facts validated against come from ``send_spec_facts.json`` (``gen_send_facts.py``).
"""

from __future__ import annotations

import base64
import gzip
import json
import threading
import time
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, unquote

import orjson

from .server import RateLimiter  # the App API side's rolling 1 s window, shared

if TYPE_CHECKING:
    from .server import SimulatorServer

FACTS = json.loads(Path(__file__).with_name("send_spec_facts.json").read_text())
LIMITS = FACTS["limits"]
PREFIXES = ("/api/v1/", "/api/v2/", "/cdp/v1/")
DEMO_SITE_ID = "demo-site-id"
DEMO_TRACK_API_KEY = "demo-track-api-key"
DEMO_WRITE_KEY = "demo-cdp-write-key"


class SendError(Exception):
    """An answer other than 200 (status, JSON body, extra headers)."""

    def __init__(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        super().__init__(status)
        self.status, self.body, self.headers = status, body, headers or {}


def meta_errors(status: int, *messages: str) -> SendError:
    """The Track API's error envelope (``{"meta": {"errors": [...]}}``)."""
    return SendError(status, {"meta": {"errors": list(messages)}})


@dataclass
class SendStats:
    requests: int = 0
    items: int = 0
    rejected_items: int = 0
    rate_limited: int = 0
    by_path: dict[str, int] = field(default_factory=dict)
    status_counts: dict[int, int] = field(default_factory=dict)
    request_bytes: list[int] = field(default_factory=list)
    timestamps: list[float] = field(default_factory=list)


@dataclass
class SendApis:
    """Credentials, limits and memory of one server's send APIs."""

    site_id: str = DEMO_SITE_ID
    track_api_key: str = DEMO_TRACK_API_KEY
    write_key: str = DEMO_WRITE_KEY
    region: str = "us"
    track_rate_limit: float | None = None
    record_events: bool = True
    """False: events are validated and de-duplicated but not kept as activities (benchmarks of 1M events)."""
    latency: float = 0.0
    """Seconds each Track / Data Pipelines request waits before it is handled (crash tests)."""
    stats: SendStats = field(default_factory=SendStats)
    seen_event_ids: set[str] = field(default_factory=set)
    duplicates: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    limiter: RateLimiter | None = None

    def __post_init__(self) -> None:
        self.limiter = RateLimiter(self.track_rate_limit) if self.track_rate_limit else None

    def first_sight(self, event_id: str | None) -> bool:
        """Whether an event id is new (an event whose id was received before is ignored)."""
        if not event_id:
            return True
        if event_id in self.seen_event_ids:
            self.duplicates += 1
            return False
        self.seen_event_ids.add(event_id)
        return True


_STATE: weakref.WeakKeyDictionary[SimulatorServer, SendApis] = weakref.WeakKeyDictionary()
_STATE_LOCK = threading.Lock()


def configure(server: SimulatorServer, **settings: Any) -> SendApis:
    """Set the send APIs' credentials and limits of ``server`` (a fresh state: counters and ids reset)."""
    with _STATE_LOCK:
        state = _STATE[server] = SendApis(**settings)
    return state


def state_of(server: SimulatorServer) -> SendApis:
    with _STATE_LOCK:
        state = _STATE.get(server)
        if state is None:
            state = _STATE[server] = SendApis()
    return state


def basic_auth(header: str) -> tuple[str, str] | None:
    if not header.startswith("Basic "):
        return None
    try:
        user, _, password = base64.b64decode(header[6:]).decode().partition(":")
    except (ValueError, UnicodeDecodeError):
        return None
    return user, password


def dispatch(handler: Any, method: str, url: Any, raw_body: bytes) -> None:
    """Answer one send-API request on ``handler`` (the server's request handler)."""
    from . import cdp_api, track_api

    sim: SimulatorServer = handler.sim
    state = state_of(sim)
    path = url.path
    is_cdp = path.startswith("/cdp/v1/")
    with state.lock:
        state.stats.requests += 1
        key = f"{method} {path}"
        state.stats.by_path[key] = state.stats.by_path.get(key, 0) + 1
        state.stats.timestamps.append(time.monotonic())
        state.stats.request_bytes.append(len(raw_body))
    if state.latency:
        time.sleep(state.latency)
    try:
        if handler.headers.get("Content-Encoding", "") == "gzip" and raw_body:
            raw_body = gzip.decompress(raw_body)
        auth = basic_auth(handler.headers.get("Authorization", ""))
        if is_cdp:
            if auth is None or auth[0] != state.write_key:
                # the official library reads `code` and `message` from an error answer
                raise SendError(
                    401,
                    {
                        "code": "unauthorized",
                        "message": "Unauthorized request",
                        "meta": {"errors": ["Unauthorized request"]},
                    },
                )
            body = _json(raw_body)
            strict = handler.headers.get("X-Strict-Mode", "") == "1"
            with sim.ws.lock:
                result = cdp_api.handle(sim.ws, state, path[len("/cdp/v1") :], body, len(raw_body), strict)
        else:
            if auth is None or auth != (state.site_id, state.track_api_key):
                raise meta_errors(401, "Unauthorized request")
            if state.limiter is not None:
                with state.lock:
                    allowed = state.limiter.allow()
                if not allowed:
                    with state.lock:
                        state.stats.rate_limited += 1
                    raise SendError(429, {"meta": {"errors": ["rate limited"]}}, {"Retry-After": "1"})
            query = dict(parse_qsl(url.query, keep_blank_values=True))
            body = _json(raw_body) if method in ("POST", "PUT") else {}
            with sim.ws.lock:
                result = track_api.handle(sim.ws, state, method, unquote_segments(path), body, query, len(raw_body))
        status, payload = result if isinstance(result, tuple) else (200, result)
    except SendError as exc:
        status, payload = exc.status, exc.body
        with state.lock:
            state.stats.status_counts[status] = state.stats.status_counts.get(status, 0) + 1
        return handler._send(status, orjson.dumps(payload), exc.headers)
    with state.lock:
        state.stats.status_counts[status] = state.stats.status_counts.get(status, 0) + 1
    handler._send(status, orjson.dumps(payload))


def unquote_segments(path: str) -> list[str]:
    return [unquote(s) for s in path.strip("/").split("/")]


def _json(raw: bytes) -> Any:
    if not raw:
        return {}
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise meta_errors(400, "request body is not valid JSON") from None


def utf8_len(value: Any) -> int:
    return len(value.encode()) if isinstance(value, str) else len(orjson.dumps(value))
