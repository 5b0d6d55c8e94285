"""Endpoint handlers, one per spec operation key (``"GET /v1/campaigns"``)."""

from __future__ import annotations

import base64
import copy
import datetime as dt
from bisect import bisect_left
from collections.abc import Callable, Sequence
from typing import Any
from zoneinfo import ZoneInfo

from . import metrics as mx
from ._util import UTC, go_time
from .catalog import KIND_CAMPAIGN, KIND_NEWSLETTER, public
from .server import ApiError, Ctx
from .workspace import Workspace

HANDLERS: dict[str, Callable[[Ctx], Any]] = {}
MAX_SCAN_RESULT = 30000


def route(*keys: str) -> Callable:
    def deco(fn: Callable[[Ctx], Any]) -> Callable[[Ctx], Any]:
        for k in keys:
            HANDLERS[k] = fn
        return fn
    return deco


# ---------------------------------------------------------------- cursors
def enc_cursor(pos: int) -> str:
    """Opaque cursor token for a position."""
    return base64.urlsafe_b64encode(f"sim:{pos}".encode()).decode().rstrip("=")


def dec_cursor(token: str | None) -> int | None:
    if token in (None, ""):
        return None
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
        tag, pos = raw.split(":")
        if tag != "sim":
            raise ValueError
        return int(pos)
    except (ValueError, UnicodeDecodeError):
        raise ApiError(400, "invalid start token") from None


def page_offset(items: Sequence, ctx: Ctx) -> tuple[list, str]:
    """Offset-based pagination over a small list."""
    off = dec_cursor(ctx.params.get("start")) or 0
    limit = ctx.params.get("limit", 50)
    chunk = list(items[off:off + limit])
    nxt = enc_cursor(off + limit) if off + limit < len(items) else ""
    return chunk, nxt


# ---------------------------------------------------------------- lookups
def _get(mapping: dict, key: Any, what: str) -> Any:
    if key not in mapping:
        raise ApiError(404, f"{what} not found")
    return mapping[key]


def _campaign(ws: Workspace, cid: int) -> dict:
    return _get(ws.cat.campaigns, cid, "campaign")


def _broadcast(ws: Workspace, bid: int) -> dict:
    if bid in ws.deleted_broadcasts:
        raise ApiError(404, "broadcast not found")
    return _get(ws.cat.broadcasts, bid, "broadcast")


def _segment(ws: Workspace, sid: int) -> dict:
    if sid in ws.deleted_segments:
        raise ApiError(404, "segment not found")
    return _get(ws.cat.segments, sid, "segment")


def _action(ws: Workspace, parent_key: str, parent_id: int, aid: int) -> dict:
    act = ws.cat.actions.get(aid)
    if act is None or act.get(parent_key) != parent_id:
        raise ApiError(404, "action not found")
    return act


def _person(ctx: Ctx, value: str | None = None, id_type: str | None = None) -> int:
    """Resolve the ``{customer_id}`` path param (400 for an invalid reference, 404 for no such person)."""
    value = ctx.path.get("customer_id", "") if value is None else value
    id_type = ctx.params.get("id_type") if id_type is None else id_type
    if not value:
        raise ApiError(400, "a customer identifier is required")
    if id_type == "cio_id":
        hexpart = value[4:] if value.startswith("cio_") else value
        if not hexpart or any(c not in "0123456789abcdefABCDEF" for c in hexpart):
            raise ApiError(400, f"invalid cio_id: {value!r}")
    elif id_type == "email" and "@" not in value:
        raise ApiError(400, f"invalid email: {value!r}")
    elif id_type == "phone" and not value.startswith("+"):
        raise ApiError(400, "phone numbers must be E.164 formatted")
    i = ctx.ws.find_person(value, id_type)
    if i is None:
        raise ApiError(404, "customer not found")
    return i


# ---------------------------------------------------------------- campaigns
@route("GET /v1/campaigns")
def list_campaigns(ctx: Ctx) -> dict:
    return {"campaigns": ctx.ws.campaigns()}


@route("GET /v1/campaigns/{campaign_id}")
def get_campaign(ctx: Ctx) -> dict:
    return {"campaign": public(_campaign(ctx.ws, ctx.path["campaign_id"]))}


@route("GET /v1/campaigns/{campaign_id}/actions")
def list_campaign_actions(ctx: Ctx) -> dict:
    camp = _campaign(ctx.ws, ctx.path["campaign_id"])
    acts = [ctx.ws.cat.actions[a["id"]] for a in camp["actions"]]
    # Assumption: the spec lists only `start` (no `limit`); pages hold 10 actions like the real API's.
    ctx.params["limit"] = 10
    chunk, nxt = page_offset(acts, ctx)
    return {"actions": chunk, "next": nxt}


@route("GET /v1/campaigns/{campaign_id}/actions/{action_id}")
def get_campaign_action(ctx: Ctx) -> dict:
    _campaign(ctx.ws, ctx.path["campaign_id"])
    return {"action": _action(ctx.ws, "campaign_id", ctx.path["campaign_id"], ctx.path["action_id"])}


def _translated(rec: dict, language: str) -> dict:
    # Assumption: every message has its default language plus "fr" and "es" translations.
    if language not in ("", "en", "fr", "es"):
        raise ApiError(404, f"no {language!r} translation")
    out = copy.deepcopy(rec)
    out["language"] = language
    if language in ("fr", "es"):
        out["subject"] = f"[{language}] {out.get('subject', '')}"
    return out


