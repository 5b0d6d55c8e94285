"""Metrics series: bucketing delivery metric timestamps into periods (UTC or America/New_York)."""

from __future__ import annotations

import datetime as dt
from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Iterable
from itertools import chain
from typing import TYPE_CHECKING

from ._util import DAY, EASTERN, mix

if TYPE_CHECKING:
    from .workspace import Workspace

# max steps per period for the v1 period/steps endpoints (DIGEST 3.1)
MAX_STEPS = {"hours": 24, "days": 45, "weeks": 12, "months": 121}
DEFAULT_STEPS = {"hours": 24, "days": 45, "weeks": 12, "months": 12}
RES_ALIASES = {"hours": "hours", "hourly": "hours", "days": "days", "daily": "days", "weeks": "weeks",
               "weekly": "weeks", "months": "months", "monthly": "months"}
SERIES_C = ["attempted", "bounced", "clicked", "converted", "created", "deferred", "delivered", "drafted", "failed",
            "human_clicked", "human_opened", "link_untracked", "machine_clicked", "open_untracked", "opened",
            "prefetch_opened", "replied", "sent", "spammed", "suppressed", "topic_unsubscribed",
            "tracking_consent_denied", "tracking_consent_granted", "undeliverable", "unsubscribed", "untracked"]
SERIES_V1 = ["2xx", "3xx", "4xx", "5xx", "attempted", "bounced", "clicked", "human_clicked", "prefetch_clicked",
             "converted", "created", "deferred", "delivered", "drafted", "failed", "opened", "human_opened",
             "prefetch_opened", "sent", "spammed", "suppressed", "undeliverable", "topic_unsubscribed",
             "unsubscribed"]
# delivery metric -> series names it counts toward
_FANOUT = {"sent": ("sent", "attempted"), "attempted": ("attempted",), "delivered": ("delivered",),
           "opened": ("opened", "human_opened"), "clicked": ("clicked", "human_clicked"),
           "converted": ("converted",), "bounced": ("bounced",), "spammed": ("spammed",),
           "unsubscribed": ("unsubscribed",), "failed": ("failed",), "undeliverable": ("undeliverable",),
           "drafted": ("drafted",), "dropped": ("suppressed",)}


def _local_midnight(d: dt.date, tz: dt.tzinfo) -> int:
    return int(dt.datetime(d.year, d.month, d.day, tzinfo=tz).timestamp())


def floor_period(ts: int, period: str, tz: dt.tzinfo) -> int:
    """Start of the period containing ``ts`` (days at local 00:00, weeks on Sunday, months on the 1st)."""
    if period == "hours":
        return ts - ts % 3600 if tz is dt.timezone.utc else int(
            dt.datetime.fromtimestamp(ts, tz).replace(minute=0, second=0, microsecond=0).timestamp())
    d = dt.datetime.fromtimestamp(ts, tz).date()
    if period == "weeks":
        d -= dt.timedelta(days=(d.weekday() + 1) % 7)
    elif period == "months":
        d = d.replace(day=1)
    return _local_midnight(d, tz)


