"""The `customerio-pipeline` process: tunes the process before pyarrow is imported, then runs the CLI.

Arrow picks its default memory pool once, when it is imported; its default (mimalloc) keeps freed pages
per thread, which in a process of many threads counts as used memory. This entry point is a process's own
``main``, so it may choose for the process: the system allocator, unless ``ARROW_DEFAULT_MEMORY_POOL`` is
set already. Nothing imports this module but the console script (and ``python -m customerio_source``).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "system")  # read once, when pyarrow is imported
    from .cli import main as cli_main

    return cli_main(argv)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
