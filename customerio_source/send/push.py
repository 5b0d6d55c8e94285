"""Pushing rows: build items, reject what cannot be sent, pack requests by bytes, send in per-person order.

- **Packing.** Batch items go, in row order, into requests of at most ``REQUEST_BYTES`` (500 KB) bodies
  ``{"batch":[...]}``; v1 calls (anonymous events) go one per request; manual-segment rows become
  ``add_customers``/``remove_customers`` calls of at most 1,000 ids.
- **Order.** A request waits for every earlier request that names one of its people or objects, so one
  person's operations apply in row order (an identify before that person's events; the last identify
  wins) while requests for different people go in parallel (``workers`` threads, one shared limiter).
- **Rejections.** Rows the limits refuse never leave the process; items a 207 (or a 200 carrying
  ``errors``) names by ``batch_index`` are rejected with Customer.io's reason. Either way the row is
  reported (:class:`RejectedRow`): source table, row key, operation, reason, field, message, load id.
"""

from __future__ import annotations

import hashlib
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any

import orjson

from . import limits
from .operations import Builder, Item
from .rows import Rejection

BATCH_PATHS = {"track": "/api/v2/batch", "cdp": "/batch"}
WRAPPER = (b'{"batch":[', b"]}")
WRAPPER_BYTES = len(WRAPPER[0]) + len(WRAPPER[1])
MESSAGE_CHARS = 300


@dataclass
class RejectedRow:
    """One row that ended in ``customerio_rejections``."""

    source_table: str
    row_key: str
    operation: str
    reason: str
    field: str
    message: str
    load_id: str

    def record(self) -> dict[str, Any]:
        out = asdict(self)
        digest = hashlib.blake2b(
            "\x00".join(
                (self.load_id, self.source_table, self.row_key, self.operation, self.reason, self.field)
            ).encode(),
            digest_size=12,
        )
        out["rejection_id"] = digest.hexdigest()
        return out


@dataclass
class Request:
    """One HTTP request to send: its body parts, the rows behind them, the people/objects it names."""

    channel: str
    rows: list[int] = field(default_factory=list)
    parts: list[bytes] = field(default_factory=list)
    size: int = WRAPPER_BYTES
    entities: set[str] = field(default_factory=set)
    path: str = ""
    params: dict[str, str] | None = None
    source: list[Any] = field(default_factory=list)  # the rows themselves, when streaming (207 handling)

    def body(self) -> bytes:
        if self.channel == "batch":
            return WRAPPER[0] + b",".join(self.parts) + WRAPPER[1]
        return self.parts[0]  # a v1 call, a segment call, a sealed batch

    def seal(self) -> None:
        """Keep only what sending and answering need: the body in one piece (not one bytes object per item)
        and no entity set (its order was taken): a request waiting to be sent holds half the memory."""
        if self.channel == "batch":
            self.parts = [WRAPPER[0] + b",".join(self.parts) + WRAPPER[1]]
            self.channel = "sealed"
        self.entities = set()


@dataclass
class PushTotals:
    """What pushes in this process did (thread-safe counters)."""

    rows: int = 0
    accepted: int = 0
    rejected: int = 0
    requests: int = 0
    item_bytes: int = 0
    reasons: Counter = field(default_factory=Counter)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(
        self,
        rows: int = 0,
        accepted: int = 0,
        requests: int = 0,
        item_bytes: int = 0,
        rejected: Iterable[RejectedRow] = (),
    ) -> None:
        with self._lock:
            self.rows += rows
            self.accepted += accepted
            self.requests += requests
            self.item_bytes += item_bytes
            for r in rejected:
                self.rejected += 1
                self.reasons[r.reason] += 1


