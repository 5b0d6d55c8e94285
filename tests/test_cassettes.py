"""The client against recorded App API exchanges (vcrpy cassettes in tests/cassettes/, replayed offline).

Re-record with ``python -m tests.cassettes.record``. Replay never touches the network: the record mode is
"none" unless ``VCR_RECORD_MODE`` says otherwise, and the client talks to the fake host the cassettes name.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import vcr
import yaml

from customerio_source.client import CustomerIOClient
from customerio_source.errors import AuthError
from customerio_source.ratelimit import RateLimiter

from .cassettes.record import FAKE_HOST, RECORDING_KEY
from .clocks import FakeClock

CASSETTES = Path(__file__).resolve().parent / "cassettes"
RECORD_MODE = os.environ.get("VCR_RECORD_MODE", "none")
REPLAY_KEY = "sk-SECRET-replay-canary-77c1"


@pytest.fixture(scope="module")
def vcr_config() -> dict:
    return {"filter_headers": ["authorization"], "decode_compressed_response": True}


@pytest.fixture
def cassette(vcr_config):
    replayer = vcr.VCR(**vcr_config)

    def use(name: str):
        return replayer.use_cassette(str(CASSETTES / f"{name}.yaml"), record_mode=RECORD_MODE,
                                     allow_playback_repeats=False)

    return use



def make_client(**kwargs) -> CustomerIOClient:
    kwargs.setdefault("rate_limit", None)
    return CustomerIOClient(REPLAY_KEY, base_url=FAKE_HOST, backoff_base=0.01, **kwargs)


def test_429_with_retry_after_then_200(cassette):
    clock = FakeClock()
    client = make_client(limiter=RateLimiter(None, clock=clock, sleep=clock.sleep))
    with cassette("rate_limited_then_ok") as tape:
        payload = client.get("/v1/campaigns")
    assert [c["id"] for c in payload["campaigns"]] == [1, 2]
    assert tape.play_count == 2 and tape.all_played
    assert [r["status"]["code"] for r in tape.responses] == [429, 200]
    assert client.stats.rate_limited == 1
    assert clock.now == pytest.approx(1.0)  # waited exactly what Retry-After asked, then retried


def test_next_cursor_then_empty_page(cassette):
    client = make_client()
    with cassette("next_then_empty_page") as tape:
        pages = list(client.pages("GET", "/v1/activities", {"limit": 2}))
    assert [[a["id"] for a in page["activities"]] for page in pages] == [["01J0A", "01J0B"], []]
    assert tape.all_played
    assert [r.uri for r in tape.requests] == [f"{FAKE_HOST}/v1/activities?limit=2",
                                               f"{FAKE_HOST}/v1/activities?limit=2&start=cursor-2"]


def test_401_is_one_actionable_line(cassette):
    client = make_client()
    with cassette("unauthorized") as tape, pytest.raises(AuthError) as failure:
        client.get("/v1/campaigns")
    assert tape.play_count == 1  # a 401 is not retried
    message = str(failure.value)
    assert message == (
        f"Customer.io rejected the App API key (401) at {FAKE_HOST} (region us): check the key, and whether "
        "the workspace is in the EU region (--region eu)"
    )
    assert REPLAY_KEY not in message


def test_replay_is_offline(cassette):
    """A request the cassette does not hold fails instead of reaching any network."""
    from vcr.errors import CannotOverwriteExistingCassetteException

    if RECORD_MODE != "none":
        pytest.skip("recording")
    with cassette("unauthorized"), pytest.raises(CannotOverwriteExistingCassetteException):
        make_client(max_attempts=1).get("/v1/segments")


def test_no_cassette_holds_the_key_or_an_authorization_header():
    files = sorted(CASSETTES.glob("*.yaml"))
    assert {f.stem for f in files} >= {"rate_limited_then_ok", "next_then_empty_page", "unauthorized"}
    for path in files:
        text = path.read_text()
        for secret in (RECORDING_KEY, REPLAY_KEY, "Bearer ", "sk-SECRET"):
            assert secret not in text, f"{secret!r} in {path.name}"
        for interaction in yaml.safe_load(text)["interactions"]:
            headers = {name.lower() for name in interaction["request"]["headers"]}
            assert "authorization" not in headers, path.name
            assert interaction["request"]["uri"].startswith(FAKE_HOST + "/"), path.name
