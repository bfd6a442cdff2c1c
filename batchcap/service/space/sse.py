"""Server-sent events, decoded incrementally (the WHATWG rules the Gradio stream follows), with no I/O.

    decoder = SseDecoder()
    for chunk in chunks:                 # bytes as they arrive, cut anywhere (even inside a UTF-8 character)
        for event in decoder.feed(chunk):
            ...                          # SseEvent(event="complete", data='["a red square"]')

Lines end with LF, CRLF or CR; ``event:`` names the event (default ``message``), ``data:`` lines are joined
with LF, a line starting with ``:`` is a comment, a blank line dispatches; an event with no data is dropped.
"""

from __future__ import annotations

import codecs
from collections.abc import Iterator
from dataclasses import dataclass

__all__ = ["MAX_EVENT_BYTES", "SseDecoder", "SseEvent", "parse_events"]

#: Longest event kept (a caption is a few hundred bytes; a generator's outputs a few KB): a stream that never
#: sends a blank line must not grow memory without bound.
MAX_EVENT_BYTES = 4 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class SseEvent:
    """One dispatched event: its name and its data lines joined by LF."""

    event: str
    data: str


class SseDecoder:
    """Feed bytes, get whole events; ``close()`` at the end of the stream; ``pending``: an event left unfinished."""

    __slots__ = ("_buffer", "_data", "_event", "_size", "_text")

    def __init__(self) -> None:
        self._text = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._buffer = ""
        self._event = ""
        self._data: list[str] = []
        self._size = 0

    def feed(self, chunk: bytes) -> Iterator[SseEvent]:
        """The events completed by ``chunk``, in order."""
        self._buffer += self._text.decode(chunk)
        while True:
            cut = _line_end(self._buffer)
            if cut is None:
                break
            end, after = cut
            line, self._buffer = self._buffer[:end], self._buffer[after:]
            if (event := self._line(line)) is not None:
                yield event
        if len(self._buffer) > MAX_EVENT_BYTES:
            raise ValueError(f"an event-stream line is longer than {MAX_EVENT_BYTES} bytes")

    def close(self) -> Iterator[SseEvent]:
        """The stream ended: a last line ended by a lone CR still counts (an unfinished event does not)."""
        if self._buffer.endswith("\r"):
            line, self._buffer = self._buffer[:-1], ""
            if (event := self._line(line)) is not None:
                yield event

    @property
    def pending(self) -> bool:
        """A field was read for an event that no blank line has dispatched yet."""
        return bool(self._data or self._event or self._buffer)

    def _line(self, line: str) -> SseEvent | None:
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            return None
        name, sep, value = line.partition(":")
        if sep and value.startswith(" "):
            value = value[1:]
        if name == "event":
            self._event = value
        elif name == "data":
            self._data.append(value)
            self._size += len(value)
            if self._size > MAX_EVENT_BYTES:
                raise ValueError(f"an event is longer than {MAX_EVENT_BYTES} bytes")
        return None  # id, retry and unknown fields mean nothing to a one-shot reader

    def _dispatch(self) -> SseEvent | None:
        data, event = self._data, self._event or "message"
        self._data, self._event, self._size = [], "", 0
        if not data:
            return None
        return SseEvent(event, "\n".join(data))


def _line_end(text: str) -> tuple[int, int] | None:
    """Where the first line ends and the next starts; a CR at the very end waits for a possible LF."""
    lf, cr = text.find("\n"), text.find("\r")
    if cr == -1 or (lf != -1 and lf < cr):
        return None if lf == -1 else (lf, lf + 1)
    if cr + 1 == len(text):
        return None
    return (cr, cr + 2) if text[cr + 1] == "\n" else (cr, cr + 1)


def parse_events(body: bytes) -> list[SseEvent]:
    """Every complete event of a whole stream (an unfinished last event is not one)."""
    decoder = SseDecoder()
    return [*decoder.feed(body), *decoder.close()]
