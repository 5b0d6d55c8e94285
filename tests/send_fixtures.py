"""Shared pieces of the send tests: a simulated workspace speaking the send APIs, App API reads, pushes."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from typing import Any

import dlt
import pytest
import requests

from customerio_source.runner import load
from customerio_source.send import customerio_track, send_as

APP_KEY = "send-test-app-key"
SITE_ID = "site-7f3a91"
TRACK_KEY = "trk-secret-4c2d8e"
WRITE_KEY = "cdp-secret-9b1e77"


@pytest.fixture
def send_server() -> Iterator[Any]:
    """A fresh tiny workspace with the Track and Data Pipelines APIs (no rate limit)."""
    from customerio_source.simulator import SimulatorServer, Workspace
    from customerio_source.simulator.send_api import configure

    workspace = Workspace(scale="tiny", seed=11)
    with SimulatorServer(workspace, api_key=APP_KEY) as server:
        server.send = configure(server, site_id=SITE_ID, track_api_key=TRACK_KEY, write_key=WRITE_KEY)
        yield server


def app_get(server: Any, path: str, **params: Any) -> dict:
    """A GET on the App API of the same workspace."""
    response = requests.get(
        server.base_url + path, params=params, headers={"Authorization": f"Bearer {APP_KEY}"}, timeout=10
    )
    response.raise_for_status()
    return response.json()


def customer(server: Any, ident: str, id_type: str = "id") -> dict | None:
    answer = requests.post(
        server.base_url + "/v1/customers/attributes",
        params={"id_type": id_type},
        json={"ids": [ident]},
        headers={"Authorization": f"Bearer {APP_KEY}"},
        timeout=10,
    ).json()
    found = answer["customers"]
    return found[0]["customer"] if found else None


def object_ids(server: Any, type_id: int) -> list[str]:
    """Every object id of a type, through the App API's object search (``POST /v1/objects``, paged)."""
    out: list[str] = []
    start = None
    match_all = {"not": {"object_attribute": {"field": "never_set", "operator": "exists"}}}
    while True:
        params = {"limit": 1000, **({"start": start} if start else {})}
        answer = requests.post(
            server.base_url + "/v1/objects",
            params=params,
            json={"object_type_id": str(type_id), "filter": match_all},
            headers={"Authorization": f"Bearer {APP_KEY}"},
            timeout=10,
        )
        answer.raise_for_status()
        page = answer.json()
        out.extend(page["ids"])
        start = page.get("next")
        if not start or not page["ids"]:
            return out


def destination(server: Any, api: str = "track", **kwargs: Any) -> Any:
    base = server.base_url + ("/cdp/v1" if api == "cdp" else "")
    kwargs.setdefault("rate_limit", 0)
    return customerio_track(site_id=SITE_ID, api_key=TRACK_KEY, write_key=WRITE_KEY, base_url=base, api=api, **kwargs)


def push(
    server: Any,
    tmp_path: Any,
    tables: dict[str, tuple[list[dict], str] | tuple[list[dict], str, str]],
    api: str = "track",
    name: str | None = None,
    **kwargs: Any,
) -> dlt.Pipeline:
    """Push ``{table: (rows, operation[, key])}`` through ``runner.load``; the pipeline (for its folders)."""

    @dlt.source(name="rows")
    def source() -> Any:
        out = []
        for table, spec in tables.items():
            rows, operation, *key = spec
            out.append(send_as(dlt.resource(rows, name=table), operation, key[0] if key else None))
        return out

    pipeline = dlt.pipeline(
        pipeline_name=name or f"push_{uuid.uuid4().hex[:8]}",
        pipelines_dir=str(tmp_path / "pipelines"),
        destination=destination(server, api, rejections_dir=str(tmp_path / "spool"), **kwargs),
    )
    load(pipeline, source())
    return pipeline


