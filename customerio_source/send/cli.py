"""``customerio-pipeline push``: push a DuckDB or Postgres table into Customer.io.

    customerio-pipeline push --from duckdb:warehouse.duckdb --table main.people --as identify
    customerio-pipeline push --from postgres:postgresql://... --table events --as event:signup --key event_id
    customerio-pipeline push --demo            # a small demo table into the simulated workspace

Exit codes: 0 every row accepted (or nothing new to push), 2 bad input (unknown operation or table, a
missing column, wrong region, an empty table), 3 rejected credentials, 4 some rows rejected (counted by
reason, and in ``customerio_rejections`` next to the table) or a package an earlier push left keeps
failing, 5 another push of the same pipeline is running, 1 anything else. Errors are one line; ``--debug``
adds the traceback. No output holds a key or a site id.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
import traceback
from collections import Counter
from collections.abc import Iterator, Sequence
from typing import Any

import dlt

from ..errors import ApiError, AuthError, ConfigError, CustomerIOError, PendingPackageFailed, PipelineBusy
from ..failures import exception_chain, root_message
from . import limits
from .destination import SLICE_ROWS, customerio_track, settings_from, totals_for
from .operations import KINDS, Builder, check_columns, parse_operation
from .push import Packer, plan
from .read import Origin, connect, redact, split_table, table_columns, warehouse_rows
from .rejections import TABLE as REJECTIONS_TABLE
from .rejections import load_rejections
from .transport import SendClient, Settings, check_settings

EXIT_OK, EXIT_OTHER, EXIT_CONFIG, EXIT_AUTH, EXIT_REJECTED, EXIT_BUSY = 0, 1, 2, 3, 4, 5
RETRIES_ENV = "LOAD__RAISE_ON_MAX_RETRIES"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="customerio-pipeline push",
        description="Push a warehouse table into Customer.io (Track API or Data Pipelines API).",
    )
    parser.add_argument("--from", dest="origin", help="duckdb:PATH or postgres:DSN")
    parser.add_argument("--table", help="[SCHEMA.]TABLE")
    parser.add_argument("--as", dest="operation", help=f"operation: {', '.join(KINDS)} (KIND:ARG where needed)")
    parser.add_argument("--key", default=None, help="COL[,COL]: the row key (default: a hash of the whole row)")
    parser.add_argument("--api", default=None, choices=("track", "cdp"), help="default track")
    parser.add_argument("--region", default=None, choices=("us", "eu"), help="default us")
    parser.add_argument("--base-url", default=None, help="override the API root (proxy, simulator)")
    parser.add_argument(
        "--incremental-column", default=None, help="push only rows whose COL grew since the last successful push"
    )
    parser.add_argument(
        "--rate-limit",
        type=float,
        default=None,
        help=f"requests per second (default {limits.DEFAULT_RATE:g}, at most {limits.TRACK_MAX_RATE:g}; 0: off)",
    )
    parser.add_argument("--workers", type=int, default=4, help="requests in flight at once (default 4)")
    parser.add_argument(
        "--batch-rows",
        type=int,
        default=SLICE_ROWS,
        help=f"rows turned into Python objects at a time (default {SLICE_ROWS:,}): fewer hold less memory",
    )
    parser.add_argument("--pipeline-name", default=None, help="default customerio_push_<table>")
    parser.add_argument(
        "--dry-run", action="store_true", help="validate and count requests and rejections; send nothing"
    )
    parser.add_argument("--demo", action="store_true", help="push into the simulated workspace (no credentials)")
    parser.add_argument("--debug", action="store_true", help="debug logging and tracebacks")
    return parser


def push_main(argv: Sequence[str]) -> int:
    """The ``push`` subcommand; returns the exit code."""
    args = build_parser().parse_args(list(argv))
    from ..cli import quiet_tracebacks
    from ..runner import bound_process_memory

    bound_process_memory()
    if args.debug:
        os.environ.setdefault("RUNTIME__LOG_LEVEL", "DEBUG")
    else:
        quiet_tracebacks()
    # a 401 or a 400 is not worth a second attempt of the load job: the package stays pending instead
    os.environ.setdefault(RETRIES_ENV, "1")
    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    secrets: list[str] = []
    try:
        return run_push(args, secrets)
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - one clear line; the traceback only with --debug
        if args.debug:
            traceback.print_exc()
        message, code = push_failure(exc)
        print(f"error: {scrub(message, secrets)}", file=sys.stderr)
        return code


def scrub(text: str, secrets: list[str]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


def causes(exc: BaseException) -> Iterator[BaseException]:
    """``exc``, what it wraps, and a failed load job's own exception (dlt's ``client_exception``)."""
    seen: set[int] = set()
    stack = [exc]
    while stack:
        item = stack.pop()
        if id(item) in seen:
            continue
        seen.add(id(item))
        yield item
        for nested in exception_chain(item):
            if id(nested) not in seen:
                stack.append(nested)
        inner = getattr(item, "client_exception", None)
        if isinstance(inner, BaseException):
            stack.append(inner)


def push_failure(exc: BaseException) -> tuple[str, int]:
    """The one line and the exit code for a failed push."""
    found = [c for c in causes(exc) if isinstance(c, CustomerIOError)]
    for kind, code in ((AuthError, EXIT_AUTH), (ConfigError, EXIT_CONFIG), (PipelineBusy, EXIT_BUSY)):
        for cause in found:
            if isinstance(cause, kind):
                return str(cause), code
    for cause in found:
        if isinstance(cause, ApiError):
            return f"{cause}. The package is kept: the next push retries it first", EXIT_OTHER
    for cause in found:
        if isinstance(cause, PendingPackageFailed):
            return str(cause), EXIT_REJECTED
    if found:
        return str(found[0]), EXIT_OTHER
    return root_message(exc), EXIT_OTHER


def resolve_settings(args: argparse.Namespace, server: Any) -> Settings:
    """Credentials: the simulator's with --demo, else the environment, else dlt config/secrets."""
    rate = limits.DEFAULT_RATE if args.rate_limit is None else args.rate_limit
    api = args.api or dlt.config.get("destination.customerio.api") or "track"
    region = args.region or dlt.config.get("destination.customerio.region") or "us"
    if server is not None:
        from ..simulator.send_api import DEMO_SITE_ID, DEMO_TRACK_API_KEY, DEMO_WRITE_KEY

        base = server.base_url + ("/cdp/v1" if api == "cdp" else "")
        return settings_from(DEMO_SITE_ID, DEMO_TRACK_API_KEY, DEMO_WRITE_KEY, region, base, api, rate, args.workers)

    def secret(name: str, env: str) -> str | None:
        return os.environ.get(env) or dlt.secrets.get(f"destination.customerio.{name}")

    return settings_from(
        secret("site_id", "CUSTOMERIO_SITE_ID"),
        secret("api_key", "CUSTOMERIO_TRACK_API_KEY"),
        secret("write_key", "CUSTOMERIO_CDP_API_KEY"),
        region,
        args.base_url or dlt.config.get("destination.customerio.base_url"),
        api,
        rate,
        args.workers,
    )


