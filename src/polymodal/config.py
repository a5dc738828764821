"""Typed run configuration (pydantic), mirrored by YAML.

A config names the data, declares which field is which modality, the target and task, the fusion method
and the training budget. Unknown keys are errors that name the key and list what is allowed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args

import yaml
from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator

from polymodal.modalities import MODALITIES, modality, modality_types

# the modality specs, re-exported: each lives with its modality type
from polymodal.modalities.audio import AudioSpec  # noqa: F401
from polymodal.modalities.image import ImageSpec  # noqa: F401
from polymodal.modalities.sequence import SequenceSpec  # noqa: F401
from polymodal.modalities.tabular import TabularSpec  # noqa: F401
from polymodal.modalities.text import TextSpec  # noqa: F401
from polymodal.modalities.vector import VectorSpec  # noqa: F401
from polymodal.modalities.video import VideoSpec  # noqa: F401
from polymodal.schema import Component, EncoderTraining, ModalityBase, OnError, Strict  # noqa: F401

TaskName = Literal["binary", "multiclass", "multilabel", "regression", "retrieval", "sentiment", "vqa",
                   "generation"]

class ObjectiveSpec(Component):
    """An objective added to the task loss: its name, options and weight, e.g. `{name: contrastive, weight: 0.5}`."""

    weight: float = Field(1.0, ge=0, description="the objective's factor in the total loss")


# the modality specs live with their modality type (`polymodal.modalities`); the union below is the registry's
ModalitySpec = Annotated[Union[tuple(modality(t).spec for t in modality_types())],  # noqa: UP007 (built at run time)
                         Field(discriminator="type")]


class SplitConfig(Strict):
    column: str | None = Field(None, description="column with values train/val/test")
    ratios: tuple[float, float, float] = (0.7, 0.15, 0.15)
    seed: int = 0
    stratify: bool = True


class Multi30kConfig(Strict):
    """The Multi30K layout: per split, one text file per language (line i = record i) and an image list."""

    languages: list[str] = Field(["en", "de"], min_length=1, description="one column per language, read from "
                                                                         "the text files")
    splits: dict[Literal["train", "val", "test"], str] = Field(
        {"train": "train", "val": "val", "test": "test"},
        description="file stem of each split (e.g. test: test_2016_flickr); train is required")
    text: str = Field("{split}.{lang}", description="text file of a split and language, relative to the folder")
    image_list: str = Field("image_splits/{split}.txt", description="file naming the image of each line")
    images: str = Field("images", description="folder the image names are relative to")

    @model_validator(mode="after")
    def _check(self) -> Multi30kConfig:
        if len(set(self.languages)) != len(self.languages):
            raise ValueError(f"data.multi30k.languages: {self.languages} lists a language twice")
        if "train" not in self.splits:
            raise ValueError("data.multi30k.splits: needs 'train'")
        for key in ("text", "image_list"):
            if "{split}" not in getattr(self, key):
                raise ValueError(f"data.multi30k.{key}: the pattern needs '{{split}}'")
        if "{lang}" not in self.text:
            raise ValueError("data.multi30k.text: the pattern needs '{lang}'")
        return self


class CocoConfig(Strict):
    """COCO-style JSON (`images` + `annotations` with captions and/or `category_id`s): one row per image."""

    images: str | None = Field(None, description="folder the images' file_name entries are relative to, itself "
                                                 "relative to the JSON's folder (default: the JSON's folder); "
                                                 "'{split}' is replaced by train/val/test with per-split files")
    instances: str | None = Field(None, description="an instances-style JSON (categories) whose category names "
                                                    "become the 'tags' of the same image ids; relative to the "
                                                    "JSON's folder (captions and tags from two files); takes "
                                                    "'{split}' too")
    check_files: bool = Field(True, description="stop with an error naming the image when a file is not on disk")


class MosiConfig(Strict):
    """CMU-MOSI/MOSEI computational sequences (HDF5, format mosi_h5) or aligned arrays (npz, format mosi_npz)."""

    features: dict[str, str] | None = Field(
        None, description="column -> mosi_h5: sequence file relative to the source folder (e.g. text: "
                          "CMU_MOSI_TimestampedWordVectors.csd); mosi_npz: array key (default text, audio, vision)")
    labels: str | None = Field(None, description="mosi_h5: the label sequence file (e.g. CMU_MOSI_Opinion_Labels.csd, "
                                                 "required); mosi_npz: array key (default labels)")
    ids: str = Field("ids", description="mosi_npz: array key of the segment ids (row numbers if absent)")
    folds: str | None = Field(None, description="mosi_h5: JSON {train: [video ids], val: [...], test: [...]} "
                                                "that fills a 'split' column (use with data.split.column: split)")
    drop_zero_steps: bool = Field(True, description="drop all-zero time steps (the padding of aligned arrays)")
    nonfinite_to_zero: bool = Field(False, description="replace NaN/inf feature values by 0 instead of stopping "
                                                       "with an error (COVAREP holds -inf in places)")


class VqaConfig(Strict):
    """VQA v2 JSON: a questions file (data.source / train / val / test) plus its annotations and images."""

    annotations: str | None = Field(None, description="annotations JSON, relative to the questions file's folder; "
                                                      "'{split}' is replaced by train/val/test")
    images: str = Field(".", description="images folder, relative to the questions file's folder")
    file_pattern: str = Field("COCO_{subset}_{image_id:012d}.jpg", description="image file name from {image_id} "
                                                                             "and {subset} (the file's data_subtype)")
    image_map: str | None = Field(None, description="CSV (image_id,file) or JSON {image_id: file} instead of "
                                                    "file_pattern, relative to the questions file's folder")
    check_files: bool = Field(True, description="stop with an error naming the image when a file is not on disk")


class DataConfig(Strict):
    builtin: Literal["av_digits", "av_digits_fashion", "av_digits_imbalanced", "interactions_redundancy",
                     "interactions_uniqueness", "interactions_synergy", "emoji", "video_digits",
                     "vqa_shapes", "emoji_translation", "sentiment"] | None = Field(
        None, description="a built-in dataset (see `polymodal datasets list`)")
    source: str | None = Field(None, description="one table (csv/parquet/jsonl) or a folder of files by class")
    train: str | None = None
    val: str | None = None
    test: str | None = None
    format: Literal["auto", "csv", "parquet", "jsonl", "folder", "webdataset", "multi30k", "coco",
                    "mosi_h5", "mosi_npz", "vqa"] = "auto"
    split: SplitConfig = SplitConfig()
    root: str | None = Field(None, description="the folder that file paths in the table resolve under (default: the "
                                               "table's own folder)")
    allow_outside_root: bool = Field(False, description="let file paths in the table lead outside the data folder "
                                                        "(`..`, absolute paths elsewhere, symlinks out); off: refused")
    streaming: bool = Field(False, description="read the training split shard by shard instead of into memory "
                                               "(format webdataset or parquet; val/test are still decoded into memory)")
    shuffle_buffer: int = Field(1000, ge=1, description="streaming: records held in the shuffling buffer")
    fit_records: int = Field(10000, ge=1, description="streaming: processors and labels are fitted on the first "
                                                      "N training records")
    read_rows: int = Field(1024, ge=1, description="streaming parquet: rows read per chunk")
    multi30k: Multi30kConfig | None = Field(None, description="format multi30k: file layout of the corpus folder "
                                                              "in 'source' (defaults: the Multi30K layout)")
    coco: CocoConfig | None = Field(None, description="format coco: images folder and an optional instances file "
                                                      "for tags (see polymodal.data.formats.coco)")
    mosi: MosiConfig | None = Field(None, description="format mosi_h5 / mosi_npz: which files or keys hold the "
                                                      "sequences and labels (see polymodal.data.formats.mosi)")
    vqa: VqaConfig | None = Field(None, description="format vqa: annotations and images of the questions file "
                                                    "(see polymodal.data.formats.vqa)")

    @model_validator(mode="after")
    def _one_layout(self) -> DataConfig:
        if sum(x is not None for x in (self.builtin, self.source, self.train)) != 1:
            raise ValueError("data: set exactly one of 'builtin' (a built-in dataset), 'source' (one table, "
                             "split by column or at random) or 'train' (with optional 'val' and 'test' files)")
        if self.streaming and (self.train is None or self.val is None):
            raise ValueError("data.streaming: set 'train' (shards: a brace pattern like shards-{000..009}.tar, a "
                             "glob, a Parquet file or folder) and 'val' (decoded into memory); 'builtin' and "
                             "'source' are not streamed")
        if self.streaming and self.format not in ("auto", "webdataset", "parquet"):
            raise ValueError(f"data.format: {self.format} cannot be streamed; use webdataset or parquet")
        if self.format == "webdataset" and not self.streaming:
            raise ValueError("data.format: webdataset shards are read as a stream; set data.streaming: true")
        if self.format == "multi30k" and self.source is None:
            raise ValueError("data.format: multi30k reads a corpus folder; set 'source' to it (its splits come from "
                             "its files, see data.multi30k)")
        if self.multi30k is not None and self.format != "multi30k":
            raise ValueError("data.multi30k: only for data.format: multi30k")
        if self.coco is not None and self.format != "coco":
            raise ValueError("data.coco: only for data.format: coco")
        if self.mosi is not None and self.format not in ("mosi_h5", "mosi_npz"):
            raise ValueError("data.mosi: only for data.format: mosi_h5 or mosi_npz")
        if self.vqa is not None and self.format != "vqa":
            raise ValueError("data.vqa: only for data.format: vqa")
        return self


class GenerationConfig(Strict):
    """Task generation: the target text's vocabulary, the decoder and the search (`polymodal.generation`)."""

    decoder: Literal["gru", "transformer"] = Field(
        "gru", description="gru: GRU with attention over the memory | transformer: causal Transformer decoder")
    attention: Literal["additive", "dot"] | None = Field(
        None, description="gru: additive (Bahdanau) or dot (scaled, Luong) attention; default additive")
    hidden: int = Field(128, ge=8, description="decoder width (token embeddings, memory projection)")
    layers: int = Field(1, ge=1, description="stacked GRU cells / Transformer decoder layers")
    heads: int = Field(4, ge=1, description="transformer: attention heads (must divide hidden)")
    dropout: float = Field(0.1, ge=0, lt=1)
    memory: Literal["all", "fused"] = Field(
        "all", description="what the decoder attends to: all = the fused vector, the fusion's tokens and every "
                           "encoder's tokens | fused = the fused vector and the fusion's tokens only")
    max_length: int = Field(32, ge=1, description="target tokens kept (longer targets are cut) and generated")
    vocab_size: int = Field(2000, ge=300, description="byte-level BPE vocabulary of the target text")
    lowercase: bool = Field(False, description="lowercase the target text")
    beam_size: int = Field(4, ge=1, description="beams at inference; 1 = greedy")
    length_penalty: float = Field(0.6, ge=0, description="beam ranking by log p / ((5 + length) / 6) ** alpha; "
                                                         "0 = raw log-probability")
    label_smoothing: float = Field(0.0, ge=0, lt=1)

    @model_validator(mode="after")
    def _check(self) -> GenerationConfig:
        if self.attention is not None and self.decoder != "gru":
            raise ValueError("target.generation.attention: only the gru decoder has a choice of attention; the "
                             "transformer uses multi-head attention")
        if self.decoder == "transformer" and self.hidden % self.heads:
            raise ValueError(f"target.generation.heads: {self.heads} does not divide hidden {self.hidden}")
        return self


