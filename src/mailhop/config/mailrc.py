"""The mail.rc grammar of the mailx family, and an SMTP account built from its variables.

Scripts written for "mailx with SMTP" keep their settings in ``/etc/mail.rc`` (bsd-mailx,
GNU, Heirloom), ``/etc/s-nail.rc`` (s-nail on Debian), ``$MAILRC`` or ``~/.mailrc``, or pass
them with ``-S var=value``. This module reads those files (mailx.md §1.4) and turns the
SMTP variables (mailx.md §1.3) into the same typed ``Account`` the msmtprc grammar
produces, so the ``mail`` personality obeys exactly the TLS and AUTH rules of sendmail.

Grammar (the subset all four share, plus s-nail's ``account`` blocks)::

    # comment                      only at the start of a line
    set name  name=value  name="a b"  noname     several per line; noNAME unsets
    unset name ...
    account NAME {                 a block applied only with -A NAME
        set ...
    }
    anything else                  alias, ignore, retain, define, if ...: skipped

A line ending in a backslash continues on the next line. Values are quoted as a POSIX
shell quotes words (``'...'``, ``"..."``, ``\\``); nothing is ever expanded or run.

Deliberately not honoured: environment variables as mailx variables (Heirloom does it;
Debian's 2000 advisory shows why not, mailx.md §4.4) and ``dot`` for piped input (Debian's
shared /etc/mail.rc sets it and GNU mail then cuts a piped body at a lone ``.``; §1.2).

A file that holds a password (``smtp-auth-password``, ``password``, or an ``mta``/``smtp``
URL with ``user:password@``) must be as private as an msmtprc with one: owned by the
user and mode 600 (``config.files.check_secure``); a system file holding a password must
at least not be readable by everyone.
"""

from __future__ import annotations

import dataclasses
import os
import shlex
import stat
from collections.abc import Iterable, Mapping, Sequence

from mailhop.config.accounts import check_account, complete
from mailhop.config.environment import Environment
from mailhop.config.errors import AccountError, ConfigSyntaxError, InsecureConfigError
from mailhop.config.files import check_secure
from mailhop.config.model import Account, Auth
from mailhop.errors import ConfigError, ExitCode, UsageError

__all__ = [
    "MAX_FILE_BYTES",
    "MailSettings",
    "ParsedMailrc",
    "SmtpServer",
    "load_settings",
    "parse",
    "rc_files",
    "smtp_account",
    "smtp_server",
]

# A mail.rc is a few dozen lines; anything larger is not one, and we read it into memory.
MAX_FILE_BYTES = 1024 * 1024
# s-nail documents no limit, but a line (with continuations) longer than this is not a
# setting anybody wrote by hand.
MAX_LINE_CHARACTERS = 64 * 1024
# s-nail's and Heirloom's default port for ``smtp://`` and a bare ``smtp=host``
# (RFC 5321 §4.5.4 / port 25), for ``submission://`` (RFC 6409 §3.1) and for
# ``smtps://``/``submissions://`` (RFC 8314 §7.3: implicit TLS on 465).
SMTP_PORT = 25
SUBMISSION_PORT = 587
SUBMISSIONS_PORT = 465
# The account name shown in messages for settings that came from mail.rc and -S.
MAILRC_ACCOUNT = "mail.rc"

# Variables that hold a secret; a file setting one is checked like an msmtprc with a
# password. ``smtp-auth-password-USER@HOST`` variants count too (prefix match).
_SECRET_VARIABLES = ("smtp-auth-password", "password")
_URL_VARIABLES = ("mta", "smtp")


@dataclasses.dataclass(frozen=True, kw_only=True)
class ParsedMailrc:
    """One file: its top-level operations in order and its ``account`` blocks."""

    path: str
    # (name, value) in file order; value None means ``unset name`` / ``set noname``.
    # Values may be secrets (smtp-auth-password, a URL with user:password@): never
    # in a repr, so never in a traceback or a log (DESIGN.md §4.7).
    operations: tuple[tuple[str, str | None], ...] = dataclasses.field(repr=False)
    accounts: Mapping[str, tuple[tuple[str, str | None], ...]] = dataclasses.field(repr=False)
    contains_secrets: bool


@dataclasses.dataclass(frozen=True, kw_only=True)
class MailSettings:
    """The variables in force after every rc file, ``-A`` and ``-S`` (``-S`` wins)."""

    # A boolean variable that is set has the value "". Values may be secrets: no repr.
    variables: Mapping[str, str] = dataclasses.field(repr=False)
    files: tuple[str, ...]  # the files read, in order (for messages)

    def get(self, name: str) -> str | None:
        return self.variables.get(name)

    def is_set(self, name: str) -> bool:
        return name in self.variables


