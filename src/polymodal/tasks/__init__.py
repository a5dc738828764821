"""Tasks, one per file, registered by name; importing this package fills `TASKS`."""

from __future__ import annotations

# Registration order (and so TASKS.names()) follows this import order; keep it, not alphabetical.
from polymodal.tasks import (  # noqa: F401  (registration)  # isort: skip
    multiclass,
    binary,
    multilabel,
    regression,
    sentiment,
    retrieval,
    vqa,
    generation,
)
from polymodal.tasks.base import TASKS, SingleLabel, Task, build_task
from polymodal.tasks.binary import Binary
from polymodal.tasks.generation import Generation
from polymodal.tasks.multiclass import Multiclass
from polymodal.tasks.multilabel import Multilabel, mean_average_precision, precision_at_k
from polymodal.tasks.regression import Regression
from polymodal.tasks.retrieval import Retrieval, retrieval_metrics, retrieval_ranks
from polymodal.tasks.sentiment import Sentiment, sentiment_metrics
from polymodal.tasks.vqa import VQA, normalize_answer, vqa_scores

__all__ = ["TASKS", "VQA", "Binary", "Generation", "Multiclass", "Multilabel", "Regression", "Retrieval", "Sentiment",
           "SingleLabel", "Task", "build_task", "mean_average_precision", "normalize_answer", "precision_at_k",
           "retrieval_metrics", "retrieval_ranks", "sentiment_metrics", "vqa_scores"]
