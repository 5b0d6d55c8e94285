"""An independent Customer.io App API server built from the OpenAPI spec file, for conformance benchmarks.

Everything about the API comes from ``journeys-app.json`` at start-up: routes (path templates), query
parameters and their types, enums and ``maximum`` values, ``limit`` defaults, response envelopes and field
types. Data is synthetic and seeded. It shares no code with ``customerio_source.simulator`` on purpose.

Where the spec file is silent or older than the current API, the choices are listed in ``CURRENT_DELTAS``
and in the constants below (see ``ASSUMPTIONS``).

    python -m benchmarks.specserver --scale small --rate-limit 10 --api-key K --port 0
"""

from __future__ import annotations

import argparse
import base64
import json
import math
import random
import re
import signal
import sys
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

REPO = Path(__file__).resolve().parent.parent
DEFAULT_SPEC = REPO.parent / "shared" / "spec" / "journeys-app.json"
READ_POSTS = {"/v1/customers", "/v1/customers/attributes", "/v1/objects"}
TIMESTAMP_NAMES = {
    "created",
    "updated",
    "created_at",
    "updated_at",
    "timestamp",
    "sent_at",
    "first_started",
    "processed_at",
    "last_used",
    "start_ts",
    "end_ts",
}
DAY = 86400
PERIOD_SECONDS = {"hour": 3600, "day": DAY, "week": 7 * DAY, "month": 2629746}
MAX_STEPS = {"hours": 24, "days": 45, "weeks": 12, "months": 121}  # from the spec's `steps` descriptions
ASSUMPTIONS = [
    "limit without a spec maximum is honoured up to 1000 (UNDOCUMENTED_MAX)",
    "cursor lists without a limit param use the envelope array's maxItems as the page size, else 50",
    "POST search filters are not evaluated: every person / every object of the type matches",
    "GET /v1/activities?deleted=true returns no rows",
    "start_ts/end_ts are both inclusive on `created`; message lists are newest first",
    "v2/journey metric series length = ceil((end-start)/res), at most 1000 periods",
    "current-spec [C] query params from DIGEST.md are accepted (CURRENT_DELTAS)",
]
UNDOCUMENTED_MAX = 1000
DEFAULT_PAGE = 50
V2_CAP = 1000

# Query params the current spec (C) adds to operations in the older file (DIGEST.md sections 0-5).
_ID_TYPE = {"type": "string", "enum": ["id", "email", "phone", "cio_id"]}
_TRACKED = {"type": "boolean", "default": False}
CURRENT_DELTAS: dict[tuple[str, str], dict[str, dict[str, Any]]] = {
    ("GET", "/v1/messages"): {"get_tracked_responses": _TRACKED},
    ("GET", "/v1/campaigns/{campaign_id}/messages"): {"get_tracked_responses": _TRACKED},
    ("GET", "/v1/broadcasts/{broadcast_id}/messages"): {"get_tracked_responses": _TRACKED},
    ("GET", "/v1/newsletters/{newsletter_id}/messages"): {"get_tracked_responses": _TRACKED},
    ("GET", "/v1/transactional/{transactional_id}/messages"): {"get_tracked_responses": _TRACKED},
    ("GET", "/v1/customers/{customer_id}/messages"): {"get_tracked_responses": _TRACKED},
    ("GET", "/v1/campaigns/{campaign_id}/journey_metrics"): {
        "resolution": {
            "type": "string",
            "enum": ["hours", "hourly", "days", "daily", "weeks", "weekly", "months", "monthly"],
        },
    },
    ("POST", "/v1/customers/attributes"): {"id_type": _ID_TYPE},
    ("GET", "/v1/customers/{customer_id}/relationships"): {"id_type": _ID_TYPE},
    ("GET", "/v1/sender_identities"): {"hidden": {"type": "boolean"}},
    ("GET", "/v1/esp/suppression/{suppression_type}"): {"domain": {"type": "string"}},
}
# C drops these (journey_metrics' `res` became `resolution`; version is optional).
CURRENT_REMOVED = {("GET", "/v1/campaigns/{campaign_id}/journey_metrics"): {"res"}}
CURRENT_OPTIONAL = {"version", "start", "end"}

SCALES: dict[str, dict[str, int]] = {
    "tiny": {
        "campaigns": 3,
        "broadcasts": 2,
        "newsletters": 2,
        "segments": 3,
        "transactional": 2,
        "default": 2,
        "children": 2,
        "people": 120,
        "deliveries": 600,
        "activities": 250,
        "objects": 12,
        "suppressions": 5,
    },
    "small": {
        "campaigns": 20,
        "broadcasts": 10,
        "newsletters": 10,
        "segments": 10,
        "transactional": 3,
        "default": 3,
        "children": 2,
        "people": 3000,
        "deliveries": 20000,
        "activities": 5000,
        "objects": 50,
        "suppressions": 20,
    },
}
# Per-parent list sizes (rows per parent) where the default `children` is not wanted.
CHILD_COUNTS = {"/v1/broadcasts/{broadcast_id}/actions": 1, "/v1/broadcasts/{broadcast_id}/triggers": 1}


