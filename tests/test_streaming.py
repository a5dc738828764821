"""Streaming sources: WebDataset tar shards and Parquet, sharded over ranks x workers, shuffled per epoch."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from PIL import Image

from polymodal.cli import main
from polymodal.config import ConfigError
from polymodal.data.dataset import build_pipeline
from polymodal.data.streaming import (
    ParquetReader,
    StreamingDataset,
    TarReader,
    batch_sizes,
    expand_braces,
    load_npy,
    prepare_stream,
    stream_loader,
)
from polymodal.errors import DataError
from polymodal.factory import parse_config

MODALITIES: dict[str, Any] = {
    "emb": {"type": "vector", "field": "npy", "encoder": {"name": "vector_mlp", "out_dim": 8, "hidden": 8}},
    "photo": {"type": "image", "field": "png", "size": 8, "channels": 1, "augment": False,
              "encoder": {"name": "image_cnn", "width": 4, "out_dim": 8, "blocks": 1}},
    "specs": {"type": "tabular", "numeric": ["price"], "encoder": {"name": "tabular_mlp", "out_dim": 8, "hidden": 8}},
}


def png_bytes(label: int, rng: np.random.Generator) -> bytes:
    img = (rng.random((8, 8)) * 60).astype(np.uint8)
    img[label * 2: label * 2 + 3] += 150
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG")
    return buf.getvalue()


def add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def write_shards(folder: Path, prefix: str, counts: list[int], seed: int = 0, bad: int | None = None) -> int:
    """Shards `prefix-000.tar`...: records key.npy + key.png + key.json + key.cls (3 classes); returns the total."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    k = 0
    for s, count in enumerate(counts):
        with tarfile.open(folder / f"{prefix}-{s:03d}.tar", "w") as tar:
            for _ in range(count):
                y = k % 3
                vec = io.BytesIO()
                np.save(vec, (rng.normal(size=4) + y).astype(np.float32))
                add(tar, f"{k:06d}.npy", vec.getvalue())
                add(tar, f"{k:06d}.png", b"not a png" if k == bad else png_bytes(y, rng))
                add(tar, f"{k:06d}.json", json.dumps({"price": float(y) + rng.normal(0, 0.2)}).encode())
                add(tar, f"{k:06d}.cls", str(y).encode())
                k += 1
    return k


def stream_config(root: Path, train: str, val: str, out: Path, modalities: list[str], **data: Any) -> dict[str, Any]:
    return {
        "name": out.name,
        "data": {"train": train, "val": val, "streaming": True, "shuffle_buffer": 8, "fit_records": 30, **data},
        "modalities": {m: MODALITIES[m] for m in modalities},
        "target": {"field": "cls", "task": "multiclass"},
        "fusion": {"name": "concat", "hidden": 8},
        "training": {"epochs": 2, "batch_size": 4, "progress_bar": False, "lr": 1e-2, "patience": None},
        "output_dir": str(out),
    }


def stream_dataset(root: Path, counts: list[int], modalities: list[str]) -> tuple[StreamingDataset, int]:
    total = write_shards(root, "train", counts)
    write_shards(root, "val", [6], seed=1)
    pattern = str(root / f"train-{{000..{len(counts) - 1:03d}}}.tar")
    config = parse_config(stream_config(root, pattern, str(root / "val-000.tar"), root / "run", modalities))
    processors, task = build_pipeline(config)
    return prepare_stream(config, processors, task).train, total


def test_brace_patterns_expand_in_order() -> None:
    assert expand_braces("a-{000..002}.tar") == ["a-000.tar", "a-001.tar", "a-002.tar"]
    assert expand_braces("{x,y}-{1..2}") == ["x-1", "x-2", "y-1", "y-2"]
    assert batch_sizes(10, 3, 4) == [4, 4, 2] and batch_sizes(5, 4, 4) == [2, 1, 1, 1]


