"""Fetching the same 2000 messages from the lab's Dovecot: mailhop vs getmail6 vs fetchmail.

All three retrieve the same mailbox (lab user ``fetchbench@example.test``, which
nothing else uses) over the same protocol and TLS port, with ``keep`` (nothing is
deleted on the server), each run into a fresh Maildir with fresh state, so every
run sees and fetches all 2000 messages. Rounds alternate the order of the tools
(a warm or cold Dovecot cache favours no one). Printed per tool: the median wall
time, the highest peak memory (max RSS of the child from ``os.wait4``, which on
Linux also covers children it waited for, such as fetchmail's MDA), and both as
ratios to mailhop. Aim (issue #8): mailhop fastest.

Usage (as root, with the lab up: ``sudo scripts/lab.sh up``, which also installs
fetchmail and getmail6 from Debian)::

    .venv/bin/python bench/fetch.py [--protocol imap|pop3] [--rounds 3] [--messages 2000]

The mailbox is filled once by IMAP APPEND and reused while it holds exactly
``--messages`` messages. A tool that is not installed is skipped with a message.

What each tool does with a message (their own usual way to reach a Maildir):
mailhop writes it with its Maildir writer (fsync of file and directory) and
records its UID durably; getmail6 uses its ``Maildir`` destination (fsync of the
file); fetchmail has no Maildir writer and hands every message to an MDA through
``/bin/sh`` (here ``cat`` into the Maildir, no fsync: the cheapest MDA there is).
"""

from __future__ import annotations

import argparse
import dataclasses
import imaplib
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPOSITORY))
sys.path.insert(0, str(REPOSITORY / "src"))

from measure import COMMAND_TIMEOUT_SECONDS, run_measured  # noqa: E402 - after the path set-up
from tests.lab.support import (  # noqa: E402 - after the path set-up
    Lab,
    LabUnavailable,
    LabUser,
    load_lab,
    locate_lab_json,
)

BENCH_USER = "fetchbench"
DEFAULT_MESSAGES = 2000
DEFAULT_ROUNDS = 3
# Message sizes: mostly the few kilobytes of everyday mail; every 100th one a
# 256 KiB attachment-sized message, so streaming of large bodies counts too.
SMALL_BODY_LINES = (20, 120)
LARGE_MESSAGE_EVERY = 100
LARGE_BODY_LINES = 256 * 1024 // 77
# IMAP APPENDs in flight before reading replies would need our own client; imaplib
# appends one at a time, a few milliseconds each on loopback.
APPEND_REPORT_EVERY = 500
# The unprivileged account the tools run as when the bench is started as root.
NOBODY_UID = 65534
DEBIAN_PYTHON = "/usr/bin/python3"
_MESSAGE_ID = re.compile(rb"(?im)^Message-ID:[ \t]*<([^>]+)>")


def make_message(index: int) -> bytes:
    rng = random.Random(index)
    lines = [
        b"From: Bench Sender <sender@example.test>",
        b"To: fetchbench@example.test",
        f"Subject: fetch bench {index}".encode(),
        f"Message-ID: <bench-{index}@fetch.mailhop.test>".encode(),
        b"Date: Mon, 01 Jan 2024 00:00:00 +0000",
        b"",
    ]
    if index % LARGE_MESSAGE_EVERY == 0:
        count = LARGE_BODY_LINES
    else:
        count = rng.randrange(*SMALL_BODY_LINES)
    alphabet = b"abcdefghij klmnopqrst uvwxyz .>From"
    lines += [
        bytes(rng.choice(alphabet) for _ in range(rng.randrange(10, 76))) for _ in range(count)
    ]
    lines.append(b".")
    lines.append(b"end")
    return b"\r\n".join(lines) + b"\r\n"


def imap_client(lab: Lab, user: LabUser) -> imaplib.IMAP4_SSL:
    client = imaplib.IMAP4_SSL(lab.host, lab.ports.imaps, ssl_context=lab.tls_context())
    client.login(user.login, user.password)
    return client


