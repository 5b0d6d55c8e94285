"""Workspace profiles: a named shape of data on top of a scale (``--profile tutorial``).

The ``tutorial`` profile is the engagement tutorial's workload (seed 000): 1,000 people with uuid ids,
fake names and emails and one device each (iPhone, Android or Web); each does 30-60 events over the 180
days before the workspace's day, named ``email_opened``, ``clicked`` or ``app_login`` with the campaign
("Spring Sale", "Black Friday", "Summer Promo") and the device in their data; the three campaigns carry
those names. Days have a weekly rhythm (quiet weekends), and each known spike day
(:func:`tutorial_spike_days`) adds twice an average day's events.

Its events are the workspace's activities, all 180 days visible in ``GET /v1/activities``: the API
guarantees 30 days, and a workspace whose activities were loaded daily would hold the rest in the
warehouse; the profile serves them at once so one load has the whole history (an assumption of the
simulator, not a claim about the API). Workspace hooks: :meth:`Profile.people` replaces the person
factory, :meth:`Profile.finish` installs the events after the build.

The ``tutorial-send`` profile is the same workspace waiting for the tutorial's data: the people exist
(they have deliveries) but without their device, and there are no events. The seed's loop
(``customerio_source/analytics/tutorial.py``) pushes :func:`tutorial_people_rows` (identify) and
:func:`tutorial_event_rows` (events) to it through the send direction, over HTTP, and extracts them back.
"""

from __future__ import annotations

import datetime as dt
import random
from array import array
from bisect import bisect_right
from dataclasses import dataclass
from itertools import accumulate
from typing import TYPE_CHECKING

from ._util import DAY, mix
from .people import PersonFactory, _ascii
from .scales import Scale

if TYPE_CHECKING:
    from .workspace import Workspace

TUTORIAL_EVENTS = ("email_opened", "clicked", "app_login")
TUTORIAL_EVENT_WEIGHTS = (1, 1, 1)  # the tutorial picks an event uniformly
TUTORIAL_CAMPAIGNS = ("Spring Sale", "Black Friday", "Summer Promo")
TUTORIAL_DEVICES = ("iPhone", "Android", "Web")
TUTORIAL_HISTORY_DAYS = 180
TUTORIAL_EVENTS_PER_PERSON = (30, 60)
TUTORIAL_SPIKES_DAYS_AGO = (140, 115, 90, 66, 40, 15)
"""Spike days, as days before the workspace's (UTC) day; the first is past a 28-day baseline."""
TUTORIAL_SPIKE_FACTOR = 3.0
"""A spike day has this many times an average day's activity on top of its weekday's rhythm minus one
average day (a campaign blast adds twice an average day, whatever the weekday)."""
WEEKDAY_ACTIVITY = (1.1, 1.1, 1.1, 1.05, 1.0, 0.45, 0.4)
"""Relative activity Monday..Sunday."""
EVENT_KIND = 4  # index of ("event", not delivery-linked) in workspace.ACT_KINDS

TUTORIAL_SCALE = Scale(
    people=1_000,
    deliveries=24_000,
    activities=0,
    campaigns=3,
    broadcasts=1,
    newsletters=2,
    segments=3,
    object_types=1,
    objects=10,
    transactional=1,
    collections=1,
    snippets=2,
    senders=1,
    topics=1,
    webhooks=1,
    workspaces=1,
    exports=1,
    suppressions=5,
)


class TutorialPeople(PersonFactory):
    """People with uuid ids (the index in the last group, as every simulated id embeds it), fake names,
    ``first.last.N@example.com`` and one device (an attribute unless ``device_attribute`` is False: the
    push brings it)."""

    device_attribute = True

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self._idents: dict[int, str] = {}  # 1,000 people: id lookups (every pushed event makes one) stay cheap

    def ident(self, i: int) -> str | None:
        found = self._idents.get(i)
        if found is None:
            found = self._idents[i] = self._uuid(i)
        return found

    def _uuid(self, i: int) -> str:
        h = self.h(i)
        g = mix(h ^ 0x7575)
        variant = f"{8 + (h & 3):x}{(h >> 8) & 0xFFF:03x}"
        return f"{g >> 32:08x}-{(g >> 16) & 0xFFFF:04x}-4{(g >> 4) & 0xFFF:03x}-{variant}-{i:012d}"

    def email(self, i: int) -> str | None:
        first, last = self.names(i)
        return f"{_ascii(first)}.{_ascii(last)}.{i}@example.com"

    def device(self, i: int) -> str:
        return TUTORIAL_DEVICES[(self.h(i) >> 40) % len(TUTORIAL_DEVICES)]

    def attributes(self, i: int) -> dict[str, str]:
        attrs = super().attributes(i)
        if self.device_attribute:
            attrs["device"] = self.device(i)
        return attrs


class TutorialPeopleToSend(TutorialPeople):
    """The tutorial's people before the push: no device attribute yet."""

    device_attribute = False


def day_start(ts: int) -> int:
    return ts - ts % DAY


def tutorial_spike_days(now: int) -> list[dt.date]:
    """The injected spike days (UTC) of a tutorial workspace whose ``now`` is ``now``."""
    today = dt.datetime.fromtimestamp(day_start(now), dt.timezone.utc).date()
    return sorted(today - dt.timedelta(days=k) for k in TUTORIAL_SPIKES_DAYS_AGO)


