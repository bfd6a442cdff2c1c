"""The README front matter that makes a folder a Static Hugging Face Space."""

from __future__ import annotations

import orjson

__all__ = ["space_readme"]


def space_readme(title: str, *, app_file: str = "index.html", body: str = "") -> str:
    """``README.md`` for a Static Space: ``title``, ``sdk: static``, ``app_file``.

    The title is written as a JSON string (valid YAML), so quotes or colons in it cannot change the keys.
    """
    clean = " ".join(title.split())[:60] or "batchcap"
    return (
        "---\n"
        f"title: {orjson.dumps(clean).decode()}\n"
        "emoji: 📷\n"
        "colorFrom: blue\n"
        "colorTo: gray\n"
        "sdk: static\n"
        f"app_file: {app_file}\n"
        "pinned: false\n"
        "---\n\n"
        + (body or f"Made with batchcap. Open `{app_file}` in a browser, or push this folder to a Static Space.\n")
    )
