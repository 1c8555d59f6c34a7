"""SASL mechanisms (RFC 4422) as generators, the way httpx writes ``auth_flow``.

A mechanism's :meth:`Mechanism.flow` generator first yields the initial response
(``None`` when the mechanism has none), then receives each decoded server challenge
and yields the decoded response. When the server reports success, the driver
sends ``None`` into the generator: a generator that still expected a challenge
raises (a SCRAM server that never proved it knows the password, RFC 5802 §5), and
one that yields again is a server that declared success too early. When the
generator finishes while the server still sends challenges, the driver cancels
the exchange (``*``, RFC 4954 §4). The SMTP client core drives this protocol; the
IMAP and POP3 cores can drive the same generators.

Mechanisms: PLAIN (RFC 4616), LOGIN (draft-murchison-sasl-login), CRAM-MD5
(RFC 2195), SCRAM-SHA-1 and SCRAM-SHA-256 (RFC 5802, RFC 7677; no channel
binding), XOAUTH2 (Google's), OAUTHBEARER (RFC 7628) and EXTERNAL (RFC 4422 App. A).

:func:`choose_mechanism` implements msmtp's ``auth on``.
"""

from __future__ import annotations

import base64
from collections.abc import Generator, Iterable
from typing import ClassVar

from mailhop.proto.errors import LocalProtocolError, RemoteProtocolError

__all__ = [
    "MAX_SCRAM_ITERATIONS",
    "PASSWORD_MECHANISMS",
    "AuthenticationError",
    "CramMD5",
    "External",
    "Flow",
    "Login",
    "Mechanism",
    "NoSuitableMechanismError",
    "OAuthBearer",
    "Plain",
    "ScramSHA1",
    "ScramSHA256",
    "XOAuth2",
    "choose_mechanism",
    "password_mechanism",
    "saslprep",
]

Flow = Generator[bytes | None, bytes | None, None]
"""Yields responses (the first may be None: no initial response); receives challenges
(None: the server reported success)."""

# A hostile server can ask for any SCRAM iteration count and make the client burn
# CPU in PBKDF2 before the password is even checked. RFC 7677 §4 asks for at least
# 4096; Dovecot and Cyrus default to 4096 and 5000. One million is far above that
# and still costs well under a second in hashlib's C code.
MAX_SCRAM_ITERATIONS = 1_000_000


class AuthenticationError(RemoteProtocolError):
    """The server's side of the SASL exchange is malformed or not authentic."""


class NoSuitableMechanismError(LocalProtocolError):
    """No mechanism the server offers may be used under the current policy."""


class Mechanism:
    """Base of the mechanisms; subclasses set the class attributes and ``flow``."""

    name: ClassVar[str]
    sends_secret_in_clear: ClassVar[bool]
    """True if the exchange reveals the password or token to anyone who reads it."""

    def __repr__(self) -> str:
        # Never the credentials: a repr ends up in logs and tracebacks.
        return f"<{type(self).__name__} {self.name}>"

    def flow(self) -> Flow:  # pragma: no cover - every subclass overrides it
        raise NotImplementedError


def _expect_challenge(challenge: bytes | None) -> bytes:
    if challenge is None:
        raise AuthenticationError("the server reported success before the exchange ended")
    return challenge


class Plain(Mechanism):
    """RFC 4616: ``authzid NUL authcid NUL password`` in one message."""

    name = "PLAIN"
    sends_secret_in_clear = True

    def __init__(self, user: str, password: str, *, authzid: str = "") -> None:
        self._message = "\0".join((authzid, user, password)).encode("utf-8")

    def flow(self) -> Flow:
        yield self._message


class Login(Mechanism):
    """The LOGIN mechanism: the user name, then the password, each on request."""

    name = "LOGIN"
    sends_secret_in_clear = True

    def __init__(self, user: str, password: str) -> None:
        self._user, self._password = user.encode("utf-8"), password.encode("utf-8")

    def flow(self) -> Flow:
        _expect_challenge((yield None))  # "Username:"
        _expect_challenge((yield self._user))  # "Password:"
        yield self._password


class CramMD5(Mechanism):
    """RFC 2195: ``user SP hex(HMAC-MD5(password, challenge))``.

    The password does not cross the wire, but a recorded exchange can be attacked
    offline, so it ranks below PLAIN over TLS.
    """

    name = "CRAM-MD5"
    sends_secret_in_clear = False

    def __init__(self, user: str, password: str) -> None:
        self._user, self._password = user.encode("utf-8"), password.encode("utf-8")

    def flow(self) -> Flow:
        # hashlib and hmac load OpenSSL's libcrypto: only CRAM-MD5 and SCRAM use them,
        # so PLAIN, LOGIN (what most servers offer) and no AUTH leave them off a send.
        import hashlib  # noqa: PLC0415
        import hmac  # noqa: PLC0415

        challenge = _expect_challenge((yield None))
        digest = hmac.new(self._password, challenge, hashlib.md5).hexdigest()
        yield self._user + b" " + digest.encode("ascii")


