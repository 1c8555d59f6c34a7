"""Which configuration files are read, the secrets check, and how they merge.

Lookup (each level independently; mailhop's own file wins, msmtp's is the drop-in):

* system: ``SYSCONFDIR/mailhop/config``, else ``SYSCONFDIR/msmtprc``; a missing file
  is fine, an invalid one is an error; never checked for permissions (as msmtp);
* user: ``-C FILE`` if given (then it must exist), else
  ``$XDG_CONFIG_HOME/mailhop/config``, else ``~/.msmtprc``, else
  ``$XDG_CONFIG_HOME/msmtp/config`` (``XDG_CONFIG_HOME`` defaults to ``~/.config``).

The user file is read once through one descriptor, and the secrets check looks
at that same descriptor: a user file with a ``password`` line (not produced by
``eval``) must be owned by the user and give no permission to anyone else, or
mailhop refuses it and prints the ``chmod 600`` to run. Unlike msmtp the check
also applies to root: root's ``~/.msmtprc`` must not leak a password either, and
a file owned by someone else must not feed commands (``eval``) to root.

Merge: the user's accounts first, then the system accounts whose names the user
file does not define; ``-f`` picks the *first* account whose ``from`` matches.
"""

from __future__ import annotations

import errno
import os
import stat

from mailhop._records import NamedTuple
from mailhop.config import msmtprc
from mailhop.config.environment import Environment
from mailhop.config.errors import InsecureConfigError
from mailhop.config.model import Account
from mailhop.errors import ConfigError, ExitCode

# Permission bits a file with secrets must not have: user execute, and every
# group and other bit (msmtp's check; ``chmod 600`` clears them all).
INSECURE_MODE_BITS = stat.S_IXUSR | stat.S_IRWXG | stat.S_IRWXO


class Configuration(NamedTuple):
    """The merged accounts and what loading said (``--pretend`` prints ``messages``)."""

    accounts: tuple[Account, ...]
    system_file: str | None  # the system file that was loaded, if any
    user_file: str | None  # the user file that was loaded, if any
    messages: tuple[str, ...]  # "loaded user configuration file X", "ignoring ..."

    def find(self, name: str) -> Account | None:
        for account in self.accounts:
            if account.name == name:
                return account
        return None


def system_config_path(environment: Environment) -> str:
    own = os.path.join(environment.sysconfdir, "mailhop", "config")
    if os.path.exists(own):
        return own
    return os.path.join(environment.sysconfdir, "msmtprc")


def user_config_path(environment: Environment) -> str:
    """The user file mailhop reads without ``-C`` (it may not exist)."""
    xdg = environment.xdg_config_home
    msmtprc_path = os.path.join(environment.home, ".msmtprc")
    for candidate in (
        os.path.join(xdg, "mailhop", "config"),
        msmtprc_path,
        os.path.join(xdg, "msmtp", "config"),
    ):
        if os.path.exists(candidate):
            return candidate
    return msmtprc_path


def load(
    config_file: str | None = None,
    *,
    environment: Environment | None = None,
) -> Configuration:
    """Read the system file and the user file (``config_file`` replaces the latter).

    Raises:
        ConfigSyntaxError: a file has a wrong line (file and line named).
        InsecureConfigError: the user file holds a password and others may read it.
        CommandFailedError: an ``eval`` line failed.
        ConfigError: ``config_file`` cannot be read (exit 74, as msmtp).
    """
    environment = environment or Environment.from_process()
    messages: list[str] = []

    system_path = system_config_path(environment)
    system = _read(system_path, environment, check_secrets=False)
    if isinstance(system, OSError):
        messages.append(f"ignoring system configuration file {system_path}: {_reason(system)}")
        system_accounts: tuple[Account, ...] = ()
        system_file = None
    else:
        messages.append(f"loaded system configuration file {system_path}")
        system_accounts = system.accounts
        system_file = system_path

    user_path = config_file if config_file is not None else user_config_path(environment)
    user = _read(user_path, environment, check_secrets=True)
    if isinstance(user, OSError):
        if config_file is not None:
            raise ConfigError(f"{user_path}: {_reason(user)}", exit_code=ExitCode.IOERR)
        messages.append(f"ignoring user configuration file {user_path}: {_reason(user)}")
        user_accounts: tuple[Account, ...] = ()
        user_file = None
    else:
        messages.append(f"loaded user configuration file {user_path}")
        user_accounts = user.accounts
        user_file = user_path

    user_names = {account.name for account in user_accounts}
    merged = user_accounts + tuple(a for a in system_accounts if a.name not in user_names)
    return Configuration(
        accounts=merged,
        system_file=system_file,
        user_file=user_file,
        messages=tuple(messages),
    )


def _reason(error: OSError) -> str:
    return error.strerror or str(error)


def _read(
    path: str, environment: Environment, *, check_secrets: bool
) -> msmtprc.ParsedFile | OSError:
    """Parse ``path``; an ``OSError`` from opening or reading it is returned, not raised."""
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as error:
        return error
    try:
        status = os.fstat(descriptor)
        if stat.S_ISDIR(status.st_mode):
            return IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR))
        chunks: list[bytes] = []
        size = 0
        while chunk := os.read(descriptor, 65536):
            chunks.append(chunk)
            size += len(chunk)
            if size > msmtprc.MAX_FILE_BYTES:
                raise ConfigError(
                    f"{path}: larger than {msmtprc.MAX_FILE_BYTES} bytes; "
                    "this is not a configuration file"
                )
    except OSError as error:
        return error
    finally:
        os.close(descriptor)
    parsed = msmtprc.parse(b"".join(chunks), path, environment)
    if check_secrets and parsed.contains_secrets:
        check_secure(path, status, environment)
    return parsed


def check_secure(path: str, status: os.stat_result, environment: Environment) -> None:
    """Refuse a file holding a password that others may read or change.

    Regular files and pipes (``-C <(gpg -d rc.gpg)``) are accepted when owned by
    the effective user and without group/other (or user-execute) permission bits.

    Raises:
        InsecureConfigError: with the command that fixes it.
    """
    if not (stat.S_ISREG(status.st_mode) or stat.S_ISFIFO(status.st_mode)):
        raise InsecureConfigError(f"{path}: contains secrets and therefore must be a regular file")
    if status.st_uid != environment.euid:
        quoted = _shell_quoted(path)
        raise InsecureConfigError(
            f"{path}: contains secrets and therefore must be owned by you "
            f"(uid {environment.euid}, not {status.st_uid}); "
            f"run: chown {environment.euid} {quoted} && chmod 600 {quoted}"
        )
    if status.st_mode & INSECURE_MODE_BITS:
        raise InsecureConfigError(
            f"{path}: contains secrets and therefore must have no more than user "
            f"read/write permissions (mode {stat.S_IMODE(status.st_mode):03o}); "
            f"run: chmod 600 {_shell_quoted(path)}"
        )


def _shell_quoted(path: str) -> str:
    """``path`` as the fix command a user pastes into a shell must spell it."""
    import shlex  # noqa: PLC0415 - only on the error path: every send with a password checks

    return shlex.quote(path)
