"""Dagster: a Customer.io workspace as dlt assets (dagster-dlt).

    CUSTOMERIO_APP_API_KEY=... dagster dev -f pipelines/dagster_definitions.py

Two multi-assets over one dataset, each with its own dlt pipeline (so their state never collides):

* ``customerio_events`` (daily partitions): `messages` and `activities`. A partition's time window is the
  source's interval: activities with `timestamp` in [start, end), and deliveries created in
  [start - lookback, end) so that opens and clicks after a delivery's day still land (rows merge on `id`).
  A backfill of many days runs as one dlt run over the whole range (single-run backfill policy).
* ``customerio_snapshot`` (unpartitioned): workspace lists and their children, people and metrics,
  re-read in full; rows that vanished from the workspace get `_cio_deleted_at`.

Both read one workspace, whose App API allows about 10 requests/s: give their concurrency pool one
slot (`dagster instance concurrency set customerio 1`) so they never run at the same time.

Environment (read at import): `CUSTOMERIO_DESTINATION` (duckdb | postgres | bigquery, default duckdb),
`CUSTOMERIO_DATASET` (default customerio), `CUSTOMERIO_PARTITIONS_START` (default 2025-01-01),
`CUSTOMERIO_BASE_URL`, `CUSTOMERIO_REGION`, `CUSTOMERIO_DELIVERIES_LOOKBACK_HOURS` (default 72); the key
comes from `CUSTOMERIO_APP_API_KEY` or dlt secrets, destination credentials from dlt's configuration
(`DESTINATION__POSTGRES__CREDENTIALS`, ...); DuckDB without credentials writes `CUSTOMERIO_DUCKDB_PATH`
(default `customerio_warehouse.duckdb`), one file for both pipelines.
"""

# no `from __future__ import annotations`: Dagster reads the `context` annotation at definition time
import os
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import dlt
from dagster import (
    AssetExecutionContext,
    AssetKey,
    ConfigurableResource,
    DailyPartitionsDefinition,
    Definitions,
    MaterializeResult,
    ScheduleDefinition,
    build_schedule_from_partitioned_job,
    define_asset_job,
)
from dagster_dlt import build_dlt_asset_specs, dlt_assets
from dlt.sources import DltSource

from customerio_source import builders, customerio_source, load
from customerio_source.catalogue import CATALOGUE, default_tables
from customerio_source.warehouse import apply_bigquery_hints

DESTINATION = os.environ.get("CUSTOMERIO_DESTINATION", "duckdb")
DATASET = os.environ.get("CUSTOMERIO_DATASET", "customerio")
POOL = "customerio"

EVENT_TABLES = [
    name for name in default_tables() if CATALOGUE[name].builder in (builders.deliveries, builders.activities)
]
SNAPSHOT_TABLES = [name for name in default_tables() if name not in EVENT_TABLES]

# the sources handed to @dlt_assets only name the assets (runs build their own): no key is needed yet
NAMING_KEY = "unused-naming-only"

daily = DailyPartitionsDefinition(start_date=os.environ.get("CUSTOMERIO_PARTITIONS_START", "2025-01-01"))


class CustomerIOSettings(ConfigurableResource):  # type: ignore[misc]
    """Where and how to read the workspace (None: the source's own configuration)."""

    api_key: str | None = None
    base_url: str | None = os.environ.get("CUSTOMERIO_BASE_URL") or None
    region: str | None = os.environ.get("CUSTOMERIO_REGION") or None
    rate_limit: float | None = None
    deliveries_lookback_hours: float = float(os.environ.get("CUSTOMERIO_DELIVERIES_LOOKBACK_HOURS", "72"))

    def source(
        self, tables: list[str], interval_start: datetime | None = None, interval_end: datetime | None = None
    ) -> DltSource:
        options: dict[str, Any] = {"tables": tables, "interval_start": interval_start, "interval_end": interval_end}
        for key in ("api_key", "base_url", "region", "rate_limit"):
            value = getattr(self, key)
            if value is not None:
                options[key] = value
        source = customerio_source(**options)
        if DESTINATION == "bigquery":
            apply_bigquery_hints(source)
        return source


def destination_for(name: str) -> Any:
    """The destination; DuckDB without configured credentials gets one absolute file for both pipelines.

    (dlt would otherwise put `<pipeline>.duckdb` per pipeline, and a file named like
    the dataset makes DuckDB's table references ambiguous.) Set `CUSTOMERIO_DUCKDB_PATH` to move it.
    """
    if name != "duckdb" or dlt.config.get("destination.duckdb.credentials") is not None:
        return name
    path = os.environ.get("CUSTOMERIO_DUCKDB_PATH", "customerio_warehouse.duckdb")
    return dlt.destinations.duckdb(credentials=os.path.abspath(path))


