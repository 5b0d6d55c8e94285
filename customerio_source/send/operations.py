"""Operations: what a table's rows become in Customer.io (a Track v2 batch item, a v1 call or a Data
Pipelines call), with the documented limits checked before anything is sent.

One operation per table, written ``KIND[:ARG]``:

=====================  ====================================================================================
identify               person: ``id`` / ``email`` / ``cio_id`` (first present, in that order) identifies;
                       other columns are attributes (``created_at`` as unix seconds)
delete                 person: delete the person the identifier names
event[:NAME]           person event: name from NAME, else a ``name`` (or ``event``) column; ``timestamp``
                       (unix or ISO 8601); other columns are event data; ``id`` a ULID from the row key
anonymous_event[:NAME] as event, for an ``anonymous_id`` (Track v1 ``/api/v1/events``)
page[:NAME] screen[:NAME]  as event (name: the page URL / screen name)
object:TYPE_ID         object: ``object_id``; other columns are attributes; an ``id``/``email``/``cio_id``
                       column relates the object to that person
object_delete:TYPE_ID  delete an object
relationship:TYPE_ID   relate ``object_id`` to the person; other columns are relationship attributes
relationship_delete:TYPE_ID  remove that relationship
device                 add a device: ``device_id`` (or ``token``), ``platform`` ios|android, ``last_used``;
                       other columns are device attributes
device_delete          remove the device ``device_id`` (or ``token``)
merge                  ``primary_id``/``primary_email``/``primary_cio_id`` keeps, ``secondary_*`` is merged in
suppress unsuppress    person: suppress / unsuppress
segment:SEGMENT_ID     add the person to a manual segment (v1, at most 1,000 people a call)
segment_remove:SEGMENT_ID  remove the person from it
=====================  ====================================================================================

Null values are not sent (an attribute is never cleared by a null in the warehouse).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError
from . import limits
from .rows import Rejection, attribute_value, byte_len, dumps, event_ulid, iso8601, row_key, unix_seconds

PERSON_COLUMNS = ("id", "email", "cio_id")
EVENT_KINDS = ("event", "anonymous_event", "page", "screen")
NEEDS_ARG = ("object", "object_delete", "relationship", "relationship_delete", "segment", "segment_remove")
OPTIONAL_ARG = EVENT_KINDS
PLAIN = ("identify", "delete", "device", "device_delete", "merge", "suppress", "unsuppress")
KINDS = (*PLAIN, *EVENT_KINDS, *NEEDS_ARG)
APIS = ("track", "cdp")
CDP_UNSUPPORTED = ("segment", "segment_remove")


@dataclass(frozen=True)
class Operation:
    """One table's operation (``kind``, its argument, the row key columns)."""

    kind: str
    arg: str | None = None
    key: tuple[str, ...] = ()

    @property
    def text(self) -> str:
        return f"{self.kind}:{self.arg}" if self.arg else self.kind


def parse_operation(text: str, key: Sequence[str] | str | None = None, api: str = "track") -> Operation:
    """``identify``, ``event:signup``, ``object:1``, ``segment:12``...; a bad one raises :class:`ConfigError`."""
    kind, _, arg = str(text or "").strip().partition(":")
    kind, arg = kind.strip().lower(), arg.strip()
    if kind not in KINDS:
        raise ConfigError(f"unknown operation {text!r}: expected one of {', '.join(KINDS)} (with :ARG where needed)")
    if kind in NEEDS_ARG and not arg:
        what = "a segment id" if kind.startswith("segment") else "an object type id"
        raise ConfigError(f"operation {kind} needs {what}: {kind}:ID")
    if kind in PLAIN and arg:
        raise ConfigError(f"operation {kind} takes no argument (got {text!r})")
    if kind in NEEDS_ARG and not arg.isdigit():
        raise ConfigError(f"operation {text!r}: the id after ':' must be a positive integer")
    if api == "cdp" and kind in CDP_UNSUPPORTED:
        raise ConfigError(f"operation {kind} is a Track API call (v1 manual segments): use --api track")
    if isinstance(key, str):
        key = [k.strip() for k in key.split(",") if k.strip()]
    return Operation(kind, arg or None, tuple(key or ()))


