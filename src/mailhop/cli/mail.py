"""The ``mail``/``mailx`` personality in send mode (s-nail/Heirloom option dialect).

``mail -s SUBJECT [-a FILE]... [-c CC] [-b BCC] [-r FROM] [-S var=value]... ADDRESS...``
composes a MIME message from standard input and sends it, the way scripts written for
"mailx with SMTP" expect (mailx.md §1, §6):

* options are parsed POSIX-style: they end at the first address (or at ``--``/``-.``),
  so an untrusted trailing "address" such as ``-X/tmp/x`` is an address, and then
  refused because it starts with ``-`` (CVE-2014-7844 class, security.md B5);
* ``-a`` attaches a file, as in s-nail and Heirloom. bsd-mailx and GNU mail use ``-a``
  for a header line ("Name: value"); ``set a-is-header`` (or ``-S a-is-header``) selects
  that meaning for scripts written for them (mailx.md §5.1);
* recipients may be separated by commas and/or spaces; an unparsable one is an error,
  never silently dropped; ``|cmd`` and ``/path`` recipients are refused;
* where the mail goes: with ``smtp``/``mta=smtp[s]://`` set, straight to that server with
  mailhop's SMTP client and an msmtp-style account (same TLS/AUTH rules as sendmail);
  with ``sendmail`` (or ``mta=/path``) set, to that program with ``--`` before the
  recipients, no shell; otherwise through mailhop's own sendmail path in-process;
* the exit status is the delivery result (s-nail's ``sendwait``).

Without recipients (and without ``-t``), or with a read-mode option (``-e -H -f -u``),
mail reads mailboxes: ``mailhop.cli.mail_read``.
"""

from __future__ import annotations

import dataclasses
import io
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, BinaryIO

from mailhop.errors import ExitCode, MailhopError, UsageError

if TYPE_CHECKING:
    from mailhop.cli.mail_escapes import Draft
    from mailhop.config import Environment
    from mailhop.config.mailrc import MailSettings, SmtpServer
    from mailhop.message import Address

HELP = """\
usage: mail [-s SUBJECT] [-a FILE]... [-c ADDRS] [-b ADDRS] [-r FROM] [-S VAR[=VALUE]]...
            [-A ACCOUNT] [-q FILE] [-M TYPE] [-C 'NAME: VALUE'] [-t] [-E] [-n] [-v]
            [--] ADDRESS...

Reads the message body on standard input and sends it. At a terminal, a line
starting with ~ is an escape: ~? lists them, ~. ends the message, ~q aborts.

  -s SUBJECT      the subject (non-ASCII is encoded as RFC 2047 asks)
  -a FILE         attach FILE (with 'set a-is-header': add the header 'Name: value')
  -c, -b ADDRS    carbon copy, blind carbon copy (commas or spaces between addresses)
  -r FROM         the sender ('Name <addr>' or addr): From header and envelope
  -S VAR[=VALUE]  set a variable (noVAR unsets it); wins over the mail.rc files
  -A ACCOUNT      apply 'account ACCOUNT { ... }' of the mail.rc files
  -q FILE         start the body with the contents of FILE, then standard input
  -M TYPE         the body's MIME type (text/html, ...)
  -C 'NAME: V'    add a header
  -t              also read To/Cc/Bcc/Subject/From from a header block on stdin
  -E              do not send a message with an empty body (exit 0)
  -~              tilde escapes (~s ~t ~c ~b ~r ~p ~e ~v ~q ~x ~. ~~ ~?) even when
                  standard input is not a terminal (at a terminal they are always on)
  -n              do not read the system mail.rc files
  -v              show the SMTP dialogue (authentication redacted)

Settings: /etc/mail.rc, /etc/s-nail.rc, then $MAILRC or ~/.mailrc. SMTP with
smtp=host:port or mta=smtps://user:pass@host:465 (percent-encoded), smtp-auth,
smtp-auth-user, smtp-auth-password, smtp-use-starttls, ssl-verify, ssl-ca-file, from;
otherwise sendmail=/path, otherwise mailhop's sendmail configuration (~/.msmtprc).

Exit status: 0 sent; 75 temporary failure; 65 refused or bad header value; 77
authentication refused; 69 unavailable; 78 configuration error; 64 usage error.
"""

