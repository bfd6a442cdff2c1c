"""``RunConfig``: everything one ``batchcap run`` needs, composed of the subsystems' own settings objects.

    cfg = RunConfig.build(input_dir="photos", out="captions.jsonl", model="org/model", concurrency=8)
    cfg.limits.rate_for(serverless=cfg.target.serverless)   # each group validated itself on construction
    cfg.with_flat({"max_side": 768})                        # a copy, the value routed to the group declaring it

Each group is declared in its subsystem (``source.SourceSettings``, ``prepare.PrepareSettings``, ``flow.Limits``,
``service.TargetSettings`` / ``RoutingSettings``, ``tasks.QualitySettings``, ``tasks.TaskSettings``); the run's
own output settings are
fields here. A flat name (a profile key, a flag's dest) maps to exactly one field: :data:`GROUPS` is the table.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import Field, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from batchcap.errors import ConfigError
from batchcap.flow.budget import BudgetSettings
from batchcap.flow.settings import Limits
from batchcap.prepare.settings import PrepareSettings
from batchcap.service.settings import RoutingSettings, TargetSettings, strip_userinfo
from batchcap.settings import (
    check_choice,
    check_number,
    check_url,
    parse_bool,
    parse_float,
    setting,
    user_fields,
)
from batchcap.source.settings import SourceSettings, parse_path
from batchcap.source.shard import Shard
from batchcap.source.sidecars import sidecar_ext_problem
from batchcap.tasks.quality import QualitySettings
from batchcap.tasks.spec import TaskSettings

__all__ = ["GROUPS", "RunConfig", "SettingRef", "setting_refs"]

SidecarMode = Literal["keep", "overwrite", "append", "prepend"]
SIDECAR_MODES: tuple[SidecarMode, ...] = ("keep", "overwrite", "append", "prepend")


def _sidecar_ext(value: Any, name: str = "sidecar_ext") -> str:
    return str(value)


def _sidecar_mode(value: Any, name: str = "sidecar_mode") -> str:
    return str(value)


def _notify(value: Any, name: str = "notify") -> str:
    """A webhook URL: http(s). The message never shows it (a webhook's path is its token)."""
    url = str(value).strip()
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError("--notify must be an http(s) URL, e.g. https://ntfy.sh/my-topic or a Slack/Discord "
                          "webhook URL (got something else; not shown, it may hold a token)")
    return url


def notify_shown(url: str | None) -> str | None:
    """A webhook URL as it may be shown (the manifest): the host only, its path is the webhook's secret."""
    if url is None:
        return None
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname}/…"


