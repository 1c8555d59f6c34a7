"""mailhop.proto._event.Event: what the events kept from frozen keyword-only dataclasses."""

from __future__ import annotations

import pytest

from mailhop.proto._event import Event, FrozenEventError, field
from mailhop.proto.smtp.capabilities import Capabilities
from mailhop.proto.smtp.events import AuthRequest, AuthResponse, Data, Noop, Reply, Rset


class Sample(Event):
    name: str
    size: int = 0
    note: str = field(default="", compare=False)
    seen: list[str] = field(default_factory=list, compare=False)


class Twin(Event):
    name: str
    size: int = 0


def test_an_event_is_built_with_keywords_only() -> None:
    assert Sample(name="a").size == 0
    with pytest.raises(TypeError):
        Sample("a")  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="missing keyword arguments: name"):
        Sample()  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="unexpected keyword argument 'colour'"):
        Sample(name="a", colour="red")  # type: ignore[call-arg]


def test_an_event_never_changes() -> None:
    sample = Sample(name="a")
    with pytest.raises(FrozenEventError):
        sample.name = "b"  # type: ignore[misc]
    with pytest.raises(AttributeError):  # what code catching dataclasses' error expects
        del sample.size
    assert sample.name == "a"


def test_equality_is_by_class_and_compared_fields() -> None:
    assert Sample(name="a", size=1) == Sample(name="a", size=1, note="other", seen=["x"])
    assert Sample(name="a", size=1) != Sample(name="a", size=2)
    # Equal fields in another class are another event (Rset and Noop have none).
    assert Sample(name="a", size=1) != Twin(name="a", size=1)
    assert Rset() != Noop()
    assert Data() == Data()
    assert hash(Sample(name="a", note="x")) == hash(Sample(name="a", note="y"))
    assert len({Rset(), Rset(), Noop()}) == 2
    # compare=False as in Reply: the command answered is not part of the reply's value.
    assert Reply(code=250, command=Rset()) == Reply(code=250)


def test_a_factory_gives_each_event_its_own_value() -> None:
    first, second = Sample(name="a"), Sample(name="b")
    first.seen.append("x")
    assert second.seen == []
    assert Capabilities().keywords is not Capabilities().keywords


def test_repr_shows_every_field_in_order() -> None:
    assert repr(Sample(name="a", note="n")) == "Sample(name='a', size=0, note='n', seen=[])"
    assert repr(Reply(code=250, lines=("ok",), command=Rset())) == (
        "Reply(code=250, lines=('ok',), enhanced_status=None, command=Rset())"
    )


def test_a_field_without_a_default_cannot_follow_one_with_it() -> None:
    with pytest.raises(TypeError, match="no default"):

        class Misordered(Event):
            size: int = 0
            name: str


def test_a_secret_field_is_hidden_from_repr_but_still_compared() -> None:
    # The server core's decoded SASL responses carry passwords (PLAIN, LOGIN): an
    # event logged or shown in a traceback must not print them.
    plain = AuthRequest(mechanism="PLAIN", initial_response=b"\0user\0hunter2")
    assert repr(plain) == "AuthRequest(mechanism='PLAIN', initial_response=<hidden>)"
    assert repr(AuthResponse(data=b"hunter2")) == "AuthResponse(data=<hidden>)"
    assert "hunter2" not in repr([plain]) and "hunter2" not in str(plain)
    assert plain != AuthRequest(mechanism="PLAIN", initial_response=b"\0user\0other")
    assert AuthResponse(data=b"a") == AuthResponse(data=b"a")
    with pytest.raises(TypeError, match="missing keyword arguments: data"):
        AuthResponse()  # type: ignore[call-arg]
