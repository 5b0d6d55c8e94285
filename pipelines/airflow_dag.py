"""Airflow (2.x): load a Customer.io workspace every hour, one task per group of tables.

Copy this file (and `.dlt/config.toml`, if you use one) into the DAGs folder; install this package and
`apache-airflow` 2.x in the workers' environment. Settings, read when a task runs (Airflow Variable
first, then the environment; Variables can also come from `AIRFLOW_VAR_<NAME>`):

| Airflow Variable          | environment                  | default                                  |
|---------------------------|------------------------------|------------------------------------------|
| customerio_app_api_key    | CUSTOMERIO_APP_API_KEY       | dlt secrets (`sources.customerio.api_key`) |
| customerio_base_url       | CUSTOMERIO_BASE_URL          | the region's App API                      |
| customerio_region         | CUSTOMERIO_REGION            | us                                        |

One DAG per workspace: `build_dag("customerio_acme", pipeline_name="customerio_acme",
dataset_name="customerio_acme", variable_prefix="customerio_acme")` reads `customerio_acme_app_api_key`
(or `CUSTOMERIO_ACME_APP_API_KEY`) and never the default workspace's key.

Read when the DAG file is parsed (environment only, so parsing never touches the metadata DB):
`CUSTOMERIO_DESTINATION` (duckdb | postgres | bigquery, default duckdb), `CUSTOMERIO_DATASET`
(default customerio), `CUSTOMERIO_DAG_START` (ISO date of the first interval, default 2025-01-01),
`CUSTOMERIO_DELIVERIES_LOOKBACK_HOURS` (default 72). Destination credentials come from dlt's usual
configuration, e.g. `DESTINATION__POSTGRES__CREDENTIALS`; DuckDB without credentials writes
`CUSTOMERIO_DUCKDB_PATH` (default `customerio_warehouse.duckdb` in the worker's working directory).

Each run (data interval [start, end)):

* ``lists``: workspace lists and their children, re-read in full (deleted rows get `_cio_deleted_at`).
* ``people``: every person and their attributes, re-read in full (same delete marking).
* ``deliveries``: `messages` created in [start - lookback, end): the lookback re-reads recent deliveries so
  opens and clicks that happen after a delivery's hour still land (rows merge on `id`).
* ``activities``: activities with `timestamp` in [start, end).
* ``metrics``: each metrics table's trailing series, merged on (parent ids, period, period_start): a
  bucket is rewritten until it is complete, so metrics are not cut to the hour.

Lists and people are not filtered by the interval: their children change without the parent's `updated`
moving and deletes can only be seen in a complete read, and a complete read costs the same requests.
Tasks run one after another: they share the workspace's 10 requests/s and the pipeline state.
The interval is passed explicitly, so dlt's `allow_external_schedulers` is not needed (it is opt-in
in dlt and raises outside a scheduler).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import dlt
import pendulum
from airflow import DAG
from airflow.models import BaseOperator
from airflow.operators.python import PythonOperator
from airflow.utils.task_group import TaskGroup
from dlt.sources import DltSource

from customerio_source import builders, customerio_source, load
from customerio_source.catalogue import CATALOGUE, default_tables
from customerio_source.warehouse import apply_bigquery_hints

PIPELINE_NAME = "customerio"
GROUP_ORDER = ("lists", "people", "deliveries", "activities", "metrics")

# interval policies: how a group's [interval_start, interval_end) derives from the run's data interval
FULL = "full"  # no interval: complete read, delete marking
DATA_INTERVAL = "data_interval"  # exactly the data interval
WITH_LOOKBACK = "data_interval_with_lookback"  # start moved back by the deliveries lookback


def table_groups(tables: Sequence[str] | None = None) -> dict[str, list[str]]:
    """Split the default tables (or ``tables``) into the DAG's task groups, in catalogue order."""
    groups: dict[str, list[str]] = {name: [] for name in GROUP_ORDER}
    for name in tables or default_tables():
        builder = CATALOGUE[name].builder
        if builder is builders.metrics:
            groups["metrics"].append(name)
        elif builder is builders.deliveries:
            groups["deliveries"].append(name)
        elif builder is builders.activities:
            groups["activities"].append(name)
        elif builder in builders.PEOPLE:
            groups["people"].append(name)
        else:
            groups["lists"].append(name)
    return {name: tables for name, tables in groups.items() if tables}


GROUP_POLICY = {
    "lists": FULL,
    "people": FULL,
    "deliveries": WITH_LOOKBACK,
    "activities": DATA_INTERVAL,
    "metrics": FULL,
}


def setting(variable: str, env: str) -> str | None:
    """An Airflow Variable (incl. `AIRFLOW_VAR_...`), else an environment variable, else None."""
    try:
        from airflow.models import Variable

        value = Variable.get(variable, default_var=None)
    except Exception:  # noqa: BLE001 - no metadata DB (e.g. a unit test): fall back to the environment
        value = None
    return value or os.environ.get(env) or None


def destination_for(name: str) -> Any:
    """The destination; DuckDB without configured credentials gets one absolute file for every task.

    (dlt would otherwise put `<pipeline>.duckdb` in the task's temporary data folder, and a file named like
    the dataset makes DuckDB's table references ambiguous.) Set `CUSTOMERIO_DUCKDB_PATH` to move it.
    """
    if name != "duckdb" or dlt.config.get("destination.duckdb.credentials") is not None:
        return name
    path = os.environ.get("CUSTOMERIO_DUCKDB_PATH", "customerio_warehouse.duckdb")
    return dlt.destinations.duckdb(credentials=os.path.abspath(path))


