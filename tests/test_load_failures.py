"""Loads that fail where they should bend: a DuckDB memory cap, a package that keeps failing, one error line.

A load job that always fails is made by breaking the destination table between two runs: `campaigns.name`
becomes an INTEGER column, so dlt's merge of the next package fails terminally on every try.
"""

from __future__ import annotations

import logging
import math
import os
import re

import dlt
import duckdb
import pyarrow as pa
import pytest
from dlt.pipeline.exceptions import PipelineStepFailed

from customerio_source import runner
from customerio_source.errors import LoadFailed

from .conftest import API_KEY, run_cli
from .oracle import expected_count


def cli(tiny_server, tmp_path, *args: str, env: dict[str, str] | None = None):
    return run_cli(
        ["--base-url", tiny_server.base_url, "--rate-limit", "0", *args],
        tmp_path,
        {"CUSTOMERIO_APP_API_KEY": API_KEY, **(env or {})},
    )


def break_campaigns_table(database: str) -> None:
    """Give `campaigns.name` a type no campaign name converts to: every later merge of campaigns fails."""
    with duckdb.connect(database) as con:
        con.execute("CREATE TABLE customerio.campaigns_kept AS SELECT * FROM customerio.campaigns")
        con.execute("DELETE FROM customerio.campaigns")
        con.execute("ALTER TABLE customerio.campaigns ALTER name SET DATA TYPE INTEGER USING NULL")


def repair_campaigns_table(database: str) -> None:
    with duckdb.connect(database) as con:
        con.execute("ALTER TABLE customerio.campaigns ALTER name SET DATA TYPE VARCHAR")
        con.execute("INSERT INTO customerio.campaigns SELECT * FROM customerio.campaigns_kept")
        con.execute("DROP TABLE customerio.campaigns_kept")


def count(database: str, table: str) -> int:
    with duckdb.connect(database, read_only=True) as con:
        return con.execute(f"SELECT COUNT(*) FROM customerio.{table}").fetchone()[0]


def test_a_package_that_keeps_failing_does_not_wedge_the_pipeline(tiny_server, tmp_path):
    database = str(tmp_path / "customerio_warehouse.duckdb")
    campaigns = expected_count(tiny_server.workspace, "campaigns")
    segments = expected_count(tiny_server.workspace, "segments")
    assert cli(tiny_server, tmp_path, "--tables", "campaigns").returncode == 0
    break_campaigns_table(database)

    failed = cli(tiny_server, tmp_path, "--tables", "campaigns")
    assert failed.returncode == 1, failed.stderr
    assert "Traceback" not in failed.stderr and "ERROR" not in failed.stderr, failed.stderr
    last = failed.stderr.strip().splitlines()[-1]
    assert last.startswith("error: loading campaigns failed: ") and "Conversion Error" in last, last
    assert "next run retries it first" in last

    # the next run, even of another table, retries the stuck package first: one line, exit 4, what to do
    stuck = cli(tiny_server, tmp_path, "--tables", "segments")
    assert stuck.returncode == 4, stuck.stderr
    assert "Traceback" not in stuck.stderr
    last = stuck.stderr.strip().splitlines()[-1]
    assert "an earlier run left behind" in last and "loading campaigns failed" in last, last
    assert "--tables segments --drop-pending" in last, last

    # path 1: drop it; this run goes on and loads what it was asked for, the broken table is left alone
    dropped = cli(tiny_server, tmp_path, "--tables", "segments", "--drop-pending")
    assert dropped.returncode == 0, dropped.stderr
    assert "dropped 1 pending load package(s)" in dropped.stderr
    assert count(database, "segments") == segments and count(database, "campaigns") == 0

    # path 2: a package stuck again is retried by a plain run once its cause is fixed
    assert cli(tiny_server, tmp_path, "--tables", "campaigns").returncode == 1
    repair_campaigns_table(database)
    retried = cli(tiny_server, tmp_path, "--tables", "segments")
    assert retried.returncode == 0, retried.stderr
    assert "finishing 1 load package(s)" in retried.stderr
    assert count(database, "campaigns") == campaigns and count(database, "segments") == segments
    with duckdb.connect(database, read_only=True) as con:
        assert con.execute("SELECT COUNT(*) - COUNT(DISTINCT id) FROM customerio.campaigns").fetchone()[0] == 0


