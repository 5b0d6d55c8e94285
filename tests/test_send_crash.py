"""kill -9 in the middle of a push, then the same push again: no event applied twice, no person's
attributes rolled back to an older row, no row skipped (the resumed package is finished by runner.load)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from typing import Any

from .send_fixtures import SITE_ID, TRACK_KEY, activities, customer

PEOPLE, VERSIONS, EVENTS = 300, 3, 6000

CHILD = r"""
import os, sys
import dlt
from customerio_source.runner import load
from customerio_source.send import customerio_track, send_as

base_url, pipelines_dir, now = sys.argv[1], sys.argv[2], int(sys.argv[3])
people = [{"id": f"c{p}", "version": v, "pad": "x" * 300}
          for v in range(1, %(versions)d + 1) for p in range(%(people)d)]
events = [{"id": f"c{i %% %(people)d}", "event_id": i, "name": "step", "timestamp": now - 5000 + i %% 4000}
          for i in range(%(events)d)]

@dlt.source(name="crash")
def source():
    return [send_as(dlt.resource(people, name="people"), "identify"),
            send_as(dlt.resource(events, name="events"), "event", "event_id")]

destination = customerio_track(site_id=%(site)r, api_key=%(key)r, base_url=base_url, rate_limit=0, workers=2,
                               batch_size=150)
pipeline = dlt.pipeline("crash_push", pipelines_dir=pipelines_dir, destination=destination)
load(pipeline, source())
print("done")
"""


def _child(server: Any, tmp_path: Any) -> subprocess.Popen:
    code = CHILD % {"versions": VERSIONS, "people": PEOPLE, "events": EVENTS, "site": SITE_ID, "key": TRACK_KEY}
    env = {**os.environ, "DLT_DATA_DIR": str(tmp_path / "dlt")}
    return subprocess.Popen(
        [sys.executable, "-c", code, server.base_url, str(tmp_path / "pipelines"), str(server.workspace.now)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_kill_9_mid_push_then_rerun(send_server: Any, tmp_path: Any) -> None:
    state = send_server.send
    state.latency = 0.02
    child = _child(send_server, tmp_path)
    deadline = time.monotonic() + 60
    # people: 900 rows in 6 batches of 150 (1 request each); events: 40 batches. Kill in the events.
    while state.stats.requests < 14 and time.monotonic() < deadline and child.poll() is None:
        time.sleep(0.01)
    assert child.poll() is None, child.communicate()
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    sent_before = state.stats.requests
    assert 0 < sent_before < 46
    state.latency = 0
    again = _child(send_server, tmp_path)
    out, err = again.communicate(timeout=120)
    assert again.returncode == 0, err
    assert "done" in out
    # every person ends at the last row's attributes
    for p in (0, 17, PEOPLE - 1):
        assert customer(send_server, f"c{p}")["attributes"]["version"] == str(VERSIONS)
    # every event once: no duplicate, none skipped
    names = []
    for p in range(PEOPLE):
        names.extend(a["data"]["event_id"] for a in activities(send_server, f"c{p}") if a["name"] == "step")
    assert sorted(names) == list(range(EVENTS))
    assert state.duplicates > 0  # the batch cut by the kill was sent again, and its events ignored
