"""Generate ``send_spec_facts.json`` from the Track and Data Pipelines specs (``../shared/spec``).

    python -m customerio_source.simulator.gen_send_facts ../shared/spec

Keeps what the simulated send APIs validate against: each operation's method and path, the v2 batch
actions per entity type with their required fields, the device platforms, and the Data Pipelines call
types. The limits (500 KB per request, 32 KB per item, ...) are stated in the specs' prose and in
``../shared/spec/README.md``; they are declared once, in ``customerio_source/send/limits.py``, and copied
here next to the facts that come from the specs.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from customerio_source.send.limits import LIMITS  # noqa: E402 - declared once, for both sides


def _flat(schema: dict, schemas: dict) -> tuple[set[str], dict]:
    if "$ref" in schema:
        return _flat(schemas[schema["$ref"].split("/")[-1]], schemas)
    required, props = set(schema.get("required", [])), dict(schema.get("properties", {}))
    for part in schema.get("allOf", []):
        r, p = _flat(part, schemas)
        required |= r
        props.update(p)
    return required, props


def track_facts(spec: dict) -> dict:
    schemas = spec["components"]["schemas"]
    routes = [
        [m.upper(), p, o.get("operationId")]
        for p, ops in spec["paths"].items()
        for m, o in ops.items()
        if m in ("get", "put", "post", "delete")
    ]
    body = spec["paths"]["/api/v2/batch"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    actions: dict[str, dict[str, list[str]]] = {}
    for group in body["properties"]["batch"]["items"]["anyOf"]:
        for ref in group.get("anyOf", [group]):
            required, props = _flat(ref, schemas)
            entity = props.get("type", {}).get("enum", ["?"])[0]
            for action in props.get("action", {}).get("enum", []):
                actions.setdefault(entity, {})[action] = sorted(required - {"type", "action"})
    device = _flat(schemas["device_object_common"], schemas)[1]
    return {
        "routes": routes,
        "v2_actions": actions,
        "device_platforms": device["platform"]["enum"],
        "servers": [s["url"] for s in spec["servers"]],
    }


def cdp_facts(spec: dict) -> dict:
    routes = [
        [m.upper(), p, o.get("operationId")]
        for p, ops in spec["paths"].items()
        for m, o in ops.items()
        if m in ("get", "put", "post", "delete")
    ]
    return {
        "routes": routes,
        "types": [p.strip("/") for p in spec["paths"] if p != "/batch"],
        "servers": [s["url"] for s in spec["servers"]],
    }


def main(argv: list[str]) -> int:
    folder = Path(argv[0] if argv else "../shared/spec")
    track = json.loads((folder / "track-api.json").read_text())
    cdp = json.loads((folder / "cdp-api.json").read_text())
    facts = {"track": track_facts(track), "cdp": cdp_facts(cdp), "limits": LIMITS}
    out = Path(__file__).with_name("send_spec_facts.json")
    out.write_text(json.dumps(facts, indent=1, sort_keys=True) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main(sys.argv[1:]))
