"""``run_async``: the collector tuned while a command runs, and everything put back after (a test process or a
Ray worker runs many commands)."""

from __future__ import annotations

import gc

import pytest

from batchcap.aio import GEN0_THRESHOLD, run_async


@pytest.mark.parametrize("fails", [False, True])
def test_the_collector_is_tuned_during_a_command_and_restored_after(fails: bool) -> None:
    before = gc.get_threshold()
    seen: list[tuple[tuple[int, int, int], int]] = []

    async def command() -> str:
        seen.append((gc.get_threshold(), gc.get_freeze_count()))
        if fails:
            raise ValueError("the command failed")
        return "done"

    if fails:
        with pytest.raises(ValueError, match="failed"):
            run_async(command, loop="asyncio")
    else:
        assert run_async(command, loop="asyncio") == "done"
    (during, frozen), = seen
    assert during == (GEN0_THRESHOLD, *before[1:])
    assert frozen > 1000  # the start-up heap (modules, classes) is not traversed while the command runs
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0
