"""``gradcheck``: the engine's gradient against central finite differences."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from .engine import grad
from .errors import GradcheckError
from .value import Value, _check_data, no_grad

__all__ = ["gradcheck", "numerical_gradient"]


def _evaluate(fn: Callable[..., Value], point: Sequence[float]) -> float:
    """fn at ``point`` as a float, recording no graph."""
    with no_grad():
        out = fn(*(Value(x) for x in point))
    if not isinstance(out, Value):
        msg = f"gradcheck: fn must return a Value, not {type(out).__name__}"
        raise TypeError(msg)
    return out.data


def numerical_gradient(fn: Callable[..., Value], point: Sequence[float], eps: float = 1e-6) -> list[float]:
    """Central differences: df/dx_i ~ (f(x + eps e_i) - f(x - eps e_i)) / (2 eps)."""
    result = []
    for i in range(len(point)):
        up = list(point)
        down = list(point)
        up[i] += eps
        down[i] -= eps
        result.append((_evaluate(fn, up) - _evaluate(fn, down)) / (2.0 * eps))
    return result


def gradcheck(
    fn: Callable[..., Value],
    inputs: Sequence[float],
    *,
    eps: float = 1e-6,
    atol: float = 1e-5,
    rtol: float = 1e-3,
    raise_exception: bool = True,
) -> bool:
    """Check the engine's gradient of ``fn`` at ``inputs`` against central differences.

    ``fn`` takes ``len(inputs)`` Values and returns one Value. Input i passes
    when ``|analytical - numerical| <= atol + rtol * |numerical|``. On a
    mismatch raises :class:`GradcheckError` naming every failing input, or
    returns False when ``raise_exception`` is False.
    """
    point = [_check_data(x, "gradcheck") for x in inputs]
    leaves = [Value(x) for x in point]
    out = fn(*leaves)
    if not isinstance(out, Value):
        msg = f"gradcheck: fn must return a Value, not {type(out).__name__}"
        raise TypeError(msg)
    analytical = grad(out, leaves, materialize_grads=True)
    numerical = numerical_gradient(fn, point, eps)
    failures = []
    for i, (a, n) in enumerate(zip(analytical, numerical)):
        error = abs(a - n)
        if not error <= atol + rtol * abs(n):
            relative = error / abs(n) if n else float("inf")
            failures.append(
                f"input {i}: analytical {a!r}, numerical {n!r}, "
                f"absolute error {error:.3g}, relative error {relative:.3g}"
            )
    if not failures:
        return True
    if raise_exception:
        raise GradcheckError(
            f"gradcheck: the gradient disagrees with finite differences (eps={eps}, atol={atol}, "
            f"rtol={rtol}) at {point}:\n  " + "\n  ".join(failures)
        )
    return False
