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
