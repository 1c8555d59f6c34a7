"""The SMTP command grammar (RFC 5321 §4.1), one module for both directions.

``format_command`` turns a command event into a line for the client core and
refuses anything that could change the meaning of the line: CR, LF, NUL and every
other control character, an address outside the RFC 5321 path syntax, a parameter
value with a space or ``=``. ``parse_command`` does the reverse for the server core
and reports problems as :class:`CommandSyntaxError` carrying the reply to send.
"""

from __future__ import annotations

import base64
import binascii
import functools
import re
from typing import Literal, cast

from mailhop.proto.errors import LocalProtocolError
from mailhop.proto.smtp.events import (
    Auth,
    AuthRequest,
    Data,
    Ehlo,
    Helo,
    MailFrom,
    Noop,
    OtherCommand,
    Quit,
    RcptTo,
    Reply,
    Rset,
    StartTLS,
)

# RFC 5321 §4.5.3.1.3: a path (address with its angle brackets) is at most 256
# octets, so the address itself at most 254.
MAX_ADDRESS_LENGTH = 254
# RFC 5321 §4.5.3.1.2: a domain name is at most 255 octets.
MAX_DOMAIN_LENGTH = 255
# RFC 4422 §3.1: a SASL mechanism name is 1 to 20 characters of [A-Z0-9-_].
_MECHANISM_NAME = re.compile(r"[A-Z0-9_-]{1,20}")

# --- RFC 5321 §4.1.2 Mailbox, with RFC 6531 §3.3 UTF-8 where SMTPUTF8 allows it ------
# Any non-ASCII character, allowed where SMTPUTF8 allows UTF-8. Written as its own
# negated class rather than a \u0080-\U0010ffff range inside each class: sre compiles
# such ranges slowly (about 5 ms each), and this module is imported by every sendmail.
_UTF8 = r"[^\x00-\x7f]"
_ATEXT = rf"(?:[A-Za-z0-9!#$%&'*+/=?^_`{{|}}~\-]|{_UTF8})"
_DOT_STRING = rf"{_ATEXT}+(?:\.{_ATEXT}+)*"
_QUOTED_STRING = rf'"(?:[\x20\x21\x23-\x5b\x5d-\x7e]|{_UTF8}|\\[\x20-\x7e])*"'
# Letters, digits, hyphens (RFC 5321 §4.1.2 sub-domain), plus "_" which real host
# names carry, and U-labels under SMTPUTF8.
_LABEL_END = rf"(?:[A-Za-z0-9_]|{_UTF8})"
_LABEL = rf"{_LABEL_END}(?:(?:[A-Za-z0-9_\-]|{_UTF8})*{_LABEL_END})?"
_DOMAIN = rf"{_LABEL}(?:\.{_LABEL})*"
_ADDRESS_LITERAL = r"\[[\x21-\x5a\x5e-\x7e]+\]"  # RFC 5321 §4.1.3, dcontent
_MAILBOX = rf"(?:{_DOT_STRING}|{_QUOTED_STRING})@(?:{_DOMAIN}|{_ADDRESS_LITERAL})"
MAILBOX = re.compile(_MAILBOX)
DOMAIN_OR_LITERAL = re.compile(rf"{_DOMAIN}|{_ADDRESS_LITERAL}")
# RFC 5321 §4.1.1.3: RCPT TO:<Postmaster> needs no domain.
_POSTMASTER = re.compile(r"postmaster", re.IGNORECASE)
# RFC 5321 §4.1.2: esmtp-keyword and esmtp-value (RFC 6531 §3.3 adds UTF-8).
_PARAM_KEYWORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]*")
_PARAM_VALUE = re.compile(rf"(?:[\x21-\x3c\x3e-\x7e]|{_UTF8})+")
# RFC 3461 §4: xtext = *( xchar / hexchar ); xchar is "!".."~" but "+" and "=".
_XTEXT = re.compile(r"(?:[\x21-\x2a\x2c-\x3c\x3e-\x7e]|\+[0-9A-F]{2})*")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_NOTIFY_WORDS = ("SUCCESS", "FAILURE", "DELAY")


# --- client: event -> line ----------------------------------------------------------


