"""Hypothesis strategies for property tests of code built on tinygrad_bp.

This module needs `hypothesis <https://hypothesis.readthedocs.io>`_, which comes with the ``test``
extra (``pip install 'tinygrad_bp[test]'``); ``import tinygrad_bp`` alone never imports it.

The main strategy, :func:`expressions`, draws a random expression graph together with a point at
which every operation is inside its domain::

    import pytest
    from hypothesis import given
    from tinygrad_bp import grad, gradcheck
    from tinygrad_bp.testing import expressions, upstream_gradients

    @given(expressions())
    def test_gradient_matches_finite_differences(expr):
        assert gradcheck(expr.build, expr.point)

    @given(expressions(ops={"*", "tanh", "log"}, max_leaves=2), upstream_gradients())
    def test_backward_scales_with_the_upstream_gradient(expr, upstream):
        out, leaves = expr.graph()
        out.backward(upstream)
        expected = [upstream * g for g in grad(out, leaves)]
        assert [x.grad for x in leaves] == pytest.approx(expected, rel=1e-12)

A drawn :class:`Expression` prints as its description, e.g.
``Expression('v3 = x0 * x1; tanh(v3 + exp(v3))', point=(0.5, -1.25))``: nodes used more than once
get a name (``v3``), so shared subexpressions stay visible. The description is valid Python with
``tanh``, ``sum``, ``linear``, ... read as the functions of :mod:`tinygrad_bp`.

What :func:`expressions` guarantees, by construction (no ``filter``/``assume``):

* Domains. Every node carries an interval (:attr:`Expression.bounds`) that holds for EVERY leaf
  point in the box ``[-SAFE_RADIUS, SAFE_RADIUS]^n`` (interval arithmetic), and the operands are
  built so that over that whole box: ``log`` and ``sqrt`` get inputs >= ``MIN_MAGNITUDE``; a
  divisor has magnitude >= ``MIN_MAGNITUDE``; ``**`` has a base >= ``MIN_MAGNITUDE`` unless its
  exponent is the constant 2 or 3; every node except the output lies in ``[-BOUND, BOUND]``, so
  ``exp`` never overflows. Points are drawn from ``[-POINT_RADIUS, POINT_RADIUS]^n``, strictly
  inside the box, so the guarantees hold in a neighbourhood of the point too (finite differences).
* Kinks. At :attr:`Expression.point`, every ``relu``/``abs`` input ``u`` is either bounded away
  from 0 over the whole box, or satisfies ``|u| >= KINK_MARGIN * max(1, ||grad u||_1)``
  (:attr:`Expression.kink_clearance`): a perturbation of the leaves smaller than ``KINK_MARGIN``
  in every coordinate cannot reach a kink (to first order), so finite differences see a smooth
  function.
* Structure. Operands are drawn among all earlier nodes (recent ones favoured), so nodes are
  shared by several later nodes; binary operations, ``sum`` and ``linear`` repeat operands
  (``a * a``, ``p / p``, ``sum([a, b, a])``); plain numbers appear as constants on either side. Every
  leaf and every node reaches the output: nodes nothing else uses are summed into it.

Guards and the closing ``sum`` insert extra smooth nodes (``tanh sin cos sigmoid exp + - * neg
sum``) even when ``ops`` excludes them; ``relu`` and ``abs`` appear only when ``ops`` asks for them.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Union

try:
    from hypothesis import strategies as st
except ImportError as error:  # pragma: no cover - depends on the environment
    raise ImportError(
        "tinygrad_bp.testing needs hypothesis: pip install 'tinygrad_bp[test]' (or pip install hypothesis)"
    ) from error

import tinygrad_bp as _tg
from tinygrad_bp.value import Value

__all__ = [
    "ALL_OPS",
    "BOUND",
    "KINK_MARGIN",
    "MIN_MAGNITUDE",
    "POINT_RADIUS",
    "SAFE_RADIUS",
    "Expression",
    "Step",
    "expressions",
    "leaf_points",
    "reals",
    "upstream_gradients",
    "values",
]

#: Every built-in operation of the rule table; :func:`expressions` can reach each one.
ALL_OPS: tuple[str, ...] = (
    "+", "-", "*", "/", "**", "neg", "abs", "exp", "log", "sqrt",
    "tanh", "sigmoid", "relu", "sin", "cos", "sum", "linear",
)  # fmt: skip
#: Points of drawn expressions lie in [-POINT_RADIUS, POINT_RADIUS]^n.
POINT_RADIUS = 2.0
#: The domain guarantees hold for every leaf point in [-SAFE_RADIUS, SAFE_RADIUS]^n.
SAFE_RADIUS = 2.1
#: Every node except the output lies in [-BOUND, BOUND] over the safe box.
BOUND = 32.0
#: Lower bound of log/sqrt inputs, of |divisor| and of a positive base of ``**``.
MIN_MAGNITUDE = 0.25
#: Minimum kink clearance of relu/abs inputs at the drawn point (see :attr:`Expression.kink_clearance`).
KINK_MARGIN = 0.1

Interval = tuple[float, float]
Arg = Union[int, float]

_SQUASHERS = ("tanh", "sin", "cos", "sigmoid")  # map any real into [-1, 1]
_UNIT: Interval = (-1.0, 1.0)


# --- strategies of numbers ----------------------------------------------------------------------


def reals(min_value: float = -10.0, max_value: float = 10.0) -> st.SearchStrategy[float]:
    """Finite float64 numbers in ``[min_value, max_value]`` (no NaN, no infinity, no subnormals).

    >>> from tinygrad_bp.testing import reals
    >>> strategy = reals(-1.0, 1.0)   # use as @given(reals(-1.0, 1.0))
    """
    if not min_value <= max_value:
        raise ValueError(f"reals: min_value {min_value!r} > max_value {max_value!r}")
    return st.floats(
        min_value=min_value, max_value=max_value, allow_nan=False, allow_infinity=False, allow_subnormal=False
    )


def upstream_gradients(min_magnitude: float = 0.1, max_magnitude: float = 10.0) -> st.SearchStrategy[float]:
    """An upstream gradient dL/d(output) for ``out.backward(g)``: 1.0, or +-[min, max] magnitude.

    Zero is excluded (it would make every gradient 0 and hide errors).
    """
    if not 0.0 < min_magnitude <= max_magnitude:
        raise ValueError("upstream_gradients: need 0 < min_magnitude <= max_magnitude")
    magnitude = reals(min_magnitude, max_magnitude)
    signed = st.tuples(st.booleans(), magnitude).map(lambda pair: -pair[1] if pair[0] else pair[1])
    return st.one_of(st.just(1.0), signed)


def leaf_points(n: int, radius: float = POINT_RADIUS) -> st.SearchStrategy[tuple[float, ...]]:
    """Tuples of ``n`` floats in ``[-radius, radius]``: a point for ``n`` leaves."""
    if n < 0:
        raise ValueError(f"leaf_points: n must be >= 0, got {n}")
    return st.tuples(*(reals(-radius, radius) for _ in range(n)))


def values(
    min_value: float = -10.0, max_value: float = 10.0, *, requires_grad: bool = True
) -> st.SearchStrategy[Value]:
    """Leaf :class:`~tinygrad_bp.Value` objects with data in ``[min_value, max_value]``."""
    return reals(min_value, max_value).map(lambda x: Value(x, requires_grad=requires_grad))


# --- the expression: a list of steps ------------------------------------------------------------


@dataclass(frozen=True)
class Step:
    """One node of an expression: ``op`` (a rule name) over ``args``.

    An ``int`` argument is the index of an earlier node (leaves are nodes ``0..n_leaves-1``), a
    ``float`` argument is a plain-number constant. ``linear`` takes its arguments in the rule's
    order ``(w_1..w_m, x_1..x_m, b)``.
    """

    op: str
    args: tuple[Arg, ...]


@dataclass(frozen=True, repr=False)
class Expression:
    """A random expression graph and a point where it is safe to evaluate and differentiate.

    ``steps[k]`` defines node ``n_leaves + k``; the last step is the output. ``bounds[i]`` is an
    interval containing node i's value for every leaf point in the safe box.
    """

    n_leaves: int
    point: tuple[float, ...]
    steps: tuple[Step, ...]
    bounds: tuple[Interval, ...]

    def __repr__(self) -> str:
        return f"Expression({self.description!r}, point={self.point!r})"

    def _repr_pretty_(self, printer: object, cycle: bool) -> None:  # noqa: ARG002 - IPython's signature
        """Hypothesis and IPython print an Expression as its description, not field by field."""
        printer.text(repr(self))  # type: ignore[attr-defined]

    def build(self, *leaves: Value | float) -> Value:
        """The output Value, built with tinygrad_bp operations on ``leaves`` (numbers become leaves).

        Usable as ``fn`` of :func:`tinygrad_bp.gradcheck`: ``gradcheck(expr.build, expr.point)``.
        """
        if len(leaves) != self.n_leaves:
            raise TypeError(f"build: this expression takes {self.n_leaves} leaves, got {len(leaves)}")
        nodes: list[Value] = [x if isinstance(x, Value) else Value(x, f"x{i}") for i, x in enumerate(leaves)]
        for step in self.steps:
            args = [nodes[a] if type(a) is int else a for a in step.args]
            nodes.append(_BUILDERS[step.op](*args))
        return nodes[-1]

    __call__ = build

    def graph(self, point: Sequence[float] | None = None) -> tuple[Value, list[Value]]:
        """``(output, leaves)``: fresh leaves labelled ``x0, x1, ...`` at ``point`` (default: the point)."""
        leaves = [Value(x, f"x{i}") for i, x in enumerate(self._at(point))]
        return self.build(*leaves), leaves

    def evaluate(self, point: Sequence[float] | None = None) -> float:
        """The output's value by plain float arithmetic, independently of tinygrad_bp's engine."""
        return _evaluate(self, self._at(point))[0][-1]

    def forward_gradient(self, point: Sequence[float] | None = None) -> tuple[float, ...]:
        """d output / d leaf by forward mode (dual numbers), independently of the engine's reverse mode."""
        return _evaluate(self, self._at(point))[1][-1]

    def node_values(self, point: Sequence[float] | None = None) -> list[float]:
        """Every node's value (leaves first) by plain float arithmetic."""
        return _evaluate(self, self._at(point))[0]

    @property
    def ops(self) -> frozenset[str]:
        """The operations in the graph (rule names)."""
        return frozenset(step.op for step in self.steps)

    @property
    def description(self) -> str:
        """The expression as Python source: ``v3 = x0 * x1; tanh(v3 + exp(v3))``."""
        return _describe(self)

    @property
    def shared_nodes(self) -> tuple[int, ...]:
        """Indices of the non-leaf nodes used by two or more later nodes."""
        users: dict[int, set[int]] = {}
        for k, step in enumerate(self.steps):
            for a in step.args:
                if type(a) is int:
                    users.setdefault(a, set()).add(k)
        return tuple(sorted(i for i, u in users.items() if i >= self.n_leaves and len(u) >= 2))

    @property
    def has_repeated_operand(self) -> bool:
        """True when some step uses the same node twice (``a * a``)."""
        return any(_has_duplicate_node(step.args) for step in self.steps)

    @property
    def kink_clearance(self) -> float:
        """The smallest clearance of a relu/abs input u at the point (``inf`` without any).

        The clearance is ``inf`` when u's interval excludes 0 over the whole safe box, else
        ``|u| / max(1, ||grad u||_1)``: no leaf perturbation smaller than this in every
        coordinate reaches the kink at u = 0 (to first order).
        """
        node_values, grads = _evaluate(self, self.point)
        clearance = math.inf
        for step in self.steps:
            if step.op in ("relu", "abs"):
                u = step.args[0]
                lo, hi = self.bounds[u]  # type: ignore[index]
                if lo <= 0.0 <= hi:
                    gradient_norm = math.fsum(abs(g) for g in grads[u])  # type: ignore[index]
                    clearance = min(clearance, abs(node_values[u]) / max(1.0, gradient_norm))  # type: ignore[index]
        return clearance

    def _at(self, point: Sequence[float] | None) -> tuple[float, ...]:
        chosen = self.point if point is None else tuple(float(x) for x in point)
        if len(chosen) != self.n_leaves:
            raise TypeError(f"this expression takes {self.n_leaves} leaves, got a point of {len(chosen)}")
        return chosen


