"""The simulated workspace: deterministic data for a seed + anchor, change steps and expected keys.

Small entities live in :mod:`catalog` as dicts. People, deliveries and activities are derived from their
index on demand; only compact typed arrays (created time, person, source) plus small overlays for changes
are kept, so the ``large`` scale stays memory-flat.
"""

from __future__ import annotations

import random
import threading
import time
from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Iterator
from typing import Any

import orjson

from . import catalog as catmod
from ._util import DAY, delivery_id, delivery_index, mix, salt, six_months_before, ulid
from .catalog import KIND_BROADCAST, KIND_CAMPAIGN, KIND_NEWSLETTER, KIND_TRANSACTIONAL, Catalog, public
from .people import PersonFactory, candidate_indices
from .profiles import get_profile
from .pushed import Pushed, SendEffects
from .scales import SCALES

HISTORY = 240 * DAY  # deliveries span ~8 months, so the 6-month window matters
ACTIVITY_HISTORY = 40 * DAY  # activities are generated for 40 days ...
ACTIVITY_WINDOW = 30 * DAY  # ... and the API returns only the last 30
PERSON_BITS = 20  # person index bits of the delivery sort key (wider only for more than 2^20 people)
DELIVERY_CACHE_SIZE = 100_000  # serialized deliveries kept (~65 MB); render_deliveries() lifts it
EVENT_NAMES = ["purchase", "login", "viewed_product", "added_to_cart", "signed_up", "invited_teammate"]
PAGES = ["https://example.com/pricing", "https://example.com/docs", "https://example.com/blog/launch",
         "https://example.com/", "https://example.com/settings"]
# activity kinds: (verb or type, delivery-linked?)
ACT_KINDS = [("sent", True), ("delivered", True), ("opened", True), ("clicked", True), ("event", False),
             ("page", False), ("attribute_change", False), ("converted", True),  # converted: change steps only
             ("screen", False)]  # screen: sent through Track only
ACT_WEIGHTS = [22, 12, 16, 6, 24, 12, 8]  # the kinds after these are never generated, only written later
CHANNEL_ACTIVITY = {"email": "email", "push": "push", "in_app": "in_app", "twilio": "twilio",
                    "webhook": "webhook", "slack": "slack"}
IDENT_CACHE_MAX = 250_000
"""People whose identifiers the workspace keeps computed (the cache is emptied when it grows past this)."""
TABLES = (
    "workspaces", "campaigns", "broadcasts", "newsletters", "segments", "messages", "activities", "exports",
    "collections", "snippets", "sender_identities", "subscription_topics", "transactional_messages",
    "reporting_webhooks", "info_ip_addresses", "object_types", "esp_suppressions", "customers",
    "customer_attributes", "campaign_actions", "broadcast_actions", "broadcast_triggers", "newsletter_variants",
    "newsletter_test_groups", "transactional_variants", "segment_memberships", "segment_dependencies", "objects",
    "campaign_messages", "broadcast_messages", "newsletter_messages", "transactional_message_deliveries",
    "customer_messages", "customer_activities", "customer_relationships", "customer_segments",
    "object_relationships",
)
Key = tuple


