"""`customerio-pipeline plan`: its predictions against the requests a run then makes, and its bad input."""

from __future__ import annotations

from typing import Any

import dlt
import pytest

from customerio_source import customerio_source, load
from customerio_source.client import RequestStats
from customerio_source.planner import main, plan_run, render
from customerio_source.simulator import SimulatorServer, Workspace

KEY = "plan-key"
TOLERANCE = 0.10


@pytest.fixture(scope="module")
def small_server() -> Any:
    ws = Workspace(scale="small")
    server = SimulatorServer(ws, api_key=KEY).start()
    yield ws, server
    server.stop()


def run_counted(server: Any, pipeline_name: str, workdir: str) -> RequestStats:
    stats = RequestStats()
    pipeline = dlt.pipeline(
        pipeline_name=pipeline_name,
        destination=dlt.destinations.duckdb(f"{workdir}/warehouse.duckdb"),
        dataset_name="customerio",
    )
    load(pipeline, customerio_source(api_key=KEY, base_url=server.base_url, rate_limit=0, request_stats=stats))
    return stats


def assert_close(predicted: dict[str, int], actual: RequestStats) -> None:
    """Total within ±10%; every table with 20 requests or more within ±10%, the others within 3 requests."""
    total = sum(predicted.values())
    assert abs(total - actual.total) <= TOLERANCE * actual.total, (total, actual.total)
    for table in set(predicted) | {t for t in actual.by_table if t != "-"}:
        made, guess = actual.by_table.get(table, 0), predicted.get(table, 0)
        allowed = TOLERANCE * made if made >= 20 else 3
        assert abs(guess - made) <= allowed, (table, guess, made)


def test_plan_predicts_full_and_incremental_requests_at_small(small_server, tmp_path):
    ws, server = small_server
    name = "plan_small"
    warehouse = dlt.destinations.duckdb(f"{tmp_path}/warehouse.duckdb")  # where run_counted loads
    full_plan = plan_run(KEY, base_url=server.base_url, rate_limit=10, pipeline_name=name, destination=warehouse)
    assert full_plan.planning_requests < 60  # a handful, not a run
    full = run_counted(server, name, str(tmp_path))
    assert_close({t.table: t.full for t in full_plan.tables}, full)
    assert full_plan.seconds(full_plan.total("full")) == pytest.approx(full_plan.total("full") / 10)

    ws.advance()
    incremental_plan = plan_run(
        KEY, base_url=server.base_url, rate_limit=10, pipeline_name=name, destination=warehouse
    )
    assert not incremental_plan.notes  # planned from the pipeline's own watermarks
    incremental = run_counted(server, name, str(tmp_path))
    # `messages` includes late engagement (issue 14), planned as the run plans it from the warehouse
    assert_close({t.table: t.incremental for t in incremental_plan.tables}, incremental)

    text = render(incremental_plan)
    total_line = next(line for line in text.splitlines() if line.startswith("total"))
    assert f"{incremental_plan.total('incremental'):,}" in total_line
    assert "at 10 requests/s" in text


def test_plan_prints_a_table_and_the_bulk_choice(small_server, capsys, monkeypatch):
    _, server = small_server
    monkeypatch.setenv("CUSTOMERIO_APP_API_KEY", KEY)
    assert (
        main(
            [
                "--base-url",
                server.base_url,
                "--tables",
                "customers,customer_attributes,messages",
                "--bulk",
                "auto",
                "--pipeline-name",
                "nothing_here",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    rows = {
        line.split()[0]: line.split()
        for line in out.splitlines()
        if line and line.split()[0] in ("customers", "customer_attributes", "messages", "total")
    }
    people = ws_people(server)
    assert int(rows["customers"][1].replace(",", "")) == -(-people // 1000)
    assert int(rows["customer_attributes"][1].replace(",", "")) == -(-people // 100)
    assert "--bulk auto chooses customer_attributes: API, messages: API" in out  # small: below both thresholds
    assert "a run 24 h after the previous one" in out


def ws_people(server: Any) -> int:
    ws = server.workspace
    return ws.n_people - len(ws.deleted_people)


def test_plan_bad_key_and_unreachable_host_one_line_and_exit_codes(small_server, capsys, monkeypatch):
    _, server = small_server
    monkeypatch.setenv("CUSTOMERIO_APP_API_KEY", "wrong-key")
    assert main(["--base-url", server.base_url]) == 3
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and "wrong-key" not in err
    monkeypatch.setenv("CUSTOMERIO_APP_API_KEY", KEY)
    assert main(["--base-url", "http://127.0.0.1:9", "--tables", "campaigns"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cannot reach" in err and KEY not in err
    monkeypatch.delenv("CUSTOMERIO_APP_API_KEY")
    assert main(["--base-url", server.base_url]) == 2
    assert capsys.readouterr().err.count("\n") == 1
