"""Wire preparation: choose how the message travels, given what the server offers.

The decision, from the scan made while reading:

* 7-bit clean, no NUL, no line over 998 octets (RFC 5322 §2.1.1): sent as read.
* 8-bit body and the server offers 8BITMIME (RFC 6152): sent as read, ``BODY=8BITMIME``.
* UTF-8 headers or addresses and the server offers SMTPUTF8 (RFC 6531): sent as read
  with ``SMTPUTF8`` (and ``BODY=8BITMIME``). A UTF-8 *address* without SMTPUTF8 is an
  error: there is no faithful way to downgrade it.
* Anything else (8-bit without 8BITMIME, NUL, over-long lines, 8-bit headers without
  SMTPUTF8, or ``require_7bit``): re-encoded with the stdlib ``email`` package. Leaf
  parts that need it become quoted-printable (text) or base64 (everything else, and
  text holding NUL); containers are walked recursively; non-ASCII headers become RFC
  2047 encoded-words. Parts that need nothing are left alone. The result goes to a
  spool (memory, then a temporary file when large), never a single string.

The streaming path reads headers and body from where they already are and holds
nothing more. CRLF line endings and dot-stuffing are *not* done here: the SMTP encoder
in ``proto`` owns them. ``size`` is what SIZE= wants (RFC 1870 §3): the octets after
CRLF normalisation, without dot-stuffing.
"""

from __future__ import annotations

import contextlib
import enum
import os
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

from mailhop._records import NamedTuple
from mailhop.message.body import BodyScan, Spool
from mailhop.message.errors import MalformedMessageError, ServerCapabilityError
from mailhop.message.headers import MAX_LINE_OCTETS
from mailhop.message.reader import Message

if TYPE_CHECKING:
    from email.message import Message as EmailMessage

__all__ = ["ServerCapabilities", "Transfer", "TransferForm", "prepare_transfer"]


class ServerCapabilities(NamedTuple):
    """The EHLO keywords that decide the transfer form."""

    eight_bit_mime: bool = False  # 8BITMIME, RFC 6152
    smtputf8: bool = False  # SMTPUTF8, RFC 6531


class TransferForm(enum.Enum):
    AS_READ = "as-read"  # the bytes as read (7-bit, or 8-bit the server accepts)
    REENCODED = "reencoded"  # rewritten by the email package to fit the server


class Transfer:
    """A message ready for DATA: its chunks, SIZE estimate and MAIL FROM parameters.

    ``chunks()`` may be called again (to retry with another server); each call starts
    from the beginning. ``close()`` releases a re-encoded copy; the original message is
    the caller's to close.
    """

    def __init__(
        self,
        *,
        form: TransferForm,
        size: int,
        body_8bitmime: bool,
        smtputf8: bool,
        message: Message | None = None,
        spool: Spool | None = None,
    ) -> None:
        self.form = form
        self.size = size
        self.body_8bitmime = body_8bitmime
        self.smtputf8 = smtputf8
        self._message = message
        self._spool = spool

    def chunks(self) -> Iterator[bytes]:
        if self._spool is not None:
            return self._spool.chunks()
        if self._message is None:
            raise ValueError("a Transfer needs a message or a spool")
        return self._message.chunks()

    def close(self) -> None:
        if self._spool is not None:
            self._spool.close()

    def __enter__(self) -> Transfer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"Transfer(form={self.form.value}, size={self.size},"
            f" body_8bitmime={self.body_8bitmime}, smtputf8={self.smtputf8})"
        )


