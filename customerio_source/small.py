"""Small irregular tables: allow-listed IP addresses and ESP suppressions."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import dlt
from dlt.sources import DltResource

from .catalogue import TableSpec
from .context import RunContext
from .resources import merge_resource, table_columns
from .transform import convert_timestamps

SUPPRESSION_TYPES = ("bounces", "spam_reports")  # the spec's enum for GET /v1/esp/suppression/{type}
SUPPRESSIONS_PAGE_SIZE = 1000


def ip_addresses_resource(ctx: RunContext, spec: TableSpec) -> DltResource:
    """`GET /v1/info/ip_addresses` returns bare strings: one row {ip} each."""

    def rows() -> Iterator[list[dict[str, Any]]]:
        payload = ctx.client.get(spec.path, table=spec.name)
        yield [
            {"ip": value if isinstance(value, str) else value.get("ip")} for value in payload.get(spec.envelope) or []
        ]

    return dlt.resource(rows, name=spec.name, primary_key="ip", write_disposition="merge", columns=table_columns(spec))


def suppressions_resource(ctx: RunContext, spec: TableSpec) -> DltResource:
    """ESP suppressions per type, offset-paginated (`limit` ≤ 1000, `offset`)."""

    def read(kind: str) -> Iterator[list[dict[str, Any]]]:
        offset = 0
        while True:
            payload = ctx.client.get(
                f"/v1/esp/suppression/{kind}", {"limit": SUPPRESSIONS_PAGE_SIZE, "offset": offset}, table=spec.name
            )
            raw = payload.get("suppressions") or []
            page = [
                convert_timestamps({**row, "suppression_type": kind, "category": payload.get("category")}, ("created",))
                for row in raw
            ]
            if page:
                yield page
            if len(raw) < SUPPRESSIONS_PAGE_SIZE:
                return
            offset += len(raw)

    def rows() -> Iterator[list[dict[str, Any]]]:
        for kind in SUPPRESSION_TYPES:
            yield from read(kind)

    return merge_resource(rows, spec)
