"""Shared by airflow_check.py and dagster_check.py: simulated workspaces, each with its own rate limit, a
workspace list for them, runs of the orchestrator in parallel processes, and the checks of the results.

Each simulated server limits requests to ``RATE`` per second and each workspace's client is configured to
the same rate, so one workspace's run is bounded by its budget: N workspaces at once should reach N times
the request rate of one, which is what the fan-out is for.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

RATE = 4.0  # requests/s of every simulated workspace (and of its client)
TABLES = (
    "workspaces,campaigns,campaign_actions,broadcasts,newsletters,segments,segment_memberships,customers,"
    "customer_attributes,messages,activities,objects,object_types,campaign_metrics"
)


@dataclass
class Simulated:
    name: str
    server: Any
    key: str

    @property
    def requests(self) -> list[float]:
        return list(self.server.stats.timestamps)


@contextmanager
def simulated_workspaces(names: list[str], seed0: int = 11) -> Iterator[list[Simulated]]:
    from customerio_source.simulator import SimulatorServer, Workspace

    out: list[Simulated] = []
    try:
        for i, name in enumerate(names):
            ws = Workspace(scale="tiny", seed=seed0 + i, anchor=int(time.time()) // 60 * 60 - 600)
            key = f"key-{name}-{i}"
            server = SimulatorServer(ws, api_key=key, rate_limit=RATE).start()
            out.append(Simulated(name, server, key))
        yield out
    finally:
        for sim in out:
            sim.server.stop()


def write_list(path: Path, sims: list[Simulated], workdir: Path, duplicate: str | None = None) -> dict[str, str]:
    """A TOML workspace list for ``sims``; returns the environment with each workspace's key variable.
    ``duplicate="dataset_name"`` makes the last entry reuse the first one's dataset."""
    env: dict[str, str] = {}
    lines: list[str] = []
    for i, sim in enumerate(sims):
        variable = f"CIO_KEY_{sim.name.upper()}"
        env[variable] = sim.key
        dataset = f"cio_{sim.name}"
        pipeline = f"customerio_{sim.name}"
        if duplicate and i == len(sims) - 1:
            first = sims[0].name
            dataset = f"cio_{first}" if duplicate == "dataset_name" else dataset
            pipeline = f"customerio_{first}" if duplicate == "pipeline_name" else pipeline
        lines += [
            "[[workspace]]",
            f'name = "{sim.name}"',
            f'api_key_env = "{variable}"',
            f'pipeline_name = "{pipeline}"',
            f'dataset_name = "{dataset}"',
            f"rate_limit = {RATE}",
            f'base_url = "{sim.server.base_url}"',
            f'tables = "{TABLES}"',
            f'duckdb_path = "{workdir / (sim.name + ".duckdb")}"',
            "",
        ]
    path.write_text("\n".join(lines))
    return env


BARRIER = """
import os as _os, pathlib as _pathlib, time as _time
_barrier = _pathlib.Path(_os.environ["CIO_BARRIER"])
(_barrier / (sys.argv[2] + ".ready")).touch()
while not (_barrier / "go").exists():
    _time.sleep(0.02)
"""
"""Inserted in a worker after its imports: wait until every worker is ready, so they start together."""


def run_parallel(
    commands: list[list[str]], env: dict[str, str], barrier: Path, timeout: float = 600
) -> list[dict[str, Any]]:
    """Start every command at once; each imports what it needs, waits at ``BARRIER`` until all are ready,
    runs, and prints one JSON line last. Returns those, in order."""
    barrier.mkdir(parents=True, exist_ok=True)
    env = {**env, "CIO_BARRIER": str(barrier)}
    processes = [
        subprocess.Popen(c, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for c in commands
    ]
    deadline = time.monotonic() + timeout
    while len(list(barrier.glob("*.ready"))) < len(commands):
        if any(p.poll() not in (None, 0) for p in processes) or time.monotonic() > deadline:
            break  # a worker failed before it was ready: its output says why
        time.sleep(0.05)
    (barrier / "go").touch()
    results = []
    for process in processes:
        out, err = process.communicate(timeout=max(1.0, deadline - time.monotonic()))
        assert process.returncode == 0, (out[-3000:], err[-3000:])
        results.append(json.loads(out.strip().splitlines()[-1]))
    return results


def rate(timestamps: list[float]) -> float:
    """Requests per second of one run: its requests over the span from its first to its last request."""
    assert len(timestamps) > 10
    return (len(timestamps) - 1) / (timestamps[-1] - timestamps[0])


def aggregate_rate(per_workspace: list[list[float]]) -> tuple[float, float]:
    """Requests per second of all workspaces together while all of them were running (the span from the
    last first request to the first last request), and that span's length."""
    start = max(ts[0] for ts in per_workspace)
    end = min(ts[-1] for ts in per_workspace)
    assert end > start, "the runs did not overlap"
    inside = sum(sum(1 for t in ts if start <= t <= end) for ts in per_workspace)
    return inside / (end - start), end - start


def assert_warehouse_equals_workspace(database: Path, dataset: str, ws: Any) -> None:
    """Every loaded table holds exactly the workspace's keys (live rows)."""
    import duckdb

    from customerio_source.catalogue import CATALOGUE
    from tests.oracle import expected_keys

    with duckdb.connect(str(database), read_only=True) as con:
        for table in TABLES.split(","):
            if table not in ws.tables():
                continue
            key = ", ".join(CATALOGUE[table].primary_key)
            columns = {
                row[0]
                for row in con.execute(
                    "SELECT column_name FROM information_schema.columns WHERE table_schema = ? AND table_name = ?",
                    [dataset, table],
                ).fetchall()
            }
            where = " WHERE _cio_deleted_at IS NULL" if "_cio_deleted_at" in columns else ""
            rows = con.execute(f"SELECT {key} FROM {dataset}.{table}{where}").fetchall()
            got = {tuple(str(v) for v in row) for row in rows}
            expected = {tuple(str(v) for v in k) for k in expected_keys(ws, table)}
            assert got == expected, (dataset, table, len(got), len(expected))


def child_env(extra: dict[str, str]) -> dict[str, str]:
    env = dict(os.environ)
    env.update(extra)
    env.setdefault("RUNTIME__LOG_LEVEL", "WARNING")
    return env


PYTHON = sys.executable