class ApiError(Exception):
    """An error answer: HTTP status and detail."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


# -- the spec -------------------------------------------------------------------------------------------
@dataclass
class Operation:
    """One read operation from the spec."""

    method: str
    template: str
    regex: re.Pattern[str]
    path_params: list[str]
    path_schemas: dict[str, dict[str, Any]]
    query: dict[str, dict[str, Any]]
    required: set[str]
    response: dict[str, Any]
    body: dict[str, Any] | None = None
    envelope: str | None = None
    """The array property that holds the rows of a list response."""
    page_max: int | None = None
    page_default: int | None = None

    @property
    def paginated(self) -> bool:
        """Cursor (`start`) or offset pagination."""
        return "start" in self.query or "offset" in self.query

    @property
    def metrics(self) -> bool:
        """Period/steps or start/end/res series."""
        return bool({"period", "steps", "res", "resolution"} & set(self.query))


class Spec:
    """The spec file, resolved: operations, schemas, matching."""

    def __init__(self, path: Path) -> None:
        self.doc = json.loads(path.read_text())
        self.ops: list[Operation] = []
        for template, item in self.doc["paths"].items():
            for method in ("get", "post"):
                if method in item and (method == "get" or template in READ_POSTS):
                    self.ops.append(self._operation(method.upper(), template, item))
        # Literal segments win over placeholders: more literal segments first.
        self.ops.sort(key=lambda op: -sum(1 for s in op.template.split("/") if s and "{" not in s))

    def resolve(self, schema: Any) -> dict[str, Any]:
        """Follow `$ref`s and flatten `allOf` (merged) / `oneOf` / `anyOf` (first)."""
        if not isinstance(schema, dict):
            return {}
        while "$ref" in schema:
            node: Any = self.doc
            for part in schema["$ref"].lstrip("#/").split("/"):
                node = node[part]
            schema = node
        if "allOf" in schema:
            merged: dict[str, Any] = {k: v for k, v in schema.items() if k != "allOf"}
            props: dict[str, Any] = dict(merged.get("properties", {}))
            for sub in schema["allOf"]:
                sub = self.resolve(sub)
                props.update(sub.get("properties", {}))
                merged.update({k: v for k, v in sub.items() if k != "properties"})
            merged["properties"] = props
            return merged
        for key in ("oneOf", "anyOf"):
            if key in schema and schema[key]:
                return self.resolve({**{k: v for k, v in schema.items() if k != key}, **self.resolve(schema[key][0])})
        return schema

    def _operation(self, method: str, template: str, item: dict[str, Any]) -> Operation:
        op_doc = item[method.lower()]
        params: dict[tuple[str, str], dict[str, Any]] = {}
        for raw in item.get("parameters", []) + op_doc.get("parameters", []):
            p = self.resolve(raw)
            params[(p["name"], p["in"])] = p
        query = {n: self.resolve(p.get("schema", {})) for (n, where), p in params.items() if where == "query"}
        required = {n for (n, where), p in params.items() if where == "query" and p.get("required")}
        query.update(CURRENT_DELTAS.get((method, template), {}))
        for name in CURRENT_REMOVED.get((method, template), set()):
            query.pop(name, None)
            required.discard(name)
        required -= CURRENT_OPTIONAL
        path_params = re.findall(r"{(\w+)}", template)
        path_schemas = {n: self.resolve(p.get("schema", {})) for (n, where), p in params.items() if where == "path"}
        pattern = "^" + re.sub(r"\\{(\w+)\\}", r"(?P<\1>[^/]+)", re.escape(template)) + "$"
        content = op_doc.get("responses", {}).get("200", {}).get("content", {})
        response = self.resolve(next(iter(content.values()), {}).get("schema", {}))
        body_content = self.resolve(op_doc.get("requestBody", {})).get("content", {})
        body = self.resolve(next(iter(body_content.values()), {}).get("schema")) if body_content else None
        op = Operation(
            method, template, re.compile(pattern), path_params, path_schemas, query, required, response, body
        )
        self._paging(op)
        return op

    def _paging(self, op: Operation) -> None:
        """Envelope array and page sizes (limit maximum/default, else the array's maxItems)."""
        arrays = [k for k, v in op.response.get("properties", {}).items() if self.resolve(v).get("type") == "array"]
        op.envelope = "identifiers" if "identifiers" in arrays else (arrays[0] if arrays else None)
        limit = op.query.get("limit", {})
        if limit:
            op.page_max = limit.get("maximum")
            op.page_default = limit.get("default")
        elif op.envelope:
            op.page_max = self.resolve(op.response["properties"][op.envelope]).get("maxItems")

    def match(self, method: str, path: str) -> tuple[Operation, dict[str, str]]:
        """The operation for a request, and its path values; 404/405 otherwise."""
        allowed = False
        for op in self.ops:
            m = op.regex.match(path)
            if m:
                if op.method == method:
                    return op, {k: unquote(v) for k, v in m.groupdict().items()}
                allowed = True
        raise ApiError(405 if allowed else 404, f"no route for {method} {path}")

    def op(self, method: str, template: str) -> Operation | None:
        """The operation with exactly this template."""
        return next((o for o in self.ops if o.method == method and o.template == template), None)


# -- synthetic values -----------------------------------------------------------------------------------
class Synth:
    """Deterministic values for a schema."""

    def __init__(self, spec: Spec, rng: random.Random, now: int) -> None:
        self.spec = spec
        self.rng = rng
        self.now = now
        self.series_len = 0
        self.n = 0

    def value(self, schema: Any, name: str = "", depth: int = 0) -> Any:
        """A value of the schema's type."""
        s = self.spec.resolve(schema)
        kind = s.get("type") or ("object" if "properties" in s else "string")
        self.n += 1
        if "enum" in s and s["enum"]:
            return self.rng.choice(s["enum"])
        if kind == "object":
            return self.obj(s, depth)
        if kind == "array":
            return self.array(s, name, depth)
        if kind == "integer":
            return self.integer(s, name)
        if kind == "number":
            return round(self.rng.uniform(0, 100), 2)
        if kind == "boolean":
            return self.rng.random() < 0.5
        return self.string(s, name)

    def obj(self, s: dict[str, Any], depth: int) -> dict[str, Any]:
        """An object with every property (depth-limited); free-form maps get two string keys."""
        props = s.get("properties") or {}
        if not props:
            extra = s.get("additionalProperties")
            inner = extra if isinstance(extra, dict) else {"type": "string"}
            return {f"attr_{i}": self.value(inner, f"attr_{i}", depth + 1) for i in range(2)} if depth < 4 else {}
        if depth > 5:
            return {}
        out = {k: self.value(v, k, depth + 1) for k, v in props.items()}
        for a, b in (("created", "updated"), ("created_at", "updated_at")):
            if isinstance(out.get(a), int) and isinstance(out.get(b), int) and out[b] < out[a]:
                out[a], out[b] = out[b], out[a]
        return out

    def array(self, s: dict[str, Any], name: str, depth: int) -> list[Any]:
        """Series arrays get `series_len` items, other arrays one or two."""
        items = self.spec.resolve(s.get("items", {}))
        if self.series_len and items.get("type") in ("integer", "number"):
            return [self.rng.randint(0, 50) for _ in range(self.series_len)]
        if depth > 5:
            return []
        return [self.value(items, name, depth + 1) for _ in range(self.rng.randint(1, 2))]

    def integer(self, s: dict[str, Any], name: str) -> int:
        """Unix seconds for timestamp-like fields, else a small int."""
        fmt = str(s.get("format", "")).lower()
        desc = str(s.get("description", "")).lower()
        if name in TIMESTAMP_NAMES or "unix" in fmt or "timestamp" in fmt or desc.startswith("the timestamp"):
            return self.now - self.rng.randint(DAY, 365 * DAY)
        lo, hi = int(s.get("minimum", 1)), int(s.get("maximum", 10_000))
        return self.rng.randint(lo, max(lo, hi))

    def string(self, s: dict[str, Any], name: str) -> str:
        """Emails, ISO date-times, ips, else `name-n`."""
        fmt = str(s.get("format", "")).lower()
        if fmt == "email" or name == "email":
            return f"user{self.n}@example.com"
        if fmt == "date-time":
            return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.now - self.rng.randint(DAY, 365 * DAY)))
        if "ip" in fmt:
            return f"10.0.{self.rng.randint(0, 255)}.{self.rng.randint(1, 254)}"
        return f"{name or 'value'}-{self.n}"


