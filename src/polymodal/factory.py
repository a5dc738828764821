"""Config -> model: the one place that reads a config to build, and that checks its component choices (encoders,
fusion, objectives and their options) against the registries the layers below fill."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polymodal.config as schema
from polymodal.config import Component, Config, ConfigError, ModalitySpec
from polymodal.encoders import ENCODERS, Encoder
from polymodal.fusion import FUSIONS
from polymodal.modalities import modality
from polymodal.model import MultimodalModel
from polymodal.objectives import OBJECTIVES
from polymodal.tasks import TASKS

if TYPE_CHECKING:
    from polymodal.processors import Processor


def load_config(path: str | Path) -> Config:
    """Read a YAML config and validate it: its schema, then its component choices."""
    config = schema.load_config(path)
    check_components(config, origin=str(path))
    return config


def parse_config(data: dict[str, Any], origin: str = "config", base_dir: Path | None = None) -> Config:
    """Validate a config mapping: its schema, then its component choices."""
    config = schema.parse_config(data, origin, base_dir)
    check_components(config, origin)
    return config


def check_components(config: Config, origin: str = "config") -> None:
    """Raise ConfigError naming the key of any encoder, fusion or objective the registries do not know, or
    an option it does not take."""
    try:
        for name, spec in config.modalities.items():
            check_encoder(name, spec)
        check_fusion(config.fusion)
        for i, obj in enumerate(config.objectives):
            check_objective(i, obj)
    except ValueError as err:
        raise ConfigError(f"{origin}: invalid config\n  {err}") from None


def encoders_for(modality_type: str) -> list[str]:
    """The registered encoders that take `modality_type` input."""
    return [n for n in ENCODERS.names() if modality_type in ENCODERS.get(n).modalities]


def check_encoder(name: str, spec: ModalitySpec) -> None:
    enc = spec.encoder or modality(spec.type).encoder
    if enc.name not in ENCODERS:
        raise ValueError(f"modalities.{name}.encoder.name: unknown encoder {enc.name!r}; "
                         f"registered: {', '.join(ENCODERS.names())}")
    cls: Any = ENCODERS.get(enc.name)
    if spec.type not in cls.modalities:
        raise ValueError(f"modalities.{name}.encoder.name: {enc.name!r} does not take {spec.type} "
                         f"input; use one of {', '.join(encoders_for(spec.type))}")
    ENCODERS.check_options(enc.name, enc.options, frozenset(cls.derived), where=f"modalities.{name}.encoder: ")
    check = getattr(cls, "check_spec", None)  # an encoder's own requirements on its modality
    if check is not None:
        try:
            check(spec)
        except ValueError as err:
            raise ValueError(f"modalities.{name}: {err}") from None


def check_fusion(fusion: Component) -> None:
    if fusion.name not in FUSIONS:
        raise ValueError(f"fusion.name: unknown fusion {fusion.name!r}; registered: {', '.join(FUSIONS.names())}")
    FUSIONS.check_options(fusion.name, fusion.options, frozenset({"in_dims"}), where="fusion: ")


def check_objective(i: int, obj: Any) -> None:
    if obj.name not in OBJECTIVES:
        raise ValueError(f"objectives.{i}.name: unknown objective {obj.name!r}; registered: "
                         f"{', '.join(OBJECTIVES.names())}")
    OBJECTIVES.check_options(obj.name, obj.options, frozenset({"in_dims", "fused_dim"}), where=f"objectives.{i}: ")


def build_encoder(spec_type: str, component: Component | None, processor: Processor) -> Encoder:
    component = component or modality(spec_type).encoder
    return ENCODERS.build(component.name, user=component.options, **processor.encoder_inputs())


def build_model(config: Config, processors: Mapping[str, Processor], num_outputs: int) -> MultimodalModel:
    """Build the model a config describes, with widths derived from fitted processors and encoders.

    `num_outputs` may be 0 (retrieval: no task head outputs, only the objectives train).
    """
    check_components(config)
    encoders = {m: build_encoder(spec.type, spec.encoder, processors[m]) for m, spec in config.modalities.items()}
    in_dims = {m: e.out_dim for m, e in encoders.items()}
    fusion = FUSIONS.build(config.fusion.name, user=config.fusion.options, in_dims=in_dims)
    objectives = {o.name: OBJECTIVES.build(o.name, user=o.options, in_dims=in_dims, fused_dim=fusion.out_dim)
                  for o in config.objectives}
    head = TASKS.get(config.target.task).build_head(  # type: ignore[attr-defined]
        config.target, fusion.out_dim, in_dims, num_outputs)
    return MultimodalModel(encoders, fusion, head, objectives, placeholders=config.placeholders)
