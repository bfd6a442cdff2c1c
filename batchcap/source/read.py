"""Read image files and refuse the ones a service would reject anyway.

Every refusal is an ``InputError`` whose message says why (``empty file``, ``truncated
JPEG (no end-of-image marker)``, ``file is 312.4 MB, over the 20.0 MB limit``), so the
journal records a reason a person can act on instead of a 400 from the service.

``check`` is structural, not a decode: magic bytes for the type, an end marker or a
header length for completeness. It costs 0.2-0.6 us for a well-formed file of any size
(a 2.6 MB JPEG included), so it runs on every file of a big folder; only a truncated
JPEG pays a pass over its bytes (~0.5 ms for 2.6 MB).

Reading is plain blocking ``os.open``/``os.read``, one thread hop per *batch*: the
pipeline runs ``load_batch`` via ``anyio.to_thread.run_sync``. Measured on the dev box
(2 vCPU VM, ext4; 5,000 files of 50 KB; median of 7 interleaved rounds, us per file)::

                                              warm cache   cold (fadvise DONTNEED)
    aiofiles, one awaited file at a time          280          437
    aiofiles, 32 files concurrently               158          161
    open().read(), one batch per thread hop        34          180
    Path.read_bytes(), one batch per hop           40          204
    os.open + os.read(size+1) + EOF read           28          171   <- used here
    os.open + os.read(size+1), no EOF read         28          169
    load_batch (the above + check)                 33          194
    load_batch, 2 readers in parallel              30          127

Warm, the batch hop is 5-10x cheaper than aiofiles (3 thread hops per file). Cold, the
disk dominates and parallel readers help, so the pipeline should run 2+ readers. The
read that confirms end-of-file catches a file that grew since the scan (still being
copied in), so it stays; it asks for 1 byte, because os.read allocates what it is asked
for and a 1 MB request was an mmap + munmap per file (10.8 -> 7.7 us per file in
load_batch with the CLI's malloc settings, benchmarks/README.md).
"""

from __future__ import annotations

import errno
import os
from collections.abc import Sequence

from batchcap.errors import InputError, as_value
from batchcap.models import DatasetJob, ImageJob, LoadedImage

__all__ = ["MB", "MIME_TYPES", "check", "load", "load_batch", "sniff"]

#: One "MB" in messages and in ``--max-image-mb`` (binary, as file managers show sizes).
MB = 1024 * 1024

MIME_TYPES = frozenset(
    {"image/jpeg", "image/png", "image/gif", "image/webp", "image/bmp", "image/tiff", "image/heic", "image/heif",
     "image/avif"}
)  # fmt: skip

_JPEG_EOI = b"\xff\xd9"
_PNG_SIG = b"\x89PNG\r\n\x1a\n"
_PNG_END = b"IEND\xaeB`\x82"  # type + CRC of the (always empty) IEND chunk
_PNG_IEND = b"\x00\x00\x00\x00IEND"  # length 0 + type: 8 bytes never met by chance
_TIFF = (b"II*\x00", b"MM\x00*")
_BIGTIFF = (b"II+\x00", b"MM\x00+")
# Sizes of the BMP info headers that exist (core, v1..v5 and OS/2 variants); a bare "BM" is too weak.
_BMP_DIB_SIZES = frozenset({12, 16, 40, 52, 56, 64, 108, 124})
# ISO-BMFF ``ftyp`` brands (major or compatible) of still HEIF images; AVIF is HEIF with the AV1 codec.
_HEIC_BRANDS = frozenset({b"heic", b"heix", b"hevc", b"heim", b"heis"})
_HEIF_BRANDS = frozenset({b"mif1", b"msf1"})
_AVIF_BRANDS = frozenset({b"avif", b"avis"})
_OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_CLOEXEC", 0)


def sniff(data: bytes) -> str | None:
    """The MIME type the magic bytes announce, or None; the file name is never consulted."""
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data.startswith(_PNG_SIG):
        return "image/png"
    if data.startswith((b"GIF87a", b"GIF89a")):
        return "image/gif"
    if data.startswith(b"RIFF") and data[8:12] == b"WEBP":
        return "image/webp"
    if data.startswith(_TIFF + _BIGTIFF):
        return "image/tiff"
    if data.startswith(b"BM") and len(data) >= 18 and _u32le(data, 14) in _BMP_DIB_SIZES:
        return "image/bmp"
    if data[4:8] == b"ftyp":
        return _bmff_mime(data)
    return None


