"""Synthetic multimodal classification with controlled interactions (redundancy, uniqueness, synergy).

In the spirit of the partial-information-decomposition benchmarks of Liang et al., "Quantifying & Modeling
Multimodal Interactions" (NeurIPS 2023): each regime fixes *how* the label information is spread over the
modalities, so a fusion method can be tested against a known answer.

Construction (shared by all regimes). Every record draws one bit `b_i` in {0, 1} per modality `m_i`, in a
balanced design: within each split every bit pattern occurs equally often (so "independent" and "at chance"
hold exactly in every split, not only in expectation). The bit is embedded in a `dim`-d vector: a latent
`z = s * e_1 + noise * eps` with `s = 2 * b_i - 1` (class means at +-e_1, so unit signal) and `eps ~ N(0, I)`,
then rotated by a random orthogonal matrix `Q_i` drawn once per modality: `m_i = Q_i z`. The bit is therefore
linearly readable from its own modality (along `Q_i e_1`) with Bayes accuracy `Phi(1 / noise)` (0.994 at the
default noise 0.4), and every modality has the same marginal distribution, whatever its role: a distractor is
not told apart by its statistics.

Regimes (`label` is binary 0/1, balanced):
- `redundancy`: all modalities carry the same bit, `b_i = y` for every i, each with its own noise. Each
  modality alone predicts the label well (`Phi(1 / noise)`); fusing adds a little by averaging the independent
  noises (`Phi(sqrt(N) / noise)` for N modalities).
- `uniqueness`: the bits are independent and `y = b_0`: only `m0` holds label information, the others are pure
  distractors (structured like `m0`, independent of the label). The best unimodal model (on `m0`) equals fusion;
  models on the other modalities are at chance.
- `synergy`: the bits are independent and `y = b_0 XOR b_1` (parity `sum_i b_i mod 2` for N > 2). Every single
  modality, and every strict subset of modalities, is independent of the label: at chance. Only the
  combination predicts it, with Bayes accuracy `P(an even number of bit errors)` (0.988 for N = 2 at the
  default noise).

Why late fusion fails on synergy. Late (decision-level) fusion scores a record as a sum (or mean) of
per-modality scores, `f(x) = g_0(m_0) + g_1(m_1)`, however deep each `g_i` is. Write `g_i(b)` for the score
of a clean modality holding bit b. XOR needs `f < 0` on (0,0) and (1,1) and `f > 0` on (0,1) and (1,0); summing
each pair gives `g_0(0) + g_0(1) + g_1(0) + g_1(1)` both `< 0` and `> 0`, a contradiction. At best an
additive rule gets 3 of the 4 bit patterns right (an OR, 75 %), and training does not even find that: the
data are unchanged when one modality's bit is flipped together with the label, and the cross-entropy is convex in
the per-modality scores, so its minimum is the constant score: chance. A linear model on the concatenation is
additive in the modalities too and fails the same way. Models that let modalities interact before the decision
can: concatenate-then-MLP, tensor (outer product) and bilinear fusion all represent the product `s_0 * s_1`,
which is XOR up to sign.

`make_interactions` returns the table (one list-valued float32 column per modality `m0, m1, ...`, `label`,
`split` with a seeded 70/15/15 train/val/test cut); `materialize_interactions` writes it as `records.parquet`.
Everything is drawn from `numpy.random.default_rng(seed)`: the same arguments give the same table.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, get_args

import numpy as np
import pandas as pd

from polymodal.datasets.staging import dataset_root, materialize

Regime = Literal["redundancy", "uniqueness", "synergy"]
REGIMES: tuple[str, ...] = get_args(Regime)
SPLIT_FRACTIONS = (0.7, 0.15, 0.15)
TABLE = "records.parquet"


VERSION = 1  # bump when the generator changes, so cached tables are rebuilt

def make_interactions(regime: Regime, n: int = 6000, n_modalities: int = 2, dim: int = 16, noise: float = 0.4,
                      seed: int = 0) -> pd.DataFrame:
    """A table of `n` records with columns `m0..m{N-1}` (each a float32 vector of `dim`), `label`, `split`.

    See the module docstring for what each regime puts in the modalities.
    """
    _check(regime, n, n_modalities, dim, noise)
    rng = np.random.default_rng(seed)
    split = split_column(n, rng)  # (n,)
    bits = draw_bits(regime, split, n_modalities, rng)  # (n, N)
    columns = {f"m{i}": list(embed_bit(bits[:, i], dim, noise, rng)) for i in range(n_modalities)}
    return pd.DataFrame(columns | {"label": label_of(regime, bits), "split": split})


def materialize_interactions(root: Path | None = None, regime: Regime = "synergy", seed: int = 0) -> Path:
    """Write `make_interactions(regime, seed=seed)` as `records.parquet` under `root`; return the folder.

    Reuses an existing table. The default folder is `<cache>/interactions_v<VERSION>_<regime>_s<seed>`.
    """
    return materialize(root or dataset_root("interactions", VERSION, f"{regime}_s{seed}"),
                       lambda tmp: make_interactions(regime, seed=seed).to_parquet(tmp / TABLE, index=False), TABLE)


def draw_bits(regime: Regime, split: np.ndarray, n_modalities: int, rng: np.random.Generator) -> np.ndarray:
    """One bit per record and modality, (n, N) int64: independent, or all equal to the first for redundancy.

    A balanced design: within each split, every bit pattern occurs equally often (up to n mod 2^N), so the
    bits are exactly independent of each other and of the label in every split, not only in expectation.
    """
    n_patterns = 2 if regime == "redundancy" else 2**n_modalities
    pattern = np.empty(len(split), dtype=np.int64)  # (n,)
    for name in np.unique(split):
        rows = np.flatnonzero(split == name)
        pattern[rows] = rng.permutation(np.arange(rows.size) % n_patterns)
    if regime == "redundancy":
        return np.repeat(pattern[:, None], n_modalities, axis=1)  # (n, N): every modality carries the label bit
    return (pattern[:, None] >> np.arange(n_modalities)[None, :]) & 1  # (n, N): pattern in binary


def label_of(regime: Regime, bits: np.ndarray) -> np.ndarray:
    """The label (n,) from the bits (n, N): parity for synergy, the first modality's bit otherwise."""
    if regime == "synergy":
        return bits.sum(axis=1) % 2  # (n,) XOR for N = 2
    return bits[:, 0].copy()  # (n,)


