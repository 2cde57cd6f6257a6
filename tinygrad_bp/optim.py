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


def _not_finite(name: str, i: int, p: Value, what: str) -> OperationOverflowError:
    """The error of a step that would write a non-finite number: raised before anything is written."""
    label = f" ({p.label!r})" if p.label else ""
    return OperationOverflowError(
        f"{name}.step: the new {what} of params[{i}]{label} is not a finite number "
        f"(its grad is {p.grad!r}); nothing was changed"
    )


class Optimizer:
    """Base class: holds the parameters; ``zero_grad`` sets their ``.grad`` to 0.0."""

    def __init__(self, params: Iterable[Value], lr: float) -> None:
        self.params = _check_params(type(self).__name__, params)
        self.lr = _check_nonnegative(type(self).__name__, "lr", lr)

    def zero_grad(self) -> None:
        """Set every parameter's ``.grad`` to 0.0: ``NO_GRAD``, "no gradient yet" (torch's None).

        ``step()`` leaves alone a parameter whose ``.grad`` is still ``NO_GRAD``:
        one that no backward pass reached since, as PyTorch's optimizers do.
        """
        for p in self.params:
            p._grad = NO_GRAD  # the slot behind .grad: this loop runs every step

    def step(self) -> None:
        """Update every parameter from its ``.grad``."""
        raise NotImplementedError

    # state_dict key -> attribute: one number, and one list with an entry per parameter
    _numbers: ClassVar[dict[str, str]] = {"lr": "lr"}
    _lists: ClassVar[dict[str, str]] = {}
    _may_be_empty: ClassVar[frozenset[str]] = frozenset()  # lists whose entries may be None

    def state_dict(self) -> dict[str, Any]:
        """The learning rate and the per-parameter state (momentum, moments) as plain JSON types."""
        state: dict[str, Any] = {key: getattr(self, attr) for key, attr in self._numbers.items()}
        state.update({key: list(getattr(self, attr)) for key, attr in self._lists.items()})
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore a :meth:`state_dict` to resume training.

        A missing or unexpected key, a wrong length or a non-number raises
        ValueError naming it, and then nothing has changed.
        """
        name = type(self).__name__
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

    def step(self) -> None:
        """One update of every parameter that has a gradient, as ``torch.optim.SGD.step``.

        Every new value is computed and checked first, then all are written: a
        step that would write a non-finite number raises OperationOverflowError
        and changes nothing (nor does a learning rate set to nan or inf).
        """
        lr = _check_nonnegative("SGD", "lr", self.lr)
        mu, wd, dampening = self.momentum, self.weight_decay, self.dampening
        params = self.params
        chosen = [i for i, p in enumerate(params) if p._grad is not NO_GRAD]  # the slot behind .grad
        news, buffers = [], []
        for i in chosen:
            p = params[i]
            g = -p._grad if self.maximize else p._grad
            if wd:
                g = g + wd * p._data
            if mu:
                b = self._buffers[i]
                b = g if b is None else mu * b + (1.0 - dampening) * g
                buffers.append(b)
                g = g + mu * b if self.nesterov else b
            news.append(p._data - lr * g)
        _check_all("SGD", params, chosen, {"momentum buffer": buffers, "value": news})
        for i, b in zip(chosen, buffers):
            self._buffers[i] = b
        for i, new in zip(chosen, news):
            params[i]._data = new if type(new) is float else float(new)  # the slot behind .data


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

    @property
    def t(self) -> int:
        """The most steps any parameter has taken."""
        return max(self._t, default=0)

    def step(self) -> None:
        """One update of every parameter that has a gradient, as ``torch.optim.Adam.step``.

        Every new value is computed and checked first, then all are written: a
        step that would write a non-finite number (a moment that overflows, say
        after a gradient of 1e200) raises OperationOverflowError and changes nothing.
        """
        lr = _check_nonnegative("Adam", "lr", self.lr)
        b1, b2 = self.betas
        updates = []
        for i, p in enumerate(self.params):
            grad = p._grad  # the slots behind .grad and .data (read and written once per step)
            if grad is NO_GRAD:
                continue
            t = self._t[i] + 1
            g = -grad if self.maximize else grad
            g = g + self.weight_decay * p._data if self.weight_decay else g
            m = self._m[i] + (1.0 - b1) * (g - self._m[i])  # torch: exp_avg.lerp_(grad, 1 - b1)
            v = self._v[i] * b2 + (1.0 - b2) * g * g  # torch: exp_avg_sq.mul_(b2).addcmul_(g, g, 1 - b2)
            v_max = max(self._v_max[i], v) if self.amsgrad else self._v_max[i]
            step_size = lr / (1.0 - b1**t)
            bias_correction2_sqrt = (1.0 - b2**t) ** 0.5  # torch: bias_correction2 ** 0.5
            denom = math.sqrt(v_max if self.amsgrad else v) / bias_correction2_sqrt + self.eps
            new = p._data + (-step_size * m) / denom  # torch's addcdiv: value * m / denom, left to right
            for what, x in (("first moment", m), ("second moment", v), ("value", new)):
                if not math.isfinite(x):
                    raise _not_finite("Adam", i, p, what)
            updates.append((i, p, t, m, v, v_max, new))
        for i, p, t, m, v, v_max, new in updates:
            self._t[i], self._m[i], self._v[i], self._v_max[i] = t, m, v, v_max
            p._data = new if type(new) is float else float(new)  # finite: checked above
