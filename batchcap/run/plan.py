"""What a run asks of each image, decided against what the journal already holds.

    plan = build_plan(cfg, lanes)            # once, before anything is sent: tasks, templates, schemas, prints
    planner = Planner(plan, index, ...)      # the readers ask it, per image:
    planner.skip(path)                       #   scan time: every task already answered as this run would ask?
    planner.plan_image(image)                #   after the read: the asks left, and records made without a request

Per image and task the rendered prompt gives a fingerprint (``batchcap.tasks.fingerprint``) on each target of
the run, and the journal's answer for (path, task) (``batchcap.journal.index``) is judged:

* the same answer id on any target: **kept** (nothing sent, nothing written);
* a final error for that question: skipped (``--retry-failed`` asks again);
* an answer made otherwise (prompt, model, target, schema, preparation): **stale**: asked again, or kept with
  ``--keep-stale``;
* none: new. A stale or new question whose image content and answer id match an ok line anywhere in the
  journal (a copy, a moved or renamed file or folder) gets that answer without a request (``duplicate_of``).

Answers written before fingerprints existed (``LEGACY``) count as current for the ``caption`` task when the
manifest's settings of that time ask what this run asks (``legacy_current``), else as stale.
"""

from __future__ import annotations

import os
import threading
import time
from collections import Counter
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from batchcap.config import RunConfig
from batchcap.errors import ConfigError, PromptError, UsageError
from batchcap.journal import JournalIndex
from batchcap.journal.index import LEGACY, Entry, answer_id
from batchcap.models import DEFAULT_TASK, Ask, ErrorInfo, ImageJob, LoadedImage, Record
from batchcap.prepare.settings import PrepareSettings
from batchcap.run.manifest import task_specs
from batchcap.service.settings import TargetSettings
from batchcap.tasks.context import SIDECAR_EXT, SIDECAR_MAX, context_for
from batchcap.tasks.fingerprint import Parts, TaskPrint
from batchcap.tasks.schema import Schema, load_schema
from batchcap.tasks.spec import TaskSpec
from batchcap.tasks.template import PromptTemplate

__all__ = ["LaneTasks", "Plan", "Planner", "TaskRun", "build_plan", "legacy_current", "legacy_parts", "planner_for", "spec_history", "stale_notes",
           "target_identity"]


@dataclass(frozen=True, slots=True)
class TaskRun:
    """One task as this run asks it: its spec, its compiled prompt and its schema (if any)."""

    spec: TaskSpec
    template: PromptTemplate
    schema: Schema | None

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def prompt_budget(self) -> int:
        """Bytes the prompt may take in a request body, at most (for the body limit): its text when constant;
        else the template with room for what it may render (JSON escaping doubled, a sidecar at its largest)."""
        if self.template.text is not None:
            return 2 * len(self.template.text.encode("utf-8", "surrogatepass"))
        room = 2 * len(self.spec.prompt.encode("utf-8", "surrogatepass")) + 4096
        return room + (2 * SIDECAR_MAX if self.template.needs_sidecar else 0)


@dataclass(frozen=True, slots=True)
class LaneTasks:
    """The tasks on one target: whether it is sent a prompt, and each task's fingerprints there."""

    target: str  #: the target's identity as fingerprints hash it (secret-free)
    prompted: bool  #: a chat target (prompt, generation settings, schema); else raw image bytes
    prints: Mapping[str, TaskPrint]
    generation: Mapping[str, Mapping[str, Any]]  #: per task, what the target is sent besides the image


