"""Running a load: the pipeline run, then delete marking for tables read in full.

A table the source reads completely every run (lists, children of every parent, every person) is merged,
so each row it saw carries this run's `_dlt_load_id` (memberships merged in place into DuckDB keep their
unchanged rows as they were: what this run saw is then what it staged, :mod:`customerio_source.in_place`).
After a successful load, rows of such a table that this run did not see have vanished from the workspace:
they get `_cio_deleted_at` (once), and lose it again if they come back. A failed run marks nothing.
Airflow/Dagster/library users call :func:`load` the same way, so every entry point behaves alike.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import json
import logging
import math
import os
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import dlt
from dlt.sources import DltResource, DltSource

from . import builders
from .catalogue import CATALOGUE
from .errors import LoadFailed, PendingPackageFailed, PipelineBusy  # noqa: F401 - raised by pipeline_lock
from .failures import failed_job, failed_table, is_out_of_memory, root_message
from .in_place import (
    clear_staged,
    delete_repeated_rows,
    destination_tables,
    finish_in_place,
    in_place_tables,
    is_duckdb,
    key_columns,
    refresh_in_place,
    remove_staged_duplicates,
    unseen_condition,
)
from .lock import pipeline_lock
from .transform import DELETED_AT

if TYPE_CHECKING:  # annotations only: dlt documents no public home for the type
    from dlt.common.pipeline import LoadInfo

logger = logging.getLogger("customerio_source")

READS_ALL_ROWS_HINT = "x-customerio-reads-all-rows"
"""A table hint (dlt keeps `x-` hints as they are): this run's resource sees every live row of its table."""


def mark_reads_all_rows(resource: DltResource) -> DltResource:
    """Declare, through a table hint, that ``resource`` sees every live row of its table on this run."""
    resource.apply_hints(additional_table_hints={READS_ALL_ROWS_HINT: True})
    return resource


def complete_tables(source: DltSource) -> list[str]:
    """Names of the selected tables this run reads in full (candidates for delete marking)."""
    return [
        name
        for name, resource in source.selected_resources.items()
        if resource.compute_table_schema().get(READS_ALL_ROWS_HINT)
    ]


def load(pipeline: dlt.Pipeline, source: DltSource, drop_pending: bool = False, **run_kwargs: Any) -> LoadInfo:
    """Run the pipeline and mark rows that vanished from completely read tables.

    Packages an interrupted run (a crash, a kill, a failed load) left behind are loaded first, then this
    run extracts and loads as usual; with ``drop_pending=True`` they are dropped instead (their rows are
    read again: the state they carry was never committed). A second run of the same pipeline while this
    one runs raises :class:`PipelineBusy` at once (:func:`pipeline_lock`). A load job that runs DuckDB out
    of memory under the limit this module chose is loaded again with the limit raised by a quarter, step by step
    (:func:`load_step`). Into DuckDB, memberships and deliveries merge in place, in bounded memory
    (:mod:`customerio_source.in_place`). A load that still fails raises :class:`LoadFailed`
    (:class:`PendingPackageFailed` for a package left behind) with one line naming the table and the cause;
    its package stays pending.
    """
    with pipeline_lock(pipeline), run_defaults(pipeline) as settings:
        if drop_pending:
            drop_pending_packages(pipeline)
        finish_interrupted(pipeline, settings)
        within_memory(settings, lambda: finish_in_place(pipeline))
        tables = complete_tables(source)
        if "loader_file_format" not in run_kwargs:
            file_format = preferred_file_format(pipeline)
            if file_format:
                run_kwargs["loader_file_format"] = file_format
        existing = destination_tables(pipeline) if is_duckdb(pipeline) else set()  # only DuckDB's merges change
        appended = append_new_tables(pipeline, source, existing)
        in_place = in_place_tables(pipeline, source, existing)
        info = load_step(pipeline, settings, lambda: pipeline.run(source, **run_kwargs))
        if appended and info.loads_ids:
            remove_duplicate_keys(pipeline, appended)
        if in_place and info.loads_ids:
            within_memory(settings, lambda: refresh_in_place(pipeline, in_place))
            remove_staged_duplicates(pipeline, in_place)
        if tables and info.loads_ids:
            mark_deleted(pipeline, tables, info.loads_ids, in_place=in_place)
        if in_place and info.loads_ids:
            clear_staged(pipeline, in_place)
        followers = {
            name: spec.deletes_follow
            for name in source.selected_resources
            if (spec := CATALOGUE.get(name)) is not None and spec.deletes_follow in tables
        }
        if followers and info.loads_ids:
            mark_followers_deleted(pipeline, followers)
    return info


