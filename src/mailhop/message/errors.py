"""Errors of the message layer: what is wrong with a message, an address or a value.

The sendmail personality reads a message from a caller it cannot question again, so
every error says what was refused and why. The tree, with the exit code of each
class::

    MessageError                      65  base; the message itself is unusable
    ├── HeaderBlockTooLargeError      65  the header block passed MAX_HEADER_BLOCK_BYTES
    ├── MalformedMessageError         65  NUL in the headers, a header line that cannot
    │                                     be folded under 998 octets, ...
    ├── AddressError               64/65  an envelope address is unparsable or unsafe:
    │                                     64 (usage) when it came from the command line,
    │                                     65 (data) when it came from a header (-t)
    ├── UnsafeValueError              64  a value given by the caller (-F, from_full_name,
    │                                     domain) holds CR, LF, NUL or another control
    │                                     character and would become a header of its own
    └── ServerCapabilityError         69  the message needs what the server does not
                                          offer (a UTF-8 address without SMTPUTF8)

``email.errors.*`` never leave this package: the re-encoder translates them here with
``raise ... from``.
"""

from __future__ import annotations

from mailhop.errors import ExitCode, MailhopError

__all__ = [
    "AddressError",
    "HeaderBlockTooLargeError",
    "MalformedMessageError",
    "MessageError",
    "ServerCapabilityError",
    "UnsafeValueError",
]


class MessageError(MailhopError):
    """Base of the message layer: the message cannot be sent as given."""

    exit_code = ExitCode.DATAERR


class HeaderBlockTooLargeError(MessageError):
    """The header block is larger than we agree to hold in memory."""


class MalformedMessageError(MessageError):
    """The message has a defect that cannot be repaired without changing its meaning."""


class AddressError(MessageError):
    """An envelope address is unparsable or unsafe; ``address`` is the text as given.

    ``from_command_line`` decides the exit code: a bad argument is a usage error (64),
    a bad header in a message read with ``-t`` is a data error (65).
    """

    def __init__(self, message: str, *, address: str, from_command_line: bool) -> None:
        super().__init__(
            message, exit_code=ExitCode.USAGE if from_command_line else ExitCode.DATAERR
        )
        self.address = address
        self.from_command_line = from_command_line


class UnsafeValueError(MessageError):
    """A caller-supplied value would inject a line break or control character."""

    exit_code = ExitCode.USAGE


class ServerCapabilityError(MessageError):
    """The message needs an SMTP extension that the server does not offer."""

    exit_code = ExitCode.UNAVAILABLE
