"""The package's shape: no import cycles (counting imports inside functions and under TYPE_CHECKING), and the
bottom layers import without torch."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "polymodal"


def module_names(root: Path) -> dict[str, Path]:
    return {".".join(p.relative_to(root.parent).with_suffix("").parts).removesuffix(".__init__"): p
            for p in root.rglob("*.py")}


def imported(module: str, node: ast.Import | ast.ImportFrom, is_package: bool) -> list[str]:
    """Every dotted name an import statement may load (for `from a import b`: a and a.b)."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    base = module.split(".")
    if node.level:
        base = base[: len(base) - node.level + is_package]
        prefix = ".".join(base + ([node.module] if node.module else []))
    else:
        prefix = node.module or ""
    return [prefix] + [f"{prefix}.{a.name}" for a in node.names]


def import_graph(root: Path) -> dict[str, set[str]]:
    """Module -> the package's modules it imports anywhere in its body."""
    mods = module_names(root)
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for m, path in mods.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                for name in imported(m, node, path.name == "__init__.py"):
                    while name and name not in mods:
                        name = name.rpartition(".")[0]
                    if name and name != m:
                        graph[m].add(name)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of two or more modules (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    out: list[list[str]] = []
    for start in graph:
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        while work:
            v, children = work[-1]
            w = next(children, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = len(index)
                    stack.append(w)
                    work.append((w, iter(sorted(graph[w]))))
                elif w in stack:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    comp.append(w)
                    if w == v:
                        break
                if len(comp) > 1:
                    out.append(sorted(comp))
    return out


def test_cycle_finder_finds_a_planted_cycle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_package_has_no_import_cycles() -> None:
    found = cycles(import_graph(PACKAGE))
    assert not found, "import cycles:\n" + "\n".join(" <-> ".join(c) for c in found)


def test_imports_inside_functions_and_type_checking_count(tmp_path: Path) -> None:
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("def f():\n    from pkg import b\n")
    (pkg / "b.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .a import f\n")
    assert cycles(import_graph(pkg)) == [["pkg.a", "pkg.b"]]


def test_package_does_not_import_shared_tools() -> None:
    graph = import_graph(PACKAGE)
    assert all(not name.startswith("shared") for deps in graph.values() for name in deps)


def loaded_after(statement: str) -> set[str]:
    code = f"import sys\n{statement}\nprint(' '.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return set(out.split())


@pytest.mark.parametrize("module", ["polymodal.config", "polymodal.registry"])
def test_bottom_layers_import_without_torch(module: str) -> None:
    assert "torch" not in loaded_after(f"import {module}")


def test_model_imports_no_data_or_reporting_stack() -> None:
    loaded = loaded_after("import polymodal.model")
    assert not loaded & {"transformers", "matplotlib", "pandas", "scipy", "soundfile", "torchmetrics", "polymodal.training.loop"}


def test_one_fusion_imports_no_encoder() -> None:
    loaded = loaded_after("import polymodal.fusion.concat")
    assert not any(m.startswith("polymodal.encoders") for m in loaded)


@pytest.mark.parametrize("argv", [["--help"], ["schema"]])
def test_cli_help_and_schema_import_no_torch(argv: list[str]) -> None:
    loaded = loaded_after("import contextlib, io\nfrom polymodal.cli import main\n"
                          f"with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit): main({argv!r})")
    assert "torch" not in loaded


def test_processors_import_no_signal_processing_until_used() -> None:
    assert "scipy.signal" not in loaded_after("import polymodal.processors")
