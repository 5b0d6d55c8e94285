"""Every catalogue entry against the App API spec, ../shared/spec/journeys-app.json (skipped where that file
is not beside the checkout): the operation exists with the same path placeholders, page sizes are the
spec's maxima (from the schema or the parameter's description; UNDOCUMENTED_PAGE_SIZE where it names none),
and every parameter the connector sends is one the operation takes."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from customerio_source import builders
from customerio_source.catalogue import CATALOGUE, UNDOCUMENTED_PAGE_SIZE

SPEC_FILE = Path(__file__).resolve().parents[2] / "shared" / "spec" / "journeys-app.json"
POSTS = {"customers": "POST", "customer_attributes": "POST", "objects": "POST"}  # searches and batch reads
MAXIMUM_IN_TEXT = re.compile(r"maximum (?:value )?(?:is |of )?(\d[\d,]*)", re.IGNORECASE)


def shape(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "{}", path)


def load_operations() -> dict[tuple[str, str], dict]:
    """(METHOD, path shape) -> {"path": ..., "query": {name: {"maximum": int | None}}}, parameters resolved."""
    spec = json.loads(SPEC_FILE.read_text())
    components = spec.get("components", {}).get("parameters", {})

    def resolve(param: dict) -> dict:
        return components.get(param["$ref"].rsplit("/", 1)[-1], {}) if "$ref" in param else param

    out: dict[tuple[str, str], dict] = {}
    for path, item in spec["paths"].items():
        shared = [resolve(p) for p in item.get("parameters") or []]
        for method in ("get", "post"):
            if method not in item:
                continue
            params = shared + [resolve(p) for p in item[method].get("parameters") or []]
            query = {}
            for param in params:
                if param.get("in") != "query":
                    continue
                maximum = (param.get("schema") or {}).get("maximum")
                found = MAXIMUM_IN_TEXT.search(param.get("description") or "")
                if maximum is None and found:
                    maximum = int(found.group(1).replace(",", ""))
                query[param["name"]] = {"maximum": maximum}
            out[(method.upper(), shape(path))] = {"path": path, "query": query}
    return out


OPERATIONS = load_operations() if SPEC_FILE.exists() else {}


@pytest.mark.parametrize("name", sorted(CATALOGUE))
def test_catalogue_entry_matches_the_spec(name):
    if not OPERATIONS:
        pytest.skip(f"the App API spec is not at {SPEC_FILE}")
    spec = CATALOGUE[name]
    method = POSTS.get(name, "GET")
    path = "/v1/customers/attributes" if name == "customer_attributes" else spec.path
    operation = OPERATIONS.get((method, shape(path)))
    assert operation is not None, f"{name}: {method} {path} is not in the spec"
    query = operation["query"]
    # path placeholders are the spec's, by name
    assert re.findall(r"\{([^}]+)\}", path) == re.findall(r"\{([^}]+)\}", operation["path"]), name
    if spec.page_size:
        assert "limit" in query, f"{name}: page_size without a `limit` parameter"
        maximum = query["limit"].get("maximum")
        if maximum is not None:
            assert spec.page_size == maximum, f"{name}: page size {spec.page_size}, the spec's maximum {maximum}"
        else:
            assert spec.page_size == UNDOCUMENTED_PAGE_SIZE, f"{name}: no maximum in the spec: the assumed one"
    if spec.paginated:
        assert "start" in query, f"{name}: paginated without a `start` cursor parameter"
    for param in spec.params:
        assert param in query, f"{name}: parameter {param!r} is not in the spec"
    if spec.builder is builders.deliveries:
        assert {"start_ts", "end_ts", "limit", "start"} <= set(query), name
    if spec.builder is builders.metrics and spec.metrics_family == "steps":
        assert {"period", "steps"} <= set(query), name
    if spec.builder is builders.metrics and spec.metrics_family == "v2":
        assert {"version", "res", "start", "end"} <= set(query), name


def test_every_irregular_table_names_a_builder_function():
    irregular = [spec for spec in CATALOGUE.values() if spec.builder is not None]
    assert len(irregular) > 20
    for spec in irregular:
        assert callable(spec.builder) and spec.builder.__module__ == "customerio_source.builders", spec.name


def test_people_tables_share_one_enumeration_whatever_the_selection_order():
    from customerio_source import customerio_source

    for tables in ("customer_messages,customers", "customers,customer_messages", "customer_messages"):
        source = customerio_source(api_key="k", base_url="http://127.0.0.1:9", tables=tables)
        loaded = set(source.selected_resources)
        assert loaded == set(tables.split(",")), tables  # `customers` loaded when selected, in any order
