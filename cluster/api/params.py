"""Reading Nacos API parameters: required values, aliases, booleans, numbers, with Nacos's error texts."""

from __future__ import annotations

import codecs
import math

from cluster.http import Request
from cluster.http.params import merge_params_in
from distro.model import DEFAULT_CLUSTER, ValidationError, validate_cluster

__all__ = ["Params"]

# nacos-sdk-python sends the literal string "None" when no cluster is given (docs/api.md).
_ABSENT = {"", "None", "null"}
MAX_CLUSTERS_CHARS = 4096


def request_params(request: Request) -> dict[str, str]:
    """The request's parameters; with an ``encoding`` parameter naming a text codec other than UTF-8, their
    escapes are decoded in that codec (Nacos's ``WebUtils`` re-decodes values with ``encoding``)."""
    values = request.params()
    encoding = values.get("encoding")
    if not encoding or len(encoding) > 40:
        return values
    try:
        codec = codecs.lookup(encoding)
        if codec.name == "utf-8" or not getattr(codec, "_is_text_encoding", True):
            return values
        return merge_params_in(codec.name, request.query, request.body, request.headers.get("content-type"))
    except (LookupError, ValueError, TypeError):  # (UnicodeError is a ValueError) Nacos ignores such a name too
        return values


class Params:
    """The merged query and form parameters of one request (values already trimmed)."""

    __slots__ = ("_values",)

    def __init__(self, values: dict[str, str]) -> None:
        self._values = values

    def overridden(self, **values: str) -> Params:
        """A copy with some values replaced (legacy routes that rewrite ``serviceName`` as Nacos does)."""
        return Params({**self._values, **values})

    def get(self, name: str, *aliases: str) -> str | None:
        """The first present value of ``name`` or its aliases."""
        value = self._values.get(name)
        if value is None:
            for alias in aliases:
                value = self._values.get(alias)
                if value is not None:
                    break
        return value

    def required(self, name: str, *aliases: str) -> str:
        """A value that must be present and non-empty (``Param 'x' is required.``)."""
        value = self.get(name, *aliases)
        if not value:
            raise ValidationError(f"Param '{name}' is required.")
        return value

    def boolean(self, name: str, default: bool, *aliases: str) -> bool:
        """``true``/``false`` in any case (the Python client sends ``True``)."""
        value = self.get(name, *aliases)
        if value is None or value == "":
            return default
        lowered = value.lower()
        if lowered == "true":
            return True
        if lowered == "false":
            return False
        raise ValidationError(f"Param '{name}' is illegal, it must be true or false, current: {value[:64]}")

    def lenient_boolean(self, name: str, default: bool) -> bool:
        """Java's ``Boolean.parseBoolean``: ``true`` in any case is true, anything else false (blank: default).

        Nacos reads ``healthyOnly``, ``isCheck``, ``aggregation`` and ``responsibleOnly`` this way.
        """
        value = self.get(name)
        if value is None or value == "":
            return default
        return value.lower() == "true"

    def spring_required(self, name: str) -> str:
        """A ``@RequestParam`` that must be present (``Parameter 'x' is missing``, Spring's text); may be empty."""
        value = self.get(name)
        if value is None:
            raise ValidationError(f"Parameter '{name}' is missing")
        return value

    def integer(self, name: str, default: int | None = None, *, low: int = 0, high: int = 2**31 - 1) -> int:
        """An integer in [low, high]; required when ``default`` is None."""
        value = self.get(name)
        if value is None or value == "":
            if default is None:
                raise ValidationError(f"Param '{name}' is required.")
            return default
        try:
            number = int(value)
        except ValueError:
            raise ValidationError(f"Param '{name}' is illegal, it must be an integer, current: {value[:64]}") from None
        if not low <= number <= high:
            raise ValidationError(f"Param '{name}' is illegal, it must be in [{low}, {high}], current: {number}")
        return number

    def number(self, name: str, default: float) -> float:
        """A finite float."""
        value = self.get(name)
        if value is None or value == "":
            return default
        try:
            number = float(value)
        except ValueError:
            raise ValidationError(f"Param '{name}' is illegal, it must be a number, current: {value[:64]}") from None
        if math.isnan(number) or math.isinf(number):
            raise ValidationError(f"Param '{name}' is illegal, it must be a finite number")
        return number

    def cluster(self, *, default: str = DEFAULT_CLUSTER) -> str:
        """``clusterName`` (or ``cluster``); absent, empty or the literal ``None`` mean ``DEFAULT``."""
        value = self.get("clusterName", "cluster")
        if value is None or value in _ABSENT:
            return default
        return validate_cluster(value)

    def clusters(self) -> list[str]:
        """The comma-separated ``clusters`` filter of a list (empty: all clusters).

        As lenient as Nacos (``StringUtils.split``): blank parts are skipped and names are not checked, so a
        name no cluster can have simply matches nothing.
        """
        value = self.get("clusters")
        if not value or value in _ABSENT:
            return []
        if len(value) > MAX_CLUSTERS_CHARS:  # it keys push subscriptions: keep them small
            raise ValidationError(f"Param 'clusters' is too long: at most {MAX_CLUSTERS_CHARS} characters")
        return [part.strip() for part in value.split(",") if part.strip()]
