"""The public API: `import polymodal` stays light, its names load on use, `fit` trains a config or delegates a table."""

from __future__ import annotations

import subprocess
import sys
import types
from pathlib import Path

import pandas as pd
import pytest
import yaml
from conftest import make_config

import polymodal
from polymodal.factory import parse_config
from polymodal.fusion import FUSIONS
from polymodal.predictor import Predictor


def modules_after(statement: str) -> set[str]:
    code = f"import sys; {statement}; print(' '.join(sorted(sys.modules)))"
    return set(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split())


def test_import_polymodal_loads_no_torch() -> None:
    loaded = modules_after("import polymodal")
    assert "torch" not in loaded and "polymodal.api" not in loaded


def test_load_config_loads_no_training_stack() -> None:
    loaded = modules_after("import polymodal; polymodal.Config")
    assert "torch" not in loaded


def test_public_names_resolve() -> None:
    for name in polymodal.__all__:
        assert getattr(polymodal, name) is not None, name
    assert polymodal.FUSIONS is FUSIONS
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        polymodal.nothing  # noqa: B018


def test_lists_come_from_the_registries() -> None:
    assert polymodal.list_fusions() == FUSIONS.names()
    assert {"multiclass", "generation", "retrieval"} <= set(polymodal.list_tasks())
    assert "image_cnn" in polymodal.list_encoders("image") and "image_cnn" not in polymodal.list_encoders("text")


def test_fit_a_yaml_config_returns_a_predictor(data_dir: Path, tmp_path: Path) -> None:
    config = make_config(data_dir, tmp_path / "run", modalities=["specs", "title"], epochs=1)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    predictor = polymodal.fit(path)
    assert isinstance(predictor, Predictor) and predictor.run.path == tmp_path / "run"
    frame = pd.read_parquet(data_dir / "data.parquet").head(5)
    assert len(predictor.predict(frame, root=data_dir)) == 5


def test_fit_checks_a_config_object_against_the_registries(data_dir: Path, tmp_path: Path) -> None:
    config = parse_config(make_config(data_dir, tmp_path / "run", modalities=["specs"]))
    config.fusion.name = "magic"
    with pytest.raises(ValueError, match="fusion.name: unknown fusion 'magic'"):
        polymodal.fit(config)


def test_fit_of_a_table_delegates_to_the_fit_app(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    app = types.ModuleType("polymodal.apps.fit")
    app.fit_table = lambda table, target, **options: calls.append((table, target, options)) or "predictor"  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "polymodal.apps.fit", app)
    assert polymodal.fit("data.csv", target="label", epochs=3) == "predictor"
    assert calls == [("data.csv", "label", {"epochs": 3})]


def test_fit_of_a_table_without_the_fit_app_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "polymodal.apps.fit", None)  # import fails
    with pytest.raises(ImportError, match="needs polymodal.apps.fit.fit_table"):
        polymodal.fit("data.csv", target="label")


def test_fit_of_a_config_takes_no_options(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="takes no options"):
        polymodal.fit(tmp_path / "config.yaml", epochs=3)