def preflight(settings: Settings) -> None:
    """Check the credentials (and the Track API's region) with one request before reading any row."""
    client = SendClient(settings)
    if settings.api == "track":
        answer = client.request("GET", "/api/v1/accounts/region", table="-")
        region = str(answer.get("region") or "").lower()
        if region in ("us", "eu") and region != settings.region:
            raise ConfigError(
                f"the workspace is in the {region.upper()} region, not {settings.region.upper()}: use --region {region}"
            )
    else:
        import orjson

        client.request("POST", "/batch", body=orjson.Fragment(b'{"batch":[]}'), table="-")


def demo_origin(folder: str) -> tuple[str, str, str]:
    """A small DuckDB table of people for ``--demo`` without ``--from``."""
    import duckdb

    path = os.path.join(folder, "demo_warehouse.duckdb")
    conn = duckdb.connect(path)
    conn.execute(
        "CREATE TABLE people AS SELECT 'demo_' || i AS id, 'demo' || i || '@example.com' AS email, "
        "CASE WHEN i % 3 = 0 THEN 'pro' ELSE 'free' END AS plan, TIMESTAMP '2025-01-01' + i * INTERVAL 1 HOUR "
        "AS created_at FROM range(1, 101) t(i)"
    )
    conn.close()
    return f"duckdb:{path}", "main.people", "identify"


def count_rows(origin: Origin, schema: str, table: str) -> int:
    conn = connect(origin)
    try:
        cur = conn.cursor()
        cur.execute(f'SELECT COUNT(*) FROM "{schema}"."{table}"')
        return int(cur.fetchone()[0])
    finally:
        conn.close()


def run_push(args: argparse.Namespace, secrets: list[str]) -> int:
    started = time.monotonic()
    server = None
    scratch = None
    if args.demo and not args.origin:
        scratch = tempfile.mkdtemp(prefix="cio_push_demo_")
        args.origin, default_table, default_op = demo_origin(scratch)
        args.table = args.table or default_table
        args.operation = args.operation or default_op
    if not args.origin or not args.table or not args.operation:
        raise ConfigError(
            "push needs --from duckdb:PATH|postgres:DSN, --table [SCHEMA.]TABLE and --as OPERATION (or --demo)"
        )
    origin = Origin.parse(args.origin)
    if origin.kind == "postgres":
        secrets.append(origin.target)
    schema, table = split_table(args.table, origin)
    api = args.api or dlt.config.get("destination.customerio.api") or "track"
    op = parse_operation(args.operation, args.key, api)
    columns = table_columns(origin, schema, table)
    check_columns(op, columns, f"{schema}.{table}")
    if args.incremental_column and args.incremental_column not in columns:
        raise ConfigError(f"--incremental-column {args.incremental_column!r} is not a column of {schema}.{table}")
    if count_rows(origin, schema, table) == 0:
        raise ConfigError(f"table {schema}.{table} is empty: nothing to push")
    try:
        if args.demo:
            from ..simulator import SimulatorServer, Workspace

            server = SimulatorServer(Workspace(scale="tiny")).start()
            print(f"simulated workspace at {server.base_url}", file=sys.stderr)
        settings = resolve_settings(args, server)
        secrets.extend(s for s in (settings.site_id, settings.api_key, settings.write_key) if s)
        check_settings(settings)
        resource = warehouse_rows(origin, schema, table, args.incremental_column)
        if args.dry_run:
            return dry_run(resource, op, table, settings, f"{schema}.{table}")
        preflight(settings)
        return push_table(args, origin, schema, table, op, resource, settings, started)
    finally:
        if server is not None:
            server.stop()


