"""HTTP server speaking Customer.io's App API against a :class:`Workspace`.

Routing and parameter validation come from ``spec_facts.json`` (shipped next to this file). Requests are
handled on daemon threads with HTTP/1.1 keep-alive; JSON is serialised with orjson.
"""

from __future__ import annotations

import json
import socket
import struct
import threading
import time
from bisect import bisect_left
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import orjson

from .workspace import Workspace

SPEC_FACTS = json.loads(Path(__file__).with_name("spec_facts.json").read_text())["operations"]
LOOPBACK = {"127.0.0.1", "localhost", "::1"}
SEND_PREFIXES = ("/api/v1/", "/api/v2/", "/cdp/v1/")


@dataclass(frozen=True)
class NoFault:
    """The decision for every request when no fault injector is set (a fault injector's ``decide`` answers
    an object with these fields; the tests bring one)."""

    status: int | None = None
    reset: bool = False
    truncate: bool = False
    sleep: float = 0.0


NO_FAULT = NoFault()


class ApiError(Exception):
    """An error answered with the App API's ``{"errors":[...]}`` envelope."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


def error_body(status: int, detail: str) -> bytes:
    return orjson.dumps({"errors": [{"detail": detail, "status": str(status)}]})


@dataclass
class Stats:
    """Thread-safe request statistics."""

    requests: int = 0
    by_operation: dict[str, int] = field(default_factory=dict)
    status_counts: dict[int, int] = field(default_factory=dict)
    rate_limited: int = 0
    timestamps: list[float] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def record_arrival(self, op: str) -> None:
        with self._lock:
            self.requests += 1
            self.by_operation[op] = self.by_operation.get(op, 0) + 1
            self.timestamps.append(time.monotonic())

    def record_status(self, status: int) -> None:
        with self._lock:
            self.status_counts[status] = self.status_counts.get(status, 0) + 1
            if status == 429:
                self.rate_limited += 1

    def max_in_window(self, window: float = 1.0) -> int:
        """Most requests seen in any rolling ``window``-second interval."""
        with self._lock:
            ts = list(self.timestamps)
        best = 0
        lo = 0
        for hi, t in enumerate(ts):
            while t - ts[lo] >= window:
                lo += 1
            best = max(best, hi - lo + 1)
        return best

    def reset(self) -> None:
        with self._lock:
            self.requests = 0
            self.by_operation.clear()
            self.status_counts.clear()
            self.rate_limited = 0
            self.timestamps.clear()


class RateLimiter:
    """At most ``n`` accepted requests in any rolling 1 s window."""

    def __init__(self, n: float) -> None:
        self.n = int(n)
        self._times: deque[float] = deque()
        self._lock = threading.Lock()

    def allow(self) -> bool:
        now = time.monotonic()
        with self._lock:
            while self._times and now - self._times[0] >= 1.0:
                self._times.popleft()
            if len(self._times) >= self.n:
                return False
            self._times.append(now)
            return True


@dataclass
class Route:
    key: str
    method: str
    segments: list[str]
    facts: dict
    literals: int


def _build_routes() -> dict[tuple[str, int], list[Route]]:
    table: dict[tuple[str, int], list[Route]] = {}
    for key, facts in SPEC_FACTS.items():
        segs = facts["path"].strip("/").split("/")
        r = Route(key, facts["method"], segs, facts, sum(1 for s in segs if not s.startswith("{")))
        table.setdefault((r.method, len(segs)), []).append(r)
    for routes in table.values():
        routes.sort(key=lambda r: -r.literals)
    return table


ROUTES = _build_routes()


def match_route(method: str, path: str) -> tuple[Route, dict[str, str]] | None:
    """Match a raw path against the spec templates; path params are percent-decoded per segment."""
    raw = path.strip("/").split("/")
    for r in ROUTES.get((method, len(raw)), ()):
        params = {}
        for tmpl, seg in zip(r.segments, raw, strict=True):
            if tmpl.startswith("{"):
                params[tmpl[1:-1]] = unquote(seg)
            elif tmpl != seg:
                break
        else:
            return r, params
    return None


def _convert(name: str, value: str, facts: dict, where: str) -> Any:
    typ = facts.get("type")
    if typ == "integer":
        try:
            v: Any = int(value)
        except ValueError:
            raise ApiError(400, f"invalid {where} parameter {name}: {value!r} is not an integer") from None
        if "maximum" in facts and v > facts["maximum"]:
            raise ApiError(400, f"{name} must be at most {facts['maximum']}")
        if name == "limit" and v < 1:
            raise ApiError(400, "limit must be at least 1")
        return v
    if typ == "boolean":
        if value.lower() not in ("true", "false"):
            raise ApiError(400, f"invalid {where} parameter {name}: expected true or false")
        return value.lower() == "true"
    enum = facts.get("enum")
    if enum and value not in [str(e) for e in enum]:
        if not (name == "type" and value.startswith(("_o:", "_r:"))):
            raise ApiError(400, f"invalid value for {name}: {value!r}")
    return value


def validate(route: Route, path_params: dict[str, str], query: list[tuple[str, str]]) -> dict[str, Any]:
    """Check query/path params against the spec facts; returns converted params with defaults."""
    qfacts = route.facts["query"]
    out: dict[str, Any] = {}
    for name, value in query:
        if name not in qfacts:
            raise ApiError(400, f"unknown query parameter: {name}")
        out[name] = _convert(name, value, qfacts[name], "query")
    for name, facts in qfacts.items():
        if name not in out:
            if facts.get("required"):
                raise ApiError(400, f"missing required query parameter: {name}")
            if "default" in facts:
                out[name] = facts["default"]
    if "tz" in out:
        try:
            ZoneInfo(out["tz"])
        except (ZoneInfoNotFoundError, ValueError):
            raise ApiError(400, f"invalid tz: {out['tz']!r}") from None
    for name, facts in route.facts["path_params"].items():
        value = path_params.get(name, "")
        if value == "":
            raise ApiError(400, f"missing path parameter {name}")
        if facts.get("type") == "integer" or facts.get("enum"):
            path_params[name] = _convert(name, value, {k: v for k, v in facts.items() if k != "maximum"}, "path")
    return out


@dataclass
class Ctx:
    """One validated request, as handlers see it."""

    ws: Workspace
    server: SimulatorServer
    op: str
    params: dict[str, Any]
    path: dict[str, Any]
    body: Any


@dataclass
class Stream:
    """A streamed (chunked) non-JSON response."""

    status: int
    content_type: str
    chunks: Iterator[bytes]
    headers: dict[str, str] = field(default_factory=dict)


class SimulatorServer:
    """Local HTTP server for a workspace (see CONTRACT.md)."""

    def __init__(self, ws: Workspace, api_key: str = "sim-key", host: str = "127.0.0.1", port: int = 0,
                 rate_limit: float | None = None, faults: Any = None,
                 export_url_ttl: float = 900, ssl_context: Any = None) -> None:
        if host not in LOOPBACK:
            raise ValueError("the simulator binds to the loopback interface only")
        from .exports import ExportStore
        from .handlers import HANDLERS

        self.ws = ws
        self.workspace = ws  # alias
        self.api_key = api_key
        self.host = "127.0.0.1" if host == "localhost" else host
        self.port = port
        self.rate_limit = rate_limit
        self.limiter = RateLimiter(rate_limit) if rate_limit else None
        # optional fault injector: ``decide(operation, operation_id)`` -> a decision like ``NoFault``, and
        # ``config.repeat_cursor`` (an operation whose ``next`` never changes)
        self.faults = faults
        self.export_url_ttl = export_url_ttl
        self.ssl_context = ssl_context  # an ssl.SSLContext: serve HTTPS (clients that only speak HTTPS)
        self.exports = ExportStore(self)
        self.handlers: dict[str, Callable[[Ctx], Any]] = HANDLERS
        self.stats = Stats()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._ref = 0
        self._ref_lock = threading.Lock()

    @property
    def base_url(self) -> str:
        return f"{'https' if self.ssl_context else 'http'}://{self.host}:{self.port}"

    def start(self) -> SimulatorServer:
        handler = type("BoundHandler", (_Handler,), {"sim": self})
        httpd = ThreadingHTTPServer((self.host, self.port), handler)
        httpd.daemon_threads = True
        if self.ssl_context is not None:
            httpd.socket = self.ssl_context.wrap_socket(httpd.socket, server_side=True)
        self._httpd = httpd
        self.port = httpd.server_address[1]
        self._thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.1},
                                        name=f"cio-sim-{self.port}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def serve_forever(self) -> None:
        """Block until interrupted (used by the CLI)."""
        self.start()
        try:
            while True:
                time.sleep(3600)
        finally:
            self.stop()

    def __enter__(self) -> SimulatorServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def next_ref(self) -> str:
        with self._ref_lock:
            self._ref += 1
            return f"{self._ref:06x}"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # headers and body go out in separate writes: with Nagle's algorithm the body waits for the client's
    # delayed ACK of the headers (~40 ms per keep-alive response), which no real API server adds
    disable_nagle_algorithm = True
    sim: SimulatorServer  # set on the bound subclass
    server_version = "cio-simulator/1.0"
    sys_version = ""

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet by default
        pass

    def do_GET(self) -> None:  # noqa: N802
        self._dispatch("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._dispatch("POST")

    def do_PUT(self) -> None:  # noqa: N802
        self._dispatch("PUT")

    def do_DELETE(self) -> None:  # noqa: N802
        self._dispatch("DELETE")

    # ------------------------------------------------------------------
    def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None,
              truncate: bool = False) -> None:
        self.sim.stats.record_status(status)
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        if truncate:
            self.send_header("Connection", "close")
        self.end_headers()
        if truncate:
            self.wfile.write(body[: max(1, len(body) // 2)])
            self.close_connection = True
        else:
            self.wfile.write(body)

    def _error(self, status: int, detail: str, headers: dict[str, str] | None = None) -> None:
        self._send(status, error_body(status, detail), headers)

    def _reset(self) -> None:
        self.sim.stats.record_status(0)
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        self.close_connection = True

    def _send_stream(self, resp: Stream) -> None:
        self.sim.stats.record_status(resp.status)
        self.send_response(resp.status)
        self.send_header("Content-Type", resp.content_type)
        for k, v in resp.headers.items():
            self.send_header(k, v)
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for chunk in resp.chunks:
            if chunk:
                self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        self.wfile.write(b"0\r\n\r\n")

    def _read_body(self) -> bytes:
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n > 0 else b""

    def _dispatch(self, method: str) -> None:
        sim = self.sim
        url = urlsplit(self.path)
        raw_body = self._read_body()
        if url.path.startswith(SEND_PREFIXES):  # Track and Data Pipelines APIs (simulator/send_api.py)
            from .send_api import dispatch as send_dispatch

            return send_dispatch(self, method, url, raw_body)
        if url.path.startswith("/_files/"):
            sim.stats.record_arrival(f"{method} /_files/{{token}}")
            resp = sim.exports.serve_file(url.path[len("/_files/"):])
            if isinstance(resp, Stream):
                self._send_stream(resp)
            else:
                status, body = resp
                self._send(status, body, {"Content-Type": "application/xml"})
            return
        matched = match_route(method, url.path)
        route, path_params = matched if matched else (None, {})
        op = route.key if route else f"{method} {url.path}"
        sim.stats.record_arrival(op)
        faults = sim.faults
        decision = faults.decide(op, route.facts.get("operation_id") if route else None) if faults else NO_FAULT
        if decision.status == 401:
            return self._error(401, "Unauthorized request")
        if decision.status == 429:
            return self._rate_limited()
        auth = self.headers.get("Authorization", "")
        if auth != f"Bearer {sim.api_key}":
            return self._error(401, "Unauthorized request")
        if sim.limiter is not None and not sim.limiter.allow():
            return self._rate_limited()
        if decision.reset:
            return self._reset()
        if decision.sleep:
            time.sleep(decision.sleep)
        if decision.status:
            return self._error(decision.status, {500: "internal server error", 502: "bad gateway",
                                                 503: "service unavailable"}[decision.status])
        if route is None:
            return self._error(404, f"no such endpoint: {method} {url.path}")
        try:
            params = validate(route, path_params, parse_qsl(url.query, keep_blank_values=True))
            body = None
            if method == "POST":
                try:
                    body = orjson.loads(raw_body) if raw_body else {}
                except orjson.JSONDecodeError:
                    raise ApiError(400, "request body is not valid JSON") from None
            ctx = Ctx(sim.ws, sim, op, params, path_params, body)
            with sim.ws.lock:
                result = sim.handlers[route.key](ctx)
        except ApiError as e:
            return self._error(e.status, e.detail)
        if isinstance(result, Stream):
            return self._send_stream(result)
        if faults and isinstance(result, dict) and "next" in result and faults.config.repeat_cursor in (
                route.key, route.facts.get("operation_id")):
            result["next"] = params.get("start") or result["next"]
        self._send(200, orjson.dumps(result), truncate=decision.truncate)

    def _rate_limited(self) -> None:
        n = self.sim.limiter.n if self.sim.limiter else 10
        self._error(429, f"rate limited to {n} requests per 1s (reference {self.sim.next_ref()})",
                    {"Retry-After": "1"})


def bisect_desc_start(arr, cursor: int | None, hi: int) -> int:
    """Position just past the newest element ``<= cursor`` (and ``< hi``) in an ascending array."""
    top = hi if cursor is None else min(hi, cursor + 1)
    return bisect_left(arr, top)
