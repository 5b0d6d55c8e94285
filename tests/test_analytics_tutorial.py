"""The seed's loop end to end on the tutorial profile (simulate -> send -> extract -> models -> report), the
detector's rates on its injected spike days, and the report in a real headless browser (Debian's chromium)."""

from __future__ import annotations

import datetime as dt
import os
import shutil
from collections.abc import Iterator
from typing import Any

import pytest

from customerio_source.analytics.build import Settings
from customerio_source.analytics.report import write_report
from customerio_source.analytics.tutorial import run_tutorial
from customerio_source.simulator.profiles import TUTORIAL_DEVICES, TUTORIAL_EVENTS, tutorial_spike_days

ANCHOR = int(dt.datetime(2026, 11, 20, 15, 30, tzinfo=dt.timezone.utc).timestamp())
CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")


@pytest.fixture(scope="module")
def tutorial(tmp_path_factory: Any) -> Iterator[dict[str, Any]]:
    """The tutorial loop into DuckDB once per module, and its report."""
    folder = tmp_path_factory.mktemp("tutorial")
    cwd = os.getcwd()
    os.chdir(folder)
    try:
        run = run_tutorial(seed=7, settings=Settings(), anchor=ANCHOR, pipelines_dir=str(folder / "pipelines"))
        out = folder / "report.html"
        data = write_report(run.pipeline, str(out))
        yield {"pipeline": run.pipeline, "run": run, "report": out, "data": data, "folder": folder}
    finally:
        os.chdir(cwd)


def query(pipeline: Any, sql: str) -> list[tuple]:
    with pipeline.sql_client() as client:
        return list(client.execute_sql(sql.replace("{ds}", client.make_qualified_table_name("X")[:-4])) or [])


def test_the_loop_loads_the_seed_workload(tutorial: dict[str, Any]) -> None:
    pipeline = tutorial["pipeline"]
    rows = query(
        pipeline,
        "SELECT name, SUM(events), MIN(day), MAX(day) FROM {ds}.activity_daily "
        "WHERE activity_type = 'event' GROUP BY name ORDER BY name",
    )
    assert [r[0] for r in rows] == sorted(TUTORIAL_EVENTS)
    total = sum(int(r[1]) for r in rows)
    assert 30 * 1000 <= total <= 60 * 1000  # 1,000 people, 30-60 events each
    first_day = dt.date(2026, 11, 20) - dt.timedelta(days=180)
    assert all(r[2] == first_day and r[3] == dt.date(2026, 11, 19) for r in rows)
    campaigns = query(
        pipeline,
        "SELECT source_name FROM {ds}.campaign_performance WHERE source_type = 'campaign' ORDER BY source_name",
    )
    assert [r[0] for r in campaigns] == ["Black Friday", "Spring Sale", "Summer Promo"]


def test_the_people_and_events_went_through_the_send_direction(tutorial: dict[str, Any]) -> None:
    """The workspace starts without events; every event in the warehouse was pushed over HTTP (Track API),
    and every person's device attribute came with the push."""
    run, pipeline = tutorial["run"], tutorial["pipeline"]
    assert run.activities_before == 0
    assert run.people == 1000 and 30 * 1000 <= run.events <= 60 * 1000
    assert run.items == run.people + run.events and run.rejected == 0
    assert run.activities_after == run.events
    assert 2 <= run.requests <= 60  # 500 KB batches, not a request per row
    extracted = query(pipeline, "SELECT COUNT(*), COUNT(DISTINCT customer_id) FROM {ds}.activities")[0]
    modelled = query(pipeline, "SELECT SUM(events) FROM {ds}.activity_daily")[0][0]
    assert extracted == (run.events, 1000) and modelled == run.events
    campaigns = query(
        pipeline,
        "SELECT COUNT(DISTINCT json_extract_string(data, '$.campaign')), "
        "COUNT(DISTINCT json_extract_string(data, '$.device')) FROM {ds}.activities",
    )[0]
    assert campaigns == (3, 3)
    devices = query(
        pipeline,
        "SELECT json_extract_string(attributes, '$.device') AS device, COUNT(*) FROM {ds}.customer_attributes "
        "WHERE id LIKE '%-%-4%' GROUP BY device ORDER BY device",
    )
    assert [d for d, _ in devices] == sorted(TUTORIAL_DEVICES) and sum(n for _, n in devices) == 1000


