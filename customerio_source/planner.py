"""`customerio-pipeline plan`: the requests and the time a full and an incremental run will take.

A handful of cheap requests (the workspace-level lists, which every run reads anyway; the workspace's
counts from ``GET /v1/workspaces``; segment sizes from ``…/customer_count``; one page of deliveries per
window; a few pages of activities; the first page of objects and suppressions), then per table the requests
of a full run and of an incremental run, from the same declarations and functions the resources use: page
sizes from the catalogue, the delivery windows of :mod:`customerio_source.deliveries`, the deliveries
estimate and the export plan of :mod:`customerio_source.bulk`.

Estimates, not counts, where the API has no count: deliveries per window come from the density of the
window's newest page (``bulk.estimate_deliveries``, what ``--bulk auto`` decides with), activities from the
density of their newest pages over the API's 30 days. An incremental run is planned for the watermarks a
local pipeline of that name saved (``--pipeline-name``), else for a run ``--since-hours`` after the last.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from . import builders
from .bulk import AUTO_PEOPLE, EXPORT_REQUESTS, delivery_jobs, estimate_deliveries
from .catalogue import CATALOGUE, TableSpec
from .client import CustomerIOClient, RequestStats
from .context import RunContext, records
from .deliveries import SPLIT_MIN_PAGES, delivery_range, parent_windows, windows
from .errors import ConfigError, NotFoundError
from .late_engagement import engagement_delivery
from .people import ATTRIBUTES_BATCH, PEOPLE_PAGE_SIZE
from .people_changes import CLOCK_MARGIN, PROFILE_CHANGE_TYPES
from .small import SUPPRESSION_TYPES, SUPPRESSIONS_PAGE_SIZE

ENGAGED_SAMPLE = 8  # engaged deliveries the planner looks up to see how many are older than the lookback
ACTIVITY_WINDOW = timedelta(days=30)  # "guaranteed to return activity history within the past 30 days"
ACTIVITY_SAMPLE_PAGES = 5  # newest pages of activities read to measure their density
DEFAULT_RATE_LIMIT = 10.0  # the App API's limit per workspace
DEFAULT_SINCE_HOURS = 24.0  # an incremental run a day after the last, when no local pipeline state says when
# tables whose parent rows list their children (the API's campaign/broadcast `actions`, newsletter `content_ids`)
CHILD_LISTS = {"campaign_actions": "actions", "broadcast_actions": "actions", "newsletter_variants": "content_ids"}


@dataclass
class TablePlan:
    """The requests one table costs in a full and in an incremental run."""

    table: str
    full: int
    incremental: int
    basis: str
    exports_full: int | None = None
    """With exports (`--bulk exports`): the requests of a full run, where the table can be exported."""
    exports: int = 0
    """How many exports that full run creates."""


@dataclass
class Plan:
    tables: list[TablePlan]
    rate_limit: float
    planning_requests: int
    bulk: str
    bulk_choice: dict[str, bool] = field(default_factory=dict)
    """`--bulk auto`: table -> exports chosen (True) or the API path (False)."""
    notes: list[str] = field(default_factory=list)

    def total(self, phase: str) -> int:
        return sum(getattr(t, phase) for t in self.tables)

    def seconds(self, requests: int) -> float | None:
        return requests / self.rate_limit if self.rate_limit > 0 else None


class Sampler:
    """The few requests the plan rests on, each made once."""

    def __init__(self, ctx: RunContext, since_hours: float = DEFAULT_SINCE_HOURS) -> None:
        self.ctx = ctx
        self.since_hours = since_hours
        self._workspace: dict[str, Any] | None = None
        self._activities: tuple[int, float, float] | None = None
        self._stamps: list[float] = []
        self._engaged: dict[str, float] = {}  # delivery id -> newest engagement activity in the sample
        self._ended = False
        self._old_share: float | None = None
        self.activity_scan_planned = False  # the late-engagement scan is shared: planned for one table

    def workspace(self) -> dict[str, Any]:
        """This key's workspace from ``GET /v1/workspaces``: its cached counts (`people`, `objects`, ...).
        The API lists every workspace of the account; we assume the first is the key's own."""
        if self._workspace is None:
            rows = self.ctx.list_rows("workspaces")
            self._workspace = rows[0] if rows else {}
        return self._workspace

    def people(self) -> int:
        count = self.workspace().get("people")
        if isinstance(count, int):
            return count
        # no count: the people search, stopping at AUTO_PEOPLE (as `--bulk auto` counts)
        from .bulk import count_people

        return count_people(self.ctx, AUTO_PEOPLE)

    def activities(self) -> tuple[int, float, float]:
        """(rows sampled, seconds they span back from now, share of profile-changing types), from the newest
        ``ACTIVITY_SAMPLE_PAGES`` pages; when the sample reaches the end, the count is exact."""
        if self._activities is None:
            spec = CATALOGUE["activities"]
            rows: list[dict[str, Any]] = []
            ended = True
            for n, payload in enumerate(
                self.ctx.client.pages("GET", spec.path, {"limit": spec.page_size}, table="activities"), 1
            ):
                page = records(payload, spec.envelope)
                rows.extend(page)
                if not page:
                    break
                if n >= ACTIVITY_SAMPLE_PAGES and payload.get("next"):
                    ended = False
                    break
            stamps = [float(r["timestamp"]) for r in rows if r.get("timestamp")]
            self._stamps, self._ended = stamps, ended
            for row in rows:
                delivery = engagement_delivery(row)
                if delivery and row.get("timestamp"):
                    self._engaged[delivery] = max(self._engaged.get(delivery, 0.0), float(row["timestamp"]))
            changing = sum(1 for r in rows if r.get("type") in PROFILE_CHANGE_TYPES) / max(1, len(rows))
            if ended or len(stamps) < 2:
                self._activities = (len(rows), ACTIVITY_WINDOW.total_seconds(), changing)
            else:  # the sample's own span: the workspace's clock need not be ours, nor its newest row now
                self._activities = (len(stamps) - 1, max(1.0, max(stamps) - min(stamps)), changing)
        return self._activities

    def activities_in(self, seconds: float) -> float:
        rows, span, _ = self.activities()
        return rows * min(seconds, ACTIVITY_WINDOW.total_seconds()) / span

    def activities_since(self, watermark: datetime | None, seconds: float) -> float:
        """Activities an incremental run reads: counted in the sample when it reaches back to ``watermark``,
        else ``seconds`` of the sample's density."""
        self.activities()
        if watermark is not None and self._stamps and (self._ended or min(self._stamps) < watermark.timestamp()):
            return float(sum(1 for t in self._stamps if t >= watermark.timestamp()))
        return self.activities_in(seconds)

    def engaged_since(self, watermark: datetime | None, seconds: float) -> float:
        """Deliveries with an engagement activity since ``watermark`` (else in the last ``seconds``): counted
        in the sample, scaled by the sample's density when it does not reach that far back."""
        self.activities()
        floor = watermark.timestamp() if watermark is not None else (max(self._stamps, default=0.0) - seconds)
        engaged = sum(1 for stamp in self._engaged.values() if stamp >= floor)
        if self._ended or not self._stamps or min(self._stamps) <= floor:
            return float(engaged)
        span = max(1.0, max(self._stamps) - min(self._stamps))
        return len(self._engaged) * min(seconds, ACTIVITY_WINDOW.total_seconds()) / span

    def old_share(self, lookback_start: datetime) -> float:
        """The share of engaged deliveries created before ``lookback_start`` (those an incremental run
        re-reads), from ``GET /v1/messages/{id}`` of up to ``ENGAGED_SAMPLE`` of them."""
        if self._old_share is None:
            self.activities()
            newest = sorted(self._engaged, key=self._engaged.__getitem__, reverse=True)[:ENGAGED_SAMPLE]
            old = 0
            for delivery in newest:
                try:
                    message = self.ctx.client.get(f"/v1/messages/{delivery}", table="messages:sample")
                except NotFoundError:
                    continue
                created = (message.get("message") or {}).get("created")
                old += bool(created) and float(created) < lookback_start.timestamp()
            self._old_share = old / len(newest) if newest else 0.0
        return self._old_share

    def first_page(self, method: str, path: str, params: dict[str, Any], body: Any, table: str) -> dict[str, Any]:
        return self.ctx.client.request(method, path, params=params, body=body, table=table)


