"""Tests of the simulated workspace (customerio_source.simulator): data, HTTP behaviour, changes, speed."""

from __future__ import annotations

import gzip
import http.client as httpclient
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from customerio_source.simulator import SimulatorServer, Workspace
from customerio_source.simulator._util import six_months_before

from .fault_injection import FaultConfig, FaultState
from .oracle import deleted_keys, expected_count, expected_keys

ANCHOR = 1_760_000_040
KEY = "sim-test-key"


@pytest.fixture(scope="module")
def ws() -> Workspace:
    return Workspace(scale="tiny", seed=7, anchor=ANCHOR)


@pytest.fixture(scope="module")
def server(ws: Workspace) -> Iterator[SimulatorServer]:
    with SimulatorServer(ws, api_key=KEY) as srv:
        yield srv


@pytest.fixture()
def http(server: SimulatorServer) -> requests.Session:
    s = requests.Session()
    s.headers["Authorization"] = f"Bearer {KEY}"
    return s


def get(session: requests.Session, server: SimulatorServer, path: str, **params: Any) -> requests.Response:
    return session.get(server.base_url + path, params=params)


def page_all(session: requests.Session, server: SimulatorServer, path: str, key: str, **params: Any) -> list:
    out: list = []
    nxt = None
    for _ in range(10_000):
        body = get(session, server, path, **params, **({"start": nxt} if nxt else {})).json()
        out.extend(body[key])
        nxt = body.get("next")
        if not nxt:
            return out
    raise AssertionError("pagination did not end")


# ------------------------------------------------------------------ data
def test_deterministic_for_seed_and_anchor() -> None:
    a, b = Workspace("tiny", seed=3, anchor=ANCHOR), Workspace("tiny", seed=3, anchor=ANCHOR)
    for table in a.tables():
        assert expected_keys(a, table) == expected_keys(b, table), table
    assert [a.delivery(i) for i in range(a.n_deliveries())] == [b.delivery(i) for i in range(b.n_deliveries())]
    assert [a.activity(j) for j in range(a.n_activities())] == [b.activity(j) for j in range(b.n_activities())]
    c = Workspace("tiny", seed=4, anchor=ANCHOR)
    assert expected_keys(c, "messages") != expected_keys(a, "messages")


def test_data_shapes(ws: Workspace) -> None:
    assert ws.now == ANCHOR
    assert len(ws.cat.campaigns) == 4 and len(ws.cat.broadcasts) == 2 and len(ws.cat.newsletters) == 3
    assert all(2 <= len(c["actions"]) <= 6 for c in ws.cat.campaigns.values())
    d = ws.delivery(0)
    assert isinstance(d["id"], str) and d["id"].endswith("=")
    assert all(ts >= d["created"] for ts in d["metrics"].values())
    assert all(ws.d_created[i] <= ws.now for i in range(ws.n_deliveries()))
    assert min(ws.d_created) < six_months_before(ws.now)  # older than the window exists
    ids = [ws.persons.ident(i) for i in range(ws.n_people)]
    assert None in ids and any("@" in x or "/" in x for x in ids if x)
    cust = ws.customer(1)
    assert all(isinstance(v, str) for v in cust["attributes"].values())
    assert len(cust["attributes"]) >= 20


# ------------------------------------------------------------------ HTTP basics
def test_auth(server: SimulatorServer) -> None:
    r = requests.get(server.base_url + "/v1/campaigns")
    assert r.status_code == 401
    assert r.json() == {"errors": [{"detail": "Unauthorized request", "status": "401"}]}
    r = requests.get(server.base_url + "/v1/campaigns", headers={"Authorization": "Bearer wrong"})
    assert r.status_code == 401


@pytest.mark.parametrize(("path", "params"), [
    ("/v1/messages", {"limit": 1001}),
    ("/v1/messages", {"bogus": 1}),
    ("/v1/messages", {"type": "fax"}),
    ("/v1/messages", {"metric": "read"}),
    ("/v1/activities", {"limit": 101}),
    ("/v1/segments/{seg}/membership", {"limit": 30001}),
    ("/v1/campaigns", {"limit": 5}),
    ("/v1/campaigns/{camp}/journey_metrics", {"start": 1, "end": 2}),
    ("/v1/campaigns/{camp}/metrics", {"period": "years"}),
    ("/v1/campaigns/{camp}/metrics", {"version": "2", "res": "days"}),
    ("/v1/customers/{bad}/attributes", {"id_type": "cio_id"}),
    ("/v1/campaigns/abc", {}),
])
def test_400s(ws: Workspace, server: SimulatorServer, http: requests.Session, path: str, params: dict) -> None:
    path = path.format(seg=ws.live_segments()[0], camp=next(iter(ws.cat.campaigns)), bad="not-hex!")
    r = get(http, server, path, **params)
    assert r.status_code == 400, r.text
    err = r.json()["errors"][0]
    assert err["status"] == "400" and err["detail"]


