"""The sendmail start path stays lean: what each kind of message makes a process import.

cron and daemons start ``sendmail`` once per message, so its cost is mostly start-up:
every module imported is read (or compiled, when no bytecode cache can be written),
executed, and its dataclasses, enums and patterns built. These tests run the real
sendmail personality in a fresh interpreter, take ``sys.modules`` when it is done,
and name the modules each path must never load. They fail when a change puts, say,
the SMTP stack on the ``queue always`` path or the spool on a direct send; they
time nothing (speed is measured by bench/queue_flush.py and bench/sendmail.py).

Each test also names a module its path does load, so the snapshot cannot pass by
being empty.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

from tests.deliver.deliver_support import SIMPLE_MESSAGE, write_msmtprc
from tests.deliver.scripted_server import ReferenceServer

# A subprocess that has not finished by then is hung: fail rather than wait.
RUN_TIMEOUT_SECONDS = 60

# What coverage.py (patch = ["subprocess"]) and pytest-cov set to follow a child.
COVERAGE_VARIABLES = ("COVERAGE_PROCESS_CONFIG", "COVERAGE_PROCESS_START", "COV_CORE_SOURCE")

# Runs the sendmail personality as ``python -m mailhop sendmail`` does, then prints
# the modules the process holds: after main(), so lazy imports count too.
SNAPSHOT = """\
import sys
from mailhop.cli.main import main
code = main([*COMMAND, *sys.argv[1:]])
sys.stdout.write("\\n".join(sorted(sys.modules)))
sys.exit(code)
"""

# No sendmail path needs these: re-encoding with ``email`` happens only for 8-bit
# bodies a server cannot take; the kick spawns its runner with os.posix_spawn; the
# other tools' modules have their own commands.
NEVER = (
    "asyncio",
    "email",
    "logging",
    "shlex",
    "subprocess",
    "tempfile",
    "mailhop.config.pretend",
    "mailhop.deliver.listener",
    "mailhop.fetch",
    "mailhop.proto.smtp.server",
    "mailhop.queue.bounce",
    "mailhop.queue.runner",
    "mailhop.reader",
)
# Alias expansion and local delivery: only for local recipients.
LOCAL_DELIVERY = (
    "mailhop.deliver.aliases",
    "mailhop.deliver.local",
    "mailhop.store.maildir",
    "mailhop.store.mbox",
)
# The value records on the enqueue path are NamedTuples (docs/CONVENTIONS.md): the
# dataclasses module costs its import and, with it, inspect, ast, dis and tokenize.
DATACLASS_MACHINERY = ("dataclasses", "inspect", "ast", "dis", "tokenize")
# A connection with tls off and no AUTH: OpenSSL's modules load only for TLS (net/tls.py)
# and for CRAM-MD5 or SCRAM (proto/sasl.py).
PLAIN_CONNECTION = ("ssl", "_ssl", "hashlib", "_hashlib", "hmac")
# Talking to a server: TLS, the transport, the protocol cores, password sources.
SMTP_CLIENT = (
    "ssl",
    "mailhop.config.password",
    "mailhop.deliver.smtp",
    "mailhop.message.transfer",
    "mailhop.net",
    "mailhop.proto",
)


def loaded_modules(
    config: Path,
    *arguments: str,
    message: bytes = SIMPLE_MESSAGE,
    command: tuple[str, ...] = ("sendmail",),
    kick: bool = False,
) -> tuple[int, set[str], bytes]:
    """Exit status, ``sys.modules`` at the end and stderr of one sendmail process.

    ``command`` is the argv before ``-C CONFIG``: ``("mailhop", "queue")`` runs that
    command instead. ``kick``: let an enqueue start its background runner.
    """
    home = config.parent
    environment = {
        **os.environ,
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / "xdg"),
        "LC_ALL": "C.UTF-8",
    }
    # The kick starts another process; what that one imports is the runner's.
    environment.pop("MAILHOP_QUEUE_NO_KICK", None)
    if not kick:
        environment["MAILHOP_QUEUE_NO_KICK"] = "1"
    # Under scripts/test.sh coverage follows subprocesses (pyproject's patch =
    # ["subprocess"]) and its own imports (hashlib, sqlite3 ...) would count here:
    # this process is inspected, not measured.
    for variable in COVERAGE_VARIABLES:
        environment.pop(variable, None)
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            f"COMMAND = {list(command)!r}\n{SNAPSHOT}",
            "-C",
            str(config),
            *arguments,
        ],
        input=message,
        capture_output=True,
        timeout=RUN_TIMEOUT_SECONDS,
        env=environment,
        check=False,
    )
    return result.returncode, set(result.stdout.decode().split()), result.stderr


def loaded_of(modules: set[str], forbidden: Iterable[str]) -> list[str]:
    """The modules of ``modules`` that are, or are inside, one of ``forbidden``."""
    return sorted(
        name
        for name in modules
        for prefix in forbidden
        if name == prefix or name.startswith(f"{prefix}.")
    )


def test_queue_always_enqueue_loads_no_smtp_tls_alias_or_log_code(tmp_path: Path) -> None:
    # Port 9 (discard) is not contacted by the enqueue: queue always stores, starts
    # a runner in the background (without importing subprocess) and returns.
    config = write_msmtprc(tmp_path, 9, "tls off", "queue always")
    status, modules, stderr = loaded_modules(config, "-i", "someone@example.org", kick=True)
    assert status == 0, stderr
    assert len(list((tmp_path / "queue" / "entries").glob("*.json"))) == 1
    assert "mailhop.queue.spool" in modules  # the snapshot saw the lazy imports
    # encodings.idna: the FQDN lookup for the recipient's domain passes ASCII bytes.
    never = (
        *NEVER,
        *LOCAL_DELIVERY,
        *SMTP_CLIENT,
        *DATACLASS_MACHINERY,
        "mailhop.deliver.log",
        "encodings.idna",
        # Routing asks _socket for the host name; the socket wrapper builds IntEnums.
        "socket",
        "selectors",
        # A small message is hashed without loading OpenSSL's libcrypto (spool.py).
        "hashlib",
        "_hashlib",
        # Typing's names are for mypy (TYPE_CHECKING = False, docs/CONVENTIONS.md), the
        # record is written without json, and nothing else there needs re.
        "typing",
        "json",
        "re",
    )
    assert loaded_of(modules, never) == []


def test_direct_send_loads_no_spool_alias_or_log_code(tmp_path: Path) -> None:
    # A successful send only lists the queue directory to see whether mail waits.
    with ReferenceServer() as server:
        config = write_msmtprc(tmp_path, server.port, "tls off")
        status, modules, stderr = loaded_modules(config, "-i", "someone@example.org")
        assert status == 0, stderr
        assert [envelope.recipients for envelope in server.envelopes] == [("someone@example.org",)]
    assert "mailhop.deliver.smtp" in modules
    never = (
        *NEVER,
        *LOCAL_DELIVERY,
        "mailhop.queue.spool",
        "mailhop.deliver.log",
        *PLAIN_CONNECTION,
        # The SMTP events and Capabilities are mailhop.proto._event.Events.
        *DATACLASS_MACHINERY,
        "encodings.idna",  # an ASCII host is looked up as bytes (net/transport.py)
    )
    assert loaded_of(modules, never) == []


def test_local_delivery_loads_no_network_or_queue_code(tmp_path: Path) -> None:
    # cron's "mail to root": aliases and an mbox, nothing that talks to a server.
    spool = tmp_path / "spool"
    spool.mkdir()
    aliases = tmp_path / "aliases"
    aliases.write_text("postmaster: root\n")
    config = tmp_path / "config"
    config.write_text(
        f"system_aliases {aliases}\nmail_spool {spool}\nlocal_mailbox mbox\n"
        f"queue_dir {tmp_path / 'queue'}\n"
    )
    config.chmod(0o600)
    status, modules, stderr = loaded_modules(config, "-i", "postmaster@localhost")
    assert status == 0, stderr
    assert (spool / "root").stat().st_size > len(SIMPLE_MESSAGE)
    assert "mailhop.deliver.local" in modules
    never = (
        *NEVER,
        *SMTP_CLIENT,
        "mailhop.deliver.relay",
        "mailhop.message.system_mail",
        "mailhop.queue",
        *DATACLASS_MACHINERY,
        # Unique file names need no secrets module: it would load OpenSSL's hashlib.
        "hashlib",
        "secrets",
        # The host name comes from _socket (routing, and the sender without an account).
        "socket",
        "selectors",
    )
    assert loaded_of(modules, never) == []


def test_queue_run_loads_only_what_delivering_needs(tmp_path: Path) -> None:
    # Each enqueue kicks a runner, and timers start one every few minutes: its start
    # is paid as often as the sendmail's. It needs the SMTP client, TLS and the
    # spool; not what only a deferral, SCRAM, serverinfo or a help screen uses.
    with ReferenceServer() as server:
        config = write_msmtprc(tmp_path, server.port, "tls off", "queue always")
        status, _, stderr = loaded_modules(config, "-i", "someone@example.org")
        assert status == 0, stderr
        status, modules, stderr = loaded_modules(config, "run", command=("mailhop", "queue"))
        assert status == 0, stderr
        assert [envelope.recipients for envelope in server.envelopes] == [("someone@example.org",)]
    assert "mailhop.deliver.smtp" in modules
    never = (
        "asyncio",
        "email",
        "logging",
        "mailhop.reader",
        "mailhop.fetch",
        "mailhop.net._x509",  # describes certificates for serverinfo and doctor
        "datetime",
        "ipaddress",  # source_ip and SOCKS5 only
        "random",  # the jitter of a retry delay, and secrets for a SCRAM nonce
        "secrets",
        "shutil",  # argparse's terminal width
        "bz2",
        "lzma",
        # tls off: the message's checksum is SHA-256 (spool.py), hmac is not needed.
        "ssl",
        "_ssl",
        "hmac",
        "dataclasses",  # no dataclass on this path (the events are mailhop.proto._event's)
        "inspect",
        "encodings.idna",  # an ASCII host is looked up as bytes (net/transport.py)
    )
    assert loaded_of(modules, never) == []


def test_an_empty_queue_run_loads_no_delivery_code(tmp_path: Path) -> None:
    # Timers start a runner every few minutes, and mostly the queue is empty: it reads
    # the configuration and lists the spool, and needs no connection, no TLS, and
    # none of typing (TYPE_CHECKING = False, docs/CONVENTIONS.md).
    config = write_msmtprc(tmp_path, 9, "tls off", "queue always")
    status, modules, stderr = loaded_modules(config, "run", command=("mailhop", "queue"))
    assert status == 0, stderr
    assert "mailhop.queue.runner" in modules
    never = (
        *(name for name in NEVER if name != "mailhop.queue.runner"),
        *LOCAL_DELIVERY,
        *SMTP_CLIENT,
        *DATACLASS_MACHINERY,
        "typing",
        "socket",
        "hashlib",
        "_hashlib",
    )
    assert loaded_of(modules, never) == []


def test_the_check_sees_a_module_and_its_submodules() -> None:
    # Guard against a vacuous pass: a prefix names the package and what is inside.
    modules = {"mailhop.net", "mailhop.net.tls", "mailhop.network", "ssl"}
    assert loaded_of(modules, ("mailhop.net", "ssl")) == ["mailhop.net", "mailhop.net.tls", "ssl"]
