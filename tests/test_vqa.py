"""Visual question answering: the `vqa` task and its accuracy, the VQA v2 JSON loader, the built-in VQA-Shapes."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from polymodal.config import TargetConfig, VqaConfig
from polymodal.data.formats.vqa import VqaError, read_vqa
from polymodal.datasets.vqa_shapes import candidate_questions, materialize_vqa_shapes, random_scene
from polymodal.factory import parse_config
from polymodal.tasks import VQA, build_task, normalize_answer, vqa_scores
from polymodal.training.fit import train

# ------------------------------------------------------------------------------------------------ metric


def test_vqa_scores_official_form_by_hand() -> None:
    ten = ["2"] * 3 + ["3"] * 2 + ["4"] + ["two"] * 0 + ["5"] * 4
    s = vqa_scores(ten)
    # "2": 3 annotators; leaving one of them out leaves 2 matches (2/3), leaving another out leaves 3 (1).
    assert s["2"] == pytest.approx((3 * 2 / 3 + 7 * 1.0) / 10)
    assert s["3"] == pytest.approx((2 * 1 / 3 + 8 * 2 / 3) / 10)
    assert s["4"] == pytest.approx((1 * 0 + 9 * 1 / 3) / 10)
    assert s["5"] == 1.0  # 4 annotators: at least 3 remain in every subset
    assert vqa_scores(["yes"]) == {"yes": 1.0}  # one answer: plain accuracy
    assert vqa_scores(["yes", "no"]) == {"yes": 0.5, "no": 0.5}


def test_normalize_answer() -> None:
    assert normalize_answer(" Two. ") == "2"
    assert normalize_answer("A red Ball") == "red ball"


def _task(classes: list[str]) -> VQA:
    task = build_task(TargetConfig(field="answers", task="vqa"))
    task.fit([[c] for c in classes])
    assert isinstance(task, VQA)
    return task


def test_vqa_task_targets_metrics_and_loss() -> None:
    task = _task(["yes", "no", "2"])
    target = torch.from_numpy(np.stack([task.encode(["yes"] * 10), task.encode(["no"] * 2 + ["yes"] * 8),
                                        task.encode("unseen|unseen|unseen")]))
    assert target[2].sum() == 0  # an answer outside the vocabulary cannot be scored
    i = {c: k for k, c in enumerate(task.classes)}
    logits = torch.full((3, 3), -5.0)
    logits[0, i["yes"]] = logits[1, i["no"]] = logits[2, i["2"]] = 5.0
    m = task.metrics(logits, target)
    no_score = vqa_scores(["no"] * 2 + ["yes"] * 8)["no"]
    assert m["vqa_accuracy"] == pytest.approx((1.0 + no_score + 0.0) / 3)
    assert m["accuracy"] == pytest.approx(1 / 3)  # only record 0 picks its best-scored answer
    assert task.predict(logits)[:2] == ["yes", "no"]
    good = task.loss(logits, target)
    assert torch.isfinite(good) and good < task.loss(-logits, target)  # unanswerable record ignored, no NaN
    with pytest.raises(Exception, match="no answer"):
        task.encode([])


# ------------------------------------------------------------------------------------------------ loader


def write_vqa(root: Path, n_images: int = 6, questions_per_image: int = 4) -> Path:
    """A VQA v2-style questions + annotations pair with COCO-named images: answer = the image's colour."""
    (root / "images").mkdir(parents=True, exist_ok=True)
    colors = {"red": (255, 0, 0), "blue": (0, 0, 255)}
    questions, annotations = [], []
    for img in range(n_images):
        color = list(colors)[img % 2]
        Image.new("RGB", (16, 16), colors[color]).save(root / "images" / f"COCO_train2014_{img + 1:012d}.jpg")
        for k in range(questions_per_image):
            qid = (img + 1) * 1000 + k
            questions.append({"image_id": img + 1, "question": ["what color is it?", "which colour?"][k % 2],
                              "question_id": qid})
            answers = [color] * 8 + ["purple", color.upper()]
            annotations.append({"question_id": qid, "image_id": img + 1, "question_type": "what color",
                                "answer_type": "other", "multiple_choice_answer": color,
                                "answers": [{"answer": a, "answer_confidence": "yes", "answer_id": j + 1}
                                            for j, a in enumerate(answers)]})
    (root / "questions.json").write_text(json.dumps({"data_subtype": "train2014", "questions": questions}))
    (root / "annotations.json").write_text(json.dumps({"annotations": annotations}))
    return root / "questions.json"


def test_read_vqa(tmp_path: Path) -> None:
    path = write_vqa(tmp_path)
    frame = read_vqa(path, VqaConfig(annotations="annotations.json", images="images"))
    assert len(frame) == 24 and list(frame.columns[:4]) == ["question_id", "image_id", "image", "question"]
    first = frame.iloc[0]
    assert first["image"] == "images/COCO_train2014_000000000001.jpg" and len(first["answers"]) == 10
    assert first["answer"] == "red"


def _edit(path: Path, change: Any) -> None:
    doc = json.loads(path.read_text())
    change(doc)
    path.write_text(json.dumps(doc))


