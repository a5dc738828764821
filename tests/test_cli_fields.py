"""Command-line options derived from settings dataclasses: `polymodal serve` repeats none of ServeSettings'
defaults, and the derivation handles every field type it meets."""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass, field
from typing import Literal

import pytest

from polymodal.cli import build_parser
from polymodal.cli_fields import add_fields, from_args
from polymodal.serve.settings import ServeSettings


def serve_parser() -> argparse.ArgumentParser:
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices["serve"]


def test_serve_options_are_servesettings_fields_with_their_defaults_and_help() -> None:
    actions = {a.dest: a for a in serve_parser()._actions}
    for f in dataclasses.fields(ServeSettings):
        assert actions[f.name].default == f.default, f.name
        assert f.metadata["help"] in (actions[f.name].help or ""), f.name
    args = serve_parser().parse_args(["run"])
    assert from_args(ServeSettings, args) == ServeSettings()  # no option given: exactly the defaults


def test_serve_options_parse_back_into_settings() -> None:
    args = serve_parser().parse_args(["run", "--max-batch", "4", "--allowed-hosts", "a.example", "b.example",
                                      "--max-audio-seconds", "2.5", "--backend", "onnx"])
    settings = from_args(ServeSettings, args, api_key="k")
    assert settings == ServeSettings(max_batch=4, allowed_hosts=("a.example", "b.example"), max_audio_seconds=2.5,
                                     backend="onnx", api_key="k")
    with pytest.raises(SystemExit):
        serve_parser().parse_args(["run", "--backend", "tensorflow"])  # choices from the Literal


@dataclass
class Toy:
    rate: float = field(default=0.5, metadata={"help": "how fast"})
    verbose: bool = field(default=False, metadata={"help": "talk"})
    names: tuple[str, ...] = ("a",)
    mode: Literal["x", "y"] = "x"
    limit: int | None = None


def test_every_supported_field_type() -> None:
    parser = argparse.ArgumentParser()
    add_fields(parser, Toy, skip=["limit"])
    args = parser.parse_args(["--rate", "2", "--verbose", "--names", "p", "q", "--mode", "y"])
    assert from_args(Toy, args) == Toy(rate=2.0, verbose=True, names=("p", "q"), mode="y")
    assert from_args(Toy, parser.parse_args(["--no-verbose"])) == Toy()
    assert "how fast (default: 0.5)" in parser.format_help()


def test_an_unsupported_field_type_is_named() -> None:
    @dataclass
    class Bad:
        table: dict[str, int] = field(default_factory=dict)

    with pytest.raises(TypeError, match="field 'table'"):
        add_fields(argparse.ArgumentParser(), Bad)


def test_server_settings_import_without_torch_or_fastapi() -> None:
    import subprocess
    import sys

    code = "import sys, polymodal.serve; print(' '.join(sorted(sys.modules)))"
    loaded = set(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split())
    assert not loaded & {"torch", "fastapi", "uvicorn"}
