"""One deterministic change step (``Workspace.advance``)."""

from __future__ import annotations

import random
import time
from bisect import bisect_left, bisect_right
from typing import TYPE_CHECKING

from ._util import DAY
from .catalog import KIND_CAMPAIGN, KIND_TRANSACTIONAL, new_action, new_campaign

if TYPE_CHECKING:
    from .workspace import Workspace

PLANS = ["free", "starter", "pro", "team", "enterprise"]
# late engagement lands on deliveries of these ages (days): days, weeks and months old
LATE_AGES = ((4, 10), (14, 35), (60, 170))
OPENED_KIND, CLICKED_KIND, CONVERTED_KIND = 2, 3, 7  # indices in workspace.ACT_KINDS


def _pick(rng: random.Random, items: list, k: int = 1) -> list:
    return rng.sample(items, min(k, len(items))) if items else []


def apply_change_step(ws: Workspace) -> None:
    """Updates, child-only changes, inserts, deletes, late metrics, attribute changes, a snippet change."""
    old = ws.now
    new = max(old + 60, int(time.time()))
    ws.step += 1
    ws.now = new
    ws._change_gen += 1
    rng = random.Random(ws.seed * 7919 + ws.step * 104_729)
    lo = max(old, new - 3600)  # new rows land in (old now, new now], within the last hour
    cat = ws.cat
    ch: dict[str, list] = {k: [] for k in (
        "updated_campaigns", "updated_broadcasts", "updated_newsletters", "new_actions", "edited_contents",
        "new_campaigns", "new_people", "new_deliveries", "new_activities", "new_segment_members",
        "deleted_broadcasts", "deleted_segments", "deleted_people", "late_metrics", "attribute_changes",
        "changed_snippets", "late_engagement")}

    def ts() -> int:
        return rng.randint(lo + 1, new)

    # updates (parent `updated` moves)
    for c in _pick(rng, list(cat.campaigns.values())):
        c["updated"] = new
        c["deduplicate_id"] = f"{c['id']}:{new}"
        ch["updated_campaigns"].append(c["id"])
    for b in _pick(rng, ws.broadcasts()):
        rec = cat.broadcasts[b["id"]]
        rec["updated"] = new
        rec["deduplicate_id"] = f"{b['id']}:{new}"
        ch["updated_broadcasts"].append(b["id"])
    for n in _pick(rng, list(cat.newsletters.values())):
        n["updated"] = new
        n["deduplicate_id"] = f"{n['id']}:{new}"
        ch["updated_newsletters"].append(n["id"])
    # children change WITHOUT the parent's `updated` moving
    for c in _pick(rng, list(cat.campaigns.values())):
        act = new_action(cat, rng, "campaign_id", c["id"], new, len(c["actions"]))
        c["actions"].append({"type": act["type"], "id": act["id"]})
        ch["new_actions"].append(act["id"])
    for cid in _pick(rng, list(cat.contents)):
        content = cat.contents[cid]
        ws.subject_edits.setdefault(cid, []).append((new, content["subject"]))  # sent deliveries keep theirs
        content["subject"] = f"{content['subject'].split(' (edit')[0]} (edit {ws.step})"
        content["deduplicate_id"] = f"{cid}:{new}"
        ch["edited_contents"].append(cid)
    # inserts
    # created at the start of the step's span: its deliveries below are never older than it
    camp = new_campaign(cat, rng, lo, ws.live_segments())
    ch["new_campaigns"].append(camp["id"])
    for _ in range(max(1, ws._n0 // 200)):
        i = ws.n_people
        ws._p_created_extra[i] = ts()
        ws.n_people += 1
        ch["new_people"].append(i)
    live_new = list(ch["new_people"])
    srcs = [s for s, src in enumerate(cat.sources) if src[0] in (KIND_CAMPAIGN, KIND_TRANSACTIONAL)]
    created = sorted(ts() for _ in range(max(3, ws.sc.deliveries // 200)))
    for t in created:
        s = srcs[rng.randrange(len(srcs))]
        p = live_new[rng.randrange(len(live_new))] if rng.random() < 0.2 else rng.randrange(ws.n_people)
        while not ws.alive(p):
            p = rng.randrange(ws.n_people)
        i = len(ws.d_created)
        ws.d_created.append(t)
        ws.d_src.append(s)
        ws.d_person.append(p)
        ws._index_delivery(i, s)
        ws._dp_extra.setdefault(p, []).append(i)
        ch["new_deliveries"].append(i)
    for t in sorted(ts() for _ in range(max(3, ws.sc.activities // 100))):
        d = len(ws.d_created) - 1 - rng.randrange(min(len(created), 3))
        if rng.random() < 0.5:
            _add_activity(ws, t, 0 if rng.random() < 0.6 else 2, d, ws.d_person[d])
        else:
            p = rng.randrange(ws.n_people)
            while not ws.alive(p):
                p = rng.randrange(ws.n_people)
            _add_activity(ws, t, 4, -1, p)
        ch["new_activities"].append(len(ws.a_ts) - 1)
    segs = ws.live_segments()
    manual = [s for s in segs if cat.segments[s]["type"] == "manual"] or segs
    for s in _pick(rng, manual):
        for _ in range(3):
            p = rng.randrange(ws.n_people)
            if ws.alive(p) and not ws.is_member(s, p):
                ws._seg_added.setdefault(s, set()).add(p)
                ch["new_segment_members"].append((s, p))
    # deletes: a broadcast, a segment, some people
    live_b = [b["id"] for b in ws.broadcasts()]
    if len(live_b) >= 2:
        bid = rng.choice(live_b)
        ws.deleted_broadcasts[bid] = ws.step
        ch["deleted_broadcasts"].append(bid)
    if len(segs) >= 3:
        sid = rng.choice(segs)
        ws.deleted_segments[sid] = ws.step
        ch["deleted_segments"].append(sid)
    for _ in range(max(1, ws._n0 // 500)):
        p = rng.randrange(ws.n_people)
        if ws.alive(p) and p not in ch["new_people"]:
            ws.deleted_people[p] = ws.step
            ch["deleted_people"].append(p)
    # late metrics: opened/clicked land on deliveries created 1–2 days before now (with activities, below)
    a, b = bisect_left(ws.d_created, new - 2 * DAY), bisect_right(ws.d_created, new - DAY)
    if b - a < 5:  # big jump in time (old anchor): use the newest deliveries from before the old now
        b = bisect_right(ws.d_created, old)
        a = max(0, b - 50)
    cands = [i for i in range(a, b) if not ws.is_draft(i) and "opened" not in ws.delivery_metrics(i)
             and ws.alive(ws.d_person[i])  # a deleted person engages no more
             and "sent" in ws.delivery_metrics(i) and ws.delivery_channel(i) in ("email", "push", "in_app")]
    events: list[tuple[int, int, int]] = []  # (timestamp, activity kind, delivery) of every late metric

    def engage(i: int, kind: str, may_convert: bool) -> None:
        """Delivery ``i`` is opened now, clicked half the time (and then converted 30% of the time when
        ``may_convert``): its metrics overlay and the matching activities."""
        opened = max(ts(), ws.d_created[i] + 1)
        ov = {"opened": opened}
        events.append((opened, OPENED_KIND, i))
        if rng.random() < 0.5:
            ov["clicked"] = min(new, opened + rng.randint(1, 300))
            events.append((ov["clicked"], CLICKED_KIND, i))
            if may_convert and rng.random() < 0.3:
                ov["converted"] = min(new, ov["clicked"] + rng.randint(1, 600))
                events.append((ov["converted"], CONVERTED_KIND, i))
        ws._metric_overlay[i] = ov
        ch[kind].append(i)

    for i in _pick(rng, cands, max(2, ws.sc.deliveries // 2000)):
        engage(i, "late_metrics", may_convert=False)
    # late engagement on deliveries days, weeks and months old
    for youngest, oldest in LATE_AGES:
        a, b = bisect_left(ws.d_created, new - oldest * DAY), bisect_right(ws.d_created, new - youngest * DAY)
        for i in _late_candidates(ws, rng, a, b, max(2, ws.sc.deliveries // 4000)):
            engage(i, "late_engagement", may_convert=True)
    for t, kind, i in sorted(events):  # the matching activities
        _add_activity(ws, t, kind, i, ws.d_person[i])
    # attribute changes (+ matching attribute_change activities)
    for _ in range(max(2, ws._n0 // 100)):
        p = rng.randrange(ws.n_people)
        if not ws.alive(p):
            continue
        t = ts()
        before = ws.attributes(p)
        new_plan = rng.choice([x for x in PLANS if x != before.get("plan")])
        change = {"plan": new_plan}
        if rng.random() < 0.3 and before.get("email"):
            local, dom = before["email"].split("@")
            change["email"] = f"{local.split('.v')[0]}.v{ws.step}@{dom}"
        if "email" in change:  # deliveries sent before keep the address they were sent to
            ws.email_edits.setdefault(p, []).append((t, ws.identifiers(p)["email"]))
        ws._attr_overlay.setdefault(p, {}).update(change)
        ws._ts_overlay.setdefault(p, {}).update(dict.fromkeys(change, t))
        for attr, val in change.items():
            j = _add_activity(ws, t, 6, -1, p)
            ws._a_data[j] = (attr, {attr: {"from": before.get(attr), "to": val}})
        ch["attribute_changes"].append(p)
    # a changed snippet
    for name in _pick(rng, list(cat.snippets)):
        cat.snippets[name]["value"] = f"<p>{name} v{ws.step + 1}</p>"
        cat.snippets[name]["updated_at"] = new
        ch["changed_snippets"].append(name)
    ws._seg_cache.clear()
    ws._ident_cache.clear()
    ws._delivery_json.clear()
    ws.last_changes = ch


def _late_candidates(ws: Workspace, rng: random.Random, a: int, b: int, k: int) -> list[int]:
    """Up to ``k`` sent, unopened, openable deliveries of live people among indices [a, b), at random."""
    picked: list[int] = []
    if b <= a:
        return picked
    for _ in range(k * 20):
        i = rng.randrange(a, b)
        if i in picked or i in ws._metric_overlay or ws.is_draft(i) or not ws.alive(ws.d_person[i]):
            continue
        if ws.delivery_channel(i) not in ("email", "push", "in_app"):
            continue
        metrics = ws.delivery_metrics(i)
        if "sent" in metrics and "opened" not in metrics:
            picked.append(i)
            if len(picked) == k:
                break
    return picked


def _add_activity(ws: Workspace, t: int, kind: int, ref: int, person: int) -> int:
    """Append an activity; keeps ``a_ts`` sorted (t is >= every existing timestamp)."""
    j = len(ws.a_ts)
    if ws.a_ts and t < ws.a_ts[-1]:
        t = ws.a_ts[-1]
    ws.a_ts.append(t)
    ws.a_kind.append(kind)
    ws.a_ref.append(ref)
    ws.a_person.append(person)
    ws._ap_extra.setdefault(person, []).append(j)
    return j