class TargetConfig(Strict):
    field: str | list[str] | None = Field(
        None, description="label column (a list of columns for multi-output regression); none for retrieval")
    task: TaskName
    separator: str = Field("|", description="multilabel: separator between labels in one cell")
    min_count: int = Field(1, ge=1, description="multilabel: keep only labels of at least this many training "
                                                "records; with more than 1, rarer and unseen labels are ignored "
                                                "wherever they occur (with 1, an unseen label is an error)")
    generation: GenerationConfig | None = Field(
        None, description="task generation: decoder, target vocabulary and search (defaults when omitted)")
    class_weight: Literal["none", "balanced"] = Field(
        "none", description="binary/multiclass: balanced weighs each class's loss by N / (K * N_class) of the "
                            "training split (rare classes count more), at most class_weight_cap")
    class_weight_cap: float = Field(10.0, gt=0, description="the largest class weight of class_weight: balanced")

    @model_validator(mode="after")
    def _field_for_task(self) -> TargetConfig:
        if self.class_weight != "none" and self.task not in ("binary", "multiclass"):
            raise ValueError(f"target.class_weight: only tasks binary and multiclass weigh classes; task {self.task} "
                             "takes none")
        if self.min_count > 1 and self.task not in ("multilabel", "vqa"):
            raise ValueError(f"target.min_count: only tasks multilabel and vqa have a label vocabulary to prune; task "
                             f"{self.task} takes the default 1")
        if self.field is None and self.task != "retrieval":
            raise ValueError(f"target.field: task {self.task} needs the label column(s) in 'field'")
        if self.field is not None and self.task == "retrieval":
            raise ValueError("target.field: task retrieval learns from paired modalities and reads no label "
                             "column; remove 'field'")
        if self.generation is not None and self.task != "generation":
            raise ValueError(f"target.generation: only for task generation (this task is {self.task})")
        if self.task == "generation" and not isinstance(self.field, str):
            raise ValueError("target.field: task generation reads one text column")
        return self

    @property
    def generation_options(self) -> GenerationConfig:
        """The generation settings, defaults where none are given."""
        return self.generation or GenerationConfig()


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
                                                "scaled by 1 - tanh(alpha * confidence ratio) (paper form)")
    ogm_form: Literal["paper", "continuous"] = Field(
        "paper", description="ogm_ge: paper (Eq. 10 of Peng et al. 2022: 1 - tanh(alpha * ratio), confidences from "
                             "the fused model's per-modality predictions, epochs ogm_start..ogm_end) | continuous "
                             "(1 - tanh(alpha * (ratio - 1)), confidences from the linear probes, every epoch)")
    ogm_start: int = Field(0, ge=0, description="ogm_ge, paper form: first modulated epoch (0-based)")
    ogm_end: int | None = Field(50, ge=0, description="ogm_ge, paper form: last modulated epoch (inclusive; the "
                                                      "authors' 50); null: to the end")
    ge_noise: bool = Field(True, description="ogm_ge: add Gaussian noise with the gradient's std (generalisation "
                                             "enhancement)")
    ogm_scale: Literal["gradient", "step"] = Field(
        "gradient", description="ogm_ge: scale the encoder's gradient (as the paper, with SGD) or its parameter "
                                "change after the optimizer step (what the modulation means under Adam)")
    aux_weight: float = Field(1.0, ge=0, description="aux_losses: factor of the sum of the unimodal losses")
    blend_window: int = Field(3, ge=1, description="grad_blend: epochs between two estimates of the blending "
                                                   "weights (the paper's super-epoch)")

    @model_validator(mode="after")
    def _window(self) -> ImbalanceConfig:
        if self.ogm_end is not None and self.ogm_end < self.ogm_start:
            raise ValueError(f"training.imbalance.ogm_end: {self.ogm_end} is before ogm_start {self.ogm_start}, so "
                             "OGM-GE would never modulate; set ogm_end >= ogm_start (or null: to the end)")
        return self


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
    num_nodes: int = Field(1, ge=1, description="machines in a multi-node run (torchrun --nnodes, SLURM --nodes)")
    strategy: str = Field("auto", description="auto | ddp (data-parallel over devices x num_nodes processes); fsdp "
                                              "and deepspeed are not supported")
    precision: Literal["32-true", "16-mixed", "bf16-mixed", "16-true", "bf16-true", "64-true"] = Field(
        "32-true", description="bf16-mixed: bfloat16 autocast (CPU, Ampere+ GPUs); 16-mixed: float16 with loss "
                               "scaling (GPUs)")
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

    @field_validator("strategy")
    @classmethod
    def _strategy(cls, value: str) -> str:
        if value not in ("auto", "ddp"):
            raise ValueError(f"{value!r} is not supported; use auto or ddp (every process holds the whole model; "
                             "fsdp and deepspeed are not implemented, see docs/scale.md)")
        return value