# getopt spellings: s-nail/Heirloom options for sending, the read-mode ones so they can be
# answered clearly, and harmless flags scripts pass (-i ignore interrupts, -N no header
# summary, -# batch mode, -d dry run is refused by not being listed).
SHORT_OPTIONS = "s:a:c:b:r:S:A:q:M:C:R:T:vtEn.iN#eHfu:L:V~"
LONG_OPTIONS = ("help", "version")
# Options that only make sense when reading mailboxes (mailx.md §2.6).
READ_MODE_OPTIONS = frozenset({"-e", "-H", "-f", "-u", "-L"})
# An external sendmail program may take a while for a big message over a slow link, but
# one that has not finished within an hour is stuck; a script must not wait forever.
EXTERNAL_SENDMAIL_TIMEOUT_SECONDS = 3600.0
# Exit codes a sendmail program may return that we pass on unchanged (sysexits(3)).
_SYSEXITS = frozenset(int(code) for code in ExitCode)
# Read by the mail personality only: where its system rc files live (tests, packaging).
SYSCONFDIR_VARIABLE = "MAILHOP_SYSCONFDIR"


@dataclasses.dataclass(frozen=True, kw_only=True)
class MailOptions:
    """What the ``mail`` command line said, before any rc file is read."""

    subject: str | None = None
    a_values: tuple[str, ...] = ()  # -a: files (s-nail) or headers (a-is-header)
    cc: tuple[str, ...] = ()
    bcc: tuple[str, ...] = ()
    sender: str | None = None  # -r
    reply_to: tuple[str, ...] = ()  # -R (Heirloom: Reply-To)
    settings: tuple[tuple[str, str | None], ...] = ()  # -S, in order
    account: str | None = None  # -A
    quote_file: str | None = None  # -q
    body_type: str = "text/plain"  # -M
    headers: tuple[str, ...] = ()  # -C "Name: value"
    verbose: bool = False
    read_headers: bool = False  # -t
    command_escapes: bool = False  # -~ (s-nail): tilde escapes even without a terminal
    skip_empty: bool = False  # -E
    skip_system: bool = False  # -n
    read_mode: bool = False  # -e -H -f -u -L
    show_help: bool = False
    show_version: bool = False
    recipients: tuple[str, ...] = ()  # -T and the operands


def parse_arguments(arguments: Sequence[str]) -> MailOptions:
    """Parse ``arguments`` POSIX-style: options end at the first operand.

    Raises:
        UsageError: an unknown option, a missing argument, or MTA arguments after the
            recipients (s-nail's ``--`` after addresses; refused as by its default).
    """
    import getopt  # noqa: PLC0415

    try:
        pairs, operands = getopt.getopt(list(arguments), SHORT_OPTIONS, list(LONG_OPTIONS))
    except getopt.GetoptError as error:
        raise UsageError(f"{error}; run 'mail --help' for the options") from None
    values: dict[str, object] = {}
    lists: dict[str, list[object]] = {
        "a_values": [], "cc": [], "bcc": [], "reply_to": [], "settings": [], "headers": [],
        "recipients": [],
    }  # fmt: skip
    for option, value in pairs:
        if option == "-.":
            break  # s-nail: end of options; getopt has consumed nothing after it
        simple = {
            "-s": "subject", "-r": "sender", "-A": "account", "-q": "quote_file",
            "-M": "body_type",
        }  # fmt: skip
        listed = {
            "-a": "a_values", "-c": "cc", "-b": "bcc", "-R": "reply_to", "-C": "headers",
            "-T": "recipients",
        }  # fmt: skip
        flags = {
            "-v": "verbose", "-t": "read_headers", "-E": "skip_empty", "-n": "skip_system",
            "-~": "command_escapes",
            "--help": "show_help", "-V": "show_version", "--version": "show_version",
        }  # fmt: skip
        if option in simple:
            values[simple[option]] = value
        elif option in listed:
            lists[listed[option]].append(value)
        elif option in flags:
            values[flags[option]] = True
        elif option == "-S":
            lists["settings"].append(_setting(value))
        elif option in READ_MODE_OPTIONS:
            values["read_mode"] = True
    if "--" in operands:
        raise UsageError(
            "arguments after '--' following the recipients would be options for the mail "
            "transfer agent; mail does not pass them on (put '--' before the recipients)"
        )
    lists["recipients"].extend(operands)
    return MailOptions(**values, **{key: tuple(items) for key, items in lists.items()})  # type: ignore[arg-type]


