"""The dataset folders: ``imagefolder`` (images + ``metadata.jsonl``) and ``parquet`` (images embedded, in shards),
each with a ``README.md`` dataset card and the ``hf upload`` command that publishes the folder.

Images go in linked or copied byte for byte where every reader decodes them, converted where not
(``export.convert``); a dataset source's images are written from its bytes.
"""

from __future__ import annotations

import shlex
from pathlib import Path, PurePosixPath
from typing import Any

import orjson

from batchcap.errors import UsageError
from batchcap.export.card import MARKER, CardFacts, card_text
from batchcap.export.convert import needs_plugin, would_convert
from batchcap.export.files import atomic_bytes, head, place_image, replace_bytes, replace_text
from batchcap.export.items import ExportImage, converted_name, prepare_bytes
from batchcap.export.job import REPO_PLACEHOLDER, Job, read_manifest
from batchcap.export.shards import ShardWriter
from batchcap.journal.owned import LEDGER
from batchcap.source.read import sniff

__all__ = ["imagefolder", "parquet", "place", "upload_command"]


def upload_command(repo: str | None, folder: Path, fmt: str) -> str:
    """The ``hf upload`` command (huggingface_hub's CLI) that publishes ``folder`` as a dataset repository; for
    parquet, the shards a previous upload left and this export no longer has are deleted in the same commit."""
    argv = ["hf", "upload", repo or REPO_PLACEHOLDER, str(folder.resolve()), ".", "--repo-type", "dataset",
            "--exclude", f"*{LEDGER}"]  # batchcap's own note of what it wrote there (any folder)
    if fmt == "parquet":
        argv += ["--delete", "data/*.parquet"]
    return shlex.join(argv)


def place(job: Job, item: ExportImage, dest_root: Path) -> Path | None:
    """Put one image into ``dest_root``: linked or copied byte for byte, or written converted. None: left out.

    In place (no ``--out``: the metadata beside the input's own files) nothing is converted: batchcap does not add
    images to the user's folder; what a reader cannot decode is counted and said.
    """
    counts = job.report.images
    mode = job.options.convert
    if item.src is not None:
        mime = sniff(head(item.src) or b"")
        if mime is None or not would_convert(mime, mode) or job.in_place(dest_root):
            if mime is not None and needs_plugin(mime):
                counts.kept_unreadable[mime.removeprefix("image/")] += 1
            return _link(job, item.src, item.name, dest_root)
        data = _read(item.src)
    else:
        assert item.data is not None
        data = item.data
    got = prepare_bytes(data, mode, counts)
    if got is None:
        return None
    out, mime = got
    dest = job.dest(dest_root)(item.name if out is data else converted_name(item.name, mime))
    if dest is None:
        job.report.refused += 1
        return None
    if replace_bytes(dest, out):
        job.report.copied += 1
        job.wrote_image(dest_root, dest)
    else:
        job.report.unchanged += 1
    return dest


def _link(job: Job, src: Path, name: PurePosixPath, dest_root: Path) -> Path | None:
    """A folder image into the export as it is: a hard link, else a copy (nothing to do in place)."""
    if job.in_place(dest_root):
        return src
    dest = job.dest(dest_root)(name)
    if dest is None:
        job.report.refused += 1
        return None
    how = place_image(src, dest)
    if how == "linked":
        job.report.linked += 1
    elif how == "copied":
        job.report.copied += 1
    else:
        job.report.unchanged += 1
    if how != "unchanged":
        job.wrote_image(dest_root, dest)
    return dest


def imagefolder(job: Job) -> None:
    root = job.options.out or job.images
    if root is None:
        raise UsageError(f"--format imagefolder of a {job.source.kind if job.source else 'dataset'} source needs "
                         "--out DIR (the images are written there)")
    root.mkdir(parents=True, exist_ok=True)
    target = root / "metadata.jsonl"
    facts = CardFacts("imagefolder", 0, ["**"], job.text_columns())
    with atomic_bytes(target) as f:
        for item in job.images_in_order():
            placed = place(job, item, root)
            if placed is None:
                continue
            name = placed.relative_to(root).as_posix() if not job.in_place(root) else str(item.name)
            f.write(orjson.dumps({"file_name": name, **job.text_row(item.answers)}, option=orjson.OPT_APPEND_NEWLINE))
            job.report.written += 1
            _note(facts, item.record)
    job.report.outputs.append(target)
    if job.options.out is not None:
        _write_card(job, root, facts)


def _note(facts: CardFacts, rec: dict[str, Any]) -> None:
    """What the card counts of one exported record: its target, its flags."""
    target = rec.get("target")
    facts.targets[target if isinstance(target, str) and target else "unknown"] += 1
    flags = rec.get("flags")
    if isinstance(flags, list):
        facts.flags.update(str(x) for x in flags)


def _write_card(job: Job, root: Path, facts: CardFacts) -> None:
    """README.md with the YAML and the provenance; a README.md batchcap did not write is left alone."""
    card = root / "README.md"
    try:
        existing = card.read_text(encoding="utf-8")
    except FileNotFoundError:
        existing = None
    except (OSError, UnicodeDecodeError):
        existing = ""
    if existing is not None and MARKER not in existing:
        job.report.card_kept = card
        return
    report = job.report
    facts.rows = report.written
    facts.errors_left_out = report.errors
    facts.flagged_left_out = report.flagged
    facts.converted = report.images.converted
    facts.kept_unreadable = report.images.kept_unreadable
    facts.source = job.source.location if job.source is not None else None
    upload = upload_command(job.options.repo, root, facts.format)
    replace_text(card, card_text(facts, read_manifest(job.journal), upload=upload))
    report.card = card
    report.outputs.append(card)


def parquet(job: Job) -> None:
    """The images embedded as ``datasets``' Image feature stores them, in shards (``export.shards``), + the card."""
    out = job.options.out or job.journal.with_name(job.journal.stem + "-dataset")
    columns = job.text_columns()
    writer = ShardWriter(out, columns, shard_bytes=int(job.options.shard_mb * 1_000_000))
    facts = CardFacts("parquet", 0, ["data/train-*.parquet"], columns)
    counts = job.report.images
    try:
        for item in job.images_in_order():
            try:
                data = item.read()
            except OSError:  # gone since the listing
                job.report.missing += 1
                continue
            got = prepare_bytes(data, job.options.convert, counts)
            if got is None:
                continue
            out_bytes, mime = got
            name = item.name if out_bytes is data else converted_name(item.name, mime)
            writer.add(out_bytes, str(name), job.text_values(item.answers))
            job.report.written += 1
            _note(facts, item.record)
        shards = writer.close()
    except BaseException:
        writer.abort()
        raise
    job.report.outputs += shards
    _write_card(job, out, facts)


def _read(path: Path) -> bytes:
    return path.read_bytes()