def test_404s(ws: Workspace, server: SimulatorServer, http: requests.Session) -> None:
    for path in ("/v1/campaigns/99999", "/v1/segments/99999", "/v1/messages/nope",
                 "/v1/customers/no-such-person/attributes", "/v1/exports/99999"):
        assert get(http, server, path).status_code == 404, path


def test_pagination_and_limits(ws: Workspace, server: SimulatorServer, http: requests.Session) -> None:
    first = get(http, server, "/v1/messages").json()
    assert len(first["messages"]) == 50 and first["next"]
    got = page_all(http, server, "/v1/messages", "messages", limit=37)
    ids = [m["id"] for m in got]
    assert len(ids) == len(set(ids))
    assert {(i,) for i in ids} == expected_keys(ws, "messages", since=six_months_before(ws.now))
    created = [m["created"] for m in got]
    assert created == sorted(created, reverse=True)
    acts = get(http, server, "/v1/activities").json()
    assert len(acts["activities"]) == 10  # default limit 10
    seg = ws.live_segments()[0]
    members = page_all(http, server, f"/v1/segments/{seg}/membership", "identifiers", limit=3)
    assert {(seg, m["cio_id"]) for m in members} == {k for k in expected_keys(ws, "segment_memberships")
                                                     if k[0] == seg}


def test_six_month_window(ws: Workspace, server: SimulatorServer, http: requests.Session) -> None:
    end = ws.now - 30 * 86400
    got = page_all(http, server, "/v1/messages", "messages", limit=1000, start_ts=0, end_ts=end)
    assert got and min(m["created"] for m in got) >= six_months_before(end)
    assert max(m["created"] for m in got) <= end
    older = page_all(http, server, "/v1/messages", "messages", limit=1000, end_ts=six_months_before(ws.now) - 1)
    assert older and all(m["created"] < six_months_before(ws.now) for m in older)


def test_people_endpoints(ws: Workspace, server: SimulatorServer, http: requests.Session) -> None:
    base = server.base_url
    i = next(i for i in ws.live_people() if ws.persons.ident(i) and "/" in ws.persons.ident(i))
    ident = ws.identifiers(i)
    from urllib.parse import quote

    r = http.get(f"{base}/v1/customers/{quote(ident['id'], safe='')}/attributes")
    assert r.status_code == 200 and r.json()["customer"]["identifiers"]["cio_id"] == ident["cio_id"]
    r = http.get(f"{base}/v1/customers/cio_{ident['cio_id']}/attributes", params={"id_type": "cio_id"})
    assert r.json()["customer"]["id"] == ident["id"]
    r = http.get(f"{base}/v1/customers/cio_{ident['cio_id']}/attributes")  # no id_type: treated as id
    assert r.status_code == 404
    ids = [ws.cio_id(k) for k in list(ws.live_people())[:100]]
    r = http.post(f"{base}/v1/customers/attributes", params={"id_type": "cio_id"}, json={"ids": ids + ["ffff"]})
    assert len(r.json()["customers"]) == len(ids)  # unknown ids are omitted
    r = http.post(f"{base}/v1/customers/attributes", json={"ids": [str(k) for k in range(101)]})
    assert r.status_code == 400
    found = []
    nxt = None
    while True:
        r = http.post(f"{base}/v1/customers", params={"limit": 7, **({"start": nxt} if nxt else {})},
                      json={"filter": {"and": []}})
        body = r.json()
        found += [x["cio_id"] for x in body["identifiers"]]
        nxt = body["next"]
        if not nxt:
            break
    assert {(c,) for c in found} == expected_keys(ws, "customers")


