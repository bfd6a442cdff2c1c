"""journal: the line format, the resume index (repair, corruption, last-wins), the writer's lock and failures."""

from __future__ import annotations

import errno
import fcntl
import os
from pathlib import Path

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from batchcap.errors import JournalError
from batchcap.journal import (
    JournalIndex,
    JournalWriter,
    decode_line,
    encode_record,
    fsio,
    load_index,
    write_json_atomic,
)
from batchcap.journal import index as index_module
from batchcap.models import ErrorInfo, Record


def ok(path: str, caption: str = "a dog", **kw: object) -> Record:
    return Record(path, "ok", caption=caption, attempts=1, latency_s=0.5, target="t", ts=1.5, **kw)  # type: ignore[arg-type]


def err(path: str, retryable: bool, **kw: object) -> Record:
    info = ErrorInfo("ServerError", "HTTP 503", 503, retryable)
    return Record(path, "error", error=info, attempts=3, target="t", ts=2.5, **kw)  # type: ignore[arg-type]


def write(path: Path, *records: Record) -> None:
    with JournalWriter(path) as w:
        w.write(records)


# -- line format ---------------------------------------------------------------------------


def test_ok_line_shape_and_key_order() -> None:
    line = encode_record(ok("a/b.jpg", request_id="r-1"))
    assert line == (
        b'{"path":"a/b.jpg","task":"caption","status":"ok","caption":"a dog","attempts":1,"latency_s":0.5,'
        b'"bytes_sent":0,"target":"t","request_id":"r-1","ts":1.5}\n'
    )


def test_task_fingerprint_digest_and_data_lead_the_line() -> None:
    """The resume index reads path, task, status and fingerprint of an ok line without parsing it."""
    rec = ok("a.jpg", request_id=None)
    line = encode_record(Record(rec.path, "ok", caption='{"tags":["a"]}', attempts=1, ts=1.0, task="tags",
                                data={"tags": ["a"]}, fingerprint="0" * 8 + "1" * 16, digest="d" * 32))
    assert line.startswith(b'{"path":"a.jpg","task":"tags","status":"ok","fingerprint":"' + b"0" * 8 + b"1" * 16
                           + b'","digest":"' + b"d" * 32 + b'","caption":')
    obj = decode_line(line)
    assert obj["data"] == {"tags": ["a"]}


def test_a_line_without_task_means_caption() -> None:
    from batchcap.journal.codec import record_task

    assert record_task(decode_line(b'{"path":"a.jpg","status":"ok","caption":"x"}')) == "caption"
    with pytest.raises(ValueError):  # noqa: PT011
        decode_line(b'{"path":"a.jpg","task":3,"status":"ok","caption":"x"}')


def test_error_line_shape_omits_caption_and_missing_request_id() -> None:
    obj = decode_line(encode_record(err("x.png", retryable=True)))
    assert list(obj) == ["path", "task", "status", "error", "attempts", "latency_s", "bytes_sent", "target", "ts"]
    assert obj["error"] == {
        "type": "ServerError",
        "message": "HTTP 503",
        "http_status": 503,
        "retryable": True,
    }


def test_lone_surrogate_in_a_caption_is_replaced_not_fatal() -> None:
    obj = decode_line(encode_record(ok("a.jpg", caption="bad \ud800 char")))
    assert obj["caption"] == "bad ? char"


@pytest.mark.parametrize("line", [b"", b"[1,2]", b'{"path":1,"status":"ok"}', b'{"path":"a"}', b"{no"])
def test_decode_line_rejects(line: bytes) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - orjson's and ours; the type is the contract
        decode_line(line)


# -- index ---------------------------------------------------------------------------------


def test_missing_journal_is_an_empty_index(tmp_path: Path) -> None:
    index = load_index(tmp_path / "none.jsonl")
    assert len(index) == 0
    assert "a.jpg" not in index


def test_round_trip_counts(tmp_path: Path) -> None:
    p = tmp_path / "j.jsonl"
    write(p, ok("a.jpg"), err("b.jpg", retryable=False), err("c.jpg", retryable=True), ok("d.jpg"))
    index = load_index(p)
    assert {x for x in ("a.jpg", "b.jpg", "c.jpg", "d.jpg", "e.jpg") if x in index} == {
        "a.jpg",
        "b.jpg",
        "d.jpg",
    }
    assert (index.ok, index.error_final, index.error_retryable, index.lines) == (2, 1, 1, 4)
    assert len(index) == 3


