"""The one place a target's settings become its client: ``CaptionClient`` (one POST per attempt) or, for
``--space``, ``SpaceClient`` (a Gradio app). The run, ``check --probe`` and ``bench`` all ask here."""

from __future__ import annotations

from batchcap.service.auth import Secret
from batchcap.service.client import CaptionClient, ServiceClient
from batchcap.service.protocols import make_adapter
from batchcap.service.settings import TargetSettings

__all__ = ["make_client"]


def make_client(
    target: TargetSettings, *, token: Secret | None, timeout: float, connections: int, max_wait: float = 120.0
) -> ServiceClient:
    """The client for ``target``. A Space gets a token found in the environment only on its own host
    (``*.hf.space``); ``--token-file`` sends it to whatever app ``--space`` names. ``max_wait`` bounds how long
    a Space may take to answer its config while it wakes (at most 120 s)."""
    space = target.space_settings()
    if space is not None:
        from batchcap.service.space.spaceclient import SpaceClient

        return SpaceClient(space, token=token, token_anywhere=target.token_file is not None, timeout=timeout,
                           connections=connections, discovery_wait=min(max_wait, 120.0))
    return CaptionClient(target.url, make_adapter(target), token=token, timeout=timeout, connections=connections)
