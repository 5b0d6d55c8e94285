"""Every operation, pushed through the destination's body into the simulator, checked through the App API
(the dlt pipeline path itself: test_send_http, test_send_crash, test_send_roundtrip, test_send_cli)."""

from __future__ import annotations

from typing import Any

import pytest
import requests

from .send_fixtures import APP_KEY, activities, app_get, customer, object_ids
from .send_fixtures import push_direct as push

NOW = 1_780_000_000


def _events(server: Any, ident: str) -> list[dict]:
    return app_get(server, f"/v1/customers/{ident}/activities")["activities"]


@pytest.mark.parametrize("api", ["track", "cdp"])
def test_people_events_pages_screens(send_server: Any, tmp_path: Any, api: str) -> None:
    now = send_server.workspace.now
    people = [
        {"id": "ada", "email": "ada@example.com", "plan": "pro", "created_at": "2024-05-01T00:00:00Z"},
        {"id": "bo", "email": "bo@example.com", "plan": "free", "seats": 3},
    ]
    events = [
        {"id": "ada", "event_id": 1, "name": "signup", "timestamp": now - 600, "source": "ads"},
        {"id": "bo", "event_id": 2, "name": "login", "timestamp": now - 300, "source": "web"},
    ]
    pages = [{"id": "ada", "name": "https://example.com/pricing", "timestamp": now - 200, "referrer": "g"}]
    screens = [{"id": "bo", "name": "Settings", "timestamp": now - 100}]
    push(
        send_server,
        tmp_path,
        {
            "people": (people, "identify"),
            "events": (events, "event", "event_id"),
            "pages": (pages, "page"),
            "screens": (screens, "screen"),
        },
        api=api,
    )
    ada = customer(send_server, "ada")
    assert ada["attributes"]["plan"] == "pro" and ada["attributes"]["email"] == "ada@example.com"
    created = "1714521600"
    assert ada["attributes"]["created_at"] == created
    assert customer(send_server, "bo")["attributes"]["seats"] == "3"
    ada_acts = sorted((a["type"], a["name"], a["timestamp"]) for a in _events(send_server, "ada"))
    assert ada_acts == [("event", "signup", now - 600), ("page", "https://example.com/pricing", now - 200)]
    bo_acts = sorted((a["type"], a["name"], a["data"].get("source")) for a in _events(send_server, "bo"))
    assert bo_acts == [("event", "login", "web"), ("screen", "Settings", None)]


@pytest.mark.parametrize("api", ["track", "cdp"])
def test_delete_suppress_unsuppress(send_server: Any, tmp_path: Any, api: str) -> None:
    people = [{"id": f"p{i}", "plan": "x"} for i in range(4)]
    push(send_server, tmp_path, {"people": (people, "identify")}, api=api)
    push(send_server, tmp_path, {"gone": ([{"id": "p0"}], "delete"), "banned": ([{"id": "p1"}], "suppress")}, api=api)
    assert customer(send_server, "p0") is None and customer(send_server, "p1") is None
    push(send_server, tmp_path, {"again": ([{"id": "p1", "plan": "back"}], "identify")}, api=api)
    assert customer(send_server, "p1") is None  # suppressed: identify does not bring them back
    push(send_server, tmp_path, {"unban": ([{"id": "p1"}], "unsuppress")}, api=api)
    push(send_server, tmp_path, {"again": ([{"id": "p1", "plan": "back"}], "identify")}, api=api)
    assert customer(send_server, "p1")["attributes"]["plan"] == "back"
    assert customer(send_server, "p2")["attributes"]["plan"] == "x"


@pytest.mark.parametrize("api", ["track", "cdp"])
def test_devices(send_server: Any, tmp_path: Any, api: str) -> None:
    rows = [
        {"id": "dev1", "device_id": "tok-a", "platform": "ios", "app_version": "1.2"},
        {"id": "dev1", "device_id": "tok-b", "platform": "android"},
    ]
    push(send_server, tmp_path, {"devices": (rows, "device")}, api=api)
    devices = {d["id"]: d["platform"] for d in customer(send_server, "dev1")["devices"]}
    assert devices == {"tok-a": "ios", "tok-b": "android"}
    push(send_server, tmp_path, {"old_devices": ([{"id": "dev1", "device_id": "tok-a"}], "device_delete")}, api=api)
    assert [d["id"] for d in customer(send_server, "dev1")["devices"]] == ["tok-b"]


@pytest.mark.parametrize("api", ["track", "cdp"])
def test_merge(send_server: Any, tmp_path: Any, api: str) -> None:
    now = send_server.workspace.now
    people = [{"id": "keep", "plan": "pro"}, {"id": "dup", "plan": "free", "city": "Lyon"}]
    events = [
        {"id": "keep", "event_id": 1, "name": "kept_event", "timestamp": now - 500},
        {"id": "dup", "event_id": 2, "name": "dup_event", "timestamp": now - 400},
        {"id": "dup", "event_id": 3, "name": "dup_event", "timestamp": now - 300},
    ]
    devices = [{"id": "dup", "device_id": "tok-dup", "platform": "ios"}]
    push(send_server, tmp_path, {"people": (people, "identify"), "events": (events, "event", "event_id"),
                                 "devices": (devices, "device")}, api=api)
    # a generated person with a history of its own, merged in too
    generated = next(a["customer_id"] for a in app_get(send_server, "/v1/activities", limit=50)["activities"]
                     if a["customer_id"] and a["customer_id"] not in ("keep", "dup"))
    theirs = sorted(a["id"] for a in activities(send_server, generated))
    assert theirs
    merges = [{"primary_id": "keep", "secondary_id": "dup"}, {"primary_id": "keep", "secondary_id": generated}]
    push(send_server, tmp_path, {"merges": (merges, "merge")}, api=api)
    kept = customer(send_server, "keep")
    assert kept["attributes"]["plan"] == "pro" and kept["attributes"]["city"] == "Lyon"
    assert "tok-dup" in [d["id"] for d in kept["devices"]]
    assert customer(send_server, "dup") is None and customer(send_server, generated) is None
    mine = activities(send_server, "keep")
    names = sorted(a["name"] for a in mine if a["type"] == "event" and a["name"] in ("kept_event", "dup_event"))
    assert names == ["dup_event", "dup_event", "kept_event"]
    assert set(theirs) <= {a["id"] for a in mine}
    assert {a["customer_id"] for a in mine} == {"keep"}
    for ident in ("dup", generated):
        gone = requests.get(send_server.base_url + f"/v1/customers/{ident}/activities",
                            headers={"Authorization": f"Bearer {APP_KEY}"}, timeout=10)
        assert gone.status_code == 404
    deleted, start = [], None
    while True:  # the activities of deleted people: none of the moved ones
        page = app_get(send_server, "/v1/activities", deleted="true", limit=100, **({"start": start} if start else {}))
        deleted.extend(page["activities"])
        start = page.get("next")
        if not start:
            break
    assert not {a["id"] for a in deleted} & {a["id"] for a in mine}


