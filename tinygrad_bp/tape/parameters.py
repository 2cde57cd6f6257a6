"""Parameters held as arrays while a tape trains them: what a replay reads and an optimizer updates.

A :class:`~tinygrad_bp.Value` keeps its number as a Python float, which is what a learner reads
and what the scalar engine needs. A replay works on arrays, so between replays the same numbers
would go back and forth between the two, one Python step per parameter each way. Inside
:meth:`BatchObjective.hold() <tinygrad_bp.tape.BatchObjective.hold>` they stay in two arrays
instead, ``data`` and ``grad`` (as PyTorch keeps a parameter's tensor and its ``.grad``): every
replay reads ``data`` and adds into ``grad``, and the optimizer given to ``hold`` updates ``data``
in place with its own update rule, one array operation per formula. The Values get the numbers
back when the block ends (or at :meth:`HeldParameters.write_back`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from tinygrad_bp.value import NO_GRAD, Value

from .recording import _DATA


class _ArrayOps:
    """The functions the optimizers' update rules need beyond arithmetic, for NumPy arrays.

    The same names as ``tinygrad_bp.optim``'s float versions, so each rule is written once.
    """

    sqrt = staticmethod(np.sqrt)
    maximum = staticmethod(np.maximum)
    where = staticmethod(np.where)
    logical_or = staticmethod(np.logical_or)

    @staticmethod
    def quiet() -> Any:
        """A block in which an overflow is no warning: the step checks its numbers itself."""
        return np.errstate(all="ignore")

    @staticmethod
    def array(values: Sequence[float]) -> np.ndarray:
        return np.array(values, dtype=np.float64)

    @staticmethod
    def first_bad(values: np.ndarray) -> int | None:
        """The index of the first number that is not finite, or None when all are."""
        if np.isfinite(values).all():
            return None
        return int(np.flatnonzero(~np.isfinite(values))[0])


class HeldParameters:
    """``params[j]``'s value and gradient held as ``data[j]`` and ``grad[j]`` (two float64 arrays).

    ``reached`` says which parameters received a gradient since the last :meth:`zero_grad`
    (an optimizer leaves the others alone, as PyTorch's do): True for all of them (a replay
    reaches every parameter of its tape), False for none, else a boolean array.
    Made by :meth:`tinygrad_bp.tape.BatchObjective.hold`; while it lasts, the arrays ARE the
    parameters, and a Value's ``.data`` and ``.grad`` are only brought up to date by
    :meth:`write_back` (the end of the block does it).
    """

    ops = _ArrayOps()

    def __init__(self, params: Sequence[Value]) -> None:
        self.params = tuple(params)
        n = len(self.params)
        self.data = np.fromiter(map(_DATA, self.params), dtype=np.float64, count=n)
        grads = [p._grad for p in self.params]
        self.grad = np.array([0.0 if g is NO_GRAD else g for g in grads], dtype=np.float64)
        reached = [g is not NO_GRAD for g in grads]
        uniform = all(reached) or not any(reached)
        self.reached: bool | np.ndarray = all(reached) if uniform else np.array(reached)

    def __len__(self) -> int:
        return len(self.params)

    def __repr__(self) -> str:
        return f"<HeldParameters: {len(self)} parameters as arrays>"

    def zero_grad(self) -> None:
        """No parameter has a gradient any more: grad = 0 (the optimizers' ``zero_grad``)."""
        self.grad.fill(0.0)
        self.reached = False

    def add_grad(self, grad: np.ndarray) -> None:
        """grad += ``grad`` for every parameter (a replay's dL/dparams), which all count as reached."""
        self.grad += grad
        self.reached = True

    def write_back(self) -> None:
        """Write ``data`` and ``grad`` into the Values' ``.data`` and ``.grad``.

        A parameter not reached since :meth:`zero_grad` gets ``NO_GRAD`` (0.0), as the
        optimizers' own ``zero_grad`` leaves it.
        """
        reached = self.reached
        flags = [reached] * len(self) if isinstance(reached, bool) else reached.tolist()
        for p, x, g, r in zip(self.params, self.data.tolist(), self.grad.tolist(), flags):
            p._data = x  # the slots behind .data and .grad
            p._grad = g if r else NO_GRAD

    def same_as(self, params: Sequence[Value]) -> bool:
        """True if ``params`` are exactly the held Values, in order."""
        return len(params) == len(self.params) and all(a is b for a, b in zip(params, self.params))
