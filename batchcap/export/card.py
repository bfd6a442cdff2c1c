"""The ``README.md`` dataset card of an export: YAML that ``datasets`` and ``huggingface_hub.DatasetCard`` parse,
then where the captions came from, read from the run manifest (or the merged one) and the exported records.

The YAML holds the Hub's own keys (``configs`` with the data files, ``task_categories: [image-to-text]``,
``size_categories``, ``source_datasets`` for an ``hf://`` source, ``tags``) and one ``batchcap`` mapping with the
provenance: source, models and providers (with how many captions each made), prompts or tasks, preparation
settings, counts, quality flags, spend where the manifest knows it, and the batchcap versions. The body says the
same for people. Every value from a journal or a manifest is untrusted text: YAML strings are always quoted
(JSON escapes, which YAML reads), and in the body they sit in code spans or fenced blocks.
"""

from __future__ import annotations

import re
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from batchcap.version import __version__
from batchcap.words import plural

__all__ = ["MARKER", "CardFacts", "card_text", "provenance", "size_category", "yaml_dump"]

#: Marks a card batchcap wrote: an export rewrites its own card, never someone else's README.md.
MARKER = "<!-- written by batchcap export: rewritten on every export -->"
_PLAIN_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_SIZES = ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M"),
          (10_000_000, "1M<n<10M"), (100_000_000, "10M<n<100M"), (1_000_000_000, "100M<n<1B"))


def size_category(rows: int) -> str:
    """The Hub's ``size_categories`` value for ``rows``."""
    for bound, label in _SIZES:
        if rows < bound:
            return label
    return "n>1T" if rows >= 10**12 else "1B<n<10B" if rows < 10**10 else "10B<n<100B" if rows < 10**11 else "100B<n<1T"


@dataclass(slots=True)
class CardFacts:
    """What the export itself knows: its layout and counts (the rest comes from the manifest)."""

    format: str  #: parquet or imagefolder
    rows: int
    data_files: list[str]  #: glob(s) of the data files, relative to the export folder
    text_columns: list[str]
    errors_left_out: int = 0
    flagged_left_out: int = 0
    converted: Counter[str] = field(default_factory=Counter)  #: from-type -> count
    kept_unreadable: Counter[str] = field(default_factory=Counter)  #: shipped as they are with --convert keep
    targets: Counter[str] = field(default_factory=Counter)  #: target -> exported captions it made
    flags: Counter[str] = field(default_factory=Counter)  #: quality flags on exported captions
    source: str | None = None  #: the input the run read (manifest, or --images)


