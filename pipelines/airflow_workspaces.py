"""Airflow (2.x): many Customer.io workspaces, one DAG each, from a workspace list.

    CUSTOMERIO_WORKSPACES=/path/to/workspaces.toml   # read when the DAG file is parsed

The list (format in :mod:`customerio_source.workspaces`) gives each workspace its key (an environment
variable name, read when the task runs, so no key is in the DAG's arguments), pipeline name, dataset and
rate limit. A list that repeats a pipeline name or a dataset is refused with one line when the file is
parsed (an import error in Airflow), before any run.

Each workspace becomes the DAG ``customerio_<name>``: one task, ``load``, that loads every table of the
workspace (or its ``tables``) through :func:`customerio_source.load` (the load path of the CLI: recovery of
interrupted packages, delete marking, the memory retry, the pipeline lock) at that workspace's rate limit.
Runs of one workspace are serial (``max_active_runs=1``, one task); different workspaces are different DAGs,
so the scheduler runs them in parallel, each within its own workspace's request budget. The pipeline's local
folder is temporary (a task may run on any worker): dlt restores its state from the destination. DuckDB
without configured credentials: one file per workspace (``duckdb_path``, default
``<pipeline_name>.duckdb`` in the worker's working directory), since DuckDB allows one writer per file.

Environment (at parse): ``CUSTOMERIO_WORKSPACES_SCHEDULE`` (default ``@hourly``), ``CUSTOMERIO_DAG_START``
(default 2025-01-01).
"""

from __future__ import annotations

import os
import tempfile
from datetime import timedelta
from typing import Any

import dlt
import pendulum
from airflow import DAG
from airflow.operators.python import PythonOperator

from customerio_source import customerio_source, load
from customerio_source.warehouse import apply_bigquery_hints
from customerio_source.workspaces import WorkspaceConfig, read_workspaces


def destination_of(workspace: WorkspaceConfig) -> Any:
    """The workspace's destination: its own DuckDB file unless dlt's configuration names credentials."""
    name = workspace.destination
    if name != "duckdb" or dlt.config.get("destination.duckdb.credentials") is not None:
        return name
    return dlt.destinations.duckdb(credentials=workspace.duckdb_file())


def load_workspace(workspace: WorkspaceConfig) -> list[str]:
    """The task: one run of the workspace's pipeline. Returns the load ids."""
    source = customerio_source(**workspace.source_options())
    if workspace.destination == "bigquery":
        apply_bigquery_hints(source)
    with tempfile.TemporaryDirectory(prefix=f"{workspace.pipeline_name}-") as pipelines_dir:
        pipeline = dlt.pipeline(
            pipeline_name=workspace.pipeline_name,
            pipelines_dir=pipelines_dir,
            destination=destination_of(workspace),
            dataset_name=workspace.dataset_name,
        )
        info = load(pipeline, source)
        print(f"{workspace.name}: loaded {list(info.loads_ids)}")
        return list(info.loads_ids)


def build_dags(workspaces: list[WorkspaceConfig], schedule: str | None = "@hourly") -> dict[str, DAG]:
    """One DAG per workspace, ``customerio_<name>``."""
    start = pendulum.parse(os.environ.get("CUSTOMERIO_DAG_START", "2025-01-01"), tz="UTC")
    dags: dict[str, DAG] = {}
    for workspace in workspaces:
        dag_id = f"customerio_{workspace.name}"
        with DAG(
            dag_id=dag_id,
            schedule=schedule,
            start_date=start,  # type: ignore[arg-type]
            catchup=False,
            max_active_runs=1,  # a workspace's runs share its rate limit and its pipeline state
            default_args={"owner": "data", "retries": 2, "retry_delay": timedelta(minutes=5)},
            tags=["customerio", "dlt", workspace.name],
            doc_md=__doc__,
        ) as dag:
            PythonOperator(task_id="load", python_callable=load_workspace, op_kwargs={"workspace": workspace})
        dags[dag_id] = dag
    return dags


# Airflow collects DAG objects from this module's globals
globals().update(build_dags(read_workspaces(), os.environ.get("CUSTOMERIO_WORKSPACES_SCHEDULE", "@hourly")))
