"""dlt state stays small when many activities share the newest timestamp (a burst): the cursor keeps no
per-row hashes; the rows it re-reads merge on `id`."""

from __future__ import annotations

import orjson

from customerio_source.simulator.changes import _add_activity

from .conftest import Loader


def activities_state(loader: Loader) -> dict:
    state = loader.pipeline().state
    return state["sources"]["customerio"]["resources"]["activities"]


def test_a_burst_of_activities_in_one_second_adds_nothing_per_row_to_state(tiny_server, tmp_path):
    ws = tiny_server.workspace
    loader = Loader(tiny_server.base_url, tmp_path)
    loader.run("activities")
    before = loader.count("activities")
    burst_at = int(ws.a_ts[-1]) + 60
    people = [p for p in range(ws.n_people) if ws.alive(p)]
    burst = [_add_activity(ws, burst_at, 4, -1, people[k % len(people)]) for k in range(400)]
    loader.run("activities")
    cursor = activities_state(loader)["incremental"]["timestamp"]
    assert not cursor.get("unique_hashes")  # 400 rows tie at the watermark: no hash kept for any of them
    assert len(orjson.dumps(activities_state(loader))) < 1000
    ids = {ws.activity_id(j) for j in burst}
    loaded = {row[0] for row in loader.query("SELECT id FROM {ds}.activities")}
    assert ids <= loaded and loader.count("activities") == before + len(burst)
    loader.run("activities")  # the burst is at the watermark: read again, merged, not duplicated
    assert loader.duplicates("activities") == 0 and loader.count("activities") == before + len(burst)
