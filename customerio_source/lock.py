"""One run at a time per pipeline: an exclusive lock next to dlt's working folder of the pipeline.

Two runs of one pipeline share that folder and would delete each other's load packages. The lock is an
``flock`` on ``<pipelines_dir>/<pipeline_name>.lock``, so the operating system releases it when the
process ends, however it ends (no stale lock after a crash or a kill). The file holds who took it, for the
message the second run prints. Where ``fcntl`` does not exist (Windows) runs are not locked.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone

import dlt

from .errors import PipelineBusy

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]


def lock_path(pipeline: dlt.Pipeline) -> str:
    return os.path.join(pipeline.pipelines_dir, f"{pipeline.pipeline_name}.lock")


@contextmanager
def pipeline_lock(pipeline: dlt.Pipeline) -> Iterator[None]:
    """Hold the pipeline's lock for the block; raise :class:`PipelineBusy` at once if another run holds it."""
    if fcntl is None:  # pragma: no cover
        yield
        return
    path = lock_path(pipeline)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    handle = open(path, "a+")  # noqa: SIM115 - held open for the whole run
    try:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            raise PipelineBusy(
                f"pipeline {pipeline.pipeline_name!r} is already running ({holder(handle.read())}); "
                f"this run stops without touching it (lock: {path})"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps({
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "since": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC"),
        }))
        handle.flush()
        try:
            yield
        finally:
            handle.seek(0)
            handle.truncate()
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
    finally:
        handle.close()


def holder(text: str) -> str:
    """``pid 123 on host-a since 2026-12-01 19:55:01 UTC`` from the lock file's content."""
    try:
        info = json.loads(text)
        return f"pid {info['pid']} on {info['host']} since {info['since']}"
    except (ValueError, KeyError, TypeError):
        return "another process"