@dataclass(frozen=True, slots=True)
class Plan:
    """The run's tasks (in order) and, per target, their fingerprints."""

    tasks: tuple[TaskRun, ...]
    lanes: tuple[LaneTasks, ...]
    preparation: Mapping[str, Any]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.tasks)

    @property
    def primary(self) -> str:
        """The first task: what ``--sidecar`` writes and the boilerplate counter watches."""
        return self.tasks[0].name

    @property
    def needs_exif(self) -> bool:
        return any(t.template.needs_exif for t in self.tasks)

    @property
    def needs_sidecar(self) -> bool:
        return any(t.template.needs_sidecar for t in self.tasks)

    @property
    def path_only(self) -> bool:
        """Every prompt renders from the path (and sidecar): answers can be judged before the image is read."""
        return all(t.template.path_only for t in self.tasks)

    @property
    def static(self) -> bool:
        return all(t.template.static for t in self.tasks)

    def task(self, name: str) -> TaskRun:
        return next(t for t in self.tasks if t.name == name)

    def manifest_tasks(self) -> dict[str, Any]:
        """What the manifest keeps per task: its settings, and per target the spec and component hashes."""
        out: dict[str, Any] = {}
        for t in self.tasks:
            out[t.name] = {
                "prompt": t.spec.prompt,
                "max_tokens": t.spec.max_tokens,
                "temperature": t.spec.temperature,
                "schema": None if t.schema is None else {"file": t.schema.source, "schema": t.schema.body},
                "targets": [{"target": lane.target, "spec": lane.prints[t.name].spec,
                             "parts": lane.prints[t.name].parts.as_dict()} for lane in self.lanes],
            }
        return out


def target_identity(target: TargetSettings) -> str:
    """What fingerprints hash of a target: API, model, and the endpoint or base URL (without credentials); a
    Space: the app, its API and the inputs given to it."""
    if (space := target.space_settings()) is not None:
        return f"space {space.target} {target.space_api or ''} {' '.join(target.space_inputs)}".rstrip()
    if target.api == "openai":
        return f"openai {target.model} {_clean(target.base_url or '')}"
    if target.endpoint_name:
        return f"{target.api} endpoint-name {target.endpoint_name}"
    if target.endpoint:
        return f"{target.api} endpoint {_clean(target.endpoint)}"
    return f"{target.api} {target.model} {_clean(target.api_base)}"


def _clean(url: str) -> str:
    parts = urlsplit(url)
    netloc = parts.netloc.rsplit("@", 1)[-1]
    return parts._replace(netloc=netloc, query="", fragment="").geturl().rstrip("/")


def preparation_parts(prep: PrepareSettings) -> dict[str, Any]:
    """The preparation settings that change the pixels sent (``--max-side 0``: the files as they are)."""
    if not prep.enabled:
        return {"max_side": 0}
    return {"max_side": prep.max_side, "jpeg_quality": prep.jpeg_quality, "max_upload_mb": prep.max_upload_mb}


def _generation(lane: TargetSettings, spec: TaskSpec) -> dict[str, Any]:
    if lane.takes_prompt:
        return {"max_tokens": spec.max_tokens if spec.max_tokens is not None else lane.max_tokens,
                "temperature": spec.temperature if spec.temperature is not None else lane.temperature}
    if lane.api == "hf-json" and lane.space is None:
        return {"parameters": dict(lane.parameters or {})}
    return {}