class XOAuth2(Mechanism):
    """Google's XOAUTH2: ``user=U^Aauth=Bearer T^A^A``.

    On failure the server sends a JSON error as a challenge and waits for an empty
    response before its 5xx.
    """

    name = "XOAUTH2"
    sends_secret_in_clear = True

    def __init__(self, user: str, token: str) -> None:
        self._message = f"user={user}\x01auth=Bearer {token}\x01\x01".encode()

    def flow(self) -> Flow:
        if (yield self._message) is not None:
            yield b""


class OAuthBearer(Mechanism):
    """RFC 7628 §3.1: a GS2 header, host, port and the bearer token.

    On failure the server sends a JSON error challenge; the client answers with a
    single ``%x01`` (RFC 7628 §3.2.3) and the server ends with a failure reply.
    """

    name = "OAUTHBEARER"
    sends_secret_in_clear = True

    def __init__(self, user: str, token: str, *, host: str, port: int) -> None:
        gs2 = "n,a=" + user.replace("=", "=3D").replace(",", "=2C") + ","
        self._message = f"{gs2}\x01host={host}\x01port={port}\x01auth=Bearer {token}\x01\x01"

    def flow(self) -> Flow:
        if (yield self._message.encode("utf-8")) is not None:
            yield b"\x01"


class External(Mechanism):
    """RFC 4422 App. A: the identity comes from outside (a TLS client certificate)."""

    name = "EXTERNAL"
    sends_secret_in_clear = False

    def __init__(self, authzid: str = "") -> None:
        self._authzid = authzid.encode("utf-8")

    def flow(self) -> Flow:
        yield self._authzid


class _Scram(Mechanism):
    """RFC 5802 SCRAM without channel binding (GS2 header ``n,,``)."""

    sends_secret_in_clear = False
    _hash: ClassVar[str]

    def __init__(self, user: str, password: str, *, nonce: str | None = None) -> None:
        # RFC 5802 §5.1: the user name is SASLprepped and "=" and "," escaped.
        self._user = saslprep(user).replace("=", "=3D").replace(",", "=2C")
        self._password = saslprep(password).encode("utf-8")
        # A printable nonce without ",": token_urlsafe uses [A-Za-z0-9_-] only.
        if nonce is None:
            # Only SCRAM needs secrets (and random, which it imports): the PLAIN and
            # LOGIN most servers offer leave both off every sender's start.
            import secrets  # noqa: PLC0415

            nonce = secrets.token_urlsafe(24)
        self._nonce = nonce

    def _hmac(self, key: bytes, message: bytes) -> bytes:
        import hmac  # noqa: PLC0415 - see CramMD5.flow

        return hmac.new(key, message, self._hash).digest()

    def flow(self) -> Flow:
        import hashlib  # noqa: PLC0415 - see CramMD5.flow
        import hmac  # noqa: PLC0415

        client_first_bare = f"n={self._user},r={self._nonce}".encode()
        server_first = _expect_challenge((yield b"n,," + client_first_bare))
        fields = _scram_fields(server_first)
        combined_nonce, salt, iterations = _scram_server_first(fields, self._nonce)
        without_proof = b"c=biws,r=" + combined_nonce  # biws = base64("n,,")
        auth_message = client_first_bare + b"," + server_first + b"," + without_proof
        salted = hashlib.pbkdf2_hmac(self._hash, self._password, salt, iterations)
        client_key = self._hmac(salted, b"Client Key")
        stored_key = hashlib.new(self._hash, client_key).digest()
        signature = self._hmac(stored_key, auth_message)
        proof = bytes(a ^ b for a, b in zip(client_key, signature, strict=True))
        server_final = _expect_challenge((yield without_proof + b",p=" + base64.b64encode(proof)))
        expected = self._hmac(self._hmac(salted, b"Server Key"), auth_message)
        final = _scram_fields(server_final)
        if "e" in final:
            raise AuthenticationError(
                f"SCRAM server error: {final['e'].decode('ascii', 'replace')}"
            )
        if "v" not in final or not hmac.compare_digest(_b64(final["v"]), expected):
            raise AuthenticationError("the SCRAM server signature does not verify")
        # RFC 4954 §4: the server-final message came as a challenge; answer empty.
        yield b""


class ScramSHA1(_Scram):
    name = "SCRAM-SHA-1"
    _hash = "sha1"


class ScramSHA256(_Scram):
    name = "SCRAM-SHA-256"
    _hash = "sha256"


def _b64(data: bytes) -> bytes:
    try:
        return base64.b64decode(data, validate=True)
    except ValueError as exc:
        raise AuthenticationError("invalid base64 in a SCRAM message") from exc


