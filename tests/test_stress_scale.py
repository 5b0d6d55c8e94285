"""The `stress` scale (issue 18) meets its targets, from its declared sizes and the catalogue (no full build)."""

from __future__ import annotations

import math

import pytest

from customerio_source.simulator import Workspace
from customerio_source.simulator import scales as scales_mod
from customerio_source.simulator import workspace as workspace_mod
from customerio_source.simulator._util import DAY, mix, salt
from customerio_source.simulator.catalog import build_catalog
from customerio_source.simulator.scales import SCALES, Scale

ANCHOR = 1_767_225_600  # 2026-01-01T00:00:00Z
SEED = 7
STRESS = SCALES["stress"]


def catalog():
    return build_catalog(SEED, STRESS, ANCHOR, ANCHOR - workspace_mod.HISTORY)


def deliveries_built(sc: Scale, cat) -> int:
    """How many deliveries ``Workspace._build_deliveries`` makes: 68% automated, the rest split evenly over
    the bursts (broadcast triggers and sent newsletters)."""
    n_auto = int(sc.deliveries * 0.68)
    bursts = len(cat.triggers) + sum(1 for nl in cat.newsletters.values() if not nl["_draft"])
    return n_auto + (sc.deliveries - n_auto) // bursts * bursts


def test_stress_declares_millions_of_memberships_and_deliveries() -> None:
    cat = catalog()
    assert len(cat.segments) == STRESS.segments
    densities = list(cat.segment_density.values())
    assert densities == list(STRESS.segment_densities or ())
    live = STRESS.people * 49 / 50  # one person in 50 starts deleted
    expected = [live * d / 1000 for d in densities]
    assert sum(expected) >= 3_000_000
    assert max(expected) >= 1_100_000  # one segment well over a million members
    n = deliveries_built(STRESS, cat)
    assert n * 96 / 97 >= 5_000_000  # `messages` rows: one delivery in 97 is a draft
    assert STRESS.activities <= 250_000 and STRESS.objects <= 5_000  # kept modest
    assert len(cat.sources) < 1 << 20  # fits the delivery sort key


def test_stress_membership_density_holds_on_a_sample() -> None:
    """The membership hash gives each segment its per-mille share (checked on 20,000 people)."""
    cat = catalog()
    ssalt = salt(SEED, "segment")
    for sid, dens in cat.segment_density.items():
        base = ssalt ^ (sid << 40)
        share = sum(1 for i in range(0, STRESS.people, STRESS.people // 20_000) if mix(base ^ i) % 1000 < dens)
        assert abs(share / 20_000 - dens / 1000) < 0.015


def test_other_scales_keep_the_catalogue_densities() -> None:
    for name in ("tiny", "small", "large"):
        assert SCALES[name].segment_densities is None
        cat = build_catalog(SEED, SCALES[name], ANCHOR, ANCHOR - workspace_mod.HISTORY)
        assert set(cat.segment_density.values()) <= {30, 80, 150, 250, 400, 600}


def test_more_than_2_20_people_get_deliveries(monkeypatch: pytest.MonkeyPatch) -> None:
    """Beyond 2^20 people the delivery sort key widens and people above 2^20 receive deliveries too
    (a small workspace with stress-sized people: no objects, few deliveries)."""
    people = STRESS.people
    mini = Scale(people=people, deliveries=30_000, activities=500, campaigns=4, broadcasts=2, newsletters=3,
                 segments=2, object_types=0, objects=0, transactional=2, collections=1, snippets=1, senders=2,
                 topics=1, webhooks=1, workspaces=1, exports=1, suppressions=2, segment_densities=(900, 10))
    monkeypatch.setitem(scales_mod.SCALES, "stress-mini", mini)
    ws = Workspace("stress-mini", seed=SEED, anchor=ANCHOR)
    assert len(ws.d_person) == deliveries_built(mini, ws.cat)
    assert 0 <= min(ws.d_person) and max(ws.d_person) < people
    high = sum(1 for p in ws.d_person if p >= 1 << 20)
    # people are created linearly over time, so the newest (highest) indices receive fewer deliveries
    assert high > 0.05 * len(ws.d_person) * (people - (1 << 20)) / people
    assert list(ws.d_created) == sorted(ws.d_created)
    i = max(ws.d_person)
    assert ws.find_person(f"cio_{ws.cio_id(i)}", "cio_id") in (i, None)  # None only if deleted
    assert all(ws.d_created[k] >= ws.t0 - 10 * DAY for k in range(0, len(ws.d_created), 997))
    assert math.isclose(len(ws.person_deliveries(i)), sum(1 for p in ws.d_person if p == i))