def build_plan(cfg: RunConfig, lanes: Sequence[RunConfig] = (), *, extra: Collection[str] = ()) -> Plan:
    """The run's tasks checked against its targets: ``UsageError`` (exit 2) before anything is sent.

    ``lanes``: the configs of ``--target`` lanes (none: ``cfg`` is the one target). ``extra``: names of
    per-image variables a source provides (``ImageJob.context``).
    """
    lane_cfgs = tuple(c.target for c in lanes) or (cfg.target,)
    specs = cfg.tasks.specs(prompt=cfg.target.prompt)
    runs = []
    for spec in specs:
        template = PromptTemplate.compile(spec.name, spec.prompt, extra=extra)
        schema = load_schema(Path(os.path.expanduser(spec.schema)), task=spec.name) if spec.schema else None
        runs.append(TaskRun(spec, template, schema))
    for lane in lane_cfgs:
        if not lane.takes_prompt:
            what = "--space sends the image to the app's own inputs" if lane.space is not None else \
                f"--api {lane.api} sends raw image bytes"
            if len(runs) > 1:
                raise UsageError(f"{what} with no prompt: it takes one task, not {len(runs)} "
                                 f"({', '.join(s.name for s in specs)}); use --api openai (a chat target) to ask "
                                 "several")
            if runs[0].schema is not None:
                raise UsageError(f"--schema {runs[0].name}=...: {what} and cannot be asked for JSON; use --api "
                                 "openai (a chat target)")
    if cfg.sidecar and cfg.sidecar_ext == SIDECAR_EXT and any(r.template.needs_sidecar for r in runs):
        raise UsageError(f"--sidecar writes each answer to NAME{SIDECAR_EXT}, the file the prompt's {{{{ sidecar }}}} "
                         f"reads: the next run would read its own answers; pass --sidecar-ext .caption")
    prep = preparation_parts(cfg.prepare)
    lane_tasks = []
    for lane in lane_cfgs:
        prompted = lane.takes_prompt
        prints: dict[str, TaskPrint] = {}
        generation: dict[str, Mapping[str, Any]] = {}
        for r in runs:
            gen = _generation(lane, r.spec)
            generation[r.name] = gen
            parts = Parts.of(target=target_identity(lane), template=r.spec.prompt if prompted else None,
                             generation=gen, schema=r.schema.canonical if r.schema is not None else b"",
                             preparation=prep)
            prints[r.name] = TaskPrint(parts, prompted=prompted)
        lane_tasks.append(LaneTasks(target_identity(lane), prompted, prints, generation))
    return Plan(tuple(runs), tuple(lane_tasks), prep)


