"""Build Arrow tables from API pages, column by column: the fast path for big tables (deliveries).

dlt loads Arrow tables without per-row normalization, which is what lets local work keep up with the
API. Columns follow dlt's own naming for nested fields (`metrics__opened`, `customer_identifiers__cio_id`)
so the tables look the same as on the row-by-row path. Unknown fields never crash a load: scalars get an
inferred column (text where types mix), nested values one level of `__` columns or JSON text.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pa_json

from .context import records

TIMESTAMP = pa.timestamp("us", tz="UTC")


def _ints(values: list[Any]) -> pa.Array:
    """Integers, where ids may arrive as digit strings; anything else becomes null."""
    try:  # fast path: real ints and nulls, converted by pyarrow in C
        return pa.array(values, type=pa.int64())
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, OverflowError):
        pass
    out = []
    for value in values:
        if value is None or isinstance(value, bool):
            out.append(None)
        elif isinstance(value, int):
            out.append(value)
        elif isinstance(value, str) and value.lstrip("-").isdigit():
            out.append(int(value))
        elif isinstance(value, float) and value.is_integer():
            out.append(int(value))
        else:
            out.append(None)
    return pa.array(out, type=pa.int64())


def _texts(values: list[Any]) -> pa.Array:
    try:
        return pa.array(values, type=pa.string())
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError):
        return pa.array(
            [None if v is None else v if isinstance(v, str) else _text(v) for v in values], type=pa.string()
        )


def _text(value: Any) -> str:
    if isinstance(value, (dict, list)):
        return orjson.dumps(value).decode()
    return str(value)


def _timestamps(values: list[Any]) -> pa.Array:
    """Unix seconds to microsecond UTC timestamps (dlt's default precision: no precision hints needed)."""
    try:
        seconds = pa.array(values, type=pa.int64())
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, OverflowError):
        seconds = pa.array(
            [int(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None for v in values],
            type=pa.int64(),
        )
    seconds = pc.if_else(pc.greater(seconds, 0), seconds, pa.scalar(None, pa.int64()))  # 0 means "never"
    return pc.multiply(seconds, 1_000_000).cast(TIMESTAMP)


def _bools(values: list[Any]) -> pa.Array:
    try:
        return pa.array(values, type=pa.bool_())
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError):
        return pa.array([v if isinstance(v, bool) else None for v in values], type=pa.bool_())


def _inferred(values: list[Any]) -> pa.Array:
    if any(isinstance(v, (dict, list)) for v in values):
        return _texts(values)
    try:
        return pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return _texts(values)


KINDS = {"int": _ints, "text": _texts, "timestamp": _timestamps, "bool": _bools}


ARROW_TYPES = {"int": pa.int64(), "text": pa.string(), "timestamp": pa.int64(), "bool": pa.bool_()}


def _row_type(schema: Mapping[str, str], flatten: Mapping[str, tuple[str, tuple[str, ...]]]) -> pa.StructType:
    """The Arrow type of one known row: declared fields, nested dicts as structs, timestamps as unix ints."""
    fields = [pa.field(name, ARROW_TYPES[kind]) for name, kind in schema.items()]
    for name, (kind, keys) in flatten.items():
        fields.append(pa.field(name, pa.struct([pa.field(key, ARROW_TYPES[kind]) for key in keys])))
    return pa.struct(fields)


def _fast_page(
    rows: list[dict[str, Any]],
    schema: Mapping[str, str],
    flatten: Mapping[str, tuple[str, tuple[str, ...]]],
) -> dict[str, pa.Array] | None:
    """Columns converted by pyarrow in C (a struct array of the whole page), or None when the page holds a
    field or nested key the schema does not know, or a value of another type (the careful path handles it)."""
    if not set().union(*rows) <= schema.keys() | flatten.keys():
        return None
    for name, (_, keys) in flatten.items():
        nested = [row[name] for row in rows if row.get(name)]
        if nested and not set().union(*nested) <= set(keys):
            return None
    try:
        struct = pa.array(rows, type=_row_type(schema, flatten))
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, OverflowError):
        return None
    return _struct_columns(struct, schema, flatten)


