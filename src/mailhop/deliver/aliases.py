"""aliases(5) and msmtp's ``aliases`` file: parse, check, and expand recipients.

Two formats (retrieval_delivery.md §2.1, msmtp.md §3.5):

``AliasFormat.SYSTEM`` — ``/etc/aliases`` exactly as aliases(5) describes it:

* ``name: value, value, ...``; a line starting with white space continues the
  previous entry; empty lines and lines whose first non-blank character is ``#`` are
  ignored (a ``#`` after a value is *not* a comment);
* the name is folded to lower case and may be double-quoted; lookups fold too;
* a value is an address, ``/file`` (mbox; Maildir if it ends in ``/``), ``|command``,
  or ``:include:/file`` (more values, one or more per line, read at expansion);
  a value with white space or commas is double-quoted;
* ``/file`` and ``|command`` are honoured only from a trusted file — owned by root,
  not group or world writable, opened without following symlinks — and never from an
  ``:include:`` file (Postfix's ``allow_mail_to_*`` defaults, security.md F5);
* expansion is recursive; a name met again in its own expansion is delivered to the
  user of that name; duplicates are dropped; ``owner-NAME`` becomes the envelope
  sender of NAME's expansion; ``user+ext`` without an entry falls back to ``user``.

``AliasFormat.MSMTP`` — the file named by msmtp's ``aliases`` command: ``name: a@x,
b@y, other`` with whole-line ``#`` comments, exact (case-sensitive) names, recursion
and the ``default:`` catch-all for any bare name without an entry. Only names without
``@`` are looked up. msmtp's bug of skipping the recipient right after an expanded
alias (its iterator advances past the inserted nodes) is not reproduced: expansion
builds a new list and visits every recipient exactly once.
"""

from __future__ import annotations

import enum
import os
import stat
from collections.abc import Callable, Iterable, Sequence

from mailhop._records import NamedTuple
from mailhop.deliver.errors import DeliveryError
from mailhop.errors import ExitCode

__all__ = [
    "MAX_ALIAS_DEPTH",
    "SYSTEM_ALIASES_PATH",
    "AliasEntry",
    "AliasError",
    "AliasFormat",
    "AliasProblem",
    "AliasTable",
    "Destination",
    "DestinationKind",
    "Expansion",
    "expand",
    "load_aliases",
    "parse_aliases",
]

SYSTEM_ALIASES_PATH = "/etc/aliases"
# msmtp stops at 16 levels ("Too many redirects"); sendmail's MaxAliasRecursion is 10.
# Loops are caught by name before this; the cap bounds a very deep legitimate chain.
MAX_ALIAS_DEPTH = 16
# Postfix's duplicate_filter_limit: how many distinct destinations one message may
# expand to; a runaway :include: or list cannot make us deliver without bound.
MAX_DESTINATIONS = 1000
# An aliases or include file larger than this is not an aliases file (Debian's is
# under 1 KiB; big list files are a few hundred KiB).
MAX_ALIASES_FILE_BYTES = 8 << 20
# :include: files may name further include files; this bounds the nesting.
MAX_INCLUDE_DEPTH = 8
# msmtp's catch-all entry name in its own format.
MSMTP_DEFAULT_NAME = "default"
# sendmail/Postfix recipient_delimiter for the +extension fallback.
EXTENSION_DELIMITER = "+"
INCLUDE_PREFIX = ":include:"


class AliasError(DeliveryError):
    """An aliases file cannot be used as it is (exit 78: fix the file)."""

    exit_code = ExitCode.CONFIG


class AliasFormat(enum.Enum):
    SYSTEM = "system"  # /etc/aliases, aliases(5)
    MSMTP = "msmtp"  # msmtp's ``aliases`` file


class DestinationKind(enum.Enum):
    LOCAL_USER = "local user"  # deliver to this user's mailbox
    ADDRESS = "address"  # an address with a domain: routing decides local or relay
    FILE = "file"  # append to this file (mbox; Maildir if it ends in "/")
    COMMAND = "command"  # pipe into this command


class TargetKind(enum.Enum):
    ADDRESS = "address"
    FILE = "file"
    COMMAND = "command"
    INCLUDE = "include"


class AliasTarget(NamedTuple):
    kind: TargetKind
    value: str


class AliasEntry(NamedTuple):
    """One ``name: targets`` entry and the line it starts on."""

    name: str
    targets: tuple[AliasTarget, ...]
    line: int


class AliasProblem(NamedTuple):
    """Something wrong in an aliases file, with its line (``newaliases`` prints these)."""

    path: str
    line: int
    reason: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.reason}"


