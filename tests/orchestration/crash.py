"""Shared by the orchestration checks: kill a run during its load, compare warehouses row for row.

`DIE_WHEN_A_JOB_COMPLETES` is prepended to a child process's script: with `CIO_DIE_WHEN_JOB_COMPLETES=<table>`
the process dies (exit 137) right after the load job of that table committed its copy and before dlt
records it, the same precise kill point as tests/test_crash.py.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

DIE_WHEN_A_JOB_COMPLETES = r"""
import os
_die_on = os.environ.get("CIO_DIE_WHEN_JOB_COMPLETES")
if _die_on:
    from dlt.common.storages.load_package import PackageStorage

    _original = PackageStorage.complete_job

    def _complete_job(self, load_id, file_name):
        if file_name.startswith(_die_on + "."):
            os._exit(137)
        return _original(self, load_id, file_name)

    PackageStorage.complete_job = _complete_job
"""



def load_file(name: str, path: Path) -> ModuleType:
    """Import the file at ``path`` as module ``name`` (pipelines/ is not a package)."""
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses resolve annotations through sys.modules
    spec.loader.exec_module(module)
    return module


def load_module_from_argv(name: str) -> str:
    """Script lines that import the file named by ``sys.argv[1]`` as module ``name`` (bound to ``module``)."""
    return (
        "import importlib.util, sys\n"
        f"spec = importlib.util.spec_from_file_location({name!r}, sys.argv[1])\n"
        "module = importlib.util.module_from_spec(spec)\n"
        "sys.modules[spec.name] = module\n"
        "spec.loader.exec_module(module)\n"
    )


DLT_COLUMNS = ("_dlt_id", "_dlt_load_id", "_dlt_parent_id", "_dlt_root_id")


def snapshot(db_path: Path, dataset: str = "customerio") -> dict[str, list[tuple]]:
    """Every data table's rows without dlt's per-load columns, sorted: comparable across warehouses."""
    import duckdb

    out: dict[str, list[tuple]] = {}
    with duckdb.connect(str(db_path), read_only=True) as con:
        tables = [r[0] for r in con.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = ? AND table_name NOT LIKE '_dlt%'",
            [dataset]).fetchall()]
        for table in tables:
            columns = [r[0] for r in con.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_schema = ? AND table_name = ? "
                "ORDER BY column_name", [dataset, table]).fetchall()]
            kept = ", ".join(f'"{c}"' for c in columns if c not in DLT_COLUMNS)
            rows = con.execute(f'SELECT {kept} FROM {dataset}."{table}"').fetchall()
            out[table] = sorted(tuple(str(v) for v in row) for row in rows)
    return out


def assert_same_warehouse(got: dict[str, list[tuple]], want: dict[str, list[tuple]]) -> None:
    assert set(got) == set(want), set(got) ^ set(want)
    for table, rows in want.items():
        assert got[table] == rows, table
