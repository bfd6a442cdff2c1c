"""Data for the page as JavaScript files, since ``fetch()`` of JSON is refused from ``file://``.

Captions and file names are untrusted text from a remote service and a user's disk. They reach the page
only as JSON string literals in a ``.js`` file that assigns to a global, never as markup or inline script,
and ``<``, ``>``, ``&``, U+2028 and U+2029 are written as ``\\uXXXX`` escapes so that no string can close a
``<script>`` element or end a line in an older JavaScript parser, wherever the file is later pasted.
"""

from __future__ import annotations

from typing import Any

import orjson

__all__ = ["js_assign", "js_json"]

_ESCAPES = (
    (b"<", b"\\u003c"),
    (b">", b"\\u003e"),
    (b"&", b"\\u0026"),
    ("\u2028".encode(), b"\\u2028"),
    ("\u2029".encode(), b"\\u2029"),
)


def js_json(obj: Any) -> bytes:
    """``obj`` as JSON that is also a safe JavaScript literal (the five characters above escaped).

    Safe to replace everywhere: outside strings JSON holds none of these characters.
    """
    data = orjson.dumps(obj)
    for raw, escaped in _ESCAPES:
        if raw in data:
            data = data.replace(raw, escaped)
    return data


def js_assign(name: str, key: str | None, obj: Any) -> bytes:
    """``self.NAME = obj;`` or ``(self.NAME = self.NAME || {})[key] = obj;`` with ``name``/``key`` as
    identifiers we choose (never data)."""
    if not name.isidentifier() or (key is not None and not key.isidentifier()):
        raise ValueError("global and key names are ours: identifiers only")
    if key is None:
        return b"self." + name.encode() + b" = " + js_json(obj) + b";\n"
    target = f"(self.{name} = self.{name} || {{}}).{key} = ".encode()
    return target + js_json(obj) + b";\n"
