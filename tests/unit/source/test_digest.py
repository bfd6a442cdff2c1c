"""Dedupe: exact content keys, near copies (resized / re-saved) vs distinct images, bounded indexes."""

from __future__ import annotations

import io
import random

import pytest
from PIL import Image, ImageFilter

from batchcap.source.digest import (
    DigestSet,
    NearIndex,
    NearKey,
    content_digest,
    hamming,
    near_key,
)


def photo(seed: int, size: tuple[int, int] = (320, 240)) -> Image.Image:
    """A smooth random colour field: detail at every scale, like a photo."""
    rng = random.Random(seed)
    grid = Image.new("RGB", (6, 6))
    grid.putdata([tuple(rng.randrange(256) for _ in range(3)) for _ in range(36)])
    return grid.resize(size, Image.Resampling.BICUBIC).filter(ImageFilter.GaussianBlur(2))


def encode(im: Image.Image, fmt: str = "JPEG", **kwargs: object) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **kwargs)
    return buf.getvalue()


def test_content_digest_is_exact() -> None:
    a = encode(photo(1))
    assert content_digest(a) == content_digest(bytes(a))
    assert len(content_digest(a)) == 16
    assert content_digest(a) != content_digest(a[:-1] + bytes([a[-1] ^ 1]))


def test_digest_set_counts_copies_and_grows() -> None:
    s = DigestSet()
    digests = [content_digest(str(i).encode()) for i in range(5000)]
    assert all(s.add(d) for d in digests)
    assert not any(s.add(d) for d in digests[::7])
    assert len(s) == 5000
    assert digests[4999] in s
    assert content_digest(b"other") not in s
    assert s.nbytes <= 5000 * 32


def test_digest_set_zero_prefix_is_stored() -> None:
    s = DigestSet()
    assert s.add(bytes(16))
    assert not s.add(bytes(16))
    assert bytes(16) in s


@pytest.mark.parametrize(
    "change",
    [
        lambda im: encode(im.resize((160, 120), Image.Resampling.LANCZOS), quality=90),
        lambda im: encode(im.resize((640, 480), Image.Resampling.LANCZOS), quality=90),
        lambda im: encode(im, quality=50),
        lambda im: encode(im, quality=95),
        lambda im: encode(im, "PNG"),
        lambda im: encode(im, "WEBP", quality=80),
    ],
    ids=["half", "double", "jpeg50", "jpeg95", "png", "webp"],
)
def test_resized_and_resaved_copies_are_near(change) -> None:
    for seed in range(10):
        im = photo(seed)
        original = near_key(encode(im, quality=90))
        copy = near_key(change(im))
        assert original is not None
        assert copy is not None
        assert original.near(copy), (seed, hamming(original.dhash, copy.dhash))


def test_distinct_images_are_not_near() -> None:
    keys = [near_key(encode(photo(seed))) for seed in range(40)]
    assert all(k is not None for k in keys)
    assert not any(a.near(b) for i, a in enumerate(keys) for b in keys[i + 1 :])  # type: ignore[union-attr]


def test_flat_images_get_no_near_key_so_colours_never_merge() -> None:
    red = encode(Image.new("RGB", (200, 200), (220, 30, 30)))
    green = encode(Image.new("RGB", (200, 200), (30, 200, 30)))
    assert near_key(red) is None
    assert near_key(green) is None


def test_same_structure_other_colour_is_not_near() -> None:
    im = photo(3)
    tinted = Image.merge("RGB", [im.getchannel(c) for c in "BGR"])  # channels swapped: same greys differ
    a, b = near_key(encode(im)), near_key(encode(tinted))
    assert a is not None
    assert b is not None
    assert not a.near(b)


def test_undecodable_bytes_have_no_near_key() -> None:
    assert near_key(b"not an image") is None
    assert near_key(encode(photo(1))[:200]) is None


def test_near_index_finds_the_first_near_copy() -> None:
    idx = NearIndex()
    im = photo(7)
    k1 = near_key(encode(im, quality=90))
    k2 = near_key(encode(im.resize((160, 120)), quality=70))
    k3 = near_key(encode(photo(8)))
    assert k1
    assert k2
    assert k3
    assert idx.original(k1, "a.jpg") is None
    assert idx.original(k2, "a_small.jpg") == "a.jpg"
    assert idx.original(k3, "b.jpg") is None
    assert len(idx) == 2


def test_near_index_band_lookup_finds_every_hash_within_the_distance() -> None:
    rng = random.Random(0)
    idx = NearIndex(distance=4)
    base = NearKey(rng.getrandbits(64), (100, 100, 100))
    assert idx.original(base, "base") is None
    for _ in range(200):
        bits = rng.sample(range(64), rng.randint(0, 4))
        flipped = base.dhash
        for b in bits:
            flipped ^= 1 << b
        assert idx.original(NearKey(flipped, (100, 100, 100)), "x") == "base"
    far = base.dhash ^ 0b11111  # 5 bits
    assert idx.original(NearKey(far, (100, 100, 100)), "far") is None


def test_near_index_distance_is_checked() -> None:
    with pytest.raises(ValueError, match="distance"):
        NearIndex(distance=9)
