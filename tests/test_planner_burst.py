"""The planner's incremental prediction after a burst of new rows just before planning (issue 17).

Several change steps in a row put ~1,200 deliveries and ~2,000 activities into the minutes before the plan:
more than one page of deliveries and more than the activity sample's first pages. The prediction must
count that burst for its own minutes, not extrapolate its density over the lookback or the time since the
previous run.
"""

from __future__ import annotations

import dlt

from customerio_source import customerio_source, load
from customerio_source.client import RequestStats
from customerio_source.planner import plan_run
from customerio_source.simulator import SimulatorServer, Workspace

KEY = "plan-burst-key"
TABLES = "customers,customer_attributes,messages,activities"
BURST_STEPS = 6


def warehouse(workdir: str) -> dlt.destinations.duckdb:
    return dlt.destinations.duckdb(f"{workdir}/warehouse.duckdb")


def run_counted(server: SimulatorServer, workdir: str) -> RequestStats:
    stats = RequestStats()
    pipeline = dlt.pipeline(pipeline_name="plan_burst", destination=warehouse(workdir), dataset_name="customerio")
    load(
        pipeline,
        customerio_source(api_key=KEY, base_url=server.base_url, tables=TABLES, rate_limit=0, request_stats=stats),
    )
    return stats


def test_a_burst_before_planning_does_not_inflate_the_incremental_prediction(tmp_path):
    ws = Workspace(scale="small")
    server = SimulatorServer(ws, api_key=KEY).start()
    try:
        first = run_counted(server, str(tmp_path))
        deliveries, activities = len(ws.d_created), ws.n_activities()
        for _ in range(BURST_STEPS):
            ws.advance()
        assert len(ws.d_created) - deliveries > 1000  # more than one page of new deliveries
        assert ws.n_activities() - activities > 1000  # more than the activity sample's first 5 pages
        plan = plan_run(
            KEY,
            base_url=server.base_url,
            tables=TABLES,
            rate_limit=0,
            pipeline_name="plan_burst",
            destination=warehouse(str(tmp_path)),  # the late-engagement plan reads the warehouse, as the run does
        )
        assert not plan.notes  # planned from the pipeline's own watermarks
        made = run_counted(server, str(tmp_path))
    finally:
        server.stop()
    predicted = {t.table: t.incremental for t in plan.tables}
    for table in ("activities", "customer_attributes", "customers"):  # within 10%, or 3 for small tables
        allowed = max(3, 0.10 * made.by_table[table])
        assert abs(predicted[table] - made.by_table[table]) <= allowed, (table, predicted[table], made.by_table)
    # messages: the new deliveries' pages (split by the run from its first page), the late-engagement scan
    # and the re-reads of stale engaged deliveries (planned from the warehouse, as the run plans them)
    assert abs(predicted["messages"] - made.by_table["messages"]) <= max(3, 0.10 * made.by_table["messages"]), (
        predicted["messages"],
        made.by_table["messages"],
        next(t.basis for t in plan.tables if t.table == "messages"),
    )
    # a full run from scratch now: the first run's pages and the burst's (~2), not the burst's density
    full = next(t.full for t in plan.tables if t.table == "messages")
    assert abs(full - first.by_table["messages"]) <= 0.10 * first.by_table["messages"] + 3, (full, first.by_table)
    assert plan.planning_requests < 60
