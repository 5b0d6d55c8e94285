"""Bulk mode: load `customer_attributes` and deliveries through the exports API instead of paging.

Flow of one export: ``POST /v1/exports/customers`` or ``POST /v1/exports/deliveries`` creates it; ``GET
/v1/exports/{id}`` is polled (interval growing ×1.5 from 1 s to 30 s, bounded total wait) until ``status`` is
``done`` (``failed`` stops the run with one line); ``GET /v1/exports/{id}/download`` returns a signed URL valid
for 15 minutes, fetched at once with plain ``requests``. Every App API call goes through the shared
:class:`CustomerIOClient` (rate limiter, retries); the file request carries **no** Authorization header (an
auth hook strips any, and disables ``.netrc``), so the key never reaches the file host. A download refused
with 403/400/401 (an expired link), a 5xx or a cut stream asks for a new URL and retries (bounded); rows
already yielded are skipped on the retry, so a resumed file adds nothing twice.

Deliveries: one export per campaign, newsletter and transactional message and per window of at most 360 days
of `created` (the API truncates ranges over 12 months; an export without a range covers only 6 months).
Broadcasts cannot be exported by this endpoint: their deliveries are read through the API path
(``/v1/broadcasts/{id}/messages``, windowed like `messages`). Deliveries of a deleted parent are not reachable
by export (``/v1/messages`` still lists them): use ``--bulk api`` for an exact historic backfill.

File format (not in the spec; assumed, and parsed tolerantly):
- gzip is detected by its magic bytes (``1f 8b``), whatever the headers say; plain files pass through.
- The first non-empty line decides: ``{`` means JSON lines (one object per line), anything else is CSV with a
  header row. Empty CSV cells mean "absent" (CSV cannot tell an empty string from a missing value).
- Deliveries, in any column order: flattened metric columns are mapped back to the API's nested ``metrics``
  whatever the spelling (``metrics.opened``, ``metrics__opened``, ``metrics/opened``, ``opened``,
  ``opened_at``); ``cio_id``/``email`` (or ``customer_identifiers.*``) become ``customer_identifiers``, whose
  ``id`` defaults to ``customer_id``. Aliases (Customer.io's own warehouse export schema spells them so):
  ``delivery_id`` for ``id``, ``created_at`` for ``created``, ``delivery_type`` for ``type``, and
  ``internal_customer_id`` for the person's ``cio_id`` (assumed: that schema's name for the internal id;
  ``customer_id`` stays the person's own id). Timestamps may be unix seconds (or milliseconds) or ISO 8601;
  all become unix seconds. Columns the file lacks (``deduplicate_id``, ``trigger_event_id``,
  ``message_template_id``...) load as null; unknown columns are kept, as extra columns (text, from CSV).
  A record without a delivery id or a readable `created` stops the run with one line naming the file and
  the missing column (:class:`ExportLayoutError`, exit code 2), before anything is loaded.
- Customers: ``cio_id``, ``id``, ``email`` plus one column per requested attribute (or an API-shaped JSON
  object with ``identifiers``/``attributes``). Rows match the API path's ``customer_attributes`` rows; files
  carry no devices or per-attribute timestamps, so those stay empty in bulk mode. Rows without a cio_id are
  skipped. The attribute names to request are discovered from a sample of 100 people (2 requests) plus
  ``attribute_columns``; an attribute only people outside the sample have is not exported.

``--bulk auto``: `customer_attributes` counts people with the people search, stopping at
``AUTO_PEOPLE`` (≤ 50 requests), and exports above it: the API path costs ceil(people / 100) + ceil(people /
1000) requests, an export ~3 requests + polls but minutes of waiting. `messages` decides at run time, once
the range to read is known: one ``GET /v1/messages`` sample gives the delivery density, and exports are used
when the API path would take at least ``AUTO_MIN_API_REQUESTS`` requests (ceil(deliveries / 1000)) and
twice the exports' cost (~``EXPORT_REQUESTS`` each).
"""

from __future__ import annotations

import csv
import functools
import gzip
import io
import itertools
import logging
import math
import threading
import time
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import IO, Any
from urllib.parse import urlsplit

import dlt
import orjson
import pendulum
import pyarrow as pa
import requests
import urllib3
from dlt.sources import DltResource

