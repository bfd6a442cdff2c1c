"""Caption through a Gradio Space (issue 20): ``address`` (``SpaceSettings``: ``--space``, ``--space-api``,
``--space-input``; where the app is and which host may see a token),
``gradio`` (the app's config and API info, the call plan: pure), ``sse`` (the event stream, decoded
incrementally), ``words`` (the one place a Space's error text becomes an error class: quota, busy, refusal),
``spaceclient`` (``SpaceClient``: the interface of ``CaptionClient``)."""

from __future__ import annotations

from batchcap.service.space.address import SpaceSettings, is_space_host, parse_inputs, space_url
from batchcap.service.space.gradio import (
    AppConfig,
    CallPlan,
    Endpoint,
    Param,
    choose_endpoint,
    parse_config,
    parse_info,
    plan_call,
)
from batchcap.service.space.spaceclient import DEFAULT_CAPACITY, SpaceAdapter, SpaceClient
from batchcap.service.space.sse import SseDecoder, SseEvent, parse_events
from batchcap.service.space.words import classify_error, classify_http, format_wait, parse_quota, parse_wait

__all__ = [
    "DEFAULT_CAPACITY",
    "AppConfig",
    "CallPlan",
    "Endpoint",
    "Param",
    "SpaceAdapter",
    "SpaceClient",
    "SpaceSettings",
    "SseDecoder",
    "SseEvent",
    "choose_endpoint",
    "classify_error",
    "classify_http",
    "format_wait",
    "is_space_host",
    "parse_config",
    "parse_events",
    "parse_info",
    "parse_inputs",
    "parse_quota",
    "parse_wait",
    "plan_call",
    "space_url",
]
