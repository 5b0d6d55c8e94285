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
people = [{"id": f"c{p}", "version": v, "pad": "x" * 900, "pad2": "z" * 900}
          for v in range(1, %(versions)d + 1) for p in range(%(people)d)]
events = [{"id": f"c{i %% %(people)d}", "event_id": i, "name": "step", "timestamp": now - 5000 + i %% 4000,
           "pad": "y" * 400}
          for i in range(%(events)d)]

@dlt.source(name="crash")
def source():
    return [send_as(dlt.resource(people, name="people"), "identify"),
            send_as(dlt.resource(events, name="events"), "event", "event_id")]

destination = customerio_track(site_id=%(site)r, api_key=%(key)r, base_url=base_url, rate_limit=0, workers=2,
                               slice_rows=150, checkpoint_seconds=0)
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
    state.latency = 0.4
    child = _child(send_server, tmp_path)
    deadline = time.monotonic() + 60
    # people: 900 rows of ~2 KB (4 requests of 500 KB, after the credential check); events: 6,000 rows of
    # ~0.5 KB (7 requests). Kill among the events.
    while state.stats.requests < 8 and time.monotonic() < deadline and child.poll() is None:
        time.sleep(0.01)
    assert child.poll() is None, child.communicate()
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    sent_before = state.stats.requests
    assert 0 < sent_before < 12
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
    assert state.duplicates > 0  # the requests cut by the kill were sent again, and their events ignored



def test_a_job_file_resumes_at_its_checkpoint(send_server: Any, tmp_path: Any) -> None:
    """push_file starts at the rows its checkpoint says are done, and removes the checkpoint at the end."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from customerio_source.send.destination import Checkpoint, push_file, settings_from

    job = tmp_path / "load" / "1700000000.5" / "started_jobs"
    job.mkdir(parents=True)
    path = str(job / "events.abc123.0.parquet")
    now = send_server.workspace.now
    rows = [{"id": f"k{i % 7}", "event_id": i, "name": "tick", "timestamp": now - 100 + i} for i in range(1000)]
    pq.write_table(pa.Table.from_pylist(rows), path, row_group_size=128)
    spool = str(tmp_path / "spool")
    Checkpoint(spool, path).write(600)
    settings = settings_from(SITE_ID, TRACK_KEY, None, "us", send_server.base_url, "track", 0, 2)
    push_file(path, {"name": "events"}, settings, {"events": "event"}, "event_id", spool, slice_rows=100)
    sent = sorted(a["data"]["event_id"] for p in range(7) for a in activities(send_server, f"k{p}"))
    assert sent == list(range(600, 1000))
    assert Checkpoint(spool, path).read() == 0
