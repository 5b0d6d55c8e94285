"""customerio-source: a dlt source for the whole Customer.io App API.

Importing the package or building its source changes no environment variable, no dlt configuration and no
allocator, and sends no request (``bulk="auto"`` decides when the run extracts). Settings a run needs are
made by :func:`load` for that run only; process-wide tuning is the CLI's, in its own process
(:mod:`customerio_source.main`). The names below load their modules on first use, so importing the
package alone imports neither dlt nor pyarrow.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "CATALOGUE": "catalogue",
    "default_tables": "catalogue",
    "CustomerIOClient": "client",
    "RequestStats": "client",
    "ApiError": "errors",
    "AuthError": "errors",
    "ConfigError": "errors",
    "CustomerIOError": "errors",
    "load": "runner",
    "mark_deleted": "runner",
    "customerio_source": "source",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value