# -- the synthetic workspace ----------------------------------------------------------------------------
def items_schema(spec: Spec, op: Operation) -> dict[str, Any]:
    """The row schema of a list operation."""
    if not op.envelope:
        return {}
    return spec.resolve(spec.resolve(op.response["properties"][op.envelope]).get("items", {}))


class World:
    """Seeded rows for every list, consistent across parent/child endpoints."""

    TOP_COUNTS = {
        "/v1/campaigns": "campaigns",
        "/v1/broadcasts": "broadcasts",
        "/v1/newsletters": "newsletters",
        "/v1/segments": "segments",
        "/v1/transactional": "transactional",
    }
    SENDERS = {"campaign_id": "/v1/campaigns", "broadcast_id": "/v1/broadcasts", "newsletter_id": "/v1/newsletters"}

    def __init__(self, spec: Spec, scale: str, seed: int, now: int) -> None:
        self.spec, self.conf, self.seed, self.now = spec, SCALES[scale], seed, now
        self.lock = threading.RLock()
        self.memo: dict[tuple[str, tuple[str, ...]], list[Any]] = {}
        self.people = self._people()
        self.deliveries = self._deliveries()
        self.activities = self._activities()

    def synth(self, key: str) -> Synth:
        """A Synth seeded by a key."""
        return Synth(self.spec, random.Random(f"{self.seed}:{key}"), self.now)

    def _people(self) -> list[dict[str, Any]]:
        out = []
        for i in range(self.conf["people"]):
            out.append({"id": f"person-{i}", "email": f"person{i}@example.com", "cio_id": f"{0xA00000 + i:06x}"})
        return out

    def list_rows(self, template: str, values: tuple[str, ...] = ()) -> list[Any]:
        """Rows of a generic list operation for bound path values (memoized)."""
        key = (template, values)
        with self.lock:
            if key not in self.memo:
                self.memo[key] = self._make_rows(template, values)
            return self.memo[key]

    def _make_rows(self, template: str, values: tuple[str, ...]) -> list[Any]:
        op = self.spec.op("GET", template)
        if op is None or not op.envelope:
            return []
        schema = items_schema(self.spec, op)
        if template in self.TOP_COUNTS:
            count = self.conf[self.TOP_COUNTS[template]]
        elif template == "/v1/esp/suppression/{suppression_type}":
            count = self.conf["suppressions"]
        elif op.path_params:
            count = CHILD_COUNTS.get(template, self.conf["children"])
        else:
            count = self.conf["default"]
        syn = self.synth(f"{template}:{values}")
        parent_base = int(values[-1]) * 100 if values and values[-1].isdigit() else 0
        rows = []
        for i in range(count):
            row = syn.value(schema, op.envelope or "")
            if isinstance(row, dict):
                self._identify(row, schema, parent_base + i + 1, dict(zip(op.path_params, values, strict=True)))
            rows.append(row)
        return rows

    def _identify(self, row: dict[str, Any], schema: dict[str, Any], ident: int, parents: dict[str, str]) -> None:
        """Sequential ids (typed per schema) and parent foreign keys equal to the path values."""
        props = schema.get("properties", {})
        if "id" in row:
            row["id"] = str(ident) if self.spec.resolve(props.get("id", {})).get("type") == "string" else ident
        for name, value in parents.items():
            if name in row:
                row[name] = int(value) if value.isdigit() else value
        if "deduplicate_id" in row and "id" in row:
            row["deduplicate_id"] = f"{row['id']}:{row.get('updated') or row.get('updated_at') or self.now}"

    def _deliveries(self) -> list[dict[str, Any]]:
        """Deliveries from the spec's message schema, each under one sending parent, created after it."""
        op = self.spec.op("GET", "/v1/messages")
        schema = items_schema(self.spec, op) if op else {}
        parents = [(field_name, row) for field_name, tpl in self.SENDERS.items() for row in self.list_rows(tpl)]
        syn = self.synth("deliveries")
        rng = syn.rng
        out = []
        for i in range(self.conf["deliveries"]):
            row = syn.value(schema, "messages")
            field_name, parent = parents[i % len(parents)]
            for name in ("campaign_id", "action_id", "parent_action_id", "newsletter_id", "content_id", "broadcast_id"):
                row[name] = None
            row[field_name] = parent["id"]
            born = int(parent.get("created") or self.now - 365 * DAY)
            row["created"] = rng.randint(born, self.now - 60)
            row["id"] = base64.urlsafe_b64encode(f"dlv-{i}".encode()).decode()
            row["deduplicate_id"] = f"{row['id']}:{row['created']}"
            person = self.people[rng.randrange(len(self.people))]
            row["customer_id"] = person["id"]
            row["customer_identifiers"] = dict(person)
            metrics = row.get("metrics") or {}
            row["metrics"] = {k: row["created"] + rng.randint(1, 3600) for k in list(metrics)[:3]}
            out.append(row)
        out.sort(key=lambda r: (-r["created"], r["id"]))
        return out

    def _activities(self) -> list[dict[str, Any]]:
        """Activities in the last 30 days, newest first."""
        op = self.spec.op("GET", "/v1/activities")
        schema = items_schema(self.spec, op) if op else {}
        syn = self.synth("activities")
        out = []
        for i in range(self.conf["activities"]):
            row = syn.value(schema, "activities")
            row["timestamp"] = self.now - syn.rng.randint(60, 30 * DAY)
            row["id"] = f"01ACT{i:021d}"
            person = self.people[syn.rng.randrange(len(self.people))]
            row["customer_id"] = person["id"]
            row["customer_identifiers"] = dict(person)
            out.append(row)
        out.sort(key=lambda r: (-r["timestamp"], r["id"]))
        return out

    def members(self, segment_id: str) -> list[dict[str, Any]]:
        """Segment k holds every (k+1)-th person."""
        k = int(segment_id) if segment_id.isdigit() else 1
        return [p for i, p in enumerate(self.people) if i % (k + 1) == 0]

    def objects(self, type_id: str) -> list[dict[str, str]]:
        """Objects of one type."""
        return [
            {"object_id": f"obj-{type_id}-{i}", "cio_object_id": f"ob{int(type_id or 0):02d}{i:06d}"}
            for i in range(self.conf["objects"])
        ]

    def person(self, value: str, id_type: str) -> dict[str, Any] | None:
        """A person by id / email / cio_id (with or without the `cio_` prefix)."""
        key = {"email": "email", "cio_id": "cio_id"}.get(id_type, "id")
        if key == "cio_id":
            value = value.removeprefix("cio_")
        return next((p for p in self.people if p[key] == value), None)


