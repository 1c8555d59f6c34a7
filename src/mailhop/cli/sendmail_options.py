"""The sendmail command line, as msmtp and Postfix's sendmail accept it.

Callers pass a zoo of flags: cron ``-FCronDaemon -i -B8BITMIME -oem -oi -t``,
mailx ``-i -t -f X``, mutt ``-oem -oi -- a b``, git send-email ``-i a b``, PHP
``-t -i``. This module turns that argv into one frozen ``SendmailOptions`` and does
nothing else, so the rules live in one table-like place and are testable alone.

Parsing follows GNU getopt as msmtp and Postfix use it on Linux: options may follow
recipients (argv is permuted), short options may be bundled (``-ti``) or carry
their argument attached (``-oi``, ``-B8BITMIME``, ``-FCronDaemon``), and ``--``
ends the options.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Sequence

from mailhop._records import NamedTuple
from mailhop.errors import UsageError


class Mode(enum.Enum):
    """What the invocation asks for."""

    SEND = "send"  # read a message on stdin and send it (the default, and -bm)
    PRETEND = "pretend"  # -P/--pretend: print the resolved account and exit
    SERVERINFO = "serverinfo"  # -S/--serverinfo: print what the server offers
    SMTP_ON_STDIO = "smtp-on-stdio"  # -bs: speak SMTP on stdin/stdout
    LIST_QUEUE = "list-queue"  # -bp, or the program called as mailq
    RUN_QUEUE = "run-queue"  # -q
    REBUILD_ALIASES = "rebuild-aliases"  # -bi, -I, or the program called as newaliases
    VERSION = "version"  # --version, -d0.1 and the like
    HELP = "help"  # --help


class SendmailOptions(NamedTuple):
    """Everything the sendmail command line said, before any configuration is read."""

    mode: Mode = Mode.SEND
    recipients: tuple[str, ...] = ()
    read_recipients: bool = False  # -t: add To/Cc/Bcc of the message
    envelope_from: str | None = None  # -f / -r / --from
    read_envelope_from: bool = False  # --read-envelope-from
    full_name: str | None = None  # -F
    verbose: bool = False  # -v, -d, --debug
    config_file: str | None = None  # -C / --file
    account: str | None = None  # -a / --account
    # Settings given as options, in the configuration file's terms, in order:
    # ("port", "587"), ("tls", "") ... Applied to the chosen account the way msmtp
    # applies them, through the same override mechanism as inheritance.
    settings: tuple[tuple[str, str], ...] = ()
    # -i / -oi: a line with a single dot does not end the message.
    ignore_dots: bool = False


_ModeSetter = Callable[["Mode"], None]

# Long options that set a configuration command of the same name (with "-" for
# "_"), exactly the set msmtp documents. An absent "=value" means "" which, as in
# the configuration file, means "on" for on/off commands and "unset" for others.
SETTING_OPTIONS = frozenset(
    {
        "host", "port", "source-ip", "proxy-host", "proxy-port", "socket", "timeout",
        "connect-timeout", "protocol", "domain", "auth", "user", "passwordeval",
        "tls", "tls-starttls", "tls-trust-file", "tls-crl-file", "tls-fingerprint",
        "tls-key-file", "tls-cert-file", "tls-certcheck", "tls-priorities",
        "tls-host-override", "tls-min-dh-prime-bits", "tls-force-sslv3", "logfile",
        "logfile-time-format", "syslog", "aliases", "auto-from", "maildomain",
        "from-full-name", "allow-from-override", "set-from-header", "set-date-header",
        "set-msgid-header", "set-to-header", "remove-bcc-headers",
        "undisclosed-recipients", "dsn-notify", "dsn-return", "keepbcc",
        "allow-plaintext-auth",
    }
)  # fmt: skip

# Long options with an argument that are not configuration commands.
LONG_WITH_ARGUMENT = {"from": "envelope_from", "file": "config_file", "account": "account"}
# Short options that take an argument (attached or as the next word).
SHORT_WITH_ARGUMENT = frozenset("CafNRXABbFhLOor")
# Short options whose argument can only be attached: -d0.1 (debug level), -q15m
# (queue interval). A bare -d or -q must not swallow the next word.
SHORT_WITH_ATTACHED_ARGUMENT = frozenset("dq")
# Short flags without argument that we act on or accept and ignore.
SHORT_FLAGS = frozenset("PStivGmnUIV")

# Flags that sendmail callers pass and that have no meaning for a relay are accepted
# and ignored, as msmtp and Postfix do: -oem (mail errors back: we report with the
# exit code), -odi/-odb (delivery mode), -B (body type: we detect 8-bit ourselves),
# -h (hop count), -L (syslog label), -m (me too), -n (no aliasing), -G (gateway
# submission), -U (initial user submission), -O/-o (sendmail options).


def parse(arguments: Sequence[str], *, program: str = "sendmail") -> SendmailOptions:
    """Parse a sendmail argv (without the program name).

    ``program`` selects the mode of the ``mailq`` and ``newaliases`` names.

    Raises:
        UsageError: an unknown option or a missing argument (exit 64).
    """
    fields: dict[str, object] = {}
    settings: list[tuple[str, str]] = []
    recipients: list[str] = []
    mode = {"mailq": Mode.LIST_QUEUE, "newaliases": Mode.REBUILD_ALIASES}.get(program, Mode.SEND)

    def set_mode(new: Mode) -> None:
        nonlocal mode
        mode = new

    index = 0
    while index < len(arguments):
        word = arguments[index]
        index += 1
        if word == "--":
            recipients.extend(arguments[index:])
            break
        if word.startswith("--"):
            name, has_value, value = word[2:].partition("=")
            if name in SETTING_OPTIONS:
                settings.append((name.replace("-", "_"), value))
            elif name in LONG_WITH_ARGUMENT:
                if not has_value:
                    if index >= len(arguments):
                        raise UsageError(f"option --{name} requires an argument")
                    value = arguments[index]
                    index += 1
                fields[LONG_WITH_ARGUMENT[name]] = value
            elif name == "read-recipients":
                fields["read_recipients"] = True
            elif name == "read-envelope-from":
                fields["read_envelope_from"] = True
            elif name == "pretend":
                set_mode(Mode.PRETEND)
            elif name == "serverinfo":
                set_mode(Mode.SERVERINFO)
            elif name == "version":
                set_mode(Mode.VERSION)
            elif name == "help":
                set_mode(Mode.HELP)
            elif name == "debug":
                fields["verbose"] = True
            else:
                raise UsageError(f"unknown option --{name}; run '{program} --help' for the options")
            continue
        if not word.startswith("-") or word == "-":
            recipients.append(word)
            continue
        # A cluster of short options: "-ti", "-oi", "-FCron Daemon", "-d0.1".
        position = 1
        while position < len(word):
            letter = word[position]
            position += 1
            if letter in SHORT_WITH_ATTACHED_ARGUMENT:
                attached = word[position:]
                if letter == "q":
                    # -q, -q15m, -qR...: run the queue; the interval is cron's job.
                    set_mode(Mode.RUN_QUEUE)
                elif attached:
                    # -d0.1 asks for the version, as msmtp answers it.
                    set_mode(Mode.VERSION)
                else:
                    fields["verbose"] = True
                break
            if letter in SHORT_WITH_ARGUMENT:
                if position < len(word):
                    value = word[position:]
                elif index < len(arguments):
                    value = arguments[index]
                    index += 1
                else:
                    raise UsageError(f"option -{letter} requires an argument")
                _apply_short(letter, value, fields, settings, set_mode)
                break
            if letter not in SHORT_FLAGS:
                raise UsageError(
                    f"unknown option -{letter}; run '{program} --help' for the options"
                )
            _apply_flag(letter, fields, set_mode)
    return SendmailOptions(
        mode=mode,
        recipients=tuple(recipients),
        settings=tuple(settings),
        **fields,  # type: ignore[arg-type]
    )


def _apply_flag(letter: str, fields: dict[str, object], set_mode: _ModeSetter) -> None:
    if letter == "t":
        fields["read_recipients"] = True
    elif letter == "i":
        fields["ignore_dots"] = True
    elif letter == "v":
        fields["verbose"] = True
    elif letter == "P":
        set_mode(Mode.PRETEND)
    elif letter == "S":
        set_mode(Mode.SERVERINFO)
    elif letter == "I":
        set_mode(Mode.REBUILD_ALIASES)
    elif letter == "V":
        set_mode(Mode.VERSION)
    # G, m, n, U: accepted and ignored (see above).


def _apply_short(
    letter: str,
    value: str,
    fields: dict[str, object],
    settings: list[tuple[str, str]],
    set_mode: _ModeSetter,
) -> None:
    if letter in ("f", "r"):
        fields["envelope_from"] = value
    elif letter == "F":
        fields["full_name"] = value
    elif letter == "C":
        fields["config_file"] = value
    elif letter == "a":
        fields["account"] = value
    elif letter == "N":
        settings.append(("dsn_notify", value))
    elif letter == "R":
        settings.append(("dsn_return", value))
    elif letter == "X":
        settings.append(("logfile", value))
    elif letter == "o":
        # -oi is the one -o option with a meaning for us: ignore dots.
        if value == "i":
            fields["ignore_dots"] = True
    elif letter == "b":
        modes = {
            "m": Mode.SEND,
            "s": Mode.SMTP_ON_STDIO,
            "p": Mode.LIST_QUEUE,
            "i": Mode.REBUILD_ALIASES,
        }
        if value not in modes:
            raise UsageError(
                f"unsupported operation mode -b{value}; "
                "mailhop knows -bm (send), -bs (SMTP on stdin), -bp (list queue), -bi (aliases)"
            )
        set_mode(modes[value])
    # A, B, h, L, O: accepted and ignored (see above).
