"""Optimizers with exactly PyTorch's update rules (``torch.optim.SGD`` and ``torch.optim.Adam``).

They read each parameter's ``.grad`` and write its ``.data``; the learning
rate is an attribute, ``opt.lr``, that may be changed between steps.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any, ClassVar

from .errors import OperationOverflowError
from .value import NO_GRAD, Value, _finite_float

__all__ = ["SGD", "Adam", "Optimizer"]


def _check_params(name: str, params: Iterable[Value]) -> list[Value]:
    ps = list(params)
    if not ps:
        msg = f"{name}: got an empty parameter list"
        raise ValueError(msg)
    for i, p in enumerate(ps):
        if not isinstance(p, Value):
            msg = f"{name}: params[{i}] is a {type(p).__name__}, not a Value"
            raise TypeError(msg)
    return ps


def _shown(x: object) -> str:
    """``repr(x)``, cut short for a huge number."""
    text = repr(x)
    return text if len(text) <= 40 else f"{text[:20]}...({len(text)} characters)"


def _check_finite(name: str, what: str, x: float) -> float:
    value = _finite_float(x)
    if value is None:
        msg = f"{name}: {what} must be a finite number, got {_shown(x)}"
        raise ValueError(msg)
    return value


def _check_flag(name: str, what: str, x: object) -> bool:
    if not isinstance(x, bool):
        msg = f"{name}: {what} must be True or False, got {x!r}"
        raise TypeError(msg)
    return x


def _check_nonnegative(name: str, what: str, x: float) -> float:
    value = _finite_float(x)
    if value is None or value < 0:
        msg = f"{name}: {what} must be a finite number >= 0, got {_shown(x)}"
        raise ValueError(msg)
    return value


def _check_all(name: str, params: list[Value], chosen: list[int], new: dict[str, list[float]]) -> None:
    """OperationOverflowError, before anything is written, if a new number of a step is not finite.

    One sum per list first (a sum is finite if every term is, unless it overflows itself);
    only then is the culprit looked for.
    """
    if all(math.isfinite(sum(values)) for values in new.values()):
        return
    for what, values in new.items():
        for i, x in zip(chosen, values):
            if not math.isfinite(x):
                raise _not_finite(name, i, params[i], what)


def _not_finite(name: str, i: int, p: Value, what: str, grad: float | None = None) -> OperationOverflowError:
    """The error of a step that would write a non-finite number: raised before anything is written."""
    label = f" ({p.label!r})" if p.label else ""
    shown = p.grad if grad is None else grad
    return OperationOverflowError(
        f"{name}.step: the new {what} of params[{i}]{label} is not a finite number "
        f"(its grad is {shown!r}); nothing was changed"
    )


def _check_held(name: str, held: Any, new: dict[str, Any]) -> None:
    """:func:`_check_all` for parameters held as arrays: one test per array, then the culprit."""
    for what, values in new.items():
        i = held.ops.first_bad(values)
        if i is not None:
            raise _not_finite(name, i, held.params[i], what, float(held.grad[i]))


class _FloatOps:
    """The few functions an update rule needs beyond arithmetic, for Python floats.

    Parameters held as arrays (:meth:`tinygrad_bp.tape.BatchObjective.hold`) bring
    their own with the same names (NumPy's), so each update rule below is written
    once and runs on a float or on a whole array.
    """

    sqrt = staticmethod(math.sqrt)
    maximum = staticmethod(max)

    @staticmethod
    def where(condition: bool, if_true: float, if_false: float) -> float:
        return if_true if condition else if_false

    @staticmethod
    def per_step(f: Any, t: int) -> float:
        """``f(t)`` for a parameter's step count ``t``."""
        return float(f(t))


_FLOATS = _FloatOps()


def _steps_held_arrays(cls: type) -> bool:
    """True if ``cls``'s step() is one that knows held arrays: its class also defines ``_step_held``.

    A subclass with a step() of its own (clipping gradients, say) works on the Values; so does one
    with its own zero_grad().
    """
    owner = next(k for k in cls.__mro__ if "step" in vars(k))
    zero_grad_owner = next(k for k in cls.__mro__ if "zero_grad" in vars(k))
    return "_step_held" in vars(owner) and zero_grad_owner is Optimizer


class Optimizer:
    """Base class: holds the parameters; ``zero_grad`` sets their ``.grad`` to 0.0.

    While a tape holds the parameters as arrays (:meth:`tinygrad_bp.tape.BatchObjective.hold`
    with this optimizer), ``zero_grad`` and ``step`` work on those arrays: each formula of the
    update runs once on the whole array instead of in a Python loop over the parameters, with
    the same numbers.
    """

    def __init__(self, params: Iterable[Value], lr: float) -> None:
        self.params = _check_params(type(self).__name__, params)
        self.lr = _check_nonnegative(type(self).__name__, "lr", lr)
        self._held: Any = None  # the arrays of a tape's hold(), while it lasts

    def zero_grad(self) -> None:
        """Set every parameter's ``.grad`` to 0.0: ``NO_GRAD``, "no gradient yet" (torch's None).

        ``step()`` leaves alone a parameter whose ``.grad`` is still ``NO_GRAD``:
        one that no backward pass reached since, as PyTorch's optimizers do.
        """
        if self._held is not None:
            self._held.zero_grad()
            return
        for p in self.params:
            p._grad = NO_GRAD  # the slot behind .grad: this loop runs every step

    def step(self) -> None:
        """Update every parameter from its ``.grad``."""
        raise NotImplementedError

    # --- parameters held as arrays (by a tape) ---------------------------------------------------

    def hold(self, held: Any) -> None:
        """Step the arrays of ``held`` (a tape's held parameters) until :meth:`release`.

        Called by :meth:`tinygrad_bp.tape.BatchObjective.hold`; ``held.params`` must be
        this optimizer's parameters, in its order. The per-parameter state (momentum,
        moments) moves into arrays too.
        """
        name = type(self).__name__
        if self._held is not None:
            msg = f"{name}.hold: the parameters are already held as arrays"
            raise RuntimeError(msg)
        cls = type(self)
        if not _steps_held_arrays(cls):
            msg = (
                f"{name}.hold: {name} has its own step() or zero_grad(), which work on the Values; "
                "only SGD's and Adam's own steps know parameters held as arrays"
            )
            raise TypeError(msg)
        if not held.same_as(self.params):
            msg = (
                f"{name}.hold: the held parameters ({len(held.params)}) are not this optimizer's "
                f"{len(self.params)} parameters in its order"
            )
            raise ValueError(msg)
        self._held = held
        self._state_to_arrays(held)

    def release(self) -> None:
        """Stop stepping the held arrays: the per-parameter state goes back into lists."""
        if self._held is not None:
            self._held = None
            self._state_from_arrays()

    def _state_to_arrays(self, held: Any) -> None:
        """Move the per-parameter state into arrays (subclasses with state override this)."""

    def _state_from_arrays(self) -> None:
        """Move the per-parameter state back into lists."""

    # state_dict key -> attribute: one number, and one list with an entry per parameter
    _numbers: ClassVar[dict[str, str]] = {"lr": "lr"}
    _lists: ClassVar[dict[str, str]] = {}
    _may_be_empty: ClassVar[frozenset[str]] = frozenset()  # lists whose entries may be None

    def state_dict(self) -> dict[str, Any]:
        """The learning rate and the per-parameter state (momentum, moments) as plain JSON types."""
        self._refuse_while_held("state_dict")
        state: dict[str, Any] = {key: getattr(self, attr) for key, attr in self._numbers.items()}
        state.update({key: list(getattr(self, attr)) for key, attr in self._lists.items()})
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore a :meth:`state_dict` to resume training.

        A missing or unexpected key, a wrong length or a non-number raises
        ValueError naming it, and then nothing has changed.
        """
        name = type(self).__name__
        self._refuse_while_held("load_state_dict")
        expected = set(self._numbers) | set(self._lists)
        if not isinstance(state, Mapping) or set(state) != expected:
            got = sorted(state, key=repr) if isinstance(state, Mapping) else type(state).__name__
            msg = f"{name}.load_state_dict: expected the keys {sorted(expected)}, got {got}"
            raise ValueError(msg)
        numbers = {attr: _state_number(name, key, state[key]) for key, attr in self._numbers.items()}
        lists = {
            attr: _state_list(name, key, state[key], len(self.params), none_ok=key in self._may_be_empty)
            for key, attr in self._lists.items()
        }
        for attr, value in {**numbers, **lists}.items():
            setattr(self, attr, value)

    def _refuse_while_held(self, what: str) -> None:
        if self._held is not None:
            msg = (
                f"{type(self).__name__}.{what}: the parameters are held as arrays by a tape; "
                "call it after the hold() block"
            )
            raise RuntimeError(msg)


def _state_number(name: str, key: str, x: object) -> Any:
    """A finite number >= 0 from a saved state (an int for a step count), or ValueError naming the key."""
    kinds = int if key == "step" else (int, float)
    value = _finite_float(x)
    if not isinstance(x, kinds) or value is None or value < 0:
        msg = f"{name}.load_state_dict: {key!r} must be a finite number >= 0, got {_shown(x)}"
        raise ValueError(msg)
    return x


_NONNEGATIVE_STATE = frozenset({"exp_avg_sq", "max_exp_avg_sq"})


def _state_list(name: str, key: str, xs: object, n: int, *, none_ok: bool) -> list[Any]:
    """A list of n finite numbers (None allowed where ``none_ok``: no momentum yet) from a saved state."""
    if not isinstance(xs, list) or len(xs) != n:
        msg = f"{name}.load_state_dict: {key!r} must be a list of {n} entries, one per parameter"
        raise ValueError(msg)
    for x in xs:
        if x is None and none_ok:
            continue
        value = _finite_float(x)
        if value is None:
            msg = f"{name}.load_state_dict: {key!r} holds {_shown(x)}, not a finite number"
            raise ValueError(msg)
        if key in _NONNEGATIVE_STATE and value < 0:
            msg = f"{name}.load_state_dict: {key!r} holds {x!r}: a second moment is never negative"
            raise ValueError(msg)
    if key == "step":
        if not all(isinstance(x, int) and x >= 0 for x in xs):
            msg = f"{name}.load_state_dict: 'step' must hold whole numbers >= 0"
            raise ValueError(msg)
        return list(xs)
    return [None if x is None else float(x) for x in xs]


def _sgd_update(
    ops: Any, p: Any, grad: Any, buffer: Any, has_buffer: Any, lr: float, s: SGD
) -> tuple[Any, Any]:
    """(new value, new momentum buffer): ``torch.optim.SGD``'s rule, on floats or on whole arrays.

    g = grad (-grad with maximize) + weight_decay * p; with momentum, b = g where there
    is no buffer yet (``has_buffer`` false) and b = momentum * b + (1 - dampening) * g
    where there is, then g = b (g + momentum * b with nesterov); the new value is p - lr * g.
    """
    g = -grad if s.maximize else grad
    if s.weight_decay:
        g = g + s.weight_decay * p
    b = buffer
    if s.momentum:
        b = ops.where(has_buffer, s.momentum * buffer + (1.0 - s.dampening) * g, g)
        g = g + s.momentum * b if s.nesterov else b
    return p - lr * g, b


class SGD(Optimizer):
    """Stochastic gradient descent with optional momentum and weight decay (``torch.optim.SGD``).

    g = grad (-grad with maximize) + weight_decay * p; with momentum, b = g on
    the first step and b = momentum * b + (1 - dampening) * g after, then g = b
    (or g + momentum * b with nesterov); p = p - lr * g. A parameter that
    received no gradient since ``zero_grad()`` is left alone.
    """

    _lists: ClassVar[dict[str, str]] = {"momentum_buffer": "_buffers"}
    _may_be_empty: ClassVar[frozenset[str]] = frozenset({"momentum_buffer"})

    def __init__(
        self,
        params: Iterable[Value],
        lr: float,
        momentum: float = 0.0,
        dampening: float = 0.0,
        weight_decay: float = 0.0,
        nesterov: bool = False,
        *,
        maximize: bool = False,
    ) -> None:
        super().__init__(params, lr)
        self.momentum = _check_nonnegative("SGD", "momentum", momentum)
        self.weight_decay = _check_nonnegative("SGD", "weight_decay", weight_decay)
        self.dampening = _check_finite("SGD", "dampening", dampening)
        self.nesterov = _check_flag("SGD", "nesterov", nesterov)
        self.maximize = _check_flag("SGD", "maximize", maximize)
        if nesterov and (self.momentum <= 0 or self.dampening != 0):
            msg = "SGD: nesterov momentum needs momentum > 0 and dampening 0"
            raise ValueError(msg)
        self._buffers: list[float | None] = [None] * len(self.params)
        self._array_buffer: Any = None  # while held as arrays: the buffers, and which exist
        self._array_known: Any = False

    def step(self) -> None:
        """One update of every parameter that has a gradient, as ``torch.optim.SGD.step``.

        Every new value is computed and checked first, then all are written: a
        step that would write a non-finite number raises OperationOverflowError
        and changes nothing (nor does a learning rate set to nan or inf).
        """
        lr = _check_nonnegative("SGD", "lr", self.lr)
        if self._held is not None:
            self._step_held(self._held, lr)
            return
        params = self.params
        chosen = [i for i, p in enumerate(params) if p._grad is not NO_GRAD]  # the slot behind .grad
        news, buffers = [], []
        for i in chosen:
            p, b = params[i], self._buffers[i]
            new, b = _sgd_update(_FLOATS, p._data, p._grad, 0.0 if b is None else b, b is not None, lr, self)
            news.append(new)
            buffers.append(b)
        if not self.momentum:
            buffers = []
        _check_all("SGD", params, chosen, {"momentum buffer": buffers, "value": news})
        for i, b in zip(chosen, buffers):
            self._buffers[i] = b
        for i, new in zip(chosen, news):
            params[i]._data = new if type(new) is float else float(new)  # the slot behind .data

    def _step_held(self, held: Any, lr: float) -> None:
        """The same step on held arrays: computed and checked whole, then written in place."""
        if held.reached is False:
            return
        with held.ops.quiet():  # (the check's first sum may overflow too)
            new, b = _sgd_update(
                held.ops, held.data, held.grad, self._array_buffer, self._array_known, lr, self
            )
            if held.reached is not True:  # some parameters got no gradient: they keep their value
                new = held.ops.where(held.reached, new, held.data)
                b = held.ops.where(held.reached, b, self._array_buffer)
            checked = {"momentum buffer": b, "value": new} if self.momentum else {"value": new}
            _check_held("SGD", held, checked)
        held.data[:] = new
        if self.momentum:
            self._array_buffer = b
            self._array_known = (
                True if held.reached is True else held.ops.logical_or(self._array_known, held.reached)
            )

    def _state_to_arrays(self, held: Any) -> None:
        known = [b is not None for b in self._buffers]
        self._array_buffer = held.ops.array([0.0 if b is None else b for b in self._buffers])
        self._array_known = all(known) if all(known) or not any(known) else held.ops.flags(known)

    def _state_from_arrays(self) -> None:
        values = self._array_buffer.tolist()
        known = self._array_known
        flags = [known] * len(values) if isinstance(known, bool) else known.tolist()
        self._buffers = [v if k else None for v, k in zip(values, flags)]


def _adam_corrections(lr: float, betas: tuple[float, float], t: int) -> tuple[float, float]:
    """(lr / (1 - b1^t), sqrt(1 - b2^t)): Adam's bias corrections at step count t, as torch computes them.

    Python floats, once per step count: NumPy's power rounds differently from Python's.
    """
    b1, b2 = betas
    return lr / (1.0 - b1**t), (1.0 - b2**t) ** 0.5  # torch: bias_correction2 ** 0.5


def _adam_update(
    ops: Any, p: Any, grad: Any, m: Any, v: Any, v_max: Any, corrections: tuple[Any, Any], s: Adam
) -> tuple[Any, Any, Any, Any]:
    """(new value, m, v, v_max): ``torch.optim.Adam``'s rule (its single-tensor path), on floats or arrays.

    g = grad (-grad with maximize) + weight_decay * p; m = m + (1 - b1)(g - m);
    v = b2 v + (1 - b2) g^2 (with amsgrad, v_max = max(v_max, v) is used for v below);
    p = p - (lr / (1 - b1^t)) * m / (sqrt(v) / sqrt(1 - b2^t) + eps), for step count t, whose two
    corrections (:func:`_adam_corrections`) the caller gives.
    """
    b1, b2 = s.betas
    g = -grad if s.maximize else grad
    g = g + s.weight_decay * p if s.weight_decay else g
    m = m + (1.0 - b1) * (g - m)  # torch: exp_avg.lerp_(grad, 1 - b1)
    v = v * b2 + (1.0 - b2) * g * g  # torch: exp_avg_sq.mul_(b2).addcmul_(g, g, 1 - b2)
    v_max = ops.maximum(v_max, v) if s.amsgrad else v_max
    step_size, bias_correction2_sqrt = corrections
    denom = ops.sqrt(v_max if s.amsgrad else v) / bias_correction2_sqrt + s.eps
    new = p + (-step_size * m) / denom  # torch's addcdiv: value * m / denom, left to right
    return new, m, v, v_max


class Adam(Optimizer):
    """Adam with PyTorch's bias correction (``torch.optim.Adam``, its single-tensor path).

    For each parameter with a gradient, its own step count t += 1 and
    g = grad (-grad with maximize) + weight_decay * p;
    m = m + (1 - b1)(g - m); v = b2 v + (1 - b2) g^2 (with amsgrad, v_max = max(v_max, v)
    is used for v below); p = p - (lr / (1 - b1^t)) * m / (sqrt(v) / sqrt(1 - b2^t) + eps).
    A parameter that received no gradient since ``zero_grad()`` is left alone.
    """

    _numbers: ClassVar[dict[str, str]] = {"lr": "lr"}
    _lists: ClassVar[dict[str, str]] = {
        "step": "_t",
        "exp_avg": "_m",
        "exp_avg_sq": "_v",
        "max_exp_avg_sq": "_v_max",
    }

    def __init__(
        self,
        params: Iterable[Value],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        amsgrad: bool = False,
        *,
        maximize: bool = False,
    ) -> None:
        super().__init__(params, lr)
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            msg = f"Adam: betas must be a pair (beta1, beta2), got {betas!r}"
            raise ValueError(msg)
        b1, b2 = betas
        for what, b in (("betas[0]", b1), ("betas[1]", b2)):
            if isinstance(b, bool) or not isinstance(b, (int, float)) or not 0.0 <= b < 1.0:
                msg = f"Adam: {what} must be in [0, 1), got {b!r}"
                raise ValueError(msg)
        self.betas = (float(b1), float(b2))
        self.eps = _check_nonnegative("Adam", "eps", eps)
        self.weight_decay = _check_nonnegative("Adam", "weight_decay", weight_decay)
        self.amsgrad = _check_flag("Adam", "amsgrad", amsgrad)
        self.maximize = _check_flag("Adam", "maximize", maximize)
        n = len(self.params)
        self._t = [0] * n
        self._m = [0.0] * n
        self._v = [0.0] * n
        self._v_max = [0.0] * n
        self._array_t: Any = None  # while held as arrays: the state above, as arrays
        self._array_m: Any = None
        self._array_v: Any = None
        self._array_v_max: Any = None

    @property
    def t(self) -> int:
        """The most steps any parameter has taken."""
        if self._held is not None:
            t = self._array_t
            return t if isinstance(t, int) else int(t.max())
        return max(self._t, default=0)

    def step(self) -> None:
        """One update of every parameter that has a gradient, as ``torch.optim.Adam.step``.

        Every new value is computed and checked first, then all are written: a
        step that would write a non-finite number (a moment that overflows, say
        after a gradient of 1e200) raises OperationOverflowError and changes nothing.
        """
        lr = _check_nonnegative("Adam", "lr", self.lr)
        if self._held is not None:
            self._step_held(self._held, lr)
            return
        updates = []
        corrections: dict[int, tuple[float, float]] = {}  # per step count (usually one for all)
        for i, p in enumerate(self.params):
            grad = p._grad  # the slots behind .grad and .data (read and written once per step)
            if grad is NO_GRAD:
                continue
            t = self._t[i] + 1
            c = corrections.get(t)
            if c is None:
                c = corrections[t] = _adam_corrections(lr, self.betas, t)
            state = (self._m[i], self._v[i], self._v_max[i])
            new, m, v, v_max = _adam_update(_FLOATS, p._data, grad, *state, c, self)
            for what, x in (("first moment", m), ("second moment", v), ("value", new)):
                if not math.isfinite(x):
                    raise _not_finite("Adam", i, p, what)
            updates.append((i, p, t, m, v, v_max, new))
        for i, p, t, m, v, v_max, new in updates:
            self._t[i], self._m[i], self._v[i], self._v_max[i] = t, m, v, v_max
            p._data = new if type(new) is float else float(new)  # finite: checked above

    def _step_held(self, held: Any, lr: float) -> None:
        """The same step on held arrays: computed and checked whole, then written in place."""
        if held.reached is False:
            return
        t = self._array_t + 1 if held.reached is True else self._array_t + held.reached
        state = (self._array_m, self._array_v, self._array_v_max)
        corrections = tuple(
            held.ops.per_step(lambda k, j=j: _adam_corrections(lr, self.betas, k)[j], t) for j in (0, 1)
        )
        with held.ops.quiet():  # (the check's first sum may overflow too)
            new, m, v, v_max = _adam_update(held.ops, held.data, held.grad, *state, corrections, self)
            if held.reached is not True:  # some parameters got no gradient: they and their state stay
                new = held.ops.where(held.reached, new, held.data)
                m, v, v_max = (held.ops.where(held.reached, a, b) for a, b in zip((m, v, v_max), state))
            _check_held("Adam", held, {"first moment": m, "second moment": v, "value": new})
        held.data[:] = new
        self._array_t, self._array_m, self._array_v, self._array_v_max = t, m, v, v_max

    def _state_to_arrays(self, held: Any) -> None:
        # one step count for all while they agree: then b1**t is the same float as the loop's
        self._array_t = self._t[0] if len(set(self._t)) == 1 else held.ops.counts(self._t)
        self._array_m, self._array_v, self._array_v_max = (
            held.ops.array(x) for x in (self._m, self._v, self._v_max)
        )

    def _state_from_arrays(self) -> None:
        t = self._array_t
        self._t = [t] * len(self.params) if isinstance(t, int) else [int(x) for x in t.tolist()]
        self._m, self._v, self._v_max = (
            x.tolist() for x in (self._array_m, self._array_v, self._array_v_max)
        )
