"""The token: found the way huggingface_hub finds it, held so that it cannot leak.

``Secret`` never renders (repr, str, f-strings, tracebacks); ``CaptionClient`` alone calls ``reveal()``, to build
the Authorization header for the one host it talks to.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from batchcap.errors import ConfigError
from batchcap.redact import TOKEN_HINT, looks_like_token, shown

__all__ = ["Secret", "find_token"]


class Secret:
    """A token that cannot leak through repr, str, f-strings or tracebacks."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


def find_token(token_file: Path | None = None, env: Mapping[str, str] | None = None) -> tuple[Secret | None, str]:
    """Find a token the way huggingface_hub does; return it with a secret-free description of its source.

    Order: ``--token-file``, ``HF_TOKEN``, ``HUGGING_FACE_HUB_TOKEN``, ``HF_TOKEN_PATH``, ``$HF_HOME/token``
    (default ``$XDG_CACHE_HOME/huggingface`` or ``~/.cache/huggingface``). Whitespace is stripped; empty is none.
    """
    env = os.environ if env is None else env
    if token_file is not None:
        value = _read_token(token_file, "--token-file")
        if value is None:
            raise ConfigError(f"--token-file {shown(token_file)} is empty; put the token in it, or set HF_TOKEN")
        return Secret(value), f"--token-file {token_file}"
    for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"):
        value = env.get(name, "").strip()
        if value:
            return Secret(value), f"${name}"
    if env.get("HF_TOKEN_PATH"):
        path = Path(os.path.expanduser(env["HF_TOKEN_PATH"]))
    else:
        home = env.get("HF_HOME") or os.path.join(
            env.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "huggingface"
        )
        path = Path(os.path.expanduser(home)) / "token"
    value = _read_token(path, "token file", missing_ok=True)
    if value is not None:
        return Secret(value), str(path)
    return None, "none"


def _read_token(path: Path, what: str, *, missing_ok: bool = False) -> str | None:
    try:
        value = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        if missing_ok:
            return None
        if looks_like_token(path):  # a token pasted where its file goes: never echoed (issue 21)
            raise ConfigError(f"{what}: {TOKEN_HINT}") from None
        raise ConfigError(f"{what} {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {what} {shown(path)}: {exc.__class__.__name__}") from None
    return value or None
