"""The App API client: one per run, shared by every resource and thread.

Bearer auth, one shared rate limiter applied before every attempt, bounded retries (429 honouring
``Retry-After``, 5xx, connection errors, timeouts, cut bodies), cursor pagination with a loop guard, and
errors turned into one actionable line. The API key is only ever placed in the Authorization header: it is
never logged, never part of an exception message and never in a URL.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from typing import Any
from urllib.parse import quote

import orjson
import requests

from .errors import (
    ApiError,
    AuthError,
    ConfigError,
    NotFoundError,
    PaginationError,
    RetriesExhausted,
)
from .ratelimit import RateLimiter

logger = logging.getLogger("customerio_source")

REGION_URLS = {"us": "https://api.customer.io", "eu": "https://api-eu.customer.io"}
RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
USER_AGENT = "customerio-source/0.1 (+dlt)"


def base_url_for(region: str, base_url: str | None = None) -> str:
    """The API root for a region, or the override (proxies, the simulator)."""
    if base_url:
        if not base_url.startswith(("http://", "https://")):
            raise ConfigError(f"--base-url must start with http:// or https://, got {base_url!r}")
        return base_url.rstrip("/")
    try:
        return REGION_URLS[region.lower()]
    except KeyError:
        raise ConfigError(f"unknown region {region!r}: use 'us' or 'eu'") from None


def path_value(value: Any) -> str:
    """URL-encode one path segment (ids may hold '/', '@', '+', spaces)."""
    return quote(str(value), safe="")


class RequestStats:
    """Thread-safe request counters, by table (the tag a resource passes) and in total."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.by_table: Counter[str] = Counter()
        self.retries: Counter[str] = Counter()
        self.rate_limited = 0
        self.started = time.monotonic()

    def count(self, table: str) -> None:
        with self._lock:
            self.by_table[table] += 1

    def retry(self, reason: str, rate_limited: bool = False) -> None:
        with self._lock:
            self.retries[reason] += 1
            if rate_limited:
                self.rate_limited += 1

    @property
    def total(self) -> int:
        return sum(self.by_table.values())


