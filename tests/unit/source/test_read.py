"""images: type from magic bytes, a reason for every refusal, size limits that never read the file."""

from __future__ import annotations

import errno
import io
import os
from pathlib import Path

import pytest
from PIL import Image

from batchcap.errors import InputError
from batchcap.models import ImageJob, LoadedImage
from batchcap.source.read import MB, check, load, load_batch, sniff


def encode(fmt: str, size: tuple[int, int] = (16, 12), **save: object) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, (200, 30, 90)).save(buf, fmt, **save)
    return buf.getvalue()


SAMPLES = {
    "image/jpeg": encode("JPEG"),
    "image/png": encode("PNG"),
    "image/gif": encode("GIF"),
    "image/webp": encode("WEBP"),
    "image/bmp": encode("BMP"),
    "image/tiff": encode("TIFF"),
}


def job_for(path: Path, size: int | None = None) -> ImageJob:
    return ImageJob(path=path.name, abspath=str(path), size=path.stat().st_size if size is None else size)


@pytest.mark.parametrize("mime", sorted(SAMPLES))
def test_sniff_and_check_accept_each_format(mime: str) -> None:
    assert sniff(SAMPLES[mime]) == mime
    assert check(SAMPLES[mime]) == mime


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"hello world",
        b"<html><body>",
        b"BM not a bitmap, only text",
        b"RIFF\x10\x00\x00\x00WAVEfmt ",
        b"\x00\x00\x00\x18ftypmp42",
    ],
)
def test_sniff_rejects_non_images(data: bytes) -> None:
    assert sniff(data) is None


def test_empty_file() -> None:
    with pytest.raises(InputError, match=r"^empty file$"):
        check(b"")


def test_not_an_image_shows_a_short_safe_prefix() -> None:
    with pytest.raises(InputError) as info:
        check(b"<!DOCTYPE html>\x00\xff<body>" + b"x" * 1000)
    assert str(info.value) == "not an image (starts with b'<!DOCTYPE ht')"


