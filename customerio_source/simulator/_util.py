"""Small deterministic helpers: 64-bit mixing, ids, time arithmetic."""

from __future__ import annotations

import base64
import datetime as dt
import struct
from zoneinfo import ZoneInfo

M64 = (1 << 64) - 1
DAY = 86_400
UTC = dt.timezone.utc
EASTERN = ZoneInfo("America/New_York")
_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def mix(x: int) -> int:
    """splitmix64 finalizer: a fast, well-spread 64-bit hash of an int."""
    x = (x + 0x9E3779B97F4A7C15) & M64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & M64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & M64
    return x ^ (x >> 31)


def salt(seed: int, name: str) -> int:
    """A per-purpose salt so different streams of the same index are independent."""
    h = seed & M64
    for ch in name.encode():
        h = mix(h ^ ch)
    return h


_ID_STRUCT = struct.Struct(">HIQQI")


def delivery_id(ws_tag: int, index: int, h: int) -> str:
    """Base64-ish, unique delivery id that encodes its index (26 bytes -> 36 chars, one '=')."""
    raw = _ID_STRUCT.pack(ws_tag, index, h, (h * 0x2545F4914F6CDD1D) & M64, (h >> 17) & 0xFFFFFFFF)
    return base64.urlsafe_b64encode(raw).decode()


def delivery_index(message_id: str, ws_tag: int) -> int | None:
    """Inverse of :func:`delivery_id` (index only; the caller re-derives and compares)."""
    try:
        raw = base64.urlsafe_b64decode(message_id.encode())
    except (ValueError, TypeError):
        return None
    if len(raw) != 26 or int.from_bytes(raw[:2], "big") != ws_tag:
        return None
    return int.from_bytes(raw[2:6], "big")


_PAIRS = [_CROCKFORD[v >> 5] + _CROCKFORD[v & 31] for v in range(1024)]
_SHIFTS = tuple(range(120, -1, -10))


def ulid(ts: int, index: int, h: int) -> str:
    """ULID-like id (26 Crockford base32 chars): 48-bit millisecond time, then index and hash bits."""
    ms = ts * 1000 + (h % 1000)
    val = (ms << 80) | ((index & 0xFFFFFFFFFFFF) << 32) | (h & 0xFFFFFFFF)
    return "".join([_PAIRS[(val >> s) & 1023] for s in _SHIFTS])


def six_months_before(ts: int) -> int:
    """``ts`` minus six calendar months in UTC.

    Assumption: the API's "6 months" window is calendar months (Go ``AddDate(0, -6, 0)`` style);
    the day is clamped to the month's length.
    """
    d = dt.datetime.fromtimestamp(ts, UTC)
    month = d.month - 6
    year = d.year
    if month < 1:
        month += 12
        year -= 1
    day = min(d.day, _days_in_month(year, month))
    return int(d.replace(year=year, month=month, day=day).timestamp())


def _days_in_month(year: int, month: int) -> int:
    nxt = dt.date(year + (month == 12), month % 12 + 1, 1)
    return (nxt - dt.timedelta(days=1)).day


def go_time(ts: int, tz: dt.tzinfo = UTC) -> str:
    """Format like Go's ``time.Time.String()``: ``2025-01-01 00:00:00 +0000 UTC``."""
    d = dt.datetime.fromtimestamp(ts, tz)
    return d.strftime("%Y-%m-%d %H:%M:%S %z ") + (d.tzname() or "UTC")