def format_command(
    command: object, *, smtputf8: bool = False, initial_response: bytes | None = None
) -> bytes:
    """The command line (with CRLF) for a command event; LocalProtocolError if unsafe.

    ``smtputf8``: the current transaction's MAIL had SMTPUTF8 (for RCPT addresses).
    """
    # The commands of every message first: a queue run formats thousands of them.
    if isinstance(command, MailFrom):
        return _line(f"MAIL FROM:<{_checked_address(command.address, command.smtputf8, True)}>"
                     + _mail_parameters(command))  # fmt: skip
    if isinstance(command, RcptTo):
        return _line(f"RCPT TO:<{_checked_address(command.address, smtputf8, False)}>"
                     + _rcpt_parameters(command))  # fmt: skip
    verb = _VERB_ONLY.get(type(command))
    if verb is not None:
        return _VERB_LINES[verb]
    if isinstance(command, Ehlo | Helo):
        verb = "EHLO" if isinstance(command, Ehlo) else "HELO"
        _check_domain(command.domain)
        return _line(f"{verb} {command.domain}")
    if isinstance(command, Auth):
        name = command.mechanism.name
        if initial_response is None:
            return _line(f"AUTH {name}")
        # RFC 4954 §4: an empty initial response is sent as "=".
        encoded = base64.b64encode(initial_response).decode("ascii") or "="
        return _line(f"AUTH {name} {encoded}")
    raise LocalProtocolError(f"not an SMTP command: {type(command).__name__}")


# Commands without arguments, and their lines (made once: DATA goes with every message).
_VERB_ONLY: dict[type, str] = {
    StartTLS: "STARTTLS", Data: "DATA", Rset: "RSET", Noop: "NOOP", Quit: "QUIT",
}  # fmt: skip
_VERB_LINES = {verb: verb.encode("ascii") + b"\r\n" for verb in _VERB_ONLY.values()}


def format_auth_response(response: bytes | None) -> bytes:
    """A line answering a 334 challenge; None cancels the exchange (RFC 4954 §4)."""
    if response is None:
        return b"*\r\n"
    return base64.b64encode(response) + b"\r\n"


def _line(text: str) -> bytes:
    # The last line of defence: whatever was validated above, no control
    # character may reach the wire inside a command (security.md B1).
    if _CONTROL.search(text):
        raise LocalProtocolError("control character in SMTP command argument")
    return text.encode("utf-8") + b"\r\n"


def _check_domain(domain: str) -> None:
    if len(domain.encode("utf-8")) > MAX_DOMAIN_LENGTH or not DOMAIN_OR_LITERAL.fullmatch(domain):
        raise LocalProtocolError(f"not a valid EHLO/HELO domain: {domain!r}")


def _checked_address(address: str, smtputf8: bool, null_allowed: bool) -> str:
    if address == "" and null_allowed:
        return address
    if _CONTROL.search(address):
        raise LocalProtocolError("control character (CR, LF, NUL, ...) in address")
    if len(address.encode("utf-8")) > MAX_ADDRESS_LENGTH:
        raise LocalProtocolError("address longer than RFC 5321 §4.5.3.1.3 allows")
    if not (MAILBOX.fullmatch(address) or (not null_allowed and _POSTMASTER.fullmatch(address))):
        raise LocalProtocolError(f"not a valid RFC 5321 address: {address!r}")
    if not smtputf8 and not address.isascii():
        raise LocalProtocolError("a non-ASCII address needs SMTPUTF8 (RFC 6531)")
    return address


def _parameter(keyword: str, value: str | None) -> str:
    if not _PARAM_KEYWORD.fullmatch(keyword):
        raise LocalProtocolError(f"not a valid ESMTP parameter keyword: {keyword!r}")
    if value is None:
        return f" {keyword}"
    if not _PARAM_VALUE.fullmatch(value):
        raise LocalProtocolError(f"not a valid ESMTP parameter value for {keyword}")
    return f" {keyword}={value}"


def _mail_parameters(command: MailFrom) -> str:
    out = ""
    if command.size is not None:
        if command.size < 0:
            raise LocalProtocolError("SIZE must not be negative")
        out += _parameter("SIZE", str(command.size))
    if command.body is not None:
        _check_choice("BODY", command.body, ("7BIT", "8BITMIME"))
        out += _parameter("BODY", command.body)
    if command.smtputf8:
        out += _parameter("SMTPUTF8", None)
    if command.ret is not None:
        _check_choice("RET", command.ret, ("FULL", "HDRS"))
        out += _parameter("RET", command.ret)
    if command.envid is not None:
        out += _parameter("ENVID", xtext_encode(command.envid))
    for keyword, value in command.parameters:
        out += _parameter(keyword, value)
    return out


def _check_choice(keyword: str, value: str, allowed: tuple[str, ...]) -> None:
    # The Literal types say so, but callers need not run mypy.
    if value not in allowed:
        raise LocalProtocolError(f"{keyword}={value!r} is not one of {', '.join(allowed)}")