@pytest.mark.parametrize("fmt", [tarfile.PAX_FORMAT, tarfile.GNU_FORMAT, tarfile.USTAR_FORMAT])
@pytest.mark.parametrize("suffix", [".tar", ".tar.gz"])
def test_tar_members_read_plain_headers_and_hand_the_rest_to_tarfile(tmp_path: Path, fmt: int, suffix: str) -> None:
    long_key = "sub/" + "k" * 120 if fmt != tarfile.USTAR_FORMAT else "p" * 120 + "/key"  # past the 100-byte name
    keys = ["a/000", "a/001", long_key, "a/003"]
    path = tmp_path / f"s{suffix}"
    with tarfile.open(path, "w:gz" if suffix == ".tar.gz" else "w", format=fmt) as tar:
        folder = tarfile.TarInfo("a")
        folder.type = tarfile.DIRTYPE
        tar.addfile(folder)
        for i, key in enumerate(keys):
            add(tar, f"{key}.txt", f"text {i}".encode())
            add(tar, f"{key}.cls", str(i % 2).encode())
    reader = TarReader(str(path))
    assert reader.shards()[0].count == 4
    records = list(reader.all_records())
    assert [r["__key__"] for r in records] == keys
    assert [(r["txt"], r["cls"]) for r in records] == [(f"text {i}", str(i % 2)) for i in range(4)]


def epoch_indices(ds: StreamingDataset, rank: int, world: int, workers: int, epochs: int) -> list[list[list[int]]]:
    """Per epoch, the record indices of each batch this rank's loader yields (real DataLoader workers)."""
    ranked = StreamingDataset(ds.reader, ds.pipeline, rank=rank, world_size=world, shuffle_buffer=5, seed=3)
    loader = stream_loader(ranked, batch_size=3, shuffle=True, num_workers=workers)
    out = []
    for _ in range(epochs):
        batches = [b.index.tolist() for b in loader]
        assert len(batches) == len(loader)
        out.append(batches)
    return out


@pytest.mark.parametrize("counts", [[7, 3, 9, 4, 6], [13, 10]], ids=["whole-shards", "records-by-index"])
def test_two_ranks_two_workers_see_every_record_once_per_epoch(tmp_path: Path, counts: list[int]) -> None:
    ds, total = stream_dataset(tmp_path, counts, ["emb"])
    runs = [epoch_indices(ds, rank, 2, 2, epochs=2) for rank in range(2)]
    for epoch in range(2):
        seen = [i for rank in runs for batch in rank[epoch] for i in batch]
        assert sorted(seen) == list(range(total))  # exactly once: nothing twice, nothing dropped
        assert len(runs[0][epoch]) == len(runs[1][epoch])  # same steps on every rank (DDP does not wait)
        assert all(0 < len(b) <= 3 for rank in runs for b in rank[epoch])
    order = [[i for rank in runs for b in rank[e] for i in b] for e in range(2)]
    assert order[0] != order[1]  # reshuffled per epoch


def test_single_process_order_is_seeded(tmp_path: Path) -> None:
    ds, total = stream_dataset(tmp_path, [5, 5, 5], ["emb"])
    first = epoch_indices(ds, 0, 1, 0, epochs=2)
    again = epoch_indices(ds, 0, 1, 0, epochs=2)
    assert first == again and first[0] != first[1]
    assert sorted(i for b in first[0] for i in b) == list(range(total))


def test_parquet_folder_streams_row_groups_in_chunks(tmp_path: Path) -> None:
    folder = tmp_path / "pq"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for f in range(2):
        n = 11 + f
        table = pa.table({"npy": [list(rng.normal(size=4)) for _ in range(n)], "cls": [str(i % 3) for i in range(n)]})
        pq.write_table(table, folder / f"part-{f}.parquet", row_group_size=4)
    reader = ParquetReader(str(folder), read_rows=3)
    assert [s.count for s in reader.shards()] == [4, 4, 3, 4, 4, 4]
    assert len(list(reader.all_records())) == 23
    pd.DataFrame({"npy": [list(rng.normal(size=4)) for _ in range(6)], "cls": [str(i % 3) for i in range(6)]}) \
        .to_parquet(tmp_path / "val.parquet")
    config = parse_config(stream_config(tmp_path, str(folder), str(tmp_path / "val.parquet"), tmp_path / "r",
                                        ["emb"], format="parquet"))
    data = prepare_stream(config, *build_pipeline(config))
    runs = [epoch_indices(data.train, rank, 2, 2, epochs=1)[0] for rank in range(2)]
    assert sorted(i for r in runs for b in r for i in b) == list(range(23))


