"""customerio-source: a dlt source for the whole Customer.io App API.

Importing the package or building its source changes no environment variable, no dlt configuration and no
allocator, and sends no request (``bulk="auto"`` decides when the run extracts). Settings a run needs are
made by :func:`load` for that run only; process-wide tuning is the CLI's, in its own process.
"""

from .catalogue import CATALOGUE, default_tables
from .client import CustomerIOClient
from .errors import ApiError, AuthError, ConfigError, CustomerIOError
from .runner import load, mark_deleted
from .source import customerio_source

__all__ = [
    "CATALOGUE",
    "ApiError",
    "AuthError",
    "ConfigError",
    "CustomerIOClient",
    "CustomerIOError",
    "customerio_source",
    "default_tables",
    "load",
    "mark_deleted",
]
