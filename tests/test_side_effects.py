"""A library has no side effects: importing the package and building the source change no environment
variable, no dlt configuration and no allocator, and send no request."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from .conftest import API_KEY

PROBE = r"""
import json, os, sys
before_env = dict(os.environ)
import pyarrow as pa
import dlt
before_pool = pa.default_memory_pool().backend_name
before_config = dlt.config.get("data_writer.arrow_concat_promote_options")
import customerio_source
from customerio_source import customerio_source as build
source = build(api_key=sys.argv[2], base_url=sys.argv[1], tables="all,customer_messages,campaign_link_metrics",
               rate_limit=0, bulk="auto")  # `auto` decides when the run extracts, not here
names = sorted(source.selected_resources)
changed = sorted(k for k in set(before_env) | set(os.environ) if before_env.get(k) != os.environ.get(k))
print(json.dumps({
    "changed_env": changed,
    "pool": [before_pool, pa.default_memory_pool().backend_name],
    "config": [before_config, dlt.config.get("data_writer.arrow_concat_promote_options")],
    "resources": len(names),
}))
"""


def test_import_and_source_construction_change_nothing_and_send_nothing(tiny_server):
    before = tiny_server.stats.requests
    # a fresh interpreter with none of the settings this package could make
    env = {
        k: v for k, v in os.environ.items() if k != "ARROW_DEFAULT_MEMORY_POOL" and not k.startswith("DATA_WRITER__")
    }
    result = subprocess.run(
        [sys.executable, "-c", PROBE, tiny_server.base_url, API_KEY], capture_output=True, text=True, env=env,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["changed_env"] == []
    assert report["pool"][0] == report["pool"][1]  # the allocator Arrow chose on import is still the one
    assert report["config"] == [None, None]
    assert report["resources"] >= 38  # every default table and the opt-ins named (people share one)
    assert tiny_server.stats.requests == before  # building the source sent no request