def _setting(text: str) -> tuple[str, str | None]:
    name, equals, value = text.partition("=")
    if not name:
        raise UsageError(f"-S {text!r}: give VAR or VAR=VALUE")
    if not equals and name.startswith("no") and len(name) > 2:
        return name[2:], None
    return name, value


def main(program: str, arguments: list[str]) -> int:
    """Run the mail personality; ``program`` is the name it was called by."""
    options = parse_arguments(arguments)
    if options.show_help:
        sys.stdout.write(HELP)
        return ExitCode.OK
    if options.show_version:
        from mailhop import __version__  # noqa: PLC0415

        sys.stdout.write(f"mailhop {__version__} (mail personality, s-nail/Heirloom dialect)\n")
        return ExitCode.OK
    if options.read_mode or (not options.recipients and not options.read_headers):
        from mailhop.cli.mail_read import main as read_mail  # noqa: PLC0415

        return read_mail(program, arguments)
    return send_mail(options, program.rsplit(maxsplit=1)[-1], sys.stdin.buffer)


def _environment() -> Environment:
    from mailhop.config import Environment  # noqa: PLC0415

    environment = Environment.from_process()
    sysconfdir = environment.variables.get(SYSCONFDIR_VARIABLE)
    if sysconfdir:
        environment = environment._replace(sysconfdir=sysconfdir)
    return environment


