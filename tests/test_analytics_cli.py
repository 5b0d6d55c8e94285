"""``customerio-pipeline models`` / ``report`` and the load's ``--models``: results, and bad input as one line."""

from __future__ import annotations

import os
from typing import Any

import dlt
import duckdb
import pytest

from customerio_source.cli import main as cli_main

from .analytics_data import load_dataset
from .conftest import API_KEY


def fixture_pipeline(tmp_path: Any, name: str, tables: tuple[str, ...]) -> dlt.Pipeline:
    """A pipeline the CLI attaches to from ``tmp_path`` (DuckDB file ``<name>.duckdb`` there)."""
    pipeline = dlt.pipeline(
        pipeline_name=name,
        destination=dlt.destinations.duckdb(str(tmp_path / f"{name}.duckdb")),
        dataset_name="customerio",
    )
    load_dataset(pipeline, tables)
    return pipeline


def one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    lines = [line for line in err if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in "\n".join(err), err
    return lines[0]


@pytest.fixture
def in_tmp(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DESTINATION__DUCKDB__CREDENTIALS", raising=False)
    return tmp_path


def test_never_loaded_dataset_says_what_to_load(in_tmp: Any, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["models", "--pipeline-name", "nothing", "--dataset-name", "nowhere"]) == 2
    line = one_error_line(capsys)
    assert "dataset 'nowhere' has no messages or activities rows: load the workspace first" in line
    assert "customerio-pipeline --destination duckdb --dataset-name nowhere --pipeline-name nothing" in line


def test_empty_dataset_is_never_loaded_too(in_tmp: Any, capsys: pytest.CaptureFixture[str]) -> None:
    fixture_pipeline(in_tmp, "only_campaigns", ("campaigns",))
    assert cli_main(["models", "--pipeline-name", "only_campaigns"]) == 2
    assert "has no messages or activities rows" in one_error_line(capsys)
    assert cli_main(["report", "--pipeline-name", "only_campaigns"]) == 2
    assert "has no messages or activities rows" in one_error_line(capsys)


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--timezone", "Mars/Olympus"], "unknown time zone 'Mars/Olympus'"),
        (["--spike-window", "1"], "--spike-window must be at least 2 days"),
        (["--outlier-z", "0"], "must be positive"),
        (["--spike-min-excess", "-1"], "--spike-min-excess must be 0 or more, not -1"),
    ],
)
def test_bad_options(in_tmp: Any, capsys: pytest.CaptureFixture[str], flags: list[str], message: str) -> None:
    fixture_pipeline(in_tmp, "p", ("messages",))
    assert cli_main(["models", "--pipeline-name", "p", *flags]) == 2
    assert message in one_error_line(capsys)


def test_spike_volume_options_reach_the_settings() -> None:
    import argparse

    from customerio_source.analytics.cli import add_model_options, settings_from

    parser = argparse.ArgumentParser()
    add_model_options(parser)
    default = settings_from(parser.parse_args([]))
    assert (default.min_excess, default.poisson_floor) == (5.0, True)
    given = settings_from(parser.parse_args(["--spike-min-excess", "0", "--spike-sample-sigma"]))
    assert (given.min_excess, given.poisson_floor) == (0.0, False)


def test_report_before_models_says_to_build_them(in_tmp: Any, capsys: pytest.CaptureFixture[str]) -> None:
    fixture_pipeline(in_tmp, "p", ("messages",))
    assert cli_main(["report", "--pipeline-name", "p"]) == 2
    assert "has no models yet: run customerio-pipeline models" in one_error_line(capsys)


def test_missing_messages_skips_sections_and_renders_the_rest(in_tmp: Any, capsys: pytest.CaptureFixture[str]) -> None:
    fixture_pipeline(in_tmp, "acts", ("activities",))
    assert cli_main(["models", "--pipeline-name", "acts"]) == 0
    out = capsys.readouterr().out
    assert "skipped engagement_daily: the messages table is not loaded (add it to --tables)" in out
    assert "no forecast for activity.event:email_opened: 1 days of history (a forecast needs at least 14)" in out
    assert cli_main(["report", "--pipeline-name", "acts", "--out", "r.html"]) == 0
    out = capsys.readouterr().out
    assert "report: daily trends skipped (the messages table is not loaded)" in out
    assert "report: campaign leaderboard skipped" in out
    html = (in_tmp / "r.html").read_text()
    assert "Some sections are skipped" in html and "<b>funnel</b>: skipped, the messages table is not loaded" in html
    assert 'id="daily-activity"' in html and 'id="daily-engagement"' not in html
    assert "no forecast, 1 days of history (a forecast needs at least 14)" in html


def test_models_then_report(in_tmp: Any, capsys: pytest.CaptureFixture[str]) -> None:
    fixture_pipeline(in_tmp, "full", ("messages", "activities", "campaigns", "broadcasts", "campaign_metrics"))
    assert cli_main(["models", "--pipeline-name", "full", "--timezone", "Europe/Berlin"]) == 0
    out = capsys.readouterr().out
    assert "models built" in out and "engagement_daily, engagement_weekly, campaign_performance" in out
    assert cli_main(["report", "--pipeline-name", "full", "--out", "r.html"]) == 0
    html = (in_tmp / "r.html").read_text()
    assert "Spring Sale" in html and 'id="funnel"' in html and "comparisons differ" in html


def test_load_with_models_flag(tiny_server: Any, in_tmp: Any, capsys: pytest.CaptureFixture[str]) -> None:
    argv = [
        "--base-url",
        tiny_server.base_url,
        "--tables",
        "campaigns,messages,activities",
        "--pipeline-name",
        "withmodels",
        "--rate-limit",
        "0",
        "--progress-every",
        "0",
        "--models",
    ]
    os.environ["CUSTOMERIO_APP_API_KEY"] = API_KEY
    try:
        assert cli_main(argv) == 0
    finally:
        os.environ.pop("CUSTOMERIO_APP_API_KEY", None)
    out = capsys.readouterr().out
    assert "models built" in out and "engagement_forecast" in out
    with duckdb.connect(str(in_tmp / "withmodels.duckdb"), read_only=True) as con:
        sent = con.execute("SELECT SUM(sent) FROM customerio.engagement_daily").fetchone()[0]
        live = con.execute("SELECT COUNT(metrics__sent) FROM customerio.messages").fetchone()[0]
        assert sent == live > 0
        assert con.execute("SELECT COUNT(*) FROM customerio.engagement_forecast").fetchone()[0] > 0
