"""``mailhop doctor`` on a healthy setup and on each broken one (acceptance).

Each broken setup must be named by the failing check together with its fix. The
doctor runs as a separate process with its paths (sendmail link, aliases, queue)
pointed into a temporary directory.
"""

from __future__ import annotations

import json
import os
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.lab.support import Lab

pytestmark = pytest.mark.lab

TIMEOUT = 120


def write_config(path: Path, lab: Lab, **settings: str) -> Path:
    alice = lab.user("alice")
    lines = {
        "host": lab.host,
        "port": str(lab.ports.submissions),
        "tls": "on",
        "tls_starttls": "off",
        "tls_trust_file": str(lab.ca_file),
        "auth": "on",
        "user": alice.login,
        "password": alice.password,
        "from": alice.address,
        "timeout": "10",
        **settings,
    }
    path.write_text(
        "account lab\n"
        + "".join(f"{k} {v}\n" for k, v in lines.items())
        + "account default : lab\n",
        encoding="utf-8",
    )
    path.chmod(0o600)
    return path


@pytest.fixture
def sandbox(tmp_path: Path) -> Path:
    """A sendmail link that is mailhop, root aliased to a person, an empty queue."""
    (tmp_path / "sbin").mkdir()
    (tmp_path / "sbin" / "sendmail").symlink_to(Path(sys.executable).parent / "mailhop")
    (tmp_path / "aliases").write_text("root: alice@example.test\n", encoding="utf-8")
    (tmp_path / "queue").mkdir()
    return tmp_path


def doctor(sandbox: Path, config: Path, *extra: str) -> tuple[int, dict[str, dict[str, str]]]:
    result = subprocess.run(
        [sys.executable, "-m", "mailhop", "doctor", "--json", "-C", str(config),
         "--sendmail-path", str(sandbox / "sbin" / "sendmail"),
         "--aliases-path", str(sandbox / "aliases"),
         "--queue-dir", str(sandbox / "queue"), "--timeout", "10", *extra],
        capture_output=True, text=True, timeout=TIMEOUT, check=False,
        env={**os.environ, "HOME": str(sandbox), "XDG_CONFIG_HOME": str(sandbox / "xdg"),
             "USER": "root"},
    )  # fmt: skip
    checks = {check["name"]: check for check in json.loads(result.stdout)}
    return result.returncode, checks


def failing(checks: dict[str, dict[str, str]]) -> dict[str, dict[str, str]]:
    return {name: check for name, check in checks.items() if check["verdict"] == "FAIL"}


def test_healthy_setup_says_so(sandbox: Path, lab: Lab) -> None:
    status, checks = doctor(sandbox, write_config(sandbox / "rc", lab))
    assert status == 0, checks
    for name in ("config", "account", "port", "dns", "tcp", "tls", "auth", "sendmail", "aliases"):
        assert checks[name]["verdict"] == "ok", checks[name]
    assert "logged in as alice@example.test" in checks["auth"]["message"]
    text = subprocess.run(
        [sys.executable, "-m", "mailhop", "doctor", "-C", str(sandbox / "rc"),
         "--sendmail-path", str(sandbox / "sbin" / "sendmail"),
         "--aliases-path", str(sandbox / "aliases"), "--queue-dir", str(sandbox / "queue")],
        capture_output=True, text=True, timeout=TIMEOUT, check=False,
    ).stdout  # fmt: skip
    assert "all checks passed" in text


def test_bad_password(sandbox: Path, lab: Lab) -> None:
    status, checks = doctor(sandbox, write_config(sandbox / "rc", lab, password="wrong"))
    assert status == 77
    assert set(failing(checks)) == {"auth"}
    assert "refused the password" in checks["auth"]["fix"]


def test_wrong_port(sandbox: Path, lab: Lab) -> None:
    with socket.socket() as unused:
        unused.bind((lab.host, 0))
        closed_port = unused.getsockname()[1]
    status, checks = doctor(sandbox, write_config(sandbox / "rc", lab, port=str(closed_port)))
    assert status == 75
    assert set(failing(checks)) == {"tcp"}
    assert "465" in checks["tcp"]["fix"] and "587" in checks["tcp"]["fix"]


def test_starttls_on_the_465_port(sandbox: Path, lab: Lab) -> None:
    config = write_config(sandbox / "rc", lab, tls_starttls="on")
    started = time.monotonic()
    status, checks = doctor(sandbox, config)
    assert time.monotonic() - started < 10  # named from the settings, no timeout waited
    assert status == 78
    assert set(failing(checks)) == {"port"}
    assert "tls_starttls off" in checks["port"]["fix"]
    assert checks["auth"]["verdict"] == "skip"


@contextmanager
def tls_listener(cert: Path, key: Path) -> Iterator[int]:
    """A TLS server on 127.0.0.1 that presents ``cert`` and greets like SMTP."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(str(cert), str(key))
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                connection, _ = server.accept()
            except TimeoutError:
                continue
            connection.settimeout(5)
            try:
                with context.wrap_socket(connection, server_side=True) as tls:
                    tls.sendall(b"220 expired.test ESMTP\r\n")
            except (OSError, ssl.SSLError):
                connection.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1]
    finally:
        stop.set()
        thread.join(timeout=5)
        server.close()


def test_expired_certificate(sandbox: Path, lab: Lab) -> None:
    expired = lab.bad_certs.expired
    with tls_listener(expired.cert, expired.key) as port:
        config = write_config(sandbox / "rc", lab, host="127.0.0.1", port=str(port))
        status, checks = doctor(sandbox, config)
    assert status == 69
    assert set(failing(checks)) == {"tls"}
    assert "expired" in checks["tls"]["message"].lower()
    assert "tls_trust_file" in checks["tls"]["fix"]


def test_world_readable_config(sandbox: Path, lab: Lab) -> None:
    config = write_config(sandbox / "rc", lab)
    config.chmod(0o644)
    status, checks = doctor(sandbox, config)
    assert status == 78
    assert "config" in failing(checks)
    assert "chmod 600" in checks["config"]["message"]


def test_no_sendmail_link(sandbox: Path, lab: Lab) -> None:
    (sandbox / "sbin" / "sendmail").unlink()
    status, checks = doctor(sandbox, write_config(sandbox / "rc", lab))
    assert status == 69
    assert set(failing(checks)) == {"sendmail"}
    assert "ln -s" in checks["sendmail"]["fix"]


def test_root_without_alias_is_a_warning(sandbox: Path, lab: Lab) -> None:
    (sandbox / "aliases").write_text("postmaster: root\n", encoding="utf-8")
    status, checks = doctor(sandbox, write_config(sandbox / "rc", lab))
    assert status == 0
    assert checks["aliases"]["verdict"] == "warn"
    assert "root: you@example.com" in checks["aliases"]["fix"]


def test_stuck_queue(sandbox: Path, lab: Lab) -> None:
    from mailhop.queue.spool import Route, Spool

    Spool(str(sandbox / "queue")).ensure().enqueue(
        [b"Subject: x\r\n\r\nbody\r\n"],
        sender="alice@example.test",
        recipients=[("bob@example.test", Route.RELAY)],
        account="lab",
        config_file=None,
        now=time.time() - 3 * 86400,
    )
    status, checks = doctor(sandbox, write_config(sandbox / "rc", lab))
    assert status == 75
    assert set(failing(checks)) == {"queue"}
    assert "1 stuck" in checks["queue"]["message"]
    assert "mailhop queue run" in checks["queue"]["fix"]
