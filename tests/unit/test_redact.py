"""What looks like a pasted token, and that messages never repeat one."""

from __future__ import annotations

from pathlib import Path

import pytest

from batchcap.config import RunConfig, load_profile
from batchcap.errors import ConfigError
from batchcap.redact import NOT_SHOWN, looks_like_token, redact, shown
from batchcap.service.auth import find_token

HF = "hf_" + "AbCdEfGhIjKlMnOpQrStUvWxYz01234567"  # the shape of a real one: hf_ and 34 letters
OPENAI = "sk-proj-" + "Zq4Xo8Lk2Jh6Gf0Ds3Ap9Mn1Bv5Cx7Ze"


@pytest.mark.parametrize(
    "value",
    [HF, OPENAI, "hf_xxxxxxxx", "sk-abcdefgh12345678", "ghp_" + "a1B2c3D4e5F6g7H8i9J0",
     "Zq4Xo8Lk2Jh6Gf0Ds3Ap9Mn1Bv5Cx7Ze==", "  " + HF + "\n"],
)
def test_tokens_are_recognised(value: str) -> None:
    assert looks_like_token(value)
    assert shown(value) == NOT_SHOWN


@pytest.mark.parametrize(
    "value",
    ["~/.cache/huggingface/token", "hf_token", "hf_token.txt", "secrets/hf_AbCdEfGh12345678", "token",
     "photos", "Salesforce/blip-image-captioning-base", "https://x.endpoints.huggingface.cloud",
     "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",  # a sha256: hex, one case
     "a_very_long_folder_name_without_any_digits_at_all", "", "my photos 2024"],
)
def test_paths_ids_and_digests_are_not(value: str) -> None:
    assert not looks_like_token(value)
    assert shown(value) == value


def test_redact_replaces_prefixed_tokens_inside_text_only() -> None:
    assert redact(f"unrecognized arguments: {HF} extra") == f"unrecognized arguments: {NOT_SHOWN} extra"
    assert redact(f"argument --rate: invalid value: '{OPENAI}'") == f"argument --rate: invalid value: '{NOT_SHOWN}'"
    kept = "task-specific disk-cache hf_short /data/hf_AbCdEfGh12345678 Root=1-abc sha 9f86d081884c7d659a2feaa0c55ad015"
    assert redact(kept) == kept


def test_token_file_that_is_a_token_is_not_echoed() -> None:
    with pytest.raises(ConfigError) as refused:
        find_token(Path(HF), env={})
    message = str(refused.value)
    assert HF not in message
    assert "this looks like a token, not a file: set HF_TOKEN instead" in message
    with pytest.raises(ConfigError, match="does not exist"):  # an ordinary missing path is named, as before
        find_token(Path("/nonexistent/token"), env={})


def test_profile_path_and_target_values_are_not_echoed(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as refused:
        load_profile(Path(HF))
    assert HF not in str(refused.value)
    for field in ("model", "endpoint", "base_url", "api_base", "endpoints_api"):
        with pytest.raises(ConfigError) as refused:
            RunConfig.build(**{"model": "m", field: HF}).validate()
        assert HF not in str(refused.value)
        assert "looks like a token" in str(refused.value)
