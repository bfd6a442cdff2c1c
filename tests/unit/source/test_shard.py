from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter

import pytest

from batchcap.errors import ConfigError
from batchcap.source.shard import Shard, parse_shard, shard_of

PATHS = [f"dir{i % 37}/sub{i % 5}/IMG_{i:05d}.jpg" for i in range(10_000)]


def test_parse_shard_is_one_based():
    assert parse_shard("1/3") == Shard(1, 3)
    assert parse_shard(" 3 / 3 ") == Shard(3, 3)
    assert str(parse_shard("2/5")) == "2/5"


@pytest.mark.parametrize(
    ("spec", "needle"),
    [("0/3", "numbered from 1"), ("4/3", "numbered from 1"), ("1/0", "between 1"), ("a/3", "I/N"),
     ("1-3", "I/N"), ("", "I/N"), ("-1/3", "I/N")],
)
def test_parse_shard_refuses_with_the_fix(spec, needle):
    with pytest.raises(ConfigError, match=needle):
        parse_shard(spec)


def test_shards_are_disjoint_cover_everything_and_balanced():
    for count in (2, 3, 7):
        sizes = Counter(shard_of(p, count) for p in PATHS)
        assert set(sizes) == set(range(1, count + 1))
        even = len(PATHS) / count
        assert max(abs(n - even) / even for n in sizes.values()) < 0.05, sizes
        owners = [[i for i in range(1, count + 1) if Shard(i, count).owns(p)] for p in PATHS[:500]]
        assert all(len(o) == 1 for o in owners)


def test_shard_of_is_the_same_in_another_python_process():
    """Not Python's salted hash: a fresh interpreter (another PYTHONHASHSEED) agrees."""
    sample = [*PATHS[:50], "é/ü.png", "\udcff-undecodable.jpg", "\ud800-lone.jpg"]
    here = [shard_of(p, 7) for p in sample]
    code = "import sys,json; from batchcap.source.shard import shard_of; " \
           "print(json.dumps([shard_of(p, 7) for p in json.loads(sys.stdin.read())]))"
    out = subprocess.run([sys.executable, "-c", code], input=json.dumps(sample), capture_output=True, text=True,
                         env={"PYTHONHASHSEED": "12345", "PATH": ""}, check=True)
    assert json.loads(out.stdout) == here
    assert shard_of("a.jpg", 3) == 1  # pinned: a change here re-shards every user's folder


def test_skip_predicate_combines_shard_and_done():
    shard = Shard(1, 2)
    mine = [p for p in PATHS[:100] if shard.owns(p)]
    done = {mine[0]}
    skip = shard.skip_others(done.__contains__)
    assert [p for p in PATHS[:100] if not skip(p)] == mine[1:]
    assert not Shard(1, 1).skip_others()("anything")
    assert Shard(1, 1).skip_others(done.__contains__)(mine[0])
