"""Step through the forward and the backward pass of a graph, one node at a time.

``Stepper(output)`` lists

* the forward steps, in topological order (inputs first): each operation
  node computed from its inputs, ``layer1.neuron0.out = sigmoid(0.3775) =
  0.593269992107187`` (leaves are inputs, not steps);
* the backward steps, in reverse topological order: each operation node with
  its upstream gradient d output / d node and, for each input occurrence
  that needs a gradient, the local derivative, the contribution
  upstream x local it adds, and that input's running total.

The steps are those of the engine's reference pass,
:func:`tinygrad_bp.engine.reference_backward` (reverse topological order, the
rule table's local derivatives), so what the stepper shows is what the engine
does; the final running totals equal the engine's gradients
(:attr:`Stepper.gradients`). Nothing in the graph is modified.

In a console, ``print(stepper)`` or ``stepper.step_text(i)``; in Jupyter, the
stepper displays itself as an ipywidgets control (previous / next buttons, a
slider, a parameter menu) over the drawing with the current node
highlighted, or as static HTML when ipywidgets is not installed.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Union

from .engine import reference_backward, toposort
from .errors import GraphTooLargeError, GraphvizNotFoundError, LayoutError
from .explain import NodeNames
from .stepper_page import DEFAULT_MAX_STEPS, standalone_page, static_step
from .stepper_view import OVERVIEW_TOO_BIG, Overview, build_overview, neighbourhood_svgs
from .value import Value
from .viz import count_nodes

# The most Values a Stepper walks by default: a lesson's graph, not a training run's.
DEFAULT_MAX_NODES = 50_000

__all__ = ["BackwardStep", "Contribution", "ForwardStep", "Stepper"]

_INFIX = frozenset({"+", "-", "*", "/", "**"})

_NOT_BUILT = object()


@dataclass(frozen=True)
class _Format:
    """How a stepper writes names and numbers."""

    names: NodeNames
    digits: int
    output: Value

    def number(self, x: float) -> str:
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
    _format: _Format = field(repr=False, compare=False)

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
    _format: _Format = field(repr=False, compare=False)

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
        uses = Counter(id(x) for x in self.node.inputs)  # once per step: a sum of 20,000 stays linear
        lines += [self._contribution_text(c, uses[id(c.input)] > 1) for c in self.contributions]
        if not self.contributions:
            lines.append("  (no input needs a gradient)")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.text


def _symbolic(node: Value, fmt: _Format) -> str:
    """``node``'s operation on its inputs' names: ``w5*out_h1 + w6*out_h2 + b2`` for linear, else op(...)."""
    names = [fmt.names(x) for x in node.inputs]
    if node.op == "linear":
        n = (len(names) - 1) // 2
        return " + ".join([*(f"{w}*{x}" for w, x in zip(names[:n], names[n : 2 * n])), names[-1]])
    return f"{node.op}({', '.join(names)})"


Step = Union[ForwardStep, BackwardStep]


def _backward_steps(
    output: Value, seed: float, fmt: _Format, start: int
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


def _freeze(raw: list[tuple[Value, float, list[list[Any]]]], fmt: _Format, start: int) -> list[BackwardStep]:
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


class Stepper:
    """The forward and backward passes of ``output``'s graph as a list of steps.

    Args:
        output: the Value whose graph is stepped through.
        seed: the upstream gradient of the output (d output / d output = 1).
        digits: significant digits of the numbers in the text.
        max_nodes: the most Values walked (None: no limit); a bigger graph raises
            GraphTooLargeError at once (the count stops at the limit).

    ``steps`` is ``forward_steps + backward_steps``; a step's ``index`` is its
    position in ``steps``. ``gradients`` maps every node that needs a
    gradient to its final running total.

    """

    def __init__(
        self, output: Value, *, seed: float = 1.0, digits: int = 15, max_nodes: int | None = DEFAULT_MAX_NODES
    ) -> None:
        if not isinstance(output, Value):
            msg = f"Stepper: output must be a Value, not {type(output).__name__}"
            raise TypeError(msg)
        if max_nodes is not None and count_nodes(output, max_nodes) > max_nodes:
            msg = (
                f"Stepper: the graph has more than max_nodes={max_nodes:,} Values: too many steps to "
                "follow one by one. Step through a smaller graph (one sample, a smaller model), or "
                "raise max_nodes."
            )
            raise GraphTooLargeError(msg)
        self.output = output
        order = toposort(output)
        self.names = NodeNames(order, digits)
        fmt = _Format(self.names, digits, output)
        self.forward_steps: list[ForwardStep] = []
        for node in order:
            if node.inputs:
                self.forward_steps.append(ForwardStep(len(self.forward_steps), node, fmt))
        self.backward_steps, self.gradients = _backward_steps(
            output, float(seed), fmt, len(self.forward_steps)
        )
        self.steps: list[Step] = [*self.forward_steps, *self.backward_steps]
        self._svg_cache: dict[int, str] = {}
        self._overview: Overview | object | None = _NOT_BUILT
        self._overview_note = ""

    def __len__(self) -> int:
        return len(self.steps)

    def __getitem__(self, i: int) -> Step:
        return self.steps[i]

    def __iter__(self) -> Iterator[Step]:
        return iter(self.steps)

    def _check_index(self, i: int) -> int:
        if not -len(self.steps) <= i < len(self.steps):
            msg = f"Stepper: step {i} is out of range (there are {len(self.steps)} steps)"
            raise IndexError(msg)
        return i % len(self.steps)

    def step_text(self, i: int) -> str:
        """Step ``i`` as text, headed ``forward 3/9`` or ``backward 2/9``."""
        i = self._check_index(i)
        step = self.steps[i]
        if step.kind == "forward":
            head = f"forward {i + 1}/{len(self.forward_steps)}"
        else:
            head = f"backward {i - len(self.forward_steps) + 1}/{len(self.backward_steps)}"
        return f"[step {i + 1}/{len(self.steps)}] {head}: {step.text}"

    def __str__(self) -> str:
        if not self.steps:
            return f"{self.names(self.output)} is a leaf: there is nothing to step through."
        return "\n".join(self.step_text(i) for i in range(len(self.steps)))

    def __repr__(self) -> str:
        return (
            f"<Stepper of {self.names(self.output)}: {len(self.forward_steps)} forward and "
            f"{len(self.backward_steps)} backward steps>"
        )

    def gradient(self, node: Value) -> float:
        """The final running total of ``node`` (d output / d node)."""
        try:
            return self.gradients[node]
        except KeyError:
            msg = f"Stepper: {self.names(node)} receives no gradient from {self.names(self.output)}"
            raise KeyError(msg) from None

    def totals_after(self, i: int) -> dict[Value, float]:
        """The running totals once step ``i`` is done ({} during the forward pass)."""
        i = self._check_index(i)
        if i < len(self.forward_steps):
            return {}
        totals: dict[Value, float] = {self.output: self.backward_steps[0].upstream}
        for step in self.backward_steps[: i - len(self.forward_steps) + 1]:
            for c in step.contributions:
                totals[c.input] = c.total
        return totals

    def parameter_steps(self) -> dict[str, int]:
        """For each leaf that needs a gradient: its name -> the step that completes its gradient."""
        found: dict[str, int] = {}
        for step in self.backward_steps:
            for c in step.contributions:
                if c.complete and not c.input.inputs:
                    found[self.names(c.input)] = step.index
        return dict(sorted(found.items(), key=lambda item: (item[1], item[0])))

    # --- pictures, the page and the widget --------------------------------------------------

    def counter(self, i: int) -> str:
        """Where step ``i`` is: ``step 3 of 40: forward 3/20`` (counted from 1, as the slider)."""
        i = self._check_index(i)
        if i < len(self.forward_steps):
            part = f"forward {i + 1}/{len(self.forward_steps)}"
        else:
            part = f"backward {i - len(self.forward_steps) + 1}/{len(self.backward_steps)}"
        return f"step {i + 1} of {len(self.steps)}: {part}"

    def svg(self, i: int) -> str:
        """The picture of step ``i``: its node (marked), its operation and its operands, as inline SVG.

        See :mod:`tinygrad_bp.stepper_view`. Raises GraphvizNotFoundError without a layout program.
        """
        i = self._check_index(i)
        if i not in self._svg_cache:
            (self._svg_cache[i],) = neighbourhood_svgs(self, [i])
        return self._svg_cache[i]

    def all_svgs(self) -> list[str]:
        """The pictures of every step, laid out by one run of the layout program."""
        missing = [i for i in range(len(self.steps)) if i not in self._svg_cache]
        for i, svg in zip(missing, neighbourhood_svgs(self, missing)):
            self._svg_cache[i] = svg
        return [self._svg_cache[i] for i in range(len(self.steps))]

    def overview(self) -> Overview | None:
        """The whole graph drawn once, small; None when it cannot be (:meth:`overview_note` says why)."""
        if self._overview is _NOT_BUILT:
            try:
                self._overview = build_overview(self.output)
                self._overview_note = "" if self._overview else OVERVIEW_TOO_BIG
            except (GraphvizNotFoundError, LayoutError) as error:
                self._overview = None
                self._overview_note = f"no overview: {error}"
        return self._overview  # type: ignore[return-value]

    def overview_note(self) -> str:
        """Why there is no overview ("" when there is one)."""
        self.overview()
        return self._overview_note

    def static_html(self, i: int = 0) -> str:
        """Step ``i`` as HTML that shows in any viewer (pictures as ``<img>``, text escaped)."""
        return static_step(self, i)

    def to_html(
        self, path: str | os.PathLike[str] | None = None, *, max_steps: int = DEFAULT_MAX_STEPS
    ) -> str:
        """A self-contained page that steps through both passes, with buttons and the arrow keys.

        No kernel and no network: the pictures and a few lines of script are
        inside the page. With ``path``, the page is also written there. Without
        a layout program the page has the text of every step and no pictures.

        Raises:
            GraphTooLargeError: more than ``max_steps`` steps (about 5 KB of page a step).

        """
        page = standalone_page(self, max_steps)
        if path is not None:
            Path(path).write_text(page, encoding="utf-8")
        return page

    def widget(self) -> Any:
        """An ipywidgets control to step through the passes (see :mod:`tinygrad_bp.stepper_widget`)."""
        from .stepper_widget import build_widget

        return build_widget(self)

    def _ipython_display_(self) -> None:
        from IPython.display import HTML, display

        try:
            import ipywidgets  # noqa: F401
        except ImportError:
            display(HTML(self.static_html(0)))
        else:
            display(self.widget())
