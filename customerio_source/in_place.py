"""Merging big tables into DuckDB in memory that does not grow with them.

dlt's default merge (`delete-insert`) deletes every destination row whose key arrives (a semi join whose
hash table holds every staged key), then inserts the staged rows deduplicated by key (a window over whole
staged rows); `upsert` joins every staged row to its destination row in one ``MERGE``. In DuckDB all of
these hold memory that grows with the rows merged, so a workspace's memberships (millions of rows re-read
every run) or an incremental run's deliveries (the lookback's hundreds of thousands of wide rows, most
unchanged) need more than the memory cap the connector gives DuckDB. Tables whose catalogue ``merge`` is
``in-place`` (memberships, deliveries) merge in three steps that each fit the cap:

1. dlt inserts the staged rows whose key is new (its `insert-only` strategy: a ``MERGE`` with no update);
2. :func:`refresh_in_place` finds the destination rows whose staged row differs (a join read, which
   DuckDB spills) and replaces just those, deleting them by row id, in one transaction, after a
   checkpoint (what the load step left in memory would otherwise count against the cap);
3. the staging copy is emptied once the run has used it (:func:`clear_staged`).

An unchanged row keeps the `_dlt_load_id` of the load that last changed it, so delete marking compares a
table's rows with the rows this run staged (:func:`unseen_condition`), not with the load id. ``MERGE``
inserts every copy of a new key staged twice; one row per key is kept (:func:`remove_staged_duplicates`).
A run that stopped between dlt's load and step 2 left its rows in the staging dataset: the next run
finishes them first (:func:`finish_in_place`). A table's first load keeps dlt's `delete-insert` (into an
empty table it fits the cap, and leaves nothing to compare).

Only DuckDB: there the merge runs inside this process and its memory is the connector's; Postgres and
BigQuery keep dlt's default.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

import dlt
from dlt.sources import DltSource

from .catalogue import CATALOGUE
from .transform import DELETED_AT

logger = logging.getLogger("customerio_source")

INSERT_NEW_KEYS = {"disposition": "merge", "strategy": "insert-only"}
IN_PLACE = "in-place"
TRUNCATE_STAGING_KEY = "load.truncate_staging_dataset"
LOAD_ID = "_dlt_load_id"


def is_duckdb(pipeline: dlt.Pipeline) -> bool:
    return pipeline.destination is not None and pipeline.destination.destination_name == "duckdb"


def destination_tables(pipeline: dlt.Pipeline) -> set[str]:
    """Names of the tables the destination dataset has (empty: no dataset yet)."""
    try:
        with pipeline.sql_client() as client:
            rows = client.execute_sql(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = %s", client.dataset_name
            )
    except Exception:  # noqa: BLE001 - no dataset yet: every table is new
        return set()
    return {row[0] for row in rows or []}


def in_place_tables(pipeline: dlt.Pipeline, source: DltSource, existing: set[str]) -> list[str]:
    """Give the selected ``in-place`` tables that the destination has (``existing``) dlt's `insert-only`
    strategy for this run, into DuckDB; return their names. A table's first load keeps its declared
    disposition (a merge into nothing: nothing to leave alone). Nothing changes when dlt is told to empty
    the staging dataset after each load: the steps after the load read this run's rows from there."""
    if not is_duckdb(pipeline) or dlt.config.get(TRUNCATE_STAGING_KEY):
        return []
    names = [
        name
        for name in source.selected_resources
        if name in existing and (spec := CATALOGUE.get(name)) is not None and spec.merge == IN_PLACE
    ]
    for name in names:
        source.resources[name].apply_hints(write_disposition=dict(INSERT_NEW_KEYS))
    return names


def staged_table(client: Any, table: str) -> str:
    """The qualified name of ``table`` in the pipeline's staging dataset."""
    with client.with_staging_dataset():
        return client.make_qualified_table_name(table)


def staged_load_ids(client: Any, table: str) -> set[str]:
    """The load ids of the rows the staging dataset holds for ``table`` (empty: none, or no such table)."""
    try:
        load_id = client.escape_column_name(LOAD_ID)
        rows = client.execute_sql(f"SELECT DISTINCT {load_id} FROM {staged_table(client, table)}")
    except Exception:  # noqa: BLE001 - no staging table: never merged
        return set()
    return {str(row[0]) for row in rows or [] if row[0] is not None}


