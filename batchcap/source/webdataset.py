"""Images out of WebDataset tars, as img2dataset and ``webdataset.TarWriter`` write them.

A tar is read once, front to back (``tarfile`` stream mode: plain, gzip, bzip2 or xz), so it may be a pipe or a
remote file. Consecutive members that share a key form a sample, as WebDataset groups them: the key is the
member's path up to the first dot of its name (``000000042.jpg`` and ``000000042.txt`` -> ``000000042``). Each
image member is one job, whose id is ``TAR/MEMBER`` (``shard-00001.tar/000000042.jpg``: the tar's path relative
to the input, then the member's name in it). The sample's other members (``.txt``, ``.json``, ``.cls``, ...) up
to ``MAX_SIDECAR_BYTES`` are its ``context``, keyed by extension and decoded as UTF-8: what a prompt template may
use. A member that is done (its id is in the journal) or over the size limit is passed over without being kept.
"""

from __future__ import annotations

import re
import tarfile
from collections.abc import Callable, Iterator
from typing import IO

from batchcap.errors import SourceProblem
from batchcap.models import DatasetJob
from batchcap.source.location import image_ext

__all__ = ["MAX_SIDECAR_BYTES", "split_key", "tar_jobs"]

#: A sample's text members larger than this are not context (a prompt is no place for them).
MAX_SIDECAR_BYTES = 64 * 1024
_KEY = re.compile(r"^((?:.*/|)[^./]+)\.([^/]*)$")  # webdataset's base_plus_ext, without a leading-dot key


def split_key(name: str) -> tuple[str, str] | None:
    """``"a/000042.seg.png"`` -> ``("a/000042", "seg.png")``, as WebDataset splits a member name; None: no key."""
    m = _KEY.match(name)
    return (m.group(1), m.group(2)) if m else None


def tar_jobs(
    file: IO[bytes],
    rel: str,
    *,
    done: Callable[[str], bool] | None = None,
    max_bytes: int | None = None,
) -> Iterator[DatasetJob]:
    """The image jobs of one tar, in member order, each with its sample's context once the sample is read.

    Raises ``SourceProblem`` when the tar is damaged or cut short, after the jobs of every image read whole.
    """
    key: str | None = None
    images: list[tuple[str, int, bytes]] = []  # (member name, size, bytes) of the current sample
    context: dict[str, str] = {}
    try:
        with tarfile.open(fileobj=file, mode="r|*", tarinfo=_StrictInfo) as tar:
            for member in tar:
                tar.members.clear()  # type: ignore[attr-defined]  # stream mode keeps every header read: memory
                if not member.isfile():
                    continue
                split = split_key(member.name)
                if split is None:
                    continue
                k, ext = split
                if k != key:
                    yield from _sample(rel, images, context)
                    key, images, context = k, [], {}
                if image_ext(member.name):
                    path = f"{rel}/{member.name}"
                    if done is not None and done(path):
                        continue
                    if max_bytes is not None and member.size > max_bytes:
                        images.append((member.name, member.size, b""))  # refused by size in load, never read
                        continue
                    images.append((member.name, member.size, _read(tar, member)))
                elif member.size <= MAX_SIDECAR_BYTES:
                    context[ext] = _read(tar, member).decode("utf-8", "replace")
            yield from _sample(rel, images, context)
    except (tarfile.TarError, EOFError, OSError, ValueError) as exc:
        yield from _sample(rel, images, context)  # the images read whole before the damage are good
        where = f" after {key}" if key else ""
        raise SourceProblem(f"damaged or truncated tar{where}: {type(exc).__name__}: {exc}"[:300]) from None


def _read(tar: tarfile.TarFile, member: tarfile.TarInfo) -> bytes:
    f = tar.extractfile(member)
    if f is None:
        return b""
    with f:
        data = f.read()
    if len(data) != member.size:
        raise tarfile.ReadError(f"{member.name} is cut short ({len(data)} of {member.size} bytes)")
    return data


class _StrictInfo(tarfile.TarInfo):
    """``tarfile`` ends quietly at a cut or garbled header (as if the archive were over): that is damage here,
    or the rest of the tar would be skipped without a word. A clean end (a zero block) and a tar that ends on a
    member boundary without its end blocks stay the end."""

    @classmethod
    def fromtarfile(cls, tarfile_: tarfile.TarFile) -> _StrictInfo:
        try:
            info = super().fromtarfile(tarfile_)
        except _CUT as exc:
            raise tarfile.ReadError(f"cut short in a member header ({exc})") from None
        except _GARBLED as exc:
            raise tarfile.ReadError(f"damaged member header ({exc})") from None
        return info


#: tarfile's own header errors (public at run time, absent from its type stubs).
_CUT: type[Exception] = vars(tarfile)["TruncatedHeaderError"]
_GARBLED: type[Exception] = vars(tarfile)["InvalidHeaderError"]


def _sample(rel: str, images: list[tuple[str, int, bytes]], context: dict[str, str]) -> Iterator[DatasetJob]:
    ctx = context or None
    for name, size, data in images:
        yield DatasetJob(f"{rel}/{name}", rel, size, data, ctx)
