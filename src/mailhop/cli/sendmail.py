"""The sendmail personality: ``mailhop sendmail``, or a link named sendmail or msmtp.

Reads a message on stdin and submits it through the configured account, the way
msmtp does, with exit codes that tell temporary (75) from permanent (65) failures.
Errors print as ``sendmail: <what happened>`` followed by the server's reply lines.

cron and daemons start this for every message: the heavy parts (config parsing,
TLS, the SMTP core) are imported only once a message is really to be sent.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

from mailhop.cli.sendmail_options import Mode, SendmailOptions, parse
from mailhop.errors import ExitCode, MailhopError, NotBuiltError, UsageError

TYPE_CHECKING = False  # not typing's: the enqueue path never imports typing (CONVENTIONS)
if TYPE_CHECKING:
    from typing import BinaryIO

    from mailhop.config import Account
    from mailhop.deliver.log import DeliveryRecord
    from mailhop.message import Address, Message, Recipients

HELP = """\
usage: sendmail [options] [--] recipient...

Reads a message on standard input and sends it through the configured account.

  -t                  also send to the To, Cc and Bcc of the message
  -i, -oi             a line with a single dot does not end the message
  -f ADDR, -r ADDR    envelope sender (<> for none); also picks the account
  -F NAME             full name for a From header mailhop adds
  -a ACCOUNT          use this account (default: 'default')
  -C FILE             use FILE instead of the user configuration file
  -N LIST, -R RET     DSN: notify (failure,delay,success|never), return (hdrs|full)
  -X FILE             append a log line to FILE
  -v                  show the SMTP dialogue (authentication redacted)
  -P, --pretend       print the resolved account and its settings, send nothing
  -S, --serverinfo    show the server's greeting, TLS certificate and capabilities
  --read-envelope-from  take the envelope sender from the From header
  --KEY=VALUE         any configuration command, e.g. --port=587 --tls=on
Flags other sendmails take (-oem, -odi, -B8BITMIME, -G, -h N, -L, -m, -n, -U) are
accepted and ignored.

