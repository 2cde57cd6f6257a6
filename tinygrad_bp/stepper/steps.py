"""The steps of the two passes: what a :class:`~tinygrad_bp.stepper.Stepper` shows, one node at a time.

A :class:`ForwardStep` is one operation computed from its inputs; a
:class:`BackwardStep` is one node of the engine's reference pass
(:func:`tinygrad_bp.engine.reference_backward`) with its upstream gradient
and a :class:`Contribution` per input occurrence.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, ClassVar, Union

from tinygrad_bp.engine import reference_backward
from tinygrad_bp.explain import NodeNames  # noqa: TC001 - dataclass fields are read at runtime
from tinygrad_bp.rules import RULES, TABLE
from tinygrad_bp.value import Value  # noqa: TC001 - dataclass fields are read at runtime

__all__ = ["BackwardStep", "Contribution", "Format", "ForwardStep", "Step", "backward_steps"]

# Binary operations written between their operands (+ - * / **): the table's rows named by a symbol.
_INFIX = frozenset(d.name for d in TABLE if len(d.inputs) == 2 and not d.name.isidentifier())

@dataclass(frozen=True)
class Format:
    """How a stepper writes names and numbers."""

    names: NodeNames
    digits: int
    output: Value

    def number(self, x: float) -> str:
        """``x`` with the stepper's significant digits."""
        return format(x, f".{self.digits}g")

    def operand(self, x: float) -> str:
        """A number inside an infix expression: negatives in parentheses."""
        text = self.number(x)
        return f"({text})" if text.startswith("-") else text


@dataclass(frozen=True)
class ForwardStep:
    """One operation node computed from its inputs' data."""

    kind: ClassVar[str] = "forward"
    index: int
    node: Value
    _format: Format = field(repr=False, compare=False)

    @property
    def expression(self) -> str:
        """``name = op(inputs' data) = data`` (infix for ``+ - * / **``)."""
        fmt = self._format
        node = self.node
        values = [x.data for x in node.inputs]
        if node.op in _INFIX and len(values) == 2:
            middle = f"{fmt.operand(values[0])} {node.op} {fmt.operand(values[1])}"
        elif node.op == "linear":
            return self._linear_expression()
        else:
            middle = f"{node.op}({', '.join(fmt.number(v) for v in values)})"
        return f"{fmt.names(node)} = {middle} = {fmt.number(node.data)}"

    def _linear_expression(self) -> str:
        """``net = w0*x0 + w1*x1 + b = 0.15*0.05 + 0.2*0.1 + 0.35 = 0.3775``: w . x + b with its terms."""
        fmt, node = self._format, self.node
        n = (len(node.inputs) - 1) // 2
        w, x, b = node.inputs[:n], node.inputs[n : 2 * n], node.inputs[-1]
        names = [f"{fmt.names(wi)}*{fmt.names(xi)}" for wi, xi in zip(w, x)]
        numbers = [f"{fmt.operand(wi.data)}*{fmt.operand(xi.data)}" for wi, xi in zip(w, x)]
        symbolic = " + ".join([*names, fmt.names(b)])
        numeric = " + ".join([*numbers, fmt.operand(b.data)])
        return f"{fmt.names(node)} = {symbolic} = {numeric} = {fmt.number(node.data)}"

    def inputs_text(self) -> str:
        """The inputs by name with their data (constants by value alone)."""
        fmt = self._format
        parts = []
        for x in self.node.inputs:
            name, value = fmt.names(x), fmt.number(x.data)
            parts.append(value if name == value else f"{name} = {value}")
        return ", ".join(parts)

    @property
    def text(self) -> str:
        """The step as two lines of text."""
        return f"{self.expression}\n  inputs: {self.inputs_text()}"

    def __str__(self) -> str:
        return self.text


@dataclass(frozen=True)
class Contribution:
    """What one input occurrence receives in a backward step.

    ``contribution = upstream * local`` is added to the input's running total,
    which goes from ``previous`` (None before its first contribution) to
    ``total``; ``complete`` is True when no later step adds to it.
    """

    argument: int
    input: Value
    local: float
    contribution: float
    previous: float | None
    total: float
    complete: bool


