"""config layer of mailhop (see DESIGN.md §2): msmtprc files, accounts, passwords.

Public API (the sendmail personality uses ``resolve`` + ``render_pretend`` +
``get_password``; ``mailhop config check`` uses ``load``)::

    load(config_file=None, *, environment=None) -> Configuration
    select_account(configuration, *, account_name=None, envelope_from=None,
                   sendmail_mode=True, environment=None) -> Selection
    apply_settings(account, settings, *, environment=None) -> Account
    complete(account, *, sendmail_mode=True, environment=None) -> Account
    check_account(account, *, sendmail_mode=True) -> None
    resolve(*, config_file=None, account_name=None, envelope_from=None, settings=(),
            sendmail_mode=True, pretend=False, environment=None) -> Resolution
    expand_from_header(account, from_header_address, *, environment=None) -> Account
    get_password(account, *, environment=None, interactive=True, ...) -> str | None
    render_pretend(account, *, messages=(), sendmail_mode=True,
                   read_envelope_from=False, read_recipients=False) -> str

Modules: ``model`` (Account and enums), ``msmtprc`` (grammar and the COMMANDS
table), ``files`` (lookup, secrets check, merge), ``accounts`` (selection,
overrides, substitutions, checks), ``password`` (password sources), ``pretend``.
The submodules import only the standard library's light modules; ``subprocess``,
``keyring``, ``termios`` and friends are imported when a function needs them, and
``password`` and ``pretend`` load on first use (``mailhop._lazy``): a queued
message needs neither.
"""

from __future__ import annotations

from mailhop._lazy import lazy_exports
from mailhop.config.accounts import (
    Resolution,
    Selection,
    apply_settings,
    check_account,
    complete,
    expand_from_header,
    resolve,
    select_account,
)
from mailhop.config.environment import Environment
from mailhop.config.errors import (
    AccountError,
    CommandFailedError,
    ConfigSyntaxError,
    InsecureConfigError,
)
from mailhop.config.files import Configuration, load
from mailhop.config.model import (
    Account,
    Auth,
    DsnReturn,
    HeaderPolicy,
    Protocol,
    QueueMode,
    TlsMode,
    ToHeader,
)

TYPE_CHECKING = False  # not typing's: the enqueue path never imports typing (CONVENTIONS)
if TYPE_CHECKING:
    from mailhop.config.password import get_password
    from mailhop.config.pretend import render_pretend

__all__ = [
    "Account",
    "AccountError",
    "Auth",
    "CommandFailedError",
    "ConfigSyntaxError",
    "Configuration",
    "DsnReturn",
    "Environment",
    "HeaderPolicy",
    "InsecureConfigError",
    "Protocol",
    "QueueMode",
    "Resolution",
    "Selection",
    "TlsMode",
    "ToHeader",
    "apply_settings",
    "check_account",
    "complete",
    "expand_from_header",
    "get_password",
    "load",
    "render_pretend",
    "resolve",
    "select_account",
]

# Hidden from mypy, which then checks every imported name against the imports above.
if not TYPE_CHECKING:
    __getattr__ = lazy_exports(
        __name__,
        {"get_password": "mailhop.config.password", "render_pretend": "mailhop.config.pretend"},
    )
