"""Images out of parquet files as ``datasets`` writes them: an Image column of ``{"bytes", "path"}`` structs.

Rows are read a row group at a time in record batches of ``BATCH_BYTES`` of images (the row count from the
row group's metadata) through pyarrow, with a bounded read buffer (``BUFFER_BYTES``): pages are fetched as the
batches need them, so memory holds a batch of images, never a whole shard or row group, whatever their size. Each image's id is ``FILE#ROW`` (the file's
path relative to the input, the row's 0-based index in that file). A row group whose every id the journal
already holds is not read at all, so a resume re-reads only the row groups with work left.

The image column is ``--image-column``, else the first column that ``datasets``' schema metadata calls an
``Image``, else the first ``struct<bytes: binary, path: string>`` column; a plain binary column can be named.
The row's other scalar columns (text, numbers, booleans, dates, lists of those as JSON) become the job's
``context``: what a prompt template may use.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import IO, Any

import orjson

from batchcap.errors import ConfigError, SourceProblem
from batchcap.models import DatasetJob
from batchcap.source.scan import OnError

__all__ = ["BATCH_BYTES", "BUFFER_BYTES", "ParquetImages", "image_column", "require_pyarrow"]

#: Image bytes per record batch (decoding one takes ~2.5x that in pyarrow's pool): rows per batch are this over
#: the row group's mean image size, from the file's metadata (1 to ``MAX_BATCH_ROWS``).
BATCH_BYTES = 4 * 1024 * 1024
MAX_BATCH_ROWS = 256
#: pyarrow's read buffer per column chunk; 0 would read a whole column chunk (a row group's images) at once.
BUFFER_BYTES = 4 * 1024 * 1024
#: Context values longer than this are cut (a prompt is no place for a 1 MB field).
MAX_CONTEXT_CHARS = 4096


_pool_set = False


def require_pyarrow() -> Any:
    """The ``pyarrow.parquet`` module, or a ``ConfigError`` that says how to get it.

    The first call moves pyarrow's default memory pool off mimalloc (to jemalloc, else the system's): decoding
    image batches of varying sizes, mimalloc kept what it freed, so peak RSS grew with the row group (+27 MB for
    one 44 MB row group against six of 7 MB, with the same batches; jemalloc +10 MB, and flat beyond).
    """
    global _pool_set
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise ConfigError("reading parquet needs pyarrow: pip install 'batchcap[datasets]'") from None
    if not _pool_set:
        _pool_set = True
        if pa.default_memory_pool().backend_name == "mimalloc":
            try:
                pa.set_memory_pool(pa.jemalloc_memory_pool())
            except (NotImplementedError, pa.ArrowNotImplementedError):
                pa.set_memory_pool(pa.system_memory_pool())
    return pq


def _is_image_struct(t: Any) -> bool:
    import pyarrow as pa

    if not pa.types.is_struct(t):
        return False
    names = {t.field(i).name: t.field(i).type for i in range(t.num_fields)}
    b = names.get("bytes")
    return b is not None and (pa.types.is_binary(b) or pa.types.is_large_binary(b))


def _is_binary(t: Any) -> bool:
    import pyarrow as pa

    return bool(pa.types.is_binary(t) or pa.types.is_large_binary(t))


def image_column(schema: Any, wanted: str | None, where: str) -> str:
    """The column of images in ``schema`` (see the module doc). ``ConfigError`` names the columns there are."""
    names = list(schema.names)
    if wanted is not None:
        if wanted not in names:
            raise ConfigError(f"--image-column {wanted}: {where} has no such column (its columns: "
                              f"{', '.join(names) or 'none'})")
        t = schema.field(wanted).type
        if not (_is_image_struct(t) or _is_binary(t)):
            raise ConfigError(f"--image-column {wanted}: in {where} it holds {t}, not images (an Image column "
                              "of {bytes, path} structs, or binary)")
        return str(wanted)
    for name in _hf_image_features(schema):
        if name in names and _is_image_struct(schema.field(name).type):
            return name
    for name in names:
        if _is_image_struct(schema.field(name).type):
            return str(name)
    raise ConfigError(f"{where} has no image column (its columns: {', '.join(names) or 'none'}); "
                      "pass --image-column NAME")


def _hf_image_features(schema: Any) -> list[str]:
    """Column names ``datasets`` recorded as ``Image`` features, in its order (none when there is no metadata)."""
    meta = schema.metadata or {}
    raw = meta.get(b"huggingface")
    if not raw:
        return []
    try:
        features = orjson.loads(raw)["info"]["features"]
    except (ValueError, KeyError, TypeError):
        return []
    if not isinstance(features, dict):
        return []
    return [k for k, v in features.items() if isinstance(v, dict) and v.get("_type") == "Image"]


def _context_columns(schema: Any, image: str) -> list[str]:
    """Columns small enough to be a prompt's context: scalars and lists of scalars (not binary, not structs)."""
    import pyarrow as pa

    def scalar(t: Any) -> bool:
        if pa.types.is_dictionary(t):
            t = t.value_type
        return bool(
            pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_integer(t)
            or pa.types.is_floating(t) or pa.types.is_boolean(t) or pa.types.is_temporal(t)
            or pa.types.is_decimal(t)
        )

    out = []
    for field in schema:
        if field.name == image:
            continue
        t = field.type
        if scalar(t) or ((pa.types.is_list(t) or pa.types.is_large_list(t)) and scalar(t.value_type)):
            out.append(field.name)
    return out


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        text = value
    elif isinstance(value, bool | int | float):
        text = str(value)
    elif isinstance(value, list):
        text = orjson.dumps(value, default=str).decode()
    else:
        text = str(value)
    return text if len(text) <= MAX_CONTEXT_CHARS else text[:MAX_CONTEXT_CHARS]


