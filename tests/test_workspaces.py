"""The workspace list of the orchestrators' fan-out files (customerio_source.workspaces)."""

from __future__ import annotations

import pytest

from customerio_source.errors import ConfigError
from customerio_source.workspaces import parse_workspaces, read_workspaces

LIST = """
[[workspace]]
name = "acme"
api_key_env = "ACME_KEY"
pipeline_name = "customerio_acme"
dataset_name = "cio_acme"
rate_limit = 5

[[workspace]]
api_key = "literal-secret-key"
pipeline_name = "customerio_beta"
dataset_name = "cio_beta"
tables = "campaigns,messages"
"""


def test_reads_a_toml_list_and_resolves_keys_when_asked(tmp_path, monkeypatch):
    path = tmp_path / "workspaces.toml"
    path.write_text(LIST)
    acme, beta = read_workspaces(path)
    assert (acme.name, acme.pipeline_name, acme.dataset_name, acme.rate_limit) == (
        "acme",
        "customerio_acme",
        "cio_acme",
        5.0,
    )
    assert (beta.name, beta.rate_limit, beta.tables) == ("customerio_beta", 10.0, "campaigns,messages")
    monkeypatch.delenv("ACME_KEY", raising=False)
    with pytest.raises(ConfigError, match="ACME_KEY is empty"):
        acme.api_key()
    monkeypatch.setenv("ACME_KEY", "k-123")
    assert acme.source_options() == {"api_key": "k-123", "rate_limit": 5.0}
    assert beta.source_options()["api_key"] == "literal-secret-key"
    assert "literal-secret-key" not in repr(beta) and "literal-secret-key" not in str([acme, beta])
    assert acme.duckdb_file().endswith("customerio_acme.duckdb")


@pytest.mark.parametrize("field", ["pipeline_name", "dataset_name"])
def test_a_repeated_pipeline_name_or_dataset_is_refused_in_one_line(field):
    entries = [
        {"name": "a", "api_key_env": "A", "pipeline_name": "p_a", "dataset_name": "d_a"},
        {"name": "b", "api_key_env": "B", "pipeline_name": "p_b", "dataset_name": "d_b"},
    ]
    entries[1][field] = entries[0][field]
    with pytest.raises(ConfigError) as refused:
        parse_workspaces(entries)
    message = str(refused.value)
    assert "\n" not in message and f"share the {field.replace('_', ' ')} {entries[0][field]!r}" in message


@pytest.mark.parametrize(
    "entry, error",
    [
        ({"api_key_env": "A", "dataset_name": "d"}, "pipeline_name is required"),
        ({"pipeline_name": "p", "dataset_name": "d"}, "set api_key_env"),
        ({"api_key_env": "A", "pipeline_name": "p", "dataset_name": "d", "rate": 3}, "unknown setting"),
        ({"api_key_env": "A", "pipeline_name": "p", "dataset_name": "d", "rate_limit": "fast"}, "must be a number"),
    ],
)
def test_bad_entries_fail_with_one_line(entry, error):
    with pytest.raises(ConfigError, match=error):
        parse_workspaces([entry])


def test_missing_or_broken_list(tmp_path, monkeypatch):
    monkeypatch.delenv("CUSTOMERIO_WORKSPACES", raising=False)
    with pytest.raises(ConfigError, match="CUSTOMERIO_WORKSPACES"):
        read_workspaces()
    broken = tmp_path / "broken.toml"
    broken.write_text("[[workspace]\nname = ")
    with pytest.raises(ConfigError, match="cannot parse"):
        read_workspaces(broken)
    with pytest.raises(ConfigError, match="cannot read"):
        read_workspaces(tmp_path / "missing.toml")