@dataclass
class Item:
    """What one row becomes: a batch item (``body`` encoded), a v1 call, or a segment membership."""

    row: int
    channel: str  # "batch" | "v1" | "segment"
    body: bytes = b""
    method: str = ""
    path: str = ""
    entities: tuple[str, ...] = ()
    segment: tuple[str, str, str] | None = None  # (verb, id_type, value)


def required_columns(op: Operation) -> list[tuple[str, ...]]:
    """Column alternatives the table must have (one of each tuple), checked once before a push."""
    person = PERSON_COLUMNS
    need: dict[str, list[tuple[str, ...]]] = {
        "anonymous_event": [("anonymous_id",)],
        "object": [("object_id",)],
        "object_delete": [("object_id",)],
        "relationship": [("object_id",), person],
        "relationship_delete": [("object_id",), person],
        "device": [person, ("device_id", "token"), ("platform",)],
        "device_delete": [person, ("device_id", "token")],
        "merge": [
            ("primary_id", "primary_email", "primary_cio_id"),
            ("secondary_id", "secondary_email", "secondary_cio_id"),
        ],
    }
    out = need.get(op.kind, [person])
    if op.kind in EVENT_KINDS and not op.arg:
        out = [*out, ("name", "event")]
    return out


def check_columns(op: Operation, columns: Sequence[str], table: str) -> None:
    """Raise :class:`ConfigError` when the table lacks a column the operation needs."""
    have = set(columns)
    for options in required_columns(op):
        if not have.intersection(options):
            raise ConfigError(
                f"table {table} has no {' / '.join(options)} column, which operation {op.text} needs"
                f" (columns: {', '.join(sorted(have)[:20])})"
            )
    for column in op.key:
        if column not in have:
            raise ConfigError(f"key column {column!r} is not a column of table {table}")


# ----------------------------------------------------------------------------------------- checks
def _identifier(value: Any, field: str) -> str:
    text = value if type(value) is str else str(value)
    if len(text) > limits.IDENTIFIER_BYTES // 4 and byte_len(text) > limits.IDENTIFIER_BYTES:
        raise Rejection("identifier_too_long", field, f"{field} is longer than {limits.IDENTIFIER_BYTES} bytes")
    return text


def person_identifiers(row: Mapping[str, Any], prefix: str = "") -> tuple[str, str]:
    """(kind, value) of the first present of ``id``, ``email``, ``cio_id`` (with ``prefix``)."""
    for kind in PERSON_COLUMNS:
        value = row.get(prefix + kind if prefix else kind)
        if value is not None and value != "" and str(value) != "":
            return kind, _identifier(value, prefix + kind)
    raise Rejection("missing_identifier", f"{prefix}id", f"the row has no {prefix}id, {prefix}email or {prefix}cio_id")


_NAME_CHARS_SAFE = limits.ATTRIBUTE_NAME_BYTES // 4  # a str of at most this many characters fits in the limit
_VALUE_CHARS_SAFE = limits.ATTRIBUTE_VALUE_BYTES // 4


def attributes(row: Mapping[str, Any], skip: Sequence[str], field: str = "attributes") -> dict[str, Any]:
    out: dict[str, Any] = {}
    check_values = field != "data"
    for name, value in row.items():
        if value is None or name in skip or name[:5] == "_dlt_":
            continue
        if len(name) > _NAME_CHARS_SAFE and byte_len(name) > limits.ATTRIBUTE_NAME_BYTES:
            raise Rejection(
                "attribute_name_too_long",
                name[:60],
                f"an attribute name is longer than {limits.ATTRIBUTE_NAME_BYTES} bytes",
            )
        kind = type(value)
        if kind is str:
            if check_values and len(value) > _VALUE_CHARS_SAFE and byte_len(value) > limits.ATTRIBUTE_VALUE_BYTES:
                raise _value_too_long(name)
        elif kind is not int and kind is not float and kind is not bool:
            if not isinstance(value, (int, float, str)):
                value = attribute_value(value)
            if (
                check_values
                and (len(value) > _VALUE_CHARS_SAFE if isinstance(value, str) else not isinstance(value, (int, float)))
                and byte_len(value) > limits.ATTRIBUTE_VALUE_BYTES
            ):
                raise _value_too_long(name)
        out[name] = value
    if len(out) > limits.ATTRIBUTES_PER_CALL:
        raise Rejection("too_many_attributes", field, f"{len(out)} attributes, more than {limits.ATTRIBUTES_PER_CALL}")
    return out