@route("GET /v1/campaigns/{campaign_id}/actions/{action_id}/language/{language}")
def get_campaign_action_language(ctx: Ctx) -> dict:
    _campaign(ctx.ws, ctx.path["campaign_id"])
    act = _action(ctx.ws, "campaign_id", ctx.path["campaign_id"], ctx.path["action_id"])
    return {"action": _translated(act, ctx.path["language"])}


# ---------------------------------------------------------------- broadcasts
@route("GET /v1/broadcasts")
def list_broadcasts(ctx: Ctx) -> dict:
    return {"broadcasts": ctx.ws.broadcasts()}


@route("GET /v1/broadcasts/{broadcast_id}")
def get_broadcast(ctx: Ctx) -> dict:
    return {"broadcast": public(_broadcast(ctx.ws, ctx.path["broadcast_id"]))}


@route("GET /v1/broadcasts/{broadcast_id}/actions")
def list_broadcast_actions(ctx: Ctx) -> dict:
    b = _broadcast(ctx.ws, ctx.path["broadcast_id"])
    return {"actions": [ctx.ws.cat.actions[a["id"]] for a in b["actions"]]}


@route("GET /v1/broadcasts/{broadcast_id}/actions/{action_id}")
def get_broadcast_action(ctx: Ctx) -> dict:
    _broadcast(ctx.ws, ctx.path["broadcast_id"])
    return {"action": _action(ctx.ws, "broadcast_id", ctx.path["broadcast_id"], ctx.path["action_id"])}


@route("GET /v1/broadcasts/{broadcast_id}/actions/{action_id}/language/{language}")
def get_broadcast_action_language(ctx: Ctx) -> dict:
    _broadcast(ctx.ws, ctx.path["broadcast_id"])
    act = _action(ctx.ws, "broadcast_id", ctx.path["broadcast_id"], ctx.path["action_id"])
    return {"action": _translated(act, ctx.path["language"])}


@route("GET /v1/broadcasts/{broadcast_id}/triggers")
def list_broadcast_triggers(ctx: Ctx) -> dict:
    bid = ctx.path["broadcast_id"]
    _broadcast(ctx.ws, bid)
    return {"triggers": [t for t in ctx.ws.cat.triggers.values() if t["broadcast_id"] == bid]}


def _trigger(ctx: Ctx) -> dict:
    _broadcast(ctx.ws, ctx.path["broadcast_id"])
    trig = _get(ctx.ws.cat.triggers, ctx.path["trigger_id"], "trigger")
    if trig["broadcast_id"] != ctx.path["broadcast_id"]:
        raise ApiError(404, "trigger not found")
    return trig


@route("GET /v1/campaigns/{broadcast_id}/triggers/{trigger_id}")
def get_broadcast_trigger(ctx: Ctx) -> dict:
    return dict(_trigger(ctx))


@route("GET /v1/campaigns/{broadcast_id}/triggers/{trigger_id}/errors")
def get_broadcast_trigger_errors(ctx: Ctx) -> dict:
    trig = _trigger(ctx)
    errors = [f"recipient {k}: missing attribute 'first_name'" for k in range(trig["id"] % 4)]
    # [C] this endpoint uses an integer offset as `next`.
    try:
        off = int(ctx.params.get("start") or 0)
    except ValueError:
        raise ApiError(400, "invalid start") from None
    limit = ctx.params.get("limit", 50)
    chunk = errors[off:off + limit]
    out: dict[str, Any] = {"errors": chunk}
    if off + limit < len(errors):
        out["next"] = off + limit
    return out


# ---------------------------------------------------------------- newsletters
@route("GET /v1/newsletters")
def list_newsletters(ctx: Ctx) -> dict:
    # Assumption: sorted by id (creation order); default `sort` is desc (newest first).
    items = ctx.ws.newsletters()
    items.sort(key=lambda n: n["id"], reverse=ctx.params.get("sort", "desc") == "desc")
    chunk, nxt = page_offset(items, ctx)
    return {"newsletters": chunk, "next": nxt}


def _newsletter(ctx: Ctx) -> dict:
    return _get(ctx.ws.cat.newsletters, ctx.path["newsletter_id"], "newsletter")


def _content(ctx: Ctx) -> dict:
    nl = _newsletter(ctx)
    cid = ctx.path["content_id"]
    if cid not in nl["content_ids"]:
        raise ApiError(404, "content not found")
    return ctx.ws.cat.contents[cid]


@route("GET /v1/newsletters/{newsletter_id}")
def get_newsletter(ctx: Ctx) -> dict:
    return {"newsletter": public(_newsletter(ctx))}


@route("GET /v1/newsletters/{newsletter_id}/contents")
def list_newsletter_contents(ctx: Ctx) -> dict:
    nl = _newsletter(ctx)
    return {"contents": [ctx.ws.cat.contents[c] for c in nl["content_ids"]]}


@route("GET /v1/newsletters/{newsletter_id}/contents/{content_id}")
def get_newsletter_content(ctx: Ctx) -> dict:
    return {"content": _content(ctx)}


@route("GET /v1/newsletters/{newsletter_id}/language/{language}")
def get_newsletter_language(ctx: Ctx) -> dict:
    nl = _newsletter(ctx)
    return {"content": _translated(ctx.ws.cat.contents[nl["content_ids"][0]], ctx.path["language"])}


@route("GET /v1/newsletters/{newsletter_id}/test_groups")
def list_newsletter_test_groups(ctx: Ctx) -> dict:
    _newsletter(ctx)
    return {"test_groups": ctx.ws.cat.test_groups.get(ctx.path["newsletter_id"], [])}


