"""VQA v2 questions + annotations JSON as a table: one row per question.

The questions file (`v2_OpenEnded_mscoco_train2014_questions.json`) and the annotations file
(`v2_mscoco_train2014_annotations.json`) have the layout

    {"data_subtype": "train2014",
     "questions": [{"image_id": 458752, "question": "What is this photo taken looking through?",
                    "question_id": 458752000}, ...]}
    {"annotations": [{"question_id": 458752000, "image_id": 458752, "question_type": "what is this",
                      "answer_type": "other", "multiple_choice_answer": "net",
                      "answers": [{"answer": "net", "answer_confidence": "maybe", "answer_id": 1}, ...]}, ...]}

`read_vqa` gives the columns `question_id`, `image_id`, `image` (the file, relative to the questions file's
folder: `images/` + `file_pattern` filled with the image id and the file's `data_subtype`, or looked up in
`image_map`), `question`, `answers` (every annotator's answer, a list: the soft target of task `vqa`),
`answer` (`multiple_choice_answer`), `answer_type`, `question_type`. Without an annotations file (test
questions) the answer columns are empty. From a config:

    data: {train: v2_OpenEnded_mscoco_train2014_questions.json, val: v2_OpenEnded_mscoco_val2014_questions.json,
           format: vqa, vqa: {annotations: "v2_mscoco_{split}2014_annotations.json", images: "{split}2014"}}
    modalities: {image: {type: image}, question: {type: text}}
    target: {field: answers, task: vqa}

(`{split}` in `annotations` and `images` becomes the split's name in the file names: train / val / test
as given by the config's keys.) Malformed files stop with a `VqaError` naming the file, the key or the id.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from polymodal.config import DataConfig, VqaConfig
from polymodal.data.formats.base import FORMATS, read_json, split_tables
from polymodal.data.paths import is_inside
from polymodal.data.splits import Table

COLUMNS = ["question_id", "image_id", "image", "question", "answers", "answer", "answer_type", "question_type"]


class VqaError(ValueError):
    """A VQA file that cannot be read as a table; the message names the file, the key or id, and the fix."""


def read_vqa(path: str | Path, options: VqaConfig | None = None, split: str = "train") -> pd.DataFrame:
    """One row per question of the questions JSON at `path` (see the module docstring for the columns)."""
    path, options = Path(path), options or VqaConfig()
    doc = _load(path, "questions")
    questions = _questions(doc, path)
    answers: dict[Any, dict[str, Any]] = {}
    if options.annotations is not None:
        ann_path = path.parent / options.annotations.replace("{split}", split)
        answers = _annotations(_load(ann_path, "annotations"), ann_path, questions)
        unanswered = [q for q in questions if q not in answers]
        if unanswered:
            raise VqaError(f"{ann_path}: question_id {unanswered[0]} of {path} has no annotation "
                           f"({len(unanswered)} in all); use the annotations of the same split")
    images = _image_files(questions, doc, path, options, split)
    frame = pd.DataFrame([_row(qid, q, images[q["image_id"]], answers.get(qid)) for qid, q in questions.items()],
                         columns=COLUMNS)
    if options.check_files:
        _check_files(frame, path)
    return frame


def _load(path: Path, key: str) -> dict[str, Any]:
    doc = read_json(path, f"VQA {key}", VqaError)
    if not isinstance(doc, dict) or not isinstance(doc.get(key), list):
        raise VqaError(f"{path}: no {key!r} list at the top level; a VQA {key} file is {{{key!r}: [...]}}")
    return doc


def _require(entry: Any, keys: tuple[str, ...], where: str) -> None:
    missing = [k for k in keys if not isinstance(entry, dict) or k not in entry]
    if missing:
        raise VqaError(f"{where} has no {', '.join(map(repr, missing))}; every entry needs {', '.join(keys)}")


def _questions(doc: dict[str, Any], path: Path) -> dict[Any, dict[str, Any]]:
    out: dict[Any, dict[str, Any]] = {}
    for i, q in enumerate(doc["questions"]):
        _require(q, ("question_id", "image_id", "question"), f"{path}: questions[{i}]")
        if q["question_id"] in out:
            raise VqaError(f"{path}: questions[{i}]: question_id {q['question_id']} occurs twice")
        out[q["question_id"]] = q
    return out


def _annotations(doc: dict[str, Any], path: Path, questions: dict[Any, dict[str, Any]]) -> dict[Any, dict[str, Any]]:
    out: dict[Any, dict[str, Any]] = {}
    for i, ann in enumerate(doc["annotations"]):
        where = f"{path}: annotations[{i}]"
        _require(ann, ("question_id", "image_id", "answers"), where)
        qid = ann["question_id"]
        if qid not in questions:
            raise VqaError(f"{where}: question_id {qid} is not in the questions file; use the files of one split")
        if ann["image_id"] != questions[qid]["image_id"]:
            raise VqaError(f"{where}: question_id {qid} has image_id {ann['image_id']} here but "
                           f"{questions[qid]['image_id']} in the questions file")
        if not isinstance(ann["answers"], list) or not ann["answers"]:
            raise VqaError(f"{where}: question_id {qid}: 'answers' must be a non-empty list")
        for j, a in enumerate(ann["answers"]):
            _require(a, ("answer",), f"{where}.answers[{j}]")
        out[qid] = ann
    return out


def _image_files(questions: dict[Any, dict[str, Any]], doc: dict[str, Any], path: Path, options: VqaConfig,
                 split: str) -> dict[Any, str]:
    """The file of each image id, relative to the questions file's folder."""
    folder = Path(options.images.replace("{split}", split))
    ids = list(dict.fromkeys(q["image_id"] for q in questions.values()))
    if options.image_map is not None:
        mapping = _image_map(path.parent / options.image_map)
        dangling = [i for i in ids if str(i) not in mapping]
        if dangling:
            raise VqaError(f"{options.image_map}: image_id {dangling[0]} (of a question in {path}) is not in the "
                           f"image map ({len(dangling)} in all); add its file")
        return {i: str(folder / mapping[str(i)]) for i in ids}
    subset = str(doc.get("data_subtype", split))
    try:
        return {i: str(folder / options.file_pattern.format(image_id=int(i), subset=subset)) for i in ids}
    except (KeyError, ValueError) as err:
        raise VqaError(f"data.vqa.file_pattern {options.file_pattern!r}: cannot fill it ({err}); use the fields "
                       "{image_id} and {subset}") from None


