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
    ConfigurableResource,
    DailyPartitionsDefinition,
    Definitions,
    ScheduleDefinition,
    build_schedule_from_partitioned_job,
    define_asset_job,
)
from dagster_dlt import DagsterDltResource, DagsterDltTranslator, dlt_assets
from dagster_dlt.constants import META_KEY_PIPELINE
from dagster_dlt.translator import DltResourceTranslatorData
from dlt.extract.source import DltSource
from dlt.pipeline.pipeline import Pipeline

from customerio_source import customerio_source
from customerio_source.catalogue import CATALOGUE, default_tables
from customerio_source.runner import complete_tables, mark_deleted, run_defaults
from customerio_source.warehouse import apply_bigquery_hints

DESTINATION = os.environ.get("CUSTOMERIO_DESTINATION", "duckdb")
DATASET = os.environ.get("CUSTOMERIO_DATASET", "customerio")
POOL = "customerio"

EVENT_TABLES = [name for name in default_tables() if CATALOGUE[name].builder in ("deliveries", "activities")]
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


def _pipeline(name: str) -> Pipeline:
    return dlt.pipeline(pipeline_name=name, destination=destination_for(DESTINATION), dataset_name=DATASET)


def _asset_pipeline(context: AssetExecutionContext) -> Pipeline:
    return next(iter(context.assets_def.metadata_by_key.values()))[META_KEY_PIPELINE]


def selected_tables(context: AssetExecutionContext, tables: list[str]) -> list[str]:
    """The tables whose assets this run materializes (all of them unless a subset was selected)."""
    if not context.is_subset:
        return tables
    pipeline = _asset_pipeline(context)
    source = customerio_source(api_key=NAMING_KEY, tables=tables)
    translator = DagsterDltTranslator()
    return [
        name
        for name, resource in source.resources.items()
        if translator.get_asset_spec(DltResourceTranslatorData(resource=resource, pipeline=pipeline)).key
        in context.selected_asset_keys
    ]


def run_and_mark(context: AssetExecutionContext, dlt: DagsterDltResource, source: DltSource) -> Iterator[Any]:
    """`dlt.run` (dagster-dlt runs `pipeline.run`) with the run settings of `customerio_source.load`, then
    delete marking as there."""
    pipeline = _asset_pipeline(context)
    tables = complete_tables(source)
    with run_defaults(pipeline):
        yield from dlt.run(context=context, dlt_source=source)
    trace = pipeline.last_trace
    info = trace.last_load_info if trace else None
    if tables and info is not None and info.loads_ids:
        marked = mark_deleted(pipeline, tables, info.loads_ids)
        context.log.info(f"rows newly marked deleted: {marked}")


@dlt_assets(
    dlt_source=customerio_source(api_key=NAMING_KEY, tables=EVENT_TABLES),
    dlt_pipeline=_pipeline("customerio_events"),
    name="customerio_events",
    group_name="customerio",
    partitions_def=daily,
    pool=POOL,
)
def customerio_event_assets(
    context: AssetExecutionContext, dlt: DagsterDltResource, customerio: CustomerIOSettings
) -> Iterator[Any]:
    window = context.partition_time_window
    wanted = selected_tables(context, EVENT_TABLES)
    groups = {
        "deliveries": [t for t in wanted if CATALOGUE[t].builder == "deliveries"],
        "activities": [t for t in wanted if CATALOGUE[t].builder == "activities"],
    }
    lookback = timedelta(hours=customerio.deliveries_lookback_hours)
    # two runs of one pipeline: deliveries read a wider window than the partition, activities exactly it
    for group, tables in groups.items():
        start = window.start - lookback if group == "deliveries" else window.start
        if tables:
            yield from run_and_mark(context, dlt, customerio.source(tables, start, window.end))


@dlt_assets(
    dlt_source=customerio_source(api_key=NAMING_KEY, tables=SNAPSHOT_TABLES),
    dlt_pipeline=_pipeline("customerio_snapshot"),
    name="customerio_snapshot",
    group_name="customerio",
    pool=POOL,
)
def customerio_snapshot_assets(
    context: AssetExecutionContext, dlt: DagsterDltResource, customerio: CustomerIOSettings
) -> Iterator[Any]:
    yield from run_and_mark(context, dlt, customerio.source(selected_tables(context, SNAPSHOT_TABLES)))


events_job = define_asset_job("customerio_events_job", selection=[customerio_event_assets], partitions_def=daily)
snapshot_job = define_asset_job("customerio_snapshot_job", selection=[customerio_snapshot_assets])

defs = Definitions(
    assets=[customerio_event_assets, customerio_snapshot_assets],
    jobs=[events_job, snapshot_job],
    schedules=[
        build_schedule_from_partitioned_job(events_job, hour_of_day=0, minute_of_hour=30),
        ScheduleDefinition(job=snapshot_job, cron_schedule="0 * * * *"),
    ],
    resources={"dlt": DagsterDltResource(), "customerio": CustomerIOSettings()},
)
