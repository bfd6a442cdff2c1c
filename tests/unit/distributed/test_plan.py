from __future__ import annotations

from pathlib import Path

import pytest

from batchcap.distributed import plan_job, split_limits
from batchcap.errors import ConfigError


def test_split_never_exceeds_the_totals():
    s = split_limits(40.0, 8, 16, 2)
    assert (s.rate, s.burst, s.concurrency) == (20.0, 4, 8)
    s = split_limits(None, 3, 3, 4)
    assert (s.rate, s.burst, s.concurrency) == (None, 1, 1)


def test_plan_is_kept_for_resume(tmp_path: Path):
    out = tmp_path / "captions.jsonl"
    plan = plan_job(out, tmp_path / "in", workers=2)
    assert plan.count == 8
    assert plan.part(plan.shards[0]).name == "part-1-of-8.jsonl"
    again = plan_job(out, tmp_path / "in", workers=5)  # another --workers: the same shards
    assert again.count == 8
    with pytest.raises(ConfigError, match="keep that count"):
        plan_job(out, tmp_path / "in", workers=2, shards=3)
    with pytest.raises(ConfigError, match="belongs to a job over"):
        plan_job(out, tmp_path / "other", workers=2)
    big = plan_job(tmp_path / "b.jsonl", tmp_path / "in", workers=4, shards=12)
    assert big.parts[-1].name == "part-12-of-12.jsonl"
    assert big.parts[0].name == "part-01-of-12.jsonl"
    with pytest.raises(ConfigError, match="does not exist"):
        plan_job(tmp_path / "nope" / "o.jsonl", tmp_path / "in", workers=1)
