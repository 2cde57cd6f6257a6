"""micrograd's ``nn``: Module, Neuron, Layer, MLP, on tinygrad_bp's engine.

As micrograd 0.1.0: weights from the global ``random`` (uniform in [-1, 1]),
bias 0, a neuron is ``sum(w_i * x_i, b)`` then ReLU unless ``nonlin=False``,
a layer of one neuron returns a Value rather than a list, and the last layer
of an MLP is linear. For tinygrad_bp's own models (seeded, labelled,
saveable) see :mod:`tinygrad_bp.nn`.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from .engine import Value

if TYPE_CHECKING:
    from tinygrad_bp.value import Value as _Value

__all__ = ["MLP", "Layer", "Module", "Neuron"]


class Module:
    """``zero_grad()`` and ``parameters()``, as micrograd's."""

    def zero_grad(self) -> None:
        """Set every parameter's gradient to 0."""
        for p in self.parameters():
            p.grad = 0

    def parameters(self) -> list[Value]:
        """The parameters (none for a bare Module)."""
        return []


class Neuron(Module):
    """``relu(sum(w_i * x_i) + b)`` (no ReLU with ``nonlin=False``)."""

    def __init__(self, nin: int, nonlin: bool = True) -> None:
        self.w = [Value(random.uniform(-1, 1)) for _ in range(nin)]
        self.b = Value(0)
        self.nonlin = nonlin

    def __call__(self, x: Sequence[Any]) -> _Value:
        """The neuron's output for inputs ``x`` (Values or numbers)."""
        act: _Value = sum((wi * xi for wi, xi in zip(self.w, x)), self.b)
        return act.relu() if self.nonlin else act

    def parameters(self) -> list[Value]:
        """[w_0, ..., w_{n-1}, b]."""
        return [*self.w, self.b]

    def __repr__(self) -> str:
        return f"{'ReLU' if self.nonlin else 'Linear'}Neuron({len(self.w)})"


class Layer(Module):
    """``nout`` neurons; one output is returned as a Value, several as a list."""

    def __init__(self, nin: int, nout: int, **kwargs: Any) -> None:
        self.neurons = [Neuron(nin, **kwargs) for _ in range(nout)]

    def __call__(self, x: Sequence[Any]) -> _Value | list[_Value]:
        """Every neuron's output: a Value for one neuron, else a list."""
        out = [n(x) for n in self.neurons]
        return out[0] if len(out) == 1 else out

    def parameters(self) -> list[Value]:
        """Each neuron's parameters in turn."""
        return [p for n in self.neurons for p in n.parameters()]

    def __repr__(self) -> str:
        return f"Layer of [{', '.join(str(n) for n in self.neurons)}]"


class MLP(Module):
    """Layers of sizes ``nouts`` over ``nin`` inputs; ReLU everywhere but the last layer."""

    def __init__(self, nin: int, nouts: Sequence[int]) -> None:
        sz = [nin, *nouts]
        self.layers = [Layer(sz[i], sz[i + 1], nonlin=i != len(nouts) - 1) for i in range(len(nouts))]

    def __call__(self, x: Any) -> Any:
        """The last layer's output."""
        for layer in self.layers:
            x = layer(x)
        return x

    def parameters(self) -> list[Value]:
        """Each layer's parameters in turn."""
        return [p for layer in self.layers for p in layer.parameters()]

    def __repr__(self) -> str:
        return f"MLP of [{', '.join(str(layer) for layer in self.layers)}]"
