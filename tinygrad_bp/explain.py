"""The chain rule as a table: d output / d wrt as a sum over paths.

In a computation graph, d output / d wrt is the sum, over every path from
``wrt`` to ``output``, of the product of the local derivatives along the path
(one factor per edge; an operand used twice, as in ``a * a``, gives two edges
and so two paths). :func:`explain` lists those paths with their factors and
products; their sum, :attr:`Explanation.total`, equals
``tinygrad_bp.grad(output, [wrt])[0]`` up to rounding.

The number of paths can grow exponentially with depth, so :func:`explain`
counts them first (dynamic programming over the graph in topological order,
no recursion, no enumeration) and raises
:class:`~tinygrad_bp.errors.GraphTooLargeError` when there are more than
``max_paths``: the result is never silently truncated.

Nothing in the graph is modified.
"""

from __future__ import annotations

import html
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from .engine import toposort
from .errors import GraphTooLargeError, NonDifferentiableError
from .rules import RULES
from .value import Value

__all__ = ["Explanation", "NodeNames", "Path", "explain", "local_derivatives"]


class NodeNames:
    """Readable names for the nodes of one graph, for tables and step-by-step text.

    A node's name is its label; an unlabelled operation node is ``op#k`` and
    an unlabelled leaf that requires grad ``leaf#k`` (``k``: its position in
    ``order``, inputs first); an unlabelled constant is its value.
    """

    def __init__(self, order: Sequence[Value], digits: int = 15) -> None:
        self._position = {id(node): k for k, node in enumerate(order)}
        self._digits = digits

    def __call__(self, node: Value) -> str:
        """The name of ``node``."""
        if node.label:
            return node.label
        k = self._position.get(id(node), "?")
        if node.op:
            return f"{node.op}#{k}"
        if node.requires_grad:
            return f"leaf#{k}"
        return format(node.data, f".{self._digits}g")


def local_derivatives(node: Value) -> tuple[float, ...]:
    """``(d node / d input_i)`` for each input occurrence, at the inputs' data, from the rule table.

    Raises:
        NonDifferentiableError: a local derivative is undefined there (sqrt at 0, ...).

    """
    if not node.inputs:
        return ()
    values = [x.data for x in node.inputs]
    try:
        return tuple(float(d) for d in RULES[node.op].local(node.data, *values))
    except (ArithmeticError, ValueError) as error:
        shown = ", ".join(repr(v) for v in values)
        msg = f"{node.op}: the local derivative is not finite at inputs ({shown}): {error}"
        raise NonDifferentiableError(msg) from None


@dataclass(frozen=True)
class Path:
    """One path from ``wrt`` up to ``output``, listed output first.

    ``nodes[0]`` is the output and ``nodes[-1]`` is ``wrt``; ``nodes[k + 1]``
    is ``nodes[k].inputs[arguments[k]]``, and ``factors[k]`` is the local
    derivative d nodes[k] / d nodes[k + 1] along that edge. ``product`` is
    the product of the factors (1.0 for the empty path when output is wrt).
    """

    nodes: tuple[Value, ...]
    arguments: tuple[int, ...]
    factors: tuple[float, ...]
    product: float


def _path_counts(order: list[Value], wrt: Value) -> dict[int, int]:
    """For each node (by id) with at least one path from ``wrt``, the number of such paths."""
    counts = {id(wrt): 1}
    for node in order:
        if node is wrt:
            continue
        n = 0
        for x in node.inputs:
            n += counts.get(id(x), 0)
        if n:
            counts[id(node)] = n
    return counts


def _paths(output: Value, wrt: Value, counts: dict[int, int]) -> list[Path]:
    """Every path from ``wrt`` to ``output``, by an iterative depth-first walk from the output."""
    cache: dict[int, tuple[float, ...]] = {}
    found: list[Path] = []
    frames: list[list] = [[output, 0]]  # [node, index of the next input to try]
    while frames:
        frame = frames[-1]
        node = frame[0]
        if node is wrt:
            found.append(_make_path(frames, cache))
            frames.pop()
            continue
        inputs = node.inputs
        i = frame[1]
        while i < len(inputs) and id(inputs[i]) not in counts:
            i += 1
        if i == len(inputs):
            frames.pop()
            continue
        frame[1] = i + 1
        frames.append([inputs[i], 0])
    return found


def _make_path(frames: list[list], cache: dict[int, tuple[float, ...]]) -> Path:
    """The path the walk's frames describe (each frame's input index is one past the edge taken)."""
    nodes = tuple(f[0] for f in frames)
    arguments = tuple(f[1] - 1 for f in frames[:-1])
    factors = []
    for node, i in zip(nodes, arguments):
        if id(node) not in cache:
            cache[id(node)] = local_derivatives(node)
        factors.append(cache[id(node)][i])
    product = 1.0
    for f in factors:
        product *= f
    return Path(nodes, arguments, tuple(factors), product)


