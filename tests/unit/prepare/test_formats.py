"""HEIC, HEIF and AVIF are scanned and sniffed like the other formats (issue 8: they were not even scanned)."""

from __future__ import annotations

from pathlib import Path

import pytest

from batchcap.errors import InputError
from batchcap.source.read import MIME_TYPES, check, sniff
from batchcap.source.scan import scan


def test_heic_and_avif_are_sniffed_and_checked(corpus: dict[str, bytes]) -> None:
    assert check(corpus["iphone.heic"]) == "image/heic"
    assert check(corpus["photo.avif"]) == "image/avif"
    assert {"image/heic", "image/heif", "image/avif"} <= MIME_TYPES


@pytest.mark.parametrize(
    ("brands", "mime"),
    [
        (b"mif1\0\0\0\0mif1heic", "image/heic"),
        (b"mif1\0\0\0\0mif1avif", "image/avif"),
        (b"msf1\0\0\0\0msf1", "image/heif"),
        (b"heix\0\0\0\0", "image/heic"),
        (b"avis\0\0\0\0", "image/avif"),
        (b"isom\0\0\0\0isomiso2", None),  # an MP4 video is not an image
    ],
)
def test_ftyp_brands(brands: bytes, mime: str | None) -> None:
    box = (8 + len(brands)).to_bytes(4, "big") + b"ftyp" + brands
    assert sniff(box + b"\0\0\0\x08mdat") == mime


def test_a_truncated_heic_is_refused(corpus: dict[str, bytes]) -> None:
    data = corpus["iphone.heic"]
    with pytest.raises(InputError, match="truncated HEIC"):
        check(data[: len(data) // 2])


def test_scan_finds_heic_heif_avif_and_odd_names(corpus_paths: dict[str, Path]) -> None:
    root = corpus_paths["iphone.heic"].parent
    found = {job.path for job in scan(root)}
    assert {"iphone.heic", "photo.avif", "phone 2 (copy) é.JPG"} <= found
