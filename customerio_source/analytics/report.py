"""The report: one self-contained HTML file (inline SVG charts, a small inline script for PNG export,
no external resource) from the models, anomalies and forecasts of a dataset."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass, field
from html import escape
from typing import Any

from .charts import Band, Line, bar_chart, fmt, line_chart
from .definitions import (
    ACTIVITY_DAILY,
    ANOMALIES,
    CAMPAIGN_PERFORMANCE,
    COUNT_NAMES,
    ENGAGEMENT_DAILY,
    ENGAGEMENT_WEEKLY,
    FORECAST,
    FUNNEL,
    RECONCILIATION,
    SERIES,
)
from .models import AnalyticsInputError
from .series import _as_date

TREND_COUNTS = ("sent", "delivered", "opened", "clicked", "converted")
MARKED_COUNTS = ("sent", "opened")
"""Counts whose spike days the daily chart marks (the small counts' spikes are in the anomaly table)."""
TOP_ACTIVITY_SERIES = 6
FORECAST_CHARTS = 6
FORECAST_CONTEXT_DAYS = 56
LEADERBOARD_ROWS = 15
ANOMALY_ROWS = 60


@dataclass
class ReportData:
    """Everything the page shows, read from the warehouse."""

    dataset: str
    destination: str
    tables: set[str]
    daily: dict[dt.date, dict[str, float]] = field(default_factory=dict)
    weekly: dict[dt.date, dict[str, float]] = field(default_factory=dict)
    activity: dict[str, dict[dt.date, float]] = field(default_factory=dict)
    anomalies: list[dict[str, Any]] = field(default_factory=list)
    forecasts: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    leaderboard: list[dict[str, Any]] = field(default_factory=list)
    differences: list[dict[str, Any]] = field(default_factory=list)
    reconciled_rows: int = 0
    loaded_at: Any = None
    skipped: dict[str, str] = field(default_factory=dict)
    not_forecast: dict[str, str] = field(default_factory=dict)

    @property
    def time_range(self) -> tuple[dt.date, dt.date] | None:
        days = list(self.daily) + [d for points in self.activity.values() for d in points]
        return (min(days), max(days)) if days else None


def _rows(client: Any, sql: str) -> list[tuple]:
    return list(client.execute_sql(sql) or [])


def collect(pipeline: Any) -> ReportData:
    """Read the report's data; sections whose tables are missing are listed in ``skipped`` with why."""
    from .dialects import dialect_for
    from .models import loaded_columns, never_loaded

    dialect = dialect_for(pipeline.destination.destination_name)
    with pipeline.sql_client() as client:
        tables = set(loaded_columns(pipeline, client, dialect))
        models = {ENGAGEMENT_DAILY, ACTIVITY_DAILY} & tables
        if not models:
            if "messages" in tables or "activities" in tables:
                raise AnalyticsInputError(
                    f"dataset {pipeline.dataset_name!r} has no models yet: run customerio-pipeline models "
                    f"--dataset-name {pipeline.dataset_name} --pipeline-name {pipeline.pipeline_name} first "
                    "(or load with --models)"
                )
            raise AnalyticsInputError(never_loaded(pipeline))
        data = ReportData(pipeline.dataset_name, pipeline.destination.destination_name, tables)
        q = client.make_qualified_table_name
        why_messages = (
            "the messages table is not loaded"
            if "messages" not in tables
            else "engagement models not built (run customerio-pipeline models)"
        )
        if ENGAGEMENT_DAILY in tables:
            sums = ", ".join(f"SUM({c})" for c in COUNT_NAMES)
            for row in _rows(client, f"SELECT day, {sums} FROM {q(ENGAGEMENT_DAILY)} GROUP BY day"):
                data.daily[_as_date(row[0])] = {c: float(v or 0) for c, v in zip(COUNT_NAMES, row[1:], strict=True)}
        else:
            for section in ("daily trends", "funnel"):
                data.skipped[section] = why_messages
        if ENGAGEMENT_WEEKLY in tables:
            sums = ", ".join(f"SUM({c})" for c in COUNT_NAMES)
            for row in _rows(client, f"SELECT week, {sums} FROM {q(ENGAGEMENT_WEEKLY)} GROUP BY week"):
                data.weekly[_as_date(row[0])] = {c: float(v or 0) for c, v in zip(COUNT_NAMES, row[1:], strict=True)}
        else:
            data.skipped["weekly trends"] = why_messages
        if ACTIVITY_DAILY in tables:
            for day, kind, name, events in _rows(
                client,
                f"SELECT day, activity_type, name, SUM(events) FROM {q(ACTIVITY_DAILY)} "
                "GROUP BY day, activity_type, name",
            ):
                key = f"activity.{kind}" + (f":{name}" if name else "")
                data.activity.setdefault(key, {})[_as_date(day)] = float(events)
        else:
            data.skipped["activity trends"] = (
                "the activities table is not loaded"
                if "activities" not in tables
                else "activity_daily not built (run customerio-pipeline models)"
            )
        if CAMPAIGN_PERFORMANCE in tables:
            names = (
                "source_type",
                "source_id",
                "source_name",
                "sent",
                "delivered",
                "opened",
                "clicked",
                "converted",
                "open_rate",
                "click_rate",
                "conversion_rate",
                "sent_30d",
                "open_rate_30d",
                "click_rate_30d",
            )
            for row in _rows(
                client,
                f"SELECT {', '.join(names)} FROM {q(CAMPAIGN_PERFORMANCE)} "
                f"ORDER BY sent DESC, source_type, source_id LIMIT {LEADERBOARD_ROWS}",
            ):
                data.leaderboard.append(dict(zip(names, row, strict=True)))
        else:
            data.skipped["campaign leaderboard"] = why_messages
        if RECONCILIATION in tables:
            names = (
                "source_type",
                "source_id",
                "metric",
                "window_start",
                "window_end",
                "from_messages",
                "from_metrics",
                "difference",
            )
            data.reconciled_rows = int(_rows(client, f"SELECT COUNT(*) FROM {q(RECONCILIATION)}")[0][0])
            for row in _rows(
                client,
                f"SELECT {', '.join(names)} FROM {q(RECONCILIATION)} WHERE difference <> 0 "
                "ORDER BY ABS(difference) DESC, source_type, source_id, metric LIMIT 40",
            ):
                data.differences.append(dict(zip(names, row, strict=True)))
        else:
            data.skipped["metrics reconciliation"] = (
                "no *_metrics table is loaded" if "messages" in tables else why_messages
            )
        built = SERIES in tables  # a build writes the series table, and the two below even when empty
        if SERIES in tables:
            for name, note in _rows(client, f"SELECT series, note FROM {q(SERIES)} WHERE note IS NOT NULL"):
                data.not_forecast[str(name)] = str(note)
        if ANOMALIES in tables:
            names = ("series", "day", "value", "expected", "z", "kind")
            for row in _rows(client, f"SELECT {', '.join(names)} FROM {q(ANOMALIES)} ORDER BY day, series, kind"):
                data.anomalies.append(dict(zip(names, row, strict=True)))
        elif not built:
            data.skipped["anomalies"] = "engagement_anomalies not built (run customerio-pipeline models)"
        if FORECAST in tables:
            names = (
                "series",
                "day",
                "kind",
                "forecast",
                "lower_80",
                "upper_80",
                "lower_95",
                "upper_95",
                "actual",
                "model",
                "backtest_mape",
                "backtest_mase",
            )
            for row in _rows(client, f"SELECT {', '.join(names)} FROM {q(FORECAST)} ORDER BY series, kind, day"):
                record = dict(zip(names, row, strict=True))
                record["day"] = _as_date(record["day"])
                data.forecasts.setdefault(record["series"], []).append(record)
        elif not built:
            data.skipped["forecasts"] = "engagement_forecast not built (run customerio-pipeline models)"
        if "_dlt_loads" in tables:
            rows = _rows(
                client,
                f"SELECT MAX(inserted_at) FROM {q('_dlt_loads')} WHERE status = 0 "
                "AND schema_name <> 'customerio_analytics'",
            )
            data.loaded_at = rows[0][0] if rows else None
    return data


def daily_series(data: ReportData) -> dict[str, dict[dt.date, float]]:
    """Every daily series the page knows, by name (``messages.<count>`` and activities)."""
    out: dict[str, dict[dt.date, float]] = {}
    for day, counts in data.daily.items():
        for name, value in counts.items():
            out.setdefault(f"messages.{name}", {})[day] = value
    out.update(data.activity)
    return out


def _spike_markers(data: ReportData, series: str, points: dict[dt.date, float]) -> list[tuple[dt.date, float, str]]:
    out = []
    for a in data.anomalies:
        if a["series"] == series and a["kind"] == "spike":
            day = _as_date(a["day"])
            value = points.get(day, float(a["value"]))
            out.append(
                (
                    day,
                    value,
                    f"{series} spike on {day}: {fmt(float(a['value']))} "
                    f"(expected {fmt(float(a['expected']))}, z {float(a['z']):.1f})",
                )
            )
    return out


def _figure(chart_id: str, svg: str, caption: str = "") -> str:
    cap = f"<figcaption>{escape(caption)}</figcaption>" if caption else ""
    return (
        f'<figure class="chart" data-chart="{escape(chart_id)}">{svg}{cap}'
        f'<button type="button" class="png" data-for="{escape(chart_id)}">Download PNG</button></figure>'
    )


def _pct(value: Any) -> str:
    return "–" if value is None else f"{100 * float(value):.1f}%"


def _fixed(value: Any, digits: int, unit: str = "") -> str:
    return "–" if value is None else f"{float(value):.{digits}f}{unit}"


def _num(value: Any) -> str:
    return "–" if value is None else f"{float(value):,.0f}"


def render(data: ReportData, generated_at: dt.datetime | None = None) -> str:
    """The page, as one HTML string."""
    generated_at = generated_at or dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    sections: list[str] = []
    charts: list[str] = []
    time_range = data.time_range
    header = [f"<p>Dataset <code>{escape(data.dataset)}</code> on {escape(data.destination)}."]
    if time_range:
        days = (time_range[1] - time_range[0]).days + 1
        header.append(f" Data from <b>{time_range[0]}</b> to <b>{time_range[1]}</b> ({days} days).")
    loaded = escape(str(data.loaded_at or "unknown"))
    header.append(f" Loaded at <b>{loaded}</b>; report generated {generated_at.isoformat()}.</p>")
    sections.append("".join(header))
    if data.skipped:
        items = "".join(f"<li><b>{escape(k)}</b>: skipped, {escape(v)}</li>" for k, v in sorted(data.skipped.items()))
        sections.append(f'<div class="note"><p>Some sections are skipped:</p><ul>{items}</ul></div>')

    # daily and weekly trends
    if data.daily:
        lines = []
        for count in TREND_COUNTS:
            points = sorted((d, c[count]) for d, c in data.daily.items())
            marked = _spike_markers(data, f"messages.{count}", dict(points)) if count in MARKED_COUNTS else []
            lines.append(Line(count, points, markers=marked))
        svg = line_chart("daily-engagement", "Daily deliveries by outcome (day the delivery was created)", lines)
        charts.append(
            _figure(
                "daily-engagement",
                svg,
                "Red rings: spike days of sent and opened (above the trailing mean + kσ, with a minimum volume); "
                "every series' spikes are in the anomaly table.",
            )
        )
    if data.weekly:
        lines = [Line(count, sorted((w, c[count]) for w, c in data.weekly.items())) for count in TREND_COUNTS]
        charts.append(
            _figure(
                "weekly-engagement", line_chart("weekly-engagement", "Weekly deliveries (weeks start Monday)", lines)
            )
        )
    if data.activity:
        top = sorted(data.activity, key=lambda s: -sum(data.activity[s].values()))[:TOP_ACTIVITY_SERIES]
        lines = []
        for name in top:
            points = sorted(data.activity[name].items())
            lines.append(Line(name.removeprefix("activity."), points, markers=_spike_markers(data, name, dict(points))))
        svg = line_chart("daily-activity", "Daily activities (events) by type and name", lines)
        charts.append(
            _figure("daily-activity", svg, f"The {len(top)} biggest of {len(data.activity)} activity series.")
        )
    if charts:
        sections.append("<h2>Trends and spike days</h2>" + "".join(charts))

    # forecasts
    fc_parts = []
    if data.forecasts:
        observed = daily_series(data)
        ranked = sorted(data.forecasts, key=lambda s: -sum(observed.get(s, {}).values()))[:FORECAST_CHARTS]
        for i, name in enumerate(ranked):
            rows = data.forecasts[name]
            future = [r for r in rows if r["kind"] == "forecast"]
            backtest = [r for r in rows if r["kind"] == "backtest"]
            history = sorted(observed.get(name, {}).items())
            if future:
                cut = future[0]["day"] - dt.timedelta(days=FORECAST_CONTEXT_DAYS)
                history = [(d, v) for d, v in history if cut <= d < future[0]["day"]]
            lines = [Line("actual", history, color="#111827")]
            if backtest:
                lines.append(
                    Line("backtest", [(r["day"], float(r["forecast"])) for r in backtest], color="#f59e0b", dashed=True)
                )
            lines.append(Line("forecast", [(r["day"], float(r["forecast"])) for r in future], color="#2563eb"))
            bands = [
                Band(
                    "95% interval",
                    [(r["day"], float(r["lower_95"]), float(r["upper_95"])) for r in future],
                    "#93c5fd",
                    0.35,
                ),
                Band(
                    "80% interval",
                    [(r["day"], float(r["lower_80"]), float(r["upper_80"])) for r in future],
                    "#3b82f6",
                    0.35,
                ),
            ]
            model = future[0]["model"] if future else "?"
            mape, mase = (future[0]["backtest_mape"], future[0]["backtest_mase"]) if future else (None, None)
            trust = (
                "no backtest (under 42 days of history)"
                if mape is None and mase is None
                else f"backtest on the last 28 days: MAPE {_fixed(mape, 1, '%')}, MASE {_fixed(mase, 2)}"
                + (" (better than seasonal naive)" if mase is not None and float(mase) < 1 else "")
            )
            chart_id = f"forecast-{i}"
            svg = line_chart(chart_id, f"{name}: 28-day forecast ({model})", lines, bands)
            fc_parts.append(_figure(chart_id, svg, trust))
        table = "".join(
            f"<tr><td>{escape(name)}</td><td>{escape(str(rows[0]['model']))}</td>"
            f"<td>{_fixed(rows[0]['backtest_mape'], 1, '%')}</td><td>{_fixed(rows[0]['backtest_mase'], 2)}</td></tr>"
            for name, rows in sorted(data.forecasts.items())
        )
        fc_parts.append(
            f"<table><thead><tr><th>series</th><th>model</th><th>backtest MAPE</th><th>backtest MASE</th>"
            f"</tr></thead><tbody>{table}</tbody></table>"
        )
    if data.not_forecast:
        items = "".join(
            f"<li><code>{escape(k)}</code>: no forecast, {escape(v)}</li>" for k, v in sorted(data.not_forecast.items())
        )
        fc_parts.append(f'<div class="note"><ul>{items}</ul></div>')
    if fc_parts:
        sections.append("<h2>Forecast vs actual</h2>" + "".join(fc_parts))

    # anomalies
    if "anomalies" not in data.skipped:
        if data.anomalies:
            ranked = sorted(data.anomalies, key=lambda a: -abs(float(a["z"])))[:ANOMALY_ROWS]
            ranked.sort(key=lambda a: (str(a["day"]), a["series"]))
            rows = "".join(
                f"<tr><td>{escape(str(a['day']))}</td><td>{escape(a['series'])}</td><td>{escape(a['kind'])}</td>"
                f"<td>{_num(a['value'])}</td><td>{float(a['expected']):,.1f}</td><td>{float(a['z']):.2f}</td></tr>"
                for a in ranked
            )
            more = (
                f" (the {len(ranked)} largest |z| of {len(data.anomalies)})"
                if len(data.anomalies) > len(ranked)
                else ""
            )
            sections.append(
                f'<h2>Anomalies{more}</h2><table id="anomalies"><thead><tr><th>day</th><th>series</th>'
                f"<th>kind</th><th>value</th><th>expected</th><th>z</th></tr></thead><tbody>{rows}"
                "</tbody></table>"
            )
        else:
            sections.append("<h2>Anomalies</h2><p>No spike days or outliers.</p>")

    # leaderboard and funnel
    if data.leaderboard:
        rows = "".join(
            f"<tr><td>{escape(str(r['source_type']))}</td><td>{escape(str(r['source_name'] or r['source_id']))}</td>"
            f"<td>{_num(r['sent'])}</td><td>{_pct(r['open_rate'])}</td><td>{_pct(r['click_rate'])}</td>"
            f"<td>{_pct(r['conversion_rate'])}</td><td>{_num(r['sent_30d'])}</td><td>{_pct(r['open_rate_30d'])}</td>"
            f"<td>{_pct(r['click_rate_30d'])}</td></tr>"
            for r in data.leaderboard
        )
        bars = [
            (
                str(r["source_name"] or r["source_id"]),
                float(r["sent"] or 0),
                f"{r['source_type']} {r['source_id']}: {_num(r['sent'])} sent",
            )
            for r in data.leaderboard
        ]
        chart = _figure(
            "leaderboard-sent",
            bar_chart("leaderboard-sent", "Deliveries sent by campaign / broadcast / newsletter (lifetime)", bars),
        )
        sections.append(
            "<h2>Campaign leaderboard</h2>"
            + chart
            + '<table id="leaderboard"><thead><tr><th>type</th><th>name</th><th>sent</th><th>open rate</th>'
            "<th>click rate</th><th>conversion</th><th>sent (30 d)</th><th>open rate (30 d)</th>"
            f"<th>click rate (30 d)</th></tr></thead><tbody>{rows}</tbody></table>"
        )
    if data.daily:
        totals = defaultdict(float)
        for counts in data.daily.values():
            for name, value in counts.items():
                totals[name] += value
        bars = [(step, totals[step], f"{step}: {totals[step]:,.0f}") for step in FUNNEL]
        sections.append(
            "<h2>Funnel</h2>"
            + _figure(
                "funnel",
                bar_chart(
                    "funnel",
                    "Funnel: sent → delivered → opened → clicked → converted (all deliveries)",
                    bars,
                    percent_of_first=True,
                ),
            )
        )
    if "metrics reconciliation" not in data.skipped:
        if data.differences:
            rows = "".join(
                f"<tr><td>{escape(str(r['source_type']))} {escape(str(r['source_id']))}</td>"
                f"<td>{escape(r['metric'])}</td><td>{escape(str(r['window_start']))} – "
                f"{escape(str(r['window_end']))}</td><td>{_num(r['from_messages'])}</td>"
                f"<td>{_num(r['from_metrics'])}</td><td>{_num(r['difference'])}</td></tr>"
                for r in data.differences
            )
            sections.append(
                f"<h2>Metrics reconciliation</h2><p>{len(data.differences)} of {data.reconciled_rows} "
                "comparisons differ (largest first; metrics count a metric on the day it happened, messages "
                'on the day the delivery was created).</p><table id="reconciliation"><thead><tr>'
                "<th>source</th><th>metric</th><th>window</th><th>messages</th><th>*_metrics</th>"
                f"<th>difference</th></tr></thead><tbody>{rows}</tbody></table>"
            )
        else:
            sections.append(f"<h2>Metrics reconciliation</h2><p>All {data.reconciled_rows} comparisons agree.</p>")
    return PAGE.format(title=escape(f"Customer.io engagement: {data.dataset}"), body="\n".join(sections), script=SCRIPT)


SCRIPT = """
(function () {
  function download(name, blob) {
    var a = document.createElement('a');
    a.href = URL.createObjectURL(blob);
    a.download = name + '.png';
    document.body.appendChild(a);
    a.click();
    setTimeout(function () { URL.revokeObjectURL(a.href); a.remove(); }, 1000);
  }
  function exportPng(svg) {
    var box = svg.viewBox.baseVal, scale = 2;
    var xml = new XMLSerializer().serializeToString(svg);
    var img = new Image();
    img.onload = function () {
      var canvas = document.createElement('canvas');
      canvas.width = box.width * scale; canvas.height = box.height * scale;
      var ctx = canvas.getContext('2d');
      ctx.fillStyle = '#ffffff'; ctx.fillRect(0, 0, canvas.width, canvas.height);
      ctx.drawImage(img, 0, 0, canvas.width, canvas.height);
      canvas.toBlob(function (blob) { download(svg.id, blob); }, 'image/png');
    };
    img.src = 'data:image/svg+xml;charset=utf-8,' + encodeURIComponent(xml);
  }
  document.querySelectorAll('button.png').forEach(function (button) {
    button.addEventListener('click', function () { exportPng(document.getElementById(button.dataset.for)); });
  });
})();
"""

PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>
body {{ font-family: Helvetica, Arial, sans-serif; margin: 24px auto; max-width: 900px; color: #111827; }}
h1 {{ font-size: 22px; }} h2 {{ font-size: 18px; margin-top: 32px; border-bottom: 1px solid #e5e7eb; }}
figure.chart {{ margin: 16px 0; }} figure.chart svg {{ max-width: 100%; height: auto; border: 1px solid #e5e7eb; }}
figcaption {{ font-size: 12px; color: #4b5563; }}
button.png {{ font-size: 12px; margin-top: 4px; cursor: pointer; }}
table {{ border-collapse: collapse; font-size: 12px; margin: 12px 0; width: 100%; }}
th, td {{ border-bottom: 1px solid #e5e7eb; padding: 4px 6px; text-align: left; }}
.note {{ background: #fef3c7; padding: 4px 12px; font-size: 13px; }}
code {{ font-size: 12px; }}
</style></head>
<body><h1>{title}</h1>
{body}
<script>{script}</script>
</body></html>
"""


def write_report(pipeline: Any, out: str) -> ReportData:
    """Collect the dataset's analytics and write the page to ``out``."""
    data = collect(pipeline)
    html = render(data)
    with open(out, "w", encoding="utf-8") as handle:
        handle.write(html)
    return data