class Workspace(SendEffects):
    """A deterministic Customer.io workspace (see CONTRACT.md for the public API)."""

    def __init__(
        self, scale: str = "tiny", seed: int = 7, anchor: int | None = None, profile: str | None = None
    ) -> None:
        if scale not in SCALES:
            raise ValueError(f"unknown scale {scale!r}; expected one of {sorted(SCALES)}")
        self.scale = scale
        self.sc = SCALES[scale]
        self.profile = get_profile(profile)  # a profile (profiles.py) brings its own sizes
        if self.profile is not None:
            self.sc = self.profile.scale
        self.activity_window = ACTIVITY_WINDOW
        self.seed = seed
        self.now: int = int(anchor) if anchor is not None else int(time.time()) // 60 * 60
        self.anchor = self.now
        self.step = 0
        self.lock = threading.RLock()
        self.last_changes: dict[str, list] = {}  # what the latest advance() did (for tests)
        self.tag = (0x7600 + seed) & 0xFFFF
        self._dsalt = salt(seed, "delivery")
        self._asalt = salt(seed, "activity")
        self._ssalt = salt(seed, "segment")
        self._rsalt = salt(seed, "relationship")
        self.t0 = self.now - HISTORY
        self.cat: Catalog = catmod.build_catalog(seed, self.sc, self.now, self.t0)
        # people
        self._n0 = self.sc.people
        self.n_people = self._n0
        self._p_first = self.t0 - 600 * DAY
        self._p_last = self.now - DAY
        self._p_created_extra: dict[int, int] = {}
        self.persons = PersonFactory(seed, salt(seed, "person"), (0xD9C1 + seed) & 0xFFFF, self.person_created_at)
        if self.profile is not None:
            self.persons = self.profile.people(self)
        self.deleted_people: dict[int, int] = {}  # index -> step it was deleted at (0 = before the start)
        deleted_salt = salt(seed, "deleted")
        for i in range(self._n0):
            if mix(deleted_salt ^ i) % 50 == 0:
                self.deleted_people[i] = 0
        self._attr_overlay: dict[int, dict[str, str]] = {}
        self._ident_cache: dict[int, dict] = {}
        self.ident_cache_max: int | None = IDENT_CACHE_MAX  # None: unbounded (render_identifiers)
        self._delivery_json: dict[int, orjson.Fragment] = {}
        self.delivery_cache_size = DELIVERY_CACHE_SIZE
        self._ts_overlay: dict[int, dict[str, int]] = {}
        self._seg_added: dict[int, set[int]] = {}
        self.deleted_segments: dict[int, int] = {}
        self.deleted_broadcasts: dict[int, int] = {}
        self._seg_cache: dict[int, tuple[int, array]] = {}
        self._change_gen = 0  # bumped on every mutation that can change segment membership
        self._metric_index: tuple[tuple[int, int], dict[tuple[str, int], dict[str, array]]] | None = None
        self._metric_overlay: dict[int, dict[str, int]] = {}
        # a delivery keeps the subject and address it was sent with: (edit time, value before it), oldest first
        self.subject_edits: dict[int, list[tuple[int, str]]] = {}
        self.email_edits: dict[int, list[tuple[int, str | None]]] = {}
        self.pushed = Pushed()  # what the Track / Data Pipelines APIs wrote (simulator/pushed.py)
        self._build_deliveries()
        self._build_activities()
        self._build_relationships()
        if not any(self.activity_visible(j, True) for j in range(len(self.a_ts))) and len(self.a_ts):
            # guarantee some activities of deleted people (returned only with deleted=true)
            self.deleted_people[self.a_person[len(self.a_ts) - 1]] = 0
        for nid, nl in self.cat.newsletters.items():
            if nid in self._sent_at:
                nl["sent_at"] = self._sent_at[nid]
        if self.profile is not None:
            self.profile.finish(self)

    # ------------------------------------------------------------------ people
    def person_created_at(self, i: int) -> int:
        """Unix seconds the person was created at (linear in index for the initial people)."""
        if i >= self._n0:
            return self._p_created_extra[i]
        return self._p_first + (i * (self._p_last - self._p_first)) // max(1, self._n0)

    def _n_existing(self, t: int) -> int:
        n = (t - self._p_first) * self._n0 // max(1, self._p_last - self._p_first) + 1
        return max(1, min(self._n0, n))

    def alive(self, i: int) -> bool:
        """Whether person ``i`` exists (created and not deleted)."""
        return 0 <= i < self.n_people and i not in self.deleted_people

    def live_people(self) -> Iterator[int]:
        dp = self.deleted_people
        return (i for i in range(self.n_people) if i not in dp)

    def cio_id(self, i: int) -> str:
        return self.persons.cio_id(i)

    def attributes(self, i: int) -> dict[str, str]:
        attrs = self.pushed.base_attributes(self, i) if i in self.pushed.people else self.persons.attributes(i)
        ov = self._attr_overlay.get(i)
        if ov:
            attrs.update(ov)
        return attrs

    def identifiers(self, i: int) -> dict:
        """``{email, id, cio_id}`` (cached; the cache is cleared by every change step). Do not mutate."""
        hit = self._ident_cache.get(i)
        if hit is not None:
            return hit
        ov = self._attr_overlay.get(i)
        base = self.pushed.people.get(i)
        email = ov.get("email") if ov and "email" in ov else base["email"] if base else self.persons.email(i)
        rec = {"email": email, "id": base["id"] if base else self.persons.ident(i), "cio_id": self.persons.cio_id(i)}
        if self.ident_cache_max is not None and len(self._ident_cache) > self.ident_cache_max:
            self._ident_cache.clear()
        self._ident_cache[i] = rec
        return rec

    def customer(self, i: int) -> dict:
        """The ``customer`` object of the attributes endpoints."""
        attrs = self.attributes(i)
        created = self.person_created_at(i)
        ts = dict.fromkeys(attrs, created)
        ts.update(self._ts_overlay.get(i, {}))
        unsub = self.persons.unsubscribed(i) if i not in self.pushed.people else False
        if unsub:
            ts["unsubscribed"] = created + DAY
        ident = self.identifiers(i)
        devices = [] if i in self.pushed.people else self.persons.devices(i)
        return {"id": ident["id"], "identifiers": ident, "attributes": attrs, "timestamps": ts,
                "unsubscribed": unsub, "devices": self.pushed.devices_of(i, devices)}

    def find_person(self, value: str, id_type: str | None) -> int | None:
        """Resolve a person reference (id_type None means ``id``); None if no live person matches."""
        id_type = id_type or "id"
        pushed = self.pushed.find(self, value, id_type)
        if pushed is not None:
            return pushed
        if id_type == "cio_id":
            hexpart = value[4:] if value.startswith("cio_") else value
            try:
                n = int(hexpart, 16)
            except ValueError:
                return None
            i = (n & 0xFFFFFFFF) - 1
            return i if self.alive(i) and self.persons.cio_id(i) == hexpart.lower() else None
        for i in candidate_indices(value):
            if not self.alive(i):
                continue
            if id_type == "id" and self.persons.ident(i) == value:
                return i
            if id_type == "email" and self.identifiers(i)["email"] == value:
                return i
            if id_type == "phone" and self.attributes(i).get("phone") == value:
                return i
        return None

    # -------------------------------------------------------------- deliveries
    def _build_deliveries(self) -> None:
        sc, cat, now, t0 = self.sc, self.cat, self.now, self.t0
        n = sc.deliveries
        rng = random.Random(self.seed * 31 + 5)
        src_index = {(k, p, c): s for s, (k, p, c, _ch) in enumerate(cat.sources)}
        camp_srcs = [s for s, src in enumerate(cat.sources) if src[0] == KIND_CAMPAIGN]
        trans_srcs = [s for s, src in enumerate(cat.sources) if src[0] == KIND_TRANSACTIONAL]
        keys: list[int] = []
        h0 = self._dsalt
        n_auto = int(n * 0.68)
        span = now - t0 - 120
        # sort key (created, source, person) packed in one int: source 20 bits, person 20 bits up to 2^20
        # people (more for the stress scale); the order, and so the data, does not depend on the widths
        pbits = max(PERSON_BITS, self._n0.bit_length())
        if len(cat.sources) >= 1 << 20:
            raise ValueError(f"{len(cat.sources)} delivery sources do not fit in 20 bits")
        pmask = (1 << pbits) - 1
        # (h >> 44) has 20 bits: beyond 2^20 people the person comes from a second hash of the delivery
        wide = self._n0 > 1 << PERSON_BITS
        for j in range(n_auto):
            h = mix(h0 ^ j)
            created = t0 + h % span
            srcs = trans_srcs if (h >> 40) % 100 < 12 and trans_srcs else camp_srcs
            s = srcs[(h >> 20) % len(srcs)]
            person = (mix(h) if wide else h >> 44) % self._n_existing(created)
            keys.append((((created << 20) | s) << pbits) | person)
        # bursts: broadcast triggers and sent newsletters
        bursts: list[tuple[int, list[int]]] = []
        for trig in cat.triggers.values():
            acts = [a["id"] for a in cat.broadcasts[trig["broadcast_id"]]["actions"]]
            bursts.append((trig["created_at"], [src_index[(KIND_BROADCAST, trig["broadcast_id"], a)] for a in acts]))
        self._sent_at: dict[int, int] = {}
        for nid, nl in cat.newsletters.items():
            if nl["_draft"]:
                continue
            sent = min(now - DAY, max(t0 - 10 * DAY, nl["created"] + rng.randint(1, 3) * DAY))
            self._sent_at[nid] = sent
            bursts.append((sent, [src_index[(KIND_NEWSLETTER, nid, c)] for c in nl["content_ids"]]))
        per_burst = (n - n_auto) // max(1, len(bursts))
        j = n_auto
        for start, srcs in bursts:
            for _ in range(per_burst):
                h = mix(h0 ^ j)
                j += 1
                created = min(now, start + h % 7200)
                person = (mix(h) if wide else h >> 44) % self._n_existing(created)
                keys.append((((created << 20) | srcs[(h >> 20) % len(srcs)]) << pbits) | person)
        keys.sort()
        cshift = 20 + pbits
        self.d_created = array("q", (k >> cshift for k in keys))
        self.d_src = array("l", ((k >> pbits) & 0xFFFFF for k in keys))
        self.d_person = array("l", (k & pmask for k in keys))
        del keys
        self._by_key: dict[tuple[str, int], array] = {}
        by = self._by_key
        # what _index_delivery does per delivery, with each source's arrays looked up once
        targets = [[by.setdefault(key, array("l")) for key in self._delivery_keys(s)] for s in range(len(cat.sources))]
        for i, s in enumerate(self.d_src):
            for arr in targets[s]:
                arr.append(i)
        # per-person CSR
        counts = array("l", bytes(8 * (self._n0 + 1)))
        for p in self.d_person:
            counts[p + 1] += 1
        for p in range(self._n0):
            counts[p + 1] += counts[p]
        self._dp_off = counts
        fill = array("l", counts[:-1])
        idx = array("l", bytes(8 * len(self.d_person)))
        for i, p in enumerate(self.d_person):
            idx[fill[p]] = i
            fill[p] += 1
        self._dp_idx = idx
        self._dp_extra: dict[int, list[int]] = {}

    def _delivery_keys(self, s: int) -> tuple[tuple[str, int], ...]:
        """The parent keys a delivery of source ``s`` is listed under (see :meth:`delivery_indices`)."""
        kind, parent, child, _ch = self.cat.sources[s]
        return (("c", parent), ("a", child)) if kind == KIND_CAMPAIGN else (  # type: ignore[return-value]
            (("b", parent), ("a", child)) if kind == KIND_BROADCAST else (
                (("n", parent), ("nc", child)) if kind == KIND_NEWSLETTER else (("t", parent),)))

    def _index_delivery(self, i: int, s: int) -> None:
        by = self._by_key
        for key in self._delivery_keys(s):
            arr = by.get(key)
            if arr is None:
                arr = by[key] = array("l")
            arr.append(i)

    def n_deliveries(self) -> int:
        return len(self.d_created)

    def delivery_indices(self, key: tuple[str, int] | None) -> array | range:
        """Ascending delivery indices for a parent key (("c", campaign_id), ("a", action_id), ...)."""
        if key is None:
            return range(len(self.d_created))
        return self._by_key.get(key, array("l"))

    def person_deliveries(self, i: int) -> list[int]:
        out = list(self._dp_idx[self._dp_off[i]:self._dp_off[i + 1]]) if i < self._n0 else []
        out.extend(self._dp_extra.get(i, ()))
        return out

    def delivery_channel(self, i: int) -> str:
        return self.cat.sources[self.d_src[i]][3]

    def delivery_id(self, i: int) -> str:
        return delivery_id(self.tag, i, mix(self._dsalt ^ (i << 1)))

    def find_delivery(self, message_id: str) -> int | None:
        i = delivery_index(message_id, self.tag)
        if i is None or i >= len(self.d_created) or self.delivery_id(i) != message_id:
            return None
        return i

    def is_draft(self, i: int) -> bool:
        return mix(self._dsalt ^ (i << 1)) % 97 == 0

    def delivery_metrics(self, i: int, h: int | None = None, ch: str | None = None) -> dict[str, int]:
        """Metric timestamps that have happened by ``now`` (plus late-metric overlays)."""
        created = self.d_created[i]
        if h is None:
            h = mix(self._dsalt ^ (i << 1))
        if h % 97 == 0:
            return {"drafted": created}
        if ch is None:
            ch = self.cat.sources[self.d_src[i]][3]
        m = self._base_metrics(created, h, ch)
        ov = self._metric_overlay.get(i)
        if ov:
            m.update(ov)
        now = self.now
        if created + 400 > now or ov:  # only fresh deliveries can hold not-yet-happened timestamps
            return {k: v for k, v in m.items() if v <= now}
        return m

    def _base_metrics(self, created: int, h: int, ch: str) -> dict[str, int]:
        """Deterministic metric timestamps; opens/clicks later than ``now`` are left out."""
        r = (h >> 8) & 1023
        if r < 10:
            return {"attempted": created + 1, "failed": created + 5}
        sent = created + 1 + (h >> 20) % 20
        if ch == "webhook":
            return {"sent": sent}
        if ch == "email" and r < 35:
            return {"sent": sent, "bounced": sent + 30 + (h >> 25) % 300}
        if ch == "email" and r < 40:
            return {"sent": sent, "dropped": sent + 2}
        now = self.now
        delivered = sent + 2 + (h >> 25) % 60
        m = {"sent": sent} if ch == "in_app" else {"sent": sent, "delivered": delivered}
        p_open = 450 if ch == "email" else 150 if ch == "push" else 400 if ch == "in_app" else 0
        if (h >> 32) % 1000 < p_open:
            g = mix(h)
            opened = delivered + (60 + g % 7200 if g % 10 < 7 else 7200 + g % (3 * DAY))
            if opened <= now:
                m["opened"] = opened
                if (g >> 20) % 100 < 30:
                    clicked = opened + 5 + (g >> 28) % 3600
                    if clicked <= now:
                        m["clicked"] = clicked
                        converted = clicked + 600 + (g >> 44) % DAY
                        if (g >> 40) % 100 < 20 and converted <= now:
                            m["converted"] = converted
                if ch == "email" and (g >> 50) % 100 == 0 and opened + 60 <= now:
                    m["unsubscribed"] = opened + 60
                if ch == "email" and (g >> 56) % 256 == 0 and opened + 90 <= now:
                    m["spammed"] = opened + 90
        elif ch == "twilio" and (h >> 32) % 100 < 5 and delivered + 300 <= now:
            m["clicked"] = delivered + 300
        return m

    def delivery(self, i: int, tracked: bool = False) -> dict:
        """The delivery (message) record, shaped like the App API's."""
        created = self.d_created[i]
        h = mix(self._dsalt ^ (i << 1))
        kind, parent, child, ch = self.cat.sources[self.d_src[i]]
        p = self.d_person[i]
        did = delivery_id(self.tag, i, h)
        metrics = self.delivery_metrics(i, h, ch)
        last = max(metrics.values()) if metrics else created
        ident = self.identifiers(p)
        if p in self.email_edits:
            ident = {**ident, "email": _as_of(self.email_edits[p], created, ident["email"])}
        if ch == "email":
            recipient = ident["email"] or ""
            subject = self._subject(kind, child, parent, created)
        elif ch == "twilio":
            recipient, subject = self.persons.phone(p), ""
        elif ch == "webhook":
            recipient, subject = f"https://hooks.example.com/{child}", ""
        else:
            recipient, subject = ident["id"] or ident["cio_id"], self._subject(kind, child, parent, created)
        failure = None
        if "failed" in metrics:
            failure = "Liquid error: undefined variable customer.plan"
        elif "bounced" in metrics:
            failure = "550 5.1.1 The email account that you tried to reach does not exist"
        rec = {
            "id": did, "deduplicate_id": f"{did}:{last}", "message_template_id": child,
            "customer_id": ident["id"], "customer_identifiers": ident, "recipient": recipient,
            "subject": subject, "metrics": metrics, "created": created, "failure_message": failure,
            "campaign_id": parent if kind == KIND_CAMPAIGN else None,
            "action_id": child if kind in (KIND_CAMPAIGN, KIND_BROADCAST) else None,
            "parent_action_id": None,
            "newsletter_id": parent if kind == KIND_NEWSLETTER else None,
            "content_id": child if kind == KIND_NEWSLETTER else None,
            "broadcast_id": parent if kind == KIND_BROADCAST else None,
            "transactional_message_id": parent if kind == KIND_TRANSACTIONAL else None,
            "trigger_event_id": ulid(created, i, h) if kind == KIND_CAMPAIGN and h % 3 == 0 else None,
            "type": ch, "forgotten": h % 211 == 0,
        }
        if tracked:
            rec["tracked_responses"] = ({"Confirm": {"id": f"tr_{h % 100000}", "ts": metrics["clicked"]}}
                                        if "clicked" in metrics else {})
        return rec

    def delivery_json(self, i: int) -> orjson.Fragment:
        """:meth:`delivery` serialized once, for pages: a server reads stored rows, it does not compute
        them per request. Cached until the next change step, at most ``delivery_cache_size`` records."""
        hit = self._delivery_json.get(i)
        if hit is None:
            # a copy: orjson's own bytes object keeps its whole output buffer (~4 KB for a ~700 B record)
            hit = orjson.Fragment(bytes(memoryview(orjson.dumps(self.delivery(i)))))
            if len(self._delivery_json) >= self.delivery_cache_size:
                self._delivery_json.clear()
            self._delivery_json[i] = hit
        return hit

    def render_deliveries(self) -> int:
        """Serialize every delivery ahead of the requests (the benchmark server does, after each step)."""
        self.delivery_cache_size = max(self.delivery_cache_size, len(self.d_created))
        for i in range(len(self.d_created)):
            self.delivery_json(i)
        return len(self.d_created)

    def render_metrics(self) -> int:
        """Index every parent's metric timestamps ahead of the requests (the benchmark server does, after
        each step): a metrics request then counts by bisection, as a server reads stored aggregates rather
        than walking a parent's deliveries. Current until the next change; returns the parents indexed."""
        from .metrics import metric_index

        with self.lock:
            index = metric_index(self)
            self._metric_index = ((self._change_gen, self.now), index)
        return len(index)

    def parent_keys(self) -> Iterable[tuple[str, int]]:
        """The parent keys deliveries are listed under (see :meth:`delivery_indices`)."""
        return self._by_key.keys()

    def delivery_parents(self, i: int) -> tuple[tuple[str, int], ...]:
        """The parent keys delivery ``i`` is listed under."""
        return self._delivery_keys(self.d_src[i])

    def overlaid_deliveries(self) -> Iterable[int]:
        """Deliveries a change step gave metrics after their own (late metrics, late engagement)."""
        return self._metric_overlay.keys()

    def metric_index(self, key: tuple[str, int]) -> dict[str, array] | None:
        """A parent's rendered metric timestamps (:meth:`render_metrics`), or None when not rendered or
        stale (the workspace changed since)."""
        rendered = self._metric_index
        if rendered is None or rendered[0] != (self._change_gen, self.now):
            return None
        return rendered[1].get(key, {})

    def _subject(self, kind: int, child: int | None, parent: int, created: int | None = None) -> str:
        cat = self.cat
        if kind in (KIND_CAMPAIGN, KIND_BROADCAST):
            return cat.actions[child]["subject"]  # type: ignore[index]
        if kind == KIND_NEWSLETTER:
            current = cat.contents[child]["subject"]  # type: ignore[index]
            edits = self.subject_edits.get(child)  # type: ignore[arg-type]
            return _as_of(edits, created, current) if edits and created is not None else current
        return f"Your {cat.transactional[parent]['name']}"

    def message_window(self, start_ts: int | None, end_ts: int | None) -> tuple[int, int]:
        """The [start, end] created-range a message list covers (6-month rule, truncating long ranges)."""
        end = self.now if end_ts is None else min(end_ts, self.now)
        lo = six_months_before(end)
        start = lo if start_ts is None else max(start_ts, lo)
        return start, end

    def index_range(self, start: int, end: int) -> tuple[int, int]:
        """Delivery index range [lo, hi) whose created is within [start, end]."""
        return bisect_left(self.d_created, start), bisect_right(self.d_created, end)

    # -------------------------------------------------------------- activities
    def _build_activities(self) -> None:
        n = self.sc.activities
        a0 = self.now - ACTIVITY_HISTORY
        h0 = self._asalt
        ts = sorted(a0 + mix(h0 ^ (j << 3)) % ACTIVITY_HISTORY for j in range(n))
        self.a_ts = array("q", ts)
        self.a_kind = array("b")
        self.a_ref = array("l")
        self.a_person = array("l")
        cum = []
        acc = 0
        for w in ACT_WEIGHTS:
            acc += w
            cum.append(acc)
        nd = len(self.d_created)
        for j in range(n):
            h = mix(h0 ^ (j << 3) ^ 1)
            k = bisect_right(cum, h % acc)
            if ACT_KINDS[k][1]:
                d = max(0, bisect_right(self.d_created, ts[j]) - 1 - (h >> 20) % 5)
                d = min(d, nd - 1)
                self.a_ref.append(d)
                self.a_person.append(self.d_person[d])
            else:
                self.a_ref.append(-1)
                self.a_person.append((h >> 24) % self._n_existing(ts[j]))
            self.a_kind.append(k)
        self._a_data: dict[int, tuple[str, dict]] = {}
        self.index_activities_by_person()

    def index_activities_by_person(self) -> None:
        """(Re)build the per-person index of the activity log (``a_person``): offsets and activity indices,
        a counting sort, and no activities added since."""
        counts = array("l", bytes(8 * (self._n0 + 1)))
        for p in self.a_person:
            counts[p + 1] += 1
        for p in range(self._n0):
            counts[p + 1] += counts[p]
        fill = array("l", counts[:-1])
        idx = array("l", bytes(8 * len(self.a_person)))
        for j, p in enumerate(self.a_person):
            idx[fill[p]] = j
            fill[p] += 1
        self._ap_off, self._ap_idx = counts, idx
        self._ap_extra: dict[int, list[int]] = {}

    def n_activities(self) -> int:
        return len(self.a_ts)

    def person_activities(self, i: int) -> list[int]:
        out = list(self._ap_idx[self._ap_off[i]:self._ap_off[i + 1]]) if i < self._n0 else []
        out.extend(self._ap_extra.get(i, ()))
        out.sort()
        if i in self.pushed.moved_activities:  # a merge gave them to the primary person
            out = [j for j in out if self.a_person[j] == i]
        return out

    def activity_id(self, j: int) -> str:
        return ulid(self.a_ts[j], j, mix(self._asalt ^ (j << 3) ^ 2))

    def activity(self, j: int) -> dict:
        """The activity record, shaped like ``GET /v1/activities`` items."""
        ts = self.a_ts[j]
        p = self.a_person[j]
        verb, linked = ACT_KINDS[self.a_kind[j]]
        h = mix(self._asalt ^ (j << 3) ^ 2)
        ident = self.identifiers(p)
        rec = {"id": ulid(ts, j, h), "type": verb, "timestamp": ts, "customer_id": ident["id"],
               "customer_identifiers": ident, "delivery_id": None, "delivery_type": None, "name": None, "data": {}}
        if linked:
            d = self.a_ref[j]
            ch = self.delivery_channel(d)
            did = self.delivery_id(d)
            rec.update(type=f"{verb}_{CHANNEL_ACTIVITY.get(ch, 'action')}", delivery_id=did, delivery_type=ch,
                       data={"delivery_id": did, "action_id": self.cat.sources[self.d_src[d]][2]})
        elif j in self._a_data:
            name, data = self._a_data[j]
            rec.update(name=name, data=data)
            if j in self.pushed.event_ts:  # an event sent through Track: its own time (a_ts keeps the order)
                rec["timestamp"] = self.pushed.event_ts[j]
        elif verb == "event":
            rec.update(name=EVENT_NAMES[(h >> 8) % len(EVENT_NAMES)],
                       data={"amount": f"{(h >> 16) % 20000 / 100:.2f}", "currency": "USD"})
        elif verb == "page":
            rec.update(name=PAGES[(h >> 8) % len(PAGES)], data={"referrer": "https://www.google.com/"})
        else:
            rec.update(name="plan", data={"plan": {"from": "free", "to": ["starter", "pro", "team"][h % 3]}})
        return rec

    def activity_visible(self, j: int, deleted: bool) -> bool:
        """Within the 30-day API window, and for a live (deleted=False) or a deleted person (deleted=True)."""
        if self.a_ts[j] < self.now - self.activity_window:
            return False
        p = self.a_person[j]
        return (p in self.deleted_people) == deleted

    # ------------------------------------------------------------- segments
    def live_segments(self) -> list[int]:
        return [s for s in self.cat.segments if s not in self.deleted_segments]

    def is_member(self, s: int, i: int) -> bool:
        if not self.alive(i) or s in self.deleted_segments:
            return False
        if i in self.pushed.seg_removed.get(s, ()):
            return False
        if i in self._seg_added.get(s, ()):
            return True
        return mix(self._ssalt ^ (s << 40) ^ i) % 1000 < self.cat.segment_density[s]

    def segment_members(self, s: int) -> array:
        """Ascending person indices of a segment's live members (cached per change generation)."""
        hit = self._seg_cache.get(s)
        if hit and hit[0] == self._change_gen:
            return hit[1]
        if s in self.deleted_segments:
            members = array("l")
        else:
            dens = self.cat.segment_density[s]
            base = self._ssalt ^ (s << 40)
            added = self._seg_added.get(s, set())
            dp = self.deleted_people
            removed = self.pushed.seg_removed.get(s, set())
            members = array("l", (i for i in range(self.n_people)
                                  if (i in added or mix(base ^ i) % 1000 < dens) and i not in dp
                                  and i not in removed))
        self._seg_cache[s] = (self._change_gen, members)
        return members

    def render_identifiers(self) -> int:
        """Compute every person's identifiers ahead of the requests and keep them all (the benchmark server
        does, after build and each change step, as it renders deliveries: a real API serves stored rows, so
        the bounded cache's misses at 1M people must not bound the pipeline); returns the people rendered."""
        with self.lock:
            self.ident_cache_max = None
            for i in range(self.n_people):
                self.identifiers(i)
            return self.n_people

    def render_segment_members(self) -> int:
        """Compute every live segment's members ahead of the requests (the benchmark server does, after
        build and each change step; cached until the next change); returns the memberships."""
        with self.lock:
            return sum(len(self.segment_members(s)) for s in self.live_segments())

    def person_segments(self, i: int) -> list[int]:
        return [s for s in self.live_segments() if self.is_member(s, i)]

    def segment_used_by(self, s: int) -> dict:
        cat = self.cat
        return {"campaigns": [c["id"] for c in cat.campaigns.values()
                              if s in c["trigger_segment_ids"] or s in c["filter_segment_ids"]],
                "sent_newsletters": [n["id"] for n in cat.newsletters.values()
                                     if s in n["recipient_segment_ids"] and n["sent_at"]],
                "draft_newsletters": [n["id"] for n in cat.newsletters.values()
                                      if s in n["recipient_segment_ids"] and not n["sent_at"]]}

    # ------------------------------------------------------------ objects
    def _build_relationships(self) -> None:
        """Each initial person relates to ~40% chance one object per type; CSR object -> people."""
        n_obj = self.sc.objects
        self._obj_people: list[tuple[array, array]] = []
        for t in range(self.sc.object_types):
            counts = array("l", bytes(8 * (n_obj + 1)))
            pairs = []
            base = self._rsalt ^ (t << 40)
            for i in range(self._n0):  # person_object(t, i), inlined: 3 x 1.25M calls at the stress scale
                h = mix(base ^ i)
                if (h >> 32) % 100 < 40:
                    o = h % n_obj
                    counts[o + 1] += 1
                    pairs.append((o, i))
            for o in range(n_obj):
                counts[o + 1] += counts[o]
            pairs.sort()
            self._obj_people.append((counts, array("l", (i for _o, i in pairs))))

    def person_object(self, t: int, i: int) -> int:
        """Index of the object of type ``t`` person ``i`` relates to, or -1."""
        if i >= self._n0:
            return -1
        h = mix(self._rsalt ^ (t << 40) ^ i)
        return h % self.sc.objects if (h >> 32) % 100 < 40 else -1

    def object_id(self, t: int, o: int) -> str:
        if o >= self.sc.objects:
            return self.pushed.object_ids[t][o - self.sc.objects]
        return f"{self.cat.object_types[t]['singular_slug']}-{o + 1}"

    def cio_object_id(self, t: int, o: int) -> str:
        return f"ob{t + 1:02x}{o + 1:08x}"

    def find_object(self, type_id: str, object_id: str, id_type: str | None) -> tuple[int, int] | None:
        try:
            t = int(type_id) - 1
        except ValueError:
            return None
        if not 0 <= t < len(self.cat.object_types):
            return None
        if (t, object_id) in self.pushed.objects and id_type != "cio_object_id":
            return t, self.pushed.objects[(t, object_id)]
        if id_type == "cio_object_id":
            if not object_id.startswith(f"ob{t + 1:02x}"):
                return None
            try:
                o = int(object_id[4:], 16) - 1
            except ValueError:
                return None
        else:
            tail = object_id.rsplit("-", 1)[-1]
            o = int(tail) - 1 if tail.isdigit() else -1
        if not 0 <= o < self.sc.objects or self.object_id(t, o) != object_id and id_type != "cio_object_id":
            return None
        return t, o

    def object_record(self, t: int, o: int) -> dict:
        if o >= self.sc.objects or (t, o) in self.pushed.object_attrs:
            return self.pushed.object_record(self, t, o)
        h = mix(self._rsalt ^ 0xAB ^ (t << 40) ^ o)
        created = self.t0 - (h % 400) * DAY
        attrs = {"name": f"{self.cat.object_types[t]['singular_name']} {o + 1}",
                 "industry": ["software", "retail", "finance", "health"][h % 4], "seats": str(1 + h % 500),
                 "plan": ["starter", "pro", "enterprise"][(h >> 8) % 3], "created_at": str(created)}
        return {"attributes": attrs, "timestamps": dict.fromkeys(attrs, created),
                "identifiers": {"object_id": self.object_id(t, o), "cio_object_id": self.cio_object_id(t, o)},
                "object_type_id": self.cat.object_types[t]["id"]}

    def object_people(self, t: int, o: int) -> list[int]:
        off, ppl = self._obj_people[t]
        base = list(ppl[off[o]:off[o + 1]]) if o < self.sc.objects else []
        return [i for i in self.pushed.people_of(t, o, base) if self.alive(i)]

    def person_objects(self, i: int) -> list[tuple[int, int]]:
        out = []
        for t in range(self.sc.object_types):
            o = self.person_object(t, i)
            if o >= 0 and (t, o, i) not in self.pushed.unrelated and (t, o) not in self.pushed.deleted_objects:
                out.append((t, o))
        out.extend(self.pushed.objects_of(i, out))
        return out

    # ------------------------------------------------------------ change step
    def advance(self) -> None:
        """Apply one deterministic change step (see CONTRACT.md)."""
        from .changes import apply_change_step

        with self.lock:
            apply_change_step(self)

    # ------------------------------------------------------------ tables
    def tables(self) -> list[str]:
        return list(TABLES)

    # ------------------------------------------------------------ catalog views
    def campaigns(self) -> list[dict]:
        return [public(c) for c in self.cat.campaigns.values()]

    def broadcasts(self) -> list[dict]:
        return [public(b) for bid, b in self.cat.broadcasts.items() if bid not in self.deleted_broadcasts]

    def newsletters(self) -> list[dict]:
        return [public(n) for n in self.cat.newsletters.values()]

    def segments(self) -> list[dict]:
        return [self.cat.segments[s] for s in self.live_segments()]


def _as_of(edits: list[tuple[int, Any]], t: int, current: Any) -> Any:
    """The value at time ``t`` given (edit time, value before the edit) pairs, oldest first."""
    for edited, before in edits:
        if t < edited:
            return before
    return current
