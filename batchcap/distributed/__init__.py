"""Run one job's shards as Ray tasks: ``batchcap run DIR --ray [ADDRESS|local] --workers N``.

Ray is an optional extra (``pip install 'batchcap[ray]'``): nothing here imports it until a job starts. One
module per job: ``plan`` (shards, part journals, the split of limits), ``limiter`` (the job's one token bucket
as an actor), ``tally`` (progress counters over all workers), ``worker`` (one shard = one ``batchcap.run``),
``driver`` (submit, watch, cancel, merge).
"""

from __future__ import annotations

from batchcap.distributed.driver import JobAborted, JobStats, part_paths, run_distributed
from batchcap.distributed.plan import JobPlan, Split, plan_job, split_limits

__all__ = ["JobAborted", "JobPlan", "JobStats", "Split", "part_paths", "plan_job", "run_distributed", "split_limits"]
