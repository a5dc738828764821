"""Frozen encoders' outputs, computed once per (encoder, processor, data) and reused from disk.

An entry is a folder `<root>/<key>/` of `.npy` arrays read back as memory maps: `pooled` (N, D) and, where the
encoder has them, `tokens` (N, T, D) with `mask` (N, T) (ragged outputs padded to the longest). The key is a
hash of
- the encoder: registered name, options, class, and a digest of every tensor of its state dict (so the
  weights file, `init_from`, a seed-dependent random init all count), plus the torch version;
- the processor: its class, the modality settings that shape its output, and its fitted state (vocabulary,
  normalisation statistics);
- the data: the decoded arrays of every record and which records have the modality.
Any change gives another key, so an entry is never stale; entries are written to a temporary folder and
renamed, so concurrent runs (or DDP ranks) never read a partial one. Features are computed in eval mode,
without train-time augmentation. The root is `$POLYMODAL_CACHE/features`, else `~/.cache/polymodal/features`;
delete it to reclaim the space.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from polymodal.config import Component, Config
from polymodal.data.dataset import MultimodalDataset
from polymodal.encoders import Encoder
from polymodal.modalities import modality
from polymodal.layers import EncoderOutput
from polymodal.processors import Processor

log = logging.getLogger(__name__)

CACHE_VERSION = 1
ARRAYS = ("pooled", "tokens", "mask")


def cache_root() -> Path:
    env = os.environ.get("POLYMODAL_CACHE")
    return Path(env).expanduser() / "features" if env else Path.home() / ".cache" / "polymodal" / "features"


def _hash_arrays(h: Any, arrays: Iterable[np.ndarray]) -> None:
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(memoryview(a).cast("B"))


def encoder_digest(component: Component, encoder: nn.Module) -> str:
    """Name + options + class + every state tensor (weights and buffers) + torch version."""
    h = hashlib.blake2b(digest_size=16)
    h.update(json.dumps({"name": component.name, "options": component.options, "version": CACHE_VERSION,
                         "class": f"{type(encoder).__module__}.{type(encoder).__qualname__}",
                         "torch": torch.__version__.split("+")[0]}, sort_keys=True, default=str).encode())
    for name, tensor in sorted(encoder.state_dict().items()):
        h.update(name.encode())
        _hash_arrays(h, [tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy()])
    return h.hexdigest()


def processor_digest(processor: Processor) -> str:
    """Class + modality settings (minus those that do not change its output) + fitted state."""
    spec = processor.spec.model_dump(mode="json", exclude={"encoder", "train", "field", "on_error"})
    state = json.dumps(processor.state(), sort_keys=True, default=str)
    payload = json.dumps({"class": type(processor).__qualname__, "spec": spec}, sort_keys=True) + state
    return hashlib.blake2b(payload.encode(), digest_size=16).hexdigest()


def data_digest(dataset: MultimodalDataset, modality: str) -> str:
    """The decoded arrays of every record for `modality`, and its presence mask."""
    h = hashlib.blake2b(digest_size=16)
    for key, values in sorted({**dataset.fixed.get(modality, {}), **dataset.lists.get(modality, {})}.items()):
        h.update(key.encode())
        _hash_arrays(h, [values] if isinstance(values, np.ndarray) else values)
    _hash_arrays(h, [dataset.present[modality]])
    return h.hexdigest()


@dataclass
class Entry:
    """Cached outputs of one encoder over one dataset: (N, D) pooled, optional (N, T, D) tokens + (N, T) mask."""

    pooled: np.ndarray
    tokens: np.ndarray | None = None
    mask: np.ndarray | None = None

    def arrays(self) -> dict[str, np.ndarray]:
        return {k: v for k, v in (("pooled", self.pooled), ("tokens", self.tokens), ("mask", self.mask))
                if v is not None}


class FeatureCache:
    """A folder of entries keyed by (encoder, processor, data) digests. `hits` / `misses` count lookups."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = Path(root) if root is not None else cache_root()
        self.hits = 0
        self.misses = 0

    @staticmethod
    def key(encoder_id: str, processor_id: str, data_id: str) -> str:
        return hashlib.blake2b(f"{encoder_id}|{processor_id}|{data_id}".encode(), digest_size=20).hexdigest()

    def load(self, key: str) -> Entry | None:
        folder = self.root / key
        if not (folder / "meta.json").is_file():
            return None
        found = {k: np.load(folder / f"{k}.npy", mmap_mode="r") for k in ARRAYS if (folder / f"{k}.npy").is_file()}
        return Entry(**found)

    def save(self, key: str, entry: Entry, meta: dict[str, Any]) -> Entry:
        """Write to a temporary folder, then rename: readers see a whole entry or none."""
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{key}.", dir=self.root))
        for name, array in entry.arrays().items():
            np.save(tmp / f"{name}.npy", array)
        (tmp / "meta.json").write_text(json.dumps(meta, indent=1))
        try:
            tmp.rename(self.root / key)
        except OSError:  # another process wrote the same entry first: theirs is identical
            shutil.rmtree(tmp, ignore_errors=True)
        loaded = self.load(key)
        assert loaded is not None
        return loaded

    def get(self, component: Component, encoder: Encoder, processor: Processor, dataset: MultimodalDataset,
            modality: str, batch_size: int = 64, device: torch.device | str = "cpu",
            encoder_id: str | None = None, compute: bool = True) -> Entry | None:
        """The cached outputs, computed and stored on a miss (None on a miss without `compute`).
        `encoder_id`: `encoder_digest(component, encoder)` if already known (it reads every weight)."""
        encoder_id = encoder_id or encoder_digest(component, encoder)
        key = self.key(encoder_id, processor_digest(processor), data_digest(dataset, modality))
        entry = self.load(key)
        if entry is not None:
            self.hits += 1
            log.info("feature cache hit: %s (%s) %s", modality, component.name, key)
            return entry
        self.misses += 1
        if not compute:
            return None
        computed = compute_features(encoder, processor, dataset, modality, batch_size, device)
        meta = {"modality": modality, "encoder": component.name, "options": component.options,
                "records": len(dataset), "arrays": {k: list(v.shape) for k, v in computed.arrays().items()}}
        log.info("feature cache miss: %s (%s), stored as %s", modality, component.name, key)
        return self.save(key, computed, json.loads(json.dumps(meta, default=str)))


