"""Faults on the wire: 5xx, 429 storms, slow answers, resets, cut bodies, looping cursors, a revoked key.

Every test runs the real source against the simulated workspace (tiny) with the simulator's fault injection,
and checks the warehouse against the workspace's own key sets: nothing lost, nothing duplicated, and a run
that has to give up leaves neither a loaded package nor moved incremental state behind.
"""

from __future__ import annotations

import copy
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from customerio_source.catalogue import default_tables
from customerio_source.cli import root_cause
from customerio_source.client import CustomerIOClient
from customerio_source.errors import AuthError, PaginationError, RetriesExhausted
from customerio_source.simulator import SimulatorServer, Workspace
from customerio_source.simulator.server import RateLimiter as ServerLimiter

from .conftest import API_KEY, Loader, norm_keys
from .conftest import run_cli as cli_process
from .fault_injection import FaultConfig, FaultState
from .oracle import expected_keys

FAST = {"max_attempts": 8, "max_retry_wait": 60.0}
INCREMENTAL_TABLES = ["campaigns", "messages", "activities", "customers"]


@pytest.fixture(scope="module")
def workspace() -> Workspace:
    return Workspace(scale="tiny", seed=7)


@pytest.fixture
def server(workspace: Workspace) -> Iterator[SimulatorServer]:
    """A server on the shared (unchanged) tiny workspace; tests set faults with :func:`set_faults`."""
    with SimulatorServer(workspace, api_key=API_KEY) as srv:
        yield srv


def set_faults(server: SimulatorServer, **config: Any) -> None:
    server.faults = FaultState(FaultConfig(**config))
    server.stats.reset()


def keyed_tables(ws: Workspace) -> list[str]:
    """Every default table the workspace knows the keys of (all but the metrics tables)."""
    return [t for t in default_tables() if t in set(ws.tables())]


def assert_matches_workspace(loader: Loader, ws: Workspace, tables: list[str]) -> None:
    known = set(ws.tables())
    checked = [t for t in tables if t in known]
    assert checked
    for table in checked:
        assert loader.keys(table) == norm_keys(expected_keys(ws, table)), table
        assert loader.duplicates(table) == 0, table


def incremental_state(loader: Loader) -> dict[str, Any]:
    """The source's resource state (incremental cursors) as the pipeline stored it locally."""
    state = loader.pipeline().state
    return copy.deepcopy(state.get("sources", {}).get("customerio", {}).get("resources", {}))


def loads_in_warehouse(loader: Loader) -> list[tuple]:
    return loader.query("SELECT load_id, status FROM {ds}._dlt_loads ORDER BY load_id")


