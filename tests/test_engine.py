"""Reverse mode: accumulation semantics, depth, the functional grad, higher order, no_grad."""

from __future__ import annotations

import gc
import sys
import threading

import pytest
from hypothesis import given

import tinygrad_bp as tg
from tinygrad_bp import Value, engine, grad, no_grad
from tinygrad_bp.testing import expressions


def test_micrograd_bug_53_a_times_a_times_a():
    a = Value(3.0)
    y = a * a * a
    y.backward()
    assert a.grad == 27.0
    y.backward()
    assert a.grad == 54.0  # exactly twice one call


def test_second_pass_after_zeroing_gives_the_first_again():
    a = Value(3.0)
    y = a * a * a
    y.backward()
    a.grad = 0.0
    y.backward()
    assert a.grad == 27.0  # micrograd 0.1.0 gives 45.0 here


def test_two_calls_give_exactly_twice_one_call_on_leaves():
    x, w, b = Value(0.3), Value(-1.2), Value(0.5)
    h = (x * w + b).tanh()
    y = h * h + h.exp()
    y.backward()
    once = [x.grad, w.grad, b.grad]
    h_grad = h.grad
    y.backward()
    assert [x.grad, w.grad, b.grad] == [2 * g for g in once]
    assert h.grad == h_grad  # intermediates never compound
    assert y.grad == 1.0


def test_backward_with_an_upstream_gradient():
    x = Value(2.0)
    y = x * x
    y.backward(3.0)
    assert x.grad == 12.0
    assert y.grad == 3.0


def test_constants_get_no_gradient():
    x = Value(2.0)
    c = Value(5.0, requires_grad=False)
    y = x * c
    y.backward()
    assert x.grad == 5.0
    assert c.grad == 0.0
    assert y.requires_grad


def test_diamond_shares_a_subexpression():
    x = Value(1.5)
    s = x * x  # used twice below
    y = s.exp() + s.sin() * s
    y.backward()
    import math

    ds = math.exp(2.25) + math.cos(2.25) * 2.25 + math.sin(2.25)
    assert x.grad == pytest.approx(ds * 3.0, rel=1e-12)


def test_million_node_chain_at_the_default_recursion_limit():
    assert sys.getrecursionlimit() <= 1000 or sys.getrecursionlimit() == 1000
    x = Value(0.5)
    a = Value(1.0)
    y = x
    for _ in range(1_000_000):
        y = y * a
    y.backward()
    assert x.grad == 1.0
    assert a.grad == pytest.approx(1_000_000 * 0.5)
    order = tg.toposort(y)
    assert len(order) == 1_000_002
    del y, order  # freeing a deep chain must not overflow the C stack either


def test_toposort_puts_inputs_first_and_counts_each_node_once():
    a = Value(1.0)
    b = a * a
    c = b + a
    order = tg.toposort(c)
    assert order == [a, b, c]


def _live_values() -> int:
    return sum(1 for o in gc.get_objects() if type(o) is Value)


def test_dropped_graph_is_freed_by_reference_counting_alone():
    gc.collect()
    gc.disable()
    try:
        before = _live_values()
        x = Value(1.0)
        y = ((x * 2 + 1).tanh() * x).exp()
        y.backward()
        assert _live_values() >= before + 7
        del x, y
        # Freed at once by reference counts: nothing left for the cyclic collector.
        assert _live_values() == before
        assert gc.collect() == 0
    finally:
        gc.enable()


def test_no_reference_cycles_in_a_graph():
    gc.collect()
    gc.disable()
    try:
        for _ in range(3):
            x = Value(1.0)
            y = (x * x + x.sigmoid()).log() ** 2
            y.backward()
            tg.grad(y, [x], create_graph=True)
            del x, y
        assert gc.collect() == 0
    finally:
        gc.enable()


def test_grad_leaves_grad_untouched_and_handles_unused():
    x, z = Value(2.0), Value(5.0)
    y = x**3
    assert grad(y, [x]) == [12.0]
    assert x.grad == 0.0
    assert y.grad == 0.0
    with pytest.raises(ValueError, match="allow_unused"):
        grad(y, [x, z])
    with pytest.raises(RuntimeError, match="materialize_grads"):  # torch raises a RuntimeError
        grad(y, [x, z])
    assert grad(y, [x, z], allow_unused=True) == [12.0, None]  # torch gives None
    assert grad(y, [x, z], materialize_grads=True) == [12.0, 0.0]
    (zero,) = grad(y, [z], create_graph=True, materialize_grads=True)
    assert isinstance(zero, Value)
    assert zero.data == 0.0


def test_grad_has_torchs_signature():
    """grad(outputs, inputs, grad_outputs=None, *, create_graph, allow_unused, materialize_grads)."""
    x = Value(3.0)
    y1, y2 = x * x, x * 2.0
    assert grad(y1, [x], 2.0) == [12.0]  # grad_outputs, positional as in torch
    assert grad(y1, x, grad_outputs=0.5) == [3.0]
    assert grad([y1, y2], [x]) == [6.0 + 2.0]  # several outputs: their gradients add up
    assert grad([y1, y2], [x], [1.0, 10.0]) == [6.0 + 20.0]
    with pytest.raises(ValueError, match="2 grad_outputs for 1 outputs"):
        grad(y1, [x], [1.0, 2.0])
    with pytest.raises(TypeError):
        grad(y1, [x], 1.0, True)  # create_graph is keyword-only, as in torch  # noqa: FBT003 - the point: a positional flag is refused
    with pytest.raises(TypeError, match=r"inputs\[0\] must be a Value"):
        grad(y1, [3.0])