def _struct_columns(
    struct: pa.StructArray, schema: Mapping[str, str], flatten: Mapping[str, tuple[str, tuple[str, ...]]]
) -> dict[str, pa.Array]:
    """Named, finished columns of a struct array of rows typed by :func:`_row_type`."""
    columns: dict[str, pa.Array] = {}
    children = struct.flatten()  # flatten(), unlike field(), carries a null parent into its children
    for index, (name, kind) in enumerate(schema.items()):
        columns[name] = _finish(children[index], kind)
    for offset, (name, (kind, keys)) in enumerate(flatten.items()):
        nested = children[len(schema) + offset].flatten()
        for index, key in enumerate(keys):
            columns[f"{name}__{key}"] = _finish(nested[index], kind)
    return columns


def _table(columns: dict[str, pa.Array], required: tuple[str, ...]) -> pa.Table:
    fields = [pa.field(name, array.type, nullable=name not in required) for name, array in columns.items()]
    return pa.Table.from_arrays(list(columns.values()), schema=pa.schema(fields))


def _finish(array: pa.Array, kind: str) -> pa.Array:
    if kind != "timestamp":
        return array
    seconds = pc.if_else(pc.greater(array, 0), array, pa.scalar(None, pa.int64()))  # 0 means "never"
    return pc.multiply(seconds, 1_000_000).cast(TIMESTAMP)


def page_to_arrow(
    rows: list[dict[str, Any]],
    schema: Mapping[str, str],
    flatten: Mapping[str, tuple[str, tuple[str, ...]]] = {},  # noqa: B006 - read-only
    required: tuple[str, ...] = (),
) -> pa.Table:
    """Arrow table of one page, with a stable column set and order for known fields.

    ``schema`` types known top-level fields (int, text, timestamp, bool); each is always present (null
    when absent) so consecutive pages share one schema and concatenate without copies. ``flatten`` names
    dict fields to spread into `<field>__<key>` columns: (kind of the values, keys always present).
    Fields nobody declared are appended, inferred. ``required`` columns (the primary key) are not null.
    """
    fast = _fast_page(rows, schema, flatten)
    if fast is not None:
        return _table(fast, required)
    columns: dict[str, pa.Array] = {}
    for name, kind in schema.items():
        columns[name] = KINDS[kind]([row.get(name) for row in rows])
    for name, (kind, keys) in flatten.items():
        columns.update(_flattened(name, [row.get(name) for row in rows], kind, keys))
    extra: dict[str, None] = {}
    for row in rows:
        for key in row:
            if key not in schema and key not in flatten:
                extra.setdefault(key, None)
    for name in extra:
        values = [row.get(name) for row in rows]
        if any(isinstance(v, dict) for v in values):
            columns.update(_flattened(name, values, None, ()))
        else:
            columns[name] = _inferred(values)
    return _table(columns, required)


def _flattened(name: str, values: list[Any], kind: str | None, known: tuple[str, ...]) -> dict[str, pa.Array]:
    """Spread dict values into `name__key` columns in one pass over the keys present (sparse metrics)."""
    count = len(values)
    columns: dict[str, list[Any]] = {key: [None] * count for key in known}
    for index, value in enumerate(values):
        if value.__class__ is dict:
            for key, inner in value.items():
                column = columns.get(key)
                if column is None:
                    column = columns[key] = [None] * count
                column[index] = inner
    return {f"{name}__{key}": KINDS[kind](column) if kind else _inferred(column) for key, column in columns.items()}


