"""Generates the README's table catalogue from the code: `python -m customerio_source.docs`."""

from __future__ import annotations

from . import (
    builders,
    metrics,  # noqa: F401  (registers the metrics tables)
)
from .catalogue import CATALOGUE, TableSpec

BEGIN = "<!-- tables:begin -->"
END = "<!-- tables:end -->"


def strategy(spec: TableSpec) -> str:
    if spec.builder is builders.deliveries:
        return "merge; windows on `created` (≤ 180 days each) + lookback (default 3 days)"
    if spec.builder is builders.activities:
        return "merge; incremental on `timestamp`, stops at the watermark"
    if spec.builder is builders.metrics:
        return "merge; re-read each run, history accumulates"
    parts = ["merge", "re-read in full" if spec.full_reread else "append-only window"]
    if spec.interval_field:
        parts.append(f"interval on `{spec.interval_field}`")
    if spec.full_reread:
        parts.append("deletes marked")
    return "; ".join(parts)


def catalogue_markdown() -> str:
    lines = [
        "| table | primary key | in `all` | strategy | requests | endpoint |",
        "|---|---|---|---|---|---|",
    ]
    for spec in CATALOGUE.values():
        lines.append(
            f"| `{spec.name}` | {', '.join(spec.primary_key)} | {'yes' if spec.default else 'no'} | "
            f"{strategy(spec)} | {spec.cost} | `{spec.path}` |"
        )
    return "\n".join(lines)


def main() -> None:
    print(catalogue_markdown())


if __name__ == "__main__":
    main()
