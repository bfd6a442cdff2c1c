"""The event-stream decoder: events cut anywhere by the network come out whole and in order."""

from __future__ import annotations

import pytest

from batchcap.service.space import SseDecoder, SseEvent, parse_events

#: What gradio 6.31 sent for one call (issue 20): a heartbeat while queued, then the outputs.
REAL = (b"event: heartbeat\ndata: null\n\n"
        b'event: complete\ndata: ["Describe: a 64x48 RGB image"]\n\n')


def test_a_real_stream_gives_its_events() -> None:
    assert parse_events(REAL) == [SseEvent("heartbeat", "null"), SseEvent("complete", '["Describe: a 64x48 RGB image"]')]


@pytest.mark.parametrize("size", [1, 2, 3, 7, 64])
def test_chunks_cut_anywhere_give_the_same_events(size: int) -> None:
    body = REAL.replace(b"Describe", "Décrire ✓".encode())  # a cut may fall inside a UTF-8 character
    decoder = SseDecoder()
    events = [e for i in range(0, len(body), size) for e in decoder.feed(body[i:i + size])]
    assert events == parse_events(body)
    assert events[-1].data == '["Décrire ✓: a 64x48 RGB image"]'
    assert not decoder.pending


def test_crlf_cr_comments_multiline_data_and_the_default_name() -> None:
    body = b": keep-alive\r\nevent: error\r\ndata: {\"error\":\r\ndata: null}\r\n\r\ndata: plain\rid: 3\r\r"
    assert parse_events(body) == [SseEvent("error", '{"error":\nnull}'), SseEvent("message", "plain")]


def test_an_unfinished_event_is_not_dispatched() -> None:
    decoder = SseDecoder()
    assert list(decoder.feed(b'event: complete\ndata: ["half"]\n')) == []
    assert decoder.pending


def test_an_endless_line_is_refused_not_buffered_forever() -> None:
    decoder = SseDecoder()
    for _ in range(4):
        list(decoder.feed(b"x" * (1024 * 1024)))
    with pytest.raises(ValueError, match="longer than"):
        list(decoder.feed(b"x" * (1024 * 1024)))
