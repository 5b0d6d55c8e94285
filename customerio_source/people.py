"""People: every person (`customers`), their attributes in batches of 100, and per-person tables.

`customers` enumerates every person through the people search (``POST /v1/customers``, 1000 per page) with
a filter that matches everyone, so people who belong to no segment are included. The other people tables
are dlt transformers fed by that enumeration, so a run searches people once however many of them it loads.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, Protocol

import dlt
from dlt.sources import DltResource

from .catalogue import CATALOGUE, TableSpec
from .client import path_value
from .context import RunContext, Turns, records, skip_missing
from .deliveries import delivery_range, window_params, windows
from .people_changes import PeopleChanges
from .transform import convert_nested_timestamps, convert_timestamps, deleted_marker_column, timestamp_columns

PEOPLE_PAGE_SIZE = 1000  # POST /v1/customers: max limit 1000
ATTRIBUTES_BATCH = 100  # POST /v1/customers/attributes: 1-100 ids per request

# The search needs a filter; there is no "everyone" filter in the grammar. Nobody has this attribute, so
# `not exists` on it matches every person, including people with no id, no email and no segment.
NEVER_SET_ATTRIBUTE = "_customerio_source_never_set"
MATCH_EVERYONE = {"not": {"attribute": {"field": NEVER_SET_ATTRIBUTE, "operator": "exists"}}}

ATTRIBUTE_TYPES = {"text", "bigint", "double", "bool", "timestamp"}


class AttributesSource(Protocol):
    """Another way to read every person's attributes, chosen when the run extracts (`bulk.AttributesByExport`)."""

    def chosen(self) -> bool: ...

    def pages(self) -> Iterator[list[dict[str, Any]]]: ...


class SearchEnd:
    """Who is last in the people search, set just before the last page is handed on, so transformers that
    batch across pages know when to send what they still hold. (A marker on the row, not on the page: dlt's
    map steps rebuild page lists.)"""

    def __init__(self) -> None:
        self.last_cio_id: str | None = None

    def is_last(self, page: list[dict[str, Any]]) -> bool:
        return bool(page) and self.last_cio_id is not None and page[-1].get("cio_id") == self.last_cio_id


def people_pages(ctx: RunContext, end: SearchEnd | None = None) -> Iterator[list[dict[str, Any]]]:
    """Every person's identifiers ({cio_id, id, email}), one search page at a time. Each page is held until
    the next one shows whether it was the last, which ``end`` then records."""
    held: list[dict[str, Any]] | None = None
    for payload in ctx.client.pages(
        "POST", "/v1/customers", {"limit": PEOPLE_PAGE_SIZE}, body={"filter": MATCH_EVERYONE}, table="customers"
    ):
        page = [
            {"cio_id": row.get("cio_id"), "id": row.get("id") or None, "email": row.get("email")}
            for row in records(payload, "identifiers")
        ]
        if not page:
            break
        if held is not None:
            yield held
        held = page
        if not payload.get("next"):
            break
    if held is not None:
        if end is not None:
            end.last_cio_id = held[-1].get("cio_id")
        yield held


def customers_resource(ctx: RunContext, end: SearchEnd) -> DltResource:
    """`customers`: every person, one search page at a time; ``end`` learns who is last (for transformers)."""

    def customers() -> Iterator[list[dict[str, Any]]]:
        yield from people_pages(ctx, end)

    resource = dlt.resource(
        customers,
        name="customers",
        primary_key="cio_id",
        write_disposition="merge",
        columns=deleted_marker_column(),
        parallelized=True,
    )
    return resource


def parse_attribute_columns(specs: Sequence[str]) -> tuple[tuple[str, str], ...]:
    """`plan`, `score:double`, `signed_up:timestamp` -> ((name, type), ...)."""
    out = []
    for item in specs:
        name, _, type_ = item.partition(":")
        type_ = type_ or "text"
        if not name or type_ not in ATTRIBUTE_TYPES:
            raise ValueError(f"attribute column {item!r}: use NAME or NAME:TYPE with TYPE in {sorted(ATTRIBUTE_TYPES)}")
        out.append((name, type_))
    return tuple(out)


def attribute_table_columns(promoted: tuple[tuple[str, str], ...]) -> dict[str, dict[str, Any]]:
    """Column hints of `customer_attributes` (either path): JSON attributes, promoted typed columns, deletes."""
    columns: dict[str, dict[str, Any]] = {
        "attributes": {"data_type": "json"},
        "timestamps": {"data_type": "json"},
        **deleted_marker_column(),
    }
    for name, type_ in promoted:
        columns[f"attr_{name}"] = {"data_type": type_, "nullable": True}
    return columns


def typed_attribute(value: Any, type_: str) -> Any:
    """Coerce an attribute (the API sends every attribute as a string) to the promoted column's type."""
    if value is None or value == "":
        return None
    try:
        if type_ == "bigint":
            return int(float(value))
        if type_ == "double":
            return float(value)
        if type_ == "bool":
            return str(value).lower() in ("true", "1", "yes")
        if type_ == "timestamp":
            return convert_timestamps({"v": int(float(value))}, ("v",))["v"]
    except (TypeError, ValueError):
        return None
    return str(value)


