"""The people the warehouse already holds attributes for, read from the destination once per run.

An incremental run re-reads `customer_attributes` for new people. Which people are new is derived from the
destination's own `customer_attributes` table (live rows), not kept in dlt state: the state would grow
with the workspace and be committed with every load. The cio_ids are read once, in chunks, and kept as a
sorted array of 64-bit hashes (8 bytes a person), so each search page is checked in O(page · log people).
A hash collision (a chance of about n² / 2⁶⁵ a run: 1 in 30 million runs at a million people) makes a new
person look known until the next full refresh (``attributes_full_refresh_days``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

import dlt
import numpy as np

from .context import DESTINATION_LOCK

logger = logging.getLogger("customerio_source")

TABLE = "customer_attributes"
CHUNK = 50_000


class KnownPeople:
    """A set of cio_ids as sorted hashes: ``in`` and :meth:`unknown` only."""

    def __init__(self, hashes: np.ndarray) -> None:
        self._hashes = sorted_unique(hashes)

    def __len__(self) -> int:
        return int(self._hashes.size)

    def __contains__(self, cio_id: str) -> bool:
        return bool(self._lookup([cio_id])[0])

    def _lookup(self, cio_ids: list[str]) -> np.ndarray:
        wanted = np.fromiter((hash(c) for c in cio_ids), dtype=np.int64, count=len(cio_ids))
        found = np.searchsorted(self._hashes, wanted)
        found[found >= self._hashes.size] = 0
        return self._hashes[found] == wanted if self._hashes.size else np.zeros(len(cio_ids), dtype=bool)

    def unknown(self, cio_ids: list[str]) -> set[str]:
        """The ids of ``cio_ids`` not in the set."""
        if not cio_ids:
            return set()
        hits = self._lookup(cio_ids)
        return {cio for cio, hit in zip(cio_ids, hits, strict=True) if not hit}

    @classmethod
    def of(cls, cio_ids: Iterable[str]) -> KnownPeople:
        return cls(np.fromiter((hash(c) for c in cio_ids), dtype=np.int64))


def sorted_unique(values: np.ndarray) -> np.ndarray:
    """The distinct ``values``, sorted: one sort and a mask. ``np.unique`` of NumPy 2.4 hashes int64 arrays
    in many small allocations that the allocator keeps: 38 MB more for a million hashes, 30 MB of it kept
    after the call (this takes the 8 MB the sorted copy needs and gives it back)."""
    ordered = np.sort(values)
    if ordered.size < 2:
        return ordered
    keep = np.empty(ordered.size, dtype=bool)
    keep[0] = True
    np.not_equal(ordered[1:], ordered[:-1], out=keep[1:])
    return ordered[keep]


def known_in_destination() -> KnownPeople | None:
    """Live `customer_attributes` cio_ids of the destination of the pipeline now extracting; None when the
    destination has no such table yet (a first run) or cannot be read (then everyone is re-read)."""
    try:
        pipeline = dlt.current.pipeline()
    except Exception:  # noqa: BLE001 - not inside a pipeline run (a resource iterated by hand)
        return None
    queries = (
        "SELECT cio_id FROM {table} WHERE _cio_deleted_at IS NULL",
        "SELECT cio_id FROM {table}",  # a table loaded before delete marking had the column
    )
    for sql in queries:
        try:
            with DESTINATION_LOCK, pipeline.sql_client() as client:
                qualified = client.make_qualified_table_name(TABLE)
                hashes: list[np.ndarray] = []
                with client.execute_query(sql.format(table=qualified)) as cursor:
                    while True:
                        rows = cursor.fetchmany(CHUNK)
                        if not rows:
                            break
                        hashes.append(np.fromiter((hash(str(r[0])) for r in rows), dtype=np.int64, count=len(rows)))
            return KnownPeople(np.concatenate(hashes) if hashes else np.empty(0, dtype=np.int64))
        except Exception as exc:  # noqa: BLE001 - no table yet, or no such column: try the next, else None
            logger.debug("known people: %s failed: %s", TABLE, type(exc).__name__)
    return None
