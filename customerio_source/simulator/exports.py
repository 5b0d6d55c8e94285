"""Exports: create -> poll -> download (a signed-style URL serving a gzip CSV).

The real file format is not in the spec. Assumption: a gzip-compressed CSV with a header row
(customers: ``id,email,cio_id`` + requested attributes; deliveries: the delivery fields flattened, one
column per metric). The file URL needs no auth and expires after ``export_url_ttl`` seconds (403 then,
like an expired S3 pre-signed URL).

Other layouts are selectable (``server.exports.layout = ExportLayout(...)``): CSV or JSON lines, gzip or
plain, the column names of Customer.io's warehouse export schema (``delivery_id``, ``internal_customer_id``,
``created_at``, ``delivery_type``, ``<metric>_at``) in a shuffled order with extra columns it adds, and
columns left out (a file no parser can map).
"""

from __future__ import annotations

import csv
import io
import json
import random
import secrets
import threading
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .server import ApiError, Stream

if TYPE_CHECKING:
    from .server import SimulatorServer

READY_AFTER_SECONDS = 0.5
READY_AFTER_POLLS = 2
DELIVERY_COLUMNS = ["id", "created", "type", "customer_id", "cio_id", "email", "recipient", "subject",
                    "campaign_id", "action_id", "broadcast_id", "newsletter_id", "content_id",
                    "transactional_message_id", "failure_message", "forgotten"]
METRIC_COLUMNS = ["drafted", "attempted", "sent", "delivered", "opened", "clicked", "converted", "bounced",
                  "spammed", "unsubscribed", "dropped", "failed", "undeliverable"]
EXPORT_METRICS = {"created", *METRIC_COLUMNS}
EXPIRED_XML = (b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>AccessDenied</Code>'
               b"<Message>Request has expired</Message></Error>")
MISSING_XML = (b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>NoSuchKey</Code>'
               b"<Message>The specified key does not exist.</Message></Error>")


# deliveries' column names in Customer.io's warehouse export schema (the rest keep their names)
WAREHOUSE_NAMES = {"id": "delivery_id", "cio_id": "internal_customer_id", "created": "created_at",
                   "type": "delivery_type", **{m: f"{m}_at" for m in METRIC_COLUMNS}}
WAREHOUSE_EXTRA = {"workspace_id": 1, "template_version": "v3"}  # columns the connector does not know


@dataclass(frozen=True)
class ExportLayout:
    """How export files are written: ``names`` `api` or `warehouse`, ``format`` `csv` or `jsonl`, gzip or
    plain, delivery columns in a shuffled order or not, and delivery columns left out (by API name)."""

    names: str = "api"
    format: str = "csv"
    gzip: bool = True
    shuffle: bool = False
    drop: tuple[str, ...] = ()

    @property
    def suffix(self) -> str:
        return f".{self.format}" + (".gz" if self.gzip else "")


DEFAULT_LAYOUT = ExportLayout()