def embed_bit(bit: np.ndarray, dim: int, noise: float, rng: np.random.Generator) -> np.ndarray:
    """Embed bits (n,) as float32 vectors (n, dim): +-e_1 plus Gaussian noise, then a random rotation."""
    z = noise * rng.standard_normal((bit.size, dim))  # (n, dim)
    z[:, 0] += 2.0 * bit - 1.0  # class means at +-e_1
    return (z @ random_rotation(dim, rng).T).astype(np.float32)  # (n, dim)


def random_rotation(dim: int, rng: np.random.Generator) -> np.ndarray:
    """A Haar-random orthogonal matrix (dim, dim): QR of a Gaussian matrix with the signs fixed."""
    q, r = np.linalg.qr(rng.standard_normal((dim, dim)))  # (dim, dim) each
    return q * np.sign(np.diag(r))[None, :]  # (dim, dim)


def split_column(n: int, rng: np.random.Generator) -> np.ndarray:
    """`train`/`val`/`test` (n,) in 70/15/15 proportions, at random positions."""
    cuts = (np.cumsum(SPLIT_FRACTIONS)[:-1] * n).astype(int)  # (2,)
    split = np.empty(n, dtype=object)
    for name, part in zip(("train", "val", "test"), np.split(rng.permutation(n), cuts)):
        split[part] = name
    return split


def _check(regime: str, n: int, n_modalities: int, dim: int, noise: float) -> None:
    if regime not in REGIMES:
        raise ValueError(f"unknown interaction regime {regime!r}; allowed: {', '.join(REGIMES)}")
    if n < 1 or not 2 <= n_modalities <= 16 or dim < 1 or noise < 0:
        raise ValueError(f"need n >= 1, 2 <= n_modalities <= 16, dim >= 1 and noise >= 0; got n={n}, "
                         f"n_modalities={n_modalities}, dim={dim}, noise={noise}")