def run_cli(args: list[str], tmp_path: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    return cli_process(
        args,
        tmp_path,
        {"DESTINATION__DUCKDB__CREDENTIALS": str(tmp_path / "cli.duckdb"), "RUNTIME__DLTHUB_TELEMETRY": "false", **env},
    )


def one_error_line(result: subprocess.CompletedProcess) -> str:
    lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: "), lines[0]
    assert "Traceback" not in result.stderr
    return lines[0]


# -- transient faults: the run completes with exactly the workspace --------------------------------------
def test_5xx_and_the_rate_limit_lose_and_duplicate_nothing(server, tmp_path):
    """10% of requests answered 500/502/503 by a server that enforces 10 requests/s, client at 10/s."""
    ws = server.workspace
    set_faults(server, seed=3, error_rate=0.10)
    server.limiter = ServerLimiter(10)  # 429 above 10 requests in any rolling second, like the real API
    loader = Loader(server.base_url, tmp_path)
    loader.run(keyed_tables(ws), rate_limit=10, **FAST)
    errors = sum(server.stats.status_counts.get(code, 0) for code in (500, 502, 503))
    assert errors >= 3, server.stats.status_counts  # the faults really happened
    assert_matches_workspace(loader, ws, keyed_tables(ws))
    assert sum(loader.stats.retries.values()) >= errors  # the client's own counters saw the retries


def test_429_storm_waits_per_retry_after_and_completes(server, tmp_path):
    """Every request is answered 429 (Retry-After: 1) for 5 s: the client waits it out, not hammering."""
    ws = server.workspace
    storm = 5.0
    set_faults(server, storm_after=5, storm_seconds=storm)
    tables = [
        "campaigns",
        "campaign_actions",
        "segments",
        "segment_memberships",
        "messages",
        "customers",
        "customer_attributes",
    ]
    loader = Loader(server.base_url, tmp_path)
    started = time.monotonic()
    loader.run(tables, **FAST)
    assert time.monotonic() - started >= storm
    assert server.stats.rate_limited >= 1
    # Retry-After holds back every thread: at most one wave of in-flight requests per second of storm
    assert server.stats.rate_limited <= (storm + 1) * 8, server.stats.rate_limited
    assert_matches_workspace(loader, ws, tables)


def test_timeouts_resets_and_cut_bodies_are_retried(server, tmp_path):
    ws = server.workspace
    set_faults(server, seed=5, latency=0.6, latency_rate=0.05, reset_rate=0.05, truncate_rate=0.05)
    loader = Loader(server.base_url, tmp_path)
    loader.run(keyed_tables(ws), request_timeout=0.3, **FAST)
    reasons = set(loader.stats.retries)
    assert "ReadTimeout" in reasons, loader.stats.retries
    assert "bad_json" in reasons or "ChunkedEncodingError" in reasons, loader.stats.retries
    assert "ConnectionError" in reasons, loader.stats.retries
    assert_matches_workspace(loader, ws, keyed_tables(ws))


# -- faults that outlast the retries: fail cleanly, move nothing ------------------------------------------
@pytest.mark.parametrize(
    "fault, reason",
    [
        ({"reset_rate": 1.0}, "cannot reach"),
        ({"truncate_rate": 1.0}, "a cut response body"),
        ({"error_rate": 1.0}, "HTTP 50"),
        ({"latency": 0.5, "latency_rate": 1.0}, "no answer within 0.2s"),
    ],
    ids=["resets", "cut-bodies", "5xx", "timeouts"],
)
def test_each_fault_is_retried_then_reported_in_one_line(server, fault, reason):
    set_faults(server, **fault)
    client = CustomerIOClient(
        API_KEY, base_url=server.base_url, rate_limit=0, max_attempts=3, timeout=0.2, backoff_base=0.01
    )
    with pytest.raises(RetriesExhausted) as failure:
        client.get("/v1/campaigns")
    message = str(failure.value)
    assert message.startswith("GET /v1/campaigns kept failing (") and reason in message, message
    assert "after 3 attempts" in message and "\n" not in message
    assert server.stats.requests == 3  # bounded: exactly max_attempts tries
    set_faults(server)
    assert client.get("/v1/campaigns")["campaigns"]  # the same client recovers once the fault is gone


def committed(loader: Loader) -> tuple[Any, Any, dict[str, int]]:
    """What a run commits: its loads, the rows of each table and the incremental state."""
    counts = {t: loader.count(t) for t in INCREMENTAL_TABLES}
    return loads_in_warehouse(loader), counts, incremental_state(loader)


def test_exhausted_retries_fail_the_run_and_move_no_state(tmp_path):
    """A good run, the workspace changes, a run whose deliveries keep failing, then a good run again."""
    ws = Workspace(scale="tiny", seed=23)
    with SimulatorServer(ws, api_key=API_KEY) as srv:
        loader = Loader(srv.base_url, tmp_path)
        loader.run(INCREMENTAL_TABLES)
        before = committed(loader)
        ws.advance()
        # deliveries time out or lose their connection, everything else answers
        set_faults(srv, operations={"GET /v1/messages"}, latency=1.0, latency_rate=0.5, reset_rate=0.5)
        with pytest.raises(Exception) as failure:
            loader.run(INCREMENTAL_TABLES, max_attempts=2, request_timeout=0.3)
        cause = root_cause(failure.value)
        assert isinstance(cause, RetriesExhausted), repr(failure.value)
        assert str(cause).startswith("GET /v1/messages kept failing (") and "\n" not in str(cause)
        # nothing half-committed: no new load, no rows, the cursors did not move, no package left pending
        assert committed(loader) == before  # no load, no rows, no incremental state moved
        assert not loader.pipeline().has_pending_data
        # the next good run loads everything the failed one missed
        set_faults(srv)
        loader.run(INCREMENTAL_TABLES)
        for table in INCREMENTAL_TABLES:
            assert norm_keys(expected_keys(ws, table)) <= loader.keys(table), table
            assert loader.duplicates(table) == 0, table
        assert loader.keys("messages") == norm_keys(expected_keys(ws, "messages"))


def test_exhausted_retries_print_one_line_in_the_cli(server, tmp_path):
    set_faults(server, reset_rate=1.0, operations={"GET /v1/campaigns"})
    result = run_cli(
        ["--base-url", server.base_url, "--tables", "campaigns,segments"],
        tmp_path,
        {
            "CUSTOMERIO_APP_API_KEY": API_KEY,
            "SOURCES__CUSTOMERIO__MAX_ATTEMPTS": "2",
            "SOURCES__CUSTOMERIO__RATE_LIMIT": "0",
        },
    )
    assert result.returncode == 1, result.stderr
    line = one_error_line(result)
    assert "GET /v1/campaigns kept failing (" in line and "after 2 attempts" in line, line


# -- a looping cursor -------------------------------------------------------------------------------------
def test_repeating_cursor_is_detected_without_looping(server, tmp_path):
    set_faults(server, repeat_cursor="GET /v1/activities")
    loader = Loader(server.base_url, tmp_path)
    started = time.monotonic()
    with pytest.raises(Exception) as failure:
        loader.run(["activities", "campaigns"])
    assert time.monotonic() - started < 30
    cause = root_cause(failure.value)
    assert isinstance(cause, PaginationError), repr(failure.value)
    assert "GET /v1/activities" in str(cause) and "twice" in str(cause) and "looping" in str(cause)
    assert server.stats.by_operation["GET /v1/activities"] == 2  # first page, then the repeat: no loop
    assert not loader.pipeline().has_pending_data
    assert "activities" not in loader.pipeline().state.get("sources", {}).get("customerio", {}).get("resources", {})


# -- the key revoked mid-run ------------------------------------------------------------------------------
def test_401_mid_run_stops_and_commits_nothing(tmp_path):
    ws = Workspace(scale="tiny", seed=29)
    with SimulatorServer(ws, api_key=API_KEY) as srv:
        loader = Loader(srv.base_url, tmp_path)
        loader.run(INCREMENTAL_TABLES)
        before = committed(loader)
        ws.advance()
        set_faults(srv, revoke_after=6)
        with pytest.raises(Exception) as failure:
            loader.run("all")
        cause = root_cause(failure.value)
        assert isinstance(cause, AuthError), repr(failure.value)
        assert "rejected the App API key (401)" in str(cause)
        # it stopped: a handful of requests after the revocation, not one per remaining table and parent
        assert srv.stats.status_counts.get(401, 0) <= 40, srv.stats.status_counts
        assert committed(loader) == before  # no load, no rows, no incremental state moved
        assert not loader.pipeline().has_pending_data
        set_faults(srv)
        loader.run(INCREMENTAL_TABLES)
        for table in INCREMENTAL_TABLES:
            assert norm_keys(expected_keys(ws, table)) <= loader.keys(table), table


@pytest.mark.parametrize("region, other", [("us", "eu"), ("eu", "us")])
def test_wrong_region_401_suggests_the_other_region(server, tmp_path, region, other):
    """A key from the other region's workspace is rejected: exit 3, one line naming the other region."""
    result = run_cli(
        ["--base-url", server.base_url, "--region", region, "--tables", "campaigns"],
        tmp_path,
        {"CUSTOMERIO_APP_API_KEY": "key-of-another-region"},
    )
    assert result.returncode == 3, result.stderr
    line = one_error_line(result)
    assert "rejected the App API key (401)" in line
    assert f"(--region {other})" in line and f"{other.upper()} region" in line, line
    assert "key-of-another-region" not in result.stderr + result.stdout