def compute_features(encoder: Encoder, processor: Processor, dataset: MultimodalDataset, modality: str,
                     batch_size: int, device: torch.device | str) -> Entry:
    """Run `encoder` (eval mode, no gradients, no augmentation) over every record of `dataset`."""
    was_training = encoder.training
    encoder.eval().to(device)
    outs: list[EncoderOutput] = []
    with torch.no_grad():
        for start in range(0, len(dataset), batch_size):
            batch = dataset.__getitems__(list(range(start, min(start + batch_size, len(dataset)))))
            inputs = {k: v.to(device) for k, v in batch.inputs[modality].items()}
            outs.append(encoder(processor.to_model(inputs, train=False)))
    encoder.train(was_training).to("cpu")
    return stack_outputs(outs)


def stack_outputs(outs: list[EncoderOutput]) -> Entry:
    """Concatenate batch outputs; tokens of varying length are padded to the longest, with a mask."""
    pooled = torch.cat([o.pooled for o in outs]).float().cpu().numpy()  # (N, D)
    if outs[0].tokens is None:
        return Entry(pooled)
    t = max(o.tokens.shape[1] for o in outs if o.tokens is not None)
    tokens = np.zeros((len(pooled), t, outs[0].tokens.shape[2]), dtype=np.float32)  # (N, T, D)
    mask = np.zeros((len(pooled), t), dtype=bool)  # (N, T)
    row = 0
    for o in outs:
        assert o.tokens is not None
        b, tb = o.tokens.shape[:2]
        tokens[row: row + b, :tb] = o.tokens.float().cpu().numpy()
        mask[row: row + b, :tb] = True if o.mask is None else o.mask.cpu().numpy()
        row += b
    return Entry(pooled, tokens, mask)


def with_features(dataset: MultimodalDataset, modality: str, entry: Entry) -> MultimodalDataset:
    """A shallow copy of `dataset` whose batches carry the cached outputs as `modality`'s `Batch.features`."""
    out = copy.copy(dataset)
    out.features = {**dataset.features, modality: entry.arrays()}
    out.fixed = {m: v for m, v in dataset.fixed.items() if m != modality}
    out.lists = {m: v for m, v in dataset.lists.items() if m != modality}
    out.ragged = {**dataset.ragged, modality: False}
    return out


def frozen_modalities(config: Config) -> list[str]:
    """Modalities whose encoder is frozen for the whole run (its outputs depend on the input alone)."""
    return [m for m, spec in config.modalities.items()
            if spec.train.mode == "frozen" and spec.train.unfreeze_after is None]


def cached_modalities(config: Config) -> list[str]:
    """Modalities whose encoder is frozen for the whole run with the cache on."""
    return [m for m in frozen_modalities(config) if config.modalities[m].train.cache]


def use_feature_cache(config: Config, encoders: Mapping[str, Encoder], processors: Mapping[str, Processor],
                      datasets: Mapping[str, Any], cache: FeatureCache | None = None,
                      device: torch.device | str = "cpu", keep: Collection[str] = (),
                      lookup: bool = False) -> dict[str, Any]:
    """`datasets` with the inputs of every cached modality replaced by its frozen encoder's stored outputs
    (computed and stored on a miss).

    `lookup`: also frozen modalities with `cache: false`, where their outputs are already stored (for evaluation,
    which never augments). `keep`: modalities left as inputs (e.g. corrupted ones, which their encoder must see).
    Streaming datasets (not addressable by index) are returned as they are.
    """
    chosen = frozen_modalities(config) if lookup else cached_modalities(config)
    modalities = [m for m in chosen if m not in keep and m in encoders]
    if not modalities or not any(isinstance(d, MultimodalDataset) for d in datasets.values()):
        return dict(datasets)
    cache = cache or FeatureCache()
    components = {m: config.modalities[m].encoder or modality(config.modalities[m].type).encoder
                  for m in modalities}
    ids = {m: encoder_digest(components[m], encoders[m]) for m in modalities}
    out = dict(datasets)
    for split, dataset in datasets.items():
        if not isinstance(dataset, MultimodalDataset):
            continue
        for m in modalities:
            entry = cache.get(components[m], encoders[m], processors[m], dataset, m, config.training.batch_size,
                              device, ids[m], compute=config.modalities[m].train.cache)
            if entry is not None:
                out[split] = dataset = with_features(dataset, m, entry)
    return out


def carry_features(source: MultimodalDataset, dataset: MultimodalDataset,
                   skip: Collection[str] = ()) -> MultimodalDataset:
    """`dataset` (the same records as `source`, some modalities altered) with `source`'s stored encoder outputs
    for every modality but those in `skip`."""
    for m, arrays in source.features.items():
        if m not in skip:
            dataset = with_features(dataset, m, Entry(**arrays))
    return dataset
