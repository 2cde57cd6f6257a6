"""Drawing a computation graph with Graphviz.

:func:`draw_dot` turns the graph behind a :class:`~tinygrad_bp.Value` into a
:class:`graphviz.Digraph`, micrograd-style: one box per Value (label, data,
grad) and one small ellipse per operation between its operands and its
result, with ONE EDGE PER OPERAND OCCURRENCE (``a * a`` draws two edges from
``a``, marked ``[0]`` and ``[1]``). Building the DOT source needs no Graphviz
binary; :func:`to_svg`, :func:`to_png` and :func:`save` lay it out with
Graphviz's ``dot`` when it is installed, else with ``graphviz-pure``, which
pip installs with tinygrad_bp (see :mod:`tinygrad_bp.layout`). In Jupyter the
Digraph itself, :func:`show` and the stepper display as a picture that an
untrusted notebook shows too (see :mod:`tinygrad_bp.display`).

Big graphs stay readable:

* nodes labelled with a module path (``layer1.neuron0.w0``, as
  :mod:`tinygrad_bp.nn` labels them) are grouped in nested clusters, one per
  module (``cluster=True``);
* ``collapse=["layer1.neuron0", "layer2"]`` draws a neuron or a whole layer
  as one box, keeping (deduplicated) edges into and out of it;
* ``subgraph_from=param`` draws only the nodes on paths from ``param`` to the
  root;
* a drawing of more than ``max_nodes`` Values is refused at once with
  :class:`~tinygrad_bp.errors.GraphTooLargeError`: the count stops at the limit.

Labels are user text and are always escaped: every label is written as an
HTML-like Graphviz label with ``& < > "`` escaped, newlines as line breaks and
characters XML cannot carry (control characters, lone surrogates, U+FFFE,
U+FFFF) shown as Python escapes (see :func:`displayed_text`). The DOT and the
SVG therefore stay well-formed for any label, and no label can add markup or
script to the SVG a notebook displays.

Drawing only reads the graph: no node is modified.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import graphviz

from . import layout
from .display import note_bundle, picture_bundle
from .engine import local_derivatives, toposort
from .errors import GraphTooLargeError, GraphvizNotFoundError, LayoutError
from .value import Value

__all__ = [
    "DEFAULT_MAX_NODES",
    "INSTALL_GRAPHVIZ",
    "Drawing",
    "GraphView",
    "count_nodes",
    "displayed_text",
    "draw_dot",
    "element_ids",
    "mimebundle",
    "module_path",
    "render",
    "save",
    "show",
    "to_dot",
    "to_png",
    "to_svg",
    "trace",
]

DEFAULT_MAX_NODES = 500

INSTALL_GRAPHVIZ = layout.INSTALL_HINT

# The formats save() writes, by file extension.
_FORMATS = {
    ".svg": "svg",
    ".png": "png",
    ".pdf": "pdf",
    ".jpg": "jpg",
    ".jpeg": "jpg",
    ".gif": "gif",
    ".dot": "dot",
    ".gv": "dot",
}

_RANKDIRS = ("LR", "RL", "TB", "BT")

# Deeper module paths share the cluster of their first _MAX_CLUSTER_DEPTH components.
_MAX_CLUSTER_DEPTH = 8

_COLORS = {
    "parameter": "#dbeafe",
    "constant": "#f3f4f6",
    "intermediate": "#ffffff",
    "root": "#dcfce7",
    "group": "#ede9fe",
    "highlight": "#fde047",
    "highlight_edge": "#dc2626",
    "op": "#f5f5f5",
    "cluster": "#9ca3af",
}

_ESCAPES = {"\t": "\\t", "\r": "\\r", "\x0b": "\\x0b", "\x0c": "\\x0c"}


# --- safe text ---------------------------------------------------------------------------


def _is_hidden(code: int) -> bool:
    """True for a character shown as an escape: controls (but newline), surrogates, U+FFFE/U+FFFF."""
    return (
        (code < 0x20 and code != 0x0A)
        or 0x7F <= code <= 0x9F
        or 0xD800 <= code <= 0xDFFF
        or code in (0xFFFE, 0xFFFF)
    )


def _visible(ch: str) -> str:
    """One character as a drawing shows it."""
    code = ord(ch)
    if not _is_hidden(code):
        return ch
    if ch in _ESCAPES:
        return _ESCAPES[ch]
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def displayed_text(text: str) -> str:
    r"""The text a drawing shows for ``text``.

    Newlines stay line breaks; control characters, lone surrogates, U+FFFE and
    U+FFFF (which XML cannot carry) become Python escapes such as ``\x07``;
    everything else, markup characters included, is shown as it is.
    """
    return "".join(_visible(ch) for ch in text)


MAX_LABEL_CHARS = 200
"""A label or operation name longer than this is drawn shortened (the Value keeps all of it).

