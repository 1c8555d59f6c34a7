"""``--pretend``: the resolved account in msmtp's ``key = value`` format.

The lines and their order are msmtp's (1.8.23 as Debian 12 ships it, with the
lines later versions added: ``from_full_name``, ``set_msgid_header`` and
``set_to_header``, which replaces 1.8.23's ``undisclosed_recipients``). mailhop's
own setting ``allow_plaintext_auth`` follows ``tls_host_override``. A password
shows as ``*``, never as itself.
"""

from __future__ import annotations

from collections.abc import Sequence

from mailhop.config.model import Account, Auth, HeaderPolicy, ToHeader

NOT_SET = "(not set)"


def _on_off(value: bool) -> str:
    return "on" if value else "off"


def _text(value: str | None) -> str:
    return NOT_SET if value is None else value


def _timeout(seconds: int | None) -> str:
    if seconds is None:
        return "off"
    return "1 second" if seconds == 1 else f"{seconds} seconds"


def _auth(auth: Auth) -> str:
    if auth is Auth.NONE:
        return "none"
    if auth is Auth.CHOOSE:
        return "choose"
    return auth.mechanism or auth.value


def format_fingerprint(digest: bytes) -> str:
    """``AB:CD:...`` as msmtp prints (and accepts) a fingerprint."""
    return ":".join(f"{byte:02X}" for byte in digest)


def _header(policy: HeaderPolicy) -> str:
    return policy.value


def _to_header(policy: ToHeader) -> str:
    return policy.value


def render_pretend(
    account: Account,
    *,
    messages: Sequence[str] = (),
    sendmail_mode: bool = True,
    read_envelope_from: bool = False,
    read_recipients: bool = False,
    password_found: bool = False,
) -> str:
    """The ``--pretend`` text (ends with a newline) for a completed ``account``.

    ``messages`` are the file-loading and selection lines (``Resolution.messages``);
    ``read_envelope_from``/``read_recipients`` are ``--read-envelope-from`` and ``-t``.
    ``password_found``: the caller already obtained the password some other way
    (msmtp runs ``passwordeval`` before printing, when ``auth`` is on, and then
    shows ``password = *``); only ``*`` is ever printed.
    """
    lines = list(messages)
    if account.file is not None:
        lines.append(f"using account {account.name} from {account.file}")
    fingerprint = (
        format_fingerprint(account.tls_fingerprint)
        if account.tls_fingerprint is not None
        else NOT_SET
    )
    pairs: list[tuple[str, str]] = [
        ("host", _text(account.host)),
        ("port", str(account.port or 0)),
        ("source ip", _text(account.source_ip)),
        ("proxy host", _text(account.proxy_host)),
        ("proxy port", str(account.proxy_port or 0)),
        ("socket", _text(account.socket)),
        ("timeout", _timeout(account.timeout)),
        ("protocol", account.protocol.value),
        ("domain", account.domain),
        ("auth", _auth(account.auth)),
        ("user", _text(account.user)),
        ("password", "*" if account.password is not None or password_found else NOT_SET),
        ("passwordeval", _text(account.passwordeval)),
        ("ntlmdomain", _text(account.ntlmdomain)),
        ("tls", _on_off(account.tls)),
        ("tls_starttls", _on_off(account.tls_starttls)),
        ("tls_trust_file", _text(account.tls_trust_file)),
        ("tls_crl_file", _text(account.tls_crl_file)),
        ("tls_fingerprint", fingerprint),
        ("tls_key_file", _text(account.tls_key_file)),
        ("tls_cert_file", _text(account.tls_cert_file)),
        ("tls_certcheck", _on_off(account.tls_certcheck)),
        (
            "tls_min_dh_prime_bits",
            NOT_SET
            if account.tls_min_dh_prime_bits is None
            else str(account.tls_min_dh_prime_bits),
        ),
        ("tls_priorities", _text(account.tls_priorities)),
        ("tls_host_override", _text(account.tls_host_override)),
        ("allow_plaintext_auth", _on_off(account.allow_plaintext_auth)),
    ]
    if sendmail_mode:
        if account.from_address is not None:
            from_text = account.from_address
        else:
            from_text = "(read from mail)" if read_envelope_from else NOT_SET
        pairs += [
            ("auto_from", _on_off(account.auto_from)),
            ("maildomain", _text(account.maildomain)),
            ("from", from_text),
            ("from_full_name", _text(account.from_full_name)),
            ("allow_from_override", _on_off(account.allow_from_override)),
            ("set_from_header", _header(account.set_from_header)),
            ("set_date_header", _header(account.set_date_header)),
            ("set_msgid_header", _header(account.set_msgid_header)),
            ("set_to_header", _to_header(account.set_to_header)),
            ("remove_bcc_headers", _on_off(account.remove_bcc_headers)),
            ("dsn_notify", _text(account.dsn_notify)),
            ("dsn_return", NOT_SET if account.dsn_return is None else account.dsn_return.value),
            ("logfile", _text(account.logfile)),
            ("logfile_time_format", _text(account.logfile_time_format)),
            ("syslog", _text(account.syslog)),
            ("aliases", _text(account.aliases)),
        ]
    lines += [f"{key} = {value}" for key, value in pairs]
    if sendmail_mode:
        lines.append(
            "reading recipients from the command line and the mail"
            if read_recipients
            else "reading recipients from the command line"
        )
    return "".join(f"{line}\n" for line in lines)