def _has_duplicate_node(args: Sequence[Arg]) -> bool:
    nodes = [a for a in args if type(a) is int]
    return len(nodes) != len(set(nodes))


def _linear(*args: Value | float) -> Value:
    """linear over args in the rule's order (w_1..w_m, x_1..x_m, b)."""
    m = (len(args) - 1) // 2
    return _tg.linear(args[:m], args[m : 2 * m], args[-1])


_BUILDERS: dict[str, Callable[..., Value]] = {
    "+": operator.add,
    "-": operator.sub,
    "*": operator.mul,
    "/": operator.truediv,
    "**": operator.pow,
    "neg": operator.neg,
    "abs": abs,
    "exp": _tg.exp,
    "log": _tg.log,
    "sqrt": _tg.sqrt,
    "tanh": _tg.tanh,
    "sigmoid": _tg.sigmoid,
    "relu": _tg.relu,
    "sin": _tg.sin,
    "cos": _tg.cos,
    "sum": lambda *xs: _tg.sum(xs),
    "linear": _linear,
}


# --- plain float arithmetic: values and local derivatives, independent of the engine ---------


def _sigmoid(x: float) -> float:
    """1 / (1 + e^-x) without overflow."""
    if x >= 0.0:
        return 1.0 / (1.0 + math.exp(-x))
    e = math.exp(x)
    return e / (1.0 + e)


