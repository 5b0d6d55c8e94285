"""Generic resources built from catalogue declarations: workspace-level lists and per-parent children."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import dlt
from dlt.extract.resource import DltResource

from .catalogue import TableSpec
from .context import RunContext, describe_parent, logger
from .errors import NotFoundError
from .transform import add_parent_columns, convert_timestamps, deleted_marker_column, timestamp_columns

# A child whose pages are this large streams parent by parent instead of fanning out.
STREAM_CHILD_PAGE_SIZE = 1000


def table_columns(spec: TableSpec) -> dict[str, dict[str, Any]]:
    """Column hints for a declared table: timestamps and, where deletes are marked, `_cio_deleted_at`."""
    columns = timestamp_columns(spec.timestamps)
    if spec.full_reread:
        columns.update(deleted_marker_column())
    return columns


def list_resource(ctx: RunContext, spec: TableSpec) -> DltResource:
    """A workspace-level list (campaigns, segments, snippets, ...), re-read in full every run.

    With an interval, only rows whose cursor (`updated`/`updated_at`) falls inside it are loaded; without
    one every row is merged, so rows that vanished can be marked deleted after the load.
    """

    def rows() -> Iterator[list[dict[str, Any]]]:
        page = [convert_timestamps(dict(row), spec.timestamps) for row in ctx.list_rows(spec.name)]
        if spec.cursor and ctx.interval.bounded:
            page = [row for row in page if ctx.interval.contains(row.get(spec.cursor))]
        if page:
            yield page

    return merge_resource(rows, spec)


def child_resource(ctx: RunContext, spec: TableSpec) -> DltResource:
    """A per-parent endpoint read for every parent, every run.

    Children (actions, variants, test groups, members) change without their parent's `updated` moving,
    so they are never filtered by the parent's cursor. Small children are read once per run into the
    shared context (metrics tables iterate them too); big paginated ones (segment members) stream.
    """
    assert spec.parent is not None

    describe = describe_parent(spec)

    def rows() -> Iterator[list[dict[str, Any]]]:
        if spec.paginated and (spec.page_size or 0) >= STREAM_CHILD_PAGE_SIZE:
            for parent in ctx.list_rows(spec.parent):  # type: ignore[arg-type]
                for page in _pages_or_skip(ctx, spec, parent, describe):
                    yield [
                        convert_timestamps(add_parent_columns(dict(row), parent, spec.parent_columns), spec.timestamps)
                        for row in page
                    ]
            return
        page = [convert_timestamps(dict(row), spec.timestamps) for row in ctx.list_rows(spec.name)]
        if page:
            yield page

    return merge_resource(rows, spec)


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


def _pages_or_skip(
    ctx: RunContext, spec: TableSpec, parent: dict[str, Any], describe: Callable[[dict[str, Any]], str]
) -> Iterator[list[dict[str, Any]]]:
    try:
        yield from ctx.read_pages(spec, ctx.child_path(spec, parent))
    except NotFoundError:
        logger.warning("%s vanished during the run (404); skipped", describe(parent))