class SearchParam(Strict):
    """One hyperparameter of a search: `{type: float, low: 1e-4, high: 1e-2, log: true}`,
    `{type: int, low: 8, high: 64, step: 8}` or `{type: categorical, choices: [concat, late]}`."""

    type: Literal["float", "int", "categorical"]
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = Field(None, gt=0)
    choices: list[str | int | float | bool | None] | None = None

    @model_validator(mode="after")
    def _complete(self) -> SearchParam:
        if self.type == "categorical":
            if not self.choices or self.low is not None or self.high is not None:
                raise ValueError("a categorical parameter takes a non-empty 'choices' list (and no low/high)")
        elif self.low is None or self.high is None or self.choices is not None or self.low > self.high:
            raise ValueError(f"a {self.type} parameter takes 'low' <= 'high' (and no choices)")
        elif self.log and (self.low <= 0 or self.step is not None):
            raise ValueError("log: true needs low > 0 and no step")
        elif self.type == "int" and not (float(self.low).is_integer() and float(self.high).is_integer()):
            raise ValueError("an int parameter takes whole numbers for low and high")
        return self


class TuneConfig(Strict):
    """Hyperparameter search (`polymodal tune`): a space over dotted config keys, pruning by epoch."""

    space: dict[str, SearchParam] = Field(min_length=1, description="dotted config key -> distribution, e.g. "
                                          "training.lr: {type: float, low: 1e-4, high: 1e-2, log: true}")
    pruner: Literal["median", "none"] = Field("median", description="median: stop a trial whose validation "
                                              "metric is below the median of earlier trials at the same epoch")
    startup_trials: int = Field(3, ge=0, description="trials run to the end before pruning starts")
    warmup_epochs: int = Field(1, ge=0, description="epochs of each trial that are never pruned")


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
    tune: TuneConfig | None = Field(None, description="search space of `polymodal tune` (ignored by train)")

    @model_validator(mode="after")
    def _add_contrastive(self) -> Config:
        """Task retrieval trains through a contrastive objective: add one when none is listed."""
        if self.target.task == "retrieval":
            if len(self.modalities) < 2:
                raise ValueError("modalities: task retrieval needs at least two modalities (one tower each)")
            if not any(o.name == "contrastive" for o in self.objectives):
                self.objectives.append(ObjectiveSpec(name="contrastive"))
        return self

    @model_validator(mode="after")
    def _check_lists(self) -> Config:
        """Each objective listed once; every unfreezing happens within the run."""
        seen: set[str] = set()
        for i, obj in enumerate(self.objectives):
            if obj.name in seen:
                raise ValueError(f"objectives.{i}.name: objective {obj.name!r} is listed twice")
            seen.add(obj.name)
        for name, spec in self.modalities.items():
            after = spec.train.unfreeze_after
            if after is not None and after >= self.training.epochs:
                raise ValueError(f"modalities.{name}.train.unfreeze_after: {after} is not below training.epochs "
                                 f"({self.training.epochs}), so the encoder would never unfreeze; use mode frozen "
                                 "without unfreeze_after")
        return self

    def field_of(self, modality: str) -> str:
        return self.modalities[modality].field or modality

    def run_dir(self) -> Path:
        return Path(self.output_dir or f"runs/{self.name}")


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
            msg = f"unknown modality type {got!r}; allowed: {', '.join(modality_types())}"
        lines.append(f"  {loc or '(top level)'}: {msg}")
    return "\n".join(lines)


def _allowed_here(loc: tuple[Any, ...]) -> str:
    model: Any = Config
    for part in loc[:-1]:
        if isinstance(part, str) and part in MODALITIES:
            model = modality(part).spec
        elif model is not None and part in model.model_fields:
            model = _model_of(model.model_fields[part].annotation)
    if model is None:
        return "check the spelling"
    return "allowed: " + ", ".join(model.model_fields)


def _display(loc: tuple[Any, ...]) -> str:
    """Dotted key path, without pydantic's union tag (modalities.photo.image.size -> modalities.photo.size)."""
    parts = [str(p) for i, p in enumerate(loc)
             if not str(p).startswith("function-after") and not (i == 2 and loc[0] == "modalities"
                                                                  and p in MODALITIES)]
    return ".".join(parts)


def _model_of(annotation: Any) -> Any:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    models = [a for a in get_args(annotation) if isinstance(a, type) and issubclass(a, BaseModel)]
    return models[0] if len(models) == 1 else None  # an optional sub-config (`X | None`)


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
    for key in ("source", "train", "val", "test", "root"):
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
