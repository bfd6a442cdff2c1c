"""Find images that are the same picture, so each is captioned (and paid for) once.

Exact copies: the BLAKE3 of the file's bytes, cut to 16 bytes. BLAKE3 because it is the fastest
collision-resistant hash we can install (the ``blake3`` wheels, from the BLAKE3 team), and since issue 16 every
file read is hashed (each record carries its content digest), so the hash is on every image's path. Measured on
the dev box (2 vCPU VM, AVX-512 and SHA extensions, one core, best of 5, us per file)::

                   48 KB    2 MB     rate
    blake3          11.2    315     4.3-6.4 GB/s   <- used here
    sha256          26.9   1109     1.8 GB/s       (OpenSSL with SHA extensions; used before 2026-12-03)
    sha1            21.5    885     2.2 GB/s       (broken: two different files could be made to agree)
    blake2b-16      44.8   1823     1.1 GB/s
    md5             55.5   2307     0.9 GB/s
    crc32            8.2    340     5.9 GB/s       (32 bits: not a content key)

Hashing a 48 KB file costs less than reading it, and a caption request costs ~10-100x more. Both hashers drop
the GIL for large buffers, so readers in threads hash in parallel. A journal written with the SHA-256 digests
keeps its answers (they are kept by path and fingerprint); only a copy of one of its images found by content
under another name is asked again instead of copied.

Near copies (``--dedupe near``, off by default): a 64-bit difference hash (dHash) of a 9x8 greyscale
thumbnail, plus the image's mean colour, since greyscale alone cannot tell a red square from a green one.
Two images are near copies when their hashes differ in at most :data:`NEAR_DISTANCE` bits and their mean
colours by at most :data:`COLOUR_TOLERANCE` per channel. Images with almost no detail (flat colours, soft
gradients: the thumbnail's neighbouring pixels differ by less than :data:`MIN_DETAIL` on average) get no
near key at all: their hash bits are decided by noise, so they are only ever matched exactly. Measured on
resized / re-saved copies against distinct images: see ``benchmarks/bench_dedupe.py``.

Memory is bounded and stated, for runs of 10M images:

* :class:`DigestSet` (``check``: "is this content new?") keeps 8 bytes of each digest in an open-addressing
  table: 16-32 bytes per distinct image (160-320 MB for 10M); two different files share 8 bytes with
  probability ~n^2 / 2^65 (3e-6 for 10M), and then ``check`` would count one copy too many.
* ``run`` keeps its own table of originals (``batchcap/run/dedupe.py``: digest -> the first path and its
  record, bounded, hashing only sizes seen twice).
* :class:`NearIndex` keeps (hash, colour, path) per image with detail, looked up through 5 bands of the
  hash (pigeonhole: two hashes within 4 bits agree on at least one band), capped the same way.
"""

from __future__ import annotations

import io
from array import array
from dataclasses import dataclass

from blake3 import blake3
from PIL import Image, UnidentifiedImageError

__all__ = [
    "COLOUR_TOLERANCE",
    "MIN_DETAIL",
    "NEAR_DISTANCE",
    "DigestSet",
    "NearIndex",
    "NearKey",
    "content_digest",
    "hamming",
    "near_key",
]

#: Most differing dHash bits for two near copies (measured: re-saved and resized copies differ by 0-3).
NEAR_DISTANCE = 4
#: Most difference in mean colour, per 0-255 channel, for two near copies.
COLOUR_TOLERANCE = 12
#: Least mean step between neighbouring thumbnail pixels (0-255) for an image to get a near key.
MIN_DETAIL = 4.0

_DIGEST_BYTES = 16


def content_digest(data: bytes) -> bytes:
    """16 bytes identifying ``data`` exactly (BLAKE3's extendable output, 16 bytes long)."""
    return blake3(data).digest(_DIGEST_BYTES)


def hamming(a: int, b: int) -> int:
    """Differing bits of two 64-bit hashes."""
    return (a ^ b).bit_count()


