"""Hypothesis properties: Bcc never leaks, re-encoding keeps content, streaming is exact."""

from __future__ import annotations

import email
import email.policy
import io

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailhop.message.addresses import Address
from mailhop.message.reader import read_message
from mailhop.message.recipients import collect_recipients
from mailhop.message.rewrite import HeaderSettings, ToHeader, rewrite_headers
from mailhop.message.transfer import ServerCapabilities, TransferForm, prepare_transfer

local_parts = st.from_regex(r"[a-z][a-z0-9]{0,8}", fullmatch=True)
domains = st.sampled_from(["example.org", "x.test", "mail.example.net"])
addresses = st.builds(lambda local, domain: f"{local}@{domain}", local_parts, domains)
names = st.sampled_from(["", "Ann", '"Doe, J"', "Bob (comment)"])


def mailbox(draw: st.DrawFn, *, hidden: bool = False) -> str:
    # Bcc recipients get their own domain, so the property is not confused by a sender
    # who also names the address in To (which the sender chose to show).
    address = draw(addresses)
    if hidden:
        address = address.split("@")[0] + "@secret.test"
    name = draw(names)
    return f"{name} <{address}>" if name else address


@st.composite
def recipient_fields(draw: st.DrawFn) -> tuple[str, set[str]]:
    """A header block mixing To/Cc/Bcc/Resent-* fields, with the Bcc addresses."""
    lines: list[str] = []
    hidden: set[str] = set()
    for _ in range(draw(st.integers(1, 6))):
        kind = draw(st.sampled_from(["To", "Cc", "Bcc", "bcc", "BCC", "Resent-Bcc", "X-Other"]))
        is_bcc = kind.lower() in ("bcc", "resent-bcc")
        boxes = [mailbox(draw, hidden=is_bcc) for _ in range(draw(st.integers(1, 3)))]
        separator = draw(st.sampled_from([", ", ",\n ", ",\r\n\t"]))
        if is_bcc:
            hidden.update(box.split("<")[-1].rstrip(">") for box in boxes)
        lines.append(f"{kind}: {separator.join(boxes)}\n")
    return "".join(lines), hidden


@given(recipient_fields(), st.sampled_from(list(ToHeader)), st.booleans())
def test_no_bcc_recipient_appears_in_the_output_headers(
    fields: tuple[str, set[str]], to_mode: ToHeader, read_headers: bool
) -> None:
    text, hidden = fields
    with read_message(io.BytesIO(f"Subject: s\n{text}\nbody\n".encode())) as message:
        recipients = collect_recipients(["arg@x.test"], message.headers, read_headers=read_headers)
        result = rewrite_headers(
            message.headers,
            HeaderSettings(set_to_header=to_mode),
            envelope_from=Address(addr_spec="me@x.test"),
            recipients=recipients,
        )
    output = result.to_bytes().decode()
    for address in hidden:
        assert address not in output
    if read_headers and "Resent-" not in text:
        assert hidden <= {a.addr_spec for a in recipients.addresses}


body_lines = st.lists(
    st.one_of(
        st.binary(max_size=60),
        # UTF-8 text; sampled characters rather than st.text, whose str choices would
        # meet st.binary's bytes in hypothesis' cache and trip -bb.
        st.lists(st.sampled_from(["a", "é", "€", "😀", " ", "\t", "="]), max_size=40).map(
            lambda characters: "".join(characters).encode()
        ),
        st.integers(990, 1500).map(lambda n: b"z" * n),
    ),
    max_size=12,
)


@settings(suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(body_lines, st.sampled_from(["text/plain; charset=utf-8", "application/octet-stream", ""]))
def test_reencoding_keeps_the_decoded_body_and_makes_lines_safe(
    lines: list[bytes], content_type: str
) -> None:
    body = b"\n".join(line.replace(b"\r", b"").replace(b"\n", b"") for line in lines)
    head = f"Content-Type: {content_type}\n" if content_type else ""
    data = f"Subject: s\n{head}\n".encode() + body
    with (
        read_message(io.BytesIO(data), ignore_dots=True) as message,
        prepare_transfer(message, ServerCapabilities(), require_7bit=True) as transfer,
    ):
        out = b"".join(transfer.chunks())
        assert transfer.form is TransferForm.REENCODED or data.isascii()
    assert out.isascii()
    assert b"\0" not in out
    assert all(len(line) <= 998 for line in out.split(b"\n"))
    decoded = email.message_from_bytes(out, policy=email.policy.default).get_payload(decode=True)
    if transfer.form is TransferForm.REENCODED:
        assert decoded == body or decoded == body.replace(b"\r\n", b"\n")
    else:
        assert out == data


header_lines = st.lists(
    st.tuples(
        st.from_regex(r"[A-Za-z][A-Za-z0-9-]{0,12}", fullmatch=True),
        st.from_regex(r"[ -~]{0,30}(\r?\n[ \t][ -~]{1,20}){0,2}", fullmatch=True),
    ),
    max_size=8,
)


@given(
    header_lines,
    st.binary(max_size=3000),
    st.sampled_from([b"\n", b"\r\n"]),
)
def test_streaming_path_outputs_exactly_the_input(
    fields: list[tuple[str, str]], body: bytes, line_ending: bytes
) -> None:
    head = b"".join(f"{name}: {value}".encode() + line_ending for name, value in fields)
    data = head + line_ending + body
    with read_message(io.BytesIO(data), ignore_dots=True) as message:
        assert b"".join(message.chunks()) == data
        server = ServerCapabilities(eight_bit_mime=True, smtputf8=True)
        with prepare_transfer(message, server) as transfer:
            if transfer.form is TransferForm.AS_READ:
                assert b"".join(transfer.chunks()) == data
