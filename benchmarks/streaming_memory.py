"""Peak memory of one streaming epoch as the data grows: it must stay flat.

Writes N small records (a 16-float vector, a short text, a label of 10 classes) as Parquet (row groups of
65,536 rows) and as WebDataset tar shards (10,000 records each; members key.npy, key.txt, key.cls), then, for
each format and size, a fresh Python process fits the processors on the first 10,000 records and iterates one
training epoch through the streaming loader (decode by the processors, shuffling buffer of 1,000 records,
batches of 256, batch-level normalization) and reports its peak RSS (ru_maxrss).

    OMP_NUM_THREADS=1 python benchmarks/streaming_memory.py --sizes 10000 1000000 \
        --out benchmarks/results/streaming_memory.md

Tar shards are written block by block with numpy (ustar headers filled in as arrays), not member by member.
"""

from __future__ import annotations

import argparse
import io
import json
import resource
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

WORDS = np.array(["red", "green", "blue", "apple", "pear", "sky", "stone", "river", "light", "cloud", "small",
                  "large", "old", "new", "fast", "slow"])
DIM, CLASSES, SHARD = 16, 10, 10_000


def make_records(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(N, 16) float32 vectors, N short texts and N labels; vector and text both carry the label."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, CLASSES, n)
    vectors = (rng.normal(size=(n, DIM)) + labels[:, None] * 0.3).astype(np.float32)
    first = WORDS[labels % len(WORDS)]
    second = WORDS[rng.integers(0, len(WORDS), n)]
    texts = np.char.add(np.char.add(np.char.add(first, " "), second), np.char.mod(" %d", rng.integers(0, 1000, n)))
    return vectors, texts, labels


def write_parquet(path: Path, n: int, seed: int) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    vectors, texts, labels = make_records(n, seed)
    vec = pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1)), DIM)
    table = pa.table({"vec": vec, "text": pa.array(texts.tolist()), "label": pa.array(labels.astype(str).tolist())})
    pq.write_table(table, path, row_group_size=65_536)


