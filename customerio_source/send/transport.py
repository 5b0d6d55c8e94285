"""HTTP for the send APIs: the App API client's retry loop and shared rate limiter, with basic auth.

:class:`SendClient` is :class:`~customerio_source.client.CustomerIOClient` (one :class:`RateLimiter` for
every thread, 429s honouring ``Retry-After`` without using up attempts, 5xx/timeouts/resets retried with
bounded backoff, 400/401 raised at once and never retried) speaking to the Track API (site id + Track API
key) or the Data Pipelines API (write key, empty password, always ``X-Strict-Mode: 1`` so that invalid
calls are answered 400 instead of silently dropped). Credentials live only in the Authorization header.
"""

from __future__ import annotations

import base64
import threading
from dataclasses import dataclass, field

import requests

from ..client import USER_AGENT, CustomerIOClient, _error_detail
from ..errors import ApiError, AuthError, ConfigError
from ..ratelimit import RateLimiter
from . import limits

TRACK_URLS = {"us": "https://track.customer.io", "eu": "https://track-eu.customer.io"}
CDP_URLS = {"us": "https://cdp.customer.io/v1", "eu": "https://cdp-eu.customer.io/v1"}


@dataclass(frozen=True)
class Settings:
    """Where and how one push talks (secrets are excluded from repr)."""

    api: str = "track"
    region: str = "us"
    base_url: str | None = None
    site_id: str | None = field(default=None, repr=False)
    api_key: str | None = field(default=None, repr=False)
    write_key: str | None = field(default=None, repr=False)
    rate_limit: float | None = limits.DEFAULT_RATE
    workers: int = 4
    max_attempts: int = 6
    max_retry_wait: float = 300.0
    timeout: float = 60.0

    @property
    def root(self) -> str:
        if self.base_url:
            return self.base_url.rstrip("/")
        return (CDP_URLS if self.api == "cdp" else TRACK_URLS)[self.region]


def check_settings(settings: Settings) -> None:
    """Raise :class:`ConfigError` (one line, no secret in it) for settings that cannot work."""
    if settings.api not in ("track", "cdp"):
        raise ConfigError(f"api must be track or cdp, not {settings.api!r}")
    if settings.region not in ("us", "eu"):
        raise ConfigError(f"region must be us or eu, not {settings.region!r}")
    if settings.api == "track" and not (settings.site_id and settings.api_key):
        raise ConfigError(
            "no Track API credentials: set CUSTOMERIO_SITE_ID and CUSTOMERIO_TRACK_API_KEY (or "
            "[destination.customerio] site_id / api_key in .dlt/secrets.toml), or run with --demo"
        )
    if settings.api == "cdp" and not settings.write_key:
        raise ConfigError(
            "no Data Pipelines write key: set CUSTOMERIO_CDP_API_KEY (or [destination.customerio] write_key), "
            "or run with --demo"
        )
    if settings.rate_limit is not None and settings.rate_limit > limits.TRACK_MAX_RATE:
        raise ConfigError(
            f"rate_limit {settings.rate_limit:g}/s is above the Track API's budget "
            f"(about {limits.TRACK_MAX_RATE:g} requests/s for the whole workspace)"
        )
    if settings.workers < 1:
        raise ConfigError("workers must be at least 1")


class SendClient(CustomerIOClient):
    """A Track or Data Pipelines API client (see the module docstring)."""

    def __init__(self, settings: Settings, limiter: RateLimiter | None = None) -> None:
        check_settings(settings)
        user, password = (settings.site_id, settings.api_key) if settings.api == "track" else (settings.write_key, "")
        self.api = settings.api
        self._basic = base64.b64encode(f"{str(user).strip()}:{str(password or '').strip()}".encode()).decode()
        super().__init__(
            api_key="-",  # the App API's bearer key is not used: basic auth replaces its headers below
            region=settings.region,
            base_url=settings.root,
            rate_limit=settings.rate_limit or None,
            max_attempts=settings.max_attempts,
            max_retry_wait=settings.max_retry_wait,
            timeout=settings.timeout,
            limiter=limiter,
        )
        # the App API client sends these headers with every request (its sessions hold no credentials)
        self._headers = {
            "Authorization": f"Basic {self._basic}",
            "Accept": "application/json",
            "User-Agent": USER_AGENT,
        }
        if self.api == "cdp":
            self._headers["X-Strict-Mode"] = "1"

    def __repr__(self) -> str:  # never show a credential
        return f"SendClient(api={self.api!r}, base_url={self.base_url!r})"

    def _error(self, response: requests.Response, endpoint: str) -> ApiError:
        status = response.status_code
        if status == 401:
            what = "Track API site id / API key" if self.api == "track" else "Data Pipelines write key"
            other = "eu" if self.region == "us" else "us"
            return AuthError(
                f"Customer.io rejected the {what} (401) at {self.base_url} (region {self.region}): check them, "
                f"and whether the workspace is in the {other.upper()} region (--region {other})",
                status=401,
                endpoint=endpoint,
            )
        if status == 400:
            detail = meta_detail(response) or _error_detail(response) or "malformed request"
            return ApiError(f"{endpoint}: Customer.io rejected the request as malformed (400): {detail}", 400, endpoint)
        return super()._error(response, endpoint)


def meta_detail(response: requests.Response) -> str:
    """The Track API's ``{"meta": {"errors": [...]}}`` text."""
    try:
        payload = response.json()
    except ValueError:
        return ""
    meta = payload.get("meta") if isinstance(payload, dict) else None
    errors = meta.get("errors") if isinstance(meta, dict) else None
    return "; ".join(str(e) for e in errors)[:300] if isinstance(errors, list) else ""


_CLIENTS: dict[Settings, SendClient] = {}
_CLIENTS_LOCK = threading.Lock()


def client_for(settings: Settings) -> SendClient:
    """One client (one rate limiter, one set of counters) per settings in this process: every batch dlt
    hands the destination in a run shares it."""
    with _CLIENTS_LOCK:
        client = _CLIENTS.get(settings)
        if client is None:
            client = _CLIENTS[settings] = SendClient(settings)
        return client
