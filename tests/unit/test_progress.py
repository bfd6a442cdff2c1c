"""The log-file progress display: one plain line per interval, with what a person reading the log next morning
needs (counts, errors by type, rate, ETA, concurrency, an outage), never a carriage return."""

from __future__ import annotations

from collections import Counter

from batchcap.progress import LogProgress, eta


def test_one_line_per_interval_with_counts_errors_rate_and_eta() -> None:
    now = [0.0]
    lines: list[str] = []
    p = LogProgress(write=lines.append, every=30.0, clock=lambda: now[0])
    p.found(1000)
    errors: Counter[str] = Counter()
    for _ in range(29):
        now[0] += 1.0
        p.done(10, 0)
        p.tick()
    assert lines == []  # not before the interval
    errors["TransportError"] += 3
    errors["RejectedImage"] += 1
    p.errors(errors)
    p.done(6, 4)
    p.scan_finished()
    p.concurrency("c=12/16")
    p.note("target unreachable for 2m, probing")
    now[0] += 1.0
    p.tick()
    assert lines == [("batchcap: 300/1000 done (296 ok, 4 errors: TransportError 3, RejectedImage 1), 10.0 img/s, "
                      "ETA 1m10s, c=12/16, target unreachable for 2m, probing")]
    now[0] += 30.0
    p.tick()
    assert lines[1] == "batchcap: 300/1000 done (296 ok, 4 errors: TransportError 3, RejectedImage 1), 0.0 img/s, " \
                       "ETA ?, c=12/16"  # nothing moved; the note was news once
    assert all("\r" not in line and "\n" not in line for line in lines)


def test_while_the_scan_goes_on_the_total_is_a_lower_bound() -> None:
    lines: list[str] = []
    p = LogProgress(write=lines.append, every=1.0, clock=lambda: 5.0)
    p.found(64)
    assert p.line(10.0).startswith("batchcap: 0/64+ done (0 ok, 0 errors), 0.0 img/s, ETA ?")


def test_eta_as_a_person_says_it() -> None:
    assert [eta(s) for s in (None, -1.0, 42.4, 185.0, 7800.0, 1e9)] == ["?", "?", "42s", "3m05s", "2h10m", "?"]