class Planner:
    """Per image: which tasks to ask, which answers to copy from the journal; thread-safe counters."""

    __slots__ = ("_answer_cache", "_fresh", "_lock", "_needs", "_path_only", "_static", "copied", "copies", "index",
                 "keep_stale", "kept_stale", "legacy_current", "plan", "prompt_errors", "retry_failed", "root",
                 "skipped", "stale")

    def __init__(self, plan: Plan, index: JournalIndex, *, root: Path | str, keep_stale: bool = False,
                 retry_failed: bool = False, legacy_current: bool = True, copies: bool = True) -> None:
        self.plan = plan
        # Asked once here, not per image: each is a scan over the tasks.
        self._static, self._path_only = plan.static, plan.path_only
        self._needs = {"sidecar": plan.needs_sidecar, "exif": plan.needs_exif}
        #: A first run (an empty journal) with fixed prompts: every image gets every task, nothing to look up.
        self._fresh = tuple(Ask(t.name, t.template.text, False) for t in plan.tasks) \
            if self._static and not index.lines else None
        self.index = index
        self.root = os.fspath(root)
        self.keep_stale = keep_stale
        self.retry_failed = retry_failed
        self.legacy_current = legacy_current  #: answers without fingerprint count as current (caption task)
        self.copies = copies  #: look answers up by content in the journal (off with --dedupe off)
        self._lock = threading.Lock()
        self._answer_cache: dict[tuple[str, str | None], tuple[int, ...]] = {}
        self.stale: Counter[str] = Counter()  #: per task: stale answers asked again
        self.kept_stale: Counter[str] = Counter()  #: per task: stale answers kept (--keep-stale)
        self.skipped: Counter[str] = Counter()  #: per task: answers already current (images read, then left)
        self.prompt_errors = 0
        self.copied = 0  #: answers copied from the journal by content

    # -- scan time ---------------------------------------------------------------------------------------------

    def skip(self, path: str) -> bool:
        """Every task of ``path`` is answered as this run would ask (or kept, or a final error): the scan leaves
        it out unread. Only where prompts render from the path; otherwise the image is read and judged."""
        plan = self.plan
        if not self._path_only or self._fresh is not None:
            return False
        entries = [self.index.entry(path, t.name) for t in plan.tasks]
        if None in entries:  # a task never asked of this path (a new file, mostly): read it; no prompt rendered
            return False
        ctx = None
        if not self._static:
            ctx = context_for(ImageJob(path, os.path.join(self.root, path), 0), sidecar=self._needs["sidecar"])
        kept: list[str] = []
        for t, entry in zip(plan.tasks, entries, strict=True):
            try:
                prompt = t.template.text if ctx is None else t.template.render(ctx)
            except PromptError:
                return False  # the reader records it
            verdict = self._judge(entry, t.name, prompt)[0]
            if verdict == "open":
                return False
            if verdict == "kept_stale":
                kept.append(t.name)
        if kept:
            with self._lock:
                self.kept_stale.update(kept)
        return True

    def open_tasks(self, path: str) -> list[str]:
        """The tasks of an image that cannot be read: those not answered or final already (by path)."""
        out = []
        for t in self.plan.tasks:
            if t.template.path_only:
                try:
                    ctx = context_for(ImageJob(path, os.path.join(self.root, path), 0),
                                      sidecar=t.template.needs_sidecar)
                    if self._verdict(path, t.name, t.template.render(ctx))[0] != "open":
                        continue
                except PromptError:
                    pass
            elif (entry := self.index.entry(path, t.name)) is not None and entry.error is not None and entry.final \
                    and not self.retry_failed:
                continue
            out.append(t.name)
        return out

    # -- after the read ----------------------------------------------------------------------------------------

    def plan_image(self, image: LoadedImage) -> tuple[LoadedImage | None, list[Record]]:
        """The image with the asks left (None: nothing to ask), and records made now: copies of answers found in
        the journal by content, and prompt errors."""
        if self._fresh is not None:
            return image.with_asks(self._fresh), []
        plan = self.plan
        ctx = None
        if not self._static:
            ctx = context_for(image.job, image.data, sidecar=self._needs["sidecar"], exif=self._needs["exif"])
        asks: list[Ask] = []
        records: list[Record] = []
        path = image.job.path
        for t in plan.tasks:
            try:
                prompt = t.template.text if ctx is None else t.template.render(ctx)
            except PromptError as exc:
                # Its fingerprint is the template's (nothing was rendered): the same template fails the same way
                # on the next run (no second record), a changed one is tried again.
                fp = self.plan.lanes[0].prints[t.name].fingerprint("\x00template\x00" + t.spec.prompt)
                entry = self.index.entry(path, t.name)
                if entry is None or entry.error != answer_id(fp) or not entry.final:
                    records.append(Record(path, "error", error=ErrorInfo("PromptError", str(exc), None, False),
                                          ts=time.time(), task=t.name, fingerprint=fp, digest=image.digest))
                with self._lock:
                    self.prompt_errors += 1
                continue
            verdict, stale = self._verdict(path, t.name, prompt)
            if verdict != "open":
                with self._lock:
                    (self.kept_stale if verdict == "kept_stale" else self.skipped)[t.name] += 1
                continue
            if self.copies and image.digest is not None and (copy := self._copy(image, t.name, prompt)) is not None:
                records.append(copy)
                continue
            if stale:
                with self._lock:
                    self.stale[t.name] += 1
            asks.append(Ask(t.name, prompt, stale))
        if not asks:
            return None, records
        return image.with_asks(tuple(asks)), records

    def _verdict(self, path: str, task: str, prompt: str | None) -> tuple[str, bool]:
        """("current" | "final" | "kept_stale" | "open", stale) for one question."""
        return self._judge(self.index.entry(path, task), task, prompt)

    def _judge(self, entry: Entry | None, task: str, prompt: str | None) -> tuple[str, bool]:
        """``_verdict`` for the journal's ``entry`` of (path, task)."""
        if entry is None:
            return "open", False
        answers = self._answers(task, prompt)
        if entry.ok is not None and (entry.ok in answers or (entry.ok == LEGACY and self.legacy_current)):
            return "current", False
        if entry.error is not None and entry.final and not self.retry_failed and (
                entry.error == LEGACY or entry.error in answers):
            return "final", False
        if entry.ok is not None:
            return ("kept_stale", True) if self.keep_stale else ("open", True)
        return "open", False

    def _answers(self, task: str, prompt: str | None) -> tuple[int, ...]:
        """The answer ids of one question on each target (cached: a constant prompt is one entry per task)."""
        key = (task, prompt)
        got = self._answer_cache.get(key)
        if got is None:
            got = tuple(answer_id(lane.prints[task].fingerprint(prompt)) for lane in self.plan.lanes)
            if len(self._answer_cache) >= 4096:
                self._answer_cache.clear()
            self._answer_cache[key] = got
        return got

    def _copy(self, image: LoadedImage, task: str, prompt: str | None) -> Record | None:
        """An ok answer to this very question for this content, anywhere in the journal, as this image's record."""
        assert image.digest is not None
        for lane in self.plan.lanes:
            fp = lane.prints[task].fingerprint(prompt)
            offset = self.index.find_copy(image.digest, answer_id(fp))
            if offset is None:
                continue
            obj = self.index.read_line(offset)
            if obj is None or obj.get("status") != "ok" or not isinstance(obj.get("caption"), str):
                continue
            flags = obj.get("flags")
            target = obj.get("target")
            with self._lock:
                self.copied += 1
            return Record(
                image.job.path, "ok", caption=obj["caption"], attempts=0, latency_s=None, bytes_sent=0,
                target=target if isinstance(target, str) else "",
                request_id=obj.get("request_id") if isinstance(obj.get("request_id"), str) else None,
                ts=time.time(), flags=tuple(f for f in flags if isinstance(f, str)) if isinstance(flags, list) else (),
                duplicate_of=obj["path"], task=task, data=obj.get("data"), fingerprint=fp, digest=image.digest,
            )
        return None


