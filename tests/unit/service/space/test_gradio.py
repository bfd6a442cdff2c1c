"""What a Gradio app says about itself and the call planned from it, from golden bytes (gradio 6.31's shapes)."""

from __future__ import annotations

import orjson
import pytest

from batchcap.emulator import EmulatorSettings
from batchcap.emulator.spaceapp import config_body, info_body
from batchcap.errors import BadResponse, UsageError, WrongTarget
from batchcap.service.space import choose_endpoint, parse_config, parse_info, plan_call
from batchcap.service.space.gradio import Endpoint, data_url, file_data

#: /info of the real app of issue 20's probe, trimmed: /caption(image, prompt) -> text, and a text-only /echo.
INFO = orjson.dumps({"named_endpoints": {
    "/caption": {
        "parameters": [
            {"label": "image", "parameter_name": "image", "parameter_has_default": False, "parameter_default": None,
             "type": {"title": "ImageData", "type": "object"}, "component": "Image",
             "python_type": {"type": "filepath", "description": ""}},
            {"label": "prompt", "parameter_name": "prompt", "parameter_has_default": False, "parameter_default": None,
             "type": {"type": "string"}, "component": "Textbox", "python_type": {"type": "str", "description": ""}},
            {"label": "beams", "parameter_name": "beams", "parameter_has_default": True, "parameter_default": 3,
             "type": {"type": "number"}, "component": "Slider", "python_type": {"type": "float", "description": ""}},
        ],
        "returns": [{"label": "output", "type": {"type": "string"}, "component": "Textbox",
                     "python_type": {"type": "str", "description": ""}}],
    },
    "/echo": {
        "parameters": [{"label": "text", "parameter_name": "text", "type": {"type": "string"}, "component": "Textbox"}],
        "returns": [{"label": "output", "type": {"type": "string"}, "component": "Textbox"}],
    },
}, "unnamed_endpoints": {}})


def test_config_gives_the_prefix_and_a_shown_concurrency_limit() -> None:
    app = parse_config(orjson.dumps(config_body(EmulatorSettings())))
    assert (app.api_prefix, app.protocol, app.version) == ("/gradio_api", "sse_v3", "6.31.0")
    assert app.concurrency_of("/caption") is None  # 6.31 does not show it
    shown = parse_config(orjson.dumps({"dependencies": [{"api_name": "caption", "concurrency_limit": 3}]}))
    assert shown.api_prefix == ""
    assert shown.concurrency_of("/caption") == 3
    with pytest.raises(WrongTarget, match="Gradio"):
        parse_config(b"<html>not an app</html>")


def test_the_one_endpoint_that_takes_an_image_and_returns_text_is_chosen() -> None:
    endpoints = parse_info(INFO)
    assert choose_endpoint(endpoints, None, where="acme/blip").api_name == "/caption"
    assert choose_endpoint(endpoints, "/caption", where="acme/blip").api_name == "/caption"


def test_several_or_none_or_a_wrong_name_is_a_usage_error_that_lists_them() -> None:
    two = parse_info(orjson.dumps(info_body(EmulatorSettings(space_apis=("caption", "describe")))))
    with pytest.raises(UsageError, match=r"2 endpoints .*/caption, /describe.*--space-api"):
        choose_endpoint(two, None, where="acme/blip")
    only_text = {k: v for k, v in parse_info(INFO).items() if k == "/echo"}
    with pytest.raises(UsageError, match=r"no endpoint that takes one image.*/echo\(text \(Textbox\)\)"):
        choose_endpoint(only_text, None, where="acme/blip")
    with pytest.raises(UsageError, match=r"--space-api /nope: .* no such endpoint .*/caption"):
        choose_endpoint(parse_info(INFO), "/nope", where="acme/blip")
    with pytest.raises(UsageError, match="does not take one image"):
        choose_endpoint(parse_info(INFO), "/echo", where="acme/blip")


def test_the_plan_types_inputs_by_name_and_fills_defaults() -> None:
    endpoint = parse_info(INFO)["/caption"]
    plan = plan_call(endpoint, [("prompt", "Describe it."), ("beams", "5")])
    assert plan.values == (None, "Describe it.", 5.0)
    assert plan.image_index == 0
    assert plan.output_index == 0
    body = orjson.loads(plan.body({"path": "/tmp/gradio/x/image.jpg", "meta": {"_type": "gradio.FileData"}}))
    assert body == {"data": [{"path": "/tmp/gradio/x/image.jpg", "meta": {"_type": "gradio.FileData"}},
                             "Describe it.", 5.0]}
    assert plan_call(endpoint, [("prompt", "x")]).values[2] == 3  # the default


def test_a_missing_required_input_or_an_unknown_name_says_what_to_pass() -> None:
    endpoint = parse_info(INFO)["/caption"]
    with pytest.raises(UsageError, match=r'needs its input prompt \(Textbox\).*--space-input prompt='):
        plan_call(endpoint, [])
    with pytest.raises(UsageError, match=r"no input of that name \(inputs: image \(Image\), prompt"):
        plan_call(endpoint, [("promt", "x")])
    with pytest.raises(UsageError, match="takes a number"):
        plan_call(endpoint, [("prompt", "x"), ("beams", "many")])


def test_the_caption_is_the_text_output_and_anything_else_a_bad_response() -> None:
    plan = plan_call(parse_info(INFO)["/caption"], [("prompt", "x")])
    assert plan.caption('["  a red square \\n"]', where="h") == "a red square"
    for data in ('{"x": 1}', "[]", "[3]", "not json"):
        with pytest.raises(BadResponse):
            plan.caption(data, where="h")


def test_images_go_as_filedata_never_under_their_own_name() -> None:
    from batchcap.models import ImageJob, LoadedImage

    image = LoadedImage(ImageJob("Private/Holiday 2024.jpg", "/x", 3), b"\xff\xd8\xff", "image/jpeg")
    assert file_data("/tmp/gradio/a/image.jpg", image) == {
        "path": "/tmp/gradio/a/image.jpg", "orig_name": "image.jpg", "meta": {"_type": "gradio.FileData"}}
    assert data_url(image)["url"] == "data:image/jpeg;base64,/9j/"
    assert isinstance(Endpoint("/x", (), (), 0).describe(), str)