Graphviz refuses an HTML-like label over 16 KB once escaped, and a picture
cannot show a page of text anyway.
"""


def shortened(text: str) -> str:
    """``text`` as a drawing shows it: at most MAX_LABEL_CHARS characters, and how long it was."""
    if len(text) <= MAX_LABEL_CHARS:
        return text
    return f"{text[:MAX_LABEL_CHARS]}\u2026 ({len(text):,} characters)"


def _html(text: str) -> str:
    """``text`` as the content of an HTML-like Graphviz label: shortened, escaped, newlines as <BR/>."""
    shown = displayed_text(shortened(text)).replace("\\", "\\\\")  # Graphviz reads a doubled backslash as one
    shown = shown.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")
    shown = shown.replace("]", "&#93;")  # a lone "]" would otherwise merge into the next cell (Graphviz 2.43)
    return shown.replace("\n", "<BR/>")


def _label(html: str) -> str:
    """An HTML-like label attribute value (the graphviz package passes ``<...>`` through)."""
    return f"<{html}>"


def _number(x: float, precision: int) -> str:
    """``x`` with ``precision`` significant digits."""
    return format(x, f".{precision}g")


# --- what to draw ------------------------------------------------------------------------------


def module_path(label: str) -> tuple[str, ...]:
    """The modules a label names, outermost first.

    ``"layer1.neuron0.w0"`` names ``("layer1", "layer1.neuron0")``.
    A label is taken as a module path only when every component before the
    last is a Python identifier (as :mod:`tinygrad_bp.nn` names modules) and
    the last is not empty; otherwise the result is empty.
    """
    parts = label.split(".")
    if len(parts) < 2 or not parts[-1] or not all(p.isidentifier() for p in parts[:-1]):
        return ()
    parts = parts[: min(len(parts) - 1, _MAX_CLUSTER_DEPTH)]
    return tuple(".".join(parts[: i + 1]) for i in range(len(parts)))


def count_nodes(root: Value, limit: int) -> int:
    """The number of Values reachable from ``root``, counting no further than ``limit + 1``.

    An iterative walk that stops as soon as the count exceeds ``limit``, so
    asking about a graph of a million nodes costs ``limit`` steps.
    """
    seen = {id(root)}
    stack = [root]
    while stack:
        for child in stack.pop().inputs:
            if id(child) not in seen:
                seen.add(id(child))
                if len(seen) > limit:
                    return len(seen)
                stack.append(child)
    return len(seen)


def _too_large(count: str, max_nodes: int) -> GraphTooLargeError:
    return GraphTooLargeError(
        f"draw_dot: the drawing would show {count} Values; max_nodes={max_nodes}. "
        "Draw less of it: collapse=['layer1', 'layer2.neuron0'] draws modules as single boxes, "
        "subgraph_from=param draws only the paths from one Value to the root; "
        "or raise max_nodes (large drawings are slow to lay out and hard to read)."
    )


def _as_values(x: Value | Iterable[Value] | None, what: str) -> list[Value]:
    """None, one Value or an iterable of Values as a list, or TypeError naming ``what``."""
    if x is None:
        return []
    items = [x] if isinstance(x, Value) else list(x)
    for item in items:
        if not isinstance(item, Value):
            msg = f"draw_dot: {what} must be Values, not {type(item).__name__}"
            raise TypeError(msg)
    return items


def _on_paths(order: list[Value], sources: list[Value]) -> list[Value]:
    """The nodes of ``order`` (inputs first, root last) on a path from one of ``sources`` to the root."""
    depends = {id(s) for s in sources}
    for node in order:
        if any(id(x) in depends for x in node.inputs):
            depends.add(id(node))
    missing = [s for s in sources if id(s) not in {id(n) for n in order}]
    if missing:
        name = missing[0].label or repr(missing[0])
        msg = f"draw_dot: subgraph_from={name} is not part of the graph of root"
        raise ValueError(msg)
    return [n for n in order if id(n) in depends]


def _group_of(label: str, prefixes: list[str]) -> str | None:
    """The outermost collapsed prefix that ``label`` falls under, if any."""
    for prefix in prefixes:
        if label == prefix or label.startswith(prefix + "."):
            return prefix
    return None


def _check_collapse(collapse: Iterable[str]) -> list[str]:
    """The collapse prefixes, shortest (outermost) first; TypeError for a non-string."""
    prefixes = list(collapse)
    for p in prefixes:
        if not isinstance(p, str) or not p:
            msg = f"draw_dot: collapse entries must be non-empty module names, not {p!r}"
            raise TypeError(msg)
    return sorted(set(prefixes), key=lambda p: (len(p), p))


@dataclass
class _Plan:
    """What one drawing shows: the Values drawn as boxes, the collapsed groups, names."""

    nodes: list[Value]
    groups: dict[str, list[Value]] = field(default_factory=dict)
    group_of: dict[int, str] = field(default_factory=dict)
    names: dict[int, str] = field(default_factory=dict)
    kept: set[int] = field(default_factory=set)

    def rep(self, node: Value) -> str:
        """The DOT name that stands for ``node``: its own box or its group's."""
        group = self.group_of.get(id(node))
        return self.names[id(node)] if group is None else self.group_name(group)

    def group_name(self, prefix: str) -> str:
        """The DOT name of a collapsed group's box (numbered in order of appearance)."""
        return f"g{list(self.groups).index(prefix)}"


