"""Profiles, flags, validation messages and token discovery."""

from __future__ import annotations

from pathlib import Path

import pytest

from batchcap.config import RunConfig, Secret, find_token, load_profile, parse_rate
from batchcap.errors import ConfigError

CONFIGS = sorted((Path(__file__).parents[2] / "configs").glob("*.toml"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_every_shipped_profile_loads(path: Path) -> None:
    cfg = RunConfig().merged(load_profile(path))
    if path.name == "endpoint.toml":
        cfg = cfg.merged({"endpoint": "https://x.endpoints.huggingface.cloud"})
    cfg.validate()


def test_shipped_profiles_exist() -> None:
    assert {p.name for p in CONFIGS} >= {"free-api.toml", "endpoint.toml", "openai-vlm.toml", "emulator.toml"}


def test_urls() -> None:
    assert RunConfig(model="org/m").url == "https://router.huggingface.co/hf-inference/models/org/m"
    assert RunConfig(model="org/m", api_base="http://127.0.0.1:9/").url == "http://127.0.0.1:9/models/org/m"
    assert RunConfig(endpoint="https://e.cloud/").url == "https://e.cloud/"
    assert RunConfig(api="openai", model="m", base_url="https://router.huggingface.co/v1").url == (
        "https://router.huggingface.co/v1/chat/completions"
    )
    assert RunConfig(api="openai", model="m", base_url="http://h:1").url == "http://h:1/v1/chat/completions"


@pytest.mark.parametrize(
    ("cfg", "hint"),
    [
        (RunConfig(), "--model"),
        (RunConfig(model="m", concurrency=0), "concurrency"),
        (RunConfig(model="m", api_base="https://api-inference.huggingface.co"), "router.huggingface.co"),
        (RunConfig(model="m", api_base="ftp://x"), "http(s)"),
        (RunConfig(endpoint="https://user:pw@e.cloud"), "credentials"),
        (RunConfig(api="openai", model="m"), "--base-url"),
        (RunConfig(model="m", rate=0.0), "rate"),
        (RunConfig(model="m", timeout=0), "timeout"),
    ],
)
def test_validation_names_the_fix(cfg: RunConfig, hint: str) -> None:
    with pytest.raises(ConfigError, match=None) as info:
        cfg.validate()
    assert hint in str(info.value)


def test_profile_rejects_typos_and_tokens(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[limits]\nconcurency = 3\n")
    with pytest.raises(ConfigError, match="unknown setting 'concurency'"):
        load_profile(bad)
    bad.write_text('token = "hf_secret"\n')
    with pytest.raises(ConfigError, match="tokens do not belong"):
        load_profile(bad)
    bad.write_text("[limits\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_profile(bad)
    with pytest.raises(ConfigError, match="does not exist"):
        load_profile(tmp_path / "missing.toml")


def test_rate_parsing() -> None:
    assert parse_rate("unlimited") is None
    assert parse_rate("2.5") == 2.5
    assert parse_rate(3) == 3.0
    with pytest.raises(ConfigError):
        parse_rate("fast")
    with pytest.raises(ConfigError):
        parse_rate(-1)


def test_token_discovery_order(tmp_path: Path) -> None:
    home = tmp_path / "hf"
    home.mkdir()
    (home / "token").write_text("hf_from_file\n")
    tf = tmp_path / "tf"
    tf.write_text("  hf_from_flag \n")
    assert find_token(tf, env={"HF_TOKEN": "hf_env"})[0] == Secret("hf_from_flag")
    assert find_token(None, env={"HF_TOKEN": "hf_env", "HF_HOME": str(home)})[0] == Secret("hf_env")
    assert find_token(None, env={"HUGGING_FACE_HUB_TOKEN": "hf_old"})[0] == Secret("hf_old")
    token, source = find_token(None, env={"HF_HOME": str(home)})
    assert token == Secret("hf_from_file")
    assert source == str(home / "token")
    assert find_token(None, env={"HF_HOME": str(tmp_path / "none")}) == (None, "none")


def test_secret_never_renders() -> None:
    s = Secret("hf_abcdef")
    assert "hf_abcdef" not in repr(s)
    assert "hf_abcdef" not in f"{s} {s!r} {[s]}"
    assert s.reveal() == "hf_abcdef"


def test_rate_defaults_to_the_target() -> None:
    assert RunConfig(model="m").request_rate == 2.0  # the shared free serverless API: conservative
    assert RunConfig(endpoint="https://x.endpoints.huggingface.cloud").request_rate is None  # paid: no cap
    assert RunConfig(api="openai", model="m", base_url="http://127.0.0.1:1/v1").request_rate is None
    assert RunConfig(endpoint="https://x.example", rate=5.0).request_rate == 5.0  # what the user set wins
    assert RunConfig(model="m", rate=None).request_rate is None
    assert parse_rate("auto") == "auto"
    assert RunConfig(model="m").public_dict()["request_rate"] == 2.0