def _value_too_long(name: str) -> Rejection:
    return Rejection(
        "attribute_value_too_long", name, f"the value of {name} is longer than {limits.ATTRIBUTE_VALUE_BYTES} bytes"
    )


def event_name(op: Operation, row: Mapping[str, Any]) -> str:
    name = op.arg or row.get("name") or row.get("event")
    name = "" if name is None else (name if type(name) is str else str(name)).strip()
    if not name:
        raise Rejection("missing_name", "name", "the event has no name")
    if len(name) > limits.EVENT_NAME_BYTES // 4 and byte_len(name) > limits.EVENT_NAME_BYTES:
        raise Rejection("event_name_too_long", "name", f"the event name is longer than {limits.EVENT_NAME_BYTES} bytes")
    return name


def event_data(row: Mapping[str, Any], skip: Sequence[str]) -> dict[str, Any]:
    """Event data: no per-value limit; its 100,000-byte limit is checked when its item is over 32 KB (an
    item within 32 KB holds less data than that)."""
    return attributes(row, skip, "data")


def platform_of(row: Mapping[str, Any]) -> str:
    platform = str(row.get("platform") or "").lower()
    if platform not in ("ios", "android"):
        raise Rejection("invalid_platform", "platform", "platform must be ios or android")
    return platform


def device_token(row: Mapping[str, Any]) -> str:
    token = row.get("device_id") if row.get("device_id") is not None else row.get("token")
    if token is None or str(token) == "":
        raise Rejection("missing_device", "device_id", "the row has no device_id (or token)")
    return _identifier(token, "device_id")


