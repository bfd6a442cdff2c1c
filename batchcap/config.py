"""Run settings: typed, validated once, from a TOML profile overlaid with command-line flags.

A profile (``configs/*.toml``) uses the same names as the flags, grouped in tables for reading comfort;
the tables are cosmetic, every key is unique. Flags given on the command line win over the profile.
"""

from __future__ import annotations

import math
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit

from batchcap.errors import ConfigError
from batchcap.flow.concurrency import parse_concurrency
from batchcap.source.shard import Shard, parse_shard
from batchcap.tasks.quality import QualitySettings
from batchcap.tasks.spec import TaskSettings

if TYPE_CHECKING:
    from batchcap.prepare import PrepareSettings

__all__ = [
    "API_CHOICES",
    "DEDUPE_CHOICES",
    "DEFAULT_API_BASE",
    "DEFAULT_ENDPOINTS_API",
    "SERVERLESS_RATE",
    "RunConfig",
    "Secret",
    "find_token",
    "load_profile",
]

DEFAULT_API_BASE = "https://router.huggingface.co/hf-inference"
LEGACY_HOST = "api-inference.huggingface.co"
API_CHOICES = ("hf", "hf-json", "openai")
#: The serverless API's rate when none is set: conservative, for a shared free tier (protocol.md 7).
SERVERLESS_RATE = 2.0
#: Pillow's ``Image.MAX_IMAGE_PIXELS`` (the default of ``--max-pixels``); not imported, so the CLI starts
#: without loading Pillow (tests/unit/prepare checks the two agree).
DEFAULT_MAX_PIXELS = 89_478_485
Api = Literal["hf", "hf-json", "openai"]
DEFAULT_ENDPOINTS_API = "https://api.endpoints.huggingface.cloud/v2"
AFTER_RUN_CHOICES = ("pause", "scale-to-zero")
AfterRun = Literal["pause", "scale-to-zero"]
_ENDPOINT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*")
DEDUPE_CHOICES = ("exact", "near", "off")
Dedupe = Literal["exact", "near", "off"]