def test_a_memory_limit_the_user_chose_is_kept_and_named(tiny_server, tmp_path):
    """A user's own DuckDB memory_limit is never lifted; the error line names it and the table."""
    env = {runner.DUCKDB_GLOBAL_CONFIG_ENV: '{"memory_limit": "1MB", "threads": 1}'}
    failed = cli(tiny_server, tmp_path, "--tables", "campaigns,messages", env=env)
    assert failed.returncode == 1, failed.stderr
    assert "Traceback" not in failed.stderr
    last = failed.stderr.strip().splitlines()[-1]
    assert "DuckDB out of memory at the 1MB (configured) limit" in last, last
    # at 1 MB even creating the tables fails: the line names the step then (a job's failure names its table)
    assert last.startswith(("error: loading ", "error: the load step failed: ")), last


MEMBERS = 300_000


@dlt.source(name="memory_test")
def members_source():
    @dlt.resource(primary_key=("segment_id", "cio_id"), write_disposition="merge", name="members")
    def members():
        for start in range(0, MEMBERS, 100_000):
            ids = range(start, start + 100_000)
            yield pa.table({"segment_id": pa.array([i % 7 for i in ids], pa.int64()),
                            "cio_id": pa.array([f"cio_{i:012d}" for i in ids])})

    return members


def test_a_merge_over_the_connectors_memory_cap_is_loaded_again_with_the_cap_lifted(tmp_path, monkeypatch, caplog):
    """The cap this module sets is raised by a quarter, step by step, for a job that needs more, and stops at the first
    limit that fits (not at half of the machine's memory): the rows all land."""
    monkeypatch.setattr(runner, "duckdb_job_memory_mb", lambda: 4)  # far below what this merge needs
    monkeypatch.delenv(runner.DUCKDB_GLOBAL_CONFIG_ENV, raising=False)
    monkeypatch.setenv("LOAD__RAISE_ON_MAX_RETRIES", "1")
    database = str(tmp_path / "members.duckdb")
    pipeline = dlt.pipeline(
        "memory_test", pipelines_dir=str(tmp_path / "p"), destination=dlt.destinations.duckdb(database),
        dataset_name="customerio",
    )
    with caplog.at_level(logging.WARNING, logger="customerio_source"):
        runner.load(pipeline, members_source())
        runner.load(pipeline, members_source())  # a real merge: the table has every row already
    lifted = [r.getMessage() for r in caplog.records if "ran out of memory" in r.getMessage()]
    steps = [re.fullmatch(r"members: DuckDB ran out of memory at the (\d+) MB limit this connector set; "
                          r"loading it again with the limit lifted to (\d+) MB", m) for m in lifted]
    assert lifted and all(steps), lifted
    limits = [(int(m.group(1)), int(m.group(2))) for m in steps]
    assert limits[0][0] == 4
    assert all(to == max(at + 1, math.ceil(at * runner.DUCKDB_LIFT_FACTOR)) for at, to in limits), limits
    # each run starts again from the cap; within a run, each step starts where the last one ended
    assert all(b[0] in (4, a[1]) for a, b in zip(limits, limits[1:], strict=False)), limits
    assert max(to for _, to in limits) <= 256 < runner.duckdb_lifted_ceiling_mb(), limits
    assert count(database, "members") == MEMBERS
    with duckdb.connect(database, read_only=True) as con:
        keys = con.execute("SELECT COUNT(DISTINCT (segment_id, cio_id)) FROM customerio.members").fetchone()[0]
    assert keys == MEMBERS
    assert runner.DUCKDB_GLOBAL_CONFIG_ENV not in os.environ  # the run's settings do not outlive it


def test_a_merge_that_fails_again_after_the_lift_raises_one_line(tmp_path, monkeypatch):
    monkeypatch.setattr(runner, "duckdb_job_memory_mb", lambda: 4)
    monkeypatch.setattr(runner, "DUCKDB_LIFTED_SHARE", 0.0)  # "lifted" to the same 4 MB
    monkeypatch.delenv(runner.DUCKDB_GLOBAL_CONFIG_ENV, raising=False)
    monkeypatch.setenv("LOAD__RAISE_ON_MAX_RETRIES", "1")
    pipeline = dlt.pipeline(
        "memory_fail", pipelines_dir=str(tmp_path / "p"),
        destination=dlt.destinations.duckdb(str(tmp_path / "m.duckdb")), dataset_name="customerio",
    )
    with pytest.raises(LoadFailed) as failure:
        runner.load(pipeline, members_source())
    message = str(failure.value)
    assert message.startswith("loading members failed: DuckDB out of memory at the 4 MB limit"), message
    assert "\n" not in message and failure.value.table == "members" and failure.value.load_ids
    assert pipeline.has_pending_data  # kept for the next run (or drop_pending_packages)


