"""open_source on real files: which kind an input is, the image column, ids, shards, resume, damaged data."""

from __future__ import annotations

import gzip
import io
import tarfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hubdata import png, write_tars

from batchcap.errors import ConfigError
from batchcap.source.datasets import DatasetSource, FolderSource, open_source
from batchcap.source.shard import Shard

IMAGE = pa.struct([("bytes", pa.binary()), ("path", pa.string())])


def table(n: int, start: int = 0) -> pa.Table:
    return pa.table({
        "caption_hint": [f"hint {i}" for i in range(start, start + n)],
        "image": pa.array([{"bytes": png(i), "path": f"{i}.png"} for i in range(start, start + n)], IMAGE),
        "tags": [["a", str(i)] for i in range(start, start + n)],
        "blob": [b"x" * 10] * n,
    })


def ids(source: DatasetSource | FolderSource, **kw: object) -> list[str]:
    return [job.path for batch in source.batches(batch_size=7, **kw) for job in batch]  # type: ignore[arg-type]


def test_a_folder_is_read_as_what_most_of_its_files_are(tmp_path: Path) -> None:
    (tmp_path / "imgs").mkdir()
    for i in range(3):
        (tmp_path / "imgs" / f"{i}.png").write_bytes(png(i))
    assert isinstance(open_source(tmp_path / "imgs"), FolderSource)
    data = tmp_path / "repo" / "data"
    data.mkdir(parents=True)
    for s in range(2):
        pq.write_table(table(5, 5 * s), data / f"train-{s}.parquet")
    (tmp_path / "repo" / "preview.png").write_bytes(png(99))  # one example image beside the shards
    (tmp_path / "repo" / ".git").mkdir()
    pq.write_table(table(1), tmp_path / "repo" / ".git" / "x.parquet")  # hidden: never a data file
    source = open_source(tmp_path / "repo")
    assert isinstance(source, DatasetSource)
    assert source.kind == "parquet"
    assert source.files == ["data/train-0.parquet", "data/train-1.parquet"]
    assert ids(source)[:2] == ["data/train-0.parquet#0", "data/train-0.parquet#1"]
    assert len(ids(source)) == 10


def test_the_image_column_is_found_or_named_and_the_rest_is_context(tmp_path: Path) -> None:
    path = tmp_path / "t.parquet"
    pq.write_table(table(3), path)
    source = open_source(path)
    job = next(iter(source.batches()))[1]
    assert job.path == "t.parquet#1"
    assert job.data == png(1)
    assert job.context == {"caption_hint": "hint 1", "tags": '["a","1"]'}  # not the binary column
    assert source.describe()["image_column"] == "image"
    with pytest.raises(ConfigError, match=r"--image-column nope: .* \(its columns: caption_hint, image, tags, blob\)"):
        open_source(path, image_column="nope")
    with pytest.raises(ConfigError, match="holds string, not images"):
        open_source(path, image_column="caption_hint")
    raw = tmp_path / "raw.parquet"
    pq.write_table(pa.table({"jpeg": [png(1), png(2)], "n": [1, 2]}), raw)
    with pytest.raises(ConfigError, match=r"no image column .* pass --image-column NAME"):
        open_source(raw)
    assert [j.data for b in open_source(raw, image_column="jpeg").batches() for j in b] == [png(1), png(2)]


def test_rows_without_an_image_are_recorded_not_skipped(tmp_path: Path) -> None:
    path = tmp_path / "t.parquet"
    rows = pa.array([{"bytes": png(0), "path": None}, None, {"bytes": None, "path": "/elsewhere/a.jpg"}], IMAGE)
    pq.write_table(pa.table({"image": rows}), path)
    problems: dict[str, str] = {}
    got = ids(open_source(path), on_error=lambda p, e: problems.__setitem__(p, str(e.strerror)))
    assert got == ["t.parquet#0"]
    assert problems["t.parquet#1"] == "row has no image"
    assert "only a path ('/elsewhere/a.jpg')" in problems["t.parquet#2"]


