"""Rate limits as the server counts them: its quota headers, or, when it sends none, a fixed window learned
from the pattern of its 429s. Pure, with the time passed in.

Servers say how they count in three header families (protocol.md section 9), read by :func:`quota_from_headers`:

* IETF ``RateLimit: "api";r=0;t=55`` and ``RateLimit-Policy: "fixed window";"api";q=500;w=300`` (the Hub),
  and the older drafts' ``RateLimit-Remaining`` / ``-Reset`` / ``-Limit`` (or ``limit=, remaining=, reset=``);
* OpenAI-style ``x-ratelimit-remaining-requests: 0``, ``x-ratelimit-reset-requests: 6m0s``,
  ``x-ratelimit-limit-requests: 60`` (also ``-tokens``, and GitHub's bare ``x-ratelimit-*`` with an epoch reset);
* ``Retry-After`` on a 429.

:class:`ServerPace` turns what they say into a spacing between requests: ``remaining`` requests left for
``reset`` seconds are spread evenly over them; none left holds every request until the reset; a policy of ``q``
per ``w`` seconds paces at ``q / w``. Every answer may carry new numbers, so the pace follows the server's count.

Without any header (LiteLLM's ``rpm: 20``, counted per calendar minute), :class:`WindowLearner` recognises a
fixed window from the 429s: a spell of them means the window's quota is spent; fixed windows are counted on
epoch-aligned boundaries of a second, a minute or an hour (how LiteLLM, Redis fixed-window limiters and the
``limits`` library count), so the one probe (``flow.circuit``) goes just after the next boundary of each length
in turn. The first length whose boundary lets the probe through is the window, and the requests that got through
in the window before it are its quota: the pace becomes ``quota / window`` (a little under it), so a 20-per-minute
limit gives close to 20 captions a minute with a handful of 429s, once, instead of one per image.
"""

from __future__ import annotations

import math
import re
from collections import deque
from collections.abc import Mapping

from batchcap.flow.retry import header, parse_retry_after
from batchcap.models import Quota

__all__ = ["CANDIDATE_WINDOWS", "SLACK", "ServerPace", "WindowLearner", "parse_duration", "quota_from_headers"]

#: Fixed-window lengths tried in turn, in seconds: per second, per minute, per hour (how limits are stated).
CANDIDATE_WINDOWS = (1.0, 60.0, 3600.0)
#: A learned or stated pace runs this much slower than the quota, so clock skew and network jitter between us
#: and the server cannot put one request too many into a window (20 per 61.2 s for 20 per minute).
SLACK = 1.02
#: Seconds after a candidate boundary that the probe goes out (the server's clock may be a little behind).
MARGIN = 0.05
#: Probes after the last candidate failed: exponential from 1 s, at most this far apart.
_PROBE_CAP = 60.0
#: Successes remembered to count a window's quota (a quota above this is paced by the bucket anyway).
_REMEMBER = 4096
#: A reset above this many seconds is an epoch timestamp (GitHub's ``x-ratelimit-reset``), not a delay.
_EPOCH = 1e9

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")


def parse_duration(text: str | None) -> float | None:
    """Seconds from OpenAI's reset form (``1s``, ``6m0s``, ``20ms``, ``1h2m3.5s``) or a plain number."""
    if text is None:
        return None
    text = text.strip().strip('"')
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        pass
    else:
        return value if math.isfinite(value) and value >= 0 else None
    total, pos = 0.0, 0
    for match in _DURATION.finditer(text):
        if match.start() != pos:
            return None
        number, unit = float(match.group(1)), match.group(2)
        total += number * {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}[unit]
        pos = match.end()
    return total if pos == len(text) and pos > 0 else None


def _number(text: str | None) -> float | None:
    if text is None:
        return None
    try:
        value = float(text.strip().strip('"'))
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _items(value: str) -> list[dict[str, str]]:
    """Structured-field list items: ``"api";r=0;t=55, "b";r=5`` -> ``[{"r": "0", "t": "55"}, ...]``.

    A bare first member (``100;w=60``, an older draft's policy) is kept as ``q``; the dictionary form
    ``limit=100, remaining=0, reset=5`` comes back as one item.
    """
    items: list[dict[str, str]] = []
    for raw in value.split(","):
        params: dict[str, str] = {}
        for i, part in enumerate(raw.split(";")):
            key, sep, val = part.partition("=")
            if sep:
                params[key.strip().lower()] = val.strip().strip('"')
            elif i == 0 and _number(part) is not None:
                params["q"] = part.strip()
        items.append(params)
    if len(items) > 1 and all(len(params) <= 1 for params in items):  # the dictionary form
        items = [{key: val for params in items for key, val in params.items()}]
    return items