def test_a_second_run_of_a_running_pipeline_exits_at_once_and_the_first_is_unaffected(tiny_server, tmp_path):
    from customerio_source import customerio_source
    from customerio_source.lock import pipeline_lock

    database = str(tmp_path / "customerio_warehouse.duckdb")
    pipeline = dlt.pipeline(
        "customerio", pipelines_dir=str(tmp_path / "dlt" / "pipelines"),
        destination=dlt.destinations.duckdb(database), dataset_name="customerio",
    )
    source = customerio_source(api_key=API_KEY, base_url=tiny_server.base_url, tables="campaigns", rate_limit=0)
    with pipeline_lock(pipeline):  # "the running one", as the CLI's own run would hold it
        second = cli(tiny_server, tmp_path, "--tables", "campaigns,segments")
        assert second.returncode == 5, second.stderr
        (line,) = [x for x in second.stderr.splitlines() if x.strip()]
        assert line.startswith("error: pipeline 'customerio' is already running (pid ") and str(os.getpid()) in line
        assert not os.path.exists(database)  # it touched nothing
    info = runner.load(pipeline, source)  # the lock is free again: the first pipeline loads as usual
    assert info.loads_ids and count(database, "campaigns") == expected_count(tiny_server.workspace, "campaigns")


def test_an_extract_failure_names_its_table_and_its_root_cause(tmp_path):
    """The line is never cut after dlt's "with exception:" (issue 14: an Arrow error behind two wrappers)."""
    from customerio_source.cli import failure_report

    @dlt.resource(name="messages")
    def messages():
        yield {"id": "d1"}
        raise ValueError("Column 'id' is declared non-nullable but contains nulls")

    pipeline = dlt.pipeline("extract_failure", pipelines_dir=str(tmp_path / "p"),
                            destination=dlt.destinations.duckdb(str(tmp_path / "w.duckdb")), dataset_name="d")
    with pytest.raises(Exception) as failure:
        pipeline.run(messages())
    line, code = failure_report(failure.value, [])
    assert line == "extract step of messages failed: Column 'id' is declared non-nullable but contains nulls"
    assert code == 1


def test_the_duckdb_cap_is_sized_from_the_machine(monkeypatch):
    for machine_mb, expected in ((4096, 64), (24_576, 64), (98_304, 256), (1_048_576, 1024)):
        monkeypatch.setattr(runner, "machine_memory_mb", lambda m=machine_mb: m)
        assert runner.duckdb_job_memory_mb() == expected, machine_mb
    assert runner.duckdb_settings(2)["memory_limit"] == "2048MB"  # per load job running at once
    monkeypatch.setattr(runner.os, "cpu_count", lambda: 8)
    assert runner.duckdb_settings(1, memory_mb=64)["threads"] == 1  # a thread per 64 MB of the cap
    assert runner.duckdb_settings(1, memory_mb=256)["threads"] == 4
    assert runner.duckdb_settings(1, memory_mb=12_000)["threads"] == 8  # at most one per core


def test_a_wrapped_arrow_error_is_the_line(tmp_path):
    """A real pyarrow error raised while extracting, behind dlt's wrappers, is what the line says."""
    from customerio_source.cli import failure_report

    @dlt.resource(name="messages")
    def messages():
        yield pa.table({"id": ["d1"]})
        yield pa.table({"id": pa.array(["not a number"]).cast(pa.int64())})

    pipeline = dlt.pipeline("arrow_failure", pipelines_dir=str(tmp_path / "p"),
                            destination=dlt.destinations.duckdb(str(tmp_path / "w.duckdb")), dataset_name="d")
    with pytest.raises(Exception) as failure:
        pipeline.run(messages())
    assert isinstance(failure.value, PipelineStepFailed)
    line, code = failure_report(failure.value, [])
    assert line == "extract step of messages failed: Failed to parse string: 'not a number' as a scalar of type int64"
    assert code == 1


def test_a_wrapped_http_error_is_the_line(tmp_path):
    """An HTTP failure inside a resource (the API kept answering 503) is named with its endpoint and status."""
    from customerio_source import customerio_source
    from customerio_source.cli import failure_report

    from .scripted_server import ScriptedServer

    def handler(method, path, query, body):
        return 503, {}, {"errors": [{"detail": "maintenance", "status": "503"}]}

    with ScriptedServer(handler) as server:
        source = customerio_source(api_key=API_KEY, base_url=server.base_url, tables="campaigns", rate_limit=0,
                                   max_attempts=1)
        pipeline = dlt.pipeline("http_failure", pipelines_dir=str(tmp_path / "p"),
                                destination=dlt.destinations.duckdb(str(tmp_path / "w.duckdb")), dataset_name="d")
        with pytest.raises(Exception) as failure:
            runner.load(pipeline, source)
    line, code = failure_report(failure.value, [])
    assert "\n" not in line and "GET /v1/campaigns" in line and "503" in line, line
    assert code == 1