def test_every_table_loadable(ws: Workspace, server: SimulatorServer, http: requests.Session) -> None:
    """Spot-check expected_keys against HTTP for every table family."""
    assert set(ws.tables()) >= {"workspaces", "campaigns", "object_relationships", "customer_segments"}
    simple = {"campaigns": ("/v1/campaigns", "campaigns", "id"), "broadcasts": ("/v1/broadcasts", "broadcasts", "id"),
              "segments": ("/v1/segments", "segments", "id"), "exports": ("/v1/exports", "exports", "id"),
              "collections": ("/v1/collections", "collections", "id"),
              "snippets": ("/v1/snippets", "snippets", "name"),
              "subscription_topics": ("/v1/subscription_topics", "topics", "id"),
              "transactional_messages": ("/v1/transactional", "messages", "id"),
              "reporting_webhooks": ("/v1/reporting_webhooks", "reporting_webhooks", "id"),
              "object_types": ("/v1/object_types", "types", "id"), "workspaces": ("/v1/workspaces", "workspaces", "id")}
    for table, (path, env, pk) in simple.items():
        rows = get(http, server, path).json()[env]
        assert {(r[pk],) for r in rows} == expected_keys(ws, table), table
    assert {(r["id"],) for r in page_all(http, server, "/v1/newsletters", "newsletters", limit=2)} == \
        expected_keys(ws, "newsletters")
    assert {(r["id"],) for r in page_all(http, server, "/v1/sender_identities", "sender_identities")} == \
        expected_keys(ws, "sender_identities")
    ips = get(http, server, "/v1/info/ip_addresses").json()["ip_addresses"]
    assert {(ip,) for ip in ips} == expected_keys(ws, "info_ip_addresses")
    sup = set()
    for kind in ("bounces", "spam_reports"):
        off = 0
        while True:
            rows = get(http, server, f"/v1/esp/suppression/{kind}", limit=2, offset=off).json()["suppressions"]
            sup |= {(kind, r["email"]) for r in rows}
            off += 2
            if not rows:
                break
    assert sup == expected_keys(ws, "esp_suppressions")
    acts, trig, msgs = set(), set(), set()
    for c in ws.cat.campaigns:
        acts |= {(a["id"],) for a in page_all(http, server, f"/v1/campaigns/{c}/actions", "actions")}
        msgs |= {(m["id"],) for m in page_all(http, server, f"/v1/campaigns/{c}/messages", "messages",
                                                limit=1000, start_ts=0, end_ts=ws.now)}
    assert acts == expected_keys(ws, "campaign_actions")
    since = six_months_before(ws.now)
    assert {k for k in expected_keys(ws, "campaign_messages", since=since)} <= msgs
    for b in expected_keys(ws, "broadcasts"):
        trig |= {(t["id"],) for t in get(http, server, f"/v1/broadcasts/{b[0]}/triggers").json()["triggers"]}
    assert trig == expected_keys(ws, "broadcast_triggers")
    objs = set()
    for t in ws.cat.object_types:
        r = http.post(server.base_url + "/v1/objects", params={"limit": 1000},
                      json={"object_type_id": t["id"], "filter": {"and": []}})
        objs |= {(t["id"], x["object_id"]) for x in r.json()["identifiers"]}
    assert objs == expected_keys(ws, "objects")
    rel = set()
    for t, o in sorted(expected_keys(ws, "objects")):
        rows = page_all(http, server, f"/v1/objects/{t}/{o}/relationships", "cio_relationships")
        rel |= {(t, o, r["identifiers"]["cio_id"]) for r in rows}
    assert rel == expected_keys(ws, "object_relationships")
    i = next(iter(ws.live_people()))
    cio = ws.cio_id(i)
    segs = get(http, server, f"/v1/customers/cio_{cio}/segments", id_type="cio_id").json()["segments"]
    assert {(cio, s["id"]) for s in segs} == {k for k in expected_keys(ws, "customer_segments") if k[0] == cio}
    for table in ws.tables():
        assert isinstance(expected_keys(ws, table), set)
        assert expected_count(ws, table) == len(expected_keys(ws, table))


def test_metrics_endpoints(ws: Workspace, server: SimulatorServer, http: requests.Session) -> None:
    camp = next(iter(ws.cat.campaigns))
    r = get(http, server, f"/v1/campaigns/{camp}/metrics", version="2", res="days",
            start=ws.now - 10 * 86400, end=ws.now)
    body = r.json()
    assert r.status_code == 200 and body["start"].endswith("+0000 UTC") and body["res"] == "days"
    assert len(body["metric"]["series"]["sent"]) == 11
    r = get(http, server, f"/v1/campaigns/{camp}/metrics", period="weeks", steps=5)
    assert all(len(v) == 5 for v in r.json()["metric"]["series"].values())
    r = get(http, server, f"/v1/campaigns/{camp}/metrics", period="days", steps=46)
    assert r.status_code == 400
    links = get(http, server, f"/v1/campaigns/{camp}/metrics/links", period="months", steps=8).json()["links"]
    assert links and len(links[0]["metric"]["series"]["clicked"]) == 8
    jm = get(http, server, f"/v1/campaigns/{camp}/journey_metrics", start=ws.now - 86400 * 3, end=ws.now,
             resolution="days").json()["journey_metric"]
    assert set(jm) == {"started", "activated", "exited_early", "finished", "converted", "never_activated",
                       "messaged"}
    nl = next(iter(ws.cat.newsletters))
    assert get(http, server, f"/v1/newsletters/{nl}/metrics", period="hours").status_code == 200


