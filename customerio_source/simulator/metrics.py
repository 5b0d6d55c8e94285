"""Metrics series: bucketing delivery metric timestamps into periods (UTC or America/New_York)."""

from __future__ import annotations

import datetime as dt
from bisect import bisect_right
from collections.abc import Iterable
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


def delivery_series(ws: Workspace, indices: Iterable[int], bounds: list[int], names: list[str],
                    channel: str | None = None) -> dict[str, list[int]]:
    """Count delivery metric timestamps (and ``created``) into the buckets ``bounds`` (len n+1)."""
    n = len(bounds) - 1
    series = {k: [0] * n for k in names}
    lo, hi = bounds[0], bounds[-1]
    for i in indices:
        created = ws.d_created[i]
        if created >= hi:
            break
        if created < lo - 4 * DAY:
            continue
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