from . import builders
from .arrow_pages import page_to_arrow
from .catalogue import CATALOGUE, TableSpec
from .client import USER_AGENT, CustomerIOClient
from .context import RunContext, interleave, records
from .deliveries import (
    DELIVERY_METRICS,
    DELIVERY_NESTED,
    DELIVERY_SCHEMA,
    OPEN_END_MARGIN,
    WINDOW,
    catch_up,
    created_cursor,
    read_windows,
    window_params,
    windows,
)
from .errors import ApiError, ConfigError, NotFoundError
from .people import MATCH_EVERYONE, attribute_table_columns, parse_attribute_columns, typed_attribute
from .resources import merge_resource
from .transform import arrow_load_id_column, to_datetime

logger = logging.getLogger("customerio_source")

BULK_MODES = ("exports", "api", "auto")
EXPORT_WINDOW = timedelta(days=360)  # ranges over 12 months are truncated by the API
EXPORTABLE = {
    "campaigns": "campaign_id",
    "newsletters": "newsletter_id",
    "transactional_messages": "transactional_message_id",
}
IDENTIFIERS = ("cio_id", "id", "email")
METRIC_NAMES = frozenset((*DELIVERY_METRICS, "drafted"))
# other spellings of delivery columns (Customer.io's warehouse export schema: delivery_id, created_at...)
ROW_ALIASES = {"created": "created", "created_at": "created", "delivery_id": "id", "delivery_type": "type"}
REQUIRED_COLUMNS = {"id": ("id", "delivery_id"), "created": ("created", "created_at")}
AUTO_PEOPLE = 50_000  # above this many people, `auto` exports customer_attributes
AUTO_MIN_API_REQUESTS = 500  # below this many API requests, deliveries stay on the API path
EXPORT_REQUESTS = 6  # create + ~3 polls + download URL + a spare, per export
ATTRIBUTE_SAMPLE = 100


class ExportError(ApiError):
    """An export failed, never finished, or its file could not be fetched."""


class ExportLayoutError(ConfigError):
    """An export file whose columns the parser cannot map to a delivery (bad input: the run stops)."""


@dataclass(frozen=True)
class ExportSettings:
    """Polling and download bounds."""

    poll_first: float = 1.0
    poll_factor: float = 1.5
    poll_max: float = 30.0
    max_wait: float = 4 * 3600.0
    download_attempts: int = 4
    download_timeout: float = 300.0
    page_rows: int = 5000


DEFAULT_SETTINGS = ExportSettings()


# -- one export: create, poll, download ------------------------------------------------------------------
def export_rows(
    client: CustomerIOClient,
    kind: str,
    body: dict[str, Any],
    what: str,
    table: str,
    settings: ExportSettings,
    check: Callable[[dict[str, Any], str], None] | None = None,
) -> Iterator[dict[str, Any]]:
    """Create an export, wait for it, and stream its file's records (raw dicts, see :func:`iter_records`);
    ``check(record, file)`` sees each record first, with a label naming the file."""
    export = client.post(f"/v1/exports/{kind}", body, table=table).get("export") or {}
    export_id = export.get("id")
    if export_id is None:
        raise ExportError(f"POST /v1/exports/{kind} ({what}) returned no export id")
    wait_until_done(client, export_id, what, table, settings)
    yield from download_records(client, export_id, what, table, settings, check)


def wait_until_done(
    client: CustomerIOClient, export_id: int, what: str, table: str, settings: ExportSettings
) -> dict[str, Any]:
    """Poll the export until `done`; one clear line on `failed` or when the wait budget runs out."""
    delay, waited = settings.poll_first, 0.0
    endpoint = "GET /v1/exports/{export_id}"
    while True:
        export = client.get(f"/v1/exports/{export_id}", table=table).get("export") or {}
        status = export.get("status")
        if status == "done":
            return export
        if status == "failed" or export.get("failed") is True:
            raise ExportError(
                f"export {export_id} ({what}) failed on Customer.io's side; run again later or use --bulk api",
                endpoint=endpoint,
            )
        if waited >= settings.max_wait:
            raise ExportError(
                f"export {export_id} ({what}) was still {status!r} after {waited:.0f}s of polling; "
                "run again later or use --bulk api",
                endpoint=endpoint,
            )
        time.sleep(delay)
        waited += delay
        delay = min(settings.poll_max, delay * settings.poll_factor)


