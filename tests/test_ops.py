"""Every operation: its value, its local derivative against the closed form and finite differences."""

from __future__ import annotations

import math

import pytest

import tinygrad_bp as tg
import tinygrad_bp.losses
from tinygrad_bp import Value, grad, gradcheck
from tinygrad_bp.rules import BUILTIN


def _cross_entropy_gradient(z: tuple[float, ...], t: tuple[float, ...]) -> tuple[float, ...]:
    """d/dz_i = (sum t) softmax_i - t_i and d/dt_i = -log softmax_i, by the textbook formulas."""
    total = sum(math.exp(v) for v in z)
    softmax = [math.exp(v) / total for v in z]
    return (*(sum(t) * s - ti for s, ti in zip(softmax, t)), *(-math.log(s) for s in softmax))


# op name -> (function of Values, point, closed-form gradient at the point)
CASES = {
    "+": (lambda a, b: a + b, (1.5, -2.0), lambda a, b: (1.0, 1.0)),
    "-": (lambda a, b: a - b, (1.5, -2.0), lambda a, b: (1.0, -1.0)),
    "*": (lambda a, b: a * b, (1.5, -2.0), lambda a, b: (b, a)),
    "/": (lambda a, b: a / b, (1.5, -2.0), lambda a, b: (1 / b, -a / b**2)),
    "**": (lambda a, b: a**b, (1.5, 2.5), lambda a, b: (b * a ** (b - 1), a**b * math.log(a))),
    "neg": (lambda a: -a, (1.5,), lambda a: (-1.0,)),
    "abs": (lambda a: abs(a), (-1.5,), lambda a: (-1.0,)),
    "exp": (lambda a: a.exp(), (0.7,), lambda a: (math.exp(a),)),
    "log": (lambda a: a.log(), (0.7,), lambda a: (1 / a,)),
    "sqrt": (lambda a: a.sqrt(), (0.7,), lambda a: (0.5 / math.sqrt(a),)),
    "tanh": (lambda a: a.tanh(), (0.7,), lambda a: (1 - math.tanh(a) ** 2,)),
    "sigmoid": (
        lambda a: a.sigmoid(),
        (0.7,),
        lambda a: (1 / (1 + math.exp(-a)) * (1 - 1 / (1 + math.exp(-a))),),
    ),
    "relu": (lambda a: a.relu(), (0.7,), lambda a: (1.0,)),
    "sin": (lambda a: a.sin(), (0.7,), lambda a: (math.cos(a),)),
    "cos": (lambda a: a.cos(), (0.7,), lambda a: (-math.sin(a),)),
    "softplus": (lambda a: a.softplus(), (-0.7,), lambda a: (1 / (1 + math.exp(-a)),)),
    "sse": (
        lambda p1, p2, t1, t2: tg.losses.mse_loss([p1, p2], [t1, t2], reduction="sum"),
        (0.5, -0.25, 2.0, 3.0),
        lambda p1, p2, t1, t2: (2 * (p1 - t1), 2 * (p2 - t2), -2 * (p1 - t1), -2 * (p2 - t2)),
    ),
    "half_sse": (
        lambda p1, p2, t1, t2: tg.losses.half_sse([p1, p2], [t1, t2]),
        (0.5, -0.25, 2.0, 3.0),
        lambda p1, p2, t1, t2: (p1 - t1, p2 - t2, t1 - p1, t2 - p2),
    ),
    "sum": (lambda a, b, c: tg.sum([a, b, c]), (0.7, -1.0, 2.0), lambda a, b, c: (1.0, 1.0, 1.0)),
    "binary_cross_entropy": (
        lambda p, t: tg.losses.binary_cross_entropy(p, t),
        (0.3, 0.8),
        lambda p, t: ((1 - t) / (1 - p) - t / p, math.log(1 - p) - math.log(p)),
    ),
    "cross_entropy": (  # soft targets, so that d/dt is tested too: -sum_i t_i log softmax(z)_i
        lambda z1, z2, z3, t1, t2, t3: tg.losses.cross_entropy([z1, z2, z3], [t1, t2, t3]),
        (0.5, -1.25, 2.0, 0.2, 0.5, 0.3),
        lambda z1, z2, z3, t1, t2, t3: _cross_entropy_gradient((z1, z2, z3), (t1, t2, t3)),
    ),
    "linear": (
        lambda w1, w2, x1, x2, b: tg.linear([w1, w2], [x1, x2], b),
        (0.5, -0.25, 2.0, 3.0, 0.1),
        lambda w1, w2, x1, x2, b: (x1, x2, w1, w2, 1.0),
    ),
}


def test_every_builtin_rule_has_a_case():
    assert set(CASES) == BUILTIN