class CustomerIOClient:
    """Talks to the Customer.io App API (``/v1/...``)."""

    def __init__(
        self,
        api_key: str,
        region: str = "us",
        base_url: str | None = None,
        rate_limit: float | None = 10.0,
        max_attempts: int = 8,
        max_retry_wait: float = 300.0,
        timeout: float = 60.0,
        limiter: RateLimiter | None = None,
        backoff_base: float = 0.5,
    ) -> None:
        if not api_key or not str(api_key).strip():
            raise ConfigError(
                "no App API key: set CUSTOMERIO_APP_API_KEY (or [sources.customerio] api_key in "
                ".dlt/secrets.toml), or run with --demo"
            )
        if max_attempts < 1:
            raise ConfigError("max_attempts must be at least 1")
        self._api_key = str(api_key).strip()
        self.region = region.lower()
        self.base_url = base_url_for(self.region, base_url)
        self.limiter = limiter or RateLimiter(rate_limit)
        self.max_attempts = max_attempts
        self.max_retry_wait = max_retry_wait
        self.timeout = timeout
        self.backoff_base = backoff_base
        self.stats = RequestStats()
        self._local = threading.local()

    def __repr__(self) -> str:  # never show the key
        return f"CustomerIOClient(base_url={self.base_url!r}, region={self.region!r})"

    # -- transport -----------------------------------------------------------------------------------
    @property
    def _session(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = requests.Session()
            session.headers.update(
                {
                    "Authorization": f"Bearer {self._api_key}",
                    "Accept": "application/json",
                    "User-Agent": USER_AGENT,
                }
            )
            self._local.session = session
        return session

    def request(
        self,
        method: str,
        path: str,
        params: Mapping[str, Any] | None = None,
        body: Any = None,
        table: str = "-",
        decode: Callable[[bytes], dict[str, Any]] = orjson.loads,
    ) -> dict[str, Any]:
        """Send one request (with retries) and return the decoded JSON object.

        ``decode`` turns a non-empty 2xx body into the result; it raises ``orjson.JSONDecodeError`` for a
        body that is not JSON (a cut body: retried). Big tables pass an Arrow decoder (see ``arrow_pages``).
        """
        url = f"{self.base_url}{path}"
        endpoint = f"{method} {path}"
        params = {k: v for k, v in (params or {}).items() if v is not None}
        data = orjson.dumps(body) if body is not None else None
        headers = {"Content-Type": "application/json"} if data is not None else None
        waited = 0.0
        last_problem = ""
        for attempt in range(1, self.max_attempts + 1):
            self.limiter.acquire()
            self.stats.count(table)
            delay: float | None = None
            try:
                response = self._session.request(
                    method, url, params=params, data=data, headers=headers, timeout=self.timeout
                )
            except requests.exceptions.RequestException as exc:
                # connection refused/reset, timeouts, cut streams: all worth another try
                last_problem = self._transport_problem(exc)
                self.stats.retry(type(exc).__name__)
            else:
                status = response.status_code
                if status < 300:
                    try:
                        return decode(response.content) if response.content else {}
                    except orjson.JSONDecodeError:
                        last_problem = "a cut or invalid JSON body"
                        self.stats.retry("bad_json")
                elif status in RETRY_STATUSES:
                    last_problem = f"HTTP {status}"
                    if status == 429:
                        delay = _retry_after(response.headers.get("Retry-After"))
                        self.stats.retry("429", rate_limited=True)
                    else:
                        self.stats.retry(str(status))
                else:
                    raise self._error(response, endpoint)
            if attempt == self.max_attempts:
                break
            rate_limited = delay is not None
            if delay is None:
                delay = min(30.0, self.backoff_base * 2 ** (attempt - 1)) * (0.5 + random.random() / 2)
            if waited + delay > self.max_retry_wait:
                break
            logger.debug("retrying %s after %s (attempt %d, waiting %.1fs)", endpoint, last_problem, attempt, delay)
            if rate_limited:
                self.limiter.pause(delay)  # Retry-After holds back every thread: the limit is per workspace
            else:
                time.sleep(delay)
            waited += delay
        raise RetriesExhausted(
            f"{endpoint} kept failing ({last_problem}) after {attempt} attempts and {waited:.0f}s of waiting",
            endpoint=endpoint,
        )

    def _transport_problem(self, exc: requests.exceptions.RequestException) -> str:
        """A short, key-free description of a failed exchange (never the exception text: it holds URLs)."""
        name = type(exc).__name__
        if isinstance(exc, requests.exceptions.Timeout) and not isinstance(exc, requests.exceptions.ConnectTimeout):
            return f"no answer within {self.timeout:g}s: {name}"
        if isinstance(exc, (requests.exceptions.ChunkedEncodingError, requests.exceptions.ContentDecodingError)):
            return f"a cut response body: {name}"
        if isinstance(exc, requests.exceptions.ConnectionError):
            return f"cannot reach {self.base_url}: {name}"
        return name

    def _error(self, response: requests.Response, endpoint: str) -> ApiError:
        status = response.status_code
        detail = _error_detail(response)
        if status == 401:
            other = "eu" if self.region == "us" else "us"
            return AuthError(
                f"Customer.io rejected the App API key (401) at {self.base_url} (region {self.region}): "
                f"check the key, and whether the workspace is in the {other.upper()} region (--region {other})",
                status=401,
                endpoint=endpoint,
            )
        if status == 404:
            return NotFoundError(f"{endpoint}: not found (404){': ' + detail if detail else ''}", 404, endpoint)
        if status == 400:
            return ApiError(f"{endpoint}: the API rejected the request (400): {detail or 'bad request'}", 400, endpoint)
        return ApiError(f"{endpoint}: HTTP {status}{': ' + detail if detail else ''}", status, endpoint)

    def get(self, path: str, params: Mapping[str, Any] | None = None, table: str = "-") -> dict[str, Any]:
        return self.request("GET", path, params=params, table=table)

    def post(
        self, path: str, body: Any, params: Mapping[str, Any] | None = None, table: str = "-"
    ) -> dict[str, Any]:
        return self.request("POST", path, params=params, body=body, table=table)

    # -- pagination ----------------------------------------------------------------------------------
    def pages(
        self,
        method: str,
        path: str,
        params: Mapping[str, Any] | None = None,
        body: Any = None,
        table: str = "-",
        decode: Callable[[bytes], dict[str, Any]] = orjson.loads,
    ) -> Iterator[dict[str, Any]]:
        """Yield whole response objects, following ``next`` → ``start`` until it is empty or absent.

        A cursor that comes back a second time raises :class:`PaginationError` instead of looping.
        """
        query = dict(params or {})
        seen: set[str] = set()
        while True:
            payload = self.request(method, path, params=query, body=body, table=table, decode=decode)
            yield payload
            cursor = payload.get("next")
            if cursor in (None, "", 0) or cursor is False:
                return
            cursor = str(cursor)
            if cursor in seen or cursor == query.get("start"):
                raise PaginationError(
                    f"{method} {path}: the API returned the cursor {cursor[:40]!r} twice; stopping instead of "
                    "looping",
                    endpoint=f"{method} {path}",
                )
            seen.add(cursor)
            query["start"] = cursor


def _retry_after(value: str | None) -> float:
    """Seconds to wait from a Retry-After header (integer seconds per the spec; at least 1)."""
    try:
        return max(1.0, float(value)) if value is not None else 1.0
    except ValueError:
        return 1.0


def _error_detail(response: requests.Response) -> str:
    """The API's ``errors[].detail`` (or ``meta.error``), joined; never the request headers."""
    try:
        payload = orjson.loads(response.content)
    except (orjson.JSONDecodeError, TypeError):
        text = (response.text or "").strip()
        return text[:200]
    if isinstance(payload, dict):
        errors = payload.get("errors")
        if isinstance(errors, list):
            return "; ".join(str(e.get("detail") or e) for e in errors if isinstance(e, dict))[:500]
        meta = payload.get("meta")
        if isinstance(meta, dict) and meta.get("error"):
            return str(meta["error"])[:500]
    return str(payload)[:200]
