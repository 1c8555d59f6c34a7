"""Helpers for tests that use the Postfix/Dovecot lab started by ``scripts/lab.sh``.

The lab describes itself in ``lab.json`` (see docs/lab.md). ``load_lab`` turns that file
into a frozen ``Lab``; ``locate_lab_json`` finds it through ``$MAILHOP_LAB`` (a directory
holding lab.json, or the file itself) or the repository's ``.lab/`` symlink.

Postfix delivers asynchronously, so tests do not read Maildirs directly: they read the
mailbox back through IMAP over TLS, verified against the lab's test CA, and poll with a
deadline (``wait_for_messages``). Mailboxes are never cleared: every test tags its message
with ``unique_token()`` and looks only for that token.
"""

from __future__ import annotations

import imaplib
import json
import re
import socket
import ssl
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# How long one network operation with the lab may block: a loopback peer that takes longer
# is stuck, not slow.
DEFAULT_NETWORK_TIMEOUT = 30.0
# How long to wait for Postfix to deliver a message: it is asynchronous (queue manager,
# then virtual(8)) but on loopback takes well under a second; 20 s absorbs a loaded CI box.
DEFAULT_DELIVERY_TIMEOUT = 20.0
# Pause between two mailbox polls while waiting for a delivery.
DELIVERY_POLL_INTERVAL = 0.2
# Only messages delivered this recently are searched, so a long-lived mailbox with large
# benchmark messages does not make every poll scan all of them.
DEFAULT_SEARCH_MAX_AGE_SECONDS = 6 * 3600
# How long probing one lab port may take before the lab counts as down.
PORT_PROBE_TIMEOUT = 2.0
# The lab.json layout this module understands (the "schema" field).
LAB_JSON_SCHEMA = 1
# Headers the lab itself puts on top of every delivered message: virtual(8) prepends
# Return-Path, X-Original-To and Delivered-To, smtpd the Received line of its own hop.
LAB_TRACE_HEADERS = (b"return-path", b"x-original-to", b"delivered-to", b"received")


class LabUnavailable(Exception):
    """The lab is not usable; the message says why and what to do."""


@dataclass(frozen=True, kw_only=True)
class LabUser:
    """A mailbox user: SASL/IMAP/POP3 login (full address; the bare name works too)."""

    name: str
    login: str
    password: str
    address: str
    maildir: Path


@dataclass(frozen=True, kw_only=True)
class CertificatePair:
    cert: Path
    key: Path


@dataclass(frozen=True, kw_only=True)
class BadCertificates:
    """Certificates for hostile-server tests; none of them must ever be accepted.

    ``expired``: signed by the lab CA, names localhost/127.0.0.1, expired in 2020.
    ``wrong_host``: signed by the lab CA, valid, but only for ``wrong-host.invalid``.
    ``self_signed``: names localhost/127.0.0.1 and is valid, but no CA signed it.
    """

    expired: CertificatePair
    wrong_host: CertificatePair
    self_signed: CertificatePair


@dataclass(frozen=True, kw_only=True)
class LabPorts:
    smtp: int  # 25: STARTTLS offered, no AUTH, mail for the lab domains only
    submission: int  # 587: STARTTLS required, then AUTH required
    submissions: int  # 465: implicit TLS, AUTH required
    imap: int  # 143: STARTTLS, LOGINDISABLED before it
    imaps: int  # 993: implicit TLS
    pop3: int  # 110: STLS, no USER/PASS before it
    pop3s: int  # 995: implicit TLS


@dataclass(frozen=True, kw_only=True)
class Lab:
    """Everything a test needs to know about the running lab (from lab.json)."""

    source: Path
    host: str
    host6: str | None
    # Dovecot (only) also listens here; unlike on ``host`` it refuses plaintext login
    # before TLS, because the client address (127.0.0.1) differs from this one.
    dovecot_strict_host: str
    hostname: str
    tls_server_name: str
    ports: LabPorts
    ca_file: Path
    server_cert: CertificatePair
    bad_certs: BadCertificates
    domains: tuple[str, ...]
    users: tuple[LabUser, ...]
    tempfail_recipient: str  # RCPT answered 451 4.3.0
    permfail_recipient: str  # RCPT answered 550 5.1.1
    sasl_mechanisms: tuple[str, ...]
    mail_dir: Path
    postfix_log: Path
    dovecot_log: Path
    message_size_limit: int

    def user(self, name: str) -> LabUser:
        """The user called ``name`` (alice, bob, carol, dave, erin, postmaster)."""
        for candidate in self.users:
            if candidate.name == name:
                return candidate
        raise KeyError(f"no lab user {name!r} in {self.source}")

    def tls_context(self) -> ssl.SSLContext:
        """A client context that trusts only the lab CA and checks host names."""
        context = ssl.create_default_context(purpose=ssl.Purpose.SERVER_AUTH)
        context.load_verify_locations(cafile=str(self.ca_file))
        # Only the lab CA: a test must not pass because some system CA trusted a cert.
        context.verify_mode = ssl.CERT_REQUIRED
        context.check_hostname = True
        return context