@pytest.mark.parametrize("file,change,match", [
    ("questions.json", lambda d: d["questions"][0].pop("image_id"), r"questions\[0\] has no 'image_id'"),
    ("questions.json", lambda d: d.pop("questions"), "no 'questions' list"),
    ("annotations.json", lambda d: d["annotations"][0].pop("answers"), r"annotations\[0\] has no 'answers'"),
    ("annotations.json", lambda d: d["annotations"][0].update(question_id=99), "question_id 99 is not in the "
                                                                                "questions file"),
    ("annotations.json", lambda d: d["annotations"][1].update(image_id=77), "image_id 77 here"),
    ("annotations.json", lambda d: d["annotations"].pop(), "question_id 6003 .* has no annotation"),
])
def test_malformed_vqa_files_name_the_problem(tmp_path: Path, file: str, change: Any, match: str) -> None:
    path = write_vqa(tmp_path)
    _edit(tmp_path / file, change)
    with pytest.raises(VqaError, match=match):
        read_vqa(path, VqaConfig(annotations="annotations.json", images="images"))


def test_dangling_image_ids_and_missing_files(tmp_path: Path) -> None:
    path = write_vqa(tmp_path)
    (tmp_path / "map.json").write_text(json.dumps({str(i): f"COCO_train2014_{i:012d}.jpg" for i in range(1, 6)}))
    with pytest.raises(VqaError, match="image_id 6 .* not in the image map"):
        read_vqa(path, VqaConfig(images="images", image_map="map.json"))
    (tmp_path / "images" / "COCO_train2014_000000000002.jpg").unlink()
    with pytest.raises(FileNotFoundError, match="image_id 2: file .*000000000002.jpg"):
        read_vqa(path, VqaConfig(images="images"))
    assert len(read_vqa(path, VqaConfig(images="images", check_files=False))) == 24


def test_vqa_format_trains_from_config(tmp_path: Path) -> None:
    path = write_vqa(tmp_path, n_images=12)
    config = parse_config({
        "data": {"source": str(path), "format": "vqa", "vqa": {"annotations": "annotations.json", "images": "images"},
                 "split": {"ratios": [0.6, 0.2, 0.2]}},
        "modalities": {"image": {"type": "image", "size": 8, "augment": False,
                                 "encoder": {"name": "image_cnn", "width": 4, "blocks": 1, "out_dim": 8}},
                       "question": {"type": "text", "vocab_size": 32, "encoder": {"name": "text_gru", "out_dim": 8}}},
        "target": {"field": "answers", "task": "vqa"},
        "training": {"epochs": 1, "batch_size": 16, "progress_bar": False},
        "output_dir": str(tmp_path / "run"),
    })
    result = train(config)
    assert set(result.metrics["test"]) == {"vqa_accuracy", "accuracy"}
    assert 0.0 <= result.metrics["test"]["vqa_accuracy"] <= 1.0


def test_vqa_config_options_are_checked() -> None:
    with pytest.raises(ValueError, match="data.vqa: only for data.format: vqa"):
        parse_config({"data": {"source": "q.json", "vqa": {}}, "modalities": {"q": {"type": "text"}},
                      "target": {"field": "answers", "task": "vqa"}})


# ------------------------------------------------------------------------------------------------ built-in


def test_scene_questions_are_answerable() -> None:
    rng = np.random.default_rng(1)
    for _ in range(20):
        scene = random_scene(rng)
        for kind, question, answer in candidate_questions(scene):
            if kind == "count" and "objects" in question:
                color = question.split()[2]
                assert int(answer) == sum(t.color == color for t in scene)


SMALL = (240, 40, 40)


@pytest.fixture(scope="module")
def shapes(tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    root = materialize_vqa_shapes(tmp_path_factory.mktemp("vqa") / "shapes", scenes=SMALL)
    return pd.read_csv(root / "records.csv").assign(root=str(root))


def test_vqa_shapes_balanced_and_disjoint(shapes: pd.DataFrame) -> None:
    assert set(shapes["split"]) == {"train", "val", "test"}
    per_split_images = shapes.groupby("split")["image_id"].apply(set)
    assert not (per_split_images["train"] & per_split_images["test"])
    # every image has several questions, with pairwise different answers
    assert (shapes.groupby("image_id")["answer"].agg(lambda a: len(a) == len(set(a)) and len(a) >= 3)).all()
    train = shapes[shapes["split"] == "train"]
    for kind, group in train.groupby("question_type"):
        counts = Counter(group["answer"].astype(str))
        assert max(counts.values()) / min(counts.values()) <= 1.1, (kind, counts)  # uniform given the type
    # the question text alone: its majority answer is right about a third of the time
    majority = train.groupby("question")["answer"].agg(lambda a: a.value_counts().iloc[0]).sum() / len(train)
    assert majority < 0.4
    assert Image.open(Path(shapes["root"].iloc[0]) / shapes["image"].iloc[0]).size == (64, 64)


def test_vqa_shapes_deterministic(shapes: pd.DataFrame, tmp_path: Path) -> None:
    again = pd.read_csv(materialize_vqa_shapes(tmp_path / "again", scenes=SMALL) / "records.csv")
    assert again.equals(shapes.drop(columns="root"))


def test_vqa_vocabulary_min_count() -> None:
    task = build_task(TargetConfig(field="answers", task="vqa", min_count=2))
    task.fit([["yes"], ["yes", "no"], ["no"], ["maybe"]])
    assert task.classes == ["no", "yes"]  # "maybe" answers one question only
    assert task.encode(["maybe"]).sum() == 0
