"""Per-call cost of polymodal.metrics against the torchmetrics.functional calls the tasks made before.

Both sides are imported first (import time is `benchmarks/import_time.py`'s subject); then each round times
every pair once, interleaved (ours, torchmetrics, ours, ...), on the same random inputs. Printed: median seconds
per call of each side, their ratio, and the load average before and after.

    OMP_NUM_THREADS=1 python benchmarks/metric_functions.py [--records 2000] [--rounds 7]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
import warnings
from collections.abc import Callable

import torch
import torchmetrics.functional as tm

from polymodal import metrics as pm


def cases(n: int) -> dict[str, tuple[Callable[[], object], Callable[[], object]]]:
    """Name -> (ours, torchmetrics) on one set of inputs: the calls of the multiclass, binary, multilabel and
    regression tasks."""
    g = torch.Generator().manual_seed(0)
    logits, y = torch.randn(n, 10, generator=g), torch.randint(0, 10, (n,), generator=g)
    proba, decided = logits.softmax(1), logits.argmax(1)
    p, yb = torch.rand(n, generator=g), torch.randint(0, 2, (n,), generator=g)
    pl, yl = torch.rand(n, 20, generator=g), (torch.rand(n, 20, generator=g) < 0.3).long()
    pred, true = torch.randn(n, 2, generator=g), torch.randn(n, 2, generator=g)
    return {
        "multiclass accuracy + macro-F1 + AUROC (10 classes)": (
            lambda: (pm.accuracy(decided, y), pm.f1_score(decided, y, 10), pm.multiclass_auroc(proba, y)),
            lambda: (tm.accuracy(logits, y, task="multiclass", num_classes=10),
                     tm.f1_score(logits, y, task="multiclass", num_classes=10, average="macro"),
                     tm.auroc(proba, y, task="multiclass", num_classes=10))),
        "binary accuracy + macro-F1 + AUROC": (
            lambda: (pm.accuracy((p > 0.5).long(), yb), pm.f1_score((p > 0.5).long(), yb, 2), pm.auroc(p, yb.bool())),
            lambda: (tm.accuracy(p, yb, task="binary"),
                     tm.f1_score(torch.stack([1 - p, p], 1), yb, task="multiclass", num_classes=2, average="macro"),
                     tm.auroc(p, yb, task="binary"))),
        "multilabel micro/macro-F1 + AP (20 labels)": (
            lambda: (pm.multilabel_f1(pl > 0.5, yl.bool()), pm.multilabel_f1(pl > 0.5, yl.bool(), "macro"),
                     pm.average_precision(pl, yl.bool())),
            lambda: (tm.f1_score(pl, yl, task="multilabel", num_labels=20, average="micro"),
                     tm.f1_score(pl, yl, task="multilabel", num_labels=20, average="macro"),
                     tm.average_precision(pl, yl, task="multilabel", num_labels=20, average=None))),
        "regression MAE + MSE + R2 + Pearson (2 outputs)": (
            lambda: (pm.mean_absolute_error(pred, true), pm.mean_squared_error(pred, true), pm.r2_score(pred, true),
                     pm.pearson(pred, true)),
            lambda: (tm.mean_absolute_error(pred, true), tm.mean_squared_error(pred, true), tm.r2_score(pred, true),
                     tm.pearson_corrcoef(pred, true))),
    }


def seconds(fn: Callable[[], object], calls: int = 20) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - start) / calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    load_before = os.getloadavg()
    warnings.simplefilter("ignore")
    table = cases(args.records)
    times: dict[tuple[str, str], list[float]] = {}
    for name, (ours, theirs) in table.items():  # warm-up: first calls allocate and compile dispatch paths
        ours(), theirs()
    for _ in range(args.rounds):
        for name, (ours, theirs) in table.items():
            times.setdefault((name, "ours"), []).append(seconds(ours))
            times.setdefault((name, "torchmetrics"), []).append(seconds(theirs))
    print(f"records {args.records}, rounds {args.rounds}, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}, "
          f"torch threads {torch.get_num_threads()}; load average before {load_before}, after {os.getloadavg()}")
    print("| calls | polymodal.metrics ms | torchmetrics ms | ratio |\n|---|---|---|---|")
    for name in table:
        ours, theirs = (statistics.median(times[(name, side)]) * 1e3 for side in ("ours", "torchmetrics"))
        print(f"| {name} | {ours:.3f} | {theirs:.3f} | {ours / theirs:.2f}x |")


if __name__ == "__main__":
    main()
