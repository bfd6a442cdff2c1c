"""Deterministic sample images for the demo, the tests and the benchmarks.

A fresh machine has no image folder to caption, and tests need many distinct, valid files in nested folders.
Each image is drawn from its own seeded generator, so image ``i`` is the same for any ``count`` and a rerun
rewrites nothing. Dominant colours, sizes (32-512 px), formats (PNG, JPEG, some WebP and GIF) and modes vary,
so captions from the emulator differ too.

    python -m batchcap.source.samples demo/images --count 300
"""

from __future__ import annotations

import argparse
import io
import os
import random
import re
from collections.abc import Callable, Sequence
from pathlib import Path

from PIL import Image, ImageDraw, ImageOps

__all__ = ["foreign_entries", "generate", "main"]

RGB = tuple[int, int, int]


def _parents(folder: str) -> list[str]:
    """``a/b/c`` -> ``a``, ``a/b``, ``a/b/c``."""
    parts = folder.split("/")
    return ["/".join(parts[: i + 1]) for i in range(len(parts))]

#: Base colours; each image shifts its background a little, so files differ while the dominant colour stays clear.
_COLOURS: tuple[RGB, ...] = (
    (220, 30, 30),
    (30, 140, 40),
    (30, 50, 210),
    (240, 230, 40),
    (245, 160, 20),
    (130, 20, 130),
    (250, 190, 200),
    (130, 70, 25),
    (30, 230, 230),
    (125, 125, 125),
    (245, 245, 245),
    (15, 15, 15),
)
#: (folder, painter name): each image picks one, so the tree is nested and every folder mixes formats.
_LAYOUT: tuple[tuple[str, str], ...] = (
    ("landscapes", "landscape"),
    ("landscapes/coast", "landscape"),
    ("shapes/2024", "shapes"),
    ("shapes/2025/march", "shapes"),
    ("gradients", "gradient"),
    ("misc/stripes", "stripes"),
)
#: (format, extension, weight).
_FORMATS: tuple[tuple[str, str, int], ...] = (
    ("PNG", "png", 40),
    ("JPEG", "jpg", 44),
    ("WEBP", "webp", 8),
    ("GIF", "gif", 8),
)


def _shift(rng: random.Random, colour: RGB, spread: int = 18) -> RGB:
    r, g, b = (min(255, max(0, c + rng.randint(-spread, spread))) for c in colour)
    return (r, g, b)


def _other(rng: random.Random, background: RGB) -> RGB:
    return rng.choice([c for c in _COLOURS if c != background])


def _landscape(rng: random.Random, size: tuple[int, int], main: RGB) -> Image.Image:
    """Main-coloured ground filling the lower ~60%, a sky band and a sun."""
    w, h = size
    image = Image.new("RGB", size, _shift(rng, main))
    draw = ImageDraw.Draw(image)
    horizon = int(h * rng.uniform(0.25, 0.4))
    draw.rectangle((0, 0, w, horizon), fill=_shift(rng, _other(rng, main)))
    r = max(2, min(w, h) // rng.randint(6, 10))
    cx, cy = rng.randint(r, max(r, w - r)), rng.randint(0, max(1, horizon))
    draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=_other(rng, main))
    return image