def test_retry_failed_counts_only_ok_as_done(tmp_path: Path) -> None:
    p = tmp_path / "j.jsonl"
    write(p, ok("a.jpg"), err("b.jpg", retryable=False))
    index = load_index(p, retry_failed=True)
    assert "a.jpg" in index
    assert "b.jpg" not in index
    assert index.error_final == 1


def test_later_lines_win_but_an_ok_is_never_discarded(tmp_path: Path) -> None:
    p = tmp_path / "j.jsonl"
    write(
        p,
        err("retry-then-ok", True),
        ok("retry-then-ok"),
        ok("ok-then-error"),
        err("ok-then-error", True),
        err("final-then-retryable", False),
        err("final-then-retryable", True),
        err("retryable-then-final", True),
        err("retryable-then-final", False),
    )
    index = load_index(p)
    assert "retry-then-ok" in index
    assert "ok-then-error" in index
    assert "final-then-retryable" not in index
    assert "retryable-then-final" in index
    assert (index.ok, index.error_final, index.error_retryable) == (2, 1, 1)


PATHS = [
    "quote\"d/it's.jpg",
    "back\\slash.png",
    "été/ünï😀.webp",
    "tab\there.gif",
    'a","status":"ok.jpg',
    "new\nline.jpg",
    "/slashes//x.jpg",
]


def test_any_path_string_round_trips_through_the_index(tmp_path: Path) -> None:
    p = tmp_path / "j.jsonl"
    write(p, *(ok(x) for x in PATHS), err('evil\\"x.jpg', retryable=False))
    index = load_index(p)
    assert all(x in index for x in PATHS)
    assert 'evil\\"x.jpg' in index
    assert 'a"' not in index
    assert "a" not in index


def test_lines_from_other_writers_are_parsed(tmp_path: Path) -> None:
    # Different key order, escaped unicode and "\/": the slow path, same keys.
    p = tmp_path / "j.jsonl"
    p.write_bytes(
        b'{"status":"ok","path":"x.jpg","caption":"c"}\n'
        b'{"path":"\\u00e9t\\u00e9\\/a.jpg","status":"ok"}\n'
        b"\n"
        b'  {"path": "spaced.jpg", "status": "error", "error": {"retryable": false}}\n'
    )
    index = load_index(p)
    assert {"x.jpg", "été/a.jpg", "spaced.jpg"} <= {
        x for x in ("x.jpg", "été/a.jpg", "spaced.jpg") if x in index
    }
    assert index.lines == 3  # the blank line is not a record


def test_torn_last_line_is_cut_off(tmp_path: Path) -> None:
    p = tmp_path / "j.jsonl"
    write(p, ok("a.jpg"), ok("b.jpg"))
    good = p.read_bytes()
    torn = encode_record(ok("c.jpg"))[:25]
    p.write_bytes(good + torn)
    index = load_index(p)
    assert "c.jpg" not in index
    assert index.repaired_bytes == len(torn)
    assert p.read_bytes() == good
    write(p, ok("c.jpg"))  # appending after the repair gives a clean file
    assert load_index(p).lines == 3


def test_garbage_last_line_with_newline_is_cut_off(tmp_path: Path) -> None:
    p = tmp_path / "j.jsonl"
    write(p, ok("a.jpg"))
    good = p.read_bytes()
    garbage = b'{"path":"b.jpg","sta\x00\x00\n'
    p.write_bytes(good + garbage)
    index = load_index(p)
    assert index.repaired_bytes == len(garbage)
    assert p.read_bytes() == good


def test_complete_last_line_missing_only_its_newline_is_kept(tmp_path: Path) -> None:
    p = tmp_path / "j.jsonl"
    write(p, ok("a.jpg"), ok("b.jpg"))
    p.write_bytes(p.read_bytes()[:-1])
    index = load_index(p)
    assert "b.jpg" in index
    assert index.repaired_bytes == 0
    assert p.read_bytes().endswith(b"}\n")


def test_repair_false_leaves_the_file_alone(tmp_path: Path) -> None:
    p = tmp_path / "j.jsonl"
    write(p, ok("a.jpg"))
    data = p.read_bytes() + b'{"path":"b'
    p.write_bytes(data)
    index = load_index(p, repair=False)
    assert index.repaired_bytes == 10
    assert p.read_bytes() == data


