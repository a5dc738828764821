"""Streaming sources for data larger than memory: WebDataset tar shards and Parquet, read shard by shard.

A WebDataset record is a group of consecutive tar members sharing a key (`0001.json`, `0001.png`,
`0001.cls`); its fields are the members' extensions (`png`, `cls`, `txt`...) plus the keys of its `.json`
member. A Parquet source is one file or a folder of files, read in chunks of `read_rows` rows; its shards
are row groups. Shard lists are brace patterns (`train-{000..009}.tar`, `{a,b}.tar`) or globs.

Sharding rule (every record exactly once per epoch, none dropped). With R ranks and W DataLoader workers
there are P = R x W parts; part p = rank x W + worker.
- At least P shards: shard i goes to part i mod P (whole shards; each part reads only its own).
- Fewer shards: every part reads every shard and keeps the records whose global index g (position in the
  unshuffled shard order) has g mod P == p.
Shard record counts are read once (Parquet metadata; tar headers), so each part knows how many records it
holds. Uneven counts: every rank runs the same number of steps (the largest rank's count of batches), so
DDP never waits on a rank that has run out; a rank with fewer records makes some of its batches smaller
instead (no record is repeated or dropped). Records skipped by `on_error: skip` shrink their batch.
Each epoch the shard order is shuffled (seed, epoch) and records pass a shuffling buffer seeded by
(seed, epoch, part).
"""

from __future__ import annotations

import ast
import functools
import glob
import io
import itertools
import json
import math
import re
import struct
import tarfile
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from polymodal.config import Config, DataConfig
from polymodal.data.batch import Batch
from polymodal.data.dataset import Decoded, MultimodalDataset, decode, first, raise_on_fatal
from polymodal.data.splits import Table
from polymodal.errors import DataError, Problem
from polymodal.modalities import modality
from polymodal.processors import Processor
from polymodal.processors.base import Arrays
from polymodal.tasks import Task

Record = dict[str, Any]
KEY, SHARD = "__key__", "__shard__"
_TEXT_EXTS = {"txt", "text", "cls", "cls2", "label", "caption"}
_TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz")


# -- shard lists ---------------------------------------------------------------------------------------

def expand_braces(pattern: str) -> list[str]:
    """`a-{000..002}.tar` -> a-000.tar, a-001.tar, a-002.tar; `{x,y}` -> x, y (nested and repeated)."""
    match = re.search(r"\{([^{}]*)\}", pattern)
    if match is None:
        return [pattern]
    head, tail, body = pattern[: match.start()], pattern[match.end():], match.group(1)
    numeric = re.fullmatch(r"(\d+)\.\.(\d+)", body)
    if numeric:
        lo, hi = numeric.group(1), numeric.group(2)
        width = len(lo) if lo.startswith("0") else 0
        choices = [str(i).zfill(width) for i in range(int(lo), int(hi) + 1)]
    else:
        choices = body.split(",")
    return [out for choice in choices for out in expand_braces(head + choice + tail)]


def expand_shards(spec: str) -> list[Path]:
    """The files a shard pattern names, in order; a missing file or an empty glob is an error."""
    paths: list[Path] = []
    for part in expand_braces(spec):
        if any(c in part for c in "*?["):
            matched = sorted(glob.glob(part))
            if not matched:
                raise FileNotFoundError(f"shard pattern {part!r} matches no file")
            paths += [Path(m) for m in matched]
        elif not Path(part).exists():
            raise FileNotFoundError(f"shard {part!r} does not exist (from pattern {spec!r})")
        else:
            paths.append(Path(part))
    return paths


# -- readers -------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Shard:
    """One unit of reading: a tar file, or one row group of a Parquet file."""

    path: str
    part: int
    count: int


class ShardReader(ABC):
    """Lists a source's shards (with record counts) and reads the records of one shard, in order."""

    root: Path

    @abstractmethod
    def shards(self) -> list[Shard]: ...

    @abstractmethod
    def records(self, shard: Shard, columns: list[str] | None = None) -> Iterator[Record]: ...

    def all_records(self, columns: list[str] | None = None) -> Iterator[Record]:
        for shard in self.shards():
            yield from self.records(shard, columns)


