"""micrograd's ``Value``: tinygrad_bp's, built also from micrograd's constructor arguments.

``Value(2.0)`` is a leaf. ``Value(data, (a, b), '+')``, as micrograd's lecture
builds nodes by hand, records a node of that operation over those operands
(``'+'``, ``'*'``, ``'**k'``, ``'ReLU'``, ``'tanh'``, ``'exp'``, or any
operation name of tinygrad_bp), so backward, ``_backward()`` and drawing work
on it. The results of operators are tinygrad_bp Values, which have
``_prev``, ``_op`` and ``_backward()`` too.
"""

from __future__ import annotations

from collections.abc import Iterable

from tinygrad_bp.errors import UnknownOperationError
from tinygrad_bp.rules import RULES
from tinygrad_bp.value import Number, attach, constant
from tinygrad_bp.value import Value as _Value

__all__ = ["Value"]

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
    name = _OPS.get(op, op)
    if name not in RULES:
        msg = f"Value: no derivative rule is registered for the operation {op!r}"
        raise UnknownOperationError(msg)
    return name, children


class Value(_Value):
    """A scalar node; ``Value(data, _children=(), _op='', label='')`` as micrograd's."""

    __slots__ = ()

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
