"""The layering rule of docs/layout.md, checked on the source: every import of every module of
`atld/`, `app.py` and `app_pages/` (lazy imports inside functions and `TYPE_CHECKING` imports
included) goes to a module of its own layer or a lower one, and no modules import each other in a
circle."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Lowest first; a module belongs to the first layer with a prefix that names it or a package above it.
# Keep in step with docs/layout.md ("Layers").
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("ground", ("atld", "atld.errors", "atld.vocab", "atld.fileio", "atld.lazy", "atld.progress", "atld.priority")),
    ("settings", ("atld.config", "atld.config.settings", "atld.config.fields")),
    ("run format", ("atld.runs", "atld.runs.card", "atld.runs.rundir")),
    ("data", ("atld.data", "atld.device")),
    ("models", ("atld.models",)),
    ("attacks", ("atld.attacks",)),
    ("configs", ("atld.config.train", "atld.config.eval", "atld.config.latent")),
    ("methods, inference", ("atld.methods", "atld.inference")),
    ("store, training", ("atld.runs.store", "atld.runs.train_state", "atld.runs.importer", "atld.train")),
    ("evaluate, latent", ("atld.evaluate", "atld.latent")),
    ("jobs", ("atld.jobs",)),
    ("cli", ("atld.cli", "atld.__main__")),
    ("app core", ("atld.ui",)),  # Streamlit-free page logic, the compute service, its views and workers
    ("app session", ("atld.ui.session", "atld.ui.server", "atld.ui.show")),  # Streamlit-bound
    ("app pages", ("app", "app_pages")),
)


def module_files() -> dict[str, Path]:
    files = {}
    for path in [*ROOT.glob("atld/**/*.py"), ROOT / "app.py", *ROOT.glob("app_pages/*.py")]:
        parts = path.relative_to(ROOT).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        files[name] = path
    return files


def lazy_map(tree: ast.Module) -> dict[str, str]:
    """A package's lazy re-exports (`atld.lazy.lazy_exports`): name -> the module that gives it."""
    out = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Dict):
            for key, value in zip(node.keys, node.values):
                if isinstance(key, ast.Constant) and isinstance(key.value, str) and isinstance(value, ast.Tuple):
                    out.update({e.value: key.value for e in value.elts if isinstance(e, ast.Constant)})
    return out


def import_graph() -> dict[str, set[str]]:
    """module -> the project modules it imports (a name taken from a package goes to the module
    that defines it, so importing `atld.evaluate.evaluate` is an edge to `atld.evaluate.runner`)."""
    files = module_files()
    trees = {name: ast.parse(path.read_text(encoding="utf-8")) for name, path in files.items()}
    gives = {}  # package -> {name: module}
    for name, tree in trees.items():
        if files[name].name == "__init__.py":
            table = lazy_map(tree)
            for node in ast.walk(tree):
                if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                    table.update({a.asname or a.name: node.module for a in node.names})
            gives[name] = table

    def target(package: str, name: str) -> str | None:
        if f"{package}.{name}" in files:
            return f"{package}.{name}"
        if name in gives.get(package, {}):
            return gives[package][name]
        return package if package in files else None

    graph = {}
    for name, tree in trees.items():
        is_package = files[name].name == "__init__.py"
        edges = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                edges.update(a.name for a in node.names if a.name in files)
            elif isinstance(node, ast.ImportFrom):
                module = node.module or ""
                if node.level:
                    base = name.split(".") if is_package else name.split(".")[:-1]
                    base = base[:len(base) - node.level + 1]
                    module = ".".join([*base, module] if module else base)
                if module.split(".")[0] not in ("atld", "app", "app_pages"):
                    continue
                edges.update(t for a in node.names if (t := target(module, a.name)) is not None)
            elif isinstance(node, ast.Constant) and is_package and isinstance(node.value, str) \
                    and node.value in files and node.value.startswith(name + "."):
                edges.add(node.value)  # a lazy re-export's module
        edges.discard(name)
        graph[name] = edges
    return graph


def layer_of(module: str) -> int:
    best = None
    for index, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if module == prefix or module.startswith(prefix + "."):
                if best is None or len(prefix) > best[1]:
                    best = (index, len(prefix))
    assert best is not None, f"{module} is in no layer: add it to LAYERS and docs/layout.md"
    return best[0]


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_the_graph_sees_lazy_and_type_checking_imports():
    graph = import_graph()
    assert "atld.evaluate.runner" in graph["atld.evaluate"]  # a lazy re-export
    assert "atld.config.train" in graph["atld.methods.base"]  # a TYPE_CHECKING import
    assert "atld.runs.store" in graph["atld.ui.compute"]  # an import inside a function


def test_no_import_circles():
    assert cycles(import_graph()) == []


def test_no_import_runs_upward():
    graph = import_graph()
    upward = sorted(f"{a} ({LAYERS[layer_of(a)][0]}) -> {b} ({LAYERS[layer_of(b)][0]})"
                    for a, edges in graph.items() for b in edges if layer_of(b) > layer_of(a))
    assert upward == []


def test_the_cli_never_imports_the_app():
    graph = import_graph()
    assert not [(a, b) for a, edges in graph.items() if a.startswith("atld.cli") for b in edges
                if b.startswith("atld.ui")]


def test_cycles_and_upward_imports_are_found():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert layer_of("atld.ui.compute") > layer_of("atld.cli.embed") > layer_of("atld.vocab")