def _plan(root: Value, collapse: list[str], sources: list[Value], max_nodes: int | None) -> _Plan:
    """Walk the graph (after the size guard) and decide what to draw."""
    reduce = bool(collapse or sources)
    if max_nodes is not None and not reduce and count_nodes(root, max_nodes) > max_nodes:
        raise _too_large(f"more than {max_nodes}", max_nodes)
    order = toposort(root)
    if sources:
        order = _on_paths(order, sources)
    plan = _Plan(nodes=[])
    for node in order:
        group = _group_of(node.label, collapse) if collapse else None
        if group is None:
            plan.nodes.append(node)
        else:
            plan.groups.setdefault(group, []).append(node)
            plan.group_of[id(node)] = group
    unused = [p for p in collapse if p not in plan.groups]
    if unused:
        msg = (
            f"draw_dot: collapse={unused[0]!r} matches no node's label (labels look like 'layer1.neuron0.w0')"
        )
        raise ValueError(msg)
    drawn = len(plan.nodes) + len(plan.groups)
    if max_nodes is not None and drawn > max_nodes:
        raise _too_large(str(drawn), max_nodes)
    plan.kept = {id(n) for n in order}
    plan.names = {id(n): f"v{i}" for i, n in enumerate(order)}
    return plan


# --- DOT statements -------------------------------------------------------------------------


@dataclass
class _Style:
    """The drawing options that shape each statement."""

    show_grad: bool
    edge_labels: bool
    precision: int
    root: Value
    highlight: set[int]
    grads: Mapping[Value, float] | None


@dataclass
class _Statements:
    """Node statements by cluster (module path; () is the top level), and edges."""

    nodes: dict[tuple[str, ...], list[tuple[str, dict[str, str]]]] = field(default_factory=dict)
    edges: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)

    def node(self, path: tuple[str, ...], name: str, attrs: dict[str, str]) -> None:
        self.nodes.setdefault(path, []).append((name, attrs))


