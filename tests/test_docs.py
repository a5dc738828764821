"""The manual builds without a warning, and the README stays a front page whose set-up commands are CI's."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS_TOOLS = ("mkdocs", "material", "mkdocstrings", "mkdocstrings_handlers.python", "griffe_pydantic")


def _missing_docs_tools() -> list[str]:
    return [name for name in DOCS_TOOLS if importlib.util.find_spec(name.split(".")[0]) is None
            or importlib.util.find_spec(name) is None]


def code_blocks(markdown: str) -> list[str]:
    """The bodies of the fenced code blocks, in order."""
    return [m.group(1).strip() for m in re.finditer(r"^```[^\n]*\n(.*?)^```", markdown, re.S | re.M)]


def ci_test_command() -> str:
    """The line of `.ci/run` that sets up the environment and runs the tests."""
    lines = (ROOT / ".ci" / "run").read_text().splitlines()
    return next(line for line in lines if line.startswith("python3 -m venv") and "pytest" in line)


@pytest.mark.slow  # the whole site, API reference included (~20 s)
@pytest.mark.skipif(bool(_missing_docs_tools()),
                    reason="the docs extra (mkdocs-material, mkdocstrings[python], griffe-pydantic) is not installed")
def test_mkdocs_build_strict(tmp_path: Path) -> None:
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    cmd = [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")]
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    assert (tmp_path / "site" / "api" / "fusion" / "index.html").exists()


def test_readme_is_a_front_page() -> None:
    assert len(README.read_text().splitlines()) <= 300


def test_readme_test_command_is_the_one_ci_runs() -> None:
    assert code_blocks(README.read_text())[1] == ci_test_command()


def test_readme_main_job_sets_up_like_ci() -> None:
    setup = ci_test_command().split(' -e ".[test]"')[0]  # venv + pinned torch, as CI installs them
    assert code_blocks(README.read_text())[0].startswith(setup + " -e . && ")


def test_readme_links_point_to_files() -> None:
    targets = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", README.read_text())
    missing = [t for t in targets if not t.startswith(("http://", "https://")) and not (ROOT / t).exists()]
    assert not missing, f"README links to files that do not exist: {missing}"