def _linear_value(*xs: float) -> float:
    """w . x + b for xs = (w_1..w_m, x_1..x_m, b)."""
    m = (len(xs) - 1) // 2
    return math.fsum(w * x for w, x in zip(xs[:m], xs[m : 2 * m])) + xs[-1]


_FLOAT_VALUE: dict[str, Callable[..., float]] = {
    "+": operator.add,
    "-": operator.sub,
    "*": operator.mul,
    "/": operator.truediv,
    "**": operator.pow,
    "neg": operator.neg,
    "abs": abs,
    "exp": math.exp,
    "log": math.log,
    "sqrt": math.sqrt,
    "tanh": math.tanh,
    "sigmoid": _sigmoid,
    "relu": lambda a: max(0.0, a),
    "sin": math.sin,
    "cos": math.cos,
    "sum": lambda *xs: math.fsum(xs),
    "linear": _linear_value,
}


def _linear_local(_out: float, *xs: float) -> tuple[float, ...]:
    """d(w.x + b)/dw_i = x_i, d/dx_i = w_i, d/db = 1."""
    m = (len(xs) - 1) // 2
    return (*xs[m : 2 * m], *xs[:m], 1.0)


# op -> local(out, *xs) = (d out/d x_1, ...): the textbook formulas, written independently of rules.py
_FLOAT_LOCAL: dict[str, Callable[..., tuple[float, ...]]] = {
    "+": lambda out, a, b: (1.0, 1.0),
    "-": lambda out, a, b: (1.0, -1.0),
    "*": lambda out, a, b: (b, a),
    "/": lambda out, a, b: (1.0 / b, -a / (b * b)),
    "**": lambda out, a, b: (b * a ** (b - 1.0), out * math.log(a) if a > 0.0 else 0.0),
    "neg": lambda out, a: (-1.0,),
    "abs": lambda out, a: (math.copysign(1.0, a) if a != 0.0 else 0.0,),
    "exp": lambda out, a: (out,),
    "log": lambda out, a: (1.0 / a,),
    "sqrt": lambda out, a: (0.5 / out,),
    "tanh": lambda out, a: (1.0 - out * out,),
    "sigmoid": lambda out, a: (out * (1.0 - out),),
    "relu": lambda out, a: (1.0 if a > 0.0 else 0.0,),
    "sin": lambda out, a: (math.cos(a),),
    "cos": lambda out, a: (-math.sin(a),),
    "sum": lambda out, *xs: (1.0,) * len(xs),
    "linear": _linear_local,
}


