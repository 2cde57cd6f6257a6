"""Training with a tape: the batch loss of a model and its gradient in one replay."""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, NamedTuple

from tinygrad_bp import losses as _losses
from tinygrad_bp.errors import TapeMismatchError
from tinygrad_bp.value import Value, no_grad

try:
    import numpy as np
except ImportError as _error:  # pragma: no cover - depends on the environment
    raise ImportError("tinygrad_bp.tape needs numpy: pip install 'tinygrad_bp[numpy]'") from _error

from .parameters import HeldParameters
from .tracing import trace

if TYPE_CHECKING:
    from tinygrad_bp.optim import Optimizer

    from .recording import ArrayLike, Check, Reduction, Shape
    from .replay import Replay, Tape

# =================================================================================================
# Training: the batch objective
# =================================================================================================


def _as_list(out: Value | Sequence[Value]) -> list[Value]:
    return [out] if isinstance(out, Value) else list(out)


#: Per-sample losses by name: the library's own (tinygrad_bp.losses), the same functions the
#: scalar engine trains with; each builds the same graph for every sample, so one trace serves
#: every batch. Integer class targets of a model with several outputs are one-hot encoded for
#: ``mse``/``half_sse``/``cross_entropy`` (cross_entropy takes the one-hot row as class probabilities).
LOSSES: dict[str, Callable[[Any, Any], Value]] = {
    "mse": _losses.mse_loss,  # type: ignore[dict-item]  # one prediction list: a Value
    "half_sse": _losses.half_sse,
    "hinge": _losses.hinge_loss,
    "bce": _losses.binary_cross_entropy,
    "bce_with_logits": _losses.binary_cross_entropy_with_logits,
    "cross_entropy": _losses.cross_entropy,
}


class BatchResult(NamedTuple):
    """What :class:`BatchObjective` returns: the batch loss and the model's outputs (batch, outputs)."""

    loss: float
    outputs: np.ndarray


