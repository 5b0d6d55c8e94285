"""The cheaper incremental rule for customer_attributes loads what a full re-read loads."""

from __future__ import annotations

from .conftest import API_KEY, Loader, norm_keys
from .oracle import deleted_keys, expected_count, expected_keys

SNAPSHOT = (
    "SELECT cio_id, id, email, CAST(attributes AS VARCHAR), unsubscribed FROM {ds}.customer_attributes "
    "WHERE _cio_deleted_at IS NULL ORDER BY cio_id"
)
DEVICES = (
    "SELECT a.cio_id, d.id, d.platform, d.last_used FROM {ds}.customer_attributes a "
    "JOIN {ds}.customer_attributes__devices d ON d._dlt_parent_id = a._dlt_id "
    "WHERE a._cio_deleted_at IS NULL ORDER BY 1, 2"
)


def test_changed_people_rule_equals_a_full_reread(tmp_path, monkeypatch):
    from customerio_source import people
    from customerio_source.simulator import SimulatorServer, Workspace

    monkeypatch.setattr(people, "PEOPLE_PAGE_SIZE", 10)  # several search pages, each with few changed people

    ws = Workspace(scale="tiny", seed=13)
    with SimulatorServer(ws, api_key=API_KEY) as server:
        incremental = Loader(server.base_url, tmp_path / "incremental")
        incremental.run(["customer_attributes"])
        state = incremental.pipeline().state["sources"]["customerio"]["resources"]["customer_attributes"]
        assert set(state) == {"since", "full_at"}  # two timestamps: nothing per person (it grew with people)
        ws.advance()
        ws.advance()
        server.stats.reset()
        incremental.run(["customer_attributes"])
        reread = incremental.pipeline().last_trace.last_normalize_info.row_counts.get("customer_attributes", 0)
        attribute_requests = server.stats.by_operation.get("POST /v1/customers/attributes")
        search_pages = server.stats.by_operation.get("POST /v1/customers")
        full = Loader(server.base_url, tmp_path / "full")
        full.run(["customer_attributes"], attributes_refresh="full")

    changes = ws.last_changes
    assert changes["attribute_changes"] and changes["new_people"] and changes["deleted_people"]
    assert incremental.query(SNAPSHOT) == full.query(SNAPSHOT)
    assert incremental.query(DEVICES) == full.query(DEVICES)
    assert incremental.keys("customer_attributes") == norm_keys(expected_keys(ws, "customer_attributes"))
    # deleted people are marked, not silently live
    deleted = incremental.query("SELECT COUNT(*) FROM {ds}.customer_attributes WHERE _cio_deleted_at IS NOT NULL")[0][0]
    assert deleted == len(norm_keys(deleted_keys(ws, "customer_attributes")))
    # and it was cheaper: only new and changed people were re-read
    assert 0 < reread < expected_count(ws, "customers") / 2, reread
    # batches of 100 fill across search pages: one request per 100 re-read people, not one per page
    assert search_pages > 3 and attribute_requests == -(-reread // 100), (search_pages, attribute_requests, reread)


def test_full_refresh_mode_and_first_run_read_everyone(tmp_path):
    from customerio_source.simulator import SimulatorServer, Workspace

    ws = Workspace(scale="tiny", seed=13)
    with SimulatorServer(ws, api_key=API_KEY) as server:
        loader = Loader(server.base_url, tmp_path)
        loader.run(["customer_attributes"])
        people = expected_count(ws, "customers")
        assert server.stats.by_operation.get("POST /v1/customers/attributes") == -(-people // 100)
        server.stats.reset()
        loader.run(["customer_attributes"], attributes_refresh="full")
        assert server.stats.by_operation.get("POST /v1/customers/attributes") == -(-people // 100)


def test_known_people_answers_membership_by_hash():
    from customerio_source.known_people import KnownPeople

    known = KnownPeople.of(f"cio_{i:06d}" for i in range(0, 20_000, 2))
    assert len(known) == 10_000
    assert "cio_000002" in known and "cio_000003" not in known
    page = [f"cio_{i:06d}" for i in range(100, 120)]
    assert known.unknown(page) == {f"cio_{i:06d}" for i in range(101, 120, 2)}
    assert KnownPeople.of([]).unknown(["a", "b"]) == {"a", "b"} and known.unknown([]) == set()
    assert all(f"cio_{i:06d}" not in known for i in range(1, 20_000, 2))  # none of the odd ones


def test_people_changes_and_late_engagement_read_one_scan_of_the_activity_log():
    """The changed people and the engaged deliveries come from one scan of the log (it was two), counted
    under one table whichever reader asks first, and find what separate scans found."""
    from customerio_source.client import CustomerIOClient, RequestStats
    from customerio_source.context import RunContext, records
    from customerio_source.late_engagement import activity_log, engagement_delivery
    from customerio_source.people_changes import CLOCK_MARGIN, PROFILE_CHANGE_TYPES, PeopleChanges
    from customerio_source.simulator import SimulatorServer, Workspace

    ws = Workspace(scale="tiny", seed=13)
    ws.advance()
    with SimulatorServer(ws, api_key=API_KEY) as server:
        client = CustomerIOClient(API_KEY, base_url=server.base_url, rate_limit=None)
        every = [a for p in client.pages("GET", "/v1/activities", {"limit": 100}) for a in records(p, "activities")]
        stamps = sorted(int(a["timestamp"]) for a in every)
        since = stamps[len(stamps) // 10] + CLOCK_MARGIN  # the scan reaches 90% down the log: several pages
        floor = since - CLOCK_MARGIN
        changed = {str(a["customer_identifiers"]["cio_id"]) for a in every
                   if a.get("type") in PROFILE_CHANGE_TYPES and int(a["timestamp"]) >= floor}
        engaged = {d for a in every if (d := engagement_delivery(a)) and int(a["timestamp"]) >= floor}
        assert changed and engaged

        server.stats.reset()
        stats = RequestStats()
        ctx = RunContext(
            client=CustomerIOClient(API_KEY, base_url=server.base_url, rate_limit=None, stats=stats),
            metrics_periods={"customer_attributes": (), "messages": ()},
        )
        people = PeopleChanges(ctx, {"since": since, "full_at": since}, "changed", 7.0, known=object())
        assert people.changed() == changed  # customer_attributes asks first ...
        assert activity_log(ctx).since(floor) == engaged  # ... late engagement reads the same pages
        scanned = server.stats.by_operation.get("GET /v1/activities")
        one_scan = -(-sum(1 for t in stamps if t >= floor) // 100)  # newest first, 100 a page, down to the floor
        assert scanned in (one_scan, one_scan + 1) and scanned >= 2, (scanned, one_scan)
        assert stats.by_table == {"messages": scanned}, stats.by_table  # counted under its owner


def test_known_people_keeps_each_hash_once_in_order():
    import numpy as np

    from customerio_source.known_people import sorted_unique

    values = np.random.default_rng(7).integers(-50, 50, 5_000, dtype=np.int64)
    assert sorted_unique(values).tolist() == sorted(set(values.tolist()))
    assert sorted_unique(np.empty(0, dtype=np.int64)).size == 0
    assert sorted_unique(np.array([3], dtype=np.int64)).tolist() == [3]


KNOWN_PEOPLE_MEMORY = """
import numpy as np
from customerio_source.known_people import KnownPeople
from customerio_source.runner import bound_process_memory

def rss_mb():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024

bound_process_memory()
hashes = np.random.default_rng(1).integers(-2**62, 2**62, 1_000_000, dtype=np.int64)
before = rss_mb()
known = KnownPeople(hashes)
print(rss_mb() - before)
"""


def test_known_people_of_a_million_keeps_about_their_own_size():
    """A million people's hashes are 8 MB: building the set keeps about that (NumPy 2.4's ``np.unique``
    kept 38 MB more in the allocator, the first peak of an incremental run at 1M people)."""
    import subprocess
    import sys

    kept = float(subprocess.run([sys.executable, "-c", KNOWN_PEOPLE_MEMORY], capture_output=True, text=True,
                                check=True).stdout)
    assert kept < 16, f"{kept:.1f} MB kept for 8 MB of hashes"