@pytest.mark.parametrize("api", ["track", "cdp"])
def test_objects_and_relationships(send_server: Any, tmp_path: Any, api: str) -> None:
    people = [{"id": "emp1"}, {"id": "emp2"}]
    push(send_server, tmp_path, {"people": (people, "identify")}, api=api)
    objects = [{"object_id": "acme", "id": "emp1", "name": "Acme", "seats": 50}]
    relationships = [{"object_id": "acme", "id": "emp2", "role": "admin"}]
    push(
        send_server,
        tmp_path,
        {"companies": (objects, "object:1"), "members": (relationships, "relationship:1")},
        api=api,
    )
    record = app_get(send_server, "/v1/objects/1/acme/attributes")["object"]
    assert record["attributes"] == {"name": "Acme", "seats": "50"}
    related = {
        r["identifiers"]["id"] for r in app_get(send_server, "/v1/objects/1/acme/relationships")["cio_relationships"]
    }
    assert related == {"emp1", "emp2"}
    rels = app_get(send_server, "/v1/customers/emp2/relationships")["cio_relationships"]
    assert [r["identifiers"]["object_id"] for r in rels] == ["acme"]
    push(send_server, tmp_path, {"left": ([{"object_id": "acme", "id": "emp2"}], "relationship_delete:1")}, api=api)
    related = {
        r["identifiers"]["id"] for r in app_get(send_server, "/v1/objects/1/acme/relationships")["cio_relationships"]
    }
    assert related == {"emp1"}
    assert "acme" in object_ids(send_server, 1)
    push(send_server, tmp_path, {"closed": ([{"object_id": "acme"}], "object_delete:1")}, api=api)
    assert "acme" not in object_ids(send_server, 1)
    gone = requests.get(send_server.base_url + "/v1/objects/1/acme/relationships",
                        headers={"Authorization": f"Bearer {APP_KEY}"}, timeout=10)
    assert gone.status_code == 404
    emp1 = app_get(send_server, "/v1/customers/emp1/relationships")["cio_relationships"]
    assert "acme" not in [r["identifiers"]["object_id"] for r in emp1]
    # identified again (with a person: the Data Pipelines' group call needs one): a fresh object
    push(send_server, tmp_path, {"again": ([{"object_id": "acme", "id": "emp2", "name": "Acme 2"}], "object:1")},
         api=api)
    assert app_get(send_server, "/v1/objects/1/acme/attributes")["object"]["attributes"] == {"name": "Acme 2"}
    related = {
        r["identifiers"]["id"] for r in app_get(send_server, "/v1/objects/1/acme/relationships")["cio_relationships"]
    }
    assert related == {"emp2"}


def test_manual_segment_add_and_remove(send_server: Any, tmp_path: Any) -> None:
    ws = send_server.workspace
    manual = next(s for s, seg in ws.cat.segments.items() if seg["type"] == "manual")
    people = [{"id": f"m{i}"} for i in range(1200)]
    push(send_server, tmp_path, {"people": (people, "identify")})
    push(send_server, tmp_path, {"members": (people, f"segment:{manual}")})
    cio_ids = {customer(send_server, f"m{i}")["identifiers"]["cio_id"] for i in (0, 600, 1199)}
    members = {
        m["cio_id"] for m in app_get(send_server, f"/v1/segments/{manual}/membership", limit=5000)["identifiers"]
    }
    assert cio_ids <= members
    assert send_server.send.stats.by_path[f"POST /api/v1/segments/{manual}/add_customers"] == 2  # 1,000 + 200
    push(send_server, tmp_path, {"leavers": ([{"id": "m0"}], f"segment_remove:{manual}")})
    members = {
        m["cio_id"] for m in app_get(send_server, f"/v1/segments/{manual}/membership", limit=5000)["identifiers"]
    }
    assert customer(send_server, "m0")["identifiers"]["cio_id"] not in members
    assert customer(send_server, "m600")["identifiers"]["cio_id"] in members


def test_anonymous_events_go_through_v1(send_server: Any, tmp_path: Any) -> None:
    rows = [{"anonymous_id": "anon-1", "name": "visit", "timestamp": NOW}, {"anonymous_id": "anon-2", "name": "visit"}]
    push(send_server, tmp_path, {"visits": (rows, "anonymous_event")})
    assert send_server.send.stats.by_path["POST /api/v1/events"] == 2
    assert len(send_server.send.seen_event_ids) == 2
