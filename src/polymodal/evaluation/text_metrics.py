"""Metrics of generated text against references: corpus BLEU and chrF (sacrebleu) and CIDEr-D (here).

Every function takes one hypothesis per record and, per record, one or more references.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

References = Sequence[Sequence[str]]  # per record, its references


def _sacrebleu() -> Any:
    try:
        import sacrebleu
    except ImportError:  # pragma: no cover - depends on the environment
        raise ImportError("BLEU and chrF need sacrebleu: pip install 'polymodal[apps]' (or sacrebleu)") from None
    return sacrebleu


def _streams(references: References) -> list[list[str | None]]:
    """sacrebleu's layout: one list per reference position, padded with None where a record has fewer.

    sacrebleu drops None references; '' would be kept as a 0-length reference, and BLEU's brevity penalty,
    which measures a hypothesis against its closest reference length, would vanish for short hypotheses.
    """
    k = max(len(r) for r in references)
    return [[r[i] if i < len(r) else None for r in references] for i in range(k)]


class _CorpusMetric:
    """A sacrebleu corpus metric whose per-record statistics are kept, so that scoring resamples of the same
    records (bootstrap intervals) only sums statistics: the score equals sacrebleu's `corpus_score`."""

    def __init__(self, name: str, limit: int = 200_000) -> None:
        self.name = name
        self.limit = limit
        self.metric: Any = None
        self.memo: dict[tuple[str, tuple[str, ...]], Any] = {}

    def __call__(self, hypotheses: Sequence[str], references: References) -> float:
        if self.metric is None:
            self.metric = getattr(_sacrebleu(), self.name)()
        keys = [(h, tuple(r)) for h, r in zip(hypotheses, references, strict=True)]
        new = [k for k in dict.fromkeys(keys) if k not in self.memo]
        if len(self.memo) + len(new) > self.limit:
            self.memo.clear()
            new = list(dict.fromkeys(keys))
        if new:
            stats = self.metric._extract_corpus_statistics([h for h, _ in new], _streams([r for _, r in new]))
            self.memo.update(zip(new, stats))
        return float(self.metric._aggregate_and_compute([self.memo[k] for k in keys]).score)


_BLEU, _CHRF = _CorpusMetric("BLEU"), _CorpusMetric("CHRF")


def bleu(hypotheses: Sequence[str], references: References) -> float:
    """Corpus BLEU-4 (sacrebleu defaults: 13a tokenization, exponential brevity penalty), 0..100."""
    return _BLEU(hypotheses, references)


def chrf(hypotheses: Sequence[str], references: References) -> float:
    """Corpus chrF (character 6-grams, beta 2; sacrebleu defaults), 0..100."""
    return _CHRF(hypotheses, references)


@lru_cache(maxsize=100_000)
def words(text: str) -> tuple[str, ...]:
    """Lowercased word tokens, punctuation dropped (as the caption metrics' tokenizer does)."""
    return tuple(re.findall(r"\w+", text.lower()))


def ngrams(tokens: Sequence[str], n: int) -> Counter[tuple[str, ...]]:
    return Counter(tuple(tokens[i: i + n]) for i in range(len(tokens) - n + 1))


class CiderD:
    """CIDEr-D (Vedantam et al., 2015) with document frequencies from the references of the scored corpus.

    Per n in 1..4 a sentence is a vector of TF-IDF weights g(w) = tf(w) * log(N / max(1, df(w))), N = records and
    df(w) = records whose references contain w. Per record and reference, the n-gram term is
    sum_w min(g_h(w), g_r(w)) * g_r(w) / (|g_h| |g_r|) * exp(-(l_h - l_r)^2 / (2 sigma^2)) (clipped counts and a
    Gaussian length penalty, the "-D" changes); it is averaged over references and over n, and scaled by 10.
    """

    def __init__(self, n: int = 4, sigma: float = 6.0) -> None:
        self.n = n
        self.sigma = sigma

    def _vectors(self, tokens: Sequence[str], df: Counter[tuple[str, ...]], log_n: float
                 ) -> list[dict[tuple[str, ...], float]]:
        return [{g: tf * (log_n - math.log(max(1.0, df[g]))) for g, tf in ngrams(tokens, k).items()}
                for k in range(1, self.n + 1)]

    def _similarity(self, hyp: list[dict[tuple[str, ...], float]], ref: list[dict[tuple[str, ...], float]],
                    delta: int) -> float:
        penalty = math.exp(-(delta ** 2) / (2 * self.sigma ** 2))
        total = 0.0
        for h, r in zip(hyp, ref):
            norm = math.sqrt(sum(v * v for v in h.values())) * math.sqrt(sum(v * v for v in r.values()))
            if norm > 0:
                total += sum(min(v, r[g]) * r[g] for g, v in h.items() if g in r) / norm * penalty
        return total / self.n

    def per_record(self, hypotheses: Sequence[str], references: References) -> list[float]:
        """The CIDEr-D score of each record."""
        if len(hypotheses) != len(references):
            raise ValueError(f"{len(hypotheses)} hypotheses but {len(references)} reference sets")
        refs = [[words(r) for r in rs] for rs in references]
        df: Counter[tuple[str, ...]] = Counter()
        for rs in refs:
            df.update({g for r in rs for k in range(1, self.n + 1) for g in ngrams(r, k)})
        log_n = math.log(max(1, len(refs)))
        scores = []
        for hyp, rs in zip(hypotheses, refs):
            tokens = words(hyp)
            h = self._vectors(tokens, df, log_n)
            sims = [self._similarity(h, self._vectors(r, df, log_n), len(tokens) - len(r)) for r in rs]
            scores.append(10.0 * sum(sims) / max(1, len(sims)))
        return scores

    def __call__(self, hypotheses: Sequence[str], references: References) -> float:
        """Corpus CIDEr-D: the mean over records."""
        scores = self.per_record(hypotheses, references)
        return sum(scores) / len(scores) if scores else float("nan")


def cider_d(hypotheses: Sequence[str], references: References) -> float:
    return CiderD()(hypotheses, references)


def text_metrics(hypotheses: Sequence[str], references: References) -> dict[str, float]:
    """bleu, chrf (0..100), cider (CIDEr-D) and exact (share of hypotheses equal to a reference)."""
    exact = sum(h.strip() in {r.strip() for r in rs} for h, rs in zip(hypotheses, references))
    return {"bleu": bleu(hypotheses, references), "chrf": chrf(hypotheses, references),
            "cider": cider_d(hypotheses, references), "exact": exact / max(1, len(hypotheses))}
