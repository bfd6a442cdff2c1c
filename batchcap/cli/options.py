"""The flags of a run, declared once as data, and the ``RunConfig`` they make.

Each ``Opt`` names the setting it sets (a field of one of ``RunConfig``'s groups, see ``batchcap.config``); the
value's parsing and checking live with that field, so a flag and a profile key can never disagree, and a bad
value is one line and exit 2 (``ConfigError``) before anything is sent. Adding a run flag: one field in its
subsystem's settings, one ``Opt`` line here. ``run`` and ``check`` take every table; ``bench`` takes the image
preparation table (it sends what a run sends).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from batchcap.config import RunConfig, profile_config
from batchcap.config.runconfig import setting_refs
from batchcap.errors import ConfigError
from batchcap.flow.settings import SERVERLESS_RATE
from batchcap.service.settings import API_CHOICES, DEFAULT_ENDPOINTS_API
from batchcap.source.settings import DEDUPE_CHOICES

__all__ = [
    "COST",
    "ENDPOINT",
    "INPUT_OUTPUT",
    "LIMITS",
    "PREPARE",
    "QUALITY",
    "TARGET",
    "TASKS",
    "TOKEN_PRICE",
    "Opt",
    "add_options",
    "add_profile_flag",
    "add_run_options",
    "config_from_args",
    "default_of",
    "given_settings",
    "ineffective_flags",
]

Kind = Literal["value", "true", "const", "append"]


@dataclass(frozen=True, slots=True)
class Opt:
    """One flag: its spellings, the setting it sets, its help (the default is appended from the field)."""

    flags: tuple[str, ...]
    setting: str
    help: str
    metavar: str | None = None
    kind: Kind = "value"
    const: Any = None
    choices: tuple[str, ...] | None = None
    show_default: bool = True


_DEFAULTS = {ref.name: ref.default for ref in setting_refs()}


def default_of(setting: str) -> str:
    """A setting's default as the help shows it."""
    value = _DEFAULTS[setting]
    if setting == "rate" and value is None:
        return "unlimited"
    if isinstance(value, tuple):
        return ",".join(map(str, value)) or "none"
    return "off" if value is None else str(value)


TARGET: tuple[Opt, ...] = (
    Opt(("--model",), "model", "model id, e.g. Salesforce/blip-image-captioning-base", show_default=False),
    Opt(("--api",), "api", "service shape: hf = raw image bytes (Inference API / Endpoint), hf-json = base64 JSON "
        "with parameters (custom Endpoint handlers), openai = /v1/chat/completions", choices=API_CHOICES),
    Opt(("--api-base",), "api_base", "serverless API base; requests go to BASE/models/MODEL", metavar="URL"),
    Opt(("--endpoint",), "endpoint", "dedicated Inference Endpoint URL, POSTed to as it is", metavar="URL",
        show_default=False),
    Opt(("--base-url",), "base_url", "OpenAI-compatible server base, e.g. https://router.huggingface.co/v1 "
        "(with --api openai)", metavar="URL", show_default=False),
    Opt(("--target",), "targets", "repeatable: several targets in one run; SPEC: hf:MODEL, an Endpoint URL, "
        "openai:MODEL@BASE_URL, space:OWNER/NAME[@/API] or a profile.toml (a profile keeps its own limits)", metavar="NAME=SPEC",
        kind="append", show_default=False),
    Opt(("--route",), "route", "with several --target: failover = the first until it fails run-level (credits, "
        "token, down), then the next; spread = each image to the target with room", choices=("failover", "spread")),
    Opt(("--price-per-hour",), "price_per_hour", "what an Endpoint costs per hour (NAME= may be left out with one "
        "target): its records get their share of its busy time as cost_usd, and --max-cost holds for it",
        metavar="[NAME=]DOLLARS", kind="append", show_default=False),
    Opt(("--space",), "space", "caption through a Gradio app: a Hugging Face Space (OWNER/NAME is "
        "https://OWNER-NAME.hf.space), a Space page URL or any Gradio app's URL; a Space has a queue and often a "
        "daily GPU quota: it is for small sets", metavar="OWNER/NAME|URL", show_default=False),
    Opt(("--space-api",), "space_api", "the app's endpoint, e.g. /caption (default: the one that takes an image "
        "and returns text)", metavar="NAME", show_default=False),
    Opt(("--space-input",), "space_inputs", 'repeatable: another input of that endpoint by name, e.g. '
        '--space-input prompt="Describe the image."', metavar="NAME=VALUE", kind="append", show_default=False),
    Opt(("--prompt",), "prompt", "instruction sent with each image (--api openai)", show_default=False),
    Opt(("--max-tokens",), "max_tokens", "caption length limit (--api openai)", metavar="N"),
    Opt(("--temperature",), "temperature", "sampling temperature, 0-2 (--api openai)"),
    Opt(("--token-file",), "token_file", "file holding the token (default: $HF_TOKEN, then $HUGGING_FACE_HUB_TOKEN, "
        "then $HF_HOME/token, i.e. ~/.cache/huggingface/token); tokens are never taken on the command line",
        metavar="PATH", show_default=False),
)

