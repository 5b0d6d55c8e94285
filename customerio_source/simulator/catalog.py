"""The small, fully materialised part of a workspace: campaigns, actions, broadcasts, newsletters, ...

Everything here is at most a few hundred dicts, so it is kept as plain dicts (record shapes follow the
App API spec examples). People, deliveries and activities are derived on demand in ``workspace.py``.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from ._util import DAY
from .scales import Scale

CAMPAIGN_NAMES = ["Onboarding", "Welcome series", "Trial ending", "Win-back", "Abandoned cart", "Re-engagement",
                  "Upgrade nudge", "Feature tour", "NPS survey", "Renewal reminder", "Birthday", "Churn rescue"]
NEWSLETTER_NAMES = ["Monthly digest", "Product update", "Spring sale", "Webinar invite", "Changelog",
                    "Holiday hours", "Community roundup", "Security notice"]
SEGMENT_NAMES = ["Active users", "Paying customers", "Trialists", "Churn risk", "Power users", "Newsletter fans",
                 "EU residents", "Mobile app users", "Enterprise leads", "Dormant 90d", "VIP", "Beta testers"]
ACTION_TYPES = ["email", "email", "email", "push", "webhook", "in_app", "twilio"]
OBJECT_TYPES = [("Companies", "Company", "companies", "company", "building"),
                ("Accounts", "Account", "accounts", "account", "briefcase"),
                ("Projects", "Project", "projects", "project", "folder")]
KIND_CAMPAIGN, KIND_BROADCAST, KIND_NEWSLETTER, KIND_TRANSACTIONAL = 0, 1, 2, 3


@dataclass
class Catalog:
    """Materialised small entities, keyed by id (insertion order = list order)."""

    campaigns: dict[int, dict] = field(default_factory=dict)
    actions: dict[int, dict] = field(default_factory=dict)  # campaign + broadcast actions
    broadcasts: dict[int, dict] = field(default_factory=dict)
    triggers: dict[int, dict] = field(default_factory=dict)
    newsletters: dict[int, dict] = field(default_factory=dict)
    contents: dict[int, dict] = field(default_factory=dict)
    test_groups: dict[int, list[dict]] = field(default_factory=dict)
    transactional: dict[int, dict] = field(default_factory=dict)
    t_contents: dict[int, dict] = field(default_factory=dict)
    segments: dict[int, dict] = field(default_factory=dict)
    segment_density: dict[int, int] = field(default_factory=dict)  # per-mille membership
    object_types: list[dict] = field(default_factory=list)
    collections: dict[int, dict] = field(default_factory=dict)
    collection_rows: dict[int, list[dict]] = field(default_factory=dict)
    snippets: dict[str, dict] = field(default_factory=dict)
    senders: dict[int, dict] = field(default_factory=dict)
    topics: dict[int, dict] = field(default_factory=dict)
    webhooks: dict[int, dict] = field(default_factory=dict)
    workspaces: list[dict] = field(default_factory=list)
    ip_addresses: list[str] = field(default_factory=list)
    exports: dict[int, dict] = field(default_factory=dict)
    suppressions: dict[str, list[dict]] = field(default_factory=dict)
    # (kind, parent_id, child_id, channel) — what a delivery was sent by
    sources: list[tuple[int, int, int | None, str]] = field(default_factory=list)
    next_id: dict[str, int] = field(default_factory=dict)

    def new_id(self, kind: str, rng: random.Random) -> int:
        """Next id of a kind, with small random gaps like a real workspace."""
        nid = self.next_id[kind] + rng.randint(1, 3)
        self.next_id[kind] = nid
        return nid


def _dedup(rec_id: Any, ts: int) -> str:
    return f"{rec_id}:{ts}"


def message_fields(rng: random.Random, channel: str, name: str, sender: dict) -> dict:
    """Content fields shared by campaign/broadcast actions and newsletter/transactional contents."""
    subject = f"{name}: {rng.choice(['Hello', 'Quick update', 'Your account', 'We miss you', 'News'])}"
    link = f"https://example.com/{rng.randint(1, 99)}"
    body = f"<p>Hi {{{{customer.first_name}}}}, {name.lower()} — <a href=\"{link}\">read more</a></p>"
    return {
        "name": name, "layout": "<html><body>{{ content }}</body></html>" if channel == "email" else "",
        "body": body, "body_amp": "", "language": "", "type": channel,
        "from": sender["email"] if channel == "email" else "", "from_id": sender["id"] if channel == "email" else None,
        "reply_to": "support@example.com" if channel == "email" else "", "reply_to_id": None,
        "preprocessor": "premailer", "recipient": "{{customer.email}}" if channel == "email" else "{{customer.id}}",
        "subject": subject if channel in ("email", "push", "in_app") else "", "bcc": "", "fake_bcc": False,
        "preheader_text": "", "headers": {},
    }


def new_action(cat: Catalog, rng: random.Random, parent_key: str, parent_id: int, created: int, idx: int) -> dict:
    """A campaign or broadcast action (message step)."""
    aid = cat.new_id("action", rng)
    channel = rng.choice(ACTION_TYPES)
    sender = cat.senders[rng.choice(list(cat.senders))]
    act = {"id": aid, parent_key: parent_id, "parent_action_id": None,
           "deduplicate_id": _dedup(aid, created), "created": created, "updated": created,
           "sending_state": rng.choice(["automatic", "automatic", "automatic", "draft"])}
    act.update(message_fields(rng, channel, f"Message {idx + 1}", sender))
    if channel == "webhook":
        act.update({"url": f"https://hooks.example.com/{aid}", "method": "POST"})
    cat.actions[aid] = act
    kind = KIND_CAMPAIGN if parent_key == "campaign_id" else KIND_BROADCAST
    cat.sources.append((kind, parent_id, aid, channel))
    return act


def new_campaign(cat: Catalog, rng: random.Random, created: int, n_segments: list[int]) -> dict:
    """A campaign with 2–6 actions."""
    cid = cat.new_id("campaign", rng)
    started = created + rng.randint(0, 5) * DAY
    camp = {"id": cid, "deduplicate_id": _dedup(cid, created), "name": f"{rng.choice(CAMPAIGN_NAMES)} #{cid}",
            "type": rng.choice(["segment", "event", "segment"]), "created": created, "updated": created,
            "active": True, "state": "running", "actions": [], "first_started": started,
            "tags": rng.sample(["lifecycle", "growth", "retention", "billing", "product"], rng.randint(0, 2)),
            "trigger_segment_ids": rng.sample(n_segments, min(1, len(n_segments))),
            "filter_segment_ids": rng.sample(n_segments, min(rng.randint(0, 2), len(n_segments))),
            "msg_templates": []}
    cat.campaigns[cid] = camp
    for k in range(rng.randint(2, 6)):
        act = new_action(cat, rng, "campaign_id", cid, created, k)
        camp["actions"].append({"type": act["type"], "id": act["id"]})
        camp["msg_templates"].append({"type": "sms" if act["type"] == "twilio" else act["type"], "id": act["id"]})
    return camp


def build_catalog(seed: int, sc: Scale, now: int, t0: int) -> Catalog:
    """Materialise the small entities. ``t0`` is the start of the delivery history (now - 8 months)."""
    rng = random.Random(seed * 1_000_003 + 17)
    cat = Catalog(next_id={"campaign": rng.randint(1, 9), "action": 90 + rng.randint(0, 9), "newsletter": 0,
                           "content": 0, "segment": 0, "trigger": 0, "transactional": 0, "export": 100,
                           "sender": 0, "test_group": 0})
    old = t0 - 300 * DAY
    for k in range(sc.senders):
        sid = cat.new_id("sender", rng)
        name = ["Acme Support", "Acme Team", "Acme Billing", "Acme News", "Acme Security"][k % 5]
        cat.senders[sid] = {"id": sid, "deduplicate_id": _dedup(sid, old), "name": name,
                            "email": f"{name.split()[1].lower()}{k}@acme.example.com",
                            "address": f"{name} <{name.split()[1].lower()}{k}@acme.example.com>",
                            "template_type": "email" if k % 4 else "email", "auto_generated": k == 0,
                            "hidden": k == sc.senders - 1 and sc.senders > 2, "phone": None}
    for k in range(sc.segments):
        sid = cat.new_id("segment", rng)
        manual = k % 4 == 3
        created = old + rng.randint(0, 200) * DAY
        cat.segments[sid] = {"id": sid, "deduplicate_id": _dedup(sid, created),
                             "name": f"{SEGMENT_NAMES[k % len(SEGMENT_NAMES)]}" + (f" {k}" if k >= 12 else ""),
                             "description": f"People in segment {k}", "state": "finished", "progress": None,
                             "type": "manual" if manual else "dynamic", "tags": None if k % 3 else ["core"],
                             "created_at": created, "updated_at": created + rng.randint(0, 30) * DAY}
        density = rng.choice([30, 80, 150, 250, 400, 600])  # drawn even when overridden: same stream after
        if sc.segment_densities is not None:
            density = sc.segment_densities[k % len(sc.segment_densities)]
        cat.segment_density[sid] = density
    seg_ids = list(cat.segments)
    for _ in range(sc.campaigns):
        new_campaign(cat, rng, old + rng.randint(0, 290) * DAY, seg_ids)
    for _ in range(sc.broadcasts):
        bid = cat.new_id("campaign", rng)  # broadcasts share the campaign id space
        created = old + rng.randint(0, 290) * DAY
        b = {"id": bid, "deduplicate_id": _dedup(bid, created), "name": f"Broadcast {bid}",
             "type": "triggered_broadcast", "created": created, "updated": created, "active": True,
             "state": "running", "actions": [], "msg_template_ids": [], "first_started": created + DAY,
             "tags": ["api"]}
        cat.broadcasts[bid] = b
        for k in range(rng.randint(1, 3)):
            act = new_action(cat, rng, "broadcast_id", bid, created, k)
            b["actions"].append({"id": act["id"], "type": act["type"]})
            b["msg_template_ids"].append({"id": act["id"], "type": act["type"]})
    topic_ids = []
    for k in range(sc.topics):
        tid = k + 1
        topic_ids.append(tid)
        cat.topics[tid] = {"id": tid, "identifier": f"topic_{tid}",
                           "name": ["Product Updates", "Newsletter", "Offers", "Events", "Tips"][k % 5]
                           + (f" {k}" if k >= 5 else ""),
                           "description": f"Topic {tid}", "subscribed_by_default": k % 2 == 0}
    for k in range(sc.newsletters):
        nid = cat.new_id("newsletter", rng)
        created = t0 + rng.randint(-20, 220) * DAY
        draft = k == sc.newsletters - 1  # the newest one is still a draft
        nl = {"id": nid, "deduplicate_id": _dedup(nid, created), "content_ids": [],
              "name": f"{NEWSLETTER_NAMES[k % len(NEWSLETTER_NAMES)]} #{nid}", "sent_at": None,
              "created": created, "updated": created, "type": "email", "tags": [],
              "recipient_segment_ids": rng.sample(seg_ids, 1),
              "subscription_topic_id": rng.choice(topic_ids) if topic_ids and k % 2 else None,
              "_draft": draft}
        cat.newsletters[nid] = nl
        n_var = rng.randint(1, 3)
        sender = cat.senders[rng.choice(list(cat.senders))]
        for v in range(n_var):
            cid = cat.new_id("content", rng)
            c = {"id": cid, "newsletter_id": nid, "deduplicate_id": _dedup(cid, created)}
            c.update(message_fields(rng, "email", f"Variant {'ABC'[v]}", sender))
            cat.contents[cid] = c
            nl["content_ids"].append(cid)
            cat.sources.append((KIND_NEWSLETTER, nid, cid, "email"))
        if n_var > 1:
            gid = cat.new_id("test_group", rng)
            cat.test_groups[nid] = [{"id": gid + v, "name": f"Test {'ABC'[v]}", "label": "ABC"[v],
                                     "winner": v == 0, "content_ids": [str(nl["content_ids"][v])]}
                                    for v in range(n_var)]
            cat.next_id["test_group"] = gid + n_var
    for k in range(sc.transactional):
        tid = cat.new_id("transactional", rng)
        created = old + rng.randint(0, 200) * DAY
        cat.transactional[tid] = {
            "id": tid, "name": ["password reset", "receipt", "magic link", "invoice"][k % 4] + f" {tid}",
            "description": "Transactional message", "send_to_unsubscribed": True, "link_tracking": k % 2 == 0,
            "open_tracking": True, "hide_message_body": False, "queue_drafts": False,
            "created_at": created, "updated_at": created}
        sender = cat.senders[rng.choice(list(cat.senders))]
        for lang in ["", "fr"][: 1 + (k % 2)]:
            cid = cat.new_id("content", rng)
            c = {"id": cid, "transactional_id": tid, "created": created, "updated": created}
            c.update(message_fields(rng, "email", f"Transactional {tid}", sender))
            c["language"] = lang
            cat.t_contents[cid] = c
        cat.sources.append((KIND_TRANSACTIONAL, tid, None, "email"))
    for bid in cat.broadcasts:
        for _ in range(rng.randint(1, 3)):
            cat.next_id["trigger"] += rng.randint(1, 4)
            trig_id = cat.next_id["trigger"]
            created_at = t0 + rng.randint(5, 230) * DAY + rng.randint(0, DAY)
            cat.triggers[trig_id] = {"id": trig_id, "broadcast_id": bid, "created_at": created_at,
                                     "processed_at": created_at + rng.randint(5, 300)}
    for k in range(sc.object_types):
        name, singular, slug, sslug, icon = OBJECT_TYPES[k]
        cat.object_types.append({"id": str(k + 1), "name": name, "singular_name": singular, "slug": slug,
                                 "singular_slug": sslug, "icon": icon, "enabled": True})
    for k in range(sc.collections):
        cid = k + 1
        rows = [{"name": f"Event {r}", "date": f"2025-0{1 + r % 9}-1{r % 9}", "city": rng.choice(
            ["Berlin", "Austin", "Lisbon", "Osaka"])} for r in range(rng.randint(2, 6))]
        created = old + rng.randint(0, 200) * DAY
        cat.collections[cid] = {"id": cid, "name": f"collection_{cid}", "bytes": len(str(rows)), "rows": len(rows),
                                "schema": ["name", "date", "city"], "created_at": created,
                                "updated_at": created + DAY}
        cat.collection_rows[cid] = rows
    for k in range(sc.snippets):
        name = f"snippet_{['footer', 'header', 'signature', 'legal', 'promo'][k % 5]}_{k}"
        cat.snippets[name] = {"name": name, "value": f"<p>{name} v1</p>", "updated_at": old + k * DAY}
    for k in range(sc.webhooks):
        wid = k + 1
        cat.webhooks[wid] = {"name": f"Warehouse webhook {wid}", "id": wid,
                             "endpoint": f"https://hooks.example.com/cio/{wid}", "disabled": k == 1,
                             "full_resolution": True, "with_content": k % 2 == 0,
                             "events": ["email_sent", "email_delivered", "email_opened", "email_clicked"]}
    for k in range(sc.workspaces):
        cat.workspaces.append({"id": 100_000 + seed * 10 + k, "name": ["Production", "Staging"][k],
                               "messages_sent": 0, "billable_messages_sent": 0, "people": 0,
                               "object_types": sc.object_types, "objects": sc.objects * sc.object_types})
    cat.ip_addresses = [f"34.{120 + k // 4}.{(seed * 7 + k * 13) % 250}.{10 + k}" for k in range(8)]
    for k in range(sc.exports):
        eid = cat.new_id("export", rng)
        created = now - (sc.exports - k) * 3 * DAY
        cat.exports[eid] = {"id": eid, "user_id": 7, "user_email": "admin@acme.example.com", "total": 100 * (k + 1),
                            "deduplicate_id": _dedup(eid, created + 60),
                            "type": "customers" if k % 2 == 0 else "deliveries", "failed": False,
                            "description": f"Export {eid}", "downloads": k % 3, "created_at": created,
                            "updated_at": created + 60, "status": "done"}
    for kind in ("bounces", "spam_reports"):
        rows = []
        for k in range(sc.suppressions if kind == "bounces" else max(2, sc.suppressions // 3)):
            rows.append({"created": now - (k + 1) * 7_200, "email": f"{kind[:-1]}.{k}@mail.example.net",
                         "reason": "550 mailbox unavailable" if kind == "bounces" else "spam complaint",
                         "status": "550" if kind == "bounces" else ""})
        cat.suppressions[kind] = rows
    return cat


def public(rec: dict) -> dict:
    """A record without internal (underscore-prefixed) fields."""
    return {k: v for k, v in rec.items() if not k.startswith("_")}
