"""``python -m mailhop``: the same as the ``mailhop`` command."""

from __future__ import annotations

from mailhop.cli.main import run

if __name__ == "__main__":
    run()
