"""What a server's EHLO reply says it can do (RFC 5321 §4.1.1.1, §2.2.2).

Each line after the first is ``keyword [params]``. Keywords are case-insensitive.
Unknown keywords are kept in ``keywords`` for callers that care (``serverinfo``).
"""

from __future__ import annotations

import re

from mailhop.proto._event import Event, field
from mailhop.proto.smtp.events import Reply

__all__ = ["Capabilities"]

# RFC 1870 §3: size-value = 1*20DIGIT. A longer number is not a size; we then treat
# the limit as unknown rather than trusting an overflowed or garbage value.
MAX_SIZE_DIGITS = 20
_KEYWORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]*")


class Capabilities(Event):
    """The extensions a server advertised. Unset after STARTTLS (RFC 3207 §4.2)."""

    domain: str = ""  # what the server calls itself on the first line
    pipelining: bool = False  # RFC 2920
    size: int | None = None  # RFC 1870; None: no SIZE, 0: SIZE without a fixed limit
    eightbitmime: bool = False  # RFC 6152
    smtputf8: bool = False  # RFC 6531
    dsn: bool = False  # RFC 3461
    starttls: bool = False  # RFC 3207
    auth: frozenset[str] = frozenset()  # RFC 4954 mechanism names, upper case
    enhanced_status_codes: bool = False  # RFC 2034
    chunking: bool = False  # RFC 3030
    keywords: dict[str, str] = field(default_factory=dict, compare=False)

    @classmethod
    def from_ehlo_reply(cls, reply: Reply) -> Capabilities:
        """Read a 250 EHLO reply; lines that are not ``keyword [params]`` are skipped."""
        keywords: dict[str, str] = {}
        auth: set[str] = set()
        for line in reply.lines[1:]:
            keyword, _, params = line.strip().partition(" ")
            # Old Microsoft servers send ``AUTH=LOGIN PLAIN`` (the pre-RFC 2554 draft
            # form) next to or instead of ``AUTH LOGIN PLAIN``; msmtp reads both.
            if keyword.upper().startswith("AUTH="):
                keyword, params = "AUTH", keyword[5:] + " " + params
            if not _KEYWORD.fullmatch(keyword):
                continue
            keyword = keyword.upper()
            if keyword == "AUTH":
                auth.update(name.upper() for name in params.split())
            keywords[keyword] = params.strip()
        return cls(
            domain=reply.lines[0].split(" ", 1)[0],
            pipelining="PIPELINING" in keywords,
            size=_parse_size(keywords["SIZE"]) if "SIZE" in keywords else None,
            eightbitmime="8BITMIME" in keywords,
            smtputf8="SMTPUTF8" in keywords,
            dsn="DSN" in keywords,
            starttls="STARTTLS" in keywords,
            auth=frozenset(auth),
            enhanced_status_codes="ENHANCEDSTATUSCODES" in keywords,
            chunking="CHUNKING" in keywords,
            keywords=keywords,
        )


def _parse_size(params: str) -> int | None:
    if params == "":
        return 0  # RFC 1870 §4: SIZE without a number means no fixed maximum
    if params.isdigit() and params.isascii() and len(params) <= MAX_SIZE_DIGITS:
        return int(params)
    return None
