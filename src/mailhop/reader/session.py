"""The command loop of the mail reader (POSIX mailx read mode, mailx.md §2.4-2.5).

``Session.run`` reads command lines from a ``read_line`` callable (a terminal with a
``? `` prompt, or plain standard input for scripts: the same commands give the same
results) and writes everything to ``output``. Text from messages reaches the output
only through ``display`` and ``summary``, which escape every control character.

Sending (``reply``, ``Reply``, ``mail``) goes through the ``send`` callable the command
line provides (the normal sendmail path, in-process), so aliases, accounts and, later,
the queue apply to replies too; this layer does not import ``cli``.

``!command`` runs ``$SHELL -c command`` (``/bin/sh`` when ``SHELL`` is unset), as POSIX
mailx does: the command is what the user typed at their own terminal, never data from a
message, so the shell is the point of the feature (DESIGN.md §4.4 bans shells for data).
"""

from __future__ import annotations

import dataclasses
import email.message
import email.policy
import email.utils
import os
import re
import subprocess
from collections.abc import Callable, Iterable
from typing import TextIO

from mailhop.errors import ExitCode, MailhopError
from mailhop.reader import display
from mailhop.reader.commands import (
    HELP_LINES,
    Command,
    Number,
    ParsedCommand,
    Range,
    Selector,
    Special,
    State,
    StateFilter,
    SubjectSearch,
    is_number,
    parse_command,
)
from mailhop.reader.errors import CommandError, ReaderError
from mailhop.reader.folder import (
    Folder,
    Mark,
    QuitReport,
    QuitRules,
    Status,
    append_messages,
    envelope_line_for,
    with_status_value,
)
from mailhop.reader.summary import DEFAULT_COLUMNS, DEFAULT_SCREEN_LINES, summary_line
from mailhop.store.durable import PRIVATE_FILE_MODE, write_atomically
from mailhop.store.errors import StoreError

# POSIX ``toplines`` default: how many lines ``top`` shows.
DEFAULT_TOP_LINES = 5
# A reply or new message typed at the prompt longer than this is not typed: refuse it
# rather than hold unbounded input in memory.
MAX_COMPOSED_CHARACTERS = 10 << 20
# Commands one session runs at most: the loop is bounded even when stdin never ends.
MAX_COMMANDS_PER_SESSION = 1_000_000
_MESSAGE_ID = re.compile(r"<[^<>\s\x00-\x1f\x7f]{1,900}>")

ReadLine = Callable[[str], "str | None"]


@dataclasses.dataclass(frozen=True, kw_only=True)
class Outgoing:
    """A message composed in the reader, handed to the send path."""

    recipients: tuple[str, ...]
    data: bytes


SendFunction = Callable[[Outgoing], int]


@dataclasses.dataclass(frozen=True, kw_only=True)
class SessionSettings:
    system_mailbox: bool
    mbox_path: str
    home: str
    columns: int = DEFAULT_COLUMNS
    interactive: bool = False
    show_headers: bool = True


