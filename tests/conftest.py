"""Make the repository importable when pytest is run as ``pytest`` rather than
``python -m pytest`` (only the latter puts the working directory on ``sys.path``)."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = str(Path(__file__).resolve().parents[1])
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