class _NoAuth(requests.auth.AuthBase):
    """Strip any Authorization header (and, being set, keep requests from reading ~/.netrc)."""

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers.pop("Authorization", None)
        return request


class _Refused(Exception):
    """The file host refused the link (expired, 5xx...): worth a new URL."""


RENEW_STATUSES = frozenset({400, 401, 403, 408, 429, 500, 502, 503, 504})
TRANSIENT = (requests.RequestException, urllib3.exceptions.HTTPError, OSError, EOFError, zlib.error, _Refused)


def download_records(
    client: CustomerIOClient,
    export_id: int,
    what: str,
    table: str,
    settings: ExportSettings,
    check: Callable[[dict[str, Any], str], None] | None = None,
) -> Iterator[dict[str, Any]]:
    """Stream a finished export's records; on an expired link or a cut stream, ask for a new URL (bounded)."""
    consumed = 0
    for attempt in range(1, settings.download_attempts + 1):
        url = client.get(f"/v1/exports/{export_id}/download", table=table).get("url")
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise ExportError(f"export {export_id} ({what}): the download endpoint returned no URL")
        host = urlsplit(url).hostname or "?"
        try:
            with requests.get(
                url,
                stream=True,
                timeout=(30, settings.download_timeout),
                auth=_NoAuth(),
                headers={"User-Agent": USER_AGENT, "Accept": "*/*"},
            ) as response:
                if response.status_code in RENEW_STATUSES:
                    raise _Refused(f"HTTP {response.status_code}")
                if response.status_code >= 300:
                    raise ExportError(
                        f"export {export_id} ({what}): the file host {host} answered HTTP {response.status_code}"
                    )
                response.raw.decode_content = True  # undo a Content-Encoding; gzip files are sniffed below
                response.raw.auto_close = False  # io wrappers read past the end: EOF, not "closed file"
                label = f"export {export_id} ({what}), file {file_name(response, export_id)}"
                for index, record in enumerate(iter_records(response.raw)):
                    if check is not None:
                        check(record, f"{label}, record {index + 1}")
                    if index >= consumed:
                        consumed += 1
                        yield record
            return
        except TRANSIENT as exc:
            problem = str(exc) if isinstance(exc, _Refused) else type(exc).__name__  # never the URL
            if attempt == settings.download_attempts:
                raise ExportError(
                    f"export {export_id} ({what}): downloading the file from {host} kept failing ({problem}) "
                    f"with {attempt} fresh links"
                ) from None
            logger.warning("export %s: the file download failed (%s); asking for a new link", export_id, problem)
            time.sleep(min(10.0, 0.5 * 2 ** (attempt - 1)))


def file_name(response: requests.Response, export_id: int) -> str:
    """The file's name from its Content-Disposition (never the signed URL), else `export_<id>`."""
    disposition = response.headers.get("Content-Disposition") or ""
    for part in disposition.split(";"):
        key, _, value = part.strip().partition("=")
        if key.lower() == "filename" and value.strip('"'):
            return value.strip('"')
    return f"export_{export_id}"


# -- parsing ------------------------------------------------------------------------------------------
def open_text(binary: IO[bytes]) -> io.TextIOWrapper:
    """A text stream over a (possibly gzip) byte stream, gzip detected by its magic bytes."""
    buffered: IO[bytes] = binary if hasattr(binary, "peek") else io.BufferedReader(binary)  # type: ignore[arg-type]
    if buffered.peek(2)[:2] == b"\x1f\x8b":  # type: ignore[attr-defined]
        buffered = gzip.GzipFile(fileobj=buffered, mode="rb")  # type: ignore[assignment]
    return io.TextIOWrapper(buffered, encoding="utf-8-sig", newline="")  # type: ignore[type-var]


