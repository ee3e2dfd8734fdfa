"""The engine's shape, checked: its layers import downwards only, no import cycle (lazy imports
included), no Qt, and the command line's help and listings do not load torch."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ENGINE = Path(__file__).resolve().parents[1] / "engine"
# What each layer may import from the engine, besides itself and the shared modules.
SHARED = {"engine.errors", "engine.paths", "engine.files"}
ALLOWED = {
    "engine.core": set(),
    "engine.inference": {"engine.core"},
    "engine.store": {"engine.core"},
    "engine.tooling": {"engine", "engine.core", "engine.inference", "engine.store"},
    "engine": {"engine.core", "engine.inference", "engine.store"},  # the package's public surface
}


def module_name(path: Path) -> str:
    parts = path.relative_to(ENGINE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def engine_modules() -> dict[str, Path]:
    return {module_name(p): p for p in ENGINE.rglob("*.py")}


def imports_of(path: Path, modules: dict[str, Path]) -> set[str]:
    """Every module this file imports, at any depth (function bodies too), resolved to module names."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                found.add(sub if sub in modules else node.module)
    return found


def graph() -> dict[str, set[str]]:
    modules = engine_modules()
    return {name: {m for m in imports_of(path, modules) if m in modules and m != name}
            for name, path in modules.items()}


def layer(module: str) -> str:
    parts = module.split(".")
    return ".".join(parts[:2]) if len(parts) > 1 and f"engine.{parts[1]}" in ALLOWED else "engine"


def test_layers_import_downwards_only():
    wrong = []
    for module, targets in graph().items():
        if module in SHARED:
            wrong += [(module, t) for t in targets - SHARED]  # the shared modules import nothing else of the engine
            continue
        own = layer(module)
        for target in targets - SHARED:
            if layer(target) != own and layer(target) not in ALLOWED[own]:
                wrong.append((module, target))
    assert not wrong, f"imports against the layering: {wrong}"


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        state[node] = 2
        path.pop()
        return None

    for start in sorted(edges):
        if start not in state and (cycle := visit(start)):
            return cycle
    return None


def test_no_import_cycle_lazy_imports_included():
    assert find_cycle(graph()) is None, f"import cycle: {' -> '.join(find_cycle(graph()))}"


def test_the_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_the_engine_never_imports_qt():
    modules = engine_modules()
    qt = {name: sorted(m for m in imports_of(path, modules) if m.split(".")[0] in ("PySide6", "PyQt5", "PyQt6"))
          for name, path in modules.items()}
    assert not {k: v for k, v in qt.items() if v}


@pytest.mark.parametrize("argv", [["--help"], ["templates", "list"], ["generate", "--help"], ["models", "list"]])
def test_help_and_listings_do_not_load_torch(argv, tmp_path, monkeypatch):
    monkeypatch.setenv("GPT2_DESKTOP_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    code = ("import sys\n"
            "from engine.tooling.cli import main\n"
            "try:\n"
            f"    main({argv!r})\n"
            "except SystemExit:\n"
            "    pass\n"
            "print('torch loaded' if 'torch' in sys.modules else 'no torch')\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.stdout.strip().endswith("no torch"), result.stdout[-500:] + result.stderr[-500:]