def plan(rows: Iterable[Mapping[str, Any]], builder: Builder, load_id: str) -> tuple[list[Item], list[RejectedRow]]:
    """Items for the rows that can be sent, and the rows the limits reject."""
    items: list[Item] = []
    rejected: list[RejectedRow] = []
    for index, row in enumerate(rows):
        try:
            items.append(builder.build(index, row))
        except Rejection as exc:
            rejected.append(
                RejectedRow(
                    builder.table,
                    builder.key(row),
                    builder.op.text,
                    exc.reason,
                    exc.field,
                    exc.message[:MESSAGE_CHARS],
                    load_id,
                )
            )
    return items, rejected


class Packer:
    """Packs items, in row order, into requests (see the module docstring); hands out each one when full."""

    def __init__(self, api: str, segment_id: str | None = None) -> None:
        self.api, self.segment_id = api, segment_id
        self.current: Request | None = None
        self.segments: dict[tuple[str, str], Request] = {}

    def add(self, item: Item, row: Any = None) -> list[Request]:
        """Add ``item`` (and, when streaming, its ``row``, for the 207 handling); the requests now full."""
        done = self._add(item)
        if row is not None:
            if item.channel == "batch":
                self.current.source.append(row)  # type: ignore[union-attr]
            elif done:
                done[-1].source.append(row)
            else:
                verb, id_type, _ = item.segment  # type: ignore[misc]
                self.segments[(verb, id_type)].source.append(row)
        return done

    def _add(self, item: Item) -> list[Request]:
        if item.channel == "batch":
            done = []
            current = self.current
            if current is not None and current.size + len(item.body) + 1 > limits.REQUEST_BYTES:
                done.append(current)
                current = None
            if current is None:
                current = self.current = Request("batch", path=BATCH_PATHS[self.api])
            current.size += len(item.body) + (1 if current.parts else 0)
            current.parts.append(item.body)
            current.rows.append(item.row)
            current.entities.update(item.entities)
            return done
        if item.channel == "v1":
            return [Request("v1", [item.row], [item.body], len(item.body), set(item.entities), item.path)]
        verb, id_type, value = item.segment  # type: ignore[misc]
        request = self.segments.get((verb, id_type))
        if request is None:
            request = self.segments[(verb, id_type)] = Request(
                "segment", path=f"/api/v1/segments/{self.segment_id}/{verb}", params={"id_type": id_type}
            )
        request.rows.append(item.row)
        request.parts.append(orjson.dumps(value))
        request.entities.update(item.entities)
        if len(request.rows) >= limits.SEGMENT_IDS_PER_CALL:
            del self.segments[(verb, id_type)]
            return [_segment_call(request)]
        return []

    def first_open_row(self) -> int | None:
        """The first row held in a request not handed out yet."""
        open_rows = [r.rows[0] for r in (self.current, *self.segments.values()) if r is not None and r.rows]
        return min(open_rows) if open_rows else None

    def flush(self) -> list[Request]:
        done = [self.current] if self.current is not None else []
        self.current = None
        done.extend(_segment_call(r) for r in self.segments.values())
        self.segments.clear()
        return done


def _segment_call(request: Request) -> Request:
    request.parts = [b'{"ids":[' + b",".join(request.parts) + b"]}"]
    request.channel = "v1"
    return request


def pack(items: Iterable[Item], api: str, segment_id: str | None = None) -> list[Request]:
    """Every request for ``items`` (see :class:`Packer`)."""
    packer = Packer(api, segment_id)
    requests = [r for item in items for r in packer.add(item)]
    return requests + packer.flush()


def dependencies(requests: list[Request]) -> list[set[int]]:
    """For each request, the earlier requests it must wait for (the last one naming each of its entities)."""
    last: dict[str, int] = {}
    out: list[set[int]] = []
    for index, request in enumerate(requests):
        out.append({last[e] for e in request.entities if e in last})
        for entity in request.entities:
            last[entity] = index
    return out


