"""Reading a message from stdin: header block, body spool and scan, Postfix's rules."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from mailhop.errors import ExitCode
from mailhop.message import body as body_module
from mailhop.message.errors import HeaderBlockTooLargeError, MalformedMessageError
from mailhop.message.reader import MAX_HEADER_BLOCK_BYTES, Message, read_message


def read(data: bytes, *, ignore_dots: bool = True) -> Message:
    return read_message(io.BytesIO(data), ignore_dots=ignore_dots)


def whole(data: bytes, *, ignore_dots: bool = True) -> bytes:
    with read(data, ignore_dots=ignore_dots) as message:
        return b"".join(message.chunks())


@pytest.mark.parametrize(
    ("data", "names", "separator", "body"),
    [
        (b"Subject: a\nTo: b@x\n\nbody\n", ["Subject", "To"], b"\n", b"body\n"),
        (b"Subject: a\r\n\r\nbody\r\n", ["Subject"], b"\r\n", b"body\r\n"),
        # echo hi | sendmail root: no headers, a blank line is inserted (Postfix)
        (b"hi\n", [], b"\n", b"hi\n"),
        # a non-header line ends the header block, also after real headers
        (b"Subject: a\nnot a header\nmore\n", ["Subject"], b"\n", b"not a header\nmore\n"),
        # a continuation line with nothing to continue is not a header
        (b" indented\n", [], b"\n", b" indented\n"),
        # headers only, no separator, no newline at the end
        (b"Subject: a", ["Subject"], b"", b""),
        (b"", [], b"", b""),
        # the obsolete "Name :" form is a header (RFC 5322 §4.5.8)
        (b"Subject : a\n\nx", ["Subject"], b"\n", b"x"),
        # mbox From_ lines at the very start are dropped (Postfix)
        (
            b"From me@x Mon Jan  1 00:00:00 2024\n>From y\nSubject: a\n\nb\n",
            ["Subject"],
            b"\n",
            b"b\n",
        ),
        # but a From_ line later is body text
        (b"Subject: a\n\nFrom here\n", ["Subject"], b"\n", b"From here\n"),
    ],
)
def test_header_block_and_body(
    data: bytes, names: list[str], separator: bytes, body: bytes
) -> None:
    with read(data) as message:
        assert [field.name for field in message.headers] == names
        assert message.separator == separator
        assert b"".join(message.body.chunks()) == body


def test_folded_values_are_unfolded_and_raw_bytes_kept() -> None:
    data = b"To: a@x,\r\n\tb@y\r\nsubject:  hello\r\n world\r\n\r\n"
    with read(data) as message:
        assert message.headers.get("TO") == "a@x,\tb@y"
        assert message.headers.get("Subject") == "hello world"
        assert message.headers.to_bytes() == data[:-2]
        assert message.line_ending == b"\r\n"
        assert "subject" in message.headers
        assert "Cc" not in message.headers
        assert 3 not in message.headers
        assert message.headers[0] in message.headers
        assert message.headers.get("Cc") is None
        assert message.headers.get_all("to") == ["a@x,\tb@y"]


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"Subject: a\n\nline\n.\nafter\n", b"Subject: a\n\nline\n"),
        (b"Subject: a\n\nline\r\n.\r\nafter\r\n", b"Subject: a\n\nline\r\n"),
        (b"Subject: a\n\n.\nafter\n", b"Subject: a\n\n"),
        (b"Subject: a\n\nline\n.", b"Subject: a\n\nline\n"),
        (b"Subject: a\n.\nafter\n", b"Subject: a\n"),
        (b".\n", b""),
        (b"Subject: a\n\n..\n.x\n. \n", b"Subject: a\n\n..\n.x\n. \n"),
        (b"hi\n.\nafter", b"\nhi\n"),
    ],
)
def test_a_lone_dot_ends_input_without_dash_i(data: bytes, expected: bytes) -> None:
    assert whole(data, ignore_dots=False) == expected
    with_dash_i = whole(data, ignore_dots=True)
    assert with_dash_i.endswith(data.split(b"\n", 1)[-1])  # with -i the dot is text


def test_lone_dot_split_across_reads_is_found() -> None:
    class Trickle(io.BytesIO):
        def read(self, size: int | None = -1, /) -> bytes:
            return super().read(1)

    for data in (b"a\n.\r\nb", b"a\n.\nb", b".\nb"):
        with read_message(Trickle(b"Subject: s\n\n" + data)) as message:
            assert b"".join(message.body.chunks()) == data.split(b".")[0]


def test_header_block_cap_is_exit_65() -> None:
    huge = b"X-Filler: " + b"a" * 100 + b"\n"
    data = huge * (MAX_HEADER_BLOCK_BYTES // len(huge) + 1) + b"\nbody"
    with pytest.raises(HeaderBlockTooLargeError) as caught:
        read(data)
    assert caught.value.exit_code == ExitCode.DATAERR
    line = b"Subject: " + b"a" * MAX_HEADER_BLOCK_BYTES
    with pytest.raises(HeaderBlockTooLargeError):
        read(line)


def test_nul_in_a_header_is_refused() -> None:
    with pytest.raises(MalformedMessageError, match="NUL"):
        read(b"Subject: a\0b\n\nx")


@pytest.mark.parametrize(
    ("body", "has_8bit", "has_nul", "bare_cr", "longest", "ends"),
    [
        (b"", False, False, False, 0, True),
        (b"abc\n", False, False, False, 3, True),
        (b"abc\r\nde", False, False, False, 3, False),
        (b"caf\xc3\xa9\n", True, False, False, 5, True),
        (b"a\0b\n", False, True, False, 3, True),
        (b"a\rb\n", False, False, True, 3, True),
        (b"x" * 998 + b"\r\n" + b"y" * 5, False, False, False, 998, False),
        (b"x" * 1000 + b"\n", False, False, False, 1000, True),
    ],
)
def test_scan(  # noqa: PLR0917
    body: bytes, has_8bit: bool, has_nul: bool, bare_cr: bool, longest: int, ends: bool
) -> None:
    with read(b"S: x\n\n" + body) as message:
        scan = message.scan
    assert (scan.has_8bit, scan.has_nul, scan.has_bare_cr) == (has_8bit, has_nul, bare_cr)
    assert scan.longest_line == longest
    assert scan.ends_with_newline is ends
    assert scan.size == len(body)


def test_scan_across_chunk_boundaries(monkeypatch: pytest.MonkeyPatch) -> None:
    # Small chunks put CRLF pairs and long lines across boundaries.
    monkeypatch.setattr(body_module, "CHUNK_OCTETS", 7)
    import mailhop.message.reader as reader_module

    monkeypatch.setattr(reader_module, "CHUNK_OCTETS", 7)
    body = b"ab\r\ncdefghijkl\r\n\r\nx\rq\r\n" + b"z" * 20 + b"\r\n"
    with read(b"S: x\n\n" + body) as message:
        scan = message.scan
        assert b"".join(message.body.chunks()) == body
    assert scan.longest_line == 20
    assert scan.crlf_pairs == 5
    assert scan.bare_crs == 1
    assert scan.wire_size == len(body) + 1  # the bare CR will become CRLF
    assert scan.has_bare_cr


def test_large_body_spills_to_a_file_in_the_given_directory(tmp_path: Path) -> None:
    body = b"0123456789abcdef\n" * (body_module.MAX_BODY_IN_MEMORY // 16)
    message = read_message(io.BytesIO(b"S: x\n\n" + body), spool_directory=tmp_path)
    assert not message.body.in_memory
    assert b"".join(message.body.chunks()) == body
    assert b"".join(message.body.chunks()) == body  # again, from the start
    message.close()
    with pytest.raises(ValueError, match="closed"):
        list(message.body.chunks())


def test_spool_misuse_is_an_error() -> None:
    spool = body_module.Spool()
    with pytest.raises(ValueError, match="not finished"):
        _ = spool.scan
    spool.finish()
    with pytest.raises(ValueError, match="finished"):
        spool.write(b"x")


def test_spool_write_failure_is_tempfail(tmp_path: Path) -> None:
    class FullDisk(io.BytesIO):
        def write(self, data: bytes, /) -> int:  # type: ignore[override]
            raise OSError(28, "No space left on device")

    spool = body_module.Spool(tmp_path)
    spool.write(b"x" * body_module.MAX_BODY_IN_MEMORY)
    spool._file = FullDisk()
    spool._memory = None
    from mailhop.message.errors import MessageError

    with pytest.raises(MessageError) as caught:
        spool.write(b"more")
    assert caught.value.exit_code == ExitCode.TEMPFAIL


def test_spool_directory_missing_is_cantcreat(tmp_path: Path) -> None:
    from mailhop.message.errors import MessageError

    spool = body_module.Spool(tmp_path / "missing")
    with pytest.raises(MessageError) as caught:
        spool.write(b"x" * (body_module.MAX_BODY_IN_MEMORY + 1))
    assert caught.value.exit_code == ExitCode.CANTCREAT