# ------------------------------------------------------------------ changes
def test_change_step() -> None:
    w = Workspace("tiny", seed=11)  # anchored at wall time: advance() moves `now` to the wall clock
    before = {t: expected_keys(w, t) for t in w.tables()}
    camp_updated = {c["id"]: c["updated"] for c in w.campaigns()}
    old_now = w.now
    w.advance()
    ch = w.last_changes
    assert w.step == 1 and w.now >= old_now + 60
    assert any(c["updated"] > camp_updated.get(c["id"], 0) for c in w.campaigns() if c["id"] in camp_updated)
    parent = next(c for c in w.cat.campaigns.values() if ch["new_actions"][0] in [a["id"] for a in c["actions"]])
    if parent["id"] not in ch["updated_campaigns"]:
        assert parent["updated"] == camp_updated[parent["id"]]  # child changed without parent's updated
    assert expected_keys(w, "campaign_actions") > before["campaign_actions"]
    assert expected_keys(w, "campaigns") > before["campaigns"]
    new_msgs = expected_keys(w, "messages") - before["messages"]
    assert new_msgs and all(old_now < w.d_created[i] <= w.now for i in ch["new_deliveries"])
    assert ch["deleted_broadcasts"] and (ch["deleted_broadcasts"][0],) not in expected_keys(w, "broadcasts")
    assert deleted_keys(w, "broadcasts") == {(b,) for b in ch["deleted_broadcasts"]}
    gone = {(w.cio_id(p),) for p in ch["deleted_people"]}
    assert gone and not gone & expected_keys(w, "customers") and gone <= before["customers"]
    assert deleted_keys(w, "customers") == gone
    assert deleted_keys(w, "segments") == {(s,) for s in ch["deleted_segments"]}
    for i in ch["late_metrics"]:
        m = w.delivery_metrics(i)
        assert old_now < m["opened"] <= w.now
        assert w.now - 2 * 86400 <= w.d_created[i] or w.d_created[i] <= old_now
    p = ch["attribute_changes"][0]
    acts = [w.activity(j) for j in w.person_activities(p)]
    assert any(a["type"] == "attribute_change" and "plan" in a["data"] and a["timestamp"] > old_now for a in acts)
    assert w.attributes(p)["plan"] == w.customer(p)["attributes"]["plan"]
    assert any(s["updated_at"] == w.now for s in w.cat.snippets.values())
    # activities of deleted people show only with deleted=true
    with SimulatorServer(w, api_key=KEY) as srv:
        s = requests.Session()
        s.headers["Authorization"] = f"Bearer {KEY}"
        live = page_all(s, srv, "/v1/activities", "activities", limit=100)
        dead = page_all(s, srv, "/v1/activities", "activities", limit=100, deleted="true")
        assert {(a["id"],) for a in live} == expected_keys(w, "activities")
        assert dead and not {a["id"] for a in dead} & {a["id"] for a in live}
        for a in dead:
            assert w.find_person(a["customer_identifiers"]["cio_id"], "cio_id") is None


def test_advance_deterministic() -> None:
    a, b = Workspace("tiny", seed=5, anchor=ANCHOR), Workspace("tiny", seed=5, anchor=ANCHOR)
    a.advance()
    b.advance()
    b.now = a.now  # the new `now` follows the wall clock; the changes themselves are seeded
    assert a.last_changes == b.last_changes


