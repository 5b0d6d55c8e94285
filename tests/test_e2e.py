"""End to end on the simulated workspace (tiny): exact key sets, types, reruns, deletes."""

from __future__ import annotations

import os

import pytest

from customerio_source.catalogue import default_tables

from .conftest import norm_keys
from .oracle import expected_count, expected_keys

FOUNDATION_TABLES = [
    "campaigns",
    "campaign_actions",
    "broadcasts",
    "newsletters",
    "segments",
    "messages",
    "customers",
    "customer_attributes",
]


def test_foundation_tables_load_exactly_the_workspace(loader, tiny_server):
    ws = tiny_server.workspace
    loader.run(FOUNDATION_TABLES)
    for table in FOUNDATION_TABLES:
        assert loader.keys(table) == norm_keys(expected_keys(ws, table)), table
        assert loader.duplicates(table) == 0, table
    assert loader.count("customers") == expected_count(ws, "customers")


def test_timestamps_are_typed_and_ids_consistent(loader, tiny_server):
    loader.run(["campaigns", "messages", "customer_attributes"])
    assert loader.column_type("campaigns", "created") == "TIMESTAMP WITH TIME ZONE"
    assert loader.column_type("campaigns", "updated") == "TIMESTAMP WITH TIME ZONE"
    assert loader.column_type("messages", "created") == "TIMESTAMP WITH TIME ZONE"
    assert loader.column_type("messages", "metrics__sent") == "TIMESTAMP WITH TIME ZONE"
    assert loader.column_type("campaigns", "id") == "BIGINT"
    assert loader.column_type("customer_attributes", "attributes") == "JSON"
    # every delivery's metric timestamps are at or after its creation
    bad = loader.query("SELECT COUNT(*) FROM {ds}.messages WHERE metrics__sent < created")[0][0]
    assert bad == 0


def test_second_run_adds_nothing_twice(loader, tiny_server):
    loader.run(FOUNDATION_TABLES)
    first = {t: loader.count(t) for t in FOUNDATION_TABLES}
    loader.run(FOUNDATION_TABLES)
    assert {t: loader.count(t) for t in FOUNDATION_TABLES} == first
    for table in FOUNDATION_TABLES:
        assert loader.duplicates(table) == 0


def test_all_default_tables_match_the_workspace(loader, tiny_server):
    ws = tiny_server.workspace
    loader.run("all")
    loaded = loader.tables()
    known = set(ws.tables())
    for table in default_tables():
        if table in known:
            assert table in loaded, table
            assert loader.keys(table) == norm_keys(expected_keys(ws, table)), table
            assert loader.duplicates(table) == 0, table


@pytest.mark.parametrize("table", ["customer_messages", "customer_relationships", "customer_segments"])
def test_per_person_tables_on_request(loader, tiny_server, table):
    ws = tiny_server.workspace
    loader.run([table])
    assert loader.keys(table) == norm_keys(expected_keys(ws, table))


def test_bulk_exports_mode_loads_the_same_keys(loader, tiny_server):
    ws = tiny_server.workspace
    loader.run(["messages", "customer_attributes"], bulk="exports")
    assert loader.keys("messages") == norm_keys(expected_keys(ws, "messages"))
    assert loader.keys("customer_attributes") == norm_keys(expected_keys(ws, "customer_attributes"))
    assert loader.duplicates("messages") == 0


def test_first_load_appends_then_merges_without_duplicates(loader, tiny_server):
    """A new deliveries table is appended (fast) and de-duplicated; later runs merge as declared."""
    from customerio_source.runner import append_new_tables

    ws = tiny_server.workspace
    loader.run(["messages"])
    schema = loader.pipeline().default_schema
    assert schema.tables["messages"]["write_disposition"] == "append"
    assert loader.keys("messages") == norm_keys(expected_keys(ws, "messages")) and loader.duplicates("messages") == 0
    loader.run(["messages"])
    assert loader.pipeline().default_schema.tables["messages"]["write_disposition"] == "merge"
    assert loader.duplicates("messages") == 0 and loader.count("messages") == len(expected_keys(ws, "messages"))
    assert append_new_tables(loader.pipeline(), loader.source) == []  # the table exists now


def test_first_load_of_attributes_appends_with_root_keys_then_merges(loader, tiny_server):
    """A person's attributes are appended on the first load (no merge of a million rows into nothing); the
    nested devices carry `_dlt_root_id`, so later merges replace a person's devices, never add to them."""
    loader.run(["customers", "customer_attributes"])
    schema = loader.pipeline().default_schema
    assert schema.tables["customer_attributes"]["write_disposition"] == "append"
    devices = loader.count("customer_attributes__devices")
    assert devices > 0 and "_dlt_root_id" in schema.get_table_columns("customer_attributes__devices")
    orphans = (
        "SELECT COUNT(*) FROM {ds}.customer_attributes__devices WHERE _dlt_root_id NOT IN "
        "(SELECT _dlt_id FROM {ds}.customer_attributes)"
    )
    assert loader.query(orphans)[0][0] == 0
    loader.run(["customers", "customer_attributes"], attributes_refresh="full")
    assert loader.pipeline().default_schema.tables["customer_attributes"]["write_disposition"] == "merge"
    assert loader.duplicates("customer_attributes") == 0
    assert loader.count("customer_attributes__devices") == devices and loader.query(orphans)[0][0] == 0


