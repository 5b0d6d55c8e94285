"""The Data Pipelines (CDP) API of the simulated workspace: ``/identify``, ``/track``, ``/page``,
``/screen``, ``/group``, ``/alias`` and ``/batch`` (served under ``<base_url>/cdp/v1``).

As the spec README says: without ``X-Strict-Mode: 1`` a request over the limits, or with an invalid
call, gets a 200 and is not processed; with it, 400 and the problems (``{"errors": [{batch_index, reason,
field, message}]}``, the Track API's shape: the spec does not give the body). A call whose ``messageId``
was received before is ignored. The semantic events of the spec (``User Deleted``, ``User Suppressed``,
``User Unsuppressed``, ``Device Created or Updated``, ``Device Deleted``, ``Relationship Deleted``,
``Object Deleted``) act on people, devices and objects; other track calls become event activities.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from .pushed import EVENT_KIND, PAGE_KIND, SCREEN_KIND
from .send_api import FACTS, LIMITS, SendApis, meta_errors, utf8_len
from .track_api import Invalid, check_attributes, check_event

if TYPE_CHECKING:
    from .workspace import Workspace

TYPES = set(FACTS["cdp"]["types"])


def unix(value: Any, default: int) -> int:
    if value in (None, ""):
        return default
    try:
        return int(datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp())
    except ValueError:
        raise Invalid("invalid", "timestamp", "timestamp must be ISO 8601") from None


def check_call(call: Any, kind: str | None) -> dict[str, Any]:
    if not isinstance(call, dict):
        raise Invalid("invalid", "", "a call must be an object")
    if utf8_len(call) > LIMITS["item_bytes"]:
        raise Invalid("too_large", "", f"call larger than {LIMITS['item_bytes']} bytes")
    kind = kind or call.get("type")
    if kind not in TYPES:
        raise Invalid("invalid", "type", f"type must be one of {', '.join(sorted(TYPES))}")
    user, anon = call.get("userId"), call.get("anonymousId")
    if kind == "alias":
        if not call.get("previousId") or not user:
            raise Invalid("required", "previousId", "alias needs previousId and userId")
    elif not user and not anon:
        raise Invalid("required", "userId", f"{kind} needs userId or anonymousId")
    for ident in (user, anon, call.get("previousId")):
        if ident is not None and utf8_len(str(ident)) > LIMITS["identifier_bytes"]:
            raise Invalid("too_long", "userId", "identifier longer than 150 bytes")
    if kind == "track":
        check_event({"name": call.get("event"), "attributes": call.get("properties")})
    if kind in ("identify", "group"):
        check_attributes(call.get("traits"), "traits")
    if kind == "group" and not call.get("groupId"):
        raise Invalid("required", "groupId", "group needs groupId")
    return {**call, "type": kind}


def apply_call(ws: Workspace, state: SendApis, call: dict[str, Any]) -> None:
    if not state.first_sight(call.get("messageId")):
        return
    kind, user = call["type"], call.get("userId")
    ts = unix(call.get("timestamp"), ws.now)
    who = {"id": str(user)} if user else None
    if kind == "identify":
        if who is None:
            return  # traits of an anonymous visitor: kept until identified; not visible through the App API
        i = ws.resolve_person(who, create=True)
        if i is not None:
            traits = dict(call.get("traits") or {})
            if "createdAt" in traits:
                traits["created_at"] = unix(traits.pop("createdAt"), ws.now)
            ws.set_person_attributes(i, traits, ts)
    elif kind == "alias":
        p = ws.resolve_person({"id": str(user)})
        s = ws.resolve_person({"id": str(call["previousId"])})
        if p is not None and s is not None:
            ws.merge_people(p, s)
    elif kind == "group":
        t = ws.object_type_index((call.get("traits") or {}).get("object_type_id") or call.get("objectTypeId") or 1)
        if t is None:
            raise Invalid("not_found", "objectTypeId", "no such object type")
        traits = {
            k: v for k, v in (call.get("traits") or {}).items() if k not in ("object_type_id", "relationshipAttributes")
        }
        o = ws.upsert_object(t, str(call["groupId"]), traits)
        if who is not None:
            i = ws.resolve_person(who, create=True)
            if i is not None:
                ws.relate(t, o, i, (call.get("traits") or {}).get("relationshipAttributes"))
    elif kind == "track":
        semantic(ws, state, call, who, ts)
    elif who is not None and state.record_events:
        i = ws.resolve_person(who, create=True)
        if i is not None:
            ws.record_event(
                i,
                PAGE_KIND if kind == "page" else SCREEN_KIND,
                str(call.get("name") or ""),
                call.get("properties") or {},
                ts,
            )


def semantic(ws: Workspace, state: SendApis, call: dict[str, Any], who: dict | None, ts: int) -> None:
    event, props = call["event"], call.get("properties") or {}
    device = (call.get("context") or {}).get("device") or {}
    if event == "Object Deleted":
        t = ws.object_type_index(props.get("objectTypeId") or 1)
        found = ws.find_object(str((t or 0) + 1), str(props.get("objectId")), None) if t is not None else None
        if found:
            ws.delete_object(*found)
        return
    if who is None:
        return  # anonymous events: kept only to ignore repeats
    if event in ("User Deleted", "User Suppressed"):
        i = ws.resolve_person(who)
        if i is not None:
            (ws.delete_pushed_person if event == "User Deleted" else ws.suppress_person)(i)
        elif event == "User Suppressed":
            ws.pushed.suppressed.add(who["id"])
    elif event == "User Unsuppressed":
        ws.unsuppress(who)
    elif event in ("Device Created or Updated", "Device Deleted"):
        if not device.get("token"):
            raise Invalid("required", "context.device.token", "a device event needs context.device.token")
        i = ws.resolve_person(who, create=event != "Device Deleted")
        if i is None:
            return
        if event == "Device Deleted":
            ws.remove_pushed_device(i, str(device["token"]))
        else:
            ws.add_pushed_device(
                i, {"id": str(device["token"]), "platform": device.get("type"), "last_used": ts, "attributes": props}
            )
    elif event == "Relationship Deleted":
        t = ws.object_type_index(props.get("objectTypeId") or 1)
        i = ws.resolve_person(who)
        found = ws.find_object(str(t + 1), str(props.get("objectId")), None) if t is not None else None
        if found and i is not None:
            ws.unrelate(found[0], found[1], i)
    elif state.record_events:
        i = ws.resolve_person(who, create=True)
        if i is not None:
            ws.record_event(i, EVENT_KIND, event, props, ts)


def handle(ws: Workspace, state: SendApis, path: str, body: Any, size: int, strict: bool) -> dict:
    """One Data Pipelines call or batch; ``path`` is relative to ``/cdp/v1``."""
    kind = path.strip("/")
    if kind != "batch" and kind not in TYPES:
        raise meta_errors(404, f"no such endpoint: POST /v1/{kind}")
    limit = LIMITS["request_bytes"] if kind == "batch" else LIMITS["item_bytes"]
    if size > limit:
        if strict:
            raise meta_errors(400, f"request larger than {limit} bytes")
        return {}  # accepted and dropped, as the real API does without strict mode
    if kind == "batch":
        calls = body.get("batch") if isinstance(body, dict) else None
        if not isinstance(calls, list):
            raise meta_errors(400, 'body must be {"batch": [...]}')
    else:
        calls = [body]
    checked, errors = [], []
    for k, call in enumerate(calls):
        try:
            checked.append(check_call(call, None if kind == "batch" else kind))
        except Invalid as exc:
            errors.append({"batch_index": k, "reason": exc.reason, "field": exc.field, "message": exc.message})
    if errors:
        if strict:
            from .send_api import SendError

            raise SendError(400, {"errors": errors})
        checked = [c for k, c in enumerate(checked)]  # non-strict: the valid calls go through
    for call in checked:
        try:
            apply_call(ws, state, call)
        except Invalid:
            pass
    state.stats.items += len(calls)
    return {}
