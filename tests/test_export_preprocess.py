"""The preprocessing shipped next to an exported model: numpy only, and the same inputs as Predictor's."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
from conftest import make_config
from PIL import Image

from polymodal.config import parse_config
from polymodal.export import export_run
from polymodal.export.preprocess import resample
from polymodal.predictor import Predictor
from polymodal.training.fit import train

pytest.importorskip("onnxruntime")

# Runs with torch and polymodal unimportable: only numpy, Pillow, soundfile, tokenizers and onnxruntime.
SCRIPT = """
import json, sys
sys.modules["torch"] = None
sys.modules["polymodal"] = None
sys.modules["scipy"] = None
export, root, out = sys.argv[1:4]
sys.path.insert(0, export)
import numpy as np
import onnxruntime as ort
from preprocess import Preprocessor

records = json.load(open(out + "/records.json"))
feeds = Preprocessor().feeds(records, root=root)
logits, fused = ort.InferenceSession(export + "/model.onnx").run(None, feeds)
np.save(out + "/logits.npy", logits)
np.save(out + "/fused.npy", fused)
"""


@pytest.mark.parametrize(("rate", "target"), [(44100, 16000), (11025, 8000), (8000, 16000), (22050, 16000)])
def test_resample_matches_scipy(rate: int, target: int) -> None:
    from polymodal.processors.audio import resample as reference

    wave = np.random.default_rng(0).standard_normal(rate // 3).astype(np.float32)
    assert np.abs(resample(wave, rate, target) - reference(wave, rate, target)).max() < 1e-5


@pytest.fixture(scope="module")
def export_dir(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("export_pre") / "run"
    train(parse_config(make_config(data_dir, out, ["photo", "sound", "title", "specs"], epochs=1, patience=None)))
    return export_run(out, "onnx").out_dir


def raw_records(data_dir: Path, root: Path) -> pd.DataFrame:
    """Test records with files under `root`: some missing fields, a stereo 11025 Hz WAV, an RGB JPEG."""
    shutil.copytree(data_dir / "img", root / "img")
    shutil.copytree(data_dir / "wav", root / "wav")
    t = np.arange(11025) / 11025
    sf.write(root / "wav" / "stereo.wav", np.stack([np.sin(2 * np.pi * 440 * t), 0.3 * np.cos(900 * t)], 1) * 0.4,
             11025)
    Image.fromarray((np.random.default_rng(1).random((40, 30, 3)) * 255).astype(np.uint8)).save(root / "img/c.jpg")
    frame = pd.read_parquet(data_dir / "data.parquet").iloc[40:52].reset_index(drop=True)
    frame = frame[["photo", "sound", "title", "price", "brand"]].astype(object)
    frame.loc[0, "sound"], frame.loc[1, "photo"] = "wav/stereo.wav", "img/c.jpg"
    frame.loc[2, "title"], frame.loc[3, ["price", "brand"]], frame.loc[4, "photo"] = None, None, None
    frame.loc[5, "brand"] = "unseen"
    return frame


def test_onnxruntime_on_raw_files_matches_predictor(export_dir: Path, data_dir: Path, tmp_path: Path) -> None:
    assert (export_dir / "preprocess.py").is_file()
    assert json.loads((export_dir / "export.json").read_text())["preprocessing"]["module"] == "preprocess.py"
    root = tmp_path / "files"
    root.mkdir()
    frame = raw_records(data_dir, root)
    records = [{k: v for k, v in r.items() if v is not None} for r in frame.to_dict("records")]
    (tmp_path / "records.json").write_text(json.dumps(records))
    done = subprocess.run([sys.executable, "-c", SCRIPT, str(export_dir), str(root), str(tmp_path)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    want = Predictor.load(export_dir.parent).outputs(frame, root=root)
    assert np.abs(np.load(tmp_path / "logits.npy") - want.logits.numpy()).max() < 1e-4
    assert np.abs(np.load(tmp_path / "fused.npy") - want.fused.numpy()).max() < 1e-4
