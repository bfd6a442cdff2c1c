"""``--space``: what a Space name or URL resolves to, and which hosts may see a found token."""

from __future__ import annotations

import pytest

from batchcap.errors import ConfigError, UsageError
from batchcap.service.space import SpaceSettings, is_space_host, parse_inputs, space_url


@pytest.mark.parametrize(("given", "url"), [
    ("acme/blip-captioner", "https://acme-blip-captioner.hf.space/"),
    ("Acme_Labs/Florence.2", "https://acme-labs-florence-2.hf.space/"),
    ("https://huggingface.co/spaces/acme/blip", "https://acme-blip.hf.space/"),
    ("https://acme-blip.hf.space", "https://acme-blip.hf.space/"),
    ("http://127.0.0.1:7860/app/", "http://127.0.0.1:7860/app/"),
])
def test_space_url(given: str, url: str) -> None:
    assert space_url(given) == url


@pytest.mark.parametrize("given", ["blip", "ftp://x/y", "https://user:pw@acme-blip.hf.space", "http://h/?x=1"])
def test_bad_spaces_name_the_flag(given: str) -> None:
    with pytest.raises(ConfigError, match="--space"):
        space_url(given)


def test_only_a_spaces_own_host_gets_a_found_token() -> None:
    assert is_space_host("https://acme-blip.hf.space/")
    assert not is_space_host("http://127.0.0.1:7860/")
    assert not is_space_host("https://hf.space.example.com/")


def test_settings_normalise_the_api_name_and_say_the_target() -> None:
    s = SpaceSettings("acme/blip", "caption", (("prompt", "Describe"),))
    assert s.api_name == "/caption"
    assert s.space_id == "acme/blip"
    assert s.target == "space:acme/blip@/caption"
    assert SpaceSettings("http://127.0.0.1:7860").target == "space:http://127.0.0.1:7860"
    with pytest.raises(ConfigError, match="--space-api"):
        SpaceSettings("acme/blip", "/")


def test_parse_inputs() -> None:
    assert parse_inputs(['prompt=Describe it. a=b', "n=3"]) == (("prompt", "Describe it. a=b"), ("n", "3"))
    with pytest.raises(UsageError, match="NAME=VALUE"):
        parse_inputs(["prompt"])
    with pytest.raises(UsageError, match="twice"):
        parse_inputs(["p=1", "p=2"])