def test_detector_finds_injected_spike_days_with_few_false_ones(tutorial: dict[str, Any]) -> None:
    pipeline = tutorial["pipeline"]
    truth = set(tutorial_spike_days(ANCHOR))
    window = Settings().window
    for name in TUTORIAL_EVENTS:
        series = f"activity.event:{name}"
        found = {
            r[0]
            for r in query(
                pipeline, f"SELECT day FROM {{ds}}.engagement_anomalies WHERE series = '{series}' AND kind = 'spike'"
            )
        }
        days = query(pipeline, f"SELECT COUNT(DISTINCT day) FROM {{ds}}.activity_daily WHERE name = '{name}'")[0][0]
        evaluated = days - 1 - window  # the newest day is left out (partial), the first `window` days are baseline
        assert len(found & truth) >= 0.9 * len(truth), (series, sorted(found), sorted(truth))
        false = found - truth
        assert len(false) * 90 <= evaluated, (series, sorted(false), evaluated)


def test_forecasts_for_every_event_series(tutorial: dict[str, Any]) -> None:
    pipeline = tutorial["pipeline"]
    rows = query(
        pipeline,
        "SELECT series, kind, COUNT(*), MIN(day), MAX(lower_95 <= forecast AND forecast <= "
        "upper_95) FROM {ds}.engagement_forecast WHERE series LIKE 'activity.event:%' "
        "GROUP BY series, kind ORDER BY series, kind",
    )
    assert [(r[0], r[1], r[2]) for r in rows] == [
        (f"activity.event:{n}", kind, 28) for n in sorted(TUTORIAL_EVENTS) for kind in ("backtest", "forecast")
    ]
    assert all(r[3] == dt.date(2026, 11, 20) for r in rows if r[1] == "forecast")  # the day after the as-of day
    mase = query(pipeline, "SELECT MAX(backtest_mase) FROM {ds}.engagement_forecast WHERE series LIKE 'activity.%'")
    assert 0 < mase[0][0] < 1.5


def test_report_is_self_contained_with_every_section(tutorial: dict[str, Any]) -> None:
    html = tutorial["report"].read_text(encoding="utf-8")
    for section in (
        "Trends and spike days",
        "Forecast vs actual",
        "Anomalies",
        "Campaign leaderboard",
        "Funnel",
        "Metrics reconciliation",
        "Data from <b>",
    ):
        assert section in html, section
    for external in ("<link", " src=", 'href="http', "@import", "url("):
        assert external not in html, external
    assert html.count('<figure class="chart"') >= 9
    assert tutorial["data"].skipped == {}


def _chromium_or_skip() -> str:
    if not shutil.which(CHROMIUM) and not os.path.exists(CHROMIUM):
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{CHROMIUM} is missing under CI (.ci/run installs Debian's chromium)", pytrace=False)
        pytest.skip(f"{CHROMIUM} not installed (apt-get install -y chromium)")
    pytest.importorskip("playwright", reason="playwright is in the dev extra")
    return CHROMIUM


def test_report_in_a_headless_browser(tutorial: dict[str, Any], tmp_path: Any) -> None:
    chromium = _chromium_or_skip()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        try:
            page = browser.new_page(accept_downloads=True, viewport={"width": 1000, "height": 900})
            errors: list[str] = []
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on(
                "request",
                lambda r: (
                    errors.append(f"request {r.url}") if not r.url.startswith(("file:", "data:", "blob:")) else None
                ),
            )
            page.goto(tutorial["report"].as_uri())
            page.wait_for_load_state("load")
            charts = page.evaluate("""() => Array.from(document.querySelectorAll('figure.chart svg')).map(svg => {
                const drawn = Array.from(svg.querySelectorAll('[data-series]')).filter(el => {
                    const box = el.getBBox();
                    const long = el.tagName !== 'path' || el.getTotalLength() > 10;
                    return (box.width > 0 || box.height > 0) && long;
                });
                const rect = svg.getBoundingClientRect();
                return {id: svg.id, drawn: drawn.length, width: rect.width, height: rect.height};
            })""")
            assert len(charts) >= 9
            for chart in charts:
                assert chart["drawn"] > 0 and chart["width"] > 100 and chart["height"] > 100, chart
            for chart in charts:  # every chart exports as a PNG from the page
                with page.expect_download() as download:
                    page.click(f"button.png[data-for='{chart['id']}']")
                saved = tmp_path / download.value.suggested_filename
                download.value.save_as(saved)
                content = saved.read_bytes()
                assert saved.name == f"{chart['id']}.png" and content[:8] == b"\x89PNG\r\n\x1a\n", chart
                assert len(content) > 5_000, (chart, len(content))  # a blank 1720x600 PNG is ~5 KB smaller
            shot = tmp_path / "report.png"
            page.screenshot(path=str(shot), full_page=True)
            assert shot.stat().st_size > 50_000
            readme_shot = os.environ.get("CIO_REPORT_SCREENSHOT")  # docs/analytics-report.png, for the README
            if readme_shot:
                page.screenshot(path=readme_shot, full_page=True, clip={"x": 0, "y": 0, "width": 960, "height": 2250})
            assert errors == []
        finally:
            browser.close()
