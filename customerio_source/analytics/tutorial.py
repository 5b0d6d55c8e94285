"""The engagement tutorial's loop (seed 000) in one command: simulate -> send -> extract -> models -> report.

``customerio-pipeline report --demo`` runs it: a simulated workspace with the tutorial profile (1,000
people, their 30-60 events each over 180 days, known spike days), the events sent to it, the workspace
extracted into DuckDB through :func:`customerio_source.runner.load`, the models built, and the report
written.
"""

from __future__ import annotations

import sys
from typing import Any

import dlt

from ..runner import load
from ..source import customerio_source
from .build import Settings
from .cli import run_models

DEMO_API_KEY = "demo-app-api-key"
TUTORIAL_TABLES = (
    "campaigns",
    "broadcasts",
    "newsletters",
    "transactional_messages",
    "messages",
    "activities",
    "customers",
    "campaign_metrics",
    "broadcast_metrics",
    "newsletter_metrics",
    "transactional_metrics",
)


def send_events(workspace: Any) -> int:
    """The tutorial's "push the events to Customer.io" step; returns the number of events in the workspace.

    SEND DIRECTION GOES HERE: once the Track API destination (its own issue) lands, this function pushes
    the tutorial's people (identify) and events (track) to the simulator's Track API over HTTP. Until
    then the tutorial profile seeds the simulator directly (``simulator.profiles.install_events``, called
    when the workspace is built) and this step only counts what is there.
    """
    return workspace.n_activities()


def run_tutorial(
    seed: int = 7,
    settings: Settings | None = None,
    pipeline_name: str = "customerio_tutorial",
    dataset_name: str = "customerio",
    anchor: int | None = None,
    pipelines_dir: str | None = None,
) -> dlt.Pipeline:
    """Simulate, send, extract into DuckDB (``<pipeline_name>.duckdb`` here), build the models; returns
    the pipeline (the report reads it). ``anchor``: the workspace's "now" (unix seconds; default: now)."""
    from ..cli import destination_for
    from ..simulator import SimulatorServer, Workspace

    print("simulating the tutorial workspace (1,000 people, 180 days of events)...", file=sys.stderr)
    workspace = Workspace(seed=seed, anchor=anchor, profile="tutorial")
    events = send_events(workspace)
    print(f"{events} events in the workspace; extracting...", file=sys.stderr)
    with SimulatorServer(workspace, api_key=DEMO_API_KEY) as server:
        source = customerio_source(
            api_key=DEMO_API_KEY, base_url=server.base_url, tables=",".join(TUTORIAL_TABLES), rate_limit=0
        )
        pipeline = dlt.pipeline(
            pipeline_name=pipeline_name,
            pipelines_dir=pipelines_dir,
            dataset_name=dataset_name,
            destination=destination_for("duckdb", pipeline_name, dataset_name),
        )
        load(pipeline, source, refresh="drop_sources")
    run_models(pipeline, settings or Settings())
    return pipeline
