"""pipelines/dagster_workspaces.py: three simulated workspaces materialized at once, one asset set each, in
three Dagster processes; every warehouse equals its workspace and together they use three workspaces' budgets.

Runs in .venv-dagster (see .ci/orchestration.sh):

    .venv-dagster/bin/python -m pytest tests/orchestration/dagster_workspaces_check.py
"""

from __future__ import annotations

import importlib.util
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import fanout  # noqa: E402 - the shared harness beside this file

ROOT = Path(__file__).resolve().parents[2]
DEFS_FILE = ROOT / "pipelines" / "dagster_workspaces.py"

_WORK = tempfile.mkdtemp(prefix="cio-dagster-ws-")
os.environ.update(DAGSTER_HOME=_WORK, DLT_DATA_DIR=os.path.join(_WORK, "dlt"), RUNTIME__LOG_LEVEL="WARNING")
os.environ.pop("DESTINATION__DUCKDB__CREDENTIALS", None)
pytest.importorskip("duckdb")
pytest.importorskip("dagster_dlt", reason="dagster-dlt is not installed (run .ci/orchestration.sh)")

WORKER = (
    """
import importlib.util, json, sys
from dagster import materialize
spec = importlib.util.spec_from_file_location("customerio_dagster_workspaces", sys.argv[1])
module = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = module
spec.loader.exec_module(module)
"""
    + fanout.BARRIER
    + """
result = materialize([module.ASSETS[sys.argv[2]]])
keys = sorted(e.asset_key.to_user_string() for e in result.get_asset_materialization_events())
print(json.dumps({"success": result.success, "assets": keys}))
"""
)


def load_definitions(name: str) -> Any:
    spec = importlib.util.spec_from_file_location(name, DEFS_FILE)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def materialize_at_once(names: list[str], listing: Path, keys: dict[str, str], work: Path) -> list[dict[str, Any]]:
    env = fanout.child_env({**keys, "CUSTOMERIO_WORKSPACES": str(listing), "DLT_DATA_DIR": str(work / "dlt")})
    commands = [[sys.executable, "-c", WORKER, str(DEFS_FILE), name] for name in names]
    return fanout.run_parallel(commands, env, work / f"barrier-{'-'.join(names)}")


def test_a_list_that_repeats_a_pipeline_name_is_refused_before_anything_runs(tmp_path: Path, monkeypatch: Any) -> None:
    from customerio_source.errors import ConfigError

    with fanout.simulated_workspaces(["a", "b"]) as sims:
        listing = tmp_path / "workspaces.toml"
        keys = fanout.write_list(listing, sims, tmp_path, duplicate="pipeline_name")
        for variable, value in keys.items():
            monkeypatch.setenv(variable, value)
        monkeypatch.setenv("CUSTOMERIO_WORKSPACES", str(listing))
        with pytest.raises(ConfigError) as refused:
            load_definitions("customerio_dagster_workspaces_dup")
        message = str(refused.value)
        assert "\n" not in message and "share the pipeline name 'customerio_a'" in message
        assert all(sim.server.stats.requests == 0 for sim in sims)


def test_definitions_have_one_asset_set_and_pool_per_workspace(tmp_path: Path, monkeypatch: Any) -> None:
    with fanout.simulated_workspaces(["east", "west"]) as sims:
        listing = tmp_path / "workspaces.toml"
        for variable, value in fanout.write_list(listing, sims, tmp_path).items():
            monkeypatch.setenv(variable, value)
        monkeypatch.setenv("CUSTOMERIO_WORKSPACES", str(listing))
        module = load_definitions("customerio_dagster_workspaces_defs")
        assert set(module.ASSETS) == {"east", "west"}
        for name, assets in module.ASSETS.items():
            keys = {key.to_user_string() for key in assets.keys}
            assert f"{name}/dlt_customerio_campaigns" in keys and f"{name}/dlt_customerio_messages" in keys
            assert {assets.get_asset_spec(key).group_name for key in assets.keys} == {f"customerio_{name}"}
            assert module.defs.resolve_job_def(f"customerio_{name}_job") is not None
        assert sum(sim.server.stats.requests for sim in sims) == 0  # defining assets sends no request


def test_three_workspaces_at_once(tmp_path: Path) -> None:
    with fanout.simulated_workspaces(["solo", "east", "west", "north"]) as sims:
        solo, three = sims[0], sims[1:]
        listing = tmp_path / "solo.toml"
        (result,) = materialize_at_once(["solo"], listing, fanout.write_list(listing, [solo], tmp_path), tmp_path)
        assert result["success"] and "solo/dlt_customerio_customers" in result["assets"]
        one = fanout.rate(solo.requests)

        listing = tmp_path / "workspaces.toml"
        keys = fanout.write_list(listing, three, tmp_path)
        results = materialize_at_once([s.name for s in three], listing, keys, tmp_path)
        assert all(r["success"] for r in results), results
        together, overlap = fanout.aggregate_rate([s.requests for s in three])

        for sim in [solo, *three]:
            fanout.assert_warehouse_equals_workspace(
                tmp_path / f"{sim.name}.duckdb", f"cio_{sim.name}", sim.server.workspace
            )
        print(f"request rate: one workspace {one:.2f}/s; three at once {together:.2f}/s over {overlap:.1f} s")
        assert one <= fanout.RATE * 1.05
        assert together >= 2.7 * one, (together, one, overlap)
