"""The generated corpus (tests/corpus.py), built once per session: ~6 s, dominated by the 12 MP photos."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # tests/, for corpus.py

from corpus import build


@pytest.fixture(scope="session")
def corpus_paths(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return build(tmp_path_factory.mktemp("corpus"))


@pytest.fixture(scope="session")
def corpus(corpus_paths: dict[str, Path]) -> dict[str, bytes]:
    return {name: path.read_bytes() for name, path in corpus_paths.items()}