@route("GET /v1/newsletters/{newsletter_id}/test_group/{test_group_id}/language/{language}")
def get_newsletter_test_group_language(ctx: Ctx) -> dict:
    _newsletter(ctx)
    groups = ctx.ws.cat.test_groups.get(ctx.path["newsletter_id"], [])
    for g in groups:
        if str(g["id"]) == str(ctx.path["test_group_id"]):
            return {"content": _translated(ctx.ws.cat.contents[int(g["content_ids"][0])], ctx.path["language"])}
    raise ApiError(404, "test group not found")


# ---------------------------------------------------------------- transactional
def _transactional(ctx: Ctx) -> dict:
    return _get(ctx.ws.cat.transactional, ctx.path["transactional_id"], "transactional message")


@route("GET /v1/transactional")
def list_transactional(ctx: Ctx) -> dict:
    return {"messages": list(ctx.ws.cat.transactional.values())}


@route("GET /v1/transactional/{transactional_id}")
def get_transactional(ctx: Ctx) -> dict:
    return {"message": _transactional(ctx)}


def _t_contents(ctx: Ctx) -> list[dict]:
    tid = _transactional(ctx)["id"]
    return [c for c in ctx.ws.cat.t_contents.values() if c["transactional_id"] == tid]


@route("GET /v1/transactional/{transactional_id}/contents")
def list_transactional_contents(ctx: Ctx) -> dict:
    return {"contents": _t_contents(ctx)}


@route("GET /v1/transactional/{transactional_id}/contents/{content_id}")
def get_transactional_content(ctx: Ctx) -> dict:
    for c in _t_contents(ctx):
        if c["id"] == ctx.path["content_id"]:
            return {"content": c}
    raise ApiError(404, "content not found")


@route("GET /v1/transactional/{transactional_id}/language/{language}")
def get_transactional_language(ctx: Ctx) -> dict:
    contents = [c for c in _t_contents(ctx) if c["language"] == ctx.path["language"]]
    if not contents:
        raise ApiError(404, "no such language")
    return {"content": contents}


# ---------------------------------------------------------------- messages
def _message_list(ctx: Ctx, key: tuple[str, int] | None, extra: Callable[[int], bool] | None = None,
                  indices: Sequence[int] | None = None) -> dict:
    """Newest-first delivery page within the 6-month window; the cursor is the next delivery index."""
    ws, p = ctx.ws, ctx.params
    start, end = ws.message_window(p.get("start_ts"), p.get("end_ts"))
    lo, hi = ws.index_range(start, end)
    arr = indices if indices is not None else ws.delivery_indices(key)
    cursor = dec_cursor(p.get("start"))
    top = hi if cursor is None else min(hi, cursor + 1)
    pos = bisect_left(arr, top) - 1 if not isinstance(arr, range) else top - 1
    floor = bisect_left(arr, lo) if not isinstance(arr, range) else lo
    limit = p.get("limit", 50)
    channel, metric = p.get("type"), p.get("metric")
    drafts = bool(p.get("drafts"))
    state = p.get("state")
    tracked = bool(p.get("get_tracked_responses"))
    out = []
    while pos >= floor and len(out) < limit:
        i = arr[pos]
        pos -= 1
        if ws.is_draft(i) != (drafts or state == "drafted"):
            continue
        if channel and ws.delivery_channel(i) != channel:
            continue
        if extra is not None and not extra(i):
            continue
        if metric or (state and state != "drafted"):
            m = ws.delivery_metrics(i)
            if metric and metric not in m:
                continue
            if state and state != "drafted" and state not in m:
                continue
        out.append(ws.delivery(i, tracked) if tracked else ws.delivery_json(i))
    nxt = enc_cursor(arr[pos]) if pos >= floor and len(out) >= limit else ""
    return {"messages": out, "next": nxt}


@route("GET /v1/messages")
def list_messages(ctx: Ctx) -> dict:
    p, ws = ctx.params, ctx.ws
    cid, nid, aid = p.get("campaign_id"), p.get("newsletter_id"), p.get("action_id")
    key = ("a", aid) if aid is not None else ("c", cid) if cid is not None else (
        ("n", nid) if nid is not None else None)
    checks = []
    if cid is not None and aid is not None:
        checks.append(lambda i: ws.cat.sources[ws.d_src[i]][:2] == (KIND_CAMPAIGN, cid))
    if nid is not None and (aid is not None or cid is not None):
        checks.append(lambda i: ws.cat.sources[ws.d_src[i]][:2] == (KIND_NEWSLETTER, nid))
    extra = (lambda i: all(c(i) for c in checks)) if checks else None
    return _message_list(ctx, key, extra)


@route("GET /v1/campaigns/{campaign_id}/messages")
def campaign_messages(ctx: Ctx) -> dict:
    _campaign(ctx.ws, ctx.path["campaign_id"])
    return _message_list(ctx, ("c", ctx.path["campaign_id"]))


@route("GET /v1/broadcasts/{broadcast_id}/messages")
def broadcast_messages(ctx: Ctx) -> dict:
    _broadcast(ctx.ws, ctx.path["broadcast_id"])
    return _message_list(ctx, ("b", ctx.path["broadcast_id"]))


@route("GET /v1/newsletters/{newsletter_id}/messages")
def newsletter_messages(ctx: Ctx) -> dict:
    _newsletter(ctx)
    return _message_list(ctx, ("n", ctx.path["newsletter_id"]))


@route("GET /v1/transactional/{transactional_id}/messages")
def transactional_messages(ctx: Ctx) -> dict:
    _transactional(ctx)
    return _message_list(ctx, ("t", ctx.path["transactional_id"]))


