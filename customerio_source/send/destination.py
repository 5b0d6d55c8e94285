"""The Customer.io destination: ``dlt.pipeline(destination=customerio_track(...))`` pushes any source's rows.

Built on ``@dlt.destination`` (public dlt API only). dlt writes each table to a parquet file in the load
package and hands the destination each file (``batch_size=0``): :func:`push_file` streams it, a slice of
rows at a time, packing items across the whole file (so a push costs one partly filled request per file,
not per batch), sending while it builds, and holding at most a few requests. Every couple of seconds it
writes a checkpoint: how many leading rows of the file are done (answered, or rejected and spooled). A
run that dies (``kill -9``) leaves the package pending; the next one (through
:func:`customerio_source.runner.load`, which finishes interrupted packages first) starts each unfinished
file at its checkpoint, so the requests that were in flight are sent again, in row order. That is safe:
events carry deterministic ULIDs (Customer.io ignores an id it has seen) and a replayed identify re-sends
the same rows in the same order (the last one still wins); nothing after them was sent. Tables load one
at a time (``loader_parallelism_strategy="sequential"``), so one table's rows keep their order. (dlt's own
batch mode records progress in batches, but its parquet reader skips whole batches on resume while
row-group boundaries cut batches short, so a resumed offset can fall mid-batch; streaming the file with
an own row count avoids that.)

Configuration, the dlt way, under ``[destination.customerio]``: ``site_id``, ``api_key`` (Track),
``write_key`` (Data Pipelines), ``region`` (us|eu), ``base_url``, ``api`` (track|cdp), ``rate_limit``
(requests/s, default 100, at most 1,000; 0 = off), ``workers``; the environment variables
``CUSTOMERIO_SITE_ID``, ``CUSTOMERIO_TRACK_API_KEY`` and ``CUSTOMERIO_CDP_API_KEY`` are read by
:func:`customerio_track` when nothing else gives a value. Each table's operation comes from the
``operations`` mapping, or from the table hint :func:`send_as` sets on a resource.

Rejected rows are appended to a spool file per load package (``rejections_dir``, default: the pipeline's
working folder) and then loaded into ``customerio_rejections`` next to the data (:mod:`.rejections`).
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Iterator, Mapping
from typing import Any

import dlt
import orjson
from dlt.common.schema import TTableSchema

from ..errors import ConfigError
from . import limits
from .operations import EVENT_KINDS, Builder, Operation, parse_operation
from .push import MESSAGE_CHARS, Packer, PushTotals, RejectedRow, Request, RequestQueue, answer_rejections
from .rejections import spool_dir, spool_rejections
from .rows import Rejection
from .transport import Settings, client_for

logger = logging.getLogger("customerio_source")

OPERATION_HINT = "x-customerio-operation"
KEY_HINT = "x-customerio-key"
SLICE_ROWS = 10_000
"""Rows of a job file turned into Python objects at a time."""
CHECKPOINT_SECONDS = 2.0
"""How often a streaming push writes the count of rows done (a killed push re-sends at most this much)."""
ENV = {"site_id": "CUSTOMERIO_SITE_ID", "api_key": "CUSTOMERIO_TRACK_API_KEY", "write_key": "CUSTOMERIO_CDP_API_KEY"}

_TOTALS: dict[Settings, PushTotals] = {}


def totals_for(settings: Settings) -> PushTotals:
    """Rows, requests, item bytes and rejections of the pushes with ``settings`` in this process."""
    return _TOTALS.setdefault(settings, PushTotals())


def send_as(resource: Any, operation: str, key: str | list[str] | None = None) -> Any:
    """Declare, through table hints, what ``resource``'s rows become in Customer.io (``identify``,
    ``event:signup``, ``object:1``...) and which columns make a row's key."""
    op = parse_operation(operation, key)
    hints: dict[str, Any] = {OPERATION_HINT: op.text}
    if op.key:
        hints[KEY_HINT] = ",".join(op.key)
    resource.apply_hints(additional_table_hints=hints)
    return resource


