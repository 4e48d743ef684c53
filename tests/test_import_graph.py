"""The package's import graph, drawn from the source: no cycles, no private names, layers kept.

Every ``import`` of a ``vitcourse`` module, at the top of a file or inside a function (a lazy
import is a dependency all the same), is an edge; imports under ``if TYPE_CHECKING:`` are not
(they run only for type checkers: the root package's lazy API table).

- no cycles;
- no module imports another module's private name (``from .x import _helper`` or
  ``x._helper``): what is shared is public;
- data flows one way: each sub-package imports only from the layers before it in ``LAYERS``
  (and from itself), so nothing imports ``grading`` but ``grading`` itself and ``cli``, and no
  module imports the root package (its API is for users).
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import ROOT

PACKAGE = "vitcourse"
# Each layer may import the layers before it, never those after it.
LAYERS = ("validation", "models", "data", "training", "analysis", "experiments", "course", "grading", "cli")


@dataclass(frozen=True)
class Import:
    importer: str  # the importing module, e.g. "vitcourse.training.loop"
    module: str  # the imported module, e.g. "vitcourse.data.pipeline"
    names: tuple[str, ...]  # names taken from it (``from module import names``), or attributes used
    line: int


def _module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules(root: Path) -> dict[str, Path]:
    return {_module_name(path, root): path for path in sorted((root / PACKAGE).rglob("*.py"))}


def _is_type_checking(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and ast.unparse(node.test) in ("TYPE_CHECKING", "typing.TYPE_CHECKING")


def _absolute(importer: str, is_package: bool, level: int, module: str | None) -> str:
    """The absolute name a (possibly relative) ``from`` import refers to."""
    if level == 0:
        return module or ""
    base = importer.split(".")
    base = base if is_package else base[:-1]
    base = base[: len(base) - (level - 1)]
    return ".".join(base + ([module] if module else []))


def imports(root: Path = ROOT) -> list[Import]:
    """Every edge of the package's import graph, with the names each import takes."""
    modules = _modules(root)
    found = []
    for importer, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        skipped = {id(n) for block in ast.walk(tree) if _is_type_checking(block) for n in ast.walk(block)}
        aliases: dict[str, str] = {}  # a local name bound to a package module -> that module
        for node in ast.walk(tree):
            if id(node) in skipped:
                continue
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.split(".")[0] == PACKAGE:
                        found.append(Import(importer, alias.name, (), node.lineno))
                        # ``import vitcourse.x`` binds ``vitcourse``; ``import vitcourse.x as y`` binds y
                        aliases[alias.asname or PACKAGE] = alias.name if alias.asname else PACKAGE
            elif isinstance(node, ast.ImportFrom):
                target = _absolute(importer, path.name == "__init__.py", node.level, node.module)
                if target.split(".")[0] != PACKAGE:
                    continue
                for alias in node.names:
                    submodule = f"{target}.{alias.name}"
                    if submodule in modules:  # ``from . import channel``: the module itself
                        found.append(Import(importer, submodule, (), node.lineno))
                        aliases[alias.asname or alias.name] = submodule
                    else:
                        found.append(Import(importer, target, (alias.name,), node.lineno))
        # ``channel._helper``, ``vitcourse.models.vit.Block``: the name a chain of attributes takes
        # from the longest module it starts with (only whole chains, not their inner parts).
        inner = {id(n.value) for n in ast.walk(tree) if isinstance(n, ast.Attribute)}
        for node in ast.walk(tree):
            if not isinstance(node, ast.Attribute) or id(node) in inner or id(node) in skipped:
                continue
            chain = _dotted(node)
            if chain and chain[0] in aliases:
                parts = aliases[chain[0]].split(".") + chain[1:]
                cut = max(i for i in range(1, len(parts) + 1) if ".".join(parts[:i]) in modules)
                found.append(Import(importer, ".".join(parts[:cut]), tuple(parts[cut : cut + 1]), node.lineno))
    return found