def fill_mailbox(lab: Lab, user: LabUser, count: int) -> None:
    """Make the INBOX hold exactly ``count`` bench messages (reused when it does)."""
    client = imap_client(lab, user)
    try:
        _status, data = client.select("INBOX")
        present = int(data[0] or 0)
        if present == count:
            print(f"mailbox {user.address}: {count} messages already there (reused)")
            return
        if present:
            client.store("1:*", "+FLAGS.SILENT", r"(\Deleted)")
            client.expunge()
        started = time.perf_counter()
        for index in range(count):
            status, _ = client.append("INBOX", None, None, make_message(index))
            if status != "OK":
                raise SystemExit(f"IMAP APPEND {index} failed: {status}")
            if (index + 1) % APPEND_REPORT_EVERY == 0:
                print(f"  appended {index + 1}/{count}", flush=True)
        print(f"mailbox {user.address}: {count} appended in {time.perf_counter() - started:.1f} s")
    finally:
        client.logout()


@dataclasses.dataclass(frozen=True, kw_only=True)
class Measurement:
    seconds: float
    max_rss_kib: int
    messages: int


@dataclasses.dataclass(frozen=True, kw_only=True)
class Tool:
    name: str
    available: Callable[[], str | None]  # None when usable, else why not
    command: Callable[[Path, Path], list[str]]  # (work directory, Maildir) -> argv


def maildir_message_ids(maildir: Path) -> list[bytes]:
    ids = []
    for sub in ("new", "cur"):
        folder = maildir / sub
        if not folder.is_dir():
            continue
        for file in folder.iterdir():
            with file.open("rb") as handle:
                match = _MESSAGE_ID.search(handle.read(4096))
            ids.append(match.group(1) if match else b"?")
    return ids


def install_getmail(directory: Path, python: str) -> list[str] | None:
    """argv to run getmail6: PyPI's newest (into ``directory``), else Debian's.

    Debian bookworm's getmail6 6.18 loses the SIGCHLD of its Maildir writer under
    load and then waits 180 s per message (getmail6 issue #226, fixed in 6.19 by
    multiprocessing); measuring that would measure the bug, not getmail.
    """
    installed = subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(directory),
         "getmail6"],
        capture_output=True, text=True, timeout=COMMAND_TIMEOUT_SECONDS, check=False,
    )  # fmt: skip
    script = directory / "bin" / "getmail"
    if installed.returncode == 0 and script.is_file():
        for path in (directory, *directory.rglob("*")):
            path.chmod(0o755 if path.is_dir() else 0o644)
        version = subprocess.run(
            [python, str(script), "--version"], capture_output=True, text=True,
            env={**os.environ, "PYTHONPATH": str(directory)}, timeout=60, check=False,
        ).stdout.strip()  # fmt: skip
        print(f"getmail6 from PyPI: {version}")
        return [python, str(script)]
    print(f"getmail6 from PyPI not installed ({installed.stderr.strip()[-200:]})")
    debian = shutil.which("getmail")
    if debian is None:
        print("skipping getmail6: apt-get install getmail6 (or sudo scripts/lab.sh up)")
        return None
    print("getmail6 from Debian (may stall: see install_getmail)")
    return [debian]


def make_maildir(path: Path) -> None:
    for sub in ("tmp", "new", "cur"):
        (path / sub).mkdir(parents=True, mode=0o700)