@route("GET /v1/customers/{customer_id}/messages")
def customer_messages(ctx: Ctx) -> dict:
    i = _person(ctx)
    return _message_list(ctx, None, indices=ctx.ws.person_deliveries(i))


@route("GET /v1/messages/{message_id}")
def get_message(ctx: Ctx) -> dict:
    i = ctx.ws.find_delivery(ctx.path["message_id"])
    if i is None:
        raise ApiError(404, "message not found")
    return {"message": ctx.ws.delivery(i)}


@route("GET /v1/messages/{message_id}/archived_message")
def get_archived_message(ctx: Ctx) -> dict:
    ws = ctx.ws
    i = ws.find_delivery(ctx.path["message_id"])
    if i is None:
        raise ApiError(404, "message not found")
    d = ws.delivery(i)
    return {"archived_message": {
        "id": d["id"], "body": f"<!DOCTYPE html><html><body><h1>{d['subject']}</h1></body></html>",
        "from": "support@acme.example.com", "reply_to": "support@example.com", "recipient": d["recipient"],
        "subject": d["subject"], "bcc": "", "fake_bcc": False, "preheader_text": "",
        "url": d["recipient"] if d["type"] == "webhook" else "", "request_method": "POST" if d["type"] == "webhook"
        else "", "headers": {}, "forgotten": d["forgotten"]}}


# ---------------------------------------------------------------- activities
def _activity_page(ctx: Ctx, indices: Sequence[int] | None, deleted: bool) -> dict:
    ws, p = ctx.ws, ctx.params
    limit = p.get("limit", 10)
    cursor = dec_cursor(p.get("start"))
    arr: Sequence[int] = indices if indices is not None else range(ws.n_activities())
    top = ws.n_activities() if cursor is None else cursor + 1
    pos = (bisect_left(arr, top) if not isinstance(arr, range) else min(top, len(arr))) - 1
    typ, name = p.get("type"), p.get("name")
    out = []
    while pos >= 0 and len(out) < limit:
        j = arr[pos]
        pos -= 1
        if ws.a_ts[j] < ws.now - ws.activity_window:
            pos = -1
            break
        if not ws.activity_visible(j, deleted):
            continue
        rec = ws.activity(j)
        if typ and rec["type"] != typ or name and rec["name"] != name:
            continue
        out.append(rec)
    nxt = enc_cursor(arr[pos]) if pos >= 0 and len(out) >= limit else ""
    return {"activities": out, "next": nxt}


@route("GET /v1/activities")
def list_activities(ctx: Ctx) -> dict:
    # Assumption: deleted=true returns only the activities of deleted people; newest first.
    deleted = bool(ctx.params.get("deleted"))
    cust = ctx.params.get("customer_id")
    if cust:
        if deleted:
            raise ApiError(404, "customer not found")
        i = _person(ctx, cust, ctx.params.get("id_type"))
        return _activity_page(ctx, ctx.ws.person_activities(i), False)
    return _activity_page(ctx, None, deleted)


@route("GET /v1/customers/{customer_id}/activities")
def customer_activities(ctx: Ctx) -> dict:
    i = _person(ctx)
    return _activity_page(ctx, ctx.ws.person_activities(i), False)


# ---------------------------------------------------------------- segments
@route("GET /v1/segments")
def list_segments(ctx: Ctx) -> dict:
    return {"segments": ctx.ws.segments()}


@route("GET /v1/segments/{segment_id}")
def get_segment(ctx: Ctx) -> dict:
    return {"segment": _segment(ctx.ws, ctx.path["segment_id"])}


@route("GET /v1/segments/{segment_id}/used_by")
def get_segment_used_by(ctx: Ctx) -> dict:
    _segment(ctx.ws, ctx.path["segment_id"])
    return {"used_by": ctx.ws.segment_used_by(ctx.path["segment_id"])}


@route("GET /v1/segments/{segment_id}/customer_count")
def get_segment_count(ctx: Ctx) -> dict:
    _segment(ctx.ws, ctx.path["segment_id"])
    return {"count": len(ctx.ws.segment_members(ctx.path["segment_id"]))}


def _people_page(ctx: Ctx, people: Sequence[int], limit: int) -> dict:
    """``{identifiers, ids, next}`` for ascending person indices; the cursor is the next person index."""
    ws = ctx.ws
    cursor = dec_cursor(ctx.params.get("start"))
    pos = 0 if cursor is None else bisect_left(people, cursor)
    chunk = people[pos:pos + limit]
    idents = [ws.identifiers(i) for i in chunk]
    nxt = enc_cursor(people[pos + limit]) if pos + limit < len(people) else ""
    return {"identifiers": idents, "ids": [x["id"] or "" for x in idents], "next": nxt}


@route("GET /v1/segments/{segment_id}/membership")
def get_segment_membership(ctx: Ctx) -> dict:
    _segment(ctx.ws, ctx.path["segment_id"])
    return _people_page(ctx, ctx.ws.segment_members(ctx.path["segment_id"]), ctx.params["limit"])


