"""Typed run configuration (pydantic), mirrored by YAML.

A config names the data, declares which field is which modality, the target and task, the fusion method
and the training budget. Unknown keys are errors that name the key and list what is allowed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

OnError = Literal["error", "skip", "missing"]
TaskName = Literal["binary", "multiclass", "multilabel", "regression", "retrieval"]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class Component(BaseModel):
    """A registered component by name plus its options, e.g. `{name: concat, hidden: 256}`."""

    model_config = ConfigDict(extra="allow")
    name: str

    @property
    def options(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class ObjectiveSpec(Component):
    """An objective added to the task loss: its name, options and weight, e.g. `{name: contrastive, weight: 0.5}`."""

    weight: float = Field(1.0, ge=0, description="the objective's factor in the total loss")


class ModalityBase(Strict):
    field: str | None = Field(None, description="column holding this modality; defaults to the modality name")
    on_error: OnError = Field("error", description="unreadable file: error | skip the record | treat as missing")
    encoder: Component | None = Field(None, description="encoder name and options; default per modality type")


class ImageSpec(ModalityBase):
    type: Literal["image"]
    size: int = Field(32, ge=8, description="images are resized to size x size")
    channels: Literal[1, 3] = 3
    augment: bool = Field(True, description="random shifts and brightness jitter while training")


class TextSpec(ModalityBase):
    type: Literal["text"]
    max_length: int = Field(64, ge=1, description="tokens kept per text")
    vocab_size: int = Field(8000, ge=16)
    lowercase: bool = True


class AudioSpec(ModalityBase):
    type: Literal["audio"]
    sample_rate: int = Field(16000, ge=1000)
    n_mels: int = Field(40, ge=8)
    max_seconds: float = Field(2.0, gt=0)


class TabularSpec(ModalityBase):
    type: Literal["tabular"]
    numeric: list[str] = []
    categorical: list[str] = []

    @model_validator(mode="after")
    def _some_columns(self) -> TabularSpec:
        if not self.numeric and not self.categorical:
            raise ValueError("a tabular modality needs at least one column in 'numeric' or 'categorical'")
        return self


class VectorSpec(ModalityBase):
    type: Literal["vector"]


class SequenceSpec(ModalityBase):
    type: Literal["sequence"]
    max_length: int = Field(256, ge=1, description="time steps kept per sequence")


ModalitySpec = Annotated[
    ImageSpec | TextSpec | AudioSpec | TabularSpec | VectorSpec | SequenceSpec, Field(discriminator="type")
]


class SplitConfig(Strict):
    column: str | None = Field(None, description="column with values train/val/test")
    ratios: tuple[float, float, float] = (0.7, 0.15, 0.15)
    seed: int = 0
    stratify: bool = True


class DataConfig(Strict):
    builtin: Literal["av_digits", "av_digits_fashion", "av_digits_imbalanced", "interactions_redundancy",
                     "interactions_uniqueness", "interactions_synergy"] | None = Field(
        None, description="a built-in dataset (see `polymodal datasets list`)")
    source: str | None = Field(None, description="one table (csv/parquet/jsonl) or a folder of files by class")
    train: str | None = None
    val: str | None = None
    test: str | None = None
    format: Literal["auto", "csv", "parquet", "jsonl", "folder"] = "auto"
    split: SplitConfig = SplitConfig()

    @model_validator(mode="after")
    def _one_layout(self) -> DataConfig:
        if sum(x is not None for x in (self.builtin, self.source, self.train)) != 1:
            raise ValueError("data: set exactly one of 'builtin' (a built-in dataset), 'source' (one table, "
                             "split by column or at random) or 'train' (with optional 'val' and 'test' files)")
        return self


class TargetConfig(Strict):
    field: str | list[str] | None = Field(
        None, description="label column (a list of columns for multi-output regression); none for retrieval")
    task: TaskName
    separator: str = Field("|", description="multilabel: separator between labels in one cell")

    @model_validator(mode="after")
    def _field_for_task(self) -> TargetConfig:
        if self.field is None and self.task != "retrieval":
            raise ValueError(f"target.field: task {self.task} needs the label column(s) in 'field'")
        if self.field is not None and self.task == "retrieval":
            raise ValueError("target.field: task retrieval learns from paired modalities and reads no label "
                             "column; remove 'field'")
        return self


class ImbalanceConfig(Strict):
    """Modality-imbalance diagnostics and one remedy (details in `polymodal.training.imbalance`)."""

    method: Literal["none", "ogm_ge", "grad_blend", "aux_losses", "mmpareto"] = Field(
        "none", description="remedy: none | ogm_ge (on-the-fly gradient modulation + generalisation enhancement) | "
                            "grad_blend (gradient blending) | aux_losses (unimodal losses added) | mmpareto "
                            "(Pareto combination of multimodal and unimodal gradients per encoder)")
    diagnostics: bool = Field(True, description="log per epoch: probe_acc_<m> (validation accuracy of a linear "
                                                "probe on each encoder's features), grad_norm_<m>, confidence_<m> "
                                                "and confidence_ratio (probes and confidences: binary/multiclass)")
    probe_lr: float = Field(1e-2, gt=0, description="learning rate of the diagnostic probes (own Adam, constant)")
    alpha: float = Field(0.5, ge=0, description="ogm_ge: modulation strength; the dominant modality's gradient is "
                                                "scaled by 1 - tanh(alpha * (confidence ratio - 1))")
    ge_noise: bool = Field(True, description="ogm_ge: add Gaussian noise with the gradient's std (generalisation "
                                             "enhancement)")
    ogm_scale: Literal["gradient", "step"] = Field(
        "gradient", description="ogm_ge: scale the encoder's gradient (as the paper, with SGD) or its parameter "
                                "change after the optimizer step (what the modulation means under Adam)")
    aux_weight: float = Field(1.0, ge=0, description="aux_losses: factor of the sum of the unimodal losses")
    blend_window: int = Field(3, ge=1, description="grad_blend: epochs between two estimates of the blending "
                                                   "weights (the paper's super-epoch)")


class TrainingConfig(Strict):
    epochs: int = Field(20, ge=1)
    batch_size: int = Field(64, ge=1)
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(1e-2, ge=0)
    scheduler: Literal["cosine", "constant"] = "cosine"
    warmup_epochs: float = Field(0.5, ge=0)
    grad_clip: float | None = Field(1.0, gt=0)
    patience: int | None = Field(5, ge=1, description="early stopping patience in epochs; null disables")
    monitor: str | None = Field(None, description="validation metric to select on; default per task")
    seed: int = 0
    deterministic: bool = True
    accelerator: str = "cpu"
    devices: int | str | list[int] = 1
    strategy: str = "auto"
    precision: str = "32-true"
    accumulate_grad_batches: int = Field(1, ge=1)
    num_workers: int = Field(0, ge=0)
    progress_bar: bool = True
    modality_dropout: float | dict[str, float] = Field(
        0.0, description="per-record probability of hiding a modality while training (one rate, or one per "
                         "modality); a record always keeps at least one present modality")
    init_from: str | None = Field(
        None, description="a run directory (e.g. a self-supervised pretraining run) whose fitted processor state "
                          "and matching encoder, fusion and objective weights this run starts from")
    imbalance: ImbalanceConfig = Field(
        default_factory=ImbalanceConfig, description="modality-imbalance diagnostics and remedy")


class Config(Strict):
    name: str = "run"
    data: DataConfig
    modalities: dict[str, ModalitySpec] = Field(min_length=1)
    target: TargetConfig
    fusion: Component = Component(name="concat")
    placeholders: bool = Field(False, description="learn one vector per modality that stands in for it when it is "
                                                  "missing (instead of masking it out of the fusion)")
    objectives: list[ObjectiveSpec] = Field(
        default_factory=list, description="objectives added to the task loss (contrastive, reconstruction, dcca), "
                                          "each with a weight; task retrieval adds a contrastive one if none is listed")
    training: TrainingConfig = TrainingConfig()
    output_dir: str | None = Field(None, description="run directory; default runs/<name>")

    @model_validator(mode="after")
    def _check_components(self) -> Config:
        from polymodal.encoders import ENCODERS, default_encoder
        from polymodal.fusion import FUSIONS

        for name, spec in self.modalities.items():
            enc = spec.encoder or Component(name=default_encoder(spec.type))
            if enc.name not in ENCODERS:
                raise ValueError(f"modalities.{name}.encoder.name: unknown encoder {enc.name!r}; "
                                 f"registered: {', '.join(ENCODERS.names())}")
            cls = ENCODERS.get(enc.name)
            if spec.type not in cls.modalities:
                raise ValueError(f"modalities.{name}.encoder.name: {enc.name!r} does not take {spec.type} "
                                 f"input; use one of {', '.join(encoders_for(spec.type))}")
            ENCODERS.check_options(enc.name, enc.options, frozenset(cls.derived),
                                   where=f"modalities.{name}.encoder: ")
        if self.fusion.name not in FUSIONS:
            raise ValueError(f"fusion.name: unknown fusion {self.fusion.name!r}; registered: "
                             f"{', '.join(FUSIONS.names())}")
        FUSIONS.check_options(self.fusion.name, self.fusion.options, frozenset({"in_dims"}), where="fusion: ")
        self._check_objectives()
        return self

    def _check_objectives(self) -> None:
        from polymodal.objectives import OBJECTIVES

        if self.target.task == "retrieval":
            if len(self.modalities) < 2:
                raise ValueError("modalities: task retrieval needs at least two modalities (one tower each)")
            if not any(o.name == "contrastive" for o in self.objectives):
                self.objectives.append(ObjectiveSpec(name="contrastive"))
        seen: set[str] = set()
        for i, obj in enumerate(self.objectives):
            if obj.name not in OBJECTIVES:
                raise ValueError(f"objectives.{i}.name: unknown objective {obj.name!r}; registered: "
                                 f"{', '.join(OBJECTIVES.names())}")
            if obj.name in seen:
                raise ValueError(f"objectives.{i}.name: objective {obj.name!r} is listed twice")
            seen.add(obj.name)
            OBJECTIVES.check_options(obj.name, obj.options, frozenset({"in_dims", "fused_dim"}),
                                     where=f"objectives.{i}: ")

    def field_of(self, modality: str) -> str:
        return self.modalities[modality].field or modality

    def run_dir(self) -> Path:
        return Path(self.output_dir or f"runs/{self.name}")


def encoders_for(modality_type: str) -> list[str]:
    from polymodal.encoders import ENCODERS

    return [n for n in ENCODERS.names() if modality_type in ENCODERS.get(n).modalities]


class ConfigError(ValueError):
    """A config that does not validate; the message names each offending key."""


def _format_errors(err: ValidationError, origin: str) -> str:
    lines = [f"{origin}: invalid config"]
    for e in err.errors():
        loc = _display(e["loc"])
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            msg = f"unknown key; {_allowed_here(e['loc'])}"
        elif e["type"] == "literal_error":
            msg = f"{msg} (got {e['input']!r})"
        elif e["type"] == "union_tag_invalid":
            got = e["input"].get("type") if isinstance(e["input"], dict) else e["input"]
            msg = f"unknown modality type {got!r}; allowed: {', '.join(_SPEC_BY_TYPE)}"
        lines.append(f"  {loc or '(top level)'}: {msg}")
    return "\n".join(lines)


def _allowed_here(loc: tuple[Any, ...]) -> str:
    model: Any = Config
    for part in loc[:-1]:
        if isinstance(part, str) and part in _SPEC_BY_TYPE:
            model = _SPEC_BY_TYPE[part]
        elif model is not None and part in model.model_fields:
            model = _model_of(model.model_fields[part].annotation)
    if model is None:
        return "check the spelling"
    return "allowed: " + ", ".join(model.model_fields)


def _display(loc: tuple[Any, ...]) -> str:
    """Dotted key path, without pydantic's union tag (modalities.photo.image.size -> modalities.photo.size)."""
    parts = [str(p) for i, p in enumerate(loc)
             if not str(p).startswith("function-after") and not (i == 2 and loc[0] == "modalities"
                                                                  and p in _SPEC_BY_TYPE)]
    return ".".join(parts)


