"""A run's parts are built once from its config; every --target lane gets what the run was given."""

from __future__ import annotations

from pathlib import Path

from batchcap.config import RunConfig
from batchcap.run import run_targets


def test_the_runs_token_file_reaches_every_target_that_names_none(tmp_path: Path) -> None:
    token = tmp_path / "token"
    cfg = RunConfig.build(targets=("a=hf:org/m", "b=openai:m@http://127.0.0.1:9/v1"), token_file=token,
                          max_side=512, concurrency=3)
    lanes = run_targets(cfg)
    assert [t.token_file for t in lanes] == [token, token]
    assert all(t.cfg.target.token_file == token for t in lanes)
    assert all(t.cfg.prepare.max_side == 512 and t.cfg.limits.ceiling == 3 for t in lanes)  # the run's own settings


def test_no_token_file_means_discovery_per_target() -> None:
    lanes = run_targets(RunConfig.build(targets=("a=hf:org/m",)))
    assert lanes[0].token_file is None
