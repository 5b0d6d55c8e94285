"""The engagement tutorial's loop (seed 000) in one command: simulate -> send -> extract -> models -> report.

``customerio-pipeline report --demo`` runs it:

1. **simulate**: a workspace with the ``tutorial-send`` profile (``simulator/profiles.py``): the tutorial's
   1,000 people with their deliveries and the three campaigns, no events yet, served over HTTP;
2. **send**: the tutorial's people (``identify``: uuid id, email, names, device) and their 30-60 events each
   over 180 days (``event``: name, timestamp, campaign, device, with known spike days) pushed to the
   workspace's Track API by the package's send destination (:func:`customerio_source.send.customerio_track`)
   through :func:`customerio_source.runner.load`, the path ``customerio-pipeline push`` takes;
3. **extract**: the workspace read back through the App API into DuckDB, also through
   :func:`customerio_source.runner.load`;
4. **models**: the models, anomalies and forecasts built (the report is written by the caller).
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass
from typing import Any

import dlt

from ..runner import load
from ..send import customerio_track, send_as
from ..source import customerio_source
from .build import BuildResult, Settings
from .cli import run_models

DEMO_API_KEY = "demo-app-api-key"
PROFILE = "tutorial-send"
PEOPLE_TABLE, EVENTS_TABLE = "tutorial_people", "tutorial_events"
TUTORIAL_TABLES = (
    "campaigns",
    "broadcasts",
    "newsletters",
    "transactional_messages",
    "messages",
    "activities",
    "customers",
    "customer_attributes",
    "campaign_metrics",
    "broadcast_metrics",
    "newsletter_metrics",
    "transactional_metrics",
)


@dataclass
class TutorialRun:
    """What one run of the loop did: the warehouse pipeline, and what the push sent and the workspace got."""

    pipeline: dlt.Pipeline
    people: int
    events: int
    requests: int
    """Send-API requests the workspace answered."""
    items: int
    """Items (people and events) the workspace received."""
    rejected: int
    """Items the workspace rejected (a 207's errors)."""
    activities_before: int
    activities_after: int
    push_seconds: float
    build: BuildResult | None = None


def tutorial_push_source(workspace: Any) -> Any:
    """The tutorial's people and events as a dlt source of two tables, each marked with its Customer.io
    operation (``identify``, ``event``)."""
    import pyarrow as pa

    from ..simulator.profiles import tutorial_event_rows, tutorial_people_rows

    people = pa.Table.from_pylist(tutorial_people_rows(workspace))  # Arrow: dlt extracts it without a row loop
    events = pa.Table.from_pylist(tutorial_event_rows(workspace))

    @dlt.source(name="customerio_tutorial_push", max_table_nesting=0)
    def tutorial_push() -> Any:
        yield send_as(dlt.resource(people, name=PEOPLE_TABLE), "identify")
        yield send_as(dlt.resource(events, name=EVENTS_TABLE), "event")

    return tutorial_push(), people.num_rows, events.num_rows


def send_events(server: Any, pipeline_name: str, pipelines_dir: str | None = None) -> dict[str, int | float]:
    """The tutorial's "push the people and events to Customer.io" step: the rows go to ``server``'s Track
    API through the send destination and :func:`customerio_source.runner.load`; returns what was sent
    (rows) and what the workspace received (requests, items, rejected items, its activities after)."""
    from ..simulator.send_api import DEMO_SITE_ID, DEMO_TRACK_API_KEY, state_of

    workspace = server.ws
    source, people, events = tutorial_push_source(workspace)
    name = f"{pipeline_name}_push"
    working_dir = dlt.pipeline(pipeline_name=name, pipelines_dir=pipelines_dir).working_dir
    push = dlt.pipeline(
        pipeline_name=name,
        pipelines_dir=pipelines_dir,
        dataset_name="customerio_tutorial_push",
        destination=customerio_track(
            site_id=DEMO_SITE_ID,
            api_key=DEMO_TRACK_API_KEY,
            base_url=server.base_url,
            rate_limit=0,  # the simulated workspace has no send rate limit
            workers=4,
            rejections_dir=os.path.join(working_dir, "customerio_rejections"),  # as `push` keeps them
        ),
    )
    stats = state_of(server).stats
    before = (stats.requests, stats.items, stats.rejected_items)
    started = time.monotonic()
    load(push, source)
    return {
        "people": people,
        "events": events,
        "requests": stats.requests - before[0],
        "items": stats.items - before[1],
        "rejected": stats.rejected_items - before[2],
        "activities": workspace.n_activities(),
        "seconds": time.monotonic() - started,
    }


def run_tutorial(
    seed: int = 7,
    settings: Settings | None = None,
    pipeline_name: str = "customerio_tutorial",
    dataset_name: str = "customerio",
    anchor: int | None = None,
    pipelines_dir: str | None = None,
) -> TutorialRun:
    """Simulate, send, extract into DuckDB (``<pipeline_name>.duckdb`` here), build the models; returns what
    the run did (its ``pipeline`` is what the report reads). ``anchor``: the workspace's "now" (unix
    seconds; default: now)."""
    from ..cli import destination_for
    from ..simulator import SimulatorServer, Workspace

    print("simulating the tutorial workspace (1,000 people, their deliveries; no events yet)...", file=sys.stderr)
    workspace = Workspace(seed=seed, anchor=anchor, profile=PROFILE)
    before = workspace.n_activities()
    with SimulatorServer(workspace, api_key=DEMO_API_KEY) as server:
        print("pushing the tutorial's people and events to its Track API (the send direction)...", file=sys.stderr)
        sent = send_events(server, pipeline_name, pipelines_dir)
        print(
            f"pushed {sent['people']:,} people and {sent['events']:,} events in {sent['seconds']:.1f}s "
            f"({sent['requests']} requests, {sent['rejected']} items rejected); extracting...",
            file=sys.stderr,
        )
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
    build = run_models(pipeline, settings or Settings())
    return TutorialRun(
        pipeline,
        int(sent["people"]),
        int(sent["events"]),
        int(sent["requests"]),
        int(sent["items"]),
        int(sent["rejected"]),
        before,
        int(sent["activities"]),
        float(sent["seconds"]),
        build,
    )