@dataclass(frozen=True, slots=True)
class Stale:
    """Answers of one task made with other settings than this run's: how many, and which settings changed."""

    task: str
    answers: int
    changed: tuple[str, ...]  #: fingerprint components (``COMPONENTS``) that differ; empty when unknown

    def note(self, action: str) -> str:
        """``task tags: prompt changed since 120 answers: asking again``."""
        what = (" and ".join(self.changed) + " changed") if self.changed else "settings changed"
        return f"task {self.task}: {what} since {self.answers} answer{'' if self.answers == 1 else 's'}: {action}"


def stale_answers(plan: Plan, index: JournalIndex, history: Mapping[tuple[str, str], Mapping[str, str]], *,
                  legacy_current: bool) -> list[Stale]:
    """Per task: how many answers' latest ok was made with other settings than this run's, and what changed.

    Counted by the settings part of the fingerprint (a prompt that renders differently for one image, say its
    sidecar changed, is found when that image is read, not here). ``history``: ``spec_history``.
    """
    out = []
    by_spec = index.latest_by_spec()
    for t in plan.tasks:
        current = {int(lane.prints[t.name].spec, 16) for lane in plan.lanes}
        counts = by_spec.get(t.name, Counter())
        stale = Counter({spec: n for spec, n in counts.items()
                         if spec not in current and not (spec == 0 and legacy_current)})
        total = sum(stale.values())
        if not total:
            continue
        parts_now = plan.lanes[0].prints[t.name].parts.as_dict()
        changed: list[str] = []
        for spec, _ in stale.most_common():
            old = history.get((t.name, f"{spec:08x}")) if spec else history.get((t.name, "legacy"))
            for name in _changes(old, parts_now):
                if name not in changed:
                    changed.append(name)
        out.append(Stale(t.name, total, tuple(changed)))
    return out


