"""What the configuration layer reads from the process: home, variables, paths, ids.

Everything that msmtp takes from the running system (``$HOME``, ``$XDG_CONFIG_HOME``,
``SYSCONFDIR``, the effective uid, the host name, ``/etc/mailname``, ``/dev/tty``)
is gathered in one frozen ``Environment`` so tests can point all of it at a
temporary directory and never read the real ``/etc`` or ``~``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from mailhop._records import NamedTuple


class Environment(NamedTuple):
    """The process facts the configuration depends on."""

    home: str
    variables: Mapping[str, str]
    euid: int
    sysconfdir: str = "/etc"
    # Login name for %U when neither $USER nor $LOGNAME is set.
    login_name: str | None = None
    # Host name for %H when $HOSTNAME is not set; None: ask the system.
    hostname: str | None = None
    # First line gives %M; None: SYSCONFDIR/mailname as msmtp reads it.
    mailname_file: str | None = None
    # The terminal a password prompt may use (never standard input: it carries the mail).
    tty: str = "/dev/tty"

    @classmethod
    def from_process(cls) -> Environment:
        """The environment of the running process."""
        variables = dict(os.environ)
        home = variables.get("HOME") or _password_entry_home()
        return cls(home=home, variables=variables, euid=os.geteuid())

    @property
    def xdg_config_home(self) -> str:
        return self.variables.get("XDG_CONFIG_HOME") or os.path.join(self.home, ".config")

    @property
    def mailname_path(self) -> str:
        return self.mailname_file or os.path.join(self.sysconfdir, "mailname")

    def expand_tilde(self, path: str) -> str:
        """msmtp's rule: a leading ``~`` becomes the home directory, nothing else."""
        if path.startswith("~"):
            return self.home + path[1:]
        return path

    def user_name(self) -> str:
        """``%U``: ``$USER``, then ``$LOGNAME``, then the login name of the uid."""
        for name in ("USER", "LOGNAME"):
            value = self.variables.get(name)
            if value:
                return value
        if self.login_name:
            return self.login_name
        import pwd  # noqa: PLC0415 - rarely needed

        return pwd.getpwuid(os.getuid()).pw_name

    def host_name(self) -> str:
        """``%H``: ``$HOSTNAME``, then the system host name."""
        value = self.variables.get("HOSTNAME") or self.hostname
        if value:
            return value
        import socket  # noqa: PLC0415 - only for %H/%C

        return socket.gethostname()

    def canonical_host_name(self) -> str:
        """``%C``: the canonical name of ``%H`` from the resolver, else ``%H`` itself."""
        import socket  # noqa: PLC0415 - only for %C

        name = self.host_name()
        try:
            results = socket.getaddrinfo(name, None, flags=socket.AI_CANONNAME)
        except OSError:
            return name
        for result in results:
            if result[3]:
                return result[3]
        return name


def _password_entry_home() -> str:
    import pwd  # noqa: PLC0415 - only without $HOME

    return pwd.getpwuid(os.getuid()).pw_dir