def iter_records(binary: IO[bytes]) -> Iterator[dict[str, Any]]:
    """Records of a CSV (with header) or JSON-lines file, streamed; CSV rows drop empty cells."""
    text = open_text(binary)
    first = next((line for line in text if line.strip()), None)
    if first is None:
        return
    lines = itertools.chain([first], text)
    if first.lstrip().startswith("{"):
        for line in lines:
            if line.strip():
                value = orjson.loads(line)
                if isinstance(value, dict):
                    yield value
        return
    reader = csv.reader(lines)
    header = [name.strip() for name in next(reader)]
    for values in reader:
        record = {name: value for name, value in zip(header, values, strict=False) if name and value != ""}
        if record:
            yield record


def to_unix(value: Any) -> float | None:
    """Unix seconds from seconds, milliseconds, digit strings or ISO 8601; None when unreadable."""
    if isinstance(value, str):
        value = value.strip()
        if value.isdigit():
            value = int(value)
        else:
            try:
                value = float(value)
            except ValueError:
                return _iso_to_unix(value)
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return None
    number = value / 1000 if value > 1e11 else value  # milliseconds
    if not math.isfinite(number) or number <= 0:
        return None
    return int(number) if float(number).is_integer() else float(number)


def _iso_to_unix(text: str) -> float | None:
    try:
        parsed = pendulum.parse(text, tz="UTC", strict=False)
    except (ValueError, pendulum.parsing.exceptions.ParserError):
        return None
    return parsed.timestamp() if isinstance(parsed, datetime) else None


def _split(key: str) -> tuple[str, str]:
    for separator in ("__", ".", "/"):
        if separator in key:
            head, _, tail = key.partition(separator)
            return head, tail
    return key, ""


def _bool(value: Any) -> bool | None:
    if isinstance(value, bool) or value is None:
        return value
    text = str(value).strip().lower()
    return True if text in ("true", "1", "yes", "t") else False if text in ("false", "0", "no", "f") else None


@functools.lru_cache(maxsize=4096)
def _route(key: str) -> tuple[str, str]:
    """Where a flattened delivery column goes: ("row"|"metrics"|"customer_identifiers", name)."""
    head, tail = _split(key)
    if head in ("metrics", "customer_identifiers") and tail:
        return head, tail
    if key in ROW_ALIASES:
        return "row", ROW_ALIASES[key]
    if key in METRIC_NAMES:
        return "metrics", key
    if key.endswith("_at") and key[:-3] in METRIC_NAMES:
        return "metrics", key[:-3]
    if key in ("cio_id", "email", "customer_cio_id", "customer_email"):
        return "customer_identifiers", key.removeprefix("customer_")
    if key == "internal_customer_id":
        return "customer_identifiers", "cio_id"
    return "row", key


def require_delivery_columns(record: dict[str, Any], where: str) -> None:
    """Raise :class:`ExportLayoutError` (one line: the file, the missing column) when ``record`` has no
    delivery id or no readable `created` under any known spelling."""
    found: dict[str, Any] = {}
    for key, value in record.items():
        part, name = _route(key)
        if part == "row" and name in REQUIRED_COLUMNS and value not in (None, ""):
            found[name] = value
    for name, spellings in REQUIRED_COLUMNS.items():
        if name not in found:
            columns = ", ".join(sorted(record)) or "none"
            raise ExportLayoutError(
                f"{where}: no {name!r} column (looked for {', '.join(spellings)}); its columns: {columns}"
            )
    if to_unix(found["created"]) is None:
        raise ExportLayoutError(f"{where}: 'created' is not a timestamp: {str(found['created'])[:40]!r}")


def delivery_row(record: dict[str, Any]) -> dict[str, Any]:
    """An export record shaped like a `/v1/messages` delivery (nested metrics, unix timestamps)."""
    row: dict[str, Any] = {}
    metrics: dict[str, Any] = {}
    identifiers: dict[str, Any] = {}
    parts = {"row": row, "metrics": metrics, "customer_identifiers": identifiers}
    for key, value in record.items():
        if value is None or value == "":
            continue
        if key in ("metrics", "customer_identifiers") and isinstance(value, dict):
            parts[key].update(value)
        else:
            part, name = _route(key)
            parts[part][name] = value
    row["created"] = to_unix(row.get("created"))
    row["metrics"] = {name: ts for name, ts in ((k, to_unix(v)) for k, v in metrics.items()) if ts is not None}
    if "id" not in identifiers and row.get("customer_id") is not None:
        identifiers["id"] = row["customer_id"]
    row["customer_identifiers"] = {k: v if v is None or isinstance(v, str) else str(v) for k, v in identifiers.items()}
    if "forgotten" in row:
        row["forgotten"] = _bool(row["forgotten"])
    return row