# ------------------------------------------------------------------ rate limit, faults, exports
def test_rate_limit_429() -> None:
    w = Workspace("tiny", seed=7, anchor=ANCHOR)
    with SimulatorServer(w, api_key=KEY, rate_limit=5) as srv:
        s = requests.Session()
        s.headers["Authorization"] = f"Bearer {KEY}"
        codes = [s.get(srv.base_url + "/v1/segments").status_code for _ in range(12)]
        assert codes[:5] == [200] * 5 and 429 in codes
        r = s.get(srv.base_url + "/v1/segments")
        assert r.status_code == 429 and r.headers["Retry-After"] == "1"
        detail = r.json()["errors"][0]
        assert detail["status"] == "429" and detail["detail"].startswith("rate limited to 5 requests per 1s")
        assert srv.stats.rate_limited >= 1 and srv.stats.status_counts[429] == srv.stats.rate_limited
        time.sleep(1.05)
        assert s.get(srv.base_url + "/v1/segments").status_code == 200
        assert srv.stats.max_in_window(1.0) >= 6
        assert srv.stats.by_operation["GET /v1/segments"] == srv.stats.requests


def test_faults() -> None:
    w = Workspace("tiny", seed=7, anchor=ANCHOR)
    with SimulatorServer(w, api_key=KEY, faults=FaultState(FaultConfig(seed=1, error_rate=0.5))) as srv:
        s = requests.Session()
        s.headers["Authorization"] = f"Bearer {KEY}"
        codes = [s.get(srv.base_url + "/v1/segments").status_code for _ in range(40)]
        assert {500, 502, 503} & set(codes) and 200 in codes
    with SimulatorServer(w, api_key=KEY, faults=FaultState(FaultConfig(revoke_after=2))) as srv:
        codes = [requests.get(srv.base_url + "/v1/segments", headers={"Authorization": f"Bearer {KEY}"}).status_code
                 for _ in range(4)]
        assert codes == [200, 200, 401, 401]
    with SimulatorServer(w, api_key=KEY, faults=FaultState(FaultConfig(storm_after=1, storm_seconds=0.3))) as srv:
        h = {"Authorization": f"Bearer {KEY}"}
        codes = [requests.get(srv.base_url + "/v1/segments", headers=h).status_code for _ in range(3)]
        assert codes[0] == 200 and codes[1:] == [429, 429]
        time.sleep(0.35)
        assert requests.get(srv.base_url + "/v1/segments", headers=h).status_code == 200
    with SimulatorServer(w, api_key=KEY, faults=FaultState(FaultConfig(repeat_cursor="GET /v1/messages"))) as srv:
        h = {"Authorization": f"Bearer {KEY}"}
        n1 = requests.get(srv.base_url + "/v1/messages", headers=h).json()["next"]
        n2 = requests.get(srv.base_url + "/v1/messages", params={"start": n1}, headers=h).json()["next"]
        assert n1 == n2
    with SimulatorServer(w, api_key=KEY, faults=FaultState(FaultConfig(truncate_rate=1.0))) as srv:
        with pytest.raises(requests.exceptions.RequestException):
            requests.get(srv.base_url + "/v1/campaigns", headers={"Authorization": f"Bearer {KEY}"}).json()
    with SimulatorServer(w, api_key=KEY, faults=FaultState(FaultConfig(reset_rate=1.0))) as srv:
        with pytest.raises(requests.exceptions.ConnectionError):
            requests.get(srv.base_url + "/v1/campaigns", headers={"Authorization": f"Bearer {KEY}"})


def test_exports_flow() -> None:
    w = Workspace("tiny", seed=7, anchor=ANCHOR)
    with SimulatorServer(w, api_key=KEY, export_url_ttl=0.5) as srv:
        s = requests.Session()
        s.headers["Authorization"] = f"Bearer {KEY}"
        b = srv.base_url
        body = {"filters": {"and": []}, "attributes": ["plan"]}
        exp = s.post(b + "/v1/exports/customers", json=body).json()["export"]
        assert exp["status"] == "pending"
        assert s.get(f"{b}/v1/exports/{exp['id']}/download").status_code == 400
        statuses = [s.get(f"{b}/v1/exports/{exp['id']}").json()["export"]["status"] for _ in range(2)]
        assert statuses[-1] == "done"
        url = s.get(f"{b}/v1/exports/{exp['id']}/download").json()["url"]
        assert url.startswith(b + "/_files/")
        r = requests.get(url)
        assert r.status_code == 200
        lines = gzip.decompress(r.content).decode().splitlines()
        assert lines[0] == "id,email,cio_id,plan" and len(lines) - 1 == expected_count(w, "customers")
        time.sleep(0.6)
        assert requests.get(url).status_code == 403
        camp = next(iter(w.cat.campaigns))
        exp = s.post(b + "/v1/exports/deliveries", json={"campaign_id": camp}).json()["export"]
        time.sleep(0.55)
        assert s.get(f"{b}/v1/exports/{exp['id']}").json()["export"]["status"] == "done"
        rows = gzip.decompress(requests.get(s.get(f"{b}/v1/exports/{exp['id']}/download").json()["url"]).content)
        assert rows.decode().splitlines()[0].startswith("id,created,type")
        assert s.post(b + "/v1/exports/deliveries", json={}).status_code == 400
        assert (exp["id"],) in expected_keys(w, "exports")


