"""MIME-aware display: decoded text, HTML as text, attachments, nothing raw on the terminal."""

from __future__ import annotations

import email.message
import email.policy
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailhop.reader.display import escape_for_terminal, html_to_text, render
from tests.reader.reader_support import run_reader

# What must never reach a terminal raw: C0 controls, DEL, C1 controls, bidi overrides.
UNSAFE = {*map(chr, range(0x20)), "\x7f", *map(chr, range(0x80, 0xA0)), "\u202e", "\u2066"}


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("\x1b]0;PWNED\x07\x1b[2J", "^[]0;PWNED^G^[[2J"),
        ("a\x9bb", "a\\u009bb"),
        ("\x7f", "^?"),
        ("evil\u202etxt.exe", "evil\\u202etxt.exe"),
        ("邮件主题 ümlaut", "邮件主题 ümlaut"),
        ("tab\there", "tab^Ihere"),
    ],
)
def test_escape_for_terminal(text: str, shown: str) -> None:
    assert escape_for_terminal(text) == shown


@given(st.text())
def test_nothing_unsafe_survives_escaping(text: str) -> None:
    assert not set(escape_for_terminal(text)) & UNSAFE
    assert not set(escape_for_terminal(text, keep_newlines=True)) & (UNSAFE - {"\n", "\t"})


def test_hostile_headers_and_body_are_escaped() -> None:
    data = (
        b"From: =?UTF-8?Q?=1B[1AEvil?= <e@example.test>\n"
        b"Subject: =?UTF-8?Q?=1B]0;PWNED=07=1B[2J?=\n"
        b"Content-Type: text/plain; charset=iso-8859-1\n\n"
        b"caf\xe9 \x1b[31mred\x9b\n"
    )
    text = render(data).text()
    assert "^[]0;PWNED^G^[[2J" in text
    assert "^[[1AEvil" in text
    assert "café ^[[31mred\\u009b" in text
    assert not set(text) & (UNSAFE - {"\n"})


def test_html_only_mail_is_shown_as_readable_text() -> None:
    message = email.message.EmailMessage(policy=email.policy.SMTP)
    message["Subject"] = "report"
    message.set_content(
        "<html><head><style>p{color:red}</style><script>alert(1)</script></head>"
        "<body><h1>Backup</h1><p>All <b>3</b> jobs &amp; checks ok.</p>"
        "<ul><li>one</li><li>two</li></ul></body></html>",
        subtype="html",
    )
    body = render(message.as_bytes()).body
    assert body == "Backup\n\nAll 3 jobs & checks ok.\n\n* one\n\n* two\n"
    assert "<" not in body
    assert "alert" not in body
    assert "color" not in body


def test_html_to_text_keeps_words_apart() -> None:
    assert html_to_text("a<br>b<div>c</div>d") == "a\nb\nc\nd\n"


def _with_attachment() -> bytes:
    message = email.message.EmailMessage(policy=email.policy.SMTP)
    message["From"] = "alice@example.test"
    message["Subject"] = "logs"
    message.set_content("see attached\n")
    message.add_attachment(
        b"\x00\x01binary" * 10, maintype="application", subtype="gzip", filename="logs.tar.gz"
    )
    message.add_attachment("line\n", filename="\x1b[2Jnote.txt")
    return message.as_bytes()


def test_attachments_are_listed_with_name_type_and_size() -> None:
    rendering = render(_with_attachment())
    assert rendering.body == "see attached\n"
    assert [(a.filename, a.content_type, a.size) for a in rendering.attachments] == [
        ("logs.tar.gz", "application/gzip", 80),
        ("^[[2Jnote.txt", "text/plain", 6),  # CRLF as sent,
    ]
    assert "[-- attachment 1: logs.tar.gz (application/gzip, 80 bytes) --]" in rendering.text()


def test_an_attachment_is_saved_with_its_decoded_bytes(tmp_path: Path) -> None:
    data = _with_attachment()
    inbox = tmp_path / "inbox"
    inbox.write_bytes(b"From alice@example.test Mon Nov 23 10:00:00 2026\n" + data + b"\n")
    result = run_reader(tmp_path, inbox, "attachments 1\nsa 1 1 out.gz\nsa 1 out.gz\nx\n")
    assert result.returncode == 0, result.stderr
    output = result.stdout.decode()
    assert "1.1 logs.tar.gz application/gzip 80 bytes" in output
    assert "1.2 ^[[2Jnote.txt text/plain 6 bytes" in output
    assert (tmp_path / "out.gz").read_bytes() == b"\x00\x01binary" * 10
    assert (tmp_path / "out.gz").stat().st_mode & 0o777 == 0o600
    assert "exists; name a new file" in output  # never overwritten
