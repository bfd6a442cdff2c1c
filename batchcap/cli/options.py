"""The flags of ``batchcap run`` (some reused by ``bench`` for its targets), and the config they make."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from batchcap.cli.argtypes import add_event_loop_flag, number
from batchcap.config import (
    API_CHOICES,
    DEDUPE_CHOICES,
    DEFAULT_API_BASE,
    DEFAULT_ENDPOINTS_API,
    SERVERLESS_RATE,
    RunConfig,
    coerce,
    load_profile,
    parse_rate,
)
from batchcap.errors import ConfigError
from batchcap.flow.concurrency import parse_concurrency
from batchcap.source.shard import Shard, parse_shard

__all__ = ["add_run_arguments", "add_target_arguments", "config_from_args", "default"]


_D = RunConfig()


def default(name: str) -> str:
    """A ``RunConfig`` default as the help text shows it."""
    value = getattr(_D, name)
    if name == "rate" and value is None:
        return "unlimited"
    return str(value)


_positive_int = number(int, 1)
_non_negative_int = number(int, 0)
_positive_float = number(float, 0, strict=True)


def _rate(text: str) -> float | str:
    """``unlimited`` becomes inf here (argparse's None means "not given"); coerce() maps it to None."""
    try:
        value = parse_rate(text)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc).removeprefix("--rate: ")) from None
    return math.inf if value is None else value


def _shard(text: str) -> Shard:
    try:
        return parse_shard(text)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc).removeprefix("--shard: ")) from None


def _concurrency(text: str) -> str:
    """Checked here (exit 2 for a typo); split into the count and the mode by ``coerce``."""
    try:
        parse_concurrency(text)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc).removeprefix(f"--concurrency {text!r}: ")) from None
    return text


class _RefuseToken(argparse.Action):
    """A token on the command line shows in the process list and shell history: refuse it and say why."""

    def __call__(self, parser: argparse.ArgumentParser, *args: object, **kwargs: object) -> None:
        parser.error(f"{args[-1] if args else '--token'}: tokens are never taken on the command line (they would "
                     "show in the process list); set HF_TOKEN or use --token-file")


def add_target_arguments(p: argparse.ArgumentParser) -> None:
    """Where to send and how hard: the target and limits flag groups."""
    t = p.add_argument_group("target (one of --model, --endpoint, --api openai)")
    t.add_argument("--model", help="model id, e.g. Salesforce/blip-image-captioning-base")
    t.add_argument("--api", choices=API_CHOICES,
                   help="service shape: hf = raw image bytes (Inference API / Endpoint), hf-json = base64 JSON "
                        "with parameters (custom Endpoint handlers), openai = /v1/chat/completions "
                        f"(default: {default('api')})")
    t.add_argument("--api-base", help=f"serverless API base; requests go to BASE/models/MODEL (default: {DEFAULT_API_BASE})")
    t.add_argument("--endpoint", help="dedicated Inference Endpoint URL, POSTed to as it is")
    t.add_argument("--base-url", help="OpenAI-compatible server base, e.g. https://router.huggingface.co/v1 (with --api openai)")
    t.add_argument("--target", dest="targets", action="append", metavar="NAME=SPEC",
                   help="repeatable: several targets in one run; SPEC as in bench: hf:MODEL, an Endpoint URL, "
                        "openai:MODEL@BASE_URL or a profile.toml (a profile keeps its own limits)")
    t.add_argument("--route", choices=("failover", "spread"),
                   help="with several --target: failover = the first until it fails run-level (credits, token, "
                        "down), then the next; spread = each image to the target with room (default: failover)")
    t.add_argument("--price-per-hour", dest="price_per_hour", action="append", metavar="NAME=DOLLARS",
                   help="with --target: what target NAME costs per hour, for the per-target cost in the summary")
    t.add_argument("--prompt", help="instruction sent with each image (--api openai)")
    t.add_argument("--max-tokens", type=_positive_int, help=f"caption length limit (--api openai; default: {default('max_tokens')})")
    t.add_argument("--temperature", type=float, help=f"sampling temperature (--api openai; default: {default('temperature')})")
    t.add_argument("--token", "--hf-token", "--api-key", dest="token_on_command_line", action=_RefuseToken,
                   help=argparse.SUPPRESS)
    t.add_argument("--token-file", type=Path,
                   help="file holding the token (default: $HF_TOKEN, then $HUGGING_FACE_HUB_TOKEN, then "
                        "$HF_HOME/token, i.e. ~/.cache/huggingface/token); tokens are never taken on the command line")
    l = p.add_argument_group("limits")
    l.add_argument("--concurrency", type=_concurrency, metavar="N|fixed:N",
                   help="requests in flight: N = adaptive up to N (finds the server's capacity from latency, "
                        "cuts back on timeouts, queueing and 429/503), fixed:N = always N "
                        f"(default: {default('concurrency')})")
    l.add_argument("--rate", type=_rate, help="requests per second, 'unlimited', or 'auto' (the default: "
                        f"{SERVERLESS_RATE:g}/s for the serverless API, unlimited for --endpoint and --api openai); "
                        "lowered automatically on HTTP 429")
    l.add_argument("--burst", type=_positive_int, help=f"requests allowed at once above the rate (default: {default('burst')})")
    l.add_argument("--timeout", type=_positive_float, help=f"seconds per request before it is retried (default: {default('timeout')})")
    l.add_argument("--retries", type=_non_negative_int, help=f"extra attempts per image on 5xx/timeouts (default: {default('retries')})")
    l.add_argument("--max-wait", type=float, help=f"seconds to wait for a loading model / rate limit per image before it counts as a retry; the run stops if no caption arrives for this long (default: {default('max_wait')})")