def load_step(pipeline: dlt.Pipeline, settings: RunSettings, step: Callable[[], LoadInfo | None]) -> LoadInfo:
    """Run ``step`` (``pipeline.run(...)``); a load job DuckDB could not fit in the limit this module chose
    is loaded again with the limit raised by a quarter (``RunSettings.lift_duckdb_limit``), until it fits or the limit
    reaches ``DUCKDB_LIFTED_SHARE`` of the machine's memory, saying so in one line per step.

    Any other failure of the load step, or one at the highest limit, raises :class:`LoadFailed` naming the
    table, the cause and the limit in force; failures of other steps propagate unchanged.
    """
    attempt: Callable[[], LoadInfo | None] = step
    while True:
        try:
            info = attempt()
            if info is not None:
                info.raise_on_failed_jobs()
            return info
        except Exception as exc:  # noqa: BLE001 - sorted below; anything else is re-raised as it is
            if not _failed_in_load(exc):
                raise
            failure = exc
        if not (is_out_of_memory(failure) and settings.can_lift_duckdb_limit):
            raise load_failed(pipeline, failure, settings) from failure
        before = settings.duckdb_limit_text
        lifted = settings.lift_duckdb_limit()
        logger.warning(
            "%s: DuckDB ran out of memory at the %s limit this connector set; loading it again with the limit "
            "lifted to %s",
            failed_table(failure) or "a table", before, lifted,
        )
        attempt = pipeline.load  # the extracted package is loaded again: its finished jobs are not re-run


def within_memory(settings: RunSettings, step: Callable[[], Any]) -> Any:
    """Run ``step``, a statement series of this module on the destination that DuckDB may not fit in the
    limit this module chose (an in-place merge): run again with the limit raised, as :func:`load_step` does
    for a load job. Each series is one transaction, so a failed attempt changed nothing."""
    while True:
        try:
            return step()
        except Exception as exc:  # noqa: BLE001 - only running out of memory is retried
            if not (is_out_of_memory(exc) and settings.can_lift_duckdb_limit):
                raise
            before = settings.duckdb_limit_text
            logger.warning(
                "an in-place merge ran DuckDB out of memory at the %s limit this connector set; running it again "
                "with the limit lifted to %s", before, settings.lift_duckdb_limit(),
            )


def _failed_in_load(exc: BaseException) -> bool:
    """Whether ``exc`` is a failure of dlt's load step (a job that failed or kept failing); an extract or
    normalize failure (a request that kept failing, a rejected key) is not."""
    step = getattr(exc, "step", None)
    return step == "load" if step is not None else failed_job(exc) is not None


def load_failed(pipeline: dlt.Pipeline, exc: BaseException, settings: RunSettings) -> LoadFailed:
    """One line for a load that failed: table, cause, and the DuckDB memory limit when memory was the cause."""
    table = failed_table(exc)
    cause = root_message(exc)
    if is_out_of_memory(exc):
        cause = f"DuckDB out of memory at the {settings.duckdb_limit_text} limit ({cause})"
    pending = pending_load_ids(pipeline)
    where = f"loading {table}" if table else "the load step"
    return LoadFailed(f"{where} failed: {cause}", load_ids=pending, table=table)


