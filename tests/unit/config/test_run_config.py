"""Settings: one frozen object per subsystem, composed by RunConfig; profiles, flags, validation, token discovery."""

from __future__ import annotations

from pathlib import Path

import pytest

from batchcap.config import (
    RunConfig,
    did_you_mean,
    load_profile,
    profile_config,
    setting_refs,
    user_setting_names,
)
from batchcap.config.runconfig import GROUPS
from batchcap.errors import ConfigError
from batchcap.flow.settings import Limits, parse_rate
from batchcap.prepare.settings import PrepareSettings
from batchcap.service.auth import Secret, find_token

CONFIGS = sorted((Path(__file__).parents[3] / "configs").glob("*.toml"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_every_shipped_profile_loads(path: Path) -> None:
    cfg = profile_config(path)
    if path.name == "endpoint.toml":
        cfg = cfg.with_flat({"endpoint": "https://x.endpoints.huggingface.cloud"})
    cfg.validate()


def test_shipped_profiles_exist() -> None:
    assert {p.name for p in CONFIGS} >= {"free-api.toml", "endpoint.toml", "openai-vlm.toml", "emulator.toml"}


def test_flat_names_reach_the_group_that_declares_them() -> None:
    cfg = RunConfig.build(model="org/m", concurrency="fixed:8", rate="unlimited", max_side="768", burst=3,
                          dedupe="near", quality_retries=0, out="x/y.jsonl", input_dir="photos")
    assert cfg.target.model == "org/m"
    assert (cfg.limits.ceiling, cfg.limits.adaptive, cfg.limits.rate, cfg.limits.burst) == (8, False, None, 3)
    assert cfg.prepare.max_side == 768
    assert cfg.source.dedupe == "near"
    assert cfg.quality.quality_retries == 0
    assert cfg.out == Path("x/y.jsonl")
    assert cfg.input_dir == Path("photos")
    flat = cfg.flat()
    assert flat["max_side"] == 768
    assert flat["model"] == "org/m"


def test_every_setting_is_declared_once() -> None:
    names = [ref.name for ref in setting_refs()]
    assert len(names) == len(set(names))
    assert set(GROUPS) == {"source", "target", "routing", "limits", "prepare", "quality", "budget", "tasks"}


def test_urls() -> None:
    assert RunConfig.build(model="org/m").target.url == "https://router.huggingface.co/hf-inference/models/org/m"
    assert RunConfig.build(model="org/m", api_base="http://127.0.0.1:9/").target.url == "http://127.0.0.1:9/models/org/m"
    assert RunConfig.build(endpoint="https://e.cloud/").target.url == "https://e.cloud/"
    assert RunConfig.build(api="openai", model="m", base_url="https://router.huggingface.co/v1").target.url == (
        "https://router.huggingface.co/v1/chat/completions"
    )
    assert RunConfig.build(api="openai", model="m", base_url="http://h:1").target.url == "http://h:1/v1/chat/completions"


@pytest.mark.parametrize(
    ("flat", "hint"),
    [
        ({}, "--model"),
        ({"model": "m", "concurrency": 0}, "--concurrency"),
        ({"model": "m", "api_base": "https://api-inference.huggingface.co"}, "router.huggingface.co"),
        ({"model": "m", "api_base": "ftp://x"}, "http(s)"),
        ({"endpoint": "htp://x"}, "--endpoint must be an http(s) URL"),
        ({"endpoint": "https://user:pw@e.cloud"}, "credentials"),
        ({"api": "openai", "model": "m"}, "--base-url"),
        ({"api": "openai", "base_url": "http://h/v1"}, "--api openai needs --model"),
        ({"model": "m", "rate": 0.0}, "--rate"),
        ({"model": "m", "timeout": 0}, "--timeout"),
        ({"model": "m", "jpeg_quality": 150}, "--jpeg-quality must be a whole number from 1 to 100"),
        ({"model": "m", "max_side": "big"}, "--max-side must be a whole number"),
        ({"model": "m", "temperature": 3}, "--temperature"),
        ({"model": "m", "max_upload_mb": -1}, "--max-upload-mb"),
        ({"model": "m", "shard": "0/3"}, "numbered from 1"),
    ],
)
def test_validation_names_the_flag_and_the_fix(flat: dict[str, object], hint: str) -> None:
    with pytest.raises(ConfigError) as info:
        RunConfig.build(**flat).validate()
    assert hint in str(info.value)


def test_settings_objects_validate_themselves() -> None:
    with pytest.raises(ConfigError, match="--burst"):
        Limits(burst=0)
    with pytest.raises(ConfigError, match="--max-side"):
        PrepareSettings(max_side=-1)
    assert PrepareSettings(max_upload_mb=1.5).max_upload_bytes == 1_500_000


def test_profile_rejects_typos_with_the_closest_names(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[limits]\nconcurency = 3\n")
    with pytest.raises(ConfigError, match="unknown setting 'concurency'; did you mean concurrency"):
        load_profile(bad)
    bad.write_text("read_batch = 3\n")  # an internal knob: not a user setting, not listed
    with pytest.raises(ConfigError, match="unknown setting 'read_batch'") as info:
        load_profile(bad)
    assert "concurrency_mode" not in str(info.value)
    assert "after_run" not in user_setting_names()[:0]
    bad.write_text('token = "hf_secret"\n')
    with pytest.raises(ConfigError, match="tokens do not belong"):
        load_profile(bad)
    bad.write_text("[limits\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_profile(bad)
    with pytest.raises(ConfigError, match="does not exist"):
        load_profile(tmp_path / "missing.toml")


def test_profile_values_are_checked_with_the_file_named(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[prepare]\njpeg_quality = 150\n")
    with pytest.raises(ConfigError, match=r"bad.toml: --jpeg-quality must be a whole number from 1 to 100"):
        profile_config(bad)


def test_did_you_mean() -> None:
    assert "max_side" in did_you_mean("max_sid", user_setting_names())
    assert did_you_mean("zzzzzz", user_setting_names()) == ""
    internal = {"read_batch", "readers", "temperature_step", "refusal_starts", "empty"}
    assert not internal & set(user_setting_names())


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
    assert RunConfig.build(model="m").request_rate == 2.0  # the shared free serverless API: conservative
    assert RunConfig.build(endpoint="https://x.endpoints.huggingface.cloud").request_rate is None  # paid: no cap
    assert RunConfig.build(api="openai", model="m", base_url="http://127.0.0.1:1/v1").request_rate is None
    assert RunConfig.build(endpoint="https://x.example", rate=5.0).request_rate == 5.0  # what the user set wins
    assert RunConfig.build(model="m", rate=None).request_rate is None
    assert parse_rate("auto") == "auto"
    assert RunConfig.build(model="m").public_dict()["request_rate"] == 2.0


def test_the_money_settings_come_from_flags_and_profiles_alike(tmp_path: Path) -> None:
    from batchcap.config import profile_config
    from batchcap.flow.budget import TokenPrice

    cfg = RunConfig.build(model="m", token_price="0.2,0.8", max_cost="5", max_images="1830")
    assert cfg.budget.token_price == TokenPrice(0.2, 0.8)
    assert (cfg.budget.max_cost, cfg.budget.max_images) == (5.0, 1830)
    profile = tmp_path / "p.toml"
    profile.write_text('model = "m"\n[cost]\ntoken_price = [0.2, 0.8]\nmax_cost = 5\n')
    assert profile_config(profile).budget == RunConfig.build(token_price="0.2,0.8", max_cost=5.0).budget
    for flat, flag in (({"max_cost": "0"}, "--max-cost"), ({"max_images": "0"}, "--max-images"),
                       ({"token_price": "0.2"}, "--token-price")):
        with pytest.raises(ConfigError, match=flag):
            RunConfig.build(model="m", **flat)
