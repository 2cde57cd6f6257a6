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

import math
import weakref
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
    def flags(values: Sequence[bool]) -> np.ndarray:
        return np.array(values, dtype=bool)

    @staticmethod
    def counts(values: Sequence[int]) -> np.ndarray:
        return np.array(values, dtype=np.int64)

    @staticmethod
    def per_step(f: Any, t: Any) -> Any:
        """``f(k)`` for every step count k of ``t`` (an int, or an array of them), in Python floats.

        One float per distinct count, so each number is the one the loop over Values computes.
        """
        if isinstance(t, int):
            return float(f(t))
        counts, where = np.unique(t, return_inverse=True)
        return np.array([float(f(int(k))) for k in counts])[where]

    @staticmethod
    def first_bad(values: np.ndarray) -> int | None:
        """The first index whose number is not finite, or None (call it where NumPy's warnings are off)."""
        if all_finite(values):
            return None
        return int(np.flatnonzero(~np.isfinite(values))[0])


def all_finite(*arrays: np.ndarray) -> bool:
    """True when every number is finite: sum_i x_i^2 first, one dot product per array.

    That sum is finite unless a term is or it overflows (|x| above about 1e154); only then does
    the check look element by element. A dot product costs half a sum (NumPy sums pairwise).
    (Call it where NumPy's overflow warnings are off.)
    """
    total = 0.0
    for a in arrays:
        flat = a.reshape(-1)  # a view, unless the array is not contiguous
        total += float(flat @ flat)
    if math.isfinite(total):
        return True
    return all(bool(np.isfinite(a).all()) for a in arrays)


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
        self.ids = frozenset(map(id, self.params))
        if held_elsewhere(self.ids):
            msg = (
                "these parameters are already held as arrays by another hold() block; "
                "a second one would train from stale numbers and be overwritten"
            )
            raise RuntimeError(msg)
        n = len(self.params)
        self._data = np.fromiter(map(_DATA, self.params), dtype=np.float64, count=n)
        grads = [p._grad for p in self.params]
        self._grad = np.array([0.0 if g is NO_GRAD else g for g in grads], dtype=np.float64)
        reached = [g is not NO_GRAD for g in grads]
        uniform = all(reached) or not any(reached)
        self.reached: bool | np.ndarray = all(reached) if uniform else np.array(reached)
        self.checked_by: weakref.WeakSet[Any] = weakref.WeakSet()  # tapes that found these their params
        _active.add(self)

    @property
    def data(self) -> np.ndarray:
        """The parameters' values (write into it in place; it cannot be replaced)."""
        return self._data

    @property
    def grad(self) -> np.ndarray:
        """The parameters' gradients, summed since the last :meth:`zero_grad`."""
        return self._grad

    @property
    def active(self) -> bool:
        """True until :meth:`release`: while the arrays are the parameters."""
        return self in _active

    def release(self) -> None:
        """The arrays are no longer the parameters (the end of the hold() block)."""
        _active.discard(self)

    def checked_data(self) -> np.ndarray:
        """``data``, after a check that every value is finite (ValueError naming the first that is not).

        (A replay calls it where NumPy's warnings are off, as :func:`all_finite` needs.)
        """
        j = self.ops.first_bad(self._data)
        if j is not None:
            label = f" ({self.params[j].label!r})" if self.params[j].label else ""
            shown = float(self._data[j])
            msg = f"held parameter {j}{label} is {shown!r}: parameters must be finite numbers"
            raise ValueError(msg)
        return self._data

    def __len__(self) -> int:
        return len(self.params)

    def __repr__(self) -> str:
        return f"<HeldParameters: {len(self)} parameters as arrays>"

    def zero_grad(self) -> None:
        """No parameter has a gradient any more: grad = 0 (the optimizers' ``zero_grad``)."""
        self._grad.fill(0.0)
        self.reached = False

    def add_grad(self, grad: np.ndarray) -> None:
        """grad += ``grad`` for every parameter (a replay's dL/dparams), which all count as reached."""
        self._grad += grad
        self.reached = True

    def write_back(self) -> None:
        """Write ``data`` and ``grad`` into the Values' ``.data`` and ``.grad``.

        A parameter not reached since :meth:`zero_grad` gets ``NO_GRAD`` (0.0), as the
        optimizers' own ``zero_grad`` leaves it.
        """
        with np.errstate(over="ignore", invalid="ignore"):
            self.checked_data()  # ValueError, and nothing written, for a number that is not finite
        reached = self.reached
        flags = [reached] * len(self) if isinstance(reached, bool) else reached.tolist()
        for p, x, g, r in zip(self.params, self._data.tolist(), self._grad.tolist(), flags):
            p._data = x  # the slots behind .data and .grad
            p._grad = g if r else NO_GRAD

    def same_as(self, params: Sequence[Value]) -> bool:
        """True if ``params`` are exactly the held Values, in order."""
        return len(params) == len(self.params) and all(a is b for a, b in zip(params, self.params))

    def overlaps(self, ids: frozenset[int]) -> bool:
        """True if any of the Values with these ids is held here."""
        return not self.ids.isdisjoint(ids)


#: The holds that last: a Value is held by at most one of them.
_active: weakref.WeakSet[HeldParameters] = weakref.WeakSet()


def held_elsewhere(ids: frozenset[int]) -> bool:
    """True if a hold() block that lasts holds any of the Values with these ids."""
    return any(h.overlaps(ids) for h in _active) if _active else False