def drop_pending_packages(pipeline: dlt.Pipeline) -> list[str]:
    """Drop the packages an earlier run extracted but did not load; return their load ids."""
    pending = pending_load_ids(pipeline)
    if pending:
        pipeline.drop_pending_packages()
        logger.warning(
            "dropped %d pending load package(s) (%s); this run reads their rows again", len(pending), ", ".join(pending)
        )
    return pending


def pending_load_ids(pipeline: dlt.Pipeline) -> list[str]:
    """Load ids of the packages extracted or normalized but not loaded yet."""
    return [*pipeline.list_extracted_load_packages(), *pipeline.list_normalized_load_packages()]


APPEND_WHEN_NEW = (builders.deliveries, builders.customer_attributes)
"""Builders whose tables are appended, not merged, while the destination does not have them yet (a first
load of every delivery, every person's attributes). Nested rows (a person's devices) carry `_dlt_root_id`
when appended too (the source propagates the root key), which a later merge needs."""


def append_new_tables(pipeline: dlt.Pipeline, source: DltSource, existing: set[str] | None = None) -> list[str]:
    """Load big tables the DuckDB destination does not have yet with `append` instead of `merge`.

    A merge into a table that does not exist has nothing to merge with, yet costs a staging copy and a
    delete + deduplicating insert, most of the load time of a big first load. Appending is equivalent
    once rows with a repeated key (and their nested rows) are removed (:func:`remove_duplicate_keys`). Only
    DuckDB, and only when the destination answers that the table is absent; later runs merge as declared.
    """
    if pipeline.destination is None or pipeline.destination.destination_name != "duckdb":
        return []
    candidates = [
        name
        for name in source.selected_resources
        if (spec := CATALOGUE.get(name)) is not None and spec.builder in APPEND_WHEN_NEW
    ]
    if not candidates:
        return []
    if existing is None:
        existing = destination_tables(pipeline)
    new = [name for name in candidates if name not in existing]
    for name in new:
        source.resources[name].apply_hints(write_disposition="append")
    return new


def remove_duplicate_keys(pipeline: dlt.Pipeline, tables: list[str]) -> dict[str, int]:
    """Keep one row per primary key in tables that were appended: the one inserted last (DuckDB `rowid`; of
    two copies in one file, either, see ``DUCKDB_SETTINGS``), and the nested rows of the rows kept."""
    removed: dict[str, int] = {}
    schema = pipeline.default_schema
    with pipeline.sql_client() as client:
        for table in tables:
            qualified = client.make_qualified_table_name(table)
            count = delete_repeated_rows(client, qualified, key_columns(client, table))
            if count:
                remove_orphans(client, schema, table)
            removed[table] = count
    return removed


def remove_orphans(client: Any, schema: Any, table: str) -> None:
    """Delete the rows of ``table``'s nested tables whose root row is gone."""
    root_id = client.escape_column_name(schema.naming.normalize_identifier("_dlt_root_id"))
    row_id = client.escape_column_name(schema.naming.normalize_identifier("_dlt_id"))
    for nested in schema.tables:
        if schema.tables[nested].get("parent") and nested.startswith(f"{table}__"):
            client.execute_sql(
                f"DELETE FROM {client.make_qualified_table_name(nested)} WHERE {root_id} NOT IN "
                f"(SELECT {row_id} FROM {client.make_qualified_table_name(table)})"
            )


def mark_followers_deleted(pipeline: dlt.Pipeline, followers: dict[str, str]) -> None:
    """Mark rows deleted whose key is marked deleted in the table they follow (attributes -> customers)."""
    now = datetime.now(timezone.utc).replace(microsecond=0)
    schema = pipeline.default_schema
    with pipeline.sql_client() as client:
        column = client.escape_column_name(DELETED_AT)
        for table, leader in followers.items():
            if table not in schema.tables or leader not in schema.tables:
                continue
            key = [client.escape_column_name(k) for k in CATALOGUE[table].primary_key]
            tuple_key = f"({', '.join(key)})" if len(key) > 1 else key[0]
            client.execute_sql(
                f"UPDATE {client.make_qualified_table_name(table)} SET {column} = %s "
                f"WHERE {column} IS NULL AND {tuple_key} IN (SELECT {', '.join(key)} FROM "
                f"{client.make_qualified_table_name(leader)} WHERE {column} IS NOT NULL)",
                now,
            )


