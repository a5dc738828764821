"""Building blocks of the config schema, shared by `config.py` and the modality specs (`modalities/`)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

OnError = Literal["error", "skip", "missing"]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class Component(BaseModel):
    """A registered component by name plus its options, e.g. `{name: concat, hidden: 256}`."""

    model_config = ConfigDict(extra="allow")
    name: str

    @property
    def options(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class EncoderTraining(Strict):
    """How a modality's encoder trains, e.g. `{mode: frozen, unfreeze_after: 2, lr: 1e-5}`."""

    mode: Literal["finetune", "frozen"] = Field(
        "finetune", description="finetune: train the encoder with the rest | frozen: keep its weights (and its "
                                "batch-norm statistics and dropout: eval mode) fixed")
    unfreeze_after: int | None = Field(
        None, ge=1, description="frozen: fine-tune from this epoch on (after this many frozen epochs); null: "
                                "frozen for the whole run")
    lr: float | None = Field(None, gt=0, description="this encoder's learning rate (same schedule); default "
                                                     "training.lr")
    cache: bool = Field(True, description="frozen for the whole run: compute its features once and reuse them "
                                          "from the feature cache ($POLYMODAL_CACHE or ~/.cache/polymodal) across "
                                          "epochs and runs; train-time augmentation of this modality is then off")

    @model_validator(mode="after")
    def _unfreeze_needs_frozen(self) -> EncoderTraining:
        if self.unfreeze_after is not None and self.mode != "frozen":
            raise ValueError("unfreeze_after: only with mode frozen (the encoder is frozen for that many epochs, "
                             "then fine-tuned)")
        return self


class ModalityBase(Strict):
    """What every modality spec has; each modality type's spec (in `polymodal.modalities`) adds its own keys."""

    field: str | None = Field(None, description="column holding this modality; defaults to the modality name")
    on_error: OnError = Field("error", description="unreadable file: error | skip the record | treat as missing")
    encoder: Component | None = Field(None, description="encoder name and options; default per modality type")
    train: EncoderTraining = Field(default_factory=EncoderTraining,
                                   description="frozen or fine-tuned encoder, its own learning rate")
