"""OAuth2 bearer tokens for XOAUTH2/OAUTHBEARER accounts (RFC 6749, RFC 8628).

``mailhop oauth login ACCOUNT`` runs the device authorization grant (RFC 8628 §3):
it asks the account's ``oauth_device_endpoint`` for a user code, prints where to
enter it, and polls ``oauth_token_endpoint`` at the interval the server gives until
the user approves, the code expires, or the user refuses. The tokens are stored like
a password: a JSON file private to the user (mode 0600, written atomically through
``mailhop.store.durable``) under ``$XDG_CONFIG_HOME/mailhop/oauth/``.

``access_token(account)`` returns a token that is valid for at least
``REFRESH_MARGIN_SECONDS``, refreshing it with the refresh token (RFC 6749 §6) when
needed, so sendmail, the queue and fetch need nothing else.

Only ``urllib`` is used; token values never appear in errors or logs.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Callable, Mapping

from mailhop.config.environment import Environment
from mailhop.config.model import Account
from mailhop.errors import ConfigError, ExitCode

# Refresh this long before the access token expires: a send may take a while after
# the token is read, and clocks drift.
REFRESH_MARGIN_SECONDS = 60
# A token endpoint answer is a small JSON object; more is not a token response.
MAX_RESPONSE_BYTES = 64 * 1024
DEFAULT_HTTP_TIMEOUT_SECONDS = 30.0
# RFC 8628 §3.2: the default polling interval when the server gives none, and
# §3.5: slow_down adds 5 seconds.
DEFAULT_POLL_INTERVAL_SECONDS = 5
SLOW_DOWN_SECONDS = 5
# A device code lives at most this long whatever the server says (bounds the loop).
MAX_DEVICE_CODE_LIFETIME_SECONDS = 3600
DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"


class OAuthError(ConfigError):
    """Getting a token failed; the message says what to do (exit 77 or 75)."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class Tokens:
    """What the token endpoint gave (RFC 6749 §5.1), with the absolute expiry."""

    access_token: str = dataclasses.field(repr=False)
    refresh_token: str | None = dataclasses.field(default=None, repr=False)
    expires_at: float = 0.0


Post = Callable[[str, Mapping[str, str]], tuple[int, dict[str, object]]]


def token_path(account: Account, environment: Environment) -> str:
    """Where the tokens of ``account``'s login are kept.

    Keyed by who logs in and at which token endpoint, not by the account's name:
    ``account default : work`` uses the same login as ``work``, and a token got by
    ``mailhop oauth login work`` must serve both.
    """
    import urllib.parse  # noqa: PLC0415

    issuer = urllib.parse.urlsplit(account.oauth_token_endpoint or "").hostname or "oauth"
    identity = f"{account.user or account.name}@{issuer}"
    safe = "".join(c if c.isalnum() or c in "@._-" else "_" for c in identity)
    return os.path.join(environment.xdg_config_home, "mailhop", "oauth", f"{safe}.json")


def load_tokens(path: str) -> Tokens | None:
    try:
        with open(path, "rb") as file:
            data = json.loads(file.read(MAX_RESPONSE_BYTES))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as error:
        raise OAuthError(f"{path}: cannot read the stored token ({error})") from None
    return Tokens(
        access_token=str(data.get("access_token", "")),
        refresh_token=data.get("refresh_token"),
        expires_at=float(data.get("expires_at", 0)),
    )


def save_tokens(path: str, tokens: Tokens) -> None:
    from mailhop.store.durable import make_private_directory, write_atomically  # noqa: PLC0415

    make_private_directory(os.path.dirname(path))
    write_atomically(path, [json.dumps(dataclasses.asdict(tokens)).encode()], mode=0o600)