@dataclasses.dataclass(frozen=True, kw_only=True)
class SmtpServer:
    """Where ``smtp``/``mta`` say the mail goes, before it becomes an ``Account``."""

    host: str
    port: int
    implicit_tls: bool  # smtps://, submissions://, or port 465
    starttls: bool  # submission://, or smtp-use-starttls
    user: str | None  # from the URL, percent-decoded
    password: str | None = dataclasses.field(default=None, repr=False)


def _operations_of(words: Sequence[str], path: str, number: int) -> list[tuple[str, str | None]]:
    command, arguments = words[0], words[1:]
    operations: list[tuple[str, str | None]] = []
    if command in ("set", "se"):
        for word in arguments:
            name, equals, value = word.partition("=")
            if not name:
                raise ConfigSyntaxError(path, number, f"'set {word}' names no variable")
            if not equals and name.startswith("no") and len(name) > 2:
                operations.append((name[2:], None))
            else:
                operations.append((name, value))
    elif command in ("unset", "uns"):
        operations.extend((name, None) for name in arguments)
    return operations


def _logical_lines(text: str) -> Iterable[tuple[int, str]]:
    """Lines with backslash-newline continuations joined, numbered from 1."""
    pending = ""
    start = 0
    for number, line in enumerate(text.split("\n"), start=1):
        if not pending:
            start = number
        if line.endswith("\\") and not line.endswith("\\\\"):
            pending += line[:-1]
        else:
            yield start, pending + line
            pending = ""
        if len(pending) > MAX_LINE_CHARACTERS:
            raise ConfigSyntaxError("", start, f"a line longer than {MAX_LINE_CHARACTERS}")
    if pending:
        yield start, pending


def parse(data: bytes, path: str) -> ParsedMailrc:
    """Parse the text of one mail.rc file.

    Raises:
        ConfigSyntaxError: an unterminated quote or account block (file and line named).
    """
    text = data.decode("utf-8", "surrogateescape")
    operations: list[tuple[str, str | None]] = []
    accounts: dict[str, tuple[tuple[str, str | None], ...]] = {}
    block: list[tuple[str, str | None]] | None = None
    block_name = ""
    block_line = 0
    for number, line in _logical_lines(text):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        try:
            words = shlex.split(stripped, comments=False, posix=True)
        except ValueError as error:
            raise ConfigSyntaxError(path, number, f"cannot read the line: {error}") from None
        if not words:
            continue
        if block is not None:
            if words == ["}"]:
                accounts[block_name] = tuple(block)
                block = None
                continue
            block.extend(_operations_of(words, path, number))
            continue
        if words[0] in ("account", "acc"):
            if len(words) != 3 or words[2] != "{":
                # ``account NAME`` alone switches accounts interactively: not for us.
                continue
            block, block_name, block_line = [], words[1], number
            continue
        operations.extend(_operations_of(words, path, number))
    if block is not None:
        raise ConfigSyntaxError(path, block_line, f"account {block_name} has no closing '}}'")
    every = [*operations, *(op for ops in accounts.values() for op in ops)]
    return ParsedMailrc(
        path=path,
        operations=tuple(operations),
        accounts=accounts,
        contains_secrets=any(_is_secret(name, value) for name, value in every),
    )


def _is_secret(name: str, value: str | None) -> bool:
    if value is None:
        return False
    if any(name == secret or name.startswith(secret + "-") for secret in _SECRET_VARIABLES):
        return True
    if name in _URL_VARIABLES and "://" in value:
        authority = value.split("://", 1)[1].split("/", 1)[0]
        return "@" in authority and ":" in authority.rsplit("@", 1)[0]
    return False


def rc_files(
    environment: Environment, *, skip_system: bool = False
) -> tuple[tuple[str, bool], ...]:
    """The files to read, in order, each with "is a system file" (mailx.md §1.4).

    System: ``SYSCONFDIR/mail.rc`` then ``SYSCONFDIR/s-nail.rc``, skipped with ``-n`` or
    ``MAILX_NO_SYSTEM_RC``. User: ``$MAILRC`` if set (empty: none), else ``~/.mailrc``.
    """
    files: list[tuple[str, bool]] = []
    if not skip_system and "MAILX_NO_SYSTEM_RC" not in environment.variables:
        for name in ("mail.rc", "s-nail.rc"):
            files.append((os.path.join(environment.sysconfdir, name), True))
    user = environment.variables.get("MAILRC")
    if user is None:
        user = os.path.join(environment.home, ".mailrc")
    if user:
        files.append((environment.expand_tilde(user), False))
    return tuple(files)


