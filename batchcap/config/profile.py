"""TOML profiles (``configs/*.toml``): the same names as the flags, grouped in tables for reading comfort.

The tables are cosmetic: every key is unique across them and maps to the one field that declares it
(``RunConfig``'s groups). An unknown key is an error with the closest known names, never a silent no-op.
"""

from __future__ import annotations

import difflib
import os
import tomllib
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from batchcap.errors import ConfigError
from batchcap.redact import TOKEN_HINT, looks_like_token, shown

from .runconfig import RunConfig, setting_refs

__all__ = ["TABLE_VALUES", "did_you_mean", "load_profile", "profile_config", "user_setting_names"]

#: Keys whose value is itself a table (not a cosmetic group of settings): ``[tasks.NAME]`` holds one task each.
TABLE_VALUES = frozenset({"parameters", "tasks"})
_FORBIDDEN = frozenset({"token", "hf_token", "api_key"})


def user_setting_names() -> list[str]:
    """What a user can set in a profile (internal knobs left out)."""
    return sorted(ref.name for ref in setting_refs())


def did_you_mean(word: str, known: Iterable[str], *, n: int = 3) -> str:
    """``; did you mean X or Y?`` for the closest of ``known`` (difflib), or "" when nothing is close."""
    close = difflib.get_close_matches(word, list(known), n=n, cutoff=0.6)
    if not close:
        return ""
    return "; did you mean " + " or ".join(close) + "?"


def load_profile(path: Path) -> dict[str, Any]:
    """Read a profile into flat settings (values as TOML typed them; ``RunConfig.with_flat`` parses them)."""
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        if looks_like_token(path):
            raise ConfigError(f"--config: {TOKEN_HINT}") from None
        raise ConfigError(f"config file {path} does not exist (see configs/ for examples)") from None
    except IsADirectoryError:
        raise ConfigError(f"config file {path} is a folder; pass a .toml file (see configs/)") from None
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or exc.__class__.__name__
        raise ConfigError(f"cannot read config file {shown(path)}: {reason}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    known = set(user_setting_names())
    flat: dict[str, Any] = {}
    for key, value in raw.items():
        if isinstance(value, dict) and key not in TABLE_VALUES:
            for sub, subvalue in value.items():
                _put(flat, sub, subvalue, path, known)
        elif key == "tasks":
            _put(flat, key, _task_tables(value, path), path, known)
        else:
            _put(flat, key, value, path, known)
    return flat


def _task_tables(value: Any, path: Path) -> Any:
    """``[tasks.NAME]`` tables with a relative ``schema`` path taken from the profile's folder."""
    if not isinstance(value, dict):
        return value  # TaskSettings says what is wrong
    out: dict[str, Any] = {}
    for name, table in value.items():
        if isinstance(table, dict) and isinstance(table.get("schema"), str) and table["schema"] \
                and not os.path.isabs(os.path.expanduser(table["schema"])):
            table = {**table, "schema": str(path.parent / table["schema"])}
        out[name] = table
    return out


def _put(flat: dict[str, Any], key: str, value: Any, path: Path, known: set[str]) -> None:
    key = key.replace("-", "_")
    if key in _FORBIDDEN:
        raise ConfigError(f"{path}: tokens do not belong in config files; use HF_TOKEN or token_file")
    if key not in known:
        hint = did_you_mean(key, known) or "; the settings are listed in configs/README.md and `batchcap run --help`"
        raise ConfigError(f"{path}: unknown setting {key!r}{hint}")
    if key in flat:
        raise ConfigError(f"{path}: setting {key!r} appears twice")
    flat[key] = value


def profile_config(path: Path, base: RunConfig | None = None) -> RunConfig:
    """``base`` (default: all defaults) with the profile at ``path`` applied; errors name the file."""
    flat = load_profile(path)
    try:
        return (base or RunConfig()).with_flat(flat)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
