"""Tell a person the run is over: one JSON object POSTed to a webhook, in a shape ntfy, Slack and Discord take.

One object carries the facts (``state``, ``ok``, ``errors``, ``out``, ``elapsed_s``, ``reason``) for a script,
and the same news as one line of text under each service's own name for it: ``text`` (Slack incoming webhooks
require it), ``content`` (Discord webhooks require it, at most 2000 characters), ``message`` and ``title`` (what
ntfy reads when the object is POSTed to the server's root URL with its ``topic``; POSTed to a topic URL, ntfy
shows the body as the message). Services ignore the fields they do not know.

Sent with the standard library, once, at the very end, bounded by a timeout: a webhook that is down must cost
a warning line, never the run (``NotifyFailed``). The URL is a secret (a webhook's path is its token): it is
never in a message.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from typing import Any, Literal
from urllib.parse import urlsplit

import orjson

from batchcap.errors import NotifyFailed
from batchcap.version import __version__
from batchcap.words import plural

__all__ = ["RunState", "notify", "payload", "topic_of"]

#: How the run ended: every image captioned, finished with error records, interrupted (Ctrl-C, SIGTERM), or
#: stopped by a run-level fault.
RunState = Literal["done", "errors", "interrupted", "aborted"]

_DISCORD_MAX = 2000
_TIMEOUT_S = 10.0


def payload(
    *, state: RunState, ok: int, errors: int, skipped: int, out: str, elapsed: float, reason: str | None = None,
    topic: str | None = None,
) -> dict[str, Any]:
    """The one JSON object: the facts, and the same news as text for each service."""
    words = {"done": "done", "errors": "finished with errors", "interrupted": "interrupted (resumable)",
             "aborted": "stopped (resumable)"}[state]
    text = (f"batchcap {words}: {ok} ok, {plural(errors, 'error')}, {skipped} already done in {elapsed:.0f} s; "
            f"results in {out}")
    if reason:
        text += f"; {reason}"
    body: dict[str, Any] = {
        "state": state, "ok": ok, "errors": errors, "skipped": skipped, "out": out, "elapsed_s": round(elapsed, 1),
        "reason": reason, "text": text, "content": text[:_DISCORD_MAX], "message": text,
        "title": f"batchcap {words}",
    }
    if topic:
        body["topic"] = topic
    return body


def topic_of(url: str) -> str | None:
    """The last path segment of the URL (an ntfy topic URL's topic), or None."""
    segment = urlsplit(url).path.rstrip("/").rsplit("/", 1)[-1]
    return segment or None


def notify(url: str, body: dict[str, Any], *, timeout: float = _TIMEOUT_S) -> int:
    """POST ``body`` as JSON to ``url``; the HTTP status. ``NotifyFailed`` (without the URL) if it did not go."""
    host = urlsplit(url).hostname or "?"
    request = urllib.request.Request(
        url, data=orjson.dumps(body), method="POST",
        headers={"Content-Type": "application/json", "User-Agent": f"batchcap/{__version__}",
                 "Title": str(body.get("title", "batchcap"))},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status = int(response.status)
    except urllib.error.HTTPError as exc:
        raise NotifyFailed(f"the --notify webhook at {host} answered HTTP {exc.code}") from None
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        reason = getattr(exc, "reason", exc)
        raise NotifyFailed(f"the --notify webhook at {host} could not be reached ({reason})") from None
    return status
