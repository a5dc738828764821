"""Load a run directory and predict, give probabilities, embed, retrieve, or evaluate on new records."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from polymodal.data.dataset import MultimodalDataset, decode, raise_on_fatal
from polymodal.data.sources import Table, read_table, table_root
from polymodal.evaluation.inference import (
    empty_embeddings,
    empty_outputs,
    frozen_features,
    predict_embeddings,
    predict_outputs,
)
from polymodal.output import Output
from polymodal.rundir import Run, load_run

Records = pd.DataFrame | str | Path | Sequence[dict[str, Any]]


class Predictor:
    """Predictions from a trained run.

    Records come as a DataFrame, a list of dicts, or a path to a table (csv/parquet/jsonl); relative file paths
    in them are resolved against `root` (default: the table's folder, or the working directory).
    """

    def __init__(self, run: Run, batch_size: int = 256) -> None:
        self.run = run
        self.batch_size = batch_size

    @classmethod
    def load(cls, run_dir: str | Path) -> Predictor:
        return cls(load_run(run_dir))

    @property
    def classes(self) -> list[str]:
        return list(getattr(self.run.task, "classes", []))

    def _table(self, records: Records, root: str | Path | None) -> Table:
        if isinstance(records, (str, Path)):
            path = Path(records)
            return Table(read_table(path), Path(root) if root else table_root(path), path.name)
        frame = records if isinstance(records, pd.DataFrame) else pd.DataFrame(list(records))
        return Table(frame.reset_index(drop=True), Path(root) if root else Path.cwd(), "input")

    def _dataset(self, records: Records, root: str | Path | None, with_target: bool) -> MultimodalDataset:
        table = self._table(records, root)
        decoded = decode(table, self.run.processors, self.run.task if with_target else None, keep_all=not with_target)
        raise_on_fatal(decoded)
        return MultimodalDataset(decoded, {m: p.ragged for m, p in self.run.processors.items()})

    def outputs(self, records: Records, root: str | Path | None = None,
                drop: frozenset[str] = frozenset()) -> Output:
        """Raw model outputs (logits, fused embedding, per-modality features) for every record (0 rows: 0 rows)."""
        return self._outputs(self._dataset(records, root, with_target=False), drop)

    def _outputs(self, dataset: MultimodalDataset, drop: frozenset[str] = frozenset()) -> Output:
        if len(dataset) == 0:
            return empty_outputs(self.run.model, self.run.processors)
        out, _ = predict_outputs(self.run.model, self.run.processors, dataset, self.batch_size, drop)
        return out

    def predict_frame(self, records: Records, root: str | Path | None = None,
                      with_reliability: bool = False) -> pd.DataFrame:
        """One row per record: `prediction`, `p_<class>` for classification, and `no_input` (True where every
        modality of the record is empty: its prediction rests on no data, only on what the model learned); with
        `with_reliability`, the per-modality reliability columns of `predict`."""
        dataset = self._dataset(records, root, with_target=False)
        out = self._outputs(dataset)
        task = self.run.task
        frame = pd.DataFrame({"prediction": np.asarray(task.predict(task.scores(out)), dtype=object)})
        proba = task.proba(out.logits)
        if proba:
            frame = pd.concat([frame, pd.DataFrame(proba).add_prefix("p_")], axis=1)
        present = np.stack(list(dataset.present.values())) if dataset.present else np.zeros((0, len(dataset)))
        frame["no_input"] = ~present.any(axis=0)
        if with_reliability:
            extra = self._reliability(frame["prediction"].to_numpy(), out, dataset.present)
            frame = pd.concat([frame, extra.drop(columns="prediction")], axis=1)
        return frame

    def predict(self, records: Records, root: str | Path | None = None,
                with_reliability: bool = False) -> np.ndarray | pd.DataFrame:
        """One prediction per record, in the data's label space (class names or values).

        With `with_reliability`, a DataFrame: `prediction` plus, per modality m, `reliability_m` (1 = as typical
        as the validation data, 0 = further out than all of it), `ood_m`, `distance_m` and, for fusions with
        their own uncertainty, `uncertainty_m` (see `evaluation.reliability`).
        """
        dataset = self._dataset(records, root, with_target=False)
        out = self._outputs(dataset)
        predictions = np.asarray(self.run.task.predict(self.run.task.scores(out)), dtype=object)
        return self._reliability(predictions, out, dataset.present) if with_reliability else predictions

    def _reliability(self, predictions: np.ndarray, out: Output, present: Any) -> pd.DataFrame:
        from polymodal.evaluation.reliability import with_reliability as reliability_frame

        return reliability_frame(self.run.path, predictions, out, present)

    @property
    def has_reliability(self) -> bool:
        from polymodal.evaluation.reliability import RELIABILITY

        return (self.run.path / RELIABILITY).is_file()

    def predict_proba(self, records: Records, root: str | Path | None = None) -> pd.DataFrame:
        """Class probabilities, one column per class (classification tasks only)."""
        proba = self.run.task.proba(self.outputs(records, root).logits)
        if not proba:
            raise ValueError(f"predict_proba needs a classification run; this one is {self.run.config.target.task}")
        return pd.DataFrame(proba)

    def embed(self, records: Records, root: str | Path | None = None, modality: str | None = None) -> np.ndarray:
        """The fused representation (N, D_fused) of every record, or with `modality`, that modality's (N, E)
        L2-normalised embedding in the shared space of the run's contrastive objective (NaN rows where the
        record lacks it). With `modality`, the records need only that modality's column(s).
        """
        if modality is None:
            return self.outputs(records, root).fused.cpu().numpy()
        return self._modality_embeddings(records, root, modality).cpu().numpy()

    def _modality_embeddings(self, records: Records, root: str | Path | None, modality: str) -> torch.Tensor:
        if modality not in self.run.processors:
            raise KeyError(f"unknown modality {modality!r}; this run has {', '.join(self.run.processors)}")
        if self.run.model.contrastive is None:
            raise ValueError("embed(modality=...) needs a run with a contrastive objective (task retrieval, or "
                             "`objectives: [{name: contrastive}]`); this run has none")
        processors = {modality: self.run.processors[modality]}
        decoded = decode(self._table(records, root), processors, None, keep_all=True)
        raise_on_fatal(decoded)
        dataset = MultimodalDataset(decoded, {modality: processors[modality].ragged})
        if len(dataset) == 0:
            return empty_embeddings(self.run.model, processors, modality)
        return predict_embeddings(self.run.model, processors, dataset, modality, self.batch_size)

    def retrieve(self, queries: Records, candidates: Records, query_modality: str, candidate_modality: str,
                 k: int = 5, root: str | Path | None = None) -> pd.DataFrame:
        """The top-k candidates (by cosine similarity in the shared space) for each query.

        Returns one row per (query, rank): `query` and `candidate` are row positions in the two inputs, `rank`
        counts from 1, `score` is the cosine similarity. Candidates lacking `candidate_modality` are never
        returned; queries lacking `query_modality` get no rows.
        """
        q = self._modality_embeddings(queries, root, query_modality).cpu()  # (Q, E)
        c = self._modality_embeddings(candidates, root, candidate_modality).cpu()  # (C, E)
        q_ok, c_ok = ~q.isnan().any(dim=1), ~c.isnan().any(dim=1)
        scores, top = (q[q_ok] @ c[c_ok].T).topk(min(k, int(c_ok.sum())), dim=1)  # (Q', k)
        q_rows, c_rows = q_ok.nonzero()[:, 0], c_ok.nonzero()[:, 0]
        n = top.shape[1]
        return pd.DataFrame({
            "query": q_rows.repeat_interleave(n).numpy(),
            "rank": np.tile(np.arange(1, n + 1), len(q_rows)),
            "candidate": c_rows[top].reshape(-1).numpy(),
            "score": scores.reshape(-1).numpy(),
        })

    def explain(self, records: Records, root: str | Path | None = None) -> pd.DataFrame:
        """Per record: the prediction and each modality's Shapley contribution to the model's confidence in it
        (columns prediction, value_full, value_empty, shapley_<modality>; they add up to full - empty)."""
        from polymodal.evaluation.contribution import explain_records

        return explain_records(self.run, self._dataset(records, root, with_target=False))

    def evaluate(self, records: Records, root: str | Path | None = None) -> dict[str, float]:
        """Metrics on labelled records (for retrieval, on records with paired modalities). Frozen encoders' outputs
        come from the feature cache (see `evaluation.inference.frozen_features`)."""
        dataset = self._dataset(records, root, with_target=True)
        if len(dataset) == 0:
            raise ValueError("no labelled records to evaluate (the data has no rows, or none with a label)")
        dataset = frozen_features(self.run.config, self.run.model, self.run.processors, dataset)
        out, target = predict_outputs(self.run.model, self.run.processors, dataset, self.batch_size)
        return self.run.task.metrics(self.run.task.scores(out), target, out.embeddings)  # type: ignore[arg-type]