def _eval_step(
    step: Step, node_values: list[float], grads: list[tuple[float, ...]], n_leaves: int
) -> tuple[float, tuple[float, ...]]:
    """The value and the forward-mode gradient (w.r.t. the leaves) of one step."""
    xs = [node_values[a] if type(a) is int else a for a in step.args]
    out = _FLOAT_VALUE[step.op](*xs)
    gradient = [0.0] * n_leaves
    for a, d in zip(step.args, _FLOAT_LOCAL[step.op](out, *xs)):
        if type(a) is int:
            for j, g in enumerate(grads[a]):
                gradient[j] += d * g
    return out, tuple(gradient)


def _evaluate(expr: Expression, point: Sequence[float]) -> tuple[list[float], list[tuple[float, ...]]]:
    """All node values and forward-mode gradients at ``point``."""
    n = expr.n_leaves
    node_values = list(point)
    grads = [tuple(1.0 if j == i else 0.0 for j in range(n)) for i in range(n)]
    for step in expr.steps:
        value, gradient = _eval_step(step, node_values, grads, n)
        node_values.append(value)
        grads.append(gradient)
    return node_values, grads


# --- interval arithmetic over the safe box ------------------------------------------------------


def _mul_interval(a: Interval, b: Interval) -> Interval:
    products = (a[0] * b[0], a[0] * b[1], a[1] * b[0], a[1] * b[1])
    return min(products), max(products)