class AliasTable(NamedTuple):
    """A parsed aliases file. ``trusted``: it may name files and commands."""

    path: str
    format: AliasFormat
    entries: dict[str, AliasEntry]
    problems: tuple[AliasProblem, ...] = ()
    trusted: bool = False

    def lookup(self, name: str) -> AliasEntry | None:
        key = name.lower() if self.format is AliasFormat.SYSTEM else name
        return self.entries.get(key)


class Destination(NamedTuple):
    """Where mail for one recipient ends up after expansion.

    ``original`` is the recipient as given; ``via`` the alias names it went through;
    ``sender`` an ``owner-`` envelope sender, if one applies; ``run_as_file`` the
    aliases file a file/command destination came from (its owner's rights apply).
    """

    kind: DestinationKind
    value: str
    original: str
    via: tuple[str, ...] = ()
    sender: str | None = None
    extension: str = ""

    def __str__(self) -> str:
        chain = " -> ".join((*self.via, self.value)) if self.via else self.value
        return f"{self.kind.value} {chain}"


class Expansion(NamedTuple):
    destinations: tuple[Destination, ...]


# ---------------------------------------------------------------- parsing


def _logical_lines(text: str, aliases_format: AliasFormat) -> Iterable[tuple[int, str]]:
    """(first line number, joined text) per entry: continuations joined, comments out."""
    current: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if raw[:1] in (" ", "\t") and aliases_format is AliasFormat.SYSTEM and current:
            current.append(stripped)
            continue
        if current:
            yield start, " ".join(current)
        current = [stripped]
        start = number
    if current:
        yield start, " ".join(current)


def _split_values(text: str) -> list[str]:
    """Comma-separated values; commas inside double quotes do not split."""
    values: list[str] = []
    current: list[str] = []
    quoted = False
    escaped = False
    for character in text:
        if escaped:
            current.append(character)
            escaped = False
        elif character == "\\":
            current.append(character)
            escaped = True
        elif character == '"':
            quoted = not quoted
            current.append(character)
        elif character == "," and not quoted:
            values.append("".join(current).strip())
            current = []
        else:
            current.append(character)
    values.append("".join(current).strip())
    return values


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == '"' and value[-1] == '"':
        return value[1:-1].replace('\\"', '"').replace("\\\\", "\\")
    return value


def _target(value: str) -> AliasTarget:
    text = _unquote(value)
    if text.startswith("|"):
        return AliasTarget(kind=TargetKind.COMMAND, value=text[1:].strip())
    if text.startswith("/"):
        return AliasTarget(kind=TargetKind.FILE, value=text)
    if text.lower().startswith(INCLUDE_PREFIX):
        return AliasTarget(kind=TargetKind.INCLUDE, value=text[len(INCLUDE_PREFIX) :].strip())
    return AliasTarget(kind=TargetKind.ADDRESS, value=value)


def _split_name(line: str) -> tuple[str, str] | None:
    if line.startswith('"'):
        end = line.find('"', 1)
        if end < 0 or not line[end + 1 :].lstrip().startswith(":"):
            return None
        return line[1:end], line[end + 1 :].lstrip()[1:]
    name, colon, rest = line.partition(":")
    if not colon:
        return None
    return name.strip(), rest


def parse_targets(
    text: str, *, path: str, line: int, problems: list[AliasProblem]
) -> tuple[AliasTarget, ...]:
    """The right-hand side of an entry (or an include file's lines) as targets."""
    from mailhop.message import AddressError, parse_address_list  # noqa: PLC0415

    targets: list[AliasTarget] = []
    for value in _split_values(text):
        if not value:
            continue
        target = _target(value)
        if any(ord(character) < 32 for character in target.value):
            problems.append(AliasProblem(path=path, line=line, reason="control character"))
            continue
        if target.kind is TargetKind.ADDRESS:
            try:
                addresses = parse_address_list(value, source="alias target")
            except AddressError as error:
                problems.append(AliasProblem(path=path, line=line, reason=str(error)))
                continue
            targets.extend(
                AliasTarget(kind=TargetKind.ADDRESS, value=address.addr_spec)
                for address in addresses
            )
            continue
        if not target.value:
            problems.append(AliasProblem(path=path, line=line, reason=f"empty target {value!r}"))
            continue
        targets.append(target)
    return tuple(targets)


