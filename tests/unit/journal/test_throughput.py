"""Throughput, defined once: images per busy second of the invocations, idle gaps between them left out."""

from __future__ import annotations

import pytest

from batchcap.journal.throughput import (
    DEFINITION,
    Completion,
    Invocation,
    Throughput,
    Timeline,
    images_per_s,
)


def test_one_run_is_its_images_over_its_elapsed_time() -> None:
    t = Throughput.of([Invocation(1000.0, 10.0, 500)])
    assert (t.images, t.busy_s, t.invocations, t.per_s) == (500, 10.0, 1, 50.0)
    assert images_per_s(500, 10.0) == 50.0
    assert images_per_s(5, 0.0) == 0.0
    assert t.to_json() == {"images": 500, "busy_s": 10.0, "images_per_s": 50.0, "invocations": 1,
                           "definition": DEFINITION}


def test_an_interrupt_and_a_resume_the_next_day_count_the_two_runs_not_the_night() -> None:
    evening = Invocation(1000.0, 20.0, 100)
    morning = Invocation(1000.0 + 12 * 3600, 30.0, 150)
    t = Throughput.of([morning, evening])
    assert (t.images, t.busy_s, t.per_s, t.invocations) == (250, 50.0, 5.0, 2)
    line = Timeline.of([evening, morning])
    assert line.busy_s == 50.0
    assert line.offset(1010.0) == 10.0
    assert line.offset(1000.0 + 6 * 3600) == 20.0  # in the night: the end of the evening's run
    assert line.offset(1000.0 + 12 * 3600 + 5) == 25.0
    assert line.offset(999.0) == 0.0
    assert line.offset(1e12) == 50.0


def test_shards_side_by_side_count_the_time_any_of_them_ran() -> None:
    shards = [Invocation(100.0, 60.0, 300), Invocation(110.0, 60.0, 300), Invocation(400.0, 10.0, 50)]
    t = Throughput.of(shards)
    assert t.busy_s == 80.0  # 100-170 and 400-410
    assert t.images == 650
    assert Timeline.of(shards).windows == ((100.0, 170.0), (400.0, 410.0))


def test_unfinished_runs_are_left_out_until_the_journal_completes_them() -> None:
    killed = Invocation(1000.0)
    resumed = Invocation(5000.0, 10.0, 40)
    assert not killed.finished
    assert Throughput.of([killed, resumed]).per_s == 4.0
    runs = Completion([resumed, killed])
    assert runs.needed
    for ts in (999.0, 1001.0, 1002.0, 1030.0, 5001.0, 5009.0):  # 999: written before any known run
        runs.observe(ts)
    completed = runs.invocations()
    assert completed == [Invocation(1000.0, 30.0, 3), resumed]
    assert Throughput.of(completed).per_s == pytest.approx(43 / 40)
    assert not Completion([resumed]).needed
    assert Invocation(7.0).observed(None, 0) == Invocation(7.0, 0.0, 0)


def test_manifests_old_and_new_and_malformed() -> None:
    new = {"invocations": [{"started_at": 1.0, "elapsed_s": 2.0, "images": 3}, {"started_at": 9.0},
                           {"started_at": "x"}, "junk", {"started_at": 5.0, "elapsed_s": -1}]}
    assert Invocation.from_manifest(new) == [Invocation(1.0, 2.0, 3), Invocation(9.0)]
    old = {"started_at": 10.0, "elapsed_s": 4.5, "counts": {"ok": 8, "failed": 1, "skipped": 3}}
    assert Invocation.from_manifest(old) == [Invocation(10.0, 4.5, 9)]
    crashed = {"started_at": 10.0, "state": "running"}
    assert Invocation.from_manifest(crashed) == [Invocation(10.0)]
    assert Invocation.from_manifest(None) == []
    assert Invocation.from_manifest({"state": "merged"}) == []
    for inv in (Invocation(1.0, 2.0, 3), Invocation(4.0), Invocation(5.0, 1.0, 1, folded=7)):
        assert Invocation.from_json(inv.to_json()) == inv


def test_fold_keeps_the_totals_and_bounds_the_list() -> None:
    runs = [Invocation(float(i * 100), 10.0, 5) for i in range(250)]
    folded = Invocation.fold(runs, keep=100)
    assert len(folded) == 100
    assert folded[0] == Invocation(0.0, 10.0 * 151, 5 * 151, folded=151)
    assert folded[1:] == runs[151:]
    before, after = Throughput.of(runs), Throughput.of(folded)
    assert (after.images, after.busy_s, after.invocations) == (before.images, before.busy_s, before.invocations)
    assert Invocation.fold(runs[:3]) == runs[:3]
