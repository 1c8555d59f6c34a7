"""OAuth2 device login and refresh against a token endpoint of the tests on 127.0.0.1."""

from __future__ import annotations

import json
import stat
import threading
import urllib.parse
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from mailhop.config import Account, Auth, Environment
from mailhop.config.oauth import OAuthError, access_token, device_login, token_path
from mailhop.errors import ExitCode


class Endpoint:
    """Device and token endpoints: approves after one pending poll; counts refreshes."""

    def __init__(self) -> None:
        self.polls = 0
        self.refreshes = 0
        self.forms: list[dict[str, str]] = []
        self.refuse_refresh = False


def serve(endpoint: Endpoint) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers["Content-Length"])
            form = dict(urllib.parse.parse_qsl(self.rfile.read(length).decode()))
            endpoint.forms.append(form)
            status = 400
            body: dict[str, object] = {"error": "invalid_request"}
            if self.path == "/device":
                status, body = 200, {"device_code": "dev-1", "user_code": "ABCD-EFGH",
                                     "verification_uri": "https://example.test/device",
                                     "interval": 0, "expires_in": 60}  # fmt: skip
            elif form.get("grant_type") == "urn:ietf:params:oauth:grant-type:device_code":
                endpoint.polls += 1
                if endpoint.polls == 1:
                    body = {"error": "authorization_pending"}
                else:
                    status, body = 200, {"access_token": "access-1", "refresh_token": "refresh-1",
                                         "expires_in": 3600}  # fmt: skip
            elif form.get("grant_type") == "refresh_token":
                if endpoint.refuse_refresh or form.get("refresh_token") != "refresh-1":
                    body = {"error": "invalid_grant"}
                else:
                    endpoint.refreshes += 1
                    status = 200
                    body = {"access_token": f"access-r{endpoint.refreshes}", "expires_in": 3600}
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: object) -> None:
            pass

    return ThreadingHTTPServer(("127.0.0.1", 0), Handler)


@pytest.fixture
def endpoint() -> Iterator[tuple[Endpoint, str]]:
    state = Endpoint()
    server = serve(state)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def account_for(base: str) -> Account:
    return Account(
        name="work", host="smtp.example.test", auth=Auth.XOAUTH2, user="u@example.test",
        oauth_client_id="client-1", oauth_token_endpoint=f"{base}/token",
        oauth_device_endpoint=f"{base}/device", oauth_scope="https://mail.google.com/",
    )  # fmt: skip


def test_device_login_then_automatic_refresh(
    tmp_path: Path, endpoint: tuple[Endpoint, str]
) -> None:
    state, base = endpoint
    environment = Environment(home=str(tmp_path), variables={}, euid=0)
    account = account_for(base)
    shown: list[str] = []
    clock = [1000.0]
    tokens = device_login(
        account, show=shown.append, environment=environment,
        now=lambda: clock[0], sleep=lambda _s: None,
    )  # fmt: skip
    assert tokens.access_token == "access-1" and state.polls == 2
    assert "ABCD-EFGH" in shown[0]
    path = Path(token_path(account, environment))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600

    # Still valid: no request at all.
    assert access_token(account, environment=environment, now=lambda: clock[0]) == "access-1"
    assert state.refreshes == 0
    # Within a minute of expiry: refreshed, stored, refresh token kept.
    clock[0] += 3600 - 30
    assert access_token(account, environment=environment, now=lambda: clock[0]) == "access-r1"
    assert state.forms[-1]["grant_type"] == "refresh_token"
    assert json.loads(path.read_text())["refresh_token"] == "refresh-1"


def test_refused_refresh_asks_for_a_new_login(
    tmp_path: Path, endpoint: tuple[Endpoint, str]
) -> None:
    state, base = endpoint
    environment = Environment(home=str(tmp_path), variables={}, euid=0)
    account = account_for(base)
    device_login(account, show=lambda _l: None, environment=environment, sleep=lambda _s: None)
    state.refuse_refresh = True
    with pytest.raises(OAuthError) as caught:
        access_token(account, environment=environment, now=lambda: 10.0**10)
    assert caught.value.exit_code is ExitCode.NOPERM
    assert "mailhop oauth login work" in str(caught.value)
    assert "refresh-1" not in str(caught.value)


def test_no_token_yet(tmp_path: Path) -> None:
    environment = Environment(home=str(tmp_path), variables={}, euid=0)
    with pytest.raises(OAuthError, match="oauth login"):
        access_token(account_for("http://127.0.0.1:9"), environment=environment)
