"""`customerio-pipeline`: load a Customer.io workspace (or the simulated one) into a warehouse."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import threading
import time
import traceback
from collections import Counter
from collections.abc import Sequence
from typing import Any

import dlt

from .client import RequestStats
from .errors import AuthError, ConfigError, CustomerIOError, LoadFailed, PendingPackageFailed, PipelineBusy
from .failures import failed_table, root_cause, root_message
from .runner import bound_process_memory, load
from .source import API_KEY_ENV, customerio_source
from .warehouse import apply_bigquery_hints

DESTINATIONS = ("duckdb", "postgres", "bigquery")
SCALES = ("tiny", "small", "large", "stress", "xlarge")
DEMO_SCALE = "small"
PROFILES = ("tutorial", "tutorial-send")  # simulator/profiles.py
DEMO_API_KEY = "demo-app-api-key"
EXIT_CONFIG, EXIT_AUTH, EXIT_PENDING, EXIT_BUSY = 2, 3, 4, 5


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="customerio-pipeline",
        description="Load a Customer.io workspace (App API) into DuckDB, Postgres or BigQuery. "
        "`customerio-pipeline simulate --port 8800` serves the simulated workspace.",
    )
    parser.add_argument(
        "--tables", default="all", help="all, or a comma list; metrics take periods: campaign_metrics:hours+days"
    )
    parser.add_argument("--interval-start", help="ISO 8601 start of a half-open interval [start, end)")
    parser.add_argument("--interval-end", help="ISO 8601 end of the interval (a backfill: state does not move)")
    parser.add_argument("--destination", default="duckdb", choices=DESTINATIONS)
    parser.add_argument("--dataset-name", default="customerio")
    parser.add_argument(
        "--pipeline-name", default=None,
        help="default: customerio (--demo: customerio_demo; customerio_demo_<scale or profile> for another)",
    )
    parser.add_argument(
        "--region", default=None, choices=("us", "eu"), help="default: us (or [sources.customerio] region)"
    )
    parser.add_argument("--base-url", default=None, help="override the API root (proxy, simulator)")
    parser.add_argument("--full-refresh", action="store_true", help="drop this source's tables and state first")
    parser.add_argument(
        "--drop-pending",
        action="store_true",
        help="drop load packages an earlier run left unloaded (a package that keeps failing), then run as usual",
    )
    parser.add_argument("--rate-limit", type=float, default=None, help="requests per second (default 10)")
    parser.add_argument("--metrics-periods", default=None, help="default periods for metrics tables (default days)")
    parser.add_argument(
        "--bulk",
        default=None,
        choices=("exports", "api", "auto"),
        help="customer_attributes and deliveries via the exports API (exports), paging (api, default), or by size",
    )
    parser.add_argument("--demo", action="store_true", help="load the simulated workspace (no API key needed)")
    parser.add_argument("--scale", default=DEMO_SCALE, choices=SCALES, help="simulated workspace size for --demo")
    parser.add_argument("--profile", default=None, choices=PROFILES, help="--demo: a workspace profile (its own size)")
    parser.add_argument("--models", action="store_true", help="after the load, build the analytics models "
                        "(customerio-pipeline models takes their options)")
    parser.add_argument("--progress-every", type=float, default=5.0, help="seconds between progress lines (0: off)")
    parser.add_argument("--debug", action="store_true", help="debug logging and tracebacks")
    return parser


def simulate_main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="customerio-pipeline simulate", description="Serve the simulated workspace.")
    parser.add_argument("--port", type=int, default=8800)
    parser.add_argument("--scale", default=DEMO_SCALE, choices=SCALES)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--profile", default=None, choices=PROFILES, help="a workspace profile (its own size)")
    parser.add_argument("--rate-limit", type=float, default=10.0, help="429 above this many requests/s (0: off)")
    parser.add_argument("--api-key", default=os.environ.get(API_KEY_ENV) or DEMO_API_KEY)
    args = parser.parse_args(argv)
    from .simulator import SimulatorServer, Workspace

    workspace = Workspace(scale=args.scale, seed=args.seed, profile=args.profile)
    server = SimulatorServer(
        workspace, api_key=args.api_key, port=args.port, rate_limit=args.rate_limit or None
    ).start()
    print(f"simulated workspace ({args.profile or args.scale}) at {server.base_url}; API key: {args.api_key!r}; "
          "Ctrl-C stops it")
    print(f"try: CUSTOMERIO_APP_API_KEY={args.api_key} customerio-pipeline --base-url {server.base_url}")
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        server.stop()
    return 0


class Progress:
    """Every few seconds, a line per table that moved: rows so far, requests, request rate."""

    def __init__(self, client_stats: Any, every: float) -> None:
        self.stats = client_stats
        self.every = every
        self.rows: Counter[str] = Counter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="cio-progress", daemon=True)
        self._seen: dict[str, tuple[int, int]] = {}
        self._last_total = 0
        self._last_time = time.monotonic()
        self._quiet_since: float | None = None

    def count(self, table: str):  # noqa: ANN201 - a dlt map function
        def counter(item: Any) -> Any:
            self.rows[table] += getattr(item, "num_rows", 1)  # Arrow pages count their rows
            return item

        return counter

    def start(self) -> None:
        if self.every > 0:
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            now = time.monotonic()
            total = self.stats.total
            elapsed = now - self.stats.started
            rate = (total - self._last_total) / max(1e-6, now - self._last_time)
            self._last_total, self._last_time = total, now
            for table in sorted(set(self.rows) | set(self.stats.by_table)):
                if table == "-":
                    continue
                current = (self.rows.get(table, 0), self.stats.by_table.get(table, 0))
                if self._seen.get(table) != current:
                    self._seen[table] = current
                    print(f"[{elapsed:6.1f}s] {table}: {current[0]} rows, {current[1]} requests", file=sys.stderr)
            if rate > 0:
                self._quiet_since = None
                print(f"[{elapsed:6.1f}s] {total} requests, {rate:.1f}/s", file=sys.stderr)
            elif self._quiet_since is None and total:
                self._quiet_since = now
                print(f"[{elapsed:6.1f}s] {total} requests; normalizing and loading...", file=sys.stderr)


def demo_pipeline_name(workspace: str) -> str:
    """``customerio_demo`` for the default simulated workspace, ``customerio_demo_<scale or profile>`` for
    another: each has its own pipeline state and DuckDB file, so a demo of one workspace never runs
    incrementally on the state another one's demo left in the same folder."""
    return "customerio_demo" if workspace == DEMO_SCALE else f"customerio_demo_{workspace}"