def test_grad_with_respect_to_an_intermediate_node():
    x = Value(2.0)
    h = x * 3
    y = h * h
    assert grad(y, [h, x]) == [12.0, 36.0]


def test_second_and_third_derivative_of_x_cubed():
    for x0 in (-1.5, 0.5, 2.0):
        x = Value(x0)
        (d1,) = grad(x**3, [x], create_graph=True)
        (d2,) = grad(d1, [x], create_graph=True)
        (d3,) = grad(d2, [x])
        assert d1.data == pytest.approx(3 * x0**2)
        assert d2.data == pytest.approx(6 * x0)
        assert d3 == pytest.approx(6.0)


def test_create_graph_returns_values_even_for_constant_derivatives():
    x, y = Value(1.0), Value(2.0)
    dx, dy = grad(x + y, [x, y], create_graph=True)
    assert isinstance(dx, Value)
    assert dx.data == 1.0
    assert dy.data == 1.0


def himmelblau(x, y):
    return (x**2 + y - 11) ** 2 + (x + y**2 - 7) ** 2


def test_himmelblau_hessian_at_3_2_matches_the_analytic_one():
    x, y = Value(3.0), Value(2.0)
    f = himmelblau(x, y)
    gx, gy = grad(f, [x, y], create_graph=True)
    assert gx.data == pytest.approx(0.0, abs=1e-12)
    assert gy.data == pytest.approx(0.0, abs=1e-12)
    hxx, hxy = grad(gx, [x, y])
    hyx, hyy = grad(gy, [x, y])
    # f_xx = 12x^2 + 4y - 42, f_xy = 4x + 4y, f_yy = 12y^2 + 4x - 26
    assert hxx == pytest.approx(12 * 9 + 8 - 42)
    assert hxy == pytest.approx(20.0)
    assert hyx == pytest.approx(20.0)
    assert hyy == pytest.approx(12 * 4 + 12 - 26)


def test_no_grad_records_nothing_and_works_as_decorator():
    x = Value(2.0)
    with no_grad():
        y = x * x + 1
    assert y.inputs == ()
    assert y.op == ""
    assert y.requires_grad is False
    assert (x * x).inputs == (x, x)

    @no_grad()
    def f(v):
        return v.exp()

    assert f(x).inputs == ()
    assert tg.is_grad_enabled()


def test_no_grad_is_thread_local():
    seen = {}
    inside = threading.Event()
    release = threading.Event()

    def other():
        inside.wait()
        seen["recorded"] = (Value(1.0) * 2).inputs != ()
        release.set()

    t = threading.Thread(target=other)
    t.start()
    with no_grad():
        inside.set()
        release.wait(10)
    t.join()
    assert seen["recorded"] is True


def test_backward_from_threads_on_shared_leaves_is_exact():
    w = Value(0.5)
    results = []

    def work():
        for _ in range(200):
            y = w * w * 3
            results.append(grad(y, [w])[0])

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [3.0] * 800


def test_no_grad_decorates_with_or_without_parentheses():
    @no_grad
    def f(v):
        return v * 2

    @no_grad()
    def g(v):
        return v * 3

    x = Value(1.0)
    assert f(x).inputs == ()
    assert g(x).inputs == ()
    assert f.__name__ == "f"
    with pytest.raises(TypeError, match="no_grad"):
        no_grad(3)


# --- the reference pass -------------------------------------------------------------------------


@given(expressions())
def test_the_fast_path_answers_to_the_reference(expr):
    """engine.gradients (the generated loop, private slots) equals reference_gradients (a dict), exactly."""
    leaves = [Value(x) for x in expr.point]
    out = expr.build(*leaves)
    fast = engine.gradients(out)
    reference = engine.reference_gradients(out)
    assert set(fast) == set(reference)
    for node, g in reference.items():
        assert fast[node] == g  # the same order and the same expressions: to the last bit


def test_the_reference_is_what_the_stepper_shows():
    from tinygrad_bp.stepper import Stepper

    a, b = Value(2.0, label="a"), Value(-3.0, label="b")
    y = (a * b + a).tanh()
    steps = list(engine.reference_backward(y))
    stepper = Stepper(y)
    assert [node for node, _, _ in steps] == [s.node for s in stepper.backward_steps]
    assert [up for _, up, _ in steps] == [s.upstream for s in stepper.backward_steps]
    assert stepper.gradients == engine.reference_gradients(y)
    assert a.grad == 0.0  # nothing written


def test_truthiness_is_the_datas_as_in_torch():
    assert not Value(0.0)
    assert Value(-2.0)
    assert bool(Value(1e-300))
    x = Value(3.0)
    y = x - 3.0
    assert not y  # `if loss:` is False for a zero loss, as for floats, numpy and torch


def test_no_grad_on_a_generator_function_records_nothing_while_it_runs():
    x = Value(2.0)

    @no_grad
    def squares(n):
        for _ in range(n):
            yield x * x

    @no_grad()
    def cubes(n):
        for _ in range(n):
            got = yield x * x * x
            assert got is None

    for made in (*squares(3), *cubes(2)):
        assert made.inputs == ()
        assert not made.requires_grad
    assert (x * x).inputs == (x, x)  # outside, recording as usual