def has_staged_rows(client: Any, table: str) -> bool:
    """Whether the staging dataset holds rows of ``table`` (one row read, not the whole copy)."""
    try:
        return bool(client.execute_sql(f"SELECT 1 FROM {staged_table(client, table)} LIMIT 1"))
    except Exception:  # noqa: BLE001 - no staging table: never merged
        return False


def key_columns(client: Any, table: str) -> str:
    """The escaped primary key columns of ``table``, comma-separated."""
    return ", ".join(client.escape_column_name(key) for key in CATALOGUE[table].primary_key)


def key_match(client: Any, table: str, left: str, right: str) -> str:
    keys = [client.escape_column_name(key) for key in CATALOGUE[table].primary_key]
    return " AND ".join(f"{left}.{key} = {right}.{key}" for key in keys)


def refresh_in_place(pipeline: dlt.Pipeline, tables: Iterable[str]) -> dict[str, int]:
    """Replace the destination rows of ``tables`` whose staged row differs (or that are marked deleted and
    were staged again) with the staged row; returns rows replaced per table."""
    replaced: dict[str, int] = {}
    schema = pipeline.default_schema
    with pipeline.sql_client() as client:
        for table in tables:
            if table not in schema.tables or not has_staged_rows(client, table):
                continue
            columns = list(schema.get_table_columns(table))
            keys = set(CATALOGUE[table].primary_key)
            compared = [c for c in columns if c not in keys and c not in (LOAD_ID, DELETED_AT)]
            differs = [f"s.{c} IS DISTINCT FROM d.{c}" for c in map(client.escape_column_name, compared)]
            if DELETED_AT in columns:
                differs.append(f"d.{client.escape_column_name(DELETED_AT)} IS NOT NULL")
            if not differs:
                continue
            qualified = client.make_qualified_table_name(table)
            staged = staged_table(client, table)
            names = ", ".join(map(client.escape_column_name, columns))
            key_list = key_columns(client, table)
            temp = client.escape_column_name(f"_cio_changed_{table}")
            logger.debug("%s: comparing the staged rows with the destination's", table)
            checkpoint(client)
            with client.begin_transaction():
                # row ids hold within one transaction: a checkpoint between statements may renumber rows
                client.execute_sql(
                    f"CREATE OR REPLACE TEMP TABLE {temp} AS SELECT d.rowid AS _cio_row, "
                    + ", ".join(f"s.{client.escape_column_name(k)}" for k in CATALOGUE[table].primary_key)
                    + f" FROM {staged} AS s JOIN {qualified} AS d ON {key_match(client, table, 's', 'd')}"
                    f" WHERE {' OR '.join(differs)}"
                )
                count = int(client.execute_sql(f"SELECT COUNT(DISTINCT _cio_row) FROM {temp}")[0][0])
                if count:
                    client.execute_sql(f"DELETE FROM {qualified} WHERE rowid IN (SELECT _cio_row FROM {temp})")
                    client.execute_sql(
                        f"INSERT INTO {qualified} ({names}) SELECT {names} FROM {staged} "
                        f"WHERE ({key_list}) IN (SELECT {key_list} FROM {temp})"
                    )
                client.execute_sql(f"DROP TABLE {temp}")
            logger.debug("%s: %d rows changed, replaced in place", table, count)
            replaced[table] = count
    return replaced


def checkpoint(client: Any) -> None:
    """Write DuckDB's log into the file (``CHECKPOINT``), so what earlier statements left in memory does not
    count against the cap of the next: after an incremental load step, the deliveries' comparison ran out
    of 64 MB without one and fits with one (``benchmarks/results/2026-12-02-xlarge-merges.md``). Skipped,
    with a debug line, when DuckDB refuses (another transaction open)."""
    try:
        client.execute_sql("CHECKPOINT")
    except Exception as exc:  # noqa: BLE001 - a checkpoint only saves memory; the merge is correct without
        logger.debug("no checkpoint before an in-place merge: %s", type(exc).__name__)


