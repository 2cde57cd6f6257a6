"""A random expression (``tinygrad_bp.testing.expressions``) as a case for the tape: fn, params, a batch.

The last ``n_params`` leaves of the expression become parameters; the others are the inputs of
``fn``, with a batch of four samples: the expression's own point, then three drawn from ``seed``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tinygrad_bp import Value


def batch_case(expr: Any, seed: int, n_params: int) -> tuple[Callable[[Any], Value], list[Value], Any]:
    """(fn, params, X): fn(x) builds the expression from the inputs x and the params (X: a NumPy array)."""
    import numpy as np  # only the tape's tests use this, and they skip without numpy
    n_params = min(n_params, expr.n_leaves - 1)
    n_in = expr.n_leaves - n_params
    params = [Value(v) for v in expr.point[n_in:]]

    def fn(x: Any) -> Value:
        return expr.build(*x, *params)

    rng = np.random.default_rng(seed)
    X = np.vstack([expr.point[:n_in], rng.uniform(-2.0, 2.0, size=(3, n_in))])
    return fn, params, X
