"""``mailhop config``: placeholder until the configuration package lands."""

from __future__ import annotations

from mailhop.errors import NotBuiltError


def main(program: str, arguments: list[str]) -> int:
    raise NotBuiltError(f"{program}: not built yet")
