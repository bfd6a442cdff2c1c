"""``batchcap bench``: its flags, the settings they make, the run, the reports, the verdict and the exit code.

Flags left unset take a default that depends on ``--demo`` (a real bench sweeps wider and longer), which is why
they default to ``None`` here and are resolved in :func:`settings_from_args` rather than by argparse.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson

from batchcap.aio import run_async
from batchcap.bench import bench, render_results, write_reports
from batchcap.bench.spec import DEMO_MODEL, BenchSettings, Target, resolve_targets
from batchcap.cli.argtypes import add_event_loop_flag, add_overwrite_flag, number
from batchcap.cli.exit_codes import EXIT_ERRORS, EXIT_INTERRUPTED, EXIT_OK
from batchcap.cli.options import PREPARE, TOKEN_PRICE, add_options, given_settings
from batchcap.config import RunConfig
from batchcap.errors import UsageError
from batchcap.journal.fsio import ensure_writable_folder
from batchcap.journal.owned import note_written, refuse_foreign
from batchcap.service.settings import DEFAULT_API_BASE

__all__ = ["add_arguments", "images_dir", "main", "settings_from_args"]


_DEFAULTS = {  # flag: (real run, --demo)
    "concurrency": ((1, 2, 4, 8, 16, 32), (1, 2, 4, 8, 16)),
    "requests": (200, 80),
    "duration": (60.0, 4.0),
    "warmup": (5, 3),
    "images": (50, 40),
    "cold_start_timeout": (300.0, 20.0),
    "max_time": (900.0, 120.0),
}


def _positive_ints(text: str) -> tuple[int, ...]:
    try:
        values = sorted({int(v) for v in text.split(",") if v.strip()})
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected whole numbers like 1,2,4,8 (got {text!r})") from None
    if not values or values[0] < 1:
        raise argparse.ArgumentTypeError(f"expected whole numbers >= 1 like 1,2,4,8 (got {text!r})")
    return tuple(values)


def _positive_floats(text: str) -> tuple[float, ...]:
    try:
        values = sorted({float(v) for v in text.split(",") if v.strip()})
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers like 5,10,20 (got {text!r})") from None
    if not values or values[0] <= 0 or not math.isfinite(values[-1]):
        raise argparse.ArgumentTypeError(f"expected numbers > 0 like 5,10,20 (got {text!r})")
    return tuple(values)


def _show(value: Any) -> str:
    return ",".join(map(str, value)) if isinstance(value, tuple) else f"{value:g}"


def _dflt(name: str) -> str:
    real, demo = _DEFAULTS[name]
    return f"default: {_show(real)}; with --demo {_show(demo)}"


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Every ``batchcap bench`` flag, on the parser cli.py gives us."""
    p.description = (
        "Compare captioning targets (the free serverless API, a paid Inference Endpoint, an OpenAI-compatible "
        "server) on the same images: throughput and latency per concurrency, errors by kind, cost per 1,000 "
        "images, the best concurrency within a latency SLO, and a verdict. Writes bench.html (the page to read and "
        "share), bench.json, bench.md and a plot."
    )
    p.epilog = (
        "examples:\n"
        "  batchcap bench --demo                      # offline: three local emulators, ~1 min\n"
        f"  batchcap bench photos/ --target free=hf:{DEMO_MODEL} \\\n"
        "      --target endpoint=https://xyz.us-east-1.aws.endpoints.huggingface.cloud \\\n"
        "      --price-per-hour endpoint=0.60 --price-per-hour free=0 --slo 2\n"
        "  batchcap bench photos/ --target vlm=configs/openai-vlm.toml --arrival-rate 1,2,4\n"
        "images are prepared as `batchcap run` prepares them (--max-side, --jpeg-quality, --keep-metadata,\n"
        "--max-upload-mb, --max-pixels), so the bench measures what a run sends.\n"
        "tokens: each target uses --token-file NAME=PATH, else $HF_TOKEN / ~/.cache/huggingface/token;\n"
        "never on the command line, never written to bench.json.\n"
        "exit codes: 0 report written; 1 report written but no target returned a caption; 2 bad flags;\n"
        "  3 aborted (token refused, wrong URL/model, no readable images)"
    )
    p.add_argument("images_dir", metavar="IMAGES_DIR", type=Path, nargs="?",
                   help="folder of your images (the first --images are used, in scan order)")
    t = p.add_argument_group("targets")
    t.add_argument("--target", action="append", default=[], metavar="NAME=SPEC",
                   help="repeatable. SPEC: hf:MODEL_ID (serverless API), https://... (Inference Endpoint URL), "
                        "openai:MODEL@BASE_URL (chat server), endpoint:NAMESPACE/NAME[@MANAGEMENT_API] (an "
                        "Endpoint by name: resumed if asleep, its cold start timed from the resume, left as found), "
                        "or path/to/profile.toml (see configs/)")
    t.add_argument("--space", metavar="OWNER/NAME|URL",
                   help="also benchmark this Gradio app (a Space, or any Gradio app's URL) as a target named "
                        "'space' (the same as --target space=space:OWNER/NAME)")
    t.add_argument("--space-api", metavar="NAME", help="the endpoint of every Space target, e.g. /caption "
                   "(default: the one that takes an image and returns text)")
    t.add_argument("--space-input", dest="space_inputs", action="append", default=[], metavar="NAME=VALUE",
                   help="repeatable: another input of every Space target's endpoint, by name")
    t.add_argument("--api-base", default=DEFAULT_API_BASE, metavar="URL", help="serverless API base for hf: targets (default: %(default)s)")
    t.add_argument("--token-file", action="append", default=[], metavar="NAME=PATH",
                   help="file holding the token for target NAME (PATH alone: every target)")
    t.add_argument("--price-per-hour", action="append", default=[], metavar="NAME=DOLLARS",
                   help="what target NAME costs per hour (0 = free): adds cost per 1,000 images and images per dollar")
    add_options(t, TOKEN_PRICE)
    s = p.add_argument_group("sweep")
    s.add_argument("--concurrency", type=_positive_ints, metavar="LIST",
                   help=f"closed loop: requests in flight per step ({_dflt('concurrency')})")
    s.add_argument("--arrival-rate", type=_positive_floats, metavar="LIST",
                   help="open loop: Poisson arrivals per second per step, e.g. 5,10,20; latency counts from the "
                        "scheduled send time. Alone it replaces the closed loop; with --concurrency both run")
    s.add_argument("--requests", type=number(int, 1), metavar="N", help=f"measured requests per step ({_dflt('requests')})")
    s.add_argument("--duration", type=number(float, 0.1), metavar="SECONDS", help=f"seconds cap per step ({_dflt('duration')})")
    s.add_argument("--warmup", type=number(int, 0), metavar="N",
                   help=f"requests per step sent first and reported apart ({_dflt('warmup')})")
    s.add_argument("--slo", type=number(float, 0.001), default=2.0, metavar="SECONDS",
                   help="p95 latency target in seconds; the knee is the best step within it (default: %(default)s)")
    s.add_argument("--max-in-flight", type=number(int, 1), default=256, metavar="N",
                   help="open loop: cap on requests in flight (default: %(default)s)")
    s.add_argument("--throttle-pause", type=number(float, 0.0), default=1.0, metavar="SECONDS",
                   help="closed loop: seconds a worker rests after a 429 without Retry-After (default: %(default)s)")
    b = p.add_argument_group("bounds and output")
    b.add_argument("--images", type=number(int, 1), metavar="N", help=f"distinct images to load and cycle through ({_dflt('images')})")
    b.add_argument("--images-dir", type=Path, dest="images_dir_opt", metavar="DIR",
                   help="same as IMAGES_DIR (with --demo: use these instead of generated samples)")
    b.add_argument("--max-image-mb", type=number(float, 0.001), default=20.0, metavar="MB", help="skip larger files (default: %(default)s)")
    b.add_argument("--timeout", type=number(float, 0.001), metavar="SECONDS", help="seconds per request (default: the target's, 60)")
    b.add_argument("--cold-start-timeout", type=number(float, 0.0), metavar="SECONDS",
                   help=f"seconds to wait for a target's first caption ({_dflt('cold_start_timeout')})")
    b.add_argument("--max-time", type=number(float, 1.0), metavar="SECONDS", help=f"seconds for the whole bench ({_dflt('max_time')})")
    b.add_argument("--seed", type=int, default=0, metavar="N", help="seed of the open-loop arrival schedules (default: %(default)s)")
    b.add_argument("--out", type=Path, default=Path("bench-out"), metavar="DIR", help="folder for bench.json/.md/.png (default: %(default)s)")
    b.add_argument("--plot-format", choices=("png", "svg"), default="png", help="plot file type (default: %(default)s)")
    b.add_argument("--demo", action="store_true",
                   help="benchmark three local emulators: a rate-limited, cold-starting 'free' API, a token-billed VLM "
                        "'router' provider and a fast $0.60/h "
                        "'endpoint' (no token, no network)")
    add_event_loop_flag(b)
    add_overwrite_flag(b)
    add_options(p.add_argument_group("image preparation (the same as batchcap run: what is measured is what a run "
                                     "sends)"), PREPARE)