def test_remove_duplicate_keys_drops_the_nested_rows_of_the_copy_removed(loader, tiny_server):
    """A person appended twice (two root rows, two `_dlt_id`s): the older copy goes, and its devices too."""
    from customerio_source.runner import remove_duplicate_keys

    loader.run(["customers", "customer_attributes"])
    pipeline = loader.pipeline()
    person, devices = loader.query(
        "SELECT _dlt_root_id, COUNT(*) FROM {ds}.customer_attributes__devices GROUP BY 1 ORDER BY 1 LIMIT 1"
    )[0]
    before = loader.count("customer_attributes__devices")
    with pipeline.sql_client() as client:
        root = client.make_qualified_table_name("customer_attributes")
        client.execute_sql(f"CREATE TEMP TABLE copy AS SELECT * FROM {root} WHERE _dlt_id = '{person}'")
        client.execute_sql("UPDATE copy SET _dlt_id = 'a-newer-copy'")
        client.execute_sql(f"INSERT INTO {root} SELECT * FROM copy")
    assert remove_duplicate_keys(pipeline, ["customer_attributes"]) == {"customer_attributes": 1}
    assert loader.duplicates("customer_attributes") == 0
    assert loader.count("customer_attributes__devices") == before - devices


def test_remove_duplicate_keys_keeps_one_row_per_key(loader, tiny_server):
    from customerio_source.runner import remove_duplicate_keys

    loader.run(["messages"])
    pipeline = loader.pipeline()
    with pipeline.sql_client() as client:
        client.execute_sql(
            f"INSERT INTO {client.make_qualified_table_name('messages')} "
            f"SELECT * FROM {client.make_qualified_table_name('messages')} LIMIT 7"
        )
    assert loader.duplicates("messages") == 7
    assert remove_duplicate_keys(pipeline, ["messages"]) == {"messages": 7}
    assert loader.duplicates("messages") == 0


def test_run_settings_hold_for_the_run_only(loader, tiny_server, monkeypatch):
    """During a DuckDB run: a memory limit for the load jobs that run at once, one load worker (unless the
    user chose) and small writer buffers, and Arrow tables get `_dlt_load_id`; afterwards the environment is
    as before."""
    from customerio_source import runner

    monkeypatch.delenv(runner.DUCKDB_GLOBAL_CONFIG_ENV, raising=False)
    monkeypatch.delenv(runner.WRITER_BUFFER_ENV, raising=False)
    monkeypatch.setenv(runner.LOAD_WORKERS_ENV, "3")  # the user's own choice stays
    monkeypatch.setenv(runner.ARROW_LOAD_ID_ENV, "false")  # required: overridden for the run, then restored
    during: dict = {}
    append_new_tables = runner.append_new_tables

    def spy(pipeline, source, *rest):
        during["env"] = {name: os.environ.get(name) for name in
                         (runner.WRITER_BUFFER_ENV, runner.LOAD_WORKERS_ENV, runner.ARROW_LOAD_ID_ENV)}
        with pipeline.sql_client() as client:
            during["memory_limit"] = client.execute_sql("SELECT current_setting('memory_limit')")[0][0]
        return append_new_tables(pipeline, source, *rest)

    monkeypatch.setattr(runner, "append_new_tables", spy)
    loader.run(["campaigns", "messages"])
    assert during["env"] == {runner.WRITER_BUFFER_ENV: "1000", runner.LOAD_WORKERS_ENV: "3",
                             runner.ARROW_LOAD_ID_ENV: "true"}
    assert during["memory_limit"] == "183.1 MiB"  # 3 load jobs x 64 MB
    assert runner.WRITER_BUFFER_ENV not in os.environ and runner.DUCKDB_GLOBAL_CONFIG_ENV not in os.environ
    assert os.environ[runner.LOAD_WORKERS_ENV] == "3"
    assert os.environ[runner.ARROW_LOAD_ID_ENV] == "false"
    with loader.pipeline().sql_client() as client:  # Arrow tables carry the load id, as all tables do
        table = client.make_qualified_table_name("messages")
        assert client.execute_sql(f"SELECT COUNT(*) FROM {table} WHERE _dlt_load_id IS NULL")[0][0] == 0
    assert loader.count("messages") == len(expected_keys(tiny_server.workspace, "messages"))