class ExportStore:
    """Server-side export jobs; export records live in the workspace catalog so lists include them."""

    def __init__(self, server: SimulatorServer) -> None:
        self.server = server
        self._jobs: dict[int, dict[str, Any]] = {}
        self._files: dict[str, tuple[int, float]] = {}
        self._lock = threading.Lock()
        self.layout = DEFAULT_LAYOUT

    # ------------------------------------------------------------ API side
    def _create(self, kind: str, spec: dict, description: str) -> dict:
        ws = self.server.ws
        cat = ws.cat
        eid = max(cat.exports, default=100) + 1
        now = ws.now
        rec = {"id": eid, "user_id": 7, "user_email": "api@acme.example.com", "total": 0,
               "deduplicate_id": f"{eid}:{now}", "type": kind, "failed": False, "description": description,
               "downloads": 0, "created_at": now, "updated_at": now, "status": "pending"}
        cat.exports[eid] = rec
        with self._lock:
            self._jobs[eid] = {"spec": spec, "t": time.monotonic(), "polls": 0}
        return dict(rec)

    def create_customers(self, body: Any) -> dict:
        from .handlers import _match

        if not isinstance(body, dict) or "filters" not in body:
            raise ApiError(400, "request body must contain `filters`")
        attrs = body.get("attributes", [])
        if not isinstance(attrs, list) or not all(isinstance(a, str) for a in attrs):
            raise ApiError(400, "`attributes` must be an array of strings")
        _match(self.server.ws, body["filters"], 0)  # validate the filter shape now
        return self._create("customers", {"filters": body["filters"], "attributes": attrs},
                            "Customers matching filters")

    def create_deliveries(self, body: Any) -> dict:
        if not isinstance(body, dict):
            raise ApiError(400, "request body must be an object")
        keys = [k for k in ("newsletter_id", "campaign_id", "transactional_message_id", "action_id") if k in body]
        if len(keys) != 1 or not isinstance(body[keys[0]], int):
            raise ApiError(400, "exactly one of newsletter_id, campaign_id, transactional_message_id, action_id")
        if "metric" in body and body["metric"] not in EXPORT_METRICS:
            raise ApiError(400, f"invalid metric {body['metric']!r}")
        for k in ("start", "end"):
            if k in body and not isinstance(body[k], int):
                raise ApiError(400, f"{k} must be a unix timestamp")
        return self._create("deliveries", dict(body), f"Deliveries for {keys[0]} {body[keys[0]]}")

    def _finish_if_ready(self, eid: int, polled: bool) -> None:
        job = self._jobs.get(eid)
        rec = self.server.ws.cat.exports[eid]
        if job is None or rec["status"] != "pending":
            return
        if polled:
            job["polls"] += 1
        if job["polls"] >= READY_AFTER_POLLS or time.monotonic() - job["t"] >= READY_AFTER_SECONDS:
            rec["total"] = sum(1 for _ in self._rows(eid, header=False))
            rec["status"] = "done"
            rec["updated_at"] = self.server.ws.now
            rec["deduplicate_id"] = f"{eid}:{rec['updated_at']}"

    def view(self, eid: int) -> dict:
        self._finish_if_ready(eid, polled=False)
        return dict(self.server.ws.cat.exports[eid])

    def poll(self, eid: int) -> dict:
        if eid not in self.server.ws.cat.exports:
            raise ApiError(404, "export not found")
        self._finish_if_ready(eid, polled=True)
        return dict(self.server.ws.cat.exports[eid])

    def download_url(self, eid: int) -> str:
        rec = self.server.ws.cat.exports.get(eid)
        if rec is None:
            raise ApiError(404, "export not found")
        self._finish_if_ready(eid, polled=False)
        if rec["status"] != "done":
            raise ApiError(400, "export is not ready yet")
        token = secrets.token_urlsafe(18)
        with self._lock:
            self._files[token] = (eid, time.monotonic() + self.server.export_url_ttl)
        rec["downloads"] += 1
        return f"{self.server.base_url}/_files/{token}"

    # ------------------------------------------------------------ file side
    def serve_file(self, token: str) -> Stream | tuple[int, bytes]:
        with self._lock:
            entry = self._files.get(token)
        if entry is None:
            return 404, MISSING_XML
        eid, expires = entry
        if time.monotonic() > expires:
            return 403, EXPIRED_XML
        layout = self.layout
        kind = "application/gzip" if layout.gzip else "text/csv" if layout.format == "csv" else "application/x-ndjson"
        return Stream(200, kind, self._file(eid, layout),
                      {"Content-Disposition": f'attachment; filename="export_{eid}{layout.suffix}"'})

    def _file(self, eid: int, layout: ExportLayout) -> Iterator[bytes]:
        comp = zlib.compressobj(6, zlib.DEFLATED, 31) if layout.gzip else None
        buf = io.StringIO()
        w = csv.writer(buf)
        n = 0
        header: list[str] = []
        for row in self._laid_out(eid, layout):
            if layout.format == "jsonl":
                if not header:
                    header = list(row)
                    continue
                buf.write(json.dumps({k: v for k, v in zip(header, row, strict=True) if v != ""}) + "\n")
            else:
                w.writerow(row)
            n += 1
            if n % 2000 == 0:
                yield comp.compress(buf.getvalue().encode()) if comp else buf.getvalue().encode()
                buf.seek(0)
                buf.truncate()
        yield comp.compress(buf.getvalue().encode()) if comp else buf.getvalue().encode()
        if comp:
            yield comp.flush()

    def _laid_out(self, eid: int, layout: ExportLayout) -> Iterator[list]:
        """The export's rows (header first) with the layout's names, order and dropped columns."""
        rows = self._rows(eid, header=True)
        header = next(rows, None)
        if header is None:
            return
        deliveries = self.server.ws.cat.exports[eid]["type"] != "customers"
        if not deliveries or layout == DEFAULT_LAYOUT:
            yield header
            yield from rows
            return
        keep = [i for i, name in enumerate(header) if name not in layout.drop]
        names = [WAREHOUSE_NAMES.get(header[i], header[i]) if layout.names == "warehouse" else header[i]
                 for i in keep]
        extra = list(WAREHOUSE_EXTRA) if layout.names == "warehouse" else []
        order = list(range(len(names) + len(extra)))
        if layout.shuffle:
            random.Random(eid).shuffle(order)
        yield [(names + extra)[i] for i in order]
        for row in rows:
            values = [row[i] for i in keep] + [WAREHOUSE_EXTRA[k] for k in extra]
            yield [values[i] for i in order]

    def _rows(self, eid: int, header: bool) -> Iterator[list]:
        job = self._jobs.get(eid)
        rec = self.server.ws.cat.exports[eid]
        if job is None:  # a pre-existing export: an empty file with the header only
            if header:
                yield ["id", "email", "cio_id"] if rec["type"] == "customers" else DELIVERY_COLUMNS + METRIC_COLUMNS
            return
        spec = job["spec"]
        if rec["type"] == "customers":
            yield from self._customer_rows(spec, header)
        else:
            yield from self._delivery_rows(spec, header)

    def _customer_rows(self, spec: dict, header: bool) -> Iterator[list]:
        from .handlers import _match

        ws = self.server.ws
        attrs = spec["attributes"]
        if header:
            yield ["id", "email", "cio_id", *attrs]
        for i in range(ws.n_people):
            with ws.lock:
                if not ws.alive(i) or not _match(ws, spec["filters"], i):
                    continue
                ident = ws.identifiers(i)
                values = ws.attributes(i) if attrs else {}
            yield [ident["id"] or "", ident["email"] or "", ident["cio_id"], *(values.get(a, "") for a in attrs)]

    def _delivery_rows(self, spec: dict, header: bool) -> Iterator[list]:
        ws = self.server.ws
        attrs = spec.get("attributes", [])
        if header:
            yield DELIVERY_COLUMNS + METRIC_COLUMNS + list(attrs)
        key = next(k for k in ("newsletter_id", "campaign_id", "transactional_message_id", "action_id")
                    if k in spec)
        kind = {"newsletter_id": "n", "campaign_id": "c", "transactional_message_id": "t", "action_id": "a"}[key]
        # Deliveries default to the last 6 months; ranges over 12 months are truncated to 12 (spec A).
        end = min(spec.get("end", ws.now), ws.now)
        start = spec.get("start", end - 183 * 86400)
        start = max(start, end - 366 * 86400)
        metric, drafts = spec.get("metric"), bool(spec.get("drafts"))
        for i in list(ws.delivery_indices((kind, spec[key]))):
            with ws.lock:
                if not start <= ws.d_created[i] <= end or (ws.is_draft(i) and not drafts):
                    continue
                d = ws.delivery(i)
                values = ws.attributes(ws.d_person[i]) if attrs else {}
            m = d["metrics"]
            if metric and metric != "created" and metric not in m:
                continue
            ident = d["customer_identifiers"]
            row = [d["id"], d["created"], d["type"], d["customer_id"] or "", ident["cio_id"], ident["email"] or "",
                   d["recipient"], d["subject"], d["campaign_id"] or "", d["action_id"] or "",
                   d["broadcast_id"] or "", d["newsletter_id"] or "", d["content_id"] or "",
                   d["transactional_message_id"] or "", d["failure_message"] or "", str(d["forgotten"]).lower()]
            yield row + [m.get(k, "") for k in METRIC_COLUMNS] + [values.get(a, "") for a in attrs]