def test_garbage_mid_file_names_the_line_and_changes_nothing(tmp_path: Path) -> None:
    p = tmp_path / "captions.jsonl"
    write(p, ok("a.jpg"))
    data = p.read_bytes() + b'{"path":"b.jpg","status":"ok","cap\n' + encode_record(ok("c.jpg"))
    p.write_bytes(data)
    with pytest.raises(JournalError) as info:
        load_index(p)
    assert str(info.value).startswith(
        "line 2 of captions.jsonl is not JSON; only the last line may be torn: move the file aside or fix that line"
    )
    assert p.read_bytes() == data


def test_bad_line_followed_only_by_a_torn_tail_is_still_mid_file(tmp_path: Path) -> None:
    p = tmp_path / "j.jsonl"
    p.write_bytes(encode_record(ok("a.jpg")) + b"garbage\n" + b'{"path":"c')
    with pytest.raises(JournalError, match="line 2 of"):
        load_index(p)


def test_chunk_boundaries_do_not_matter(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    p = tmp_path / "j.jsonl"
    names = [f"d{i}/é{i}.jpg" for i in range(200)]
    write(p, *(ok(n) if i % 3 else err(n, i % 2 == 0) for i, n in enumerate(names)))
    whole = load_index(p, repair=False)
    good = p.read_bytes()
    p.write_bytes(good + b"\n\n" + b"torn line")
    monkeypatch.setattr(index_module, "CHUNK", 7)  # lines straddle every chunk
    small = load_index(p)
    assert [n in small for n in names] == [n in whole for n in names]
    assert (small.ok, small.error_final, small.error_retryable) == (
        whole.ok,
        whole.error_final,
        whole.error_retryable,
    )
    assert p.read_bytes() == good + b"\n\n"  # blank lines are harmless and stay
    assert small.repaired_bytes == len(b"torn line")

    p.write_bytes(good + b"{bad}\n" + encode_record(ok("z.jpg")))
    with pytest.raises(JournalError, match="line 201 of"):
        load_index(p)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.text(max_size=12), st.sampled_from(["ok", "final", "retry"])), max_size=40))
def test_index_matches_a_plain_model(
    tmp_path_factory: pytest.TempPathFactory, events: list[tuple[str, str]]
) -> None:
    p = tmp_path_factory.getbasetemp() / "model.jsonl"  # one file, rewritten per example
    records = [ok(x) if kind == "ok" else err(x, kind == "retry") for x, kind in events]
    p.write_bytes(b"".join(encode_record(r) for r in records))
    index = load_index(p)
    last: dict[str, str] = {}
    has_ok: set[str] = set()
    for x, kind in events:
        last[x] = kind
        if kind == "ok":
            has_ok.add(x)
    expected = {x for x in last if x in has_ok or last[x] == "final"}
    assert {x for x in last if x in index} == expected
    assert len(index) == len(expected)
    assert index.error_retryable == sum(1 for x in last if x not in has_ok and last[x] == "retry")


def test_key_set_behaves_like_a_set() -> None:
    ks = index_module.KeySet(100)
    keys = [0, 1, -1, 2**63 - 1, -(2**63), 12345, 12345 + 16 * 1024, 7]
    for k in keys:
        ks.add(k)
    assert len(ks) == len(keys) - 1  # 0 and 1 share a slot by design
    assert all(k in ks for k in keys)
    assert 99 not in ks
    assert not ks.add(12345)


def test_index_from_paths() -> None:
    index = JournalIndex(["a", "b", "a"])
    assert len(index) == 2
    assert "a" in index
    assert "c" not in index
    assert 3 not in index


# -- writer --------------------------------------------------------------------------------


def test_writer_appends_whole_lines_across_runs(tmp_path: Path) -> None:
    p = tmp_path / "j.jsonl"
    write(p, ok("a.jpg"))
    write(p, ok("b.jpg"), err("c.jpg", True))
    assert [decode_line(x)["path"] for x in p.read_bytes().splitlines()] == ["a.jpg", "b.jpg", "c.jpg"]


def test_second_writer_is_refused_while_the_first_holds_the_lock(tmp_path: Path) -> None:
    p = tmp_path / "j.jsonl"
    with JournalWriter(p):
        with pytest.raises(JournalError) as info:
            JournalWriter(p).open()
        assert str(info.value) == (
            f"another batchcap run is writing to {p}; wait for it to finish or choose another --out"
        )
    with JournalWriter(p) as again:  # released on close
        again.write([ok("a.jpg")])