def finish_interrupted(pipeline: dlt.Pipeline, settings: RunSettings | None = None) -> LoadInfo | None:
    """Load the packages an interrupted run left behind (extracted or partly loaded); None if there are none.

    Left to itself, dlt's ``run(source)`` would load them and return *without extracting the source*, and
    deletes would then be marked against a package that may hold other tables. So they are finished here,
    deletes are not marked from them, and the caller's run follows. A load job that committed just before
    the process died is run again on resume, so its rows can be in the staging dataset twice, and dlt's
    merge of a table with nested tables copies both (same ``_dlt_id``): those repeated rows are removed.

    A package that fails again raises :class:`PendingPackageFailed` (table, cause, load ids): retry once
    the cause is fixed, or drop it (``pipeline.drop_pending_packages()``); its rows are read again by the
    next run, since the state it carries was never committed.
    """
    if not pipeline.has_pending_data:
        return None
    pending = pending_load_ids(pipeline)
    logger.warning("finishing %d load package(s) an interrupted run left behind: %s", len(pending), ", ".join(pending))
    try:
        info = load_step(pipeline, settings or RunSettings(), pipeline.run)
    except LoadFailed as exc:
        raise PendingPackageFailed(
            f"a load package an earlier run left behind ({', '.join(exc.load_ids or pending)}) fails again: {exc}",
            load_ids=exc.load_ids or pending,
            table=exc.table,
        ) from exc
    if info is not None:
        remove_repeated_rows(pipeline)
        if pipeline.destination is not None and pipeline.destination.destination_name == "duckdb":
            # a first load appends (append_new_tables): a resumed append job may have copied its rows twice
            appended = [
                name
                for name, table in pipeline.default_schema.tables.items()
                if table.get("write_disposition") == "append"
                and (spec := CATALOGUE.get(name)) is not None
                and spec.builder in APPEND_WHEN_NEW
            ]
            if appended:
                remove_duplicate_keys(pipeline, appended)
    return info


# destinations where a physical row id tells two identical rows apart
ROW_ID_COLUMNS = {"duckdb": "rowid", "motherduck": "rowid", "postgres": "ctid"}


def remove_repeated_rows(pipeline: dlt.Pipeline) -> dict[str, int]:
    """Delete all but one copy of rows whose ``_dlt_id`` repeats (a resumed load job's second copy).

    ``_dlt_id`` is unique per row, so a repeated one is always the same row twice. Returns rows removed per
    table; destinations without a row id (BigQuery runs a load job once per job id) are left alone.
    """
    removed: dict[str, int] = {}
    if pipeline.destination is None or not pipeline.default_schema_name:
        return removed
    row_id = ROW_ID_COLUMNS.get(pipeline.destination.destination_name)
    if row_id is None:
        return removed
    schema = pipeline.default_schema
    id_column = schema.naming.normalize_identifier("_dlt_id")
    with pipeline.sql_client() as client:
        dlt_id = client.escape_column_name(id_column)
        for table in schema.data_table_names():
            if id_column not in schema.get_table_columns(table):
                continue
            qualified = client.make_qualified_table_name(table)
            try:
                rows = client.execute_sql(f"SELECT COUNT(*) - COUNT(DISTINCT {dlt_id}) FROM {qualified}")
            except Exception:  # noqa: BLE001 - a table in the schema that was never created
                continue
            count = int(rows[0][0]) if rows else 0
            if count:
                client.execute_sql(
                    f"DELETE FROM {qualified} WHERE {row_id} IN (SELECT {row_id} FROM (SELECT {row_id}, "
                    f"ROW_NUMBER() OVER (PARTITION BY {dlt_id}) AS _cio_copy FROM {qualified}) AS copies "
                    "WHERE _cio_copy > 1)"
                )
                logger.warning("%s: removed %d rows a resumed load job had copied twice", table, count)
                removed[table] = count
    return removed


