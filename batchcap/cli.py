"""Command line: ``batchcap run | serve | bench``. The only module that prints or chooses an exit code."""

from __future__ import annotations

import argparse
import math
import shlex
import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from . import __version__
from .config import API_CHOICES, DEFAULT_API_BASE, RunConfig, coerce, find_token, load_profile, parse_rate
from .errors import BatchcapError, ConfigError

__all__ = ["EXIT_ABORTED", "EXIT_ERRORS", "EXIT_INTERRUPTED", "EXIT_OK", "EXIT_USAGE", "main"]

EXIT_OK = 0
EXIT_ERRORS = 1
EXIT_USAGE = 2
EXIT_ABORTED = 3
EXIT_INTERRUPTED = 130

EXIT_CODES_HELP = f"""\
exit codes:
  {EXIT_OK}    every image has a caption
  {EXIT_ERRORS}    finished; some images have error records (see the JSONL; --retry-failed retries them)
  {EXIT_USAGE}    usage error (bad flags)
  {EXIT_ABORTED}    aborted: token refused, wrong URL/model, bad config, journal locked/corrupt, disk full
  {EXIT_INTERRUPTED}  interrupted (Ctrl-C / SIGTERM); run the same command again to resume
"""

T = TypeVar("T")
_D = RunConfig()


def _default(name: str) -> str:
    value = getattr(_D, name)
    if name == "rate" and value is None:
        return "unlimited"
    return str(value)


def _number(kind: Callable[[str], float], minimum: float, *, strict: bool) -> Callable[[str], Any]:
    """An argparse type: ``kind`` parsed, then checked ``> minimum`` (strict) or ``>= minimum``."""
    noun = "a whole number" if kind is int else "a number"
    bound = f"> {minimum:g}" if strict else f">= {minimum:g}"

    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {noun}, got {text!r}") from None
        if not (value > minimum if strict else value >= minimum):
            raise argparse.ArgumentTypeError(f"must be {bound}, got {value:g}")
        return value

    return parse


_positive_int = _number(int, 1, strict=False)
_non_negative_int = _number(int, 0, strict=False)
_positive_float = _number(float, 0, strict=True)


def _rate(text: str) -> float:
    """``unlimited`` becomes inf here (argparse's None means "not given"); coerce() maps it to None."""
    try:
        value = parse_rate(text)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc).removeprefix("--rate: ")) from None
    return math.inf if value is None else value


class _RefuseToken(argparse.Action):
    """A token on the command line shows in the process list and shell history: refuse it and say why."""

    def __call__(self, parser: argparse.ArgumentParser, *args: object, **kwargs: object) -> None:
        parser.error(f"{args[-1] if args else '--token'}: tokens are never taken on the command line (they would "
                     "show in the process list); set HF_TOKEN or use --token-file")