def _attribute_text(value: Any) -> str:
    """Attributes are strings in the API; JSON-lines values are turned into the same text."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return orjson.dumps(value).decode()
    return str(value)


def customer_row(record: dict[str, Any], promoted: Sequence[tuple[str, str]] = ()) -> dict[str, Any] | None:
    """An export record shaped like a `customer_attributes` row; None without a cio_id."""
    source = record["customer"] if isinstance(record.get("customer"), dict) else record
    identifiers = source.get("identifiers") if isinstance(source.get("identifiers"), dict) else {}
    nested = source.get("attributes") if isinstance(source.get("attributes"), dict) else None
    if nested is None:  # flat: every column is an attribute (`attributes.plan` spellings too)
        nested = {
            _split(k)[1] if _split(k)[0] == "attributes" else k: v
            for k, v in source.items()
            if k not in ("identifiers", "unsubscribed")
        }
    attributes = {k: _attribute_text(v) for k, v in nested.items() if v is not None and v != ""}
    for key in IDENTIFIERS:  # the API's attributes always hold cio_id, and id/email when set
        value = identifiers.get(key) or source.get(key)
        if value and not isinstance(value, (dict, list)) and key not in attributes:
            attributes[key] = _attribute_text(value)
    cio_id = attributes.get("cio_id")
    if not cio_id:
        return None
    row: dict[str, Any] = {
        "cio_id": cio_id,
        "id": attributes.get("id") or None,
        "email": attributes.get("email"),
        "attributes": attributes,
    }
    unsubscribed = _bool(source.get("unsubscribed"))
    if unsubscribed is not None:
        row["unsubscribed"] = unsubscribed
    for name, type_ in promoted:
        row[f"attr_{name}"] = typed_attribute(attributes.get(name), type_)
    return row


def pages_of(rows: Iterable[Any], size: int) -> Iterator[list[Any]]:
    """Consecutive lists of at most ``size`` items."""
    iterator = iter(rows)
    while page := list(itertools.islice(iterator, size)):
        yield page


# -- customer_attributes -----------------------------------------------------------------------------
def discover_attributes(ctx: RunContext) -> list[str]:
    """Attribute names of a sample of people (one search page of 100 + one attributes request)."""
    table = "customer_attributes"
    search = ctx.client.post("/v1/customers", {"filter": MATCH_EVERYONE}, {"limit": ATTRIBUTE_SAMPLE}, table=table)
    ids = [row["cio_id"] for row in records(search, "identifiers") if row.get("cio_id")][:ATTRIBUTE_SAMPLE]
    if not ids:
        return []
    payload = ctx.client.post("/v1/customers/attributes", {"ids": ids}, {"id_type": "cio_id"}, table=table)
    names: dict[str, None] = {}
    for item in records(payload, "customers"):
        customer = item.get("customer") or item
        names.update(dict.fromkeys(customer.get("attributes") or {}))
    return sorted(names)


def export_attribute_pages(
    ctx: RunContext, settings: ExportSettings = DEFAULT_SETTINGS, attributes: Sequence[str] | None = None
) -> Iterator[list[dict[str, Any]]]:
    """Every person's `customer_attributes` row from one customers export, in pages."""
    promoted = parse_attribute_columns(ctx.attribute_columns)
    names = list(attributes) if attributes is not None else discover_attributes(ctx)
    wanted = sorted((set(names) | {name for name, _ in promoted}) - set(IDENTIFIERS))
    body = {"filters": MATCH_EVERYONE, "attributes": wanted}
    found = export_rows(ctx.client, "customers", body, "every person", "customer_attributes", settings)
    shaped = (row for row in (customer_row(record, promoted) for record in found) if row is not None)
    yield from pages_of(shaped, settings.page_rows)