def _read(path: str, *, system: bool, environment: Environment) -> ParsedMailrc | None:
    """Parse ``path``; None when it does not exist."""
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError as error:
        raise ConfigError(f"{path}: {error.strerror or error}", exit_code=ExitCode.IOERR) from error
    try:
        status = os.fstat(descriptor)
        if stat.S_ISDIR(status.st_mode):
            raise ConfigError(f"{path}: is a directory, not a mail.rc file")
        data = os.read(descriptor, MAX_FILE_BYTES + 1)
    except OSError as error:
        raise ConfigError(f"{path}: {error.strerror or error}", exit_code=ExitCode.IOERR) from error
    finally:
        os.close(descriptor)
    if len(data) > MAX_FILE_BYTES:
        raise ConfigError(f"{path}: larger than {MAX_FILE_BYTES} bytes; not a mail.rc file")
    parsed = parse(data, path)
    if parsed.contains_secrets:
        if system:
            _check_system_secrets(path, status)
        else:
            check_secure(path, status, environment)
    return parsed


def _check_system_secrets(path: str, status: os.stat_result) -> None:
    # A system file is owned by root and read by every user of the mail command, so it
    # cannot be 600; but a password in it must not be readable by *every* account, nor
    # may anyone but root change it.
    if status.st_uid not in (0, os.geteuid()) or status.st_mode & (stat.S_IRWXO | stat.S_IWGRP):
        quoted = shlex.quote(path)
        raise InsecureConfigError(
            f"{path}: contains a password and therefore must be owned by root and not "
            f"readable by others (mode {stat.S_IMODE(status.st_mode):03o}); run: "
            f"chmod 640 {quoted} and give the group to the users who may send, or move "
            "the password to ~/.mailrc (mode 600) or ~/.netrc"
        )


def load_settings(
    environment: Environment,
    *,
    skip_system: bool = False,
    account: str | None = None,
    command_line: Sequence[tuple[str, str | None]] = (),
) -> MailSettings:
    """Read the rc files, apply ``account`` (``-A``), then ``command_line`` (``-S``).

    Raises:
        ConfigError: a file cannot be read, is wrong, or leaks a password (78/74).
        UsageError: ``-A NAME`` names no account block of any file (64).
    """
    variables: dict[str, str] = {}
    blocks: dict[str, tuple[tuple[str, str | None], ...]] = {}
    read: list[str] = []
    for path, system in rc_files(environment, skip_system=skip_system):
        parsed = _read(path, system=system, environment=environment)
        if parsed is None:
            continue
        read.append(path)
        _apply(variables, parsed.operations)
        blocks.update(parsed.accounts)
    if account is not None:
        if account not in blocks:
            where = " or ".join(read) if read else "no mail.rc file found"
            raise UsageError(f"-A {account}: no 'account {account} {{ ... }}' block in {where}")
        _apply(variables, blocks[account])
    _apply(variables, command_line)
    return MailSettings(variables=variables, files=tuple(read))


def _apply(variables: dict[str, str], operations: Iterable[tuple[str, str | None]]) -> None:
    for name, value in operations:
        if value is None:
            variables.pop(name, None)
        else:
            variables[name] = value


def _percent_decoded(text: str, what: str) -> str:
    from urllib.parse import unquote  # noqa: PLC0415 - only for URL settings

    decoded = unquote(text, errors="strict")
    if any(ord(character) < 32 or character == "\x7f" for character in decoded):
        raise ConfigError(f"the {what} in the mta URL contains a control character")
    return decoded


def smtp_server(settings: MailSettings) -> SmtpServer | None:
    """The SMTP server ``smtp`` or ``mta`` name, or None (then a sendmail program is used).

    The legacy ``smtp`` wins over ``mta`` as in s-nail. ``mta`` values that are a path
    (or ``file://``) are not SMTP servers.

    Raises:
        ConfigError: an unknown scheme or an unreadable host:port (78).
    """
    legacy = settings.get("smtp")
    modern = settings.get("mta")
    value, variable = (legacy, "smtp") if legacy else (modern, "mta")
    if not value:
        return None
    if "://" in value:
        scheme, rest = value.split("://", 1)
        scheme = scheme.lower()
    elif variable == "smtp":
        scheme, rest = "smtp", value
    else:
        return None  # mta=/usr/sbin/sendmail: a program
    if scheme == "file":
        return None
    defaults = {
        "smtp": (SMTP_PORT, False, False),
        "submission": (SUBMISSION_PORT, False, True),
        "smtps": (SUBMISSIONS_PORT, True, False),
        "submissions": (SUBMISSIONS_PORT, True, False),
    }
    if scheme not in defaults:
        raise ConfigError(
            f"{variable}={value}: unknown scheme {scheme}://; use smtp://, submission://, "
            "smtps:// or submissions://"
        )
    port, implicit_tls, starttls = defaults[scheme]
    authority = rest.split("/", 1)[0]
    user: str | None = None
    password: str | None = None
    if "@" in authority:
        credentials, authority = authority.rsplit("@", 1)
        raw_user, colon, raw_password = credentials.partition(":")
        user = _percent_decoded(raw_user, "user name") if raw_user else None
        password = _percent_decoded(raw_password, "password") if colon else None
    host, port = _host_and_port(authority, port, f"{variable}={value}")
    if port == SUBMISSIONS_PORT:
        # RFC 8314 §3.3: 465 is implicit TLS; a plain connect there would just hang.
        implicit_tls = True
    return SmtpServer(
        host=host,
        port=port,
        implicit_tls=implicit_tls,
        starttls=starttls and not implicit_tls,
        user=user,
        password=password,
    )


