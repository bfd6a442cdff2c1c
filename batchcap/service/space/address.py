"""Which Gradio app to caption through, and what to give it: ``--space``, ``--space-api``, ``--space-input``.

``OWNER/NAME`` is a Hugging Face Space and resolves to ``https://OWNER-NAME.hf.space`` (lower case, ``_`` and
``.`` as ``-``: the Spaces' own subdomain rule); a Space page URL (``https://huggingface.co/spaces/OWNER/NAME``)
resolves the same way; any other ``http(s)://`` URL is a Gradio app served there (a local one, a share link).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from batchcap.errors import ConfigError, UsageError

__all__ = ["SPACE_HOST_SUFFIX", "SpaceSettings", "is_space_host", "parse_inputs", "space_url"]

SPACE_HOST_SUFFIX = ".hf.space"
_SPACE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*")
_HUB_PAGE = re.compile(r"https://huggingface\.co/spaces/([^/?#]+/[^/?#]+)/?(?:[?#].*)?", re.IGNORECASE)
_INPUT_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_ .-]{0,63}")


def space_url(space: str) -> str:
    """The app's base URL, ending with ``/``: ``OWNER/NAME`` -> ``https://owner-name.hf.space/``."""
    text = space.strip()
    if (page := _HUB_PAGE.fullmatch(text)) is not None:
        text = page.group(1)
    if _SPACE_ID.fullmatch(text):
        sub = re.sub(r"[_./]", "-", text).lower()
        return f"https://{sub}{SPACE_HOST_SUFFIX}/"
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"--space must be OWNER/NAME, a Space URL or a Gradio app's http(s) URL (got {space!r})")
    if parts.username or parts.password:
        raise ConfigError("--space must not carry credentials in the URL; use HF_TOKEN or --token-file")
    if parts.query or parts.fragment:
        raise ConfigError(f"--space: give the app's URL without ?query or #fragment (got {space!r})")
    return parts._replace(path=parts.path.rstrip("/") + "/").geturl()


def is_space_host(url: str) -> bool:
    """A Hugging Face Space's own host (``*.hf.space``): the one place a found HF token may go unasked."""
    host = (urlsplit(url).hostname or "").lower()
    return host.endswith(SPACE_HOST_SUFFIX)


def parse_inputs(values: Sequence[str]) -> tuple[tuple[str, str], ...]:
    """``--space-input NAME=VALUE`` (repeatable) -> pairs; a name given twice or without ``=`` is a usage error."""
    out: dict[str, str] = {}
    for text in values:
        name, sep, value = text.partition("=")
        name = name.strip()
        if not sep or not _INPUT_NAME.fullmatch(name):
            raise UsageError(f"--space-input {text!r}: expected NAME=VALUE with the input's name as the app's API "
                             'lists it, e.g. --space-input prompt="Describe the image in one sentence."')
        if name in out:
            raise UsageError(f"--space-input {name}= is given twice")
        out[name] = value
    return tuple(out.items())


@dataclass(frozen=True, slots=True)
class SpaceSettings:
    """``--space`` (OWNER/NAME or a URL), ``--space-api`` (None: the one endpoint that takes an image and returns
    text) and ``--space-input`` values by input name (typed by the app's API info when the call is planned)."""

    space: str
    api_name: str | None = None
    inputs: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        space_url(self.space)  # raises ConfigError naming --space
        if self.api_name is not None:
            name = self.api_name.strip()
            if not name or name == "/" or any(c.isspace() for c in name):
                raise ConfigError(f"--space-api must be an endpoint name such as /caption (got {self.api_name!r})")
            object.__setattr__(self, "api_name", name if name.startswith("/") else "/" + name)
        for pair in self.inputs:
            if not (isinstance(pair, tuple) and len(pair) == 2 and all(isinstance(v, str) for v in pair)):
                raise ConfigError(f"--space-input must be NAME=VALUE pairs (got {pair!r})")

    @property
    def url(self) -> str:
        """The app's base URL, ending with ``/``."""
        return space_url(self.space)

    @property
    def space_id(self) -> str | None:
        """``owner/name`` for a Hugging Face Space given by name or page URL; None for any other app URL."""
        text = self.space.strip()
        if (page := _HUB_PAGE.fullmatch(text)) is not None:
            return page.group(1)
        return text if _SPACE_ID.fullmatch(text) else None

    @property
    def target(self) -> str:
        """A short, secret-free name for the journal: ``space:owner/name[/caption]`` or ``space:URL[/caption]``."""
        where = self.space_id or self.url.rstrip("/")
        return f"space:{where}" + (f"@{self.api_name}" if self.api_name else "")