def _configs(manifest: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    """Every config the manifest holds: the run's, each invocation's, each merged part's (in that order)."""
    if not isinstance(manifest, Mapping):
        return []
    out = []
    if isinstance(manifest.get("config"), dict):
        out.append(manifest["config"])
    for key in ("invocations", "parts"):
        items = manifest.get(key)
        if isinstance(items, list):
            for item in items:
                inner = item.get("manifest") if isinstance(item, dict) and "manifest" in item else item
                if isinstance(inner, dict):
                    if isinstance(inner.get("config"), dict):
                        out.append(inner["config"])
                    elif "prompt" in inner or "target" in inner:
                        out.append(inner)
    return out


def _manifests(manifest: Mapping[str, Any] | None) -> list[Mapping[str, Any]]:
    """The manifest, and for a merged one each part's own."""
    if not isinstance(manifest, Mapping):
        return []
    out: list[Mapping[str, Any]] = [manifest]
    parts = manifest.get("parts")
    if isinstance(parts, list):
        out += [p["manifest"] for p in parts if isinstance(p, dict) and isinstance(p.get("manifest"), dict)]
    return out


def _uniq(values: Sequence[Any]) -> list[Any]:
    seen: list[Any] = []
    for v in values:
        if v is not None and v != "" and v not in seen:
            seen.append(v)
    return seen


def provenance(manifest: Mapping[str, Any] | None, facts: CardFacts) -> dict[str, Any]:
    """The ``batchcap`` mapping of the card's YAML (plain JSON-able values)."""
    configs = _configs(manifest)
    manifests = _manifests(manifest)
    source = next((m["source"] for m in manifests if isinstance(m.get("source"), dict)), None)
    prompts, tasks = [], []
    for c in configs:
        if isinstance(c.get("tasks"), dict | list):
            tasks.append(c["tasks"])
        if c.get("api") == "openai" or (c.get("prompt") and c.get("targets")):
            prompts.append(c.get("prompt"))
    models = _uniq([c.get("target") for c in configs] + [t for c in configs for t in (c.get("targets") or [])])
    prep_keys = ("max_side", "jpeg_quality", "keep_metadata", "max_upload_mb", "max_pixels", "dedupe")
    preparation = {k: configs[0].get(k) for k in prep_keys if configs and k in configs[0]}
    spend = _spend(manifests)
    counts: dict[str, Any] = {"rows": facts.rows, "errors_left_out": facts.errors_left_out,
                              "flagged_left_out": facts.flagged_left_out,
                              "converted": dict(facts.converted), "unreadable_kept": dict(facts.kept_unreadable)}
    run_counts = next((m["counts"] for m in manifests if isinstance(m.get("counts"), dict)), None)
    if run_counts is not None:
        counts["run"] = run_counts
    run_flags = next((m["flags"] for m in manifests if isinstance(m.get("flags"), dict)), None)
    flags = {"exported": dict(facts.flags), "run": run_flags}
    versions = _uniq([m.get("version") for m in manifests])
    out: dict[str, Any] = {
        "source": source if source is not None else {"location": facts.source},
        "models": [{"target": t, "captions": n} for t, n in facts.targets.most_common()] or
                  [{"target": t} for t in models],
        "prompts": _uniq(prompts) if prompts else None,
        "tasks": tasks[-1] if tasks else None,
        "preparation": preparation or None,
        "counts": counts,
        "quality_flags": flags,
        "spend": spend,
        "batchcap_version": {"run": versions, "export": __version__},
        "exported_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    if not out["prompts"] and not out["tasks"]:
        out["prompts"] = None
        out["prompt_note"] = "raw-bytes targets (--api hf, Endpoints) take no prompt: the image alone was sent"
    return out


def _spend(manifests: Sequence[Mapping[str, Any]]) -> dict[str, Any] | None:
    """Dollars where a manifest knows them: per-target cost (``--price-per-hour``), or a ``spend``/``cost`` entry."""
    total = 0.0
    per: dict[str, float] = {}
    known = False
    for m in manifests:
        for key in ("spend", "cost"):
            v = m.get(key)
            if isinstance(v, int | float) and not isinstance(v, bool):
                total += float(v)
                known = True
            elif isinstance(v, dict) and isinstance(v.get("dollars"), int | float):
                total += float(v["dollars"])
                known = True
        targets = m.get("targets")
        if isinstance(targets, dict):
            for name, info in targets.items():
                cost = info.get("cost") if isinstance(info, dict) else None
                if isinstance(cost, int | float) and not isinstance(cost, bool):
                    per[name] = per.get(name, 0.0) + float(cost)
                    known = True
    if not known:
        return None
    return {"dollars": round(total + sum(per.values()), 4), "by_target": {k: round(v, 4) for k, v in per.items()}}


def yaml_dump(value: Any, indent: int = 0) -> str:
    """Block YAML with every string double-quoted (JSON escapes): no value can turn into YAML syntax."""
    pad = "  " * indent
    if isinstance(value, Mapping):
        if not value:
            return pad + "{}\n"
        lines = []
        for k, v in value.items():
            key = k if _PLAIN_KEY.fullmatch(str(k)) else _scalar(str(k))
            if (isinstance(v, Mapping) and v) or (isinstance(v, list) and v):
                lines.append(f"{pad}{key}:\n{yaml_dump(v, indent + 1)}")
            else:
                lines.append(f"{pad}{key}: {_scalar(v)}\n")
        return "".join(lines)
    if isinstance(value, list):
        lines = []
        for v in value:
            if isinstance(v, Mapping) and v:
                body = yaml_dump(v, indent + 1)
                lines.append(f"{pad}- {body[len(pad) + 2:]}")
            elif isinstance(v, list) and v:
                lines.append(f"{pad}-\n{yaml_dump(v, indent + 1)}")
            else:
                lines.append(f"{pad}- {_scalar(v)}\n")
        return "".join(lines)
    return pad + _scalar(value) + "\n"


def _scalar(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return orjson.dumps(v).decode()
    if isinstance(v, Mapping):
        return "{}"
    if isinstance(v, list):
        return "[]"
    text = str(v).encode("utf-8", "backslashreplace").decode("utf-8")  # a lone surrogate (argv bytes) as \udcff
    return _YAML_UNSAFE.sub(lambda m: f"\\u{ord(m.group()):04x}", orjson.dumps(text).decode())


#: Characters YAML reads as line breaks inside a quoted string (NEL, LS, PS) or refuses in a stream (DEL, the C1
#: controls, BOM, U+FFFE/FFFF): escaped as \uXXXX, which a YAML double-quoted string reads back exactly.
_YAML_UNSAFE = re.compile("[\x7f-\x9f\u2028\u2029\ufeff\ufffe\uffff]")


def _fence(text: str) -> str:
    """``text`` in a fenced block whose fence no run of backticks inside can close."""
    longest = max((len(m) for m in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}text\n{text}\n{fence}\n"


def _code(text: str) -> str:
    text = text.replace("\n", " ")
    longest = max((len(m) for m in re.findall(r"`+", text)), default=0)
    ticks = "`" * (longest + 1)
    return f"{ticks} {text} {ticks}"


def card_text(facts: CardFacts, manifest: Mapping[str, Any] | None, *, upload: str) -> str:
    """The whole README.md: YAML front matter, then the provenance in prose."""
    prov = provenance(manifest, facts)
    config: dict[str, Any] = {"config_name": "default",
                              "data_files": [{"split": "train", "path": facts.data_files}]}
    if facts.format == "imagefolder":
        config["drop_labels"] = True
    meta: dict[str, Any] = {
        "configs": [config],
        "task_categories": ["image-to-text"],
        "size_categories": [size_category(facts.rows)],
        "tags": ["batchcap", "image-captioning"],
    }
    location = (prov["source"] or {}).get("location") if isinstance(prov["source"], dict) else None
    if isinstance(location, str) and location.startswith("hf://datasets/"):
        repo = "/".join(location.removeprefix("hf://datasets/").split("/")[:2]).split("@")[0]
        meta["source_datasets"] = [repo]
    meta["batchcap"] = prov
    lines = ["---\n", yaml_dump(meta), "---\n", MARKER, "\n\n# Captioned images\n\n"]
    lines.append(f"{plural(facts.rows, 'image')}, each with its caption in "
                 f"{', '.join(_code(c) for c in facts.text_columns)}, exported by batchcap {__version__} "
                 f"({facts.format}).\n\n## Load it\n\n")
    if facts.format == "parquet":
        lines.append(_fence('from datasets import load_dataset\n\nds = load_dataset("parquet", '
                            'data_dir="THIS_FOLDER", split="train")  # or load_dataset("ORG/NAME") once published'))
    else:
        lines.append(_fence('from datasets import load_dataset\n\nds = load_dataset("imagefolder", '
                            'data_dir="THIS_FOLDER", split="train")  # or load_dataset("ORG/NAME") once published'))
    lines.append("\nPublish it with huggingface_hub's CLI:\n\n" + _fence(upload))
    lines.append("\n## How the captions were made\n\n")
    src = prov["source"] if isinstance(prov["source"], dict) else {}
    lines.append(f"- Source: {_code(str(src.get('location') or 'unknown'))}"
                 + (f" ({src['kind']})" if src.get("kind") else "") + "\n")
    for m in prov["models"]:
        n = f": {plural(m['captions'], 'caption')}" if "captions" in m else ""
        lines.append(f"- Model / provider: {_code(str(m['target']))}{n}\n")
    if prov.get("prompts"):
        for p in prov["prompts"]:
            lines.append("- Prompt:\n\n" + _indent(_fence(str(p))))
    elif prov.get("prompt_note"):
        lines.append(f"- Prompt: none ({prov['prompt_note']})\n")
    if prov.get("tasks"):
        lines.append("- Tasks:\n\n" + _indent(_fence(orjson.dumps(prov["tasks"], option=orjson.OPT_INDENT_2)
                                                     .decode())))
    if prov.get("preparation"):
        lines.append("- Preparation: " + ", ".join(f"{k} {_code(str(v))}" for k, v in prov["preparation"].items())
                     + "\n")
    c = prov["counts"]
    lines.append(f"- Rows: {c['rows']}; left out: {plural(c['errors_left_out'], 'image')} with an error record, "
                 f"{c['flagged_left_out']} flagged\n")
    if c["converted"]:
        lines.append("- Converted so every reader decodes them: "
                     + ", ".join(f"{n} {k}" for k, n in c["converted"].items()) + "\n")
    if c["unreadable_kept"]:
        lines.append("- Kept as they are (need a Pillow plugin to decode): "
                     + ", ".join(f"{n} {k}" for k, n in c["unreadable_kept"].items()) + "\n")
    exported_flags = prov["quality_flags"]["exported"]
    lines.append("- Quality flags on the exported captions: "
                 + (", ".join(f"{_code(str(k))} {v}" for k, v in exported_flags.items()) or "none") + "\n")
    if prov["spend"] is not None:
        lines.append(f"- Spend: ${prov['spend']['dollars']:.4f}\n")
    lines.append(f"- batchcap: run {', '.join(map(str, prov['batchcap_version']['run'])) or 'unknown'}, "
                 f"export {__version__}\n")
    return "".join(lines)


def _indent(block: str) -> str:
    return "".join("  " + line if line.strip() else line for line in block.splitlines(keepends=True))
