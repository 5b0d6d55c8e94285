"""Errors the connector raises. Each carries one line a user can act on."""

from __future__ import annotations


class CustomerIOError(Exception):
    """Base class: str(error) is the one line shown to the user."""


class ConfigError(CustomerIOError):
    """Bad input found before any request is sent (missing key, bad date, unknown table...)."""


class ApiError(CustomerIOError):
    """The App API answered with an error we do not retry."""

    def __init__(self, message: str, status: int | None = None, endpoint: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.endpoint = endpoint


class AuthError(ApiError):
    """401: the App API key was rejected."""


class NotFoundError(ApiError):
    """404: the object does not exist (for a child of a deleted parent the run skips it)."""


class RetriesExhausted(ApiError):
    """A request kept failing (429, 5xx, network) past the configured attempts or wait budget."""


class PaginationError(ApiError):
    """The API returned a cursor it had already returned: paging would loop forever."""


class LoadFailed(CustomerIOError):
    """A load job kept failing; its package stays pending, so the next run retries it first."""

    def __init__(self, message: str, load_ids: list[str] | None = None, table: str | None = None) -> None:
        super().__init__(message)
        self.load_ids = list(load_ids or [])
        self.table = table


class PendingPackageFailed(LoadFailed):
    """A package an earlier run left behind failed again when this run tried to finish it."""


class PipelineBusy(CustomerIOError):
    """Another run of the same pipeline (same working folder) is still going."""