def images_dir(ns: argparse.Namespace) -> Path | None:
    positional: Path | None = ns.images_dir
    option: Path | None = ns.images_dir_opt
    if positional is not None and option is not None and positional != option:
        raise UsageError(f"two image folders given ({positional} and --images-dir {option}); give one")
    return positional if positional is not None else option


def _space_options(ns: argparse.Namespace, targets: tuple[Target, ...]) -> tuple[Target, ...]:
    """``--space-api`` (unless a spec names its own) and ``--space-input`` for every Space target."""
    if not any(t.cfg.target.space for t in targets):
        if ns.space_api is not None or ns.space_inputs:
            raise UsageError("--space-api and --space-input need a Space target: --space OWNER/NAME or "
                             "--target NAME=space:OWNER/NAME")
        return targets
    out = []
    for t in targets:
        target = t.cfg.target
        if target.space is not None:
            target = replace(target, space_api=target.space_api or ns.space_api, space_inputs=tuple(ns.space_inputs))
            t = replace(t, cfg=replace(t.cfg, target=target).validate())
        out.append(t)
    return tuple(out)


def settings_from_args(ns: argparse.Namespace) -> BenchSettings:
    """Flags -> settings; raises UsageError for anything malformed. Targets are empty for --demo."""
    demo = bool(ns.demo)

    def pick(name: str) -> Any:
        value = getattr(ns, name, None)
        return value if value is not None else _DEFAULTS[name][1 if demo else 0]

    given = images_dir(ns)
    if demo:
        if ns.target:
            raise UsageError("--demo makes its own three targets; drop --target (or drop --demo)")
        targets: tuple[Target, ...] = ()
    else:
        specs = list(ns.target) + ([f"space=space:{ns.space}"] if ns.space else [])
        if not specs:
            raise UsageError("name at least one --target (e.g. --target free=hf:MODEL_ID), or try --demo")
        targets = _space_options(ns, resolve_targets(specs, api_base=ns.api_base, token_files=ns.token_file,
                                                     prices=ns.price_per_hour))
        if given is None:
            raise UsageError("give the folder of images to benchmark with: batchcap bench IMAGES_DIR --target ...")
    run_settings = RunConfig().with_flat(given_settings(ns))  # the run's flags bench shares: preparation, prices
    concurrency = ns.concurrency
    rates = ns.arrival_rate or ()
    if concurrency is None:
        concurrency = () if rates else pick("concurrency")
    return BenchSettings(
        targets=targets,
        images_dir=Path(given) if given is not None else Path("."),
        images=pick("images"),
        concurrency=tuple(concurrency),
        arrival_rates=tuple(rates),
        requests=pick("requests"),
        duration=pick("duration"),
        warmup=pick("warmup"),
        slo=ns.slo,
        timeout=ns.timeout,
        cold_start_timeout=pick("cold_start_timeout"),
        max_time=pick("max_time"),
        max_in_flight=ns.max_in_flight,
        throttle_pause=ns.throttle_pause,
        max_image_mb=ns.max_image_mb,
        seed=ns.seed,
        demo=demo,
        prepare=run_settings.prepare,
        token_price=run_settings.budget.token_price,
    )


