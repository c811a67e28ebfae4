"""The package's shape: the import graph of src/safepref has no cycle, imports sit at module top (lazy only for
heavy libraries, each with its reason), and every content key goes through safepref.core.keys."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "safepref"
# Third-party libraries slow enough to import (0.7-9 s each on 2 cores) that the CLI loads them only when used.
HEAVY = {"torch", "transformers", "trl", "peft", "datasets", "lm_eval", "vllm", "deepspeed", "accelerate",
         "sentence_transformers", "sklearn", "scipy", "matplotlib", "safetensors", "joblib", "openai"}
MAX_ROOT_MODULES = 8


def _modules() -> dict[str, Path]:
    modules = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = path
    return modules


MODULES = _modules()


def _resolve(name: str) -> str | None:
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _imported(node: ast.AST) -> list[str]:
    """safepref modules a statement imports (``from pkg import module`` names the module, not the package)."""
    if isinstance(node, ast.Import):
        return [m for a in node.names if a.name.startswith("safepref") and (m := _resolve(a.name))]
    if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("safepref"):
        found = []
        for alias in node.names:
            full = f"{node.module}.{alias.name}"
            found.append(full if full in MODULES else _resolve(node.module))
        return [m for m in found if m]
    return []


def import_graph() -> dict[str, set[str]]:
    """Every import in every module, at any depth (functions and TYPE_CHECKING blocks included)."""
    graph = {}
    for name, path in MODULES.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        graph[name] = {m for node in ast.walk(tree) for m in _imported(node)} - {name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle as a path (first node repeated at the end), or None."""
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == 1:
                return path[path.index(target):] + [target]
            if target not in state and (cycle := visit(target)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_find_cycle_finds_one_and_only_when_there_is_one():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


def test_the_import_graph_has_no_cycle():
    graph = import_graph()
    assert len(graph) > 50 and graph["safepref.runner.run"], "the graph must see the package's imports"
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def _top_level_heavy(path: Path) -> bool:
    """Whether a module imports a heavy library at its top (importing it is then as slow as the library)."""
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
            [node.module or ""] if isinstance(node, ast.ImportFrom) else []
        if any(n.split(".")[0] in HEAVY for n in names):
            return True
    return False


def test_imports_inside_functions_are_heavy_ones_with_a_reason():
    problems = []
    for path in MODULES.values():
        lines = path.read_text(encoding="utf-8").splitlines()
        for function in ast.walk(ast.parse("\n".join(lines))):
            if not isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            for node in ast.walk(function):
                if not isinstance(node, ast.Import | ast.ImportFrom):
                    continue
                where = f"{path.relative_to(PACKAGE.parent)}:{node.lineno}"
                top = (node.names[0].name if isinstance(node, ast.Import) else node.module or "").split(".")[0]
                local = _imported(node)
                if local:
                    if not all(_top_level_heavy(MODULES[m]) for m in local):
                        problems.append(f"{where}: a light safepref module imported inside a function: {local}")
                elif top not in HEAVY:
                    problems.append(f"{where}: '{top}' is not heavy: import it at the module's top")
                # the reason: a comment on the import, or on the line just above (one comment may cover a block)
                above = [lines[i].strip() for i in range(node.lineno - 2, function.lineno - 1, -1)
                         if lines[i].strip().startswith(("from ", "import ", "#"))]
                on_statement = any("#" in lines[i] for i in range(node.lineno - 1, node.end_lineno))
                commented = on_statement or any(a.startswith("#") for a in above[:4])
                if not commented:
                    problems.append(f"{where}: a lazy import without its reason (a comment)")
    assert not problems, "\n".join(problems)


def test_few_modules_at_the_package_root():
    root = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert len(root) <= MAX_ROOT_MODULES, root


def test_every_package_says_what_flows_in_and_out():
    for init in PACKAGE.rglob("__init__.py"):
        docstring = ast.get_docstring(ast.parse(init.read_text(encoding="utf-8")))
        assert docstring and len(docstring) > 40, f"{init.relative_to(PACKAGE.parent)} needs a docstring"


@pytest.mark.parametrize("pattern", ["default=str", "hashlib.sha256(json.dumps"])
def test_content_keys_go_through_keys(pattern):
    offenders = [str(p.relative_to(PACKAGE.parent)) for p in PACKAGE.rglob("*.py")
                 if pattern in p.read_text(encoding="utf-8")]
    assert not offenders, offenders
