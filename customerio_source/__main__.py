"""`python -m customerio_source`: the `customerio-pipeline` command."""

import sys

from .main import main

sys.exit(main())