def _grad_of(node: Value, style: _Style) -> float | None:
    """The gradient a box shows, or None for none."""
    if not style.show_grad or not node.requires_grad:
        return None
    if style.grads is None:
        return node.grad if isinstance(node.grad, (int, float)) else None
    return style.grads.get(node)


def _fill(node: Value, style: _Style) -> str:
    if id(node) in style.highlight:
        return _COLORS["highlight"]
    if node is style.root:
        return _COLORS["root"]
    if node.inputs:
        return _COLORS["intermediate"]
    return _COLORS["parameter"] if node.requires_grad else _COLORS["constant"]


def _table(cells: list[str], fill: str, *, bold: bool = False) -> str:
    """An HTML-like table with one row of already-escaped cells."""
    border = "2" if bold else "0"
    row = "".join(f"<TD>{c}</TD>" for c in cells)
    return (
        f'<TABLE BORDER="{border}" CELLBORDER="1" CELLSPACING="0" CELLPADDING="4" BGCOLOR="{fill}">'
        f"<TR>{row}</TR></TABLE>"
    )


def _value_attrs(node: Value, style: _Style) -> dict[str, str]:
    """The attributes of one Value's box: label, data, grad."""
    cells = [_html(node.label)] if node.label else []
    cells.append(f"data {_number(node.data, style.precision)}")
    g = _grad_of(node, style)
    if g is not None:
        cells.append(f"grad {_number(g, style.precision)}")
    table = _table(cells, _fill(node, style), bold=node is style.root)
    return {"label": _label(table), "shape": "none", "margin": "0"}


def _op_attrs(node: Value, style: _Style) -> dict[str, str]:
    """The attributes of the small ellipse of ``node``'s operation."""
    fill = _COLORS["highlight"] if id(node) in style.highlight else _COLORS["op"]
    return {
        "label": _label(_html(node.op)),
        "shape": "ellipse",
        "style": "filled",
        "fillcolor": fill,
        "fontsize": "11",
        "height": "0.3",
        "margin": "0.04,0.02",
    }


def _group_attrs(prefix: str, members: list[Value], exits: list[Value], style: _Style) -> dict[str, str]:
    """The attributes of a collapsed module's box; its single output's data and grad if it has one."""
    cells = [f"<B>{_html(prefix)}</B>", f"{len(members)} nodes"]
    if len(exits) == 1:
        out = exits[0]
        cells.append(f"out {_number(out.data, style.precision)}")
        g = _grad_of(out, style)
        if g is not None:
            cells.append(f"grad {_number(g, style.precision)}")
    lit = any(id(m) in style.highlight for m in members)
    fill = _COLORS["highlight"] if lit else _COLORS["group"]
    return {"label": _label(_table(cells, fill, bold=True)), "shape": "none", "margin": "0"}


def _local_derivatives(node: Value) -> tuple[float, ...] | None:
    """``node``'s local derivatives (the engine's), or None where they are undefined."""
    try:
        return local_derivatives(node)
    except (ArithmeticError, LookupError, TypeError):  # undefined; no rule; a bad custom op
        return None


def _edge_text(node: Value, i: int, local: tuple[float, ...] | None, style: _Style) -> str:
    """An operand edge's label: ``[i]`` for a repeated operand, the local derivative if asked."""
    parts = []
    if node.inputs.count(node.inputs[i]) > 1:
        parts.append(f"[{i}]")
    if style.edge_labels:
        d = "undefined" if local is None or i >= len(local) else _number(local[i], style.precision)
        parts.append(f"\u2202={d}")
    return " ".join(parts)


def _edge_attrs(text: str, *, lit: bool) -> dict[str, str]:
    attrs = {"label": _label(_html(text))} if text else {}
    if lit:
        attrs.update(color=_COLORS["highlight_edge"], penwidth="2")
    return attrs