def http_post(url: str, form: Mapping[str, str]) -> tuple[int, dict[str, object]]:
    """POST a form (RFC 6749 §4.1.3 encoding) and return status and JSON body."""
    import urllib.error  # noqa: PLC0415
    import urllib.parse  # noqa: PLC0415
    import urllib.request  # noqa: PLC0415

    if not url.startswith(("https://", "http://127.0.0.1", "http://[::1]", "http://localhost")):
        # RFC 6749 §3.2: the token endpoint must use TLS; loopback is for tests/bridges.
        raise OAuthError(f"token endpoint {url} must use https")
    request = urllib.request.Request(  # noqa: S310 - scheme checked above
        url,
        data=urllib.parse.urlencode(form).encode(),
        headers={"Accept": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=DEFAULT_HTTP_TIMEOUT_SECONDS) as response:  # noqa: S310
            status, body = response.status, response.read(MAX_RESPONSE_BYTES)
    except urllib.error.HTTPError as error:
        status, body = error.code, error.read(MAX_RESPONSE_BYTES)
    except (OSError, ValueError) as error:
        raise OAuthError(
            f"cannot reach the token endpoint {url}: {error}", exit_code=ExitCode.TEMPFAIL
        ) from None
    try:
        data = json.loads(body)
    except ValueError:
        data = {}
    return status, data if isinstance(data, dict) else {}


def _tokens_from(data: dict[str, object], previous_refresh: str | None, now: float) -> Tokens:
    access = data.get("access_token")
    if not isinstance(access, str) or not access:
        raise OAuthError("the token endpoint answered without an access_token")
    expires_in = data.get("expires_in", 3600)
    refresh = data.get("refresh_token")
    return Tokens(
        access_token=access,
        # RFC 6749 §6: the server may issue a new refresh token; else keep the old one.
        refresh_token=refresh if isinstance(refresh, str) else previous_refresh,
        expires_at=now + float(expires_in if isinstance(expires_in, int | float) else 3600),
    )


def _client(account: Account) -> dict[str, str]:
    if not account.oauth_client_id or not account.oauth_token_endpoint:
        raise OAuthError(
            f"{account.where}: auth {account.auth.value} needs oauth_client_id and "
            "oauth_token_endpoint (see docs/setup.md)"
        )
    form = {"client_id": account.oauth_client_id}
    if account.oauth_client_secret:
        form["client_secret"] = account.oauth_client_secret
    return form


def access_token(
    account: Account,
    *,
    environment: Environment | None = None,
    post: Post = http_post,
    now: Callable[[], float] = time.time,
) -> str:
    """A valid access token for ``account``, refreshed and stored when needed.

    Raises:
        OAuthError: no token yet (run mailhop oauth login), refresh refused (77), or
            the endpoint unreachable (75).
    """
    environment = environment or Environment.from_process()
    path = token_path(account, environment)
    tokens = load_tokens(path)
    if tokens is None:
        raise OAuthError(
            f"{account.where}: no OAuth2 token yet; run: mailhop oauth login {account.name}",
            exit_code=ExitCode.NOPERM,
        )
    moment = now()
    if tokens.access_token and tokens.expires_at - REFRESH_MARGIN_SECONDS > moment:
        return tokens.access_token
    if not tokens.refresh_token:
        raise OAuthError(
            f"{account.where}: the OAuth2 token expired and there is no refresh token; "
            f"run: mailhop oauth login {account.name}",
            exit_code=ExitCode.NOPERM,
        )
    form = {
        **_client(account),
        "grant_type": "refresh_token",
        "refresh_token": tokens.refresh_token,
    }
    status, data = post(account.oauth_token_endpoint or "", form)
    if status != 200:
        error = str(data.get("error", f"HTTP {status}"))
        temporary = status >= 500 or status == 429
        raise OAuthError(
            f"{account.where}: refreshing the OAuth2 token failed ({error})"
            + ("; try again later" if temporary else f"; run: mailhop oauth login {account.name}"),
            exit_code=ExitCode.TEMPFAIL if temporary else ExitCode.NOPERM,
        )
    fresh = _tokens_from(data, tokens.refresh_token, moment)
    save_tokens(path, fresh)
    return fresh.access_token


def device_login(
    account: Account,
    *,
    show: Callable[[str], None],
    environment: Environment | None = None,
    post: Post = http_post,
    now: Callable[[], float] = time.time,
    sleep: Callable[[float], None] = time.sleep,
) -> Tokens:
    """RFC 8628 device authorization grant; stores and returns the tokens.

    Raises:
        OAuthError: refused, expired, or the endpoints failed.
    """
    environment = environment or Environment.from_process()
    if not account.oauth_device_endpoint:
        raise OAuthError(f"{account.where}: oauth_device_endpoint is not set")
    client = _client(account)
    status, data = post(
        account.oauth_device_endpoint, {**client, "scope": account.oauth_scope or ""}
    )
    device_code = data.get("device_code")
    if status != 200 or not isinstance(device_code, str):
        raise OAuthError(f"the device endpoint refused: {data.get('error', f'HTTP {status}')}")
    uri = data.get("verification_uri_complete") or data.get("verification_uri")
    show(f"open {uri} and enter the code {data.get('user_code')}")
    interval = float(str(data.get("interval", DEFAULT_POLL_INTERVAL_SECONDS)))
    lifetime = min(float(str(data.get("expires_in", 600))), MAX_DEVICE_CODE_LIFETIME_SECONDS)
    deadline = now() + lifetime
    while now() < deadline:
        sleep(interval)
        status, data = post(
            account.oauth_token_endpoint or "",
            {**client, "grant_type": DEVICE_GRANT, "device_code": device_code},
        )
        if status == 200:
            tokens = _tokens_from(data, None, now())
            save_tokens(token_path(account, environment), tokens)
            return tokens
        error = data.get("error")
        if error == "authorization_pending":
            continue
        if error == "slow_down":
            interval += SLOW_DOWN_SECONDS
            continue
        raise OAuthError(f"login failed: {error or f'HTTP {status}'}", exit_code=ExitCode.NOPERM)
    raise OAuthError("login failed: the code expired before it was approved; run it again")
