"""Sequence heads for task generation: memory from the fused vector and the tokens of the fusion and the
encoders, and a GRU (with additive or dot attention) or Transformer decoder over it.

Training uses teacher forcing (the target's own previous tokens); evaluation also generates (greedy or beam).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from polymodal.config import GenerationConfig
from polymodal.fusion.base import Fusion, FusionOutput, modality_tokens
from polymodal.generation.search import State, beam_search, greedy
from polymodal.generation.tokens import PAD_ID
from polymodal.heads import Head, HeadOutput
from polymodal.layers import EncoderOutput


class Memory(nn.Module):
    """What the decoder attends to: (B, T, H) tokens + (B, T) mask, and the start vector (B, H).

    Tokens: the fused vector (always present), the fusion's tokens (if it has them) and, with `modalities`,
    each encoder's tokens (its pooled vector where it has none); a missing modality's tokens are masked out.
    Each source gets a learned embedding so that the decoder can tell them apart.
    """

    def __init__(self, fused_dim: int, in_dims: Mapping[str, int], hidden: int, modalities: bool) -> None:
        super().__init__()
        self.fused_dim = fused_dim
        self.fused = nn.Linear(fused_dim, hidden)
        self.inputs = nn.ModuleDict({m: nn.Linear(d, hidden) for m, d in in_dims.items()} if modalities else {})
        self.source = nn.Embedding(2 + len(self.inputs), hidden)
        self.norm = nn.LayerNorm(hidden)

    def forward(self, fused: FusionOutput, encoded: Mapping[str, EncoderOutput], present: Mapping[str, Tensor]
                ) -> tuple[Tensor, Tensor, Tensor]:
        start = self.fused(fused.fused)  # (B, H)
        parts = [start[:, None] + self.source.weight[0]]  # (B, 1, H)
        masks = [torch.ones(start.shape[0], 1, dtype=torch.bool, device=start.device)]
        if fused.tokens is not None:
            if fused.tokens.shape[-1] != self.fused_dim:
                raise ValueError(f"the fusion's tokens are {fused.tokens.shape[-1]} wide, its output {self.fused_dim}; "
                                 "use target.generation.memory: fused with a fusion whose tokens match, or memory: all")
            parts.append(self.fused(fused.tokens) + self.source.weight[1])  # (B, T_f, H)
            mask = fused.mask.bool() if fused.mask is not None else torch.ones_like(parts[-1][..., 0], dtype=torch.bool)
            masks.append(mask)
        for i, (m, proj) in enumerate(self.inputs.items()):
            tokens, mask = modality_tokens(encoded[m], present[m])  # (B, T_m, D_m), (B, T_m)
            parts.append(proj(tokens) + self.source.weight[2 + i])  # (B, T_m, H)
            masks.append(mask)
        return self.norm(torch.cat(parts, dim=1)), torch.cat(masks, dim=1), start  # (B, T, H), (B, T), (B, H)


class Decoder(nn.Module):
    """A decoder: `start` makes the search state, `step` one token, `teacher` the whole target at once."""

    def start(self, memory: Tensor, mask: Tensor, start: Tensor) -> State:
        raise NotImplementedError  # pragma: no cover

    def step(self, tokens: Tensor, state: State) -> tuple[Tensor, State]:
        raise NotImplementedError  # pragma: no cover

    def teacher(self, memory: Tensor, mask: Tensor, start: Tensor, inputs: Tensor) -> Tensor:
        """(B, T, V) logits of the next token after each of the input tokens (B, T)."""
        state = self.start(memory, mask, start)
        steps = []
        for t in range(inputs.shape[1]):
            logits, state = self.step(inputs[:, t], state)
            steps.append(logits)
        return torch.stack(steps, dim=1)


class Attention(nn.Module):
    """Additive (Bahdanau: v . tanh(W_q q + W_k m)) or scaled dot-product (Luong) attention over the memory."""

    def __init__(self, hidden: int, kind: str) -> None:
        super().__init__()
        self.kind = kind
        self.query = nn.Linear(hidden, hidden, bias=False)
        self.key = nn.Linear(hidden, hidden)
        self.v = nn.Linear(hidden, 1, bias=False) if kind == "additive" else None

    def keys(self, memory: Tensor) -> Tensor:
        return self.key(memory)  # (N, T, H)

    def forward(self, query: Tensor, keys: Tensor, memory: Tensor, mask: Tensor) -> Tensor:
        q = self.query(query)  # (N, H)
        if self.v is not None:
            scores = self.v(torch.tanh(keys + q[:, None]))[..., 0]  # (N, T)
        else:
            scores = (keys @ q[..., None])[..., 0] / math.sqrt(q.shape[-1])  # (N, T)
        weights = scores.masked_fill(~mask, float("-inf")).softmax(dim=-1)  # (N, T)
        return (weights[:, None] @ memory)[:, 0]  # (N, H)


class GRUDecoder(Decoder):
    """Stacked GRU cells; each step attends with the previous top state and feeds the context in with the token."""

    def __init__(self, vocab_size: int, hidden: int, layers: int, attention: str, dropout: float) -> None:
        super().__init__()
        self.layers = layers
        self.embed = nn.Embedding(vocab_size, hidden, padding_idx=PAD_ID)
        self.init = nn.Linear(hidden, hidden * layers)
        self.attention = Attention(hidden, attention)
        self.cells = nn.ModuleList([nn.GRUCell(2 * hidden if i == 0 else hidden, hidden) for i in range(layers)])
        self.drop = nn.Dropout(dropout)
        self.out = nn.Sequential(nn.Linear(3 * hidden, hidden), nn.Tanh(), nn.Dropout(dropout),
                                 nn.Linear(hidden, vocab_size))

    def start(self, memory: Tensor, mask: Tensor, start: Tensor) -> State:
        h = torch.tanh(self.init(start)).view(start.shape[0], self.layers, -1)  # (N, L, H)
        return {"h": h, "memory": memory, "keys": self.attention.keys(memory), "mask": mask}

    def step(self, tokens: Tensor, state: State) -> tuple[Tensor, State]:
        e = self.drop(self.embed(tokens))  # (N, H)
        h = state["h"]
        context = self.attention(h[:, -1], state["keys"], state["memory"], state["mask"])  # (N, H)
        x, new = torch.cat([e, context], dim=-1), []
        for i, cell in enumerate(self.cells):
            x = cell(x, h[:, i])  # (N, H)
            new.append(x)
            x = self.drop(x)
        top = new[-1]
        logits = self.out(torch.cat([top, context, e], dim=-1))  # (N, V)
        return logits, {**state, "h": torch.stack(new, dim=1)}


class TransformerDecoder(Decoder):
    """Pre-norm `nn.TransformerDecoder` with learned positions and a causal mask; steps re-run the prefix."""

    def __init__(self, vocab_size: int, hidden: int, layers: int, heads: int, dropout: float,
                 max_positions: int) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab_size, hidden, padding_idx=PAD_ID)
        self.positions = nn.Parameter(torch.randn(max_positions, hidden) * 0.02)
        layer = nn.TransformerDecoderLayer(hidden, heads, 4 * hidden, dropout, batch_first=True, norm_first=True)
        self.blocks = nn.TransformerDecoder(layer, layers)
        self.norm = nn.LayerNorm(hidden)
        self.out = nn.Linear(hidden, vocab_size)
        self.drop = nn.Dropout(dropout)

    def teacher(self, memory: Tensor, mask: Tensor, start: Tensor, inputs: Tensor) -> Tensor:
        t = inputs.shape[1]
        if t > self.positions.shape[0]:
            raise ValueError(f"{t} target positions; the decoder has {self.positions.shape[0]}")
        x = self.drop(self.embed(inputs) + self.positions[:t])  # (B, T, H)
        causal = torch.triu(torch.full((t, t), float("-inf"), device=x.device), diagonal=1)  # (T, T)
        h = self.blocks(x, memory, tgt_mask=causal, memory_key_padding_mask=~mask)  # (B, T, H)
        return self.out(self.norm(h))  # (B, T, V)

    def start(self, memory: Tensor, mask: Tensor, start: Tensor) -> State:
        prefix = torch.zeros(memory.shape[0], 0, dtype=torch.long, device=memory.device)
        return {"prefix": prefix, "memory": memory, "mask": mask, "start": start}

    def step(self, tokens: Tensor, state: State) -> tuple[Tensor, State]:
        prefix = torch.cat([state["prefix"], tokens[:, None]], dim=1)  # (N, t)
        logits = self.teacher(state["memory"], state["mask"], state["start"], prefix)[:, -1]  # (N, V)
        return logits, {**state, "prefix": prefix}


class SequenceHead(Head):
    """Memory + decoder + search: the head of task generation.

    `decode` gives the teacher-forced logits and, outside training, the generated ids as `sequences`; forward
    returns the teacher-forced logits (B, L-1, V) of a target (B, L) (`[BOS] ... [EOS] [PAD]..`; (B, 0, V)
    without one) and, outside training, the generated ids (B, max_length + 1) (greedy for `beam_size` 1).
    """

    def __init__(self, memory: Memory, decoder: Decoder, vocab_size: int, max_length: int, beam_size: int = 1,
                 length_penalty: float = 0.0) -> None:
        super().__init__()
        self.memory = memory
        self.decoder = decoder
        self.vocab_size = vocab_size
        self.max_length = max_length
        self.beam_size = beam_size
        self.length_penalty = length_penalty

    @property
    def not_exportable(self) -> str | None:
        return "its head decodes token by token (a search loop over the vocabulary, not one graph)"

    def decode(self, fusion: Fusion, fused: FusionOutput, encoded: Mapping[str, EncoderOutput],
               present: Mapping[str, Tensor], target: Tensor | None, index: Tensor | None) -> HeadOutput:
        logits, sequences = self(fused, encoded, present, target)
        return HeadOutput(logits, sequences=sequences)

    def forward(self, fused: FusionOutput, encoded: Mapping[str, EncoderOutput], present: Mapping[str, Tensor],
                target: Tensor | None) -> tuple[Tensor, Tensor | None]:
        memory, mask, start = self.memory(fused, encoded, present)
        if target is None or target.dim() != 2 or target.shape[1] < 2:
            logits = memory.new_zeros(memory.shape[0], 0, self.vocab_size)
        else:
            logits = self.teacher_logits(memory, mask, start, target)
        return logits, None if self.training else self.generate(memory, mask, start)

    def teacher_logits(self, memory: Tensor, mask: Tensor, start: Tensor, target: Tensor) -> Tensor:
        n = int((target != PAD_ID).sum(dim=1).max())  # longest target in the batch, with [BOS] and [EOS]
        logits = self.decoder.teacher(memory, mask, start, target[:, : n - 1])  # (B, n-1, V)
        return F.pad(logits, (0, 0, 0, target.shape[1] - n))  # (B, L-1, V): zeros where every target is padding

    @torch.no_grad()
    def generate(self, memory: Tensor, mask: Tensor, start: Tensor, beam_size: int | None = None) -> Tensor:
        """(B, max_length + 1) generated ids, [EOS]-terminated where it fits, [PAD] after."""
        state = self.decoder.start(memory, mask, start)
        beam, steps = beam_size or self.beam_size, self.max_length + 1
        if beam == 1:
            return greedy(self.decoder.step, state, memory.shape[0], steps)
        return beam_search(self.decoder.step, state, memory.shape[0], steps, beam, self.length_penalty)


def build_sequence_head(options: GenerationConfig, fused_dim: int, in_dims: Mapping[str, int],
                        vocab_size: int) -> SequenceHead:
    """The head a config's `target.generation` describes, with widths from the fusion and encoders."""
    memory = Memory(fused_dim, in_dims, options.hidden, modalities=options.memory == "all")
    decoder: Decoder
    if options.decoder == "gru":
        decoder = GRUDecoder(vocab_size, options.hidden, options.layers, options.attention or "additive",
                             options.dropout)
    else:
        decoder = TransformerDecoder(vocab_size, options.hidden, options.layers, options.heads, options.dropout,
                                     options.max_length + 2)
    return SequenceHead(memory, decoder, vocab_size, options.max_length, options.beam_size, options.length_penalty)
