"""``customerio_rejections``: every row a push could not apply, next to the data it came from.

The destination appends rejected rows to a spool file per load package (JSON lines, flushed and synced
before dlt records the batch as done, so a kill loses none). :func:`load_rejections` then loads the spool
into the table ``customerio_rejections`` of a warehouse dataset (the one the rows were read from, or a
local DuckDB file) through :func:`customerio_source.runner.load`, merging on ``rejection_id`` (a hash of
load id, table, row key, operation, reason and field: a batch sent again after a crash rejects the same
rows with the same ids), and removes the spool files it loaded. Rows hold no credential and no row value
beyond the row key.
"""

from __future__ import annotations

import os
import threading
from collections import Counter
from collections.abc import Iterable, Iterator
from typing import Any

import dlt
import orjson

from .push import RejectedRow

TABLE = "customerio_rejections"
SPOOL_FOLDER = "customerio_rejections"
COLUMNS = {
    "rejection_id": {"data_type": "text", "nullable": False},
    "source_table": {"data_type": "text"},
    "row_key": {"data_type": "text"},
    "operation": {"data_type": "text"},
    "reason": {"data_type": "text"},
    "field": {"data_type": "text"},
    "message": {"data_type": "text"},
    "load_id": {"data_type": "text"},
}


def spool_dir(rejections_dir: str | None = None) -> str:
    """``rejections_dir``, else ``customerio_rejections`` in the running pipeline's working folder."""
    if rejections_dir:
        return rejections_dir
    try:
        return os.path.join(dlt.current.pipeline().working_dir, SPOOL_FOLDER)
    except Exception:  # noqa: BLE001 - no active pipeline (a direct call): the current folder
        return os.path.abspath(SPOOL_FOLDER)


_SPOOL_LOCK = threading.Lock()


def spool_rejections(rejected: list[RejectedRow], rejections_dir: str | None = None) -> None:
    """Append ``rejected`` to the load's spool file and sync it to disk (from any thread)."""
    if not rejected:
        return
    with _SPOOL_LOCK:
        _spool(rejected, rejections_dir)


def _spool(rejected: list[RejectedRow], rejections_dir: str | None) -> None:
    folder = spool_dir(rejections_dir)
    os.makedirs(folder, exist_ok=True)
    by_load: dict[str, list[bytes]] = {}
    for row in rejected:
        by_load.setdefault(row.load_id or "no_load_id", []).append(orjson.dumps(row.record()))
    for load_id, lines in by_load.items():
        with open(os.path.join(folder, f"{load_id}.jsonl"), "ab") as handle:
            handle.write(b"\n".join(lines) + b"\n")
            handle.flush()
            os.fsync(handle.fileno())


def spool_files(rejections_dir: str) -> list[str]:
    if not os.path.isdir(rejections_dir):
        return []
    return sorted(os.path.join(rejections_dir, n) for n in os.listdir(rejections_dir) if n.endswith(".jsonl"))


def read_spool(paths: Iterable[str]) -> Iterator[dict[str, Any]]:
    """The spooled rejections, once each (a replayed batch spools the same ids again)."""
    seen: set[str] = set()
    for path in paths:
        with open(path, "rb") as handle:
            for line in handle:
                line = line.strip()
                if not line:
                    continue
                try:
                    record = orjson.loads(line)
                except orjson.JSONDecodeError:  # a line cut by a kill before its sync: its batch runs again
                    continue
                if record["rejection_id"] not in seen:
                    seen.add(record["rejection_id"])
                    yield record


def rejections_source(records: list[dict[str, Any]]) -> Any:
    """A dlt source with the one table ``customerio_rejections`` (merged on ``rejection_id``)."""

    @dlt.resource(name=TABLE, write_disposition="merge", primary_key="rejection_id", columns=COLUMNS)
    def rejections() -> Iterator[list[dict[str, Any]]]:
        yield records

    @dlt.source(name="customerio_rejections")
    def source() -> Any:
        return rejections

    return source()


def load_rejections(
    rejections_dir: str, destination: Any, dataset_name: str, pipeline_name: str, pipelines_dir: str | None = None
) -> Counter:
    """Load the spooled rejections into ``dataset_name.customerio_rejections``; their count by reason."""
    from ..runner import load

    paths = spool_files(rejections_dir)
    records = list(read_spool(paths))
    reasons: Counter = Counter(r["reason"] for r in records)
    if records:
        pipeline = dlt.pipeline(
            pipeline_name=pipeline_name, destination=destination, dataset_name=dataset_name, pipelines_dir=pipelines_dir
        )
        load(pipeline, rejections_source(records))
    for path in paths:
        os.remove(path)
    return reasons