# ---------------------------------------------------------------- customers
def _match(ws: Workspace, flt: Any, i: int, attrs: dict | None = None) -> bool:
    if not isinstance(flt, dict) or len(flt) != 1:
        raise ApiError(400, "filter must be an object with exactly one of and/or/not/segment/attribute")
    (op, arg), = flt.items()
    if op == "and":
        if not isinstance(arg, list):
            raise ApiError(400, "`and` must be an array")
        return all(_match(ws, f, i) for f in arg)
    if op == "or":
        if not isinstance(arg, list):
            raise ApiError(400, "`or` must be an array")
        return any(_match(ws, f, i) for f in arg)
    if op == "not":
        return not _match(ws, arg, i)
    if op == "segment":
        if not isinstance(arg, dict) or not isinstance(arg.get("id"), int):
            raise ApiError(400, "segment filter needs an integer id")
        return arg["id"] in ws.cat.segments and ws.is_member(arg["id"], i)
    if op == "attribute":
        if not isinstance(arg, dict) or "field" not in arg or arg.get("operator") not in ("eq", "exists"):
            raise ApiError(400, "attribute filter needs field and operator eq|exists")
        attrs = ws.attributes(i)
        val = attrs.get(arg["field"])
        if arg["operator"] == "exists":
            return val is not None
        return val is not None and str(val) == str(arg.get("value"))
    raise ApiError(400, f"unsupported filter condition: {op}")


def _search(ctx: Ctx, flt: Any, limit: int) -> dict:
    ws = ctx.ws
    cursor = dec_cursor(ctx.params.get("start")) or 0
    _match(ws, flt, 0)  # validate the filter shape once, even for an empty workspace
    out: list[int] = []
    i = cursor
    while i < ws.n_people and len(out) <= limit:
        if ws.alive(i) and _match(ws, flt, i):
            out.append(i)
        i += 1
    nxt = enc_cursor(out[limit]) if len(out) > limit else ""
    idents = [ws.identifiers(k) for k in out[:limit]]
    return {"identifiers": idents, "ids": [x["id"] or "" for x in idents], "next": nxt}


@route("POST /v1/customers")
def search_customers(ctx: Ctx) -> dict:
    body = ctx.body
    if not isinstance(body, dict) or "filter" not in body:
        raise ApiError(400, "request body must contain `filter`")
    return _search(ctx, body["filter"], ctx.params["limit"])


@route("GET /v1/customers")
def get_people_by_email(ctx: Ctx) -> dict:
    email = ctx.params["email"]
    i = ctx.ws.find_person(email, "email")
    return {"results": [] if i is None else [ctx.ws.identifiers(i)]}


@route("POST /v1/customers/attributes")
def customers_attributes(ctx: Ctx) -> dict:
    body = ctx.body
    ids = body.get("ids") if isinstance(body, dict) else None
    if not isinstance(ids, list) or not ids:
        raise ApiError(400, "`ids` must be a non-empty array")
    if len(ids) > 100:
        raise ApiError(400, "`ids` accepts at most 100 items")
    id_type = ctx.params.get("id_type", "id")
    out = []
    for v in ids:
        if not isinstance(v, str | int):
            raise ApiError(400, "ids must be strings")
        i = ctx.ws.find_person(str(v), id_type)
        if i is not None:  # unknown ids are omitted
            out.append({"customer": ctx.ws.customer(i)})
    return {"customers": out}


@route("GET /v1/customers/{customer_id}/attributes")
def customer_attributes(ctx: Ctx) -> dict:
    return {"customer": ctx.ws.customer(_person(ctx))}


@route("GET /v1/customers/{customer_id}/segments")
def customer_segments(ctx: Ctx) -> dict:
    ws = ctx.ws
    i = _person(ctx)
    return {"segments": [ws.cat.segments[s] for s in ws.person_segments(i)]}


@route("GET /v1/customers/{customer_id}/relationships")
def customer_relationships(ctx: Ctx) -> dict:
    ws = ctx.ws
    i = _person(ctx)
    rels = []
    for t, o in ws.person_objects(i):
        rels.append({"object_type_id": int(ws.cat.object_types[t]["id"]),
                     "identifiers": {"object_id": ws.object_id(t, o), "cio_object_id": ws.cio_object_id(t, o)},
                     "attributes": _relationship_attributes(ws, t, o, i), "timestamps": {}})
    chunk, nxt = page_offset(rels, ctx)
    return {"cio_relationships": chunk, "next": nxt}


def _relationship_attributes(ws: Workspace, t: int, o: int, i: int) -> dict:
    pushed = ws.pushed.relationship_attributes(t, o, i)  # set through a send API
    if pushed is not None:
        return pushed
    return {"role": ["admin", "member", "viewer"][(i + o) % 3]}


@route("GET /v1/customers/{customer_id}/subscription_preferences")
def customer_subscription_preferences(ctx: Ctx) -> dict:
    ws = ctx.ws
    i = _person(ctx)
    ident = ws.identifiers(i)
    topics = [{"id": f"topic_{t['id']}", "subscribed": t["subscribed_by_default"] != bool(i % 3 == 0),
               "name": t["name"], "description": t["description"]} for t in ws.cat.topics.values()]
    return {"customer": {"id": ident["id"], "identifiers": ident, "topics": topics,
                         "unsubscribed": ws.persons.unsubscribed(i),
                         "header": {"title": "Subscription preferences", "subtitle": "Choose what you get"}}}


# ---------------------------------------------------------------- objects
@route("GET /v1/object_types")
def list_object_types(ctx: Ctx) -> dict:
    return {"types": ctx.ws.cat.object_types}


def _object(ctx: Ctx) -> tuple[int, int]:
    found = ctx.ws.find_object(ctx.path["object_type_id"], ctx.path["object_id"], ctx.params.get("id_type"))
    if found is None or found in ctx.ws.pushed.deleted_objects:  # deleted through a send API
        raise ApiError(404, "object not found")
    return found