def shift_period(start: int, period: str, k: int, tz: dt.tzinfo) -> int:
    """The period start ``k`` periods after (or before, k<0) the period start ``start``."""
    if period == "hours":
        return start + 3600 * k
    d = dt.datetime.fromtimestamp(start, tz).date()
    if period == "days":
        return _local_midnight(d + dt.timedelta(days=k), tz)
    if period == "weeks":
        return _local_midnight(d + dt.timedelta(days=7 * k), tz)
    m = d.year * 12 + d.month - 1 + k
    return _local_midnight(dt.date(m // 12, m % 12 + 1, 1), tz)


def steps_buckets(now: int, period: str, steps: int, tz: dt.tzinfo = EASTERN) -> list[int]:
    """``steps`` period starts, oldest first; the last one is the current (partial) period, then its end."""
    cur = floor_period(now, period, tz)
    starts = [shift_period(cur, period, -k, tz) for k in range(steps - 1, -1, -1)]
    return starts + [shift_period(cur, period, 1, tz)]


def range_buckets(start: int, end: int, period: str, tz: dt.tzinfo, limit: int = 5000) -> list[int]:
    """Period starts covering [start, end), plus the final boundary."""
    b = floor_period(start, period, tz)
    out = [b]
    while out[-1] < end and len(out) <= limit:
        out.append(shift_period(out[-1], period, 1, tz))
    if len(out) == 1:
        out.append(shift_period(b, period, 1, tz))
    return out


METRIC_LAG = 5 * DAY
"""Longer than a delivery's own time from creation to its last metric timestamp (an open up to ~3 days
after delivery, a conversion up to a day after the click): of the deliveries created before
``bounds[0] - METRIC_LAG`` only those a change step gave late engagement can count in a bucket."""


def delivery_series(ws: Workspace, indices: array | range, bounds: list[int], names: list[str],
                    channel: str | None = None) -> dict[str, list[int]]:
    """Count delivery metric timestamps (and ``created``) into the buckets ``bounds`` (len n+1)."""
    n = len(bounds) - 1
    series = {k: [0] * n for k in names}
    lo, hi = bounds[0], bounds[-1]
    first = bisect_left(indices, bisect_left(ws.d_created, lo - METRIC_LAG))  # indices ascend as created does
    # late engagement (a change step's overlay) can give an old delivery a new open: those are visited too
    before = indices[first] if first < len(indices) else len(ws.d_created)
    late = sorted(i for i in ws.overlaid_deliveries() if i < before and _holds(indices, i))
    for i in chain(late, (indices[pos] for pos in range(first, len(indices)))):
        created = ws.d_created[i]
        if created >= hi:
            break
        if channel and ws.delivery_channel(i) != channel:
            continue
        if created >= lo and "created" in series:
            series["created"][bisect_right(bounds, created) - 1] += 1
        for metric, ts in ws.delivery_metrics(i).items():
            if lo <= ts < hi:
                b = bisect_right(bounds, ts) - 1
                for name in _FANOUT.get(metric, ()):
                    if name in series:
                        series[name][b] += 1
    return series


def _holds(indices: array | range, i: int) -> bool:
    pos = bisect_left(indices, i)
    return pos < len(indices) and indices[pos] == i


def metric_index(ws: Workspace) -> dict[tuple[str, int], dict[str, array]]:
    """Per parent key, per series name, the ascending timestamps of its deliveries that count toward it (and
    their ``created``): what :func:`parent_series` counts by bisection. One pass over the deliveries (each
    is listed under two parents: its campaign/broadcast/newsletter and its action/content)."""
    found: dict[tuple[str, int], dict[str, list[int]]] = {key: {"created": []} for key in ws.parent_keys()}
    for i in range(ws.n_deliveries()):
        parents = [found[key] for key in ws.delivery_parents(i)]
        for stamps in parents:
            stamps["created"].append(ws.d_created[i])
        for metric, ts in ws.delivery_metrics(i).items():
            for name in _FANOUT.get(metric, ()):
                for stamps in parents:
                    stamps.setdefault(name, []).append(ts)
    return {key: {name: array("q", sorted(stamps)) for name, stamps in by_name.items()}
            for key, by_name in found.items()}


def parent_series(ws: Workspace, key: tuple[str, int], bounds: list[int], names: list[str],
                  channel: str | None = None) -> dict[str, list[int]]:
    """:func:`delivery_series` of a parent's deliveries: from the workspace's metric index when it is
    rendered and current (a few bisections per bucket, whatever the parent's size), else by scanning them."""
    index = ws.metric_index(key) if channel is None else None
    if index is None:
        return delivery_series(ws, ws.delivery_indices(key), bounds, names, channel)
    n = len(bounds) - 1
    series = {}
    for name in names:
        stamps = index.get(name)
        if stamps is None:
            series[name] = [0] * n
            continue
        cuts = [bisect_left(stamps, b) for b in bounds]
        series[name] = [cuts[k + 1] - cuts[k] for k in range(n)]
    return series


def links_for(child_id: int) -> list[dict]:
    """Deterministic tracked links of an action/content."""
    return [{"id": child_id * 10 + k, "href": f"https://example.com/l/{child_id}/{k}"}
            for k in range(1 + child_id % 3)]


def link_series(ws: Workspace, indices: Iterable[int], bounds: list[int], links_by_child: dict[int, list[dict]],
                channel: str | None = None) -> list[dict]:
    """Per-link clicked series; each click goes to one of its action's links (by delivery hash)."""
    n = len(bounds) - 1
    per: dict[int, list[int]] = {}
    lo, hi = bounds[0], bounds[-1]
    for i in indices:
        created = ws.d_created[i]
        if created >= hi:
            break
        if created < lo - 4 * DAY or (channel and ws.delivery_channel(i) != channel):
            continue
        ts = ws.delivery_metrics(i).get("clicked")
        if ts is None or not lo <= ts < hi:
            continue
        child = ws.cat.sources[ws.d_src[i]][2] or ws.cat.sources[ws.d_src[i]][1]
        links = links_by_child.get(child)
        if not links:
            continue
        link = links[mix(i) % len(links)]
        per.setdefault(link["id"], [0] * n)[bisect_right(bounds, ts) - 1] += 1
    out = []
    for links in links_by_child.values():
        for link in links:
            clicks = per.get(link["id"], [0] * n)
            out.append({"link": dict(link), "metric": {"series": {
                "clicked": clicks, "human_clicked": list(clicks), "machine_clicked": [0] * n}}})
    return out