def split_name(name: str) -> tuple[str, str]:
    """WebDataset naming: the key is the path up to the first dot of the file name, the rest the extension."""
    folder, _, base = name.rpartition("/")
    stem, _, ext = base.partition(".")
    return (f"{folder}/{stem}" if folder else stem), ext.lower()


def decode_member(ext: str, data: bytes, where: str) -> Any:
    """json -> its fields, txt/cls -> str, npy -> array; other members (images, audio) stay bytes."""
    try:
        if ext == "json":
            return json.loads(data)
        if ext in _TEXT_EXTS:
            return data.decode("utf-8").strip()
        if ext == "npy":
            return load_npy(data)
    except (ValueError, UnicodeDecodeError, OSError) as err:
        raise DataError([Problem("data", 0, ext, f"{where}: cannot decode the {ext} member ({err})")]) from None
    return data


@functools.lru_cache(maxsize=64)
def _npy_layout(header: bytes) -> tuple[np.dtype, tuple[int, ...], bool]:
    """dtype, shape and Fortran order of a .npy header (parsed once per distinct header)."""
    meta = ast.literal_eval(header.decode("latin1"))
    dtype = np.dtype(meta["descr"])
    if dtype.hasobject:
        raise ValueError("object arrays are not read (they would need unpickling)")
    return dtype, tuple(meta["shape"]), bool(meta["fortran_order"])


def load_npy(data: bytes) -> np.ndarray:
    """np.load of in-memory .npy bytes, without re-parsing the header of every record of the same layout."""
    if data[:6] != b"\x93NUMPY":
        raise ValueError("not a .npy file (no \\x93NUMPY magic)")
    start, fmt = (10, "<H") if data[6] == 1 else (12, "<I")  # format version 1.0, or 2.0/3.0
    size = struct.unpack_from(fmt, data, 8)[0]
    dtype, shape, fortran = _npy_layout(bytes(data[start: start + size]))
    count = int(np.prod(shape, dtype=np.int64))
    array = np.frombuffer(data, dtype=dtype, count=count, offset=start + size).copy()  # writable, like np.load
    return array.reshape(shape[::-1]).T if fortran else array.reshape(shape)


class TarReader(ShardReader):
    """WebDataset-format tar shards, read in order (see `tar_members`)."""

    def __init__(self, pattern: str) -> None:
        self.paths = expand_shards(pattern)
        bad = [str(p) for p in self.paths if not str(p).endswith(_TAR_SUFFIXES)]
        if bad:
            raise ValueError(f"data.format webdataset: {bad[0]!r} is not a tar file ({', '.join(_TAR_SUFFIXES)})")
        self.root = self.paths[0].parent
        self._shards: list[Shard] | None = None

    def shards(self) -> list[Shard]:
        if self._shards is None:
            self._shards = [Shard(str(p), 0, _count_keys(p)) for p in self.paths]
        return self._shards

    def records(self, shard: Shard, columns: list[str] | None = None) -> Iterator[Record]:
        key, record = None, {}
        for name, data in tar_members(shard.path):
            k, ext = split_name(name)
            if k != key and record:
                yield record
                record = {}
            key = k
            value = decode_member(ext, data, f"{shard.path} key {k!r}")  # type: ignore[arg-type]
            record.update(value if ext == "json" and isinstance(value, dict) else {ext: value})
            record.setdefault(KEY, k)
            record.setdefault(SHARD, shard.path)
        if record:
            yield record


def _count_keys(path: Path) -> int:
    """Records in one tar: runs of consecutive members with the same key (headers only, data is skipped)."""
    count, key = 0, None
    for name, _ in tar_members(str(path), read=False):
        k = split_name(name)[0]
        count += k != key
        key = k
    return count