# -- requests -------------------------------------------------------------------------------------------
def check_value(name: str, raw: str, schema: dict[str, Any], op: Operation) -> Any:
    """Parse one query value by its schema; ApiError(400) when it does not fit."""
    kind = schema.get("type", "string")
    value: Any = raw
    if kind == "integer":
        try:
            value = int(raw)
        except ValueError:
            raise ApiError(400, f"{name}: {raw!r} is not an integer") from None
        if "maximum" in schema and value > schema["maximum"]:
            raise ApiError(400, f"{name}: {value} is above the maximum {schema['maximum']}")
        if "minimum" in schema and value < schema["minimum"]:
            raise ApiError(400, f"{name}: {value} is below the minimum {schema['minimum']}")
    elif kind == "boolean":
        if raw.lower() not in ("true", "false"):
            raise ApiError(400, f"{name}: {raw!r} is not a boolean")
        value = raw.lower() == "true"
    if "enum" in schema and value not in schema["enum"] and str(value) not in map(str, schema["enum"]):
        raise ApiError(400, f"{name}: {raw!r} is not one of {schema['enum']}")
    return value


def parse_query(op: Operation, raw: str) -> dict[str, Any]:
    """Validate the query string against the operation's parameters."""
    out: dict[str, Any] = {}
    for name, value in parse_qsl(raw, keep_blank_values=True):
        if name not in op.query:
            raise ApiError(400, f"unknown query parameter {name!r} for {op.method} {op.template}")
        out[name] = check_value(name, value, op.query[name], op)
    missing = op.required - set(out)
    if missing:
        raise ApiError(400, f"missing required query parameter(s) {sorted(missing)}")
    return out


def encode_cursor(offset: int) -> str:
    """An opaque cursor."""
    return base64.urlsafe_b64encode(f"o:{offset}".encode()).decode()


