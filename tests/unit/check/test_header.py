"""``check``'s quick header parse agrees with Pillow, and falls back to it (or reports) when it cannot."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from batchcap.check.inventory import header_size
from batchcap.source.read import sniff


@pytest.mark.parametrize(
    ("fmt", "mode", "kwargs"),
    [
        ("JPEG", "RGB", {}),
        ("JPEG", "RGB", {"progressive": True}),
        ("JPEG", "L", {}),
        ("PNG", "RGBA", {}),
        ("GIF", "P", {}),
        ("WEBP", "RGB", {"quality": 80}),
        ("WEBP", "RGBA", {"lossless": True}),
        ("WEBP", "RGB", {"exif": b"Exif\x00\x00II*\x00\x08\x00\x00\x00\x00\x00"}),
        ("BMP", "RGB", {}),
        ("TIFF", "RGB", {}),
    ],
)
def test_header_size_matches_pillow(fmt: str, mode: str, kwargs: dict[str, object]) -> None:
    buf = io.BytesIO()
    Image.new(mode, (333, 217)).save(buf, fmt, **kwargs)
    data = buf.getvalue()
    mime = sniff(data)
    assert mime is not None
    assert header_size(data, mime) == ((333, 217), None)


def test_unreadable_header_is_reported_not_raised() -> None:
    data = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64 + b"\x00\x00\x00\x00IEND\xaeB`\x82"
    dims, reason = header_size(data, "image/png")
    assert dims is None
    assert reason
