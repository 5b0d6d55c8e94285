"""Re-record the cassettes in this folder: ``python -m tests.cassettes.record`` (from the repository root).

Each cassette is recorded by the real client against a local scripted server (tests/scripted_server.py),
never a Customer.io host. The Authorization header is dropped (``filter_headers``) and every URL is
rewritten to the fixed fake host ``http://cio.test``, the base URL the replaying tests give the client.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import vcr

from customerio_source.client import CustomerIOClient
from customerio_source.errors import AuthError
from tests.scripted_server import ScriptedServer

HERE = Path(__file__).resolve().parent
FAKE_HOST = "http://cio.test"
RECORDING_KEY = "sk-SECRET-cassette-canary-0f3a"  # what the scripted server expects; must never be saved

CAMPAIGNS = {"campaigns": [{"id": 1, "name": "Welcome", "updated": 1767225600}, {"id": 2, "name": "Winback"}]}
ACTIVITIES = [{"id": "01J0A", "type": "event", "timestamp": 1767225600},
              {"id": "01J0B", "type": "page", "timestamp": 1767225500}]


def rate_limited_then_ok() -> Callable[..., tuple[int, dict[str, str], Any]]:
    calls: list[int] = []

    def handler(method: str, path: str, query: dict[str, str], body: Any) -> tuple[int, dict[str, str], Any]:
        calls.append(1)
        if len(calls) == 1:
            return 429, {"Retry-After": "1"}, {"errors": [{"detail": "rate limited to 10 requests per 1s",
                                                           "status": "429"}]}
        return 200, {}, CAMPAIGNS

    return handler


def next_then_empty(method: str, path: str, query: dict[str, str], body: Any) -> tuple[int, dict[str, str], Any]:
    if query.get("start") == "cursor-2":
        return 200, {}, {"activities": [], "next": ""}
    return 200, {}, {"activities": ACTIVITIES, "next": "cursor-2"}


def unauthorized(method: str, path: str, query: dict[str, str], body: Any) -> tuple[int, dict[str, str], Any]:
    return 401, {}, {"errors": [{"detail": "Unauthorized request", "status": "401"}]}


def record(name: str, handler: Callable[..., Any], exercise: Callable[[CustomerIOClient], Any]) -> Path:
    path = HERE / f"{name}.yaml"
    path.unlink(missing_ok=True)
    with ScriptedServer(handler) as server:

        def to_fake_host(request: Any) -> Any:
            request.uri = request.uri.replace(server.base_url, FAKE_HOST)
            return request

        recorder = vcr.VCR(filter_headers=["authorization"], before_record_request=to_fake_host,
                           decode_compressed_response=True)
        with recorder.use_cassette(str(path), record_mode="all"):
            client = CustomerIOClient(RECORDING_KEY, base_url=server.base_url, rate_limit=None, backoff_base=0.01)
            exercise(client)
    text = path.read_text()
    assert RECORDING_KEY not in text and "authorization" not in text.lower(), path
    return path


def main() -> None:
    record("rate_limited_then_ok", rate_limited_then_ok(), lambda c: c.get("/v1/campaigns"))
    record("next_then_empty_page", next_then_empty, lambda c: list(c.pages("GET", "/v1/activities", {"limit": 2})))

    def expect_401(client: CustomerIOClient) -> None:
        try:
            client.get("/v1/campaigns")
        except AuthError:
            return
        raise AssertionError("expected a 401")

    record("unauthorized", unauthorized, expect_401)
    print("recorded:", ", ".join(sorted(p.name for p in HERE.glob("*.yaml"))))


if __name__ == "__main__":
    main()