FAST_FORMATS = ("parquet",)
DUCKDB_MEMORY_MB_PER_JOB = 64
"""The least memory a DuckDB load job gets; per job, a machine gives it ``1 / DUCKDB_MEMORY_SHARE_PER_JOB`` of
its memory when that is more (64 MB on a 24 GB machine, 256 MB on a 96 GB one)."""
DUCKDB_MEMORY_SHARE_PER_JOB = 384
DUCKDB_MB_PER_THREAD = 64
"""DuckDB threads per load job: one per this many MB of its cap, at most one per core."""
DUCKDB_MEMORY_MB_PER_JOB_MAX = 1024
DUCKDB_SETTINGS = {"preserve_insertion_order": False}
"""DuckDB takes 80% of RAM by default and a large merge uses it; capped (``duckdb_settings``), it spills what
it can to ``temp_directory`` (a folder in the pipeline's working folder) and keeps the load step's peak
memory low. Some operators of a merge (the delete's semi join, the deduplicating window) need memory that
grows with the table, so no fixed cap fits every workspace: a job that runs out of memory under this cap is
loaded again with the cap raised by a quarter until it fits (:func:`load_step`, ``DUCKDB_LIFT_FACTOR`` up to
``DUCKDB_LIFTED_SHARE``): DuckDB takes about as much as its limit allows, so the smallest limit that fits
keeps the process smallest (a merge that deletes 5M rows needs ~100 MB: DuckDB keeps a deleted row's
transaction entry in memory until the commit). The cap is per load job
running at once: load jobs share one DuckDB instance. Without insertion order DuckDB loads parquet in
parallel and with less memory. Nothing here reads rows back in insertion order within one statement: of two
rows with one key in the same file, either may stay (dlt's merge makes the same choice)."""
DUCKDB_LIFTED_SHARE = 0.5
"""After out-of-memory failures, DuckDB's limit is lifted step by step up to this share of the machine's (or
the container's) memory."""
DUCKDB_LIFT_FACTOR = 1.25
"""Each lift after an out-of-memory failure multiplies the limit by this (at least 1 MB more): small steps, since
the process grows by about the limit a job fits in (a job that needs 65 MB gets 80, not 128; reaching 256 MB
from 64 takes 7 lifts, a few seconds each)."""
DUCKDB_SPILL_FOLDER = "duckdb_spill"
DUCKDB_GLOBAL_CONFIG_ENV = "DESTINATION__DUCKDB__CREDENTIALS__GLOBAL_CONFIG"
DUCKDB_LOAD_WORKERS = 1
"""Load jobs one at a time into DuckDB: it is one file with one writer and parallelizes each statement
itself, and concurrent merges would share (and overrun) the memory limit above."""
LOAD_WORKERS_ENV = "LOAD__WORKERS"
MALLOC_ARENAS = 2
M_ARENA_MAX = -8  # glibc mallopt parameter
MMAP_THRESHOLD_BYTES = 128 * 1024
M_MMAP_THRESHOLD = -3  # glibc mallopt parameter
WRITER_BUFFER_ROWS = 1000
WRITER_BUFFER_ENV = "DATA_WRITER__BUFFER_MAX_ITEMS"
ARROW_PROMOTE_ENV = "DATA_WRITER__ARROW_CONCAT_PROMOTE_OPTIONS"
"""Arrow pages may add columns mid-run (unknown API fields): dlt concatenates buffered Arrow tables with
``promote_options="none"`` unless told otherwise, which fails the writer; "default" is lossless (safe
differences merge, incompatible ones go to a separate file)."""
ARROW_LOAD_ID_ENV = "NORMALIZE__PARQUET_NORMALIZER__ADD_DLT_LOAD_ID"
"""Arrow tables (deliveries, segment members) get `_dlt_load_id` like every other table: delete marking
(:func:`mark_deleted`) tells the rows a run wrote by it."""