def _bmff_mime(data: bytes) -> str | None:
    """HEIC/HEIF/AVIF by the ``ftyp`` box: the major brand, else the compatible ones (``mif1`` + ``avif``)."""
    end = min(int.from_bytes(data[:4], "big"), len(data), 256)
    brands = [data[8:12]] + [data[i : i + 4] for i in range(16, end - 3, 4)]
    for brand in brands:
        if brand in _AVIF_BRANDS:
            return "image/avif"
        if brand in _HEIC_BRANDS:
            return "image/heic"
    return "image/heif" if any(b in _HEIF_BRANDS for b in brands) else None


def check(data: bytes) -> str:
    """Return the MIME type, or raise ``InputError`` for an empty, foreign or truncated file.

    Bytes *after* a complete image are accepted (zero padding, camera trailers, the video
    of a Motion Photo): decoders ignore them. A missing end is refused, because services
    answer a half image with a 400 or, worse, caption the grey half. Per format:

    * JPEG: ends with FF D9; otherwise an FF D9 must follow the first start-of-scan
      (entropy-coded data cannot contain FF D9, an EXIF thumbnail before it can).
    * PNG: an IEND chunk, at the end or anywhere after the signature.
    * GIF: the 0x3B trailer as the last byte that is not NUL padding.
    * WebP: the RIFF size must fit in the data. BMP/TIFF: the pixel data / first
      directory offset must lie inside the data.
    """
    if not data:
        raise InputError("empty file")
    mime = sniff(data)
    if mime is None:
        raise InputError(f"not an image (starts with {data[:12]!r})")
    n = len(data)
    if mime == "image/jpeg":
        if not data.endswith(_JPEG_EOI) and not _jpeg_has_eoi(data):
            raise InputError("truncated JPEG (no end-of-image marker)")
    elif mime == "image/png":
        if not data.endswith(_PNG_END) and data.rfind(_PNG_IEND, 8) < 0:
            raise InputError("truncated PNG (no IEND chunk)")
    elif mime == "image/gif":
        if not data.endswith(b";") and not data[-4096:].rstrip(b"\x00").endswith(b";"):
            raise InputError("truncated GIF (no 0x3B trailer)")
    elif mime == "image/webp":
        want = _u32le(data, 4) + 8  # sniff saw 12 bytes
        if want > n:
            raise InputError(f"truncated WebP (RIFF header says {want} bytes, file has {n})")
    elif mime == "image/bmp":
        offset = _u32le(data, 10)
        if offset >= n:
            raise InputError(f"truncated BMP (pixels start at byte {offset}, file has {n})")
    elif mime in ("image/heic", "image/heif", "image/avif"):
        end = _bmff_end(data)
        if end > n:
            raise InputError(f"truncated {mime[6:].upper()} (boxes need {end} bytes, file has {n})")
    elif mime == "image/tiff" and data.startswith(_TIFF):
        offset = int.from_bytes(data[4:8], "little" if data[0] == 0x49 else "big")
        if n < 8 or offset + 2 > n:
            raise InputError(f"truncated TIFF (first directory at byte {offset}, file has {n})")
    return mime


def load(job: ImageJob, *, max_bytes: int) -> LoadedImage:
    """Read one image and check it; every failure is an ``InputError`` with a readable reason.

    A dataset job carries its bytes (``job.data``), a remote folder image is read through fsspec, a local file
    with ``os.read``. The scan-time size is checked first, so a 5 GB file is refused without reading it;
    the read itself stops past ``max_bytes`` in case the file grew since the scan.
    """
    if job.size > max_bytes:
        raise InputError(_too_big(job.size, max_bytes))
    if isinstance(job, DatasetJob) and job.data is not None:  # its bytes came with it; the job lets go of them
        return LoadedImage(job=DatasetJob(job.path, job.abspath, job.size, None, job.context), data=job.data,
                           mime=check(job.data))
    if "://" in job.abspath:  # a folder image at an fsspec URL
        from batchcap.source.location import read_url

        data = read_url(job.abspath, max_bytes)
        if len(data) > max_bytes:
            raise InputError(_too_big(len(data), max_bytes, grew=True))
        return LoadedImage(job=job, data=data, mime=check(data))
    try:
        fd = os.open(job.abspath, _OPEN_FLAGS)
    except OSError as exc:
        raise InputError(_read_reason(exc)) from None
    try:
        data = _read_all(fd, job.size, max_bytes)
    except OSError as exc:
        raise InputError(_read_reason(exc)) from None
    finally:
        os.close(fd)
    return LoadedImage(job=job, data=data, mime=check(data))