def _integer_power_interval(a: Interval, k: int) -> Interval:
    """{x^k : x in a} for an integer k >= 0."""
    lo, hi = a[0] ** k, a[1] ** k
    if k % 2 == 0 and a[0] <= 0.0 <= a[1]:
        return 0.0, max(lo, hi)
    return min(lo, hi), max(lo, hi)


def _pow_interval(base: Interval, exponent: Interval) -> Interval:
    """{x^y}: corners for a positive base (y log x is bilinear), else a constant integer exponent."""
    if base[0] > 0.0:
        corners = [x**y for x in base for y in exponent]
        return min(corners), max(corners)
    k = exponent[0]
    if exponent[0] == exponent[1] and k.is_integer() and k >= 0:
        return _integer_power_interval(base, int(k))
    return -math.inf, math.inf  # never generated


def _monotone(f: Callable[[float], float]) -> Callable[[Interval], Interval]:
    return lambda a: (f(a[0]), f(a[1]))


def _abs_interval(a: Interval) -> Interval:
    if a[0] >= 0.0:
        return a
    if a[1] <= 0.0:
        return -a[1], -a[0]
    return 0.0, max(-a[0], a[1])


_UNARY_INTERVAL: dict[str, Callable[[Interval], Interval]] = {
    "neg": lambda a: (-a[1], -a[0]),
    "abs": _abs_interval,
    "exp": _monotone(lambda x: math.exp(min(x, 700.0))),
    "log": _monotone(math.log),
    "sqrt": _monotone(math.sqrt),
    "tanh": _monotone(math.tanh),
    "sigmoid": _monotone(_sigmoid),
    "relu": lambda a: (max(a[0], 0.0), max(a[1], 0.0)),
    "sin": lambda a: _UNIT,
    "cos": lambda a: _UNIT,
}


def _step_interval(step: Step, bounds: Sequence[Interval]) -> Interval:
    """An interval containing the step's value whenever its node arguments lie in ``bounds``."""
    ivs = [bounds[a] if type(a) is int else (a, a) for a in step.args]
    op = step.op
    if op in _UNARY_INTERVAL:
        return _UNARY_INTERVAL[op](ivs[0])
    if op == "sum":
        return math.fsum(iv[0] for iv in ivs), math.fsum(iv[1] for iv in ivs)
    if op == "linear":
        m = (len(ivs) - 1) // 2
        terms = [_mul_interval(w, x) for w, x in zip(ivs[:m], ivs[m : 2 * m])] + [ivs[-1]]
        return math.fsum(t[0] for t in terms), math.fsum(t[1] for t in terms)
    a, b = ivs
    if op == "*" and step.args[0] == step.args[1] and type(step.args[0]) is int:
        return _integer_power_interval(a, 2)  # a * a >= 0
    binary: dict[str, Callable[[], Interval]] = {
        "+": lambda: (a[0] + b[0], a[1] + b[1]),
        "-": lambda: (a[0] - b[1], a[1] - b[0]),
        "*": lambda: _mul_interval(a, b),
        "/": lambda: _mul_interval(a, (1.0 / b[1], 1.0 / b[0])),
        "**": lambda: _pow_interval(a, b),
    }
    return binary[op]()


# --- the generator ------------------------------------------------------------------------------

_Draw = Callable[[st.SearchStrategy[Any]], Any]


