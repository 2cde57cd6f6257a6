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

The rooms: :mod:`.steps` (what a step is), :mod:`.stepper` (the Stepper),
:mod:`.view` (a step's pictures), :mod:`.page` (the standalone HTML page),
:mod:`.widget` (the Jupyter widget).
"""

from __future__ import annotations

from .stepper import DEFAULT_MAX_NODES, Stepper
from .steps import BackwardStep, Contribution, ForwardStep

__all__ = ["DEFAULT_MAX_NODES", "BackwardStep", "Contribution", "ForwardStep", "Stepper"]