def test_load_index_repairs_only_under_the_lock(tmp_path: Path) -> None:
    p = tmp_path / "j.jsonl"
    write(p, ok("a.jpg"))
    p.write_bytes(p.read_bytes() + b'{"path":"b')  # looks torn, but another run may be mid-write
    other = os.open(p, os.O_RDONLY)  # that run's lock, held from outside this process's writers
    try:
        fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(JournalError, match="another batchcap run is writing to"):
            load_index(p)
        assert load_index(p, repair=False).repaired_bytes == 10  # reading alone needs no lock
        assert p.read_bytes().endswith(b'{"path":"b')
    finally:
        os.close(other)
    with JournalWriter(p) as w:  # our own writer's lock does not block our own repair
        assert load_index(p).repaired_bytes == 10
        w.write([ok("b.jpg")])
    assert load_index(p).lines == 2


def test_failed_write_after_a_repair_cuts_back_to_the_repaired_size(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    p = tmp_path / "j.jsonl"
    write(p, ok("a.jpg"))
    good = p.read_bytes()
    p.write_bytes(good + b'{"path":"b')
    real_write = os.write

    def short_then_full(fd: int, data: bytes | memoryview) -> int:
        if len(data) > 5:
            return real_write(fd, bytes(data[:5]))
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    with JournalWriter(p) as w:
        load_index(p)  # cuts the torn tail under the writer's feet
        monkeypatch.setattr("batchcap.journal.fsio.os.write", short_then_full)
        with pytest.raises(JournalError):
            w.write([ok("c.jpg")])
        monkeypatch.undo()
    assert p.read_bytes() == good


def test_missing_parent_folder_is_an_error_with_a_hint(tmp_path: Path) -> None:
    with pytest.raises(JournalError, match="does not exist; create it first"):
        JournalWriter(tmp_path / "no" / "j.jsonl").open()


def test_disk_full_is_reported_with_the_fix(tmp_path: Path) -> None:
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full on this system")
    w = JournalWriter(Path("/dev/full"))
    w.open()
    try:
        with pytest.raises(JournalError) as info:
            w.write([ok("a.jpg")])
        assert str(info.value) == (
            "cannot write /dev/full: no space left on device; free some space and run the same command again "
            "(results so far are kept)"
        )
    finally:
        w.close()


def test_partial_write_is_cut_back_so_no_half_line_remains(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    p = tmp_path / "j.jsonl"
    write(p, ok("a.jpg"))
    before = p.read_bytes()
    real_write = os.write
    calls = []

    def write_then_fill(fd: int, data: bytes | memoryview) -> int:
        calls.append(len(data))
        if len(calls) == 1:
            return real_write(fd, bytes(data[:40]))  # a short write...
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))  # ...then the disk is full

    w = JournalWriter(p)
    w.open()
    monkeypatch.setattr("batchcap.journal.fsio.os.write", write_then_fill)
    with pytest.raises(JournalError, match="no space left on device"):
        w.write([ok("b.jpg"), ok("c.jpg")])
    monkeypatch.undo()
    assert p.read_bytes() == before
    w.write([ok("d.jpg")])  # the writer stays usable once space is back
    w.close()
    assert load_index(p).lines == 2