class _Graph:
    """An expression under construction: steps, intervals, and values/gradients at the point."""

    def __init__(self, point: tuple[float, ...]) -> None:
        n = len(point)
        self.n_leaves = n
        self.steps: list[Step] = []
        self.bounds: list[Interval] = [(-SAFE_RADIUS, SAFE_RADIUS)] * n
        self.values: list[float] = list(point)
        self.grads: list[tuple[float, ...]] = [tuple(float(j == i) for j in range(n)) for i in range(n)]

    @property
    def size(self) -> int:
        return len(self.values)

    def add(self, op: str, *args: Arg) -> int:
        """Append ``op(args)``; returns the new node's index."""
        step = Step(op, tuple(args))
        self.bounds.append(_step_interval(step, self.bounds))
        value, gradient = _eval_step(step, self.values, self.grads, self.n_leaves)
        self.values.append(value)
        self.grads.append(gradient)
        self.steps.append(step)
        return self.size - 1

    def rollback(self, size: int) -> None:
        """Forget every node from index ``size`` on."""
        del self.steps[size - self.n_leaves :]
        del self.bounds[size:], self.values[size:], self.grads[size:]

    def bounded_since(self, size: int) -> bool:
        """True when every node from index ``size`` on lies in [-BOUND, BOUND]."""
        return all(lo >= -BOUND and hi <= BOUND for lo, hi in self.bounds[size:])

    def inside(self, i: int, lo: float, hi: float) -> bool:
        return lo <= self.bounds[i][0] and self.bounds[i][1] <= hi


class _Picker:
    """Draws operands among the existing nodes; after a failed attempt, squashed ones."""

    def __init__(self, draw: _Draw, graph: _Graph, *, squashed: bool) -> None:
        self.draw = draw
        self.graph = graph
        self.squashed = squashed
        self._squash_of: dict[int, int] = {}

    def node(self) -> int:
        """An existing node (the latest one favoured), squashed into [-1, 1] on a retry."""
        last = self.graph.size - 1
        i = self.draw(st.one_of(st.just(last), st.integers(0, last)))
        if not self.squashed:
            return i
        if i not in self._squash_of:
            self._squash_of[i] = _squash(self.draw, self.graph, i)
        return self._squash_of[i]

    def constant(self, low: int = -20, high: int = 20) -> float:
        """A readable constant k / 10 with k in [low, high]."""
        return self.draw(st.integers(low, high)) / 10.0

    def node_or_constant(self) -> Arg:
        return self.constant() if self.draw(st.booleans()) else self.node()

    def form(self, *names: str) -> str:
        return self.draw(st.sampled_from(names))


def _squash(draw: _Draw, graph: _Graph, i: int) -> int:
    """Node i itself if it lies in [-1, 1], else tanh/sin/cos/sigmoid of it."""
    if graph.inside(i, -1.0, 1.0):
        return i
    return graph.add(draw(st.sampled_from(_SQUASHERS)), i)


def _positive(pick: _Picker, i: int) -> int:
    """A node built from node i that is >= MIN_MAGNITUDE (and <= max(3, its own bound)) on the box."""
    g = pick.graph
    forms = ["sigmoid_plus", "square_plus", "exp"]
    if g.bounds[i][0] >= MIN_MAGNITUDE:
        forms.insert(0, "itself")
    form = pick.form(*forms)
    if form == "itself":
        return i
    if form == "sigmoid_plus":  # sigmoid(a) + c, in [c, 1 + c]
        return g.add("+", g.add("sigmoid", i), pick.constant(3, 20))
    if form == "square_plus":  # a * a + c, in [c, 1 + c] after squashing
        s = i if g.inside(i, -1.0, 1.0) else _squash(pick.draw, g, i)
        return g.add("+", g.add("*", s, s), pick.constant(3, 20))
    s = i if g.inside(i, -1.0, 1.0) else _squash(pick.draw, g, i)  # exp(a), in [1/e, e]
    return g.add("exp", s)


def _nonzero(pick: _Picker, i: int) -> int:
    """A node built from node i whose magnitude is >= MIN_MAGNITUDE on the box."""
    p = _positive(pick, i)
    return pick.graph.add("neg", p) if pick.draw(st.booleans()) else p


def _grow_binary(op: str) -> Callable[[_Picker], int]:
    def grow(pick: _Picker) -> int:
        form = pick.form("nodes", "same", "constant_right", "constant_left")
        a = pick.node()
        if form == "nodes":
            return pick.graph.add(op, a, pick.node())
        if form == "same":
            return pick.graph.add(op, a, a)
        if form == "constant_right":
            return pick.graph.add(op, a, pick.constant())
        return pick.graph.add(op, pick.constant(), a)

    return grow


def _grow_divide(pick: _Picker) -> int:
    """a / d, c / d or d / d with |d| >= MIN_MAGNITUDE."""
    form = pick.form("nodes", "same", "constant_numerator")
    if form == "same":
        d = _nonzero(pick, pick.node())
        return pick.graph.add("/", d, d)
    numerator = pick.constant() if form == "constant_numerator" else pick.node()
    return pick.graph.add("/", numerator, _nonzero(pick, pick.node()))