@route("POST /v1/objects")
def search_objects(ctx: Ctx) -> dict:
    ws, body = ctx.ws, ctx.body
    if not isinstance(body, dict) or "object_type_id" not in body or "filter" not in body:
        raise ApiError(400, "body requires object_type_id and filter")
    try:
        t = int(body["object_type_id"]) - 1
    except (TypeError, ValueError):
        raise ApiError(400, "invalid object_type_id") from None
    if not 0 <= t < len(ws.cat.object_types):
        raise ApiError(404, "object type not found")
    matches = [o for o in ws.pushed.live_objects(t, ws.sc.objects) if _match_object(ws, body["filter"], t, o)]
    chunk, nxt = page_offset(matches, ctx)
    idents = [{"object_id": ws.object_id(t, o), "cio_object_id": ws.cio_object_id(t, o)} for o in chunk]
    return {"identifiers": idents, "ids": [x["object_id"] for x in idents], "next": nxt}


def _match_object(ws: Workspace, flt: Any, t: int, o: int) -> bool:
    if not isinstance(flt, dict) or len(flt) != 1:
        raise ApiError(400, "filter must be an object with exactly one of and/or/not/object_attribute")
    (op, arg), = flt.items()
    if op in ("and", "or"):
        if not isinstance(arg, list):
            raise ApiError(400, f"`{op}` must be an array")
        res = (_match_object(ws, f, t, o) for f in arg)
        return all(res) if op == "and" else any(res)
    if op == "not":
        return not _match_object(ws, arg, t, o)
    if op == "object_attribute":
        if not isinstance(arg, dict) or "field" not in arg or arg.get("operator") not in ("eq", "exists"):
            raise ApiError(400, "object_attribute filter needs field and operator eq|exists")
        rec = ws.object_record(t, o)
        val = rec["attributes"].get(arg["field"], rec["identifiers"].get(arg["field"]))
        return val is not None if arg["operator"] == "exists" else str(val) == str(arg.get("value"))
    raise ApiError(400, f"unsupported filter condition: {op}")


@route("GET /v1/objects/{object_type_id}/{object_id}/attributes")
def object_attributes(ctx: Ctx) -> dict:
    t, o = _object(ctx)
    return {"object": ctx.ws.object_record(t, o)}


@route("GET /v1/objects/{object_type_id}/{object_id}/relationships")
def object_relationships(ctx: Ctx) -> dict:
    ws = ctx.ws
    t, o = _object(ctx)
    people = ws.object_people(t, o)
    chunk, nxt = page_offset(people, ctx)
    return {"cio_relationships": [{"identifiers": ws.identifiers(i), "object_type_id": ws.cat.object_types[t]["id"],
                                   "object_type_disabled": False} for i in chunk], "next": nxt}


# ---------------------------------------------------------------- misc lists
@route("GET /v1/collections")
def list_collections(ctx: Ctx) -> dict:
    return {"collections": list(ctx.ws.cat.collections.values())}


@route("GET /v1/collections/{collection_id}")
def get_collection(ctx: Ctx) -> dict:
    return {"collection": _get(ctx.ws.cat.collections, ctx.path["collection_id"], "collection")}


@route("GET /v1/collections/{collection_id}/content")
def get_collection_content(ctx: Ctx) -> Any:
    _get(ctx.ws.cat.collections, ctx.path["collection_id"], "collection")
    # Assumption: the content endpoint returns the collection's data array itself.
    return ctx.ws.cat.collection_rows[ctx.path["collection_id"]]


@route("GET /v1/snippets")
def list_snippets(ctx: Ctx) -> dict:
    return {"snippets": list(ctx.ws.cat.snippets.values())}


@route("GET /v1/sender_identities")
def list_senders(ctx: Ctx) -> dict:
    # Assumption: hidden senders are only listed with hidden=true; default sort asc by id.
    items = [public(s) for s in ctx.ws.cat.senders.values() if ctx.params.get("hidden") or not s["hidden"]]
    items.sort(key=lambda s: s["id"], reverse=ctx.params.get("sort") == "desc")
    chunk, nxt = page_offset(items, ctx)
    return {"sender_identities": chunk, "next": nxt}


@route("GET /v1/sender_identities/{sender_id}")
def get_sender(ctx: Ctx) -> dict:
    return {"sender_identity": public(_get(ctx.ws.cat.senders, ctx.path["sender_id"], "sender identity"))}


@route("GET /v1/sender_identities/{sender_id}/used_by")
def get_sender_used_by(ctx: Ctx) -> dict:
    ws = ctx.ws
    sid = _get(ws.cat.senders, ctx.path["sender_id"], "sender identity")["id"]
    camps = sorted({a["campaign_id"] for a in ws.cat.actions.values() if a.get("from_id") == sid
                    and "campaign_id" in a})
    nls = [n for n in ws.cat.newsletters.values()
           if any(ws.cat.contents[c].get("from_id") == sid for c in n["content_ids"])]
    return {"campaigns": camps, "sent_newsletters": [n["id"] for n in nls if n["sent_at"]],
            "draft_newsletters": [n["id"] for n in nls if not n["sent_at"]]}


@route("GET /v1/subscription_topics")
def list_topics(ctx: Ctx) -> dict:
    return {"topics": list(ctx.ws.cat.topics.values())}


@route("GET /v1/reporting_webhooks")
def list_webhooks(ctx: Ctx) -> dict:
    return {"reporting_webhooks": list(ctx.ws.cat.webhooks.values())}


@route("GET /v1/reporting_webhooks/{webhook_id}")
def get_webhook(ctx: Ctx) -> dict:
    return dict(_get(ctx.ws.cat.webhooks, ctx.path["webhook_id"], "webhook"))