def test_truncated_jpeg() -> None:
    jpeg = SAMPLES["image/jpeg"]
    with pytest.raises(InputError, match=r"^truncated JPEG \(no end-of-image marker\)$"):
        check(jpeg[: len(jpeg) // 2 + 50])


def test_jpeg_zero_padded_after_truncation_is_still_truncated() -> None:
    jpeg = SAMPLES["image/jpeg"]
    with pytest.raises(InputError, match="truncated JPEG"):
        check(jpeg[: len(jpeg) - 20] + b"\x00" * 20)


def test_jpeg_with_bytes_after_the_end_marker_is_accepted() -> None:
    jpeg = SAMPLES["image/jpeg"]
    assert check(jpeg + b"\x00" * 512) == "image/jpeg"  # sector padding
    assert check(jpeg + b"\x00\x00\x00\x18ftypmp42" + b"v" * 4000) == "image/jpeg"  # a Motion Photo video


def test_jpeg_thumbnail_end_marker_does_not_hide_truncation() -> None:
    # An EXIF-like APP1 segment holding a complete thumbnail (with its own FF D9) before the scan.
    thumb = SAMPLES["image/jpeg"]
    app1 = b"\xff\xe1" + (len(thumb) + 2).to_bytes(2, "big") + thumb
    jpeg = SAMPLES["image/jpeg"]
    full = jpeg[:2] + app1 + jpeg[2:]
    assert check(full) == "image/jpeg"
    with pytest.raises(InputError, match="truncated JPEG"):
        check(full[: len(full) - 100])


def test_truncated_png_and_png_with_trailing_bytes() -> None:
    png = SAMPLES["image/png"]
    with pytest.raises(InputError, match=r"^truncated PNG \(no IEND chunk\)$"):
        check(png[:-12])
    assert check(png + b"\x00" * 100) == "image/png"


def test_gif_without_trailer() -> None:
    gif = SAMPLES["image/gif"]
    with pytest.raises(InputError, match=r"^truncated GIF \(no 0x3B trailer\)$"):
        check(gif[:-1])
    assert check(gif + b"\x00" * 64) == "image/gif"  # NUL padding after the trailer


def test_webp_riff_size_beyond_the_data() -> None:
    webp = SAMPLES["image/webp"]
    with pytest.raises(
        InputError, match=rf"^truncated WebP \(RIFF header says {len(webp)} bytes, file has 40\)$"
    ):
        check(webp[:40])


def test_truncated_bmp_and_tiff() -> None:
    with pytest.raises(InputError, match="truncated BMP"):
        check(SAMPLES["image/bmp"][:40])
    tiff = b"II*\x00" + (10_000).to_bytes(4, "little") + b"\x00" * 100
    with pytest.raises(InputError, match=r"truncated TIFF \(first directory at byte 10000"):
        check(tiff)


def test_extension_is_ignored(tmp_path: Path) -> None:
    p = tmp_path / "photo.jpg"
    p.write_bytes(SAMPLES["image/png"])
    assert load(job_for(p), max_bytes=MB).mime == "image/png"


def test_load_returns_bytes_and_mime(tmp_path: Path) -> None:
    p = tmp_path / "a.webp"
    p.write_bytes(SAMPLES["image/webp"])
    loaded = load(job_for(p), max_bytes=MB)
    assert loaded == LoadedImage(job=job_for(p), data=SAMPLES["image/webp"], mime="image/webp")


def test_size_limit_refuses_without_opening(tmp_path: Path) -> None:
    # The file does not exist: reaching open() would report "vanished" instead.
    job = ImageJob(path="big.jpg", abspath=str(tmp_path / "big.jpg"), size=int(312.4 * MB))
    with pytest.raises(InputError) as info:
        load(job, max_bytes=20 * MB)
    assert str(info.value) == "file is 312.4 MB, over the 20.0 MB limit (raise --max-image-mb)"


def test_file_that_grew_past_the_limit_since_the_scan(tmp_path: Path) -> None:
    p = tmp_path / "growing.png"
    p.write_bytes(SAMPLES["image/png"] + b"\x00" * 3 * MB)
    with pytest.raises(InputError, match=r"^file is at least 2\.\d MB, over the 2\.0 MB limit"):
        load(job_for(p, size=100), max_bytes=2 * MB)


def test_file_that_grew_within_the_limit_is_read_whole(tmp_path: Path) -> None:
    p = tmp_path / "g.png"
    p.write_bytes(SAMPLES["image/png"])
    assert load(job_for(p, size=10), max_bytes=MB).data == SAMPLES["image/png"]


def test_vanished_file_and_directory(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"^cannot read: file vanished since the scan$"):
        load(ImageJob("gone.jpg", str(tmp_path / "gone.jpg"), 10), max_bytes=MB)
    (tmp_path / "d.jpg").mkdir()
    with pytest.raises(InputError, match=r"^cannot read: is a directory$"):
        load(ImageJob("d.jpg", str(tmp_path / "d.jpg"), 10), max_bytes=MB)


def test_permission_denied(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    p = tmp_path / "secret.png"
    p.write_bytes(SAMPLES["image/png"])
    p.chmod(0)
    if os.access(p, os.R_OK):  # root reads anyway: make open() refuse as it would for a user

        def refuse(path: str, flags: int) -> int:
            raise PermissionError(errno.EACCES, "Permission denied", path)

        monkeypatch.setattr("batchcap.source.read.os.open", refuse)
    with pytest.raises(InputError, match=r"^cannot read: permission denied$"):
        load(job_for(p), max_bytes=MB)


def test_io_error_keeps_the_system_reason(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    p = tmp_path / "a.png"
    p.write_bytes(SAMPLES["image/png"])

    def failing_read(fd: int, n: int) -> bytes:
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    monkeypatch.setattr("batchcap.source.read.os.read", failing_read)
    with pytest.raises(InputError, match=r"^cannot read: input/output error$"):
        load(job_for(p), max_bytes=MB)


def test_load_batch_keeps_order_and_turns_failures_into_pairs(tmp_path: Path) -> None:
    (tmp_path / "ok.png").write_bytes(SAMPLES["image/png"])
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "text.gif").write_bytes(b"GIF? no, a text file")
    (tmp_path / "ok.jpg").write_bytes(SAMPLES["image/jpeg"])
    jobs = [job_for(tmp_path / n) for n in ("ok.png", "empty.jpg", "text.gif", "ok.jpg")]
    jobs.insert(2, ImageJob("gone.png", str(tmp_path / "gone.png"), 5))
    out = load_batch(jobs, max_bytes=MB)
    assert [x.job if isinstance(x, LoadedImage) else x[0] for x in out] == jobs
    assert [x.mime if isinstance(x, LoadedImage) else str(x[1]) for x in out] == [
        "image/png",
        "empty file",
        "cannot read: file vanished since the scan",
        "not an image (starts with b'GIF? no, a t')",
        "image/jpeg",
    ]
