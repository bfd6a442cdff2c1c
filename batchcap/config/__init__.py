"""A run's configuration: ``run`` (``RunConfig``, composed of the subsystems' settings objects), ``profile`` (TOML
profiles, unknown keys with the closest names), ``targets`` (``NAME=SPEC``: several services in one command).

It sits above the subsystems whose settings it composes (source, prepare, flow, service, tasks) and below the
commands (run, bench, check, cli); none of those subsystems imports it.
"""

from __future__ import annotations

from batchcap.config.profile import did_you_mean, load_profile, profile_config, user_setting_names
from batchcap.config.runconfig import GROUPS, RunConfig, SettingRef, setting_refs
from batchcap.config.targets import DEMO_MODEL, Target, parse_target, resolve_targets

__all__ = [
    "DEMO_MODEL",
    "GROUPS",
    "RunConfig",
    "SettingRef",
    "Target",
    "did_you_mean",
    "load_profile",
    "parse_target",
    "profile_config",
    "resolve_targets",
    "setting_refs",
    "user_setting_names",
]
