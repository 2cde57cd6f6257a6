"""Step through the forward and the backward pass of a graph, one node at a time.

``Stepper(output)`` lists

* the forward steps, in topological order (inputs first): each operation
  node computed from its inputs, ``layer1.neuron0.out = sigmoid(0.3775) =
  0.593269992107187`` (leaves are inputs, not steps);
* the backward steps, in reverse topological order: each operation node with
  its upstream gradient d output / d node and, for each input occurrence
  that needs a gradient, the local derivative, the contribution
  upstream x local it adds, and that input's running total.

The stepper does this arithmetic itself, walking the graph in reverse
topological order with the rule table's local derivatives, so it shows the
chain rule of the worked examples for any graph; the final running totals
equal the engine's gradients (:attr:`Stepper.gradients`). Nothing in the graph
is modified.

In a console, ``print(stepper)`` or ``stepper.step_text(i)``; in Jupyter, the
stepper displays itself as an ipywidgets control (previous / next buttons, a
slider, a parameter menu) over the drawing with the current node
highlighted, or as static HTML when ipywidgets is not installed.
"""

from __future__ import annotations

import html
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Union

from .engine import toposort
from .errors import GraphTooLargeError, GraphvizNotFoundError
from .explain import NodeNames, local_derivatives
from .value import Value
from .viz import draw_dot, render

__all__ = ["BackwardStep", "Contribution", "ForwardStep", "Stepper"]

_INFIX = frozenset({"+", "-", "*", "/", "**"})


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
        else:
            middle = f"{node.op}({', '.join(fmt.number(v) for v in values)})"
        return f"{fmt.names(node)} = {middle} = {fmt.number(node.data)}"

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

    def _contribution_text(self, c: Contribution) -> str:
        fmt = self._format
        n = fmt.number
        repeated = self.node.inputs.count(c.input) > 1
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
            f"{name} = {self.node.op}({', '.join(fmt.names(x) for x in self.node.inputs)})",
            f"  upstream gradient d {out} / d {name} = {fmt.number(self.upstream)}{seed}",
        ]
        lines += [self._contribution_text(c) for c in self.contributions]
        if not self.contributions:
            lines.append("  (no input needs a gradient)")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.text


Step = Union[ForwardStep, BackwardStep]


def _backward_steps(
    output: Value, seed: float, fmt: _Format, start: int
) -> tuple[list[BackwardStep], dict[Value, float]]:
    """The backward steps (reverse topological order) and the final totals {node: gradient}."""
    if not output.requires_grad:
        return [], {}
    totals: dict[Value, float] = {output: seed}
    raw: list[tuple[Value, float, list[list[Any]]]] = []
    for node in reversed(toposort(output, only_requires_grad=True)):
        if not node.inputs:
            continue
        upstream = totals[node]
        local = local_derivatives(node)
        entries = []
        for i, (x, d) in enumerate(zip(node.inputs, local)):
            if x.requires_grad:
                contribution = upstream * d
                previous = totals.get(x)
                totals[x] = contribution if previous is None else previous + contribution
                entries.append([i, x, d, contribution, previous, totals[x]])
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
            Contribution(*entry, complete=last[id(entry[1])] == (k, j)) for j, entry in enumerate(entries)
        )
        steps.append(BackwardStep(start + k, node, upstream, contributions, fmt))
    return steps


