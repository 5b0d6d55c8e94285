"""Activities: newest first, 30 days of retention, no time filter.

Incremental on `timestamp`: paging stops at the first page that reaches below the watermark, and rows merge
on `id`, so the table keeps history past the API's 30 days. With ``activities_include_deleted`` a second
pass asks for deleted people's activities too (`deleted=true`).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

import dlt
from dlt.sources import DltResource

from .catalogue import TableSpec
from .context import EPOCH, RunContext, records
from .resources import merge_resource, table_columns
from .transform import convert_timestamps


def activities_resource(ctx: RunContext, spec: TableSpec) -> DltResource:
    def read(query: dict[str, Any], floor: datetime | None) -> Iterator[list[dict[str, Any]]]:
        for payload in ctx.client.pages("GET", spec.path, query, table=spec.name):
            page = [convert_timestamps(row, ("timestamp",)) for row in records(payload, spec.envelope)]
            if page:
                yield page
            if not page:
                return
            if floor is not None and any(row.get("timestamp") and row["timestamp"] < floor for row in page):
                return  # newest first: everything after this page is older than the watermark

    def rows(
        # primary_key=(): no per-row hashes of the rows at the watermark in state (a burst of activities in
        # one second would put thousands there); those rows are read again next run and merge on `id`
        timestamp: dlt.sources.incremental[datetime] = dlt.sources.incremental(
            "timestamp",
            initial_value=ctx.interval.initial_value,
            end_value=ctx.interval.end,
            range_end="open",
            primary_key=(),
        ),
    ) -> Iterator[list[dict[str, Any]]]:
        floor = timestamp.start_value
        if floor is not None and floor <= EPOCH:
            floor = None
        yield from read({"limit": spec.page_size}, floor)
        if ctx.activities_include_deleted:
            yield from read({"limit": spec.page_size, "deleted": "true"}, floor)

    columns = table_columns(spec)
    columns["data"] = {"data_type": "json", "nullable": True}
    return merge_resource(rows, spec, columns)
