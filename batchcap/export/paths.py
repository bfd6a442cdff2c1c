"""Paths from the journal are untrusted input: only plain relative paths that stay inside a root are used.

A journal can be edited, merged from elsewhere or written by a buggy tool; ``../../etc/x``, ``/etc/x``,
``C:\\x`` or a NUL byte must never decide where an export writes or which file a report reads.
"""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath

__all__ = ["Inside", "inside", "safe_relpath"]


def safe_relpath(path: str) -> PurePosixPath | None:
    """The journal path as a clean relative POSIX path, or None when it could leave its root.

    Refused: empty, absolute (``/x``, ``\\x``, ``C:x``), any ``..`` part, NUL or other control bytes,
    backslashes (a Windows separator would be one odd name here and a traversal there).
    """
    if not path or "\\" in path or any(ord(c) < 32 or c == "\x7f" for c in path):
        return None
    if path.startswith("/") or (len(path) >= 2 and path[1] == ":"):
        return None
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if not parts or any(p == ".." for p in parts):
        return None
    return PurePosixPath(*parts)


def inside(root: Path, rel: PurePosixPath) -> Path | None:
    """``root / rel`` when its folder resolves (symlinks followed) inside ``root``; None when a link leads out.

    The last part is not followed: writers replace it by rename (which never follows a link), and an
    image that is itself a link is the user's own choice in their own folder.
    """
    dest = root.joinpath(*rel.parts)
    real_root = os.path.realpath(root)
    real_parent = os.path.realpath(dest.parent)
    if real_parent != real_root and not real_parent.startswith(real_root.rstrip(os.sep) + os.sep):
        return None
    return dest


class Inside:
    """:func:`inside` for many paths under one root, resolving each folder once (a folder holds many files)."""

    __slots__ = ("_folders", "_real_root", "root")

    def __init__(self, root: Path) -> None:
        self.root = root
        self._real_root = os.path.realpath(root).rstrip(os.sep) + os.sep
        self._folders: dict[tuple[str, ...], bool] = {}

    def __call__(self, rel: PurePosixPath) -> Path | None:
        folder = rel.parts[:-1]
        ok = self._folders.get(folder)
        if ok is None:
            real = os.path.realpath(self.root.joinpath(*folder)) + os.sep
            ok = self._folders[folder] = real.startswith(self._real_root)
        return self.root.joinpath(*rel.parts) if ok else None
