"""How long a client waits in each phase of an SMTP session (RFC 5321 §4.5.3.2).

The transport takes a timeout for every operation; the SMTP driver picks it from a
``Timeouts`` by the phase its core reports. RFC 5321 §4.5.3.2 gives per-command
minimums because servers legitimately take long (a slow DNS check at RCPT, a content
scan after the final dot); a single short value would make the client give up on
mail the server is about to accept, and then send it twice.
"""

from __future__ import annotations

from mailhop._records import NamedTuple

__all__ = [
    "DEFAULT_COMMAND_TIMEOUT",
    "DEFAULT_CONNECT_TIMEOUT",
    "DEFAULT_DATA_BLOCK_TIMEOUT",
    "DEFAULT_DATA_INITIATION_TIMEOUT",
    "DEFAULT_DATA_TERMINATION_TIMEOUT",
    "DEFAULT_GREETING_TIMEOUT",
    "DEFAULT_MAIL_TIMEOUT",
    "DEFAULT_RCPT_TIMEOUT",
    "Timeouts",
]

# RFC 5321 gives no connect value. 60 s spans several SYN retransmissions (Linux waits
# 1, 2, 4, 8, 16, 32 s) and covers all addresses of the host together, unlike msmtp,
# which applies its timeout to each address in turn. It includes the implicit TLS
# handshake and the SOCKS5 negotiation.
DEFAULT_CONNECT_TIMEOUT = 60.0
DEFAULT_GREETING_TIMEOUT = 300.0  # §4.5.3.2.1 Initial 220 Message: 5 minutes
DEFAULT_MAIL_TIMEOUT = 300.0  # §4.5.3.2.2 MAIL Command: 5 minutes
DEFAULT_RCPT_TIMEOUT = 300.0  # §4.5.3.2.3 RCPT Command: 5 minutes
DEFAULT_DATA_INITIATION_TIMEOUT = 120.0  # §4.5.3.2.4 DATA Initiation (354): 2 minutes
DEFAULT_DATA_BLOCK_TIMEOUT = 180.0  # §4.5.3.2.5 Data Block: 3 minutes per send
DEFAULT_DATA_TERMINATION_TIMEOUT = 600.0  # §4.5.3.2.6 DATA Termination (250): 10 minutes
# EHLO, STARTTLS (and its handshake), AUTH, RSET, QUIT: RFC 5321 names no value; the
# 5 minutes it gives MAIL and RCPT, and that §4.5.3.2.7 gives the server, fit them.
DEFAULT_COMMAND_TIMEOUT = 300.0


class Timeouts(NamedTuple):
    """Seconds to wait in each phase; defaults are RFC 5321 §4.5.3.2's."""

    connect: float = DEFAULT_CONNECT_TIMEOUT
    greeting: float = DEFAULT_GREETING_TIMEOUT
    mail: float = DEFAULT_MAIL_TIMEOUT
    rcpt: float = DEFAULT_RCPT_TIMEOUT
    data_initiation: float = DEFAULT_DATA_INITIATION_TIMEOUT
    data_block: float = DEFAULT_DATA_BLOCK_TIMEOUT
    data_termination: float = DEFAULT_DATA_TERMINATION_TIMEOUT
    command: float = DEFAULT_COMMAND_TIMEOUT

    @classmethod
    def from_setting(cls, seconds: float | None) -> Timeouts:
        """msmtp's ``timeout``: ``None`` (off) keeps RFC values, a number applies to all.

        msmtp uses its one ``timeout`` for the connection and every read and write; a
        user who wrote ``timeout 30`` asked not to wait longer than that anywhere.
        """
        if seconds is None:
            return cls()
        if seconds <= 0:
            raise ValueError(f"timeout must be positive, not {seconds}")
        return cls(**dict.fromkeys(cls._fields, seconds))
