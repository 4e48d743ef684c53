"""The grader's layout is its trust boundary, and the import graph keeps it: untrusted/ (what runs
beside student code) imports nothing from trusted/, and trusted/ nothing from untrusted/; no
module imports another's private name; no import cycles; the worker process loads no trusted
module."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "vitcourse" / "grading"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports() -> dict[str, list[tuple[str, list[str]]]]:
    """module -> [(imported module, names imported from it)], relative imports resolved."""
    graph: dict[str, list[tuple[str, list[str]]]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        name = _module_name(path)
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        found = []
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                base = package.split(".")
                if node.level:
                    base = base[: len(base) - node.level + 1]
                    target = ".".join(base + ([node.module] if node.module else []))
                else:
                    target = node.module
                names = [alias.name for alias in node.names]
                if target.startswith("vitcourse.grading"):
                    # `from . import wire` imports a module, not a name
                    modules = [f"{target}.{n}" for n in names
                               if (PACKAGE.parent.parent / f"{target}.{n}".replace(".", "/")).with_suffix(".py").exists()
                               or (PACKAGE.parent.parent / f"{target}.{n}".replace(".", "/")).is_dir()]
                    found += [(m, []) for m in modules]
                    rest = [n for n in names if f"{target}.{n}" not in modules]
                    if rest:
                        found.append((target, rest))
            elif isinstance(node, ast.Import):
                found += [(alias.name, []) for alias in node.names
                          if alias.name.startswith("vitcourse.grading")]
        graph[name] = found
    return graph


def test_the_sides_do_not_import_each_other():
    for module, imports in _imports().items():
        for target, _ in imports:
            if module.startswith("vitcourse.grading.untrusted"):
                assert not target.startswith("vitcourse.grading.trusted"), (module, target)
            if module.startswith("vitcourse.grading.trusted"):
                assert not target.startswith("vitcourse.grading.untrusted"), (module, target)


def test_no_module_imports_another_modules_private_name():
    for module, imports in _imports().items():
        for target, names in imports:
            private = [n for n in names if n.startswith("_") and not n.startswith("__")]
            assert not private, f"{module} imports {private} from {target}"


def test_no_import_cycles():
    graph = {m: {t for t, _ in imports if t in _imports()} for m, imports in _imports().items()}
    state: dict[str, str] = {}

    def visit(module: str, path: list[str]) -> None:
        state[module] = "open"
        for target in graph.get(module, ()):
            if target == module or target.startswith(module + "."):
                continue  # a package importing its own modules
            assert state.get(target) != "open", " -> ".join(path + [target])
            if target not in state:
                visit(target, path + [target])
        state[module] = "done"

    for module in graph:
        if module not in state:
            visit(module, [module])


def test_the_worker_loads_no_trusted_module():
    probe = ("import sys\nimport vitcourse.grading.untrusted.worker as w\nw._preimport()\n"
             "print(sorted(m for m in sys.modules if m.startswith('vitcourse.grading.trusted.')))")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert done.stdout.strip().splitlines()[-1] == "[]", done.stdout