def push_table(server: Any, tmp_path: Any, resources: list[tuple[Any, str, str | None]], api: str = "track") -> None:
    """Push existing dlt resources (``(resource, operation, key)``), one pipeline run each, in order, through
    ``runner.load`` (one table's rows reach the destination in one load, people before their events)."""
    for resource, operation, key in resources:
        pipeline = dlt.pipeline(
            pipeline_name=f"push_{uuid.uuid4().hex[:8]}",
            pipelines_dir=str(tmp_path / "pipelines"),
            destination=destination(server, api, rejections_dir=str(tmp_path / "spool")),
        )
        send_as(resource, operation, key)

        @dlt.source(name="warehouse")
        def source(resource: Any = resource) -> Any:
            return resource

        load(pipeline, source())


def run_push_cli(args: list[str], tmp_path: Any, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """``customerio-pipeline push ...`` in a child process, with no inherited Customer.io settings."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("CUSTOMERIO_", "SOURCES__", "DESTINATION__"))}
    full_env["DLT_DATA_DIR"] = str(tmp_path / "dlt")
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "customerio_source.cli", "push", *args],
        cwd=tmp_path,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def activities(server: Any, ident: str) -> list[dict]:
    """Every activity of a person, through the App API (paged)."""
    out: list[dict] = []
    start = None
    while True:
        params = {"limit": 100, **({"start": start} if start else {})}
        page = app_get(server, f"/v1/customers/{ident}/activities", **params)
        out.extend(page["activities"])
        start = page.get("next")
        if not start:
            return out


def push_direct(server: Any, tmp_path: Any, tables: dict[str, tuple], api: str = "track", **kwargs: Any) -> None:
    """Push ``{table: (rows, operation[, key])}`` table by table, in order, straight through the destination's
    body (``push_batch``: the same mapping, packing, ordering and transport, without a dlt pipeline run)."""
    from customerio_source.send.destination import push_batch, settings_from

    base = server.base_url + ("/cdp/v1" if api == "cdp" else "")
    settings = settings_from(SITE_ID, TRACK_KEY, WRITE_KEY, "us", base, api, kwargs.pop("rate_limit", 0),
                             kwargs.pop("workers", 4))
    for table, (rows, operation, *key) in tables.items():
        push_batch([dict(r) for r in rows], {"name": table}, settings, {table: operation}, key[0] if key else None,
                   str(tmp_path / "spool"), load_id="direct")


def make_warehouse(path: str, now: int, prefix: str, people: int, events: int) -> None:
    """A DuckDB file with `people` (id ``<prefix>_<i>``, email, plan, score, created_at) and `events`
    (event_id, id, name, timestamp in the last hour before ``now``, amount) tables to push from."""
    import duckdb

    with duckdb.connect(path) as con:
        con.execute(f"""CREATE TABLE people AS SELECT '{prefix}_' || i AS id,
                        '{prefix}' || i || '@example.com' AS email,
                        CASE WHEN i % 2 = 0 THEN 'pro' ELSE 'free' END AS plan, CAST(i * 1.5 AS DECIMAL(6, 2)) AS score,
                        TIMESTAMPTZ '2024-03-01 00:00:00+00' + i * INTERVAL 1 DAY AS created_at
                        FROM range({people}) t(i)""")
        con.execute(f"""CREATE TABLE events AS SELECT i AS event_id, '{prefix}_' || (i % {people}) AS id,
                        CASE WHEN i % 3 = 0 THEN 'purchase' ELSE 'login' END AS name,
                        to_timestamp({now} - 3600 + i * 7) AS timestamp, round(i * 1.25, 2) AS amount
                        FROM range({events}) t(i)""")


def extract(server: Any, tmp_path: Any, name: str, tables: list[str]) -> str:
    """Load ``tables`` of the simulated workspace with the source (through runner.load) into a fresh DuckDB
    file (dataset ``cio``); returns its path."""
    from customerio_source import customerio_source

    out = str(tmp_path / f"{name}.duckdb")
    pipeline = dlt.pipeline(
        pipeline_name=name, pipelines_dir=str(tmp_path / "pipelines"), destination=dlt.destinations.duckdb(out),
        dataset_name="cio",
    )
    load(pipeline, customerio_source(api_key=APP_KEY, base_url=server.base_url, rate_limit=0, tables=tables))
    return out