@dataclass(frozen=True, slots=True)
class RunConfig:
    """Everything one ``batchcap run`` needs. Validated by :meth:`validate`; never holds the token itself."""

    input_dir: Path = Path(".")
    out: Path = Path("results.jsonl")
    api: Api = "hf"
    model: str | None = None
    api_base: str = DEFAULT_API_BASE
    endpoint: str | None = None
    base_url: str | None = None
    prompt: str = "Write a short, factual one-sentence caption for this image."
    max_tokens: int = 64
    temperature: float = 0.0
    parameters: Mapping[str, Any] | None = None
    concurrency: int = 4  #: the ceiling of requests in flight (adaptive below it), or the fixed pool size
    concurrency_mode: Literal["adaptive", "fixed"] = "adaptive"  #: ``--concurrency N`` / ``fixed:N``
    rate: float | Literal["auto"] | None = "auto"  #: requests/s; None = unlimited; see ``request_rate``
    burst: int = 4
    timeout: float = 60.0
    retries: int = 5
    max_wait: float = 1800.0
    token_file: Path | None = None
    retry_failed: bool = False
    follow_symlinks: bool = False
    max_image_mb: float = 20.0
    sidecar: bool = False
    sidecar_ext: str = ".txt"
    quiet: bool = False
    readers: int = 2
    read_batch: int = 64
    targets: tuple[str, ...] = ()  #: ``NAME=SPEC`` (see ``batchcap.service.targets``): several targets in one run
    route: Literal["failover", "spread"] = "failover"
    price_per_hour: tuple[str, ...] = ()  #: ``NAME=DOLLARS`` per target, for the per-target cost in the summary
    #: Caption only this shard of the folder (``--shard I/N``); None = all of it.
    shard: Shard | None = None
    #: ``NAMESPACE/NAME`` of an Inference Endpoint to look up, wake and use (its URL replaces ``endpoint``).
    endpoint_name: str | None = None
    endpoints_api: str = DEFAULT_ENDPOINTS_API
    #: Put the named Endpoint to sleep when the run ends, is interrupted or aborts.
    after_run: AfterRun | None = None
    #: Image preparation (issue 8, ``batchcap.prepare``): long side in px (0 = send files as they are) ...
    max_side: int = 1024
    jpeg_quality: int = 90
    keep_metadata: bool = False
    #: ... the request body limit counted as sent (TGI's 2,000,000 bytes; 0 = none), and the pixel limit.
    max_upload_mb: float = 2.0
    max_pixels: int = DEFAULT_MAX_PIXELS

    def prepare_settings(self) -> PrepareSettings:
        """The settings of ``batchcap.prepare`` for this run (``--max-upload-mb`` in decimal MB, as TGI counts)."""
        from batchcap.prepare import PrepareSettings

        return PrepareSettings(
            max_side=self.max_side, jpeg_quality=self.jpeg_quality, keep_metadata=self.keep_metadata,
            max_upload_bytes=round(self.max_upload_mb * 1_000_000), max_pixels=self.max_pixels,
        )
    dedupe: Dedupe = "exact"  #: send identical images once (near: also resized / re-saved copies; off)
    quality_retries: int = 2  #: extra attempts for a caption that fails a quality gate
    on_bad_caption: Literal["flag", "error"] = "flag"  #: after them: ok with "flags", or a BadCaption error
    min_words: int | None = None  #: quality gate: fewer words is "too_short" (off unless set)
    max_words: int | None = None  #: quality gate: more words is "too_long" (off unless set)
    #: What is asked of each image (issue 16): --task, --schema, --keep-stale and [tasks.NAME] tables.
    tasks: TaskSettings = field(default_factory=TaskSettings)

    def quality(self) -> QualitySettings:
        """The caption quality gates this run applies (``batchcap.tasks.quality``)."""
        return QualitySettings(quality_retries=self.quality_retries, on_bad_caption=self.on_bad_caption,
                               min_words=self.min_words, max_words=self.max_words)

    @property
    def url(self) -> str:
        """The URL each request goes to."""
        if self.api == "openai":
            base = (self.base_url or "").rstrip("/")
            return base + "/chat/completions" if base.endswith("/v1") else base + "/v1/chat/completions"
        if self.endpoint:
            return self.endpoint
        if self.endpoint_name:
            return ""  # known once the management API has been asked (batchcap.service.endpoints)
        return f"{self.api_base.rstrip('/')}/models/{self.model}"

    @property
    def serverless(self) -> bool:
        """The shared serverless API (as opposed to an Endpoint or a chat server the user runs or pays for)."""
        return self.api != "openai" and not self.endpoint

    @property
    def request_rate(self) -> float | None:
        """The rate the limiter starts at: the setting, or for "auto" a conservative one for the free
        serverless API and none for an Endpoint or a chat server (they still adapt on 429)."""
        if self.rate == "auto":
            return SERVERLESS_RATE if self.serverless else None
        return self.rate

    @property
    def target(self) -> str:
        """A short, secret-free name of the target, written into every journal line."""
        if self.api == "openai":
            return f"openai:{self.model}@{_host(self.base_url or '')}"
        if self.endpoint:
            parts = urlsplit(self.endpoint)
            return f"endpoint:{parts.scheme}://{parts.hostname}{':' + str(parts.port) if parts.port else ''}{parts.path}"
        if self.endpoint_name:
            return f"endpoint:{self.endpoint_name}"
        return f"{self.api}:{self.model}@{_host(self.api_base)}"

    def validate(self) -> RunConfig:
        """Raise ConfigError naming the setting and the fix; return self for chaining."""
        if self.api not in API_CHOICES:
            raise ConfigError(f"api must be one of {', '.join(API_CHOICES)} (got {self.api!r})")
        if self.api == "openai":
            if not self.base_url:
                raise ConfigError("--api openai needs --base-url (e.g. https://router.huggingface.co/v1)")
            if not self.model:
                raise ConfigError("--api openai needs --model (the model id the server serves)")
            _check_url("--base-url", self.base_url)
        elif self.endpoint:
            _check_url("--endpoint", self.endpoint)
        elif self.endpoint_name:
            pass  # checked below; the URL comes from the management API at run time
        elif not self.targets:
            if not self.model:
                raise ConfigError(
                    "no target: pass --model MODEL_ID (serverless API) or --endpoint URL (Inference Endpoint)"
                )
            _check_url("--api-base", self.api_base)
        if self.concurrency_mode not in ("adaptive", "fixed"):
            raise ConfigError(f"concurrency_mode must be adaptive or fixed (got {self.concurrency_mode!r})")
        if self.route not in ("failover", "spread"):
            raise ConfigError(f"route must be failover or spread (got {self.route!r})")
        for name in ("concurrency", "burst", "readers", "read_batch", "max_tokens"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"{name} must be a whole number >= 1 (got {value!r})")
        if not isinstance(self.retries, int) or self.retries < 0:
            raise ConfigError(f"retries must be a whole number >= 0 (got {self.retries!r})")
        if self.rate not in (None, "auto") and not (
            isinstance(self.rate, int | float) and self.rate > 0 and math.isfinite(self.rate)
        ):
            raise ConfigError(f"rate must be > 0 requests/s, or 'unlimited' (got {self.rate!r})")
        for name in ("timeout", "max_image_mb"):
            value = getattr(self, name)
            if not value > 0:
                raise ConfigError(f"{name} must be > 0 (got {value!r})")
        if self.max_wait < 0:
            raise ConfigError(f"max_wait must be >= 0 seconds (got {self.max_wait!r})")
        if not 0.0 <= self.temperature <= 2.0:
            raise ConfigError(f"temperature must be between 0 and 2 (got {self.temperature!r})")
        for name in ("max_side", "max_pixels"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < (name == "max_pixels"):
                raise ConfigError(f"{name} must be a whole number >= {int(name == 'max_pixels')} (got {value!r})")
        if not isinstance(self.jpeg_quality, int) or not 1 <= self.jpeg_quality <= 100:
            raise ConfigError(f"jpeg_quality must be a whole number from 1 to 100 (got {self.jpeg_quality!r})")
        if not (isinstance(self.max_upload_mb, int | float) and self.max_upload_mb >= 0):
            raise ConfigError(f"max_upload_mb must be >= 0 MB, 0 for no limit (got {self.max_upload_mb!r})")
        if self.dedupe not in DEDUPE_CHOICES:
            raise ConfigError(f"dedupe must be one of {', '.join(DEDUPE_CHOICES)} (got {self.dedupe!r})")
        self.quality().validate()
        if not self.sidecar_ext.startswith("."):
            raise ConfigError(f"sidecar_ext must start with a dot, like .txt (got {self.sidecar_ext!r})")
        if self.shard is not None and not isinstance(self.shard, Shard):
            raise ConfigError(f"shard must be I/N, e.g. 1/3 (got {self.shard!r})")
        self._validate_endpoint_name()
        return self

    def _validate_endpoint_name(self) -> None:
        if self.endpoint_name is None:
            if self.after_run is not None:
                raise ConfigError(
                    f"--{self.after_run}-after needs --endpoint-name NAMESPACE/NAME (the Endpoint to put to sleep)"
                )
            return
        parse_endpoint_name(self.endpoint_name)
        if self.targets:
            raise ConfigError("give --target NAME=SPEC or --endpoint-name NAMESPACE/NAME, not both")
        if self.endpoint:
            raise ConfigError("give --endpoint URL or --endpoint-name NAMESPACE/NAME, not both")
        if self.api == "openai":
            raise ConfigError("--endpoint-name works with --api hf or hf-json; for an OpenAI-style Endpoint pass "
                              "--base-url URL/v1 and wake it by hand")
        if self.after_run is not None and self.after_run not in AFTER_RUN_CHOICES:
            raise ConfigError(f"after_run must be pause or scale-to-zero (got {self.after_run!r})")
        _check_url("--endpoints-api", self.endpoints_api)

    def merged(self, overrides: Mapping[str, Any]) -> RunConfig:
        """A copy with ``overrides`` applied (keys are field names, values already coerced; the task settings'
        own names ``task``, ``schema``, ``keep_stale`` and ``task_tables`` go into ``tasks``)."""
        flat = dict(overrides)
        group = {name: flat.pop(key) for key, name in _TASK_KEYS.items() if key in flat}
        if group:
            flat["tasks"] = replace(self.tasks, **group)
        return replace(self, **flat)

    def public_dict(self) -> dict[str, Any]:
        """The settings as plain JSON-able values, for the run manifest. Holds no secret."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            out[f.name] = str(value) if isinstance(value, Path | Shard) else value
        out["parameters"] = dict(self.parameters) if self.parameters else None
        out["targets"] = list(self.targets)
        out["price_per_hour"] = list(self.price_per_hour)
        out["tasks"] = {"task": list(self.tasks.task), "schema": list(self.tasks.schema),
                        "keep_stale": self.tasks.keep_stale,
                        "tables": {k: dict(v) for k, v in self.tasks.tables.items()}}
        out["url"] = _strip_userinfo(self.url)
        out["request_rate"] = self.request_rate
        out["target"] = self.target
        return out


def _host(url: str) -> str:
    return urlsplit(url).netloc.rsplit("@", 1)[-1] or url


def _strip_userinfo(url: str) -> str:
    parts = urlsplit(url)
    if parts.username or parts.password:
        return parts._replace(netloc=parts.netloc.rsplit("@", 1)[-1]).geturl()
    return url


def _check_url(flag: str, url: str) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"{flag} must be an http(s) URL (got {url!r})")
    if parts.username or parts.password:
        raise ConfigError(f"{flag} must not carry credentials in the URL; use HF_TOKEN or --token-file")
    if parts.hostname == LEGACY_HOST:
        raise ConfigError(
            f"{LEGACY_HOST} no longer serves models; use --api-base https://router.huggingface.co/hf-inference"
        )


#: Profile keys and flags of ``TaskSettings`` -> its field names (``[tasks.NAME]`` tables are ``task_tables``).
_TASK_KEYS = {"task": "task", "schema": "schema", "keep_stale": "keep_stale", "task_tables": "tables"}
_FIELD_NAMES = ({f.name for f in fields(RunConfig)} - {"tasks"}) | {"keep_stale"}
_PROFILE_ONLY_FORBIDDEN = {"token", "hf_token", "api_key"}


def load_profile(path: Path) -> dict[str, Any]:
    """Read a TOML profile into field overrides. Unknown keys are errors: a typo must not pass silently."""
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist (see configs/ for examples)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read config file {path}: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    flat: dict[str, Any] = {}
    for key, value in raw.items():
        if key == "tasks":  # [tasks.NAME] tables: what is asked of each image (batchcap.tasks.spec)
            flat["task_tables"] = _task_tables(value, path)
            continue
        if isinstance(value, dict) and key != "parameters":
            for sub, subvalue in value.items():
                _put(flat, sub, subvalue, path)
        else:
            _put(flat, key, value, path)
    return coerce(flat, source=str(path))


def _task_tables(value: Any, path: Path) -> dict[str, Any]:
    """The ``[tasks.NAME]`` tables, a ``schema`` path taken relative to the profile's folder."""
    if not isinstance(value, dict) or not all(isinstance(t, dict) for t in value.values()):
        raise ConfigError(f"{path}: [tasks] must hold one table per task: [tasks.NAME] with prompt = \"...\"")
    out: dict[str, Any] = {}
    for name, table in value.items():
        table = dict(table)
        schema = table.get("schema")
        if isinstance(schema, str) and schema and not os.path.isabs(os.path.expanduser(schema)):
            table["schema"] = str(path.parent / schema)
        out[name] = table
    return out


def _put(flat: dict[str, Any], key: str, value: Any, path: Path) -> None:
    key = key.replace("-", "_")
    if key in _PROFILE_ONLY_FORBIDDEN:
        raise ConfigError(f"{path}: tokens do not belong in config files; use HF_TOKEN or token_file")
    if key not in _FIELD_NAMES:
        known = ", ".join(sorted(_FIELD_NAMES))
        raise ConfigError(f"{path}: unknown setting {key!r}; known settings: {known}")
    if key in flat:
        raise ConfigError(f"{path}: setting {key!r} appears twice")
    flat[key] = value


def coerce(values: Mapping[str, Any], *, source: str) -> dict[str, Any]:
    """Convert profile/flag values into field types, with messages that name the source."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        if value is None:
            continue
        if key in ("input_dir", "out", "token_file"):
            out[key] = Path(os.path.expanduser(str(value)))
        elif key == "rate":
            out[key] = parse_rate(value, source=source)
        elif key == "shard" and isinstance(value, str):
            out[key] = parse_shard(value)
        elif key in ("endpoint", "base_url") and value == "":
            continue
        elif key == "concurrency" and isinstance(value, str):
            spec = parse_concurrency(value)
            out["concurrency"], out["concurrency_mode"] = spec.n, spec.mode
        elif key in ("targets", "price_per_hour", "task", "schema"):
            if isinstance(value, str) or not all(isinstance(v, str) for v in value):
                raise ConfigError(f"{source}: {key} must be a list of NAME=... strings")
            out[key] = tuple(value)
        elif key == "parameters" and not isinstance(value, Mapping):
            raise ConfigError(f"{source}: parameters must be a table of generation parameters")
        else:
            out[key] = value
    return out


def parse_endpoint_name(spec: str) -> tuple[str, str]:
    """``NAMESPACE/NAME`` -> (namespace, name); ``ConfigError`` with the expected form otherwise."""
    spec = spec.strip()
    if not _ENDPOINT_NAME.fullmatch(spec):
        raise ConfigError(
            f"--endpoint-name must be NAMESPACE/NAME, e.g. acme/captioner (your user or org, then the "
            f"Endpoint's name as the Endpoints page shows it; got {spec!r})"
        )
    namespace, name = spec.split("/")
    return namespace, name


def parse_rate(value: Any, *, source: str = "--rate") -> float | Literal["auto"] | None:
    """``unlimited``/``inf``/``none`` mean no client-side limit (the limiter still backs off on 429); ``auto``
    is the target-aware default (see ``RunConfig.request_rate``)."""
    if isinstance(value, str):
        if value.strip().lower() in ("unlimited", "inf", "none", "off"):
            return None
        if value.strip().lower() == "auto":
            return "auto"
        try:
            value = float(value)
        except ValueError:
            raise ConfigError(f"{source}: rate must be a number of requests/s or 'unlimited' (got {value!r})") from None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{source}: rate must be a number of requests/s or 'unlimited' (got {value!r})")
    if math.isinf(value):
        return None
    if value <= 0:
        raise ConfigError(f"{source}: rate must be > 0 (got {value}); use 'unlimited' for no limit")
    return float(value)


class Secret:
    """A token that cannot leak through repr, str, f-strings or tracebacks."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


def find_token(token_file: Path | None = None, env: Mapping[str, str] | None = None) -> tuple[Secret | None, str]:
    """Find a token the way huggingface_hub does; return it with a secret-free description of its source.

    Order: ``--token-file``, ``HF_TOKEN``, ``HUGGING_FACE_HUB_TOKEN``, ``HF_TOKEN_PATH``, ``$HF_HOME/token``
    (default ``$XDG_CACHE_HOME/huggingface`` or ``~/.cache/huggingface``). Whitespace is stripped; empty is none.
    """
    env = os.environ if env is None else env
    if token_file is not None:
        value = _read_token(token_file, "--token-file")
        if value is None:
            raise ConfigError(f"--token-file {token_file} is empty")
        return Secret(value), f"--token-file {token_file}"
    for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"):
        value = env.get(name, "").strip()
        if value:
            return Secret(value), f"${name}"
    if env.get("HF_TOKEN_PATH"):
        path = Path(os.path.expanduser(env["HF_TOKEN_PATH"]))
    else:
        home = env.get("HF_HOME") or os.path.join(
            env.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "huggingface"
        )
        path = Path(os.path.expanduser(home)) / "token"
    value = _read_token(path, "token file", missing_ok=True)
    if value is not None:
        return Secret(value), str(path)
    return None, "none"


def _read_token(path: Path, what: str, *, missing_ok: bool = False) -> str | None:
    try:
        value = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        if missing_ok:
            return None
        raise ConfigError(f"{what} {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {what} {path}: {exc.__class__.__name__}") from None
    return value or None