def load_batch(
    jobs: Sequence[ImageJob], *, max_bytes: int
) -> list[LoadedImage | tuple[ImageJob, InputError]]:
    """``load`` each job, in order; a failure becomes ``(job, error)`` instead of stopping the batch.

    Blocking on purpose: call it once per batch in a worker thread, not once per file.
    """
    out: list[LoadedImage | tuple[ImageJob, InputError]] = []
    for job in jobs:
        try:
            out.append(load(job, max_bytes=max_bytes))
        except InputError as exc:
            out.append((job, as_value(exc)))
    return out


def _read_all(fd: int, size_hint: int, max_bytes: int) -> bytes:
    """Read to end of file in (usually) one call sized by the scan, plus one to confirm EOF."""
    want = min(size_hint, max_bytes) + 1
    first = os.read(fd, want)
    if not first:
        return first
    if len(first) > max_bytes:
        raise InputError(_too_big(len(first), max_bytes, grew=True))
    # End of file is confirmed by a 1-byte read: os.read allocates the size it is asked for, and the 1 MB it used
    # to ask for here was an mmap + munmap per file under tune_malloc's 1 MB mmap threshold (~2.4 us per file,
    # benchmarks/README.md). A file that grew since the scan is read on exactly as before: the rest of a
    # ``max(want, 1 MB)`` chunk, then 1 MB chunks.
    more = os.read(fd, 1)
    if not more:
        return first
    more += os.read(fd, max(want, 1 << 20) - 1)
    chunks = [first, more]
    total = len(first) + len(more)
    while True:
        if total > max_bytes:
            raise InputError(_too_big(total, max_bytes, grew=True))
        more = os.read(fd, max(want, 1 << 20))
        if not more:
            break
        chunks.append(more)
        total += len(more)
    return b"".join(chunks)


def _too_big(size: int, max_bytes: int, *, grew: bool = False) -> str:
    at_least = "at least " if grew else ""
    return (
        f"file is {at_least}{size / MB:.1f} MB, over the {max_bytes / MB:.1f} MB limit (raise --max-image-mb)"
    )


def _read_reason(exc: OSError) -> str:
    """Turn an OS error into the short reason the journal keeps."""
    code = exc.errno
    if code in (errno.EACCES, errno.EPERM):
        return "cannot read: permission denied"
    if code == errno.ENOENT:
        return "cannot read: file vanished since the scan"
    if code == errno.EISDIR:
        return "cannot read: is a directory"
    return f"cannot read: {(exc.strerror or str(exc)).lower()}"


def _u32le(data: bytes, at: int) -> int:
    return int.from_bytes(data[at : at + 4], "little")


def _bmff_end(data: bytes) -> int:
    """Where the last top-level ISO-BMFF box ends (a handful of boxes: ftyp, meta, mdat)."""
    i, n = 0, len(data)
    while i + 8 <= n:
        size = int.from_bytes(data[i : i + 4], "big")
        if size == 1 and i + 16 <= n:  # 64-bit size
            size = int.from_bytes(data[i + 8 : i + 16], "big")
        elif size == 0:  # to the end of the file
            return n
        if size < 8:
            return n + 1  # malformed: refuse as truncated rather than loop
        i += size
    return i


def _jpeg_has_eoi(data: bytes) -> bool:
    """Whether an end-of-image marker follows the first start-of-scan (slow path, O(size))."""
    i, n = 2, len(data)
    while i + 4 <= n:
        if data[i] != 0xFF:  # junk between segments: libjpeg skips to the next marker, so do we
            i = data.find(b"\xff", i)
            if i < 0:
                return False
            continue
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
        elif marker == 0xD9:
            return True
        elif marker in (0x01, 0xD8) or 0xD0 <= marker <= 0xD7:  # markers without a length
            i += 2
        elif marker == 0xDA:
            scan_data = i + 2 + int.from_bytes(data[i + 2 : i + 4], "big")
            # From the end: padding is crossed in microseconds; only a truncated file costs a full pass.
            return data.rfind(_JPEG_EOI, scan_data) >= 0
        else:
            i += 2 + int.from_bytes(data[i + 2 : i + 4], "big")
    return False