@dataclass(frozen=True)
class BackwardStep:
    """One operation node passing its upstream gradient to its inputs."""

    kind: ClassVar[str] = "backward"
    index: int
    node: Value
    upstream: float
    contributions: tuple[Contribution, ...]
    _format: Format = field(repr=False, compare=False)

    def _contribution_text(self, c: Contribution, repeated: bool) -> str:
        fmt = self._format
        n = fmt.number
        target = fmt.names(c.input) + (f" (argument {c.argument})" if repeated else "")
        total = n(c.total) if c.previous is None else f"{n(c.previous)} + {n(c.contribution)} = {n(c.total)}"
        done = " (final)" if c.complete else ""
        return (
            f"  -> {target}: local d {fmt.names(self.node)} / d {fmt.names(c.input)} = {n(c.local)}; "
            f"contribution {n(self.upstream)} x {n(c.local)} = {n(c.contribution)}; "
            f"running total {total}{done}"
        )

    @property
    def text(self) -> str:
        """The step: the node, its upstream gradient, one line per input occurrence."""
        fmt = self._format
        name, out = fmt.names(self.node), fmt.names(fmt.output)
        seed = " (the seed)" if self.node is fmt.output else ""
        lines = [
            f"{name} = {_symbolic(self.node, fmt)}",
            f"  upstream gradient d {out} / d {name} = {fmt.number(self.upstream)}{seed}",
        ]
        rule = RULES.get(self.node.op)
        if rule is not None and rule.definition is not None:  # the table's own words for its derivatives
            lines.append(f"  the rule {self.node.op!r}: out = {rule.definition.forward}; {rule.formula}")
        uses = Counter(id(x) for x in self.node.inputs)  # once per step: a sum of 20,000 stays linear
        lines += [self._contribution_text(c, uses[id(c.input)] > 1) for c in self.contributions]
        if not self.contributions:
            lines.append("  (no input needs a gradient)")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.text


def _symbolic(node: Value, fmt: Format) -> str:
    """``node``'s operation on its inputs' names: ``w5*out_h1 + w6*out_h2 + b2`` for linear, else op(...)."""
    names = [fmt.names(x) for x in node.inputs]
    if node.op == "linear":
        n = (len(names) - 1) // 2
        return " + ".join([*(f"{w}*{x}" for w, x in zip(names[:n], names[n : 2 * n])), names[-1]])
    return f"{node.op}({', '.join(names)})"


Step = Union[ForwardStep, BackwardStep]


def backward_steps(
    output: Value, seed: float, fmt: Format, start: int
) -> tuple[list[BackwardStep], dict[Value, float]]:
    """The backward steps of :func:`tinygrad_bp.engine.reference_backward` and the final totals."""
    if not output.requires_grad:
        return [], {}
    totals: dict[Value, float] = {output: seed}
    raw: list[tuple[Value, float, list[list[Any]]]] = []
    for node, upstream, contributions in reference_backward(output, seed):
        entries = []
        for i, x, local, contribution in contributions:
            previous = totals.get(x)
            totals[x] = contribution if previous is None else previous + contribution
            entries.append([i, x, local, contribution, previous, totals[x]])
        raw.append((node, upstream, entries))
    return _freeze(raw, fmt, start), totals


def _freeze(raw: list[tuple[Value, float, list[list[Any]]]], fmt: Format, start: int) -> list[BackwardStep]:
    """Step objects, marking each input's last contribution as complete."""
    last: dict[int, tuple[int, int]] = {}
    for k, (_, _, entries) in enumerate(raw):
        for j, entry in enumerate(entries):
            last[id(entry[1])] = (k, j)
    steps = []
    for k, (node, upstream, entries) in enumerate(raw):
        contributions = tuple(
            Contribution(*entry, complete=last[id(entry[1])] == (k, j))  # type: ignore[misc]  # entry: 6 fields
            for j, entry in enumerate(entries)
        )
        steps.append(BackwardStep(start + k, node, upstream, contributions, fmt))
    return steps


