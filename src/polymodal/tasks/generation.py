"""Task generation: a text target (captioning, translation) decoded token by token by a `SequenceHead`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import torch.nn.functional as F
from torch import Tensor

from polymodal.config import TargetConfig
from polymodal.generation.decoders import build_sequence_head
from polymodal.heads import Head
from polymodal.generation.tokens import PAD_ID
from polymodal.tasks.base import TASKS, Task

if TYPE_CHECKING:
    from polymodal.output import Output


@TASKS.register("generation")
class Generation(Task):
    """The target column's text, as ids of its own byte-level BPE vocabulary (fitted on the training split).

    The loss is token cross-entropy under teacher forcing; predictions and metrics read the generated ids
    (`Output.sequences`, see `scores`). Metrics: `bleu`, `chrf` (0..100), `cider` (CIDEr-D) and `exact`, against
    the reference decoded from the encoded target (the text itself unless it was cut at `max_length`).
    Selection is on `chrf`.
    """

    name = "generation"
    monitor = "chrf"
    scalar_predictions = False

    def __init__(self, target: TargetConfig) -> None:
        super().__init__(target)
        options = target.generation_options
        from polymodal.generation.vocabulary import TargetVocabulary  # tokenizers: on use

        self.vocabulary = TargetVocabulary(options.vocab_size, options.max_length, options.lowercase)
        self.label_smoothing = options.label_smoothing

    @classmethod
    def build_head(cls, target: TargetConfig, fused_dim: int, in_dims: Mapping[str, int], num_outputs: int) -> Head:
        """A sequence decoder over the fused representation (and, with `memory: all`, every modality's tokens);
        `num_outputs` is the target vocabulary's size."""
        return build_sequence_head(target.generation_options, fused_dim, in_dims, num_outputs)

    def fit(self, values: list[Any]) -> None:
        self.vocabulary.fit(values)

    def encode(self, value: Any) -> np.ndarray:
        return self.vocabulary.encode(value)

    @property
    def num_outputs(self) -> int:
        return self.vocabulary.size

    def loss(self, logits: Tensor, target: Tensor) -> Tensor:
        if logits.shape[1] == 0:
            return logits.sum() * 0.0
        labels = target[:, 1: 1 + logits.shape[1]]  # (B, T): the token after each input token
        return F.cross_entropy(logits.float().transpose(1, 2), labels, ignore_index=PAD_ID,
                               label_smoothing=self.label_smoothing)

    def scores(self, out: Output) -> Tensor:
        if out.sequences is None:
            raise ValueError("no generated sequences in the model output: generation runs in eval mode only "
                             "(call model.eval())")
        return out.sequences

    def predict(self, logits: Tensor) -> list[Any]:
        """The generated texts, from (N, S) generated ids."""
        return self.vocabulary.decode_batch(logits.cpu().numpy())

    def references(self, target: Tensor) -> list[str]:
        return self.vocabulary.decode_batch(target.cpu().numpy())

    def metrics(self, logits: Tensor, target: Tensor,
                embeddings: Mapping[str, Tensor] | None = None) -> dict[str, float]:
        from polymodal.evaluation.text_metrics import text_metrics

        return text_metrics(self.predict(logits), [[r] for r in self.references(target)])

    def state(self) -> dict[str, Any]:
        return {"vocabulary": self.vocabulary.state()}

    def load_state(self, state: dict[str, Any]) -> None:
        self.vocabulary.load_state(state["vocabulary"])
