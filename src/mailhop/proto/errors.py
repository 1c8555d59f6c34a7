"""Errors of the sans-IO protocol cores: who broke the rules.

The cores do not derive from :class:`mailhop.errors.MailhopError`: they know nothing of
exit codes. The layer above (``net``/``deliver``) translates them with ``raise ... from``.
The tree::

    ProtocolError                 base, never raised itself
    ├── LocalProtocolError        our caller asked for something the protocol forbids
    │                             (a command out of sequence, CR/LF in an argument, ...)
    └── RemoteProtocolError       the peer broke the protocol (a malformed or oversized
                                  reply, bytes before the TLS handshake, a SCRAM server
                                  signature that does not verify, ...)

Any error poisons the connection object that raised it: its state becomes ``ERROR``
and stays there (the h11 rule), so a half-understood session can never carry on.
"""

from __future__ import annotations

__all__ = ["LocalProtocolError", "ProtocolError", "RemoteProtocolError"]


class ProtocolError(Exception):
    """Base of the protocol errors; see the module docstring for the tree."""


class LocalProtocolError(ProtocolError):
    """Our caller asked for something the protocol (or our policy) forbids."""


class RemoteProtocolError(ProtocolError):
    """The peer sent something the protocol forbids."""