def _exits(plan: _Plan) -> dict[str, list[Value]]:
    """For each collapsed group, its members used outside it (or the root)."""
    exits: dict[str, dict[int, Value]] = {g: {} for g in plan.groups}
    for node in [*plan.nodes, *[m for ms in plan.groups.values() for m in ms]]:
        group = plan.group_of.get(id(node))
        for x in node.inputs:
            inner = plan.group_of.get(id(x))
            if inner is not None and inner != group and id(x) in plan.kept:
                exits[inner][id(x)] = x
    return {g: list(e.values()) for g, e in exits.items()}


def _cluster_of(label: str, plan: _Plan) -> tuple[str, ...]:
    """The cluster path of a box; collapsed groups' own clusters are not drawn."""
    return tuple(p for p in module_path(label) if p not in plan.groups)


def _statements(plan: _Plan, style: _Style, *, cluster: bool) -> _Statements:
    """Every node and edge statement of the drawing."""
    out = _Statements()
    merged: dict[tuple[str, str], tuple[int, bool]] = {}
    for node in plan.nodes:
        path = _cluster_of(node.label, plan) if cluster else ()
        name = plan.names[id(node)]
        out.node(path, name, {**_value_attrs(node, style), "id": name})
        _operation(node, name, path, plan, style, out, merged)
    exits = _exits(plan)
    for prefix, members in plan.groups.items():
        for node in members:
            _group_inputs(node, prefix, plan, style, merged)
        path = _cluster_of(prefix, plan) if cluster else ()
        if exits[prefix] == [] and plan.group_of.get(id(style.root)) == prefix:
            exits[prefix] = [style.root]
        group = plan.group_name(prefix)
        out.node(path, group, {**_group_attrs(prefix, members, exits[prefix], style), "id": group})
    for (tail, head), (n, lit) in merged.items():
        out.edges.append((tail, head, _edge_attrs(f"\u00d7{n}" if n > 1 else "", lit=lit)))
    return out


def _operation(
    node: Value,
    name: str,
    path: tuple[str, ...],
    plan: _Plan,
    style: _Style,
    out: _Statements,
    merged: dict[tuple[str, str], tuple[int, bool]],
) -> None:
    """The op ellipse of ``node`` and its edges: one per operand occurrence, one to the result."""
    if not any(id(x) in plan.kept for x in node.inputs):
        return
    op_name = name + "_op"
    lit = id(node) in style.highlight
    out.node(path, op_name, {**_op_attrs(node, style), "id": op_name})
    local = _local_derivatives(node) if style.edge_labels else None
    for i, x in enumerate(node.inputs):
        if id(x) not in plan.kept:
            continue
        if id(x) in plan.group_of:
            _merge(merged, (plan.rep(x), op_name), lit=lit)
        else:
            text = _edge_text(node, i, local, style)
            out.edges.append((plan.rep(x), op_name, _edge_attrs(text, lit=lit)))
    out.edges.append((op_name, name, _edge_attrs("", lit=lit)))


def _group_inputs(
    node: Value, prefix: str, plan: _Plan, style: _Style, merged: dict[tuple[str, str], tuple[int, bool]]
) -> None:
    """Edges into a collapsed group from outside it, merged per (tail, group)."""
    lit = id(node) in style.highlight
    for x in node.inputs:
        if id(x) in plan.kept and plan.group_of.get(id(x)) != prefix:
            _merge(merged, (plan.rep(x), plan.group_name(prefix)), lit=lit)


def _merge(merged: dict[tuple[str, str], tuple[int, bool]], key: tuple[str, str], *, lit: bool) -> None:
    n, was_lit = merged.get(key, (0, False))
    merged[key] = (n + 1, was_lit or lit)