def parse_aliases(
    text: str, *, path: str, aliases_format: AliasFormat = AliasFormat.SYSTEM, trusted: bool = False
) -> AliasTable:
    """Parse an aliases file's ``text``; every problem is kept with its line."""
    entries: dict[str, AliasEntry] = {}
    problems: list[AliasProblem] = []
    for number, line in _logical_lines(text, aliases_format):
        split = _split_name(line)
        if split is None:
            problems.append(
                AliasProblem(path=path, line=number, reason="expected 'name: value, ...'")
            )
            continue
        name, rest = split
        if aliases_format is AliasFormat.SYSTEM:
            name = name.lower()
        if not name or ("@" in name and aliases_format is AliasFormat.MSMTP):
            problems.append(AliasProblem(path=path, line=number, reason="missing alias name"))
            continue
        known = len(problems)
        targets = parse_targets(rest, path=path, line=number, problems=problems)
        if aliases_format is AliasFormat.MSMTP:
            for target in targets:
                if target.kind is not TargetKind.ADDRESS:
                    problems.append(
                        AliasProblem(
                            path=path,
                            line=number,
                            reason=f"msmtp aliases name addresses only, not {target.kind.value}s",
                        )
                    )
            targets = tuple(t for t in targets if t.kind is TargetKind.ADDRESS)
        if not targets:
            if len(problems) > known:
                continue  # the bad targets are reported already
            problems.append(AliasProblem(path=path, line=number, reason=f"{name}: no targets"))
            continue
        if name in entries:
            problems.append(
                AliasProblem(
                    path=path,
                    line=number,
                    reason=f"duplicate entry {name!r} (first on line {entries[name].line}); "
                    "the first one is used",
                )
            )
            continue
        entries[name] = AliasEntry(name=name, targets=targets, line=number)
    return AliasTable(
        path=path,
        format=aliases_format,
        entries=entries,
        problems=tuple(problems),
        trusted=trusted,
    )


def read_trusted_text(path: str) -> tuple[str, bool]:
    """The text of ``path`` and whether it is trusted (root-owned, not group/world writable).

    Raises:
        AliasError: it cannot be read, or is not a regular file.
    """
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NOCTTY)
    except OSError as error:
        raise AliasError(f"cannot read aliases file {path}: {error.strerror}") from error
    try:
        status = os.fstat(descriptor)
        if not stat.S_ISREG(status.st_mode):
            raise AliasError(f"aliases file {path} is not a regular file")
        data = os.read(descriptor, MAX_ALIASES_FILE_BYTES + 1)
    finally:
        os.close(descriptor)
    if len(data) > MAX_ALIASES_FILE_BYTES:
        raise AliasError(f"aliases file {path} is larger than {MAX_ALIASES_FILE_BYTES} bytes")
    trusted = status.st_uid == 0 and not status.st_mode & (stat.S_IWGRP | stat.S_IWOTH)
    return data.decode("utf-8", "surrogateescape"), trusted


def load_aliases(path: str, aliases_format: AliasFormat = AliasFormat.SYSTEM) -> AliasTable:
    """Read and parse ``path`` (see ``read_trusted_text`` for trust)."""
    text, trusted = read_trusted_text(path)
    return parse_aliases(text, path=path, aliases_format=aliases_format, trusted=trusted)


# ---------------------------------------------------------------- expansion


IsLocalDomain = Callable[[str], bool]


