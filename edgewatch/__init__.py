"""edgewatch: a real-time video analytics daemon for edge boxes and CCTV monitoring."""

from __future__ import annotations

__version__ = "0.1.0"
