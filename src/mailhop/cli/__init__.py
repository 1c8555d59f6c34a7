"""Command-line personalities. Only this package calls ``sys.exit``."""

from __future__ import annotations
