"""Writing a built-in dataset's folder so that a reader never sees half of it, even with several processes.

Each process writes into a staging folder of its own beside the final one and moves it into place when it is
complete. A process that finishes second keeps the copy already there: removing it could pull files from under
a reader of the first.
"""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path


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