def test_other_errors_keep_the_system_text(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    p = tmp_path / "j.jsonl"

    def eio(fd: int, data: bytes | memoryview) -> int:
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    with JournalWriter(p) as w:
        monkeypatch.setattr("batchcap.journal.fsio.os.write", eio)
        with pytest.raises(
            JournalError, match=r"Input/output error; fix the disk and run the same command again"
        ):
            w.write([ok("a.jpg")])


def test_fsync_runs_on_the_interval_and_on_close(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    now = [0.0]
    synced: list[float] = []
    monkeypatch.setattr(fsio, "sync", lambda fd: synced.append(now[0]))
    w = JournalWriter(tmp_path / "j.jsonl", fsync_interval=1.0, clock=lambda: now[0])
    w.open()
    w.write([ok("a")])
    now[0] = 0.5
    w.write([ok("b")])
    assert synced == []
    now[0] = 1.2
    w.write([ok("c")])
    assert synced == [1.2]
    now[0] = 1.5
    w.write([ok("d")])
    w.close()
    w.close()  # idempotent
    assert synced == [1.2, 1.5]
    with pytest.raises(JournalError, match="not open"):
        w.write([ok("e")])


def test_empty_write_is_a_no_op(tmp_path: Path) -> None:
    p = tmp_path / "j.jsonl"
    with JournalWriter(p) as w:
        w.write([])
    assert p.read_bytes() == b""


# -- manifest ------------------------------------------------------------------------------


def test_write_json_atomic_replaces_and_leaves_no_tmp(tmp_path: Path) -> None:
    p = tmp_path / "run.manifest.json"
    write_json_atomic(p, {"state": "running", "n": 1})
    write_json_atomic(p, {"state": "finished", "n": 2, "é": [1.5, None]})
    assert orjson.loads(p.read_bytes()) == {"state": "finished", "n": 2, "é": [1.5, None]}
    assert os.listdir(tmp_path) == ["run.manifest.json"]


def test_write_json_atomic_failure_keeps_the_old_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    p = tmp_path / "m.json"
    write_json_atomic(p, {"v": 1})

    def no_replace(src: object, dst: object) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr("batchcap.journal.fsio.os.replace", no_replace)
    with pytest.raises(OSError, match="Input/output"):
        write_json_atomic(p, {"v": 2})
    assert orjson.loads(p.read_bytes()) == {"v": 1}
    assert os.listdir(tmp_path) == ["m.json"]


KILLED_WRITER = """
import sys
from pathlib import Path
from batchcap.journal import JournalWriter
from batchcap.models import Record
with JournalWriter(Path(sys.argv[1]), fsync_interval=0.01) as w:
    print("ready", flush=True)
    i = 0
    while True:
        w.write([Record(f"img/{i}-{k}.jpg", "ok", caption="c" * (k * 97 % 5000)) for k in range(300)])
        i += 1
"""


@pytest.mark.slow
def test_kill_9_at_any_moment_leaves_a_loadable_journal(tmp_path: Path) -> None:
    import random
    import signal
    import subprocess
    import sys
    import time

    p = tmp_path / "j.jsonl"
    rng = random.Random(0)
    done = 0  # on this box ~1 kill in 4 lands mid-write and leaves a torn tail
    for _ in range(25):
        with subprocess.Popen([sys.executable, "-c", KILLED_WRITER, str(p)], stdout=subprocess.PIPE) as child:
            assert child.stdout is not None
            assert child.stdout.readline() == b"ready\n"
            time.sleep(rng.uniform(0.0, 0.05))
            child.send_signal(signal.SIGKILL)
        index = load_index(p)  # never a JournalError: at worst the last line is torn
        assert index.lines >= done
        done = index.lines
        assert p.read_bytes().endswith(b"\n") or p.stat().st_size == 0


def test_held_by_a_run_while_a_writer_holds_the_lock(tmp_path: Path) -> None:
    p = tmp_path / "r.jsonl"
    assert not fsio.held_by_a_run(p)  # missing: nobody holds it
    with JournalWriter(p) as w:
        w.write([ok("a.jpg")])
        assert fsio.held_by_a_run(p)
        assert fsio.held_by_a_run(p)  # asking does not keep a lock of its own
    assert not fsio.held_by_a_run(p)
    with JournalWriter(p):  # and a run can take it again after a reader asked
        pass


def test_wait_released_is_bounded_by_the_clock(tmp_path: Path) -> None:
    p = tmp_path / "r.jsonl"
    now = [100.0]
    slept: list[float] = []

    def sleep(s: float) -> None:
        slept.append(s)
        now[0] += s

    with JournalWriter(p):
        assert fsio.wait_released(p, 2.0, clock=lambda: now[0], sleep=sleep, poll=0.5) is False
        assert slept == [0.5, 0.5, 0.5, 0.5]
        assert now[0] == 102.0
    slept.clear()
    assert fsio.wait_released(p, 2.0, clock=lambda: now[0], sleep=sleep) is True
    assert slept == []

    writer = JournalWriter(p)
    writer.open()

    def sleep_then_finish(s: float) -> None:  # the run ends while the reader waits
        sleep(s)
        writer.close()

    assert fsio.wait_released(p, 60.0, clock=lambda: now[0], sleep=sleep_then_finish, poll=1.0) is True
    assert slept == [1.0]