def operation_for(
    table: Mapping[str, Any], operations: Mapping[str, str] | None, key: str | None, api: str
) -> Operation:
    name = table["name"]
    text = table.get(OPERATION_HINT) or (operations or {}).get(name)
    if not text:
        raise ConfigError(
            f"table {name} has no Customer.io operation: pass operations={{{name!r}: 'identify'}} "
            "or set it with send_as(resource, ...)"
        )
    return parse_operation(text, table.get(KEY_HINT) or (operations or {}).get(f"{name}.key") or key, api)


def settings_from(
    site_id: str | None = None,
    api_key: str | None = None,
    write_key: str | None = None,
    region: str | None = "us",
    base_url: str | None = None,
    api: str | None = "track",
    rate_limit: float | None = limits.DEFAULT_RATE,
    workers: int = 4,
) -> Settings:
    return Settings(
        api=(api or "track").lower(),
        region=(region or "us").lower(),
        base_url=base_url or None,
        site_id=str(site_id).strip() if site_id else None,
        api_key=str(api_key).strip() if api_key else None,
        write_key=str(write_key).strip() if write_key else None,
        rate_limit=float(rate_limit) if rate_limit else None,
        workers=int(workers or 1),
    )


VARIANT = re.compile(r"^(?P<base>.+)(?:__|\u25b6)v_[a-z0-9_]+$")  # snake_case and direct naming


def clean_row(row: Mapping[str, Any]) -> dict[str, Any]:
    """The row as the source had it: without dlt's columns, and a value dlt put in a variant column (one
    that did not fit the column's inferred type, ``timestamp__v_text``) back under its own name."""
    out: dict[str, Any] = {}
    variants = []
    for name, value in row.items():
        if name.startswith("_dlt_"):
            continue
        match = VARIANT.match(name)
        if match:
            variants.append((match.group("base"), value))
        else:
            out[name] = value
    for base, value in variants:
        if value is not None and out.get(base) is None:
            out[base] = value
    return out


def push_batch(
    rows: list[dict[str, Any]],
    table: Mapping[str, Any],
    settings: Settings,
    operations: Mapping[str, str] | None = None,
    key: str | None = None,
    rejections_dir: str | None = None,
    dry_run: bool = False,
    load_id: str | None = None,
) -> None:
    """Send one batch of one table's rows (the destination's body, callable on its own): rows are built
    into items and packed while the requests already packed are being sent."""
    if not rows:
        return
    load_id = load_id if load_id is not None else str(rows[0].get("_dlt_load_id") or "")
    op = operation_for(table, operations, key, settings.api)
    builder = Builder(op, table["name"], settings.api)
    packer = Packer(settings.api, op.arg if op.kind.startswith("segment") else None)
    rejected: list[RejectedRow] = []
    requests: list[Request] = []
    if dry_run:
        queue = None
    else:
        client = client_for(settings)

        def send(request: Request) -> dict[str, Any]:
            return client.request(
                "POST", request.path, params=request.params, body=orjson.Fragment(request.body()), table=table["name"]
            )

        queue = RequestQueue(send, settings.workers)
    item_bytes = 0
    clean = row_cleaner(rows[0])
    for index, raw in enumerate(rows):
        row = clean(raw)
        rows[index] = row  # the 207 handling reads the row's key again
        try:
            item = builder.build(index, row)
        except Rejection as exc:
            rejected.append(
                RejectedRow(
                    builder.table,
                    builder.key(row),
                    op.text,
                    exc.reason,
                    exc.field,
                    exc.message[:MESSAGE_CHARS],
                    load_id,
                )
            )
            continue
        if item.channel == "batch":
            item_bytes += len(item.body)
        for request in packer.add(item):
            requests.append(request)
            if queue is not None:
                queue.submit(request)
    for request in packer.flush():
        requests.append(request)
        if queue is not None:
            queue.submit(request)
    if queue is not None:
        try:
            answers = queue.close()
        finally:
            spool_rejections(rejected, rejections_dir)  # local rejections are final whatever happens next
            rejected_locally = len(rejected)
        more = [
            r
            for request, answer in zip(requests, answers, strict=True)
            for r in answer_rejections(request, answer, rows, builder, load_id)
        ]
        spool_rejections(more, rejections_dir)
        rejected = rejected[:rejected_locally] + more
    else:
        spool_rejections(rejected, rejections_dir)
    totals_for(settings).add(
        rows=len(rows),
        accepted=len(rows) - len(rejected),
        requests=len(requests),
        item_bytes=item_bytes,
        rejected=rejected,
    )