def _image_map(path: Path) -> dict[str, str]:
    if not path.is_file():
        raise FileNotFoundError(f"VQA image map {str(path)!r} does not exist")
    if path.suffix.lower() == ".json":
        return {str(k): str(v) for k, v in json.loads(path.read_text()).items()}
    frame = pd.read_csv(path, dtype=str)
    if not {"image_id", "file"} <= set(frame.columns):
        raise VqaError(f"{path}: an image map CSV needs the columns image_id and file; found {list(frame.columns)}")
    return dict(zip(frame["image_id"].str.strip(), frame["file"]))


def _row(qid: Any, q: dict[str, Any], image: str, ann: dict[str, Any] | None) -> dict[str, Any]:
    ann = ann or {}
    answers = [str(a["answer"]) for a in ann.get("answers", [])]
    return {"question_id": qid, "image_id": q["image_id"], "image": image, "question": str(q["question"]),
            "answers": answers or None, "answer": ann.get("multiple_choice_answer"),
            "answer_type": ann.get("answer_type"), "question_type": ann.get("question_type")}


def _check_files(frame: pd.DataFrame, path: Path) -> None:
    for image_id, name in frame[["image_id", "image"]].drop_duplicates().itertuples(index=False):
        file = path.parent / name
        if is_inside(file, path.parent) and not file.is_file():  # outside the folder: refused when decoded, unopened
            raise FileNotFoundError(f"{path}: image_id {image_id}: file {str(path.parent / name)!r} does not exist; "
                                    "set data.vqa.images / file_pattern / image_map to where the images are, or "
                                    "check_files: false to treat unreadable images by the modality's on_error")


@FORMATS.register("vqa")
def load_vqa_splits(data: DataConfig, label_field: str | None) -> dict[str, Table]:
    """The split tables of a `format: vqa` config: one questions file per split, or one split by `data.split`."""
    return split_tables(data, label_field, lambda path, split: read_vqa(path, data.vqa, split or "train"))
