"""Shared fixtures: a tiny multimodal table with real files of every kind, written per test session."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch
from PIL import Image

torch.set_num_threads(1)  # tiny models: threads cost more in synchronisation than they save

WORDS = ["red apple", "green pear", "blue sky"]


def make_records(root: Path, n: int = 60, seed: int = 0) -> pd.DataFrame:
    """n records of 3 classes; each modality carries the label (with noise) so models can learn it."""
    rng = np.random.default_rng(seed)
    (root / "img").mkdir(parents=True, exist_ok=True)
    (root / "wav").mkdir(exist_ok=True)
    (root / "seq").mkdir(exist_ok=True)
    rows = []
    for i in range(n):
        y = i % 3
        img = (rng.random((12, 12)) * 60).astype(np.uint8)
        img[y * 4: y * 4 + 4, :] += 180
        Image.fromarray(img).save(root / "img" / f"{i}.png")
        t = np.arange(2400) / 8000
        wave = 0.3 * np.sin(2 * np.pi * (300 + 400 * y) * t) + 0.02 * rng.standard_normal(t.size)
        sf.write(root / "wav" / f"{i}.wav", wave.astype(np.float32), 8000)
        seq = rng.normal(size=(3 + i % 4, 2)) + y
        np.save(root / "seq" / f"{i}.npy", seq.astype(np.float32))
        rows.append({
            "photo": f"img/{i}.png", "sound": f"wav/{i}.wav", "title": f"{WORDS[y]} number {i % 5}",
            "price": float(y) + rng.normal(0, 0.3), "brand": "abc"[(y + i) % 3], "emb": list(rng.normal(size=4) + y),
            "track": f"seq/{i}.npy", "label": "xyz"[y], "score": float(y) + rng.normal(0, 0.1),
            "tags": "|".join(t for t, on in zip(("a", "b", "c"), (y == 0, y >= 1, i % 2 == 0)) if on),
        })
    return pd.DataFrame(rows)


@pytest.fixture(scope="session", autouse=True)
def _dataset_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Built-in datasets materialize into a temporary folder, not the user's cache."""
    import os

    os.environ["POLYMODAL_DATA"] = str(tmp_path_factory.mktemp("polymodal_data"))


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("records")
    make_records(root).to_parquet(root / "data.parquet")
    return root


ALL_MODALITIES: dict[str, dict[str, Any]] = {
    "photo": {"type": "image", "size": 12, "channels": 1, "encoder": {"name": "image_cnn", "width": 8, "out_dim": 16, "blocks": 2}},
    "sound": {"type": "audio", "sample_rate": 8000, "n_mels": 16, "encoder": {"name": "audio_cnn", "width": 8, "out_dim": 16, "blocks": 2}},
    "title": {"type": "text", "encoder": {"name": "text_gru", "out_dim": 16, "embed_dim": 8}},
    "specs": {"type": "tabular", "numeric": ["price"], "categorical": ["brand"], "encoder": {"name": "tabular_mlp", "out_dim": 16, "hidden": 16}},
    "emb": {"type": "vector", "encoder": {"name": "vector_mlp", "out_dim": 16, "hidden": 16}},
    "track": {"type": "sequence", "encoder": {"name": "sequence_gru", "out_dim": 16, "hidden": 8}},
}


def make_config(data_dir: Path, out: Path, modalities: list[str] | None = None, task: str = "multiclass",
                field: str = "label", fusion: str = "concat", epochs: int = 2, **training: Any) -> dict[str, Any]:
    mods = modalities or list(ALL_MODALITIES)
    return {
        "name": out.name,
        "data": {"source": str(data_dir / "data.parquet"), "split": {"ratios": [0.6, 0.2, 0.2], "seed": 0}},
        "modalities": {m: ALL_MODALITIES[m] for m in mods},
        "target": {"field": field, "task": task},
        "fusion": {"name": fusion, "hidden": 16},
        "training": {"epochs": epochs, "batch_size": 16, "progress_bar": False, "lr": 3e-3, **training},
        "output_dir": str(out),
    }