def _dotted(node: ast.Attribute) -> list[str] | None:
    """``a.b.c`` as ``["a", "b", "c"]``, or None when the chain does not start at a name."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    return [node.id, *reversed(parts)] if isinstance(node, ast.Name) else None


def _layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else PACKAGE


def _dunder(name: str) -> bool:
    return name.startswith("__") and name.endswith("__")  # ``vitcourse.__file__`` is no API


def _private(name: str) -> bool:
    return name.startswith("_") and not _dunder(name)


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), and self-imports."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for succ in sorted(edges.get(node, ())):
            if succ not in index:
                visit(succ)
                low[node] = min(low[node], low[succ])
            elif succ in on_stack:
                low[node] = min(low[node], index[succ])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1 or node in edges.get(node, ()):
                components.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return components


def check(found: list[Import]) -> list[str]:
    """Every rule the graph breaks, as a sentence naming the file and line."""
    problems = []
    edges: dict[str, set[str]] = {}
    for edge in found:
        if edge.module != edge.importer:
            edges.setdefault(edge.importer, set()).add(edge.module)
        where = f"{edge.importer} (line {edge.line})"
        private = [name for name in edge.names if _private(name)]
        if private and edge.module != edge.importer:
            problems.append(f"{where} uses the private {', '.join(private)} of {edge.module}")
        if edge.module == PACKAGE and edge.importer != PACKAGE and any(not _dunder(n) for n in edge.names):
            problems.append(f"{where} imports the root package {PACKAGE}; import from the module that defines the name")
        source, target = _layer(edge.importer), _layer(edge.module)
        if source in LAYERS and target in LAYERS and LAYERS.index(target) > LAYERS.index(source):
            problems.append(f"{where} imports {edge.module}: {source} may not use {target}, a later layer")
    problems += [f"import cycle: {' -> '.join(cycle)}" for cycle in _cycles(edges)]
    return problems


def test_every_module_sits_in_a_layer():
    unplaced = [m for m in _modules(ROOT) if m != PACKAGE and _layer(m) not in LAYERS]
    assert not unplaced, f"modules outside the layers {LAYERS}: {unplaced}"


def test_the_graph_is_drawn_from_the_source():
    found = imports()
    edges = {(e.importer, e.module) for e in found}
    # A few edges the package must have: at top level, inside a function, to a module by name.
    assert ("vitcourse.training.loop", "vitcourse.data.pipeline") in edges
    assert ("vitcourse.cli", "vitcourse.course.release") in edges
    assert ("vitcourse.experiments.distillation", "vitcourse.training.recipes") in edges
    # The root's TYPE_CHECKING table is not an edge: importing vitcourse imports nothing heavy.
    assert not any(e.importer == PACKAGE for e in found)


def test_no_cycles_no_private_imports_no_layer_violations():
    problems = check(imports())
    assert not problems, "\n".join(problems)


def _write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / PACKAGE / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


@pytest.mark.parametrize("files, expected", [
    ({"models/__init__.py": "", "models/a.py": "from . import b\n", "models/b.py": "def f():\n    from .a import g\n"},
     "import cycle: vitcourse.models.a -> vitcourse.models.b"),
    ({"models/__init__.py": "", "models/a.py": "from .b import _helper\n", "models/b.py": "_helper = 1\n"},
     "uses the private _helper of vitcourse.models.b"),
    ({"models/__init__.py": "", "models/a.py": "from . import b\nx = b._helper\n", "models/b.py": "_helper = 1\n"},
     "uses the private _helper of vitcourse.models.b"),
    ({"models/__init__.py": "", "models/a.py": "import vitcourse.models.b\nx = vitcourse.models.b._helper.y\n",
      "models/b.py": "_helper = 1\n"}, "uses the private _helper of vitcourse.models.b"),
    ({"models/__init__.py": "", "models/a.py": "from ..training import loop\n", "training/__init__.py": "",
      "training/loop.py": ""}, "models may not use training"),
    ({"course/__init__.py": "", "course/a.py": "import vitcourse.grading.x\n", "grading/__init__.py": "",
      "grading/x.py": ""}, "course may not use grading"),
    ({"models/__init__.py": "", "models/a.py": "from .. import create_model\n", "__init__.py": ""},
     "imports the root package"),
])
def test_each_rule_can_fail(tmp_path, files, expected):
    problems = check(imports(_write(tmp_path, files)))
    assert any(expected in problem for problem in problems), problems


def test_dotted_module_paths_and_dunders_are_not_root_imports(tmp_path):
    root = _write(tmp_path, {"__init__.py": "", "models/__init__.py": "", "models/b.py": "f = 1\n",
                             "models/a.py": "import vitcourse\nimport vitcourse.models.b\nx = vitcourse.models.b.f\n"
                                            "here = vitcourse.__file__\n"})
    found = imports(root)
    assert Import("vitcourse.models.a", "vitcourse.models.b", ("f",), 3) in found
    assert check(found) == []


def test_type_checking_imports_are_not_edges(tmp_path):
    root = _write(tmp_path, {"__init__.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .grading.x import y\n",
                             "grading/__init__.py": "", "grading/x.py": "", "cli.py": "from .grading import x\n"})
    assert check(imports(root)) == []
