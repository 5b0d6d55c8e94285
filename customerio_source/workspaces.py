"""A list of workspaces to load side by side (the Airflow and Dagster fan-out files in ``pipelines/``).

The list is a TOML (or JSON) file, named by ``CUSTOMERIO_WORKSPACES`` in the orchestrators' files::

    [[workspace]]
    name = "acme"                       # the DAG / asset prefix (default: the pipeline name)
    api_key_env = "ACME_CIO_APP_KEY"    # the environment variable holding its App API key (or api_key = "...")
    pipeline_name = "customerio_acme"
    dataset_name = "customerio_acme"
    rate_limit = 10                     # requests/s of this workspace (default 10)
    # optional: region, base_url, tables, destination, duckdb_path

Every workspace needs its own pipeline name (its dlt state) and its own dataset: a list that repeats
either is refused with one line before anything runs. The key is read when a run starts (from the
environment when ``api_key_env`` names it), so it never sits in a DAG's arguments or in Dagster metadata.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import ConfigError

WORKSPACES_ENV = "CUSTOMERIO_WORKSPACES"
FIELDS = {
    "name",
    "api_key",
    "api_key_env",
    "pipeline_name",
    "dataset_name",
    "rate_limit",
    "region",
    "base_url",
    "tables",
    "destination",
    "duckdb_path",
}


@dataclass(frozen=True)
class WorkspaceConfig:
    """One workspace of the list."""

    name: str
    pipeline_name: str
    dataset_name: str
    rate_limit: float = 10.0
    api_key_env: str | None = None
    api_key_value: str | None = None
    region: str | None = None
    base_url: str | None = None
    tables: str | None = None
    destination: str = "duckdb"
    duckdb_path: str | None = None

    def api_key(self) -> str:
        """The key, read now (from ``api_key_env`` when set)."""
        key = os.environ.get(self.api_key_env, "") if self.api_key_env else self.api_key_value or ""
        if not key:
            where = f"the environment variable {self.api_key_env}" if self.api_key_env else "api_key"
            raise ConfigError(f"workspace {self.name!r}: no App API key ({where} is empty)")
        return key

    def source_options(self) -> dict[str, Any]:
        """Keyword arguments of :func:`customerio_source.customerio_source` for this workspace."""
        options: dict[str, Any] = {"api_key": self.api_key(), "rate_limit": self.rate_limit}
        for key in ("region", "base_url", "tables"):
            value = getattr(self, key)
            if value is not None:
                options[key] = value
        return options

    def duckdb_file(self) -> str:
        """This workspace's own DuckDB file (DuckDB allows one writer per file)."""
        return os.path.abspath(self.duckdb_path or f"{self.pipeline_name}.duckdb")

    def __repr__(self) -> str:  # never the key
        return f"WorkspaceConfig(name={self.name!r}, pipeline_name={self.pipeline_name!r})"


def parse_workspaces(entries: Sequence[dict[str, Any]]) -> list[WorkspaceConfig]:
    """Validate the list: required fields, known fields, and no pipeline name or dataset used twice."""
    if not entries:
        raise ConfigError("the workspace list is empty")
    out: list[WorkspaceConfig] = []
    seen: dict[str, dict[str, str]] = {"pipeline_name": {}, "dataset_name": {}, "name": {}}
    for index, entry in enumerate(entries, 1):
        if not isinstance(entry, dict):
            raise ConfigError(f"workspace #{index}: expected a table of settings, got {type(entry).__name__}")
        unknown = sorted(set(entry) - FIELDS)
        if unknown:
            raise ConfigError(f"workspace #{index}: unknown setting(s) {', '.join(unknown)}")
        for required in ("pipeline_name", "dataset_name"):
            if not entry.get(required):
                raise ConfigError(f"workspace #{index}: {required} is required")
        if not entry.get("api_key") and not entry.get("api_key_env"):
            raise ConfigError(f"workspace #{index}: set api_key_env (or api_key)")
        name = str(entry.get("name") or entry["pipeline_name"])
        for key, value in (
            ("pipeline_name", entry["pipeline_name"]),
            ("dataset_name", entry["dataset_name"]),
            ("name", name),
        ):
            label = str(value)
            if label in seen[key]:
                raise ConfigError(
                    f"workspaces {seen[key][label]!r} and {name!r} share the {key.replace('_', ' ')} "
                    f"{label!r}: each workspace needs its own"
                )
            seen[key][label] = name
        try:
            rate = float(entry.get("rate_limit", 10.0))
        except (TypeError, ValueError):
            raise ConfigError(f"workspace {name!r}: rate_limit must be a number") from None
        out.append(
            WorkspaceConfig(
                name=name,
                pipeline_name=str(entry["pipeline_name"]),
                dataset_name=str(entry["dataset_name"]),
                rate_limit=rate,
                api_key_env=entry.get("api_key_env"),
                api_key_value=entry.get("api_key"),
                region=entry.get("region"),
                base_url=entry.get("base_url"),
                tables=entry.get("tables"),
                destination=str(entry.get("destination", "duckdb")),
                duckdb_path=entry.get("duckdb_path"),
            )
        )
    return out


def read_workspaces(path: str | os.PathLike[str] | None = None) -> list[WorkspaceConfig]:
    """The list from a TOML or JSON file (default: the file ``CUSTOMERIO_WORKSPACES`` names)."""
    location = path or os.environ.get(WORKSPACES_ENV)
    if not location:
        raise ConfigError(f"no workspace list: set {WORKSPACES_ENV} to a TOML or JSON file")
    file = Path(location)
    try:
        text = file.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read the workspace list {file}: {exc.strerror or exc}") from None
    try:
        if file.suffix == ".json":
            data = json.loads(text)
        else:
            import tomlkit  # a dlt dependency

            data = tomlkit.parse(text).unwrap()
    except Exception as exc:  # noqa: BLE001 - one line for any syntax error
        raise ConfigError(f"cannot parse the workspace list {file}: {str(exc).splitlines()[0]}") from None
    entries = data.get("workspace", data.get("workspaces")) if isinstance(data, dict) else data
    if not isinstance(entries, list):
        raise ConfigError(f"the workspace list {file} has no [[workspace]] entries")
    return parse_workspaces(entries)
