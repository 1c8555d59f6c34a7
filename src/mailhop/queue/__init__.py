"""queue layer of mailhop (see DESIGN.md §2)."""

from __future__ import annotations