def _log(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def main(ns: argparse.Namespace, argv: Sequence[str]) -> int:
    """0 report written (1 if nothing succeeded), 2 bad flags, 3 aborted, 130 interrupted (partial report)."""
    from batchcap.site import write_bench_html

    settings = settings_from_args(ns)
    ensure_writable_folder(ns.out, flag="--out")  # before the first request: a bench may be paid Endpoint time
    outputs = [ns.out / name for name in ("bench.json", "bench.md", f"bench.{ns.plot_format}", "bench.html")]
    refuse_foreign(outputs, overwrite=ns.overwrite)  # a user's bench.md is kept, and nothing is sent
    given = images_dir(ns)
    result = run_async(lambda: bench(settings, given, _log), ns.event_loop)
    paths = write_reports(result, ns.out, plot_format=ns.plot_format)
    page = write_bench_html(orjson.loads(paths.json.read_bytes()), ns.out)
    note_written(outputs)
    print(render_results(result))
    _log(f"batchcap bench: wrote {paths.json}, {paths.markdown}" + (f", {paths.plot}" if paths.plot else "")
         + f", {page} (a page to share: the folder is a Static Space)")
    if paths.plot_note:
        _log(f"batchcap bench: {paths.plot_note}")
    if result.stopped == "interrupted":
        _log("batchcap bench: interrupted; the report holds the steps measured before Ctrl-C")
        return EXIT_INTERRUPTED
    if not any(r.stats.ok for t in result.targets for r in t.steps):
        _log("batchcap bench: no target returned a caption; see the notes and error counts in bench.md")
        return EXIT_ERRORS
    return EXIT_OK