def _first(params: Mapping[str, str], *names: str) -> float | None:
    for name in names:
        if name in params:
            return _number(params[name])
    return None


def _tightest(quotas: list[tuple[float | None, float | None]]) -> tuple[float | None, float | None]:
    """Of several ``(remaining, reset)`` pairs, the one that allows the fewest requests per second."""
    best: tuple[float | None, float | None] = (None, None)
    best_rate = math.inf
    for remaining, reset in quotas:
        if remaining is None:
            continue
        rate = 0.0 if remaining <= 0 else (remaining / reset if reset else math.inf)
        if rate < best_rate:
            best, best_rate = (remaining, reset), rate
    return best


def _reset_seconds(value: float | None, now_wall: float) -> float | None:
    if value is None:
        return None
    if value > _EPOCH:  # an epoch timestamp (GitHub style)
        return max(0.0, value - now_wall)
    return max(0.0, value)


def quota_from_headers(headers: Mapping[str, str], *, now_wall: float) -> Quota | None:
    """What an answer's rate-limit headers say, or None when it has none. ``now_wall`` is Unix time (for a
    ``Retry-After`` date and an epoch reset)."""
    pairs: list[tuple[float | None, float | None]] = []
    limit = window = None
    ietf = header(headers, "RateLimit")
    if ietf:
        for params in _items(ietf):
            reset = _reset_seconds(_first(params, "t", "reset"), now_wall)
            pairs.append((_first(params, "r", "remaining"), reset))
            limit = limit if limit is not None else _first(params, "limit")
    policy = header(headers, "RateLimit-Policy")
    if policy:
        per_second = math.inf
        for params in _items(policy):
            q, w = _first(params, "q"), _first(params, "w")
            if q is not None and w and q / w < per_second:
                per_second, limit, window = q / w, q, w
    split = (header(headers, "RateLimit-Remaining"), header(headers, "RateLimit-Reset"))
    if split[0] is not None:
        pairs.append((_number(split[0]), _reset_seconds(_number(split[1]), now_wall)))
        limit = limit if limit is not None else _number(header(headers, "RateLimit-Limit"))
    for suffix in ("-requests", "-tokens", ""):
        remaining = _number(header(headers, f"x-ratelimit-remaining{suffix}"))
        if remaining is None:
            continue
        reset_text = header(headers, f"x-ratelimit-reset{suffix}")
        reset = parse_duration(reset_text)
        reset = _reset_seconds(reset, now_wall)
        if suffix == "-tokens" and remaining > 0:
            continue  # tokens per request are unknown: only an empty token budget says anything
        pairs.append((remaining, reset))
        if suffix != "-tokens" and limit is None:
            limit = _number(header(headers, f"x-ratelimit-limit{suffix}"))
    retry_after = parse_retry_after(header(headers, "Retry-After"), now=now_wall)
    remaining, reset = _tightest(pairs)
    if remaining is None and limit is None and window is None and retry_after is None:
        return None
    return Quota(remaining=remaining, reset=reset, limit=limit, window=window, retry_after=retry_after)


