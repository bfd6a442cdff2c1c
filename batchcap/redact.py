"""Tokens pasted where a path or a value goes are never echoed back (issue 21).

``--token-file hf_AbC...`` used to print ``--token-file hf_AbC... does not exist``: the secret landed in the
terminal, the scrollback and any CI log. Every message that repeats a user's path or value passes it through
``shown`` first, and the CLI passes every error line through ``redact`` on its way out, so a value that looks
like a token is replaced, wherever it came from.

What looks like a token: a known prefix (``hf_``, ``sk-``, ``ghp_``, ``github_pat_``, ``gsk_``, ``xoxb-``)
followed by 8 or more token characters, or one long (>= 32) base64-ish word that mixes upper case, lower case
and digits. Paths (with a ``/`` or a ``.``), hex digests and ordinary words do not.
"""

from __future__ import annotations

import re

__all__ = ["NOT_SHOWN", "TOKEN_HINT", "looks_like_token", "redact", "shown"]

#: What a message says instead of the value.
NOT_SHOWN = "<a token, not shown>"
#: The fix, for a token given where a file was expected.
TOKEN_HINT = "this looks like a token, not a file: set HF_TOKEN instead (or put it in a file for --token-file)"

_PREFIXED = r"(?:hf_|sk-|ghp_|gho_|github_pat_|gsk_|xox[abprs]-)[A-Za-z0-9_\-]{8,}"
_PREFIXED_WORD = re.compile(r"(?<![A-Za-z0-9_\-/.])" + _PREFIXED + r"(?![A-Za-z0-9_\-])")
_BASE64ISH = re.compile(r"[A-Za-z0-9+=_\-]{32,}")


def looks_like_token(value: object) -> bool:
    """Whether a whole value (a path, a model id, a URL) is more likely a pasted secret than what was asked for."""
    text = str(value).strip()
    if not text or any(c.isspace() for c in text) or "/" in text or "." in text:
        return False
    if re.fullmatch(_PREFIXED, text):
        return True
    return bool(
        _BASE64ISH.fullmatch(text)
        and any(c.islower() for c in text)
        and any(c.isupper() for c in text)
        and any(c.isdigit() for c in text)
    )


def shown(value: object) -> str:
    """``value`` as a message may repeat it, or ``NOT_SHOWN`` when it looks like a token."""
    return NOT_SHOWN if looks_like_token(value) else str(value)


def redact(message: str) -> str:
    """``message`` with every prefixed token (``hf_...``, ``sk-...``) inside it replaced by ``NOT_SHOWN``.

    The last line of defence, for text that was not built with ``shown`` (argparse's own errors echo values).
    Only prefixed tokens are found inside text: a long word in a message may well be a digest or an id.
    """
    return _PREFIXED_WORD.sub(NOT_SHOWN, message)