class _Expander:
    def __init__(
        self,
        system: AliasTable | None,
        msmtp: AliasTable | None,
        is_local_domain: IsLocalDomain,
    ) -> None:
        self.system = system
        self.msmtp = msmtp
        self.is_local_domain = is_local_domain
        self.result: list[Destination] = []
        self.seen: set[tuple[DestinationKind, str]] = set()

    def add(self, destination: Destination) -> None:
        key = (destination.kind, destination.value.lower())
        if key in self.seen:
            return  # aliases(5): duplicate recipients are suppressed
        if len(self.result) >= MAX_DESTINATIONS:
            raise AliasError(
                f"{destination.original} expands to more than {MAX_DESTINATIONS} destinations"
            )
        self.seen.add(key)
        self.result.append(destination)

    # msmtp's file: only bare names, exact match, default: catch-all.
    def msmtp_expand(self, address: str, original: str, via: tuple[str, ...]) -> list[str]:
        table = self.msmtp
        if table is None or "@" in address:
            return [address]
        if len(via) >= MAX_ALIAS_DEPTH:
            raise AliasError(f"{original}: too many redirects in {table.path} (a loop?)")
        entry = table.lookup(address)
        if entry is None or address in via:
            if address in via or MSMTP_DEFAULT_NAME in via:
                return [address]
            entry = table.lookup(MSMTP_DEFAULT_NAME)
            if entry is None:
                return [address]
        found: list[str] = []
        for target in entry.targets:
            found.extend(self.msmtp_expand(target.value, original, (*via, entry.name)))
        return found

    def system_expand(
        self,
        name: str,
        original: str,
        via: tuple[str, ...],
        sender: str | None,
        table: AliasTable | None = None,
    ) -> None:
        table = table or self.system
        lower = name.lower()
        entry = table.lookup(lower) if table is not None else None
        local, _, extension = lower.partition(EXTENSION_DELIMITER)
        if entry is None and extension and table is not None:
            entry = table.lookup(local)  # aliases(5): user+foo falls back to user
        if entry is None or entry.name in via:
            # Not an alias, or found in its own expansion: deliver to the user.
            self.add(
                Destination(
                    kind=DestinationKind.LOCAL_USER,
                    value=local if extension else lower,
                    original=original,
                    via=via,
                    sender=sender,
                    extension=extension,
                )
            )
            return
        if len(via) >= MAX_ALIAS_DEPTH:
            raise AliasError(f"{original}: aliases nest deeper than {MAX_ALIAS_DEPTH} levels")
        if table is None:  # unreachable: entry came from a table
            return
        owner = table.lookup(f"owner-{entry.name}")
        if owner is not None:
            sender = f"owner-{entry.name}"
        self.targets(entry.targets, table, original, (*via, entry.name), sender, trusted=True)

    def targets(
        self,
        targets: Sequence[AliasTarget],
        table: AliasTable,
        original: str,
        via: tuple[str, ...],
        sender: str | None,
        *,
        trusted: bool,
        include_depth: int = 0,
    ) -> None:
        for target in targets:
            if target.kind is TargetKind.ADDRESS:
                self.address(target.value, original, via, sender)
                continue
            if target.kind is TargetKind.INCLUDE:
                self.include(
                    target.value,
                    table=table,
                    original=original,
                    via=via,
                    sender=sender,
                    depth=include_depth,
                )
                continue
            if not (trusted and table.trusted):
                where = "an :include: file" if not trusted else table.path
                raise AliasError(
                    f"{original}: {target.kind.value} target {target.value!r} refused: "
                    f"{where} is not owned by root or is writable by others, or files and "
                    "commands are not allowed there",
                    exit_code=ExitCode.CONFIG,
                )
            kind = (
                DestinationKind.FILE if target.kind is TargetKind.FILE else DestinationKind.COMMAND
            )
            self.add(
                Destination(
                    kind=kind, value=target.value, original=original, via=via, sender=sender
                )
            )

    def include(
        self,
        path: str,
        *,
        table: AliasTable,
        original: str,
        via: tuple[str, ...],
        sender: str | None,
        depth: int,
    ) -> None:
        if depth >= MAX_INCLUDE_DEPTH:
            raise AliasError(f"{original}: :include: files nest deeper than {MAX_INCLUDE_DEPTH}")
        text, _trusted = read_trusted_text(path)
        problems: list[AliasProblem] = []
        targets: list[AliasTarget] = []
        for number, line in enumerate(text.splitlines(), start=1):
            stripped = line.strip()
            if stripped and not stripped.startswith("#"):
                targets.extend(parse_targets(stripped, path=path, line=number, problems=problems))
        if problems:
            raise AliasError(f"{original}: {problems[0]}")
        # Postfix's allow_mail_to_files/commands default: never from :include: files.
        self.targets(targets, table, original, via, sender, trusted=False, include_depth=depth + 1)

    def address(
        self, address: str, original: str, via: tuple[str, ...], sender: str | None
    ) -> None:
        local, at, domain = address.rpartition("@")
        if not at:
            self.system_expand(address, original, via, sender)
        elif self.is_local_domain(domain):
            self.system_expand(local, original, via, sender)
        else:
            self.add(
                Destination(
                    kind=DestinationKind.ADDRESS,
                    value=address,
                    original=original,
                    via=via,
                    sender=sender,
                )
            )


def expand(
    recipients: Sequence[str],
    *,
    system: AliasTable | None,
    msmtp: AliasTable | None = None,
    is_local_domain: IsLocalDomain,
) -> Expansion:
    """Where mail for each of ``recipients`` goes, in order, without duplicates.

    msmtp's aliases apply first (to bare names, as msmtp applies them before
    sending); then each address that is local (no domain, or ``is_local_domain``)
    goes through the system aliases; what remains is a local user, a file, a
    command, or a remote address.

    Raises:
        AliasError: a file or command target from an untrusted file, a loop deeper
            than ``MAX_ALIAS_DEPTH``, an unreadable include file (exit 78).
    """
    expander = _Expander(system, msmtp, is_local_domain)
    for recipient in recipients:
        for address in expander.msmtp_expand(recipient, recipient, ()):
            expander.address(address, recipient, (), None)
    return Expansion(destinations=tuple(expander.result))
