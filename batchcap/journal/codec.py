"""The journal's line format: one JSON object per finished image, written and read here only.

Line shape (key order is fixed; ``request_id`` is left out when unknown, ``flags`` when empty and
``duplicate_of`` unless the image is a copy captioned through its original)::

    {"path":"a/b.jpg","status":"ok","caption":"...","attempts":1,"latency_s":0.8,
     "bytes_sent":51234,"prepared":true,"original_bytes":4012345,"original_size":[4032,3024],
     "sent_size":[756,1008],"target":"hf:blip","request_id":"r-1","ts":1732579200.1}
    {"path":"c.png","status":"error","error":{"type":"InputError","message":"empty file",
     "http_status":null,"retryable":false},"attempts":1,...}
    {"path":"b/a.jpg","status":"ok","caption":"...","flags":["cut_off"],"duplicate_of":"a/b.jpg","attempts":0,...}

Token-billed targets add, after ``target``, ``"usage":{"prompt_tokens":N,"completion_tokens":M}`` (as the
server reported it, summed over the image's billed attempts), ``"provider"`` (the router's
``x-inference-provider``) and ``"cost_usd"`` when a price is known (an Endpoint's records carry their share of
its busy time)::

    {"path":"a.jpg","status":"ok","caption":"...",...,"target":"openai:m@h","usage":{"prompt_tokens":812,
     "completion_tokens":17},"provider":"novita","cost_usd":0.000171,"request_id":"r-2","ts":1732579200.4}

``prepared`` .. ``sent_size`` are on ok lines of images that went through preparation (issue 8, the
default; absent with ``--max-side 0``): ``bytes_sent`` is the request body, ``original_*`` the file,
``sent_size`` the pixels the model got, upright.
"""

from __future__ import annotations

from typing import Any

import orjson

from batchcap.models import Record

__all__ = ["COST_KEY", "OK_PREFIX", "STATUSES", "STATUS_SEP", "decode_line", "encode_record"]

#: How every line begins, and what separates the path from the status: the index's fast path for ok lines.
OK_PREFIX = b'{"path":"'
STATUS_SEP = b'","status":"'
STATUSES = ("ok", "error")
#: How the cost key appears in a line: the index sums spend by finding it, without parsing the line. Inside a
#: JSON string a quote is always escaped, so this byte sequence only ever starts the real key.
COST_KEY = b',"cost_usd":'


def encode_record(r: Record) -> bytes:
    """One journal line, newline included: a single ``orjson.dumps`` on the hot path."""
    line: dict[str, Any] = {"path": r.path, "status": r.status}
    if r.status == "ok":
        line["caption"] = r.caption
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
    ):
        raise ValueError("not a batchcap journal record")
    return obj



def _scrub(obj: Any) -> Any:
    """Replace lone surrogates in every string so the record can be UTF-8 JSON."""
    if isinstance(obj, str):
        return obj.encode("utf-8", "replace").decode("utf-8")
    if isinstance(obj, dict):
        return {k: _scrub(v) for k, v in obj.items()}
    return obj