LIMITS: tuple[Opt, ...] = (
    Opt(("--concurrency",), "concurrency", "requests in flight: N = adaptive up to N (finds the server's capacity "
        "from latency, cuts back on timeouts, queueing and 429/503), fixed:N = always N", metavar="N|fixed:N"),
    Opt(("--rate",), "rate", f"requests per second, 'unlimited', or 'auto' ({SERVERLESS_RATE:g}/s for the "
        "serverless API, unlimited for --endpoint and --api openai); lowered automatically on HTTP 429",
        metavar="R"),
    Opt(("--burst",), "burst", "requests allowed at once above the rate", metavar="B"),
    Opt(("--timeout",), "timeout", "seconds per request before it is retried", metavar="S"),
    Opt(("--retries",), "retries", "extra attempts per image on 5xx/timeouts", metavar="N"),
    Opt(("--max-wait",), "max_wait", "seconds to wait for a loading model / rate limit per image before it counts "
        "as a retry; the run stops if no caption arrives for this long", metavar="S"),
)

INPUT_OUTPUT: tuple[Opt, ...] = (
    Opt(("--out",), "out", "JSONL results file, also the resume checkpoint (its folder is created)",
        metavar="FILE"),
    Opt(("--retry-failed",), "retry_failed", "also retry images whose earlier error was final", kind="true",
        show_default=False),
    Opt(("--follow-symlinks",), "follow_symlinks", "follow symbolic links (default: skip them)", kind="true",
        show_default=False),
    Opt(("--max-image-mb",), "max_image_mb", "larger files get an error record, unsent", metavar="MB"),
    Opt(("--sidecar",), "sidecar", "also write each caption beside its image as NAME.txt (for training sets)",
        kind="true", show_default=False),
    Opt(("--sidecar-ext",), "sidecar_ext", "sidecar extension"),
    Opt(("--sidecar-mode",), "sidecar_mode", "a sidecar that is already there: keep it, overwrite it, or "
        "append/prepend the caption (as export --format kohya --mode); images sharing a sidecar name are named in "
        "the summary", choices=("keep", "overwrite", "append", "prepend")),
    Opt(("--quiet", "-q"), "quiet", "no progress display; only the summary and errors", kind="true",
        show_default=False),
    Opt(("--progress-every",), "progress_every", "when stderr is not a terminal (nohup, cron, a log file): one "
        "plain progress line every S seconds instead of a bar", metavar="S"),
    Opt(("--notify",), "notify", "POST one JSON object to URL when the run ends, is stopped or aborts (state, ok, "
        "errors, out, elapsed, reason; the news as 'text' for Slack, 'content' for Discord, 'message' for ntfy); "
        "a failing notify is a warning, never a failed run", metavar="URL", show_default=False),
    Opt(("--shard",), "shard", "caption only shard I of N (numbered from 1; by a stable hash of each path, of each "
        "tar of a WebDataset, of each row group of parquet), e.g. --shard 2/3 --out part-2.jsonl; join the parts "
        "with `batchcap merge`", metavar="I/N", show_default=False),
    Opt(("--image-column",), "image_column", "parquet input: the column of images (default: the first column of "
        "the Image type)", metavar="NAME", show_default=False),
)

QUALITY: tuple[Opt, ...] = (
    Opt(("--dedupe",), "dedupe", "send identical images once, every copy gets the caption and \"duplicate_of\"; "
        "near = also resized / re-saved copies (perceptual hash); off = send every file", choices=DEDUPE_CHOICES),
    Opt(("--no-dedupe",), "dedupe", "same as --dedupe off", kind="const", const="off", show_default=False),
    Opt(("--quality-retries",), "quality_retries", "extra attempts for a caption that is empty, a refusal, cut "
        "off (finish_reason length), only the prompt, or outside --min/--max-words", metavar="N"),
    Opt(("--on-bad-caption",), "on_bad_caption", "after the retries: keep it as ok with \"flags\", or record a "
        "BadCaption error", choices=("flag", "error")),
    Opt(("--min-words",), "min_words", "captions with fewer words fail the quality gates", metavar="N"),
    Opt(("--max-words",), "max_words", "captions with more words fail the quality gates", metavar="N"),
)

