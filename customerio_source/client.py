"""The App API client: one per run, shared by every resource and thread.

Bearer auth, one shared rate limiter applied before every attempt, retries, cursor pagination with a loop
guard, and errors turned into one actionable line.

A 429 is not a failure of the request but of the workspace's shared budget: the client tells the limiter
(with the time the request was sent), which pauses every thread for ``Retry-After`` and may lower the
shared rate; the retry then goes before requests not sent yet. 429 retries do not use up ``max_attempts``:
they are bounded by ``max_retry_wait`` seconds of waiting per request. Every other answer below 500 is
reported to the limiter too (the budget held: it may raise the rate again). 5xx, connection errors,
timeouts and cut bodies are retried with jittered exponential backoff, bounded by ``max_attempts`` and
``max_retry_wait``.

The API key is only ever placed in the Authorization header: it is never logged, never part of an exception
message and never in a URL.

Why this is written here rather than taken from dlt's HTTP layer (``dlt.sources.helpers.requests`` and its
``RESTClient``), piece by piece:

- the retry loop: dlt retries inside one call (tenacity), so its attempts would not each pass through the
  shared limiter, a 429 could not be reported with its send time or keep its place, and 429s would use up
  the attempts that bound real faults;
- pagination: the App API's ``next`` -> ``start`` cursor needs a guard against a cursor that comes back
  (seen in the wild as an endless loop), and big pages go from the raw body straight to Arrow
  (``decode``), which a paginator that yields parsed JSON cannot do;
- the transport is dlt's: ``dlt.sources.helpers.requests.Client`` gives each thread its own session (dlt's
  ``Session``, on one shared connection pool), with its own retries switched off (the loop above replaces
  them) and the timeout from the source's ``request_timeout`` or, when that is unset, dlt's
  ``[runtime] request_timeout``.
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

import dlt
import orjson
import requests
from dlt.sources.helpers.requests import Client as HttpClient

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
    """Thread-safe request counters, by table (the tag a resource passes) and in total, and what the shared
    rate limiter did (``configured_rate``, ``adapted_rate``, ``min_rate``, ``rate_decreases``)."""

    def __init__(self, limiter: RateLimiter | None = None) -> None:
        self._lock = threading.Lock()
        self.by_table: Counter[str] = Counter()
        self.retries: Counter[str] = Counter()
        self.rate_limited = 0
        self.started = time.monotonic()
        self.limiter = limiter

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

    @property
    def configured_rate(self) -> float | None:
        """The rate limit the run was configured with (requests/s; None: off)."""
        return self.limiter.max_rate if self.limiter else None

    @property
    def adapted_rate(self) -> float | None:
        """The rate the limiter uses now, if 429s ever made it lower the rate (else None: it never adapted)."""
        return self.limiter.rate if self.limiter and self.limiter.decreases else None

    @property
    def min_rate(self) -> float | None:
        """The lowest rate the limiter went down to (None: it never lowered the rate)."""
        return self.limiter.min_rate if self.limiter else None

    @property
    def rate_decreases(self) -> int:
        """How many times 429s made the limiter lower the rate."""
        return self.limiter.decreases if self.limiter else 0


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
        timeout: float | None = None,
        limiter: RateLimiter | None = None,
        stats: RequestStats | None = None,
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
        self.timeout = float(timeout if timeout is not None else dlt.config.get("runtime.request_timeout") or 60.0)
        # dlt's per-thread sessions; this client's retry loop (through the shared limiter) replaces dlt's
        self._http = HttpClient(
            request_timeout=self.timeout,
            raise_for_status=False,
            status_codes=(),
            exceptions=(),
            request_max_attempts=1,
        )
        self._headers = {
            "Authorization": f"Bearer {self._api_key}",
            "Accept": "application/json",
            "User-Agent": USER_AGENT,
        }
        self.backoff_base = backoff_base
        self.stats = stats if stats is not None else RequestStats()
        self.stats.limiter = self.limiter

    def __repr__(self) -> str:  # never show the key
        return f"CustomerIOClient(base_url={self.base_url!r}, region={self.region!r})"

    # -- transport -----------------------------------------------------------------------------------
    @property
    def _session(self) -> requests.Session:
        """This thread's session (dlt's ``Session``; it carries no credentials: headers go per request)."""
        return self._http.session

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
        headers = {**self._headers, "Content-Type": "application/json"} if data is not None else self._headers
        attempt = failures = 0
        waited = 0.0
        last_problem = ""
        since = self.limiter.now()
        after_429 = False
        while True:
            slept = self.limiter.acquire(priority=after_429, since=since)
            if after_429:
                waited += slept  # the pause and the queue after a 429 count as waiting; a first slot does not
            attempt += 1
            sent_at = self.limiter.now()
            self.stats.count(table)
            response, last_problem = self._send(method, url, params, data, headers)
            if response is not None and response.status_code == 429:
                last_problem = "HTTP 429"
                delay = self._rate_limited(response, sent_at)
                after_429 = True
                if waited + delay > self.max_retry_wait:
                    break
                logger.debug("retrying %s after HTTP 429 (attempt %d, pausing %.1fs)", endpoint, attempt, delay)
                continue
            if response is not None:
                if response.status_code < 500:
                    self.limiter.accepted(sent_at)  # the budget held
                result, last_problem = self._answer(response, endpoint, decode)
                if not last_problem:
                    return result
            after_429 = False
            failures += 1
            delay = min(30.0, self.backoff_base * 2 ** (failures - 1)) * (0.5 + random.random() / 2)
            if failures >= self.max_attempts or waited + delay > self.max_retry_wait:
                break
            logger.debug("retrying %s after %s (attempt %d, waiting %.1fs)", endpoint, last_problem, attempt, delay)
            time.sleep(delay)
            waited += delay
        raise RetriesExhausted(
            f"{endpoint} kept failing ({last_problem}) after {attempt} attempts and {waited:.0f}s of waiting",
            endpoint=endpoint,
        )

    def _send(
        self, method: str, url: str, params: dict[str, Any], data: bytes | None, headers: dict[str, str] | None
    ) -> tuple[requests.Response | None, str]:
        """One exchange: the response, or None and what went wrong on the wire."""
        try:
            return self._session.request(
                method, url, params=params, data=data, headers=headers, timeout=self.timeout
            ), ""
        except requests.exceptions.RequestException as exc:
            # connection refused/reset, timeouts, cut streams: all worth another try
            self.stats.retry(type(exc).__name__)
            return None, self._transport_problem(exc)

    def _rate_limited(self, response: requests.Response, sent_at: float) -> float:
        """A 429: the budget is per workspace, so every thread pauses ``Retry-After`` and the limiter may lower
        the shared rate. Return the pause."""
        delay = _retry_after(response.headers.get("Retry-After"))
        self.stats.retry("429", rate_limited=True)
        self.limiter.rate_limited(sent_at, delay)
        return delay

    def _answer(
        self, response: requests.Response, endpoint: str, decode: Callable[[bytes], dict[str, Any]]
    ) -> tuple[dict[str, Any], str]:
        """The decoded result of a non-429 answer and "", or {} and the problem to retry; raise the others."""
        status = response.status_code
        if status < 300:
            try:
                return (decode(response.content) if response.content else {}), ""
            except orjson.JSONDecodeError:
                self.stats.retry("bad_json")
                return {}, "a cut or invalid JSON body"
        if status in RETRY_STATUSES:
            self.stats.retry(str(status))
            return {}, f"HTTP {status}"
        raise self._error(response, endpoint)

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
