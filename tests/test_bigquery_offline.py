"""BigQuery without BigQuery: extract and normalize the simulated workspace for `destination="bigquery"`.

Nothing is loaded and nothing leaves the machine (fake credentials, the simulator on 127.0.0.1). The
tests check the load package dlt would send, the partition/cluster hints in the schema, and the
CREATE TABLE statements the BigQuery client would run.
"""

from __future__ import annotations

import uuid
from typing import Any

import dlt
import pytest

from customerio_source import customerio_source
from customerio_source.warehouse import apply_bigquery_hints, bigquery_layouts

from .conftest import API_KEY
from .oracle import expected_count

TABLES = ["campaigns", "messages", "activities", "campaign_metrics", "campaign_action_metrics", "broadcast_metrics"]
FAKE_CREDENTIALS = {
    "project_id": "offline-test-project",
    "client_email": "loader@offline-test-project.iam.gserviceaccount.com",
    "private_key": "-----BEGIN PRIVATE KEY-----\nnot-a-key\n-----END PRIVATE KEY-----\n",
}
PARTITION = "x-bigquery-partition"
CLUSTER_COLUMNS = "x-bigquery-cluster-columns"


@pytest.fixture
def normalized(tiny_server: Any, tmp_path: Any) -> dlt.Pipeline:
    """A pipeline whose load package is normalized for BigQuery and never loaded."""
    pipeline = dlt.pipeline(
        pipeline_name=f"cio_bq_{uuid.uuid4().hex[:8]}",
        pipelines_dir=str(tmp_path / "pipelines"),
        destination=dlt.destinations.bigquery(credentials=FAKE_CREDENTIALS, location="US"),
        dataset_name="customerio",
    )
    source = customerio_source(api_key=API_KEY, base_url=tiny_server.base_url, tables=TABLES, rate_limit=0)
    assert apply_bigquery_hints(source) is source
    pipeline.extract(source)
    pipeline.normalize()
    return pipeline


def test_load_package_has_a_file_per_table(normalized: dlt.Pipeline, tiny_server: Any) -> None:
    load_ids = normalized.list_normalized_load_packages()
    assert len(load_ids) == 1
    package = normalized.get_load_package_info(load_ids[0])
    jobs = package.jobs["new_jobs"]
    by_table: dict[str, list[Any]] = {}
    for job in jobs:
        by_table.setdefault(job.job_file_info.table_name, []).append(job)
    assert set(TABLES) <= set(by_table)
    # BigQuery loads newline-delimited JSON by default; every data file is one of its supported formats
    assert {job.job_file_info.file_format for job in jobs} <= {"jsonl", "parquet", "sql", "reference"}
    counts = normalized.last_trace.last_normalize_info.row_counts
    ws = tiny_server.workspace
    assert counts["messages"] == expected_count(ws, "messages")
    assert counts["activities"] == expected_count(ws, "activities")
    assert counts["campaigns"] == expected_count(ws, "campaigns")
    assert counts["campaign_metrics"] > 0


def test_schema_carries_partition_and_cluster_hints(normalized: dlt.Pipeline) -> None:
    tables = normalized.default_schema.tables
    messages = tables["messages"]
    assert messages["columns"]["created"].get(PARTITION) is True
    assert messages["columns"]["created"]["data_type"] == "timestamp"
    assert messages[CLUSTER_COLUMNS] == ["campaign_id", "newsletter_id", "broadcast_id", "transactional_message_id"]
    for column in messages[CLUSTER_COLUMNS]:
        assert messages["columns"][column]["data_type"] == "bigint", column

    activities = tables["activities"]
    assert activities["columns"]["timestamp"].get(PARTITION) is True
    assert activities[CLUSTER_COLUMNS] == ["type", "customer_id"]

    assert tables["campaign_metrics"][CLUSTER_COLUMNS] == ["campaign_id", "period"]
    assert tables["campaign_action_metrics"][CLUSTER_COLUMNS] == ["campaign_id", "action_id", "period"]
    assert tables["broadcast_metrics"][CLUSTER_COLUMNS] == ["broadcast_id", "period"]
    for name in ("campaign_metrics", "campaigns"):
        assert not any(column.get(PARTITION) for column in tables[name]["columns"].values()), name
    assert CLUSTER_COLUMNS not in tables["campaigns"]


def test_create_table_statements(normalized: dlt.Pipeline) -> None:
    pytest.importorskip("google.cloud.bigquery", reason="dlt[bigquery] is not installed")
    client: Any = normalized.destination_client()  # builds no connection: nothing is sent
    schema = normalized.default_schema

    def create_sql(table: str) -> str:
        columns = list(schema.get_table_columns(table).values())
        return "\n".join(client._get_table_update_sql(table, columns, False))

    messages = create_sql("messages")
    assert "PARTITION BY DATE(`created`)" in messages
    assert "CLUSTER BY `campaign_id`, `newsletter_id`, `broadcast_id`, `transactional_message_id`" in messages
    activities = create_sql("activities")
    assert "PARTITION BY DATE(`timestamp`)" in activities
    assert "CLUSTER BY `type`, `customer_id`" in activities
    metrics = create_sql("campaign_metrics")
    assert "PARTITION BY" not in metrics
    assert "CLUSTER BY `campaign_id`, `period`" in metrics


def test_every_layout_fits_bigquery_limits() -> None:
    for name, layout in bigquery_layouts().items():
        assert 1 <= len(layout.cluster) <= 4, name  # BigQuery clusters by at most four columns
        assert set(layout.cluster) <= set(layout.types), name
        if layout.partition:
            assert layout.types[layout.partition] == "timestamp", name