def _shapes(rng: random.Random, size: tuple[int, int], main: RGB) -> Image.Image:
    """A main-coloured canvas with a few small shapes, covering well under half of it."""
    w, h = size
    image = Image.new("RGB", size, _shift(rng, main))
    draw = ImageDraw.Draw(image)
    for _ in range(rng.randint(2, 6)):
        x0, y0 = rng.randint(0, w - 1), rng.randint(0, h - 1)
        x1, y1 = min(w, x0 + rng.randint(4, max(5, w // 4))), min(h, y0 + rng.randint(4, max(5, h // 4)))
        fill = _other(rng, main)
        kind = rng.randrange(4)
        if kind == 0:
            draw.ellipse((x0, y0, x1, y1), fill=fill)
        elif kind == 1:
            draw.rectangle((x0, y0, x1, y1), fill=fill)
        elif kind == 2:
            draw.polygon([(x0, y1), ((x0 + x1) // 2, y0), (x1, y1)], fill=fill)
        else:
            draw.line((x0, y0, x1, y1), fill=fill, width=rng.randint(1, 4))
    return image


def _gradient(rng: random.Random, size: tuple[int, int], main: RGB) -> Image.Image:
    """A gradient that stays on the main colour for most of its length."""
    ramp = Image.linear_gradient("L").resize(size).point(lambda v: max(0, v * 4 - 765))
    if rng.random() < 0.5:
        ramp = ramp.transpose(Image.Transpose.ROTATE_90).resize(size)
    return ImageOps.colorize(ramp, black=_shift(rng, main), white=_other(rng, main))


def _stripes(rng: random.Random, size: tuple[int, int], main: RGB) -> Image.Image:
    """Wide main-coloured bands with thin stripes of another colour."""
    w, h = size
    image = Image.new("RGB", size, _shift(rng, main))
    draw = ImageDraw.Draw(image)
    period, width, accent = rng.randint(8, 40), rng.randint(1, 3), _other(rng, main)
    for x in range(0, w + h, period):
        draw.line((x, 0, x - h, h), fill=accent, width=width)
    return image


_PAINTERS: dict[str, Callable[[random.Random, tuple[int, int], RGB], Image.Image]] = {
    "landscape": _landscape,
    "shapes": _shapes,
    "gradient": _gradient,
    "stripes": _stripes,
}


def _render(seed: int, index: int) -> tuple[str, bytes]:
    """The relative path and encoded bytes of image ``index``; depends on nothing but the two numbers."""
    rng = random.Random(f"batchcap-samples:{seed}:{index}")
    folder, painter = _LAYOUT[rng.randrange(len(_LAYOUT))]
    fmt, ext, _ = rng.choices(_FORMATS, weights=[weight for *_, weight in _FORMATS])[0]
    size = (rng.randint(32, 512), rng.randint(32, 512))
    image = _PAINTERS[painter](rng, size, rng.choice(_COLOURS))
    options: dict[str, object] = {}
    if fmt == "JPEG":
        options = {"quality": rng.choice((75, 85, 92))}
    elif fmt == "WEBP":
        options = {"quality": 80, "method": 4}
    elif fmt == "GIF":
        image = image.convert("P", palette=Image.Palette.ADAPTIVE, colors=32)
    elif rng.random() < 0.15:
        image = image.convert("L")  # some grayscale PNGs
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return f"{folder}/img_{index:04d}.{ext}", buffer.getvalue()


def generate(dest: Path, count: int = 300, *, seed: int = 0) -> list[Path]:
    """Write ``count`` images under ``dest`` (nested folders) and return their paths in index order.

    Idempotent: a file that already holds the right bytes is left untouched, so its mtime does not change.
    """
    if count < 0:
        raise ValueError(f"count must be >= 0 (got {count})")
    paths: list[Path] = []
    for index in range(count):
        relative, data = _render(seed, index)
        path = dest / relative
        paths.append(path)
        try:
            if path.read_bytes() == data:
                continue
        except FileNotFoundError:
            path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(path.name + ".partial")
        partial.write_bytes(data)
        os.replace(partial, path)  # never leave a half-written image behind
    return paths


_SAMPLE_NAME = re.compile(r"img_\d{4,}\.(?:" + "|".join(ext for _, ext, _ in _FORMATS) + r")(?:\.partial)?")
_SAMPLE_FOLDERS = frozenset(p for folder, _ in _LAYOUT for p in _parents(folder))


def foreign_entries(dest: Path, *, limit: int = 3) -> list[str]:
    """Up to ``limit`` paths under ``dest`` that ``generate`` would not have written (empty: safe to write).

    A folder an earlier ``samples`` filled is not foreign, so the demo can run twice; anything else (a folder of
    real photos, notes, a repository) is, and ``batchcap samples`` refuses it without ``--force``.
    """
    found: list[str] = []
    if not dest.is_dir():
        return [dest.name] if dest.exists() else []
    stack = [""]
    while stack and len(found) < limit:
        rel = stack.pop()
        with os.scandir(dest / rel if rel else dest) as it:
            for entry in sorted(it, key=lambda e: e.name):
                path = f"{rel}/{entry.name}" if rel else entry.name
                if entry.is_dir(follow_symlinks=False) and path in _SAMPLE_FOLDERS:
                    stack.append(path)
                elif not (entry.is_file(follow_symlinks=False) and rel in _SAMPLE_FOLDERS
                          and _SAMPLE_NAME.fullmatch(entry.name)):
                    found.append(path + ("/" if entry.is_dir() else ""))
                    if len(found) >= limit:
                        break
    return found


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m batchcap.source.samples DEST [--count N] [--seed S]``."""
    parser = argparse.ArgumentParser(prog="python -m batchcap.source.samples", description=__doc__.splitlines()[0])
    parser.add_argument("dest", type=Path, help="folder to fill (created if missing)")
    parser.add_argument("--count", type=int, default=300, help="number of images (default: %(default)s)")
    parser.add_argument(
        "--seed", type=int, default=0, help="a different seed gives different images (default: %(default)s)"
    )
    args = parser.parse_args(argv)
    if args.count < 0:
        parser.error(f"--count must be >= 0 (got {args.count})")
    paths = generate(args.dest, args.count, seed=args.seed)
    print(f"wrote {len(paths)} sample images under {args.dest}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