@dataclass(frozen=True, slots=True)
class RunConfig:
    """The run's own outputs, then one settings object per subsystem. Never holds the token."""

    out: Path = setting(Path("results.jsonl"), parse=parse_path)
    retry_failed: bool = setting(False, parse=parse_bool)  #: also retry images whose earlier error was final
    sidecar: bool = setting(False, parse=parse_bool)  #: also write each caption beside its image
    sidecar_ext: str = setting(".txt", parse=_sidecar_ext)
    #: an existing sidecar: keep it, overwrite it, or append/prepend the caption (the kohya exporter's --mode)
    sidecar_mode: SidecarMode = setting("keep", parse=_sidecar_mode)
    quiet: bool = setting(False, parse=parse_bool)  #: no progress display
    #: Seconds between two progress lines when stderr is not a terminal (a log file); a terminal gets a bar.
    progress_every: float = setting(30.0, parse=parse_float)
    #: A webhook (ntfy, Slack, Discord, any JSON POST) told when the run ends, is stopped or aborts. A secret
    #: (webhook URLs carry their token): never written to the manifest or a log.
    notify: str | None = setting(None, parse=_notify)
    source: SourceSettings = field(default_factory=SourceSettings)
    target: TargetSettings = field(default_factory=TargetSettings)
    routing: RoutingSettings = field(default_factory=RoutingSettings)
    limits: Limits = field(default_factory=Limits)
    prepare: PrepareSettings = field(default_factory=PrepareSettings)
    quality: QualitySettings = field(default_factory=QualitySettings)
    budget: BudgetSettings = field(default_factory=BudgetSettings)  #: prices and caps (issue 18)
    tasks: TaskSettings = field(default_factory=TaskSettings)

    def __post_init__(self) -> None:
        if not isinstance(self.out, Path):
            object.__setattr__(self, "out", parse_path(self.out))
        if (problem := sidecar_ext_problem(self.sidecar_ext, flag="--sidecar-ext")) is not None:
            raise ConfigError(problem)
        check_choice(self.sidecar_mode, "sidecar_mode", SIDECAR_MODES)
        check_number(self.progress_every, "progress_every", above=0)
        if self.notify is not None:
            _notify(self.notify)

    # -- building -----------------------------------------------------------------------------------------

    @classmethod
    def build(cls, **flat: Any) -> RunConfig:
        """A config from flat names (``model=``, ``max_side=``...), each routed to the group that declares it."""
        return cls().with_flat(flat)

    def with_flat(self, values: Mapping[str, Any]) -> RunConfig:
        """A copy with ``values`` (flat names; already typed, or text to parse) applied, groups re-validated."""
        by_group: dict[str | None, dict[str, Any]] = {}
        for name, value in values.items():
            ref = _REFS.get(name)
            if ref is None:
                raise ConfigError(f"unknown setting {name!r}")
            if value is not None and ref.parse is not None:
                value = ref.parse(value, name)
            by_group.setdefault(ref.group, {})[name] = value
        top = by_group.pop(None, {})
        groups = {group: replace(getattr(self, group), **changes)
                  for group, changes in by_group.items() if group is not None}
        return replace(self, **top, **groups)

    def validate(self) -> RunConfig:
        """The checks that span groups (is there a target at all?); return self for chaining."""
        if self.routing.targets:
            if self.target.endpoint_name:
                raise ConfigError("give --target NAME=SPEC or --endpoint-name NAMESPACE/NAME, not both")
            if self.target.after_run is not None:
                raise ConfigError(f"--{self.target.after_run}-after needs --endpoint-name NAMESPACE/NAME")
        else:
            self.target.require_complete()
        if self.target.endpoint_name:
            check_url(self.target.endpoints_api, "endpoints_api")
        return self

    # -- reading ------------------------------------------------------------------------------------------

    @property
    def input_dir(self) -> Path | str:
        """INPUT: a local path, or an fsspec URL (``batchcap.source.datasets``)."""
        return self.source.input_dir

    @property
    def request_rate(self) -> float | None:
        """The rate the limiter starts at for this run's target (``Limits.rate_for``)."""
        return self.limits.rate_for(serverless=self.target.serverless)

    def flat(self) -> dict[str, Any]:
        """Every user setting by its flat name, as plain values."""
        out: dict[str, Any] = {}
        for ref in _REFS.values():
            owner = self if ref.group is None else getattr(self, ref.group)
            out[ref.name] = getattr(owner, ref.name)
        return out

    def public_dict(self) -> dict[str, Any]:
        """The settings as plain JSON-able values, for the run manifest. Holds no secret."""
        out: dict[str, Any] = {}
        for name, value in self.flat().items():
            if isinstance(value, Path | Shard):
                value = str(value)
            elif isinstance(value, tuple):
                value = list(value)
            elif isinstance(value, Mapping):
                value = dict(value)
            elif value is not None and not isinstance(value, str | int | float | bool):
                value = str(value)
            out[name] = value
        out["concurrency"] = self.limits.ceiling  # readers of older manifests expect the number
        out["concurrency_mode"] = self.limits.concurrency.mode
        out["input_dir"] = str(self.source.input_dir)
        out["url"] = strip_userinfo(self.target.url)
        out["notify"] = notify_shown(self.notify)
        out["request_rate"] = self.request_rate
        out["target"] = self.target.label
        return out


#: The groups of a ``RunConfig`` and the class of each.
GROUPS: dict[str, type] = {
    "source": SourceSettings,
    "target": TargetSettings,
    "routing": RoutingSettings,
    "limits": Limits,
    "prepare": PrepareSettings,
    "quality": QualitySettings,
    "budget": BudgetSettings,
    "tasks": TaskSettings,
}


@dataclass(frozen=True, slots=True)
class SettingRef:
    """Where one user setting lives: its group (None: a field of ``RunConfig`` itself) and its field."""

    name: str
    group: str | None
    field: Field[Any]

    @property
    def parse(self) -> Any:
        return self.field.metadata.get("parse")

    @property
    def default(self) -> Any:
        return self.field.default


def setting_refs() -> Iterator[SettingRef]:
    """Every user setting of a run, in declaration order."""
    for f in user_fields(RunConfig):
        if f.name not in GROUPS:
            yield SettingRef(f.name, None, f)
    for group, cls in GROUPS.items():
        for f in user_fields(cls):
            yield SettingRef(f.name, group, f)


def _build_refs() -> dict[str, SettingRef]:
    refs: dict[str, SettingRef] = {}
    for ref in setting_refs():
        if ref.name in refs:
            raise TypeError(f"setting {ref.name!r} is declared twice ({refs[ref.name].group} and {ref.group})")
        refs[ref.name] = ref
    # internal knobs may be set from code and tests (RunConfig.build(read_batch=8)), never from a profile
    for group, cls in GROUPS.items():
        for f in fields(cls):
            if f.init and f.name not in refs and not f.name.startswith("_"):
                refs[f.name] = SettingRef(f.name, group, f)
    return refs


_REFS = _build_refs()