def dry_run(resource: Any, op: Any, table: str, settings: Settings, label: str) -> int:
    """Plan every row as a push would (packed across the whole table, as a load job file is); send nothing."""
    builder = Builder(op, table, settings.api)
    packer = Packer(settings.api, op.arg if op.kind.startswith("segment") else None)
    rows = requests = item_bytes = 0
    reasons: Counter = Counter()
    for chunk in resource:
        rows_of = chunk.to_pylist() if hasattr(chunk, "to_pylist") else chunk if isinstance(chunk, list) else [chunk]
        items, rejected = plan(rows_of, builder, "dry-run")
        reasons.update(r.reason for r in rejected)
        for item in items:
            if item.channel == "batch":
                item_bytes += len(item.body)
            requests += len(packer.add(item))
        rows += len(rows_of)
    requests += len(packer.flush())
    floor = item_bytes / limits.REQUEST_BYTES
    print(
        f"dry run: {rows} rows of {label} as {op.text} ({settings.api} API) would take {requests} requests "
        f"({item_bytes:,} bytes of batch items; byte floor {floor:.1f} requests); nothing was sent"
    )
    return report_rejections(reasons, None)


def report_rejections(reasons: Counter, where: str | None) -> int:
    if not reasons:
        return EXIT_OK
    total = sum(reasons.values())
    detail = ", ".join(f"{reason} {count}" for reason, count in reasons.most_common())
    place = f"; written to {where}" if where else ""
    print(f"{total} rows rejected ({detail}){place}", file=sys.stderr)
    return EXIT_REJECTED


def rejections_destination(origin: Origin) -> Any:
    if origin.kind == "duckdb":
        return dlt.destinations.duckdb(credentials=os.path.abspath(origin.target))
    return dlt.destinations.postgres(credentials=origin.target)


def push_table(
    args: argparse.Namespace,
    origin: Origin,
    schema: str,
    table: str,
    op: Any,
    resource: Any,
    settings: Settings,
    started: float,
) -> int:
    from ..runner import load

    name = args.pipeline_name or f"customerio_push_{table}"
    spool = os.path.join(dlt.pipeline(pipeline_name=name).working_dir, "customerio_rejections")
    operations = {table: op.text, **({f"{table}.key": ",".join(op.key)} if op.key else {})}
    pipeline = dlt.pipeline(
        pipeline_name=name,
        dataset_name=f"customerio_push_{table}",
        destination=customerio_track(
            site_id=settings.site_id,
            api_key=settings.api_key,
            write_key=settings.write_key,
            region=settings.region,
            base_url=settings.base_url,
            api=settings.api,
            rate_limit=settings.rate_limit or 0,
            workers=settings.workers,
            operations=operations,
            slice_rows=args.batch_rows,
            rejections_dir=spool,
        ),
    )

    @dlt.source(name="customerio_push")
    def push_source() -> Any:
        return resource

    totals = totals_for(settings)
    before = (totals.rows, totals.requests, totals.item_bytes)
    try:
        info = load(pipeline, push_source())
    finally:
        # rejections of every batch that finished (this run's, and a resumed package's) go to the warehouse,
        # whether or not the push as a whole went through
        reasons = load_rejections(
            spool,
            rejections_destination(origin),
            schema,
            f"{name}_rejections",
            pipelines_dir=os.path.dirname(pipeline.working_dir),
        )
    elapsed = time.monotonic() - started
    rows, requests, item_bytes = (totals.rows - before[0], totals.requests - before[1], totals.item_bytes - before[2])
    if rows == 0 and not info.loads_ids:
        print(f"nothing to push: no rows of {schema}.{table} changed since the last push")
        return EXIT_OK
    rejected = sum(reasons.values())
    print(
        f"pushed {rows} rows of {schema}.{table} as {op.text} to Customer.io ({settings.api} API, "
        f"{redact(settings.root, settings.root)}) in {elapsed:.1f}s: {requests} requests "
        f"({item_bytes:,} bytes of items), {rows - rejected} accepted, {rejected} rejected"
    )
    return report_rejections(reasons, f"{schema}.{REJECTIONS_TABLE} in {origin.label}")