def run(args: argparse.Namespace) -> int:
    started = time.monotonic()
    server = None
    demo_name = demo_pipeline_name(args.profile or args.scale) if args.demo else None
    pipeline_name = args.pipeline_name or demo_name or "customerio"
    source_kwargs: dict[str, Any] = {
        "tables": args.tables,
        "interval_start": args.interval_start,
        "interval_end": args.interval_end,
    }
    if args.region:
        source_kwargs["region"] = args.region
    if args.base_url:
        source_kwargs["base_url"] = args.base_url
    if args.rate_limit is not None:
        source_kwargs["rate_limit"] = args.rate_limit
    if args.bulk:
        source_kwargs["bulk"] = args.bulk
    if args.metrics_periods:
        source_kwargs["metrics_periods"] = args.metrics_periods
    if args.demo:
        from .simulator import SimulatorServer, Workspace

        print(f"building the simulated workspace ({args.profile or args.scale})...", file=sys.stderr)
        workspace = Workspace(scale=args.scale, profile=args.profile)
        server = SimulatorServer(workspace, api_key=DEMO_API_KEY).start()
        source_kwargs.update(api_key=DEMO_API_KEY, base_url=server.base_url)
        if args.rate_limit is None:
            source_kwargs["rate_limit"] = 0  # the simulator has no limit unless asked; the real API does
        print(f"simulated workspace at {server.base_url}", file=sys.stderr)
    elif os.environ.get(API_KEY_ENV):
        source_kwargs["api_key"] = os.environ[API_KEY_ENV]
    stats = RequestStats()
    source_kwargs["request_stats"] = stats
    try:
        source = customerio_source(**source_kwargs)
        pipeline = dlt.pipeline(
            pipeline_name=pipeline_name,
            destination=destination_for(args.destination, pipeline_name, args.dataset_name),
            dataset_name=args.dataset_name,
        )
        check_destination(pipeline)
        if args.destination == "bigquery":
            apply_bigquery_hints(source)
        from .live import progress_for  # a live display on a terminal, the plain lines otherwise

        progress = progress_for(
            stats, args.progress_every, source_kwargs, pipeline_name, args.bulk, destination=pipeline.destination
        )
        for name, resource in source.selected_resources.items():
            resource.add_map(progress.count(name))
        progress.start()
        try:
            info = load(
                pipeline, source, drop_pending=args.drop_pending, refresh="drop_sources" if args.full_refresh else None
            )
        finally:
            progress.stop()
        print_summary(pipeline, info, stats, time.monotonic() - started, args)
        if args.models:
            from .analytics.build import Settings
            from .analytics.cli import run_models

            run_models(pipeline, Settings())
    finally:
        if server is not None:
            server.stop()
    return 0


