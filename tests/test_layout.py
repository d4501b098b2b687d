"""The package's import graph has no cycle: every module imports only lower floors."""

from __future__ import annotations

import ast
from pathlib import Path

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
    assert "cerberus.engine" in graph["cerberus.cli.training"]  # imported inside the train command
    assert "cerberus.checkpoints" in graph["cerberus.engine"]


def test_package_has_no_import_cycle():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_training_loop_does_not_know_evaluation_or_search():
    deps = import_graph()["cerberus.engine"]
    assert not deps & {"cerberus.evaluation", "cerberus.metrics", "cerberus.index"}


# --------------------------------------------------------------------------- one search layer

SEARCH_LAYER = "cerberus.search"
BELOW_SEARCH = {
    "cerberus.index",
    "cerberus.inference",
    "cerberus.model",
    "cerberus.checkpoints",
    *(f"cerberus.store{m}" for m in ("", ".base", ".memory", ".npz", ".local", ".milvus")),
}
"""The gallery index and store, the inference model and the model's construction / loading:
the command line and the page reach them only through :mod:`cerberus.search`."""

JUSTIFIED = {
    # `info`: parameters and FLOPs of a model built from a config, no weights, no search
    ("cerberus.cli.training", "cerberus.model"),
    ("cerberus.cli.training", "cerberus.checkpoints"),
    # `visualize tsne`: the dataset a checkpoint's config names (explain.tsne_compare embeds)
    ("cerberus.cli.visualize", "cerberus.checkpoints"),
}
"""The only (front, module below the search layer) imports allowed, each for a command that
neither embeds queries nor searches."""


def fronts(graph: dict[str, set[str]]) -> list[str]:
    """The modules users talk to: every ``cerberus.cli`` module and ``cerberus.serve``."""
    return sorted(m for m in graph if m == "cerberus.serve" or m.startswith("cerberus.cli"))


def bypasses(graph: dict[str, set[str]]) -> list[tuple[str, str]]:
    """(front, module) pairs where a front imports a module below the search layer directly
    (at top level, in a function or for typing), beyond :data:`JUSTIFIED`."""
    return sorted(
        (m, dep)
        for m in fronts(graph)
        for dep in graph[m] & BELOW_SEARCH
        if (m, dep) not in JUSTIFIED
    )


def test_bypass_check_finds_a_planted_import():
    graph = {
        "cerberus.cli.gallery": {"cerberus.search", "cerberus.index"},
        "cerberus.serve": {"cerberus.inference"},
        "cerberus.cli.training": {"cerberus.model"},
        "cerberus.search": {"cerberus.index", "cerberus.inference"},
    }
    assert bypasses(graph) == [
        ("cerberus.cli.gallery", "cerberus.index"),
        ("cerberus.serve", "cerberus.inference"),
    ]


def test_cli_and_page_reach_model_and_index_only_through_the_search_layer():
    graph = import_graph()
    found = fronts(graph)
    assert "cerberus.serve" in found and "cerberus.cli.gallery" in found and len(found) >= 6
    assert bypasses(graph) == []
    for front in ("cerberus.serve", "cerberus.cli.gallery", "cerberus.cli.model"):
        assert SEARCH_LAYER in graph[front], front
    # the search layer is the one that knows both the store and the model
    assert {"cerberus.index", "cerberus.inference"} <= set().union(
        *(deps for m, deps in graph.items() if m.startswith(SEARCH_LAYER))
    )
    # and the store itself never runs the model
    assert not graph["cerberus.index"] & {"cerberus.inference", "cerberus.model"}


def test_search_layer_and_its_fronts_stay_under_700_lines():
    mine = ("cerberus.cli", "cerberus.search", "cerberus.serve", "cerberus.index", "cerberus.inf")
    lines = {
        _module_name(p): len(p.read_text().splitlines())
        for p in PACKAGE.rglob("*.py")
        if _module_name(p).startswith(mine)
    }
    assert "cerberus.cli.gallery" in lines and "cerberus.search.gallery" in lines
    assert {m: n for m, n in lines.items() if n > 700} == {}


MAX_MODULE_LINES = 700


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
    offenders = long_modules()
    assert not offenders, f"modules over {MAX_MODULE_LINES} lines: {offenders}"


FOOTAGE = "cerberus.footage"
FOOTAGE_MAY_IMPORT = (
    "cerberus.footage",
    "cerberus.errors",
    "cerberus.files",
    "cerberus.store",
    "cerberus.scoring",
    "cerberus.inference",
    "cerberus.data",
    "cerberus.schema",
)
"""What the footage package (method §9.3) stands on; the command line, the page and the search
layer may use it, nothing below them."""


def footage_violations(graph: dict[str, set[str]]) -> list[tuple[str, str]]:
    """(importer, imported) pairs that break the footage package's place: it importing
    something outside :data:`FOOTAGE_MAY_IMPORT`, or a module below it importing it."""
    above = ("cerberus.cli", "cerberus.serve", "cerberus.search", FOOTAGE)
    bad = []
    for m, deps in graph.items():
        if m.startswith(FOOTAGE):
            bad += [(m, d) for d in deps if not d.startswith(FOOTAGE_MAY_IMPORT)]
        elif not m.startswith(above):
            bad += [(m, d) for d in deps if d.startswith(FOOTAGE)]
    return sorted(bad)


def test_footage_check_finds_planted_imports():
    graph = {
        "cerberus.footage.ingest": {"cerberus.store.base", "cerberus.search"},
        "cerberus.store.local": {"cerberus.footage.video"},
        "cerberus.cli.footage": {"cerberus.footage.ingest"},
    }
    assert footage_violations(graph) == [
        ("cerberus.footage.ingest", "cerberus.search"),
        ("cerberus.store.local", "cerberus.footage.video"),
    ]


def test_footage_sits_above_the_store_and_the_model():
    graph = import_graph()
    assert "cerberus.footage.ingest" in graph["cerberus.cli.footage"]
    assert footage_violations(graph) == []
