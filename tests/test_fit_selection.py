"""fit's selection: cross-fitted candidates chosen on out-of-fold predictions, bagged ensemble selection, the
never-below-the-best-single rule, collapsed candidates warned, and regression targets."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from polymodal.apps.candidates import Scored, trees
from polymodal.apps.crossfit import cross_fit
from polymodal.apps.fit import FitOptions, Scorer, choose, collapsed
from polymodal.config import TabularSpec, TargetConfig, parse_config
from polymodal.data.sources import Table
from polymodal.ensemble.rundir import Member
from polymodal.tasks import build_task


def _task() -> Scorer:
    task = build_task(TargetConfig(field="y", task="multiclass"))
    task.fit(["a", "b"])
    return Scorer(task)


def _logits(correct: np.ndarray, target: np.ndarray) -> torch.Tensor:
    """Two-class logits that are right exactly where `correct` is True."""
    predicted = np.where(correct, target, 1 - target)
    return torch.nn.functional.one_hot(torch.from_numpy(predicted), 2).float() * 4 - 2


def _scored(name: str, oof_correct: np.ndarray, target: np.ndarray, n_val: int) -> Scored:
    oof = _logits(oof_correct, target)
    t = torch.from_numpy(target)
    return Scored(Member(name, None, {}, nn.Identity()), {"val": oof[-n_val:], "test": oof[-n_val:]},  # type: ignore
                  {"val": t[-n_val:], "test": t[-n_val:]}, 0.0, "", oof, t)


def test_selection_reads_out_of_fold_records_not_a_lucky_validation_split() -> None:
    rng = np.random.default_rng(0)
    target = rng.integers(0, 2, 300)
    good = rng.random(300) < 0.85  # right on 85% of all records...
    good[-10:] = [True] * 7 + [False] * 3  # ...but on 7 of the 10 validation records only
    lucky = rng.random(300) < 0.55  # right on about half of all records...
    lucky[-10:] = True  # ...and on every validation record
    done = [_scored("good", good, target, 10), _scored("lucky", lucky, target, 10)]
    scorer = _task()
    naive = max(done, key=lambda s: scorer(s.logits["val"], s.targets["val"])).member.name
    assert naive == "lucky"  # selection on the 10 validation records alone would pick the worse model
    selection = choose(done, scorer, "multiclass", bags=5)
    assert selection.weights == {"good": 1.0} and "300 out-of-fold" in selection.how


def test_mixed_selection_never_below_best_single_on_validation() -> None:
    rng = np.random.default_rng(1)
    target = rng.integers(0, 2, 40)
    done = [_scored(f"m{i}", rng.random(40) < p, target, 40) for i, p in enumerate((0.6, 0.7, 0.8))]
    done[0].oof = None  # a neural candidate: held-out validation predictions only
    scorer = _task()
    selection = choose(done, scorer, "multiclass", bags=5)
    assert "40 validation records" in selection.how
    probs = sum(w * done[int(m[1])].logits["val"].softmax(1) for m, w in selection.weights.items())
    best = max(scorer(s.logits["val"], s.targets["val"]) for s in done)
    assert scorer(probs.log(), done[0].targets["val"]) >= best  # type: ignore[union-attr]


def test_collapsed_candidate_is_named(capsys: pytest.CaptureFixture[str]) -> None:
    target = np.array([0, 1] * 10)
    scorer = _task()
    done = [_scored("flat", target == 0, target, 20), _scored("fine", np.ones(20, bool), target, 20)]
    collapsed(done, scorer.task, FitOptions("y"))
    printed = capsys.readouterr().out
    assert "candidate flat predicts 'a' for every validation record" in printed and "fine" not in printed


def test_cross_fit_refits_the_out_of_fold_choice() -> None:
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    x = rng.normal(size=(120, 3))
    y = (x[:, 0] > 0).astype(int)
    scorer = _task()
    fit = cross_fit(lambda c: LogisticRegression(C=c), [1e-4, 1.0], x, y, 2,
                    lambda logits: scorer(logits, torch.from_numpy(y)))
    assert fit.setting == 1.0 and fit.oof.shape == (120, 2) and len(fit.model.coef_[0]) == 3


def test_regression_trees_candidate(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    size = rng.normal(size=90)
    frame = pd.DataFrame({"size": size, "noise": rng.normal(size=90), "price": 3 * size + rng.normal(0, .1, 90)})
    frame.loc[::7, "size"] = np.nan
    tables = {s: Table(p.reset_index(drop=True), tmp_path, s) for s, p in
              {"train": frame[:60], "val": frame[60:75], "test": frame[75:]}.items()}
    config = parse_config({"data": {"source": "t.csv"}, "target": {"field": "price", "task": "regression"},
                           "modalities": {"tabular": {"type": "tabular", "numeric": ["size", "noise"]}}})
    task = build_task(config.target)
    task.fit(task.values(tables["train"].frame))
    scorer = Scorer(task)
    scored = trees("tabular_trees", config, config.modalities["tabular"], tables, scorer,
                   [{"max_iter": 50, "max_leaf_nodes": 7}])
    assert scorer.metrics(scored.logits["test"], scored.targets["test"])["r2"] > 0.7
    assert scored.oof is not None and scored.oof.shape == (75, 1)


def test_fit_regression_target_end_to_end(tmp_path: Path) -> None:
    from polymodal.apps.fit import fit_table

    rng = np.random.default_rng(0)
    words = ["tiny", "small", "large", "huge"]
    level = rng.integers(0, 4, 80)
    frame = pd.DataFrame({"note": [f"a {words[v]} box {rng.choice(['x', 'y', 'z'])}" for v in level],
                          "width": rng.normal(size=80), "price": 10 * level + rng.normal(0, 1, 80)})
    predictor = fit_table(frame, target="price", preset="fast", time_limit=0.0, out=tmp_path / "fit")
    board = pd.read_csv(tmp_path / "fit" / "leaderboard.csv")
    assert {"val_rmse", "val_mae", "val_r2", "test_rmse"} <= set(board.columns)
    assert board["model"].tolist() == ["text_tfidf_ridge", "ensemble"]
    assert "alpha=" in board["detail"][0]
    predicted = np.asarray(predictor.predict(frame), dtype=float)
    assert np.corrcoef(predicted, frame["price"])[0, 1] > 0.9


@pytest.mark.parametrize("k", [2, 5])
def test_fast_selection_score_matches_torchmetrics(k: int) -> None:
    import torchmetrics.functional as tm

    task = build_task(TargetConfig(field="y", task="multiclass"))
    task.fit([str(i) for i in range(k)])
    generator = torch.Generator().manual_seed(k)
    logits = torch.randn(30, k, generator=generator)
    target = torch.randint(0, k - 1, (30,), generator=generator)  # the last class never occurs
    expected = (tm.accuracy(logits, target, task="multiclass", num_classes=k)
                + tm.f1_score(logits, target, task="multiclass", num_classes=k, average="macro")) / 2
    assert Scorer(task)(logits, target) == pytest.approx(float(expected), abs=1e-6)


def test_fit_multilabel_target_tunes_thresholds(tmp_path: Path) -> None:
    import json

    from polymodal.apps.fit import fit_table
    from polymodal.apps.infer import infer_task

    rng = np.random.default_rng(0)
    rows = []
    for i in range(90):
        tags = [t for t in ("red", "round") if rng.random() < 0.5] + (["rare"] if i in (3, 50) else [])
        words = " ".join(tags + list(rng.choice(["box", "thing", "item", "object"], 2)))
        rows.append({"note": words.replace("rare", "plain"), "tags": "|".join(tags)})
    frame = pd.DataFrame(rows)
    assert infer_task(frame["tags"]) == "multilabel"
    predictor = fit_table(frame, target="tags", preset="fast", time_limit=0.0, out=tmp_path / "fit")
    board = pd.read_csv(tmp_path / "fit" / "leaderboard.csv")
    assert {"val_micro_f1", "val_macro_f1", "test_micro_f1"} <= set(board.columns)
    assert board["test_micro_f1"].iloc[-1] > 0.8
    state = json.loads((tmp_path / "fit" / "best" / "processors.json").read_text())["task"]
    assert len(state["thresholds"]) == len(state["classes"])
    predicted = predictor.predict(frame.head(20))
    assert all(set(p.split("|")) - {""} <= {"red", "round", "rare"} for p in predicted)


def test_label_that_never_fires_is_warned(capsys: pytest.CaptureFixture[str]) -> None:
    from polymodal.apps.fit import tune_label_thresholds

    task = build_task(TargetConfig(field="y", task="multilabel"))
    task.fit(["a|b", "a", "b|c"])
    target = torch.tensor([[1.0, 0, 1], [0, 1, 1], [1, 1, 0]])
    logits = torch.tensor([[3.0, -3, -9], [-3, 3, -9], [3, 3, -9]])  # label c: probability 1e-4 everywhere
    scored = Scored(Member("m", None, {}, nn.Identity()), {"val": logits}, {"val": target}, 0.0)  # type: ignore
    tune_label_thresholds([scored], {"m": 1.0}, task, FitOptions("y"))  # type: ignore[arg-type]
    assert "1 label(s) never fire on validation at any threshold: c" in capsys.readouterr().out
    assert task.thresholds is not None and len(task.thresholds) == 3


def test_ensemble_that_wins_by_a_record_is_not_taken() -> None:
    target = torch.zeros(50, dtype=torch.long)  # every record is class 0
    p_a = torch.full((50,), 0.9)
    p_a[0] = 0.45  # a: right on 49 records, narrowly wrong on record 0
    p_b = torch.full((50,), 0.4)
    p_b[0] = 0.95  # b: confidently right on record 0 only; a + b: right on all 50
    done = []
    for name, p in (("a", p_a), ("b", p_b)):
        logits = torch.stack([p, 1 - p], dim=1).log()
        member = Member(name, None, {}, nn.Identity())  # type: ignore[arg-type]
        done.append(Scored(member, {"val": logits}, {"val": target}, 0.0))
    selection = choose(done, _task(), "multiclass", bags=5)
    # the mixture is right on one record more, which a bootstrap sample holds about 64% of the time
    assert selection.weights == {"a": 1.0} and "% of 200 bootstrap samples; 80% needed" in selection.how


def test_cross_fitted_candidates_are_mixed_on_their_out_of_fold_records_first() -> None:
    rng = np.random.default_rng(2)
    target = rng.integers(0, 2, 300)
    half = rng.random(300) < 0.5  # a is sure and right on one half of the records, unsure and wrong on the other
    t = torch.from_numpy(target)
    done = []
    for name, right in (("a", half), ("b", ~half)):  # b the other way round: their average is right everywhere
        p = torch.from_numpy(np.where(right, 0.9, 0.4))  # probability of the true class
        correct = torch.stack([p, 1 - p], dim=1).float().log()  # (N, 2) as if class 0 were true...
        logits = torch.where(t[:, None] == 0, correct, correct.flip(1))  # ...then laid out by the true class
        member = Member(name, None, {}, nn.Identity())  # type: ignore[arg-type]
        done.append(Scored(member, {"val": logits[-30:]}, {"val": t[-30:]}, 0.0, "", logits, t))
    neural = _scored("net", rng.random(300) < 0.7, target, 30)
    neural.oof = None  # held-out validation predictions only
    selection = choose([*done, neural], _task(), "multiclass", bags=5)
    assert set(selection.weights) >= {"a", "b"} and "cross-fitted candidates mixed" in selection.how
    assert "300 out-of-fold" in selection.how and "30 validation records" in selection.how


def test_out_of_fold_mixture_never_beats_a_better_single_candidate_on_validation() -> None:
    rng = np.random.default_rng(3)
    target = rng.integers(0, 2, 300)
    t = torch.from_numpy(target)
    half = rng.random(300) < 0.5
    right = {"a": np.where(half, 0.9, 0.4), "b": np.where(half, 0.4, 0.9)}  # complementary out of fold...
    right["a"][-30:], right["b"][-30:] = 0.55, 0.01  # ...but on validation a is right and b surely wrong
    done = []
    for name, p in right.items():
        correct = torch.stack([torch.from_numpy(p), 1 - torch.from_numpy(p)], dim=1).float().log()
        logits = torch.where(t[:, None] == 0, correct, correct.flip(1))
        member = Member(name, None, {}, nn.Identity())  # type: ignore[arg-type]
        done.append(Scored(member, {"val": logits[-30:]}, {"val": t[-30:]}, 0.0, "", logits, t))
    neural = _scored("net", rng.random(300) < 0.6, target, 30)
    neural.oof = None
    scorer = _task()
    selection = choose([*done, neural], scorer, "multiclass", bags=5)
    by_name = {s.member.name: s for s in [*done, neural]}
    mixed = sum(w * by_name[m].logits["val"].softmax(1) for m, w in selection.weights.items())
    assert scorer(mixed.log(), t[-30:]) >= scorer(by_name["a"].logits["val"], t[-30:])  # type: ignore[union-attr]
