"""Every image of Pillow's own test suite ends as a ``Prepared`` or an ``InputError`` with a reason, nothing else.

Pillow's ``Tests/images`` (1,060 files in 13.0.0) is the corpus of damaged, fuzzed, exotic and bomb files its
maintainers collected over 15 years. The sdist of the installed Pillow is fetched once with pip (the only
network: PyPI) into ``.cache/pillow-tests/<version>/`` (git-ignored) and reused: ~25 s the first time on a
fresh machine (pip prepares the sdist's metadata), ~2 s after.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from batchcap.errors import InputError
from batchcap.prepare import PrepareSettings, prepare


@pytest.mark.filterwarnings("ignore")  # Pillow warns about the damage it was built to survive
def test_every_pillow_test_image_is_prepared_or_refused_with_a_reason(pillow_test_images: list[Path]) -> None:
    assert len(pillow_test_images) > 500
    settings = PrepareSettings()
    outcomes = {"passed": 0, "prepared": 0, "refused": 0}
    reasons: list[tuple[str, str]] = []
    for path in pillow_test_images:
        data = path.read_bytes()
        try:
            out = prepare(data, settings)
        except InputError as exc:
            reasons.append((path.name, str(exc)))
            outcomes["refused"] += 1
            continue
        assert max(out.width, out.height) <= settings.max_side, path.name
        assert len(out.data) <= settings.max_upload_bytes, path.name
        outcomes["prepared" if out.prepared else "passed"] += 1
        if out.prepared:
            assert out.mime in ("image/jpeg", "image/png"), path.name
    assert all(len(reason) > 10 for _, reason in reasons), [r for r in reasons if len(r[1]) <= 10]
    # Most of them are real images that must get through; the rest are exotic formats, bombs and damage.
    assert outcomes["passed"] + outcomes["prepared"] > 600, outcomes