def test_bad_member_names_shard_and_key_or_is_skipped(tmp_path: Path) -> None:
    write_shards(tmp_path, "train", [8, 8], bad=11)
    write_shards(tmp_path, "val", [6], seed=1)
    cfg = stream_config(tmp_path, str(tmp_path / "train-*.tar"), str(tmp_path / "val-000.tar"), tmp_path / "r",
                        ["photo", "emb"], fit_records=4)
    config = parse_config(cfg)
    ds = prepare_stream(config, *build_pipeline(config)).train
    with pytest.raises(DataError, match=r"train-001\.tar, key '000011'.*photo.*cannot decode image"):
        list(stream_loader(ds, 4, shuffle=False))
    cfg["modalities"] = {"photo": {**MODALITIES["photo"], "on_error": "skip"}, "emb": MODALITIES["emb"]}
    config = parse_config(cfg)
    ds = prepare_stream(config, *build_pipeline(config)).train
    seen = [i for b in stream_loader(ds, 4, shuffle=False) for i in b.index.tolist()]
    assert sorted(seen) == [i for i in range(16) if i != 11]


def test_streaming_config_errors_are_clear(tmp_path: Path) -> None:
    base = stream_config(tmp_path, "t-{0..1}.tar", "v.tar", tmp_path / "r", ["emb"])
    with pytest.raises(ConfigError, match="data.streaming: set 'train'.*and 'val'"):
        parse_config({**base, "data": {"train": "t.tar", "streaming": True}})
    with pytest.raises(ConfigError, match="set data.streaming: true"):
        parse_config({**base, "data": {"train": "t.tar", "val": "v.tar", "format": "webdataset"}})
    with pytest.raises(ConfigError, match="csv cannot be streamed"):
        parse_config({**base, "data": {**base["data"], "format": "csv"}})
    with pytest.raises(FileNotFoundError, match=r"t-0\.tar' does not exist"):
        TarReader(str(tmp_path / "t-{0..1}.tar"))


@pytest.mark.slow
def test_train_command_on_tar_shards_end_to_end(tmp_path: Path) -> None:
    write_shards(tmp_path / "shards", "train", [12, 12, 12], seed=0)
    write_shards(tmp_path / "shards", "val", [9], seed=1)
    write_shards(tmp_path / "shards", "test", [9], seed=2)
    cfg = stream_config(tmp_path, "shards/train-{000..002}.tar", "shards/val-000.tar", tmp_path / "run",
                        ["photo", "specs", "emb"])
    cfg["data"]["test"] = "shards/test-000.tar"
    cfg["training"].update(num_workers=2, epochs=3)
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(cfg))
    assert main(["train", str(tmp_path / "cfg.yaml")]) == 0
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["epochs"] == 3 and set(metrics) >= {"val", "test"} and "train" not in metrics
    assert metrics["test"]["accuracy"] > 0.5  # 3 balanced classes: chance is 1/3
    log = pd.read_csv(tmp_path / "run" / "logs" / "metrics.csv")
    assert log["train_loss"].notna().sum() == 3
    assert main(["validate", str(tmp_path / "cfg.yaml")]) == 0  # the first fit_records + val + test as tables
    assert main(["evaluate", str(tmp_path / "run")]) == 0  # the test shard, read back as a table
    assert (tmp_path / "run" / "eval_test.json").is_file()


def test_npy_members_decode_like_np_load_and_refuse_pickles() -> None:
    arrays = [np.arange(6, dtype=np.float32).reshape(2, 3), np.asfortranarray(np.arange(12.0).reshape(3, 4)),
              np.array(3.5), np.arange(5, dtype=">i4")]
    for a in arrays:
        buf = io.BytesIO()
        np.save(buf, a)
        got = load_npy(buf.getvalue())
        assert got.dtype == a.dtype and got.flags.writeable
        np.testing.assert_array_equal(got, a)
    buf = io.BytesIO()
    np.save(buf, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match="object arrays are not read"):
        load_npy(buf.getvalue())