def attributes_transformer(
    ctx: RunContext, people: DltResource, end: SearchEnd, exports: AttributesSource | None = None
) -> DltResource:
    """`customer_attributes`: POST /v1/customers/attributes with 100 ids per request, fed by `customers`
    (whose ``end`` it shares). With ``exports`` (`--bulk auto`), the first page asks whether one export is
    cheaper; if so the export's rows are this table's rows and the search pages only feed `customers`."""
    promoted = parse_attribute_columns(ctx.attribute_columns)

    def fetch(batch: list[str]) -> list[dict[str, Any]]:
        payload = ctx.client.post(
            "/v1/customers/attributes", {"ids": batch}, {"id_type": "cio_id"}, table="customer_attributes"
        )
        return [shape(item.get("customer") or item) for item in records(payload, "customers")]

    def shape(customer: dict[str, Any]) -> dict[str, Any]:
        identifiers = customer.get("identifiers") or {}
        attributes = customer.get("attributes") or {}
        row = {
            "cio_id": identifiers.get("cio_id") or attributes.get("cio_id"),
            "id": identifiers.get("id") or customer.get("id") or None,
            "email": identifiers.get("email"),
            "attributes": attributes,
            "timestamps": customer.get("timestamps"),
            "unsubscribed": customer.get("unsubscribed"),
            "devices": [convert_timestamps(dict(d), ("last_used",)) for d in customer.get("devices") or []],
        }
        for name, type_ in promoted:
            row[f"attr_{name}"] = typed_attribute(attributes.get(name), type_)
        return row

    changes: list[PeopleChanges] = []  # created on the first page, inside dlt's resource context
    held: list[str] = []  # selected people not yet sent (fewer than a batch)
    turns = Turns()
    exported: list[bool] = []

    def attributes(page: list[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
        if exports is not None and exports.chosen():
            if not exported:
                exported.append(True)
                yield from exports.pages()
            return
        if not changes:
            changes.append(
                PeopleChanges(
                    ctx,
                    dlt.current.resource_state("customer_attributes"),
                    ctx.attributes_refresh,
                    ctx.attributes_full_refresh_days,
                )
            )
        held.extend(changes[0].select([person["cio_id"] for person in page if person.get("cio_id")]))
        # few people change between runs: batches fill across search pages, the last page sends the rest
        cut = len(held) if end.is_last(page) else len(held) - len(held) % ATTRIBUTES_BATCH
        batches = [held[i : i + ATTRIBUTES_BATCH] for i in range(0, cut, ATTRIBUTES_BATCH)]
        del held[:cut]
        if batches:
            yield from turns.take(rows for rows in ctx.map_unordered(fetch, batches) if rows)

    columns = attribute_table_columns(promoted)
    return dlt.transformer(
        attributes,
        data_from=people,
        name="customer_attributes",
        primary_key="cio_id",
        write_disposition="merge",
        columns=columns,
    )


# -- per-person tables: one request (or more) per person ------------------------------------------------
def per_person_transformer(ctx: RunContext, people: DltResource, name: str) -> DltResource:
    """A per-person table (messages, activities, relationships, segments of each person)."""
    spec: TableSpec = CATALOGUE[name]

    def read(person: dict[str, Any]) -> list[dict[str, Any]]:
        # person look-ups send the `cio_`-prefixed id with id_type=cio_id, so nobody is silently missed
        path = spec.path.format(customer_id=path_value(f"cio_{person['cio_id']}"))
        rows: list[dict[str, Any]] = []
        for query in queries():
            if spec.paginated and spec.page_size:
                query["limit"] = spec.page_size
                pages = (records(p, spec.envelope) for p in ctx.client.pages("GET", path, query, table=name))
            else:
                pages = iter([records(ctx.client.get(path, query, table=name), spec.envelope)])
            for page in pages:
                rows.extend(shape(dict(raw), person) for raw in page)
                if not page:
                    break
        return rows

    def queries() -> list[dict[str, Any]]:
        """One query per request series: person messages are windowed like `messages` (6 months max)."""
        if name != "customer_messages":
            return [{"id_type": "cio_id"}]

        start, end = delivery_range(ctx, ctx.interval.start, ctx.interval.end)
        return [{"id_type": "cio_id", **window_params(lower, upper)} for lower, upper in windows(start, end)]

    def shape(row: dict[str, Any], person: dict[str, Any]) -> dict[str, Any]:
        row["cio_id"] = person["cio_id"] if name != "customer_messages" else row.get("cio_id", person["cio_id"])
        if name == "customer_relationships":
            identifiers = row.get("identifiers") or {}
            row["object_id"] = identifiers.get("object_id")
        if name == "customer_segments":
            row["segment_id"] = row.pop("id", None)
        if name == "customer_messages":
            row["person_cio_id"] = person["cio_id"]
            convert_nested_timestamps(row, "metrics")
        return convert_timestamps(row, spec.timestamps)

    turns = Turns()

    def per_page(page: list[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
        describe = lambda person: f"person cio_{person.get('cio_id')} (for {name})"  # noqa: E731
        yield from turns.take(rows for rows in ctx.map_unordered(skip_missing(read, describe), page) if rows)

    columns = timestamp_columns(spec.timestamps)
    if spec.full_reread:
        columns.update(deleted_marker_column())
    return dlt.transformer(
        per_page,
        data_from=people,
        name=name,
        primary_key=list(spec.primary_key),
        write_disposition="merge",
        columns=columns,
    )
