"""The package's rooms and the way data flows between them, checked from the imports.

The value layer records; the engine runs the graph through the rule table; networks, optimizers,
pictures, the stepper, explain and the tape only read. No import circle, even a lazy one inside a
function (imports under ``if TYPE_CHECKING:`` are for the type checker only and do not count).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "tinygrad_bp"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    name = ".".join(("tinygrad_bp", *parts))
    return name.removesuffix(".__init__")


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip |= {id(n) for n in ast.walk(node)}
    return skip


def _imports(path: Path) -> set[str]:
    """The tinygrad_bp modules ``path`` imports at run time (at the top or inside a function)."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    tree = ast.parse(path.read_text())
    skip = _type_checking_nodes(tree)
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            if node.module is None or target == "tinygrad_bp":
                found |= {f"{target}.{alias.name}" for alias in node.names}
            found.add(target)
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
    return {m for m in found if m.startswith("tinygrad_bp")}


def _graph() -> dict[str, set[str]]:
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    return {
        m: {d for d in _imports(p) if d in modules and d not in (m, "tinygrad_bp")}
        for m, p in modules.items()
    }


def test_there_is_no_import_circle():
    graph = _graph()
    cycles = []
    for start in graph:
        stack = [(start, [start])]
        while stack:
            node, path = stack.pop()
            for dep in graph[node]:
                if dep == start:
                    cycles.append(" -> ".join([*path, start]))
                elif dep not in path:
                    stack.append((dep, [*path, dep]))
    assert not cycles, cycles[:5]


@pytest.mark.parametrize(
    ("module", "allowed"),
    [
        # the value layer records, from the table; it never imports the engine
        ("tinygrad_bp.value", {"tinygrad_bp.errors", "tinygrad_bp.expressions", "tinygrad_bp.rules"}),
        ("tinygrad_bp.rules", {"tinygrad_bp.errors", "tinygrad_bp.expressions"}),
        ("tinygrad_bp.expressions", set()),
        # the engine runs the graph through the table
        (
            "tinygrad_bp.engine",
            {"tinygrad_bp.errors", "tinygrad_bp.expressions", "tinygrad_bp.rules", "tinygrad_bp.value"},
        ),
    ],
)
def test_the_core_imports_only_what_is_below_it(module, allowed):
    assert _graph()[module] <= allowed, _graph()[module] - allowed


def test_nothing_below_the_engine_imports_what_reads_graphs():
    readers = {"nn", "optim", "losses", "train", "viz", "explain", "tape", "stepper", "interop"}
    for module in ("tinygrad_bp.value", "tinygrad_bp.rules", "tinygrad_bp.engine", "tinygrad_bp.expressions"):
        assert not {d for d in _graph()[module] if d.split(".")[1] in readers}, module


def test_public_flags_are_keyword_only():
    """As in PyTorch, a flag is passed by name (``grad(y, [x], 0.5)`` cannot mean create_graph=0.5).

    Kept positional on purpose, as their models have them: Value's requires_grad (API.md),
    SGD's nesterov and Adam's amsgrad (torch.optim), micrograd's Neuron(nin, nonlin), and
    graphviz.Digraph's strict (viz.Drawing subclasses it).
    """
    import importlib
    import inspect
    import pkgutil

    import tinygrad_bp

    kept = {"Value.__init__", "SGD.__init__", "Adam.__init__", "Neuron.__init__", "Drawing.__init__"}
    found = []
    names = ["tinygrad_bp", *(m.name for m in pkgutil.walk_packages(tinygrad_bp.__path__, "tinygrad_bp."))]
    for name in names:
        if "__main__" in name:
            continue
        try:
            module = importlib.import_module(name)
        except ImportError:  # an optional dependency (ipywidgets for the stepper's widget)
            continue
        for attr in getattr(module, "__all__", []):
            obj = getattr(module, attr)
            functions = [(attr, obj)] if inspect.isfunction(obj) else []
            if inspect.isclass(obj):
                functions += [
                    (f"{attr}.{m}", f)
                    for m, f in vars(obj).items()
                    if inspect.isfunction(f) and (m == "__init__" or not m.startswith("_"))
                ]
            for label, function in functions:
                parameters = inspect.signature(function).parameters.values()
                found.extend(
                    f"{name}.{label}({p.name})"
                    for p in parameters
                    if p.kind is p.POSITIONAL_OR_KEYWORD and isinstance(p.default, bool) and label not in kept
                )
    assert not found, found