def _lf_line_endings(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """CRLF, bare CR and bare LF each become one LF, across chunk boundaries.

    The same rule the SMTP encoder applies on the wire (RFC 5321 §2.3.8): a message
    must have the same lines whether it is sent as read or re-encoded. The email
    parser left to itself splits ``CR CR LF`` differently when a chunk ends in CR.
    """
    pending_cr = False
    for chunk in chunks:
        if not chunk:
            continue
        data = b"\r" + chunk if pending_cr else chunk
        # A CR at the end may be the first half of a CRLF split across chunks.
        pending_cr = data.endswith(b"\r")
        if pending_cr:
            data = data[:-1]
        yield data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    if pending_cr:
        yield b"\n"


def _scan_bytes(data: bytes) -> BodyScan:
    with Spool() as spool:
        spool.write(data)
        return spool.finish()


def _is_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def prepare_transfer(
    message: Message,
    server: ServerCapabilities,
    *,
    envelope_needs_smtputf8: bool = False,
    require_7bit: bool = False,
    spool_directory: str | os.PathLike[str] | None = None,
) -> Transfer:
    """Decide the transfer form of ``message`` for ``server`` (see the module doc).

    ``envelope_needs_smtputf8``: the sender or a recipient is not ASCII.
    ``require_7bit``: re-encode any 8-bit content even if the server takes it.
    """
    if envelope_needs_smtputf8 and not server.smtputf8:
        raise ServerCapabilityError(
            "an envelope address is not ASCII and the server does not offer SMTPUTF8"
        )
    head = message.headers.to_bytes() + message.separator
    head_scan = _scan_bytes(head)
    body_scan = message.scan
    smtputf8 = envelope_needs_smtputf8
    headers_8bit = head_scan.has_8bit
    keep_utf8_headers = headers_8bit and server.smtputf8 and not require_7bit and _is_utf8(head)
    if keep_utf8_headers:
        smtputf8 = True
    eight_bit_allowed = (server.eight_bit_mime or smtputf8) and not require_7bit
    needs_reencoding = (
        body_scan.has_nul
        or body_scan.longest_line > MAX_LINE_OCTETS
        or head_scan.longest_line > MAX_LINE_OCTETS
        or (headers_8bit and not keep_utf8_headers)
        or (body_scan.has_8bit and not eight_bit_allowed)
    )
    if not needs_reencoding:
        eight_bit = body_scan.has_8bit or headers_8bit
        return Transfer(
            form=TransferForm.AS_READ,
            size=head_scan.wire_size
            - (0 if head_scan.ends_with_newline else 2)
            + body_scan.wire_size,
            body_8bitmime=eight_bit and server.eight_bit_mime,
            smtputf8=smtputf8,
            message=message,
        )
    spool = reencode(message, keep_utf8_headers=keep_utf8_headers, spool_directory=spool_directory)
    scan = spool.scan
    if (
        scan.has_nul
        or scan.longest_line > MAX_LINE_OCTETS
        or (scan.has_8bit and not keep_utf8_headers)
    ):
        spool.close()
        raise MalformedMessageError(
            "the message cannot be re-encoded into a form the server accepts"
        )
    return Transfer(
        form=TransferForm.REENCODED,
        size=scan.wire_size,
        body_8bitmime=scan.has_8bit and server.eight_bit_mime,
        smtputf8=smtputf8,
        spool=spool,
    )


# -- re-encoding (imports the email package only when a message needs it) -------


def reencode(
    message: Message,
    *,
    keep_utf8_headers: bool = False,
    spool_directory: str | os.PathLike[str] | None = None,
) -> Spool:
    """The message rewritten so every line is 7-bit (but for kept UTF-8 headers),
    NUL-free and at most 998 octets, in a new spool."""
    from email.feedparser import BytesFeedParser  # noqa: PLC0415 - rare path, heavy import
    from email.generator import BytesGenerator  # noqa: PLC0415

    policy = _reencoding_policy(keep_utf8_headers)
    parser = BytesFeedParser(policy=policy)
    for chunk in _lf_line_endings(message.chunks()):
        parser.feed(chunk)
    root = parser.close()
    _reencode_entity(root, is_root=True)
    spool = Spool(spool_directory)
    try:
        BytesGenerator(_SpoolWriter(spool), mangle_from_=False, policy=policy).flatten(root)
        spool.finish()
    except BaseException:
        spool.close()
        raise
    return spool


class _SpoolWriter:
    def __init__(self, spool: Spool) -> None:
        self._spool = spool

    def write(self, data: bytes) -> int:
        self._spool.write(data)
        return len(data)


def _reencoding_policy(keep_utf8_headers: bool):  # type: ignore[no-untyped-def]  # noqa: ANN202
    from email.policy import EmailPolicy  # noqa: PLC0415 - rare path, heavy import

    class ReencodingPolicy(EmailPolicy):
        """Keeps every header as it was unless it is too long or not ASCII."""

        def header_source_parse(self, sourcelines: list[str]) -> tuple[str, str]:
            name, value = super().header_source_parse(sourcelines)
            # The parser reads bytes as ASCII with surrogate escapes; give UTF-8 its
            # real characters so that folding labels it utf-8, not unknown-8bit.
            with contextlib.suppress(UnicodeDecodeError):
                value = value.encode("ascii", "surrogateescape").decode("utf-8")
            return name, value

        def fold_binary(self, name: str, value: str) -> bytes:
            if not self.utf8 and not value.isascii() and not _has_surrogate(value):
                refolded: str = self.header_factory(name, value).fold(policy=self)
                return refolded.encode("ascii")
            folded: bytes = super().fold_binary(name, value)
            return folded

    return ReencodingPolicy(
        linesep="\n",
        max_line_length=MAX_LINE_OCTETS,  # refold only lines that break RFC 5322
        cte_type="8bit" if keep_utf8_headers else "7bit",
        utf8=keep_utf8_headers,
        mangle_from_=False,
    )


def _has_surrogate(text: str) -> bool:
    return any(0xDC80 <= ord(character) <= 0xDCFF for character in text)


def _set_header(entity: EmailMessage, name: str, value: str) -> None:
    if name in entity:
        entity.replace_header(name, value)
    else:
        entity[name] = value


def _needs_encoding(data: bytes) -> bool:
    return (
        not data.isascii()
        or b"\0" in data
        or any(len(line.rstrip(b"\r")) > MAX_LINE_OCTETS for line in data.split(b"\n"))
    )


def _reencode_entity(entity: EmailMessage, *, is_root: bool = False) -> None:
    if entity.is_multipart():
        for part in entity.get_payload():
            if isinstance(part, str):  # pragma: no cover - a multipart holds messages
                continue
            _reencode_entity(part)
        _flatten_container_encoding(entity)
        return
    payload = entity.get_payload()
    if isinstance(payload, list):  # message/rfc822 and friends hold one message
        for inner in payload:
            if isinstance(inner, str):  # pragma: no cover - a message holds messages
                continue
            _reencode_entity(inner, is_root=True)
        _flatten_container_encoding(entity)
        return
    encoding = str(entity.get("Content-Transfer-Encoding", "7bit")).strip().lower()
    # get_payload() turns undecodable bytes into U+FFFD, which is not ASCII either.
    raw = payload.encode("utf-8", "replace") if isinstance(payload, str) else b""
    if encoding in ("base64", "quoted-printable") and not _needs_encoding(raw):
        return
    data = entity.get_payload(decode=True)
    if not isinstance(data, bytes):  # pragma: no cover - a leaf always decodes to bytes
        raise MalformedMessageError("a message part cannot be decoded")
    if encoding not in ("base64", "quoted-printable") and not _needs_encoding(data):
        return
    _encode_leaf(entity, data, is_root=is_root)


def _flatten_container_encoding(entity: EmailMessage) -> None:
    # RFC 2045 §6.4: multipart and message entities may only be 7bit, 8bit or binary;
    # once the parts are 7-bit the container is too.
    if "Content-Transfer-Encoding" in entity:
        entity.replace_header("Content-Transfer-Encoding", "7bit")


def _encode_leaf(entity: EmailMessage, data: bytes, *, is_root: bool) -> None:
    import base64  # noqa: PLC0415 - rare path
    import binascii  # noqa: PLC0415

    if is_root and "Content-Type" not in entity:
        # A plain message without MIME headers: say what its 8-bit text is, so the
        # reader can decode it after the transfer encoding is undone.
        if "MIME-Version" not in entity:
            entity["MIME-Version"] = "1.0"
        charset = "utf-8" if _is_utf8(data) else "unknown-8bit"
        if not data.isascii():
            entity["Content-Type"] = f"text/plain; charset={charset}"
    if entity.get_content_maintype() == "text" and b"\0" not in data:
        text = data.replace(b"\r\n", b"\n")
        encoded = binascii.b2a_qp(text, quotetabs=False, istext=True, header=False)
        _set_header(entity, "Content-Transfer-Encoding", "quoted-printable")
    else:
        encoded = base64.encodebytes(data)
        _set_header(entity, "Content-Transfer-Encoding", "base64")
    entity.set_payload(encoded.decode("ascii"))