def python_rows(items: Any, slice_rows: int = 5000) -> list[dict[str, Any]]:
    """An Arrow batch (or a list) as Python rows, converted a slice at a time and cleaned as they come
    (:func:`row_cleaner`), so a batch is held once as Python objects, not twice."""
    if not hasattr(items, "to_pylist"):
        return list(items)
    if items.num_rows == 0:
        return []
    first = items.slice(0, 1).to_pylist()[0]
    clean = row_cleaner(first)
    out: list[dict[str, Any]] = []
    for start in range(0, items.num_rows, slice_rows):
        out.extend(clean(row) for row in items.slice(start, slice_rows).to_pylist())
    return out


def arrow_rows(batch: Any, op: Operation) -> list[dict[str, Any]]:
    """An Arrow record batch of a job file as Python rows, the costly conversions done by Arrow: dlt's own
    columns are dropped (unless a variant column needs :func:`clean_row`), and timestamp columns become
    unix seconds (ints), which is what every operation sends for a time (``created_at``, ``timestamp``,
    ``last_used``, date attributes and event data) and ~7x cheaper than building timezone-aware datetimes.
    Left as datetimes: the key columns (a row key is the values' text), and every column of an event table
    with no declared key, whose row key (and so its events' ULIDs) hashes the whole row as it was read."""
    import pyarrow as pa
    import pyarrow.compute as pc

    names = batch.schema.names
    if not any(VARIANT.match(name) for name in names):
        keep = [i for i, name in enumerate(names) if not name.startswith("_dlt_")]
        if len(keep) < len(names):
            batch = batch.select(keep)
    if op.kind in EVENT_KINDS and not op.key:
        return batch.to_pylist()
    per_unit = {"s": 1, "ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000}
    columns, changed = list(batch.columns), False
    for i, field in enumerate(batch.schema):
        if pa.types.is_timestamp(field.type) and field.name not in op.key:
            seconds = pc.divide(columns[i].cast(pa.int64()), per_unit[field.type.unit])  # truncates, like int()
            columns[i], changed = seconds, True
    if changed:
        batch = pa.RecordBatch.from_arrays(columns, names=batch.schema.names)
    return batch.to_pylist()


def row_cleaner(sample: Mapping[str, Any]) -> Any:
    """A function giving rows as the source had them (:func:`clean_row`), fast when nothing but dlt's own
    columns needs removing (every row of a parquet batch has the same columns)."""
    if any(VARIANT.match(name) for name in sample):
        return clean_row
    keep = [name for name in sample if not name.startswith("_dlt_")]
    if len(keep) == len(sample):
        return lambda row: row
    return lambda row: {name: row[name] for name in keep}


def push_file(
    path: str,
    table: Mapping[str, Any],
    settings: Settings,
    operations: Mapping[str, str] | None = None,
    key: str | None = None,
    rejections_dir: str | None = None,
    dry_run: bool = False,
    slice_rows: int = SLICE_ROWS,
    checkpoint_seconds: float = CHECKPOINT_SECONDS,
) -> None:
    """Send one load job's parquet file, streaming: ``slice_rows`` rows at a time become Python rows, items
    are packed across the whole file (one partly filled request per file) and sent while the next rows are
    built, with at most ``2 * workers`` requests held. Every ``checkpoint_seconds`` the count of leading rows
    that are done (sent and answered, or rejected and spooled) is written to a checkpoint file next to the
    rejections spool; a job that runs again (after a kill) starts from there."""
    import pyarrow.parquet as pq

    op = operation_for(table, operations, key, settings.api)
    builder = Builder(op, table["name"], settings.api)
    packer = Packer(settings.api, op.arg if op.kind.startswith("segment") else None)
    folder = spool_dir(rejections_dir)
    checkpoint = Checkpoint(folder, path)
    start = checkpoint.read()
    totals = totals_for(settings)
    load_id = os.path.basename(os.path.dirname(os.path.dirname(path)))
    queue: RequestQueue | None = None
    if not dry_run:
        client = client_for(settings)

        def send(request: Request) -> dict[str, Any]:
            return client.request(
                "POST", request.path, params=request.params, body=orjson.Fragment(request.body()), table=table["name"]
            )

        def done(request: Request, answer: dict[str, Any]) -> None:
            rejected = answer_rejections(request, answer, [], builder, load_id)
            spool_rejections(rejected, folder)
            totals.add(requests=1, accepted=len(request.rows) - len(rejected), rejected=rejected)

        queue = RequestQueue(send, settings.workers, on_done=done, keep_answers=False)
    index = 0
    last_checkpoint = time.monotonic()
    clean = None
    try:
        with pq.ParquetFile(path) as reader:
            for index, batch in file_batches(reader, start, slice_rows):
                rows = arrow_rows(batch, op)
                clean = clean or row_cleaner(rows[0])
                local: list[RejectedRow] = []
                item_bytes = 0
                for offset, raw in enumerate(rows):
                    row = clean(raw)
                    try:
                        item = builder.build(index + offset, row)
                    except Rejection as exc:
                        local.append(
                            RejectedRow(builder.table, builder.key(row), op.text, exc.reason, exc.field,
                                        exc.message[:MESSAGE_CHARS], load_id)
                        )
                        continue
                    if item.channel == "batch":
                        item_bytes += len(item.body)
                    for request in packer.add(item, row):
                        if queue is not None:
                            queue.submit(request)
                        else:
                            totals.add(requests=1, accepted=len(request.rows))
                spool_rejections(local, folder)
                totals.add(rows=len(rows), item_bytes=item_bytes, rejected=local)
                index += len(rows)
                if queue is not None and time.monotonic() - last_checkpoint >= checkpoint_seconds:
                    checkpoint.write(done_rows(index, packer, queue))
                    last_checkpoint = time.monotonic()
        for request in packer.flush():
            if queue is not None:
                queue.submit(request)
            else:
                totals.add(requests=1, accepted=len(request.rows))
    finally:
        if queue is not None:
            queue.close()  # raises the first failure, after the requests in flight end
    checkpoint.clear()


def file_batches(reader: Any, start: int, slice_rows: int) -> Iterator[tuple[int, Any]]:
    """``(index of its first row, batch)`` of a parquet file's rows from row ``start`` on, ``slice_rows`` at a
    time, reading one row group at a time: ``iter_batches`` reads ahead over the row groups of a large file,
    so its memory grew with the file (+30 MB from 100k to 1M rows); row groups before ``start`` are skipped
    unread."""
    index = 0
    for group in range(reader.num_row_groups):
        rows = reader.metadata.row_group(group).num_rows
        if index + rows <= start:
            index += rows
            continue
        table = reader.read_row_group(group, use_threads=False)
        if index < start:
            table, index = table.slice(start - index), start
        for batch in table.to_batches(max_chunksize=slice_rows):
            if batch.num_rows:
                yield index, batch
                index += batch.num_rows
        del table


def done_rows(next_row: int, packer: Packer, queue: RequestQueue) -> int:
    """Leading rows of the file that are done: before the first row of any request still open."""
    candidates = [next_row, packer.first_open_row(), queue.first_open_row()]
    return min(c for c in candidates if c is not None)


class Checkpoint:
    """The number of leading rows of one load job file that are done, in a small file (atomic writes)."""

    def __init__(self, folder: str, job_path: str) -> None:
        load_id = os.path.basename(os.path.dirname(os.path.dirname(job_path)))
        table, file_id = os.path.basename(job_path).split(".")[:2]  # <table>.<file id>.<retry>.parquet
        self.path = os.path.join(folder, "checkpoints", f"{load_id}.{table}.{file_id}")

    def read(self) -> int:
        try:
            with open(self.path) as handle:
                return int(handle.read().strip() or 0)
        except (OSError, ValueError):
            return 0

    def write(self, rows: int) -> None:
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        temporary = self.path + ".tmp"
        with open(temporary, "w") as handle:
            handle.write(str(rows))
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, self.path)

    def clear(self) -> None:
        try:
            os.remove(self.path)
        except OSError:
            pass


