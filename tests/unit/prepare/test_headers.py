"""The header fast path says "send as it is" only where Pillow's full decision says so too."""

from __future__ import annotations

from io import BytesIO
from pathlib import Path

import pytest
from PIL import Image

from batchcap.prepare import PrepareSettings
from batchcap.prepare.engine import _can_pass, _open, raw_wire_size
from batchcap.prepare.headers import plain_size


def pillow_says_pass(data: bytes, settings: PrepareSettings) -> bool:
    try:
        im = _open(data)
        return _can_pass(im, im.format or "", data, settings, raw_wire_size)
    except Exception:  # noqa: BLE001  anything Pillow refuses is certainly not "plain"
        return False


def test_plain_web_files_are_recognised(corpus: dict[str, bytes]) -> None:
    assert plain_size(corpus["tiny.jpg"]) == ("image/jpeg", 64, 48)
    assert plain_size(corpus["web_50k.jpg"]) == ("image/jpeg", 640, 480)
    assert plain_size(corpus["palette.png"]) == ("image/png", 800, 600)
    for name in (
        "phone_portrait.jpg",
        "rgba.png",
        "gray16.png",
        "display_p3.jpg",
        "cmyk.jpg",
        "animated.gif",
    ):
        assert plain_size(corpus[name]) is None, name


@pytest.mark.filterwarnings("ignore")
def test_never_plain_where_pillow_would_re_encode(
    corpus: dict[str, bytes],
    pillow_test_images: list[Path],
) -> None:
    settings = PrepareSettings(max_side=100_000, max_upload_mb=0)
    files = list(corpus.values()) + [p.read_bytes() for p in pillow_test_images]
    plain = 0
    for data in files:
        got = plain_size(data)
        if got is not None and max(got[1:]) > 0:
            plain += 1
            assert pillow_says_pass(data, settings) or _truncated(data), got
            im = _open(data)
            assert im.size == got[1:]
    assert plain > 50


def _truncated(data: bytes) -> bool:
    try:
        Image.open(BytesIO(data)).load()
    except Exception:  # noqa: BLE001
        return True
    return False
