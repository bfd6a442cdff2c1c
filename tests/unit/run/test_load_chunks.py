"""A reader hop reads at most LOAD_CHUNK_BYTES of files, so a batch of phone photos is not 450 MB at once."""

from __future__ import annotations

from batchcap.models import ImageJob
from batchcap.run.stages import _chunks


def jobs(*sizes: int) -> list[ImageJob]:
    return [ImageJob(f"{i}.jpg", f"/x/{i}.jpg", size) for i, size in enumerate(sizes)]


def test_small_files_stay_one_chunk() -> None:
    batch = jobs(*[50_000] * 64)
    assert _chunks(batch, 32 << 20) == [batch]


def test_big_files_are_cut_in_order_and_nothing_is_lost() -> None:
    batch = jobs(*[7_000_000] * 10)
    chunks = _chunks(batch, 32 << 20)
    assert [len(c) for c in chunks] == [4, 4, 2]
    assert [j for c in chunks for j in c] == batch


def test_a_file_over_the_limit_is_a_chunk_of_its_own() -> None:
    batch = jobs(10, 100_000_000, 10)
    assert [len(c) for c in _chunks(batch, 1000)] == [1, 1, 1]
