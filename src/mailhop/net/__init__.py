"""net layer of mailhop: the only package that touches sockets and TLS (DESIGN.md §2).

* ``transport``: ``open_connection(Endpoint, timeout=, tls=)`` -> ``Transport`` with
  ``send_all``, ``receive``, ``start_tls`` and ``close``;
* ``tls``: ``client_policy(TLSSettings, host)`` -> ``TLSPolicy`` (context, server name,
  pinned fingerprint, warnings) and ``describe_certificate`` for serverinfo;
* ``timeouts``: RFC 5321 §4.5.3.2 per-phase timeouts;
* ``errors``: ``TransportError`` and its tree, each with its sysexits code.
"""

from __future__ import annotations

from mailhop.net.errors import TransportError
from mailhop.net.timeouts import Timeouts
from mailhop.net.tls import TLSPolicy, TLSSettings, client_policy
from mailhop.net.transport import Direction, Endpoint, Transport, open_connection

__all__ = [
    "Direction",
    "Endpoint",
    "TLSPolicy",
    "TLSSettings",
    "Timeouts",
    "Transport",
    "TransportError",
    "client_policy",
    "open_connection",
]