_SPEC_BY_TYPE = {"image": ImageSpec, "text": TextSpec, "audio": AudioSpec, "tabular": TabularSpec,
                 "vector": VectorSpec, "sequence": SequenceSpec}


def _model_of(annotation: Any) -> Any:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return None


def parse_config(data: dict[str, Any], origin: str = "config", base_dir: Path | None = None) -> Config:
    """Validate a config mapping; relative data paths are resolved against `base_dir`."""
    try:
        config = Config.model_validate(data)
    except ValidationError as err:
        raise ConfigError(_format_errors(err, origin)) from None
    except ValueError as err:
        raise ConfigError(f"{origin}: invalid config\n  {err}") from None
    if base_dir is not None:
        config = resolve_paths(config, base_dir)
    return config


def resolve_paths(config: Config, base_dir: Path) -> Config:
    data = config.data.model_copy()
    for key in ("source", "train", "val", "test"):
        value = getattr(data, key)
        if value is not None and not Path(value).is_absolute():
            setattr(data, key, str((base_dir / value).resolve()))
    training = config.training.model_copy()
    if training.init_from is not None and not Path(training.init_from).is_absolute():
        training.init_from = str((base_dir / training.init_from).resolve())
    return config.model_copy(update={"data": data, "training": training})


def load_config(path: str | Path) -> Config:
    """Read and validate a YAML config file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {str(path)!r} does not exist")
    with path.open() as f:
        try:
            data = yaml.safe_load(f)
        except yaml.YAMLError as err:
            raise ConfigError(f"{path}: not valid YAML: {err}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    return parse_config(data, origin=str(path), base_dir=path.parent)


def dump_config(config: Config, path: Path) -> None:
    """Write the resolved config (every default filled in) as YAML."""
    path.write_text(yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False))


def json_schema() -> dict[str, Any]:
    return Config.model_json_schema()
