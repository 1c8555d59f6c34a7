"""The provider table is complete data with sources, and recognises domains and MX."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from mailhop.config import TlsMode
from mailhop.config.providers import PROVIDERS, Secret, by_key, for_domain, for_mx_hosts

REQUIRED = {
    "gmail", "google-workspace", "outlook", "microsoft365", "yahoo", "icloud", "qq",
    "foxmail", "exmail", "163", "126", "yeah", "sina", "sohu", "aliyun", "fastmail",
    "zoho", "gmx", "yandex", "mailru", "proton-bridge",
}  # fmt: skip
DOCS = Path(__file__).resolve().parents[2] / "docs" / "setup.md"


def test_every_required_provider_is_in_the_table() -> None:
    assert {provider.key for provider in PROVIDERS} >= REQUIRED


@pytest.mark.parametrize("provider", PROVIDERS, ids=lambda provider: provider.key)
def test_every_entry_is_complete(provider: object) -> None:
    from mailhop.config.providers import Provider

    assert isinstance(provider, Provider)
    assert re.fullmatch(r"[a-z0-9.-]+", provider.host)
    assert 1 <= provider.port <= 65535
    # RFC 8314: submission is implicit TLS or required STARTTLS, never plaintext.
    assert provider.tls_mode in (TlsMode.IMPLICIT, TlsMode.STARTTLS)
    assert provider.port != 465 or provider.tls_mode is TlsMode.IMPLICIT
    assert provider.sources and all(s.startswith("https://") for s in provider.sources)
    assert provider.notes
    assert provider.domains or provider.mx_patterns
    if provider.secret is Secret.OAUTH2:
        assert provider.oauth is not None


def test_keys_and_domains_are_unique() -> None:
    keys = [provider.key for provider in PROVIDERS]
    assert len(keys) == len(set(keys))
    domains = [domain for provider in PROVIDERS for domain in provider.domains]
    assert len(domains) == len(set(domains))


def test_gmail_resolves_to_smtp_gmail_com_over_implicit_tls() -> None:
    gmail = for_domain("Gmail.COM.")
    assert gmail is not None and gmail.key == "gmail"
    assert (gmail.host, gmail.port, gmail.tls_mode) == ("smtp.gmail.com", 465, TlsMode.IMPLICIT)
    assert gmail.oauth is not None and gmail.oauth.scope == "https://mail.google.com/"


def test_qq_resolves_to_smtp_qq_com_with_an_authorization_code() -> None:
    qq = for_domain("qq.com")
    assert qq is not None
    assert (qq.host, qq.port, qq.tls_mode) == ("smtp.qq.com", 465, TlsMode.IMPLICIT)
    assert qq.secret is Secret.AUTHORIZATION_CODE


def test_unknown_domain_is_not_guessed() -> None:
    assert for_domain("example.test") is None
    assert for_mx_hosts(["mx.example.test"]) is None


def test_google_hosted_domain_is_recognised_from_its_mx() -> None:
    found = for_mx_hosts(["ASPMX.L.GOOGLE.COM.", "alt1.aspmx.l.google.com"])
    assert found is by_key("google-workspace")
    assert for_mx_hosts(["contoso-com.mail.protection.outlook.com"]) is by_key("microsoft365")
    assert for_mx_hosts(["mxbiz1.qq.com"]) is by_key("exmail")
    assert for_mx_hosts(["mx3.qq.com"]) is by_key("qq")


def test_docs_list_every_provider_with_its_sources() -> None:
    text = DOCS.read_text(encoding="utf-8")
    for provider in PROVIDERS:
        assert provider.host in text, provider.key
        for source in provider.sources:
            assert source in text, (provider.key, source)