def tar_members(path: str, read: bool = True) -> Iterator[tuple[str, bytes | None]]:
    """(name, data) of a tar's regular files in order; data is None when `read` is False.

    Plain ustar headers of regular files (what tarfile, GNU tar and webdataset write for short names) are
    parsed here, which is several times faster than tarfile's full header parsing; at the first other header
    (pax or GNU long names, links, sparse or large files) the rest of the shard is read by tarfile from that
    point. Compressed tars are read by tarfile throughout.
    """
    if not path.endswith(".tar"):
        yield from _tarfile_members(tarfile.open(path, "r|*"), read)
        return
    with open(path, "rb") as f:
        while True:
            head = f.read(512)
            if len(head) < 512 or head == _ZERO_BLOCK:
                return
            parsed = _plain_header(head)
            if parsed is None:  # anything else: the standard library takes over from this header on
                f.seek(-512, io.SEEK_CUR)
                yield from _tarfile_members(tarfile.open(fileobj=f, mode="r|"), read)
                return
            name, size, regular = parsed
            padded = -(-size // 512) * 512
            if regular and read:
                data = f.read(padded)
                if len(data) < size:
                    raise DataError([Problem("data", 0, name, f"{path}: tar member {name!r} is truncated")])
                yield name, data[:size]
            else:
                f.seek(padded, io.SEEK_CUR)
                if regular:
                    yield name, None


_ZERO_BLOCK = bytes(512)


def _plain_header(head: bytes) -> tuple[str, int, bool] | None:
    """(name, size, is a regular file) of a plain ustar header of a file or folder; None for anything else."""
    if head[257:262] != b"ustar" or head[156:157] not in (b"0", b"\0", b"5") or head[124] & 0x80:
        return None
    try:
        checksum = int(head[148:156].split(b"\0")[0].strip() or b"0", 8)
        size = int(head[124:136].split(b"\0")[0].strip() or b"0", 8)
    except ValueError:
        return None
    if checksum != sum(head[:148]) + sum(head[156:]) + 8 * 32:
        return None
    name = head[:100].split(b"\0")[0].decode("utf-8", "surrogateescape")
    prefix = head[345:500].split(b"\0")[0] if head[257:265] == b"ustar\x0000" else b""
    if prefix:
        name = prefix.decode("utf-8", "surrogateescape") + "/" + name
    return name, size, head[156:157] != b"5"


def _tarfile_members(tar: tarfile.TarFile, read: bool) -> Iterator[tuple[str, bytes | None]]:
    with tar:
        for member in tar:
            if member.isfile():
                yield member.name, (tar.extractfile(member).read() if read else None)  # type: ignore[union-attr]


class ParquetReader(ShardReader):
    """One Parquet file or a folder of them; shards are row groups, read `read_rows` rows at a time."""

    def __init__(self, spec: str, read_rows: int = 1024) -> None:
        path = Path(spec)
        if path.is_dir():
            self.paths = sorted(path.rglob("*.parquet"))
            if not self.paths:
                raise FileNotFoundError(f"folder {spec!r} holds no .parquet files")
            self.root = path
        else:
            self.paths = expand_shards(spec)
            self.root = self.paths[0].parent
        self.read_rows = read_rows
        self._shards: list[Shard] | None = None

    def shards(self) -> list[Shard]:
        import pyarrow.parquet as pq

        if self._shards is None:
            self._shards = []
            for p in self.paths:
                meta = pq.ParquetFile(p).metadata
                self._shards += [Shard(str(p), g, meta.row_group(g).num_rows) for g in range(meta.num_row_groups)]
        return self._shards

    def records(self, shard: Shard, columns: list[str] | None = None) -> Iterator[Record]:
        import pyarrow.parquet as pq

        file = pq.ParquetFile(shard.path)
        names = set(file.schema_arrow.names)
        wanted = None if columns is None else [c for c in columns if c in names]
        row = 0
        for chunk in file.iter_batches(batch_size=self.read_rows, row_groups=[shard.part], columns=wanted):
            for record in chunk.to_pylist():
                record[KEY], record[SHARD] = f"row group {shard.part} row {row}", shard.path
                row += 1
                yield record


def make_reader(spec: str, data: DataConfig) -> ShardReader:
    fmt = data.format
    if fmt == "auto":
        fmt = "webdataset" if any(spec.endswith(s) for s in _TAR_SUFFIXES) else "parquet"
    return TarReader(spec) if fmt == "webdataset" else ParquetReader(spec, data.read_rows)


# -- per-record decoding --------------------------------------------------------------------------------

def read_value(proc: Processor, value: Any, root: Path) -> Arrays:
    """`proc.read`, for tar members too: bytes reach the processor as the file's bytes, or decoded as UTF-8 where
    the modality type says so (`Modality.stream`, text)."""
    if isinstance(value, (bytes, bytearray)) and modality(proc.kind).stream == "text":
        value = bytes(value).decode("utf-8", errors="replace")
    return proc.read(value, root)


@dataclass
class Pipeline:
    """Fitted processors and task of a streaming run, and the record fields they read."""

    processors: dict[str, Processor]
    task: Task | None

    @property
    def columns(self) -> list[str]:
        cols = [c for p in self.processors.values() for c in getattr(p, "columns", [p.field])]
        fields = self.task.fields if self.task is not None else []
        return list(dict.fromkeys([*cols, *fields]))

    @property
    def ragged(self) -> dict[str, bool]:
        return {m: p.ragged for m, p in self.processors.items()}

    def frame(self, records: list[Record], rows: Iterable[int]) -> pd.DataFrame:
        frame = pd.DataFrame.from_records(records, index=list(rows))
        for col in self.columns:
            if col not in frame.columns:
                frame[col] = None  # a member absent from every record of this chunk: missing, not an error
        return frame

    def decode(self, records: list[Record], rows: Iterable[int], split: str, root: Path, fit: bool = False) -> Decoded:
        """Decode records (processors, on_error policy); fatal problems raise, naming shard and key."""
        frame = self.frame(records, rows)
        decoded = decode(Table(frame, root, split), self.processors, self.task, fit=fit, read=read_value)
        if decoded.fatal:
            where = {row: f"{r.get(SHARD)}, key {r.get(KEY)!r}" for row, r in zip(frame.index, records)}
            raise DataError([Problem(f"{p.split} ({where.get(p.row, '?')})", p.row, p.field, p.message)
                             for p in decoded.fatal])
        return decoded


def collate(decoded: Decoded, ragged: Mapping[str, bool]) -> Batch:
    """One Batch from decoded records; `index` holds the records' global indices."""
    batch = MultimodalDataset(decoded, ragged).__getitems__(range(len(decoded.rows)))
    return Batch(batch.inputs, batch.present, batch.target, torch.as_tensor(decoded.rows, dtype=torch.long))


def decode_all(reader: ShardReader, pipeline: Pipeline, split: str, chunk: int = 1024) -> Decoded:
    """Every record of a (small) split decoded into memory, e.g. the validation set of a streaming run."""
    parts: list[Decoded] = []
    stream = reader.all_records(pipeline.columns)
    for start in itertools.count(0, chunk):
        records = list(itertools.islice(stream, chunk))
        if not records:
            break
        parts.append(pipeline.decode(records, range(start, start + len(records)), split, reader.root))
    if not parts or not any(p.rows for p in parts):
        raise ValueError(f"the {split} split has no usable records")
    return Decoded.concat(parts)


# -- the iterable dataset -------------------------------------------------------------------------------

def shuffled(records: Iterable[Record], size: int, rng: np.random.Generator) -> Iterator[Record]:
    """A shuffling buffer: hold `size` records, emit a random one as each new one arrives."""
    buffer: list[Record] = []
    for record in records:
        if len(buffer) < size:
            buffer.append(record)
            continue
        j = int(rng.integers(size))
        yield buffer[j]
        buffer[j] = record
    rng.shuffle(buffer)  # type: ignore[arg-type]
    yield from buffer


def batch_sizes(n: int, batches: int, batch_size: int) -> list[int]:
    """`n` records in exactly `batches` batches of at most `batch_size`: full ones first, then smaller ones."""
    sizes, left = [], n
    for j in range(batches):
        size = min(batch_size, left - (batches - j - 1))
        sizes.append(size)
        left -= size
    return sizes


class StreamingDataset(IterableDataset[Batch]):
    """Collated Batches from shards, sharded over DDP ranks and DataLoader workers (see the module docstring).

    Args:
        reader: the shards and how to read them.
        pipeline: fitted processors and task (decoding happens in the workers).
        rank, world_size: this process's rank and the number of ranks; default: from torch.distributed
            when it is initialized, else 0 and 1.
        batch_size, shuffle, shuffle_buffer, seed: batching and per-epoch shuffling.
        split: the split's name in error messages.
    """

    def __init__(self, reader: ShardReader, pipeline: Pipeline, batch_size: int = 64, shuffle: bool = True,
                 shuffle_buffer: int = 1000, seed: int = 0, rank: int | None = None,
                 world_size: int | None = None, split: str = "train") -> None:
        self.reader, self.pipeline, self.split = reader, pipeline, split
        self.batch_size, self.shuffle, self.shuffle_buffer, self.seed = batch_size, shuffle, shuffle_buffer, seed
        self.rank, self.world_size = rank, world_size
        self.num_workers = 0
        self.epoch = 0
        self._next_epoch = 0
        self._resolved: tuple[int, int] | None = None
        self.counts = [s.count for s in reader.shards()]
        if sum(self.counts) == 0:
            raise ValueError(f"the {split} shards hold no records")

    def loader(self, batch_size: int, shuffle: bool, num_workers: int = 0, seed: int = 0) -> StreamingLoader:
        """The DataLoader over this stream (what `make_loader` returns for it)."""
        return stream_loader(self, batch_size, shuffle, num_workers, seed)

    def set_epoch(self, epoch: int) -> None:
        """The epoch the next iteration serves (it then counts on by itself)."""
        self._next_epoch = epoch

    def begin_epoch(self) -> None:
        """Called by the loader in the main process before workers start: fix rank, world size and epoch."""
        self._resolved = self._rank_world()
        self.epoch, self._next_epoch = self._next_epoch, self._next_epoch + 1

    def _rank_world(self) -> tuple[int, int]:
        if self.rank is not None or self.world_size is not None:
            return self.rank or 0, self.world_size or 1
        if self._resolved is not None:
            return self._resolved
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            return torch.distributed.get_rank(), torch.distributed.get_world_size()
        return 0, 1

    @property
    def total(self) -> int:
        return sum(self.counts)

    def part_count(self, part: int, parts: int) -> int:
        """Records that part `part` of `parts` serves per epoch."""
        if len(self.counts) >= parts:
            return sum(self.counts[part::parts])
        return len(range(part, self.total, parts))

    def plan(self, rank: int, world: int, workers: int) -> list[list[int]]:
        """Batch sizes per worker of `rank`; every rank gets the same number of batches."""
        w = max(1, workers)
        counts = [[self.part_count(r * w + k, world * w) for k in range(w)] for r in range(world)]
        steps = [[math.ceil(n / self.batch_size) for n in row] for row in counts]
        target = max(sum(row) for row in steps)
        mine, batches = counts[rank], steps[rank]
        if sum(mine) < target:
            raise ValueError(f"{self.split}: rank {rank} holds {sum(mine)} records but every rank must run {target} "
                             "steps; write more (or more even) shards, or use fewer ranks/workers")
        while sum(batches) < target:  # give the extra steps to the workers with the most records per step
            k = max(range(w), key=lambda i: (mine[i] - batches[i], -i))
            batches[k] += 1
        return [batch_sizes(n, b, self.batch_size) for n, b in zip(mine, batches)]

    def __len__(self) -> int:
        rank, world = self._rank_world()
        return sum(len(sizes) for sizes in self.plan(rank, world, self.num_workers))

    def _records(self, part: int, parts: int) -> Iterator[tuple[int, Record]]:
        """(global index, record) of one part, shards in this epoch's order."""
        shards = self.reader.shards()
        offsets = np.concatenate([[0], np.cumsum(self.counts)[:-1]])
        order = np.arange(len(shards))
        if self.shuffle:
            order = np.random.default_rng([self.seed, self.epoch]).permutation(len(shards))
        by_shard = len(shards) >= parts
        for i in order:
            if by_shard and i % parts != part:
                continue
            for j, record in enumerate(self.reader.records(shards[i], self.pipeline.columns)):
                g = int(offsets[i]) + j
                if by_shard or g % parts == part:
                    yield g, record

    def __iter__(self) -> Iterator[Batch]:
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        rank, world = self._rank_world()
        part, parts = rank * workers + worker, world * workers
        sizes = self.plan(rank, world, workers)[worker]
        stream: Iterator[tuple[int, Record]] = self._records(part, parts)
        if self.shuffle:
            rng = np.random.default_rng([self.seed, self.epoch, part])
            stream = shuffled(stream, self.shuffle_buffer, rng)  # type: ignore[arg-type]
        for size in sizes:
            chunk = list(itertools.islice(stream, size))
            if not chunk:
                return
            rows, records = zip(*chunk)
            decoded = self.pipeline.decode(list(records), rows, self.split, self.reader.root)
            if decoded.rows:  # every record of the batch skipped (on_error: skip): nothing to yield
                yield collate(decoded, self.pipeline.ragged)


class StreamingLoader(DataLoader[Batch]):
    """A DataLoader over a StreamingDataset that starts a new epoch (order, rank) on each iteration."""

    def __iter__(self):  # type: ignore[no-untyped-def]
        self.dataset.begin_epoch()  # type: ignore[attr-defined]
        return super().__iter__()


def stream_loader(dataset: StreamingDataset, batch_size: int, shuffle: bool, num_workers: int = 0,
                  seed: int = 0) -> StreamingLoader:
    """Workers are not persistent: each epoch they receive the dataset with its new epoch number."""
    dataset.batch_size, dataset.shuffle, dataset.seed, dataset.num_workers = batch_size, shuffle, seed, num_workers
    return StreamingLoader(dataset, batch_size=None, collate_fn=first, num_workers=num_workers,
                           persistent_workers=False)


def read_frame(reader: ShardReader, limit: int | None = None) -> pd.DataFrame:
    """The records of a source (the first `limit` of them) as a table; file members stay bytes."""
    records = list(itertools.islice(reader.all_records(), limit))
    if not records:
        raise ValueError(f"the shards under {str(reader.root)!r} hold no records")
    return pd.DataFrame.from_records(records)


def stream_tables(data: DataConfig) -> dict[str, Table]:
    """Tables of a streaming config: train = its first `fit_records` records, val and test whole."""
    out: dict[str, Table] = {}
    for split in ("train", "val", "test"):
        spec = getattr(data, split)
        if spec is not None:
            reader = make_reader(spec, data)
            out[split] = Table(read_frame(reader, data.fit_records if split == "train" else None), reader.root, split)
    return out


# -- a streaming run's data -----------------------------------------------------------------------------

@dataclass
class StreamData:
    """Fitted pipeline, the training stream, and val/test decoded into memory."""

    processors: dict[str, Processor]
    task: Task
    train: StreamingDataset
    decoded: dict[str, Decoded]
    skipped: dict[str, int]


def prepare_stream(config: Config, processors: dict[str, Processor], task: Task,
                   init_state: Any = None) -> StreamData:
    """Fit processors (and labels) on the first `fit_records` training records, then set up the stream.

    `init_state(processors)` (with `training.init_from`) loads fitted processor state instead of fitting it.
    """
    data = config.data
    train_reader = make_reader(data.train, data)  # type: ignore[arg-type]
    pipeline = Pipeline(processors, task)
    sample = list(itertools.islice(train_reader.all_records(), data.fit_records))
    if not sample:
        raise ValueError(f"data.train {data.train!r}: the shards hold no records")
    table = Table(pipeline.frame(sample, range(len(sample))), train_reader.root, "train")
    task.fit(task.values(table.frame))
    if init_state is None:
        for proc in processors.values():
            proc.fit([v for v in proc.values(table.frame) if not proc.is_missing(v)], table.root)
    else:
        init_state(processors)
    fitted = pipeline.decode(sample, range(len(sample)), "train", train_reader.root, fit=init_state is None)
    raise_on_fatal(fitted)
    train = StreamingDataset(train_reader, pipeline, config.training.batch_size,
                             shuffle_buffer=data.shuffle_buffer, seed=config.training.seed)
    decoded = {s: decode_all(make_reader(getattr(data, s), data), pipeline, s)
               for s in ("val", "test") if getattr(data, s) is not None}
    return StreamData(processors, task, train, decoded,
                      {"train": fitted.skipped, **{s: d.skipped for s, d in decoded.items()}})
