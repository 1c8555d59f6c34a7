"""XOAUTH2 end to end: sendmail refreshes an expired token, then authenticates with it.

The real sendmail personality runs as a child process with an account that says
``auth xoauth2``; the stored token has expired, so mailhop must ask the test's token
endpoint for a new one (refresh grant, RFC 6749 §6) and send exactly that bearer
token in ``AUTH XOAUTH2`` to a scripted SMTP server that records every byte.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.deliver.scripted_server import (
    GREETING,
    ScriptedServer,
    accept_message,
    answer,
    ehlo,
)
from tests.setup.test_oauth import Endpoint, serve


@pytest.fixture
def token_endpoint() -> Iterator[tuple[Endpoint, str]]:
    state = Endpoint()
    server = serve(state)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_sendmail_refreshes_the_token_and_authenticates_with_it(
    tmp_path: Path, token_endpoint: tuple[Endpoint, str]
) -> None:
    endpoint, base = token_endpoint
    server = ScriptedServer(
        [*GREETING, *ehlo("AUTH XOAUTH2"), *answer(b"AUTH", 235, "2.7.0 ok"), *accept_message()]
    )
    config_home = tmp_path / ".config"
    # The login of user u@example.test at the test's token endpoint; the message is
    # sent with the "default" account, which inherits from "work" and shares it.
    tokens = config_home / "mailhop" / "oauth" / "u@example.test@127.0.0.1.json"
    tokens.parent.mkdir(parents=True)
    tokens.write_text(
        json.dumps({"access_token": "stale", "refresh_token": "refresh-1", "expires_at": 0})
    )
    tokens.chmod(0o600)
    config = tmp_path / "rc"
    config.write_text(
        "account work\nhost 127.0.0.1\n"
        f"port {server.port}\n"
        "tls off\nallow_plaintext_auth on\nauth xoauth2\nuser u@example.test\n"
        f"oauth_client_id client-1\noauth_token_endpoint {base}/token\n"
        "from u@example.test\nqueue off\naccount default : work\n"
    )
    config.chmod(0o600)
    result = subprocess.run(
        [sys.executable, "-m", "mailhop", "sendmail", "-v", "-C", str(config), "to@example.test"],
        input=b"Subject: oauth\n\nbody\n",
        capture_output=True,
        timeout=120,
        check=False,
        env={**os.environ, "HOME": str(tmp_path), "XDG_CONFIG_HOME": str(config_home)},
    )
    assert result.returncode == 0, result.stderr
    assert endpoint.refreshes == 1
    (auth_line,) = server.wait().commands(b"AUTH")
    assert auth_line.startswith(b"AUTH XOAUTH2 ")
    payload = base64.b64decode(auth_line.split()[2])
    # RFC-less but documented by Google: user=...^Aauth=Bearer TOKEN^A^A
    assert payload == b"user=u@example.test\x01auth=Bearer access-r1\x01\x01"
    assert json.loads(tokens.read_text())["access_token"] == "access-r1"
    assert b"access-r1" not in result.stderr  # -v redacts the token
    assert b"AUTH XOAUTH2 <redacted>" in result.stderr