class Explanation:
    """d output / d wrt as a table of paths (the result of :func:`explain`).

    Attributes:
        output, wrt: the two Values.
        paths: every :class:`Path` from ``wrt`` to ``output``.
        total: the sum of the paths' products (= ``grad(output, [wrt])[0]`` up to rounding).

    """

    def __init__(self, output: Value, wrt: Value, paths: list[Path], names: NodeNames, digits: int) -> None:
        self.output = output
        self.wrt = wrt
        self.paths = paths
        self.total = math.fsum(p.product for p in paths)
        self._names = names
        self._digits = digits

    def __len__(self) -> int:
        return len(self.paths)

    def __iter__(self) -> Iterator[Path]:
        return iter(self.paths)

    def _number(self, x: float) -> str:
        return format(x, f".{self._digits}g")

    def describe(self, path: Path) -> str:
        """A path by its nodes' names, output first: ``E <- out <- net <- w``.

        An edge from a repeated operand names its argument: ``y <-[1]- a``.
        """
        parts = [self._names(path.nodes[0])]
        for node, i, x in zip(path.nodes, path.arguments, path.nodes[1:]):
            arrow = f" <-[{i}]- " if node.inputs.count(x) > 1 else " <- "
            parts.append(arrow + self._names(x))
        return "".join(parts)

    def title(self) -> str:
        """``d output / d wrt`` with the nodes' names."""
        return f"d {self._names(self.output)} / d {self._names(self.wrt)}"

    def rows(self) -> list[tuple[str, str, str, str]]:
        """The table's rows as text: (number, path, factors, product)."""
        return [
            (
                str(k + 1),
                self.describe(p),
                " x ".join(self._number(f) for f in p.factors) or "(no edges)",
                self._number(p.product),
            )
            for k, p in enumerate(self.paths)
        ]

    _HEADER = ("#", "path (output <- ... <- wrt)", "factors (local derivatives, output first)", "product")

    def __str__(self) -> str:
        rows = [self._HEADER, *self.rows()]
        widths = [max(len(r[c]) for r in rows) for c in range(4)]
        lines = [f"{self.title()} = sum over {len(self.paths)} path(s) of the product of local derivatives"]
        for k, row in enumerate(rows):
            lines.append("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
            if k == 0:
                lines.append("  ".join("-" * w for w in widths))
        lines.append(f"total = {self._number(self.total)}")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"<Explanation {self.title()} = {self._number(self.total)} over {len(self.paths)} path(s)>"

    def _repr_html_(self) -> str:
        esc = html.escape
        head = "".join(f"<th>{esc(h)}</th>" for h in self._HEADER)
        body = "".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>" for row in self.rows())
        return (
            f"<div><p>{esc(self.title())} = sum over {len(self.paths)} path(s) "
            "of the product of local derivatives</p>"
            f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
            f"<p>total = {esc(self._number(self.total))}</p></div>"
        )


def explain(output: Value, wrt: Value, max_paths: int = 1000, *, digits: int = 15) -> Explanation:
    """d ``output`` / d ``wrt`` as the sum over every path of the product of local derivatives.

    The paths are counted first (dynamic programming over the graph); more
    than ``max_paths`` raises :class:`~tinygrad_bp.errors.GraphTooLargeError`
    before any path is listed (the result is never truncated). ``wrt`` may
    be any node of the graph: a parameter, a constant or an intermediate
    node. ``digits``: significant digits shown in text.

    Raises:
        ValueError: ``output`` does not depend on ``wrt``.
        GraphTooLargeError: more than ``max_paths`` paths.
        NonDifferentiableError: a local derivative on a path is undefined.

    """
    for what, x in (("output", output), ("wrt", wrt)):
        if not isinstance(x, Value):
            msg = f"explain: {what} must be a Value, not {type(x).__name__}"
            raise TypeError(msg)
    order = toposort(output)
    names = NodeNames(order, digits)
    counts = _path_counts(order, wrt)
    n = counts.get(id(output), 0)
    if n == 0:
        msg = f"explain: {names(output)} does not depend on {names(wrt)} (there is no path between them)"
        raise ValueError(msg)
    if n > max_paths:
        msg = (
            f"explain: d {names(output)} / d {names(wrt)} is a sum over {n} paths, more than "
            f"max_paths={max_paths}. Raise max_paths, explain a nearer output (an intermediate node), "
            "or use tinygrad_bp.grad for the number alone."
        )
        raise GraphTooLargeError(msg)
    return Explanation(output, wrt, _paths(output, wrt, counts), names, digits)
