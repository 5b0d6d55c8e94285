"""Big tables merged into DuckDB in bounded memory (customerio_source.in_place): memberships and deliveries
in place; the result equals a fresh load."""

from __future__ import annotations

from typing import Any

import duckdb
import pytest

from customerio_source import runner
from customerio_source.in_place import finish_in_place, remove_staged_duplicates

from .conftest import Loader
from .oracle import deleted_keys

TABLES = ["segments", "segment_memberships", "messages"]
IN_PLACE = "segment_memberships"
DELIVERIES = "messages"


def live_rows(loader: Loader, table: str) -> set[tuple]:
    """Every live row's values but dlt's bookkeeping, as a set of tuples (column order fixed by name)."""
    with duckdb.connect(loader.db_path, read_only=True) as con:
        columns = sorted(
            name
            for (name,) in con.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_schema = ? AND table_name = ?",
                [loader.dataset, table],
            ).fetchall()
            if not name.startswith("_dlt_") and name != "_cio_deleted_at"
        )
        live = " WHERE _cio_deleted_at IS NULL" if table == "segment_memberships" else ""
        return set(con.execute(f"SELECT {', '.join(columns)} FROM {loader.dataset}.{table}{live}").fetchall())


def staged_count(loader: Loader, table: str) -> int:
    return loader.query(f"SELECT COUNT(*) FROM {{ds}}_staging.{table}")[0][0]


def test_incremental_in_place_merge_equals_a_fresh_load(changing_server: Any, tmp_path):
    ws = changing_server.workspace
    kept = Loader(changing_server.base_url, tmp_path / "kept")
    kept.run(TABLES)
    # a first load has nothing to leave alone: the memberships' merge into nothing stays dlt's own
    for table in (IN_PLACE, DELIVERIES):
        assert kept.pipeline().default_schema.tables[table].get("x-merge-strategy") != "insert-only", table
    first_load = kept.query("SELECT MAX(_dlt_load_id) FROM {ds}.segment_memberships")[0][0]
    ws.advance()
    kept.run(TABLES)
    schema = kept.pipeline().default_schema
    for table in (IN_PLACE, DELIVERIES):
        assert schema.tables[table].get("x-merge-strategy") == "insert-only", table
        assert staged_count(kept, table) == 0, table  # merged, then emptied
    for table in TABLES:
        assert kept.duplicates(table) == 0, table
    fresh = Loader(changing_server.base_url, tmp_path / "fresh")
    fresh.run(TABLES)
    # deliveries: every delivery the workspace shows has the same values (metrics that changed late too);
    # the kept warehouse also keeps deliveries of people deleted since
    fresh_messages, kept_messages = live_rows(fresh, "messages"), live_rows(kept, "messages")
    assert fresh_messages and fresh_messages <= kept_messages
    # memberships: the live rows are the workspace's, the ones that left are marked
    assert live_rows(kept, "segment_memberships") == live_rows(fresh, "segment_memberships")
    marked = kept.query("SELECT COUNT(*) FROM {ds}.segment_memberships WHERE _cio_deleted_at IS NOT NULL")[0][0]
    assert marked == len(deleted_keys(ws, "segment_memberships")) > 0
    # unchanged memberships were left alone: they still carry the first run's load id
    unchanged = f"SELECT COUNT(*) FROM {{ds}}.segment_memberships WHERE _dlt_load_id = '{first_load}'"
    assert kept.query(unchanged)[0][0] > 0
    # deliveries too: the re-read ones whose metrics did not change keep the first load's id, the changed
    # ones carry the second's
    by_load = dict(kept.query("SELECT _dlt_load_id, COUNT(*) FROM {ds}.messages GROUP BY 1"))
    assert len(by_load) == 2 and all(count > 0 for count in by_load.values())


def test_a_member_who_comes_back_is_live_again(changing_server: Any, tmp_path):
    kept = Loader(changing_server.base_url, tmp_path)
    kept.run(TABLES)
    with kept.pipeline().sql_client() as client:
        client.execute_sql(
            f"UPDATE {client.make_qualified_table_name('segment_memberships')} SET _cio_deleted_at = now()"
        )
    kept.run(TABLES)
    assert kept.query("SELECT COUNT(*) FROM {ds}.segment_memberships WHERE _cio_deleted_at IS NOT NULL")[0][0] == 0
    assert kept.duplicates("segment_memberships") == 0


