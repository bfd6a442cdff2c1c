"""How well ``--dedupe near`` tells near copies from distinct images, and what hashing costs.

    .venv/bin/python benchmarks/bench_dedupe.py [--count 200]

Distinct images: ``batchcap.source.samples`` (flat shapes, gradients: the hard case for a perceptual hash) and
"textured" ones (smooth random fields, closer to photos). Copies of each: resized (x0.25 .. x2, JPEG q90),
re-saved as JPEG q50/75/95, PNG and WebP. Prints, per copy kind, how many copies are found as near copies
of their original; and how many pairs of distinct images would be wrongly taken as near copies.
"""

from __future__ import annotations

import argparse
import io
import itertools
import random
import tempfile
import time
from pathlib import Path

from PIL import Image, ImageFilter

from batchcap.source.digest import COLOUR_TOLERANCE, NEAR_DISTANCE, content_digest, hamming, near_key
from batchcap.source.samples import generate


def textured(i: int) -> bytes:
    """A smooth random field: a 6x6 random colour grid scaled up, plus grain."""
    rng = random.Random(i)
    w, h = rng.choice([(320, 240), (480, 360), (256, 256), (400, 300)])
    grid = Image.new("RGB", (6, 6))
    grid.putdata([tuple(rng.randrange(256) for _ in range(3)) for _ in range(36)])  # type: ignore[misc]
    im = grid.resize((w, h), Image.Resampling.BICUBIC).filter(ImageFilter.GaussianBlur(2))
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=90)
    return buf.getvalue()


def variants(data: bytes) -> dict[str, bytes]:
    im = Image.open(io.BytesIO(data)).convert("RGB")
    out: dict[str, bytes] = {}
    for name, scale in (("resize x0.25", 0.25), ("resize x0.5", 0.5), ("resize x0.75", 0.75), ("resize x2", 2.0)):
        size = (max(16, int(im.width * scale)), max(16, int(im.height * scale)))
        buf = io.BytesIO()
        im.resize(size, Image.Resampling.LANCZOS).save(buf, "JPEG", quality=90)
        out[name] = buf.getvalue()
    for fmt, kwargs, name in (("JPEG", {"quality": 50}, "jpeg q50"), ("JPEG", {"quality": 75}, "jpeg q75"),
                              ("JPEG", {"quality": 95}, "jpeg q95"), ("PNG", {}, "png"),
                              ("WEBP", {"quality": 80}, "webp q80")):
        buf = io.BytesIO()
        im.save(buf, fmt, **kwargs)
        out[name] = buf.getvalue()
    return out


def evaluate(name: str, originals: list[bytes]) -> None:
    keys = [near_key(d) for d in originals]
    with_key = [(i, k) for i, k in enumerate(keys) if k is not None]
    print(f"\n{name}: {len(originals)} images, {len(with_key)} with enough detail for a near key")
    found: dict[str, list[int]] = {}
    copy_bits: list[int] = []
    for i, key in with_key:
        for kind, copy in variants(originals[i]).items():
            ck = near_key(copy)
            hit = ck is not None and key.near(ck)
            if ck is not None:
                copy_bits.append(hamming(key.dhash, ck.dhash))
            found.setdefault(kind, [0, 0])
            found[kind][0] += hit
            found[kind][1] += 1
    for kind, (hit, n) in found.items():
        print(f"  {kind:13} found {hit}/{n} ({100 * hit / max(n, 1):.0f}%)")
    pairs = list(itertools.combinations([k for _, k in with_key], 2))
    false = sum(a.near(b) for a, b in pairs)
    print(f"  distinct pairs taken as near copies: {false} of {len(pairs)}")
    copy_bits.sort()
    apart = sorted(hamming(a.dhash, b.dhash) for a, b in pairs)
    print(f"  dHash bits, copy vs original: median {copy_bits[len(copy_bits) // 2]}, "
          f"p95 {copy_bits[int(0.95 * len(copy_bits))]}, max {copy_bits[-1]}; distinct pairs: "
          f"min {apart[0]}, p1 {apart[len(apart) // 100]}, median {apart[len(apart) // 2]}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--count", type=int, default=200)
    args = ap.parse_args()
    print(f"NEAR_DISTANCE={NEAR_DISTANCE} bits, COLOUR_TOLERANCE={COLOUR_TOLERANCE}")
    with tempfile.TemporaryDirectory() as tmp:
        samples = [p.read_bytes() for p in generate(Path(tmp), args.count, seed=0)]
    photos = [textured(i) for i in range(args.count)]
    for name, data in (("samples", samples), ("textured", photos)):
        t = time.perf_counter()
        for d in data:
            content_digest(d)
        digest_us = (time.perf_counter() - t) / len(data) * 1e6
        t = time.perf_counter()
        for d in data:
            near_key(d)
        near_us = (time.perf_counter() - t) / len(data) * 1e6
        print(f"{name}: content_digest {digest_us:.1f} us/file, near_key {near_us:.0f} us/file, "
              f"mean {sum(map(len, data)) / len(data) / 1024:.0f} KB")
    evaluate("samples", samples)
    evaluate("textured", photos)


if __name__ == "__main__":
    main()
