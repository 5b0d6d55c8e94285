"""What differs between DuckDB, Postgres and BigQuery in the models' SQL, and nothing else.

The models (:mod:`.models`) are written once against these few functions: the day of a timestamp in a
time zone, the Monday of a day's week, a ratio, a day minus N days, quoting, and creating a table from a
query. :func:`dialect_for` picks one by destination name.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Dialect:
    """One warehouse's spelling of the models' SQL."""

    name: str
    sqlglot: str
    """sqlglot's name for the dialect (tests parse every model with it)."""
    quote_char: str
    double: str
    text: str

    def q(self, identifier: str) -> str:
        """A quoted column or alias."""
        c = self.quote_char
        return f"{c}{identifier.replace(c, c + c)}{c}"

    def literal(self, text: str) -> str:
        return "'" + text.replace("\\", "\\\\" if self.name == "bigquery" else "\\").replace("'", "''") + "'"

    def day(self, column: str, timezone: str) -> str:
        """The calendar day of a UTC timestamp column in ``timezone`` (a DATE)."""
        tz = self.literal(timezone)
        if self.name == "bigquery":
            return f"DATE({column}, {tz})"
        if self.name == "postgres":
            return f"CAST(({column} AT TIME ZONE {tz}) AS DATE)"
        return f"CAST(timezone({tz}, {column}) AS DATE)"

    def week(self, day: str) -> str:
        """The Monday starting the ISO week of a DATE."""
        if self.name == "bigquery":
            return f"DATE_TRUNC({day}, ISOWEEK)"
        return f"CAST(DATE_TRUNC('week', {day}) AS DATE)"

    def ratio(self, numerator: str, denominator: str) -> str:
        """numerator / denominator as a float, NULL when the denominator is 0 or NULL."""
        if self.name == "bigquery":
            return f"SAFE_DIVIDE({numerator}, {denominator})"
        return f"CAST({numerator} AS {self.double}) / NULLIF({denominator}, 0)"

    def minus_days(self, day: str, days: int) -> str:
        if self.name == "bigquery":
            return f"DATE_SUB({day}, INTERVAL {int(days)} DAY)"
        return f"({day} - {int(days)})"

    def create_table(self, qualified: str, query: str) -> list[str]:
        """Statements that (re)create ``qualified`` from ``query``."""
        if self.name == "postgres":
            return [f"DROP TABLE IF EXISTS {qualified}", f"CREATE TABLE {qualified} AS {query}"]
        return [f"CREATE OR REPLACE TABLE {qualified} AS {query}"]

    def columns_query(self, dataset_literal: str, information_schema: str) -> str:
        """Table and column names of one dataset."""
        if self.name == "bigquery":
            return f"SELECT table_name, column_name FROM {information_schema}"
        return f"SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = {dataset_literal}"


DIALECTS: dict[str, Dialect] = {
    "duckdb": Dialect("duckdb", "duckdb", '"', "DOUBLE", "VARCHAR"),
    "postgres": Dialect("postgres", "postgres", '"', "DOUBLE PRECISION", "TEXT"),
    "bigquery": Dialect("bigquery", "bigquery", "`", "FLOAT64", "STRING"),
}


def dialect_for(destination_name: str) -> Dialect:
    """The dialect of a dlt destination (``motherduck`` speaks DuckDB)."""
    name = "duckdb" if destination_name == "motherduck" else destination_name
    if name not in DIALECTS:
        raise ValueError(f"analytics models support {', '.join(DIALECTS)}, not {destination_name}")
    return DIALECTS[name]


Qualifier = Callable[[str], str]
"""Table name -> fully qualified, quoted name (a dlt sql client's ``make_qualified_table_name``)."""
