"""The journal keeps what each image cost, and the index sums what earlier runs spent (issue 18)."""

from __future__ import annotations

import math
import random
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from batchcap.journal import decode_line, encode_record, load_index
from batchcap.journal import index as index_module
from batchcap.models import ErrorInfo, Record, Usage


def billed(path: str, cost: float | None, **kw: object) -> Record:
    return Record(path, "ok", caption="a dog", attempts=1, latency_s=0.5, target="openai:m@h", ts=1.5,
                  usage=Usage(812, 17), provider="novita", cost_usd=cost, request_id="r", **kw)  # type: ignore[arg-type]


def test_cost_keys_follow_the_target_in_a_fixed_order() -> None:
    line = encode_record(billed("a.jpg", 0.000171))
    assert line == (
        b'{"path":"a.jpg","task":"caption","status":"ok","caption":"a dog","attempts":1,"latency_s":0.5,'
        b'"bytes_sent":0,'
        b'"target":"openai:m@h","usage":{"prompt_tokens":812,"completion_tokens":17},"provider":"novita",'
        b'"cost_usd":0.000171,"request_id":"r","ts":1.5}\n'
    )
    plain = decode_line(encode_record(Record("b.jpg", "ok", caption="x", target="hf:m")))
    assert not {"usage", "provider", "cost_usd"} & set(plain)  # targets that report none carry none


def test_the_index_sums_every_records_cost(tmp_path: Path) -> None:
    p = tmp_path / "j.jsonl"
    err = Record("e.jpg", "error", error=ErrorInfo("BadCaption", "refusal", 200, False), target="t",
                 cost_usd=0.25, usage=Usage(1, 1))
    lines = [
        encode_record(billed("a.jpg", 1.0)),
        encode_record(billed("a.jpg", 2.0)),  # paid twice (a --retry-failed or merged journal): counted twice
        encode_record(billed('we"ird\\path.jpg', 0.5)),  # the full parse, not the fast path
        encode_record(billed("no-price.jpg", None)),
        encode_record(err),
        encode_record(Record("plain.jpg", "ok", caption="x", target="hf:m")),
    ]
    p.write_bytes(b"".join(lines))
    index = load_index(p)
    assert index.spent_usd == pytest.approx(3.75)
    assert index.spent_images == 4
    assert "spent_usd=3.75" in repr(index)


def test_a_journal_without_costs_sums_to_nothing(tmp_path: Path) -> None:
    p = tmp_path / "j.jsonl"
    p.write_bytes(encode_record(Record("a.jpg", "ok", caption="a caption mentions ,\"cost_usd\":9", target="t")))
    index = load_index(p)
    assert (index.spent_usd, index.spent_images) == (0.0, 0)  # a quote inside a caption is escaped: no key


def test_a_torn_last_line_costs_nothing_and_a_whole_one_without_newline_counts(tmp_path: Path) -> None:
    p = tmp_path / "j.jsonl"
    good = encode_record(billed("a.jpg", 1.0))
    p.write_bytes(good + encode_record(billed("b.jpg", 2.0))[:-30])
    assert load_index(p).spent_usd == pytest.approx(1.0)
    p.write_bytes(good + encode_record(billed("c.jpg", 4.0)).rstrip(b"\n"))
    assert load_index(p).spent_usd == pytest.approx(5.0)
    p.write_bytes(good + encode_record(billed("d.jpg", 8.0))[:-8] + b"\n\n")  # a bad last line, then blanks
    index = load_index(p)
    assert index.spent_usd == pytest.approx(1.0)
    assert index.spent_images == 1


@settings(max_examples=30, deadline=None)
@given(st.lists(st.one_of(st.none(), st.floats(0, 10, allow_nan=False).map(lambda x: round(x, 9))), max_size=60),
       st.integers(1, 97), st.integers(0, 2**16))
def test_chunk_boundaries_do_not_change_the_sum(
    tmp_path_factory: pytest.TempPathFactory, costs: list[float | None], chunk: int, seed: int
) -> None:
    """Lines straddle chunks of any size; mixed lines (with and without a cost, escaped paths) all count once."""
    rng = random.Random(seed)
    p = tmp_path_factory.getbasetemp() / "chunks.jsonl"
    records = [billed(rng.choice(["a.jpg", "dir/é.jpg", 'q"uote.jpg']) + str(i), c) for i, c in enumerate(costs)]
    p.write_bytes(b"".join(encode_record(r) for r in records))
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(index_module, "CHUNK", chunk)
        index = load_index(p, repair=False)
    known = [c for c in costs if c is not None]
    assert index.spent_images == len(known)
    assert math.isclose(index.spent_usd, math.fsum(known), rel_tol=1e-12, abs_tol=1e-12)
