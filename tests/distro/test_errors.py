"""The exception tree (:mod:`distro.errors`): one root, the old import paths still work, constructors as used.

Proves: every class subclasses ``DistroError``; ``ValidationError`` and ``ProtocolError`` are still
``ValueError`` (parsers catch that) and the others are not (a ``ValueError`` handler must not swallow them);
``distro.model`` and ``distro.codec`` re-export the very same classes; ``ValidationError`` and ``CtlError``
keep their message and status / exit code; a malformed peer frame raises a ``DistroError``; the tree drawn
in the module docstring names every class.
"""

from __future__ import annotations

import pytest

from distro import codec, errors, model
from distro.errors import (
    ClusterError,
    ConfigError,
    CtlError,
    DistroError,
    LinkClosed,
    ProtocolError,
    ValidationError,
)

ALL = [ValidationError, ProtocolError, ConfigError, LinkClosed, ClusterError, CtlError]


@pytest.mark.parametrize("cls", ALL, ids=lambda c: c.__name__)
def test_every_error_is_a_distro_error(cls: type[Exception]) -> None:
    assert issubclass(cls, DistroError)
    assert cls.__name__ in errors.__all__
    assert f"── {cls.__name__}" in (errors.__doc__ or "")


def test_only_input_errors_are_value_errors() -> None:
    assert [c.__name__ for c in ALL if issubclass(c, ValueError)] == ["ValidationError", "ProtocolError"]


def test_old_import_paths_give_the_same_classes() -> None:
    assert model.ValidationError is ValidationError
    assert codec.ProtocolError is ProtocolError


def test_constructors_keep_their_fields() -> None:
    invalid = ValidationError("service not found", 404)
    assert (str(invalid), invalid.message, invalid.status) == ("service not found", "service not found", 404)
    assert ValidationError("bad").status == 400
    ctl = CtlError("no server given", 2)
    assert (str(ctl), ctl.message, ctl.code) == ("no server given", "no server given", 2)
    assert CtlError("cannot reach").code == 1
    assert str(LinkClosed("expected hello")) == "expected hello"


def test_a_malformed_frame_is_caught_as_a_distro_error() -> None:
    with pytest.raises(DistroError, match="unknown type"):
        codec.decode_message(["no-such-message"])