class Session:
    """One reading session on ``folder``; ``run`` returns the exit code."""

    def __init__(
        self,
        folder: Folder,
        *,
        settings: SessionSettings,
        variables: dict[str, str],
        read_line: ReadLine,
        output: TextIO,
        send: SendFunction | None = None,
        open_folder: Callable[[str], Folder] = Folder.open,
    ) -> None:
        self.folder = folder
        self.settings = settings
        self.system_mailbox = settings.system_mailbox
        self.variables = variables
        self.read_line = read_line
        self.output = output
        self.send = send
        self.open_folder = open_folder
        self.current = self._first_unread()
        self.page_start = 0
        self.previous_folder = ""
        self._displayed_any = False

    # -- helpers -------------------------------------------------------------------

    def write(self, text: str) -> None:
        self.output.write(text)

    def _first_unread(self) -> int:
        for index, message in enumerate(self.folder.messages):
            if message.status is not Status.READ:
                return index
        return 0

    def _undeleted(self) -> list[int]:
        return [i for i, marks in enumerate(self.folder.marks) if Mark.DELETED not in marks]

    def _count(self, number: int) -> int:
        if not 1 <= number <= len(self.folder):
            raise CommandError(f"{number}: no such message (there are {len(self.folder)})")
        return number - 1

    def resolve(self, selectors: tuple[Selector, ...], *, deleted: bool = False) -> list[int]:
        """Indexes named by a message list; no list means the current message."""
        if not self.folder.messages:
            raise CommandError("No messages.")
        if not selectors:
            return [self.current]
        chosen: list[int] = []
        for selector in selectors:
            chosen.extend(self._matches(selector))
        ordered = sorted(set(chosen))
        wanted = [
            index
            for index in ordered
            if (Mark.DELETED in self.folder.marks[index]) == deleted
            or any(isinstance(s, Number | Range) for s in selectors)
        ]
        if not wanted:
            raise CommandError("No applicable messages.")
        return wanted

    def _matches(self, selector: Selector) -> Iterable[int]:
        messages = self.folder.messages
        if isinstance(selector, Number):
            return [self._count(selector.value)]
        if isinstance(selector, Range):
            return range(self._count(selector.first), self._count(selector.last) + 1)
        if isinstance(selector, Special):
            return {
                Special.CURRENT: [self.current],
                Special.FIRST: self._undeleted()[:1],
                Special.LAST: self._undeleted()[-1:],
                Special.ALL: range(len(messages)),
            }[selector]
        if isinstance(selector, State):
            return [i for i in range(len(messages)) if self._in_state(i, selector.state)]
        if isinstance(selector, SubjectSearch):
            needle = selector.text.lower()
            return [
                i
                for i, message in enumerate(messages)
                if needle
                in display.header_text(display.parse_headers(message.data), "subject").lower()
            ]
        needle = selector.text.lower()
        from mailhop.reader.summary import sender_of  # noqa: PLC0415 - small, local use

        return [i for i, message in enumerate(messages) if needle in sender_of(message).lower()]

    def _in_state(self, index: int, state: StateFilter) -> bool:
        marks = self.folder.marks[index]
        status = self.folder.messages[index].status
        seen = bool(marks & (Mark.READ_NOW | Mark.SAVED))
        return {
            StateFilter.NEW: status is Status.NEW and not seen,
            StateFilter.UNREAD: status is not Status.READ and not seen,
            StateFilter.READ: Mark.READ_NOW in marks,
            StateFilter.OLD: status is Status.READ,
            StateFilter.DELETED: Mark.DELETED in marks,
        }[state]

    def _path(self, name: str) -> str:
        """Expand a folder name: ``~``, ``&`` (mbox), ``%`` (inbox), ``+name`` (folder var)."""
        if name == "&":
            return self.settings.mbox_path
        if name == "#":
            if not self.previous_folder:
                raise CommandError("No previous file")
            return self.previous_folder
        if name.startswith("+"):
            folder = self.variables.get("folder", "")
            base = folder if os.path.isabs(folder) else os.path.join(self.settings.home, folder)
            return os.path.join(base, name[1:])
        if name == "~" or name.startswith("~/"):
            return os.path.join(self.settings.home, name[2:])
        return name

    # -- the loop ------------------------------------------------------------------

    def banner(self) -> None:
        self.write(self.folder_line() + "\n")
        if self.settings.show_headers:
            self.show_page(self.current)

    def folder_line(self) -> str:
        messages = self.folder.messages
        new = sum(1 for i in range(len(messages)) if self._in_state(i, StateFilter.NEW))
        unread = sum(1 for i in range(len(messages)) if self._in_state(i, StateFilter.UNREAD))
        counts = [f"{len(messages)} message{'s' if len(messages) != 1 else ''}"]
        if new:
            counts.append(f"{new} new")
        if unread - new:
            counts.append(f"{unread - new} unread")
        name = display.escape_for_terminal(self.folder.path)
        return f'"{name}": ' + " ".join(counts)

    def run(self) -> int:
        self.banner()
        for _ in range(MAX_COMMANDS_PER_SESSION):
            self._notice_new_mail()
            try:
                line = self.read_line("? " if self.settings.interactive else "")
            except KeyboardInterrupt:
                self.write("\nInterrupt\n")
                continue
            if line is None:  # end of input: quit, as POSIX says
                return self._quit()
            try:
                parsed = parse_command(line)
            except CommandError as error:
                self.write(f"{error}\n")
                continue
            if parsed.command is Command.QUIT:
                return self._quit()  # a failed write-back ends the session with its error
            try:
                outcome = self.execute(parsed)
            except ReaderError as error:
                self.write(f"{error}\n")
                continue
            if outcome is not None:
                return outcome
        return self._quit()

    def _notice_new_mail(self) -> None:
        try:
            arrived = self.folder.check_new_mail()
        except ReaderError as error:
            self.write(f"cannot check for new mail: {error}\n")
            return
        if arrived:
            self.write(f"New mail has arrived: {arrived} message{'s' if arrived != 1 else ''}.\n")
            if self.settings.show_headers:
                for index in range(len(self.folder) - arrived, len(self.folder)):
                    self._summary(index)

    def execute(self, parsed: ParsedCommand) -> int | None:
        """Run one command; an exit code means the session ends."""
        command = parsed.command
        handlers: dict[Command, Callable[[ParsedCommand], int | None]] = {
            Command.PRINT: lambda p: self._print(p, all_headers=False),
            Command.PRINT_ALL_HEADERS: lambda p: self._print(p, all_headers=True),
            Command.NEXT: self._next,
            Command.PREVIOUS: self._previous,
            Command.HEADERS: self._headers,
            Command.SCROLL: self._scroll,
            Command.FROM: self._from,
            Command.DELETE: self._delete,
            Command.UNDELETE: self._undelete,
            Command.DELETE_AND_PRINT: self._delete_and_print,
            Command.SAVE: lambda p: self._save(p, mark=True, body_only=False),
            Command.COPY: lambda p: self._save(p, mark=False, body_only=False),
            Command.WRITE: lambda p: self._save(p, mark=True, body_only=True),
            Command.REPLY_ALL: lambda p: self._reply(p, everyone=True),
            Command.REPLY_SENDER: lambda p: self._reply(p, everyone=False),
            Command.MAIL: self._mail,
            Command.PRESERVE: lambda p: self._mark(p, Mark.PRESERVED),
            Command.MBOX: lambda p: self._mark(p, Mark.TO_MBOX),
            Command.TOP: self._top,
            Command.SIZE: self._size,
            Command.FOLDER: self._folder,
            Command.SET: self._set,
            Command.UNSET: self._unset,
            Command.SHELL: self._shell,
            Command.HELP: self._help,
            Command.QUIT: lambda p: self._quit(),
            Command.EXIT: lambda p: ExitCode.OK,
            Command.CURRENT: lambda p: self._say(f"{self.current + 1}"),
            Command.ATTACHMENTS: self._attachments,
            Command.SAVE_ATTACHMENT: self._save_attachment,
        }
        return handlers[command](parsed)

    def _say(self, text: str) -> None:
        self.write(text + "\n")

    # -- showing -------------------------------------------------------------------

    def _summary(self, index: int) -> None:
        self.write(
            summary_line(
                index + 1,
                self.folder.messages[index],
                self.folder.marks[index],
                current=index == self.current,
                columns=self.settings.columns,
            )
            + "\n"
        )

    def _screen(self) -> int:
        try:
            return max(1, int(self.variables.get("screen", DEFAULT_SCREEN_LINES)))
        except ValueError:
            return DEFAULT_SCREEN_LINES

    def show_page(self, around: int) -> None:
        screen = self._screen()
        self.page_start = (around // screen) * screen
        self._show_page_from(self.page_start)

    def _show_page_from(self, start: int) -> None:
        shown = 0
        for index in range(start, len(self.folder)):
            if shown >= self._screen():
                break
            if Mark.DELETED in self.folder.marks[index]:
                continue
            self._summary(index)
            shown += 1

    def _show(self, index: int, *, all_headers: bool) -> None:
        message = self.folder.messages[index]
        self.current = index
        self._displayed_any = True
        self.folder.marks[index] |= Mark.READ_NOW
        rendering = display.render(message.data, all_headers=all_headers)
        self.write(f"Message {index + 1}:\n")
        if message.envelope_line and all_headers:
            self.write(
                display.escape_for_terminal(message.envelope_line.decode("utf-8", "replace")) + "\n"
            )
        self.write(rendering.text())

    def _print(self, parsed: ParsedCommand, *, all_headers: bool) -> None:
        for index in self.resolve(parsed.selectors):
            self._show(index, all_headers=all_headers)

    def _next(self, parsed: ParsedCommand) -> None:
        if parsed.selectors:
            self._show(self.resolve(parsed.selectors)[0], all_headers=False)
            return
        start = self.current if not self._displayed_any else self.current + 1
        for index in range(start, len(self.folder)):
            if Mark.DELETED not in self.folder.marks[index]:
                self._show(index, all_headers=False)
                return
        self._say("At EOF")

    def _previous(self, parsed: ParsedCommand) -> None:
        for index in range(self.current - 1, -1, -1):
            if Mark.DELETED not in self.folder.marks[index]:
                self._show(index, all_headers=False)
                return
        self._say("Referencing before 1")

    def _headers(self, parsed: ParsedCommand) -> None:
        if not self.folder.messages:
            self._say("No messages.")
            return
        index = self.resolve(parsed.selectors)[0] if parsed.selectors else self.current
        self.show_page(index)

    def _scroll(self, parsed: ParsedCommand) -> None:
        screen = self._screen()
        if parsed.argument.strip() == "-":
            if self.page_start == 0:
                self._say("On first screenful of messages")
                return
            self.page_start = max(0, self.page_start - screen)
        else:
            if self.page_start + screen >= len(self.folder):
                self._say("On last screenful of messages")
                return
            self.page_start += screen
        self._show_page_from(self.page_start)

    def _from(self, parsed: ParsedCommand) -> None:
        for index in self.resolve(parsed.selectors):
            self._summary(index)

    def _top(self, parsed: ParsedCommand) -> None:
        try:
            count = max(0, int(self.variables.get("toplines", DEFAULT_TOP_LINES)))
        except ValueError:
            count = DEFAULT_TOP_LINES
        for index in self.resolve(parsed.selectors):
            self.folder.marks[index] |= Mark.READ_NOW  # as BSD mail: top counts as reading
            self.write(f"Message {index + 1}:\n")
            rendering = display.render(self.folder.messages[index].data)
            lines = [*rendering.header_lines, "", *rendering.body.splitlines()]
            self.write("".join(line + "\n" for line in lines[:count]))

    def _size(self, parsed: ParsedCommand) -> None:
        for index in self.resolve(parsed.selectors):
            self._say(f"{index + 1}: {self.folder.messages[index].size}")

    def _attachments(self, parsed: ParsedCommand) -> None:
        for index in self.resolve(parsed.selectors):
            found = display.attachments_of(display.parse(self.folder.messages[index].data))
            if not found:
                self._say(f"Message {index + 1}: no attachments")
            for attachment, _ in found:
                self._say(
                    f"{index + 1}.{attachment.number} {attachment.filename} "
                    f"{attachment.content_type} {attachment.size} bytes"
                )

    def _help(self, parsed: ParsedCommand) -> None:
        self._say("Commands (a message list is 1 2-5 . $ ^ * :n :u :r :o :d /subject address):")
        for names, summary in HELP_LINES:
            self._say(f"  {names:<26} {summary}")

    # -- changing marks ------------------------------------------------------------

    def _mark(self, parsed: ParsedCommand, mark: Mark) -> None:
        for index in self.resolve(parsed.selectors):
            self.folder.marks[index] |= mark

    def _mark_deleted(self, chosen: list[int]) -> None:
        # A deleted message counts as seen and forgets preserve/save/mbox, as in BSD
        # mail: undeleting it later leaves a read message (it moves to mbox at quit).
        for index in chosen:
            marks = self.folder.marks[index] & ~(Mark.PRESERVED | Mark.SAVED | Mark.TO_MBOX)
            self.folder.marks[index] = marks | Mark.DELETED | Mark.READ_NOW

    def _delete(self, parsed: ParsedCommand) -> None:
        chosen = self.resolve(parsed.selectors)
        self._mark_deleted(chosen)
        following = [i for i in self._undeleted() if i > chosen[-1]]
        if following:
            self.current = following[0]
        elif self._undeleted():
            self.current = self._undeleted()[-1]

    def _undelete(self, parsed: ParsedCommand) -> None:
        for index in self.resolve(parsed.selectors, deleted=True):
            self.folder.marks[index] &= ~Mark.DELETED
            self.current = index

    def _delete_and_print(self, parsed: ParsedCommand) -> None:
        chosen = self.resolve(parsed.selectors)
        self._mark_deleted(chosen)
        following = [i for i in self._undeleted() if i > chosen[-1]]
        if not following:
            self._say("At EOF")
            return
        self._show(following[0], all_headers=False)

    # -- files ---------------------------------------------------------------------

    def _save(self, parsed: ParsedCommand, *, mark: bool, body_only: bool) -> None:
        if not parsed.argument and body_only:
            raise CommandError("write needs a file name: write [msglist] FILE")
        path = self._path(parsed.argument or "&")
        chosen = self.resolve(parsed.selectors)
        existed = os.path.exists(path)
        messages = [self.folder.messages[index] for index in chosen]
        if body_only:
            bodies = []
            for message in messages:
                block = display.parse(message.data)
                part = display.body_part(block)
                bodies.append(display.decoded_payload(part) if part is not None else b"")
            _append_plain(path, b"".join(bodies))
            size = sum(len(body) for body in bodies)
        else:
            append_messages(
                path,
                [
                    (
                        message.envelope_line or envelope_line_for(message.data, message.received),
                        # The copy says "read", as bsd-mailx writes it: saving shows intent.
                        with_status_value(message.data, b"R"),
                    )
                    for message in messages
                ],
            )
            size = sum(message.size for message in messages)
        for index in chosen:
            # copy leaves the message read (BSD mail moves it to mbox at quit like any
            # read message); save and write mark it saved.
            self.folder.marks[index] |= Mark.SAVED if mark else Mark.READ_NOW
        lines = sum(message.line_count for message in messages)
        name = display.escape_for_terminal(path)
        self._say(f'"{name}" [{"Appended" if existed else "New file"}] {lines}/{size}')

    def _save_attachment(self, parsed: ParsedCommand) -> None:
        words = parsed.argument.split()
        if len(words) == 2:
            index, number, target = self.current, words[0], words[1]
        elif len(words) == 3 and is_number(words[0]):
            index, number, target = self._count(int(words[0])), words[1], words[2]
        else:
            raise CommandError("usage: saveattachment [MESSAGE] NUMBER FILE")
        found = display.attachments_of(display.parse(self.folder.messages[index].data))
        if not is_number(number) or not 1 <= int(number) <= len(found):
            raise CommandError(f"message {index + 1} has no attachment {number}; see 'attachments'")
        attachment, part = found[int(number) - 1]
        path = self._path(target)
        if os.path.lexists(path):
            raise CommandError(f"{display.escape_for_terminal(path)} exists; name a new file")
        try:
            write_atomically(path, [display.decoded_payload(part)], mode=PRIVATE_FILE_MODE)
        except StoreError as error:
            raise ReaderError(str(error), exit_code=error.exit_code) from error
        self._say(f'"{display.escape_for_terminal(path)}" {attachment.size} bytes')

    # -- folders -------------------------------------------------------------------

    def _folder(self, parsed: ParsedCommand) -> None:
        name = parsed.argument.strip()
        if not name:
            self._say(self.folder_line())
            return
        path = self._path(name)
        new_folder = self.open_folder(path)
        report = self.folder.write_back(self._rules())
        self._report(report)
        self.previous_folder = self.folder.path
        self.folder = new_folder
        self.system_mailbox = False
        self.current = self._first_unread()
        self._displayed_any = False
        self.banner()

    def _rules(self) -> QuitRules:
        return QuitRules(
            system_mailbox=self.system_mailbox,
            hold="hold" in self.variables,
            keepsave="keepsave" in self.variables,
            mbox_path=self.settings.mbox_path,
        )

    def _quit(self) -> int:
        report = self.folder.write_back(self._rules())
        self._report(report)
        return ExitCode.OK

    def _report(self, report: QuitReport) -> None:
        if report.moved_to_mbox:
            count = report.moved_to_mbox
            path = display.escape_for_terminal(report.mbox_path)
            self._say(f"Saved {count} message{'s' if count != 1 else ''} in {path}")
        if report.held and (report.moved_to_mbox or report.removed):
            count = report.held
            path = display.escape_for_terminal(report.folder_path)
            self._say(f"Held {count} message{'s' if count != 1 else ''} in {path}")

    # -- variables and shell -------------------------------------------------------

    def _set(self, parsed: ParsedCommand) -> None:
        words = parsed.argument.split()
        if not words:
            for name in sorted(self.variables):
                value = self.variables[name]
                self._say(f"{name}={value}" if value else name)
            return
        for word in words:
            name, equals, value = word.partition("=")
            if name.startswith("no") and not equals and len(name) > 2:
                self.variables.pop(name[2:], None)
            else:
                self.variables[name] = value.strip("\"'") if equals else ""

    def _unset(self, parsed: ParsedCommand) -> None:
        for name in parsed.argument.split():
            self.variables.pop(name, None)

    def _shell(self, parsed: ParsedCommand) -> None:
        shell = os.environ.get("SHELL") or "/bin/sh"
        self.output.flush()
        if parsed.argument:
            # Deliberately a shell: the user typed this at their own prompt (module docstring).
            subprocess.run([shell, "-c", parsed.argument], check=False)
        else:
            subprocess.run([shell], check=False)
        self._say("!")

    # -- composing -----------------------------------------------------------------

    def _reply(self, parsed: ParsedCommand, *, everyone: bool) -> None:
        index = self.resolve(parsed.selectors)[0]
        self.current = index
        self.folder.marks[index] |= Mark.READ_NOW
        original = display.parse(self.folder.messages[index].data)
        author = _addresses(original, "reply-to") or _addresses(original, "from")
        if not author:
            raise CommandError(f"message {index + 1} has no From or Reply-To to reply to")
        to = list(author)
        cc: list[str] = []
        if everyone:
            mine = self.variables.get("from", "").lower()
            for address in _addresses(original, "to"):
                if address not in to and address.lower() != mine:
                    to.append(address)
            for address in _addresses(original, "cc"):
                if address not in to and address not in cc and address.lower() != mine:
                    cc.append(address)
        subject = _clean(display.header_text(original, "subject"))
        if not subject.lower().startswith("re:"):
            subject = f"Re: {subject}"
        references = [
            value
            for value in (
                _message_id(original.get("references")),
                _message_id(original.get("message-id")),
            )
            if value
        ]
        in_reply_to = _message_id(original.get("message-id"))
        self._compose(
            to=to, cc=cc, subject=subject, in_reply_to=in_reply_to, references=" ".join(references)
        )

    def _mail(self, parsed: ParsedCommand) -> None:
        recipients = parsed.argument.replace(",", " ").split()
        if not recipients:
            raise CommandError("mail needs at least one address: mail ADDRESS...")
        for recipient in recipients:
            if recipient.startswith("-"):
                raise CommandError(f"{recipient}: an address cannot start with '-'")
        self._compose(to=recipients, cc=[], subject=None, in_reply_to="", references="")

    def _compose(
        self,
        *,
        to: list[str],
        cc: list[str],
        subject: str | None,
        in_reply_to: str,
        references: str,
    ) -> None:
        if self.send is None:
            raise CommandError("sending is not available in this session")
        self._say("To: " + display.escape_for_terminal(", ".join(to)))
        if cc:
            self._say("Cc: " + display.escape_for_terminal(", ".join(cc)))
        if subject is None:
            typed = self.read_line("Subject: ")
            subject = _clean(typed or "")
        else:
            self._say("Subject: " + display.escape_for_terminal(subject))
        body_lines: list[str] = []
        total = 0
        while True:
            line = self.read_line("")
            if line is None or line.rstrip("\r\n") == ".":
                break
            total += len(line) + 1
            if total > MAX_COMPOSED_CHARACTERS:
                raise CommandError(
                    f"message longer than {MAX_COMPOSED_CHARACTERS} characters; not sent"
                )
            body_lines.append(line.rstrip("\r\n"))
        message = email.message.EmailMessage(policy=email.policy.SMTP)
        message["To"] = ", ".join(to)
        if cc:
            message["Cc"] = ", ".join(cc)
        message["Subject"] = subject
        if in_reply_to:
            message["In-Reply-To"] = in_reply_to
        if references:
            message["References"] = references
        message.set_content("".join(line + "\n" for line in body_lines))
        outgoing = Outgoing(recipients=(*to, *cc), data=message.as_bytes())
        self._say("EOT")
        try:
            status = self.send(outgoing)
        except MailhopError as error:
            self._say(f"message not sent: {error}")
            return
        if status != ExitCode.OK:
            self._say(f"message not sent (exit {status})")


def _clean(text: str) -> str:
    """A header value typed or copied into a new message: no control characters at all."""
    return " ".join("".join(c if c.isprintable() else " " for c in text).split())


def _addresses(message: email.message.EmailMessage, name: str) -> list[str]:
    values = message.get_all(name) or []
    found = []
    try:
        pairs = email.utils.getaddresses([str(value) for value in values])
    except (ValueError, TypeError):
        return []
    for _, address in pairs:
        if address and address.isprintable() and not address.startswith("-") and " " not in address:
            found.append(address)
    return found


def _message_id(value: object) -> str:
    if value is None:
        return ""
    return " ".join(_MESSAGE_ID.findall(str(value)))


def _append_plain(path: str, data: bytes) -> None:
    """Append ``data`` to a plain file (``write``), durably, keeping its mode."""
    try:
        with open(path, "rb") as existing:
            old = existing.read()
        mode = os.stat(path).st_mode & 0o777
    except FileNotFoundError:
        old, mode = b"", PRIVATE_FILE_MODE
    except OSError as error:
        raise ReaderError(
            f"cannot read {path}: {error.strerror}", exit_code=ExitCode.CANTCREAT
        ) from error
    try:
        write_atomically(path, [old, data], mode=mode)
    except StoreError as error:
        raise ReaderError(str(error), exit_code=error.exit_code) from error
