"""``mailhop queue``: run, list and manage the durable queue.

    mailhop queue run [--watch] [--force] [-v]     deliver what is due (sendmail -q)
    mailhop queue list                             mailq layout (also mailq, sendmail -bp)
    mailhop queue show ID                          the record and the message headers
    mailhop queue retry ID... | --all              make entries due now and run them
    mailhop queue hold ID... / release ID...       keep an entry from being sent / undo
    mailhop queue remove ID...                     delete an entry (logged to stderr)
    mailhop queue install-timer [--interval MIN] [--log FILE] [--remove]
                                                   systemd timer or cron entry

Every command takes ``--queue-dir DIR`` and ``-C FILE`` (whose default account's
``queue_dir`` is used when ``--queue-dir`` is not given).
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
import time
from collections.abc import Callable, Sequence

from mailhop.errors import ExitCode, MailhopError, UsageError

TYPE_CHECKING = False  # not typing's: an empty queue run never imports typing (CONVENTIONS)
if TYPE_CHECKING:
    from typing import BinaryIO

    from mailhop.cli.sendmail_options import SendmailOptions
    from mailhop.queue import Entry, Spool
    from mailhop.queue.spool import RecipientState

# How often ``--watch`` runs the queue, and how long it runs at most before exiting
# (a service manager or cron restarts it; a bound keeps a forgotten one from living
# forever with stale configuration).
WATCH_INTERVAL_SECONDS = 60.0
MAX_WATCH_SECONDS = 24 * 3600
# Help lines are wrapped to the terminal, or to this width when there is none.
DEFAULT_HELP_COLUMNS = 80


class _HelpFormatter(argparse.HelpFormatter):
    """argparse's formatter, told its width instead of asking shutil for it.

    argparse makes a formatter for every ``add_argument`` (to check the metavar), and
    the default one imports shutil for the terminal's width: shutil brings zlib, bz2,
    lzma and fnmatch, 3-4 ms of every ``queue run`` (each kick, each timer tick).
    Every parser of this command is given this class.
    """

    def __init__(self, prog: str) -> None:
        # The 2 columns argparse keeps free from the terminal's width.
        super().__init__(prog, width=_terminal_columns() - 2)


def _terminal_columns() -> int:
    """shutil.get_terminal_size's answer: $COLUMNS, the terminal on stdout, or 80."""
    columns = os.environ.get("COLUMNS", "")
    if columns.isdigit() and int(columns) > 0:
        return int(columns)
    stdout = sys.__stdout__
    try:
        return os.get_terminal_size(stdout.fileno()).columns if stdout else DEFAULT_HELP_COLUMNS
    except (ValueError, OSError):  # not a terminal, or closed
        return DEFAULT_HELP_COLUMNS


def spool_for(queue_dir: str | None, config_file: str | None, account: str | None = None) -> Spool:
    """The Spool the options name (``--queue-dir``, else the account's ``queue_dir``)."""
    from mailhop.queue import Spool, queue_directory  # noqa: PLC0415

    if queue_dir:
        return Spool(queue_dir)
    resolved = None
    try:
        from mailhop.config import resolve  # noqa: PLC0415

        resolved = resolve(
            config_file=config_file, account_name=account, sendmail_mode=False
        ).account
    except MailhopError:
        resolved = None  # no usable configuration: the default directory
    return Spool(queue_directory(resolved))