def locate_lab_json(environ: Mapping[str, str], repository: Path) -> Path:
    """The lab.json to use: ``$MAILHOP_LAB`` (directory or file), else ``repository/.lab``."""
    configured = environ.get("MAILHOP_LAB", "")
    if configured:
        path = Path(configured)
        candidate = path / "lab.json" if path.is_dir() else path
        if not candidate.is_file():
            raise LabUnavailable(
                f"MAILHOP_LAB={configured} but {candidate} does not exist: "
                "run `sudo scripts/lab.sh up` (root and apt needed)"
            )
        return candidate
    candidate = repository / ".lab" / "lab.json"
    if candidate.is_file():
        return candidate
    raise LabUnavailable(
        "the Postfix/Dovecot lab is not set up (no $MAILHOP_LAB, no .lab/lab.json): "
        "run `sudo scripts/lab.sh up` or scripts/test.sh as root"
    )


def _certificate_pair(data: Mapping[str, Any]) -> CertificatePair:
    return CertificatePair(cert=Path(data["cert"]), key=Path(data["key"]))


def load_lab(path: Path) -> Lab:
    """Parse lab.json; a malformed file is ``LabUnavailable`` with the reason."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise LabUnavailable(f"cannot read {path}: {error}") from error
    if data.get("schema") != LAB_JSON_SCHEMA:
        raise LabUnavailable(
            f"{path} has schema {data.get('schema')!r}, these tests read {LAB_JSON_SCHEMA}: "
            "rerun scripts/lab.sh up"
        )
    try:
        ports = data["ports"]
        bad = data["bad_certs"]
        return Lab(
            source=path,
            host=data["host"],
            host6=data["host6"],
            dovecot_strict_host=data["dovecot_strict_host"],
            hostname=data["hostname"],
            tls_server_name=data["tls_server_name"],
            ports=LabPorts(**{name: int(number) for name, number in ports.items()}),
            ca_file=Path(data["ca_file"]),
            server_cert=_certificate_pair(data["server_cert"]),
            bad_certs=BadCertificates(
                expired=_certificate_pair(bad["expired"]),
                wrong_host=_certificate_pair(bad["wrong_host"]),
                self_signed=_certificate_pair(bad["self_signed"]),
            ),
            domains=tuple(data["domains"]),
            users=tuple(
                LabUser(
                    name=user["name"],
                    login=user["login"],
                    password=user["password"],
                    address=user["address"],
                    maildir=Path(user["maildir"]),
                )
                for user in data["users"]
            ),
            tempfail_recipient=data["special_recipients"]["tempfail"],
            permfail_recipient=data["special_recipients"]["permfail"],
            sasl_mechanisms=tuple(data["sasl_mechanisms"]),
            mail_dir=Path(data["mail_dir"]),
            postfix_log=Path(data["logs"]["postfix"]),
            dovecot_log=Path(data["logs"]["dovecot"]),
            message_size_limit=int(data["message_size_limit"]),
        )
    except (KeyError, TypeError, ValueError) as error:
        raise LabUnavailable(f"{path} is malformed ({error!r}): rerun scripts/lab.sh up") from error


def probe_lab(lab: Lab) -> None:
    """Raise ``LabUnavailable`` unless every lab port accepts a TCP connection."""
    closed = []
    for name, port in vars(lab.ports).items():
        try:
            with socket.create_connection((lab.host, port), timeout=PORT_PROBE_TIMEOUT):
                pass
        except OSError as error:
            closed.append(f"{name} {port} ({error.strerror or error})")
    if closed:
        raise LabUnavailable(
            f"lab.json exists ({lab.source}) but ports do not answer: {', '.join(closed)}; "
            "run `sudo scripts/lab.sh up` (status: scripts/lab.sh status)"
        )


def unique_token(prefix: str = "mailhop") -> str:
    """A token no other message in any lab mailbox contains (ASCII, IMAP-searchable)."""
    return f"{prefix}-{uuid.uuid4().hex}"


def message_id_for(token: str) -> str:
    """A Message-ID header value that carries ``token``."""
    return f"<{token}@mailhop.test>"


@contextmanager
def imap_session(
    lab: Lab, user: LabUser, *, timeout: float = DEFAULT_NETWORK_TIMEOUT
) -> Iterator[imaplib.IMAP4_SSL]:
    """A logged-in IMAPS (993) session, certificate verified against the lab CA."""
    client = imaplib.IMAP4_SSL(
        lab.host, lab.ports.imaps, ssl_context=lab.tls_context(), timeout=timeout
    )
    try:
        client.login(user.login, user.password)
        yield client
    finally:
        try:
            client.logout()
        except (imaplib.IMAP4.error, OSError):
            client.shutdown()


def _search_criteria(token: str | None, max_age_seconds: int) -> list[str]:
    # YOUNGER (RFC 5032, Dovecot has it) is answered from the index, so the costly TEXT
    # scan only runs over recent mail.
    criteria = ["YOUNGER", str(max_age_seconds)]
    if token is not None:
        if not re.fullmatch(r"[A-Za-z0-9._@+-]+", token):
            raise ValueError(f"token {token!r} must be a plain atom (see unique_token)")
        criteria += ["TEXT", f'"{token}"']
    return criteria


def wait_for_messages(
    lab: Lab,
    user: LabUser,
    *,
    token: str | None = None,
    predicate: Callable[[bytes], bool] | None = None,
    count: int = 1,
    timeout: float = DEFAULT_DELIVERY_TIMEOUT,
    max_age_seconds: int = DEFAULT_SEARCH_MAX_AGE_SECONDS,
    mailbox: str = "INBOX",
) -> list[bytes]:
    """Wait until ``user``'s mailbox holds ``count`` matching messages; return them raw.

    A message matches when it contains ``token`` (searched by the server, headers and
    decoded body) and ``predicate(raw)`` is true; give at least one of the two. The raw
    bytes are exactly what IMAP returns (CRLF line ends), lab trace headers included
    (strip them with ``without_lab_trace``). Raises ``AssertionError`` after ``timeout``
    seconds, saying how many matched, so a missing delivery fails the test clearly.
    """
    if token is None and predicate is None:
        raise ValueError("give a token or a predicate, or every message matches")
    deadline = time.monotonic() + timeout
    matched: dict[bytes, bytes] = {}
    rejected: set[bytes] = set()
    with imap_session(lab, user) as client:
        status, _ = client.select(mailbox, readonly=True)
        if status != "OK":
            raise AssertionError(f"cannot select {mailbox} of {user.address}")
        while True:
            client.noop()  # lets the server report new deliveries
            status, found = client.uid("SEARCH", *_search_criteria(token, max_age_seconds))
            if status != "OK":
                raise AssertionError(f"IMAP SEARCH failed for {user.address}: {found!r}")
            for uid in found[0].split() if found and found[0] else []:
                if uid in matched or uid in rejected:
                    continue
                raw = _fetch_raw(client, uid)
                if predicate is None or predicate(raw):
                    matched[uid] = raw
                else:
                    rejected.add(uid)
            if len(matched) >= count:
                return list(matched.values())
            if time.monotonic() >= deadline:
                raise AssertionError(
                    f"{len(matched)} of {count} expected message(s) "
                    f"(token={token!r}) reached {user.address} within {timeout} s; "
                    f"see {lab.postfix_log}"
                )
            time.sleep(DELIVERY_POLL_INTERVAL)


def wait_for_message(lab: Lab, user: LabUser, token: str, **options: Any) -> bytes:
    """The one message carrying ``token`` in ``user``'s mailbox (see wait_for_messages)."""
    messages = wait_for_messages(lab, user, token=token, **options)
    if len(messages) != 1:
        raise AssertionError(f"{len(messages)} messages carry {token!r}, expected exactly 1")
    return messages[0]


