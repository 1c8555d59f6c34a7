"""The typed account model: what one msmtprc account says, after parsing.

An ``Account`` holds the value of every setting as the configuration file (or the
command line) gave it, plus ``explicit``: the names of the fields that were set
explicitly. msmtp keeps the same information as a bit mask; it decides what a
parent passes on to ``account NAME : PARENT`` and what a command-line option
overrides, so both go through ``override`` below.

Values derived at use time (port 25/465, ``tls_trust_file system``, proxy port
1080) are not stored here by the parser; ``mailhop.config.accounts.complete``
fills them in, exactly when msmtp does, so ``account default : X`` inherits the
raw setting and not a default computed too early.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable

from mailhop._records import NamedTuple


class Protocol(enum.Enum):
    """``protocol``: the dialogue spoken with the server."""

    SMTP = "smtp"
    LMTP = "lmtp"  # RFC 2033: LHLO and one reply per recipient after DATA
    POP3 = "pop3"  # retrieval account for ``mailhop fetch`` (RFC 1939)
    IMAP = "imap"  # retrieval account for ``mailhop fetch`` (RFC 3501)


class Auth(enum.Enum):
    """``auth``: NONE (off), CHOOSE (on: pick the best offered method) or one method."""

    NONE = "off"
    CHOOSE = "on"
    PLAIN = "plain"
    LOGIN = "login"
    CRAM_MD5 = "cram-md5"
    DIGEST_MD5 = "digest-md5"
    SCRAM_SHA_1 = "scram-sha-1"
    SCRAM_SHA_1_PLUS = "scram-sha-1-plus"
    SCRAM_SHA_256 = "scram-sha-256"
    SCRAM_SHA_256_PLUS = "scram-sha-256-plus"
    GSSAPI = "gssapi"
    EXTERNAL = "external"
    NTLM = "ntlm"
    OAUTHBEARER = "oauthbearer"
    XOAUTH2 = "xoauth2"

    @property
    def mechanism(self) -> str | None:
        """The SASL mechanism name (``SCRAM-SHA-256``), or None for NONE/CHOOSE."""
        if self in (Auth.NONE, Auth.CHOOSE):
            return None
        return str(self.value).upper()


class TlsMode(enum.Enum):
    """How ``tls`` and ``tls_starttls`` combine; a view for messages and listings."""

    OFF = "off"
    STARTTLS = "starttls"  # plain connect, then STARTTLS (required, never optional)
    IMPLICIT = "implicit"  # TLS from the first byte ("smtps", port 465)


class HeaderPolicy(enum.Enum):
    """``set_from_header`` (all three), ``set_date_header``/``set_msgid_header`` (AUTO/OFF)."""

    AUTO = "auto"  # add the header when the mail has none
    ON = "on"  # always replace it
    OFF = "off"  # never touch it


class ToHeader(enum.Enum):
    """``set_to_header``: replace To/Cc/Bcc with the envelope recipients."""

    OFF = "off"
    ON = "on"
    UNDISCLOSED_RECIPIENTS = "undisclosed_recipients"  # To: undisclosed-recipients:;


class DsnReturn(enum.Enum):
    """``dsn_return`` (RFC 3461 §4.3 RET parameter)."""

    HEADERS = "HDRS"
    FULL = "FULL"


class QueueMode(enum.Enum):
    """``queue`` (mailhop): what sendmail does when the server cannot take mail now."""

    OFF = "off"  # msmtp's behaviour: deliver now, the exit code tells the result
    FALLBACK = "fallback"  # deliver now; on a temporary failure queue durably, exit 0
    ALWAYS = "always"  # queue durably, exit 0 at once, deliver in the background


# Queue retry schedule (mailhop): exponential backoff from the minimum to the
# maximum, then a bounce when the lifetime ends. Five days is the lifetime dma and
# sendmail use and RFC 5321 §4.5.4.1 suggests ("at least 4-5 days").
DEFAULT_QUEUE_RETRY_MIN_SECONDS = 5 * 60
DEFAULT_QUEUE_RETRY_MAX_SECONDS = 4 * 3600
DEFAULT_QUEUE_LIFETIME_SECONDS = 5 * 24 * 3600
# Delay warnings are off unless asked for, as Postfix's delay_warning_time (0); a
# typical setting is 4h, sendmail's Timeout.queuewarn.
DEFAULT_QUEUE_DELAY_WARNING_SECONDS = 0

# The syslog facility msmtp uses for ``syslog on``.
DEFAULT_SYSLOG_FACILITY = "LOG_USER"
# The port msmtp uses for SMTP without implicit TLS, and with it (RFC 8314 §7.3).
DEFAULT_SMTP_PORT = 25
DEFAULT_SMTPS_PORT = 465
# The SOCKS port msmtp uses when proxy_host is set without proxy_port (RFC 1928 §3).
DEFAULT_PROXY_PORT = 1080
# tls_trust_file value meaning "the system's CA store".
SYSTEM_TRUST = "system"


class Account(NamedTuple):
    """One account, every setting typed; None means "not set" (msmtp's NULL).

    A NamedTuple, not a dataclass: every sendmail process builds this class, and a
    dataclass of 74 fields costs it 6-7 ms at import (docs/CONVENTIONS.md). Build
    one with keywords, change one with ``_replace``; ``repr`` leaves out the secrets.
    """

    name: str
    file: str | None = None  # the file that defined it; None: command line or environment
    line: int = 0  # line of its ``account`` command (or first command for "default")
    explicit: frozenset[str] = frozenset()  # fields set explicitly (msmtp's mask)

    # connection
    host: str | None = None
    port: int | None = None  # None: derived at use time (25, or 465 for implicit TLS)
    source_ip: str | None = None
    proxy_host: str | None = None
    proxy_port: int | None = None
    socket: str | None = None
    timeout: int | None = None  # seconds; None: off (the OS default)
    protocol: Protocol = Protocol.SMTP
    domain: str = "localhost"

    # authentication
    auth: Auth = Auth.NONE
    user: str | None = None
    password: str | None = None  # never in repr (see __repr__)
    passwordeval: str | None = None
    ntlmdomain: str | None = None
    allow_plaintext_auth: bool = False  # mailhop: AUTH without TLS only when on

    # TLS
    tls: bool = False
    tls_starttls: bool = True
    tls_trust_file: str | None = None  # None: not set ("system" at use time, unless explicit)
    tls_crl_file: str | None = None
    tls_fingerprint: bytes | None = None  # SHA-256 (32), SHA-1 (20) or MD5 (16) digest
    tls_key_file: str | None = None
    tls_cert_file: str | None = None
    tls_certcheck: bool = True
    tls_min_dh_prime_bits: int | None = None
    tls_priorities: str | None = None
    tls_host_override: str | None = None

    # envelope and headers
    from_address: str | None = None  # the ``from`` command
    from_full_name: str | None = None
    allow_from_override: bool = True
    auto_from: bool = False  # obsolete
    maildomain: str | None = None  # obsolete
    set_from_header: HeaderPolicy = HeaderPolicy.AUTO
    set_date_header: HeaderPolicy = HeaderPolicy.AUTO
    set_msgid_header: HeaderPolicy = HeaderPolicy.AUTO
    set_to_header: ToHeader = ToHeader.OFF
    remove_bcc_headers: bool = True

    # delivery status notifications (RFC 3461)
    dsn_notify: str | None = None  # "NEVER" or e.g. "FAILURE,DELAY"
    dsn_return: DsnReturn | None = None

    # logging and aliases
    logfile: str | None = None  # "-" means standard output
    logfile_time_format: str | None = None
    syslog: str | None = None  # facility: LOG_USER, LOG_MAIL, LOG_LOCAL0..7
    aliases: str | None = None

    # the durable queue (mailhop)
    queue: QueueMode = QueueMode.FALLBACK
    queue_dir: str | None = None  # None: /var/spool/mailhop for root, else XDG state
    queue_retry_min: int = DEFAULT_QUEUE_RETRY_MIN_SECONDS
    queue_retry_max: int = DEFAULT_QUEUE_RETRY_MAX_SECONDS
    queue_lifetime: int = DEFAULT_QUEUE_LIFETIME_SECONDS
    queue_delay_warning: int = DEFAULT_QUEUE_DELAY_WARNING_SECONDS  # 0: none

    # OAuth2 for XOAUTH2/OAUTHBEARER (mailhop; RFC 6749, RFC 8628): where to get and
    # refresh the bearer token that ``mailhop oauth login`` obtained.
    oauth_token_endpoint: str | None = None
    oauth_device_endpoint: str | None = None
    oauth_authorize_endpoint: str | None = None
    oauth_client_id: str | None = None
    oauth_client_secret: str | None = None  # never in repr
    oauth_scope: str | None = None

    # local delivery and system mail (mailhop, issue #5; docs/local.md)
    local_domains: tuple[str, ...] = ()  # more domains that mean this machine
    system_aliases: str | None = "/etc/aliases"  # aliases(5) for local recipients
    mail_spool: str = "/var/mail"  # where USER's mbox lives
    local_mailbox: str = "auto"  # auto (~/Maildir if present), mbox or maildir
    rewrite_from: bool = True  # a local From (cron's root) becomes the account's address
    qualify_recipients: bool = True  # bare To/Cc names get the host's mail domain

    # retrieval (``mailhop fetch``, protocol pop3 or imap)
    folders: tuple[str, ...] = ("INBOX",)  # IMAP folders to fetch; POP3 has only one
    keep: bool = True  # leave fetched mail on the server; off: delete once stored durably
    delivery: str | None = None  # maildir:PATH, mbox:PATH, mda:COMMAND or local:USER

    @property
    def tls_mode(self) -> TlsMode:
        if not self.tls:
            return TlsMode.OFF
        return TlsMode.STARTTLS if self.tls_starttls else TlsMode.IMPLICIT

    @property
    def where(self) -> str:
        """``account NAME from FILE`` style description for messages."""
        if self.file is None:
            return f"account {self.name}"
        return f"account {self.name} from {self.file}"

    def __repr__(self) -> str:
        # Secrets never reach a log, a transcript or a traceback (DESIGN.md §4.7).
        shown = ", ".join(
            f"{name}={value!r}"
            for name, value in zip(self._fields, self, strict=True)
            if name not in SECRET_FIELDS
        )
        return f"Account({shown})"


# Fields whose values are secrets: left out of ``repr``.
SECRET_FIELDS = frozenset({"password", "oauth_client_secret"})


# Fields that are part of an account's settings (not its identity).
SETTING_FIELDS: tuple[str, ...] = tuple(
    name for name in Account._fields if name not in ("name", "file", "line", "explicit")
)


def override(account: Account, source: Account, fields: Iterable[str] | None = None) -> Account:
    """Return ``account`` with the explicit settings of ``source`` copied over.

    This is msmtp's ``override_account``: used for ``account X : PARENT`` and for
    command-line options. ``fields`` restricts the copy (default: all of
    ``source.explicit``); the copied fields become explicit in the result.
    """
    names = source.explicit if fields is None else frozenset(fields) & source.explicit
    changes: dict[str, object] = {name: getattr(source, name) for name in names}
    return account._replace(explicit=account.explicit | names, **changes)  # type: ignore[arg-type]
