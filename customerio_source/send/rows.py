"""Row values as the send APIs take them: row keys, deterministic ULIDs, timestamps, JSON.

A row's key is its declared key columns, else a hash of the whole row (``_dlt_*`` columns left out), so the
same row read again gives the same key, and its event the same ULID: Customer.io ignores an event whose id
it has seen, which is what makes a replayed or resumed push apply each event once.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from datetime import date, datetime, time, timezone
from decimal import Decimal
from typing import Any

import orjson

CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
TIME_BITS_MASK = (1 << 48) - 1
_PAIRS = [a + b for a in CROCKFORD for b in CROCKFORD]  # 10 bits -> two characters
_RAND_SHIFTS = (70, 60, 50, 40, 30, 20, 10, 0)  # the 80 random bits: 16 characters
_TIME_PARTS: dict[int, str] = {}


class Rejection(Exception):
    """A row that cannot be sent: a reason code, the field, a message (never a value of the row)."""

    def __init__(self, reason: str, field: str, message: str) -> None:
        super().__init__(message)
        self.reason, self.field, self.message = reason, field, message


def json_default(value: Any) -> Any:
    """orjson's fallback: decimals as numbers, bytes as hex, sets as lists."""
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).hex()
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    raise TypeError(f"cannot send a {type(value).__name__}")


def dumps(value: Any) -> bytes:
    return orjson.dumps(value, default=json_default, option=orjson.OPT_NON_STR_KEYS)


def row_key(row: Mapping[str, Any], key_columns: Sequence[str] | None) -> str:
    """The declared key columns' values (``a|b`` for two), else a 32-hex-digit hash of the whole row."""
    if key_columns:
        if len(key_columns) == 1:
            value = row.get(key_columns[0])
            return "" if value is None else str(value)
        return "|".join("" if row.get(c) is None else str(row.get(c)) for c in key_columns)
    data = {k: v for k, v in row.items() if not k.startswith("_dlt_")}
    return hashlib.blake2b(dumps(dict(sorted(data.items()))), digest_size=16).hexdigest()


def event_ulid(scope: str, key: str, timestamp: int | None) -> str:
    """A ULID for the event of row ``key`` in ``scope`` (table + event name): its time part is the event's
    time in milliseconds (0 when the row has none), its 80 random bits a hash of scope and key."""
    rand = int.from_bytes(hashlib.blake2b(f"{scope}\x00{key}".encode(), digest_size=10).digest(), "big")
    millis = ((timestamp or 0) * 1000) & TIME_BITS_MASK
    head = _TIME_PARTS.get(millis)
    if head is None:  # the 10 characters of the time part (48 bits behind 2 zero bits), cached: events share seconds
        if len(_TIME_PARTS) >= 8192:  # bounded: ~1 MB
            _TIME_PARTS.clear()
        head = _TIME_PARTS[millis] = "".join([_PAIRS[millis >> shift & 1023] for shift in (40, 30, 20, 10, 0)])
    return head + "".join([_PAIRS[rand >> shift & 1023] for shift in _RAND_SHIFTS])


def unix_seconds(value: Any, field: str) -> int:
    """Unix seconds from an int/float (seconds; milliseconds above 10^11), a datetime/date or ISO 8601 text."""
    if value is None:
        raise Rejection("invalid_timestamp", field, f"{field} is empty")
    if isinstance(value, bool):
        raise Rejection("invalid_timestamp", field, f"{field} is not a time")
    if isinstance(value, (int, float, Decimal)):
        seconds = float(value)
        return int(seconds / 1000 if seconds > 1e11 else seconds)
    if isinstance(value, datetime):
        return int((value if value.tzinfo else value.replace(tzinfo=timezone.utc)).timestamp())
    if isinstance(value, date):
        return int(datetime.combine(value, time(), timezone.utc).timestamp())
    if isinstance(value, str):
        text = value.strip()
        if text.lstrip("-").replace(".", "", 1).isdigit():
            return unix_seconds(float(text), field)
        try:
            parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            raise Rejection("invalid_timestamp", field, f"{field} is neither unix seconds nor ISO 8601") from None
        return unix_seconds(parsed, field)
    raise Rejection("invalid_timestamp", field, f"{field} is not a time")


def iso8601(seconds: int) -> str:
    return datetime.fromtimestamp(seconds, timezone.utc).isoformat().replace("+00:00", "Z")


def attribute_value(value: Any) -> Any:
    """Datetimes become unix seconds (what Customer.io's date attributes take); the rest as it is."""
    if isinstance(value, (datetime, date)):
        return unix_seconds(value, "attribute")
    if isinstance(value, Decimal):
        return float(value)
    return value


def byte_len(value: Any) -> int:
    return len(value.encode()) if isinstance(value, str) else len(dumps(value))