Exit status: 0 sent; 75 temporary failure (try again); 65 refused permanently;
77 authentication refused; 69 the server lacks what the account requires; 76
protocol error; 78 configuration error; 64 usage error.
"""

# Command-line spellings msmtp accepts that the configuration file does not: sendmail's
# ``-R hdrs`` (msmtp.md §2.2) is the file's ``dsn_return headers``.
_COMMAND_LINE_SPELLINGS: dict[tuple[str, str], tuple[str, str]] = {
    ("dsn_return", "hdrs"): ("dsn_return", "headers"),
}

# The issue that builds each mode not built yet, for a clear "comes with" message.
_COMING: dict[Mode, str] = {}


def main(program: str, arguments: list[str]) -> int:
    """Run the sendmail personality; ``program`` is the name it was called by."""
    name = program.rsplit(maxsplit=1)[-1]
    options = parse(arguments, program=name)
    if options.mode is Mode.HELP:
        sys.stdout.write(HELP)
        return ExitCode.OK
    if options.mode is Mode.VERSION:
        from mailhop import __version__  # noqa: PLC0415

        sys.stdout.write(f"mailhop {__version__} (sendmail personality)\n")
        return ExitCode.OK
    if options.mode is Mode.PRETEND:
        return _pretend(options)
    if options.mode is Mode.SERVERINFO:
        return _serverinfo(options, name)
    if options.mode is Mode.REBUILD_ALIASES:
        from mailhop.cli.aliases import newaliases  # noqa: PLC0415

        return newaliases(name, [])
    if options.mode in (Mode.RUN_QUEUE, Mode.LIST_QUEUE, Mode.SMTP_ON_STDIO):
        from mailhop.cli.queue import sendmail_queue_mode  # noqa: PLC0415

        return sendmail_queue_mode(options, name)
    if options.mode is not Mode.SEND:
        raise NotBuiltError(_COMING[options.mode])
    return send(options, name, sys.stdin.buffer)


def _pretend(options: SendmailOptions) -> int:
    from mailhop.config import render_pretend, resolve  # noqa: PLC0415

    resolution = resolve(
        config_file=options.config_file,
        account_name=options.account,
        envelope_from=options.envelope_from,
        settings=_settings(options),
        pretend=True,
    )
    sys.stdout.write(
        render_pretend(
            resolution.account,
            messages=resolution.messages,
            read_envelope_from=options.read_envelope_from,
            read_recipients=options.read_recipients,
        )
    )
    return ExitCode.OK


def serverinfo(program: str, arguments: list[str]) -> int:
    """``mailhop serverinfo [-a ACCOUNT] [-C FILE] [--host=H --port=P ...]``."""
    return main(program, ["--serverinfo", *arguments])


def _serverinfo(options: SendmailOptions, program: str) -> int:
    from mailhop.config import resolve  # noqa: PLC0415
    from mailhop.deliver.serverinfo import server_report  # noqa: PLC0415

    if options.recipients:
        raise UsageError("serverinfo takes no recipients")
    account = resolve(
        config_file=options.config_file,
        account_name=options.account,
        envelope_from=options.envelope_from,
        settings=options.settings,
        sendmail_mode=False,
    ).account

    def warn(line: str) -> None:
        sys.stderr.write(f"{program}: warning: {line}\n")

    sys.stdout.write(server_report(account, warn=warn))
    return ExitCode.OK


def _settings(options: SendmailOptions) -> tuple[tuple[str, str], ...]:
    """The options' settings in the configuration file's terms."""
    return tuple(_COMMAND_LINE_SPELLINGS.get(setting, setting) for setting in options.settings)


def send(options: SendmailOptions, program: str, stream: BinaryIO) -> int:
    """Read one message from ``stream`` and send it as ``options`` say (exit code).

    The in-process entry for other personalities (``mail`` hands its composed
    message here) so that aliases, local delivery and the queue apply to them too.
    """
    from mailhop.config import QueueMode, expand_from_header, resolve  # noqa: PLC0415
    from mailhop.config.errors import AccountError  # noqa: PLC0415
    from mailhop.message import (  # noqa: PLC0415
        collect_recipients,
        header_sender,
        parse_envelope_sender,
        read_message,
    )

    if options.read_envelope_from and options.envelope_from is not None:
        raise UsageError("cannot use both -f and --read-envelope-from")
    # Refuse a bad recipient argument (CR/LF/NUL, a leading "-") before anything else.
    collect_recipients(options.recipients)

    relay_problem: MailhopError | None = None

    def account_for(envelope_from: str | None) -> Account:
        nonlocal relay_problem
        try:
            return resolve(
                config_file=options.config_file,
                account_name=options.account,
                envelope_from=envelope_from,
                settings=_settings(options),
            ).account
        except AccountError as error:
            if options.account is not None:
                raise
            # No usable account: local recipients still get their mail (the embedded
            # default, issue #5); routing refuses remote ones with this reason.
            relay_problem = error
            return _local_only_account(options, envelope_from)

    account = account_for(options.envelope_from) if not options.read_envelope_from else None
    with read_message(stream, ignore_dots=options.ignore_dots) as message:
        author = header_sender(message.headers)
        if account is None:
            if author is None:
                raise UsageError("--read-envelope-from: the message has no From header")
            account = account_for(author.addr_spec)
        if account.from_address and "%F" in account.from_address:
            account = expand_from_header(account, author.addr_spec if author else "")
        sender = parse_envelope_sender(account.from_address or "")
        recipients = collect_recipients(
            options.recipients, message.headers, read_headers=options.read_recipients
        )
        if not recipients.addresses:
            raise UsageError("no recipients found; name them as arguments or use -t")
        # Routing (issue #5): aliases, local delivery here, the rest to the relay.
        from mailhop.deliver.routing import route_and_deliver_locally  # noqa: PLC0415

        try:
            routed = route_and_deliver_locally(
                account, message, sender=sender, recipients=recipients, relay_problem=relay_problem
            )
        except MailhopError as error:
            # A temporary local failure (a locked mailbox, no relay account yet, a
            # command asking to retry) keeps the whole message in the queue, where
            # the runner routes it again; only queue off reports it as exit 75.
            if error.exit_code != ExitCode.TEMPFAIL or account.queue is QueueMode.OFF:
                raise
            queue_id = _queue_for_rerouting(options, account, message, sender, recipients)
            sys.stderr.write(
                f"{program}: warning: {error}; the message is queued as {queue_id} "
                "and will be retried\n"
            )
            return ExitCode.OK
        if routed.remote is None:
            return ExitCode.OK
        return _deliver(
            options,
            program,
            account=account,
            message=routed.message,
            sender=routed.sender,
            recipients=routed.remote,
        )


def _queue_for_rerouting(
    options: SendmailOptions,
    account: Account,
    message: Message,
    sender: Address,
    recipients: Recipients,
) -> str:
    """Keep ``message`` for every original recipient, to be routed again later."""
    from mailhop.queue import Route, enqueue, queue_directory  # noqa: PLC0415

    entry = enqueue(
        message.chunks(),
        sender=sender.addr_spec,
        recipients=[(address.addr_spec, Route.LOCAL) for address in recipients.addresses],
        queue_dir=queue_directory(account),
        account=account.name if account.host else None,
        config_file=options.config_file,
        settings=_settings(options),
        first_failure="local delivery deferred",
    )
    return entry.id


def _local_only_account(options: SendmailOptions, envelope_from: str | None) -> Account:
    """An account that cannot relay: its local settings, sender the user at this host.

    The configured account when one is selected but incomplete for relaying (no
    ``host``), else the embedded default (no configuration at all).
    """
    import _socket  # noqa: PLC0415 - gethostname without the socket wrapper (see routing)
    import getpass  # noqa: PLC0415

    from mailhop.config import Account  # noqa: PLC0415
    from mailhop.config.accounts import apply_settings, complete, select_account  # noqa: PLC0415
    from mailhop.config.errors import AccountError  # noqa: PLC0415
    from mailhop.config.files import load  # noqa: PLC0415

    try:
        selected = select_account(load(options.config_file), envelope_from=envelope_from).account
        account = complete(apply_settings(selected, _settings(options)))
    except AccountError:
        account = Account(name="local delivery")
    sender = envelope_from or account.from_address
    sender = sender or f"{getpass.getuser()}@{_socket.gethostname()}"
    return account._replace(from_address=sender)


def _deliver(
    options: SendmailOptions,
    program: str,
    *,
    account: Account,
    message: Message,
    sender: Address,
    recipients: Recipients,
) -> int:
    from mailhop.deliver.relay import relay  # noqa: PLC0415

    def show(line: str) -> None:
        sys.stderr.write(f"{line}\n")

    def warn(line: str) -> None:
        sys.stderr.write(f"{program}: warning: {line}\n")

    def log(outcome: Callable[[DeliveryRecord], DeliveryRecord]) -> None:
        """Write the log line of this attempt, if the account keeps a log.

        The log module is imported only then: most accounts log nothing, and a
        ``queue always`` enqueue should not load what it does not use.
        """
        if not (account.logfile or account.syslog):
            return
        from mailhop.deliver.log import DeliveryRecord  # noqa: PLC0415

        record = DeliveryRecord(
            host=account.socket or account.host or "",
            via_socket=account.socket is not None,
            tls=account.tls,
            auth=account.auth.value != "off",
            user=account.user,
            envelope_from=sender.addr_spec,
            recipients=tuple(address.addr_spec for address in recipients.addresses),
            exit_code=ExitCode.OK,
        )
        _log(account, outcome(record))

    try:
        # The queue modes (issue #4): send now, or keep durably and exit 0.
        outcome = relay(
            account,
            message,
            sender=sender,
            recipients=recipients,
            full_name=options.full_name,
            transcript=show if options.verbose else None,
            warn=warn,
            config_file=options.config_file,
            settings=_settings(options),
        )
    except MailhopError as error:
        log(_failed(error))
        error.details = (*error.details, f"could not send mail ({account.where})")
        raise
    receipt = outcome.receipt
    if receipt is None:
        deferred = outcome.deferred_by
        if deferred is not None:
            log(_failed(deferred))
            warn(f"{deferred}; the message is queued as {outcome.queue_id} and will be retried")
        elif options.verbose:
            show(f"queued as {outcome.queue_id}")
        return ExitCode.OK
    # Sent now: the SMTP stack is loaded already; a queued message never pays for it.
    from mailhop.deliver.smtp import reply_lines  # noqa: PLC0415

    reply = receipt.acceptance.reply
    log(
        lambda record: record._replace(
            mailsize=receipt.acceptance.mailsize,
            smtp_status=reply.code,
            smtp_message=reply_lines(reply),
            message_id=receipt.message_id,
        )
    )
    return ExitCode.OK


def _failed(error: MailhopError) -> Callable[[DeliveryRecord], DeliveryRecord]:
    """What ``error`` adds to an attempt's log record."""

    def outcome(record: DeliveryRecord) -> DeliveryRecord:
        from mailhop.deliver.errors import ServerReplyError  # noqa: PLC0415

        if isinstance(error, ServerReplyError):
            return record._replace(
                smtp_status=error.code,
                smtp_message=error.lines,
                error_message=str(error),
                exit_code=error.exit_code,
            )
        return record._replace(error_message=str(error), exit_code=error.exit_code)

    return outcome


def _log(account: Account, record: DeliveryRecord) -> None:
    from mailhop.deliver.log import (  # noqa: PLC0415
        DEFAULT_TIME_FORMAT,
        append_to_file,
        format_line,
        send_to_syslog,
    )

    if account.logfile:
        time_format = account.logfile_time_format or DEFAULT_TIME_FORMAT
        append_to_file(account.logfile, format_line(record, time_format=time_format))
    if account.syslog:
        send_to_syslog(
            account.syslog,
            format_line(record, time_format=None),
            success=record.exit_code == ExitCode.OK,
        )