def decode_cursor(token: str) -> int:
    """The offset in a cursor; 400 when it is not one of ours."""
    try:
        text = base64.urlsafe_b64decode(token.encode()).decode()
        assert text.startswith("o:")
        return int(text[2:])
    except Exception:  # noqa: BLE001 - any malformed token is a client error
        raise ApiError(400, f"invalid start token {token!r}") from None


def page_size(op: Operation, query: dict[str, Any]) -> int:
    """The page size: `limit` (or the spec default / maximum), else the envelope's maxItems."""
    if "limit" in query:
        return max(1, min(int(query["limit"]), op.page_max or UNDOCUMENTED_MAX))
    return op.page_default or op.page_max or DEFAULT_PAGE


def paginate(op: Operation, query: dict[str, Any], rows: list[Any]) -> tuple[list[Any], dict[str, Any]]:
    """One page of rows and the cursor fields (`next`, or nothing for offset pagination)."""
    size = page_size(op, query)
    if "offset" in op.query:
        offset = int(query.get("offset", 0))
        return rows[offset : offset + size], {}
    offset = decode_cursor(query["start"]) if query.get("start") else 0
    end = offset + size
    return rows[offset:end], {"next": encode_cursor(end) if end < len(rows) else ""}


class App:
    """Routing, auth, rate limit, data and counting, independent of HTTP."""

    def __init__(self, spec: Spec, world: World, api_key: str, rate_limit: float) -> None:
        self.spec, self.world, self.api_key, self.rate_limit = spec, world, api_key, rate_limit
        self.lock = threading.Lock()
        self.window: dict[str, deque[float]] = {}
        self.log: list[tuple[float, str, str, int]] = []
        self.variants: dict[str, set[str]] = {}

    # rate limit and counting
    def admit(self, key: str, now: float) -> bool:
        """Rolling 1-second window per API key over admitted requests."""
        if self.rate_limit <= 0:
            return True
        with self.lock:
            q = self.window.setdefault(key, deque())
            while q and q[0] <= now - 1.0:
                q.popleft()
            if len(q) >= self.rate_limit:
                return False
            q.append(now)
            return True

    def record(self, when: float, method: str, route: str, status: int) -> None:
        """Remember one request."""
        with self.lock:
            self.log.append((when, method, route, status))

    def stats(self) -> dict[str, Any]:
        """Totals, per route and status, 429s, and the rates."""
        with self.lock:
            log = list(self.log)
        times = sorted(t for t, *_ in log)
        first, last = (times[0], times[-1]) if times else (0.0, 0.0)
        span = last - first
        return {
            "total": len(log),
            "by_route": dict(Counter(f"{m} {r}" for _, m, r, _ in log).most_common()),
            "by_route_status": dict(Counter(f"{m} {r} {s}" for _, m, r, s in log).most_common()),
            "by_status": {str(k): v for k, v in sorted(Counter(s for *_, s in log).items())},
            "rate_limited": sum(1 for *_, s in log if s == 429),
            "first": first,
            "last": last,
            "span_s": span,
            "busiest_second": busiest_window(times),
            "busiest_second_ok": busiest_window(sorted(t for t, *_, s in log if s != 429)),
            "sustained_rate": len(log) / span if span > 0 else None,
            "sustained_rate_ok": sum(1 for *_, s in log if s != 429) / span if span > 0 else None,
            "variants": {k: sorted(v) for k, v in self.variants.items()},
        }

    def reset(self) -> None:
        """Forget the request log."""
        with self.lock:
            self.log.clear()
            self.window.clear()
            self.variants.clear()

    # requests
    def handle(self, method: str, target: str, headers: dict[str, str], body: bytes) -> tuple[int, Any, str]:
        """(status, JSON body, route template) for one request."""
        parts = urlsplit(target)
        route = parts.path
        try:
            if headers.get("authorization", "") != f"Bearer {self.api_key}":
                raise ApiError(401, "Unauthorized request: invalid or missing App API key")
            op, path_values = self.spec.match(method, parts.path)
            route = op.template
            if not self.admit(self.api_key, time.monotonic()):
                return 429, rate_limited_body(self.rate_limit), route
            query = parse_query(op, parts.query)
            payload = json.loads(body or b"{}") if method == "POST" else {}
            self._note_variant(op, query)
            return 200, self.respond(op, path_values, query, payload), route
        except ApiError as err:
            return err.status, {"errors": [{"detail": err.detail, "status": str(err.status)}]}, route
        except json.JSONDecodeError as err:
            return 400, {"errors": [{"detail": f"invalid JSON body: {err}", "status": "400"}]}, route

    def _note_variant(self, op: Operation, query: dict[str, Any]) -> None:
        """Remember the metric periods / resolutions asked per route (for the request floor)."""
        for name in ("period", "res", "resolution", "deleted"):
            if name in query:
                with self.lock:
                    self.variants.setdefault(op.template, set()).add(f"{name}={query[name]}")

    def respond(self, op: Operation, values: dict[str, str], query: dict[str, Any], body: dict[str, Any]) -> Any:
        """The 200 body."""
        self.check_parents(op, values, query)
        handler = SPECIAL.get((op.method, op.template))
        if handler:
            return handler(self, op, values, query, body)
        if "messages" == op.envelope and op.template.endswith("/messages"):
            return self.message_list(op, values, query)
        if op.metrics:
            return self.metrics(op, values, query)
        if op.envelope and not op.envelope == "identifiers":
            rows = self.world.list_rows(op.template, tuple(values[p] for p in op.path_params))
            if op.paginated:
                page, cursor = paginate(op, query, rows)
                return {**self.shell(op, values), op.envelope: page, **cursor}
            return {**self.shell(op, values), op.envelope: rows}
        return self.single(op, values)

    def shell(self, op: Operation, values: dict[str, str]) -> dict[str, Any]:
        """Non-list top-level fields of a list response (e.g. `category`)."""
        props = op.response.get("properties", {})
        syn = self.world.synth(f"shell:{op.template}:{values}")
        return {k: syn.value(v, k) for k, v in props.items() if k not in (op.envelope, "next", "ids")}

    def single(self, op: Operation, values: dict[str, str]) -> Any:
        """An object response: the listed row when the parent list has it, else synthesized from the schema."""
        syn = self.world.synth(f"single:{op.template}:{values}")
        out = syn.value(op.response, "")
        props = op.response.get("properties", {})
        if len(props) == 1 and op.path_params:
            (key,) = props
            listed = self.find_listed(op.template, values)
            if listed is not None and isinstance(out.get(key), dict):
                out[key] = listed
        return out

    def find_listed(self, template: str, values: dict[str, str]) -> Any:
        """The row of the enclosing list whose id is the last path value (`/v1/campaigns/{id}` -> campaigns)."""
        prefix, _, last = template.rpartition("/")
        if not last.startswith("{"):
            return None
        names = re.findall(r"{(\w+)}", prefix)
        rows = self.world.list_rows(prefix, tuple(values[n] for n in names))
        wanted = values[last.strip("{}")]
        return next((r for r in rows if isinstance(r, dict) and str(r.get("id")) == wanted), None)

    def check_parents(self, op: Operation, values: dict[str, str], query: dict[str, Any]) -> None:
        """404 for path ids that the parent list does not hold."""
        for i, name in enumerate(op.path_params):
            value = values[name]
            schema = op.path_schemas.get(name, {})
            if "enum" in schema:
                if value not in schema["enum"]:
                    raise ApiError(404, f"{name} {value!r} not found")
                continue
            if schema.get("type") == "integer" and not value.lstrip("-").isdigit():
                raise ApiError(400, f"{name}: {value!r} is not an integer")
            if name == "customer_id":
                if self.world.person(value, str(query.get("id_type", "id"))) is None:
                    raise ApiError(404, f"customer {value!r} not found")
                continue
            prefix = op.template.split("{" + name + "}")[0].rstrip("/")
            list_op = self.spec.op("GET", prefix)
            if list_op is None or not list_op.envelope or list_op.metrics:
                continue
            rows = self.world.list_rows(prefix, tuple(values[n] for n in op.path_params[:i]))
            if not any(isinstance(r, dict) and str(r.get("id")) == value for r in rows):
                raise ApiError(404, f"{name} {value!r} not found")

    def message_list(self, op: Operation, values: dict[str, str], query: dict[str, Any]) -> dict[str, Any]:
        """Deliveries, newest first, filtered by parent, query ids and start_ts/end_ts on `created`."""
        rows = self.world.deliveries
        filters = {k: values[k] for k in ("campaign_id", "broadcast_id", "newsletter_id") if k in values}
        filters.update({k: str(query[k]) for k in ("campaign_id", "newsletter_id", "action_id") if k in query})
        if "transactional_id" in values:
            rows = []  # no transactional deliveries in this workspace
        if "customer_id" in values:
            person = self.world.person(values["customer_id"], str(query.get("id_type", "id")))
            rows = [r for r in rows if person and r["customer_identifiers"]["cio_id"] == person["cio_id"]]
        lo, hi = query.get("start_ts"), query.get("end_ts")
        rows = [
            r
            for r in rows
            if all(str(r.get(k)) == v for k, v in filters.items())
            and (lo is None or r["created"] >= lo)
            and (hi is None or r["created"] <= hi)
        ]
        page, cursor = paginate(op, query, rows)
        return {"messages": page, **cursor}

    def metrics(self, op: Operation, values: dict[str, str], query: dict[str, Any]) -> Any:
        """The spec's metrics shape, with series of the requested length."""
        syn = self.world.synth(f"metrics:{op.template}:{values}:{sorted(query.items())}")
        syn.series_len = series_length(query)
        return syn.value(op.response, "")


