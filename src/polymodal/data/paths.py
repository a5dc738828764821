"""Whether a file path stays inside the data folder (the check runs before anything is opened)."""

from __future__ import annotations

import os
from pathlib import Path


def is_inside(path: Path, root: Path) -> bool:
    """True if `path` stays under `root`, first as written, then with every symlink followed."""
    base, lexical = os.path.abspath(root), os.path.abspath(path)
    if os.path.commonpath([base, lexical]) != base:
        return False
    real_base = os.path.realpath(base)
    return os.path.commonpath([real_base, os.path.realpath(lexical)]) == real_base
