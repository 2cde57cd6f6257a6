"""micrograd's ``Value``: tinygrad_bp's, built also from micrograd's constructor arguments.

``Value(2.0)`` is a leaf. ``Value(data, (a, b), '+')``, as micrograd's lecture
builds nodes by hand, records a node of that operation over those operands
(``'+'``, ``'*'``, ``'**k'``, ``'ReLU'``, ``'tanh'``, ``'exp'``, or any
operation name of tinygrad_bp), so backward, ``_backward()`` and drawing work
on it. The results of operators are Values of this module too, which have
``_prev``, ``_op`` and ``_backward()``.

A node made by hand may also carry its own backward step, as the lecture
defines an operation: ``out = Value(t, (x,), 'mysig')`` then
``out._backward = fn``. Its operation need not be in tinygrad_bp's rule
table. ``backward()`` on a graph with such a node runs micrograd's own
algorithm (topological order, then each node's ``_backward()``), with
micrograd's semantics: a second call adds to intermediate gradients too.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from tinygrad_bp.engine import toposort
from tinygrad_bp.errors import UnknownOperationError
from tinygrad_bp.rules import RULES
from tinygrad_bp.value import Number, attach, constant
from tinygrad_bp.value import Value as _Value

__all__ = ["HandMade", "Value"]

# micrograd's operation names -> tinygrad_bp's
_OPS = {"ReLU": "relu"}


def _operation(op: str, children: tuple[_Value, ...]) -> tuple[str, tuple[_Value, ...]]:
    """tinygrad_bp's name and operands for micrograd's ``_op`` over ``children``."""
    if op.startswith("**") and len(children) == 1:
        try:
            exponent = float(op[2:])
        except ValueError:
            msg = f"Value: cannot read the exponent of the operation {op!r}"
            raise UnknownOperationError(msg) from None
        return "**", (children[0], constant(exponent))
    return _OPS.get(op, op), children  # a name without a rule needs its own _backward


class Value(_Value):
    """A scalar node; ``Value(data, _children=(), _op='', label='')`` as micrograd's."""

    __slots__ = ()

    def __new__(cls, data: Number = 0.0, _children: Iterable[_Value] = (), *_: Any, **__: Any) -> Any:
        """A node made by hand (with ``_children``) can take its own ``_backward``: a :class:`HandMade`."""
        del data
        return object.__new__(HandMade if _children and cls is Value else cls)

    def __init__(
        self, data: Number, _children: Iterable[_Value] = (), _op: str = "", label: str = ""
    ) -> None:
        children = tuple(_children)
        for child in children:
            if not isinstance(child, _Value):
                msg = f"Value: _children must be Values, not {type(child).__name__}"
                raise TypeError(msg)
        if children and not _op:
            msg = "Value: a node built from _children needs its _op (such as '+' or '*')"
            raise ValueError(msg)
        op, inputs = _operation(_op, children) if children else ("", ())
        super().__init__(data, label=label)
        if inputs:
            attach(self, op, inputs)

    # --- micrograd's graph: the same nodes micrograd records, so the same numbers to the last bit ---
    # micrograd builds a - b as a + (-b), -a as a * -1 and a / b as a * b**-1, and wraps a number
    # operand in a Value. Each method below composes tinygrad_bp's operations the same way; every
    # node it makes is of this class, so what is built from it composes as micrograd does too.

    def __add__(self, other: Any) -> Value:
        return _mine(_Value.__add__(self, other))

    def __mul__(self, other: Any) -> Value:
        return _mine(_Value.__mul__(self, other))

    def __pow__(self, other: Any) -> Value:
        if not isinstance(other, (int, float)) or isinstance(other, bool):
            msg = f"Value ** : micrograd supports int/float powers only, not {type(other).__name__}"
            raise TypeError(msg)
        return _mine(_Value.__pow__(self, other))

    def relu(self) -> Value:
        """max(self, 0): micrograd's ReLU."""
        return _mine(_Value.relu(self))

    def tanh(self) -> Value:
        """The hyperbolic tangent of self, as the lecture adds it."""
        return _mine(_Value.tanh(self))

    def exp(self) -> Value:
        """e ** self, as the lecture adds it."""
        return _mine(_Value.exp(self))

    def __neg__(self) -> Value:  # -self
        return self * -1

    def __radd__(self, other: Any) -> Value:  # other + self
        return self + other

    def __sub__(self, other: Any) -> Value:  # self - other
        return self + (-other)

    def __rsub__(self, other: Any) -> Value:  # other - self
        return other + (-self)  # a number + a Value: Value.__radd__

    def __rmul__(self, other: Any) -> Value:  # other * self
        return self * other

    def __truediv__(self, other: Any) -> Value:  # self / other
        return self * other**-1

    def __rtruediv__(self, other: Any) -> Value:  # other / self
        return other * self**-1  # a number * a Value: Value.__rmul__


    def backward(self, gradient: Number = 1.0) -> None:
        """The engine's pass; micrograd's own when the graph holds a node with its own ``_backward``."""
        order = toposort(self)
        own = (v for v in order if isinstance(v, HandMade))
        if not any("_backward" in v.__dict__ or v.op not in RULES for v in own):
            super().backward(gradient)
            return
        self.grad = float(gradient)  # micrograd: self.grad = 1, then each node's step, outputs first
        for v in reversed(order):
            v._backward()


class HandMade(Value):
    """A node built by hand, ``Value(data, _children, _op)``: it may be given its own ``_backward``."""

    __slots__ = ("__dict__",)


def _mine(node: _Value) -> Value:
    """``node`` as a micrograd Value (the same slots: only its class changes)."""
    if type(node) is not Value:
        node.__class__ = Value
    return node  # type: ignore[return-value]  # its class is Value now