def destination_for(name: str, pipeline_name: str, dataset_name: str) -> Any:
    """The destination; for DuckDB without configured credentials, a file whose name is not the dataset's.

    DuckDB names its catalog after the file, and a catalog named like the dataset makes every table reference
    ambiguous, so `customerio.duckdb` + dataset `customerio` cannot work: that case gets
    `<pipeline>_warehouse.duckdb`. `DESTINATION__DUCKDB__CREDENTIALS` (or .dlt config) always wins.
    """
    if name != "duckdb" or dlt.config.get("destination.duckdb.credentials") is not None:
        return name
    stem = pipeline_name if pipeline_name != dataset_name else f"{pipeline_name}_warehouse"
    return dlt.destinations.duckdb(credentials=os.path.abspath(f"{stem}.duckdb"))


def check_destination(pipeline: dlt.Pipeline) -> None:
    """Resolve the destination's configuration before any request, so missing credentials fail early."""
    try:
        pipeline.destination_client()
    except Exception as exc:  # noqa: BLE001 - dlt raises several config exception types
        raise ConfigError(
            f"destination {pipeline.destination.destination_name if pipeline.destination else '?'} is not "
            f"configured: {_first_line(exc)}"
        ) from exc


def print_summary(pipeline: dlt.Pipeline, info: Any, stats: Any, elapsed: float, args: argparse.Namespace) -> None:
    counts = table_counts(pipeline)
    normalized = {}
    trace = pipeline.last_trace
    if trace and trace.last_normalize_info:
        normalized = trace.last_normalize_info.row_counts
    print(
        f"\nloaded into {args.destination} dataset {pipeline.dataset_name!r} in {elapsed:.1f}s, "
        f"{stats.total} requests ({stats.total / max(elapsed, 1e-6):.1f}/s, {stats.rate_limited} rate-limited)"
    )
    if stats.adapted_rate is not None:
        # the workspace granted less than --rate-limit (other apps share its budget): say what it found
        print(
            f"the workspace granted less than {stats.configured_rate or 'unlimited'} requests/s: the rate was lowered "
            f"{stats.rate_decreases} time(s), to {stats.min_rate:.2f}/s at the lowest, and ended at "
            f"{stats.adapted_rate:.2f}/s"
        )
    width = max((len(t) for t in counts), default=10)
    print(f"{'table'.ljust(width)}  {'rows this run':>13}  {'rows in table':>13}")
    for table in sorted(counts):
        print(f"{table.ljust(width)}  {normalized.get(table, 0):>13}  {counts[table]:>13}")
    if args.destination == "duckdb":
        print(f"DuckDB file: {database_path(pipeline)}")


