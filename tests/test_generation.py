"""Task generation: target vocabulary, decoders, greedy and beam search, text metrics, runs and the built-in
translation data."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from polymodal.config import ConfigError, GenerationConfig, TargetConfig
from polymodal.evaluation.text_metrics import CiderD, bleu, chrf, cider_d, text_metrics
from polymodal.factory import parse_config
from polymodal.fusion.base import FusionOutput
from polymodal.generation import BOS_ID, EOS_ID, PAD_ID, SequenceHead, build_sequence_head
from polymodal.generation.search import beam_search, greedy
from polymodal.generation.vocabulary import TargetVocabulary
from polymodal.layers import EncoderOutput
from polymodal.predictor import Predictor
from polymodal.tasks import build_task
from polymodal.training.fit import train

VOCAB = 12
DECODERS = [{"decoder": "gru", "attention": "additive"}, {"decoder": "gru", "attention": "dot"},
            {"decoder": "transformer", "heads": 2}]


def head_for(options: dict, in_dims: dict[str, int] | None = None, vocab: int = VOCAB) -> SequenceHead:
    config = GenerationConfig(hidden=16, max_length=6, vocab_size=300, dropout=0.0, **options)
    return build_sequence_head(config, 8, in_dims or {"a": 5, "b": 7}, vocab)


def fake_inputs(batch: int = 3, seed: int = 0) -> tuple[FusionOutput, dict[str, EncoderOutput], dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    fused = FusionOutput(fused=torch.randn(batch, 8, generator=g))
    encoded = {"a": EncoderOutput(torch.randn(batch, 5, generator=g), torch.randn(batch, 4, 5, generator=g),
                                  torch.tensor([[True] * 4, [True, True, False, False], [True] * 4][:batch])),
               "b": EncoderOutput(torch.randn(batch, 7, generator=g))}
    present = {"a": torch.ones(batch, dtype=torch.bool), "b": torch.tensor([True, False, True][:batch])}
    return fused, encoded, present


def targets(rows: list[list[int]], length: int = 8) -> torch.Tensor:
    out = torch.full((len(rows), length), PAD_ID)
    for i, r in enumerate(rows):
        out[i, : len(r) + 2] = torch.tensor([BOS_ID, *r, EOS_ID])
    return out


# ----------------------------------------------------------------------------------------------- vocabulary


def test_target_vocabulary_encodes_bos_eos_pad_and_round_trips() -> None:
    vocab = TargetVocabulary(vocab_size=300, max_length=5)
    vocab.fit(["grinning face", "Flagge: Frankreich", "visage rieur"])
    ids = vocab.encode("Flagge: Frankreich")
    assert ids.shape == (7,) and ids[0] == BOS_ID and EOS_ID in ids.tolist()
    assert vocab.decode(vocab.encode("grinning face")) == "grinning face"
    assert vocab.decode(vocab.encode("Größe ø 😀")) != ""  # unseen characters are bytes, never unknown
    cut = vocab.encode("a b c d e f g h i j k")  # longer than max_length tokens: cut, still ends with [EOS]
    assert cut[-1] == EOS_ID and PAD_ID not in cut.tolist()
    again = TargetVocabulary(300, 5)
    again.load_state(vocab.state())
    assert again.decode(vocab.encode("visage rieur")) == "visage rieur"


# ------------------------------------------------------------------------------------------------- decoders


@pytest.mark.parametrize("options", DECODERS, ids=lambda o: "-".join(map(str, o.values())))
def test_decoder_shapes_in_training_and_evaluation(options: dict) -> None:
    head = head_for(options)
    fused, encoded, present = fake_inputs()
    target = targets([[5, 6], [7], [5, 6, 7, 8]])
    head.train()
    logits, sequences = head(fused, encoded, present, target)
    assert logits.shape == (3, 7, VOCAB) and sequences is None
    assert torch.all(logits[:, 5:] == 0)  # past the longest target: padding
    head.eval()
    logits, sequences = head(fused, encoded, present, None)
    assert logits.shape == (3, 0, VOCAB)
    assert sequences is not None and sequences.shape == (3, 7) and sequences.dtype == torch.long


@pytest.mark.parametrize("options", DECODERS, ids=lambda o: "-".join(map(str, o.values())))
def test_missing_modality_and_padding_do_not_reach_the_decoder(options: dict) -> None:
    head = head_for(options).eval()
    fused, encoded, present = fake_inputs()
    target = targets([[5, 6], [7], [5, 6, 7, 8]])
    before, _ = head(fused, encoded, present, target)
    garbage = {"a": EncoderOutput(encoded["a"].pooled, encoded["a"].tokens.clone(), encoded["a"].mask),
               "b": EncoderOutput(encoded["b"].pooled.clone())}
    garbage["b"].pooled[1] = 1e6  # record 1 lacks b
    garbage["a"].tokens[1, 2:] = 1e6  # record 1's padding in a
    after, _ = head(fused, garbage, present, target)
    assert torch.allclose(before, after)


@pytest.mark.parametrize("options", [DECODERS[0], DECODERS[2]], ids=["gru", "transformer"])
def test_teacher_forcing_learns_to_copy(options: dict) -> None:
    """Memory = the embedded source tokens (with positions); the target is the source: loss falls, greedy copies."""
    torch.manual_seed(0)
    vocab, n, length = 10, 4, 4
    head = head_for(options, {"src": 16}, vocab)
    embed, positions = nn.Embedding(vocab, 16), nn.Parameter(torch.randn(length, 16))  # a stand-in encoder
    opt = torch.optim.Adam([*head.parameters(), *embed.parameters(), positions], lr=1e-2)

    def batch(size: int) -> tuple[torch.Tensor, torch.Tensor, dict]:
        src = torch.randint(4, vocab, (size, length))
        tokens = embed(src) + positions  # (B, T, 16)
        encoded = {"src": EncoderOutput(tokens.mean(1), tokens)}
        return src, targets(src.tolist(), length + 2), encoded

    losses = []
    task = build_task(TargetConfig(field="t", task="generation"))
    for _ in range(120):
        src, tgt, encoded = batch(32)
        fused = FusionOutput(fused=torch.zeros(32, 8))
        logits, _ = head(fused, encoded, {"src": torch.ones(32, dtype=torch.bool)}, tgt)
        loss = task.loss(logits, tgt)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert np.mean(losses[-10:]) < 0.25 * np.mean(losses[:5])
    head.eval()
    with torch.no_grad():
        src, _, encoded = batch(n * 8)
        _, seqs = head(FusionOutput(fused=torch.zeros(len(src), 8)), encoded, {"src": torch.ones(len(src), dtype=torch.bool)}, None)
    assert (seqs[:, :length] == src).all(dim=1).float().mean() > 0.7
    assert (seqs[:, length] == EOS_ID).all()


# --------------------------------------------------------------------------------------------------- search


def test_greedy_equals_beam_size_one() -> None:
    for options in DECODERS:
        head = head_for(options).eval()
        fused, encoded, present = fake_inputs(seed=3)
        memory, mask, start = head.memory(fused, encoded, present)
        state = head.decoder.start(memory, mask, start)
        g = greedy(head.decoder.step, state, 3, 7)
        b = beam_search(head.decoder.step, state, 3, 7, beam=1, alpha=0.6)
        assert torch.equal(g, b)


@pytest.mark.parametrize("options", DECODERS, ids=lambda o: "-".join(map(str, o.values())))
def test_beam_search_returns_sequences_ending_at_eos_or_max_length(options: dict) -> None:
    torch.manual_seed(1)
    head = head_for(options).eval()
    fused, encoded, present = fake_inputs(seed=5)
    with torch.no_grad():
        for p in head.decoder.parameters():  # make [EOS] likely enough that some beams end early
            p.add_(torch.randn_like(p) * 0.5)
    memory, mask, start = head.memory(fused, encoded, present)
    for beam in (2, 4):
        seqs = head.generate(memory, mask, start, beam_size=beam)
        assert seqs.shape == (3, 7)
        for row in seqs.tolist():
            end = row.index(EOS_ID) + 1 if EOS_ID in row else len(row)
            assert all(t not in (PAD_ID, BOS_ID) for t in row[:end])
            assert all(t == PAD_ID for t in row[end:])
            assert all(0 <= t < VOCAB for t in row)


def tree_step(tokens: torch.Tensor, state: dict) -> tuple[torch.Tensor, dict]:
    """A known distribution: first token 4 (p .6) or 5 (p .4); after 4 every next token has p .15 or less,
    after 5 [EOS] has p .9. Greedy takes 4 (best first step), the best sequence is 5 [EOS] (p .36)."""
    v = 10
    t = state["t"][:, 0]
    logp = torch.full((len(tokens), v), -30.0)
    first = t == 0
    logp[first, 4], logp[first, 5] = math.log(0.6), math.log(0.4)
    after4 = ~first & (tokens == 4)
    logp[after4, 4:] = math.log(0.15)
    logp[after4, EOS_ID] = math.log(0.1)
    after5 = ~first & (tokens == 5)
    logp[after5, EOS_ID], logp[after5, 6] = math.log(0.9), math.log(0.1)
    rest = ~first & ~after4 & ~after5
    logp[rest, EOS_ID] = 0.0
    return logp, {"t": state["t"] + 1}


def test_beam_search_finds_the_more_probable_sequence_greedy_misses() -> None:
    state = {"t": torch.zeros(1, 1)}
    assert greedy(tree_step, state, 1, 5)[0, 0].item() == 4
    best = beam_search(tree_step, state, 1, 5, beam=2, alpha=0.0)[0].tolist()
    assert best[:2] == [5, EOS_ID] and set(best[2:]) == {PAD_ID}


# -------------------------------------------------------------------------------------------------- metrics


def test_cider_d_on_hand_computed_cases() -> None:
    # N = 2 records, df(a) = 2 so "a" weighs 0; "cat" and "a cat" match exactly: (1 + 1 + 0 + 0) / 4 * 10 = 5
    assert CiderD().per_record(["a cat", "a cat"], [["a cat"], ["a dog"]]) == pytest.approx([5.0, 0.0])
    assert cider_d(["a cat", "a cat"], [["a cat"], ["a dog"]]) == pytest.approx(2.5)
    # "a cat cat" vs "a cat" (N = 2, every n-gram in one record, g = tf * log 2):
    # unigrams: min(l,l)*l + min(2l,l)*l = 2 l^2 over |h| = sqrt(5) l, |r| = sqrt(2) l -> 2 / sqrt(10)
    # bigrams: "a cat" matches, "cat cat" does not: l^2 / (sqrt(2) l * l) = 1 / sqrt(2); length gap 1
    expected = (2 / math.sqrt(10) + 1 / math.sqrt(2)) / 4 * 10 * math.exp(-1 / 72)
    assert CiderD().per_record(["a cat cat", "b"], [["a cat"], ["b"]])[0] == pytest.approx(expected)
    # several references: the mean over them
    two = CiderD().per_record(["a cat", "x"], [["a cat", "a dog"], ["a cow"]])
    one = CiderD().per_record(["a cat", "x"], [["a cat", "a cat"], ["a cow"]])
    assert 0 < two[0] < one[0]


def test_bleu_and_chrf_on_hand_computed_cases() -> None:
    # precisions 5/6, 3/5, 2/4, 1/3, equal lengths: BLEU = (1/12) ** (1/4)
    assert bleu(["the cat sat on the mat"], [["the cat sat on a mat"]]) == pytest.approx(100 * (1 / 12) ** 0.25)
    assert bleu(["a b c d e"], [["a b c d e"]]) == pytest.approx(100.0)
    assert chrf(["grinsendes Gesicht"], [["grinsendes Gesicht"]]) == pytest.approx(100.0)
    assert 0 < chrf(["grinsendes Gesicht"], [["grinsende Katze"]]) < 100
    m = text_metrics(["a b c d", "x y"], [["a b c d"], ["x z"]])
    assert m["exact"] == 0.5 and set(m) == {"bleu", "chrf", "cider", "exact"}


# --------------------------------------------------------------------------------------------------- config


def test_generation_config_errors_name_the_key() -> None:
    base = {"data": {"source": "x.csv"}, "modalities": {"t": {"type": "text"}}}
    with pytest.raises(ConfigError, match="target.generation: only for task generation"):
        parse_config({**base, "target": {"field": "y", "task": "multiclass", "generation": {}}})
    with pytest.raises(ConfigError, match="target.generation.attention"):
        parse_config({**base, "target": {"field": "y", "task": "generation",
                                         "generation": {"decoder": "transformer", "attention": "dot"}}})
    with pytest.raises(ConfigError, match="heads: 3 does not divide hidden 128"):
        parse_config({**base, "target": {"field": "y", "task": "generation",
                                         "generation": {"decoder": "transformer", "heads": 3}}})
    with pytest.raises(ConfigError, match=r"target.generation.beam: unknown key; allowed: decoder, attention"):
        parse_config({**base, "target": {"field": "y", "task": "generation", "generation": {"beam": 3}}})
    with pytest.raises(ConfigError, match="decoder"):
        parse_config({**base, "target": {"field": "y", "task": "generation", "generation": {"decoder": "lstm"}}})


# ------------------------------------------------------------------------------------------------ end to end


def copy_table(root: Path, n: int = 48) -> Path:
    rng = np.random.default_rng(0)
    words = ["red", "green", "blue", "cat", "dog", "fish"]
    rows = []
    for i in range(n):
        src = " ".join(rng.choice(words, 2, replace=False))
        rows.append({"src": src, "tgt": src.upper(), "x": float(i % 3), "split": "train" if i < 32 else
                     ("val" if i < 40 else "test")})
    root.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(root / "copy.csv", index=False)
    return root / "copy.csv"


def test_generation_run_saves_loads_and_predicts_strings(tmp_path: Path) -> None:
    config = parse_config({
        "name": "gen", "data": {"source": str(copy_table(tmp_path)), "split": {"column": "split"}},
        "modalities": {"src": {"type": "text", "vocab_size": 32, "encoder": {"name": "text_gru", "out_dim": 16, "embed_dim": 8}},
                       "x": {"type": "tabular", "numeric": ["x"], "encoder": {"name": "tabular_mlp", "out_dim": 8, "hidden": 8}}},
        "target": {"field": "tgt", "task": "generation",
                   "generation": {"decoder": "transformer", "hidden": 16, "heads": 2, "max_length": 6, "vocab_size": 300, "beam_size": 2}},
        "fusion": {"name": "concat", "hidden": 16},
        "training": {"epochs": 2, "batch_size": 16, "progress_bar": False, "lr": 3e-3},
        "output_dir": str(tmp_path / "run")})
    result = train(config)
    assert {"bleu", "chrf", "cider", "exact"} <= set(result.metrics["test"])
    assert "vocabulary" in (result.run_dir / "processors.json").read_text()
    predictor = Predictor.load(result.run_dir)
    records = pd.read_csv(tmp_path / "copy.csv").head(5)
    first = predictor.predict(records)
    assert first.shape == (5,) and all(isinstance(p, str) for p in first)
    assert list(Predictor.load(result.run_dir).predict(records)) == list(first)  # same after loading again
    metrics = predictor.evaluate(records)
    assert 0 <= metrics["chrf"] <= 100
    assert predictor.outputs(records).sequences.shape == (5, 7)
    from polymodal.export import ExportError, export_run

    with pytest.raises(ExportError, match="'generation', which export does not support: its head decodes token"):
        export_run(result.run_dir, "onnx")  # the task's head says why, before anything is written
    assert not (result.run_dir / "export_onnx").exists()


def test_emoji_translation_records() -> None:
    from polymodal.datasets.translation import MASK, materialize_emoji_translation, recurring_words

    root = materialize_emoji_translation()
    frame = pd.read_csv(root / "records.csv", keep_default_na=False)
    assert frame.groupby("id").size().isin([1, 2]).all() and (frame.variant == "masked").sum() > 300
    full = frame[frame.variant == "full"]
    recurring = recurring_words(full.loc[full.split == "train", "name"].tolist())
    assert {"face", "heart", "woman", "red"} <= recurring
    assert frame.loc[frame.variant == "masked", "masked_word"].str.lower().isin(recurring).all()
    assert (frame.groupby("id")["split"].nunique() == 1).all()  # an emoji's records share a split
    full, masked = frame[frame.variant == "full"], frame[frame.variant == "masked"]
    assert (full.source == full.name).all()
    assert masked.source.str.split().apply(lambda w: w.count(MASK)).eq(1).all()
    restored = [s.replace(MASK, w, 1) for s, w in zip(masked.source, masked.masked_word)]
    assert restored == masked.name.tolist()
    assert (root / frame.image.iloc[0]).is_file()
    assert frame.name_de.str.len().gt(0).all()


@pytest.mark.slow
def test_translation_config_trains_evaluates_and_predicts_from_the_cli(tmp_path: Path) -> None:
    """configs/translation.yaml on a small slice of its built-in data, through `polymodal train/evaluate/predict`."""
    import yaml

    from polymodal.cli import main
    from polymodal.datasets.translation import materialize_emoji_translation

    root = materialize_emoji_translation()
    frame = pd.read_csv(root / "records.csv", keep_default_na=False)
    frame = pd.concat([frame[frame.split == s].head(k) for s, k in (("train", 48), ("val", 16), ("test", 16))])
    frame["image"] = [str((root / p).resolve()) for p in frame.image]
    frame.to_csv(tmp_path / "slice.csv", index=False)
    config = yaml.safe_load((Path(__file__).parents[1] / "configs" / "translation.yaml").read_text())
    config["data"] = {"source": str(tmp_path / "slice.csv"), "split": {"column": "split"},
                      "allow_outside_root": True}  # the slice names the built-in data's files by absolute path
    config["training"].update(epochs=1, progress_bar=False)
    config["output_dir"] = str(tmp_path / "run")
    (tmp_path / "translation.yaml").write_text(yaml.safe_dump(config))
    assert main(["train", str(tmp_path / "translation.yaml")]) == 0
    assert main(["evaluate", str(tmp_path / "run")]) == 0
    assert main(["predict", str(tmp_path / "run"), "--data", str(tmp_path / "slice.csv"), "--out",
                 str(tmp_path / "pred.csv")]) == 0
    predictions = pd.read_csv(tmp_path / "pred.csv", keep_default_na=False)
    assert len(predictions) == len(frame) and predictions.prediction.map(type).eq(str).all()