class BatchObjective:
    """L = mean_i loss(model(x_i), y_i) [+ penalty()] and dL/dp, by one tape replay per batch.

    ``loss`` is a name of :data:`LOSSES` or a function ``loss(output, target) -> Value`` (output:
    the model's Value or list of Values for one sample; target: a Value or a list of Values);
    ``fn(model, x, y) -> Value`` replaces both. ``penalty()`` (no arguments, e.g. an L2 term of
    the parameters) is added once per batch: it does not depend on the samples, so the tape
    evaluates it once. ``reduction="sum"`` gives sum_i instead of the mean (no penalty then).

    Calling the objective ADDS dL/dp to every parameter's ``.grad`` (as ``backward`` does: zero the
    gradients first) and returns :class:`BatchResult` (loss, outputs per sample); inside
    :meth:`hold` it reads and adds to arrays instead, which is faster. The tape is
    traced on the first call, one per input/target shape, and checked as :func:`trace` says
    (``check``); a model whose ``parameters()`` no longer are the traced ones raises
    TapeMismatchError (call :meth:`reset` after changing the model).
    """

    def __init__(
        self,
        model: Any,
        loss: str | Callable[[Any, Any], Value] = "mse",
        *,
        fn: Callable[[Any, list[Value], Any], Value] | None = None,
        penalty: Callable[[], Value] | None = None,
        reduction: Reduction = "mean",
        check: Check = "first",
    ) -> None:
        if reduction not in ("mean", "sum"):
            raise ValueError(f"reduction must be 'mean' or 'sum', got {reduction!r}")
        if penalty is not None and reduction != "mean":
            raise ValueError("a penalty is added once per batch only with reduction='mean'")
        if isinstance(loss, str) and loss not in LOSSES:
            raise ValueError(
                f"unknown loss {loss!r}; choose one of {', '.join(map(repr, LOSSES))} or pass a function"
            )
        self.model = model
        self.loss = LOSSES[loss] if isinstance(loss, str) else loss
        self.one_hot = isinstance(loss, str) and loss in ("mse", "half_sse", "cross_entropy")
        self.fn = fn
        self.penalty = penalty
        self.reduction = reduction
        self.check = check
        self._tapes: dict[tuple[Shape, Shape], Tape] = {}
        self._n_outputs: int | None = None
        self._held: HeldParameters | None = None

    def reset(self) -> None:
        """Forget the recorded tapes (after changing the model's structure)."""
        self._tapes.clear()
        self._n_outputs = None

    def _sample_fn(self) -> Callable[[list[Value], Any], tuple[Value, list[Value]]]:
        model, loss, fn, penalty = self.model, self.loss, self.fn, self.penalty

        def sample(x: list[Value], y: Any) -> tuple[Value, list[Value]]:
            if fn is not None:
                value, outputs = fn(model, x, y), []
            else:
                out = model(x)
                value, outputs = loss(out, y), _as_list(out)
            if penalty is not None:
                value = value + penalty()
            return value, outputs

        return sample

    def _targets(self, x: np.ndarray, y: ArrayLike) -> np.ndarray:
        """Targets as floats; integer classes one-hot encoded for a named loss and several outputs."""
        try:
            t = np.asarray(y, dtype=np.float64)
        except (TypeError, ValueError) as error:
            msg = f"the targets must be numbers, all classes or all rows of one length (an array): {error}"
            raise ValueError(msg) from None
        if not self.one_hot or t.ndim != 1 or self.fn is not None:
            return t
        if self._n_outputs is None:
            with no_grad():
                self._n_outputs = len(_as_list(self.model(x[0].tolist())))
        if self._n_outputs == 1:
            return t
        classes = t.astype(np.intp)
        if (classes != t).any() or classes.min() < 0 or classes.max() >= self._n_outputs:
            raise ValueError(f"class targets must be integers in [0, {self._n_outputs})")
        return np.eye(self._n_outputs)[classes]

    def _batch(self, X: ArrayLike, y: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
        x = np.asarray(X, dtype=np.float64)
        if x.ndim != 2 or x.shape[0] == 0:
            raise TapeMismatchError(f"X must be a non-empty batch of shape (n, d), got {x.shape}")
        return x, self._targets(x, y)

    def _tape_for(self, x: np.ndarray, t: np.ndarray) -> Tape:
        key = (x.shape[1:], t.shape[1:])
        held = self._held
        tape = self._tapes.get(key)
        if held is not None:  # the parameters were taken once, by hold(); the tape checks them once
            if tape is None or tape.check != "none":
                held.write_back()  # tracing runs fn on the Values: they must hold the current numbers
            if tape is not None:
                return tape
            params = list(held.params)
        else:
            params = list(self.model.parameters())
        if tape is None:
            tape = trace(self._sample_fn(), x[0], t[0], params=params, check=self.check)
            self._tapes[key] = tape
        elif held is None and params != tape.params:
            raise TapeMismatchError(
                "the model's parameters are not the ones the tape was traced with (the model changed): "
                "call reset() to re-trace"
            )
        return tape

    def tape(self, X: ArrayLike, y: ArrayLike) -> Tape:
        """The tape for batches shaped like (X, y), traced on their first sample if new."""
        return self._tape_for(*self._batch(X, y))

    def replay(self, X: ArrayLike, y: ArrayLike) -> tuple[Tape, Replay]:
        """(the tape, its :class:`Replay` on this batch) without touching any ``.grad``."""
        x, t = self._batch(X, y)
        tape = self._tape_for(x, t)
        return tape, tape.replay(x, t, reduction=self.reduction, params=self._held)

    def __call__(self, X: ArrayLike, y: ArrayLike, *, accumulate: bool = True) -> BatchResult:
        """The batch loss and outputs; adds (``accumulate=False``: sets) dL/dp into each ``p.grad``.

        Inside :meth:`hold`, into the held ``grad`` array instead.
        """
        tape, result = self.replay(X, y)
        held = self._held
        if held is None:
            result.grads.add_to(tape.params, accumulate=accumulate)
        else:
            if not accumulate:
                held.zero_grad()
            held.add_grad(result.grads.params)
        return BatchResult(result.loss, result.aux)

    @contextmanager
    def hold(self, optimizer: Optimizer | None = None) -> Iterator[HeldParameters]:
        """Hold the model's parameters as arrays for a block of training steps: faster steps.

        Without it, each call copies every parameter's ``.data`` into an array and every
        gradient back into a ``.grad``, and the optimizer loops over the Values. Inside the
        block the numbers stay in two float64 arrays, ``held.data`` and ``held.grad`` (every
        parameter, in ``model.parameters()`` order): each call of the objective reads one and
        adds into the other, and ``optimizer`` (the library's SGD or Adam, over
        ``model.parameters()`` in that order) runs each of its usual formulas once on the whole
        array, with the same numbers to the last bit; its ``zero_grad`` clears ``held.grad``.
        When the block ends, even by an error, the Values get ``.data`` and ``.grad`` back and
        the optimizer its per-parameter state (momentum, moments)::

            with objective.hold(optimizer):
                for X, y in batches:
                    optimizer.zero_grad()
                    objective(X, y)
                    optimizer.step()

        Without an optimizer, step the arrays yourself: ``held.zero_grad()``, the objective,
        then for example ``held.data[:] -= lr * held.grad`` (an optimizer not given to ``hold``
        works on the Values and does not see the arrays).

        While the block lasts, the arrays are the parameters and the Values keep the numbers
        of its start: ``model(x)`` or printing a weight sees those, and a number assigned to a
        ``.data`` is lost; ``held.write_back()`` brings the Values up to date. Errors:

        * a second hold() of any of the same Values: RuntimeError;
        * a replay of them through another objective: TapeMismatchError;
        * a parameter replaced in the model during the block: TapeMismatchError when it ends;
        * an optimizer with a ``step()`` of its own (TypeError) or over other parameters (ValueError).

        Yields the :class:`HeldParameters`.
        """
        if self._held is not None:
            raise RuntimeError("BatchObjective.hold: the parameters are already held")
        held = HeldParameters(list(self.model.parameters()))  # RuntimeError if another block holds them
        try:
            if optimizer is not None:
                optimizer.hold(held)
        except BaseException:
            held.release()
            raise
        self._held = held
        try:
            yield held
        finally:
            self._held = None
            try:
                if optimizer is not None:
                    optimizer.release()
                held.write_back()  # ValueError for a number that is not finite: nothing written then
            finally:
                held.release()  # the Values are free again, whatever happened
        if not held.same_as(list(self.model.parameters())):  # the block ended without an error
            raise TapeMismatchError(
                "a parameter of the model was replaced inside the hold() block: the replays trained the "
                "Values the block started with (they have the numbers now); call reset() and train again"
            )


_objectives: weakref.WeakKeyDictionary[Any, dict[Any, Any]] = weakref.WeakKeyDictionary()


def model_cache(
    model: Any, name: str, fallback: weakref.WeakKeyDictionary[Any, dict[Any, Any]]
) -> dict[Any, Any]:
    """A dictionary of cached objectives that lives on ``model`` itself, so it dies with the model.

    The cached objectives refer back to the model; kept in a module-level
    WeakKeyDictionary, that reference would keep every model alive forever.
    On the model, the two form a cycle that the garbage collector frees. A
    model without a ``__dict__`` (slotted) uses ``fallback``.
    """
    store = getattr(model, "__dict__", None)
    if isinstance(store, dict):
        return store.setdefault(name, {})
    return fallback.setdefault(model, {})


def batch_loss_and_grad(
    model: Any,
    X: ArrayLike,
    y: ArrayLike,
    loss: str | Callable[[Any, Any], Value] = "mse",
    *,
    fn: Callable[[Any, list[Value], Any], Value] | None = None,
    penalty: Callable[[], Value] | None = None,
    reduction: Reduction = "mean",
    check: Check = "first",
    accumulate: bool = True,
) -> float:
    """L = mean_i loss(model(x_i), y_i) [+ penalty()]; ADDS dL/dp into every ``p.grad``.

    The functional form of :class:`BatchObjective`: the objective (and its tape) is cached per
    model and per (loss, fn, penalty, reduction, check), so repeated calls replay. Pass the same
    function objects on every call (a new lambda each time means a new trace).
    """
    key = (loss, fn, penalty, reduction, check)
    cache = model_cache(model, "_tinygrad_bp_objectives", _objectives)
    objective = cache.get(key)
    if objective is None:
        if len(cache) >= 8:
            cache.pop(next(iter(cache)))
        objective = cache[key] = BatchObjective(
            model, loss, fn=fn, penalty=penalty, reduction=reduction, check=check
        )
    return objective(X, y, accumulate=accumulate).loss
