"""How a setting is declared: once, as a field of its subsystem's frozen settings object.

Every subsystem keeps its settings in one small frozen dataclass (``flow.Limits``, ``prepare.PrepareSettings``,
``source.SourceSettings``, ``service.TargetSettings``...), validated in its own ``__post_init__`` with the
flag's name in the message; ``config.RunConfig`` composes them, as httpx passes ``Timeout`` and ``Limits`` whole.
A field declared with :func:`setting` carries how a profile's or a flag's text becomes its value (``parse``), so
the profile loader and the command line find every user setting from the dataclasses themselves: adding a
setting is one field here and one option line in ``cli/options.py``.

    @dataclass(frozen=True, slots=True)
    class Limits:
        rate: float | None = setting(None, parse=parse_rate)
        burst: int = setting(4, parse=int)

        def __post_init__(self) -> None:
            check_whole(self.burst, "burst", minimum=1)   # ConfigError: --burst must be a whole number >= 1 (got 0)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import Field, field, fields
from typing import Any, TypeVar
from urllib.parse import urlsplit

from batchcap.errors import ConfigError
from batchcap.redact import looks_like_token

__all__ = [
    "Parse",
    "check_choice",
    "check_number",
    "check_url",
    "check_whole",
    "flag",
    "parse_bool",
    "parse_float",
    "parse_int",
    "setting",
    "user_fields",
]

T = TypeVar("T")
#: Turns a profile's value (TOML-typed) or a flag's text into the field's type; raises ConfigError.
Parse = Callable[[Any], Any]


def flag(name: str) -> str:
    """The command-line spelling of a setting: ``max_side`` -> ``--max-side``."""
    return "--" + name.replace("_", "-")


def setting(default: T, *, parse: Parse | None = None, internal: bool = False) -> T:
    """A user setting with its default and its parser. ``internal``: a knob for code and tests, not for users
    (never listed, refused in profiles)."""
    return field(default=default, metadata={"parse": parse, "internal": internal})  # type: ignore[no-any-return]


def user_fields(cls: type) -> Iterator[Field[Any]]:
    """The fields of a settings class that a user may set (from a profile or a flag)."""
    for f in fields(cls):
        if f.init and not f.metadata.get("internal", False) and not f.name.startswith("_"):
            yield f


def parse_int(value: Any, name: str = "") -> int:
    """A whole number from TOML (int) or a flag (text)."""
    if isinstance(value, bool):
        raise ConfigError(f"{flag(name)} must be a whole number (got {value!r})")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    try:
        return int(str(value).strip())
    except ValueError:
        raise ConfigError(f"{flag(name)} must be a whole number (got {value!r})") from None


def parse_float(value: Any, name: str = "") -> float:
    """A finite number from TOML or a flag."""
    if isinstance(value, bool):
        raise ConfigError(f"{flag(name)} must be a number (got {value!r})")
    try:
        number = float(value) if isinstance(value, int | float) else float(str(value).strip())
    except ValueError:
        raise ConfigError(f"{flag(name)} must be a number (got {value!r})") from None
    if not math.isfinite(number):
        raise ConfigError(f"{flag(name)} must be a finite number (got {value!r})")
    return number


def parse_bool(value: Any, name: str = "") -> bool:
    """``true``/``false`` in a profile; a flag's presence on the command line."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "yes", "on", "1"):
        return True
    if text in ("false", "no", "off", "0"):
        return False
    raise ConfigError(f"{flag(name)} must be true or false (got {value!r})")


def check_whole(value: object, name: str, *, minimum: int, maximum: int | None = None) -> None:
    """A whole number within bounds, else ConfigError naming the flag."""
    ok = isinstance(value, int) and not isinstance(value, bool) and value >= minimum
    if ok and maximum is not None:
        ok = value <= maximum  # type: ignore[operator]
    if not ok:
        bounds = f"from {minimum} to {maximum}" if maximum is not None else f">= {minimum}"
        raise ConfigError(f"{flag(name)} must be a whole number {bounds} (got {value!r})")


def check_number(value: object, name: str, *, above: float | None = None, at_least: float | None = None,
                 at_most: float | None = None, hint: str = "") -> None:
    """A finite number within bounds, else ConfigError naming the flag (and ``hint``, the fix)."""
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if ok:
        number = float(value)  # type: ignore[arg-type]
        ok = ((above is None or number > above) and (at_least is None or number >= at_least)
              and (at_most is None or number <= at_most))
    if not ok:
        parts = [f"> {above:g}" if above is not None else "", f">= {at_least:g}" if at_least is not None else "",
                 f"<= {at_most:g}" if at_most is not None else ""]
        bounds = " and ".join(p for p in parts if p) or "a finite number"
        raise ConfigError(f"{flag(name)} must be {bounds} (got {value!r})" + (f"; {hint}" if hint else ""))


def check_choice(value: object, name: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"{flag(name)} must be one of {', '.join(choices)} (got {value!r})")


#: Hosts that no longer serve models: refused with the replacement (protocol.md 1.1).
RETIRED_HOSTS = {
    "api-inference.huggingface.co": "use --api-base https://router.huggingface.co/hf-inference",
}


def check_url(url: str, name: str) -> None:
    """An http(s) URL with a host and no credentials; ConfigError naming the flag otherwise."""
    if looks_like_token(url):  # pasted where the URL goes: never echoed (issue 21)
        raise ConfigError(f"{flag(name)}: this looks like a token, not a URL: set HF_TOKEN for the token instead")
    parts = urlsplit(url)
    try:
        parts.port  # noqa: B018 (a malformed port raises here)
    except ValueError:
        raise ConfigError(f"{flag(name)} has a malformed port (got {url!r})") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"{flag(name)} must be an http(s) URL like https://host/path (got {url!r})")
    if parts.username or parts.password:
        raise ConfigError(f"{flag(name)} must not carry credentials in the URL; use HF_TOKEN or --token-file")
    if parts.hostname in RETIRED_HOSTS:
        raise ConfigError(f"{parts.hostname} no longer serves models; {RETIRED_HOSTS[parts.hostname]}")
