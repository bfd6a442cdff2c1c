"""The variables of one image: folder, path, stem, sidecar text, EXIF fields from the file's own bytes."""

from __future__ import annotations

import io
from pathlib import Path

from PIL import Image

from batchcap.models import DatasetJob, ImageJob
from batchcap.tasks.context import SIDECAR_MAX, context_for, exif_fields


def jpeg_with_exif() -> bytes:
    exif = Image.Exif()
    exif[0x0110] = "Pixel 8"
    exif[0x010F] = "Google"
    exif[0x0132] = "2020:01:01 00:00:00"  # DateTime (last edit)
    exif.get_ifd(0x8769)[0x9003] = "2024:05:01 12:00:00"  # DateTimeOriginal (capture) wins
    buf = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buf, "JPEG", exif=exif.tobytes())
    return buf.getvalue()


def test_path_variables(tmp_path: Path) -> None:
    nested = context_for(ImageJob("cat/a b.jpg", str(tmp_path / "cat" / "a b.jpg"), 1))
    assert (nested["folder"], nested["path"], nested["stem"], nested["sidecar"]) == ("cat", "cat/a b.jpg", "a b", "")
    top = context_for(ImageJob("x.png", str(tmp_path / "photos" / "x.png"), 1))
    assert top["folder"] == "photos"  # an image at the top: the input folder's own name


def test_sidecar_is_stripped_capped_and_never_an_error(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_bytes(b"  tags: cat \xff\n")
    job = ImageJob("a.jpg", str(tmp_path / "a.jpg"), 1)
    assert context_for(job, sidecar=True)["sidecar"] == "tags: cat \ufffd"
    (tmp_path / "a.txt").write_bytes(b"x" * (SIDECAR_MAX + 100))
    assert len(context_for(job, sidecar=True)["sidecar"]) == SIDECAR_MAX
    assert context_for(ImageJob("b.jpg", str(tmp_path / "b.jpg"), 1), sidecar=True)["sidecar"] == ""


def test_exif_fields_and_their_absence() -> None:
    assert exif_fields(jpeg_with_exif()) == {"datetime": "2024:05:01 12:00:00", "model": "Pixel 8", "make": "Google"}
    buf = io.BytesIO()
    Image.new("RGB", (4, 4)).save(buf, "PNG")
    assert exif_fields(buf.getvalue()) == {"datetime": "", "model": "", "make": ""}
    assert exif_fields(b"not an image") == {"datetime": "", "model": "", "make": ""}


def test_builtins_win_over_a_jobs_own_variables(tmp_path: Path) -> None:
    job = DatasetJob("cat/a.jpg", str(tmp_path / "a.jpg"), 1, None, {"folder": "spoofed", "label": "tabby"})
    ctx = context_for(job)
    assert (ctx["folder"], ctx["label"]) == ("cat", "tabby")
