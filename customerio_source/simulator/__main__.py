"""``python -m customerio_source.simulator --port 8800 --scale small [--rate-limit 10] [--api-key KEY] [--seed N]``."""

from __future__ import annotations

import argparse
import time

from .server import SimulatorServer
from .workspace import Workspace


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m customerio_source.simulator",
                                 description="Serve a simulated Customer.io App API on 127.0.0.1.")
    ap.add_argument("--port", type=int, default=8800)
    ap.add_argument("--scale", choices=["tiny", "small", "large"], default="small")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--anchor", type=int, default=None, help="the workspace's 'now' (unix seconds)")
    ap.add_argument("--rate-limit", type=float, default=None, help="requests per rolling second")
    ap.add_argument("--api-key", default="sim-key")
    args = ap.parse_args(argv)
    t = time.perf_counter()
    ws = Workspace(scale=args.scale, seed=args.seed, anchor=args.anchor)
    server = SimulatorServer(ws, api_key=args.api_key, port=args.port, rate_limit=args.rate_limit)
    print(f"built {args.scale} workspace in {time.perf_counter() - t:.1f}s; "
          f"serving {server.base_url} (api key {args.api_key!r}); Ctrl-C to stop", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
