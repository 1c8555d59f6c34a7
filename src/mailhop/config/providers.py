"""The built-in provider table: how to submit mail through the big mailbox providers.

``mailhop configure you@example.com`` looks here first: by the address's domain
(``gmail.com``, ``qq.com``), then by the domain's MX host names (a company domain
hosted by Google Workspace or Microsoft 365 has ``*.google.com`` or
``*.mail.protection.outlook.com`` MX records). Only when nothing matches does it
ask DNS for SRV records (RFC 6186) and probe the server.

This is data, not code: one ``Provider`` row each, with the submission host, port
and TLS mode, what the password must be (an app password, an authorisation code,
OAuth2), and the provider's own page each fact comes from (``sources``). The rows
are listed in docs/setup.md with the same sources; a test checks every row is
complete. Ports follow RFC 8314: implicit TLS on 465 where the provider offers it
(§3.3 prefers it), STARTTLS on 587 where it does not.
"""

from __future__ import annotations

import dataclasses
import enum
import fnmatch

from mailhop.config.model import TlsMode


class Secret(enum.Enum):
    """What the provider wants as the SMTP password."""

    PASSWORD = "password"  # noqa: S105 - the account's own password
    APP_PASSWORD = "app password"  # noqa: S105 - a per-application password (2-step verification)
    AUTHORIZATION_CODE = "authorization code"  # Chinese providers' 授权码 / 客户端授权密码
    OAUTH2 = "oauth2"  # no password at all: XOAUTH2/OAUTHBEARER with a bearer token
    BRIDGE_PASSWORD = "bridge password"  # noqa: S105 - a local bridge generates it


@dataclasses.dataclass(frozen=True, kw_only=True)
class OAuthEndpoints:
    """Where a provider's OAuth2 authorisation server lives (RFC 6749 §3, RFC 8628 §3.1).

    The client id is the user's own (registered with the provider): mailhop ships none.
    """

    token_endpoint: str
    device_endpoint: str | None
    authorize_endpoint: str
    scope: str
    mechanism: str  # the SASL mechanism the provider's SMTP server takes


@dataclasses.dataclass(frozen=True, kw_only=True)
class Provider:
    """One mailbox provider's submission settings, with the pages they come from."""

    key: str
    name: str
    domains: tuple[str, ...]  # address domains that belong to it (lower case)
    mx_patterns: tuple[str, ...]  # fnmatch patterns for MX host names of hosted domains
    host: str
    port: int
    tls_mode: TlsMode
    secret: Secret
    notes: str  # what the user must do before mailhop can log in
    sources: tuple[str, ...]  # the provider's documentation for host, port, TLS and secret
    oauth: OAuthEndpoints | None = None
    user_is_address: bool = True  # the login name is the full address


GOOGLE_OAUTH = OAuthEndpoints(
    token_endpoint="https://oauth2.googleapis.com/token",  # noqa: S106 - a URL
    device_endpoint="https://oauth2.googleapis.com/device/code",
    authorize_endpoint="https://accounts.google.com/o/oauth2/v2/auth",
    # The one scope Google's SMTP server accepts for XOAUTH2.
    scope="https://mail.google.com/",
    mechanism="xoauth2",
)
MICROSOFT_OAUTH = OAuthEndpoints(
    token_endpoint="https://login.microsoftonline.com/common/oauth2/v2.0/token",  # noqa: S106
    device_endpoint="https://login.microsoftonline.com/common/oauth2/v2.0/devicecode",
    authorize_endpoint="https://login.microsoftonline.com/common/oauth2/v2.0/authorize",
    scope="https://outlook.office.com/SMTP.Send offline_access",
    mechanism="xoauth2",
)

GOOGLE_SOURCES = (
    "https://support.google.com/mail/answer/7126229",  # IMAP/SMTP settings for clients
    "https://support.google.com/accounts/answer/185833",  # app passwords
    "https://developers.google.com/gmail/imap/xoauth2-protocol",  # XOAUTH2 for SMTP
)
MICROSOFT_CONSUMER_SOURCES = (
    "https://support.microsoft.com/en-us/office/"
    "pop-imap-and-smtp-settings-for-outlook-com-d088b986-291d-42b8-9564-9c414e2aa040",
    "https://learn.microsoft.com/en-us/exchange/client-developer/legacy-protocols/"
    "how-to-authenticate-an-imap-pop-smtp-application-by-using-oauth",
)
NETEASE_SOURCE = "https://help.mail.163.com/faqDetail.do?code=d7a5dc8471cd0c0e8b4b8f4f8e49998b374173cfe9171305fa1ce630d7f67ac2"