def main(program: str, arguments: list[str]) -> int:
    # Options may come before or after the subcommand (``queue run --queue-dir D``).
    common = argparse.ArgumentParser(add_help=False, formatter_class=_HelpFormatter)
    common.add_argument("--queue-dir", default=argparse.SUPPRESS, help="the queue directory")
    common.add_argument(
        "-C", "--file", dest="config_file", default=argparse.SUPPRESS, help="configuration file"
    )
    common.add_argument(
        "-a", "--account", default=argparse.SUPPRESS, help="account whose queue_dir to use"
    )
    parser = argparse.ArgumentParser(
        prog=program,
        description="Manage the durable queue.",
        parents=[common],
        formatter_class=_HelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    # Each subcommand's parser gets the formatter too (add_parser does not inherit it).
    subcommand = functools.partial(sub.add_parser, parents=[common], formatter_class=_HelpFormatter)
    run_parser = subcommand("run", help="deliver what is due")
    run_parser.add_argument("--watch", action="store_true", help="keep running")
    run_parser.add_argument("--force", action="store_true", help="ignore the retry schedule")
    run_parser.add_argument("-v", "--verbose", action="store_true")
    subcommand("list", help="list queued messages")
    for name in ("show", "hold", "release", "remove"):
        subcommand(name).add_argument("ids", nargs="+", metavar="ID")
    retry = subcommand("retry", help="make entries due now and deliver them")
    retry.add_argument("ids", nargs="*", metavar="ID")
    retry.add_argument("--all", action="store_true")
    timer = subcommand("install-timer", help="run the queue regularly")
    timer.add_argument("--remove", action="store_true", help="delete what install-timer wrote")
    timer.add_argument(
        "--interval", type=int, metavar="MINUTES", help="how often to run (default 5)"
    )
    timer.add_argument("--log", metavar="FILE", help="where cron appends the run's output")
    try:
        options = parser.parse_args(arguments)
    except SystemExit as error:
        return int(error.code or 0)
    queue_dir: str | None = getattr(options, "queue_dir", None)
    config_file: str | None = getattr(options, "config_file", None)
    spool = spool_for(queue_dir, config_file, getattr(options, "account", None))
    name = program.rsplit(maxsplit=1)[-1]
    if options.command == "run":
        return run_queue(spool, force=options.force, verbose=options.verbose, watch=options.watch)
    if options.command == "list":
        sys.stdout.write(render_list(spool))
        return ExitCode.OK
    if options.command == "show":
        return _show(spool, options.ids)
    if options.command == "retry":
        if not options.all and not options.ids:
            raise UsageError("name the entries to retry, or use --all")
        return _retry(spool, None if options.all else options.ids)
    if options.command in ("hold", "release"):
        return _set_held(spool, options.ids, held=options.command == "hold")
    if options.command == "remove":
        return _remove(spool, options.ids, name)
    return _install_timer(options, spool.root, config_file)


def _install_timer(options: argparse.Namespace, queue_dir: str, config_file: str | None) -> int:
    from mailhop.cli import queue_timer  # noqa: PLC0415

    if options.remove:
        return queue_timer.remove_timer()
    return queue_timer.install_timer(
        queue_timer.TimerRequest(
            queue_dir=os.path.abspath(queue_dir),
            config_file=config_file,
            interval_minutes=options.interval or queue_timer.DEFAULT_INTERVAL_MINUTES,
            log_file=options.log and os.path.abspath(options.log),
        )
    )


def _route_again(
    spool: Spool, entry: Entry, states: Sequence[RecipientState], data: bytes
) -> list[str]:
    """The runner's local delivery: route queued local recipients again.

    Aliases are expanded anew and local mailboxes written; what turns out to be
    remote becomes a new relay entry (like a forward). Returns the addresses handled;
    a temporary failure leaves them pending for the next run.
    """
    import io  # noqa: PLC0415

    from mailhop.config import Account  # noqa: PLC0415
    from mailhop.deliver.routing import route_and_deliver_locally  # noqa: PLC0415
    from mailhop.errors import ConfigError  # noqa: PLC0415
    from mailhop.message import (  # noqa: PLC0415
        Address,
        Recipients,
        parse_envelope_sender,
        read_message,
    )
    from mailhop.queue import Route  # noqa: PLC0415
    from mailhop.queue.runner import resolve_entry_account  # noqa: PLC0415

    try:
        account = resolve_entry_account(entry)
    except ConfigError:
        # Queued without a relay account (the embedded default): local settings only.
        account = Account(name="local delivery", from_address=entry.sender)
    sender = parse_envelope_sender(entry.sender)
    recipients = Recipients(addresses=tuple(Address(addr_spec=s.address) for s in states))
    try:
        with read_message(io.BytesIO(data), ignore_dots=True) as message:
            routed = route_and_deliver_locally(
                account, message, sender=sender, recipients=recipients
            )
            if routed.remote is not None:
                spool.enqueue(
                    routed.message.chunks(),
                    sender=routed.sender.addr_spec,
                    recipients=[(a.addr_spec, Route.RELAY) for a in routed.remote.addresses],
                    account=entry.account,
                    config_file=entry.config_file,
                    settings=entry.settings,
                )
    except MailhopError as error:
        _stderr(f"entry {entry.id}: local delivery deferred: {error}")
        return []
    return [state.address for state in states]


def run_queue(
    spool: Spool, *, force: bool = False, verbose: bool = False, watch: bool = False
) -> int:
    """Deliver what is due; report quarantined entries and configuration problems."""
    from mailhop.queue.runner import MAX_PROCESSES, run  # noqa: PLC0415

    started = time.monotonic()
    status = ExitCode.OK
    while True:
        report = run(
            spool,
            force=force,
            log=_stderr if verbose else None,
            local_delivery=lambda entry, states, data: _route_again(spool, entry, states, data),
            # A worker process per connection (the runner bounds them by the
            # connections and the entries): each mostly waits for its server, so
            # more of them than cores still pays. This process has no other
            # threads, so forking is safe here.
            processes=MAX_PROCESSES,
        )
        for entry_id in report.quarantined:
            sys.stderr.write(
                f"mailhop queue: entry {entry_id} failed its integrity check; "
                f"moved to {spool.quarantine_directory}\n"
            )
        for problem in report.problems:
            sys.stderr.write(f"mailhop queue: {problem}\n")
        if verbose:
            sys.stderr.write(
                f"mailhop queue: {report.delivered} delivered, {report.deferred} deferred, "
                f"{report.bounced} bounced, {report.busy} busy\n"
            )
        for failure in report.failures:
            sys.stderr.write(f"mailhop queue: {failure}\n")
        if report.unfreed:
            # Not an error of the run: that mail is delivered and never sent again.
            sys.stderr.write(
                f"mailhop queue: could not remove the files of {len(report.unfreed)} "
                f"delivered message(s) (first: {report.unfreed[0]}); the next run tries again\n"
            )
        if report.problems:
            status = ExitCode.CONFIG
        if report.failures:
            status = ExitCode.SOFTWARE
        if not watch or time.monotonic() - started > MAX_WATCH_SECONDS:
            return status
        time.sleep(WATCH_INTERVAL_SECONDS)


def _stderr(line: str) -> None:
    sys.stderr.write(f"mailhop queue: {line}\n")


def render_list(spool: Spool) -> str:
    """The queue in Postfix's mailq layout: id, size, arrival, sender, recipients."""
    from mailhop.queue.errors import CorruptEntryError, EntryNotFoundError  # noqa: PLC0415

    ids = spool.ids()
    if not ids:
        return "Mail queue is empty\n"
    lines = ["-Queue ID-                 --Size-- ----Arrival Time---- -Sender/Recipient-------"]
    total = 0
    count = 0
    for entry_id in ids:
        try:
            entry = spool.load(entry_id)
        except EntryNotFoundError:
            continue
        except CorruptEntryError as error:
            lines.append(f"{entry_id}  (corrupt: {error}; the next run quarantines it)")
            continue
        count += 1
        total += entry.message_size
        arrival = time.strftime("%a %b %d %H:%M:%S", time.localtime(entry.queued_at))
        marker = "!" if entry.held else " "
        lines.append(
            f"{entry.id}{marker} {entry.message_size:>8} {arrival}  "
            f"{entry.sender or 'MAILER-DAEMON'}"
        )
        if entry.last_error:
            lines.append(f"     ({entry.last_error[:300]})")
        for recipient in entry.pending:
            lines.append(f"{'':>43}{recipient.address}")
        lines.append("")
    plural = "s" if count != 1 else ""
    lines.append(f"-- {(total + 1023) // 1024} Kbytes in {count} Request{plural}.")
    return "\n".join(lines) + "\n"


def _show(spool: Spool, ids: list[str]) -> int:
    from mailhop.queue.bounce import read_header_block  # noqa: PLC0415
    from mailhop.queue.spool import check_id  # noqa: PLC0415

    for entry_id in ids:
        entry = spool.load(check_id(entry_id))
        sys.stdout.write(f"id: {entry.id}\nsender: <{entry.sender}>\n")
        sys.stdout.write(f"account: {entry.account}\nqueued: {time.ctime(entry.queued_at)}\n")
        sys.stdout.write(f"next attempt: {time.ctime(entry.next_attempt)}\n")
        sys.stdout.write(f"attempts: {entry.attempts}\nheld: {'yes' if entry.held else 'no'}\n")
        sys.stdout.write(f"last error: {entry.last_error or '-'}\n")
        for r in entry.recipients:
            reply = " ".join(r.last_reply)
            sys.stdout.write(
                f"recipient: <{r.address}> {r.route.value} {r.status.value} "
                f"attempts={r.attempts} {reply}\n"
            )
        with spool.open_message(entry) as file:
            head = read_header_block(file)
        sys.stdout.write("\n" + head.decode("utf-8", "replace") + "\n")
    return ExitCode.OK


def _change(spool: Spool, ids: list[str], change: Callable[[Entry], Entry]) -> None:
    from mailhop.queue.spool import DEFAULT_LOCK_WAIT_SECONDS, check_id  # noqa: PLC0415

    for entry_id in ids:
        with spool.lock(check_id(entry_id), wait=DEFAULT_LOCK_WAIT_SECONDS):
            spool.update(change(spool.load(entry_id)))


def _retry(spool: Spool, ids: list[str] | None) -> int:
    now = time.time()
    targets = spool.ids() if ids is None else ids
    _change(spool, targets, lambda e: e._replace(next_attempt=now, held=False))
    return run_queue(spool)


def _set_held(spool: Spool, ids: list[str], *, held: bool) -> int:
    _change(spool, ids, lambda e: e._replace(held=held))
    return ExitCode.OK


def _remove(spool: Spool, ids: list[str], program: str) -> int:
    from mailhop.queue.spool import DEFAULT_LOCK_WAIT_SECONDS, check_id  # noqa: PLC0415

    for entry_id in ids:
        with spool.lock(check_id(entry_id), wait=DEFAULT_LOCK_WAIT_SECONDS):
            entry = spool.load(entry_id)
            spool.remove(entry_id)
        recipients = ", ".join(r.address for r in entry.pending)
        sys.stderr.write(f"{program}: removed {entry_id} from <{entry.sender}> to {recipients}\n")
    return ExitCode.OK


# ``-bs``: a session on a pipe still needs limits. One message may weigh this much
# (advertised with SIZE, RFC 1870), and at most this many recipients are taken per
# message (RFC 5321 §4.5.3.1.8 asks for at least 100).
BS_MAX_MESSAGE_SIZE = 50 * 1024 * 1024
BS_MAX_RECIPIENTS = 1000
# One read from standard input.
BS_READ_SIZE = 64 * 1024


def sendmail_queue_mode(options: SendmailOptions, program: str) -> int:
    """``sendmail -q`` (flush everything), ``-bp``/``mailq`` (list), ``-bs`` (SMTP on stdio)."""
    from mailhop.cli.sendmail_options import Mode  # noqa: PLC0415

    spool = spool_for(None, options.config_file, options.account)
    if options.mode is Mode.LIST_QUEUE:
        sys.stdout.write(render_list(spool))
        return ExitCode.OK
    if options.mode is Mode.RUN_QUEUE:
        # Postfix's ``sendmail -q`` flushes the whole queue, not only what is due.
        return run_queue(spool, force=True, verbose=options.verbose)
    return smtp_on_stdio(options, program, sys.stdin.buffer, sys.stdout.buffer)


def smtp_on_stdio(
    options: SendmailOptions, program: str, incoming: BinaryIO, outgoing: BinaryIO
) -> int:
    """Speak SMTP on a pipe; each message is queued and 250 is said only once durable.

    What symfony/mailer and PHP's ``-bs`` transports use. The message goes through
    the relay step in ``queue always`` mode, so headers are rewritten as for any
    sendmail message and a background runner delivers it.
    """
    import socket  # noqa: PLC0415

    from mailhop.config import QueueMode, resolve  # noqa: PLC0415
    from mailhop.deliver.relay import relay  # noqa: PLC0415
    from mailhop.message import (  # noqa: PLC0415
        Address,
        Recipients,
        parse_envelope_sender,
        read_message,
    )
    from mailhop.proto.smtp import (  # noqa: PLC0415
        NEED_DATA,
        CommandRejected,
        ConnectionClosed,
        Data,
        DataChunk,
        Ehlo,
        EndOfData,
        Helo,
        MailFrom,
        Noop,
        Quit,
        RcptTo,
        Reply,
        Rset,
        ServerConnection,
    )

    account = resolve(
        config_file=options.config_file,
        account_name=options.account,
        envelope_from=options.envelope_from,
        settings=_sendmail_settings(options),
    ).account
    account = account._replace(queue=QueueMode.ALWAYS)
    core = ServerConnection(max_message_size=BS_MAX_MESSAGE_SIZE)
    hostname = socket.gethostname()
    sender: str | None = None
    recipients: list[str] = []
    content = bytearray()

    def reply(code: int, *lines: str) -> None:
        core.send(Reply(code=code, lines=lines or ("",)))

    def flush() -> None:
        data = core.data_to_send()
        if data:
            outgoing.write(data)
            outgoing.flush()

    reply(220, f"{hostname} ESMTP mailhop (queueing)")
    while True:
        event = core.next_event()
        if event is NEED_DATA:
            flush()
            core.receive_data(_read_some(incoming))
            continue
        if isinstance(event, ConnectionClosed):
            flush()
            return ExitCode.OK
        if isinstance(event, CommandRejected):
            continue
        if isinstance(event, DataChunk):
            content += event.data
            continue
        if isinstance(event, Ehlo):
            reply(
                250,
                hostname,
                "PIPELINING",
                f"SIZE {BS_MAX_MESSAGE_SIZE}",
                "8BITMIME",
                "SMTPUTF8",
                "ENHANCEDSTATUSCODES",
            )
        elif isinstance(event, Helo):
            reply(250, hostname)
        elif isinstance(event, MailFrom):
            sender, recipients, content = event.address, [], bytearray()
            reply(250, "2.1.0 Ok")
        elif isinstance(event, RcptTo):
            if len(recipients) >= BS_MAX_RECIPIENTS:
                reply(452, "4.5.3 Too many recipients")
            else:
                recipients.append(event.address)
                reply(250, "2.1.5 Ok")
        elif isinstance(event, Data):
            if recipients:
                reply(354, "End data with <CR><LF>.<CR><LF>")
            else:
                reply(554, "5.5.1 No valid recipients")
        elif isinstance(event, EndOfData):
            if event.oversized:
                reply(552, "5.3.4 Message too big")
            elif event.bare_line_endings:
                reply(550, "5.6.0 Bare CR or LF in message")
            else:
                import io  # noqa: PLC0415

                try:
                    with read_message(io.BytesIO(bytes(content)), ignore_dots=True) as message:
                        outcome = relay(
                            account,
                            message,
                            sender=parse_envelope_sender(sender or ""),
                            recipients=Recipients(
                                addresses=tuple(Address(addr_spec=r) for r in recipients)
                            ),
                            config_file=options.config_file,
                            settings=_sendmail_settings(options),
                        )
                    # RFC 5321 §6.1: the 250 is said only now that the entry is durable.
                    reply(250, f"2.0.0 Ok: queued as {outcome.queue_id}")
                except MailhopError as error:
                    sys.stderr.write(f"{program}: {error}\n")
                    if error.exit_code == ExitCode.TEMPFAIL:
                        reply(451, f"4.3.0 {error}"[:400])
                    else:
                        reply(554, f"5.3.0 {error}"[:400])
            sender, recipients, content = None, [], bytearray()
        elif isinstance(event, Quit):
            reply(221, "2.0.0 Bye")
            flush()
            return ExitCode.OK
        elif isinstance(event, Rset | Noop):
            if isinstance(event, Rset):
                sender, recipients, content = None, [], bytearray()
            reply(250, "2.0.0 Ok")
        else:
            reply(502, "5.5.1 Command not implemented")


def _sendmail_settings(options: SendmailOptions) -> tuple[tuple[str, str], ...]:
    from mailhop.cli.sendmail import _settings  # noqa: PLC0415

    return _settings(options)


def _read_some(stream: BinaryIO) -> bytes:
    """What is available now (a pipelining client waits for our replies)."""
    read1 = getattr(stream, "read1", None)
    if read1 is not None:
        data: bytes = read1(BS_READ_SIZE)
        return data
    return stream.read(BS_READ_SIZE)