def _host_and_port(authority: str, default: int, setting: str) -> tuple[str, int]:
    host, port_text = authority, ""
    if authority.startswith("["):
        end = authority.find("]")
        if end < 0:
            raise ConfigError(f"{setting}: unclosed '[' in the host")
        host, port_text = authority[1:end], authority[end + 1 :].removeprefix(":")
    elif authority.count(":") == 1:
        host, port_text = authority.split(":")
    if not host or any(not (character.isalnum() or character in "-._:") for character in host):
        raise ConfigError(f"{setting}: {host!r} is not a host name or address")
    if not port_text:
        return host, default
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ConfigError(f"{setting}: port {port_text!r} is not a number from 1 to 65535")
    return host, int(port_text)


_AUTH_NAMES = {
    "none": Auth.NONE,
    "plain": Auth.PLAIN,
    "login": Auth.LOGIN,
    "cram-md5": Auth.CRAM_MD5,
    "scram-sha-1": Auth.SCRAM_SHA_1,
    "scram-sha-256": Auth.SCRAM_SHA_256,
    "gssapi": Auth.GSSAPI,
    "external": Auth.EXTERNAL,
    "oauthbearer": Auth.OAUTHBEARER,
    "xoauth2": Auth.XOAUTH2,
}


def smtp_account(
    settings: MailSettings,
    server: SmtpServer,
    *,
    envelope_from: str,
    environment: Environment | None = None,
) -> Account:
    """An msmtp-style account for ``server`` with the mail.rc TLS/AUTH variables.

    TLS: implicit on 465 / ``smtps://`` / ``submissions://``; STARTTLS *required* with
    ``smtp-use-starttls`` or ``submission://``. Certificates are always verified
    (``ssl-verify``/``tls-verify`` ``ask`` and ``warn`` mean "verify" here: nobody answers
    a question in a script) unless they say ``ignore``; ``ssl-ca-file``/``tls-ca-file``
    replace the system store. AUTH: ``smtp-auth`` names the method; a user without it
    means "the best method offered". Without TLS, AUTH is refused by the session (no
    plaintext password), exactly as for an msmtprc account.

    Raises:
        ConfigError: an unknown ``smtp-auth`` or ``ssl-verify`` value, or an account
            that cannot work (78).
    """
    environment = environment or Environment.from_process()
    variables = settings.variables
    starttls = server.starttls or "smtp-use-starttls" in variables
    tls = server.implicit_tls or starttls
    verify = (variables.get("tls-verify") or variables.get("ssl-verify") or "strict").lower()
    if verify not in ("strict", "ask", "warn", "ignore"):
        raise ConfigError(f"ssl-verify={verify}: use strict, ask, warn or ignore")
    user = variables.get("smtp-auth-user") or server.user or variables.get("user")
    password = variables.get("smtp-auth-password") or server.password or variables.get("password")
    method = variables.get("smtp-auth")
    if method is not None and method.lower() not in _AUTH_NAMES:
        raise ConfigError(
            f"smtp-auth={method}: unknown method; use one of {', '.join(sorted(_AUTH_NAMES))}"
        )
    # A user without a method: the best method the server offers (msmtp's "auth on").
    auth = Auth.CHOOSE if user else Auth.NONE
    if method is not None:
        auth = _AUTH_NAMES[method.lower()]
    trust = variables.get("tls-ca-file") or variables.get("ssl-ca-file")
    domain = variables.get("smtp-hostname") or variables.get("hostname")
    fields: dict[str, object] = {
        "host": server.host,
        "port": server.port,
        "tls": tls,
        "tls_starttls": not server.implicit_tls,
        "tls_certcheck": verify != "ignore",
        "auth": auth,
        "user": user,
        "password": password,
        "from_address": envelope_from,
    }
    if trust:
        fields["tls_trust_file"] = environment.expand_tilde(trust)
    if domain:
        fields["domain"] = domain
    account = Account(name=MAILRC_ACCOUNT, explicit=frozenset(fields), **fields)  # type: ignore[arg-type]
    account = complete(account, environment=environment)
    try:
        check_account(account)
    except AccountError as error:
        raise AccountError(f"{error} (from {', '.join(settings.files) or '-S'})") from None
    return account
