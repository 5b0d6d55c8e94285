"""Local throughput of the connector alone: deliveries end to end into DuckDB from a server that costs nothing.

The simulator generates every page in Python, so on a 2-core machine it, not the connector, bounds a
`messages` run. This benchmark separates the two:

1. **record**: a proxy in front of the simulator stores every response body on disk, keyed by path and
   query, while the pipeline loads `messages`;
2. **replay**: the same proxy answers from disk (no generation, no JSON encoding), in its own process, and
   a fresh pipeline loads `messages` again. Its rows/s is what the connector itself sustains: HTTP, JSON,
   Arrow, dlt extract/normalize and the DuckDB load.

    python -m benchmarks.replay --scale large

Prints one JSON line with both runs (rows, wall seconds, rows/s, step times, peak RSS).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import socket
import subprocess
import sys
import tempfile
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import requests

API_KEY = "replay-bench-key"


VOLATILE = ("start_ts", "end_ts")  # window edges move with the clock between the two runs


def _split(path: str) -> tuple[str, dict[str, str]]:
    parts = urlsplit(path)
    return parts.path, dict(parse_qsl(parts.query))


def _stable_key(route: str, query: dict[str, str]) -> str:
    stable = "&".join(f"{k}={v}" for k, v in sorted(query.items()) if k not in VOLATILE)
    return f"{route}?{stable}"


def serve(store: Path, upstream: str | None, port: int) -> None:
    """Record (upstream set) or replay (upstream None) on 127.0.0.1:port until killed.

    Replay answers a request with the recorded response whose path and non-window parameters are equal and
    whose window edges are nearest (they shift by the seconds between the two runs).
    """
    session = requests.Session()
    index_file = store / "index.jsonl"
    recorded: dict[str, list[tuple[int, int, str]]] = {}
    if upstream is None and index_file.exists():
        for line in index_file.read_text().splitlines():
            entry = json.loads(line)
            recorded.setdefault(entry["key"], []).append((entry["start_ts"], entry["end_ts"], entry["file"]))

    def nearest(route: str, query: dict[str, str]) -> Path | None:
        options = recorded.get(_stable_key(route, query))
        if not options:
            return None
        lo, hi = int(query.get("start_ts", 0)), int(query.get("end_ts", 0))
        best = min(options, key=lambda o: abs(o[0] - lo) + abs(o[1] - hi))
        return store / best[2]

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            route, query = _split(self.path)
            if upstream is not None:
                response = session.get(upstream + self.path, headers={"Authorization": self.headers["Authorization"]})
                body, status = response.content, response.status_code
                if status == 200:
                    name = hashlib.sha1(self.path.encode()).hexdigest()
                    (store / name).write_bytes(body)
                    entry = {
                        "key": _stable_key(route, query),
                        "file": name,
                        "start_ts": int(query.get("start_ts", 0)),
                        "end_ts": int(query.get("end_ts", 0)),
                    }
                    with index_file.open("a") as out:
                        out.write(json.dumps(entry) + "\n")
            else:
                file = nearest(route, query)
                if file is not None:
                    body, status = file.read_bytes(), 200
                else:
                    body, status = b'{"errors":[{"detail":"not recorded","status":"404"}]}', 404
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    server.serve_forever()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(url: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            requests.get(url + "/v1/campaigns", headers={"Authorization": f"Bearer {API_KEY}"}, timeout=5)
            return
        except requests.RequestException:
            time.sleep(0.3)
    raise RuntimeError(f"{url} did not come up")


def run_pipeline(base_url: str, workdir: Path) -> dict[str, object]:
    """Load `messages` through the CLI's own code path in this process; return the figures."""
    import dlt

    from customerio_source import customerio_source, load

    pipeline = dlt.pipeline(
        pipeline_name="replay",
        pipelines_dir=str(workdir / "pipelines"),
        destination=dlt.destinations.duckdb(str(workdir / "replay.duckdb")),
        dataset_name="customerio",
    )
    source = customerio_source(api_key=API_KEY, base_url=base_url, tables="messages", rate_limit=0)
    started = time.monotonic()
    load(pipeline, source)
    wall = time.monotonic() - started
    trace = pipeline.last_trace
    rows = trace.last_normalize_info.row_counts.get("messages", 0)
    steps = {s.step: round((s.finished_at - s.started_at).total_seconds(), 2) for s in trace.steps}
    return {
        "rows": rows,
        "wall_s": round(wall, 2),
        "rows_per_s": round(rows / wall),
        "steps": steps,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", default="large", choices=("tiny", "small", "large"))
    parser.add_argument("--phase", choices=("all", "serve", "pipeline"), default="all", help=argparse.SUPPRESS)
    parser.add_argument("--store", help=argparse.SUPPRESS)
    parser.add_argument("--upstream", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--base-url", help=argparse.SUPPRESS)
    parser.add_argument("--workdir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase == "serve":
        serve(Path(args.store), args.upstream, args.port)
        return
    if args.phase == "pipeline":
        print(json.dumps(run_pipeline(args.base_url, Path(args.workdir))))
        return

    me = [sys.executable, "-m", "benchmarks.replay"]
    env = {**os.environ, "RUNTIME__DLTHUB_TELEMETRY": "false"}
    with tempfile.TemporaryDirectory(prefix="cio-replay-") as tmp:
        root = Path(tmp)
        store = root / "store"
        store.mkdir()
        sim_port, proxy_port = free_port(), free_port()
        simulator = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "customerio_source.simulator",
                "--port",
                str(sim_port),
                "--scale",
                args.scale,
                "--rate-limit",
                "0",
                "--api-key",
                API_KEY,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        procs = [simulator]
        results: dict[str, object] = {"scale": args.scale}
        try:
            wait_for(f"http://127.0.0.1:{sim_port}")
            for phase, upstream in (("record", f"http://127.0.0.1:{sim_port}"), ("replay", None)):
                port = free_port() if phase == "replay" else proxy_port
                cmd = [*me, "--phase", "serve", "--store", str(store), "--port", str(port)]
                if upstream:
                    cmd += ["--upstream", upstream]
                proxy = subprocess.Popen(cmd, env=env)
                procs.append(proxy)
                wait_for(f"http://127.0.0.1:{port}")
                if phase == "replay":
                    simulator.terminate()  # nothing else runs while the connector is measured
                workdir = root / phase
                workdir.mkdir()
                out = subprocess.run(
                    [*me, "--phase", "pipeline", "--base-url", f"http://127.0.0.1:{port}", "--workdir", str(workdir)],
                    env=env,
                    capture_output=True,
                    text=True,
                    check=True,
                )
                results[phase] = json.loads(out.stdout.strip().splitlines()[-1])
                proxy.terminate()
        finally:
            for proc in procs:
                proc.terminate()
        results["recorded_mb"] = round(sum(f.stat().st_size for f in store.iterdir()) / 2**20, 1)
        results["load_average"] = os.getloadavg()
    print(json.dumps(results))


if __name__ == "__main__":
    main()
