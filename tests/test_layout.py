"""The house keeps its rooms: imports point one way, nothing imports the CLI, only the service and the emulator
speak aiohttp, commands load lazily, and no module or function outgrows a read."""

from __future__ import annotations

import ast
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

PACKAGE = Path(__file__).parents[1] / "batchcap"
#: Subsystems (a package each) below the commands; ``config`` composes their settings.
FLOOR = {"source", "prepare", "flow", "service", "journal", "tasks"}
GROUND = {"errors", "models", "types", "settings", "version", "aio", "progress", "words", "redact"}


def _modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


def _imports(name: str, path: Path) -> set[str]:
    """Every batchcap module ``name`` imports, at the top or inside a function."""
    found = set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            found.add(target)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {t for t in found if t == "batchcap" or t.startswith("batchcap.")} | {
        t for t in found if t.split(".")[0] == "aiohttp"
    }


def _room(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "batchcap"


def test_no_import_cycle_between_rooms() -> None:
    edges: dict[str, set[str]] = defaultdict(set)
    for name, path in _modules().items():
        for target in _imports(name, path):
            if target.startswith("batchcap") and _room(target) != _room(name):
                edges[_room(name)].add(_room(target))

    def reaches(start: str, goal: str) -> bool:
        seen, stack = set(), [start]
        while stack:
            for nxt in edges[stack.pop()]:
                if nxt == goal:
                    return True
                if nxt not in seen:
                    seen.add(nxt)
                    stack.append(nxt)
        return False

    cycles = sorted((a, b) for a in list(edges) for b in edges[a] if reaches(b, a))
    assert not cycles, f"rooms that import each other (directly or around): {cycles}"


def test_floors_point_one_way() -> None:
    for name, path in _modules().items():
        room = _room(name)
        for target in _imports(name, path):
            if not target.startswith("batchcap."):
                continue
            other = _room(target)
            assert other != "cli" or room in ("cli", "__main__"), f"{name} imports the CLI ({target})"
            if room in GROUND:
                assert other in GROUND, f"the ground floor module {name} imports {target}"
            if room in FLOOR:
                assert other in FLOOR | GROUND, f"{name} (a subsystem) imports {target} from above it"


def test_only_service_and_emulator_speak_aiohttp() -> None:
    for name, path in _modules().items():
        if any(t.startswith("aiohttp") for t in _imports(name, path)):
            assert _room(name) in ("service", "emulator"), f"{name} imports aiohttp"


def test_nothing_outgrows_a_read() -> None:
    """~500 lines a module, ~80 a function: past that, a module has two jobs and a function needs named steps."""
    long_modules, long_functions = [], []
    for path in PACKAGE.rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        if len(text.splitlines()) > 520:
            long_modules.append(f"{path.relative_to(PACKAGE)}: {len(text.splitlines())}")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                if length > 85:
                    long_functions.append(f"{path.relative_to(PACKAGE)}:{node.name}: {length}")
    assert not long_modules, long_modules
    assert not long_functions, long_functions


def test_run_does_not_load_the_emulator_the_bench_or_the_site() -> None:
    code = ("import sys; from batchcap.cli import commands; commands.build_parser('run'); "
            "print(sorted({m.split('.')[1] for m in sys.modules if m.startswith('batchcap.')}))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    for heavy in ("emulator", "bench", "site", "export", "check", "distributed"):
        assert f"'{heavy}'" not in loaded, loaded
