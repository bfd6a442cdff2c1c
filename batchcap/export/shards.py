"""Parquet shards that ``datasets`` and the Hub read as they are: images embedded as the Image feature stores them.

    DIR/data/train-00000-of-00003.parquet ... train-00002-of-00003.parquet

Each row is ``image`` (a ``{"bytes", "path"}`` struct, the file name in ``path`` so readers know its format),
``file_name`` (the image's name in the export) and the text columns. The schema carries ``datasets``' own
``huggingface`` metadata, so ``load_dataset("parquet", data_dir=DIR)`` decodes ``image`` as an Image with no
cast. A shard is closed once its bytes pass ``shard_bytes`` (default 500 MB, the Hub's advice); row groups hold
at most ``GROUP_ROWS`` rows (the Hub's dataset viewer pages through row groups) or ``GROUP_BYTES``.

The shards are written under temporary names and renamed at the end, once their count is known; shards of an
earlier export into the same folder (``train-*-of-*.parquet``) are removed then, so a loader never sees both.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson

__all__ = ["DEFAULT_SHARD_MB", "GROUP_BYTES", "GROUP_ROWS", "ShardWriter", "features_metadata"]

DEFAULT_SHARD_MB = 500
GROUP_ROWS = 100
GROUP_BYTES = 64 * 1024 * 1024
_OURS = re.compile(r"train-\d{5}-of-\d{5}\.parquet")


def old_shards(folder: Path) -> list[Path]:
    """The shards an earlier export left in ``folder``/data (replaced or removed by the next one)."""
    try:
        return sorted(p for p in (folder / "data").iterdir() if _OURS.fullmatch(p.name))
    except OSError:
        return []


def features_metadata(text_columns: Sequence[str]) -> bytes:
    """``datasets``' schema metadata for these columns: ``image`` is an Image, the rest strings."""
    features: dict[str, Any] = {"image": {"_type": "Image"}, "file_name": {"dtype": "string", "_type": "Value"}}
    for name in text_columns:
        features[name] = {"dtype": "string", "_type": "Value"}
    return orjson.dumps({"info": {"features": features}})


class ShardWriter:
    """Rows in, shards out. ``add`` buffers a row group; ``close`` renames the shards into place."""

    def __init__(self, folder: Path, text_columns: Sequence[str], *, shard_bytes: int) -> None:
        import pyarrow as pa

        self.pa = pa
        self.folder = folder / "data"
        self.folder.mkdir(parents=True, exist_ok=True)
        self.text_columns = list(text_columns)
        image = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
        fields = [pa.field("image", image), pa.field("file_name", pa.string())]
        fields += [pa.field(name, pa.string()) for name in self.text_columns]
        self.schema = pa.schema(fields, metadata={b"huggingface": features_metadata(self.text_columns)})
        self.shard_bytes = shard_bytes
        self.tmp: list[Path] = []
        self.rows = 0
        self._writer: Any = None
        self._file_bytes = 0
        self._group: list[tuple[bytes, str, list[str | None]]] = []
        self._group_bytes = 0

    def add(self, image: bytes, name: str, texts: Sequence[str | None]) -> None:
        """One row: the image's bytes, its file name in the export, one value per text column."""
        self._group.append((image, name, list(texts)))
        self._group_bytes += len(image)
        self.rows += 1
        if len(self._group) >= GROUP_ROWS or self._group_bytes >= GROUP_BYTES:
            self._flush()

    def _flush(self) -> None:
        if not self._group:
            return
        pa = self.pa
        import pyarrow.parquet as pq

        if self._writer is None:
            path = self.folder / f".part-{len(self.tmp):05d}.{os.getpid()}.tmp"
            self.tmp.append(path)
            self._writer = pq.ParquetWriter(path, self.schema, compression="snappy")
            self._file_bytes = 0
        rows = self._group
        images = pa.StructArray.from_arrays(
            [pa.array([r[0] for r in rows], pa.binary()), pa.array([r[1] for r in rows], pa.string())],
            fields=list(self.schema.field("image").type),
        )
        columns = [images, pa.array([r[1] for r in rows], pa.string())]
        columns += [pa.array([r[2][i] for r in rows], pa.string()) for i in range(len(self.text_columns))]
        self._writer.write_table(pa.Table.from_arrays(columns, schema=self.schema))
        self._file_bytes += self._group_bytes
        self._group, self._group_bytes = [], 0
        if self._file_bytes >= self.shard_bytes:
            self._writer.close()
            self._writer = None

    def close(self) -> list[Path]:
        """Write what is buffered, then give every shard its final name; returns the shards in order."""
        self._flush()
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        if not self.tmp:  # no row at all: one empty shard, so the folder still loads (with 0 rows)
            import pyarrow.parquet as pq

            path = self.folder / f".part-00000.{os.getpid()}.tmp"
            pq.write_table(self.schema.empty_table(), path)
            self.tmp.append(path)
        n = len(self.tmp)
        final = [self.folder / f"train-{i:05d}-of-{n:05d}.parquet" for i in range(n)]
        keep = {p.name for p in final}
        for old in self.folder.iterdir():
            if _OURS.fullmatch(old.name) and old.name not in keep:
                old.unlink()
        for tmp, path in zip(self.tmp, final, strict=True):
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
            os.replace(tmp, path)
        return final

    def abort(self) -> None:
        """Remove the temporary shards (the export failed midway); the previous export's shards stay."""
        if self._writer is not None:
            with contextlib.suppress(Exception):  # closing a broken writer: only the cleanup matters now
                self._writer.close()
        for tmp in self.tmp:
            tmp.unlink(missing_ok=True)