def run_interval(policy: str, context: dict[str, Any], lookback: timedelta) -> tuple[datetime | None, datetime | None]:
    """The interval a group loads in this DAG run."""
    if policy == FULL:
        return None, None
    start, end = context["data_interval_start"], context["data_interval_end"]
    if policy == WITH_LOOKBACK:
        start = start - lookback
    return start, end


@dataclass
class TableGroup:
    """A task's data: builds the group's source when the task runs, from the run's data interval."""

    name: str
    tables: list[str]
    policy: str
    destination: str
    lookback: timedelta = timedelta(hours=72)
    source_options: dict[str, Any] = field(default_factory=dict)
    variable_prefix: str = "customerio"

    def __call__(self) -> DltSource:
        from airflow.operators.python import get_current_context

        start, end = run_interval(self.policy, dict(get_current_context()), self.lookback)
        options: dict[str, Any] = {"tables": self.tables, "interval_start": start, "interval_end": end}
        for key, suffix, env in (
            ("api_key", "app_api_key", "CUSTOMERIO_APP_API_KEY"),
            ("base_url", "base_url", "CUSTOMERIO_BASE_URL"),
            ("region", "region", "CUSTOMERIO_REGION"),
        ):
            # plain CUSTOMERIO_* variables serve the default prefix only; others read <PREFIX>_<NAME>
            prefix = self.variable_prefix
            fallback = env if prefix == "customerio" else f"{prefix.upper()}_{suffix.upper()}"
            value = setting(f"{prefix}_{suffix}", fallback)
            if value:
                options[key] = value
        options.update(self.source_options)
        if "api_key" not in options and self.variable_prefix != "customerio":
            # never fall back to the default workspace's key (the source reads CUSTOMERIO_APP_API_KEY)
            raise ValueError(f"no App API key: set the Airflow Variable {self.variable_prefix}_app_api_key")
        source = customerio_source(**options)
        if self.destination == "bigquery":
            apply_bigquery_hints(source)
        return source


def load_group(data: TableGroup, pipeline_name: str, dataset_name: str) -> list[str]:
    """One task: the group's source through :func:`customerio_source.load`, the load path of the CLI and
    Dagster too (recovery, file format, delete and follower-delete marking, the memory retry, the run lock).

    The pipeline's local folder is a fresh temporary one, removed when the task ends: a task may run on any
    worker, so dlt restores the pipeline's state from the destination instead. Returns the load ids.
    """
    with tempfile.TemporaryDirectory(prefix=f"{pipeline_name}-") as pipelines_dir:
        pipeline = dlt.pipeline(
            pipeline_name=pipeline_name,
            pipelines_dir=pipelines_dir,
            destination=destination_for(data.destination),
            dataset_name=dataset_name,
        )
        info = load(pipeline, data())
        print(info)
        return list(info.loads_ids)


def build_dag(
    dag_id: str = "customerio",
    *,
    pipeline_name: str = PIPELINE_NAME,
    variable_prefix: str = "customerio",
    schedule: str | None = "@hourly",
    start_date: datetime | None = None,
    destination: str | None = None,
    dataset_name: str | None = None,
    tables: Sequence[str] | None = None,
    lookback: timedelta | None = None,
    source_options: dict[str, Any] | None = None,
    catchup: bool = False,
    default_args: dict[str, Any] | None = None,
) -> DAG:
    """The DAG: one task per table group, chained (lists >> people >> deliveries >> activities >> metrics).

    One DAG per workspace: give each its own ``dag_id``, ``pipeline_name``, ``dataset_name`` and
    ``variable_prefix`` (its key is then the Variable `<prefix>_app_api_key`).
    """
    destination = destination or os.environ.get("CUSTOMERIO_DESTINATION", "duckdb")
    dataset_name = dataset_name or os.environ.get("CUSTOMERIO_DATASET", "customerio")
    if lookback is None:
        lookback = timedelta(hours=float(os.environ.get("CUSTOMERIO_DELIVERIES_LOOKBACK_HOURS", "72")))
    if start_date is None:
        start_date = pendulum.parse(os.environ.get("CUSTOMERIO_DAG_START", "2025-01-01"), tz="UTC")  # type: ignore[assignment]
    args = {"owner": "data", "retries": 2, "retry_delay": timedelta(minutes=5)}
    args.update(default_args or {})
    with DAG(
        dag_id=dag_id,
        schedule=schedule,
        start_date=start_date,
        catchup=catchup,
        max_active_runs=1,  # runs share the workspace's rate limit and the pipeline state
        default_args=args,
        tags=["customerio", "dlt"],
        doc_md=__doc__,
    ) as dag:
        with TaskGroup(group_id=pipeline_name):
            previous: BaseOperator | None = None
            for name, group_tables in table_groups(tables).items():
                data = TableGroup(
                    name, group_tables, GROUP_POLICY[name], destination, lookback,
                    source_options=dict(source_options or {}), variable_prefix=variable_prefix,
                )
                task = PythonOperator(
                    task_id=name,
                    python_callable=load_group,
                    op_kwargs={"data": data, "pipeline_name": pipeline_name, "dataset_name": dataset_name},
                )
                if previous is not None:
                    previous >> task
                previous = task
    return dag


dag = build_dag()