@functools.cache  # once per process
def bound_process_memory() -> None:
    """Keep memory that was freed from counting as used, in a process of many threads: for a process's
    own ``main`` (the CLI calls it; a library call never does, it would change its host's allocators).

    * glibc gives threads up to 8 malloc arenas per core and keeps freed memory in each: capped at two
      arenas for the threads started from now on (unless ``MALLOC_ARENA_MAX`` is set);
    * glibc raises its mmap threshold each time a large block is freed, so later large blocks (request
      bodies, Arrow buffers) come from the arenas and stay there: fixed at 128 KB, blocks above it are
      mapped and given back when freed (unless ``MALLOC_MMAP_THRESHOLD_`` is set);
    * Arrow's default pool (mimalloc) keeps freed pages per thread: Arrow allocates from the system
      allocator instead (unless ``ARROW_DEFAULT_MEMORY_POOL`` chooses a pool).
    """
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        if not os.environ.get("MALLOC_ARENA_MAX"):
            libc.mallopt(M_ARENA_MAX, MALLOC_ARENAS)
        if not os.environ.get("MALLOC_MMAP_THRESHOLD_"):
            libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)
    except (OSError, AttributeError):  # not glibc (macOS, musl): nothing to cap
        pass
    if not os.environ.get("ARROW_DEFAULT_MEMORY_POOL"):
        import pyarrow as pa

        pa.set_memory_pool(pa.system_memory_pool())


CGROUP_MEMORY_FILES = ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes")


