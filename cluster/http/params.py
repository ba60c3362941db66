"""Request-parameter decoding with Nacos (servlet ``getParameter``) semantics.

The rules, in one place:

* Parameters come from the query string first, then from the body when the body is a form:
  ``Content-Type: application/x-www-form-urlencoded`` (any parameters such as ``charset`` are ignored;
  the encoding is always UTF-8), or no ``Content-Type`` at all and a body that looks like a form
  (contains ``=`` and does not start with ``{`` or ``[``, i.e. it is not JSON). The method does not matter.
* **The first occurrence of a name wins**, query before body, exactly like ``getParameter`` in a
  servlet container (which lists query values before body values). A body cannot override the query.
* ``+`` decodes to a space, ``%XX`` escapes are decoded as UTF-8. Nothing here raises on bad input:
  an invalid escape such as ``%zz`` is kept literally and invalid UTF-8 becomes U+FFFD.
* Values are ``.strip()``-ped; names are not. Parts with an empty name (``=x``, ``&&``) are skipped and a
  part without ``=`` gives the empty string. Values are never interpreted: ``True``/``true``/``1`` are
  handed over as written, the caller parses booleans and numbers.
"""

from __future__ import annotations

from urllib.parse import unquote_to_bytes

__all__ = ["FORM_CONTENT_TYPE", "body_is_form", "merge_params", "merge_params_in", "parse_urlencoded", "percent_decode"]

FORM_CONTENT_TYPE = "application/x-www-form-urlencoded"

_HEXDIGITS = "0123456789abcdefABCDEF"
_HEX_PAIRS = {a + b: bytes([int(a + b, 16)]) for a in _HEXDIGITS for b in _HEXDIGITS}


def percent_decode(text: str) -> str:
    """Decode ``%XX`` escapes as UTF-8 (what ``urllib.parse.unquote(text, errors="replace")`` does, faster).

    Never raises: an invalid escape is kept literally, invalid UTF-8 becomes U+FFFD.
    """
    if "%" not in text:
        return text
    parts = text.split("%")
    out = [parts[0].encode("utf-8", "surrogatepass")]
    for part in parts[1:]:
        byte = _HEX_PAIRS.get(part[:2])
        if byte is None:
            out.append(b"%")
            out.append(part.encode("utf-8", "surrogatepass"))
        else:
            out.append(byte)
            if len(part) > 2:
                out.append(part[2:].encode("utf-8", "surrogatepass"))
    return b"".join(out).decode("utf-8", "replace")


def parse_urlencoded(text: str, out: dict[str, str]) -> dict[str, str]:
    """Add the ``name=value`` pairs of ``text`` to ``out`` (names already present are kept) and return it."""
    if not text:
        return out
    for part in text.split("&"):
        if not part:
            continue
        name, _, value = part.partition("=")
        if "+" in name:
            name = name.replace("+", " ")
        if "%" in name:
            name = percent_decode(name)
        if not name or name in out:
            continue
        if "+" in value:
            value = value.replace("+", " ")
        if "%" in value:
            value = percent_decode(value)
        out[name] = value.strip()
    return out


def body_is_form(content_type: str | None, body: bytes) -> bool:
    """Whether a body with this ``Content-Type`` header value (``None`` if absent) is decoded as a form."""
    if not body:
        return False
    if content_type is None:
        return b"=" in body and body.lstrip()[:1] not in (b"{", b"[")
    media = content_type.partition(";")[0].strip().lower()
    return media == FORM_CONTENT_TYPE


def merge_params(query: str, body: bytes, content_type: str | None) -> dict[str, str]:
    """Query-string parameters merged with a form body (see the module docstring for the rules)."""
    out: dict[str, str] = {}
    parse_urlencoded(query, out)
    if body_is_form(content_type, body):
        parse_urlencoded(body.decode("utf-8", "replace"), out)
    return out


def merge_params_in(charset: str, query: str, body: bytes, content_type: str | None) -> dict[str, str]:
    """:func:`merge_params` with escapes and raw bytes decoded as ``charset`` (a text codec Python knows,
    e.g. ``GBK``) instead of UTF-8: what the Nacos API's ``encoding`` parameter asks for."""
    out: dict[str, str] = {}
    parts = [query.encode("latin-1", "replace")]
    if body_is_form(content_type, body):
        parts.append(body)
    for data in parts:
        for part in data.split(b"&"):
            raw_name, _, raw_value = part.partition(b"=")
            name = unquote_to_bytes(raw_name.replace(b"+", b" ")).decode(charset, "replace")
            if not name or name in out:
                continue
            out[name] = unquote_to_bytes(raw_value.replace(b"+", b" ")).decode(charset, "replace").strip()
    return out
