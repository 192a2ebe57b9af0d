"""The exception tree: one root, drawn in errors.py's docstring, with the splits users catch."""

from __future__ import annotations

import re

import pytest

from websock_actors import errors
from websock_actors.errors import (
    AppRefusal,
    CloseCode,
    ConnectionClosed,
    ConnectionClosedError,
    ConnectionClosedOK,
    HandshakeError,
    LocalHandshakeRefusal,
    OffloadTimeout,
    ProtocolError,
    RemoteHandshakeRefusal,
    WebSocketError,
    WebSocketInvalidDataFrame,
    WebSocketInvalidHandshake,
    connection_closed,
)

CLASSES = [getattr(errors, name) for name in errors.__all__ if isinstance(getattr(errors, name), type)]


@pytest.mark.parametrize("cls", [c for c in CLASSES if c is not CloseCode], ids=lambda c: c.__name__)
def test_every_error_is_in_the_tree_and_drawn(cls: type) -> None:
    assert issubclass(cls, WebSocketError)
    drawn = re.search(rf"^[ │├└─]*{cls.__name__}\b", errors.__doc__ or "", re.MULTILINE)
    assert drawn, f"{cls.__name__} is not drawn in the tree of errors.py"


def test_the_splits() -> None:
    assert issubclass(LocalHandshakeRefusal, HandshakeError)
    assert issubclass(RemoteHandshakeRefusal, HandshakeError)
    assert not issubclass(LocalHandshakeRefusal, RemoteHandshakeRefusal)
    assert issubclass(WebSocketInvalidHandshake, LocalHandshakeRefusal)
    assert issubclass(WebSocketInvalidDataFrame, ProtocolError)
    assert issubclass(ConnectionClosedOK, ConnectionClosed)
    assert issubclass(ConnectionClosedError, ConnectionClosed)
    assert issubclass(OffloadTimeout, TimeoutError)


@pytest.mark.parametrize(
    ("code", "kind"),
    [
        (1000, ConnectionClosedOK),
        (1001, ConnectionClosedOK),
        (1005, ConnectionClosedOK),  # a close frame without a code is a clean close
        (1006, ConnectionClosedError),
        (1008, ConnectionClosedError),
        (1011, ConnectionClosedError),
        (4000, ConnectionClosedError),
        (None, ConnectionClosedError),  # the transport was lost
    ],
)
def test_connection_closed_picks_the_kind_by_code(code: int | None, kind: type) -> None:
    error = connection_closed(code, "why")
    assert type(error) is kind
    assert error.code == (code if code is not None else CloseCode.ABNORMAL) and error.reason == "why"


def test_the_rejection_keeps_the_real_status_or_none() -> None:
    assert RemoteHandshakeRefusal(403, "forbidden").status == 403
    assert str(RemoteHandshakeRefusal(None, "not HTTP")) == "not HTTP"
    assert LocalHandshakeRefusal(431, "too large").headers == []


OLD_NAMES = [
    ("HandshakeRefused", LocalHandshakeRefusal),
    ("HandshakeRejected", RemoteHandshakeRefusal),
    ("Refuse", AppRefusal),
]


@pytest.mark.parametrize(("old", "new"), OLD_NAMES, ids=[old for old, _ in OLD_NAMES])
def test_the_names_without_the_side_still_work_and_warn(old: str, new: type) -> None:
    import websock_actors

    for module in (errors, websock_actors):
        with pytest.warns(DeprecationWarning, match=new.__name__):
            assert getattr(module, old) is new
    with pytest.warns(DeprecationWarning, match=new.__name__):
        exec(f"from websock_actors.errors import {old} as alias", namespace := {})
    assert namespace["alias"] is new


def test_the_client_keeps_its_old_name_with_a_warning() -> None:
    import websock_actors.client as client

    with pytest.warns(DeprecationWarning, match="RemoteHandshakeRefusal"):
        assert client.HandshakeRejected is RemoteHandshakeRefusal
    assert "HandshakeRejected" not in client.__all__


def test_an_unknown_name_is_still_an_attribute_error() -> None:
    import websock_actors.client as client

    for module in (errors, client):
        with pytest.raises(AttributeError):
            module.NoSuchError  # noqa: B018
