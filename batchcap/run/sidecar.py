"""``--sidecar``: each caption also beside its image as ``NAME.txt``, by the kohya exporter's rules.

The rules (``batchcap.source.sidecars``, shared with ``export --format kohya``): a sidecar that is already there is kept unless ``--sidecar-mode``
says ``overwrite`` (or ``append``/``prepend``); two images of one folder that map to one sidecar name
(``photo.jpg``, ``photo.webp`` -> ``photo.txt``) clash, and the sidecar belongs to the first of them by name,
whatever order they are captioned in (so shards, resumes and ``export --format kohya`` agree); the others are
named in the summary and keep their captions in the JSONL only.

Clashes are found per folder (one listing, kept for the folders seen last: the writer meets images roughly in
scan order), so memory does not grow with the folder.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

from batchcap.models import Record
from batchcap.source.scan import DEFAULT_EXTENSIONS
from batchcap.source.sidecars import Mode, sidecar_name, sidecar_text, write_sidecar

__all__ = ["MAX_EXAMPLES", "SidecarReport", "SidecarWriter"]

MAX_EXAMPLES = 5  #: clashes and kept files named in the summary (the rest are counted)
_FOLDERS = 256  #: folder listings kept for clash checks


@dataclass(slots=True)
class SidecarReport:
    """What ``--sidecar`` did; the examples are relative paths, for the summary."""

    written: int = 0
    unchanged: int = 0  #: already held exactly this caption
    kept: int = 0  #: a file was there (not written by this run): kept, as --sidecar-mode keep says
    clashes: int = 0  #: images whose sidecar name belongs to another image of the folder
    failed: int = 0  #: could not be written (permissions, disk)
    kept_examples: list[str] = field(default_factory=list)
    #: (image, sidecar, the image it belongs to)
    clash_examples: list[tuple[str, str, str]] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        return {"written": self.written, "unchanged": self.unchanged, "kept": self.kept, "clashes": self.clashes,
                "failed": self.failed, "kept_examples": list(self.kept_examples),
                "clash_examples": [list(c) for c in self.clash_examples]}


class SidecarWriter:
    """Writes the sidecar of each ok record (in the journal writer's thread, one call at a time)."""

    def __init__(self, root: Path, *, ext: str = ".txt", mode: Mode = "keep", follow_symlinks: bool = False) -> None:
        self.root = root
        self.ext = ext
        self.mode: Mode = mode
        self.follow_symlinks = follow_symlinks
        self.report = SidecarReport()
        self._folders: OrderedDict[str, dict[str, str]] = OrderedDict()  # folder -> {stem: first image name}

    def write(self, rec: Record) -> None:
        if rec.status != "ok" or rec.caption is None:
            return
        image = self.root / rec.path
        sidecar = sidecar_name(image, self.ext)
        owner = self._owner(image)
        report = self.report
        if sidecar is None:  # --sidecar-ext is the image's own extension (validation refuses image extensions)
            report.clashes += 1
            return
        if owner != image.name:
            report.clashes += 1
            if len(report.clash_examples) < MAX_EXAMPLES:
                rel = Path(rec.path)
                report.clash_examples.append((rec.path, str(rel.with_name(sidecar.name)), str(rel.with_name(owner))))
            return
        try:
            text = sidecar_text(sidecar, rec.caption, self.mode)
            if text is None and sidecar.read_bytes() == (rec.caption + "\n").encode("utf-8"):
                report.unchanged += 1  # this very caption (a rerun into another journal): nothing lost
                return
            if text is None:
                report.kept += 1
                if len(report.kept_examples) < MAX_EXAMPLES:
                    report.kept_examples.append(str(Path(rec.path).with_name(sidecar.name)))
                return
            if write_sidecar(sidecar, text + "\n"):
                report.written += 1
            else:
                report.unchanged += 1
        except OSError:
            report.failed += 1

    def _owner(self, image: Path) -> str:
        """The name of the image the sidecar of ``image`` belongs to: the first by name of those sharing its stem."""
        folder = str(image.parent)
        stems = self._folders.get(folder)
        if stems is None:
            stems = self._folders[folder] = self._list(image.parent)
            if len(self._folders) > _FOLDERS:
                self._folders.popitem(last=False)
        else:
            self._folders.move_to_end(folder)
        return stems.get(image.stem, image.name)

    def _list(self, folder: Path) -> dict[str, str]:
        """{stem: first image name} for the stems that more than one image of ``folder`` has."""
        first: dict[str, str] = {}
        shared: set[str] = set()
        try:
            with os.scandir(folder) as it:
                for entry in it:
                    name = entry.name
                    stem, dot, ext = name.rpartition(".")
                    if not dot or not stem or "." + ext.lower() not in DEFAULT_EXTENSIONS:
                        continue
                    if not entry.is_file(follow_symlinks=self.follow_symlinks):
                        continue
                    if stem in first:
                        shared.add(stem)
                        first[stem] = min(first[stem], name)
                    else:
                        first[stem] = name
        except OSError:
            return {}
        return {stem: first[stem] for stem in shared}
