"""Warehouse-specific table hints.

BigQuery bills queries by the bytes they scan. Deliveries and activities are the two tables that grow
without bound, and almost every query on them filters by a time range and by what sent them (or who did
what), so they are partitioned by day on their time column and clustered by those ids. Metrics tables
are small: they are only clustered by their parent ids (daily partitions of small tables cost more than
they save). Partitioning and clustering apply when dlt creates a table; an existing table keeps its
layout (drop it, or run with ``--full-refresh``, to re-create it).

Usage (before ``load``)::

    source = customerio_source(...)
    if destination == "bigquery":
        apply_bigquery_hints(source)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dlt.destinations.adapters import bigquery_adapter
from dlt.sources import DltSource

from . import builders
from .catalogue import CATALOGUE


@dataclass(frozen=True)
class BigQueryLayout:
    """Day partitioning on one timestamp column and up to four clustering columns."""

    partition: str | None
    cluster: tuple[str, ...]
    types: dict[str, str]
    """Data types of the partition/cluster columns: a column that received no data in a run (every
    `newsletter_id` null, say) must still be created, or CREATE TABLE ... CLUSTER BY fails."""


# Deliveries: time range on `created`, then what sent them (BigQuery allows four clustering columns).
DELIVERIES_LAYOUT = BigQueryLayout(
    partition="created",
    cluster=("campaign_id", "newsletter_id", "broadcast_id", "transactional_message_id"),
    types={
        "created": "timestamp",
        "campaign_id": "bigint",
        "newsletter_id": "bigint",
        "broadcast_id": "bigint",
        "transactional_message_id": "bigint",
    },
)

# Activities: time range on `timestamp`, then the activity type and the person.
ACTIVITIES_LAYOUT = BigQueryLayout(
    partition="timestamp",
    cluster=("type", "customer_id"),
    types={"timestamp": "timestamp", "type": "text", "customer_id": "text"},
)

# Deliveries of one person (`customer_messages`) are filtered by person first.
PERSON_DELIVERIES_LAYOUT = BigQueryLayout(
    partition="created",
    cluster=("customer_id", "campaign_id", "broadcast_id", "newsletter_id"),
    types={
        "created": "timestamp",
        "customer_id": "text",
        "campaign_id": "bigint",
        "broadcast_id": "bigint",
        "newsletter_id": "bigint",
    },
)


def bigquery_layouts() -> dict[str, BigQueryLayout]:
    """The layout of every catalogue table that gets one, by table name."""
    layouts: dict[str, BigQueryLayout] = {}
    for name, spec in CATALOGUE.items():
        if spec.builder is builders.deliveries:
            layouts[name] = DELIVERIES_LAYOUT
        elif name == "customer_messages":
            layouts[name] = PERSON_DELIVERIES_LAYOUT
        elif name in ("activities", "customer_activities"):
            layouts[name] = ACTIVITIES_LAYOUT
        elif spec.builder is builders.metrics:
            # parent ids (campaign_id, action_id...) then the period; ids are ints in the App API
            cluster = tuple(spec.parent_columns)[:3] + ("period",)
            types = {column: "bigint" for column in spec.parent_columns}
            types["period"] = "text"
            layouts[name] = BigQueryLayout(partition=None, cluster=cluster, types=types)
    return layouts


def apply_bigquery_hints(source: DltSource) -> DltSource:
    """Add BigQuery partition and cluster hints to the source's resources (in place; returns the source).

    Safe for any destination: the hints are BigQuery-only (`x-bigquery-*`) and other destinations ignore
    them, but the typed columns are created everywhere.
    """
    layouts = bigquery_layouts()
    for name, resource in source.resources.items():
        layout = layouts.get(name)
        if layout is None:
            continue
        columns: dict[str, Any] = {
            column: {"data_type": data_type, "nullable": True} for column, data_type in layout.types.items()
        }
        resource.apply_hints(columns=columns)
        bigquery_adapter(resource, partition=layout.partition, cluster=list(layout.cluster))
    return source