def table_counts(pipeline: dlt.Pipeline) -> dict[str, int]:
    """Row counts of every data table of the pipeline's schema (child tables included)."""
    counts: dict[str, int] = {}
    schema = pipeline.default_schema
    with pipeline.sql_client() as client:
        for name in schema.data_table_names():
            try:
                rows = client.execute_sql(f"SELECT COUNT(*) FROM {client.make_qualified_table_name(name)}")
            except Exception:  # noqa: BLE001 - a table declared but never created
                continue
            counts[name] = int(rows[0][0])
    return counts


def database_path(pipeline: dlt.Pipeline) -> str:
    try:
        credentials = pipeline.destination_client().config.credentials  # type: ignore[attr-defined]
        return os.path.abspath(str(credentials.database))
    except Exception:  # noqa: BLE001
        return f"{pipeline.pipeline_name}.duckdb"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def failure_report(exc: BaseException, argv: Sequence[str]) -> tuple[str, int]:
    """The one line shown for a failed run, and the exit code (2 bad input, 3 rejected key, 4 a pending
    package that fails again, 5 another run of the pipeline is going, 1 otherwise)."""
    cause = root_cause(exc)
    if isinstance(cause, PendingPackageFailed):
        again = " ".join(["customerio-pipeline", *[a for a in argv if a != "--drop-pending"]])
        return (
            f"{cause}. Fix the cause and run again to retry it, or drop it and read its rows again: "
            f"{again} --drop-pending",
            EXIT_PENDING,
        )
    if isinstance(cause, PipelineBusy):
        return str(cause), EXIT_BUSY
    if isinstance(cause, LoadFailed):
        return f"{cause}. The package is kept: the next run retries it first (--drop-pending drops it)", 1
    if isinstance(cause, CustomerIOError):
        code = EXIT_CONFIG if isinstance(cause, ConfigError) else EXIT_AUTH if isinstance(cause, AuthError) else 1
        return str(cause), code
    table = failed_table(exc)
    step = getattr(exc, "step", None)
    where = f"{step} step" if isinstance(step, str) else ""
    if table:
        where = f"{where} of {table}" if where else table
    message = root_message(exc)
    return (f"{where} failed: {message}" if where else message), 1


def quiet_tracebacks() -> None:
    """Without --debug nothing prints a traceback: dlt logs only critical lines, and an exception that
    escapes a thread prints one line."""
    os.environ["RUNTIME__LOG_LEVEL"] = "CRITICAL"
    logging.getLogger("dlt").setLevel(logging.CRITICAL)

    def one_line(hook_args: threading.ExceptHookArgs) -> None:
        if hook_args.exc_value is not None:
            print(f"warning: thread {getattr(hook_args.thread, 'name', '?')}: {root_message(hook_args.exc_value)}",
                  file=sys.stderr)

    threading.excepthook = one_line


# `customerio-pipeline NAME ...`: each subcommand is a `main(argv) -> exit code` in its own module, imported
# only when it runs (one line each; without a name the command loads a workspace)
SUBCOMMANDS = {
    "simulate": "customerio_source.cli:simulate_main",
    "models": "customerio_source.analytics.cli:models_main",
    "report": "customerio_source.analytics.cli:report_main",
    "push": "customerio_source.send.cli:push_main",
    "plan": "customerio_source.planner:main",
}


def subcommand(name: str) -> Any:
    """The ``main(argv)`` function of subcommand ``name``."""
    import importlib

    module, _, function = SUBCOMMANDS[name].partition(":")
    return getattr(importlib.import_module(module), function)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in SUBCOMMANDS:
        return subcommand(argv[0])(argv[1:])
    args = build_parser().parse_args(argv)
    bound_process_memory()  # this process's own tuning (malloc arenas, Arrow's allocator)
    # dlt's own logging (its job retries print whole tracebacks) would break the one-line error contract;
    # --debug shows everything
    if args.debug:
        os.environ.setdefault("RUNTIME__LOG_LEVEL", "DEBUG")
    else:
        quiet_tracebacks()
    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    try:
        return run(args)
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - one clear line, the traceback only with --debug
        if args.debug:
            traceback.print_exc()
        message, code = failure_report(exc, argv)
        print(f"error: {message}", file=sys.stderr)
        return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
