"""Generic resources built from catalogue declarations: workspace-level lists and per-parent children."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import dlt
import pyarrow as pa
import pyarrow.compute as pc
from dlt.sources import DltResource

from .arrow_pages import PageDecoder, batched_tables
from .catalogue import TableSpec
from .context import RunContext, describe_parent, logger
from .errors import NotFoundError
from .transform import arrow_load_id_column, convert_timestamps, deleted_marker_column, timestamp_columns


def table_columns(spec: TableSpec) -> dict[str, dict[str, Any]]:
    """Column hints for a declared table: timestamps, where deletes are marked `_cio_deleted_at`, and for
    Arrow tables a nullable `_dlt_load_id`."""
    columns = timestamp_columns(spec.timestamps)
    if spec.full_reread:
        columns.update(deleted_marker_column())
    if spec.arrow_row:
        columns.update(arrow_load_id_column())
    return columns


def list_resource(ctx: RunContext, spec: TableSpec) -> DltResource:
    """A workspace-level list (campaigns, segments, snippets, ...), re-read in full every run.

    With an interval, only rows whose cursor (`updated`/`updated_at`) falls inside it are loaded; without
    one every row is merged, so rows that vanished can be marked deleted after the load.
    """

    def rows() -> Iterator[list[dict[str, Any]]]:
        page = [convert_timestamps(dict(row), spec.timestamps) for row in ctx.list_rows(spec.name)]
        if spec.interval_field and ctx.interval.bounded:
            page = [row for row in page if ctx.interval.contains(row.get(spec.interval_field))]
        if page:
            yield page

    return merge_resource(rows, spec)


def child_resource(ctx: RunContext, spec: TableSpec) -> DltResource:
    """A per-parent endpoint read for every parent, every run.

    Children (actions, variants, test groups, members) change without their parent's `updated` moving,
    so they are never filtered by the parent's cursor. Small children are read once per run into the
    shared context (metrics tables iterate them too); big ones declared with ``arrow_row`` (segment
    members) stream as Arrow tables.
    """
    assert spec.parent is not None

    describe = describe_parent(spec)

    def rows() -> Iterator[list[dict[str, Any]] | pa.Table]:
        if spec.arrow_row:
            yield from batched_tables(arrow_children(ctx, spec, describe))
            return
        page = [convert_timestamps(dict(row), spec.timestamps) for row in ctx.list_rows(spec.name)]
        if page:
            yield page

    return merge_resource(rows, spec)


def arrow_children(
    ctx: RunContext, spec: TableSpec, describe: Callable[[dict[str, Any]], str]
) -> Iterator[pa.Table]:
    """The children of every parent as Arrow tables, parent by parent, page by page (segment members: up to
    30,000 a page), each with its parent's key columns."""
    decoder = PageDecoder(
        spec.envelope,
        spec.arrow_row,
        required=tuple(key for key in spec.primary_key if key in spec.arrow_row),
        page_lists=spec.page_lists,
    )
    query = {**spec.params, "limit": spec.page_size}
    for parent in ctx.list_rows(spec.parent):  # type: ignore[arg-type]
        try:
            path = ctx.child_path(spec, parent)
            for payload in ctx.client.pages("GET", path, query, table=spec.name, decode=decoder):
                page = payload.get(spec.envelope)
                if page is None or not page.num_rows:
                    break  # an empty page ends the list even if a cursor came with it
                yield with_row_ids(with_parent_columns(page, parent, spec.parent_columns), spec.primary_key)
        except NotFoundError:
            logger.warning("%s vanished during the run (404); skipped", describe(parent))


def with_parent_columns(page: pa.Table, parent: dict[str, Any], columns: dict[str, str]) -> pa.Table:
    """The page with each of ``columns`` (child column -> parent field) set to the parent's value."""
    for column, source in columns.items():
        page = page.append_column(column, pa.repeat(parent.get(source), page.num_rows))
    return page


def with_row_ids(page: pa.Table, key: tuple[str, ...]) -> pa.Table:
    """The page with `_dlt_id` made of its primary key (`<segment_id>:<cio_id>`): stable across runs, and
    the column a table first loaded from dict rows has as NOT NULL, so such a table takes Arrow pages."""
    parts = [pc.cast(page.column(name), pa.string()) for name in key]
    return page.append_column("_dlt_id", pc.binary_join_element_wise(*parts, ":"))


def merge_resource(
    rows: Callable[..., Iterator[Any]], spec: TableSpec, columns: dict[str, dict[str, Any]] | None = None
) -> DltResource:
    """The resource for a declared table: merged on its primary key, extracted in parallel with others."""
    return dlt.resource(
        rows,
        name=spec.name,
        primary_key=list(spec.primary_key),
        write_disposition="merge",
        columns=table_columns(spec) if columns is None else columns,
        parallelized=True,
    )