def bulk_customer_attributes_resource(
    ctx: RunContext, settings: ExportSettings = DEFAULT_SETTINGS, attributes: Sequence[str] | None = None
) -> DltResource:
    """`customer_attributes` from one customers export (same key, hints and disposition as the API path)."""

    def customer_attributes() -> Iterator[list[dict[str, Any]]]:
        yield from export_attribute_pages(ctx, settings, attributes)

    columns = attribute_table_columns(parse_attribute_columns(ctx.attribute_columns))
    return dlt.resource(
        customer_attributes,
        name="customer_attributes",
        primary_key="cio_id",
        write_disposition="merge",
        columns=columns,
    )


class AttributesByExport:
    """`--bulk auto` for `customer_attributes`, decided when the run extracts (building the source sends no
    request): people are counted once (at most ``AUTO_PEOPLE`` / 1000 requests), and at ``AUTO_PEOPLE`` or
    more, one customers export replaces the attribute batches."""

    def __init__(self, ctx: RunContext, settings: ExportSettings = DEFAULT_SETTINGS) -> None:
        self.ctx = ctx
        self.settings = settings
        self._chosen: bool | None = None
        self._lock = threading.Lock()

    def chosen(self) -> bool:
        with self._lock:
            if self._chosen is None:
                self._chosen = count_people(self.ctx, AUTO_PEOPLE) >= AUTO_PEOPLE
            return self._chosen

    def pages(self) -> Iterator[list[dict[str, Any]]]:
        yield from export_attribute_pages(self.ctx, self.settings)


# -- deliveries ---------------------------------------------------------------------------------------
def _created(parent: dict[str, Any]) -> datetime | None:
    value = to_datetime(parent.get("created") or parent.get("created_at"))
    return value if isinstance(value, datetime) else None


def export_job(
    ctx: RunContext,
    spec: TableSpec,
    key: str,
    parent_id: Any,
    lower: datetime,
    upper: datetime | None,
    settings: ExportSettings,
) -> Callable[[], Iterator[pa.Table]]:
    """One deliveries export (one parent, one window) as Arrow pages of rows with lower <= created < upper."""

    def pages() -> Iterator[pa.Table]:
        end = upper or datetime.now(timezone.utc) + OPEN_END_MARGIN
        body = {key: parent_id, "start": int(lower.timestamp()) - 1, "end": int(end.timestamp())}
        lo, hi = lower.timestamp(), upper.timestamp() if upper is not None else math.inf
        what = f"deliveries of {key} {parent_id}"
        try:
            found = export_rows(ctx.client, "deliveries", body, what, spec.name, settings, require_delivery_columns)
            rows = (row for row in map(delivery_row, found) if row["created"] is not None and lo <= row["created"] < hi)
            for page in pages_of(rows, settings.page_rows):
                yield page_to_arrow(page, DELIVERY_SCHEMA, DELIVERY_NESTED, required=spec.primary_key)
        except NotFoundError:
            logger.warning("%s vanished during the run (404); skipped", what)

    return pages


def broadcast_job(
    ctx: RunContext, spec: TableSpec, parent: dict[str, Any], lower: datetime, upper: datetime | None
) -> Callable[[], Iterator[pa.Table]]:
    """Broadcast deliveries (not exportable): the API path, /v1/broadcasts/{id}/messages in windows."""
    path = ctx.child_path(CATALOGUE["broadcast_messages"], parent)

    def pages() -> Iterator[pa.Table]:
        try:
            yield from read_windows(ctx, spec, path, lower, upper)
        except NotFoundError:
            logger.warning("broadcast %r vanished during the run (404); skipped", parent.get("id"))

    return pages


def delivery_jobs(
    ctx: RunContext, spec: TableSpec, start: datetime, end: datetime | None, settings: ExportSettings
) -> list[Callable[[], Iterator[pa.Table]]]:
    """Exports for every exportable parent and window, API reads for broadcasts."""
    parents = [spec.parent] if spec.parent else [*EXPORTABLE, "broadcasts"]
    jobs: list[Callable[[], Iterator[pa.Table]]] = []
    for table in parents:
        for parent in ctx.list_rows(table):
            lower = max(start, _created(parent) or start)  # no delivery predates what sent it
            if end is not None and lower >= end:
                continue
            if table == "broadcasts":
                jobs.append(broadcast_job(ctx, spec, parent, lower, end))
            else:
                for low, high in windows(lower, end, EXPORT_WINDOW):
                    jobs.append(export_job(ctx, spec, EXPORTABLE[table], parent["id"], low, high, settings))
    return jobs


