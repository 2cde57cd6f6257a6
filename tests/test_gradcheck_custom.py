"""gradcheck, GradcheckError, and custom operations behaving like built-in ones."""

from __future__ import annotations

import math

import pytest

import tinygrad_bp as tg
from tinygrad_bp import GradcheckError, Value, custom_op, grad, gradcheck

softplus = custom_op(
    "custom_softplus",
    lambda x: math.log1p(math.exp(-abs(x))) + max(x, 0.0),
    lambda x: tg.sigmoid(x),  # works on floats and on Values
)
wrong_cube = custom_op("custom_wrong_cube", lambda x: x**3, lambda x: 2 * x**2)
hypot = custom_op(
    "custom_hypot",
    lambda x, y: math.hypot(x, y),
    lambda x, y: (x / tg.sqrt(x * x + y * y), y / tg.sqrt(x * x + y * y)),
)


def test_gradcheck_passes_on_a_correct_function():
    assert gradcheck(lambda a, b: (a * b).tanh() + a.exp() / b, [0.3, 1.7])


def test_gradcheck_error_names_index_and_values():
    with pytest.raises(GradcheckError) as info:
        gradcheck(lambda a, b: a * b + wrong_cube(a), [2.0, 1.0])
    message = str(info.value)
    assert "input 0" in message
    assert "input 1" not in message
    assert "analytical" in message
    assert "numerical" in message
    assert "absolute error" in message
    assert "relative error" in message
    assert isinstance(info.value, AssertionError)


def test_gradcheck_can_return_false():
    assert gradcheck(lambda a: wrong_cube(a), [2.0], raise_exception=False) is False


def test_custom_op_behaves_like_a_builtin():
    x = Value(0.4)
    y = softplus(x * 2)
    assert y.op == "custom_softplus"
    assert y.data == pytest.approx(math.log1p(math.exp(0.8)))
    y.backward()
    assert x.grad == pytest.approx(2 / (1 + math.exp(-0.8)))
    assert gradcheck(lambda a: softplus(a * a), [0.7])
    assert gradcheck(lambda a, b: hypot(a, b), [3.0, 4.0])


def test_custom_op_second_derivative():
    x = Value(0.3)
    (d1,) = grad(softplus(x), [x], create_graph=True)
    (d2,) = grad(d1, [x])
    s = 1 / (1 + math.exp(-0.3))
    assert d2 == pytest.approx(s * (1 - s))


def test_custom_op_builtin_name_is_refused():
    with pytest.raises(ValueError, match="built-in"):
        custom_op("+", lambda x, y: x, lambda x, y: (1.0, 1.0))
    with pytest.raises(ValueError, match="already"):
        custom_op("exp", math.exp, math.exp)
    assert (Value(1.0) + 2.0).data == 3.0


def test_custom_op_defined_again_replaces_the_first():
    """A notebook cell that defines an operation can be run twice; the second definition wins."""
    first = custom_op("custom_twice", lambda x: 2 * x, lambda x: 2.0)
    assert first(Value(1.0)).data == 2.0
    second = custom_op("custom_twice", lambda x: 3 * x, lambda x: 3.0)
    x = Value(1.0)
    y = second(x)
    y.backward()
    assert (y.data, x.grad) == (3.0, 3.0)


def test_custom_op_domain_error_is_reported():
    ln = custom_op("custom_ln", math.log, lambda x: 1 / x, arity=1)
    with pytest.raises(ValueError, match="custom_ln"):
        ln(Value(-1.0))


def test_custom_op_checks_arity():
    with pytest.raises(TypeError, match="2 input"):
        hypot(Value(1.0))