def series_length(query: dict[str, Any]) -> int:
    """Periods in a metrics answer: `steps` (0 = max, min 2) or ceil((end-start)/res)."""
    res = query.get("resolution") or query.get("res")
    if res and "start" in query and "end" in query:
        unit = PERIOD_SECONDS[str(res).removesuffix("ly").removesuffix("s").replace("dai", "day")]
        return max(1, min(V2_CAP, math.ceil((int(query["end"]) - int(query["start"])) / unit)))
    period = str(query.get("period", "days"))
    top = MAX_STEPS.get(period, 45)
    steps = int(query.get("steps", top))
    return top if steps <= 0 else max(2, min(steps, top))


def rate_limited_body(limit: float) -> dict[str, Any]:
    """The current spec's 429 body."""
    return {
        "errors": [{"detail": f"rate limited to {limit:g} requests per 1s (reference specserver)", "status": "429"}]
    }


def busiest_window(times: list[float]) -> int:
    """Most requests inside any 1-second window (times sorted)."""
    best, lo = 0, 0
    for hi, t in enumerate(times):
        while times[lo] <= t - 1.0:
            lo += 1
        best = max(best, hi - lo + 1)
    return best


# -- operations with their own data ---------------------------------------------------------------------
def people_search(app: App, op: Operation, values: dict[str, str], query: dict[str, Any], body: dict[str, Any]):
    """POST /v1/customers: every person (filters are not evaluated)."""
    if not isinstance(body.get("filter"), dict):
        raise ApiError(400, "body needs a `filter` object")
    page, cursor = paginate(op, query, app.world.people)
    return {"identifiers": [dict(p) for p in page], "ids": [p["id"] for p in page], **cursor}