@pytest.mark.parametrize("op", sorted(CASES))
def test_op_name_and_closed_form_gradient(op):
    fn, point, closed = CASES[op]
    leaves = [Value(x) for x in point]
    out = fn(*leaves)
    assert out.op == op
    assert out.inputs == tuple(leaves)
    assert grad(out, leaves) == pytest.approx(closed(*point), rel=1e-12, abs=1e-15)


@pytest.mark.parametrize("op", sorted(CASES))
def test_op_gradient_matches_finite_differences(op):
    fn, point, _ = CASES[op]
    assert gradcheck(fn, point)


def test_relu_at_and_below_zero():
    for x, expected in ((0.0, 0.0), (-2.0, 0.0)):
        v = Value(x)
        y = v.relu()
        y.backward()
        assert y.data == 0.0
        assert v.grad == expected


def test_abs_at_zero_is_subgradient_zero():
    v = Value(0.0)
    abs(v).backward()
    assert v.grad == 0.0


def test_numbers_on_either_side_become_constants():
    a = Value(3.0)
    for expr, data, left in (
        (2 + a, 5.0, 2.0),
        (a + 2, 5.0, 3.0),
        (2 - a, -1.0, 2.0),
        (2 * a, 6.0, 2.0),
        (2 / a, 2 / 3, 2.0),
        (2**a, 8.0, 2.0),
        (a**2, 9.0, 3.0),
    ):
        assert expr.data == pytest.approx(data)
        assert expr.inputs[0].data == left
        assert all(isinstance(x, Value) for x in expr.inputs)
        const = [x for x in expr.inputs if x is not a]
        assert len(const) == 1
        assert const[0].requires_grad is False


def test_repeated_operand_is_repeated_in_inputs():
    a = Value(3.0)
    assert (a * a).inputs == (a, a)


def test_power_by_a_value_exponent():
    a = Value(2.0)
    b = Value(3.0)
    y = a**b
    y.backward()
    assert y.data == 8.0
    assert a.grad == pytest.approx(12.0)
    assert b.grad == pytest.approx(8 * math.log(2))


def test_rpow_gradient():
    x = Value(3.0)
    y = 2**x
    y.backward()
    assert x.grad == pytest.approx(8 * math.log(2))


def test_integer_power_of_negative_base():
    x = Value(-2.0)
    y = x**3
    y.backward()
    assert y.data == -8.0
    assert x.grad == 12.0


def test_sigmoid_and_tanh_never_overflow():
    for x in (-1000.0, -745.5, 0.0, 745.5, 1000.0, 1e308, -1e308):
        s = Value(x).sigmoid()
        t = Value(x).tanh()
        assert 0.0 <= s.data <= 1.0
        assert -1.0 <= t.data <= 1.0
    assert Value(-1000.0).sigmoid().data == 0.0
    assert Value(1000.0).sigmoid().data == 1.0


def test_functions_work_on_values_and_numbers():
    assert tg.exp(1.0) == pytest.approx(math.e)
    assert tg.exp(Value(1.0)).op == "exp"
    assert tg.sigmoid(0.0) == 0.5
    assert tg.relu(-1) == 0.0


def test_comparisons_read_data_and_equality_is_identity():
    a, b = Value(1.0), Value(1.0)
    assert a <= b
    assert a >= b
    assert not a < b
    assert a < 2
    assert a != b
    assert len({a, b}) == 2


def test_value_conversions_and_repr():
    v = Value(2.5, label="x")
    assert float(v) == 2.5
    assert v.item() == 2.5
    assert f"{v:.2f}" == "2.50"
    assert "label='x'" in repr(v)
    d = (v * 2).detach()
    assert d.inputs == ()
    assert d.requires_grad is False


def test_numpy_scalars_are_accepted():
    np = pytest.importorskip("numpy")
    v = Value(np.float64(1.5)) * np.float32(2.0)
    assert type(v.data) is float
    assert v.data == 3.0
    assert (np.int64(2) + Value(1.0)).data == 3.0


def test_power_at_a_zero_base():
    x = Value(0.5)
    y = 0.0**x  # d/dx 0^x = 0 (the limit from the right)
    y.backward()
    assert x.grad == 0.0
    a = Value(0.0)
    assert grad(a**0.0, [a]) == [0.0]
    assert grad(a**1.0, [a]) == [1.0]
    assert grad(a**2.0, [a]) == [0.0]


def test_power_derivatives_that_do_not_exist_are_refused():
    a = Value(0.0)
    with pytest.raises(tg.NonDifferentiableError, match=r"\*\*"):
        grad(a**0.5, [a])  # +inf
    x = Value(2.0)
    with pytest.raises(tg.NonDifferentiableError, match=r"-2.0"):
        grad(Value(-2.0, requires_grad=False) ** x, [x])  # d/dx (-2)^x does not exist
    # ... but only when that partial is needed:
    b = Value(-2.0)
    assert grad(b**2.0, [b]) == [-4.0]
