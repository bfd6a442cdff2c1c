"""A real Gradio app on loopback, for the Space tests of issue 20 (started by ``test_space_gradio.py``).

    python gradio_app.py PORT COUNTS_FILE

``/caption(image, prompt)`` takes 0.2 s, one call at a time (Gradio's default concurrency limit), with room
for 4 waiting (``queue(max_size=4)``); ``/quota_caption(image)`` answers its first 3 calls with ZeroGPU's
quota refusal ("... retry in 0:00:05") and captions after that. Every call is counted in COUNTS_FILE (JSON), with
``busy_s``, the seconds ``/caption`` spent working.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from pathlib import Path

import gradio as gr

LATENCY = 0.2
QUOTA_CALLS = 3
QUOTA = "You have exceeded your GPU quota (60s requested vs. 56s left). retry in 0:00:05"

port, counts_file = int(sys.argv[1]), Path(sys.argv[2])
counts: dict[str, float] = {"caption": 0, "quota_caption": 0, "quota_refused": 0, "busy_s": 0.0}
lock = threading.Lock()


def count(key: str, amount: float = 1) -> float:
    with lock:
        counts[key] += amount
        tmp = counts_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(counts))
        os.replace(tmp, counts_file)
        return counts[key]


def describe(image: object) -> str:
    width, height = image.size  # type: ignore[attr-defined]
    return f"a {width}x{height} image"


def caption(image: object, prompt: str) -> str:
    started = time.perf_counter()
    count("caption")
    time.sleep(LATENCY)
    text = describe(image)
    count("busy_s", time.perf_counter() - started)  # the app's own time: the anchor of benchmarks/bench_space.py
    return text


def quota_caption(image: object) -> str:
    if count("quota_caption") <= QUOTA_CALLS:
        count("quota_refused")
        raise gr.Error(QUOTA)
    return describe(image)


with gr.Blocks() as demo:
    picture = gr.Image(type="pil", label="image")
    prompt = gr.Textbox(value="Describe this image.", label="prompt")
    text = gr.Textbox(label="output")
    gr.Button("caption").click(caption, [picture, prompt], text, api_name="caption")
    gr.Button("quota").click(quota_caption, [picture], text, api_name="quota_caption")

demo.queue(default_concurrency_limit=1, max_size=4)
demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=False, quiet=True)