def _assemble(
    statements: _Statements, rankdir: str, graph_attr: Mapping[str, str] | None
) -> graphviz.Digraph:
    """The Digraph: nested clusters of node statements, then every edge at the top level."""
    attrs = {"rankdir": rankdir, "newrank": "true"}
    attrs.update(graph_attr or {})
    graph = Drawing(name="tinygrad_bp", graph_attr=attrs)
    for name, node_attrs in statements.nodes.get((), []):
        graph.node(name, **node_attrs)
    prefixes = {p[: i + 1] for p in statements.nodes if p for i in range(len(p))}
    paths = sorted(prefixes, key=lambda p: (len(p), p))  # a fixed order: the same graph, the same DOT
    numbers = {p: i for i, p in enumerate(paths)}
    children: dict[tuple[str, ...], list[tuple[str, ...]]] = {}
    for p in sorted(paths, key=lambda p: _natural(p[-1])):
        children.setdefault(p[:-1], []).append(p)
    for p in children.get((), []):
        graph.subgraph(_cluster(p, statements, children, numbers))
    for tail, head, edge_attrs in statements.edges:
        graph.edge(tail, head, **edge_attrs)
    return graph


def _natural(text: str) -> tuple[Any, ...]:
    """A sort key that puts ``layer2`` before ``layer10``."""
    return tuple(int(part) if part.isdecimal() else part for part in re.split(r"(\d+)", text))


def _cluster(
    path: tuple[str, ...],
    statements: _Statements,
    children: dict[tuple[str, ...], list[tuple[str, ...]]],
    numbers: dict[tuple[str, ...], int],
) -> graphviz.Digraph:
    """The cluster of one module (depth is at most _MAX_CLUSTER_DEPTH, so recursion is bounded)."""
    sub = graphviz.Digraph(name=f"cluster_{numbers[path]}")
    sub.attr(
        label=_label(_html(path[-1])),
        labeljust="l",
        style="rounded,dashed",
        color=_COLORS["cluster"],
        fontsize="11",
    )
    for name, attrs in statements.nodes.get(path, []):
        sub.node(name, **attrs)
    for child in children.get(path, []):
        sub.subgraph(_cluster(child, statements, children, numbers))
    return sub


# --- public API -----------------------------------------------------------------------------


def draw_dot(
    root: Value,
    format: str = "svg",  # noqa: A002 - micrograd's and graphviz's name for it
    rankdir: str = "LR",
    *,
    show_grad: bool = True,
    edge_labels: bool = False,
    cluster: bool = True,
    collapse: Iterable[str] = (),
    subgraph_from: Value | Iterable[Value] | None = None,
    max_nodes: int | None = DEFAULT_MAX_NODES,
    highlight: Value | Iterable[Value] | None = None,
    grads: Mapping[Value, float] | None = None,
    precision: int = 4,
    graph_attr: Mapping[str, str] | None = None,
) -> graphviz.Digraph:
    """The graph behind ``root`` as a :class:`graphviz.Digraph` (no Graphviz binary needed).

    Args:
        root: the Value whose graph is drawn (drawn with a bold border).
        format: the output format of the Digraph's ``render``/``pipe``
            (``"svg"``, ``"png"``, ...), as in micrograd's ``draw_dot(root, format="svg")``.
        rankdir: layout direction, ``"LR"``, ``"RL"``, ``"TB"`` or ``"BT"`` (``format`` and
            ``rankdir`` may be given by position, as micrograd's ``draw_dot(root, "svg", "TB")``).
        show_grad: show each Value's ``.grad`` (or its entry in ``grads``).
        edge_labels: label each operand edge with its local derivative
            ``d result / d operand`` (from the rule table, at the nodes' data).
        cluster: group Values labelled ``module.path.name`` in nested clusters.
        collapse: module names (label prefixes such as ``"layer1.neuron0"`` or
            ``"layer2"``) each drawn as one box; edges into and out of a box
            are kept, merged per pair of ends (labelled ``xN`` when merged).
            A name that matches no label raises ValueError.
        subgraph_from: a Value (or several): draw only the nodes on paths from
            it to ``root``. ValueError if it is not in the graph.
        max_nodes: the most Value boxes drawn (``None``: no limit). Without
            ``collapse``/``subgraph_from`` the count stops at the limit, so a
            huge graph is refused at once; with them the whole graph is walked
            once (iteratively) and the reduced drawing is counted.
        highlight: Value(s) drawn highlighted with their operation and the
            edges into and out of it (the stepper's current step).
        grads: a mapping Value -> gradient shown instead of ``.grad``; Values
            missing from it show no gradient.
        precision: significant digits of the numbers shown.
        graph_attr: extra Graphviz graph attributes (e.g. ``{"size": "8,8"}``).

    Raises:
        GraphTooLargeError: more than ``max_nodes`` Values would be drawn.

    """
    if not isinstance(root, Value):
        msg = f"draw_dot: root must be a Value, not {type(root).__name__}"
        raise TypeError(msg)
    if rankdir not in _RANKDIRS:
        msg = f"draw_dot: rankdir must be one of {', '.join(_RANKDIRS)}, not {rankdir!r}"
        raise ValueError(msg)
    if max_nodes is not None and (
        isinstance(max_nodes, bool) or not isinstance(max_nodes, int) or max_nodes < 1
    ):
        msg = f"draw_dot: max_nodes must be a positive int or None, not {max_nodes!r}"
        raise ValueError(msg)
    plan = _plan(root, _check_collapse(collapse), _as_values(subgraph_from, "subgraph_from"), max_nodes)
    style = _Style(
        show_grad=show_grad,
        edge_labels=edge_labels,
        precision=precision,
        root=root,
        highlight={id(v) for v in _as_values(highlight, "highlight")},
        grads=grads,
    )
    graph = _assemble(_statements(plan, style, cluster=cluster), rankdir, graph_attr)
    graph.format = format
    return graph


