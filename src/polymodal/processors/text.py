"""Text: a Hugging Face `tokenizers` BPE vocabulary trained on the training texts; truncation."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers

from polymodal.config import TextSpec
from polymodal.errors import RecordError
from polymodal.processors.base import Arrays, Processor, is_empty

PAD, UNK = "[PAD]", "[UNK]"


class TextProcessor(Processor):
    kind = "text"
    ragged = True
    spec: TextSpec

    def __init__(self, spec: TextSpec, field: str) -> None:
        super().__init__(spec, field)
        self.tokenizer: Tokenizer | None = None

    def fit(self, values: list[Any], root: Path) -> None:
        texts = [str(v) for v in values if not is_empty(v)]
        if not texts:
            raise RecordError(f"field {self.field!r}: no non-empty text in the training split to learn a "
                              "vocabulary from")
        tokenizer = Tokenizer(models.BPE(unk_token=UNK))
        steps = [normalizers.NFKC()] + ([normalizers.Lowercase()] if self.spec.lowercase else [])
        tokenizer.normalizer = normalizers.Sequence(steps)
        tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
        trainer = trainers.BpeTrainer(vocab_size=self.spec.vocab_size, special_tokens=[PAD, UNK], show_progress=False)
        tokenizer.train_from_iterator(texts, trainer=trainer)
        self.tokenizer = tokenizer

    def decode_raw(self, value: Any, root: Path) -> str:
        return value if isinstance(value, str) else str(value)

    def features(self, raw: str) -> Arrays:
        if self.tokenizer is None:
            raise RuntimeError("TextProcessor.read before fit")
        ids = self.tokenizer.encode(raw).ids[: self.spec.max_length]
        if not ids:
            raise RecordError(f"text {raw[:40]!r} has no tokens")
        return {"ids": np.asarray(ids, dtype=np.int64)}

    def blank(self) -> Arrays:
        return {"ids": np.zeros(1, dtype=np.int64)}

    def encoder_inputs(self) -> dict[str, Any]:
        assert self.tokenizer is not None
        return {"vocab_size": self.tokenizer.get_vocab_size()}

    def state(self) -> dict[str, Any]:
        assert self.tokenizer is not None
        return {"tokenizer": self.tokenizer.to_str()}

    def load_state(self, state: dict[str, Any]) -> None:
        self.tokenizer = Tokenizer.from_str(state["tokenizer"])