def tools(
    lab: Lab, user: LabUser, protocol: str, python: str, getmail: list[str] | None
) -> list[Tool]:
    imap = protocol == "imap"
    port = lab.ports.imaps if imap else lab.ports.pop3s

    def mailhop_command(work: Path, maildir: Path) -> list[str]:
        config = work / "mailhop.conf"
        config.write_text(
            f"account bench\nprotocol {protocol}\nhost {lab.host}\nport {port}\n"
            f"tls_trust_file {lab.ca_file}\ntls_host_override {lab.tls_server_name}\n"
            f"user {user.login}\npassword {user.password}\nkeep on\n"
            f"delivery maildir:{maildir}\n"
        )
        config.chmod(0o600)
        return [python, "-m", "mailhop", "fetch", "-q", "-C", str(config),
                "--state-dir", str(work / "state")]  # fmt: skip

    def getmail_command(work: Path, maildir: Path) -> list[str]:
        retriever = "SimpleIMAPSSLRetriever" if imap else "SimplePOP3SSLRetriever"
        mailboxes = 'mailboxes = ("INBOX",)\n' if imap else ""
        config = work / "getmailrc"
        config.write_text(
            f"[retriever]\ntype = {retriever}\nserver = {lab.host}\nport = {port}\n"
            f"username = {user.login}\npassword = {user.password}\n{mailboxes}"
            f"ca_certs = {lab.ca_file}\nssl_cert_hostname = {lab.tls_server_name}\n"
            f"[destination]\ntype = Maildir\npath = {maildir}/\n"
            "[options]\nread_all = true\ndelete = false\nverbose = 0\n"
            "delivered_to = false\nreceived = false\n"
        )
        config.chmod(0o600)
        state = work / "getmail"
        state.mkdir()
        return [*(getmail or ["getmail"]), f"--getmaildir={state}", f"--rcfile={config}"]

    def fetchmail_command(work: Path, maildir: Path) -> list[str]:
        config = work / "fetchmailrc"
        # fetchmail runs the MDA through /bin/sh; $$ (that shell's pid) names the file.
        config.write_text(
            f"poll {lab.tls_server_name} via {lab.host} protocol {protocol.upper()}"
            f" port {port}\n"
            f'  user "{user.login}" password "{user.password}"\n'
            f"  ssl sslcertck sslcertfile {lab.ca_file} sslcommonname {lab.tls_server_name}\n"
            f"  keep fetchall no rewrite\n"
            f'  mda "cat > {maildir}/new/fetchmail.$$"\n'
        )
        config.chmod(0o600)
        return ["fetchmail", "-f", str(config), "--idfile", str(work / "fetchids"),
                "--pidfile", str(work / "fetchmail.pid"), "--nosyslog", "--silent"]  # fmt: skip

    def installed(program: str, package: str) -> Callable[[], str | None]:
        def check() -> str | None:
            if shutil.which(program) is None:
                return (
                    f"{program} not installed: apt-get install {package}"
                    " (or sudo scripts/lab.sh up)"
                )
            return None

        return check

    return [
        Tool(name="mailhop", available=lambda: None, command=mailhop_command),
        Tool(
            name="getmail6",
            available=lambda: None if getmail else "getmail6 neither from PyPI nor from Debian",
            command=getmail_command,
        ),
        Tool(
            name="fetchmail",
            available=installed("fetchmail", "fetchmail"),
            command=fetchmail_command,
        ),
    ]


