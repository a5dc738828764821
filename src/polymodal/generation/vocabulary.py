"""The target side of generation: a byte-level BPE vocabulary with [PAD] [UNK] [BOS] [EOS], fixed-length ids."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from tokenizers import Tokenizer

from polymodal.data.missing import is_empty
from polymodal.errors import RecordError
from polymodal.generation.tokens import BOS_ID, EOS_ID, PAD_ID
from polymodal.processors.text import PAD, UNK, train_bpe

BOS, EOS = "[BOS]", "[EOS]"
SPECIALS = [PAD, UNK, BOS, EOS]


class TargetVocabulary:
    """Encodes a text as `[BOS] t_1 .. t_n [EOS] [PAD]..` of length `max_length + 2` (n <= max_length: longer
    texts are cut) and decodes generated ids back to text (up to the first [EOS], specials dropped).

    Byte-level BPE keeps every character, so decoding an encoded text gives it back exactly (after NFKC and the
    optional lowercasing) unless it was cut.
    """

    def __init__(self, vocab_size: int, max_length: int, lowercase: bool = False) -> None:
        self.vocab_size = vocab_size
        self.max_length = max_length
        self.lowercase = lowercase
        self.tokenizer: Tokenizer | None = None

    def fit(self, texts: Sequence[Any]) -> None:
        usable = [str(t) for t in texts if not is_empty(t)]
        if not usable:
            raise RecordError("the target column has no non-empty text in the training split")
        self.tokenizer = train_bpe(usable, self.vocab_size, self.lowercase, SPECIALS, byte_level=True)

    @property
    def size(self) -> int:
        return self._tokenizer.get_vocab_size()

    @property
    def _tokenizer(self) -> Tokenizer:
        if self.tokenizer is None:
            raise RuntimeError("the target vocabulary is used before it is fitted")
        return self.tokenizer

    def encode(self, text: Any) -> np.ndarray:
        """(max_length + 2,) int64 ids."""
        if is_empty(text):
            raise RecordError("target text is empty; fill it in or drop the record")
        ids = self._tokenizer.encode(str(text)).ids[: self.max_length]
        out = np.full(self.max_length + 2, PAD_ID, dtype=np.int64)
        out[: len(ids) + 2] = [BOS_ID, *ids, EOS_ID]
        return out

    def decode(self, ids: Sequence[int]) -> str:
        """Text of one id sequence; a leading [BOS] is skipped, decoding stops at [EOS]."""
        kept: list[int] = []
        for i in ids:
            if i == EOS_ID:
                break
            if i > EOS_ID:
                kept.append(int(i))
        return self._tokenizer.decode(kept)

    def decode_batch(self, ids: np.ndarray) -> list[str]:
        return [self.decode(row) for row in ids.tolist()]

    def state(self) -> dict[str, Any]:
        return {"tokenizer": self._tokenizer.to_str()}

    def load_state(self, state: dict[str, Any]) -> None:
        self.tokenizer = Tokenizer.from_str(state["tokenizer"])
