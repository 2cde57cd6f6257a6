"""Optimizers with exactly PyTorch's update rules (``torch.optim.SGD`` and ``torch.optim.Adam``).

They read each parameter's ``.grad`` and write its ``.data``; the learning
rate is an attribute, ``opt.lr``, that may be changed between steps.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from .value import Value

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


def _check_nonnegative(name: str, what: str, x: float) -> float:
    if not isinstance(x, (int, float)) or isinstance(x, bool) or not math.isfinite(x) or x < 0:
        msg = f"{name}: {what} must be a finite number >= 0, got {x!r}"
        raise ValueError(msg)
    return float(x)


class Optimizer:
    """Base class: holds the parameters; ``zero_grad`` sets their ``.grad`` to 0.0."""

    def __init__(self, params: Iterable[Value], lr: float) -> None:
        self.params = _check_params(type(self).__name__, params)
        self.lr = _check_nonnegative(type(self).__name__, "lr", lr)

    def zero_grad(self) -> None:
        """Set every parameter's ``.grad`` to 0.0."""
        for p in self.params:
            p.grad = 0.0

    def step(self) -> None:
        """Update every parameter from its ``.grad``."""
        raise NotImplementedError


class SGD(Optimizer):
    """Stochastic gradient descent with optional momentum and weight decay.

    g = grad + weight_decay * p; with momentum, b = g on the first step and
    b = momentum * b + (1 - dampening) * g after, then g = b (or g + momentum * b
    with nesterov); p = p - lr * g.
    """

    def __init__(
        self,
        params: Iterable[Value],
        lr: float,
        momentum: float = 0.0,
        weight_decay: float = 0.0,
        dampening: float = 0.0,
        nesterov: bool = False,
    ) -> None:
        super().__init__(params, lr)
        self.momentum = _check_nonnegative("SGD", "momentum", momentum)
        self.weight_decay = _check_nonnegative("SGD", "weight_decay", weight_decay)
        self.dampening = float(dampening)
        self.nesterov = nesterov
        if nesterov and (self.momentum <= 0 or self.dampening != 0):
            msg = "SGD: nesterov momentum needs momentum > 0 and dampening 0"
            raise ValueError(msg)
        self._buffers: list[float | None] = [None] * len(self.params)

    def step(self) -> None:
        """One update of every parameter, as ``torch.optim.SGD.step``."""
        lr, mu, wd = self.lr, self.momentum, self.weight_decay
        for i, p in enumerate(self.params):
            g = p.grad + wd * p.data if wd else p.grad
            if mu:
                b = self._buffers[i]
                b = g if b is None else mu * b + (1.0 - self.dampening) * g
                self._buffers[i] = b
                g = g + mu * b if self.nesterov else b
            p.data -= lr * g


class Adam(Optimizer):
    """Adam with PyTorch's bias correction.

    g = grad + weight_decay * p; m = m + (1 - b1)(g - m); v = b2 v + (1 - b2) g^2;
    p = p - (lr / (1 - b1^t)) * m / (sqrt(v) / sqrt(1 - b2^t) + eps).
    """

    def __init__(
        self,
        params: Iterable[Value],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
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
        self.t = 0
        self._m = [0.0] * len(self.params)
        self._v = [0.0] * len(self.params)

    def step(self) -> None:
        """One update of every parameter, as ``torch.optim.Adam.step`` (single-tensor path)."""
        self.t += 1
        b1, b2 = self.betas
        step_size = self.lr / (1.0 - b1**self.t)
        bias_correction2_sqrt = math.sqrt(1.0 - b2**self.t)
        for i, p in enumerate(self.params):
            g = p.grad + self.weight_decay * p.data if self.weight_decay else p.grad
            m = self._m[i] + (1.0 - b1) * (g - self._m[i])  # torch: exp_avg.lerp_(grad, 1 - b1)
            v = self._v[i] * b2 + (1.0 - b2) * g * g  # torch: exp_avg_sq.mul_(b2).addcmul_(g, g, 1 - b2)
            self._m[i] = m
            self._v[i] = v
            denom = math.sqrt(v) / bias_correction2_sqrt + self.eps
            p.data += -step_size * (m / denom)