def unseen_condition(client: Any, table: str, load_ids: list[str]) -> str | None:
    """A SQL condition on ``table``'s destination rows: the row's key is not among the rows this run
    staged. None when the staging dataset does not hold this run's rows of the table: the run loaded none,
    so none was touched, and "not written by this run" (the `_dlt_load_id`) asks the same."""
    staged = staged_load_ids(client, table)
    if not staged or not staged <= set(load_ids):
        return None
    qualified = client.make_qualified_table_name(table)
    match = key_match(client, table, "s", qualified)
    return f"NOT EXISTS (SELECT 1 FROM {staged_table(client, table)} AS s WHERE {match})"


def delete_repeated_rows(client: Any, qualified: str, keys: str, where: str = "TRUE") -> int:
    """Delete all but one row per ``keys`` among the rows of ``qualified`` that match ``where``: the one
    inserted last (DuckDB `rowid`; of two copies in one file, either, as dlt's deduplication). Returns the
    rows deleted; row ids hold within one statement (a checkpoint between statements may renumber them)."""
    extra = (
        f"SELECT rowid FROM (SELECT rowid, ROW_NUMBER() OVER (PARTITION BY {keys} ORDER BY rowid DESC) AS n "
        f"FROM {qualified} WHERE {where}) WHERE n > 1"
    )
    count = int(client.execute_sql(f"SELECT COUNT(*) FROM ({extra})")[0][0])
    if count:
        client.execute_sql(f"DELETE FROM {qualified} WHERE rowid IN ({extra})")
    return count


def remove_staged_duplicates(pipeline: dlt.Pipeline, tables: Iterable[str]) -> dict[str, int]:
    """Keep one destination row per key staged more than once (``MERGE`` inserts every copy of a new key;
    a refresh every copy of a changed one): the one inserted last (DuckDB `rowid`; of two copies in one
    file, either, as dlt's deduplication). Returns rows removed per table."""
    removed: dict[str, int] = {}
    with pipeline.sql_client() as client:
        for table in tables:
            if not has_staged_rows(client, table):
                continue
            keys = key_columns(client, table)
            repeated = f"SELECT {keys} FROM {staged_table(client, table)} GROUP BY {keys} HAVING COUNT(*) > 1"
            if not int(client.execute_sql(f"SELECT COUNT(*) FROM ({repeated})")[0][0]):
                continue
            qualified = client.make_qualified_table_name(table)
            with client.begin_transaction():
                count = delete_repeated_rows(client, qualified, keys, f"({keys}) IN ({repeated})")
            if count:
                logger.info("%s: %d rows of keys read twice removed", table, count)
            removed[table] = count
    return removed


def clear_staged(pipeline: dlt.Pipeline, tables: Iterable[str]) -> None:
    """Empty the staging copies of ``tables``: their rows are merged (dlt refills them on its next load), and
    the next run's start finds nothing to finish by reading one row."""
    with pipeline.sql_client() as client:
        for table in tables:
            if has_staged_rows(client, table):
                client.execute_sql(f"DELETE FROM {staged_table(client, table)}")


def finish_in_place(pipeline: dlt.Pipeline) -> list[str]:
    """Finish in-place merges a stopped run left in the staging dataset (steps 2 and 3, and duplicates);
    return the tables finished. Delete marking waits for the next complete read."""
    if not is_duckdb(pipeline) or not pipeline.default_schema_name:
        return []
    schema = pipeline.default_schema
    candidates = [
        name
        for name, table in schema.tables.items()
        if (spec := CATALOGUE.get(name)) is not None
        and spec.merge == IN_PLACE
        and table.get("x-merge-strategy") == INSERT_NEW_KEYS["strategy"]
    ]
    if not candidates:
        return []
    with pipeline.sql_client() as client:
        left = [name for name in candidates if has_staged_rows(client, name)]
    if left:
        refresh_in_place(pipeline, left)
        remove_staged_duplicates(pipeline, left)
        clear_staged(pipeline, left)
        logger.warning("finished the in-place merge an interrupted run left for %s", ", ".join(left))
    return left
