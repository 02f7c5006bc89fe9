"""``python -m edgewatch``."""

from __future__ import annotations

import sys

from edgewatch.cli import main

sys.exit(main())
