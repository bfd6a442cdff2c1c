"""A flag that changes nothing for the chosen target is a one-line warning, never silence."""

from __future__ import annotations

from pathlib import Path

from batchcap.cli.commands import build_parser
from batchcap.cli.options import config_from_args, ineffective_flags
from batchcap.run import run_targets


def _warnings(*argv: str) -> list[str]:
    ns = build_parser("run").parse_args(["run", ".", *argv])
    cfg = config_from_args(ns, input_dir=Path("."))
    return ineffective_flags(ns, cfg, run_targets(cfg))


def test_a_prompt_for_a_raw_bytes_endpoint_is_named() -> None:
    lines = _warnings("--endpoint", "https://x.example/", "--prompt", "Describe it", "--max-tokens", "20")
    assert [line.split(" has no effect")[0] for line in lines] == ["--prompt", "--max-tokens"]
    assert all("--api hf" in line and "--api openai" in line for line in lines)


def test_flags_a_target_uses_say_nothing() -> None:
    assert _warnings("--api", "openai", "--model", "m", "--base-url", "https://x.example/v1", "--prompt", "p") == []
    assert _warnings("--model", "m") == []


def test_with_several_targets_the_deaf_ones_are_named() -> None:
    lines = _warnings("--target", "a=hf:m", "--target", "b=openai:m@https://x.example/v1", "--prompt", "p")
    assert len(lines) == 1
    assert "target a (--api hf)" in lines[0]
    assert "target b" not in lines[0]
