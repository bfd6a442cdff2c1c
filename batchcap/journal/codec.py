"""The journal's line format: one JSON object per task answered for an image, written and read here only.

Line shape (key order is fixed: the resume index reads the first five keys of ok lines without a parse;
``fingerprint`` and ``digest`` are left out when unknown, ``data`` unless the task has a schema,
``request_id`` when unknown, ``flags`` when empty and ``duplicate_of`` unless the answer was copied)::

    {"path":"a/b.jpg","task":"caption","status":"ok","fingerprint":"<24 hex>","digest":"<32 hex>",
     "caption":"...","attempts":1,"latency_s":0.8,"bytes_sent":51234,"prepared":true,
     "original_bytes":4012345,"original_size":[4032,3024],"sent_size":[756,1008],"target":"hf:blip",
     "request_id":"r-1","ts":1732579200.1}
    {"path":"a/b.jpg","task":"tags","status":"ok",...,"caption":"{\"tags\":[\"cat\"]}","data":{"tags":["cat"]},...}
    {"path":"c.png","task":"caption","status":"error","error":{"type":"InputError","message":"empty file",
     "http_status":null,"retryable":false},"attempts":1,...}
    {"path":"b/a.jpg","task":"caption","status":"ok",...,"flags":["cut_off"],"duplicate_of":"a/b.jpg","attempts":0,...}

``task`` names the question (``batchcap.tasks``); lines written before issue 16 have none and mean
``caption``. ``fingerprint`` says what produced the answer (``batchcap.tasks.fingerprint``: 8 hex of the
task's settings, then 16 hex of what was asked of this image); ``digest`` is the image file's content
(``batchcap.source.digest``). ``prepared`` .. ``sent_size`` are on ok lines of images that went through
preparation (issue 8, the default; absent with ``--max-side 0``): ``bytes_sent`` is the request body,
``original_*`` the file, ``sent_size`` the pixels the model got, upright.

Token-billed targets add, after ``target``, ``"usage":{"prompt_tokens":N,"completion_tokens":M}`` (as the
server reported it, summed over the image's billed attempts), ``"provider"`` (the router's
``x-inference-provider``) and ``"cost_usd"`` when a price is known (an Endpoint's records carry their share of
its busy time)::

    {"path":"a.jpg","task":"caption","status":"ok",...,"target":"openai:m@h","usage":{"prompt_tokens":812,
     "completion_tokens":17},"provider":"novita","cost_usd":0.000171,"request_id":"r-2","ts":1732579200.4}
"""

from __future__ import annotations

from typing import Any

import orjson

from batchcap.models import DEFAULT_TASK, Record

__all__ = [
    "COST_KEY",
    "FINGERPRINTED_OK",
    "OK_PREFIX",
    "STATUSES",
    "STATUS_SEP",
    "TASK_SEP",
    "decode_line",
    "encode_record",
    "record_task",
    "task_key_bytes",
]

#: How every line begins, and what separates the path from the task and the task from the status: the
#: index's fast path for ok lines (lines before issue 16 go straight from the path to the status).
OK_PREFIX = b'{"path":"'
TASK_SEP = b'","task":"'
STATUS_SEP = b'","status":"'
#: What follows the task on an ok line with a fingerprint; the fingerprint's 24 hex come right after it.
FINGERPRINTED_OK = b'","status":"ok","fingerprint":"'
STATUSES = ("ok", "error")
#: How the cost key appears in a line: the index sums spend by finding it, without parsing the line. Inside a
#: JSON string a quote is always escaped, so this byte sequence only ever starts the real key.
COST_KEY = b',"cost_usd":'


def task_key_bytes(path: str, task: str) -> bytes:
    """The bytes the index hashes for (path, task): as they stand between ``{"path":"`` and the status on
    a line whose path needs no JSON escape (so the fast path can hash a slice of the line itself)."""
    return path.encode("utf-8", "surrogatepass") + TASK_SEP + task.encode("utf-8", "surrogatepass")


def record_task(obj: dict[str, Any]) -> str:
    """A decoded line's task: ``caption`` for lines written before tasks existed."""
    task = obj.get("task")
    return task if isinstance(task, str) else DEFAULT_TASK


def encode_record(r: Record) -> bytes:
    """One journal line, newline included: a single ``orjson.dumps`` on the hot path."""
    line: dict[str, Any] = {"path": r.path, "task": r.task, "status": r.status}
    if r.fingerprint is not None:
        line["fingerprint"] = r.fingerprint
    if r.digest is not None:
        line["digest"] = r.digest
    if r.status == "ok":
        line["caption"] = r.caption
        if r.data is not None:
            line["data"] = r.data
    else:
        e = r.error
        line["error"] = (
            None
            if e is None
            else {
                "type": e.type,
                "message": e.message,
                "http_status": e.http_status,
                "retryable": e.retryable,
            }
        )
    if r.flags:
        line["flags"] = list(r.flags)
    if r.duplicate_of is not None:
        line["duplicate_of"] = r.duplicate_of
    line["attempts"] = r.attempts
    line["latency_s"] = r.latency_s
    line["bytes_sent"] = r.bytes_sent
    if r.prep is not None:
        p = r.prep
        line["prepared"] = p.prepared
        line["original_bytes"] = p.original_bytes
        line["original_size"] = [p.original_width, p.original_height]
        line["sent_size"] = [p.width, p.height]
    line["target"] = r.target
    if r.usage is not None:
        line["usage"] = {"prompt_tokens": r.usage.prompt_tokens, "completion_tokens": r.usage.completion_tokens}
    if r.provider is not None:
        line["provider"] = r.provider
    if r.cost_usd is not None:
        line["cost_usd"] = r.cost_usd
    if r.request_id is not None:
        line["request_id"] = r.request_id
    line["ts"] = r.ts
    try:
        return orjson.dumps(line, option=orjson.OPT_APPEND_NEWLINE)
    except orjson.JSONEncodeError:
        # A lone surrogate (e.g. "\ud800" decoded from a service's JSON) is not UTF-8; keep the
        # record and replace the bad code point rather than lose a paid-for caption.
        return orjson.dumps(_scrub(line), option=orjson.OPT_APPEND_NEWLINE)


def decode_line(line: bytes) -> dict[str, Any]:
    """Parse one journal line; ``ValueError`` unless it is an object with a string path and a status."""
    obj = orjson.loads(line)
    if (
        not isinstance(obj, dict)
        or not isinstance(obj.get("path"), str)
        or obj.get("status") not in STATUSES
        or not isinstance(obj.get("task", DEFAULT_TASK), str)
    ):
        raise ValueError("not a batchcap journal record")
    return obj


def _scrub(obj: Any) -> Any:
    """Replace lone surrogates in every string so the record can be UTF-8 JSON."""
    if isinstance(obj, str):
        return obj.encode("utf-8", "replace").decode("utf-8")
    if isinstance(obj, dict):
        return {k: _scrub(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_scrub(v) for v in obj]
    return obj
