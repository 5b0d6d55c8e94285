"""Dagster: many Customer.io workspaces, one asset set each (dagster-dlt), from a workspace list.

    CUSTOMERIO_WORKSPACES=/path/to/workspaces.toml dagster dev -f pipelines/dagster_workspaces.py

The list (format in :mod:`customerio_source.workspaces`) gives each workspace its key (an environment
variable name, read when a run starts), pipeline name, dataset and rate limit; a list that repeats a pipeline
name or a dataset is refused with one line when the file loads, before any run.

Each workspace becomes the multi-asset ``customerio_<name>`` (asset keys ``<name>/dlt_customerio_<table>``,
group ``customerio_<name>``) in its own concurrency pool ``customerio_<name>``: give each pool one slot
(``dagster instance concurrency set customerio_<name> 1``) and a workspace's runs never overlap, while
different workspaces run in parallel, each within its own rate limit. Every run loads the workspace's tables
through :func:`customerio_source.load` (the CLI's load path) into its own dataset; DuckDB without configured
credentials writes one file per workspace (``duckdb_path``, default ``<pipeline_name>.duckdb``), since DuckDB
allows one writer per file. One job per workspace, ``customerio_<name>_job``, scheduled hourly.
"""

# no `from __future__ import annotations`: Dagster reads the `context` annotation at definition time
import tempfile
from collections.abc import Iterator
from typing import Any

import dlt
from dagster import (
    AssetExecutionContext,
    AssetKey,
    AssetsDefinition,
    AssetSpec,
    Definitions,
    MaterializeResult,
    ScheduleDefinition,
    define_asset_job,
)
from dagster_dlt import DagsterDltTranslator, build_dlt_asset_specs, dlt_assets
from dagster_dlt.translator import DltResourceTranslatorData
from dlt.sources import DltSource

from customerio_source import customerio_source, load
from customerio_source.warehouse import apply_bigquery_hints
from customerio_source.workspaces import WorkspaceConfig, read_workspaces

NAMING_KEY = "unused-naming-only"  # the sources handed to @dlt_assets only name the assets
# the pipelines handed to @dlt_assets only name them too: kept in a folder of this process, so processes that
# load these definitions at once (a code server, run workers) never write one pipeline's local state together
_NAMING_DIR = tempfile.TemporaryDirectory(prefix="cio-dagster-naming-")


class WorkspaceTranslator(DagsterDltTranslator):
    """dagster-dlt's asset specs, keyed under the workspace's name so workspaces never share a key."""

    def __init__(self, prefix: str) -> None:
        super().__init__()
        self.prefix = prefix

    def get_asset_spec(self, data: DltResourceTranslatorData) -> AssetSpec:
        spec = super().get_asset_spec(data)
        return spec.replace_attributes(key=spec.key.with_prefix(self.prefix))


def destination_of(workspace: WorkspaceConfig) -> Any:
    name = workspace.destination
    if name != "duckdb" or dlt.config.get("destination.duckdb.credentials") is not None:
        return name
    return dlt.destinations.duckdb(credentials=workspace.duckdb_file())


def pipeline_of(workspace: WorkspaceConfig, naming: bool = False) -> dlt.Pipeline:
    """The workspace's pipeline (``naming``: a stand-in with the same name, destination and dataset)."""
    return dlt.pipeline(
        pipeline_name=workspace.pipeline_name,
        pipelines_dir=_NAMING_DIR.name if naming else None,
        destination=destination_of(workspace),
        dataset_name=workspace.dataset_name,
    )


def naming_source(workspace: WorkspaceConfig) -> DltSource:
    return customerio_source(api_key=NAMING_KEY, tables=workspace.tables)


def asset_keys(workspace: WorkspaceConfig, translator: DagsterDltTranslator) -> dict[str, AssetKey]:
    source = naming_source(workspace)
    specs = build_dlt_asset_specs(
        dlt_source=source, dlt_pipeline=pipeline_of(workspace, naming=True), dagster_dlt_translator=translator
    )
    return {name: spec.key for name, spec in zip(source.selected_resources, specs, strict=True)}


def workspace_assets(workspace: WorkspaceConfig) -> AssetsDefinition:
    """The workspace's asset set: one asset per table, materialized by one load."""
    translator = WorkspaceTranslator(workspace.name)

    @dlt_assets(
        dlt_source=naming_source(workspace),
        dlt_pipeline=pipeline_of(workspace, naming=True),
        name=f"customerio_{workspace.name}",
        group_name=f"customerio_{workspace.name}",
        dagster_dlt_translator=translator,
        pool=f"customerio_{workspace.name}",
    )
    def assets(context: AssetExecutionContext) -> Iterator[Any]:
        keys = asset_keys(workspace, translator)
        options = workspace.source_options()
        if context.is_subset:
            options["tables"] = [name for name, key in keys.items() if key in context.selected_asset_keys]
        source = customerio_source(**options)
        if workspace.destination == "bigquery":
            apply_bigquery_hints(source)
        pipeline = pipeline_of(workspace)
        info = load(pipeline, source)
        trace = pipeline.last_trace
        rows = trace.last_normalize_info.row_counts if trace and trace.last_normalize_info else {}
        context.log.info(f"{workspace.name}: loaded {list(info.loads_ids)}")
        for name in source.selected_resources:
            yield MaterializeResult(
                asset_key=keys[name],
                metadata={"load_ids": list(info.loads_ids), "rows_this_run": int(rows.get(name, 0))},
            )

    return assets


def build_definitions(assets: dict[str, AssetsDefinition]) -> Definitions:
    """Every workspace's assets, a job per workspace (``customerio_<name>_job``) and its hourly schedule."""
    jobs = [define_asset_job(f"customerio_{name}_job", selection=[a]) for name, a in assets.items()]
    return Definitions(
        assets=list(assets.values()),
        jobs=jobs,
        schedules=[ScheduleDefinition(job=job, cron_schedule="0 * * * *") for job in jobs],
    )


WORKSPACES = read_workspaces()
ASSETS = {workspace.name: workspace_assets(workspace) for workspace in WORKSPACES}
defs = build_definitions(ASSETS)