def _grow_power(pick: _Picker) -> int:
    """p ** b, p ** p, a ** (2 or 3), p ** (real constant), c ** b, with p >= MIN_MAGNITUDE."""
    g = pick.graph
    form = pick.form("value_exponent", "integer_exponent", "real_exponent", "constant_base", "same")
    if form == "integer_exponent":
        return g.add("**", pick.node(), float(pick.form("2.0", "3.0")))
    if form == "constant_base":
        return g.add("**", float(pick.form("0.5", "2.0", "3.0")), pick.node())
    p = _positive(pick, pick.node())
    if form == "same":
        return g.add("**", p, p)
    if form == "real_exponent":
        return g.add("**", p, float(pick.form("-1.0", "-0.5", "0.5", "1.5", "2.5")))
    return g.add("**", p, pick.node())


def _grow_unary(op: str) -> Callable[[_Picker], int]:
    return lambda pick: pick.graph.add(op, pick.node())


def _grow_positive_domain(op: str) -> Callable[[_Picker], int]:
    return lambda pick: pick.graph.add(op, _positive(pick, pick.node()))


def _grow_kink(op: str) -> Callable[[_Picker], int]:
    """relu(u - s) or abs(u - s) with the kink away from the point (see KINK_MARGIN)."""

    def grow(pick: _Picker) -> int:
        g = pick.graph
        u = pick.node()
        if pick.squashed:  # u in [-1, 1]: put the kink outside the box altogether
            lo, hi = g.bounds[u]
            shift = lo - KINK_MARGIN if pick.draw(st.booleans()) else hi + KINK_MARGIN
        else:
            shift = _clear_shift(pick.constant(-10, 10), g.values[u], g.grads[u])
        if shift != 0.0:
            u = g.add("-", u, shift)
        return g.add(op, u)

    return grow


def _clear_shift(shift: float, value: float, gradient: tuple[float, ...]) -> float:
    """``shift``, moved if needed so that |value - shift| >= KINK_MARGIN * max(1, ||gradient||_1)."""
    need = KINK_MARGIN * max(1.0, math.fsum(abs(x) for x in gradient))
    if abs(value - shift) >= need:
        return shift
    moved = value - 2.0 * need if value >= shift else value + 2.0 * need
    return round(moved, 6)


def _grow_sum(pick: _Picker) -> int:
    """sum of 2-4 nodes (repeats possible), maybe with a constant."""
    args: list[Arg] = [pick.node() for _ in range(pick.draw(st.integers(2, 4)))]
    if pick.draw(st.booleans()):
        args.append(args[0])
    if pick.draw(st.booleans()):
        args.insert(pick.draw(st.integers(0, len(args))), pick.constant())
    return pick.graph.add("sum", *args)


def _grow_linear(pick: _Picker) -> int:
    """linear(w, x, b) with 1-3 terms; weights and bias are nodes or constants."""
    m = pick.draw(st.integers(1, 3))
    weights = [pick.node_or_constant() for _ in range(m)]
    inputs = [pick.node() for _ in range(m)]
    return pick.graph.add("linear", *weights, *inputs, pick.node_or_constant())


_GROW: dict[str, Callable[[_Picker], int]] = {
    "+": _grow_binary("+"),
    "-": _grow_binary("-"),
    "*": _grow_binary("*"),
    "/": _grow_divide,
    "**": _grow_power,
    "neg": _grow_unary("neg"),
    "abs": _grow_kink("abs"),
    "exp": _grow_unary("exp"),
    "log": _grow_positive_domain("log"),
    "sqrt": _grow_positive_domain("sqrt"),
    "tanh": _grow_unary("tanh"),
    "sigmoid": _grow_unary("sigmoid"),
    "relu": _grow_kink("relu"),
    "sin": _grow_unary("sin"),
    "cos": _grow_unary("cos"),
    "sum": _grow_sum,
    "linear": _grow_linear,
}