class Stepper:
    """The forward and backward passes of ``output``'s graph as a list of steps.

    Args:
        output: the Value whose graph is stepped through.
        seed: the upstream gradient of the output (d output / d output = 1).
        digits: significant digits of the numbers in the text.

    ``steps`` is ``forward_steps + backward_steps``; a step's ``index`` is its
    position in ``steps``. ``gradients`` maps every node that needs a
    gradient to its final running total.

    """

    def __init__(self, output: Value, *, seed: float = 1.0, digits: int = 15) -> None:
        if not isinstance(output, Value):
            msg = f"Stepper: output must be a Value, not {type(output).__name__}"
            raise TypeError(msg)
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
        self._svg_cache: dict[tuple[int, tuple[tuple[str, Any], ...]], str] = {}

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

    # --- HTML and widgets -----------------------------------------------------------------

    def svg(self, i: int, **draw_options: Any) -> str:
        """The drawing at step ``i`` (current node highlighted, running totals as grads), inline SVG.

        Raises GraphvizNotFoundError or GraphTooLargeError as :func:`tinygrad_bp.viz.to_svg`.
        """
        i = self._check_index(i)
        key = (i, tuple(sorted((k, repr(v)) for k, v in draw_options.items())))
        if key not in self._svg_cache:
            step = self.steps[i]
            options: dict[str, Any] = {"highlight": step.node, **draw_options}
            if step.kind == "forward":
                options.setdefault("show_grad", False)
            else:
                options.setdefault("grads", self.totals_after(i))
            svg = render(draw_dot(self.output, **options), "svg").decode("utf-8")
            self._svg_cache[key] = svg[svg.find("<svg") :]
        return self._svg_cache[key]

    def _graph_html(self, i: int, draw_options: Mapping[str, Any]) -> str:
        """The drawing at step ``i``, or a note saying why it is not shown."""
        try:
            return self.svg(i, **draw_options)
        except (GraphvizNotFoundError, GraphTooLargeError) as error:
            return f"<p><i>(graph not shown: {html.escape(str(error))})</i></p>"

    def step_html(self, i: int) -> str:
        """Step ``i``'s arithmetic as escaped HTML."""
        return f"<pre>{html.escape(self.step_text(i))}</pre>"

    def to_html(self, *, include_graph: bool = True, **draw_options: Any) -> str:
        """Every step as a static HTML page fragment (escaped), the drawing first if ``dot`` is there."""
        parts = ['<div class="tinygrad-bp-stepper">']
        if include_graph and self.steps:
            parts.append(self._graph_html(len(self.steps) - 1, draw_options))
        for title, steps in (("Forward pass", self.forward_steps), ("Backward pass", self.backward_steps)):
            parts.append(f"<h4>{title}</h4><ol>")
            parts += [f"<li>{self.step_html(s.index)}</li>" for s in steps]
            parts.append("</ol>")
        parts.append("</div>")
        return "".join(parts)

    def widget(self, **draw_options: Any) -> Any:
        """An ipywidgets control to step through the passes.

        Previous/next buttons, a step slider and a parameter menu over the
        drawing (current node highlighted), with the step's arithmetic beside
        it. ``draw_options`` go to :func:`tinygrad_bp.viz.draw_dot` (e.g. ``collapse=``).
        Without ``dot`` the drawing is replaced by a note and the text still
        works. The returned VBox carries the controls as attributes
        ``previous_button``, ``next_button``, ``slider``, ``dropdown``,
        ``graph`` and ``arithmetic``.
        """
        return _build_widget(self, draw_options)

    def _ipython_display_(self) -> None:
        from IPython.display import HTML, display

        try:
            import ipywidgets  # noqa: F401
        except ImportError:
            display(HTML(self.to_html()))
        else:
            display(self.widget())


def _build_widget(stepper: Stepper, draw_options: Mapping[str, Any]) -> Any:
    """The ipywidgets control of :meth:`Stepper.widget`."""
    import ipywidgets as w

    last = max(len(stepper) - 1, 0)
    previous_button = w.Button(description="previous", icon="arrow-left", disabled=not stepper.steps)
    next_button = w.Button(description="next", icon="arrow-right", disabled=not stepper.steps)
    slider = w.IntSlider(value=0, min=0, max=last, description="step", disabled=not stepper.steps)
    jumps = stepper.parameter_steps()
    dropdown = w.Dropdown(options=[("jump to a parameter...", -1), *jumps.items()], value=-1)
    graph = w.HTML(layout=w.Layout(width="65%", overflow="auto"))
    arithmetic = w.HTML(layout=w.Layout(width="35%"))

    def show(i: int) -> None:
        if not stepper.steps:
            graph.value = ""
            arithmetic.value = f"<pre>{html.escape(str(stepper))}</pre>"
            return
        graph.value = stepper._graph_html(i, draw_options)
        arithmetic.value = stepper.step_html(i)

    def on_slider(change: Mapping[str, Any]) -> None:
        show(change["new"])

    def on_previous(_: Any) -> None:
        slider.value = max(slider.value - 1, 0)

    def on_next(_: Any) -> None:
        slider.value = min(slider.value + 1, last)

    def on_dropdown(change: Mapping[str, Any]) -> None:
        if change["new"] >= 0:
            slider.value = change["new"]
            dropdown.value = -1

    slider.observe(on_slider, names="value")
    previous_button.on_click(on_previous)
    next_button.on_click(on_next)
    dropdown.observe(on_dropdown, names="value")
    show(0)
    box = w.VBox([w.HBox([previous_button, next_button, slider, dropdown]), w.HBox([graph, arithmetic])])
    box.previous_button = previous_button
    box.next_button = next_button
    box.slider = slider
    box.dropdown = dropdown
    box.graph = graph
    box.arithmetic = arithmetic
    return box
