"""Which people an incremental run must re-read attributes for, without re-reading everyone.

`customers` enumerates every person each run anyway (that is how deletes are seen). An incremental run
re-reads `customer_attributes` only for:

* people the warehouse holds no live attributes for (new people): read from the destination's own
  `customer_attributes` table once per run (:mod:`customerio_source.known_people`), so nothing that grows
  with the workspace is kept in dlt state, and a failed run (whose rows never landed) loses nothing;
* people with a profile-changing activity since the previous run (`attribute_change`, `device_change`,
  `profile_create`, merges, unsubscribes), found by paging `GET /v1/activities` newest first down to the
  previous run's start (minus a margin for clock skew);
* everyone, when no previous run is known (or the destination has no `customer_attributes` yet), when
  `attributes_refresh="full"`, or every `attributes_full_refresh_days` as a safety net for changes the
  activity log does not show.

The resource's dlt state holds two timestamps: when the previous run started and when everyone was last
re-read.

tests/test_people_changes.py proves the result equals a full re-read after a change step.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from .context import RunContext
from .known_people import KnownPeople, known_in_destination

PROFILE_CHANGE_TYPES = frozenset(
    {
        "attribute_change",
        "device_change",
        "profile_create",
        "profile_merge",
        "anon_merge",
        "unsubscribed_action",
        "unsubscribed_email",
        "topic_unsubscribed_email",
    }
)
CLOCK_MARGIN = 3600  # seconds scanned before the previous run's start: clock skew, late-written activities


class PeopleChanges:
    """Per-run decision for `customer_attributes`, shared by the transformer's page calls."""

    def __init__(
        self,
        ctx: RunContext,
        state: dict[str, Any],
        mode: str,
        full_every_days: float,
        known: KnownPeople | None = None,
    ) -> None:
        self.ctx = ctx
        self.state = state
        self.started = int(time.time())
        self._lock = threading.Lock()
        state.pop("known", None)  # versions before 0.2 kept every cio_id here
        since = state.get("since")
        due = time.time() - float(state.get("full_at") or 0) > full_every_days * 86400
        self.full = mode == "full" or since is None or due
        self.known = None if self.full else (known if known is not None else known_in_destination())
        if self.known is None:
            self.full = True
        self.since = int(since or 0)
        self._changed: set[str] | None = None
        state["since"] = self.started  # committed only with this run's load
        if self.full:
            state["full_at"] = self.started

    def select(self, page_ids: list[str]) -> list[str]:
        """The ids of this page whose attributes must be read."""
        if self.full or self.known is None:
            return page_ids
        changed = self.changed()
        new = self.known.unknown(page_ids)
        return [cio for cio in page_ids if cio in new or cio in changed]

    def changed(self) -> set[str]:
        """cio_ids with a profile-changing activity since the previous run (one scan per run)."""
        with self._lock:
            if self._changed is None:
                self._changed = self._scan()
            return self._changed

    def _scan(self) -> set[str]:
        """The run's one activity-log scan (shared with the delivery tables' late engagement), down to the
        previous run's start less ``CLOCK_MARGIN``."""
        from .late_engagement import activity_log

        return activity_log(self.ctx).people_changed_since(self.since - CLOCK_MARGIN)
