"""The error table of mailhop.net.errors and the phase timeouts."""

from __future__ import annotations

import re

import pytest

import mailhop.net.errors as net_errors
from mailhop.errors import ExitCode, MailhopError
from mailhop.net.errors import (
    CertificateError,
    ConnectError,
    ConnectionLostError,
    FingerprintMismatchError,
    HostNotFoundError,
    NameResolutionError,
    NetConfigError,
    NetTimeoutError,
    ProxyError,
    StartTLSInjectionError,
    TLSError,
    TLSFileError,
    TLSHandshakeError,
    TLSUnavailableError,
    TransportError,
)
from mailhop.net.timeouts import Timeouts

TABLE = {
    NetConfigError: ExitCode.CONFIG,
    ConnectError: ExitCode.TEMPFAIL,
    NameResolutionError: ExitCode.TEMPFAIL,
    HostNotFoundError: ExitCode.NOHOST,
    ProxyError: ExitCode.TEMPFAIL,
    ConnectionLostError: ExitCode.TEMPFAIL,
    NetTimeoutError: ExitCode.TEMPFAIL,
    TLSError: ExitCode.UNAVAILABLE,
    TLSFileError: ExitCode.NOINPUT,
    CertificateError: ExitCode.UNAVAILABLE,
    FingerprintMismatchError: ExitCode.UNAVAILABLE,
    TLSUnavailableError: ExitCode.UNAVAILABLE,
    TLSHandshakeError: ExitCode.PROTOCOL,
    StartTLSInjectionError: ExitCode.PROTOCOL,
}


@pytest.mark.parametrize(("error_type", "exit_code"), TABLE.items())
def test_exit_codes(error_type: type[TransportError], exit_code: ExitCode) -> None:
    error = error_type("what happened; what to do")
    assert isinstance(error, TransportError)
    assert isinstance(error, MailhopError)
    assert error.exit_code == exit_code
    # The tree drawn in the module docstring states the same code.
    drawn = re.search(rf"\b{error_type.__name__}\s+(\d\d)", net_errors.__doc__ or "")
    assert drawn is not None
    assert drawn.group(1) == str(exit_code.value)


def test_every_exported_error_is_in_the_table() -> None:
    exported = {getattr(net_errors, name) for name in net_errors.__all__}
    assert exported - {TransportError} == set(TABLE)


def test_timeout_error_is_also_a_builtin_timeout() -> None:
    assert issubclass(NetTimeoutError, TimeoutError)


def test_proxy_error_can_carry_its_own_code() -> None:
    assert ProxyError("refused by ruleset", exit_code=ExitCode.UNAVAILABLE).exit_code == 69


def test_timeouts_default_to_rfc_5321() -> None:
    timeouts = Timeouts()
    assert (timeouts.greeting, timeouts.mail, timeouts.rcpt) == (300, 300, 300)
    assert timeouts.data_initiation == 120
    assert timeouts.data_block == 180
    assert timeouts.data_termination == 600
    assert Timeouts.from_setting(None) == timeouts


def test_msmtp_timeout_setting_applies_everywhere() -> None:
    timeouts = Timeouts.from_setting(30)
    assert set(timeouts._asdict().values()) == {30}
    with pytest.raises(ValueError, match="positive"):
        Timeouts.from_setting(0)
