"""Row shaping shared by resources: unix seconds to UTC datetimes, parent keys, delete markers."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from typing import Any

DELETED_AT = "_cio_deleted_at"
"""Set on rows that vanished from a table the source reads completely."""

_UTC = timezone.utc


def to_datetime(value: Any) -> Any:
    """Unix seconds (int, float or digit string) to an aware UTC datetime; other values unchanged."""
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, (int, float)):
        return datetime.fromtimestamp(value, _UTC) if value > 0 else None
    if isinstance(value, str) and value.isdigit():
        return datetime.fromtimestamp(int(value), _UTC)
    return value


def convert_timestamps(row: dict[str, Any], fields: Iterable[str]) -> dict[str, Any]:
    """Convert the named top-level fields (in place) and return the row."""
    for name in fields:
        if name in row:
            row[name] = to_datetime(row[name])
    return row


def convert_nested_timestamps(row: dict[str, Any], key: str) -> dict[str, Any]:
    """Convert every value of a dict-valued field (delivery `metrics`: {opened: ts, ...})."""
    values = row.get(key)
    if isinstance(values, dict):
        row[key] = {name: to_datetime(ts) for name, ts in values.items()}
    return row


def add_parent_columns(row: dict[str, Any], parent: Mapping[str, Any], columns: Mapping[str, str]) -> dict[str, Any]:
    """Copy the parent's keys into a child row (child column <- parent field)."""
    for column, parent_field in columns.items():
        row[column] = parent.get(parent_field)
    return row


def timestamp_columns(fields: Iterable[str]) -> dict[str, dict[str, Any]]:
    """dlt column hints typing the given fields as timestamps."""
    return {name: {"data_type": "timestamp", "nullable": True} for name in fields}


def arrow_load_id_column() -> dict[str, dict[str, Any]]:
    """`_dlt_load_id` of an Arrow table, nullable: dlt would add it NOT NULL, which an existing table with
    rows (deliveries loaded before Arrow tables carried it) cannot take."""
    return {"_dlt_load_id": {"data_type": "text", "nullable": True}}


def deleted_marker_column() -> dict[str, dict[str, Any]]:
    return {DELETED_AT: {"data_type": "timestamp", "nullable": True}}