def add_run_arguments(p: argparse.ArgumentParser) -> None:
    """Flags shared by ``run`` (and reused by ``bench`` for its targets' limits)."""
    t = p.add_argument_group("target (one of --model, --endpoint, --api openai)")
    t.add_argument("--model", help="model id, e.g. Salesforce/blip-image-captioning-base")
    t.add_argument("--api", choices=API_CHOICES,
                   help="service shape: hf = raw image bytes (Inference API / Endpoint), hf-json = base64 JSON "
                        "with parameters (custom Endpoint handlers), openai = /v1/chat/completions "
                        f"(default: {_default('api')})")
    t.add_argument("--api-base", help=f"serverless API base; requests go to BASE/models/MODEL (default: {DEFAULT_API_BASE})")
    t.add_argument("--endpoint", help="dedicated Inference Endpoint URL, POSTed to as it is")
    t.add_argument("--base-url", help="OpenAI-compatible server base, e.g. https://router.huggingface.co/v1 (with --api openai)")
    t.add_argument("--prompt", help="instruction sent with each image (--api openai)")
    t.add_argument("--max-tokens", type=_positive_int, help=f"caption length limit (--api openai; default: {_default('max_tokens')})")
    t.add_argument("--temperature", type=float, help=f"sampling temperature (--api openai; default: {_default('temperature')})")
    t.add_argument("--token", "--hf-token", "--api-key", dest="token_on_command_line", action=_RefuseToken,
                   help=argparse.SUPPRESS)
    t.add_argument("--token-file", type=Path,
                   help="file holding the token (default: $HF_TOKEN, then $HUGGING_FACE_HUB_TOKEN, then "
                        "$HF_HOME/token, i.e. ~/.cache/huggingface/token); tokens are never taken on the command line")
    l = p.add_argument_group("limits")
    l.add_argument("--concurrency", type=_positive_int, help=f"requests in flight (default: {_default('concurrency')})")
    l.add_argument("--rate", type=_rate, help=f"requests per second, or 'unlimited'; lowered automatically on HTTP 429 (default: {_default('rate')})")
    l.add_argument("--burst", type=_positive_int, help=f"requests allowed at once above the rate (default: {_default('burst')})")
    l.add_argument("--timeout", type=_positive_float, help=f"seconds per request before it is retried (default: {_default('timeout')})")
    l.add_argument("--retries", type=_non_negative_int, help=f"extra attempts per image on 5xx/timeouts (default: {_default('retries')})")
    l.add_argument("--max-wait", type=float, help=f"seconds to wait for a loading model / rate limit per image before it counts as a retry; the run stops if no caption arrives for this long (default: {_default('max_wait')})")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="batchcap",
        allow_abbrev=False,
        description="Caption whole image folders through hosted inference services, resumably.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=EXIT_CODES_HELP,
    )
    parser.add_argument("--version", action="version", version=f"batchcap {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    r = sub.add_parser(
        "run",
        allow_abbrev=False,
        help="caption every image under a folder into a JSONL file",
        description="Caption every image under INPUT_DIR (recursively) into a JSONL file that is also the resume "
                    "checkpoint: run the same command again after any interruption and it continues.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=EXIT_CODES_HELP,
    )
    r.add_argument("input_dir", metavar="INPUT_DIR", type=Path, help="folder of images (searched recursively)")
    r.add_argument("--out", type=Path, help=f"JSONL results file, also the resume checkpoint (default: {_default('out')})")
    r.add_argument("--config", type=Path, help="TOML profile (see configs/); flags given here override it")
    add_run_arguments(r)
    o = r.add_argument_group("input and output")
    o.add_argument("--retry-failed", action="store_true", default=None, help="also retry images whose earlier error was final")
    o.add_argument("--follow-symlinks", action="store_true", default=None, help="follow symbolic links (default: skip them)")
    o.add_argument("--max-image-mb", type=_positive_float, help=f"larger files get an error record, unsent (default: {_default('max_image_mb')})")
    o.add_argument("--sidecar", action="store_true", default=None, help="also write each caption beside its image as NAME.txt (for training sets)")
    o.add_argument("--sidecar-ext", help=f"sidecar extension (default: {_default('sidecar_ext')})")
    o.add_argument("--quiet", "-q", action="store_true", default=None, help="no progress bar; only the summary and errors")
    o.add_argument("--event-loop", choices=("auto", "asyncio", "uvloop"), default="auto",
                   help="auto = uvloop where installed, else asyncio (default: auto)")

    s = sub.add_parser("serve", help="start the local emulator of the hosted services",
                       description="Start the local emulator of the HF Inference API, Inference Endpoints and "
                                   "OpenAI-compatible chat servers (for the demo, tests and benchmarks).")
    from .emulator import add_arguments as add_emulator_arguments

    add_emulator_arguments(s)

    try:
        from .bench import add_arguments as add_bench_arguments
    except ImportError:  # pragma: no cover - bench lands with its own issue
        pass
    else:
        b = sub.add_parser("bench", help="benchmark targets (e.g. an Endpoint vs the free API) on the same images",
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        add_bench_arguments(b)

    d = sub.add_parser("samples", help="write a folder of varied sample images (for the demo)")
    d.add_argument("dest", type=Path)
    d.add_argument("--count", type=_positive_int, default=300)
    d.add_argument("--seed", type=int, default=0)
    return parser


_RUN_FIELDS = (
    "out", "model", "api", "api_base", "endpoint", "base_url", "prompt", "max_tokens", "temperature",
    "token_file", "concurrency", "rate", "burst", "timeout", "retries", "max_wait", "retry_failed",
    "follow_symlinks", "max_image_mb", "sidecar", "sidecar_ext", "quiet",
)


def config_from_args(ns: argparse.Namespace) -> RunConfig:
    """Profile first, then every flag the user actually gave."""
    cfg = RunConfig(input_dir=ns.input_dir)
    if ns.config is not None:
        cfg = cfg.merged(load_profile(ns.config))
    flags = {name: getattr(ns, name) for name in _RUN_FIELDS if getattr(ns, name, None) is not None}
    return cfg.merged(coerce(flags, source="command line")).validate()


def run_async(fn: Callable[[], Awaitable[T]], loop: str = "auto") -> T:
    """Run on uvloop where it installs (cheaper per request), else on plain asyncio."""
    import anyio

    use_uvloop = False
    if loop in ("auto", "uvloop"):
        try:
            import uvloop  # noqa: F401
        except ImportError:
            if loop == "uvloop":
                raise ConfigError("--event-loop uvloop: uvloop is not installed (pip install uvloop)") from None
        else:
            use_uvloop = True
    return anyio.run(fn, backend="asyncio", backend_options={"use_uvloop": use_uvloop})


def _cmd_run(ns: argparse.Namespace, argv: Sequence[str]) -> int:
    from .pipeline import RunAborted, manifest_path, run, tune_malloc
    from .progress import NullProgress, Progress, TqdmProgress

    cfg = config_from_args(ns)
    token, source = find_token(cfg.token_file)
    if not cfg.input_dir.is_dir():
        raise ConfigError(f"INPUT_DIR {cfg.input_dir} is not a folder")
    if not cfg.out.parent.exists():
        raise ConfigError(f"--out {cfg.out}: folder {cfg.out.parent} does not exist")
    err = sys.stderr
    if not cfg.quiet:
        print(f"batchcap {__version__}: {cfg.input_dir} -> {cfg.out} via {cfg.target} "
              f"(token: {source}; concurrency {cfg.concurrency}, rate {_default_rate(cfg.rate)})", file=err)
    progress: Progress = NullProgress() if cfg.quiet else TqdmProgress()
    scan_done = getattr(progress, "scan_finished", None)
    tune_malloc()
    try:
        stats = run_async(
            lambda: run(cfg, token=token, progress=progress, handle_signals=True, on_scan_done=scan_done),
            ns.event_loop,
        )
    except RunAborted as exc:
        print(f"batchcap: aborted: {exc}", file=err)
        print(f"batchcap: results so far are in {cfg.out}; fix the cause and run the same command to resume", file=err)
        return EXIT_ABORTED
    resume = "batchcap " + shlex.join(argv)
    breakdown = ", ".join(f"{k} {v}" for k, v in stats.errors_by_type.most_common())
    print(
        f"batchcap: {stats.ok} ok, {stats.failed} errors, {stats.skipped} already done, in {stats.elapsed:.1f} s "
        f"({stats.rate:.1f} img/s; {stats.retries} retries, {stats.throttled} rate-limited)"
        + (f"; errors: {breakdown}" if breakdown else ""),
        file=err,
    )
    if stats.scan_problems:
        print(f"batchcap: {stats.scan_problems} folders could not be read and were skipped", file=err)
    if stats.sidecar_errors:
        print(f"batchcap: {stats.sidecar_errors} caption sidecars could not be written", file=err)
    print(f"batchcap: results in {cfg.out} (run manifest {manifest_path(cfg.out)})", file=err)
    if stats.interrupted:
        print(f"batchcap: interrupted; resume with: {resume}", file=err)
        return EXIT_INTERRUPTED
    if stats.failed or stats.earlier_errors:
        if stats.earlier_errors and not stats.failed:
            print(f"batchcap: {stats.earlier_errors} images kept their earlier error record; "
                  "add --retry-failed to try them again", file=err)
        return EXIT_ERRORS
    return EXIT_OK


def _default_rate(rate: float | None) -> str:
    return "unlimited" if rate is None else f"{rate:g}/s"


def _cmd_serve(ns: argparse.Namespace) -> int:
    from .emulator import serve, settings_from_args

    return serve(settings_from_args(ns), ns.host, ns.port)


def _cmd_samples(ns: argparse.Namespace) -> int:
    from .samples import generate

    paths = generate(ns.dest, ns.count, seed=ns.seed)
    print(f"batchcap: {len(paths)} sample images in {ns.dest}", file=sys.stderr)
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    try:
        ns = parser.parse_args(argv)
    except SystemExit as exc:  # argparse: --help -> 0, usage errors -> 2
        return int(exc.code or 0)
    if ns.command is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        if ns.command == "run":
            return _cmd_run(ns, argv)
        if ns.command == "serve":
            return _cmd_serve(ns)
        if ns.command == "samples":
            return _cmd_samples(ns)
        if ns.command == "bench":
            from .bench import run_from_args

            return run_from_args(ns)
    except ConfigError as exc:
        print(f"batchcap: config error: {exc}", file=sys.stderr)
        return EXIT_ABORTED
    except BatchcapError as exc:
        print(f"batchcap: aborted: {exc}", file=sys.stderr)
        return EXIT_ABORTED
    except KeyboardInterrupt:
        print("batchcap: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    parser.error(f"unknown command {ns.command}")
    return EXIT_USAGE