@dataclass(frozen=True)
class Profile:
    name: str
    scale: Scale
    events: bool = True
    """Install the events (``tutorial``), or leave them to the send direction (``tutorial-send``)."""

    def people(self, ws: Workspace) -> PersonFactory:
        """The person factory of a workspace with this profile (built like the default one)."""
        base = ws.persons
        factory = TutorialPeople if self.events else TutorialPeopleToSend
        return factory(base.seed, base.psalt, base.cio_prefix, base.created_at_of)

    def finish(self, ws: Workspace) -> None:
        """Name the campaigns and install the events as the workspace's activities (none without
        ``events``); all 180 days of activities are served."""
        for cid, name in zip(sorted(ws.cat.campaigns), TUTORIAL_CAMPAIGNS, strict=False):
            ws.cat.campaigns[cid]["name"] = name
        install_events(ws, tutorial_events(ws) if self.events else [])
        ws.activity_window = (TUTORIAL_HISTORY_DAYS + 1) * DAY


def tutorial_events(ws: Workspace) -> list[tuple[int, int, str, dict]]:
    """(timestamp, person, name, data) of every tutorial event, oldest first (deterministic per seed)."""
    rng = random.Random(ws.seed * 7_919 + 11)
    first_day = day_start(ws.now) - TUTORIAL_HISTORY_DAYS * DAY
    spikes = {dt.datetime.combine(d, dt.time(), dt.timezone.utc).timestamp() for d in tutorial_spike_days(ws.now)}
    weights = []
    average = sum(WEEKDAY_ACTIVITY) / len(WEEKDAY_ACTIVITY)
    for k in range(TUTORIAL_HISTORY_DAYS):
        start = first_day + k * DAY
        weekday = dt.datetime.fromtimestamp(start, dt.timezone.utc).weekday()
        extra = (TUTORIAL_SPIKE_FACTOR - 1) * average if start in spikes else 0.0
        weights.append(WEEKDAY_ACTIVITY[weekday] + extra)
    day_cum = list(accumulate(weights))
    name_cum = list(accumulate(TUTORIAL_EVENT_WEIGHTS))
    people: TutorialPeople = ws.persons  # type: ignore[assignment]
    events = []
    for person in range(ws.n_people):
        device = people.device(person)
        for _ in range(rng.randint(*TUTORIAL_EVENTS_PER_PERSON)):
            day = bisect_right(day_cum, rng.random() * day_cum[-1])
            ts = first_day + min(day, TUTORIAL_HISTORY_DAYS - 1) * DAY + rng.randrange(DAY)
            name = TUTORIAL_EVENTS[bisect_right(name_cum, rng.randrange(name_cum[-1]))]
            events.append((ts, person, name, {"campaign": rng.choice(TUTORIAL_CAMPAIGNS), "device": device}))
    events.sort(key=lambda e: (e[0], e[1]))
    return events


def tutorial_people_rows(ws: Workspace) -> list[dict]:
    """The tutorial's 1,000 people as rows to push with ``identify``: id (uuid), email, names, device."""
    people: TutorialPeople = ws.persons  # type: ignore[assignment]
    rows = []
    for i in range(ws._n0):
        first, last = people.names(i)
        rows.append(
            {
                "id": people.ident(i),
                "email": people.email(i),
                "first_name": first,
                "last_name": last,
                "device": people.device(i),
            }
        )
    return rows


def tutorial_event_rows(ws: Workspace) -> list[dict]:
    """The tutorial's events (:func:`tutorial_events`) as rows to push as events: the person's id, the
    event's name and unix timestamp, its campaign and device (event data), oldest first."""
    people: TutorialPeople = ws.persons  # type: ignore[assignment]
    ids = [people.ident(i) for i in range(ws._n0)]
    return [
        {"id": ids[person], "name": name, "timestamp": ts, "campaign": data["campaign"], "device": data["device"]}
        for ts, person, name, data in tutorial_events(ws)
    ]


def install_events(ws: Workspace, events: list[tuple[int, int, str, dict]]) -> None:
    """Make ``events`` the workspace's activities (replacing the generated ones), with the per-person index.

    The one place events enter the simulated workspace directly (the ``tutorial`` profile); with
    ``tutorial-send`` the same events arrive over HTTP through the Track API instead."""
    ws.a_ts = array("q", (e[0] for e in events))
    ws.a_kind = array("b", [EVENT_KIND]) * len(events)
    ws.a_ref = array("l", [-1]) * len(events)
    ws.a_person = array("l", (e[1] for e in events))
    ws._a_data = {j: (e[2], e[3]) for j, e in enumerate(events)}
    ws.index_activities_by_person()


PROFILES: dict[str, Profile] = {
    "tutorial": Profile("tutorial", TUTORIAL_SCALE),
    "tutorial-send": Profile("tutorial-send", TUTORIAL_SCALE, events=False),
}


def get_profile(name: str | None) -> Profile | None:
    """The profile called ``name`` (None for none); ValueError for an unknown one."""
    if name is None or name == "default":
        return None
    if name not in PROFILES:
        raise ValueError(f"unknown profile {name!r}; expected one of {sorted(PROFILES)}")
    return PROFILES[name]
