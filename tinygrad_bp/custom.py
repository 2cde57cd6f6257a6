"""Custom operations: a new scalar operation from its forward function and its derivative(s).

    >>> import math
    >>> from tinygrad_bp import Value, custom_op, sigmoid
    >>> cube = custom_op("cube_doc", lambda x: x**3, lambda x: 3 * x**2)
    >>> y = cube(Value(2.0))
    >>> y.backward()
    >>> y.data, y.inputs[0].grad
    (8.0, 12.0)

See :func:`custom_op`. The operation goes into the same rule table as the
built-in ones, so backward, ``grad``, drawing, the stepper, ``explain`` and
``gradcheck`` treat it like any other.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .rules import RULES, Rule, register
from .value import Value, apply

__all__ = ["custom_op"]

# The names custom_op has registered: defining one of them again replaces it (a notebook cell
# that defines an operation can be run twice); the built-in operations' names stay taken.
_CUSTOM_NAMES: set[str] = set()


def custom_op(
    name: str,
    forward: Callable[..., float],
    derivative: Callable[..., Any],
    *,
    arity: int | None = None,
    formula: str = "",
) -> Callable[..., Value]:
    """Register operation ``name`` and return the function that records it.

    ``forward(*xs)`` gets floats and returns a float (raise ValueError for
    inputs outside the domain). ``derivative(*xs)`` returns d out/d x for one
    input, or a tuple with one entry per input. For second derivatives of the
    new operation, write ``derivative`` with operators and Value methods (or
    the functions ``tinygrad_bp.exp``, ``log``, ...), which work on floats
    and on Values alike. ``arity`` defaults to the number of parameters of
    ``forward``.

    Calling ``custom_op`` again with the name of an earlier custom operation
    replaces that definition (so a notebook cell can be run twice); Values
    already recorded with the name then use the new rule. The name of a
    built-in operation (``"+"``, ``"exp"``, ...) raises ValueError.
    """
    if not isinstance(name, str) or not name:
        msg = "custom_op: name must be a non-empty str"
        raise ValueError(msg)
    if name in RULES and name not in _CUSTOM_NAMES:
        msg = f"custom_op: {name!r} is a built-in operation and already exists; choose another name"
        raise ValueError(msg)
    if arity is None:
        arity = forward.__code__.co_argcount if hasattr(forward, "__code__") else None

    def local(_out: Any, *xs: Any) -> tuple[Any, ...]:
        d = derivative(*xs)
        partials = tuple(d) if isinstance(d, (tuple, list)) else (d,)
        if len(partials) != len(xs):
            msg = f"{name}: the derivative returned {len(partials)} partial(s) for {len(xs)} input(s)"
            raise TypeError(msg)
        return partials

    register(Rule(name, arity, forward, local, formula or f"user-defined derivative of {name}"), replace=True)
    _CUSTOM_NAMES.add(name)

    def operation(*operands: Any) -> Value:
        return apply(name, *operands)

    operation.__name__ = name
    operation.__doc__ = f"Record the custom operation {name!r}."
    return operation