TASKS: tuple[Opt, ...] = (
    Opt(("--task",), "task", "repeatable: ask every image this task too, each answer a JSONL line with "
        "\"task\": NAME; PROMPT is a Jinja2 template with {{ folder }}, {{ path }}, {{ stem }}, {{ sidecar }} "
        "(STEM.txt beside the image), {{ exif.datetime }}, {{ exif.model }}, {{ exif.make }}; a bare NAME picks "
        "[tasks.NAME] of the --config profile (default: one task, caption, asking --prompt)",
        metavar="NAME=PROMPT", kind="append", show_default=False),
    Opt(("--schema",), "schema", "repeatable: task NAME answers JSON matching this JSON schema (sent as "
        "response_format, checked on arrival; a reply that does not match fails the invalid_json gate)",
        metavar="NAME=FILE.json", kind="append", show_default=False),
    Opt(("--keep-stale",), "keep_stale", "keep answers made with other settings (prompt, model, target, schema, "
        "preparation) instead of asking again", kind="true", show_default=False),
)

PREPARE: tuple[Opt, ...] = (
    Opt(("--max-side",), "max_side", "long side at most PX, never enlarged; 0 sends every file as it is",
        metavar="PX"),
    Opt(("--jpeg-quality",), "jpeg_quality", "JPEG quality of prepared images, 1-100", metavar="Q"),
    Opt(("--keep-metadata",), "keep_metadata", "keep EXIF (GPS, camera serial), XMP and IPTC (default: stripped)",
        kind="true", show_default=False),
    Opt(("--max-upload-mb",), "max_upload_mb", "request body limit as sent, base64 and JSON included; larger images "
        "are re-encoded smaller; 0 = none (the default is TGI's limit)", metavar="MB"),
    Opt(("--max-pixels",), "max_pixels", "images with more pixels are refused from their header, never decoded "
        "(the default is Pillow's)", metavar="N"),
)

ENDPOINT: tuple[Opt, ...] = (
    Opt(("--endpoint-name",), "endpoint_name", "look the Endpoint up through the management API, resume it if "
        "paused or scaled to zero, wait until it is running and healthy, then caption at its URL (instead of "
        "--endpoint)", metavar="NAMESPACE/NAME", show_default=False),
    Opt(("--endpoints-api",), "endpoints_api", f"management API base (default: {DEFAULT_ENDPOINTS_API})",
        metavar="URL", show_default=False),
    Opt(("--pause-after",), "after_run", "pause the Endpoint when the run ends, is interrupted or aborts (it stops "
        "billing)", kind="const", const="pause", show_default=False),
    Opt(("--scale-to-zero-after",), "after_run", "scale the Endpoint to zero at the end instead (the next request "
        "wakes it)", kind="const", const="scale-to-zero", show_default=False),
)


#: What it costs, known and capped (issue 18); ``bench`` takes the price alone.
TOKEN_PRICE: tuple[Opt, ...] = (
    Opt(("--token-price",), "token_price", "USD per 1M input and output tokens for chat targets, e.g. 0.2,0.8 "
        "(default: the price the target's /v1/models lists for the provider that served each answer)",
        metavar="IN,OUT", show_default=False),
)
COST: tuple[Opt, ...] = (
    *TOKEN_PRICE,
    Opt(("--max-cost",), "max_cost", "stop starting requests when the next one could take the job's spend over USD "
        "(earlier runs of the same --out count); exit 3, and a rerun with a higher cap continues", metavar="USD",
        show_default=False),
    Opt(("--max-images",), "max_images", "stop once N images have their record (those done by earlier runs of the "
        "same --out count); exit 3", metavar="N", show_default=False),
)


class _RefuseToken(argparse.Action):
    """A token on the command line shows in the process list and shell history: refuse it and say why."""

    def __call__(self, parser: argparse.ArgumentParser, *args: object, **kwargs: object) -> None:
        parser.error(f"{args[-1] if args else '--token'}: tokens are never taken on the command line (they would "
                     "show in the process list); set HF_TOKEN or use --token-file")


