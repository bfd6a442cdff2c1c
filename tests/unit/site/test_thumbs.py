"""Thumbnails for every format ``run`` captions (issue 19): HEIC, AVIF, 16-bit PNG, CMYK, RGBA, a phone JPEG."""

from __future__ import annotations

from pathlib import Path

from hubdata import HARD, hard_images
from PIL import Image, ImageStat

from batchcap.site.thumbs import THUMB_PX, make_thumbnails


def test_every_captioned_format_gets_a_preview(tmp_path: Path) -> None:
    images = tmp_path / "images"
    hard_images(images)
    names, stats = make_thumbnails(images, HARD, tmp_path / "thumbs")
    assert stats.failed == 0
    assert set(names) == set(HARD)
    for path, name in names.items():
        with Image.open(tmp_path / "thumbs" / name) as im:
            assert max(im.size) <= THUMB_PX, path
            spread = ImageStat.Stat(im.convert("L")).stddev[0]
            assert spread > 5, f"{path}: a flat thumbnail (16-bit clipped to white?)"
    with Image.open(tmp_path / "thumbs" / names["iphone.heic"]) as im:
        assert im.height > im.width  # the portrait photo stays upright
