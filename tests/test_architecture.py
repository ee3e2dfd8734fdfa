"""The code's shape, checked. The engine: its layers import downwards only, no import cycle (lazy imports
included), no Qt and nothing of the app, and the command line's help and listings do not load torch. The app:
packages by feature with a few shared modules on top, no import cycle (lazy imports included), its Qt-free
modules free of Qt. The tests: no test module imports another (shared code lives in helpers.py and
conftest.py)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ENGINE = ROOT / "engine"
APP = ROOT / "app"
# What each layer may import from the engine, besides itself and the shared modules.
SHARED = {"engine.errors", "engine.paths", "engine.files"}
ALLOWED = {
    "engine.core": set(),
    "engine.inference": {"engine.core"},
    "engine.store": {"engine.core"},
    "engine.tooling": {"engine", "engine.core", "engine.inference", "engine.store"},
    "engine": {"engine.core", "engine.inference", "engine.store"},  # the package's public surface
}


def module_name(path: Path, base: Path = ROOT) -> str:
    parts = path.relative_to(base).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules_in(package: Path) -> dict[str, Path]:
    """Every module of a package folder, by its dotted name."""
    return {module_name(p, package.parent): p for p in package.rglob("*.py")}


def engine_modules() -> dict[str, Path]:
    return modules_in(ENGINE)


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


def graph(package: Path = ENGINE) -> dict[str, set[str]]:
    """Each module of the package → the package's modules it imports (anywhere in it: functions and
    `if TYPE_CHECKING:` blocks too)."""
    modules = modules_in(package)
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


def test_the_engine_never_imports_the_app():
    modules = engine_modules()
    app = {name: sorted(m for m in imports_of(path, modules) if m.split(".")[0] == "app")
           for name, path in modules.items()}
    assert not {k: v for k, v in app.items() if v}


# The app: packages by feature (app/chat/, app/probe/, ... see docs/ARCHITECTURE.md), the window in app/shell/,
# and on top only the entry point and the few modules every package shares.
APP_TOP_LEVEL_AT_MOST = 8
# Modules without Qt: the history, the token data, the runs, the servers, the settings file, the presets, the
# chat's prompts, titles and its slots' error reporting. They are used from the command line (`gpt2-desktop
# history`) and tested without a QApplication.
QT_FREE = ("app.history.store", "app.history.schema", "app.history.records", "app.history.errors",
           "app.history.transfer", "app.probe.token_data", "app.finetune.runs",
           "app.models.servers", "app.settings", "app.chat.presets", "app.chat.prompts", "app.chat.titles",
           "app.chat.reporting", "app.version")
QT = ("PySide6", "PyQt5", "PyQt6", "shiboken6")


def test_the_app_has_no_import_cycle_lazy_imports_included():
    cycle = find_cycle(graph(APP))
    assert cycle is None, f"import cycle: {' -> '.join(cycle)}"


def test_the_cycle_check_sees_imports_inside_functions(tmp_path):
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("import os\n\n\ndef later():\n    from pkg.b import thing\n    return thing\n")
    (package / "b.py").write_text("from pkg import a\n\nthing = a\n")
    assert find_cycle(graph(package)) == ["pkg.a", "pkg.b", "pkg.a"]


def test_the_app_top_level_keeps_a_few_modules():
    top = sorted(p.name for p in APP.glob("*.py") if p.name != "__init__.py")
    assert len(top) <= APP_TOP_LEVEL_AT_MOST, f"app/ has {len(top)} modules at its top level: {top}"


def test_each_app_package_says_what_it_owns_and_re_exports_nothing():
    for init in APP.glob("*/__init__.py"):
        tree = ast.parse(init.read_text(encoding="utf-8"))
        assert ast.get_docstring(tree), f"{init.relative_to(ROOT)}: no docstring saying what the package owns"
        assert len(tree.body) == 1, f"{init.relative_to(ROOT)}: more than its docstring"


def test_qt_free_app_modules_import_no_qt():
    modules = modules_in(APP)
    assert set(QT_FREE) <= set(modules), sorted(set(QT_FREE) - set(modules))
    wrong = {}
    for name in QT_FREE:
        imported = imports_of(modules[name], modules)
        qt = sorted(m for m in imported if m.split(".")[0] in QT)
        app_with_qt = sorted(m for m in imported if m in modules and m != name and m not in QT_FREE
                             and modules[m].name != "__init__.py")
        if qt or app_with_qt:
            wrong[name] = qt + app_with_qt
    assert not wrong, f"Qt (or app modules that may use it) in Qt-free modules: {wrong}"


def test_qt_free_app_modules_load_without_qt():
    code = ("import sys\n"
            + "".join(f"import {name}\n" for name in QT_FREE)
            + "print(sorted(m for m in sys.modules if m.split('.')[0] in " + repr(QT) + "))\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-1000:]
    assert result.stdout.strip() == "[]", result.stdout


def test_the_app_tests_mirror_the_app_packages():
    tests = Path(__file__).resolve().parent / "app"
    folders = {p.parent.relative_to(tests).parts[0] for p in tests.rglob("test_*.py") if p.parent != tests}
    assert folders, "the window's tests live in tests/app/<package>/"
    assert not {f for f in folders if not (ROOT / "app" / f / "__init__.py").is_file()}, folders


def test_no_test_module_imports_another():
    tests = Path(__file__).resolve().parent
    modules = {".".join(("tests",) + p.relative_to(tests).with_suffix("").parts): p for p in tests.rglob("*.py")}
    wrong = {}
    for name, path in modules.items():
        test_modules = sorted(m for m in imports_of(path, modules) if m.split(".")[-1].startswith("test_"))
        if test_modules:
            wrong[name] = test_modules
    assert not wrong, f"test modules importing test modules (move what they share to helpers.py or conftest.py): {wrong}"


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
