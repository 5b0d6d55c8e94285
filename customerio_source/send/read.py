"""Rows read back from a warehouse table (DuckDB or Postgres) as a dlt resource, for ``push``.

DuckDB tables stream as Arrow tables (dlt writes them to parquet as they are), Postgres tables through a
server-side cursor; with an ``incremental_column`` the resource is a ``dlt.sources.incremental`` on it,
so a push sends only rows changed since the last successful one (the cursor moves only when the package
loads). Other sources (dlt's ``sql_database``/``sql_table``, any resource) work with the destination as well.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import dlt

from ..errors import ConfigError

CHUNK_ROWS = 50_000
"""Rows per chunk: dlt's parquet row groups, and so the batches the destination gets, are this size."""


@dataclass(frozen=True)
class Origin:
    """``duckdb:PATH`` or ``postgres:DSN`` (credentials stay out of every message)."""

    kind: str
    target: str

    @classmethod
    def parse(cls, text: str) -> Origin:
        kind, sep, target = str(text or "").partition(":")
        if not sep or kind not in ("duckdb", "postgres", "postgresql") or not target:
            raise ConfigError("--from must be duckdb:PATH or postgres:DSN")
        return cls("postgres" if kind == "postgresql" else kind, target)

    @property
    def label(self) -> str:
        return f"duckdb:{self.target}" if self.kind == "duckdb" else "postgres"


def split_table(name: str, origin: Origin) -> tuple[str, str]:
    schema, _, table = name.rpartition(".")
    if not table:
        raise ConfigError("--table must be TABLE or SCHEMA.TABLE")
    return schema or ("main" if origin.kind == "duckdb" else "public"), table


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def connect(origin: Origin, read_only: bool = True) -> Any:
    if origin.kind == "duckdb":
        import os

        import duckdb

        if not os.path.exists(origin.target):
            raise ConfigError(f"no DuckDB file at {origin.target}")
        try:
            return duckdb.connect(origin.target, read_only=read_only)
        except duckdb.Error as exc:
            raise ConfigError(f"cannot open {origin.label}: {str(exc).splitlines()[0]}") from None
    import psycopg2

    try:
        return psycopg2.connect(origin.target)
    except psycopg2.Error as exc:
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"cannot connect to postgres: {redact(message, origin.target)}") from None


def redact(text: str, dsn: str) -> str:
    """``text`` without the DSN's password."""
    from urllib.parse import urlsplit

    try:
        password = urlsplit(dsn).password
    except ValueError:
        password = None
    return text.replace(password, "***") if password else text


def table_columns(origin: Origin, schema: str, table: str) -> list[str]:
    """The table's columns; :class:`ConfigError` when it does not exist."""
    conn = connect(origin)
    try:
        cur = conn.cursor()
        cur.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = %s AND "
            "table_name = %s ORDER BY ordinal_position".replace("%s", "?" if origin.kind == "duckdb" else "%s"),
            (schema, table),
        )
        columns = [r[0] for r in cur.fetchall()]
    finally:
        conn.close()
    if not columns:
        raise ConfigError(f"no table {schema}.{table} in {origin.label}")
    return columns


def warehouse_rows(
    origin: Origin,
    schema: str,
    table: str,
    incremental_column: str | None = None,
    order_by: str | None = None,
    chunk_rows: int = CHUNK_ROWS,
) -> Any:
    """A resource named after ``table`` yielding its rows in ``order_by`` (default: the incremental column,
    else the table's own order), ``chunk_rows`` at a time."""
    order = order_by or incremental_column

    def rows(cursor: Any = None) -> Iterator[Any]:
        where, params = "", []
        if cursor is not None and cursor.last_value is not None:
            where = f" WHERE {_quote(incremental_column)} > {'?' if origin.kind == 'duckdb' else '%s'}"
            params = [cursor.last_value]
        sql = f"SELECT * FROM {_quote(schema)}.{_quote(table)}{where}" + (f" ORDER BY {_quote(order)}" if order else "")
        conn = connect(origin)
        try:
            if origin.kind == "duckdb":
                reader = conn.sql(sql, params=params or None).to_arrow_reader(chunk_rows)
                import pyarrow as pa

                for batch in reader:  # Arrow straight into dlt's parquet files: no per-row Python objects
                    if batch.num_rows:
                        yield pa.Table.from_batches([batch])
            else:
                cur = conn.cursor(name="cio_push")
                cur.itersize = chunk_rows
                cur.execute(sql, params)
                names = None
                while True:
                    chunk = cur.fetchmany(chunk_rows)
                    if names is None and cur.description:
                        names = [d[0] for d in cur.description]
                    if not chunk:
                        break
                    yield [dict(zip(names, r, strict=True)) for r in chunk]
        finally:
            conn.close()

    if incremental_column:

        def incremental_rows(cursor: Any = dlt.sources.incremental(incremental_column)) -> Iterator[Any]:
            yield from rows(cursor)

        return dlt.resource(incremental_rows, name=table, write_disposition="append")
    return dlt.resource(rows, name=table, write_disposition="append")
