"""The public surface is explicit: ``batchcap.__all__`` is sorted, complete and importable."""

from __future__ import annotations

import batchcap


def test_all_is_sorted_and_resolves() -> None:
    names = [n for n in batchcap.__all__ if n != "__version__"]
    assert names == sorted(names, key=lambda n: (n[0].islower(), n))
    for name in batchcap.__all__:
        assert hasattr(batchcap, name), name


def test_every_public_class_and_function_is_listed() -> None:
    public = {n for n, v in vars(batchcap).items() if not n.startswith("_") and (isinstance(v, type) or callable(v))}
    assert public <= set(batchcap.__all__)


def test_errors_form_one_tree() -> None:
    for name in batchcap.__all__:
        obj = getattr(batchcap, name)
        if isinstance(obj, type) and issubclass(obj, Exception):
            assert issubclass(obj, batchcap.BatchcapError), name


def test_every_exception_of_the_package_is_in_errors_py() -> None:
    """One tree: no module defines an exception of its own (a reader finds every class in one docstring)."""
    import ast
    from pathlib import Path

    root = Path(batchcap.__file__).parent
    stray = []
    for path in root.rglob("*.py"):
        if path.name == "errors.py" and path.parent == root:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ClassDef):
                bases = {getattr(b, "id", getattr(b, "attr", "")) for b in node.bases}
                if any(b.endswith(("Error", "Exception", "Aborted")) for b in bases):
                    stray.append(f"{path.relative_to(root)}:{node.name}")
    assert not stray, stray