def _scram_fields(message: bytes) -> dict[str, bytes]:
    fields: dict[str, bytes] = {}
    for part in message.split(b","):
        if len(part) < 2 or part[1:2] != b"=" or not part[:1].isalpha():
            raise AuthenticationError("malformed SCRAM message")
        fields.setdefault(part[:1].decode("ascii"), part[2:])
    return fields


def _scram_server_first(fields: dict[str, bytes], nonce: str) -> tuple[bytes, bytes, int]:
    if "m" in fields:  # RFC 5802 §5.1: a mandatory extension we do not know
        raise AuthenticationError("the SCRAM server requires an unsupported extension")
    combined = fields.get("r", b"")
    if not combined.startswith(nonce.encode()) or len(combined) == len(nonce):
        raise AuthenticationError("the SCRAM server nonce does not extend ours")
    count = fields.get("i", b"")
    if not count.isdigit() or not 0 < int(count) <= MAX_SCRAM_ITERATIONS:
        raise AuthenticationError("SCRAM iteration count missing or out of range")
    salt = _b64(fields.get("s", b""))
    if not salt:
        raise AuthenticationError("SCRAM salt missing")
    return combined, salt, int(count)


def saslprep(text: str) -> str:
    """RFC 4013 SASLprep (stored strings: unassigned code points are refused)."""
    # Imported here: only SCRAM prepares strings, and the tables cost every start.
    import stringprep  # noqa: PLC0415
    import unicodedata  # noqa: PLC0415

    mapped = "".join(
        " " if stringprep.in_table_c12(char) else char
        for char in text
        if not stringprep.in_table_b1(char)
    )
    normal = unicodedata.normalize("NFKC", mapped)
    prohibited = (
        stringprep.in_table_c12, stringprep.in_table_c21, stringprep.in_table_c22,
        stringprep.in_table_c3, stringprep.in_table_c4, stringprep.in_table_c5,
        stringprep.in_table_c6, stringprep.in_table_c7, stringprep.in_table_c8,
        stringprep.in_table_c9, stringprep.in_table_a1,
    )  # fmt: skip
    for char in normal:
        if any(test(char) for test in prohibited):
            raise LocalProtocolError("a character SASLprep (RFC 4013) prohibits")
    # RFC 3454 §6: bidirectional text must not mix and must start and end with RAL.
    if any(stringprep.in_table_d1(char) for char in normal) and (
        any(stringprep.in_table_d2(char) for char in normal)
        or not (stringprep.in_table_d1(normal[0]) and stringprep.in_table_d1(normal[-1]))
    ):
        raise LocalProtocolError("mixed-direction text SASLprep (RFC 4013) prohibits")
    return normal


# msmtp's order for ``auth on`` (msmtp.md): the strongest mechanism first. OAuth and
# EXTERNAL need other credentials and are only used when configured by name.
_PREFERENCE = ("SCRAM-SHA-256", "SCRAM-SHA-1", "PLAIN", "CRAM-MD5", "LOGIN")
PASSWORD_MECHANISMS: dict[str, type[Plain | Login | CramMD5 | ScramSHA1 | ScramSHA256]] = {
    "SCRAM-SHA-256": ScramSHA256,
    "SCRAM-SHA-1": ScramSHA1,
    "PLAIN": Plain,
    "CRAM-MD5": CramMD5,
    "LOGIN": Login,
}


def choose_mechanism(
    offered: Iterable[str], *, tls_active: bool, allow_plaintext: bool = False
) -> str:
    """Pick the strongest password mechanism the server offers (msmtp's ``auth on``).

    Without TLS a mechanism that reveals the password (PLAIN, LOGIN) is only
    chosen when ``allow_plaintext`` says so (DESIGN.md §4 invariant 3).
    """
    offered_names = {name.upper() for name in offered}
    refused = []
    for name in _PREFERENCE:
        if name not in offered_names:
            continue
        if PASSWORD_MECHANISMS[name].sends_secret_in_clear and not (tls_active or allow_plaintext):
            refused.append(name)
            continue
        return name
    if refused:
        raise NoSuitableMechanismError(
            f"the server offers only {', '.join(refused)}, which would send the password "
            "in clear without TLS; use TLS, or allow plaintext authentication explicitly"
        )
    raise NoSuitableMechanismError(
        "the server offers no supported authentication mechanism"
        + (f" (it offers {', '.join(sorted(offered_names))})" if offered_names else "")
    )


def password_mechanism(
    name: str, user: str, password: str
) -> Plain | Login | CramMD5 | ScramSHA1 | ScramSHA256:
    """The mechanism object for a password mechanism chosen by name."""
    try:
        mechanism_class = PASSWORD_MECHANISMS[name.upper()]
    except KeyError:
        raise LocalProtocolError(f"{name} is not a password mechanism") from None
    return mechanism_class(user, password)
