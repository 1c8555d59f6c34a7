"""Password sources in msmtp's order; no secret in any error message."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailhop.config import Account, CommandFailedError, Environment, _commands, get_password
from mailhop.config.password import KEYRING_SERVICE_FORMAT, prompt_password
from mailhop.errors import ExitCode
from tests.config.conftest import WriteFile

ACCOUNT = Account(name="acc", file="/rc", host="smtp.example.com", user="alice")


def script(tmp_path: Path, name: str, body: str) -> Path:
    path = tmp_path / "bin" / name
    path.parent.mkdir(exist_ok=True)
    path.write_text(f"#!/bin/sh\n{body}\n", encoding="utf-8")
    path.chmod(0o755)
    return path


@pytest.fixture
def no_keyring() -> Iterator[None]:
    """No secret-tool on PATH and a keyring package that knows nothing."""
    import keyring
    from keyring.backends import null

    previous = keyring.get_keyring()
    keyring.set_keyring(null.Keyring())  # type: ignore[no-untyped-call]
    yield
    keyring.set_keyring(previous)


def test_password_line_comes_first(environment: Environment) -> None:
    account = ACCOUNT._replace(password="direct", passwordeval="false")
    assert get_password(account, environment=environment) == "direct"


@pytest.mark.parametrize(
    ("command", "shell"),
    [
        ("gpg -q --decrypt /home/u/.msmtp.gpg", False),
        ("gpg -q --decrypt ~/.msmtp.gpg", True),
        ("pass show mail | head -1", True),
        ("security find-generic-password -s 'mail x' -w", False),
        ('cat "$HOME/pw"', True),
        ("PASSWORD_STORE_DIR=/x pass show mail", True),
        ("echo a; echo b", True),
        ("echo 'unbalanced", True),
    ],
)
def test_passwordeval_uses_a_shell_only_for_shell_syntax(command: str, shell: bool) -> None:
    assert _commands.needs_shell(command) is shell


def test_passwordeval_plain_argv_runs_without_a_shell(
    environment: Environment, tmp_path: Path
) -> None:
    printer = script(tmp_path, "printer", 'printf "%s\\r\\nsecond\\n" "$1"')
    account = ACCOUNT._replace(passwordeval=f"{printer} 'tok en'")
    assert get_password(account, environment=environment) == "tok en"


def test_passwordeval_through_the_shell(environment: Environment, home: Path) -> None:
    (home / "pw").write_text("from-file\nignored\n", encoding="utf-8")
    for command in ("cat ~/pw | head -1", "head -1 ~/pw"):
        account = ACCOUNT._replace(passwordeval=command)
        assert get_password(account, environment=environment) == "from-file"


@pytest.mark.parametrize(
    ("command", "reason"),
    [
        ("echo token; exit 3", "command failed (exit status 3); its output was not used"),
        ("true", "printed nothing"),
        ("/nonexistent/program arg", "cannot run /nonexistent/program"),
    ],
)
def test_passwordeval_failures_are_refused_without_showing_output(
    command: str, reason: str, environment: Environment
) -> None:
    account = ACCOUNT._replace(passwordeval=command)
    with pytest.raises(CommandFailedError) as caught:
        get_password(account, environment=environment)
    assert reason in str(caught.value)
    assert "passwordeval of account acc from /rc" in str(caught.value)
    assert "token" not in str(caught.value).replace(command, "")
    assert caught.value.exit_code == ExitCode.CONFIG
    assert caught.value.__cause__ is None  # no exception chain carrying output


def test_passwordeval_timeout(environment: Environment) -> None:
    account = ACCOUNT._replace(passwordeval="sleep 5")
    with pytest.raises(CommandFailedError, match=r"timed out after 0\.2 seconds"):
        get_password(account, environment=environment, passwordeval_timeout=0.2)


def test_passwordeval_stdin_is_closed(environment: Environment) -> None:
    # For sendmail, stdin is the mail: a passwordeval must not be able to eat it.
    account = ACCOUNT._replace(passwordeval="cat; echo after")
    assert get_password(account, environment=environment) == "after"


NETRC = """\
# comment
machine other.example.com login alice password other
machine smtp.example.com login bob password bobs
macdef init
machine smtp.example.com login alice password fake

machine smtp.example.com
    login alice
    password "alices"