def add_options(group: Any, options: Sequence[Opt]) -> None:
    """Add ``options`` to an argparse parser or group. Values stay text: the setting's own parser reads them
    (``RunConfig.with_flat``), so a bad value is the setting's one-line ``ConfigError``."""
    for opt in options:
        text = opt.help + (f" (default: {default_of(opt.setting)})" if opt.show_default else "")
        dest = "opt_" + opt.setting
        if opt.kind == "true":
            group.add_argument(*opt.flags, dest=dest, action="store_const", const=True, help=text)
        elif opt.kind == "const":
            group.add_argument(*opt.flags, dest=dest, action="store_const", const=opt.const, help=text)
        elif opt.kind == "append":
            group.add_argument(*opt.flags, dest=dest, action="append", metavar=opt.metavar, help=text)
        else:
            metavar = opt.metavar or (None if opt.choices else opt.setting.upper())
            group.add_argument(*opt.flags, dest=dest, metavar=metavar, choices=opt.choices, help=text)
        if opt.flags[0] == "--token-file":
            group.add_argument("--token", "--hf-token", "--api-key", dest="token_on_command_line",
                               action=_RefuseToken, help=argparse.SUPPRESS)


def add_profile_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", type=Path, metavar="PROFILE.toml",
                   help="TOML profile (see configs/); flags given here override it")


def add_run_options(p: argparse.ArgumentParser) -> None:
    """Every run flag, in its groups (``run`` and ``check`` both take them all)."""
    add_profile_flag(p)
    add_options(p.add_argument_group("target (one of --model, --endpoint, --api openai, --space, --target)"), TARGET)
    add_options(p.add_argument_group("limits"), LIMITS)
    add_options(p.add_argument_group("input and output"), INPUT_OUTPUT)
    add_options(p.add_argument_group("copies and caption quality"), QUALITY)
    add_options(p.add_argument_group("tasks: what is asked of each image (several answers, templates, JSON)"), TASKS)
    add_options(p.add_argument_group("image preparation (resize, turn upright, convert, strip metadata; small plain "
                                     "files go as they are)"), PREPARE)
    add_options(p.add_argument_group("Inference Endpoint lifecycle"), ENDPOINT)
    add_options(p.add_argument_group("cost (USD)"), COST)


def given_settings(ns: argparse.Namespace) -> dict[str, Any]:
    """The settings the command line actually gave, by setting name (``--no-dedupe`` as ``dedupe="off"``)."""
    out: dict[str, Any] = {}
    for key, value in vars(ns).items():
        if key.startswith("opt_") and value is not None:
            out[key.removeprefix("opt_")] = tuple(value) if isinstance(value, list) else value
    return out


def config_from_args(
    ns: argparse.Namespace, *, input_dir: Path | str | None = None, validate: bool = True
) -> RunConfig:
    """Profile first, then every flag the user actually gave; ``validate``: the whole-target checks too."""
    cfg = RunConfig() if ns.config is None else profile_config(ns.config)
    flags = given_settings(ns)
    if input_dir is not None:
        flags["input_dir"] = input_dir
    try:
        cfg = cfg.with_flat(flags)
    except TypeError as exc:  # a value of the wrong type for a field that takes no text: a programming error
        raise ConfigError(str(exc)) from None
    return cfg.validate() if validate else cfg


def ineffective_flags(ns: argparse.Namespace, cfg: RunConfig, targets: Sequence[Any] = ()) -> list[str]:
    """One line per flag given on the command line that no request of this run carries (``--prompt`` with a
    raw-bytes Endpoint, ``--api hf``): a warning, so a flag that does nothing is never silent."""
    given = list(given_settings(ns))
    lanes = [(t.name, t.cfg.target) for t in targets] or [("", cfg.target)]
    lines = []
    for name in dict.fromkeys(n for _, target in lanes for n in target.unused(given)):
        deaf = [(lane, target.shape) for lane, target in lanes if target.unused([name])]
        shown = {shape: "--space" if shape == "space" else f"--api {shape}" for _, shape in deaf}
        where = ", ".join(f"target {lane} ({shown[shape]})" if lane else shown[shape] for lane, shape in deaf)
        lines.append(f"{flag_of(name)} has no effect with {where}: {_WHY_UNUSED[deaf[0][1]]}")
    return lines


_WHY_UNUSED = {
    "hf": "the request is the image bytes alone (the model or the Endpoint's handler decides what to do); a prompt "
          "needs --api openai, generation parameters --api hf-json",
    "hf-json": "the request is the image and its parameters; a prompt needs --api openai",
    "openai": "a chat request takes --prompt, --max-tokens and --temperature, not parameters",
    "space": "a Space takes the inputs its app declares; pass them with --space-input NAME=VALUE",
}


def flag_of(setting: str) -> str:
    """The first command-line spelling of a setting."""
    for table in (TARGET, LIMITS, INPUT_OUTPUT, QUALITY, PREPARE, ENDPOINT):
        for opt in table:
            if opt.setting == setting:
                return opt.flags[0]
    return "--" + setting.replace("_", "-")
