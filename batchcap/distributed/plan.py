"""Which shards a distributed job has, where their journals live, and how rate and concurrency split.

Pure apart from reading and writing one small ``job.json``. The job keeps its state beside ``--out``::

    captions.jsonl.parts/job.json                 {"shards": 16, "input_dir": "..."}
    captions.jsonl.parts/part-01-of-16.jsonl      one journal per shard, resumed on its own
    captions.jsonl                                the merge of every part, rewritten at the end

The shard count is fixed the first time and read back after: a rerun with another ``--workers`` keeps the same
shards, so every part resumes instead of re-sharding the folder. More shards than workers (4 per worker, at
least 8) let a worker that finishes early take the next one, so all finish at about the same time.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from batchcap.errors import ConfigError
from batchcap.journal import write_json_atomic
from batchcap.source.shard import Shard
from batchcap.words import plural

__all__ = ["JobPlan", "Split", "plan_job", "split_limits"]

SHARDS_PER_WORKER = 4
MIN_SHARDS = 8


@dataclass(frozen=True, slots=True)
class Split:
    """One worker's share of the job's limits (used when no shared limiter is available)."""

    rate: float | None
    burst: int
    concurrency: int


def split_limits(rate: float | None, burst: int, concurrency: int, workers: int) -> Split:
    """Each of ``workers`` gets ``1/workers`` of the rate, the burst and the concurrency (at least 1 each).

    The sums never exceed the totals except where a total is below ``workers`` (then each worker keeps 1):
    the job as a whole holds ``--rate`` and ``--concurrency``.
    """
    if workers < 1:
        raise ValueError(f"workers must be >= 1 (got {workers})")
    return Split(
        rate=None if rate is None else rate / workers,
        burst=max(1, burst // workers),
        concurrency=max(1, concurrency // workers),
    )


@dataclass(frozen=True, slots=True)
class JobPlan:
    """The shards of one job and their journals."""

    out: Path
    folder: Path
    count: int

    @property
    def shards(self) -> list[Shard]:
        return [Shard(i, self.count) for i in range(1, self.count + 1)]

    def part(self, shard: Shard) -> Path:
        width = len(str(self.count))
        return self.folder / f"part-{shard.index:0{width}d}-of-{self.count}.jsonl"

    @property
    def parts(self) -> list[Path]:
        return [self.part(s) for s in self.shards]


def plan_job(out: Path, input_dir: Path | str, workers: int, *, shards: int | None = None) -> JobPlan:
    """The plan for ``out``: read back from ``job.json`` when the job ran before, else made and saved."""
    folder = out.with_name(out.name + ".parts")
    state = folder / "job.json"
    saved = _read(state)
    if saved is not None:
        count = saved.get("shards")
        if not isinstance(count, int) or count < 1:
            raise ConfigError(f"{state} is damaged (no shard count); move {folder} aside to start the job afresh")
        if shards is not None and shards != count:
            raise ConfigError(
                f"this job was split into {plural(count, 'shard')} before ({state}); keep that count to resume, "
                f"or move {folder} aside to start afresh"
            )
        if saved.get("input_dir") not in (None, str(input_dir)):
            raise ConfigError(
                f"{folder} belongs to a job over {saved.get('input_dir')}, not {input_dir}; choose another --out"
            )
        return JobPlan(out, folder, count)
    count = shards if shards is not None else max(MIN_SHARDS, SHARDS_PER_WORKER * workers)
    Shard(1, count)  # validates the count
    try:
        folder.mkdir(parents=False, exist_ok=True)
        write_json_atomic(state, {"shards": count, "input_dir": str(input_dir)})
    except FileNotFoundError:
        raise ConfigError(f"cannot create {folder}: folder {out.parent} does not exist; create it first") from None
    except OSError as exc:
        raise ConfigError(f"cannot create {folder}: {exc.strerror or exc}") from None
    return JobPlan(out, folder, count)


def _read(path: Path) -> dict[str, Any] | None:
    try:
        raw = orjson.loads(path.read_bytes())
    except FileNotFoundError:
        return None
    except (OSError, orjson.JSONDecodeError):
        raise ConfigError(f"{path} is damaged; move {path.parent} aside to start the job afresh") from None
    return raw if isinstance(raw, dict) else None