@route("GET /v1/workspaces")
def list_workspaces(ctx: Ctx) -> dict:
    ws = ctx.ws
    out = []
    for k, w in enumerate(ws.cat.workspaces):
        rec = dict(w)
        if k == 0:  # the workspace this key belongs to carries the live counts
            rec.update(messages_sent=ws.n_deliveries(), billable_messages_sent=ws.n_deliveries() * 3 // 4,
                       people=ws.n_people - len(ws.deleted_people))
        out.append(rec)
    return {"workspaces": out}


@route("GET /v1/info/ip_addresses")
def list_ip_addresses(ctx: Ctx) -> dict:
    return {"ip_addresses": ctx.ws.cat.ip_addresses}


@route("GET /v1/esp/suppression/{suppression_type}")
def list_suppressions(ctx: Ctx) -> dict:
    kind = ctx.path["suppression_type"]
    rows = ctx.ws.cat.suppressions[kind]
    dom = ctx.params.get("domain")
    if dom:
        rows = [r for r in rows if r["email"].endswith("@" + dom)]
    off, limit = ctx.params.get("offset", 0), ctx.params.get("limit", 100)
    if off < 0:
        raise ApiError(400, "offset must be >= 0")
    return {"category": kind, "suppressions": rows[off:off + limit]}


@route("GET /v1/esp/search_suppression/{email_address}")
def search_suppression(ctx: Ctx) -> dict:
    email = ctx.path["email_address"]
    for kind, rows in ctx.ws.cat.suppressions.items():
        hits = [r for r in rows if r["email"] == email]
        if hits:
            return {"category": kind, "suppressions": hits}
    return {"category": "", "suppressions": []}


@route("GET /v1/imports/{import_id}")
def get_import(ctx: Ctx) -> dict:
    raise ApiError(404, "import not found")


# ---------------------------------------------------------------- exports
@route("GET /v1/exports")
def list_exports(ctx: Ctx) -> dict:
    return {"exports": [ctx.server.exports.view(e) for e in ctx.ws.cat.exports]}


@route("GET /v1/exports/{export_id}")
def get_export(ctx: Ctx) -> dict:
    return {"export": ctx.server.exports.poll(ctx.path["export_id"])}


@route("GET /v1/exports/{export_id}/download")
def download_export(ctx: Ctx) -> dict:
    return {"url": ctx.server.exports.download_url(ctx.path["export_id"])}


@route("POST /v1/exports/customers")
def export_customers(ctx: Ctx) -> dict:
    return {"export": ctx.server.exports.create_customers(ctx.body)}


@route("POST /v1/exports/deliveries")
def export_deliveries(ctx: Ctx) -> dict:
    return {"export": ctx.server.exports.create_deliveries(ctx.body)}


# ---------------------------------------------------------------- metrics
def _steps(ctx: Ctx) -> tuple[str, list[int]]:
    period = ctx.params.get("period", "days")
    steps = ctx.params.get("steps") or mx.DEFAULT_STEPS[period]
    if steps < 0 or steps > mx.MAX_STEPS[period]:
        raise ApiError(400, f"steps must be between 1 and {mx.MAX_STEPS[period]} for period {period}")
    # Assumption (documented in CONTRACT.md): steps=N returns N periods, the last one the current period.
    return period, mx.steps_buckets(ctx.ws.now, period, steps)


def _v1_metric(ctx: Ctx, key: tuple[str, int]) -> dict:
    _period, bounds = _steps(ctx)
    series = mx.parent_series(ctx.ws, key, bounds, mx.SERIES_V1, ctx.params.get("type"))
    return {"metric": {"series": series}}


def _v2_metric(ctx: Ctx, key: tuple[str, int], action: bool) -> dict:
    p = ctx.params
    for name in ("res", "start", "end"):
        if p.get(name) is None:
            raise ApiError(400, f"{name} is required with version=2")
    start, end = p["start"], p["end"]
    if end < start or end - start > 10 * 366 * 86400:
        raise ApiError(400, "end must be after start and at most 10 years later")
    res = mx.RES_ALIASES[p["res"]]
    tz = UTC if p.get("tz", "UTC") == "UTC" else ZoneInfo(p["tz"])
    bounds = mx.range_buckets(start, end, res, tz)
    if len(bounds) > 5000:
        raise ApiError(400, "too many periods requested")
    series = mx.parent_series(ctx.ws, key, bounds, mx.SERIES_C, p.get("type"))
    out: dict[str, Any] = {"start": go_time(bounds[0], tz), "end": go_time(bounds[-1], tz), "res": p["res"],
                           "metric": {"series": series}}
    if action:
        out["language_variants"] = {}
    return out


def _campaign_metric(ctx: Ctx, key: tuple[str, int], action: bool) -> dict:
    if ctx.params.get("version") == "2":  # period/steps are ignored with version=2
        return _v2_metric(ctx, key, action)
    for name in ("res", "start", "end"):
        if ctx.params.get(name) is not None:
            raise ApiError(400, f"{name} requires version=2")
    return _v1_metric(ctx, key)


@route("GET /v1/campaigns/{campaign_id}/metrics")
def campaign_metrics(ctx: Ctx) -> dict:
    _campaign(ctx.ws, ctx.path["campaign_id"])
    return _campaign_metric(ctx, ("c", ctx.path["campaign_id"]), False)


@route("GET /v1/campaigns/{campaign_id}/actions/{action_id}/metrics")
def campaign_action_metrics(ctx: Ctx) -> dict:
    _action(ctx.ws, "campaign_id", _campaign(ctx.ws, ctx.path["campaign_id"])["id"], ctx.path["action_id"])
    return _campaign_metric(ctx, ("a", ctx.path["action_id"]), True)