class DigestSet:
    """A set of 64-bit digest prefixes in one flat ``array``: 16-32 bytes per member, no object per member.

    Open addressing with linear probing; grows by doubling at 2/3 full. 0 marks an empty slot, so a digest
    whose prefix is 0 is stored as 1 (one more chance in 2^64 of a false "seen").
    """

    __slots__ = ("_mask", "_slots", "count")

    def __init__(self, capacity: int = 1024) -> None:
        size = 1024
        while size * 2 < capacity * 3:
            size *= 2
        self._slots = array("Q", bytes(8 * size))
        self._mask = size - 1
        self.count = 0

    def add(self, digest: bytes) -> bool:
        """Add ``digest``; True if it was new."""
        key = int.from_bytes(digest[:8], "little") or 1
        slots, mask = self._slots, self._mask
        i = (key * 0x9E3779B97F4A7C15 >> 11) & mask
        while True:
            v = slots[i]
            if v == 0:
                break
            if v == key:
                return False
            i = (i + 1) & mask
        slots[i] = key
        self.count += 1
        if self.count * 3 > len(slots) * 2:
            self._grow()
        return True

    def __contains__(self, digest: object) -> bool:
        if not isinstance(digest, bytes):
            return False
        key = int.from_bytes(digest[:8], "little") or 1
        slots, mask = self._slots, self._mask
        i = (key * 0x9E3779B97F4A7C15 >> 11) & mask
        while (v := slots[i]) != 0:
            if v == key:
                return True
            i = (i + 1) & mask
        return False

    def __len__(self) -> int:
        return self.count

    @property
    def nbytes(self) -> int:
        return len(self._slots) * 8

    def _grow(self) -> None:
        old = self._slots
        self._slots = array("Q", bytes(16 * len(old)))
        self._mask = len(self._slots) - 1
        slots, mask = self._slots, self._mask
        for key in old:
            if key:
                i = (key * 0x9E3779B97F4A7C15 >> 11) & mask
                while slots[i] != 0:
                    i = (i + 1) & mask
                slots[i] = key

    def __repr__(self) -> str:
        return f"<DigestSet members={self.count} slots={len(self._slots)} {self.nbytes / 1e6:.1f} MB>"


@dataclass(frozen=True, slots=True)
class NearKey:
    """What near-copy detection keeps of an image: its dHash and mean colour."""

    dhash: int
    colour: tuple[int, int, int]

    def near(self, other: NearKey, *, distance: int = NEAR_DISTANCE, tolerance: int = COLOUR_TOLERANCE) -> bool:
        if hamming(self.dhash, other.dhash) > distance:
            return False
        return all(abs(a - b) <= tolerance for a, b in zip(self.colour, other.colour, strict=True))


def near_key(data: bytes, *, min_detail: float = MIN_DETAIL) -> NearKey | None:
    """The near-copy key of an encoded image, or None (not decodable, or too little detail to judge).

    Decodes at reduced size where the format allows (JPEG DCT scaling via ``draft``): ~0.3 ms per file.
    """
    try:
        with Image.open(io.BytesIO(data)) as im:
            im.draft("RGB", (64, 64))
            rgb = im.convert("RGB")
            small = rgb.resize((9, 8), Image.Resampling.BOX)
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError):
        return None
    grey = small.convert("L").tobytes()
    bits = 0
    steps = 0
    for r in range(8):
        row = grey[r * 9 : r * 9 + 9]
        for c in range(8):
            bits = (bits << 1) | (row[c] < row[c + 1])
            steps += abs(row[c] - row[c + 1])
    if steps / 64 < min_detail:
        return None
    px = small.tobytes()
    n = len(px) // 3
    colour = (sum(px[0::3]) // n, sum(px[1::3]) // n, sum(px[2::3]) // n)
    return NearKey(bits, colour)


#: Band widths of the lookup: 5 bands, so hashes within 4 bits share at least one band exactly.
_BANDS = ((0, 13), (13, 13), (26, 13), (39, 13), (52, 12))


class NearIndex:
    """Near-copy lookup over up to ``max_entries`` images (multi-index hashing on 5 bands of the dHash).

    ``distance`` may be at most 4: with 5 bands, two hashes within 4 bits agree exactly on some band.
    """

    __slots__ = ("_bands", "_keys", "_paths", "distance", "max_entries", "overflow", "tolerance")

    def __init__(
        self, *, distance: int = NEAR_DISTANCE, tolerance: int = COLOUR_TOLERANCE, max_entries: int = 1_000_000
    ) -> None:
        if not 0 <= distance <= len(_BANDS) - 1:
            raise ValueError(f"distance must be within 0..{len(_BANDS) - 1} (got {distance})")
        self.distance = distance
        self.tolerance = tolerance
        self.max_entries = max_entries
        self.overflow = 0
        self._keys: list[NearKey] = []
        self._paths: list[str] = []
        self._bands: list[dict[int, list[int]]] = [{} for _ in _BANDS]

    def original(self, key: NearKey, path: str) -> str | None:
        """The first path near ``key``, or None (then ``path`` is remembered while there is room)."""
        seen: set[int] = set()
        for (shift, width), band in zip(_BANDS, self._bands, strict=True):
            for i in band.get((key.dhash >> shift) & ((1 << width) - 1), ()):
                if i not in seen:
                    seen.add(i)
                    if key.near(self._keys[i], distance=self.distance, tolerance=self.tolerance):
                        return self._paths[i]
        if len(self._keys) >= self.max_entries:
            self.overflow += 1
            return None
        i = len(self._keys)
        self._keys.append(key)
        self._paths.append(path)
        for (shift, width), band in zip(_BANDS, self._bands, strict=True):
            band.setdefault((key.dhash >> shift) & ((1 << width) - 1), []).append(i)
        return None

    def __len__(self) -> int:
        return len(self._keys)

    def __repr__(self) -> str:
        return f"<NearIndex images={len(self._keys)}/{self.max_entries} distance={self.distance}>"