# ------------------------------------------------------------------------------------------ build
class Builder:
    """Turns rows of one table into :class:`Item` s for one API (``track`` or ``cdp``)."""

    def __init__(self, op: Operation, table: str, api: str = "track") -> None:
        self.op, self.table, self.api = op, table, api
        self.scope = f"{table}\x00{op.text}"
        self._items = self._cdp if api == "cdp" else self._track
        data_skip = ("anonymous_id",) if op.kind == "anonymous_event" else PERSON_COLUMNS
        self._data_skip = frozenset((*data_skip, "timestamp") if op.arg else (*data_skip, "timestamp", "name", "event"))

    def build(self, index: int, row: Mapping[str, Any]) -> Item:
        payload, entities, channel = self._items(row)
        if channel == "segment":
            return Item(index, "segment", entities=entities, segment=payload)
        body = dumps(payload)
        if len(body) > limits.ITEM_BYTES:
            data = payload.get("attributes") or payload.get("properties") or payload.get("data")
            if self.op.kind in EVENT_KINDS and data and byte_len(data) > limits.EVENT_DATA_BYTES:
                raise Rejection(
                    "event_data_too_large", "data", f"the event data is larger than {limits.EVENT_DATA_BYTES:,} bytes"
                )
            raise Rejection(
                "item_too_large", "", f"the row's item is {len(body):,} bytes, more than {limits.ITEM_BYTES:,}"
            )
        if channel == "v1":
            return Item(index, "v1", body=body, method="POST", path="/api/v1/events", entities=entities)
        return Item(index, "batch", body=body, entities=entities)

    def key(self, row: Mapping[str, Any]) -> str:
        return row_key(row, self.op.key)

    def _event_parts(self, row: Mapping[str, Any]) -> tuple[str, int | None, dict, str]:
        name = event_name(self.op, row)
        ts = row.get("timestamp")
        if ts is not None:
            ts = ts if type(ts) is int and ts < 100_000_000_000 else unix_seconds(ts, "timestamp")
        data = event_data(row, self._data_skip)
        ulid = event_ulid(f"{self.scope}\x00{name}", self.key(row), ts)
        return name, ts, data, ulid

    # ---------------------------------------------------------------------- Track
    def _track(self, row: Mapping[str, Any]) -> tuple[Any, tuple[str, ...], str]:
        kind = self.op.kind
        if kind == "merge":
            primary = person_identifiers(row, "primary_")
            secondary = person_identifiers(row, "secondary_")
            item = {
                "type": "person",
                "action": "merge",
                "primary": {primary[0]: primary[1]},
                "secondary": {secondary[0]: secondary[1]},
            }
            return item, (f"p:{primary[0]}:{primary[1]}", f"p:{secondary[0]}:{secondary[1]}"), "batch"
        if kind == "anonymous_event":
            anon = row.get("anonymous_id")
            if anon is None or str(anon) == "":
                raise Rejection("missing_identifier", "anonymous_id", "the row has no anonymous_id")
            anon = _identifier(anon, "anonymous_id")
            name, ts, data, ulid = self._event_parts(row)
            call = {"name": name, "anonymous_id": anon, "id": ulid, "data": data}
            if ts is not None:
                call["timestamp"] = ts
            return call, (f"a:{anon}",), "v1"
        if kind in ("object", "object_delete", "relationship", "relationship_delete"):
            return self._track_object(row)
        ident_kind, ident = person_identifiers(row)
        who = {ident_kind: ident}
        entity = (f"p:{ident_kind}:{ident}",)
        if kind in ("segment", "segment_remove"):
            return ("add_customers" if kind == "segment" else "remove_customers", ident_kind, ident), entity, "segment"
        item: dict[str, Any] = {"type": "person", "identifiers": who}
        if kind == "identify":
            attrs = attributes(row, (ident_kind, "cio_id"))
            if "created_at" in attrs:
                attrs["created_at"] = unix_seconds(row["created_at"], "created_at")
            item.update(action="identify", attributes=attrs)
        elif kind in ("event", "page", "screen"):
            name, ts, data, ulid = self._event_parts(row)
            item.update(action=kind, name=name, id=ulid, attributes=data)
            if ts is not None:
                item["timestamp"] = ts
        elif kind in ("delete", "suppress", "unsuppress"):
            item["action"] = kind
        elif kind == "device":
            device: dict[str, Any] = {"token": device_token(row), "platform": platform_of(row)}
            if row.get("last_used") is not None:
                device["last_used"] = unix_seconds(row["last_used"], "last_used")
            extra = attributes(row, (*PERSON_COLUMNS, "device_id", "token", "platform", "last_used"))
            if extra:
                device["attributes"] = {k: v if isinstance(v, str) else dumps(v).decode() for k, v in extra.items()}
            item.update(action="add_device", device=device)
        elif kind == "device_delete":
            item.update(action="delete_device", device={"token": device_token(row)})
        return item, entity, "batch"

    def _track_object(self, row: Mapping[str, Any]) -> tuple[Any, tuple[str, ...], str]:
        kind, type_id = self.op.kind, str(self.op.arg)
        object_id = row.get("object_id")
        if object_id is None or str(object_id) == "":
            raise Rejection("missing_identifier", "object_id", "the row has no object_id")
        object_id = _identifier(object_id, "object_id")
        item: dict[str, Any] = {"type": "object", "identifiers": {"object_type_id": type_id, "object_id": object_id}}
        entities = [f"o:{type_id}:{object_id}"]
        person = None
        if any(row.get(c) is not None and str(row.get(c)) != "" for c in PERSON_COLUMNS):
            person = person_identifiers(row)
            entities.append(f"p:{person[0]}:{person[1]}")
        if kind == "object":
            item.update(action="identify", attributes=attributes(row, ("object_id", *PERSON_COLUMNS)))
            if person:
                item["cio_relationships"] = [{"identifiers": {person[0]: person[1]}}]
        elif kind == "object_delete":
            item["action"] = "delete"
        else:
            if person is None:
                raise Rejection("missing_identifier", "id", "the row has no id, email or cio_id")
            rel: dict[str, Any] = {"identifiers": {person[0]: person[1]}}
            rel_attrs = attributes(row, ("object_id", *PERSON_COLUMNS), "relationship_attributes")
            if rel_attrs and kind == "relationship":
                rel["relationship_attributes"] = rel_attrs
            item.update(
                action="add_relationships" if kind == "relationship" else "delete_relationships",
                cio_relationships=[rel],
            )
        return item, tuple(entities), "batch"

    # ------------------------------------------------------------------------ CDP
    def _cdp_user(self, row: Mapping[str, Any], prefix: str = "") -> str:
        value = row.get(prefix + "id")
        if value is None or str(value) == "":
            raise Rejection(
                "missing_identifier",
                prefix + "id",
                f"the Data Pipelines API identifies people by userId: the row has no {prefix}id",
            )
        return _identifier(value, prefix + "id")

    def _cdp(self, row: Mapping[str, Any]) -> tuple[Any, tuple[str, ...], str]:
        kind, op = self.op.kind, self.op
        if kind == "merge":
            primary, secondary = self._cdp_user(row, "primary_"), self._cdp_user(row, "secondary_")
            return (
                {"type": "alias", "userId": primary, "previousId": secondary},
                (f"p:id:{primary}", f"p:id:{secondary}"),
                "batch",
            )
        if kind == "anonymous_event":
            anon = row.get("anonymous_id")
            if anon is None or str(anon) == "":
                raise Rejection("missing_identifier", "anonymous_id", "the row has no anonymous_id")
            anon = _identifier(anon, "anonymous_id")
            name, ts, data, ulid = self._event_parts(row)
            call = {"type": "track", "anonymousId": anon, "event": name, "properties": data, "messageId": ulid}
            if ts is not None:
                call["timestamp"] = iso8601(ts)
            return call, (f"a:{anon}",), "batch"
        if kind == "object_delete":
            object_id = row.get("object_id")
            if object_id is None or str(object_id) == "":
                raise Rejection("missing_identifier", "object_id", "the row has no object_id")
            object_id = _identifier(object_id, "object_id")
            return (
                {
                    "type": "track",
                    "anonymousId": f"object:{op.arg}:{object_id}",
                    "event": "Object Deleted",
                    "properties": {"objectId": object_id, "objectTypeId": int(str(op.arg))},
                },
                (f"o:{op.arg}:{object_id}",),
                "batch",
            )
        user = self._cdp_user(row)
        entity = (f"p:id:{user}",)
        if kind == "identify":
            traits = attributes(row, ("id", "cio_id"), "traits")
            if "created_at" in traits:
                traits.pop("created_at")
                traits["createdAt"] = iso8601(unix_seconds(row["created_at"], "created_at"))
            return {"type": "identify", "userId": user, "traits": traits}, entity, "batch"
        if kind in ("event", "page", "screen"):
            name, ts, data, ulid = self._event_parts(row)
            call = {"type": "track", "userId": user, "event": name, "properties": data, "messageId": ulid}
            if kind != "event":
                call = {"type": kind, "userId": user, "name": name, "properties": data, "messageId": ulid}
            if ts is not None:
                call["timestamp"] = iso8601(ts)
            return call, entity, "batch"
        semantic = {"delete": "User Deleted", "suppress": "User Suppressed", "unsuppress": "User Unsuppressed"}
        if kind in semantic:
            return {"type": "track", "userId": user, "event": semantic[kind], "properties": {}}, entity, "batch"
        if kind in ("device", "device_delete"):
            device: dict[str, Any] = {"token": device_token(row)}
            if kind == "device":
                device["type"] = platform_of(row)
            props = attributes(row, (*PERSON_COLUMNS, "device_id", "token", "platform")) if kind == "device" else {}
            event = "Device Created or Updated" if kind == "device" else "Device Deleted"
            return (
                {"type": "track", "userId": user, "event": event, "context": {"device": device}, "properties": props},
                entity,
                "batch",
            )
        object_id = row.get("object_id")
        if object_id is None or str(object_id) == "":
            raise Rejection("missing_identifier", "object_id", "the row has no object_id")
        object_id = _identifier(object_id, "object_id")
        entities = (*entity, f"o:{op.arg}:{object_id}")
        if kind == "relationship_delete":
            return (
                {
                    "type": "track",
                    "userId": user,
                    "event": "Relationship Deleted",
                    "properties": {"objectId": object_id, "objectTypeId": int(str(op.arg))},
                },
                entities,
                "batch",
            )
        traits = {"object_type_id": str(op.arg)}
        extra = attributes(row, ("object_id", *PERSON_COLUMNS), "traits")
        if kind == "relationship":
            if extra:
                traits["relationshipAttributes"] = extra
        else:
            traits.update(extra)
        return {"type": "group", "userId": user, "groupId": object_id, "traits": traits}, entities, "batch"