# -- the one place the deliveries' reading plan is followed ------------------------------------------------
def delivery_windows(
    ctx: RunContext, spec: TableSpec, parent: dict[str, Any] | None = None, start: datetime | None = None
) -> list[tuple[datetime, datetime | None]]:
    """The windows the deliveries resource reads for ``spec`` (one ``parent`` of a per-parent table) from
    ``start`` (None: a first run): :func:`deliveries.delivery_range` then :func:`deliveries.windows`, as
    :func:`deliveries.deliveries_resource` does. When the per-parent range changes there, change it here."""
    lower, upper = delivery_range(ctx, start, ctx.interval.end)
    if parent is not None:
        return parent_windows(parent, lower, upper)
    return list(windows(lower, upper))


def window_requests(rows: float, page_size: int, concurrency: int) -> int:
    """Requests to read one window of ``rows`` deliveries: its pages, plus one partial page per extra piece
    when :func:`deliveries.read_windows` splits it (``plan_split``: pieces of at least SPLIT_MIN_PAGES)."""
    pages = max(1, math.ceil(rows / page_size))
    pieces = min(concurrency, (pages - 1) // SPLIT_MIN_PAGES) if concurrency >= 2 else 0
    return pages + (pieces - 1 if pieces >= 2 else 0)


# -- per table ---------------------------------------------------------------------------------------------
def plan_table(sampler: Sampler, name: str, periods: tuple[str, ...], watermarks: dict[str, datetime]) -> TablePlan:
    ctx = sampler.ctx
    spec = CATALOGUE[name]
    builder = spec.builder
    stats = ctx.client.stats
    if builder is None and not spec.per_parent:
        before = stats.by_table.get(name, 0)
        rows = ctx.list_rows(name)  # a list a run reads in full anyway: its cost is what it took now
        cost = max(1, stats.by_table.get(name, 0) - before) if name != "workspaces" else 1
        return TablePlan(name, cost, cost, f"{len(rows)} rows, {'paged' if spec.paginated else 'one response'}")
    if builder is None and spec.arrow_row:  # segment members: the API counts them
        parents = ctx.list_rows(spec.parent)  # type: ignore[arg-type]
        cost = 0
        for parent in parents:
            count = ctx.client.get(ctx.child_path(_count_spec(spec), parent), table=f"{name}:count").get("count")
            cost += max(1, math.ceil((count or 0) / (spec.page_size or 1000)))
        return TablePlan(name, cost, cost, f"{len(parents)} {spec.parent}, members counted")
    if builder is None:
        parents = ctx.list_rows(spec.parent)  # type: ignore[arg-type]
        cost = sum(_child_pages(spec, parent) for parent in parents)
        return TablePlan(name, cost, cost, f"{len(parents)} {spec.parent}")
    if builder is builders.metrics:
        parents = _parents_of(sampler, spec)
        cost = parents * max(1, len(periods))
        return TablePlan(name, cost, cost, f"{parents} {spec.parent} x {len(periods)} period(s)")
    if builder is builders.deliveries:
        return _deliveries(sampler, spec, watermarks.get(name))
    if builder is builders.activities:
        rows, _, _ = sampler.activities()
        full = math.ceil(sampler.activities_in(ACTIVITY_WINDOW.total_seconds()) / (spec.page_size or 100))
        since = _since_seconds(watermarks.get(name), sampler)
        incremental = math.ceil(sampler.activities_since(watermarks.get(name), since) / (spec.page_size or 100)) + 1
        return TablePlan(
            name,
            max(1, full),
            min(max(1, full), incremental),
            f"~{full * (spec.page_size or 100):,} rows in 30 days (from {rows} sampled)",
        )
    if builder is builders.customers:
        people = sampler.people()
        cost = math.ceil(max(1, people) / PEOPLE_PAGE_SIZE)
        return TablePlan(name, cost, cost, f"{people:,} people")
    if builder is builders.customer_attributes:
        people = sampler.people()
        full = math.ceil(people / ATTRIBUTES_BATCH)
        since = _since_seconds(watermarks.get("activities"), sampler)
        _, _, changing = sampler.activities()
        recent = sampler.activities_since(watermarks.get("activities"), since)
        scan = math.ceil(recent / CATALOGUE["activities"].page_size) + 1
        changed = math.ceil(recent * changing / ATTRIBUTES_BATCH)
        exports = EXPORT_REQUESTS + 2  # one customers export + the 2 requests that discover attribute names
        return TablePlan(
            name,
            full,
            min(full, scan + changed),
            f"{people:,} people / {ATTRIBUTES_BATCH}",
            exports_full=exports,
            exports=1,
        )
    if builder is builders.per_person:
        people = sampler.people()
        series = len(delivery_windows(ctx, CATALOGUE["messages"])) if name == "customer_messages" else 1
        return TablePlan(name, people * series, people * series, f"{people:,} people x {series}")
    if builder is builders.objects:
        return _objects(sampler, name)
    if builder is builders.suppressions:
        cost = 0
        for kind in SUPPRESSION_TYPES:
            payload = sampler.first_page(
                "GET", f"/v1/esp/suppression/{kind}", {"limit": SUPPRESSIONS_PAGE_SIZE, "offset": 0}, None, name
            )
            cost += 1 if len(payload.get("suppressions") or []) < SUPPRESSIONS_PAGE_SIZE else 2
        return TablePlan(name, cost, cost, "first page per type (at least)")
    return TablePlan(name, 1, 1, "one request")


def _count_spec(spec: TableSpec) -> TableSpec:
    from dataclasses import replace

    return replace(spec, path=spec.path.rsplit("/", 1)[0] + "/customer_count")


def _child_pages(spec: TableSpec, parent: dict[str, Any]) -> int:
    if not spec.paginated or not spec.page_size:
        return 1
    listed = parent.get(CHILD_LISTS.get(spec.name, ""))
    return max(1, math.ceil(len(listed) / spec.page_size)) if isinstance(listed, list) else 1


def _parents_of(sampler: Sampler, spec: TableSpec) -> int:
    """Parents of a metrics table; child parents (actions, variants) counted from their parents' rows."""
    parent = CATALOGUE[spec.parent]  # type: ignore[index]
    if not parent.per_parent:
        return len(sampler.ctx.list_rows(parent.name))
    grand = sampler.ctx.list_rows(parent.parent)  # type: ignore[arg-type]
    field_name = CHILD_LISTS.get(parent.name)
    if field_name and all(isinstance(row.get(field_name), list) for row in grand):
        return sum(len(row[field_name]) for row in grand)
    return len(sampler.ctx.list_rows(parent.name))  # one request per parent: read the children


def _since_seconds(watermark: datetime | None, sampler: Sampler) -> float:
    if watermark is None:
        return sampler.since_hours * 3600
    return max(0.0, (datetime.now(timezone.utc) - watermark).total_seconds())


def _deliveries(sampler: Sampler, spec: TableSpec, watermark: datetime | None) -> TablePlan:
    ctx = sampler.ctx
    page = spec.page_size or 1000
    if spec.parent is not None:  # per-parent lists (opt-in): every window of every parent, at least a page
        parents = ctx.list_rows(spec.parent)
        cost = sum(len(delivery_windows(ctx, spec, parent)) for parent in parents)
        return TablePlan(spec.name, cost, len(parents), f"{len(parents)} {spec.parent} x windows")
    full = 0
    rows_total = 0
    for lower, upper in delivery_windows(ctx, spec):
        rows = estimate_deliveries(ctx, lower, upper)
        rows_total += rows
        full += window_requests(rows, page, ctx.concurrency)
    since_run = _since_seconds(watermark, sampler)
    since = since_run + ctx.messages_lookback_days * 86400
    start = datetime.now(timezone.utc) - timedelta(seconds=since)
    recent = estimate_deliveries(ctx, start, None)
    incremental = sum(
        window_requests(recent * _share(lo, up, start), page, ctx.concurrency)
        for lo, up in delivery_windows(ctx, spec, start=start)
    )
    incremental += _late_engagement(sampler, spec, watermark, since_run, start)
    exports, requests = _export_requests(ctx, spec)
    return TablePlan(
        spec.name, full, incremental, f"~{rows_total:,} deliveries", exports_full=requests, exports=exports
    )


def _late_engagement(
    sampler: Sampler, spec: TableSpec, watermark: datetime | None, since_run: float, lookback_start: datetime
) -> int:
    """An incremental run's late-engagement requests (:mod:`late_engagement`): the one activity-log scan
    since the previous run (planned for the first delivery table), plus about one re-read per engaged
    delivery older than the lookback (neighbours that share a window make it fewer). A deep re-read
    (every ``messages_deep_reread_days``) is not planned: the plan assumes it is not due. An upper bound:
    the run merges stale deliveries that lie close together into one window, which the plan cannot see
    without the warehouse's `created` of each."""
    cost = 0
    if not sampler.activity_scan_planned:
        sampler.activity_scan_planned = True
        scanned = sampler.activities_since(watermark, since_run + CLOCK_MARGIN)
        cost += math.ceil(scanned / (CATALOGUE["activities"].page_size or 100)) + 1
    engaged = sampler.engaged_since(watermark, since_run)
    if engaged:
        cost += math.ceil(engaged * sampler.old_share(lookback_start))
    return cost


def _share(lower: datetime, upper: datetime | None, start: datetime) -> float:
    now = datetime.now(timezone.utc)
    total = max(1.0, (now - start).total_seconds())
    return max(0.0, ((upper or now) - max(lower, start)).total_seconds()) / total


def _export_requests(ctx: RunContext, spec: TableSpec) -> tuple[int, int]:
    """A full run through exports: (exports, requests): ~EXPORT_REQUESTS per export (bulk.delivery_jobs),
    broadcasts by the API (one request per window at least)."""
    start, end = delivery_range(ctx, None, ctx.interval.end)
    jobs = delivery_jobs(ctx, spec, start, end, settings=None)  # type: ignore[arg-type] - jobs are not run
    broadcasts = len(ctx.list_rows("broadcasts")) if spec.parent is None else 0
    exports = len(jobs) - broadcasts
    return exports, exports * EXPORT_REQUESTS + broadcasts * len(delivery_windows(ctx, spec))


def _objects(sampler: Sampler, name: str) -> TablePlan:
    ctx = sampler.ctx
    from .objects import _match_all  # the resource's own filter

    types = ctx.list_rows("object_types")
    spec = CATALOGUE[name]
    total = sampler.workspace().get("objects")
    if name != "objects":  # per-object tables (opt-in): one request per object
        count = total if isinstance(total, int) else len(types)
        return TablePlan(name, count, count, "one request per object")
    cost = 0
    for kind in types:
        type_id = str(kind["id"])
        payload = sampler.first_page(
            "POST",
            "/v1/objects",
            {"limit": spec.page_size},
            {"object_type_id": type_id, "filter": _match_all(type_id)},
            name,
        )
        if not payload.get("next"):
            cost += 1
        elif isinstance(total, int) and types:
            cost += max(2, math.ceil(total / len(types) / (spec.page_size or 1000)))
        else:
            cost += 2
    return TablePlan(name, cost, cost, f"{len(types)} object types")


# -- the plan ----------------------------------------------------------------------------------------------
def saved_watermarks(pipeline_name: str | None) -> dict[str, datetime]:
    """The cursors a local pipeline of this name saved (deliveries `created`, activities `timestamp`)."""
    if not pipeline_name:
        return {}
    import dlt

    try:
        pipeline = dlt.attach(pipeline_name=pipeline_name)
    except Exception:  # noqa: BLE001 - no such pipeline here: plan without state
        return {}
    out: dict[str, datetime] = {}
    resources = pipeline.state.get("sources", {}).get("customerio", {}).get("resources", {})
    for table, cursor in (("messages", "created"), ("activities", "timestamp")):
        value = resources.get(table, {}).get("incremental", {}).get(cursor, {}).get("last_value")
        if isinstance(value, datetime):
            out[table] = value
    return out


def make_plan(
    ctx: RunContext,
    selected: dict[str, tuple[str, ...]],
    bulk: str = "api",
    rate_limit: float = DEFAULT_RATE_LIMIT,
    watermarks: dict[str, datetime] | None = None,
    since_hours: float = DEFAULT_SINCE_HOURS,
) -> Plan:
    """The plan of a run of ``selected`` tables (what :func:`source.select_tables` returns)."""
    sampler = Sampler(ctx, since_hours)
    tables = [plan_table(sampler, name, periods, watermarks or {}) for name, periods in selected.items()]
    plan = Plan(tables, rate_limit, ctx.client.stats.total, bulk)
    for entry in tables:
        if entry.exports_full is None:
            continue
        if bulk == "exports":
            plan.bulk_choice[entry.table] = True
        elif bulk == "auto":
            if entry.table == "customer_attributes":
                plan.bulk_choice[entry.table] = sampler.people() >= AUTO_PEOPLE
            else:
                from .bulk import AUTO_MIN_API_REQUESTS

                floor = max(AUTO_MIN_API_REQUESTS, 2 * EXPORT_REQUESTS * entry.exports)  # bulk.exports_pay_off
                plan.bulk_choice[entry.table] = entry.full >= floor
    if not watermarks:
        plan.notes.append(f"incremental: a run {since_hours:g} h after the previous one (no local pipeline state)")
    return plan


def _bulk_cost(plan: Plan, entry: TablePlan) -> int:
    return entry.exports_full if plan.bulk_choice.get(entry.table) and entry.exports_full is not None else entry.full


def render(plan: Plan) -> str:
    """The plan as a table, with totals and the bulk comparison."""

    def when(requests: int) -> str:
        seconds = plan.seconds(requests)
        return "–" if seconds is None else duration(seconds)

    width = max([len(t.table) for t in plan.tables] + [5])
    lines = [
        f"{'table'.ljust(width)}  {'full req':>9}  {'full time':>9}  {'incr req':>9}  {'incr time':>9}  "
        f"{'exports':>8}  basis"
    ]
    for t in plan.tables:
        exports = "–" if t.exports_full is None else str(t.exports_full)
        lines.append(
            f"{t.table.ljust(width)}  {t.full:>9,}  {when(t.full):>9}  {t.incremental:>9,}  "
            f"{when(t.incremental):>9}  {exports:>8}  {t.basis}"
        )
    full, incremental = plan.total("full"), plan.total("incremental")
    lines.append(f"{'total'.ljust(width)}  {full:>9,}  {when(full):>9}  {incremental:>9,}  {when(incremental):>9}")
    rate = f"{plan.rate_limit:g} requests/s" if plan.rate_limit > 0 else "no rate limit (times not computed)"
    lines.append(f"at {rate}; planning took {plan.planning_requests} requests")
    exportable = [t for t in plan.tables if t.exports_full is not None]
    if exportable:
        with_exports = sum(t.exports_full if t.exports_full is not None else t.full for t in plan.tables)
        cheaper = [t.table for t in exportable if (t.exports_full or 0) < t.full]
        lines.append(
            f"bulk exports (--bulk exports): full run {with_exports:,} requests ({when(with_exports)} of requests, "
            f"plus the exports' own processing time); cheaper for: {', '.join(cheaper) or 'no table'}"
        )
        if plan.bulk == "auto":
            chosen = sum(_bulk_cost(plan, t) for t in plan.tables)
            picks = ", ".join(f"{t}: {'exports' if v else 'API'}" for t, v in plan.bulk_choice.items())
            lines.append(f"--bulk auto chooses {picks}: full run {chosen:,} requests ({when(chosen)})")
    lines.extend(plan.notes)
    return "\n".join(lines)


def duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f}s"
    if seconds < 5400:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.1f}h"


