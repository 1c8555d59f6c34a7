"""The msmtprc grammar and the table of every configuration command.

The grammar is msmtp's (``src/conf.c``), so an existing ``~/.msmtprc`` means the
same thing to mailhop:

* one ``command [argument]`` per line, at most ``MAX_LINE_BYTES``; LF or CRLF;
* a comment is a whole line whose first non-blank character is ``#``;
* the argument is the rest of the line without surrounding blanks; a ``"..."``
  argument loses its quotes (there are no escapes);
* ``defaults`` starts the defaults record: it changes later accounts of the same file;
* ``account NAME [: PARENT,...]`` starts an account as a copy of the defaults, then
  each parent's explicitly set values in order; a command before any account line
  creates the account ``default``;
* on/off commands take ``on``, ``off`` (case-sensitive) or nothing (= on);
* ``eval CMD`` replaces its line with the first line CMD prints.

``COMMANDS`` is the one table of settings: adding a mailhop setting (``queue`` ...)
means one row here and one field in ``model.Account``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from mailhop._records import NamedTuple
from mailhop.config import _commands
from mailhop.config.environment import Environment
from mailhop.config.errors import ConfigSyntaxError
from mailhop.config.model import (
    DEFAULT_SYSLOG_FACILITY,
    Account,
    Auth,
    DsnReturn,
    HeaderPolicy,
    Protocol,
    QueueMode,
    ToHeader,
)

# msmtp reads lines into a 501-byte buffer: a line with its newline may hold
# 500 bytes, longer lines are an error ("line longer than 500 characters").
MAX_LINE_BYTES = 500
# A configuration file is a few kilobytes; the cap keeps ``-C /dev/zero`` from
# eating memory.
MAX_FILE_BYTES = 1024 * 1024
# Blanks as msmtp knows them (space and tab only).
BLANKS = " \t"


class InvalidArgument(ValueError):
    """Raised by a converter: the reason, without file and line."""


class Command(NamedTuple):
    """One configuration command: the field it sets and how its argument converts.

    ``field`` None: accepted for compatibility and ignored. ``switch``: an on/off-like
    command, where an empty argument means on (also on the command line, where an
    empty value of any other command means "back to the default").
    """

    field: str | None
    convert: Callable[[str, Environment], object]
    switch: bool = False
    secret: bool = False  # the file now contains a password (secrets check)


def _needs_argument(argument: str) -> None:
    if argument == "":
        raise InvalidArgument("needs an argument")


def _text_or_unset(argument: str, _environment: Environment) -> str | None:
    return argument or None


def _text(argument: str, _environment: Environment) -> str:
    return argument


def _required_text(argument: str, _environment: Environment) -> str:
    _needs_argument(argument)
    return argument


def _file_or_unset(argument: str, environment: Environment) -> str | None:
    return environment.expand_tilde(argument) if argument else None


def _on_off(argument: str, _environment: Environment) -> bool:
    if argument in ("", "on"):
        return True
    if argument == "off":
        return False
    raise InvalidArgument("expected on or off")


def _off_on(argument: str, environment: Environment) -> bool:
    return not _on_off(argument, environment)


def _no_argument(value: object) -> Callable[[str, Environment], object]:
    def convert(argument: str, _environment: Environment) -> object:
        if argument:
            raise InvalidArgument("does not take an argument")
        return value

    return convert


def _positive_integer(argument: str) -> int:
    if not argument.isascii() or not argument.isdigit() or int(argument) < 1:
        raise InvalidArgument("expected a positive number")
    return int(argument)


def _port(argument: str, _environment: Environment) -> int:
    _needs_argument(argument)
    if not argument.isascii() or not argument.isdigit() or not 1 <= int(argument) <= 65535:
        raise InvalidArgument("a port is a number from 1 to 65535")
    return int(argument)


def _port_or_unset(argument: str, environment: Environment) -> int | None:
    return _port(argument, environment) if argument else None


def _timeout(argument: str, _environment: Environment) -> int | None:
    _needs_argument(argument)
    if argument == "off":
        return None
    try:
        return _positive_integer(argument)
    except InvalidArgument:
        raise InvalidArgument("expected off or a number of seconds") from None


def _positive_or_unset(argument: str, _environment: Environment) -> int | None:
    return _positive_integer(argument) if argument else None


def _protocol(argument: str, _environment: Environment) -> Protocol:
    _needs_argument(argument)
    try:
        return Protocol(argument)
    except ValueError:
        raise InvalidArgument("expected smtp, lmtp, pop3 or imap") from None


def _auth(argument: str, _environment: Environment) -> Auth:
    if argument == "":
        return Auth.CHOOSE
    try:
        return Auth(argument)
    except ValueError:
        methods = " ".join(method.value for method in Auth)
        raise InvalidArgument(f"expected one of: {methods}") from None


def _header_policy(*allowed: HeaderPolicy) -> Callable[[str, Environment], HeaderPolicy]:
    def convert(argument: str, _environment: Environment) -> HeaderPolicy:
        if argument == "":
            return HeaderPolicy.AUTO
        for policy in allowed:
            if argument == policy.value:
                return policy
        raise InvalidArgument("expected " + " or ".join(policy.value for policy in allowed))

    return convert


def _legacy_add_missing(argument: str, environment: Environment) -> HeaderPolicy:
    """``add_missing_*_header on|off``: the pre-1.8.8 spelling of ``auto``/``off``."""
    return HeaderPolicy.AUTO if _on_off(argument, environment) else HeaderPolicy.OFF


def _set_to_header(argument: str, _environment: Environment) -> ToHeader:
    if argument == "":
        return ToHeader.ON
    try:
        return ToHeader(argument)
    except ValueError:
        raise InvalidArgument("expected on, off or undisclosed_recipients") from None


def _undisclosed_recipients(argument: str, environment: Environment) -> ToHeader:
    return ToHeader.UNDISCLOSED_RECIPIENTS if _on_off(argument, environment) else ToHeader.OFF


DSN_NOTIFY_CONDITIONS = ("failure", "delay", "success")


def _dsn_notify(argument: str, _environment: Environment) -> str | None:
    _needs_argument(argument)
    if argument == "off":
        return None
    if argument == "never":
        return "NEVER"
    conditions = argument.split(",")
    if any(c not in DSN_NOTIFY_CONDITIONS for c in conditions) or len(set(conditions)) != len(
        conditions
    ):
        raise InvalidArgument("expected off, never, or a list of failure,delay,success")
    return ",".join(condition.upper() for condition in conditions)


def _dsn_return(argument: str, _environment: Environment) -> DsnReturn | None:
    _needs_argument(argument)
    values = {"off": None, "headers": DsnReturn.HEADERS, "full": DsnReturn.FULL}
    if argument not in values:
        raise InvalidArgument("expected off, headers or full")
    return values[argument]


SYSLOG_FACILITIES = frozenset({"LOG_USER", "LOG_MAIL", *(f"LOG_LOCAL{n}" for n in range(8))})


def _syslog(argument: str, _environment: Environment) -> str | None:
    if argument in ("", "on"):
        return DEFAULT_SYSLOG_FACILITY
    if argument == "off":
        return None
    if argument not in SYSLOG_FACILITIES:
        raise InvalidArgument("expected on, off, LOG_USER, LOG_MAIL or LOG_LOCAL0..7")
    return argument


# Fingerprint digest lengths msmtp accepts: SHA-256, SHA-1, MD5.
FINGERPRINT_DIGEST_SIZES = (32, 20, 16)


def _fingerprint(argument: str, _environment: Environment) -> bytes | None:
    if argument == "":
        return None
    for size in FINGERPRINT_DIGEST_SIZES:
        if len(argument) != 3 * size - 1:
            continue
        pairs = [argument[index : index + 2] for index in range(0, len(argument), 3)]
        separators = {argument[index] for index in range(2, len(argument), 3)}
        if separators <= {":", " "} and all(_is_hex(pair) for pair in pairs):
            return bytes.fromhex("".join(pairs))
    raise InvalidArgument(
        "expected a SHA-256 fingerprint as 32 hex pairs separated by colons (AB:CD:...)"
    )


def _is_hex(pair: str) -> bool:
    return len(pair) == 2 and all(character in "0123456789abcdefABCDEF" for character in pair)


def _queue_mode(argument: str, _environment: Environment) -> QueueMode:
    try:
        return QueueMode(argument)
    except ValueError:
        raise InvalidArgument("expected off, fallback or always") from None


# Unit suffixes a queue duration may carry (``30s``, ``5m``, ``4h``, ``5d``).
_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def _duration(argument: str, _environment: Environment) -> int:
    number, unit = argument, "s"
    if argument[-1:] in _DURATION_UNITS:
        number, unit = argument[:-1], argument[-1]
    try:
        return _positive_integer(number) * _DURATION_UNITS[unit]
    except InvalidArgument:
        raise InvalidArgument("expected a duration such as 30s, 5m, 4h or 5d") from None


def _duration_or_off(argument: str, environment: Environment) -> int:
    """A duration, or ``off`` (0) for a feature that is off by default."""
    if argument == "off":
        return 0
    try:
        return _duration(argument, environment)
    except InvalidArgument:
        raise InvalidArgument("expected a duration such as 4h or 1d, or off") from None


def _folders(argument: str, _environment: Environment) -> tuple[str, ...]:
    """``folders INBOX, Lists/mailhop``: comma-separated IMAP folder names."""
    folders = tuple(name.strip() for name in argument.split(","))
    if not argument or not all(folders):
        raise InvalidArgument("expected folder names separated by commas")
    return folders


# ``delivery KIND:TARGET`` of a retrieval account.
DELIVERY_KINDS = ("maildir", "mbox", "mda", "local")


def _delivery(argument: str, _environment: Environment) -> str:
    kind, colon, target = argument.partition(":")
    if not colon or kind not in DELIVERY_KINDS or not target.strip():
        raise InvalidArgument("expected maildir:PATH, mbox:PATH, mda:COMMAND or local:USER")
    return argument


def _ignored(_argument: str, _environment: Environment) -> None:
    return None


def _domain_list(argument: str, _environment: Environment) -> tuple[str, ...]:
    """``local_domains a.example, b.example``: commas or blanks separate names."""
    names = tuple(name for name in argument.replace(",", " ").split() if name)
    for name in names:
        if not all(c.isalnum() or c in "-._" for c in name):
            raise InvalidArgument(f"{name!r} is not a domain name")
    return names


LOCAL_MAILBOXES = ("auto", "mbox", "maildir")


def _local_mailbox(argument: str, _environment: Environment) -> str:
    if argument not in LOCAL_MAILBOXES:
        raise InvalidArgument("expected auto, mbox or maildir")
    return argument


# Every setting command, msmtp's and mailhop's. Grammar commands (``defaults``,
# ``account``, ``eval``) are handled by the parser itself.
COMMANDS: Mapping[str, Command] = {
    # connection
    "host": Command("host", _required_text),
    "port": Command("port", _port),
    "source_ip": Command("source_ip", _text_or_unset),
    "proxy_host": Command("proxy_host", _text_or_unset),
    "proxy_port": Command("proxy_port", _port_or_unset),
    "socket": Command("socket", _text_or_unset),
    "timeout": Command("timeout", _timeout),
    "connect_timeout": Command("timeout", _timeout),  # obsolete alias (<= 1.4.1)
    "protocol": Command("protocol", _protocol),
    "domain": Command("domain", _text),
    # authentication
    "auth": Command("auth", _auth, switch=True),
    "user": Command("user", _text_or_unset),
    "password": Command("password", _text_or_unset, secret=True),
    "passwordeval": Command("passwordeval", _text_or_unset),
    "ntlmdomain": Command("ntlmdomain", _text_or_unset),  # obsolete
    "allow_plaintext_auth": Command("allow_plaintext_auth", _on_off, switch=True),  # mailhop
    # TLS
    "tls": Command("tls", _on_off, switch=True),
    "tls_starttls": Command("tls_starttls", _on_off, switch=True),
    "tls_nostarttls": Command("tls_starttls", _no_argument(False)),  # obsolete (1.2)
    "tls_trust_file": Command("tls_trust_file", _file_or_unset),
    "tls_crl_file": Command("tls_crl_file", _file_or_unset),  # deprecated
    "tls_fingerprint": Command("tls_fingerprint", _fingerprint),
    "tls_key_file": Command("tls_key_file", _file_or_unset),
    "tls_cert_file": Command("tls_cert_file", _file_or_unset),
    "tls_certcheck": Command("tls_certcheck", _on_off, switch=True),
    "tls_nocertcheck": Command("tls_certcheck", _no_argument(False)),  # obsolete (1.2)
    "tls_min_dh_prime_bits": Command("tls_min_dh_prime_bits", _positive_or_unset),  # deprecated
    "tls_priorities": Command("tls_priorities", _text_or_unset),
    "tls_host_override": Command("tls_host_override", _text_or_unset),
    "tls_force_sslv3": Command(None, _ignored),  # obsolete, ignored (<= 1.4.32)
    # envelope and headers
    "from": Command("from_address", _text),
    "from_full_name": Command("from_full_name", _text),
    "allow_from_override": Command("allow_from_override", _on_off, switch=True),
    "auto_from": Command("auto_from", _on_off, switch=True),  # obsolete (<= 1.8.7)
    "maildomain": Command("maildomain", _text),  # obsolete (<= 1.8.7)
    "set_from_header": Command(
        "set_from_header",
        _header_policy(HeaderPolicy.AUTO, HeaderPolicy.ON, HeaderPolicy.OFF),
        switch=True,
    ),
    "set_date_header": Command(
        "set_date_header", _header_policy(HeaderPolicy.AUTO, HeaderPolicy.OFF), switch=True
    ),
    "set_msgid_header": Command(
        "set_msgid_header", _header_policy(HeaderPolicy.AUTO, HeaderPolicy.OFF), switch=True
    ),
    "add_missing_from_header": Command("set_from_header", _legacy_add_missing, switch=True),
    "add_missing_date_header": Command("set_date_header", _legacy_add_missing, switch=True),
    "set_to_header": Command("set_to_header", _set_to_header, switch=True),
    "undisclosed_recipients": Command("set_to_header", _undisclosed_recipients, switch=True),
    "remove_bcc_headers": Command("remove_bcc_headers", _on_off, switch=True),
    "keepbcc": Command("remove_bcc_headers", _off_on, switch=True),  # obsolete (1.4)
    # delivery status notifications
    "dsn_notify": Command("dsn_notify", _dsn_notify),
    "dsn_return": Command("dsn_return", _dsn_return),
    # logging and aliases
    "logfile": Command("logfile", _file_or_unset),
    "logfile_time_format": Command("logfile_time_format", _text_or_unset),
    "syslog": Command("syslog", _syslog, switch=True),
    "aliases": Command("aliases", _file_or_unset),
    # the durable queue (mailhop)
    "queue": Command("queue", _queue_mode),
    "queue_dir": Command("queue_dir", _file_or_unset),
    "queue_retry_min": Command("queue_retry_min", _duration),
    "queue_retry_max": Command("queue_retry_max", _duration),
    "queue_lifetime": Command("queue_lifetime", _duration),
    "queue_delay_warning": Command("queue_delay_warning", _duration_or_off),
    # OAuth2 token endpoints and client (mailhop, issue #9)
    "oauth_token_endpoint": Command("oauth_token_endpoint", _text_or_unset),
    "oauth_device_endpoint": Command("oauth_device_endpoint", _text_or_unset),
    "oauth_authorize_endpoint": Command("oauth_authorize_endpoint", _text_or_unset),
    "oauth_client_id": Command("oauth_client_id", _text_or_unset),
    "oauth_client_secret": Command("oauth_client_secret", _text_or_unset, secret=True),
    "oauth_scope": Command("oauth_scope", _text_or_unset),
    # local delivery and system mail (mailhop, issue #5)
    "local_domains": Command("local_domains", _domain_list),
    "system_aliases": Command("system_aliases", _file_or_unset),
    "mail_spool": Command("mail_spool", _required_text),
    "local_mailbox": Command("local_mailbox", _local_mailbox),
    "rewrite_from": Command("rewrite_from", _on_off, switch=True),
    "qualify_recipients": Command("qualify_recipients", _on_off, switch=True),
    # retrieval accounts (mailhop fetch)
    "folders": Command("folders", _folders),
    "keep": Command("keep", _on_off, switch=True),
    "delivery": Command("delivery", _delivery),
}


def convert(command: str, argument: str, environment: Environment) -> tuple[str | None, object]:
    """Convert one ``command argument`` pair to ``(field, value)``.

    Raises:
        KeyError: unknown command.
        InvalidArgument: the argument is wrong (the reason says why).
    """
    entry = COMMANDS[command]
    return entry.field, entry.convert(argument, environment)


class ParsedFile(NamedTuple):
    """The accounts of one file, in order, and whether it holds a password."""

    path: str
    accounts: tuple[Account, ...]
    contains_secrets: bool


class _Draft:
    """An account being built: values and the explicitly set fields."""

    __slots__ = ("explicit", "line", "name", "values")

    def __init__(self, name: str, line: int, values: dict[str, object], explicit: set[str]) -> None:
        self.name = name
        self.line = line
        self.values = values
        self.explicit = explicit

    def build(self, path: str) -> Account:
        return Account(
            name=self.name,
            file=path,
            line=self.line,
            explicit=frozenset(self.explicit),
            **self.values,  # type: ignore[arg-type]
        )


def split_line(line: str) -> tuple[str, str] | None:
    """``(command, argument)`` of a line, or None for a blank or comment line."""
    stripped = line.lstrip(BLANKS)
    if stripped == "" or stripped.startswith("#"):
        return None
    end = 0
    while end < len(stripped) and stripped[end] not in BLANKS:
        end += 1
    argument = stripped[end:].strip(BLANKS)
    if len(argument) >= 2 and argument.startswith('"') and argument.endswith('"'):
        argument = argument[1:-1]
    return stripped[:end], argument


def parse(
    data: bytes,
    path: str,
    environment: Environment,
    *,
    eval_timeout: float = _commands.DEFAULT_EVAL_TIMEOUT_SECONDS,
) -> ParsedFile:
    """Parse the bytes of configuration file ``path`` into its accounts.

    Raises:
        ConfigSyntaxError: a line is too long, not UTF-8, or wrong (file and line named).
        CommandFailedError: an ``eval`` command failed.
    """
    defaults: dict[str, object] = {}
    drafts: list[_Draft] = []
    by_name: dict[str, _Draft] = {}
    current: _Draft | None = None  # None: before any account; `defaults` is separate
    in_defaults = False
    contains_secrets = False

    def fail(number: int, reason: str) -> ConfigSyntaxError:
        return ConfigSyntaxError(path, number, reason)

    raw_lines = data.split(b"\n")
    if raw_lines and raw_lines[-1] == b"":
        raw_lines.pop()
    for number, raw in enumerate(raw_lines, start=1):
        if len(raw) >= MAX_LINE_BYTES:
            raise fail(number, f"line longer than {MAX_LINE_BYTES} characters")
        content = raw.removesuffix(b"\r")
        if b"\0" in content:
            raise fail(number, "line contains a NUL byte")
        try:
            text = content.decode("utf-8")
        except UnicodeDecodeError:
            raise fail(number, "line is not valid UTF-8") from None
        split = split_line(text)
        if split is None:
            continue
        command, argument = split
        from_eval = False
        if command == "eval":
            if argument == "":
                raise fail(number, "command eval needs an argument")
            output = _commands.first_line(
                argument,
                use_shell=True,
                timeout=eval_timeout,
                what=f"{path}: line {number}: eval",
            )
            split = split_line(output)
            if split is None:
                continue
            command, argument = split
            from_eval = True
            if command == "eval":
                raise fail(number, "the output of eval must not be another eval command")

        if current is None and not in_defaults and command not in ("account", "defaults"):
            # msmtp 1.2 compatibility: commands before any account line belong to
            # an account named "default".
            current = _Draft("default", number, dict(defaults), set())
            drafts.append(current)
            by_name["default"] = current

        if command == "defaults":
            if argument:
                raise fail(number, "command defaults does not take an argument")
            in_defaults = True
            current = None
            continue
        if command == "account":
            current = _start_account(argument, number, defaults, by_name, fail)
            in_defaults = False
            drafts.append(current)
            by_name[current.name] = current
            continue

        entry = COMMANDS.get(command)
        if entry is None:
            raise fail(number, f"unknown command {command}")
        try:
            value = entry.convert(argument, environment)
        except InvalidArgument as error:
            if str(error) in ("needs an argument", "does not take an argument"):
                raise fail(number, f"command {command} {error}") from None
            raise fail(
                number, f"invalid argument {argument} for command {command}: {error}"
            ) from None
        if entry.secret and value is not None and not from_eval:
            contains_secrets = True
        if entry.field is None:
            continue
        if in_defaults:
            defaults[entry.field] = value
        elif current is not None:  # always true: the implicit "default" was created above
            current.values[entry.field] = value
            current.explicit.add(entry.field)

    accounts = tuple(draft.build(path) for draft in drafts)
    return ParsedFile(path=path, accounts=accounts, contains_secrets=contains_secrets)


def _start_account(
    argument: str,
    number: int,
    defaults: dict[str, object],
    by_name: dict[str, _Draft],
    fail: Callable[[int, str], ConfigSyntaxError],
) -> _Draft:
    name_part, colon, parents_part = argument.partition(":")
    name = name_part.strip(BLANKS)
    parents: list[_Draft] = []
    if colon:
        for listed in parents_part.split(","):
            parent_name = listed.strip(BLANKS)
            if parent_name == "":
                raise fail(number, "missing account name")
            parent = by_name.get(parent_name)
            if parent is None:
                raise fail(number, f"account {parent_name} not (yet) defined")
            parents.append(parent)
    if name == "":
        raise fail(number, "missing account name")
    if "," in name:
        raise fail(number, "an account name must not contain colons or commas")
    if name in by_name:
        raise fail(number, f"account {name} was already defined")
    draft = _Draft(name, number, dict(defaults), set())
    for parent in parents:
        for field in parent.explicit:
            draft.values[field] = parent.values[field]
        draft.explicit |= parent.explicit
    return draft