class ParquetImages:
    """The images of one parquet file, as jobs in row order. ``owns(row_group)`` picks a shard's row groups."""

    __slots__ = ("columns", "context", "file", "image", "pf", "rel")

    def __init__(self, file: IO[bytes], rel: str, wanted: str | None) -> None:
        pq = require_pyarrow()
        self.file = file
        self.rel = rel
        try:
            self.pf = pq.ParquetFile(file, buffer_size=BUFFER_BYTES, pre_buffer=False)
        except Exception as exc:  # noqa: BLE001  pyarrow raises ArrowInvalid/OSError/...: the one boundary here
            raise SourceProblem(f"not a readable parquet file: {_reason(exc)}") from None
        schema = self.pf.schema_arrow
        self.image = image_column(schema, wanted, rel)
        self.context = _context_columns(schema, self.image)
        self.columns = [self.image, *self.context]

    def row_groups(self) -> list[int]:
        """The row count of each row group, in order."""
        md = self.pf.metadata
        return [md.row_group(i).num_rows for i in range(md.num_row_groups)]

    def _batch_rows(self, group: int) -> int:
        """Rows per record batch in ``group``: ``BATCH_BYTES`` over its mean image size."""
        rg = self.pf.metadata.row_group(group)
        rows = max(1, rg.num_rows)
        image_bytes = 0
        for i in range(rg.num_columns):
            column = rg.column(i)
            if column.path_in_schema.split(".")[0] == self.image:
                image_bytes += column.total_uncompressed_size
        return max(1, min(MAX_BATCH_ROWS, int(BATCH_BYTES * rows // max(1, image_bytes))))

    def jobs(
        self,
        *,
        owns: Callable[[int], bool] | None = None,
        done: Callable[[str], bool] | None = None,
        max_bytes: int | None = None,
        on_error: OnError | None = None,
    ) -> Iterator[DatasetJob]:
        """One job per row (of the owned row groups), its bytes in ``data``; rows ``done`` says are done are left
        out, and a row group with none left is never read. A row without an image goes to ``on_error``; an image
        over ``max_bytes`` comes without its bytes (``load`` refuses it by size). Raises ``SourceProblem`` when
        the file breaks midway."""
        start = 0
        for group, n in enumerate(self.row_groups()):
            first, start = start, start + n
            if owns is not None and not owns(group):
                continue
            if done is not None and all(done(f"{self.rel}#{i}") for i in range(first, first + n)):
                continue
            try:
                yield from self._group(group, first, done, max_bytes, on_error)
            except SourceProblem:
                raise
            except Exception as exc:  # noqa: BLE001  pyarrow's decode errors: the file is damaged there
                raise SourceProblem(f"row group {group} cannot be read: {_reason(exc)}") from None

    def _group(
        self, group: int, row: int, done: Callable[[str], bool] | None, max_bytes: int | None,
        on_error: OnError | None,
    ) -> Iterator[DatasetJob]:
        rel = self.rel
        for batch in self.pf.iter_batches(batch_size=self._batch_rows(group), row_groups=[group],
                                          columns=self.columns, use_threads=False):
            images = batch.column(0)
            if _is_image_struct(images.type):
                data_col = images.field("bytes")
                paths = images.field("path").to_pylist() if images.type.get_field_index("path") >= 0 else None
                valid = images.is_valid().to_pylist()
            else:
                data_col, paths, valid = images, None, None
            contexts = batch.select(self.context).to_pylist() if self.context else None
            for i in range(batch.num_rows):
                key = f"{rel}#{row + i}"
                if done is not None and done(key):
                    continue
                cell = data_col[i]
                data = cell.as_py() if cell.is_valid and (valid is None or valid[i]) else None
                context = None
                if contexts is not None:
                    context = {k: t for k, v in contexts[i].items() if (t := _text(v)) is not None}
                if data is None:
                    if on_error is not None:
                        path = paths[i] if paths is not None else None
                        on_error(key, SourceProblem(
                            f"row has no image bytes, only a path ({path!r}): save the dataset with its images "
                            "embedded" if path else "row has no image"))
                    continue
                if max_bytes is not None and len(data) > max_bytes:
                    yield DatasetJob(key, rel, len(data), b"", context)
                    continue
                yield DatasetJob(key, rel, len(data), data, context)
            row += batch.num_rows


def _reason(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}"
    return text if len(text) <= 200 else text[:197] + "..."