def estimate_deliveries(ctx: RunContext, start: datetime, end: datetime | None) -> int:
    """Deliveries in [start, end), from the density of one page of the newest ≤ 180 days (1 request)."""
    upper = end or datetime.now(timezone.utc)
    lower = max(start, upper - WINDOW)
    payload = ctx.client.get("/v1/messages", {"limit": 1000, **window_params(lower, end)}, table="messages")
    rows = records(payload, "messages")
    if not rows:
        return 0
    sampled = (upper - lower).total_seconds()
    if payload.get("next"):
        oldest = min(float(row.get("created") or upper.timestamp()) for row in rows)
        sampled = max(1.0, upper.timestamp() - oldest)
    return int(len(rows) * max(1.0, (upper - start).total_seconds()) / max(1.0, sampled))


def exports_pay_off(ctx: RunContext, spec: TableSpec, start: datetime, end: datetime | None, exports: int) -> bool:
    """`auto` for deliveries: exports when the API path needs many requests and more than twice theirs."""
    api_requests = math.ceil(estimate_deliveries(ctx, start, end) / (spec.page_size or 1000))
    choice = api_requests >= max(AUTO_MIN_API_REQUESTS, 2 * EXPORT_REQUESTS * exports)
    logger.info(
        "%s: ~%d API requests vs %d exports: %s", spec.name, api_requests, exports, "exports" if choice else "API"
    )
    return choice


def bulk_deliveries_resource(
    ctx: RunContext, spec: TableSpec, settings: ExportSettings = DEFAULT_SETTINGS, auto: bool = False
) -> DltResource:
    """Deliveries through exports, with the cursor, lag and interval semantics of `deliveries_resource`."""

    def rows(created: dlt.sources.incremental[datetime] = created_cursor(ctx)) -> Iterator[pa.Table]:
        start, end, rereads = catch_up(ctx, spec, created)  # late engagement is re-read through the API
        if end is not None and start >= end:
            yield from rereads()
            return
        jobs = delivery_jobs(ctx, spec, start, end, settings)
        if auto and spec.parent is None:
            exports = len(jobs) - len(ctx.list_rows("broadcasts"))
            if not exports_pay_off(ctx, spec, start, end, exports):
                yield from read_windows(ctx, spec, spec.path, start, end)
                yield from rereads()
                return
        yield from interleave(jobs, ctx.concurrency)
        yield from rereads()

    return merge_resource(rows, spec, columns=arrow_load_id_column())


# -- choosing -------------------------------------------------------------------------------------------
def count_people(ctx: RunContext, stop_at: int) -> int:
    """People counted with the people search, stopping once ``stop_at`` is reached (≤ stop_at/1000 requests)."""
    seen = 0
    for payload in ctx.client.pages(
        "POST", "/v1/customers", {"limit": 1000}, body={"filter": MATCH_EVERYONE}, table="customer_attributes"
    ):
        page = records(payload, "identifiers")
        seen += len(page)
        if not page or seen >= stop_at:
            break
    return seen


def choose_bulk(mode: str, ctx: RunContext, table: str = "customer_attributes") -> bool:
    """Whether ``table`` loads through exports for ``--bulk exports|api|auto``.

    `auto`: True for deliveries, whose resource (built with ``auto=True``) decides at run time from the range
    it reads; for `customer_attributes` it counts people now (≤ AUTO_PEOPLE / 1000 requests), which the
    source leaves to run time instead (:class:`AttributesByExport`).
    """
    if mode not in BULK_MODES:
        raise ConfigError(f"--bulk must be one of {', '.join(BULK_MODES)}, got {mode!r}")
    if mode != "auto":
        return mode == "exports"
    if table == "customer_attributes":
        return count_people(ctx, AUTO_PEOPLE) >= AUTO_PEOPLE
    spec = CATALOGUE.get(table)
    return bool(spec and spec.builder is builders.deliveries and spec.parent in (None, *EXPORTABLE))
