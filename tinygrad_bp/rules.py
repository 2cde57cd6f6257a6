"""The rule table: one entry per operation, and nothing else.

Each :class:`Rule` says how an operation computes its value from its inputs'
values (``forward``) and what its local derivatives are (``local``). The value
layer (:mod:`tinygrad_bp.value`) looks rules up by name when it records a node;
the engine (:mod:`tinygrad_bp.engine`) looks them up again when it runs the
chain rule backwards. Nodes never carry functions of their own.

``forward(*xs)`` receives plain floats, checks the operation's domain and
returns a float.

``local(out, *xs)`` returns the tuple ``(d out/d x_1, ..., d out/d x_n)``. It is
written with operators and the generic helpers below only, so the same
function works on floats (an ordinary backward pass) and on Values (a
backward pass that records its own graph, for higher-order derivatives).
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .errors import DomainError

__all__ = ["BUILTIN", "RULES", "Rule", "register"]


@dataclass(frozen=True, slots=True)
class Rule:
    """How one operation computes its value and its local derivatives.

    ``arity`` is the number of inputs, or ``None`` for an n-ary operation.
    ``formula`` is the local derivative in words, shown by drawings and
    explanations.
    """

    name: str
    arity: int | None
    forward: Callable[..., float]
    local: Callable[..., tuple[Any, ...]]
    formula: str


RULES: dict[str, Rule] = {}


def register(rule: Rule, *, replace: bool = False) -> Rule:
    """Add ``rule`` to the table; a name already taken is refused unless ``replace`` is True."""
    if rule.name in RULES and not replace:
        msg = f"an operation named {rule.name!r} already has a rule"
        raise ValueError(msg)
    RULES[rule.name] = rule
    return rule


# --- generic helpers: math on a float, the matching method on a Value -------


def _log(x: Any) -> Any:
    """log(x) for a float or a Value."""
    return math.log(x) if isinstance(x, float) else x.log()


def _sin(x: Any) -> Any:
    """sin(x) for a float or a Value."""
    return math.sin(x) if isinstance(x, float) else x.sin()


def _cos(x: Any) -> Any:
    """cos(x) for a float or a Value."""
    return math.cos(x) if isinstance(x, float) else x.cos()


# --- forward functions that need a domain check or care --------------------


def _pow(x: float, y: float) -> float:
    """x ** y over the reals: refuses 0 ** negative and negative ** non-integer."""
    if x == 0.0 and y < 0.0:
        raise DomainError(f"**: 0.0 raised to the negative power {y!r} is undefined")
    if x < 0.0 and not y.is_integer():
        raise DomainError(
            f"**: the negative base {x!r} raised to the non-integer power {y!r} is not a real number"
        )
    return x**y


def _number(x: Any) -> float:
    """The float of a float or of a Value (whose == is identity, so compare numbers)."""
    return x if isinstance(x, float) else x.data


def _pow_local(out: Any, a: Any, b: Any) -> tuple[Any, Any]:
    """d(a**b)/da = b a^(b-1) and d(a**b)/db = a^b log(a), with their limits at a = 0.

    At a = 0: d/da is 0 for b = 0 or b > 1, 1 for b = 1, and +inf for 0 < b < 1;
    d/db is 0 (the limit from the right). For a < 0, d/db does not exist (nan).
    The engine raises NonDifferentiableError if an infinite or undefined partial
    is needed, that is, if that input requires grad.
    """
    base, exponent = _number(a), _number(b)
    if base != 0.0 or exponent >= 1.0:
        d_base = b * a ** (b - 1.0)  # kept as an expression: its own derivative may not vanish
    elif exponent == 0.0:
        d_base = 0.0  # a^0 = 1 everywhere
    else:
        d_base = math.inf
    if base > 0.0:
        d_exponent = out * _log(a)
    elif base == 0.0:
        d_exponent = 0.0  # the limit from the right
    else:
        d_exponent = math.nan
    return d_base, d_exponent


def _log_forward(x: float) -> float:
    """log(x) for x > 0."""
    if x <= 0.0:
        raise DomainError(f"log: the input {x!r} is outside the domain x > 0")
    return math.log(x)


def _sqrt_forward(x: float) -> float:
    """sqrt(x) for x >= 0."""
    if x < 0.0:
        raise DomainError(f"sqrt: the input {x!r} is outside the domain x >= 0")
    return math.sqrt(x)


def _sigmoid_forward(x: float) -> float:
    """1 / (1 + e^-x), written so that no branch can overflow."""
    if x >= 0.0:
        return 1.0 / (1.0 + math.exp(-x))
    e = math.exp(x)
    return e / (1.0 + e)


def _relu_forward(x: float) -> float:
    """max(x, 0)."""
    return max(0.0, x)


def _linear_forward(*xs: float) -> float:
    """b + sum_i w_i x_i, inputs ordered (w_1..w_n, x_1..x_n, b)."""
    n = len(xs) // 2
    return math.fsum(map(operator.mul, xs[:n], xs[n : 2 * n])) + xs[-1]


def _linear_local(_out: Any, *xs: Any) -> tuple[Any, ...]:
    """d/dw_i = x_i, d/dx_i = w_i, d/db = 1."""
    n = len(xs) // 2
    return (*xs[n : 2 * n], *xs[:n], 1.0)


def _softplus_forward(x: float) -> float:
    """log(1 + e^x) = max(x, 0) + log(1 + e^-|x|), never overflowing."""
    return max(x, 0.0) + math.log1p(math.exp(-abs(x)))


def _sigmoid_generic(x: Any) -> Any:
    """s(x) for a float or a Value."""
    return _sigmoid_forward(x) if isinstance(x, float) else x.sigmoid()


def _split_pairs(xs: tuple[Any, ...]) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
    """Inputs ordered (p_1..p_n, t_1..t_n) as the two halves."""
    n = len(xs) // 2
    return xs[:n], xs[n:]


def _sse_forward(*xs: float) -> float:
    """sum_i (p_i - t_i)^2, inputs ordered (p_1..p_n, t_1..t_n)."""
    p, t = _split_pairs(xs)
    return math.fsum((a - b) * (a - b) for a, b in zip(p, t))


def _sse_local(_out: Any, *xs: Any) -> tuple[Any, ...]:
    """d/dp_i = 2 (p_i - t_i), d/dt_i = -2 (p_i - t_i)."""
    p, t = _split_pairs(xs)
    d = tuple(2.0 * (a - b) for a, b in zip(p, t))
    return (*d, *(-x for x in d))


def _half_sse_forward(*xs: float) -> float:
    """1/2 sum_i (p_i - t_i)^2, inputs ordered (p_1..p_n, t_1..t_n)."""
    return 0.5 * _sse_forward(*xs)


def _half_sse_local(_out: Any, *xs: Any) -> tuple[Any, ...]:
    """d/dp_i = p_i - t_i, d/dt_i = t_i - p_i."""
    p, t = _split_pairs(xs)
    d = tuple(a - b for a, b in zip(p, t))
    return (*d, *(-x for x in d))


def _sum_forward(*xs: float) -> float:
    """x_1 + ... + x_n, exactly rounded."""
    return math.fsum(xs)


def _sum_local(_out: Any, *xs: Any) -> tuple[Any, ...]:
    """d/dx_i = 1."""
    return (1.0,) * len(xs)


# --- the table ----------------------------------------------------------------
# local(out, *inputs) -> (d out/d input_1, ...). The comment is the maths.

for _rule in (
    # a + b: d/da = 1, d/db = 1
    Rule("+", 2, operator.add, lambda out, a, b: (1.0, 1.0), "d(a+b)/da = 1, d(a+b)/db = 1"),
    # a - b: d/da = 1, d/db = -1
    Rule("-", 2, operator.sub, lambda out, a, b: (1.0, -1.0), "d(a-b)/da = 1, d(a-b)/db = -1"),
    # a * b: d/da = b, d/db = a
    Rule("*", 2, operator.mul, lambda out, a, b: (b, a), "d(a*b)/da = b, d(a*b)/db = a"),
    # a / b: d/da = 1/b, d/db = -a/b^2 = -out/b
    Rule("/", 2, operator.truediv, lambda out, a, b: (1.0 / b, -out / b), "d(a/b)/da = 1/b, d/db = -a/b^2"),
    # a ** b: d/da = b a^(b-1), d/db = a^b log(a); see _pow_local for a = 0 and a < 0
    Rule("**", 2, _pow, _pow_local, "d(a**b)/da = b*a**(b-1), d(a**b)/db = a**b*log(a)"),
    # -a: d/da = -1
    Rule("neg", 1, operator.neg, lambda out, a: (-1.0,), "d(-a)/da = -1"),
    # |a|: d/da = sign(a), 0 at a = 0 (a subgradient)
    Rule("abs", 1, abs, lambda out, a: (1.0 if a > 0.0 else -1.0 if a < 0.0 else 0.0,), "d|a|/da = sign(a)"),
    # e^a: d/da = e^a = out
    Rule("exp", 1, math.exp, lambda out, a: (out,), "d exp(a)/da = exp(a)"),
    # log a: d/da = 1/a
    Rule("log", 1, _log_forward, lambda out, a: (1.0 / a,), "d log(a)/da = 1/a"),
    # sqrt a: d/da = 1/(2 sqrt a) = 0.5/out
    Rule("sqrt", 1, _sqrt_forward, lambda out, a: (0.5 / out,), "d sqrt(a)/da = 1/(2*sqrt(a))"),
    # tanh a: d/da = 1 - tanh(a)^2 = 1 - out^2
    Rule("tanh", 1, math.tanh, lambda out, a: (1.0 - out * out,), "d tanh(a)/da = 1 - tanh(a)^2"),
    # s(a) = 1/(1+e^-a): d/da = s(a)(1 - s(a)) = out(1 - out)
    Rule("sigmoid", 1, _sigmoid_forward, lambda out, a: (out * (1.0 - out),), "d s(a)/da = s(a)*(1-s(a))"),
    # max(a, 0): d/da = 1 for a > 0, else 0
    Rule("relu", 1, _relu_forward, lambda out, a: (1.0 if a > 0.0 else 0.0,), "d relu(a)/da = [a > 0]"),
    # sin a: d/da = cos a
    Rule("sin", 1, math.sin, lambda out, a: (_cos(a),), "d sin(a)/da = cos(a)"),
    # cos a: d/da = -sin a
    Rule("cos", 1, math.cos, lambda out, a: (-_sin(a),), "d cos(a)/da = -sin(a)"),
    # log(1 + e^a): d/da = s(a)
    Rule("softplus", 1, _softplus_forward, lambda out, a: (_sigmoid_generic(a),), "d softplus(a)/da = s(a)"),
    # x_1 + ... + x_n: d/dx_i = 1
    Rule("sum", None, _sum_forward, _sum_local, "d(sum x)/dx_i = 1"),
    # w . x + b, inputs (w_1..w_n, x_1..x_n, b): d/dw_i = x_i, d/dx_i = w_i, d/db = 1
    Rule("linear", None, _linear_forward, _linear_local, "d(w.x+b)/dw_i = x_i, d/dx_i = w_i, d/db = 1"),
    # sum (p_i - t_i)^2, inputs (p..., t...): d/dp_i = 2(p_i - t_i), d/dt_i = -2(p_i - t_i)
    Rule("sse", None, _sse_forward, _sse_local, "d sum(p-t)^2/dp_i = 2(p_i-t_i)"),
    # 1/2 sum (p_i - t_i)^2, inputs (p..., t...): d/dp_i = p_i - t_i, d/dt_i = t_i - p_i
    Rule("half_sse", None, _half_sse_forward, _half_sse_local, "d 1/2 sum(p-t)^2/dp_i = p_i-t_i"),
):
    register(_rule)
del _rule

BUILTIN: frozenset[str] = frozenset(RULES)
"""The names of the built-in operations (custom operations are added to RULES later)."""