def test_row_groups_split_shards_and_done_ones_are_not_read(tmp_path: Path) -> None:
    path = tmp_path / "t.parquet"
    pq.write_table(table(60), path, row_group_size=10)
    source = open_source(path)
    parts = [set(ids(source, shard=Shard(i, 3))) for i in (1, 2, 3)]
    assert sum(map(len, parts)) == 60
    assert set().union(*parts) == {f"t.parquet#{i}" for i in range(60)}
    assert all(len(p) % 10 == 0 for p in parts)  # whole row groups
    asked: list[str] = []

    def done(key: str) -> bool:
        asked.append(key)
        return int(key.split("#")[1]) < 55

    assert ids(source, skip=done) == [f"t.parquet#{i}" for i in range(55, 60)]


def test_tars_plain_and_gzipped_with_samples_and_damage(tmp_path: Path) -> None:
    write_tars(tmp_path / "w", [png(i) for i in range(6)], 2)
    source = open_source(tmp_path / "w")
    assert source.kind == "webdataset"
    assert ids(source) == [f"shard-0000{s}.tar/{i:09d}.png" for s in (0, 1) for i in range(3 * s, 3 * s + 3)]
    assert set(ids(source, shard=Shard(1, 2))) in ({f"shard-00000.tar/{i:09d}.png" for i in range(3)},
                                                    {f"shard-00001.tar/{i:09d}.png" for i in range(3, 6)}, set())
    raw = (tmp_path / "w" / "shard-00000.tar").read_bytes()
    (tmp_path / "g.tar.gz").write_bytes(gzip.compress(raw))
    gz = open_source(tmp_path / "g.tar.gz")
    assert next(j.context for b in gz.batches() for j in b) == {"json": '{"key": 0, "caption": "alt text 0"}',
                                                               "txt": "sidecar text of sample 0"}
    cut = tmp_path / "cut" / "a.tar"
    cut.parent.mkdir()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for i in range(3):
            data = png(i)
            info = tarfile.TarInfo(f"{i:04d}.png")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    whole = buf.getvalue()
    cut.write_bytes(whole[: 4 * 512 + 100])  # headers and data are 512-byte blocks: the third member is cut
    problems: list[tuple[str, str]] = []
    got = ids(open_source(cut), on_error=lambda p, e: problems.append((p, str(e.strerror))))
    assert got == ["a.tar/0000.png", "a.tar/0001.png"]  # read whole before the damage: captioned
    assert problems[0][0] == "a.tar"
    assert "truncated" in problems[0][1]


def test_what_batchcap_does_not_read_is_named_with_what_it_does(tmp_path: Path) -> None:
    (tmp_path / "notes.csv").write_text("a,b\n")
    with pytest.raises(ConfigError, match=r"a folder of images, a \.parquet file, a WebDataset \.tar"):
        open_source(tmp_path / "notes.csv")
    (tmp_path / "one.png").write_bytes(png(1))
    with pytest.raises(ConfigError, match="one image is not a folder: pass its folder"):
        open_source(tmp_path / "one.png")
    with pytest.raises(ConfigError, match="does not exist"):
        open_source(tmp_path / "missing")
    with pytest.raises(ConfigError, match="Protocol not known: nope"):
        open_source("nope://x/y")
    (tmp_path / "bad.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(ConfigError, match="not a readable parquet file"):
        open_source(tmp_path / "bad.parquet")


def test_hf_urls_get_the_token_and_nothing_else_does(tmp_path: Path) -> None:
    """The seam to the Hub, without the network: huggingface_hub's own filesystem, holding the run's token."""
    pytest.importorskip("huggingface_hub")
    from batchcap.source.location import place

    where = place("hf://datasets/acme/photos/data", token="hf_secret_x")
    assert type(where.fs).__name__ == "HfFileSystem"
    assert where.fs.token == "hf_secret_x"
    assert where.path == "datasets/acme/photos/data"
    assert "hf_secret_x" not in repr(where)
    assert place("memory://x/y", token="hf_secret_x").fs.storage_options == {}  # the token goes to hf:// only
    local = place(tmp_path.as_uri())
    assert local.local
    assert local.path == str(tmp_path)