EVENTS_PIPELINE, SNAPSHOT_PIPELINE = "customerio_events", "customerio_snapshot"


def _pipeline(name: str) -> dlt.Pipeline:
    return dlt.pipeline(pipeline_name=name, destination=destination_for(DESTINATION), dataset_name=DATASET)


def asset_keys(source: DltSource, pipeline: dlt.Pipeline) -> dict[str, AssetKey]:
    """Each selected table's asset key, as dagster-dlt names it (`build_dlt_asset_specs`)."""
    specs = build_dlt_asset_specs(dlt_source=source, dlt_pipeline=pipeline)
    return {name: spec.key for name, spec in zip(source.selected_resources, specs, strict=True)}


def selected_tables(context: AssetExecutionContext, tables: list[str], pipeline_name: str) -> list[str]:
    """The tables whose assets this run materializes (all of them unless a subset was selected)."""
    if not context.is_subset:
        return tables
    keys = asset_keys(customerio_source(api_key=NAMING_KEY, tables=tables), _pipeline(pipeline_name))
    return [name for name, key in keys.items() if key in context.selected_asset_keys]


def load_tables(context: AssetExecutionContext, pipeline_name: str, source: DltSource) -> Iterator[MaterializeResult]:
    """The source through :func:`customerio_source.load`, the one load path of the CLI and Airflow too
    (recovery of interrupted packages, file format, delete and follower-delete marking, the memory retry and
    the run lock); then one materialization per table."""
    pipeline = _pipeline(pipeline_name)
    info = load(pipeline, source)
    trace = pipeline.last_trace
    rows = trace.last_normalize_info.row_counts if trace and trace.last_normalize_info else {}
    context.log.info(f"{pipeline_name}: loaded {info.loads_ids}")
    for name, key in asset_keys(source, pipeline).items():
        yield MaterializeResult(
            asset_key=key, metadata={"load_ids": list(info.loads_ids), "rows_this_run": int(rows.get(name, 0))}
        )


@dlt_assets(
    dlt_source=customerio_source(api_key=NAMING_KEY, tables=EVENT_TABLES),
    dlt_pipeline=_pipeline(EVENTS_PIPELINE),
    name="customerio_events",
    group_name="customerio",
    partitions_def=daily,
    pool=POOL,
)
def customerio_event_assets(context: AssetExecutionContext, customerio: CustomerIOSettings) -> Iterator[Any]:
    window = context.partition_time_window
    wanted = selected_tables(context, EVENT_TABLES, EVENTS_PIPELINE)
    groups = {
        "deliveries": [t for t in wanted if CATALOGUE[t].builder is builders.deliveries],
        "activities": [t for t in wanted if CATALOGUE[t].builder is builders.activities],
    }
    lookback = timedelta(hours=customerio.deliveries_lookback_hours)
    # two runs of one pipeline: deliveries read a wider window than the partition, activities exactly it
    for group, tables in groups.items():
        start = window.start - lookback if group == "deliveries" else window.start
        if tables:
            yield from load_tables(context, EVENTS_PIPELINE, customerio.source(tables, start, window.end))


@dlt_assets(
    dlt_source=customerio_source(api_key=NAMING_KEY, tables=SNAPSHOT_TABLES),
    dlt_pipeline=_pipeline(SNAPSHOT_PIPELINE),
    name="customerio_snapshot",
    group_name="customerio",
    pool=POOL,
)
def customerio_snapshot_assets(context: AssetExecutionContext, customerio: CustomerIOSettings) -> Iterator[Any]:
    tables = selected_tables(context, SNAPSHOT_TABLES, SNAPSHOT_PIPELINE)
    yield from load_tables(context, SNAPSHOT_PIPELINE, customerio.source(tables))


events_job = define_asset_job("customerio_events_job", selection=[customerio_event_assets], partitions_def=daily)
snapshot_job = define_asset_job("customerio_snapshot_job", selection=[customerio_snapshot_assets])

defs = Definitions(
    assets=[customerio_event_assets, customerio_snapshot_assets],
    jobs=[events_job, snapshot_job],
    schedules=[
        build_schedule_from_partitioned_job(events_job, hour_of_day=0, minute_of_hour=30),
        ScheduleDefinition(job=snapshot_job, cron_schedule="0 * * * *"),
    ],
    resources={"customerio": CustomerIOSettings()},
)