class RequestQueue:
    """Sends requests as they are submitted, ``workers`` at a time, each after the earlier requests that name
    one of its people or objects; at most ``max_pending`` submitted and not finished (:meth:`submit` waits).
    ``on_done(request, answer)`` runs as each one succeeds. The first failure stops what has not started;
    :meth:`close` raises it once the started requests end, else returns the answers in submission order
    (``keep_answers=False``: none are kept, for a stream of requests)."""

    def __init__(
        self,
        send: Callable[[Request], dict[str, Any]],
        workers: int,
        on_done: Callable[[Request, dict[str, Any]], None] | None = None,
        max_pending: int | None = None,
        keep_answers: bool = True,
    ) -> None:
        self.send, self.on_done, self.keep_answers = send, on_done, keep_answers
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="cio-send") if workers > 1 else None
        self.slots = threading.BoundedSemaphore(max_pending or 2 * max(1, workers))
        self.last: dict[str, int] = {}
        self.done: list[threading.Event] = []
        self.answers: list[dict[str, Any]] = []
        self.requests: list[Request | None] = []
        self.open_rows: dict[int, int] = {}  # request index -> its first row, while not finished
        self.failure: list[BaseException] = []
        self.lock = threading.Lock()

    def submit(self, request: Request) -> None:
        if self.failure:
            return
        self.slots.acquire()
        index = len(self.requests)
        if index and index % 64 == 0:  # forget people whose last request is done: memory stays flat
            self.last = {e: i for e, i in self.last.items() if not self.done[i].is_set()}
        deps = {self.last[e] for e in request.entities if e in self.last}
        for entity in request.entities:
            self.last[entity] = index
        request.seal()
        with self.lock:
            self.requests.append(request)
            self.done.append(threading.Event())
            self.answers.append({})
            self.open_rows[index] = min(request.rows) if request.rows else 0
        if self.pool is None:
            self._task(index, deps)
        else:
            self.pool.submit(self._task, index, deps)

    def _task(self, index: int, deps: set[int]) -> None:
        try:
            for d in deps:
                self.done[d].wait()
            if not self.failure:
                request = self.requests[index]
                answer = self.send(request)
                if self.on_done is not None:
                    self.on_done(request, answer)
                with self.lock:
                    if self.keep_answers:
                        self.answers[index] = answer
                    else:
                        self.requests[index] = None  # its body and rows can go
                    self.open_rows.pop(index, None)
        except BaseException as exc:  # noqa: BLE001 - raised by close() in the caller's thread
            self.failure.append(exc)
        finally:
            self.done[index].set()
            self.slots.release()

    def first_open_row(self) -> int | None:
        """The first row of the requests not finished yet (None: every submitted request succeeded)."""
        with self.lock:
            return min(self.open_rows.values()) if self.open_rows else None

    def close(self) -> list[dict[str, Any]]:
        if self.pool is not None:
            self.pool.shutdown(wait=True)
        if self.failure:
            raise self.failure[0]
        return self.answers


def send_all(requests: list[Request], send: Callable[[Request], dict[str, Any]], workers: int) -> list[dict]:
    """Send every request through a :class:`RequestQueue`; the answers in order."""
    queue = RequestQueue(send, workers)
    for request in requests:
        queue.submit(request)
    return queue.close()


def answer_rejections(
    request: Request, answer: Any, rows: list[Mapping[str, Any]], builder: Builder, load_id: str
) -> list[RejectedRow]:
    """Rows a 207 (or a 200 with ``errors``) names by ``batch_index``."""
    errors = answer.get("errors") if isinstance(answer, dict) else None
    if not isinstance(errors, list):
        return []
    out = []
    for error in errors:
        if not isinstance(error, dict):
            continue
        index = error.get("batch_index")
        if not isinstance(index, int) or not 0 <= index < len(request.rows):
            continue
        row = request.source[index] if request.source else rows[request.rows[index]]
        out.append(
            RejectedRow(
                builder.table,
                builder.key(row),
                builder.op.text,
                str(error.get("reason") or "rejected_by_api")[:60],
                str(error.get("field") or "")[:150],
                str(error.get("message") or "")[:MESSAGE_CHARS],
                load_id,
            )
        )
    return out