def test_a_merge_the_run_did_not_finish_is_finished_by_the_next_run(changing_server: Any, tmp_path, monkeypatch):
    """dlt's load committed (new members inserted, state moved on), then the process stopped before the
    in-place steps after it: the next run, whatever its tables, finishes them from the staging copy."""
    ws = changing_server.workspace
    kept = Loader(changing_server.base_url, tmp_path / "kept")
    kept.run(TABLES)
    ws.advance()

    def stop(*args: Any) -> None:
        raise RuntimeError("the process stopped here")

    monkeypatch.setattr(runner, "refresh_in_place", stop)
    with pytest.raises(RuntimeError):
        kept.run(TABLES)
    monkeypatch.undo()
    assert staged_count(kept, IN_PLACE) > 0
    kept.run(["segments"])  # reads no membership
    assert staged_count(kept, IN_PLACE) == 0
    assert finish_in_place(kept.pipeline()) == []  # nothing left to finish
    fresh = Loader(changing_server.base_url, tmp_path / "fresh")
    fresh.run(TABLES)
    # every membership the workspace has is live with its values; the members who left are marked on the
    # next complete read
    assert live_rows(fresh, IN_PLACE) <= live_rows(kept, IN_PLACE)
    kept.run(TABLES)
    assert live_rows(kept, IN_PLACE) == live_rows(fresh, IN_PLACE)
    assert kept.duplicates(IN_PLACE) == 0


def test_a_key_staged_twice_is_kept_once_by_the_next_run_after_a_stop(changing_server: Any, tmp_path, monkeypatch):
    """A delivery staged twice (a page read twice) is inserted twice by the in-place merge; a run that
    stopped before removing the copy leaves it to the next run, which removes it first."""
    kept = Loader(changing_server.base_url, tmp_path)
    kept.run(TABLES)

    def stage_twice_then_stop(pipeline: Any, tables: Any) -> None:
        with pipeline.sql_client() as client:
            table = client.make_qualified_table_name(DELIVERIES)
            with client.with_staging_dataset():
                staged = client.make_qualified_table_name(DELIVERIES)
            # what dlt's insert leaves when two copies of three keys were staged
            client.execute_sql(f"INSERT INTO {staged} SELECT * FROM {staged} ORDER BY id LIMIT 3")
            client.execute_sql(
                f"INSERT INTO {table} SELECT * FROM {table} WHERE id IN (SELECT id FROM {staged}) ORDER BY id LIMIT 3"
            )
        raise RuntimeError("the process stopped here")

    monkeypatch.setattr(runner, "remove_staged_duplicates", stage_twice_then_stop)
    with pytest.raises(RuntimeError):
        kept.run(TABLES)  # the second run merges in place
    monkeypatch.undo()
    assert kept.duplicates(DELIVERIES) == 3
    kept.run(["segments"])  # reads no delivery
    assert kept.duplicates(DELIVERIES) == 0


def test_keys_staged_twice_keep_one_row(changing_server: Any, tmp_path):
    kept = Loader(changing_server.base_url, tmp_path)
    kept.run(TABLES)
    kept.run(TABLES)  # the second run merges in place
    pipeline = kept.pipeline()
    with pipeline.sql_client() as client:
        table = client.make_qualified_table_name("messages")
        with client.with_staging_dataset():
            staged = client.make_qualified_table_name("messages")
        # what a page read twice leaves: a key staged twice, inserted twice
        client.execute_sql(f"INSERT INTO {staged} SELECT * FROM {table} ORDER BY id LIMIT 3")
        client.execute_sql(f"INSERT INTO {staged} SELECT * FROM {table} ORDER BY id LIMIT 3")
        client.execute_sql(f"INSERT INTO {table} SELECT * FROM {table} ORDER BY id LIMIT 3")
    assert kept.duplicates("messages") == 3
    assert remove_staged_duplicates(pipeline, ["messages"]) == {"messages": 3}
    assert kept.duplicates("messages") == 0


def test_an_in_place_merge_out_of_memory_runs_again_with_the_limit_lifted(monkeypatch):
    from customerio_source.runner import DUCKDB_GLOBAL_CONFIG_ENV, RunSettings, within_memory

    class OutOfMemoryException(Exception):
        pass

    monkeypatch.setenv(DUCKDB_GLOBAL_CONFIG_ENV, "{}")  # restored after the test
    settings = RunSettings(duckdb_limit_mb=64)
    attempts: list[int] = []

    def merge() -> str:
        attempts.append(settings.duckdb_limit_mb or 0)
        if len(attempts) == 1:
            raise RuntimeError("the merge failed") from OutOfMemoryException("could not allocate")
        return "merged"

    assert within_memory(settings, merge) == "merged"
    assert attempts == [64, 80] and settings.lifts == 1
    with pytest.raises(ValueError):
        within_memory(settings, lambda: (_ for _ in ()).throw(ValueError("not memory")))
