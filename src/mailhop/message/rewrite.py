"""Header rewriting before submission, with msmtp's settings and a few sharp edges fixed.

The settings keep msmtp's names and values so a ``~/.msmtprc`` means the same here:
``set_from_header``, ``set_date_header``, ``set_msgid_header``, ``set_to_header``,
``remove_bcc_headers``, ``from_full_name``, ``domain``. Headers we add go *before*
the original ones, in msmtp's order (From, To, Date, Message-ID). Where we differ:

* ``remove_bcc_headers`` removes ``Resent-Bcc`` too (msmtp keeps it; Postfix's
  cleanup removes both).
* ``set_to_header on`` writes only recipients that are not Bcc (msmtp writes every
  envelope recipient, revealing Bcc); with none left it writes
  ``undisclosed-recipients:;``.
* ``set_from_header on`` keeps the original display name unless a name is given
  (msmtp drops it).
* With a null envelope sender and no From header, no ``From:`` is invented (msmtp
  writes an empty ``From: ``, which RFC 5322 does not allow).
* Every caller value that reaches a header (``-F``, ``from_full_name``, ``domain``) is
  checked for CR, LF, NUL and other controls, and refused rather than written.
"""

from __future__ import annotations

import binascii
import enum
import os
import time

from mailhop._records import NamedTuple
from mailhop.message.addresses import Address, parse_address_list, quote_phrase
from mailhop.message.errors import AddressError, UnsafeValueError
from mailhop.message.headers import HeaderBlock, HeaderField, check_safe_value
from mailhop.message.recipients import Recipients

__all__ = [
    "FromHeader",
    "HeaderSettings",
    "OptionalHeader",
    "ToHeader",
    "encode_display_name",
    "format_date",
    "rewrite_headers",
]


class FromHeader(enum.Enum):
    """msmtp ``set_from_header``."""

    AUTO = "auto"  # add From: when missing
    ON = "on"  # always replace From:
    OFF = "off"  # never touch it


class OptionalHeader(enum.Enum):
    """msmtp ``set_date_header`` and ``set_msgid_header``."""

    AUTO = "auto"  # add when missing
    OFF = "off"


class ToHeader(enum.Enum):
    """msmtp ``set_to_header``."""

    OFF = "off"
    ON = "on"  # replace To/Cc/Bcc with one To: of the visible recipients
    UNDISCLOSED_RECIPIENTS = "undisclosed_recipients"  # To: undisclosed-recipients:;


UNDISCLOSED = "undisclosed-recipients:;"
# RFC 2047 §2: an encoded-word is at most 75 characters. "=?UTF-8?B?" + "?=" take 12,
# leaving 63 characters of base64, i.e. 45 octets of UTF-8 (a multiple of 3).
_ENCODED_WORD_OCTETS = 45


class HeaderSettings(NamedTuple):
    """What rewriting may do, in msmtp's terms; the sendmail command line fills it.

    ``full_name`` is ``-F`` and wins over ``from_full_name``. ``domain`` is msmtp's
    ``domain`` (also the EHLO name): Message-IDs use it unless it is ``localhost``.
    The caller's values are checked by ``rewrite_headers``, before any header is
    written (``check``): a NamedTuple has no constructor hook that ``_replace`` runs.
    """

    set_from_header: FromHeader = FromHeader.AUTO
    set_date_header: OptionalHeader = OptionalHeader.AUTO
    set_msgid_header: OptionalHeader = OptionalHeader.AUTO
    set_to_header: ToHeader = ToHeader.OFF
    remove_bcc_headers: bool = True
    from_full_name: str | None = None
    full_name: str | None = None
    domain: str = "localhost"

    def check(self) -> None:
        """Refuse a caller value that could not be written into a header safely.

        Raises:
            UnsafeValueError: CR, LF, NUL or another control character, or a domain
                that is not a host name (exit 64).
        """
        if self.from_full_name is not None:
            check_safe_value(self.from_full_name, what="from_full_name")
        if self.full_name is not None:
            check_safe_value(self.full_name, what="the full name (-F)")
        check_safe_value(self.domain, what="domain")
        if self.domain and not _is_domain(self.domain):
            raise UnsafeValueError(f"domain {self.domain!r} is not a host name")

    @property
    def display_name(self) -> str | None:
        return self.full_name if self.full_name is not None else self.from_full_name


def _is_domain(text: str) -> bool:
    allowed = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.")
    return all(c in allowed or not c.isascii() for c in text) and ".." not in text


