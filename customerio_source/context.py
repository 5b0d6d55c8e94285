"""Per-run state shared by all resources: the client, the interval, options and the small parent lists."""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import partial
from typing import Any, TypeVar

from .catalogue import CATALOGUE, TableSpec
from .client import CustomerIOClient, path_value
from .errors import NotFoundError
from .transform import add_parent_columns

logger = logging.getLogger("customerio_source")

T = TypeVar("T")
R = TypeVar("R")


DESTINATION_LOCK = threading.Lock()
"""Held while a resource reads the destination (``pipeline.sql_client()``): dlt's configuration contexts
are mangled when two extract threads enter and leave a client at the same time."""

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
"""dlt needs an `initial_value` whenever an `end_value` is set: an end-only interval starts here."""


@dataclass(frozen=True)
class Interval:
    """A half-open time range [start, end); either side may be open (None)."""

    start: datetime | None = None
    end: datetime | None = None

    @property
    def bounded(self) -> bool:
        return self.start is not None or self.end is not None

    @property
    def initial_value(self) -> datetime | None:
        """The `initial_value` for dlt incremental cursors (EPOCH when only the end is bounded)."""
        if self.start is None and self.end is not None:
            return EPOCH
        return self.start

    def contains(self, value: datetime | None) -> bool:
        if value is None:
            return not self.bounded
        if self.start is not None and value < self.start:
            return False
        return not (self.end is not None and value >= self.end)


@dataclass
class RunContext:
    """Everything a resource needs besides its own declaration."""

    client: CustomerIOClient
    interval: Interval = field(default_factory=Interval)
    messages_lookback_days: float = 3.0
    activities_include_deleted: bool = False
    metrics_periods: dict[str, tuple[str, ...]] = field(default_factory=dict)
    attribute_columns: tuple[str, ...] = ()
    concurrency: int = 4
    attributes_refresh: str = "changed"
    attributes_full_refresh_days: float = 7.0
    messages_deep_reread_days: float = 7.0
    messages_deep_lookback_days: float = 30.0
    _shared: dict[str, Any] = field(default_factory=dict)
    _lists: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    _list_locks: dict[str, threading.Lock] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def shared(self, key: str, make: Callable[[], T]) -> T:
        """A per-run object shared by resources (made once, thread-safe): e.g. one activity-log scan."""
        with self._lock:
            if key not in self._shared:
                self._shared[key] = make()
            return self._shared[key]

    # -- small lists, fetched once per run and shared by the table and its children ----------------
    def list_rows(self, table: str) -> list[dict[str, Any]]:
        """The raw rows of a small workspace-level list, fetched once per run (thread-safe).

        Rows are shared: callers copy before changing them.
        """
        with self._lock:
            lock = self._list_locks.setdefault(table, threading.Lock())
        with lock:
            if table not in self._lists:
                spec = CATALOGUE[table]
                rows: list[dict[str, Any]] = []
                if spec.per_parent:
                    for children in self.map_unordered(
                        skip_missing(lambda parent: self._children(spec, parent), describe_parent(spec)),
                        self.list_rows(spec.parent),  # type: ignore[arg-type]
                    ):
                        rows.extend(children)
                else:
                    for page in self.read_pages(spec, spec.path):
                        rows.extend(page)
                self._lists[table] = rows
            return self._lists[table]

    def _children(self, spec: TableSpec, parent: dict[str, Any]) -> list[dict[str, Any]]:
        rows = []
        for page in self.read_pages(spec, self.child_path(spec, parent)):
            rows.extend(add_parent_columns(dict(row), parent, spec.parent_columns) for row in page)
        return rows

    def read_pages(
        self, spec: TableSpec, path: str, params: dict[str, Any] | None = None, table: str | None = None
    ) -> Iterator[list[dict[str, Any]]]:
        """Yield the records of each page of a declared endpoint (cursor-paginated or not)."""
        query = dict(spec.params)
        if spec.paginated and spec.page_size:
            query["limit"] = spec.page_size
        query.update(params or {})
        tag = table or spec.name
        if not spec.paginated:
            yield records(self.client.get(path, query, table=tag), spec.envelope)
            return
        for payload in self.client.pages("GET", path, query, table=tag):
            page = records(payload, spec.envelope)
            yield page
            if not page:
                return  # an empty page ends the list even if a cursor came with it

    def child_path(self, spec: TableSpec, parent: dict[str, Any]) -> str:
        return spec.path.format(**{name: path_value(parent[src]) for name, src in spec.path_fields.items()})

    # -- bounded concurrency that keeps memory flat ----------------------------------------------------
    def map_unordered(self, fn: Callable[[T], R], items: Iterable[T], workers: int | None = None) -> Iterator[R]:
        """Apply ``fn`` to items on the run's threads (:func:`interleave`), yielding results as they finish.

        At most ``2 × workers`` results wait to be consumed, so memory stays bounded; all requests still pass
        through the client's one shared rate limiter.
        """
        jobs = [partial(_single, fn, item) for item in items]
        yield from interleave(jobs, max(1, workers or self.concurrency))


