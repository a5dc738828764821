"""Decoding a sequence from a step function: greedy and beam search (length penalty, max length).

A step function maps the previous tokens (N,) and a state (tensors with leading dim N) to next-token logits
(N, V) and the new state. Sequences start from [BOS] (not returned) and end at [EOS] or after `max_steps`.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from polymodal.generation.tokens import BOS_ID, EOS_ID, PAD_ID

State = dict[str, Tensor]
Step = Callable[[Tensor, State], tuple[Tensor, State]]


def allowed(logits: Tensor) -> Tensor:
    """Logits with [PAD] and [BOS] ruled out (they never follow a generated token)."""
    out = logits.float().clone()
    out[:, [PAD_ID, BOS_ID]] = float("-inf")
    return out


def greedy(step: Step, state: State, batch: int, max_steps: int) -> Tensor:
    """(B, max_steps) ids: the most likely token at each step; [PAD] after [EOS]."""
    device = next(iter(state.values())).device
    tokens = torch.full((batch,), BOS_ID, dtype=torch.long, device=device)  # (B,)
    out = torch.full((batch, max_steps), PAD_ID, dtype=torch.long, device=device)
    done = torch.zeros(batch, dtype=torch.bool, device=device)
    for t in range(max_steps):
        logits, state = step(tokens, state)  # (B, V)
        tokens = allowed(logits).argmax(dim=-1).masked_fill(done, PAD_ID)  # (B,)
        out[:, t] = tokens
        done |= tokens == EOS_ID
        if bool(done.all()):
            break
    return out


def length_penalty(length: Tensor, alpha: float) -> Tensor:
    """GNMT's ((5 + length) / 6) ** alpha: beams are ranked by log-probability / penalty."""
    return ((5.0 + length.float()) / 6.0) ** alpha


def beam_search(step: Step, state: State, batch: int, max_steps: int, beam: int, alpha: float = 0.0) -> Tensor:
    """(B, max_steps) ids of the best of `beam` hypotheses per record, by log-probability / length penalty.

    Finished hypotheses stay in the beam (extended by [PAD] at no cost) and compete with the live ones by their
    normalised score, so a short finished hypothesis is kept only while it ranks among the best `beam`.
    """
    device = next(iter(state.values())).device
    state = {k: v.repeat_interleave(beam, dim=0) for k, v in state.items()}  # (B*K, ...)
    tokens = torch.full((batch * beam,), BOS_ID, dtype=torch.long, device=device)
    scores = torch.full((batch, beam), float("-inf"), device=device)
    scores[:, 0] = 0.0  # one live hypothesis at the start, so the K beams do not repeat it
    lengths = torch.zeros(batch, beam, dtype=torch.long, device=device)
    done = torch.zeros(batch, beam, dtype=torch.bool, device=device)
    seqs = torch.full((batch, beam, max_steps), PAD_ID, dtype=torch.long, device=device)
    offsets = torch.arange(batch, device=device)[:, None] * beam  # (B, 1)
    for t in range(max_steps):
        logits, state = step(tokens, state)  # (B*K, V)
        vocab = logits.shape[-1]
        logp = allowed(logits).log_softmax(dim=-1).view(batch, beam, vocab)  # (B, K, V)
        pad_only = torch.full((vocab,), float("-inf"), device=device)
        pad_only[PAD_ID] = 0.0
        logp = torch.where(done[..., None], pad_only, logp)
        cand = scores[..., None] + logp  # (B, K, V)
        cand_len = (lengths + (~done).long())[..., None].expand(-1, -1, vocab)  # (B, K, V)
        rank = cand / length_penalty(cand_len, alpha)
        _, idx = rank.view(batch, -1).topk(beam, dim=1)  # (B, K)
        origin, tok = idx // vocab, idx % vocab
        scores = cand.view(batch, -1).gather(1, idx)
        lengths = cand_len.reshape(batch, -1).gather(1, idx)
        done = done.gather(1, origin) | (tok == EOS_ID)
        seqs = seqs.gather(1, origin[..., None].expand_as(seqs))
        seqs[:, :, t] = tok
        flat = (origin + offsets).view(-1)  # (B*K,)
        state = {k: v[flat] for k, v in state.items()}
        tokens = tok.view(-1)
        if bool(done.all()):
            break
    best = (scores / length_penalty(lengths, alpha)).argmax(dim=1)  # (B,)
    return seqs[torch.arange(batch, device=device), best]