def ustar_headers(names: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """(M, 512) uint8 tar headers for regular files with these names (fixed width) and sizes."""
    m = len(names)
    head = np.zeros((m, 512), dtype=np.uint8)
    width = names.dtype.itemsize
    head[:, :width] = names.view(np.uint8).reshape(m, width)
    for offset, text in ((100, b"0000644\0"), (108, b"0000000\0"), (116, b"0000000\0"), (136, b"00000000000\0"),
                         (156, b"0"), (257, b"ustar\x0000")):
        head[:, offset: offset + len(text)] = np.frombuffer(text, dtype=np.uint8)
    octal = np.char.mod("%011o", sizes).astype("S11")
    head[:, 124:135] = octal.view(np.uint8).reshape(m, 11)
    checksum = head.sum(axis=1, dtype=np.int64) + 8 * ord(" ")  # the checksum field counts as spaces
    head[:, 148:156] = np.char.add(np.char.mod("%06o", checksum).astype("S6"), b"\0 ").astype("S8") \
        .view(np.uint8).reshape(m, 8)
    return head


def write_tar_shard(path: Path, start: int, vectors: np.ndarray, texts: np.ndarray, labels: np.ndarray) -> None:
    """Records key.npy, key.txt, key.cls; every payload fits one 512-byte block."""
    n = len(labels)
    keys = np.char.mod("%09d", np.arange(start, start + n))
    buf = io.BytesIO()
    np.save(buf, vectors[0])
    npy_header = np.frombuffer(buf.getvalue()[: -DIM * 4], dtype=np.uint8)
    text_bytes = np.char.encode(texts, "utf-8")
    cls_bytes = labels.astype(str).astype("S")
    blocks = np.zeros((n, 6, 512), dtype=np.uint8)  # header + data for each of the three members
    members = [(".npy", np.full(n, len(npy_header) + DIM * 4)), (".txt", np.char.str_len(text_bytes)),
               (".cls", np.char.str_len(cls_bytes))]
    for j, (ext, sizes) in enumerate(members):
        blocks[:, 2 * j] = ustar_headers(np.char.add(keys, ext).astype("S100"), sizes)
    blocks[:, 1, : len(npy_header)] = npy_header
    blocks[:, 1, len(npy_header): len(npy_header) + DIM * 4] = vectors.view(np.uint8).reshape(n, DIM * 4)
    for j, raw in ((3, text_bytes), (5, cls_bytes)):
        blocks[:, j, : raw.dtype.itemsize] = raw.view(np.uint8).reshape(n, raw.dtype.itemsize)
    with path.open("wb") as f:
        f.write(blocks.tobytes())
        f.write(bytes(1024))  # end of archive


def write_tars(folder: Path, n: int, seed: int) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    vectors, texts, labels = make_records(n, seed)
    shards = max(1, -(-n // SHARD))
    for s in range(shards):
        part = slice(s * SHARD, min(n, (s + 1) * SHARD))
        write_tar_shard(folder / f"shard-{s:05d}.tar", part.start, vectors[part], texts[part], labels[part])
    return str(folder / f"shard-{{00000..{shards - 1:05d}}}.tar")


def child(fmt: str, train: str, val: str) -> None:
    """One epoch through the streaming loader; prints a JSON line with the figures."""
    import torch

    from polymodal.data.dataset import build_pipeline, make_loader, to_model_inputs
    from polymodal.data.streaming import prepare_stream
    from polymodal.factory import parse_config

    torch.set_num_threads(1)
    fields = {"parquet": ("vec", "text", "label"), "webdataset": ("npy", "txt", "cls")}[fmt]
    config = parse_config({
        "data": {"train": train, "val": val, "format": fmt, "streaming": True, "fit_records": 10_000,
                 "shuffle_buffer": 1000},
        "modalities": {"vec": {"type": "vector", "field": fields[0]},
                       "text": {"type": "text", "field": fields[1], "max_length": 16, "vocab_size": 500}},
        "target": {"field": fields[2], "task": "multiclass"},
        "training": {"batch_size": 256},
    })
    processors, task = build_pipeline(config)
    data = prepare_stream(config, processors, task)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    start, records = time.perf_counter(), 0
    for batch in make_loader(data.train, 256, shuffle=True):
        batch = to_model_inputs(batch, processors, train=True)
        records += batch.size
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"records": records, "seconds": seconds, "peak_mb": peak, "setup_peak_mb": before}))


def measure(fmt: str, train: str, val: str) -> dict[str, float]:
    out = subprocess.run([sys.executable, __file__, "--child", fmt, train, val], capture_output=True, text=True,
                         check=False)
    if out.returncode != 0:
        raise SystemExit(f"child run failed ({fmt}, {train}):\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 1_000_000])
    parser.add_argument("--dir", help="where to write the data (default: a temporary folder, removed after)")
    parser.add_argument("--out", help="also write the table to this markdown file")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        root = Path(tmp)
        write_parquet(root / "val.parquet", 1000, seed=99)
        val_tar = write_tars(root / "val_tar", 1000, seed=99)
        rows = []
        for n in args.sizes:
            t0 = time.perf_counter()
            write_parquet(root / f"train_{n}.parquet", n, seed=n)
            tar = write_tars(root / f"tar_{n}", n, seed=n)
            written = time.perf_counter() - t0
            for fmt, train, val in (("parquet", str(root / f"train_{n}.parquet"), str(root / "val.parquet")),
                                    ("webdataset", tar, val_tar)):
                r = measure(fmt, train, val)
                rows.append(f"| {fmt} | {n:,} | {r['records']:,} | {r['setup_peak_mb']:.0f} | {r['peak_mb']:.0f} | "
                            f"{r['records'] / r['seconds']:,.0f} |")
                print(rows[-1], flush=True)
            print(f"(wrote {n:,} records in both formats in {written:.1f} s)", flush=True)
    table = ["| format | records | epoch records | peak RSS after setup (MB) | peak RSS after the epoch (MB) | "
             "records/s |", "|---|---:|---:|---:|---:|---:|", *rows]
    print("\n".join(table))
    if args.out:
        command = "OMP_NUM_THREADS=1 python " + shlex.join(sys.argv)
        Path(args.out).write_text(f"```\n{command}\n```\n\n" + "\n".join(table) + "\n")


if __name__ == "__main__":
    main()
