"""``customerio-pipeline models`` and ``customerio-pipeline report`` (and the load's ``--models``)."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import traceback
from collections.abc import Callable, Sequence
from typing import Any

from ..errors import ConfigError
from .build import BuildResult, Settings
from .models import AnalyticsInputError, check_timezone

EXIT_INPUT = 2
DESTINATIONS = ("duckdb", "postgres", "bigquery")


def add_model_options(parser: argparse.ArgumentParser) -> None:
    """The options of a build, shared by ``models``, ``report --build`` and the load's ``--models``."""
    parser.add_argument("--timezone", default="UTC", help="days and weeks in this IANA time zone (default UTC)")
    parser.add_argument("--spike-k", type=float, default=Settings.k, help="spike: above trailing mean + k sigma")
    parser.add_argument("--spike-window", type=int, default=Settings.window, help="trailing days of the baseline")
    parser.add_argument(
        "--spike-min-excess",
        type=float,
        default=Settings.min_excess,
        help=f"spike: at least this many above the trailing mean (default {Settings.min_excess:g}; 0: off)",
    )
    parser.add_argument(
        "--spike-sample-sigma",
        action="store_true",
        help="spike: the baseline's sample sigma alone (default: at least sqrt(mean), a count's Poisson noise)",
    )
    parser.add_argument("--outlier-z", type=float, default=Settings.z, help="outlier: |z| at least this")


def settings_from(args: argparse.Namespace) -> Settings:
    if args.spike_window < 2:
        raise AnalyticsInputError(f"--spike-window must be at least 2 days, not {args.spike_window}")
    if args.spike_k <= 0 or args.outlier_z <= 0:
        raise AnalyticsInputError("--spike-k and --outlier-z must be positive")
    if args.spike_min_excess < 0:
        raise AnalyticsInputError(f"--spike-min-excess must be 0 or more, not {args.spike_min_excess:g}")
    return Settings(
        timezone=check_timezone(args.timezone),
        k=args.spike_k,
        window=args.spike_window,
        z=args.outlier_z,
        min_excess=args.spike_min_excess,
        poisson_floor=not args.spike_sample_sigma,
    )


def _dataset_parser(prog: str, description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--destination", default="duckdb", choices=DESTINATIONS)
    parser.add_argument("--dataset-name", default="customerio")
    parser.add_argument(
        "--pipeline-name", default="customerio", help="the load's pipeline (customerio_demo for --demo loads)"
    )
    parser.add_argument("--debug", action="store_true", help="tracebacks")
    return parser


def attach(args: argparse.Namespace) -> Any:
    """The load's pipeline (same name, destination and dataset as the load used)."""
    import dlt

    from ..cli import check_destination, destination_for

    pipeline = dlt.pipeline(
        pipeline_name=args.pipeline_name,
        destination=destination_for(args.destination, args.pipeline_name, args.dataset_name),
        dataset_name=args.dataset_name,
    )
    check_destination(pipeline)
    return pipeline


def print_build(result: BuildResult) -> None:
    """A few lines: the models, the series, anomalies and forecasts."""
    print(f"models built in {result.seconds:.1f}s: {', '.join(result.plan.models) or 'none'}")
    for name, why in sorted(result.plan.skipped.items()):
        print(f"skipped {name}: {why}")
    spikes = sum(1 for a in result.anomalies if a.kind == "spike")
    forecast_series = sorted({f.series for f in result.forecasts})
    models = sorted({f.model for f in result.forecasts if f.kind == "forecast"})
    print(
        f"{len(result.series)} daily series up to {result.as_of}: {spikes} spike days, "
        f"{len(result.anomalies) - spikes} outliers (engagement_anomalies); {len(forecast_series)} forecasts "
        f"({', '.join(models) or 'none'}; engagement_forecast)"
    )
    for name, why in sorted(result.not_forecast.items()):
        print(f"no forecast for {name}: {why}")


def run_models(pipeline: Any, settings: Settings) -> BuildResult:
    from .build import run_analytics

    result = run_analytics(pipeline, settings)
    print_build(result)
    return result


def _guarded(args: argparse.Namespace, body: Callable[[], int]) -> int:
    if not args.debug:
        os.environ.setdefault("RUNTIME__LOG_LEVEL", "CRITICAL")
        logging.getLogger("dlt").setLevel(logging.CRITICAL)
    try:
        return body()
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except (AnalyticsInputError, ConfigError) as exc:
        if args.debug:
            traceback.print_exc()
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_INPUT
    except Exception as exc:  # noqa: BLE001 - one clear line, the traceback only with --debug
        if args.debug:
            traceback.print_exc()
        from ..cli import failure_report

        message, code = failure_report(exc, [])
        print(f"error: {message}", file=sys.stderr)
        return code


def models_main(argv: Sequence[str]) -> int:
    """Build the models, anomalies and forecasts in a loaded dataset."""
    parser = _dataset_parser(
        "customerio-pipeline models",
        "Build the engagement models, anomalies and forecasts "
        "in a loaded dataset (definitions: customerio_source/analytics/definitions.py).",
    )
    add_model_options(parser)
    args = parser.parse_args(argv)

    def body() -> int:
        settings = settings_from(args)
        run_models(attach(args), settings)
        return 0

    return _guarded(args, body)


def report_main(argv: Sequence[str]) -> int:
    """Write the HTML report of a dataset (``--demo``: the tutorial's whole loop first)."""
    parser = _dataset_parser("customerio-pipeline report", "Write one self-contained HTML report (works offline).")
    parser.add_argument("--out", default="report.html")
    parser.add_argument("--build", action="store_true", help="build the models first")
    parser.add_argument(
        "--demo",
        action="store_true",
        help="the seed's loop on the simulated tutorial workspace: simulate, send, extract into DuckDB, models, report",
    )
    parser.add_argument("--seed", type=int, default=7, help="--demo: the simulated workspace's seed")
    add_model_options(parser)
    args = parser.parse_args(argv)

    def body() -> int:
        settings = settings_from(args)
        from .report import write_report

        if args.demo:
            from .tutorial import run_tutorial

            pipeline = run_tutorial(
                args.seed,
                settings,
                args.pipeline_name if args.pipeline_name != "customerio" else "customerio_tutorial",
                args.dataset_name,
            ).pipeline
        else:
            pipeline = attach(args)
            if args.build:
                run_models(pipeline, settings)
        data = write_report(pipeline, args.out)
        for section, why in sorted(data.skipped.items()):
            print(f"report: {section} skipped ({why})")
        print(f"report written to {os.path.abspath(args.out)}")
        return 0

    return _guarded(args, body)
