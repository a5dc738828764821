"""Image annotation on the built-in emoji data: the two recipes against simple baselines, on the test split.

    OMP_NUM_THREADS=1 python benchmarks/annotation.py [--out benchmarks/results/annotation.md]

Trains `configs/annotation.yaml` (multilabel tagging, image -> CLDR keywords) and
`configs/annotation_retrieval.yaml` (image <-> English name) exactly as `polymodal train` does, then compares
their test metrics with baselines that never look at the image:
- tagging, "most frequent tags": every image gets the training frequency of each tag as its score, and the m
  most frequent tags (m = the mean number of vocabulary tags per training image, rounded) as its prediction;
- retrieval, "random": a random ranking, whose expected recall@k is k / N and median rank (N + 1) / 2.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from polymodal.data.sources import load_splits
from polymodal.factory import load_config
from polymodal.tasks import build_task
from polymodal.training.fit import train

ROOT = Path(__file__).resolve().parents[1]
TAGGING_KEYS = ("micro_f1", "macro_f1", "map", "precision_at_1", "precision_at_5")


def frequent_tags_baseline(config_path: Path) -> dict[str, float]:
    config = load_config(config_path)
    tables = load_splits(config.data, None)
    task = build_task(config.target)
    task.fit(task.values(tables["train"].frame))
    train_t = torch.tensor(np.stack([task.encode(v) for v in task.values(tables["train"].frame)]))  # (N, K)
    test_t = torch.tensor(np.stack([task.encode(v) for v in task.values(tables["test"].frame)]))  # (M, K)
    prevalence = train_t.mean(dim=0).clamp(1e-4, 1 - 1e-4)  # (K,)
    m = max(1, round(float(train_t.sum(dim=1).mean())))
    cut = prevalence.sort(descending=True).values[m - 1: m + 1].mean()  # between the m-th and (m+1)-th
    logits = (prevalence.logit() - cut.logit()).expand(len(test_t), -1)  # (M, K): only the top m are > 0
    return task.metrics(logits, test_t) | {"tags_predicted_per_image": float(m), "vocabulary": float(task.num_outputs)}


def random_retrieval(n: int) -> dict[str, float]:
    out = {f"{d}_r{k}": min(k, n) / n for d in ("image_to_name", "name_to_image") for k in (1, 5, 10)}
    return out | {"mean_recall": float(np.mean(list(out.values()))), "median_rank": (n + 1) / 2}


def run(config_path: Path, out_dir: Path) -> tuple[dict[str, float], float, int]:
    config = load_config(config_path)
    config = config.model_copy(update={"output_dir": str(out_dir / config.name)})
    config.training.progress_bar = False
    start = time.perf_counter()
    result = train(config)
    return result.metrics["test"], time.perf_counter() - start, result.epochs


def table(rows: dict[str, dict[str, float]], keys: list[str]) -> str:
    lines = ["| model | " + " | ".join(keys) + " |", "|---" * (len(keys) + 1) + "|"]
    for name, m in rows.items():
        lines.append(f"| {name} | " + " | ".join(f"{m[k]:.4f}" if k in m else "" for k in keys) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/annotation.md")
    parser.add_argument("--runs", type=Path, default=ROOT / "runs/benchmark_annotation")
    args = parser.parse_args()
    tagging_cfg, retrieval_cfg = ROOT / "configs/annotation.yaml", ROOT / "configs/annotation_retrieval.yaml"
    tag_metrics, tag_s, tag_epochs = run(tagging_cfg, args.runs)
    base = frequent_tags_baseline(tagging_cfg)
    ret_metrics, ret_s, ret_epochs = run(retrieval_cfg, args.runs)
    n_test = len(load_splits(load_config(retrieval_cfg).data, None)["test"])
    rand = random_retrieval(n_test)
    ret_keys = [f"{d}_r{k}" for d in ("image_to_name", "name_to_image") for k in (1, 5, 10)]
    ret_rows = {"annotation_retrieval": ret_metrics | {
        "median_rank": (ret_metrics["image_to_name_median_rank"] + ret_metrics["name_to_image_median_rank"]) / 2},
        "random ranking (expected)": rand}
    text = "\n\n".join([
        "# Image annotation on the built-in emoji data (test split)",
        "Command (repository root, 2-core CPU machine shared with other jobs, one torch thread):\n\n"
        "    OMP_NUM_THREADS=1 python benchmarks/annotation.py",
        f"Tagging: `configs/annotation.yaml`, {tag_epochs} epochs in {tag_s:.0f} s wall (including data "
        f"loading), vocabulary of {int(base['vocabulary'])} keywords (target.min_count 10); the baseline gives every "
        f"image the training frequency of each tag and predicts the {int(base['tags_predicted_per_image'])} most "
        "frequent ones.",
        table({"annotation (image_cnn)": tag_metrics, "most frequent tags": base}, list(TAGGING_KEYS)),
        f"Retrieval: `configs/annotation_retrieval.yaml`, {ret_epochs} epochs in {ret_s:.0f} s wall; {n_test} "
        "test pairs (image, English name), each query ranks all of them. median_rank: mean of both directions.",
        table(ret_rows, ret_keys + ["mean_recall", "median_rank"]),
    ]) + "\n"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