@route("GET /v1/broadcasts/{broadcast_id}/metrics")
def broadcast_metrics(ctx: Ctx) -> dict:
    _broadcast(ctx.ws, ctx.path["broadcast_id"])
    return _v1_metric(ctx, ("b", ctx.path["broadcast_id"]))


@route("GET /v1/broadcasts/{broadcast_id}/actions/{action_id}/metrics")
def broadcast_action_metrics(ctx: Ctx) -> dict:
    _action(ctx.ws, "broadcast_id", _broadcast(ctx.ws, ctx.path["broadcast_id"])["id"], ctx.path["action_id"])
    return _v1_metric(ctx, ("a", ctx.path["action_id"]))


@route("GET /v1/newsletters/{newsletter_id}/metrics")
def newsletter_metrics(ctx: Ctx) -> dict:
    _newsletter(ctx)
    return _v1_metric(ctx, ("n", ctx.path["newsletter_id"]))


@route("GET /v1/newsletters/{newsletter_id}/contents/{content_id}/metrics")
def newsletter_content_metrics(ctx: Ctx) -> dict:
    _content(ctx)
    return _v1_metric(ctx, ("nc", ctx.path["content_id"]))


@route("GET /v1/transactional/{transactional_id}/metrics")
def transactional_metrics(ctx: Ctx) -> dict:
    _transactional(ctx)
    return _v1_metric(ctx, ("t", ctx.path["transactional_id"]))


def _links(ctx: Ctx, key: tuple[str, int], children: list[int]) -> dict:
    _period, bounds = _steps(ctx)
    links = {c: mx.links_for(c) for c in children}
    return {"links": mx.link_series(ctx.ws, ctx.ws.delivery_indices(key), bounds, links, ctx.params.get("type"))}


@route("GET /v1/campaigns/{campaign_id}/metrics/links")
def campaign_links(ctx: Ctx) -> dict:
    camp = _campaign(ctx.ws, ctx.path["campaign_id"])
    return _links(ctx, ("c", camp["id"]), [a["id"] for a in camp["actions"]])


@route("GET /v1/campaigns/{campaign_id}/actions/{action_id}/metrics/links")
def campaign_action_links(ctx: Ctx) -> dict:
    act = _action(ctx.ws, "campaign_id", _campaign(ctx.ws, ctx.path["campaign_id"])["id"], ctx.path["action_id"])
    return _links(ctx, ("a", act["id"]), [act["id"]])


@route("GET /v1/broadcasts/{broadcast_id}/metrics/links")
def broadcast_links(ctx: Ctx) -> dict:
    b = _broadcast(ctx.ws, ctx.path["broadcast_id"])
    return _links(ctx, ("b", b["id"]), [a["id"] for a in b["actions"]])


@route("GET /v1/broadcasts/{broadcast_id}/actions/{action_id}/metrics/links")
def broadcast_action_links(ctx: Ctx) -> dict:
    act = _action(ctx.ws, "broadcast_id", _broadcast(ctx.ws, ctx.path["broadcast_id"])["id"], ctx.path["action_id"])
    return _links(ctx, ("a", act["id"]), [act["id"]])


@route("GET /v1/newsletters/{newsletter_id}/metrics/links")
def newsletter_links(ctx: Ctx) -> dict:
    nl = _newsletter(ctx)
    return _links(ctx, ("n", nl["id"]), list(nl["content_ids"]))


@route("GET /v1/newsletters/{newsletter_id}/contents/{content_id}/metrics/links")
def newsletter_content_links(ctx: Ctx) -> dict:
    c = _content(ctx)
    return _links(ctx, ("nc", c["id"]), [c["id"]])


@route("GET /v1/transactional/{transactional_id}/metrics/links")
def transactional_links(ctx: Ctx) -> dict:
    t = _transactional(ctx)
    return _links(ctx, ("t", t["id"]), [t["id"]])


@route("GET /v1/campaigns/{campaign_id}/journey_metrics")
def journey_metrics(ctx: Ctx) -> dict:
    ws, p = ctx.ws, ctx.params
    camp = _campaign(ws, ctx.path["campaign_id"])
    start, end = p["start"], p["end"]
    if end < start:
        raise ApiError(400, "end must be after start")
    # Assumption: journey periods are bucketed in UTC; index i counts journeys that started in period i.
    bounds = mx.range_buckets(start, end, mx.RES_ALIASES[p["resolution"]], dt.timezone.utc)
    if len(bounds) > 5000:
        raise ApiError(400, "too many periods requested")
    first = camp["actions"][0]["id"] if camp["actions"] else None
    n = len(bounds) - 1
    started, messaged = [0] * n, [0] * n
    from bisect import bisect_right

    for i in ws.delivery_indices(("c", camp["id"])):
        c = ws.d_created[i]
        if bounds[0] <= c < bounds[-1]:
            b = bisect_right(bounds, c) - 1
            messaged[b] += 1
            if ws.cat.sources[ws.d_src[i]][2] == first:
                started[b] += 1
    finished = [s * 3 // 4 for s in started]
    converted = [s // 10 for s in started]
    exited = [s // 8 for s in started]
    never = [s - f - e if s - f - e > 0 else 0 for s, f, e in zip(started, finished, exited, strict=True)]
    return {"journey_metric": {"started": started, "activated": [s - v for s, v in zip(started, never, strict=True)],
                               "exited_early": exited, "finished": finished, "converted": converted,
                               "never_activated": never, "messaged": messaged}}

