"""The simulated workspace in its own process, with an admin port for the benchmark.

``python -m benchmarks.simserver --scale small [--rate-limit 10] [--api-key K] [--tables all]
[--render-deliveries auto|all|none]`` serves the App API on one loopback port and a tiny admin API on
another, then prints one JSON line ``{"api": ..., "admin": ..., "build_seconds": ..., ...}`` and serves until
stdin closes or it is terminated.

Deliveries are serialized ahead of the requests (``--render-deliveries all``; ``auto`` does it up to
``RENDER_ALL_MAX`` deliveries, every scale but ``stress``): ~700 bytes each, which at the stress scale's 5.2M
deliveries would be ~4 GB. Above that (or with ``none``) each page serializes its deliveries when it is
requested, through the workspace's bounded cache (``DELIVERY_CACHE_SIZE`` records). Every parent's metric
timestamps are indexed at start and after each change step (``ws.render_metrics()``, whatever the mode), so a
metrics request costs a few bisections per bucket instead of a walk over the parent's deliveries; every live
segment's members are computed then too (``ws.render_segment_members()``), not on a segment's first page.

Admin endpoints (JSON):

* ``GET /_admin/floor`` — the full-sync request floor of the selected tables, from the workspace's data;
* ``POST /_admin/advance`` — capture the watermarks a sync of the current state ends with, apply one change
  step (``ws.advance()``, then deliveries and metrics are rendered again, as at start), and return the incremental
  floor from those watermarks plus the full floor now;
* ``GET /_admin/stats`` — the API server's request statistics (requests, 429s, busiest 1-s window, ...)
  and this process's current and peak RSS;
* ``POST /_admin/reset`` — reset those statistics;
* ``GET /_admin/sizes`` — people, deliveries, activities and the members of each live segment.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import orjson

from benchmarks.floor import Floor, capture_watermarks, full_floors, incremental_floors
from customerio_source.simulator import SimulatorServer, Workspace
from customerio_source.simulator.scales import SCALES
from customerio_source.source import select_tables
from tests.oracle import expected_count

RENDER_ALL_MAX = 1_000_000
"""``--render-deliveries auto`` serializes every delivery ahead of the requests up to this many deliveries."""


def cpu_seconds() -> float:
    """CPU time (user + system) this simulator process has used so far."""
    times = os.times()
    return round(times.user + times.system, 3)


def rss_mb() -> dict[str, float]:
    """This process's resident set size now and at its peak (MB)."""
    now = 0.0
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                now = int(line.split()[1]) / 1024
                break
    except OSError:
        pass
    return {"rss_mb": round(now, 1), "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}


def render_all(ws: Workspace, mode: str) -> bool:
    """Whether ``--render-deliveries mode`` serializes every delivery of ``ws`` ahead of the requests."""
    return mode == "all" or (mode == "auto" and ws.n_deliveries() <= RENDER_ALL_MAX)


def render(ws: Workspace, mode: str) -> dict[str, Any]:
    """What the server stores ahead of the requests, at start and after each change step, as the API serves
    stored rows and aggregates (page generation must not bound the pipeline): every delivery serialized
    (when :func:`render_all`), every parent's metric timestamps indexed, every live segment's members."""
    rendered = ws.render_deliveries() if render_all(ws, mode) else 0
    started = time.perf_counter()
    ws.render_metrics()
    ws.render_segment_members()
    ws.render_identifiers()
    return {"rendered_deliveries": rendered, "metrics_render_seconds": round(time.perf_counter() - started, 2)}


def floors_json(floors: dict[str, Floor]) -> dict[str, Any]:
    return {name: floor.as_dict() for name, floor in floors.items()}


class Admin:
    """State behind the admin endpoints."""

    def __init__(self, ws: Workspace, server: SimulatorServer, tables: dict[str, tuple[str, ...]],
                 lookback_days: float, render: str = "auto") -> None:
        self.ws = ws
        self.render = render
        self.server = server
        self.tables = list(tables)
        self.periods = tables
        self.lookback_days = lookback_days

    def floor(self) -> dict[str, Any]:
        started = time.perf_counter()
        floors = full_floors(self.ws, self.tables, self.periods)
        return {"floors": floors_json(floors), "now": self.ws.now, "step": self.ws.step,
                "seconds": round(time.perf_counter() - started, 3)}

    def advance(self) -> dict[str, Any]:
        started = time.perf_counter()
        watermarks = capture_watermarks(self.ws)
        self.ws.advance()
        render(self.ws, self.render)
        incremental = incremental_floors(self.ws, watermarks, self.tables, self.periods, self.lookback_days)
        return {"watermarks": watermarks.as_dict(), "incremental": floors_json(incremental),
                "full": floors_json(full_floors(self.ws, self.tables, self.periods)),
                "now": self.ws.now, "step": self.ws.step, "seconds": round(time.perf_counter() - started, 3)}

    def stats(self) -> dict[str, Any]:
        stats = self.server.stats
        timestamps = list(stats.timestamps)
        span = timestamps[-1] - timestamps[0] if len(timestamps) > 1 else 0.0
        return {"requests": stats.requests, "rate_limited": stats.rate_limited,
                "status_counts": {str(k): v for k, v in stats.status_counts.items()},
                "by_operation": dict(stats.by_operation), "max_in_window_1s": stats.max_in_window(1.0),
                "arrival_span_seconds": round(span, 3), "cpu_seconds": cpu_seconds(), **rss_mb()}

    def sizes(self) -> dict[str, Any]:
        ws = self.ws
        with ws.lock:
            members = {str(s): len(ws.segment_members(s)) for s in ws.live_segments()}
        return {"scale": ws.scale, "people": ws.n_people, "live_people": expected_count(ws, "customers"),
                "deliveries": ws.n_deliveries(), "activities": ws.n_activities(), "segment_members": members,
                "segment_memberships": sum(members.values()), "biggest_segment": max(members.values(), default=0)}

    def reset(self) -> dict[str, Any]:
        self.server.stats.reset()
        return {"cpu_seconds": cpu_seconds()}


def admin_handler(admin: Admin) -> type[BaseHTTPRequestHandler]:
    routes = {("GET", "/_admin/floor"): admin.floor, ("POST", "/_admin/advance"): admin.advance,
              ("GET", "/_admin/stats"): admin.stats, ("POST", "/_admin/reset"): admin.reset,
              ("GET", "/_admin/sizes"): admin.sizes}

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet
            pass

        def _answer(self, method: str) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            if length:
                self.rfile.read(length)
            action = routes.get((method, self.path.split("?", 1)[0]))
            status, body = (200, orjson.dumps(action())) if action else (404, b'{"error":"not found"}')
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:  # noqa: N802
            self._answer("GET")

        def do_POST(self) -> None:  # noqa: N802
            self._answer("POST")

    return Handler


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.simserver", description=__doc__.splitlines()[0])
    ap.add_argument("--scale", choices=sorted(SCALES), default="small")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--rate-limit", type=float, default=0.0, help="requests per rolling second (0: off)")
    ap.add_argument("--api-key", default="bench-key")
    ap.add_argument("--tables", default="all")
    ap.add_argument("--lookback-days", type=float, default=3.0)
    ap.add_argument("--render-deliveries", choices=["auto", "all", "none"], default="auto",
                    help=f"serialize every delivery at start (auto: up to {RENDER_ALL_MAX:,} deliveries)")
    args = ap.parse_args(argv)
    started = time.perf_counter()
    ws = Workspace(scale=args.scale, seed=args.seed)
    workspace_seconds = time.perf_counter() - started
    workspace_rss = rss_mb()["rss_mb"]
    rendered = render(ws, args.render_deliveries)
    server = SimulatorServer(ws, api_key=args.api_key, rate_limit=args.rate_limit or None).start()
    selected = select_tables(args.tables, ("days",))
    admin = Admin(ws, server, selected, args.lookback_days, args.render_deliveries)
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), admin_handler(admin))
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, name="bench-admin", daemon=True).start()
    ready = {"api": server.base_url, "admin": f"http://127.0.0.1:{httpd.server_address[1]}",
             "build_seconds": round(time.perf_counter() - started, 2),
             "workspace_seconds": round(workspace_seconds, 2), "workspace_rss_mb": workspace_rss,
             **rendered, "deliveries": ws.n_deliveries(), **rss_mb()}
    print(orjson.dumps(ready).decode(), flush=True)
    try:
        sys.stdin.read()  # the benchmark closes our stdin to stop us
    except KeyboardInterrupt:
        pass
    httpd.shutdown()
    server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
