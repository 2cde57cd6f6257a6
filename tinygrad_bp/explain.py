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

:func:`check` grades a learner's answer against the engine: a number, or a
chain of factors (one local derivative per edge along a path, output first),
in which case it names the first factor that is wrong and what it should be.

Nothing in the graph is modified.
"""

from __future__ import annotations

import html
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from .engine import grad, local_derivatives, toposort
from .errors import GraphTooLargeError
from .value import Value

__all__ = ["Explanation", "NodeNames", "Path", "Verdict", "check", "explain", "local_derivatives"]


def printable(text: str) -> str:
    r"""``text`` with each control or format character written as its escape (``\n``, ``\x1b``, ...).

    Labels and operation names are user text: printed raw, a newline would
    break a table and a terminal escape code would recolour or rewrite the
    console. Everything else is kept as it is.
    """
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() or ch == " " else repr(ch)[1:-1] for ch in text)


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
        """The name of ``node``; control characters of a label (newlines, terminal codes) as escapes."""
        if node.label:
            return printable(node.label)
        k = self._position.get(id(node), "?")
        if node.op:
            return f"{printable(node.op)}#{k}"
        if node.requires_grad:
            return f"leaf#{k}"
        return format(node.data, f".{self._digits}g")


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


# --- grading a learner's answer ---------------------------------------------------------------


@dataclass(frozen=True)
class Verdict:
    """What :func:`check` says of an answer; ``str(verdict)`` says it in words.

    Attributes:
        correct: the answer equals the engine's gradient (within the tolerances).
        engine: d output / d wrt from the engine.
        answer: the learner's number (for a chain of factors: their product).
        relative_error: |answer - engine| / |engine| (the absolute error when engine is 0).
        wrong_factor: for a chain, the position (from 0) of the first wrong factor, else None.
        expected_factor: what that factor should be, else None.
        message: the verdict in words.

    """

    correct: bool
    engine: float
    answer: float
    relative_error: float
    wrong_factor: int | None
    expected_factor: float | None
    message: str

    def __str__(self) -> str:
        return self.message

    def __bool__(self) -> bool:
        return self.correct


def _verdict(
    engine: float,
    answer: float,
    error: float,
    message: str,
    *,
    correct: bool = False,
    wrong: tuple[int, float] | None = None,
) -> Verdict:
    index, expected = wrong if wrong is not None else (None, None)
    return Verdict(correct, engine, answer, error, index, expected, message)


def _close(a: float, b: float, rtol: float, atol: float) -> bool:
    return abs(a - b) <= atol + rtol * abs(b)


def _relative(a: float, b: float) -> float:
    return abs(a - b) / abs(b) if b != 0 else abs(a - b)


def _number_answer(x: object, what: str) -> float:
    if isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(x):
        msg = f"check: {what} must be a finite number, not {x!r}"
        raise TypeError(msg)
    return float(x)


def _expected_chain(
    path: Path, n: int, output: Value, names: NodeNames
) -> tuple[list[float], list[str]] | None:
    """The ``n`` factors a learner's chain along ``path`` should have, with their names; None if too long.

    With as many factors as the path has edges, each is a local derivative.
    With fewer, the first factor stands for the whole start of the path:
    d output / d node, where node is where the rest of the chain begins (as the
    article writes dE/dw1 = dE/dout_h1 x dout_h1/dnet_h1 x dnet_h1/dw1).
    """
    m = len(path.factors)
    if n > m or n == 0:
        return None
    edges = [f"d {names(a)} / d {names(b)}" for a, b in zip(path.nodes, path.nodes[1:])]
    if n == m:
        return list(path.factors), edges
    start = path.nodes[m - n + 1]
    (total,) = grad(output, [start])
    return [total, *path.factors[m - n + 1 :]], [f"d {names(output)} / d {names(start)}", *edges[m - n + 1 :]]


def _leading_matches(given: list[float], expected: list[float], rtol: float, atol: float) -> int:
    k = 0
    while k < len(given) and _close(given[k], expected[k], rtol, atol):
        k += 1
    return k


def _check_chain(
    explanation: Explanation, factors: list[float], engine: float, rtol: float, atol: float
) -> Verdict:
    """The verdict on a chain of factors (see :func:`check`)."""
    output, wrt = explanation.output, explanation.wrt
    names, n = explanation._names, len(factors)
    product = math.prod(factors)
    error = _relative(product, engine)
    candidates = []
    for path in explanation.paths:
        chain = _expected_chain(path, n, output, names)
        if chain is not None:
            candidates.append((_leading_matches(factors, chain[0], rtol, atol), chain))
    if not candidates:
        longest = max(len(p.factors) for p in explanation.paths)
        message = (
            f"Not quite: your chain has {n} factors, but the longest path from {names(wrt)} to "
            f"{names(output)} has {longest} edges (one factor per edge)."
        )
        return _verdict(engine, product, error, message)
    matched, (expected, labels) = max(candidates, key=lambda c: c[0])
    fmt = explanation._number
    if matched < n:
        message = (
            f"Not quite: factor {matched + 1} ({labels[matched]}) is {fmt(factors[matched])}, "
            f"but it should be {fmt(expected[matched])}."
            + (" The factors before it are right." if matched else "")
        )
        return _verdict(engine, product, error, message, wrong=(matched, expected[matched]))
    if not _close(product, engine, rtol, atol):
        message = (
            f"Every factor is right, but this chain is one of {len(explanation.paths)} paths: "
            f"{explanation.title()} = {fmt(engine)} adds the products of all of them "
            f"(yours gives {fmt(product)}; explain(output, wrt) lists the paths)."
        )
        return _verdict(engine, product, error, message)
    message = (
        f"Correct: {explanation.title()} = {' x '.join(fmt(f) for f in factors)} = {fmt(product)} "
        f"(the engine: {fmt(engine)})."
    )
    return _verdict(engine, product, error, message, correct=True)


def check(
    output: Value, wrt: Value, answer: float | Sequence[float], *, rtol: float = 1e-4, atol: float = 1e-12
) -> Verdict:
    """Grade a learner's d ``output`` / d ``wrt`` against the engine.

    ``answer`` is a number, or a list of factors: the learner's chain, output
    first, one local derivative per edge along a path (for w5 in the worked
    example: dE_total/dE_o1, dE_o1/dout_o1, dout_o1/dnet_o1, dnet_o1/dw5). A
    shorter chain may start with a total derivative (dE/dout_o1, ...), as the
    articles write it. For a chain the verdict names the first factor that
    differs from the engine's on the best-matching path, and what it should be.
    Numbers agree when |a - b| <= atol + rtol |b| (4 significant digits by default).

    Raises:
        TypeError: ``answer`` is not a finite number or a non-empty list of them.
        ValueError: ``output`` does not depend on ``wrt``.

    """
    for what, x in (("output", output), ("wrt", wrt)):
        if not isinstance(x, Value):
            msg = f"check: {what} must be a Value, not {type(x).__name__}"
            raise TypeError(msg)
    if isinstance(answer, (list, tuple)):
        if not answer:
            msg = "check: a chain of factors needs at least one factor"
            raise TypeError(msg)
        factors = [_number_answer(f, f"factor {k + 1}") for k, f in enumerate(answer)]
    else:
        factors = None
        number = _number_answer(answer, "answer")
    explanation = explain(output, wrt)  # ValueError when there is no path
    (engine,) = grad(output, [wrt])
    if factors is not None:
        return _check_chain(explanation, factors, engine, rtol, atol)
    error = _relative(number, engine)
    fmt = explanation._number
    if _close(number, engine, rtol, atol):
        message = f"Correct: {explanation.title()} = {fmt(engine)} (yours: {fmt(number)})."
    else:
        message = (
            f"Not quite: {explanation.title()} is {fmt(engine)}; yours, {fmt(number)}, is off by "
            f"a relative {error:.2g}."
        )
    return _verdict(engine, number, error, message, correct=_close(number, engine, rtol, atol))
