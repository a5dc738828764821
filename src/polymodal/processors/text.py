"""Text: a Hugging Face `tokenizers` BPE vocabulary trained on the training texts; truncation."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

from polymodal.config import TextSpec
from polymodal.errors import RecordError
from polymodal.processors.base import Arrays, Processor, is_empty

PAD, UNK = "[PAD]", "[UNK]"


def train_bpe(texts: list[str], vocab_size: int, lowercase: bool, special_tokens: list[str],
              byte_level: bool = False) -> Tokenizer:
    """A BPE tokenizer (NFKC, optional lowercasing) learned from `texts`; the special tokens get ids 0, 1, ...

    Whitespace pre-tokenization (the input side) drops spacing; `byte_level` (the output side of generation) keeps
    every byte, so that `decode` gives the text back exactly and no character is ever unknown.
    """
    tokenizer = Tokenizer(models.BPE(unk_token=None if byte_level else special_tokens[1]))
    steps = [normalizers.NFKC()] + ([normalizers.Lowercase()] if lowercase else [])
    tokenizer.normalizer = normalizers.Sequence(steps)
    alphabet: list[str] = []
    if byte_level:
        tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tokenizer.decoder = decoders.ByteLevel()
        alphabet = pre_tokenizers.ByteLevel.alphabet()
    else:
        tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=special_tokens, initial_alphabet=alphabet,
                                  show_progress=False)
    tokenizer.train_from_iterator(texts, trainer=trainer)
    return tokenizer


def pretrained_tokenizer(ref: str, max_length: int) -> Tokenizer:
    """A saved Hugging Face tokenizer (a folder with tokenizer.json, the file, or a weight package name), cutting
    texts to `max_length` tokens with its special tokens kept, without padding (batches pad themselves)."""
    from polymodal.encoders.pretrained.weights import PACKAGES

    path = PACKAGES[ref].locate() if ref in PACKAGES else Path(ref).expanduser()
    file = path / "tokenizer.json" if path.is_dir() else path
    if not file.is_file():
        raise FileNotFoundError(f"tokenizer {ref!r}: no tokenizer.json at {str(file)!r} (give a folder holding "
                                f"tokenizer.json, the file itself, or a weight package: {', '.join(PACKAGES)})")
    tokenizer = Tokenizer.from_file(str(file))
    tokenizer.no_padding()
    tokenizer.enable_truncation(max_length)
    return tokenizer


class TextProcessor(Processor):
    kind = "text"
    ragged = True
    spec: TextSpec

    def __init__(self, spec: TextSpec, field: str) -> None:
        super().__init__(spec, field)
        self.tokenizer: Tokenizer | None = None

    def fit(self, values: list[Any], root: Path) -> None:
        if self.spec.tokenizer is not None:
            self.tokenizer = pretrained_tokenizer(self.spec.tokenizer, self.spec.max_length)
            return
        texts = [str(v) for v in values if not is_empty(v)]
        if not texts:
            raise RecordError(f"field {self.field!r}: no non-empty text in the training split to learn a "
                              "vocabulary from")
        self.tokenizer = train_bpe(texts, self.spec.vocab_size, self.spec.lowercase, [PAD, UNK])

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