def send_mail(
    options: MailOptions,
    program: str,
    stream: BinaryIO,
    *,
    environment: Environment | None = None,
) -> int:
    """Compose the message from ``options`` and ``stream`` and send it (the exit code)."""
    from mailhop.config.mailrc import load_settings, smtp_server  # noqa: PLC0415
    from mailhop.message.compose import (  # noqa: PLC0415
        Composition,
        check_header_value,
        compose,
        load_attachment,
    )

    environment = environment or _environment()
    # Values that become header lines are checked before anything is read or sent:
    # a CR or LF in them is an injection attempt (security.md B2), exit 65.
    for value, what in (
        (options.subject, "the subject (-s)"),
        (options.sender, "the sender (-r)"),
        *((value, "a recipient") for value in options.recipients),
        *((value, "a -c address") for value in options.cc),
        *((value, "a -b address") for value in options.bcc),
        *((value, "a -C header") for value in options.headers),
    ):
        if value is not None:
            check_header_value(value, what)
    settings = load_settings(
        environment,
        skip_system=options.skip_system,
        account=options.account,
        command_line=options.settings,
    )
    a_is_header = settings.is_set("a-is-header")
    for value in options.a_values:
        check_header_value(value, "the -a header" if a_is_header else "the -a file name")
    expandaddr = settings.is_set("expandaddr")
    to = _addresses(options.recipients, expandaddr=expandaddr)
    cc = _addresses(options.cc, expandaddr=expandaddr)
    bcc = _addresses(options.bcc, expandaddr=expandaddr)
    reply_to = _addresses(options.reply_to, expandaddr=False)
    extra = [_header(value) for value in options.headers]
    attachments = []
    if a_is_header:
        extra.extend(_header(value) for value in options.a_values)
    else:
        attachments = [load_attachment(path) for path in options.a_values]
    author = _author(options.sender or settings.get("from"))
    subject = options.subject
    escape = settings.get("escape")
    if (options.command_escapes or stream.isatty()) and escape != "":
        from mailhop.cli.mail_escapes import Aborted, Draft  # noqa: PLC0415

        draft = Draft(
            subject=subject,
            to=list(options.recipients),
            cc=list(options.cc),
            bcc=list(options.bcc),
            body=bytearray(_quoted_file(options)),
        )
        try:
            draft = _collect(draft, stream, environment, escape or "~", expandaddr=expandaddr)
        except Aborted:
            from mailhop.cli.mail_escapes import ABORTED_EXIT_STATUS  # noqa: PLC0415

            return ABORTED_EXIT_STATUS
        body, subject = bytes(draft.body), draft.subject
        to, cc, bcc = (
            _addresses(values, expandaddr=expandaddr) for values in (draft.to, draft.cc, draft.bcc)
        )
    else:
        body = _read_body(options, stream)
    if options.read_headers:
        found, body = _header_block(body)
        to += found.to
        cc += found.cc
        bcc += found.bcc
        subject = subject if subject is not None else found.subject
        author = author or found.author
        extra.extend(found.extra)
    recipients = _unique([*to, *cc, *bcc])
    if not recipients:
        raise UsageError("no recipients: name them as arguments, with -c/-b, or use -t")
    if not body and not attachments and (options.skip_empty or settings.is_set("skipemptybody")):
        return ExitCode.OK
    host_name = settings.get("hostname") or _host_name()
    from mailhop import __version__  # noqa: PLC0415

    message = compose(
        Composition(
            body=body,
            subject=subject,
            author=author,
            to=tuple(to),
            cc=tuple(cc),
            reply_to=tuple(reply_to),
            extra_headers=tuple(extra),
            attachments=tuple(attachments),
            body_type=options.body_type,
            message_id_domain=(author.domain if author and author.domain else host_name),
            user_agent=None if settings.is_set("stealthmua") else f"mailhop {__version__}",
        )
    )
    server = smtp_server(settings)
    if server is not None:
        envelope = author.addr_spec if author else f"{environment.user_name()}@{host_name}"
        return _send_smtp(
            options, program, settings, server, message, envelope, recipients, bcc, environment
        )
    external = settings.get("sendmail") or _mta_program(settings.get("mta"))
    sender_argument = ["-f", author.addr_spec] if options.sender and author else []
    addr_specs = [address.addr_spec for address in recipients]
    flags = ["-i", *(["-v"] if options.verbose else []), *sender_argument]
    if external:
        return _run_sendmail(program, [external, *flags, "--", *addr_specs], message)
    from mailhop.cli.sendmail import send  # noqa: PLC0415
    from mailhop.cli.sendmail_options import parse  # noqa: PLC0415

    return send(parse([*flags, "--", *addr_specs]), program, io.BytesIO(message))


def _mta_program(mta: str | None) -> str | None:
    if not mta:
        return None
    if mta.startswith("file://"):
        return mta[len("file://") :]
    return mta if "://" not in mta else None


def _host_name() -> str:
    import socket  # noqa: PLC0415

    return socket.gethostname() or "localhost"


def _unique(addresses: Sequence[Address]) -> list[Address]:
    seen: dict[str, Address] = {}
    for address in addresses:
        seen.setdefault(address.addr_spec.lower(), address)
    return list(seen.values())


def _addresses(values: Sequence[str], *, expandaddr: bool) -> list[Address]:
    """Every address in ``values``: commas and/or spaces separate them.

    Raises:
        AddressError: an unparsable address, naming it (64).
        UsageError: a pipe or file recipient (64), which mail never runs or writes.
    """
    from mailhop.message import parse_address_list  # noqa: PLC0415

    found: list[Address] = []
    for value in values:
        for piece in _pieces(value):
            if piece.startswith(("|", "/")):
                kind = "pipe command" if piece.startswith("|") else "file"
                hint = (
                    "mailhop does not deliver to pipes or files from mail"
                    if expandaddr
                    else "mail never runs commands or writes files named as recipients"
                )
                raise UsageError(f"refusing the {kind} recipient {piece!r}: {hint}")
            found.extend(parse_address_list(piece, source="recipient"))
    return found


