"""The Track API of the simulated workspace: v1 calls and v2 ``/entity`` + ``/batch`` (207 answers).

Validation follows ``send_spec_facts.json`` (actions and required fields per entity type, device
platforms) and the documented limits (request 500 KB, item 32 KB, ids and attribute names 150 bytes,
values 1,000 bytes, 300 attributes, event names 100 bytes, event data 100,000 bytes). A v2 batch applies
every valid item in order and answers 207 with ``errors[{batch_index, reason, field, message}]`` for the
others. An event whose ``id`` was received before is ignored. Assumptions where the spec is silent: KB
means 1,000 bytes; an event for a person who does not exist creates the person (as identify does); a
missing manual segment answers 400; attribute values are stored as strings, as the App API returns them.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from .pushed import EVENT_KIND, PAGE_KIND, SCREEN_KIND
from .send_api import FACTS, LIMITS, SendApis, SendError, meta_errors, utf8_len

if TYPE_CHECKING:
    from .workspace import Workspace

V2_ACTIONS: dict[str, dict[str, list[str]]] = FACTS["track"]["v2_actions"]
PLATFORMS = set(FACTS["track"]["device_platforms"])
ULID = re.compile(r"^[0-9A-HJKMNP-TV-Za-hjkmnp-tv-z]{26}$")
PERSON_IDS = ("id", "email", "cio_id", "phone")
EVENT_KINDS = {"event": EVENT_KIND, "page": PAGE_KIND, "screen": SCREEN_KIND}
REGION_URLS = {"us": "https://track.customer.io", "eu": "https://track-eu.customer.io"}


class Invalid(Exception):
    """One invalid item: the reason, the field and a message (a 207 ``errors`` entry)."""

    def __init__(self, reason: str, field: str, message: str) -> None:
        super().__init__(message)
        self.reason, self.field, self.message = reason, field, message


# ------------------------------------------------------------------------------------------ checks
def check_identifiers(value: Any, field: str, kinds: tuple[str, ...] = PERSON_IDS) -> dict[str, str]:
    if not isinstance(value, dict) or len(value) != 1:
        raise Invalid("invalid", field, f"{field} must name exactly one of {', '.join(kinds)}")
    ((kind, ident),) = value.items()
    if kind not in kinds or not isinstance(ident, (str, int)) or str(ident) == "":
        raise Invalid("invalid", field, f"{field} must name exactly one of {', '.join(kinds)}")
    if utf8_len(str(ident)) > LIMITS["identifier_bytes"]:
        raise Invalid("too_long", f"{field}.{kind}", f"identifier longer than {LIMITS['identifier_bytes']} bytes")
    return {kind: str(ident)}


def check_attributes(value: Any, field: str = "attributes") -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise Invalid("invalid", field, f"{field} must be an object")
    if len(value) > LIMITS["attributes_per_call"]:
        raise Invalid("too_many", field, f"more than {LIMITS['attributes_per_call']} attributes")
    for name, attr in value.items():
        if utf8_len(name) > LIMITS["attribute_name_bytes"]:
            raise Invalid("too_long", f"{field}.{name[:40]}", "attribute name longer than 150 bytes")
        if attr is not None and utf8_len(attr) > LIMITS["attribute_value_bytes"]:
            raise Invalid("too_long", f"{field}.{name}", "attribute value longer than 1000 bytes")
    return value


def check_event(item: dict[str, Any]) -> None:
    name = item.get("name")
    if not isinstance(name, str) or not name:
        raise Invalid("required", "name", "an event needs a name")
    if utf8_len(name) > LIMITS["event_name_bytes"]:
        raise Invalid("too_long", "name", f"event name longer than {LIMITS['event_name_bytes']} bytes")
    data = item.get("attributes") if "attributes" in item else item.get("data")
    if data is not None and (not isinstance(data, dict) or utf8_len(data) > LIMITS["event_data_bytes"]):
        raise Invalid("too_long", "attributes", "event data must be an object of at most 100,000 bytes")
    event_id = item.get("id")
    if event_id is not None and (not isinstance(event_id, str) or not ULID.match(event_id)):
        raise Invalid("invalid", "id", "an event id must be a ULID")
    check_timestamp(item.get("timestamp"))


def check_timestamp(value: Any) -> None:
    if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 0):
        raise Invalid("invalid", "timestamp", "timestamp must be unix seconds (an integer)")


def check_object_identifiers(value: Any, ws: Workspace) -> tuple[int, str]:
    if not isinstance(value, dict) or not value.get("object_id") or value.get("object_type_id") in (None, ""):
        raise Invalid("invalid", "identifiers", "an object needs object_type_id and object_id")
    t = ws.object_type_index(value["object_type_id"])
    if t is None:
        raise Invalid("not_found", "identifiers.object_type_id", "no such object type")
    object_id = str(value["object_id"])
    if utf8_len(object_id) > LIMITS["identifier_bytes"]:
        raise Invalid("too_long", "identifiers.object_id", "object id longer than 150 bytes")
    return t, object_id


def check_relationships(value: Any, field: str = "cio_relationships") -> list[dict[str, Any]]:
    if not isinstance(value, list) or not value:
        raise Invalid("required", field, f"{field} must be a non-empty array")
    for k, rel in enumerate(value):
        if not isinstance(rel, dict):
            raise Invalid("invalid", f"{field}[{k}]", "a relationship must be an object")
        check_attributes(rel.get("relationship_attributes"), f"{field}[{k}].relationship_attributes")
    return value


# ---------------------------------------------------------------------------------------- v2 items
def apply_item(ws: Workspace, state: SendApis, item: Any) -> None:
    """Validate one v2 item (raise :class:`Invalid`) and apply it."""
    if not isinstance(item, dict):
        raise Invalid("invalid", "", "an item must be an object")
    if utf8_len(item) > LIMITS["item_bytes"]:
        raise Invalid("too_large", "", f"item larger than {LIMITS['item_bytes']} bytes")
    entity, action = item.get("type"), item.get("action")
    actions = V2_ACTIONS.get(entity) if isinstance(entity, str) else None
    if actions is None:
        raise Invalid("invalid", "type", f"type must be one of {', '.join(sorted(V2_ACTIONS))}")
    if action not in actions:
        raise Invalid("invalid", "action", f"{entity} action must be one of {', '.join(sorted(actions))}")
    for name in actions[action]:
        if item.get(name) in (None, "", [], {}):
            raise Invalid("required", name, f"{entity} {action} needs {name}")
    if entity == "person":
        apply_person(ws, state, action, item)
    elif entity == "object":
        apply_object(ws, action, item)
    else:  # delivery metrics: accepted, nothing of it is visible through the App API here
        check_identifiers(item.get("identifiers"), "identifiers", ("id",))


def apply_person(ws: Workspace, state: SendApis, action: str, item: dict[str, Any]) -> None:
    if action == "merge":
        primary = check_identifiers(item.get("primary"), "primary", ("id", "email", "cio_id"))
        secondary = check_identifiers(item.get("secondary"), "secondary", ("id", "email", "cio_id"))
        p, s = ws.resolve_person(primary), ws.resolve_person(secondary)
        if p is not None and s is not None:
            ws.merge_people(p, s)
        return
    ident = check_identifiers(item.get("identifiers"), "identifiers")
    if action == "identify":
        attrs = check_attributes(item.get("attributes"))
        check_timestamp(item.get("timestamp"))
        i = ws.resolve_person(ident, create=True)
        if i is not None:  # None: a suppressed identifier
            ws.set_person_attributes(i, {k: v for k, v in attrs.items() if k != "_update"}, item.get("timestamp"))
            relate_person(ws, i, item.get("cio_relationships") or [])
    elif action in EVENT_KINDS:
        check_event(item)
        if not state.first_sight(item.get("id")):
            return
        i = ws.resolve_person(ident, create=True)
        if i is not None and state.record_events:
            ws.record_event(
                i, EVENT_KINDS[action], item["name"], item.get("attributes") or {}, item.get("timestamp") or ws.now
            )
    elif action == "delete":
        i = ws.resolve_person(ident)
        if i is not None:
            ws.delete_pushed_person(i)
    elif action in ("suppress", "unsuppress"):
        if action == "unsuppress":
            ws.unsuppress(ident)
        else:
            i = ws.resolve_person(ident)
            if i is not None:
                ws.suppress_person(i)
            else:
                ws.pushed.suppressed.update(ident.values())
    elif action in ("add_device", "delete_device"):
        device = item.get("device")
        if not isinstance(device, dict) or not device.get("token"):
            raise Invalid("required", "device.token", "a device needs a token")
        i = ws.resolve_person(ident, create=action == "add_device")
        if action == "add_device":
            if device.get("platform") not in PLATFORMS:
                raise Invalid("invalid", "device.platform", f"platform must be one of {', '.join(sorted(PLATFORMS))}")
            check_attributes(device.get("attributes"), "device.attributes")
            if i is not None:
                ws.add_pushed_device(
                    i,
                    {
                        "id": str(device["token"]),
                        "platform": device["platform"],
                        "last_used": device.get("last_used"),
                        "attributes": device.get("attributes") or {},
                    },
                )
        elif i is not None:
            ws.remove_pushed_device(i, str(device["token"]))
    elif action in ("add_relationships", "delete_relationships"):
        rels = check_relationships(item.get("cio_relationships"))
        i = ws.resolve_person(ident, create=action == "add_relationships")
        if i is None:
            return
        if action == "add_relationships":
            relate_person(ws, i, rels)
        else:
            for rel in rels:
                t, object_id = check_object_identifiers(rel.get("identifiers"), ws)
                found = ws.find_object(str(t + 1), object_id, None)
                if found:
                    ws.unrelate(t, found[1], i)


def relate_person(ws: Workspace, i: int, rels: list[dict[str, Any]]) -> None:
    for rel in rels:
        t, object_id = check_object_identifiers(rel.get("identifiers"), ws)
        o = ws.upsert_object(t, object_id, {})
        ws.relate(t, o, i, rel.get("relationship_attributes"))


def apply_object(ws: Workspace, action: str, item: dict[str, Any]) -> None:
    t, object_id = check_object_identifiers(item.get("identifiers"), ws)
    if action in ("identify", "identify_anonymous"):
        o = ws.upsert_object(t, object_id, check_attributes(item.get("attributes")))
        rels = item.get("cio_relationships") or []
    elif action == "add_relationships":  # assumption: like identify, it creates a missing object
        rels = check_relationships(item.get("cio_relationships"))
        o = ws.upsert_object(t, object_id, {})
    else:
        found = ws.find_object(str(t + 1), object_id, None)
        if found is None:
            return
        o = found[1]
        if action == "delete":
            ws.delete_object(t, o)
            return
        rels = check_relationships(item.get("cio_relationships"))
    for k, rel in enumerate(rels):
        who = check_identifiers(
            rel.get("identifiers") if isinstance(rel, dict) else None,
            f"cio_relationships[{k}].identifiers",
            ("id", "email", "cio_id"),
        )
        i = ws.resolve_person(who, create=action != "delete_relationships")
        if i is None:
            continue
        if action == "delete_relationships":
            ws.unrelate(t, o, i)
        else:
            ws.relate(t, o, i, rel.get("relationship_attributes"))


def batch(ws: Workspace, state: SendApis, body: Any, size: int) -> tuple[int, dict]:
    if size > LIMITS["request_bytes"]:
        raise meta_errors(400, f"request larger than {LIMITS['request_bytes']} bytes")
    items = body.get("batch") if isinstance(body, dict) else None
    if not isinstance(items, list):
        raise meta_errors(400, 'body must be {"batch": [...]}')
    errors = []
    for k, item in enumerate(items):
        try:
            apply_item(ws, state, item)
        except Invalid as exc:
            errors.append({"batch_index": k, "reason": exc.reason, "field": exc.field, "message": exc.message})
    state.stats.items += len(items)
    state.stats.rejected_items += len(errors)
    return (207, {"errors": errors}) if errors else (200, {})


# ------------------------------------------------------------------------------------------- v1 calls
def person_from_path(ws: Workspace, value: str, create: bool = False) -> int | None:
    """A v1 ``{identifier}``: ``cio_<id>``, else an id, else an email."""
    if value.startswith("cio_"):
        return ws.resolve_person({"cio_id": value[4:]})
    kind = "email" if "@" in value and ws.find_person(value, "id") is None else "id"
    if utf8_len(value) > LIMITS["identifier_bytes"]:
        raise meta_errors(400, "identifier longer than 150 bytes")
    return ws.resolve_person({kind: value}, create=create)


def v1(ws: Workspace, state: SendApis, method: str, seg: list[str], body: Any, query: dict) -> dict:
    if not isinstance(body, dict):
        raise meta_errors(400, "body must be a JSON object")
    try:
        return _v1(ws, state, method, seg, body, query)
    except Invalid as exc:
        raise meta_errors(400, f"{exc.field}: {exc.message}") from None


def _v1(ws: Workspace, state: SendApis, method: str, seg: list[str], body: dict, query: dict) -> dict:
    n = len(seg)
    if seg[2] == "customers" and n >= 4:
        ident = seg[3]
        if n == 4 and method == "PUT":
            attrs = check_attributes({k: v for k, v in body.items() if k != "_update"})
            i = person_from_path(ws, ident, create=True)
            if i is not None:
                ws.set_person_attributes(i, attrs)
            return {}
        if n == 4 and method == "DELETE":
            i = person_from_path(ws, ident)
            if i is not None:
                ws.delete_pushed_person(i)
            return {}
        if n == 5 and seg[4] == "events" and method == "POST":
            check_event(body)
            if state.first_sight(body.get("id")):
                i = person_from_path(ws, ident, create=True)
                kind = EVENT_KINDS.get(body.get("type") or "event", EVENT_KIND)
                if i is not None and state.record_events:
                    ws.record_event(i, kind, body["name"], body.get("data") or {}, body.get("timestamp") or ws.now)
            return {}
        if n == 5 and seg[4] == "devices" and method == "PUT":
            device = body.get("device")
            if not isinstance(device, dict) or not device.get("id") or device.get("platform") not in PLATFORMS:
                raise meta_errors(400, "device needs an id and a platform (ios or android)")
            i = person_from_path(ws, ident, create=True)
            if i is not None:
                ws.add_pushed_device(
                    i,
                    {
                        "id": str(device["id"]),
                        "platform": device["platform"],
                        "last_used": device.get("last_used"),
                        "attributes": {k: v for k, v in device.items() if k not in ("id", "platform", "last_used")},
                    },
                )
            return {}
        if n == 6 and seg[4] == "devices" and method == "DELETE":
            i = person_from_path(ws, ident)
            if i is not None:
                ws.remove_pushed_device(i, seg[5])
            return {}
        if n == 5 and seg[4] in ("suppress", "unsuppress") and method == "POST":
            if seg[4] == "unsuppress":
                ws.unsuppress({"id": ident})
            else:
                i = person_from_path(ws, ident)
                if i is not None:
                    ws.suppress_person(i)
                else:
                    ws.pushed.suppressed.add(ident)
            return {}
    if n == 3 and seg[2] == "events" and method == "POST":
        check_event(body)
        if not body.get("anonymous_id") and not body.get("name"):
            raise meta_errors(400, "an anonymous event needs anonymous_id and name")
        state.first_sight(body.get("id"))  # kept only to ignore repeats; not visible through the App API
        return {}
    if n == 3 and seg[2] == "merge_customers" and method == "POST":
        p = ws.resolve_person(check_identifiers(body.get("primary"), "primary", ("id", "email", "cio_id")))
        s = ws.resolve_person(check_identifiers(body.get("secondary"), "secondary", ("id", "email", "cio_id")))
        if p is not None and s is not None:
            ws.merge_people(p, s)
        return {}
    if n == 5 and seg[2] == "segments" and seg[4] in ("add_customers", "remove_customers") and method == "POST":
        return segment_call(ws, seg[3], seg[4], body, query)
    raise meta_errors(404, f"no such endpoint: {method} /{'/'.join(seg)}")


def segment_call(ws: Workspace, segment: str, verb: str, body: dict, query: dict) -> dict:
    ids = body.get("ids")
    if not isinstance(ids, list) or not ids or len(ids) > LIMITS["segment_ids_per_call"]:
        raise meta_errors(400, f"ids must hold 1 to {LIMITS['segment_ids_per_call']} values")
    id_type = query.get("id_type", "id")
    if id_type not in ("id", "email", "cio_id"):
        raise meta_errors(400, "id_type must be id, email or cio_id")
    try:
        s = int(segment)
    except ValueError:
        raise meta_errors(400, "segment_id must be an integer") from None
    if s not in ws.cat.segments or s in ws.deleted_segments or ws.cat.segments[s]["type"] != "manual":
        raise meta_errors(400, f"segment {s} is not a manual segment of this workspace")
    for value in ids:
        i = ws.resolve_person({id_type: str(value)})
        if i is None:
            continue  # entries that match no one are ignored
        if verb == "add_customers":
            ws.segment_add(s, i)
        else:
            ws.segment_remove(s, i)
    return {}


def handle(
    ws: Workspace, state: SendApis, method: str, seg: list[str], body: Any, query: dict, size: int
) -> tuple[int, dict] | dict:
    """Route one Track API request (``seg``: the decoded path segments)."""
    if seg[:2] == ["api", "v2"] and len(seg) == 3 and method == "POST":
        if seg[2] == "batch":
            return batch(ws, state, body, size)
        if seg[2] == "entity":
            if size > LIMITS["item_bytes"]:
                raise meta_errors(400, f"request larger than {LIMITS['item_bytes']} bytes")
            try:
                apply_item(ws, state, body)
            except Invalid as exc:
                raise SendError(
                    400, {"errors": [{"reason": exc.reason, "field": exc.field, "message": exc.message}]}
                ) from None
            state.stats.items += 1
            return {}
    if seg == ["api", "v1", "accounts", "region"] and method == "GET":
        return {"url": REGION_URLS[state.region], "region": state.region, "environment_id": 1}
    if seg[:2] == ["api", "v1"] and len(seg) >= 3:
        state.stats.items += 1
        return v1(ws, state, method, seg, body, query)
    raise meta_errors(404, f"no such endpoint: {method} /{'/'.join(seg)}")