def trace(root: Value) -> tuple[set[Value], set[tuple[Value, Value]]]:
    """micrograd's ``trace(root)``: the set of nodes and the set of (operand, result) edges.

    Operands come from ``_prev`` (micrograd's view: a number exponent of ``**``
    is not a node); the walk is iterative, so a deep graph does not overflow
    the recursion limit.
    """
    nodes: set[Value] = set()
    edges: set[tuple[Value, Value]] = set()
    stack = [root]
    while stack:
        node = stack.pop()
        if node in nodes:
            continue
        nodes.add(node)
        for child in node._prev:
            edges.add((child, node))
            stack.append(child)
    return nodes, edges


def element_ids(root: Value, collapse: Iterable[str] = ()) -> dict[int, str]:
    """For each Value of ``draw_dot(root, collapse=collapse)``: the SVG id of the box standing for it.

    A Value's box has the id ``v<k>`` and its operation's ellipse ``v<k>_op``; a
    Value inside a collapsed module stands under its module's box ``g<k>``.
    Keys are ``id(value)``.
    """
    plan = _plan(root, _check_collapse(collapse), [], None)
    return {key: plan.rep(node) for node in toposort(root) for key in [id(node)] if key in plan.kept}


def render(graph: graphviz.Digraph, fmt: str = "svg") -> bytes:
    """Lay out ``graph`` (``dot``, else ``graphviz-pure``) and return it in format ``fmt``.

    Raises:
        GraphvizNotFoundError: neither program is installed (the message says how to get one).
        LayoutError: the program failed.

    """
    return layout.run(graph.source, fmt)


def _alt(graph: graphviz.Digraph) -> str:
    """The text that stands for a drawing: what it is and how big."""
    boxes = sum(1 for line in graph.source.splitlines() if "shape=none" in line)
    return f"tinygrad_bp graph: {boxes} boxes"


def mimebundle(graph: graphviz.Digraph, alt: str | None = None) -> dict[str, str]:
    """``graph`` as a Jupyter mime bundle (see :mod:`tinygrad_bp.display`): picture, or a short note.

    Without a layout program, or when it fails, the bundle is a one-line note
    with the DOT source folded away, never a traceback.
    """
    try:
        svg = _inline(render(graph, "svg").decode("utf-8"))
        png = render(graph, "png")
    except (GraphvizNotFoundError, LayoutError) as error:
        return note_bundle(f"(graph not drawn: {error})", graph.source)
    return picture_bundle(svg, png, alt or _alt(graph))