default login alice password fromdefault
"""


def test_netrc_by_host_and_login(
    environment: Environment, write: WriteFile, no_keyring: None
) -> None:
    write("home/.netrc", NETRC)
    assert get_password(ACCOUNT, environment=environment, interactive=False) == '"alices"'
    nobody = ACCOUNT._replace(user=None)
    assert get_password(nobody, environment=environment, interactive=False) == "bobs"
    unknown = ACCOUNT._replace(user="carol")
    assert get_password(unknown, environment=environment, interactive=False) is None


def test_system_netrc_after_the_users(
    environment: Environment, write: WriteFile, no_keyring: None
) -> None:
    write("etc/netrc", "machine smtp.example.com login alice password system\n")
    assert get_password(ACCOUNT, environment=environment, interactive=False) == "system"
    write("home/.netrc", "machine smtp.example.com login alice password user\n")
    assert get_password(ACCOUNT, environment=environment, interactive=False) == "user"


def test_socket_is_the_lookup_host(
    environment: Environment, write: WriteFile, no_keyring: None
) -> None:
    write("home/.netrc", "machine /run/smtp.sock login alice password sock\n")
    account = ACCOUNT._replace(socket="/run/smtp.sock")
    assert get_password(account, environment=environment, interactive=False) == "sock"


def test_keyring_package_with_a_registered_backend(
    environment: Environment, write: WriteFile
) -> None:
    import keyring
    from keyring.backend import KeyringBackend

    class MemoryKeyring(KeyringBackend):
        priority = 1

        def __init__(self) -> None:
            super().__init__()  # type: ignore[no-untyped-call]
            self.secrets: dict[tuple[str, str], str] = {}

        def get_password(self, service: str, username: str) -> str | None:
            return self.secrets.get((service, username))

        def set_password(self, service: str, username: str, password: str) -> None:
            self.secrets[(service, username)] = password

        def delete_password(self, service: str, username: str) -> None:
            del self.secrets[(service, username)]

    write("home/.netrc", "machine smtp.example.com login alice password netrc\n")
    empty_path = environment._replace(variables={"PATH": "/nonexistent"})
    previous = keyring.get_keyring()
    backend = MemoryKeyring()
    keyring.set_keyring(backend)
    try:
        assert get_password(ACCOUNT, environment=empty_path, interactive=False) == "netrc"
        keyring.set_password(KEYRING_SERVICE_FORMAT.format(host="smtp.example.com"), "alice", "k")
        assert get_password(ACCOUNT, environment=empty_path, interactive=False) == "k"
    finally:
        keyring.set_keyring(previous)


def test_secret_tool_with_msmtps_attributes(
    environment: Environment, tmp_path: Path, no_keyring: None
) -> None:
    # A stand-in secret-tool that knows one entry stored the way msmtp documents:
    # secret-tool store --label=msmtp host H service smtp user U
    log = tmp_path / "calls"
    script(
        tmp_path,
        "secret-tool",
        f'echo "$*" >> {log}\n'
        'if [ "$*" = "lookup host smtp.example.com service smtp user alice" ]; then\n'
        "  printf 'from-keyring'; exit 0\nfi\nexit 1",
    )
    path = f"{tmp_path / 'bin'}:/usr/bin:/bin"
    with_tool = environment._replace(variables={"PATH": path})
    assert get_password(ACCOUNT, environment=with_tool, interactive=False) == "from-keyring"
    other = ACCOUNT._replace(user="bob")
    assert get_password(other, environment=with_tool, interactive=False) is None
    assert log.read_text(encoding="utf-8").splitlines()[-1] == (
        "lookup user bob protocol smtp server smtp.example.com"  # the legacy schema second
    )


@pytest.mark.skipif(shutil.which("secret-tool") is None, reason="secret-tool is not installed")
def test_real_secret_tool_lookup_of_a_missing_entry(environment: Environment) -> None:
    if not os.environ.get("DBUS_SESSION_BUS_ADDRESS"):
        pytest.skip("no D-Bus session for the Secret Service")
    account = ACCOUNT._replace(host="mailhop-test.invalid")
    assert get_password(account, environment=environment, interactive=False) is None


def test_prompt_needs_a_terminal(environment: Environment, no_keyring: None) -> None:
    assert get_password(ACCOUNT, environment=environment) is None  # tty path absent
    assert prompt_password("h", "u", environment=environment) is None


def test_prompt_on_a_terminal_without_echo(environment: Environment, no_keyring: None) -> None:
    import termios

    master, slave = os.openpty()
    terminal = environment._replace(tty=os.ttyname(slave))
    seen = bytearray()
    echo_during_prompt: list[bool] = []

    def answer() -> None:
        while b": " not in seen:
            seen.extend(os.read(master, 1024))
        echo_during_prompt.append(bool(termios.tcgetattr(slave)[3] & termios.ECHO))
        os.write(master, b"typed-secret\n")

    helper = threading.Thread(target=answer)
    helper.start()
    try:
        assert get_password(ACCOUNT, environment=terminal) == "typed-secret"
    finally:
        helper.join(timeout=10)
        os.close(master)
        os.close(slave)
    assert b"password for alice at smtp.example.com: " in seen
    assert echo_during_prompt == [False]


def test_nothing_found_without_prompt(environment: Environment, no_keyring: None) -> None:
    assert get_password(ACCOUNT, environment=environment, interactive=False) is None
    assert get_password(ACCOUNT._replace(host=None), environment=environment) is None


def test_importing_the_package_stays_lean() -> None:
    code = (
        "import sys, mailhop.config, mailhop.config.password;"
        "heavy = {'subprocess', 'keyring', 'netrc', 'termios', 'shlex'} & set(sys.modules);"
        "print(sorted(heavy))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"