def main(argv: Sequence[str]) -> int:
    from .cli import failure_report
    from .source import API_KEY_ENV, select_tables

    parser = argparse.ArgumentParser(prog="customerio-pipeline plan", description=__doc__.splitlines()[0])
    parser.add_argument("--tables", default="all")
    parser.add_argument("--bulk", default="api", choices=("exports", "api", "auto"))
    parser.add_argument("--region", default="us", choices=("us", "eu"))
    parser.add_argument("--base-url", default=None)
    parser.add_argument("--rate-limit", type=float, default=DEFAULT_RATE_LIMIT, help="requests/s (default 10)")
    parser.add_argument("--pipeline-name", default="customerio", help="plan the incremental run from its state")
    parser.add_argument(
        "--since-hours",
        type=float,
        default=DEFAULT_SINCE_HOURS,
        help="without local state: hours between runs (default 24)",
    )
    parser.add_argument("--debug", action="store_true")
    args = parser.parse_args(list(argv))
    try:
        plan = plan_run(
            api_key=os.environ.get(API_KEY_ENV, ""),
            tables=args.tables,
            bulk=args.bulk,
            region=args.region,
            base_url=args.base_url,
            rate_limit=args.rate_limit,
            pipeline_name=args.pipeline_name,
            since_hours=args.since_hours,
            selector=select_tables,
        )
    except Exception as exc:  # noqa: BLE001 - one line, the load's exit codes
        if args.debug:
            raise
        message, code = failure_report(exc, list(argv))
        print(f"error: {message}", file=sys.stderr)
        return code
    print(render(plan))
    return 0


def plan_run(
    api_key: str,
    tables: str = "all",
    bulk: str = "api",
    region: str = "us",
    base_url: str | None = None,
    rate_limit: float = DEFAULT_RATE_LIMIT,
    pipeline_name: str | None = None,
    since_hours: float = DEFAULT_SINCE_HOURS,
    selector: Any = None,
    stats: RequestStats | None = None,
) -> Plan:
    """Plan a run against a workspace (the planning requests are not rate-limited below ``rate_limit``)."""
    if selector is None:
        from .source import select_tables as selector
    if not api_key:
        raise ConfigError("no API key: set CUSTOMERIO_APP_API_KEY")
    selected = selector(tables, ("days",))
    client = CustomerIOClient(
        api_key, region=region, base_url=base_url, rate_limit=rate_limit, max_attempts=3, stats=stats or RequestStats()
    )
    ctx = RunContext(client=client, metrics_periods=selected)
    return make_plan(ctx, selected, bulk, rate_limit, saved_watermarks(pipeline_name), since_hours)
