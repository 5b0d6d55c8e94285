"""The simulator's tutorial profile: the seed's people, events, campaigns and devices, and its spike days."""

from __future__ import annotations

import datetime as dt
import re
from collections import Counter

import pytest

from customerio_source.cli import build_parser
from customerio_source.simulator import Workspace
from customerio_source.simulator.profiles import (
    TUTORIAL_CAMPAIGNS,
    TUTORIAL_DEVICES,
    TUTORIAL_EVENTS,
    get_profile,
    tutorial_event_rows,
    tutorial_events,
    tutorial_people_rows,
    tutorial_spike_days,
)

ANCHOR = int(dt.datetime(2026, 6, 1, 12, tzinfo=dt.timezone.utc).timestamp())
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


@pytest.fixture(scope="module")
def ws() -> Workspace:
    return Workspace(seed=7, anchor=ANCHOR, profile="tutorial")


def test_people_have_uuids_names_emails_and_a_device(ws: Workspace) -> None:
    assert ws.n_people == 1000
    people = [ws.customer(i) for i in range(ws.n_people)]
    ids = [p["identifiers"]["id"] for p in people]
    assert all(UUID.match(i) for i in ids) and len(set(ids)) == 1000
    assert all(p["attributes"]["email"].endswith("@example.com") and p["attributes"]["first_name"] for p in people)
    assert {p["attributes"]["device"] for p in people} == set(TUTORIAL_DEVICES)
    assert ws.find_person(ids[42], "id") == 42  # per-person endpoints still resolve uuid ids


def test_events_per_person_over_180_days(ws: Workspace) -> None:
    per_person = Counter(ws.a_person)
    assert min(per_person.values()) >= 30 and max(per_person.values()) <= 60 and len(per_person) == 1000
    records = [ws.activity(j) for j in range(0, ws.n_activities(), 97)]
    assert {r["type"] for r in records} == {"event"} and {r["name"] for r in records} == set(TUTORIAL_EVENTS)
    assert {r["data"]["campaign"] for r in records} == set(TUTORIAL_CAMPAIGNS)
    first = dt.datetime.fromtimestamp(min(ws.a_ts), dt.timezone.utc).date()
    last = dt.datetime.fromtimestamp(max(ws.a_ts), dt.timezone.utc).date()
    assert first == dt.date(2026, 6, 1) - dt.timedelta(days=180) and last == dt.date(2026, 5, 31)
    assert all(ws.activity_visible(j, False) or ws.a_person[j] in ws.deleted_people for j in range(len(ws.a_ts)))
    assert [c["name"] for c in ws.campaigns()] == list(TUTORIAL_CAMPAIGNS)


def test_spike_days_add_two_average_days(ws: Workspace) -> None:
    spikes = tutorial_spike_days(ANCHOR)
    assert len(spikes) == 6 and spikes[-1] == dt.date(2026, 5, 17)
    per_day = Counter(dt.datetime.fromtimestamp(t, dt.timezone.utc).date() for t in ws.a_ts)
    average = sum(per_day.values()) / len(per_day)
    for day in spikes:
        assert per_day[day] > 1.9 * average, day  # a Sunday spike: 0.4 + 2 average days
    quiet = [v for d, v in per_day.items() if d not in spikes]
    assert max(quiet) < 1.6 * average


def test_the_send_profile_waits_for_the_pushed_people_and_events(ws: Workspace) -> None:
    """``tutorial-send``: the same people (no device yet) and campaigns, no events; the rows to push hold
    the tutorial's people and exactly the events the ``tutorial`` profile installs."""
    empty = Workspace(seed=7, anchor=ANCHOR, profile="tutorial-send")
    assert empty.n_activities() == 0 and empty.n_people == 1000
    assert [c["name"] for c in empty.campaigns()] == list(TUTORIAL_CAMPAIGNS)
    assert "device" not in empty.customer(5)["attributes"] and "device" in ws.customer(5)["attributes"]
    people = tutorial_people_rows(empty)
    assert len(people) == 1000 and len({p["id"] for p in people}) == 1000
    assert [p["id"] for p in people[::37]] == [ws.customer(i)["identifiers"]["id"] for i in range(0, 1000, 37)]
    assert {p["device"] for p in people} == set(TUTORIAL_DEVICES)
    assert all(p["device"] == ws.customer(i)["attributes"]["device"] for i, p in enumerate(people[:50]))
    events = tutorial_event_rows(empty)
    assert len(events) == ws.n_activities() and events[0].keys() == {"id", "name", "timestamp", "campaign", "device"}
    installed = tutorial_events(ws)
    assert [(e["timestamp"], e["name"], e["campaign"]) for e in events[::500]] == [
        (t, n, d["campaign"]) for t, _, n, d in installed[::500]
    ]
    assert [e["id"] for e in events[::500]] == [people[p]["id"] for _, p, _, _ in installed[::500]]


def test_profile_flags_and_unknown_profile() -> None:
    assert build_parser().parse_args(["--demo", "--profile", "tutorial"]).profile == "tutorial"
    assert build_parser().parse_args(["--demo", "--profile", "tutorial-send"]).profile == "tutorial-send"
    assert get_profile(None) is None
    with pytest.raises(ValueError, match="unknown profile 'nope'"):
        Workspace(profile="nope")