@dlt.destination(
    name="customerio",
    loader_file_format="parquet",
    batch_size=0,  # the destination gets each load job's file and streams it (push_file)
    skip_dlt_columns_and_tables=False,  # the rows' _dlt_load_id names the rejections' load; _dlt tables skipped
    max_table_nesting=0,
    max_parallel_load_jobs=1,
    loader_parallelism_strategy="sequential",
)
def customerio(
    items: Any,
    table: TTableSchema,
    site_id: dlt.TSecretStrValue = None,
    api_key: dlt.TSecretStrValue = None,
    write_key: dlt.TSecretStrValue = None,
    region: str = "us",
    base_url: str = None,
    api: str = "track",
    rate_limit: float = limits.DEFAULT_RATE,
    workers: int = 4,
    operations: dict = None,  # noqa: B006 - dlt config: table name -> operation
    key: str = None,
    rejections_dir: str = None,
    dry_run: bool = False,
    slice_rows: int = SLICE_ROWS,
    checkpoint_seconds: float = CHECKPOINT_SECONDS,
) -> None:
    """Push one load job file (or, with a ``batch_size`` set, one batch) of a table's rows (see the module
    docstring)."""
    if str(table["name"]).startswith("_dlt"):
        return
    if isinstance(items, str):
        settings = settings_from(site_id, api_key, write_key, region, base_url, api, rate_limit, workers)
        push_file(items, table, settings, operations, key, rejections_dir, dry_run, slice_rows, checkpoint_seconds)
        return
    load_id = ""
    if hasattr(items, "column") and "_dlt_load_id" in items.schema.names and items.num_rows:
        load_id = str(items.column("_dlt_load_id")[0].as_py() or "")
    rows = python_rows(items)
    settings = settings_from(site_id, api_key, write_key, region, base_url, api, rate_limit, workers)
    push_batch(rows, table, settings, operations, key, rejections_dir, dry_run, load_id or None)


def customerio_track(
    site_id: str | None = None,
    api_key: str | None = None,
    region: str | None = None,
    base_url: str | None = None,
    api: str | None = None,
    write_key: str | None = None,
    operations: Mapping[str, str] | None = None,
    **settings: Any,
) -> Any:
    """The destination (a dlt destination factory). Values not given here come from dlt config
    (``[destination.customerio]``), then from ``CUSTOMERIO_SITE_ID`` / ``CUSTOMERIO_TRACK_API_KEY`` /
    ``CUSTOMERIO_CDP_API_KEY``; ``api="cdp"`` selects the Data Pipelines transport. Building it sends
    nothing and changes no setting."""
    given: dict[str, Any] = {
        "site_id": site_id,
        "api_key": api_key,
        "write_key": write_key,
        "region": region,
        "base_url": base_url,
        "api": api,
        "operations": dict(operations) if operations else None,
        **settings,
    }
    for name, env in ENV.items():
        if (
            given.get(name) is None
            and dlt.config.get(f"destination.customerio.{name}") is None
            and dlt.secrets.get(f"destination.customerio.{name}") is None
            and os.environ.get(env)
        ):
            given[name] = os.environ[env]
    return customerio(**{k: v for k, v in given.items() if v is not None})
