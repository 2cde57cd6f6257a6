"""Loss functions over Values (and plain numbers), PyTorch's semantics where PyTorch has one.

Sums of squared errors are single n-ary nodes (``sse``, ``half_sse``), so a
drawing or a chain-rule table shows dE/dout_k = (out_k - t_k) directly, as
the articles do.
"""

from __future__ import annotations

import numbers
from collections.abc import Iterable, Sequence
from typing import Union

from . import value as _v
from .value import Value, apply, as_value

__all__ = [
    "binary_cross_entropy",
    "binary_cross_entropy_with_logits",
    "cross_entropy",
    "half_sse",
    "hinge_loss",
    "l2_penalty",
    "mse_loss",
]

Scalar = Union[Value, float, int]
Scalars = Union[Scalar, Sequence[Scalar]]


def _as_list(x: Scalars) -> list[Scalar]:
    """One number or Value as a list of one, any other iterable as a list."""
    if isinstance(x, (Value, numbers.Real)):
        return [x]
    return list(x)  # type: ignore[arg-type]


def _pairs(name: str, pred: Scalars, target: Scalars) -> tuple[list[Scalar], list[Scalar]]:
    """``pred`` and ``target`` as two lists of equal, non-zero length (one number or Value: one element)."""
    p = _as_list(pred)
    t = _as_list(target)
    if len(p) != len(t):
        msg = f"{name}: pred has {len(p)} elements but target has {len(t)}"
        raise ValueError(msg)
    if not p:
        msg = f"{name}: pred and target are empty"
        raise ValueError(msg)
    return p, t


def _reduce(name: str, terms: list[Value], reduction: str) -> Value:
    """mean or sum of ``terms``; one term is itself (a per-sample loss is one node, not three)."""
    if reduction in ("sum", "mean") and len(terms) == 1:
        return terms[0]
    if reduction == "sum":
        return _v.sum(terms)
    if reduction == "mean":
        return _v.sum(terms) / len(terms)
    msg = f"{name}: reduction must be 'mean' or 'sum', got {reduction!r}"
    raise ValueError(msg)


def mse_loss(pred: Scalars, target: Scalars, reduction: str = "mean") -> Value | list[Value]:
    """sum_i (p_i - t_i)^2, divided by n for ``reduction="mean"`` (``torch.nn.functional.mse_loss``).

    ``reduction="none"`` gives the list of the (p_i - t_i)^2.
    """
    p, t = _pairs("mse_loss", pred, target)
    if reduction == "none":
        return [(as_value(pi) - ti) ** 2 for pi, ti in zip(p, t)]
    total = apply("sse", *p, *t)  # one node: d/dp_i = 2 (p_i - t_i)
    if reduction == "sum":
        return total
    if reduction == "mean":
        return total / len(p)
    msg = f"mse_loss: reduction must be 'mean', 'sum' or 'none', got {reduction!r}"
    raise ValueError(msg)


def half_sse(pred: Scalars, target: Scalars) -> Value:
    """E = 1/2 sum_k (o_k - t_k)^2, the articles' error; dE/do_k = o_k - t_k. One node."""
    p, t = _pairs("half_sse", pred, target)
    return apply("half_sse", *p, *t)


def binary_cross_entropy(prob: Scalars, target: Scalars, reduction: str = "mean") -> Value:
    """-(t log p + (1 - t) log(1 - p)), averaged (``torch.nn.functional.binary_cross_entropy``).

    One node per sample, the rule ``binary_cross_entropy`` of the table. As in PyTorch, each
    log is clamped below at -100, so a probability of exactly 0 or 1 gives a finite loss (a
    clamped log then passes no gradient); a probability or target outside [0, 1] raises
    DomainError. For saturated outputs prefer :func:`binary_cross_entropy_with_logits`.
    """
    p, t = _pairs("binary_cross_entropy", prob, target)
    terms = [apply("binary_cross_entropy", as_value(pi), as_value(ti)) for pi, ti in zip(p, t)]
    return _reduce("binary_cross_entropy", terms, reduction)


