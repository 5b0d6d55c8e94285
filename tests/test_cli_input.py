"""Bad input: exit code != 0, one clear line, no traceback without --debug, nothing loaded."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from customerio_source.docs import BEGIN, END, catalogue_markdown

from .conftest import run_cli

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize(
    "args, env, expected",
    [
        ([], {}, "no App API key"),
        (["--tables", "campaignz"], {"CUSTOMERIO_APP_API_KEY": "k"}, "unknown table 'campaignz'; valid tables: all,"),
        (["--tables", "campaign_metrics:minutes"], {"CUSTOMERIO_APP_API_KEY": "k"}, "unknown metrics period 'minutes'"),
        (
            ["--interval-start", "2026-02-01", "--interval-end", "2026-01-01"],
            {"CUSTOMERIO_APP_API_KEY": "k"},
            "--interval-end (2026-01-01T00:00:00+00:00) must be after --interval-start",
        ),
        (
            ["--interval-start", "last tuesday"],
            {"CUSTOMERIO_APP_API_KEY": "k"},
            "--interval-start: cannot read 'last tuesday'",
        ),
        (["--base-url", "ftp://x"], {"CUSTOMERIO_APP_API_KEY": "k"}, "--base-url must start with http"),
        (["--destination", "postgres"], {"CUSTOMERIO_APP_API_KEY": "k"}, "destination postgres is not configured"),
    ],
)
def test_bad_input_fails_early_with_one_line(tmp_path, args, env, expected):
    result = run_cli(args, tmp_path, env)
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ") and expected in lines[0], lines[0]
    assert "Traceback" not in result.stderr
    assert not list(tmp_path.glob("*.duckdb"))  # nothing loaded


def test_unreachable_base_url_fails_cleanly(tmp_path):
    url = f"http://127.0.0.1:{free_port()}"
    result = run_cli(
        ["--base-url", url, "--tables", "campaigns"],
        tmp_path,
        {"CUSTOMERIO_APP_API_KEY": "k", "SOURCES__CUSTOMERIO__MAX_ATTEMPTS": "2"},
    )
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "cannot reach" in lines[0], result.stderr
    assert "Traceback" not in result.stderr


def test_readme_table_list_matches_the_catalogue():
    readme = (ROOT / "README.md").read_text()
    block = readme.split(BEGIN)[1].split(END)[0].strip()
    assert block == catalogue_markdown(), "run: python -m customerio_source.docs and paste into README.md"


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    command = 'python3 -m venv .venv && . .venv/bin/activate && pip install -q -e ".[dev]" && pytest'
    assert command in readme
    assert command in (ROOT / ".ci" / "run").read_text()