class Drawing(graphviz.Digraph):
    """The :class:`graphviz.Digraph` that :func:`draw_dot` returns.

    It is a Digraph in every way; in Jupyter it displays through
    :func:`mimebundle`, so the picture shows in an untrusted notebook and on a
    machine without Graphviz (``graphviz-pure`` lays it out).
    """

    def _repr_mimebundle_(self, *_: Any, **__: Any) -> dict[str, str]:  # include/exclude: all is sent
        return mimebundle(self)

    def pipe(self, format: str | None = None, *args: Any, **kwargs: Any) -> Any:  # noqa: A002 - graphviz's name
        """As :meth:`graphviz.Digraph.pipe`; without the system ``dot``, laid out by ``graphviz-pure``."""
        if args or kwargs or shutil.which("dot"):
            return super().pipe(format, *args, **kwargs)
        return render(self, format or self.format)


def to_dot(root: Value, **options: Any) -> str:
    """The DOT source of :func:`draw_dot` ``(root, **options)`` (no Graphviz binary needed)."""
    return draw_dot(root, **options).source


def to_svg(root: Value, **options: Any) -> str:
    """The drawing as an SVG document (laid out by ``dot`` or ``graphviz-pure``).

    Raises:
        GraphvizNotFoundError: neither layout program is installed.

    """
    return render(draw_dot(root, **options), "svg").decode("utf-8")


def to_png(root: Value, **options: Any) -> bytes:
    """The drawing as PNG bytes (laid out by ``dot`` or ``graphviz-pure``).

    Raises:
        GraphvizNotFoundError: neither layout program is installed.

    """
    return render(draw_dot(root, **options), "png")


def save(root: Value, path: str | os.PathLike[str], **options: Any) -> Path:
    """Write the drawing to ``path`` in the format its extension names.

    ``.svg``, ``.png``, ``.pdf``, ``.jpg``/``.jpeg`` and ``.gif`` need
    a layout program (``.pdf``, ``.gif`` only Graphviz's own ``dot``); ``.dot``/``.gv`` write the
    DOT source and need none.
    Returns the path written.
    """
    target = Path(path)
    fmt = _FORMATS.get(target.suffix.lower())
    if fmt is None:
        known = ", ".join(sorted(_FORMATS))
        msg = f"save: cannot tell the format of {os.fspath(path)!r}; use one of the extensions {known}"
        raise ValueError(msg)
    graph = draw_dot(root, **options)
    if fmt == "dot":
        target.write_text(graph.source, encoding="utf-8")
        return target
    program = layout.find_program() or ""
    if fmt in ("pdf", "gif") and "graphviz-pure" in Path(program).name:
        msg = f"save: {fmt.upper()} needs Graphviz's own dot (apt-get install graphviz); use .svg or .png"
        raise LayoutError(msg)
    target.write_bytes(render(graph, fmt))
    return target


def _inline(svg: str) -> str:
    """An SVG document without its XML prolog, for embedding in HTML."""
    start = svg.find("<svg")
    return svg[start:] if start >= 0 else svg


class GraphView:
    """A drawing that Jupyter displays inline (``show(root)`` in a cell), through :func:`mimebundle`.

    Without a layout program it shows a note and the DOT source.
    """

    def __init__(self, graph: graphviz.Digraph) -> None:
        self.graph = graph
        self._svg: str | None = None

    @property
    def source(self) -> str:
        """The DOT source."""
        return self.graph.source

    def svg(self) -> str:
        """The SVG document (laid out once)."""
        if self._svg is None:
            self._svg = render(self.graph, "svg").decode("utf-8")
        return self._svg

    def _repr_mimebundle_(self, *_: Any, **__: Any) -> dict[str, str]:  # include/exclude: all is sent
        return mimebundle(self.graph)

    def __repr__(self) -> str:
        return f"GraphView({len(self.graph.body)} DOT statements)"


def show(root: Value, **options: Any) -> GraphView:
    """The drawing of ``root`` as an object Jupyter displays inline; options as :func:`draw_dot`."""
    return GraphView(draw_dot(root, **options))
