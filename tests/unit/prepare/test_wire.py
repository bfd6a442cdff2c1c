"""The body limit is counted as each protocol sends: raw for hf, base64 + JSON for hf-json and openai."""

from __future__ import annotations

import pytest

from batchcap.config import RunConfig
from batchcap.models import ImageJob, LoadedImage
from batchcap.prepare import largest_wire_size, raw_wire_size, wire_size_for
from batchcap.service.protocols import make_adapter

CONFIGS = {
    "hf": RunConfig.build(model="m"),
    "hf-json": RunConfig.build(model="m", api="hf-json", parameters={"max_new_tokens": 30}),
    "openai": RunConfig.build(model="m", api="openai", base_url="http://127.0.0.1:1/v1", prompt="Describe " * 40),
}


@pytest.mark.parametrize("api", list(CONFIGS))
def test_wire_size_matches_the_real_body(corpus: dict[str, bytes], api: str) -> None:
    adapter = make_adapter(CONFIGS[api].target)
    wire = wire_size_for(adapter)
    for name in ("tiny.jpg", "web_50k.jpg", "palette.png"):
        data = corpus[name]
        mime = "image/png" if name.endswith(".png") else "image/jpeg"
        body = adapter.build(LoadedImage(ImageJob(name, name, len(data)), data, mime)).body
        assert len(body) <= wire(len(data)) <= len(body) + 32, name  # 16 bytes of slack for the MIME type
    assert (wire is raw_wire_size) == (api == "hf")


def test_several_targets_count_the_largest_envelope() -> None:
    sizes = [wire_size_for(make_adapter(cfg.target)) for cfg in CONFIGS.values()]
    largest = largest_wire_size(sizes)
    assert largest(30_000) == max(size(30_000) for size in sizes)
    assert largest_wire_size([raw_wire_size, raw_wire_size]) is raw_wire_size