def _grow(draw: _Draw, graph: _Graph, op: str) -> None:
    """Add one ``op`` node (with its guards); on magnitudes beyond BOUND, redo it on squashed operands."""
    size = graph.size
    _GROW[op](_Picker(draw, graph, squashed=False))
    if graph.bounded_since(size):
        return
    graph.rollback(size)
    _GROW[op](_Picker(draw, graph, squashed=True))
    if not graph.bounded_since(size):  # pragma: no cover - a bug of this module
        raise RuntimeError(f"expressions: {op} on squashed operands left [-{BOUND}, {BOUND}]")


def _close(graph: _Graph) -> None:
    """Make every node reach the output: sum the nodes nothing uses into the last one."""
    used = {a for step in graph.steps for a in step.args if type(a) is int}
    unused = [i for i in range(graph.size - 1) if i not in used]
    if unused:
        graph.add("sum", *unused, graph.size - 1)


@st.composite
def _expressions(
    draw: _Draw, min_leaves: int, max_leaves: int, max_ops: int, ops: tuple[str, ...]
) -> Expression:
    n = draw(st.integers(min_leaves, max_leaves))
    point = draw(leaf_points(n))
    graph = _Graph(point)
    for _ in range(draw(st.integers(1, max_ops))):
        _grow(draw, graph, draw(st.sampled_from(ops)))
    _close(graph)
    return Expression(n, point, tuple(graph.steps), tuple(graph.bounds))


def expressions(
    *, min_leaves: int = 1, max_leaves: int = 3, max_ops: int = 8, ops: Iterable[str] | None = None
) -> st.SearchStrategy[Expression]:
    """Random expression graphs (:class:`Expression`) with a safe point; see the module docstring.

    ``min_leaves..max_leaves`` leaves; ``1..max_ops`` operations drawn from ``ops`` (default
    :data:`ALL_OPS`), each with the guards that keep it inside its domain.
    """
    chosen = ALL_OPS if ops is None else tuple(op for op in ALL_OPS if op in set(ops))
    unknown = set(ALL_OPS if ops is None else ops) - set(ALL_OPS)
    if unknown or not chosen:
        raise ValueError(f"expressions: ops must be a non-empty subset of {ALL_OPS}, got unknown {unknown}")
    if not 1 <= min_leaves <= max_leaves or max_ops < 1:
        raise ValueError("expressions: need 1 <= min_leaves <= max_leaves and max_ops >= 1")
    return _expressions(min_leaves, max_leaves, max_ops, chosen)


# --- the description ----------------------------------------------------------------------------


def _constant_text(c: float) -> str:
    return f"({c!r})" if c < 0 or (c == 0 and math.copysign(1.0, c) < 0) else repr(c)


def _describe(expr: Expression) -> str:
    """Python source for the expression; nodes used more than once are named ``v<index>``."""
    n = expr.n_leaves
    uses = [0] * (n + len(expr.steps))
    for step in expr.steps:
        for a in step.args:
            if type(a) is int:
                uses[a] += 1
    texts: list[tuple[str, bool]] = [(f"x{i}", True) for i in range(n)]  # (text, atomic)
    bindings = []
    for k, step in enumerate(expr.steps):
        index = n + k
        text = _step_text(step, texts)
        if uses[index] >= 2:
            bindings.append(f"v{index} = {text[0]}")
            text = (f"v{index}", True)
        texts.append(text)
    return "; ".join([*bindings, texts[-1][0]])


_INFIX = {"+": "+", "-": "-", "*": "*", "/": "/", "**": "**"}


def _step_text(step: Step, texts: Sequence[tuple[str, bool]]) -> tuple[str, bool]:
    """The source of one step from its arguments' sources; atomic texts need no parentheses."""

    def plain(a: Arg) -> str:
        return texts[a][0] if type(a) is int else _constant_text(a)

    def operand(a: Arg) -> str:
        if type(a) is int and not texts[a][1]:
            return f"({texts[a][0]})"
        return plain(a)

    args = step.args
    if step.op in _INFIX:
        return f"{operand(args[0])} {_INFIX[step.op]} {operand(args[1])}", False
    if step.op == "neg":
        return f"-{operand(args[0])}", False
    if step.op == "sum":
        return f"sum([{', '.join(plain(a) for a in args)}])", True
    if step.op == "linear":
        m = (len(args) - 1) // 2
        weights = ", ".join(plain(a) for a in args[:m])
        inputs = ", ".join(plain(a) for a in args[m : 2 * m])
        return f"linear([{weights}], [{inputs}], {plain(args[-1])})", True
    return f"{step.op}({plain(args[0])})", True
