"""Objects (custom object types: companies, accounts, ...) and their per-object tables.

`objects` enumerates every object of every type through ``POST /v1/objects`` with a filter that matches
everything; `object_attributes` and `object_relationships` are transformers fed by that enumeration (one
request per object, so they are opt-in).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import dlt
from dlt.sources import DltResource

from .catalogue import CATALOGUE, UNDOCUMENTED_PAGE_SIZE
from .client import path_value
from .context import RunContext, records, skip_missing
from .people import NEVER_SET_ATTRIBUTE
from .resources import table_columns
from .transform import convert_timestamps


def _match_all(type_id: str) -> dict[str, Any]:
    # like people: nothing has this attribute, so `not exists` matches every object of the type
    return {"not": {"object_attribute": {"field": NEVER_SET_ATTRIBUTE, "operator": "exists", "type_id": type_id}}}


def object_pages(ctx: RunContext) -> Iterator[list[dict[str, Any]]]:
    for object_type in ctx.list_rows("object_types"):
        type_id = str(object_type["id"])
        body = {"object_type_id": type_id, "filter": _match_all(type_id)}
        for payload in ctx.client.pages(
            "POST", "/v1/objects", {"limit": UNDOCUMENTED_PAGE_SIZE}, body=body, table="objects"
        ):
            page = [
                {
                    "object_type_id": type_id,
                    "object_id": row.get("object_id"),
                    "cio_object_id": row.get("cio_object_id"),
                }
                for row in records(payload, "identifiers")
            ]
            if not page:
                break
            yield page


def objects_resources(ctx: RunContext, names: list[str]) -> Iterator[DltResource]:
    """The selected object tables (the enumeration runs once, loaded or not)."""

    def all_objects() -> Iterator[list[dict[str, Any]]]:
        yield from object_pages(ctx)

    objects = dlt.resource(
        all_objects,
        name="objects",
        primary_key=["object_type_id", "object_id"],
        write_disposition="merge",
        columns=table_columns(CATALOGUE["objects"]),
        parallelized=True,
    )
    if "objects" in names:
        yield objects
    for name in names:
        if name != "objects":
            yield per_object_transformer(ctx, objects, name)


def per_object_transformer(ctx: RunContext, objects: DltResource, name: str) -> DltResource:
    spec = CATALOGUE[name]

    def read(obj: dict[str, Any]) -> list[dict[str, Any]]:
        ids = {"object_type_id": path_value(obj["object_type_id"]), "object_id": path_value(obj["object_id"])}
        path = spec.path.format(**ids)
        query: dict[str, Any] = {"id_type": "object_id"}
        if not spec.paginated:
            pages = [records(ctx.client.get(path, query, table=name), spec.envelope)]
        else:
            query["limit"] = spec.page_size
            pages = (records(p, spec.envelope) for p in ctx.client.pages("GET", path, query, table=name))
        out = []
        for page in pages:
            for row in page:
                out.append(shape(dict(row), obj))
            if not page:
                break
        return out

    def shape(row: dict[str, Any], obj: dict[str, Any]) -> dict[str, Any]:
        row["object_type_id"] = obj["object_type_id"]
        row["object_id"] = obj["object_id"]
        if name == "object_relationships":
            identifiers = row.get("identifiers") or {}
            row["cio_id"] = identifiers.get("cio_id") or row.get("cio_id")
        return convert_timestamps(row, spec.timestamps)

    def per_page(page: list[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
        describe = lambda obj: f"object {obj.get('object_type_id')}/{obj.get('object_id')} (for {name})"  # noqa: E731
        for rows in ctx.map_unordered(skip_missing(read, describe), page):
            if rows:
                yield rows

    columns = table_columns(spec)
    if name == "object_attributes":
        columns["attributes"] = {"data_type": "json", "nullable": True}
    return dlt.transformer(
        per_page,
        data_from=objects,
        name=name,
        primary_key=list(spec.primary_key),
        write_disposition="merge",
        columns=columns,
    )
