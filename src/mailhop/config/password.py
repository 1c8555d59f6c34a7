"""Where the password of an account comes from, in msmtp's order, at AUTH time.

1. ``password`` in the configuration file;
2. ``passwordeval``: the first line its command prints. A plain argv (``gpg -q
   --decrypt /home/u/.msmtp.gpg``) runs without a shell; anything with shell
   syntax (``pass show x | head -1``, ``~``) runs through ``/bin/sh -c`` on purpose:
   it is the user's own file. Unlike msmtp the exit status counts: a failing
   command's output is never used (``echo tok; exit 3`` is refused, exit 78);
3. the system keyring with msmtp's Secret Service attributes, so entries made
   with ``secret-tool store --label=msmtp host H service smtp user U`` are found
   (through ``secret-tool`` when installed), then the optional ``keyring`` package
   (service ``smtp://HOST``, user name ``USER``);
4. ``~/.netrc``, then ``SYSCONFDIR/netrc`` (machine = host, login = user);
5. a prompt on the terminal, only if ``/dev/tty`` opens (stdin carries the mail).

The keyring and netrc use ``host``, or ``socket`` when that is set, as msmtp does.
No password is ever logged, printed or put in an exception message.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

from mailhop.config import _commands
from mailhop.config.environment import Environment
from mailhop.config.model import Account, Auth

# Service name mailhop uses with the ``keyring`` package (which has no attributes).
KEYRING_SERVICE_FORMAT = "smtp://{host}"
# ``secret-tool lookup`` talks to a local D-Bus service; it answers in milliseconds
# or is stuck waiting for an unlock prompt that nobody will answer.
SECRET_TOOL_TIMEOUT_SECONDS = 30.0
# A password typed at the prompt; longer input is cut (no one types more).
MAX_PROMPT_INPUT_BYTES = 4096


def get_password(
    account: Account,
    *,
    environment: Environment | None = None,
    interactive: bool = True,
    passwordeval_timeout: float = _commands.DEFAULT_PASSWORDEVAL_TIMEOUT_SECONDS,
) -> str | None:
    """The password for ``account``, or None when no source has one.

    For an OAuth2 account (``auth xoauth2``/``oauthbearer`` with a token endpoint) the
    "password" is the access token ``mailhop oauth login`` stored, refreshed when it
    is about to expire; so sendmail, the queue and fetch all get a fresh token here.
    ``interactive`` False skips the terminal prompt (queue runners, tests).

    Raises:
        CommandFailedError: ``passwordeval`` failed, timed out or printed nothing (78).
        OAuthError: no token yet, or the refresh was refused (77) or failed (75).
    """
    if account.auth in (Auth.XOAUTH2, Auth.OAUTHBEARER) and account.oauth_token_endpoint:
        from mailhop.config.oauth import access_token  # noqa: PLC0415 - OAuth accounts only

        return access_token(account, environment=environment)
    if account.password is not None:
        return account.password
    if account.passwordeval is not None:
        return run_passwordeval(account, timeout=passwordeval_timeout)
    environment = environment or Environment.from_process()
    host = account.socket or account.host
    if host is None:
        return None
    user = account.user
    if user is not None:
        found = keyring_password(host, user, environment=environment)
        if found is not None:
            return found
    found = netrc_password(host, user, environment=environment)
    if found is not None:
        return found
    if interactive:
        return prompt_password(host, user or "", environment=environment)
    return None


def run_passwordeval(account: Account, *, timeout: float) -> str:
    """Run the account's ``passwordeval`` and return its first output line."""
    command = account.passwordeval
    if command is None:
        raise ValueError("account has no passwordeval")
    return _commands.first_line(
        command,
        use_shell=_commands.needs_shell(command),
        timeout=timeout,
        what=f"passwordeval of {account.where}",
    )


def keyring_password(host: str, user: str, *, environment: Environment) -> str | None:
    """Look in the Secret Service (msmtp's attributes), then the ``keyring`` package."""
    found = _secret_tool_lookup(host, user, environment)
    if found is not None:
        return found
    return _keyring_package_lookup(host, user)