PROVIDERS: tuple[Provider, ...] = (
    Provider(
        key="gmail",
        name="Gmail",
        domains=("gmail.com", "googlemail.com"),
        mx_patterns=(),
        host="smtp.gmail.com",
        port=465,
        tls_mode=TlsMode.IMPLICIT,
        secret=Secret.APP_PASSWORD,
        notes="turn on 2-Step Verification, then create an app password at "
        "https://myaccount.google.com/apppasswords; or use OAuth2 (mailhop oauth login)",
        sources=GOOGLE_SOURCES,
        oauth=GOOGLE_OAUTH,
    ),
    Provider(
        key="google-workspace",
        name="Google Workspace",
        domains=(),
        mx_patterns=("*.google.com", "*.googlemail.com", "smtp.google.com"),
        host="smtp.gmail.com",
        port=465,
        tls_mode=TlsMode.IMPLICIT,
        secret=Secret.APP_PASSWORD,
        notes="app passwords need 2-Step Verification and an administrator who allows "
        "them; otherwise use OAuth2 (mailhop oauth login)",
        sources=(*GOOGLE_SOURCES, "https://support.google.com/a/answer/176600"),
        oauth=GOOGLE_OAUTH,
    ),
    Provider(
        key="outlook",
        name="Outlook.com (Hotmail, Live, MSN)",
        domains=(
            "outlook.com",
            "hotmail.com",
            "live.com",
            "msn.com",
            "outlook.de",
            "hotmail.co.uk",
        ),
        mx_patterns=("*.olc.protection.outlook.com",),
        host="smtp-mail.outlook.com",
        port=587,
        tls_mode=TlsMode.STARTTLS,
        secret=Secret.OAUTH2,
        notes="Microsoft is retiring password login for SMTP: use OAuth2 (mailhop oauth "
        "login) with an app registered in Microsoft Entra",
        sources=MICROSOFT_CONSUMER_SOURCES,
        oauth=MICROSOFT_OAUTH,
    ),
    Provider(
        key="microsoft365",
        name="Microsoft 365 (Exchange Online)",
        domains=(),
        mx_patterns=("*.mail.protection.outlook.com",),
        host="smtp.office365.com",
        port=587,
        tls_mode=TlsMode.STARTTLS,
        secret=Secret.OAUTH2,
        notes="SMTP AUTH must be enabled for the mailbox by an administrator; basic "
        "(password) authentication is being retired: use OAuth2 (mailhop oauth login)",
        sources=(
            "https://learn.microsoft.com/en-us/exchange/clients-and-mobile-in-exchange-online/"
            "authenticated-client-smtp-submission",
            MICROSOFT_CONSUMER_SOURCES[1],
        ),
        oauth=MICROSOFT_OAUTH,
    ),
    Provider(
        key="yahoo",
        name="Yahoo Mail",
        domains=("yahoo.com", "ymail.com", "rocketmail.com", "yahoo.co.uk", "yahoo.co.jp"),
        mx_patterns=("*.yahoodns.net",),
        host="smtp.mail.yahoo.com",
        port=465,
        tls_mode=TlsMode.IMPLICIT,
        secret=Secret.APP_PASSWORD,
        notes="generate an app password in Account Security",
        sources=(
            "https://help.yahoo.com/kb/SLN4075.html",
            "https://help.yahoo.com/kb/SLN15241.html",
        ),
    ),
    Provider(
        key="icloud",
        name="iCloud Mail",
        domains=("icloud.com", "me.com", "mac.com"),
        mx_patterns=("*.mail.icloud.com",),
        host="smtp.mail.me.com",
        port=587,
        tls_mode=TlsMode.STARTTLS,
        secret=Secret.APP_PASSWORD,
        notes="create an app-specific password at https://account.apple.com; the login "
        "name is the address (for @icloud.com: the part before @ works too)",
        sources=(
            "https://support.apple.com/en-us/102525",
            "https://support.apple.com/en-us/102654",
        ),
    ),
    Provider(
        key="qq",
        name="QQ Mail",
        domains=("qq.com", "vip.qq.com"),
        mx_patterns=("mx[0-9].qq.com",),
        host="smtp.qq.com",
        port=465,
        tls_mode=TlsMode.IMPLICIT,
        secret=Secret.AUTHORIZATION_CODE,
        notes="Settings > Account: turn on the SMTP service and generate an authorization "
        "code (授权码); the QQ password does not work",
        sources=(
            "https://service.mail.qq.com/detail/0/310",
            "https://service.mail.qq.com/detail/0/75",
        ),
    ),
    Provider(
        key="foxmail",
        name="Foxmail",
        domains=("foxmail.com",),
        mx_patterns=(),
        host="smtp.qq.com",
        port=465,
        tls_mode=TlsMode.IMPLICIT,
        secret=Secret.AUTHORIZATION_CODE,
        notes="foxmail.com addresses are QQ Mail accounts: use a QQ Mail authorization code",
        sources=("https://service.mail.qq.com/detail/0/310",),
    ),
    Provider(
        key="exmail",
        name="Tencent Exmail (企业邮箱)",
        domains=("exmail.qq.com",),
        mx_patterns=("mxbiz*.qq.com",),
        host="smtp.exmail.qq.com",
        port=465,
        tls_mode=TlsMode.IMPLICIT,
        secret=Secret.AUTHORIZATION_CODE,
        notes="with secure login on, use a client-specific password (客户端专用密码)",
        sources=("https://open.work.weixin.qq.com/help2/pc/19886",),
    ),
    Provider(
        key="163",
        name="NetEase 163 Mail",
        domains=("163.com",),
        mx_patterns=("163mx*.mxmail.netease.com",),
        host="smtp.163.com",
        port=465,
        tls_mode=TlsMode.IMPLICIT,
        secret=Secret.AUTHORIZATION_CODE,
        notes="Settings > POP3/SMTP/IMAP: turn on SMTP and use the authorization code "
        "(客户端授权密码) it gives",
        sources=(NETEASE_SOURCE,),
    ),
    Provider(
        key="126",
        name="NetEase 126 Mail",
        domains=("126.com",),
        mx_patterns=("126mx*.mxmail.netease.com",),
        host="smtp.126.com",
        port=465,
        tls_mode=TlsMode.IMPLICIT,
        secret=Secret.AUTHORIZATION_CODE,
        notes="as for 163.com: turn on SMTP and use the authorization code",
        sources=(NETEASE_SOURCE,),
    ),
    Provider(
        key="yeah",
        name="NetEase yeah.net",
        domains=("yeah.net",),
        mx_patterns=("yeahmx*.mxmail.netease.com",),
        host="smtp.yeah.net",
        port=465,
        tls_mode=TlsMode.IMPLICIT,
        secret=Secret.AUTHORIZATION_CODE,
        notes="as for 163.com: turn on SMTP and use the authorization code",
        sources=(NETEASE_SOURCE,),
    ),
    Provider(
        key="sina",
        name="Sina Mail",
        domains=("sina.com", "sina.cn", "vip.sina.com"),
        mx_patterns=("freemx*.sinamail.sina.com.cn", "*.sinamail.sina.com.cn"),
        host="smtp.sina.com",
        port=465,
        tls_mode=TlsMode.IMPLICIT,
        secret=Secret.AUTHORIZATION_CODE,
        notes="Settings > client POP/IMAP/SMTP: turn SMTP on (an authorization code when asked)",
        sources=("https://help.sina.com.cn/comquestiondetail/view/1566/",),
    ),
    Provider(
        key="sohu",
        name="Sohu Mail",
        domains=("sohu.com",),
        mx_patterns=("mx*.sohu.com",),
        host="smtp.sohu.com",
        port=465,
        tls_mode=TlsMode.IMPLICIT,
        secret=Secret.AUTHORIZATION_CODE,
        notes="Options > POP3/SMTP/IMAP: turn SMTP on and use the independent password "
        "(独立密码) it sets",
        sources=("https://mail.sohu.com/fe/#/help",),
    ),
    Provider(
        key="aliyun",
        name="Aliyun Mail (personal)",
        domains=("aliyun.com",),
        mx_patterns=("mx*.mail.aliyun.com",),
        host="smtp.aliyun.com",
        port=465,
        tls_mode=TlsMode.IMPLICIT,
        secret=Secret.PASSWORD,
        notes="turn on third-party client access in the web settings",
        sources=("https://help.aliyun.com/document_detail/36576.html",),
    ),
    Provider(
        key="aliyun-enterprise",
        name="Alibaba Mail (企业邮箱)",
        domains=(),
        mx_patterns=("mx*.qiye.aliyun.com", "*.mxhichina.com"),
        host="smtp.qiye.aliyun.com",
        port=465,
        tls_mode=TlsMode.IMPLICIT,
        secret=Secret.PASSWORD,
        notes="the administrator must allow third-party clients; with client security "
        "passwords on, use one",
        sources=("https://help.aliyun.com/document_detail/36687.html",),
    ),
    Provider(
        key="fastmail",
        name="Fastmail",
        domains=("fastmail.com", "fastmail.fm", "messagingengine.com"),
        mx_patterns=("*.messagingengine.com",),
        host="smtp.fastmail.com",
        port=465,
        tls_mode=TlsMode.IMPLICIT,
        secret=Secret.APP_PASSWORD,
        notes="create an app password (Settings > Privacy & Security) with SMTP access",
        sources=(
            "https://www.fastmail.help/hc/en-us/articles/1500000278342-Server-names-and-ports",
            "https://www.fastmail.help/hc/en-us/articles/360058752854-App-passwords",
        ),
    ),
    Provider(
        key="zoho",
        name="Zoho Mail",
        domains=("zoho.com", "zohomail.com"),
        mx_patterns=("mx*.zoho.com", "mx*.zoho.eu", "mx*.zoho.in", "mx*.zohomail.com"),
        host="smtp.zoho.com",
        port=465,
        tls_mode=TlsMode.IMPLICIT,
        secret=Secret.APP_PASSWORD,
        notes="with two-factor authentication use an application-specific password; "
        "accounts in other data centres use smtp.zoho.eu, smtp.zoho.in, ...",
        sources=("https://www.zoho.com/mail/help/zoho-smtp.html",),
    ),
    Provider(
        key="gmx",
        name="GMX",
        domains=("gmx.net", "gmx.de", "gmx.at", "gmx.ch", "gmx.com"),
        mx_patterns=("mx*.gmx.net", "mx*.gmx.com"),
        host="mail.gmx.net",
        port=465,
        tls_mode=TlsMode.IMPLICIT,
        secret=Secret.PASSWORD,
        notes="allow POP3/IMAP access in the web settings (gmx.com accounts: mail.gmx.com)",
        sources=(
            "https://support.gmx.com/pop-imap/toggle.html",
            "https://hilfe.gmx.net/pop-imap/imap/outlook.html",
        ),
    ),
    Provider(
        key="yandex",
        name="Yandex Mail",
        domains=("yandex.com", "yandex.ru", "ya.ru", "yandex.ua", "yandex.by", "yandex.kz"),
        mx_patterns=("mx.yandex.net", "mx.yandex.ru", "*.mx.yandex.net"),
        host="smtp.yandex.com",
        port=465,
        tls_mode=TlsMode.IMPLICIT,
        secret=Secret.APP_PASSWORD,
        notes="allow mail clients in the settings and create an app password",
        sources=("https://yandex.com/support/mail/mail-clients/others.html",),
    ),
    Provider(
        key="mailru",
        name="Mail.ru",
        domains=("mail.ru", "inbox.ru", "list.ru", "bk.ru", "internet.ru"),
        mx_patterns=("mxs.mail.ru", "*.mxs.mail.ru"),
        host="smtp.mail.ru",
        port=465,
        tls_mode=TlsMode.IMPLICIT,
        secret=Secret.APP_PASSWORD,
        notes="create a password for external applications in the security settings",
        sources=("https://help.mail.ru/mail/mailer/popsmtp",),
    ),
    Provider(
        key="proton-bridge",
        name="Proton Mail (through Proton Mail Bridge)",
        domains=("proton.me", "protonmail.com", "protonmail.ch", "pm.me"),
        mx_patterns=("mail.protonmail.ch", "mailsec.protonmail.ch"),
        host="127.0.0.1",
        port=1025,
        tls_mode=TlsMode.STARTTLS,
        secret=Secret.BRIDGE_PASSWORD,
        notes="Proton has no public SMTP for free plans: run Proton Mail Bridge, then use "
        "the user name and password it shows; export its certificate and set "
        "tls_trust_file (or tls_fingerprint) to it",
        sources=(
            "https://proton.me/support/protonmail-bridge-clients-apple-mail",
            "https://proton.me/support/bridge-ssl-connection-issue",
        ),
    ),
)


def by_key(key: str) -> Provider:
    """The provider called ``key`` (``gmail``, ``qq``, ...).

    Raises:
        KeyError: no such provider.
    """
    for provider in PROVIDERS:
        if provider.key == key:
            return provider
    raise KeyError(key)


def for_domain(domain: str) -> Provider | None:
    """The provider whose addresses end in ``@domain``, if the table knows it."""
    wanted = domain.rstrip(".").lower()
    for provider in PROVIDERS:
        if wanted in provider.domains:
            return provider
    return None


def for_mx_hosts(mx_hosts: tuple[str, ...] | list[str]) -> Provider | None:
    """The provider hosting a domain whose MX records name ``mx_hosts``.

    The first MX host (callers pass them by preference) that matches any pattern
    decides; patterns are shell-style and matched without case.
    """
    for host in mx_hosts:
        name = host.rstrip(".").lower()
        for provider in PROVIDERS:
            if any(fnmatch.fnmatchcase(name, pattern) for pattern in provider.mx_patterns):
                return provider
    return None
