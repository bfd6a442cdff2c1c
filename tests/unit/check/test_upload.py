"""``SentBytes``: what a run sends, by the run's own pool: exact where the header decides, measured on a sample."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from batchcap.check import SentBytes
from batchcap.errors import InputError
from batchcap.models import ImageJob, LoadedImage
from batchcap.prepare import PreparePool, PrepareSettings, base64_wire_size, prepare

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # tests/, for corpus.py

from corpus import phone_jpeg


def _loaded(data: bytes, name: str = "x.jpg") -> LoadedImage:
    return LoadedImage(ImageJob(name, name, len(data)), data, "image/jpeg")


@pytest.fixture(scope="module")
def photo() -> bytes:
    return phone_jpeg(0, size=(2016, 1512))


def test_a_file_sent_as_it_is_counts_its_size_on_the_wire(corpus: dict[str, bytes]) -> None:
    pool = PreparePool(PrepareSettings(), wire_size=base64_wire_size(100))
    sent = SentBytes(pool)
    tiny = corpus["tiny.jpg"]
    triaged = pool.triage(_loaded(tiny))
    assert isinstance(triaged, LoadedImage)
    assert sent.add(triaged) == 4 * ((len(tiny) + 2) // 3) + 100
    assert sent.measured == 0


def test_the_first_ones_are_measured_and_the_rest_scaled(photo: bytes) -> None:
    settings = PrepareSettings()
    pool = PreparePool(settings)
    sent = SentBytes(pool, first=2, every=1000)
    exact = len(prepare(photo, settings).data)
    got = [sent.add(pool.triage(_loaded(photo))) for _ in range(5)]  # type: ignore[arg-type]
    assert got == [exact] * 5  # the same file: the ratio is exact
    assert sent.measured == 2
    assert "2 prepared" in sent.describe()


def test_a_measured_image_that_cannot_be_prepared_is_an_error(photo: bytes) -> None:
    pool = PreparePool(PrepareSettings())
    broken = photo[:2000] + bytes(len(photo) - 4000) + photo[-2000:]  # header and end kept, pixels gone
    triaged = pool.triage(_loaded(broken))
    assert isinstance(triaged, LoadedImage)
    got = SentBytes(pool).add(triaged)
    assert isinstance(got, InputError | int)  # libjpeg may decode zeros as grey: either is what run would do
    if isinstance(got, InputError):
        with pytest.raises(InputError):
            prepare(broken, PrepareSettings())
