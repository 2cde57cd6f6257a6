"""The pictures of one step of a :class:`~tinygrad_bp.stepper.Stepper`.

Each step is shown twice:

* **the neighbourhood**: the step's node, its operation and its operands, and
  nothing else, drawn at full size. However big the graph, this picture stays
  small (at most :data:`MAX_OPERANDS` operand boxes), so the current node and
  its operands are always in view at a readable size. In a forward step the
  boxes show data; in a backward step they also show the running totals of
  the gradients after the step, and each operand edge its local derivative.
* **the overview**: the whole graph, drawn once, in which the current node is
  marked. A graph of more than :data:`OVERVIEW_MAX_BOXES` Values is drawn with
  its modules collapsed (each neuron, or each layer, as one box), and with no
  overview when even that is too big.

Only the neighbourhood is laid out again at each step; marking the overview
is a style sheet added to the SVG drawn once.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import graphviz

from tinygrad_bp import layout, viz
from tinygrad_bp.engine import toposort
from tinygrad_bp.errors import GraphTooLargeError

from .steps import BackwardStep

if TYPE_CHECKING:
    from .stepper import Stepper
    from .steps import Step
    from .value import Value

__all__ = [
    "CURRENT_CLASS",
    "MAX_OPERANDS",
    "OVERVIEW_MAX_BOXES",
    "OVERVIEW_MAX_BYTES",
    "OVERVIEW_TOO_BIG",
    "Overview",
    "build_overview",
]

MAX_OPERANDS = 8
OVERVIEW_MAX_BOXES = 120
# An overview drawing bigger than this (bytes of SVG) is dropped: it would be sent at every display.
OVERVIEW_MAX_BYTES = 400_000
OVERVIEW_TOO_BIG = "no overview: the graph is too big to draw whole, even with its modules collapsed"

# The class of the current node's box in the neighbourhood picture (the browser tests look for it).
CURRENT_CLASS = "tgbp-current"

_DIGITS = 4  # significant digits in the pictures (the text has them all)


# --- the neighbourhood ------------------------------------------------------------------------


def _box(cells: list[str], fill: str, *, bold: bool = False) -> dict[str, str]:
    """A Value box: the name on top, each number on a row of its own (narrow, so the picture stays small)."""
    border = "2" if bold else "0"
    top, numbers = cells[0], cells[1:]
    rows = "".join(f"<TR><TD>{c}</TD></TR>" for c in numbers)
    table = (
        f'<TABLE BORDER="{border}" CELLBORDER="1" CELLSPACING="0" CELLPADDING="2" BGCOLOR="{fill}">'
        f"<TR><TD><B>{top}</B></TD></TR>{rows}</TABLE>"
    )
    return {"label": f"<{table}>", "shape": "none", "margin": "0"}


def _cells(name: str, node: Value, gradient: float | None) -> list[str]:
    """The escaped cells of a box: name, data and (in backward steps) the gradient so far."""
    cells = [viz._html(name), f"data {viz._number(node.data, _DIGITS)}"]
    if gradient is not None:
        cells.append(f"grad {viz._number(gradient, _DIGITS)}")
    return cells


def _fill(node: Value) -> str:
    if node.inputs:
        return viz._COLORS["intermediate"]
    return viz._COLORS["parameter"] if node.requires_grad else viz._COLORS["constant"]


def _operand_edge(step: Step, i: int, repeated: bool) -> str:
    """The text on the edge of operand occurrence ``i``: its position if repeated, its local derivative."""
    parts = [f"[{i}]"] if repeated else []
    if isinstance(step, BackwardStep):
        locals_ = {c.argument: c.local for c in step.contributions}
        if i in locals_:
            parts.append(f"\u2202 {viz._number(locals_[i], _DIGITS)}")
    return " ".join(parts)


def _operands_in_view(node: Value) -> list[int]:
    """The operand positions drawn: the first :data:`MAX_OPERANDS` distinct operands.

    For ``linear`` (inputs w_1..w_n, x_1..x_n, b) the pairs w_i, x_i come first and
    the bias is always drawn, so a neuron's picture reads as w . x + b even when cut.
    """
    order = list(range(len(node.inputs)))
    if node.op == "linear":
        n = (len(node.inputs) - 1) // 2
        order = [k for pair in zip(range(n), range(n, 2 * n)) for k in pair]
        order.insert(0, 2 * n)  # the bias: kept when the rest is cut
    chosen: list[int] = []
    seen: set[int] = set()
    for k in order:
        if id(node.inputs[k]) not in seen and len(seen) < MAX_OPERANDS:
            seen.add(id(node.inputs[k]))
            chosen.append(k)
    if node.op == "linear":  # draw the bias last, below the pairs
        chosen.append(chosen.pop(0))
    return chosen


def neighbourhood(stepper: Stepper, i: int) -> graphviz.Digraph:
    """The drawing of step ``i``: its node (class ``tgbp-current``), its operation and its operands."""
    step = stepper.steps[i]
    node, names = step.node, stepper.names
    totals = stepper.totals_after(i) if step.kind == "backward" else None
    graph = graphviz.Digraph(
        name="step", graph_attr={"rankdir": "LR", "nodesep": "0.12"}, node_attr={"fontsize": "12"}
    )
    shown: dict[int, str] = {}
    for k in _operands_in_view(node):
        x = node.inputs[k]
        if id(x) in shown:
            continue
        shown[id(x)] = name = f"x{len(shown)}"
        grad = totals.get(x) if totals is not None and x.requires_grad else None
        graph.node(name, **_box(_cells(names(x), x, grad), _fill(x)))
    hidden = len({id(x) for x in node.inputs}) - len(shown)
    if hidden:
        graph.node("more", **_box([f"... and {hidden} more operands"], viz._COLORS["constant"]))
        graph.edge("more", "op", style="dashed")
    op_label = viz._html(node.op) + ("<BR/>w \u00b7 x + b" if node.op == "linear" else "")
    graph.node(
        "op",
        label=f"<{op_label}>",
        shape="ellipse",
        style="filled",
        fontsize="12",
        fillcolor=viz._COLORS["highlight"],
        height="0.3",
        margin="0.04,0.02",
    )
    for k, x in enumerate(node.inputs):
        if id(x) in shown:
            text = _operand_edge(step, k, node.inputs.count(x) > 1)
            graph.edge(shown[id(x)], "op", **({"label": f"<{viz._html(text)}>"} if text else {}))
    upstream = getattr(step, "upstream", None)  # a backward step's d output / d node
    current = _box(_cells(names(node), node, upstream), viz._COLORS["highlight"], bold=True)
    graph.node("current", **current, **{"class": CURRENT_CLASS})
    graph.edge("op", "current", color=viz._COLORS["highlight_edge"], penwidth="2")
    return graph


def neighbourhood_svgs(stepper: Stepper, indices: list[int]) -> list[str]:
    """The neighbourhood pictures of several steps, laid out by one run of the layout program."""
    if not indices:
        return []
    sources = [neighbourhood(stepper, i).source for i in indices]
    # Graphviz writes the hyphen of a class name as &#45;: the same class, but spelled plainly here.
    escaped = CURRENT_CLASS.replace("-", "&#45;")
    return [viz._inline(svg).replace(escaped, CURRENT_CLASS) for svg in layout.run_many(sources)]


# --- the overview -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Overview:
    """The whole graph drawn once, and where each Value is in it.

    ``svg`` is the drawing (an SVG document without prolog); ``ids`` maps
    ``id(value)`` to the SVG id of the box standing for it (its own box, or
    its collapsed module's); ``description`` says what is drawn.
    """

    svg: str
    ids: dict[int, str]
    description: str
    boxes: dict[str, tuple[float, float, float, float]] = field(default_factory=dict)

    @property
    def aspect(self) -> float:
        """Height over width of the drawing."""
        match = _VIEWBOX.search(self.svg)
        return float(match.group(2)) / float(match.group(1)) if match else 1.0

    def box(self, node: Value) -> tuple[float, float, float, float] | None:
        """Where ``node``'s box is in the drawing: (left, top, width, height) in percent of its size."""
        element = self.ids.get(id(node))
        return None if element is None else self.boxes.get(element)

    def marked(self, node: Value) -> str:
        """The overview with ``node``'s box (and its operation) marked by a style sheet."""
        element = self.ids.get(id(node))
        if element is None:
            return self.svg
        style = (
            f"<style>#{element} polygon, #{element}_op ellipse "
            "{fill: #fde047 !important; stroke: #dc2626 !important; stroke-width: 6px;}</style>"
        )
        end = self.svg.find(">", self.svg.find("<svg")) + 1
        return self.svg[:end] + style + self.svg[end:]


_VIEWBOX = re.compile(r'viewBox="[-\d.]+ [-\d.]+ ([\d.]+) ([\d.]+)"')
_TRANSLATE = re.compile(r'class="graph" transform="[^"]*translate\(([-\d.]+) ([-\d.]+)\)"')
_NODE = re.compile(r'<g id="([^"]+)" class="node[^"]*">(.*?)</g>', re.DOTALL)
_POINTS = re.compile(r'points="([^"]+)"')
_ELLIPSE = re.compile(r'<ellipse[^>]*cx="([-\d.]+)" cy="([-\d.]+)" rx="([-\d.]+)" ry="([-\d.]+)"')


def _corners(body: str) -> list[tuple[float, float]]:
    """The corner points of the polygons and ellipses of one node's SVG group."""
    corners = []
    for points in _POINTS.findall(body):
        for pair in points.split():
            x, y = pair.split(",")
            corners.append((float(x), float(y)))
    for cx, cy, rx, ry in _ELLIPSE.findall(body):
        x, y, dx, dy = float(cx), float(cy), float(rx), float(ry)
        corners += [(x - dx, y - dy), (x + dx, y + dy)]
    return corners


def node_boxes(svg: str) -> dict[str, tuple[float, float, float, float]]:
    """Each node's bounding box in a Graphviz SVG, as (left, top, width, height) in percent."""
    size, shift = _VIEWBOX.search(svg), _TRANSLATE.search(svg)
    if size is None or shift is None:
        return {}
    width, height = float(size.group(1)), float(size.group(2))
    dx, dy = float(shift.group(1)), float(shift.group(2))
    boxes = {}
    for element, body in _NODE.findall(svg):
        corners = _corners(body)
        if corners:
            xs = [x + dx for x, _ in corners]
            ys = [y + dy for _, y in corners]
            boxes[element] = (
                100 * min(xs) / width,
                100 * min(ys) / height,
                100 * (max(xs) - min(xs)) / width,
                100 * (max(ys) - min(ys)) / height,
            )
    return boxes


def _deepest_modules(output: Value) -> list[list[str]]:
    """Collapse choices from finest to coarsest: every module at depth d, for d = deepest .. 1."""
    paths = {viz.module_path(node.label) for node in toposort(output)}
    depth = max((len(p) for p in paths), default=0)
    return [sorted({p[d - 1] for p in paths if len(p) >= d}) for d in range(depth, 0, -1)]


def build_overview(output: Value) -> Overview | None:
    """The overview of ``output``'s graph (see the module doc), or None when it cannot be drawn small.

    Raises:
        GraphvizNotFoundError: no layout program.

    """
    choices: list[tuple[list[str], str]] = [([], "the whole graph")]
    if viz.count_nodes(output, OVERVIEW_MAX_BOXES) > OVERVIEW_MAX_BOXES:
        choices = [(c, "modules drawn as single boxes") for c in _deepest_modules(output)]
    for collapse, description in choices:
        try:
            graph = viz.draw_dot(output, collapse=collapse, show_grad=False, max_nodes=OVERVIEW_MAX_BOXES)
        except GraphTooLargeError:
            continue
        svg = viz._inline(viz.render(graph, "svg").decode("utf-8"))
        if len(svg) > OVERVIEW_MAX_BYTES:
            continue
        return Overview(svg, viz.element_ids(output, collapse), description, node_boxes(svg))
    return None
