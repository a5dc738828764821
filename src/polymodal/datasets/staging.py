"""What the built-in datasets share: where they are written, their packaged sources (checked against the shipped
checksum), and writing a dataset's folder so that a reader never sees half of it, even with several processes.

`materialize` is the one way a built-in dataset reaches its folder: a dataset module gives only its name, version,
the key that tells its variants apart and a function that writes the files into a given folder. Each process
writes into a staging folder of its own beside the final one and moves it into place when it is complete. A process that finishes second keeps the copy already there: removing it could pull files from under
a reader of the first.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import uuid
from collections.abc import Callable
from importlib import resources
from importlib.abc import Traversable
from pathlib import Path

import numpy as np


def cache_dir() -> Path:
    """Where built-in datasets are written: $POLYMODAL_DATA, default ~/.cache/polymodal."""
    return Path(os.environ.get("POLYMODAL_DATA", Path.home() / ".cache" / "polymodal"))


def load_packaged(name: str, folder: Path | Traversable | None = None) -> dict[str, np.ndarray]:
    """The arrays of the packaged `<name>.npz` (in `folder`, default the package's data folder), after checking the
    file against its shipped `<name>.sha256`; the checksum is returned too, under "checksum"."""
    folder = folder or resources.files("polymodal.datasets") / "data"
    raw = (folder / f"{name}.npz").read_bytes()
    expected = (folder / f"{name}.sha256").read_text().split()[0]
    if hashlib.sha256(raw).hexdigest() != expected:
        raise RuntimeError(f"{name}.npz does not match its checksum in {name}.sha256; reinstall polymodal or rebuild "
                           f"it with scripts/build_{name}.py")
    with np.load(io.BytesIO(raw), allow_pickle=False) as npz:
        return {k: npz[k] for k in npz.files} | {"checksum": np.asarray(expected)}


def staging_dir(root: Path) -> Path:
    """A fresh path beside `root` for this process alone (not created)."""
    return root.with_name(f"{root.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")


def publish(tmp: Path, root: Path, complete: str = "records.csv") -> Path:
    """Move the complete copy `tmp` to `root`, unless a complete copy (one holding `complete`) is already there."""
    if (root / complete).is_file():
        shutil.rmtree(tmp, ignore_errors=True)
        return root
    shutil.rmtree(root, ignore_errors=True)  # an incomplete copy left by an older version
    try:
        tmp.rename(root)
    except OSError:  # another process published in between: keep theirs
        if not (root / complete).is_file():
            raise
        shutil.rmtree(tmp, ignore_errors=True)
    return root


def dataset_root(name: str, version: int, key: str) -> Path:
    """The default folder of a built-in dataset: `<cache>/<name>_v<version>_<key>`."""
    return cache_dir() / f"{name}_v{version}_{key}"


def materialize(root: Path, write: Callable[[Path], None], complete: str = "records.csv") -> Path:
    """`root` as it is if it holds a complete copy (one with `complete`); else `write(folder)` fills a fresh staging
    folder (already created), which is then published as `root`. A failed write leaves no staging folder behind."""
    if (root / complete).is_file():
        return root
    tmp = staging_dir(root)
    tmp.mkdir(parents=True)
    try:
        write(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return publish(tmp, root, complete)