def test_duckdb_loads_one_job_at_a_time_with_the_shipped_config(loader, tiny_server, monkeypatch):
    """The project's `.dlt/config.toml` leaves `load.workers` unset, so a DuckDB run loads one job at a time
    under one 64 MB cap (it used to set 4 workers: four merges shared the cap and failed with Out of Memory)."""
    from pathlib import Path

    import tomlkit  # a dlt dependency (tomllib needs Python 3.11)

    from customerio_source import runner

    shipped = tomlkit.parse((Path(__file__).parents[1] / ".dlt" / "config.toml").read_text())
    assert "workers" not in shipped.get("load", {})
    monkeypatch.delenv(runner.DUCKDB_GLOBAL_CONFIG_ENV, raising=False)
    monkeypatch.delenv(runner.LOAD_WORKERS_ENV, raising=False)
    during: dict = {}
    append_new_tables = runner.append_new_tables

    def spy(pipeline, source, *rest):
        during["workers"] = os.environ.get(runner.LOAD_WORKERS_ENV)
        with pipeline.sql_client() as client:
            during["memory_limit"] = client.execute_sql("SELECT current_setting('memory_limit')")[0][0]
        return append_new_tables(pipeline, source, *rest)

    monkeypatch.setattr(runner, "append_new_tables", spy)
    loader.run(["campaigns"])
    assert during == {"workers": "1", "memory_limit": "61.0 MiB"}


def test_attribute_batches_of_several_people_pages_stay_within_concurrency(tmp_path, monkeypatch):
    """dlt runs the attributes transformer once per people page and keeps many of those going at once;
    they take turns, so attribute requests in flight never exceed `concurrency` (before: one pool of
    `concurrency` threads per page, 5 pages at `small` -> up to 5 x the requests and their responses)."""
    import threading
    import time

    from customerio_source.client import CustomerIOClient
    from customerio_source.simulator import SimulatorServer, Workspace

    from .conftest import API_KEY, Loader

    in_flight = [0, 0]  # now, most
    lock = threading.Lock()
    post = CustomerIOClient.post

    def slow_post(self, path, body, params=None, table="-"):
        if table != "customer_attributes":
            return post(self, path, body, params, table)
        with lock:
            in_flight[0] += 1
            in_flight[1] = max(in_flight[1], in_flight[0])
        try:
            time.sleep(0.02)  # long enough for other pages' batches to overlap
            return post(self, path, body, params, table)
        finally:
            with lock:
                in_flight[0] -= 1

    monkeypatch.setattr(CustomerIOClient, "post", slow_post)
    workspace = Workspace(scale="small", seed=7)
    people = len(expected_keys(workspace, "customer_attributes"))
    assert people > 3000  # several people pages of 1000
    with SimulatorServer(workspace, api_key=API_KEY) as server:
        loader = Loader(server.base_url, tmp_path)
        loader.run(["customers", "customer_attributes"], concurrency=2)
    assert in_flight[1] <= 2
    assert loader.count("customer_attributes") == people
    assert loader.duplicates("customer_attributes") == 0


def test_mark_deleted_after_a_run_without_load_ids_marks_nothing(loader, tiny_server, monkeypatch):
    """`pipeline.run` outside `load` (no run settings, as Airflow's and Dagster's own runs were) loads segment
    members without load ids: delete marking then neither fails (an Airflow task did) nor marks live rows."""
    from customerio_source import customerio_source, runner

    from .conftest import API_KEY

    monkeypatch.delenv(runner.ARROW_LOAD_ID_ENV, raising=False)
    pipeline = loader.pipeline()
    source = customerio_source(api_key=API_KEY, base_url=loader.base_url, tables=["segments", "segment_memberships"],
                               rate_limit=0)
    info = pipeline.run(source)
    assert loader.query("SELECT COUNT(_dlt_load_id) FROM {ds}.segment_memberships") == [(0,)]
    marked = runner.mark_deleted(pipeline, ["segments", "segment_memberships"], info.loads_ids)
    assert marked == {"segments": 0, "segment_memberships": 0}
    members = len(expected_keys(tiny_server.workspace, "segment_memberships"))
    assert loader.count("segment_memberships") == members
    assert loader.query("SELECT COUNT(*) FROM {ds}.segment_memberships WHERE _cio_deleted_at IS NULL") == [(members,)]


def test_arrow_tables_fit_tables_loaded_from_earlier_versions(loader, tiny_server):
    """Arrow tables keep the columns dict rows gave them, as columns an existing table can take: segment
    members get a NOT NULL-safe `_dlt_id` from their key, and `_dlt_load_id` is nullable (added NOT NULL, it
    failed on a `messages` table loaded before Arrow tables carried load ids)."""
    loader.run(["segments", "segment_memberships", "messages"])
    schema = loader.pipeline().default_schema
    for table in ("messages", "segment_memberships"):
        assert schema.get_table_columns(table)["_dlt_load_id"]["nullable"] is True
    rows = loader.query(
        "SELECT COUNT(*), COUNT(_dlt_id), "
        "COUNT(*) FILTER (WHERE _dlt_id = CAST(segment_id AS VARCHAR) || ':' || cio_id) "
        "FROM customerio.segment_memberships"
    )
    members = len(expected_keys(tiny_server.workspace, "segment_memberships"))
    assert rows == [(members, members, members)]
