from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from polymodal.config import ConfigError, json_schema
from polymodal.factory import load_config, parse_config

BASE = {
    "data": {"source": "data.csv"},
    "modalities": {"photo": {"type": "image"}, "caption": {"type": "text"}},
    "target": {"field": "label", "task": "multiclass"},
}


def with_(path: str, value: object) -> dict:
    import copy

    cfg = copy.deepcopy(BASE)
    node = cfg
    keys = path.split(".")
    for k in keys[:-1]:
        node = node.setdefault(k, {})
    node[keys[-1]] = value
    return cfg


def test_defaults_fill_in() -> None:
    cfg = parse_config(BASE)
    assert cfg.fusion.name == "concat"
    assert cfg.training.epochs > 0
    assert cfg.field_of("photo") == "photo"


def test_unknown_top_level_key_is_named_with_allowed_keys() -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(with_("trainer", {"epochs": 3}))
    assert "trainer: unknown key" in str(err.value)
    assert "training" in str(err.value)


def test_unknown_nested_key_is_named_with_its_path() -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(with_("training.epoch", 3))
    assert "training.epoch" in str(err.value)
    assert "epochs" in str(err.value)


def test_unknown_modality_key_names_the_modality() -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(with_("modalities.photo.sise", 32))
    assert "modalities.photo.sise: unknown key" in str(err.value)
    assert "size" in str(err.value)


def test_wrong_type_is_named() -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(with_("training.epochs", "many"))
    assert "training.epochs" in str(err.value)


def test_bad_literal_lists_what_is_allowed() -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(with_("target.task", "ranking"))
    msg = str(err.value)
    assert "target.task" in msg and "multiclass" in msg and "ranking" in msg


def test_unknown_modality_type() -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(with_("modalities.photo", {"type": "smell"}))
    assert "smell" in str(err.value) and "image, text, audio" in str(err.value)


def test_unknown_fusion_lists_registered() -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(with_("fusion", {"name": "magic"}))
    assert "fusion.name" in str(err.value) and "concat" in str(err.value) and "late" in str(err.value)


def test_unknown_fusion_option_is_named() -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(with_("fusion", {"name": "concat", "hiden": 3}))
    assert "'hiden'" in str(err.value) and "hidden" in str(err.value)


def test_encoder_for_wrong_modality_is_rejected() -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(with_("modalities.photo.encoder", {"name": "text_gru"}))
    assert "modalities.photo.encoder.name" in str(err.value) and "image_cnn" in str(err.value)


def test_encoder_option_must_exist_and_derived_ones_are_not_settable() -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(with_("modalities.photo.encoder", {"name": "image_cnn", "in_channels": 3}))
    assert "'in_channels'" in str(err.value) and "out_dim" in str(err.value)


def test_source_or_train_required() -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(with_("data", {}))
    assert "builtin" in str(err.value) and "source" in str(err.value) and "train" in str(err.value)


def test_load_resolves_paths_relative_to_the_file(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "cfg.yaml"
    path.parent.mkdir()
    path.write_text(yaml.safe_dump(BASE))
    assert load_config(path).data.source == str((tmp_path / "sub" / "data.csv").resolve())


def test_missing_and_malformed_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("data: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)


def test_json_schema_lists_sections() -> None:
    schema = json_schema()
    assert {"data", "modalities", "target", "fusion", "training"} <= set(schema["properties"])


def test_every_shipped_config_validates() -> None:
    configs = sorted((Path(__file__).parents[1] / "configs").glob("*.yaml"))
    assert configs, "configs/ has no recipes"
    for path in configs:
        load_config(path)