def stale_notes(plan: Plan, index: JournalIndex, history: Mapping[tuple[str, str], Mapping[str, str]], *,
                keep_stale: bool, legacy_current: bool) -> list[str]:
    """The lines a run shows before it starts (``stale_answers``, and what the run does with them)."""
    action = "kept (--keep-stale)" if keep_stale else "asking again"
    return [s.note(action) for s in stale_answers(plan, index, history, legacy_current=legacy_current)]


def _changes(old: Mapping[str, str] | None, now: Mapping[str, str]) -> list[str]:
    if old is None:
        return []
    return [name for name, h in now.items() if old.get(name) not in (None, h)]


def spec_history(manifest: Mapping[str, Any] | None, legacy: Parts | None = None
                 ) -> dict[tuple[str, str], Mapping[str, str]]:
    """(task, spec) -> component hashes, from every invocation's tasks the manifest keeps (``specs``), and
    ``legacy``: the settings of the answers written before fingerprints, under spec ``legacy``."""
    out: dict[tuple[str, str], Mapping[str, str]] = {}
    if legacy is not None:
        out[(DEFAULT_TASK, "legacy")] = legacy.as_dict()
    for name, specs in task_specs(manifest).items():
        for spec, parts in specs.items():
            out[(name, spec)] = parts
    return out


#: The settings a manifest written before issue 16 keeps (flat names of ``RunConfig``'s groups).
_LEGACY_TARGET = ("api", "model", "api_base", "endpoint", "base_url", "endpoint_name", "prompt", "max_tokens",
                  "temperature", "parameters")
_LEGACY_PREPARE = ("max_side", "jpeg_quality", "max_upload_mb")


def legacy_parts(manifest: Mapping[str, Any] | None) -> Parts | None:
    """The fingerprint parts of the answers written before fingerprints (they all belong to task ``caption``):
    the config of the latest invocation that ran before tasks (one without ``tasks``), or of a manifest from
    before invocations kept their settings. None when there is no such manifest."""
    if not isinstance(manifest, Mapping):
        return None
    config: Any = manifest.get("config")
    found = manifest.get("invocations")
    runs = [inv for inv in found if isinstance(inv, Mapping) and "config" in inv] if isinstance(found, list) else []
    if runs:  # settings per invocation (manifest version 2): the last one that ran before tasks
        before = [inv["config"] for inv in runs if "tasks" not in inv]
        config = before[-1] if before else None
    if not isinstance(config, Mapping):
        return None
    try:
        old = TargetSettings(**{k: config[k] for k in _LEGACY_TARGET if config.get(k) is not None})
        prep = PrepareSettings(**{k: config[k] for k in _LEGACY_PREPARE if config.get(k) is not None})
    except (TypeError, ValueError, ConfigError):
        return None
    gen = _generation(old, TaskSpec(DEFAULT_TASK, old.prompt))
    return Parts.of(target=target_identity(old), template=old.prompt if old.takes_prompt else None,
                    generation=gen, preparation=preparation_parts(prep))


def legacy_current(plan: Plan, legacy: Parts | None) -> bool:
    """Answers without fingerprints count as current when their settings (``legacy_parts``) are this run's
    (or unknown: no manifest of that time)."""
    if legacy is None:
        return True
    if DEFAULT_TASK not in plan.names:
        return False
    spec = legacy.spec()
    return any(lane.prints[DEFAULT_TASK].spec == spec for lane in plan.lanes)


def planner_for(cfg: RunConfig, plan: Plan, index: JournalIndex, previous: Mapping[str, Any] | None) -> Planner:
    """The planner a run with ``cfg`` uses over ``index`` (its journal; ``previous``: the run manifest beside it,
    if any): ``run`` and ``check`` decide alike."""
    return Planner(plan, index, root=cfg.input_dir, keep_stale=cfg.tasks.keep_stale, retry_failed=cfg.retry_failed,
                   legacy_current=legacy_current(plan, legacy_parts(previous)), copies=cfg.source.dedupe != "off")