_RUN_FIELDS = (
    "targets", "route", "price_per_hour",
    "out", "model", "api", "api_base", "endpoint", "base_url", "prompt", "max_tokens", "temperature",
    "token_file", "concurrency", "rate", "burst", "timeout", "retries", "max_wait", "retry_failed",
    "follow_symlinks", "max_image_mb", "sidecar", "sidecar_ext", "quiet",
    "max_side", "jpeg_quality", "keep_metadata", "max_upload_mb", "max_pixels",
    "dedupe", "quality_retries", "on_bad_caption", "min_words", "max_words",
    "shard", "endpoint_name", "endpoints_api", "after_run",
    "task", "schema", "keep_stale",
)


def config_from_args(ns: argparse.Namespace) -> RunConfig:
    """Profile first, then every flag the user actually gave."""
    cfg = RunConfig(input_dir=ns.input_dir)
    if ns.config is not None:
        cfg = cfg.merged(load_profile(ns.config))
    flags = {name: getattr(ns, name) for name in _RUN_FIELDS if getattr(ns, name, None) is not None}
    return cfg.merged(coerce(flags, source="command line")).validate()




def add_run_arguments(r: argparse.ArgumentParser) -> None:
    """Every ``batchcap run`` flag."""
    r.add_argument("input_dir", metavar="INPUT_DIR", type=Path, help="folder of images (searched recursively)")
    r.add_argument("--out", type=Path, help=f"JSONL results file, also the resume checkpoint (default: {default('out')})")
    r.add_argument("--config", type=Path, help="TOML profile (see configs/); flags given here override it")
    add_target_arguments(r)
    o = r.add_argument_group("input and output")
    o.add_argument("--retry-failed", action="store_true", default=None, help="also retry images whose earlier error was final")
    o.add_argument("--follow-symlinks", action="store_true", default=None, help="follow symbolic links (default: skip them)")
    o.add_argument("--max-image-mb", type=_positive_float, help=f"larger files get an error record, unsent (default: {default('max_image_mb')})")
    o.add_argument("--sidecar", action="store_true", default=None, help="also write each caption beside its image as NAME.txt (for training sets)")
    o.add_argument("--sidecar-ext", help=f"sidecar extension (default: {default('sidecar_ext')})")
    o.add_argument("--quiet", "-q", action="store_true", default=None, help="no progress bar; only the summary and errors")
    o.add_argument("--shard", type=_shard, metavar="I/N",
                   help="caption only shard I of N (numbered from 1; by a stable hash of each path), e.g. "
                        "--shard 2/3 --out part-2.jsonl; join the parts with `batchcap merge`")
    d = r.add_argument_group("copies and caption quality")
    d.add_argument("--dedupe", choices=DEDUPE_CHOICES,
                   help="send identical images once, every copy gets the caption and \"duplicate_of\"; near = also "
                        f"resized / re-saved copies (perceptual hash); off = send every file (default: {default('dedupe')})")
    d.add_argument("--no-dedupe", dest="dedupe", action="store_const", const="off", help="same as --dedupe off")
    d.add_argument("--quality-retries", type=_non_negative_int,
                   help="extra attempts for a caption that is empty, a refusal, cut off (finish_reason length), only "
                        f"the prompt, or outside --min/--max-words (default: {default('quality_retries')})")
    d.add_argument("--on-bad-caption", choices=("flag", "error"),
                   help="after the retries: keep it as ok with \"flags\", or record a BadCaption error "
                        f"(default: {default('on_bad_caption')})")
    d.add_argument("--min-words", type=_positive_int, help="captions with fewer words fail the quality gates (default: off)")
    k = r.add_argument_group("tasks: what is asked of each image (several answers per image, templates, JSON)")
    k.add_argument("--task", action="append", metavar="NAME=PROMPT",
                   help="repeatable: ask every image this task too, each answer a JSONL line with \"task\": NAME; "
                        "PROMPT is a Jinja2 template with {{ folder }}, {{ path }}, {{ stem }}, {{ sidecar }} "
                        "(STEM.txt beside the image), {{ exif.datetime }}, {{ exif.model }}, {{ exif.make }}; a bare "
                        "NAME picks [tasks.NAME] of the --config profile (default: one task, caption, asking --prompt)")
    k.add_argument("--schema", action="append", metavar="NAME=FILE.json",
                   help="repeatable: task NAME answers JSON matching this JSON schema (sent as response_format, "
                        "checked on arrival; a reply that does not match is the invalid_json quality gate)")
    k.add_argument("--keep-stale", action="store_true", default=None,
                   help="keep answers made with other settings (prompt, model, target, schema, preparation) "
                        "instead of asking again")
    d.add_argument("--max-words", type=_positive_int, help="captions with more words fail the quality gates (default: off)")
    add_event_loop_flag(o)
    i = r.add_argument_group("image preparation (resize, turn upright, convert, strip metadata; small plain files go as they are)")
    i.add_argument("--max-side", type=_non_negative_int, metavar="PX", help=f"long side at most PX, never enlarged; 0 sends every file as it is (default: {default('max_side')})")
    i.add_argument("--jpeg-quality", type=_positive_int, help=f"JPEG quality of prepared images, 1-100 (default: {default('jpeg_quality')})")
    i.add_argument("--keep-metadata", action="store_true", default=None, help="keep EXIF (GPS, camera serial), XMP and IPTC (default: stripped)")
    i.add_argument("--max-upload-mb", type=number(float, 0), metavar="MB", help=f"request body limit as sent, base64 and JSON included; larger images are re-encoded smaller; 0 = none (default: {default('max_upload_mb')}, TGI's limit)")
    i.add_argument("--max-pixels", type=_positive_int, help=f"images with more pixels are refused from their header, never decoded (default: {default('max_pixels')}, Pillow's)")
    e = r.add_argument_group("Inference Endpoint lifecycle")
    e.add_argument("--endpoint-name", metavar="NAMESPACE/NAME",
                   help="look the Endpoint up through the management API, resume it if paused or scaled to zero, "
                        "wait until it is running and healthy, then caption at its URL (instead of --endpoint)")
    e.add_argument("--endpoints-api", metavar="URL", help=f"management API base (default: {DEFAULT_ENDPOINTS_API})")
    after = e.add_mutually_exclusive_group()
    after.add_argument("--pause-after", dest="after_run", action="store_const", const="pause",
                       help="pause the Endpoint when the run ends, is interrupted or aborts (it stops billing)")
    after.add_argument("--scale-to-zero-after", dest="after_run", action="store_const", const="scale-to-zero",
                       help="scale the Endpoint to zero at the end instead (the next request wakes it)")
    d = r.add_argument_group("distributed (Ray; pip install 'batchcap[ray]')")
    d.add_argument("--ray", nargs="?", const="auto", metavar="ADDRESS",
                   help="run the shards as Ray tasks on the cluster at ADDRESS, or with no ADDRESS at $RAY_ADDRESS, "
                        "else on a private local cluster ('local': always that); every node must see INPUT_DIR "
                        "and --out")
    d.add_argument("--workers", type=_positive_int, help="shards captioned at once with --ray (default: 2)")