def encode_display_name(name: str) -> str:
    """``name`` as a header phrase: quoted if ASCII, RFC 2047 base64 words if not."""
    check_safe_value(name, what="the display name")
    if name.isascii():
        return quote_phrase(name)
    words: list[bytes] = []
    current = b""
    for character in name:
        encoded = character.encode("utf-8", "surrogateescape")
        if len(current) + len(encoded) > _ENCODED_WORD_OCTETS:
            words.append(current)
            current = b""
        current += encoded
    words.append(current)
    return " ".join(
        "=?UTF-8?B?" + binascii.b2a_base64(word, newline=False).decode("ascii") + "?="
        for word in words
    )


_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def format_date(timestamp: float | None = None) -> str:
    """RFC 5322 §3.3 date in local time, with English names whatever the locale."""
    moment = time.localtime(timestamp)
    offset = moment.tm_gmtoff // 60
    sign = "+" if offset >= 0 else "-"
    hours, minutes = divmod(abs(offset), 60)
    return (
        f"{_DAYS[moment.tm_wday]}, {moment.tm_mday:02d} {_MONTHS[moment.tm_mon - 1]}"
        f" {moment.tm_year} {moment.tm_hour:02d}:{moment.tm_min:02d}:{moment.tm_sec:02d}"
        f" {sign}{hours:02d}{minutes:02d}"
    )


def make_message_id(domain: str) -> str:
    """``<time.random@domain>``: unique without hashing host details as msmtp does."""
    unique = f"{time.time_ns():x}.{os.urandom(10).hex()}"
    return f"<{unique}@{domain}>"


def _message_id_domain(settings: HeaderSettings, envelope_from: Address, host: str | None) -> str:
    if settings.domain and settings.domain != "localhost":
        return settings.domain
    if envelope_from.domain and not envelope_from.domain.startswith("["):
        return envelope_from.domain
    if host and _is_domain(host):
        return host
    return "localhost"


def _original_display_name(headers: HeaderBlock) -> str:
    value = headers.get("From")
    if value is None:
        return ""
    try:
        addresses = parse_address_list(value, source="From header", from_command_line=False)
    except AddressError:
        return ""
    return addresses[0].display_name if addresses else ""


def _mailbox(address: Address) -> str:
    if not address.display_name:
        return address.addr_spec
    return f"{encode_display_name(address.display_name)} <{address.addr_spec}>"


def _from_value(envelope_from: Address, name: str) -> str:
    if not name:
        return envelope_from.addr_spec
    return f"{encode_display_name(name)} <{envelope_from.addr_spec}>"


def rewrite_headers(
    headers: HeaderBlock,
    settings: HeaderSettings,
    *,
    envelope_from: Address,
    recipients: Recipients,
    line_ending: bytes = b"\n",
    host: str | None = None,
    now: float | None = None,
) -> HeaderBlock:
    """The header block to send, after Bcc removal and the additions ``settings`` ask.

    ``envelope_from`` is the resolved envelope sender (used for the From header and
    the Message-ID domain); ``recipients`` supply the To header for
    ``set_to_header``; ``host`` (the SMTP server) is the Message-ID domain of last
    resort, as in msmtp. ``now`` fixes the Date for tests.

    Raises:
        UnsafeValueError: a value of ``settings`` is unsafe in a header (see
            ``HeaderSettings.check``); nothing is rewritten.
    """
    settings.check()
    added: list[HeaderField] = []
    result = headers

    def add(name: str, value: str) -> None:
        added.append(HeaderField.build(name, value, line_ending=line_ending))

    if settings.set_from_header is FromHeader.ON and not envelope_from.is_null:
        name = settings.display_name
        if name is None:
            name = _original_display_name(headers)
        result = result.without("From")
        add("From", _from_value(envelope_from, name))
    elif (
        settings.set_from_header is FromHeader.AUTO
        and "From" not in headers
        and not envelope_from.is_null
    ):
        add("From", _from_value(envelope_from, settings.display_name or ""))

    if settings.set_to_header is not ToHeader.OFF:
        result = result.without("To", "Cc", "Bcc")
        visible = recipients.visible if settings.set_to_header is ToHeader.ON else ()
        add("To", ", ".join(_mailbox(a) for a in visible) if visible else UNDISCLOSED)

    if settings.set_date_header is OptionalHeader.AUTO and "Date" not in headers:
        add("Date", format_date(now))
    if settings.set_msgid_header is OptionalHeader.AUTO and "Message-ID" not in headers:
        add("Message-ID", make_message_id(_message_id_domain(settings, envelope_from, host)))

    if settings.remove_bcc_headers:
        result = result.without("Bcc", "Resent-Bcc")
    return result.prepend(added)