def measure(
    usable: list[Tool],
    rounds: int,
    messages: int,
    environment: dict[str, str],
    run_as: int | None,
) -> dict[str, list[Measurement]]:
    """Run every tool ``rounds`` times, alternating; keep the complete runs."""
    expected = {f"bench-{index}@fetch.mailhop.test".encode() for index in range(messages)}
    results: dict[str, list[Measurement]] = {tool.name: [] for tool in usable}
    for round_number in range(rounds):
        # Rotate the order each round: no tool always runs first (cold cache) or last.
        shift = round_number % len(usable)
        order = usable[shift:] + usable[:shift]
        for tool in order:
            with tempfile.TemporaryDirectory(prefix=f"fetchbench-{tool.name}-") as temporary:
                work = Path(temporary)
                maildir = work / "Maildir"
                make_maildir(maildir)
                # A fresh HOME: no ~/.fetchmailrc, ~/.getmail or mailhop state of a
                # previous run can make a tool skip messages.
                environment["HOME"] = temporary
                argv = tool.command(work, maildir)
                if run_as is not None:
                    for path in (work, *work.rglob("*")):
                        os.chown(path, run_as, run_as)
                seconds, status, usage = run_measured(
                    argv,
                    env=environment,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    user=run_as,
                    group=run_as,
                    extra_groups=[] if run_as is not None else None,
                )
                rss = usage.ru_maxrss  # KiB
                ids = maildir_message_ids(maildir)
                if status != 0:
                    print(f"{tool.name}: exit status {status} after {seconds:.1f} s")
                complete = len(ids) == messages and set(ids) == expected
                print(
                    f"round {round_number + 1} {tool.name:9s} {seconds:7.2f} s"
                    f" {rss / 1024:7.1f} MiB  {len(ids)} messages"
                    + ("" if complete else "  INCOMPLETE: not counted")
                )
                if complete:
                    results[tool.name].append(
                        Measurement(seconds=seconds, max_rss_kib=rss, messages=len(ids))
                    )

    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--protocol", choices=("imap", "pop3"), default="imap")
    parser.add_argument("--rounds", type=int, default=DEFAULT_ROUNDS)
    parser.add_argument("--messages", type=int, default=DEFAULT_MESSAGES)
    options = parser.parse_args()
    try:
        lab = load_lab(locate_lab_json(os.environ, REPOSITORY))
        user = lab.user(BENCH_USER)
    except (LabUnavailable, KeyError) as error:
        print(f"bench/fetch.py: {error}; run `sudo scripts/lab.sh up` first", file=sys.stderr)
        return 69
    fill_mailbox(lab, user, options.messages)
    environment = {**os.environ, "PYTHONPATH": str(REPOSITORY / "src")}
    # getmail refuses to deliver as root and fetchmail warns: as root, every tool runs
    # as the unprivileged NOBODY_UID, the same for all, as a user's cron job would.
    run_as = NOBODY_UID if os.geteuid() == 0 else None

    # The unprivileged user cannot run a venv under /root: then mailhop runs on Debian's
    # python3 (from src/, no runtime dependencies), the interpreter getmail6 uses too.
    python = DEBIAN_PYTHON if run_as is not None else sys.executable
    print(f"mailhop runs on {python}" + (f", every tool as uid {run_as}" if run_as else ""))
    scratch = Path(tempfile.mkdtemp(prefix="fetchbench-"))
    try:
        scratch.chmod(0o755)  # the unprivileged tools read the getmail6 installed here
        getmail = install_getmail(scratch / "getmail6", python)
        if getmail and getmail[0] == python:
            environment["PYTHONPATH"] += os.pathsep + str(scratch / "getmail6")
        usable = []
        for tool in tools(lab, user, options.protocol, python, getmail):
            why_not = tool.available()
            if why_not is None:
                usable.append(tool)
            else:
                print(f"skipping {tool.name}: {why_not}")
        results = measure(usable, options.rounds, options.messages, environment, run_as)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    print()
    print(f"{options.messages} messages over {options.protocol.upper()} (implicit TLS),"
          f" keep, into a fresh Maildir; {options.rounds} alternating rounds")  # fmt: skip
    base = results.get("mailhop")
    if not base:
        print("mailhop produced no complete run: no ratios")
        return 1
    base_time = statistics.median(m.seconds for m in base)
    base_rss = max(m.max_rss_kib for m in base)
    print(f"{'tool':10s} {'median s':>9s} {'msg/s':>8s} {'peak MiB':>9s} {'time/mailhop':>13s}"
          f" {'memory/mailhop':>15s}")  # fmt: skip
    for name, measured in results.items():
        if not measured:
            print(f"{name:10s} no complete run")
            continue
        seconds = statistics.median(m.seconds for m in measured)
        rss = max(m.max_rss_kib for m in measured)
        print(
            f"{name:10s} {seconds:9.2f} {options.messages / seconds:8.0f} {rss / 1024:9.1f}"
            f" {seconds / base_time:13.2f} {rss / base_rss:15.2f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
