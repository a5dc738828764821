"""Text metrics agree with sacrebleu itself, also when records have different numbers of references."""

from __future__ import annotations

import pytest

from polymodal.evaluation.text_metrics import bleu, chrf

sacrebleu = pytest.importorskip("sacrebleu")

WORDS = "the quick brown fox jumps over the lazy dog near the river".split()  # 12 words


def corpus(records: list[list[str]]) -> list[list[str | None]]:
    """Per-record references -> sacrebleu's streams, padded with None (which it drops)."""
    k = max(map(len, records))
    return [[r[i] if i < len(r) else None for r in records] for i in range(k)]


def test_bleu_short_hypotheses_keep_the_brevity_penalty_with_uneven_references() -> None:
    ref = " ".join(WORDS) + "."  # 13 tokens with the full stop
    other = " ".join(reversed(WORDS)) + "."
    references = [[ref], [ref, other], [ref]]  # 1, 2 and 1 references
    hypotheses = [" ".join(WORDS[:5])] * 3  # 5-word prefixes of 12-word references
    expected = sacrebleu.corpus_bleu(hypotheses, corpus(references)).score
    assert expected == pytest.approx(20.2, abs=0.05)
    assert bleu(hypotheses, references) == pytest.approx(expected, abs=1e-9)


def test_chrf_equals_sacrebleu_with_uneven_references() -> None:
    references = [["a cat sits on the mat"], ["a dog runs in the park", "the dog is running"], ["hello"]]
    hypotheses = ["the cat sat on a mat", "a dog is running", "hello there"]
    expected = sacrebleu.corpus_chrf(hypotheses, corpus(references)).score
    assert chrf(hypotheses, references) == pytest.approx(expected, abs=1e-9)