def _pieces(value: str) -> list[str]:
    """Split ``value`` on commas and spaces, unless quotes, angles or comments group it."""
    if any(character in value for character in '"<(') or not value.strip():
        return [value]
    return [piece for piece in value.replace(",", " ").split() if piece]


def _author(text: str | None) -> Address | None:
    if not text:
        return None
    from mailhop.message import parse_address_list  # noqa: PLC0415

    addresses = parse_address_list(text, source="sender")
    if len(addresses) != 1:
        raise UsageError(f"the sender {text!r} holds {len(addresses)} addresses, give one")
    return addresses[0]


def _header(text: str) -> tuple[str, str]:
    name, colon, value = text.partition(":")
    if not colon or not name.strip():
        raise UsageError(f"{text!r} is not a header line; write it as 'Name: value'")
    return name.strip(), value.strip()


def _quoted_file(options: MailOptions) -> bytes:
    """``-q FILE``: what the body starts with (empty without ``-q``)."""
    from mailhop.message.compose import MAX_BODY_BYTES  # noqa: PLC0415

    if options.quote_file is None:
        return b""
    try:
        with open(options.quote_file, "rb") as file:
            return file.read(MAX_BODY_BYTES + 1)
    except OSError as error:
        raise MailhopError(
            f"-q {options.quote_file}: {error.strerror or error}", exit_code=ExitCode.NOINPUT
        ) from error


def _collect(
    draft: Draft, stream: BinaryIO, environment: Environment, escape: str, *, expandaddr: bool
) -> Draft:
    """The body typed at a terminal, with tilde escapes (``mailhop.cli.mail_escapes``)."""
    from mailhop.cli.mail_escapes import Terminal, collect  # noqa: PLC0415
    from mailhop.message.compose import MAX_BODY_BYTES, check_header_value  # noqa: PLC0415

    def check_addresses(value: str, what: str) -> None:
        # The same checks as for addresses on the command line (security.md B2).
        check_header_value(value, f"an address given with {what}")
        _addresses([value], expandaddr=expandaddr)

    terminal = Terminal(
        input=stream,
        output=sys.stdout,
        environ=environment.variables,
        home=environment.home,
        escape=escape[0],
        check_addresses=check_addresses,
        check_subject=lambda value: check_header_value(value, "the subject (~s)"),
        max_body_bytes=MAX_BODY_BYTES,
    )
    return collect(draft, terminal)


def _read_body(options: MailOptions, stream: BinaryIO) -> bytes:
    """``-q FILE`` then standard input, whole; a lone ``.`` never ends it (``set dot``)."""
    from mailhop.message.compose import MAX_BODY_BYTES  # noqa: PLC0415

    body = _quoted_file(options) + stream.read(MAX_BODY_BYTES + 1)
    if len(body) > MAX_BODY_BYTES:
        raise MailhopError(
            f"the message body is larger than {MAX_BODY_BYTES} bytes; send it with "
            "sendmail or as a smaller attachment",
            exit_code=ExitCode.DATAERR,
        )
    return body


@dataclasses.dataclass(frozen=True, kw_only=True)
class _HeaderBlock:
    to: list[Address]
    cc: list[Address]
    bcc: list[Address]
    subject: str | None
    author: Address | None
    extra: list[tuple[str, str]]