def _rcpt_parameters(command: RcptTo) -> str:
    out = ""
    if command.notify:
        # RFC 3461 §4.1: NEVER alone, or any of SUCCESS, FAILURE, DELAY.
        if "NEVER" in command.notify and len(command.notify) > 1:
            raise LocalProtocolError("NOTIFY=NEVER cannot be combined with other values")
        for word in command.notify:
            _check_choice("NOTIFY", word, ("NEVER", *_NOTIFY_WORDS))
        out += _parameter("NOTIFY", ",".join(command.notify))
    if command.orcpt is not None:
        if not command.orcpt.isascii():
            raise LocalProtocolError("a non-ASCII ORCPT (RFC 6533) is not supported")
        out += _parameter("ORCPT", "rfc822;" + xtext_encode(command.orcpt))
    for keyword, value in command.parameters:
        out += _parameter(keyword, value)
    return out


def xtext_encode(text: str) -> str:
    """RFC 3461 §4 xtext: octets outside "!".."~", and "+" and "=", become "+XX"."""
    return "".join(
        chr(octet) if 0x21 <= octet <= 0x7E and octet not in b"+=" else f"+{octet:02X}"
        for octet in text.encode("utf-8")
    )


def xtext_decode(text: str) -> str | None:
    """The inverse of :func:`xtext_encode`; None if ``text`` is not xtext."""
    if not _XTEXT.fullmatch(text):
        return None
    raw = re.sub(r"\+([0-9A-F]{2})", lambda m: chr(int(m[1], 16)), text)
    try:
        return raw.encode("latin-1").decode("utf-8")
    except UnicodeDecodeError:
        return None


# --- server: line -> event ----------------------------------------------------------


class CommandSyntaxError(Exception):
    """The server core answers this command with ``reply`` itself."""

    def __init__(self, *, verb: str, reply: Reply) -> None:
        super().__init__(verb, reply.code)
        self.verb = verb
        self.reply = reply


def _reject(verb: str, code: int, status: str, text: str) -> CommandSyntaxError:
    return CommandSyntaxError(
        verb=verb, reply=Reply(code=code, enhanced_status=status, lines=(text,))
    )


@functools.cache
def _path() -> re.Pattern[str]:
    """RFC 5321 §4.1.2 Path, with the obsolete source route accepted and ignored as
    §4.1.1.3 and Appendix C ask; then the parameters.

    Compiled on first use: only the server parses paths, and this is the largest
    pattern here (~2 ms), which every client process would otherwise compile.
    """
    return re.compile(
        rf"<(?:@[^,:<>\s]+(?:,@[^,:<>\s]+)*:)?(?P<address>{_MAILBOX}|postmaster|)>"
        r"(?P<params>(?: +\S+)*) *",
        re.IGNORECASE,
    )


ParsedCommand = (
    Ehlo | Helo | StartTLS | AuthRequest | MailFrom | RcptTo | Data | Rset | Noop | Quit
    | OtherCommand
)  # fmt: skip


def command_verb(line: str) -> str:
    """The upper-cased verb of a command line (for length caps and sequencing)."""
    return line.split(" ", 1)[0].upper()


def parse_command(line: str) -> ParsedCommand:
    """Parse one command line without its CRLF; CommandSyntaxError if malformed."""
    verb, _, argument = line.partition(" ")
    verb = verb.upper()
    if _CONTROL.search(line):
        raise _reject(verb, 500, "5.5.2", "Control character in command")
    if verb in ("EHLO", "HELO"):
        domain = argument.strip()
        if not domain or " " in domain:
            raise _reject(verb, 501, "5.5.4", f"Syntax: {verb} hostname")
        return Ehlo(domain=domain) if verb == "EHLO" else Helo(domain=domain)
    if verb in ("MAIL", "RCPT"):
        return _parse_mail_or_rcpt(verb, argument)
    if verb == "AUTH":
        return _parse_auth(argument)
    if verb in ("STARTTLS", "DATA", "RSET", "QUIT"):
        if argument.strip():
            raise _reject(verb, 501, "5.5.4", f"Syntax: {verb} (no parameters)")
        simple: dict[str, ParsedCommand] = {
            "STARTTLS": StartTLS(), "DATA": Data(), "RSET": Rset(), "QUIT": Quit()
        }  # fmt: skip
        return simple[verb]
    if verb == "NOOP":  # RFC 5321 §4.1.1.9: a parameter is allowed and ignored
        return Noop()
    if verb in ("VRFY", "EXPN", "HELP"):
        return OtherCommand(verb=verb, argument=argument)
    raise _reject(verb[:20], 500, "5.5.2", "Command not recognized")


def _parse_auth(argument: str) -> AuthRequest:
    mechanism, _, initial = argument.strip().partition(" ")
    mechanism = mechanism.upper()
    if not _MECHANISM_NAME.fullmatch(mechanism) or " " in initial:
        raise _reject("AUTH", 501, "5.5.4", "Syntax: AUTH mechanism [initial-response]")
    if initial == "":
        return AuthRequest(mechanism=mechanism)
    decoded = decode_base64(initial)
    if decoded is None:
        raise _reject("AUTH", 501, "5.5.2", "Invalid base64 data")
    return AuthRequest(mechanism=mechanism, initial_response=decoded)