class ServerPace:
    """The spacing between requests that the server's own count allows, and a hold while its quota is spent.

    ``reserve(now)`` books the next request and answers how long it must wait (0.0 while unpaced), in call
    order like ``TokenBucket.reserve``; ``observe(now, quota)`` takes each answer's headers; ``learned`` takes
    a window that :class:`WindowLearner` found. Monotonic seconds throughout.
    """

    __slots__ = ("_hold_until", "_next", "_spacing", "active", "source")

    def __init__(self) -> None:
        self._hold_until = -math.inf
        self._next = -math.inf  # the earliest start of the next request
        self._spacing = 0.0  # seconds between requests; 0: unpaced
        self.source = ""  #: what set the pace: "headers" or "learned" (for the progress line)
        #: whether anything paces or holds requests (else ``reserve`` always answers 0.0): read per request
        self.active = False

    @property
    def spacing(self) -> float:
        """Seconds between two requests (0.0: unpaced)."""
        return self._spacing

    @property
    def hold_until(self) -> float:
        """No request starts before this (``-inf``: no hold)."""
        return self._hold_until

    def observe(self, now: float, quota: Quota) -> None:
        """An answer's quota: hold until the reset when nothing is left; else spread what is left evenly."""
        if quota.remaining is not None and quota.reset is not None:
            if quota.remaining <= 0:
                self._hold_until = max(self._hold_until, now + quota.reset)
                self.active = True
            else:
                spacing = quota.reset / quota.remaining
                if quota.limit and quota.window:  # never slower than the stated policy allows
                    spacing = min(spacing, quota.window / quota.limit * SLACK)
                self._set(spacing, "headers")
        elif quota.limit and quota.window:
            self._set(quota.window / quota.limit * SLACK, "headers")

    def learned(self, spacing: float, *, last: float) -> None:
        """A fixed window found from the 429s (``WindowLearner.confirmed``); ``last`` is when the request that
        proved it (the first of the new window) went out: the next one keeps its distance."""
        self._set(spacing, "learned")
        self._next = max(self._next, last + spacing)

    def _set(self, spacing: float, source: str) -> None:
        if math.isfinite(spacing) and spacing >= 0:
            self._spacing = spacing
            self.source = source
            self.active = self.active or spacing > 0

    def reserve(self, now: float) -> float:
        """Book the next request; the seconds it waits first (for the hold, then for its turn)."""
        start = max(now, self._hold_until, self._next)
        if self._spacing > 0:
            self._next = start + self._spacing
        return start - now

    def __repr__(self) -> str:
        pace = f"1 per {self._spacing:.3g}s" if self._spacing else "unpaced"
        return f"<ServerPace {pace} hold_until={self._hold_until:g} source={self.source or '-'}>"


class WindowLearner:
    """A fixed window and its quota, from the 429s of a server that sends no rate-limit header.

    Wall-clock seconds (the boundaries are the server's calendar). ``success(sent)`` for each request that got
    through (its send time); ``exhausted(now)`` when a spell of 429s says the quota is spent: the time of the
    first probe; ``refuted(now)`` when the probe got a 429 too: the time of the next; ``confirmed(sent)`` when
    it got through: the spacing learned, or None when the probe was not on a candidate boundary.
    """

    __slots__ = ("_boundary", "_candidates", "_refuted", "_sent", "_stage", "window")

    def __init__(self, candidates: tuple[float, ...] = CANDIDATE_WINDOWS) -> None:
        self._candidates = candidates
        self._sent: deque[float] = deque(maxlen=_REMEMBER)
        self._stage = 0
        self._refuted: set[float] = set()
        self._boundary: float | None = None  # the boundary the pending probe follows
        self.window: float | None = None  #: the window length learned last (None: none yet)

    def success(self, sent: float) -> None:
        self._sent.append(sent)

    def exhausted(self, now: float) -> float:
        """The quota is spent: probe just after the next boundary of the shortest candidate window."""
        self._stage = 0
        self._refuted = set()
        return self._plan(now)

    def refuted(self, now: float) -> float:
        """The probe was refused: that window length is ruled out; the time of the next probe."""
        if self._boundary is not None and self._stage < len(self._candidates):
            self._refuted.add(self._candidates[self._stage])
        self._stage += 1
        return self._plan(now)

    def _plan(self, now: float) -> float:
        if self._stage < len(self._candidates):
            w = self._candidates[self._stage]
            self._boundary = (math.floor(now / w) + 1) * w
            return self._boundary + MARGIN
        self._boundary = None
        return now + min(_PROBE_CAP, 2.0 ** (self._stage - len(self._candidates)))

    def confirmed(self, sent: float) -> float | None:
        """The probe sent at ``sent`` got through: the learned spacing (seconds per request), or None."""
        boundary, self._boundary = self._boundary, None
        if boundary is None or not boundary <= sent < boundary + 1.0:
            return None
        for w in self._candidates:  # the shortest consistent length: a minute boundary is a second's too
            if w in self._refuted or not math.isclose(boundary / w, round(boundary / w), abs_tol=1e-6):
                continue
            quota = sum(1 for t in self._sent if boundary - w <= t < boundary)
            if quota:
                self.window = w
                return w / quota * SLACK
        return None

    def __repr__(self) -> str:
        return (f"<WindowLearner window={self.window} stage={self._stage} refuted={sorted(self._refuted)} "
                f"remembered={len(self._sent)}>")
