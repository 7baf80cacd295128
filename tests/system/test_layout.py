"""The layout's rules, read from the source with `ast` (docs/architecture.md states them):

- core imports no system package (gpt, mmm, abc, markov, sashimi) and nothing above it;
- the systems do not import each other, except that mmm and abc plug into gpt;
- cli, server and evaluation reach models only through the registry: they import no composer or model
  module of a system, and evaluation never branches on a model's kind;
- at most 16 modules at the top of the package, no source file over 600 lines.

Imports under `if TYPE_CHECKING:` are for type names only and are not counted.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import orchestrion

SRC = Path(orchestrion.__file__).parent
SYSTEMS = ("gpt", "mmm", "abc", "markov", "sashimi")
ABOVE_CORE = (*SYSTEMS, "evaluation", "server", "testing", "cli", "registry", "demo", "generate", "composer")
MODEL_MODULES = ("composer", "model", "sampler", "decoding", "s4")  # what only the registry may load


def _package(path: Path) -> str:
    rel = path.relative_to(SRC)
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def _runtime_imports(path: Path) -> list[tuple[str, int]]:
    """Every `orchestrion...` module a file imports when it runs (type-checking-only imports left out)."""
    tree = ast.parse(path.read_text())
    type_only: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            type_only.update(id(n) for n in ast.walk(node))
    found = []
    for node in ast.walk(tree):
        if id(node) in type_only:
            continue
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("orchestrion"):
            found.append((node.module, node.lineno))
            found += [(f"{node.module}.{a.name}", node.lineno) for a in node.names]
        elif isinstance(node, ast.Import):
            found += [(a.name, node.lineno) for a in node.names if a.name.startswith("orchestrion")]
    return found


SOURCES = sorted(p for p in SRC.rglob("*.py") if "builtin" not in p.parts)


def _where(path: Path, line: int) -> str:
    return f"{path.relative_to(SRC)}:{line}"


def _targets(module: str) -> tuple[str, ...]:
    return tuple(module.split(".")[1:])


def test_core_imports_nothing_above_it() -> None:
    bad = [
        f"{_where(p, line)} imports {m}"
        for p in SOURCES
        if _package(p) == "core"
        for m, line in _runtime_imports(p)
        if _targets(m) and _targets(m)[0] in ABOVE_CORE
    ]
    assert bad == []


def test_systems_import_each_other_only_through_gpt() -> None:
    allowed = {("mmm", "gpt"), ("abc", "gpt")}
    bad = []
    for p in SOURCES:
        here = _package(p)
        if here not in SYSTEMS:
            continue
        for m, line in _runtime_imports(p):
            there = _targets(m)[0] if _targets(m) else ""
            if there in SYSTEMS and there != here and (here, there) not in allowed:
                bad.append(f"{_where(p, line)} imports {m}")
    assert bad == []


def test_cli_server_and_evaluation_reach_models_only_through_the_registry() -> None:
    bad = []
    for p in SOURCES:
        if _package(p) not in ("cli", "server", "evaluation"):
            continue
        for m, line in _runtime_imports(p):
            parts = _targets(m)
            if len(parts) >= 2 and parts[0] in SYSTEMS and parts[1] in MODEL_MODULES:
                bad.append(f"{_where(p, line)} imports {m}")
    assert bad == []


def test_evaluation_never_branches_on_a_models_kind() -> None:
    bad = []
    for p in SOURCES:
        if _package(p) != "evaluation":
            continue
        for node in ast.walk(ast.parse(p.read_text())):
            if isinstance(node, ast.Compare):
                names = {n.attr for n in ast.walk(node) if isinstance(n, ast.Attribute)}
                if names & {"kind", "encoding"}:
                    bad.append(f"{_where(p, node.lineno)}: {ast.unparse(node)}")
    assert bad == []


def test_the_rules_see_the_package() -> None:
    assert len(SOURCES) > 60
    assert any(m.startswith("orchestrion.gpt") for m, _ in _runtime_imports(SRC / "mmm" / "sampler.py"))


def test_at_most_16_modules_at_the_top() -> None:
    top = sorted(p.name for p in SRC.glob("*.py"))
    assert len(top) <= 16, top


@pytest.mark.parametrize("limit", [600])
def test_no_source_file_over_600_lines(limit: int) -> None:
    long = {str(p.relative_to(SRC)): n for p in SOURCES if (n := len(p.read_text().splitlines())) > limit}
    assert long == {}