class PageDecoder:
    """Decode a list page's body straight into an Arrow table: the client's ``decode`` for big tables.

    pyarrow's JSON reader parses the body in C++ without holding the GIL, so several pages decode at once on
    several cores while the main thread feeds dlt; going through Python objects (orjson, then
    :func:`page_to_arrow`) costs about twice the CPU, all of it under the GIL. The reader is strict: a field
    or nested key the schema does not know, a value of another JSON type, a float or an oversized number in
    an int column all make it fail, and then the body takes the careful path (orjson +
    :func:`page_to_arrow`), which infers or coerces. Either way the result is ``{"next": cursor, envelope:
    table}`` with the same columns; ``page_lists`` name other top-level lists of strings a page may hold
    (the membership's `ids`), parsed and dropped. A body that is not JSON raises ``orjson.JSONDecodeError``
    (the client retries it).
    """

    def __init__(
        self,
        envelope: str,
        schema: Mapping[str, str],
        flatten: Mapping[str, tuple[str, tuple[str, ...]]] = {},  # noqa: B006 - read-only
        required: tuple[str, ...] = (),
        page_lists: tuple[str, ...] = (),
    ) -> None:
        self.envelope = envelope
        self.schema = schema
        self.flatten = flatten
        self.required = required
        self.page_lists = page_lists
        self._explicit = pa.schema(
            [pa.field(envelope, pa.list_(_row_type(schema, flatten))), pa.field("next", pa.string())]
            + [pa.field(name, pa.list_(pa.string())) for name in page_lists]
        )

    def __call__(self, body: bytes) -> dict[str, Any]:
        if not body.strip():
            return {}
        try:
            parsed = pa_json.read_json(
                pa.BufferReader(body),
                read_options=pa_json.ReadOptions(use_threads=False, block_size=len(body) + 1024),
                parse_options=pa_json.ParseOptions(
                    explicit_schema=self._explicit, unexpected_field_behavior="error", newlines_in_values=True
                ),
            )
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
            return self._careful(orjson.loads(body))
        if parsed.num_rows != 1:  # more than one JSON document: not a page
            return self._careful(orjson.loads(body))
        rows = parsed.column(self.envelope).combine_chunks().flatten()  # a null list flattens to no rows
        return {
            "next": parsed.column("next")[0].as_py(),
            self.envelope: _table(_struct_columns(rows, self.schema, self.flatten), self.required),
        }

    def _careful(self, payload: Any) -> dict[str, Any]:
        if not isinstance(payload, dict):
            return {"next": None, self.envelope: self.table([])}
        rest = {key: value for key, value in payload.items() if key not in self.page_lists}
        return {**rest, self.envelope: self.table(records(payload, self.envelope))}

    def table(self, rows: list[dict[str, Any]]) -> pa.Table:
        """Rows as a table of this decoder's columns (an empty list gives an empty table of the known ones)."""
        if not rows:
            return _table(_struct_columns(pa.array([], type=_row_type(self.schema, self.flatten)), self.schema,
                                          self.flatten), self.required)
        return page_to_arrow(rows, self.schema, self.flatten, self.required)


def batched_tables(tables: Iterable[pa.Table], min_rows: int = 10_000) -> Iterator[pa.Table]:
    """Consecutive tables of one schema joined into tables of at least ``min_rows`` (the last may be smaller).

    dlt's extract costs about as much per item as per thousand Arrow rows (schema inference, incremental
    filtering, a parquet write), so handing it 10 pages at a time instead of one keeps the main thread from
    becoming the bottleneck. Joining does not copy the columns. A page of another schema (a surprise field)
    closes the batch before it.
    """
    batch: list[pa.Table] = []
    rows = 0
    for table in tables:
        if batch and table.schema != batch[0].schema:
            yield pa.concat_tables(batch)
            batch, rows = [], 0
        batch.append(table)
        rows += table.num_rows
        if rows >= min_rows:
            yield pa.concat_tables(batch)
            batch, rows = [], 0
    if batch:
        yield pa.concat_tables(batch)


def column_names(tables: Iterable[pa.Table]) -> set[str]:
    return {name for table in tables for name in table.column_names}