def _fetch_raw(client: imaplib.IMAP4_SSL, uid: bytes) -> bytes:
    # BODY.PEEK leaves \Seen alone: other tests (fetch, POP3) may count unseen mail.
    status, parts = client.uid("FETCH", uid.decode("ascii"), "(BODY.PEEK[])")
    if status != "OK":
        raise AssertionError(f"IMAP FETCH of UID {uid!r} failed: {parts!r}")
    for part in parts:
        if isinstance(part, tuple) and isinstance(part[1], bytes):
            return part[1]
    raise AssertionError(f"IMAP FETCH of UID {uid!r} returned no literal: {parts!r}")


def without_lab_trace(raw: bytes) -> bytes:
    """``raw`` minus the header lines the lab put on top (Return-Path, X-Original-To,
    Delivered-To, and Postfix's own Received): the bytes the client sent, for exact
    comparison (IMAP returns CRLF line ends)."""
    received_seen = False
    position = 0
    while True:
        end = raw.find(b"\r\n", position)
        if end < 0:
            return raw[position:]
        line = raw[position:end]
        name = line.split(b":", 1)[0].strip().lower()
        if name not in LAB_TRACE_HEADERS or (name == b"received" and received_seen):
            return raw[position:]
        received_seen = received_seen or name == b"received"
        # Skip the header's folded continuation lines too.
        position = end + 2
        while raw[position : position + 1] in (b" ", b"\t"):
            position = raw.index(b"\r\n", position) + 2