def _header_block(data: bytes) -> tuple[_HeaderBlock, bytes]:
    """``-t``: the header block at the top of stdin, and the body after it."""
    from email import policy  # noqa: PLC0415
    from email.parser import BytesHeaderParser  # noqa: PLC0415

    from mailhop.message import parse_address_list  # noqa: PLC0415
    from mailhop.message.compose import OWN_HEADERS, check_header_value  # noqa: PLC0415

    normalized = data.replace(b"\r\n", b"\n")
    head, separator, body = normalized.partition(b"\n\n")
    if not separator:
        head, body = normalized, b""
    parsed = BytesHeaderParser(policy=policy.compat32).parsebytes(head + b"\n\n")
    lists: dict[str, list[Address]] = {"to": [], "cc": [], "bcc": []}
    subject: str | None = None
    author: Address | None = None
    extra: list[tuple[str, str]] = []
    for name, raw in parsed.items():
        value = " ".join(str(raw).split("\n")).replace("\r", "")
        check_header_value(value, f"the {name} header")
        lower = name.lower()
        if lower in lists:
            lists[lower].extend(
                parse_address_list(value, source=f"{name} header", from_command_line=False)
            )
        elif lower == "subject":
            subject = value
        elif lower == "from":
            author = _author(value)
        elif lower not in OWN_HEADERS:
            extra.append((name, value.strip()))
    block = _HeaderBlock(subject=subject, author=author, extra=extra, **lists)
    return block, body


def _send_smtp(  # noqa: PLR0917 - one call site, every argument named there
    options: MailOptions,
    program: str,
    settings: MailSettings,
    server: SmtpServer,
    message: bytes,
    envelope_from: str,
    recipients: Sequence[Address],
    bcc: Sequence[Address],
    environment: Environment,
) -> int:
    from mailhop.config.mailrc import smtp_account  # noqa: PLC0415
    from mailhop.deliver.submit import submit  # noqa: PLC0415
    from mailhop.message import Recipients, parse_envelope_sender, read_message  # noqa: PLC0415

    account = smtp_account(settings, server, envelope_from=envelope_from, environment=environment)

    def show(line: str) -> None:
        sys.stderr.write(f"{line}\n")

    def warn(line: str) -> None:
        sys.stderr.write(f"{program}: warning: {line}\n")

    with read_message(io.BytesIO(message), ignore_dots=True) as parsed:
        try:
            submit(
                account,
                parsed,
                sender=parse_envelope_sender(envelope_from),
                recipients=Recipients(
                    addresses=tuple(recipients),
                    hidden=frozenset(address.addr_spec.lower() for address in bcc),
                ),
                transcript=show if options.verbose else None,
                warn=warn,
            )
        except MailhopError as error:
            error.details = (
                *error.details,
                f"could not send mail through {server.host}:{server.port}",
            )
            raise
    return ExitCode.OK


def _run_sendmail(program: str, argv: list[str], message: bytes) -> int:
    """Hand ``message`` to an external sendmail program: argv only, never a shell."""
    import subprocess  # noqa: PLC0415

    try:
        result = subprocess.run(  # argv list, no shell; recipients after "--"
            argv,
            input=message,
            timeout=EXTERNAL_SENDMAIL_TIMEOUT_SECONDS,
            check=False,
        )
    except FileNotFoundError as error:
        raise MailhopError(
            f"sendmail program {argv[0]} not found; fix 'set sendmail=' in mail.rc",
            exit_code=ExitCode.CONFIG,
        ) from error
    except subprocess.TimeoutExpired as error:
        raise MailhopError(
            f"sendmail program {argv[0]} did not finish within "
            f"{EXTERNAL_SENDMAIL_TIMEOUT_SECONDS:.0f} s",
            exit_code=ExitCode.TEMPFAIL,
        ) from error
    except OSError as error:
        raise MailhopError(
            f"cannot run sendmail program {argv[0]}: {error.strerror or error}",
            exit_code=ExitCode.OSERR,
        ) from error
    if result.returncode == 0:
        return ExitCode.OK
    code = result.returncode if result.returncode in _SYSEXITS else ExitCode.TEMPFAIL
    sys.stderr.write(
        f"{program}: sendmail program {argv[0]} failed with exit status {result.returncode}\n"
    )
    return code


__all__ = ["HELP", "MailOptions", "main", "parse_arguments", "send_mail"]