class Turns:
    """One page's requests at a time for a transformer that dlt runs once per parent page.

    dlt keeps up to 20 transformer generators going at once (round robin), each with its own threads and
    buffered results: up to 20 x ``concurrency`` requests in flight, and their responses held in memory.
    A generator that does not have the turn yields None,
    which dlt takes as "nothing yet" and goes on with its other sources; the turn passes on when a page
    is done.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()

    def take(self, results: Iterator[T]) -> Iterator[T | None]:
        """None until the turn is free, then the items of ``results`` (a generator, so nothing starts before
        the turn); the turn passes on when they are done or the generator is closed."""
        while not self._lock.acquire(blocking=False):
            yield None
        try:
            yield from results
        finally:
            self._lock.release()


def _single(fn: Callable[[T], R], item: T) -> Iterator[R]:
    yield fn(item)


class Spawn:
    """Yielded by an :func:`interleave` job instead of an item: more jobs to run (e.g. a window split)."""

    def __init__(self, jobs: Iterable[Callable[[], Iterator[Any]]]) -> None:
        self.jobs = list(jobs)


def interleave(
    sources: Iterable[Callable[[], Iterator[T]]], workers: int, max_buffered: int | None = None
) -> Iterator[T]:
    """Run page generators on up to ``workers`` threads and yield their items as they arrive.

    A job may yield :class:`Spawn` to add jobs (they run on the same threads). A bounded queue holds at
    most ``max_buffered`` items (default 2 × workers), so fast producers wait for the consumer and memory
    stays flat. The first error in any job is raised here; the other jobs stop at their next item.
    """
    pending: queue.Queue[Callable[[], Iterator[Any]]] = queue.Queue()
    for job in sources:
        pending.put(job)
    if workers <= 1:
        while not pending.empty():
            for item in pending.get()():
                if isinstance(item, Spawn):
                    for extra in item.jobs:
                        pending.put(extra)
                else:
                    yield item
        return
    buffer: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=max_buffered or 2 * workers)
    stop = threading.Event()
    lock = threading.Lock()
    outstanding = [pending.qsize()]  # jobs queued or running

    def put(message: tuple[str, Any]) -> bool:
        """Hand a message to the consumer; False once the consumer has gone."""
        while not stop.is_set():
            try:
                buffer.put(message, timeout=0.2)
                return True
            except queue.Full:
                continue
        return False

    def worker() -> None:
        try:
            while not stop.is_set():
                try:
                    job = pending.get(timeout=0.05)
                except queue.Empty:
                    with lock:
                        if outstanding[0] == 0:
                            return
                    continue
                try:
                    for item in job():
                        if isinstance(item, Spawn):
                            with lock:
                                outstanding[0] += len(item.jobs)
                            for extra in item.jobs:
                                pending.put(extra)
                        elif not put(("item", item)):
                            return
                finally:
                    with lock:
                        outstanding[0] -= 1
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer
            stop_others = put(("error", exc))
            if stop_others:
                stop.set()
        finally:
            put(("done", None))

    threads = [threading.Thread(target=worker, name="cio-window", daemon=True) for _ in range(workers)]
    for thread in threads:
        thread.start()
    finished = 0
    try:
        while finished < len(threads):
            kind, value = buffer.get()
            if kind == "item":
                yield value
            elif kind == "error":
                raise value
            else:
                finished += 1
    finally:
        stop.set()
        while True:  # unblock producers waiting on a full queue
            try:
                buffer.get_nowait()
            except queue.Empty:
                break


def describe_parent(spec: TableSpec) -> Callable[[dict[str, Any]], str]:
    return lambda parent: f"{spec.parent} {parent.get('id')!r} (for {spec.name})"


def records(payload: dict[str, Any], envelope: str) -> list[dict[str, Any]]:
    """The records under ``envelope``: a list as is, a single object as a one-row list."""
    value = payload.get(envelope)
    if value is None:
        return []
    if isinstance(value, dict):
        return [value]
    return [v if isinstance(v, dict) else {"value": v} for v in value]


def skip_missing(fn: Callable[[T], list[Any]], describe: Callable[[T], str]) -> Callable[[T], list[Any]]:
    """Wrap a per-parent read so a parent deleted meanwhile (404) is skipped with a warning."""

    def wrapped(item: T) -> list[Any]:
        try:
            return fn(item)
        except NotFoundError:
            logger.warning("%s vanished during the run (404); skipped", describe(item))
            return []

    return wrapped
