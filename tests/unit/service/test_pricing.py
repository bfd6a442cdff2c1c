"""Prices from the HF router's ``/v1/models`` (its documented shape), per provider; nothing guessed."""

from __future__ import annotations

from typing import Any

import pytest

from batchcap.flow.budget import TokenPrice
from batchcap.service.pricing import PriceList, models_url, parse_models, split_model

#: The example of hub-docs ``inference-providers/hub-api.md`` ("List OpenAI-compatible models"), abridged.
ROUTER: dict[str, Any] = {
    "object": "list",
    "data": [
        {"id": "other/model", "object": "model", "providers": [{"provider": "x", "pricing": {"input": 9, "output": 9}}]},
        {
            "id": "deepseek-ai/DeepSeek-V4-Pro", "object": "model", "created": 1776837885, "owned_by": "deepseek-ai",
            "architecture": {"input_modalities": ["text"], "output_modalities": ["text"]},
            "providers": [
                {"provider": "novita", "status": "live", "context_length": 1048576,
                 "pricing": {"input": 1.69, "output": 3.38}, "supports_tools": True},
                {"provider": "together", "status": "live", "pricing": {"input": 2.1, "output": 4.4}},
                {"provider": "fireworks-ai", "status": "live", "context_length": 1048576},
                {"provider": "featherless-ai", "status": "live", "is_model_author": False},
                {"provider": "deepinfra", "status": "live", "pricing": {"input": 1.74, "output": 3.48}},
            ],
        },
    ],
}


def test_the_router_list_gives_a_price_per_provider() -> None:
    prices = parse_models(ROUTER, "deepseek-ai/DeepSeek-V4-Pro", source="router")
    assert prices is not None
    assert prices.price("novita") == TokenPrice(1.69, 3.38)
    assert prices.price("deepinfra") == TokenPrice(1.74, 3.48)
    assert prices.unpriced == ("fireworks-ai", "featherless-ai")
    assert prices.price("fireworks-ai") is None  # listed without a price: unknown, not guessed
    assert prices.price(None) is None  # several providers and none named: no guess
    assert prices.highest() == TokenPrice(2.1, 4.4)  # the worst case before the provider is known
    assert "no price listed for fireworks-ai, featherless-ai" in prices.describe()


def test_a_provider_suffix_pins_the_price_and_a_policy_does_not() -> None:
    pinned = parse_models(ROUTER, "deepseek-ai/DeepSeek-V4-Pro:deepinfra", source="router")
    assert pinned is not None
    assert pinned.pinned == "deepinfra"
    assert pinned.price(None) == TokenPrice(1.74, 3.48)
    assert pinned.highest() == TokenPrice(1.74, 3.48)
    unpriced = parse_models(ROUTER, "deepseek-ai/DeepSeek-V4-Pro:fireworks-ai", source="router")
    assert unpriced is not None
    assert not unpriced.known
    cheapest = parse_models(ROUTER, "deepseek-ai/DeepSeek-V4-Pro:cheapest", source="router")
    assert cheapest is not None
    assert cheapest.pinned is None
    assert cheapest.highest() == TokenPrice(2.1, 4.4)


def test_one_provider_serving_the_model_needs_no_header() -> None:
    prices = parse_models(ROUTER, "other/model", source="router")
    assert prices is not None
    assert prices.price(None) == TokenPrice(9, 9)


@pytest.mark.parametrize("body", [
    {"object": "list", "data": [{"id": "deepseek-ai/DeepSeek-V4-Pro", "object": "model"}]},  # TGI / vLLM: no providers
    {"object": "list", "data": []},
    {"error": "not found"},
    ["not", "a", "list of models"],
])
def test_a_list_without_the_model_or_its_providers_has_no_prices(body: Any) -> None:
    assert parse_models(body, "deepseek-ai/DeepSeek-V4-Pro", source="x") is None


def test_a_single_model_answer_is_read_too() -> None:
    entry = ROUTER["data"][1]
    prices = parse_models(entry, "deepseek-ai/DeepSeek-V4-Pro", source="router")
    assert prices is not None
    assert prices.price("together") == TokenPrice(2.1, 4.4)


def test_bad_prices_are_unknown_not_zero() -> None:
    body = {"data": [{"id": "m", "providers": [{"provider": "a", "pricing": {"input": "0.1", "output": 1}},
                                               {"provider": "b", "pricing": {"input": -1, "output": 1}},
                                               {"provider": "c", "pricing": {"input": True, "output": 1}}]}]}
    prices = parse_models(body, "m", source="x")
    assert prices is not None
    assert not prices.known
    assert prices.unpriced == ("a", "b", "c")


def test_a_fixed_price_is_every_providers_price() -> None:
    fixed = PriceList(source="--token-price", fixed=TokenPrice(0.2, 0.8))
    assert fixed.price("anyone") == fixed.price(None) == fixed.highest() == TokenPrice(0.2, 0.8)


def test_prices_survive_the_manifest_round_trip() -> None:
    prices = parse_models(ROUTER, "deepseek-ai/DeepSeek-V4-Pro:novita", source="router")
    assert prices is not None
    again = PriceList.from_dict(prices.to_dict(), source="cache")
    assert again is not None
    assert again.by_provider == prices.by_provider
    assert again.unpriced == prices.unpriced
    assert again.pinned == "novita"
    assert again.source == "cache"
    assert PriceList.from_dict({"by_provider": {"a": {"input": "x"}}}, source="c") is None
    assert PriceList.from_dict(None, source="c") is None


@pytest.mark.parametrize(("model", "parts"), [
    ("Qwen/Qwen2.5-VL-7B-Instruct", ("Qwen/Qwen2.5-VL-7B-Instruct", None)),
    ("Qwen/Qwen2.5-VL-7B-Instruct:novita", ("Qwen/Qwen2.5-VL-7B-Instruct", "novita")),
    ("Qwen/Qwen2.5-VL-7B-Instruct:cheapest", ("Qwen/Qwen2.5-VL-7B-Instruct", "cheapest")),
    ("http://host:80/x", ("http://host:80/x", None)),
])
def test_split_model(model: str, parts: tuple[str, str | None]) -> None:
    assert split_model(model) == parts


def test_models_url_is_beside_the_chat_route() -> None:
    assert models_url("https://router.huggingface.co/v1/chat/completions") == "https://router.huggingface.co/v1/models"
    assert models_url("http://127.0.0.1:8080/v1/chat/completions") == "http://127.0.0.1:8080/v1/models"