def people_attributes(app: App, op: Operation, values: dict[str, str], query: dict[str, Any], body: dict[str, Any]):
    """POST /v1/customers/attributes: 1..maxItems ids; unknown ids are left out."""
    ids = body.get("ids")
    top = ((op.body or {}).get("properties", {}).get("ids", {}) or {}).get("maxItems", 100)
    if not isinstance(ids, list) or not 1 <= len(ids) <= top:
        raise ApiError(400, f"`ids` must hold 1 to {top} ids")
    schema = items_schema(app.spec, op)
    out = []
    for value in ids:
        person = app.world.person(str(value), str(query.get("id_type", "id")))
        if person is None:
            continue
        syn = app.world.synth(f"attributes:{person['cio_id']}")
        item = syn.value(schema, "customers")
        customer = item.get("customer") if isinstance(item.get("customer"), dict) else item
        customer.update(id=person["id"], identifiers=dict(person))
        if isinstance(customer.get("attributes"), dict):
            customer["attributes"].update({k: str(v) for k, v in person.items()})
        out.append(item)
    return {"customers": out}


def segment_membership(app: App, op: Operation, values: dict[str, str], query: dict[str, Any], body: dict):
    """GET /v1/segments/{id}/membership."""
    page, cursor = paginate(op, query, app.world.members(values["segment_id"]))
    return {"identifiers": [dict(p) for p in page], "ids": [p["id"] for p in page], **cursor}


def objects_search(app: App, op: Operation, values: dict[str, str], query: dict[str, Any], body: dict[str, Any]):
    """POST /v1/objects: every object of `object_type_id`."""
    type_id = str(body.get("object_type_id", ""))
    if not type_id or not isinstance(body.get("filter"), dict):
        raise ApiError(400, "body needs `object_type_id` and a `filter` object")
    known = {str(r.get("id")) for r in app.world.list_rows("/v1/object_types") if isinstance(r, dict)}
    rows = app.world.objects(type_id) if type_id in known else []
    page, cursor = paginate(op, query, rows)
    return {"identifiers": page, "ids": [r["object_id"] for r in page], **cursor}


def activities(app: App, op: Operation, values: dict[str, str], query: dict[str, Any], body: dict[str, Any]):
    """GET /v1/activities (and per person), newest first; `type`/`name` filter; deleted=true is empty."""
    rows = [] if query.get("deleted") else app.world.activities
    if "customer_id" in values or "customer_id" in query:
        person = app.world.person(values.get("customer_id") or query["customer_id"], query.get("id_type", "id"))
        rows = [r for r in rows if person and r["customer_identifiers"]["cio_id"] == person["cio_id"]]
    for name in ("type", "name"):
        if name in query:
            rows = [r for r in rows if r.get(name) == query[name]]
    page, cursor = paginate(op, query, rows)
    return {"activities": page, **cursor}


def ip_addresses(app: App, op: Operation, values: dict[str, str], query: dict[str, Any], body: dict[str, Any]):
    """GET /v1/info/ip_addresses: bare strings."""
    return {"ip_addresses": [f"10.1.0.{i}" for i in range(1, 9)]}


SPECIAL = {
    ("POST", "/v1/customers"): people_search,
    ("POST", "/v1/customers/attributes"): people_attributes,
    ("GET", "/v1/segments/{segment_id}/membership"): segment_membership,
    ("POST", "/v1/objects"): objects_search,
    ("GET", "/v1/activities"): activities,
    ("GET", "/v1/customers/{customer_id}/activities"): activities,
    ("GET", "/v1/info/ip_addresses"): ip_addresses,
}


# -- the request floor from the server's own data --------------------------------------------------------
def pages(rows: int, size: int) -> int:
    """Requests to read `rows` at `size` per page (at least one)."""
    return max(1, math.ceil(rows / size))


def bindings(app: App, template: str) -> list[dict[str, str]]:
    """Every valid assignment of the template's path ids (parents from their lists)."""
    out: list[dict[str, str]] = [{}]
    for name in re.findall(r"{(\w+)}", template):
        prefix = template.split("{" + name + "}")[0].rstrip("/")
        nxt = []
        for bound in out:
            rows = app.world.list_rows(prefix, tuple(bound.values()))
            nxt.extend({**bound, name: str(r["id"])} for r in rows if isinstance(r, dict) and "id" in r)
        out = nxt
    return out


def floor(app: App, routes: list[str]) -> dict[str, Any]:
    """Minimum requests for each seen route (None where not computed)."""
    out: dict[str, Any] = {}
    for route in routes:
        method, template = route.split(" ", 1)
        op = app.spec.op(method, template)
        out[route] = route_floor(app, op) if op else None
    return out


def route_floor(app: App, op: Operation) -> int | None:
    """The request floor of one route from the server's data."""
    w = app.world
    size = op.page_max or UNDOCUMENTED_MAX
    variants = max(1, len([v for v in app.variants.get(op.template, []) if not v.startswith("deleted")]))
    if op.template == "/v1/customers" and op.method == "POST":
        return pages(len(w.people), size)
    if op.template == "/v1/customers/attributes":
        return pages(len(w.people), 100)
    if op.template == "/v1/activities":
        return pages(len(w.activities), size)
    if op.template == "/v1/messages":
        return message_floor(app, size)
    if op.template == "/v1/objects":
        return sum(pages(len(w.objects(str(t["id"]))), size) for t in w.list_rows("/v1/object_types"))
    if op.template == "/v1/segments/{segment_id}/membership":
        return sum(pages(len(w.members(b["segment_id"])), size) for b in bindings(app, op.template))
    if "customer_id" in op.path_params or "object_id" in op.path_params:
        return None
    if "suppression_type" in op.path_params:
        return sum(
            pages(len(w.list_rows(op.template, (t,))), size)
            for t in op.path_schemas["suppression_type"].get("enum", [])
        )
    parents = bindings(app, op.template) if op.path_params else [{}]
    if op.metrics:
        return len(parents) * variants
    if op.envelope and op.paginated:
        return sum(pages(len(w.list_rows(op.template, tuple(b.values()))), size) for b in parents)
    return len(parents)


