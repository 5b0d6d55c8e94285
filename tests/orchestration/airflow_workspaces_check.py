"""pipelines/airflow_workspaces.py: three simulated workspaces loaded at once, one DAG each, by `dag.test()` in
three Airflow processes; every warehouse equals its workspace and together they use three workspaces' budgets.

Runs in .venv-airflow (see .ci/orchestration.sh):

    .venv-airflow/bin/python -m pytest tests/orchestration/airflow_workspaces_check.py
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import fanout  # noqa: E402 - the shared harness beside this file

ROOT = Path(__file__).resolve().parents[2]
DAG_FILE = ROOT / "pipelines" / "airflow_workspaces.py"

_HOME = tempfile.mkdtemp(prefix="cio-airflow-ws-")
os.environ.update(
    AIRFLOW_HOME=_HOME,
    AIRFLOW__CORE__DAGS_FOLDER=os.path.join(_HOME, "dags"),
    AIRFLOW__CORE__LOAD_EXAMPLES="False",
    AIRFLOW__CORE__UNIT_TEST_MODE="False",
    AIRFLOW__LOGGING__LOGGING_LEVEL="WARNING",
    RUNTIME__LOG_LEVEL="WARNING",
)
pytest.importorskip("duckdb")
pytest.importorskip("airflow", reason="apache-airflow is not installed (run .ci/orchestration.sh)")

WORKER = (
    """
import importlib.util, json, sys
spec = importlib.util.spec_from_file_location("customerio_airflow_workspaces", sys.argv[1])
module = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = module
spec.loader.exec_module(module)
dag = getattr(module, "customerio_" + sys.argv[2])
"""
    + fanout.BARRIER
    + """
run = dag.test()
print(json.dumps({"state": str(run.state), "tasks": sorted(ti.task_id for ti in run.get_task_instances())}))
"""
)


@pytest.fixture(scope="module")
def migrated_db() -> Path:
    """One migrated metadata DB, copied for each Airflow process (SQLite takes one writer at a time)."""
    airflow = Path(sys.executable).with_name("airflow")
    done = subprocess.run([str(airflow), "db", "migrate"], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return Path(_HOME) / "airflow.db"


def run_dags(names: list[str], listing: Path, keys: dict[str, str], db: Path, work: Path) -> list[dict[str, Any]]:
    commands, env = [], fanout.child_env({**keys, "CUSTOMERIO_WORKSPACES": str(listing)})
    for name in names:
        home = work / f"home-{name}"
        home.mkdir(parents=True)
        shutil.copy(db, home / "airflow.db")
        commands.append(
            [
                "env",
                f"AIRFLOW_HOME={home}",
                f"AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=sqlite:///{home}/airflow.db",
                sys.executable,
                "-c",
                WORKER,
                str(DAG_FILE),
                name,
            ]
        )
    return fanout.run_parallel(commands, env, work / "barrier")


def test_a_list_that_repeats_a_dataset_is_refused_before_anything_runs(tmp_path: Path, monkeypatch: Any) -> None:
    from customerio_source.errors import ConfigError

    with fanout.simulated_workspaces(["a", "b"]) as sims:
        listing = tmp_path / "workspaces.toml"
        keys = fanout.write_list(listing, sims, tmp_path, duplicate="dataset_name")
        for variable, value in keys.items():
            monkeypatch.setenv(variable, value)
        monkeypatch.setenv("CUSTOMERIO_WORKSPACES", str(listing))
        spec = importlib.util.spec_from_file_location("customerio_airflow_workspaces_dup", DAG_FILE)
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        with pytest.raises(ConfigError) as refused:
            spec.loader.exec_module(module)
        message = str(refused.value)
        assert "\n" not in message and "share the dataset name 'cio_a'" in message
        assert all(sim.server.stats.requests == 0 for sim in sims)


def test_three_workspaces_at_once(migrated_db: Path, tmp_path: Path) -> None:
    with fanout.simulated_workspaces(["solo", "east", "west", "north"]) as sims:
        solo, three = sims[0], sims[1:]
        listing = tmp_path / "solo.toml"
        keys = fanout.write_list(listing, [solo], tmp_path)
        (result,) = run_dags(["solo"], listing, keys, migrated_db, tmp_path / "solo")
        assert result == {"state": "success", "tasks": ["load"]}
        one = fanout.rate(solo.requests)

        listing = tmp_path / "workspaces.toml"
        keys = fanout.write_list(listing, three, tmp_path)
        results = run_dags([s.name for s in three], listing, keys, migrated_db, tmp_path / "three")
        assert all(r["state"] == "success" for r in results), results
        together, overlap = fanout.aggregate_rate([s.requests for s in three])

        for sim in [solo, *three]:
            fanout.assert_warehouse_equals_workspace(
                tmp_path / f"{sim.name}.duckdb", f"cio_{sim.name}", sim.server.workspace
            )
        print(f"request rate: one workspace {one:.2f}/s; three at once {together:.2f}/s over {overlap:.1f} s")
        assert one <= fanout.RATE * 1.05  # each workspace stays within its own budget
        assert together >= 2.7 * one, (together, one, overlap)