def test_keep_alive(server: SimulatorServer) -> None:
    conn = httpclient.HTTPConnection("127.0.0.1", server.port)
    for _ in range(3):
        conn.request("GET", "/v1/segments", headers={"Authorization": f"Bearer {KEY}"})
        resp = conn.getresponse()
        assert resp.status == 200 and resp.version == 11
        resp.read()
    conn.close()


# ------------------------------------------------------------------ scale
@pytest.mark.slow
def test_large_build_time_and_memory() -> None:
    """Build `large` in a fresh interpreter so its max RSS is the simulator's alone."""
    # the build's own memory: current RSS after minus before (imports of dlt/pyarrow are not the simulator's)
    code = (
        "import os, time\n"
        "from customerio_source.simulator import Workspace\n"
        "from tests.oracle import expected_count\n"
        "rss = lambda: int(open('/proc/self/statm').read().split()[1]) * os.sysconf('SC_PAGE_SIZE') / 2**20\n"
        "before = rss(); t = time.perf_counter(); w = Workspace('large', seed=7); took = time.perf_counter() - t\n"
        "print(took, rss() - before, expected_count(w, 'customers'))\n"
    )
    root = Path(__file__).resolve().parent.parent  # where `tests.oracle` imports from
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120,
                         cwd=root)
    took, rss_mb, people = out.stdout.split()
    print(f"large build: {float(took):.1f}s, +{float(rss_mb):.0f} MB RSS")
    assert float(took) < 30
    assert float(rss_mb) <= 300
    assert int(people) > 95_000


def test_activity_kind_indices_named_elsewhere_match_the_workspace():
    from customerio_source.simulator import changes, profiles, pushed
    from customerio_source.simulator.workspace import ACT_KINDS

    assert ACT_KINDS[changes.OPENED_KIND][0] == "opened" and ACT_KINDS[changes.CLICKED_KIND][0] == "clicked"
    assert ACT_KINDS[changes.CONVERTED_KIND][0] == "converted"
    assert ACT_KINDS[profiles.EVENT_KIND][0] == "event" == ACT_KINDS[pushed.EVENT_KIND][0]
    assert ACT_KINDS[pushed.PAGE_KIND][0] == "page" and ACT_KINDS[pushed.SCREEN_KIND][0] == "screen"


def test_rendered_segment_members_are_the_lists_pages_are_served_from() -> None:
    """The benchmark server computes every live segment's members ahead of the requests; the pages then
    read those lists (the same objects) until a change step makes them stale."""
    ws = Workspace(scale="tiny", seed=5)
    total = ws.render_segment_members()
    lists = {s: ws.segment_members(s) for s in ws.live_segments()}
    assert total == sum(len(m) for m in lists.values()) > 0
    assert all(ws.segment_members(s) is members for s, members in lists.items())  # served from the render
    ws.advance()
    assert any(ws.segment_members(s) is not members for s, members in lists.items() if s in ws.live_segments())


def test_rendered_identifiers_are_every_persons_and_stay_past_the_cache_bound(monkeypatch) -> None:
    """The benchmark server computes every person's identifiers ahead of the requests and keeps them all
    (the workspace's bounded cache would otherwise recompute them at 1M people); values are unchanged, and
    a change step (an email edit) is seen."""
    from customerio_source.simulator import workspace as workspace_module

    fresh = Workspace(scale="tiny", seed=5)
    expected = [dict(fresh.identifiers(i)) for i in range(fresh.n_people)]
    monkeypatch.setattr(workspace_module, "IDENT_CACHE_MAX", 10)
    ws = Workspace(scale="tiny", seed=5)
    assert ws.render_identifiers() == ws.n_people > 10
    cached = [ws.identifiers(i) for i in range(ws.n_people)]
    assert [dict(c) for c in cached] == expected
    assert all(ws.identifiers(i) is cached[i] for i in range(ws.n_people))  # kept past the bound of 10
    while not ws.email_edits and ws.step < 20:
        ws.advance()
    edited = [p for p in ws.email_edits if p < len(expected)]
    assert edited
    assert all(ws.identifiers(p)["email"] == ws._attr_overlay[p]["email"] != expected[p]["email"] for p in edited)
