"""customerio-source: a dlt source for the whole Customer.io App API."""

import os
import sys

if "pyarrow" not in sys.modules:  # Arrow reads this once, on import: see runner.bound_process_memory
    os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "system")

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