def _secret_tool_lookup(host: str, user: str, environment: Environment) -> str | None:
    import shutil  # noqa: PLC0415 - AUTH time only

    program = shutil.which("secret-tool", path=environment.variables.get("PATH", os.defpath))
    if program is None:
        return None
    import subprocess  # noqa: PLC0415 - AUTH time only

    # msmtp's schema first, then the legacy network-password attributes that
    # libgnome-keyring used (msmtp looks there too).
    for attributes in (
        ["host", host, "service", "smtp", "user", user],
        ["user", user, "protocol", "smtp", "server", host],
    ):
        try:
            completed = subprocess.run(
                [program, "lookup", *attributes],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                timeout=SECRET_TOOL_TIMEOUT_SECONDS,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired):
            return None
        if completed.returncode == 0 and completed.stdout:
            secret = completed.stdout.decode("utf-8", "surrogateescape")
            return secret.removesuffix("\n")
    return None


def _keyring_package_lookup(host: str, user: str) -> str | None:
    try:
        import keyring  # noqa: PLC0415 - optional and slow to import
        import keyring.errors  # noqa: PLC0415
    except ImportError:
        return None
    try:
        secret: str | None = keyring.get_password(KEYRING_SERVICE_FORMAT.format(host=host), user)
    except keyring.errors.KeyringError:
        return None
    return secret


def netrc_password(host: str, user: str | None, *, environment: Environment) -> str | None:
    """``~/.netrc`` then ``SYSCONFDIR/netrc``: the first ``machine host`` entry whose
    ``login`` is ``user`` (any login when ``user`` is None)."""
    for path in (
        os.path.join(environment.home, ".netrc"),
        os.path.join(environment.sysconfdir, "netrc"),
    ):
        try:
            with open(path, encoding="utf-8", errors="surrogateescape") as file:
                text = file.read()
        except OSError:
            continue
        for machine, login, password in _netrc_entries(text):
            if machine == host and (user is None or login == user) and password is not None:
                return password
    return None


def _netrc_entries(text: str) -> Iterator[tuple[str | None, str | None, str | None]]:
    """``(machine, login, password)`` per entry; ``default`` gives machine None.

    The grammar of ftp(1)'s netrc: whitespace-separated tokens, ``machine`` /
    ``default`` start an entry, ``macdef`` bodies run to an empty line and are skipped.
    """
    words = _netrc_tokens(text)
    machine: str | None = None
    login: str | None = None
    password: str | None = None
    in_entry = False
    while True:
        word = next(words, None)
        if word is None or word in ("machine", "default"):
            if in_entry:
                yield machine, login, password
            if word is None:
                return
            in_entry = True
            machine = next(words, None) if word == "machine" else None
            login = password = None
        elif word == "login":
            login = next(words, None)
        elif word == "password":
            password = next(words, None)
        elif word == "account":
            next(words, None)


def _netrc_tokens(text: str) -> Iterator[str]:
    lines = iter(text.splitlines())
    for line in lines:
        words = line.split()
        if words and words[0].startswith("#"):
            continue
        for word in words:
            if word == "macdef":
                for body in lines:  # the macro body ends at an empty line
                    if not body.strip():
                        break
                break
            yield word


def prompt_password(host: str, user: str, *, environment: Environment) -> str | None:
    """Ask on the terminal without echo; None when there is no terminal."""
    try:
        descriptor = os.open(environment.tty, os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError:
        return None
    import termios  # noqa: PLC0415 - only when prompting

    try:
        saved = termios.tcgetattr(descriptor)
    except termios.error:
        os.close(descriptor)
        return None
    try:
        quiet = list(saved)
        quiet[3] = int(quiet[3]) & ~termios.ECHO
        termios.tcsetattr(descriptor, termios.TCSAFLUSH, quiet)
        try:
            os.write(descriptor, f"password for {user} at {host}: ".encode())
            typed = _read_line(descriptor)
        finally:
            termios.tcsetattr(descriptor, termios.TCSAFLUSH, saved)
            os.write(descriptor, b"\n")
    finally:
        os.close(descriptor)
    if typed is None:
        return None
    return typed.decode("utf-8", "surrogateescape")


def _read_line(descriptor: int) -> bytes | None:
    data = bytearray()
    while len(data) < MAX_PROMPT_INPUT_BYTES:
        chunk = os.read(descriptor, 1)
        if not chunk:
            return bytes(data) if data else None
        if chunk == b"\n":
            return bytes(data.rstrip(b"\r"))
        data += chunk
    return bytes(data)