def binary_cross_entropy_with_logits(logit: Scalars, target: Scalars, reduction: str = "mean") -> Value:
    """-(t log s(z) + (1 - t) log(1 - s(z))) = t softplus(-z) + (1 - t) softplus(z); d/dz = s(z) - t.

    Written as two softplus terms (-log s(z) = softplus(-z), -log(1 - s(z)) =
    softplus(z)): no term overflows for any z, and none cancels another, so a
    tiny loss such as softplus(-40) = 4.2e-18 keeps its digits for t = 0 and 1.
    """
    z, t = _pairs("binary_cross_entropy_with_logits", logit, target)
    terms = []
    for zi, ti in zip(z, t):
        zv = as_value(zi)
        terms.append(ti * (-zv).softplus() + (1 - ti) * zv.softplus())
    return _reduce("binary_cross_entropy_with_logits", terms, reduction)


def cross_entropy(logits: Scalars, target_index: int | Sequence[Scalar]) -> Value:
    """-log softmax(z)_t, stable for logits of any size (``torch.nn.functional.cross_entropy``).

    ``target_index`` is the class (an int), or, as PyTorch allows, one probability per class
    (a one-hot row, or soft labels): then the loss is -sum_i t_i log softmax(z)_i. One node,
    the rule ``cross_entropy`` of the table, whose d/dz_i = softmax(z)_i - t_i shows directly.
    It is computed as log sum_i e^(z_i - m) + (m - z_t) with m = max z: no e^x overflows,
    logits of 1e16 give log 2 (not 0), and a class far below m adds nothing, so no
    difference of two huge logits overflows.
    """
    if isinstance(logits, (Value, float, int)) or isinstance(logits, numbers.Real):  # noqa: SIM101 - mypy narrows the first
        msg = f"cross_entropy needs a list of logits, one number or Value per class, got one: {logits!r}"
        raise ValueError(msg)  # noqa: TRY004 - a ValueError, as for logits of the wrong length
    z = [as_value(x) for x in logits]
    if not z:
        msg = "cross_entropy: logits are empty"
        raise ValueError(msg)
    return apply("cross_entropy", *z, *_class_probabilities(target_index, len(z)))


def _class_probabilities(target: int | Sequence[Scalar], classes: int) -> list[Scalar]:
    """The target as one probability per class: a class index becomes a one-hot row.

    A class is an int (a NumPy integer too, or a 0-d array of one); probabilities are a
    sequence (a list, a tuple, a 1-D array) of numbers or Values, one per class.
    """
    if getattr(target, "ndim", None) == 0:
        target = target.item()  # type: ignore[union-attr]  # a 0-d array: its number
    if isinstance(target, numbers.Integral) and not isinstance(target, bool):
        if not 0 <= int(target) < classes:
            msg = f"cross_entropy: target_index must be an int in [0, {classes}), got {target!r}"
            raise ValueError(msg)
        return [1.0 if i == int(target) else 0.0 for i in range(classes)]
    is_sequence = isinstance(target, Sequence) or getattr(target, "ndim", None) == 1
    if isinstance(target, (str, bytes)) or not is_sequence:
        msg = (
            f"cross_entropy: target_index must be an int in [0, {classes}) or a sequence of {classes} "
            f"class probabilities, got {target!r}"
        )
        raise ValueError(msg)
    probabilities = list(target)  # type: ignore[arg-type]  # a sequence, checked above
    if len(probabilities) != classes:
        msg = f"cross_entropy: {len(probabilities)} class probabilities for {classes} logits"
        raise ValueError(msg)
    if any(isinstance(p, bool) or not isinstance(p, (Value, numbers.Real)) for p in probabilities):
        msg = f"cross_entropy: class probabilities must be numbers or Values, got {probabilities!r}"
        raise ValueError(msg)
    return probabilities


def hinge_loss(scores: Scalars, labels: Scalars, reduction: str = "mean") -> Value:
    """mean_i relu(1 - y_i s_i) for labels y_i in {-1, +1} (micrograd's demo loss)."""
    s, y = _pairs("hinge_loss", scores, labels)
    terms = [(1 - yi * as_value(si)).relu() for si, yi in zip(s, y)]
    return _reduce("hinge_loss", terms, reduction)


def l2_penalty(params: Iterable[Value], alpha: float = 1.0) -> Value:
    """alpha * sum_p p^2 (micrograd's demo uses alpha = 1e-4)."""
    ps = list(params)
    return alpha * _v.sum([p * p for p in ps])
