"""Live progress for a CLI run on a terminal (rich), the plain periodic lines otherwise.

On a TTY the run is planned first (:mod:`customerio_source.planner`: a handful of requests) and one live
display shows the requests done and planned, the request rate, rows and requests per table, and the time
left at the current rate. Without a TTY (cron, Airflow logs) nothing changes: :class:`cli.Progress` prints
its periodic lines.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import IO, Any

from .cli import Progress


def planned_requests(
    source_kwargs: dict[str, Any], pipeline_name: str, bulk: str | None, destination: Any = None
) -> dict[str, int] | None:
    """Per table, the requests the planner expects this run to make (incremental when the pipeline has
    state here; ``destination``, the pipeline's, lets the plan read its warehouse), or None when planning
    fails (the run then reports its own error)."""
    from .planner import DEFAULT_RATE_LIMIT, plan_run, saved_watermarks

    try:
        incremental = bool(saved_watermarks(pipeline_name, destination))
        plan = plan_run(
            api_key=source_kwargs.get("api_key") or "",
            tables=source_kwargs.get("tables") or "all",
            bulk=bulk or "api",
            region=source_kwargs.get("region", "us"),
            base_url=source_kwargs.get("base_url"),
            rate_limit=source_kwargs.get("rate_limit", DEFAULT_RATE_LIMIT),
            pipeline_name=pipeline_name,
            destination=destination,
        )
    except Exception:  # noqa: BLE001 - no estimate; the load says what is wrong
        return None
    phase = "incremental" if incremental else "full"
    return {t.table: getattr(t, phase) for t in plan.tables}


class LiveProgress(Progress):
    """One live display (rich) of the run, refreshed a few times a second."""

    def __init__(self, client_stats: Any, planned: dict[str, int] | None, stream: IO[str] | None = None) -> None:
        super().__init__(client_stats, every=0.25)
        self.planned = planned or {}
        self.stream = stream or sys.stderr
        self._live: Any = None
        self._rate = 0.0
        self._samples: list[tuple[float, int]] = []
        self._lock = threading.Lock()

    def start(self) -> None:
        from rich.console import Console
        from rich.live import Live

        console = Console(file=self.stream, force_terminal=True)
        self._live = Live(console=console, get_renderable=self.render, refresh_per_second=4, transient=False)
        self._live.start()

    def stop(self) -> None:
        if self._live is not None:
            self._live.refresh()
            self._live.stop()
            self._live = None

    def rate(self) -> float:
        """Requests per second over the last ~10 seconds."""
        now, total = time.monotonic(), self.stats.total
        with self._lock:
            self._samples.append((now, total))
            while len(self._samples) > 2 and now - self._samples[0][0] > 10:
                self._samples.pop(0)
            first_time, first_total = self._samples[0]
        return (total - first_total) / (now - first_time) if now - first_time > 0.5 else 0.0

    def render(self) -> Any:
        from rich.table import Table

        done, elapsed = self.stats.total, time.monotonic() - self.stats.started
        planned = sum(self.planned.values())
        rate = self.rate()
        if planned and rate > 0:
            eta = f"~{_clock(max(0.0, planned - done) / rate)} left"
        elif planned and done >= planned:
            eta = "normalizing and loading"
        else:
            eta = "–"
        title = (f"{done:,} / {planned:,} requests planned" if planned else f"{done:,} requests") + (
            f" · {rate:.1f}/s · {eta} · {_clock(elapsed)} elapsed"
        )
        table = Table(title=title, title_justify="left", expand=False)
        table.add_column("table")
        table.add_column("rows", justify="right")
        table.add_column("requests", justify="right")
        table.add_column("planned", justify="right")
        names = sorted((set(self.rows) | set(self.stats.by_table) | set(self.planned)) - {"-"})
        for name in names:
            table.add_row(
                name,
                f"{self.rows.get(name, 0):,}",
                f"{self.stats.by_table.get(name, 0):,}",
                f"{self.planned[name]:,}" if name in self.planned else "–",
            )
        return table


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def progress_for(
    stats: Any,
    every: float,
    source_kwargs: dict[str, Any],
    pipeline_name: str,
    bulk: str | None,
    stream: IO[str] | None = None,
    destination: Any = None,
) -> Progress:
    """The live display on a terminal (``every`` > 0), else the plain periodic lines; ``destination`` is
    the pipeline's (the plan reads its warehouse)."""
    stream = stream or sys.stderr
    if every <= 0 or not stream.isatty():
        return Progress(stats, every)
    return LiveProgress(stats, planned_requests(source_kwargs, pipeline_name, bulk, destination), stream)
