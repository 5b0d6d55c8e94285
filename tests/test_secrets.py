"""The App API key never leaves the Authorization header.

A recognisable key goes through a run with DEBUG logging that meets 5xx answers and succeeds, and a run
whose key is revoked mid-way (401). The key must not appear in captured logs, stdout/stderr, exception
messages and tracebacks, dlt's trace (object, dict, the saved file, `dlt pipeline ... trace`), the pipeline
state, or any file dlt wrote (schemas, load packages).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import subprocess
import sys
import traceback
import uuid
from collections.abc import Iterator
from pathlib import Path

import dlt
import pytest

from customerio_source import customerio_source, load
from customerio_source.simulator import SimulatorServer, Workspace

from .fault_injection import FaultConfig, FaultState

CANARY = f"sk-SECRET-canary-{uuid.uuid4().hex[:12]}"
TABLES = ["campaigns", "segments", "customers", "customer_attributes"]
DLT_CLI = "import sys; from dlt._workspace.cli._dlt import _main; sys.argv[0] = 'dlt'; sys.exit(_main())"


@pytest.fixture(scope="module")
def server() -> Iterator[SimulatorServer]:
    with SimulatorServer(Workspace(scale="tiny", seed=7), api_key=CANARY) as srv:
        yield srv


def assert_clean(text: str, where: str) -> None:
    assert CANARY not in text, f"the key leaked into {where}"
    assert CANARY[len("sk-SECRET-"):] not in text, f"part of the key leaked into {where}"


def scan_files(root: Path) -> int:
    scanned = 0
    for path in root.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert CANARY.encode() not in data, f"the key leaked into {path}"
            scanned += 1
    return scanned


def test_key_stays_out_of_logs_errors_traces_and_state(server, tmp_path, caplog, monkeypatch):
    caplog.set_level(logging.DEBUG)
    for name in ("customerio_source", "dlt", "urllib3"):
        logging.getLogger(name).setLevel(logging.DEBUG)
    monkeypatch.setenv("RUNTIME__LOG_LEVEL", "DEBUG")
    monkeypatch.setenv("RUNTIME__DLTHUB_TELEMETRY", "false")  # offline
    # the key comes through dlt's config resolution (so it lands in the trace's resolved values, if anywhere)
    monkeypatch.setenv("SOURCES__CUSTOMERIO__API_KEY", CANARY)
    pipelines_dir = tmp_path / "pipelines"
    pipeline = dlt.pipeline(pipeline_name="secrets_check", pipelines_dir=str(pipelines_dir),
                            destination=dlt.destinations.duckdb(str(tmp_path / "w.duckdb")), dataset_name="cio")

    # 1) 5xx answers, retried, then success
    server.faults = FaultState(FaultConfig(seed=2, error_rate=0.3))
    server.stats.reset()
    load(pipeline, customerio_source(base_url=server.base_url, tables=TABLES, rate_limit=0))
    assert any(code >= 500 for code in server.stats.status_counts), server.stats.status_counts
    # the key really was sent (otherwise the simulator would have answered 401)
    assert server.stats.status_counts.get(401, 0) == 0

    # 2) the key revoked mid-run: 401
    server.faults = FaultState(FaultConfig(revoke_after=3))
    with pytest.raises(Exception) as failure:
        load(pipeline, customerio_source(base_url=server.base_url, tables=TABLES, rate_limit=0))
    server.faults = FaultState(FaultConfig())
    chain = []
    current: BaseException | None = failure.value
    while current is not None and len(chain) < 20:
        chain.append(current)
        current = getattr(current, "exception", None) or current.__cause__ or current.__context__
    assert any("rejected the App API key (401)" in str(e) for e in chain)
    for exc in chain:
        assert_clean(str(exc), f"{type(exc).__name__} message")
        assert_clean(repr(exc), f"{type(exc).__name__} repr")
    assert_clean("".join(traceback.format_exception(failure.value)), "the traceback")

    assert_clean(caplog.text, "the logs")
    assert "customerio_source" in caplog.text and "retrying " in caplog.text  # DEBUG logging was on
    trace = pipeline.last_trace
    assert_clean(str(trace), "str(trace)")
    assert_clean(repr(trace), "repr(trace)")
    assert_clean(str(trace.asdict()), "trace.asdict()")
    assert_clean(str([dataclasses.asdict(v) if dataclasses.is_dataclass(v) else v._asdict()
                      for v in trace.resolved_config_values]), "trace.resolved_config_values")
    assert_clean(str(pipeline.state), "the pipeline state")
    assert_clean(str(pipeline.default_schema.to_dict()), "the schema")
    assert scan_files(pipelines_dir) > 3  # state, schema, trace, load packages


def run_cli(args: list[str], tmp_path: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("CUSTOMERIO_", "SOURCES__", "DESTINATION__"))}
    full_env.update(DLT_DATA_DIR=str(tmp_path / "dlt"), DESTINATION__DUCKDB__CREDENTIALS=str(tmp_path / "w.duckdb"),
                    CUSTOMERIO_APP_API_KEY=CANARY, RUNTIME__DLTHUB_TELEMETRY="false", **(env or {}))
    return subprocess.run([sys.executable, *args], cwd=tmp_path, env=full_env, capture_output=True, text=True,
                          timeout=120)


def test_key_stays_out_of_the_cli_output_trace_and_files(server, tmp_path):
    cli = ["-m", "customerio_source.cli", "--debug", "--progress-every", "0.2", "--base-url", server.base_url,
           "--tables", ",".join(TABLES), "--rate-limit", "0", "--pipeline-name", "cio_secrets"]
    server.faults = FaultState(FaultConfig(seed=4, error_rate=0.3))
    ok = run_cli(cli, tmp_path)
    assert ok.returncode == 0, ok.stderr
    assert "retrying GET" in ok.stderr or "retrying POST" in ok.stderr  # DEBUG on, 5xx met
    server.faults = FaultState(FaultConfig(revoke_after=2))
    rejected = run_cli(cli, tmp_path)
    server.faults = FaultState(FaultConfig())
    assert rejected.returncode == 3, rejected.stderr
    assert "Traceback" in rejected.stderr and "rejected the App API key (401)" in rejected.stderr
    trace = run_cli(["-c", DLT_CLI, "pipeline", "cio_secrets", "trace"], tmp_path)
    assert trace.returncode == 0 and "cio_secrets" in trace.stdout + trace.stderr, trace.stderr
    for name, result in (("ok", ok), ("rejected", rejected), ("trace", trace)):
        assert_clean(result.stdout, f"stdout of the {name} run")
        assert_clean(result.stderr, f"stderr of the {name} run")
    assert list((tmp_path / "dlt").rglob("trace.pickle"))
    assert scan_files(tmp_path) > 3  # the DuckDB file, state, schemas, trace, load packages
