"""Generate ``spec_facts.json`` from the official App API spec (older revision) plus the [C] deltas.

Run from the repository root::

    python -m customerio_source.simulator.gen_spec_facts ../shared/spec/journeys-app.json

The output is shipped in the package; the simulator never reads the spec itself at run time.
Per operation it records: method, path template, operationId, query params (type, required, default,
maximum, enum), path-param enums and the default/max ``limit``. The deltas from the current spec
(DIGEST.md items marked [C]) are applied by :func:`apply_deltas`.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

OUT = Path(__file__).with_name("spec_facts.json")

# Read operations the simulator serves (every GET plus the read-style POSTs).
READ_POSTS = {"getPeopleFilter", "getPeopleById", "getObjectsFilter", "exportPeopleData", "exportDeliveriesData"}
CHANNEL_TYPES_C = ["email", "webhook", "twilio", "slack", "push", "in_app", "whatsapp", "live_notification"]
PERSON_ID_TYPES_C = ["id", "email", "phone", "cio_id"]
MESSAGE_LISTS = {
    "GET /v1/messages",
    "GET /v1/campaigns/{campaign_id}/messages",
    "GET /v1/broadcasts/{broadcast_id}/messages",
    "GET /v1/newsletters/{newsletter_id}/messages",
    "GET /v1/transactional/{transactional_id}/messages",
    "GET /v1/customers/{customer_id}/messages",
}
V2_METRICS = {
    "GET /v1/campaigns/{campaign_id}/metrics",
    "GET /v1/campaigns/{campaign_id}/actions/{action_id}/metrics",
}


def _resolve(spec: dict, node: Any) -> Any:
    while isinstance(node, dict) and "$ref" in node:
        cur: Any = spec
        for part in node["$ref"].split("/")[1:]:
            cur = cur[part]
        node = cur
    return node


def _param_facts(spec: dict, prm: dict) -> dict:
    schema = _resolve(spec, prm.get("schema", {}))
    facts: dict[str, Any] = {"type": schema.get("type", "string"), "required": bool(prm.get("required"))}
    for key in ("default", "maximum", "minimum", "enum"):
        if key in schema:
            facts[key] = schema[key]
    if schema.get("format") == "unix timestamp":
        facts["unix"] = True
    return facts


def extract(spec: dict) -> dict[str, dict]:
    """Per ``"METHOD /path"``: the facts the server needs."""
    ops: dict[str, dict] = {}
    for path, item in spec["paths"].items():
        shared = item.get("parameters", [])
        for method, op in item.items():
            if method not in ("get", "post"):
                continue
            if method == "post" and op.get("operationId") not in READ_POSTS:
                continue
            query: dict[str, dict] = {}
            path_params: dict[str, dict] = {}
            for raw in shared + op.get("parameters", []):
                prm = _resolve(spec, raw)
                where = prm.get("in")
                if where == "query":
                    query[prm["name"]] = _param_facts(spec, prm)
                elif where == "path":
                    path_params[prm["name"]] = _param_facts(spec, prm)
            ops[f"{method.upper()} {path}"] = {
                "method": method.upper(),
                "path": path,
                "operation_id": op.get("operationId"),
                "query": query,
                "path_params": path_params,
            }
    return ops


def _set_limit(op: dict, default: int, maximum: int) -> None:
    op["query"].setdefault("limit", {"type": "integer", "required": False})
    op["query"]["limit"].update({"default": default, "maximum": maximum})


def apply_deltas(ops: dict[str, dict]) -> None:
    """Apply the current-spec ([C]) deltas listed in DIGEST.md; C wins over the older file."""
    for key, op in ops.items():
        q = op["query"]
        if "type" in q and q["type"].get("enum") and "email" in q["type"]["enum"] and "activities" not in key:
            q["type"]["enum"] = CHANNEL_TYPES_C
        if "id_type" in q and set(q["id_type"].get("enum", [])) >= {"id", "email", "cio_id"}:
            q["id_type"]["enum"] = PERSON_ID_TYPES_C
        if key in MESSAGE_LISTS:
            q["get_tracked_responses"] = {"type": "boolean", "required": False, "default": False}
        if key in V2_METRICS:
            q["version"] = {"type": "string", "required": False, "enum": ["1", "2"]}
            q["tz"] = {"type": "string", "required": False, "default": "UTC"}
            q["start"]["unix"] = q["end"]["unix"] = True
    jm = ops["GET /v1/campaigns/{campaign_id}/journey_metrics"]["query"]
    jm["resolution"] = jm.pop("res")
    for name in ("start", "end", "resolution"):
        jm[name]["required"] = True
    ops["POST /v1/customers/attributes"]["query"]["id_type"] = {
        "type": "string", "required": False, "default": "id", "enum": PERSON_ID_TYPES_C}
    ops["GET /v1/customers/{customer_id}/relationships"]["query"]["id_type"] = {
        "type": "string", "required": False, "enum": PERSON_ID_TYPES_C}
    ops["GET /v1/sender_identities"]["query"]["hidden"] = {"type": "boolean", "required": False}
    ops["GET /v1/esp/suppression/{suppression_type}"]["query"]["domain"] = {"type": "string", "required": False}
    # New read endpoint in C that a connector may use for transactional variants.
    ops["GET /v1/transactional/{transactional_id}/contents/{content_id}"] = {
        "method": "GET", "path": "/v1/transactional/{transactional_id}/contents/{content_id}",
        "operation_id": "getTransactionalVariantById", "query": {},
        "path_params": {"transactional_id": {"type": "integer", "required": True},
                        "content_id": {"type": "integer", "required": True}}}
    # Limits: digest values; where the spec gives no maximum, accept up to 1000 and default to 50.
    for op in ops.values():
        if "limit" in op["query"]:
            lim = op["query"]["limit"]
            lim.setdefault("default", 50)
            lim.setdefault("maximum", 1000)
    _set_limit(ops["POST /v1/customers"], 50, 1000)
    _set_limit(ops["GET /v1/segments/{segment_id}/membership"], 1000, 30000)
    _set_limit(ops["GET /v1/activities"], 10, 100)
    _set_limit(ops["GET /v1/customers/{customer_id}/activities"], 10, 100)
    _set_limit(ops["GET /v1/esp/suppression/{suppression_type}"], 100, 1000)


def main(argv: list[str]) -> int:
    src = Path(argv[1] if len(argv) > 1 else "../shared/spec/journeys-app.json")
    spec = json.loads(src.read_text())
    ops = extract(spec)
    apply_deltas(ops)
    facts = {"source": "journeys-app.json (older revision) + DIGEST.md [C] deltas", "operations": ops}
    OUT.write_text(json.dumps(facts, indent=1, sort_keys=True) + "\n")
    print(f"wrote {OUT} with {len(ops)} operations")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
