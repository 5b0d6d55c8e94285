"""The test oracle: what a complete load of each table of a simulated workspace must contain.

``expected_keys(ws, table)``, ``expected_count(ws, table)`` and ``deleted_keys(ws, table)`` read the
workspace's own data (under its lock); tests and benchmarks compare warehouses with them. Test-only: the
shipped simulator serves the API and knows nothing of what a connector should have loaded.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from customerio_source.simulator.catalog import KIND_BROADCAST, KIND_CAMPAIGN, KIND_NEWSLETTER, KIND_TRANSACTIONAL

if TYPE_CHECKING:
    from customerio_source.simulator.workspace import Workspace

Key = tuple


def _deliveries(ws: Workspace, kinds: set[int] | None, since: int | None,
                skip_broadcasts: set[int] | None = None, people: bool = False) -> set[Key]:
    out: set[Key] = set()
    srcs = ws.cat.sources
    lo = 0
    if since is not None:
        lo = ws.index_range(since, ws.now)[0]
    for i in range(lo, len(ws.d_created)):
        if ws.is_draft(i):
            continue
        kind, parent, _c, _ch = srcs[ws.d_src[i]]
        if kinds is not None and kind not in kinds:
            continue
        if skip_broadcasts and kind == KIND_BROADCAST and parent in skip_broadcasts:
            continue
        if people and not ws.alive(ws.d_person[i]):
            continue
        out.add((ws.delivery_id(i),))
    return out


def _activities(ws: Workspace, deleted: bool) -> set[Key]:
    return {(ws.activity_id(j),) for j in range(len(ws.a_ts)) if ws.activity_visible(j, deleted)}


def _expected_keys(ws: Workspace, table: str, since: int | None = None) -> set[Key]:
    cat = ws.cat
    live_b = {b["id"] for b in ws.broadcasts()}
    simple = {
        "workspaces": lambda: {(w["id"],) for w in cat.workspaces},
        "campaigns": lambda: {(c,) for c in cat.campaigns},
        "broadcasts": lambda: {(b,) for b in live_b},
        "newsletters": lambda: {(n,) for n in cat.newsletters},
        "segments": lambda: {(s,) for s in ws.live_segments()},
        "segment_dependencies": lambda: {(s,) for s in ws.live_segments()},
        "exports": lambda: {(e,) for e in cat.exports},
        "collections": lambda: {(c,) for c in cat.collections},
        "snippets": lambda: {(n,) for n in cat.snippets},
        "sender_identities": lambda: {(s,) for s, rec in cat.senders.items() if not rec["hidden"]},
        "subscription_topics": lambda: {(t,) for t in cat.topics},
        "transactional_messages": lambda: {(t,) for t in cat.transactional},
        "reporting_webhooks": lambda: {(w,) for w in cat.webhooks},
        "info_ip_addresses": lambda: {(ip,) for ip in cat.ip_addresses},
        "object_types": lambda: {(t["id"],) for t in cat.object_types},
        "esp_suppressions": lambda: {(k, r["email"]) for k, rows in cat.suppressions.items() for r in rows},
        "customers": lambda: {(ws.cio_id(i),) for i in ws.live_people()},
        "customer_attributes": lambda: {(ws.cio_id(i),) for i in ws.live_people()},
        "campaign_actions": lambda: {(a,) for a, rec in cat.actions.items() if "campaign_id" in rec},
        "broadcast_actions": lambda: {(a,) for a, rec in cat.actions.items() if rec.get("broadcast_id") in live_b},
        "broadcast_triggers": lambda: {(t,) for t, rec in cat.triggers.items() if rec["broadcast_id"] in live_b},
        "newsletter_variants": lambda: {(c,) for c in cat.contents},
        "newsletter_test_groups": lambda: {(g["id"],) for groups in cat.test_groups.values() for g in groups},
        "transactional_variants": lambda: {(c,) for c in cat.t_contents},
        "objects": lambda: {(t["id"], ws.object_id(k, o)) for k, t in enumerate(cat.object_types)
                            for o in range(ws.sc.objects)},
        "messages": lambda: _deliveries(ws, None, since),
        "campaign_messages": lambda: _deliveries(ws, {KIND_CAMPAIGN}, since),
        "broadcast_messages": lambda: _deliveries(ws, {KIND_BROADCAST}, since, set(ws.deleted_broadcasts)),
        "newsletter_messages": lambda: _deliveries(ws, {KIND_NEWSLETTER}, since),
        "transactional_message_deliveries": lambda: _deliveries(ws, {KIND_TRANSACTIONAL}, since),
        # per-person deliveries over all history: the connector reads them in windows like `messages`
        "customer_messages": lambda: _deliveries(ws, None, since, people=True),
        "activities": lambda: _activities(ws, False),
        "customer_activities": lambda: _activities(ws, False),
        "segment_memberships": lambda: {(s, ws.cio_id(i)) for s in ws.live_segments()
                                        for i in ws.segment_members(s)},
        "customer_segments": lambda: {(ws.cio_id(i), s) for s in ws.live_segments()
                                      for i in ws.segment_members(s)},
        "customer_relationships": lambda: {(ws.cio_id(i), cat.object_types[t]["id"], ws.object_id(t, o))
                                           for t, o, i in _relationships(ws)},
        "object_relationships": lambda: {(cat.object_types[t]["id"], ws.object_id(t, o), ws.cio_id(i))
                                         for t, o, i in _relationships(ws)},
    }
    if table not in simple:
        raise KeyError(f"unknown table {table!r}")
    return simple[table]()


def _relationships(ws: Workspace, people: set[int] | None = None):
    for t in range(ws.sc.object_types):
        for i in (people if people is not None else range(min(ws.n_people, ws._n0))):
            o = ws.person_object(t, i)
            if o >= 0 and (people is not None or ws.alive(i)):
                yield t, o, i


def _deleted_keys(ws: Workspace, table: str) -> set[Key]:
    """Rows that were visible at an earlier step and are gone now (deleted people/broadcasts/segments)."""
    cat = ws.cat
    gone = {i for i, step in ws.deleted_people.items() if step > 0}
    dead_b = set(ws.deleted_broadcasts)
    dead_s = set(ws.deleted_segments)
    if table in ("customers", "customer_attributes"):
        return {(ws.cio_id(i),) for i in gone}
    if table == "broadcasts":
        return {(b,) for b in dead_b}
    if table == "broadcast_actions":
        return {(a,) for a, rec in cat.actions.items() if rec.get("broadcast_id") in dead_b}
    if table == "broadcast_triggers":
        return {(t,) for t, rec in cat.triggers.items() if rec["broadcast_id"] in dead_b}
    if table == "broadcast_messages":
        return _deliveries_of(ws, lambda kind, parent, p: kind == KIND_BROADCAST and parent in dead_b)
    if table == "customer_messages":
        return _deliveries_of(ws, lambda kind, parent, p: p in gone)
    if table in ("segments", "segment_dependencies"):
        return {(s,) for s in dead_s}
    if table in ("segment_memberships", "customer_segments"):
        pairs = set()
        density = cat.segment_density
        from customerio_source.simulator._util import mix

        for s in cat.segments:
            base = ws._ssalt ^ (s << 40)
            added = ws._seg_added.get(s, set())
            ppl = range(ws.n_people) if s in dead_s else gone
            for i in ppl:
                if i in ws.deleted_people and ws.deleted_people[i] == 0:
                    continue
                if i in added or mix(base ^ i) % 1000 < density[s]:
                    if s in dead_s or i in gone:
                        pairs.add((s, ws.cio_id(i)) if table == "segment_memberships" else (ws.cio_id(i), s))
        return pairs
    if table in ("activities", "customer_activities"):
        return {(ws.activity_id(j),) for j in range(len(ws.a_ts))
                if ws.a_person[j] in gone and ws.activity_visible(j, True)}
    if table == "customer_relationships":
        return {(ws.cio_id(i), cat.object_types[t]["id"], ws.object_id(t, o)) for t, o, i in _relationships(ws, gone)}
    if table == "object_relationships":
        return {(cat.object_types[t]["id"], ws.object_id(t, o), ws.cio_id(i)) for t, o, i in _relationships(ws, gone)}
    if table not in ws.tables():
        raise KeyError(f"unknown table {table!r}")
    return set()


def _deliveries_of(ws: Workspace, pred) -> set[Key]:
    srcs = ws.cat.sources
    out = set()
    for i in range(len(ws.d_created)):
        if ws.is_draft(i):
            continue
        kind, parent, _c, _ch = srcs[ws.d_src[i]]
        if pred(kind, parent, ws.d_person[i]):
            out.add((ws.delivery_id(i),))
    return out


def expected_keys(ws: Workspace, table: str, since: int | None = None) -> set[Key]:
    """Primary-key tuples a complete load of ``table`` must contain (live rows only).

    Deliveries: every non-draft delivery of the whole history (a connector can reach rows older
    than 6 months with explicit ``start_ts``/``end_ts`` windows); pass ``since`` to keep only
    deliveries created at or after it. Drafts (``drafts=true``) are not included.
    ``customer_messages`` is per person with the endpoint's default window: the last 6 months only.
    Activities: live people's activities within the API's 30-day window.
    """
    with ws.lock:
        return _expected_keys(ws, table, since)


def expected_count(ws: Workspace, table: str) -> int:
    """``len(expected_keys(ws, table))``, without building the set where that is cheap."""
    if table == "messages":
        return sum(1 for i in range(len(ws.d_created)) if not ws.is_draft(i))
    if table in ("customers", "customer_attributes"):
        return ws.n_people - len(ws.deleted_people)
    if table in ("segment_memberships", "customer_segments"):
        # one key per (segment, member): counted without a set of millions of tuples (stress scale)
        with ws.lock:
            return sum(len(ws.segment_members(s)) for s in ws.live_segments())
    return len(expected_keys(ws, table))


def deleted_keys(ws: Workspace, table: str) -> set[Key]:
    """Keys that existed at some earlier step and are now deleted."""
    with ws.lock:
        return _deleted_keys(ws, table)
