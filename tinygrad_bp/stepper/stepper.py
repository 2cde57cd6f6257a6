"""The Stepper: the steps of a graph's two passes, with their pictures, text, page and widget."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tinygrad_bp.engine import toposort
from tinygrad_bp.errors import GraphTooLargeError, GraphvizNotFoundError, LayoutError
from tinygrad_bp.explain import NodeNames
from tinygrad_bp.value import Value
from tinygrad_bp.viz import count_nodes

from .page import DEFAULT_MAX_STEPS, standalone_page, static_step
from .steps import Format, ForwardStep, Step, backward_steps
from .view import OVERVIEW_TOO_BIG, Overview, build_overview, neighbourhood_svgs

__all__ = ["DEFAULT_MAX_NODES", "Stepper"]

# The most Values a Stepper walks by default: a lesson's graph, not a training run's.
DEFAULT_MAX_NODES = 50_000

_NOT_BUILT = object()


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
        fmt = Format(self.names, digits, output)
        self.forward_steps: list[ForwardStep] = []
        for node in order:
            if node.inputs:
                self.forward_steps.append(ForwardStep(len(self.forward_steps), node, fmt))
        self.backward_steps, self.gradients = backward_steps(
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

        See :mod:`tinygrad_bp.stepper.view`. Raises GraphvizNotFoundError without a layout program.
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
        """An ipywidgets control to step through the passes (see :mod:`tinygrad_bp.stepper.widget`)."""
        from .widget import build_widget

        return build_widget(self)

    def _ipython_display_(self) -> None:
        from IPython.display import HTML, display

        try:
            import ipywidgets  # noqa: F401
        except ImportError:
            display(HTML(self.static_html(0)))
        else:
            display(self.widget())
