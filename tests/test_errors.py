"""Bad input: a clear error naming the operation and the value, and nothing changed."""

from __future__ import annotations

import math

import pytest

import tinygrad_bp as tg
from tinygrad_bp import Value, errors


@pytest.mark.parametrize("bad", ["1.0", None, 1 + 2j, [1.0], (1.0,)])
def test_value_rejects_non_real_data_naming_the_type(bad):
    with pytest.raises(TypeError, match=type(bad).__name__):
        Value(bad)


def test_value_of_a_value_is_a_type_error():
    with pytest.raises(TypeError, match="Value"):
        Value(Value(1.0))


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_value_rejects_non_finite_data(bad):
    with pytest.raises(ValueError, match="finite"):
        Value(bad)


def test_label_must_be_a_string():
    with pytest.raises(TypeError, match="label"):
        Value(1.0, label=3)


@pytest.mark.parametrize(
    ("make", "exc", "words"),
    [
        (lambda: Value(0.0).log(), ValueError, ["log", "0.0"]),
        (lambda: Value(-1.0).log(), ValueError, ["log", "-1.0"]),
        (lambda: Value(-4.0).sqrt(), ValueError, ["sqrt", "-4.0"]),
        (lambda: Value(-8.0) ** (1 / 3), ValueError, ["**", "-8.0"]),
        (lambda: Value(0.0) ** -1, ValueError, ["**", "0.0"]),
        (lambda: Value(0.0) ** Value(-2.0), ValueError, ["**", "0.0"]),
        (lambda: Value(1.0) / 0, ZeroDivisionError, ["/", "0.0"]),
        (lambda: 1 / Value(0.0), ZeroDivisionError, ["/", "0.0"]),
        (lambda: Value(1000.0).exp(), OverflowError, ["exp", "1000.0"]),
        (lambda: Value(1e200) * Value(1e200), OverflowError, ["*", "1e+200"]),
        (lambda: Value(1e308) + Value(1e308), OverflowError, ["+", "1e+308"]),
        (lambda: Value(10.0) ** 400, OverflowError, ["**", "10.0"]),
    ],
)
def test_domain_errors_name_op_and_value_and_add_nothing(make, exc, words):
    with pytest.raises(exc) as info:
        make()
    assert isinstance(info.value, errors.TinygradBPError)
    for word in words:
        assert word in str(info.value)


def test_failed_operation_changes_nothing():
    a = Value(-1.0, label="a")
    b = a * 2
    b.backward()
    assert a.grad == 2.0
    with pytest.raises(ValueError):
        b.log()
    # The graph is as it was: backward again gives exactly the same accumulation.
    b.backward()
    assert a.grad == 4.0
    assert b.inputs[0] is a


def test_unsupported_operand_is_a_type_error_naming_the_operation():
    with pytest.raises(TypeError, match=r"\+"):
        Value(1.0) + "a"
    with pytest.raises(TypeError, match=r"\*"):
        Value(1.0) * None


def test_missing_rule_fails_when_the_graph_is_built():
    from tinygrad_bp.value import apply

    with pytest.raises(errors.UnknownOperationError, match="no_such_op"):
        apply("no_such_op", Value(1.0))
    with pytest.raises(LookupError):
        apply("no_such_op", 1.0)


def test_infinite_local_derivative_raises_in_backward_and_writes_no_grad():
    x = Value(0.0, label="x")
    y = x.sqrt() + x
    with pytest.raises(errors.NonDifferentiableError, match="sqrt"):
        y.backward()
    assert x.grad == 0.0
    with pytest.raises(ArithmeticError):
        tg.grad(Value(0.0) ** 0.5, [Value(0.0)], allow_unused=True)


def test_backward_gradient_must_be_a_number():
    with pytest.raises(TypeError, match="gradient"):
        (Value(1.0) * 2).backward("x")


def test_backward_on_a_constant_is_refused():
    with pytest.raises(ValueError, match="does not require grad"):
        (Value(1.0, requires_grad=False) * 2).backward()


def test_exceptions_have_docstrings_and_builtin_bases():
    for name in errors.__all__:
        cls = getattr(errors, name)
        assert cls.__doc__
        assert issubclass(cls, errors.TinygradBPError)


def test_library_never_uses_assert():
    import ast
    import pathlib

    root = pathlib.Path(tg.__file__).parent
    for path in root.rglob("*.py"):
        tree = ast.parse(path.read_text())
        asserts = [n.lineno for n in ast.walk(tree) if isinstance(n, ast.Assert)]
        assert not asserts, f"{path.name} uses assert at lines {asserts}"


def test_assigning_data_keeps_a_finite_python_float():
    np = pytest.importorskip("numpy")
    v = Value(1.0)
    v.data = 3
    assert type(v.data) is float
    assert float(v) == 3.0
    v.data = np.float32(0.5)
    assert type(v.data) is float
    assert type((v * 3).data) is float
    for bad, exc in (("x", TypeError), (None, TypeError), (math.nan, ValueError), (math.inf, ValueError)):
        with pytest.raises(exc, match="data"):
            v.data = bad
    assert v.data == 0.5  # a refused assignment changes nothing


def test_gradient_overflow_in_backward_is_an_error_and_writes_nothing():
    a, c = Value(1e300, label="a"), Value(1e-300, label="c")
    y = a * c
    with pytest.raises(OverflowError, match=r"\*"):
        y.backward(1e10)  # dy/dc = 1e300 * 1e10
    assert a.grad == 0.0
    assert c.grad == 0.0
    b = Value(1.0, label="b")
    z = b * 1e308
    z.backward()
    with pytest.raises(OverflowError, match="'b'"):
        z.backward()  # b.grad would become 2e308
    assert b.grad == 1e308


def test_custom_op_with_a_wrong_number_of_partials_or_a_nan_is_named():
    bad_partials = tg.custom_op("custom_bad_partials", lambda x, y: x * y, lambda x, y: (y,))
    with pytest.raises(TypeError, match="custom_bad_partials"):
        bad_partials(Value(2.0), Value(3.0)).backward()
    nan_forward = tg.custom_op("custom_nan", lambda x: math.nan, lambda x: 1.0)
    with pytest.raises(ValueError, match="NaN"):
        nan_forward(Value(1.0))
