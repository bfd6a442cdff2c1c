"""The one place a target's config becomes its client: ``CaptionClient`` (one POST per attempt) or, for
``--space``, ``SpaceClient`` (a Gradio app). The run, ``check --probe`` and ``bench`` all ask here."""

from __future__ import annotations

from batchcap.config import RunConfig, Secret
from batchcap.service.client import CaptionClient, ServiceClient
from batchcap.service.protocols import make_adapter

__all__ = ["make_client"]


def make_client(cfg: RunConfig, *, token: Secret | None, connections: int, timeout: float | None = None) -> ServiceClient:
    """The client for ``cfg``'s target. A Space gets a token found in the environment only on its own host
    (``*.hf.space``); ``--token-file`` sends it to whatever app ``--space`` names."""
    space = cfg.space_settings()
    if space is not None:
        from batchcap.service.space.client import SpaceClient

        return SpaceClient(space, token=token, token_anywhere=cfg.token_file is not None,
                           timeout=timeout or cfg.timeout, connections=connections,
                           discovery_wait=min(cfg.max_wait, 120.0))
    return CaptionClient(cfg.url, make_adapter(cfg), token=token, timeout=timeout or cfg.timeout,
                         connections=connections)