def message_floor(app: App, size: int) -> int:
    """Deliveries: per 180-day window from the oldest sending parent to now, ceil(rows / page)."""
    w = app.world
    oldest = min(int(r.get("created") or w.now) for tpl in World.SENDERS.values() for r in w.list_rows(tpl))
    total, upper = 0, w.now + DAY
    while upper > oldest:
        lower = max(oldest, upper - 180 * DAY)
        total += pages(sum(1 for r in w.deliveries if lower <= r["created"] < upper), size)
        upper = lower
    return total


# -- HTTP -----------------------------------------------------------------------------------------------
def make_handler(app: App) -> type[BaseHTTPRequestHandler]:
    """The API request handler class bound to an App."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True

        def log_message(self, *args: Any) -> None:  # noqa: D102 - quiet
            pass

        def _serve(self, method: str) -> None:
            started = time.time()
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            headers = {k.lower(): v for k, v in self.headers.items()}
            status, payload, route = app.handle(method, self.path, headers, body)
            app.record(started, method, route, status)
            send_json(self, status, payload, {"Retry-After": "1"} if status == 429 else {})

        def do_GET(self) -> None:  # noqa: N802
            self._serve("GET")

        def do_POST(self) -> None:  # noqa: N802
            self._serve("POST")

    return Handler


def make_admin_handler(app: App) -> type[BaseHTTPRequestHandler]:
    """Admin port: GET /_stats, /_floor, /_reset."""

    class Admin(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:  # noqa: D102 - quiet
            pass

        def do_GET(self) -> None:  # noqa: N802
            path = urlsplit(self.path).path
            if path == "/_stats":
                send_json(self, 200, app.stats())
            elif path == "/_floor":
                routes = list(app.stats()["by_route"])
                send_json(self, 200, {"floor": floor(app, routes), "assumptions": ASSUMPTIONS})
            elif path == "/_reset":
                app.reset()
                send_json(self, 200, {"ok": True})
            else:
                send_json(self, 404, {"errors": [{"detail": "unknown admin path", "status": "404"}]})

    return Admin


def send_json(handler: BaseHTTPRequestHandler, status: int, payload: Any, headers: dict[str, str] | None = None):
    """Write a JSON response with Content-Length (keep-alive)."""
    data = json.dumps(payload, separators=(",", ":")).encode()
    handler.send_response(status)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(data)))
    for key, value in (headers or {}).items():
        handler.send_header(key, value)
    handler.end_headers()
    handler.wfile.write(data)


@dataclass
class Running:
    """Both servers, started in threads."""

    app: App
    api: ThreadingHTTPServer
    admin: ThreadingHTTPServer
    threads: list[threading.Thread] = field(default_factory=list)

    @property
    def urls(self) -> dict[str, str]:
        """The API and admin base URLs."""
        return {
            "api": f"http://127.0.0.1:{self.api.server_address[1]}",
            "admin": f"http://127.0.0.1:{self.admin.server_address[1]}",
        }

    def close(self) -> None:
        """Stop both servers."""
        for server in (self.api, self.admin):
            server.shutdown()
            server.server_close()


def start(
    spec_path: Path = DEFAULT_SPEC,
    scale: str = "tiny",
    api_key: str = "test-key",
    rate_limit: float = 10.0,
    port: int = 0,
    admin_port: int = 0,
    seed: int = 7,
    now: int | None = None,
) -> Running:
    """Build the workspace from the spec and serve it (API and admin) in daemon threads."""
    spec = Spec(spec_path)
    world = World(spec, scale, seed, now if now is not None else int(time.time()) // DAY * DAY)
    app = App(spec, world, api_key, rate_limit)
    api = ThreadingHTTPServer(("127.0.0.1", port), make_handler(app))
    admin = ThreadingHTTPServer(("127.0.0.1", admin_port), make_admin_handler(app))
    api.daemon_threads = admin.daemon_threads = True
    running = Running(app, api, admin)
    for server in (api, admin):
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        running.threads.append(thread)
    return running


def main(argv: list[str] | None = None) -> None:
    """CLI: print the URLs as one JSON line, serve until stdin closes or SIGTERM."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", type=Path, default=DEFAULT_SPEC)
    parser.add_argument("--scale", choices=sorted(SCALES), default="small")
    parser.add_argument("--rate-limit", type=float, default=10.0, help="requests per rolling second; 0 = off")
    parser.add_argument("--api-key", default="test-key")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--admin-port", type=int, default=0)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    running = start(args.spec, args.scale, args.api_key, args.rate_limit, args.port, args.admin_port, args.seed)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    threading.Thread(target=lambda: (sys.stdin.read(), done.set()), daemon=True).start()
    print(json.dumps(running.urls), flush=True)
    try:
        done.wait()
    except KeyboardInterrupt:
        pass
    running.close()


if __name__ == "__main__":
    main()
