"""``PrepareSettings``: what the target gets of each image. Pillow-free, so the command line starts without it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from batchcap.settings import check_number, check_whole, parse_bool, parse_float, parse_int, setting

__all__ = ["DEFAULT_MAX_PIXELS", "USEFUL_SIDE", "PrepareSettings", "below_useful_size"]

#: Pillow's ``Image.MAX_IMAGE_PIXELS`` (89,478,485 px: 0.25 GB of 24-bit RGB); written out, not imported, so this
#: module does not load Pillow (tests/unit/prepare checks the two agree).
DEFAULT_MAX_PIXELS: Final = 89_478_485
#: The long side under which a model sees too little of an image: LLaVA-1.5 uses 336 px, BLIP 384, Florence-2
#: 768 (protocol.md section 9). A limit that sends images smaller than this is worth a warning.
USEFUL_SIDE: Final = 336


def below_useful_size(original: tuple[int, int], sent: tuple[int, int]) -> bool:
    """Whether preparation made an image smaller than a model can use: its long side as sent is under
    ``USEFUL_SIDE`` and under the original's own (a 64 px icon sent as it is was small already)."""
    return max(sent) < min(USEFUL_SIDE, max(original))


@dataclass(frozen=True, slots=True)
class PrepareSettings:
    """``max_side=0`` sends files as they are; ``max_upload_mb=0`` means no body limit. The upload limit is
    counted as sent (base64 and JSON included) in decimal MB, as TGI counts its ``--payload-limit`` (2 MB)."""

    max_side: int = setting(1024, parse=parse_int)
    jpeg_quality: int = setting(90, parse=parse_int)
    keep_metadata: bool = setting(False, parse=parse_bool)
    max_upload_mb: float = setting(2.0, parse=parse_float)
    max_pixels: int = setting(DEFAULT_MAX_PIXELS, parse=parse_int)

    def __post_init__(self) -> None:
        check_whole(self.max_side, "max_side", minimum=0)
        check_whole(self.jpeg_quality, "jpeg_quality", minimum=1, maximum=100)
        check_number(self.max_upload_mb, "max_upload_mb", at_least=0, hint="0 means no limit")
        check_whole(self.max_pixels, "max_pixels", minimum=1)

    @property
    def max_upload_bytes(self) -> int:
        """The body limit in bytes (0: none)."""
        return round(self.max_upload_mb * 1_000_000)

    @property
    def enabled(self) -> bool:
        """False with ``--max-side 0``: every file is sent as it is."""
        return self.max_side > 0