def machine_memory_mb() -> int:
    """The memory this process can have: physical memory, or a container's (cgroup) limit when smaller."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # not POSIX: assume a small machine
        total = 4 * 1024**3
    for path in CGROUP_MEMORY_FILES:
        try:
            with open(path) as handle:
                value = handle.read().strip()
        except OSError:
            continue
        if value.isdigit():
            total = min(total, int(value))
    return max(1, total // 2**20)


def duckdb_job_memory_mb() -> int:
    """The memory cap of one DuckDB load job: sized from the machine, between DUCKDB_MEMORY_MB_PER_JOB and
    DUCKDB_MEMORY_MB_PER_JOB_MAX."""
    share = machine_memory_mb() // DUCKDB_MEMORY_SHARE_PER_JOB
    return max(DUCKDB_MEMORY_MB_PER_JOB, min(DUCKDB_MEMORY_MB_PER_JOB_MAX, share))


def duckdb_settings(load_workers: int, spill_dir: str | None = None, memory_mb: int | None = None) -> dict[str, Any]:
    """DuckDB's settings for a load with ``load_workers`` jobs at once (see ``DUCKDB_SETTINGS``)."""
    limit = memory_mb or duckdb_job_memory_mb() * max(1, load_workers)
    settings: dict[str, Any] = {"memory_limit": f"{limit}MB", **DUCKDB_SETTINGS}
    # each DuckDB thread of a merge holds memory of its own: under a small cap, fewer threads fit (DuckDB
    # 2.0.1 runs out of 64 MB merging 500k rows with 2 threads; with 1 it fits)
    settings["threads"] = max(1, min(os.cpu_count() or 1, limit // (DUCKDB_MB_PER_THREAD * max(1, load_workers))))
    if spill_dir:
        settings["temp_directory"] = spill_dir
    return settings


def memory_text(megabytes: int) -> str:
    """``64 MB``, ``12.0 GB``."""
    return f"{megabytes / 1024:.1f} GB" if megabytes >= 1024 else f"{megabytes} MB"


@dataclass
class RunSettings:
    """What :func:`run_defaults` chose for one run (the DuckDB memory limit, when this module set it)."""

    duckdb_limit_mb: int | None = None
    """The limit this module set; None where the user configured DuckDB, or the destination is another."""
    duckdb_workers: int = DUCKDB_LOAD_WORKERS
    spill_dir: str | None = None
    lifts: int = 0
    """How many times this run lifted the limit."""
    user_limit: str | None = None
    set_env: list[str] = field(default_factory=list)

    @property
    def can_lift_duckdb_limit(self) -> bool:
        """Whether an out-of-memory job may be loaded again with a higher limit (only ours, below the ceiling)."""
        return self.duckdb_limit_mb is not None and self.duckdb_limit_mb < duckdb_lifted_ceiling_mb()

    @property
    def duckdb_limit_text(self) -> str:
        if self.duckdb_limit_mb is not None:
            return memory_text(self.duckdb_limit_mb)
        return f"{self.user_limit} (configured)" if self.user_limit else "configured"

    def lift_duckdb_limit(self) -> str:
        """Multiply this run's DuckDB limit by ``DUCKDB_LIFT_FACTOR`` (at least 1 MB more), at most to
        :func:`duckdb_lifted_ceiling_mb`; return it as text.

        dlt resolves the destination's configuration for every load step, so the next ``pipeline.load()``
        opens DuckDB with the new limit.
        """
        current = self.duckdb_limit_mb or DUCKDB_MEMORY_MB_PER_JOB
        step = max(current + 1, math.ceil(current * DUCKDB_LIFT_FACTOR))
        lifted = max(current, min(duckdb_lifted_ceiling_mb(), step))
        os.environ[DUCKDB_GLOBAL_CONFIG_ENV] = json.dumps(duckdb_settings(self.duckdb_workers, self.spill_dir, lifted))
        self.duckdb_limit_mb = lifted
        self.lifts += 1
        return memory_text(lifted)


def duckdb_lifted_ceiling_mb() -> int:
    """The highest limit a lift reaches: ``DUCKDB_LIFTED_SHARE`` of the machine's memory."""
    return int(machine_memory_mb() * DUCKDB_LIFTED_SHARE)


def _configured_duckdb_limit() -> str | None:
    """The ``memory_limit`` of a DuckDB ``global_config`` the user configured, if any."""
    raw = os.environ.get(DUCKDB_GLOBAL_CONFIG_ENV) or dlt.config.get("destination.duckdb.credentials.global_config")
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except ValueError:
            return None
    if isinstance(raw, dict) and raw.get("memory_limit"):
        return str(raw["memory_limit"])
    return None


@contextmanager
def run_defaults(pipeline: dlt.Pipeline) -> Iterator[RunSettings]:
    """This module's defaults for the dlt settings the user did not configure (env or config), for one run,
    and yields what was chosen. Process-wide tuning (:func:`bound_process_memory`) is the caller's: the CLI
    does it in its own process.

    * dlt flushes its extract and normalize buffers every 1000 rows, not 5000: each table being written
      keeps a buffer, and a person's attributes row is kilobytes of JSON;
    * Arrow pages may add columns mid-run (``ARROW_PROMOTE_ENV``);
    * DuckDB: one load job at a time (``DUCKDB_LOAD_WORKERS``) and :func:`duckdb_settings` for the number
      of load jobs configured, spilling into the pipeline's working folder.

    One setting is required, not a default, and holds for the run whatever is configured: Arrow tables get
    `_dlt_load_id` (``ARROW_LOAD_ID_ENV``).

    All go through the environment provider (dlt refuses a credentials key written into its config
    provider on the next pipeline of the same process) and are removed (or restored) when the run ends,
    so the next pipeline of an Airflow or Dagster worker starts from the user's configuration.
    """
    settings = RunSettings()
    previous_load_id = os.environ.get(ARROW_LOAD_ID_ENV)
    os.environ[ARROW_LOAD_ID_ENV] = "true"

    def default(env_name: str, config_key: str, value: str) -> bool:
        if os.environ.get(env_name) or dlt.config.get(config_key):
            return False
        os.environ[env_name] = value
        settings.set_env.append(env_name)
        return True

    default(WRITER_BUFFER_ENV, "data_writer.buffer_max_items", str(WRITER_BUFFER_ROWS))
    default(ARROW_PROMOTE_ENV, "data_writer.arrow_concat_promote_options", "default")
    if pipeline.destination is not None and pipeline.destination.destination_name == "duckdb":
        default(LOAD_WORKERS_ENV, "load.workers", str(DUCKDB_LOAD_WORKERS))
        workers = int(os.environ.get(LOAD_WORKERS_ENV) or dlt.config.get("load.workers") or DUCKDB_LOAD_WORKERS)
        spill_dir = os.path.join(pipeline.working_dir, DUCKDB_SPILL_FOLDER)
        settings.user_limit = _configured_duckdb_limit()
        if default(DUCKDB_GLOBAL_CONFIG_ENV, "destination.duckdb.credentials.global_config",
                   json.dumps(duckdb_settings(workers, spill_dir))):
            settings.duckdb_limit_mb = duckdb_job_memory_mb() * max(1, workers)
            settings.duckdb_workers = workers
            settings.spill_dir = spill_dir
    try:
        yield settings
    finally:
        for env_name in settings.set_env:
            os.environ.pop(env_name, None)
        if previous_load_id is None:
            os.environ.pop(ARROW_LOAD_ID_ENV, None)
        else:
            os.environ[ARROW_LOAD_ID_ENV] = previous_load_id


def preferred_file_format(pipeline: dlt.Pipeline) -> str | None:
    """Parquet where the destination takes it (DuckDB, BigQuery): several times faster than SQL inserts."""
    if pipeline.destination is None:
        return None
    supported = pipeline.destination.capabilities().supported_loader_file_formats
    return next((fmt for fmt in FAST_FORMATS if fmt in supported), None)


def mark_deleted(
    pipeline: dlt.Pipeline, tables: Iterable[str], load_ids: list[str], in_place: Iterable[str] = ()
) -> dict[str, int]:
    """Set `_cio_deleted_at` on live rows of ``tables`` that none of ``load_ids`` wrote; clear nothing else.

    Tables of ``in_place`` were merged leaving unchanged rows as they were (:mod:`customerio_source.in_place`):
    their live rows are marked when this run did not stage their key. Returns the number of rows newly
    marked per table.
    """
    merged_in_place = set(in_place)
    marked: dict[str, int] = {}
    now = datetime.now(timezone.utc).replace(microsecond=0)
    schema = pipeline.default_schema
    with pipeline.sql_client() as client:
        ids = ", ".join(f"'{load_id}'" for load_id in load_ids if load_id.replace(".", "").isdigit())
        if not ids:
            return marked
        for table in tables:
            if table not in schema.tables or DELETED_AT not in schema.get_table_columns(table):
                continue
            if "_dlt_load_id" not in schema.get_table_columns(table):
                # nothing tells this run's rows (an Arrow table without the load-id hint); rows whose load id
                # is NULL (Arrow rows loaded outside `load`) are never marked either: NULL NOT IN (...) is NULL
                logger.warning("%s: no _dlt_load_id column, so vanished rows cannot be told; not marked", table)
                continue
            qualified = client.make_qualified_table_name(table)
            column = client.escape_column_name(DELETED_AT)
            load_column = client.escape_column_name("_dlt_load_id")
            unseen = unseen_condition(client, table, load_ids) if table in merged_in_place else None
            condition = f"{column} IS NULL AND " + (unseen or f"{load_column} NOT IN ({ids})")
            count_rows = client.execute_sql(f"SELECT COUNT(*) FROM {qualified} WHERE {condition}")
            count = int(count_rows[0][0]) if count_rows else 0
            if count:
                client.execute_sql(f"UPDATE {qualified} SET {column} = %s WHERE {condition}", now)
                logger.info("%s: %d rows vanished from the workspace; marked %s", table, count, DELETED_AT)
            marked[table] = count
    return marked
