"""The package's import graph has no cycle: every module imports only lower floors."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import cerberus

PACKAGE = Path(cerberus.__file__).parent


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, modules: set[str]) -> set[str]:
    """Every ``cerberus`` module ``path`` imports, at top level, in functions or for typing."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        else:
            continue
        found.update(n for n in names if n in modules)
    return found


def import_graph() -> dict[str, set[str]]:
    files = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    modules = set(files)
    graph = {m: _imports(p, modules) - {m} for m, p in files.items()}
    # A package's __init__ runs before its modules: `import cerberus.data.x` imports cerberus.data.
    return {m: deps - {m.rsplit(".", 1)[0]} for m, deps in graph.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a path ``[a, b, ..., a]``, or None (iterative three-colour DFS)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    for root in sorted(graph):
        if state.get(root):
            continue
        path, stack = [root], [iter(sorted(graph[root]))]
        state[root] = 1
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                state[path.pop()] = 2
                stack.pop()
            elif state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt]
            elif not state.get(nxt):
                state[nxt] = 1
                path.append(nxt)
                stack.append(iter(sorted(graph.get(nxt, ()))))
    return None


def test_find_cycle_finds_a_planted_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": {"d"}, "d": {"b"}}) == ["b", "c", "d", "b"]


def test_graph_sees_function_level_imports():
    graph = import_graph()
    assert "cerberus.engine" in graph["cerberus.cli"]  # imported inside the train command
    assert "cerberus.checkpoints" in graph["cerberus.engine"]


def test_package_has_no_import_cycle():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_training_loop_does_not_know_evaluation_or_search():
    deps = import_graph()["cerberus.engine"]
    assert not deps & {"cerberus.evaluation", "cerberus.metrics", "cerberus.index"}


MAX_MODULE_LINES = 700
NOT_YET_SPLIT = {"cli.py"}  # split on branch search


def long_modules(limit: int = MAX_MODULE_LINES) -> dict[str, int]:
    """``{path relative to the package: line count}`` of every module over ``limit`` lines."""
    counts = {
        p.relative_to(PACKAGE).as_posix(): len(p.read_text().splitlines())
        for p in PACKAGE.rglob("*.py")
    }
    return {name: n for name, n in sorted(counts.items()) if n > limit}


def test_long_modules_finds_one_over_a_planted_limit():
    assert "schema.py" in long_modules(limit=100)


def test_no_module_is_over_700_lines():
    offenders = {k: v for k, v in long_modules().items() if k not in NOT_YET_SPLIT}
    assert not offenders, f"modules over {MAX_MODULE_LINES} lines: {offenders}"


# split on branch search: the merger removes this test (and NOT_YET_SPLIT) with that split.
@pytest.mark.xfail(strict=True, reason="cli.py is split on branch search")
def test_cli_is_not_over_700_lines():
    assert not set(long_modules()) & NOT_YET_SPLIT
