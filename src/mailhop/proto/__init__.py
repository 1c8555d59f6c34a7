"""proto layer of mailhop (see DESIGN.md §2): sans-IO protocol cores.

Bytes in, events out; events in, bytes out. Nothing here touches a socket, a
file, the clock or a logger (``tests/proto/test_purity.py`` walks the imports):

- :mod:`mailhop.proto.errors`: ``ProtocolError > LocalProtocolError / RemoteProtocolError``
- :mod:`mailhop.proto.smtp`: ``ClientConnection``, ``ServerConnection`` and their events
- :mod:`mailhop.proto.sasl`: SASL mechanisms as generators, and ``choose_mechanism``
"""

from __future__ import annotations