def decode_base64(text: str) -> bytes | None:
    """Strict base64 as RFC 4954 §4 sends it; ``=`` alone is the empty string."""
    if text == "=":
        return b""
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        return None


def _parse_mail_or_rcpt(verb: str, argument: str) -> MailFrom | RcptTo:
    prefix = "FROM:" if verb == "MAIL" else "TO:"
    syntax = _reject(verb, 501, "5.5.4", f"Syntax: {verb} {prefix}<address> [parameters]")
    if not argument[: len(prefix)].upper() == prefix:
        raise syntax
    # Many clients put a space after the colon; RFC 5321 does not, Postfix accepts it.
    match = _path().fullmatch(argument[len(prefix) :].lstrip(" "))
    if match is None:
        raise syntax
    address = match["address"]
    if (address.lower() == "postmaster" and verb == "MAIL") or (address == "" and verb == "RCPT"):
        raise syntax
    if len(address.encode("utf-8")) > MAX_ADDRESS_LENGTH:
        raise _reject(verb, 501, "5.1.3", "Address too long")
    parameters = _parse_parameters(verb, match["params"].split())
    if verb == "MAIL":
        return _mail_from(address, parameters)
    return _rcpt_to(address, parameters)


def _parse_parameters(verb: str, words: list[str]) -> dict[str, str | None]:
    parameters: dict[str, str | None] = {}
    for word in words:
        keyword, equals, value = word.partition("=")
        keyword = keyword.upper()
        if not _PARAM_KEYWORD.fullmatch(keyword) or (equals and not _PARAM_VALUE.fullmatch(value)):
            raise _reject(verb, 501, "5.5.4", "Malformed parameter")
        if keyword in parameters:
            raise _reject(verb, 501, "5.5.4", f"Duplicate parameter {keyword}")
        parameters[keyword] = value if equals else None
    return parameters


def _mail_from(address: str, parameters: dict[str, str | None]) -> MailFrom:
    bad = _reject("MAIL", 501, "5.5.4", "Invalid parameter value")
    size = None
    if "SIZE" in parameters:
        value = parameters.pop("SIZE")
        if value is None or not value.isdigit() or not value.isascii() or len(value) > 20:
            raise bad
        size = int(value)
    body = parameters.pop("BODY", None)
    if body is not None:
        body = body.upper()
        if body not in ("7BIT", "8BITMIME"):
            raise _reject("MAIL", 555, "5.5.4", "Unsupported BODY type")
    smtputf8 = "SMTPUTF8" in parameters
    if smtputf8 and parameters.pop("SMTPUTF8") is not None:
        raise bad
    ret = parameters.pop("RET", None)
    if ret is not None:
        ret = ret.upper()
        if ret not in ("FULL", "HDRS"):
            raise bad
    envid = None
    if "ENVID" in parameters:
        raw = parameters.pop("ENVID")
        envid = xtext_decode(raw or "")
        if envid is None or raw is None:
            raise bad
    if not smtputf8 and not address.isascii():
        # RFC 6531 §3.4: a non-ASCII address needs the SMTPUTF8 parameter.
        raise _reject("MAIL", 553, "5.6.7", "Non-ASCII address requires SMTPUTF8")
    return MailFrom(
        address=address,
        size=size,
        body=cast(Literal["7BIT", "8BITMIME"] | None, body),
        smtputf8=smtputf8,
        ret=cast(Literal["FULL", "HDRS"] | None, ret),
        envid=envid,
        parameters=tuple(parameters.items()),
    )


def _rcpt_to(address: str, parameters: dict[str, str | None]) -> RcptTo:
    bad = _reject("RCPT", 501, "5.5.4", "Invalid parameter value")
    notify: tuple[str, ...] = ()
    if "NOTIFY" in parameters:
        raw = parameters.pop("NOTIFY")
        notify = tuple((raw or "").upper().split(","))
        valid = notify == ("NEVER",) or (
            all(word in _NOTIFY_WORDS for word in notify) and len(set(notify)) == len(notify)
        )
        if not valid:
            raise bad
    orcpt = None
    if "ORCPT" in parameters:
        kind, _, encoded = (parameters.pop("ORCPT") or "").partition(";")
        orcpt = xtext_decode(encoded)
        if kind.lower() != "rfc822" or orcpt is None:
            raise bad
    return RcptTo(
        address=address,
        notify=cast(tuple[Literal["NEVER", "SUCCESS", "FAILURE", "DELAY"], ...], notify),
        orcpt=orcpt,
        parameters=tuple(parameters.items()),
    )
